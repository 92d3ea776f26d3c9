// Port I/O and MMIO dispatch (DESIGN.md, "Interfaces to keep stable").
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "vmcore/bus/error.h"
#include "vmcore/bus/io_device.h"

namespace twoostwo::bus {

/// Counters of accesses that reached no device.
struct UnhandledCounters {
  uint64_t reads = 0;
  uint64_t writes = 0;
};

/// The x86 port I/O space (0x0000–0xFFFF). Each device owns a half-open range
/// [base, base + length); accesses are forwarded with the offset relative to
/// that base. Lookup is O(1) through a 64 Ki-entry index.
///
/// Accesses to unclaimed ports read as all-ones (0xFF per byte, as on an ISA
/// bus with nothing driving it) and writes are dropped; both are counted per
/// port, never fatal.
class IoBus {
 public:
  IoBus();

  /// Claim [base, base + length) for `device`. `device` must outlive the bus.
  /// Errors: an empty or out-of-range range; an overlap, whose message names
  /// both devices and both ranges.
  Result<void> add(uint16_t base, uint32_t length, IoDevice& device);

  /// Release the range that starts at `base` (e.g. a PCI BAR being moved).
  /// Errors: no range starts at `base`.
  Result<void> remove(uint16_t base);

  /// One port read of data.size() bytes (1, 2 or 4). Returns false if no
  /// device claims `port` (data is then filled with 0xFF).
  bool read(uint16_t port, std::span<uint8_t> data);

  /// One port write. Returns false if no device claims `port`.
  bool write(uint16_t port, std::span<const uint8_t> data);

  /// Accesses that reached no device, keyed by port.
  const std::map<uint16_t, UnhandledCounters>& unhandled() const { return unhandled_; }

 private:
  struct Range {
    uint16_t base;
    uint32_t length;
    IoDevice* device;
  };
  static constexpr uint16_t kNone = 0xFFFF;
  std::vector<Range> ranges_;     // slot per registration; removed ones have device == nullptr
  std::vector<uint16_t> index_;   // port -> slot in ranges_, or kNone
  std::map<uint16_t, UnhandledCounters> unhandled_;
};

/// The guest-physical MMIO space. Ranges are kept sorted; lookup is a binary
/// search. Unclaimed reads return 0xFF bytes and are counted.
class MmioBus {
 public:
  /// Claim [base, base + length) for `device`. Errors: empty range, wrap
  /// around 2^64, overlap (naming both devices).
  Result<void> add(uint64_t base, uint64_t length, IoDevice& device);

  /// One MMIO read of data.size() bytes. Returns false if unclaimed.
  bool read(uint64_t address, std::span<uint8_t> data);

  /// One MMIO write. Returns false if unclaimed.
  bool write(uint64_t address, std::span<const uint8_t> data);

  uint64_t unhandled_reads() const { return unhandled_reads_; }
  uint64_t unhandled_writes() const { return unhandled_writes_; }

 private:
  struct Range {
    uint64_t base;
    uint64_t length;
    IoDevice* device;
  };
  const Range* find(uint64_t address) const;
  std::vector<Range> ranges_;  // sorted by base, non-overlapping
  uint64_t unhandled_reads_ = 0;
  uint64_t unhandled_writes_ = 0;
};

}  // namespace twoostwo::bus
