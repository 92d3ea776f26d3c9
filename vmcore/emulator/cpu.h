// The architectural state of the built-in x86 emulator (an i686-class CPU:
// real mode, 16/32-bit protected mode, 2-level paging with PSE and global
// pages, no PAE, no SSE) and its memory access paths: segmentation with
// descriptor caches (Intel SDM vol. 3, 3.4.3 and 5.3) and paging through a
// software TLB (SDM vol. 3, 4.3 and 4.10).
//
// Design (see also emulator_engine.h):
// - Guest faults are C++ exceptions (`CpuException`): they unwind out of the
//   instruction handler to the engine's block loop, which delivers them
//   through the IVT/IDT. The hot paths (register access, TLB hit) contain no
//   error checks beyond one compare. An instruction commits register state
//   only after its last memory access that can fault, so a fault leaves EIP
//   at the faulting instruction and the registers unchanged (restartable).
// - The TLB is direct-mapped (kTlbEntries per privilege level), one table
//   for supervisor and one for user accesses; an entry holds a read tag and a
//   write tag (the linear page address, or kNoTag) and the host address of a
//   RAM page, so a hit is one compare and one add. Pages outside RAM (MMIO)
//   never get tags, their accesses always take the slow path. A write tag is
//   installed only if the page's dirty bit is already set and the physical
//   page holds no cached code, so stores to code pages take the slow path,
//   which invalidates the decoded blocks of that page (self-modifying code).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "vmcore/cpu_engine.h"
#include "vmcore/emulator/alu.h"
#include "vmcore/emulator/fpu.h"

#define EMU_LIKELY(x) __builtin_expect(!!(x), 1)
#define EMU_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define EMU_INLINE inline __attribute__((always_inline))
#define EMU_COLD __attribute__((cold, noinline))

namespace twoostwo::vmcore::emu {

class BlockCache;
struct Block;
struct JumpEntry;

// ---------------------------------------------------------------------------
// Constants (Intel SDM vol. 3, 2.3 and 2.5; vol. 1, 3.4.3)

/// EFLAGS bits beyond the arithmetic ones of alu.h.
inline constexpr uint32_t kIoplMask = 3u << 12;
inline constexpr uint32_t kNT = 1u << 14;
inline constexpr uint32_t kRF = 1u << 16;
inline constexpr uint32_t kVM = 1u << 17;
inline constexpr uint32_t kAC = 1u << 18;
inline constexpr uint32_t kVIF = 1u << 19;
inline constexpr uint32_t kVIP = 1u << 20;
inline constexpr uint32_t kID = 1u << 21;
/// Bits an i686 lets software set (bit 1 always reads 1).
inline constexpr uint32_t kEflagsSettable = kArithFlags | kTF | kIF | kDF | kIoplMask | kNT | kRF | kVM | kAC |
                                            kVIF | kVIP | kID;
inline constexpr uint32_t kEflagsFixed = 1u << 1;

inline constexpr uint32_t kCr0Pe = 1u << 0, kCr0Mp = 1u << 1, kCr0Em = 1u << 2, kCr0Ts = 1u << 3,
                          kCr0Et = 1u << 4, kCr0Ne = 1u << 5, kCr0Wp = 1u << 16, kCr0Am = 1u << 18,
                          kCr0Nw = 1u << 29, kCr0Cd = 1u << 30, kCr0Pg = 1u << 31;
inline constexpr uint32_t kCr4Tsd = 1u << 2, kCr4De = 1u << 3, kCr4Pse = 1u << 4, kCr4Pae = 1u << 5,
                          kCr4Pge = 1u << 7, kCr4Pce = 1u << 8;
/// CR4 bits this CPU implements (the rest #GP when set).
inline constexpr uint32_t kCr4Supported = kCr4Tsd | kCr4De | kCr4Pse | kCr4Pge | kCr4Pce;

/// Exception vectors (SDM vol. 3, table 6-1).
enum Vector : uint8_t {
  kVecDE = 0, kVecDB = 1, kVecNMI = 2, kVecBP = 3, kVecOF = 4, kVecBR = 5, kVecUD = 6, kVecNM = 7,
  kVecDF = 8, kVecTS = 10, kVecNP = 11, kVecSS = 12, kVecGP = 13, kVecPF = 14, kVecMF = 16, kVecAC = 17,
};

/// Page-fault error code bits (SDM vol. 3, 4.7).
inline constexpr uint32_t kPfPresent = 1, kPfWrite = 2, kPfUser = 4, kPfReserved = 8;

/// Segment register numbers in encoding order.
enum SegReg : uint8_t { kEs = 0, kCs = 1, kSs = 2, kDs = 3, kFs = 4, kGs = 5 };
/// General-purpose register numbers in encoding order; kZeroReg is a ninth
/// register that always holds 0 (an absent base or index of an address).
enum GprIndex : uint8_t { kEax, kEcx, kEdx, kEbx, kEsp, kEbp, kEsi, kEdi, kZeroReg };

// ---------------------------------------------------------------------------
// Guest faults

/// A guest exception raised by an instruction (a fault or a trap the
/// instruction itself causes). Thrown; caught by the engine's block loop.
struct CpuException {
  uint8_t vector;
  bool has_error;
  uint32_t error;
};

/// The CPU shut down: an exception while delivering a double fault.
struct TripleFault {
  std::string detail;
};

/// The engine cannot continue (an internal inconsistency or a feature this
/// engine lacks, e.g. virtual-8086 mode): run() returns kFault.
struct EngineFault {
  std::string detail;
};

[[noreturn]] EMU_COLD void raise(uint8_t vector);
[[noreturn]] EMU_COLD void raise(uint8_t vector, uint32_t error);
[[noreturn]] inline void raise_gp(uint32_t error = 0) { raise(kVecGP, error); }
[[noreturn]] inline void raise_ud() { raise(kVecUD); }

// ---------------------------------------------------------------------------
// Descriptors

/// An 8-byte segment or gate descriptor as stored in the GDT/LDT/IDT
/// (SDM vol. 3, 3.4.5 and 6.11).
struct Descriptor {
  uint32_t lo = 0, hi = 0;
  uint32_t base() const { return (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000u); }
  uint32_t raw_limit() const { return (lo & 0xFFFF) | (hi & 0xF0000); }
  uint32_t limit() const { return g() ? (raw_limit() << 12) | 0xFFF : raw_limit(); }
  uint8_t type() const { return (hi >> 8) & 0xF; }
  bool s() const { return (hi >> 12) & 1; }
  uint8_t dpl() const { return (hi >> 13) & 3; }
  bool present() const { return (hi >> 15) & 1; }
  bool avl() const { return (hi >> 20) & 1; }
  bool db() const { return (hi >> 22) & 1; }
  bool g() const { return (hi >> 23) & 1; }
  // Code/data segments (s() true).
  bool is_code() const { return s() && (type() & 8); }
  bool is_data() const { return s() && !(type() & 8); }
  bool conforming() const { return is_code() && (type() & 4); }
  bool readable() const { return is_data() || (type() & 2); }   // code: R bit
  bool writable() const { return is_data() && (type() & 2); }
  // Gates (s() false).
  uint16_t gate_selector() const { return static_cast<uint16_t>(lo >> 16); }
  uint32_t gate_offset() const { return (lo & 0xFFFF) | (hi & 0xFFFF0000u); }
  unsigned gate_params() const { return hi & 0x1F; }
};

/// System descriptor types (SDM vol. 3, table 3-2).
enum SystemType : uint8_t {
  kTss16Available = 1, kLdtType = 2, kTss16Busy = 3, kCallGate16 = 4, kTaskGate = 5, kIntGate16 = 6,
  kTrapGate16 = 7, kTss32Available = 9, kTss32Busy = 11, kCallGate32 = 12, kIntGate32 = 14, kTrapGate32 = 15,
};

/// A segment register's hidden part (the descriptor cache), with the valid
/// offset ranges for reads and writes precomputed from limit, type,
/// expand-down and usability, so a check is two compares.
struct SegmentCache {
  uint16_t selector = 0;
  uint32_t base = 0;
  uint32_t limit = 0xFFFF;  // scaled by G
  uint8_t type = 3;
  uint8_t dpl = 0;
  bool s = true;
  bool present = true;
  bool db = false;
  bool g = false;
  bool avl = false;
  bool usable = true;  // false: null selector loaded in protected mode
  // Valid offsets: off >= lo && off + size - 1 <= hi (checked in 64 bits).
  uint32_t rd_lo = 0, rd_hi = 0xFFFF;
  uint32_t wr_lo = 0, wr_hi = 0xFFFF;

  /// Recompute the ranges (real: real mode or V86, where every segment is
  /// readable and writable within its limit).
  void recompute(bool real);
  /// Load base/limit/attributes from a descriptor.
  void load(uint16_t sel, const Descriptor& d);
};

// ---------------------------------------------------------------------------
// The software TLB

inline constexpr unsigned kTlbBits = 10;
inline constexpr unsigned kTlbEntries = 1u << kTlbBits;
inline constexpr uint32_t kNoTag = 1;  // never equals a page-aligned address

struct TlbEntry {
  uint32_t read_tag = kNoTag;   // linear page address if reads may use `host`
  uint32_t write_tag = kNoTag;  // linear page address if writes may use `host`
  uintptr_t addend = 0;         // host address = addend + linear
  uint32_t phys_page = 0;       // physical address of the page
  uint8_t global = 0;           // from a global PTE/PDE (CR4.PGE): survives CR3 writes
  uint8_t large = 0;            // from a 4 MiB page (INVLPG must drop the whole region)
};

/// Kinds of linear accesses: the privilege used for the paging checks and
/// the error code (a supervisor access by the CPU itself, e.g. a descriptor
/// table or a ring-0 stack push from CPL 3, is kSys).
enum class Priv : uint8_t { kCurrent, kSys, kUser };

/// Holds the Monitor's device lock for a scope (MachineBindings::lock_devices).
class DeviceLock {
 public:
  explicit DeviceLock(const MachineBindings* b) : b_(b) {
    if (b_ != nullptr && b_->lock_devices) b_->lock_devices();
  }
  ~DeviceLock() {
    if (b_ != nullptr && b_->unlock_devices) b_->unlock_devices();
  }
  DeviceLock(const DeviceLock&) = delete;
  DeviceLock& operator=(const DeviceLock&) = delete;

 private:
  const MachineBindings* b_;
};

/// What the CPU needs from outside itself; set by the engine.
struct CpuBindings {
  MachineBindings* machine = nullptr;
  BlockCache* cache = nullptr;
  VirtualClock* vclock = nullptr;  // non-null in virtual-clock mode
  class Jit* jit = nullptr;        // the JIT (jit.h), if on
};

// ---------------------------------------------------------------------------
// The CPU

class Cpu {
 public:
  Cpu();
  Cpu(const Cpu&) = delete;
  Cpu& operator=(const Cpu&) = delete;

  // --- architectural registers ------------------------------------------------
  uint32_t gpr[9] = {};  // EAX..EDI, then a constant 0 (kZeroReg)
  uint32_t eip = 0;
  /// EFLAGS. Its arithmetic bits (CF PF AF ZF SF OF) are valid only while
  /// lazy_op == kLazyNone: the common ALU instructions record their operands
  /// instead (lazy flags) and flags() computes the bits when something reads
  /// them. The other bits (TF IF DF IOPL NT RF VM AC ID) are always valid.
  /// Read arithmetic bits only through flags() / cond(); an instruction that
  /// writes some arithmetic bits calls flags() first.
  uint32_t eflags = kEflagsFixed;
  enum LazyOp : uint8_t { kLazyNone, kLazyAdd, kLazySub, kLazyLogic, kLazyInc, kLazyDec };
  uint8_t lazy_op = kLazyNone;
  uint8_t lazy_size = 4;
  uint8_t lazy_cf = 0;   // kLazyInc/kLazyDec: CF from before (INC/DEC keep it)
  uint32_t lazy_a = 0;   // first operand, or the result for kLazyLogic (masked to lazy_size)
  uint32_t lazy_b = 0;   // second operand (masked)
  SegmentCache seg[6];
  SegmentCache ldtr, tr;
  uint32_t gdt_base = 0, idt_base = 0;
  uint16_t gdt_limit = 0xFFFF, idt_limit = 0x3FF;
  uint32_t cr0 = kCr0Et, cr2 = 0, cr3 = 0, cr4 = 0;
  uint32_t dr[8] = {0, 0, 0, 0, 0xFFFF0FF0, 0x400, 0xFFFF0FF0, 0x400};
  uint8_t cpl = 0;
  uint64_t tsc_offset = 0;
  uint64_t last_tsc = 0;  // the last value RDTSC/RDMSR returned
  uint32_t sysenter_cs = 0, sysenter_esp = 0, sysenter_eip = 0;
  Fpu fpu;

  // --- execution state ------------------------------------------------------------
  bool halted = false;
  bool irq_shadow = false;   // STI / MOV SS / POP SS: no interrupt before the next instruction
  bool irq_hint = false;     // the PIC had INTR asserted when last asked (under the device lock)
  /// Set by other threads (kick, code invalidation) to make end_block return
  /// to the loop; the loop clears it before it looks at why. Right after
  /// irq_hint: a compiled block's exit tests both with one 16-bit load.
  std::atomic<bool> exit_request{false};
  bool stop_block = false;   // leave the current block after this instruction
  /// Set while JIT code runs (jit.h): a branch handler's end_block() (chain.h)
  /// returns to the generated code instead of running the next block, after
  /// setting jit_chain; the code then takes its exit. (Handlers return from
  /// next() through the sentinel after their Insn's copy, jit.cpp.)
  bool in_jit = false;
  bool jit_chain = false;
  /// Runs of a block (Block::jit_hits) at which end_block() asks the JIT
  /// whether it has become hot (Jit::count_hot): the JIT's threshold, or
  /// 0xFFFF without a JIT (the count then only wraps).
  uint16_t jit_threshold = 0xFFFF;
  /// Set by the engine for the first instructions after the CPU wakes from
  /// HLT (EmulatorEngine::run): compiled code is not entered then, and
  /// Jit::enter_compiled runs the block's own first handler. A wake-up of
  /// an idle guest (its timer tick: ~3,600 instructions) runs with cold
  /// host caches, where the interpreter's compact Insns cost less than
  /// compiled code and the exits between compiled and interpreted blocks.
  bool jit_paused = false;
  uint64_t jit_paused_until = 0;  // icount at which jit_paused ends
  bool fpu_error_hint = false;
  uint64_t icount = 0;       // instructions retired (kept by the engine's block loop)
  /// Bumped whenever a decoded block may have gone away (invalidation, cache
  /// flush): the engine's jump cache (linear address -> block) and block
  /// chains are valid only within one epoch. Translations are checked
  /// separately (code_page_is), so TLB flushes need no bump.
  uint32_t code_epoch = 1;
  uint64_t icount_synced = 0;  // part of icount already given to the virtual clock
  const Block* current_block = nullptr;  // the block running (null: none, or counted by end_block)
  CpuBindings bind;

  // --- block chaining (chain.h) ------------------------------------------------
  // A block that ends in a near branch or runs off its end goes on to the
  // next block directly (end_block) while nothing needs the engine's loop;
  // these fields are the loop's state that this path needs.
  uint32_t block_eip = 0;         // EIP at which current_block was entered
  uint32_t block_lin = 0;         // its linear address
  uint64_t slice_end = 0;         // icount at which the loop must get control back
  uint32_t chain_budget = 0;      // blocks that may still chain before the loop runs
  const Block* chain_from = nullptr;  // the block that ended last, counted (for the loop's chaining)
  uint32_t chain_from_lin = 0;
  JumpEntry* jump_cache = nullptr;    // the engine's jump cache (chain.h)
  uint64_t blocks_chained = 0;

  // Per-CPU counters for reports.
  uint64_t unimplemented_count = 0;
  uint64_t exceptions_delivered = 0;
  uint64_t interrupts_delivered = 0;
  uint64_t code_invalidations = 0;

  // --- mode ---------------------------------------------------------------------
  bool protected_mode() const { return cr0 & kCr0Pe; }
  bool v86() const { return eflags & kVM; }
  bool paging() const { return cr0 & kCr0Pg; }
  bool code32() const { return seg[kCs].db; }
  bool stack32() const { return seg[kSs].db; }
  unsigned iopl() const { return (eflags >> 12) & 3; }
  /// Decoding mode of the current CS (0 real, 1 16-bit protected, 2 32-bit).
  unsigned decode_mode() const { return !protected_mode() || v86() ? 0u : (code32() ? 2u : 1u); }

  // --- registers by byte offset (see Insn: 8-bit registers AH..BH are the
  // second byte of EAX..EBX; a 16/32-bit register r is at offset 4r).
  template <unsigned S>
  EMU_INLINE uint32_t reg(unsigned off) const {
    const auto* p = reinterpret_cast<const uint8_t*>(gpr) + off;
    if constexpr (S == 1) {
      return *p;
    } else if constexpr (S == 2) {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return v;
    } else {
      uint32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
  }
  template <unsigned S>
  EMU_INLINE void set_reg(unsigned off, uint32_t v) {
    auto* p = reinterpret_cast<uint8_t*>(gpr) + off;
    if constexpr (S == 1) {
      *p = static_cast<uint8_t>(v);
    } else if constexpr (S == 2) {
      const auto w = static_cast<uint16_t>(v);
      std::memcpy(p, &w, 2);
    } else {
      std::memcpy(p, &v, 4);
    }
  }

  // --- linear memory ----------------------------------------------------------
  template <unsigned S>
  EMU_INLINE uint32_t read_lin(uint32_t lin) {
    const TlbEntry& e = tlb_cur_[(lin >> 12) & (kTlbEntries - 1)];
    if (EMU_LIKELY(e.read_tag == ((lin + (S - 1)) & ~0xFFFu))) return load<S>(e.addend + lin);
    return read_slow(lin, S, Priv::kCurrent);
  }
  template <unsigned S>
  EMU_INLINE void write_lin(uint32_t lin, uint32_t v) {
    const TlbEntry& e = tlb_cur_[(lin >> 12) & (kTlbEntries - 1)];
    if (EMU_LIKELY(e.write_tag == ((lin + (S - 1)) & ~0xFFFu))) {
      store<S>(e.addend + lin, v);
      return;
    }
    write_slow(lin, S, v, Priv::kCurrent);
  }
  /// Accesses with an explicit privilege (kSys: descriptor tables, TSS, the
  /// stacks of an inner ring).
  uint32_t read_lin_priv(uint32_t lin, unsigned size, Priv priv) { return read_slow(lin, size, priv); }
  void write_lin_priv(uint32_t lin, unsigned size, uint32_t v, Priv priv) { write_slow(lin, size, v, priv); }
  /// Byte-granular copies (x87 operands, CMPXCHG8B, FNSAVE areas): every page
  /// is translated (and checked) before the first byte moves.
  void read_bytes(uint32_t lin, std::span<uint8_t> out, Priv priv = Priv::kCurrent);
  void write_bytes(uint32_t lin, std::span<const uint8_t> in, Priv priv = Priv::kCurrent);
  /// Check that [lin, lin+size) could be written (faults as the write would),
  /// without writing; fills the TLB.
  void probe_write(uint32_t lin, unsigned size, Priv priv = Priv::kCurrent);
  /// A host pointer to `len` bytes of RAM at linear `lin`, valid for writing
  /// (checks permission, sets D bits, invalidates code in the page) or
  /// reading; nullptr if the range leaves the page or is not RAM. Used by the
  /// REP MOVS/STOS fast paths.
  uint8_t* host_ptr(uint32_t lin, uint32_t len, bool write);

  // --- segmented memory -------------------------------------------------------
  template <unsigned S>
  EMU_INLINE uint32_t read(unsigned sr, uint32_t off) {
    const SegmentCache& s = seg[sr];
    if (EMU_UNLIKELY(off < s.rd_lo || uint64_t{off} + (S - 1) > s.rd_hi)) segment_fault(sr);
    return read_lin<S>(s.base + off);
  }
  template <unsigned S>
  EMU_INLINE void write(unsigned sr, uint32_t off, uint32_t v) {
    const SegmentCache& s = seg[sr];
    if (EMU_UNLIKELY(off < s.wr_lo || uint64_t{off} + (S - 1) > s.wr_hi)) segment_fault(sr);
    write_lin<S>(s.base + off, v);
  }
  /// Read for a read-modify-write: checks write permission first (so a
  /// read-only page faults with W=1 as on hardware).
  template <unsigned S>
  EMU_INLINE uint32_t read_for_write(unsigned sr, uint32_t off) {
    const SegmentCache& s = seg[sr];
    if (EMU_UNLIKELY(off < s.wr_lo || uint64_t{off} + (S - 1) > s.wr_hi)) segment_fault(sr);
    const uint32_t lin = s.base + off;
    const TlbEntry& e = tlb_cur_[(lin >> 12) & (kTlbEntries - 1)];
    if (EMU_LIKELY(e.write_tag == ((lin + (S - 1)) & ~0xFFFu))) return load<S>(e.addend + lin);
    probe_write(lin, S);
    return read_slow(lin, S, Priv::kCurrent);
  }
  /// Linear address of [off, off+size) in segment `sr` after the limit and
  /// type checks for a read or a write (raises #GP/#SS).
  uint32_t check_segment(unsigned sr, uint32_t off, uint32_t size, bool write) {
    const SegmentCache& s = seg[sr];
    const uint32_t lo = write ? s.wr_lo : s.rd_lo;
    const uint32_t hi = write ? s.wr_hi : s.rd_hi;
    if (off < lo || uint64_t{off} + size - 1 > hi || size == 0) segment_fault(sr);
    return s.base + off;
  }
  [[noreturn]] EMU_COLD void segment_fault(unsigned sr);

  // --- stack --------------------------------------------------------------------
  template <unsigned S>
  EMU_INLINE void push(uint32_t v) {
    if (EMU_LIKELY(stack32())) {
      const uint32_t sp = gpr[kEsp] - S;
      write<S>(kSs, sp, v);
      gpr[kEsp] = sp;
    } else {
      const uint32_t sp = (gpr[kEsp] - S) & 0xFFFF;
      write<S>(kSs, sp, v);
      gpr[kEsp] = (gpr[kEsp] & 0xFFFF0000u) | sp;
    }
  }
  template <unsigned S>
  EMU_INLINE uint32_t pop() {
    if (EMU_LIKELY(stack32())) {
      const uint32_t v = read<S>(kSs, gpr[kEsp]);
      gpr[kEsp] += S;
      return v;
    }
    const uint32_t v = read<S>(kSs, gpr[kEsp] & 0xFFFF);
    gpr[kEsp] = (gpr[kEsp] & 0xFFFF0000u) | ((gpr[kEsp] + S) & 0xFFFF);
    return v;
  }
  /// Read the stack `depth` bytes above the top without popping.
  template <unsigned S>
  EMU_INLINE uint32_t peek(uint32_t depth) {
    const uint32_t mask = stack32() ? 0xFFFFFFFFu : 0xFFFFu;
    return read<S>(kSs, (gpr[kEsp] + depth) & mask);
  }
  void set_sp(uint32_t v) {
    if (stack32()) gpr[kEsp] = v;
    else gpr[kEsp] = (gpr[kEsp] & 0xFFFF0000u) | (v & 0xFFFF);
  }
  uint32_t sp() const { return stack32() ? gpr[kEsp] : gpr[kEsp] & 0xFFFF; }

  // --- control registers and TLB (mmu.cpp) ------------------------------------
  void set_cr0(uint32_t v);  // raises #GP on invalid combinations
  void set_cr3(uint32_t v);
  void set_cr4(uint32_t v);
  void set_cpl(uint8_t new_cpl);
  void flush_tlb(bool include_global);
  void invlpg(uint32_t lin);
  /// The block cache calls this when a physical page first receives code:
  /// drop write tags that map it, so stores to it take the slow path.
  void protect_code_page(uint32_t phys_page);
  /// Translate a linear address for an instruction fetch at the current CPL
  /// (fills the TLB); raises #PF.
  uint32_t translate_fetch(uint32_t lin);
  /// True if the linear page of `lin` is fetchable at the current CPL and
  /// maps to the physical page `phys_page` (a TLB hit, or a walk that fills
  /// the TLB; raises #PF like a fetch).
  EMU_INLINE bool code_page_is(uint32_t lin, uint32_t phys_page) {
    const TlbEntry& e = tlb_cur_[(lin >> 12) & (kTlbEntries - 1)];
    if (EMU_LIKELY(e.read_tag == (lin & ~0xFFFu))) return e.phys_page == phys_page;
    return (translate_fetch(lin) & ~0xFFFu) == phys_page;
  }
  /// Translate for a debugger/fault report: no faults, no A/D bits.
  bool peek_translate(uint32_t lin, uint32_t& phys) const;

  // Physical memory (page tables, code). Outside RAM: MMIO under the device lock.
  uint32_t phys_read32(uint32_t pa);
  void phys_write32(uint32_t pa, uint32_t v);
  bool is_ram(uint32_t pa, uint32_t len) const { return pa < ram_size_ && len <= ram_size_ - pa; }
  uint8_t* ram() const { return ram_; }
  uint32_t ram_size() const { return ram_size_; }
  void attach_ram(uint8_t* host, uint32_t size) {
    ram_ = host;
    ram_size_ = size;
  }

  // --- flags ----------------------------------------------------------------
  /// EFLAGS with the arithmetic bits computed (no side effects).
  EMU_INLINE uint32_t flags_value() const {
    switch (lazy_op) {
      case kLazyNone: return eflags;
      case kLazyAdd: return alu(AluOp::kAdd, lazy_a, lazy_b, lazy_size, eflags).flags;
      case kLazySub: return alu(AluOp::kSub, lazy_a, lazy_b, lazy_size, eflags).flags;
      case kLazyLogic: return alu(AluOp::kOr, lazy_a, 0, lazy_size, eflags).flags;
      case kLazyInc: return inc(lazy_a, lazy_size, (eflags & ~kCF) | lazy_cf).flags;
      case kLazyDec: return dec(lazy_a, lazy_size, (eflags & ~kCF) | lazy_cf).flags;
    }
    return eflags;
  }
  /// EFLAGS, materializing pending lazy flags (lazy_op becomes kLazyNone).
  EMU_INLINE uint32_t flags() {
    if (lazy_op != kLazyNone) {
      eflags = flags_value();
      lazy_op = kLazyNone;
    }
    return eflags;
  }
  /// CF alone (cheap for every lazy state).
  EMU_INLINE uint32_t carry() const {
    const uint32_t m = lazy_size == 1 ? 0xFFu : lazy_size == 2 ? 0xFFFFu : 0xFFFFFFFFu;
    switch (lazy_op) {
      case kLazyNone: return eflags & kCF;
      case kLazyAdd: return ((lazy_a + lazy_b) & m) < lazy_a ? kCF : 0;
      case kLazySub: return lazy_a < lazy_b ? kCF : 0;
      case kLazyLogic: return 0;
      case kLazyInc:
      case kLazyDec: return lazy_cf;
    }
    return 0;
  }
  template <LazyOp Op, unsigned S>
  EMU_INLINE void set_lazy(uint32_t a, uint32_t b) {
    lazy_op = Op;
    lazy_size = S;
    lazy_a = a;
    lazy_b = b;
  }
  /// The Jcc/SETcc/CMOVcc condition `cc` (0..15), straight from the lazy
  /// operands for CMP/SUB and the logic instructions.
  EMU_INLINE bool cond(unsigned cc) {
    if (lazy_op == kLazySub) {
      const uint32_t a = lazy_a, b = lazy_b;
      const unsigned shift = 32 - 8 * lazy_size;
      const auto sa = static_cast<int32_t>(a << shift), sb = static_cast<int32_t>(b << shift);
      switch (cc) {
        case 2: return a < b;
        case 3: return a >= b;
        case 4: return a == b;
        case 5: return a != b;
        case 6: return a <= b;
        case 7: return a > b;
        case 12: return sa < sb;
        case 13: return sa >= sb;
        case 14: return sa <= sb;
        case 15: return sa > sb;
        default: break;
      }
    } else if (lazy_op == kLazyLogic) {
      const bool zero = lazy_a == 0;
      const bool sign = (lazy_a >> (8 * lazy_size - 1)) & 1;
      switch (cc) {
        case 0: case 2: return false;  // OF = CF = 0
        case 1: case 3: return true;
        case 4: case 6: return zero;
        case 5: case 7: return !zero;
        case 8: case 12: return sign;  // SF (SF != OF with OF = 0)
        case 9: case 13: return !sign;
        case 14: return zero || sign;
        case 15: return !zero && !sign;
        default: break;
      }
    } else if (lazy_op != kLazyNone) {
      // ADD, INC, DEC: ZF and SF come from the result, CF is cheap.
      const uint32_t m = lazy_size == 1 ? 0xFFu : lazy_size == 2 ? 0xFFFFu : 0xFFFFFFFFu;
      const uint32_t r = (lazy_op == kLazyAdd ? lazy_a + lazy_b : lazy_op == kLazyInc ? lazy_a + 1 : lazy_a - 1) & m;
      const bool sign = (r >> (8 * lazy_size - 1)) & 1;
      switch (cc) {
        case 2: return carry() != 0;
        case 3: return carry() == 0;
        case 4: return r == 0;
        case 5: return r != 0;
        case 6: return carry() != 0 || r == 0;
        case 7: return carry() == 0 && r != 0;
        case 8: return sign;
        case 9: return !sign;
        default: break;
      }
    }
    return condition(cc, flags());
  }
  /// Write EFLAGS as POPF/IRET do: only the bits in `mask` change; bit 1
  /// stays set. Marks a pending-interrupt check if IF was turned on.
  /// Setting TF ends the block too: the loop then single-steps the next
  /// instruction and traps after it (SDM Vol. 3 §18.3.1.4, a POPF that sets
  /// TF); and compiled code, which leaves TF out of its exits' checks, never
  /// runs with TF set (jit.h).
  void write_eflags(uint32_t value, uint32_t mask) {
    const uint32_t old = flags();
    eflags = (eflags & ~mask) | (value & mask & kEflagsSettable) | kEflagsFixed;
    if (!(old & kIF) && (eflags & kIF)) stop_block = true;
    if (!(old & kTF) && (eflags & kTF)) stop_block = true;
    if ((old ^ eflags) & kVM) recompute_segments();
  }
  void recompute_segments();

  // --- protection (protection.cpp) ----------------------------------------------
  Descriptor read_descriptor(uint16_t sel, uint8_t vector_on_fault = kVecGP);
  void write_descriptor_hi(uint16_t sel, uint32_t hi);
  void set_accessed(uint16_t sel, Descriptor& d);
  /// MOV/POP/LxS to a data or stack segment register (not CS). A load
  /// that leaves DS, ES or SS not flat (jit_flat()) ends the block, so that
  /// compiled code, which is entered only when they are, stops there.
  void load_segment(unsigned sr, uint16_t sel);
  void load_segment_cache(unsigned sr, uint16_t sel);  // the load itself (checks, descriptor, cache)
  /// The segments are as compiled code assumes them (jit.h "Flat
  /// segments"): DS, ES and SS with base 0 and every offset readable and
  /// writable, SS 32-bit, and CS with a 4 GiB limit. Linux's, always.
  bool jit_flat() const {
    const auto flat = [](const SegmentCache& s) {
      return s.base == 0 && s.rd_lo == 0 && s.rd_hi == 0xFFFFFFFFu && s.wr_lo == 0 && s.wr_hi == 0xFFFFFFFFu;
    };
    return flat(seg[kDs]) && flat(seg[kEs]) && flat(seg[kSs]) && seg[kSs].db && seg[kCs].limit == 0xFFFFFFFFu;
  }
  /// Load CS in real/V86 mode (base = sel << 4).
  void load_cs_real(uint16_t sel);
  /// Load CS from a checked descriptor, setting CPL = `new_cpl`.
  void load_cs(uint16_t sel, const Descriptor& d, uint8_t new_cpl);
  void far_jump(uint16_t sel, uint32_t offset, unsigned opsize, uint32_t next_eip);
  void far_call(uint16_t sel, uint32_t offset, unsigned opsize, uint32_t next_eip);
  void far_return(unsigned opsize, uint16_t pop_bytes);
  void iret(unsigned opsize, uint32_t next_eip);
  void sysenter();
  void sysexit();
  void load_ldt(uint16_t sel);
  void load_tr(uint16_t sel);
  /// I/O permission check for `size` bytes at `port` (CPL > IOPL or V86: the
  /// TSS I/O bitmap); raises #GP(0).
  void check_io(uint16_t port, unsigned size);

  /// Kinds of events that enter the IDT/IVT.
  enum class EventKind : uint8_t { kException, kExternal, kSoftware /* INT n */, kSoftwareException /* INT3, INTO */ };
  struct Event {
    uint8_t vector;
    EventKind kind;
    bool has_error;
    uint32_t error;
    uint32_t return_eip;  // pushed as the return address
  };
  /// Deliver an event, applying the double-fault rule to faults raised
  /// while delivering (SDM vol. 3, 6.15 table 6-5). Throws TripleFault.
  void deliver(Event ev);

  /// Task switch (SDM vol. 3, 7.3) to the TSS `sel`, whose descriptor is `d`.
  enum class TaskSource : uint8_t { kJump, kCall, kInterrupt, kIret };
  void task_switch(uint16_t sel, Descriptor d, TaskSource src, uint32_t next_eip, bool has_error = false,
                   uint32_t error = 0);

  // Helpers of protection.cpp.
  uint32_t ext_ = 0;  // EXT bit for error codes while delivering an external event or exception
  uint32_t sel_error(uint16_t sel) const { return (sel & 0xFFFCu) | ext_; }
  void deliver_once(const Event& ev);
  /// SS:ESP for privilege level `dpl` from the current TSS; raises #TS.
  void tss_stack(uint8_t dpl, uint16_t& ss, uint32_t& esp);
  /// Check a stack segment for CPL `rpl` (far RET/IRET to an outer level,
  /// call gates, interrupts): raises `vector` (#GP or #TS) / #SS.
  Descriptor check_stack_segment(uint16_t sel, uint8_t rpl, uint8_t vector);
  /// After a return to an outer level: data segments the new CPL may not use become null.
  void null_inaccessible_segments();
  /// Check a code segment descriptor that a far RET / IRET returns to; raises #GP/#NP.
  void check_return_cs(uint16_t sel, const Descriptor& d);
  /// Apply the EFLAGS image popped by IRET under the current CPL/IOPL rules.
  void iret_flags(uint32_t value, unsigned opsize);

  // --- I/O (ops_system.cpp) -------------------------------------------------------
  uint32_t io_read(uint16_t port, unsigned size);
  void io_write(uint16_t port, unsigned size, uint32_t v);
  /// Give retired instructions to the virtual clock (before anything reads it).
  void sync_clock() {
    if (bind.vclock != nullptr && icount != icount_synced) {
      bind.vclock->advance_instructions(icount - icount_synced);
      icount_synced = icount;
    }
  }
  uint64_t read_tsc();

 private:
  template <unsigned S>
  static EMU_INLINE uint32_t load(uintptr_t host) {
    const auto* p = reinterpret_cast<const uint8_t*>(host);
    if constexpr (S == 1) {
      return *p;
    } else if constexpr (S == 2) {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return v;
    } else {
      uint32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
  }
  template <unsigned S>
  static EMU_INLINE void store(uintptr_t host, uint32_t v) {
    auto* p = reinterpret_cast<uint8_t*>(host);
    if constexpr (S == 1) {
      *p = static_cast<uint8_t>(v);
    } else if constexpr (S == 2) {
      const auto w = static_cast<uint16_t>(v);
      std::memcpy(p, &w, 2);
    } else {
      std::memcpy(p, &v, 4);
    }
  }

  struct Translation {
    uint32_t phys;
    bool ram;
  };
  uint32_t read_slow(uint32_t lin, unsigned size, Priv priv);
  void write_slow(uint32_t lin, unsigned size, uint32_t v, Priv priv);
  /// Walk the page tables (or identity without paging), fill the TLB entry
  /// of the table for `user`, and return the physical address. Raises #PF.
  uint32_t translate(uint32_t lin, bool write, bool user, bool fault_user_bit);
  bool access_user(Priv priv) const { return priv == Priv::kUser || (priv == Priv::kCurrent && cpl == 3); }
  uint32_t phys_read(uint32_t pa, unsigned size);
  void phys_write(uint32_t pa, unsigned size, uint32_t v);
  void note_code_write(uint32_t pa, unsigned size);

  uint8_t* ram_ = nullptr;
  uint32_t ram_size_ = 0;
  TlbEntry tlb_[2][kTlbEntries];  // [0] supervisor, [1] user
  TlbEntry* tlb_cur_ = tlb_[0];
  friend class Jit;  // generated code reads tlb_cur_ (the inline TLB lookup)
  unsigned large_entries_ = 0;     // entries from 4 MiB pages currently in the TLB (upper bound)

 public:
  const uint8_t* code_pages = nullptr;  // per RAM page: nonzero if it holds cached code (BlockCache)
};

/// Build the engine-neutral state and back (cpu.cpp).
CpuState to_cpu_state(const Cpu& cpu);
Result<void> from_cpu_state(Cpu& cpu, const CpuState& s);

}  // namespace twoostwo::vmcore::emu
