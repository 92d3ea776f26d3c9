// twoostwo-vmm as a process: command-line errors, and (KVM engine) the whole
// machine model with firmware images from tests/vmcore/vmmguests/: PIT
// interrupts through the 8259A into the guest, i8042 reset ending the VM with
// status 0, SIGTERM, and the console socket. (A triple fault's exit and
// report are covered by KvmEngineTest and FaultReportTest: this machine's
// nested KVM does not run a firmware image into a triple fault reliably.)
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/process.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

using twoostwo::testing::slurp;
using twoostwo::testing::TempDir;

/// twoostwo-vmm with `args`; stdout/stderr captured in `dir`.
class VmmProcess : public twoostwo::testing::ChildProcess {
 public:
  VmmProcess(const TempDir& dir, std::vector<std::string> args)
      : ChildProcess(dir.path(), twoostwo::testing::vmm_argv(std::move(args))) {}
};

bool wait_for_text(const fs::path& file, const std::string& text, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (slurp(file).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

std::string rom(const char* name) { return std::string(TWOOSTWO_VMM_ROM_DIR) + "/" + name + ".rom"; }

// ---- command line (no KVM needed) ----

TEST(VmmCliTest, HelpDocumentsEveryOption) {
  TempDir dir;
  VmmProcess p(dir, {"--help"});
  ASSERT_EQ(p.wait(10s), 0);
  const std::string help = p.out();
  for (const char* opt : {"--kernel", "--initrd", "--bios", "--cmdline", "--append", "--node-config", "--name",
                          "--memory", "--cpu-engine", "--clock", "--no-host-decompress", "--console-log",
                          "--console-socket", "--quiet", "--cache-dir", "--command-socket", "--exec", "--ready-timeout",
                          "--exec-timeout", "Exit status"}) {
    EXPECT_NE(help.find(opt), std::string::npos) << "--help does not mention " << opt;
  }
}

TEST(VmmCliTest, MissingKernelIsAOneLineErrorNamingTheFile) {
  TempDir dir;
  VmmProcess p(dir, {"--kernel", "/nonexistent/vmlinuz"});
  EXPECT_EQ(p.wait(10s), 1);
  const std::string err = p.err();
  EXPECT_NE(err.find("/nonexistent/vmlinuz"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST(VmmCliTest, AFileThatIsNotABzImageIsRejectedBeforeAnythingRuns) {
  TempDir dir;
  const fs::path bogus = dir.path() / "vmlinuz";
  std::ofstream(bogus) << std::string(4096, 'x');
  VmmProcess p(dir, {"--kernel", bogus.string(), "--cpu-engine=kvm"});
  EXPECT_EQ(p.wait(10s), 1);
  EXPECT_EQ(p.err(), "twoostwo-vmm: " + bogus.string() +
                         ": not a bzImage: no boot_flag 0xAA55 at offset 0x1fe (found 0x7878)\n");
}

TEST(VmmCliTest, UnknownOptionsAndBadValuesAreOneLineErrors) {
  TempDir dir;
  VmmProcess a(dir, {"--kernel", "/etc/hostname", "--cpu-engine=qemu"});
  EXPECT_EQ(a.wait(10s), 1);
  EXPECT_NE(a.err().find("--cpu-engine"), std::string::npos) << a.err();
  VmmProcess b(dir, {"--frobnicate"});
  EXPECT_EQ(b.wait(10s), 1);
  EXPECT_NE(b.err().find("--frobnicate"), std::string::npos) << b.err();
  VmmProcess c(dir, {});
  EXPECT_EQ(c.wait(10s), 1);
  EXPECT_NE(c.err().find("nothing to boot"), std::string::npos) << c.err();
}

TEST(VmmCliTest, FirmwareImageOfTheWrongSizeIsRejected) {
  TempDir dir;
  const fs::path bios = dir.path() / "bios.bin";
  std::ofstream(bios) << std::string(1000, '\0');
  VmmProcess p(dir, {"--bios", bios.string(), "--cpu-engine=kvm"});
  EXPECT_EQ(p.wait(10s), 1);
  EXPECT_NE(p.err().find(bios.string()), std::string::npos) << p.err();
}

// ---- the machine on the KVM engine ----

class KvmVmmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/kvm", R_OK | W_OK) != 0) GTEST_SKIP() << "no /dev/kvm: cannot run the KVM engine here";
  }
};

TEST_F(KvmVmmTest, PitInterruptsThroughThePicWakeTheGuestAndI8042ResetEndsTheVm) {
  TempDir dir;
  const fs::path console = dir.path() / "console.log";
  VmmProcess p(dir, {"--bios", rom("tick"), "--cpu-engine=kvm", "-m", "16", "--console-log", console.string(), "-q"});
  ASSERT_EQ(p.wait(60s), 0) << p.err();
  EXPECT_EQ(slurp(console), "tick firmware: waiting for 3 PIT interrupts\n3 ticks\n");
  EXPECT_NE(p.err().find("the guest powered off or reset"), std::string::npos) << p.err();
}

TEST_F(KvmVmmTest, SigtermStopsAHaltedVmWithStatusZeroAndTheConsoleSocketServesOutput) {
  TempDir dir;
  const fs::path console = dir.path() / "console.log";
  const fs::path sock = dir.path() / "console.sock";
  VmmProcess p(dir, {"--bios", rom("spin"), "--cpu-engine=kvm", "-m", "16", "--console-log", console.string(),
                     "--console-socket", sock.string(), "-q"});
  ASSERT_TRUE(wait_for_text(console, "spinning\n", 30s)) << p.err();

  // A client connecting late still gets the backlog.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::string got;
  char buf[256];
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (got.find("spinning\n") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    std::this_thread::sleep_for(10ms);
  }
  ::close(fd);
  EXPECT_EQ(got, "spinning\n");

  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(10s), 0) << p.err();
  EXPECT_FALSE(fs::exists(sock)) << "the console socket file was left behind";
}

}  // namespace
