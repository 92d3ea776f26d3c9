// The lab supervisor (DESIGN.md, "Processes"): one process per running lab
// that owns the fabric (switch/), the captures and bridges (captures/), and
// one twoostwo-vmm child per node. It talks to the monitors only through
// processes, file descriptors and sockets: each NIC is one end of a
// SOCK_SEQPACKET socketpair handed to the monitor as fd 3, 4, …; readiness
// is the guest agent's "@@twoostwo ready NAME" line on the node's command
// socket (guest/README.md, "Command channel").
//
// The run directory of a lab holds everything the other commands need:
//
//   <run_dir>/control.sock         the control socket (one JSON object per line)
//   <run_dir>/supervisor.log       what the supervisor reported
//   <run_dir>/nodes/<node>/        node.conf, monitor.log, console.log,
//                                  console.sock (COM1), com2.sock (agent)
//
// Control protocol: a client connects, writes one request line, reads one
// answer line ({"ok":true,…} or {"ok":false,"error":"…"}):
//   {"cmd":"status"}               → {"ok":true,"status":{…}} (see status())
//   {"cmd":"down"}                 → {"ok":true}; then the lab stops
//   {"cmd":"capture","link":NAME}  → {"ok":true}, then the connection carries
//                                    a live pcap stream of the link until the
//                                    client closes it or the lab stops
//
// A monitor that exits is reported (progress line, status) and its ports go
// down; nothing is restarted and the rest of the lab keeps running. stop()
// ends every monitor (SIGTERM, then SIGKILL after 5 s), then closes the
// captures, so they are complete.
//
// Everything runs on the io_context's thread.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "captures/capture_set.h"
#include "captures/live_capture.h"
#include "switch/fabric.h"
#include "topology/lab.h"

namespace twoostwo::topology {

struct SupervisorOptions {
  /// The twoostwo-vmm executable.
  std::filesystem::path vmm;
  /// The lab's run directory (made if missing).
  std::filesystem::path run_dir;
  /// How long every guest gets to become ready.
  std::chrono::seconds ready_timeout{300};
  /// Where progress lines go ("alice: ready (3.9 s)"), besides supervisor.log.
  std::function<void(const std::string&)> progress;
  /// Called once: true when every node is ready, false with a reason when a
  /// node failed to start or the timeout passed.
  std::function<void(bool ok, const std::string& why)> on_started;
  /// Called once when stop() has finished (every monitor gone, captures closed).
  std::function<void()> on_stopped;
};

class Supervisor {
 public:
  /// A node's monitor, as status() reports it.
  enum class NodeState { kStarting, kReady, kExited };

  Supervisor(boost::asio::io_context& io, Lab lab, SupervisorOptions options);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  /// Build the fabric (switches with their VLAN modes, one seqpacket port per
  /// NIC, UDP tunnel ports, bridges), start the captures, listen on the
  /// control socket and start every monitor. Errors: the run directory, a
  /// bridge's adapter (missing, no CAP_NET_RAW), a UDP address, a capture
  /// file, spawning twoostwo-vmm — each message names what failed.
  fabric::Result<void> start();

  /// Stop the lab (see above); on_stopped is called when done.
  void stop();

  /// {"lab":…, "run_dir":…, "captures":dir|null, "nodes":[{"name","state",
  /// "pid","exit_status","addresses":[…],"nics":[{"name","mac","port"}],
  /// "console","command"}], "links":[{"name","a","b","a_to_b","b_to_a",
  /// "dropped","capture"}], "switches":[{"name","ports":[…]}]}.
  nlohmann::json status() const;

  const Lab& lab() const { return lab_; }

 private:
  struct NodeRun;
  struct ControlClient;

  fabric::Result<void> build_fabric();
  fabric::Result<void> spawn(NodeRun& node);
  void watch_ready(NodeRun& node);
  void read_agent_line(NodeRun& node);
  void on_child_exit();
  void reaped(pid_t pid, int status);
  void check_started();
  void accept_control();
  void handle_request(const std::shared_ptr<ControlClient>& client, const std::string& line);
  void report(const std::string& line);
  void finish_stop();

  boost::asio::io_context& io_;
  Lab lab_;
  SupervisorOptions options_;
  fabric::Fabric fabric_;
  std::unique_ptr<captures::CaptureSet> captures_;
  std::vector<std::unique_ptr<captures::LiveCapture>> live_;
  std::vector<std::unique_ptr<NodeRun>> nodes_;
  boost::asio::signal_set sigchld_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> control_;
  boost::asio::steady_timer ready_deadline_, kill_timer_;
  std::chrono::steady_clock::time_point started_at_;
  bool start_reported_ = false, stopping_ = false, stopped_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace twoostwo::topology
