// Construction of the emulator's CPU, the descriptor caches, and the
// conversion to and from the engine-neutral CpuState.
#include <fmt/format.h>

#include "vmcore/emulator/cpu.h"

namespace twoostwo::vmcore::emu {

void SegmentCache::recompute(bool real) {
  if (real) {
    rd_lo = wr_lo = 0;
    rd_hi = wr_hi = limit;
    return;
  }
  constexpr uint32_t kEmptyLo = 1, kEmptyHi = 0;
  if (!usable || !present || !s) {
    rd_lo = wr_lo = kEmptyLo;
    rd_hi = wr_hi = kEmptyHi;
    return;
  }
  const bool code = type & 8;
  const bool readable = !code || (type & 2);
  const bool writable = !code && (type & 2);
  uint32_t lo = 0, hi = limit;
  if (!code && (type & 4)) {  // expand-down: valid offsets are above the limit
    hi = db ? 0xFFFFFFFFu : 0xFFFFu;
    if (limit >= hi) {
      lo = kEmptyLo;
      hi = kEmptyHi;
    } else {
      lo = limit + 1;
    }
  }
  rd_lo = readable ? lo : kEmptyLo;
  rd_hi = readable ? hi : kEmptyHi;
  wr_lo = writable ? lo : kEmptyLo;
  wr_hi = writable ? hi : kEmptyHi;
}

void SegmentCache::load(uint16_t sel, const Descriptor& d) {
  selector = sel;
  base = d.base();
  limit = d.limit();
  type = d.type();
  s = d.s();
  dpl = d.dpl();
  present = d.present();
  db = d.db();
  g = d.g();
  avl = d.avl();
  usable = true;
}

Cpu::Cpu() {
  // The architectural RESET state (SDM vol. 3, table 9-1).
  for (auto& s : seg) {
    s = SegmentCache{};
    s.recompute(true);
  }
  seg[kCs].selector = 0xF000;
  seg[kCs].base = 0xFFFF0000u;
  seg[kCs].type = 0xB;
  eip = 0xFFF0;
  ldtr.type = kLdtType;
  ldtr.s = false;
  tr.type = kTss32Busy;
  tr.s = false;
  gpr[kEdx] = 0x683;
  fpu.reset();
}

void Cpu::recompute_segments() {
  const bool real = !protected_mode() || v86();
  for (auto& s : seg) s.recompute(real);
}

// ---------------------------------------------------------------------------
// CpuState conversion

namespace {

Segment to_segment(const SegmentCache& c) {
  Segment s;
  s.selector = c.selector;
  s.base = c.base;
  s.limit = c.limit;
  s.type = c.type;
  s.s = c.s;
  s.dpl = c.dpl;
  s.present = c.present;
  s.db = c.db;
  s.l = false;
  s.g = c.g;
  s.avl = c.avl;
  s.unusable = !c.usable;
  return s;
}

void from_segment(SegmentCache& c, const Segment& s) {
  c.selector = s.selector;
  c.base = static_cast<uint32_t>(s.base);
  c.limit = s.limit;
  c.type = s.type & 0xF;
  c.s = s.s;
  c.dpl = s.dpl & 3;
  c.present = s.present;
  c.db = s.db;
  c.g = s.g;
  c.avl = s.avl;
  c.usable = !s.unusable;
}

}  // namespace

CpuState to_cpu_state(const Cpu& cpu) {
  CpuState s;
  for (unsigned r = 0; r < 8; ++r) s.gpr[r] = cpu.gpr[r];
  s.rip = cpu.eip;
  s.rflags = cpu.flags_value();
  s.es = to_segment(cpu.seg[kEs]);
  s.cs = to_segment(cpu.seg[kCs]);
  s.ss = to_segment(cpu.seg[kSs]);
  s.ds = to_segment(cpu.seg[kDs]);
  s.fs = to_segment(cpu.seg[kFs]);
  s.gs = to_segment(cpu.seg[kGs]);
  s.ldt = to_segment(cpu.ldtr);
  s.tr = to_segment(cpu.tr);
  s.gdt = {cpu.gdt_base, cpu.gdt_limit};
  s.idt = {cpu.idt_base, cpu.idt_limit};
  s.cr0 = cpu.cr0;
  s.cr2 = cpu.cr2;
  s.cr3 = cpu.cr3;
  s.cr4 = cpu.cr4;
  s.efer = 0;
  return s;
}

Result<void> from_cpu_state(Cpu& cpu, const CpuState& s) {
  if (s.efer & (1u << 10)) return fail("emulator: long mode (EFER.LMA) is not supported; use the i386 guest");
  if (s.cr4 & kCr4Pae) return fail("emulator: PAE paging (CR4.PAE) is not supported");
  if (s.cr4 & ~uint64_t{kCr4Supported}) return fail(fmt::format("emulator: unsupported CR4 bits {:#x}", s.cr4));
  if ((s.cr0 & kCr0Pg) && !(s.cr0 & kCr0Pe)) return fail("emulator: CR0.PG set without CR0.PE");
  if (s.rflags & kVM) return fail("emulator: virtual-8086 mode (EFLAGS.VM) is not supported");
  for (unsigned r = 0; r < 8; ++r) cpu.gpr[r] = static_cast<uint32_t>(s.gpr[r]);
  cpu.gpr[kZeroReg] = 0;
  cpu.eip = static_cast<uint32_t>(s.rip);
  cpu.eflags = (static_cast<uint32_t>(s.rflags) & kEflagsSettable) | kEflagsFixed;
  cpu.lazy_op = Cpu::kLazyNone;
  from_segment(cpu.seg[kEs], s.es);
  from_segment(cpu.seg[kCs], s.cs);
  from_segment(cpu.seg[kSs], s.ss);
  from_segment(cpu.seg[kDs], s.ds);
  from_segment(cpu.seg[kFs], s.fs);
  from_segment(cpu.seg[kGs], s.gs);
  from_segment(cpu.ldtr, s.ldt);
  from_segment(cpu.tr, s.tr);
  cpu.seg[kCs].usable = true;
  cpu.gdt_base = static_cast<uint32_t>(s.gdt.base);
  cpu.gdt_limit = s.gdt.limit;
  cpu.idt_base = static_cast<uint32_t>(s.idt.base);
  cpu.idt_limit = s.idt.limit;
  cpu.cr0 = (static_cast<uint32_t>(s.cr0) & (kCr0Pe | kCr0Mp | kCr0Em | kCr0Ts | kCr0Ne | kCr0Wp | kCr0Am | kCr0Nw |
                                             kCr0Cd | kCr0Pg)) |
            kCr0Et;
  cpu.cr2 = static_cast<uint32_t>(s.cr2);
  cpu.cr3 = static_cast<uint32_t>(s.cr3) & 0xFFFFF018u;
  cpu.cr4 = static_cast<uint32_t>(s.cr4);
  cpu.set_cpl(cpu.protected_mode() ? (cpu.seg[kCs].selector & 3) : 0);
  cpu.recompute_segments();
  cpu.ldtr.recompute(false);
  cpu.tr.recompute(false);
  cpu.flush_tlb(true);
  cpu.halted = false;
  cpu.irq_shadow = false;
  cpu.stop_block = true;
  return {};
}

}  // namespace twoostwo::vmcore::emu
