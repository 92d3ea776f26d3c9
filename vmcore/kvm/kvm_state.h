// Pure conversions between the engine-neutral CpuState and KVM's register
// structures, and the CPUID table edits KvmEngine applies before
// KVM_SET_CPUID2. Nothing here calls KVM, so tests run without /dev/kvm.
//
// Internal to vmcore/kvm (DESIGN.md: only vmcore/ includes <linux/kvm.h>;
// the Monitor includes kvm_engine.h, which does not include this file).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>

#include "vmcore/cpu_state.h"

namespace twoostwo::vmcore::kvm {

/// Segment with its descriptor cache <-> kvm_segment. Both keep the limit in
/// bytes (already scaled by G), as KVM's KVM_GET_SREGS/KVM_SET_SREGS do
/// (Documentation/virt/kvm/api.rst, "KVM_GET_SREGS").
kvm_segment to_kvm_segment(const Segment& s);
Segment from_kvm_segment(const kvm_segment& k);

/// CpuState -> kvm_regs (all 16 GPRs, RIP, RFLAGS).
kvm_regs to_kvm_regs(const CpuState& s);

/// CpuState -> kvm_sregs, written over `sregs` (normally the result of
/// KVM_GET_SREGS): segments, GDTR/IDTR, CR0/2/3/4 and EFER are replaced;
/// CR8 and APIC_BASE are kept as they are (CpuState has no such fields);
/// `interrupt_bitmap` is zeroed, so no stale injected interrupt survives a
/// state load (api.rst: at most one bit may be set, and only an interrupt
/// that was acknowledged but not yet delivered).
void to_kvm_sregs(const CpuState& s, kvm_sregs& sregs);

/// kvm_regs + kvm_sregs -> CpuState.
CpuState from_kvm(const kvm_regs& regs, const kvm_sregs& sregs);

/// What `adjust_cpuid` changes.
struct CpuidPolicy {
  /// Also clear XSAVE, OSXSAVE and AVX (leaf 1 ECX bits 26, 27, 28): a guest
  /// then never executes XSAVE/XRSTOR, which the nested kvm_pvm hypervisor
  /// of this project's machines fails on (DESIGN.md, "Two CPU engines").
  bool minimal = false;
};

// CPUID bit positions used by adjust_cpuid (Intel SDM vol. 2, CPUID leaf 1).
inline constexpr uint32_t kCpuid1EdxApic = 1u << 9;
inline constexpr uint32_t kCpuid1EcxX2apic = 1u << 21;
inline constexpr uint32_t kCpuid1EcxXsave = 1u << 26;
inline constexpr uint32_t kCpuid1EcxOsxsave = 1u << 27;
inline constexpr uint32_t kCpuid1EcxAvx = 1u << 28;
inline constexpr uint32_t kCpuid1EcxHypervisor = 1u << 31;

/// Edit the table from KVM_GET_SUPPORTED_CPUID for our machine (facts §2.4):
/// - leaf 1: ECX.hypervisor set; EBX[31:24] (initial APIC ID) = 0, the only
///   vCPU's index; EDX.APIC and ECX.x2APIC cleared, because there is no
///   in-kernel local APIC (interrupts come from our PIC model through
///   KVM_INTERRUPT); with `policy.minimal` also XSAVE/OSXSAVE/AVX cleared.
/// - leaf 0x40000001 (KVM paravirtual features, if present): the features
///   that rely on an in-kernel local APIC or I/O APIC are cleared (PV_EOI,
///   PV_SEND_IPI, PV_UNHALT, PV_SCHED_YIELD, ASYNC_PF, ASYNC_PF_VMEXIT,
///   ASYNC_PF_INT, MSI_EXT_DEST_ID): KVM refuses the PV_EOI and async-PF
///   MSRs without one (arch/x86/kvm/x86.c), which a Linux guest would meet
///   as a #GP on WRMSR; the others are IPI/APIC-ID mechanisms that mean
///   nothing on our single vCPU behind an 8259A.
void adjust_cpuid(std::span<kvm_cpuid_entry2> entries, const CpuidPolicy& policy);

}  // namespace twoostwo::vmcore::kvm
