// PciHost and PciFunction through configuration mechanism #1, as Linux's
// arch/x86/pci/direct.c and drivers/pci/probe.c use it.
#include "vmcore/devices/pci_host.h"

#include <gtest/gtest.h>

#include <tuple>
#include <vector>

#include "vmcore/bus/io_bus.h"

namespace twoostwo::vmcore {
namespace {

// A stand-in for the RTL8029AS: 10ec:8029, Ethernet controller, INTA#, a
// 32-port I/O BAR 0 registered on the IoBus wherever the guest puts it.
class TestNic final : public PciFunction, public bus::IoDevice {
 public:
  explicit TestNic(bus::IoBus& io) : PciFunction(0x10EC, 0x8029, 0x020000, 0x00, 1), io_(io) {
    EXPECT_TRUE(add_io_bar(0, 32).has_value());
    EXPECT_FALSE(add_io_bar(1, 24).has_value());
    EXPECT_FALSE(add_io_bar(6, 32).has_value());
  }
  void read(uint64_t offset, std::span<uint8_t> data) override {
    for (auto& b : data) b = uint8_t(0x40 + offset);
  }
  void write(uint64_t, std::span<const uint8_t>) override {}
  std::string_view name() const override { return "test nic"; }

  std::vector<std::tuple<unsigned, uint32_t, uint32_t>> moves;

 protected:
  void on_bar_moved(unsigned index, uint32_t old_base, uint32_t new_base) override {
    moves.emplace_back(index, old_base, new_base);
    if (old_base != 0) {
      EXPECT_TRUE(io_.remove(uint16_t(old_base)).has_value());
    }
    if (new_base != 0) {
      EXPECT_TRUE(io_.add(uint16_t(new_base), 32, *this).has_value());
    }
  }

 private:
  bus::IoBus& io_;
};

class PciTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(bus.add(0xCF8, 8, pci).has_value()); }
  void outl(uint16_t port, uint32_t v) {
    uint8_t d[4];
    bus::store_le(d, v);
    bus.write(port, d);
  }
  void outw(uint16_t port, uint16_t v) {
    uint8_t d[2];
    bus::store_le(d, v);
    bus.write(port, d);
  }
  void outb(uint16_t port, uint8_t v) {
    const uint8_t d[1] = {v};
    bus.write(port, d);
  }
  uint32_t inl(uint16_t port) {
    uint8_t d[4];
    bus.read(port, d);
    return bus::load_le(d);
  }
  uint16_t inw(uint16_t port) {
    uint8_t d[2];
    bus.read(port, d);
    return uint16_t(bus::load_le(d));
  }
  uint8_t inb(uint16_t port) {
    uint8_t d[1];
    bus.read(port, d);
    return d[0];
  }
  static uint32_t address(unsigned dev, unsigned reg, unsigned fn = 0, unsigned bus_nr = 0) {
    return 0x8000'0000u | bus_nr << 16 | dev << 11 | fn << 8 | (reg & 0xFC);
  }
  // pci_conf1_read / pci_conf1_write.
  uint32_t conf_read(unsigned dev, unsigned reg, unsigned len) {
    outl(0xCF8, address(dev, reg));
    switch (len) {
      case 1: return inb(uint16_t(0xCFC + (reg & 3)));
      case 2: return inw(uint16_t(0xCFC + (reg & 2)));
      default: return inl(0xCFC);
    }
  }
  void conf_write(unsigned dev, unsigned reg, unsigned len, uint32_t v) {
    outl(0xCF8, address(dev, reg));
    switch (len) {
      case 1: outb(uint16_t(0xCFC + (reg & 3)), uint8_t(v)); break;
      case 2: outw(uint16_t(0xCFC + (reg & 2)), uint16_t(v)); break;
      default: outl(0xCFC, v); break;
    }
  }

  bus::IoBus bus;
  int resets = 0;
  PciHost pci{[this] { ++resets; }};
};

TEST_F(PciTest, LinuxCheckType1AndSanityCheck) {
  outb(0xCFB, 0x01);
  const uint32_t tmp = inl(0xCF8);
  outl(0xCF8, 0x8000'0000u);
  EXPECT_EQ(inl(0xCF8), 0x8000'0000u);
  outl(0xCF8, tmp);
  // pci_sanity_check: class word of device 0 = host bridge, vendor Intel.
  EXPECT_EQ(conf_read(0, 0x0A, 2), 0x0600u);
  EXPECT_EQ(conf_read(0, 0x00, 2), 0x8086u);
  EXPECT_EQ(pci.bad_accesses(), 0u);
}

TEST_F(PciTest, HostBridgeHeader) {
  EXPECT_EQ(conf_read(0, 0x00, 4), 0x1237'8086u);
  EXPECT_EQ(conf_read(0, 0x02, 2), 0x1237u);
  EXPECT_EQ(conf_read(0, 0x04, 4), 0x0280'0006u);  // PCISTS, PCICMD
  EXPECT_EQ(conf_read(0, 0x08, 4), 0x0600'0002u);  // class, revision 02
  EXPECT_EQ(conf_read(0, 0x0E, 1), 0x00u);         // single-function type 0 header
  conf_write(0, 0x00, 4, 0xDEAD'BEEF);             // IDs are read-only
  EXPECT_EQ(conf_read(0, 0x00, 4), 0x1237'8086u);
  conf_write(0, 0x0D, 1, 0x40);                    // latency timer is writable
  EXPECT_EQ(conf_read(0, 0x0D, 1), 0x40u);
}

TEST_F(PciTest, AbsentFunctionsReadAllOnes) {
  EXPECT_EQ(conf_read(5, 0x00, 4), 0xFFFF'FFFFu);
  EXPECT_EQ(conf_read(5, 0x00, 2), 0xFFFFu);
  outl(0xCF8, address(0, 0, 1));  // function 1 of the host bridge
  EXPECT_EQ(inl(0xCFC), 0xFFFF'FFFFu);
  outl(0xCF8, address(0, 0, 0, 1));  // bus 1
  EXPECT_EQ(inl(0xCFC), 0xFFFF'FFFFu);
  outl(0xCF8, 0x0000'0000u);  // enable bit clear
  EXPECT_EQ(inl(0xCFC), 0xFFFF'FFFFu);
  outl(0xCFC, 0);  // ignored
}

TEST_F(PciTest, AttachRejectsBadAndTakenSlots) {
  TestNic a(bus), b(bus);
  EXPECT_TRUE(pci.attach(3, a).has_value());
  auto taken = pci.attach(3, b);
  ASSERT_FALSE(taken.has_value());
  EXPECT_EQ(taken.error().message, "pci: slot 3 for 10ec:8029 is taken by 10ec:8029");
  auto zero = pci.attach(0, b);
  ASSERT_FALSE(zero.has_value());
  EXPECT_EQ(zero.error().message, "pci: slot 0 for 10ec:8029 is out of range (1-31)");
  EXPECT_FALSE(pci.attach(32, b).has_value());
  EXPECT_EQ(conf_read(3, 0x00, 4), 0x8029'10ECu);
  EXPECT_EQ(conf_read(3, 0x08, 4), 0x0200'0000u);
}

TEST_F(PciTest, IoBarSizeProbeRelocationAndDecode) {
  TestNic nic(bus);
  ASSERT_TRUE(pci.attach(1, nic).has_value());
  EXPECT_EQ(conf_read(1, 0x10, 4), 0x0000'0001u);  // I/O space indicator
  // Linux __pci_read_base: decode off, write all ones, read the size mask, restore.
  const uint32_t orig = conf_read(1, 0x10, 4);
  conf_write(1, 0x10, 4, 0xFFFF'FFFFu);
  EXPECT_EQ(conf_read(1, 0x10, 4), 0xFFFF'FFE1u);  // 32 ports
  conf_write(1, 0x10, 4, orig);
  EXPECT_TRUE(nic.moves.empty());
  // Unimplemented BARs read 0 and ignore writes.
  conf_write(1, 0x14, 4, 0xFFFF'FFFFu);
  EXPECT_EQ(conf_read(1, 0x14, 4), 0u);
  // Assign 0xC000, then enable I/O decoding.
  conf_write(1, 0x10, 4, 0xC000);
  EXPECT_EQ(conf_read(1, 0x10, 4), 0xC001u);
  EXPECT_TRUE(nic.moves.empty());
  conf_write(1, 0x04, 2, 0x0001);
  ASSERT_EQ(nic.moves.size(), 1u);
  EXPECT_EQ(nic.moves[0], std::make_tuple(0u, 0u, 0xC000u));
  EXPECT_EQ(nic.io_bar_base(0), 0xC000u);
  EXPECT_EQ(inb(0xC003), 0x43);  // reaches the device
  // Relocate while decoding.
  conf_write(1, 0x10, 4, 0xC10F);  // low bits below the size are ignored
  ASSERT_EQ(nic.moves.size(), 2u);
  EXPECT_EQ(nic.moves[1], std::make_tuple(0u, 0xC000u, 0xC100u));
  EXPECT_EQ(conf_read(1, 0x10, 4), 0xC101u);
  EXPECT_EQ(inb(0xC000), 0xFF);  // the old range is gone
  EXPECT_EQ(inb(0xC100), 0x40);
  // Disable decoding.
  conf_write(1, 0x04, 2, 0x0000);
  ASSERT_EQ(nic.moves.size(), 3u);
  EXPECT_EQ(nic.moves[2], std::make_tuple(0u, 0xC100u, 0u));
}

TEST_F(PciTest, SizeProbeWhileDecodingUnmapsAndRemaps) {
  TestNic nic(bus);
  ASSERT_TRUE(pci.attach(2, nic).has_value());
  conf_write(2, 0x10, 4, 0xD000);
  conf_write(2, 0x04, 2, 0x0001);
  conf_write(2, 0x10, 4, 0xFFFF'FFFFu);  // beyond the port space: not decoded
  conf_write(2, 0x10, 4, 0xD000);
  ASSERT_EQ(nic.moves.size(), 3u);
  EXPECT_EQ(nic.moves[1], std::make_tuple(0u, 0xD000u, 0u));
  EXPECT_EQ(nic.moves[2], std::make_tuple(0u, 0u, 0xD000u));
}

TEST_F(PciTest, InterruptLineWritablePinReadOnly) {
  TestNic nic(bus);
  ASSERT_TRUE(pci.attach(4, nic).has_value());
  EXPECT_EQ(conf_read(4, 0x3D, 1), 1u);  // INTA#
  conf_write(4, 0x3C, 1, 11);
  conf_write(4, 0x3D, 1, 3);
  EXPECT_EQ(conf_read(4, 0x3C, 2), 0x010Bu);
  EXPECT_EQ(nic.interrupt_line(), 11);
  // Command: only the defined bits stick.
  conf_write(4, 0x04, 2, 0xFFFF);
  EXPECT_EQ(conf_read(4, 0x04, 2), 0x0547u);
}

TEST_F(PciTest, ResetControlRegister) {
  outb(0xCF9, 0x02);
  EXPECT_EQ(resets, 0);
  EXPECT_EQ(inb(0xCF9), 0x02);
  outb(0xCF9, 0x06);  // reboot=pci
  EXPECT_EQ(resets, 1);
}

TEST_F(PciTest, MisalignedDataAccessIsCounted) {
  outl(0xCF8, address(0, 0));
  EXPECT_EQ(inw(0xCFF), 0xFFFFu);  // crosses the dword
  EXPECT_EQ(pci.bad_accesses(), 1u);
  EXPECT_EQ(inb(0xCF8), 0xFF);  // byte read of CONFIG_ADDRESS
  EXPECT_EQ(pci.bad_accesses(), 2u);
  EXPECT_EQ(inb(0xCFF), 0x12u);  // a byte at 0xCFF is fine: device ID high byte
}

}  // namespace
}  // namespace twoostwo::vmcore
