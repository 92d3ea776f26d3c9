#include "switch/frame.h"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>

namespace twoostwo::fabric {

Timestamp realtime_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return Timestamp(static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec);
}

MacAddress Frame::mac_at(size_t offset) const {
  MacAddress mac{};
  if (bytes.size() >= offset + mac.size()) {
    std::transform(bytes.begin() + static_cast<std::ptrdiff_t>(offset),
                   bytes.begin() + static_cast<std::ptrdiff_t>(offset + mac.size()), mac.begin(),
                   [](std::byte b) { return static_cast<uint8_t>(b); });
  }
  return mac;
}

std::optional<uint16_t> Frame::vlan_id() const {
  if (bytes.size() < kEthernetHeader + 4) return std::nullopt;
  const auto be16 = [&](size_t at) {
    return static_cast<uint16_t>((static_cast<unsigned>(bytes[at]) << 8) | static_cast<unsigned>(bytes[at + 1]));
  };
  if (be16(12) != kTpid8021Q) return std::nullopt;
  return static_cast<uint16_t>(be16(14) & 0x0FFF);
}

std::string format_mac(const MacAddress& mac) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

}  // namespace twoostwo::fabric
