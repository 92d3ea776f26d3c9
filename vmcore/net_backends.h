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
// readiness on the descriptor, then recv() until it would block).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
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
  void start(boost::asio::io_context& io, FrameHandler on_frame);
  /// Stop receiving (on the I/O thread, or after it has stopped).
  void stop();

  Counters counters() const;
  /// "fd 3 (seqpacket)" or "udp 127.0.0.1:10001 -> 127.0.0.1:10000".
  const std::string& description() const { return description_; }
  /// True once a SOCK_SEQPACKET peer closed its end.
  bool peer_closed() const { return peer_closed_.load(std::memory_order_relaxed); }

 private:
  SocketBackend(int fd, bool connected, std::vector<std::byte> remote, std::string description);
  void arm();
  void drain();

  int fd_;
  bool connected_;                  // send() with no address (fd), else sendto(remote_)
  std::vector<std::byte> remote_;   // sockaddr bytes for sendto
  std::string description_;
  FrameHandler on_frame_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> waiter_;
  std::vector<std::byte> buffer_;
  std::atomic<uint64_t> tx_frames_{0}, tx_dropped_{0}, rx_frames_{0}, rx_errors_{0};
  std::atomic<bool> peer_closed_{false};
};

}  // namespace twoostwo::vmcore
