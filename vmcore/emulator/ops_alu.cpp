// Integer arithmetic handlers: ADD..CMP, TEST, INC/DEC/NEG/NOT, shifts and
// rotates, SHLD/SHRD, MUL/IMUL/DIV/IDIV, BT/BTS/BTR/BTC, BSF/BSR, XADD,
// CMPXCHG, CMPXCHG8B and the BCD adjustments. Results and flags come from
// alu.h; this file only fetches operands and writes results back.
#include "vmcore/emulator/ops.h"

namespace twoostwo::vmcore::emu {
namespace {

enum class Form : uint8_t { kRR, kRM, kMR, kRI, kMI };
static_assert(static_cast<unsigned>(Form::kMI) == static_cast<unsigned>(JitOperands::kMI), "Insn::jit encodes Form");

// --- binary ALU ---------------------------------------------------------------

// ADD, SUB, CMP, AND, OR and XOR record lazy flags (Cpu::flags()); ADC and
// SBB read CF and compute their flags at once. Each handler computes the
// result first, stores it (which may fault), and only then changes EFLAGS.
template <AluOp Op>
inline constexpr bool kLazyAlu = Op == AluOp::kAdd || Op == AluOp::kSub || Op == AluOp::kCmp ||
                                 Op == AluOp::kAnd || Op == AluOp::kOr || Op == AluOp::kXor;

template <AluOp Op, unsigned S>
EMU_INLINE AluResult alu_compute(Cpu& c, uint32_t a, uint32_t b) {
  constexpr uint32_t m = kMask<S>;
  if constexpr (Op == AluOp::kAdd) return {(a + b) & m, 0};
  else if constexpr (Op == AluOp::kSub || Op == AluOp::kCmp) return {(a - b) & m, 0};
  else if constexpr (Op == AluOp::kAnd) return {a & b, 0};
  else if constexpr (Op == AluOp::kOr) return {a | b, 0};
  else if constexpr (Op == AluOp::kXor) return {a ^ b, 0};
  else return alu(Op, a, b, S, c.flags());
}

template <AluOp Op, unsigned S>
EMU_INLINE void alu_set_flags(Cpu& c, uint32_t a, uint32_t b, const AluResult& r) {
  if constexpr (Op == AluOp::kAdd) c.set_lazy<Cpu::kLazyAdd, S>(a, b);
  else if constexpr (Op == AluOp::kSub || Op == AluOp::kCmp) c.set_lazy<Cpu::kLazySub, S>(a, b);
  else if constexpr (kLazyAlu<Op>) c.set_lazy<Cpu::kLazyLogic, S>(r.value, 0);
  else c.eflags = r.flags;
}

template <AluOp Op, unsigned S, Form F>
void alu_op(Cpu& c, const Insn& i) {
  constexpr bool kWrites = Op != AluOp::kCmp;
  if constexpr (F == Form::kRR || F == Form::kRM || F == Form::kRI) {
    const uint32_t a = c.reg<S>(i.r1);
    uint32_t b;
    if constexpr (F == Form::kRR) b = c.reg<S>(i.r2);
    else if constexpr (F == Form::kRM) b = mem_read<S>(c, i);
    else b = i.imm;
    const AluResult r = alu_compute<Op, S>(c, a, b);
    if constexpr (kWrites) c.set_reg<S>(i.r1, r.value);
    alu_set_flags<Op, S>(c, a, b, r);
  } else {
    const uint32_t ea = effective_address(c, i);
    const uint32_t a = kWrites ? c.read_for_write<S>(i.seg, ea) : c.read<S>(i.seg, ea);
    uint32_t b;
    if constexpr (F == Form::kMR) b = c.reg<S>(i.r2);
    else b = i.imm;
    const AluResult r = alu_compute<Op, S>(c, a, b);
    if constexpr (kWrites) c.write<S>(i.seg, ea, r.value);
    alu_set_flags<Op, S>(c, a, b, r);
  }
  next(c, i);
}

template <AluOp Op, unsigned S>
Handler alu_form(Form f) {
  switch (f) {
    case Form::kRR: return alu_op<Op, S, Form::kRR>;
    case Form::kRM: return alu_op<Op, S, Form::kRM>;
    case Form::kMR: return alu_op<Op, S, Form::kMR>;
    case Form::kRI: return alu_op<Op, S, Form::kRI>;
    case Form::kMI: return alu_op<Op, S, Form::kMI>;
  }
  return nullptr;
}
template <AluOp Op>
Handler alu_size(unsigned s, Form f) {
  return s == 1 ? alu_form<Op, 1>(f) : s == 2 ? alu_form<Op, 2>(f) : alu_form<Op, 4>(f);
}
Handler pick_alu(AluOp op, unsigned s, Form f) {
  switch (op) {
    case AluOp::kAdd: return alu_size<AluOp::kAdd>(s, f);
    case AluOp::kOr: return alu_size<AluOp::kOr>(s, f);
    case AluOp::kAdc: return alu_size<AluOp::kAdc>(s, f);
    case AluOp::kSbb: return alu_size<AluOp::kSbb>(s, f);
    case AluOp::kAnd: return alu_size<AluOp::kAnd>(s, f);
    case AluOp::kSub: return alu_size<AluOp::kSub>(s, f);
    case AluOp::kXor: return alu_size<AluOp::kXor>(s, f);
    case AluOp::kCmp: return alu_size<AluOp::kCmp>(s, f);
  }
  return nullptr;
}

// --- TEST ---------------------------------------------------------------------

template <unsigned S, Form F>
void test_op(Cpu& c, const Insn& i) {
  uint32_t a, b;
  if constexpr (F == Form::kRR) {
    a = c.reg<S>(i.r1);
    b = c.reg<S>(i.r2);
  } else if constexpr (F == Form::kRI) {
    a = c.reg<S>(i.r1);
    b = i.imm;
  } else if constexpr (F == Form::kMR) {
    a = mem_read<S>(c, i);
    b = c.reg<S>(i.r2);
  } else {
    a = mem_read<S>(c, i);
    b = i.imm;
  }
  c.set_lazy<Cpu::kLazyLogic, S>(a & b, 0);
  next(c, i);
}
template <unsigned S>
Handler test_form(Form f) {
  switch (f) {
    case Form::kRR: return test_op<S, Form::kRR>;
    case Form::kRI: return test_op<S, Form::kRI>;
    case Form::kMR: return test_op<S, Form::kMR>;
    case Form::kMI: return test_op<S, Form::kMI>;
    default: return nullptr;
  }
}

// --- unary ----------------------------------------------------------------------

enum class Unary : uint8_t { kInc, kDec, kNot, kNeg };

template <Unary K, unsigned S, bool Mem>
void unary_op(Cpu& c, const Insn& i) {
  uint32_t ea = 0, a;
  if constexpr (Mem) {
    ea = effective_address(c, i);
    a = c.read_for_write<S>(i.seg, ea);
  } else {
    a = c.reg<S>(i.r1);
  }
  uint32_t r;
  if constexpr (K == Unary::kInc) r = (a + 1) & kMask<S>;
  else if constexpr (K == Unary::kDec) r = (a - 1) & kMask<S>;
  else if constexpr (K == Unary::kNeg) r = (0 - a) & kMask<S>;
  else r = ~a & kMask<S>;
  if constexpr (Mem) c.write<S>(i.seg, ea, r);  // before the flags change: it may fault
  else c.set_reg<S>(i.r1, r);
  if constexpr (K == Unary::kInc || K == Unary::kDec) {
    const uint8_t cf = static_cast<uint8_t>(c.carry());
    c.set_lazy<K == Unary::kInc ? Cpu::kLazyInc : Cpu::kLazyDec, S>(a, 0);
    c.lazy_cf = cf;
  } else if constexpr (K == Unary::kNeg) {
    c.set_lazy<Cpu::kLazySub, S>(0, a);
  }
  next(c, i);
}
template <Unary K, unsigned S>
Handler unary_mem(bool mem) {
  return mem ? unary_op<K, S, true> : unary_op<K, S, false>;
}
template <Unary K>
Handler unary_size(unsigned s, bool mem) {
  return s == 1 ? unary_mem<K, 1>(mem) : s == 2 ? unary_mem<K, 2>(mem) : unary_mem<K, 4>(mem);
}

// --- shifts and rotates -----------------------------------------------------------

template <ShiftOp Op, unsigned S, bool Mem, bool Cl>
void shift_op(Cpu& c, const Insn& i) {
  const uint8_t count = static_cast<uint8_t>((Cl ? c.gpr[kEcx] : i.imm) & 0x1F);
  if constexpr (Mem) {
    const uint32_t ea = effective_address(c, i);
    const uint32_t a = c.read_for_write<S>(i.seg, ea);
    if (count != 0) {
      const AluResult r = shift(Op, a, count, S, c.flags());
      c.write<S>(i.seg, ea, r.value);
      c.eflags = r.flags;
    }
  } else if (count != 0) {
    const AluResult r = shift(Op, c.reg<S>(i.r1), count, S, c.flags());
    c.set_reg<S>(i.r1, r.value);
    c.eflags = r.flags;
  }
  next(c, i);
}
template <ShiftOp Op, unsigned S>
Handler shift_form(bool mem, bool cl) {
  if (mem) return cl ? shift_op<Op, S, true, true> : shift_op<Op, S, true, false>;
  return cl ? shift_op<Op, S, false, true> : shift_op<Op, S, false, false>;
}
template <ShiftOp Op>
Handler shift_size(unsigned s, bool mem, bool cl) {
  return s == 1 ? shift_form<Op, 1>(mem, cl) : s == 2 ? shift_form<Op, 2>(mem, cl) : shift_form<Op, 4>(mem, cl);
}
Handler pick_shift(ShiftOp op, unsigned s, bool mem, bool cl) {
  switch (op) {
    case ShiftOp::kRol: return shift_size<ShiftOp::kRol>(s, mem, cl);
    case ShiftOp::kRor: return shift_size<ShiftOp::kRor>(s, mem, cl);
    case ShiftOp::kRcl: return shift_size<ShiftOp::kRcl>(s, mem, cl);
    case ShiftOp::kRcr: return shift_size<ShiftOp::kRcr>(s, mem, cl);
    case ShiftOp::kShl: return shift_size<ShiftOp::kShl>(s, mem, cl);
    case ShiftOp::kShr: return shift_size<ShiftOp::kShr>(s, mem, cl);
    case ShiftOp::kSal: return shift_size<ShiftOp::kSal>(s, mem, cl);
    case ShiftOp::kSar: return shift_size<ShiftOp::kSar>(s, mem, cl);
  }
  return nullptr;
}

// SHLD/SHRD r/m, reg, imm8|CL.
template <bool Left, unsigned S, bool Mem, bool Cl>
void double_shift(Cpu& c, const Insn& i) {
  const uint8_t count = static_cast<uint8_t>((Cl ? c.gpr[kEcx] : i.imm) & 0x1F);
  const uint32_t src = c.reg<S>(i.r2);
  uint32_t ea = 0, a;
  if constexpr (Mem) {
    ea = effective_address(c, i);
    a = c.read_for_write<S>(i.seg, ea);
  } else {
    a = c.reg<S>(i.r1);
  }
  if (count != 0) {
    const AluResult r = Left ? shld(a, src, count, S, c.flags()) : shrd(a, src, count, S, c.flags());
    if constexpr (Mem) c.write<S>(i.seg, ea, r.value);
    else c.set_reg<S>(i.r1, r.value);
    c.eflags = r.flags;
  }
  next(c, i);
}
template <bool Left, unsigned S>
Handler double_shift_form(bool mem, bool cl) {
  if (mem) return cl ? double_shift<Left, S, true, true> : double_shift<Left, S, true, false>;
  return cl ? double_shift<Left, S, false, true> : double_shift<Left, S, false, false>;
}

// --- multiply and divide ------------------------------------------------------------

template <unsigned S, bool Mem>
EMU_INLINE uint32_t rm_value(Cpu& c, const Insn& i) {
  if constexpr (Mem) return mem_read<S>(c, i);
  else return c.reg<S>(i.r1);
}

template <unsigned S>
EMU_INLINE void write_pair(Cpu& c, uint32_t lo, uint32_t hi) {
  if constexpr (S == 1) {
    c.set_reg<2>(kEax * 4, (lo & 0xFF) | ((hi & 0xFF) << 8));
  } else {
    c.set_reg<S>(kEax * 4, lo);
    c.set_reg<S>(kEdx * 4, hi);
  }
}

template <bool Signed, unsigned S, bool Mem>
void mul_op(Cpu& c, const Insn& i) {
  const uint32_t b = rm_value<S, Mem>(c, i);
  const uint32_t a = c.reg<S>(kEax * 4);
  const MulResult r = Signed ? imul(a, b, S, c.flags()) : mul(a, b, S, c.flags());
  if constexpr (S == 1) c.set_reg<2>(kEax * 4, r.lo);  // alu.h: the whole 16-bit product in lo
  else write_pair<S>(c, r.lo, r.hi);
  c.eflags = r.flags;
  next(c, i);
}

template <bool Signed, unsigned S, bool Mem>
void div_op(Cpu& c, const Insn& i) {
  const uint32_t divisor = rm_value<S, Mem>(c, i);
  uint32_t lo, hi;
  if constexpr (S == 1) {
    lo = c.gpr[kEax] & 0xFF;
    hi = (c.gpr[kEax] >> 8) & 0xFF;
  } else {
    lo = c.reg<S>(kEax * 4);
    hi = c.reg<S>(kEdx * 4);
  }
  const std::optional<DivResult> r =
      Signed ? idiv(lo, hi, divisor, S, c.flags()) : div(lo, hi, divisor, S, c.flags());
  if (!r) raise(kVecDE);
  write_pair<S>(c, r->quotient, r->remainder);
  c.eflags = r->flags;
  next(c, i);
}

template <bool Signed, unsigned S>
Handler mul_form(bool mem) {
  return mem ? mul_op<Signed, S, true> : mul_op<Signed, S, false>;
}
template <bool Signed, unsigned S>
Handler div_form(bool mem) {
  return mem ? div_op<Signed, S, true> : div_op<Signed, S, false>;
}

// IMUL r, r/m  and  IMUL r, r/m, imm (imm in imm2 for the 3-operand form).
template <unsigned S, bool Mem, bool Three>
void imul_op(Cpu& c, const Insn& i) {
  uint32_t b;
  if constexpr (Mem) b = mem_read<S>(c, i);
  else b = c.reg<S>(i.r2);
  const uint32_t a = Three ? i.imm2 : c.reg<S>(i.r1);
  const AluResult r = imul_trunc(a, b, S, c.flags());
  c.set_reg<S>(i.r1, r.value);
  c.eflags = r.flags;
  next(c, i);
}
template <unsigned S>
Handler imul_form(bool mem, bool three) {
  if (mem) return three ? imul_op<S, true, true> : imul_op<S, true, false>;
  return three ? imul_op<S, false, true> : imul_op<S, false, false>;
}

// --- bit test ---------------------------------------------------------------------

template <BitOp Op, unsigned S, bool Mem, bool Imm>
void bit_op(Cpu& c, const Insn& i) {
  constexpr bool kWrites = Op != BitOp::kBt;
  const uint32_t bitoff = Imm ? i.imm : c.reg<S>(i.r2);
  const unsigned bit = bitoff & (S * 8 - 1);
  if constexpr (Mem) {
    uint32_t ea = effective_address(c, i);
    if constexpr (!Imm) {
      // A register bit offset addresses the whole bit string (signed).
      const int32_t soff = static_cast<int32_t>(sign_extend<S>(bitoff));
      ea += static_cast<uint32_t>((soff >> (S == 2 ? 4 : 5)) * static_cast<int32_t>(S));
      if (i.flags & kInsnAddr16) ea &= 0xFFFF;
    }
    const uint32_t v = kWrites ? c.read_for_write<S>(i.seg, ea) : c.read<S>(i.seg, ea);
    const AluResult r = bit_test(Op, v, bit, S, c.flags());
    if constexpr (kWrites) c.write<S>(i.seg, ea, r.value);
    c.eflags = r.flags;
  } else {
    const AluResult r = bit_test(Op, c.reg<S>(i.r1), bit, S, c.flags());
    if constexpr (kWrites) c.set_reg<S>(i.r1, r.value);
    c.eflags = r.flags;
  }
  next(c, i);
}
template <BitOp Op, unsigned S>
Handler bit_form(bool mem, bool imm) {
  if (mem) return imm ? bit_op<Op, S, true, true> : bit_op<Op, S, true, false>;
  return imm ? bit_op<Op, S, false, true> : bit_op<Op, S, false, false>;
}
template <BitOp Op>
Handler bit_size(unsigned s, bool mem, bool imm) {
  return s == 2 ? bit_form<Op, 2>(mem, imm) : bit_form<Op, 4>(mem, imm);
}

template <bool Forward, unsigned S, bool Mem>
void bitscan_op(Cpu& c, const Insn& i) {
  uint32_t src;
  if constexpr (Mem) src = mem_read<S>(c, i);
  else src = c.reg<S>(i.r2);
  const uint32_t dst = c.reg<S>(i.r1);
  const AluResult r = Forward ? bsf(dst, src, S, c.flags()) : bsr(dst, src, S, c.flags());
  c.set_reg<S>(i.r1, r.value);
  c.eflags = r.flags;
  next(c, i);
}
template <bool Forward, unsigned S>
Handler bitscan_form(bool mem) {
  return mem ? bitscan_op<Forward, S, true> : bitscan_op<Forward, S, false>;
}

// --- exchange-and-add / compare-and-exchange ---------------------------------------------

template <unsigned S, bool Mem>
void xadd_op(Cpu& c, const Insn& i) {
  const uint32_t src = c.reg<S>(i.r2);
  if constexpr (Mem) {
    const uint32_t ea = effective_address(c, i);
    const uint32_t dst = c.read_for_write<S>(i.seg, ea);
    c.write<S>(i.seg, ea, (dst + src) & kMask<S>);
    c.set_reg<S>(i.r2, dst);
    c.set_lazy<Cpu::kLazyAdd, S>(dst, src);
  } else {
    const uint32_t dst = c.reg<S>(i.r1);
    c.set_reg<S>(i.r2, dst);
    c.set_reg<S>(i.r1, (dst + src) & kMask<S>);
    c.set_lazy<Cpu::kLazyAdd, S>(dst, src);
  }
  next(c, i);
}

template <unsigned S, bool Mem>
void cmpxchg_op(Cpu& c, const Insn& i) {
  const uint32_t acc = c.reg<S>(kEax * 4);
  const uint32_t src = c.reg<S>(i.r2);
  if constexpr (Mem) {
    const uint32_t ea = effective_address(c, i);
    const uint32_t dst = c.read_for_write<S>(i.seg, ea);
    // The destination is always written (the locked bus cycle of the SDM).
    c.write<S>(i.seg, ea, acc == dst ? src : dst);
    if (acc != dst) c.set_reg<S>(kEax * 4, dst);
    c.set_lazy<Cpu::kLazySub, S>(acc, dst);
  } else {
    const uint32_t dst = c.reg<S>(i.r1);
    if (acc == dst) c.set_reg<S>(i.r1, src);
    else c.set_reg<S>(kEax * 4, dst);
    c.set_lazy<Cpu::kLazySub, S>(acc, dst);
  }
  next(c, i);
}

void cmpxchg8b_op(Cpu& c, const Insn& i) {
  const uint32_t ea = effective_address(c, i);
  const uint32_t lin = c.check_segment(i.seg, ea, 8, true);
  c.probe_write(lin, 8);
  uint8_t buf[8];
  c.read_bytes(lin, buf);
  uint32_t lo, hi;
  std::memcpy(&lo, buf, 4);
  std::memcpy(&hi, buf + 4, 4);
  c.flags();
  if (lo == c.gpr[kEax] && hi == c.gpr[kEdx]) {
    std::memcpy(buf, &c.gpr[kEbx], 4);
    std::memcpy(buf + 4, &c.gpr[kEcx], 4);
    c.write_bytes(lin, buf);
    c.eflags |= kZF;
  } else {
    c.write_bytes(lin, buf);
    c.gpr[kEax] = lo;
    c.gpr[kEdx] = hi;
    c.eflags &= ~kZF;
  }
  next(c, i);
}

// --- BCD and accumulator adjustments -------------------------------------------------

template <int K>
void bcd_op(Cpu& c, const Insn& i) {
  const uint32_t ax = c.gpr[kEax] & 0xFFFF;
  AluResult r;
  if constexpr (K == 0) r = daa(ax, c.flags());
  else if constexpr (K == 1) r = das(ax, c.flags());
  else if constexpr (K == 2) r = aaa(ax, c.flags());
  else r = aas(ax, c.flags());
  if constexpr (K <= 1) c.set_reg<1>(0, r.value);  // DAA/DAS change AL only
  else c.set_reg<2>(0, r.value);
  c.eflags = r.flags;
  next(c, i);
}

void aam_op(Cpu& c, const Insn& i) {
  const std::optional<AluResult> r = aam(c.gpr[kEax] & 0xFFFF, static_cast<uint8_t>(i.imm), c.flags());
  if (!r) raise(kVecDE);
  c.set_reg<2>(0, r->value);
  c.eflags = r->flags;
  next(c, i);
}

void aad_op(Cpu& c, const Insn& i) {
  const AluResult r = aad(c.gpr[kEax] & 0xFFFF, static_cast<uint8_t>(i.imm), c.flags());
  c.set_reg<2>(0, r.value);
  c.eflags = r.flags;
  next(c, i);
}

// --- translation ------------------------------------------------------------------

// Two-operand forms: op0 reg/mem, op1 reg/mem/imm.
bool two_operand_form(const Decoded& d, Insn& in, Form& f) {
  const unsigned size = d.size(0);
  if (d.is_reg(0)) {
    if (!set_reg_operand(d, 0, in.r1)) return false;
    if (d.is_reg(1)) {
      if (!set_reg_operand(d, 1, in.r2)) return false;
      f = Form::kRR;
    } else if (d.is_mem(1)) {
      if (!set_memory(d, 1, in)) return false;
      f = Form::kRM;
    } else if (d.is_imm(1)) {
      in.imm = imm_of(d, 1) & (size == 1 ? 0xFFu : size == 2 ? 0xFFFFu : 0xFFFFFFFFu);
      f = Form::kRI;
    } else {
      return false;
    }
    return true;
  }
  if (d.is_mem(0)) {
    if (!set_memory(d, 0, in)) return false;
    if (d.is_reg(1)) {
      if (!set_reg_operand(d, 1, in.r2)) return false;
      f = Form::kMR;
    } else if (d.is_imm(1)) {
      in.imm = imm_of(d, 1) & (size == 1 ? 0xFFu : size == 2 ? 0xFFFFu : 0xFFFFFFFFu);
      f = Form::kMI;
    } else {
      return false;
    }
    return true;
  }
  return false;
}

// op0 as the r/m operand of a one-operand instruction: r1 or memory.
bool rm_operand(const Decoded& d, unsigned n, Insn& in, bool& mem) {
  if (d.is_reg(n)) {
    mem = false;
    return set_reg_operand(d, n, in.r1);
  }
  if (d.is_mem(n)) {
    mem = true;
    return set_memory(d, n, in);
  }
  return false;
}

bool valid_size(unsigned s) { return s == 1 || s == 2 || s == 4; }

}  // namespace

bool translate_alu(const Decoded& d, Insn& in) {
  const ZydisMnemonic m = d.zi.mnemonic;
  AluOp op;
  switch (m) {
    case ZYDIS_MNEMONIC_ADD: op = AluOp::kAdd; goto binary;
    case ZYDIS_MNEMONIC_OR: op = AluOp::kOr; goto binary;
    case ZYDIS_MNEMONIC_ADC: op = AluOp::kAdc; goto binary;
    case ZYDIS_MNEMONIC_SBB: op = AluOp::kSbb; goto binary;
    case ZYDIS_MNEMONIC_AND: op = AluOp::kAnd; goto binary;
    case ZYDIS_MNEMONIC_SUB: op = AluOp::kSub; goto binary;
    case ZYDIS_MNEMONIC_XOR: op = AluOp::kXor; goto binary;
    case ZYDIS_MNEMONIC_CMP: op = AluOp::kCmp; goto binary;
    binary: {
      Form f;
      const unsigned s = d.size(0);
      if (!valid_size(s) || !two_operand_form(d, in, f)) return false;
      in.fn = pick_alu(op, s, f);
      if (op != AluOp::kAdc && op != AluOp::kSbb) {
        in.jit = jit_alu(static_cast<JitOperands>(f), static_cast<uint8_t>(op));
      }
      return in.fn != nullptr;
    }
    case ZYDIS_MNEMONIC_TEST: {
      Form f;
      const unsigned s = d.size(0);
      if (!valid_size(s) || !two_operand_form(d, in, f)) return false;
      in.fn = s == 1 ? test_form<1>(f) : s == 2 ? test_form<2>(f) : test_form<4>(f);
      in.jit = jit_test(static_cast<JitOperands>(f));
      return in.fn != nullptr;
    }
    case ZYDIS_MNEMONIC_INC:
    case ZYDIS_MNEMONIC_DEC:
    case ZYDIS_MNEMONIC_NOT:
    case ZYDIS_MNEMONIC_NEG: {
      bool mem;
      const unsigned s = d.size(0);
      if (!valid_size(s) || !rm_operand(d, 0, in, mem)) return false;
      in.fn = m == ZYDIS_MNEMONIC_INC   ? unary_size<Unary::kInc>(s, mem)
              : m == ZYDIS_MNEMONIC_DEC ? unary_size<Unary::kDec>(s, mem)
              : m == ZYDIS_MNEMONIC_NOT ? unary_size<Unary::kNot>(s, mem)
                                        : unary_size<Unary::kNeg>(s, mem);
      if (s == 4 && !mem && m == ZYDIS_MNEMONIC_INC) in.jit = JitForm::kInc32;
      if (s == 4 && !mem && m == ZYDIS_MNEMONIC_DEC) in.jit = JitForm::kDec32;
      if (s == 4 && !mem && m == ZYDIS_MNEMONIC_NOT) in.jit = JitForm::kNot32;
      if (s == 4 && !mem && m == ZYDIS_MNEMONIC_NEG) in.jit = JitForm::kNeg32;
      return true;
    }
    case ZYDIS_MNEMONIC_ROL:
    case ZYDIS_MNEMONIC_ROR:
    case ZYDIS_MNEMONIC_RCL:
    case ZYDIS_MNEMONIC_RCR:
    case ZYDIS_MNEMONIC_SHL:
    case ZYDIS_MNEMONIC_SHR:
    case ZYDIS_MNEMONIC_SAR: {
      bool mem;
      const unsigned s = d.size(0);
      if (!valid_size(s) || !rm_operand(d, 0, in, mem)) return false;
      bool cl;
      if (d.is_imm(1)) {
        cl = false;
        in.imm = imm_of(d, 1) & 0xFF;
      } else if (d.is_reg(1) && d.op(1).reg.value == ZYDIS_REGISTER_CL) {
        cl = true;
      } else {
        return false;
      }
      const ShiftOp so = m == ZYDIS_MNEMONIC_ROL   ? ShiftOp::kRol
                         : m == ZYDIS_MNEMONIC_ROR ? ShiftOp::kRor
                         : m == ZYDIS_MNEMONIC_RCL ? ShiftOp::kRcl
                         : m == ZYDIS_MNEMONIC_RCR ? ShiftOp::kRcr
                         : m == ZYDIS_MNEMONIC_SHL ? ShiftOp::kShl
                         : m == ZYDIS_MNEMONIC_SHR ? ShiftOp::kShr
                                                   : ShiftOp::kSar;
      in.fn = pick_shift(so, s, mem, cl);
      if (s == 4 && !mem && !cl && so != ShiftOp::kRcl && so != ShiftOp::kRcr) {
        in.jit = JitForm::kShift32RI;
        in.aux2 = static_cast<uint8_t>(so);
      }
      return true;
    }
    case ZYDIS_MNEMONIC_SHLD:
    case ZYDIS_MNEMONIC_SHRD: {
      bool mem;
      const unsigned s = d.size(0);
      if ((s != 2 && s != 4) || !rm_operand(d, 0, in, mem) || !set_reg_operand(d, 1, in.r2)) return false;
      bool cl;
      if (d.is_imm(2)) {
        cl = false;
        in.imm = imm_of(d, 2) & 0xFF;
      } else if (d.is_reg(2) && d.op(2).reg.value == ZYDIS_REGISTER_CL) {
        cl = true;
      } else {
        return false;
      }
      const bool left = m == ZYDIS_MNEMONIC_SHLD;
      if (left) in.fn = s == 2 ? double_shift_form<true, 2>(mem, cl) : double_shift_form<true, 4>(mem, cl);
      else in.fn = s == 2 ? double_shift_form<false, 2>(mem, cl) : double_shift_form<false, 4>(mem, cl);
      return true;
    }
    case ZYDIS_MNEMONIC_MUL:
    case ZYDIS_MNEMONIC_DIV:
    case ZYDIS_MNEMONIC_IDIV: {
      bool mem;
      const unsigned s = d.size(0);
      if (!valid_size(s) || !rm_operand(d, 0, in, mem)) return false;
      if (m == ZYDIS_MNEMONIC_MUL) {
        in.fn = s == 1 ? mul_form<false, 1>(mem) : s == 2 ? mul_form<false, 2>(mem) : mul_form<false, 4>(mem);
      } else if (m == ZYDIS_MNEMONIC_DIV) {
        in.fn = s == 1 ? div_form<false, 1>(mem) : s == 2 ? div_form<false, 2>(mem) : div_form<false, 4>(mem);
      } else {
        in.fn = s == 1 ? div_form<true, 1>(mem) : s == 2 ? div_form<true, 2>(mem) : div_form<true, 4>(mem);
      }
      return true;
    }
    case ZYDIS_MNEMONIC_IMUL: {
      if (d.visible() == 1) {
        bool mem;
        const unsigned s = d.size(0);
        if (!valid_size(s) || !rm_operand(d, 0, in, mem)) return false;
        in.fn = s == 1 ? mul_form<true, 1>(mem) : s == 2 ? mul_form<true, 2>(mem) : mul_form<true, 4>(mem);
        return true;
      }
      const unsigned s = d.size(0);
      if ((s != 2 && s != 4) || !set_reg_operand(d, 0, in.r1)) return false;
      bool mem;
      if (d.is_reg(1)) {
        mem = false;
        if (!set_reg_operand(d, 1, in.r2)) return false;
      } else if (d.is_mem(1)) {
        mem = true;
        if (!set_memory(d, 1, in)) return false;
      } else {
        return false;
      }
      const bool three = d.visible() == 3;
      if (three) {
        if (!d.is_imm(2)) return false;
        in.imm2 = imm_of(d, 2) & (s == 2 ? 0xFFFFu : 0xFFFFFFFFu);
      }
      in.fn = s == 2 ? imul_form<2>(mem, three) : imul_form<4>(mem, three);
      return true;
    }
    case ZYDIS_MNEMONIC_BT:
    case ZYDIS_MNEMONIC_BTS:
    case ZYDIS_MNEMONIC_BTR:
    case ZYDIS_MNEMONIC_BTC: {
      bool mem;
      const unsigned s = d.size(0);
      if ((s != 2 && s != 4) || !rm_operand(d, 0, in, mem)) return false;
      bool imm;
      if (d.is_imm(1)) {
        imm = true;
        in.imm = imm_of(d, 1) & 0xFF;
      } else if (set_reg_operand(d, 1, in.r2)) {
        imm = false;
      } else {
        return false;
      }
      in.fn = m == ZYDIS_MNEMONIC_BT    ? bit_size<BitOp::kBt>(s, mem, imm)
              : m == ZYDIS_MNEMONIC_BTS ? bit_size<BitOp::kBts>(s, mem, imm)
              : m == ZYDIS_MNEMONIC_BTR ? bit_size<BitOp::kBtr>(s, mem, imm)
                                        : bit_size<BitOp::kBtc>(s, mem, imm);
      return true;
    }
    case ZYDIS_MNEMONIC_BSF:
    case ZYDIS_MNEMONIC_BSR:
    // F3 0F BC/BD: without BMI1/LZCNT (not in our CPUID) the REP prefix is
    // ignored and these are BSF/BSR; Linux's __ffs uses "rep; bsf" on purpose.
    case ZYDIS_MNEMONIC_TZCNT:
    case ZYDIS_MNEMONIC_LZCNT: {
      const unsigned s = d.size(0);
      if ((s != 2 && s != 4) || !set_reg_operand(d, 0, in.r1)) return false;
      bool mem;
      if (d.is_reg(1)) {
        mem = false;
        if (!set_reg_operand(d, 1, in.r2)) return false;
      } else if (d.is_mem(1)) {
        mem = true;
        if (!set_memory(d, 1, in)) return false;
      } else {
        return false;
      }
      const bool fwd = m == ZYDIS_MNEMONIC_BSF || m == ZYDIS_MNEMONIC_TZCNT;
      if (fwd) in.fn = s == 2 ? bitscan_form<true, 2>(mem) : bitscan_form<true, 4>(mem);
      else in.fn = s == 2 ? bitscan_form<false, 2>(mem) : bitscan_form<false, 4>(mem);
      return true;
    }
    case ZYDIS_MNEMONIC_XADD:
    case ZYDIS_MNEMONIC_CMPXCHG: {
      bool mem;
      const unsigned s = d.size(0);
      if (!valid_size(s) || !rm_operand(d, 0, in, mem) || !set_reg_operand(d, 1, in.r2)) return false;
      if (m == ZYDIS_MNEMONIC_XADD) {
        in.fn = s == 1   ? (mem ? xadd_op<1, true> : xadd_op<1, false>)
                : s == 2 ? (mem ? xadd_op<2, true> : xadd_op<2, false>)
                         : (mem ? xadd_op<4, true> : xadd_op<4, false>);
      } else {
        in.fn = s == 1   ? (mem ? cmpxchg_op<1, true> : cmpxchg_op<1, false>)
                : s == 2 ? (mem ? cmpxchg_op<2, true> : cmpxchg_op<2, false>)
                         : (mem ? cmpxchg_op<4, true> : cmpxchg_op<4, false>);
      }
      return true;
    }
    case ZYDIS_MNEMONIC_CMPXCHG8B:
      if (!d.is_mem(0) || !set_memory(d, 0, in)) return false;
      in.fn = cmpxchg8b_op;
      return true;
    case ZYDIS_MNEMONIC_DAA: in.fn = bcd_op<0>; return true;
    case ZYDIS_MNEMONIC_DAS: in.fn = bcd_op<1>; return true;
    case ZYDIS_MNEMONIC_AAA: in.fn = bcd_op<2>; return true;
    case ZYDIS_MNEMONIC_AAS: in.fn = bcd_op<3>; return true;
    case ZYDIS_MNEMONIC_AAM:
    case ZYDIS_MNEMONIC_AAD:
      in.imm = 10;
      for (unsigned n = 0; n < d.visible(); ++n) {
        if (d.is_imm(n)) in.imm = imm_of(d, n) & 0xFF;
      }
      in.fn = m == ZYDIS_MNEMONIC_AAM ? aam_op : aad_op;
      return true;
    default:
      return false;
  }
}

}  // namespace twoostwo::vmcore::emu
