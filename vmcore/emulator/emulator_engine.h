// The built-in x86 emulator engine (DESIGN.md, "Two CPU engines, one
// machine"; issue 3): an interpreter of an i686-class CPU — real mode,
// 16/32-bit protected mode with paging (4 KiB and 4 MiB pages, no PAE), the
// i686 integer instruction set and the x87 FPU, no SSE/MMX — that runs
// guests where hardware virtualization is missing or unusable.
//
// How it runs (vmcore/emulator/):
// - Instructions are decoded once by Zydis and translated into a compact
//   form (insn.h: a handler pointer and an operand descriptor), cached in
//   blocks keyed by guest-physical address and decoding mode
//   (block_cache.h). Stores into a page with cached code drop its blocks.
// - A block runs by threaded dispatch: each handler ends by tail-calling the
//   next instruction's handler (ops.h next()); a sentinel after the last
//   instruction returns to the block loop.
// - Memory goes through segmentation and a software TLB (cpu.h, mmu.cpp);
//   guest faults are C++ exceptions caught by the block loop in run(), which
//   delivers them through the IDT/IVT (protection.cpp).
// - Port I/O and MMIO go to MachineBindings::io / ::mmio under the device
//   lock, one access at a time. External interrupts are taken from the PIC
//   between blocks when EFLAGS.IF allows (and after the STI / MOV SS
//   shadow).
// - run() returns kKicked after a slice of instructions so the Monitor can
//   advance its timers, and (host clock) soon after kick(). With the virtual
//   clock, instructions retired advance the VirtualClock, and kicks are
//   honoured only at slice ends, so a run is repeatable exactly.
//
// - Flags are lazy for ADD/SUB/CMP/AND/OR/XOR/TEST/INC/DEC/NEG/CMPS/SCAS/
//   XADD/CMPXCHG: the operands are kept and EFLAGS is computed (by alu.h)
//   only when read; Jcc/SETcc/CMOVcc test most conditions straight from the
//   operands (Cpu::cond).
// - Blocks are found through a jump cache (linear address -> block, checked
//   against the TLB) and chained to the block that followed them last time.
//
// Environment: TWOOSTWO_EMU_TRACE=exceptions,interrupts,blocks,digest[:N] prints the
// exceptions and external interrupts delivered and/or every block executed
// to stderr (slow; for debugging guests). TWOOSTWO_EMU_STATS=1 prints the
// engine's counters (EmulatorCounters) when it is destroyed.
// TWOOSTWO_EMU_JIT=off|on|always overrides EmulatorOptions::jit;
// TWOOSTWO_EMU_JIT_PERFMAP=1 describes the JIT's code in /tmp/perf-<pid>.map
// for `perf report` (Jit::enable_perf_map).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "vmcore/cpu_engine.h"

namespace twoostwo::vmcore {

/// The emulator's JIT (vmcore/emulator/jit.h): off (interpret only), on
/// (compile blocks that ran jit_threshold times within 0.1-0.2 s), always
/// (compile every block on its first run: tests).
enum class EmulatorJit : uint8_t { kOff, kOn, kAlways };

/// "off" / "on" / "always" (the values of TWOOSTWO_EMU_JIT and of
/// twoostwo-vmm --jit), else an error naming the accepted values.
Result<EmulatorJit> parse_emulator_jit(std::string_view text);

struct EmulatorOptions {
  /// run() returns kKicked after about this many instructions (0: 200,000,
  /// i.e. 1-2 ms of guest work), so that the Monitor advances its timers.
  uint64_t slice_instructions = 0;
  /// Trace to stderr (also enabled by TWOOSTWO_EMU_TRACE, see above).
  bool trace_exceptions = false;
  bool trace_interrupts = false;
  bool trace_blocks = false;
  /// Every this many calls of run() (0: never), print a digest of the CPU
  /// to stderr when run() returns: "emu: digest <run> icount <n> eip <x>
  /// hash <x>" (GPRs, EFLAGS, CR3, CS). With the virtual clock two runs of
  /// the same guest print the same digests until asynchronous input
  /// arrives, whatever the engine (interpreter or JIT): the lockstep check
  /// (scripts/emu_lockstep.sh). TWOOSTWO_EMU_TRACE=digest[:N] (N: 16).
  uint32_t trace_digest_every = 0;
  /// The JIT. The environment variable TWOOSTWO_EMU_JIT=off|on|always, if
  /// set, overrides it (tests run the whole suite with "always"). Off when
  /// tracing blocks (every block must go through the loop).
  EmulatorJit jit = EmulatorJit::kOff;
  /// kOn: runs of a block within one to two 100 ms windows before it is
  /// compiled (0: Jit::kDefaultThreshold, 1024; at most 65,534).
  uint32_t jit_threshold = 0;
  /// Code buffer per engine, in bytes (0: 16 MiB); everything compiled is
  /// dropped, with all decoded blocks, when it is full.
  uint64_t jit_cache_bytes = 0;
};

/// Counters since creation (read them while run() is not executing).
struct EmulatorCounters {
  uint64_t instructions = 0;        // retired
  uint64_t runs = 0;                // calls of run()
  uint64_t blocks_executed = 0;     // blocks run to their end or to a stop (not counting faults)
  uint64_t blocks_chained = 0;      // of those, entered straight from the block before (chain.h)
  uint64_t blocks_decoded = 0;      // blocks built by the decoder (cached or one-off)
  uint64_t blocks_cached = 0;       // currently in the cache
  uint64_t blocks_invalidated = 0;  // dropped by stores into code pages or invalidate_code()
  uint64_t exceptions = 0;          // exceptions and software interrupts delivered
  uint64_t interrupts = 0;          // external interrupts delivered
  uint64_t unimplemented = 0;       // distinct unimplemented mnemonics met (each raised #UD)
  uint64_t blocks_compiled = 0;     // by the JIT (0 with the JIT off)
  uint64_t jit_code_bytes = 0;      // code buffer in use now
  uint64_t jit_flushes = 0;         // times the code buffer was emptied
};

class EmulatorEngine final : public CpuEngine {
 public:
  /// Build the engine over `bindings` (RAM must be non-empty and below
  /// 4 GiB; io, mmio, pic and clock may be null in tests: then ports read
  /// 0xFF, no interrupt arrives, and the TSC counts instructions). The CPU
  /// starts in the architectural reset state.
  static Result<std::unique_ptr<EmulatorEngine>> create(MachineBindings bindings,
                                                        const EmulatorOptions& options = {});
  ~EmulatorEngine() override;
  EmulatorEngine(const EmulatorEngine&) = delete;
  EmulatorEngine& operator=(const EmulatorEngine&) = delete;

  std::string_view name() const override { return "emulator"; }

  /// Load registers (real or 32-bit protected mode; long mode, PAE and V86
  /// are refused with an error naming them). Drops all decoded code.
  Result<void> set_state(const CpuState& state) override;
  Result<CpuState> state() override;

  /// See CpuEngine::run. kHalt: HLT and no interrupt can be taken (detail
  /// "halted with interrupts disabled" if IF=0); later calls return kHalt
  /// at once until an interrupt is pending and IF=1. kTripleFault and kFault
  /// carry a detail naming the cause.
  RunResult run() override;

  /// Thread-safe and async-signal-safe (an atomic store).
  void kick() override;

  uint64_t instructions_retired() const override;

  /// Guest RAM [gpa, gpa + length) was changed behind the CPU's back (DMA,
  /// the loader): drop decoded code there. Thread-safe; takes effect before
  /// the next block the CPU starts.
  void invalidate_code(uint64_t gpa, uint64_t length);

  EmulatorCounters counters() const;

 private:
  struct Impl;
  explicit EmulatorEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace twoostwo::vmcore
