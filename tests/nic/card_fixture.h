// A card on an IoBus with a Linux-like driver, for tests that run against
// both the ISA NE2000 (word-mode block I/O, as ne.c) and the RTL8029 (32-bit
// block I/O, as ne2k-pci).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>

#include "nic/dp8390.h"
#include "nic/ne2000_isa.h"
#include "nic/rtl8029.h"
#include "tests/nic/nic_test_support.h"
#include "vmcore/bus/io_bus.h"

namespace twoostwo::nic::test {

enum class Card { kNe2000Isa, kRtl8029 };

inline std::string card_name(const ::testing::TestParamInfo<Card>& info) {
  return info.param == Card::kNe2000Isa ? "Ne2000Isa" : "Rtl8029";
}

inline constexpr MacAddress kMac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
inline constexpr MacAddress kBroadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

class CardTest : public ::testing::TestWithParam<Card> {
 protected:
  static constexpr uint16_t kIsaBase = Ne2000Isa::kDefaultIoBase;
  static constexpr uint16_t kPciBase = 0xC000;

  CardTest() {
    if (GetParam() == Card::kNe2000Isa) {
      isa_ = std::make_unique<Ne2000Isa>(kMac, irq_, backend_);
      EXPECT_TRUE(io_.add(kIsaBase, Ne2000Isa::kPorts, *isa_));
      base_ = kIsaBase;
      core_ = &isa_->core();
    } else {
      pci_ = std::make_unique<Rtl8029>(kMac, irq_, backend_, io_);
      pci_->assign_io_base(kPciBase);
      base_ = kPciBase;
      core_ = &pci_->core();
    }
    drv_.emplace(io_, base_, GetParam() == Card::kRtl8029);
  }

  LinuxDriver& drv() { return *drv_; }
  Dp8390& core() { return *core_; }
  const Dp8390Counters& counters() { return core_->counters(); }

  /// ei_open after the probe: reset, then NS8390_init(dev, 1).
  void open(uint8_t rxcr = E8390_RXCONFIG, std::array<uint8_t, 8> mcfilter = {},
            const MacAddress& mac = kMac) {
    ASSERT_TRUE(drv().reset_8390());
    drv().ns8390_init(mac, true, rxcr, mcfilter);
  }

  bool deliver(const std::vector<uint8_t>& frame) { return core().receive(as_bytes(frame)); }

  uint8_t isr() { return drv().in(EN0_ISR); }

  bus::IoBus io_;  // first: the cards remove themselves from it when destroyed
  FakeIrq irq_;
  FakeBackend backend_;
  std::unique_ptr<Ne2000Isa> isa_;
  std::unique_ptr<Rtl8029> pci_;
  uint16_t base_ = 0;
  Dp8390* core_ = nullptr;
  std::optional<LinuxDriver> drv_;
};

}  // namespace twoostwo::nic::test
