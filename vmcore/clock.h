// Time sources for the machine model (issue 2, "A Clock interface with two
// sources"). The PIT, the RTC and the guest TSC read time only from a Clock, so
// a run can be made repeatable by switching to the virtual clock.
#pragma once

#include <atomic>
#include <cstdint>

namespace twoostwo::vmcore {

/// Monotonic guest time in nanoseconds since the machine was created.
class Clock {
 public:
  virtual ~Clock() = default;
  /// Nanoseconds since the clock's epoch (machine creation); never decreases.
  virtual uint64_t now_ns() const = 0;
  /// True if time advances only when the CPU engine executes instructions
  /// (the virtual clock): an idle (HLT) CPU must then skip ahead to the next
  /// device deadline with `skip_to` instead of sleeping.
  virtual bool is_virtual() const = 0;
  /// Virtual clock only: jump forward to `ns` (no-op if in the past).
  virtual void skip_to(uint64_t ns) { (void)ns; }
};

/// Host time: CLOCK_MONOTONIC relative to construction.
class HostClock final : public Clock {
 public:
  HostClock();
  uint64_t now_ns() const override;
  bool is_virtual() const override { return false; }

 private:
  uint64_t epoch_ns_;
};

/// Virtual time derived from instructions executed: now = instructions ×
/// ns_per_instruction (+ skips made while the CPU was halted). Advanced by
/// the CPU engine that owns it; read from any thread.
class VirtualClock final : public Clock {
 public:
  /// `ns_per_instruction`: nominal guest speed, e.g. 1 for a 1 GIPS CPU.
  explicit VirtualClock(uint64_t ns_per_instruction = 1) : ns_per_instruction_(ns_per_instruction) {}
  uint64_t now_ns() const override { return now_.load(std::memory_order_acquire); }
  bool is_virtual() const override { return true; }
  void skip_to(uint64_t ns) override;
  /// Account `count` executed instructions.
  void advance_instructions(uint64_t count);
  uint64_t instructions() const { return instructions_.load(std::memory_order_acquire); }

 private:
  uint64_t ns_per_instruction_;
  std::atomic<uint64_t> now_{0};
  std::atomic<uint64_t> instructions_{0};
};

}  // namespace twoostwo::vmcore
