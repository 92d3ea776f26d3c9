// The Intel 8254 programmable interval timer of the PC, and the timer bits of
// System Control Port B (port 0x61).
//
// Ports (8-bit; wider accesses are split into bytes, see byte_registers.h):
//   0x40-0x42  counter 0-2 data (count writes, count/status reads)
//   0x43       control word: mode set, counter latch (RW = 00), read-back (SC = 11)
//   0x61       (port61_device()) bit 0 = channel 2 GATE (read/write),
//              bit 1 = speaker data enable (stored), bits 2-3 stored,
//              bit 4 = refresh toggle (flips every 15.085 us of guest time),
//              bit 5 = channel 2 OUT (read-only), bits 6-7 read 0 (no NMI sources).
//
// Units: counts of the 1.193182 MHz input clock (kInputHz); guest time in ns.
// Time comes only from the Clock given at construction: a counter's value is
// computed from clock.now_ns() when it is read, never from ticks delivered.
// Tick k of the input clock is at guest time ceil(k * 1e9 / kInputHz) ns.
//
// Behaviour: Intel 8254 datasheet (order no. 231164), "Operation" (modes 0-5,
// GATE effects, the count loaded one CLK after the write is taken as loaded at
// the write), "Read operations" (counter latch, read-back command and status
// byte: OUT, null count, RW, mode, BCD). Cross-checked with QEMU
// hw/timer/i8254.c and hw/audio/pcspk.c (port 0x61). Linux uses channel 0 in
// mode 2 (periodic clockevent) and mode 4 (oneshot clockevent), mode 0 with
// count 0 on shutdown (arch/x86/kernel/i8253.c, drivers/clocksource/i8253.c),
// and channel 2 in mode 0 gated by port 0x61 bit 0, polling port 0x61 bit 5
// and the counter MSB (arch/x86/kernel/tsc.c pit_calibrate_tsc,
// quick_pit_calibrate).
//
// Modelled: binary and BCD counting; lobyte/hibyte/lohi access (mode 0: the
// first byte of a lohi write stops the counter, as in the datasheet); mode 0
// (OUT low until terminal count), 1 (one-shot, triggered by a GATE rising
// edge), 2 (rate generator: OUT low for the last count of each period),
// 3 (square wave: OUT high for ceil(N/2), low for floor(N/2); the count
// decrements by two as in QEMU), 4 (strobe: OUT low for one count at TC),
// 5 (strobe triggered by GATE). GATE low suspends modes 0/4 and stops
// modes 2/3 with OUT high (a rising edge reloads). The gates of channels 0
// and 1 are tied high, so modes 1 and 5 never start there (as on a PC).
// Deviation: a new count written in modes 2/3 takes effect at once instead
// of at the end of the current period (Linux always writes the control word
// first, which restarts the counter anyway).
//
// IRQ 0: each rising edge of channel 0's OUT is delivered as one pulse on
// the IrqLine (set(true) then set(false)); the PIC's IRQ 0 is edge-triggered
// (its ELCR bit is fixed at 0). If advance() comes late by several periods,
// the line is pulsed once and the missed edges are counted in
// coalesced_edges(): Linux copes with lost ticks, a burst of stale
// interrupts would be worse.
//
// Not thread-safe: the Monitor serialises all calls.
#pragma once

#include <array>
#include <cstdint>

#include "vmcore/bus/io_device.h"
#include "vmcore/clock.h"
#include "vmcore/devices/byte_registers.h"
#include "vmcore/interrupts.h"

namespace twoostwo::vmcore {

class Pit8254 final : public bus::IoDevice, public TimedDevice {
 public:
  static constexpr uint64_t kInputHz = 1'193'182;

  /// `clock` and `irq0` must outlive the device. Until programmed, every
  /// counter waits for a mode and a count (no IRQ 0).
  Pit8254(const Clock& clock, bus::IrqLine& irq0);
  Pit8254(const Pit8254&) = delete;
  Pit8254& operator=(const Pit8254&) = delete;

  // IoDevice: register at 0x40, 4 ports.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  std::string_view name() const override { return "pit 0x40"; }

  /// Register at 0x61, 1 port.
  bus::IoDevice& port61_device() { return port61_io_; }

  // TimedDevice: pulses IRQ 0 on channel 0's rising OUT edges due by now_ns.
  void advance(uint64_t now_ns) override;
  uint64_t next_deadline_ns() const override;
  /// True when channel 0 is in mode 0 or 4 (Linux's oneshot clockevent):
  /// its next edge is the only one, and the guest reads the clocksource
  /// when the interrupt comes (kernel/time/tick-sched.c
  /// tick_do_update_jiffies64 counts the ticks that passed). Modes 2 and 3
  /// (the periodic clockevent) lose ticks when late: false.
  bool deadline_may_be_late() const override;

  /// OUT of `channel` (0-2) at the clock's current time.
  bool out(unsigned channel) const;
  /// IRQ 0 pulses raised so far, and channel-0 edges folded into them.
  uint64_t irq0_pulses() const { return irq0_pulses_; }
  uint64_t coalesced_edges() const { return coalesced_edges_; }
  /// Guest mistakes: wide or out-of-range accesses, invalid BCD counts,
  /// reads of the write-only control port.
  uint64_t bad_accesses() const { return bad_; }

  /// Input-clock ticks elapsed at `ns`, and the first ns at which tick
  /// `tick` has elapsed (exact integer arithmetic, no overflow).
  static uint64_t ticks_at(uint64_t ns);
  static uint64_t ns_of_tick(uint64_t tick);

 private:
  static constexpr uint64_t kNoEdge = ~uint64_t{0};

  struct Channel {
    uint8_t mode = 0;
    uint8_t rw = 3;             // 1 lobyte, 2 hibyte, 3 lobyte then hibyte
    bool bcd = false;
    bool gate = true;
    uint32_t reload = 0x10000;  // N in counts (1..65536, BCD 1..10000)
    bool loaded = false;        // a count was written since the control word
    bool triggered = false;     // counting has begun (modes 1/5: GATE edge)
    bool running = false;       // d advances (false: suspended by GATE)
    uint64_t start_tick = 0;    // tick at which d was 0 (when running)
    uint64_t frozen_d = 0;      // d while not running
    bool null_count = true;
    bool write_hi_next = false;
    uint8_t write_lo = 0;
    bool read_hi_next = false;
    uint8_t latch_state = 0;    // 0 none, 1 lo, 2 hi, 3 lo then hi, 4 hi (after lo)
    uint16_t latched = 0;
    bool status_latched = false;
    uint8_t status = 0;
  };

  uint64_t now_tick() const { return ticks_at(clock_.now_ns()); }
  uint64_t elapsed(const Channel& c, uint64_t tick) const;
  bool out_at(const Channel& c, uint64_t tick) const;
  uint16_t count_at(const Channel& c, uint64_t tick) const;
  uint64_t next_edge_after(uint64_t tick) const;  // channel 0
  /// Channel 0's next edge after input tick `tick`.
  void reschedule(uint64_t tick);
  /// Load count `raw` into `c` at input tick `tick` (counting starts there).
  void load_count(Channel& c, uint16_t raw, uint64_t tick);
  void set_gate2(bool gate);
  /// Latch `c`'s count as it is at input tick `tick`.
  void latch_count(Channel& c, uint64_t tick);
  uint8_t read_byte(uint32_t offset);
  void write_byte(uint32_t offset, uint8_t value);
  void write_control(uint8_t value, uint64_t tick);
  uint8_t read_port61();
  void write_port61(uint8_t value);

  const Clock& clock_;
  bus::IrqLine& irq0_;
  std::array<Channel, 3> ch_{};
  uint64_t next_edge_ = kNoEdge;  // tick of channel 0's next rising OUT edge
  uint64_t irq0_pulses_ = 0;
  uint64_t coalesced_edges_ = 0;
  uint8_t port61_bits_ = 0;  // bits 1-3 as written
  uint64_t bad_ = 0;
  ByteRegisters port61_io_;
};

}  // namespace twoostwo::vmcore
