#include "vmcore/devices/cmos.h"

#include <algorithm>
#include <chrono>

#include "vmcore/devices/byte_registers.h"

namespace twoostwo::vmcore {
namespace {

constexpr int64_t kNsPerSecond = 1'000'000'000;
constexpr uint64_t kRtcHz = 32768;
constexpr int64_t kUipWindowNs = 244'000;  // MC146818A: UIP rises 244 us before an update

// Register indices and bits (MC146818A datasheet).
constexpr uint8_t kSeconds = 0x00, kSecondsAlarm = 0x01, kMinutes = 0x02, kMinutesAlarm = 0x03,
                  kHours = 0x04, kHoursAlarm = 0x05, kDayOfWeek = 0x06, kDayOfMonth = 0x07,
                  kMonth = 0x08, kYear = 0x09, kRegA = 0x0A, kRegB = 0x0B, kRegC = 0x0C,
                  kRegD = 0x0D, kCentury = 0x32;
constexpr uint8_t kAUip = 0x80;
constexpr uint8_t kBSet = 0x80, kBPie = 0x40, kBAie = 0x20, kBUie = 0x10, kBBinary = 0x04,
                  kB24Hour = 0x02;
constexpr uint8_t kCIrqf = 0x80, kCPf = 0x40, kCAf = 0x20, kCUf = 0x10;
constexpr uint8_t kDValid = 0x80;

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

uint64_t rtc_ticks_at(uint64_t ns) {
  constexpr uint64_t s = kNsPerSecond;
  return ns / s * kRtcHz + ns % s * kRtcHz / s;
}
uint64_t ns_of_rtc_tick(uint64_t tick) {
  constexpr uint64_t s = kNsPerSecond;
  return tick / kRtcHz * s + (tick % kRtcHz * s + kRtcHz - 1) / kRtcHz;
}

bool is_time_register(uint8_t index) {
  switch (index) {
    case kSeconds:
    case kMinutes:
    case kHours:
    case kDayOfWeek:
    case kDayOfMonth:
    case kMonth:
    case kYear:
    case kCentury:
      return true;
    default:
      return false;
  }
}

}  // namespace

Cmos::Cmos(const Clock& clock, bus::IrqLine& irq8, const CmosConfig& config)
    : clock_(clock), irq8_(irq8) {
  const uint64_t now = clock_.now_ns();
  if (config.start_unix_seconds) {
    base_ns_ = *config.start_unix_seconds * kNsPerSecond;
  } else {
    const auto host = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::system_clock::now().time_since_epoch());
    base_ns_ = host.count() - static_cast<int64_t>(now);
  }
  flags_ns_ = now;

  ram_[kRegA] = 0x26;      // 32.768 kHz time base, 1024 Hz periodic rate
  ram_[kRegB] = kB24Hour;  // BCD, 24-hour (rtc-cmos needs 24-hour mode)
  ram_[kRegD] = kDValid;
  ram_[0x14] = 0x02;       // equipment: FPU present, no floppy, EGA/VGA

  const uint64_t low = std::min(config.ram_bytes, config.low_ram_limit);
  const uint64_t high = config.ram_bytes - low;
  ram_[0x15] = 0x80;  // base memory 640 KiB
  ram_[0x16] = 0x02;
  const uint64_t ext_kib = low > (1u << 20) ? std::min<uint64_t>((low >> 10) - 1024, 0xFFFF) : 0;
  ram_[0x17] = ram_[0x30] = uint8_t(ext_kib);
  ram_[0x18] = ram_[0x31] = uint8_t(ext_kib >> 8);
  const uint64_t ext16_64k = low > (16u << 20) ? std::min<uint64_t>((low - (16u << 20)) >> 16, 0xFFFF) : 0;
  ram_[0x34] = uint8_t(ext16_64k);
  ram_[0x35] = uint8_t(ext16_64k >> 8);
  const uint64_t high_64k = std::min<uint64_t>(high >> 16, 0xFFFFFF);
  ram_[0x5B] = uint8_t(high_64k);
  ram_[0x5C] = uint8_t(high_64k >> 8);
  ram_[0x5D] = uint8_t(high_64k >> 16);
  unsigned sum = 0;
  for (unsigned i = 0x10; i <= 0x2D; ++i) sum += ram_[i];
  ram_[0x2E] = uint8_t(sum >> 8);
  ram_[0x2F] = uint8_t(sum);
}

void Cmos::read(uint64_t offset, std::span<uint8_t> data) {
  split_byte_read(offset, data, 2, bad_, [this](uint32_t off) -> uint8_t {
    if (off == 0) {  // the index register is write-only
      ++bad_;
      return 0xFF;
    }
    return read_data(index_);
  });
}

void Cmos::write(uint64_t offset, std::span<const uint8_t> data) {
  split_byte_write(offset, data, 2, bad_, [this](uint32_t off, uint8_t v) {
    if (off == 0) {
      index_ = v & 0x7F;
      nmi_disabled_ = (v & 0x80) != 0;
    } else {
      write_data(index_, v);
    }
  });
}

int64_t Cmos::wall_ns() const { return base_ns_ + static_cast<int64_t>(clock_.now_ns()); }

int64_t Cmos::unix_seconds() const {
  if (ram_[kRegB] & kBSet) {
    if (auto t = stored_time()) return *t;
  }
  return floor_div(wall_ns(), kNsPerSecond);
}

uint8_t Cmos::encode(unsigned value) const {
  return (ram_[kRegB] & kBBinary) ? uint8_t(value) : to_bcd8(value);
}

unsigned Cmos::decode(uint8_t value) const {
  return (ram_[kRegB] & kBBinary) ? value : from_bcd8(value);
}

uint8_t Cmos::encode_hour(unsigned hour) const {
  if (ram_[kRegB] & kB24Hour) return encode(hour);
  const unsigned h12 = hour % 12 == 0 ? 12 : hour % 12;
  return uint8_t(encode(h12) | (hour >= 12 ? 0x80 : 0));
}

void Cmos::store_time(int64_t unix_seconds) {
  using namespace std::chrono;
  const int64_t day_number = floor_div(unix_seconds, 86400);
  const int64_t sod = unix_seconds - day_number * 86400;
  const sys_days sd{days{day_number}};
  const year_month_day ymd{sd};
  const int year = int(ymd.year());
  ram_[kSeconds] = encode(unsigned(sod % 60));
  ram_[kMinutes] = encode(unsigned(sod / 60 % 60));
  ram_[kHours] = encode_hour(unsigned(sod / 3600));
  ram_[kDayOfWeek] = encode(weekday{sd}.c_encoding() + 1);  // 1 = Sunday
  ram_[kDayOfMonth] = encode(unsigned(ymd.day()));
  ram_[kMonth] = encode(unsigned(ymd.month()));
  ram_[kYear] = encode(unsigned(year % 100));
  ram_[kCentury] = encode(unsigned(year / 100));
}

std::optional<int64_t> Cmos::stored_time() const {
  using namespace std::chrono;
  const unsigned sec = decode(ram_[kSeconds]);
  const unsigned min = decode(ram_[kMinutes]);
  unsigned hour;
  if (ram_[kRegB] & kB24Hour) {
    hour = decode(ram_[kHours]);
  } else {
    hour = decode(ram_[kHours] & 0x7F) % 12 + ((ram_[kHours] & 0x80) ? 12 : 0);
  }
  const int year = int(decode(ram_[kCentury]) * 100 + decode(ram_[kYear]));
  const year_month_day ymd{std::chrono::year{year}, month{decode(ram_[kMonth])},
                           day{decode(ram_[kDayOfMonth])}};
  if (!ymd.ok() || sec > 59 || min > 59 || hour > 23) return std::nullopt;
  return int64_t{sys_days{ymd}.time_since_epoch().count()} * 86400 + hour * 3600 + min * 60 + sec;
}

uint8_t Cmos::read_data(uint8_t index) {
  const bool set = (ram_[kRegB] & kBSet) != 0;
  if (is_time_register(index)) {
    if (!set) store_time(floor_div(wall_ns(), kNsPerSecond));
    return ram_[index];
  }
  switch (index) {
    case kRegA: {
      const int64_t wall = wall_ns();  // one reading (two could straddle a second boundary)
      const int64_t sub = wall - floor_div(wall, kNsPerSecond) * kNsPerSecond;
      const bool uip = !set && sub >= kNsPerSecond - kUipWindowNs;
      return uint8_t((ram_[kRegA] & 0x7F) | (uip ? kAUip : 0));
    }
    case kRegC: {
      update_flags(clock_.now_ns());
      const uint8_t v = ram_[kRegC];
      ram_[kRegC] = 0;
      update_flags(clock_.now_ns());  // releases IRQ 8
      return v;
    }
    case kRegD:
      return kDValid;
    default:
      return ram_[index];
  }
}

void Cmos::write_data(uint8_t index, uint8_t value) {
  const uint64_t now = clock_.now_ns();
  if (is_time_register(index)) {
    if (ram_[kRegB] & kBSet) {
      ram_[index] = value;
      return;
    }
    // Without SET the new field takes effect at once, keeping the others.
    const int64_t wall = wall_ns();
    const int64_t sub = wall - floor_div(wall, kNsPerSecond) * kNsPerSecond;
    store_time(floor_div(wall, kNsPerSecond));
    ram_[index] = value;
    if (auto t = stored_time()) {
      base_ns_ = *t * kNsPerSecond + sub - static_cast<int64_t>(now);
    } else {
      ++bad_;
    }
    return;
  }
  switch (index) {
    case kRegA:
      update_flags(now);
      ram_[kRegA] = value & 0x7F;
      break;
    case kRegB: {
      update_flags(now);
      const uint8_t old = ram_[kRegB];
      if (value & kBSet) value &= uint8_t(~kBUie);
      if (!(old & kBSet) && (value & kBSet)) store_time(floor_div(wall_ns(), kNsPerSecond));
      ram_[kRegB] = value;
      if ((old & kBSet) && !(value & kBSet)) {
        if (auto t = stored_time()) {
          base_ns_ = *t * kNsPerSecond - static_cast<int64_t>(now);
        } else {
          ++bad_;
        }
      }
      update_flags(now);
      break;
    }
    case kRegC:
    case kRegD:
      ++bad_;  // read-only
      break;
    default:
      ram_[index] = value;
      break;
  }
}

uint64_t Cmos::periodic_ticks() const {
  const unsigned rs = ram_[kRegA] & 0x0F;
  if (rs == 0) return 0;
  return rs <= 2 ? uint64_t{1} << (rs + 6) : uint64_t{1} << (rs - 1);
}

void Cmos::update_flags(uint64_t now_ns) {
  if (now_ns > flags_ns_) {
    if (const uint64_t p = periodic_ticks(); p != 0) {
      if (rtc_ticks_at(now_ns) / p > rtc_ticks_at(flags_ns_) / p) ram_[kRegC] |= kCPf;
    }
    if (!(ram_[kRegB] & kBSet)) {
      const int64_t s_now = floor_div(base_ns_ + int64_t(now_ns), kNsPerSecond);
      const int64_t s_last = floor_div(base_ns_ + int64_t(flags_ns_), kNsPerSecond);
      if (s_now > s_last) {
        ram_[kRegC] |= kCUf;
        store_time(s_now);
        auto match = [this](uint8_t alarm, uint8_t time) {
          return (ram_[alarm] & 0xC0) == 0xC0 || ram_[alarm] == ram_[time];
        };
        if (match(kSecondsAlarm, kSeconds) && match(kMinutesAlarm, kMinutes) &&
            match(kHoursAlarm, kHours)) {
          ram_[kRegC] |= kCAf;
        }
      }
    }
    flags_ns_ = now_ns;
  }
  const bool irqf = (ram_[kRegC] & ram_[kRegB] & (kCPf | kCAf | kCUf)) != 0;
  ram_[kRegC] = uint8_t((ram_[kRegC] & ~kCIrqf) | (irqf ? kCIrqf : 0));
  if (irqf != irq_level_) {
    irq_level_ = irqf;
    irq8_.set(irqf);
  }
}

void Cmos::advance(uint64_t now_ns) { update_flags(now_ns); }

uint64_t Cmos::next_deadline_ns() const {
  uint64_t best = kNever;
  const uint8_t b = ram_[kRegB];
  const uint8_t c = ram_[kRegC];
  if (const uint64_t p = periodic_ticks(); (b & kBPie) && p != 0 && !(c & kCPf)) {
    best = ns_of_rtc_tick((rtc_ticks_at(flags_ns_) / p + 1) * p);
  }
  const bool want_update = ((b & kBUie) && !(c & kCUf)) || ((b & kBAie) && !(c & kCAf));
  if (want_update && !(b & kBSet)) {
    const int64_t next_second = floor_div(base_ns_ + int64_t(flags_ns_), kNsPerSecond) + 1;
    const int64_t at = next_second * kNsPerSecond - base_ns_;
    if (at > 0) best = std::min(best, uint64_t(at));
  }
  return best;
}

}  // namespace twoostwo::vmcore
