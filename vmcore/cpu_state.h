// Engine-neutral x86 CPU register state: what the boot loader asks for at
// entry, what `CpuEngine` reads back, and what the fault report prints.
// Field meanings follow the Intel SDM vol. 3 (and KVM's kvm_regs/kvm_sregs).
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace twoostwo::vmcore {

/// A segment register with its hidden descriptor cache (Intel SDM 3.4.3).
struct Segment {
  uint16_t selector = 0;
  uint64_t base = 0;
  uint32_t limit = 0xFFFF;  // in bytes (already scaled by G)
  uint8_t type = 0;         // descriptor type field (4 bits)
  bool s = true;            // code/data (true) or system (false)
  uint8_t dpl = 0;
  bool present = true;
  bool db = false;  // default operation size (32-bit) / big
  bool l = false;   // 64-bit code segment
  bool g = false;   // granularity (informational; limit is already scaled)
  bool avl = false;
  bool unusable = false;
};

/// GDTR / IDTR.
struct DescriptorTable {
  uint64_t base = 0;
  uint16_t limit = 0xFFFF;
};

/// Register order of the general-purpose array (the x86 encoding order).
enum Gpr : unsigned { kRax, kRcx, kRdx, kRbx, kRsp, kRbp, kRsi, kRdi, kR8, kR9, kR10, kR11, kR12, kR13, kR14, kR15 };

struct CpuState {
  std::array<uint64_t, 16> gpr{};
  uint64_t rip = 0xFFF0;
  uint64_t rflags = 0x2;
  Segment cs, ds, es, fs, gs, ss, tr, ldt;
  DescriptorTable gdt, idt;
  uint64_t cr0 = 0x60000010, cr2 = 0, cr3 = 0, cr4 = 0, efer = 0;

  /// The architectural state after RESET (Intel SDM 3 table 9-1): real mode,
  /// CS.selector 0xF000 with base 0xFFFF0000, IP 0xFFF0.
  static CpuState reset();
};

/// The CPU mode implied by CR0.PE, EFER.LMA and CS.L / CS.D.
enum class CpuMode { kReal, kProtected16, kProtected32, kLong64, kCompat32 };
CpuMode cpu_mode(const CpuState& s);

/// "rax=... rbx=..." multi-line dump used by fault reports.
std::string format_registers(const CpuState& s);

}  // namespace twoostwo::vmcore
