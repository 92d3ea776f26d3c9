// The pcap files' writer thread (captures/writer_thread.h) behind
// PcapFileWriter: files byte for byte what libpcap's pcap_dump writes, flush()
// waiting for the thread, O_DIRECT writes (and buffered ones), a slow reader
// (a FIFO nobody drains) losing whole, counted frames within a bounded
// queue, write errors after open reported with the path (and no SIGPIPE),
// and preallocated blocks given back at close.
#include <fcntl.h>
#include <pcap.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "captures/pcap_file.h"
#include "captures/writer_thread.h"
#include "capture_test_support.h"

namespace twoostwo::captures {
namespace {

using namespace testing;
using fabric::Timestamp;

constexpr Timestamp kBase{1'700'000'000'123'456'789};

struct Sent {
  Timestamp time;
  std::vector<std::byte> bytes;
};

void write_frames(PcapFileWriter& w, const std::vector<Sent>& frames) {
  for (const auto& f : frames) w.write(fabric::Frame{f.bytes, f.time, nullptr});
}

// The same frames through libpcap's own dumper, as the reference.
std::string libpcap_bytes(const std::filesystem::path& path, const std::vector<Sent>& frames,
                          TimestampPrecision precision) {
  const bool nano = precision == TimestampPrecision::kNanosecond;
  pcap_t* dead = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 65535,
                                                      nano ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO);
  EXPECT_NE(dead, nullptr);
  pcap_dumper_t* dumper = pcap_dump_open(dead, path.c_str());
  EXPECT_NE(dumper, nullptr) << pcap_geterr(dead);
  for (const auto& f : frames) {
    pcap_pkthdr h{};
    h.ts.tv_sec = f.time.count() / 1'000'000'000;
    const int64_t ns = f.time.count() % 1'000'000'000;
    h.ts.tv_usec = nano ? ns : ns / 1000;
    h.caplen = h.len = static_cast<bpf_u_int32>(f.bytes.size());
    pcap_dump(reinterpret_cast<u_char*>(dumper), &h, reinterpret_cast<const u_char*>(f.bytes.data()));
  }
  pcap_dump_close(dumper);
  pcap_close(dead);
  return slurp(path);
}

std::vector<Sent> script(size_t count) {
  static constexpr size_t kSizes[] = {14, 60, 61, 1514, 1518, 100, 64, 1000};
  std::vector<Sent> frames;
  for (size_t i = 0; i < count; ++i) {
    frames.push_back({kBase + Timestamp(static_cast<int64_t>(i * 1'234'567)),
                      make_frame(mac(2), mac(1), kSizes[i % std::size(kSizes)], static_cast<uint32_t>(i))});
  }
  return frames;
}

// The smallest chunks, so a few hundred frames cross many chunk boundaries.
WriterThreadOptions small_chunks() {
  WriterThreadOptions o;
  o.chunk_bytes = WriterThread::kMinChunk;
  return o;
}

TEST(PcapFileWriter, FileIsByteForByteWhatLibpcapWrites) {
  const auto frames = script(500);
  for (const bool direct : {true, false}) {
    for (const auto precision : {TimestampPrecision::kNanosecond, TimestampPrecision::kMicrosecond}) {
      SCOPED_TRACE(precision == TimestampPrecision::kNanosecond ? "nanoseconds" : "microseconds");
      SCOPED_TRACE(direct ? "O_DIRECT" : "buffered");
      TempDir dir;
      const auto path = dir.path() / "ours.pcap";
      WriterThreadOptions o = small_chunks();
      o.direct_io = direct;
      auto thread = std::make_shared<WriterThread>(o);
      auto w = PcapFileWriter::open(path, PcapFileOptions{precision, thread});
      ASSERT_TRUE(w) << w.error().message;
      // Flushes between chunks, some with nothing new since the last one.
      write_frames(**w, std::vector(frames.begin(), frames.begin() + 100));
      ASSERT_TRUE((*w)->flush());
      ASSERT_TRUE((*w)->flush());
      write_frames(**w, std::vector(frames.begin() + 100, frames.end()));
      ASSERT_TRUE((*w)->close());
      EXPECT_EQ((*w)->counters().frames, frames.size());
      EXPECT_EQ((*w)->counters().dropped, 0u);
      if (!direct) {
        EXPECT_EQ(thread->counters().direct_writes, 0u);
      }
      const std::string reference = libpcap_bytes(dir.path() / "libpcap.pcap", frames, precision);
      ASSERT_GT(reference.size(), 3 * WriterThread::kMinChunk) << "the script spans several chunks";
      EXPECT_TRUE(slurp(path) == reference) << "our file differs from libpcap's";
    }
  }
}

// Whether `dir`'s filesystem takes O_DIRECT (tmpfs before Linux 6.6 does not).
bool direct_io_works(const std::filesystem::path& dir) {
  const auto probe = dir / "probe";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  void* block = std::aligned_alloc(WriterThread::kDirectBlock, WriterThread::kDirectBlock);
  std::memset(block, 0, WriterThread::kDirectBlock);
  const bool ok = ::pwrite(fd, block, WriterThread::kDirectBlock, 0) == WriterThread::kDirectBlock;
  std::free(block);
  ::close(fd);
  std::filesystem::remove(probe);
  return ok;
}

// Wait until the thread has written everything queued so far.
bool pump_until_written(WriterThread& thread) {
  std::atomic<bool> done{false};
  thread.when_written([&] { done = true; });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(PcapFileWriter, FlushWaitsForTheThreadAndTheFileGrowsInOrder) {
  ASSERT_TRUE(readers_installed());
  TempDir dir;
  const auto path = dir.path() / "big.pcap";
  auto thread = std::make_shared<WriterThread>(small_chunks());
  auto w = PcapFileWriter::open(path, PcapFileOptions{TimestampPrecision::kNanosecond, thread});
  ASSERT_TRUE(w) << w.error().message;
  constexpr size_t kFrames = 4000;
  constexpr size_t kRecord = kRecordHeaderSize + 1514;
  std::string middle;
  for (uint32_t n = 0; n < kFrames; ++n) {
    (*w)->write(fabric::Frame{make_frame(mac(2), mac(1), 1514, n), kBase + Timestamp(n), nullptr});
    if (n == kFrames / 2) {
      // Full chunks went to the thread before any flush: the file has grown
      // (in whole blocks, so it may end inside a record).
      ASSERT_TRUE(pump_until_written(*thread));
      middle = slurp(path);
      EXPECT_GT(middle.size(), kFileHeaderSize + kFrames / 4 * kRecord);
      EXPECT_LE(middle.size(), kFileHeaderSize + n * kRecord);
    }
  }
  ASSERT_TRUE((*w)->flush());
  // Everything is in the file once flush() returns, without close(), and
  // the file seen half-way was the start of it.
  EXPECT_EQ(std::filesystem::file_size(path), kFileHeaderSize + kFrames * kRecord);
  EXPECT_TRUE(slurp(path).starts_with(middle));
  const TsharkResult r = read_with_tshark(path);
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_EQ(r.frames.size(), kFrames);
  for (size_t k = 0; k < kFrames; ++k) {
    ASSERT_EQ(r.frames[k].data.substr(0, 8), fmt::format("{:08x}", k)) << "frame " << k + 1;
  }
  EXPECT_GT(thread->counters().writes, 1u);
  EXPECT_EQ(thread->counters().bytes, kFrames * kRecord);
  EXPECT_EQ(thread->queued_bytes(), 0u);
  if (direct_io_works(dir.path())) {
    EXPECT_GT(thread->counters().direct_writes, 0u) << "regular files are written with O_DIRECT";
  } else {
    EXPECT_EQ(thread->counters().direct_writes, 0u) << "and through the page cache where it is refused";
  }
  ASSERT_TRUE((*w)->close());
  EXPECT_EQ(std::filesystem::file_size(path), kFileHeaderSize + kFrames * kRecord);
}

// A FIFO with a reader that does not read yet stands for a disk that cannot
// keep up: the thread blocks in write(2) once the pipe is full.
TEST(PcapFileWriter, SlowDiskDropsWholeFramesCountedWithinTheBound) {
  ASSERT_TRUE(readers_installed());
  TempDir dir;
  const auto fifo = dir.path() / "slow.pcap";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0) << std::strerror(errno);
  WriterThreadOptions o = small_chunks();
  o.max_queued_bytes = 4 * WriterThread::kMinChunk;
  auto thread = std::make_shared<WriterThread>(o);
  auto w = PcapFileWriter::open(fifo, PcapFileOptions{TimestampPrecision::kNanosecond, thread});
  ASSERT_TRUE(w) << w.error().message;

  constexpr uint32_t kFrames = 2000;  // ~3 MiB: far more than the pipe and the queue hold
  for (uint32_t n = 0; n < kFrames; ++n) {
    (*w)->write(fabric::Frame{make_frame(mac(2), mac(1), 1514, n), kBase + Timestamp(n), nullptr});
  }
  const auto c = (*w)->counters();
  EXPECT_GT(c.dropped, 0u);
  EXPECT_EQ(c.frames + c.dropped, kFrames);
  EXPECT_EQ(c.lost, 0u);
  EXPECT_LE(thread->counters().max_queued_bytes, o.max_queued_bytes);

  // Now the reader drains the FIFO, and close() completes.
  ASSERT_EQ(::fcntl(reader, F_SETFL, 0), 0);
  std::string stream;
  std::thread drain([&] { stream = read_to_eof(reader); });
  ASSERT_TRUE((*w)->close());
  drain.join();
  ::close(reader);

  const auto copy = dir.path() / "copy.pcap";
  write_file(copy, stream);
  const TsharkResult r = read_with_tshark(copy);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err.find("cut short"), std::string::npos) << r.err;
  ASSERT_EQ(r.frames.size(), (*w)->counters().frames);
  // Whole frames, in order; the first ones made it (the queue was empty).
  int64_t previous = -1;
  for (const auto& f : r.frames) {
    ASSERT_EQ(f.length, 1514u);
    const int64_t seq = std::stoll(f.data.substr(0, 8), nullptr, 16);
    ASSERT_GT(seq, previous);
    previous = seq;
  }
  EXPECT_EQ(r.frames.front().data.substr(0, 8), "00000000");
}

TEST(PcapFileWriter, WriteErrorAfterOpenIsReportedWithThePathAndNoSignal) {
  TempDir dir;
  const auto fifo = dir.path() / "gone.pcap";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0) << std::strerror(errno);
  auto w = PcapFileWriter::open(fifo);
  ASSERT_TRUE(w) << w.error().message;
  ::close(reader);  // the "disk" goes away: the thread's write gets EPIPE
  for (uint32_t n = 0; n < 10; ++n) {
    (*w)->write(fabric::Frame{make_frame(mac(2), mac(1), 60, n), kBase, nullptr});
  }
  auto flushed = (*w)->flush();
  ASSERT_FALSE(flushed);
  EXPECT_NE(flushed.error().message.find(fifo.string()), std::string::npos) << flushed.error().message;
  EXPECT_NE(flushed.error().message.find("Broken pipe"), std::string::npos) << flushed.error().message;
  EXPECT_EQ((*w)->counters().frames, 0u);
  EXPECT_EQ((*w)->counters().lost, 10u);
  (*w)->write(fabric::Frame{make_frame(mac(2), mac(1), 60, 10), kBase, nullptr});
  EXPECT_EQ((*w)->counters().lost, 11u);
  auto closed = (*w)->close();
  ASSERT_FALSE(closed);
  EXPECT_EQ(closed.error().message, flushed.error().message) << "the first error, kept";
  sigset_t pending;
  sigpending(&pending);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0);
}

TEST(PcapFileWriter, PreallocatedBlocksAreGivenBackAtClose) {
  TempDir dir;
  const auto path = dir.path() / "prealloc.pcap";
  auto thread = std::make_shared<WriterThread>();  // 16 MiB steps
  auto w = PcapFileWriter::open(path, PcapFileOptions{TimestampPrecision::kNanosecond, thread});
  ASSERT_TRUE(w) << w.error().message;
  for (uint32_t n = 0; n < 1000; ++n) {
    (*w)->write(fabric::Frame{make_frame(mac(2), mac(1), 1514, n), kBase, nullptr});
  }
  ASSERT_TRUE((*w)->flush());
  const uint64_t size = kFileHeaderSize + 1000 * (kRecordHeaderSize + 1514);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), size) << "readers see the file end at its last record";
  if (thread->counters().preallocations == 0) GTEST_SKIP() << "no fallocate(2) on " << dir.path();
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, thread->options().preallocate_bytes);
  ASSERT_TRUE((*w)->close());
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), size);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, size + 1024 * 1024);
}

}  // namespace
}  // namespace twoostwo::captures
