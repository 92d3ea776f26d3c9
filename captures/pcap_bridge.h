// PcapBridge: a fabric Port whose outside is a host network adapter, through
// libpcap (DESIGN.md: "captures::PcapBridge → real host adapter (libpcap)").
//
//   adapter ──pcap live capture──▶ bridge ──transmit()──▶ link ──▶ (a switch port)
//   adapter ◀──pcap_inject────────  bridge ◀──deliver()── link ◀──
//
// - Receiving: the adapter is opened in promiscuous and immediate mode,
//   non-blocking. Frames the bridge injects are never captured back: Linux
//   does not loop a packet socket's own frames back to it
//   (dev_queue_xmit_nit skips the sending socket). The bridge also captures
//   incoming frames only (pcap_setdirection(PCAP_D_IN)), so frames the host
//   itself sends out of the adapter — its own stack, another capture tool —
//   do not enter the lab either: the bridge joins the lab to the wire behind
//   the adapter, not to the host (to reach the lab from the host, give the
//   host an address on another interface of that wire, e.g. the other end
//   of a veth pair). The descriptor from pcap_get_selectable_fd is watched
//   on the fabric's io_context; each time it is readable up to `budget`
//   frames are read with pcap_dispatch and transmitted onto the link,
//   stamped with realtime_now() (as every ingress port stamps frames), so
//   captures stay in time order.
// - Frames shorter than 60 bytes (a veth delivers them unpadded) are padded
//   with zeros to 60, as an Ethernet adapter pads on the wire (IEEE 802.3
//   §3.2.8/§4.2.3.3 minimum frame size): the lab's NICs expect no runts.
//   Frames longer than kMaxFrame — which appear when the adapter merges
//   packets (GRO/LRO) or sends TCP segments unsplit (TSO/GSO on a veth peer)
//   — are dropped and counted as `oversized`; turn those offloads off
//   (`ethtool -K IF gro off lro off`, and tso/gso off on the sender).
// - Sending: delivered frames are written with pcap_inject on a non-blocking
//   socket; a frame the kernel does not take at once (a full send buffer)
//   is dropped and counted (Port rx_dropped, `inject_errors`).
// - Lab MACs: the bridge remembers the source address of every frame it
//   injects (a MacTable aging entries after `lab_mac_aging`). A frame that
//   comes back from the adapter with such a source — the wire reflected it
//   (a loop, a hub, another bridge) — is dropped and counted as
//   `echo_dropped`, so the switch never learns a lab address on the bridge
//   port. Together with the switch's own learning, lab-internal unicast
//   stays inside the lab: only floods and frames for addresses learned
//   behind the adapter reach it.
//
// Privileges: opening a packet socket needs CAP_NET_RAW (root has it). The
// bridge attaches only to the interface it is given; callers take that name
// from the topology (tests make their own veth pairs).
//
// All calls happen on the fabric's thread. Hand the bridge to
// Fabric::add_port and connect it to a LearningSwitch port.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "switch/frame.h"
#include "switch/mac_table.h"
#include "switch/port.h"

struct pcap;
struct pcap_pkthdr;

namespace twoostwo::captures {

/// PcapBridge's options.
struct PcapBridgeOptions {
  /// Frames read per readiness event at most (one busy adapter cannot
  /// starve the rest of the fabric).
  int budget = 256;
  /// The kernel's capture buffer for the adapter, bytes.
  int buffer_bytes = 2 * 1024 * 1024;
  /// How long a lab source address stays remembered (see PcapBridge), and how
  /// many are remembered at most.
  std::chrono::nanoseconds lab_mac_aging = std::chrono::seconds(300);
  size_t lab_mac_capacity = 4096;
  /// The clock for lab_mac_aging (injected by tests).
  fabric::SteadyClock clock = fabric::system_steady_clock();
};

class PcapBridge final : public fabric::Port {
 public:
  using Options = PcapBridgeOptions;
  /// Counters beyond PortCounters.
  struct AdapterCounters {
    uint64_t received = 0;       // frames pcap delivered
    uint64_t padded = 0;         // of those, padded to 60 bytes
    uint64_t oversized = 0;      // of those, longer than kMaxFrame or truncated: dropped
    uint64_t echo_dropped = 0;   // of those, from a lab source address: dropped
    uint64_t injected = 0;       // frames pcap_inject sent
    uint64_t inject_errors = 0;  // frames pcap_inject refused (dropped)
    uint64_t kernel_dropped = 0; // pcap_stats ps_drop (the capture buffer was full), as of the last refresh
  };

  /// Open `interface_name` as a port called `port_name`. Errors, each naming
  /// the adapter: "adapter 'X': invalid interface name", "adapter 'X': no
  /// such interface", "adapter 'X': permission denied (needs CAP_NET_RAW)",
  /// "adapter 'X': interface is down", "adapter 'X': not an Ethernet
  /// interface (link type …)", "adapter 'X': no promiscuous mode", other
  /// libpcap errors with libpcap's text.
  static fabric::Result<std::unique_ptr<PcapBridge>> open(boost::asio::io_context& io, std::string port_name,
                                                          const std::string& interface_name, Options options = {});
  ~PcapBridge() override;

  const std::string& interface_name() const { return interface_; }
  /// "adapter veth0".
  std::string describe() const override;

  /// The counters, with kernel_dropped refreshed from pcap_stats.
  const AdapterCounters& adapter_counters();
  /// Why the bridge stopped reading (the adapter went away), if it did; the
  /// port is then down.
  const std::optional<fabric::Error>& error() const { return error_; }

 protected:
  bool on_deliver(const fabric::Frame& frame) override;

 private:
  PcapBridge(boost::asio::io_context& io, std::string port_name, std::string interface_name, Options options,
             pcap* handle);
  void arm_read();
  void read_ready();
  void received(std::span<const std::byte> bytes, uint32_t wire_length);
  static void on_packet(unsigned char* user, const pcap_pkthdr* header, const unsigned char* bytes);

  boost::asio::io_context& io_;
  std::string interface_;
  Options options_;
  pcap* pcap_;
  boost::asio::posix::stream_descriptor waiter_;  // pcap's selectable fd; libpcap owns it
  fabric::MacTable lab_macs_;
  std::array<std::byte, fabric::kMinFrame> padded_{};
  AdapterCounters adapter_counters_;
  std::optional<fabric::Error> error_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace twoostwo::captures
