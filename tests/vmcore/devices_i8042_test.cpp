// I8042 driven as Linux's i8042 and atkbd drivers drive it (booted with
// i8042.noaux, reboot=k).
#include "vmcore/devices/i8042.h"

#include <gtest/gtest.h>

#include <vector>

#include "vmcore/bus/io_bus.h"

namespace twoostwo::vmcore {
namespace {

class RecordingLine final : public bus::IrqLine {
 public:
  void set(bool l) override { levels.push_back(l); }
  bool level() const { return !levels.empty() && levels.back(); }
  std::vector<bool> levels;
};

class I8042Test : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(bus.add(0x60, 1, kbc.data_device()).has_value());
    ASSERT_TRUE(bus.add(0x64, 1, kbc.command_device()).has_value());
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
  // i8042_command: command, optional parameter, then read one reply.
  int command(uint8_t cmd, int param = -1, bool reply = true) {
    EXPECT_EQ(inb(0x64) & 0x02, 0);  // IBF clear: ready for input
    outb(0x64, cmd);
    if (param >= 0) outb(0x60, uint8_t(param));
    if (!reply) return -1;
    if (!(inb(0x64) & 0x01)) return -1;  // no OBF: timeout
    return inb(0x60);
  }
  // Everything the keyboard has queued.
  std::vector<uint8_t> drain() {
    std::vector<uint8_t> out;
    while (inb(0x64) & 0x01) out.push_back(inb(0x60));
    return out;
  }

  RecordingLine irq1;
  int resets = 0;
  I8042 kbc{irq1, [this] { ++resets; }};
  bus::IoBus bus;
};

TEST_F(I8042Test, LinuxControllerProbe) {
  // i8042_flush: nothing pending.
  EXPECT_EQ(inb(0x64) & 0x01, 0);
  // i8042_controller_selftest.
  EXPECT_EQ(command(0xAA), 0x55);
  EXPECT_EQ(inb(0x64) & 0x04, 0x04);  // SYS flag
  // i8042_controller_init: two equal CTR reads, then write it back modified.
  const int ctr = command(0x20);
  EXPECT_EQ(ctr, 0x45);  // translate, SYS, keyboard interrupt
  EXPECT_EQ(command(0x20), ctr);
  const uint8_t new_ctr = uint8_t((ctr | 0x10) & ~0x01);  // keyboard disabled, no IRQ
  command(0x60, new_ctr, false);
  EXPECT_EQ(command(0x20), new_ctr);
  EXPECT_EQ(kbc.command_byte(), new_ctr);
  // Keyboard port test, then enable the port and its interrupt.
  EXPECT_EQ(command(0xAB), 0x00);
  command(0x60, (new_ctr & ~0x10) | 0x01, false);
  EXPECT_EQ(kbc.command_byte(), 0x45);
  EXPECT_FALSE(irq1.level());
}

TEST_F(I8042Test, AtkbdProbeGetsAcksThroughIrq1) {
  // Reset: ACK then BAT passed.
  outb(0x60, 0xFF);
  EXPECT_TRUE(irq1.level());
  EXPECT_EQ(drain(), (std::vector<uint8_t>{0xFA, 0xAA}));
  EXPECT_FALSE(irq1.level());
  // GETID: MF2 keyboard, 0x83 translated to 0x41.
  outb(0x60, 0xF2);
  EXPECT_EQ(drain(), (std::vector<uint8_t>{0xFA, 0xAB, 0x41}));
  // SETLEDS with its parameter, SETREP with its parameter, ENABLE.
  outb(0x60, 0xED);
  outb(0x60, 0x00);
  outb(0x60, 0xF3);
  outb(0x60, 0x20);
  outb(0x60, 0xF4);
  EXPECT_EQ(drain(), (std::vector<uint8_t>{0xFA, 0xFA, 0xFA, 0xFA, 0xFA}));
  // An unknown command (atkbd's 0xEA probe) is refused with RESEND.
  outb(0x60, 0xEA);
  EXPECT_EQ(drain(), (std::vector<uint8_t>{0xFE}));
}

TEST_F(I8042Test, UntranslatedIdentify) {
  command(0x60, 0x05, false);  // translation off
  outb(0x60, 0xF2);
  EXPECT_EQ(drain(), (std::vector<uint8_t>{0xFA, 0xAB, 0x83}));
  outb(0x60, 0xF0);
  outb(0x60, 0x00);
  EXPECT_EQ(drain(), (std::vector<uint8_t>{0xFA, 0xFA, 0x02}));  // scan code set 2
}

TEST_F(I8042Test, EachQueuedByteMakesAnIrq1Edge) {
  outb(0x60, 0xFF);  // two bytes queued
  irq1.levels.clear();
  (void)inb(0x60);
  EXPECT_EQ(irq1.levels, (std::vector<bool>{false, true}));
  (void)inb(0x60);
  EXPECT_EQ(irq1.levels, (std::vector<bool>{false, true, false}));
}

TEST_F(I8042Test, NoIrq1WhenTheCommandByteDisablesIt) {
  command(0x60, 0x44, false);
  outb(0x60, 0xF4);
  EXPECT_FALSE(irq1.level());
  EXPECT_EQ(inb(0x64) & 0x01, 0x01);
}

TEST_F(I8042Test, KeyboardDisableAndEnableCommands) {
  outb(0x64, 0xAD);
  EXPECT_EQ(kbc.command_byte() & 0x10, 0x10);
  outb(0x64, 0xAE);
  EXPECT_EQ(kbc.command_byte() & 0x10, 0x00);
  outb(0x64, 0xA7);
  EXPECT_EQ(kbc.command_byte() & 0x20, 0x20);
  outb(0x64, 0xA8);
  EXPECT_EQ(kbc.command_byte() & 0x20, 0x00);
  EXPECT_EQ(inb(0x64) & 0x08, 0x08);  // last write went to the command port
  outb(0x60, 0xF4);
  EXPECT_EQ(inb(0x64) & 0x08, 0x00);
}

TEST_F(I8042Test, PulsingTheResetLineCallsOnReset) {
  outb(0x64, 0xFE);  // Linux reboot=k
  EXPECT_EQ(resets, 1);
  outb(0x64, 0xFF);  // pulses nothing
  EXPECT_EQ(resets, 1);
  command(0xD1, 0x03, false);  // output port: reset line high
  EXPECT_EQ(resets, 1);
  EXPECT_EQ(command(0xD0), 0x03);
  command(0xD1, 0x02, false);  // reset line low
  EXPECT_EQ(resets, 2);
  EXPECT_EQ(kbc.resets(), 2u);
}

TEST_F(I8042Test, NoAuxPort) {
  EXPECT_EQ(command(0xA9), 0x01);
  command(0xD4, 0xF2, false);  // to the (absent) aux device: no answer
  EXPECT_EQ(inb(0x64) & 0x01, 0);
}

TEST_F(I8042Test, InjectedScanCodesAreRead) {
  const uint8_t codes[2] = {0x1E, 0x9E};  // 'a' make, break (set 1)
  kbc.inject_keyboard(codes);
  EXPECT_TRUE(irq1.level());
  EXPECT_EQ(drain(), (std::vector<uint8_t>{0x1E, 0x9E}));
}

TEST_F(I8042Test, UnknownControllerCommandIsCounted) {
  outb(0x64, 0xC8);
  EXPECT_EQ(kbc.bad_accesses(), 1u);
  EXPECT_EQ(inb(0x64) & 0x01, 0);
}

}  // namespace
}  // namespace twoostwo::vmcore
