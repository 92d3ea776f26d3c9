#include "topology/lab.h"

#include <fmt/format.h>

#include <algorithm>

#include "topology/diagnostic.h"

namespace twoostwo::topology {

std::string_view to_string(CpuEngine engine) {
  switch (engine) {
    case CpuEngine::kAuto: return "auto";
    case CpuEngine::kKvm: return "kvm";
    case CpuEngine::kEmulator: return "emulator";
  }
  return "auto";
}

std::string_view to_string(NicModel model) { return model == NicModel::kNe2000 ? "ne2000" : "rtl8029"; }

const Nic* Node::find_nic(std::string_view nic_name) const {
  const auto it = std::find_if(nics.begin(), nics.end(), [&](const Nic& n) { return n.name == nic_name; });
  return it == nics.end() ? nullptr : &*it;
}

bool PortVlans::carries(uint16_t v) const {
  if (mode == Mode::kAccess) return v == vlan;
  if (native == v) return true;
  return all || std::find(allowed.begin(), allowed.end(), v) != allowed.end();
}

const SwitchPort* Switch::find_port(std::string_view port_name) const {
  const auto it = std::find_if(ports.begin(), ports.end(), [&](const SwitchPort& p) { return p.name == port_name; });
  return it == ports.end() ? nullptr : &*it;
}

std::string UdpAddress::to_string() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

std::string Endpoint::to_string() const {
  switch (kind) {
    case Kind::kNic:
    case Kind::kSwitchPort: return fmt::format("{}:{}", name, sub);
    case Kind::kBridge: return fmt::format("bridge:{}", name);
    case Kind::kUdp: return fmt::format("udp:{}", remote.to_string());
  }
  return text;
}

const Node* Lab::find_node(std::string_view node_name) const {
  const auto it = std::find_if(nodes.begin(), nodes.end(), [&](const Node& n) { return n.name == node_name; });
  return it == nodes.end() ? nullptr : &*it;
}

const Switch* Lab::find_switch(std::string_view switch_name) const {
  const auto it =
      std::find_if(switches.begin(), switches.end(), [&](const Switch& s) { return s.name == switch_name; });
  return it == switches.end() ? nullptr : &*it;
}

std::string Diagnostic::to_string() const {
  if (!pos.known()) return fmt::format("{}: {}", file, message);
  return fmt::format("{}:{}:{}: {}", file, pos.line, pos.column, message);
}

std::string to_string(const Diagnostics& diagnostics) {
  std::string out;
  for (const auto& d : diagnostics) {
    out += d.to_string();
    out += '\n';
  }
  return out;
}

}  // namespace twoostwo::topology
