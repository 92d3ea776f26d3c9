// Hostile guests: every guest-controlled pointer and count (PSTART, PSTOP,
// BNRY, CURR, TPSR, TBCR, RSAR, RBCR) set to values that would take a naive
// model outside its memory (QEMU CVE-2016-2841 and friends). The model must
// refuse, count the mistake, and touch nothing outside PROM/RAM — the
// sanitizer build (-fsanitize=address,undefined) checks the last part.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "tests/nic/card_fixture.h"

namespace twoostwo::nic::test {
namespace {

using Dp8390Hostile = CardTest;

// Stop the card, let `program` set registers on page 0/1, start it again.
template <class F>
void reprogram(LinuxDriver& drv, F program) {
  drv.out(E8390_NODMA + E8390_PAGE0 + E8390_STOP, E8390_CMD);
  program();
  drv.out(E8390_NODMA + E8390_PAGE0 + E8390_START, E8390_CMD);
}

void set_curr(LinuxDriver& drv, uint8_t curr) {
  drv.out(E8390_NODMA + E8390_PAGE1 + E8390_STOP, E8390_CMD);
  drv.out(curr, EN1_CURPAG);
  drv.out(E8390_NODMA + E8390_PAGE0 + E8390_STOP, E8390_CMD);
}

void start_remote_dma(LinuxDriver& drv, uint16_t rsar, uint16_t rbcr, uint8_t command) {
  drv.out(static_cast<uint8_t>(rbcr), EN0_RCNTLO);
  drv.out(static_cast<uint8_t>(rbcr >> 8), EN0_RCNTHI);
  drv.out(static_cast<uint8_t>(rsar), EN0_RSARLO);
  drv.out(static_cast<uint8_t>(rsar >> 8), EN0_RSARHI);
  drv.out(command, E8390_CMD);
}

std::vector<uint8_t> remote_read_bytes(LinuxDriver& drv, uint16_t rsar, uint16_t count) {
  drv.out(0x48, EN0_DCFG);  // byte mode: one byte per inb
  start_remote_dma(drv, rsar, count, E8390_RREAD + E8390_START);
  std::vector<uint8_t> out(count);
  for (auto& b : out) b = drv.in(NE_DATAPORT);
  drv.out(0x49, EN0_DCFG);
  return out;
}

// --- the receive ring -------------------------------------------------------------

TEST_P(Dp8390Hostile, PstartNotBelowPstopRefusesToReceive) {
  open();
  for (auto [pstart, pstop] : {std::pair<uint8_t, uint8_t>{0x80, 0x80}, {0x90, 0x80}, {0x4c, 0x00}}) {
    reprogram(drv(), [&] {
      drv().out(pstart, EN0_STARTPG);
      drv().out(pstop, EN0_STOPPG);
    });
    const auto before = counters();
    EXPECT_FALSE(deliver(make_frame(kMac, 100, 1))) << int(pstart) << " " << int(pstop);
    EXPECT_EQ(counters().rx_dropped, before.rx_dropped + 1);
    EXPECT_EQ(counters().bad_accesses, before.bad_accesses + 1);
  }
  EXPECT_EQ(counters().rx_frames, 0u);
  EXPECT_EQ(drv().read_paged(E8390_PAGE1, EN1_CURPAG), 0x4c);
  EXPECT_FALSE(irq_.level);
}

TEST_P(Dp8390Hostile, RingOutsideBufferMemoryIsRefused) {
  open();
  // PSTOP past the end of RAM (0xC0), and PSTART below it (over the PROM).
  reprogram(drv(), [&] { drv().out(0xC1, EN0_STOPPG); });
  EXPECT_FALSE(deliver(make_frame(kMac, 100, 1)));
  reprogram(drv(), [&] {
    drv().out(0xFF, EN0_STOPPG);
    drv().out(0xF0, EN0_STARTPG);
    drv().out(0xF5, EN0_BOUNDARY);
    set_curr(drv(), 0xF0);
  });
  EXPECT_FALSE(deliver(make_frame(kMac, 100, 1)));
  reprogram(drv(), [&] {
    drv().out(0x00, EN0_STARTPG);
    drv().out(0x40, EN0_STOPPG);
    drv().out(0x3f, EN0_BOUNDARY);
    set_curr(drv(), 0x00);
  });
  EXPECT_FALSE(deliver(make_frame(kMac, 100, 1)));
  EXPECT_EQ(counters().rx_dropped, 3u);
  EXPECT_EQ(counters().bad_accesses, 3u);
  EXPECT_EQ(counters().rx_frames, 0u);

  // The very last page is fine: ring 0xB0-0xC0 (PSTOP = the end of RAM).
  reprogram(drv(), [&] {
    drv().out(0xB0, EN0_STARTPG);
    drv().out(0xC0, EN0_STOPPG);
    drv().out(0xBF, EN0_BOUNDARY);
    set_curr(drv(), 0xBC);
  });
  drv().rx_start_page = 0xB0;
  drv().stop_page = 0xC0;
  drv().current_page = 0xBC;
  drv().out(0xBB, EN0_BOUNDARY);
  const auto frame = make_frame(kMac, 1500, 3);  // 6 pages: 0xBC-0xBF, then 0xB0-0xB1
  ASSERT_TRUE(deliver(frame));
  const auto frames = drv().ei_receive();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].data, frame);
  EXPECT_EQ(frames[0].next, 0xB2);
}

TEST_P(Dp8390Hostile, BnryOutsideTheRingIsRefusedButPstartMinusOneIsNormal) {
  open();
  for (uint8_t bnry : {uint8_t{0x20}, uint8_t{0x80}, uint8_t{0xFF}, uint8_t{0x4a}}) {
    drv().out(bnry, EN0_BOUNDARY);
    EXPECT_FALSE(deliver(make_frame(kMac, 100, 1))) << int(bnry);
  }
  EXPECT_EQ(counters().bad_accesses, 4u);
  EXPECT_EQ(counters().rx_dropped, 4u);
  // Linux writes BNRY = next - 1 = PSTART - 1 when the next frame is at
  // PSTART: the same as PSTOP - 1.
  drv().out(0x4b, EN0_BOUNDARY);
  EXPECT_TRUE(deliver(make_frame(kMac, 100, 1)));
  EXPECT_EQ(counters().rx_frames, 1u);
  EXPECT_EQ(counters().bad_accesses, 4u);
}

TEST_P(Dp8390Hostile, CurrOutsideTheRingIsRefused) {
  open();
  for (uint8_t curr : {uint8_t{0xC5}, uint8_t{0x80}, uint8_t{0x4b}, uint8_t{0x00}}) {
    set_curr(drv(), curr);
    drv().out(E8390_NODMA + E8390_START, E8390_CMD);
    EXPECT_FALSE(deliver(make_frame(kMac, 1500, 1))) << int(curr);
    EXPECT_EQ(drv().read_paged(E8390_PAGE1, EN1_CURPAG), curr);
  }
  EXPECT_EQ(counters().bad_accesses, 4u);
  EXPECT_EQ(counters().rx_frames, 0u);
}

TEST_P(Dp8390Hostile, RingOfOnePageNeverStoresAndNeverOverruns) {
  open();
  reprogram(drv(), [&] {
    drv().out(0x50, EN0_STARTPG);
    drv().out(0x51, EN0_STOPPG);
    drv().out(0x50, EN0_BOUNDARY);
    set_curr(drv(), 0x50);
  });
  EXPECT_TRUE(deliver(make_frame(kMac, 46, 1)));  // queued: one page is never "strictly more"
  EXPECT_EQ(counters().rx_frames, 0u);
  EXPECT_EQ(core().rx_queue_length(), 1u);
}

// --- transmit -----------------------------------------------------------------------

TEST_P(Dp8390Hostile, TransmitReachingPastBufferMemoryIsAborted) {
  open();
  for (auto [tpsr, tbcr] : {std::pair<uint8_t, uint16_t>{0xBF, 0x200}, {0x00, 60}, {0x3F, 60},
                            {0xC0, 60}, {0xFF, 1514}, {0x40, 0}}) {
    drv().out(0xff, EN0_ISR);
    drv().trigger_send(tbcr, tpsr);
    EXPECT_EQ(drv().in(EN0_TSR), 0x08) << int(tpsr) << " " << tbcr;  // ABT
    EXPECT_EQ(isr(), ENISR_TX_ERR);
    EXPECT_TRUE(irq_.level);
  }
  EXPECT_TRUE(backend_.frames.empty());
  EXPECT_EQ(counters().bad_accesses, 6u);
  EXPECT_EQ(counters().tx_frames, 0u);
}

TEST_P(Dp8390Hostile, HugeTbcrIsTruncatedToAnEthernetFrame) {
  open();
  std::vector<uint8_t> pattern(1600);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>(i * 13);
  ASSERT_TRUE(drv().block_output(pattern, 0x40));
  drv().trigger_send(0xFFFF, 0x40);
  ASSERT_EQ(backend_.frames.size(), 1u);
  EXPECT_EQ(backend_.frames[0], std::vector<uint8_t>(pattern.begin(), pattern.begin() + 1514));
  EXPECT_EQ(counters().bad_accesses, 1u);
  EXPECT_EQ(drv().in(EN0_TSR), 0x01);
  // The end of RAM exactly is fine: TPSR 0xBA, 1514 bytes end at 0xBFEA.
  drv().trigger_send(1514, 0xBA);
  EXPECT_EQ(backend_.frames.size(), 2u);
  drv().trigger_send(0x600, 0xBA);  // truncated to 1514: still inside RAM
  EXPECT_EQ(backend_.frames.size(), 3u);
  EXPECT_EQ(counters().bad_accesses, 2u);
}

// --- remote DMA ---------------------------------------------------------------------

TEST_P(Dp8390Hostile, RemoteWriteCrossingTheEndOfMemoryStopsAtTheEnd) {
  open();
  start_remote_dma(drv(), 0xBFFE, 8, E8390_RWRITE + E8390_START);
  drv().io().outl(0x44332211, drv().data_port());
  drv().io().outl(0x88776655, drv().data_port());
  EXPECT_EQ(isr() & ENISR_RDC, ENISR_RDC);
  EXPECT_EQ(counters().bad_accesses, 1u);  // once per transfer
  EXPECT_EQ(drv().in(EN0_RSARLO), 0x06);   // CRDA ran on past the end
  EXPECT_EQ(drv().in(EN0_RSARHI), 0xC0);
  const auto back = remote_read_bytes(drv(), 0xBFFC, 6);
  EXPECT_EQ(back[2], 0x11);
  EXPECT_EQ(back[3], 0x22);
  EXPECT_EQ(back[4], 0xFF);
  EXPECT_EQ(back[5], 0xFF);
  EXPECT_EQ(counters().bad_accesses, 2u);
  // Nothing wrapped around into the start of RAM.
  EXPECT_EQ(remote_read_bytes(drv(), 0x4000, 2), (std::vector<uint8_t>{0, 0}));
}

TEST_P(Dp8390Hostile, RemoteReadWrapsAt64KiBIntoThePromNotPastMemory) {
  open();
  drv().out(0x48, EN0_DCFG);
  start_remote_dma(drv(), 0xFFFE, 4, E8390_RREAD + E8390_START);
  std::array<uint8_t, 4> got{};
  for (auto& b : got) b = drv().in(NE_DATAPORT);
  EXPECT_EQ(got, (std::array<uint8_t, 4>{0xFF, 0xFF, kMac[0], kMac[0]}));
  EXPECT_EQ(counters().bad_accesses, 1u);
}

TEST_P(Dp8390Hostile, RbcrZeroCompletesAtOnceAndMovesNothing) {
  open();
  start_remote_dma(drv(), 0x4c00, 0, E8390_RREAD + E8390_START);
  EXPECT_EQ(isr() & ENISR_RDC, ENISR_RDC);
  EXPECT_EQ(drv().io().inl(drv().data_port()), 0xFFFFFFFFu);
  drv().io().outl(0x12345678, drv().data_port());
  EXPECT_EQ(drv().in(EN0_RSARLO), 0x00);  // CRDA did not move
  EXPECT_EQ(drv().in(EN0_RSARHI), 0x4c);
  EXPECT_EQ(counters().bad_accesses, 0u);
}

TEST_P(Dp8390Hostile, RemoteDmaStopsAtTheCount) {
  open();
  start_remote_dma(drv(), 0x4000, 4, E8390_RWRITE + E8390_START);
  drv().io().outl(0xA1A2A3A4, drv().data_port());
  drv().io().outl(0xB1B2B3B4, drv().data_port());  // past the count: dropped
  EXPECT_EQ(remote_read_bytes(drv(), 0x4000, 8),
            (std::vector<uint8_t>{0xA4, 0xA3, 0xA2, 0xA1, 0, 0, 0, 0}));
}

TEST_P(Dp8390Hostile, RemoteDmaWrapsFromPstopToPstart) {
  open();
  start_remote_dma(drv(), 0x7FFE, 4, E8390_RWRITE + E8390_START);
  drv().io().outl(0x04030201, drv().data_port());
  EXPECT_EQ(remote_read_bytes(drv(), 0x7FFE, 2), (std::vector<uint8_t>{0x01, 0x02}));
  EXPECT_EQ(remote_read_bytes(drv(), 0x4C00, 2), (std::vector<uint8_t>{0x03, 0x04}));
  EXPECT_EQ(remote_read_bytes(drv(), 0x8000, 2), (std::vector<uint8_t>{0x00, 0x00}));
  EXPECT_EQ(counters().bad_accesses, 0u);
}

TEST_P(Dp8390Hostile, SendPacketCommandIsCountedAndIgnored) {
  open();
  drv().out(E8390_START | 0x18, E8390_CMD);  // RD = 3
  EXPECT_EQ(counters().bad_accesses, 1u);
  EXPECT_EQ(drv().io().inb(drv().data_port()), 0xFF);
}

// --- random guest -----------------------------------------------------------------

TEST_P(Dp8390Hostile, RandomPortTrafficKeepsInvariants) {
  open();
  std::mt19937 rng(0x8390);
  auto pick = [&](uint32_t n) { return static_cast<uint32_t>(rng() % n); };
  const std::array<size_t, 3> widths{1, 2, 4};
  for (int step = 0; step < 200000; ++step) {
    const uint16_t port = static_cast<uint16_t>(base_ + pick(0x20));
    std::array<uint8_t, 4> buf{};
    const size_t width = widths[pick(3)];
    const uint32_t op = pick(16);
    if (op < 7) {
      for (auto& b : buf) b = static_cast<uint8_t>(rng());
      // Bias towards the interesting values: page pointers near the edges.
      if (op == 0) buf[0] = static_cast<uint8_t>(0x3E + pick(6));
      if (op == 1) buf[0] = static_cast<uint8_t>(0xBD + pick(6));
      io_.write(port, std::span<const uint8_t>(buf.data(), width));
    } else if (op < 14) {
      if (port - base_ >= 0x18 && pick(8) != 0) continue;  // don't reset all the time
      io_.read(port, std::span<uint8_t>(buf.data(), width));
    } else {
      std::vector<uint8_t> frame(pick(1600));
      for (auto& b : frame) b = static_cast<uint8_t>(rng());
      if (frame.size() >= 6 && pick(2)) std::copy(kMac.begin(), kMac.end(), frame.begin());
      if (frame.size() >= 6 && pick(4) == 0) std::fill_n(frame.begin(), 6, 0xff);
      (void)deliver(frame);
    }
    ASSERT_LE(core().rx_queue_length(), Dp8390::kRxQueueFrames);
  }
  for (const auto& f : backend_.frames) {
    EXPECT_GE(f.size(), kMinFrame);
    EXPECT_LE(f.size(), kMaxFrame);
  }
  // The line is exactly (ISR & IMR & 0x7f) != 0.
  drv().out(E8390_NODMA + E8390_PAGE0, E8390_CMD);
  const uint8_t isr_now = drv().in(EN0_ISR);
  const uint8_t imr_now = drv().read_paged(E8390_PAGE2, EN0_IMR);
  EXPECT_EQ(irq_.level, (isr_now & imr_now & 0x7f) != 0);
  EXPECT_GT(counters().bad_accesses, 0u);
  // Still a working card afterwards.
  open();
  const auto frame = make_frame(kMac, 200, 7);
  ASSERT_TRUE(deliver(frame));
  const auto frames = drv().ei_receive();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].data, frame);
}

INSTANTIATE_TEST_SUITE_P(Cards, Dp8390Hostile, ::testing::Values(Card::kNe2000Isa, Card::kRtl8029),
                         card_name);

}  // namespace
}  // namespace twoostwo::nic::test
