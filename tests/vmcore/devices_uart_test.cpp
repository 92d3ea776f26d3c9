// Uart16550 driven through an IoBus the way Linux's 8250 driver probes and
// uses it; expected values from the PC16550D datasheet.
#include "vmcore/devices/uart.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vmcore/bus/io_bus.h"

namespace twoostwo::vmcore {
namespace {

class RecordingLine final : public bus::IrqLine {
 public:
  void set(bool l) override { level = l; ++changes; }
  bool level = false;
  int changes = 0;
};

// Register offsets.
constexpr uint16_t kBase = 0x3F8;
constexpr uint16_t RX = kBase + 0, TX = kBase + 0, DLL = kBase + 0, IER = kBase + 1,
                   DLM = kBase + 1, IIR = kBase + 2, FCR = kBase + 2, EFR = kBase + 2,
                   LCR = kBase + 3, MCR = kBase + 4, LSR = kBase + 5, MSR = kBase + 6,
                   SCR = kBase + 7;

class UartTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(bus.add(kBase, 8, uart).has_value()); }
  void outb(uint16_t port, uint8_t v) {
    const uint8_t d[1] = {v};
    bus.write(port, d);
  }
  uint8_t inb(uint16_t port) {
    uint8_t d[1] = {0};
    bus.read(port, d);
    return d[0];
  }
  void receive(const std::string& s) {
    uart.receive({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  }

  RecordingLine irq;
  std::string output;
  Uart16550 uart{"uart 0x3f8", irq,
                 [this](std::span<const uint8_t> b) { output.append(b.begin(), b.end()); }};
  bus::IoBus bus;
};

TEST_F(UartTest, ResetState) {
  EXPECT_EQ(inb(IER), 0x00);
  EXPECT_EQ(inb(IIR), 0x01);  // no interrupt, FIFOs off
  EXPECT_EQ(inb(LSR), 0x60);  // THRE | TEMT
  EXPECT_EQ(inb(MSR), 0xB0);  // DCD | DSR | CTS
  EXPECT_EQ(inb(MCR), 0x00);
}

TEST_F(UartTest, DivisorLatchScratchAndIerMask) {
  outb(LCR, 0x83);  // DLAB, 8N1
  outb(DLL, 0x01);
  outb(DLM, 0x00);
  EXPECT_EQ(inb(DLL), 0x01);
  EXPECT_EQ(inb(DLM), 0x00);
  EXPECT_EQ(uart.divisor(), 1);
  outb(LCR, 0x03);
  outb(IER, 0xFF);
  EXPECT_EQ(inb(IER), 0x0F);  // bits 4-7 are always 0 on a 16550
  outb(SCR, 0x5A);
  EXPECT_EQ(inb(SCR), 0x5A);
  EXPECT_EQ(inb(LCR), 0x03);
}

TEST_F(UartTest, LinuxAutoconfigFindsA16550A) {
  // IER existence test.
  const uint8_t scratch = inb(IER);
  outb(IER, 0);
  const uint8_t scratch2 = inb(IER) & 0x0F;
  outb(IER, 0x0F);
  const uint8_t scratch3 = inb(IER) & 0x0F;
  outb(IER, scratch);
  EXPECT_EQ(scratch2, 0x00);
  EXPECT_EQ(scratch3, 0x0F);
  const uint8_t save_mcr = inb(MCR);
  const uint8_t save_lcr = inb(LCR);
  // Loopback test: MCR = LOOP | OUT2 | RTS must show DCD | CTS.
  outb(MCR, 0x1A);
  EXPECT_EQ(inb(MSR) & 0xF0, 0x90);
  outb(MCR, save_mcr);
  // EFR cleared under LCR 0xBF, then FIFO enable: IIR bits 7-6 = 11.
  outb(LCR, 0xBF);
  outb(EFR, 0);
  outb(LCR, 0);
  outb(FCR, 0x01);
  EXPECT_EQ(inb(IIR) >> 6, 3);
  // autoconfig_16550a: no EFR under LCR 0x80 nor 0xBF (reads must be non-zero).
  outb(LCR, 0x80);
  EXPECT_NE(inb(EFR), 0);
  outb(LCR, 0xBF);
  EXPECT_NE(inb(EFR), 0);
  // National SuperIO test: bank 2 "EXCR1" must not mirror MCR's LOOP bit.
  outb(LCR, 0);
  const uint8_t status1 = inb(MCR);
  outb(LCR, 0xE0);
  uint8_t status2 = inb(0x3FA);
  EXPECT_EQ((status2 ^ status1) & 0x10, 0);
  outb(LCR, 0);
  outb(MCR, status1 ^ 0x10);
  outb(LCR, 0xE0);
  status2 = inb(0x3FA);
  outb(LCR, 0);
  outb(MCR, status1);
  EXPECT_EQ((status2 ^ status1) & 0x10, 0);  // not a National SuperIO
  // TI16750 test: IIR bit 5 (64-byte FIFO) never set.
  outb(LCR, 0);
  outb(FCR, 0x21);
  EXPECT_EQ(inb(IIR) & 0xE0, 0xC0);
  outb(FCR, 0x01);
  outb(LCR, 0x80);
  outb(FCR, 0x21);
  EXPECT_EQ(inb(IIR) & 0xE0, 0xC0);
  outb(FCR, 0x01);
  outb(LCR, 0);
  // XScale test: IER bit 6 (UUE) not writable.
  const uint8_t iersave = inb(IER);
  outb(IER, iersave | 0x40);
  EXPECT_EQ(inb(IER) & 0x40, 0);
  outb(IER, iersave);
  outb(LCR, save_lcr);
  EXPECT_TRUE(output.empty());
}

TEST_F(UartTest, SizeFifoInLoopbackCounts16Bytes) {
  // size_fifo(): loopback, FIFOs reset, 256 bytes written, count DR reads.
  outb(LCR, 0);
  outb(FCR, 0x07);
  outb(MCR, 0x10);
  outb(LCR, 0x80);
  outb(DLL, 0x01);
  outb(DLM, 0x00);
  outb(LCR, 0x03);
  for (int i = 0; i < 256; ++i) outb(TX, uint8_t(i));
  int count = 0;
  std::vector<uint8_t> got;
  while ((inb(LSR) & 0x01) && count < 256) {
    got.push_back(inb(RX));
    ++count;
  }
  EXPECT_EQ(count, 16);
  EXPECT_EQ(got.front(), 0);
  EXPECT_EQ(got.back(), 15);
  EXPECT_TRUE(output.empty());  // loopback output never leaves the chip
}

TEST_F(UartTest, TransmitCallsTheSink) {
  for (char c : std::string("hi\n")) outb(TX, uint8_t(c));
  EXPECT_EQ(output, "hi\n");
  EXPECT_EQ(inb(LSR) & 0x60, 0x60);
}

TEST_F(UartTest, ThreInterruptReassertsAsLinuxStartupExpects) {
  outb(MCR, 0x0B);  // DTR | RTS | OUT2
  outb(FCR, 0x01);
  // serial8250_do_startup THRE test.
  outb(IER, 0x02);
  const uint8_t iir1 = inb(IIR);
  outb(IER, 0);
  outb(IER, 0x02);
  const uint8_t iir = inb(IIR);
  outb(IER, 0);
  EXPECT_EQ(iir1, 0xC2);
  EXPECT_EQ(iir, 0xC2);
  // Reading IIR cleared it; a THR write makes it pending again.
  outb(IER, 0x02);
  EXPECT_TRUE(irq.level);
  EXPECT_EQ(inb(IIR), 0xC2);
  EXPECT_FALSE(irq.level);
  EXPECT_EQ(inb(IIR), 0xC1);
  outb(TX, 'x');
  EXPECT_TRUE(irq.level);
  EXPECT_EQ(inb(IIR), 0xC2);
}

TEST_F(UartTest, InterruptLineNeedsOut2) {
  outb(IER, 0x02);
  EXPECT_EQ(inb(IIR), 0x02);  // pending, FIFOs off
  outb(IER, 0);
  outb(IER, 0x02);
  EXPECT_FALSE(irq.level);  // OUT2 clear: the ISA IRQ driver is off
  outb(MCR, 0x08);
  EXPECT_TRUE(irq.level);
}

TEST_F(UartTest, ReceivedDataInterruptAndTriggerLevels) {
  outb(MCR, 0x08);
  outb(FCR, 0x01);  // FIFO, trigger 1
  outb(IER, 0x01);
  EXPECT_FALSE(irq.level);
  receive("abc");
  EXPECT_TRUE(irq.level);
  EXPECT_EQ(inb(LSR) & 0x01, 0x01);
  EXPECT_EQ(inb(IIR), 0xC4);
  EXPECT_EQ(inb(RX), 'a');
  EXPECT_EQ(inb(RX), 'b');
  EXPECT_EQ(inb(RX), 'c');
  EXPECT_EQ(inb(LSR) & 0x01, 0x00);
  EXPECT_EQ(inb(IIR), 0xC1);
  EXPECT_FALSE(irq.level);
  // Trigger 8 with 3 bytes: character timeout instead.
  outb(FCR, 0x81);
  receive("xyz");
  EXPECT_EQ(inb(IIR), 0xCC);
  receive("12345");
  EXPECT_EQ(inb(IIR), 0xC4);
}

TEST_F(UartTest, InputBeyondTheFifoWaitsInTheQueue) {
  outb(FCR, 0x01);
  std::string in(40, '\0');
  for (size_t i = 0; i < in.size(); ++i) in[i] = char('A' + i % 26);
  receive(in);
  EXPECT_EQ(uart.pending_input(), 40u);
  std::string got;
  while (inb(LSR) & 0x01) got.push_back(char(inb(RX)));
  EXPECT_EQ(got, in);  // never overrun by host input
  EXPECT_EQ(inb(LSR) & 0x02, 0);
}

TEST_F(UartTest, InputQueueIsBounded) {
  std::string big(Uart16550::kInputLimit + 100, 'z');
  receive(big);
  EXPECT_EQ(uart.input_dropped(), 100u);
  EXPECT_EQ(uart.pending_input(), Uart16550::kInputLimit);
}

TEST_F(UartTest, IirPrioritiesLineStatusThenDataThenThre) {
  outb(FCR, 0x01);
  outb(MCR, 0x18);  // loopback, OUT2
  for (int i = 0; i < 17; ++i) outb(TX, uint8_t(i));  // the 17th overruns
  outb(IER, 0x07);  // line status, data, THRE (entering loopback also made MSR deltas)
  EXPECT_EQ(inb(IIR), 0xC6);  // receiver line status
  EXPECT_EQ(inb(LSR), 0x63);  // OE | DR | THRE | TEMT, OE cleared by the read
  EXPECT_EQ(inb(IIR), 0xC4);  // received data
  while (inb(LSR) & 0x01) (void)inb(RX);
  EXPECT_EQ(inb(IIR), 0xC2);  // THR empty
  EXPECT_EQ(inb(IIR), 0xC1);
}

TEST_F(UartTest, ModemStatusDeltasInLoopback) {
  outb(MCR, 0x10);
  EXPECT_EQ(inb(MSR), 0x0B);  // CTS, DSR, DCD fell: DCTS | DDSR | DDCD, lines clear
  EXPECT_EQ(inb(MSR), 0x00);  // deltas cleared by the read
  outb(MCR, 0x1F);
  EXPECT_EQ(inb(MSR), 0xFB);  // all four lines, DCTS | DDSR | DDCD
  outb(MCR, 0x1B);            // RI (OUT1) falls: TERI
  EXPECT_EQ(inb(MSR), 0xB4);
  outb(IER, 0x08);
  outb(MCR, 0x19);
  EXPECT_EQ(inb(IIR), 0x00);  // modem status interrupt
}

TEST_F(UartTest, FifoResetDiscardsReceivedBytes) {
  outb(FCR, 0x01);
  receive("abc");
  outb(FCR, 0x03);
  EXPECT_EQ(inb(LSR) & 0x01, 0);
}

TEST_F(UartTest, WideAccessesAreSplitAndCounted) {
  const uint8_t w[2] = {0x03, 0x0B};  // LCR = 0x03, MCR = 0x0B
  bus.write(LCR, w);
  EXPECT_EQ(inb(LCR), 0x03);
  EXPECT_EQ(inb(MCR), 0x0B);
  EXPECT_EQ(uart.bad_accesses(), 1u);
  uint8_t d[4];
  bus.read(SCR, d);
  EXPECT_EQ(d[1], 0xFF);
  EXPECT_EQ(uart.bad_accesses(), 5u);
}

}  // namespace
}  // namespace twoostwo::vmcore
