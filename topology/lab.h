// The lab model: what a topology file (docs/topology.md) describes, as plain
// values. topology/loader.h builds it from YAML and checks it; the planner
// (topology/planner.h) derives what the supervisor needs from it (node.conf
// texts, the monitors' --nic specs, L2 segments).
//
// A Lab that load_lab() returned is complete and consistent: defaults are
// applied to every node, every NIC has its final MAC and (for an ne2000) its
// ISA resources, every switch endpoint names a port (ports made by links are
// in their switch's `ports`), and every check of docs/topology.md passed.
//
// Every element keeps the Position where the file defines it, so that later
// stages (the supervisor, the editor) can report problems at the same place.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "topology/addresses.h"

namespace twoostwo::topology {

/// A place in a topology file: 1-based line and column (yaml-cpp's Mark is
/// 0-based; the loader adds one). {0, 0} means "no place" (a value that was
/// not written, e.g. a default).
struct Position {
  int line = 0;
  int column = 0;

  bool known() const { return line > 0; }
  auto operator<=>(const Position&) const = default;
};

/// How a node's monitor runs guest code (twoostwo-vmm --cpu-engine).
enum class CpuEngine { kAuto, kKvm, kEmulator };
/// "auto", "kvm", "emulator".
std::string_view to_string(CpuEngine engine);

/// A node's network card model (twoostwo-vmm --nic model=).
enum class NicModel { kRtl8029, kNe2000 };
/// "rtl8029", "ne2000".
std::string_view to_string(NicModel model);

/// What a node boots: a named guest image (guest/README.md) or explicit
/// kernel and initrd files.
struct Image {
  /// "default", "i386" or "x86_64" for a named image; empty for explicit files.
  std::string name = "default";
  /// The kernel (bzImage) and the initrd (an uncompressed newc cpio that
  /// node.conf is appended to). Explicit files: the path as written, made
  /// absolute against the topology file's directory. Named images: what the
  /// loader's ImageResolver gave, or empty without a resolver.
  std::filesystem::path kernel;
  std::filesystem::path initrd;
  /// Explicit files only: the kernel command line, replacing the monitor's
  /// default (twoostwo-vmm --cmdline); nullopt keeps the default.
  std::optional<std::string> cmdline;
  /// Where the image is chosen (the node's `image:` value, or the defaults').
  Position pos;

  bool named() const { return !name.empty(); }
};

/// The `defaults:` section, as written (or the built-in defaults).
struct Defaults {
  Image image;                              // "default"
  unsigned memory_mib = 128;                // MiB, 16..3072 (twoostwo-vmm --memory)
  CpuEngine cpu_engine = CpuEngine::kAuto;  //
  /// Milliseconds 0..1000 (twoostwo-vmm --timer-slack); nullopt: the
  /// monitor's default.
  std::optional<unsigned> timer_slack_ms;
  NicModel nic_model = NicModel::kRtl8029;  // model of NICs that name none
  Position pos;
};

/// A node's network card.
struct Nic {
  /// "eth0".."eth3": the guest's name for the card. The planner orders the
  /// monitor's cards and the driver loads so that the guest kernel gives
  /// each card this name (see docs/topology.md, "NIC names").
  std::string name;
  /// N of ethN: the card's place in the monitor's --nic list.
  unsigned index = 0;
  NicModel model = NicModel::kRtl8029;
  /// The card's MAC: as written, or derived_mac(node, index).
  MacAddress mac{};
  bool mac_derived = true;
  /// ne2000 only: ISA I/O base (0x200..0x3e0, step 0x20; default 0x300) and
  /// IRQ (5, 7, 9, 10, 11 or 12; default 9). 0 for an rtl8029, whose
  /// resources the monitor's PCI host assigns (slots 3-6, I/O 0xc000 +
  /// 0x100*n, IRQ 11, 10, 5, 7).
  uint16_t io = 0;
  uint8_t irq = 0;
  /// Interface addresses (address/prefix), in file order.
  std::vector<Cidr> addresses;
  std::vector<Position> address_pos;  // one per address

  Position pos;  // the NIC's key
  Position model_pos, mac_pos, io_pos, irq_pos;
};

/// A static route of a node: `ip route add TO via VIA [dev DEV]`.
struct Route {
  /// 1-based place in the node's `routes:` list ("route 2" in messages).
  unsigned number = 0;
  /// The destination network; nullopt for `default`.
  std::optional<Cidr> to;
  IpAddress via;
  /// A NIC of the node, or empty.
  std::string dev;
  Position pos, to_pos, via_pos, dev_pos;
};

/// A guest VM: one twoostwo-vmm process.
struct Node {
  std::string name;  // also the guest's hostname
  Image image;
  unsigned memory_mib = 128;
  CpuEngine cpu_engine = CpuEngine::kAuto;
  /// How late (ms, 0..1000) the halted guest's timer interrupt may come
  /// (twoostwo-vmm --timer-slack); nullopt: the monitor's default.
  std::optional<unsigned> timer_slack_ms;
  std::vector<Nic> nics;  // ordered by index (eth0 first)
  std::vector<Route> routes;
  /// IP forwarding (net.ipv4.ip_forward, and IPv6 forwarding when the node
  /// has an IPv6 address).
  bool forwarding = false;
  /// Shell commands node.conf runs at boot, in order (one line each).
  std::vector<std::string> run;
  Position pos;

  const Nic* find_nic(std::string_view nic_name) const;
};

/// How a switch port treats VLANs (IEEE 802.1Q; switch/learning_switch.h
/// VlanMode, which the supervisor builds from this).
struct PortVlans {
  enum class Mode { kAccess, kTrunk };
  Mode mode = Mode::kAccess;
  /// Access: the port's VLAN, 1..4094.
  uint16_t vlan = 1;
  /// Trunk: the VLANs carried tagged, ascending; `all` carries every VLAN
  /// (then `allowed` is empty).
  std::vector<uint16_t> allowed;
  bool all = false;
  /// Trunk: the VLAN carried untagged (and never tagged); nullopt drops
  /// untagged frames.
  std::optional<uint16_t> native;

  /// True if frames of `vlan` cross the port (tagged or not).
  bool carries(uint16_t v) const;
};

struct SwitchPort {
  std::string name;
  PortVlans vlans;
  /// Made for a link endpoint that names only the switch ("sw1"): named
  /// "p1", "p2", ... (the first free names, in link order).
  bool automatic = false;
  /// Where the port is listed under `ports:`, or the link endpoint that made it.
  Position pos;
};

/// A learning switch of the fabric.
struct Switch {
  std::string name;
  std::vector<SwitchPort> ports;  // listed ports in file order, then ports made by links in link order
  /// True if the file has a `ports:` map for it: then `switch:port`
  /// endpoints must name a listed port; otherwise they make the port.
  bool ports_listed = false;
  Position pos;

  const SwitchPort* find_port(std::string_view port_name) const;
};

/// HOST:PORT of a UDP tunnel end (one frame per datagram, as QEMU's
/// -netdev dgram). HOST is an IPv4/IPv6 literal or a host name.
struct UdpAddress {
  std::string host;
  uint16_t port = 0;

  /// "127.0.0.1:4000", "[::1]:4000".
  std::string to_string() const;
  auto operator<=>(const UdpAddress&) const = default;
};

/// One end of a link.
struct Endpoint {
  enum class Kind {
    kNic,         // node:nic
    kSwitchPort,  // switch:port, or switch (a port made for the link)
    kBridge,      // bridge:IFNAME, a host interface (captures::PcapBridge)
    kUdp,         // udp:HOST:PORT, a UDP tunnel to HOST:PORT
  };
  Kind kind = Kind::kNic;
  /// kNic: node; kSwitchPort: switch; kBridge: host interface name.
  std::string name;
  /// kNic: NIC; kSwitchPort: port (filled for automatic ports too).
  std::string sub;
  /// kSwitchPort written as a bare switch name.
  bool automatic_port = false;
  /// kUdp: the remote end.
  UdpAddress remote;
  /// As written in the file.
  std::string text;
  Position pos;

  /// Canonical form: "alice:eth0", "sw1:p3", "bridge:veth0", "udp:127.0.0.1:4000".
  std::string to_string() const;
};

/// A wire between two endpoints.
struct Link {
  /// 1-based, in file order ("link 3" in messages).
  unsigned number = 0;
  /// Unique in the lab: both ends' canonical forms with ':' written as '.',
  /// joined by "--" ("alice.eth0--sw1.p1"); the fabric's link name and the
  /// stem of its capture file.
  std::string name;
  std::array<Endpoint, 2> ends;
  /// Capture this link to a pcap file (when the lab captures at all).
  bool capture = true;
  /// A udp link's local address (HOST:PORT to bind); nullopt lets the
  /// supervisor pick.
  std::optional<UdpAddress> local;
  Position pos, local_pos;
};

struct Lab {
  std::string name;
  /// The topology file as given to the loader (empty for text loaded without one).
  std::filesystem::path file;
  /// The directory relative paths are resolved against (the file's).
  std::filesystem::path directory;
  Defaults defaults;
  /// Where link captures go (absolute); nullopt when `captures: false`.
  std::optional<std::filesystem::path> captures;
  std::vector<Node> nodes;
  std::vector<Switch> switches;
  std::vector<Link> links;

  const Node* find_node(std::string_view node_name) const;
  const Switch* find_switch(std::string_view switch_name) const;
};

}  // namespace twoostwo::topology
