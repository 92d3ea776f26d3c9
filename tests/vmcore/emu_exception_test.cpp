// Event delivery of the emulator CPU, driven directly through Cpu::deliver:
// the real-mode IVT, IDT interrupt and trap gates with and without a
// privilege change through the TSS, error codes (with EXT and IDT bits),
// the double-fault rule, triple fault, and #DF through a task gate with a
// hardware task switch and the IRET back (Intel SDM vol. 3, 6.12-6.15,
// 7.3, 20.1.4; vol. 2 "INT n" and "IRET").
#include <gtest/gtest.h>

#include "tests/vmcore/emu_harness.h"
#include "vmcore/emulator/cpu.h"

namespace twoostwo::vmcore::emutest {
namespace {

using emu::Cpu;

constexpr uint32_t kHandler = 0x20000;  // gate targets: kHandler + 0x100 * vector
constexpr uint32_t kTss2 = 0x3800;

class EmuException : public ::testing::Test {
 protected:
  void SetUp() override {
    cpu_.attach_ram(ram_.data(), static_cast<uint32_t>(ram_.size()));
    ASSERT_TRUE(emu::from_cpu_state(cpu_, flat32_state(ram_, 0x10000)));
    cpu_.idt_base = kIdt;
    cpu_.idt_limit = 0xFF * 8 + 7;
  }
  // 32-bit interrupt (0x8E) or trap (0x8F) gate, DPL in bits 5-6 of `access`.
  void set_gate(uint8_t vector, uint8_t access, uint16_t sel = 0x08) {
    ram_.put64(kIdt + 8 * vector, gate(sel, kHandler + 0x100 * vector, access));
  }
  uint32_t stack(unsigned k) const { return ram_.u32(cpu_.gpr[emu::kEsp] + 4 * k); }
  Cpu::Event exception(uint8_t v, bool has_error = false, uint32_t error = 0) const {
    return {v, Cpu::EventKind::kException, has_error, error, cpu_.eip};
  }
  void enter_ring3() {
    cpu_.load_cs(0x1B, cpu_.read_descriptor(0x1B), 3);
    cpu_.load_segment(emu::kSs, 0x23);
    cpu_.load_segment(emu::kDs, 0x23);
    cpu_.gpr[emu::kEsp] = 0x8000;
  }

  GuestRam ram_{4 << 20};
  Cpu cpu_;
};

TEST_F(EmuException, RealModeThroughTheIvt) {
  CpuState s = CpuState::reset();
  s.cs.selector = 0x1000;
  s.cs.base = 0x10000;
  s.rip = 0x0234;
  s.ss.base = 0;
  s.gpr[kRsp] = 0x7000;
  s.rflags = 0x2 | 0x200 | 0x100;  // IF, TF
  s.idt = {0, 0x3FF};
  ASSERT_TRUE(emu::from_cpu_state(cpu_, s));
  ram_.put16(0x21 * 4, 0x5678);      // offset
  ram_.put16(0x21 * 4 + 2, 0x2000);  // segment
  cpu_.deliver({0x21, Cpu::EventKind::kSoftware, false, 0, 0x0236});
  EXPECT_EQ(cpu_.seg[emu::kCs].selector, 0x2000);
  EXPECT_EQ(cpu_.seg[emu::kCs].base, 0x20000u);
  EXPECT_EQ(cpu_.eip, 0x5678u);
  EXPECT_EQ(cpu_.gpr[emu::kEsp], 0x7000u - 6);
  EXPECT_EQ(ram_.u16(0x7000 - 2), 0x0302);  // FLAGS
  EXPECT_EQ(ram_.u16(0x7000 - 4), 0x1000);  // CS
  EXPECT_EQ(ram_.u16(0x7000 - 6), 0x0236);  // IP (return address)
  EXPECT_EQ(cpu_.eflags & (emu::kIF | emu::kTF), 0u);
}

TEST_F(EmuException, InterruptGateSamePrivilegeWithErrorCode) {
  set_gate(14, 0x8E);
  cpu_.eflags |= emu::kIF;
  cpu_.eip = 0x10040;
  cpu_.gpr[emu::kEsp] = 0xF000;
  cpu_.deliver(exception(emu::kVecPF, true, 0x6));
  EXPECT_EQ(cpu_.eip, kHandler + 0x100 * 14);
  EXPECT_EQ(cpu_.seg[emu::kCs].selector, 0x08);
  EXPECT_EQ(cpu_.gpr[emu::kEsp], 0xF000u - 16);
  EXPECT_EQ(stack(0), 0x6u);      // error code
  EXPECT_EQ(stack(1), 0x10040u);  // EIP of the faulting instruction
  EXPECT_EQ(stack(2), 0x08u);
  EXPECT_EQ(stack(3), 0x202u);
  EXPECT_EQ(cpu_.eflags & emu::kIF, 0u);  // interrupt gate
}

TEST_F(EmuException, TrapGateKeepsIf) {
  set_gate(0x80, 0x8F);
  cpu_.eflags |= emu::kIF;
  cpu_.deliver({0x80, Cpu::EventKind::kSoftware, false, 0, 0x10002});
  EXPECT_NE(cpu_.eflags & emu::kIF, 0u);
  EXPECT_EQ(stack(0), 0x10002u);
}

TEST_F(EmuException, PrivilegeChangeTakesTheRing0StackFromTheTss) {
  set_gate(13, 0x8E);
  enter_ring3();
  cpu_.eip = 0x12345;
  cpu_.eflags = 0x3202 & ~0x3000u;  // IF
  cpu_.deliver(exception(emu::kVecGP, true, 0x10));
  EXPECT_EQ(cpu_.cpl, 0);
  EXPECT_EQ(cpu_.seg[emu::kSs].selector, 0x10);  // TSS.SS0
  EXPECT_EQ(cpu_.gpr[emu::kEsp], 0xE000u - 24);   // TSS.ESP0 minus the frame
  EXPECT_EQ(stack(0), 0x10u);     // error code
  EXPECT_EQ(stack(1), 0x12345u);  // EIP
  EXPECT_EQ(stack(2), 0x1Bu);     // CS
  EXPECT_EQ(stack(3), 0x202u);    // EFLAGS
  EXPECT_EQ(stack(4), 0x8000u);   // ESP
  EXPECT_EQ(stack(5), 0x23u);     // SS
  // IRET back to ring 3 (after popping the error code as a handler does).
  cpu_.gpr[emu::kEsp] += 4;
  cpu_.iret(4, 0);
  EXPECT_EQ(cpu_.cpl, 3);
  EXPECT_EQ(cpu_.eip, 0x12345u);
  EXPECT_EQ(cpu_.gpr[emu::kEsp], 0x8000u);
  EXPECT_EQ(cpu_.seg[emu::kSs].selector, 0x23);
  EXPECT_NE(cpu_.eflags & emu::kIF, 0u);
}

TEST_F(EmuException, SoftwareInterruptToAMorePrivilegedGateIsGp) {
  set_gate(0x81, 0x8E);  // DPL 0
  set_gate(13, 0x8E);
  enter_ring3();
  cpu_.eip = 0x10000;
  cpu_.deliver({0x81, Cpu::EventKind::kSoftware, false, 0, 0x10002});
  EXPECT_EQ(cpu_.eip, kHandler + 0x100 * 13);
  EXPECT_EQ(stack(0), 0x81u * 8 + 2);  // IDT bit set, EXT clear (software)
  EXPECT_EQ(stack(1), 0x10000u);       // the INT instruction itself
  // An exception (hardware) through the same DPL-0 gate is allowed.
  set_gate(6, 0x8E);
  enter_ring3();
  cpu_.deliver(exception(emu::kVecUD));
  EXPECT_EQ(cpu_.eip, kHandler + 0x100 * 6);
}

TEST_F(EmuException, NotPresentGateIsNpWithExt) {
  ram_.put64(kIdt + 8 * 0x30, gate(0x08, kHandler, 0x0E));  // P = 0
  set_gate(11, 0x8E);
  cpu_.deliver({0x30, Cpu::EventKind::kExternal, false, 0, 0x10000});
  EXPECT_EQ(cpu_.eip, kHandler + 0x100 * 11);
  EXPECT_EQ(stack(0), 0x30u * 8 + 2 + 1);  // IDT | EXT
}

TEST_F(EmuException, ContributoryDuringContributoryIsDoubleFault) {
  // #GP's gate points at a not-present code segment -> #NP while delivering
  // #GP -> #DF (error code 0).
  ram_.put64(kGdt + 0x48, descriptor(0, 0xFFFFF, 0x1A, 0xC));  // code, P = 0
  cpu_.gdt_limit = 0x4F;
  set_gate(13, 0x8E, 0x48);
  set_gate(8, 0x8E);
  cpu_.deliver(exception(emu::kVecGP, true, 0));
  EXPECT_EQ(cpu_.eip, kHandler + 0x100 * 8);
  EXPECT_EQ(stack(0), 0u);
}

TEST_F(EmuException, FaultWhileDeliveringASoftwareInterruptIsNotADoubleFault) {
  // A benign first event (INT n): a fault during its delivery (#NP, the
  // gate's code segment is not present) is delivered on its own, not as #DF.
  ram_.put64(kGdt + 0x48, descriptor(0, 0xFFFFF, 0x1A, 0xC));
  cpu_.gdt_limit = 0x4F;
  set_gate(0x40, 0xEE, 0x48);  // DPL 3 interrupt gate to the absent segment
  set_gate(11, 0x8E);
  set_gate(8, 0x8E);
  cpu_.deliver({0x40, Cpu::EventKind::kSoftware, false, 0, 0x10002});
  EXPECT_EQ(cpu_.eip, kHandler + 0x100 * 11);
  EXPECT_EQ(stack(0), 0x48u);  // the selector, EXT clear
}

TEST_F(EmuException, PageFaultDuringPageFaultIsDoubleFault) {
  // Paging on, the #PF handler's stack page not present.
  const uint32_t pd = 0x100000, pt = 0x101000;
  ram_.put32(pd, pt | 3);
  for (uint32_t p = 0; p < 1024; ++p) ram_.put32(pt + 4 * p, (p << 12) | 3);
  ram_.put32(pt + 4 * 0xE, 0);  // 0xE000..0xEFFF absent (the stack below 0xF000)
  cpu_.set_cr3(pd);
  cpu_.set_cr0(cpu_.cr0 | emu::kCr0Pg);
  set_gate(14, 0x8E);
  set_gate(8, 0x8E);
  cpu_.gpr[emu::kEsp] = 0xF000;
  EXPECT_THROW(cpu_.deliver(exception(emu::kVecPF, true, 2)), emu::TripleFault);
  // With a usable stack for #DF through a task gate it would be delivered;
  // here #DF itself faults on the same stack: triple fault.
}

TEST_F(EmuException, NoIdtIsATripleFault) {
  cpu_.idt_limit = 0;
  EXPECT_THROW(cpu_.deliver(exception(emu::kVecUD)), emu::TripleFault);
}

TEST_F(EmuException, DoubleFaultThroughATaskGateSwitchesTasksAndIretReturns) {
  // GDT 0x48: a second 32-bit TSS at kTss2 (available); IDT 8: task gate.
  ram_.put64(kGdt + 0x48, descriptor(kTss2, 0x67, 0x89, 0x0));
  cpu_.gdt_limit = 0x4F;
  ram_.put64(kIdt + 8 * 8, gate(0x48, 0, 0x85));  // task gate, P, DPL 0
  std::memset(ram_.data() + kTss2, 0, 0x68);
  ram_.put32(kTss2 + 0x20, 0x22222);  // EIP
  ram_.put32(kTss2 + 0x24, 0x2);      // EFLAGS
  ram_.put32(kTss2 + 0x38, 0xC000);   // ESP
  ram_.put32(kTss2 + 0x48, 0x10);     // ES
  ram_.put32(kTss2 + 0x4C, 0x08);     // CS
  ram_.put32(kTss2 + 0x50, 0x10);     // SS
  ram_.put32(kTss2 + 0x54, 0x10);     // DS
  cpu_.eip = 0x10100;
  cpu_.gpr[emu::kEax] = 0xAAAA;
  cpu_.deliver(exception(emu::kVecDF, true, 0));
  EXPECT_EQ(cpu_.tr.selector, 0x48);
  EXPECT_EQ(cpu_.eip, 0x22222u);
  EXPECT_EQ(cpu_.gpr[emu::kEsp], 0xC000u - 4);
  EXPECT_EQ(ram_.u32(0xC000 - 4), 0u);          // the error code, on the new task's stack
  EXPECT_NE(cpu_.eflags & emu::kNT, 0u);        // nested
  EXPECT_NE(cpu_.cr0 & emu::kCr0Ts, 0u);        // task switched
  EXPECT_EQ(ram_.u16(kTss2), 0x28);             // back link = the old TSS
  EXPECT_EQ(ram_.u32(kTss + 0x20), 0x10100u);   // old task's EIP saved
  EXPECT_EQ(ram_.u32(kTss + 0x28), 0xAAAAu);    // and its EAX
  EXPECT_EQ((ram_.u32(kGdt + 0x48 + 4) >> 8) & 0xF, 0xBu);  // new TSS busy
  EXPECT_EQ((ram_.u32(kGdt + 0x28 + 4) >> 8) & 0xF, 0xBu);  // old one stays busy (nested)
  // IRET with NT: back to the old task, which becomes current again.
  cpu_.iret(4, cpu_.eip + 1);
  EXPECT_EQ(cpu_.tr.selector, 0x28);
  EXPECT_EQ(cpu_.eip, 0x10100u);
  EXPECT_EQ(cpu_.gpr[emu::kEax], 0xAAAAu);
  EXPECT_EQ((ram_.u32(kGdt + 0x48 + 4) >> 8) & 0xF, 0x9u);  // the #DF task is available again
  EXPECT_EQ(ram_.u32(kTss2 + 0x20), 0x22223u);  // its EIP saved at the IRET
}

TEST_F(EmuException, FarCallThroughACallGateToRing0CopiesParameters) {
  // Call gate 0x48: DPL 3, 2 dword parameters, to 0x08:0x30000.
  ram_.put64(kGdt + 0x48, gate(0x08, 0x30000, 0xEC) | (2ull << 32));
  cpu_.gdt_limit = 0x4F;
  enter_ring3();
  ram_.put32(0x8000, 0x1111);  // parameter 1 (at ESP)
  ram_.put32(0x8004, 0x2222);  // parameter 2
  cpu_.far_call(0x4B, 0, 4, 0x10007);
  EXPECT_EQ(cpu_.cpl, 0);
  EXPECT_EQ(cpu_.eip, 0x30000u);
  EXPECT_EQ(cpu_.seg[emu::kSs].selector, 0x10);
  EXPECT_EQ(cpu_.gpr[emu::kEsp], 0xE000u - 24);
  EXPECT_EQ(stack(0), 0x10007u);  // return EIP
  EXPECT_EQ(stack(1), 0x1Bu);     // return CS
  EXPECT_EQ(stack(2), 0x1111u);   // parameters, in their order
  EXPECT_EQ(stack(3), 0x2222u);
  EXPECT_EQ(stack(4), 0x8000u);   // caller ESP
  EXPECT_EQ(stack(5), 0x23u);     // caller SS
  cpu_.far_return(4, 8);
  EXPECT_EQ(cpu_.cpl, 3);
  EXPECT_EQ(cpu_.eip, 0x10007u);
  EXPECT_EQ(cpu_.gpr[emu::kEsp], 0x8008u);  // parameters released on the caller's stack too
  EXPECT_EQ(cpu_.seg[emu::kDs].usable, true);  // DS = 0x23 (DPL 3) stays
}

TEST_F(EmuException, ReturnToRing3NullsRing0DataSegments) {
  set_gate(0x80, 0xEE);
  enter_ring3();
  cpu_.eip = 0x10000;
  cpu_.deliver({0x80, Cpu::EventKind::kSoftware, false, 0, 0x10002});
  cpu_.load_segment(emu::kDs, 0x10);
  cpu_.load_segment(emu::kFs, 0x23);
  cpu_.iret(4, 0);
  EXPECT_EQ(cpu_.cpl, 3);
  EXPECT_EQ(cpu_.seg[emu::kDs].selector, 0);  // DPL 0 data: nulled
  EXPECT_FALSE(cpu_.seg[emu::kDs].usable);
  EXPECT_EQ(cpu_.seg[emu::kFs].selector, 0x23);  // DPL 3: kept
}

}  // namespace
}  // namespace twoostwo::vmcore::emutest
