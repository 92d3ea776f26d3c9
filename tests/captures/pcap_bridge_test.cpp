// PcapBridge on real (virtual) adapters: each test makes its own network
// namespaces and veth pairs, bridges the lab to the root-namespace ends only,
// and removes everything afterwards. Without root (CAP_NET_ADMIN to make
// namespaces, CAP_NET_RAW to capture) those tests skip with the reason.
#include <gtest/gtest.h>

#include <linux/capability.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <cstring>

#include "captures/capture_set.h"
#include "captures/pcap_bridge.h"
#include "capture_test_support.h"
#include "tests/support/netns.h"
#include "switch/fabric.h"

namespace twoostwo::captures {
namespace {

using namespace testing;
using twoostwo::testing::can_make_namespaces;
using twoostwo::testing::has_capability;
using twoostwo::testing::kNeedsRoot;
using twoostwo::testing::set_effective_capability;
using twoostwo::testing::VethNamespace;

// Errors that need no privileges.

TEST(PcapBridgeErrors, InvalidInterfaceNames) {
  boost::asio::io_context io;
  for (const std::string& name : {std::string(), std::string("a/b"), std::string("0123456789abcdef"),
                                 std::string("eth0:1"), std::string("with space"), std::string("..")}) {
    auto bridge = PcapBridge::open(io, "bridge", name);
    ASSERT_FALSE(bridge) << "'" << name << "'";
    EXPECT_EQ(bridge.error().message, "adapter '" + name + "': invalid interface name");
  }
}

TEST(PcapBridgeErrors, MissingInterface) {
  boost::asio::io_context io;
  const std::string name = fmt::format("t2tnx{}", ::getpid());
  ASSERT_EQ(if_nametoindex(name.c_str()), 0u) << "test precondition: " << name << " must not exist";
  auto bridge = PcapBridge::open(io, "bridge", name);
  ASSERT_FALSE(bridge);
  EXPECT_EQ(bridge.error().message, "adapter '" + name + "': no such interface");
}

::testing::AssertionResult ok(const RunResult& r, const std::vector<std::string>& argv) {
  std::string cmd;
  for (const auto& a : argv) cmd += a + " ";
  if (r.status == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << cmd << "exited " << r.status << ": " << r.err;
}

::testing::AssertionResult sh(const std::vector<std::string>& argv) { return ok(run(argv, 30s), argv); }

std::string python() { return ::access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3"; }

class NetnsBridgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!can_make_namespaces()) GTEST_SKIP() << kNeedsRoot;
    ASSERT_TRUE(readers_installed());
    for (const char* program : {"ip", "ping"}) {
      ASSERT_TRUE(have_program(program)) << program << " not found on PATH (Debian's iproute2 and iputils-ping)";
    }
  }
  // Make namespace `tag` with host address 10.99.0.<host> (removed when the
  // test ends).
  const VethNamespace& make(const std::string& tag, int host) {
    made_.push_back(std::make_unique<VethNamespace>(tag, fmt::format("10.99.0.{}/24", host)));
    return *made_.back();
  }

  // A counter of the namespace end (/sys is the namespace's under ip netns exec).
  uint64_t ns_counter(const VethNamespace& n, const std::string& counter) {
    const RunResult r =
        run({"ip", "netns", "exec", n.ns(), "cat", fmt::format("/sys/class/net/{}/statistics/{}", n.ns_end(), counter)});
    return std::strtoull(r.out.c_str(), nullptr, 10);
  }

  // Run a child to its end while the fabric runs.
  int run_with_fabric(Child& child, std::chrono::milliseconds timeout = 60s) {
    if (!pump_until(io_, [&] { return child.exited(); }, timeout)) return -1;
    return child.status();
  }

  PcapBridge* add_bridge(const std::string& name, const VethNamespace& n) {
    auto bridge = PcapBridge::open(io_, name, n.root_end());
    EXPECT_TRUE(bridge) << bridge.error().message;
    if (!bridge) return nullptr;
    auto port = fab_.add_port(std::move(*bridge));
    EXPECT_TRUE(port) << port.error().message;
    return port ? static_cast<PcapBridge*>(*port) : nullptr;
  }

  std::vector<std::unique_ptr<VethNamespace>> made_;
  boost::asio::io_context io_;
  fabric::Fabric fab_{io_};
};

// Two namespaces, each behind one bridge port on one learning switch: ping
// and a 1 MiB TCP transfer cross the fabric, checked end to end.
TEST_F(NetnsBridgeTest, PingAndTcpTransferCrossTheFabric) {
  const VethNamespace& a = make("a", 1);
  const VethNamespace& b = make("b", 2);
  ASSERT_FALSE(HasFailure());
  auto sw = fab_.add_switch("sw");
  ASSERT_TRUE(sw);
  PcapBridge* bridge_a = add_bridge("bridge:a", a);
  PcapBridge* bridge_b = add_bridge("bridge:b", b);
  ASSERT_TRUE(bridge_a && bridge_b);
  ASSERT_TRUE(fab_.connect("wire-a", *bridge_a, **(*sw)->add_port("a")));
  ASSERT_TRUE(fab_.connect("wire-b", *bridge_b, **(*sw)->add_port("b")));
  EXPECT_EQ(bridge_a->describe(), "adapter " + a.root_end());
  TempDir dir;
  auto captures = CaptureSet::start(fab_, dir.path());
  ASSERT_TRUE(captures) << captures.error().message;

  Child ping({"ip", "netns", "exec", a.ns(), "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", b.address()});
  ASSERT_EQ(run_with_fabric(ping, 30s), 0) << ping.out() << ping.err();
  EXPECT_NE(ping.out().find("3 packets transmitted, 3 received"), std::string::npos) << ping.out();

  const std::string server_py = fmt::format(
      "import socket, hashlib\n"
      "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
      "s.bind(('{}', 5555)); s.listen(1); s.settimeout(60)\n"
      "c, _ = s.accept(); c.settimeout(60); h = hashlib.sha256(); n = 0\n"
      "while True:\n"
      "    d = c.recv(65536)\n"
      "    if not d: break\n"
      "    h.update(d); n += len(d)\n"
      "c.close(); print(n, h.hexdigest())\n",
      b.address());
  const std::string client_py = fmt::format(
      "import socket, hashlib, random, time\n"
      "data = random.Random(2024).randbytes(1 << 20)\n"
      "for _ in range(100):\n"
      "    try:\n"
      "        c = socket.create_connection(('{}', 5555), timeout=60); break\n"
      "    except OSError: time.sleep(0.1)\n"
      "c.sendall(data); c.shutdown(socket.SHUT_WR)\n"
      "while c.recv(65536): pass\n"
      "print(len(data), hashlib.sha256(data).hexdigest())\n",
      b.address());
  Child server({"ip", "netns", "exec", b.ns(), python(), "-c", server_py});
  Child client({"ip", "netns", "exec", a.ns(), python(), "-c", client_py});
  ASSERT_TRUE(pump_until(io_, [&] { return server.exited() && client.exited(); }, 120s))
      << "server: " << server.err() << " client: " << client.err();
  ASSERT_EQ(client.status(), 0) << client.err();
  ASSERT_EQ(server.status(), 0) << server.err();
  EXPECT_TRUE(client.out().starts_with("1048576 ")) << client.out();
  EXPECT_EQ(server.out(), client.out()) << "bytes and SHA-256 received = sent";

  // Nothing came back or was lost on the way; the switch never saw a lab
  // address move.
  for (PcapBridge* bridge : {bridge_a, bridge_b}) {
    const auto& c = bridge->adapter_counters();
    EXPECT_EQ(c.echo_dropped, 0u) << bridge->name();
    EXPECT_EQ(c.oversized, 0u) << bridge->name();
    EXPECT_EQ(c.inject_errors, 0u) << bridge->name();
    EXPECT_GT(c.injected, 0u) << bridge->name();
    EXPECT_FALSE(bridge->error());
  }
  EXPECT_EQ((*sw)->mac_table().counters().moved, 0u);

  // The captures of both wires are readable and hold the pings both ways.
  ASSERT_TRUE((*captures)->stop());
  for (const char* link : {"wire-a", "wire-b"}) {
    const TsharkResult icmp = read_with_tshark(*(*captures)->path_of(link), "icmp");
    ASSERT_EQ(icmp.status, 0) << icmp.err;
    EXPECT_EQ(icmp.frames.size(), 6u) << link;
    const TsharkResult tcp = read_with_tshark(*(*captures)->path_of(link), "tcp.port == 5555");
    ASSERT_EQ(tcp.status, 0) << tcp.err;
    EXPECT_GT(tcp.frames.size(), 700u) << link << ": 1 MiB is at least 720 full segments";
    for (const auto& f : tcp.frames) ASSERT_LE(f.length, fabric::kMaxUntaggedFrame);
  }
}

// Lab-internal unicast stays inside; floods go out once; nothing injected
// comes back, nor what the host itself sends out of the adapter; a lab
// address reflected by the wire is dropped; runts from the adapter reach the
// lab padded to 60 bytes.
TEST_F(NetnsBridgeTest, LabUnicastStaysInsideAndInjectedFramesDoNotComeBack) {
  const VethNamespace& n = make("c", 1);
  ASSERT_FALSE(HasFailure());
  auto sw = fab_.add_switch("sw");
  ASSERT_TRUE(sw);
  PcapBridge* bridge = add_bridge("bridge:c", n);
  ASSERT_TRUE(bridge);
  auto x = fab_.add_port(std::make_unique<ScriptPort>("x"));
  auto y = fab_.add_port(std::make_unique<ScriptPort>("y"));
  ASSERT_TRUE(x && y);
  auto* px = static_cast<ScriptPort*>(*x);
  auto* py = static_cast<ScriptPort*>(*y);
  ASSERT_TRUE(fab_.connect("x-sw", *px, **(*sw)->add_port("x")));
  ASSERT_TRUE(fab_.connect("y-sw", *py, **(*sw)->add_port("y")));
  ASSERT_TRUE(fab_.connect("bridge-sw", *bridge, **(*sw)->add_port("bridge")));
  pump_for(io_, 100ms);
  const uint64_t ns_rx_before = ns_counter(n, "rx_packets");

  px->send(make_frame(kBroadcast, mac(0x0a), 60, 1));  // flooded: out of the bridge
  py->send(make_frame(mac(0x0a), mac(0x0b), 60, 2));   // to a known lab address: x only
  px->send(make_frame(mac(0x0b), mac(0x0a), 60, 3));   // y only
  px->send(make_frame(mac(0x0c), mac(0x0a), 60, 4));   // unknown unicast: flooded
  pump_for(io_, 300ms);

  const auto& c = bridge->adapter_counters();
  EXPECT_EQ(c.injected, 2u);
  EXPECT_EQ(bridge->counters().rx_frames, 2u);
  EXPECT_EQ(c.echo_dropped, 0u) << "injected frames were captured back (direction filter)";
  EXPECT_EQ(c.received, 0u) << "nothing came in from the quiet namespace";
  EXPECT_EQ(bridge->counters().tx_frames, 0u);
  EXPECT_EQ(ns_counter(n, "rx_packets") - ns_rx_before, 2u) << "the namespace got exactly the two floods";
  EXPECT_EQ(px->received.size(), 1u);  // frame 2
  EXPECT_EQ(py->received.size(), 3u);  // frames 1, 3 and 4

  // A frame the host itself sends out of the adapter (here from a packet
  // socket of the test's own) goes to the wire, not into the lab: the
  // bridge captures incoming frames only.
  {
    const int s = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    ASSERT_GE(s, 0);
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = static_cast<int>(if_nametoindex(n.root_end().c_str()));
    to.sll_halen = 6;
    std::memcpy(to.sll_addr, kBroadcast.data(), 6);
    const auto f = make_frame(kBroadcast, mac(0x77), 60, 5);
    EXPECT_EQ(::sendto(s, f.data(), f.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to), 60);
    ::close(s);
  }
  pump_for(io_, 200ms);
  EXPECT_EQ(ns_counter(n, "rx_packets") - ns_rx_before, 3u) << "the host's frame reached the namespace";
  EXPECT_EQ(c.received, 0u) << "the host's own outgoing frame was captured";
  EXPECT_EQ(px->received.size(), 1u);

  // The wire reflecting a lab frame (the namespace sends one with x's
  // source address): dropped as an echo, so the switch keeps x where it is.
  const std::string echo_py = fmt::format(
      "import socket\n"
      "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
      "s.bind(('{}', 0))\n"
      "s.send(bytes.fromhex('{}'))\n",
      n.ns_end(), hex(make_frame(kBroadcast, mac(0x0a), 60, 6)));
  Child echo({"ip", "netns", "exec", n.ns(), python(), "-c", echo_py});
  ASSERT_EQ(run_with_fabric(echo, 10s), 0) << echo.err();
  ASSERT_TRUE(pump_until(io_, [&] { return bridge->adapter_counters().received >= 1; }, 5s));
  pump_for(io_, 100ms);
  EXPECT_EQ(c.received, 1u);
  EXPECT_EQ(c.echo_dropped, 1u);
  EXPECT_EQ(px->received.size(), 1u);
  EXPECT_EQ(py->received.size(), 3u);
  EXPECT_EQ((*sw)->mac_table().counters().moved, 0u);

  // An ARP request from the namespace (42 bytes on a veth) arrives padded.
  Child arp({"ip", "netns", "exec", n.ns(), "ping", "-n", "-c", "1", "-W", "1", "10.99.0.77"});
  run_with_fabric(arp, 10s);
  ASSERT_GE(c.received, 2u);
  EXPECT_GE(c.padded, 1u);
  ASSERT_FALSE(px->received.size() < 2);
  const auto& request = px->received[1];
  EXPECT_EQ(request.size(), fabric::kMinFrame);
  EXPECT_EQ(static_cast<unsigned>(request[12]), 0x08u);
  EXPECT_EQ(static_cast<unsigned>(request[13]), 0x06u);
  EXPECT_TRUE(std::all_of(request.begin() + 42, request.end(), [](std::byte b) { return b == std::byte{0}; }));
}

TEST_F(NetnsBridgeTest, PermissionDeniedWithoutCapNetRaw) {
  const VethNamespace& n = make("d", 1);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(set_effective_capability(CAP_NET_RAW, false));
  auto bridge = PcapBridge::open(io_, "bridge:d", n.root_end());
  ASSERT_TRUE(set_effective_capability(CAP_NET_RAW, true));
  ASSERT_TRUE(has_capability(CAP_NET_RAW));
  ASSERT_FALSE(bridge);
  EXPECT_EQ(bridge.error().message, "adapter '" + n.root_end() + "': permission denied (needs CAP_NET_RAW)");
}

TEST_F(NetnsBridgeTest, AdapterRemovedWhileRunningTakesOnlyItsPortDown) {
  const VethNamespace& n = make("e", 1);
  ASSERT_FALSE(HasFailure());
  PcapBridge* bridge = add_bridge("bridge:e", n);
  ASSERT_TRUE(bridge);
  auto other = fab_.add_port(std::make_unique<ScriptPort>("other"));
  ASSERT_TRUE(other);
  ASSERT_TRUE(fab_.connect("wire-e", *bridge, **other));
  pump_for(io_, 50ms);
  ASSERT_TRUE(sh({"ip", "link", "del", n.root_end()}));
  ASSERT_TRUE(pump_until(io_, [&] { return bridge->error().has_value(); }, 5s));
  EXPECT_FALSE(bridge->up());
  EXPECT_NE(bridge->error()->message.find("adapter '" + n.root_end() + "'"), std::string::npos)
      << bridge->error()->message;
  // The rest of the fabric is untouched.
  static_cast<ScriptPort*>(*other)->send(make_frame(kBroadcast, mac(1), 60, 0));
  EXPECT_EQ((*other)->counters().tx_frames, 1u);
  EXPECT_EQ(bridge->counters().rx_dropped, 1u) << "a down port drops what it is delivered";
}

}  // namespace
}  // namespace twoostwo::captures
