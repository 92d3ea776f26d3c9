#include "vmcore/devices/pic.h"

namespace twoostwo::vmcore {

Pic8259Pair::Pic8259Pair()
    : master_io_("pic master 0x20", 2, bad_,
                 [this](uint32_t off) { return read_port(false, off); },
                 [this](uint32_t off, uint8_t v) { write_port(false, off, v); }),
      slave_io_("pic slave 0xa0", 2, bad_,
                [this](uint32_t off) { return read_port(true, off); },
                [this](uint32_t off, uint8_t v) { write_port(true, off, v); }),
      elcr_io_("pic elcr 0x4d0", 2, bad_,
               [this](uint32_t off) { return off == 0 ? master_.elcr : slave_.elcr; },
               [this](uint32_t off, uint8_t v) {
                 set_elcr(off == 0 ? uint16_t((elcr() & 0xFF00) | v)
                                   : uint16_t((elcr() & 0x00FF) | (v << 8)));
               }) {
  master_.elcr_mask = 0xF8;  // IRQ 0, 1, 2 always edge (PIIX3 ELCR1)
  slave_.elcr_mask = 0xDE;   // IRQ 8, 13 always edge (PIIX3 ELCR2)
  for (unsigned i = 0; i < lines_.size(); ++i) {
    lines_[i].pic = this;
    lines_[i].irq = i;
  }
}

void Pic8259Pair::set_irq(unsigned irq, bool level) {
  if (irq >= 16 || irq == 2) {
    ++bad_;
    return;
  }
  set_input(chip(irq >= 8), irq & 7, level);
  update();
}

bus::IrqLine& Pic8259Pair::line(unsigned irq) { return lines_[irq < 16 ? irq : 16]; }

void Pic8259Pair::set_elcr(uint16_t mask) {
  for (Chip* c : {&master_, &slave_}) {
    const uint8_t v = c == &master_ ? uint8_t(mask) : uint8_t(mask >> 8);
    c->elcr = v & c->elcr_mask;
    // Level inputs' requests follow their lines from now on.
    const uint8_t lvl = c->level_mask();
    c->irr = uint8_t((c->irr & ~lvl) | (c->lines & lvl));
  }
  update();
}

uint16_t Pic8259Pair::elcr() const { return uint16_t(master_.elcr | (slave_.elcr << 8)); }

bool Pic8259Pair::interrupt_pending() const { return intr_; }

uint8_t Pic8259Pair::acknowledge() {
  const int irq = pending_irq(master_, true);
  uint8_t vector;
  if (irq < 0) {
    // The request went away before INTA: IR7 without setting ISR (datasheet).
    vector = master_.vector_base | 7;
  } else if (irq == 2) {
    const int s = pending_irq(slave_, false);
    intack(master_, 2);
    if (s < 0) {
      vector = slave_.vector_base | 7;  // spurious IRQ 15
    } else {
      intack(slave_, static_cast<unsigned>(s));
      vector = uint8_t(slave_.vector_base | s);
    }
  } else {
    intack(master_, static_cast<unsigned>(irq));
    vector = uint8_t(master_.vector_base | irq);
  }
  update();
  return vector;
}

int Pic8259Pair::priority_of(const Chip& c, uint8_t mask) {
  if (mask == 0) return 8;
  int p = 0;
  while ((mask & (1u << ((p + c.priority_add) & 7))) == 0) ++p;
  return p;
}

int Pic8259Pair::pending_irq(const Chip& c, bool is_master) {
  uint8_t req = c.irr & ~c.imr;
  if (c.special_mask) {
    // Special mask mode: only the in-service level itself is inhibited.
    req &= ~c.isr;
    const int p = priority_of(c, req);
    return p == 8 ? -1 : (p + c.priority_add) & 7;
  }
  const int p = priority_of(c, req);
  if (p == 8) return -1;
  uint8_t in_service = c.isr;
  // Special fully nested mode: the slave may interrupt while IR2 is in service.
  if (is_master && c.special_fully_nested) in_service &= ~(1u << 2);
  return p < priority_of(c, in_service) ? (p + c.priority_add) & 7 : -1;
}

void Pic8259Pair::set_input(Chip& c, unsigned ir, bool level) {
  const uint8_t bit = uint8_t(1u << ir);
  if (c.level_mask() & bit) {
    c.irr = level ? c.irr | bit : c.irr & ~bit;
  } else if (level && !(c.lines & bit)) {
    c.irr |= bit;  // rising edge latched until INTA
  }
  c.lines = level ? c.lines | bit : c.lines & ~bit;
}

void Pic8259Pair::intack(Chip& c, unsigned ir) {
  const uint8_t bit = uint8_t(1u << ir);
  if (c.auto_eoi) {
    if (c.rotate_on_auto_eoi) c.priority_add = uint8_t((ir + 1) & 7);
  } else {
    c.isr |= bit;
  }
  if (!(c.level_mask() & bit)) c.irr &= ~bit;
}

void Pic8259Pair::update() {
  // The slave's INTR drives the master's IR2 (edge-triggered: ELCR bit 2 is 0).
  set_input(master_, 2, pending_irq(slave_, false) >= 0);
  const bool intr = pending_irq(master_, true) >= 0;
  const bool rose = intr && !intr_;
  intr_ = intr;
  if (rose && on_intr_raised) on_intr_raised();
}

uint8_t Pic8259Pair::poll_read(bool slave) {
  Chip& c = chip(slave);
  c.poll = false;
  const int irq = pending_irq(c, !slave);
  if (irq < 0) return 0;
  intack(c, static_cast<unsigned>(irq));
  update();
  return uint8_t(0x80 | irq);
}

uint8_t Pic8259Pair::read_port(bool slave, uint32_t offset) {
  Chip& c = chip(slave);
  if (c.poll) return poll_read(slave);
  if (offset == 0) return c.read_isr ? c.isr : c.irr;
  return c.imr;
}

void Pic8259Pair::write_port(bool slave, uint32_t offset, uint8_t value) {
  Chip& c = chip(slave);
  if (offset == 0) {
    write_command(c, value);
  } else {
    write_data(c, value);
  }
  update();
}

void Pic8259Pair::write_command(Chip& c, uint8_t v) {
  if (v & 0x10) {  // ICW1
    c.ltim = (v & 0x08) != 0;
    c.single = (v & 0x02) != 0;
    c.icw4_needed = (v & 0x01) != 0;
    c.imr = 0;
    c.isr = 0;
    c.irr &= c.level_mask();    // edge requests are dropped...
    c.lines &= c.level_mask();  // ...and the next high level counts as a rising edge
    c.priority_add = 0;
    c.special_mask = false;
    c.read_isr = false;
    c.poll = false;
    c.auto_eoi = false;
    c.rotate_on_auto_eoi = false;
    c.special_fully_nested = false;
    c.init_state = 1;
    return;
  }
  if (v & 0x08) {  // OCW3
    if (v & 0x04) c.poll = true;
    if (v & 0x02) c.read_isr = (v & 0x01) != 0;
    if (v & 0x40) c.special_mask = (v & 0x20) != 0;
    return;
  }
  // OCW2
  const unsigned ir = v & 7;
  switch (v >> 5) {
    case 0:  // rotate in automatic EOI mode (clear)
      c.rotate_on_auto_eoi = false;
      break;
    case 4:  // rotate in automatic EOI mode (set)
      c.rotate_on_auto_eoi = true;
      break;
    case 1:    // non-specific EOI
    case 5: {  // rotate on non-specific EOI
      const int p = priority_of(c, c.isr);
      if (p != 8) {
        const unsigned top = (unsigned(p) + c.priority_add) & 7;
        c.isr &= uint8_t(~(1u << top));
        if ((v >> 5) == 5) c.priority_add = uint8_t((top + 1) & 7);
      }
      break;
    }
    case 3:  // specific EOI
      c.isr &= uint8_t(~(1u << ir));
      break;
    case 7:  // rotate on specific EOI
      c.isr &= uint8_t(~(1u << ir));
      c.priority_add = uint8_t((ir + 1) & 7);
      break;
    case 6:  // set priority: IR `ir` becomes the lowest
      c.priority_add = uint8_t((ir + 1) & 7);
      break;
    default:  // 2: no operation
      break;
  }
}

void Pic8259Pair::write_data(Chip& c, uint8_t v) {
  switch (c.init_state) {
    case 1:  // ICW2
      c.vector_base = v & 0xF8;
      c.init_state = c.single ? (c.icw4_needed ? 3 : 0) : 2;
      break;
    case 2:  // ICW3
      c.icw3 = v;
      c.init_state = c.icw4_needed ? 3 : 0;
      break;
    case 3:  // ICW4
      c.special_fully_nested = (v & 0x10) != 0;
      c.auto_eoi = (v & 0x02) != 0;
      c.init_state = 0;
      break;
    default:  // OCW1
      c.imr = v;
      break;
  }
}

}  // namespace twoostwo::vmcore
