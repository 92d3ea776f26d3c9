#include "switch/link.h"

#include <fmt/format.h>

namespace twoostwo::fabric {

Result<std::unique_ptr<Link>> Link::connect(std::string name, Port& a, Port& b) {
  if (&a == &b) return fail(fmt::format("link '{}': both ends are port '{}'", name, a.name()));
  for (Port* port : {&a, &b}) {
    if (port->link_ != nullptr) {
      return fail(fmt::format("link '{}': port '{}' is already on link '{}'", name, port->name(),
                              port->link_->name()));
    }
  }
  std::unique_ptr<Link> link(new Link(std::move(name), a, b));
  a.link_ = link.get();
  b.link_ = link.get();
  return link;
}

Link::~Link() {
  a_.link_ = nullptr;
  b_.link_ = nullptr;
}

void Link::carry(const Port& from, const Frame& frame) {
  if (!up_) {
    ++counters_.dropped;
    return;
  }
  Port& to = peer(from);
  if (!to.up()) {
    to.deliver(frame);  // drops and counts it
    return;
  }
  if (&from == &a_) {
    ++counters_.a_to_b_frames;
  } else {
    ++counters_.b_to_a_frames;
  }
  taps_.notify(frame);
  to.deliver(frame);
}

}  // namespace twoostwo::fabric
