// A transparent learning bridge with IEEE 802.1Q VLANs (IEEE 802.1Q §8;
// ns-3's bridge-net-device.cc shows the same loop: learn the source, look up
// the destination, forward or flood).
//
// For each frame delivered to one of its ports the switch
//  1. classifies it into a VLAN: on an access port, untagged frames belong to
//     the port's VLAN and tagged ones are dropped; on a trunk port, tagged
//     frames belong to their tag's VLAN if the port carries it, untagged ones
//     to the native VLAN if the port has one; anything else is dropped;
//  2. learns the source address on that port and VLAN (unicast sources only);
//  3. sends it to the port that learned the destination, if known, up, not
//     the ingress port, and carrying the VLAN; frames for an address learned
//     on the ingress port are filtered (dropped, counted);
//  4. otherwise floods it — broadcast, multicast and unknown unicast — to every
//     other port that is up and carries the VLAN;
//  5. on egress, sends untagged on access ports and on a trunk's native VLAN,
//     tagged (priority bits kept) on other trunk VLANs.
// A port going down forgets its learned addresses, as a real switch does on
// link down.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "switch/frame.h"
#include "switch/mac_table.h"
#include "switch/port.h"

namespace twoostwo::fabric {

class LearningSwitch;

/// How a switch port treats VLANs.
struct VlanMode {
  enum class Kind { kAccess, kTrunk };
  Kind kind = Kind::kAccess;
  /// Access: the port's VLAN (1..4094).
  uint16_t access_vlan = 1;
  /// Trunk: the VLANs it carries (1..4094; empty means all), and the native
  /// VLAN whose frames cross the trunk untagged (nullopt: untagged frames are
  /// dropped).
  std::vector<uint16_t> allowed;
  std::optional<uint16_t> native_vlan;

  static VlanMode access(uint16_t vlan) { return VlanMode{Kind::kAccess, vlan, {}, std::nullopt}; }
  static VlanMode trunk(std::vector<uint16_t> allowed, std::optional<uint16_t> native = std::nullopt) {
    return VlanMode{Kind::kTrunk, 1, std::move(allowed), native};
  }
  /// True if the port carries frames of `vlan`.
  bool carries(uint16_t vlan) const;
};

/// A port of a LearningSwitch: its outside is the switch's forwarding.
class SwitchPort final : public Port {
 public:
  LearningSwitch& owner() const { return switch_; }
  const VlanMode& vlan_mode() const { return mode_; }
  std::string describe() const override;

 protected:
  bool on_deliver(const Frame& frame) override;
  void on_up_changed(bool up) override;

 private:
  friend class LearningSwitch;
  SwitchPort(LearningSwitch& sw, std::string name, VlanMode mode)
      : Port(std::move(name)), switch_(sw), mode_(std::move(mode)) {}
  /// The switch sends a frame out of this port.
  void send(const Frame& frame) { transmit(frame); }

  LearningSwitch& switch_;
  VlanMode mode_;
};

class LearningSwitch {
 public:
  struct Options {
    MacTable::Options table;
    SteadyClock clock = system_steady_clock();
  };
  struct Counters {
    uint64_t forwarded = 0;     // frames sent to one learned port
    uint64_t flooded = 0;       // frames flooded
    uint64_t filtered = 0;      // destination learned on the ingress port
    uint64_t vlan_dropped = 0;  // not admitted by the ingress port's VLAN mode
    uint64_t loop_dropped = 0;  // re-entered the switch too deep (a loop)
  };

  LearningSwitch(std::string name, Options options);
  ~LearningSwitch();
  LearningSwitch(const LearningSwitch&) = delete;
  LearningSwitch& operator=(const LearningSwitch&) = delete;

  const std::string& name() const { return name_; }

  /// A new port named "<switch>:<port_name>". Errors: a name already used on
  /// this switch, or a VLAN ID outside 1..4094 (the message names both).
  Result<SwitchPort*> add_port(const std::string& port_name, VlanMode mode = VlanMode::access(1));
  /// The port called "<switch>:<port_name>" or `port_name`, or nullptr.
  SwitchPort* port(const std::string& name) const;
  const std::vector<std::unique_ptr<SwitchPort>>& ports() const { return ports_; }

  const MacTable& mac_table() const { return table_; }
  MacTable& mac_table() { return table_; }
  const Counters& counters() const { return counters_; }

 private:
  friend class SwitchPort;
  bool ingress(SwitchPort& port, const Frame& frame);

  std::string name_;
  Options options_;
  MacTable table_;
  Counters counters_;
  std::vector<std::unique_ptr<SwitchPort>> ports_;
  // Frames re-entering this switch while it forwards (switches wired in a
  // loop): beyond kMaxDepth they are dropped as loop_dropped instead of
  // recursing without end. There is no spanning tree; topology/ refuses loops.
  static constexpr int kMaxDepth = 8;
  int depth_ = 0;
};

}  // namespace twoostwo::fabric
