// The interface both CPU engines implement (DESIGN.md, "Two CPU engines").
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "vmcore/bus/error.h"
#include "vmcore/bus/guest_memory.h"
#include "vmcore/bus/io_bus.h"
#include "vmcore/clock.h"
#include "vmcore/cpu_state.h"
#include "vmcore/interrupts.h"

namespace twoostwo::vmcore {

/// What an engine may touch: guest RAM, the two buses, the interrupt
/// controller and the clock. The Monitor owns all of them.
struct MachineBindings {
  bus::GuestMemory memory;
  bus::IoBus* io = nullptr;
  bus::MmioBus* mmio = nullptr;
  InterruptController* pic = nullptr;
  Clock* clock = nullptr;
  /// Lock/unlock around every device access from the engine's thread (the
  /// Monitor's device mutex); may be empty in single-threaded tests.
  std::function<void()> lock_devices;
  std::function<void()> unlock_devices;
};

/// Why `CpuEngine::run` returned.
enum class StopReason {
  kHalt,           // HLT with interrupts enabled: wait for an interrupt
  kKicked,         // `kick()` was called (timer due, IRQ raised, stop request)
  kShutdown,       // guest asked to power off / reset (i8042 0xFE, port 0x92 bit 0, ...)
  kTripleFault,    // the CPU shut down (triple fault); a fault report follows
  kFault,          // the engine cannot continue (unhandled exit, internal error)
};

struct RunResult {
  StopReason reason = StopReason::kKicked;
  std::string detail;  // human-readable detail for kFault / kTripleFault
};

class CpuEngine {
 public:
  virtual ~CpuEngine() = default;

  /// "kvm" or "emulator".
  virtual std::string_view name() const = 0;

  /// Load the complete register state (boot entry state, reset state).
  virtual Result<void> set_state(const CpuState& state) = 0;

  /// Read the complete register state back (for fault reports and tests).
  virtual Result<CpuState> state() = 0;

  /// Run guest code on the calling thread until an event. Port and MMIO
  /// accesses are dispatched to the buses inside run(); pending external
  /// interrupts are taken from the InterruptController when the guest can
  /// accept them. Returns on HLT, kick(), shutdown or fault.
  virtual RunResult run() = 0;

  /// Make a current or the next run() return kKicked soon. Thread-safe
  /// and async-signal-safe in effect; may be called from any thread.
  virtual void kick() = 0;

  /// Instructions retired so far, if the engine counts them (emulator), else 0.
  virtual uint64_t instructions_retired() const { return 0; }

  /// Let guest writes to ports [port, port + size) wait in a buffer instead
  /// of being handled one at a time -- under KVM a coalesced PIO zone
  /// (api.rst KVM_REGISTER_COALESCED_MMIO with pio = 1), so a `rep outsl` to
  /// a data port does not exit once per dword. Buffered writes reach
  /// MachineBindings::io in the order the guest made them, before the engine
  /// handles any other port or MMIO access, injects an interrupt or returns
  /// from run(). Reads are never buffered. Only for ports whose writes have
  /// no effect the guest can notice before its next access to the device.
  /// Returns true if the engine now buffers those writes, false if it hands
  /// every write over at once anyway: the emulator (it has no exits to
  /// save; this default) or KVM without KVM_CAP_COALESCED_PIO.
  /// Errors: an empty range or one past port 0xFFFF; the engine refused it.
  virtual Result<bool> coalesce_port_writes(uint16_t port, uint32_t size) {
    if (auto r = check_port_range(port, size); !r) return std::unexpected(r.error());
    return false;
  }
  /// Stop buffering a range that coalesce_port_writes accepted (the same
  /// port and size), e.g. because the device moved. Writes still buffered
  /// are delivered as usual. Errors: as coalesce_port_writes.
  virtual Result<void> uncoalesce_port_writes(uint16_t port, uint32_t size) { return check_port_range(port, size); }

 protected:
  static Result<void> check_port_range(uint16_t port, uint32_t size) {
    if (size == 0 || uint32_t{port} + size > 0x10000) {
      return fail(fmt::format("port range [{:#x}, +{}) is empty or goes past port 0xffff", port, size));
    }
    return {};
  }
};

}  // namespace twoostwo::vmcore
