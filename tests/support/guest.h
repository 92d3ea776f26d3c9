// Helpers for the tests that boot the default i386 guest in twoostwo-vmm and
// drive it through its COM2 command channel (--command-socket): the host
// side of the channel (Agent) and a booted guest (Guest).
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/process.h"
#include "guest/host/command_channel.h"

namespace twoostwo::testing {

inline const std::filesystem::path kGuestI386 = std::filesystem::path(TWOOSTWO_GUEST_DIR) / "i386";

inline bool guest_image_present() {
  return std::filesystem::exists(kGuestI386 / "vmlinuz") && std::filesystem::exists(kGuestI386 / "initrd.cpio");
}
inline void require_guest_image() {
  ASSERT_TRUE(guest_image_present()) << "no guest image in " << kGuestI386
                                     << ": run scripts/setup.sh (it builds the images)";
}

/// twoostwo-vmm with `args`; stdout/stderr captured in `dir`.
class Vmm : public ChildProcess {
 public:
  Vmm(const std::filesystem::path& dir, std::vector<std::string> args, const std::vector<std::pair<int, int>>& fds = {})
      : ChildProcess(dir, vmm_argv(std::move(args)), fds) {}
};

/// The host side of the command channel over twoostwo-vmm's --command-socket.
class Agent {
 public:
  bool connect(const std::filesystem::path& sock) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return false;
    channel_ = std::make_unique<guest::CommandChannel>([this](std::string_view s) {
      (void)::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
    });
    reader_ = std::thread([this] {
      uint8_t buf[4096];
      while (true) {
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) break;
        channel_->feed(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
      }
      channel_->close();
    });
    return true;
  }
  ~Agent() {
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
    if (reader_.joinable()) reader_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  guest::CommandChannel& channel() { return *channel_; }

  /// Wait for `sock` to appear, connect, and wait for the agent's readiness
  /// line; returns the guest's hostname, or "" on timeout or failure.
  std::string wait_ready(const std::filesystem::path& sock, std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!std::filesystem::exists(sock) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!connect(sock)) return "";
    const auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline - std::chrono::steady_clock::now());
    return channel().wait_ready(std::max(left, std::chrono::seconds(1))).value_or("");
  }
  struct Output {
    int status = -1;
    std::string text;
    std::string error;
  };
  Output run(const std::string& cmd, std::chrono::seconds timeout = std::chrono::seconds(120)) {
    Output o;
    auto r = channel_->exec(cmd, [&](std::string_view s) { o.text += s; }, timeout);
    if (r) o.status = *r;
    else o.error = r.error().message;
    return o;
  }

 private:
  int fd_ = -1;
  std::unique_ptr<guest::CommandChannel> channel_;
  std::thread reader_;
};

/// The default guest booted on the emulator engine with `node_conf`, in its
/// own temporary directory; `extra_args` go to twoostwo-vmm (e.g. --nic),
/// `fds` are inherited as ChildProcess describes.
class Guest {
 public:
  Guest(const std::string& name, const std::string& node_conf, std::vector<std::string> extra_args = {},
        const std::vector<std::pair<int, int>>& fds = {}) {
    std::ofstream(dir_.path() / "node.conf") << node_conf;
    std::vector<std::string> args = {"--name", name, "--kernel", (kGuestI386 / "vmlinuz").string(), "--initrd",
                                     (kGuestI386 / "initrd.cpio").string(), "--cpu-engine=emulator", "--node-config",
                                     (dir_.path() / "node.conf").string(), "--console-log",
                                     (dir_.path() / "console.log").string(), "--command-socket",
                                     (dir_.path() / "com2.sock").string(), "-q"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    vmm_ = std::make_unique<Vmm>(dir_.path(), std::move(args), fds);
  }
  /// Connect to the command channel and wait for the agent's readiness;
  /// returns the guest's hostname, or "" (see diagnostics()).
  std::string wait_ready(std::chrono::seconds timeout) { return agent_.wait_ready(dir_.path() / "com2.sock", timeout); }
  Agent::Output run(const std::string& cmd, std::chrono::seconds timeout = std::chrono::seconds(120)) {
    return agent_.run(cmd, timeout);
  }
  /// What the monitor printed on stderr and the guest on its console.
  std::string diagnostics() const {
    return "monitor:\n" + vmm_->err() + "\nconsole:\n" + slurp(dir_.path() / "console.log");
  }
  Vmm& vmm() { return *vmm_; }
  const std::filesystem::path& dir() const { return dir_.path(); }

 private:
  TempDir dir_;
  std::unique_ptr<Vmm> vmm_;
  Agent agent_;
};

}  // namespace twoostwo::testing
