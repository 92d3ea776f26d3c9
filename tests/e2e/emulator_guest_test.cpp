// The default i386 guest (Debian's 686 kernel, busybox) on the emulator
// engine, driven through twoostwo-vmm's COM2 command socket (issue 3,
// "Shows it works"). One boot serves every check of EmuGuest; this binary is
// registered as a single CTest test so that it boots once.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "tests/support/guest.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const fs::path kGuest = twoostwo::testing::kGuestI386;

using twoostwo::testing::Agent;
using twoostwo::testing::require_guest_image;
using twoostwo::testing::slurp;
using twoostwo::testing::TempDir;
using twoostwo::testing::Vmm;

// ---- one booted guest for the suite ----

class EmuGuest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    std::ofstream(dir_->path() / "node.conf") << "hostname e2e-guest\n";
    vmm_ = new Vmm(dir_->path(), {"--kernel", (kGuest / "vmlinuz").string(), "--initrd",
                                  (kGuest / "initrd.cpio").string(), "--cpu-engine=emulator", "--node-config",
                                  (dir_->path() / "node.conf").string(), "--console-log",
                                  (dir_->path() / "console.log").string(), "--command-socket",
                                  (dir_->path() / "com2.sock").string(), "-q", "--cache-dir", "none"});
    // One deadline for the socket to appear and the guest to be ready: on a
    // loaded 2-core CI host the monitor can take longer than any short
    // start-up wait before it creates the socket.
    agent_ = new Agent();
    ready_name_ = agent_->wait_ready(dir_->path() / "com2.sock", 300s);
  }
  static void TearDownTestSuite() {
    delete agent_;
    delete vmm_;
    delete dir_;
  }
  void SetUp() override {
    require_guest_image();
    ASSERT_FALSE(ready_name_.empty()) << "the guest did not become ready; monitor said:\n"
                                      << vmm_->err() << "\nconsole:\n" << slurp(dir_->path() / "console.log");
  }

  static TempDir* dir_;
  static Vmm* vmm_;
  static Agent* agent_;
  static std::string ready_name_;
};
TempDir* EmuGuest::dir_ = nullptr;
Vmm* EmuGuest::vmm_ = nullptr;
Agent* EmuGuest::agent_ = nullptr;
std::string EmuGuest::ready_name_;

TEST_F(EmuGuest, ReadyWithTheHostnameFromNodeConf) { EXPECT_EQ(ready_name_, "e2e-guest"); }

TEST_F(EmuGuest, UnameReportsTheDebian686Kernel) {
  auto o = agent_->run("uname -a");
  ASSERT_EQ(o.status, 0) << o.error;
  EXPECT_TRUE(std::regex_search(o.text, std::regex(R"(^Linux e2e-guest 6\.1\.0-\d+-686 .* i686 GNU/Linux\n$)")))
      << o.text;
}

TEST_F(EmuGuest, CpuinfoShowsExactlyTheAdvertisedFeatures) {
  auto o = agent_->run("cat /proc/cpuinfo");
  ASSERT_EQ(o.status, 0) << o.error;
  EXPECT_NE(o.text.find("vendor_id\t: GenuineIntel"), std::string::npos) << o.text;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(o.text, m, std::regex(R"(flags\t\t: ([^\n]*))"))) << o.text;
  const std::string flags = " " + m[1].str() + " ";
  for (const char* f : {"fpu", "tsc", "cx8", "cmov", "pse", "pge", "sep"}) {
    EXPECT_NE(flags.find(std::string(" ") + f + " "), std::string::npos) << "missing " << f << " in" << flags;
  }
  for (const char* f : {"sse", "sse2", "pae", "apic", "fxsr", "mmx"}) {
    EXPECT_EQ(flags.find(std::string(" ") + f + " "), std::string::npos) << "unexpected " << f << " in" << flags;
  }
  EXPECT_NE(o.text.find("fdiv_bug\t: no"), std::string::npos);
}

TEST_F(EmuGuest, Md5sumOf64MiBOfZerosIsCorrect) {
  auto o = agent_->run("dd if=/dev/zero bs=1M count=64 2>/dev/null | md5sum", 300s);
  ASSERT_EQ(o.status, 0) << o.error;
  EXPECT_EQ(o.text, "7f614da9329cd3aebf59b91aadc30bf0  -\n");
}

TEST_F(EmuGuest, ShellLoopCountsCorrectly) {
  // The issue's 200,000 iterations run in bench/vm_bench.py; 20,000 here keep
  // the suite short while exercising the same interpreter paths.
  auto o = agent_->run(R"(i=0; while [ "$i" -lt 20000 ]; do i=$((i+1)); done; echo "$i")", 300s);
  ASSERT_EQ(o.status, 0) << o.error;
  EXPECT_EQ(o.text, "20000\n");
}

TEST_F(EmuGuest, ExitStatusAndBinaryOutputPassThrough) {
  auto o = agent_->run("printf 'a\\000b\\377'; exit 7");
  EXPECT_EQ(o.status, 7) << o.error;
  EXPECT_EQ(o.text, std::string("a\0b\xff", 4));
}

TEST_F(EmuGuest, IdleTicksComeLateButTheGuestCountsThemAll) {
  // The default timer slack (MonitorOptions::timer_slack_ns) lets a halted
  // guest's one-shot PIT interrupt come up to 12 ms late: an idle guest
  // takes far fewer than HZ (250) timer interrupts a second, yet jiffies
  // (/proc/schedstat's timestamp) keep pace with the clocksource
  // (/proc/uptime) and with the host's clock. (With --timer-slack 0 this
  // guest takes ~250 a second, and the last check fails.)
  // Jiffies and uptime are read by shell builtins, microseconds apart (a
  // fork between them would skew the two by the time it takes).
  const char* probe =
      "{ read v; read t j; } < /proc/schedstat; read u x < /proc/uptime; echo \"jiffies $j uptime $u\"; "
      "grep ' 0:' /proc/interrupts";
  const auto t0 = std::chrono::steady_clock::now();
  auto o = agent_->run(std::string(probe) + "; sleep 3; " + probe, 60s);
  const double host_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(o.status, 0) << o.error;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(o.text, m,
                                std::regex(R"(jiffies (\d+) uptime ([\d.]+)\n\s*0:\s+(\d+) [^\n]*\n)"
                                           R"(jiffies (\d+) uptime ([\d.]+)\n\s*0:\s+(\d+) )")))
      << o.text;
  const double jiffies_s = static_cast<double>(std::stoull(m[4]) - std::stoull(m[1])) / 250.0;
  const double uptime_s = std::stod(m[5]) - std::stod(m[2]);
  const double irqs = static_cast<double>(std::stoull(m[6]) - std::stoull(m[3]));
  EXPECT_GE(uptime_s, 3.0) << o.text;
  EXPECT_LE(uptime_s, host_s + 0.02) << o.text;
  // Within 0.25 s: the host may preempt the guest between its two reads, for
  // 100 ms and more on a loaded machine. A guest that counted one tick per
  // interrupt would be off by seconds (~70 interrupts a second instead of 250).
  EXPECT_NEAR(jiffies_s, uptime_s, 0.25) << o.text;
  EXPECT_LT(irqs, 0.6 * 250.0 * uptime_s) << o.text;
}

TEST_F(EmuGuest, ZzPoweroffEndsTheMonitorWithStatusZero) {
  auto o = agent_->run("poweroff");
  EXPECT_EQ(o.status, -1);  // the VM ends while the command runs
  EXPECT_EQ(vmm_->wait(60s), 0) << vmm_->err();
  EXPECT_NE(vmm_->err().find("the guest powered off or reset"), std::string::npos) << vmm_->err();
}

// ---- virtual clock: a run can be repeated exactly ----

TEST(EmuGuestVirtualClock, TwoRunsGiveIdenticalConsoleOutputAndInstructionCounts) {
  require_guest_image();
  std::string console[2], counts[2];
  for (int run = 0; run < 2; ++run) {
    TempDir dir;
    // The guest reboots itself from node.conf, so no host input (whose timing
    // is the host's) reaches it.
    std::ofstream(dir.path() / "node.conf") << "hostname repeat\nrun echo virtual-clock-run\nrun reboot -f\n";
    Vmm vmm(dir.path(), {"--kernel", (kGuest / "vmlinuz").string(), "--initrd", (kGuest / "initrd.cpio").string(),
                         "--cpu-engine=emulator", "--clock=virtual", "--node-config",
                         (dir.path() / "node.conf").string(), "--console-log", (dir.path() / "console.log").string(),
                         "-q", "--cache-dir", "none"});
    ASSERT_EQ(vmm.wait(300s), 0) << vmm.err();
    console[run] = slurp(dir.path() / "console.log");
    std::smatch m;
    const std::string err = vmm.err();
    ASSERT_TRUE(std::regex_search(err, m, std::regex(R"((\d+) instructions retired, guest time ([0-9.]+) s)")))
        << err;
    counts[run] = m[0].str();
  }
  EXPECT_NE(console[0].find("virtual-clock-run"), std::string::npos) << console[0];
  EXPECT_EQ(console[0], console[1]);
  EXPECT_EQ(counts[0], counts[1]);
}

}  // namespace
