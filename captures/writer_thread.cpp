#include "captures/writer_thread.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <new>

namespace twoostwo::captures {

namespace {

// Written chunks a file keeps for reuse: one being filled while one is
// written is the steady state; a third absorbs a burst.
constexpr size_t kSpareChunks = 2;

// write(2) (offset < 0) or pwrite(2) all of [data, data + size); returns 0 or
// errno, and counts the calls that wrote something in `writes`.
int write_all(int fd, const std::byte* data, size_t size, int64_t offset, uint64_t& writes) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = offset < 0 ? ::write(fd, data + done, size - done)
                                 : ::pwrite(fd, data + done, size - done, static_cast<off_t>(offset + done));
    if (n > 0) {
      done += static_cast<size_t>(n);
      ++writes;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return n < 0 ? errno : EIO;  // a write of 0 bytes would never end
    }
  }
  return 0;
}

}  // namespace

WriterThread::WriterThread(Options options)
    : options_{std::max(options.chunk_bytes, kMinChunk),
               std::max({options.max_queued_bytes, options.chunk_bytes, kMinChunk}), options.preallocate_bytes,
               options.direct_io} {
  staging_ = static_cast<std::byte*>(
      ::operator new(options_.chunk_bytes + kDirectBlock, std::align_val_t{kDirectBlock}));
  // Start the thread with every signal blocked (it inherits the mask), so
  // that it never takes a signal meant for the program.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  thread_ = std::thread([this] { run(); });
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
}

WriterThread::~WriterThread() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_.notify_one();
  thread_.join();
  ::operator delete(staging_, std::align_val_t{kDirectBlock});
}

int WriterThread::set_direct(WrittenFile& file, bool on) {
  const int flags = ::fcntl(file.fd_, F_GETFL);
  if (flags < 0) return errno;
  const int wanted = on ? flags | O_DIRECT : flags & ~O_DIRECT;
  if (wanted != flags && ::fcntl(file.fd_, F_SETFL, wanted) < 0) return errno;
  return 0;
}

std::shared_ptr<WrittenFile> WriterThread::attach(int fd, std::span<const std::byte> written, bool regular) {
  auto file = std::make_shared<WrittenFile>(fd, regular);
  file->end_ = file->written_end_ = file->allocated_end_ = file->whole_end_ = file->complete_ = written.size();
  file->preallocate_ = regular && options_.preallocate_bytes > 0;
  if (regular && options_.direct_io && written.size() < kDirectBlock && set_direct(*file, true) == 0) {
    file->direct_ = true;
    file->tail_.reset(new std::byte[kDirectBlock]);
    std::memcpy(file->tail_.get(), written.data(), written.size());
    file->aligned_end_ = 0;
  }
  return file;
}

Chunk WriterThread::take_chunk(WrittenFile& file) {
  {
    std::lock_guard lock(mutex_);
    if (!file.spare_.empty()) {
      Chunk chunk = std::move(file.spare_.back());
      file.spare_.pop_back();
      return chunk;
    }
  }
  Chunk chunk;
  // Not value-initialized: pages are touched only as records fill them.
  chunk.data.reset(new std::byte[options_.chunk_bytes]);
  chunk.capacity = options_.chunk_bytes;
  return chunk;
}

void WriterThread::submit(const std::shared_ptr<WrittenFile>& file, Chunk chunk) {
  const size_t size = chunk.size;
  {
    std::lock_guard lock(mutex_);
    ++file->submitted_;
    const size_t queued = queued_bytes_.fetch_add(size, std::memory_order_relaxed) + size;
    counters_.max_queued_bytes = std::max<uint64_t>(counters_.max_queued_bytes, queued);
    jobs_.push_back(Job{file, std::move(chunk), nullptr});
  }
  work_.notify_one();
}

void WriterThread::wait(WrittenFile& file) {
  std::unique_lock lock(mutex_);
  done_.wait(lock, [&] { return file.completed_ == file.submitted_; });
}

WrittenFileState WriterThread::state(const WrittenFile& file) {
  std::lock_guard lock(mutex_);
  return WrittenFileState{file.complete_, file.error_, file.discarded_frames_, file.discarded_bytes_,
                          file.truncate_on_close_};
}

void WriterThread::when_written(std::function<void()> done) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(Job{nullptr, Chunk{}, std::move(done)});
  }
  work_.notify_one();
}

WriterThread::Counters WriterThread::counters() {
  std::lock_guard lock(mutex_);
  return counters_;
}

void WriterThread::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      work_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, and everything is written
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    if (!job.file) {
      job.done();
      continue;
    }
    WrittenFile& file = *job.file;
    // error_ changes only on this thread: reading it unlocked here is safe.
    const int err = file.error_ == 0 ? write_chunk(file, job.chunk) : 0;
    {
      std::lock_guard lock(mutex_);
      queued_bytes_.fetch_sub(job.chunk.size, std::memory_order_relaxed);
      if (err != 0 && file.error_ == 0) {
        file.error_ = err;
        file.failed_.store(true, std::memory_order_relaxed);
      }
      if (file.error_ != 0) {
        file.discarded_frames_ += job.chunk.frames;
        file.discarded_bytes_ += job.chunk.frame_bytes;
      } else {
        counters_.bytes += job.chunk.size;
      }
      file.complete_ = file.whole_end_;
      ++file.completed_;
      if (job.chunk.data && file.spare_.size() < kSpareChunks) {
        job.chunk.size = 0;
        job.chunk.frames = 0;
        job.chunk.frame_bytes = 0;
        job.chunk.sync = false;
        file.spare_.push_back(std::move(job.chunk));
      }
    }
    done_.notify_all();
  }
}

void WriterThread::preallocate(WrittenFile& file, uint64_t end) {
  if (!file.preallocate_ || end <= file.allocated_end_) return;
  const uint64_t step = options_.preallocate_bytes;
  const uint64_t target = (end + step - 1) / step * step;
  const uint64_t from = std::max(file.allocated_end_, file.written_end_);
  if (::fallocate(file.fd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(from), static_cast<off_t>(target - from)) != 0) {
    // EOPNOTSUPP (no fallocate here), ENOSPC (let the write report it), …:
    // write without preallocating from now on.
    file.preallocate_ = false;
    return;
  }
  file.allocated_end_ = target;
  std::lock_guard lock(mutex_);
  file.truncate_on_close_ = true;
  ++counters_.preallocations;
}

void WriterThread::note_written(WrittenFile& file) {
  while (!file.chunk_ends_.empty() && file.chunk_ends_.front() <= file.written_end_) {
    file.whole_end_ = file.chunk_ends_.front();
    file.chunk_ends_.pop_front();
  }
}

int WriterThread::write_direct(WrittenFile& file, const Chunk& chunk) {
  // The file's tail (the bytes past its last whole block) and the chunk, in
  // one aligned buffer that starts at the tail's block.
  const size_t tail = file.end_ - file.aligned_end_;
  std::memcpy(staging_, file.tail_.get(), tail);
  if (chunk.size > 0) std::memcpy(staging_ + tail, chunk.data.get(), chunk.size);
  const size_t size = tail + chunk.size;
  const size_t whole = size / kDirectBlock * kDirectBlock;
  uint64_t writes = 0;
  size_t done = 0;
  while (done < whole) {
    const ssize_t n = ::pwrite(file.fd_, staging_ + done, whole - done, static_cast<off_t>(file.aligned_end_ + done));
    if (n > 0 && static_cast<size_t>(n) % kDirectBlock == 0) {
      done += static_cast<size_t>(n);
      ++writes;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      // EINVAL (this file or device takes no O_DIRECT writes like these), a
      // short write, ENOSPC…: the buffered path writes it again and reports
      // what is a real error.
      return -1;
    }
  }
  {
    std::lock_guard lock(mutex_);
    counters_.writes += writes;
    counters_.direct_writes += writes;
  }
  file.aligned_end_ += whole;
  const size_t rest = size - whole;
  std::memcpy(file.tail_.get(), staging_ + whole, rest);
  file.written_end_ = std::max(file.written_end_, file.aligned_end_);
  if (!chunk.sync || rest == 0 || file.written_end_ >= file.aligned_end_ + rest) return 0;

  // A flush: the tail goes out through the page cache, so that the file ends
  // where the records do. The next direct write covers its block again.
  if (const int err = set_direct(file, false); err != 0) return err;
  uint64_t tail_writes = 0;
  const int err = write_all(file.fd_, file.tail_.get(), rest, static_cast<int64_t>(file.aligned_end_), tail_writes);
  {
    std::lock_guard lock(mutex_);
    counters_.writes += tail_writes;
  }
  if (err != 0) return err;
  file.written_end_ = file.aligned_end_ + rest;
  if (set_direct(file, true) != 0) {
    // Buffered from here on; the tail is in the file, so nothing is pending.
    file.direct_ = false;
    file.aligned_end_ = file.written_end_;
  }
  return 0;
}

int WriterThread::write_chunk(WrittenFile& file, const Chunk& chunk) {
  const uint64_t start = file.end_;
  const uint64_t end = start + chunk.size;
  preallocate(file, end);
  if (chunk.size > 0) file.chunk_ends_.push_back(end);
  int err = 0;
  bool done = false;
  if (file.direct_) {
    err = write_direct(file, chunk);
    done = err != -1;
    if (!done) {
      // O_DIRECT did not work here: from now on, through the page cache,
      // starting with the tail the direct writes still held.
      file.direct_ = false;
      err = set_direct(file, false);
      uint64_t writes = 0;
      if (err == 0) {
        err = write_all(file.fd_, file.tail_.get(), start - file.aligned_end_, static_cast<int64_t>(file.aligned_end_),
                        writes);
      }
      std::lock_guard lock(mutex_);
      counters_.writes += writes;
    }
  }
  if (!done && err == 0) {
    uint64_t writes = 0;
    err = chunk.size == 0 ? 0
                          : write_all(file.fd_, chunk.data.get(), chunk.size,
                                      file.regular_ ? static_cast<int64_t>(start) : -1, writes);
    if (err == 0) file.written_end_ = std::max(file.written_end_, end);
    std::lock_guard lock(mutex_);
    counters_.writes += writes;
  }
  file.end_ = end;
  if (err == 0) {
    note_written(file);
    return 0;
  }

  if (err == EPIPE) {
    // The SIGPIPE that write raised is pending on this thread (every signal
    // is blocked here): consume it, so it never reaches the program.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    const timespec now{0, 0};
    while (sigtimedwait(&pipe, nullptr, &now) < 0 && errno == EINTR) {
    }
  }
  note_written(file);
  if (file.regular_) {
    // Cut what made it past the last whole chunk back off: the file then
    // ends on a record boundary. Nothing else can be done if that fails too.
    (void)::ftruncate(file.fd_, static_cast<off_t>(file.whole_end_));
  }
  return err;
}

}  // namespace twoostwo::captures
