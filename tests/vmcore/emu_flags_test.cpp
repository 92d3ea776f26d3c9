// Lazy flags of the emulator CPU (cpu.h): the fast paths of Cpu::cond() and
// Cpu::carry() must agree with the flags that alu.h computes (flags_value())
// for every condition code, operand size and lazy operation, on edge-case
// and random operands.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "vmcore/emulator/cpu.h"

namespace twoostwo::vmcore::emu {
namespace {

std::vector<uint32_t> operands(unsigned size, std::mt19937& rng) {
  const uint32_t m = size == 1 ? 0xFF : size == 2 ? 0xFFFF : 0xFFFFFFFF;
  const uint32_t sign = 1u << (size * 8 - 1);
  std::vector<uint32_t> v = {0, 1, 2, m, m - 1, sign, sign - 1, sign + 1, m / 3};
  for (int k = 0; k < 24; ++k) v.push_back(rng() & m);
  return v;
}

TEST(EmuFlags, ConditionFastPathsMatchTheComputedFlags) {
  std::mt19937 rng(12345);
  unsigned checked = 0;
  for (unsigned size : {1u, 2u, 4u}) {
    const auto vals = operands(size, rng);
    for (uint8_t op = Cpu::kLazyAdd; op <= Cpu::kLazyDec; ++op) {
      for (uint32_t a : vals) {
        for (uint32_t b : vals) {
          for (uint8_t cf_in : {uint8_t{0}, uint8_t{1}}) {
            Cpu c;
            c.eflags = kEflagsFixed | kIF | cf_in;  // CF before (seen by INC/DEC)
            c.lazy_op = op;
            c.lazy_size = static_cast<uint8_t>(size);
            c.lazy_a = a;
            c.lazy_b = op == Cpu::kLazyLogic || op == Cpu::kLazyInc || op == Cpu::kLazyDec ? 0 : b;
            c.lazy_cf = cf_in;
            const uint32_t f = c.flags_value();
            EXPECT_EQ(c.carry(), f & kCF) << "op " << int(op) << " size " << size << " a " << a << " b " << b;
            for (unsigned cc = 0; cc < 16; ++cc) {
              Cpu copy;
              copy.eflags = c.eflags;
              copy.lazy_op = c.lazy_op;
              copy.lazy_size = c.lazy_size;
              copy.lazy_a = c.lazy_a;
              copy.lazy_b = c.lazy_b;
              copy.lazy_cf = c.lazy_cf;
              ASSERT_EQ(copy.cond(cc), condition(cc, f))
                  << "cc " << cc << " op " << int(op) << " size " << size << " a " << a << " b " << b;
              ++checked;
            }
            // Materializing keeps the non-arithmetic bits and ends the lazy state.
            EXPECT_EQ(c.flags(), f);
            EXPECT_EQ(c.lazy_op, Cpu::kLazyNone);
            EXPECT_NE(c.eflags & kIF, 0u);
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 100000u);
}

TEST(EmuFlags, WriteEflagsMaterializesFirst) {
  Cpu c;
  c.eflags = kEflagsFixed;
  c.lazy_op = Cpu::kLazySub;
  c.lazy_size = 4;
  c.lazy_a = 1;
  c.lazy_b = 2;  // 1 - 2: CF = SF = 1
  c.write_eflags(0, kDF);  // touches DF only
  EXPECT_NE(c.eflags & kCF, 0u);
  EXPECT_NE(c.eflags & kSF, 0u);
  EXPECT_EQ(c.lazy_op, Cpu::kLazyNone);
}

}  // namespace
}  // namespace twoostwo::vmcore::emu
