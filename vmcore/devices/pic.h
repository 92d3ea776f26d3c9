// The PC's two cascaded Intel 8259A programmable interrupt controllers and
// the PIIX edge/level control registers (ELCR).
//
// Ports (all 8-bit; wider accesses are split into bytes, see byte_registers.h):
//   master 0x20 (command: ICW1/OCW2/OCW3; read IRR/ISR/poll)
//          0x21 (data: ICW2-4 during initialisation, else OCW1 = IMR)
//   slave  0xA0, 0xA1 (same), cascaded on the master's IR2
//   ELCR   0x4D0 (IRQ 0-7), 0x4D1 (IRQ 8-15); bit set = level-triggered.
//          IRQ 0, 1, 2, 8 and 13 are always edge (masks 0xF8 / 0xDE, as on
//          the PIIX3 and in QEMU).
//
// Behaviour: Intel 8259A datasheet (order no. 231468): "Initialization
// command words" (ICW1-4), "Operation command words" (OCW1-3), "Fully nested
// mode", "End of interrupt", "Automatic rotation", "Special mask mode",
// "Poll command", "Cascade mode", and the note on spurious IR7 (a request that
// went away before INTA yields the IR7 vector without setting ISR).
// Cross-checked with QEMU hw/intc/i8259.c and Bochs iodev/pic.cc; exercised by
// Linux arch/x86/kernel/i8259.c (init_8259A, mask_and_ack_8259A,
// i8259A_irq_real).
//
// Modelled: the ICW1-ICW4 sequence (ICW1 clears IMR/ISR, the edge latches and
// special mask mode, and selects IRR for reading); OCW1; OCW2 non-specific,
// specific and rotating EOIs, set priority and rotate-in-AEOI; OCW3 read
// IRR/ISR, poll and special mask mode; auto-EOI (ICW4 bit 1); special fully
// nested mode on the master (ICW4 bit 4); ICW1 LTIM (all inputs level) as
// well as per-input ELCR. Edge inputs latch a request in IRR on a rising edge
// and keep it until acknowledged (the line may drop meanwhile); level inputs'
// IRR follows the line. The slave's INTR drives the master's IR2, an edge
// input as on the PIIX: if a slave request goes away after the master latched
// IR2, INTA returns the slave's IR7 vector (spurious IRQ 15) with the
// master's ISR bit 2 set, as real hardware does and Linux expects. The
// cascade is fixed at IR2 whatever ICW3 says; single mode is ignored.
// 8080/85 mode and buffered mode are not modelled (the vector is always
// base | irq, as in 8086 mode).
//
// Not thread-safe: the Monitor serialises all calls.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "vmcore/bus/io_device.h"
#include "vmcore/devices/byte_registers.h"
#include "vmcore/interrupts.h"

namespace twoostwo::vmcore {

class Pic8259Pair final : public InterruptController {
 public:
  Pic8259Pair();
  Pic8259Pair(const Pic8259Pair&) = delete;
  Pic8259Pair& operator=(const Pic8259Pair&) = delete;

  /// Register at 0x20 (2 ports).
  bus::IoDevice& master_device() { return master_io_; }
  /// Register at 0xA0 (2 ports).
  bus::IoDevice& slave_device() { return slave_io_; }
  /// Register at 0x4D0 (2 ports).
  bus::IoDevice& elcr_device() { return elcr_io_; }

  /// Drive ISA IRQ `irq` (0-15) to `level` (true = asserted). IRQ 2 is the
  /// cascade input and cannot be driven from outside; it and irq >= 16 are
  /// ignored and counted in bad_accesses(). Several devices sharing one IRQ
  /// must OR their levels before calling.
  void set_irq(unsigned irq, bool level);

  /// An IrqLine driving set_irq(irq) for a device; valid as long as the
  /// PIC. `irq` must be 0-15 (an out-of-range irq yields a line that only
  /// counts bad accesses).
  bus::IrqLine& line(unsigned irq);

  /// Set the ELCR as firmware would (bit n = IRQ n level-triggered), e.g.
  /// to make a PCI NIC's IRQ level-triggered. Fixed-edge IRQs are masked off.
  void set_elcr(uint16_t mask);
  uint16_t elcr() const;

  // InterruptController
  bool interrupt_pending() const override;
  uint8_t acknowledge() override;

  /// Guest mistakes: wide accesses, out-of-range ports, set_irq(2 or >15).
  uint64_t bad_accesses() const { return bad_; }

  /// Inspection for tests and fault reports.
  uint8_t irr(bool slave) const { return chip(slave).irr; }
  uint8_t isr(bool slave) const { return chip(slave).isr; }
  uint8_t imr(bool slave) const { return chip(slave).imr; }

 private:
  struct Chip {
    uint8_t irr = 0;        // interrupt request register
    uint8_t isr = 0;        // in-service register
    uint8_t imr = 0;        // interrupt mask register
    uint8_t lines = 0;      // current level of each input
    uint8_t elcr = 0;       // level-triggered inputs (ELCR)
    uint8_t elcr_mask = 0;  // ELCR bits that can be set
    uint8_t vector_base = 0;
    uint8_t priority_add = 0;  // IR with lowest priority is (priority_add - 1) & 7
    uint8_t init_state = 0;    // 0 ready, 1 expect ICW2, 2 ICW3, 3 ICW4
    uint8_t icw3 = 0;
    bool icw4_needed = false;
    bool single = false;
    bool ltim = false;
    bool auto_eoi = false;
    bool rotate_on_auto_eoi = false;
    bool special_fully_nested = false;
    bool special_mask = false;
    bool read_isr = false;
    bool poll = false;
    uint8_t level_mask() const { return ltim ? 0xFF : elcr; }
  };

  class Line final : public bus::IrqLine {
   public:
    void set(bool level) override { pic->set_irq(irq, level); }
    Pic8259Pair* pic = nullptr;
    unsigned irq = 0;
  };

  Chip& chip(bool slave) { return slave ? slave_ : master_; }
  const Chip& chip(bool slave) const { return slave ? slave_ : master_; }

  static int priority_of(const Chip& c, uint8_t mask);
  /// The IR the chip would interrupt for now, or -1.
  static int pending_irq(const Chip& c, bool is_master);
  static void set_input(Chip& c, unsigned ir, bool level);
  /// INTA on one chip: ISR set (unless AEOI), edge request cleared.
  static void intack(Chip& c, unsigned ir);
  /// Recompute the cascade and INTR; call on_intr_raised on a rising INTR.
  void update();

  uint8_t read_port(bool slave, uint32_t offset);
  void write_port(bool slave, uint32_t offset, uint8_t value);
  void write_command(Chip& c, uint8_t value);
  void write_data(Chip& c, uint8_t value);
  uint8_t poll_read(bool slave);

  Chip master_;
  Chip slave_;
  bool intr_ = false;
  uint64_t bad_ = 0;
  std::array<Line, 17> lines_{};  // 16 = sink for out-of-range irqs
  ByteRegisters master_io_;
  ByteRegisters slave_io_;
  ByteRegisters elcr_io_;
};

}  // namespace twoostwo::vmcore
