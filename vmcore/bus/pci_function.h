// One PCI function's configuration space (type 0 header) as a device model
// sees it: the part of the PCI host bridge (vmcore/devices/pci_host.h) that
// device models such as nic::Rtl8029 derive from, so they need nothing of
// vmcore beyond this bus layer (DESIGN.md, "Folders").
//
// Not thread-safe: the Monitor serialises all calls.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "vmcore/bus/error.h"

namespace twoostwo::bus {

/// One PCI function's 256-byte configuration space (type 0 header), with
/// per-byte write masks and helpers for I/O BARs.
///
/// Header fields (PCI Local Bus spec 3.0 §6.2): vendor/device, class and
/// revision are read-only; Command (0x04) bits 0 (I/O space), 1 (memory
/// space), 2 (bus master), 6, 8 and 10 (INTx disable) are writable; Status
/// reads as set by the owner; Cache Line Size (0x0C), Latency Timer (0x0D)
/// and Interrupt Line (0x3C) are writable; Interrupt Pin (0x3D) is read-only.
/// Bytes the owner did not make writable ignore writes.
///
/// I/O BARs (§6.2.5.1): bit 0 reads 1; the bits below the size read 0, so
/// writing 0xFFFFFFFF reads back ~(size - 1) | 1 (e.g. 0xFFFFFFE1 for 32
/// ports). The BAR is decoded while Command bit 0 is set and its base is
/// non-zero and ends within the 64 KiB port space; whenever the decoded base
/// changes, on_bar_moved(index, old, new) is called, with 0 meaning "not
/// decoded" — so the owner removes `old` from the IoBus (if non-zero) and
/// adds `new` (if non-zero). Sizing by Linux (decode disabled, write all
/// ones, read, restore, enable) thus produces no spurious moves.
class PciFunction {
 public:
  virtual ~PciFunction() = default;
  PciFunction(const PciFunction&) = delete;
  PciFunction& operator=(const PciFunction&) = delete;

  /// Read `size` (1, 2 or 4) bytes at `offset` (offset + size <= 256),
  /// little-endian. Overriders should call the base for plain registers.
  virtual uint32_t config_read(unsigned offset, unsigned size) const;
  /// Write `size` bytes at `offset` through the write masks, then apply BAR
  /// and Command changes (on_bar_moved) and call on_config_write.
  virtual void config_write(unsigned offset, unsigned size, uint32_t value);

  uint16_t vendor_id() const { return uint16_t(config_read(0x00, 2)); }
  uint16_t device_id() const { return uint16_t(config_read(0x02, 2)); }
  uint16_t command() const { return uint16_t(config_read(0x04, 2)); }
  uint8_t interrupt_line() const { return cfg_[0x3C]; }
  /// The decoded base of I/O BAR `index` (0-5), or 0 if not decoded.
  uint32_t io_bar_base(unsigned index) const { return index < 6 ? decoded_[index] : 0; }

 protected:
  /// `class_code` = base class << 16 | subclass << 8 | programming interface;
  /// `interrupt_pin` 0 = none, 1-4 = INTA#-INTD#.
  PciFunction(uint16_t vendor, uint16_t device, uint32_t class_code, uint8_t revision,
              uint8_t interrupt_pin);

  /// Declare BAR `index` (0-5) an I/O BAR of `size` ports (a power of two,
  /// 4-256). Errors: bad index or size.
  Result<void> add_io_bar(unsigned index, uint32_t size);
  /// Raw access for the owner: set bytes regardless of the write masks.
  void set_config(unsigned offset, unsigned size, uint32_t value);
  /// Make bits of byte `offset` guest-writable (mask bit set = writable).
  void set_write_mask(unsigned offset, uint8_t mask) { wmask_[offset & 0xFF] = mask; }

  /// The decoded base of I/O BAR `index` changed from `old_base` to
  /// `new_base` (0 = not decoded).
  virtual void on_bar_moved(unsigned index, uint32_t old_base, uint32_t new_base) {
    (void)index, (void)old_base, (void)new_base;
  }
  /// A guest write of `size` bytes at `offset` was applied.
  virtual void on_config_write(unsigned offset, unsigned size) { (void)offset, (void)size; }

 private:
  void update_bars();

  std::array<uint8_t, 256> cfg_{};
  std::array<uint8_t, 256> wmask_{};
  std::array<uint32_t, 6> bar_size_{};  // 0 = no BAR
  std::array<uint32_t, 6> decoded_{};
};

/// "vvvv:dddd", the IDs of `f` for messages.
std::string pci_ids(const PciFunction& f);

}  // namespace twoostwo::bus
