// Where a capture attaches (DESIGN.md: captures are taps on links and ports,
// never code inside devices or switches):
//
// - a Link: every frame it carries, both directions interleaved in the order
//   they crossed it (switch/link.h);
// - a Port: frames delivered to it and frames it transmits (switch/port.h).
//
// A TapPoint is a reference: the link or port must outlive every capture
// attached through it (destroy captures before the fabric).
#pragma once

#include <string>

#include "switch/link.h"
#include "switch/port.h"

namespace twoostwo::captures {

class TapPoint {
 public:
  TapPoint(fabric::Link& link) : link_(&link) {}  // NOLINT: implicit on purpose
  TapPoint(fabric::Port& port) : port_(&port) {}  // NOLINT: implicit on purpose

  void attach(fabric::Tap* tap) const {
    if (link_ != nullptr) {
      link_->add_tap(tap);
    } else {
      port_->add_tap(tap);
    }
  }
  void detach(fabric::Tap* tap) const {
    if (link_ != nullptr) {
      link_->remove_tap(tap);
    } else {
      port_->remove_tap(tap);
    }
  }
  /// "link 'l1'" or "port 'sw1:3'", for messages.
  std::string describe() const {
    return link_ != nullptr ? "link '" + link_->name() + "'" : "port '" + port_->name() + "'";
  }
  /// The link's or the port's name.
  const std::string& name() const { return link_ != nullptr ? link_->name() : port_->name(); }

  fabric::Link* link() const { return link_; }
  fabric::Port* port() const { return port_; }

 private:
  fabric::Link* link_ = nullptr;
  fabric::Port* port_ = nullptr;
};

}  // namespace twoostwo::captures
