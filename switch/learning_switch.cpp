#include "switch/learning_switch.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace twoostwo::fabric {

namespace {

bool valid_vlan(uint16_t vlan) { return vlan >= kMinVlanId && vlan <= kMaxVlanId; }

uint16_t be16(std::span<const std::byte> bytes, size_t at) {
  return static_cast<uint16_t>((static_cast<unsigned>(bytes[at]) << 8) | static_cast<unsigned>(bytes[at + 1]));
}

}  // namespace

bool VlanMode::carries(uint16_t vlan) const {
  if (kind == Kind::kAccess) return vlan == access_vlan;
  if (native_vlan == vlan) return true;
  return allowed.empty() || std::find(allowed.begin(), allowed.end(), vlan) != allowed.end();
}

std::string SwitchPort::describe() const {
  if (mode_.kind == VlanMode::Kind::kAccess) return fmt::format("switch {} access vlan {}", switch_.name(), mode_.access_vlan);
  return fmt::format("switch {} trunk", switch_.name());
}

bool SwitchPort::on_deliver(const Frame& frame) { return switch_.ingress(*this, frame); }

void SwitchPort::on_up_changed(bool up) {
  if (!up) switch_.table_.flush_port(this);
}

LearningSwitch::LearningSwitch(std::string name, Options options)
    : name_(std::move(name)), options_(std::move(options)), table_(options_.table) {}

LearningSwitch::~LearningSwitch() = default;

Result<SwitchPort*> LearningSwitch::add_port(const std::string& port_name, VlanMode mode) {
  const std::string full = name_ + ":" + port_name;
  if (port(full) != nullptr) return fail(fmt::format("switch '{}': port '{}' already exists", name_, port_name));
  const auto bad_vlan = [&](uint16_t vlan) {
    return fail(fmt::format("switch '{}': port '{}': VLAN {} is outside {}..{}", name_, port_name, vlan, kMinVlanId,
                            kMaxVlanId));
  };
  if (mode.kind == VlanMode::Kind::kAccess) {
    if (!valid_vlan(mode.access_vlan)) return bad_vlan(mode.access_vlan);
  } else {
    for (uint16_t vlan : mode.allowed) {
      if (!valid_vlan(vlan)) return bad_vlan(vlan);
    }
    if (mode.native_vlan && !valid_vlan(*mode.native_vlan)) return bad_vlan(*mode.native_vlan);
  }
  ports_.push_back(std::unique_ptr<SwitchPort>(new SwitchPort(*this, full, std::move(mode))));
  return ports_.back().get();
}

SwitchPort* LearningSwitch::port(const std::string& name) const {
  for (const auto& p : ports_) {
    if (p->name() == name || p->name() == name_ + ":" + name) return p.get();
  }
  return nullptr;
}

bool LearningSwitch::ingress(SwitchPort& in, const Frame& frame) {
  // 1. Classify into a VLAN.
  const std::optional<uint16_t> tag = frame.vlan_id();
  const VlanMode& mode = in.mode_;
  uint16_t vlan = 0;
  std::optional<uint16_t> tci;  // the tag's whole TCI, to keep its priority bits
  if (tag && *tag != 0) {
    if (mode.kind == VlanMode::Kind::kAccess || !mode.carries(*tag) || mode.native_vlan == *tag) {
      // Access ports take no tagged frames; a trunk takes only VLANs it
      // carries, and its native VLAN only untagged.
      ++counters_.vlan_dropped;
      return false;
    }
    vlan = *tag;
    tci = be16(frame.bytes, 14);
  } else {
    // Untagged, or priority-tagged (VID 0, IEEE 802.1Q §6.9.1): the port's VLAN.
    if (mode.kind == VlanMode::Kind::kAccess) {
      vlan = mode.access_vlan;
    } else if (mode.native_vlan) {
      vlan = *mode.native_vlan;
    } else {
      ++counters_.vlan_dropped;
      return false;
    }
    if (tag) tci = be16(frame.bytes, 14);
  }
  if (depth_ >= kMaxDepth) {
    ++counters_.loop_dropped;
    return false;
  }

  // 2. Learn.
  const auto now = options_.clock();
  table_.learn(vlan, frame.source(), &in, now);

  // The frame's payload after the Ethernet addresses, without any tag.
  const std::span<const std::byte> after_tag = frame.bytes.subspan(tci ? 16 : 12);
  // Egress forms, built on first use: untagged, and tagged with `vlan`.
  std::array<std::byte, kMaxFrame> untagged_buffer, tagged_buffer;
  std::span<const std::byte> untagged, tagged;
  const auto untagged_form = [&]() -> std::span<const std::byte> {
    if (!tci) return frame.bytes;
    if (untagged.empty()) {
      std::memcpy(untagged_buffer.data(), frame.bytes.data(), 12);
      std::memcpy(untagged_buffer.data() + 12, after_tag.data(), after_tag.size());
      untagged = std::span<const std::byte>(untagged_buffer.data(), 12 + after_tag.size());
    }
    return untagged;
  };
  const auto tagged_form = [&]() -> std::span<const std::byte> {
    if (tci && (*tci & 0x0FFF) == vlan) return frame.bytes;
    if (tagged.empty()) {
      if (12 + 4 + after_tag.size() > kMaxFrame) return {};  // no room for the tag
      const uint16_t new_tci = static_cast<uint16_t>(((tci ? *tci : 0) & 0xF000) | vlan);
      std::memcpy(tagged_buffer.data(), frame.bytes.data(), 12);
      tagged_buffer[12] = std::byte{kTpid8021Q >> 8};
      tagged_buffer[13] = std::byte{kTpid8021Q & 0xFF};
      tagged_buffer[14] = static_cast<std::byte>(new_tci >> 8);
      tagged_buffer[15] = static_cast<std::byte>(new_tci & 0xFF);
      std::memcpy(tagged_buffer.data() + 16, after_tag.data(), after_tag.size());
      tagged = std::span<const std::byte>(tagged_buffer.data(), 16 + after_tag.size());
    }
    return tagged;
  };
  const auto send = [&](SwitchPort& out) {
    const VlanMode& m = out.mode_;
    const bool untag = m.kind == VlanMode::Kind::kAccess || m.native_vlan == vlan;
    const std::span<const std::byte> bytes = untag ? untagged_form() : tagged_form();
    if (bytes.empty()) return;  // the tagged form would not fit
    out.send(Frame{bytes, frame.time, frame.ingress});
  };

  ++depth_;
  // 3. Forward to a learned port…
  const MacAddress destination = frame.destination();
  if (!is_group(destination)) {
    if (const Port* known = table_.lookup(vlan, destination, now)) {
      auto* out = const_cast<SwitchPort*>(static_cast<const SwitchPort*>(known));
      if (out == &in) {
        ++counters_.filtered;
      } else if (out->up() && out->mode_.carries(vlan)) {
        ++counters_.forwarded;
        send(*out);
      } else {
        ++counters_.filtered;
      }
      --depth_;
      return true;
    }
  }
  // 4. …or flood.
  ++counters_.flooded;
  for (const auto& out : ports_) {
    if (out.get() != &in && out->up() && out->mode_.carries(vlan)) send(*out);
  }
  --depth_;
  return true;
}

}  // namespace twoostwo::fabric
