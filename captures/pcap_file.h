// A pcap file, LINKTYPE_ETHERNET, with nanosecond timestamps unless asked
// for microseconds (see pcap_format.h for the format): byte for byte what
// libpcap's pcap_dump writes for the same frames.
//
// The file's I/O is off the caller's thread: write() appends the record to a
// chunk in memory (a copy of the frame, no system call), full chunks go to a
// WriterThread (writer_thread.h) that writes them (O_DIRECT where it can),
// and flush() hands over the partial chunk and waits until the thread has
// written everything so far; after it the file ends on a record boundary and
// any reader (tshark, tcpdump, Wireshark) reads it whole while it is still
// being written. Between flushes the file grows in blocks and may end inside
// a record, as a stdio-buffered file does.
// The file header is written at open, so a fresh capture is a valid empty
// pcap.
//
// Memory is bounded by the thread's max_queued_bytes: when the disk cannot
// keep up, frames that do not fit are dropped whole and counted
// (counters().dropped); the caller's thread never waits in write().
//
// Errors are values naming the path: "capture '/tmp/l1.pcap': open: Permission
// denied". write() is on the fabric's hot path and returns nothing: a write
// error is kept and reported by the next flush(), submit() or close(), and
// frames after it are counted as lost.
//
// All calls happen on one thread (the fabric's); only the WriterThread's own
// thread runs beside it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>

#include "captures/pcap_format.h"
#include "captures/writer_thread.h"
#include "switch/frame.h"

namespace twoostwo::captures {

/// PcapFileWriter's options (outside the class: GCC 12 cannot use a nested
/// struct's default member initializers in the class's own default arguments).
struct PcapFileOptions {
  TimestampPrecision precision = TimestampPrecision::kNanosecond;
  /// The thread that writes the file, shared with other files (CaptureSet
  /// passes its own); null: the writer starts one of its own, with default
  /// WriterThreadOptions.
  std::shared_ptr<WriterThread> thread{};
};

class PcapFileWriter {
 public:
  using Options = PcapFileOptions;
  /// Frames and bytes count records accepted for the file: in it, or on
  /// their way to it until the next flush()/close(). When a write fails, the
  /// records the thread then could not write move from frames/bytes to lost
  /// as the error is reported, so after a flush() or close() `frames` is the
  /// number of records in the file.
  struct Counters {
    uint64_t frames = 0;   // records written or on their way
    uint64_t bytes = 0;    // frame bytes of those (without record headers)
    uint64_t lost = 0;     // frames not written because of a write error
    uint64_t dropped = 0;  // frames not written because the writer thread's queue was full
    uint64_t raised_timestamps = 0;  // see MonotonicStamper
  };

  /// Create (or truncate) `path`, mode 0644, close-on-exec, and write the
  /// file header; a symbolic link at `path` is refused (O_NOFOLLOW). Errors:
  /// open(2) or the header's write(2) failing.
  static fabric::Result<std::unique_ptr<PcapFileWriter>> open(const std::filesystem::path& path,
                                                              Options options = {});
  /// Closes the file (errors then are dropped; call close() to see them).
  ~PcapFileWriter();
  PcapFileWriter(const PcapFileWriter&) = delete;
  PcapFileWriter& operator=(const PcapFileWriter&) = delete;

  /// Append one frame with Frame::time (nanoseconds since the epoch; 0 means
  /// now) made non-decreasing by a MonotonicStamper: copied into the current
  /// chunk, which goes to the writer thread when full. A frame that would
  /// take the thread's queue past max_queued_bytes is dropped and counted.
  /// Does nothing once closed.
  void write(const fabric::Frame& frame);
  /// Hand the records buffered here to the writer thread without waiting
  /// (they reach the file soon after; WriterThread::when_written tells when).
  /// Errors: a write error the thread has met so far.
  fabric::Result<void> submit();
  /// Take up what the writer thread reports (a write error, frames it
  /// discarded after one) without handing anything over or waiting. Errors:
  /// a write error the thread has met so far.
  fabric::Result<void> check();
  /// Make every record so far readable in the file: submit(), then wait for
  /// the thread to write it. Errors: a write error now or since the last
  /// flush (e.g. "No space left on device"); once failed, it keeps failing
  /// with the first error.
  fabric::Result<void> flush();
  /// Flush and close (blocks preallocated past the end are given back);
  /// later calls do nothing. Errors: as flush().
  fabric::Result<void> close();

  bool is_open() const { return fd_ >= 0; }
  const std::filesystem::path& path() const { return path_; }
  const Counters& counters() const { return counters_; }
  /// The first write error, if any.
  const std::optional<fabric::Error>& error() const { return error_; }

 private:
  PcapFileWriter(std::filesystem::path path, Options options) : path_(std::move(path)), options_(std::move(options)) {}
  void fail_with(const char* what, int err);
  /// Hand the chunk being filled to the thread; `sync`: have the thread
  /// make the file complete to its end (a flush).
  void hand_over(bool sync);
  /// check() without the result.
  void take_up_state();

  std::filesystem::path path_;
  Options options_;  // options_.thread is the writer thread (never null once open)
  int fd_ = -1;
  std::shared_ptr<WrittenFile> file_;
  Chunk chunk_;  // records not yet handed to the thread
  bool unsynced_ = false;  // chunks went to the thread since the last sync one
  uint64_t discarded_frames_seen_ = 0;  // the thread's discarded frames already moved to lost
  uint64_t discarded_bytes_seen_ = 0;
  MonotonicStamper stamper_;
  Counters counters_;
  std::optional<fabric::Error> error_;
};

}  // namespace twoostwo::captures
