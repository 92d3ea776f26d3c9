#include "vmcore/devices/uart.h"

#include "vmcore/devices/byte_registers.h"

namespace twoostwo::vmcore {
namespace {

// Register offsets and bits (PC16550D datasheet, table 2).
constexpr uint32_t kRbrThr = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6,
                   kScr = 7;
constexpr uint8_t kIerRda = 0x01, kIerThre = 0x02, kIerRls = 0x04, kIerMs = 0x08;
constexpr uint8_t kIirNone = 0x01, kIirRls = 0x06, kIirRda = 0x04, kIirTimeout = 0x0C,
                  kIirThre = 0x02, kIirMs = 0x00, kIirFifos = 0xC0;
constexpr uint8_t kFcrEnable = 0x01, kFcrClearRx = 0x02;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kMcrDtr = 0x01, kMcrRts = 0x02, kMcrOut1 = 0x04, kMcrOut2 = 0x08;
constexpr uint8_t kLsrDr = 0x01, kLsrOe = 0x02, kLsrThre = 0x20, kLsrTemt = 0x40;
constexpr uint8_t kMsrCts = 0x10, kMsrDsr = 0x20, kMsrRi = 0x40, kMsrDcd = 0x80;
constexpr uint8_t kMsrDeltas = 0x0F;

constexpr size_t kTriggerLevels[4] = {1, 4, 8, 14};

}  // namespace

Uart16550::Uart16550(std::string name, bus::IrqLine& irq, Sink sink)
    : name_(std::move(name)), irq_(irq), sink_(std::move(sink)) {
  msr_ = modem_lines();
}

void Uart16550::read(uint64_t offset, std::span<uint8_t> data) {
  split_byte_read(offset, data, 8, bad_, [this](uint32_t off) { return read_byte(off); });
}

void Uart16550::write(uint64_t offset, std::span<const uint8_t> data) {
  split_byte_write(offset, data, 8, bad_, [this](uint32_t off, uint8_t v) { write_byte(off, v); });
}

void Uart16550::receive(std::span<const uint8_t> bytes) {
  for (uint8_t b : bytes) {
    if (input_.size() >= kInputLimit) {
      ++input_dropped_;
    } else {
      input_.push_back(b);
    }
  }
  refill();
  update_irq();
}

void Uart16550::refill() {
  if (loopback()) return;  // the receiver listens to the transmitter only
  while (rx_.size() < rx_capacity() && !input_.empty()) {
    rx_.push_back(input_.front());
    input_.pop_front();
  }
}

uint8_t Uart16550::modem_lines() const {
  if (!loopback()) return kMsrDcd | kMsrDsr | kMsrCts;
  return uint8_t(((mcr_ & kMcrRts) ? kMsrCts : 0) | ((mcr_ & kMcrDtr) ? kMsrDsr : 0) |
                 ((mcr_ & kMcrOut1) ? kMsrRi : 0) | ((mcr_ & kMcrOut2) ? kMsrDcd : 0));
}

void Uart16550::set_mcr(uint8_t value) {
  const bool was_loopback = loopback();
  mcr_ = value & 0x1F;
  const uint8_t old = msr_ & 0xF0;
  const uint8_t now = modem_lines();
  uint8_t delta = msr_ & kMsrDeltas;
  if ((old ^ now) & kMsrCts) delta |= 0x01;              // DCTS
  if ((old ^ now) & kMsrDsr) delta |= 0x02;              // DDSR
  if ((old & kMsrRi) && !(now & kMsrRi)) delta |= 0x04;  // TERI: trailing edge of RI
  if ((old ^ now) & kMsrDcd) delta |= 0x08;              // DDCD
  msr_ = uint8_t(now | delta);
  if (was_loopback && !loopback()) refill();
}

uint8_t Uart16550::interrupt_id() const {
  if ((ier_ & kIerRls) && lsr_errors_) return kIirRls;
  if ((ier_ & kIerRda) && !rx_.empty()) {
    if (!fifo_enabled() || rx_.size() >= kTriggerLevels[fcr_ >> 6]) return kIirRda;
    return kIirTimeout;
  }
  if ((ier_ & kIerThre) && thr_ipending_) return kIirThre;
  if ((ier_ & kIerMs) && (msr_ & kMsrDeltas)) return kIirMs;
  return kIirNone;
}

void Uart16550::update_irq() {
  const bool level = interrupt_id() != kIirNone && (mcr_ & kMcrOut2);
  if (level != irq_level_) {
    irq_level_ = level;
    irq_.set(level);
  }
}

uint8_t Uart16550::read_byte(uint32_t offset) {
  uint8_t v = 0;
  switch (offset) {
    case kRbrThr:
      if (lcr_ & kLcrDlab) return uint8_t(divisor_);
      if (!rx_.empty()) {
        last_rx_ = rx_.front();
        rx_.pop_front();
        refill();
      }
      v = last_rx_;
      break;
    case kIer:
      return (lcr_ & kLcrDlab) ? uint8_t(divisor_ >> 8) : ier_;
    case kIirFcr: {
      const uint8_t id = interrupt_id();
      if (id == kIirThre) thr_ipending_ = false;  // reading IIR clears a THRE interrupt
      v = uint8_t(id | (fifo_enabled() ? kIirFifos : 0));
      break;
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      v = uint8_t(kLsrThre | kLsrTemt | (rx_.empty() ? 0 : kLsrDr) | lsr_errors_);
      lsr_errors_ = 0;
      break;
    case kMsr:
      v = msr_;
      msr_ &= uint8_t(~kMsrDeltas);
      break;
    default:  // kScr
      return scr_;
  }
  update_irq();
  return v;
}

void Uart16550::write_byte(uint32_t offset, uint8_t value) {
  switch (offset) {
    case kRbrThr:
      if (lcr_ & kLcrDlab) {
        divisor_ = uint16_t((divisor_ & 0xFF00) | value);
        return;
      }
      if (loopback()) {
        if (rx_.size() < rx_capacity()) {
          rx_.push_back(value);
        } else {
          lsr_errors_ |= kLsrOe;
        }
      } else if (sink_) {
        const uint8_t byte[1] = {value};
        sink_(byte);
      }
      thr_ipending_ = true;  // transmitted at once: THR is empty again
      break;
    case kIer:
      if (lcr_ & kLcrDlab) {
        divisor_ = uint16_t((divisor_ & 0x00FF) | value << 8);
        return;
      }
      if ((value & kIerThre) && !(ier_ & kIerThre)) thr_ipending_ = true;
      if (!(value & kIerThre)) thr_ipending_ = false;
      ier_ = value & 0x0F;
      break;
    case kIirFcr: {
      if ((value ^ fcr_) & kFcrEnable) rx_.clear();  // toggling FIFO mode resets both FIFOs
      if (value & kFcrClearRx) rx_.clear();
      fcr_ = (value & kFcrEnable) ? uint8_t(value & 0xC1) : 0;
      refill();
      break;
    }
    case kLcr:
      lcr_ = value;
      return;
    case kMcr:
      set_mcr(value);
      break;
    case kLsr:
    case kMsr:
      ++bad_;  // factory test registers: writes ignored
      return;
    default:  // kScr
      scr_ = value;
      return;
  }
  update_irq();
}

}  // namespace twoostwo::vmcore
