// The host side of the guest command channel on COM2 (guest/README.md,
// "Command channel"): the guest agent announces "@@twoostwo ready NAME",
// takes "@@exec ID BASE64(command)" and answers "@@begin ID", the command's
// merged stdout/stderr as base64 lines (RFC 4648, busybox `base64`), and
// "@@end ID STATUS". Binary-safe because only base64 crosses the tty.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "vmcore/bus/error.h"

namespace twoostwo::guest {

/// RFC 4648 base64 without line breaks (Boost.Archive's iterators).
std::string base64_encode(std::string_view bytes);
/// Decode one base64 text (whitespace ignored). Errors: invalid characters.
Result<std::string> base64_decode(std::string_view text);

class CommandChannel {
 public:
  /// `send` writes bytes into the guest's COM2 receive path; it is called on
  /// the thread that calls exec() and must do its own locking.
  using SendFn = std::function<void(std::string_view)>;
  /// `first_id`: the ID of the first request. A client that joins a channel
  /// others have used (a node's command socket replays recent output, old
  /// `@@end ID` lines included) starts at an ID of its own, e.g. PID * 1000.
  explicit CommandChannel(SendFn send, uint64_t first_id = 1);

  /// Bytes the guest transmitted on COM2, in order (any chunking). Called
  /// from the CPU thread; never blocks for long.
  void feed(std::span<const uint8_t> bytes);

  /// Wait until the agent has announced readiness. Returns the guest's
  /// hostname, or nullopt on timeout or when the channel was closed.
  std::optional<std::string> wait_ready(std::chrono::milliseconds timeout);

  /// Run `command` (a shell command line) in the guest. Output chunks are
  /// passed to `on_output` as they arrive (on the calling thread). Returns the
  /// command's exit status. Errors: not ready, timeout, channel closed (the
  /// VM ended), protocol error from the agent.
  Result<int> exec(std::string_view command, const std::function<void(std::string_view)>& on_output,
                   std::chrono::milliseconds timeout);

  /// The VM has ended: wake every waiter with an error.
  void close();

  /// Lines from the guest that were not part of the protocol (counted).
  uint64_t stray_lines() const;

 private:
  void handle_line(const std::string& line);  // with mu_ held

  SendFn send_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string partial_;
  std::optional<std::string> ready_name_;
  bool closed_ = false;
  uint64_t next_id_ = 1;
  // State of the command in flight.
  uint64_t active_id_ = 0;
  bool active_begun_ = false;
  std::optional<int> active_status_;
  std::string pending_output_;
  std::string error_;
  uint64_t stray_lines_ = 0;
};

}  // namespace twoostwo::guest
