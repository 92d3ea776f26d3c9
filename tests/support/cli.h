// The `twoostwo` command in end-to-end tests: shell commands with their
// output, a lab driven through the command in its own temporary directory
// (CliLab), and capture files read by tshark, an independent reader.
// Needs TWOOSTWO_CLI_PATH (the build's `twoostwo`).
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <thread>

#include "tests/support/files.h"

namespace twoostwo::testing {

struct CliRun {
  int status = -1;  // the exit status; -1 if the command did not exit normally
  std::string out;
};

/// `command` run by /bin/sh: its stdout and exit status.
inline CliRun run_shell(const std::string& command) {
  CliRun r;
  if (std::FILE* p = ::popen(command.c_str(), "r")) {
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, p)) > 0) r.out.append(buffer, n);
    const int status = ::pclose(p);
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  return r;
}

/// `s` quoted for /bin/sh.
inline std::string sh_quote(const std::string& s) {
  std::string out = "'";
  for (const char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

/// Whether process `pid` exists and is not a zombie.
inline bool alive(int pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  const std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");  // "PID (COMM) STATE ..."
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z';
}

/// `tshark -r PCAP ARGS`: its stdout (stderr, with its warning about running
/// as root, is dropped) and exit status (0: the whole file was read).
inline CliRun tshark(const std::filesystem::path& pcap, const std::string& args = "") {
  return run_shell("tshark -r " + sh_quote(pcap.string()) + " " + args + " 2>/dev/null");
}

/// How many frames of `pcap` match the display filter `filter`.
inline int tshark_count(const std::filesystem::path& pcap, const std::string& filter) {
  const CliRun r = tshark(pcap, "-Y " + sh_quote(filter) + " -T fields -e frame.number");
  int lines = 0;
  for (const char c : r.out) lines += c == '\n';
  return lines;
}

/// The entry of node `name` in a `status --json` answer (null if none).
inline nlohmann::json node_status(const nlohmann::json& status, const std::string& name) {
  if (status.contains("nodes")) {
    for (const auto& n : status["nodes"]) {
      if (n["name"] == name) return n;
    }
  }
  return nullptr;
}

/// A connected Unix stream socket, or -1.
inline int connect_unix(const std::filesystem::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return fd;
  ::close(fd);
  return -1;
}

/// A lab run with `twoostwo` in a fresh temporary directory, which is the
/// commands' working directory; the run root (TWOOSTWO_RUN_DIR) is DIR/run.
/// Destruction brings the lab down if it is still up, then SIGKILLs any
/// process of it (supervisor or monitor) that is still there, as a test
/// failure: a test never leaves processes behind.
class CliLab {
 public:
  /// `name`: the lab's name, as its file says.
  explicit CliLab(std::string name) : name_(std::move(name)) {}
  ~CliLab() {
    if (running()) (void)run("down --lab " + name_);
    std::string left;
    for (const int pid : pids_) {
      for (int i = 0; i < 50 && alive(pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!alive(pid)) continue;
      ::kill(pid, SIGKILL);
      left += " " + std::to_string(pid);
    }
    EXPECT_EQ(left, "") << "lab '" << name_ << "': processes left after `down` (killed)";
  }
  CliLab(const CliLab&) = delete;
  CliLab& operator=(const CliLab&) = delete;

  const std::filesystem::path& dir() const { return dir_.path(); }
  const std::string& name() const { return name_; }
  std::filesystem::path control_socket() const { return dir() / "run" / name_ / "control.sock"; }
  bool running() const { return std::filesystem::exists(control_socket()); }

  /// The shell command that runs `twoostwo ARGS` in the lab's directory with
  /// its run root; the shell execs it, so the shell's PID becomes its PID.
  std::string command(const std::string& args) const {
    return "cd " + sh_quote(dir().string()) + " && TWOOSTWO_RUN_DIR=" + sh_quote((dir() / "run").string()) +
           " exec " + sh_quote(TWOOSTWO_CLI_PATH) + " " + args;
  }
  /// `twoostwo ARGS`, stdout and stderr merged.
  CliRun run(const std::string& args) const { return run_shell(command(args) + " 2>&1"); }

  /// `twoostwo up --owner-pid OWNER ARGS`; once it is up, the supervisor and
  /// the monitors are remembered, for the destructor. The owner is this test
  /// process unless said otherwise: a test that CTest kills at its timeout
  /// (no destructor runs then) takes its lab down with it.
  CliRun up(const std::string& args = "", int owner = ::getpid()) {
    CliRun r = run("up --owner-pid " + std::to_string(owner) + " " + args);
    if (r.status == 0) {
      supervisor_ = listener_pid(control_socket());
      pids_.insert(supervisor_);
      (void)status();
    }
    return r;
  }
  /// The supervisor's process, found as the listener of the control socket
  /// (-1 if the lab never came up).
  int supervisor_pid() const { return supervisor_; }

  /// `twoostwo status --json`, parsed (discarded if the command failed).
  nlohmann::json status() {
    const CliRun r = run("status --json");
    EXPECT_EQ(r.status, 0) << r.out;
    nlohmann::json s = nlohmann::json::parse(r.out, nullptr, false);
    if (!s.is_discarded()) {
      for (const auto& n : s["nodes"]) pids_.insert(n["pid"].get<int>());
    }
    return s;
  }
  /// `status --json` once node `node` is in state "exited", or after 5 s.
  nlohmann::json status_once_exited(const std::string& node) {
    nlohmann::json s;
    for (int i = 0; i < 50; ++i) {
      s = status();
      if (const auto n = node_status(s, node); n.is_object() && n["state"] == "exited") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return s;
  }

 private:
  static int listener_pid(const std::filesystem::path& socket_path) {
    const int fd = connect_unix(socket_path);
    ucred peer{};
    socklen_t size = sizeof peer;
    const bool ok = fd >= 0 && ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) == 0;
    if (fd >= 0) ::close(fd);
    return ok ? peer.pid : -1;
  }

  std::string name_;
  TempDir dir_;
  std::set<int> pids_;
  int supervisor_ = -1;
};

}  // namespace twoostwo::testing
