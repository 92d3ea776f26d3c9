// Protected-mode mechanisms of the emulator's CPU: segment register loads,
// far JMP/CALL/RET through call gates, IRET, interrupt and exception
// delivery through the IDT (interrupt, trap and task gates, with stack
// switches through the TSS) or the real-mode IVT, the double-fault rule,
// hardware task switches, LLDT/LTR, SYSENTER/SYSEXIT and the I/O
// permission check. The checks and their error codes follow the
// pseudo-code of the Intel SDM vol. 2 (CALL, JMP, RET, IRET, INT n, LLDT,
// LTR, MOV, SYSENTER, SYSEXIT, IN) and vol. 3 chapters 5-7.
#include <fmt/format.h>

#include <initializer_list>

#include "vmcore/emulator/cpu.h"

namespace twoostwo::vmcore::emu {
namespace {

Priv priv_for(uint8_t cpl) { return cpl == 3 ? Priv::kUser : Priv::kSys; }

uint32_t stack_mask(const SegmentCache& s) { return s.db ? 0xFFFFFFFFu : 0xFFFFu; }

void stack_put(Cpu& c, const SegmentCache& s, uint32_t off, unsigned size, uint32_t v, Priv p, uint32_t err) {
  if (off < s.wr_lo || uint64_t{off} + size - 1 > s.wr_hi) raise(kVecSS, err);
  c.write_lin_priv(s.base + off, size, v, p);
}


// Push `vals` (first value first) below `sp` on stack `s`; returns the new top.
uint32_t push_frame(Cpu& c, const SegmentCache& s, uint32_t sp, unsigned size, std::initializer_list<uint32_t> vals,
                    Priv p, uint32_t err) {
  const uint32_t mask = stack_mask(s);
  for (uint32_t v : vals) {
    sp = (sp - size) & mask;
    stack_put(c, s, sp, size, v, p, err);
  }
  return sp;
}

// Read from the current stack at ESP + depth (no pop).
uint32_t peek_sized(Cpu& c, uint32_t depth, unsigned size) {
  return size == 2 ? c.peek<2>(depth) : c.peek<4>(depth);
}


bool is_contributory(uint8_t v) {
  return v == kVecDE || v == kVecTS || v == kVecNP || v == kVecSS || v == kVecGP;
}

}  // namespace

// ---------------------------------------------------------------------------
// Descriptors

Descriptor Cpu::read_descriptor(uint16_t sel, uint8_t vector_on_fault) {
  const bool ldt = sel & 4;
  uint32_t base, limit;
  if (ldt) {
    if (!ldtr.usable) raise(vector_on_fault, sel_error(sel));
    base = ldtr.base;
    limit = ldtr.limit;
  } else {
    base = gdt_base;
    limit = gdt_limit;
  }
  if ((sel & 0xFFF8u) + 7u > limit) raise(vector_on_fault, sel_error(sel));
  Descriptor d;
  const uint32_t at = base + (sel & 0xFFF8u);
  d.lo = read_lin_priv(at, 4, Priv::kSys);
  d.hi = read_lin_priv(at + 4, 4, Priv::kSys);
  return d;
}

void Cpu::write_descriptor_hi(uint16_t sel, uint32_t hi) {
  const uint32_t base = (sel & 4) ? ldtr.base : gdt_base;
  write_lin_priv(base + (sel & 0xFFF8u) + 4, 4, hi, Priv::kSys);
}

void Cpu::set_accessed(uint16_t sel, Descriptor& d) {
  if (d.s() && !(d.hi & 0x100)) {
    d.hi |= 0x100;
    write_descriptor_hi(sel, d.hi);
  }
}

// ---------------------------------------------------------------------------
// Segment register loads

void Cpu::load_segment(unsigned sr, uint16_t sel) {
  load_segment_cache(sr, sel);
  if ((sr == kDs || sr == kEs || sr == kSs) && !jit_flat()) stop_block = true;
}

void Cpu::load_segment_cache(unsigned sr, uint16_t sel) {
  SegmentCache& s = seg[sr];
  if (!protected_mode() || v86()) {
    s.selector = sel;
    s.base = uint32_t{sel} << 4;
    s.usable = true;
    s.present = true;
    if (v86()) {
      s.limit = 0xFFFF;
      s.type = 3;
      s.s = true;
      s.dpl = 3;
      s.db = false;
    }
    s.recompute(true);
    return;
  }
  if (sr == kSs) {
    if ((sel & 0xFFFC) == 0) raise_gp(0);
    Descriptor d = read_descriptor(sel);
    if ((sel & 3) != cpl || d.dpl() != cpl || !d.writable()) raise_gp(sel_error(sel));
    if (!d.present()) raise(kVecSS, sel_error(sel));
    set_accessed(sel, d);
    s.load(sel, d);
    s.recompute(false);
    return;
  }
  if ((sel & 0xFFFC) == 0) {
    s.selector = sel;
    s.usable = false;
    s.recompute(false);
    return;
  }
  Descriptor d = read_descriptor(sel);
  if (!d.s() || !d.readable()) raise_gp(sel_error(sel));
  if ((d.is_data() || !d.conforming()) && ((sel & 3u) > d.dpl() || cpl > d.dpl())) raise_gp(sel_error(sel));
  if (!d.present()) raise(kVecNP, sel_error(sel));
  set_accessed(sel, d);
  s.load(sel, d);
  s.recompute(false);
}

void Cpu::load_cs_real(uint16_t sel) {
  SegmentCache& s = seg[kCs];
  s.selector = sel;
  s.base = uint32_t{sel} << 4;
  s.usable = true;
  s.present = true;
  if (v86()) {
    s.limit = 0xFFFF;
    s.type = 0xB;
    s.dpl = 3;
    s.db = false;
  }
  s.recompute(true);
  stop_block = true;
}

void Cpu::load_cs(uint16_t sel, const Descriptor& desc, uint8_t new_cpl) {
  Descriptor d = desc;
  set_accessed(sel, d);
  SegmentCache& s = seg[kCs];
  s.load(static_cast<uint16_t>((sel & ~3u) | new_cpl), d);
  s.recompute(false);
  set_cpl(new_cpl);
  stop_block = true;
}

Descriptor Cpu::check_stack_segment(uint16_t sel, uint8_t rpl, uint8_t vector) {
  if ((sel & 0xFFFC) == 0) raise(vector, ext_);
  Descriptor d = read_descriptor(sel, vector);
  if ((sel & 3) != rpl || d.dpl() != rpl || !d.writable()) raise(vector, sel_error(sel));
  if (!d.present()) raise(kVecSS, sel_error(sel));
  return d;
}

void Cpu::null_inaccessible_segments() {
  for (unsigned sr : {kEs, kDs, kFs, kGs}) {
    SegmentCache& s = seg[sr];
    if (!s.usable) continue;
    const bool data_or_nonconforming = !(s.type & 8) || !(s.type & 4);
    if (data_or_nonconforming && s.dpl < cpl) {
      s.selector = 0;
      s.usable = false;
      s.recompute(false);
    }
  }
}

void Cpu::check_return_cs(uint16_t sel, const Descriptor& d) {
  if ((sel & 0xFFFC) == 0) raise_gp(0);
  const uint8_t rpl = sel & 3;
  if (!d.is_code() || rpl < cpl) raise_gp(sel_error(sel));
  if (d.conforming() ? d.dpl() > rpl : d.dpl() != rpl) raise_gp(sel_error(sel));
  if (!d.present()) raise(kVecNP, sel_error(sel));
}

// ---------------------------------------------------------------------------
// Far JMP / CALL / RET

void Cpu::far_jump(uint16_t sel, uint32_t offset, unsigned opsize, uint32_t next_eip) {
  if (opsize == 2) offset &= 0xFFFF;
  if (!protected_mode() || v86()) {
    load_cs_real(sel);
    eip = offset;
    return;
  }
  if ((sel & 0xFFFC) == 0) raise_gp(0);
  const Descriptor d = read_descriptor(sel);
  if (d.s()) {
    if (!d.is_code()) raise_gp(sel_error(sel));
    if (d.conforming() ? d.dpl() > cpl : ((sel & 3u) > cpl || d.dpl() != cpl)) raise_gp(sel_error(sel));
    if (!d.present()) raise(kVecNP, sel_error(sel));
    if (offset > d.limit()) raise_gp(0);
    load_cs(sel, d, cpl);
    eip = offset;
    return;
  }
  switch (d.type()) {
    case kCallGate16:
    case kCallGate32: {
      if (d.dpl() < cpl || d.dpl() < (sel & 3u)) raise_gp(sel_error(sel));
      if (!d.present()) raise(kVecNP, sel_error(sel));
      const uint16_t csel = d.gate_selector();
      if ((csel & 0xFFFC) == 0) raise_gp(0);
      const Descriptor cd = read_descriptor(csel);
      if (!cd.is_code() || (cd.conforming() ? cd.dpl() > cpl : cd.dpl() != cpl)) raise_gp(sel_error(csel));
      if (!cd.present()) raise(kVecNP, sel_error(csel));
      uint32_t target = d.gate_offset();
      if (d.type() == kCallGate16) target &= 0xFFFF;
      if (target > cd.limit()) raise_gp(0);
      load_cs(csel, cd, cpl);
      eip = target;
      return;
    }
    case kTaskGate: {
      if (d.dpl() < cpl || d.dpl() < (sel & 3u)) raise_gp(sel_error(sel));
      if (!d.present()) raise(kVecNP, sel_error(sel));
      const uint16_t tss = d.gate_selector();
      if (tss & 4) raise_gp(sel_error(tss));
      const Descriptor td = read_descriptor(tss);
      if (td.s() || (td.type() != kTss16Available && td.type() != kTss32Available)) raise_gp(sel_error(tss));
      if (!td.present()) raise(kVecNP, sel_error(tss));
      task_switch(tss, td, TaskSource::kJump, next_eip);
      return;
    }
    case kTss16Available:
    case kTss32Available:
      if (d.dpl() < cpl || d.dpl() < (sel & 3u)) raise_gp(sel_error(sel));
      if (!d.present()) raise(kVecNP, sel_error(sel));
      task_switch(sel, d, TaskSource::kJump, next_eip);
      return;
    default:
      raise_gp(sel_error(sel));
  }
}

void Cpu::far_call(uint16_t sel, uint32_t offset, unsigned opsize, uint32_t next_eip) {
  if (opsize == 2) offset &= 0xFFFF;
  if (!protected_mode() || v86()) {
    const uint32_t mask = stack_mask(seg[kSs]);
    const uint32_t sp0 = sp();
    if (opsize == 2) {
      write<2>(kSs, (sp0 - 2) & mask, seg[kCs].selector);
      write<2>(kSs, (sp0 - 4) & mask, next_eip);
    } else {
      write<4>(kSs, (sp0 - 4) & mask, seg[kCs].selector);
      write<4>(kSs, (sp0 - 8) & mask, next_eip);
    }
    set_sp(sp0 - 2 * opsize);
    load_cs_real(sel);
    eip = offset;
    return;
  }
  if ((sel & 0xFFFC) == 0) raise_gp(0);
  const Descriptor d = read_descriptor(sel);
  if (d.s()) {
    if (!d.is_code()) raise_gp(sel_error(sel));
    if (d.conforming() ? d.dpl() > cpl : ((sel & 3u) > cpl || d.dpl() != cpl)) raise_gp(sel_error(sel));
    if (!d.present()) raise(kVecNP, sel_error(sel));
    if (offset > d.limit()) raise_gp(0);
    const uint32_t top = push_frame(*this, seg[kSs], sp(), opsize, {seg[kCs].selector, next_eip}, Priv::kCurrent, 0);
    set_sp(top);
    load_cs(sel, d, cpl);
    eip = offset;
    return;
  }
  switch (d.type()) {
    case kCallGate16:
    case kCallGate32: {
      if (d.dpl() < cpl || d.dpl() < (sel & 3u)) raise_gp(sel_error(sel));
      if (!d.present()) raise(kVecNP, sel_error(sel));
      const uint16_t csel = d.gate_selector();
      if ((csel & 0xFFFC) == 0) raise_gp(0);
      const Descriptor cd = read_descriptor(csel);
      if (!cd.is_code() || cd.dpl() > cpl) raise_gp(sel_error(csel));
      if (!cd.present()) raise(kVecNP, sel_error(csel));
      const unsigned size = d.type() == kCallGate32 ? 4 : 2;
      uint32_t target = d.gate_offset();
      if (size == 2) target &= 0xFFFF;
      if (!cd.conforming() && cd.dpl() < cpl) {
        // More privilege: new stack from the TSS, parameters copied.
        const uint8_t new_cpl = cd.dpl();
        uint16_t ss_sel;
        uint32_t new_sp;
        tss_stack(new_cpl, ss_sel, new_sp);
        const Descriptor ssd = check_stack_segment(ss_sel, new_cpl, kVecTS);
        SegmentCache nss;
        nss.load(ss_sel, ssd);
        nss.recompute(false);
        if (target > cd.limit()) raise_gp(0);
        const unsigned params = d.gate_params();
        uint32_t param[32];
        const uint32_t old_mask = stack_mask(seg[kSs]);
        for (unsigned k = 0; k < params; ++k) param[k] = peek_sized(*this, (k * size) & old_mask, size);
        const Priv p = priv_for(new_cpl);
        const uint32_t err = sel_error(ss_sel);
        uint32_t top = push_frame(*this, nss, new_sp, size, {seg[kSs].selector, gpr[kEsp]}, p, err);
        for (unsigned k = params; k-- > 0;) top = push_frame(*this, nss, top, size, {param[k]}, p, err);
        top = push_frame(*this, nss, top, size, {seg[kCs].selector, next_eip}, p, err);
        Descriptor ssd_acc = ssd;
        set_accessed(ss_sel, ssd_acc);
        seg[kSs] = nss;
        gpr[kEsp] = nss.db ? top : ((gpr[kEsp] & 0xFFFF0000u) | (top & 0xFFFF));
        load_cs(csel, cd, new_cpl);
        eip = target;
        return;
      }
      if (target > cd.limit()) raise_gp(0);
      const uint32_t top = push_frame(*this, seg[kSs], sp(), size, {seg[kCs].selector, next_eip}, Priv::kCurrent, 0);
      set_sp(top);
      load_cs(csel, cd, cpl);
      eip = target;
      return;
    }
    case kTaskGate: {
      if (d.dpl() < cpl || d.dpl() < (sel & 3u)) raise_gp(sel_error(sel));
      if (!d.present()) raise(kVecNP, sel_error(sel));
      const uint16_t tss = d.gate_selector();
      if (tss & 4) raise_gp(sel_error(tss));
      const Descriptor td = read_descriptor(tss);
      if (td.s() || (td.type() != kTss16Available && td.type() != kTss32Available)) raise_gp(sel_error(tss));
      if (!td.present()) raise(kVecNP, sel_error(tss));
      task_switch(tss, td, TaskSource::kCall, next_eip);
      return;
    }
    case kTss16Available:
    case kTss32Available:
      if (d.dpl() < cpl || d.dpl() < (sel & 3u)) raise_gp(sel_error(sel));
      if (!d.present()) raise(kVecNP, sel_error(sel));
      task_switch(sel, d, TaskSource::kCall, next_eip);
      return;
    default:
      raise_gp(sel_error(sel));
  }
}

void Cpu::far_return(unsigned opsize, uint16_t pop_bytes) {
  const uint32_t mask = stack_mask(seg[kSs]);
  const uint32_t new_eip = peek_sized(*this, 0, opsize);
  const auto cs_sel = static_cast<uint16_t>(peek_sized(*this, opsize, 2));
  if (!protected_mode() || v86()) {
    load_cs_real(cs_sel);
    eip = opsize == 2 ? (new_eip & 0xFFFF) : new_eip;
    set_sp(sp() + 2 * opsize + pop_bytes);
    return;
  }
  if ((cs_sel & 0xFFFC) == 0) raise_gp(0);
  const Descriptor d = read_descriptor(cs_sel);
  check_return_cs(cs_sel, d);
  const uint8_t rpl = cs_sel & 3;
  if (rpl == cpl) {
    if (new_eip > d.limit()) raise_gp(0);
    load_cs(cs_sel, d, cpl);
    eip = new_eip;
    set_sp(sp() + 2 * opsize + pop_bytes);
    return;
  }
  // Return to an outer privilege level.
  const uint32_t new_esp = peek_sized(*this, (2 * opsize + pop_bytes) & mask, opsize);
  const auto ss_sel = static_cast<uint16_t>(peek_sized(*this, (3 * opsize + pop_bytes) & mask, 2));
  Descriptor ssd = check_stack_segment(ss_sel, rpl, kVecGP);
  if (new_eip > d.limit()) raise_gp(0);
  load_cs(cs_sel, d, rpl);
  eip = new_eip;
  set_accessed(ss_sel, ssd);
  seg[kSs].load(ss_sel, ssd);
  seg[kSs].recompute(false);
  set_sp(new_esp + pop_bytes);
  null_inaccessible_segments();
}

// ---------------------------------------------------------------------------
// IRET

void Cpu::iret_flags(uint32_t value, unsigned opsize) {
  uint32_t mask = kArithFlags | kTF | kDF | kNT | kRF | kAC | kID;
  if (!protected_mode() || cpl == 0) mask |= kIoplMask | kVIF | kVIP;
  if (!protected_mode() || cpl <= iopl()) mask |= kIF;
  if (opsize == 2) mask &= 0xFFFF;
  write_eflags(value, mask);
}

void Cpu::iret(unsigned opsize, uint32_t next_eip) {
  if (!protected_mode()) {
    const uint32_t new_eip = peek_sized(*this, 0, opsize);
    const auto cs_sel = static_cast<uint16_t>(peek_sized(*this, opsize, 2));
    const uint32_t flags = peek_sized(*this, 2 * opsize, opsize);
    set_sp(sp() + 3 * opsize);
    load_cs_real(cs_sel);
    eip = opsize == 2 ? (new_eip & 0xFFFF) : new_eip;
    iret_flags(flags, opsize);
    return;
  }
  if (v86()) {
    if (iopl() < 3) raise_gp(0);
    const uint32_t new_eip = peek_sized(*this, 0, opsize);
    const auto cs_sel = static_cast<uint16_t>(peek_sized(*this, opsize, 2));
    const uint32_t flags = peek_sized(*this, 2 * opsize, opsize);
    set_sp(sp() + 3 * opsize);
    load_cs_real(cs_sel);
    eip = opsize == 2 ? (new_eip & 0xFFFF) : new_eip;
    uint32_t mask = kArithFlags | kTF | kDF | kNT | kRF | kAC | kID | kIF;
    if (opsize == 2) mask &= 0xFFFF;
    write_eflags(flags, mask);
    return;
  }
  if (eflags & kNT) {
    // Return from a nested task: the link field of the current TSS.
    const auto link = static_cast<uint16_t>(read_lin_priv(tr.base, 2, Priv::kSys));
    if (link & 4) raise(kVecTS, sel_error(link));
    const Descriptor td = read_descriptor(link, kVecTS);
    if (td.s() || (td.type() != kTss16Busy && td.type() != kTss32Busy)) raise(kVecTS, sel_error(link));
    if (!td.present()) raise(kVecNP, sel_error(link));
    task_switch(link, td, TaskSource::kIret, next_eip);
    return;
  }
  const uint32_t mask = stack_mask(seg[kSs]);
  const uint32_t new_eip = peek_sized(*this, 0, opsize);
  const auto cs_sel = static_cast<uint16_t>(peek_sized(*this, opsize, 2));
  const uint32_t flags = peek_sized(*this, 2 * opsize, opsize);
  if (opsize == 4 && (flags & kVM) && cpl == 0) {
    throw EngineFault{"IRET to virtual-8086 mode: V86 mode is not implemented by the emulator"};
  }
  if ((cs_sel & 0xFFFC) == 0) raise_gp(0);
  const Descriptor d = read_descriptor(cs_sel);
  check_return_cs(cs_sel, d);
  const uint8_t rpl = cs_sel & 3;
  if (rpl == cpl) {
    if (new_eip > d.limit()) raise_gp(0);
    load_cs(cs_sel, d, cpl);
    eip = new_eip;
    set_sp(sp() + 3 * opsize);
    iret_flags(flags, opsize);
    return;
  }
  const uint32_t new_esp = peek_sized(*this, (3 * opsize) & mask, opsize);
  const auto ss_sel = static_cast<uint16_t>(peek_sized(*this, (4 * opsize) & mask, 2));
  Descriptor ssd = check_stack_segment(ss_sel, rpl, kVecGP);
  if (new_eip > d.limit()) raise_gp(0);
  iret_flags(flags, opsize);  // under the old CPL's rules
  load_cs(cs_sel, d, rpl);
  eip = new_eip;
  set_accessed(ss_sel, ssd);
  seg[kSs].load(ss_sel, ssd);
  seg[kSs].recompute(false);
  set_sp(new_esp);
  null_inaccessible_segments();
}

// ---------------------------------------------------------------------------
// Interrupts and exceptions

void Cpu::tss_stack(uint8_t dpl, uint16_t& ss, uint32_t& esp) {
  const bool tss32 = tr.type & 8;
  const uint32_t off = tss32 ? 4 + dpl * 8u : 2 + dpl * 4u;
  const uint32_t size = tss32 ? 8 : 4;
  if (!tr.usable || off + size - 1 > tr.limit) raise(kVecTS, sel_error(tr.selector));
  if (tss32) {
    esp = read_lin_priv(tr.base + off, 4, Priv::kSys);
    ss = static_cast<uint16_t>(read_lin_priv(tr.base + off + 4, 2, Priv::kSys));
  } else {
    esp = read_lin_priv(tr.base + off, 2, Priv::kSys);
    ss = static_cast<uint16_t>(read_lin_priv(tr.base + off + 2, 2, Priv::kSys));
  }
}

void Cpu::deliver(Event ev) {
  for (unsigned attempt = 0;; ++attempt) {
    try {
      deliver_once(ev);
      ext_ = 0;
      return;
    } catch (const CpuException& e) {
      ext_ = 0;
      const bool first_is_exception = ev.kind == EventKind::kException;
      if ((first_is_exception && ev.vector == kVecDF) || attempt > 8) {
        throw TripleFault{fmt::format("exception {} (error {:#x}) while delivering a double fault", e.vector,
                                      e.error)};
      }
      const bool df = first_is_exception && ((is_contributory(ev.vector) && is_contributory(e.vector)) ||
                                             (ev.vector == kVecPF && (is_contributory(e.vector) || e.vector == kVecPF)));
      if (df) ev = Event{kVecDF, EventKind::kException, true, 0, eip};
      else ev = Event{e.vector, EventKind::kException, e.has_error, e.error, eip};
    }
  }
}

void Cpu::deliver_once(const Event& ev) {
  const uint8_t v = ev.vector;
  const bool software = ev.kind == EventKind::kSoftware || ev.kind == EventKind::kSoftwareException;
  ext_ = software ? 0 : 1;
  if (ev.kind == EventKind::kExternal) ++interrupts_delivered;
  else ++exceptions_delivered;

  if (!protected_mode()) {
    // Real mode: the IVT (SDM vol. 3, 20.1.4).
    if (uint32_t{v} * 4 + 3 > idt_limit) raise_gp(0);
    const uint32_t off = read_lin_priv(idt_base + v * 4u, 2, Priv::kSys);
    const auto sel = static_cast<uint16_t>(read_lin_priv(idt_base + v * 4u + 2, 2, Priv::kSys));
    const uint32_t top = push_frame(*this, seg[kSs], sp(), 2, {flags() & 0xFFFF, seg[kCs].selector, ev.return_eip},
                                    Priv::kSys, 0);
    set_sp(top);
    eflags &= ~(kIF | kTF | kAC | kRF);
    load_cs_real(sel);
    eip = off;
    halted = false;
    return;
  }
  if (v86()) throw EngineFault{"interrupt in virtual-8086 mode: V86 mode is not implemented by the emulator"};

  const uint32_t idt_error = v * 8u + 2 + ext_;
  if (v * 8u + 7 > idt_limit) raise_gp(idt_error);
  Descriptor gate;
  gate.lo = read_lin_priv(idt_base + v * 8u, 4, Priv::kSys);
  gate.hi = read_lin_priv(idt_base + v * 8u + 4, 4, Priv::kSys);
  const uint8_t type = gate.type();
  if (gate.s() || !(type == kTaskGate || type == kIntGate16 || type == kTrapGate16 || type == kIntGate32 ||
                    type == kTrapGate32)) {
    raise_gp(idt_error);
  }
  if (software && gate.dpl() < cpl) raise_gp(v * 8u + 2);
  if (!gate.present()) raise(kVecNP, idt_error);

  if (type == kTaskGate) {
    const uint16_t tss = gate.gate_selector();
    if (tss & 4) raise_gp(sel_error(tss));
    const Descriptor td = read_descriptor(tss);
    if (td.s() || (td.type() != kTss16Available && td.type() != kTss32Available)) raise_gp(sel_error(tss));
    if (!td.present()) raise(kVecNP, sel_error(tss));
    task_switch(tss, td, TaskSource::kInterrupt, ev.return_eip, ev.has_error, ev.error);
    halted = false;
    return;
  }

  const uint16_t csel = gate.gate_selector();
  if ((csel & 0xFFFC) == 0) raise_gp(ext_);
  const Descriptor cd = read_descriptor(csel);
  if (!cd.is_code() || cd.dpl() > cpl) raise_gp(sel_error(csel));
  if (!cd.present()) raise(kVecNP, sel_error(csel));
  const bool gate32 = type == kIntGate32 || type == kTrapGate32;
  const unsigned size = gate32 ? 4 : 2;
  uint32_t target = gate.gate_offset();
  if (!gate32) target &= 0xFFFF;
  const uint32_t old_flags = flags();

  if (!cd.conforming() && cd.dpl() < cpl) {
    // Inter-privilege: stack from the TSS.
    const uint8_t new_cpl = cd.dpl();
    uint16_t ss_sel;
    uint32_t new_sp;
    tss_stack(new_cpl, ss_sel, new_sp);
    const Descriptor ssd = check_stack_segment(ss_sel, new_cpl, kVecTS);
    SegmentCache nss;
    nss.load(ss_sel, ssd);
    nss.recompute(false);
    if (target > cd.limit()) raise_gp(ext_);
    const Priv p = priv_for(new_cpl);
    const uint32_t err = sel_error(ss_sel);
    uint32_t top = push_frame(*this, nss, new_sp & stack_mask(nss), size,
                              {seg[kSs].selector, gpr[kEsp], old_flags, seg[kCs].selector, ev.return_eip}, p, err);
    if (ev.has_error) top = push_frame(*this, nss, top, size, {ev.error}, p, err);
    Descriptor ssd_acc = ssd;
    set_accessed(ss_sel, ssd_acc);
    seg[kSs] = nss;
    gpr[kEsp] = nss.db ? top : ((gpr[kEsp] & 0xFFFF0000u) | (top & 0xFFFF));
    load_cs(csel, cd, new_cpl);
  } else {
    if (target > cd.limit()) raise_gp(ext_);
    uint32_t top = push_frame(*this, seg[kSs], sp(), size, {old_flags, seg[kCs].selector, ev.return_eip},
                              priv_for(cpl), 0);
    if (ev.has_error) top = push_frame(*this, seg[kSs], top, size, {ev.error}, priv_for(cpl), 0);
    set_sp(top);
    load_cs(csel, cd, cpl);
  }
  eip = target;
  eflags &= ~(kTF | kNT | kRF | kVM);
  if (type == kIntGate16 || type == kIntGate32) eflags &= ~kIF;
  halted = false;
}

// ---------------------------------------------------------------------------
// Task switching (SDM vol. 3, 7.3)

void Cpu::task_switch(uint16_t sel, Descriptor d, TaskSource src, uint32_t next_eip, bool has_error,
                      uint32_t error) {
  const bool new32 = d.type() & 8;
  const uint32_t min_limit = new32 ? 0x67 : 0x2B;
  if (d.limit() < min_limit) raise(kVecTS, sel_error(sel));
  if (!tr.usable) raise(kVecTS, sel_error(tr.selector));
  const bool old32 = tr.type & 8;
  if (tr.limit < (old32 ? 0x5Fu : 0x29u)) raise(kVecTS, sel_error(tr.selector));
  const uint32_t nb = d.base();

  // 1. Read the new task's state (faults here leave everything unchanged).
  struct {
    uint32_t cr3 = 0, eip = 0, eflags = 0, gpr[8] = {};
    uint16_t seg[6] = {}, ldt = 0;
  } n;
  auto rd = [&](uint32_t off, unsigned size) { return read_lin_priv(nb + off, size, Priv::kSys); };
  if (new32) {
    n.cr3 = rd(0x1C, 4);
    n.eip = rd(0x20, 4);
    n.eflags = rd(0x24, 4);
    for (unsigned k = 0; k < 8; ++k) n.gpr[k] = rd(0x28 + 4 * k, 4);
    for (unsigned k = 0; k < 6; ++k) n.seg[k] = static_cast<uint16_t>(rd(0x48 + 4 * k, 2));
    n.ldt = static_cast<uint16_t>(rd(0x60, 2));
  } else {
    n.eip = rd(0x0E, 2);
    n.eflags = rd(0x10, 2);
    for (unsigned k = 0; k < 8; ++k) n.gpr[k] = rd(0x12 + 2 * k, 2);
    for (unsigned k = 0; k < 4; ++k) n.seg[k] = static_cast<uint16_t>(rd(0x22 + 2 * k, 2));
    n.ldt = static_cast<uint16_t>(rd(0x2A, 2));
  }
  if (src == TaskSource::kCall || src == TaskSource::kInterrupt) write_lin_priv(nb, 2, tr.selector, Priv::kSys);

  // 2. Save the current state in the old TSS.
  uint32_t saved_flags = flags();
  if (src == TaskSource::kIret) saved_flags &= ~kNT;
  const uint32_t ob = tr.base;
  if (old32) {
    write_lin_priv(ob + 0x20, 4, next_eip, Priv::kSys);
    write_lin_priv(ob + 0x24, 4, saved_flags, Priv::kSys);
    for (unsigned k = 0; k < 8; ++k) write_lin_priv(ob + 0x28 + 4 * k, 4, gpr[k], Priv::kSys);
    for (unsigned k = 0; k < 6; ++k) write_lin_priv(ob + 0x48 + 4 * k, 2, seg[k].selector, Priv::kSys);
  } else {
    write_lin_priv(ob + 0x0E, 2, next_eip, Priv::kSys);
    write_lin_priv(ob + 0x10, 2, saved_flags, Priv::kSys);
    for (unsigned k = 0; k < 8; ++k) write_lin_priv(ob + 0x12 + 2 * k, 2, gpr[k], Priv::kSys);
    for (unsigned k = 0; k < 4; ++k) write_lin_priv(ob + 0x22 + 2 * k, 2, seg[k].selector, Priv::kSys);
  }

  // 3. Busy bits.
  if (src == TaskSource::kJump || src == TaskSource::kIret) {
    Descriptor od = read_descriptor(tr.selector);
    write_descriptor_hi(tr.selector, od.hi & ~(2u << 8));
  }
  if (src != TaskSource::kIret) {
    d.hi |= 2u << 8;
    write_descriptor_hi(sel, d.hi);
  }

  // 4. Switch: TR, CR0.TS, CR3, registers.
  tr.load(sel, d);
  tr.type = d.type() | 2;
  tr.recompute(false);
  cr0 |= kCr0Ts;
  if (new32 && paging()) set_cr3(n.cr3);
  if (new32) {
    for (unsigned k = 0; k < 8; ++k) gpr[k] = n.gpr[k];
  } else {
    for (unsigned k = 0; k < 8; ++k) gpr[k] = (gpr[k] & 0xFFFF0000u) | (n.gpr[k] & 0xFFFF);
  }
  eip = n.eip;
  uint32_t flags = n.eflags;
  if (!new32) flags = (eflags & 0xFFFF0000u) | (flags & 0xFFFF);
  if (src == TaskSource::kCall || src == TaskSource::kInterrupt) flags |= kNT;
  eflags = (flags & kEflagsSettable) | kEflagsFixed;
  lazy_op = kLazyNone;
  if (eflags & kVM) throw EngineFault{"task switch into virtual-8086 mode: V86 mode is not implemented"};
  stop_block = true;

  // 5. Selectors first (unusable caches), then the checked descriptor loads:
  // faults from here on happen in the context of the new task (#TS).
  for (unsigned k = 0; k < 6; ++k) {
    seg[k].selector = n.seg[k];
    if (k != kCs) {
      seg[k].usable = false;
      seg[k].recompute(false);
    }
  }
  ldtr.selector = n.ldt;
  ldtr.usable = false;
  if (n.ldt & 0xFFFC) {
    if (n.ldt & 4) raise(kVecTS, sel_error(n.ldt));
    Descriptor ld = read_descriptor(n.ldt, kVecTS);
    if (ld.s() || ld.type() != kLdtType) raise(kVecTS, sel_error(n.ldt));
    if (!ld.present()) raise(kVecNP, sel_error(n.ldt));
    ldtr.load(n.ldt, ld);
    ldtr.recompute(false);
  }
  const uint16_t cs_sel = n.seg[kCs];
  if ((cs_sel & 0xFFFC) == 0) raise(kVecTS, sel_error(cs_sel));
  const Descriptor csd = read_descriptor(cs_sel, kVecTS);
  const uint8_t new_cpl = cs_sel & 3;
  if (!csd.is_code() || (csd.conforming() ? csd.dpl() > new_cpl : csd.dpl() != new_cpl)) {
    raise(kVecTS, sel_error(cs_sel));
  }
  if (!csd.present()) raise(kVecNP, sel_error(cs_sel));
  load_cs(cs_sel, csd, new_cpl);
  Descriptor ssd = check_stack_segment(n.seg[kSs], new_cpl, kVecTS);
  set_accessed(n.seg[kSs], ssd);
  seg[kSs].load(n.seg[kSs], ssd);
  seg[kSs].recompute(false);
  for (unsigned sr : {kEs, kDs, kFs, kGs}) {
    const uint16_t s = n.seg[sr];
    if ((s & 0xFFFC) == 0) continue;
    Descriptor sd = read_descriptor(s, kVecTS);
    if (!sd.s() || !sd.readable()) raise(kVecTS, sel_error(s));
    if ((sd.is_data() || !sd.conforming()) && (sd.dpl() < new_cpl || sd.dpl() < (s & 3u))) {
      raise(kVecTS, sel_error(s));
    }
    if (!sd.present()) raise(kVecNP, sel_error(s));
    set_accessed(s, sd);
    seg[sr].load(s, sd);
    seg[sr].recompute(false);
  }
  if (has_error) {
    const unsigned size = new32 ? 4 : 2;
    const uint32_t top = push_frame(*this, seg[kSs], sp(), size, {error}, priv_for(cpl), 0);
    set_sp(top);
  }
  if (eip > seg[kCs].limit) raise_gp(0);
}

// ---------------------------------------------------------------------------
// LLDT, LTR, SYSENTER/SYSEXIT, I/O permission

void Cpu::load_ldt(uint16_t sel) {
  if ((sel & 0xFFFC) == 0) {
    ldtr.selector = sel;
    ldtr.usable = false;
    return;
  }
  if (sel & 4) raise_gp(sel_error(sel));
  const Descriptor d = read_descriptor(sel);
  if (d.s() || d.type() != kLdtType) raise_gp(sel_error(sel));
  if (!d.present()) raise(kVecNP, sel_error(sel));
  ldtr.load(sel, d);
  ldtr.recompute(false);
}

void Cpu::load_tr(uint16_t sel) {
  if ((sel & 0xFFFC) == 0) raise_gp(0);
  if (sel & 4) raise_gp(sel_error(sel));
  Descriptor d = read_descriptor(sel);
  if (d.s() || (d.type() != kTss16Available && d.type() != kTss32Available)) raise_gp(sel_error(sel));
  if (!d.present()) raise(kVecNP, sel_error(sel));
  d.hi |= 2u << 8;  // busy
  write_descriptor_hi(sel, d.hi);
  tr.load(sel, d);
  tr.recompute(false);
}

namespace {
void flat_segment(SegmentCache& s, uint16_t sel, uint8_t type, uint8_t dpl) {
  s.selector = sel;
  s.base = 0;
  s.limit = 0xFFFFFFFFu;
  s.type = type;
  s.s = true;
  s.dpl = dpl;
  s.present = true;
  s.db = true;
  s.g = true;
  s.usable = true;
  s.recompute(false);
}
}  // namespace

void Cpu::sysenter() {
  if (!protected_mode() || (sysenter_cs & 0xFFFC) == 0) raise_gp(0);
  eflags &= ~(kVM | kIF | kRF);
  flat_segment(seg[kCs], static_cast<uint16_t>(sysenter_cs & 0xFFFC), 0xB, 0);
  flat_segment(seg[kSs], static_cast<uint16_t>((sysenter_cs + 8) & 0xFFFC), 0x3, 0);
  set_cpl(0);
  gpr[kEsp] = sysenter_esp;
  eip = sysenter_eip;
  stop_block = true;
}

void Cpu::sysexit() {
  if (!protected_mode() || v86() || cpl != 0 || (sysenter_cs & 0xFFFC) == 0) raise_gp(0);
  flat_segment(seg[kCs], static_cast<uint16_t>((sysenter_cs + 16) | 3), 0xB, 3);
  flat_segment(seg[kSs], static_cast<uint16_t>((sysenter_cs + 24) | 3), 0x3, 3);
  set_cpl(3);
  gpr[kEsp] = gpr[kEcx];
  eip = gpr[kEdx];
  stop_block = true;
}

void Cpu::check_io(uint16_t port, unsigned size) {
  if (!protected_mode()) return;
  if (!v86() && cpl <= iopl()) return;
  // The I/O permission bitmap of a 32-bit TSS (SDM vol. 1, 18.5.2).
  if (!tr.usable || !(tr.type & 8) || tr.limit < 0x67) raise_gp(0);
  const uint32_t base = read_lin_priv(tr.base + 0x66, 2, Priv::kSys);
  const uint32_t byte = base + port / 8;
  if (byte + 1 > tr.limit) raise_gp(0);
  const uint32_t bits = read_lin_priv(tr.base + byte, 2, Priv::kSys);
  const uint32_t mask = ((1u << size) - 1) << (port & 7);
  if (bits & mask) raise_gp(0);
}

}  // namespace twoostwo::vmcore::emu
