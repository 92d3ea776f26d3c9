// SocketPort over real sockets on this machine: SOCK_SEQPACKET pairs (a
// monitor's NIC) and UDP tunnels on loopback; batching, backpressure with a
// bounded queue, peers that close, oversized messages (switch/socket_port.h).
#include "switch/socket_port.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "fabric_test_support.h"
#include "switch/fabric.h"
#include "switch/link.h"

namespace twoostwo::fabric {
namespace {

using testing::kBroadcast;
using testing::mac;
using testing::make_frame;
using testing::TestPort;

std::vector<std::byte> recv_one(int fd) {
  std::vector<std::byte> buffer(2048);
  const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
  if (n < 0) return {};
  buffer.resize(static_cast<size_t>(n));
  return buffer;
}

// Run the loop until `done` or 5 s pass.
template <class Done>
bool run_until(boost::asio::io_context& io, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    io.restart();
    io.run_for(std::chrono::milliseconds(10));
  }
  return true;
}

struct SeqpacketBench {
  SeqpacketBench() {
    auto made = SocketPort::seqpacket_pair(io, "vm:eth0", {.queue_frames = 32});
    EXPECT_TRUE(made.has_value());
    port = std::move(*made);
    monitor_fd = port->take_peer_fd();
    link = std::move(*Link::connect("l", *port, host));
  }
  ~SeqpacketBench() {
    if (monitor_fd >= 0) ::close(monitor_fd);
  }
  boost::asio::io_context io;
  std::unique_ptr<SocketPort> port;
  TestPort host{"sw:1"};
  std::unique_ptr<Link> link;
  int monitor_fd = -1;
};

TEST(SocketPort, SeqpacketCarriesFramesBothWaysInOrder) {
  SeqpacketBench b;
  ASSERT_GE(b.monitor_fd, 0);
  EXPECT_EQ(b.port->take_peer_fd(), -1) << "handed out once";
  std::vector<std::vector<std::byte>> sent;
  for (uint8_t i = 0; i < 200; ++i) {
    sent.push_back(make_frame(kBroadcast, mac(1), 46 + i, i));
    ASSERT_EQ(::send(b.monitor_fd, sent.back().data(), sent.back().size(), 0), static_cast<ssize_t>(sent.back().size()));
  }
  ASSERT_TRUE(run_until(b.io, [&] { return b.host.received.size() == sent.size(); }));
  EXPECT_EQ(b.host.received, sent);
  EXPECT_LT(b.port->socket_counters().recv_calls, 20u) << "read in batches, not one call per frame";
  EXPECT_EQ(b.port->counters().tx_frames, 200u);

  // The other way: frames delivered in one turn leave in one sendmmsg.
  for (uint8_t i = 0; i < 10; ++i) b.host.inject(make_frame(mac(1), mac(2), 46, i));
  EXPECT_EQ(b.port->queued(), 10u);
  ASSERT_TRUE(run_until(b.io, [&] { return b.port->queued() == 0; }));
  EXPECT_EQ(b.port->socket_counters().send_calls, 1u);
  for (uint8_t i = 0; i < 10; ++i) EXPECT_EQ(recv_one(b.monitor_fd), make_frame(mac(1), mac(2), 46, i)) << int{i};
  EXPECT_TRUE(recv_one(b.monitor_fd).empty());
}

TEST(SocketPort, FullSocketQueuesThenDropsAndCounts) {
  SeqpacketBench b;
  // The monitor does not read: the socket buffer fills, then the 32-frame
  // queue, then frames are dropped and counted.
  const auto frame = make_frame(mac(1), mac(2), kMaxUntaggedFrame - 14);
  size_t delivered = 0;
  for (int round = 0; round < 100 && b.port->socket_counters().queue_full == 0; ++round) {
    for (int i = 0; i < 20; ++i, ++delivered) b.host.inject(frame);  // fewer than the queue holds
    b.io.restart();
    b.io.poll();
  }
  const uint64_t dropped = b.port->socket_counters().queue_full;
  ASSERT_GT(dropped, 0u) << "backpressure must end in counted drops";
  EXPECT_EQ(b.port->counters().rx_dropped, dropped);
  EXPECT_EQ(b.port->queued(), 32u);
  // The monitor reads everything: what was not dropped arrives.
  size_t got = 0;
  const bool drained = run_until(b.io, [&] {
    while (!recv_one(b.monitor_fd).empty()) ++got;
    return b.port->queued() == 0 && got == delivered - dropped;
  });
  EXPECT_TRUE(drained) << "got " << got << " of " << delivered - dropped;
}

TEST(SocketPort, PeerClosingTakesThePortDownAndReportsIt) {
  SeqpacketBench b;
  int closed = 0;
  std::vector<int> order;
  b.port->on_peer_closed([&] {
    ++closed;
    order.push_back(1);
  });
  b.port->on_peer_closed([&] { order.push_back(2); });
  const auto frame = make_frame(kBroadcast, mac(1));
  ASSERT_GT(::send(b.monitor_fd, frame.data(), frame.size(), 0), 0);
  ::close(b.monitor_fd);
  b.monitor_fd = -1;
  ASSERT_TRUE(run_until(b.io, [&] { return closed == 1; }));
  EXPECT_EQ(b.host.received.size(), 1u) << "the frame sent before closing still arrives";
  EXPECT_TRUE(b.port->peer_closed());
  EXPECT_FALSE(b.port->up());
  b.host.inject(frame);
  EXPECT_EQ(b.port->counters().rx_dropped, 1u);
  b.io.restart();
  b.io.poll();
  EXPECT_EQ(closed, 1) << "reported once";
  EXPECT_EQ(order, (std::vector<int>{1, 2})) << "every callback, in the order added";
}

TEST(SocketPort, OversizedMessagesAreDroppedAndCounted) {
  SeqpacketBench b;
  const std::vector<std::byte> big(4000, std::byte{0xff});
  const auto good = make_frame(kBroadcast, mac(1));
  ASSERT_GT(::send(b.monitor_fd, big.data(), big.size(), 0), 0);
  ASSERT_GT(::send(b.monitor_fd, good.data(), good.size(), 0), 0);
  ASSERT_TRUE(run_until(b.io, [&] { return b.host.received.size() == 1; }));
  EXPECT_EQ(b.host.received[0], good);
  EXPECT_EQ(b.port->socket_counters().oversized, 1u);
  EXPECT_EQ(b.port->counters().tx_dropped, 1u);
}

TEST(SocketPort, AdoptRefusesWhatIsNotASeqpacketSocket) {
  boost::asio::io_context io;
  auto bad = SocketPort::adopt_seqpacket(io, "p", 999);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("port 'p': fd 999 is not a socket"), std::string::npos) << bad.error().message;
  const int udp = ::socket(AF_INET, SOCK_DGRAM, 0);
  auto wrong = SocketPort::adopt_seqpacket(io, "p", udp);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().message, "port 'p': fd " + std::to_string(udp) + " is not a SOCK_SEQPACKET socket (type 2)");
  ::close(udp);
}

TEST(SocketPort, AdoptedAndPairedSocketsGetLargeBuffers) {
  // 1 MiB each way (the kernel reports twice what was set, socket(7)); without
  // CAP_NET_ADMIN, net.core.wmem_max caps it.
  auto buffer = [](int fd, int option) {
    int value = 0;
    socklen_t length = sizeof value;
    EXPECT_EQ(::getsockopt(fd, SOL_SOCKET, option, &value, &length), 0);
    return value;
  };
  int expected = 2 << 20;
  if (::geteuid() != 0) {
    std::ifstream wmem("/proc/sys/net/core/wmem_max");
    int cap = 0;
    if (wmem >> cap) expected = std::min(expected, 2 * cap);
  }
  boost::asio::io_context io;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  EXPECT_LT(buffer(sv[0], SO_SNDBUF), expected) << "a fresh socket starts smaller";
  auto adopted = SocketPort::adopt_seqpacket(io, "p", sv[0]);
  ASSERT_TRUE(adopted.has_value()) << adopted.error().message;
  EXPECT_GE(buffer(sv[0], SO_SNDBUF), expected);
  EXPECT_GE(buffer(sv[0], SO_RCVBUF), ::geteuid() == 0 ? expected : 0);
  ::close(sv[1]);
  auto pair = SocketPort::seqpacket_pair(io, "q");
  ASSERT_TRUE(pair.has_value()) << pair.error().message;
  const int peer = (*pair)->take_peer_fd();
  EXPECT_GE(buffer(peer, SO_SNDBUF), expected);
  ::close(peer);
}

TEST(SocketPort, UdpTunnelSpeaksOneFramePerDatagram) {
  // The far end: a plain UDP socket, as QEMU's -netdev dgram opens one.
  const int peer = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(peer, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  socklen_t length = sizeof address;
  ::getsockname(peer, reinterpret_cast<sockaddr*>(&address), &length);
  const std::string peer_text = "127.0.0.1:" + std::to_string(ntohs(address.sin_port));

  boost::asio::io_context io;
  auto made = SocketPort::udp(io, "qemu", "127.0.0.1:0", peer_text);
  ASSERT_TRUE(made.has_value()) << made.error().message;
  auto& port = **made;
  const std::string local = port.local_address();
  EXPECT_EQ(port.describe(), "udp " + local + " -> " + peer_text);
  TestPort host("sw:1");
  auto link = Link::connect("l", port, host);

  // QEMU → fabric.
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(static_cast<uint16_t>(std::stoi(local.substr(local.rfind(':') + 1))));
  const auto f1 = make_frame(kBroadcast, mac(0x5254), 60);
  ASSERT_GT(::sendto(peer, f1.data(), f1.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
  ASSERT_TRUE(run_until(io, [&] { return host.received.size() == 1; }));
  EXPECT_EQ(host.received[0], f1);
  // Fabric → QEMU.
  const auto f2 = make_frame(mac(0x5254), mac(1), 100, 3);
  host.inject(f2);
  std::vector<std::byte> got;
  ASSERT_TRUE(run_until(io, [&] {
    got = recv_one(peer);
    return !got.empty();
  }));
  EXPECT_EQ(got, f2);
  ::close(peer);
}

TEST(SocketPort, UdpAddressErrorsNameTheField) {
  boost::asio::io_context io;
  auto a = SocketPort::udp(io, "t", "127.0.0.1", "127.0.0.1:1");
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().message, "port 't': local address '127.0.0.1': expected HOST:PORT");
  auto b = SocketPort::udp(io, "t", "127.0.0.1:0", "127.0.0.1:70000");
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error().message, "port 't': remote address '127.0.0.1:70000': port '70000' is not a number 0..65535");
  auto c = SocketPort::udp(io, "t", "no.such.host.invalid:1", "127.0.0.1:1");
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message.find("unknown host 'no.such.host.invalid'"), std::string::npos) << c.error().message;
}

TEST(Fabric, NamesAreUniqueAndEverythingIsFound) {
  boost::asio::io_context io;
  Fabric fabric(io);
  auto sw = fabric.add_switch("sw1");
  ASSERT_TRUE(sw.has_value());
  EXPECT_FALSE(fabric.add_switch("sw1").has_value());
  auto p1 = fabric.add_seqpacket_port("alice:eth0");
  auto p2 = fabric.add_seqpacket_port("bob:eth0");
  ASSERT_TRUE(p1 && p2);
  auto dup = fabric.add_seqpacket_port("alice:eth0");
  ASSERT_FALSE(dup.has_value());
  EXPECT_EQ(dup.error().message, "port 'alice:eth0' already exists");
  auto s1 = (*sw)->add_port("1"), s2 = (*sw)->add_port("2");
  EXPECT_FALSE(fabric.add_port(std::make_unique<TestPort>("sw1:1")).has_value()) << "switch port names count";
  ASSERT_TRUE(fabric.connect("alice-sw1", **p1, **s1).has_value());
  ASSERT_TRUE(fabric.connect("bob-sw1", **p2, **s2).has_value());
  EXPECT_FALSE(fabric.connect("alice-sw1", **p1, **s2).has_value());
  EXPECT_EQ(fabric.find_port("sw1:2"), *s2);
  EXPECT_EQ(fabric.find_link("bob-sw1")->peer(**p2).name(), "sw1:2");
  EXPECT_EQ(fabric.ports().size(), 4u);
  EXPECT_EQ(fabric.links().size(), 2u);

  // Two "monitors" talk through the switch.
  const int alice = (*p1)->take_peer_fd(), bob = (*p2)->take_peer_fd();
  const auto hello = make_frame(kBroadcast, mac(1));
  ASSERT_GT(::send(alice, hello.data(), hello.size(), 0), 0);
  std::vector<std::byte> got;
  ASSERT_TRUE(run_until(io, [&] {
    got = recv_one(bob);
    return !got.empty();
  }));
  EXPECT_EQ(got, hello);
  const auto reply = make_frame(mac(1), mac(2));
  ASSERT_GT(::send(bob, reply.data(), reply.size(), 0), 0);
  ASSERT_TRUE(run_until(io, [&] {
    got = recv_one(alice);
    return !got.empty();
  }));
  EXPECT_EQ(got, reply);
  EXPECT_EQ((*sw)->counters().forwarded, 1u);
  ::close(alice);
  ::close(bob);
}

}  // namespace
}  // namespace twoostwo::fabric
