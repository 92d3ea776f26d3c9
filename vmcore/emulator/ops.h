// Shared pieces of the instruction handlers (ops_*.cpp) and of their
// translation from Zydis' decoding into Insn.
#pragma once

#include <Zydis/Zydis.h>

#include <cstdint>

#include "vmcore/emulator/chain.h"
#include "vmcore/emulator/insn.h"

namespace twoostwo::vmcore::emu {

// ---------------------------------------------------------------------------
// Handler helpers

template <unsigned S>
inline constexpr uint32_t kMask = S == 1 ? 0xFFu : S == 2 ? 0xFFFFu : 0xFFFFFFFFu;
template <unsigned S>
inline constexpr uint32_t kSignBit = 1u << (S * 8 - 1);

/// The end of every handler that falls through to the next instruction:
/// advance EIP and run the next instruction of the block right here, as a
/// tail call (threaded dispatch: each handler ends in its own indirect jump,
/// which predicts better than one shared call site). The block's sentinel
/// returns to the engine's loop; so does any handler after which the block
/// must stop (Cpu::stop_block). Handlers that branch do not call next() and
/// return to the loop. Handlers must call next() last. The JIT calls
/// handlers on copies of their Insn followed by a sentinel that returns to
/// the generated code (jit.cpp), so next() needs no test for it.
EMU_INLINE void next(Cpu& c, const Insn& i) {
  c.eip += i.len;
  if (EMU_UNLIKELY(c.stop_block)) return;
  const Insn& n = (&i)[1];
  n.fn(c, n);
}

template <unsigned S>
EMU_INLINE uint32_t mem_read(Cpu& c, const Insn& i) {
  return c.read<S>(i.seg, effective_address(c, i));
}
template <unsigned S>
EMU_INLINE void mem_write(Cpu& c, const Insn& i, uint32_t v) {
  c.write<S>(i.seg, effective_address(c, i), v);
}

template <unsigned S>
EMU_INLINE uint32_t sign_extend(uint32_t v) {
  if constexpr (S == 1) return static_cast<uint32_t>(static_cast<int32_t>(static_cast<int8_t>(v)));
  else if constexpr (S == 2) return static_cast<uint32_t>(static_cast<int32_t>(static_cast<int16_t>(v)));
  else return v;
}

/// Set EIP for a branch to `target` (truncated to 16 bits for a 16-bit
/// operand size).
EMU_INLINE void branch_to(Cpu& c, uint32_t target, bool op16) { c.eip = op16 ? (target & 0xFFFF) : target; }

/// Raises #UD (invalid or unimplemented instruction).
void handler_ud(Cpu& c, const Insn& i);

// ---------------------------------------------------------------------------
// Translation helpers (decoder.cpp)

/// What the translate_* functions see of one decoded instruction.
struct Decoded {
  const ZydisDecodedInstruction& zi;
  const ZydisDecodedOperand* ops;  // zi.operand_count entries (hidden ones last)
  unsigned mode;                   // Cpu::decode_mode()
  unsigned visible() const { return zi.operand_count_visible; }
  const ZydisDecodedOperand& op(unsigned n) const { return ops[n]; }
  bool is_reg(unsigned n) const { return n < visible() && ops[n].type == ZYDIS_OPERAND_TYPE_REGISTER; }
  bool is_mem(unsigned n) const { return n < visible() && ops[n].type == ZYDIS_OPERAND_TYPE_MEMORY; }
  bool is_imm(unsigned n) const { return n < visible() && ops[n].type == ZYDIS_OPERAND_TYPE_IMMEDIATE; }
  bool is_ptr(unsigned n) const { return n < visible() && ops[n].type == ZYDIS_OPERAND_TYPE_POINTER; }
  /// Operand size in bytes of operand n.
  unsigned size(unsigned n) const { return ops[n].size / 8; }
  bool has(uint64_t attribute) const { return (zi.attributes & attribute) != 0; }
};

/// Byte offset into Cpu::gpr of an 8/16/32-bit general register, or 0xFF.
uint8_t reg_offset(ZydisRegister r);
/// Number (0..7) of a 16/32-bit general register, or 0xFF.
uint8_t gpr_number(ZydisRegister r);
/// Segment register number (kEs..kGs), or 0xFF.
uint8_t seg_number(ZydisRegister r);
/// Fill the memory fields of `in` from a memory operand; false if the
/// operand cannot be expressed (e.g. a 64-bit register).
bool set_memory(const Decoded& d, unsigned n, Insn& in);
/// Immediate of operand n, truncated to 32 bits.
inline uint32_t imm_of(const Decoded& d, unsigned n) { return static_cast<uint32_t>(d.ops[n].imm.value.u); }

/// Register operand n's byte offset into `field` (r1 or r2); false if not a GPR.
inline bool set_reg_operand(const Decoded& d, unsigned n, uint8_t& field) {
  if (!d.is_reg(n)) return false;
  field = reg_offset(d.ops[n].reg.value);
  return field != 0xFF;
}

/// Condition code (0..15, the low nibble of the Jcc opcode) of a Jcc, SETcc
/// or CMOVcc mnemonic, or -1.
int condition_code(ZydisMnemonic m);

// Each group's translation: returns true and fills in.fn (and the operand
// fields) if it handles d's mnemonic. Set kInsnEndsBlock for instructions
// after which decoding must stop.
bool translate_alu(const Decoded& d, Insn& in);
bool translate_data(const Decoded& d, Insn& in);
bool translate_control(const Decoded& d, Insn& in);
bool translate_string(const Decoded& d, Insn& in);
bool translate_system(const Decoded& d, Insn& in);
bool translate_x87(const Decoded& d, Insn& in, X87List& x87);

}  // namespace twoostwo::vmcore::emu
