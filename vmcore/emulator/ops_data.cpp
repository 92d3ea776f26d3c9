// Data movement handlers: MOV (GPR and segment registers), MOVZX/MOVSX, LEA,
// XCHG, BSWAP, PUSH/POP (+A, +F), CBW..CDQ, LAHF/SAHF, the flag
// instructions, SETcc, CMOVcc, XLAT, SALC, LDS..LSS, ENTER/LEAVE, BOUND, NOP.
#include "vmcore/emulator/ops.h"

namespace twoostwo::vmcore::emu {
namespace {

// --- MOV --------------------------------------------------------------------------

template <unsigned S>
void mov_rr(Cpu& c, const Insn& i) {
  c.set_reg<S>(i.r1, c.reg<S>(i.r2));
  next(c, i);
}
template <unsigned S>
void mov_rm(Cpu& c, const Insn& i) {
  c.set_reg<S>(i.r1, mem_read<S>(c, i));
  next(c, i);
}
template <unsigned S>
void mov_mr(Cpu& c, const Insn& i) {
  mem_write<S>(c, i, c.reg<S>(i.r2));
  next(c, i);
}
template <unsigned S>
void mov_ri(Cpu& c, const Insn& i) {
  c.set_reg<S>(i.r1, i.imm);
  next(c, i);
}
template <unsigned S>
void mov_mi(Cpu& c, const Insn& i) {
  mem_write<S>(c, i, i.imm);
  next(c, i);
}

// MOV r/m, Sreg (aux = segment). A 32-bit register destination is zero-extended.
template <unsigned S>
void mov_r_sreg(Cpu& c, const Insn& i) {
  c.set_reg<S>(i.r1, c.seg[i.aux].selector);
  next(c, i);
}
void mov_m_sreg(Cpu& c, const Insn& i) {
  mem_write<2>(c, i, c.seg[i.aux].selector);
  next(c, i);
}
template <bool Mem>
void mov_sreg(Cpu& c, const Insn& i) {
  const uint16_t sel = static_cast<uint16_t>(Mem ? mem_read<2>(c, i) : c.reg<2>(i.r2));
  c.load_segment(i.aux, sel);
  if (i.aux == kSs) c.irq_shadow = true;
  next(c, i);
}

// MOVZX / MOVSX: D = destination size, S = source size.
template <unsigned D, unsigned S, bool Signed, bool Mem>
void movx(Cpu& c, const Insn& i) {
  uint32_t v = Mem ? mem_read<S>(c, i) : c.reg<S>(i.r2);
  if constexpr (Signed) v = sign_extend<S>(v);
  c.set_reg<D>(i.r1, v);
  next(c, i);
}

template <unsigned S>
void lea(Cpu& c, const Insn& i) {
  c.set_reg<S>(i.r1, effective_address(c, i));
  next(c, i);
}

template <unsigned S>
void xchg_rr(Cpu& c, const Insn& i) {
  const uint32_t a = c.reg<S>(i.r1), b = c.reg<S>(i.r2);
  c.set_reg<S>(i.r1, b);
  c.set_reg<S>(i.r2, a);
  next(c, i);
}
// XCHG r/m, r with memory (either operand order; the register is r2).
template <unsigned S>
void xchg_m(Cpu& c, const Insn& i) {
  const uint32_t ea = effective_address(c, i);
  const uint32_t old = c.read_for_write<S>(i.seg, ea);
  c.write<S>(i.seg, ea, c.reg<S>(i.r2));
  c.set_reg<S>(i.r2, old);
  next(c, i);
}

void bswap32(Cpu& c, const Insn& i) {
  c.set_reg<4>(i.r1, bswap(c.reg<4>(i.r1)));
  next(c, i);
}
void bswap16(Cpu& c, const Insn& i) {
  c.set_reg<2>(i.r1, 0);  // undefined by the SDM; zero like most CPUs
  next(c, i);
}

// --- stack ------------------------------------------------------------------------

template <unsigned S>
void push_r(Cpu& c, const Insn& i) {
  c.push<S>(c.reg<S>(i.r1));
  next(c, i);
}
template <unsigned S>
void push_m(Cpu& c, const Insn& i) {
  c.push<S>(mem_read<S>(c, i));
  next(c, i);
}
template <unsigned S>
void push_i(Cpu& c, const Insn& i) {
  c.push<S>(i.imm);
  next(c, i);
}
template <unsigned S>
void push_sreg(Cpu& c, const Insn& i) {
  c.push<S>(c.seg[i.aux].selector);
  next(c, i);
}
template <unsigned S>
void pop_r(Cpu& c, const Insn& i) {
  const uint32_t v = c.pop<S>();
  c.set_reg<S>(i.r1, v);  // POP ESP: the popped value wins
  next(c, i);
}
template <unsigned S>
void pop_m(Cpu& c, const Insn& i) {
  const uint32_t old_esp = c.gpr[kEsp];
  const uint32_t v = c.pop<S>();
  try {
    mem_write<S>(c, i, v);  // the address uses the incremented ESP
  } catch (...) {
    c.gpr[kEsp] = old_esp;
    throw;
  }
  next(c, i);
}
template <unsigned S>
void pop_sreg(Cpu& c, const Insn& i) {
  const uint32_t v = c.peek<S>(0);
  c.load_segment(i.aux, static_cast<uint16_t>(v));
  c.set_sp(c.sp() + S);
  if (i.aux == kSs) c.irq_shadow = true;
  next(c, i);
}

template <unsigned S>
void pusha(Cpu& c, const Insn& i) {
  const uint32_t mask = c.stack32() ? 0xFFFFFFFFu : 0xFFFFu;
  const uint32_t sp = c.sp();
  const uint32_t regs[8] = {c.gpr[kEax], c.gpr[kEcx], c.gpr[kEdx], c.gpr[kEbx],
                            c.gpr[kEsp], c.gpr[kEbp], c.gpr[kEsi], c.gpr[kEdi]};
  for (unsigned k = 0; k < 8; ++k) c.write<S>(kSs, (sp - (k + 1) * S) & mask, regs[k]);
  c.set_sp(sp - 8 * S);
  next(c, i);
}
template <unsigned S>
void popa(Cpu& c, const Insn& i) {
  uint32_t v[8];
  for (unsigned k = 0; k < 8; ++k) v[k] = c.peek<S>(k * S);
  // v[0] = EDI ... v[7] = EAX; v[3] (ESP) is skipped.
  const uint8_t order[8] = {kEdi, kEsi, kEbp, kEsp, kEbx, kEdx, kEcx, kEax};
  for (unsigned k = 0; k < 8; ++k) {
    if (order[k] != kEsp) c.set_reg<S>(order[k] * 4, v[k]);
  }
  c.set_sp(c.sp() + 8 * S);
  next(c, i);
}

template <unsigned S>
void pushf(Cpu& c, const Insn& i) {
  if (c.v86() && c.iopl() < 3) raise_gp(0);
  c.push<S>(c.flags() & ~(kVM | kRF));
  next(c, i);
}
template <unsigned S>
void popf(Cpu& c, const Insn& i) {
  if (c.v86() && c.iopl() < 3) raise_gp(0);
  const uint32_t v = c.peek<S>(0);
  uint32_t mask = kArithFlags | kTF | kDF | kNT | kAC | kID | kIF | kIoplMask;
  if (c.protected_mode() && c.cpl > 0) mask &= ~kIoplMask;
  if (c.protected_mode() && c.cpl > c.iopl()) mask &= ~kIF;
  if constexpr (S == 2) mask &= 0xFFFF;
  c.set_sp(c.sp() + S);
  c.write_eflags(v, mask);
  c.eflags &= ~kRF;
  next(c, i);
}

// ENTER imm16, imm8 (imm = frame size, imm2 = nesting level).
template <unsigned S>
void enter(Cpu& c, const Insn& i) {
  const uint32_t mask = c.stack32() ? 0xFFFFFFFFu : 0xFFFFu;
  const unsigned level = i.imm2 & 31;
  uint32_t sp = c.sp();
  uint32_t bp = c.gpr[kEbp];
  sp = (sp - S) & mask;
  c.write<S>(kSs, sp, bp);
  const uint32_t frame = sp;
  if (level > 0) {
    for (unsigned k = 1; k < level; ++k) {
      bp = (bp - S) & mask;
      const uint32_t v = c.read<S>(kSs, bp & mask);
      sp = (sp - S) & mask;
      c.write<S>(kSs, sp, v);
    }
    sp = (sp - S) & mask;
    c.write<S>(kSs, sp, frame);
  }
  sp = (sp - i.imm) & mask;
  c.set_reg<S>(kEbp * 4, frame);
  c.set_sp(sp);
  next(c, i);
}
template <unsigned S>
void leave(Cpu& c, const Insn& i) {
  const uint32_t bp = c.stack32() ? c.gpr[kEbp] : c.gpr[kEbp] & 0xFFFF;
  const uint32_t v = c.read<S>(kSs, bp);
  c.set_sp(bp + S);
  c.set_reg<S>(kEbp * 4, v);
  next(c, i);
}

template <unsigned S>
void bound(Cpu& c, const Insn& i) {
  const uint32_t ea = effective_address(c, i);
  const uint32_t mask = (i.flags & kInsnAddr16) ? 0xFFFFu : 0xFFFFFFFFu;
  const auto lower = static_cast<int32_t>(sign_extend<S>(c.read<S>(i.seg, ea)));
  const auto upper = static_cast<int32_t>(sign_extend<S>(c.read<S>(i.seg, (ea + S) & mask)));
  const auto index = static_cast<int32_t>(sign_extend<S>(c.reg<S>(i.r1)));
  if (index < lower || index > upper) raise(kVecBR);
  next(c, i);
}

// --- conversions and flags ------------------------------------------------------------

void cbw(Cpu& c, const Insn& i) {
  c.set_reg<2>(0, sign_extend<1>(c.gpr[kEax] & 0xFF));
  next(c, i);
}
void cwde(Cpu& c, const Insn& i) {
  c.gpr[kEax] = sign_extend<2>(c.gpr[kEax] & 0xFFFF);
  next(c, i);
}
void cwd(Cpu& c, const Insn& i) {
  c.set_reg<2>(kEdx * 4, (c.gpr[kEax] & 0x8000) ? 0xFFFF : 0);
  next(c, i);
}
void cdq(Cpu& c, const Insn& i) {
  c.gpr[kEdx] = (c.gpr[kEax] & 0x80000000u) ? 0xFFFFFFFFu : 0;
  next(c, i);
}
void lahf(Cpu& c, const Insn& i) {
  c.set_reg<1>(1, (c.flags() & (kSF | kZF | kAF | kPF | kCF)) | 2);
  next(c, i);
}
void sahf(Cpu& c, const Insn& i) {
  const uint32_t ah = (c.gpr[kEax] >> 8) & 0xFF;
  constexpr uint32_t kMaskFlags = kSF | kZF | kAF | kPF | kCF;
  c.eflags = (c.flags() & ~kMaskFlags) | (ah & kMaskFlags);
  next(c, i);
}
template <uint32_t Clear, uint32_t Set, uint32_t Toggle>
void flag_op(Cpu& c, const Insn& i) {
  const uint32_t f = ((Clear | Set | Toggle) & kArithFlags) ? c.flags() : c.eflags;
  c.eflags = ((f & ~Clear) | Set) ^ Toggle;
  next(c, i);
}
void salc(Cpu& c, const Insn& i) {
  c.set_reg<1>(0, c.carry() ? 0xFF : 0);
  next(c, i);
}
void xlat(Cpu& c, const Insn& i) {
  uint32_t ea = c.gpr[kEbx] + (c.gpr[kEax] & 0xFF);
  if (i.flags & kInsnAddr16) ea &= 0xFFFF;
  c.set_reg<1>(0, c.read<1>(i.seg, ea));
  next(c, i);
}

template <bool Mem>
void setcc(Cpu& c, const Insn& i) {
  const uint32_t v = c.cond(i.aux) ? 1 : 0;
  if constexpr (Mem) mem_write<1>(c, i, v);
  else c.set_reg<1>(i.r1, v);
  next(c, i);
}
template <unsigned S, bool Mem>
void cmovcc(Cpu& c, const Insn& i) {
  const uint32_t v = Mem ? mem_read<S>(c, i) : c.reg<S>(i.r2);  // memory is read either way
  if (c.cond(i.aux)) c.set_reg<S>(i.r1, v);
  next(c, i);
}

// LDS/LES/LFS/LGS/LSS r, m16:16/32 (aux = segment).
template <unsigned S>
void load_far_pointer(Cpu& c, const Insn& i) {
  const uint32_t ea = effective_address(c, i);
  const uint32_t mask = (i.flags & kInsnAddr16) ? 0xFFFFu : 0xFFFFFFFFu;
  const uint32_t off = c.read<S>(i.seg, ea);
  const auto sel = static_cast<uint16_t>(c.read<2>(i.seg, (ea + S) & mask));
  c.load_segment(i.aux, sel);
  c.set_reg<S>(i.r1, off);
  next(c, i);
}

void nop(Cpu& c, const Insn& i) { next(c, i); }

bool is_gpr(const Decoded& d, unsigned n) { return d.is_reg(n) && reg_offset(d.op(n).reg.value) != 0xFF; }
bool is_sreg(const Decoded& d, unsigned n) { return d.is_reg(n) && seg_number(d.op(n).reg.value) != 0xFF; }

}  // namespace

bool translate_data(const Decoded& d, Insn& in) {
  const ZydisMnemonic m = d.zi.mnemonic;
  const unsigned opw = d.zi.operand_width / 8;  // 2 or 4 (operand-size attribute)
  switch (m) {
    case ZYDIS_MNEMONIC_MOV: {
      if (is_sreg(d, 0)) {
        // MOV Sreg, r/m16
        in.aux = seg_number(d.op(0).reg.value);
        if (in.aux == kCs) return false;
        if (is_gpr(d, 1)) {
          set_reg_operand(d, 1, in.r2);
          in.fn = mov_sreg<false>;
        } else if (d.is_mem(1)) {
          if (!set_memory(d, 1, in)) return false;
          in.fn = mov_sreg<true>;
        } else {
          return false;
        }
        if (in.aux == kSs) in.flags |= kInsnEndsBlock;  // interrupt shadow
        return true;
      }
      if (is_sreg(d, 1)) {
        in.aux = seg_number(d.op(1).reg.value);
        if (is_gpr(d, 0)) {
          set_reg_operand(d, 0, in.r1);
          in.fn = d.size(0) == 4 ? mov_r_sreg<4> : mov_r_sreg<2>;
        } else if (d.is_mem(0)) {
          if (!set_memory(d, 0, in)) return false;
          in.fn = mov_m_sreg;
        } else {
          return false;
        }
        return true;
      }
      const unsigned s = d.size(0);
      if (s != 1 && s != 2 && s != 4) return false;
      if (is_gpr(d, 0)) {
        set_reg_operand(d, 0, in.r1);
        if (is_gpr(d, 1)) {
          set_reg_operand(d, 1, in.r2);
          in.fn = s == 1 ? mov_rr<1> : s == 2 ? mov_rr<2> : mov_rr<4>;
          in.jit = JitForm::kMovRR;
        } else if (d.is_mem(1)) {
          if (!set_memory(d, 1, in)) return false;
          in.fn = s == 1 ? mov_rm<1> : s == 2 ? mov_rm<2> : mov_rm<4>;
          in.jit = JitForm::kMovRM;
        } else if (d.is_imm(1)) {
          in.imm = imm_of(d, 1);
          in.fn = s == 1 ? mov_ri<1> : s == 2 ? mov_ri<2> : mov_ri<4>;
          in.jit = JitForm::kMovRI;
        } else {
          return false;
        }
        return true;
      }
      if (d.is_mem(0)) {
        if (!set_memory(d, 0, in)) return false;
        if (is_gpr(d, 1)) {
          set_reg_operand(d, 1, in.r2);
          in.fn = s == 1 ? mov_mr<1> : s == 2 ? mov_mr<2> : mov_mr<4>;
          in.jit = JitForm::kMovMR;
        } else if (d.is_imm(1)) {
          in.imm = imm_of(d, 1);
          in.fn = s == 1 ? mov_mi<1> : s == 2 ? mov_mi<2> : mov_mi<4>;
          in.jit = JitForm::kMovMI;
        } else {
          return false;
        }
        return true;
      }
      return false;  // MOV CR/DR: translate_system
    }
    case ZYDIS_MNEMONIC_MOVZX:
    case ZYDIS_MNEMONIC_MOVSX: {
      const unsigned ds = d.size(0), ss = d.size(1);
      if (!is_gpr(d, 0)) return false;
      set_reg_operand(d, 0, in.r1);
      bool mem;
      if (is_gpr(d, 1)) {
        mem = false;
        set_reg_operand(d, 1, in.r2);
      } else if (d.is_mem(1)) {
        mem = true;
        if (!set_memory(d, 1, in)) return false;
      } else {
        return false;
      }
      const bool sx = m == ZYDIS_MNEMONIC_MOVSX;
#define EMU_MOVX(D, S)                                                                                  \
  (sx ? (mem ? movx<D, S, true, true> : movx<D, S, true, false>)                                       \
      : (mem ? movx<D, S, false, true> : movx<D, S, false, false>))
      if (ds == 2 && ss == 1) in.fn = EMU_MOVX(2, 1);
      else if (ds == 4 && ss == 1) in.fn = EMU_MOVX(4, 1);
      else if (ds == 4 && ss == 2) in.fn = EMU_MOVX(4, 2);
      else if (ds == 2 && ss == 2) in.fn = EMU_MOVX(2, 2);
      else return false;
#undef EMU_MOVX
      if (ds == 4) {
        static constexpr JitForm kForms[8] = {JitForm::kMovzxR8,  JitForm::kMovzxM8,  JitForm::kMovzxR16,
                                              JitForm::kMovzxM16, JitForm::kMovsxR8,  JitForm::kMovsxM8,
                                              JitForm::kMovsxR16, JitForm::kMovsxM16};
        in.jit = kForms[(sx ? 4 : 0) + (ss == 2 ? 2 : 0) + (mem ? 1 : 0)];
      }
      return true;
    }
    case ZYDIS_MNEMONIC_LEA: {
      if (!is_gpr(d, 0) || !d.is_mem(1) || !set_memory(d, 1, in)) return false;
      set_reg_operand(d, 0, in.r1);
      in.fn = d.size(0) == 2 ? lea<2> : lea<4>;
      if (d.size(0) == 4) in.jit = JitForm::kLea32;
      return true;
    }
    case ZYDIS_MNEMONIC_XCHG: {
      const unsigned s = d.size(0);
      if (s != 1 && s != 2 && s != 4) return false;
      if (is_gpr(d, 0) && is_gpr(d, 1)) {
        set_reg_operand(d, 0, in.r1);
        set_reg_operand(d, 1, in.r2);
        in.fn = s == 1 ? xchg_rr<1> : s == 2 ? xchg_rr<2> : xchg_rr<4>;
        return true;
      }
      unsigned memn, regn;
      if (d.is_mem(0) && is_gpr(d, 1)) {
        memn = 0;
        regn = 1;
      } else if (d.is_mem(1) && is_gpr(d, 0)) {
        memn = 1;
        regn = 0;
      } else {
        return false;
      }
      if (!set_memory(d, memn, in)) return false;
      set_reg_operand(d, regn, in.r2);
      in.fn = s == 1 ? xchg_m<1> : s == 2 ? xchg_m<2> : xchg_m<4>;
      return true;
    }
    case ZYDIS_MNEMONIC_BSWAP:
      if (!is_gpr(d, 0)) return false;
      set_reg_operand(d, 0, in.r1);
      in.fn = d.size(0) == 4 ? bswap32 : bswap16;
      return true;
    case ZYDIS_MNEMONIC_PUSH: {
      const unsigned s = opw;
      if (s != 2 && s != 4) return false;
      if (is_sreg(d, 0)) {
        in.aux = seg_number(d.op(0).reg.value);
        in.fn = s == 2 ? push_sreg<2> : push_sreg<4>;
      } else if (is_gpr(d, 0)) {
        set_reg_operand(d, 0, in.r1);
        in.fn = s == 2 ? push_r<2> : push_r<4>;
        if (s == 4) in.jit = JitForm::kPush32;
      } else if (d.is_mem(0)) {
        if (!set_memory(d, 0, in)) return false;
        in.fn = s == 2 ? push_m<2> : push_m<4>;
        if (s == 4) in.jit = JitForm::kPushM32;
      } else if (d.is_imm(0)) {
        in.imm = imm_of(d, 0) & (s == 2 ? 0xFFFFu : 0xFFFFFFFFu);
        in.fn = s == 2 ? push_i<2> : push_i<4>;
        if (s == 4) in.jit = JitForm::kPushI32;
      } else {
        return false;
      }
      return true;
    }
    case ZYDIS_MNEMONIC_POP: {
      const unsigned s = opw;
      if (s != 2 && s != 4) return false;
      if (is_sreg(d, 0)) {
        in.aux = seg_number(d.op(0).reg.value);
        if (in.aux == kCs) return false;
        in.fn = s == 2 ? pop_sreg<2> : pop_sreg<4>;
        if (in.aux == kSs) in.flags |= kInsnEndsBlock;
      } else if (is_gpr(d, 0)) {
        set_reg_operand(d, 0, in.r1);
        in.fn = s == 2 ? pop_r<2> : pop_r<4>;
        if (s == 4) in.jit = JitForm::kPop32;
      } else if (d.is_mem(0)) {
        if (!set_memory(d, 0, in)) return false;
        in.fn = s == 2 ? pop_m<2> : pop_m<4>;
      } else {
        return false;
      }
      return true;
    }
    case ZYDIS_MNEMONIC_PUSHA: in.fn = pusha<2>; return true;
    case ZYDIS_MNEMONIC_PUSHAD: in.fn = pusha<4>; return true;
    case ZYDIS_MNEMONIC_POPA: in.fn = popa<2>; return true;
    case ZYDIS_MNEMONIC_POPAD: in.fn = popa<4>; return true;
    case ZYDIS_MNEMONIC_PUSHF: in.fn = pushf<2>; return true;
    case ZYDIS_MNEMONIC_PUSHFD: in.fn = pushf<4>; return true;
    case ZYDIS_MNEMONIC_POPF: in.fn = popf<2>; return true;
    case ZYDIS_MNEMONIC_POPFD: in.fn = popf<4>; return true;
    case ZYDIS_MNEMONIC_ENTER:
      in.imm = imm_of(d, 0) & 0xFFFF;
      in.imm2 = imm_of(d, 1) & 0xFF;
      in.fn = opw == 2 ? enter<2> : enter<4>;
      return true;
    case ZYDIS_MNEMONIC_LEAVE: in.fn = opw == 2 ? leave<2> : leave<4>; return true;
    case ZYDIS_MNEMONIC_BOUND:
      if (!is_gpr(d, 0) || !d.is_mem(1) || !set_memory(d, 1, in)) return false;
      set_reg_operand(d, 0, in.r1);
      in.fn = d.size(0) == 2 ? bound<2> : bound<4>;
      return true;
    case ZYDIS_MNEMONIC_CBW: in.fn = cbw; return true;
    case ZYDIS_MNEMONIC_CWDE: in.fn = cwde; return true;
    case ZYDIS_MNEMONIC_CWD: in.fn = cwd; return true;
    case ZYDIS_MNEMONIC_CDQ: in.fn = cdq; return true;
    case ZYDIS_MNEMONIC_LAHF: in.fn = lahf; return true;
    case ZYDIS_MNEMONIC_SAHF: in.fn = sahf; return true;
    case ZYDIS_MNEMONIC_CLC: in.fn = flag_op<kCF, 0, 0>; return true;
    case ZYDIS_MNEMONIC_STC: in.fn = flag_op<0, kCF, 0>; return true;
    case ZYDIS_MNEMONIC_CMC: in.fn = flag_op<0, 0, kCF>; return true;
    case ZYDIS_MNEMONIC_CLD: in.fn = flag_op<kDF, 0, 0>; return true;
    case ZYDIS_MNEMONIC_STD: in.fn = flag_op<0, kDF, 0>; return true;
    case ZYDIS_MNEMONIC_SALC: in.fn = salc; return true;
    case ZYDIS_MNEMONIC_XLAT: {
      in.seg = kDs;
      for (unsigned n = 0; n < d.zi.operand_count; ++n) {
        if (d.ops[n].type == ZYDIS_OPERAND_TYPE_MEMORY) in.seg = seg_number(d.ops[n].mem.segment);
      }
      if (in.seg == 0xFF) in.seg = kDs;
      if (d.zi.address_width == 16) in.flags |= kInsnAddr16;
      in.fn = xlat;
      return true;
    }
    case ZYDIS_MNEMONIC_LDS:
    case ZYDIS_MNEMONIC_LES:
    case ZYDIS_MNEMONIC_LFS:
    case ZYDIS_MNEMONIC_LGS:
    case ZYDIS_MNEMONIC_LSS: {
      if (!is_gpr(d, 0) || !d.is_mem(1) || !set_memory(d, 1, in)) return false;
      set_reg_operand(d, 0, in.r1);
      in.aux = m == ZYDIS_MNEMONIC_LDS   ? kDs
               : m == ZYDIS_MNEMONIC_LES ? kEs
               : m == ZYDIS_MNEMONIC_LFS ? kFs
               : m == ZYDIS_MNEMONIC_LGS ? kGs
                                         : kSs;
      in.fn = d.size(0) == 2 ? load_far_pointer<2> : load_far_pointer<4>;
      return true;
    }
    case ZYDIS_MNEMONIC_NOP:
    case ZYDIS_MNEMONIC_PAUSE:
    case ZYDIS_MNEMONIC_PREFETCHNTA:
    case ZYDIS_MNEMONIC_PREFETCHT0:
    case ZYDIS_MNEMONIC_PREFETCHT1:
    case ZYDIS_MNEMONIC_PREFETCHT2:
      in.fn = nop;
      return true;
    default: {
      const int cc = condition_code(m);
      if (cc < 0) return false;
      in.aux = static_cast<uint8_t>(cc);
      if (m >= ZYDIS_MNEMONIC_SETB && m <= ZYDIS_MNEMONIC_SETZ) {
        if (is_gpr(d, 0)) {
          set_reg_operand(d, 0, in.r1);
          in.fn = setcc<false>;
          in.jit = JitForm::kSetccR8;
        } else if (d.is_mem(0)) {
          if (!set_memory(d, 0, in)) return false;
          in.fn = setcc<true>;
        } else {
          return false;
        }
        return true;
      }
      if (m >= ZYDIS_MNEMONIC_CMOVB && m <= ZYDIS_MNEMONIC_CMOVZ) {
        const unsigned s = d.size(0);
        if (!is_gpr(d, 0) || (s != 2 && s != 4)) return false;
        set_reg_operand(d, 0, in.r1);
        bool mem;
        if (is_gpr(d, 1)) {
          mem = false;
          set_reg_operand(d, 1, in.r2);
        } else if (d.is_mem(1)) {
          mem = true;
          if (!set_memory(d, 1, in)) return false;
        } else {
          return false;
        }
        in.fn = s == 2 ? (mem ? cmovcc<2, true> : cmovcc<2, false>) : (mem ? cmovcc<4, true> : cmovcc<4, false>);
        if (s == 4 && !mem) in.jit = JitForm::kCmovRR32;
        return true;
      }
      return false;
    }
  }
}

}  // namespace twoostwo::vmcore::emu
