#include "nic/dp8390.h"

#include <algorithm>
#include <cstring>

namespace twoostwo::nic {
namespace {

// CR bits (DP8390D §13, Command Register).
constexpr uint8_t kCrStp = 0x01, kCrSta = 0x02, kCrTxp = 0x04;
constexpr uint8_t kRdRead = 1, kRdWrite = 2, kRdSendPacket = 3, kRdAbort = 4;

// ISR/IMR bits.
constexpr uint8_t kIsrPrx = 0x01, kIsrPtx = 0x02, kIsrTxe = 0x08, kIsrCnt = 0x20,
                  kIsrRdc = 0x40, kIsrRst = 0x80;

// RCR bits.
constexpr uint8_t kRcrAb = 0x04, kRcrAm = 0x08, kRcrPro = 0x10, kRcrMon = 0x20;
// TCR loopback bits (LB1, LB0).
constexpr uint8_t kTcrLoopback = 0x06;
// DCR word-transfer select.
constexpr uint8_t kDcrWts = 0x01;
// TSR / RSR bits.
constexpr uint8_t kTsrPtx = 0x01, kTsrAbt = 0x08;
constexpr uint8_t kRsrPrx = 0x01, kRsrPhy = 0x20;

// The card's memory map (remote-DMA addresses).
constexpr uint32_t kPromSize = 32;
constexpr uint32_t kRamStart = uint32_t{Dp8390::kRamFirstPage} << 8;  // 0x4000
constexpr uint32_t kRamEnd = uint32_t{Dp8390::kRamEndPage} << 8;      // 0xC000

static_assert(Dp8390::kDataPort + Dp8390::kDataPorts == Dp8390::kResetPort);

// Linux ether_crc (include/linux/etherdevice.h, used by lib8390.c
// make_mc_bits): CRC-32, polynomial 0x04C11DB7, register shifted left (MSB
// first), each octet fed least-significant bit first, initial value all
// ones, no final inversion.
uint32_t ether_crc(std::span<const std::byte> data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (std::byte octet : data) {
    auto bits = static_cast<unsigned>(octet);
    for (int bit = 0; bit < 8; ++bit, bits >>= 1) {
      const bool feedback = ((crc >> 31) ^ (bits & 1u)) != 0;
      crc <<= 1;
      if (feedback) crc ^= 0x04C11DB7u;
    }
  }
  return crc;
}

}  // namespace

Dp8390::Dp8390(Dp8390Variant variant, const MacAddress& mac, bus::IrqLine& irq,
               NetBackend& backend)
    : variant_(variant), mac_(mac), irq_(irq), backend_(backend) {
  // The PROM is byte-wide on a word bus: each byte appears twice
  // (ne.c ne_probe1 detects word cards by the doubling; QEMU ne2000_reset).
  prom_.fill(0x00);
  for (size_t i = 0; i < mac_.size(); ++i) prom_[2 * i] = prom_[2 * i + 1] = mac_[i];
  for (size_t i = 28; i < 32; ++i) prom_[i] = 0x57;  // logical bytes 14, 15: NE2000 signature
  par_ = mac_;
  isr_ = kIsrRst;
}

// ---------------------------------------------------------------------------
// Port I/O

void Dp8390::read(uint64_t offset, std::span<uint8_t> data) {
  if (offset < kDataPort && data.size() == 1) {
    data[0] = read_register(static_cast<unsigned>(offset));
    return;
  }
  if (offset >= kDataPort && offset < kResetPort &&
      (data.size() == 1 || data.size() == 2 || data.size() == 4)) {
    data_port_read(data);
    return;
  }
  if (offset >= kResetPort && offset < kPortCount) {
    hardware_reset();
    std::fill(data.begin(), data.end(), uint8_t{0x00});
    return;
  }
  ++counters_.bad_accesses;
  std::fill(data.begin(), data.end(), uint8_t{0xFF});
}

void Dp8390::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset < kDataPort && data.size() == 1) {
    write_register(static_cast<unsigned>(offset), data[0]);
    return;
  }
  if (offset >= kDataPort && offset < kResetPort &&
      (data.size() == 1 || data.size() == 2 || data.size() == 4)) {
    data_port_write(data);
    return;
  }
  if (offset >= kResetPort && offset < kPortCount) return;  // end of the reset pulse: nothing to do
  ++counters_.bad_accesses;
}

// ---------------------------------------------------------------------------
// Registers (DP8390D register map; RTL8029AS page 3)

uint8_t Dp8390::read_register(unsigned reg) {
  if (reg == 0) {
    return static_cast<uint8_t>((page_ << 6) | (rd_bits_ << 3) | (stopped_ ? kCrStp : kCrSta));
  }
  const bool rtl = variant_ == Dp8390Variant::kRtl8029;
  switch (page_) {
    case 0:
      switch (reg) {
        case 0x01: return static_cast<uint8_t>(clda_);       // CLDA0
        case 0x02: return static_cast<uint8_t>(clda_ >> 8);  // CLDA1
        case 0x03: return bnry_;
        case 0x04: return tsr_;
        case 0x05: return 0;  // NCR: no collisions on a switched fabric
        case 0x06: return 0;  // FIFO (meaningful only after a real loopback)
        case 0x07: return isr_;
        case 0x08: return static_cast<uint8_t>(rsar_);       // CRDA0
        case 0x09: return static_cast<uint8_t>(rsar_ >> 8);  // CRDA1
        case 0x0a: return rtl ? 0x50 : 0xFF;                 // 8029ID0 'P'
        case 0x0b: return rtl ? 0x43 : 0xFF;                 // 8029ID1 'C'
        case 0x0c: return rsr_;
        default: {  // 0x0d-0x0f CNTR0-2, cleared by reading (Linux ei_get_stats adds them up)
          const uint8_t v = cntr_[reg - 0x0d];
          cntr_[reg - 0x0d] = 0;
          return v;
        }
      }
    case 1:
      if (reg <= 0x06) return par_[reg - 1];
      if (reg == 0x07) return curr_;
      return mar_[reg - 0x08];
    case 2:
      switch (reg) {
        case 0x01: return pstart_;
        case 0x02: return pstop_;
        case 0x04: return tpsr_;
        case 0x0c: return static_cast<uint8_t>(rcr_ | 0xC0);  // bits 6-7 read as 1 (RTL8029AS)
        case 0x0d: return static_cast<uint8_t>(tcr_ & 0x1F);
        case 0x0e: return static_cast<uint8_t>(dcr_ & 0x7F);
        case 0x0f: return static_cast<uint8_t>(imr_ & 0x7F);
        default: return 0xFF;  // RNPP, LNPP, address counter, reserved: not modelled
      }
    default:
      if (!rtl) return 0xFF;
      switch (reg) {
        case 0x01: return cr9346_;
        case 0x03: return 0x00;  // CONFIG0: 10BaseT, no BNC
        case 0x05: return config2_;
        case 0x06: return config3_;
        case 0x0e: return 0x29;  // 8029ASID0
        case 0x0f: return 0x80;  // 8029ASID1
        default: return 0xFF;
      }
  }
}

void Dp8390::write_register(unsigned reg, uint8_t value) {
  if (reg == 0) {
    write_command(value);
    return;
  }
  switch (page_) {
    case 0:
      switch (reg) {
        case 0x01: pstart_ = value; break;
        case 0x02: pstop_ = value; break;
        case 0x03:
          bnry_ = value;
          drain_rx_queue();  // the guest freed ring pages: waiting frames may fit now
          update_irq();
          break;
        case 0x04: tpsr_ = value; break;
        case 0x05: tbcr_ = static_cast<uint16_t>((tbcr_ & 0xFF00) | value); break;
        case 0x06: tbcr_ = static_cast<uint16_t>((tbcr_ & 0x00FF) | (value << 8)); break;
        case 0x07:  // write 1 to clear; RST is not cleared by writing (DP8390D ISR)
          isr_ = static_cast<uint8_t>(isr_ & ~(value & 0x7F));
          if ((value & kIsrPrx) != 0 && rx_frames_unread()) {
            // Linux's ei_receive() reads at most 10 frames, then acks PRX; on a
            // wire, the next arriving frame would set PRX again. Frames here
            // may be waiting in the host-side queue for ring space that only
            // reading frees, so PRX stays set while the ring holds unread
            // frames (else both sides wait for each other).
            isr_ |= kIsrPrx;
          }
          update_irq();
          break;
        case 0x08: rsar_ = static_cast<uint16_t>((rsar_ & 0xFF00) | value); break;
        case 0x09: rsar_ = static_cast<uint16_t>((rsar_ & 0x00FF) | (value << 8)); break;
        case 0x0a: rbcr_ = static_cast<uint16_t>((rbcr_ & 0xFF00) | value); break;
        case 0x0b: rbcr_ = static_cast<uint16_t>((rbcr_ & 0x00FF) | (value << 8)); break;
        case 0x0c: rcr_ = static_cast<uint8_t>(value & 0x3F); break;
        case 0x0d: tcr_ = static_cast<uint8_t>(value & 0x1F); break;
        case 0x0e: dcr_ = static_cast<uint8_t>(value & 0x7F); break;
        default:  // 0x0f IMR: the line follows at once (dropped when written 0)
          imr_ = static_cast<uint8_t>(value & 0x7F);
          update_irq();
          break;
      }
      break;
    case 1:
      if (reg <= 0x06) {
        par_[reg - 1] = value;
      } else if (reg == 0x07) {
        curr_ = value;
      } else {
        mar_[reg - 0x08] = value;
      }
      break;
    case 2:
      break;  // diagnostic writes (CLDA, RNPP, LNPP, address counter): ignored
    default:
      if (variant_ != Dp8390Variant::kRtl8029) break;
      switch (reg) {
        case 0x01: cr9346_ = static_cast<uint8_t>(value & 0xFE); break;  // EEDO (bit 0) is an input
        case 0x05:
          if ((cr9346_ & 0xC0) == 0xC0) config2_ = static_cast<uint8_t>(value & 0xE0);
          break;
        case 0x06:
          if ((cr9346_ & 0xC0) == 0xC0) config3_ = static_cast<uint8_t>(value & 0x46);
          break;
        default: break;  // HLTCLK ('R'/'H') and reserved: nothing to model
      }
      break;
  }
}

void Dp8390::write_command(uint8_t value) {
  page_ = value >> 6;
  const uint8_t rd = (value >> 3) & 7;
  if (rd != 0) rd_bits_ = rd;  // 000 is "not allowed": keep the current command

  if ((value & kCrStp) != 0) {
    // Software reset: the NIC goes offline and reports RST (DP8390D CR.STP, ISR.RST).
    stopped_ = true;
    isr_ |= kIsrRst;
  } else if ((value & kCrSta) != 0) {
    const bool was_stopped = stopped_;
    stopped_ = false;
    isr_ &= static_cast<uint8_t>(~kIsrRst);
    if (was_stopped) drain_rx_queue();
  }

  if ((rd & kRdAbort) != 0) {
    dma_active_ = false;
  } else if (rd == kRdRead || rd == kRdWrite) {
    dma_fault_counted_ = false;
    dma_active_ = rbcr_ != 0;
    if (rbcr_ == 0) isr_ |= kIsrRdc;  // zero-length transfer completes at once (ne.c IRQ probe)
  } else if (rd == kRdSendPacket) {
    dma_active_ = false;
    ++counters_.bad_accesses;  // Send Packet is not implemented (no Linux driver uses it)
  }

  if ((value & kCrTxp) != 0 && !stopped_) transmit();
  update_irq();
}

// ---------------------------------------------------------------------------
// Remote DMA (DP8390D §10) through the data port

uint8_t Dp8390::mem_read(uint32_t address, bool& ok) const {
  if (address < kPromSize) return prom_[address];
  if (address >= kRamStart && address < kRamEnd) return ram_[address - kRamStart];
  ok = false;
  return 0xFF;
}

bool Dp8390::mem_write(uint32_t address, uint8_t value) {
  if (address >= kRamStart && address < kRamEnd) {
    ram_[address - kRamStart] = value;
    return true;
  }
  return false;  // PROM is read-only; nothing else is decoded
}

void Dp8390::advance_remote_address() {
  rsar_ = static_cast<uint16_t>(rsar_ + 1);
  // The remote DMA wraps from PSTOP to PSTART so a driver can read a frame
  // that wraps around the ring in one transfer (ne2k-pci block_input relies
  // on it). Only with a sane PSTART/PSTOP pair inside buffer RAM.
  if (pstart_ < pstop_ && pstart_ >= kRamFirstPage && pstop_ <= kRamEndPage &&
      rsar_ == (uint32_t{pstop_} << 8)) {
    rsar_ = static_cast<uint16_t>(pstart_ << 8);
  }
}

void Dp8390::finish_dma_access(unsigned moved, bool fault) {
  if (fault && !dma_fault_counted_) {
    ++counters_.bad_accesses;  // RSAR+RBCR reach outside PROM/RAM: counted once per transfer
    dma_fault_counted_ = true;
  }
  rbcr_ = rbcr_ > moved ? static_cast<uint16_t>(rbcr_ - moved) : uint16_t{0};
  if (rbcr_ == 0) {
    dma_active_ = false;
    isr_ |= kIsrRdc;
    update_irq();
  }
}

void Dp8390::data_port_read(std::span<uint8_t> data) {
  if (!dma_active_) {
    std::fill(data.begin(), data.end(), uint8_t{0xFF});
    return;
  }
  const bool word_mode = (dcr_ & kDcrWts) != 0;
  const unsigned moved = (data.size() == 1 && word_mode) ? 2u : static_cast<unsigned>(data.size());
  bool ok = true;
  for (unsigned i = 0; i < moved; ++i) {
    const uint8_t b = mem_read(rsar_, ok);
    if (i < data.size()) data[i] = b;
    advance_remote_address();
  }
  finish_dma_access(moved, !ok);
}

void Dp8390::data_port_write(std::span<const uint8_t> data) {
  if (!dma_active_) return;
  const bool word_mode = (dcr_ & kDcrWts) != 0;
  const unsigned moved = (data.size() == 1 && word_mode) ? 2u : static_cast<unsigned>(data.size());
  bool ok = true;
  for (unsigned i = 0; i < moved; ++i) {
    if (i < data.size() && !mem_write(rsar_, data[i])) ok = false;
    advance_remote_address();
  }
  finish_dma_access(moved, !ok);
}

// ---------------------------------------------------------------------------
// Reset port (NE2000 ASIC; ne2k-pci ne2k_pci_reset_8390, ne.c ne_reset_8390)

void Dp8390::hardware_reset() {
  stopped_ = true;
  page_ = 0;
  rd_bits_ = kRdAbort;
  isr_ = kIsrRst;
  imr_ = 0;
  dma_active_ = false;
  // The host-side queue is the card's: a reset loses what waited in it.
  counters_.rx_dropped += rx_queue_.size();
  rx_queue_.clear();
  update_irq();
}

// ---------------------------------------------------------------------------
// Transmit (DP8390D §12; Linux NS8390_trigger_send)

void Dp8390::transmit() {
  size_t length = tbcr_;
  bool guest_error = false;
  if (length > kMaxFrame) {  // longer than Ethernet allows: send the first kMaxFrame bytes
    length = kMaxFrame;
    guest_error = true;
  }
  const uint32_t start = uint32_t{tpsr_} << 8;
  if (length == 0 || start < kRamStart || start + length > kRamEnd) {
    // The frame is not inside buffer RAM: abort it, as an excessive-collision
    // abort would look to the driver (TSR.ABT, ISR.TXE), so it recovers.
    ++counters_.bad_accesses;
    tsr_ = kTsrAbt;
    isr_ |= kIsrTxe;
    return;
  }
  if (guest_error) ++counters_.bad_accesses;

  std::memcpy(tx_buf_.data(), ram_.data() + (start - kRamStart), length);
  const size_t padded = std::max(length, kMinFrame);
  std::fill(tx_buf_.begin() + static_cast<std::ptrdiff_t>(length),
            tx_buf_.begin() + static_cast<std::ptrdiff_t>(padded), std::byte{0});
  if ((tcr_ & kTcrLoopback) == 0) {
    backend_.send(std::span<const std::byte>(tx_buf_.data(), padded));
    ++counters_.tx_frames;
    counters_.tx_bytes += padded;
  }
  tsr_ = kTsrPtx;
  isr_ |= kIsrPtx;
}

// ---------------------------------------------------------------------------
// Receive (DP8390D §11; Linux ei_receive)

bool Dp8390::accepts(std::span<const std::byte> frame) const {
  std::array<uint8_t, 6> dest{};
  for (size_t i = 0; i < dest.size(); ++i) dest[i] = static_cast<uint8_t>(frame[i]);
  if ((dest[0] & 0x01) != 0) {
    const bool broadcast = std::all_of(dest.begin(), dest.end(), [](uint8_t b) { return b == 0xFF; });
    if (broadcast) return (rcr_ & kRcrAb) != 0;
    if ((rcr_ & kRcrAm) == 0) return false;
    const unsigned index = ether_crc(frame.first(6)) >> 26;  // Linux make_mc_bits
    return (mar_[index >> 3] & (1u << (index & 7))) != 0;
  }
  // RCR.PRO accepts every physical (unicast) address; group addresses still
  // need AB/AM (DP8390D RCR).
  return (rcr_ & kRcrPro) != 0 || dest == par_;
}

std::optional<Dp8390::Ring> Dp8390::ring() const {
  if (pstart_ < kRamFirstPage || pstop_ > kRamEndPage || pstop_ <= pstart_) return std::nullopt;
  Ring r{pstart_, pstop_, curr_, bnry_};
  // Linux writes BNRY = next - 1, which is PSTART - 1 when the next frame
  // is at PSTART; that means the same as PSTOP - 1.
  if (r.bnry + 1 == r.start) r.bnry = r.stop - 1;
  if (r.curr < r.start || r.curr >= r.stop || r.bnry < r.start || r.bnry >= r.stop) {
    return std::nullopt;
  }
  return r;
}

bool Dp8390::store_frame(const Ring& r, std::span<const std::byte> frame) {
  const unsigned ring_pages = r.stop - r.start;
  const unsigned free_pages = r.bnry == r.curr ? ring_pages : (r.bnry + ring_pages - r.curr) % ring_pages;
  const size_t count = frame.size() + 4;  // the length field includes the 4-byte header
  const auto need = static_cast<unsigned>((count + 4 + 255) / 256);  // + room for an FCS
  if (need >= free_pages) return false;  // strictly fewer, or CURR would reach BNRY

  unsigned next = r.curr + need;
  if (next >= r.stop) next -= ring_pages;
  const bool group = (static_cast<uint8_t>(frame[0]) & 0x01) != 0;
  rsr_ = static_cast<uint8_t>(kRsrPrx | (group ? kRsrPhy : 0));

  const uint32_t ring_start = r.start << 8, ring_end = r.stop << 8;
  uint32_t address = r.curr << 8;
  uint8_t* header = &ram_[address - kRamStart];
  header[0] = rsr_;
  header[1] = static_cast<uint8_t>(next);
  header[2] = static_cast<uint8_t>(count);
  header[3] = static_cast<uint8_t>(count >> 8);
  address += 4;  // still inside the CURR page
  size_t done = 0;
  while (done < frame.size()) {
    const size_t chunk = std::min<size_t>(frame.size() - done, ring_end - address);
    std::memcpy(&ram_[address - kRamStart], frame.data() + done, chunk);
    done += chunk;
    address += static_cast<uint32_t>(chunk);
    if (address == ring_end) address = ring_start;
  }
  clda_ = static_cast<uint16_t>(address);
  curr_ = static_cast<uint8_t>(next);
  isr_ |= kIsrPrx;
  ++counters_.rx_frames;
  counters_.rx_bytes += frame.size();
  return true;
}

bool Dp8390::rx_frames_unread() const {
  if (stopped_) return false;
  const auto r = ring();
  if (!r) return false;
  unsigned next_to_read = r->bnry + 1;
  if (next_to_read >= r->stop) next_to_read = r->start;
  return next_to_read != r->curr;
}

void Dp8390::drain_rx_queue() {
  if (stopped_) return;
  while (!rx_queue_.empty()) {
    const auto r = ring();
    if (!r || !store_frame(*r, rx_queue_.front())) return;
    rx_queue_.pop_front();
  }
}

void Dp8390::count_missed_packet() {
  // CNTR2 counts packets lost for lack of buffers or to monitor mode; ISR.CNT
  // when a counter's top bit sets (DP8390D tally counters). Saturates.
  if (cntr_[2] != 0xFF) ++cntr_[2];
  if ((cntr_[2] & 0x80) != 0) isr_ |= kIsrCnt;
}

bool Dp8390::receive(std::span<const std::byte> frame) {
  if (frame.size() > kMaxRxFrame || stopped_) {
    ++counters_.rx_dropped;
    return false;
  }
  if (frame.size() < kMinFrame) {
    std::fill(pad_buf_.begin(), pad_buf_.end(), std::byte{0});
    std::copy(frame.begin(), frame.end(), pad_buf_.begin());
    frame = pad_buf_;
  }
  if (!accepts(frame)) {
    ++counters_.rx_filtered;
    return false;
  }
  if ((rcr_ & kRcrMon) != 0) {  // checked, not buffered (DP8390D RCR.MON)
    ++counters_.rx_filtered;
    count_missed_packet();
    update_irq();
    return false;
  }
  const auto r = ring();
  if (!r) {
    ++counters_.rx_dropped;
    ++counters_.bad_accesses;
    count_missed_packet();
    update_irq();
    return false;
  }
  drain_rx_queue();
  if (rx_queue_.empty() && store_frame(*ring(), frame)) {
    update_irq();
    return true;
  }
  if (rx_queue_.size() >= kRxQueueFrames) {
    ++counters_.rx_dropped;
    count_missed_packet();
    update_irq();
    return false;
  }
  rx_queue_.emplace_back(frame.begin(), frame.end());
  ++counters_.rx_queued;
  update_irq();  // drain_rx_queue may have stored earlier frames
  return true;
}

// ---------------------------------------------------------------------------
// Interrupt line: (ISR & IMR & 0x7f) != 0, driven only on change.

void Dp8390::update_irq() {
  const bool level = (isr_ & imr_ & 0x7F) != 0;
  if (level != irq_level_) {
    irq_level_ = level;
    irq_.set(level);
  }
}

}  // namespace twoostwo::nic
