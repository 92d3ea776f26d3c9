// capture_file_name: any link name gives a safe, unique, readable file name.
#include <gtest/gtest.h>

#include <set>

#include "captures/capture_set.h"
#include "capture_test_support.h"

namespace twoostwo::captures {
namespace {

using namespace testing;

TEST(CaptureFileName, OrdinaryNamesStayReadable) {
  EXPECT_EQ(capture_file_name("l1"), "l1.pcap");
  EXPECT_EQ(capture_file_name("alice-sw1"), "alice-sw1.pcap");
  EXPECT_EQ(capture_file_name("uplink_2.trunk"), "uplink_2.trunk.pcap");
  EXPECT_EQ(capture_file_name("a b/c"), "a%20b%2Fc.pcap");
  EXPECT_EQ(capture_file_name("alice:eth0"), "alice%3Aeth0.pcap");
  EXPECT_EQ(capture_file_name(""), "%.pcap");
  EXPECT_EQ(capture_file_name("."), "%2E.pcap");
  EXPECT_EQ(capture_file_name(".."), "%2E..pcap");
  EXPECT_EQ(capture_file_name("100%"), "100%25.pcap");
  EXPECT_EQ(capture_file_name("\xc3\xbc"), "%C3%BC.pcap");  // "ü" in UTF-8
}

std::vector<std::string> hostile_names() {
  std::vector<std::string> names = {
      "", ".", "..", "...", "/", "//", "a/b", "../../etc/passwd", "/etc/passwd", "with space", " lead", "trail ",
      "tab\there", "new\nline", "cr\rhere", std::string("nul\0inside", 10), std::string("\0", 1), "\x7f", "\x1b[31m",
      "ünïcödé", "日本語リンク", "%", "%25", "%2F", "a%2Fb", "a/b%", "~", "x~0123456789abcdef", "-rf", "--", "*", "?",
      "[a]", "$(reboot)", "`id`", "a;b", "a|b", "a\\b", "con", "CON", "con.pcap", "l1.pcap", "L1", "l1", "a.", ".a",
      "a..b", std::string(255, 'x'), std::string(256, 'x'), std::string(1000, '/'), std::string(4096, '\xff'),
  };
  // Long names that differ only after the shortened prefix.
  for (char c : {'a', 'b', 'c'}) names.push_back(std::string(300, 'n') + c);
  for (char c : {'a', 'b'}) names.push_back(std::string(100, '/') + c);
  return names;
}

TEST(CaptureFileName, HostileNamesGiveSafeDistinctFiles) {
  TempDir dir;
  const auto canonical_dir = std::filesystem::canonical(dir.path());
  std::set<std::string> seen;
  for (const std::string& name : hostile_names()) {
    const std::string file = capture_file_name(name);
    SCOPED_TRACE("link name '" + name + "' -> '" + file + "'");
    ASSERT_FALSE(file.empty());
    EXPECT_LE(file.size(), 202u);
    EXPECT_NE(file.front(), '.');
    EXPECT_TRUE(file.ends_with(".pcap"));
    for (char c : file) {
      const bool ok = std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '_' || c == '-' ||
                      c == '%' || c == '~';
      EXPECT_TRUE(ok) << "character " << static_cast<int>(static_cast<unsigned char>(c));
    }
    EXPECT_TRUE(seen.insert(file).second) << "two link names gave the same file";
    // The file can be made, and lands in the directory itself.
    const auto path = dir.path() / file;
    write_file(path, "x");
    ASSERT_TRUE(std::filesystem::exists(path));
    EXPECT_EQ(std::filesystem::canonical(path).parent_path(), canonical_dir);
  }
  // Nothing else appeared (no file escaped into a sub-directory).
  size_t count = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir.path())) {
    EXPECT_TRUE(entry.is_regular_file()) << entry.path();
    ++count;
  }
  EXPECT_EQ(count, seen.size());
}

TEST(CaptureFileName, ShortenedNamesKeepAReadablePrefixAndAStableHash) {
  const std::string name = "very-long-link-name/" + std::string(300, 'z');
  const std::string file = capture_file_name(name);
  EXPECT_TRUE(file.starts_with("very-long-link-name%2Fzzz")) << file;
  EXPECT_NE(file.find('~'), std::string::npos) << file;
  EXPECT_EQ(file, capture_file_name(name)) << "the same name always gives the same file";
  // A cut never splits an escape: the stem before '~' ends on a whole unit.
  const std::string escapes(100, '/');  // each becomes "%2F"
  const std::string cut = capture_file_name(escapes + std::string(100, '/'));
  const std::string stem = cut.substr(0, cut.find('~'));
  EXPECT_EQ(stem.size() % 3, 0u) << stem;
  EXPECT_LE(stem.size(), 180u);
}

}  // namespace
}  // namespace twoostwo::captures
