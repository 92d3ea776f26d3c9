// The x87 FPU of the built-in x86 emulator engine: an i686-class (Pentium Pro /
// Pentium II) floating-point unit, no SSE, no FXSAVE/FXRSTOR, no FISTTP (SSE3).
//
// Behaviour follows the Intel SDM vol. 1 chapter 8 ("Programming with the x87
// FPU") and the per-instruction pages of vol. 2; the save-area layouts are the
// figures 8-9..8-12 of vol. 1 (8.1.10).
//
// Numeric instructions are executed by the host's own x87 on the guest's
// complete x87 state (FRSTOR of the guest state, the guest's instruction
// bytes, FNSAVE), with the guest's control word: rounding control, precision
// control, masked and unmasked exception responses, C0-C3, tags and stack
// faults are the hardware's, bit for bit. Transcendental results (FSIN, FCOS,
// FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1) are the host CPU's, which
// may differ from a Pentium II in the last bit. The control and environment
// instructions (FNINIT, FNCLEX, FLDCW, FNSTCW, FNSTSW, FNSTENV, FLDENV,
// FNSAVE, FRSTOR, FWAIT) and FIP/FDP/FOP are done in C++. Needs an x86-64
// host (a compile-time check). See fpu.cpp for the details.
//
// The core decodes with Zydis and calls `Fpu::execute` for every x87 mnemonic
// (ZYDIS_MNEMONIC_F*, including FWAIT). The core checks CR0.EM/TS (#NM) before
// calling, applies segmentation/paging through `FpuMemory`, and turns the
// returned `FpuOutcome` into #UD / #MF / the memory fault.
#pragma once

#include <Zydis/Zydis.h>

#include <array>
#include <cstdint>
#include <span>

namespace twoostwo::vmcore::emu {

/// The architectural x87 state (Intel SDM vol. 1, 8.1).
struct FpuState {
  uint16_t fcw = 0x037F;      // control word (after FNINIT)
  uint16_t fsw = 0;           // status word (TOP in bits 11-13)
  uint16_t ftw = 0xFFFF;      // full 16-bit tag word (2 bits per physical register; 11 = empty)
  uint16_t fop = 0;           // last opcode (11 bits)
  uint32_t fip = 0, fdp = 0;  // last instruction / data pointer (offsets)
  uint16_t fcs = 0, fds = 0;  // their selectors
  std::array<std::array<uint8_t, 10>, 8> regs{};  // physical registers R0..R7, 80-bit little-endian
};

/// How the core gives the FPU access to guest memory: `linear` is the linear
/// address with the segment base already applied (the core checks limits and
/// paging). A call that returns false has raised a fault; the FPU then aborts
/// the instruction without having changed `FpuState` and returns kMemoryFault.
/// The FPU reads every operand before changing any state, and for stores it
/// writes the whole operand in one `write` call (FNSAVE/FNSTENV: one call for
/// the whole area) before committing register/stack changes.
class FpuMemory {
 public:
  virtual ~FpuMemory() = default;
  virtual bool read(uint32_t linear, std::span<uint8_t> out) = 0;        // false: a fault was raised, abort
  virtual bool write(uint32_t linear, std::span<const uint8_t> in) = 0;  // false: a fault was raised, abort
};

/// Per-instruction facts the core knows and the FPU needs.
struct FpuContext {
  bool protected_mode = true;   // selects the FNSAVE/FSTENV layout (SDM vol. 1, 8.1.10, figures 8-9..8-12);
                                // false for real and virtual-8086 mode (20-bit linear FIP/FDP in the image)
  bool operand_size_32 = true;  // 16- vs 32-bit environment layout
  uint32_t mem_linear = 0;      // linear address of the memory operand (valid if the instruction has one)
  uint16_t cs = 0, ds = 0;      // selectors recorded in FCS/FDS (ds: the memory operand's segment, after overrides)
  uint32_t eip = 0;             // offset of the instruction, recorded in FIP
  uint32_t mem_offset = 0;      // effective address offset, recorded in FDP
};

enum class FpuOutcome : uint8_t {
  kOk,                  // done
  kMemoryFault,         // a FpuMemory call failed: the core delivers that fault; FpuState unchanged
  kUnsupported,         // not an x87 instruction this FPU implements: core raises #UD
  kFloatingPointError,  // an unmasked exception is pending and this was a waiting instruction: core raises #MF (CR0.NE=1)
};

/// EFLAGS bits the FPU reads (FCMOVcc) and writes (FCOMI/FCOMIP/FUCOMI/FUCOMIP).
inline constexpr uint32_t kFpuEflagsCf = 1u << 0;
inline constexpr uint32_t kFpuEflagsPf = 1u << 2;
inline constexpr uint32_t kFpuEflagsAf = 1u << 4;
inline constexpr uint32_t kFpuEflagsZf = 1u << 6;
inline constexpr uint32_t kFpuEflagsSf = 1u << 7;
inline constexpr uint32_t kFpuEflagsOf = 1u << 11;

class Fpu {
 public:
  FpuState& state();
  const FpuState& state() const;
  /// FNINIT / power-on state: FCW=037F, FSW=0, FTW=FFFF (all empty), pointers 0.
  /// Register contents are left as they are (as FNINIT does).
  void reset();
  /// Execute one x87 instruction (Zydis mnemonic ZYDIS_MNEMONIC_F* incl. FWAIT,
  /// FNSAVE, FRSTOR, FNSTENV, FLDENV, FNSTSW (incl. FNSTSW AX: the core passes a
  /// pointer to AX), FNSTCW, FLDCW, FNCLEX, FNINIT...).
  /// The FPU decodes the opcode byte and ModRM itself (insn.opcode, insn.raw.modrm,
  /// SDM vol. 2 appendix A.4); `operands` may be null and is not read.
  /// `ax` is the guest's AX for FNSTSW AX (written on success; null: kUnsupported
  /// for FNSTSW AX only).
  /// `eflags` is the guest's EFLAGS: read by FCMOVcc (CF, ZF, PF), written by
  /// FCOMI/FCOMIP/FUCOMI/FUCOMIP (ZF, PF, CF set per the SDM; OF, SF, AF
  /// cleared). If null, those instructions return kUnsupported. (The `eflags`
  /// parameter is an addition to the first published API.)
  /// Memory: at most one read (operand, or the whole FLDENV/FRSTOR image) and one
  /// write (operand, or the whole FNSTENV/FNSAVE image) per instruction.
  /// FISTTP (SSE3) and reserved encodings return kUnsupported.
  /// A waiting instruction (everything except the FN* control forms) returns
  /// kFloatingPointError without doing anything if `error_pending()` is true on
  /// entry; an instruction that itself raises an unmasked exception completes
  /// (sets ES/B) and returns kOk — the #MF comes on the next waiting instruction,
  /// as on hardware.
  FpuOutcome execute(const ZydisDecodedInstruction& insn, const ZydisDecodedOperand* operands,
                     const FpuContext& ctx, FpuMemory& mem, uint16_t* ax, uint32_t* eflags = nullptr);
  /// True if an unmasked exception is pending (ES set): FWAIT and waiting instructions report kFloatingPointError.
  bool error_pending() const;

 private:
  FpuState st_;
};

}  // namespace twoostwo::vmcore::emu
