// The PC that both CPU engines run: the buses and the legacy devices, wired
// as on a PC/AT (DESIGN.md "Two CPU engines, one machine"; issue 2 §3).
//
//   ports        device                          IRQ
//   0x20-0x21    8259A master PIC                -
//   0xA0-0xA1    8259A slave PIC (on IR2)        -
//   0x4D0-0x4D1  ELCR (edge/level per IRQ)       -
//   0x40-0x43    8254 PIT (+ port 0x61 bits)     0
//   0x60, 0x64   i8042 keyboard controller       1
//   0x70-0x71    CMOS / RTC                      8 (optional)
//   0x3F8-0x3FF  16550A UART COM1 (console)      4
//   0x2F8-0x2FF  16550A UART COM2 (commands)     3
//   0xCF8-0xCFF  PCI host bridge, mechanism #1   -
//   0x80, 0xED   POST / delay ports (no-ops)     -
//   0x92         System Control Port A (A20, fast reset)
//
// Devices are not thread-safe: every access from any thread (CPU engine,
// I/O thread) holds `mutex()`.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include "vmcore/bus/error.h"
#include "vmcore/bus/guest_memory.h"
#include "vmcore/bus/io_bus.h"
#include "vmcore/clock.h"
#include "vmcore/interrupts.h"

namespace twoostwo::vmcore {

class Pic8259Pair;
class Uart16550;
class PciHost;

struct MachineConfig {
  bus::GuestMemory memory;
  Clock* clock = nullptr;
  /// The RTC's time at guest time 0 (seconds since 1970, UTC); unset = the
  /// host's time. Fixed for repeatable (virtual-clock) runs.
  std::optional<int64_t> rtc_start_unix_seconds;
  /// Bytes the guest sent on COM1 / COM2 (called with mutex() held).
  std::function<void(std::span<const uint8_t>)> com1_output;
  std::function<void(std::span<const uint8_t>)> com2_output;
  /// The guest reset or powered off (i8042 0xFE, port 0x92 bit 0, 0xCF9).
  std::function<void()> on_reset;
  /// INTR may have become asserted (wake the CPU).
  std::function<void()> on_intr;
};

class Machine {
 public:
  /// Build the devices and claim their ports. Errors: port conflicts.
  static Result<std::unique_ptr<Machine>> create(MachineConfig config);
  ~Machine();

  std::recursive_mutex& mutex() { return mutex_; }
  bus::IoBus& io_bus() { return io_; }
  bus::MmioBus& mmio_bus() { return mmio_; }
  Pic8259Pair& pic_pair();
  InterruptController& pic();
  Uart16550& com1();
  Uart16550& com2();
  PciHost& pci();

  /// Bring every timed device up to guest time `now_ns` (mutex() held).
  void advance_time(uint64_t now_ns);
  /// The earliest deadline of any timed device, or TimedDevice::kNever.
  uint64_t next_deadline_ns() const;
  /// When a halted CPU must wake at the latest: the earliest deadline, where
  /// a deadline that may be met late (TimedDevice::deadline_may_be_late)
  /// counts `slack_ns` later; TimedDevice::kNever if there is none.
  uint64_t next_wake_ns(uint64_t slack_ns) const;

 private:
  struct Devices;
  Machine() = default;
  std::recursive_mutex mutex_;
  bus::IoBus io_;
  bus::MmioBus mmio_;
  std::unique_ptr<Devices> devices_;
};

}  // namespace twoostwo::vmcore
