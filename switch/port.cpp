#include "switch/port.h"

#include <algorithm>

#include "switch/link.h"

namespace twoostwo::fabric {

void TapList::add(Tap* tap) {
  if (std::find(taps_.begin(), taps_.end(), tap) == taps_.end()) taps_.push_back(tap);
}

void TapList::remove(Tap* tap) { std::erase(taps_, tap); }

Port::~Port() = default;  // Links are destroyed before their ports (Fabric's order).

void Port::deliver(const Frame& frame) {
  if (!up_) {
    ++counters_.rx_dropped;
    return;
  }
  taps_.notify(frame);
  if (!on_deliver(frame)) {
    ++counters_.rx_dropped;
    return;
  }
  ++counters_.rx_frames;
  counters_.rx_bytes += frame.bytes.size();
}

void Port::set_up(bool up) {
  if (up == up_) return;
  up_ = up;
  on_up_changed(up);
}

void Port::transmit(Frame frame) {
  if (!up_ || link_ == nullptr || frame.bytes.size() < kEthernetHeader || frame.bytes.size() > kMaxFrame) {
    ++counters_.tx_dropped;
    return;
  }
  frame.ingress = this;
  ++counters_.tx_frames;
  counters_.tx_bytes += frame.bytes.size();
  taps_.notify(frame);
  link_->carry(*this, frame);
}

}  // namespace twoostwo::fabric
