// The ISA NE2000 (Novell/Eagle NE2000 and its clones): a DP8390 core behind
// 32 I/O ports, 16-bit, with the station-address PROM and 32 KiB of buffer
// RAM that QEMU and Bochs give it (a real NE2000 has 16 KiB; Linux ne.c
// uses pages 0x40-0x80 either way). Linux drives it with ne.ko
// (drivers/net/ethernet/8390/ne.c: `io=0x300 irq=9`), only in 32-bit kernels.
//
// The monitor registers it on its IoBus at kDefaultIoBase (or the topology's
// choice) for kPorts ports and wires its IrqLine to the PIC input kDefaultIrq.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "nic/dp8390.h"
#include "nic/net_backend.h"
#include "vmcore/bus/io_device.h"

namespace twoostwo::nic {

class Ne2000Isa final : public bus::IoDevice {
 public:
  /// QEMU's and Linux ne.c's usual jumper settings.
  static constexpr uint16_t kDefaultIoBase = 0x300;
  static constexpr unsigned kDefaultIrq = 9;
  /// Ports the card decodes: base + 0x00 .. base + 0x1f (see nic/dp8390.h's port map).
  static constexpr uint32_t kPorts = 0x20;

  /// `mac` goes into the PROM; `irq` and `backend` must outlive the card.
  Ne2000Isa(const MacAddress& mac, bus::IrqLine& irq, NetBackend& backend);

  /// Port accesses relative to the card's base; forwarded to the DP8390 core
  /// (widths and errors as Dp8390::read/write).
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  /// "ne2000 isa".
  std::string_view name() const override;

  /// The DP8390 core: receive(), counters(), station_address().
  Dp8390& core() { return core_; }

 private:
  Dp8390 core_;
};

}  // namespace twoostwo::nic
