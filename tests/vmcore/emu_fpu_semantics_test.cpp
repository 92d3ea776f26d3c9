// The emulator's x87 FPU against expectations written from the Intel SDM
// (vol. 1 chapter 8, vol. 2 instruction pages) and from what Linux i386 does
// with the FPU: the boot-time probe, the FDIV bug check, FNSAVE/FRSTOR context
// switches, #MF delivery. Instructions are real 32-bit encodings decoded by
// Zydis; memory operands use [disp32] addressing into a vector-backed memory.
#include <Zydis/Zydis.h>
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "vmcore/emulator/fpu.h"

namespace twoostwo::vmcore::emu {
namespace {

using X80 = std::array<uint8_t, 10>;
using Bytes = std::vector<uint8_t>;

class VectorMemory : public FpuMemory {
 public:
  std::vector<uint8_t> bytes = std::vector<uint8_t>(0x10000, 0);
  int reads = 0, writes = 0;
  bool fail = false;
  bool read(uint32_t linear, std::span<uint8_t> out) override {
    ++reads;
    if (fail || linear + out.size() > bytes.size()) return false;
    std::memcpy(out.data(), bytes.data() + linear, out.size());
    return true;
  }
  bool write(uint32_t linear, std::span<const uint8_t> in) override {
    ++writes;
    if (fail || linear + in.size() > bytes.size()) return false;
    std::memcpy(bytes.data() + linear, in.data(), in.size());
    return true;
  }
  void put(uint32_t at, const void* p, size_t n) { std::memcpy(bytes.data() + at, p, n); }
  uint16_t u16(uint32_t at) const { return static_cast<uint16_t>(bytes[at] | (bytes[at + 1] << 8)); }
  int32_t i32(uint32_t at) const {
    int32_t v;
    std::memcpy(&v, bytes.data() + at, 4);
    return v;
  }
};

// An x87 instruction with a [disp32] memory operand: op, ModRM mod=00 rm=101.
Bytes M(uint8_t op, unsigned reg, uint32_t addr) {
  return {op, static_cast<uint8_t>((reg << 3) | 5), static_cast<uint8_t>(addr), static_cast<uint8_t>(addr >> 8),
          static_cast<uint8_t>(addr >> 16), static_cast<uint8_t>(addr >> 24)};
}

X80 bits80(long double v) {
  X80 r;
  std::memcpy(r.data(), &v, 10);
  return r;
}
X80 make80(bool sign, uint16_t exp, uint64_t mant) {
  X80 r;
  for (size_t i = 0; i < 8; ++i) r[i] = static_cast<uint8_t>(mant >> (8 * i));
  const uint16_t se = static_cast<uint16_t>((sign ? 0x8000 : 0) | exp);
  r[8] = static_cast<uint8_t>(se);
  r[9] = static_cast<uint8_t>(se >> 8);
  return r;
}
uint64_t mantissa(const X80& r) {
  uint64_t m = 0;
  for (int i = 7; i >= 0; --i) m = (m << 8) | r[static_cast<size_t>(i)];
  return m;
}
uint16_t sign_exp(const X80& r) { return static_cast<uint16_t>(r[8] | (r[9] << 8)); }
const X80 kIndefinite = make80(true, 0x7FFF, 0xC000000000000000ull);

constexpr uint16_t kIE = 0x01, kZE = 0x04, kPE = 0x20, kSF = 0x40, kES = 0x80;
constexpr uint16_t kC0 = 0x0100, kC1 = 0x0200, kC2 = 0x0400, kC3 = 0x4000, kB = 0x8000;
constexpr uint16_t kCondition = kC0 | kC1 | kC2 | kC3;

class EmuFpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(ZydisDecoderInit(&decoder_, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32), ZYAN_STATUS_SUCCESS);
  }

  // Decodes and executes one instruction; the memory operand (if any) is the
  // instruction's disp32. `ctx` supplies the mode, selectors and EIP.
  FpuOutcome run(const Bytes& bytes, FpuContext ctx = {}) {
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    EXPECT_TRUE(ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder_, bytes.data(), bytes.size(), &insn, ops)));
    for (unsigned i = 0; i < insn.operand_count_visible; ++i) {
      if (ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY) {
        ctx.mem_linear = static_cast<uint32_t>(ops[i].mem.disp.value) + ctx.mem_linear;
        ctx.mem_offset = static_cast<uint32_t>(ops[i].mem.disp.value);
      }
    }
    return fpu_.execute(insn, ops, ctx, mem_, &ax_, &eflags_);
  }
  void ok(const Bytes& bytes, FpuContext ctx = {}) { ASSERT_EQ(run(bytes, ctx), FpuOutcome::kOk); }

  FpuState& st() { return fpu_.state(); }
  unsigned top() { return (st().fsw >> 11) & 7; }
  const X80& reg(unsigned i) { return st().regs[(top() + i) & 7]; }
  long double value(unsigned i) {
    long double v;
    std::memcpy(&v, reg(i).data(), 10);
    return v;
  }
  unsigned tag(unsigned i) { return (st().ftw >> (2 * ((top() + i) & 7))) & 3; }
  // Pushes a raw value the way FLD would, without going through an instruction.
  void push(const X80& v) {
    const unsigned t = (top() + 7) & 7;
    st().fsw = static_cast<uint16_t>((st().fsw & ~0x3800) | (t << 11));
    st().regs[t] = v;
    const uint16_t e = sign_exp(v) & 0x7FFF;
    const uint64_t m = mantissa(v);
    const unsigned tg = e == 0x7FFF ? 2 : e == 0 ? (m == 0 ? 1 : 2) : (m >> 63) ? 0 : 2;
    st().ftw = static_cast<uint16_t>((st().ftw & ~(3u << (2 * t))) | (tg << (2 * t)));
  }
  void push(long double v) { push(bits80(v)); }

  ZydisDecoder decoder_;
  Fpu fpu_;
  VectorMemory mem_;
  uint16_t ax_ = 0;
  uint32_t eflags_ = 0x202;
};

// --- initialisation and Linux's probes ------------------------------------------

TEST_F(EmuFpuTest, ResetIsTheFninitState) {
  st().fcw = 0;
  st().fsw = 0x1234;
  st().ftw = 0;
  st().fip = 5;
  fpu_.reset();
  EXPECT_EQ(st().fcw, 0x037F);
  EXPECT_EQ(st().fsw, 0);
  EXPECT_EQ(st().ftw, 0xFFFF);
  EXPECT_EQ(st().fip, 0u);
  EXPECT_FALSE(fpu_.error_pending());
}

// arch/x86/kernel/fpu/init.c, fpu__init_system_early_generic(): FNINIT; FNSTSW; FNSTCW.
TEST_F(EmuFpuTest, LinuxFpuProbe) {
  st().fsw = 0xFFFF & ~kES & ~kB;
  st().fcw = 0x1F7F;
  mem_.put(0x100, "\x5a\x5a\x5a\x5a", 4);
  ok({0xDB, 0xE3});                 // fninit
  ok(M(0xDD, 7, 0x100));            // fnstsw [0x100]
  ok(M(0xD9, 7, 0x102));            // fnstcw [0x102]
  EXPECT_EQ(mem_.u16(0x100), 0);
  EXPECT_EQ(mem_.u16(0x102) & 0x103F, 0x003F);
  EXPECT_EQ(mem_.u16(0x102), 0x037F);
}

// arch/x86/kernel/fpu/bugs.c, check_fpu(): the Pentium FDIV erratum test.
TEST_F(EmuFpuTest, LinuxFdivBugCheck) {
  const double x = 4195835.0, y = 3145727.0;
  mem_.put(0x100, &x, 8);
  mem_.put(0x108, &y, 8);
  mem_.put(0x110, "\x5a\x5a\x5a\x5a", 4);
  ok({0xDB, 0xE3});          // fninit
  ok(M(0xDD, 0, 0x100));     // fldl x
  ok(M(0xDC, 6, 0x108));     // fdivl y
  EXPECT_NEAR(static_cast<double>(value(0)), 1.3338204491362410025, 1e-15);  // the flawed Pentium gives 1.33373906...
  ok(M(0xDC, 1, 0x108));     // fmull y
  ok(M(0xDD, 0, 0x100));     // fldl x
  ok({0xDE, 0xE9});          // fsubp %st,%st(1)
  ok(M(0xDB, 3, 0x110));     // fistpl fdiv_bug
  ok({0x9B});                // fwait
  EXPECT_EQ(mem_.i32(0x110), 0);
  EXPECT_EQ(top(), 0u);
  EXPECT_EQ(st().ftw, 0xFFFF);
  ok({0xDB, 0xE3});          // fninit
}

// --- the register stack ----------------------------------------------------------

TEST_F(EmuFpuTest, StackOverflowMaskedPushesIndefinite) {
  for (int i = 0; i < 8; ++i) ok({0xD9, 0xE8});  // fld1 x8
  EXPECT_EQ(st().fsw, 0x0000);
  EXPECT_EQ(st().ftw, 0x0000);
  ok({0xD9, 0xEB});  // fldpi: the ninth push
  EXPECT_EQ(st().fsw, 0x3800 | kC1 | kSF | kIE);  // SDM 8.5.1.1: IE, SF, C1=1 (overflow)
  EXPECT_EQ(reg(0), kIndefinite);
  EXPECT_EQ(tag(0), 2u);
  EXPECT_FALSE(fpu_.error_pending());
}

TEST_F(EmuFpuTest, StackOverflowUnmaskedLeavesTheStack) {
  st().fcw = 0x037E;  // IM=0
  for (int i = 0; i < 8; ++i) ok({0xD9, 0xE8});
  const FpuState before = st();
  ok({0xD9, 0xEE});  // fldz: overflow, completes with an unmasked exception
  EXPECT_EQ(st().fsw, kB | kC1 | kES | kSF | kIE);  // TOP still 0
  EXPECT_EQ(st().regs, before.regs);
  EXPECT_EQ(st().ftw, 0x0000);
  EXPECT_TRUE(fpu_.error_pending());
  EXPECT_EQ(run({0xD9, 0xE8}), FpuOutcome::kFloatingPointError);  // the next waiting instruction: #MF
  EXPECT_EQ(run({0x9B}), FpuOutcome::kFloatingPointError);        // FWAIT too
  ok({0xDF, 0xE0});                                               // FNSTSW AX does not wait
  EXPECT_EQ(ax_, st().fsw);
  ok({0xDB, 0xE2});  // fnclex
  EXPECT_EQ(st().fsw, kC1);
  ok({0x9B});
}

TEST_F(EmuFpuTest, StackUnderflowMaskedResponses) {
  ok({0xD8, 0xC1});  // fadd st(0), st(1) on an empty stack
  EXPECT_EQ(st().fsw, kSF | kIE);  // C1=0: underflow
  EXPECT_EQ(reg(0), kIndefinite);
  EXPECT_EQ(st().ftw, 0xFFFE);

  fpu_.reset();
  ok(M(0xD9, 3, 0x200));  // fstp m32fp from an empty ST(0)
  EXPECT_EQ(mem_.i32(0x200), static_cast<int32_t>(0xFFC00000u));  // single-precision QNaN indefinite
  EXPECT_EQ(st().fsw, 0x0800 | kSF | kIE);                          // popped
  fpu_.reset();
  ok(M(0xDF, 2, 0x204));  // fist m16int
  EXPECT_EQ(mem_.u16(0x204), 0x8000);  // integer indefinite
  fpu_.reset();
  ok({0xD9, 0xC9});  // fxch st(1), both empty: both become indefinite
  EXPECT_EQ(reg(0), kIndefinite);
  EXPECT_EQ(reg(1), kIndefinite);
  EXPECT_EQ(st().fsw, kSF | kIE);
}

TEST_F(EmuFpuTest, StackUnderflowUnmaskedChangesNothingButFlags) {
  st().fcw = 0x037E;
  mem_.put(0x200, "\x11\x22\x33\x44", 4);
  ok(M(0xD9, 3, 0x200));  // fstp m32fp
  EXPECT_EQ(mem_.i32(0x200), 0x44332211);  // not stored
  EXPECT_EQ(st().fsw, kB | kES | kSF | kIE);  // not popped
  EXPECT_EQ(st().ftw, 0xFFFF);
}

TEST_F(EmuFpuTest, PushPopTopAndTags) {
  ok({0xD9, 0xEE});  // fldz
  ok({0xD9, 0xE8});  // fld1
  EXPECT_EQ(top(), 6u);
  EXPECT_EQ(st().ftw, 0x4FFF);  // R7 zero (01), R6 valid (00), R0..R5 empty (11)
  ok({0xD9, 0xC9});  // fxch
  EXPECT_EQ(value(0), 0.0L);
  EXPECT_EQ(value(1), 1.0L);
  EXPECT_EQ(st().ftw, 0x1FFF);
  ok({0xD9, 0xF7});  // fincstp
  EXPECT_EQ(top(), 7u);
  ok({0xD9, 0xF6});  // fdecstp
  EXPECT_EQ(top(), 6u);
  ok({0xDD, 0xC1});  // ffree st(1)
  EXPECT_EQ(tag(1), 3u);
  ok({0xDD, 0xD8});  // fstp st(0): pop
  EXPECT_EQ(top(), 7u);
  EXPECT_EQ(st().ftw, 0xFFFF);
}

// --- exceptions and condition codes ------------------------------------------------

TEST_F(EmuFpuTest, ZeroDivideMaskedAndUnmasked) {
  push(0.0L);
  push(1.0L);
  ok({0xD8, 0xF1});  // fdiv st(0), st(1): 1/0
  EXPECT_EQ(value(0), INFINITY);
  EXPECT_EQ(st().fsw & 0x3F, kZE);

  fpu_.reset();
  st().fcw = 0x037B;  // ZM=0
  push(0.0L);
  push(1.0L);
  ok({0xD8, 0xF1});
  EXPECT_EQ(value(0), 1.0L);  // destination unchanged
  EXPECT_EQ(st().fsw & (kB | kES | 0x3F), kB | kES | kZE);
  EXPECT_TRUE(fpu_.error_pending());
  const FpuState before = st();
  EXPECT_EQ(run({0xD8, 0xC1}), FpuOutcome::kFloatingPointError);
  EXPECT_EQ(std::memcmp(&before, &st(), sizeof before), 0);
}

TEST_F(EmuFpuTest, FldcwUnmaskingASetFlagMakesItPending) {
  push(3.0L);
  push(1.0L);
  ok({0xD8, 0xF1});  // 1/3: inexact
  EXPECT_EQ(st().fsw & 0x3F, kPE);
  mem_.put(0x300, "\x5f\x03", 2);  // PM=0
  ok(M(0xD9, 5, 0x300));
  EXPECT_TRUE(fpu_.error_pending());
  EXPECT_EQ(st().fsw & (kB | kES), kB | kES);
}

TEST_F(EmuFpuTest, PrecisionAndRoundingControl) {
  struct Case {
    uint16_t fcw;
    uint64_t mant;
    bool c1;
  };
  // 1/3 = 0.0101..b: RC and PC from FCW (SDM vol. 1, 8.1.5.2 and 8.1.5.3).
  const Case cases[] = {
      {0x037F, 0xAAAAAAAAAAAAAAABull, true},   // extended, nearest
      {0x077F, 0xAAAAAAAAAAAAAAAAull, false},  // extended, down
      {0x0B7F, 0xAAAAAAAAAAAAAAABull, true},   // extended, up
      {0x0F7F, 0xAAAAAAAAAAAAAAAAull, false},  // extended, toward zero
      {0x027F, 0xAAAAAAAAAAAAA800ull, false},  // double, nearest
      {0x0A7F, 0xAAAAAAAAAAAAB000ull, true},   // double, up
      {0x007F, 0xAAAAAB0000000000ull, true},   // single, nearest
      {0x0C7F, 0xAAAAAA0000000000ull, false},  // single, toward zero
  };
  for (const Case& c : cases) {
    fpu_.reset();
    st().fcw = c.fcw;
    push(3.0L);
    push(1.0L);
    ok({0xD8, 0xF1});
    EXPECT_EQ(mantissa(reg(0)), c.mant) << std::hex << c.fcw;
    EXPECT_EQ(sign_exp(reg(0)), 0x3FFD);
    EXPECT_EQ((st().fsw & kC1) != 0, c.c1) << std::hex << c.fcw;
    EXPECT_EQ(st().fsw & 0x3F, kPE);
  }
}

TEST_F(EmuFpuTest, FcomiSetsZfPfCfAndClearsOfSfAf) {
  struct Case {
    long double st0, st1;
    uint32_t flags;
  };
  const Case cases[] = {{1.0L, 2.0L, kFpuEflagsCf}, {2.0L, 1.0L, 0}, {2.0L, 2.0L, kFpuEflagsZf}};
  for (const Case& c : cases) {
    fpu_.reset();
    push(c.st1);
    push(c.st0);
    eflags_ = 0x202 | kFpuEflagsOf | kFpuEflagsSf | kFpuEflagsAf | kFpuEflagsZf | kFpuEflagsPf | kFpuEflagsCf;
    ok({0xDB, 0xF1});  // fcomi st(0), st(1)
    EXPECT_EQ(eflags_, 0x202u | c.flags);
    EXPECT_EQ(st().fsw & 0x3F, 0);
  }
  // Unordered: ZF=PF=CF=1. FCOMI raises IE for a QNaN, FUCOMI does not.
  fpu_.reset();
  push(1.0L);
  push(make80(false, 0x7FFF, 0xC000000000000000ull));
  eflags_ = 0x202;
  ok({0xDB, 0xE9});  // fucomi
  EXPECT_EQ(eflags_, 0x202u | kFpuEflagsZf | kFpuEflagsPf | kFpuEflagsCf);
  EXPECT_EQ(st().fsw & 0x3F, 0);
  eflags_ = 0x202;
  ok({0xDF, 0xF1});  // fcomip: IE, popped
  EXPECT_EQ(eflags_, 0x202u | kFpuEflagsZf | kFpuEflagsPf | kFpuEflagsCf);
  EXPECT_EQ(st().fsw & 0x3F, kIE);
  EXPECT_EQ(top(), 7u);
}

TEST_F(EmuFpuTest, FcomConditionCodes) {
  struct Case {
    long double st0, st1;
    uint16_t cc;
  };
  const Case cases[] = {{1.0L, 2.0L, kC0}, {2.0L, 1.0L, 0}, {2.0L, 2.0L, kC3}, {NAN, 2.0L, kC3 | kC2 | kC0}};
  for (const Case& c : cases) {
    fpu_.reset();
    st().fsw = kC1;
    push(c.st1);
    push(c.st0);
    ok({0xD8, 0xD1});  // fcom st(1)
    EXPECT_EQ(st().fsw & kCondition, c.cc);
  }
  fpu_.reset();
  push(2.0L);
  push(1.0L);
  ok({0xDE, 0xD9});  // fcompp
  EXPECT_EQ(st().fsw, kC0);
  EXPECT_EQ(st().ftw, 0xFFFF);
  fpu_.reset();
  push(-0.0L);
  ok({0xD9, 0xE4});  // ftst: -0 == 0
  EXPECT_EQ(st().fsw & kCondition, kC3);
}

TEST_F(EmuFpuTest, FcmovReadsEflags) {
  push(2.0L);
  push(1.0L);
  eflags_ = 0x202;
  ok({0xDA, 0xC1});  // fcmovb st(0), st(1): CF=0, not moved
  EXPECT_EQ(value(0), 1.0L);
  eflags_ = 0x202 | kFpuEflagsCf;
  ok({0xDA, 0xC1});
  EXPECT_EQ(value(0), 2.0L);
  eflags_ = 0x202 | kFpuEflagsPf;
  push(7.0L);
  ok({0xDB, 0xD9});  // fcmovnu st(0), st(1): PF=1, not moved
  EXPECT_EQ(value(0), 7.0L);
  EXPECT_EQ(eflags_, 0x202u | kFpuEflagsPf);
}

// SDM vol. 2, FXAM: C3 C2 C0 class, C1 sign.
TEST_F(EmuFpuTest, FxamClasses) {
  struct Case {
    X80 v;
    uint16_t cc;
  };
  const Case cases[] = {
      {make80(false, 0x3FFF, 0x5555000000000000ull), 0},                    // unnormal: unsupported
      {make80(false, 0x7FFF, 0xC000000000000001ull), kC0},                  // NaN
      {make80(true, 0x7FFF, 0x8000000000000001ull), kC1 | kC0},             // -SNaN
      {make80(false, 0x3FFF, 0x8000000000000000ull), kC2},                  // normal
      {make80(true, 0x7FFF, 0x8000000000000000ull), kC2 | kC1 | kC0},       // -infinity
      {make80(false, 0, 0), kC3},                                           // +0
      {make80(true, 0, 0), kC3 | kC1},                                      // -0
      {make80(false, 0, 1), kC3 | kC2},                                     // denormal
      {make80(false, 0, 0x8000000000000000ull), kC3 | kC2},                 // pseudo-denormal
      {make80(false, 0x7FFF, 0x4000000000000000ull), 0},                    // pseudo-NaN: unsupported
  };
  for (const Case& c : cases) {
    fpu_.reset();
    push(c.v);
    ok({0xD9, 0xE5});
    EXPECT_EQ(st().fsw & kCondition, c.cc) << std::hex << sign_exp(c.v) << ":" << mantissa(c.v);
    EXPECT_EQ(st().fsw & 0x3F, 0);
  }
  fpu_.reset();
  ok({0xD9, 0xE5});  // empty
  EXPECT_EQ(st().fsw & (kC3 | kC2 | kC0), kC3 | kC0);
}

TEST_F(EmuFpuTest, TranscendentalsAndFriends) {
  push(0.5L);
  ok({0xD9, 0xFE});  // fsin
  EXPECT_NEAR(static_cast<double>(value(0)), std::sin(0.5), 1e-15);
  ok({0xD9, 0xFB});  // fsincos: push cos, st(1) = sin
  EXPECT_NEAR(static_cast<double>(value(0)), std::cos(std::sin(0.5)), 1e-15);
  EXPECT_EQ(top(), 6u);
  fpu_.reset();
  push(1.0L);
  ok({0xD9, 0xF2});  // fptan: tan, then pushes 1.0
  EXPECT_EQ(value(0), 1.0L);
  EXPECT_NEAR(static_cast<double>(value(1)), std::tan(1.0), 1e-15);
  fpu_.reset();
  push(0x1p70L);
  ok({0xD9, 0xFF});  // fcos out of range: C2=1, operand unchanged
  EXPECT_EQ(st().fsw & kC2, kC2);
  EXPECT_EQ(value(0), 0x1p70L);
  fpu_.reset();
  push(3.0L);    // y
  push(8.0L);    // x
  ok({0xD9, 0xF1});  // fyl2x: y*log2(x)
  EXPECT_EQ(value(0), 9.0L);
  EXPECT_EQ(top(), 7u);
  fpu_.reset();
  push(-24.0L);
  ok({0xD9, 0xF4});  // fxtract: st(1)=exponent, st(0)=significand
  EXPECT_EQ(value(0), -1.5L);
  EXPECT_EQ(value(1), 4.0L);
  fpu_.reset();
  push(3.0L);
  push(17.5L);
  ok({0xD9, 0xF8});  // fprem: 17.5 mod 3 = 2.5, quotient 5 = 101b in C0 C3 C1
  EXPECT_EQ(value(0), 2.5L);
  EXPECT_EQ(st().fsw & kCondition, kC0 | kC1);
  fpu_.reset();
  push(2.0L);
  push(3.0L);
  ok({0xD9, 0xFD});  // fscale: 3 * 2^2
  EXPECT_EQ(value(0), 12.0L);
  fpu_.reset();
  push(-2.5L);
  ok({0xD9, 0xFC});  // frndint, nearest-even
  EXPECT_EQ(value(0), -2.0L);
  ok({0xD9, 0xE1});  // fabs
  ok({0xD9, 0xFA});  // fsqrt
  EXPECT_EQ(value(0), std::sqrt(2.0L));
  ok({0xD9, 0xE0});  // fchs
  EXPECT_EQ(value(0), -std::sqrt(2.0L));
}

// --- loads and stores of every format --------------------------------------------

TEST_F(EmuFpuTest, LoadsAndStoresOfEveryFormat) {
  const float f = -1.25f;
  const double d = 6.02214076e23;
  const long double e = 1.0L / 3.0L;
  const int16_t w = -12345;
  const int32_t l = 2000000000;
  const int64_t q = -9000000000000000000LL;
  mem_.put(0x100, &f, 4);
  mem_.put(0x108, &d, 8);
  mem_.put(0x110, &e, 10);
  mem_.put(0x120, &w, 2);
  mem_.put(0x128, &l, 4);
  mem_.put(0x130, &q, 8);
  ok(M(0xD9, 0, 0x100));  // fld m32fp
  ok(M(0xDD, 0, 0x108));  // fld m64fp
  ok(M(0xDB, 5, 0x110));  // fld m80fp
  ok(M(0xDF, 0, 0x120));  // fild m16int
  ok(M(0xDB, 0, 0x128));  // fild m32int
  ok(M(0xDF, 5, 0x130));  // fild m64int
  EXPECT_EQ(value(5), -1.25L);
  EXPECT_EQ(value(4), static_cast<long double>(d));
  EXPECT_EQ(value(3), e);
  EXPECT_EQ(value(2), -12345.0L);
  EXPECT_EQ(value(1), 2000000000.0L);
  EXPECT_EQ(value(0), -9000000000000000000.0L);
  ok(M(0xDF, 7, 0x200));  // fistp m64int
  ok(M(0xDB, 3, 0x208));  // fistp m32int
  ok(M(0xDF, 3, 0x210));  // fistp m16int
  ok(M(0xDB, 7, 0x218));  // fstp m80fp
  ok(M(0xDD, 3, 0x228));  // fstp m64fp
  ok(M(0xD9, 3, 0x230));  // fstp m32fp
  EXPECT_EQ(std::memcmp(&mem_.bytes[0x200], &q, 8), 0);
  EXPECT_EQ(std::memcmp(&mem_.bytes[0x208], &l, 4), 0);
  EXPECT_EQ(std::memcmp(&mem_.bytes[0x210], &w, 2), 0);
  EXPECT_EQ(std::memcmp(&mem_.bytes[0x218], &e, 10), 0);
  EXPECT_EQ(std::memcmp(&mem_.bytes[0x228], &d, 8), 0);
  EXPECT_EQ(std::memcmp(&mem_.bytes[0x230], &f, 4), 0);
  EXPECT_EQ(st().ftw, 0xFFFF);
  EXPECT_EQ(st().fsw, 0x0000);
}

TEST_F(EmuFpuTest, FistOutOfRangeStoresIntegerIndefinite) {
  push(40000.0L);
  ok(M(0xDF, 2, 0x100));  // fist m16int
  EXPECT_EQ(mem_.u16(0x100), 0x8000);
  EXPECT_EQ(st().fsw & 0x3F, kIE);
}

// SDM vol. 2, FBLD/FBSTP; vol. 1, 4.7 (packed BCD: 18 digits, sign in byte 9 bit 7).
TEST_F(EmuFpuTest, FbldFbstp) {
  const uint8_t bcd[10] = {0x67, 0x45, 0x23, 0x01, 0, 0, 0, 0, 0, 0x80};
  mem_.put(0x100, bcd, 10);
  ok(M(0xDF, 4, 0x100));  // fbld
  EXPECT_EQ(value(0), -1234567.0L);
  ok(M(0xDF, 6, 0x110));  // fbstp
  EXPECT_EQ(std::memcmp(&mem_.bytes[0x110], bcd, 10), 0);
  EXPECT_EQ(st().ftw, 0xFFFF);

  push(98765.5L);  // nearest-even: 98766
  ok(M(0xDF, 6, 0x120));
  const uint8_t rounded[10] = {0x66, 0x87, 0x09, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(std::memcmp(&mem_.bytes[0x120], rounded, 10), 0);

  uint8_t nines[10];
  std::memset(nines, 0x99, 9);
  nines[9] = 0;
  mem_.put(0x130, nines, 10);
  ok(M(0xDF, 4, 0x130));
  EXPECT_EQ(value(0), 999999999999999999.0L);
  ok(M(0xDF, 6, 0x140));
  EXPECT_EQ(std::memcmp(&mem_.bytes[0x140], nines, 10), 0);

  push(1e18L);  // 19 digits: invalid, masked response stores the BCD indefinite
  ok(M(0xDF, 6, 0x150));
  const uint8_t indefinite[10] = {0, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0xFF};
  EXPECT_EQ(std::memcmp(&mem_.bytes[0x150], indefinite, 10), 0);
  EXPECT_EQ(st().fsw & 0x3F, kIE | kPE);  // PE is still set from the rounding above
}

// --- FNSAVE / FRSTOR / FNSTENV / FLDENV -------------------------------------------------

class EmuFpuSaveTest : public EmuFpuTest {
 protected:
  // fninit; fld1 at CS:1000; fldl [2000] at CS:1002 with DS.
  void prepare(const FpuContext& base) {
    const double v = -2.0;
    mem_.put(base.mem_linear + 0x2000, &v, 8);
    ok({0xDB, 0xE3}, base);
    FpuContext c = base;
    c.eip = 0x1000;
    ok({0xD9, 0xE8}, c);
    c.eip = 0x1002;
    ok(M(0xDD, 0, 0x2000), c);
    EXPECT_EQ(st().fop, 0x505);
    EXPECT_EQ(st().fip, 0x1002u);
    EXPECT_EQ(st().fdp, 0x2000u);
  }
  static Bytes registers() {
    Bytes r;
    const X80 a = bits80(-2.0L), b = bits80(1.0L);
    r.insert(r.end(), a.begin(), a.end());
    r.insert(r.end(), b.begin(), b.end());
    r.resize(80, 0);  // R0..R5: never written
    return r;
  }
  void expect_area(uint32_t at, const Bytes& env) {
    Bytes want = env;
    const Bytes regs = registers();
    want.insert(want.end(), regs.begin(), regs.end());
    const Bytes got(mem_.bytes.begin() + at, mem_.bytes.begin() + at + static_cast<long>(want.size()));
    EXPECT_EQ(got, want);
    EXPECT_EQ(mem_.bytes[at + want.size()], 0x5A);  // nothing beyond
  }
  // Saves, checks the image, restores it, saves again: the same bytes.
  void round_trip(const FpuContext& ctx, const Bytes& env, Bytes save_insn, Bytes restore_insn) {
    std::memset(&mem_.bytes[0x3000], 0x5A, 0x200);
    const FpuState before = st();
    ok(save_insn, ctx);
    expect_area(0x3000, env);
    EXPECT_EQ(st().fcw, 0x037F);  // FNSAVE re-initialises
    EXPECT_EQ(st().ftw, 0xFFFF);
    EXPECT_EQ(st().fsw, 0);
    ok(restore_insn, ctx);
    EXPECT_EQ(st().fcw, before.fcw);
    EXPECT_EQ(st().fsw, before.fsw);
    EXPECT_EQ(st().ftw, before.ftw);
    EXPECT_EQ(st().regs, before.regs);
    EXPECT_EQ(st().fop, before.fop);
    std::memset(&mem_.bytes[0x3000], 0x5A, 0x200);
    ok(save_insn, ctx);
    expect_area(0x3000, env);
  }
};

// SDM vol. 1, figure 8-9 (32-bit protected mode) with FNSAVE's register area (figure 8-13? see 8.1.10).
TEST_F(EmuFpuSaveTest, Protected32Layout) {
  FpuContext ctx;
  ctx.cs = 0x0010;
  ctx.ds = 0x0018;
  prepare(ctx);
  const Bytes env = {0x7F, 0x03, 0xFF, 0xFF,   // FCW
                     0x00, 0x30, 0xFF, 0xFF,   // FSW: TOP=6
                     0xFF, 0x0F, 0xFF, 0xFF,   // FTW: R7, R6 valid
                     0x02, 0x10, 0x00, 0x00,   // FIP
                     0x10, 0x00, 0x05, 0x05,   // FCS, FOP
                     0x00, 0x20, 0x00, 0x00,   // FDP
                     0x18, 0x00, 0xFF, 0xFF};  // FDS
  round_trip(ctx, env, M(0xDD, 6, 0x3000), M(0xDD, 4, 0x3000));
}

// Figure 8-10 (16-bit protected mode): operand-size prefix.
TEST_F(EmuFpuSaveTest, Protected16Layout) {
  FpuContext ctx;
  ctx.cs = 0x0010;
  ctx.ds = 0x0018;
  prepare(ctx);
  ctx.operand_size_32 = false;
  const Bytes env = {0x7F, 0x03, 0x00, 0x30, 0xFF, 0x0F, 0x02, 0x10, 0x10, 0x00, 0x00, 0x20, 0x18, 0x00};
  Bytes save = M(0xDD, 6, 0x3000), restore = M(0xDD, 4, 0x3000);
  save.insert(save.begin(), 0x66);
  restore.insert(restore.begin(), 0x66);
  std::memset(&mem_.bytes[0x3000], 0x5A, 0x200);
  ok(save, ctx);
  expect_area(0x3000, env);
  ok(restore, ctx);
  EXPECT_EQ(st().fop, 0);  // not in the 16-bit protected-mode image
  EXPECT_EQ(st().fip, 0x1002u);
  EXPECT_EQ(st().fcs, 0x10);
  EXPECT_EQ(st().fdp, 0x2000u);
  EXPECT_EQ(st().fds, 0x18);
  EXPECT_EQ(value(0), -2.0L);
}

// Figure 8-11 (32-bit real mode): 20-bit linear pointers split 16/16, FOP beside the high part.
TEST_F(EmuFpuSaveTest, Real32Layout) {
  FpuContext ctx;
  ctx.protected_mode = false;
  ctx.cs = 0x1234;  // FIP linear = 0x12340 + 0x1002 = 0x13342
  ctx.ds = 0x2000;  // FDP linear = 0x20000 + 0x2000 = 0x22000
  prepare(ctx);
  const Bytes env = {0x7F, 0x03, 0xFF, 0xFF, 0x00, 0x30, 0xFF, 0xFF, 0xFF, 0x0F, 0xFF, 0xFF,
                     0x42, 0x33, 0xFF, 0xFF,   // FIP 15..0
                     0x05, 0x15, 0x00, 0x00,   // FIP 31..16 in bits 27..12, FOP
                     0x00, 0x20, 0xFF, 0xFF,   // FDP 15..0
                     0x00, 0x20, 0x00, 0x00};  // FDP 31..16 in bits 27..12
  round_trip(ctx, env, M(0xDD, 6, 0x3000), M(0xDD, 4, 0x3000));
  ok(M(0xDD, 4, 0x3000), ctx);
  EXPECT_EQ(st().fip, 0x13342u);  // restored as a linear address with a zero selector
  EXPECT_EQ(st().fcs, 0);
  EXPECT_EQ(st().fdp, 0x22000u);
  EXPECT_EQ(st().fop, 0x505);
}

// Figure 8-12 (16-bit real mode).
TEST_F(EmuFpuSaveTest, Real16Layout) {
  FpuContext ctx;
  ctx.protected_mode = false;
  ctx.cs = 0x1234;
  ctx.ds = 0x2000;
  prepare(ctx);
  ctx.operand_size_32 = false;
  const Bytes env = {0x7F, 0x03, 0x00, 0x30, 0xFF, 0x0F,
                     0x42, 0x33,   // FIP 15..0
                     0x05, 0x15,   // FIP 19..16 in bits 15..12, FOP
                     0x00, 0x20,   // FDP 15..0
                     0x00, 0x20};  // FDP 19..16 in bits 15..12
  Bytes save = M(0xDD, 6, 0x3000), restore = M(0xDD, 4, 0x3000);
  save.insert(save.begin(), 0x66);
  restore.insert(restore.begin(), 0x66);
  round_trip(ctx, env, save, restore);
}

TEST_F(EmuFpuSaveTest, FnstenvMasksExceptionsAndFldenvRestores) {
  FpuContext ctx;
  ctx.cs = 0x0010;
  ctx.ds = 0x0018;
  prepare(ctx);
  st().fcw = 0x0340;  // all unmasked, nothing pending
  std::memset(&mem_.bytes[0x3000], 0x5A, 0x100);
  ok(M(0xD9, 6, 0x3000), ctx);  // fnstenv
  EXPECT_EQ(mem_.u16(0x3000), 0x0340);
  EXPECT_EQ(mem_.bytes[0x3000 + 28], 0x5A);
  EXPECT_EQ(st().fcw, 0x037F);  // SDM FSTENV: then masks all exceptions
  EXPECT_EQ(top(), 6u);         // registers and stack untouched
  ok({0xD9, 0xE8}, ctx);        // fld1
  ok(M(0xD9, 4, 0x3000), ctx);  // fldenv: TOP and tags back
  EXPECT_EQ(st().fcw, 0x0340);
  EXPECT_EQ(top(), 6u);
  EXPECT_EQ(st().ftw, 0x0FFF);
}

TEST_F(EmuFpuSaveTest, FrstorRecomputesTagsAndSummary) {
  // An image whose tag word says "valid" for a zero register and whose FSW has
  // an unmasked IE without ES: FRSTOR keeps only empty/non-empty from the tags
  // and recomputes ES/B (as the hardware and Bochs do).
  uint8_t img[108] = {};
  img[0] = 0x7E;  // FCW 0x037E
  img[1] = 0x03;
  img[4] = 0x01;  // FSW: IE, TOP=0
  img[8] = 0xFC;  // FTW: R0 valid, others empty
  img[9] = 0xFF;
  mem_.put(0x3000, img, sizeof img);
  ok(M(0xDD, 4, 0x3000));
  EXPECT_EQ(st().ftw, 0xFFFD);  // R0 holds +0: tag 01
  EXPECT_EQ(st().fsw, kB | kES | kIE);
  EXPECT_EQ(st().fcw, 0x037E);
  EXPECT_TRUE(fpu_.error_pending());
}

// --- pointers, faults, unsupported -----------------------------------------------

TEST_F(EmuFpuTest, InstructionAndDataPointers) {
  FpuContext c;
  c.cs = 0x23;
  c.ds = 0x2B;
  c.eip = 0x8048000;
  mem_.put(0x500, "\0\0\x80\x3f", 4);
  ok(M(0xD8, 0, 0x500), c);  // fadd m32fp (stack underflow, still recorded)
  EXPECT_EQ(st().fip, 0x8048000u);
  EXPECT_EQ(st().fcs, 0x23);
  EXPECT_EQ(st().fop, 0x005);
  EXPECT_EQ(st().fdp, 0x500u);
  EXPECT_EQ(st().fds, 0x2B);
  c.eip = 0x8048010;
  ok({0xD9, 0xEE}, c);  // fldz: FIP, FOP; no memory operand, FDP kept
  EXPECT_EQ(st().fip, 0x8048010u);
  EXPECT_EQ(st().fop, 0x1EE);
  EXPECT_EQ(st().fdp, 0x500u);
  c.eip = 0x8048020;
  ok(M(0xD9, 7, 0x600), c);  // fnstcw: a control instruction, nothing recorded
  ok({0xDF, 0xE0}, c);       // fnstsw ax
  EXPECT_EQ(st().fip, 0x8048010u);
  EXPECT_EQ(st().fop, 0x1EE);
}

TEST_F(EmuFpuTest, MemoryFaultsLeaveTheStateUnchanged) {
  push(1.5L);
  push(2.5L);
  st().fsw |= kPE;
  const FpuState before = st();
  mem_.fail = true;
  const Bytes faulting[] = {
      M(0xDD, 0, 0x100),  // fld m64fp
      M(0xD9, 3, 0x100),  // fstp m32fp
      M(0xDF, 6, 0x100),  // fbstp
      M(0xDA, 0, 0x100),  // fiadd m32int
      M(0xDD, 6, 0x100),  // fnsave
      M(0xDD, 4, 0x100),  // frstor
      M(0xD9, 6, 0x100),  // fnstenv
      M(0xD9, 4, 0x100),  // fldenv
      M(0xD9, 5, 0x100),  // fldcw
      M(0xD9, 7, 0x100),  // fnstcw
      M(0xDD, 7, 0x100),  // fnstsw m16
  };
  for (const Bytes& b : faulting) {
    EXPECT_EQ(run(b), FpuOutcome::kMemoryFault) << std::hex << int{b[0]} << " /" << ((b[1] >> 3) & 7);
    EXPECT_EQ(std::memcmp(&before, &st(), sizeof before), 0) << std::hex << int{b[0]} << " /" << ((b[1] >> 3) & 7);
  }
}

TEST_F(EmuFpuTest, NotAnI686X87Instruction) {
  EXPECT_EQ(run(M(0xDB, 1, 0x100)), FpuOutcome::kUnsupported);  // fisttp m32int (SSE3)
  EXPECT_EQ(run(M(0xDD, 1, 0x100)), FpuOutcome::kUnsupported);  // fisttp m64int
  EXPECT_EQ(run(M(0xDF, 1, 0x100)), FpuOutcome::kUnsupported);  // fisttp m16int
  EXPECT_EQ(run({0x0F, 0xAE, 0x05, 0, 1, 0, 0}), FpuOutcome::kUnsupported);  // fxsave
  EXPECT_EQ(run({0x90}), FpuOutcome::kUnsupported);                            // nop
  EXPECT_EQ(mem_.writes, 0);
  // FNSTSW AX and FCOMI/FCMOV need their register pointers.
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  const uint8_t fnstsw_ax[2] = {0xDF, 0xE0}, fcomi[2] = {0xDB, 0xF1}, fcmove[2] = {0xDA, 0xC9};
  for (const uint8_t* b : {fnstsw_ax, fcomi, fcmove}) {
    ASSERT_TRUE(ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder_, b, 2, &insn, ops)));
    EXPECT_EQ(fpu_.execute(insn, ops, {}, mem_, nullptr, nullptr), FpuOutcome::kUnsupported);
  }
}

TEST_F(EmuFpuTest, Fpu8087And287LeftoversAreNops) {
  const FpuState before = st();
  ok({0xDB, 0xE0});  // feni
  ok({0xDB, 0xE1});  // fdisi
  ok({0xDB, 0xE4});  // fsetpm
  ok({0xD9, 0xD0});  // fnop (records FIP/FOP)
  EXPECT_EQ(st().fcw, before.fcw);
  EXPECT_EQ(st().fsw, before.fsw);
  EXPECT_EQ(st().ftw, before.ftw);
}

}  // namespace
}  // namespace twoostwo::vmcore::emu
