#include "vmcore/net_backends.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace twoostwo::vmcore {
namespace {

constexpr size_t kMaxMessage = 65536;

std::string errno_text(int e) { return std::strerror(e); }

/// Resolve "HOST:PORT" to an IPv4 socket address.
Result<std::vector<std::byte>> resolve(const std::string& what, const std::string& hostport) {
  const auto colon = hostport.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == hostport.size()) {
    return fail(fmt::format("udp {} address '{}': expected HOST:PORT", what, hostport));
  }
  const std::string host = hostport.substr(0, colon);
  const std::string port = hostport.substr(colon + 1);
  if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 || std::stoul(port) > 65535) {
    return fail(fmt::format("udp {} address '{}': bad port '{}'", what, hostport, port));
  }
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return fail(fmt::format("udp {} address '{}': {}", what, hostport, ::gai_strerror(rc)));
  }
  std::vector<std::byte> addr(res->ai_addrlen);
  std::memcpy(addr.data(), res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  return addr;
}

}  // namespace

SocketBackend::SocketBackend(int fd, bool connected, std::vector<std::byte> remote, std::string description)
    : fd_(fd), connected_(connected), remote_(std::move(remote)), description_(std::move(description)),
      buffer_(kMaxMessage) {}

SocketBackend::~SocketBackend() {
  if (waiter_) {
    (void)waiter_->release();  // the descriptor is ours to close
    waiter_.reset();
  }
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<SocketBackend>> SocketBackend::adopt_fd(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    return fail(fmt::format("fd {}: not a socket ({})", fd, errno_text(errno)));
  }
  if (type != SOCK_SEQPACKET && type != SOCK_DGRAM) {
    return fail(fmt::format("fd {}: a {} socket (expected SOCK_SEQPACKET or SOCK_DGRAM: one frame per message)", fd,
                            type == SOCK_STREAM ? "SOCK_STREAM" : std::to_string(type)));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return fail(fmt::format("fd {}: cannot make it non-blocking ({})", fd, errno_text(errno)));
  }
  (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);
  const std::string desc = fmt::format("fd {} ({})", fd, type == SOCK_SEQPACKET ? "seqpacket" : "datagram");
  return std::unique_ptr<SocketBackend>(new SocketBackend(fd, true, {}, desc));
}

Result<std::unique_ptr<SocketBackend>> SocketBackend::udp(const std::string& local, const std::string& remote) {
  auto laddr = resolve("local", local);
  if (!laddr) return std::unexpected(laddr.error());
  auto raddr = resolve("remote", remote);
  if (!raddr) return std::unexpected(raddr.error());
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(fmt::format("udp socket: {}", errno_text(errno)));
  const int one = 1;
  (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(laddr->data()), static_cast<socklen_t>(laddr->size())) != 0) {
    const int e = errno;
    ::close(fd);
    return fail(fmt::format("udp local address {}: cannot bind: {}", local, errno_text(e)));
  }
  return std::unique_ptr<SocketBackend>(
      new SocketBackend(fd, false, std::move(*raddr), fmt::format("udp {} -> {}", local, remote)));
}

void SocketBackend::send(std::span<const std::byte> frame) {
  ssize_t n;
  if (connected_) {
    n = ::send(fd_, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  } else {
    n = ::sendto(fd_, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                 reinterpret_cast<const sockaddr*>(remote_.data()), static_cast<socklen_t>(remote_.size()));
  }
  if (n == static_cast<ssize_t>(frame.size())) {
    tx_frames_.fetch_add(1, std::memory_order_relaxed);
  } else {
    tx_dropped_.fetch_add(1, std::memory_order_relaxed);
  }
}

void SocketBackend::start(boost::asio::io_context& io, FrameHandler on_frame, std::function<bool()> defer) {
  on_frame_ = std::move(on_frame);
  defer_ = std::move(defer);
  waiter_ = std::make_unique<boost::asio::posix::stream_descriptor>(io, fd_);
  arm();
}

void SocketBackend::resume() {
  // Start the wait here rather than post it to the I/O thread, which would
  // wake that thread on every halt the guest leaves. Safe: while parked,
  // the I/O thread has no operation on waiter_ and does not touch it (the
  // exchange hands it over), and the reactor serialises starting a wait
  // with its own thread. A frame already waiting ends the wait at once, and
  // the I/O thread takes it (or the caller's receive_now does first).
  if (waiter_ && parked_.exchange(false)) arm();
}

void SocketBackend::stop() {
  if (waiter_) {
    boost::system::error_code ec;
    waiter_->cancel(ec);
  }
}

void SocketBackend::arm() {
  waiter_->async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec) return;  // cancelled: the monitor is stopping
    drain();
  });
}

void SocketBackend::drain() {
  if (defer_ && defer_()) {
    // Another thread polls the socket and receives (receive_now). Waiting
    // again now would end at once while the frames are still there (Asio
    // re-arms the descriptor with EPOLL_CTL_MOD, which reports a readable
    // socket again): a busy loop on this thread until the poller has taken
    // them, competing with it for a core. So stop waiting until resume().
    // If `defer` fell meanwhile, this thread or resume() -- whichever
    // clears parked_ -- goes on (seq_cst on both sides: one of them sees
    // the other's store).
    parked_.store(true);
    if (defer_() || !parked_.exchange(false)) return;
  }
  {
    std::lock_guard lock(rx_mu_);
    (void)receive_locked(on_frame_);
    if (peer_closed_.load(std::memory_order_relaxed)) return;  // nothing more will come
  }
  arm();
}

size_t SocketBackend::receive_now(const FrameHandler& on_frame) {
  std::lock_guard lock(rx_mu_);
  if (peer_closed_.load(std::memory_order_relaxed)) return 0;
  return receive_locked(on_frame);
}

size_t SocketBackend::receive_locked(const FrameHandler& on_frame) {
  size_t handed_on = 0;
  for (;;) {
    if (room_ && !room_()) {
      held_back_.store(true, std::memory_order_release);  // the frames wait on the socket
      break;
    }
    const ssize_t n = ::recv(fd_, buffer_.data(), buffer_.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        held_back_.store(false, std::memory_order_release);
        break;
      }
      if (errno == EINTR) continue;
      // ECONNREFUSED (ICMP from a UDP peer not listening yet) and the like:
      // count and keep going.
      rx_errors_.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    if (n == 0) {
      if (connected_) {
        // A SOCK_SEQPACKET peer closed its end: nothing more will come.
        peer_closed_.store(true, std::memory_order_relaxed);
        break;
      }
      rx_errors_.fetch_add(1, std::memory_order_relaxed);  // an empty datagram
      continue;
    }
    if (static_cast<size_t>(n) > buffer_.size()) {
      rx_errors_.fetch_add(1, std::memory_order_relaxed);  // truncated: larger than any Ethernet frame
      continue;
    }
    rx_frames_.fetch_add(1, std::memory_order_relaxed);
    ++handed_on;
    if (on_frame) on_frame(std::span<const std::byte>(buffer_.data(), static_cast<size_t>(n)));
  }
  return handed_on;
}

SocketBackend::Counters SocketBackend::counters() const {
  return Counters{tx_frames_.load(std::memory_order_relaxed), tx_dropped_.load(std::memory_order_relaxed),
                  rx_frames_.load(std::memory_order_relaxed), rx_errors_.load(std::memory_order_relaxed)};
}

}  // namespace twoostwo::vmcore
