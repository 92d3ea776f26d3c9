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
#include "vmcore/bus/pci_function.h"

namespace twoostwo::vmcore {

using bus::PciFunction;

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
