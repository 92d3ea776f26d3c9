#include "captures/capture_set.h"

#include <system_error>
#include <vector>

#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include "switch/socket_port.h"

namespace twoostwo::captures {

namespace {

constexpr size_t kMaxStem = 200;
constexpr size_t kShortenedPrefix = 180;

bool portable(unsigned char c, bool first) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  if (c == '_' || c == '-') return true;
  return c == '.' && !first;
}

uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV offset basis
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;  // FNV prime
  }
  return h;
}

}  // namespace

std::string capture_file_name(std::string_view link_name) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string stem;
  // Where each escaped unit starts, so a shortened stem never splits "%XX".
  std::vector<size_t> unit_starts;
  for (size_t i = 0; i < link_name.size(); ++i) {
    const auto c = static_cast<unsigned char>(link_name[i]);
    unit_starts.push_back(stem.size());
    if (portable(c, i == 0)) {
      stem.push_back(static_cast<char>(c));
    } else {
      stem.push_back('%');
      stem.push_back(kHex[c >> 4]);
      stem.push_back(kHex[c & 0x0f]);
    }
  }
  if (stem.empty()) stem = "%";
  if (stem.size() > kMaxStem) {
    size_t cut = 0;
    for (size_t start : unit_starts) {
      if (start > kShortenedPrefix) break;
      cut = start;
    }
    // `cut` is the last unit start <= 180; keep that unit only if it ends by 180.
    const size_t unit_end = stem[cut] == '%' ? cut + 3 : cut + 1;
    if (unit_end <= kShortenedPrefix) cut = unit_end;
    stem = fmt::format("{}~{:016x}", stem.substr(0, cut), fnv1a64(link_name));
  }
  return stem + ".pcap";
}

CaptureSet::CaptureSet(fabric::Fabric& fabric, std::filesystem::path directory, Options options)
    : fabric_(fabric),
      directory_(std::move(directory)),
      options_(options),
      thread_(std::make_shared<WriterThread>(options.writer)),
      timer_(fabric.io()) {}

fabric::Result<std::unique_ptr<CaptureSet>> CaptureSet::start(fabric::Fabric& fabric, std::filesystem::path directory,
                                                              Options options) {
  if (options.flush_interval.count() <= 0) {
    return fabric::fail(fmt::format("captures in '{}': flush interval must be positive", directory.string()));
  }
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  if (ec) return fabric::fail(fmt::format("captures in '{}': {}", directory.string(), ec.message()));
  if (!std::filesystem::is_directory(directory, ec)) {
    return fabric::fail(fmt::format("captures in '{}': not a directory", directory.string()));
  }
  std::unique_ptr<CaptureSet> set(new CaptureSet(fabric, std::move(directory), options));
  for (fabric::Link* link : fabric.links()) {
    if (auto added = set->add(*link); !added) return std::unexpected(added.error());
  }
  set->arm_timer();
  return set;
}

CaptureSet::~CaptureSet() { (void)stop(); }

fabric::Result<std::filesystem::path> CaptureSet::add(fabric::Link& link) {
  if (!running_) return fabric::fail(fmt::format("capture of link '{}': the capture set is stopped", link.name()));
  if (captures_.contains(link.name())) {
    return fabric::fail(fmt::format("capture of link '{}': already captured", link.name()));
  }
  const std::filesystem::path path = directory_ / capture_file_name(link.name());
  auto capture = FileCapture::open(TapPoint(link), path, PcapFileWriter::Options{options_.precision, thread_});
  if (!capture) {
    return fabric::fail(fmt::format("capture of link '{}': {}", link.name(), capture.error().message));
  }
  captures_.emplace(link.name(), std::move(*capture));
  // A monitor that dies leaves its last frames in the buffer: write them out
  // at once, so the capture is complete without waiting for the timer.
  for (fabric::Port* end : {&link.a(), &link.b()}) {
    if (auto* socket = dynamic_cast<fabric::SocketPort*>(end)) {
      socket->on_peer_closed([this, alive = std::weak_ptr<bool>(alive_), name = link.name()] {
        if (alive.expired() || !running_) return;
        if (auto it = captures_.find(name); it != captures_.end()) {
          if (auto flushed = it->second->flush(); !flushed && !error_) error_ = flushed.error();
        }
      });
    }
  }
  return path;
}

void CaptureSet::arm_timer() {
  timer_.expires_after(options_.flush_interval);
  timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec) {
    if (ec || alive.expired() || !running_) return;
    tick();
  });
}

void CaptureSet::tick() {
  for (auto& [name, capture] : captures_) {
    if (auto submitted = capture->submit(); !submitted && !error_) error_ = submitted.error();
  }
  // Runs on the writer thread once the records above are written; the
  // handler it posts checks that the set is still there. The io_context
  // outlives the set (it outlives the fabric).
  thread_->when_written([&io = fabric_.io(), this, alive = std::weak_ptr<bool>(alive_)] {
    boost::asio::post(io, [this, alive] {
      if (alive.expired() || !running_) return;
      ticked();
    });
  });
}

void CaptureSet::ticked() {
  ++flushes_;
  for (auto& [name, capture] : captures_) {
    if (auto checked = capture->check(); !checked && !error_) error_ = checked.error();
  }
  arm_timer();
}

fabric::Result<void> CaptureSet::flush() {
  fabric::Result<void> result;
  // Hand everything over first, so the thread writes one file while this
  // thread waits for another.
  for (auto& [name, capture] : captures_) (void)capture->submit();
  for (auto& [name, capture] : captures_) {
    if (auto flushed = capture->flush(); !flushed && result) result = std::unexpected(flushed.error());
  }
  return result;
}

fabric::Result<void> CaptureSet::stop() {
  if (!running_) return {};
  running_ = false;
  timer_.cancel();
  for (auto& [name, capture] : captures_) (void)capture->submit();
  fabric::Result<void> result;
  for (auto& [name, capture] : captures_) {
    if (auto closed = capture->close(); !closed && result) result = std::unexpected(closed.error());
  }
  return result;
}

uint64_t CaptureSet::dropped() const {
  uint64_t total = 0;
  for (const auto& [name, capture] : captures_) total += capture->writer().counters().dropped;
  return total;
}

const FileCapture* CaptureSet::find(const std::string& link_name) const {
  auto it = captures_.find(link_name);
  return it == captures_.end() ? nullptr : it->second.get();
}

std::optional<std::filesystem::path> CaptureSet::path_of(const std::string& link_name) const {
  const FileCapture* capture = find(link_name);
  if (capture == nullptr) return std::nullopt;
  return capture->path();
}

}  // namespace twoostwo::captures
