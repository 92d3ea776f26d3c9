// Test doubles and a port-level "driver" that replays what Linux's 8390
// drivers do (drivers/net/ethernet/8390/lib8390.c, ne2k-pci.c, ne.c), so the
// NIC tests drive the models through a bus::IoBus exactly as a guest would.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "nic/net_backend.h"
#include "vmcore/bus/io_bus.h"
#include "vmcore/bus/io_device.h"

namespace twoostwo::nic::test {

// Register offsets and bits with Linux 8390.h's names.
inline constexpr uint8_t E8390_CMD = 0x00, E8390_STOP = 0x01, E8390_START = 0x02,
                         E8390_TRANS = 0x04, E8390_RREAD = 0x08, E8390_RWRITE = 0x10,
                         E8390_NODMA = 0x20, E8390_PAGE0 = 0x00, E8390_PAGE1 = 0x40,
                         E8390_PAGE2 = 0x80, E8390_PAGE3 = 0xC0;
inline constexpr uint8_t EN0_CLDALO = 0x01, EN0_STARTPG = 0x01, EN0_STOPPG = 0x02,
                         EN0_BOUNDARY = 0x03, EN0_TSR = 0x04, EN0_TPSR = 0x04, EN0_TCNTLO = 0x05,
                         EN0_TCNTHI = 0x06, EN0_ISR = 0x07, EN0_RSARLO = 0x08, EN0_RSARHI = 0x09,
                         EN0_RCNTLO = 0x0a, EN0_RCNTHI = 0x0b, EN0_RSR = 0x0c, EN0_RXCR = 0x0c,
                         EN0_TXCR = 0x0d, EN0_COUNTER0 = 0x0d, EN0_DCFG = 0x0e,
                         EN0_COUNTER1 = 0x0e, EN0_IMR = 0x0f, EN0_COUNTER2 = 0x0f;
inline constexpr uint8_t EN1_PHYS = 0x01, EN1_CURPAG = 0x07, EN1_MULT = 0x08;
inline constexpr uint8_t ENISR_RX = 0x01, ENISR_TX = 0x02, ENISR_RX_ERR = 0x04,
                         ENISR_TX_ERR = 0x08, ENISR_OVER = 0x10, ENISR_COUNTERS = 0x20,
                         ENISR_RDC = 0x40, ENISR_RESET = 0x80, ENISR_ALL = 0x3f;
inline constexpr uint8_t E8390_RXCONFIG = 0x04, E8390_RXOFF = 0x20, E8390_TXCONFIG = 0x00,
                         E8390_TXOFF = 0x02;
inline constexpr uint8_t NE_DATAPORT = 0x10, NE_RESET = 0x1f;
inline constexpr uint8_t NESM_START_PG = 0x40, NESM_STOP_PG = 0x80, TX_PAGES = 12;

/// Records every level change driven on the line.
class FakeIrq final : public bus::IrqLine {
 public:
  void set(bool new_level) override {
    changes.push_back(new_level);
    level = new_level;
  }
  std::vector<bool> changes;
  bool level = false;
};

/// Records every frame sent.
class FakeBackend final : public NetBackend {
 public:
  void send(std::span<const std::byte> frame) override {
    std::vector<uint8_t> f(frame.size());
    for (size_t i = 0; i < frame.size(); ++i) f[i] = static_cast<uint8_t>(frame[i]);
    frames.push_back(std::move(f));
  }
  std::vector<std::vector<uint8_t>> frames;
};

inline std::span<const std::byte> as_bytes(const std::vector<uint8_t>& v) {
  return std::as_bytes(std::span<const uint8_t>(v));
}

/// An Ethernet frame: dst, src, ethertype 0x88b5 (local experimental), then
/// `payload_len` bytes of a pattern seeded by `seed`.
inline std::vector<uint8_t> make_frame(const MacAddress& dst, size_t payload_len, uint8_t seed) {
  std::vector<uint8_t> f;
  f.insert(f.end(), dst.begin(), dst.end());
  const MacAddress src{0x02, 0x00, 0x00, 0x00, 0x00, 0x99};
  f.insert(f.end(), src.begin(), src.end());
  f.push_back(0x88);
  f.push_back(0xb5);
  for (size_t i = 0; i < payload_len; ++i) f.push_back(static_cast<uint8_t>(seed + i * 7));
  return f;
}

/// x86 port I/O over an IoBus, with the string instructions the drivers use.
class PortIo {
 public:
  explicit PortIo(bus::IoBus& io) : io_(io) {}
  uint8_t inb(uint16_t port) {
    std::array<uint8_t, 1> d{};
    io_.read(port, d);
    return d[0];
  }
  uint16_t inw(uint16_t port) {
    std::array<uint8_t, 2> d{};
    io_.read(port, d);
    return static_cast<uint16_t>(d[0] | d[1] << 8);
  }
  uint32_t inl(uint16_t port) {
    std::array<uint8_t, 4> d{};
    io_.read(port, d);
    return bus::load_le(d);
  }
  void outb(uint8_t v, uint16_t port) { io_.write(port, std::array<uint8_t, 1>{v}); }
  void outw(uint16_t v, uint16_t port) {
    io_.write(port, std::array<uint8_t, 2>{uint8_t(v), uint8_t(v >> 8)});
  }
  void outl(uint32_t v, uint16_t port) {
    io_.write(port, std::array<uint8_t, 4>{uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)});
  }
  // rep insw/insl/outsw/outsl: little-endian element by element.
  void insw(uint16_t port, uint8_t* buf, size_t count) {
    for (size_t i = 0; i < count; ++i) io_.read(port, std::span<uint8_t>(buf + 2 * i, 2));
  }
  void insl(uint16_t port, uint8_t* buf, size_t count) {
    for (size_t i = 0; i < count; ++i) io_.read(port, std::span<uint8_t>(buf + 4 * i, 4));
  }
  void outsw(uint16_t port, const uint8_t* buf, size_t count) {
    for (size_t i = 0; i < count; ++i) io_.write(port, std::span<const uint8_t>(buf + 2 * i, 2));
  }
  void outsl(uint16_t port, const uint8_t* buf, size_t count) {
    for (size_t i = 0; i < count; ++i) io_.write(port, std::span<const uint8_t>(buf + 4 * i, 4));
  }
  bus::IoBus& bus() { return io_; }

 private:
  bus::IoBus& io_;
};

/// One received frame as Linux's ei_receive sees it.
struct RxFrame {
  uint8_t status = 0;
  uint8_t next = 0;
  uint16_t count = 0;  // includes the 4-byte header
  uint8_t page = 0;    // where it started
  std::vector<uint8_t> data;
};

/// The Linux 8390 library plus a block-I/O flavour: ne2k-pci with 32-bit I/O
/// (`dword`, the RTL8029 path) or ne.c/ne2k-pci word mode (insw/outsw).
class LinuxDriver {
 public:
  LinuxDriver(bus::IoBus& io, uint16_t base, bool dword) : io_(io), base_(base), dword_(dword) {}

  uint8_t in(uint8_t reg) { return io_.inb(static_cast<uint16_t>(base_ + reg)); }
  void out(uint8_t value, uint8_t reg) { io_.outb(value, static_cast<uint16_t>(base_ + reg)); }
  uint16_t data_port() const { return static_cast<uint16_t>(base_ + NE_DATAPORT); }
  PortIo& io() { return io_; }

  /// Read a register of another page, coming back to page 0 (started).
  uint8_t read_paged(uint8_t page_bits, uint8_t reg) {
    out(E8390_NODMA | page_bits, E8390_CMD);
    const uint8_t v = in(reg);
    out(E8390_NODMA | E8390_PAGE0, E8390_CMD);
    return v;
  }

  /// ne2k-pci ne2k_pci_init_one's "preliminary verification that we have a 8390".
  bool probe_8390() {
    const uint8_t reg0 = in(E8390_CMD);
    if (reg0 == 0xFF) return false;
    out(E8390_NODMA + E8390_PAGE1 + E8390_STOP, E8390_CMD);
    (void)in(0x0d);
    out(0xff, 0x0d);
    out(E8390_NODMA + E8390_PAGE0, E8390_CMD);
    (void)in(EN0_COUNTER0);
    return in(EN0_COUNTER0) == 0;
  }

  /// ne2k_pci_reset_8390: returns whether ISR.RST was seen.
  bool reset_8390() {
    out(in(NE_RESET), NE_RESET);
    const bool rst = (in(EN0_ISR) & ENISR_RESET) != 0;
    out(ENISR_RESET, EN0_ISR);
    return rst;
  }

  /// The PROM program sequence of ne2k_pci_init_one / ne_probe1.
  void start_prom_read(uint8_t dcr) {
    const std::array<std::array<uint8_t, 2>, 13> seq{{
        {E8390_NODMA + E8390_PAGE0 + E8390_STOP, E8390_CMD},
        {dcr, EN0_DCFG},
        {0x00, EN0_RCNTLO},
        {0x00, EN0_RCNTHI},
        {0x00, EN0_IMR},
        {0xFF, EN0_ISR},
        {E8390_RXOFF, EN0_RXCR},
        {E8390_TXOFF, EN0_TXCR},
        {32, EN0_RCNTLO},
        {0x00, EN0_RCNTHI},
        {0x00, EN0_RSARLO},
        {0x00, EN0_RSARHI},
        {E8390_RREAD + E8390_START, E8390_CMD},
    }};
    for (const auto& [value, reg] : seq) out(value, reg);
  }

  /// lib8390.c __NS8390_init, in its register order, then (startp) the
  /// start and do_set_multicast_list.
  void ns8390_init(const MacAddress& mac, bool startp, uint8_t rxcr = E8390_RXCONFIG,
                   std::array<uint8_t, 8> mcfilter = {}) {
    out(E8390_NODMA + E8390_PAGE0 + E8390_STOP, E8390_CMD);
    out(0x49, EN0_DCFG);
    out(0x00, EN0_RCNTLO);
    out(0x00, EN0_RCNTHI);
    out(E8390_RXOFF, EN0_RXCR);
    out(E8390_TXOFF, EN0_TXCR);
    out(tx_start_page, EN0_TPSR);
    out(rx_start_page, EN0_STARTPG);
    out(static_cast<uint8_t>(stop_page - 1), EN0_BOUNDARY);
    current_page = rx_start_page;
    out(stop_page, EN0_STOPPG);
    out(0xFF, EN0_ISR);
    out(0x00, EN0_IMR);
    out(E8390_NODMA + E8390_PAGE1 + E8390_STOP, E8390_CMD);
    for (int i = 0; i < 6; ++i) {
      out(mac[i], static_cast<uint8_t>(EN1_PHYS + i));
      EXPECT_EQ(in(static_cast<uint8_t>(EN1_PHYS + i)), mac[i]) << "Hw. address read/write mismap " << i;
    }
    out(rx_start_page, EN1_CURPAG);
    out(E8390_NODMA + E8390_PAGE0 + E8390_STOP, E8390_CMD);
    if (startp) {
      out(0xff, EN0_ISR);
      out(ENISR_ALL, EN0_IMR);
      out(E8390_NODMA + E8390_PAGE0 + E8390_START, E8390_CMD);
      out(E8390_TXCONFIG, EN0_TXCR);
      out(E8390_RXCONFIG, EN0_RXCR);
      set_multicast_list(rxcr, mcfilter);
    }
  }

  /// do_set_multicast_list: load MAR0-7 (checking the read-back), then RCR.
  void set_multicast_list(uint8_t rxcr, const std::array<uint8_t, 8>& mcfilter) {
    out(E8390_RXCONFIG, EN0_RXCR);
    out(E8390_NODMA + E8390_PAGE1, E8390_CMD);
    for (int i = 0; i < 8; ++i) {
      out(mcfilter[i], static_cast<uint8_t>(EN1_MULT + i));
      EXPECT_EQ(in(static_cast<uint8_t>(EN1_MULT + i)), mcfilter[i])
          << "Multicast filter read/write mismap " << i;
    }
    out(E8390_NODMA + E8390_PAGE0, E8390_CMD);
    out(rxcr, EN0_RXCR);
  }

  /// ne2k_pci_block_output (or ne.c's word16 flavour): returns whether RDC came.
  bool block_output(const std::vector<uint8_t>& frame, uint8_t start_page) {
    std::vector<uint8_t> buf = frame;
    size_t count = buf.size();
    if (count & 1) ++count;  // RTL8029 is not ONLY_32BIT_IO: rounded to even only
    buf.resize(count + 4, 0);
    out(E8390_PAGE0 + E8390_START + E8390_NODMA, E8390_CMD);
    out(ENISR_RDC, EN0_ISR);
    out(static_cast<uint8_t>(count & 0xff), EN0_RCNTLO);
    out(static_cast<uint8_t>(count >> 8), EN0_RCNTHI);
    out(0x00, EN0_RSARLO);
    out(start_page, EN0_RSARHI);
    out(E8390_RWRITE + E8390_START, E8390_CMD);
    if (dword_) {
      io_.outsl(data_port(), buf.data(), count >> 2);
      if (count & 2) io_.outw(static_cast<uint16_t>(buf[count & ~size_t{3}] | buf[(count & ~size_t{3}) + 1] << 8), data_port());
    } else {
      io_.outsw(data_port(), buf.data(), count >> 1);
    }
    const bool rdc = (in(EN0_ISR) & ENISR_RDC) != 0;
    out(ENISR_RDC, EN0_ISR);
    return rdc;
  }

  /// NS8390_trigger_send.
  void trigger_send(uint16_t length, uint8_t start_page) {
    out(E8390_NODMA + E8390_PAGE0, E8390_CMD);
    EXPECT_EQ(in(E8390_CMD) & E8390_TRANS, 0) << "trigger_send() called with the transmitter busy";
    out(static_cast<uint8_t>(length & 0xff), EN0_TCNTLO);
    out(static_cast<uint8_t>(length >> 8), EN0_TCNTHI);
    out(start_page, EN0_TPSR);
    out(E8390_NODMA + E8390_TRANS + E8390_START, E8390_CMD);
  }

  /// ei_start_xmit's path for one frame: mask, copy, send, unmask.
  void start_xmit(const std::vector<uint8_t>& frame) {
    out(0x00, EN0_IMR);
    std::vector<uint8_t> padded = frame;
    if (padded.size() < 60) padded.resize(60, 0);
    EXPECT_TRUE(block_output(padded, tx_start_page));
    trigger_send(static_cast<uint16_t>(padded.size()), tx_start_page);
    out(ENISR_ALL, EN0_IMR);
  }

  /// ne2k_pci_get_8390_hdr.
  std::array<uint8_t, 4> get_8390_hdr(uint8_t ring_page) {
    out(E8390_NODMA + E8390_PAGE0 + E8390_START, E8390_CMD);
    out(4, EN0_RCNTLO);
    out(0, EN0_RCNTHI);
    out(0, EN0_RSARLO);
    out(ring_page, EN0_RSARHI);
    out(E8390_RREAD + E8390_START, E8390_CMD);
    std::array<uint8_t, 4> hdr{};
    if (dword_) {
      io_.insl(data_port(), hdr.data(), 1);
    } else {
      io_.insw(data_port(), hdr.data(), 2);
    }
    out(ENISR_RDC, EN0_ISR);
    return hdr;
  }

  /// ne2k_pci_block_input (the RTL8029 flavour: insl, then inw/inb for the tail).
  std::vector<uint8_t> block_input(size_t count, uint16_t ring_offset) {
    std::vector<uint8_t> buf(count + 4, 0);
    out(E8390_NODMA + E8390_PAGE0 + E8390_START, E8390_CMD);
    out(static_cast<uint8_t>(count & 0xff), EN0_RCNTLO);
    out(static_cast<uint8_t>(count >> 8), EN0_RCNTHI);
    out(static_cast<uint8_t>(ring_offset & 0xff), EN0_RSARLO);
    out(static_cast<uint8_t>(ring_offset >> 8), EN0_RSARHI);
    out(E8390_RREAD + E8390_START, E8390_CMD);
    if (dword_) {
      io_.insl(data_port(), buf.data(), count >> 2);
      size_t at = count & ~size_t{3};
      if (count & 2) {
        const uint16_t w = io_.inw(data_port());
        buf[at] = static_cast<uint8_t>(w);
        buf[at + 1] = static_cast<uint8_t>(w >> 8);
        at += 2;
      }
      if (count & 1) buf[at] = io_.inb(data_port());
    } else {
      io_.insw(data_port(), buf.data(), count >> 1);
      if (count & 1) buf[count - 1] = io_.inb(data_port());
    }
    out(ENISR_RDC, EN0_ISR);
    buf.resize(count);
    return buf;
  }

  /// lib8390.c ei_receive: walk the ring from BNRY+1 to CURR (at most 9
  /// frames), checking each header like Linux, and write BNRY = next - 1.
  std::vector<RxFrame> ei_receive() {
    std::vector<RxFrame> frames;
    const int num_rx_pages = stop_page - rx_start_page;
    int rx_pkt_count = 0;
    while (++rx_pkt_count < 10) {
      out(E8390_NODMA + E8390_PAGE1, E8390_CMD);
      const uint8_t rxing_page = in(EN1_CURPAG);
      out(E8390_NODMA + E8390_PAGE0, E8390_CMD);
      int this_frame = in(EN0_BOUNDARY) + 1;
      if (this_frame >= stop_page) this_frame = rx_start_page;
      EXPECT_EQ(this_frame, current_page) << "mismatched read page pointers";
      if (this_frame == rxing_page) break;
      const auto hdr = get_8390_hdr(static_cast<uint8_t>(this_frame));
      RxFrame f;
      f.status = hdr[0];
      f.next = hdr[1];
      f.count = static_cast<uint16_t>(hdr[2] | hdr[3] << 8);
      f.page = static_cast<uint8_t>(this_frame);
      const int pkt_len = f.count - 4;
      const int next_frame = this_frame + 1 + ((pkt_len + 4) >> 8);
      const bool sane = f.next == next_frame || f.next == next_frame + 1 ||
                        f.next == next_frame - num_rx_pages || f.next == next_frame + 1 - num_rx_pages;
      EXPECT_TRUE(sane) << "bogus next page " << int(f.next) << " for frame at " << this_frame
                        << " count " << f.count;
      EXPECT_GE(pkt_len, 60);
      EXPECT_LE(pkt_len, 1518);
      EXPECT_EQ(f.status & 0x0F, 0x01);
      f.data = block_input(static_cast<size_t>(pkt_len), static_cast<uint16_t>((this_frame << 8) + 4));
      int next = f.next;
      if (next >= stop_page) next = rx_start_page;
      current_page = next;
      out(static_cast<uint8_t>(next - 1), EN0_BOUNDARY);
      frames.push_back(std::move(f));
    }
    out(ENISR_RX + ENISR_RX_ERR, EN0_ISR);
    return frames;
  }

  uint8_t tx_start_page = NESM_START_PG;
  uint8_t rx_start_page = NESM_START_PG + TX_PAGES;
  uint8_t stop_page = NESM_STOP_PG;
  int current_page = NESM_START_PG + TX_PAGES;

 private:
  PortIo io_;
  uint16_t base_;
  bool dword_;
};

}  // namespace twoostwo::nic::test
