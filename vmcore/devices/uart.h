// A National Semiconductor PC16550D UART (the "16550A" Linux reports), as at
// COM1 0x3F8 / IRQ 4 and COM2 0x2F8 / IRQ 3.
//
// Ports (8-bit; wider accesses are split into bytes, see byte_registers.h),
// offsets from the base:
//   0  read RBR / write THR; DLL when LCR.DLAB (bit 7) is set
//   1  IER (bits 0-3: RDA, THRE, line status, modem status); DLM with DLAB
//   2  read IIR / write FCR (also under LCR = 0xBF: there is no EFR)
//   3  LCR      4  MCR (bits 0-4: DTR, RTS, OUT1, OUT2, LOOP)
//   5  LSR      6  MSR      7  SCR (scratch)
//
// Behaviour: PC16550D datasheet, "Register descriptions" (table 5 "Interrupt
// control functions" for IIR priorities: line status > received data /
// character timeout > THR empty > modem status); cross-checked with QEMU
// hw/char/serial.c and kvmtool hw/serial.c; probed by Linux
// drivers/tty/serial/8250/8250_port.c autoconfig() (IER scratch test,
// loopback MSR test with MCR = 0x1A → MSR & 0xF0 = 0x90, FCR → IIR bits 7-6 =
// 11, EFR probes under LCR 0x80 / 0xBF that must read a non-zero IIR, the
// 16750 IIR bit 5 probe, the IER UUE probe, size_fifo() in loopback) and
// serial8250_do_startup (the THRE re-assertion test), so Linux reports
// "ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A".
//
// Modelled:
// - Output is instant: LSR THRE and TEMT are always set; each THR write
//   calls the sink with that byte (not in loopback mode).
// - THRE interrupt (the 8250 rule): pending after every THR write and when
//   IER bit 1 goes from 0 to 1; cleared by reading IIR while it is the
//   reported interrupt, by a THR write, or by clearing IER bit 1.
// - Input: receive() appends to a host input queue of kInputLimit bytes
//   (bytes beyond are dropped and counted in input_dropped()) that refills
//   the 16-byte receive FIFO (1-byte holding register when FIFOs are off)
//   whenever it has room, so host input is never overrun. Received data
//   interrupt: IIR 0x04 when the FIFO holds at least the FCR trigger level
//   (1/4/8/14), else the character timeout 0x0C at once (there is no bit
//   timing). A FIFO reset (FCR bit 1 or toggling FCR bit 0) discards what
//   the FIFO holds, as on the chip: host input sent before the guest driver
//   opened the port may lose up to 16 bytes.
// - Loopback (MCR bit 4): THR bytes go to the receive FIFO (overrun sets
//   LSR OE when full), host input waits in its queue, MSR reflects MCR
//   (CTS = RTS, DSR = DTR, RI = OUT1, DCD = OUT2). Otherwise MSR shows
//   DCD | DSR | CTS. Delta bits are set on changes and cleared by reading MSR.
// - Line status: LSR OE (loopback overrun only) until LSR is read.
// - The interrupt output reaches the IrqLine only while MCR OUT2 (bit 3) is
//   set, as on the PC (OUT2 gates the ISA IRQ driver; Linux sets it when it
//   opens the port). IIR reports pending interrupts regardless.
// - Baud rate, word length, parity and break are stored and ignored.
//
// Not thread-safe: the Monitor serialises all calls (receive() included).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <string>

#include "vmcore/bus/io_device.h"

namespace twoostwo::vmcore {

class Uart16550 final : public bus::IoDevice {
 public:
  /// Receives each byte the guest transmits (a span of one byte per THR write).
  using Sink = std::function<void(std::span<const uint8_t>)>;
  static constexpr size_t kFifoSize = 16;
  static constexpr size_t kInputLimit = 64 * 1024;

  /// `name` e.g. "uart 0x3f8"; `irq` must outlive the device; `sink` may be empty.
  Uart16550(std::string name, bus::IrqLine& irq, Sink sink);
  Uart16550(const Uart16550&) = delete;
  Uart16550& operator=(const Uart16550&) = delete;

  // IoDevice: register at the base (0x3F8, 0x2F8), 8 ports.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  std::string_view name() const override { return name_; }

  /// Bytes arriving on the serial line from the host.
  void receive(std::span<const uint8_t> bytes);

  /// Host bytes queued (FIFO included) and not yet read by the guest.
  size_t pending_input() const { return input_.size() + rx_.size(); }
  /// Host bytes dropped because the input queue was full.
  uint64_t input_dropped() const { return input_dropped_; }
  /// The divisor latch (115200 / divisor = baud rate).
  uint16_t divisor() const { return divisor_; }
  /// Guest mistakes: wide or out-of-range accesses, writes to LSR/MSR.
  uint64_t bad_accesses() const { return bad_; }

 private:
  uint8_t read_byte(uint32_t offset);
  void write_byte(uint32_t offset, uint8_t value);
  bool fifo_enabled() const { return (fcr_ & 0x01) != 0; }
  bool loopback() const { return (mcr_ & 0x10) != 0; }
  size_t rx_capacity() const { return fifo_enabled() ? kFifoSize : 1; }
  void refill();
  uint8_t interrupt_id() const;  // IIR bits 3-0
  uint8_t modem_lines() const;   // MSR bits 7-4 from MCR / the fixed lines
  void set_mcr(uint8_t value);
  void update_irq();

  std::string name_;
  bus::IrqLine& irq_;
  Sink sink_;
  std::deque<uint8_t> input_;  // host input not yet in the receive FIFO
  std::deque<uint8_t> rx_;     // receive FIFO
  uint8_t last_rx_ = 0;
  uint16_t divisor_ = 12;      // 9600 baud
  uint8_t ier_ = 0;
  uint8_t fcr_ = 0;
  uint8_t lcr_ = 0;
  uint8_t mcr_ = 0;
  uint8_t lsr_errors_ = 0;     // OE
  uint8_t msr_ = 0;
  uint8_t scr_ = 0;
  bool thr_ipending_ = false;
  bool irq_level_ = false;
  uint64_t input_dropped_ = 0;
  uint64_t bad_ = 0;
};

}  // namespace twoostwo::vmcore
