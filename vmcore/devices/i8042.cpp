#include "vmcore/devices/i8042.h"

namespace twoostwo::vmcore {
namespace {

// Status register bits.
constexpr uint8_t kStatusObf = 0x01, kStatusSys = 0x04, kStatusA2 = 0x08, kStatusUnlocked = 0x10;
// Command byte bits.
constexpr uint8_t kCtrKbdInt = 0x01, kCtrSys = 0x04, kCtrKbdDisable = 0x10, kCtrAuxDisable = 0x20,
                  kCtrXlate = 0x40;
// Keyboard replies.
constexpr uint8_t kKbdAck = 0xFA, kKbdResend = 0xFE, kKbdBatOk = 0xAA, kKbdEcho = 0xEE;

}  // namespace

I8042::I8042(bus::IrqLine& irq1, std::function<void()> on_reset)
    : irq1_(irq1), on_reset_(std::move(on_reset)),
      data_io_("i8042 data 0x60", 1, bad_, [this](uint32_t) { return read_data(); },
               [this](uint32_t, uint8_t v) { write_data(v); }),
      command_io_("i8042 command 0x64", 1, bad_, [this](uint32_t) { return read_status(); },
                  [this](uint32_t, uint8_t v) { write_command(v); }) {
  ram_[0] = kCtrXlate | kCtrSys | kCtrKbdInt;
}

void I8042::inject_keyboard(std::span<const uint8_t> bytes) {
  for (uint8_t b : bytes) push(b);
}

void I8042::push(uint8_t byte) {
  if (out_.size() >= kQueueLimit) {
    ++bad_;
    return;
  }
  out_.push_back(byte);
  update_irq();
}

void I8042::kbd_send(uint8_t byte) {
  kbd_last_sent_ = byte;
  push(byte);
}

void I8042::update_irq() {
  const bool level = !out_.empty() && (ram_[0] & kCtrKbdInt);
  if (level != irq_level_) {
    irq_level_ = level;
    irq1_.set(level);
  }
}

void I8042::reset_system() {
  ++resets_;
  if (on_reset_) on_reset_();
}

uint8_t I8042::read_status() {
  return uint8_t((out_.empty() ? 0 : kStatusObf) | (ram_[0] & kCtrSys ? kStatusSys : 0) |
                 (last_write_command_ ? kStatusA2 : 0) | kStatusUnlocked);
}

uint8_t I8042::read_data() {
  if (!out_.empty()) {
    last_read_ = out_.front();
    out_.pop_front();
    // Drop the line so that a further queued byte makes a new edge.
    if (irq_level_) {
      irq_level_ = false;
      irq1_.set(false);
    }
    update_irq();
  }
  return last_read_;
}

void I8042::write_command(uint8_t v) {
  last_write_command_ = true;
  pending_command_ = 0;
  if (v >= 0x20 && v < 0x40) {  // read controller RAM
    push(ram_[v & 0x1F]);
    return;
  }
  if (v >= 0x60 && v < 0x80) {  // write controller RAM: parameter follows
    pending_command_ = v;
    return;
  }
  if (v >= 0xF0) {  // pulse output lines low for 6 us; bit 0 is the reset line
    if (!(v & 0x01)) reset_system();
    return;
  }
  switch (v) {
    case 0xA7:
      ram_[0] |= kCtrAuxDisable;
      break;
    case 0xA8:
      ram_[0] &= uint8_t(~kCtrAuxDisable);
      break;
    case 0xA9:  // aux interface test: no aux port (clock line stuck low)
      push(0x01);
      break;
    case 0xAA:  // controller self-test
      ram_[0] |= kCtrSys;
      push(0x55);
      break;
    case 0xAB:  // keyboard interface test: no error
      push(0x00);
      break;
    case 0xAD:
      ram_[0] |= kCtrKbdDisable;
      break;
    case 0xAE:
      ram_[0] &= uint8_t(~kCtrKbdDisable);
      break;
    case 0xC0:  // input port: keyboard not inhibited
      push(0x80);
      break;
    case 0xD0:
      push(output_port_);
      break;
    case 0xD1:  // write output port
    case 0xD2:  // write keyboard output buffer
    case 0xD3:  // write aux output buffer (no aux: parameter swallowed)
    case 0xD4:  // write to aux device (no aux: parameter swallowed)
      pending_command_ = v;
      break;
    default:
      ++bad_;
      break;
  }
}

void I8042::write_data(uint8_t v) {
  last_write_command_ = false;
  const uint8_t cmd = pending_command_;
  pending_command_ = 0;
  if (cmd >= 0x60 && cmd < 0x80) {
    ram_[cmd & 0x1F] = v;
    update_irq();
    return;
  }
  switch (cmd) {
    case 0xD1:
      output_port_ = v;
      if (!(v & 0x01)) reset_system();
      return;
    case 0xD2:
      push(v);
      return;
    case 0xD3:
    case 0xD4:
      return;
    default:
      keyboard_write(v);
      return;
  }
}

void I8042::keyboard_write(uint8_t v) {
  const bool translating = (ram_[0] & kCtrXlate) != 0;
  if (kbd_pending_ != 0) {
    const uint8_t cmd = kbd_pending_;
    kbd_pending_ = 0;
    kbd_send(kKbdAck);
    if (cmd == 0xF0) {  // select / read scan code set
      if (v == 0) {
        static constexpr uint8_t kTranslatedSet[4] = {0, 0x43, 0x41, 0x3F};
        kbd_send(translating ? kTranslatedSet[scan_set_] : scan_set_);
      } else if (v <= 3) {
        scan_set_ = v;
      }
    }
    return;  // 0xED LEDs, 0xF3 typematic rate: the parameter is ACKed
  }
  switch (v) {
    case 0xED:  // set LEDs
    case 0xF0:  // scan code set
    case 0xF3:  // typematic rate
      kbd_send(kKbdAck);
      kbd_pending_ = v;
      break;
    case 0xEE:
      kbd_send(kKbdEcho);
      break;
    case 0xF2:  // identify: MF2 keyboard
      kbd_send(kKbdAck);
      kbd_send(0xAB);
      kbd_send(translating ? 0x41 : 0x83);
      break;
    case 0xFE:
      push(kbd_last_sent_);
      break;
    case 0xFF:  // reset and self-test (BAT)
      scan_set_ = 2;
      kbd_send(kKbdAck);
      kbd_send(kKbdBatOk);
      break;
    default:
      if (v >= 0xF4 && v <= 0xFD) {  // enable, disable, defaults, set-3 key modes
        kbd_send(kKbdAck);
      } else {
        kbd_send(kKbdResend);  // not a command this keyboard knows
      }
      break;
  }
}

}  // namespace twoostwo::vmcore
