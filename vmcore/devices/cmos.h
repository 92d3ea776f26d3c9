// The PC's CMOS RAM and real-time clock: a Motorola MC146818A-compatible RTC
// with 128 bytes of battery-backed RAM.
//
// Ports (8-bit; wider accesses are split into bytes, see byte_registers.h):
//   0x70  index (write-only; bit 7 = NMI disable, stored, masked off the index)
//   0x71  data of the indexed byte
//
// Registers (MC146818A datasheet, "Address map", "Registers A-D"):
//   0x00-0x09  seconds, seconds alarm, minutes, minutes alarm, hours, hours
//              alarm, day of week (1 = Sunday), day of month, month, year
//              (two digits). BCD or binary per register B bit 2 (DM), 12-hour
//              (bit 7 = PM) or 24-hour per register B bit 1.
//   0x0A  A: bit 7 UIP (read-only) is set for the last 244 us before each
//         second's update and never longer; bits 6-0 (divider, rate) stored.
//   0x0B  B: bit 7 SET stops the clock's updates so the guest can write the
//         time (setting SET also clears UIE, as in the datasheet); when SET is
//         cleared the time written becomes the clock's time. Bits 6-4 PIE,
//         AIE, UIE; bit 2 DM (1 = binary); bit 1 24/12 (1 = 24 h).
//   0x0C  C: IRQF, PF, AF, UF; reading clears it (and releases IRQ 8).
//   0x0D  D: 0x80 (valid RAM and time), read-only.
//   0x32  century (in the time registers' format), part of the clock.
//   everything else: RAM. At construction, as the PC BIOS / QEMU hw/rtc/
//   mc146818rtc.c and hw/i386/pc.c set it: 0x14 equipment (0x02, FPU),
//   0x15-0x16 base memory in KiB (640), 0x17-0x18 and 0x30-0x31 memory above
//   1 MiB in KiB (capped at 0xFFFF), 0x34-0x35 memory above 16 MiB in 64 KiB
//   units (capped at 0xFFFF), 0x5B-0x5D memory above 4 GiB in 64 KiB units,
//   0x2E-0x2F checksum (big-endian sum of 0x10-0x2D).
//
// Time: the RTC shows a base wall-clock time (host UTC at construction, or a
// fixed time given for reproducible runs) plus the guest time of the Clock.
// Linux reads it in arch/x86/kernel/rtc.c / drivers/rtc/rtc-mc146818-lib.c
// (mc146818_get_time: waits while UIP is set, 24-hour mode required by
// rtc-cmos) and writes it back with SET (mc146818_set_time).
//
// Interrupts (IRQ 8, optional for Linux): PF at the periodic rate of
// register A (RS 1-15 of a 32.768 kHz base), UF at each update (once per
// second, not while SET), AF at an update whose time matches the alarm
// registers (0xC0-0xFF = don't care). IRQ 8 is asserted while C's IRQF is
// set and released when C is read. The device is a TimedDevice so the
// Monitor can deliver them on time; flags are also brought up to date
// whenever C is read.
//
// Not thread-safe: the Monitor serialises all calls.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "vmcore/bus/io_device.h"
#include "vmcore/clock.h"
#include "vmcore/interrupts.h"

namespace twoostwo::vmcore {

struct CmosConfig {
  /// Guest RAM size in bytes.
  uint64_t ram_bytes = 128ull << 20;
  /// RAM at and above this guest-physical address is mapped above 4 GiB
  /// (the PCI hole), as in the Monitor's memory map (e.g. 0xE0000000).
  uint64_t low_ram_limit = 0xE000'0000ull;
  /// The RTC's time at guest time 0, in seconds since 1970-01-01 UTC;
  /// unset = the host's UTC time at construction.
  std::optional<int64_t> start_unix_seconds;
};

class Cmos final : public bus::IoDevice, public TimedDevice {
 public:
  /// `clock` and `irq8` must outlive the device.
  Cmos(const Clock& clock, bus::IrqLine& irq8, const CmosConfig& config);
  Cmos(const Cmos&) = delete;
  Cmos& operator=(const Cmos&) = delete;

  // IoDevice: register at 0x70, 2 ports.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  std::string_view name() const override { return "cmos 0x70"; }

  // TimedDevice: periodic / update / alarm interrupts due by now_ns.
  void advance(uint64_t now_ns) override;
  uint64_t next_deadline_ns() const override;

  /// The RTC's current time in seconds since the Unix epoch.
  int64_t unix_seconds() const;
  /// NMI disable bit of the last index write (port 0x70 bit 7).
  bool nmi_disabled() const { return nmi_disabled_; }
  /// Guest mistakes: reads of the write-only index port, writes to C/D,
  /// wide or out-of-range accesses, invalid times written.
  uint64_t bad_accesses() const { return bad_; }

 private:
  int64_t wall_ns() const;  // RTC time in ns since the epoch, now
  uint8_t encode(unsigned value) const;
  unsigned decode(uint8_t value) const;
  uint8_t encode_hour(unsigned hour) const;
  /// Fill ram_[0,2,4,6,7,8,9,0x32] with the time `unix_seconds`.
  void store_time(int64_t unix_seconds);
  /// The time held in ram_ (for SET), or nullopt if it is not a valid date.
  std::optional<int64_t> stored_time() const;
  uint8_t read_data(uint8_t index);
  void write_data(uint8_t index, uint8_t value);
  /// Set PF/UF/AF for events in (flags_ns_, now_ns] and drive IRQ 8.
  void update_flags(uint64_t now_ns);
  uint64_t periodic_ticks() const;  // period in 32.768 kHz ticks, 0 = off

  const Clock& clock_;
  bus::IrqLine& irq8_;
  std::array<uint8_t, 128> ram_{};
  int64_t base_ns_ = 0;  // RTC wall time (ns since epoch) at guest time 0
  uint8_t index_ = 0;
  bool nmi_disabled_ = false;
  uint64_t flags_ns_ = 0;  // guest time up to which C's flags are accounted
  bool irq_level_ = false;
  uint64_t bad_ = 0;
};

}  // namespace twoostwo::vmcore
