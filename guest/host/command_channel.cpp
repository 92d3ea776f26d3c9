#include "guest/host/command_channel.h"

#include <boost/archive/iterators/base64_from_binary.hpp>
#include <boost/archive/iterators/binary_from_base64.hpp>
#include <boost/archive/iterators/transform_width.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace twoostwo::guest {

namespace it = boost::archive::iterators;

std::string base64_encode(std::string_view bytes) {
  using Enc = it::base64_from_binary<it::transform_width<std::string_view::const_iterator, 6, 8>>;
  std::string out(Enc(bytes.begin()), Enc(bytes.end()));
  out.append((3 - bytes.size() % 3) % 3, '=');
  return out;
}

Result<std::string> base64_decode(std::string_view text) {
  std::string clean;
  clean.reserve(text.size());
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                    c == '/' || c == '=';
    if (!ok) return fail(fmt::format("base64: invalid character 0x{:02x}", static_cast<unsigned char>(c)));
    clean += c;
  }
  if (clean.size() % 4 != 0) return fail("base64: length is not a multiple of 4");
  const size_t pad = clean.size() >= 2 ? static_cast<size_t>(std::count(clean.end() - 2, clean.end(), '=')) : 0;
  std::replace(clean.begin(), clean.end(), '=', 'A');
  using Dec = it::transform_width<it::binary_from_base64<std::string::const_iterator>, 8, 6>;
  std::string out(Dec(clean.begin()), Dec(clean.end()));
  out.resize(out.size() - std::min(pad, out.size()));
  return out;
}

CommandChannel::CommandChannel(SendFn send, uint64_t first_id) : send_(std::move(send)), next_id_(first_id == 0 ? 1 : first_id) {}

void CommandChannel::feed(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mu_);
  bool any = false;
  for (uint8_t b : bytes) {
    if (b == '\n') {
      if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
      handle_line(partial_);
      partial_.clear();
      any = true;
    } else if (partial_.size() < 64 * 1024) {
      partial_ += static_cast<char>(b);
    }
  }
  if (any) cv_.notify_all();
}

void CommandChannel::handle_line(const std::string& line) {
  auto starts = [&](std::string_view p) { return line.compare(0, p.size(), p) == 0; };
  auto number_after = [&](size_t pos, uint64_t& v) {
    auto r = std::from_chars(line.data() + pos, line.data() + line.size(), v);
    return r.ec == std::errc{} ? static_cast<size_t>(r.ptr - line.data()) : std::string::npos;
  };
  if (starts("@@twoostwo ready")) {
    ready_name_ = line.size() > 17 ? line.substr(17) : std::string("guest");
    return;
  }
  if (starts("@@begin ")) {
    uint64_t id = 0;
    if (number_after(8, id) != std::string::npos && id == active_id_) active_begun_ = true;
    return;
  }
  if (starts("@@end ")) {
    uint64_t id = 0;
    const size_t pos = number_after(6, id);
    if (pos == std::string::npos || id != active_id_) return;
    int status = 255;
    const size_t at = line.find_first_not_of(' ', pos);
    if (at != std::string::npos) std::from_chars(line.data() + at, line.data() + line.size(), status);
    active_status_ = status;
    return;
  }
  if (starts("@@error")) {
    if (active_id_ != 0) error_ = line.substr(std::min<size_t>(line.size(), 8));
    return;
  }
  if (active_id_ != 0 && active_begun_ && !active_status_) {
    auto decoded = base64_decode(line);
    if (decoded) {
      pending_output_ += *decoded;
      return;
    }
  }
  ++stray_lines_;
}

std::optional<std::string> CommandChannel::wait_ready(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return ready_name_.has_value() || closed_; });
  return ready_name_;
}

Result<int> CommandChannel::exec(std::string_view command, const std::function<void(std::string_view)>& on_output,
                                 std::chrono::milliseconds timeout) {
  uint64_t id = 0;
  {
    std::lock_guard lock(mu_);
    if (closed_) return fail("command channel: the VM has ended");
    if (!ready_name_) return fail("command channel: the guest agent is not ready");
    id = next_id_++;
    active_id_ = id;
    active_begun_ = false;
    active_status_.reset();
    pending_output_.clear();
    error_.clear();
  }
  send_(fmt::format("@@exec {} {}\n", id, base64_encode(command)));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait_until(lock, deadline,
                   [&] { return closed_ || !pending_output_.empty() || active_status_ || !error_.empty(); });
    if (!pending_output_.empty()) {
      std::string chunk = std::move(pending_output_);
      pending_output_.clear();
      lock.unlock();
      on_output(chunk);
      lock.lock();
      continue;
    }
    if (active_status_) {
      active_id_ = 0;
      return *active_status_;
    }
    if (!error_.empty()) {
      active_id_ = 0;
      return fail("command channel: the guest agent answered: " + error_);
    }
    if (closed_) return fail("command channel: the VM ended while the command ran");
    if (std::chrono::steady_clock::now() >= deadline) {
      active_id_ = 0;
      return fail(fmt::format("command channel: no answer within {} s", timeout.count() / 1000));
    }
  }
}

void CommandChannel::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

uint64_t CommandChannel::stray_lines() const {
  std::lock_guard lock(mu_);
  return stray_lines_;
}

}  // namespace twoostwo::guest
