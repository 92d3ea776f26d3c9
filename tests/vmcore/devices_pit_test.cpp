// Pit8254 against a clock the test controls, programmed as Linux programs
// it; expected counts and edges from the Intel 8254 datasheet and the
// 1.193182 MHz input clock.
#include "vmcore/devices/pit.h"

#include <gtest/gtest.h>

#include <vector>

#include "vmcore/bus/io_bus.h"

namespace twoostwo::vmcore {
namespace {

class ManualClock final : public Clock {
 public:
  uint64_t now_ns() const override { return now; }
  bool is_virtual() const override { return true; }
  uint64_t now = 0;
};

class RecordingLine final : public bus::IrqLine {
 public:
  void set(bool level) override { levels.push_back(level); }
  int rising_edges() const {
    int n = 0;
    bool prev = false;
    for (bool l : levels) {
      if (l && !prev) ++n;
      prev = l;
    }
    return n;
  }
  std::vector<bool> levels;
};

class PitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(bus.add(0x40, 4, pit).has_value());
    ASSERT_TRUE(bus.add(0x61, 1, pit.port61_device()).has_value());
  }
  void outb(uint16_t port, uint8_t v) {
    const uint8_t d[1] = {v};
    bus.write(port, d);
  }
  uint8_t inb(uint16_t port) {
    uint8_t d[1] = {0};
    bus.read(port, d);
    return d[0];
  }
  // Clock at the instant input tick `tick` has elapsed.
  void at_tick(uint64_t tick) { clock.now = Pit8254::ns_of_tick(tick); }
  // Counter latch command, then LSB and MSB (lohi access mode).
  uint16_t latched_count(unsigned channel) {
    outb(0x43, uint8_t(channel << 6));
    const uint8_t lo = inb(uint16_t(0x40 + channel));
    const uint8_t hi = inb(uint16_t(0x40 + channel));
    return uint16_t(lo | hi << 8);
  }
  uint8_t status(unsigned channel) {
    outb(0x43, uint8_t(0xE0 | (2u << channel)));  // read-back: status only
    return inb(uint16_t(0x40 + channel));
  }

  ManualClock clock;
  RecordingLine irq0;
  Pit8254 pit{clock, irq0};
  bus::IoBus bus;
};

TEST_F(PitTest, TickConversionIsTheInputClock) {
  EXPECT_EQ(Pit8254::ticks_at(1'000'000'000), 1'193'182u);
  EXPECT_EQ(Pit8254::ns_of_tick(1'193'182), 1'000'000'000u);
  EXPECT_EQ(Pit8254::ns_of_tick(1193), 999'848u);  // ceil(1193 / 1.193182 MHz)
  EXPECT_EQ(Pit8254::ticks_at(999'847), 1192u);
  // No overflow a day in.
  EXPECT_EQ(Pit8254::ticks_at(86'400'000'000'000ull), 86'400ull * 1'193'182);
}

TEST_F(PitTest, UnprogrammedPitRaisesNothing) {
  EXPECT_EQ(pit.next_deadline_ns(), TimedDevice::kNever);
  pit.advance(10'000'000'000ull);
  EXPECT_TRUE(irq0.levels.empty());
}

TEST_F(PitTest, Mode2PeriodicAsLinuxClockevent) {
  // pit_set_periodic: 0x34 (ch 0, lohi, mode 2, binary), LATCH = 1193 (HZ 1000).
  outb(0x43, 0x34);
  outb(0x40, 1193 & 0xFF);
  outb(0x40, 1193 >> 8);
  EXPECT_EQ(pit.next_deadline_ns(), 999'848u);
  EXPECT_FALSE(pit.deadline_may_be_late());  // periodic: a late tick is lost
  at_tick(100);
  EXPECT_EQ(latched_count(0), 1093);
  EXPECT_EQ(status(0), 0xB4);  // OUT high, count loaded, lohi, mode 2, binary
  at_tick(1192);
  EXPECT_EQ(latched_count(0), 1);
  EXPECT_FALSE(pit.out(0));  // mode 2: OUT low for the last count
  pit.advance(999'847);
  EXPECT_TRUE(irq0.levels.empty());
  pit.advance(999'848);
  EXPECT_EQ(irq0.levels, (std::vector<bool>{true, false}));
  EXPECT_EQ(pit.next_deadline_ns(), 1'999'695u);
  at_tick(1193 + 7);
  EXPECT_EQ(latched_count(0), 1186);  // reloaded with 1193
  EXPECT_TRUE(pit.out(0));
}

TEST_F(PitTest, LateAdvanceRaisesOncePerCallAndCountsTheRest) {
  outb(0x43, 0x34);
  outb(0x40, 1000 & 0xFF);
  outb(0x40, 1000 >> 8);
  pit.advance(Pit8254::ns_of_tick(5 * 1000 + 10));  // five periods late
  EXPECT_EQ(irq0.rising_edges(), 1);
  EXPECT_EQ(pit.coalesced_edges(), 4u);
  EXPECT_EQ(pit.next_deadline_ns(), Pit8254::ns_of_tick(6000));
  pit.advance(Pit8254::ns_of_tick(6000));
  EXPECT_EQ(irq0.rising_edges(), 2);
}

TEST_F(PitTest, Mode0InterruptsOnceAtTerminalCountThenWraps) {
  outb(0x43, 0x30);  // ch 0, lohi, mode 0
  EXPECT_FALSE(pit.out(0));
  EXPECT_EQ(status(0), 0x70);  // OUT low, null count, lohi, mode 0
  outb(0x40, 1000 & 0xFF);
  outb(0x40, 1000 >> 8);
  EXPECT_EQ(status(0), 0x30);  // count loaded
  at_tick(400);
  EXPECT_EQ(latched_count(0), 600);
  EXPECT_EQ(pit.next_deadline_ns(), Pit8254::ns_of_tick(1000));
  EXPECT_TRUE(pit.deadline_may_be_late());  // one-shot
  at_tick(1000);
  pit.advance(clock.now);
  EXPECT_EQ(irq0.rising_edges(), 1);
  EXPECT_EQ(pit.next_deadline_ns(), TimedDevice::kNever);
  EXPECT_TRUE(pit.out(0));
  at_tick(1010);
  EXPECT_EQ(latched_count(0), 0xFFF6);  // keeps counting down through 0
  EXPECT_EQ(status(0) & 0x80, 0x80);    // OUT stays high
}

TEST_F(PitTest, Mode0FirstByteStopsCountingUntilTheSecond) {
  outb(0x43, 0x30);
  outb(0x40, 0x00);
  outb(0x40, 0x10);  // 0x1000
  at_tick(100);
  outb(0x40, 0x20);  // first byte of a new count: counting stops, OUT low
  EXPECT_EQ(pit.next_deadline_ns(), TimedDevice::kNever);
  at_tick(300);
  outb(0x40, 0x00);  // 0x0020, loaded now
  EXPECT_EQ(pit.next_deadline_ns(), Pit8254::ns_of_tick(300 + 0x20));
}

TEST_F(PitTest, Mode3SquareWave) {
  outb(0x43, 0x36);  // ch 0, lohi, mode 3
  outb(0x40, 100);
  outb(0x40, 0);
  at_tick(10);
  EXPECT_EQ(latched_count(0), 80);  // decrements by two
  EXPECT_TRUE(pit.out(0));
  at_tick(49);
  EXPECT_TRUE(pit.out(0));
  at_tick(50);
  EXPECT_FALSE(pit.out(0));  // low for the second half
  at_tick(99);
  EXPECT_FALSE(pit.out(0));
  EXPECT_EQ(pit.next_deadline_ns(), Pit8254::ns_of_tick(100));
  EXPECT_FALSE(pit.deadline_may_be_late());
  pit.advance(Pit8254::ns_of_tick(100));
  EXPECT_EQ(irq0.rising_edges(), 1);
  EXPECT_EQ(pit.next_deadline_ns(), Pit8254::ns_of_tick(200));
}

TEST_F(PitTest, Mode4OneshotAsLinuxNextEvent) {
  // pit_set_oneshot: 0x38; pit_next_event writes the delta LSB, MSB.
  outb(0x43, 0x38);
  at_tick(50);
  outb(0x40, 500 & 0xFF);
  outb(0x40, 500 >> 8);
  // OUT pulses low at TC (tick 550) and rises one count later.
  EXPECT_EQ(pit.next_deadline_ns(), Pit8254::ns_of_tick(551));
  EXPECT_TRUE(pit.deadline_may_be_late());  // Linux's oneshot clockevent: the monitor's timer slack applies
  at_tick(550);
  EXPECT_FALSE(pit.out(0));
  pit.advance(Pit8254::ns_of_tick(551));
  EXPECT_EQ(irq0.rising_edges(), 1);
  EXPECT_EQ(pit.next_deadline_ns(), TimedDevice::kNever);
  EXPECT_FALSE(pit.deadline_may_be_late());  // no deadline at all
}

/// A host clock on a loaded machine: every reading comes later than the one
/// before (the thread may be preempted between any two readings).
class SteppingClock final : public Clock {
 public:
  explicit SteppingClock(uint64_t step_ns) : step_(step_ns) {}
  uint64_t now_ns() const override { return now_ += step_; }
  bool is_virtual() const override { return false; }

 private:
  uint64_t step_;
  mutable uint64_t now_ = 0;
};

TEST(PitPreempted, AOneshotCountIsNeverDroppedWhenTheClockMovesDuringTheWrite) {
  // 5 ms between any two readings of the clock, against a count of 500
  // ticks (0.42 ms): the edge must still be scheduled from the tick the
  // count was loaded at, and come exactly once.
  SteppingClock clock(5'000'000);
  RecordingLine irq0;
  Pit8254 pit{clock, irq0};
  bus::IoBus bus;
  ASSERT_TRUE(bus.add(0x40, 4, pit).has_value());
  auto outb = [&](uint16_t port, uint8_t v) {
    const uint8_t d[1] = {v};
    bus.write(port, d);
  };
  outb(0x43, 0x38);  // pit_set_oneshot
  outb(0x40, 500 & 0xFF);
  outb(0x40, 500 >> 8);
  const uint64_t deadline = pit.next_deadline_ns();
  ASSERT_NE(deadline, TimedDevice::kNever) << "the programmed one-shot event was dropped";
  pit.advance(deadline + 1'000'000'000);
  EXPECT_EQ(irq0.rising_edges(), 1);
  EXPECT_EQ(pit.next_deadline_ns(), TimedDevice::kNever);
}

TEST_F(PitTest, LobyteAndHibyteAccessModes) {
  outb(0x43, 0x14);  // ch 0, LSB only, mode 2
  outb(0x40, 0x50);
  at_tick(0x10);
  EXPECT_EQ(inb(0x40), 0x40);
  outb(0x43, 0x24);  // ch 0, MSB only, mode 2
  outb(0x40, 0x02);  // count 0x0200
  at_tick(0x10 + 0x100);
  EXPECT_EQ(inb(0x40), 0x01);  // 0x0100: MSB
}

TEST_F(PitTest, BcdCounting) {
  outb(0x43, 0x31);  // ch 0, lohi, mode 0, BCD
  outb(0x40, 0x00);
  outb(0x40, 0x10);  // 1000 decimal
  at_tick(1);
  EXPECT_EQ(latched_count(0), 0x0999);
  at_tick(1001);
  EXPECT_EQ(latched_count(0), 0x9999);  // wraps at 10000
  EXPECT_EQ(pit.bad_accesses(), 0u);
  outb(0x40, 0x0A);
  outb(0x40, 0x00);  // not a BCD number
  EXPECT_EQ(pit.bad_accesses(), 1u);
}

TEST_F(PitTest, ReadBackLatchesCountAndStatusOfSeveralChannels) {
  outb(0x43, 0x34);
  outb(0x40, 0x00);
  outb(0x40, 0x10);  // ch 0: 4096
  outb(0x43, 0xB0);  // ch 2 mode 0, gate low: not counting
  outb(0x42, 0x34);
  outb(0x42, 0x12);
  at_tick(0x100);
  outb(0x43, 0xC0 | 0x02 | 0x08);  // count + status of ch 0 and ch 2
  at_tick(0x200);                  // later reads still see the latch
  EXPECT_EQ(inb(0x40), 0xB4);      // OUT high, lohi, mode 2
  EXPECT_EQ(inb(0x40), 0x00);
  EXPECT_EQ(inb(0x40), 0x0F);      // 0x1000 - 0x100
  EXPECT_EQ(inb(0x42), 0x30);      // OUT low, lohi, mode 0
  EXPECT_EQ(inb(0x42), 0x34);
  EXPECT_EQ(inb(0x42), 0x12);      // gate low: not counting
  // A second latch command before reading is ignored.
  outb(0x43, 0x00);
  at_tick(0x300);
  outb(0x43, 0x00);
  const uint8_t lo = inb(0x40);
  const uint8_t hi = inb(0x40);
  EXPECT_EQ(lo | hi << 8, 0x1000 - 0x200);
}

TEST_F(PitTest, Channel2CalibrationAsLinuxPitCalibrateTsc) {
  // Gate high, speaker off.
  outb(0x61, uint8_t((inb(0x61) & ~0x02) | 0x01));
  EXPECT_EQ(inb(0x61) & 0x03, 0x01);
  // Mode 0, 50 ms latch.
  const uint16_t latch = 1193182 / (1000 / 50);
  outb(0x43, 0xB0);
  outb(0x42, latch & 0xFF);
  outb(0x42, latch >> 8);
  EXPECT_EQ(inb(0x61) & 0x20, 0);
  clock.now = 49'999'916;  // one ns before tick 59659
  EXPECT_EQ(inb(0x61) & 0x20, 0);
  clock.now = 49'999'917;
  EXPECT_EQ(inb(0x61) & 0x20, 0x20);
  // Channel 2 never touches IRQ 0.
  pit.advance(clock.now);
  EXPECT_TRUE(irq0.levels.empty());
}

TEST_F(PitTest, QuickCalibrationReadsTheMsbWithoutLatching) {
  outb(0x61, 0x01);
  outb(0x43, 0xB0);
  outb(0x42, 0xFF);
  outb(0x42, 0xFF);
  at_tick(256 * 3 + 5);  // count 0xFFFF - 773 = 0xFCFA
  EXPECT_EQ(inb(0x42), 0xFA);
  EXPECT_EQ(inb(0x42), 0xFC);
}

TEST_F(PitTest, GateLowSuspendsMode0) {
  outb(0x61, 0x01);
  outb(0x43, 0xB0);
  outb(0x42, 0xE8);
  outb(0x42, 0x03);  // 1000
  at_tick(100);
  outb(0x61, 0x00);  // gate low: hold at 900
  at_tick(600);
  EXPECT_EQ(latched_count(2), 900);
  outb(0x61, 0x01);  // resume
  at_tick(700);
  EXPECT_EQ(latched_count(2), 800);
  at_tick(1500);
  EXPECT_EQ(inb(0x61) & 0x20, 0x20);
}

TEST_F(PitTest, GateRisingEdgeTriggersMode1) {
  outb(0x43, 0xB2);  // ch 2, lohi, mode 1
  outb(0x42, 100);
  outb(0x42, 0);
  at_tick(500);
  EXPECT_EQ(inb(0x61) & 0x20, 0x20);  // OUT high until triggered
  outb(0x61, 0x01);                    // trigger
  at_tick(550);
  EXPECT_EQ(inb(0x61) & 0x20, 0);
  EXPECT_EQ(latched_count(2), 50);
  at_tick(600);
  EXPECT_EQ(inb(0x61) & 0x20, 0x20);
}

TEST_F(PitTest, Port61RefreshBitToggles) {
  clock.now = 0;
  const uint8_t a = inb(0x61) & 0x10;
  clock.now = 15'085;
  const uint8_t b = inb(0x61) & 0x10;
  EXPECT_NE(a, b);
  outb(0x61, 0x0E);
  EXPECT_EQ(inb(0x61) & 0x0F, 0x0E);
}

TEST_F(PitTest, ControlPortReadsAllOnesAndIsCounted) {
  EXPECT_EQ(inb(0x43), 0xFF);
  EXPECT_EQ(pit.bad_accesses(), 1u);
}

}  // namespace
}  // namespace twoostwo::vmcore
