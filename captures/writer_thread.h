// The thread that writes capture files, so that file I/O stays off the
// fabric's event loop (at 1514-byte frames, write(2) into ext4 cost the
// fabric thread more than a third of its time when it wrote the files
// itself).
//
// The owner of a file (PcapFileWriter, on the fabric's thread) fills a Chunk
// with whole pcap records and submit()s it; the thread writes each file's
// chunks in the order they were submitted. One thread serves any number of
// files (CaptureSet makes one for all of its captures; a PcapFileWriter
// opened on its own makes its own).
//
// - Regular files are written with O_DIRECT where the filesystem allows it:
//   the data goes from the thread's buffer to the disk without passing
//   through the page cache. (Filling fresh page-cache pages was the whole
//   cost of buffered writes here: on this project's VMs, writing 800 MiB
//   through the page cache took 1.4-2.6 s of system time, with O_DIRECT
//   0.3 s.) O_DIRECT writes whole 4 KiB blocks at 4 KiB offsets, so the
//   thread keeps the last partial block of each file in memory and writes
//   it, buffered, when a chunk marked `sync` (a flush) asks for the file to
//   be complete. Between flushes the file may end inside a record (as a
//   stdio-buffered file did); after a flush it ends on a record boundary.
//   Filesystems that refuse O_DIRECT (or a write with it) are written
//   through the page cache, with pwrite(2); pipes and devices with write(2).
// - Memory is bounded: `max_queued_bytes` of submitted chunks may wait for
//   the thread (all files together). The owner checks queued_bytes() before
//   adding a record, and drops (and counts) frames that do not fit: a slow
//   disk loses counted frames, never stalls the fabric. Besides the queue,
//   each file holds the chunk it is filling and keeps up to two written ones
//   for reuse (chunk_bytes each; a chunk's pages are touched only as records
//   fill them) and, with O_DIRECT, its last partial block (4 KiB); the
//   thread has one staging buffer of chunk_bytes + 4 KiB.
// - Regular files are preallocated ahead of the data (fallocate(2) with
//   FALLOC_FL_KEEP_SIZE, `preallocate_bytes` at a time), so that blocks are
//   allocated in large contiguous steps rather than write by write (and
//   buffered writes skip ext4's per-page delayed allocation); readers still
//   see the file end where its data does. The owner gives the blocks past
//   the end back when it closes the file (ftruncate(2)). Filesystems
//   without fallocate are written without it.
// - A write error ends that file's writing: the first error (errno) is kept,
//   a regular file is cut back to the end of its last chunk written whole
//   (so it still ends on a record boundary), and chunks submitted after the
//   error are discarded and counted. Other files go on.
// - The thread runs with every signal blocked, so process signals go to the
//   program's other threads; a SIGPIPE raised by its own write to a pipe
//   whose reader went away is consumed (the write fails with EPIPE).
//
// Thread-safety: every member function may be called from any thread; in
// captures/ the owner is always the fabric's thread. The destructor writes
// what is still queued, then joins the thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

namespace twoostwo::captures {

/// Bytes of whole records, filled by a file's owner and written by the thread.
struct Chunk {
  std::unique_ptr<std::byte[]> data;
  size_t size = 0;      // bytes filled
  size_t capacity = 0;  // bytes allocated
  uint64_t frames = 0;  // records in it
  uint64_t frame_bytes = 0;  // frame bytes in it (without record headers)
  /// Leave the file complete to the end of this chunk (a flush); may be
  /// empty. Otherwise the last partial block may wait for the next chunk.
  bool sync = false;
};

/// WriterThread's options (outside the class: GCC 12 cannot use a nested
/// struct's default member initializers in the class's own default arguments).
struct WriterThreadOptions {
  /// Bytes per chunk (raised to kMinChunk): what the owner fills before
  /// handing it over, and so the usual size of one write(2).
  size_t chunk_bytes = 512 * 1024;
  /// Bytes of submitted chunks that may wait for the thread, all files
  /// together (raised to chunk_bytes).
  size_t max_queued_bytes = 64 * 1024 * 1024;
  /// Preallocation step for regular files; 0 turns preallocation off.
  size_t preallocate_bytes = 16 * 1024 * 1024;
  /// Write regular files with O_DIRECT where the filesystem allows it.
  bool direct_io = true;
};

class WriterThread;

/// One file the thread writes. Made by WriterThread::attach; its owner keeps
/// the descriptor open until wait() has returned after its last submit().
class WrittenFile {
 public:
  WrittenFile(int fd, bool regular) : fd_(fd), regular_(regular) {}
  WrittenFile(const WrittenFile&) = delete;
  WrittenFile& operator=(const WrittenFile&) = delete;

  int fd() const { return fd_; }
  /// True once a write failed (cheap: one atomic load, for the hot path).
  bool failed() const { return failed_.load(std::memory_order_relaxed); }

 private:
  friend class WriterThread;
  const int fd_;
  const bool regular_;
  std::atomic<bool> failed_{false};
  // Only the thread (and attach, before the file is shared) touches these.
  uint64_t end_ = 0;             // where the next chunk's bytes go
  uint64_t written_end_ = 0;     // bytes known to be in the file
  uint64_t allocated_end_ = 0;   // end of the preallocated blocks
  bool preallocate_ = false;     // false once fallocate(2) refused
  bool direct_ = false;          // O_DIRECT is on
  std::unique_ptr<std::byte[]> tail_;  // direct: the bytes from aligned_end_ to end_
  uint64_t aligned_end_ = 0;     // direct: end of the whole blocks written
  std::deque<uint64_t> chunk_ends_;  // chunk ends past written_end_
  uint64_t whole_end_ = 0;       // the last chunk end within written_end_
  // Guarded by the thread's mutex.
  uint64_t complete_ = 0;       // bytes in the file, whole chunks (records) only
  bool truncate_on_close_ = false;  // blocks were preallocated past the data
  uint64_t submitted_ = 0;      // chunks submitted
  uint64_t completed_ = 0;      // chunks written or discarded
  int error_ = 0;               // the first write error (errno)
  uint64_t discarded_frames_ = 0;
  uint64_t discarded_bytes_ = 0;  // frame bytes
  std::vector<Chunk> spare_;    // written chunks kept for reuse
};

/// What one file's writing came to, as of WriterThread::state().
struct WrittenFileState {
  uint64_t offset = 0;      // bytes of whole records in the file (all of them after a sync chunk)
  int error = 0;            // the first write error (errno), 0 if none
  uint64_t discarded_frames = 0;  // frames in chunks discarded after the error
  uint64_t discarded_bytes = 0;
  bool preallocated_past_end = false;  // blocks past `offset` to give back at close
};

class WriterThread {
 public:
  using Options = WriterThreadOptions;
  /// The smallest chunk: one record of kSnapLength bytes (pcap_format.h).
  static constexpr size_t kMinChunk = 16 + 65535;
  /// O_DIRECT's unit: offsets, sizes and buffer addresses are multiples of
  /// it (4 KiB covers 512-byte and 4 KiB logical blocks).
  static constexpr size_t kDirectBlock = 4096;

  struct Counters {
    uint64_t writes = 0;       // write(2)/pwrite(2) calls that wrote something
    uint64_t direct_writes = 0;   // of them, with O_DIRECT
    uint64_t bytes = 0;        // bytes of the chunks written whole
    uint64_t preallocations = 0;  // fallocate(2) calls that succeeded
    uint64_t max_queued_bytes = 0;  // the most bytes ever waiting
  };

  /// Start the thread.
  explicit WriterThread(Options options = {});
  /// Write everything still queued, then end the thread.
  ~WriterThread();
  WriterThread(const WriterThread&) = delete;
  WriterThread& operator=(const WriterThread&) = delete;

  const Options& options() const { return options_; }

  /// A file to write through this thread: `fd`, open for writing, holding
  /// `written` (the file header, less than kDirectBlock bytes; the thread
  /// may write it again); `regular` if it is a regular file (preallocated,
  /// written with O_DIRECT if the options and the filesystem allow, cut
  /// back to its last whole chunk after an error). Sets O_DIRECT on the
  /// open file description when it can.
  std::shared_ptr<WrittenFile> attach(int fd, std::span<const std::byte> written, bool regular);

  /// An empty chunk of chunk_bytes for `file` to fill: one it has written
  /// before, or a new one.
  Chunk take_chunk(WrittenFile& file);
  /// Queue `chunk` (size > 0) to be appended to `file`.
  void submit(const std::shared_ptr<WrittenFile>& file, Chunk chunk);
  /// Block until every chunk submitted for `file` is written (or discarded
  /// after an error); then state() tells how it went.
  void wait(WrittenFile& file);
  /// How `file`'s writing stands now.
  WrittenFileState state(const WrittenFile& file);
  /// Call `done` on the thread once every chunk submitted before this call
  /// is written. `done` must not block or call back into this thread.
  void when_written(std::function<void()> done);

  /// Bytes submitted and not yet written, all files together.
  size_t queued_bytes() const { return queued_bytes_.load(std::memory_order_relaxed); }
  Counters counters();

 private:
  struct Job {
    std::shared_ptr<WrittenFile> file;  // null for a when_written marker
    Chunk chunk;
    std::function<void()> done;
  };
  void run();
  /// Write one chunk to its file; returns 0 or errno. Runs on the thread.
  int write_chunk(WrittenFile& file, const Chunk& chunk);
  /// write_chunk for a file with O_DIRECT on; 0, errno, or -1 to say that
  /// O_DIRECT did not work (the caller then writes the chunk buffered).
  int write_direct(WrittenFile& file, const Chunk& chunk);
  /// Turn O_DIRECT on or off on `file`'s descriptor; errno or 0.
  static int set_direct(WrittenFile& file, bool on);
  void preallocate(WrittenFile& file, uint64_t end);
  /// Move whole_end_ up to the last chunk end written_end_ has passed.
  static void note_written(WrittenFile& file);

  const Options options_;
  std::atomic<size_t> queued_bytes_{0};
  std::mutex mutex_;
  std::condition_variable work_;  // the thread waits for jobs
  std::condition_variable done_;  // owners wait for chunks written
  std::deque<Job> jobs_;
  bool stopping_ = false;
  Counters counters_;
  // The thread's: where a direct file's tail and a chunk meet, kDirectBlock
  // aligned, chunk_bytes + kDirectBlock bytes.
  std::byte* staging_ = nullptr;
  std::thread thread_;  // last: starts after everything above exists
};

}  // namespace twoostwo::captures
