// Ports, taps and the rules every port keeps (DESIGN.md, "Interfaces to keep
// stable": `Port` — deliver(Frame), a tap for captures, link up/down).
//
// A Port is one end of a Link. Its *outside* is whatever it stands for: a
// monitor's NIC behind a SOCK_SEQPACKET socket, a UDP tunnel, a host adapter,
// or the forwarding engine of a LearningSwitch. Frames move two ways:
//
//   outside ──transmit()──▶ port ──▶ link ──▶ other port's deliver() ──▶ its outside
//
// Counters follow a switch port's convention, seen from the link: `rx` counts
// frames the link delivered to this port, `tx` frames the port put on its
// link. (For a NIC's port that is the reverse of the card's own counters: a
// frame the guest sends is the port's tx, a frame it receives the port's rx.)
//
// Everything here runs on one thread, the fabric's event loop; nothing locks.
// Taps (captures) see every frame a port passes, in order, before it goes on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "switch/frame.h"

namespace twoostwo::fabric {

class Link;

/// An observer of frames (a capture). `on_frame` is called on the fabric's
/// thread with a frame that is valid only during the call; it must not block
/// and must not add or remove taps.
class Tap {
 public:
  virtual ~Tap() = default;
  virtual void on_frame(const Frame& frame) = 0;
};

/// A list of taps, attached by pointer; the owner of a tap removes it before
/// destroying it.
class TapList {
 public:
  void add(Tap* tap);
  /// Removing a tap that is not attached does nothing.
  void remove(Tap* tap);
  bool empty() const { return taps_.empty(); }
  void notify(const Frame& frame) const {
    for (Tap* tap : taps_) tap->on_frame(frame);
  }

 private:
  std::vector<Tap*> taps_;
};

/// Per-port counters (frames, bytes, drops), seen from the link (see above).
struct PortCounters {
  uint64_t rx_frames = 0;   // delivered to the port by its link, and accepted
  uint64_t rx_bytes = 0;
  uint64_t rx_dropped = 0;  // delivered but lost: port down, queue full, peer gone
  uint64_t tx_frames = 0;   // put on the link
  uint64_t tx_bytes = 0;
  uint64_t tx_dropped = 0;  // from the outside but not put on the link: port down, malformed, no link
};

class Port {
 public:
  explicit Port(std::string name) : name_(std::move(name)) {}
  virtual ~Port();
  Port(const Port&) = delete;
  Port& operator=(const Port&) = delete;

  /// Unique within a fabric, e.g. "alice:eth0", "sw1:3", "bridge:veth0".
  const std::string& name() const { return name_; }
  /// What the outside is, for `status`: "seqpacket fd 7", "udp 127.0.0.1:4000
  /// -> 127.0.0.1:4001", "switch sw1", "adapter veth0".
  virtual std::string describe() const = 0;

  /// The link hands this port a frame (valid during the call). A port that is
  /// down drops it; otherwise taps see it and the outside gets it (or, if the
  /// outside cannot take it, it is dropped and counted in rx_dropped).
  void deliver(const Frame& frame);

  /// A port that is down neither delivers nor transmits (frames are counted as
  /// dropped), like an Ethernet port whose link is down. Ports start up.
  /// Going down or up is reported to the outside through on_up_changed().
  bool up() const { return up_; }
  void set_up(bool up);

  /// The link this port is on, or nullptr.
  Link* link() const { return link_; }

  const PortCounters& counters() const { return counters_; }

  /// Taps on this port see frames in both directions: those delivered to it
  /// (before its outside gets them) and those it transmits (before the link).
  void add_tap(Tap* tap) { taps_.add(tap); }
  void remove_tap(Tap* tap) { taps_.remove(tap); }

 protected:
  /// The outside takes a delivered frame. Return false if it could not (the
  /// frame is then counted in rx_dropped).
  virtual bool on_deliver(const Frame& frame) = 0;
  /// Called after set_up() changed the state.
  virtual void on_up_changed(bool /*up*/) {}

  /// A frame from the outside goes onto the link: counted, tapped, carried.
  /// Frames shorter than kEthernetHeader or longer than kMaxFrame, frames
  /// while down and frames with no link are counted in tx_dropped. `frame`'s
  /// ingress is set to this port.
  void transmit(Frame frame);

  /// For ports that lose frames on their own (a socket queue full).
  void count_rx_drop() { ++counters_.rx_dropped; }
  void count_tx_drop() { ++counters_.tx_dropped; }

 private:
  friend class Link;
  std::string name_;
  bool up_ = true;
  Link* link_ = nullptr;
  PortCounters counters_;
  TapList taps_;
};

}  // namespace twoostwo::fabric
