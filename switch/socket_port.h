// Ports whose outside is a datagram socket (DESIGN.md: "socket and UDP ports"):
//
// - seqpacket: a monitor's NIC. The supervisor makes a SOCK_SEQPACKET
//   socketpair, keeps one end in the fabric and hands the other to the
//   monitor (`twoostwo-vmm --nic …,backend=fd:N`); one Ethernet frame per
//   message, no FCS, as vmcore/net_backends.h sends them.
// - udp: a tunnel, one raw frame per datagram with no header — the framing of
//   QEMU's `-netdev dgram,local.*,remote.*` / `-netdev socket,udp=…,localaddr=…`
//   (net/dgram.c, net/socket.c) and of GNS3's ubridge UDP links — so VMs
//   outside the lab can join it. It sends to a fixed remote address and
//   accepts datagrams from any source, as QEMU does.
//
// Receiving: when the socket is readable the port reads up to kBatch frames
// per recvmmsg(2), at most kBudget per turn of the event loop (so one busy
// port cannot starve the others), and transmits each onto its link.
// Sending: delivered frames are copied into a bounded queue and written with
// sendmmsg(2) once the current turn of the event loop is done, so the frames
// of one receive batch leave in one system call. If the socket is full the
// queue waits for it to become writable; frames beyond the queue's capacity
// are dropped and counted (rx_dropped) — backpressure, never unbounded memory.
// A seqpacket peer that closes its end (a monitor exiting) takes the port
// down; the fabric and every other port keep running.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "switch/port.h"

namespace twoostwo::fabric {

/// Egress queue capacity of a SocketPort, in frames.
struct SocketPortOptions {
  size_t queue_frames = 512;
};

class SocketPort final : public Port {
 public:
  /// Frames per recvmmsg/sendmmsg call, and frames read per readiness event.
  static constexpr size_t kBatch = 64;
  static constexpr size_t kBudget = 256;
  using Options = SocketPortOptions;
  /// Counters beyond PortCounters.
  struct SocketCounters {
    uint64_t recv_calls = 0;      // recvmmsg calls that returned frames
    uint64_t send_calls = 0;      // sendmmsg calls
    uint64_t queue_full = 0;      // frames dropped because the egress queue was full
    uint64_t oversized = 0;       // messages longer than kMaxFrame (truncated on read), dropped
    uint64_t socket_errors = 0;   // other receive/send errors (ECONNREFUSED from a UDP peer…)
  };

  /// A SOCK_SEQPACKET socketpair: the port keeps one end; the other end is
  /// returned by take_peer_fd() for a monitor process (close-on-exec is
  /// cleared on it by the caller that forks). Errors: socketpair(2) failing.
  static Result<std::unique_ptr<SocketPort>> seqpacket_pair(boost::asio::io_context& io, std::string name,
                                                            Options options = {});
  /// Take over `fd`, a connected SOCK_SEQPACKET socket (made non-blocking and
  /// close-on-exec, its buffers enlarged to 1 MiB as seqpacket_pair's are).
  /// Errors: not a socket, or another type.
  static Result<std::unique_ptr<SocketPort>> adopt_seqpacket(boost::asio::io_context& io, std::string name, int fd,
                                                             Options options = {});
  /// A UDP socket bound to `local` that sends to `remote`, both "HOST:PORT"
  /// with HOST an IPv4 address or name (e.g. "127.0.0.1:10001"; port 0 in
  /// `local` picks a free port, see local_address()). Errors: bad syntax,
  /// unknown host, bind failure.
  static Result<std::unique_ptr<SocketPort>> udp(boost::asio::io_context& io, std::string name,
                                                 const std::string& local, const std::string& remote,
                                                 Options options = {});

  ~SocketPort() override;

  /// The monitor's end of a seqpacket_pair (once; -1 afterwards, and for
  /// other kinds). The caller owns it.
  int take_peer_fd();
  /// For udp ports: the bound address as "IP:PORT".
  std::string local_address() const;
  /// "seqpacket fd 7" or "udp 127.0.0.1:4000 -> 127.0.0.1:4001".
  std::string describe() const override;

  /// True once a seqpacket peer closed its end (the port is then down).
  bool peer_closed() const { return peer_closed_; }
  /// Add a callback for when the peer closes, called once on the fabric's
  /// thread (after the port went down). Callbacks run in the order added, so
  /// the supervisor and the captures can each watch a port.
  void on_peer_closed(std::function<void()> callback) { on_closed_.push_back(std::move(callback)); }

  const SocketCounters& socket_counters() const { return socket_counters_; }
  /// Frames waiting in the egress queue.
  size_t queued() const { return queue_count_; }

 protected:
  bool on_deliver(const Frame& frame) override;

 private:
  enum class Kind { kSeqpacket, kUdp };
  SocketPort(boost::asio::io_context& io, std::string name, Kind kind, int fd, Options options);
  void arm_read();
  void read_ready();
  void schedule_flush();
  void flush();
  void arm_write();
  void close_peer();

  boost::asio::io_context& io_;
  Kind kind_;
  int fd_;
  int peer_fd_ = -1;
  std::vector<std::byte> remote_;  // sockaddr for UDP sendmmsg
  std::string local_, remote_text_;
  boost::asio::posix::stream_descriptor waiter_;
  bool reading_ = false, writing_ = false, flush_posted_ = false;
  bool peer_closed_ = false;
  std::vector<std::function<void()>> on_closed_;
  // Receive buffers: kBatch slots of kMaxFrame + 1 bytes (one more, to tell
  // an oversized message from a full-sized one).
  std::unique_ptr<std::byte[]> rx_buffers_;
  // Egress queue: a ring of queue_frames slots of kMaxFrame bytes, allocated
  // on first use.
  size_t queue_capacity_;
  std::unique_ptr<std::byte[]> queue_;
  std::vector<uint16_t> queue_len_;
  size_t queue_head_ = 0, queue_count_ = 0;
  SocketCounters socket_counters_;
  // Set while the port is alive; flush handlers posted to the io_context
  // check it, so a port destroyed with a flush pending is never touched.
  std::shared_ptr<bool> alive_;
};

}  // namespace twoostwo::fabric
