#include "vmcore/devices/pci_host.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <string>

namespace twoostwo::vmcore {
namespace {

constexpr unsigned kCommand = 0x04, kStatus = 0x06, kInterruptLine = 0x3C;

}  // namespace

HostBridge440fx::HostBridge440fx() : PciFunction(0x8086, 0x1237, 0x060000, 0x02, 0) {
  set_config(kCommand, 2, 0x0006);
  set_config(kStatus, 2, 0x0280);
  set_write_mask(kInterruptLine, 0);  // the host bridge has no interrupt
}

PciHost::PciHost(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {
  slots_[0] = &bridge_;
}

Result<void> PciHost::attach(unsigned slot, PciFunction& function) {
  if (slot < 1 || slot > 31) {
    return fail("pci: slot " + std::to_string(slot) + " for " + bus::pci_ids(function) +
                " is out of range (1-31)");
  }
  if (slots_[slot] != nullptr) {
    return fail("pci: slot " + std::to_string(slot) + " for " + bus::pci_ids(function) +
                " is taken by " + bus::pci_ids(*slots_[slot]));
  }
  slots_[slot] = &function;
  return {};
}

PciFunction* PciHost::selected() const {
  if (!(address_ & 0x8000'0000u)) return nullptr;
  const unsigned bus = (address_ >> 16) & 0xFF;
  const unsigned device = (address_ >> 11) & 0x1F;
  const unsigned function = (address_ >> 8) & 0x7;
  if (bus != 0 || function != 0) return nullptr;
  return slots_[device];
}

void PciHost::read(uint64_t offset, std::span<uint8_t> data) {
  const size_t size = data.size();
  if (offset == 0 && size == 4) {
    bus::store_le(data, address_);
    return;
  }
  if (offset == 1 && size == 1) {
    data[0] = rcr_;
    return;
  }
  std::fill(data.begin(), data.end(), uint8_t{0xFF});
  if (offset < 4 || offset >= 8 || (size != 1 && size != 2 && size != 4) || offset - 4 + size > 4) {
    ++bad_;
    return;
  }
  if (const PciFunction* f = selected()) {
    bus::store_le(data, f->config_read(unsigned(address_ & 0xFC) + unsigned(offset - 4), unsigned(size)));
  }
}

void PciHost::write(uint64_t offset, std::span<const uint8_t> data) {
  const size_t size = data.size();
  if (offset == 0 && size == 4) {
    address_ = bus::load_le(data) & ~3u;
    return;
  }
  if (offset == 1 && size == 1) {
    rcr_ = data[0] & 0x0A;
    if ((data[0] & 0x04) && on_reset_) on_reset_();
    return;
  }
  if (offset < 4) return;  // not a configuration cycle (e.g. Linux's outb(0x01, 0xCFB))
  if (offset >= 8 || (size != 1 && size != 2 && size != 4) || offset - 4 + size > 4) {
    ++bad_;
    return;
  }
  if (PciFunction* f = selected()) {
    f->config_write(unsigned(address_ & 0xFC) + unsigned(offset - 4), unsigned(size), bus::load_le(data));
  }
}

}  // namespace twoostwo::vmcore
