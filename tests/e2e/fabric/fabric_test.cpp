// The switch fabric with real processes on it (issue 5, "Shows it works"):
// one LearningSwitch in this test process, on its own event-loop thread, and
//
//   alice  twoostwo-vmm, rtl8029, 10.0.0.1  ── seqpacket port ─┐
//   bob    twoostwo-vmm, rtl8029, 10.0.0.2  ── seqpacket port ─┼─ switch "sw"
//   qemu   qemu-system-i386 -accel tcg, ne2k_pci, 10.0.0.3     │
//          (-netdev dgram)                  ── UDP tunnel port ┤
//   a network namespace of the test's own, 10.0.0.100, behind  │
//          a veth pair                      ── PcapBridge ─────┘
//
// with a CaptureSet writing every link to pcap. Without root the namespace
// (and only it) is left out and its checks skip with the reason.
//
// The guests boot once and serve every check of FabricLab; this binary is
// one CTest test.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <regex>
#include <string>
#include <thread>

#include "captures/capture_set.h"
#include "captures/pcap_bridge.h"
#include "switch/fabric.h"
#include "tests/support/fabric_thread.h"
#include "tests/support/netns.h"
#include "tests/support/guest.h"
#include "tests/support/qemu.h"

namespace {

using namespace std::chrono_literals;
using twoostwo::fabric::LearningSwitch;
using twoostwo::fabric::PortCounters;
using twoostwo::fabric::SocketPort;
using twoostwo::testing::FabricThread;
using twoostwo::testing::Guest;
using twoostwo::testing::QemuGuest;
using twoostwo::testing::require_guest_image;
using twoostwo::testing::VethNamespace;
namespace fs = std::filesystem;

// What a shell command printed on stdout.
std::string output_of(const std::string& command) {
  std::string out;
  if (std::FILE* p = ::popen(command.c_str(), "r")) {
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, p)) > 0) out.append(buffer, n);
    ::pclose(p);
  }
  return out;
}

// Frames tshark reads from `pcap` that match `filter` ("" for all), or -1 if
// tshark fails on the file (a capture cut short, say).
long tshark_count(const fs::path& pcap, const std::string& filter = "") {
  const std::string out = output_of("tshark -r '" + pcap.string() + "'" + (filter.empty() ? "" : " -Y '" + filter + "'") +
                                    " -T fields -e frame.number 2>/dev/null; echo \"status $?\"");
  const auto status = out.rfind("status ");
  if (status == std::string::npos || out.compare(status, 9, "status 0\n") != 0) return -1;
  return static_cast<long>(std::count(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(status), '\n'));
}

constexpr const char* kNoIpv6 =
    "sysctl net.ipv6.conf.all.disable_ipv6=1\nsysctl net.ipv6.conf.default.disable_ipv6=1\n";

std::string node_conf(const std::string& host, const std::string& cidr) {
  return "hostname " + host + "\n" + kNoIpv6 + "module ne2k-pci\naddr eth0 " + cidr + "\n";
}

// A monitor's end of a seqpacket port, moved above the low descriptors so
// that handing it over as fd 3 never meets itself.
int monitor_end(SocketPort& port) {
  const int fd = port.take_peer_fd();
  const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, 100);
  ::close(fd);
  return high;
}

class FabricLab : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!twoostwo::testing::guest_image_present()) return;
    ft_ = new FabricThread();
    auto& fabric = ft_->fabric();
    sw_ = *fabric.add_switch("sw");
    alice_ = *fabric.add_seqpacket_port("alice:eth0");
    bob_ = *fabric.add_seqpacket_port("bob:eth0");
    const int qemu_port = 20000 + (::getpid() % 20000), tunnel_port = qemu_port + 1;
    qemu_ = *fabric.add_udp_port("qemu:eth0", "127.0.0.1:" + std::to_string(tunnel_port),
                                 "127.0.0.1:" + std::to_string(qemu_port));
    int n = 0;
    for (auto* port : {static_cast<twoostwo::fabric::Port*>(alice_), static_cast<twoostwo::fabric::Port*>(bob_),
                       static_cast<twoostwo::fabric::Port*>(qemu_)}) {
      auto sp = sw_->add_port(std::to_string(++n));
      auto link = fabric.connect(port->name().substr(0, port->name().find(':')) + "-sw", *port, **sp);
      if (!link) std::abort();
    }
    if (twoostwo::testing::can_make_namespaces()) {
      ns_ = new VethNamespace("fab", "10.0.0.100/24");
      auto bridge = twoostwo::captures::PcapBridge::open(ft_->io(), "bridge:" + ns_->root_end(), ns_->root_end());
      if (!bridge) {
        bridge_error_ = bridge.error().message;
      } else {
        bridge_ = static_cast<twoostwo::captures::PcapBridge*>(*fabric.add_port(std::move(*bridge)));
        if (!fabric.connect("bridge-sw", *bridge_, **sw_->add_port("4"))) std::abort();
      }
    }
    captures_dir_ = new twoostwo::testing::TempDir();
    captures_ = std::move(*twoostwo::captures::CaptureSet::start(fabric, captures_dir_->path()));
    ft_->start();

    const int alice_fd = monitor_end(*alice_), bob_fd = monitor_end(*bob_);
    const std::vector<std::string> nic = {"--nic", "model=rtl8029,backend=fd,fd=3"};
    guests_[0] = new Guest("alice", node_conf("alice", "10.0.0.1/24"), nic, {{alice_fd, 3}});
    guests_[1] = new Guest("bob", node_conf("bob", "10.0.0.2/24"), nic, {{bob_fd, 3}});
    ::close(alice_fd);
    ::close(bob_fd);
    qemu_guest_ = new QemuGuest(node_conf("qemu-guest", "10.0.0.3/24"),
                                "dgram,local.type=inet,local.host=127.0.0.1,local.port=" + std::to_string(qemu_port) +
                                    ",remote.type=inet,remote.host=127.0.0.1,remote.port=" +
                                    std::to_string(tunnel_port),
                                "52:54:00:00:00:03");
    ready_[0] = guests_[0]->wait_ready(300s);
    ready_[1] = guests_[1]->wait_ready(300s);
    ready_[2] = qemu_guest_->wait_ready(300s);
  }
  static void TearDownTestSuite() {
    for (auto*& g : guests_) {
      delete g;
      g = nullptr;
    }
    delete qemu_guest_;
    if (ft_ != nullptr) ft_->call([] { captures_.reset(); });
    delete ft_;
    delete ns_;
    delete captures_dir_;
  }
  void SetUp() override {
    require_guest_image();
    ASSERT_EQ(ready_[0], "alice") << guests_[0]->diagnostics();
    ASSERT_EQ(ready_[1], "bob") << guests_[1]->diagnostics();
    ASSERT_EQ(ready_[2], "qemu-guest") << qemu_guest_->diagnostics();
  }

  static Guest& alice() { return *guests_[0]; }
  static Guest& bob() { return *guests_[1]; }
  static QemuGuest& qemu() { return *qemu_guest_; }
  static PortCounters counters(twoostwo::fabric::Port* port) {
    return ft_->call([port] { return port->counters(); });
  }

  static fs::path capture_of(const std::string& link) {
    ft_->call([] { (void)captures_->flush(); });
    return *ft_->call([&] { return captures_->path_of(link); });
  }
  void require_namespace() {
    if (!twoostwo::testing::can_make_namespaces()) GTEST_SKIP() << twoostwo::testing::kNeedsRoot;
    ASSERT_TRUE(ns_->ok());
    ASSERT_NE(bridge_, nullptr) << bridge_error_;
  }

  static FabricThread* ft_;
  static LearningSwitch* sw_;
  static VethNamespace* ns_;
  static twoostwo::captures::PcapBridge* bridge_;
  static std::string bridge_error_;
  static twoostwo::testing::TempDir* captures_dir_;
  static std::unique_ptr<twoostwo::captures::CaptureSet> captures_;
  static SocketPort *alice_, *bob_, *qemu_;
  static Guest* guests_[2];
  static QemuGuest* qemu_guest_;
  static std::string ready_[3];
};
FabricThread* FabricLab::ft_ = nullptr;
VethNamespace* FabricLab::ns_ = nullptr;
twoostwo::captures::PcapBridge* FabricLab::bridge_ = nullptr;
std::string FabricLab::bridge_error_;
twoostwo::testing::TempDir* FabricLab::captures_dir_ = nullptr;
std::unique_ptr<twoostwo::captures::CaptureSet> FabricLab::captures_;
LearningSwitch* FabricLab::sw_ = nullptr;
SocketPort* FabricLab::alice_ = nullptr;
SocketPort* FabricLab::bob_ = nullptr;
SocketPort* FabricLab::qemu_ = nullptr;
Guest* FabricLab::guests_[2] = {};
QemuGuest* FabricLab::qemu_guest_ = nullptr;
std::string FabricLab::ready_[3];

// Counts frames delivered to a port (towards its monitor) that are unicast
// to another MAC than `mine`.
struct StrayUnicast : twoostwo::fabric::Tap {
  explicit StrayUnicast(const std::string& mine) : mine_(mine) {}
  void on_frame(const twoostwo::fabric::Frame& frame) override {
    if (frame.ingress == bob_port) return;  // bob's own transmissions
    ++delivered_to_bob;
    const auto dst = frame.destination();
    if (!twoostwo::fabric::is_group(dst) && twoostwo::fabric::format_mac(dst) != mine_) ++stray;
  }
  std::string mine_;
  const twoostwo::fabric::Port* bob_port = nullptr;
  uint64_t delivered_to_bob = 0, stray = 0;
};

bool all_received(const std::string& ping_output) {
  return ping_output.find("3 packets transmitted, 3 packets received") != std::string::npos;
}

TEST_F(FabricLab, EveryGuestPingsEveryOtherThroughTheSwitch) {
  for (const char* to : {"10.0.0.2", "10.0.0.3"}) {
    auto o = alice().run(std::string("ping -c 3 -W 5 ") + to);
    EXPECT_TRUE(all_received(o.text)) << "alice -> " << to << ": " << o.text;
  }
  auto o = bob().run("ping -c 3 -W 5 10.0.0.3");
  EXPECT_TRUE(all_received(o.text)) << "bob -> qemu: " << o.text;
  auto q = qemu().run("ping -c 3 -W 5 10.0.0.1");
  EXPECT_TRUE(all_received(q.text)) << "qemu -> alice: " << q.text;
}

TEST_F(FabricLab, SwitchLearnedEachGuestAndKeepsUnicastOffOtherPorts) {
  // Refresh everyone's ARP entries and the switch's table.
  (void)alice().run("ping -c 1 -W 5 10.0.0.3; ping -c 1 -W 5 10.0.0.2");
  (void)qemu().run("ping -c 1 -W 5 10.0.0.1");
  const auto learned = ft_->call([] {
    const auto& table = sw_->mac_table();
    return std::vector<size_t>{table.port_entries(sw_->port("1")), table.port_entries(sw_->port("2")),
                               table.port_entries(sw_->port("3"))};
  });
  EXPECT_EQ(learned, (std::vector<size_t>{1, 1, 1})) << "one MAC per guest, on its own port";
  // Count the unicast frames for someone else that reach bob's port.
  const auto bob_mac = bob().run("cat /sys/class/net/eth0/address");
  ASSERT_EQ(bob_mac.status, 0) << bob_mac.error;
  ASSERT_TRUE(std::regex_match(bob_mac.text, std::regex("([0-9a-f]{2}:){5}[0-9a-f]{2}\n"))) << bob_mac.text;
  StrayUnicast stray(bob_mac.text.substr(0, 17));
  stray.bob_port = bob_;
  ft_->call([&] { bob_->add_tap(&stray); });
  auto o = alice().run("ping -c 5 -i 0.2 -W 5 10.0.0.3");
  ft_->call([&] { bob_->remove_tap(&stray); });
  EXPECT_NE(o.text.find("5 packets received"), std::string::npos) << o.text;
  EXPECT_EQ(stray.stray, 0u) << "alice <-> qemu unicast must not reach bob's port (" << stray.delivered_to_bob
                             << " frames reached it in all)";
}

TEST_F(FabricLab, TcpTransferOverTheUdpTunnelKeepsItsChecksum) {
  auto listen = qemu().run("rm -f /tmp/recv; (sleep 900 | nc -l -p 5001 > /tmp/recv) </dev/null >/dev/null 2>&1 &");
  ASSERT_EQ(listen.status, 0) << listen.error;
  auto make = alice().run("dd if=/dev/urandom of=/tmp/send bs=1M count=4 2>/dev/null && md5sum < /tmp/send");
  ASSERT_EQ(make.status, 0);
  auto send = alice().run("nc 10.0.0.3 5001 < /tmp/send; echo sent $?", 300s);
  ASSERT_EQ(send.status, 0) << send.text;
  auto size = qemu().run("for i in $(seq 300); do [ \"$(stat -c %s /tmp/recv)\" = 4194304 ] && break; sleep 0.2; "
                         "done; stat -c %s /tmp/recv",
                         120s);
  EXPECT_EQ(size.text, "4194304\n");
  EXPECT_EQ(qemu().run("md5sum < /tmp/recv").text, make.text);
  const auto tunnel = ft_->call([] { return qemu_->socket_counters(); });
  EXPECT_EQ(tunnel.oversized, 0u);
  // 4 MiB in segments of at most 1448 bytes: at least 2897 frames went into
  // the tunnel (the port's rx), and ACKs came out of it.
  EXPECT_GE(counters(qemu_).rx_frames, 2897u);
  EXPECT_GT(counters(qemu_).tx_frames, 0u);
}

TEST_F(FabricLab, NamespaceBehindTheBridgePingsAndTalksTcpWithAGuest) {
  require_namespace();
  const auto ping = output_of(ns_->exec("ping -c 3 -W 5 10.0.0.1 2>&1"));
  EXPECT_NE(ping.find("3 packets transmitted, 3 received"), std::string::npos) << ping;
  auto back = alice().run("ping -c 3 -W 5 10.0.0.100");
  EXPECT_TRUE(all_received(back.text)) << back.text;

  // 1 MiB from the namespace to alice over TCP, checked end to end.
  auto listen = alice().run("rm -f /tmp/ns; (sleep 900 | nc -l -p 5003 > /tmp/ns) </dev/null >/dev/null 2>&1 &");
  ASSERT_EQ(listen.status, 0);
  twoostwo::testing::TempDir dir;
  const fs::path data = dir.path() / "data";
  ASSERT_EQ(twoostwo::testing::shell("head -c 1048576 /dev/urandom > '" + data.string() + "'"), 0);
  const std::string python = ::access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  const int sent = twoostwo::testing::shell(ns_->exec(
      python + " -c \"import socket; s = socket.create_connection(('10.0.0.1', 5003), timeout=60); "
               "s.sendall(open('" + data.string() + "', 'rb').read()); s.close()\""));
  ASSERT_EQ(sent, 0);
  auto size = alice().run("for i in $(seq 300); do [ \"$(stat -c %s /tmp/ns)\" = 1048576 ] && break; sleep 0.2; "
                          "done; stat -c %s /tmp/ns",
                          120s);
  EXPECT_EQ(size.text, "1048576\n");
  const std::string expected = output_of("md5sum < '" + data.string() + "'");
  EXPECT_EQ(alice().run("md5sum < /tmp/ns").text, expected);
  const auto adapter = ft_->call([] { return bridge_->adapter_counters(); });
  EXPECT_EQ(adapter.oversized, 0u) << "offloads are off: every frame is an Ethernet frame";
  EXPECT_GT(adapter.injected, 0u);
}

TEST_F(FabricLab, CapturesShowEachExchangeOnTheLinksItCrossed) {
  auto o = alice().run("ping -c 3 -W 5 10.0.0.3");
  ASSERT_TRUE(all_received(o.text)) << o.text;
  const fs::path alice_link = capture_of("alice-sw"), qemu_link = capture_of("qemu-sw"), bob_link = capture_of("bob-sw");
  const std::string echo = "icmp.type == 8 && ip.src == 10.0.0.1 && ip.dst == 10.0.0.3";
  const std::string reply = "icmp.type == 0 && ip.src == 10.0.0.3 && ip.dst == 10.0.0.1";
  EXPECT_GE(tshark_count(alice_link, echo), 3);
  EXPECT_GE(tshark_count(alice_link, reply), 3);
  EXPECT_GE(tshark_count(qemu_link, echo), 3);
  EXPECT_GE(tshark_count(qemu_link, reply), 3);
  EXPECT_EQ(tshark_count(bob_link, "icmp && ip.addr == 10.0.0.1 && ip.addr == 10.0.0.3"), 0)
      << "alice <-> qemu never crossed bob's link";
  EXPECT_GE(tshark_count(bob_link, "icmp && ip.addr == 10.0.0.2"), 6) << "bob's own pings did";
  // Every frame of a link is in its file, in both directions.
  const auto link_frames = ft_->call([] {
    const auto& c = ft_->fabric().find_link("alice-sw")->counters();
    return static_cast<long>(c.a_to_b_frames + c.b_to_a_frames);
  });
  EXPECT_EQ(tshark_count(alice_link), link_frames);
  if (bridge_ != nullptr) {
    // The namespace test's pings both ways: 3 requests and 3 replies each.
    EXPECT_GE(tshark_count(capture_of("bridge-sw"), "icmp && ip.addr == 10.0.0.100"), 12);
  }
}

// Last (Zz): it kills bob.
TEST_F(FabricLab, ZzKillingAMonitorMidStreamLeavesTheRestRunning) {
  // bob streams to alice; its monitor is killed in the middle.
  auto listen = alice().run("(sleep 900 | nc -l -p 5002 > /dev/null) </dev/null >/dev/null 2>&1 &");
  ASSERT_EQ(listen.status, 0);
  auto start = bob().run("(dd if=/dev/zero bs=1M count=64 2>/dev/null | nc 10.0.0.1 5002) </dev/null >/dev/null 2>&1 &");
  ASSERT_EQ(start.status, 0);
  const uint64_t before = counters(bob_).tx_frames;
  for (int i = 0; i < 100 && counters(bob_).tx_frames < before + 200; ++i) std::this_thread::sleep_for(100ms);
  ASSERT_GE(counters(bob_).tx_frames, before + 200) << "bob's stream never got going";
  bob().vmm().signal(SIGKILL);
  EXPECT_EQ(bob().vmm().wait(10s), 128 + SIGKILL);
  bool closed = false;
  for (int i = 0; i < 50 && !closed; ++i) {
    closed = ft_->call([] { return bob_->peer_closed(); });
    if (!closed) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(closed) << "the fabric noticed bob's monitor going";
  EXPECT_FALSE(ft_->call([] { return bob_->up(); }));
  // bob's capture is complete to its last frame (the set flushed it when
  // the port closed), and readable.
  const auto bob_frames = ft_->call([] {
    const auto& c = ft_->fabric().find_link("bob-sw")->counters();
    return static_cast<long>(c.a_to_b_frames + c.b_to_a_frames);
  });
  const auto bob_file = *ft_->call([] { return captures_->path_of("bob-sw"); });
  EXPECT_EQ(tshark_count(bob_file), bob_frames);
  auto o = alice().run("ping -c 3 -W 5 10.0.0.3");
  EXPECT_TRUE(all_received(o.text)) << "alice -> qemu after bob died: " << o.text;
  auto q = qemu().run("ping -c 3 -W 5 10.0.0.1");
  EXPECT_TRUE(all_received(q.text)) << q.text;
}

}  // namespace
