// The newc cpio writer (vmcore/boot/cpio.h), checked with an independent
// reader: GNU cpio lists and extracts what we write.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "vmcore/boot/cpio.h"

namespace twoostwo::vmcore::boot {
namespace {

/// A temporary directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "twoostwo-cpio-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

bool have_gnu_cpio() { return std::system("cpio --version >/dev/null 2>&1") == 0; }

/// Run a shell command; returns its stdout (and fails the test on a non-zero status).
std::string run(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << command << " failed";
  return out;
}

std::filesystem::path write_archive(const TempDir& dir, const std::vector<uint8_t>& bytes) {
  auto path = dir.path() / "a.cpio";
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                               static_cast<std::streamsize>(bytes.size()));
  return path;
}

CpioEntry dir_entry(std::string name, uint32_t mode = 0755) {
  CpioEntry e;
  e.name = std::move(name);
  e.kind = CpioEntry::Kind::kDirectory;
  e.mode = mode;
  return e;
}

CpioEntry file_entry(std::string name, std::string data, uint32_t mode = 0644) {
  CpioEntry e;
  e.name = std::move(name);
  e.kind = CpioEntry::Kind::kFile;
  e.mode = mode;
  e.data = std::move(data);
  return e;
}

TEST(BootCpioTest, GnuCpioListsAndExtractsTheArchive) {
  if (!have_gnu_cpio()) GTEST_SKIP() << "GNU cpio is not installed (Debian package cpio)";
  CpioEntry link;
  link.name = "bin/sh";
  link.kind = CpioEntry::Kind::kSymlink;
  link.mode = 0777;
  link.data = "busybox";
  // Sizes 0..5 cover every padding case; one file holds NULs and high bytes.
  const std::string binary("a\0b\xff\x80\n", 6);
  auto archive = cpio_newc_archive({dir_entry("etc"), dir_entry("etc/twoostwo"),
                                    file_entry("etc/twoostwo/node.conf", "hostname=alice\nnic0=10.0.0.1/24\n"),
                                    dir_entry("bin"), link, file_entry("bin/run", "#!/bin/sh\n", 0755),
                                    file_entry("e0", ""), file_entry("e1", "1"), file_entry("e2", "22"),
                                    file_entry("e3", "333"), file_entry("e5", binary)});
  ASSERT_TRUE(archive.has_value()) << archive.error().message;
  EXPECT_EQ(archive->size() % 4, 0u);
  TempDir dir;
  const auto path = write_archive(dir, *archive);

  EXPECT_EQ(run("cpio -it --quiet < " + path.string()),
            "etc\netc/twoostwo\netc/twoostwo/node.conf\nbin\nbin/sh\nbin/run\ne0\ne1\ne2\ne3\ne5\n");
  EXPECT_EQ(run("cpio -i --quiet --to-stdout etc/twoostwo/node.conf < " + path.string()),
            "hostname=alice\nnic0=10.0.0.1/24\n");
  EXPECT_EQ(run("cpio -i --quiet --to-stdout e5 < " + path.string()), binary);
  EXPECT_EQ(run("cpio -i --quiet --to-stdout e3 < " + path.string()), "333");
  EXPECT_EQ(run("cpio -i --quiet --to-stdout e0 < " + path.string()), "");
  // Types, permissions and the symlink target, as `cpio -itv` shows them.
  const std::string verbose = run("cpio -itv --quiet < " + path.string());
  EXPECT_NE(verbose.find("drwxr-xr-x"), std::string::npos) << verbose;
  EXPECT_NE(verbose.find("-rw-r--r--"), std::string::npos) << verbose;
  EXPECT_NE(verbose.find("-rwxr-xr-x"), std::string::npos) << verbose;
  EXPECT_NE(verbose.find("lrwxrwxrwx"), std::string::npos) << verbose;
  EXPECT_NE(verbose.find("bin/sh -> busybox"), std::string::npos) << verbose;
  // Extracting for real reproduces the tree.
  run("cd " + dir.path().string() + " && mkdir x && cd x && cpio -id --quiet < " + path.string());
  std::ifstream conf(dir.path() / "x/etc/twoostwo/node.conf");
  std::string line;
  std::getline(conf, line);
  EXPECT_EQ(line, "hostname=alice");
  EXPECT_EQ(std::filesystem::read_symlink(dir.path() / "x/bin/sh"), "busybox");
  EXPECT_EQ(std::filesystem::status(dir.path() / "x/bin/run").permissions() & std::filesystem::perms::owner_exec,
            std::filesystem::perms::owner_exec);
}

TEST(BootCpioTest, EntriesStartFourAlignedWithNewcHeaders) {
  auto archive = cpio_newc_archive({dir_entry("d"), file_entry("d/abc", "xyz12")});
  ASSERT_TRUE(archive.has_value());
  const std::string a(archive->begin(), archive->end());
  // First header: ino 1, mode 040755, nlink 2, namesize 2 ("d\0").
  EXPECT_EQ(a.substr(0, 110),
            "070701" "00000001" "000041ED" "00000000" "00000000" "00000002" "00000000" "00000000" "00000000"
            "00000000" "00000000" "00000000" "00000002" "00000000");
  // 110 + 2 = 112: already aligned; the next entry starts at 112.
  EXPECT_EQ(a.substr(112, 6), "070701");
  EXPECT_EQ(a.substr(112 + 6 + 8, 8), "000081A4");  // 0100644
  EXPECT_EQ(a.substr(112 + 6 + 6 * 8, 8), "00000005");  // filesize
  // 112 + 110 + "d/abc\0" (6) = 228 (aligned), data 5 bytes -> 233, pad to 236.
  EXPECT_EQ(a.substr(228, 5), "xyz12");
  EXPECT_EQ(a.substr(233, 3), std::string(3, '\0'));
  EXPECT_EQ(a.substr(236, 6), "070701");
  EXPECT_EQ(a.substr(236 + 110, 11), std::string("TRAILER!!!\0", 11));
  EXPECT_EQ(a.size(), 236u + 124);
}

TEST(BootCpioTest, NodeConfigArchiveHasItsDirectories) {
  auto archive = node_config_archive("hostname=bob\n");
  ASSERT_TRUE(archive.has_value());
  if (!have_gnu_cpio()) GTEST_SKIP() << "GNU cpio is not installed (Debian package cpio)";
  TempDir dir;
  const auto path = write_archive(dir, *archive);
  EXPECT_EQ(run("cpio -it --quiet < " + path.string()), "etc\netc/twoostwo\netc/twoostwo/node.conf\n");
  EXPECT_EQ(run("cpio -i --quiet --to-stdout etc/twoostwo/node.conf < " + path.string()), "hostname=bob\n");
}

TEST(BootCpioTest, RejectsBadEntries) {
  auto msg = [](const CpioEntry& e) {
    auto r = cpio_newc_archive({dir_entry("ok"), e});
    return r ? std::string("(ok)") : r.error().message;
  };
  EXPECT_EQ(msg(file_entry("", "x")), "cpio entry 1 '': empty name");
  EXPECT_EQ(msg(file_entry("/etc/x", "x")),
            "cpio entry 1 '/etc/x': names are relative to the archive root (no leading '/')");
  EXPECT_EQ(msg(file_entry(std::string("a\0b", 3), "x")), std::string("cpio entry 1 'a") + '\0' + "b': NUL byte in the name");
  EXPECT_EQ(msg(file_entry("TRAILER!!!", "")),
            "cpio entry 1 'TRAILER!!!': \"TRAILER!!!\" is reserved for the end of the archive");
  EXPECT_EQ(msg(file_entry("f", "x", 0100644)), "cpio entry 1 'f': mode 0100644 has bits outside 07777");
  CpioEntry d = dir_entry("d");
  d.data = "x";
  EXPECT_EQ(msg(d), "cpio entry 1 'd': a directory cannot have data");
  CpioEntry l;
  l.name = "l";
  l.kind = CpioEntry::Kind::kSymlink;
  EXPECT_EQ(msg(l), "cpio entry 1 'l': a symlink needs a target");
}

}  // namespace
}  // namespace twoostwo::vmcore::boot
