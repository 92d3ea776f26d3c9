#include "captures/live_capture.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <boost/asio/post.hpp>
#include <fmt/format.h>

namespace twoostwo::captures {

namespace {

constexpr size_t kOtherChunk = 64 * 1024;

// write(2) that neither dies of SIGPIPE nor changes the process's signal
// dispositions: SIGPIPE is blocked on this thread for the call, and if the
// call raised one (EPIPE) it is consumed while still blocked. A SIGPIPE that
// was already pending before the call is left pending.
ssize_t write_without_sigpipe(int fd, const void* data, size_t size) {
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  sigset_t old;
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  sigset_t pending;
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;

  const ssize_t n = ::write(fd, data, size);
  const int saved = errno;
  if (n < 0 && saved == EPIPE && !was_pending) {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = saved;
  return n;
}

}  // namespace

LiveCapture::LiveCapture(boost::asio::io_context& io, TapPoint where, int fd, Options options)
    : io_(io), where_(where), fd_(fd), chunk_limit_(kOtherChunk), options_(std::move(options)) {}

fabric::Result<std::unique_ptr<LiveCapture>> LiveCapture::start(boost::asio::io_context& io, TapPoint where, int fd,
                                                                Options options) {
  const std::string what = "live capture of " + where.describe();
  if (fd < 0) return fabric::fail(fmt::format("{}: invalid file descriptor {}", what, fd));
  if (options.buffer_bytes < kMinBuffer) {
    ::close(fd);
    return fabric::fail(fmt::format("{}: buffer of {} bytes is below the minimum of {}", what, options.buffer_bytes,
                                    kMinBuffer));
  }
  struct stat st {};
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fstat(fd, &st) != 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
      ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
    const int err = errno;
    ::close(fd);
    return fabric::fail(fmt::format("{}: file descriptor {}: {}", what, fd, std::strerror(err)));
  }
  if ((flags & O_ACCMODE) == O_RDONLY) {
    ::close(fd);
    return fabric::fail(fmt::format("{}: file descriptor {} is not open for writing", what, fd));
  }

  std::unique_ptr<LiveCapture> capture(new LiveCapture(io, where, fd, std::move(options)));
  capture->is_socket_ = S_ISSOCK(st.st_mode);
  if (S_ISFIFO(st.st_mode)) capture->chunk_limit_ = PIPE_BUF;
  capture->buffer_.reserve(std::min<size_t>(capture->options_.buffer_bytes, 256 * 1024));
  capture->enqueue_header();
  where.attach(capture.get());
  capture->attached_ = true;
  capture->schedule_write();
  return capture;
}

LiveCapture::~LiveCapture() { stop(); }

void LiveCapture::enqueue_header() {
  append_file_header(buffer_, options_.precision);
  record_sizes_.push_back(kFileHeaderSize);
  header_pending_ = true;
}

void LiveCapture::on_frame(const fabric::Frame& frame) {
  if (state_ != State::kRunning) return;
  const size_t caplen = std::min<size_t>(frame.bytes.size(), kSnapLength);
  const size_t need = kRecordHeaderSize + caplen;
  if (buffered() + need > options_.buffer_bytes) {
    ++counters_.dropped;
    return;
  }
  if (head_ > 0 && buffer_.size() + need > buffer_.capacity()) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
  append_record(buffer_, stamper_.stamp(frame.time), frame.bytes, options_.precision);
  counters_.raised_timestamps = stamper_.raised();
  record_sizes_.push_back(static_cast<uint32_t>(need));
  ++counters_.frames;
  schedule_write();
}

void LiveCapture::schedule_write() {
  if (write_posted_ || waiting_) return;
  write_posted_ = true;
  boost::asio::post(io_, [this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    write_posted_ = false;
    if (state_ == State::kRunning) write_some(true);
  });
}

void LiveCapture::write_some(bool may_wait) {
  while (state_ == State::kRunning && !record_sizes_.empty()) {
    // Whole records up to chunk_limit_ (at least the rest of the first one).
    size_t chunk = record_sizes_.front() - front_written_;
    for (auto it = std::next(record_sizes_.begin()); it != record_sizes_.end() && chunk + *it <= chunk_limit_; ++it) {
      chunk += *it;
    }
    const std::byte* data = buffer_.data() + head_;
    const ssize_t n = is_socket_ ? ::send(fd_, data, chunk, MSG_NOSIGNAL | MSG_DONTWAIT)
                                 : write_without_sigpipe(fd_, data, chunk);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        if (may_wait) wait_writable();
        return;
      }
      end(err == EPIPE || err == ECONNRESET ? State::kReaderGone : State::kFailed, err);
      return;  // `this` may be gone (on_ended)
    }
    ++counters_.writes;
    consume(static_cast<size_t>(n));
  }
}

void LiveCapture::consume(size_t n) {
  head_ += n;
  counters_.bytes_written += n;
  while (n > 0) {
    const size_t rest_of_front = record_sizes_.front() - front_written_;
    if (n < rest_of_front) {
      front_written_ += n;
      break;
    }
    n -= rest_of_front;
    record_sizes_.pop_front();
    front_written_ = 0;
    if (header_pending_) {
      header_pending_ = false;
    } else {
      ++counters_.frames_written;
    }
  }
  if (head_ == buffer_.size()) {
    buffer_.clear();
    head_ = 0;
  }
}

void LiveCapture::wait_writable() {
  if (!waiter_) {
    waiter_.emplace(io_);
    boost::system::error_code ec;
    waiter_->assign(fd_, ec);
    if (ec) {
      waiter_->release();
      waiter_.reset();
      end(State::kFailed, ec.value());
      return;
    }
  }
  waiting_ = true;
  waiter_->async_wait(boost::asio::posix::stream_descriptor::wait_write,
                      [this, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec) {
                        if (alive.expired()) return;
                        waiting_ = false;
                        if (ec || state_ != State::kRunning) return;
                        write_some(true);
                      });
}

void LiveCapture::release() {
  if (attached_) {
    where_.detach(this);
    attached_ = false;
  }
  const size_t queued_records = record_sizes_.size() - (header_pending_ && !record_sizes_.empty() ? 1 : 0);
  counters_.discarded += queued_records;
  record_sizes_.clear();
  buffer_.clear();
  buffer_.shrink_to_fit();
  head_ = 0;
  front_written_ = 0;
  if (waiter_) {
    boost::system::error_code ec;
    waiter_->cancel(ec);
    waiter_->release();  // the descriptor is ours to close
    waiter_.reset();
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void LiveCapture::end(State state, int err) {
  state_ = state;
  error_ = fabric::Error{fmt::format("live capture of {}: {} ({})", where_.describe(),
                                     state == State::kReaderGone ? "reader went away" : "write failed",
                                     std::strerror(err))};
  release();
  if (options_.on_ended) {
    auto on_ended = options_.on_ended;  // a copy: the callback may destroy `this`
    on_ended(*error_);
  }
}

void LiveCapture::stop() {
  if (state_ != State::kRunning) return;
  if (attached_) {
    where_.detach(this);
    attached_ = false;
  }
  // One last try without waiting; whole records only on a pipe.
  options_.on_ended = nullptr;  // stop() does not report
  write_some(false);
  if (state_ == State::kRunning) {
    state_ = State::kStopped;
    release();
  }
}

}  // namespace twoostwo::captures
