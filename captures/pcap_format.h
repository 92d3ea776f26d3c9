// The classic pcap savefile format, as captures/ writes it (the format of
// pcap-savefile(5) in libpcap, and of draft-ietf-opsawg-pcap "PCAP Capture
// File Format"):
//
//   file header, 24 bytes: magic, version 2.4, thiszone 0, sigfigs 0,
//                          snaplen, link type (LINKTYPE_ETHERNET = 1)
//   per frame, 16 bytes:   seconds, fraction, captured length, original length
//                          then the frame's bytes (destination MAC first, no FCS)
//
// All fields are in the writer's byte order, as libpcap writes them; readers
// tell the order and the precision from the magic: 0xa1b2c3d4 means the
// fraction is in microseconds, 0xa1b23c4d in nanoseconds (readers since
// libpcap 1.5 and Wireshark 1.x understand both).
//
// Files (captures/pcap_file.h) and live streams (captures/live_capture.h) are
// encoded here, not by libpcap's pcap_dump: files are written by a thread of
// their own from chunks of records, and streams go to a non-blocking
// descriptor through a bounded buffer, neither of which libpcap's stdio based
// dumper can do. Tests check both are byte for byte what pcap_dump writes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "switch/frame.h"

namespace twoostwo::captures {

/// The unit of a record's timestamp fraction. Nanoseconds keep Frame::time
/// whole; microseconds are for readers older than libpcap 1.5.
enum class TimestampPrecision { kNanosecond, kMicrosecond };

/// Bytes kept of each frame: all of it (frames are at most 1518 bytes).
inline constexpr uint32_t kSnapLength = 65535;
/// LINKTYPE_ETHERNET (tcpdump.org link-layer header types; DLT_EN10MB).
inline constexpr uint32_t kLinkTypeEthernet = 1;
inline constexpr uint32_t kMagicMicroseconds = 0xa1b2c3d4;
inline constexpr uint32_t kMagicNanoseconds = 0xa1b23c4d;
inline constexpr size_t kFileHeaderSize = 24;
inline constexpr size_t kRecordHeaderSize = 16;

/// A timestamp split as a record stores it: seconds since the epoch and the
/// fraction in the precision's unit. Negative times are taken as 0.
struct RecordTime {
  uint32_t seconds = 0;
  uint32_t fraction = 0;
};
RecordTime split_time(fabric::Timestamp time, TimestampPrecision precision);

/// Append the 24-byte file header (snaplen kSnapLength, LINKTYPE_ETHERNET).
void append_file_header(std::vector<std::byte>& out, TimestampPrecision precision);

/// Append one record: the 16-byte header and the frame's bytes (at most
/// kSnapLength of them; the original length is kept whole).
void append_record(std::vector<std::byte>& out, fabric::Timestamp time, std::span<const std::byte> frame,
                   TimestampPrecision precision);

/// The bytes one record of a `frame_size`-byte frame takes: its 16-byte
/// header and at most kSnapLength bytes of the frame.
inline size_t record_size(size_t frame_size) {
  return kRecordHeaderSize + (frame_size < kSnapLength ? frame_size : kSnapLength);
}
/// Write the record append_record() appends into `out`, which must hold at
/// least record_size(frame.size()) bytes; returns the bytes written.
size_t encode_record(std::span<std::byte> out, fabric::Timestamp time, std::span<const std::byte> frame,
                     TimestampPrecision precision);

/// Timestamps as a capture records them: frames whose time is unset (0) are
/// stamped with realtime_now(), and a time earlier than the previous one (a
/// CLOCK_REALTIME step back, or sources stamped on different clocks) is raised
/// to it, so that every capture is in non-decreasing time order, as readers
/// computing deltas expect. Each raised time is counted.
class MonotonicStamper {
 public:
  fabric::Timestamp stamp(fabric::Timestamp time);
  /// How many times were raised.
  uint64_t raised() const { return raised_; }

 private:
  fabric::Timestamp last_{0};
  uint64_t raised_ = 0;
};

}  // namespace twoostwo::captures
