// The Realtek RTL8029AS: an NE2000-compatible PCI function (a DP8390 core
// with Realtek's page 3) whose 32 ports sit behind I/O BAR0. Linux drives
// it with ne2k-pci.ko (drivers/net/ethernet/8390/ne2k-pci.c), using 32-bit
// data-port accesses (insl/outsl, inl for the ring header).
//
// PCI identity (RTL8029AS datasheet, PCI configuration space; QEMU
// hw/net/ne2000-pci.c): vendor 10ec, device 8029, revision 0, class 0x020000
// (Ethernet controller), header type 0, subsystem 10ec:8029, Interrupt Pin 1
// (INTA#), BAR0 = I/O, kPorts ports. Command bit 0 gates I/O decoding.
//
// The card keeps itself registered on the IoBus that BAR0 decodes on: when
// the guest (or assign_io_base) moves, enables or disables BAR0, the card
// removes its old range and adds the new one (bus::PciFunction's
// on_bar_moved). An add that fails (the new range overlaps another device)
// leaves the card undecoded and counts a bad access in core().counters();
// it is never fatal, and the card never removes a range it does not own.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "nic/dp8390.h"
#include "nic/net_backend.h"
#include "vmcore/bus/io_bus.h"
#include "vmcore/bus/io_device.h"
#include "vmcore/bus/pci_function.h"

namespace twoostwo::nic {

class Rtl8029 final : public bus::PciFunction, public bus::IoDevice {
 public:
  static constexpr uint16_t kVendorId = 0x10EC;
  static constexpr uint16_t kDeviceId = 0x8029;
  static constexpr uint32_t kClassCode = 0x020000;
  /// BAR0 size in ports (offsets as in nic/dp8390.h's port map).
  static constexpr uint32_t kPorts = 0x20;

  /// `mac` goes into the PROM. `irq` (the line the Interrupt Line register
  /// names), `backend` and `io` (the port bus BAR0 decodes on) must outlive
  /// the card. BAR0 starts at 0 with decoding off: nothing is added to `io`
  /// until assign_io_base() or the guest enables it.
  Rtl8029(const MacAddress& mac, bus::IrqLine& irq, NetBackend& backend, bus::IoBus& io);
  /// Releases the card's range on `io`, if it holds one.
  ~Rtl8029() override;

  /// Interrupt Line (config 0x3C) as firmware would set it; Linux (noapic,
  /// no $PIR) uses it as the IRQ. The value is only reported; the monitor
  /// wires `irq` to the matching PIC input.
  void set_interrupt_line(uint8_t irq);
  /// Put BAR0 at `base` (rounded down to a multiple of kPorts) and enable I/O
  /// decoding, as firmware would. base 0 leaves BAR0 and Command untouched,
  /// for the OS to assign.
  void assign_io_base(uint16_t base);
  /// The base the card answers at on the IoBus, or 0: differs from
  /// io_bar_base(0) when adding the BAR's range failed (an overlap).
  uint32_t decoded_io_base() const { return registered_base_; }
  /// Call `callback` with the new decoded_io_base() (0: none) whenever it
  /// changes -- on the thread that wrote the configuration space (the
  /// guest's CPU thread, with the machine's device lock held). The monitor
  /// uses it to move the data port's coalesced zone (vmcore/nics.h).
  void on_io_base_changed(std::function<void(uint32_t base)> callback) { io_base_changed_ = std::move(callback); }

  /// Port accesses relative to BAR0; forwarded to the DP8390 core (widths
  /// and errors as Dp8390::read/write).
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  /// "rtl8029".
  std::string_view name() const override;

  /// The DP8390 core: receive(), counters(), station_address().
  Dp8390& core() { return core_; }

 private:
  void on_bar_moved(unsigned index, uint32_t old_base, uint32_t new_base) override;

  Dp8390 core_;
  bus::IoBus& io_;
  uint32_t registered_base_ = 0;  // the base this card holds on io_, 0 = none
  std::function<void(uint32_t)> io_base_changed_;
};

}  // namespace twoostwo::nic
