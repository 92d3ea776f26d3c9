// Pic8259Pair driven through an IoBus as Linux's arch/x86/kernel/i8259.c
// drives it; expected values from the Intel 8259A datasheet.
#include "vmcore/devices/pic.h"

#include <gtest/gtest.h>

#include "vmcore/bus/io_bus.h"

namespace twoostwo::vmcore {
namespace {

class PicTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(bus.add(0x20, 2, pic.master_device()).has_value());
    ASSERT_TRUE(bus.add(0xA0, 2, pic.slave_device()).has_value());
    ASSERT_TRUE(bus.add(0x4D0, 2, pic.elcr_device()).has_value());
    pic.on_intr_raised = [this] { ++wakeups; };
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
  // Linux init_8259A(auto_eoi = 0) with ICW2 0x20 / 0x28, then the masks.
  void linux_init(uint8_t master_mask, uint8_t slave_mask, uint8_t master_icw4 = 0x01) {
    outb(0x21, 0xFF);
    outb(0x20, 0x11);  // ICW1: edge, cascade, ICW4 needed
    outb(0x21, 0x20);  // ICW2: vector base
    outb(0x21, 0x04);  // ICW3: slave on IR2
    outb(0x21, master_icw4);
    outb(0xA0, 0x11);
    outb(0xA1, 0x28);
    outb(0xA1, 0x02);  // ICW3: slave ID 2
    outb(0xA1, 0x01);
    outb(0x21, master_mask);
    outb(0xA1, slave_mask);
  }
  uint8_t read_isr(uint16_t cmd) {
    outb(cmd, 0x0B);
    const uint8_t v = inb(cmd);
    outb(cmd, 0x0A);
    return v;
  }
  uint8_t read_irr(uint16_t cmd) {
    outb(cmd, 0x0A);
    return inb(cmd);
  }

  bus::IoBus bus;
  Pic8259Pair pic;
  int wakeups = 0;
};

TEST_F(PicTest, LinuxProbeReadsBackTheMask) {
  // probe_8259A: mask the slave, write ~(1 << 2) to the master's IMR, read it back.
  outb(0xA1, 0xFF);
  outb(0x21, 0xFB);
  EXPECT_EQ(inb(0x21), 0xFB);
  EXPECT_EQ(inb(0xA1), 0xFF);
}

TEST_F(PicTest, InitSequenceSetsVectorsAndMasks) {
  linux_init(0xFA, 0xFF);  // IRQ 0 and cascade unmasked
  EXPECT_EQ(inb(0x21), 0xFA);
  EXPECT_EQ(inb(0xA1), 0xFF);
  EXPECT_FALSE(pic.interrupt_pending());
  pic.set_irq(0, true);
  EXPECT_TRUE(pic.interrupt_pending());
  EXPECT_EQ(wakeups, 1);
  EXPECT_EQ(pic.acknowledge(), 0x20);
  EXPECT_EQ(read_isr(0x20), 0x01);
  EXPECT_EQ(read_irr(0x20) & 0x01, 0);  // edge request cleared by INTA
  EXPECT_FALSE(pic.interrupt_pending());
}

TEST_F(PicTest, FullyNestedPriorityAndNonSpecificEoi) {
  linux_init(0x00, 0xFF);
  pic.set_irq(3, true);
  pic.set_irq(1, true);
  EXPECT_EQ(pic.acknowledge(), 0x21);  // IR1 beats IR3
  EXPECT_FALSE(pic.interrupt_pending());  // IR3 waits behind IR1 in service
  pic.set_irq(0, true);
  EXPECT_TRUE(pic.interrupt_pending());  // IR0 nests over IR1
  EXPECT_EQ(pic.acknowledge(), 0x20);
  EXPECT_EQ(read_isr(0x20), 0x03);
  outb(0x20, 0x20);  // non-specific EOI clears the highest: IR0
  EXPECT_EQ(read_isr(0x20), 0x02);
  EXPECT_FALSE(pic.interrupt_pending());
  outb(0x20, 0x20);
  EXPECT_TRUE(pic.interrupt_pending());
  EXPECT_EQ(pic.acknowledge(), 0x23);
}

TEST_F(PicTest, SpecificEoiAsLinuxMaskAndAck) {
  linux_init(0x00, 0xFF);
  pic.set_irq(4, true);
  EXPECT_EQ(pic.acknowledge(), 0x24);
  // mask_and_ack_8259A: dummy IMR read, mask, specific EOI 0x60 + irq.
  (void)inb(0x21);
  outb(0x21, 0x10);
  outb(0x20, 0x64);
  EXPECT_EQ(read_isr(0x20), 0x00);
  pic.set_irq(4, false);
  pic.set_irq(4, true);
  EXPECT_FALSE(pic.interrupt_pending());  // masked...
  EXPECT_EQ(read_irr(0x20), 0x10);        // ...but requested
  outb(0x21, 0x00);
  EXPECT_TRUE(pic.interrupt_pending());
}

TEST_F(PicTest, EdgeRequestIsLatchedLevelRequestFollowsTheLine) {
  linux_init(0x00, 0xFF);
  // Edge (ELCR bit clear): a pulse is remembered until INTA.
  pic.set_irq(5, true);
  pic.set_irq(5, false);
  EXPECT_TRUE(pic.interrupt_pending());
  EXPECT_EQ(pic.acknowledge(), 0x25);
  outb(0x20, 0x20);
  // Holding an edge line high does not re-request after EOI.
  pic.set_irq(5, true);
  EXPECT_EQ(pic.acknowledge(), 0x25);
  outb(0x20, 0x20);
  EXPECT_FALSE(pic.interrupt_pending());
  pic.set_irq(5, false);

  // Level (ELCR bit set): the request goes away with the line...
  outb(0x4D0, 0x20);
  EXPECT_EQ(inb(0x4D0), 0x20);
  pic.set_irq(5, true);
  pic.set_irq(5, false);
  EXPECT_FALSE(pic.interrupt_pending());
  EXPECT_EQ(read_irr(0x20), 0x00);
  // ...and is made again after EOI while the line stays high.
  pic.set_irq(5, true);
  EXPECT_EQ(pic.acknowledge(), 0x25);
  outb(0x20, 0x20);
  EXPECT_TRUE(pic.interrupt_pending());
  EXPECT_EQ(pic.acknowledge(), 0x25);
}

TEST_F(PicTest, ElcrBitsOfSystemIrqsAreFixedEdge) {
  outb(0x4D0, 0xFF);
  outb(0x4D1, 0xFF);
  EXPECT_EQ(inb(0x4D0), 0xF8);  // IRQ 0, 1, 2 edge
  EXPECT_EQ(inb(0x4D1), 0xDE);  // IRQ 8, 13 edge
  pic.set_elcr(0x0800);
  EXPECT_EQ(pic.elcr(), 0x0800);
  EXPECT_EQ(inb(0x4D1), 0x08);
}

TEST_F(PicTest, RequestGoneBeforeIntaGivesSpuriousIrq7WithoutIsr) {
  linux_init(0x00, 0xFF);
  outb(0x4D0, 0x08);  // IRQ 3 level
  pic.set_irq(3, true);
  EXPECT_TRUE(pic.interrupt_pending());
  pic.set_irq(3, false);
  EXPECT_EQ(pic.acknowledge(), 0x27);
  EXPECT_EQ(read_isr(0x20), 0x00);
}

TEST_F(PicTest, SlaveCascadesThroughMasterIr2) {
  linux_init(0xFB, 0xEF);  // cascade and IRQ 12 unmasked
  pic.set_irq(12, true);
  EXPECT_TRUE(pic.interrupt_pending());
  EXPECT_EQ(wakeups, 1);
  EXPECT_EQ(pic.acknowledge(), 0x2C);
  EXPECT_EQ(read_isr(0x20), 0x04);
  EXPECT_EQ(read_isr(0xA0), 0x10);
  // Linux: specific EOI to the slave, then to the master's IR2.
  outb(0xA0, 0x64);
  outb(0x20, 0x62);
  EXPECT_EQ(read_isr(0x20), 0x00);
  EXPECT_EQ(read_isr(0xA0), 0x00);
  EXPECT_FALSE(pic.interrupt_pending());
}

TEST_F(PicTest, SlaveRequestsWaitWhileMasterServesHigherPriority) {
  linux_init(0xF8, 0x00);  // IRQ 0, 1, cascade unmasked
  pic.set_irq(1, true);
  EXPECT_EQ(pic.acknowledge(), 0x21);
  pic.set_irq(8, true);
  EXPECT_FALSE(pic.interrupt_pending());  // IR2 has lower priority than IR1
  outb(0x20, 0x20);
  EXPECT_EQ(pic.acknowledge(), 0x28);
}

TEST_F(PicTest, SpuriousSlaveRequestGivesIrq15) {
  linux_init(0xFB, 0x00);
  outb(0x4D1, 0x04);  // IRQ 10 level
  pic.set_irq(10, true);
  EXPECT_TRUE(pic.interrupt_pending());
  pic.set_irq(10, false);
  // The master latched the IR2 edge; the slave has nothing left: IR7 of the
  // slave without slave ISR, the master's IR2 in service.
  EXPECT_TRUE(pic.interrupt_pending());
  EXPECT_EQ(pic.acknowledge(), 0x2F);
  EXPECT_EQ(read_isr(0x20), 0x04);
  EXPECT_EQ(read_isr(0xA0), 0x00);
}

TEST_F(PicTest, AutoEoiLeavesIsrClear) {
  linux_init(0x00, 0xFF, 0x03);  // ICW4: 8086 mode, auto-EOI
  pic.set_irq(6, true);
  EXPECT_EQ(pic.acknowledge(), 0x26);
  EXPECT_EQ(read_isr(0x20), 0x00);
  pic.set_irq(6, false);
  pic.set_irq(6, true);
  EXPECT_TRUE(pic.interrupt_pending());  // no EOI needed
}

TEST_F(PicTest, RotateOnNonSpecificEoiMakesServicedIrqLowest) {
  linux_init(0x00, 0xFF);
  pic.set_irq(0, true);
  EXPECT_EQ(pic.acknowledge(), 0x20);
  outb(0x20, 0xA0);  // rotate on non-specific EOI: IR0 becomes lowest
  pic.set_irq(0, false);
  pic.set_irq(0, true);
  pic.set_irq(7, true);
  EXPECT_EQ(pic.acknowledge(), 0x27);  // IR7 now outranks IR0
  outb(0x20, 0x20);
  EXPECT_EQ(pic.acknowledge(), 0x20);
}

TEST_F(PicTest, SpecialMaskModeLetsLowerPrioritiesThrough) {
  linux_init(0x00, 0xFF);
  pic.set_irq(3, true);
  EXPECT_EQ(pic.acknowledge(), 0x23);
  pic.set_irq(5, true);
  EXPECT_FALSE(pic.interrupt_pending());
  outb(0x21, 0x08);  // mask IR3 (in service)
  outb(0x20, 0x68);  // OCW3: set special mask mode
  EXPECT_TRUE(pic.interrupt_pending());
  EXPECT_EQ(pic.acknowledge(), 0x25);
  outb(0x20, 0x48);  // reset special mask mode
  EXPECT_EQ(read_isr(0x20), 0x28);
}

TEST_F(PicTest, PollCommandReturnsHighestRequestAndAcknowledgesIt) {
  linux_init(0x00, 0xFF);
  outb(0x20, 0x0C);  // OCW3 poll
  EXPECT_EQ(inb(0x20), 0x00);  // nothing requested
  pic.set_irq(6, true);
  pic.set_irq(4, true);
  outb(0x20, 0x0C);
  EXPECT_EQ(inb(0x20), 0x84);
  EXPECT_EQ(read_isr(0x20), 0x10);
}

TEST_F(PicTest, BadInputsAreCountedNotFatal) {
  pic.set_irq(2, true);
  pic.set_irq(16, true);
  pic.line(99).set(true);
  EXPECT_EQ(pic.bad_accesses(), 3u);
  uint8_t w[2];
  bus.read(0x20, w);  // a word access splits into IRR (0x20) and IMR (0x21)
  EXPECT_EQ(w[0], 0x00);
  EXPECT_EQ(w[1], 0x00);
  EXPECT_EQ(pic.bad_accesses(), 4u);
  uint8_t d[4];
  bus.read(0xA1, d);  // 3 of 4 bytes are past the range
  EXPECT_EQ(d[1], 0xFF);
  EXPECT_EQ(pic.bad_accesses(), 8u);
}

TEST_F(PicTest, Icw1ClearsIsrImrAndEdgeLatches) {
  linux_init(0x00, 0xFF);
  pic.set_irq(3, true);
  EXPECT_EQ(pic.acknowledge(), 0x23);
  pic.set_irq(4, true);  // latched, waiting behind IR3
  outb(0x21, 0xF0);
  outb(0x20, 0x11);  // ICW1 again (ICW2-4 follow)
  outb(0x21, 0x40);
  outb(0x21, 0x04);
  outb(0x21, 0x01);
  EXPECT_EQ(read_isr(0x20), 0x00);
  EXPECT_EQ(inb(0x21), 0x00);
  EXPECT_EQ(read_irr(0x20), 0x00);  // the edge request was dropped
  EXPECT_FALSE(pic.interrupt_pending());
  pic.set_irq(4, true);  // still high: no new rising edge...
  EXPECT_TRUE(pic.interrupt_pending());  // ...but the edge latch was reset by ICW1
  EXPECT_EQ(pic.acknowledge(), 0x44);    // new vector base
}

TEST_F(PicTest, IrqLineDrivesTheInput) {
  linux_init(0x00, 0xFF);
  pic.line(1).set(true);
  EXPECT_EQ(pic.acknowledge(), 0x21);
}

}  // namespace
}  // namespace twoostwo::vmcore
