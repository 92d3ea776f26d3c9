#include "topology/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "captures/pcap_bridge.h"
#include "topology/planner.h"

extern char** environ;

namespace twoostwo::topology {

namespace fs = std::filesystem;
using boost::asio::local::stream_protocol;

namespace {

const char* state_name(Supervisor::NodeState s) {
  switch (s) {
    case Supervisor::NodeState::kStarting: return "starting";
    case Supervisor::NodeState::kReady: return "ready";
    case Supervisor::NodeState::kExited: return "exited";
  }
  return "?";
}

fabric::VlanMode vlan_mode(const PortVlans& v) {
  if (v.mode == PortVlans::Mode::kAccess) return fabric::VlanMode::access(v.vlan);
  return fabric::VlanMode::trunk(v.all ? std::vector<uint16_t>{} : v.allowed, v.native);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
  return "ended";
}

}  // namespace

struct Supervisor::NodeRun {
  const Node* node = nullptr;
  fs::path dir;
  pid_t pid = -1;
  NodeState state = NodeState::kStarting;
  int exit_status = -1;  // as waitpid gives it
  std::vector<fabric::SocketPort*> nic_ports;  // index = NIC index
  std::unique_ptr<stream_protocol::socket> agent;
  boost::asio::streambuf agent_buffer;
  std::unique_ptr<boost::asio::steady_timer> poll;
  std::chrono::steady_clock::time_point spawned;
};

struct Supervisor::ControlClient {
  explicit ControlClient(boost::asio::io_context& io) : socket(io) {}
  stream_protocol::socket socket;
  boost::asio::streambuf buffer;
  std::string answer;
};

Supervisor::Supervisor(boost::asio::io_context& io, Lab lab, SupervisorOptions options)
    : io_(io),
      lab_(std::move(lab)),
      options_(std::move(options)),
      fabric_(io),
      sigchld_(io, SIGCHLD),
      ready_deadline_(io),
      kill_timer_(io) {}

Supervisor::~Supervisor() {
  *alive_ = false;
  for (auto& n : nodes_) {
    if (n->pid > 0 && n->state != NodeState::kExited) {
      ::kill(n->pid, SIGKILL);
      ::waitpid(n->pid, nullptr, 0);
    }
  }
  live_.clear();
  if (captures_) (void)captures_->stop();
  captures_.reset();
  if (control_) {
    boost::system::error_code ec;
    control_->close(ec);
    std::error_code fec;
    fs::remove(options_.run_dir / "control.sock", fec);
  }
}

void Supervisor::report(const std::string& line) {
  if (std::ofstream log{options_.run_dir / "supervisor.log", std::ios::app}) log << line << '\n';
  if (options_.progress) options_.progress(line);
}

fabric::Result<void> Supervisor::build_fabric() {
  for (const Switch& s : lab_.switches) {
    auto sw = fabric_.add_switch(s.name);
    if (!sw) return std::unexpected(sw.error());
    for (const SwitchPort& p : s.ports) {
      auto port = (*sw)->add_port(p.name, vlan_mode(p.vlans));
      if (!port) return std::unexpected(port.error());
    }
  }
  // One seqpacket port per NIC: the monitor gets the other end.
  for (auto& run : nodes_) {
    for (const Nic& nic : run->node->nics) {
      auto port = fabric_.add_seqpacket_port(run->node->name + ":" + nic.name);
      if (!port) return std::unexpected(port.error());
      run->nic_ports.push_back(*port);
    }
  }
  // Captures: started on the fabric before any link exists, so that only
  // the links the file wants captured (capture: true, the default) get files.
  if (lab_.captures) {
    auto set = captures::CaptureSet::start(fabric_, *lab_.captures);
    if (!set) return std::unexpected(set.error());
    captures_ = std::move(*set);
  }
  for (const Link& link : lab_.links) {
    fabric::Port* ends[2] = {nullptr, nullptr};
    for (size_t i = 0; i < 2; ++i) {
      const Endpoint& e = link.ends[i];
      switch (e.kind) {
        case Endpoint::Kind::kNic:         // "alice:eth0", made above
        case Endpoint::Kind::kSwitchPort:  // "sw1:p1", made with its switch
          ends[i] = fabric_.find_port(e.name + ":" + e.sub);
          break;
        case Endpoint::Kind::kBridge: {
          auto bridge = captures::PcapBridge::open(io_, "bridge:" + e.name, e.name);
          if (!bridge) return fabric::fail(fmt::format("link '{}': {}", link.name, bridge.error().message));
          auto port = fabric_.add_port(std::move(*bridge));
          if (!port) return std::unexpected(port.error());
          ends[i] = *port;
          break;
        }
        case Endpoint::Kind::kUdp: {
          const std::string local = link.local ? link.local->to_string() : "127.0.0.1:0";
          auto port = fabric_.add_udp_port(fmt::format("udp:{}#{}", e.remote.to_string(), link.number), local,
                                           e.remote.to_string());
          if (!port) return fabric::fail(fmt::format("link '{}': {}", link.name, port.error().message));
          ends[i] = *port;
          break;
        }
      }
      if (ends[i] == nullptr) return fabric::fail(fmt::format("link '{}': no port for '{}'", link.name, e.to_string()));
    }
    auto made = fabric_.connect(link.name, *ends[0], *ends[1]);
    if (!made) return std::unexpected(made.error());
    if (captures_ && link.capture) {
      if (auto added = captures_->add(**made); !added) return std::unexpected(added.error());
    }
  }
  return {};
}

fabric::Result<void> Supervisor::start() {
  std::error_code ec;
  fs::create_directories(options_.run_dir / "nodes", ec);
  if (ec) return fabric::fail(fmt::format("run directory '{}': {}", options_.run_dir.string(), ec.message()));
  fs::remove(options_.run_dir / "supervisor.log", ec);
  started_at_ = std::chrono::steady_clock::now();
  for (const Node& node : lab_.nodes) {
    auto run = std::make_unique<NodeRun>();
    run->node = &node;
    run->dir = options_.run_dir / "nodes" / node.name;
    fs::create_directories(run->dir, ec);
    if (ec) return fabric::fail(fmt::format("node '{}': {}: {}", node.name, run->dir.string(), ec.message()));
    nodes_.push_back(std::move(run));
  }
  if (auto built = build_fabric(); !built) return built;

  // The control socket. Bound under a temporary name and renamed once it
  // listens, so that its file appears only when it accepts connections
  // (`twoostwo` finds labs by it; as Console::listen in the monitor).
  const fs::path control = options_.run_dir / "control.sock";
  const fs::path temporary = options_.run_dir / "control.sock~";
  fs::remove(control, ec);
  fs::remove(temporary, ec);
  control_ = std::make_unique<stream_protocol::acceptor>(io_);
  boost::system::error_code bec;
  control_->open(stream_protocol(), bec);
  if (!bec) control_->bind(stream_protocol::endpoint(temporary.string()), bec);
  if (!bec) control_->listen(16, bec);
  if (!bec && ::rename(temporary.c_str(), control.c_str()) != 0) {
    bec = boost::system::error_code(errno, boost::system::system_category());
  }
  if (bec) {
    fs::remove(temporary, ec);
    return fabric::fail(fmt::format("control socket '{}': {}", control.string(), bec.message()));
  }
  accept_control();

  sigchld_.async_wait([this, alive = alive_](const boost::system::error_code& e, int) {
    if (!e && *alive) on_child_exit();
  });
  for (auto& run : nodes_) {
    if (auto spawned = spawn(*run); !spawned) return spawned;
    report(fmt::format("{}: starting (pid {})", run->node->name, run->pid));
    watch_ready(*run);
  }
  ready_deadline_.expires_after(options_.ready_timeout);
  ready_deadline_.async_wait([this, alive = alive_](const boost::system::error_code& e) {
    if (e || !*alive || start_reported_) return;
    std::string late;
    for (auto& n : nodes_) {
      if (n->state == NodeState::kStarting) late += (late.empty() ? "" : ", ") + n->node->name;
    }
    start_reported_ = true;
    if (options_.on_started) {
      options_.on_started(false, fmt::format("not ready after {} s: {}", options_.ready_timeout.count(), late));
    }
  });
  return {};
}

fabric::Result<void> Supervisor::spawn(NodeRun& run) {
  const Node& node = *run.node;
  {
    std::ofstream conf(run.dir / "node.conf");
    conf << node_conf(lab_, node);
    if (!conf) return fabric::fail(fmt::format("node '{}': cannot write {}", node.name, (run.dir / "node.conf").string()));
  }
  std::vector<std::string> args = {options_.vmm.string(),
                                   "--name", node.name,
                                   "--kernel", node.image.kernel.string(),
                                   "--initrd", node.image.initrd.string(),
                                   "--node-config", (run.dir / "node.conf").string(),
                                   "--memory", std::to_string(node.memory_mib),
                                   "--cpu-engine", std::string(to_string(node.cpu_engine)),
                                   "--console-log", (run.dir / "console.log").string(),
                                   "--console-socket", (run.dir / "console.sock").string(),
                                   "--command-socket", (run.dir / "com2.sock").string(),
                                   "-q"};
  if (node.image.cmdline) {
    args.push_back("--cmdline");
    args.push_back(*node.image.cmdline);
  }
  if (node.timer_slack_ms) {
    args.push_back("--timer-slack");
    args.push_back(std::to_string(*node.timer_slack_ms));
  }
  // Monitor ends of the NICs' socketpairs, moved to fd 3, 4, … in the child.
  std::vector<int> fds;
  for (size_t i = 0; i < node.nics.size(); ++i) {
    const int fd = run.nic_ports[i]->take_peer_fd();
    // Above any number the dup2s below use, so none overwrites another.
    const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, 64);
    ::close(fd);
    fds.push_back(high);
    args.push_back("--nic");
    args.push_back(fmt::format("{},backend=fd,fd={}", nic_spec(node.nics[i]), 3 + i));
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string log = (run.dir / "monitor.log").string();
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  for (size_t i = 0; i < fds.size(); ++i) posix_spawn_file_actions_adddup2(&actions, fds[i], static_cast<int>(3 + i));
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The monitor gets its own process group: ^C on the supervisor's terminal
  // (--foreground) reaches the supervisor, which stops monitors in order.
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  const int rc = ::posix_spawn(&run.pid, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  for (int fd : fds) ::close(fd);
  if (rc != 0) {
    run.pid = -1;
    run.state = NodeState::kExited;
    return fabric::fail(fmt::format("node '{}': cannot start {}: {}", node.name, options_.vmm.string(), std::strerror(rc)));
  }
  run.spawned = std::chrono::steady_clock::now();
  return {};
}

// Wait for the command socket to appear, connect, and read lines until the
// agent's "@@twoostwo ready NAME" (the socket replays the last 64 KiB, so a
// late connection still sees it).
void Supervisor::watch_ready(NodeRun& run) {
  if (!run.poll) run.poll = std::make_unique<boost::asio::steady_timer>(io_);
  run.poll->expires_after(std::chrono::milliseconds(50));
  run.poll->async_wait([this, &run, alive = alive_](const boost::system::error_code& e) {
    if (e || !*alive || run.state != NodeState::kStarting) return;
    const fs::path sock = run.dir / "com2.sock";
    boost::system::error_code ec;
    if (!fs::exists(sock)) return watch_ready(run);
    run.agent = std::make_unique<stream_protocol::socket>(io_);
    run.agent->connect(stream_protocol::endpoint(sock.string()), ec);
    if (ec) return watch_ready(run);
    read_agent_line(run);
  });
}

void Supervisor::read_agent_line(NodeRun& run) {
  boost::asio::async_read_until(
      *run.agent, run.agent_buffer, '\n', [this, &run, alive = alive_](const boost::system::error_code& e, size_t) {
        if (e || !*alive || run.state != NodeState::kStarting) return;
        std::istream in(&run.agent_buffer);
        std::string line;
        std::getline(in, line);
        if (line.rfind("@@twoostwo ready ", 0) != 0) return read_agent_line(run);
        run.state = NodeState::kReady;
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - run.spawned).count();
        report(fmt::format("{}: ready ({:.1f} s)", run.node->name, seconds));
        boost::system::error_code ignored;
        run.agent->close(ignored);
        check_started();
      });
}

void Supervisor::check_started() {
  if (start_reported_) return;
  for (auto& n : nodes_) {
    if (n->state != NodeState::kReady) return;
  }
  start_reported_ = true;
  ready_deadline_.cancel();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
  report(fmt::format("lab '{}': {} node{} ready in {:.1f} s", lab_.name, nodes_.size(), nodes_.size() == 1 ? "" : "s",
                     seconds));
  if (options_.on_started) options_.on_started(true, "");
}

void Supervisor::on_child_exit() {
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    reaped(pid, status);
  }
  sigchld_.async_wait([this, alive = alive_](const boost::system::error_code& e, int) {
    if (!e && *alive) on_child_exit();
  });
}

void Supervisor::reaped(pid_t pid, int status) {
  for (auto& n : nodes_) {
    if (n->pid != pid) continue;
    const bool was_starting = n->state == NodeState::kStarting;
    n->state = NodeState::kExited;
    n->exit_status = status;
    for (fabric::SocketPort* port : n->nic_ports) port->set_up(false);
    if (!stopping_) {
      report(fmt::format("{}: monitor {} ({}); see {}", n->node->name, describe_status(status),
                         was_starting ? "before its guest was ready" : "the rest of the lab keeps running",
                         (n->dir / "monitor.log").string()));
      if (was_starting && !start_reported_) {
        start_reported_ = true;
        if (options_.on_started) {
          options_.on_started(false, fmt::format("node '{}': monitor {} before its guest was ready (see {})",
                                                 n->node->name, describe_status(status),
                                                 (n->dir / "monitor.log").string()));
        }
      }
    }
  }
  if (stopping_) finish_stop();
}

void Supervisor::stop() {
  if (stopping_) return;
  stopping_ = true;
  ready_deadline_.cancel();
  for (auto& n : nodes_) {
    if (n->pid > 0 && n->state != NodeState::kExited) ::kill(n->pid, SIGTERM);
  }
  kill_timer_.expires_after(std::chrono::seconds(5));
  kill_timer_.async_wait([this, alive = alive_](const boost::system::error_code& e) {
    if (e || !*alive) return;
    for (auto& n : nodes_) {
      if (n->pid > 0 && n->state != NodeState::kExited) ::kill(n->pid, SIGKILL);
    }
  });
  finish_stop();
}

void Supervisor::finish_stop() {
  if (stopped_) return;
  for (auto& n : nodes_) {
    if (n->pid > 0 && n->state != NodeState::kExited) return;  // SIGCHLD brings us back
  }
  stopped_ = true;
  kill_timer_.cancel();
  for (auto& l : live_) l->stop();
  live_.clear();
  if (captures_) {
    if (auto closed = captures_->stop(); !closed) report("captures: " + closed.error().message);
  }
  boost::system::error_code ec;
  sigchld_.cancel(ec);
  if (control_) control_->close(ec);
  std::error_code fec;
  fs::remove(options_.run_dir / "control.sock", fec);
  report(fmt::format("lab '{}': stopped", lab_.name));
  if (options_.on_stopped) options_.on_stopped();
}

void Supervisor::accept_control() {
  auto client = std::make_shared<ControlClient>(io_);
  control_->async_accept(client->socket, [this, client, alive = alive_](const boost::system::error_code& e) {
    if (e || !*alive) return;
    boost::asio::async_read_until(client->socket, client->buffer, '\n',
                                  [this, client, alive](const boost::system::error_code& re, size_t) {
                                    if (re || !*alive) return;
                                    std::istream in(&client->buffer);
                                    std::string line;
                                    std::getline(in, line);
                                    handle_request(client, line);
                                  });
    if (!stopped_) accept_control();
  });
}

void Supervisor::handle_request(const std::shared_ptr<ControlClient>& client, const std::string& line) {
  nlohmann::json answer;
  bool then_stop = false;
  fabric::Link* capture_link = nullptr;
  try {
    const auto request = nlohmann::json::parse(line);
    const std::string cmd = request.value("cmd", "");
    if (cmd == "status") {
      answer = {{"ok", true}, {"status", status()}};
    } else if (cmd == "down") {
      answer = {{"ok", true}};
      then_stop = true;
    } else if (cmd == "capture") {
      const std::string name = request.value("link", "");
      capture_link = fabric_.find_link(name);
      if (capture_link == nullptr) {
        std::string known;
        for (const Link& l : lab_.links) known += (known.empty() ? "" : ", ") + l.name;
        answer = {{"ok", false}, {"error", fmt::format("no link '{}' (links: {})", name, known)}};
      } else {
        answer = {{"ok", true}};
      }
    } else {
      answer = {{"ok", false}, {"error", fmt::format("unknown command '{}' (status, down, capture)", cmd)}};
    }
  } catch (const nlohmann::json::exception& e) {
    answer = {{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
  }
  client->answer = answer.dump() + "\n";
  boost::asio::async_write(
      client->socket, boost::asio::buffer(client->answer),
      [this, client, then_stop, capture_link, alive = alive_](const boost::system::error_code& e, size_t) {
        if (!*alive) return;
        if (!e && capture_link != nullptr && !stopping_) {
          // The connection becomes the capture's stream.
          const int fd = ::dup(client->socket.native_handle());
          boost::system::error_code ignored;
          client->socket.close(ignored);
          // A capture whose reader goes away stops itself; it stays in live_
          // (stopped, its descriptor closed) until the lab stops.
          auto live = captures::LiveCapture::start(io_, captures::TapPoint(*capture_link), fd);
          if (live) {
            live_.push_back(std::move(*live));
          } else {
            report("capture: " + live.error().message);
          }
        }
        if (then_stop) stop();
      });
}

nlohmann::json Supervisor::status() const {
  nlohmann::json nodes = nlohmann::json::array();
  for (const auto& n : nodes_) {
    nlohmann::json nics = nlohmann::json::array();
    nlohmann::json addresses = nlohmann::json::array();
    for (size_t i = 0; i < n->node->nics.size(); ++i) {
      const Nic& nic = n->node->nics[i];
      const auto& c = n->nic_ports[i]->counters();
      nics.push_back({{"name", nic.name},
                      {"model", std::string(to_string(nic.model))},
                      {"mac", format_mac(nic.mac)},
                      {"frames_sent", c.tx_frames},
                      {"frames_received", c.rx_frames}});
      for (const Cidr& a : nic.addresses) addresses.push_back(format_cidr(a));
    }
    nlohmann::json node = {{"name", n->node->name},
                           {"state", state_name(n->state)},
                           {"pid", n->pid},
                           {"addresses", addresses},
                           {"nics", nics},
                           {"console", (n->dir / "console.sock").string()},
                           {"command", (n->dir / "com2.sock").string()},
                           {"log", (n->dir / "monitor.log").string()}};
    if (n->state == NodeState::kExited) node["exit"] = describe_status(n->exit_status);
    nodes.push_back(node);
  }
  nlohmann::json links = nlohmann::json::array();
  for (const fabric::Link* l : fabric_.links()) {
    nlohmann::json link = {{"name", l->name()},
                           {"a", l->a().name()},
                           {"b", l->b().name()},
                           {"a_to_b", l->counters().a_to_b_frames},
                           {"b_to_a", l->counters().b_to_a_frames},
                           {"dropped", l->counters().dropped}};
    if (captures_) {
      if (auto path = captures_->path_of(l->name())) link["capture"] = path->string();
    }
    links.push_back(link);
  }
  nlohmann::json switches = nlohmann::json::array();
  for (const fabric::LearningSwitch* s : fabric_.switches()) {
    switches.push_back({{"name", s->name()},
                        {"ports", s->ports().size()},
                        {"learned", s->mac_table().size()},
                        {"forwarded", s->counters().forwarded},
                        {"flooded", s->counters().flooded}});
  }
  return {{"lab", lab_.name},
          {"file", lab_.file.string()},
          {"run_dir", options_.run_dir.string()},
          {"captures", lab_.captures ? nlohmann::json(lab_.captures->string()) : nlohmann::json(nullptr)},
          {"nodes", nodes},
          {"links", links},
          {"switches", switches}};
}

}  // namespace twoostwo::topology
