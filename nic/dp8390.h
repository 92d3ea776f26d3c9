// The National Semiconductor DP8390 network interface controller as it sits
// on an NE2000-class card (NE2000 ISA, Realtek RTL8029AS PCI): registers,
// remote DMA through the card's data port, the station-address PROM, 32 KiB
// of buffer memory, the receive ring, transmit, address filtering and the
// interrupt line. Ne2000Isa (nic/ne2000_isa.h) and Rtl8029 (nic/rtl8029.h)
// wrap it for their bus.
//
// Sources (facts checked against; no code taken):
//   - DP8390D/NS32490D NIC datasheet (National Semiconductor, 1995):
//     §10 "Remote DMA", §11 "Packet reception" (ring, BNRY/CURR, header),
//     §12 "Packet transmission", §13 "Register descriptions" (CR, ISR, IMR,
//     DCR, TCR, TSR, RCR, RSR, tally counters), the register map by page.
//   - Realtek RTL8029AS datasheet: page-0 0x0a/0x0b ID 'P' 'C', page 3
//     (9346CR, CONFIG0-3, HLTCLK, 8029ASID0/1), RCR bits 6-7 read as 1.
//   - Linux drivers/net/ethernet/8390/: lib8390.c (__NS8390_init's
//     register order, ei_receive's ring walk and next-page check,
//     do_set_multicast_list's MAR read-back, make_mc_bits/ether_crc, the
//     IMR handling in ei_start_xmit/ei_interrupt), ne2k-pci.c
//     (ne2k_pci_init_one's probe and word-mode PROM read, the 32-bit
//     get_8390_hdr/block_input/block_output), ne.c (ne_probe1's byte-mode
//     PROM read and IRQ autoprobe, the word16 block I/O).
//   - QEMU hw/net/ne2000.c, Bochs iodev/network/ne2k.cc and its descendant
//     86Box net_ne2000.c (RTL8029AS page 3) as comparisons (where we differ
//     on purpose is said below and in nic/README.md).
//
// Port map (offsets from the card's base, 32 ports):
//   0x00-0x0f  CR (every page) and the paged registers, 1-byte accesses only
//   0x10-0x17  the remote-DMA data port (all eight alias it), 1/2/4 bytes
//   0x18-0x1f  the reset port: a read resets the card (ISR.RST), a write is ignored
//
// Card memory (the remote-DMA address space, 16-bit addresses):
//   0x0000-0x001f  station-address PROM, read-only: MAC byte i at 2i and 2i+1
//                  (the PROM is byte-wide on a word bus), 0x57 at 28-31
//   0x4000-0xbfff  32 KiB buffer RAM = pages 0x40-0xbf of 256 bytes
//   elsewhere      reads 0xff, writes ignored
//
// Choices (see nic/README.md for the reasons):
//   - Unicast filtering uses PAR0-5 (what the guest programmed), not the PROM.
//     PAR starts out as the PROM address, as a boot ROM would leave it.
//   - Full ring: a frame needing n pages is stored only if n < free pages, so
//     CURR never catches up with BNRY; otherwise it waits in a bounded host
//     queue (kRxQueueFrames) and is retried when BNRY is written or the card
//     is started. OVW is never raised; a full queue drops (counted, and in
//     CNTR2 as a missed packet).
//   - Pages per frame are ceil((length + 4 header + 4 FCS) / 256) although
//     no FCS is stored (the length field is frame + 4), as QEMU does; this is
//     what Linux's ei_receive next-page check expects.
//   - TCR loopback (LB != 0): a transmitted frame goes nowhere (not to the
//     backend, not into the ring) but completes with TSR.PTX/ISR.PTX.
//     Reception from the network is not affected by TCR.
//   - Remote DMA stops when RBCR reaches 0 (ISR.RDC): later data-port reads
//     return 0xff and writes are dropped, uncounted (ne2k-pci reads the
//     PROM with 32 inb in word mode, 16 past the count).
//   - In word mode (DCR.WTS) a 1-byte data-port access moves a whole word
//     (reads return its low byte; writes store the byte and skip the other);
//     2- and 4-byte accesses move 2 and 4 bytes in either mode, as the ISA
//     bus splits them. DCR.BOS (big-endian words) is ignored.
//   - The Send Packet remote-DMA command (CR.RD = 3) is not implemented: it
//     is counted as a bad access and does nothing.
//
// Not thread-safe: the Monitor serialises all calls (port I/O and receive()).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <vector>

#include "nic/net_backend.h"
#include "vmcore/bus/io_device.h"

namespace twoostwo::nic {

/// Which card the core answers as.
///   kNe2000:  a plain DP8390 on an NE2000: page-0 0x0a/0x0b and page 3 read 0xff.
///   kRtl8029: the Realtek RTL8029AS: page-0 0x0a/0x0b read the ID 0x50 0x43
///             ('P', 'C'); page 3 holds 9346CR (0x01), CONFIG0 (0x03) = 0x00,
///             CONFIG2 (0x05) = 0x40 (10BaseT), CONFIG3 (0x06) = 0x40 (full
///             duplex), HLTCLK (0x09, write-only), 8029ASID0/1 (0x0e/0x0f) =
///             0x29 0x80. CONFIG2/3 accept writes only while 9346CR's EEM
///             bits are 11 ("config write enable"), as Linux's
///             set_realtek_fdx does.
enum class Dp8390Variant { kNe2000, kRtl8029 };

/// Per-card counters for the monitor's statistics and the tests.
struct Dp8390Counters {
  uint64_t tx_frames = 0, tx_bytes = 0;  // handed to the backend (bytes after padding)
  uint64_t rx_frames = 0, rx_bytes = 0;  // written into the receive ring (bytes after padding)
  uint64_t rx_filtered = 0;              // not for us (address filter), or RCR.MON set
  uint64_t rx_queued = 0;                // had to wait in the host-side queue (ring full)
  uint64_t rx_dropped = 0;               // lost: queue full, card stopped, bad ring set-up, or oversize
  uint64_t bad_accesses = 0;             // guest mistakes: invalid pointers/counts, unsupported widths
};

class Dp8390 {
 public:
  /// The port map above, as offsets from the card's base: the remote-DMA
  /// data port and its aliases [kDataPort, kDataPort + kDataPorts), then the
  /// reset port's [kResetPort, kPortCount).
  static constexpr uint16_t kDataPort = 0x10;
  static constexpr uint16_t kDataPorts = 8;
  static constexpr uint16_t kResetPort = 0x18;
  static constexpr uint16_t kPortCount = 0x20;
  /// Bound of the host-side receive queue, in frames.
  static constexpr size_t kRxQueueFrames = 64;
  /// Largest frame receive() accepts, in bytes without FCS: kMaxFrame plus
  /// an 802.1Q tag (Linux ei_receive accepts up to 1518).
  static constexpr size_t kMaxRxFrame = kMaxFrame + 4;
  /// Buffer RAM: pages [kRamFirstPage, kRamEndPage) of 256 bytes.
  static constexpr uint8_t kRamFirstPage = 0x40;
  static constexpr unsigned kRamEndPage = 0xC0;

  /// `mac` is burnt into the PROM (and is PAR's power-on value). `irq` and
  /// `backend` must outlive the card. The card starts in its power-on
  /// state: CR = 0x21 (stopped, page 0, remote DMA aborted), ISR = RST,
  /// IMR = 0, the line low (set() is not called until it changes).
  Dp8390(Dp8390Variant variant, const MacAddress& mac, bus::IrqLine& irq, NetBackend& backend);
  Dp8390(const Dp8390&) = delete;
  Dp8390& operator=(const Dp8390&) = delete;

  /// A port read at `offset` (0x00-0x1f, see the port map above) of
  /// data.size() bytes (1, 2 or 4; little-endian). Registers take 1-byte
  /// reads only; anything else (wider register reads, offsets >= 0x20,
  /// other widths) reads 0xff bytes and counts a bad access.
  void read(uint64_t offset, std::span<uint8_t> data);
  /// A port write, same shapes as read(). Unsupported writes are ignored and
  /// counted as bad accesses; writes to the reset port are ignored silently.
  void write(uint64_t offset, std::span<const uint8_t> data);

  /// A frame from the backend (destination MAC first, no FCS; the caller
  /// holds the device lock). Short frames are padded to kMinFrame. Returns
  /// true if the card took it: written into the ring (ISR.PRX) or queued
  /// host-side until the ring has room. Returns false, counting why, if it
  /// was oversize (> kMaxRxFrame), the card is stopped, the ring set-up is
  /// invalid or the queue is full (rx_dropped), or it was not for us or
  /// RCR.MON is set (rx_filtered).
  bool receive(std::span<const std::byte> frame);

  const Dp8390Counters& counters() const { return counters_; }
  /// PAR0-5 as the guest programmed them (page 1, 0x01-0x06).
  MacAddress station_address() const { return par_; }
  /// The MAC in the station-address PROM.
  const MacAddress& prom_address() const { return mac_; }
  /// Frames waiting in the host-side receive queue (0..kRxQueueFrames).
  size_t rx_queue_length() const { return rx_queue_.size(); }
  /// Count a guest mistake seen by the card's bus side (e.g. Rtl8029's BAR
  /// moved onto ports another device owns).
  void count_bad_access() { ++counters_.bad_accesses; }

 private:
  // A validated receive ring: pages [start, stop), curr and bnry inside it.
  struct Ring {
    unsigned start, stop, curr, bnry;
  };

  uint8_t read_register(unsigned reg);
  void write_register(unsigned reg, uint8_t value);
  void write_command(uint8_t value);
  void data_port_read(std::span<uint8_t> data);
  void data_port_write(std::span<const uint8_t> data);
  void finish_dma_access(unsigned moved, bool fault);
  void advance_remote_address();
  void hardware_reset();
  void transmit();
  bool accepts(std::span<const std::byte> frame) const;
  std::optional<Ring> ring() const;
  bool store_frame(const Ring& ring, std::span<const std::byte> frame);
  void drain_rx_queue();
  /// True if the receive ring holds frames the driver has not read (the page
  /// after BNRY is not CURR).
  bool rx_frames_unread() const;
  void count_missed_packet();
  void update_irq();
  uint8_t mem_read(uint32_t address, bool& ok) const;
  bool mem_write(uint32_t address, uint8_t value);

  const Dp8390Variant variant_;
  const MacAddress mac_;
  bus::IrqLine& irq_;
  NetBackend& backend_;

  std::array<uint8_t, 32> prom_{};
  std::array<uint8_t, (kRamEndPage - kRamFirstPage) * 256> ram_{};

  // CR, split: the page select, the remote-DMA command bits, and the
  // start/stop state (STA/STP read back from it; TXP is never visible
  // because transmission completes inside the CR write).
  unsigned page_ = 0;
  uint8_t rd_bits_ = 4;
  bool stopped_ = true;

  uint8_t pstart_ = 0, pstop_ = 0, bnry_ = 0, tpsr_ = 0, curr_ = 0;
  uint16_t tbcr_ = 0, rsar_ = 0, rbcr_ = 0, clda_ = 0;
  uint8_t isr_ = 0, imr_ = 0, rcr_ = 0, tcr_ = 0, dcr_ = 0, tsr_ = 0, rsr_ = 0;
  MacAddress par_{};
  std::array<uint8_t, 8> mar_{};
  std::array<uint8_t, 3> cntr_{};
  bool dma_active_ = false;         // a remote read/write with bytes left
  bool dma_fault_counted_ = false;  // this remote DMA already counted a bad access
  bool irq_level_ = false;

  // RTL8029AS page 3.
  uint8_t cr9346_ = 0, config2_ = 0x40, config3_ = 0x40;

  std::deque<std::vector<std::byte>> rx_queue_;  // padded frames, oldest first
  std::array<std::byte, kMinFrame> pad_buf_{};
  std::array<std::byte, kMaxFrame> tx_buf_{};
  Dp8390Counters counters_;
};

}  // namespace twoostwo::nic
