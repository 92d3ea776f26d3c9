#include "nic/ne2000_isa.h"

namespace twoostwo::nic {

Ne2000Isa::Ne2000Isa(const MacAddress& mac, bus::IrqLine& irq, NetBackend& backend)
    : core_(Dp8390Variant::kNe2000, mac, irq, backend) {}

void Ne2000Isa::read(uint64_t offset, std::span<uint8_t> data) { core_.read(offset, data); }

void Ne2000Isa::write(uint64_t offset, std::span<const uint8_t> data) { core_.write(offset, data); }

std::string_view Ne2000Isa::name() const { return "ne2000 isa"; }

}  // namespace twoostwo::nic
