// A live capture: one link or port streamed as pcap (pcap_format.h) to a file
// descriptor — a pipe, a socket, stdout — while the lab runs, for
// `… | wireshark -k -i -` or `… | tcpdump -r -`.
//
// - The stream starts with a fresh file header and holds only frames the tap
//   saw after start(): a capture that is stopped and started again never
//   replays frames from before (each LiveCapture has its own buffer, dropped
//   when it stops).
// - Any number of live captures may tap the same link or port at once.
// - The descriptor is made non-blocking (O_NONBLOCK on its open file
//   description). Records wait in a bounded buffer (`buffer_bytes`) and are
//   written once the current turn of the event loop is done, or when the
//   descriptor becomes writable again. A frame that does not fit is dropped
//   whole and counted: a slow reader loses frames, never stalls the fabric,
//   and never sees a broken record.
// - On a pipe, each write(2) is at most PIPE_BUF bytes of whole records, which
//   POSIX makes atomic: a reader that stops reading, or a capture that is
//   stopped with data pending, leaves a stream that ends on a record
//   boundary. (On a stream socket or a terminal a stop with data pending may
//   cut the last record short.)
// - A reader that goes away (EPIPE, ECONNRESET) ends the capture: the tap is
//   detached, the descriptor closed, and `on_ended` called. SIGPIPE is
//   neither raised nor ignored process-wide: sockets are written with
//   MSG_NOSIGNAL, and other descriptors with SIGPIPE blocked on the calling
//   thread and a SIGPIPE it raised consumed (sigtimedwait) before unblocking.
//
// All calls happen on the thread running the fabric's io_context.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "captures/pcap_format.h"
#include "captures/tap_point.h"
#include "switch/port.h"

namespace twoostwo::captures {

/// LiveCapture's options (outside the class, see PcapFileOptions).
struct LiveCaptureOptions {
  /// Bytes of records (with their 16-byte headers) that may wait for the
  /// reader; at least LiveCapture::kMinBuffer.
  size_t buffer_bytes = 4 * 1024 * 1024;
  TimestampPrecision precision = TimestampPrecision::kNanosecond;
  /// Called once, on the fabric's thread, when the capture ends on its own
  /// (the reader went away, a write error); not called by stop(). It may
  /// destroy the LiveCapture.
  std::function<void(const fabric::Error&)> on_ended;
};

class LiveCapture final : public fabric::Tap {
 public:
  /// The smallest buffer: the file header and one largest record.
  static constexpr size_t kMinBuffer = kFileHeaderSize + kRecordHeaderSize + fabric::kMaxFrame;

  using Options = LiveCaptureOptions;
  struct Counters {
    uint64_t frames = 0;          // records queued
    uint64_t frames_written = 0;  // records written whole to the descriptor
    uint64_t dropped = 0;         // frames that did not fit in the buffer
    uint64_t discarded = 0;       // records still queued when the capture ended
    uint64_t bytes_written = 0;   // stream bytes written, the file header included
    uint64_t writes = 0;          // write(2)/send(2) calls that wrote something
    uint64_t raised_timestamps = 0;  // see MonotonicStamper
  };
  enum class State {
    kRunning,
    kStopped,     // stop() was called
    kReaderGone,  // EPIPE or ECONNRESET
    kFailed,      // another write error
  };

  /// Take `fd` over (it is closed when the capture ends, and on error here),
  /// make it non-blocking and close-on-exec, queue the file header and attach
  /// to `where`. Pass dup(STDOUT_FILENO) to stream to stdout. Call it on the
  /// fabric's thread, outside any tap's on_frame (as stop()). Errors: a bad
  /// descriptor, one not open for writing, a buffer smaller than kMinBuffer.
  static fabric::Result<std::unique_ptr<LiveCapture>> start(boost::asio::io_context& io, TapPoint where, int fd,
                                                            Options options = {});
  /// stop().
  ~LiveCapture() override;
  LiveCapture(const LiveCapture&) = delete;
  LiveCapture& operator=(const LiveCapture&) = delete;

  /// The tap: queue one record, or count a drop if the buffer is full.
  void on_frame(const fabric::Frame& frame) override;

  /// Detach, write what the descriptor takes now without waiting, discard
  /// the rest, close the descriptor. Later calls do nothing.
  void stop();

  State state() const { return state_; }
  bool running() const { return state_ == State::kRunning; }
  /// Why the capture ended on its own, naming the tap point ("live capture of
  /// link 'l1': reader went away (Broken pipe)").
  const std::optional<fabric::Error>& error() const { return error_; }
  const Counters& counters() const { return counters_; }
  /// Bytes queued and not yet written.
  size_t buffered() const { return buffer_.size() - head_; }
  const TapPoint& where() const { return where_; }

 private:
  LiveCapture(boost::asio::io_context& io, TapPoint where, int fd, Options options);
  void enqueue_header();
  void schedule_write();
  /// Write queued records until done or EAGAIN; then wait for the
  /// descriptor if `may_wait`.
  void write_some(bool may_wait);
  void wait_writable();
  void consume(size_t n);
  void end(State state, int err);
  void release();

  boost::asio::io_context& io_;
  TapPoint where_;
  int fd_;
  bool is_socket_ = false;
  size_t chunk_limit_;  // PIPE_BUF on pipes, larger elsewhere
  Options options_;
  State state_ = State::kRunning;
  bool attached_ = false;
  bool write_posted_ = false;
  bool waiting_ = false;
  std::optional<boost::asio::posix::stream_descriptor> waiter_;

  // Queued stream bytes are buffer_[head_, size()); record_sizes_ holds the
  // size of each queued record (the file header counts as one), and
  // front_written_ how much of the first one is already written.
  std::vector<std::byte> buffer_;
  size_t head_ = 0;
  std::deque<uint32_t> record_sizes_;
  size_t front_written_ = 0;
  bool header_pending_ = true;  // the first queued record is the file header

  MonotonicStamper stamper_;
  Counters counters_;
  std::optional<fabric::Error> error_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace twoostwo::captures
