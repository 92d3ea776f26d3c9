// IoBus / MmioBus: offset-relative dispatch, overlap errors naming both
// devices, unclaimed ports reading 0xFF and being counted.
#include "vmcore/bus/io_bus.h"
#include "vmcore/bus/guest_memory.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace twoostwo::bus {
namespace {

class Recorder : public IoDevice {
 public:
  explicit Recorder(std::string name) : name_(std::move(name)) {}
  void read(uint64_t offset, std::span<uint8_t> data) override {
    reads.push_back({offset, data.size()});
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(0x10 + offset + i);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    writes.push_back({offset, load_le(data)});
  }
  std::string_view name() const override { return name_; }
  std::vector<std::pair<uint64_t, uint64_t>> reads, writes;

 private:
  std::string name_;
};

TEST(IoBusTest, DispatchesWithOffsetRelativeToBase) {
  IoBus bus;
  Recorder uart("uart 0x3f8");
  ASSERT_TRUE(bus.add(0x3F8, 8, uart).has_value());
  uint8_t v[2] = {};
  EXPECT_TRUE(bus.read(0x3FD, v));
  EXPECT_EQ(v[0], 0x15);
  EXPECT_EQ(v[1], 0x16);
  const uint8_t w[4] = {0x78, 0x56, 0x34, 0x12};
  EXPECT_TRUE(bus.write(0x3F8, w));
  ASSERT_EQ(uart.reads.size(), 1u);
  EXPECT_EQ(uart.reads[0], (std::pair<uint64_t, uint64_t>{5, 2}));
  ASSERT_EQ(uart.writes.size(), 1u);
  EXPECT_EQ(uart.writes[0], (std::pair<uint64_t, uint64_t>{0, 0x12345678}));
}

TEST(IoBusTest, OverlapErrorNamesBothDevicesAndRanges) {
  IoBus bus;
  Recorder a("ne2000 0x300"), b("uart 0x31f");
  ASSERT_TRUE(bus.add(0x300, 0x20, a).has_value());
  auto r = bus.add(0x31F, 8, b);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message,
            "io bus: device 'uart 0x31f' at ports [0x31f, 0x327) overlaps device 'ne2000 0x300' at ports "
            "[0x300, 0x320)");
  // The failed registration claimed nothing.
  uint8_t v[1];
  EXPECT_FALSE(bus.read(0x320, v));
}

TEST(IoBusTest, RejectsEmptyAndOutOfRangeRanges) {
  IoBus bus;
  Recorder a("a");
  EXPECT_FALSE(bus.add(0x10, 0, a).has_value());
  EXPECT_FALSE(bus.add(0xFFFF, 2, a).has_value());
  EXPECT_TRUE(bus.add(0xFFFF, 1, a).has_value());
}

TEST(IoBusTest, UnclaimedPortsReadAllOnesAndAreCounted) {
  IoBus bus;
  uint8_t v[4] = {1, 2, 3, 4};
  EXPECT_FALSE(bus.read(0x1234, v));
  for (uint8_t b : v) EXPECT_EQ(b, 0xFF);
  const uint8_t w[1] = {7};
  EXPECT_FALSE(bus.write(0x1234, w));
  EXPECT_FALSE(bus.write(0x1234, w));
  ASSERT_EQ(bus.unhandled().count(0x1234), 1u);
  EXPECT_EQ(bus.unhandled().at(0x1234).reads, 1u);
  EXPECT_EQ(bus.unhandled().at(0x1234).writes, 2u);
}

TEST(IoBusTest, RemoveFreesTheRangeForRelocation) {
  IoBus bus;
  Recorder nic("rtl8029");
  ASSERT_TRUE(bus.add(0xC000, 0x20, nic).has_value());
  ASSERT_TRUE(bus.remove(0xC000).has_value());
  uint8_t v[1];
  EXPECT_FALSE(bus.read(0xC000, v));
  EXPECT_FALSE(bus.remove(0xC000).has_value());
  ASSERT_TRUE(bus.add(0xC100, 0x20, nic).has_value());
  EXPECT_TRUE(bus.read(0xC11F, v));
  EXPECT_EQ(v[0], 0x10 + 0x1F);
}

TEST(MmioBusTest, DispatchOverlapAndUnclaimed) {
  MmioBus bus;
  Recorder a("rom"), b("other");
  ASSERT_TRUE(bus.add(0xFFFF0000, 0x10000, a).has_value());
  auto r = bus.add(0xFFFFF000, 0x2000, b);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("'other'"), std::string::npos);
  EXPECT_NE(r.error().message.find("'rom'"), std::string::npos);
  ASSERT_TRUE(bus.add(0xFEC00000, 0x1000, b).has_value());
  uint8_t v[4];
  EXPECT_TRUE(bus.read(0xFFFF0004, v));
  EXPECT_EQ(v[0], 0x14);
  EXPECT_TRUE(bus.read(0xFEC00010, v));
  EXPECT_EQ(v[0], 0x20);
  EXPECT_FALSE(bus.read(0xFEBFFFFF, v));
  EXPECT_EQ(v[3], 0xFF);
  EXPECT_EQ(bus.unhandled_reads(), 1u);
}

TEST(GuestMemoryTest, BoundsAreCheckedWithoutOverflow) {
  std::vector<uint8_t> ram(4096);
  GuestMemory mem(ram.data(), ram.size());
  uint8_t buf[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_TRUE(mem.write(4088, buf));
  EXPECT_FALSE(mem.write(4089, buf));
  EXPECT_FALSE(mem.read(UINT64_MAX - 2, buf));
  EXPECT_TRUE(mem.slice(4097, 0).empty());
  EXPECT_EQ(mem.slice(4088, 8).size(), 8u);
  EXPECT_EQ(ram[4095], 8);
}

}  // namespace
}  // namespace twoostwo::bus
