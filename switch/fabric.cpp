#include "switch/fabric.h"

#include <fmt/format.h>

namespace twoostwo::fabric {

Fabric::~Fabric() {
  // Links refer to ports; ports of switches refer to their switch.
  links_.clear();
  ports_.clear();
  switches_.clear();
}

bool Fabric::port_name_taken(const std::string& name) const { return find_port(name) != nullptr; }

Result<LearningSwitch*> Fabric::add_switch(const std::string& name, LearningSwitch::Options options) {
  if (find_switch(name) != nullptr) return fail(fmt::format("switch '{}' already exists", name));
  switches_.push_back(std::make_unique<LearningSwitch>(name, std::move(options)));
  return switches_.back().get();
}

Result<SocketPort*> Fabric::add_seqpacket_port(const std::string& name, SocketPort::Options options) {
  if (port_name_taken(name)) return fail(fmt::format("port '{}' already exists", name));
  auto port = SocketPort::seqpacket_pair(io_, name, options);
  if (!port) return std::unexpected(port.error());
  ports_.push_back(std::move(*port));
  return static_cast<SocketPort*>(ports_.back().get());
}

Result<SocketPort*> Fabric::add_udp_port(const std::string& name, const std::string& local,
                                         const std::string& remote, SocketPort::Options options) {
  if (port_name_taken(name)) return fail(fmt::format("port '{}' already exists", name));
  auto port = SocketPort::udp(io_, name, local, remote, options);
  if (!port) return std::unexpected(port.error());
  ports_.push_back(std::move(*port));
  return static_cast<SocketPort*>(ports_.back().get());
}

Result<Port*> Fabric::add_port(std::unique_ptr<Port> port) {
  if (!port) return fail("add_port: no port");
  if (port_name_taken(port->name())) return fail(fmt::format("port '{}' already exists", port->name()));
  ports_.push_back(std::move(port));
  return ports_.back().get();
}

Result<Link*> Fabric::connect(const std::string& link_name, Port& a, Port& b) {
  if (find_link(link_name) != nullptr) return fail(fmt::format("link '{}' already exists", link_name));
  auto link = Link::connect(link_name, a, b);
  if (!link) return std::unexpected(link.error());
  links_.push_back(std::move(*link));
  return links_.back().get();
}

LearningSwitch* Fabric::find_switch(const std::string& name) const {
  for (const auto& s : switches_) {
    if (s->name() == name) return s.get();
  }
  return nullptr;
}

Port* Fabric::find_port(const std::string& name) const {
  for (const auto& p : ports_) {
    if (p->name() == name) return p.get();
  }
  for (const auto& s : switches_) {
    for (const auto& p : s->ports()) {
      if (p->name() == name) return p.get();
    }
  }
  return nullptr;
}

Link* Fabric::find_link(const std::string& name) const {
  for (const auto& l : links_) {
    if (l->name() == name) return l.get();
  }
  return nullptr;
}

std::vector<LearningSwitch*> Fabric::switches() const {
  std::vector<LearningSwitch*> out;
  for (const auto& s : switches_) out.push_back(s.get());
  return out;
}

std::vector<Port*> Fabric::ports() const {
  std::vector<Port*> out;
  for (const auto& p : ports_) out.push_back(p.get());
  for (const auto& s : switches_) {
    for (const auto& p : s->ports()) out.push_back(p.get());
  }
  return out;
}

std::vector<Link*> Fabric::links() const {
  std::vector<Link*> out;
  for (const auto& l : links_) out.push_back(l.get());
  return out;
}

}  // namespace twoostwo::fabric
