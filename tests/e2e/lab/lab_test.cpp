// The `twoostwo` command end to end (issue 6): the built-in default lab —
// alice 10.0.0.1 and bob 10.0.0.2 on switch sw1 — brought up detached by
// `twoostwo up`, driven with status/exec/capture, a monitor killed, and
// brought down. The lab boots once for every check; this binary is one CTest
// test. The run directory and the captures live in a temporary directory.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "tests/support/cli.h"
#include "tests/support/guest.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;
using twoostwo::testing::alive;
using twoostwo::testing::CliLab;
using twoostwo::testing::CliRun;

class DefaultLab : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!twoostwo::testing::guest_image_present()) return;
    lab_ = new CliLab("default");
    up_ = new CliRun(lab_->up());
  }
  static void TearDownTestSuite() {
    delete up_;
    delete lab_;  // brings the lab down if a test did not
  }
  void SetUp() override {
    twoostwo::testing::require_guest_image();
    ASSERT_EQ(up_->status, 0) << up_->out;
  }
  static json status() { return lab_->status(); }
  static CliRun run(const std::string& args) { return lab_->run(args); }

  static CliLab* lab_;
  static CliRun* up_;
};
CliLab* DefaultLab::lab_ = nullptr;
CliRun* DefaultLab::up_ = nullptr;

TEST_F(DefaultLab, UpReportsEachNodeReadyAndReturns) {
  EXPECT_NE(up_->out.find("alice: ready"), std::string::npos) << up_->out;
  EXPECT_NE(up_->out.find("bob: ready"), std::string::npos) << up_->out;
  EXPECT_NE(up_->out.find("lab 'default' is up"), std::string::npos) << up_->out;
  const CliRun again = run("up");
  EXPECT_EQ(again.status, 1) << again.out;
  EXPECT_NE(again.out.find("lab 'default' is already up"), std::string::npos) << again.out;
  // The control socket is bound as control.sock~ and renamed once it listens.
  EXPECT_TRUE(fs::exists(lab_->control_socket()));
  EXPECT_FALSE(fs::exists(lab_->control_socket().string() + "~"));
}

TEST_F(DefaultLab, StatusListsNodesLinksAndCaptures) {
  const json s = status();
  ASSERT_FALSE(s.is_discarded());
  ASSERT_EQ(s["nodes"].size(), 2u);
  EXPECT_EQ(s["nodes"][0]["name"], "alice");
  EXPECT_EQ(s["nodes"][0]["state"], "ready");
  EXPECT_EQ(s["nodes"][0]["addresses"][0], "10.0.0.1/24");
  EXPECT_TRUE(alive(s["nodes"][1]["pid"].get<int>()));
  ASSERT_EQ(s["links"].size(), 2u);
  for (const auto& l : s["links"]) EXPECT_TRUE(fs::exists(l["capture"].get<std::string>())) << l.dump();
  const CliRun text = run("status");
  EXPECT_EQ(text.status, 0);
  EXPECT_NE(text.out.find("10.0.0.2/24"), std::string::npos) << text.out;
}

TEST_F(DefaultLab, ExecRunsInTheGuestAndPassesItsStatusOn) {
  const CliRun ping = run("exec alice -- ping -c 3 -W 5 10.0.0.2");
  EXPECT_EQ(ping.status, 0) << ping.out;
  EXPECT_NE(ping.out.find("3 packets transmitted, 3 packets received"), std::string::npos) << ping.out;
  const CliRun host = run("exec bob -- hostname");
  EXPECT_EQ(host.out, "bob\n");
  EXPECT_EQ(run("exec bob -- 'exit 7'").status, 7);
  const CliRun unknown = run("exec carol -- true");
  EXPECT_EQ(unknown.status, 2);
  EXPECT_NE(unknown.out.find("lab 'default' has no node 'carol' (nodes: alice, bob)"), std::string::npos) << unknown.out;
}

TEST_F(DefaultLab, LiveCaptureStreamsALinkAsPcap) {
  const json s = status();
  const std::string link = s["links"][0]["name"];
  const fs::path pcap = lab_->dir() / "live.pcap";
  // `capture` runs until its reader or the lab goes; stop it after the pings.
  const std::string command = lab_->command("capture '" + link + "'") + " > '" + pcap.string() + "'";
  const pid_t capture = ::fork();
  ASSERT_GE(capture, 0);
  if (capture == 0) {
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::this_thread::sleep_for(500ms);
  const CliRun ping = run("exec alice -- ping -c 3 -W 5 10.0.0.2");
  EXPECT_EQ(ping.status, 0) << ping.out;
  std::this_thread::sleep_for(500ms);
  ::kill(capture, SIGTERM);
  ::waitpid(capture, nullptr, 0);
  EXPECT_GE(twoostwo::testing::tshark_count(pcap, "icmp"), 6) << "3 echo requests and 3 replies on " << link;
}

// Last but one: kills bob's monitor.
TEST_F(DefaultLab, YKilledMonitorIsReportedAndTheRestRuns) {
  const json before = status();
  const int bob = before["nodes"][1]["pid"].get<int>();
  ASSERT_TRUE(alive(bob));
  ::kill(bob, SIGKILL);
  const json s = lab_->status_once_exited("bob");
  EXPECT_EQ(s["nodes"][1]["state"], "exited");
  EXPECT_EQ(s["nodes"][1]["exit"], "killed by signal 9 (Killed)");
  EXPECT_EQ(s["nodes"][0]["state"], "ready");
  EXPECT_EQ(run("exec alice -- hostname").out, "alice\n");
}

// Last: brings the lab down.
TEST_F(DefaultLab, ZDownLeavesNoProcessAndCompleteCaptures) {
  const json s = status();
  const int alice = s["nodes"][0]["pid"].get<int>();
  const CliRun down = run("down");
  EXPECT_EQ(down.status, 0) << down.out;
  EXPECT_NE(down.out.find("lab 'default' is down"), std::string::npos) << down.out;
  EXPECT_FALSE(alive(alice)) << "alice's monitor is gone";
  EXPECT_FALSE(lab_->running());
  for (const auto& l : s["links"]) {
    const std::string file = l["capture"];
    EXPECT_EQ(twoostwo::testing::tshark(file).status, 0) << file << " is a complete capture";
  }
  const CliRun status_after = run("status");
  EXPECT_EQ(status_after.status, 1);
  EXPECT_NE(status_after.out.find("no lab is running"), std::string::npos) << status_after.out;
}

TEST(OwnedLab, AnOwnerThatIsGoneIsABadArgument) {
  CliLab lab("gone");
  const pid_t owner = ::fork();
  ASSERT_GE(owner, 0);
  if (owner == 0) ::_exit(0);
  ::waitpid(owner, nullptr, 0);  // reaped: the PID names no process now
  const CliRun up = lab.up("", owner);
  EXPECT_EQ(up.status, 2) << up.out;
  EXPECT_NE(up.out.find("--owner-pid " + std::to_string(owner) + ": no such process"), std::string::npos) << up.out;
  EXPECT_FALSE(lab.running());
}

// `up --owner-pid`: a one-node lab owned by a `sleep`; when the sleep is
// killed, the supervisor brings the lab down as `down` would (monitor gone,
// control socket gone, capture complete). The same boot checks that a
// node's timer_slack reaches its monitor.
TEST(OwnedLab, GoesDownWhenItsOwnerProcessEnds) {
  twoostwo::testing::require_guest_image();
  CliLab lab("owned");
  std::ofstream(lab.dir() / "owned.yaml") << "name: owned\n"
                                             "captures: captures\n"
                                             "nodes:\n"
                                             "  carol:\n"
                                             "    timer_slack: 30\n"
                                             "    nics:\n"
                                             "      eth0: {model: rtl8029, addresses: [10.0.0.3/24]}\n"
                                             "switches:\n"
                                             "  sw1: {}\n"
                                             "links:\n"
                                             "  - [carol:eth0, sw1]\n";
  const pid_t owner = ::fork();
  ASSERT_GE(owner, 0);
  if (owner == 0) {
    ::execl("/bin/sleep", "sleep", "600", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const CliRun up = lab.up("owned.yaml", owner);
  ASSERT_EQ(up.status, 0) << up.out;
  const json s = lab.status();
  ASSERT_EQ(s["nodes"].size(), 1u);
  const int carol = s["nodes"][0]["pid"].get<int>();
  const int supervisor = lab.supervisor_pid();
  ASSERT_TRUE(alive(carol));
  ASSERT_TRUE(alive(supervisor));
  // The node's timer_slack reaches its monitor.
  const std::string cmdline = twoostwo::testing::slurp("/proc/" + std::to_string(carol) + "/cmdline");
  EXPECT_NE(cmdline.find(std::string("--timer-slack\0" "30\0", 17)), std::string::npos);
  const std::string capture = s["links"][0]["capture"];
  EXPECT_EQ(lab.run("exec carol -- ping -c 1 -W 1 10.0.0.9").status, 1)
      << "nobody answers, but the ARP requests reach the link";

  ::kill(owner, SIGKILL);
  ::waitpid(owner, nullptr, 0);
  for (int i = 0; i < 100 && (alive(supervisor) || alive(carol)); ++i) std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(alive(carol)) << "carol's monitor is gone";
  EXPECT_FALSE(alive(supervisor)) << "the supervisor is gone";
  EXPECT_FALSE(lab.running()) << "the control socket is gone";
  EXPECT_EQ(twoostwo::testing::tshark(capture).status, 0) << capture << " is a complete capture";
  EXPECT_GE(twoostwo::testing::tshark_count(capture, "arp"), 1) << capture;
  const std::string log = twoostwo::testing::slurp(lab.dir() / "run" / "owned" / "supervisor.out");
  EXPECT_NE(log.find("owner process " + std::to_string(owner) + " ended: stopping the lab"), std::string::npos) << log;
}

}  // namespace
