// The DP8390 core driven through the IoBus as Linux's ne.c / ne2k-pci and
// lib8390.c drive it: probe, reset, PROM, ring set-up, transmit, receive,
// filtering and interrupts. Every test runs against both cards.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

#include "tests/nic/card_fixture.h"

namespace twoostwo::nic::test {
namespace {

using Dp8390Behaviour = CardTest;

// --- power-on, probe, reset ------------------------------------------------

TEST_P(Dp8390Behaviour, PowerOnStateIsStoppedWithResetReported) {
  EXPECT_EQ(drv().in(E8390_CMD), 0x21);  // STP | RD2 (abort), page 0
  EXPECT_EQ(isr(), ENISR_RESET);
  EXPECT_TRUE(irq_.changes.empty());
  EXPECT_EQ(core().station_address(), kMac);
  EXPECT_EQ(core().prom_address(), kMac);
  EXPECT_EQ(core().rx_queue_length(), 0u);
}

TEST_P(Dp8390Behaviour, ProbeLikeNe2kPci) {
  EXPECT_TRUE(drv().probe_8390());
  // The probe's MAR5 write went to page 1, not to CNTR0.
  EXPECT_EQ(drv().read_paged(E8390_PAGE1, 0x0d), 0xFF);
  EXPECT_EQ(drv().in(EN0_COUNTER0), 0);
  EXPECT_EQ(counters().bad_accesses, 0u);
}

TEST_P(Dp8390Behaviour, ResetPortReadSetsIsrRstAndStopsTheCard) {
  drv().out(0xFF, EN0_ISR);
  EXPECT_EQ(isr(), ENISR_RESET);  // RST is not cleared by writing it
  drv().out(E8390_NODMA + E8390_START, E8390_CMD);
  EXPECT_EQ(isr(), 0x00);  // START leaves the reset state
  EXPECT_EQ(drv().in(E8390_CMD), 0x22);
  drv().out(ENISR_ALL, EN0_IMR);

  EXPECT_EQ(drv().in(NE_RESET), 0x00);
  EXPECT_EQ(isr(), ENISR_RESET);
  EXPECT_EQ(drv().in(E8390_CMD), 0x21);
  EXPECT_EQ(drv().read_paged(E8390_PAGE2, EN0_IMR), 0x00);
  drv().out(0x55, NE_RESET);  // the write that ends the pulse changes nothing
  EXPECT_EQ(isr(), ENISR_RESET);
  EXPECT_TRUE(drv().reset_8390());  // the ne2k_pci_reset_8390 sequence
  EXPECT_EQ(counters().bad_accesses, 0u);
}

TEST_P(Dp8390Behaviour, StopCommandReportsResetState) {
  drv().out(E8390_NODMA + E8390_START, E8390_CMD);
  EXPECT_EQ(isr() & ENISR_RESET, 0);
  drv().out(E8390_NODMA + E8390_STOP, E8390_CMD);
  EXPECT_EQ(isr() & ENISR_RESET, ENISR_RESET);
  EXPECT_EQ(drv().in(E8390_CMD), 0x21);
  // A CR write with neither STA nor STP (Linux's page switches) keeps the state.
  drv().out(E8390_NODMA + E8390_PAGE1, E8390_CMD);
  EXPECT_EQ(drv().in(E8390_CMD), 0x61);
}

// --- station-address PROM ----------------------------------------------------

TEST_P(Dp8390Behaviour, PromInWordModeWith32InbLikeNe2kPci) {
  ASSERT_TRUE(drv().reset_8390());
  drv().start_prom_read(0x49);
  std::array<uint8_t, 32> sa_prom{};
  for (auto& b : sa_prom) b = drv().io().inb(drv().data_port());
  for (int i = 0; i < 6; ++i) EXPECT_EQ(sa_prom[i], kMac[i]) << i;
  for (int i = 6; i < 14; ++i) EXPECT_EQ(sa_prom[i], 0x00) << i;
  EXPECT_EQ(sa_prom[14], 0x57);
  EXPECT_EQ(sa_prom[15], 0x57);
  // Each inb moved a word: the count ran out after 16; the rest read 0xff.
  for (int i = 16; i < 32; ++i) EXPECT_EQ(sa_prom[i], 0xFF) << i;
  EXPECT_EQ(isr() & ENISR_RDC, ENISR_RDC);
  EXPECT_TRUE(irq_.changes.empty());  // IMR is 0
  EXPECT_EQ(counters().bad_accesses, 0u);
}

TEST_P(Dp8390Behaviour, PromInWordModeWith16Inw) {
  ASSERT_TRUE(drv().reset_8390());
  drv().start_prom_read(0x49);
  std::array<uint8_t, 16> logical{};
  for (int i = 0; i < 6; ++i) logical[i] = kMac[i];
  logical[14] = logical[15] = 0x57;
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(drv().io().inw(drv().data_port()), logical[i] * 0x0101) << i;
    EXPECT_EQ(isr() & ENISR_RDC, i == 15 ? ENISR_RDC : 0) << i;
  }
  // CRDA followed the transfer.
  EXPECT_EQ(drv().in(EN0_RSARLO), 32);
  EXPECT_EQ(drv().in(EN0_RSARHI), 0);
}

TEST_P(Dp8390Behaviour, PromInByteModeLikeNeC) {
  ASSERT_TRUE(drv().reset_8390());
  drv().start_prom_read(0x48);
  std::array<uint8_t, 32> sa_prom{};
  int wordlength = 2;
  for (int i = 0; i < 32; i += 2) {
    sa_prom[i] = drv().io().inb(drv().data_port());
    sa_prom[i + 1] = drv().io().inb(drv().data_port());
    if (sa_prom[i] != sa_prom[i + 1]) wordlength = 1;
  }
  EXPECT_EQ(wordlength, 2);  // ne.c: a 16-bit NE2000
  for (int i = 0; i < 16; ++i) sa_prom[i] = sa_prom[i + i];
  for (int i = 0; i < 6; ++i) EXPECT_EQ(sa_prom[i], kMac[i]) << i;
  EXPECT_EQ(sa_prom[14], 0x57);  // neX000
  EXPECT_EQ(sa_prom[15], 0x57);
  EXPECT_EQ(isr() & ENISR_RDC, ENISR_RDC);
}

TEST_P(Dp8390Behaviour, PromIsReadOnly) {
  drv().out(0x48, EN0_DCFG);
  drv().out(2, EN0_RCNTLO);
  drv().out(0, EN0_RCNTHI);
  drv().out(0, EN0_RSARLO);
  drv().out(0, EN0_RSARHI);
  drv().out(E8390_RWRITE + E8390_START, E8390_CMD);
  drv().io().outw(0xAAAA, drv().data_port());
  EXPECT_EQ(counters().bad_accesses, 1u);
  drv().start_prom_read(0x48);
  EXPECT_EQ(drv().io().inb(drv().data_port()), kMac[0]);
}

TEST_P(Dp8390Behaviour, DataPortAliasesAcrossEightPorts) {
  ASSERT_TRUE(drv().reset_8390());
  drv().start_prom_read(0x48);
  for (uint8_t off = 0x10; off < 0x18; ++off) {
    EXPECT_EQ(drv().in(off), kMac[(off - 0x10) / 2]) << int(off);
  }
}

// --- ring set-up ---------------------------------------------------------------

TEST_P(Dp8390Behaviour, Ns8390InitProgramsTheRegisters) {
  open();
  EXPECT_EQ(drv().in(E8390_CMD), 0x22);
  EXPECT_EQ(drv().read_paged(E8390_PAGE2, EN0_STARTPG), 0x4c);
  EXPECT_EQ(drv().read_paged(E8390_PAGE2, EN0_STOPPG), 0x80);
  EXPECT_EQ(drv().read_paged(E8390_PAGE2, EN0_TPSR), 0x40);
  EXPECT_EQ(drv().read_paged(E8390_PAGE2, EN0_RXCR), 0xC4);  // AB; bits 6-7 read as 1
  EXPECT_EQ(drv().read_paged(E8390_PAGE2, EN0_TXCR), 0x00);
  EXPECT_EQ(drv().read_paged(E8390_PAGE2, EN0_DCFG), 0x49);
  EXPECT_EQ(drv().read_paged(E8390_PAGE2, EN0_IMR), ENISR_ALL);
  EXPECT_EQ(drv().in(EN0_BOUNDARY), 0x7f);
  EXPECT_EQ(drv().read_paged(E8390_PAGE1, EN1_CURPAG), 0x4c);
  EXPECT_EQ(core().station_address(), kMac);
  EXPECT_EQ(isr(), 0x00);
  EXPECT_FALSE(irq_.level);
  EXPECT_EQ(counters().bad_accesses, 0u);
}

// --- transmit ----------------------------------------------------------------------

TEST_P(Dp8390Behaviour, TransmitThroughRemoteDmaCompletesWithInterrupt) {
  open();
  const auto frame = make_frame(kBroadcast, 87, 3);  // 101 bytes: odd, exercises the tails
  drv().start_xmit(frame);
  ASSERT_EQ(backend_.frames.size(), 1u);
  EXPECT_EQ(backend_.frames[0], frame);
  EXPECT_EQ(drv().in(EN0_TSR), 0x01);  // PTX
  EXPECT_EQ(isr(), ENISR_TX);
  EXPECT_EQ(drv().in(E8390_CMD) & E8390_TRANS, 0);
  EXPECT_TRUE(irq_.level);  // raised when ei_start_xmit unmasked IMR
  drv().out(ENISR_TX, EN0_ISR);
  EXPECT_FALSE(irq_.level);
  EXPECT_EQ(irq_.changes, (std::vector<bool>{true, false}));
  EXPECT_EQ(counters().tx_frames, 1u);
  EXPECT_EQ(counters().tx_bytes, 101u);
  EXPECT_EQ(counters().bad_accesses, 0u);
}

TEST_P(Dp8390Behaviour, TransmitPadsShortFramesWithZeros) {
  open();
  ASSERT_TRUE(drv().block_output(std::vector<uint8_t>(60, 0xAA), 0x40));
  const auto frame = make_frame(kBroadcast, 28, 9);  // 42 bytes
  ASSERT_TRUE(drv().block_output(frame, 0x40));
  drv().trigger_send(42, 0x40);
  ASSERT_EQ(backend_.frames.size(), 1u);
  auto expected = frame;
  expected.resize(60, 0x00);  // padding, not the 0xaa left in buffer RAM
  EXPECT_EQ(backend_.frames[0], expected);
  EXPECT_EQ(counters().tx_bytes, 60u);
}

TEST_P(Dp8390Behaviour, TransmitInLoopbackGoesNowhereButCompletes) {
  open();
  drv().out(E8390_TXOFF, EN0_TXCR);  // internal loopback, as during NS8390_init
  drv().start_xmit(make_frame(kBroadcast, 100, 1));
  EXPECT_TRUE(backend_.frames.empty());
  EXPECT_EQ(drv().in(EN0_TSR), 0x01);
  EXPECT_EQ(isr() & ENISR_TX, ENISR_TX);
  EXPECT_EQ(counters().tx_frames, 0u);
  EXPECT_EQ(core().rx_queue_length(), 0u);
  EXPECT_EQ(drv().read_paged(E8390_PAGE1, EN1_CURPAG), 0x4c);  // nothing looped into the ring
}

TEST_P(Dp8390Behaviour, TransmitWhileStoppedDoesNothing) {
  open();
  drv().out(E8390_NODMA + E8390_STOP, E8390_CMD);
  drv().out(60, EN0_TCNTLO);
  drv().out(0, EN0_TCNTHI);
  drv().out(0x40, EN0_TPSR);
  drv().out(E8390_NODMA + E8390_TRANS + E8390_STOP, E8390_CMD);
  EXPECT_TRUE(backend_.frames.empty());
  EXPECT_EQ(isr() & (ENISR_TX | ENISR_TX_ERR), 0);
}

// --- receive ------------------------------------------------------------------------

TEST_P(Dp8390Behaviour, ReceivedFrameIsReadLikeEiReceive) {
  open();
  const auto frame = make_frame(kMac, 100, 5);  // 114 bytes
  EXPECT_TRUE(deliver(frame));
  EXPECT_TRUE(irq_.level);
  EXPECT_EQ(isr(), ENISR_RX);
  EXPECT_EQ(drv().in(EN0_RSR), 0x01);
  const auto frames = drv().ei_receive();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].data, frame);
  EXPECT_EQ(frames[0].status, 0x01);
  EXPECT_EQ(frames[0].page, 0x4c);
  EXPECT_EQ(frames[0].next, 0x4d);
  EXPECT_EQ(frames[0].count, 118);
  EXPECT_FALSE(irq_.level);
  EXPECT_EQ(drv().in(EN0_BOUNDARY), 0x4c);
  EXPECT_EQ(counters().rx_frames, 1u);
  EXPECT_EQ(counters().rx_bytes, 114u);
  EXPECT_EQ(counters().bad_accesses, 0u);
}

TEST_P(Dp8390Behaviour, ReceiveHeaderBytesAndPadding) {
  open();
  std::vector<uint8_t> tiny(kBroadcast.begin(), kBroadcast.end());
  tiny.push_back(0x42);  // 7 bytes: padded to 60
  EXPECT_TRUE(deliver(tiny));
  const auto hdr = drv().get_8390_hdr(0x4c);
  EXPECT_EQ(hdr, (std::array<uint8_t, 4>{0x21, 0x4d, 64, 0}));  // RXOK|PHY, next, 60+4
  const auto data = drv().block_input(60, 0x4c04);
  std::vector<uint8_t> expected = tiny;
  expected.resize(60, 0);
  EXPECT_EQ(data, expected);
  EXPECT_EQ(drv().in(EN0_RSR), 0x21);
  EXPECT_EQ(counters().rx_bytes, 60u);
}

TEST_P(Dp8390Behaviour, PagesPerFrameSatisfyLinuxNextPageCheck) {
  open();
  uint8_t seed = 0;
  for (size_t length : {60u, 248u, 251u, 252u, 253u, 508u, 1514u, 1518u}) {
    const auto frame = make_frame(kMac, length - 14, seed++);
    const uint8_t page = static_cast<uint8_t>(drv().current_page);
    ASSERT_TRUE(deliver(frame)) << length;
    const auto frames = drv().ei_receive();  // checks next page like Linux
    ASSERT_EQ(frames.size(), 1u) << length;
    EXPECT_EQ(frames[0].data, frame) << length;
    int expected_next = page + static_cast<int>((length + 8 + 255) / 256);
    if (expected_next >= 0x80) expected_next -= 0x80 - 0x4c;
    EXPECT_EQ(frames[0].next, expected_next) << length;
  }
}

TEST_P(Dp8390Behaviour, FrameWrappingAroundTheRingIsReadInOneTransfer) {
  open();
  for (uint8_t i = 0; i < 8; ++i) {  // 8 x 6 pages: CURR 0x4c -> 0x7c
    ASSERT_TRUE(deliver(make_frame(kMac, 1500, i)));
    ASSERT_EQ(drv().ei_receive().size(), 1u);
  }
  EXPECT_EQ(drv().read_paged(E8390_PAGE1, EN1_CURPAG), 0x7c);
  const auto frame = make_frame(kMac, 1500, 0x77);
  ASSERT_TRUE(deliver(frame));
  EXPECT_EQ(drv().read_paged(E8390_PAGE1, EN1_CURPAG), 0x4e);  // 4 pages at the end, 2 at the start
  const auto frames = drv().ei_receive();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].page, 0x7c);
  EXPECT_EQ(frames[0].next, 0x4e);
  EXPECT_EQ(frames[0].data, frame);  // the remote DMA wrapped PSTOP -> PSTART
  EXPECT_EQ(drv().in(EN0_BOUNDARY), 0x4d);
}

TEST_P(Dp8390Behaviour, FullRingQueuesAndRetriesWhenBnryIsWritten) {
  open();
  // Ring 0x4c-0x80 (52 pages), BNRY 0x7f: 51 free. 1514-byte frames need 6
  // pages; stored while 6 < free: 8 frames leave 3 pages, the 9th waits.
  std::vector<std::vector<uint8_t>> sent;
  for (uint8_t i = 0; i < 9; ++i) {
    sent.push_back(make_frame(kMac, 1500, i));
    EXPECT_TRUE(deliver(sent.back())) << int(i);
  }
  EXPECT_EQ(counters().rx_frames, 8u);
  EXPECT_EQ(counters().rx_queued, 1u);
  EXPECT_EQ(core().rx_queue_length(), 1u);
  EXPECT_EQ(drv().read_paged(E8390_PAGE1, EN1_CURPAG), 0x7c);
  EXPECT_EQ(isr() & ENISR_OVER, 0);  // never an overwrite warning

  // ei_receive writes BNRY after each frame; the first write frees 6 pages
  // and the waiting frame goes in, so the walk sees all nine in order.
  const auto frames = drv().ei_receive();
  ASSERT_EQ(frames.size(), 9u);
  for (size_t i = 0; i < frames.size(); ++i) EXPECT_EQ(frames[i].data, sent[i]) << i;
  EXPECT_EQ(core().rx_queue_length(), 0u);
  EXPECT_EQ(counters().rx_frames, 9u);
  EXPECT_EQ(counters().rx_dropped, 0u);
}

TEST_P(Dp8390Behaviour, PrxStaysSetWhileTheRingHoldsUnreadFrames) {
  open();
  // 8 frames fill the ring and 4 wait in the host queue. ei_receive reads 9
  // (the queued ones go in as BNRY moves), then acks PRX with 3 frames still
  // in the ring: on a wire the next frame would set PRX again, here nothing
  // would, so PRX must stay set or the driver and the queue wait forever.
  std::vector<std::vector<uint8_t>> sent;
  for (uint8_t i = 0; i < 12; ++i) {
    sent.push_back(make_frame(kMac, 1500, i));
    EXPECT_TRUE(deliver(sent.back())) << int(i);
  }
  EXPECT_EQ(core().rx_queue_length(), 4u);
  auto first = drv().ei_receive();
  ASSERT_EQ(first.size(), 9u);
  EXPECT_EQ(isr() & ENISR_RX, ENISR_RX);
  EXPECT_TRUE(irq_.level);
  auto rest = drv().ei_receive();
  ASSERT_EQ(rest.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(rest[i].data, sent[9 + i]) << i;
  // The ring is empty now: the ack clears PRX and the line drops.
  EXPECT_EQ(isr() & ENISR_RX, 0);
  EXPECT_FALSE(irq_.level);
  EXPECT_EQ(counters().rx_dropped, 0u);
}

TEST_P(Dp8390Behaviour, RingNeverFillsUpToBnry) {
  open();
  // 700-byte frames take 3 pages; 51 free pages hold 17 of them exactly,
  // but the 17th would bring CURR onto BNRY (an "empty" ring to the card,
  // which would then overwrite unread frames). It must wait instead.
  std::vector<std::vector<uint8_t>> sent;
  for (uint8_t i = 0; i < 18; ++i) {
    sent.push_back(make_frame(kMac, 686, i));
    ASSERT_TRUE(deliver(sent.back())) << int(i);
  }
  EXPECT_EQ(counters().rx_frames, 16u);
  EXPECT_EQ(core().rx_queue_length(), 2u);
  EXPECT_EQ(drv().read_paged(E8390_PAGE1, EN1_CURPAG), 0x7c);
  std::vector<RxFrame> got;
  for (int round = 0; round < 4 && got.size() < sent.size(); ++round) {
    for (auto& f : drv().ei_receive()) got.push_back(std::move(f));
  }
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(got[i].data, sent[i]) << i;
}

TEST_P(Dp8390Behaviour, HostQueueIsBoundedAndDropsAreCounted) {
  open();
  for (uint8_t i = 0; i < 8; ++i) ASSERT_TRUE(deliver(make_frame(kMac, 1500, i)));
  for (size_t i = 0; i < Dp8390::kRxQueueFrames; ++i) {
    ASSERT_TRUE(deliver(make_frame(kMac, 1500, static_cast<uint8_t>(i + 8))));
  }
  EXPECT_EQ(core().rx_queue_length(), Dp8390::kRxQueueFrames);
  EXPECT_FALSE(deliver(make_frame(kMac, 1500, 0xEE)));
  EXPECT_EQ(counters().rx_dropped, 1u);
  EXPECT_EQ(counters().rx_queued, Dp8390::kRxQueueFrames);
  EXPECT_EQ(drv().in(EN0_COUNTER2), 1);  // a missed packet
  EXPECT_EQ(drv().in(EN0_COUNTER2), 0);  // cleared by reading
  // Draining: everything that was accepted arrives, in order.
  size_t total = 0;
  uint8_t expected_seed = 0;
  for (int round = 0; round < 20 && total < 8 + Dp8390::kRxQueueFrames; ++round) {
    for (const auto& f : drv().ei_receive()) {
      EXPECT_EQ(f.data, make_frame(kMac, 1500, expected_seed)) << total;
      ++expected_seed;
      ++total;
    }
  }
  EXPECT_EQ(total, 8 + Dp8390::kRxQueueFrames);
  EXPECT_EQ(core().rx_queue_length(), 0u);
}

TEST_P(Dp8390Behaviour, QueuedFramesGoInWhenTheCardIsStartedAgain) {
  open();
  for (uint8_t i = 0; i < 10; ++i) ASSERT_TRUE(deliver(make_frame(kMac, 1500, i)));
  ASSERT_EQ(core().rx_queue_length(), 2u);
  // Linux re-initialises the ring (as ei_tx_timeout does, without the reset
  // port): the waiting frames are stored when the card is started.
  drv().ns8390_init(kMac, true);
  EXPECT_EQ(core().rx_queue_length(), 0u);
  EXPECT_EQ(drv().read_paged(E8390_PAGE1, EN1_CURPAG), 0x4c + 12);
  EXPECT_TRUE(irq_.level);
  const auto frames = drv().ei_receive();
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].data, make_frame(kMac, 1500, 8));
  EXPECT_EQ(frames[1].data, make_frame(kMac, 1500, 9));
}

TEST_P(Dp8390Behaviour, ResetPortFlushesTheHostQueue) {
  open();
  for (uint8_t i = 0; i < 10; ++i) ASSERT_TRUE(deliver(make_frame(kMac, 1500, i)));
  ASSERT_EQ(core().rx_queue_length(), 2u);
  ASSERT_TRUE(drv().reset_8390());
  EXPECT_EQ(core().rx_queue_length(), 0u);
  EXPECT_EQ(counters().rx_dropped, 2u);
}

TEST_P(Dp8390Behaviour, StoppedCardDropsFrames) {
  EXPECT_FALSE(deliver(make_frame(kMac, 100, 1)));
  EXPECT_EQ(counters().rx_dropped, 1u);
  open();
  drv().out(E8390_NODMA + E8390_STOP, E8390_CMD);
  EXPECT_FALSE(deliver(make_frame(kMac, 100, 1)));
  EXPECT_EQ(counters().rx_dropped, 2u);
  EXPECT_EQ(counters().rx_frames, 0u);
}

TEST_P(Dp8390Behaviour, OversizeFramesAreDropped) {
  open();
  EXPECT_FALSE(deliver(make_frame(kMac, 1505, 1)));  // 1519 bytes
  EXPECT_EQ(counters().rx_dropped, 1u);
  EXPECT_TRUE(deliver(make_frame(kMac, 1504, 1)));  // 1518: a tagged full-size frame
}

// --- address filter ---------------------------------------------------------------

TEST_P(Dp8390Behaviour, UnicastFilterUsesParNotTheProm) {
  const MacAddress guest_mac{0x02, 0x11, 0x22, 0x33, 0x44, 0x55};  // `ip link set address`
  open(E8390_RXCONFIG, {}, guest_mac);
  EXPECT_EQ(core().station_address(), guest_mac);
  EXPECT_EQ(core().prom_address(), kMac);
  EXPECT_FALSE(deliver(make_frame(kMac, 100, 1)));
  EXPECT_EQ(counters().rx_filtered, 1u);
  EXPECT_TRUE(deliver(make_frame(guest_mac, 100, 2)));
  EXPECT_EQ(counters().rx_frames, 1u);
}

TEST_P(Dp8390Behaviour, BroadcastNeedsRcrAb) {
  open(0x00);
  EXPECT_FALSE(deliver(make_frame(kBroadcast, 100, 1)));
  EXPECT_EQ(counters().rx_filtered, 1u);
  drv().set_multicast_list(E8390_RXCONFIG, {});
  EXPECT_TRUE(deliver(make_frame(kBroadcast, 100, 1)));
  const auto frames = drv().ei_receive();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].status, 0x21);  // RXOK | PHY (group address)
}

TEST_P(Dp8390Behaviour, MulticastHashFilterAsLinuxMakeMcBits) {
  // Expected hash bits computed independently (zlib CRC-32, bit-reversed):
  // 01:00:5e:00:00:fb -> 15 (MAR1 bit 7); 01:00:5e:00:00:01 -> 31 (MAR3 bit 7);
  // 33:33:00:00:00:01 -> 62 (MAR7 bit 6).
  const MacAddress mdns{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb};
  const MacAddress all_hosts{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01};
  const MacAddress all_nodes6{0x33, 0x33, 0x00, 0x00, 0x00, 0x01};
  std::array<uint8_t, 8> filter{};
  filter[1] = 0x80;
  filter[7] = 0x40;
  open(E8390_RXCONFIG | 0x08, filter);  // set_multicast_list checked the MAR read-back
  for (int i = 0; i < 8; ++i) EXPECT_EQ(drv().read_paged(E8390_PAGE1, EN1_MULT + i), filter[i]);

  EXPECT_TRUE(deliver(make_frame(mdns, 100, 1)));
  EXPECT_TRUE(deliver(make_frame(all_nodes6, 100, 2)));
  EXPECT_FALSE(deliver(make_frame(all_hosts, 100, 3)));
  EXPECT_EQ(counters().rx_filtered, 1u);
  const auto frames = drv().ei_receive();
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].status, 0x21);

  filter[3] = 0x80;
  drv().set_multicast_list(E8390_RXCONFIG | 0x08, filter);
  EXPECT_TRUE(deliver(make_frame(all_hosts, 100, 3)));
  drv().set_multicast_list(E8390_RXCONFIG, filter);  // AM off: no multicast at all
  EXPECT_FALSE(deliver(make_frame(mdns, 100, 4)));
  EXPECT_EQ(counters().rx_filtered, 2u);
}

TEST_P(Dp8390Behaviour, PromiscuousAcceptsEveryUnicast) {
  open(E8390_RXCONFIG | 0x18, std::array<uint8_t, 8>{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff});
  EXPECT_TRUE(deliver(make_frame(MacAddress{0x02, 0xde, 0xad, 0xbe, 0xef, 0x00}, 100, 1)));
  EXPECT_TRUE(deliver(make_frame(MacAddress{0x01, 0x00, 0x5e, 0x7f, 0x00, 0x01}, 100, 2)));
  EXPECT_EQ(drv().ei_receive().size(), 2u);
}

TEST_P(Dp8390Behaviour, MonitorModeChecksButDoesNotStore) {
  open(E8390_RXOFF);
  EXPECT_FALSE(deliver(make_frame(kMac, 100, 1)));
  EXPECT_EQ(counters().rx_filtered, 1u);
  EXPECT_EQ(counters().rx_frames, 0u);
  EXPECT_EQ(drv().read_paged(E8390_PAGE1, EN1_CURPAG), 0x4c);
  EXPECT_EQ(drv().in(EN0_COUNTER2), 1);  // missed packet
  EXPECT_FALSE(deliver(make_frame(MacAddress{0x02, 0, 0, 0, 0, 1}, 100, 1)));  // not for us
  EXPECT_EQ(drv().in(EN0_COUNTER2), 0);
}

// --- interrupts -------------------------------------------------------------------

TEST_P(Dp8390Behaviour, ImrWrittenZeroDropsTheLineAtOnce) {
  open();
  ASSERT_TRUE(deliver(make_frame(kMac, 100, 1)));
  EXPECT_TRUE(irq_.level);
  drv().out(0x00, EN0_IMR);  // ei_start_xmit masks while it copies
  EXPECT_FALSE(irq_.level);
  drv().out(ENISR_ALL, EN0_IMR);
  EXPECT_TRUE(irq_.level);
  drv().out(ENISR_TX, EN0_IMR);  // PRX still pending but masked
  EXPECT_FALSE(irq_.level);
  EXPECT_EQ(irq_.changes, (std::vector<bool>{true, false, true, false}));
  EXPECT_EQ(isr(), ENISR_RX);
}

TEST_P(Dp8390Behaviour, RstAloneNeverRaisesTheLine) {
  drv().out(0xFF, EN0_IMR);
  EXPECT_EQ(isr(), ENISR_RESET);
  EXPECT_FALSE(irq_.level);
  EXPECT_TRUE(irq_.changes.empty());
}

TEST_P(Dp8390Behaviour, ZeroLengthRemoteDmaCompletesAtOnceLikeNeCIrqProbe) {
  ASSERT_TRUE(drv().reset_8390());
  drv().out(0x50, EN0_IMR);  // ne.c: "Enable one interrupt."
  drv().out(0x00, EN0_RCNTLO);
  drv().out(0x00, EN0_RCNTHI);
  drv().out(E8390_RREAD + E8390_START, E8390_CMD);  // "Trigger it..."
  EXPECT_TRUE(irq_.level);
  EXPECT_EQ(isr(), ENISR_RDC);
  drv().out(0x00, EN0_IMR);  // "Mask it again."
  EXPECT_FALSE(irq_.level);
  drv().out(0xff, EN0_ISR);
  EXPECT_EQ(isr(), 0);
}

// --- widths -------------------------------------------------------------------------

TEST_P(Dp8390Behaviour, UnsupportedWidthsReadFfAndAreCounted) {
  open();
  EXPECT_EQ(drv().io().inw(base_), 0xFFFF);  // CR is a byte register
  EXPECT_EQ(counters().bad_accesses, 1u);
  drv().io().outw(0x0000, static_cast<uint16_t>(base_ + EN0_IMR));
  EXPECT_EQ(counters().bad_accesses, 2u);
  EXPECT_EQ(drv().read_paged(E8390_PAGE2, EN0_IMR), ENISR_ALL);  // unchanged
  EXPECT_EQ(drv().io().inl(base_ + EN0_ISR), 0xFFFFFFFFu);
  EXPECT_EQ(counters().bad_accesses, 3u);
  // The reset port takes any width.
  (void)drv().io().inw(static_cast<uint16_t>(base_ + 0x18));
  EXPECT_EQ(isr(), ENISR_RESET);
  EXPECT_EQ(counters().bad_accesses, 3u);
}

INSTANTIATE_TEST_SUITE_P(Cards, Dp8390Behaviour, ::testing::Values(Card::kNe2000Isa, Card::kRtl8029),
                         card_name);

TEST(FormatMac, LowercaseColonSeparated) {
  EXPECT_EQ(format_mac(MacAddress{0x52, 0x54, 0x00, 0xAB, 0xcd, 0x0f}), "52:54:00:ab:cd:0f");
}

}  // namespace
}  // namespace twoostwo::nic::test
