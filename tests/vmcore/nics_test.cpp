// --nic parsing, default MACs, the socket backends (fd and UDP) and the
// wiring of the cards into the machine (vmcore/nics.h, net_backends.h).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "nic/dp8390.h"
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

TEST(SocketBackend, SeqpacketFdCarriesOneFramePerMessageBothWays) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  auto b = SocketBackend::adopt_fd(sv[0]);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ((*b)->description(), "fd " + std::to_string(sv[0]) + " (seqpacket)");
  Inbox inbox;
  IoThread io;
  (*b)->start(io.io, inbox.handler());
  // Monitor -> peer: message boundaries kept.
  (*b)->send(frame_of(60, 0xAA));
  (*b)->send(frame_of(1514, 0xBB));
  uint8_t buf[2000];
  EXPECT_EQ(::recv(sv[1], buf, sizeof buf, 0), 60);
  EXPECT_EQ(buf[59], 0xAA);
  EXPECT_EQ(::recv(sv[1], buf, sizeof buf, 0), 1514);
  EXPECT_EQ(buf[1513], 0xBB);
  // Peer -> monitor.
  const auto f1 = frame_of(64, 1), f2 = frame_of(1000, 2);
  ASSERT_EQ(::send(sv[1], f1.data(), f1.size(), 0), 64);
  ASSERT_EQ(::send(sv[1], f2.data(), f2.size(), 0), 1000);
  ASSERT_TRUE(inbox.wait_for(2));
  EXPECT_EQ(inbox.frames[0], f1);
  EXPECT_EQ(inbox.frames[1], f2);
  // The peer goes away: noticed, sends are counted as dropped, nothing crashes.
  ::close(sv[1]);
  for (int k = 0; k < 200 && !(*b)->peer_closed(); ++k) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE((*b)->peer_closed());
  (*b)->send(frame_of(60, 0xCC));
  const auto c = (*b)->counters();
  EXPECT_EQ(c.tx_frames, 2u);
  EXPECT_EQ(c.tx_dropped, 1u);
  EXPECT_EQ(c.rx_frames, 2u);
  (*b)->stop();
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

}  // namespace
}  // namespace twoostwo::vmcore
