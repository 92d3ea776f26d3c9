// Small legacy ports of the PC that Linux touches during boot.
//
// Ports (8-bit; wider accesses are split into bytes, see byte_registers.h):
//   0x80  POST code / I/O delay port: writes are kept (post_code()), reads
//         return the last value written. Linux writes it for I/O delays
//         (outb_p, io_delay=0x80) and in the 8250 probe.
//   0xED  alternative I/O delay port (io_delay=0xed): writes ignored, reads 0xFF.
//   0x92  System Control Port A (PS/2 "fast A20 and reset"): reads 0x02 | the
//         last written bit 0 (bit 1 = A20 enabled; A20 is always on here);
//         writing bit 0 = 1 pulses the fast reset line and calls on_reset.
//         Linux's boot code (arch/x86/boot/a20.c) sets bit 1; reboot=k
//         normally uses the i8042 instead.
//
// Behaviour from: IBM PS/2 Hardware Interface Technical Reference (port 0x92),
// QEMU hw/i386/port92.c and hw/i386/pc.c (ioport80), Linux
// arch/x86/kernel/io_delay.c.
//
// Not thread-safe: the Monitor serialises all calls.
#pragma once

#include <cstdint>
#include <functional>

#include "vmcore/bus/io_device.h"
#include "vmcore/devices/byte_registers.h"

namespace twoostwo::vmcore {

class MiscPorts final {
 public:
  /// `on_reset` is called on a fast reset through port 0x92; may be empty.
  explicit MiscPorts(std::function<void()> on_reset);
  MiscPorts(const MiscPorts&) = delete;
  MiscPorts& operator=(const MiscPorts&) = delete;

  /// Register at 0x80, 1 port.
  bus::IoDevice& post_device() { return post_io_; }
  /// Register at 0xED, 1 port.
  bus::IoDevice& delay_device() { return delay_io_; }
  /// Register at 0x92, 1 port.
  bus::IoDevice& port92_device() { return port92_io_; }

  uint8_t post_code() const { return post_code_; }
  uint64_t bad_accesses() const { return bad_; }

 private:
  std::function<void()> on_reset_;
  uint8_t post_code_ = 0;
  uint8_t port92_ = 0x02;
  uint64_t bad_ = 0;
  ByteRegisters post_io_;
  ByteRegisters delay_io_;
  ByteRegisters port92_io_;
};

}  // namespace twoostwo::vmcore
