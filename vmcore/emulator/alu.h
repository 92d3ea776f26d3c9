// Integer arithmetic semantics of the x86 emulator (i686 class): the result
// and EFLAGS of every integer ALU instruction, as pure inline functions.
//
// Shape of every function:
//   - `size` is the operand size in bytes: 1, 2 or 4 (SHLD/SHRD: 2 or 4).
//     Operands are taken modulo 2^(8*size) (higher bits are ignored), results
//     are returned zero-extended to 32 bits.
//   - `eflags` is the full EFLAGS before the instruction; the returned `flags`
//     is the full EFLAGS after it. Only the flags the instruction writes
//     change; every other bit (TF, IF, DF, IOPL, ...) is passed through.
//   - Nothing allocates, throws or touches global state; the functions are
//     branch-light so the interpreter can call them once per instruction.
//
// Where the behaviour comes from: Intel SDM vol. 2 (each instruction's
// "Operation" pseudocode and "Flags Affected"), cross-checked against Bochs
// (cpu/arith*.cc, shift*.cc, mult*.cc, bit*.cc, bcd.cc — modelled on P6 and
// later Intel cores), and verified against the host CPU by
// tests/vmcore/emu_alu_*_test.cpp (differential tests that execute the same
// instruction natively; DAA/DAS/AAA/AAS/AAM/AAD run in a 32-bit helper).
//
// Flags the SDM calls "undefined" are set the way P6-and-later Intel cores
// set them (as Bochs models them), which is a fixed, documented choice:
//   AND/OR/XOR/TEST ........ AF = 0
//   SHL/SHR/SAR (count!=0) . AF = 0; OF computed for every count with the
//                            count-1 formula (SHL: CF^MSB(result),
//                            SHR: MSB(result)^MSB-1(result) i.e. 0 for count>1,
//                            SAR: 0)
//   ROL/ROR/RCL/RCR ........ OF computed for every count with the count-1
//                            formula (ROL/RCL: CF^MSB(result),
//                            ROR/RCR: MSB(result)^MSB-1(result)); RCL/RCR
//                            whose count is a non-zero multiple of 9 (bytes)
//                            or 17 (words) change nothing, OF included
//   SHL/SHR count > size ... result 0 / sign fill, CF = last bit shifted out
//                            of the zero- (SAR: sign-) extended value (0 for
//                            SHL/SHR when count > size*8)
//   SHLD/SHRD .............. AF = 0; OF as for SHL/SHR for every count;
//                            16-bit count > 16: the P6 result, i.e. the
//                            48-bit value dst:src:dst shifted (SHLD: top
//                            16 bits, SHRD: low 16 bits), CF = last bit out
//   MUL/IMUL (all forms) ... SF, ZF, PF from the low half of the product
//                            (AL/AX/EAX, or the truncated result); AF = 0
//   DIV/IDIV ............... all six flags unchanged
//   BSF/BSR, source != 0 ... CF = OF = AF = 0, SF and PF from the index
//   BSF/BSR, source == 0 ... ZF = 1, destination and the other flags unchanged
//   BT/BTS/BTR/BTC ......... OF, SF, AF, PF unchanged (ZF is unchanged anyway)
//   DAA/DAS ................ OF = 0
//   AAA/AAS ................ AX +/- 0x106 (P6 and later), then AL &= 0x0F;
//                            OF = 0, SF = 0, ZF and PF from the new AL
//   AAM/AAD ................ OF = AF = CF = 0
// These are what Bochs documents as matching P6-family hardware. The tests
// compare the SDM-defined flags only and print where the host differs in the
// undefined ones; on an AMD Zen host (EPYC) the differences measured are:
// SHL/SHR/SAR/SHLD/SHRD set AF = 1; MUL/IMUL leave SF ZF AF PF unchanged;
// DIV/IDIV set AF = 1 and clear SF ZF PF; BSF/BSR (source != 0) leave CF OF
// SF AF PF unchanged; RCL/RCR by a non-zero multiple of 9/17 still write OF;
// 16-bit SHLD/SHRD by more than 16 shift dst:src:src (the Pentium way);
// DAA/DAS OF, AAA/AAS OF SF ZF PF and AAD OF AF CF follow other rules.
// Everything the SDM defines matched on every case.
#pragma once

#include <cstdint>
#include <optional>

namespace twoostwo::vmcore::emu {

// EFLAGS bits (Intel SDM vol. 1, 3.4.3).
inline constexpr uint32_t kCF = 1u << 0, kPF = 1u << 2, kAF = 1u << 4, kZF = 1u << 6, kSF = 1u << 7,
                          kTF = 1u << 8, kIF = 1u << 9, kDF = 1u << 10, kOF = 1u << 11;
inline constexpr uint32_t kArithFlags = kCF | kPF | kAF | kZF | kSF | kOF;

struct AluResult {
  uint32_t value;  // the new destination, zero-extended
  uint32_t flags;  // the full EFLAGS after the instruction
};

// Group-1 (opcodes 0x00-0x3F, 0x80-0x83 /r) order. kCmp returns `a` as the value.
enum class AluOp : uint8_t { kAdd, kOr, kAdc, kSbb, kAnd, kSub, kXor, kCmp };

// Group-2 (0xC0/0xC1/0xD0-0xD3 /r) order; kSal (/6) is the same as kShl.
enum class ShiftOp : uint8_t { kRol, kRor, kRcl, kRcr, kShl, kShr, kSal, kSar };

// One-operand MUL/IMUL: the product is hi:lo. For size 1, lo is AX (16 bits) and hi is 0.
struct MulResult {
  uint32_t lo;
  uint32_t hi;
  uint32_t flags;
};

struct DivResult {
  uint32_t quotient;   // new AL / AX / EAX
  uint32_t remainder;  // new AH / DX / EDX
  uint32_t flags;
};

// Group-8 (0F BA /r) order.
enum class BitOp : uint8_t { kBt = 4, kBts = 5, kBtr = 6, kBtc = 7 };

// PF: true when the low byte of a result has an even number of set bits.
inline bool parity(uint8_t low_byte) { return !__builtin_parity(low_byte); }

namespace detail {

inline constexpr uint32_t mask_of(unsigned size) { return size >= 4 ? 0xFFFFFFFFu : (1u << (size * 8)) - 1; }

// SF, ZF and PF of the `bits`-bit result `r` (already masked), in their EFLAGS positions.
inline uint32_t szp(uint32_t r, unsigned bits) {
  return ((r >> (bits - 8)) & kSF) | (r == 0 ? kZF : 0u) | (parity(static_cast<uint8_t>(r)) ? kPF : 0u);
}

// RCL/RCR effective counts: [0] = count % 9 (bytes), [1] = count % 17 (words), count 0..31.
inline constexpr uint8_t kRotateCarryCount[2][32] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}};

// Bit `bit` of `v` as 0/1.
inline uint32_t bit(uint64_t v, unsigned bit) { return static_cast<uint32_t>(v >> bit) & 1u; }

inline AluResult add(uint32_t a, uint32_t b, uint32_t carry_in, unsigned size, uint32_t eflags) {
  const unsigned bits = size * 8;
  const uint32_t mask = mask_of(size);
  a &= mask;
  b &= mask;
  const uint64_t full = uint64_t{a} + b + carry_in;
  const uint32_t r = static_cast<uint32_t>(full) & mask;
  const uint32_t cf = bit(full, bits);
  const uint32_t of = bit((a ^ r) & (b ^ r), bits - 1);
  return {r, (eflags & ~kArithFlags) | cf | ((a ^ b ^ r) & kAF) | (of << 11) | szp(r, bits)};
}

inline AluResult sub(uint32_t a, uint32_t b, uint32_t borrow_in, unsigned size, uint32_t eflags) {
  const unsigned bits = size * 8;
  const uint32_t mask = mask_of(size);
  a &= mask;
  b &= mask;
  const uint64_t full = uint64_t{a} - b - borrow_in;  // wraps: bit `bits` set on borrow
  const uint32_t r = static_cast<uint32_t>(full) & mask;
  const uint32_t cf = bit(full, bits);
  const uint32_t of = bit((a ^ b) & (a ^ r), bits - 1);
  return {r, (eflags & ~kArithFlags) | cf | ((a ^ b ^ r) & kAF) | (of << 11) | szp(r, bits)};
}

// AND/OR/XOR/TEST and friends: CF = OF = 0, AF = 0 (undefined), SF/ZF/PF from r.
inline uint32_t logic_flags(uint32_t r, unsigned bits, uint32_t eflags) {
  return (eflags & ~kArithFlags) | szp(r, bits);
}

// Replace CF and OF (given as 0/1), keep every other flag.
inline uint32_t set_cf_of(uint32_t eflags, uint32_t cf, uint32_t of) {
  return (eflags & ~(kCF | kOF)) | cf | (of << 11);
}

// Shift-family result: SF/ZF/PF from r, AF = 0, CF and OF given.
inline uint32_t shift_flags(uint32_t r, unsigned bits, uint32_t cf, uint32_t of, uint32_t eflags) {
  return (eflags & ~kArithFlags) | szp(r, bits) | cf | (of << 11);
}

}  // namespace detail

// ADD, OR, ADC, SBB, AND, SUB, XOR, CMP (SDM vol. 2: each instruction's page).
// ADC/SBB take the carry from eflags.CF. CMP computes SUB's flags and returns `a`.
// Branch-free in `op`: subtraction is a + ~b + !borrow with the carry inverted,
// and the logic result is selected in at the end, so an interpreter that
// passes a run-time `op` pays no mispredicted jump (a constant `op` folds).
inline AluResult alu(AluOp op, uint32_t a, uint32_t b, unsigned size, uint32_t eflags) {
  const unsigned o = static_cast<unsigned>(op) & 7u;
  const unsigned bits = size * 8;
  const uint32_t mask = detail::mask_of(size);
  a &= mask;
  b &= mask;
  // Arithmetic: ADD ADC SBB SUB CMP.
  const uint32_t is_sub = (0xA8u >> o) & 1u;                      // SBB(3) SUB(5) CMP(7)
  const uint32_t carry_in = (0x0Cu >> o) & 1u & eflags;          // ADC(2) SBB(3) use CF
  const uint32_t b_eff = b ^ (mask & (0u - is_sub));              // ~b for subtraction
  const uint64_t full = uint64_t{a} + b_eff + (carry_in ^ is_sub);
  const uint32_t sum = static_cast<uint32_t>(full) & mask;
  const uint32_t cf = detail::bit(full, bits) ^ is_sub;
  const uint32_t of = detail::bit((a ^ sum) & (b_eff ^ sum), bits - 1);
  // Logic: OR(1) AND(4) XOR(6); CF = OF = AF = 0.
  const uint32_t logic = o == 1 ? (a | b) : o == 4 ? (a & b) : (a ^ b);
  const uint32_t is_logic = (0x52u >> o) & 1u;
  const uint32_t r = is_logic != 0 ? logic : sum;
  const uint32_t arith_only = 0u - (is_logic ^ 1u);  // all ones for arithmetic
  const uint32_t flags = (eflags & ~kArithFlags) | detail::szp(r, bits) |
                         (arith_only & (cf | ((a ^ b ^ r) & kAF) | (of << 11)));
  return {o == 7 ? a : r, flags};
}

// TEST: AND's flags; `value` is `a` unchanged.
inline AluResult test(uint32_t a, uint32_t b, unsigned size, uint32_t eflags) {
  const uint32_t mask = detail::mask_of(size);
  return {a & mask, detail::logic_flags(a & b & mask, size * 8, eflags)};
}

// INC: ADD 1 with CF preserved (AF, OF, SF, ZF, PF from the result).
inline AluResult inc(uint32_t a, unsigned size, uint32_t eflags) {
  const AluResult r = detail::add(a, 1, 0, size, eflags);
  return {r.value, (r.flags & ~kCF) | (eflags & kCF)};
}

// DEC: SUB 1 with CF preserved.
inline AluResult dec(uint32_t a, unsigned size, uint32_t eflags) {
  const AluResult r = detail::sub(a, 1, 0, size, eflags);
  return {r.value, (r.flags & ~kCF) | (eflags & kCF)};
}

// NEG: 0 - a; CF = (a != 0), the other flags as SUB.
inline AluResult neg(uint32_t a, unsigned size, uint32_t eflags) { return detail::sub(0, a, 0, size, eflags); }

// ROL/ROR/RCL/RCR/SHL/SHR/SAL/SAR (SDM vol. 2 "RCL/RCR/ROL/ROR", "SAL/SAR/SHL/SHR").
// `count` is the raw CL or imm8: it is masked to 5 bits; RCL/RCR on 8/16-bit
// operands then take it modulo 9/17. A (masked) count of 0 changes nothing.
// ROL/ROR by a non-zero multiple of the width leave the value but still set
// CF and OF from it, as the hardware does. Undefined flags: see the top.
inline AluResult shift(ShiftOp op, uint32_t value, uint8_t count, unsigned size, uint32_t eflags) {
  using detail::bit;
  const unsigned bits = size * 8;
  const uint32_t mask = detail::mask_of(size);
  const uint32_t v = value & mask;
  unsigned n = count & 0x1Fu;
  if (n == 0) {
    return {v, eflags};
  }
  switch (op) {
    case ShiftOp::kRol: {
      const unsigned k = n & (bits - 1);
      const uint32_t r = k == 0 ? v : ((v << k) | (v >> (bits - k))) & mask;
      const uint32_t cf = r & 1u;
      return {r, detail::set_cf_of(eflags, cf, cf ^ bit(r, bits - 1))};
    }
    case ShiftOp::kRor: {
      const unsigned k = n & (bits - 1);
      const uint32_t r = k == 0 ? v : ((v >> k) | (v << (bits - k))) & mask;
      const uint32_t msb = bit(r, bits - 1);
      return {r, detail::set_cf_of(eflags, msb, msb ^ bit(r, bits - 2))};
    }
    case ShiftOp::kRcl:
    case ShiftOp::kRcr: {
      if (bits < 32) {
        n = detail::kRotateCarryCount[size >> 1][n];  // n % 9 or n % 17
        if (n == 0) {
          return {v, eflags};
        }
      }
      // Rotate the (bits+1)-bit value CF:v; n is 1..bits.
      const uint64_t wide_mask = (uint64_t{1} << (bits + 1)) - 1;
      const uint64_t w = (uint64_t{eflags & kCF} << bits) | v;
      const uint64_t rot = op == ShiftOp::kRcl ? ((w << n) | (w >> (bits + 1 - n))) & wide_mask
                                               : ((w >> n) | (w << (bits + 1 - n))) & wide_mask;
      const uint32_t r = static_cast<uint32_t>(rot) & mask;
      const uint32_t cf = bit(rot, bits);
      const uint32_t of = op == ShiftOp::kRcl ? cf ^ bit(r, bits - 1) : bit(r, bits - 1) ^ bit(r, bits - 2);
      return {r, detail::set_cf_of(eflags, cf, of)};
    }
    case ShiftOp::kShl:
    case ShiftOp::kSal: {
      const uint64_t w = uint64_t{v} << n;
      const uint32_t r = static_cast<uint32_t>(w) & mask;
      const uint32_t cf = bit(w, bits);
      return {r, detail::shift_flags(r, bits, cf, cf ^ bit(r, bits - 1), eflags)};
    }
    case ShiftOp::kShr: {
      const uint32_t r = v >> n;
      return {r, detail::shift_flags(r, bits, bit(v, n - 1), bit(r, bits - 1) ^ bit(r, bits - 2), eflags)};
    }
    case ShiftOp::kSar: {
      const unsigned ext = 32 - bits;
      const int32_t sv = static_cast<int32_t>(v << ext) >> ext;  // sign-extended operand
      const uint32_t r = static_cast<uint32_t>(sv >> n) & mask;
      const uint32_t cf = static_cast<uint32_t>(sv >> (n - 1)) & 1u;
      return {r, detail::shift_flags(r, bits, cf, 0, eflags)};
    }
  }
  return {v, eflags};
}

// SHLD dst, src, count (size 2 or 4; any size but 4 is taken as 2): dst shifted
// left, filled from src's top bits.
// Count masked to 5 bits; 0 changes nothing. CF = last bit shifted out of dst;
// OF = CF ^ MSB(result) (defined for count 1); SF/ZF/PF from the result; AF = 0.
// 16-bit count > 16 (undefined): the P6 behaviour, dst:src:dst << count.
inline AluResult shld(uint32_t dst, uint32_t src, uint8_t count, unsigned size, uint32_t eflags) {
  using detail::bit;
  const unsigned n = count & 0x1Fu;
  if (size == 4) {
    if (n == 0) {
      return {dst, eflags};
    }
    const uint32_t r = (dst << n) | (src >> (32 - n));
    const uint32_t cf = bit(dst, 32 - n);
    return {r, detail::shift_flags(r, 32, cf, cf ^ bit(r, 31), eflags)};
  }
  dst &= 0xFFFFu;
  src &= 0xFFFFu;
  if (n == 0) {
    return {dst, eflags};
  }
  const uint64_t w = (uint64_t{dst} << 32) | (uint64_t{src} << 16) | dst;  // 48 bits
  const uint32_t r = static_cast<uint32_t>((w << n) >> 32) & 0xFFFFu;
  const uint32_t cf = bit(w, 48 - n);
  return {r, detail::shift_flags(r, 16, cf, cf ^ bit(r, 15), eflags)};
}

// SHRD dst, src, count (size 2 or 4; any size but 4 is taken as 2): dst shifted
// right, filled from src's low bits.
// CF = last bit shifted out of dst; OF = MSB(result) ^ MSB-1(result) (sign change,
// defined for count 1); SF/ZF/PF from the result; AF = 0.
// 16-bit count > 16 (undefined): the P6 behaviour, dst:src:dst >> count.
inline AluResult shrd(uint32_t dst, uint32_t src, uint8_t count, unsigned size, uint32_t eflags) {
  using detail::bit;
  const unsigned n = count & 0x1Fu;
  if (size == 4) {
    if (n == 0) {
      return {dst, eflags};
    }
    const uint32_t r = (dst >> n) | (src << (32 - n));
    return {r, detail::shift_flags(r, 32, bit(dst, n - 1), bit(r, 31) ^ bit(r, 30), eflags)};
  }
  dst &= 0xFFFFu;
  src &= 0xFFFFu;
  if (n == 0) {
    return {dst, eflags};
  }
  const uint64_t w = (uint64_t{dst} << 32) | (uint64_t{src} << 16) | dst;  // 48 bits
  const uint32_t r = static_cast<uint32_t>(w >> n) & 0xFFFFu;
  return {r, detail::shift_flags(r, 16, bit(w, n - 1), bit(r, 15) ^ bit(r, 14), eflags)};
}

// MUL (unsigned, one operand): CF = OF = (hi != 0); SF/ZF/PF from the low half, AF = 0.
inline MulResult mul(uint32_t a, uint32_t b, unsigned size, uint32_t eflags) {
  const unsigned bits = size * 8;
  const uint32_t mask = detail::mask_of(size);
  const uint64_t p = uint64_t{a & mask} * (b & mask);
  const uint32_t lo = static_cast<uint32_t>(p) & mask;
  const uint32_t hi = static_cast<uint32_t>(p >> bits) & mask;
  const uint32_t ovf = hi != 0 ? 1u : 0u;
  const uint32_t flags = detail::shift_flags(lo, bits, ovf, ovf, eflags);
  if (size == 1) {
    return {static_cast<uint32_t>(p), 0, flags};
  }
  return {lo, hi, flags};
}

namespace detail {
inline int64_t sign_extend(uint32_t v, unsigned bits) {
  const unsigned ext = 64 - bits;
  return static_cast<int64_t>(uint64_t{v} << ext) >> ext;
}
}  // namespace detail

// IMUL (signed, one operand): CF = OF = (the product does not fit the low half,
// sign-extended); SF/ZF/PF from the low half, AF = 0.
inline MulResult imul(uint32_t a, uint32_t b, unsigned size, uint32_t eflags) {
  const unsigned bits = size * 8;
  const uint32_t mask = detail::mask_of(size);
  const int64_t p = detail::sign_extend(a & mask, bits) * detail::sign_extend(b & mask, bits);
  const uint32_t lo = static_cast<uint32_t>(p) & mask;
  const uint32_t hi = static_cast<uint32_t>(static_cast<uint64_t>(p) >> bits) & mask;
  const uint32_t ovf = detail::sign_extend(lo, bits) != p ? 1u : 0u;
  const uint32_t flags = detail::shift_flags(lo, bits, ovf, ovf, eflags);
  if (size == 1) {
    return {static_cast<uint32_t>(p) & 0xFFFFu, 0, flags};
  }
  return {lo, hi, flags};
}

// IMUL r, r/m and IMUL r, r/m, imm (size 2 or 4; size 1 is accepted too):
// the truncated product; CF = OF = overflow; SF/ZF/PF from the result, AF = 0.
inline AluResult imul_trunc(uint32_t a, uint32_t b, unsigned size, uint32_t eflags) {
  const MulResult m = imul(a, b, size, eflags);
  return {m.lo & detail::mask_of(size), m.flags};
}

// DIV (unsigned): dividend hi:lo (size 1: AX = lo, hi ignored) / divisor.
// nullopt = #DE (divisor 0, or the quotient does not fit `size`). Flags unchanged.
inline std::optional<DivResult> div(uint32_t lo, uint32_t hi, uint32_t divisor, unsigned size, uint32_t eflags) {
  const unsigned bits = size * 8;
  const uint32_t mask = detail::mask_of(size);
  divisor &= mask;
  if (divisor == 0) {
    return std::nullopt;
  }
  const uint64_t dividend =
      size == 1 ? uint64_t{lo & 0xFFFFu} : (uint64_t{hi & mask} << bits) | (lo & mask);
  const uint64_t q = dividend / divisor;
  if (q > mask) {
    return std::nullopt;
  }
  return DivResult{static_cast<uint32_t>(q), static_cast<uint32_t>(dividend % divisor), eflags};
}

// IDIV (signed, truncating toward zero; the remainder has the dividend's sign).
// nullopt = #DE (divisor 0, or the quotient is outside -2^(n-1)..2^(n-1)-1). Flags unchanged.
inline std::optional<DivResult> idiv(uint32_t lo, uint32_t hi, uint32_t divisor, unsigned size, uint32_t eflags) {
  const unsigned bits = size * 8;
  const uint32_t mask = detail::mask_of(size);
  const int64_t d = detail::sign_extend(divisor & mask, bits);
  if (d == 0) {
    return std::nullopt;
  }
  const int64_t n = size == 1 ? detail::sign_extend(lo & 0xFFFFu, 16)
                              : detail::sign_extend(static_cast<uint32_t>(hi & mask), bits) *
                                        (int64_t{1} << bits) +
                                    (lo & mask);
  if (n == INT64_MIN && d == -1) {
    return std::nullopt;
  }
  const int64_t q = n / d;
  const int64_t limit = int64_t{1} << (bits - 1);
  if (q < -limit || q >= limit) {
    return std::nullopt;
  }
  return DivResult{static_cast<uint32_t>(q) & mask, static_cast<uint32_t>(n % d) & mask, eflags};
}

// DAA (SDM "DAA"): decimal adjust AL after addition. AF and CF per the SDM,
// SF/ZF/PF from the new AL, OF = 0 (undefined). AH is unchanged.
inline AluResult daa(uint32_t ax, uint32_t eflags) {
  const uint32_t old_al = ax & 0xFFu;
  const uint32_t old_cf = eflags & kCF;
  uint32_t al = old_al;
  uint32_t cf = 0;
  uint32_t af = 0;
  if ((al & 0x0Fu) > 9 || (eflags & kAF) != 0) {
    cf = (al > 0xF9u ? 1u : 0u) | old_cf;
    al = (al + 0x06u) & 0xFFu;
    af = kAF;
  }
  if (old_al > 0x99u || old_cf != 0) {
    al = (al + 0x60u) & 0xFFu;
    cf = 1;
  }
  return {(ax & 0xFF00u) | al, (eflags & ~kArithFlags) | cf | af | detail::szp(al, 8)};
}

// DAS (SDM "DAS"): decimal adjust AL after subtraction. As DAA.
inline AluResult das(uint32_t ax, uint32_t eflags) {
  const uint32_t old_al = ax & 0xFFu;
  const uint32_t old_cf = eflags & kCF;
  uint32_t al = old_al;
  uint32_t cf = 0;
  uint32_t af = 0;
  if ((al & 0x0Fu) > 9 || (eflags & kAF) != 0) {
    cf = (al < 0x06u ? 1u : 0u) | old_cf;
    al = (al - 0x06u) & 0xFFu;
    af = kAF;
  }
  if (old_al > 0x99u || old_cf != 0) {
    al = (al - 0x60u) & 0xFFu;
    cf = 1;
  }
  return {(ax & 0xFF00u) | al, (eflags & ~kArithFlags) | cf | af | detail::szp(al, 8)};
}

// AAA (SDM "AAA", P6 and later): if AL's low nibble > 9 or AF, AX += 0x106 and
// AF = CF = 1, else AF = CF = 0; then AL &= 0x0F. OF = SF = 0, ZF/PF from AL.
inline AluResult aaa(uint32_t ax, uint32_t eflags) {
  ax &= 0xFFFFu;
  const bool adjust = (ax & 0x0Fu) > 9 || (eflags & kAF) != 0;
  if (adjust) {
    ax = (ax + 0x106u) & 0xFFFFu;
  }
  ax &= 0xFF0Fu;
  const uint32_t ca = adjust ? (kCF | kAF) : 0u;
  return {ax, (eflags & ~kArithFlags) | ca | detail::szp(ax & 0xFFu, 8)};
}

// AAS (SDM "AAS", P6 and later): AX -= 0x106 when adjusting; flags as AAA.
inline AluResult aas(uint32_t ax, uint32_t eflags) {
  ax &= 0xFFFFu;
  const bool adjust = (ax & 0x0Fu) > 9 || (eflags & kAF) != 0;
  if (adjust) {
    ax = (ax - 0x106u) & 0xFFFFu;
  }
  ax &= 0xFF0Fu;
  const uint32_t ca = adjust ? (kCF | kAF) : 0u;
  return {ax, (eflags & ~kArithFlags) | ca | detail::szp(ax & 0xFFu, 8)};
}

// AAM imm8 (SDM "AAM"): AH = AL / base, AL = AL % base; SF/ZF/PF from AL,
// OF = AF = CF = 0 (undefined). nullopt = #DE (base 0).
inline std::optional<AluResult> aam(uint32_t ax, uint8_t base, uint32_t eflags) {
  if (base == 0) {
    return std::nullopt;
  }
  const uint32_t al = ax & 0xFFu;
  const uint32_t new_al = al % base;
  return AluResult{((al / base) << 8) | new_al, (eflags & ~kArithFlags) | detail::szp(new_al, 8)};
}

// AAD imm8 (SDM "AAD"): AL = (AL + AH * base) & 0xFF, AH = 0; SF/ZF/PF from AL,
// OF = AF = CF = 0 (undefined).
inline AluResult aad(uint32_t ax, uint8_t base, uint32_t eflags) {
  const uint32_t al = ((ax & 0xFFu) + ((ax >> 8) & 0xFFu) * base) & 0xFFu;
  return {al, (eflags & ~kArithFlags) | detail::szp(al, 8)};
}

// BSF: index of the lowest set bit of src. src == 0: ZF = 1 and `value` = dst
// (what AMD documents and Intel hardware does), other flags unchanged.
// Otherwise ZF = 0, CF = OF = AF = 0, SF/PF from the index (undefined flags).
inline AluResult bsf(uint32_t dst, uint32_t src, unsigned size, uint32_t eflags) {
  const uint32_t mask = detail::mask_of(size);
  src &= mask;
  if (src == 0) {
    return {dst & mask, eflags | kZF};
  }
  const auto idx = static_cast<uint32_t>(__builtin_ctz(src));
  return {idx, (eflags & ~kArithFlags) | (detail::szp(idx, 8) & ~kZF)};
}

// BSR: index of the highest set bit of src; zero source and flags as BSF.
inline AluResult bsr(uint32_t dst, uint32_t src, unsigned size, uint32_t eflags) {
  const uint32_t mask = detail::mask_of(size);
  src &= mask;
  if (src == 0) {
    return {dst & mask, eflags | kZF};
  }
  const auto idx = static_cast<uint32_t>(31 - __builtin_clz(src));
  return {idx, (eflags & ~kArithFlags) | (detail::szp(idx, 8) & ~kZF)};
}

// BT/BTS/BTR/BTC on a register-sized value; `bit` is already reduced to
// 0..size*8-1 (the caller does the memory-operand bit-offset arithmetic).
// CF = the old bit; BTS sets, BTR clears, BTC complements it. Other flags unchanged.
inline AluResult bit_test(BitOp op, uint32_t value, unsigned bit, unsigned size, uint32_t eflags) {
  const uint32_t mask = detail::mask_of(size);
  value &= mask;
  const uint32_t m = (1u << (bit & 31u)) & mask;
  const uint32_t cf = (value & m) != 0 ? kCF : 0u;
  uint32_t r = value;
  switch (op) {
    case BitOp::kBt:
      break;
    case BitOp::kBts:
      r = value | m;
      break;
    case BitOp::kBtr:
      r = value & ~m;
      break;
    case BitOp::kBtc:
      r = value ^ m;
      break;
  }
  return {r, (eflags & ~kCF) | cf};
}

// BSWAP r32. (BSWAP r16 is undefined by the SDM; real CPUs zero the register.)
inline uint32_t bswap(uint32_t v) { return __builtin_bswap32(v); }

// Condition code `cc` (the low nibble of Jcc/SETcc/CMOVcc):
// O, NO, B, AE, E, NE, BE, A, S, NS, P, NP, L, GE, LE, G.
inline bool condition(unsigned cc, uint32_t eflags) {
  // Branch-free: one bit per condition pair (cc >> 1), then the low bit of cc negates.
  const uint32_t cf = eflags & 1u;
  const uint32_t pf = (eflags >> 2) & 1u;
  const uint32_t zf = (eflags >> 6) & 1u;
  const uint32_t sf = (eflags >> 7) & 1u;
  const uint32_t of = (eflags >> 11) & 1u;
  const uint32_t lt = sf ^ of;
  const uint32_t set = of | (cf << 1) | (zf << 2) | ((cf | zf) << 3) | (sf << 4) | (pf << 5) | (lt << 6) |
                       ((zf | lt) << 7);
  return (((set >> ((cc >> 1) & 7u)) ^ cc) & 1u) != 0;
}

}  // namespace twoostwo::vmcore::emu
