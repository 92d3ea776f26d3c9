// Differential tests of the emulator's bit instructions (vmcore/emulator/alu.h)
// against the host CPU: BSF BSR BT BTS BTR BTC (16/32-bit), BSWAP, the parity
// flag and the 16 condition codes (SETcc).
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

constexpr int kRandomCases = 3000;

std::string form(const char* name, unsigned size) { return std::string(name) + "/" + std::to_string(size * 8); }

// Sources for the scans: edges, single bits, and random values with random
// numbers of low/high bits cleared so every index is reached.
std::vector<uint32_t> scan_sources(unsigned size, Operands& rng) {
  std::vector<uint32_t> out = Operands::edges(size);
  for (unsigned b = 0; b < size * 8; ++b) {
    out.push_back(1u << b);
  }
  const uint32_t mask = size >= 4 ? 0xFFFFFFFFu : (1u << (size * 8)) - 1;
  for (int i = 0; i < kRandomCases; ++i) {
    uint32_t v = rng.next() & mask;
    const unsigned low = rng.next() % (size * 8);
    v = (v >> low) << low;
    if ((i & 1) != 0) {
      v &= mask >> (rng.next() % (size * 8));
    }
    out.push_back(v);
  }
  return out;
}

template <typename T>
void check_scans(unsigned size, uint64_t seed) {
  Operands rng(seed);
  Checker bsf_check(form("bsf", size));
  Checker bsr_check(form("bsr", size));
  for (const uint32_t src : scan_sources(size, rng)) {
    const uint32_t dst = rng.value(size);
    for (const uint32_t f : {native::kFlagsClear, native::kFlagsSet, rng.flags()}) {
      AluResult m = bsf(dst, src, size, f);
      auto h = native::bsf<T>(static_cast<T>(dst), static_cast<T>(src), f);
      // ZF is the only defined flag. The destination is unchanged for a zero
      // source on the host (AMD documents it; Intel does it) and in the model.
      bsf_check.check({dst, src, f}, m.value, m.flags, h.value, h.flags, kZF);
      m = bsr(dst, src, size, f);
      h = native::bsr<T>(static_cast<T>(dst), static_cast<T>(src), f);
      bsr_check.check({dst, src, f}, m.value, m.flags, h.value, h.flags, kZF);
    }
  }
}

TEST(EmuAluBits, BsfBsrMatchHost) {
  check_scans<uint16_t>(2, 0x9002);
  check_scans<uint32_t>(4, 0x9004);
}

template <typename T>
void check_bit_tests(unsigned size, uint64_t seed) {
  Operands rng(seed);
  for (const BitOp op : {BitOp::kBt, BitOp::kBts, BitOp::kBtr, BitOp::kBtc}) {
    static constexpr const char* kNames[] = {"bt", "bts", "btr", "btc"};
    Checker check(form(kNames[static_cast<unsigned>(op) - 4], size));
    for (int i = 0; i < kRandomCases; ++i) {
      const uint32_t v = rng.value(size);
      const unsigned bit = rng.next() % (size * 8);
      const uint32_t f = i < 2 ? (i == 0 ? native::kFlagsClear : native::kFlagsSet) : rng.flags();
      const AluResult m = bit_test(op, v, bit, size, f);
      native::Native h{};
      const auto tv = static_cast<T>(v);
      const auto tb = static_cast<T>(bit);
      switch (op) {
        case BitOp::kBt: h = native::bt<T>(tv, tb, f); break;
        case BitOp::kBts: h = native::bts<T>(tv, tb, f); break;
        case BitOp::kBtr: h = native::btr<T>(tv, tb, f); break;
        case BitOp::kBtc: h = native::btc<T>(tv, tb, f); break;
      }
      check.check({v, bit, f}, m.value, m.flags, h.value, h.flags, kCF);  // OF SF AF PF undefined, ZF kept
    }
  }
}

TEST(EmuAluBits, BitTestsMatchHost) {
  check_bit_tests<uint16_t>(2, 0xA002);
  check_bit_tests<uint32_t>(4, 0xA004);
}

TEST(EmuAluBits, BitTestKeepsZeroFlag) {
  EXPECT_EQ(bit_test(BitOp::kBts, 0, 3, 4, 0x2 | kZF).flags, 0x2u | kZF);
  EXPECT_EQ(bit_test(BitOp::kBtr, 8, 3, 2, 0x2).value, 0u);
  EXPECT_EQ(bit_test(BitOp::kBtr, 8, 3, 2, 0x2).flags, 0x2u | kCF);
}

TEST(EmuAluBits, BswapMatchesHost) {
  Operands rng(0xB000);
  for (int i = 0; i < kRandomCases; ++i) {
    const uint32_t v = rng.next();
    ASSERT_EQ(bswap(v), native::bswap<uint32_t>(v, native::kFlagsClear).value) << std::hex << v;
  }
  EXPECT_EQ(bswap(0x12345678), 0x78563412u);
}

// PF for every byte: the host's PF after TEST r8, r8.
TEST(EmuAluBits, ParityMatchesHostForEveryByte) {
  for (unsigned b = 0; b < 256; ++b) {
    const auto h = native::test<uint8_t>(static_cast<uint8_t>(b), static_cast<uint8_t>(b), native::kFlagsClear);
    EXPECT_EQ(parity(static_cast<uint8_t>(b)), (h.flags & kPF) != 0) << b;
  }
}

// Every condition code against every combination of the six arithmetic flags.
TEST(EmuAluBits, ConditionCodesMatchHostSetcc) {
  static constexpr uint32_t kBits[] = {kCF, kPF, kAF, kZF, kSF, kOF};
  for (unsigned combo = 0; combo < 64; ++combo) {
    uint32_t f = 0x2;
    for (unsigned i = 0; i < 6; ++i) {
      f |= (combo >> i) & 1u ? kBits[i] : 0u;
    }
    for (unsigned cc = 0; cc < 16; ++cc) {
      EXPECT_EQ(condition(cc, f), native::setcc(cc, f)) << "cc " << cc << " flags 0x" << std::hex << f;
    }
  }
}

}  // namespace
}  // namespace twoostwo::vmcore::emu
