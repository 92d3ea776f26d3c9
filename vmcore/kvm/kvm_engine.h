// The KVM CPU engine (DESIGN.md, "Two CPU engines, one machine"): guest code
// runs on VT-x/AMD-V through /dev/kvm; every device stays in user space.
//
// - No in-kernel irqchip and no in-kernel PIT: external interrupts come from
//   the Monitor's InterruptController (our 8259A model) and are injected with
//   KVM_INTERRUPT when the guest can take them, so both engines share every
//   device model.
// - Port I/O and MMIO exits are dispatched to MachineBindings::io / ::mmio
//   under the Monitor's device lock. String I/O (`rep ins/outs`) arrives as
//   one exit with a count of elements, all of which are dispatched.
// - Coalesced PIO (KVM_CAP_COALESCED_PIO) lets a data port's writes land in a
//   ring shared with the kernel instead of exiting (facts §8); the ring is
//   drained, in order, after every return from KVM_RUN, i.e. before any exit
//   is handled and before run() returns.
//
// Signals: kick() interrupts KVM_RUN with SIGUSR1. The engine installs a
// no-op SIGUSR1 handler (without SA_RESTART) for the whole process when it
// is created, and unblocks SIGUSR1 on the thread that calls run(). Nothing
// else in the process may use SIGUSR1; it need not be blocked elsewhere.
//
// This header does not include <linux/kvm.h>; only vmcore/kvm/*.cpp do.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vmcore/cpu_engine.h"

struct kvm_run;  // <linux/kvm.h>

namespace twoostwo::vmcore {

struct KvmOptions {
  /// The KVM device node.
  std::string device = "/dev/kvm";
  /// Hide XSAVE, OSXSAVE and AVX from the guest (CPUID leaf 1 ECX bits 26–28),
  /// so it never uses XSAVE/XRSTOR. Meant for the nested kvm_pvm hypervisor,
  /// which fails on XRSTOR -- but measured there, its KVM_SET_CPUID2 puts
  /// XSAVE and AVX back (see `cpuid`), so this only helps on hosts that
  /// store the table as given.
  bool minimal_cpuid = false;
};

/// Exit and delivery counters of one KvmEngine (for tests, benchmarks and
/// fault reports). Counted on the vCPU thread; read them when it is idle.
struct KvmExitCounters {
  uint64_t runs = 0;               // KVM_RUN calls that entered (or tried to)
  uint64_t io_exits = 0;           // KVM_EXIT_IO
  uint64_t io_elements = 0;        // port accesses dispatched from those exits
  uint64_t mmio_exits = 0;         // KVM_EXIT_MMIO
  uint64_t hlt_exits = 0;          // KVM_EXIT_HLT
  uint64_t irq_window_exits = 0;   // KVM_EXIT_IRQ_WINDOW_OPEN
  uint64_t interrupted = 0;        // KVM_EXIT_INTR or EINTR (kick, other signal)
  uint64_t injected = 0;           // KVM_INTERRUPT calls
  uint64_t coalesced_writes = 0;   // ring entries drained (PIO and MMIO)
};

/// One CPUID leaf (EAX, EBX, ECX, EDX).
struct CpuidLeaf {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

/// One VM with one vCPU on /dev/kvm. Create it with `create`; then load the
/// entry state with `set_state` and call `run` on one thread (the vCPU
/// thread) in a loop; `kick` may be called from any thread.
///
/// Guest-physical layout it claims besides RAM: the VMX real-mode TSS at
/// 0xfffbd000 (3 pages) and the EPT identity-map page at 0xfffbc000
/// (api.rst, KVM_SET_TSS_ADDR / KVM_SET_IDENTITY_MAP_ADDR). RAM must end
/// below 0xfffbc000; ROMs may not cover [0xfffbc000, 0xfffc0000).
class KvmEngine final : public CpuEngine {
 public:
  static constexpr uint64_t kTssAddress = 0xfffbd000;
  static constexpr uint64_t kIdentityMapAddress = 0xfffbc000;

  /// Open the device and build the VM (facts §2, without steps 2 and 3):
  /// KVM_CREATE_VM; KVM_SET_TSS_ADDR and KVM_SET_IDENTITY_MAP_ADDR; guest RAM
  /// `bindings.memory` as memory slot 0 at guest-physical 0 (its host mapping
  /// must be page-aligned, its size a non-zero multiple of 4 KiB, and it
  /// must outlive the engine); one vCPU with the kvm_run area mapped;
  /// CPUID from KVM_GET_SUPPORTED_CPUID edited as kvm::adjust_cpuid says;
  /// SYSENTER/SYSCALL MSRs and TSC = 0, MISC_ENABLE = fast strings,
  /// MTRRdefType = 0x806 (MTRRs on, default write-back), APIC_BASE =
  /// 0xFEE00100 (BSP, global enable off: there is no local APIC, and KVM
  /// derives CPUID.1:EDX.APIC from that enable bit); FPU FCW 0x37F,
  /// MXCSR 0x1F80.
  /// The vCPU starts in the architectural reset state (CpuState::reset()).
  ///
  /// Errors name the device or the ioctl: "/dev/kvm: no such device node
  /// (...)", "/dev/kvm: permission denied (...)", "/dev/kvm: KVM API version
  /// 11, expected 12", "KVM_CREATE_VM: ...", and bad RAM shapes.
  static Result<std::unique_ptr<KvmEngine>> create(MachineBindings bindings, const KvmOptions& options = {});

  /// Open the device and check the API version only (what tests use to
  /// decide whether to skip). Same error texts as `create`.
  static Result<void> probe(const KvmOptions& options = {});

  /// Guest speed for `--cpu-engine=auto`: builds a throwaway VM (1 MiB of
  /// RAM, separate from any real one), times a real-mode `loop $` ending in
  /// HLT with a short and a long count, and returns the wall-clock
  /// nanoseconds per guest instruction from the difference (so VM entry
  /// costs cancel; the fastest of several runs of each count is used, since
  /// host noise only adds time): 2 × 500/5500 iterations, and if that says
  /// under 50 ns, 5 × 1000/41000 for precision. Native VT-x/AMD-V:
  /// a few ns. The nested kvm_pvm of the project's machines: 0.6–2.2 µs
  /// (measured; varies with host load), the self-test then taking ~25–60 ms.
  /// Prints nothing. Errors: as `create`, or the loop did not end in HLT.
  static Result<double> self_test_speed(const KvmOptions& options = {});

  ~KvmEngine() override;
  KvmEngine(const KvmEngine&) = delete;
  KvmEngine& operator=(const KvmEngine&) = delete;

  std::string_view name() const override { return "kvm"; }

  /// KVM_SET_REGS + KVM_SET_SREGS (segments with their caches, GDTR/IDTR,
  /// CR0/2/3/4, EFER; no pending interrupt). Completes an unfinished I/O exit
  /// first and leaves the halted state. Call on the vCPU thread, or while no
  /// thread is in run().
  Result<void> set_state(const CpuState& state) override;

  /// KVM_GET_REGS + KVM_GET_SREGS, after completing an unfinished I/O exit
  /// (api.rst: guest state is consistent only after re-entering KVM_RUN).
  /// Same threading rule as set_state.
  Result<CpuState> state() override;

  /// Run the vCPU until an event (see CpuEngine::run):
  /// - kHalt: the guest executed HLT and no interrupt it can take is pending.
  ///   The vCPU stays halted: later calls return kHalt at once until the
  ///   InterruptController has an interrupt pending and the guest has IF=1
  ///   (then it is injected and the guest resumes after its HLT), or until
  ///   set_state. `detail` says "interrupts disabled" for CLI;HLT.
  /// - kKicked: kick() was called before or during this call.
  /// - kTripleFault: KVM_EXIT_SHUTDOWN; kFault: KVM_EXIT_FAIL_ENTRY,
  ///   KVM_EXIT_INTERNAL_ERROR (with suberror and data), unexpected exits or
  ///   ioctl failures, with `detail` text. kShutdown is never returned: a
  ///   device that wants power-off tells the Monitor, which kicks.
  RunResult run() override;

  /// Thread-safe; safe to call from a signal handler. Sets a flag checked
  /// before every KVM_RUN, sets kvm_run.immediate_exit, and sends SIGUSR1 to
  /// the vCPU thread if it is inside run(), so a KVM_RUN in progress
  /// returns with EINTR. The current or next run() returns kKicked.
  void kick() override;

  /// Map `bytes` read-only at guest-physical `gpa` (KVM_MEM_READONLY slot),
  /// e.g. firmware ending at 4 GiB. The bytes are copied into a private
  /// page-aligned mapping; the size is rounded up to 4 KiB with 0xFF.
  /// Guest writes to the range exit as MMIO writes (to bindings.mmio).
  /// Errors: `gpa` not 4 KiB-aligned, empty, overlapping RAM, another ROM or
  /// the TSS/identity-map pages, no KVM_CAP_READONLY_MEM, ioctl failure.
  Result<void> add_rom(uint64_t gpa, std::span<const uint8_t> bytes);

  /// True if the kernel offers KVM_CAP_COALESCED_PIO.
  bool has_coalesced_pio() const { return coalesced_pio_; }

  /// See CpuEngine::coalesce_port_writes: the zone add_coalesced_pio makes, when the kernel
  /// has KVM_CAP_COALESCED_PIO (returns true), else false without an error.
  Result<bool> coalesce_port_writes(uint16_t port, uint32_t size) override;
  /// KVM_UNREGISTER_COALESCED_MMIO (pio = 1) of that zone; nothing to do
  /// without KVM_CAP_COALESCED_PIO. Entries already in the ring are drained
  /// as usual.
  Result<void> uncoalesce_port_writes(uint16_t port, uint32_t size) override;

  /// Coalesce guest writes to ports [port, port + size): they are queued in
  /// the kernel's ring (up to ~170 entries) without a VM exit and delivered
  /// to bindings.io, in order, at the next exit. Reads still exit. Meant for
  /// a NIC data port (facts §8). Errors: no KVM_CAP_COALESCED_PIO, size 0 or
  /// beyond port 0xFFFF (CpuEngine::check_port_range), KVM_REGISTER_COALESCED_MMIO failure.
  Result<void> add_coalesced_pio(uint16_t port, uint32_t size);

  /// The vCPU's CPUID entry for (function, index) as KVM holds it
  /// (KVM_GET_CPUID2): the edited table, with the bits KVM keeps up to date
  /// at run time (APIC from APIC_BASE, OSXSAVE from CR4); this is what the
  /// guest's CPUID returns. Note: the nested kvm_pvm hypervisor's
  /// KVM_SET_CPUID2 ORs a fixed set of host bits into leaf 1 ECX/EDX
  /// (XSAVE and AVX among them), so `minimal_cpuid` cannot hide those
  /// there; real KVM stores the table as given. Errors: no such entry,
  /// ioctl failure.
  Result<CpuidLeaf> cpuid(uint32_t function, uint32_t index = 0);

  /// Counters since creation.
  const KvmExitCounters& counters() const { return counters_; }

 private:
  /// KVM_(UN)REGISTER_COALESCED_MMIO, named `request_name` in errors, of the
  /// PIO zone [port, port + size).
  Result<void> coalesced_pio_zone(unsigned long request, const char* request_name, uint16_t port, uint32_t size);
  struct Rom {
    uint64_t gpa;
    size_t size;
    void* host;
  };

  KvmEngine(MachineBindings bindings, const KvmOptions& options);
  Result<void> init();
  Result<void> setup_vcpu();
  Result<void> complete_pending_io();
  Result<void> prepare_interrupt();
  bool interrupt_deliverable();
  void drain_coalesced();
  Result<void> dispatch_io();
  Result<void> dispatch_mmio();
  RunResult exit_fault();

  MachineBindings bindings_;
  KvmOptions options_;
  int kvm_fd_ = -1;
  int vm_fd_ = -1;
  int vcpu_fd_ = -1;
  kvm_run* run_ = nullptr;
  size_t run_size_ = 0;
  void* coalesced_ring_ = nullptr;  // inside run_'s mapping, or nullptr
  bool coalesced_pio_ = false;
  bool readonly_mem_ = false;
  std::vector<Rom> roms_;
  uint32_t next_slot_ = 1;

  bool halted_ = false;
  bool io_pending_ = false;  // an I/O or MMIO exit awaits completion by KVM_RUN
  KvmExitCounters counters_;

  // kick() protocol (see kick() in kvm_engine.cpp).
  std::atomic<bool> kick_requested_{false};
  std::atomic<bool> in_run_{false};
  std::atomic<int> kickers_{0};
  std::atomic<pthread_t> vcpu_thread_{};
  pthread_t unblocked_thread_{};
  bool have_unblocked_thread_ = false;
};

}  // namespace twoostwo::vmcore
