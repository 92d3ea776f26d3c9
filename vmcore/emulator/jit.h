// The emulator's JIT (stages 1 and 2 of JIT-PLAN.md): a template compiler
// of the interpreter's own Blocks into host x86-64 code.
//
// What is compiled: cached blocks (Block::cached, no second page) decoded in
// 32-bit protected mode, once they have run `threshold` times within a
// short time (hot_code()). Each compiled block has the interpreter's boundaries
// and instruction count, so icount, interrupt delivery points and the
// virtual clock are exactly the interpreter's.
//
// Generated code (rbx = Cpu*, r12d = EIP at block entry):
// - the forms of JitForm (insn.h) inline: guest registers and lazy flags are
//   read and written in Cpu as the handlers do; memory goes through the
//   segment check (FS and GS only: see "Flat segments") and the TLB inline,
//   and any miss (TLB, segment limit, a
//   write to a code page — which never has a write tag — or MMIO) calls the
//   instruction's handler instead, after storing EIP. Inline code cannot
//   fault, so faults are precise: they are the handlers' CpuExceptions,
//   unwound through the generated frames (one registered CIE/FDE covers the
//   code buffer) into EmulatorEngine::run()'s catch.
// - every other instruction: a call of its handler on a copy of its Insn
//   in the code buffer, followed by a sentinel whose handler returns (so
//   ops.h next() returns here), with Cpu::in_jit set (so chain.h
//   end_block() returns too); then a check of Cpu::stop_block (leave for
//   the loop).
// - the block end: the checks of end_block() (slice end, kick, a pending
//   interrupt with IF; TF cannot be set, see below), then a patched direct jump to the next
//   block's code when the target is static: straight to it in the same
//   linear and physical page, else through a guard stub (code epoch and TLB
//   checked); a RET through the return-address stack (Ras) that inline
//   CALLs push; else the block's jump cache lookup, else a helper. Only
//   the checks and the linked jump are inline: the rest is out of line at
//   the block's end.
// - interpreted blocks that chain into a compiled one enter its code: the
//   Block's first handler becomes Jit::enter_compiled.
//
// Flat segments: compiled code is entered (by the loop, Jit::run, and by
// Jit::enter_compiled) only while Cpu::jit_flat() holds: DS, ES and SS have
// base 0 and every offset readable and writable, SS is 32-bit, CS has a
// 4 GiB limit. So accesses through DS/ES/SS have no segment check, and the
// exits, links and jump cache no CS limit check. Every change that can
// break this ends the block before compiled code goes on: Cpu::load_segment
// (DS/ES/SS not flat after it), any CS load (Cpu::load_cs, sysenter/sysexit),
// mode and task switches, far transfers, interrupts and IRET (back to the
// loop anyway). Likewise TF: Cpu::write_eflags (POPF) ends the block when it
// sets TF, and the loop single-steps while TF is set, so the exits need not
// test it. Linux's segments are always flat; a guest whose are not runs
// interpreted.
//
// Memory: one memfd of `cache_bytes` mapped twice (RW for the emitter and
// link patching, RX to run; a single RWX mapping if that fails), bump
// allocated. When it is full the JIT asks for a flush (wants_flush()); the
// engine then drops every block (BlockCache::flush) and, once they are
// collected, calls reset().
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>

#include "vmcore/bus/error.h"
#include "vmcore/emulator/insn.h"

namespace twoostwo::vmcore::emu {

class BlockCache;
/// A block exit toward a static target (lives in the code buffer, after
/// its block's code): link_exit() patches its jump.
struct JitExit {
  Block* from;
  uint8_t* rel32;         // RW address of the jump's displacement
  const uint8_t* nolink;  // RX address the jump takes when the target cannot be linked
  const uint8_t* helper;  // RX address of the exit's call of link_exit() (the jump's first target)
  uint32_t off;           // target EIP - EIP at block entry
  uint32_t guard;         // offset in the code buffer of its guard stub (link_exit), 0: none yet
};

/// Counters since creation.
struct JitStats {
  uint64_t blocks_compiled = 0;
  uint64_t insns_inline = 0;   // instructions compiled inline (static count)
  uint64_t insns_called = 0;   // instructions compiled as handler calls (static count)
  uint64_t code_bytes = 0;     // in use now
  uint64_t flushes = 0;        // times the code buffer was emptied
  uint64_t compile_ns = 0;     // host time spent compiling
};

/// Instructions interpreted after the CPU wakes from HLT before compiled
/// code is entered again (Cpu::jit_paused): more than an idle Debian
/// guest's timer tick (~3,600), little against a burst of work.
inline constexpr uint64_t kColdWakeInstructions = 20'000;

class Jit {
 public:
  /// Runs per one to two windows: code that runs 5,000-10,000 times a second
  /// or more (chosen by measurement: JIT-PLAN.md, "Hotness").
  static constexpr uint32_t kDefaultThreshold = 1024;
  static constexpr uint32_t kMaxThreshold = 0xFFFE;  // Block::jit_hits is 16 bits
  static constexpr size_t kDefaultCacheBytes = size_t{16} << 20;

  /// The counting window of hot_code(): a block is compiled once it has
  /// run `threshold` times within at most two windows (a rate, not a
  /// count). Every run counts: from the loop, from an interpreted block
  /// (chain.h end_block) and from a compiled block's exit. Code that runs
  /// only now and then stays interpreted, and so does code that runs once
  /// per network frame or system call: run with cold host caches, its
  /// compiled form (several times larger than its Insns) costs more than
  /// interpreting it. An idle guest's timer tick compiled cost an idle
  /// Debian guest 2.2% of a core instead of 1.4%.
  static constexpr uint64_t kWindowNs = 100'000'000;

  /// A JIT for `cpu`'s blocks (kept in `cache`). `threshold`: runs of a
  /// block within at most two windows (kWindowNs) before it is compiled (0:
  /// at its first run; at most kMaxThreshold); `cache_bytes`: size of the
  /// code buffer (at least 64 KiB). Fails if no executable memory can be
  /// mapped.
  static Result<std::unique_ptr<Jit>> create(Cpu& cpu, const BlockCache& cache, uint32_t threshold,
                                             size_t cache_bytes);
  ~Jit();
  Jit(const Jit&) = delete;
  Jit& operator=(const Jit&) = delete;

  /// The host code of `b` if it is compiled, or if this run (counted
  /// here) makes it hot and it compiles; null to interpret it.
  EMU_INLINE void* hot_code(Block* b) {
    if (b->jit_code != nullptr) return b->jit_code;
    if (++b->jit_hits < threshold_) return nullptr;
    return count_hot(b);
  }
  /// `b` (not compiled) has run `threshold` times since its count started
  /// (Block::jit_window): compiles it if the count started in this window
  /// or the one before, i.e. at a rate of at least `threshold` runs per
  /// two windows, else starts the count over in this window. Either way
  /// the count is 0 after. The code, or null.
  void* count_hot(Block* b);
  /// The current counting window (Block::jit_window of a count started now).
  uint16_t window() const { return window_; }
  /// Called as a run begins, with the host's monotonic time in ns: starts a
  /// new counting window once kWindowNs have passed since the last one began.
  void update_window(uint64_t now_ns) {
    if (now_ns - window_start_ns_ >= kWindowNs) {
      ++window_;
      window_start_ns_ = now_ns;
    }
  }
  /// Run compiled code `code` of Cpu::current_block (entered at CS:EIP, as
  /// the loop enters a block); returns when the loop is needed, with the
  /// same contract as running the block's first handler.
  void run(void* code);

  /// The code buffer is full: the engine must drop every block, collect
  /// them, and call reset().
  bool wants_flush() const { return wants_flush_; }
  /// Forget all code (no block may hold any: every block was flushed and
  /// collected).
  void reset();
  JitStats stats() const;
  /// Describe every block compiled from now on in /tmp/perf-<pid>.map (the
  /// format `perf report` reads for JIT code): one symbol per region of a
  /// block, named `jit.<region>@<linear address of the block>`, region one
  /// of entry (the bookkeeping at entry), body (the instructions), exit
  /// (the end_block() checks and the linked jump), jc (the inline jump
  /// cache), slow (out-of-line slow paths) and tail (shared exit tails).
  /// Best effort: false if the file cannot be opened.
  bool enable_perf_map();

  /// The return-address stack (JIT-PLAN.md §3 stage 2): an inline CALL
  /// pushes where its return address leads in the code; a RET's exit pops
  /// the top and, if it is its target and still valid, goes there instead
  /// of through the jump cache. A ring (overflow drops the oldest entries);
  /// emptied by reset().
  struct RasEntry {
    uint32_t ret_lin;     // linear address of the return address
    uint32_t epoch;       // Cpu::code_epoch when pushed (any invalidation since: stale)
    uint32_t phys_page;   // the physical page of ret_lin then
    uint32_t caller_lin;  // linear address of the calling block's entry
    const void* code;     // the calling block's continuation (a static exit to ret_lin)
    uint64_t reserved;
  };
  struct Ras {
    static constexpr uint32_t kEntries = 16;
    RasEntry entry[kEntries];
    uint32_t top;  // index of the top entry
  };
  Ras* ras() { return &ras_; }

  /// The handler of a compiled block's first instruction in the Block
  /// (the generated code calls its own copy of the original): an
  /// interpreted block that chains here (chain.h end_block) runs the
  /// compiled code, with the contract of the block's first handler; under
  /// single-step (Cpu::stop_block), after a wake-up (Cpu::jit_paused) and
  /// with segments that are not flat (Cpu::jit_flat) it runs the original
  /// handler.
  static void enter_compiled(Cpu& c, const Insn& i);

  // Called by generated code (see jit.cpp).
  static void* link_exit(Jit* jit, JitExit* exit);
  static void* lookup_exit(Jit* jit, Block* from);
  static bool cond(Cpu* cpu, unsigned cc);
  static uint32_t flags(Cpu* cpu);  // Cpu::flags_value()
  static uint32_t carry(Cpu* cpu);  // Cpu::carry()
  /// Where Cpu keeps the current TLB table pointer (for the inline lookup).
  static int32_t tlb_cur_offset(const Cpu& c);

 private:
  Jit(Cpu& cpu, const BlockCache& cache, uint32_t threshold);
  Result<void> map(size_t bytes);
  void* compile(Block* b);
  void* next_code(Block* from, uint32_t prev_lin, Block*& next);

  Cpu& cpu_;
  const BlockCache& cache_;
  uint16_t threshold_;  // 1 for "at the first run" (always_)
  bool always_;
  uint16_t window_ = 1;  // Block::jit_window of a block decoded now (set as it enters the cache)
  uint64_t window_start_ns_ = 0;
  int memfd_ = -1;
  uint8_t* rw_ = nullptr;   // the buffer as the emitter writes it
  uint8_t* rx_ = nullptr;   // the same memory as it runs (== rw_ without memfd)
  size_t size_ = 0;
  size_t used_ = 0;         // bytes handed out
  size_t code_start_ = 0;   // after the entry/leave stubs
  void (*enter_)(Cpu*, void*) = nullptr;
  const uint8_t* leave_ = nullptr;  // RX: returns from enter_
  bool wants_flush_ = false;
  uint8_t* eh_frame_ = nullptr;  // registered with __register_frame
  std::FILE* perf_map_ = nullptr;  // enable_perf_map()
  Ras ras_{};
  struct {
    size_t epoch_end, phys_end, target_end;
  } guard_layout_{};  // where link_exit() patches a guard stub (jit.cpp emit_guard)
  JitStats stats_;
};

}  // namespace twoostwo::vmcore::emu
