// The x87 FPU of the emulator engine.
//
// How it works
// ------------
// The guest's x87 instructions are split in two groups:
//
// * Control and environment instructions (FNINIT, FNCLEX, FLDCW, FNSTCW,
//   FNSTSW, FNSTENV, FLDENV, FNSAVE, FRSTOR, FWAIT and the 8087/287 no-ops)
//   are done here in C++, because their memory layouts depend on the guest's
//   mode and operand size (Intel SDM vol. 1, 8.1.10, figures 8-9..8-12) and
//   the host can only produce the 32-bit protected-mode one.
//
// * Every other instruction (loads, stores, arithmetic, compares,
//   transcendentals, stack manipulation, FCMOVcc, FCOMI...) is executed by the
//   host's own x87 on the guest's complete x87 state: the state is converted
//   to an FNSAVE image (32-bit protected-mode layout), loaded with FRSTOR, the
//   guest's own two instruction bytes run (memory forms re-encoded with ModRM
//   rm=[rsi], pointing at a host copy of the operand), and the result is read
//   back with FNSAVE, which also re-initialises the host x87. The host runs
//   with the guest's control word, so rounding control, precision control,
//   masked and unmasked exception responses, C0-C3, stack faults, tags and
//   NaN propagation are the hardware's own, bit for bit.
//
// This requires an x86 host (x86-64 Linux is the only host the project
// supports; the KVM engine needs it anyway). The x87 of a current x86-64 CPU
// is architecturally the i686's; the only observable differences are the
// last-bit accuracy of the transcendental instructions (FSIN, FCOS, FSINCOS,
// FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1), which are whatever the host CPU
// computes (Intel and AMD differ slightly), and FIP/FDP/FOP, which this file
// tracks itself (P6 semantics: every non-control instruction records them).
//
// Guarding the host: the image loaded into the host never has an unmasked
// exception pending (a waiting instruction with one pending returns
// kFloatingPointError before reaching the host, and ES/B are cleared in the
// image), so the host never raises #MF; an unmasked exception raised by the
// executed instruction is only recorded in the host's status word and
// discarded by the FNSAVE that follows. EFLAGS are loaded into the host with
// only CF/PF/AF/ZF/SF/OF taken from the guest (never TF, AC, DF...). Only
// instructions from the table in `classify` are ever executed.

#include "vmcore/emulator/fpu.h"

#include <algorithm>
#include <cstring>

#if !defined(__x86_64__)
#error "the emulator's x87 FPU executes x87 instructions on the host: it needs an x86-64 host"
#endif

// ---------------------------------------------------------------------------
// Host stubs (GNU as, AT&T syntax).
//
// twoostwo_x87_exec(image, mem, eflags, stub):
//   rdi = 108-byte FNSAVE image (in: state to run on; out: state after)
//   rsi = memory operand buffer (the stubs' ModRM addresses [rsi])
//   rdx = uint32_t* status flags (in: guest CF/PF/AF/ZF/SF/OF; out: host's)
//   rcx = address of a stub from twoostwo_x87_stubs
// The caller's control word is restored and its x87 stack left empty, as the
// SysV ABI requires.
//
// twoostwo_x87_stubs: 576 stubs of 8 bytes, "endbr64; <2 opcode bytes>; ret":
//   index (op & 7) * 64 + (modrm - 0xC0)  for the register forms D8..DF C0..FF
//   512 + (op & 7) * 8 + reg              for the memory forms D8..DF /reg [rsi]
// ---------------------------------------------------------------------------
asm(R"(
  .text
  .p2align 4
  .globl twoostwo_x87_exec
  .hidden twoostwo_x87_exec
  .type twoostwo_x87_exec, @function
twoostwo_x87_exec:
  endbr64
  sub $24, %rsp
  fnstcw 16(%rsp)
  pushfq
  andl $0xFFFFF72A, (%rsp)
  movl (%rdx), %eax
  andl $0x8D5, %eax
  orl %eax, (%rsp)
  frstor (%rdi)
  popfq
  call *%rcx
  pushfq
  popq %rax
  movl %eax, (%rdx)
  fnsave (%rdi)
  fldcw 16(%rsp)
  add $24, %rsp
  ret
  .size twoostwo_x87_exec, .-twoostwo_x87_exec

  .p2align 4
  .globl twoostwo_x87_stubs
  .hidden twoostwo_x87_stubs
  .type twoostwo_x87_stubs, @function
twoostwo_x87_stubs:
  .irp op, 0xd8,0xd9,0xda,0xdb,0xdc,0xdd,0xde,0xdf
  .irp hi, 0xc,0xd,0xe,0xf
  .irp lo, 0,1,2,3,4,5,6,7,8,9,a,b,c,d,e,f
  .balign 8, 0xcc
  endbr64
  .byte \op, \hi\lo
  ret
  .endr
  .endr
  .endr
  .irp op, 0xd8,0xd9,0xda,0xdb,0xdc,0xdd,0xde,0xdf
  .irp modrm, 0x06,0x0e,0x16,0x1e,0x26,0x2e,0x36,0x3e
  .balign 8, 0xcc
  endbr64
  .byte \op, \modrm
  ret
  .endr
  .endr
  .balign 8, 0xcc
  .size twoostwo_x87_stubs, .-twoostwo_x87_stubs
)");

extern "C" void twoostwo_x87_exec(uint8_t* image, uint8_t* mem, uint32_t* eflags, uintptr_t stub);
extern "C" const char twoostwo_x87_stubs[];

namespace twoostwo::vmcore::emu {
namespace {

// FSW bits (SDM vol. 1, figure 8-4).
constexpr uint16_t kFswExceptions = 0x003F;  // IE DE ZE OE UE PE
constexpr uint16_t kFswEs = 0x0080;
constexpr uint16_t kFswB = 0x8000;
// FCW (figure 8-6): bit 6 reads as 1, bits 13-15 as 0.
constexpr uint16_t kFcwWritable = 0x1F3F;
constexpr uint16_t kFcwAlwaysOne = 0x0040;

constexpr uint32_t kStatusFlags =
    kFpuEflagsCf | kFpuEflagsPf | kFpuEflagsAf | kFpuEflagsZf | kFpuEflagsSf | kFpuEflagsOf;

constexpr size_t kImageSize = 108;  // FNSAVE, 32-bit protected-mode layout
constexpr size_t kEnvSize32 = 28;
constexpr size_t kEnvSize16 = 14;

uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t get32(const uint8_t* p) { return get16(p) | (static_cast<uint32_t>(get16(p + 2)) << 16); }
void put16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, v);
  put16(p + 2, v >> 16);
}

unsigned top_of(uint16_t fsw) { return (fsw >> 11) & 7; }

// The tag a non-empty register gets from its contents (SDM vol. 1, 8.1.7):
// 00 valid, 01 zero, 10 special (NaN, infinity, denormal, unsupported).
unsigned tag_of(const std::array<uint8_t, 10>& r) {
  uint16_t exp = get16(&r[8]) & 0x7FFF;
  uint64_t mant = 0;
  for (int i = 7; i >= 0; --i) mant = (mant << 8) | r[static_cast<size_t>(i)];
  if (exp == 0x7FFF) return 2;
  if (exp == 0) return mant == 0 ? 1 : 2;
  return (mant >> 63) != 0 ? 0 : 2;  // J=0 with a nonzero exponent: unnormal
}

// Recomputes the tags of all non-empty registers from their contents, as
// FLDENV/FRSTOR do on processors that keep only empty/full internally.
uint16_t retag(const FpuState& s, uint16_t ftw) {
  uint16_t out = 0;
  for (unsigned p = 0; p < 8; ++p) {
    unsigned t = (ftw >> (2 * p)) & 3;
    if (t != 3) t = tag_of(s.regs[p]);
    out = static_cast<uint16_t>(out | (t << (2 * p)));
  }
  return out;
}

// ES and B summarise the unmasked exception flags (SDM vol. 1, 8.1.3.1).
uint16_t with_summary(uint16_t fsw, uint16_t fcw) {
  fsw = static_cast<uint16_t>(fsw & ~(kFswEs | kFswB));
  if (fsw & ~fcw & kFswExceptions) fsw |= kFswEs | kFswB;
  return fsw;
}

// What one instruction is, from its opcode byte (D8..DF) and ModRM.
enum class Kind : uint8_t {
  kInvalid,   // #UD on an i686 (incl. FISTTP, which is SSE3)
  kHost,      // executed on the host x87
  kFninit, kFnclex, kFnstswAx, kFnstswMem, kFnstcw, kFldcw,
  kFnstenv, kFldenv, kFnsave, kFrstor,
  kNop8087,   // FENI/FDISI/FSETPM: no-ops on the 387 and later
};

struct Decoded {
  Kind kind = Kind::kInvalid;
  bool memory = false;    // has a memory operand
  uint8_t size = 0;       // its size in bytes (host-executed forms)
  bool reads = false;     // the host form reads it
  bool writes = false;    // the host form stores to it
  bool flags_in = false;  // FCMOVcc
  bool flags_out = false; // FCOMI, FCOMIP, FUCOMI, FUCOMIP
};

// Intel SDM vol. 2, appendix A.4 (escape opcode maps, tables A-7 .. A-22).
Decoded classify(uint8_t op, uint8_t mod, uint8_t reg, uint8_t rm) {
  Decoded d;
  const unsigned esc = op & 7u;
  if (mod != 3) {
    d.memory = true;
    auto host = [&](uint8_t size, bool reads) {
      d.kind = Kind::kHost;
      d.size = size;
      d.reads = reads;
      d.writes = !reads;
    };
    switch (esc) {
      case 0: host(4, true); break;  // m32fp arithmetic and compares
      case 2: host(4, true); break;  // m32int
      case 4: host(8, true); break;  // m64fp
      case 6: host(2, true); break;  // m16int
      case 1:
        switch (reg) {
          case 0: host(4, true); break;              // FLD m32fp
          case 2: case 3: host(4, false); break;     // FST(P) m32fp
          case 4: d.kind = Kind::kFldenv; break;
          case 5: d.kind = Kind::kFldcw; break;
          case 6: d.kind = Kind::kFnstenv; break;
          case 7: d.kind = Kind::kFnstcw; break;
          default: break;                            // /1 reserved
        }
        break;
      case 3:
        switch (reg) {
          case 0: host(4, true); break;              // FILD m32int
          case 2: case 3: host(4, false); break;     // FIST(P) m32int
          case 5: host(10, true); break;             // FLD m80fp
          case 7: host(10, false); break;            // FSTP m80fp
          default: break;                            // /1 FISTTP (SSE3), /4 /6 reserved
        }
        break;
      case 5:
        switch (reg) {
          case 0: host(8, true); break;              // FLD m64fp
          case 2: case 3: host(8, false); break;     // FST(P) m64fp
          case 4: d.kind = Kind::kFrstor; break;
          case 6: d.kind = Kind::kFnsave; break;
          case 7: d.kind = Kind::kFnstswMem; break;
          default: break;                            // /1 FISTTP (SSE3), /5 reserved
        }
        break;
      case 7:
        switch (reg) {
          case 0: host(2, true); break;              // FILD m16int
          case 2: case 3: host(2, false); break;     // FIST(P) m16int
          case 4: host(10, true); break;             // FBLD m80bcd
          case 5: host(8, true); break;              // FILD m64int
          case 6: host(10, false); break;            // FBSTP m80bcd
          case 7: host(8, false); break;             // FISTP m64int
          default: break;                            // /1 FISTTP (SSE3)
        }
        break;
      default: break;
    }
    return d;
  }
  const uint8_t modrm = static_cast<uint8_t>(0xC0 | (reg << 3) | rm);
  bool ok = false;
  switch (esc) {
    case 0: case 4: ok = true; break;  // arithmetic/compares (DC D0..DF: FCOM2/FCOMP3 aliases)
    case 1:
      ok = modrm <= 0xD0 || (modrm >= 0xD8 && modrm <= 0xE1) || modrm == 0xE4 || modrm == 0xE5 ||
           (modrm >= 0xE8 && modrm <= 0xEE) || modrm >= 0xF0;  // D8..DF: FSTP1 alias
      break;
    case 2:
      ok = modrm <= 0xDF || modrm == 0xE9;  // FCMOVB/E/BE/U, FUCOMPP
      d.flags_in = modrm <= 0xDF;
      break;
    case 3:
      if (modrm <= 0xDF) { ok = true; d.flags_in = true; }       // FCMOVNB/NE/NBE/NU
      else if (modrm == 0xE0 || modrm == 0xE1 || modrm == 0xE4) { d.kind = Kind::kNop8087; return d; }
      else if (modrm == 0xE2) { d.kind = Kind::kFnclex; return d; }
      else if (modrm == 0xE3) { d.kind = Kind::kFninit; return d; }
      else if (modrm >= 0xE8 && modrm <= 0xF7) { ok = true; d.flags_out = true; }  // FUCOMI, FCOMI
      break;
    case 5: ok = modrm <= 0xEF; break;  // FFREE, FXCH4 alias, FST, FSTP, FUCOM, FUCOMP
    case 6: ok = modrm <= 0xD7 || modrm == 0xD9 || modrm >= 0xE0; break;  // D0..D7: FCOMP5 alias
    case 7:
      if (modrm == 0xE0) { d.kind = Kind::kFnstswAx; return d; }
      ok = modrm <= 0xDF || (modrm >= 0xE8 && modrm <= 0xF7);  // FFREEP, FXCH7, FSTP8/9 aliases, FUCOMIP, FCOMIP
      d.flags_out = modrm >= 0xE8;
      break;
    default: break;
  }
  if (ok) d.kind = Kind::kHost;
  return d;
}

bool is_waiting(Kind k) {
  switch (k) {
    case Kind::kFninit: case Kind::kFnclex: case Kind::kFnstswAx: case Kind::kFnstswMem:
    case Kind::kFnstcw: case Kind::kFnstenv: case Kind::kFnsave: case Kind::kNop8087:
      return false;
    default:
      return true;
  }
}

// The FNSAVE image the host runs on: 32-bit protected-mode layout, pointers 0,
// ES/B clear (see the top of this file), registers in ST(i) order.
void to_host_image(const FpuState& s, uint8_t* img) {
  std::memset(img, 0, kImageSize);
  put16(img + 0, s.fcw);
  put16(img + 4, s.fsw & ~(kFswEs | kFswB));
  put16(img + 8, s.ftw);
  const unsigned top = top_of(s.fsw);
  for (unsigned i = 0; i < 8; ++i) std::memcpy(img + kEnvSize32 + 10 * i, s.regs[(top + i) & 7].data(), 10);
}

void from_host_image(const uint8_t* img, FpuState& s) {
  s.fsw = get16(img + 4);
  s.ftw = get16(img + 8);
  const unsigned top = top_of(s.fsw);
  for (unsigned i = 0; i < 8; ++i) std::memcpy(s.regs[(top + i) & 7].data(), img + kEnvSize32 + 10 * i, 10);
  s.fsw = with_summary(s.fsw, s.fcw);
}

uintptr_t stub_address(uint8_t op, uint8_t mod, uint8_t reg, uint8_t rm) {
  const unsigned esc = op & 7u;
  const unsigned index = mod == 3 ? esc * 64 + reg * 8u + rm : 512 + esc * 8 + reg;
  return reinterpret_cast<uintptr_t>(twoostwo_x87_stubs) + 8 * index;
}

// FSTENV/FNSAVE environment image (SDM vol. 1, figures 8-9..8-12; reserved
// halves are written as 1s, as Intel processors and Bochs do).
size_t store_env(const FpuState& s, const FpuContext& ctx, uint8_t* out) {
  if (ctx.protected_mode) {
    if (ctx.operand_size_32) {  // figure 8-9
      put32(out + 0x00, 0xFFFF0000u | s.fcw);
      put32(out + 0x04, 0xFFFF0000u | s.fsw);
      put32(out + 0x08, 0xFFFF0000u | s.ftw);
      put32(out + 0x0C, s.fip);
      put32(out + 0x10, s.fcs | (static_cast<uint32_t>(s.fop & 0x7FF) << 16));
      put32(out + 0x14, s.fdp);
      put32(out + 0x18, 0xFFFF0000u | s.fds);
      return kEnvSize32;
    }
    put16(out + 0x00, s.fcw);  // figure 8-10
    put16(out + 0x02, s.fsw);
    put16(out + 0x04, s.ftw);
    put16(out + 0x06, s.fip);
    put16(out + 0x08, s.fcs);
    put16(out + 0x0A, s.fdp);
    put16(out + 0x0C, s.fds);
    return kEnvSize16;
  }
  // Real and virtual-8086 mode: the pointers are 20-bit (32-bit) linear addresses.
  const uint32_t ip = (static_cast<uint32_t>(s.fcs) << 4) + s.fip;
  const uint32_t dp = (static_cast<uint32_t>(s.fds) << 4) + s.fdp;
  if (ctx.operand_size_32) {  // figure 8-11
    put32(out + 0x00, 0xFFFF0000u | s.fcw);
    put32(out + 0x04, 0xFFFF0000u | s.fsw);
    put32(out + 0x08, 0xFFFF0000u | s.ftw);
    put32(out + 0x0C, 0xFFFF0000u | (ip & 0xFFFF));
    put32(out + 0x10, ((ip & 0xFFFF0000u) >> 4) | (s.fop & 0x7FFu));
    put32(out + 0x14, 0xFFFF0000u | (dp & 0xFFFF));
    put32(out + 0x18, (dp & 0xFFFF0000u) >> 4);
    return kEnvSize32;
  }
  put16(out + 0x00, s.fcw);  // figure 8-12
  put16(out + 0x02, s.fsw);
  put16(out + 0x04, s.ftw);
  put16(out + 0x06, ip & 0xFFFF);
  put16(out + 0x08, ((ip & 0xF0000u) >> 4) | (s.fop & 0x7FFu));
  put16(out + 0x0A, dp & 0xFFFF);
  put16(out + 0x0C, (dp & 0xF0000u) >> 4);
  return kEnvSize16;
}

// The inverse of store_env. Real-mode pointers come back as linear addresses
// with a zero selector, so storing them again gives the same bytes.
void load_env(FpuState& s, const FpuContext& ctx, const uint8_t* in) {
  if (ctx.protected_mode) {
    if (ctx.operand_size_32) {
      s.fcw = get16(in + 0x00);
      s.fsw = get16(in + 0x04);
      s.ftw = get16(in + 0x08);
      s.fip = get32(in + 0x0C);
      s.fcs = get16(in + 0x10);
      s.fop = get16(in + 0x12) & 0x7FF;
      s.fdp = get32(in + 0x14);
      s.fds = get16(in + 0x18);
    } else {
      s.fcw = get16(in + 0x00);
      s.fsw = get16(in + 0x02);
      s.ftw = get16(in + 0x04);
      s.fip = get16(in + 0x06);
      s.fcs = get16(in + 0x08);
      s.fdp = get16(in + 0x0A);
      s.fds = get16(in + 0x0C);
      s.fop = 0;  // not part of the 16-bit protected-mode image
    }
  } else if (ctx.operand_size_32) {
    s.fcw = get16(in + 0x00);
    s.fsw = get16(in + 0x04);
    s.ftw = get16(in + 0x08);
    s.fip = get16(in + 0x0C) | ((get32(in + 0x10) & 0x0FFFF000u) << 4);
    s.fop = get16(in + 0x10) & 0x7FF;
    s.fdp = get16(in + 0x14) | ((get32(in + 0x18) & 0x0FFFF000u) << 4);
    s.fcs = s.fds = 0;
  } else {
    s.fcw = get16(in + 0x00);
    s.fsw = get16(in + 0x02);
    s.ftw = get16(in + 0x04);
    s.fip = get16(in + 0x06) | (static_cast<uint32_t>(get16(in + 0x08) & 0xF000) << 4);
    s.fop = get16(in + 0x08) & 0x7FF;
    s.fdp = get16(in + 0x0A) | (static_cast<uint32_t>(get16(in + 0x0C) & 0xF000) << 4);
    s.fcs = s.fds = 0;
  }
  s.fcw = static_cast<uint16_t>((s.fcw & kFcwWritable) | kFcwAlwaysOne);
  s.fsw = with_summary(s.fsw, s.fcw);
}

void initialize(FpuState& s) {
  s.fcw = 0x037F;
  s.fsw = 0;
  s.ftw = 0xFFFF;
  s.fop = 0;
  s.fip = s.fdp = 0;
  s.fcs = s.fds = 0;
}

}  // namespace

FpuState& Fpu::state() { return st_; }
const FpuState& Fpu::state() const { return st_; }

void Fpu::reset() { initialize(st_); }

bool Fpu::error_pending() const { return (st_.fsw & kFswEs) != 0 || (st_.fsw & ~st_.fcw & kFswExceptions) != 0; }

FpuOutcome Fpu::execute(const ZydisDecodedInstruction& insn, const ZydisDecodedOperand* /*operands*/,
                        const FpuContext& ctx, FpuMemory& mem, uint16_t* ax, uint32_t* eflags) {
  if (insn.opcode_map != ZYDIS_OPCODE_MAP_DEFAULT) return FpuOutcome::kUnsupported;
  if (insn.opcode == 0x9B) {  // FWAIT
    return error_pending() ? FpuOutcome::kFloatingPointError : FpuOutcome::kOk;
  }
  if (insn.opcode < 0xD8 || insn.opcode > 0xDF) return FpuOutcome::kUnsupported;

  const uint8_t op = insn.opcode;
  const uint8_t mod = insn.raw.modrm.mod, reg = insn.raw.modrm.reg, rm = insn.raw.modrm.rm;
  const Decoded d = classify(op, mod, reg, rm);
  if (d.kind == Kind::kInvalid) return FpuOutcome::kUnsupported;
  if ((d.flags_in || d.flags_out) && eflags == nullptr) return FpuOutcome::kUnsupported;
  if (d.kind == Kind::kFnstswAx && ax == nullptr) return FpuOutcome::kUnsupported;
  if (is_waiting(d.kind) && error_pending()) return FpuOutcome::kFloatingPointError;

  switch (d.kind) {
    case Kind::kFninit:
      initialize(st_);
      return FpuOutcome::kOk;
    case Kind::kFnclex:  // SDM FCLEX: PE UE OE ZE DE IE SF ES B cleared
      st_.fsw &= 0x7F00;
      return FpuOutcome::kOk;
    case Kind::kNop8087:
      return FpuOutcome::kOk;
    case Kind::kFnstswAx:
      *ax = st_.fsw;
      return FpuOutcome::kOk;
    case Kind::kFnstswMem:
    case Kind::kFnstcw: {
      uint8_t b[2];
      put16(b, d.kind == Kind::kFnstcw ? st_.fcw : st_.fsw);
      return mem.write(ctx.mem_linear, b) ? FpuOutcome::kOk : FpuOutcome::kMemoryFault;
    }
    case Kind::kFldcw: {
      uint8_t b[2];
      if (!mem.read(ctx.mem_linear, b)) return FpuOutcome::kMemoryFault;
      st_.fcw = static_cast<uint16_t>((get16(b) & kFcwWritable) | kFcwAlwaysOne);
      st_.fsw = with_summary(st_.fsw, st_.fcw);  // unmasking a set flag makes it pending
      return FpuOutcome::kOk;
    }
    case Kind::kFnstenv:
    case Kind::kFnsave: {
      uint8_t img[kImageSize];
      FpuState s = st_;
      s.ftw = retag(s, s.ftw);
      size_t n = store_env(s, ctx, img);
      if (d.kind == Kind::kFnsave) {
        const unsigned top = top_of(s.fsw);
        for (unsigned i = 0; i < 8; ++i) std::memcpy(img + n + 10 * i, s.regs[(top + i) & 7].data(), 10);
        n += 80;
      }
      if (!mem.write(ctx.mem_linear, std::span<const uint8_t>(img, n))) return FpuOutcome::kMemoryFault;
      if (d.kind == Kind::kFnsave) {
        initialize(s);
      } else {  // FNSTENV then masks all exceptions (SDM FSTENV)
        s.fcw |= kFswExceptions;
        s.fsw = with_summary(s.fsw, s.fcw);
      }
      st_ = s;
      return FpuOutcome::kOk;
    }
    case Kind::kFldenv:
    case Kind::kFrstor: {
      uint8_t img[kImageSize];
      const size_t env = ctx.operand_size_32 ? kEnvSize32 : kEnvSize16;
      const size_t n = d.kind == Kind::kFrstor ? env + 80 : env;
      if (!mem.read(ctx.mem_linear, std::span<uint8_t>(img, n))) return FpuOutcome::kMemoryFault;
      FpuState s = st_;
      load_env(s, ctx, img);
      if (d.kind == Kind::kFrstor) {
        const unsigned top = top_of(s.fsw);
        for (unsigned i = 0; i < 8; ++i) std::memcpy(s.regs[(top + i) & 7].data(), img + env + 10 * i, 10);
      }
      s.ftw = retag(s, s.ftw);
      st_ = s;
      return FpuOutcome::kOk;
    }
    case Kind::kHost:
      break;
    case Kind::kInvalid:
      return FpuOutcome::kUnsupported;
  }

  // Host execution. Operand buffer: 16 bytes, the stubs address it as [rsi].
  alignas(16) uint8_t buf[16] = {};
  if (d.reads && !mem.read(ctx.mem_linear, std::span<uint8_t>(buf, d.size))) return FpuOutcome::kMemoryFault;

  alignas(16) uint8_t img[kImageSize];
  to_host_image(st_, img);
  alignas(16) uint8_t saved[kImageSize];
  if (d.writes) std::memcpy(saved, img, kImageSize);
  uint32_t flags = eflags != nullptr ? *eflags : 0;
  const uint32_t flags_before = flags;
  const uintptr_t stub = stub_address(op, mod, reg, rm);
  twoostwo_x87_exec(img, buf, &flags, stub);

  bool stored = false;
  if (d.writes) {
    // An unmasked exception suppresses the store. Tell "stored" from "not
    // stored" by running once more over a different fill when the first run
    // left the fill (all zeros) in place.
    stored = std::any_of(buf, buf + d.size, [](uint8_t b) { return b != 0; });
    if (!stored) {
      alignas(16) uint8_t probe[16];
      std::memset(probe, 0xFF, sizeof probe);
      uint32_t f2 = flags_before;
      twoostwo_x87_exec(saved, probe, &f2, stub);
      stored = std::any_of(probe, probe + d.size, [](uint8_t b) { return b != 0xFF; });
    }
    if (stored && !mem.write(ctx.mem_linear, std::span<const uint8_t>(buf, d.size))) return FpuOutcome::kMemoryFault;
  }

  from_host_image(img, st_);
  // Non-control instruction: record FIP/FCS/FOP and, with a memory operand,
  // FDP/FDS (SDM vol. 1, 8.1.8 and 8.1.9; P6 behaviour).
  st_.fip = ctx.eip;
  st_.fcs = ctx.cs;
  st_.fop = static_cast<uint16_t>(((op & 7u) << 8) | (mod << 6) | (reg << 3) | rm);
  if (d.memory) {
    st_.fdp = ctx.mem_offset;
    st_.fds = ctx.ds;
  }
  if (d.flags_out) *eflags = (*eflags & ~kStatusFlags) | (flags & kStatusFlags);
  return FpuOutcome::kOk;
}

}  // namespace twoostwo::vmcore::emu
