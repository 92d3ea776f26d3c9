// The serial console of a VM (COM1): output is logged to a file, echoed to
// stdout if asked, and served on a Unix stream socket (`--console-socket`)
// to any number of clients; bytes a client sends become UART input.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "vmcore/bus/error.h"

namespace twoostwo::vmcore {

class Console {
 public:
  /// `on_input`: called on the I/O thread with bytes a socket client typed.
  Console(boost::asio::io_context& io, std::function<void(std::string_view)> on_input);
  ~Console();
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  /// Append all output to `path` (created or truncated). Errors name the file.
  Result<void> open_log(const std::string& path);
  /// Copy output to the monitor's stdout as well.
  void echo_to_stdout(bool on) { echo_ = on; }
  /// Listen on a Unix stream socket at `path` (an existing socket file is
  /// replaced). Each client receives the last 64 KiB of output, then the
  /// output as it comes. The socket is bound and listening under a
  /// temporary name (`path` + "~") and then renamed to `path`, so a client
  /// that sees `path` appear can connect at once (a bind() alone creates the
  /// file before listen(), and a connect() in between is refused). Errors
  /// name the path.
  Result<void> listen(const std::string& path);

  /// Guest output (from the CPU thread). Thread-safe; never blocks on clients:
  /// a client that cannot keep up loses its oldest pending output (counted).
  void output(std::span<const uint8_t> bytes);

  /// Flush the log file (called periodically and at exit).
  void flush();

 private:
  struct Client;
  void accept();
  void send_to(const std::shared_ptr<Client>& c);

  boost::asio::io_context& io_;
  std::function<void(std::string_view)> on_input_;
  std::mutex mu_;
  std::FILE* log_ = nullptr;
  bool echo_ = false;
  std::string backlog_;  // last 64 KiB
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> acceptor_;
  std::string socket_path_;
  std::vector<std::shared_ptr<Client>> clients_;
};

}  // namespace twoostwo::vmcore
