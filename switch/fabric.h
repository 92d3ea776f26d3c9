// The fabric: every switch, port and link of one lab, on one Boost.Asio event
// loop (DESIGN.md: "fabric (switch::Fabric on a Boost.Asio io_context)").
//
// The Fabric owns what it creates and looks things up by name; names are
// unique per kind. All calls, and every frame, happen on the thread running
// the io_context; nothing locks. Captures (captures/) and bridges attach from
// outside through Port, Link and Tap: the fabric knows nothing of pcap.
#pragma once

#include <boost/asio/io_context.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "switch/learning_switch.h"
#include "switch/link.h"
#include "switch/port.h"
#include "switch/socket_port.h"

namespace twoostwo::fabric {

class Fabric {
 public:
  explicit Fabric(boost::asio::io_context& io) : io_(io) {}
  ~Fabric();
  Fabric(const Fabric&) = delete;
  Fabric& operator=(const Fabric&) = delete;

  boost::asio::io_context& io() const { return io_; }

  /// A new switch. Errors: the name is taken.
  Result<LearningSwitch*> add_switch(const std::string& name, LearningSwitch::Options options = {});
  /// A port on a new SOCK_SEQPACKET socketpair (for a monitor's NIC; hand it
  /// SocketPort::take_peer_fd()). Errors: the name is taken, socketpair fails.
  Result<SocketPort*> add_seqpacket_port(const std::string& name, SocketPort::Options options = {});
  /// A UDP tunnel port (see SocketPort::udp). Errors: the name is taken, bad
  /// addresses, bind failure.
  Result<SocketPort*> add_udp_port(const std::string& name, const std::string& local, const std::string& remote,
                                   SocketPort::Options options = {});
  /// Adopt a port made elsewhere (a captures::PcapBridge). Errors: the name
  /// is taken (by any port, switch ports included).
  Result<Port*> add_port(std::unique_ptr<Port> port);

  /// Connect two ports with a new link. Errors: the link name is taken, a
  /// port is already on a link, or both are the same port.
  Result<Link*> connect(const std::string& link_name, Port& a, Port& b);

  /// Look-ups by name; nullptr if absent. find_port also finds switch ports
  /// ("sw1:3").
  LearningSwitch* find_switch(const std::string& name) const;
  Port* find_port(const std::string& name) const;
  Link* find_link(const std::string& name) const;

  /// In creation order.
  std::vector<LearningSwitch*> switches() const;
  std::vector<Port*> ports() const;  // standalone ports, then each switch's ports
  std::vector<Link*> links() const;

 private:
  bool port_name_taken(const std::string& name) const;

  boost::asio::io_context& io_;
  // Destruction order matters: links detach ports, so they go first.
  std::vector<std::unique_ptr<LearningSwitch>> switches_;
  std::vector<std::unique_ptr<Port>> ports_;
  std::vector<std::unique_ptr<Link>> links_;
};

}  // namespace twoostwo::fabric
