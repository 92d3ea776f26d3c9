// Differential tests of the emulator's shifts and rotates (vmcore/emulator/alu.h)
// against the host CPU: ROL ROR RCL RCR SHL SHR SAR on 8/16/32-bit operands
// and SHLD/SHRD on 16/32-bit operands, with every count 0..255 at the edges
// and random counts otherwise. Defined flags per the SDM ("Flags Affected"):
//   count & 31 == 0 ........ nothing changes (all flags compared)
//   SHL/SHR/SAR ............ CF (SHL/SHR: only while count < width), SF ZF PF,
//                            OF for count 1; AF undefined
//   ROL/ROR/RCL/RCR ........ CF, OF for count 1; SF ZF AF PF untouched
//   SHLD/SHRD .............. CF SF ZF PF, OF for count 1, AF undefined;
//                            count > width: result and flags undefined
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
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
  uint8_t count;
  uint32_t flags;
};

std::vector<Case> shift_cases(unsigned size, uint64_t seed) {
  std::vector<Case> cases;
  const auto edges = Operands::edges(size);
  Operands rng(seed);
  for (uint32_t a : edges) {
    for (uint8_t n : Operands::count_edges(size)) {
      const uint32_t b = rng.value(size);
      cases.push_back({a, b, n, native::kFlagsClear});
      cases.push_back({a, b, n, native::kFlagsSet});
    }
  }
  for (int i = 0; i < kRandomCases; ++i) {
    const uint32_t a = rng.value(size);
    const uint32_t b = rng.value(size);
    // Half the counts uniform over the raw byte, half within 0..width+1.
    const auto n = static_cast<uint8_t>((i & 1) != 0 ? rng.next() : rng.next() % (size * 8 + 2));
    cases.push_back({a, b, n, rng.flags()});
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
native::Native native_shift(ShiftOp op, T a, uint8_t count, uint32_t flags) {
  switch (op) {
    case ShiftOp::kRol: return native::rol<T>(a, count, flags);
    case ShiftOp::kRor: return native::ror<T>(a, count, flags);
    case ShiftOp::kRcl: return native::rcl<T>(a, count, flags);
    case ShiftOp::kRcr: return native::rcr<T>(a, count, flags);
    case ShiftOp::kShl:
    case ShiftOp::kSal: return native::shl<T>(a, count, flags);
    case ShiftOp::kShr: return native::shr<T>(a, count, flags);
    case ShiftOp::kSar: return native::sar<T>(a, count, flags);
  }
  return {};
}

// The flags the SDM defines for `op` with raw count `count` on `bits`-bit operands.
uint32_t shift_defined(ShiftOp op, unsigned count, unsigned bits) {
  const unsigned n = count & 31u;
  if (n == 0) {
    return kArithFlags;  // no flags affected
  }
  const uint32_t of = n == 1 ? kOF : 0u;
  switch (op) {
    case ShiftOp::kRol:
    case ShiftOp::kRor:
    case ShiftOp::kRcl:
    case ShiftOp::kRcr:
      return kCF | of | kSF | kZF | kAF | kPF;  // SF ZF AF PF are not affected
    case ShiftOp::kShl:
    case ShiftOp::kSal:
    case ShiftOp::kShr:
      return (n < bits ? kCF : 0u) | of | kSF | kZF | kPF;
    case ShiftOp::kSar:
      return kCF | of | kSF | kZF | kPF;
  }
  return 0;
}

const char* shift_name(ShiftOp op) {
  static constexpr const char* kNames[] = {"rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"};
  return kNames[static_cast<unsigned>(op)];
}

std::string form(const char* name, unsigned size) { return std::string(name) + "/" + std::to_string(size * 8); }

TEST(EmuAluShift, Group2MatchesHost) {
  uint64_t total = 0;
  for (unsigned o = 0; o < 8; ++o) {
    const auto op = static_cast<ShiftOp>(o);
    for_each_size([&]<typename T>(T, unsigned size) {
      Checker check(form(shift_name(op), size));
      for (const Case& c : shift_cases(size, 0x7000 + o * 8 + size)) {
        const AluResult m = shift(op, c.a, c.count, size, c.flags);
        const auto h = native_shift<T>(op, static_cast<T>(c.a), c.count, c.flags);
        check.check({c.a, c.count, c.flags}, m.value, m.flags, h.value, h.flags,
                    shift_defined(op, c.count, size * 8));
      }
      total += check.cases();
    });
  }
  RecordProperty("native_cases", std::to_string(total));
}

// Every count 0..255 for every 8-bit value and both carries: RCL/RCR
// exhaustively on bytes (the modulo-9 counts are where emulators go wrong).
TEST(EmuAluShift, ByteRotatesThroughCarryExhaustive) {
  for (const ShiftOp op : {ShiftOp::kRcl, ShiftOp::kRcr, ShiftOp::kRol, ShiftOp::kRor}) {
    Checker check(form(shift_name(op), 1) + " exhaustive");
    for (unsigned v = 0; v < 256; v += 3) {
      for (unsigned n = 0; n < 256; ++n) {
        for (const uint32_t f : {native::kFlagsClear | kCF, native::kFlagsClear, native::kFlagsSet}) {
          const AluResult m = shift(op, v, static_cast<uint8_t>(n), 1, f);
          const auto h = native_shift<uint8_t>(op, static_cast<uint8_t>(v), static_cast<uint8_t>(n), f);
          check.check({v, n, f}, m.value, m.flags, h.value, h.flags, shift_defined(op, n, 8));
        }
      }
    }
  }
}

template <typename T>
void check_double_shift(bool left, unsigned size, uint64_t seed) {
  Checker check(form(left ? "shld" : "shrd", size));
  for (const Case& c : shift_cases(size, seed)) {
    const unsigned n = c.count & 31u;
    const AluResult m = left ? shld(c.a, c.b, c.count, size, c.flags) : shrd(c.a, c.b, c.count, size, c.flags);
    const auto h = left ? native::shld<T>(static_cast<T>(c.a), static_cast<T>(c.b), c.count, c.flags)
                        : native::shrd<T>(static_cast<T>(c.a), static_cast<T>(c.b), c.count, c.flags);
    uint32_t defined = kArithFlags;
    bool value_defined = true;
    if (n > size * 8) {  // SDM: result and flags undefined
      defined = 0;
      value_defined = false;
    } else if (n != 0) {
      defined = kCF | kSF | kZF | kPF | (n == 1 ? kOF : 0u);
    }
    check.check({c.a, c.b, c.count, c.flags}, m.value, m.flags, h.value, h.flags, defined, value_defined);
  }
}

TEST(EmuAluShift, ShldShrdMatchHost) {
  check_double_shift<uint16_t>(true, 2, 0x8002);
  check_double_shift<uint32_t>(true, 4, 0x8004);
  check_double_shift<uint16_t>(false, 2, 0x8102);
  check_double_shift<uint32_t>(false, 4, 0x8104);
}

TEST(EmuAluShift, KnownValues) {
  // Count 0 (after masking) changes nothing, even RCL with CF set.
  AluResult r = shift(ShiftOp::kRcl, 0x81, 32, 1, 0x2 | kCF | kOF);
  EXPECT_EQ(r.value, 0x81u);
  EXPECT_EQ(r.flags, 0x2u | kCF | kOF);
  // RCL 8-bit by 9 is a full rotation through CF: nothing changes.
  r = shift(ShiftOp::kRcl, 0x81, 9, 1, 0x2 | kCF);
  EXPECT_EQ(r.value, 0x81u);
  EXPECT_EQ(r.flags, 0x2u | kCF);
  // RCR 16-bit by 1 with CF: CF enters at the top.
  r = shift(ShiftOp::kRcr, 0x0001, 1, 2, 0x2 | kCF);
  EXPECT_EQ(r.value, 0x8000u);
  EXPECT_EQ(r.flags & (kCF | kOF), kCF | kOF);
  // ROL 8-bit by 8: value kept, CF = bit 0.
  r = shift(ShiftOp::kRol, 0x01, 8, 1, 0x2);
  EXPECT_EQ(r.value, 0x01u);
  EXPECT_EQ(r.flags & kCF, kCF);
  // SHL 8-bit by 8: CF = old bit 0; by 9: zero and CF = 0.
  r = shift(ShiftOp::kShl, 0x01, 8, 1, 0x2);
  EXPECT_EQ(r.value, 0u);
  EXPECT_EQ(r.flags & (kCF | kZF), kCF | kZF);
  // SAR 16-bit by 20: sign fill, CF = sign.
  r = shift(ShiftOp::kSar, 0x8000, 20, 2, 0x2);
  EXPECT_EQ(r.value, 0xFFFFu);
  EXPECT_EQ(r.flags & kCF, kCF);
  // SHLD 32 by 4.
  r = shld(0x12345678, 0x9ABCDEF0, 4, 4, 0x2);
  EXPECT_EQ(r.value, 0x23456789u);
  r = shrd(0x12345678, 0x9ABCDEF0, 4, 4, 0x2);
  EXPECT_EQ(r.value, 0x01234567u);
  // SHLD 16 by 16 yields the source, CF = old bit 0 of dst.
  r = shld(0x0001, 0xBEEF, 16, 2, 0x2);
  EXPECT_EQ(r.value, 0xBEEFu);
  EXPECT_EQ(r.flags & kCF, kCF);
}

}  // namespace
}  // namespace twoostwo::vmcore::emu
