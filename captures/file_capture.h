// A capture of one link or port into one pcap file (PcapFileWriter), attached
// as a Tap: frames are written in the order the tap sees them, both
// directions, with the time the fabric received them. The file's I/O runs on
// the writer's thread (PcapFileOptions::thread); the tap only copies frames.
//
// All calls happen on the fabric's thread. The capture detaches itself when
// closed or destroyed; the link or port must outlive it.
#pragma once

#include <filesystem>
#include <memory>

#include "captures/pcap_file.h"
#include "captures/tap_point.h"
#include "switch/port.h"

namespace twoostwo::captures {

class FileCapture final : public fabric::Tap {
 public:
  /// Open `path` (see PcapFileWriter::open) and attach to `where`. Errors:
  /// those of PcapFileWriter::open.
  static fabric::Result<std::unique_ptr<FileCapture>> open(TapPoint where, const std::filesystem::path& path,
                                                           PcapFileWriter::Options options = {});
  ~FileCapture() override;
  FileCapture(const FileCapture&) = delete;
  FileCapture& operator=(const FileCapture&) = delete;

  /// The tap: one record per frame.
  void on_frame(const fabric::Frame& frame) override { writer_->write(frame); }

  /// Make everything seen so far readable in the file (waits for the writer
  /// thread). Errors: as PcapFileWriter::flush.
  fabric::Result<void> flush() { return writer_->flush(); }
  /// Hand everything seen so far to the writer thread without waiting.
  /// Errors: as PcapFileWriter::submit.
  fabric::Result<void> submit() { return writer_->submit(); }
  /// The writer thread's news: errors as PcapFileWriter::check.
  fabric::Result<void> check() { return writer_->check(); }
  /// Detach, flush and close: the file is complete. Later calls do nothing.
  fabric::Result<void> close();

  const TapPoint& where() const { return where_; }
  const PcapFileWriter& writer() const { return *writer_; }
  const std::filesystem::path& path() const { return writer_->path(); }

 private:
  FileCapture(TapPoint where, std::unique_ptr<PcapFileWriter> writer)
      : where_(where), writer_(std::move(writer)) {}

  TapPoint where_;
  std::unique_ptr<PcapFileWriter> writer_;
  bool attached_ = false;
};

}  // namespace twoostwo::captures
