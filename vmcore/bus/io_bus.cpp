#include "vmcore/bus/io_bus.h"

#include <algorithm>
#include <cstdio>
#include <string>

namespace twoostwo::bus {
namespace {

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string range_text(uint64_t base, uint64_t length) {
  return "[" + hex(base) + ", " + hex(base + length) + ")";
}

}  // namespace

IoBus::IoBus() : index_(0x10000, kNone) {}

Result<void> IoBus::add(uint16_t base, uint32_t length, IoDevice& device) {
  if (length == 0 || uint32_t{base} + length > 0x10000) {
    return fail("io bus: device '" + std::string(device.name()) + "': invalid port range " +
                range_text(base, length));
  }
  for (uint32_t p = base; p < uint32_t{base} + length; ++p) {
    if (index_[p] != kNone) {
      const Range& other = ranges_[index_[p]];
      return fail("io bus: device '" + std::string(device.name()) + "' at ports " +
                  range_text(base, length) + " overlaps device '" +
                  std::string(other.device->name()) + "' at ports " +
                  range_text(other.base, other.length));
    }
  }
  auto slot = std::find_if(ranges_.begin(), ranges_.end(),
                           [](const Range& r) { return r.device == nullptr; });
  if (slot == ranges_.end()) {
    if (ranges_.size() >= kNone) return fail("io bus: too many devices");
    ranges_.push_back({});
    slot = ranges_.end() - 1;
  }
  *slot = Range{base, length, &device};
  const auto id = static_cast<uint16_t>(slot - ranges_.begin());
  std::fill(index_.begin() + base, index_.begin() + base + length, id);
  return {};
}

Result<void> IoBus::remove(uint16_t base) {
  for (auto& r : ranges_) {
    if (r.device != nullptr && r.base == base) {
      std::fill(index_.begin() + r.base, index_.begin() + r.base + r.length, kNone);
      r.device = nullptr;
      return {};
    }
  }
  return fail("io bus: no device registered at port " + hex(base));
}

bool IoBus::read(uint16_t port, std::span<uint8_t> data) {
  const uint16_t id = index_[port];
  if (id == kNone) {
    std::fill(data.begin(), data.end(), uint8_t{0xFF});
    ++unhandled_[port].reads;
    return false;
  }
  const Range& r = ranges_[id];
  r.device->read(port - r.base, data);
  return true;
}

bool IoBus::write(uint16_t port, std::span<const uint8_t> data) {
  const uint16_t id = index_[port];
  if (id == kNone) {
    ++unhandled_[port].writes;
    return false;
  }
  const Range& r = ranges_[id];
  r.device->write(port - r.base, data);
  return true;
}

Result<void> MmioBus::add(uint64_t base, uint64_t length, IoDevice& device) {
  if (length == 0 || base + length < base) {
    return fail("mmio bus: device '" + std::string(device.name()) + "': invalid range " +
                range_text(base, length));
  }
  for (const auto& r : ranges_) {
    if (base < r.base + r.length && r.base < base + length) {
      return fail("mmio bus: device '" + std::string(device.name()) + "' at " +
                  range_text(base, length) + " overlaps device '" +
                  std::string(r.device->name()) + "' at " + range_text(r.base, r.length));
    }
  }
  auto pos = std::lower_bound(ranges_.begin(), ranges_.end(), base,
                              [](const Range& r, uint64_t b) { return r.base < b; });
  ranges_.insert(pos, Range{base, length, &device});
  return {};
}

const MmioBus::Range* MmioBus::find(uint64_t address) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), address,
                             [](uint64_t a, const Range& r) { return a < r.base; });
  if (it == ranges_.begin()) return nullptr;
  --it;
  return address - it->base < it->length ? &*it : nullptr;
}

bool MmioBus::read(uint64_t address, std::span<uint8_t> data) {
  const Range* r = find(address);
  if (r == nullptr) {
    std::fill(data.begin(), data.end(), uint8_t{0xFF});
    ++unhandled_reads_;
    return false;
  }
  r->device->read(address - r->base, data);
  return true;
}

bool MmioBus::write(uint64_t address, std::span<const uint8_t> data) {
  const Range* r = find(address);
  if (r == nullptr) {
    ++unhandled_writes_;
    return false;
  }
  r->device->write(address - r->base, data);
  return true;
}

}  // namespace twoostwo::bus
