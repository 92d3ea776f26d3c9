// --nic parsing, default MACs, the socket backends (fd and UDP) and the
// wiring of the cards into the machine (vmcore/nics.h, net_backends.h).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "nic/dp8390.h"
#include "vmcore/cpu_engine.h"
#include "vmcore/devices/pci_host.h"
#include "vmcore/devices/pic.h"
#include "vmcore/machine.h"
#include "vmcore/net_backends.h"
#include "vmcore/nics.h"

namespace twoostwo::vmcore {
namespace {

using namespace std::chrono_literals;

TEST(NicSpec, ParsesEveryKey) {
  auto s = parse_nic_spec("model=ne2000,mac=52:54:00:12:34:56,backend=udp,local=127.0.0.1:1,remote=127.0.0.1:2,"
                          "io=0x320,irq=10");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->model, NicSpec::Model::kNe2000);
  EXPECT_EQ(*s->mac, (nic::MacAddress{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}));
  EXPECT_EQ(s->backend, NicSpec::Backend::kUdp);
  EXPECT_EQ(s->local, "127.0.0.1:1");
  EXPECT_EQ(s->remote, "127.0.0.1:2");
  EXPECT_EQ(*s->io, 0x320);
  EXPECT_EQ(*s->irq, 10);
  auto d = parse_nic_spec("backend=fd,fd=3");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->model, NicSpec::Model::kRtl8029);
  EXPECT_EQ(d->fd, 3);
  auto e = parse_nic_spec("");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->backend, NicSpec::Backend::kNone);
}

TEST(NicSpec, ErrorsNameTheProblem) {
  auto msg = [](const char* spec) {
    auto s = parse_nic_spec(spec);
    return s ? std::string("(accepted)") : s.error().message;
  };
  EXPECT_EQ(msg("model=e1000"), "--nic 'model=e1000': unknown model 'e1000' (expected rtl8029 or ne2000)");
  EXPECT_EQ(msg("modle=ne2000"),
            "--nic 'modle=ne2000': unknown key 'modle' (expected model, mac, backend, fd, local, remote, io, irq)");
  EXPECT_EQ(msg("backend=fd"), "--nic 'backend=fd': backend=fd needs fd=N");
  EXPECT_EQ(msg("backend=udp,local=127.0.0.1:1"),
            "--nic 'backend=udp,local=127.0.0.1:1': backend=udp needs local=HOST:PORT and remote=HOST:PORT");
  EXPECT_EQ(msg("model=rtl8029,irq=9"),
            "--nic 'model=rtl8029,irq=9': io= and irq= are for model=ne2000 (a PCI card gets its resources like from "
            "firmware)");
  EXPECT_EQ(msg("model=ne2000,io=0x3f8"),
            "--nic 'model=ne2000,io=0x3f8': io=0x3f8: an NE2000's jumpers offer 0x200-0x3e0 in steps of 0x20");
  EXPECT_EQ(msg("model=ne2000,irq=4"),
            "--nic 'model=ne2000,irq=4': irq=4 is not free for an ISA card on this PC (expected 5, 7, 9, 10, 11 or 12)");
  EXPECT_EQ(msg("mac=01:00:5e:00:00:01"),
            "--nic 'mac=01:00:5e:00:00:01': MAC address '01:00:5e:00:00:01' is a multicast address (bit 0 of the "
            "first byte)");
  EXPECT_EQ(msg("mac=52:54:00:12:34"),
            "--nic 'mac=52:54:00:12:34': MAC address '52:54:00:12:34': expected six hex bytes like 52:54:00:12:34:56");
  EXPECT_EQ(msg("irq=nine,model=ne2000"), "--nic 'irq=nine,model=ne2000': irq='nine' is not a number from 0 to 0xf");
  EXPECT_EQ(msg("model"), "--nic 'model': 'model' is not KEY=VALUE");
}

TEST(NicSpec, DefaultMacsAreLocallyAdministeredAndStable) {
  const nic::MacAddress a0 = default_mac("alice", 0), a1 = default_mac("alice", 1), b0 = default_mac("bob", 0);
  EXPECT_EQ(a0[0], 0x02);  // locally administered, unicast
  EXPECT_EQ(a0, default_mac("alice", 0));
  EXPECT_NE(a0, a1);
  EXPECT_NE(a0, b0);
  EXPECT_EQ(a1[5], 1);
  EXPECT_EQ(nic::format_mac(nic::MacAddress{0x02, 0x2f, 0xab, 0x00, 0x01, 0xff}), "02:2f:ab:00:01:ff");
}

/// Runs an io_context on its own thread for a test.
struct IoThread {
  boost::asio::io_context io;
  // The guard exists before the thread runs io.run(), or run() could find no
  // work and return at once.
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work =
      std::make_unique<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(io.get_executor());
  std::thread thread;
  IoThread() : thread([this] { io.run(); }) {}
  ~IoThread() {
    work.reset();
    io.stop();
    thread.join();
  }
};

/// Collects frames handed over on the I/O thread.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::vector<std::byte>> frames;
  SocketBackend::FrameHandler handler() {
    return [this](std::span<const std::byte> f) {
      std::lock_guard lock(mu);
      frames.emplace_back(f.begin(), f.end());
      cv.notify_all();
    };
  }
  bool wait_for(size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 5s, [&] { return frames.size() >= n; });
  }
};

std::vector<std::byte> frame_of(size_t size, uint8_t fill) { return std::vector<std::byte>(size, std::byte{fill}); }

/// A SOCK_SEQPACKET socketpair: `fd` for the monitor's side, `peer` the
/// fabric's side (closed at the end unless the test closed it with
/// close_peer()).
class SeqpacketPair : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    fd = sv[0];
    peer = sv[1];
  }
  void TearDown() override { close_peer(); }
  void close_peer() {
    if (peer >= 0) ::close(peer);
    peer = -1;
  }
  int fd = -1, peer = -1;
};

/// A SocketBackend that adopted `fd`.
class AdoptedSeqpacket : public SeqpacketPair {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(SeqpacketPair::SetUp());
    auto adopted = SocketBackend::adopt_fd(fd);
    ASSERT_TRUE(adopted) << adopted.error().message;
    b = std::move(*adopted);
  }
  std::unique_ptr<SocketBackend> b;
};

TEST_F(AdoptedSeqpacket, SeqpacketFdCarriesOneFramePerMessageBothWays) {
  EXPECT_EQ(b->description(), "fd " + std::to_string(fd) + " (seqpacket)");
  Inbox inbox;
  IoThread io;
  b->start(io.io, inbox.handler());
  // Monitor -> peer: message boundaries kept.
  b->send(frame_of(60, 0xAA));
  b->send(frame_of(1514, 0xBB));
  uint8_t buf[2000];
  EXPECT_EQ(::recv(peer, buf, sizeof buf, 0), 60);
  EXPECT_EQ(buf[59], 0xAA);
  EXPECT_EQ(::recv(peer, buf, sizeof buf, 0), 1514);
  EXPECT_EQ(buf[1513], 0xBB);
  // Peer -> monitor.
  const auto f1 = frame_of(64, 1), f2 = frame_of(1000, 2);
  ASSERT_EQ(::send(peer, f1.data(), f1.size(), 0), 64);
  ASSERT_EQ(::send(peer, f2.data(), f2.size(), 0), 1000);
  ASSERT_TRUE(inbox.wait_for(2));
  EXPECT_EQ(inbox.frames[0], f1);
  EXPECT_EQ(inbox.frames[1], f2);
  // The peer goes away: noticed, sends are counted as dropped, nothing crashes.
  close_peer();
  for (int k = 0; k < 200 && !b->peer_closed(); ++k) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(b->peer_closed());
  b->send(frame_of(60, 0xCC));
  const auto c = b->counters();
  EXPECT_EQ(c.tx_frames, 2u);
  EXPECT_EQ(c.tx_dropped, 1u);
  EXPECT_EQ(c.rx_frames, 2u);
  b->stop();
}

TEST_F(AdoptedSeqpacket, ReceiveNowAndTheIoThreadKeepFramesInOrder) {
  EXPECT_EQ(b->fd(), fd);
  Inbox io_inbox, now_inbox;
  std::atomic<bool> defer{true};
  IoThread io;
  b->start(io.io, io_inbox.handler(), [&] { return defer.load(); });
  // Deferred: the I/O thread wakes for these but leaves them on the socket.
  for (uint8_t k = 1; k <= 3; ++k) {
    const auto f = frame_of(60 + k, k);
    ASSERT_EQ(::send(peer, f.data(), f.size(), 0), static_cast<ssize_t>(f.size()));
  }
  std::this_thread::sleep_for(50ms);
  {
    std::lock_guard lock(io_inbox.mu);
    EXPECT_TRUE(io_inbox.frames.empty());
  }
  EXPECT_EQ(b->receive_now(now_inbox.handler()), 3u);
  ASSERT_EQ(now_inbox.frames.size(), 3u);
  for (uint8_t k = 1; k <= 3; ++k) EXPECT_EQ(now_inbox.frames[k - 1], frame_of(60 + k, k));
  EXPECT_EQ(b->receive_now(now_inbox.handler()), 0u);  // nothing waits: returns at once
  // Not deferred: the I/O thread receives again once resumed.
  defer = false;
  b->resume();
  const auto f4 = frame_of(100, 4);
  ASSERT_EQ(::send(peer, f4.data(), f4.size(), 0), 100);
  ASSERT_TRUE(io_inbox.wait_for(1));
  EXPECT_EQ(io_inbox.frames[0], f4);
  // Both receiving at once: every frame exactly once, in order within each
  // receiver, and the two receivers' shares interleave only at frame
  // boundaries (the sequence numbers merge back into 0..N-1).
  constexpr unsigned kFrames = 400;
  std::thread sender([&] {
    for (unsigned k = 0; k < kFrames; ++k) {
      std::vector<std::byte> f(64, std::byte{0});
      std::memcpy(f.data(), &k, sizeof k);
      while (::send(peer, f.data(), f.size(), 0) != 64) std::this_thread::sleep_for(1ms);
    }
  });
  std::vector<unsigned> by_now;
  auto collect = [&](std::span<const std::byte> f) {
    unsigned k;
    std::memcpy(&k, f.data(), sizeof k);
    by_now.push_back(k);
  };
  for (int spins = 0; spins < 2000; ++spins) {
    b->receive_now(collect);
    size_t io_count;
    {
      std::lock_guard lock(io_inbox.mu);
      io_count = io_inbox.frames.size() - 1;  // minus f4
    }
    if (by_now.size() + io_count == kFrames) break;
    std::this_thread::sleep_for(1ms);
  }
  sender.join();
  std::vector<unsigned> by_io;
  {
    std::lock_guard lock(io_inbox.mu);
    for (size_t i = 1; i < io_inbox.frames.size(); ++i) {
      unsigned k;
      std::memcpy(&k, io_inbox.frames[i].data(), sizeof k);
      by_io.push_back(k);
    }
  }
  ASSERT_EQ(by_now.size() + by_io.size(), kFrames);
  EXPECT_TRUE(std::is_sorted(by_now.begin(), by_now.end()));
  EXPECT_TRUE(std::is_sorted(by_io.begin(), by_io.end()));
  std::vector<unsigned> all = by_now;
  all.insert(all.end(), by_io.begin(), by_io.end());
  std::sort(all.begin(), all.end());
  for (unsigned k = 0; k < kFrames; ++k) ASSERT_EQ(all[k], k);
  EXPECT_EQ(b->counters().rx_frames, 4u + kFrames);
  // A closed peer: receive_now says nothing more and keeps saying so.
  close_peer();
  b->receive_now(collect);
  EXPECT_TRUE(b->peer_closed());
  EXPECT_EQ(b->receive_now(collect), 0u);
  b->stop();
}

// While deferred, the I/O thread wakes once for waiting frames and then
// leaves the socket alone until resume(), instead of waking again and again
// while the frames wait for the poller (a busy loop that took a core from
// the halted guest's own thread: 0.66 ms per ping on a two-core host).
TEST_F(AdoptedSeqpacket, ADeferringIoThreadWakesOnceNotUntilThePollerReceives) {
  Inbox io_inbox, now_inbox;
  std::atomic<bool> defer{true};
  std::atomic<int> asked{0};
  IoThread io;
  b->start(io.io, io_inbox.handler(), [&] {
    ++asked;
    return defer.load();
  });
  const auto f1 = frame_of(60, 1);
  ASSERT_EQ(::send(peer, f1.data(), f1.size(), 0), 60);
  std::this_thread::sleep_for(100ms);
  EXPECT_GE(asked.load(), 1) << "the I/O thread saw the frame";
  EXPECT_LE(asked.load(), 2) << "and did not keep waking for it";
  EXPECT_EQ(b->receive_now(now_inbox.handler()), 1u);
  // Frames that come while it is parked wait for the poller too.
  const auto f2 = frame_of(61, 2);
  ASSERT_EQ(::send(peer, f2.data(), f2.size(), 0), 61);
  std::this_thread::sleep_for(50ms);
  {
    std::lock_guard lock(io_inbox.mu);
    EXPECT_TRUE(io_inbox.frames.empty());
  }
  // The poller stops: resume() hands the socket back, and the I/O thread
  // takes what waits and what comes next.
  defer = false;
  b->resume();
  ASSERT_TRUE(io_inbox.wait_for(1));
  const auto f3 = frame_of(62, 3);
  ASSERT_EQ(::send(peer, f3.data(), f3.size(), 0), 62);
  ASSERT_TRUE(io_inbox.wait_for(2));
  EXPECT_EQ(io_inbox.frames[0], f2);
  EXPECT_EQ(io_inbox.frames[1], f3);
  b->resume();  // not parked: nothing happens
  b->stop();
}

TEST_F(AdoptedSeqpacket, WithoutRoomFramesWaitOnTheSocket) {
  unsigned room = 2;  // frames the receiver can take
  b->set_room([&] { return room > 0; });
  Inbox inbox;
  auto take = [&](std::span<const std::byte> f) {
    --room;
    inbox.handler()(f);
  };
  for (uint8_t k = 0; k < 5; ++k) {
    const auto f = frame_of(60, k);
    ASSERT_EQ(::send(peer, f.data(), f.size(), 0), 60);
  }
  EXPECT_FALSE(b->held_back());
  EXPECT_EQ(b->receive_now(take), 2u);
  EXPECT_TRUE(b->held_back());
  EXPECT_EQ(b->receive_now(take), 0u);  // still no room: nothing read, nothing lost
  room = 10;
  EXPECT_EQ(b->receive_now(take), 3u);
  EXPECT_FALSE(b->held_back());  // the socket is empty again
  ASSERT_EQ(inbox.frames.size(), 5u);
  for (uint8_t k = 0; k < 5; ++k) EXPECT_EQ(inbox.frames[k], frame_of(60, k));
  EXPECT_EQ(b->counters().rx_frames, 5u);
  close_peer();
}

TEST(SocketBackend, AdoptRefusesWhatIsNotAFrameSocket) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  auto b = SocketBackend::adopt_fd(sv[0]);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().message, "fd " + std::to_string(sv[0]) +
                                   ": a SOCK_STREAM socket (expected SOCK_SEQPACKET or SOCK_DGRAM: one frame per "
                                   "message)");
  ::close(sv[0]);
  ::close(sv[1]);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  auto p = SocketBackend::adopt_fd(pipefd[0]);
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message.find("not a socket"), std::string::npos) << p.error().message;
  ::close(pipefd[0]);
  ::close(pipefd[1]);
}

TEST(SocketBackend, UdpSpeaksQemusDgramFraming) {
  // A plain UDP socket stands in for QEMU's -netdev dgram: one raw frame per datagram.
  const int peer = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in pa{};
  pa.sin_family = AF_INET;
  pa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(peer, reinterpret_cast<sockaddr*>(&pa), sizeof pa), 0);
  socklen_t len = sizeof pa;
  ASSERT_EQ(::getsockname(peer, reinterpret_cast<sockaddr*>(&pa), &len), 0);
  const int peer_port = ntohs(pa.sin_port);
  // Find a free local port for the backend.
  const int probe = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in la{};
  la.sin_family = AF_INET;
  la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(probe, reinterpret_cast<sockaddr*>(&la), sizeof la), 0);
  len = sizeof la;
  ASSERT_EQ(::getsockname(probe, reinterpret_cast<sockaddr*>(&la), &len), 0);
  const int local_port = ntohs(la.sin_port);
  ::close(probe);

  auto b = SocketBackend::udp("127.0.0.1:" + std::to_string(local_port), "127.0.0.1:" + std::to_string(peer_port));
  ASSERT_TRUE(b) << b.error().message;
  Inbox inbox;
  IoThread io;
  (*b)->start(io.io, inbox.handler());
  (*b)->send(frame_of(98, 0x42));
  uint8_t buf[2000];
  sockaddr_in from{};
  len = sizeof from;
  ASSERT_EQ(::recvfrom(peer, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len), 98);
  EXPECT_EQ(buf[0], 0x42);
  EXPECT_EQ(ntohs(from.sin_port), local_port);
  const auto reply = frame_of(1514, 0x24);
  ASSERT_EQ(::sendto(peer, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), len), 1514);
  ASSERT_TRUE(inbox.wait_for(1));
  EXPECT_EQ(inbox.frames[0], reply);
  (*b)->stop();
  ::close(peer);
}

TEST(SocketBackend, UdpAddressErrors) {
  auto bad = SocketBackend::udp("127.0.0.1", "127.0.0.1:1");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "udp local address '127.0.0.1': expected HOST:PORT");
  auto port = SocketBackend::udp("127.0.0.1:99999", "127.0.0.1:1");
  ASSERT_FALSE(port);
  EXPECT_EQ(port.error().message, "udp local address '127.0.0.1:99999': bad port '99999'");
}

struct MachineRig {
  std::vector<uint8_t> ram = std::vector<uint8_t>(1 << 20);
  HostClock clock;
  std::unique_ptr<Machine> machine;
  MachineRig() {
    MachineConfig mc;
    mc.memory = bus::GuestMemory(ram.data(), ram.size());
    mc.clock = &clock;
    auto m = Machine::create(std::move(mc));
    EXPECT_TRUE(m);
    machine = std::move(*m);
  }
  void pci_write(unsigned slot, unsigned reg, uint32_t value) {
    uint8_t a[4];
    bus::store_le(a, 0x80000000u | (slot << 11) | reg);
    machine->io_bus().write(0xCF8, a);
    uint8_t d[4];
    bus::store_le(d, value);
    machine->io_bus().write(0xCFC, d);
  }
  uint32_t pci_read(unsigned slot, unsigned reg) {
    const uint32_t addr = 0x80000000u | (slot << 11) | reg;
    uint8_t a[4];
    bus::store_le(a, addr);
    machine->io_bus().write(0xCF8, a);
    uint8_t d[4];
    machine->io_bus().read(0xCFC, d);
    return bus::load_le(d);
  }
};

TEST(NicSet, WiresCardsAsFirmwareWould) {
  MachineRig rig;
  auto isa = parse_nic_spec("model=ne2000");
  auto pci0 = parse_nic_spec("model=rtl8029");
  auto pci1 = parse_nic_spec("model=rtl8029,mac=52:54:00:00:00:07");
  ASSERT_TRUE(isa && pci0 && pci1);
  auto set = NicSet::create({*pci0, *isa, *pci1}, "vm1", *rig.machine);
  ASSERT_TRUE(set) << set.error().message;
  EXPECT_EQ((*set)->size(), 3u);
  // The ISA card answers at 0x300: CR reads 0x21 after power-on (stopped, no DMA).
  uint8_t cr = 0;
  rig.machine->io_bus().read(0x300, std::span<uint8_t>(&cr, 1));
  EXPECT_EQ(cr, 0x21);
  // PCI cards take slots 3, 4, ... in their --nic order.
  EXPECT_EQ(rig.pci_read(3, 0x00), 0x802910ecu);
  EXPECT_EQ(rig.pci_read(4, 0x00), 0x802910ecu);
  EXPECT_EQ(rig.pci_read(3, 0x10), 0xC001u);  // BAR0: I/O at 0xc000
  EXPECT_EQ(rig.pci_read(4, 0x10), 0xC101u);
  EXPECT_EQ(rig.pci_read(3, 0x3C) & 0xFF, 11u);  // IRQ 9 is the ISA card's: PCI gets 11, 10
  EXPECT_EQ(rig.pci_read(4, 0x3C) & 0xFF, 10u);
  EXPECT_EQ(rig.pci_read(3, 0x3C) >> 8 & 0xFF, 1u);  // INTA#
  rig.machine->io_bus().read(0xC000, std::span<uint8_t>(&cr, 1));
  EXPECT_EQ(cr, 0x21);
  EXPECT_EQ(rig.machine->pic_pair().elcr() & ((1u << 11) | (1u << 10)), (1u << 11) | (1u << 10));
  EXPECT_EQ(rig.machine->pic_pair().elcr() & (1u << 9), 0u);  // the ISA card is edge-triggered
  const auto lines = (*set)->describe();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].rfind("nic0: rtl8029 " + nic::format_mac(default_mac("vm1", 0)) + " pci slot 3 io 0xc000 irq 11, no backend",
                           0),
            0u)
      << lines[0];
  EXPECT_EQ(lines[1].rfind("nic1: ne2000 " + nic::format_mac(default_mac("vm1", 1)) + " io 0x300 irq 9", 0), 0u)
      << lines[1];
  EXPECT_EQ(lines[2].rfind("nic2: rtl8029 52:54:00:00:00:07 pci slot 4 io 0xc100 irq 10", 0), 0u) << lines[2];
}

TEST(NicSet, ConflictsAreClearErrors) {
  {
    MachineRig rig;
    auto a = parse_nic_spec("model=ne2000,io=0x300,irq=9");
    auto b = parse_nic_spec("model=ne2000,io=0x320,irq=9");
    auto set = NicSet::create({*a, *b}, "vm", *rig.machine);
    ASSERT_FALSE(set);
    EXPECT_EQ(set.error().message, "nic0 (ne2000): irq=9 is also another ISA card's (give each ne2000 its own irq=)");
  }
  {
    MachineRig rig;
    auto a = parse_nic_spec("model=ne2000,io=0x300,irq=9");
    auto b = parse_nic_spec("model=ne2000,io=0x300,irq=10");
    auto set = NicSet::create({*a, *b}, "vm", *rig.machine);
    ASSERT_FALSE(set);
    EXPECT_NE(set.error().message.find("nic1 (ne2000): io=0x300: "), std::string::npos) << set.error().message;
  }
  {
    MachineRig rig;
    auto a = parse_nic_spec("mac=52:54:00:00:00:01");
    auto set = NicSet::create({*a, *a}, "vm", *rig.machine);
    ASSERT_FALSE(set);
    EXPECT_EQ(set.error().message, "nic1 (rtl8029): MAC 52:54:00:00:00:01 is also nic0's");
  }
  {
    // A device already at the first PCI card's I/O base: the BAR cannot decode.
    MachineRig rig;
    struct Squatter final : bus::IoDevice {
      void read(uint64_t, std::span<uint8_t> d) override { std::fill(d.begin(), d.end(), uint8_t{0}); }
      void write(uint64_t, std::span<const uint8_t>) override {}
      std::string_view name() const override { return "squatter"; }
    } squatter;
    ASSERT_TRUE(rig.machine->io_bus().add(0xC000, 0x20, squatter));
    auto a = parse_nic_spec("");
    auto set = NicSet::create({*a}, "vm", *rig.machine);
    ASSERT_FALSE(set);
    EXPECT_EQ(set.error().message, "nic0 (rtl8029): BAR0 at 0xc000 could not be decoded (port conflict)");
    EXPECT_TRUE(rig.machine->io_bus().remove(0xC000));
  }
  {
    MachineRig rig;
    auto a = parse_nic_spec("");
    auto set = NicSet::create({*a, *a, *a, *a, *a}, "vm", *rig.machine);
    ASSERT_FALSE(set);
    EXPECT_EQ(set.error().message, "5 NICs asked for: a VM has at most 4");
  }
}

/// A CpuEngine that only records which port ranges it was asked to
/// coalesce (CpuEngine::coalesce_port_writes), as KVM would hold them.
class ZoneRecorder final : public CpuEngine {
 public:
  std::string_view name() const override { return "zone recorder"; }
  Result<void> set_state(const CpuState&) override { return {}; }
  Result<CpuState> state() override { return CpuState{}; }
  RunResult run() override { return RunResult{StopReason::kHalt, {}}; }
  void kick() override {}
  Result<bool> coalesce_port_writes(uint16_t port, uint32_t size) override {
    log.push_back(fmt::format("+{:#x}/{}", port, size));
    zones.emplace_back(port, size);
    return true;
  }
  Result<void> uncoalesce_port_writes(uint16_t port, uint32_t size) override {
    log.push_back(fmt::format("-{:#x}/{}", port, size));
    const auto it = std::find(zones.begin(), zones.end(), std::pair<uint16_t, uint32_t>(port, size));
    if (it == zones.end()) return fail("no such zone");
    zones.erase(it);
    return {};
  }
  std::vector<std::pair<uint16_t, uint32_t>> zones;
  std::vector<std::string> log;
};

/// An engine that hands over every write at once (the CpuEngine default, as the emulator).
class NoZones final : public CpuEngine {
 public:
  std::string_view name() const override { return "no zones"; }
  Result<void> set_state(const CpuState&) override { return {}; }
  Result<CpuState> state() override { return CpuState{}; }
  RunResult run() override { return RunResult{StopReason::kHalt, {}}; }
  void kick() override {}
};

TEST(NicSet, DataPortZonesFollowTheCards) {
  MachineRig rig;
  auto pci = parse_nic_spec("model=rtl8029");
  auto isa = parse_nic_spec("model=ne2000,io=0x320,irq=5");
  ASSERT_TRUE(pci && isa);
  auto set = NicSet::create({*pci, *isa}, "vm", *rig.machine);
  ASSERT_TRUE(set) << set.error().message;
  ZoneRecorder engine;
  auto n = (*set)->coalesce_data_ports(engine);
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(*n, 2u);
  // The data port and its aliases only: not the registers, not the reset port.
  EXPECT_EQ(engine.log, (std::vector<std::string>{"+0xc010/8", "+0x330/8"}));
  EXPECT_NE((*set)->describe()[0].find(", data port coalesced;"), std::string::npos) << (*set)->describe()[0];
  // The guest moves BAR0: the zone moves with the card.
  rig.pci_write(3, 0x10, 0xD000);
  EXPECT_EQ(rig.pci_read(3, 0x10), 0xD001u);
  EXPECT_EQ(engine.log, (std::vector<std::string>{"+0xc010/8", "+0x330/8", "-0xc010/8", "+0xd010/8"}));
  // Decoding off (Linux sizing a BAR), then on again: the zone goes and comes back.
  const uint32_t command = rig.pci_read(3, 0x04) & 0xFFFF;
  rig.pci_write(3, 0x04, command & ~1u);
  EXPECT_EQ(engine.zones, (std::vector<std::pair<uint16_t, uint32_t>>{{0x330, 8}}));
  EXPECT_EQ((*set)->describe()[0].find("data port coalesced"), std::string::npos) << (*set)->describe()[0];
  rig.pci_write(3, 0x04, command);
  EXPECT_EQ(engine.zones, (std::vector<std::pair<uint16_t, uint32_t>>{{0x330, 8}, {0xD010, 8}}));
  // The card still answers at its new place.
  uint8_t cr = 0;
  rig.machine->io_bus().read(0xD000, std::span<uint8_t>(&cr, 1));
  EXPECT_EQ(cr, 0x21);
}

TEST(NicSet, AnEngineWithoutBufferingCoalescesNothing) {
  MachineRig rig;
  auto pci = parse_nic_spec("model=rtl8029");
  ASSERT_TRUE(pci);
  auto set = NicSet::create({*pci}, "vm", *rig.machine);
  ASSERT_TRUE(set) << set.error().message;
  NoZones engine;
  auto n = (*set)->coalesce_data_ports(engine);
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(*n, 0u);
  EXPECT_EQ((*set)->describe()[0].find("data port coalesced"), std::string::npos);
  // The default still checks the range it is given.
  EXPECT_FALSE(engine.coalesce_port_writes(0xFFFC, 8));
  EXPECT_FALSE(engine.coalesce_port_writes(0x300, 0));
}

/// An ISA NE2000 (io 0x300) on a machine, its backend `fd`.
class Ne2000OnSocket : public SeqpacketPair {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(SeqpacketPair::SetUp());
    auto spec = parse_nic_spec("model=ne2000,backend=fd,fd=" + std::to_string(fd));
    ASSERT_TRUE(spec);
    auto made = NicSet::create({*spec}, "vm", *rig.machine);
    ASSERT_TRUE(made) << made.error().message;
    set = std::move(*made);
  }
  void out(uint16_t port, uint8_t v) { rig.machine->io_bus().write(port, std::span<const uint8_t>(&v, 1)); }
  uint8_t in(uint16_t port) {
    uint8_t v = 0;
    rig.machine->io_bus().read(port, std::span<uint8_t>(&v, 1));
    return v;
  }
  /// Start the card as ne.c would: receive ring 0x46-0x80 with BNRY and
  /// CURR as given, broadcasts accepted, started.
  void start_ring(uint8_t bnry, uint8_t curr) {
    out(0x300, 0x21);  // page 0, stopped
    out(0x301, 0x46);  // PSTART
    out(0x302, 0x80);  // PSTOP
    out(0x303, bnry);  // BNRY
    out(0x300, 0x61);  // page 1
    out(0x307, curr);  // CURR
    out(0x300, 0x22);  // page 0, start
    out(0x30c, 0x04);  // RCR: broadcast
  }
  MachineRig rig;
  std::unique_ptr<NicSet> set;
};

TEST_F(Ne2000OnSocket, ReceivePendingHandsWaitingFramesToTheCards) {
  EXPECT_EQ(set->receive_fds(), std::vector<int>{fd});
  start_ring(0x46, 0x47);
  std::vector<std::byte> f(60, std::byte{0xFF});
  ASSERT_EQ(::send(peer, f.data(), f.size(), 0), 60);
  ASSERT_EQ(::send(peer, f.data(), f.size(), 0), 60);
  EXPECT_EQ(set->receive_pending(), 2u);
  EXPECT_EQ(set->receive_pending(), 0u);
  EXPECT_NE(set->describe()[0].find("rx 2 frames 120 bytes"), std::string::npos) << set->describe()[0];
  close_peer();
  EXPECT_EQ(set->receive_pending(), 0u);
  EXPECT_TRUE(set->receive_fds().empty());  // the peer closed: nothing to poll
}

TEST_F(Ne2000OnSocket, AFullCardLeavesFramesOnTheSocketInsteadOfDroppingThem) {
  // Ring 0x46-0x80 (58 pages; a 60-byte frame takes one; the card keeps one
  // page between CURR and BNRY: 56 frames), broadcast accepted.
  start_ring(0x7f, 0x46);  // BNRY = PSTOP - 1: nothing read yet
  // 56 frames fit the ring, 64 the host queue; 30 more must wait on the socket.
  constexpr unsigned kRing = 56;
  constexpr unsigned kSent = kRing + nic::Dp8390::kRxQueueFrames + 30;
  std::vector<std::byte> f(60, std::byte{0xFF});
  for (unsigned k = 0; k < kSent; ++k) ASSERT_EQ(::send(peer, f.data(), f.size(), 0), 60) << k;
  EXPECT_EQ(set->receive_pending(), kRing + nic::Dp8390::kRxQueueFrames);
  EXPECT_TRUE(set->receive_fds().empty()) << "a full card's socket is not polled";
  EXPECT_EQ(set->receive_held_back(), 0u) << "still no room";
  const std::string full = set->describe()[0];
  EXPECT_NE(full.find("rx queued 64, rx dropped 0"), std::string::npos) << full;
  // The guest reads every frame in the ring: BNRY = CURR - 1. The card
  // moves 56 queued frames in, which leaves room for the 30 on the socket.
  out(0x300, 0x62);
  const uint8_t curr = in(0x307);
  out(0x300, 0x22);
  out(0x303, static_cast<uint8_t>(curr == 0x46 ? 0x7f : curr - 1));
  EXPECT_EQ(set->receive_held_back(), 30u);
  EXPECT_EQ(set->receive_fds(), std::vector<int>{fd});
  const std::string after = set->describe()[0];
  EXPECT_NE(after.find("rx dropped 0"), std::string::npos) << after;
  EXPECT_NE(after.find("rx " + std::to_string(2 * kRing) + " frames"), std::string::npos) << after;
  EXPECT_NE(after.find("rx queued " + std::to_string(nic::Dp8390::kRxQueueFrames + 30)), std::string::npos) << after;
  close_peer();
}

}  // namespace
}  // namespace twoostwo::vmcore
