// Cmos driven through ports 0x70/0x71 as Linux's mc146818 code does;
// expected values from the MC146818A datasheet and the PC CMOS map.
#include "vmcore/devices/cmos.h"

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
  std::vector<bool> levels;
};

constexpr int64_t kLeapDay = 1709214330;  // 2024-02-29 13:45:30 UTC, a Thursday
constexpr uint64_t kMiB = 1ull << 20;

class CmosTest : public ::testing::Test {
 protected:
  void make(uint64_t ram_bytes, int64_t start = kLeapDay) {
    CmosConfig config;
    config.ram_bytes = ram_bytes;
    config.start_unix_seconds = start;
    cmos = std::make_unique<Cmos>(clock, irq8, config);
    ASSERT_TRUE(bus.add(0x70, 2, *cmos).has_value());
  }
  void SetUp() override { make(128 * kMiB); }
  uint8_t cmos_read(uint8_t index) {
    const uint8_t i[1] = {index};
    bus.write(0x70, i);
    uint8_t d[1] = {0};
    bus.read(0x71, d);
    return d[0];
  }
  void cmos_write(uint8_t index, uint8_t value) {
    const uint8_t i[1] = {index};
    bus.write(0x70, i);
    const uint8_t d[1] = {value};
    bus.write(0x71, d);
  }

  ManualClock clock;
  RecordingLine irq8;
  bus::IoBus bus;
  std::unique_ptr<Cmos> cmos;
};

TEST_F(CmosTest, TimeInBcd24HourByDefault) {
  EXPECT_EQ(cmos_read(0x0B), 0x02);  // 24-hour, BCD
  EXPECT_EQ(cmos_read(0x00), 0x30);
  EXPECT_EQ(cmos_read(0x02), 0x45);
  EXPECT_EQ(cmos_read(0x04), 0x13);
  EXPECT_EQ(cmos_read(0x06), 0x05);  // Thursday (Sunday = 1)
  EXPECT_EQ(cmos_read(0x07), 0x29);
  EXPECT_EQ(cmos_read(0x08), 0x02);
  EXPECT_EQ(cmos_read(0x09), 0x24);
  EXPECT_EQ(cmos_read(0x32), 0x20);  // century
}

TEST_F(CmosTest, TimeInBinaryAnd12HourModes) {
  cmos_write(0x0B, 0x06);  // binary, 24-hour
  EXPECT_EQ(cmos_read(0x00), 30);
  EXPECT_EQ(cmos_read(0x02), 45);
  EXPECT_EQ(cmos_read(0x04), 13);
  EXPECT_EQ(cmos_read(0x07), 29);
  EXPECT_EQ(cmos_read(0x09), 24);
  EXPECT_EQ(cmos_read(0x32), 20);
  cmos_write(0x0B, 0x00);  // BCD, 12-hour
  EXPECT_EQ(cmos_read(0x04), 0x81);  // 1 PM
  cmos_write(0x0B, 0x04);  // binary, 12-hour
  EXPECT_EQ(cmos_read(0x04), 0x81);
}

TEST_F(CmosTest, ClockAdvancesWithGuestTimeAcrossYearEnd) {
  cmos.reset();
  bus = bus::IoBus();
  make(128 * kMiB, 1704067198);  // 2023-12-31 23:59:58, Sunday
  EXPECT_EQ(cmos_read(0x09), 0x23);
  EXPECT_EQ(cmos_read(0x06), 0x01);
  clock.now = 2'500'000'000;
  EXPECT_EQ(cmos_read(0x00), 0x00);
  EXPECT_EQ(cmos_read(0x02), 0x00);
  EXPECT_EQ(cmos_read(0x04), 0x00);
  EXPECT_EQ(cmos_read(0x07), 0x01);
  EXPECT_EQ(cmos_read(0x08), 0x01);
  EXPECT_EQ(cmos_read(0x09), 0x24);
  EXPECT_EQ(cmos_read(0x06), 0x02);  // Monday
  EXPECT_EQ(cmos->unix_seconds(), 1704067200);
}

TEST_F(CmosTest, UipIsSetOnlyJustBeforeAnUpdate) {
  clock.now = 500'000'000;
  EXPECT_EQ(cmos_read(0x0A), 0x26);  // 32.768 kHz, 1024 Hz rate, UIP clear
  clock.now = 999'800'000;           // 200 us before the second ends
  EXPECT_EQ(cmos_read(0x0A), 0xA6);
  clock.now = 1'000'000'000;
  EXPECT_EQ(cmos_read(0x0A), 0x26);
  EXPECT_EQ(cmos_read(0x00), 0x31);
}

TEST_F(CmosTest, SettingTheTimeAsMc146818SetTime) {
  const uint8_t control = cmos_read(0x0B);
  cmos_write(0x0B, control | 0x80);  // SET
  const uint8_t freq = cmos_read(0x0A);
  cmos_write(0x0A, freq | 0x70);  // divider reset
  cmos_write(0x09, 0x25);
  cmos_write(0x32, 0x20);
  cmos_write(0x08, 0x07);
  cmos_write(0x07, 0x04);
  cmos_write(0x04, 0x00);
  cmos_write(0x02, 0x30);
  cmos_write(0x00, 0x00);
  clock.now = 5'000'000'000;          // frozen while SET
  EXPECT_EQ(cmos_read(0x00), 0x00);
  cmos_write(0x0B, control);
  cmos_write(0x0A, freq);
  EXPECT_EQ(cmos->unix_seconds(), 1751589000);  // 2025-07-04 00:30:00
  clock.now = 7'000'000'000;
  EXPECT_EQ(cmos_read(0x00), 0x02);
  EXPECT_EQ(cmos_read(0x06), 0x06);  // Friday
}

TEST_F(CmosTest, RegisterDReportsValidRamAndIndexMasksNmiBit) {
  const uint8_t i[1] = {0x8D};  // NMI disabled, register D
  bus.write(0x70, i);
  uint8_t d[1];
  bus.read(0x71, d);
  EXPECT_EQ(d[0], 0x80);
  EXPECT_TRUE(cmos->nmi_disabled());
  cmos_write(0x0D, 0x00);
  EXPECT_EQ(cmos_read(0x0D), 0x80);
  EXPECT_EQ(cmos->bad_accesses(), 1u);
}

TEST_F(CmosTest, MemorySizeBytesFor128MiB) {
  EXPECT_EQ(cmos_read(0x15), 0x80);  // 640 KiB base memory
  EXPECT_EQ(cmos_read(0x16), 0x02);
  EXPECT_EQ(cmos_read(0x17), 0xFF);  // 127 MiB above 1 MiB in KiB: capped at 0xFFFF
  EXPECT_EQ(cmos_read(0x18), 0xFF);
  EXPECT_EQ(cmos_read(0x30), 0xFF);
  EXPECT_EQ(cmos_read(0x31), 0xFF);
  EXPECT_EQ(cmos_read(0x34), 0x00);  // 112 MiB above 16 MiB = 1792 x 64 KiB
  EXPECT_EQ(cmos_read(0x35), 0x07);
  EXPECT_EQ(cmos_read(0x5B), 0x00);
  EXPECT_EQ(cmos_read(0x5C), 0x00);
  EXPECT_EQ(cmos_read(0x5D), 0x00);
}

TEST_F(CmosTest, MemorySizeBytesFor4GiB) {
  cmos.reset();
  bus = bus::IoBus();
  make(4096 * kMiB);
  // Below the 0xE0000000 hole: 3.5 GiB - 16 MiB = 57088 x 64 KiB = 0xDF00.
  EXPECT_EQ(cmos_read(0x34), 0x00);
  EXPECT_EQ(cmos_read(0x35), 0xDF);
  EXPECT_EQ(cmos_read(0x17), 0xFF);
  EXPECT_EQ(cmos_read(0x18), 0xFF);
  // The remaining 512 MiB above 4 GiB: 8192 x 64 KiB.
  EXPECT_EQ(cmos_read(0x5B), 0x00);
  EXPECT_EQ(cmos_read(0x5C), 0x20);
  EXPECT_EQ(cmos_read(0x5D), 0x00);
}

TEST_F(CmosTest, SmallMemoryFitsWithoutCapping) {
  cmos.reset();
  bus = bus::IoBus();
  make(8 * kMiB);
  EXPECT_EQ(cmos_read(0x17), 0x00);  // 7168 KiB = 0x1C00
  EXPECT_EQ(cmos_read(0x18), 0x1C);
  EXPECT_EQ(cmos_read(0x34), 0x00);
  EXPECT_EQ(cmos_read(0x35), 0x00);
  // Checksum over 0x10-0x2D, big-endian at 0x2E.
  unsigned sum = 0;
  for (uint8_t i = 0x10; i <= 0x2D; ++i) sum += cmos_read(i);
  EXPECT_EQ(cmos_read(0x2E), sum >> 8);
  EXPECT_EQ(cmos_read(0x2F), sum & 0xFF);
}

TEST_F(CmosTest, RamBytesAreStored) {
  cmos_write(0x50, 0xA5);
  EXPECT_EQ(cmos_read(0x50), 0xA5);
}

TEST_F(CmosTest, PeriodicInterruptOnIrq8UntilRegisterCIsRead) {
  EXPECT_EQ(cmos->next_deadline_ns(), TimedDevice::kNever);
  EXPECT_EQ(cmos_read(0x0C), 0x00);
  cmos_write(0x0B, 0x42);  // PIE, 24-hour
  // Rate 6: 32 ticks of 32.768 kHz = 976562.5 ns.
  EXPECT_EQ(cmos->next_deadline_ns(), 976'563u);
  cmos->advance(976'562);
  EXPECT_TRUE(irq8.levels.empty());
  cmos->advance(976'563);
  EXPECT_EQ(irq8.levels, (std::vector<bool>{true}));
  EXPECT_EQ(cmos->next_deadline_ns(), TimedDevice::kNever);  // PF pending
  clock.now = 1'000'000;
  EXPECT_EQ(cmos_read(0x0C), 0xC0);  // IRQF | PF
  EXPECT_EQ(irq8.levels, (std::vector<bool>{true, false}));
  EXPECT_EQ(cmos_read(0x0C), 0x00);
  EXPECT_EQ(cmos->next_deadline_ns(), 1'953'125u);
}

TEST_F(CmosTest, UpdateEndedInterruptOncePerSecond) {
  clock.now = 200'000'000;
  cmos_write(0x0B, 0x12);  // UIE, 24-hour
  EXPECT_EQ(cmos->next_deadline_ns(), 1'000'000'000u);
  cmos->advance(1'000'000'000);
  EXPECT_EQ(irq8.levels, (std::vector<bool>{true}));
  clock.now = 1'000'000'000;
  EXPECT_EQ(cmos_read(0x0C), 0xD0);  // IRQF | PF | UF (PF is set whatever PIE says)
}

TEST_F(CmosTest, IndexPortIsWriteOnly) {
  uint8_t d[1];
  bus.read(0x70, d);
  EXPECT_EQ(d[0], 0xFF);
  EXPECT_EQ(cmos->bad_accesses(), 1u);
}

}  // namespace
}  // namespace twoostwo::vmcore
