#include "nic/rtl8029.h"

namespace twoostwo::nic {
namespace {

constexpr unsigned kCommand = 0x04, kBar0 = 0x10, kSubsystemVendor = 0x2C, kSubsystemId = 0x2E,
                   kInterruptLine = 0x3C;
constexpr uint32_t kCommandIo = 0x0001;

}  // namespace

Rtl8029::Rtl8029(const MacAddress& mac, bus::IrqLine& irq, NetBackend& backend, bus::IoBus& io)
    : bus::PciFunction(kVendorId, kDeviceId, kClassCode, /*revision=*/0, /*interrupt_pin=*/1),
      core_(Dp8390Variant::kRtl8029, mac, irq, backend),
      io_(io) {
  set_config(kSubsystemVendor, 2, kVendorId);
  set_config(kSubsystemId, 2, kDeviceId);
  // Cannot fail: index 0 and a power-of-two size within 4-256.
  [[maybe_unused]] const auto bar = add_io_bar(0, kPorts);
}

Rtl8029::~Rtl8029() {
  if (registered_base_ != 0) (void)io_.remove(static_cast<uint16_t>(registered_base_));
}

void Rtl8029::set_interrupt_line(uint8_t irq) { set_config(kInterruptLine, 1, irq); }

void Rtl8029::assign_io_base(uint16_t base) {
  if (base == 0) return;
  config_write(kBar0, 4, base);
  config_write(kCommand, 2, command() | kCommandIo);
}

void Rtl8029::read(uint64_t offset, std::span<uint8_t> data) { core_.read(offset, data); }

void Rtl8029::write(uint64_t offset, std::span<const uint8_t> data) { core_.write(offset, data); }

std::string_view Rtl8029::name() const { return "rtl8029"; }

void Rtl8029::on_bar_moved(unsigned index, uint32_t /*old_base*/, uint32_t new_base) {
  if (index != 0) return;
  const uint32_t before = registered_base_;
  // Remove what this card holds (not `old_base`: after a failed add the card
  // holds nothing there, and another device may own that base).
  if (registered_base_ != 0) {
    (void)io_.remove(static_cast<uint16_t>(registered_base_));
    registered_base_ = 0;
  }
  if (new_base != 0) {
    if (io_.add(static_cast<uint16_t>(new_base), kPorts, *this)) {
      registered_base_ = new_base;
    } else {
      core_.count_bad_access();  // overlap: the card stays undecoded
    }
  }
  if (registered_base_ != before && io_base_changed_) io_base_changed_(registered_base_);
}

}  // namespace twoostwo::nic
