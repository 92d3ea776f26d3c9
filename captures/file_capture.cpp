#include "captures/file_capture.h"

namespace twoostwo::captures {

fabric::Result<std::unique_ptr<FileCapture>> FileCapture::open(TapPoint where, const std::filesystem::path& path,
                                                               PcapFileWriter::Options options) {
  auto writer = PcapFileWriter::open(path, options);
  if (!writer) return std::unexpected(writer.error());
  std::unique_ptr<FileCapture> capture(new FileCapture(where, std::move(*writer)));
  where.attach(capture.get());
  capture->attached_ = true;
  return capture;
}

FileCapture::~FileCapture() { (void)close(); }

fabric::Result<void> FileCapture::close() {
  if (attached_) {
    where_.detach(this);
    attached_ = false;
  }
  return writer_->close();
}

}  // namespace twoostwo::captures
