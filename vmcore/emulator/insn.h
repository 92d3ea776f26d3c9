// The emulator's decoded-instruction form: Zydis decodes each instruction
// once; the translation (decoder.cpp and the translate_* functions of the
// ops_*.cpp files) turns it into an Insn — a handler and a compact operand
// descriptor — and instructions are cached in Blocks (block_cache.h).
#pragma once

#include <Zydis/Zydis.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <vector>

#include "vmcore/emulator/cpu.h"

namespace twoostwo::vmcore::emu {

struct Insn;
/// Executes one instruction: on success it has advanced EIP (or set it, for a
/// branch); on a fault it throws CpuException with EIP and registers unchanged.
using Handler = void (*)(Cpu&, const Insn&);

/// Insn::flags bits.
inline constexpr uint8_t kInsnAddr16 = 1 << 0;   // 16-bit address size
inline constexpr uint8_t kInsnRep = 1 << 1;      // REP / REPE prefix
inline constexpr uint8_t kInsnRepne = 1 << 2;    // REPNE prefix
inline constexpr uint8_t kInsnLock = 1 << 3;
inline constexpr uint8_t kInsnOp16 = 1 << 4;     // 16-bit operand size (for handlers shared by sizes)
inline constexpr uint8_t kInsnEndsBlock = 1 << 5;  // the block ends after this instruction

/// The instruction forms the JIT (jit.h) compiles inline; every other
/// instruction is compiled as a call of its handler. A translate_* function
/// sets Insn::jit next to Insn::fn, and only for a form whose inline code
/// does exactly what the handler does (operands as Insn documents them).
/// The binary ALU forms (ADD OR AND SUB XOR CMP; not ADC/SBB) and TEST are
/// ranges: jit_alu() / jit_test() below.
enum class JitForm : uint8_t {
  kNone = 0,
  // MOV, any size: r1 <- r2, r1 <- [m], [m] <- r2, r1 <- imm, [m] <- imm.
  kMovRR, kMovRM, kMovMR, kMovRI, kMovMI,
  kLea32,                                  // LEA r32, m
  kMovzxR8, kMovzxM8, kMovzxR16, kMovzxM16,  // MOVZX r32, r/m8 or r/m16
  kMovsxR8, kMovsxM8, kMovsxR16, kMovsxM16,  // MOVSX r32, r/m8 or r/m16
  kInc32, kDec32,                          // INC/DEC r32
  kPush32, kPop32,                         // PUSH/POP r32
  kCallRel32, kRet32, kJmpRel32, kJccRel32,  // near, 32-bit operand size (RET without imm16)
  kShift32RI,  // ROL/ROR/SHL/SHR/SAR r32, imm8 (aux2: the ShiftOp)
  kPushI32, kPushM32,  // PUSH imm32 (imm), PUSH m32
  kSetccR8, kCmovRR32,  // SETcc r8, CMOVcc r32, r32 (aux: the condition)
  kNot32, kNeg32,       // NOT/NEG r32
  kAluFirst = 0x40,  // + operands << 3 + AluOp, up to kAluLast
  kAluLast = 0x40 + (4 << 3) + 7,
  kTestFirst = 0x68,  // + operands
  kTestLast = 0x68 + 4,
};
/// Operand shapes of the ALU and TEST forms (as ops_alu.cpp's Form).
enum class JitOperands : uint8_t { kRR, kRM, kMR, kRI, kMI };
constexpr JitForm jit_alu(JitOperands o, uint8_t alu_op) {
  return static_cast<JitForm>(static_cast<unsigned>(JitForm::kAluFirst) + (static_cast<unsigned>(o) << 3) + alu_op);
}
constexpr JitForm jit_test(JitOperands o) {
  return static_cast<JitForm>(static_cast<unsigned>(JitForm::kTestFirst) + static_cast<unsigned>(o));
}

/// One decoded instruction (32 bytes).
/// Register operands are byte offsets into Cpu::gpr (r: 4*r for 16/32-bit
/// registers; AL..BL = 0,4,8,12; AH..BH = 1,5,9,13). r1 is the register of
/// Zydis operand 0 and r2 that of operand 1, when those are registers.
/// A memory operand is seg:[base + (index << scale) + disp] with base/index
/// register numbers (kZeroReg when absent), truncated to 16 bits if
/// kInsnAddr16.
struct Insn {
  Handler fn = nullptr;
  uint32_t imm = 0;   // immediate; relative branch displacement; far offset
  uint32_t disp = 0;  // memory displacement
  uint32_t imm2 = 0;  // second immediate (ENTER level, far selector, 3-operand IMUL, x87 index)
  uint8_t len = 0;
  uint8_t r1 = 0;
  uint8_t r2 = 0;
  uint8_t base = kZeroReg;
  uint8_t index = kZeroReg;
  uint8_t scale = 0;
  uint8_t seg = kDs;
  uint8_t flags = 0;
  uint8_t aux = 0;     // condition code, sub-operation, size...
  uint8_t opsize = 4;  // operand size in bytes
  uint8_t aux2 = 0;
  JitForm jit = JitForm::kNone;  // what the JIT may inline (JitForm)
};
static_assert(sizeof(Insn) == 32);

/// Effective address of the memory operand (offset within the segment).
EMU_INLINE uint32_t effective_address(const Cpu& c, const Insn& i) {
  const uint32_t a = c.gpr[i.base] + (c.gpr[i.index] << i.scale) + i.disp;
  return (i.flags & kInsnAddr16) ? (a & 0xFFFF) : a;
}

/// An x87 instruction keeps Zydis' full decoding for the FPU.
struct X87Insn {
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
};

struct Block;
struct BlockDeleter {
  void operator()(Block* b) const;
};
using BlockPtr = std::unique_ptr<Block, BlockDeleter>;
using X87List = std::vector<std::unique_ptr<X87Insn>>;

/// A straight-line run of decoded instructions within one physical page,
/// ending at a branch, a mode-changing instruction or the page end; or a
/// single instruction that crosses from one page into the next. The
/// instructions follow the header in the same allocation (one cache line
/// fetch reaches both), and are followed by a sentinel Insn whose handler
/// returns to the block loop.
struct alignas(64) Block {
  // The first cache line holds what running and chaining read.
  uint32_t phys = 0;        // guest-physical address of the first byte
  uint32_t byte_len = 0;    // bytes covered
  uint32_t count = 0;       // instructions
  /// A block whose (single) instruction crosses into the next page also
  /// depends on that page: its physical page address, else kNoPhys2.
  static constexpr uint32_t kNoPhys2 = 0xFFFFFFFFu;
  uint32_t phys2 = kNoPhys2;
  // Chaining (chain.h): the blocks that followed this one, two of them (a
  // conditional branch has two successors), each valid while the next
  // linear address and jump tag (epoch, CPL 3, mode) match.
  Block* chain[2] = {nullptr, nullptr};
  uint32_t chain_lin[2] = {0, 0};
  uint32_t chain_tag[2] = {0, 0};  // 0: none
  bool cached = false;             // in the BlockCache (false: a one-off block)
  uint8_t chain_victim = 0;        // the slot the next new successor replaces
  // Bookkeeping of the block cache.
  bool dead = false;        // invalidated; freed at the next safe point
  uint8_t mode = 0;         // Cpu::decode_mode() it was decoded in
  // The JIT's hotness count (jit.h Jit::hot_code, chain.h end_block): runs
  // of this block since `jit_window`, the JIT's counting window in which
  // the count started. Here, in the line that running and chaining read
  // anyway, so that counting every run costs no extra cache line.
  uint16_t jit_hits = 0;
  uint16_t jit_window = 0;  // wraps harmlessly
  Block* hash_next = nullptr;
  Block* page_next = nullptr;   // in the list of the page of `phys`
  Block* page_next2 = nullptr;  // in the list of the page of `phys2`
  X87List x87;                  // Zydis decodings of the x87 instructions (Insn::imm2 indexes)
  void* storage = nullptr;      // what operator new returned; the Block sits at its first 64-byte boundary
  // The JIT (jit.h): host code compiled from this block (null: interpreted).
  void* jit_code = nullptr;
  /// The first instruction's handler before the JIT replaced it with
  /// Jit::enter_compiled (so that interpreted blocks chaining here run the
  /// compiled code), as a byte offset from Jit::enter_compiled (32 bits
  /// keep Block at two cache lines); 0 while not replaced.
  int32_t jit_first = 0;

  Insn* insns() { return reinterpret_cast<Insn*>(this + 1); }
  const Insn* insns() const { return reinterpret_cast<const Insn*>(this + 1); }

  /// A block holding copies of `code`.
  static BlockPtr create(std::span<const Insn> code);
};
static_assert(sizeof(Block) % alignof(Insn) == 0);
static_assert(offsetof(Block, jit_window) < 64, "the fields the hot paths read share one cache line");

/// The handler of the sentinel after a block's last instruction: returns to
/// the engine's block loop (see next() in ops.h).
void handler_block_end(Cpu& c, const Insn& i);

inline BlockPtr Block::create(std::span<const Insn> code) {
  // Plain operator new with room to align by hand, not the aligned operator
  // new: glibc serves that with memalign, whose split-off fragments are left
  // unused -- about a quarter of the emulator's heap in a booted Debian guest
  // (~67,000 blocks of ~250 bytes: 5.6 MiB of 24 MiB), against at most 48
  // bytes per block here.
  constexpr size_t kSlack =
      alignof(Block) > __STDCPP_DEFAULT_NEW_ALIGNMENT__ ? alignof(Block) - __STDCPP_DEFAULT_NEW_ALIGNMENT__ : 0;
  const size_t bytes = sizeof(Block) + (code.size() + 1) * sizeof(Insn);
  size_t space = bytes + kSlack;
  void* const storage = ::operator new(space);
  void* mem = storage;
  std::align(alignof(Block), bytes, mem, space);
  auto* b = new (mem) Block();
  b->storage = storage;
  b->count = static_cast<uint32_t>(code.size());
  Insn* dst = b->insns();
  for (size_t k = 0; k < code.size(); ++k) new (dst + k) Insn(code[k]);
  Insn* sentinel = new (dst + code.size()) Insn();
  sentinel->fn = handler_block_end;
  return BlockPtr(b);
}

inline void BlockDeleter::operator()(Block* b) const {
  void* const storage = b->storage;
  b->~Block();  // Insn is trivially destructible
  ::operator delete(storage);
}

}  // namespace twoostwo::vmcore::emu
