// Helpers for the captures/ tests: a scripted port, frames, running the
// fabric's io_context from the test's thread, child processes (tshark,
// tcpdump, ip, ping, python3) and reading captures back with tshark — an
// independent reader (DESIGN.md, Tests: "Captures are checked by an
// independent reader (tshark/tcpdump), not only by our own code").
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "tests/support/files.h"
#include "tests/support/process.h"
#include "switch/frame.h"
#include "switch/port.h"

extern char** environ;

namespace twoostwo::captures::testing {

using namespace std::chrono_literals;

using twoostwo::testing::slurp;
using twoostwo::testing::TempDir;

/// A port whose outside is the test: send() puts frames on its link with a
/// chosen timestamp, and what the link delivers is kept in `received`.
class ScriptPort final : public fabric::Port {
 public:
  explicit ScriptPort(std::string name) : Port(std::move(name)) {}
  std::string describe() const override { return "script"; }
  void send(std::span<const std::byte> bytes, fabric::Timestamp time = fabric::realtime_now()) {
    transmit(fabric::Frame{bytes, time, nullptr});
  }
  void send(const std::vector<std::byte>& bytes, fabric::Timestamp time = fabric::realtime_now()) {
    send(std::span<const std::byte>(bytes), time);
  }
  std::vector<std::vector<std::byte>> received;

 protected:
  bool on_deliver(const fabric::Frame& frame) override {
    received.emplace_back(frame.bytes.begin(), frame.bytes.end());
    return true;
  }
};

inline fabric::MacAddress mac(uint8_t last) { return {0x02, 0x00, 0x00, 0x00, 0x00, last}; }
inline const fabric::MacAddress kBroadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
/// IEEE 802 "Local Experimental Ethertype 1": tshark shows the payload as data.
inline constexpr uint16_t kTestEthertype = 0x88b5;

/// A frame of `size` bytes (>= 14): header, then a 4-byte big-endian
/// sequence number (if it fits), then bytes (seq * 7 + i) & 0xff.
inline std::vector<std::byte> make_frame(const fabric::MacAddress& dst, const fabric::MacAddress& src, size_t size,
                                         uint32_t seq, uint16_t ethertype = kTestEthertype) {
  std::vector<std::byte> f(size);
  for (size_t i = 0; i < 6; ++i) {
    f[i] = std::byte{dst[i]};
    f[6 + i] = std::byte{src[i]};
  }
  f[12] = std::byte(ethertype >> 8);
  f[13] = std::byte(ethertype & 0xff);
  for (size_t i = 14; i < size; ++i) f[i] = std::byte((seq * 7 + i) & 0xff);
  for (size_t i = 0; i < 4 && 14 + i < size; ++i) f[14 + i] = std::byte((seq >> (24 - 8 * i)) & 0xff);
  return f;
}

/// The sequence number make_frame put at offset 14.
inline uint32_t frame_seq(std::span<const std::byte> f) {
  uint32_t seq = 0;
  for (size_t i = 0; i < 4; ++i) seq = (seq << 8) | static_cast<uint32_t>(f[14 + i]);
  return seq;
}

inline std::string hex(std::span<const std::byte> bytes) {
  std::string out;
  for (std::byte b : bytes) out += fmt::format("{:02x}", static_cast<unsigned>(b));
  return out;
}

/// "1700000000.123456789": a timestamp as tshark's frame.time_epoch shows it.
inline std::string epoch_text(fabric::Timestamp t) {
  return fmt::format("{}.{:09}", t.count() / 1'000'000'000, t.count() % 1'000'000'000);
}

/// Run the fabric's event loop on this thread until `done()` or `timeout`.
inline bool pump_until(boost::asio::io_context& io, const std::function<bool()>& done,
                       std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (io.stopped()) io.restart();
    if (io.run_for(5ms) == 0) std::this_thread::sleep_for(1ms);
  }
  return true;
}

/// Run the handlers that are ready now (an io_context that ran out of work
/// is stopped until restarted).
inline void poll(boost::asio::io_context& io) {
  if (io.stopped()) io.restart();
  io.poll();
}

/// Run the event loop for `duration`.
inline void pump_for(boost::asio::io_context& io, std::chrono::milliseconds duration) {
  const auto deadline = std::chrono::steady_clock::now() + duration;
  pump_until(io, [&] { return std::chrono::steady_clock::now() >= deadline; }, duration + 1s);
}

/// True if `program` is on $PATH.
inline bool have_program(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin:/usr/sbin:/sbin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && ::access((std::filesystem::path(dir) / program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

/// A ChildProcess with its stdout/stderr files in a temporary directory of
/// its own. Killed on destruction if running.
class Child : private TempDir, public twoostwo::testing::ChildProcess {
 public:
  explicit Child(std::vector<std::string> argv, int stdin_fd = -1)
      : TempDir(), ChildProcess(path(), std::move(argv), {}, stdin_fd) {}
};

struct RunResult {
  int status = -1;
  std::string out, err;
};

/// Run a program to completion (stdin from /dev/null).
inline RunResult run(std::vector<std::string> argv, std::chrono::milliseconds timeout = 60s) {
  Child child(std::move(argv));
  RunResult r;
  r.status = child.wait(timeout);
  r.out = child.out();
  r.err = child.err();
  return r;
}

/// One frame as tshark reads it back.
struct TsharkFrame {
  int number = 0;
  std::string time_epoch;  // "1700000000.123456789"
  size_t length = 0;       // frame.len (on the wire)
  size_t captured = 0;     // frame.cap_len
  std::string src, dst, type;
  std::string data;  // data.data in hex (payload of frames tshark does not dissect further)
};

struct TsharkResult {
  int status = -1;
  std::string err;
  std::vector<TsharkFrame> frames;
};

inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::stringstream in(s);
  while (std::getline(in, part, sep)) parts.push_back(part);
  if (!s.empty() && s.back() == sep) parts.emplace_back();
  return parts;
}

inline std::vector<std::string> tshark_argv(const std::string& input, const std::string& display_filter = {}) {
  std::vector<std::string> argv{"tshark", "-n", "-r", input};
  if (!display_filter.empty()) {
    argv.push_back("-Y");
    argv.push_back(display_filter);
  }
  for (const char* field : {"frame.number", "frame.time_epoch", "frame.len", "frame.cap_len", "eth.src", "eth.dst",
                            "eth.type", "data.data"}) {
    argv.push_back("-e");
    argv.push_back(field);
  }
  argv.insert(argv.end(), {"-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"});
  return argv;
}

inline TsharkResult parse_tshark(int status, const std::string& out, const std::string& err) {
  TsharkResult r;
  r.status = status;
  r.err = err;
  std::stringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    auto f = split(line, '\t');
    f.resize(8);
    TsharkFrame frame;
    frame.number = std::atoi(f[0].c_str());
    frame.time_epoch = f[1];
    frame.length = std::strtoul(f[2].c_str(), nullptr, 10);
    frame.captured = std::strtoul(f[3].c_str(), nullptr, 10);
    frame.src = f[4];
    frame.dst = f[5];
    frame.type = f[6];
    frame.data = f[7];
    r.frames.push_back(frame);
  }
  return r;
}

/// Read a pcap file with tshark, one TsharkFrame per frame.
inline TsharkResult read_with_tshark(const std::filesystem::path& file, const std::string& display_filter = {}) {
  const RunResult rr = run(tshark_argv(file.string(), display_filter));
  return parse_tshark(rr.status, rr.out, rr.err);
}

/// Fails the test (with the reason) if tshark or tcpdump is missing.
inline ::testing::AssertionResult readers_installed() {
  for (const char* program : {"tshark", "tcpdump"}) {
    if (!have_program(program)) {
      return ::testing::AssertionFailure() << program << " not found on PATH (scripts/setup.sh installs it)";
    }
  }
  return ::testing::AssertionSuccess();
}

/// A pipe whose ends are close-on-exec (children get only what they dup2).
struct Pipe {
  int read = -1, write = -1;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) == 0) {
      read = fds[0];
      write = fds[1];
    }
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  void close_read() {
    if (read >= 0) ::close(read);
    read = -1;
  }
  void close_write() {
    if (write >= 0) ::close(write);
    write = -1;
  }
  /// Hand the write end over (to a LiveCapture, which closes it).
  int release_write() {
    const int fd = write;
    write = -1;
    return fd;
  }
};

/// Everything readable from `fd` until end of file (the writer closed).
inline std::string read_to_eof(int fd) {
  std::string data;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      data.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  return data;
}

inline void write_file(const std::filesystem::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

}  // namespace twoostwo::captures::testing
