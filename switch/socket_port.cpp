#include "switch/socket_port.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace twoostwo::fabric {

namespace {

// "HOST:PORT" → an IPv4 sockaddr; `what` names the field in errors.
Result<sockaddr_in> parse_ipv4(const std::string& text, const std::string& what) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    return fail(fmt::format("{} '{}': expected HOST:PORT", what, text));
  }
  const std::string host = text.substr(0, colon), port_text = text.substr(colon + 1);
  char* end = nullptr;
  errno = 0;
  const unsigned long port = std::strtoul(port_text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || port > 65535) {
    return fail(fmt::format("{} '{}': port '{}' is not a number 0..65535", what, text, port_text));
  }
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found); rc != 0 || found == nullptr) {
    return fail(fmt::format("{} '{}': unknown host '{}' ({})", what, text, host, ::gai_strerror(rc)));
  }
  sockaddr_in address{};
  std::memcpy(&address, found->ai_addr, sizeof address);
  ::freeaddrinfo(found);
  address.sin_port = htons(static_cast<uint16_t>(port));
  return address;
}

std::string format_ipv4(const sockaddr_in& address) {
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &address.sin_addr, text, sizeof text);
  return fmt::format("{}:{}", text, ntohs(address.sin_port));
}

// Room for a few hundred frames in flight per socket, so a burst of one
// receive batch fits (Linux's default is about 200 KiB). SO_SNDBUF/SO_RCVBUF
// are capped at net.core.wmem_max/rmem_max (212992 on a stock kernel); the
// *FORCE options ignore the cap but need CAP_NET_ADMIN, so they are tried
// first (socket(7)).
void enlarge_buffers(int fd) {
  const int bytes = 1 << 20;
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) != 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  }
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  }
}

}  // namespace

SocketPort::SocketPort(boost::asio::io_context& io, std::string name, Kind kind, int fd, Options options)
    : Port(std::move(name)),
      io_(io),
      kind_(kind),
      fd_(fd),
      waiter_(io, fd),
      rx_buffers_(new std::byte[kBatch * (kMaxFrame + 1)]),  // not zeroed: only what frames fill is touched
      queue_capacity_(options.queue_frames == 0 ? 1 : options.queue_frames),
      queue_len_(queue_capacity_),
      alive_(std::make_shared<bool>(true)) {
  arm_read();
}

SocketPort::~SocketPort() {
  *alive_ = false;
  if (peer_fd_ >= 0) ::close(peer_fd_);
  // waiter_ closes fd_ and aborts its pending waits (their handlers see
  // operation_aborted and touch nothing).
}

Result<std::unique_ptr<SocketPort>> SocketPort::seqpacket_pair(boost::asio::io_context& io, std::string name,
                                                               Options options) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    return fail(fmt::format("port '{}': socketpair: {}", name, std::strerror(errno)));
  }
  enlarge_buffers(fds[0]);
  enlarge_buffers(fds[1]);
  std::unique_ptr<SocketPort> port(new SocketPort(io, std::move(name), Kind::kSeqpacket, fds[0], options));
  port->peer_fd_ = fds[1];
  return port;
}

Result<std::unique_ptr<SocketPort>> SocketPort::adopt_seqpacket(boost::asio::io_context& io, std::string name, int fd,
                                                                Options options) {
  int type = 0;
  socklen_t length = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0) {
    return fail(fmt::format("port '{}': fd {} is not a socket ({})", name, fd, std::strerror(errno)));
  }
  if (type != SOCK_SEQPACKET) {
    return fail(fmt::format("port '{}': fd {} is not a SOCK_SEQPACKET socket (type {})", name, fd, type));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  enlarge_buffers(fd);
  return std::unique_ptr<SocketPort>(new SocketPort(io, std::move(name), Kind::kSeqpacket, fd, options));
}

Result<std::unique_ptr<SocketPort>> SocketPort::udp(boost::asio::io_context& io, std::string name,
                                                    const std::string& local, const std::string& remote,
                                                    Options options) {
  auto local_address = parse_ipv4(local, fmt::format("port '{}': local address", name));
  if (!local_address) return std::unexpected(local_address.error());
  auto remote_address = parse_ipv4(remote, fmt::format("port '{}': remote address", name));
  if (!remote_address) return std::unexpected(remote_address.error());
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(fmt::format("port '{}': socket: {}", name, std::strerror(errno)));
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&*local_address), sizeof *local_address) != 0) {
    const int error = errno;
    ::close(fd);
    return fail(fmt::format("port '{}': cannot bind UDP {}: {}", name, local, std::strerror(error)));
  }
  enlarge_buffers(fd);
  std::unique_ptr<SocketPort> port(new SocketPort(io, std::move(name), Kind::kUdp, fd, options));
  port->remote_.resize(sizeof(sockaddr_in));
  std::memcpy(port->remote_.data(), &*remote_address, sizeof(sockaddr_in));
  port->remote_text_ = format_ipv4(*remote_address);
  port->local_ = port->local_address();
  return port;
}

int SocketPort::take_peer_fd() {
  const int fd = peer_fd_;
  peer_fd_ = -1;
  return fd;
}

std::string SocketPort::local_address() const {
  if (kind_ != Kind::kUdp) return {};
  sockaddr_in address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) return {};
  return format_ipv4(address);
}

std::string SocketPort::describe() const {
  if (kind_ == Kind::kUdp) return fmt::format("udp {} -> {}", local_, remote_text_);
  return fmt::format("seqpacket fd {}{}", fd_, peer_closed_ ? " (peer closed)" : "");
}

void SocketPort::arm_read() {
  if (reading_ || peer_closed_) return;
  reading_ = true;
  waiter_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                     [this, alive = alive_](const boost::system::error_code& ec) {
                       if (ec || !*alive) return;
                       reading_ = false;
                       read_ready();
                     });
}

void SocketPort::read_ready() {
  std::array<mmsghdr, kBatch> messages{};
  std::array<iovec, kBatch> iov{};
  size_t budget = kBudget;
  bool more = true;
  while (budget > 0 && more) {
    const size_t want = std::min(kBatch, budget);
    for (size_t i = 0; i < want; ++i) {
      iov[i] = iovec{rx_buffers_.get() + i * (kMaxFrame + 1), kMaxFrame + 1};
      messages[i] = mmsghdr{};
      messages[i].msg_hdr.msg_iov = &iov[i];
      messages[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = ::recvmmsg(fd_, messages.data(), static_cast<unsigned>(want), MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (kind_ == Kind::kSeqpacket && (errno == ECONNRESET || errno == ENOTCONN)) {
        close_peer();
        return;
      }
      // ECONNREFUSED: an ICMP port-unreachable from a UDP peer not up yet.
      ++socket_counters_.socket_errors;
      break;
    }
    ++socket_counters_.recv_calls;
    const Timestamp now = realtime_now();
    for (int i = 0; i < n; ++i) {
      const size_t length = messages[i].msg_len;
      if (length == 0) {
        if (kind_ == Kind::kSeqpacket) {
          close_peer();  // end of file: the monitor closed its end
          return;
        }
        count_tx_drop();  // an empty datagram
        continue;
      }
      if (length > kMaxFrame || (messages[i].msg_hdr.msg_flags & MSG_TRUNC) != 0) {
        ++socket_counters_.oversized;
        count_tx_drop();
        continue;
      }
      const auto* data = rx_buffers_.get() + static_cast<size_t>(i) * (kMaxFrame + 1);
      transmit(Frame{std::span<const std::byte>(data, length), now, this});
      if (!*alive_) return;  // a tap or the peer side destroyed us
    }
    budget -= static_cast<size_t>(n);
    more = static_cast<size_t>(n) == want;
  }
  arm_read();
}

bool SocketPort::on_deliver(const Frame& frame) {
  if (peer_closed_) return false;
  if (queue_count_ == queue_capacity_) {
    ++socket_counters_.queue_full;
    return false;
  }
  if (!queue_) queue_.reset(new std::byte[queue_capacity_ * kMaxFrame]);  // not zeroed: pages stay untouched
  // An empty ring starts again at slot 0, so the pages touched are those of
  // the deepest backlog, not (by slow rotation) all 512 slots' 760 KiB.
  if (queue_count_ == 0) queue_head_ = 0;
  const size_t slot = (queue_head_ + queue_count_) % queue_capacity_;
  std::memcpy(queue_.get() + slot * kMaxFrame, frame.bytes.data(), frame.bytes.size());
  queue_len_[slot] = static_cast<uint16_t>(frame.bytes.size());
  ++queue_count_;
  schedule_flush();
  return true;
}

void SocketPort::schedule_flush() {
  if (flush_posted_ || writing_) return;
  flush_posted_ = true;
  boost::asio::post(io_, [this, alive = alive_] {
    if (!*alive) return;
    flush_posted_ = false;
    flush();
  });
}

void SocketPort::flush() {
  std::array<mmsghdr, kBatch> messages{};
  std::array<iovec, kBatch> iov{};
  while (queue_count_ > 0 && !peer_closed_) {
    const size_t count = std::min(queue_count_, kBatch);
    for (size_t i = 0; i < count; ++i) {
      const size_t slot = (queue_head_ + i) % queue_capacity_;
      iov[i] = iovec{queue_.get() + slot * kMaxFrame, queue_len_[slot]};
      messages[i] = mmsghdr{};
      messages[i].msg_hdr.msg_iov = &iov[i];
      messages[i].msg_hdr.msg_iovlen = 1;
      if (kind_ == Kind::kUdp) {
        messages[i].msg_hdr.msg_name = remote_.data();
        messages[i].msg_hdr.msg_namelen = static_cast<socklen_t>(remote_.size());
      }
    }
    const int n = ::sendmmsg(fd_, messages.data(), static_cast<unsigned>(count), MSG_DONTWAIT | MSG_NOSIGNAL);
    ++socket_counters_.send_calls;
    if (n > 0) {
      queue_head_ = (queue_head_ + static_cast<size_t>(n)) % queue_capacity_;
      queue_count_ -= static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
      arm_write();  // the socket is full: wait until it drains
      return;
    }
    if (kind_ == Kind::kSeqpacket && (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)) {
      close_peer();
      return;
    }
    // A UDP send error (ECONNREFUSED from an earlier ICMP): lose this frame.
    ++socket_counters_.socket_errors;
    count_rx_drop();
    queue_head_ = (queue_head_ + 1) % queue_capacity_;
    --queue_count_;
  }
}

void SocketPort::arm_write() {
  if (writing_) return;
  writing_ = true;
  waiter_.async_wait(boost::asio::posix::stream_descriptor::wait_write,
                     [this, alive = alive_](const boost::system::error_code& ec) {
                       if (ec || !*alive) return;
                       writing_ = false;
                       flush();
                     });
}

void SocketPort::close_peer() {
  if (peer_closed_) return;
  peer_closed_ = true;
  // Frames still queued for the monitor can no longer be delivered.
  for (size_t i = 0; i < queue_count_; ++i) count_rx_drop();
  queue_count_ = 0;
  set_up(false);
  // A callback may add callbacks: call the ones there are now, by copy.
  const auto callbacks = on_closed_;
  for (const auto& callback : callbacks) callback();
}

}  // namespace twoostwo::fabric
