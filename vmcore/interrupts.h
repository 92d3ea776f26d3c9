// What a CPU engine needs from the interrupt controller, and what the Monitor
// needs from devices that keep time.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>

namespace twoostwo::vmcore {

/// The CPU's view of the 8259A PIC pair: the INTR pin and the INTA cycle.
/// Both CPU engines inject external interrupts only through this interface
/// (no in-kernel irqchip under KVM), so they share one device model.
class InterruptController {
 public:
  virtual ~InterruptController() = default;
  /// True while the master PIC drives INTR (an unmasked request is pending
  /// with higher priority than any in service).
  virtual bool interrupt_pending() const = 0;
  /// The INTA cycle: returns the vector to deliver and moves the request to
  /// in-service (8259A datasheet, "Interrupt sequence"). If nothing is pending
  /// it returns the spurious vector (IRQ 7 / IRQ 15 of the base).
  virtual uint8_t acknowledge() = 0;
  /// Called (from whichever thread raised an IRQ) whenever INTR may have
  /// become asserted, so that a halted or running CPU can be woken.
  std::function<void()> on_intr_raised;
};

/// A device with its own time base (the 8254 PIT, the RTC's periodic
/// interrupt). The Monitor calls `advance(now)` before every CPU run and
/// sleeps a halted CPU no longer than `next_deadline_ns()`.
class TimedDevice {
 public:
  static constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();
  virtual ~TimedDevice() = default;
  /// Bring the device's state up to guest time `now_ns` (raising IRQs due).
  virtual void advance(uint64_t now_ns) = 0;
  /// The guest time at which the device next needs `advance`, or kNever.
  virtual uint64_t next_deadline_ns() const = 0;
  /// Whether that deadline is a single event that loses nothing when it is
  /// met late (a one-shot timer, whose guest handler reads the time itself),
  /// as opposed to one of a periodic series whose late edges are lost. A
  /// halted CPU may then sleep past it by the Monitor's timer slack
  /// (MonitorOptions::timer_slack_ns). Default: false.
  virtual bool deadline_may_be_late() const { return false; }
};

}  // namespace twoostwo::vmcore
