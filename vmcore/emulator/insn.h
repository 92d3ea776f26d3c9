// The emulator's decoded-instruction form: Zydis decodes each instruction
// once; the translation (decoder.cpp and the translate_* functions of the
// ops_*.cpp files) turns it into an Insn — a handler and a compact operand
// descriptor — and instructions are cached in Blocks (block_cache.h).
#pragma once

#include <Zydis/Zydis.h>

#include <array>
#include <cstdint>
#include <memory>
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
  uint8_t pad = 0;
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

/// A straight-line run of decoded instructions within one physical page,
/// ending at a branch, a mode-changing instruction or the page end.
struct Block {
  uint32_t phys = 0;        // guest-physical address of the first byte
  uint32_t mode = 0;        // Cpu::decode_mode() it was decoded in
  uint32_t byte_len = 0;    // bytes covered
  bool cached = false;      // in the BlockCache (false: a one-off block)
  bool dead = false;        // invalidated; freed at the next safe point
  Block* hash_next = nullptr;
  Block* page_next = nullptr;
  std::vector<Insn> insns;
  std::vector<std::unique_ptr<X87Insn>> x87;
};

}  // namespace twoostwo::vmcore::emu
