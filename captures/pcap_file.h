// A pcap file written through libpcap (pcap_dump), LINKTYPE_ETHERNET, with
// nanosecond timestamps unless asked for microseconds (see pcap_format.h for
// the format).
//
// Records go through a 64 KiB stdio buffer; flush() pushes them to the file,
// after which the file ends on a record boundary and any reader (tshark,
// tcpdump, Wireshark) reads it whole while it is still being written. The
// file header is flushed at open, so a fresh capture is a valid empty pcap.
//
// Errors are values naming the path: "capture '/tmp/l1.pcap': open: Permission
// denied". write() is on the fabric's hot path and returns nothing: a write
// error is kept and reported by the next flush() or close(), and frames after
// it are counted as lost.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>

#include "captures/pcap_format.h"
#include "switch/frame.h"

// libpcap's handle types (pcap/pcap.h); only captures/*.cpp include <pcap.h>.
struct pcap;
struct pcap_dumper;

namespace twoostwo::captures {

/// PcapFileWriter's options (outside the class: GCC 12 cannot use a nested
/// struct's default member initializers in the class's own default arguments).
struct PcapFileOptions {
  TimestampPrecision precision = TimestampPrecision::kNanosecond;
};

class PcapFileWriter {
 public:
  using Options = PcapFileOptions;
  struct Counters {
    uint64_t frames = 0;  // records written
    uint64_t bytes = 0;   // frame bytes written (without record headers)
    uint64_t lost = 0;    // frames not written because of an earlier write error
    uint64_t raised_timestamps = 0;  // see MonotonicStamper
  };

  /// Create (or truncate) `path`, mode 0644, close-on-exec; a symbolic link
  /// at `path` is refused (O_NOFOLLOW). Errors: open(2) failing, libpcap
  /// refusing the stream.
  static fabric::Result<std::unique_ptr<PcapFileWriter>> open(const std::filesystem::path& path,
                                                              Options options = {});
  /// Closes the file (errors then are dropped; call close() to see them).
  ~PcapFileWriter();
  PcapFileWriter(const PcapFileWriter&) = delete;
  PcapFileWriter& operator=(const PcapFileWriter&) = delete;

  /// Append one frame with Frame::time (nanoseconds since the epoch; 0 means
  /// now) made non-decreasing by a MonotonicStamper. Does nothing once closed.
  void write(const fabric::Frame& frame);
  /// Push buffered records to the file. Errors: a write error now or since
  /// the last flush (e.g. "No space left on device"); once failed, it keeps
  /// failing with the first error.
  fabric::Result<void> flush();
  /// Flush and close; later calls do nothing. Errors: as flush().
  fabric::Result<void> close();

  bool is_open() const { return dumper_ != nullptr; }
  const std::filesystem::path& path() const { return path_; }
  const Counters& counters() const { return counters_; }
  /// The first write error, if any.
  const std::optional<fabric::Error>& error() const { return error_; }

 private:
  PcapFileWriter(std::filesystem::path path, Options options) : path_(std::move(path)), options_(options) {}
  void fail_with(const char* what, int err);

  std::filesystem::path path_;
  Options options_;
  pcap* dead_ = nullptr;           // pcap_open_dead handle: link type, snaplen, precision
  pcap_dumper* dumper_ = nullptr;  // owns the FILE
  MonotonicStamper stamper_;
  Counters counters_;
  std::optional<fabric::Error> error_;
};

}  // namespace twoostwo::captures
