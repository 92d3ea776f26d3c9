// System instruction handlers: IN/OUT, CLI/STI, HLT, LGDT/LIDT/SGDT/SIDT,
// LLDT/SLDT/LTR/STR, LAR/LSL/VERR/VERW/ARPL, MOV CRn/DRn, LMSW/SMSW, CLTS,
// INVD/WBINVD/INVLPG, CPUID, RDTSC, RDMSR/WRMSR, RDPMC, SYSENTER/SYSEXIT,
// UD2 — and the CPU's port I/O and time stamp counter.
#include <algorithm>

#include "vmcore/emulator/ops.h"

namespace twoostwo::vmcore::emu {

// ---------------------------------------------------------------------------
// Port I/O and the TSC (Cpu members)

uint32_t Cpu::io_read(uint16_t port, unsigned size) {
  uint8_t buf[4] = {0xFF, 0xFF, 0xFF, 0xFF};
  MachineBindings* m = bind.machine;
  if (m != nullptr && m->io != nullptr) {
    sync_clock();
    DeviceLock lock(m);
    m->io->read(port, std::span(buf, size));
    if (m->pic != nullptr) irq_hint = m->pic->interrupt_pending();
  }
  uint32_t v = 0;
  std::memcpy(&v, buf, size);
  return v;
}

void Cpu::io_write(uint16_t port, unsigned size, uint32_t v) {
  MachineBindings* m = bind.machine;
  if (m == nullptr || m->io == nullptr) return;
  uint8_t buf[4];
  std::memcpy(buf, &v, 4);
  sync_clock();
  DeviceLock lock(m);
  m->io->write(port, std::span<const uint8_t>(buf, size));
  if (m->pic != nullptr) irq_hint = m->pic->interrupt_pending();
}

uint64_t Cpu::read_tsc() {
  // A nominal 1 GHz TSC: guest nanoseconds of the Clock (virtual: derived
  // from instructions retired).
  sync_clock();
  const MachineBindings* m = bind.machine;
  const uint64_t ns = (m != nullptr && m->clock != nullptr) ? m->clock->now_ns() : icount;
  // Strictly increasing, as on hardware, even between two reads within one
  // block (the instruction count and the virtual clock advance per block).
  last_tsc = std::max(ns + tsc_offset, last_tsc + 1);
  return last_tsc;
}

namespace {

// MSR numbers (SDM vol. 4).
constexpr uint32_t kMsrTsc = 0x10, kMsrPlatformId = 0x17, kMsrApicBase = 0x1B, kMsrBiosSignId = 0x8B,
                   kMsrSysenterCs = 0x174, kMsrSysenterEsp = 0x175, kMsrSysenterEip = 0x176;
constexpr uint64_t kApicBaseBspDisabled = 0xFEE00000u | (1u << 8);

// CPUID.1:EDX bits this CPU implements (SDM vol. 2, CPUID, table 3-11).
constexpr uint32_t kCpuidFpu = 1u << 0, kCpuidPse = 1u << 3, kCpuidTsc = 1u << 4, kCpuidMsr = 1u << 5,
                   kCpuidCx8 = 1u << 8, kCpuidSep = 1u << 11, kCpuidPge = 1u << 13, kCpuidCmov = 1u << 15;

void require_cpl0(const Cpu& c) {
  if (c.protected_mode() && (c.cpl != 0 || c.v86())) raise_gp(0);
}
void require_protected(const Cpu& c) {
  if (!c.protected_mode() || c.v86()) raise_ud();
}

// --- port I/O ---------------------------------------------------------------------

template <unsigned S, bool Dx>
void in_op(Cpu& c, const Insn& i) {
  const auto port = static_cast<uint16_t>(Dx ? c.gpr[kEdx] : i.imm);
  c.check_io(port, S);
  c.set_reg<S>(0, c.io_read(port, S));
  next(c, i);
}
template <unsigned S, bool Dx>
void out_op(Cpu& c, const Insn& i) {
  const auto port = static_cast<uint16_t>(Dx ? c.gpr[kEdx] : i.imm);
  c.check_io(port, S);
  c.io_write(port, S, c.reg<S>(0));
  next(c, i);
}

// --- interrupt flag and HLT ---------------------------------------------------------

void cli(Cpu& c, const Insn& i) {
  if ((c.protected_mode() || c.v86()) && c.cpl > c.iopl()) raise_gp(0);
  c.eflags &= ~kIF;
  next(c, i);
}
void sti(Cpu& c, const Insn& i) {
  if ((c.protected_mode() || c.v86()) && c.cpl > c.iopl()) raise_gp(0);
  if (!(c.eflags & kIF)) {
    c.eflags |= kIF;
    c.irq_shadow = true;  // interrupts are recognized after the next instruction
  }
  next(c, i);
}
void hlt(Cpu& c, const Insn& i) {
  require_cpl0(c);
  c.halted = true;
  c.stop_block = true;
  next(c, i);
}

// --- descriptor tables ------------------------------------------------------------------

template <bool Idt>
void lgdt(Cpu& c, const Insn& i) {
  require_cpl0(c);
  const uint32_t ea = effective_address(c, i);
  const uint32_t mask = (i.flags & kInsnAddr16) ? 0xFFFFu : 0xFFFFFFFFu;
  const auto limit = static_cast<uint16_t>(c.read<2>(i.seg, ea));
  uint32_t base = c.read<4>(i.seg, (ea + 2) & mask);
  if (i.flags & kInsnOp16) base &= 0x00FFFFFF;
  if (Idt) {
    c.idt_base = base;
    c.idt_limit = limit;
  } else {
    c.gdt_base = base;
    c.gdt_limit = limit;
  }
  next(c, i);
}
template <bool Idt>
void sgdt(Cpu& c, const Insn& i) {
  const uint32_t ea = effective_address(c, i);
  const uint32_t mask = (i.flags & kInsnAddr16) ? 0xFFFFu : 0xFFFFFFFFu;
  c.check_segment(i.seg, ea, 6, true);
  c.write<2>(i.seg, ea, Idt ? c.idt_limit : c.gdt_limit);
  c.write<4>(i.seg, (ea + 2) & mask, Idt ? c.idt_base : c.gdt_base);
  next(c, i);
}

// SLDT/STR/SMSW r/m (aux: 0 LDTR, 1 TR, 2 MSW). Memory: 16 bits; a 32-bit register gets the zero-extended value.
template <unsigned S, bool Mem>
void store_system_reg(Cpu& c, const Insn& i) {
  if (i.aux != 2) require_protected(c);
  const uint32_t v = i.aux == 0 ? c.ldtr.selector : i.aux == 1 ? c.tr.selector : c.cr0;
  if constexpr (Mem) mem_write<2>(c, i, v);
  else c.set_reg<S>(i.r1, S == 2 ? (v & 0xFFFF) : (i.aux == 2 ? v : v & 0xFFFF));
  next(c, i);
}

// LLDT/LTR/LMSW r/m16 (aux: 0 LLDT, 1 LTR, 2 LMSW).
template <bool Mem>
void load_system_reg(Cpu& c, const Insn& i) {
  if (i.aux != 2) require_protected(c);
  require_cpl0(c);
  const auto v = static_cast<uint16_t>(Mem ? mem_read<2>(c, i) : c.reg<2>(i.r1));
  if (i.aux == 0) {
    c.load_ldt(v);
  } else if (i.aux == 1) {
    c.load_tr(v);
  } else {
    // LMSW: PE, MP, EM, TS; PE cannot be cleared.
    const uint32_t keep = c.cr0 & ~uint32_t{0xE};
    c.set_cr0(keep | (v & 0xF) | (c.cr0 & kCr0Pe));
  }
  next(c, i);
}

// The descriptor of `sel` for LAR/LSL/VERR/VERW, or false (ZF=0) if the
// selector is null or outside its table. Page faults on the table propagate.
bool peek_descriptor(Cpu& c, uint16_t sel, Descriptor& d) {
  if ((sel & 0xFFFC) == 0) return false;
  const bool ldt = sel & 4;
  const uint32_t base = ldt ? c.ldtr.base : c.gdt_base;
  const uint32_t limit = ldt ? (c.ldtr.usable ? c.ldtr.limit : 0) : c.gdt_limit;
  if (ldt && !c.ldtr.usable) return false;
  if ((sel | 7u) > limit) return false;
  const uint32_t at = base + (sel & 0xFFF8u);
  d.lo = c.read_lin_priv(at, 4, Priv::kSys);
  d.hi = c.read_lin_priv(at + 4, 4, Priv::kSys);
  return true;
}

bool privilege_ok(const Cpu& c, uint16_t sel, const Descriptor& d) {
  if (d.conforming()) return true;
  return d.dpl() >= c.cpl && d.dpl() >= (sel & 3);
}

// LAR/LSL r, r/m16 (aux: 0 LAR, 1 LSL).
template <unsigned S, bool Mem>
void lar_lsl(Cpu& c, const Insn& i) {
  require_protected(c);
  const auto sel = static_cast<uint16_t>(Mem ? mem_read<2>(c, i) : c.reg<2>(i.r2));
  Descriptor d;
  bool ok = peek_descriptor(c, sel, d);
  if (ok && !d.s()) {
    const uint8_t t = d.type();
    if (i.aux == 0) {
      ok = t == 1 || t == 2 || t == 3 || t == 4 || t == 5 || t == 9 || t == 11 || t == 12;
    } else {
      ok = t == 1 || t == 2 || t == 3 || t == 9 || t == 11;
    }
  }
  if (ok) ok = privilege_ok(c, sel, d);
  c.flags();
  if (ok) {
    const uint32_t v = i.aux == 0 ? (d.hi & 0x00F0FF00u) : d.limit();
    c.set_reg<S>(i.r1, v);
    c.eflags |= kZF;
  } else {
    c.eflags &= ~kZF;
  }
  next(c, i);
}

// VERR/VERW r/m16 (aux: 0 VERR, 1 VERW).
template <bool Mem>
void verr_verw(Cpu& c, const Insn& i) {
  require_protected(c);
  const auto sel = static_cast<uint16_t>(Mem ? mem_read<2>(c, i) : c.reg<2>(i.r1));
  Descriptor d;
  bool ok = peek_descriptor(c, sel, d) && d.s();
  if (ok) ok = i.aux == 0 ? d.readable() : d.writable();
  if (ok) ok = privilege_ok(c, sel, d);
  c.flags();
  if (ok) c.eflags |= kZF;
  else c.eflags &= ~kZF;
  next(c, i);
}

template <bool Mem>
void arpl(Cpu& c, const Insn& i) {
  require_protected(c);
  const uint32_t ea = Mem ? effective_address(c, i) : 0;
  const uint32_t dst = Mem ? c.read_for_write<2>(i.seg, ea) : c.reg<2>(i.r1);
  const uint32_t src = c.reg<2>(i.r2);
  c.flags();
  if ((dst & 3) < (src & 3)) {
    const uint32_t v = (dst & ~3u) | (src & 3);
    if constexpr (Mem) c.write<2>(i.seg, ea, v);
    else c.set_reg<2>(i.r1, v);
    c.eflags |= kZF;
  } else {
    c.eflags &= ~kZF;
  }
  next(c, i);
}

// --- control and debug registers ---------------------------------------------------------

// MOV r32, CRn (aux = n)
void mov_from_cr(Cpu& c, const Insn& i) {
  require_cpl0(c);
  uint32_t v;
  switch (i.aux) {
    case 0: v = c.cr0; break;
    case 2: v = c.cr2; break;
    case 3: v = c.cr3; break;
    case 4: v = c.cr4; break;
    default: raise_ud();
  }
  c.set_reg<4>(i.r1, v);
  next(c, i);
}
void mov_to_cr(Cpu& c, const Insn& i) {
  require_cpl0(c);
  const uint32_t v = c.reg<4>(i.r2);
  switch (i.aux) {
    case 0: c.set_cr0(v); break;
    case 2: c.cr2 = v; break;
    case 3: c.set_cr3(v); break;
    case 4: c.set_cr4(v); break;
    default: raise_ud();
  }
  next(c, i);
}
unsigned debug_reg_index(const Cpu& c, unsigned n) {
  if (n == 4 || n == 5) {
    if (c.cr4 & kCr4De) raise_ud();
    return n + 2;
  }
  return n;
}
void mov_from_dr(Cpu& c, const Insn& i) {
  require_cpl0(c);
  c.set_reg<4>(i.r1, c.dr[debug_reg_index(c, i.aux)]);
  next(c, i);
}
void mov_to_dr(Cpu& c, const Insn& i) {
  require_cpl0(c);
  const unsigned n = debug_reg_index(c, i.aux);
  uint32_t v = c.reg<4>(i.r2);
  if (n == 6) v = (v & 0x0000E00Fu) | 0xFFFF0FF0u;
  if (n == 7) v = (v & 0xFFFF2BFFu) | 0x400u;
  c.dr[n] = v;
  next(c, i);
}

void clts(Cpu& c, const Insn& i) {
  require_cpl0(c);
  c.cr0 &= ~kCr0Ts;
  next(c, i);
}
void invd(Cpu& c, const Insn& i) {
  require_cpl0(c);
  next(c, i);
}
void invlpg(Cpu& c, const Insn& i) {
  require_cpl0(c);
  c.invlpg(c.seg[i.seg].base + effective_address(c, i));
  next(c, i);
}

// --- identification, time, MSRs ---------------------------------------------------------

void cpuid(Cpu& c, const Insn& i) {
  uint32_t a = 0, b = 0, cx = 0, d = 0;
  switch (c.gpr[kEax]) {
    case 0:
      a = 1;
      b = 0x756E6547;   // "Genu"
      d = 0x49656E69;   // "ineI"
      cx = 0x6C65746E;  // "ntel"
      break;
    case 1:
      a = 0x00000683;  // family 6, model 8, stepping 3: a Pentium III-class core (here without SSE)
      d = kCpuidFpu | kCpuidPse | kCpuidTsc | kCpuidMsr | kCpuidCx8 | kCpuidSep | kCpuidPge | kCpuidCmov;
      break;
    default:
      break;
  }
  c.gpr[kEax] = a;
  c.gpr[kEbx] = b;
  c.gpr[kEcx] = cx;
  c.gpr[kEdx] = d;
  next(c, i);
}

void rdtsc(Cpu& c, const Insn& i) {
  if ((c.cr4 & kCr4Tsd) && c.cpl != 0 && c.protected_mode()) raise_gp(0);
  const uint64_t t = c.read_tsc();
  c.gpr[kEax] = static_cast<uint32_t>(t);
  c.gpr[kEdx] = static_cast<uint32_t>(t >> 32);
  next(c, i);
}

void rdmsr(Cpu& c, const Insn& i) {
  require_cpl0(c);
  uint64_t v;
  switch (c.gpr[kEcx]) {
    case kMsrTsc: v = c.read_tsc(); break;
    case kMsrPlatformId: v = 0; break;
    case kMsrApicBase: v = kApicBaseBspDisabled; break;
    case kMsrBiosSignId: v = 0; break;
    case kMsrSysenterCs: v = c.sysenter_cs; break;
    case kMsrSysenterEsp: v = c.sysenter_esp; break;
    case kMsrSysenterEip: v = c.sysenter_eip; break;
    default: raise_gp(0);
  }
  c.gpr[kEax] = static_cast<uint32_t>(v);
  c.gpr[kEdx] = static_cast<uint32_t>(v >> 32);
  next(c, i);
}

void wrmsr(Cpu& c, const Insn& i) {
  require_cpl0(c);
  const uint64_t v = (uint64_t{c.gpr[kEdx]} << 32) | c.gpr[kEax];
  switch (c.gpr[kEcx]) {
    case kMsrTsc: {
      const uint64_t now = c.read_tsc() - c.tsc_offset;
      c.tsc_offset = v - now;
      c.last_tsc = v;
      break;
    }
    case kMsrApicBase:  // no local APIC: writes are ignored
    case kMsrBiosSignId:  // microcode revision: a write of 0 before CPUID is the read protocol
      break;
    case kMsrSysenterCs: c.sysenter_cs = static_cast<uint32_t>(v); break;
    case kMsrSysenterEsp: c.sysenter_esp = static_cast<uint32_t>(v); break;
    case kMsrSysenterEip: c.sysenter_eip = static_cast<uint32_t>(v); break;
    default: raise_gp(0);
  }
  next(c, i);
}

void rdpmc(Cpu&, const Insn&) { raise_gp(0); }

void sysenter(Cpu& c, const Insn&) { c.sysenter(); }
void sysexit(Cpu& c, const Insn&) { c.sysexit(); }

bool rm_form(const Decoded& d, unsigned n, Insn& in, bool& mem, uint8_t& regfield) {
  if (d.is_reg(n)) {
    mem = false;
    return set_reg_operand(d, n, regfield);
  }
  if (d.is_mem(n)) {
    mem = true;
    return set_memory(d, n, in);
  }
  return false;
}

}  // namespace

bool translate_system(const Decoded& d, Insn& in) {
  const ZydisMnemonic m = d.zi.mnemonic;
  if (d.zi.operand_width == 16) in.flags |= kInsnOp16;
  switch (m) {
    case ZYDIS_MNEMONIC_IN:
    case ZYDIS_MNEMONIC_OUT: {
      const bool is_in = m == ZYDIS_MNEMONIC_IN;
      const unsigned data = is_in ? 0 : 1, port = is_in ? 1 : 0;
      if (!d.is_reg(data)) return false;
      const unsigned s = d.size(data);
      bool dx;
      if (d.is_imm(port)) {
        dx = false;
        in.imm = imm_of(d, port) & 0xFF;
      } else if (d.is_reg(port) && d.op(port).reg.value == ZYDIS_REGISTER_DX) {
        dx = true;
      } else {
        return false;
      }
      if (is_in) {
        in.fn = s == 1 ? (dx ? in_op<1, true> : in_op<1, false>)
                : s == 2 ? (dx ? in_op<2, true> : in_op<2, false>)
                         : (dx ? in_op<4, true> : in_op<4, false>);
      } else {
        in.fn = s == 1 ? (dx ? out_op<1, true> : out_op<1, false>)
                : s == 2 ? (dx ? out_op<2, true> : out_op<2, false>)
                         : (dx ? out_op<4, true> : out_op<4, false>);
      }
      return true;
    }
    case ZYDIS_MNEMONIC_CLI: in.fn = cli; return true;
    case ZYDIS_MNEMONIC_STI: in.fn = sti; in.flags |= kInsnEndsBlock; return true;
    case ZYDIS_MNEMONIC_HLT: in.fn = hlt; in.flags |= kInsnEndsBlock; return true;
    case ZYDIS_MNEMONIC_LGDT:
    case ZYDIS_MNEMONIC_LIDT:
    case ZYDIS_MNEMONIC_SGDT:
    case ZYDIS_MNEMONIC_SIDT:
      if (!d.is_mem(0) || !set_memory(d, 0, in)) return false;
      in.fn = m == ZYDIS_MNEMONIC_LGDT   ? lgdt<false>
              : m == ZYDIS_MNEMONIC_LIDT ? lgdt<true>
              : m == ZYDIS_MNEMONIC_SGDT ? sgdt<false>
                                         : sgdt<true>;
      return true;
    case ZYDIS_MNEMONIC_SLDT:
    case ZYDIS_MNEMONIC_STR:
    case ZYDIS_MNEMONIC_SMSW: {
      bool mem;
      if (!rm_form(d, 0, in, mem, in.r1)) return false;
      in.aux = m == ZYDIS_MNEMONIC_SLDT ? 0 : m == ZYDIS_MNEMONIC_STR ? 1 : 2;
      in.fn = mem ? store_system_reg<2, true> : (d.size(0) == 4 ? store_system_reg<4, false> : store_system_reg<2, false>);
      return true;
    }
    case ZYDIS_MNEMONIC_LLDT:
    case ZYDIS_MNEMONIC_LTR:
    case ZYDIS_MNEMONIC_LMSW: {
      bool mem;
      if (!rm_form(d, 0, in, mem, in.r1)) return false;
      in.aux = m == ZYDIS_MNEMONIC_LLDT ? 0 : m == ZYDIS_MNEMONIC_LTR ? 1 : 2;
      in.fn = mem ? load_system_reg<true> : load_system_reg<false>;
      if (m == ZYDIS_MNEMONIC_LMSW) in.flags |= kInsnEndsBlock;
      return true;
    }
    case ZYDIS_MNEMONIC_LAR:
    case ZYDIS_MNEMONIC_LSL: {
      const unsigned s = d.size(0);
      if (!set_reg_operand(d, 0, in.r1)) return false;
      bool mem;
      if (!rm_form(d, 1, in, mem, in.r2)) return false;
      in.aux = m == ZYDIS_MNEMONIC_LAR ? 0 : 1;
      in.fn = s == 2 ? (mem ? lar_lsl<2, true> : lar_lsl<2, false>) : (mem ? lar_lsl<4, true> : lar_lsl<4, false>);
      return true;
    }
    case ZYDIS_MNEMONIC_VERR:
    case ZYDIS_MNEMONIC_VERW: {
      bool mem;
      if (!rm_form(d, 0, in, mem, in.r1)) return false;
      in.aux = m == ZYDIS_MNEMONIC_VERR ? 0 : 1;
      in.fn = mem ? verr_verw<true> : verr_verw<false>;
      return true;
    }
    case ZYDIS_MNEMONIC_ARPL: {
      bool mem;
      if (!rm_form(d, 0, in, mem, in.r1) || !set_reg_operand(d, 1, in.r2)) return false;
      in.fn = mem ? arpl<true> : arpl<false>;
      return true;
    }
    case ZYDIS_MNEMONIC_MOV: {
      // MOV to/from CRn / DRn (the GPR forms are translate_data's).
      if (!d.is_reg(0) || !d.is_reg(1)) return false;
      const ZydisRegister r0 = d.op(0).reg.value, r1 = d.op(1).reg.value;
      const ZydisRegisterClass c0 = ZydisRegisterGetClass(r0), c1 = ZydisRegisterGetClass(r1);
      if (c0 == ZYDIS_REGCLASS_CONTROL && c1 == ZYDIS_REGCLASS_GPR32) {
        in.aux = static_cast<uint8_t>(ZydisRegisterGetId(r0));
        set_reg_operand(d, 1, in.r2);
        in.fn = mov_to_cr;
        in.flags |= kInsnEndsBlock;
        return true;
      }
      if (c1 == ZYDIS_REGCLASS_CONTROL && c0 == ZYDIS_REGCLASS_GPR32) {
        in.aux = static_cast<uint8_t>(ZydisRegisterGetId(r1));
        set_reg_operand(d, 0, in.r1);
        in.fn = mov_from_cr;
        return true;
      }
      if (c0 == ZYDIS_REGCLASS_DEBUG && c1 == ZYDIS_REGCLASS_GPR32) {
        in.aux = static_cast<uint8_t>(ZydisRegisterGetId(r0));
        set_reg_operand(d, 1, in.r2);
        in.fn = mov_to_dr;
        return true;
      }
      if (c1 == ZYDIS_REGCLASS_DEBUG && c0 == ZYDIS_REGCLASS_GPR32) {
        in.aux = static_cast<uint8_t>(ZydisRegisterGetId(r1));
        set_reg_operand(d, 0, in.r1);
        in.fn = mov_from_dr;
        return true;
      }
      return false;
    }
    case ZYDIS_MNEMONIC_CLTS: in.fn = clts; return true;
    case ZYDIS_MNEMONIC_INVD:
    case ZYDIS_MNEMONIC_WBINVD: in.fn = invd; return true;
    case ZYDIS_MNEMONIC_INVLPG:
      if (!d.is_mem(0) || !set_memory(d, 0, in)) return false;
      in.fn = invlpg;
      in.flags |= kInsnEndsBlock;
      return true;
    case ZYDIS_MNEMONIC_CPUID: in.fn = cpuid; return true;
    case ZYDIS_MNEMONIC_RDTSC: in.fn = rdtsc; return true;
    case ZYDIS_MNEMONIC_RDMSR: in.fn = rdmsr; return true;
    case ZYDIS_MNEMONIC_WRMSR: in.fn = wrmsr; return true;
    case ZYDIS_MNEMONIC_RDPMC: in.fn = rdpmc; return true;
    case ZYDIS_MNEMONIC_SYSENTER: in.fn = sysenter; in.flags |= kInsnEndsBlock; return true;
    case ZYDIS_MNEMONIC_SYSEXIT: in.fn = sysexit; in.flags |= kInsnEndsBlock; return true;
    case ZYDIS_MNEMONIC_UD0:
    case ZYDIS_MNEMONIC_UD1:
    case ZYDIS_MNEMONIC_UD2: in.fn = handler_ud; in.flags |= kInsnEndsBlock; return true;
    default: return false;
  }
}

}  // namespace twoostwo::vmcore::emu
