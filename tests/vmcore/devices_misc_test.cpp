// MiscPorts: POST code 0x80, I/O delay 0xED, System Control Port A 0x92.
#include "vmcore/devices/misc_ports.h"

#include <gtest/gtest.h>

#include "vmcore/bus/io_bus.h"

namespace twoostwo::vmcore {
namespace {

class MiscPortsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(bus.add(0x80, 1, misc.post_device()).has_value());
    ASSERT_TRUE(bus.add(0xED, 1, misc.delay_device()).has_value());
    ASSERT_TRUE(bus.add(0x92, 1, misc.port92_device()).has_value());
  }
  void outb(uint16_t port, uint8_t v) {
    const uint8_t d[1] = {v};
    EXPECT_TRUE(bus.write(port, d));
  }
  uint8_t inb(uint16_t port) {
    uint8_t d[1] = {0};
    EXPECT_TRUE(bus.read(port, d));
    return d[0];
  }

  int resets = 0;
  MiscPorts misc{[this] { ++resets; }};
  bus::IoBus bus;
};

TEST_F(MiscPortsTest, PostCodeIsKept) {
  outb(0x80, 0xFF);  // the 8250 probe's outb(0xff, 0x80)
  outb(0x80, 0x42);
  EXPECT_EQ(misc.post_code(), 0x42);
  EXPECT_EQ(inb(0x80), 0x42);
}

TEST_F(MiscPortsTest, DelayPortIsANoOp) {
  outb(0xED, 0x00);
  EXPECT_EQ(inb(0xED), 0xFF);
  EXPECT_EQ(resets, 0);
}

TEST_F(MiscPortsTest, Port92ShowsA20AndFastResets) {
  EXPECT_EQ(inb(0x92), 0x02);
  outb(0x92, 0x02);  // arch/x86/boot/a20.c enable_a20_fast
  EXPECT_EQ(inb(0x92), 0x02);
  EXPECT_EQ(resets, 0);
  outb(0x92, 0x03);
  EXPECT_EQ(resets, 1);
  EXPECT_EQ(inb(0x92), 0x03);
  outb(0x92, 0x03);  // bit 0 already set: no new pulse
  EXPECT_EQ(resets, 1);
  outb(0x92, 0x00);  // A20 cannot be turned off
  EXPECT_EQ(inb(0x92), 0x02);
}

TEST_F(MiscPortsTest, WideAccessIsSplitAndCounted) {
  uint8_t d[2];
  bus.read(0x92, d);
  EXPECT_EQ(d[0], 0x02);
  EXPECT_EQ(d[1], 0xFF);
  EXPECT_EQ(misc.bad_accesses(), 2u);
}

}  // namespace
}  // namespace twoostwo::vmcore
