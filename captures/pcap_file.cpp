#include "captures/pcap_file.h"

#include <fcntl.h>
#include <pcap.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

namespace twoostwo::captures {

namespace {

constexpr size_t kStdioBuffer = 64 * 1024;

std::string describe(const std::filesystem::path& path) { return fmt::format("capture '{}'", path.string()); }

}  // namespace

fabric::Result<std::unique_ptr<PcapFileWriter>> PcapFileWriter::open(const std::filesystem::path& path,
                                                                     Options options) {
  std::unique_ptr<PcapFileWriter> w(new PcapFileWriter(path, options));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return fabric::fail(fmt::format("{}: open: {}", describe(path), std::strerror(errno)));
  FILE* file = ::fdopen(fd, "wb");
  if (file == nullptr) {
    const int err = errno;
    ::close(fd);
    return fabric::fail(fmt::format("{}: fdopen: {}", describe(path), std::strerror(err)));
  }
  // Before any I/O on the stream, as setvbuf(3) requires.
  std::setvbuf(file, nullptr, _IOFBF, kStdioBuffer);

  const u_int precision =
      options.precision == TimestampPrecision::kNanosecond ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO;
  w->dead_ = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, static_cast<int>(kSnapLength), precision);
  if (w->dead_ == nullptr) {
    std::fclose(file);
    return fabric::fail(fmt::format("{}: pcap_open_dead failed", describe(path)));
  }
  // pcap_dump_fopen writes the file header and takes the FILE over.
  w->dumper_ = pcap_dump_fopen(w->dead_, file);
  if (w->dumper_ == nullptr) {
    std::string why = pcap_geterr(w->dead_);
    std::fclose(file);
    return fabric::fail(fmt::format("{}: pcap_dump_fopen: {}", describe(path), why));
  }
  if (auto flushed = w->flush(); !flushed) return std::unexpected(flushed.error());
  return w;
}

PcapFileWriter::~PcapFileWriter() {
  (void)close();
  if (dead_ != nullptr) pcap_close(dead_);
}

void PcapFileWriter::fail_with(const char* what, int err) {
  if (!error_) error_ = fabric::Error{fmt::format("{}: {}: {}", describe(path_), what, std::strerror(err))};
}

void PcapFileWriter::write(const fabric::Frame& frame) {
  if (dumper_ == nullptr) return;
  if (error_) {
    ++counters_.lost;
    return;
  }
  const fabric::Timestamp time = stamper_.stamp(frame.time);
  counters_.raised_timestamps = stamper_.raised();
  const RecordTime t = split_time(time, options_.precision);
  pcap_pkthdr header{};
  header.ts.tv_sec = t.seconds;
  header.ts.tv_usec = t.fraction;  // nanoseconds when the handle is nano-precision (pcap_dump)
  header.len = static_cast<bpf_u_int32>(frame.bytes.size());
  header.caplen = std::min<bpf_u_int32>(header.len, kSnapLength);
  pcap_dump(reinterpret_cast<u_char*>(dumper_), &header, reinterpret_cast<const u_char*>(frame.bytes.data()));
  if (std::ferror(pcap_dump_file(dumper_)) != 0) {
    fail_with("write", errno != 0 ? errno : EIO);
    return;
  }
  ++counters_.frames;
  counters_.bytes += header.caplen;
}

fabric::Result<void> PcapFileWriter::flush() {
  if (dumper_ != nullptr && !error_) {
    errno = 0;
    if (pcap_dump_flush(dumper_) != 0 || std::ferror(pcap_dump_file(dumper_)) != 0) {
      fail_with("write", errno != 0 ? errno : EIO);
    }
  }
  if (error_) return std::unexpected(*error_);
  return {};
}

fabric::Result<void> PcapFileWriter::close() {
  if (dumper_ == nullptr) {
    if (error_) return std::unexpected(*error_);
    return {};
  }
  auto flushed = flush();
  pcap_dump_close(dumper_);  // fclose; its errors show in the flush above
  dumper_ = nullptr;
  return flushed;
}

}  // namespace twoostwo::captures
