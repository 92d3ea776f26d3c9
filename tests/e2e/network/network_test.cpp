// Real Debian i386 guests on the emulator engine with the NE2000-family
// cards, driven by Linux's own ne2k-pci and ne drivers (issue 4, "Shows it
// works"). One lab serves every check of NicLab, and this binary is one CTest
// test, so the guests boot once:
//
//   alice  rtl8029  10.0.0.1  ┐
//   bob    rtl8029  10.0.0.2  ├─ the test's own wire: a small learning hub
//   carol  ne2000   10.0.0.3  ┘  over SOCK_SEQPACKET socketpairs (the fd
//                                 backend), writing every frame to a pcap
//
// and, over the UDP backend, dave (twoOStwo, rtl8029, 10.0.1.1) with a
// qemu-system-i386 -accel tcg guest (-device ne2k_pci, -netdev dgram) that
// runs the same kernel and initrd (10.0.1.2).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/guest.h"
#include "tests/support/qemu.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using twoostwo::testing::Agent;
using twoostwo::testing::Guest;
using twoostwo::testing::require_guest_image;
using twoostwo::testing::TempDir;

using Mac = std::array<uint8_t, 6>;

/// The test's wire: N ports, each one end of a SOCK_SEQPACKET socketpair
/// whose other end a monitor gets as fd 3. Frames go to the port where
/// their destination MAC was last seen as a source, else (broadcast,
/// multicast, unknown) to every other port. Every frame is appended to a
/// pcap file (LINKTYPE_ETHERNET, microsecond timestamps) in arrival order.
class Hub {
 public:
  Hub(size_t ports, const fs::path& pcap) : pcap_(std::fopen(pcap.c_str(), "wb")) {
    // pcap global header (pcap-savefile(5)): magic, 2.4, tz 0, sigfigs 0, snaplen, LINKTYPE_ETHERNET.
    const uint32_t header[6] = {0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1};
    std::fwrite(header, sizeof header, 1, pcap_);
    for (size_t i = 0; i < ports; ++i) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
      // Keep the monitors' ends away from low numbers so dup2 to 3 never
      // meets the same descriptor.
      const int high = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 100);
      ::close(sv[1]);
      ours_.push_back(sv[0]);
      theirs_.push_back(high);
      tx_.push_back(0);
      rx_.push_back(0);
      rx_broadcast_or_mine_.push_back(0);
    }
    thread_ = std::thread([this] { loop(); });
  }
  ~Hub() {
    stop_ = true;
    thread_.join();
    for (int fd : ours_) ::close(fd);
    close_monitor_ends();
    std::fclose(pcap_);
  }
  /// The descriptor to hand to port i's monitor (as its fd 3).
  int monitor_end(size_t i) const { return theirs_[i]; }
  /// Once the monitors run, the test closes its copies of their ends.
  void close_monitor_ends() {
    for (int& fd : theirs_) {
      if (fd >= 0) ::close(fd);
      fd = -1;
    }
  }
  struct Counts {
    uint64_t from_port = 0;            // frames port i sent
    uint64_t to_port = 0;              // frames delivered to port i
    uint64_t to_port_for_it = 0;       // of those, broadcast or unicast to port i's MAC
  };
  Counts counts(size_t i) {
    std::lock_guard lock(mu_);
    return {tx_[i], rx_[i], rx_broadcast_or_mine_[i]};
  }
  uint64_t frames_written() {
    std::lock_guard lock(mu_);
    return written_;
  }
  void flush() {
    std::lock_guard lock(mu_);
    std::fflush(pcap_);
  }

 private:
  void loop() {
    std::vector<pollfd> pfds;
    for (int fd : ours_) pfds.push_back({fd, POLLIN, 0});
    std::vector<uint8_t> buf(65536);
    while (!stop_) {
      if (::poll(pfds.data(), pfds.size(), 50) <= 0) continue;
      for (size_t i = 0; i < pfds.size(); ++i) {
        if (!(pfds[i].revents & POLLIN)) continue;
        const ssize_t n = ::recv(ours_[i], buf.data(), buf.size(), MSG_DONTWAIT);
        if (n < 14) continue;
        forward(i, std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)));
      }
    }
  }
  void forward(size_t from, std::span<const uint8_t> f) {
    std::lock_guard lock(mu_);
    timeval tv;
    ::gettimeofday(&tv, nullptr);
    const uint32_t rec[4] = {static_cast<uint32_t>(tv.tv_sec), static_cast<uint32_t>(tv.tv_usec),
                             static_cast<uint32_t>(f.size()), static_cast<uint32_t>(f.size())};
    std::fwrite(rec, sizeof rec, 1, pcap_);
    std::fwrite(f.data(), f.size(), 1, pcap_);
    ++written_;
    ++tx_[from];
    Mac src, dst;
    std::memcpy(dst.data(), f.data(), 6);
    std::memcpy(src.data(), f.data() + 6, 6);
    if (!(src[0] & 1)) where_[src] = from;
    const bool group = dst[0] & 1;
    const bool broadcast = dst == Mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    auto known = where_.find(dst);
    for (size_t to = 0; to < ours_.size(); ++to) {
      if (to == from) continue;
      if (!group && known != where_.end() && known->second != to) continue;
      if (::send(ours_[to], f.data(), f.size(), MSG_DONTWAIT | MSG_NOSIGNAL) == static_cast<ssize_t>(f.size())) {
        ++rx_[to];
        if (broadcast || (!group && known != where_.end() && known->second == to)) ++rx_broadcast_or_mine_[to];
      }
    }
  }

  std::FILE* pcap_;
  std::vector<int> ours_, theirs_;
  std::mutex mu_;
  std::vector<uint64_t> tx_, rx_, rx_broadcast_or_mine_;
  std::map<Mac, size_t> where_;
  uint64_t written_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

constexpr const char* kNoIpv6 =
    "sysctl net.ipv6.conf.all.disable_ipv6=1\nsysctl net.ipv6.conf.default.disable_ipv6=1\n";

std::string node_conf(const std::string& host, const std::string& module, const std::string& cidr) {
  return "hostname " + host + "\n" + kNoIpv6 + "module " + module + "\naddr eth0 " + cidr + "\n";
}

class NicLab : public ::testing::Test {
 protected:
  static constexpr size_t kAlice = 0, kBob = 1, kCarol = 2;

  static void SetUpTestSuite() {
    if (!twoostwo::testing::guest_image_present()) return;
    dir_ = new TempDir();
    hub_ = new Hub(3, dir_->path() / "wire.pcap");
    auto nic = [](const std::string& model) { return std::vector<std::string>{"--nic", model + ",backend=fd,fd=3"}; };
    guests_[kAlice] = new Guest("alice", node_conf("alice", "ne2k-pci", "10.0.0.1/24"), nic("model=rtl8029"),
                                {{hub_->monitor_end(kAlice), 3}});
    guests_[kBob] = new Guest("bob", node_conf("bob", "ne2k-pci", "10.0.0.2/24"), nic("model=rtl8029"),
                              {{hub_->monitor_end(kBob), 3}});
    guests_[kCarol] = new Guest("carol", node_conf("carol", "ne io=0x300 irq=9", "10.0.0.3/24"),
                                nic("model=ne2000,io=0x300,irq=9"), {{hub_->monitor_end(kCarol), 3}});
    hub_->close_monitor_ends();
    for (size_t i = 0; i < 3; ++i) ready_[i] = guests_[i]->wait_ready(300s);
  }
  static void TearDownTestSuite() {
    for (auto*& g : guests_) {
      delete g;
      g = nullptr;
    }
    delete hub_;
    delete dir_;
  }
  void SetUp() override {
    require_guest_image();
    for (size_t i = 0; i < 3; ++i) {
      ASSERT_FALSE(ready_[i].empty()) << "guest " << i << " did not become ready\n" << guests_[i]->diagnostics();
    }
  }
  static Guest& g(size_t i) { return *guests_[i]; }

  /// Send 20 MiB of random data from `from` to `to_ip` over TCP (busybox nc)
  /// and compare the MD5 sums on both sides.
  static void transfer_20mib(size_t from, size_t to, const std::string& to_ip, int port) {
    const std::string p = std::to_string(port);
    // busybox nc gives up its connection when its own stdin ends, so the
    // listener's stdin is a pipe that stays open (sleep).
    auto listen = g(to).run("rm -f /tmp/recv; (sleep 900 | nc -l -p " + p + " > /tmp/recv) </dev/null >/dev/null 2>&1 &");
    ASSERT_EQ(listen.status, 0) << listen.error;
    auto make = g(from).run("dd if=/dev/urandom of=/tmp/send bs=1M count=20 2>/dev/null && md5sum < /tmp/send");
    ASSERT_EQ(make.status, 0) << make.error;
    const auto t0 = std::chrono::steady_clock::now();
    auto send = g(from).run("nc " + to_ip + " " + p + " < /tmp/send; echo sent $?", 600s);
    ASSERT_EQ(send.status, 0) << send.error << send.text;
    auto size = g(to).run("for i in $(seq 600); do [ \"$(stat -c %s /tmp/recv)\" = 20971520 ] && break; sleep 0.2; "
                          "done; stat -c %s /tmp/recv",
                          300s);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(size.text, "20971520\n") << send.text;
    std::printf("20 MiB %s -> %s in %.1f s (%.2f MiB/s)\n", ready_[from].c_str(), to_ip.c_str(), seconds,
                20.0 / seconds);
    auto received = g(to).run("md5sum < /tmp/recv; rm -f /tmp/recv");
    const auto kernel = g(to).run("dmesg | tail -3").text + g(from).run("dmesg | tail -3").text;
    EXPECT_EQ(received.text, make.text) << "sender said: " << send.text << "; kernel messages: " << kernel;
    (void)g(from).run("rm -f /tmp/send");
  }

  static TempDir* dir_;
  static Hub* hub_;
  static Guest* guests_[3];
  static std::string ready_[3];
};
TempDir* NicLab::dir_ = nullptr;
Hub* NicLab::hub_ = nullptr;
Guest* NicLab::guests_[3] = {};
std::string NicLab::ready_[3];

TEST_F(NicLab, DriversBindToTheCards) {
  auto a = g(kAlice).run("cat /sys/class/net/eth0/device/vendor /sys/class/net/eth0/device/device; "
                         "readlink /sys/class/net/eth0/device/driver");
  ASSERT_EQ(a.status, 0) << a.error;
  EXPECT_TRUE(std::regex_search(a.text, std::regex("^0x10ec\n0x8029\n.*/ne2k-pci\n$"))) << a.text;
  auto c = g(kCarol).run("dmesg | grep -i 'ne.c\\|NE\\*000\\|eth0' | head -5; cat /sys/class/net/eth0/address");
  ASSERT_EQ(c.status, 0) << c.error;
  EXPECT_NE(c.text.find("0x300"), std::string::npos) << c.text;
}

TEST_F(NicLab, Rtl8029GuestsPingEachOther) {
  auto o = g(kAlice).run("ping -c 3 -W 5 10.0.0.2");
  EXPECT_EQ(o.status, 0) << o.text << g(kAlice).diagnostics();
  EXPECT_NE(o.text.find("3 packets transmitted, 3 packets received"), std::string::npos) << o.text;
  auto back = g(kBob).run("ping -c 2 -W 5 10.0.0.1");
  EXPECT_EQ(back.status, 0) << back.text;
}

TEST_F(NicLab, IsaNe2000GuestPingsAnRtl8029Guest) {
  auto o = g(kCarol).run("ping -c 3 -W 5 10.0.0.1");
  EXPECT_EQ(o.status, 0) << o.text << g(kCarol).diagnostics();
  EXPECT_NE(o.text.find("3 packets transmitted, 3 packets received"), std::string::npos) << o.text;
}

TEST_F(NicLab, CountersMatchTheFramesOnTheWire) {
  // Quiet wire: both sides' counts settle, then the guest's own counters
  // (what `ip -s link` prints; busybox's ip has no -s, and /proc/net/dev
  // holds the same kernel counters) equal what the wire saw it send and
  // deliver. A neighbour probe can still pass at any moment, so every
  // reading is taken again until guest and wire agree twice in a row.
  // It runs before the bulk transfers, on a wire that has been quiet. (A
  // card whose host-side queue is full leaves frames on its socket, so the
  // hub's sends fail and are not counted as delivered: vmcore/nics.h.)
  const std::regex proc_line(R"(eth0:\s*(\d+)\s+(\d+)(?:\s+\d+){6}\s+(\d+)\s+(\d+))");
  for (size_t i : {kAlice, kBob, kCarol}) {
    struct Reading {
      uint64_t sys_tx = ~0ull, sys_rx = ~0ull, proc_tx = ~0ull, proc_rx = ~0ull;
      Hub::Counts wire;
      std::string error;  // the guest did not answer (then the readings stop)
      bool operator==(const Reading& o) const {
        return sys_tx == o.sys_tx && sys_rx == o.sys_rx && proc_tx == o.proc_tx && proc_rx == o.proc_rx &&
               wire.from_port == o.wire.from_port && wire.to_port_for_it == o.wire.to_port_for_it;
      }
    };
    auto read = [&] {
      Reading r;
      // One command: the three readings come from the same moment in the guest.
      auto o = g(i).run(
          "cat /sys/class/net/eth0/statistics/tx_packets /sys/class/net/eth0/statistics/rx_packets; "
          "grep eth0: /proc/net/dev");
      std::istringstream lines(o.text);
      std::string tx, rx, proc;
      std::getline(lines, tx);
      std::getline(lines, rx);
      std::getline(lines, proc);
      std::smatch m;
      if (o.status != 0) r.error = o.error.empty() ? "status " + std::to_string(o.status) : o.error;
      if (o.status == 0 && !tx.empty() && !rx.empty() && std::regex_search(proc, m, proc_line)) {
        r.sys_tx = std::stoull(tx);
        r.sys_rx = std::stoull(rx);
        r.proc_rx = std::stoull(m[2].str());
        r.proc_tx = std::stoull(m[4].str());
      }
      r.wire = hub_->counts(i);
      return r;
    };
    Reading last = read();
    ASSERT_EQ(last.error, "") << "guest " << i;
    for (int attempt = 0; attempt < 20; ++attempt) {
      std::this_thread::sleep_for(500ms);
      const Reading now = read();
      ASSERT_EQ(now.error, "") << "guest " << i;  // one timeout is enough: a hung guest does not come back
      const bool settled = now == last && now.wire.from_port == now.sys_tx && now.wire.to_port_for_it == now.sys_rx;
      last = now;
      if (settled) break;
    }
    EXPECT_EQ(last.sys_tx, last.wire.from_port) << "guest " << i;
    // The card accepts broadcasts and frames to its own address; the hub sends
    // a port little else (unknown unicast before learning, which the card filters).
    EXPECT_EQ(last.sys_rx, last.wire.to_port_for_it) << "guest " << i << " (delivered in all: " << last.wire.to_port
                                                     << ")";
    EXPECT_EQ(last.proc_rx, last.sys_rx) << "guest " << i;
    EXPECT_EQ(last.proc_tx, last.sys_tx) << "guest " << i;
  }
}

TEST_F(NicLab, Tcp20MiBBetweenRtl8029Guests) { transfer_20mib(kAlice, kBob, "10.0.0.2", 5001); }

TEST_F(NicLab, Tcp20MiBFromTheIsaNe2000ToAnRtl8029) { transfer_20mib(kCarol, kAlice, "10.0.0.1", 5002); }

TEST_F(NicLab, NewMacAddressStillReceives) {
  auto set = g(kBob).run(
      "ip link set eth0 down && ip link set eth0 address 02:aa:bb:cc:dd:02 && ip link set eth0 up && "
      "cat /sys/class/net/eth0/address");
  ASSERT_EQ(set.status, 0) << set.text;
  EXPECT_EQ(set.text, "02:aa:bb:cc:dd:02\n");
  (void)g(kAlice).run("ip neigh flush dev eth0");
  auto o = g(kAlice).run("ping -c 3 -W 5 10.0.0.2; ip neigh show dev eth0");
  EXPECT_EQ(o.status, 0) << o.text;
  EXPECT_NE(o.text.find("3 packets received"), std::string::npos) << o.text;
  EXPECT_NE(o.text.find("02:aa:bb:cc:dd:02"), std::string::npos) << o.text;
}

TEST_F(NicLab, ZzTcpdumpReadsEveryFrameOfTheWireCapture) {
  hub_->flush();
  const uint64_t frames = hub_->frames_written();
  ASSERT_GT(frames, 1000u);  // the transfers alone are thousands of frames
  const fs::path pcap = dir_->path() / "wire.pcap";
  const std::string cmd = "tcpdump -nn -r " + pcap.string() + " 2>/dev/null | wc -l";
  std::FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char line[64] = {};
  ASSERT_NE(std::fgets(line, sizeof line, p), nullptr);
  ::pclose(p);
  EXPECT_EQ(std::stoull(line), frames);
  const std::string icmp = "tcpdump -nn -r " + pcap.string() + " 'icmp[icmptype] == icmp-echoreply' 2>/dev/null | wc -l";
  p = ::popen(icmp.c_str(), "r");
  ASSERT_NE(p, nullptr);
  ASSERT_NE(std::fgets(line, sizeof line, p), nullptr);
  ::pclose(p);
  EXPECT_GE(std::stoull(line), 8u);  // the pings above
}

// ---- a twoOStwo guest and a QEMU guest over the UDP backend ----

TEST(NicUdp, TwoostwoAndQemuNe2kPciPingEachOther) {
  require_guest_image();
  const int qport = 20000 + (::getpid() % 20000), tport = qport + 1;
  twoostwo::testing::QemuGuest q(node_conf("qemu-guest", "ne2k-pci", "10.0.1.2/24"),
                                 "dgram,local.type=inet,local.host=127.0.0.1,local.port=" + std::to_string(qport) +
                                     ",remote.type=inet,remote.host=127.0.0.1,remote.port=" + std::to_string(tport),
                                 "52:54:00:00:01:02");
  Guest dave("dave", node_conf("dave", "ne2k-pci", "10.0.1.1/24"),
             {"--nic", "model=rtl8029,backend=udp,local=127.0.0.1:" + std::to_string(tport) +
                           ",remote=127.0.0.1:" + std::to_string(qport)});
  ASSERT_EQ(dave.wait_ready(300s), "dave") << dave.diagnostics();
  ASSERT_EQ(q.wait_ready(300s), "qemu-guest") << q.diagnostics();
  auto o = dave.run("ping -c 3 -W 5 10.0.1.2");
  EXPECT_EQ(o.status, 0) << o.text << dave.diagnostics();
  EXPECT_NE(o.text.find("3 packets received"), std::string::npos) << o.text;
  auto back = q.run("ping -c 3 -W 5 10.0.1.1");
  EXPECT_EQ(back.status, 0) << back.text;
  EXPECT_NE(back.text.find("3 packets received"), std::string::npos) << back.text;
}

}  // namespace
