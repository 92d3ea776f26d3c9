#include "vmcore/machine.h"

#include <fmt/format.h>

#include "vmcore/devices/cmos.h"
#include "vmcore/devices/i8042.h"
#include "vmcore/devices/misc_ports.h"
#include "vmcore/devices/pci_host.h"
#include "vmcore/devices/pic.h"
#include "vmcore/devices/pit.h"
#include "vmcore/devices/uart.h"

namespace twoostwo::vmcore {

namespace {
CmosConfig cmos_config(const MachineConfig& c) {
  CmosConfig cc;
  cc.ram_bytes = c.memory.size();
  cc.start_unix_seconds = c.rtc_start_unix_seconds;
  return cc;
}
}  // namespace

struct Machine::Devices {
  explicit Devices(const MachineConfig& c)
      : pit(*c.clock, pic.line(0)),
        cmos(*c.clock, pic.line(8), cmos_config(c)),
        com1("com1", pic.line(4), c.com1_output),
        com2("com2", pic.line(3), c.com2_output),
        i8042(pic.line(1), c.on_reset),
        misc(c.on_reset),
        pci(c.on_reset) {}
  Pic8259Pair pic;
  Pit8254 pit;
  Cmos cmos;
  Uart16550 com1;
  Uart16550 com2;
  I8042 i8042;
  MiscPorts misc;
  PciHost pci;
};

Machine::~Machine() = default;

Result<std::unique_ptr<Machine>> Machine::create(MachineConfig config) {
  if (config.clock == nullptr) return fail("machine: no clock");
  std::unique_ptr<Machine> m(new Machine());
  m->devices_ = std::make_unique<Devices>(config);
  Devices& d = *m->devices_;
  d.pic.on_intr_raised = config.on_intr;

  const struct {
    uint16_t base;
    uint32_t length;
    bus::IoDevice& device;
  } ports[] = {
      {0x20, 2, d.pic.master_device()},   {0xA0, 2, d.pic.slave_device()},  {0x4D0, 2, d.pic.elcr_device()},
      {0x40, 4, d.pit},                   {0x61, 1, d.pit.port61_device()}, {0x60, 1, d.i8042.data_device()},
      {0x64, 1, d.i8042.command_device()}, {0x70, 2, d.cmos},               {0x3F8, 8, d.com1},
      {0x2F8, 8, d.com2},                 {0xCF8, 8, d.pci},                {0x80, 1, d.misc.post_device()},
      {0xED, 1, d.misc.delay_device()},   {0x92, 1, d.misc.port92_device()},
  };
  for (const auto& p : ports) {
    if (auto r = m->io_.add(p.base, p.length, p.device); !r) return std::unexpected(r.error());
  }
  return m;
}

Pic8259Pair& Machine::pic_pair() { return devices_->pic; }
InterruptController& Machine::pic() { return devices_->pic; }
Uart16550& Machine::com1() { return devices_->com1; }
Uart16550& Machine::com2() { return devices_->com2; }
PciHost& Machine::pci() { return devices_->pci; }

void Machine::advance_time(uint64_t now_ns) {
  devices_->pit.advance(now_ns);
  devices_->cmos.advance(now_ns);
}

uint64_t Machine::next_deadline_ns() const { return next_wake_ns(0); }

uint64_t Machine::next_wake_ns(uint64_t slack_ns) const {
  auto wake = [slack_ns](const TimedDevice& d) {
    const uint64_t t = d.next_deadline_ns();
    if (t == TimedDevice::kNever || !d.deadline_may_be_late()) return t;
    return t > TimedDevice::kNever - slack_ns ? TimedDevice::kNever - 1 : t + slack_ns;
  };
  return std::min(wake(devices_->pit), wake(devices_->cmos));
}

}  // namespace twoostwo::vmcore
