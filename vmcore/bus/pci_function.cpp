#include "vmcore/bus/pci_function.h"

#include <bit>
#include <cstdio>
#include <string>

namespace twoostwo::bus {
namespace {

constexpr unsigned kCommand = 0x04, kStatus = 0x06, kRevision = 0x08, kClass = 0x09,
                   kCacheLine = 0x0C, kLatency = 0x0D, kHeaderType = 0x0E, kBar0 = 0x10,
                   kInterruptLine = 0x3C, kInterruptPin = 0x3D;
constexpr uint16_t kCommandWritable = 0x0547;  // I/O, memory, master, parity, SERR, INTx disable
constexpr uint16_t kCommandIo = 0x0001;

}  // namespace

std::string pci_ids(const PciFunction& f) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04x:%04x", f.vendor_id(), f.device_id());
  return buf;
}

PciFunction::PciFunction(uint16_t vendor, uint16_t device, uint32_t class_code, uint8_t revision,
                         uint8_t interrupt_pin) {
  set_config(0x00, 2, vendor);
  set_config(0x02, 2, device);
  set_config(kRevision, 1, revision);
  set_config(kClass, 3, class_code);
  set_config(kHeaderType, 1, 0x00);
  set_config(kInterruptPin, 1, interrupt_pin);
  set_write_mask(kCommand, uint8_t(kCommandWritable));
  set_write_mask(kCommand + 1, uint8_t(kCommandWritable >> 8));
  set_write_mask(kCacheLine, 0xFF);
  set_write_mask(kLatency, 0xFF);
  set_write_mask(kInterruptLine, 0xFF);
}

uint32_t PciFunction::config_read(unsigned offset, unsigned size) const {
  uint32_t v = 0;
  for (unsigned i = 0; i < size && i < 4; ++i) v |= uint32_t{cfg_[(offset + i) & 0xFF]} << (8 * i);
  return v;
}

void PciFunction::config_write(unsigned offset, unsigned size, uint32_t value) {
  bool bars_or_command = false;
  for (unsigned i = 0; i < size && i < 4; ++i) {
    const unsigned o = (offset + i) & 0xFF;
    const uint8_t b = uint8_t(value >> (8 * i));
    cfg_[o] = uint8_t((cfg_[o] & ~wmask_[o]) | (b & wmask_[o]));
    if ((o >= kCommand && o < kStatus) || (o >= kBar0 && o < kBar0 + 24)) bars_or_command = true;
  }
  if (bars_or_command) update_bars();
  on_config_write(offset, size);
}

void PciFunction::set_config(unsigned offset, unsigned size, uint32_t value) {
  for (unsigned i = 0; i < size && i < 4; ++i) cfg_[(offset + i) & 0xFF] = uint8_t(value >> (8 * i));
}

Result<void> PciFunction::add_io_bar(unsigned index, uint32_t size) {
  if (index >= 6) return fail("pci " + pci_ids(*this) + ": BAR index " + std::to_string(index) + " (expected 0-5)");
  if (size < 4 || size > 256 || !std::has_single_bit(size)) {
    return fail("pci " + pci_ids(*this) + ": I/O BAR " + std::to_string(index) + " size " +
                std::to_string(size) + " (expected a power of two, 4-256)");
  }
  bar_size_[index] = size;
  const unsigned off = kBar0 + 4 * index;
  set_config(off, 4, 0x1);  // I/O space indicator
  const uint32_t mask = ~(size - 1) & 0xFFFFFFFCu;
  for (unsigned i = 0; i < 4; ++i) set_write_mask(off + i, uint8_t(mask >> (8 * i)));
  update_bars();
  return {};
}

void PciFunction::update_bars() {
  const bool io_enabled = (config_read(kCommand, 2) & kCommandIo) != 0;
  for (unsigned i = 0; i < 6; ++i) {
    if (bar_size_[i] == 0) continue;
    const uint32_t base = config_read(kBar0 + 4 * i, 4) & ~(bar_size_[i] - 1) & 0xFFFFFFFCu;
    const bool decodes = io_enabled && base != 0 && uint64_t{base} + bar_size_[i] <= 0x10000;
    const uint32_t now = decodes ? base : 0;
    if (now != decoded_[i]) {
      const uint32_t old = decoded_[i];
      decoded_[i] = now;
      on_bar_moved(i, old, now);
    }
  }
}

}  // namespace twoostwo::bus
