// PCI configuration space access: the host bridge's configuration mechanism
// #1, bus 0 only, and the interface of the PCI functions in its slots.
//
// Ports (PciHost is one IoDevice, registered at 0xCF8 with 8 ports):
//   0xCF8  CONFIG_ADDRESS, 32-bit accesses only: bit 31 enable, 23-16 bus,
//          15-11 device, 10-8 function, 7-2 register (bits 1-0 read 0).
//   0xCF9  (byte access) PIIX3 Reset Control Register: bits 1 and 3 stored;
//          writing bit 2 (RST_CPU) set, e.g. 0x06 or 0x0E, calls on_reset.
//   0xCFC-0xCFF  CONFIG_DATA: a 1/2/4-byte access at 0xCFC + n reaches
//          register (CONFIG_ADDRESS & 0xFC) + n of the addressed function.
//   Other byte/word accesses to 0xCF8-0xCFB are not configuration cycles
//   (PCI Local Bus spec 3.0 §3.2.2.3.2): writes are ignored (Linux's
//   pci_check_type1 writes 0xCFB), reads return 0xFF and are counted.
//
// Reads of an absent function (no device in the slot, bus != 0, function
// != 0, or CONFIG_ADDRESS bit 31 clear) return all ones, so vendor ID 0xFFFF
// tells Linux's probe (drivers/pci/probe.c pci_bus_read_dev_vendor_id) that
// nothing is there. Data accesses that cross a dword are counted and ignored.
// Linux with pci=conf1 still runs pci_check_type1 and pci_sanity_check
// (arch/x86/pci/direct.c): CONFIG_ADDRESS must read back 0x80000000, and a
// host bridge class (0x0600) must be found on bus 0.
//
// Device 0 is an Intel 82441FX (440FX) host bridge: 8086:1237, revision 02,
// class 0x060000, PCICMD 0x0006, PCISTS 0x0280 (82441FX datasheet, "PCI
// configuration registers"). Its chipset registers (PAM, SMRAM...) read 0.
//
// Not thread-safe: the Monitor serialises all calls.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>

#include "vmcore/bus/error.h"
#include "vmcore/bus/io_device.h"

namespace twoostwo::vmcore {

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

/// The 440FX host bridge at device 0.
class HostBridge440fx final : public PciFunction {
 public:
  HostBridge440fx();
};

class PciHost final : public bus::IoDevice {
 public:
  /// `on_reset` is called when the guest writes RST_CPU to 0xCF9; may be empty.
  explicit PciHost(std::function<void()> on_reset = {});
  PciHost(const PciHost&) = delete;
  PciHost& operator=(const PciHost&) = delete;

  /// Plug `function` into device number `slot` (1-31) of bus 0, as its
  /// function 0. `function` must outlive the host. Errors: slot out of
  /// range, or already taken (the message names the occupant's IDs).
  Result<void> attach(unsigned slot, PciFunction& function);

  // IoDevice: register at 0xCF8, 8 ports.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  std::string_view name() const override { return "pci host 0xcf8"; }

  PciFunction& host_bridge() { return bridge_; }
  uint32_t config_address() const { return address_; }
  /// Guest mistakes: byte/word reads of 0xCF8-0xCFB, data accesses that
  /// cross a dword or have an odd width.
  uint64_t bad_accesses() const { return bad_; }

 private:
  /// The function CONFIG_ADDRESS selects, or nullptr.
  PciFunction* selected() const;

  HostBridge440fx bridge_;
  std::array<PciFunction*, 32> slots_{};
  std::function<void()> on_reset_;
  uint32_t address_ = 0;
  uint8_t rcr_ = 0;
  uint64_t bad_ = 0;
};

}  // namespace twoostwo::vmcore
