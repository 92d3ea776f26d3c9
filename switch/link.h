// A point-to-point Ethernet link between two ports (DESIGN.md: switch::Link,
// "point-to-point wire"). What one port transmits, the other is delivered, in
// order, after the link's taps (its captures) have seen it. A link can be
// brought down like a pulled cable: frames are then dropped and counted.
// Nothing crosses toward a port that is down either (an Ethernet port
// without link partner does not transmit): such a frame goes straight to
// that port's deliver(), which counts it in its rx_dropped, and the link
// neither counts nor taps it -- so a link's capture ends with the last
// frame it carried while both ends were up (a monitor that died).
//
// Construction attaches both ports; destruction detaches them. A port is on
// at most one link.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "switch/port.h"

namespace twoostwo::fabric {

class Link {
 public:
  /// Frames carried each way, and frames dropped because the link was down
  /// (those for a port that is down are that port's rx_dropped).
  struct Counters {
    uint64_t a_to_b_frames = 0;
    uint64_t b_to_a_frames = 0;
    uint64_t dropped = 0;
  };

  /// Join `a` and `b`, both of which must outlive the link. Errors: a port
  /// already on a link (the message names the port and that link), or `a`
  /// and `b` being the same port.
  static Result<std::unique_ptr<Link>> connect(std::string name, Port& a, Port& b);
  ~Link();
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  const std::string& name() const { return name_; }
  Port& a() const { return a_; }
  Port& b() const { return b_; }
  /// The port at the other end from `port` (which must be a() or b()).
  Port& peer(const Port& port) const { return &port == &a_ ? b_ : a_; }

  bool up() const { return up_; }
  void set_up(bool up) { up_ = up; }
  const Counters& counters() const { return counters_; }

  /// Taps see every frame the link carries, both directions interleaved in
  /// the order they crossed it; Frame::ingress tells the direction.
  void add_tap(Tap* tap) { taps_.add(tap); }
  void remove_tap(Tap* tap) { taps_.remove(tap); }

 private:
  friend class Port;
  Link(std::string name, Port& a, Port& b) : name_(std::move(name)), a_(a), b_(b) {}
  /// Port::transmit() hands frames here.
  void carry(const Port& from, const Frame& frame);

  std::string name_;
  Port& a_;
  Port& b_;
  bool up_ = true;
  Counters counters_;
  TapList taps_;
};

}  // namespace twoostwo::fabric
