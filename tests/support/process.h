// Helpers shared by the tests that run programs (twoostwo-vmm, tshark,
// tcpdump...) as processes: a child process with its stdout/stderr captured
// to files, and twoostwo-vmm's command line.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

#include "tests/support/files.h"

namespace twoostwo::testing {

/// A child process (`argv[0]` is the program: a path, or a name looked up on
/// $PATH) with stdin from `stdin_fd` (-1: /dev/null) and stdout/stderr
/// written to `dir`/stdout and `dir`/stderr. `fds` are (parent fd, child fd)
/// pairs the child inherits (dup2, so the parent's may be close-on-exec).
/// Killed (SIGKILL) on destruction if it is still running.
class ChildProcess {
 public:
  ChildProcess(const std::filesystem::path& dir, std::vector<std::string> argv_strings,
               const std::vector<std::pair<int, int>>& fds = {}, int stdin_fd = -1)
      : out_(dir / "stdout"), err_(dir / "stderr") {
    std::vector<char*> argv;
    for (auto& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (stdin_fd >= 0) {
      posix_spawn_file_actions_adddup2(&fa, stdin_fd, 0);
    } else {
      posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    }
    posix_spawn_file_actions_addopen(&fa, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (const auto& [from, to] : fds) posix_spawn_file_actions_adddup2(&fa, from, to);
    if (posix_spawnp(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~ChildProcess() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool started() const { return pid_ > 0; }
  /// Reaps it without waiting: true once it has exited (or never started).
  bool exited() {
    if (status_ || pid_ <= 0) return true;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return status_.has_value();
  }
  /// The exit status; 128+N if it died of signal N; -1 on timeout (the
  /// child keeps running) or if it could not be started.
  int wait(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!exited()) {
      if (std::chrono::steady_clock::now() >= deadline) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return pid_ > 0 ? *status_ : -1;
  }
  /// The exit status as wait() gives it, once exited() or wait() saw it; else -1.
  int status() const { return status_.value_or(-1); }
  void signal(int sig) const {
    if (pid_ > 0 && !status_) ::kill(pid_, sig);
  }
  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }

 private:
  std::filesystem::path out_, err_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

#ifdef TWOOSTWO_VMM_PATH
/// twoostwo-vmm (the build's binary, TWOOSTWO_VMM_PATH) with `args`.
inline std::vector<std::string> vmm_argv(std::vector<std::string> args) {
  args.insert(args.begin(), TWOOSTWO_VMM_PATH);
  return args;
}
#endif

}  // namespace twoostwo::testing
