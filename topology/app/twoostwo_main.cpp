// twoostwo: the lab command (DESIGN.md, "Processes"). `up` validates a
// topology file and starts its supervisor (topology/supervisor.h), detached
// unless --foreground; the other commands find a running lab by name under
// the run root and talk to its supervisor's control socket, or, for `exec`
// and `console`, to the node's own sockets in the lab's run directory.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "guest/host/command_channel.h"
#include "topology/loader.h"
#include "topology/supervisor.h"

namespace {

namespace fs = std::filesystem;
using namespace twoostwo;
using nlohmann::json;

// Exit statuses (--help says the same).
constexpr int kFailed = 1;    // the command failed (a message says why)
constexpr int kInvalid = 2;   // bad usage or an invalid topology file

[[noreturn]] void die(const std::string& message, int status = kFailed) {
  std::fprintf(stderr, "twoostwo: %s\n", message.c_str());
  std::exit(status);
}

// Where labs' run directories live: $TWOOSTWO_RUN_DIR, else /run/twoostwo for
// root, else $XDG_RUNTIME_DIR/twoostwo, else /tmp/twoostwo-UID.
fs::path run_root() {
  if (const char* env = std::getenv("TWOOSTWO_RUN_DIR"); env != nullptr && *env != '\0') return env;
  if (::geteuid() == 0) return "/run/twoostwo";
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && *xdg != '\0') return fs::path(xdg) / "twoostwo";
  return fmt::format("/tmp/twoostwo-{}", ::getuid());
}

fs::path guest_dir() {
  if (const char* env = std::getenv("TWOOSTWO_GUEST_DIR"); env != nullptr && *env != '\0') return env;
  return TWOOSTWO_DEFAULT_GUEST_DIR;
}

fs::path vmm_path() {
  if (const char* env = std::getenv("TWOOSTWO_VMM"); env != nullptr && *env != '\0') return env;
  // Installed side by side, or the build tree's monitor.
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && fs::exists(self.parent_path() / "twoostwo-vmm")) return self.parent_path() / "twoostwo-vmm";
  return TWOOSTWO_DEFAULT_VMM;
}

// Load FILE (or the built-in default lab), or print every diagnostic and exit 2.
topology::Lab load(const std::optional<std::string>& file) {
  topology::LoadOptions options;
  options.images = topology::guest_image_dir(guest_dir());
  auto lab = file ? topology::load_lab(*file, options)
                  : topology::parse_lab(topology::default_lab_text(), fs::current_path(),
                                        [&] {
                                          auto o = options;
                                          o.display_name = "<default lab>";
                                          return o;
                                        }());
  if (!lab) {
    for (const auto& d : lab.error()) std::fprintf(stderr, "%s\n", d.to_string().c_str());
    std::exit(kInvalid);
  }
  return std::move(*lab);
}

// A connected Unix stream socket, or -1.
int connect_unix(const fs::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof address.sun_path) return -1;
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::optional<std::string> read_line(int fd) {
  std::string line;
  char c;
  while (true) {
    const ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    if (c == '\n') return line;
    line.push_back(c);
  }
}

// The lab to talk to: --lab, else the only running lab, else the default's.
std::string pick_lab(const std::string& given) {
  if (!given.empty()) return given;
  std::vector<std::string> running;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run_root(), ec)) {
    if (fs::exists(entry.path() / "control.sock")) running.push_back(entry.path().filename().string());
  }
  if (running.size() == 1) return running[0];
  if (running.empty()) die("no lab is running (start one with `twoostwo up [FILE]`)");
  std::string names;
  for (const auto& r : running) names += (names.empty() ? "" : ", ") + r;
  die("several labs are running (" + names + "): say which with --lab NAME", kInvalid);
}

// One request to a lab's supervisor; its answer (exits on failure). With
// `keep`, the connection stays open and its descriptor is returned in *keep.
json request(const std::string& lab, const json& req, int* keep = nullptr) {
  const fs::path control = run_root() / lab / "control.sock";
  const int fd = connect_unix(control);
  if (fd < 0) die(fmt::format("lab '{}' is not running (no supervisor at {})", lab, control.string()));
  if (!write_all(fd, req.dump() + "\n")) die(fmt::format("lab '{}': the supervisor closed the connection", lab));
  auto line = read_line(fd);
  if (!line) die(fmt::format("lab '{}': no answer from the supervisor", lab));
  json answer = json::parse(*line, nullptr, false);
  if (answer.is_discarded() || !answer.value("ok", false)) {
    ::close(fd);
    die(answer.is_discarded() ? "garbled answer from the supervisor" : answer.value("error", "request failed"));
  }
  if (keep != nullptr) {
    *keep = fd;
  } else {
    ::close(fd);
  }
  return answer;
}

int cmd_validate(const std::vector<std::string>& files) {
  int status = 0;
  for (const auto& file : files) {
    topology::LoadOptions options;
    options.images = topology::guest_image_dir(guest_dir());
    auto lab = topology::load_lab(file, options);
    if (!lab) {
      for (const auto& d : lab.error()) std::printf("%s\n", d.to_string().c_str());
      status = kInvalid;
      continue;
    }
    std::printf("%s: ok: lab '%s', %zu node%s, %zu switch%s, %zu link%s\n", file.c_str(), lab->name.c_str(),
                lab->nodes.size(), lab->nodes.size() == 1 ? "" : "s", lab->switches.size(),
                lab->switches.size() == 1 ? "" : "es", lab->links.size(), lab->links.size() == 1 ? "" : "s");
  }
  return status;
}

// `up --owner-pid`: the process whose end brings the lab down, as a pidfd
// (pidfd_open(2): close-on-exec, so no monitor inherits it; readable once
// the process has ended, whether it exited or was killed).
struct Owner {
  pid_t pid = 0;
  int pidfd = -1;  // -1: no owner
};

// Run the supervisor in this process until the lab stops. `progress_fd`
// receives progress lines and then "@@ready" or "@@failed WHY" (the parent of
// a detached supervisor reads them); -1 prints to stdout instead. The lab
// stops on SIGINT or SIGTERM, and when `owner` ends.
int run_supervisor(topology::Lab lab, const fs::path& run_dir, std::chrono::seconds timeout, int progress_fd,
                   bool foreground, Owner owner) {
  boost::asio::io_context io;
  // By reference: a detached supervisor closes progress_fd once the lab is
  // up, and later lines (a monitor's exit) go to stdout, its log — not to
  // whatever descriptor reuses the closed one's number (a control client).
  auto say = [&progress_fd](const std::string& line) {
    if (progress_fd >= 0) {
      (void)write_all(progress_fd, line + "\n");
    } else {
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    }
  };
  topology::SupervisorOptions options;
  options.vmm = vmm_path();
  options.run_dir = run_dir;
  options.ready_timeout = timeout;
  options.progress = say;
  int status = 0;
  std::unique_ptr<topology::Supervisor> supervisor;
  options.on_started = [&](bool ok, const std::string& why) {
    if (ok) {
      say(foreground ? "@@ready (Ctrl-C stops the lab)" : "@@ready");
    } else {
      status = kFailed;
      say("@@failed " + why);
      supervisor->stop();
    }
    if (progress_fd >= 0 && !foreground) {
      ::close(progress_fd);
      progress_fd = -1;
    }
  };
  options.on_stopped = [&] { io.stop(); };
  supervisor = std::make_unique<topology::Supervisor>(io, std::move(lab), options);
  boost::asio::signal_set stop_signals(io, SIGINT, SIGTERM);
  stop_signals.async_wait([&](const boost::system::error_code& e, int) {
    if (!e) supervisor->stop();
  });
  std::optional<boost::asio::posix::stream_descriptor> owner_end;
  if (owner.pidfd >= 0) {
    owner_end.emplace(io, owner.pidfd);
    owner_end->async_wait(boost::asio::posix::stream_descriptor::wait_read, [&](const boost::system::error_code& e) {
      if (e) return;
      say(fmt::format("owner process {} ended: stopping the lab", owner.pid));
      supervisor->stop();
    });
  }
  if (auto started = supervisor->start(); !started) {
    say("@@failed " + started.error().message);
    return kFailed;
  }
  io.run();
  return status;
}

int cmd_up(const std::optional<std::string>& file, bool foreground, int timeout_s, pid_t owner_pid) {
  Owner owner;
  if (owner_pid > 0) {
    owner.pid = owner_pid;
    // syscall(2): glibc 2.36's <sys/pidfd.h> lacks the extern "C" for C++.
    owner.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, owner_pid, 0));
    if (owner.pidfd < 0) {
      die(fmt::format("--owner-pid {}: {}", owner_pid, errno == ESRCH ? "no such process" : std::strerror(errno)),
          kInvalid);
    }
  }
  topology::Lab lab = load(file);
  const fs::path run_dir = run_root() / lab.name;
  if (const int fd = connect_unix(run_dir / "control.sock"); fd >= 0) {
    ::close(fd);
    die(fmt::format("lab '{}' is already up (`twoostwo status --lab {}`, `twoostwo down --lab {}`)", lab.name, lab.name,
                    lab.name));
  }
  std::printf("lab '%s': %zu node%s, %zu switch%s, %zu link%s; run directory %s\n", lab.name.c_str(), lab.nodes.size(),
              lab.nodes.size() == 1 ? "" : "s", lab.switches.size(), lab.switches.size() == 1 ? "" : "es",
              lab.links.size(), lab.links.size() == 1 ? "" : "s", run_dir.c_str());
  std::fflush(stdout);
  const auto timeout = std::chrono::seconds(timeout_s);
  if (foreground) {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) die("pipe failed");
    // Progress is printed by a reader thread so "@@" lines become plain text.
    std::thread printer([fd = pipe_fds[0]] {
      while (auto line = read_line(fd)) {
        if (line->rfind("@@ready", 0) == 0) {
          std::printf("all nodes ready%s\n", line->substr(7).c_str());
        } else if (line->rfind("@@failed ", 0) == 0) {
          std::printf("failed: %s\n", line->substr(9).c_str());
        } else {
          std::printf("%s\n", line->c_str());
        }
        std::fflush(stdout);
      }
    });
    const int status = run_supervisor(std::move(lab), run_dir, timeout, pipe_fds[1], true, owner);
    ::close(pipe_fds[1]);
    printer.join();
    ::close(pipe_fds[0]);
    return status;
  }
  // Detached: the child becomes the supervisor; this process relays its
  // progress and exits once every guest is ready (or something failed).
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) die("pipe failed");
  const pid_t child = ::fork();
  if (child < 0) die("fork failed");
  if (child == 0) {
    ::close(pipe_fds[0]);
    ::setsid();
    std::error_code ec;
    fs::create_directories(run_dir, ec);
    const int log = ::open((run_dir / "supervisor.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    if (log >= 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    ::signal(SIGPIPE, SIG_IGN);
    std::_Exit(run_supervisor(std::move(lab), run_dir, timeout, pipe_fds[1], false, owner));
  }
  ::close(pipe_fds[1]);
  int status = kFailed;
  bool decided = false;
  while (auto line = read_line(pipe_fds[0])) {
    if (*line == "@@ready") {
      status = 0;
      decided = true;
      break;
    }
    if (line->rfind("@@failed ", 0) == 0) {
      std::fprintf(stderr, "twoostwo: lab failed to start: %s\n", line->substr(9).c_str());
      decided = true;
      break;
    }
    std::printf("%s\n", line->c_str());
    std::fflush(stdout);
  }
  ::close(pipe_fds[0]);
  if (!decided) std::fprintf(stderr, "twoostwo: the supervisor ended early; see %s\n", (run_dir / "supervisor.out").c_str());
  if (status == 0) {
    std::printf("lab '%s' is up: `twoostwo status`, `twoostwo exec NODE -- CMD`, `twoostwo down`\n",
                run_dir.filename().c_str());
  } else {
    // Wait for the failed supervisor to clean up and exit.
    ::waitpid(child, nullptr, 0);
  }
  return status;
}

int cmd_status(const std::string& lab_name, bool as_json) {
  const std::string lab = pick_lab(lab_name);
  const json s = request(lab, {{"cmd", "status"}})["status"];
  if (as_json) {
    std::printf("%s\n", s.dump(2).c_str());
    return 0;
  }
  std::printf("lab %s (%s)\n", s["lab"].get<std::string>().c_str(), s["run_dir"].get<std::string>().c_str());
  std::printf("%-12s %-8s %-8s %-20s %s\n", "NODE", "STATE", "PID", "MAC", "ADDRESSES");
  for (const auto& n : s["nodes"]) {
    std::string addresses;
    for (const auto& a : n["addresses"]) addresses += (addresses.empty() ? "" : " ") + a.get<std::string>();
    std::string macs;
    for (const auto& nic : n["nics"]) macs += (macs.empty() ? "" : " ") + nic["mac"].get<std::string>();
    std::string state = n["state"].get<std::string>();
    if (n.contains("exit")) state += " (" + n["exit"].get<std::string>() + ")";
    std::printf("%-12s %-8s %-8d %-20s %s\n", n["name"].get<std::string>().c_str(), state.c_str(), n["pid"].get<int>(),
                macs.c_str(), addresses.c_str());
  }
  std::printf("\n%-32s %10s %10s %8s  %s\n", "LINK", "A->B", "B->A", "DROPPED", "CAPTURE");
  for (const auto& l : s["links"]) {
    std::printf("%-32s %10llu %10llu %8llu  %s\n", l["name"].get<std::string>().c_str(),
                static_cast<unsigned long long>(l["a_to_b"].get<uint64_t>()),
                static_cast<unsigned long long>(l["b_to_a"].get<uint64_t>()),
                static_cast<unsigned long long>(l["dropped"].get<uint64_t>()),
                l.contains("capture") ? l["capture"].get<std::string>().c_str() : "-");
  }
  return 0;
}

int cmd_down(const std::string& lab_name) {
  const std::string lab = pick_lab(lab_name);
  int fd = -1;
  const json status = request(lab, {{"cmd", "status"}})["status"];
  request(lab, {{"cmd", "down"}}, &fd);
  // The supervisor closes every connection when it has stopped.
  char byte;
  while (::read(fd, &byte, 1) > 0) {
  }
  ::close(fd);
  const fs::path control = run_root() / lab / "control.sock";
  for (int i = 0; i < 300 && fs::exists(control); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::printf("lab '%s' is down", lab.c_str());
  if (!status["captures"].is_null()) std::printf("; captures in %s", status["captures"].get<std::string>().c_str());
  std::printf("\n");
  return 0;
}

json find_node(const std::string& lab, const std::string& node) {
  const json s = request(lab, {{"cmd", "status"}})["status"];
  std::string names;
  for (const auto& n : s["nodes"]) {
    if (n["name"] == node) return n;
    names += (names.empty() ? "" : ", ") + n["name"].get<std::string>();
  }
  die(fmt::format("lab '{}' has no node '{}' (nodes: {})", lab, node, names), kInvalid);
}

int cmd_exec(const std::string& lab_name, const std::string& node_name, const std::vector<std::string>& words,
             int timeout_s) {
  const std::string lab = pick_lab(lab_name);
  const json node = find_node(lab, node_name);
  if (node["state"] != "ready") die(fmt::format("node '{}' is {}", node_name, node["state"].get<std::string>()));
  const int fd = connect_unix(node["command"].get<std::string>());
  if (fd < 0) die(fmt::format("node '{}': cannot connect to {}", node_name, node["command"].get<std::string>()));
  std::string command;
  for (const auto& w : words) command += (command.empty() ? "" : " ") + w;
  guest::CommandChannel channel([fd](std::string_view bytes) { (void)write_all(fd, bytes); },
                                static_cast<uint32_t>(::getpid()) * 1000u);
  std::thread reader([&channel, fd] {
    uint8_t buffer[4096];
    while (true) {
      const ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      channel.feed(std::span<const uint8_t>(buffer, static_cast<size_t>(n)));
    }
    channel.close();
  });
  int status = kFailed;
  if (!channel.wait_ready(std::chrono::seconds(10))) {
    std::fprintf(stderr, "twoostwo: node '%s': its agent did not answer\n", node_name.c_str());
  } else {
    auto result = channel.exec(
        command,
        [](std::string_view out) {
          std::fwrite(out.data(), 1, out.size(), stdout);
          std::fflush(stdout);
        },
        std::chrono::seconds(timeout_s));
    if (result) {
      status = *result;
    } else {
      std::fprintf(stderr, "twoostwo: node '%s': %s\n", node_name.c_str(), result.error().message.c_str());
    }
  }
  ::shutdown(fd, SHUT_RDWR);
  reader.join();
  ::close(fd);
  return status;
}

int cmd_console(const std::string& lab_name, const std::string& node_name) {
  const std::string lab = pick_lab(lab_name);
  const json node = find_node(lab, node_name);
  const int fd = connect_unix(node["console"].get<std::string>());
  if (fd < 0) die(fmt::format("node '{}': cannot connect to its console", node_name));
  const bool tty = ::isatty(0);
  termios saved{};
  if (tty) {
    ::tcgetattr(0, &saved);
    termios raw = saved;
    ::cfmakeraw(&raw);
    ::tcsetattr(0, TCSANOW, &raw);
    std::fprintf(stderr, "[console of %s; Ctrl-] detaches]\r\n", node_name.c_str());
  }
  pollfd fds[2] = {{0, POLLIN, 0}, {fd, POLLIN, 0}};
  char buffer[4096];
  bool done = false;
  while (!done && ::poll(fds, 2, -1) >= 0) {
    if (fds[0].revents & (POLLIN | POLLHUP)) {
      const ssize_t n = ::read(0, buffer, sizeof buffer);
      if (n <= 0) break;
      for (ssize_t i = 0; i < n; ++i) {
        if (buffer[i] == 0x1d) done = true;  // Ctrl-]
      }
      if (!done && !write_all(fd, std::string_view(buffer, static_cast<size_t>(n)))) break;
    }
    if (fds[1].revents & (POLLIN | POLLHUP)) {
      const ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n <= 0) break;
      (void)write_all(1, std::string_view(buffer, static_cast<size_t>(n)));
    }
  }
  if (tty) {
    ::tcsetattr(0, TCSANOW, &saved);
    std::fprintf(stderr, "\n[detached from %s]\n", node_name.c_str());
  }
  ::close(fd);
  return 0;
}

int cmd_capture(const std::string& lab_name, const std::string& link) {
  const std::string lab = pick_lab(lab_name);
  int fd = -1;
  request(lab, {{"cmd", "capture"}, {"link", link}}, &fd);
  ::signal(SIGPIPE, SIG_IGN);
  char buffer[65536];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (!write_all(1, std::string_view(buffer, static_cast<size_t>(n)))) break;  // the reader went away
  }
  ::close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "twoostwo: network labs of x86 VMs with NE2000-family cards on a virtual Ethernet fabric.\n"
      "A lab is a YAML topology file (docs/topology.md); `up` starts it under a supervisor.\n"
      "Exit status: 0 success, 1 failure, 2 bad usage or invalid topology; `exec` passes the command's status on."};
  app.require_subcommand(1);
  std::string lab_name;

  auto* validate = app.add_subcommand("validate", "check topology files and report every problem as file:line:col");
  std::vector<std::string> files;
  validate->add_option("FILE", files, "topology files")->required();

  auto* up = app.add_subcommand("up", "start a lab (the built-in default lab without FILE) and wait until every guest is ready");
  std::optional<std::string> up_file;
  bool foreground = false;
  int timeout = 300;
  up->add_option("FILE", up_file, "topology file");
  up->add_flag("--foreground", foreground, "stay attached: print progress, stop the lab on Ctrl-C or SIGTERM");
  up->add_option("--timeout", timeout, "seconds every guest gets to become ready")->capture_default_str();
  pid_t owner_pid = 0;
  up->add_option("--owner-pid", owner_pid,
                 "bring the lab down when process PID ends, however it ends (for scripts and test harnesses that "
                 "must not leave a lab running when they are killed)")
      ->check(CLI::PositiveNumber);

  auto* status = app.add_subcommand("status", "nodes, states, addresses, links, frame counters and capture files");
  bool as_json = false;
  status->add_flag("--json", as_json, "print the supervisor's status as JSON");
  status->add_option("--lab", lab_name, "the lab (default: the only one running)");

  auto* down = app.add_subcommand("down", "stop a lab: every monitor, the fabric; captures are complete afterwards");
  down->add_option("--lab", lab_name, "the lab (default: the only one running)");

  auto* exec = app.add_subcommand("exec", "run a shell command in a node's guest; its exit status is passed on");
  std::string node;
  std::vector<std::string> words;
  int exec_timeout = 600;
  exec->add_option("--lab", lab_name, "the lab (default: the only one running)");
  exec->add_option("--timeout", exec_timeout, "seconds the command may take")->capture_default_str();
  exec->add_option("NODE", node, "node name")->required();
  exec->add_option("COMMAND", words, "the command (after --)")->required();

  auto* console = app.add_subcommand("console", "attach to a node's serial console (Ctrl-] detaches)");
  console->add_option("--lab", lab_name, "the lab (default: the only one running)");
  console->add_option("NODE", node, "node name")->required();

  auto* capture = app.add_subcommand("capture", "stream a link as pcap to stdout (e.g. | wireshark -k -i -)");
  std::string link;
  capture->add_option("--lab", lab_name, "the lab (default: the only one running)");
  capture->add_option("LINK", link, "link name, as `status` lists it")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kInvalid;
  }
  if (validate->parsed()) return cmd_validate(files);
  if (up->parsed()) return cmd_up(up_file, foreground, timeout, owner_pid);
  if (status->parsed()) return cmd_status(lab_name, as_json);
  if (down->parsed()) return cmd_down(lab_name);
  if (exec->parsed()) return cmd_exec(lab_name, node, words, exec_timeout);
  if (console->parsed()) return cmd_console(lab_name, node);
  if (capture->parsed()) {
    if (::isatty(1)) die("refusing to write pcap to a terminal: redirect it (> file.pcap) or pipe it (| wireshark -k -i -)", kInvalid);
    return cmd_capture(lab_name, link);
  }
  return kInvalid;
}
