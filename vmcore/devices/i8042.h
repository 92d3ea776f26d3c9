// The PC/AT keyboard controller (Intel 8042 / PS/2 "i8042") with a PS/2
// keyboard attached and no auxiliary (mouse) device.
//
// Ports (8-bit; wider accesses are split into bytes, see byte_registers.h):
//   0x60  read: output buffer; write: data (a controller command's parameter,
//         else a byte for the keyboard)
//   0x64  read: status register; write: controller command
//   Two IoDevices, data_device() at 0x60 and command_device() at 0x64, since
//   0x61 (PIT gate / speaker) lies between them.
//
// Status (bit: meaning): 0 OBF output buffer full, 1 IBF (always 0: commands
// complete at once), 2 SYS (command byte bit 2), 3 A2 (last write was to
// 0x64), 4 keyboard not inhibited (1), 5 AUX data (always 0), 6-7 0.
// Command byte (RAM byte 0): 0 keyboard IRQ enable, 1 aux IRQ enable, 2 SYS,
// 4 keyboard disable, 5 aux disable, 6 scan-code translation. Initial 0x45,
// what a PC BIOS leaves (translated, SYS, keyboard interrupts on).
//
// Controller commands: 0x20-0x3F read RAM (0x20 = command byte), 0x60-0x7F
// write RAM, 0xA7/0xA8 aux disable/enable, 0xA9 aux interface test → 0x01
// (clock line stuck: there is no aux port), 0xAA self-test → 0x55, 0xAB
// keyboard interface test → 0x00, 0xAD/0xAE keyboard disable/enable, 0xC0
// read input port → 0x80, 0xD0 read output port, 0xD1 write output port
// (bit 0 = 0 resets the system), 0xD2 write keyboard output buffer, 0xD3/0xD4
// (aux) swallow their parameter without answer, 0xF0-0xFF pulse output
// lines (bit 0 clear, e.g. 0xFE, resets the system). Unknown commands are
// counted in bad_accesses().
//
// Keyboard (PS/2 keyboard command set, as atkbd uses it): 0xFF reset → 0xFA
// 0xAA; 0xF2 identify → 0xFA 0xAB 0x83 (0x41 when translating, as QEMU);
// 0xEE echo → 0xEE; 0xED, 0xF0 (scan set; parameter 0 reads it back), 0xF3
// take a parameter, each byte ACKed 0xFA; 0xF4-0xF6 and 0xF7-0xFD → 0xFA;
// 0xFE resend → the last byte sent; anything else → 0xFE (resend), as a real
// keyboard answers commands it doesn't know (so atkbd's 0xEA probe fails).
//
// IRQ 1 (an IrqLine) is asserted while the output buffer holds a byte and
// command byte bit 0 is set; it drops and rises again for each further
// queued byte, so the edge-triggered PIC sees one edge per byte.
//
// Behaviour from: IBM PC/AT Technical Reference (keyboard controller),
// the "PS/2 keyboard and auxiliary device controller" notes, QEMU
// hw/input/pckbd.c and hw/input/ps2.c, and what Linux needs:
// drivers/input/serio/i8042.c (i8042_flush, i8042_controller_selftest,
// i8042_controller_init with its CTR reads/writes; booted with
// i8042.noaux), drivers/input/keyboard/atkbd.c (atkbd_probe: GETID,
// SETLEDS; atkbd_activate: ENABLE) and arch/x86/kernel/reboot.c (reboot=k
// writes 0xFE to 0x64, which calls on_reset).
//
// Not thread-safe: the Monitor serialises all calls.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <span>

#include "vmcore/bus/io_device.h"
#include "vmcore/devices/byte_registers.h"

namespace twoostwo::vmcore {

class I8042 final {
 public:
  static constexpr size_t kQueueLimit = 256;  // keyboard output bytes buffered

  /// `irq1` must outlive the device. `on_reset` is called when the guest
  /// pulses the reset line (0xFE, or 0xD1 with bit 0 clear); may be empty.
  I8042(bus::IrqLine& irq1, std::function<void()> on_reset);
  I8042(const I8042&) = delete;
  I8042& operator=(const I8042&) = delete;

  /// Register at 0x60, 1 port.
  bus::IoDevice& data_device() { return data_io_; }
  /// Register at 0x64, 1 port.
  bus::IoDevice& command_device() { return command_io_; }

  /// Scan codes from the host keyboard (as the keyboard sends them; with
  /// translation on, set-1 codes are expected). Bytes beyond kQueueLimit
  /// pending are dropped and counted in bad_accesses().
  void inject_keyboard(std::span<const uint8_t> bytes);

  uint8_t command_byte() const { return ram_[0]; }
  uint64_t bad_accesses() const { return bad_; }
  uint64_t resets() const { return resets_; }

 private:
  uint8_t read_data();
  uint8_t read_status();
  void write_data(uint8_t value);
  void write_command(uint8_t value);
  void keyboard_write(uint8_t value);
  void push(uint8_t byte);
  void kbd_send(uint8_t byte);
  void reset_system();
  void update_irq();

  bus::IrqLine& irq1_;
  std::function<void()> on_reset_;
  std::array<uint8_t, 32> ram_{};  // ram_[0] = command byte
  std::deque<uint8_t> out_;        // output buffer (front = what 0x60 reads)
  uint8_t pending_command_ = 0;    // controller command awaiting its parameter
  uint8_t kbd_pending_ = 0;        // keyboard command awaiting its parameter
  uint8_t kbd_last_sent_ = 0xFA;
  uint8_t last_read_ = 0;          // what 0x60 reads when the buffer is empty
  uint8_t scan_set_ = 2;
  uint8_t output_port_ = 0x03;     // bit 0 = no reset, bit 1 = A20 enabled
  bool last_write_command_ = false;
  bool irq_level_ = false;
  uint64_t bad_ = 0;
  uint64_t resets_ = 0;
  ByteRegisters data_io_;
  ByteRegisters command_io_;
};

}  // namespace twoostwo::vmcore
