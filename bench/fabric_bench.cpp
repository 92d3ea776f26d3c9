// fabric_bench — frames per second through one switch, twoOStwo's fabric beside
// Debian's vde_switch, in one run, as ratios (issue 5; DESIGN.md "Tests":
// performance is compared side by side, never run as a timed test).
//
// What is measured
//   One sender and one receiver, unicast to a learned destination, frames of
//   64 and 1514 bytes (no FCS), for --seconds per run. The number is what
//   the receiver got intact per second: frames counted from the
//   first to the last timed frame it received (so start-up and the sender's
//   stop do not enter), divided by that time. Frames the sender sent but the
//   receiver never got are "drops"; the receiver also checks every frame's
//   length, header and payload (a sequence number and a pattern derived from
//   it), and counts gaps, frames out of order and corrupted frames.
//
// twoOStwo (the fabric as the lab supervisor runs it)
//   A child process (forked before any Boost.Asio object exists) builds a
//   fabric::Fabric with one LearningSwitch "sw" and two seqpacket ports made
//   by Fabric::add_seqpacket_port — the supervisor's path for a monitor's NIC
//   — each wired to a switch port by a Link ("a-sw", "b-sw"), and runs its
//   io_context on one thread. It hands the ports' peer ends
//   (SocketPort::take_peer_fd) to the parent over a control socket
//   (SCM_RIGHTS), where the two clients use them as a monitor's NetBackend
//   would: one Ethernet frame per SOCK_SEQPACKET message. With capture on,
//   the child also starts captures::CaptureSet on the fabric — what a lab
//   with capture on runs: one pcap file per link (both links here, so every
//   frame is written twice), flushed every 200 ms — in a temporary directory.
//
// vde_switch (Debian's vde2: vde_switch 2.3.2, libvdeplug 4)
//   The bench starts `vde_switch -s DIR` (a switch, not a hub: no -x; no
//   fast spanning tree: no -F; not a daemon: stdin is a pipe the bench holds,
//   since vde_switch exits on EOF there) and connects two clients with
//   libvdeplug's vde_open("vde://DIR"). vde's data path is one raw frame per
//   datagram on a connected SOCK_DGRAM AF_UNIX socket (libvdeplug_vde's
//   vde_send/vde_recv are plain send/recv on vde_datafd()), so the clients
//   use sendmmsg/recvmmsg on vde_datafd(), exactly like on the seqpacket fds.
//   The control socket stays open for the connection's life, as vde requires.
//
// Both sides get the same client code (one thread each in this process): the
// same frames, batches of --batch frames per blocking sendmmsg(2), batches of
// 64 per recvmmsg(2) with MSG_WAITFORONE, the same 1 MiB SO_SNDBUF/SO_RCVBUF
// on the client sockets (what switch/ gives its socketpairs), blocking
// descriptors. Before the timed part both MACs are learned (A→B flooded,
// B→A forwarded) and --warmup seconds of the same traffic run untimed, so the
// timed part sees a steady state with both switches forwarding to a known
// port. Each run gets a fresh switch process; with --repeat the runs of one
// frame size take turns (off, capture, vde_switch, direct, relay, then the reverse
// order), and the table shows the median run with the range.
//
// Reading the numbers
//   - Drops: vde_switch sends to its clients with non-blocking sendto(2) on
//     an unconnected datagram socket and drops what does not fit (the
//     receiver's queue holds net.unix.max_dgram_qlen datagrams, 10 by
//     default, and the switch's send buffer is the default ~200 KiB); the
//     fabric queues up to 512 frames per port behind 1 MiB socket buffers,
//     then drops (counted per port). Neither pushes back on the sender.
//   - Switch CPU: the switch process's CPU time over the timed part
//     (/proc/PID/schedstat), as CPU% and as nanoseconds per frame received
//     (and per frame sent). The sender, the receiver and the switch are three
//     busy threads; on a two-core machine they compete with each other and
//     with whatever else runs, so frames/s tells how the whole pipeline fared
//     and CPU per frame tells what the switch itself costs.
//   - "direct": the same two clients on one socketpair with no switch, the
//     ceiling the clients allow on this machine.
//   - "relay": the same two clients through a minimal forwarder in its own
//     process on two socketpairs: poll(2), recvmmsg(2) of up to 64 frames
//     from the ready end, one blocking sendmmsg(2) of them to the other; no
//     switching, no queues, no event library. It pays what any switch
//     process between two SOCK_SEQPACKET ports pays in the kernel (a second
//     send and receive per frame) and a third busy thread on the machine's
//     cores, and nothing else: the floor of such a switch, and so the
//     highest ratio to vde_switch that any work in the switch's user space
//     could reach here.
//
// Not measured: flooding, VLAN tagging, many ports, the monitors' own cost.
// If the bench dies half-way, its switch processes end on their own: the
// fabric child when the control socket closes, vde_switch on EOF on stdin.
//
//   fabric_bench [--seconds 3] [--warmup 0.5] [--sizes 64,1514] [--batch 32]
//                [--repeat 1] [--no-vde] [--no-capture] [--no-relay] [--capture-dir DIR]
//                [--keep-captures] [--vde-switch PATH] [--verbose]
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern "C" {  // libvdeplug.h has no C++ guard
#include <libvdeplug.h>
}

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "captures/capture_set.h"
#include "switch/fabric.h"

namespace {

namespace fabric = twoostwo::fabric;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

bool verbose = false;  // --verbose: print the switch processes' PIDs (for perf -p)

// The bench's temporary directory, removed by die() too (in the process that
// made it, not in a fabric child).
fs::path work_dir;
pid_t work_owner = 0;

[[noreturn]] void die(const std::string& message) {
  fmt::print(stderr, "fabric_bench: {}\n", message);
  if (!work_dir.empty() && ::getpid() == work_owner) {
    std::error_code ignored;
    fs::remove_all(work_dir, ignored);
  }
  std::exit(1);
}

double seconds_since(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double>(t1 - t0).count();
}

// ---------------------------------------------------------------------------
// The traffic: A (02:00:00:00:00:0a) sends to B (02:00:00:00:00:0b).
//
//   0..13   Ethernet header, EtherType 0x88B5 (IEEE 802 local experimental)
//   14      phase: 0 warm-up, 1 timed, 2 learning hello
//   16..23  sequence number, little-endian, from 0 in each phase
//   24..    byte j is (j + sequence) mod 256
// ---------------------------------------------------------------------------

constexpr fabric::MacAddress kMacA{0x02, 0, 0, 0, 0, 0x0a};
constexpr fabric::MacAddress kMacB{0x02, 0, 0, 0, 0, 0x0b};
constexpr uint16_t kEtherType = 0x88B5;
constexpr size_t kHeader = 24;  // bytes before the pattern
constexpr uint8_t kPhaseWarmup = 0, kPhaseTimed = 1, kPhaseHello = 2;
constexpr size_t kRecvBatch = 64;
constexpr size_t kRecvSlot = 2048;
constexpr int kSocketBuffer = 1 << 20;

// pattern[k] = k mod 256; the payload of frame `seq` starts at pattern + (seq mod 256).
struct Pattern {
  std::array<std::byte, fabric::kMaxFrame + 256> bytes{};
  Pattern() {
    for (size_t k = 0; k < bytes.size(); ++k) bytes[k] = static_cast<std::byte>(k & 0xFF);
  }
  const std::byte* at(size_t offset, uint64_t seq) const { return bytes.data() + offset + (seq & 0xFF); }
};
const Pattern& pattern() {
  static const Pattern p;
  return p;
}

void write_header(std::byte* frame, const fabric::MacAddress& dst, const fabric::MacAddress& src, uint8_t phase) {
  std::memcpy(frame, dst.data(), 6);
  std::memcpy(frame + 6, src.data(), 6);
  frame[12] = std::byte{kEtherType >> 8};
  frame[13] = std::byte{kEtherType & 0xFF};
  frame[14] = std::byte{phase};
  frame[15] = std::byte{0};
}

void write_sequence(std::byte* frame, size_t size, uint64_t seq) {
  std::memcpy(frame + 16, &seq, sizeof seq);
  std::memcpy(frame + kHeader, pattern().at(kHeader, seq), size - kHeader);
}

// Client sockets: blocking, the same buffer sizes on both sides.
void prepare_client(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kSocketBuffer, sizeof kSocketBuffer);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kSocketBuffer, sizeof kSocketBuffer);
}

void set_receive_timeout(int fd, std::chrono::milliseconds timeout) {
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

// Send `count` frames from `buffers` (each `stride` bytes apart, `size` long)
// with as few blocking sendmmsg calls as the socket allows.
void send_all(int fd, std::byte* buffers, size_t stride, size_t size, size_t count) {
  std::array<mmsghdr, 256> messages{};
  std::array<iovec, 256> iov{};
  for (size_t i = 0; i < count; ++i) {
    iov[i] = iovec{buffers + i * stride, size};
    messages[i] = mmsghdr{};
    messages[i].msg_hdr.msg_iov = &iov[i];
    messages[i].msg_hdr.msg_iovlen = 1;
  }
  size_t done = 0;
  while (done < count) {
    const int n = ::sendmmsg(fd, messages.data() + done, static_cast<unsigned>(count - done), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      die(fmt::format("sendmmsg: {}", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
}

// The learning exchange: one hello A→B (B unknown: flooded), one B→A (A
// learned: forwarded). Each must arrive within two seconds.
void learn(int fd_a, int fd_b) {
  std::array<std::byte, fabric::kMinFrame> frame{};
  std::array<std::byte, kRecvSlot> in{};
  const auto hello = [&](int from, int to, const fabric::MacAddress& dst, const fabric::MacAddress& src,
                         const char* what) {
    write_header(frame.data(), dst, src, kPhaseHello);
    if (::send(from, frame.data(), frame.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(frame.size())) {
      die(fmt::format("learning {}: send: {}", what, std::strerror(errno)));
    }
    set_receive_timeout(to, std::chrono::milliseconds(2000));
    for (;;) {
      const ssize_t n = ::recv(to, in.data(), in.size(), 0);
      if (n < 0) die(fmt::format("learning {}: no frame crossed the switch ({})", what, std::strerror(errno)));
      if (n >= static_cast<ssize_t>(kHeader) && in[14] == std::byte{kPhaseHello} &&
          std::memcmp(in.data() + 6, src.data(), 6) == 0) {
        return;
      }
    }
  };
  hello(fd_a, fd_b, kMacB, kMacA, "A to B");
  hello(fd_b, fd_a, kMacA, kMacB, "B to A");
}

struct TrafficResult {
  uint64_t sent = 0;            // timed frames the sender sent
  double send_seconds = 0;      // how long it sent them
  uint64_t received = 0;        // timed frames received intact
  double receive_seconds = 0;   // first to last timed frame received
  uint64_t gaps = 0;            // frames missing from the sequence (drops)
  uint64_t out_of_order = 0;    // frames with a sequence number below the expected one
  uint64_t corrupted = 0;       // wrong length, header or payload
  uint64_t foreign = 0;         // frames that are not ours (ignored)
  double fps() const { return receive_seconds > 0 && received > 1 ? (received - 1) / receive_seconds : 0; }
  uint64_t drops() const { return sent > received ? sent - received : 0; }
};

// Messages for one recvmmsg(2) of up to kRecvBatch frames: message i
// receives into slot i of `buffers` (kRecvSlot bytes each).
void point_at_slots(std::array<mmsghdr, kRecvBatch>& messages, std::array<iovec, kRecvBatch>& iov,
                    std::byte* buffers) {
  for (size_t i = 0; i < kRecvBatch; ++i) {
    iov[i] = iovec{buffers + i * kRecvSlot, kRecvSlot};
    messages[i] = mmsghdr{};
    messages[i].msg_hdr.msg_iov = &iov[i];
    messages[i].msg_hdr.msg_iovlen = 1;
  }
}

// The receiver: counts and checks timed frames until the sender is done and
// either every frame arrived or none came for 300 ms.
class Receiver {
 public:
  Receiver(int fd, size_t size, const std::atomic<bool>& sender_done, const std::atomic<uint64_t>& sent)
      : fd_(fd), size_(size), sender_done_(sender_done), sent_(sent), buffers_(kRecvBatch * kRecvSlot) {}

  void run(TrafficResult& result) {
    set_receive_timeout(fd_, std::chrono::milliseconds(50));
    std::array<mmsghdr, kRecvBatch> messages{};
    std::array<iovec, kRecvBatch> iov{};
    uint64_t expected = 0;
    bool started = false;
    Clock::time_point first{}, last{}, idle_since = Clock::now();
    for (;;) {
      point_at_slots(messages, iov, buffers_.data());
      const int n = ::recvmmsg(fd_, messages.data(), kRecvBatch, MSG_WAITFORONE, nullptr);
      if (n <= 0) {
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          die(fmt::format("recvmmsg: {}", std::strerror(errno)));
        }
        if (sender_done_.load()) {
          if (expected >= sent_.load() || Clock::now() - idle_since > std::chrono::milliseconds(300)) break;
        } else {
          idle_since = Clock::now();
        }
        continue;
      }
      const auto now = Clock::now();
      idle_since = now;
      for (int i = 0; i < n; ++i) {
        const std::byte* frame = buffers_.data() + static_cast<size_t>(i) * kRecvSlot;
        const size_t length = messages[i].msg_len;
        if (length < kHeader || std::memcmp(frame, kMacB.data(), 6) != 0 ||
            std::memcmp(frame + 6, kMacA.data(), 6) != 0) {
          ++result.foreign;
          continue;
        }
        if (frame[14] != std::byte{kPhaseTimed}) continue;  // warm-up
        uint64_t seq = 0;
        std::memcpy(&seq, frame + 16, sizeof seq);
        if (length != size_ || std::memcmp(frame + kHeader, pattern().at(kHeader, seq), size_ - kHeader) != 0) {
          ++result.corrupted;
          continue;
        }
        if (!started) {
          started = true;
          first = now;
        }
        last = now;
        ++result.received;
        if (seq == expected) {
          ++expected;
        } else if (seq > expected) {
          result.gaps += seq - expected;
          expected = seq + 1;
        } else {
          ++result.out_of_order;
        }
      }
    }
    result.receive_seconds = started ? seconds_since(first, last) : 0;
  }

 private:
  int fd_;
  size_t size_;
  const std::atomic<bool>& sender_done_;
  const std::atomic<uint64_t>& sent_;
  std::vector<std::byte> buffers_;
};

struct TrafficOptions {
  size_t size = 64;
  size_t batch = 32;
  double warmup = 0.5;
  double seconds = 3;
};

// Nanoseconds the process has run on a CPU (/proc/PID/schedstat, field 1).
uint64_t cpu_ns(pid_t pid) {
  if (pid <= 0) return 0;
  std::ifstream in(fmt::format("/proc/{}/schedstat", pid));
  uint64_t ns = 0;
  in >> ns;
  return ns;
}

// The switch process's CPU time over the timed part (from the first timed
// frame sent to the receiver's end; it also covers the warm-up frames still
// queued then, a few hundred at most).
struct CpuUse {
  double percent = 0;       // of one CPU
  double ns_per_frame = 0;  // per timed frame received: the cost of a delivered frame, drops included
  double ns_per_sent = 0;   // per timed frame sent: the cost of a frame the switch took in
};

// Learn, warm up, then run the timed traffic A→B; `switch_pid` is sampled for CPU.
TrafficResult run_traffic(int fd_a, int fd_b, const TrafficOptions& o, pid_t switch_pid, CpuUse& cpu) {
  prepare_client(fd_a);
  prepare_client(fd_b);
  learn(fd_a, fd_b);

  TrafficResult result;
  std::atomic<bool> sender_done{false};
  std::atomic<uint64_t> sent{0};
  Receiver receiver(fd_b, o.size, sender_done, sent);
  std::thread receive_thread([&] { receiver.run(result); });

  const size_t stride = fabric::kMaxFrame;
  std::vector<std::byte> buffers(o.batch * stride);
  const auto send_phase = [&](uint8_t phase, double seconds) -> std::pair<uint64_t, double> {
    for (size_t i = 0; i < o.batch; ++i) write_header(buffers.data() + i * stride, kMacB, kMacA, phase);
    uint64_t seq = 0;
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    auto now = start;
    while (now < deadline) {
      for (size_t i = 0; i < o.batch; ++i) write_sequence(buffers.data() + i * stride, o.size, seq + i);
      send_all(fd_a, buffers.data(), stride, o.size, o.batch);
      seq += o.batch;
      now = Clock::now();
    }
    return {seq, seconds_since(start, now)};
  };
  send_phase(kPhaseWarmup, o.warmup);
  const uint64_t cpu0 = cpu_ns(switch_pid);
  const auto t0 = Clock::now();
  const auto [count, elapsed] = send_phase(kPhaseTimed, o.seconds);
  result.sent = count;
  result.send_seconds = elapsed;
  sent.store(count);
  sender_done.store(true);
  receive_thread.join();
  const double wall = seconds_since(t0, Clock::now());
  const uint64_t cpu1 = cpu_ns(switch_pid);
  cpu.percent = wall > 0 ? 100.0 * static_cast<double>(cpu1 - cpu0) / (wall * 1e9) : 0;
  const auto per = [&](uint64_t frames) { return frames > 0 ? static_cast<double>(cpu1 - cpu0) / static_cast<double>(frames) : 0; };
  cpu.ns_per_frame = per(result.received);
  cpu.ns_per_sent = per(result.sent);
  return result;
}

// ---------------------------------------------------------------------------
// twoOStwo: the fabric in a child process.
// ---------------------------------------------------------------------------

// What the fabric child reports when it stops (a plain struct over the
// control socket: both ends are this binary).
struct FabricReport {
  struct PortReport {
    uint64_t tx_frames, rx_frames, rx_dropped, tx_dropped, recv_calls, send_calls, queue_full;
  };
  PortReport port[2];  // a, b (seen from the link: a's tx is what A sent)
  uint64_t forwarded, flooded, filtered;
  uint64_t capture_frames, capture_bytes, capture_lost;
  char error[512];
};

void send_fds(int socket, const int* fds, size_t count) {
  char byte = 'F';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = CMSG_SPACE(sizeof(int) * count);
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int) * count);
  std::memcpy(CMSG_DATA(header), fds, sizeof(int) * count);
  if (::sendmsg(socket, &message, MSG_NOSIGNAL) != 1) die(fmt::format("sendmsg(SCM_RIGHTS): {}", std::strerror(errno)));
}

// Receives `count` descriptors, or a FabricReport carrying an error.
std::vector<int> receive_fds(int socket, size_t count) {
  FabricReport report{};
  iovec iov{&report, sizeof report};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
  if (n == static_cast<ssize_t>(sizeof report)) die(fmt::format("fabric child: {}", report.error));
  std::vector<int> fds;
  for (cmsghdr* h = CMSG_FIRSTHDR(&message); h != nullptr; h = CMSG_NXTHDR(&message, h)) {
    if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
      const size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < k; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
        fds.push_back(fd);
      }
    }
  }
  if (fds.size() != count) die(fmt::format("fabric child sent {} descriptors, expected {}", fds.size(), count));
  return fds;
}

// The child: build the fabric, hand over the clients' ends, run until the
// parent writes to (or closes) the control socket, then report.
[[noreturn]] void fabric_child(int control, const std::optional<fs::path>& capture_dir) {
  FabricReport report{};
  const auto fail_report = [&](const std::string& message) {
    std::snprintf(report.error, sizeof report.error, "%s", message.c_str());
    (void)::send(control, &report, sizeof report, MSG_NOSIGNAL);
    ::_exit(1);
  };
  boost::asio::io_context io(1);
  {
    fabric::Fabric fab(io);
    auto sw = fab.add_switch("sw");
    if (!sw) fail_report(sw.error().message);
    auto a = fab.add_seqpacket_port("a");
    auto b = fab.add_seqpacket_port("b");
    if (!a) fail_report(a.error().message);
    if (!b) fail_report(b.error().message);
    auto sa = (*sw)->add_port("1");
    auto sb = (*sw)->add_port("2");
    if (!sa) fail_report(sa.error().message);
    if (!sb) fail_report(sb.error().message);
    auto la = fab.connect("a-sw", **a, **sa);
    auto lb = fab.connect("b-sw", **b, **sb);
    if (!la) fail_report(la.error().message);
    if (!lb) fail_report(lb.error().message);
    std::unique_ptr<twoostwo::captures::CaptureSet> captures;
    if (capture_dir) {
      auto set = twoostwo::captures::CaptureSet::start(fab, *capture_dir);
      if (!set) fail_report(set.error().message);
      captures = std::move(*set);
    }
    const int peers[2] = {(*a)->take_peer_fd(), (*b)->take_peer_fd()};
    send_fds(control, peers, 2);
    ::close(peers[0]);
    ::close(peers[1]);

    boost::asio::posix::stream_descriptor stop(io, control);
    stop.async_wait(boost::asio::posix::stream_descriptor::wait_read, [&io, control](const boost::system::error_code&) {
      // Read the stop byte: a socket closed with unread data would make the
      // parent's read of the report fail with ECONNRESET.
      char byte;
      (void)::recv(control, &byte, 1, MSG_DONTWAIT);
      io.stop();
    });
    io.run();

    for (int i = 0; i < 2; ++i) {
      const fabric::SocketPort* port = i == 0 ? *a : *b;
      const auto& c = port->counters();
      const auto& s = port->socket_counters();
      report.port[i] = {c.tx_frames, c.rx_frames, c.rx_dropped, c.tx_dropped, s.recv_calls, s.send_calls,
                        s.queue_full};
    }
    const auto& sc = (*sw)->counters();
    report.forwarded = sc.forwarded;
    report.flooded = sc.flooded;
    report.filtered = sc.filtered;
    if (captures) {
      if (auto stopped = captures->stop(); !stopped) {
        std::snprintf(report.error, sizeof report.error, "%s", stopped.error().message.c_str());
      }
      for (const char* link : {"a-sw", "b-sw"}) {
        if (const auto* capture = captures->find(link)) {
          const auto& c = capture->writer().counters();
          report.capture_frames += c.frames;
          report.capture_bytes += c.bytes;
          report.capture_lost += c.lost;
        }
      }
      captures.reset();  // before the fabric's links go
    }
    stop.release();
  }
  (void)::send(control, &report, sizeof report, MSG_NOSIGNAL);
  ::_exit(0);
}

struct CellResult {
  TrafficResult traffic;
  CpuUse cpu;
  FabricReport fabric{};  // twoOStwo only
  bool ok = false;
};

CellResult run_twoostwo(const TrafficOptions& o, const std::optional<fs::path>& capture_dir) {
  int control[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, control) != 0) {
    die(fmt::format("socketpair: {}", std::strerror(errno)));
  }
  std::fflush(stdout);
  const pid_t pid = ::fork();
  if (pid < 0) die(fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    ::close(control[0]);
    fabric_child(control[1], capture_dir);
  }
  ::close(control[1]);
  if (verbose) fmt::print(stderr, " [fabric pid {}]", pid);
  const auto fds = receive_fds(control[0], 2);
  CellResult cell;
  cell.traffic = run_traffic(fds[0], fds[1], o, pid, cell.cpu);
  // Stop the fabric and read its report.
  const char stop = 'S';
  (void)::send(control[0], &stop, 1, MSG_NOSIGNAL);
  const ssize_t n = ::recv(control[0], &cell.fabric, sizeof cell.fabric, 0);
  const int recv_errno = errno;
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(control[0]);
  ::close(fds[0]);
  ::close(fds[1]);
  if (n != static_cast<ssize_t>(sizeof cell.fabric)) {
    const int error = recv_errno;
    die(fmt::format("fabric child ended without a report ({} {}; {})", WIFSIGNALED(status) ? "signal" : "exit status",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                    n < 0 ? std::strerror(error) : fmt::format("{} bytes", n)));
  }
  if (cell.fabric.error[0] != '\0') die(fmt::format("fabric child: {}", cell.fabric.error));
  cell.ok = true;
  return cell;
}

// The clients' own ceiling: sender and receiver on one SOCK_SEQPACKET
// socketpair, no switch between them.
CellResult run_direct(const TrafficOptions& o) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    die(fmt::format("socketpair: {}", std::strerror(errno)));
  }
  CellResult cell;
  cell.traffic = run_traffic(fds[0], fds[1], o, 0, cell.cpu);
  ::close(fds[0]);
  ::close(fds[1]);
  cell.ok = true;
  return cell;
}

// The floor of a switch process between two SOCK_SEQPACKET ports (see the
// header, "relay"): forwards whatever arrives on one end to the other until
// either end hangs up.
[[noreturn]] void relay_child(int x, int y) {
  std::vector<std::byte> buffers(kRecvBatch * kRecvSlot);
  std::array<mmsghdr, kRecvBatch> messages{};
  std::array<iovec, kRecvBatch> iov{};
  std::array<pollfd, 2> ends{pollfd{x, POLLIN, 0}, pollfd{y, POLLIN, 0}};
  for (;;) {
    if (::poll(ends.data(), ends.size(), -1) < 0) {
      if (errno == EINTR) continue;
      ::_exit(1);
    }
    for (size_t from = 0; from < 2; ++from) {
      const short events = ends[from].revents;
      if (events & (POLLHUP | POLLERR | POLLNVAL)) ::_exit(0);
      if (!(events & POLLIN)) continue;
      point_at_slots(messages, iov, buffers.data());
      const int n = ::recvmmsg(ends[from].fd, messages.data(), kRecvBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) continue;
      for (int i = 0; i < n; ++i) iov[i].iov_len = messages[i].msg_len;
      for (int done = 0; done < n;) {
        const int k = ::sendmmsg(ends[1 - from].fd, messages.data() + done, static_cast<unsigned>(n - done), 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) ::_exit(0);
        done += k;
      }
    }
  }
}

CellResult run_relay(const TrafficOptions& o) {
  int a[2], b[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, a) != 0 ||
      ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, b) != 0) {
    die(fmt::format("socketpair: {}", std::strerror(errno)));
  }
  prepare_client(a[1]);  // blocking, the same buffers as everywhere else
  prepare_client(b[1]);
  std::fflush(stdout);
  const pid_t pid = ::fork();
  if (pid < 0) die(fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    ::close(a[0]);
    ::close(b[0]);
    relay_child(a[1], b[1]);
  }
  ::close(a[1]);
  ::close(b[1]);
  if (verbose) fmt::print(stderr, " [relay pid {}]", pid);
  CellResult cell;
  cell.traffic = run_traffic(a[0], b[0], o, pid, cell.cpu);
  ::close(a[0]);
  ::close(b[0]);
  ::waitpid(pid, nullptr, 0);
  cell.ok = true;
  return cell;
}

// ---------------------------------------------------------------------------
// vde_switch.
// ---------------------------------------------------------------------------

CellResult run_vde(const TrafficOptions& o, const std::string& vde_switch, const fs::path& work) {
  const fs::path dir = work / "vde";
  const fs::path log = work / "vde_switch.log";
  fs::remove_all(dir);
  int stdin_pipe[2];
  if (::pipe2(stdin_pipe, O_CLOEXEC) != 0) die(fmt::format("pipe: {}", std::strerror(errno)));
  std::fflush(stdout);
  const pid_t pid = ::fork();
  if (pid < 0) die(fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    ::dup2(stdin_pipe[0], 0);
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    const std::string dir_text = dir.string();
    ::execlp(vde_switch.c_str(), vde_switch.c_str(), "-s", dir_text.c_str(), static_cast<char*>(nullptr));
    std::fprintf(stderr, "exec %s: %s\n", vde_switch.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  ::close(stdin_pipe[0]);
  if (verbose) fmt::print(stderr, " [vde_switch pid {}]", pid);
  const auto stop_switch = [&] {
    ::kill(pid, SIGTERM);
    ::close(stdin_pipe[1]);
    int status = 0;
    ::waitpid(pid, &status, 0);
  };
  // Wait for its control socket.
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (!fs::exists(dir / "ctl")) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      std::ifstream in(log);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
      die(fmt::format("{} exited before making {} ({})", vde_switch, (dir / "ctl").string(), text));
    }
    if (Clock::now() > deadline) {
      stop_switch();
      die(fmt::format("{} made no {} within 5 s", vde_switch, (dir / "ctl").string()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::string url = "vde://" + dir.string();
  VDECONN* a = vde_open(url.data(), const_cast<char*>("fabric_bench A"), nullptr);
  VDECONN* b = vde_open(url.data(), const_cast<char*>("fabric_bench B"), nullptr);
  if (a == nullptr || b == nullptr) {
    const int error = errno;
    stop_switch();
    die(fmt::format("vde_open({}): {}", url, std::strerror(error)));
  }
  CellResult cell;
  cell.traffic = run_traffic(vde_datafd(a), vde_datafd(b), o, pid, cell.cpu);
  vde_close(a);
  vde_close(b);
  stop_switch();
  fs::remove_all(dir);
  cell.ok = true;
  return cell;
}

// ---------------------------------------------------------------------------
// The table.
// ---------------------------------------------------------------------------

std::string grouped(double value) {
  std::string digits = fmt::format("{:.0f}", value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// The runs of one cell sorted by frames/s; the median run is the middle one
// (the lower middle one for an even count).
const CellResult& median(std::vector<CellResult>& runs) {
  std::sort(runs.begin(), runs.end(),
            [](const CellResult& x, const CellResult& y) { return x.traffic.fps() < y.traffic.fps(); });
  return runs[(runs.size() - 1) / 2];
}

// The median of the switch's CPU nanoseconds per frame, on its own.
double median_cpu(const std::vector<CellResult>& runs) {
  std::vector<double> values;
  for (const auto& run : runs) values.push_back(run.cpu.ns_per_frame);
  std::sort(values.begin(), values.end());
  return values[(values.size() - 1) / 2];
}

// " (min–max)" of frames/s over runs sorted by median(), if there are several.
std::string spread(const std::vector<CellResult>& sorted) {
  if (sorted.size() < 2) return "";
  return fmt::format(" ({}–{})", grouped(sorted.front().traffic.fps()), grouped(sorted.back().traffic.fps()));
}

std::string percent(uint64_t part, uint64_t whole) {
  return fmt::format("{:.1f}%", whole > 0 ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "fabric_bench: frames per second through one switch between two ports, twoOStwo's fabric "
      "(SOCK_SEQPACKET ports) beside Debian's vde_switch (libvdeplug clients), capture off and on, "
      "as a table with ratios (issue 5). See the header of bench/fabric_bench.cpp for the method."};
  double seconds = 3;
  double warmup = 0.5;
  std::vector<size_t> sizes{64, 1514};
  size_t batch = 32;
  int repeat = 1;
  bool no_vde = false, no_capture = false, no_relay = false, keep = false;
  std::string capture_dir_option, vde_switch = "vde_switch";
  app.add_option("--seconds", seconds, "Timed traffic per run, in seconds")->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();
  app.add_option("--warmup", warmup, "Untimed traffic before each timed part, in seconds")
      ->check(CLI::Range(0.0, 60.0))->capture_default_str();
  app.add_option("--sizes", sizes, "Frame sizes in bytes without FCS (60..1514)")
      ->delimiter(',')->check(CLI::Range(size_t{60}, fabric::kMaxUntaggedFrame))->capture_default_str();
  app.add_option("--batch", batch, "Frames per sendmmsg call of the sender")->check(CLI::Range(size_t{1}, size_t{256}))
      ->capture_default_str();
  app.add_option("--repeat", repeat, "Runs of each kind per frame size; the table shows the median and the range")
      ->check(CLI::Range(1, 100))->capture_default_str();
  app.add_flag("--no-vde", no_vde, "Skip vde_switch");
  app.add_flag("--no-capture", no_capture, "Skip the capture-on runs");
  app.add_flag("--no-relay", no_relay, "Skip the minimal forwarder (the floor of a switch process; see the header)");
  app.add_option("--capture-dir", capture_dir_option,
                 "Where capture-on runs write their pcap files (default: a temporary directory)");
  app.add_flag("--keep-captures", keep, "Keep the pcap files of the last capture-on run");
  app.add_option("--vde-switch", vde_switch, "The vde_switch program")->capture_default_str();
  app.add_flag("--verbose", verbose, "Print the PID of each switch process as it starts (for perf record -p)");
  CLI11_PARSE(app, argc, argv);

  std::string work_template = (fs::temp_directory_path() / "fabric_bench.XXXXXX").string();
  if (::mkdtemp(work_template.data()) == nullptr) die(fmt::format("mkdtemp: {}", std::strerror(errno)));
  const fs::path work = work_template;
  work_dir = work;
  work_owner = ::getpid();
  const fs::path capture_dir = capture_dir_option.empty() ? work / "captures" : fs::path(capture_dir_option);
  if (!no_capture) fs::create_directories(capture_dir);

  fmt::print("fabric_bench: {} s timed + {} s warm-up per run, sender batches of {}, {} run(s) per cell{}\n",
             seconds, warmup, batch, repeat, repeat > 1 ? " (median, range in brackets)" : "");
  fmt::print("one sender, one receiver, unicast to a learned MAC; frames/s = frames received intact\n\n");
  std::fflush(stdout);

  struct Row {
    size_t size;
    std::vector<CellResult> off, on, vde, direct, relay;
  };
  std::vector<Row> rows;
  for (size_t size : sizes) rows.push_back(Row{size, {}, {}, {}, {}, {}});
  // Cells of one size run back to back, in reverse order every other round,
  // so that a slow spell of the machine does not always hit the same column.
  for (int r = 0; r < repeat; ++r) {
    for (Row& row : rows) {
      TrafficOptions o{row.size, batch, warmup, seconds};
      fmt::print(stderr, "round {}/{}: {} B:", r + 1, repeat, row.size);
      std::vector<std::function<void()>> cells;
      cells.push_back([&] {
        fmt::print(stderr, " twoOStwo");
        row.off.push_back(run_twoostwo(o, std::nullopt));
      });
      if (!no_capture) {
        cells.push_back([&] {
          fmt::print(stderr, " twoOStwo+capture");
          row.on.push_back(run_twoostwo(o, capture_dir));
        });
      }
      if (!no_vde) {
        cells.push_back([&] {
          fmt::print(stderr, " vde_switch");
          row.vde.push_back(run_vde(o, vde_switch, work));
        });
      }
      cells.push_back([&] {
        fmt::print(stderr, " direct");
        row.direct.push_back(run_direct(o));
      });
      if (!no_relay) {
        cells.push_back([&] {
          fmt::print(stderr, " relay");
          row.relay.push_back(run_relay(o));
        });
      }
      if (r % 2 == 1) std::reverse(cells.begin(), cells.end());
      for (auto& cell : cells) cell();
      fmt::print(stderr, "\n");
    }
  }

  fmt::print("| frames | capture | twoostwo fps | vde_switch fps | ratio | drops twoostwo / vde_switch |"
             " switch CPU ns/frame twoostwo / vde_switch | CPU ratio |\n");
  fmt::print("|---:|---|---:|---:|---:|---:|---:|---:|\n");
  std::vector<std::string> costs, details, ceilings, floors;
  for (Row& row : rows) {
    const CellResult& off = median(row.off);
    const CellResult* on = row.on.empty() ? nullptr : &median(row.on);
    const CellResult* vde = row.vde.empty() ? nullptr : &median(row.vde);
    const double vde_cpu = vde ? median_cpu(row.vde) : 0;
    const auto line = [&](const char* capture, const CellResult& t, const std::vector<CellResult>& runs) {
      const double cpu = median_cpu(runs);
      fmt::print("| {} B | {} | {}{} | {} | {} | {} / {} | {:.0f} / {} | {} |\n", row.size, capture,
                 grouped(t.traffic.fps()), spread(runs), vde ? grouped(vde->traffic.fps()) + spread(row.vde) : "—",
                 vde && vde->traffic.fps() > 0 ? fmt::format("{:.2f}×", t.traffic.fps() / vde->traffic.fps()) : "—",
                 percent(t.traffic.drops(), t.traffic.sent),
                 vde ? percent(vde->traffic.drops(), vde->traffic.sent) : "—", cpu,
                 vde ? fmt::format("{:.0f}", vde_cpu) : "—", vde && cpu > 0 ? fmt::format("{:.2f}×", vde_cpu / cpu) : "—");
    };
    line("off", off, row.off);
    if (on) line("on", *on, row.on);
    if (on && off.traffic.fps() > 0) {
      const double cpu_off = median_cpu(row.off), cpu_on = median_cpu(row.on);
      costs.push_back(fmt::format("{} B: {:.1f}% of frames/s ({} → {}), {:+.0f}% switch CPU per frame", row.size,
                                  100.0 * (1.0 - on->traffic.fps() / off.traffic.fps()), grouped(off.traffic.fps()),
                                  grouped(on->traffic.fps()), cpu_off > 0 ? 100.0 * (cpu_on / cpu_off - 1.0) : 0.0));
    }
    const auto detail = [&](const char* name, const CellResult& c) {
      const auto& t = c.traffic;
      std::string text = fmt::format("| {} B | {} | {} | {:.0f} | {:.0f}% | {:.0f} / {:.0f} | {} / {} / {} |", row.size,
                                     name, grouped(static_cast<double>(t.sent) / t.send_seconds),
                                     static_cast<double>(row.size) * 8 * t.fps() / 1e6, c.cpu.percent,
                                     c.cpu.ns_per_frame, c.cpu.ns_per_sent, t.gaps, t.out_of_order, t.corrupted);
      const auto& pa = c.fabric.port[0];
      const auto& pb = c.fabric.port[1];
      if (pa.recv_calls > 0) {
        text += fmt::format(" {:.1f} / {:.1f} | {} | {} |",
                            static_cast<double>(pa.tx_frames) / static_cast<double>(pa.recv_calls),
                            pb.send_calls ? static_cast<double>(pb.rx_frames) / static_cast<double>(pb.send_calls) : 0,
                            pa.tx_dropped + pa.rx_dropped + pb.tx_dropped + pb.rx_dropped, c.fabric.capture_frames);
      } else {
        text += " — | — | — |";
      }
      details.push_back(text);
    };
    detail("twoOStwo", off);
    if (on) detail("twoOStwo+capture", *on);
    if (vde) detail("vde_switch", *vde);
    const CellResult& direct = median(row.direct);
    detail("direct (no switch)", direct);
    ceilings.push_back(fmt::format("{} B: {}{}", row.size, grouped(direct.traffic.fps()), spread(row.direct)));
    if (!row.relay.empty()) {
      const CellResult& relay = median(row.relay);
      detail("relay (minimal forwarder)", relay);
      floors.push_back(fmt::format("{} B: {}{}{}", row.size, grouped(relay.traffic.fps()), spread(row.relay),
                                   vde && vde->traffic.fps() > 0
                                       ? fmt::format(" = {:.2f}× vde_switch", relay.traffic.fps() / vde->traffic.fps())
                                       : ""));
    }
  }
  if (!costs.empty()) fmt::print("\ncapture cost (target ≤ 20%): {}\n", fmt::join(costs, "; "));
  fmt::print("\nclients' ceiling, frames/s (the same sender and receiver on one socketpair, no switch): {}\n",
             fmt::join(ceilings, "; "));
  if (!floors.empty()) {
    fmt::print("best a switch process on SOCK_SEQPACKET ports can do here, frames/s (a minimal forwarder: poll,"
               " recvmmsg, sendmmsg, nothing else): {}\n",
               fmt::join(floors, "; "));
  }
  fmt::print("\ndetails of the median runs: offered = frames/s the sender got into its socket; switch CPU over the"
             " timed part; port drops include the warm-up\n");
  fmt::print("| frames | switch | offered fps | Mbit/s received | switch CPU | CPU ns per frame received / sent |"
             " gaps / reordered / corrupt |"
             " frames per recvmmsg / sendmmsg | port drops | frames captured |\n");
  fmt::print("|---:|---|---:|---:|---:|---:|---|---|---:|---:|\n");
  for (const auto& d : details) fmt::print("{}\n", d);

  if (keep && !no_capture) {
    fmt::print("\ncaptures of the last capture-on run kept in {}\n", capture_dir.string());
  } else if (!capture_dir_option.empty()) {
    for (const char* link : {"a-sw", "b-sw"}) fs::remove(capture_dir / twoostwo::captures::capture_file_name(link));
  }
  if (keep && !no_capture && capture_dir_option.empty()) {
    fs::remove_all(work / "vde");
  } else {
    fs::remove_all(work);
  }
  return 0;
}
