// One pcap file per link of a fabric, in one directory (the issue: "a pcap
// writer per link ... flushed periodically and complete when the lab stops or
// a monitor dies").
//
// - Every link of the fabric at start() gets a FileCapture on
//   <directory>/<capture_file_name(link name)>; links made later are added
//   with add().
// - The files are written by one WriterThread (writer_thread.h) that the set
//   starts for all of its captures: the fabric's thread only copies frames
//   into memory. If the disk falls behind by more than
//   `writer.max_queued_bytes` (64 MiB by default), frames are dropped from
//   the captures, never from the fabric, and counted (dropped()).
// - A steady_timer on the fabric's io_context flushes every capture each
//   `flush_interval` (200 ms by default), so a reader sees every frame older
//   than that while the lab runs. The periodic flush does not block the
//   fabric: it hands every capture's records to the writer thread, and once
//   the thread has written them, flushes() counts the tick and the timer is
//   armed for the next one.
// - stop() (and the destructor) flushes and closes every file: a stopped set
//   leaves complete captures.
// - When a monitor dies, its last frames are in the capture's buffer: the set
//   watches every SocketPort on a captured link (SocketPort::on_peer_closed)
//   and flushes that link's capture at once (waiting for the writer thread),
//   so the file is complete to its last frame when the callback returns.
//
// Everything runs on the fabric's thread; while started, the timer keeps the
// io_context's run() from returning (use stop() to end it). Destroy the set
// before the fabric whose links it taps.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/steady_timer.hpp>

#include "captures/file_capture.h"
#include "switch/fabric.h"

namespace twoostwo::captures {

/// A file name for the capture of a link called `link_name` (any bytes):
/// readable, unique per name, and safe to join to a directory.
///
/// Scheme: the name's bytes in the POSIX portable file name set
/// [A-Za-z0-9._-] are kept, except a '.' at the start; every other byte
/// (including '%', '/', spaces, control characters and each byte of a UTF-8
/// sequence) becomes "%XX" with uppercase hex; the empty name becomes "%";
/// ".pcap" is appended. So "alice-sw1" → "alice-sw1.pcap", "a b/c" →
/// "a%20b%2Fc.pcap", ".." → "%2E..pcap". The escaping is reversible, so
/// distinct names give distinct files. If the escaped stem exceeds 200
/// bytes, it is cut to its first 180 bytes (at a whole escape) followed by
/// '~' and the 16 hex digits of the name's 64-bit FNV-1a hash; '~' appears
/// in no unshortened name, so only two names longer than that sharing a
/// 180-byte prefix and a hash could collide. The result is at most 202
/// bytes (under NAME_MAX, 255), never starts with '.', and holds no '/'.
std::string capture_file_name(std::string_view link_name);

/// CaptureSet's options.
struct CaptureSetOptions {
  /// How often every capture is flushed (positive).
  std::chrono::milliseconds flush_interval{200};
  TimestampPrecision precision = TimestampPrecision::kNanosecond;
  /// The writer thread's chunk size, memory bound and preallocation.
  WriterThreadOptions writer{};
};

class CaptureSet {
 public:
  using Options = CaptureSetOptions;

  /// Create `directory` (and parents) if needed, capture every link of
  /// `fabric` into it (existing files of the same names are replaced), and
  /// start the flush timer. Errors: the directory cannot be made, a file
  /// cannot be opened (the message names it), a zero flush interval.
  static fabric::Result<std::unique_ptr<CaptureSet>> start(fabric::Fabric& fabric, std::filesystem::path directory,
                                                           Options options = {});
  ~CaptureSet();
  CaptureSet(const CaptureSet&) = delete;
  CaptureSet& operator=(const CaptureSet&) = delete;

  /// Capture a link created after start(); returns its file. Errors: the set
  /// is stopped, the link is already captured, the file cannot be opened.
  fabric::Result<std::filesystem::path> add(fabric::Link& link);

  /// Flush every capture now, waiting for the writer thread. Errors: the
  /// first capture that failed (all are still flushed).
  fabric::Result<void> flush();
  /// Stop the timer, flush and close every capture. Later calls do nothing.
  /// Errors: as flush().
  fabric::Result<void> stop();
  bool running() const { return running_; }

  /// The capture of the link named `link_name`, or nullptr.
  const FileCapture* find(const std::string& link_name) const;
  /// The file of the link named `link_name`, if it is captured.
  std::optional<std::filesystem::path> path_of(const std::string& link_name) const;
  size_t size() const { return captures_.size(); }
  const std::filesystem::path& directory() const { return directory_; }
  /// Timer ticks so far (each flushed every capture: counted once the
  /// writer thread has written what the tick handed it).
  uint64_t flushes() const { return flushes_; }
  /// Frames dropped from the captures because the writer thread was behind,
  /// all captures together (each capture's writer().counters().dropped).
  uint64_t dropped() const;
  /// The writer thread (its counters: writes, bytes, queue high-water mark).
  WriterThread& writer_thread() { return *thread_; }
  /// The first error a periodic flush met, if any (the capture it names
  /// stops growing; the others go on).
  const std::optional<fabric::Error>& error() const { return error_; }

 private:
  CaptureSet(fabric::Fabric& fabric, std::filesystem::path directory, Options options);
  void arm_timer();
  /// The timer's tick: hand every capture's records to the writer thread.
  void tick();
  /// The tick's records are written: count it, take up errors, re-arm.
  void ticked();

  fabric::Fabric& fabric_;
  std::filesystem::path directory_;
  Options options_;
  std::shared_ptr<WriterThread> thread_;  // writes every capture's file
  std::map<std::string, std::unique_ptr<FileCapture>> captures_;  // by link name
  boost::asio::steady_timer timer_;
  bool running_ = true;
  uint64_t flushes_ = 0;
  std::optional<fabric::Error> error_;
  // Set while the set is alive; timer handlers check it, so one already
  // queued when the set is destroyed never touches it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace twoostwo::captures
