#include "captures/pcap_format.h"

#include <pcap.h>

#include <algorithm>
#include <cstring>

namespace twoostwo::captures {

// Our constants are libpcap's (pcap/pcap.h, pcap/dlt.h).
static_assert(sizeof(struct pcap_file_header) == kFileHeaderSize);
static_assert(DLT_EN10MB == kLinkTypeEthernet);
static_assert(PCAP_VERSION_MAJOR == 2 && PCAP_VERSION_MINOR == 4);

namespace {

void append_u32(std::vector<std::byte>& out, uint32_t value) {
  std::byte raw[4];
  std::memcpy(raw, &value, sizeof raw);  // host order, as libpcap writes
  out.insert(out.end(), raw, raw + 4);
}

void append_u16(std::vector<std::byte>& out, uint16_t value) {
  std::byte raw[2];
  std::memcpy(raw, &value, sizeof raw);
  out.insert(out.end(), raw, raw + 2);
}

}  // namespace

RecordTime split_time(fabric::Timestamp time, TimestampPrecision precision) {
  const int64_t ns = std::max<int64_t>(time.count(), 0);
  RecordTime t;
  t.seconds = static_cast<uint32_t>(ns / 1'000'000'000);
  const auto fraction_ns = static_cast<uint32_t>(ns % 1'000'000'000);
  t.fraction = precision == TimestampPrecision::kNanosecond ? fraction_ns : fraction_ns / 1000;
  return t;
}

void append_file_header(std::vector<std::byte>& out, TimestampPrecision precision) {
  append_u32(out, precision == TimestampPrecision::kNanosecond ? kMagicNanoseconds : kMagicMicroseconds);
  append_u16(out, PCAP_VERSION_MAJOR);
  append_u16(out, PCAP_VERSION_MINOR);
  append_u32(out, 0);  // thiszone: timestamps are UTC
  append_u32(out, 0);  // sigfigs
  append_u32(out, kSnapLength);
  append_u32(out, kLinkTypeEthernet);
}

void append_record(std::vector<std::byte>& out, fabric::Timestamp time, std::span<const std::byte> frame,
                   TimestampPrecision precision) {
  const size_t start = out.size();
  out.resize(start + record_size(frame.size()));
  encode_record(std::span(out).subspan(start), time, frame, precision);
}

size_t encode_record(std::span<std::byte> out, fabric::Timestamp time, std::span<const std::byte> frame,
                     TimestampPrecision precision) {
  const RecordTime t = split_time(time, precision);
  const auto caplen = static_cast<uint32_t>(std::min<size_t>(frame.size(), kSnapLength));
  // struct pcap_sf_pkthdr (libpcap sf-pcap.h): four 32-bit fields in host order.
  const uint32_t header[4] = {t.seconds, t.fraction, caplen, static_cast<uint32_t>(frame.size())};
  static_assert(sizeof header == kRecordHeaderSize);
  std::memcpy(out.data(), header, sizeof header);
  std::memcpy(out.data() + kRecordHeaderSize, frame.data(), caplen);
  return kRecordHeaderSize + caplen;
}

fabric::Timestamp MonotonicStamper::stamp(fabric::Timestamp time) {
  if (time.count() == 0) time = fabric::realtime_now();
  if (time < last_) {
    time = last_;
    ++raised_;
  }
  last_ = time;
  return time;
}

}  // namespace twoostwo::captures
