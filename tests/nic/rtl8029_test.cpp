// The RTL8029AS PCI function: configuration space, BAR0 sizing and moves
// (re-registration on the IoBus), Realtek's ID bytes and page 3.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string_view>

#include "nic/ne2000_isa.h"
#include "nic/rtl8029.h"
#include "tests/nic/card_fixture.h"
#include "tests/nic/nic_test_support.h"
#include "vmcore/bus/io_bus.h"

namespace twoostwo::nic::test {
namespace {

class Rtl8029Test : public ::testing::Test {
 protected:
  uint8_t inb(uint16_t port) { return PortIo(io_).inb(port); }
  void outb(uint8_t v, uint16_t port) { PortIo(io_).outb(v, port); }

  bus::IoBus io_;
  FakeIrq irq_;
  FakeBackend backend_;
  Rtl8029 card_{kMac, irq_, backend_, io_};
};

/// Another device, to collide with.
class Dummy final : public bus::IoDevice {
 public:
  void read(uint64_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), 0x5A); }
  void write(uint64_t, std::span<const uint8_t>) override {}
  std::string_view name() const override { return "dummy"; }
};

TEST_F(Rtl8029Test, PciIdentity) {
  EXPECT_EQ(card_.config_read(0x00, 2), 0x10ECu);
  EXPECT_EQ(card_.config_read(0x02, 2), 0x8029u);
  EXPECT_EQ(card_.config_read(0x08, 1), 0x00u);      // revision
  EXPECT_EQ(card_.config_read(0x09, 3), 0x020000u);  // Ethernet controller
  EXPECT_EQ(card_.config_read(0x0E, 1), 0x00u);      // header type 0
  EXPECT_EQ(card_.config_read(0x2C, 2), 0x10ECu);    // subsystem vendor
  EXPECT_EQ(card_.config_read(0x2E, 2), 0x8029u);    // subsystem
  EXPECT_EQ(card_.config_read(0x3D, 1), 1u);         // INTA#
  EXPECT_EQ(card_.config_read(0x10, 4), 0x00000001u);  // BAR0: I/O, unassigned
  EXPECT_EQ(card_.config_read(0x14, 4), 0u);           // no BAR1
  EXPECT_EQ(card_.command() & 1, 0);
  EXPECT_EQ(card_.name(), "rtl8029");
  EXPECT_EQ(pci_ids(card_), "10ec:8029");
}

TEST_F(Rtl8029Test, Bar0SizesAs32Ports) {
  card_.config_write(0x10, 4, 0xFFFFFFFF);
  EXPECT_EQ(card_.config_read(0x10, 4), 0xFFFFFFE1u);
  card_.config_write(0x10, 4, 0);
  EXPECT_EQ(card_.config_read(0x10, 4), 0x00000001u);
  EXPECT_EQ(card_.io_bar_base(0), 0u);
  std::array<uint8_t, 1> byte{};
  EXPECT_FALSE(io_.read(0xFFE0, byte));  // sizing decoded nothing
}

TEST_F(Rtl8029Test, AssignIoBaseDecodesTheCard) {
  EXPECT_EQ(inb(0xC000), 0xFF);  // nothing there yet
  card_.assign_io_base(0xC000);
  EXPECT_EQ(card_.io_bar_base(0), 0xC000u);
  EXPECT_EQ(card_.config_read(0x10, 4), 0xC001u);
  EXPECT_EQ(card_.command() & 1, 1);
  EXPECT_EQ(inb(0xC000), 0x21);  // CR
  EXPECT_EQ(inb(0xC000 + 0x1f), 0x00);  // the reset port is ours too
  EXPECT_EQ(inb(0xC020), 0xFF);  // 32 ports, no more
  card_.assign_io_base(0);       // "leave it for the OS": nothing changes
  EXPECT_EQ(card_.io_bar_base(0), 0xC000u);
}

TEST_F(Rtl8029Test, GuestMovingBar0ReRegistersOnTheBus) {
  card_.assign_io_base(0xC000);
  // Linux-style: disable decode, size, program the new base, enable.
  card_.config_write(0x04, 2, 0);
  EXPECT_EQ(inb(0xC000), 0xFF);
  card_.config_write(0x10, 4, 0xFFFFFFFF);
  card_.config_write(0x10, 4, 0xD040);
  card_.config_write(0x04, 2, 1);
  EXPECT_EQ(card_.io_bar_base(0), 0xD040u);
  EXPECT_EQ(inb(0xD040), 0x21);
  EXPECT_EQ(inb(0xC000), 0xFF);
  // Moved while decoding: the old range is released at once.
  card_.config_write(0x10, 4, 0xE000);
  EXPECT_EQ(inb(0xE000), 0x21);
  EXPECT_EQ(inb(0xD040), 0xFF);
  EXPECT_EQ(card_.core().counters().bad_accesses, 0u);
}

TEST_F(Rtl8029Test, OverlappingBarIsCountedAndNeverRemovesTheOtherDevice) {
  Dummy dummy;
  ASSERT_TRUE(io_.add(0xD000, 0x20, dummy));
  card_.assign_io_base(0xC000);
  card_.config_write(0x10, 4, 0xD000);  // onto the dummy
  EXPECT_EQ(card_.core().counters().bad_accesses, 1u);
  EXPECT_EQ(inb(0xD000), 0x5A);  // still the dummy's
  EXPECT_EQ(inb(0xC000), 0xFF);  // the card is undecoded
  EXPECT_EQ(card_.io_bar_base(0), 0xD000u);  // what the BAR says...
  EXPECT_EQ(card_.decoded_io_base(), 0u);    // ...and where the card really is
  card_.config_write(0x10, 4, 0xD100);  // off again: the dummy must stay
  EXPECT_EQ(inb(0xD000), 0x5A);
  EXPECT_EQ(inb(0xD100), 0x21);
  EXPECT_EQ(card_.decoded_io_base(), 0xD100u);
  EXPECT_EQ(card_.core().counters().bad_accesses, 1u);
  EXPECT_TRUE(io_.remove(0xD000));
}

TEST_F(Rtl8029Test, DestructionReleasesThePorts) {
  bus::IoBus io;
  {
    Rtl8029 card(kMac, irq_, backend_, io);
    card.assign_io_base(0xC100);
    EXPECT_EQ(PortIo(io).inb(0xC100), 0x21);
  }
  EXPECT_EQ(PortIo(io).inb(0xC100), 0xFF);
  Dummy dummy;
  EXPECT_TRUE(io.add(0xC100, 0x20, dummy));
}

TEST_F(Rtl8029Test, InterruptLineIsReported) {
  card_.set_interrupt_line(11);
  EXPECT_EQ(card_.interrupt_line(), 11);
  EXPECT_EQ(card_.config_read(0x3C, 1), 11u);
  EXPECT_EQ(card_.config_read(0x3D, 1), 1u);
}

TEST_F(Rtl8029Test, IdBytesOnPage0) {
  card_.assign_io_base(0xC000);
  EXPECT_EQ(inb(0xC000 + 0x0a), 0x50);  // 'P'
  EXPECT_EQ(inb(0xC000 + 0x0b), 0x43);  // 'C'
}

TEST(Ne2000IsaTest, NoRealtekRegisters) {
  bus::IoBus io;
  FakeIrq irq;
  FakeBackend backend;
  Ne2000Isa card(kMac, irq, backend);
  ASSERT_TRUE(io.add(Ne2000Isa::kDefaultIoBase, Ne2000Isa::kPorts, card));
  PortIo p(io);
  EXPECT_EQ(card.name(), "ne2000 isa");
  EXPECT_EQ(Ne2000Isa::kDefaultIrq, 9u);
  EXPECT_EQ(p.inb(0x300 + 0x0a), 0xFF);
  EXPECT_EQ(p.inb(0x300 + 0x0b), 0xFF);
  p.outb(E8390_NODMA + E8390_PAGE3 + E8390_STOP, 0x300);
  for (uint16_t reg = 1; reg < 16; ++reg) EXPECT_EQ(p.inb(0x300 + reg), 0xFF) << reg;
  p.outb(0xC0, 0x301);
  p.outb(0x00, 0x306);
  EXPECT_EQ(p.inb(0x306), 0xFF);
  EXPECT_EQ(card.core().counters().bad_accesses, 0u);
}

TEST_F(Rtl8029Test, Page3ConfigRegisters) {
  card_.assign_io_base(0xC000);
  outb(E8390_NODMA + E8390_PAGE3 + E8390_STOP, 0xC000);
  EXPECT_EQ(inb(0xC000), 0xE1);
  EXPECT_EQ(inb(0xC001), 0x00);  // 9346CR: normal mode
  EXPECT_EQ(inb(0xC003), 0x00);  // CONFIG0
  EXPECT_EQ(inb(0xC005), 0x40);  // CONFIG2: 10BaseT
  EXPECT_EQ(inb(0xC006), 0x40);  // CONFIG3: full duplex
  EXPECT_EQ(inb(0xC00e), 0x29);  // 8029ASID0
  EXPECT_EQ(inb(0xC00f), 0x80);  // 8029ASID1
  // CONFIG3 ignores writes unless 9346CR enables them.
  outb(0x00, 0xC006);
  EXPECT_EQ(inb(0xC006), 0x40);
  outb(0xC0, 0xC001);
  EXPECT_EQ(inb(0xC001), 0xC0);
  outb(0x00, 0xC006);
  EXPECT_EQ(inb(0xC006), 0x00);
  outb(0x00, 0xC001);
  outb(0x40, 0xC006);
  EXPECT_EQ(inb(0xC006), 0x00);
  EXPECT_EQ(card_.core().counters().bad_accesses, 0u);
}

TEST_F(Rtl8029Test, SetRealtekFdxSequence) {
  card_.assign_io_base(0xC000);
  // ne2k-pci set_realtek_fdx, verbatim in effect.
  outb(0xC0 + E8390_NODMA, 0xC000);
  outb(0xC0, 0xC001);
  outb(0x40, 0xC006);
  outb(0x00, 0xC001);
  outb(E8390_NODMA + E8390_PAGE0, 0xC000);
  EXPECT_EQ(inb(0xC000), 0x21);
  outb(E8390_NODMA + E8390_PAGE3, 0xC000);
  EXPECT_EQ(inb(0xC006), 0x40);
  EXPECT_EQ(inb(0xC001), 0x00);
}

TEST_F(Rtl8029Test, LinuxNe2kPciBringUpWith32BitIo) {
  card_.assign_io_base(0xC000);
  LinuxDriver drv(io_, 0xC000, /*dword=*/true);
  ASSERT_TRUE(drv.probe_8390());
  ASSERT_TRUE(drv.reset_8390());
  drv.start_prom_read(0x49);
  std::array<uint8_t, 32> sa_prom{};
  for (auto& b : sa_prom) b = drv.in(NE_DATAPORT);
  MacAddress mac{};
  std::copy_n(sa_prom.begin(), 6, mac.begin());
  EXPECT_EQ(mac, kMac);
  drv.out(0x49, EN0_DCFG);
  drv.ns8390_init(mac, false);  // NS8390_init(dev, 0) at probe
  drv.ns8390_init(mac, true);   // ei_open
  const auto out = make_frame(kBroadcast, 300, 1);
  drv.start_xmit(out);
  ASSERT_EQ(backend_.frames.size(), 1u);
  EXPECT_EQ(backend_.frames[0], out);
  const auto in = make_frame(kMac, 1000, 2);
  ASSERT_TRUE(card_.core().receive(as_bytes(in)));
  const auto frames = drv.ei_receive();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].data, in);
  EXPECT_EQ(card_.core().counters().bad_accesses, 0u);
}

}  // namespace
}  // namespace twoostwo::nic::test
