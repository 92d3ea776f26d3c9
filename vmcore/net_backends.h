// NIC backends over sockets (DESIGN.md: "NIC backends over sockets" live in
// vmcore/, the NetBackend interface in nic/). One Ethernet frame per message
// in both directions, destination MAC first, no FCS:
//
// - a SOCK_SEQPACKET socket handed to the monitor as an inherited file
//   descriptor: how the lab fabric connects a NIC (the supervisor creates a
//   socketpair and keeps the other end);
// - a UDP socket bound to a local address that sends to a remote one, the
//   framing of QEMU's `-netdev dgram,local.*,remote.*` and
//   `-netdev socket,udp=REMOTE,localaddr=LOCAL` (net/dgram.c, net/socket.c:
//   one raw frame per datagram, no header), so a twoOStwo VM and a QEMU VM
//   can be wired directly.
//
// Sending happens on the CPU engine's thread with the device lock held and
// never blocks: MSG_DONTWAIT, and a frame the socket cannot take now is
// dropped and counted. Receiving runs on the monitor's I/O thread (Boost.Asio
// readiness on the descriptor, then recv() until it would block), and also on
// whichever thread calls receive_now() -- the Monitor's CPU thread while the
// guest halts, so that a frame wakes it directly (vmcore/monitor.cpp). Both
// receive under one mutex per backend, so frames are handed on in the order
// the socket delivered them. Flow control (set_room): a receiver that cannot
// take a frame now leaves it on the socket, so a SOCK_SEQPACKET peer's sends
// fail once the socket buffer is full and the loss, if any, is counted by the
// sender, never silently here.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "nic/net_backend.h"
#include "vmcore/bus/error.h"

namespace twoostwo::vmcore {

class SocketBackend final : public nic::NetBackend {
 public:
  /// Counters, readable from any thread.
  struct Counters {
    uint64_t tx_frames = 0;   // sent
    uint64_t tx_dropped = 0;  // the socket could not take them (full, peer gone)
    uint64_t rx_frames = 0;   // received and handed on
    uint64_t rx_errors = 0;   // empty or oversized messages, receive errors
  };
  /// Called on the I/O thread with each received frame (1..65535 bytes; the
  /// card filters sizes itself).
  using FrameHandler = std::function<void(std::span<const std::byte>)>;

  /// Take over `fd`, a connected SOCK_SEQPACKET (or SOCK_DGRAM) socket
  /// inherited from the parent. Errors: not a socket, or another type (the
  /// message names the fd and the type found).
  static Result<std::unique_ptr<SocketBackend>> adopt_fd(int fd);
  /// A UDP socket bound to `local` that sends every frame to `remote`; both
  /// "HOST:PORT" with HOST a name or an IPv4 address (e.g. "127.0.0.1:10001").
  /// Datagrams are accepted from any source, as QEMU does. Errors: bad
  /// address syntax, unknown host, bind failure (address in use).
  static Result<std::unique_ptr<SocketBackend>> udp(const std::string& local, const std::string& remote);

  ~SocketBackend() override;
  SocketBackend(const SocketBackend&) = delete;
  SocketBackend& operator=(const SocketBackend&) = delete;

  void send(std::span<const std::byte> frame) override;

  /// Start receiving on `io` (whose thread then calls `on_frame`). Call once.
  /// `defer` (optional) is asked, on the I/O thread, each time the socket
  /// becomes readable: while it returns true the I/O thread leaves the
  /// frames to a thread that polls fd() and calls receive_now() (the
  /// Monitor's halted CPU thread) and stops waiting on the socket (a wait
  /// started while the frames are still there would end at once, again and
  /// again, until the poller took them). That thread calls resume() once it
  /// has stopped polling and `defer` returns false again.
  void start(boost::asio::io_context& io, FrameHandler on_frame, std::function<bool()> defer = {});
  /// After `defer` (start()) has turned false: if the I/O thread stopped
  /// waiting on the socket for the poller, it receives what is waiting and
  /// waits again. Any thread; does nothing if the I/O thread is waiting.
  void resume();
  /// Stop receiving (on the I/O thread, or after it has stopped).
  void stop();

  /// Receive every frame waiting on the socket now, without blocking, and
  /// hand each to `on_frame` on the calling thread, in arrival order. May run
  /// at the same time as the I/O thread's receiving (start()): the two take
  /// turns under one mutex, and a frame is handed on by whichever thread
  /// received it, before that thread lets the other receive. The caller must
  /// not hold a lock that `on_frame` (or the I/O thread's handler) takes.
  /// Returns the number of frames handed on.
  size_t receive_now(const FrameHandler& on_frame);
  /// The socket, for poll(2) (POLLIN) by a thread that then calls
  /// receive_now(). Stop polling it once peer_closed(): a closed
  /// SOCK_SEQPACKET peer leaves it readable for ever.
  int fd() const { return fd_; }

  /// Flow control; set before start(). `room` is asked on the receiving
  /// thread before each recv(), where `on_frame` runs (so it may take the
  /// same locks): when it returns false, receiving stops, the frames stay on
  /// the socket and held_back() turns true; a later receive_now(), once
  /// there is room, takes them. The I/O thread does not retry by itself
  /// until another frame arrives.
  void set_room(std::function<bool()> room) { room_ = std::move(room); }
  /// True while frames may be waiting on the socket because `room` said no
  /// the last time a thread received (cleared when a receive empties the socket).
  bool held_back() const { return held_back_.load(std::memory_order_acquire); }

  Counters counters() const;
  /// "fd 3 (seqpacket)" or "udp 127.0.0.1:10001 -> 127.0.0.1:10000".
  const std::string& description() const { return description_; }
  /// True once a SOCK_SEQPACKET peer closed its end.
  bool peer_closed() const { return peer_closed_.load(std::memory_order_relaxed); }

 private:
  SocketBackend(int fd, bool connected, std::vector<std::byte> remote, std::string description);
  void arm();
  void drain();
  /// recv() until it would block, handing frames to `on_frame`; rx_mu_ held.
  size_t receive_locked(const FrameHandler& on_frame);

  int fd_;
  bool connected_;                  // send() with no address (fd), else sendto(remote_)
  std::vector<std::byte> remote_;   // sockaddr bytes for sendto
  std::string description_;
  FrameHandler on_frame_;
  std::function<bool()> defer_;
  std::function<bool()> room_;
  std::atomic<bool> held_back_{false};
  // The I/O thread left the socket to the poller (`defer`) and does not wait
  // on it; whichever of drain() and resume() clears it waits again.
  std::atomic<bool> parked_{false};
  std::unique_ptr<boost::asio::posix::stream_descriptor> waiter_;
  std::mutex rx_mu_;               // one receiving thread at a time (order)
  std::vector<std::byte> buffer_;  // guarded by rx_mu_
  std::atomic<uint64_t> tx_frames_{0}, tx_dropped_{0}, rx_frames_{0}, rx_errors_{0};
  std::atomic<bool> peer_closed_{false};
};

}  // namespace twoostwo::vmcore
