// Differential tests of the emulator's integer arithmetic (vmcore/emulator/alu.h)
// against the host CPU: ADD OR ADC SBB AND SUB XOR CMP TEST INC DEC NEG,
// MUL IMUL (one, two/three operand) DIV IDIV, on 8/16/32-bit operands.
// Every case runs the same instruction natively (tests/vmcore/native32/native_x86.h)
// and compares the result and the flags the SDM defines for it.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "native32/native_x86.h"
#include "vmcore/emulator/alu.h"

namespace twoostwo::vmcore::emu {
namespace {

namespace native = twoostwo::emu_native;
using native::Checker;
using native::Operands;

constexpr int kRandomCases = 3000;  // per instruction form and operand size

struct Case {
  uint32_t a;
  uint32_t b;
  uint32_t flags;
};

// The edge operands crossed with each other and with all-clear/all-set flags,
// then kRandomCases random operand pairs with random flags.
std::vector<Case> binary_cases(unsigned size, uint64_t seed) {
  std::vector<Case> cases;
  const auto edges = Operands::edges(size);
  for (uint32_t a : edges) {
    for (uint32_t b : edges) {
      cases.push_back({a, b, native::kFlagsClear});
      cases.push_back({a, b, native::kFlagsSet});
    }
  }
  Operands rng(seed);
  for (int i = 0; i < kRandomCases; ++i) {
    const uint32_t a = rng.value(size);
    const uint32_t b = rng.value(size);
    cases.push_back({a, b, rng.flags()});
  }
  return cases;
}

template <typename F>
void for_each_size(F&& f) {
  f(uint8_t{}, 1u);
  f(uint16_t{}, 2u);
  f(uint32_t{}, 4u);
}

template <typename T>
native::Native native_alu(AluOp op, T a, T b, uint32_t flags) {
  switch (op) {
    case AluOp::kAdd: return native::add<T>(a, b, flags);
    case AluOp::kOr: return native::or_<T>(a, b, flags);
    case AluOp::kAdc: return native::adc<T>(a, b, flags);
    case AluOp::kSbb: return native::sbb<T>(a, b, flags);
    case AluOp::kAnd: return native::and_<T>(a, b, flags);
    case AluOp::kSub: return native::sub<T>(a, b, flags);
    case AluOp::kXor: return native::xor_<T>(a, b, flags);
    case AluOp::kCmp: return native::cmp<T>(a, b, flags);
  }
  return {};
}

const char* alu_name(AluOp op) {
  static constexpr const char* kNames[] = {"add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"};
  return kNames[static_cast<unsigned>(op)];
}

std::string form(const char* name, unsigned size) { return std::string(name) + "/" + std::to_string(size * 8); }

TEST(EmuAluArith, Group1MatchesHost) {
  uint64_t total = 0;
  for (unsigned o = 0; o < 8; ++o) {
    const auto op = static_cast<AluOp>(o);
    const bool logic = op == AluOp::kOr || op == AluOp::kAnd || op == AluOp::kXor;
    const uint32_t defined = logic ? kArithFlags & ~kAF : kArithFlags;  // SDM: AF undefined for logic ops
    for_each_size([&]<typename T>(T, unsigned size) {
      Checker check(form(alu_name(op), size));
      for (const Case& c : binary_cases(size, 0x1000 + o * 8 + size)) {
        const AluResult m = alu(op, c.a, c.b, size, c.flags);
        const auto h = native_alu<T>(op, static_cast<T>(c.a), static_cast<T>(c.b), c.flags);
        check.check({c.a, c.b, c.flags}, m.value, m.flags, h.value, h.flags, defined);
      }
      total += check.cases();
    });
  }
  RecordProperty("native_cases", std::to_string(total));
}

TEST(EmuAluArith, TestMatchesHost) {
  for_each_size([&]<typename T>(T, unsigned size) {
    Checker check(form("test", size));
    for (const Case& c : binary_cases(size, 0x2000 + size)) {
      const AluResult m = test(c.a, c.b, size, c.flags);
      const auto h = native::test<T>(static_cast<T>(c.a), static_cast<T>(c.b), c.flags);
      check.check({c.a, c.b, c.flags}, m.value, m.flags, h.value, h.flags, kArithFlags & ~kAF);
    }
  });
}

TEST(EmuAluArith, IncDecNegMatchHost) {
  for_each_size([&]<typename T>(T, unsigned size) {
    Checker inc_check(form("inc", size));
    Checker dec_check(form("dec", size));
    Checker neg_check(form("neg", size));
    for (const Case& c : binary_cases(size, 0x3000 + size)) {
      const auto a = static_cast<T>(c.a);
      AluResult m = inc(c.a, size, c.flags);
      auto h = native::inc<T>(a, c.flags);
      inc_check.check({c.a, c.flags}, m.value, m.flags, h.value, h.flags, kArithFlags);  // CF preserved
      m = dec(c.a, size, c.flags);
      h = native::dec<T>(a, c.flags);
      dec_check.check({c.a, c.flags}, m.value, m.flags, h.value, h.flags, kArithFlags);
      m = neg(c.a, size, c.flags);
      h = native::neg<T>(a, c.flags);
      neg_check.check({c.a, c.flags}, m.value, m.flags, h.value, h.flags, kArithFlags);
    }
  });
}

// MUL/IMUL: only CF and OF are defined; the product is.
TEST(EmuAluArith, MulImulMatchHost) {
  for_each_size([&]<typename T>(T, unsigned size) {
    Checker mul_check(form("mul", size));
    Checker imul_check(form("imul", size));
    for (const Case& c : binary_cases(size, 0x4000 + size)) {
      const MulResult mu = mul(c.a, c.b, size, c.flags);
      const MulResult mi = imul(c.a, c.b, size, c.flags);
      native::NativeWide hu{};
      native::NativeWide hi{};
      if constexpr (sizeof(T) == 1) {
        hu = native::mul8(c.a, static_cast<uint8_t>(c.b), c.flags);
        hi = native::imul8(c.a, static_cast<uint8_t>(c.b), c.flags);
      } else {
        hu = native::mul<T>(static_cast<T>(c.a), T{0}, static_cast<T>(c.b), c.flags);
        hi = native::imul<T>(static_cast<T>(c.a), T{0}, static_cast<T>(c.b), c.flags);
      }
      mul_check.check({c.a, c.b, c.flags}, mu.lo, mu.flags, hu.lo, hu.flags, kCF | kOF);
      mul_check.check({c.a, c.b, c.flags}, mu.hi, mu.flags, hu.hi, hu.flags, kCF | kOF);
      imul_check.check({c.a, c.b, c.flags}, mi.lo, mi.flags, hi.lo, hi.flags, kCF | kOF);
      imul_check.check({c.a, c.b, c.flags}, mi.hi, mi.flags, hi.hi, hi.flags, kCF | kOF);
    }
  });
}

TEST(EmuAluArith, ImulTruncMatchesHost) {
  for_each_size([&]<typename T>(T, unsigned size) {
    if constexpr (sizeof(T) > 1) {  // IMUL r, r/m has no 8-bit form
      Checker check(form("imul2", size));
      for (const Case& c : binary_cases(size, 0x5000 + size)) {
        const AluResult m = imul_trunc(c.a, c.b, size, c.flags);
        const auto h = native::imul2<T>(static_cast<T>(c.a), static_cast<T>(c.b), c.flags);
        check.check({c.a, c.b, c.flags}, m.value, m.flags, h.value, h.flags, kCF | kOF);
      }
    }
  });
}

// imul_trunc also accepts size 1 (no such instruction form): it must agree
// with the low byte and CF/OF of the one-operand IMUL.
TEST(EmuAluArith, ImulTruncByteAgreesWithOneOperandForm) {
  Operands rng(0x5100);
  for (int i = 0; i < 1000; ++i) {
    const uint32_t a = rng.value(1);
    const uint32_t b = rng.value(1);
    const uint32_t f = rng.flags();
    const MulResult one = imul(a, b, 1, f);
    const AluResult two = imul_trunc(a, b, 1, f);
    EXPECT_EQ(two.value, one.lo & 0xFFu);
    EXPECT_EQ(two.flags & (kCF | kOF), one.flags & (kCF | kOF));
  }
}

struct DivCase {
  uint32_t lo;
  uint32_t hi;
  uint32_t divisor;
  uint32_t flags;
};

// Dividends and divisors around the #DE boundaries (zero divisor, quotient
// overflow, the most negative quotient) plus random cases: most with
// hi < divisor (no overflow), some fully random (mostly overflow).
std::vector<DivCase> div_cases(unsigned size, bool is_signed, uint64_t seed) {
  const uint32_t mask = size >= 4 ? 0xFFFFFFFFu : (1u << (size * 8)) - 1;
  std::vector<DivCase> cases;
  const auto edges = Operands::edges(size);
  // size 1: the dividend is AX (lo), 16 bits.
  const auto lo_edges = size == 1 ? Operands::edges(2) : edges;
  for (uint32_t lo : lo_edges) {
    for (uint32_t hi : size == 1 ? std::vector<uint32_t>{0} : edges) {
      for (uint32_t d : edges) {
        if (hi >= d && !is_signed && d != 0 && hi > 2) {
          continue;  // certain overflow: keep the number of host #DE traps small
        }
        cases.push_back({lo, hi, d, native::kFlagsSet});
      }
    }
  }
  Operands rng(seed);
  for (int i = 0; i < kRandomCases; ++i) {
    uint32_t d = rng.value(size);
    if (d == 0) {
      d = 3;
    }
    uint32_t lo = size == 1 ? rng.value(2) : rng.value(size);
    uint32_t hi = 0;
    if (size > 1) {
      if (is_signed) {
        // Keep |dividend| < |divisor| << (bits-1): hi is the sign extension of
        // a value that fits, or a small magnitude.
        const uint32_t sd = d & mask;
        hi = (rng.next() & 1u) != 0 ? mask : 0u;
        if ((rng.next() & 3u) == 0) {
          hi = (hi + (rng.next() % ((sd >> (size * 8 - 2)) + 1))) & mask;
        }
      } else {
        hi = rng.next() % d;
      }
    } else if (is_signed) {
      const auto sd = static_cast<int8_t>(d);
      const int q = static_cast<int8_t>(rng.next());
      const int r = sd == 0 ? 0 : static_cast<int>(rng.next() % static_cast<unsigned>(sd < 0 ? -sd : sd));
      lo = static_cast<uint32_t>(q * sd + (q < 0 ? -r : r)) & 0xFFFFu;
    } else {
      lo = ((rng.next() % (d & 0xFFu)) << 8 | (rng.next() & 0xFFu)) & 0xFFFFu;
    }
    if ((rng.next() % 16u) == 0) {
      hi = rng.value(size);  // fully random: usually #DE
      lo = size == 1 ? rng.value(2) : rng.value(size);
    }
    cases.push_back({lo, hi, d, rng.flags()});
  }
  return cases;
}

template <typename T>
std::optional<native::NativeWide> native_divide(bool is_signed, const DivCase& c) {
  native::NativeWide out{};
  auto run = [&]() -> native::NativeWide {
    if constexpr (sizeof(T) == 1) {
      return is_signed ? native::idiv8(c.lo, static_cast<uint8_t>(c.divisor), c.flags)
                       : native::div8(c.lo, static_cast<uint8_t>(c.divisor), c.flags);
    } else {
      return is_signed ? native::idiv<T>(static_cast<T>(c.lo), static_cast<T>(c.hi), static_cast<T>(c.divisor), c.flags)
                       : native::div<T>(static_cast<T>(c.lo), static_cast<T>(c.hi), static_cast<T>(c.divisor), c.flags);
    }
  };
  if (!native::DivideFaultGuard::run(&run, &out)) {
    return std::nullopt;
  }
  return out;
}

// DIV/IDIV: quotient, remainder and #DE must match; no flag is defined.
TEST(EmuAluArith, DivIdivMatchHost) {
  native::DivideFaultGuard guard;
  uint64_t faults = 0;
  for (const bool is_signed : {false, true}) {
    for_each_size([&]<typename T>(T, unsigned size) {
      Checker check(form(is_signed ? "idiv" : "div", size));
      for (const DivCase& c : div_cases(size, is_signed, 0x6000 + size + (is_signed ? 8 : 0))) {
        const auto m = is_signed ? idiv(c.lo, c.hi, c.divisor, size, c.flags) : div(c.lo, c.hi, c.divisor, size, c.flags);
        const auto h = native_divide<T>(is_signed, c);
        faults += h.has_value() ? 0 : 1;
        ASSERT_EQ(m.has_value(), h.has_value())
            << form(is_signed ? "idiv" : "div", size) << " lo 0x" << std::hex << c.lo << " hi 0x" << c.hi
            << " divisor 0x" << c.divisor << ": host " << (h ? "no #DE" : "#DE");
        if (!m) {
          continue;
        }
        uint32_t hq = h->lo;
        uint32_t hr = h->hi;
        if (size == 1) {  // AL = quotient, AH = remainder
          hq = h->lo & 0xFFu;
          hr = (h->lo >> 8) & 0xFFu;
        }
        check.check({c.lo, c.hi, c.divisor}, m->quotient, m->flags, hq, h->flags, 0);
        check.check({c.lo, c.hi, c.divisor}, m->remainder, m->flags, hr, h->flags, 0);
        EXPECT_EQ(m->flags, c.flags) << "DIV/IDIV leave the flags unchanged by choice";
      }
    });
  }
  RecordProperty("host_divide_faults", std::to_string(faults));
}

// Flags outside the six arithmetic ones pass through every function untouched.
TEST(EmuAluArith, NonArithmeticFlagsPassThrough) {
  const uint32_t others = kTF | kIF | kDF | 0x3000u /*IOPL*/ | 0x40000u /*AC*/ | 0x2u;
  for (const uint32_t in : {others, others | kArithFlags}) {
    for (unsigned o = 0; o < 8; ++o) {
      EXPECT_EQ(alu(static_cast<AluOp>(o), 0x80, 0x80, 1, in).flags & ~kArithFlags, others);
    }
    EXPECT_EQ(test(1, 1, 4, in).flags & ~kArithFlags, others);
    EXPECT_EQ(inc(0xFF, 1, in).flags & ~kArithFlags, others);
    EXPECT_EQ(dec(0, 2, in).flags & ~kArithFlags, others);
    EXPECT_EQ(neg(5, 4, in).flags & ~kArithFlags, others);
    EXPECT_EQ(mul(0xFFFF, 0xFFFF, 2, in).flags & ~kArithFlags, others);
    EXPECT_EQ(imul(0x80, 0x80, 1, in).flags & ~kArithFlags, others);
    EXPECT_EQ(imul_trunc(0x8000, 2, 2, in).flags & ~kArithFlags, others);
    EXPECT_EQ(div(100, 0, 7, 4, in)->flags, in);
    EXPECT_EQ(idiv(100, 0, 7, 4, in)->flags, in);
  }
}

TEST(EmuAluArith, KnownValues) {
  // ADD 0x7F + 1 (8-bit): signed overflow, half carry.
  AluResult r = alu(AluOp::kAdd, 0x7F, 1, 1, 0x2);
  EXPECT_EQ(r.value, 0x80u);
  EXPECT_EQ(r.flags & kArithFlags, kOF | kSF | kAF);
  // SUB 0 - 1 (32-bit): borrow, all ones.
  r = alu(AluOp::kSub, 0, 1, 4, 0x2);
  EXPECT_EQ(r.value, 0xFFFFFFFFu);
  EXPECT_EQ(r.flags & kArithFlags, kCF | kSF | kAF | kPF);
  // ADC 0xFFFF + 0 + CF (16-bit): wraps to zero with carry.
  r = alu(AluOp::kAdc, 0xFFFF, 0, 2, 0x2 | kCF);
  EXPECT_EQ(r.value, 0u);
  EXPECT_EQ(r.flags & kArithFlags, kCF | kZF | kPF | kAF);
  // CMP returns the first operand.
  EXPECT_EQ(alu(AluOp::kCmp, 5, 7, 4, 0x2).value, 5u);
  // INC keeps CF, NEG 0 clears it.
  EXPECT_EQ(inc(0xFF, 1, 0x2 | kCF).flags & kArithFlags, kCF | kZF | kPF | kAF);
  EXPECT_EQ(neg(0, 4, 0x2 | kCF).flags & kCF, 0u);
  // Inputs wider than the operand size are reduced.
  EXPECT_EQ(alu(AluOp::kAdd, 0x1234FF, 0xAB01, 1, 0x2).value, 0u);
  // MUL 8-bit: AX in lo.
  MulResult m = mul(0xFF, 0xFF, 1, 0x2);
  EXPECT_EQ(m.lo, 0xFE01u);
  EXPECT_EQ(m.hi, 0u);
  EXPECT_EQ(m.flags & (kCF | kOF), kCF | kOF);
  m = imul(0xFF, 0xFF, 1, 0x2);  // -1 * -1
  EXPECT_EQ(m.lo, 1u);
  EXPECT_EQ(m.flags & (kCF | kOF), 0u);
  m = mul(0xFFFFFFFF, 0xFFFFFFFF, 4, 0x2);
  EXPECT_EQ(m.lo, 1u);
  EXPECT_EQ(m.hi, 0xFFFFFFFEu);
  // DIV/IDIV faults.
  EXPECT_FALSE(div(1, 0, 0, 4, 0x2).has_value());
  EXPECT_FALSE(div(0, 1, 1, 4, 0x2).has_value());
  EXPECT_FALSE(idiv(0x8000, 0, 0xFF, 1, 0x2).has_value());  // -32768 / -1
  EXPECT_FALSE(idiv(0, 0x80000000, 0xFFFFFFFF, 4, 0x2).has_value());
  const auto q = idiv(0xFF80, 0, 1, 1, 0x2);  // -128 / 1 = -128 fits
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->quotient, 0x80u);
  const auto q2 = idiv(0xFFFFFFF9, 0xFFFFFFFF, 2, 4, 0x2);  // -7 / 2 = -3 rem -1
  ASSERT_TRUE(q2.has_value());
  EXPECT_EQ(q2->quotient, 0xFFFFFFFDu);
  EXPECT_EQ(q2->remainder, 0xFFFFFFFFu);
}

}  // namespace
}  // namespace twoostwo::vmcore::emu
