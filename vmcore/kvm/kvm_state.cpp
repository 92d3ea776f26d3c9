#include "vmcore/kvm/kvm_state.h"

#include <asm/kvm_para.h>

#include <cstring>

namespace twoostwo::vmcore::kvm {

kvm_segment to_kvm_segment(const Segment& s) {
  kvm_segment k{};
  k.base = s.base;
  k.limit = s.limit;
  k.selector = s.selector;
  k.type = s.type;
  k.present = s.present ? 1 : 0;
  k.dpl = s.dpl;
  k.db = s.db ? 1 : 0;
  k.s = s.s ? 1 : 0;
  k.l = s.l ? 1 : 0;
  k.g = s.g ? 1 : 0;
  k.avl = s.avl ? 1 : 0;
  k.unusable = s.unusable ? 1 : 0;
  return k;
}

Segment from_kvm_segment(const kvm_segment& k) {
  Segment s;
  s.selector = k.selector;
  s.base = k.base;
  s.limit = k.limit;
  s.type = k.type;
  s.s = k.s != 0;
  s.dpl = k.dpl;
  s.present = k.present != 0;
  s.db = k.db != 0;
  s.l = k.l != 0;
  s.g = k.g != 0;
  s.avl = k.avl != 0;
  s.unusable = k.unusable != 0;
  return s;
}

kvm_regs to_kvm_regs(const CpuState& s) {
  kvm_regs r{};
  r.rax = s.gpr[kRax];
  r.rcx = s.gpr[kRcx];
  r.rdx = s.gpr[kRdx];
  r.rbx = s.gpr[kRbx];
  r.rsp = s.gpr[kRsp];
  r.rbp = s.gpr[kRbp];
  r.rsi = s.gpr[kRsi];
  r.rdi = s.gpr[kRdi];
  r.r8 = s.gpr[kR8];
  r.r9 = s.gpr[kR9];
  r.r10 = s.gpr[kR10];
  r.r11 = s.gpr[kR11];
  r.r12 = s.gpr[kR12];
  r.r13 = s.gpr[kR13];
  r.r14 = s.gpr[kR14];
  r.r15 = s.gpr[kR15];
  r.rip = s.rip;
  r.rflags = s.rflags;
  return r;
}

void to_kvm_sregs(const CpuState& s, kvm_sregs& sregs) {
  sregs.cs = to_kvm_segment(s.cs);
  sregs.ds = to_kvm_segment(s.ds);
  sregs.es = to_kvm_segment(s.es);
  sregs.fs = to_kvm_segment(s.fs);
  sregs.gs = to_kvm_segment(s.gs);
  sregs.ss = to_kvm_segment(s.ss);
  sregs.tr = to_kvm_segment(s.tr);
  sregs.ldt = to_kvm_segment(s.ldt);
  sregs.gdt = kvm_dtable{};
  sregs.gdt.base = s.gdt.base;
  sregs.gdt.limit = s.gdt.limit;
  sregs.idt = kvm_dtable{};
  sregs.idt.base = s.idt.base;
  sregs.idt.limit = s.idt.limit;
  sregs.cr0 = s.cr0;
  sregs.cr2 = s.cr2;
  sregs.cr3 = s.cr3;
  sregs.cr4 = s.cr4;
  sregs.efer = s.efer;
  std::memset(sregs.interrupt_bitmap, 0, sizeof(sregs.interrupt_bitmap));
}

CpuState from_kvm(const kvm_regs& r, const kvm_sregs& sr) {
  CpuState s;
  s.gpr[kRax] = r.rax;
  s.gpr[kRcx] = r.rcx;
  s.gpr[kRdx] = r.rdx;
  s.gpr[kRbx] = r.rbx;
  s.gpr[kRsp] = r.rsp;
  s.gpr[kRbp] = r.rbp;
  s.gpr[kRsi] = r.rsi;
  s.gpr[kRdi] = r.rdi;
  s.gpr[kR8] = r.r8;
  s.gpr[kR9] = r.r9;
  s.gpr[kR10] = r.r10;
  s.gpr[kR11] = r.r11;
  s.gpr[kR12] = r.r12;
  s.gpr[kR13] = r.r13;
  s.gpr[kR14] = r.r14;
  s.gpr[kR15] = r.r15;
  s.rip = r.rip;
  s.rflags = r.rflags;
  s.cs = from_kvm_segment(sr.cs);
  s.ds = from_kvm_segment(sr.ds);
  s.es = from_kvm_segment(sr.es);
  s.fs = from_kvm_segment(sr.fs);
  s.gs = from_kvm_segment(sr.gs);
  s.ss = from_kvm_segment(sr.ss);
  s.tr = from_kvm_segment(sr.tr);
  s.ldt = from_kvm_segment(sr.ldt);
  s.gdt.base = sr.gdt.base;
  s.gdt.limit = sr.gdt.limit;
  s.idt.base = sr.idt.base;
  s.idt.limit = sr.idt.limit;
  s.cr0 = sr.cr0;
  s.cr2 = sr.cr2;
  s.cr3 = sr.cr3;
  s.cr4 = sr.cr4;
  s.efer = sr.efer;
  return s;
}

void adjust_cpuid(std::span<kvm_cpuid_entry2> entries, const CpuidPolicy& policy) {
  constexpr uint32_t kPvNeedsApic =
      (1u << KVM_FEATURE_ASYNC_PF) | (1u << KVM_FEATURE_PV_EOI) | (1u << KVM_FEATURE_PV_UNHALT) |
      (1u << KVM_FEATURE_ASYNC_PF_VMEXIT) | (1u << KVM_FEATURE_PV_SEND_IPI) |
      (1u << KVM_FEATURE_PV_SCHED_YIELD) | (1u << KVM_FEATURE_ASYNC_PF_INT) |
      (1u << KVM_FEATURE_MSI_EXT_DEST_ID);
  for (kvm_cpuid_entry2& e : entries) {
    if (e.function == 1) {
      e.ecx |= kCpuid1EcxHypervisor;
      e.ecx &= ~kCpuid1EcxX2apic;
      e.edx &= ~kCpuid1EdxApic;
      e.ebx &= 0x00FFFFFFu;  // initial APIC ID = vCPU index 0
      if (policy.minimal) e.ecx &= ~(kCpuid1EcxXsave | kCpuid1EcxOsxsave | kCpuid1EcxAvx);
    } else if (e.function == KVM_CPUID_FEATURES) {
      e.eax &= ~kPvNeedsApic;
    }
  }
}

}  // namespace twoostwo::vmcore::kvm
