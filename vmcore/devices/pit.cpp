#include "vmcore/devices/pit.h"

namespace twoostwo::vmcore {
namespace {

constexpr uint64_t kNsPerSecond = 1'000'000'000;
constexpr uint64_t kRefreshToggleNs = 15'085;  // channel 1's usual DRAM refresh period

bool valid_bcd16(uint16_t v) {
  for (int i = 0; i < 4; ++i) {
    if (((v >> (4 * i)) & 0xF) > 9) return false;
  }
  return true;
}
uint32_t from_bcd16(uint16_t v) { return from_bcd8(uint8_t(v >> 8)) * 100 + from_bcd8(uint8_t(v)); }
uint16_t to_bcd16(uint32_t v) { return uint16_t(to_bcd8(v / 100 % 100) << 8 | to_bcd8(v % 100)); }

}  // namespace

uint64_t Pit8254::ticks_at(uint64_t ns) {
  return ns / kNsPerSecond * kInputHz + ns % kNsPerSecond * kInputHz / kNsPerSecond;
}

uint64_t Pit8254::ns_of_tick(uint64_t tick) {
  return tick / kInputHz * kNsPerSecond + (tick % kInputHz * kNsPerSecond + kInputHz - 1) / kInputHz;
}

Pit8254::Pit8254(const Clock& clock, bus::IrqLine& irq0)
    : clock_(clock), irq0_(irq0),
      port61_io_("port 0x61 (pit gate/speaker)", 1, bad_,
                 [this](uint32_t) { return read_port61(); },
                 [this](uint32_t, uint8_t v) { write_port61(v); }) {
  ch_[2].gate = false;  // port 0x61 bit 0 resets to 0
}

void Pit8254::read(uint64_t offset, std::span<uint8_t> data) {
  split_byte_read(offset, data, 4, bad_, [this](uint32_t off) { return read_byte(off); });
}

void Pit8254::write(uint64_t offset, std::span<const uint8_t> data) {
  split_byte_write(offset, data, 4, bad_, [this](uint32_t off, uint8_t v) { write_byte(off, v); });
}

uint64_t Pit8254::elapsed(const Channel& c, uint64_t tick) const {
  if (!c.triggered) return 0;
  if (!c.running) return c.frozen_d;
  return tick >= c.start_tick ? tick - c.start_tick : 0;
}

bool Pit8254::out_at(const Channel& c, uint64_t tick) const {
  if (!c.triggered) return c.mode != 0;  // mode 0: low once programmed; others high
  const uint64_t d = elapsed(c, tick);
  const uint64_t n = c.reload;
  switch (c.mode) {
    case 0:
    case 1:
      return d >= n;
    case 2:
      return !c.gate || d % n != n - 1;
    case 3:
      return !c.gate || d % n < (n + 1) / 2;
    default:  // 4, 5
      return d != n;
  }
}

uint16_t Pit8254::count_at(const Channel& c, uint64_t tick) const {
  const uint64_t mod = c.bcd ? 10000 : 65536;
  uint64_t v;
  if (!c.triggered) {
    v = c.reload % mod;
  } else {
    const uint64_t d = elapsed(c, tick);
    const uint64_t n = c.reload;
    switch (c.mode) {
      case 2:
        v = n - d % n;
        break;
      case 3:
        v = n - (2 * d) % n;
        break;
      default:  // 0, 1, 4, 5: count down and wrap
        v = (n + mod - d % mod) % mod;
        break;
    }
    v %= mod;
  }
  return c.bcd ? to_bcd16(uint32_t(v)) : uint16_t(v);
}

uint64_t Pit8254::next_edge_after(uint64_t tick) const {
  const Channel& c = ch_[0];
  if (!c.triggered || !c.running) return kNoEdge;
  const uint64_t s = c.start_tick;
  const uint64_t n = c.reload;
  switch (c.mode) {
    case 0:
    case 1:  // OUT rises at terminal count
      return tick < s + n ? s + n : kNoEdge;
    case 2:
    case 3:  // OUT rises at the start of every period after the first
      return tick < s ? s + n : s + ((tick - s) / n + 1) * n;
    default:  // 4, 5: OUT low for one count at TC, rising one count later
      return tick < s + n + 1 ? s + n + 1 : kNoEdge;
  }
}

void Pit8254::reschedule(uint64_t tick) { next_edge_ = next_edge_after(tick); }

void Pit8254::advance(uint64_t now_ns) {
  const uint64_t t = ticks_at(now_ns);
  if (next_edge_ == kNoEdge || t < next_edge_) return;
  const Channel& c = ch_[0];
  if (c.mode == 2 || c.mode == 3) coalesced_edges_ += (t - next_edge_) / c.reload;
  irq0_.set(true);
  irq0_.set(false);
  ++irq0_pulses_;
  next_edge_ = next_edge_after(t);
}

uint64_t Pit8254::next_deadline_ns() const {
  return next_edge_ == kNoEdge ? kNever : ns_of_tick(next_edge_);
}

bool Pit8254::deadline_may_be_late() const {
  return next_edge_ != kNoEdge && (ch_[0].mode == 0 || ch_[0].mode == 4);
}

bool Pit8254::out(unsigned channel) const {
  return channel < 3 && out_at(ch_[channel], now_tick());
}

void Pit8254::load_count(Channel& c, uint16_t raw, uint64_t tick) {
  if (c.bcd) {
    if (!valid_bcd16(raw)) ++bad_;
    c.reload = raw == 0 ? 10000 : from_bcd16(raw);
    if (c.reload == 0) c.reload = 10000;
  } else {
    c.reload = raw == 0 ? 0x10000 : raw;
  }
  c.loaded = true;
  c.null_count = false;
  c.frozen_d = 0;
  if (c.mode == 1 || c.mode == 5) {  // wait for a GATE rising edge
    c.triggered = false;
    c.running = false;
  } else {
    c.triggered = true;
    c.running = c.gate;
    c.start_tick = tick;
  }
}

void Pit8254::set_gate2(bool gate) {
  Channel& c = ch_[2];
  if (gate == c.gate) return;
  const uint64_t t = now_tick();
  c.gate = gate;
  if (!gate) {
    if (c.triggered && c.running && c.mode != 1 && c.mode != 5) {
      c.frozen_d = elapsed(c, t);
      c.running = false;
    }
    return;
  }
  switch (c.mode) {
    case 0:
    case 4:  // resume where it stopped
      if (c.triggered && !c.running) {
        c.start_tick = t >= c.frozen_d ? t - c.frozen_d : 0;
        c.running = true;
      }
      break;
    default:  // 1, 2, 3, 5: a rising edge (re)starts from the reload value
      if (c.loaded) {
        c.triggered = true;
        c.running = true;
        c.start_tick = t;
        c.frozen_d = 0;
      }
      break;
  }
}

void Pit8254::latch_count(Channel& c, uint64_t tick) {
  if (c.latch_state != 0) return;  // a second latch before reading is ignored
  c.latched = count_at(c, tick);
  c.latch_state = c.rw;  // 1 lo, 2 hi, 3 lo then hi
}

uint8_t Pit8254::read_byte(uint32_t offset) {
  if (offset == 3) {  // the control word register is write-only
    ++bad_;
    return 0xFF;
  }
  Channel& c = ch_[offset];
  if (c.status_latched) {
    c.status_latched = false;
    return c.status;
  }
  switch (c.latch_state) {
    case 1:
      c.latch_state = 0;
      return uint8_t(c.latched);
    case 2:
      c.latch_state = 0;
      return uint8_t(c.latched >> 8);
    case 3:
      c.latch_state = 4;
      return uint8_t(c.latched);
    case 4:
      c.latch_state = 0;
      return uint8_t(c.latched >> 8);
    default:
      break;
  }
  const uint16_t v = count_at(c, now_tick());
  switch (c.rw) {
    case 1:
      return uint8_t(v);
    case 2:
      return uint8_t(v >> 8);
    default: {
      const bool hi = c.read_hi_next;
      c.read_hi_next = !hi;
      return hi ? uint8_t(v >> 8) : uint8_t(v);
    }
  }
}

void Pit8254::write_byte(uint32_t offset, uint8_t value) {
  // One reading of the clock for the whole write: edges due before it
  // happen first, and a count loaded now starts at the same tick that its
  // first edge is computed from. (Two readings let a one-shot count end
  // between them when the host preempts this thread -- a few ms under load
  // -- and the edge was then dropped: the guest's next timer interrupt
  // never came.)
  const uint64_t now_ns = clock_.now_ns();
  advance(now_ns);
  const uint64_t t = ticks_at(now_ns);
  if (offset == 3) {
    write_control(value, t);
    return;
  }
  Channel& c = ch_[offset];
  switch (c.rw) {
    case 1:
      load_count(c, value, t);
      break;
    case 2:
      load_count(c, uint16_t(value << 8), t);
      break;
    default:
      if (!c.write_hi_next) {
        c.write_lo = value;
        c.write_hi_next = true;
        if (c.mode == 0) {  // datasheet: writing the first byte stops the count
          c.loaded = c.triggered = c.running = false;
        }
      } else {
        c.write_hi_next = false;
        load_count(c, uint16_t(c.write_lo | value << 8), t);
      }
      break;
  }
  if (offset == 0) reschedule(t);
}

void Pit8254::write_control(uint8_t v, uint64_t tick) {
  const unsigned sc = v >> 6;
  if (sc == 3) {  // read-back: bit 5 = !COUNT, bit 4 = !STATUS, bits 3-1 = counters 2-0
    for (unsigned i = 0; i < 3; ++i) {
      if (!(v & (2u << i))) continue;
      Channel& c = ch_[i];
      if (!(v & 0x20)) latch_count(c, tick);
      if (!(v & 0x10) && !c.status_latched) {
        c.status = uint8_t((out_at(c, tick) ? 0x80 : 0) | (c.null_count ? 0x40 : 0) |
                           c.rw << 4 | c.mode << 1 | (c.bcd ? 1 : 0));
        c.status_latched = true;
      }
    }
    return;
  }
  Channel& c = ch_[sc];
  const uint8_t rw = (v >> 4) & 3;
  if (rw == 0) {  // counter latch command
    latch_count(c, tick);
    return;
  }
  c.rw = rw;
  c.mode = (v >> 1) & 7;
  if (c.mode > 5) c.mode -= 4;  // 6, 7 are aliases of 2, 3
  c.bcd = (v & 1) != 0;
  c.loaded = c.triggered = c.running = false;
  c.frozen_d = 0;
  c.null_count = true;
  c.write_hi_next = c.read_hi_next = false;
  c.latch_state = 0;
  c.status_latched = false;
  if (sc == 0) reschedule(tick);
}

uint8_t Pit8254::read_port61() {
  const bool refresh = (clock_.now_ns() / kRefreshToggleNs) & 1;
  return uint8_t((ch_[2].gate ? 0x01 : 0) | (port61_bits_ & 0x0E) | (refresh ? 0x10 : 0) |
                 (out(2) ? 0x20 : 0));
}

void Pit8254::write_port61(uint8_t value) {
  port61_bits_ = value & 0x0E;
  set_gate2((value & 0x01) != 0);
}

}  // namespace twoostwo::vmcore
