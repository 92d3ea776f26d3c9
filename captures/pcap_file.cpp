#include "captures/pcap_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

namespace twoostwo::captures {

namespace {

std::string describe(const std::filesystem::path& path) { return fmt::format("capture '{}'", path.string()); }

// write(2) all of `bytes`; returns 0 or errno.
int write_all(int fd, std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n > 0) {
      bytes = bytes.subspan(static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return n < 0 ? errno : EIO;
    }
  }
  return 0;
}

}  // namespace

fabric::Result<std::unique_ptr<PcapFileWriter>> PcapFileWriter::open(const std::filesystem::path& path,
                                                                     Options options) {
  std::unique_ptr<PcapFileWriter> w(new PcapFileWriter(path, std::move(options)));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return fabric::fail(fmt::format("{}: open: {}", describe(path), std::strerror(errno)));
  struct stat st {};
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);

  // The header goes out now, on this thread: a fresh capture is a valid
  // empty pcap, and a file that takes no bytes fails here.
  std::vector<std::byte> header;
  append_file_header(header, w->options_.precision);
  if (const int err = write_all(fd, header); err != 0) {
    ::close(fd);
    return fabric::fail(fmt::format("{}: write: {}", describe(path), std::strerror(err)));
  }
  if (!w->options_.thread) w->options_.thread = std::make_shared<WriterThread>();
  w->fd_ = fd;
  w->file_ = w->options_.thread->attach(fd, header, regular);
  return w;
}

PcapFileWriter::~PcapFileWriter() { (void)close(); }

void PcapFileWriter::fail_with(const char* what, int err) {
  if (!error_) error_ = fabric::Error{fmt::format("{}: {}: {}", describe(path_), what, std::strerror(err))};
}

void PcapFileWriter::write(const fabric::Frame& frame) {
  if (fd_ < 0) return;
  if (error_ || file_->failed()) {
    ++counters_.lost;
    return;
  }
  WriterThread& thread = *options_.thread;
  const size_t size = record_size(frame.bytes.size());
  if (chunk_.size + size > chunk_.capacity) hand_over(false);
  // What waits for the thread, with this file's chunk, stays within the bound.
  if (thread.queued_bytes() + chunk_.size + size > thread.options().max_queued_bytes) {
    ++counters_.dropped;
    return;
  }
  if (!chunk_.data) chunk_ = thread.take_chunk(*file_);

  const fabric::Timestamp time = stamper_.stamp(frame.time);
  counters_.raised_timestamps = stamper_.raised();
  chunk_.size += encode_record(std::span(chunk_.data.get() + chunk_.size, size), time, frame.bytes, options_.precision);
  const uint64_t caplen = size - kRecordHeaderSize;
  ++chunk_.frames;
  chunk_.frame_bytes += caplen;
  ++counters_.frames;
  counters_.bytes += caplen;
}

void PcapFileWriter::hand_over(bool sync) {
  // A flush with nothing new still asks the thread to complete the file if
  // full chunks went to it since the last flush (their last partial block
  // may be waiting in the thread).
  if (chunk_.size == 0 && !(sync && unsynced_)) return;
  chunk_.sync = sync;
  unsynced_ = !sync;
  options_.thread->submit(file_, std::move(chunk_));
  chunk_ = Chunk{};
}

void PcapFileWriter::take_up_state() {
  const WrittenFileState state = options_.thread->state(*file_);
  if (state.error != 0) fail_with("write", state.error);
  const uint64_t frames = state.discarded_frames - discarded_frames_seen_;
  const uint64_t bytes = state.discarded_bytes - discarded_bytes_seen_;
  discarded_frames_seen_ = state.discarded_frames;
  discarded_bytes_seen_ = state.discarded_bytes;
  counters_.frames -= frames;
  counters_.bytes -= bytes;
  counters_.lost += frames;
}

fabric::Result<void> PcapFileWriter::check() {
  if (fd_ >= 0) take_up_state();
  if (error_) return std::unexpected(*error_);
  return {};
}

fabric::Result<void> PcapFileWriter::submit() {
  if (fd_ >= 0) hand_over(true);
  return check();
}

fabric::Result<void> PcapFileWriter::flush() {
  if (fd_ >= 0) {
    hand_over(true);
    options_.thread->wait(*file_);
  }
  return check();
}

fabric::Result<void> PcapFileWriter::close() {
  if (fd_ < 0) {
    if (error_) return std::unexpected(*error_);
    return {};
  }
  auto flushed = flush();  // after it the thread is done with the descriptor
  const WrittenFileState state = options_.thread->state(*file_);
  // Give back the blocks preallocated past the last record (ext4 truncates
  // them even when the size does not change).
  if (state.preallocated_past_end) (void)::ftruncate(fd_, static_cast<off_t>(state.offset));
  ::close(fd_);
  fd_ = -1;
  chunk_ = Chunk{};
  file_.reset();  // and its spare chunks
  return flushed;
}

}  // namespace twoostwo::captures
