// The device-facing interface of the machine model (DESIGN.md, "Interfaces to
// keep stable"). Modelled on Firecracker's BusDevice (src/vmm/src/devices/bus.rs):
// offsets are relative to the base the device was registered at.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace twoostwo::bus {

/// A device reachable through port I/O (IoBus) or MMIO (MmioBus).
///
/// `offset` is relative to the device's registered base; `data.size()` is the
/// access width in bytes (1, 2 or 4 for port I/O; 1, 2, 4 or 8 for MMIO).
/// Multi-byte values are little-endian, as on x86.
///
/// Devices must never fail on guest input: an unsupported register or width
/// reads as 0xFF bytes and is counted by the device, never fatal.
/// Devices are not thread-safe; the Monitor serialises all calls.
class IoDevice {
 public:
  virtual ~IoDevice() = default;

  /// Fill `data` with the value read at `offset`.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;

  /// Accept the value `data` written at `offset`.
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;

  /// A short name for logs and error messages, e.g. "uart 0x3f8".
  virtual std::string_view name() const = 0;
};

/// An interrupt request line wired to an input of the interrupt controller
/// (an 8259A PIC input). `set(true)` asserts the line, `set(false)` releases
/// it; an edge-triggered input sees the low→high transition. A device never
/// calls KVM or the CPU engine itself: it only drives its IrqLine.
class IrqLine {
 public:
  virtual ~IrqLine() = default;
  virtual void set(bool level) = 0;
};

/// Little-endian helpers for devices.
inline uint32_t load_le(std::span<const uint8_t> data) {
  uint32_t v = 0;
  for (size_t i = 0; i < data.size() && i < 4; ++i) v |= uint32_t{data[i]} << (8 * i);
  return v;
}
inline void store_le(std::span<uint8_t> data, uint64_t value) {
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(value >> (8 * i));
}

}  // namespace twoostwo::bus
