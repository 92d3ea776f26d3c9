// Ethernet frames as the fabric carries them (DESIGN.md, "switch/").
//
// A frame is what a NIC hands its backend: destination MAC first, no
// preamble, no FCS (IEEE 802.3 §3.1.1), 14..1518 bytes — 1514 plus a 4-byte
// IEEE 802.1Q tag on trunk links. The fabric passes frames by view: a Frame
// refers to bytes owned by whoever produced it and is valid only during the
// call it is passed to; whoever keeps a frame (a queue, a capture) copies it.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <utility>

namespace twoostwo::fabric {

/// An error whose message names the input it is about, e.g.
/// "port 'alice:eth0': already on link 'l1'". switch/ depends on no other
/// module, so it has its own error value; callers convert at their edge.
struct Error {
  std::string message;
};
template <class T>
using Result = std::expected<T, Error>;
inline std::unexpected<Error> fail(std::string message) {
  return std::unexpected<Error>(Error{std::move(message)});
}

/// A MAC address, first octet first (as on the wire).
using MacAddress = std::array<uint8_t, 6>;

/// Wall-clock time in nanoseconds since the Unix epoch (what pcap records).
using Timestamp = std::chrono::nanoseconds;
/// CLOCK_REALTIME now, in nanoseconds.
Timestamp realtime_now();

/// Sizes without FCS: the Ethernet header, the shortest frame a card sends
/// (it pads to 60), the longest untagged frame, and the longest 802.1Q-tagged
/// one (IEEE 802.1Q §9: the tag adds 4 bytes).
inline constexpr size_t kEthernetHeader = 14;
inline constexpr size_t kMinFrame = 60;
inline constexpr size_t kMaxUntaggedFrame = 1514;
inline constexpr size_t kMaxFrame = 1518;

/// IEEE 802.1Q: the tag protocol identifier at offset 12, and the VLAN ID
/// range a port may be configured with (0 means "priority tag only" and 4095
/// is reserved).
inline constexpr uint16_t kTpid8021Q = 0x8100;
inline constexpr uint16_t kMinVlanId = 1;
inline constexpr uint16_t kMaxVlanId = 4094;

class Port;

/// One Ethernet frame in flight.
struct Frame {
  /// The bytes, destination MAC first; at least kEthernetHeader long once a
  /// port has accepted it.
  std::span<const std::byte> bytes;
  /// When the fabric received it (realtime_now() at the ingress port).
  Timestamp time{};
  /// The port whose outside produced it (a socket, an adapter, a switch).
  const Port* ingress = nullptr;

  MacAddress destination() const { return mac_at(0); }
  MacAddress source() const { return mac_at(6); }
  /// The 802.1Q VLAN ID (0..4095) if the frame carries a tag at offset 12.
  std::optional<uint16_t> vlan_id() const;

 private:
  MacAddress mac_at(size_t offset) const;
};

/// True for group addresses (the I/G bit, IEEE 802 §8.2): broadcast and
/// multicast frames, which a switch floods.
inline bool is_group(const MacAddress& mac) { return (mac[0] & 0x01) != 0; }

/// "52:54:00:12:34:56".
std::string format_mac(const MacAddress& mac);

}  // namespace twoostwo::fabric
