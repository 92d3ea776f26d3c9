// Test ports and frames for the switch/ unit tests.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "switch/frame.h"
#include "switch/mac_table.h"
#include "switch/port.h"

namespace twoostwo::fabric::testing {

/// A locally administered unicast MAC 02:00:00:00:HI:LO.
inline MacAddress mac(uint16_t n) { return {0x02, 0, 0, 0, static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)}; }
inline constexpr MacAddress kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/// An Ethernet frame: dst, src, [802.1Q tag with `tci`], ethertype 0x88b5
/// (IEEE local experimental), then `payload_bytes` bytes counting up from `seed`.
inline std::vector<std::byte> make_frame(const MacAddress& dst, const MacAddress& src, size_t payload_bytes = 46,
                                         uint8_t seed = 0, int tci = -1) {
  std::vector<std::byte> f;
  for (uint8_t b : dst) f.push_back(std::byte{b});
  for (uint8_t b : src) f.push_back(std::byte{b});
  if (tci >= 0) {
    f.push_back(std::byte{0x81});
    f.push_back(std::byte{0x00});
    f.push_back(static_cast<std::byte>(tci >> 8));
    f.push_back(static_cast<std::byte>(tci & 0xff));
  }
  f.push_back(std::byte{0x88});
  f.push_back(std::byte{0xb5});
  for (size_t i = 0; i < payload_bytes; ++i) f.push_back(static_cast<std::byte>(seed + i));
  return f;
}

/// A port whose outside is the test: inject() plays a device sending a frame,
/// `received` keeps every frame the link delivered. `accept` = false makes the
/// outside refuse frames (a full queue).
class TestPort final : public Port {
 public:
  explicit TestPort(std::string name) : Port(std::move(name)) {}
  std::string describe() const override { return "test"; }
  void inject(const std::vector<std::byte>& bytes) {
    transmit(Frame{std::span<const std::byte>(bytes), realtime_now(), this});
  }
  std::vector<std::vector<std::byte>> received;
  bool accept = true;
  std::vector<bool> up_changes;

 protected:
  bool on_deliver(const Frame& frame) override {
    if (!accept) return false;
    received.emplace_back(frame.bytes.begin(), frame.bytes.end());
    return true;
  }
  void on_up_changed(bool up) override { up_changes.push_back(up); }
};

/// A tap that copies what it sees.
class RecordingTap final : public Tap {
 public:
  void on_frame(const Frame& frame) override {
    frames.emplace_back(frame.bytes.begin(), frame.bytes.end());
    ingress.push_back(frame.ingress);
    times.push_back(frame.time);
  }
  std::vector<std::vector<std::byte>> frames;
  std::vector<const Port*> ingress;
  std::vector<Timestamp> times;
};

/// A clock the test moves by hand.
struct ManualClock {
  std::chrono::nanoseconds now{std::chrono::seconds(1000)};
  SteadyClock clock() {
    return [this] { return now; };
  }
};

}  // namespace twoostwo::fabric::testing
