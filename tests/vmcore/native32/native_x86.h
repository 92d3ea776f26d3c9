// The native side of the emulator ALU differential tests
// (tests/vmcore/emu_alu_*_test.cpp): runs one integer instruction on the host
// CPU with given operands and input EFLAGS, and returns the result and the
// EFLAGS after it. 8/16/32-bit forms run in this 64-bit process through GCC
// inline asm; the forms 64-bit mode lacks (DAA, DAS, AAA, AAS, AAM, AAD) run
// in the 32-bit helper process built from native32.c next to this file.
//
// Each runner loads the flags with `push; popf`, executes the instruction
// and reads them back with `pushf; pop`. The stack pointer first steps over
// the 128-byte red zone the compiler may be using. Only the six arithmetic
// flags are ever loaded (TF would trap, DF would break the ABI); the caller
// masks its input flags with kArithFlags.
#pragma once

#include <setjmp.h>
#include <signal.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace twoostwo::emu_native {

struct Native {
  uint32_t value;
  uint32_t flags;
};

#define TWOOSTWO_NATIVE_PRE "lea -128(%%rsp), %%rsp\n\tpush %[fl]\n\tpopf\n\t"
#define TWOOSTWO_NATIVE_POST "\n\tpushf\n\tpop %[fl]\n\tlea 128(%%rsp), %%rsp"

// r = r <mnem> s (AT&T operand order: `mnem s, r`).
#define TWOOSTWO_NATIVE_BINOP(name, mnem)                                                            \
  template <typename T>                                                                              \
  inline Native name(T a, T b, uint32_t flags_in) {                                                  \
    uint64_t fl = flags_in;                                                                          \
    asm volatile(TWOOSTWO_NATIVE_PRE mnem " %[s], %[r]" TWOOSTWO_NATIVE_POST                         \
                 : [r] "+r"(a), [fl] "+r"(fl)                                                        \
                 : [s] "r"(b)                                                                        \
                 : "cc", "memory");                                                                  \
    return {static_cast<uint32_t>(a), static_cast<uint32_t>(fl)};                                    \
  }
TWOOSTWO_NATIVE_BINOP(add, "add")
TWOOSTWO_NATIVE_BINOP(or_, "or")
TWOOSTWO_NATIVE_BINOP(adc, "adc")
TWOOSTWO_NATIVE_BINOP(sbb, "sbb")
TWOOSTWO_NATIVE_BINOP(and_, "and")
TWOOSTWO_NATIVE_BINOP(sub, "sub")
TWOOSTWO_NATIVE_BINOP(xor_, "xor")
TWOOSTWO_NATIVE_BINOP(cmp, "cmp")
TWOOSTWO_NATIVE_BINOP(test, "test")
TWOOSTWO_NATIVE_BINOP(imul2, "imul")  // two-operand IMUL r16/32, r/m16/32
TWOOSTWO_NATIVE_BINOP(bsf, "bsf")
TWOOSTWO_NATIVE_BINOP(bsr, "bsr")
TWOOSTWO_NATIVE_BINOP(bt, "bt")
TWOOSTWO_NATIVE_BINOP(bts, "bts")
TWOOSTWO_NATIVE_BINOP(btr, "btr")
TWOOSTWO_NATIVE_BINOP(btc, "btc")
#undef TWOOSTWO_NATIVE_BINOP

#define TWOOSTWO_NATIVE_UNOP(name, mnem)                                                             \
  template <typename T>                                                                              \
  inline Native name(T a, uint32_t flags_in) {                                                       \
    uint64_t fl = flags_in;                                                                          \
    asm volatile(TWOOSTWO_NATIVE_PRE mnem " %[r]" TWOOSTWO_NATIVE_POST                               \
                 : [r] "+r"(a), [fl] "+r"(fl)                                                        \
                 :                                                                                   \
                 : "cc", "memory");                                                                  \
    return {static_cast<uint32_t>(a), static_cast<uint32_t>(fl)};                                    \
  }
TWOOSTWO_NATIVE_UNOP(inc, "inc")
TWOOSTWO_NATIVE_UNOP(dec, "dec")
TWOOSTWO_NATIVE_UNOP(neg, "neg")
TWOOSTWO_NATIVE_UNOP(bswap, "bswap")
#undef TWOOSTWO_NATIVE_UNOP

// Group-2 shift/rotate by CL.
#define TWOOSTWO_NATIVE_SHIFT(name, mnem)                                                            \
  template <typename T>                                                                              \
  inline Native name(T a, uint8_t count, uint32_t flags_in) {                                        \
    uint64_t fl = flags_in;                                                                          \
    asm volatile(TWOOSTWO_NATIVE_PRE mnem " %%cl, %[r]" TWOOSTWO_NATIVE_POST                         \
                 : [r] "+r"(a), [fl] "+r"(fl)                                                        \
                 : "c"(count)                                                                        \
                 : "cc", "memory");                                                                  \
    return {static_cast<uint32_t>(a), static_cast<uint32_t>(fl)};                                    \
  }
TWOOSTWO_NATIVE_SHIFT(rol, "rol")
TWOOSTWO_NATIVE_SHIFT(ror, "ror")
TWOOSTWO_NATIVE_SHIFT(rcl, "rcl")
TWOOSTWO_NATIVE_SHIFT(rcr, "rcr")
TWOOSTWO_NATIVE_SHIFT(shl, "shl")
TWOOSTWO_NATIVE_SHIFT(shr, "shr")
TWOOSTWO_NATIVE_SHIFT(sar, "sar")
#undef TWOOSTWO_NATIVE_SHIFT

// SHLD/SHRD dst, src, CL (T = uint16_t or uint32_t).
#define TWOOSTWO_NATIVE_DSHIFT(name, mnem)                                                           \
  template <typename T>                                                                              \
  inline Native name(T dst, T src, uint8_t count, uint32_t flags_in) {                               \
    uint64_t fl = flags_in;                                                                          \
    asm volatile(TWOOSTWO_NATIVE_PRE mnem " %%cl, %[s], %[r]" TWOOSTWO_NATIVE_POST                   \
                 : [r] "+r"(dst), [fl] "+r"(fl)                                                      \
                 : [s] "r"(src), "c"(count)                                                          \
                 : "cc", "memory");                                                                  \
    return {static_cast<uint32_t>(dst), static_cast<uint32_t>(fl)};                                  \
  }
TWOOSTWO_NATIVE_DSHIFT(shld, "shld")
TWOOSTWO_NATIVE_DSHIFT(shrd, "shrd")
#undef TWOOSTWO_NATIVE_DSHIFT

// One-operand MUL/IMUL/DIV/IDIV: accumulator (AL/AX/EAX), high half (AH is
// part of AX for size 1; DX/EDX otherwise). For size 1, `lo` is AX and `hi` is unused.
struct NativeWide {
  uint32_t lo;
  uint32_t hi;
  uint32_t flags;
};

#define TWOOSTWO_NATIVE_WIDE(name, mnem)                                                             \
  inline NativeWide name##8(uint32_t ax, uint8_t src, uint32_t flags_in) {                           \
    uint64_t fl = flags_in;                                                                          \
    auto a = static_cast<uint16_t>(ax);                                                              \
    asm volatile(TWOOSTWO_NATIVE_PRE mnem " %[s]" TWOOSTWO_NATIVE_POST                               \
                 : "+a"(a), [fl] "+r"(fl)                                                            \
                 : [s] "r"(src)                                                                      \
                 : "cc", "memory");                                                                  \
    return {a, 0, static_cast<uint32_t>(fl)};                                                        \
  }                                                                                                  \
  template <typename T>                                                                              \
  inline NativeWide name(T lo, T hi, T src, uint32_t flags_in) {                                     \
    uint64_t fl = flags_in;                                                                          \
    asm volatile(TWOOSTWO_NATIVE_PRE mnem " %[s]" TWOOSTWO_NATIVE_POST                               \
                 : "+a"(lo), "+d"(hi), [fl] "+r"(fl)                                                 \
                 : [s] "r"(src)                                                                      \
                 : "cc", "memory");                                                                  \
    return {lo, hi, static_cast<uint32_t>(fl)};                                                      \
  }
TWOOSTWO_NATIVE_WIDE(mul, "mul")
TWOOSTWO_NATIVE_WIDE(imul, "imul")
TWOOSTWO_NATIVE_WIDE(div, "div")
TWOOSTWO_NATIVE_WIDE(idiv, "idiv")
#undef TWOOSTWO_NATIVE_WIDE

// SETcc after loading `flags_in`; cc is the condition nibble (0 = O ... 15 = G).
inline bool setcc(unsigned cc, uint32_t flags_in) {
  uint64_t fl = flags_in;
  uint8_t r = 0;
#define TWOOSTWO_NATIVE_SETCC(n, mnem)                                                               \
  case n:                                                                                            \
    asm volatile(TWOOSTWO_NATIVE_PRE mnem " %[r]" TWOOSTWO_NATIVE_POST                               \
                 : [r] "=r"(r), [fl] "+r"(fl)                                                        \
                 :                                                                                   \
                 : "cc", "memory");                                                                  \
    break;
  switch (cc & 15u) {
    TWOOSTWO_NATIVE_SETCC(0, "seto")
    TWOOSTWO_NATIVE_SETCC(1, "setno")
    TWOOSTWO_NATIVE_SETCC(2, "setb")
    TWOOSTWO_NATIVE_SETCC(3, "setae")
    TWOOSTWO_NATIVE_SETCC(4, "sete")
    TWOOSTWO_NATIVE_SETCC(5, "setne")
    TWOOSTWO_NATIVE_SETCC(6, "setbe")
    TWOOSTWO_NATIVE_SETCC(7, "seta")
    TWOOSTWO_NATIVE_SETCC(8, "sets")
    TWOOSTWO_NATIVE_SETCC(9, "setns")
    TWOOSTWO_NATIVE_SETCC(10, "setp")
    TWOOSTWO_NATIVE_SETCC(11, "setnp")
    TWOOSTWO_NATIVE_SETCC(12, "setl")
    TWOOSTWO_NATIVE_SETCC(13, "setge")
    TWOOSTWO_NATIVE_SETCC(14, "setle")
    TWOOSTWO_NATIVE_SETCC(15, "setg")
    default:
      break;
  }
#undef TWOOSTWO_NATIVE_SETCC
  return r != 0;
}

#undef TWOOSTWO_NATIVE_PRE
#undef TWOOSTWO_NATIVE_POST

// Runs `fn` (a DIV/IDIV runner) with SIGFPE caught: nullopt when the host
// raised #DE. The handler is installed for the lifetime of the guard.
class DivideFaultGuard {
 public:
  DivideFaultGuard() {
    struct sigaction sa{};
    sa.sa_handler = &DivideFaultGuard::on_sigfpe;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGFPE, &sa, &old_);
  }
  ~DivideFaultGuard() { sigaction(SIGFPE, &old_, nullptr); }
  DivideFaultGuard(const DivideFaultGuard&) = delete;
  DivideFaultGuard& operator=(const DivideFaultGuard&) = delete;

  // `run` writes its result through `out`; returns false when it faulted.
  template <typename Fn>
  static bool run(Fn* run_fn, NativeWide* out) {
    if (sigsetjmp(jump(), 1) != 0) {
      return false;
    }
    *out = (*run_fn)();
    return true;
  }

 private:
  static sigjmp_buf& jump() {
    static sigjmp_buf buf;
    return buf;
  }
  static void on_sigfpe(int) { siglongjmp(jump(), 1); }
  struct sigaction old_{};
};

// Deterministic operand source (fixed seed per test).
class Operands {
 public:
  explicit Operands(uint64_t seed) : rng_(seed) {}

  uint32_t next() { return static_cast<uint32_t>(rng_()); }

  // A random operand of `size` bytes, biased towards the interesting corners
  // (sign boundary, all-ones, small values) one time in four.
  uint32_t value(unsigned size) {
    const uint32_t mask = size >= 4 ? 0xFFFFFFFFu : (1u << (size * 8)) - 1;
    const uint32_t r = next();
    switch (r & 7u) {
      case 0:
        return (next() & 0xFu) & mask;  // small
      case 1:
        return ((1u << (size * 8 - 1)) + (next() & 7u) - 4u) & mask;  // around the sign bit
      case 2:
        return (mask - (next() & 7u)) & mask;  // around all-ones
      default:
        return next() & mask;
    }
  }

  // Random arithmetic flags (a subset of CF PF AF ZF SF OF) plus the reserved bit 1.
  uint32_t flags() { return 0x2u | (next() & 0x8D5u); }

  // The edge values of the brief, reduced to `size` bytes, without duplicates.
  static std::vector<uint32_t> edges(unsigned size) {
    const uint32_t mask = size >= 4 ? 0xFFFFFFFFu : (1u << (size * 8)) - 1;
    static constexpr uint32_t kEdges[] = {0,      1,      2,      0x0F,       0x10,       0x7F,      0x80,
                                          0x81,   0xFF,   0x7FFF, 0x8000,     0xFFFF,     0x7FFFFFFF, 0x80000000,
                                          0xFFFFFFFF, 0x55AA55AA, 0x12345678};
    std::vector<uint32_t> out;
    for (uint32_t e : kEdges) {
      const uint32_t v = e & mask;
      bool seen = false;
      for (uint32_t o : out) {
        seen = seen || o == v;
      }
      if (!seen) {
        out.push_back(v);
      }
    }
    return out;
  }

  // Shift counts: the brief's edges (0, 1, size*8-1, size*8, 31, 32+, ...).
  static std::vector<uint8_t> count_edges(unsigned size) {
    const auto bits = static_cast<uint8_t>(size * 8);
    return {0, 1, 2, 7, 8, 9, 15, 16, 17, 18, static_cast<uint8_t>(bits - 1), bits, static_cast<uint8_t>(bits + 1),
            27, 31, 32, 33, 63, 64, 255};
  }

 private:
  std::mt19937_64 rng_;
};

// The two fixed input-flag settings of the brief: all clear and all set.
inline constexpr uint32_t kFlagsClear = 0x2u;
inline constexpr uint32_t kFlagsSet = 0x2u | 0x8D5u;

// Names of the arithmetic flags set in `bits`, e.g. "AF OF".
inline std::string flag_names(uint32_t bits) {
  static constexpr struct {
    uint32_t bit;
    const char* name;
  } kNames[] = {{0x1, "CF"}, {0x4, "PF"}, {0x10, "AF"}, {0x40, "ZF"}, {0x80, "SF"}, {0x800, "OF"}};
  std::string out;
  for (const auto& n : kNames) {
    if ((bits & n.bit) != 0) {
      out += out.empty() ? "" : " ";
      out += n.name;
    }
  }
  return out.empty() ? "none" : out;
}

// Compares the model with the host for one instruction form (e.g. "adc/16"):
// the value (when defined) and the flags in `defined` must match exactly.
// It also counts, without failing, how often the flags the SDM leaves
// undefined differ from the host, and prints that survey at the end.
class Checker {
 public:
  explicit Checker(std::string form) : form_(std::move(form)) {}
  Checker(const Checker&) = delete;
  Checker& operator=(const Checker&) = delete;
  ~Checker() {
    EXPECT_EQ(failures_, 0u) << form_ << ": " << failures_ << " of " << cases_ << " cases differ from the host";
    if (undefined_diffs_ != 0 || undefined_value_diffs_ != 0) {
      std::printf("[ survey   ] %s: %llu cases; undefined flags differ from the host in %llu (%s); "
                  "undefined values differ in %llu\n",
                  form_.c_str(), static_cast<unsigned long long>(cases_),
                  static_cast<unsigned long long>(undefined_diffs_), flag_names(undefined_bits_).c_str(),
                  static_cast<unsigned long long>(undefined_value_diffs_));
    }
  }

  // `inputs`: the operands and input flags, printed on failure.
  void check(std::initializer_list<uint32_t> inputs, uint32_t model_value, uint32_t model_flags,
             uint32_t host_value, uint32_t host_flags, uint32_t defined, bool value_defined = true) {
    ++cases_;
    constexpr uint32_t kArith = 0x8D5u;
    const uint32_t diff = (model_flags ^ host_flags) & kArith;
    const bool value_ok = !value_defined || model_value == host_value;
    if (!value_defined && model_value != host_value) {
      ++undefined_value_diffs_;
    }
    if ((diff & ~defined) != 0) {
      ++undefined_diffs_;
      undefined_bits_ |= diff & ~defined;
    }
    if (value_ok && (diff & defined) == 0) {
      return;
    }
    if (++failures_ <= 20) {
      std::string in;
      char buf[32];
      for (uint32_t v : inputs) {
        std::snprintf(buf, sizeof buf, "%s0x%X", in.empty() ? "" : ", ", v);
        in += buf;
      }
      char msg[256];
      std::snprintf(msg, sizeof msg,
                    "%s(%s): host value 0x%X flags 0x%03X, model value 0x%X flags 0x%03X; wrong: %s%s",
                    form_.c_str(), in.c_str(), host_value, host_flags & kArith, model_value, model_flags & kArith,
                    value_ok ? "" : "value ", (diff & defined) != 0 ? flag_names(diff & defined).c_str() : "");
      ADD_FAILURE() << msg;
    }
  }

  uint64_t cases() const { return cases_; }

 private:
  std::string form_;
  uint64_t cases_ = 0;
  uint64_t failures_ = 0;
  uint64_t undefined_diffs_ = 0;
  uint64_t undefined_value_diffs_ = 0;
  uint32_t undefined_bits_ = 0;
};

}  // namespace twoostwo::emu_native
