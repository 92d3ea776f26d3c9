// CpuState <-> kvm_regs/kvm_sregs and the CPUID edits: pure functions, no
// /dev/kvm needed (so these suites do not start with "Kvm").
#include "vmcore/kvm/kvm_state.h"

#include <asm/kvm_para.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace twoostwo::vmcore {
namespace {

Segment sample_segment(uint16_t selector, uint64_t base, uint32_t limit, uint8_t type) {
  Segment s;
  s.selector = selector;
  s.base = base;
  s.limit = limit;
  s.type = type;
  s.s = true;
  s.dpl = 3;
  s.present = true;
  s.db = true;
  s.l = false;
  s.g = true;
  s.avl = true;
  s.unusable = false;
  return s;
}

CpuState sample_state() {
  CpuState s;
  for (unsigned i = 0; i < 16; ++i) s.gpr[i] = 0x1111111111111111ull * (i + 1) + i;
  s.rip = 0xffffffff81000123;
  s.rflags = 0x246;
  s.cs = sample_segment(0x10, 0, 0xffffffff, 0xb);
  s.cs.l = true;
  s.cs.db = false;
  s.ds = sample_segment(0x18, 0x1000, 0xfffff, 0x3);
  s.es = sample_segment(0x20, 0x2000, 0xffff, 0x3);
  s.fs = sample_segment(0x28, 0x7fff12345000, 0xffffffff, 0x3);
  s.gs = sample_segment(0x30, 0xffff888000000000, 0xffffffff, 0x3);
  s.ss = sample_segment(0x18, 0, 0xffffffff, 0x3);
  s.tr = sample_segment(0x40, 0xfffffe0000003000, 0x4087, 0xb);
  s.tr.s = false;
  s.tr.g = false;
  s.ldt = Segment{};
  s.ldt.unusable = true;
  s.ldt.present = false;
  s.ldt.s = false;
  s.ldt.type = 2;
  s.gdt = {0xfffffe0000001000, 0x7f};
  s.idt = {0xfffffe0000000000, 0xfff};
  s.cr0 = 0x80050033;
  s.cr2 = 0x7f0000001234;
  s.cr3 = 0x1234000;
  s.cr4 = 0x3406f0;
  s.efer = 0xd01;
  return s;
}

void expect_same_segment(const Segment& a, const Segment& b, const char* what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(a.selector, b.selector);
  EXPECT_EQ(a.base, b.base);
  EXPECT_EQ(a.limit, b.limit);
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.s, b.s);
  EXPECT_EQ(a.dpl, b.dpl);
  EXPECT_EQ(a.present, b.present);
  EXPECT_EQ(a.db, b.db);
  EXPECT_EQ(a.l, b.l);
  EXPECT_EQ(a.g, b.g);
  EXPECT_EQ(a.avl, b.avl);
  EXPECT_EQ(a.unusable, b.unusable);
}

TEST(CpuStateKvmConversion, RoundTripsEveryField) {
  const CpuState in = sample_state();
  kvm_sregs sregs{};
  sregs.cr8 = 0xf;
  sregs.apic_base = 0xfee00900;
  sregs.interrupt_bitmap[0] = 1ull << 0x20;  // a stale injected interrupt
  sregs.interrupt_bitmap[3] = 1;
  kvm::to_kvm_sregs(in, sregs);
  const kvm_regs regs = kvm::to_kvm_regs(in);

  // What KVM gets.
  EXPECT_EQ(regs.rax, in.gpr[kRax]);
  EXPECT_EQ(regs.rsp, in.gpr[kRsp]);
  EXPECT_EQ(regs.r15, in.gpr[kR15]);
  EXPECT_EQ(regs.rip, in.rip);
  EXPECT_EQ(regs.rflags, in.rflags);
  EXPECT_EQ(sregs.cs.l, 1);
  EXPECT_EQ(sregs.cs.limit, 0xffffffffu);
  EXPECT_EQ(sregs.tr.s, 0);
  EXPECT_EQ(sregs.ldt.unusable, 1);
  EXPECT_EQ(sregs.gdt.base, in.gdt.base);
  EXPECT_EQ(sregs.idt.limit, in.idt.limit);
  EXPECT_EQ(sregs.efer, in.efer);
  EXPECT_EQ(sregs.cr8, 0xfu) << "kept";
  EXPECT_EQ(sregs.apic_base, 0xfee00900u) << "kept";
  for (auto word : sregs.interrupt_bitmap) EXPECT_EQ(word, 0u) << "interrupt_bitmap must be zero";

  // And back.
  const CpuState out = kvm::from_kvm(regs, sregs);
  EXPECT_EQ(out.gpr, in.gpr);
  EXPECT_EQ(out.rip, in.rip);
  EXPECT_EQ(out.rflags, in.rflags);
  expect_same_segment(out.cs, in.cs, "cs");
  expect_same_segment(out.ds, in.ds, "ds");
  expect_same_segment(out.es, in.es, "es");
  expect_same_segment(out.fs, in.fs, "fs");
  expect_same_segment(out.gs, in.gs, "gs");
  expect_same_segment(out.ss, in.ss, "ss");
  expect_same_segment(out.tr, in.tr, "tr");
  expect_same_segment(out.ldt, in.ldt, "ldt");
  EXPECT_EQ(out.gdt.base, in.gdt.base);
  EXPECT_EQ(out.gdt.limit, in.gdt.limit);
  EXPECT_EQ(out.idt.base, in.idt.base);
  EXPECT_EQ(out.idt.limit, in.idt.limit);
  EXPECT_EQ(out.cr0, in.cr0);
  EXPECT_EQ(out.cr2, in.cr2);
  EXPECT_EQ(out.cr3, in.cr3);
  EXPECT_EQ(out.cr4, in.cr4);
  EXPECT_EQ(out.efer, in.efer);
  EXPECT_EQ(cpu_mode(out), CpuMode::kLong64);
}

TEST(CpuStateKvmConversion, ResetStateMatchesKvmConventions) {
  kvm_sregs sregs{};
  kvm::to_kvm_sregs(CpuState::reset(), sregs);
  EXPECT_EQ(sregs.cs.selector, 0xf000);
  EXPECT_EQ(sregs.cs.base, 0xffff0000u);
  EXPECT_EQ(sregs.cs.limit, 0xffffu);
  EXPECT_EQ(sregs.cs.type, 0xb);
  EXPECT_EQ(sregs.cs.present, 1);
  EXPECT_EQ(sregs.cs.s, 1);
  EXPECT_EQ(sregs.tr.type, 0xb);
  EXPECT_EQ(sregs.tr.s, 0);
  EXPECT_EQ(sregs.ldt.type, 0x2);
  EXPECT_EQ(sregs.cr0, 0x60000010u);
  EXPECT_EQ(kvm::to_kvm_regs(CpuState::reset()).rip, 0xfff0u);
}

std::vector<kvm_cpuid_entry2> sample_cpuid() {
  std::vector<kvm_cpuid_entry2> t(4);
  std::memset(t.data(), 0, t.size() * sizeof(t[0]));
  t[0].function = 0;
  t[0].eax = 0xd;
  t[1].function = 1;
  t[1].eax = 0x000806f8;
  t[1].ebx = 0x07020800;  // APIC ID 7, 2 logical CPUs, CLFLUSH 8
  t[1].ecx = 0x7ffaf3ff;  // includes x2APIC, XSAVE, OSXSAVE, AVX; not hypervisor
  t[1].edx = 0x178bfbff;  // includes APIC
  t[2].function = KVM_CPUID_SIGNATURE;
  t[2].eax = KVM_CPUID_FEATURES;
  t[3].function = KVM_CPUID_FEATURES;
  t[3].eax = (1u << KVM_FEATURE_CLOCKSOURCE2) | (1u << KVM_FEATURE_PV_EOI) | (1u << KVM_FEATURE_ASYNC_PF_INT) |
             (1u << KVM_FEATURE_STEAL_TIME) | (1u << KVM_FEATURE_PV_SEND_IPI);
  return t;
}

TEST(CpuidAdjust, MarksTheHypervisorAndHidesTheLocalApic) {
  auto t = sample_cpuid();
  const auto before = t;
  kvm::adjust_cpuid(t, {});
  EXPECT_EQ(t[0].eax, before[0].eax);
  EXPECT_EQ(t[1].eax, before[1].eax);
  EXPECT_NE(t[1].ecx & kvm::kCpuid1EcxHypervisor, 0u);
  EXPECT_EQ(t[1].ecx & kvm::kCpuid1EcxX2apic, 0u);
  EXPECT_EQ(t[1].edx & kvm::kCpuid1EdxApic, 0u);
  EXPECT_EQ(t[1].ebx, 0x00020800u) << "APIC ID 0, rest kept";
  // XSAVE/AVX untouched without `minimal`.
  EXPECT_EQ(t[1].ecx & (kvm::kCpuid1EcxXsave | kvm::kCpuid1EcxOsxsave | kvm::kCpuid1EcxAvx),
            before[1].ecx & (kvm::kCpuid1EcxXsave | kvm::kCpuid1EcxOsxsave | kvm::kCpuid1EcxAvx));
  // Only the bits we mean to change changed.
  EXPECT_EQ(t[1].ecx & ~(kvm::kCpuid1EcxHypervisor | kvm::kCpuid1EcxX2apic),
            before[1].ecx & ~(kvm::kCpuid1EcxHypervisor | kvm::kCpuid1EcxX2apic));
  EXPECT_EQ(t[1].edx | kvm::kCpuid1EdxApic, before[1].edx);
  // KVM PV features that need an in-kernel APIC are gone; others stay.
  EXPECT_EQ(t[3].eax, (1u << KVM_FEATURE_CLOCKSOURCE2) | (1u << KVM_FEATURE_STEAL_TIME));
  EXPECT_EQ(t[2].eax, before[2].eax);
}

TEST(CpuidAdjust, MinimalAlsoHidesXsaveAndAvx) {
  auto t = sample_cpuid();
  kvm::adjust_cpuid(t, {.minimal = true});
  EXPECT_EQ(t[1].ecx & (kvm::kCpuid1EcxXsave | kvm::kCpuid1EcxOsxsave | kvm::kCpuid1EcxAvx), 0u);
  EXPECT_NE(t[1].ecx & kvm::kCpuid1EcxHypervisor, 0u);
}

}  // namespace
}  // namespace twoostwo::vmcore
