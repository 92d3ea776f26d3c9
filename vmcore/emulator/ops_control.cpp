// Control transfer handlers: JMP, Jcc, CALL, RET, far JMP/CALL/RET, IRET,
// LOOP/LOOPE/LOOPNE, JCXZ/JECXZ, INT n, INT3, INTO, INT1. Near branches are
// computed here; far ones go through Cpu (protection.cpp), which applies
// the protected-mode checks, gates and task switches.
#include "vmcore/emulator/ops.h"

namespace twoostwo::vmcore::emu {
namespace {

// Relative: imm = displacement. Op16: 16-bit operand size (IP wraps).
template <bool Op16>
void jmp_rel(Cpu& c, const Insn& i) {
  branch_to(c, c.eip + i.len + i.imm, Op16);
  end_block(c);
}
template <bool Op16>
void jcc(Cpu& c, const Insn& i) {
  if (c.cond(i.aux)) branch_to(c, c.eip + i.len + i.imm, Op16);
  else c.eip += i.len;
  end_block(c);
}
template <unsigned S, bool Mem>
void jmp_ind(Cpu& c, const Insn& i) {
  const uint32_t target = Mem ? mem_read<S>(c, i) : c.reg<S>(i.r1);
  c.eip = target;
  end_block(c);
}
template <unsigned S>
void call_rel(Cpu& c, const Insn& i) {
  const uint32_t ret = c.eip + i.len;
  c.push<S>(ret);
  branch_to(c, ret + i.imm, S == 2);
  end_block(c);
}
template <unsigned S, bool Mem>
void call_ind(Cpu& c, const Insn& i) {
  const uint32_t target = Mem ? mem_read<S>(c, i) : c.reg<S>(i.r1);
  c.push<S>(c.eip + i.len);
  c.eip = target;
  end_block(c);
}
template <unsigned S>
void ret_near(Cpu& c, const Insn& i) {
  const uint32_t target = c.peek<S>(0);
  c.set_sp(c.sp() + S + i.imm);
  c.eip = target;
  end_block(c);
}

// Far forms: a pointer operand (imm = offset, imm2 = selector) or m16:16/32.
template <unsigned S>
void jmp_far_ptr(Cpu& c, const Insn& i) {
  c.far_jump(static_cast<uint16_t>(i.imm2), i.imm, S, c.eip + i.len);
}
template <unsigned S>
void jmp_far_mem(Cpu& c, const Insn& i) {
  const uint32_t ea = effective_address(c, i);
  const uint32_t mask = (i.flags & kInsnAddr16) ? 0xFFFFu : 0xFFFFFFFFu;
  const uint32_t off = c.read<S>(i.seg, ea);
  const auto sel = static_cast<uint16_t>(c.read<2>(i.seg, (ea + S) & mask));
  c.far_jump(sel, off, S, c.eip + i.len);
}
template <unsigned S>
void call_far_ptr(Cpu& c, const Insn& i) {
  c.far_call(static_cast<uint16_t>(i.imm2), i.imm, S, c.eip + i.len);
}
template <unsigned S>
void call_far_mem(Cpu& c, const Insn& i) {
  const uint32_t ea = effective_address(c, i);
  const uint32_t mask = (i.flags & kInsnAddr16) ? 0xFFFFu : 0xFFFFFFFFu;
  const uint32_t off = c.read<S>(i.seg, ea);
  const auto sel = static_cast<uint16_t>(c.read<2>(i.seg, (ea + S) & mask));
  c.far_call(sel, off, S, c.eip + i.len);
}
template <unsigned S>
void ret_far(Cpu& c, const Insn& i) {
  c.far_return(S, static_cast<uint16_t>(i.imm));
}
template <unsigned S>
void iret(Cpu& c, const Insn& i) {
  c.iret(S, c.eip + i.len);
}

// LOOP family: aux = 0 LOOP, 1 LOOPE, 2 LOOPNE, 3 JCXZ. Addr16 selects CX.
template <unsigned Kind, bool Addr16, bool Op16>
void loop_op(Cpu& c, const Insn& i) {
  uint32_t count;
  if constexpr (Kind == 3) {
    count = Addr16 ? (c.gpr[kEcx] & 0xFFFF) : c.gpr[kEcx];
    if (count == 0) branch_to(c, c.eip + i.len + i.imm, Op16);
    else c.eip += i.len;
    end_block(c);
    return;
  }
  if constexpr (Addr16) {
    count = (c.gpr[kEcx] - 1) & 0xFFFF;
    c.gpr[kEcx] = (c.gpr[kEcx] & 0xFFFF0000u) | count;
  } else {
    count = --c.gpr[kEcx];
  }
  bool taken = count != 0;
  if constexpr (Kind == 1) taken = taken && c.cond(4);
  if constexpr (Kind == 2) taken = taken && c.cond(5);
  if (taken) branch_to(c, c.eip + i.len + i.imm, Op16);
  else c.eip += i.len;
  end_block(c);
}
template <unsigned Kind>
Handler loop_form(bool addr16, bool op16) {
  if (addr16) return op16 ? loop_op<Kind, true, true> : loop_op<Kind, true, false>;
  return op16 ? loop_op<Kind, false, true> : loop_op<Kind, false, false>;
}

void int_n(Cpu& c, const Insn& i) {
  if (c.v86() && c.iopl() < 3) raise_gp(0);
  c.deliver({static_cast<uint8_t>(i.imm), Cpu::EventKind::kSoftware, false, 0, c.eip + i.len});
}
void int3(Cpu& c, const Insn& i) {
  c.deliver({kVecBP, Cpu::EventKind::kSoftwareException, false, 0, c.eip + i.len});
}
void into(Cpu& c, const Insn& i) {
  if (c.flags() & kOF) {
    c.deliver({kVecOF, Cpu::EventKind::kSoftwareException, false, 0, c.eip + i.len});
  } else {
    c.eip += i.len;
  }
}
void int1(Cpu& c, const Insn& i) {
  c.deliver({kVecDB, Cpu::EventKind::kException, false, 0, c.eip + i.len});
}

bool rm_form(const Decoded& d, unsigned n, Insn& in, bool& mem) {
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

}  // namespace

bool translate_control(const Decoded& d, Insn& in) {
  const ZydisMnemonic m = d.zi.mnemonic;
  const unsigned opw = d.zi.operand_width / 8;
  const bool op16 = opw == 2;
  const bool far = d.zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR;
  switch (m) {
    case ZYDIS_MNEMONIC_JMP:
    case ZYDIS_MNEMONIC_CALL: {
      in.flags |= kInsnEndsBlock;
      const bool call = m == ZYDIS_MNEMONIC_CALL;
      if (far) {
        if (d.is_ptr(0)) {
          in.imm = d.op(0).ptr.offset;
          in.imm2 = d.op(0).ptr.segment;
          in.fn = call ? (op16 ? call_far_ptr<2> : call_far_ptr<4>) : (op16 ? jmp_far_ptr<2> : jmp_far_ptr<4>);
          return true;
        }
        if (d.is_mem(0) && set_memory(d, 0, in)) {
          in.fn = call ? (op16 ? call_far_mem<2> : call_far_mem<4>) : (op16 ? jmp_far_mem<2> : jmp_far_mem<4>);
          return true;
        }
        return false;
      }
      if (d.is_imm(0)) {
        in.imm = imm_of(d, 0);
        in.fn = call ? (op16 ? call_rel<2> : call_rel<4>) : (op16 ? jmp_rel<true> : jmp_rel<false>);
        if (!op16) in.jit = call ? JitForm::kCallRel32 : JitForm::kJmpRel32;
        return true;
      }
      bool mem;
      if (!rm_form(d, 0, in, mem)) return false;
      if (call) {
        in.fn = op16 ? (mem ? call_ind<2, true> : call_ind<2, false>) : (mem ? call_ind<4, true> : call_ind<4, false>);
      } else {
        in.fn = op16 ? (mem ? jmp_ind<2, true> : jmp_ind<2, false>) : (mem ? jmp_ind<4, true> : jmp_ind<4, false>);
      }
      return true;
    }
    case ZYDIS_MNEMONIC_RET:
      in.flags |= kInsnEndsBlock;
      in.imm = d.is_imm(0) ? (imm_of(d, 0) & 0xFFFF) : 0;
      if (far) in.fn = op16 ? ret_far<2> : ret_far<4>;
      else in.fn = op16 ? ret_near<2> : ret_near<4>;
      if (!far && !op16 && in.imm == 0) in.jit = JitForm::kRet32;
      return true;
    case ZYDIS_MNEMONIC_IRET:
    case ZYDIS_MNEMONIC_IRETD:
      in.flags |= kInsnEndsBlock;
      in.fn = m == ZYDIS_MNEMONIC_IRET ? iret<2> : iret<4>;
      return true;
    case ZYDIS_MNEMONIC_LOOP:
    case ZYDIS_MNEMONIC_LOOPE:
    case ZYDIS_MNEMONIC_LOOPNE:
    case ZYDIS_MNEMONIC_JCXZ:
    case ZYDIS_MNEMONIC_JECXZ: {
      in.flags |= kInsnEndsBlock;
      if (!d.is_imm(0)) return false;
      in.imm = imm_of(d, 0);
      const bool a16 = d.zi.address_width == 16;
      in.fn = m == ZYDIS_MNEMONIC_LOOP     ? loop_form<0>(a16, op16)
              : m == ZYDIS_MNEMONIC_LOOPE  ? loop_form<1>(a16, op16)
              : m == ZYDIS_MNEMONIC_LOOPNE ? loop_form<2>(a16, op16)
                                           : loop_form<3>(a16, op16);
      return true;
    }
    case ZYDIS_MNEMONIC_INT:
      in.flags |= kInsnEndsBlock;
      in.imm = imm_of(d, 0) & 0xFF;
      in.fn = int_n;
      return true;
    case ZYDIS_MNEMONIC_INT3:
      in.flags |= kInsnEndsBlock;
      in.fn = int3;
      return true;
    case ZYDIS_MNEMONIC_INTO:
      in.flags |= kInsnEndsBlock;
      in.fn = into;
      return true;
    case ZYDIS_MNEMONIC_INT1:
      in.flags |= kInsnEndsBlock;
      in.fn = int1;
      return true;
    default: {
      const int cc = condition_code(m);
      if (cc < 0 || m < ZYDIS_MNEMONIC_JB || m > ZYDIS_MNEMONIC_JZ) return false;
      if (!d.is_imm(0)) return false;
      in.flags |= kInsnEndsBlock;
      in.aux = static_cast<uint8_t>(cc);
      in.imm = imm_of(d, 0);
      in.fn = op16 ? jcc<true> : jcc<false>;
      if (!op16) in.jit = JitForm::kJccRel32;
      return true;
    }
  }
}

}  // namespace twoostwo::vmcore::emu
