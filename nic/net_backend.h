// The NIC side of a network connection (DESIGN.md, "Interfaces to keep
// stable"): a card model hands whole Ethernet frames to its NetBackend, and
// the backend's owner hands received frames to the card (Dp8390::receive).
// Implementations: the fabric's SOCK_SEQPACKET socket and the UDP tunnel
// (vmcore/net_backends.h), and test loopbacks.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace twoostwo::nic {

/// An Ethernet MAC address, first octet first (as on the wire).
using MacAddress = std::array<uint8_t, 6>;

/// "52:54:00:12:34:56".
std::string format_mac(const MacAddress& mac);

/// Ethernet sizes without the FCS (IEEE 802.3 §3.1.1): a card pads short
/// frames to kMinFrame and never sends more than kMaxFrame.
inline constexpr size_t kMinFrame = 60;
inline constexpr size_t kMaxFrame = 1514;

class NetBackend {
 public:
  virtual ~NetBackend() = default;
  /// Send one Ethernet frame: destination MAC first, no preamble, no FCS,
  /// kMinFrame..kMaxFrame bytes (the card pads and truncates). Called with
  /// the Monitor's device lock held, from the CPU engine's thread: it must
  /// not block. A frame that cannot be sent now is dropped and counted by
  /// the backend (Ethernet is allowed to lose frames; the guest's TCP
  /// retransmits).
  virtual void send(std::span<const std::byte> frame) = 0;
};

}  // namespace twoostwo::nic
