// Differential tests of the emulator's x87 FPU against the host CPU.
//
// Every valid x87 encoding (register forms D8..DF C0..FF and memory forms
// D8..DF /0../7 [esi]) is decoded with Zydis in 32-bit mode and executed by
// `emu::Fpu` on random architectural states, and the very same bytes are run
// natively (x86-64 user mode: `frstor; <insn>; fnsave` in a small JIT page;
// [esi] in 32-bit mode is [rsi] in 64-bit mode). The resulting FCW, FSW, FTW,
// registers, memory operand, EFLAGS and AX must be identical. The states cover
// all four rounding modes, all precision controls, masked and unmasked
// exceptions, empty registers (stack overflow/underflow), and special
// operands (±0, ±inf, QNaN/SNaN, indefinite, denormals, pseudo-denormals,
// unnormals, huge and tiny numbers). FIP/FDP/FOP are not compared here (the
// host records its own addresses); emu_fpu_semantics_test checks them.
#include <Zydis/Zydis.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "vmcore/emulator/fpu.h"

namespace twoostwo::vmcore::emu {
namespace {

using X80 = std::array<uint8_t, 10>;
constexpr uint32_t kStatusFlags = 0x8D5;  // CF PF AF ZF SF OF
constexpr uint32_t kMemBase = 0x400;      // linear address of the operand in the emulator's memory
constexpr size_t kOperandBytes = 112;     // FNSAVE's 108 rounded up

// --- native execution --------------------------------------------------------

// void fn(uint8_t* image108, uint8_t* mem, uint64_t* rflags, uint16_t* ax)
using NativeFn = void (*)(uint8_t*, uint8_t*, uint64_t*, uint16_t*);

class NativeX87 {
 public:
  NativeX87() {
    page_ = static_cast<uint8_t*>(mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (page_ == MAP_FAILED) page_ = nullptr;
  }
  ~NativeX87() {
    if (page_ != nullptr) munmap(page_, kSize);
  }
  NativeX87(const NativeX87&) = delete;
  NativeX87& operator=(const NativeX87&) = delete;

  bool ok() const { return page_ != nullptr; }

  // Compiles `frstor [rdi]; push [rdx]; popfq; <insn>; mov [rcx],ax; pushfq;
  // pop [rdx]; fnsave [rdi]; ret` and makes it executable.
  NativeFn compile(const std::vector<uint8_t>& insn) {
    if (mprotect(page_, kSize, PROT_READ | PROT_WRITE) != 0) return nullptr;
    std::vector<uint8_t> c = {0xDD, 0x27, 0xFF, 0x32, 0x9D};
    c.insert(c.end(), insn.begin(), insn.end());
    for (uint8_t b : {0x66, 0x89, 0x01, 0x9C, 0x8F, 0x02, 0xDD, 0x37, 0xC3}) c.push_back(b);
    std::memcpy(page_, c.data(), c.size());
    if (mprotect(page_, kSize, PROT_READ | PROT_EXEC) != 0) return nullptr;
    NativeFn fn;
    void* p = page_;
    static_assert(sizeof fn == sizeof p);
    std::memcpy(&fn, &p, sizeof fn);
    return fn;
  }

 private:
  static constexpr size_t kSize = 4096;
  uint8_t* page_ = nullptr;
};

uint64_t host_rflags() {
  uint64_t f;
  asm volatile("pushfq; popq %0" : "=r"(f));
  return f;
}

// --- emulator side -------------------------------------------------------------

class VectorMemory : public FpuMemory {
 public:
  std::vector<uint8_t> bytes = std::vector<uint8_t>(0x1000, 0);
  bool read(uint32_t linear, std::span<uint8_t> out) override {
    if (linear + out.size() > bytes.size()) return false;
    std::memcpy(out.data(), bytes.data() + linear, out.size());
    return true;
  }
  bool write(uint32_t linear, std::span<const uint8_t> in) override {
    if (linear + in.size() > bytes.size()) return false;
    std::memcpy(bytes.data() + linear, in.data(), in.size());
    return true;
  }
};

// --- random states ---------------------------------------------------------------

X80 make80(bool sign, uint16_t exp, uint64_t mant) {
  X80 r;
  for (int i = 0; i < 8; ++i) r[static_cast<size_t>(i)] = static_cast<uint8_t>(mant >> (8 * i));
  uint16_t se = static_cast<uint16_t>((sign ? 0x8000 : 0) | (exp & 0x7FFF));
  r[8] = static_cast<uint8_t>(se);
  r[9] = static_cast<uint8_t>(se >> 8);
  return r;
}

X80 from_long_double(long double v) {
  X80 r;
  std::memcpy(r.data(), &v, 10);
  return r;
}

unsigned tag_of(const X80& r) {
  uint16_t exp = static_cast<uint16_t>((r[8] | (r[9] << 8)) & 0x7FFF);
  uint64_t mant = 0;
  for (int i = 7; i >= 0; --i) mant = (mant << 8) | r[static_cast<size_t>(i)];
  if (exp == 0x7FFF) return 2;
  if (exp == 0) return mant == 0 ? 1 : 2;
  return (mant >> 63) ? 0 : 2;
}

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  uint64_t bits() { return rng_(); }
  unsigned below(unsigned n) { return static_cast<unsigned>(rng_() % n); }

  X80 value() {
    const bool s = below(2) != 0;
    const uint64_t m = bits();
    switch (below(20)) {
      case 0: return make80(s, 0, 0);                                       // ±0
      case 1: return make80(s, 0x7FFF, 1ull << 63);                         // ±inf
      case 2: return make80(s, 0x7FFF, (3ull << 62) | (m >> 40 << 8));      // QNaN
      case 3: return make80(s, 0x7FFF, (1ull << 63) | ((m >> 2) | 1) >> 1 >> 20);  // SNaN
      case 4: return make80(true, 0x7FFF, 3ull << 62);                      // indefinite
      case 5: return make80(s, 0, (m >> 1) | 1);                            // denormal
      case 6: return below(3) == 0 ? make80(s, 0, (1ull << 63) | m)         // pseudo-denormal
                                   : make80(s, static_cast<uint16_t>(1 + below(0x7FFE)), m >> 1);  // unnormal
      case 7: return make80(s, 0x7FFF, m >> 1);                             // pseudo-NaN / pseudo-inf
      case 8: return make80(s, static_cast<uint16_t>(0x7FFE - below(80)), (1ull << 63) | m);  // near overflow
      case 9: return make80(s, static_cast<uint16_t>(1 + below(80)), (1ull << 63) | m);       // near underflow
      case 10: return make80(s, static_cast<uint16_t>(1 + below(0x7FFE)), (1ull << 63) | m);  // anywhere
      case 11: {  // small integers and halves: FIST, FRNDINT, FBSTP, FPREM
        long double v = static_cast<long double>(static_cast<int64_t>(below(20001)) - 10000) / (below(2) ? 1 : 2);
        return from_long_double(v);
      }
      case 12: {  // integers around the int16/int32/int64/BCD limits
        static constexpr long double kLimits[] = {32767.0L, 32768.0L, 2147483647.0L, 2147483648.0L,
                                                  9223372036854775807.0L, 9.223372036854775808e18L,
                                                  999999999999999999.0L, 1e18L, 65535.5L};
        long double v = kLimits[below(9)] + static_cast<long double>(below(3)) - 1.0L;
        return from_long_double(s ? -v : v);
      }
      case 13: return from_long_double(static_cast<long double>(s ? -1 : 1) * (1.0L + below(7)) * 0.78539816339744830961L);
      case 14: return make80(s, static_cast<uint16_t>(0x3FFF + 62 + below(4)), (1ull << 63) | m);  // ~2^63: trig range limit
      default: return make80(s, static_cast<uint16_t>(0x3FFF - 70 + below(140)), (1ull << 63) | m);  // ordinary
    }
  }

  // A random state the host can load without an #MF: no unmasked flag set.
  FpuState state() {
    FpuState s;
    static constexpr uint16_t kRc[] = {0x000, 0x400, 0x800, 0xC00};
    static constexpr uint16_t kPc[] = {0x300, 0x300, 0x200, 0x000, 0x100};
    uint16_t masks = below(3) == 0 ? static_cast<uint16_t>(below(64)) : 0x3F;
    s.fcw = static_cast<uint16_t>(0x40 | masks | kRc[below(4)] | kPc[below(5)] | (below(2) ? 0x1000 : 0));
    const unsigned top = below(8);
    uint16_t sticky = static_cast<uint16_t>(bits() & masks & 0x3F);
    s.fsw = static_cast<uint16_t>((top << 11) | (bits() & 0x4700) | sticky | ((sticky & 1) ? (bits() & 0x40) : 0));
    s.ftw = 0;
    const unsigned empty_odds = below(4);  // 0: full stack ... 3: mostly empty
    for (unsigned p = 0; p < 8; ++p) {
      s.regs[p] = value();
      unsigned t = below(4) < empty_odds ? 3 : tag_of(s.regs[p]);
      s.ftw = static_cast<uint16_t>(s.ftw | (t << (2 * p)));
    }
    return s;
  }

  uint32_t flags() { return static_cast<uint32_t>(bits()) & kStatusFlags; }

  // A memory operand for an instruction that reads `size` bytes.
  std::array<uint8_t, kOperandBytes> operand(uint8_t op, uint8_t reg, size_t size) {
    std::array<uint8_t, kOperandBytes> b;
    for (auto& x : b) x = static_cast<uint8_t>(bits());
    auto put = [&](uint64_t v, size_t n) {
      for (size_t i = 0; i < n && i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    };
    const bool fp32 = (op == 0xD8) || (op == 0xD9 && reg == 0);
    const bool fp64 = (op == 0xDC) || (op == 0xDD && reg == 0);
    if (fp32 || fp64) {
      if (below(2) == 0) {  // from the value pool, converted by the host
        long double v;
        X80 x = value();
        std::memcpy(&v, x.data(), 10);
        if (fp32) {
          float f = static_cast<float>(v);
          uint32_t u;
          std::memcpy(&u, &f, 4);
          put(u, 4);
        } else {
          double f = static_cast<double>(v);
          uint64_t u;
          std::memcpy(&u, &f, 8);
          put(u, 8);
        }
      } else if (below(3) == 0) {  // denormals and NaNs with random payloads
        uint64_t m = bits();
        if (fp32) put((m & 0x807FFFFF) | (below(2) ? 0x7F800000 : 0), 4);
        else put((m & 0x800FFFFFFFFFFFFFull) | (below(2) ? 0x7FF0000000000000ull : 0), 8);
      }
    } else if (op == 0xDF && reg == 4) {  // BCD: mostly valid digits
      for (size_t i = 0; i < 9; ++i) b[i] = static_cast<uint8_t>(below(10) | (below(10) << 4));
      b[9] = below(2) ? 0x80 : 0x00;
      if (below(8) == 0) b[below(9)] = static_cast<uint8_t>(bits());
    } else if ((op == 0xDA || op == 0xDE || op == 0xDB || op == 0xDF) && below(4) == 0) {
      static constexpr uint64_t kInts[] = {0, 1, 0x8000, 0x7FFF, 0x80000000, 0x7FFFFFFF, 0x8000000000000000ull,
                                           0xFFFFFFFFFFFFFFFFull};
      put(kInts[below(8)], size);
    } else if (op == 0xD9 && reg == 5 && below(2) == 0) {  // FLDCW: mostly sane control words
      put(0x037F ^ (bits() & 0x0C3F), 2);
    }
    return b;
  }

 private:
  std::mt19937_64 rng_;
};

// --- comparison ---------------------------------------------------------------------

std::string hex(const uint8_t* p, size_t n) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", p[i]);
    s += buf;
    if (i + 1 < n && (i % 10 == 9)) s += ' ';
  }
  return s;
}

std::string describe(const FpuState& s) {
  std::string out;
  char buf[96];
  std::snprintf(buf, sizeof buf, "fcw=%04x fsw=%04x ftw=%04x\n", s.fcw, s.fsw, s.ftw);
  out += buf;
  for (unsigned p = 0; p < 8; ++p) out += "  R" + std::to_string(p) + "=" + hex(s.regs[p].data(), 10) + "\n";
  return out;
}

void image_from_state(const FpuState& s, uint8_t* img) {
  std::memset(img, 0, 108);
  img[0] = static_cast<uint8_t>(s.fcw);
  img[1] = static_cast<uint8_t>(s.fcw >> 8);
  img[4] = static_cast<uint8_t>(s.fsw);
  img[5] = static_cast<uint8_t>(s.fsw >> 8);
  img[8] = static_cast<uint8_t>(s.ftw);
  img[9] = static_cast<uint8_t>(s.ftw >> 8);
  const unsigned top = (s.fsw >> 11) & 7;
  for (unsigned i = 0; i < 8; ++i) std::memcpy(img + 28 + 10 * i, s.regs[(top + i) & 7].data(), 10);
}

FpuState state_from_image(const uint8_t* img) {
  FpuState s;
  s.fcw = static_cast<uint16_t>(img[0] | (img[1] << 8));
  s.fsw = static_cast<uint16_t>(img[4] | (img[5] << 8));
  s.ftw = static_cast<uint16_t>(img[8] | (img[9] << 8));
  const unsigned top = (s.fsw >> 11) & 7;
  for (unsigned i = 0; i < 8; ++i) std::memcpy(s.regs[(top + i) & 7].data(), img + 28 + 10 * i, 10);
  return s;
}

struct Insn {
  uint8_t op, modrm;
  bool memory() const { return modrm < 0xC0; }
};

// Which encodings an i686 has (SDM vol. 2, A.4), FISTTP (SSE3) excluded.
std::vector<Insn> all_valid_encodings() {
  std::vector<Insn> out;
  for (unsigned op = 0xD8; op <= 0xDF; ++op) {
    for (unsigned reg = 0; reg < 8; ++reg) {
      bool ok = true;
      switch (op) {
        case 0xD9: ok = reg != 1; break;
        case 0xDB: ok = reg != 1 && reg != 4 && reg != 6; break;
        case 0xDD: ok = reg != 1 && reg != 5; break;
        case 0xDF: ok = reg != 1; break;
        default: break;
      }
      if (ok) out.push_back({static_cast<uint8_t>(op), static_cast<uint8_t>((reg << 3) | 6)});
    }
    for (unsigned m = 0xC0; m <= 0xFF; ++m) {
      bool ok = true;
      switch (op) {
        case 0xD9: ok = m <= 0xD0 || (m >= 0xD8 && m <= 0xE1) || m == 0xE4 || m == 0xE5 || (m >= 0xE8 && m <= 0xEE) || m >= 0xF0; break;
        case 0xDA: ok = m <= 0xDF || m == 0xE9; break;
        case 0xDB: ok = m <= 0xE4 || (m >= 0xE8 && m <= 0xF7); break;
        case 0xDD: ok = m <= 0xEF; break;
        case 0xDE: ok = m <= 0xD7 || m == 0xD9 || m >= 0xE0; break;
        case 0xDF: ok = m <= 0xE0 || (m >= 0xE8 && m <= 0xF7); break;
        default: break;
      }
      if (ok) out.push_back({static_cast<uint8_t>(op), static_cast<uint8_t>(m)});
    }
  }
  return out;
}

// Memory operand size of a memory form; 0 for none.
size_t operand_size(const Insn& in) {
  const unsigned reg = (in.modrm >> 3) & 7;
  switch (in.op) {
    case 0xD8: case 0xDA: return 4;
    case 0xDC: return 8;
    case 0xDE: return 2;
    case 0xD9: return reg <= 3 ? 4 : reg == 4 || reg == 6 ? 28 : 2;
    case 0xDB: return reg <= 3 ? 4 : 10;
    case 0xDD: return reg <= 3 ? 8 : reg == 7 ? 2 : 108;
    case 0xDF: return reg <= 3 ? 2 : reg == 4 || reg == 6 ? 10 : 8;
    default: return 0;
  }
}

bool is_env_store(const Insn& in) {
  return (in.op == 0xD9 && in.modrm == 0x36) || (in.op == 0xDD && in.modrm == 0x36);
}

class EmuFpuDifferential : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(ZydisDecoderInit(&decoder_, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32), ZYAN_STATUS_SUCCESS);
    if (!native_.ok() || native_.compile({0xD9, 0xD0}) == nullptr)
      GTEST_SKIP() << "the host does not allow an executable anonymous page (needed to run x87 code natively)";
  }

  // Runs `in` on `s` in both worlds; returns the number of mismatches (at most one reported).
  int run_one(const Insn& in, NativeFn fn, const FpuState& s, const std::array<uint8_t, kOperandBytes>& operand,
              uint32_t flags) {
    const uint8_t bytes[2] = {in.op, in.modrm};
    ZydisDecodedInstruction zi;
    ZydisDecodedOperand zops[ZYDIS_MAX_OPERAND_COUNT];
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder_, bytes, 2, &zi, zops))) {
      ADD_FAILURE() << "Zydis cannot decode " << hex(bytes, 2);
      return 1;
    }
    // Native.
    alignas(16) uint8_t img[108];
    image_from_state(s, img);
    alignas(16) uint8_t nmem[kOperandBytes];
    std::memcpy(nmem, operand.data(), kOperandBytes);
    uint64_t nflags = (host_rflags() & ~uint64_t{kStatusFlags}) | flags;
    uint16_t nax = 0x5A5A;
    fn(img, nmem, &nflags, &nax);
    const FpuState native = state_from_image(img);

    // Emulator.
    Fpu fpu;
    fpu.state() = s;
    VectorMemory mem;
    std::memcpy(mem.bytes.data() + kMemBase, operand.data(), kOperandBytes);
    FpuContext ctx;
    ctx.mem_linear = kMemBase;
    uint16_t eax = 0x5A5A;
    uint32_t eflags = 0x202 | flags;
    const FpuOutcome out = fpu.execute(zi, zops, ctx, mem, &eax, &eflags);
    const FpuState& e = fpu.state();

    std::string why;
    if (out != FpuOutcome::kOk) why += "outcome " + std::to_string(static_cast<int>(out)) + "; ";
    if (e.fcw != native.fcw || e.fsw != native.fsw || e.ftw != native.ftw || e.regs != native.regs) why += "state; ";
    const size_t n = in.memory() ? operand_size(in) : 0;
    for (size_t i = 0; i < n; ++i) {
      if (is_env_store(in) && i >= 12 && i < 26) continue;  // FIP FCS FOP FDP FDS: the host's own
      if (mem.bytes[kMemBase + i] != nmem[i]) {
        why += "memory; ";
        break;
      }
    }
    if ((eflags & kStatusFlags) != (nflags & kStatusFlags)) why += "eflags; ";
    if (in.op == 0xDF && in.modrm == 0xE0 && eax != nax) why += "ax; ";
    if (why.empty()) return 0;
    ADD_FAILURE() << "insn " << hex(bytes, 2) << ": " << why << "\ninput: " << describe(s)
                  << "operand: " << hex(operand.data(), std::max<size_t>(n, 10)) << "\nflags in " << std::hex << flags
                  << "\nnative: " << describe(native) << "emulated: " << describe(e) << "native mem: " << hex(nmem, n)
                  << "\nemulated mem: " << hex(mem.bytes.data() + kMemBase, n) << "\nnative eflags "
                  << (nflags & kStatusFlags) << " emulated " << (eflags & kStatusFlags) << "\nnative ax " << nax
                  << " emulated " << eax;
    return 1;
  }

  // EMU_FPU_SCALE=n multiplies the number of random states (for soak runs).
  static int scale() {
    const char* v = std::getenv("EMU_FPU_SCALE");
    return v != nullptr && std::atoi(v) > 0 ? std::atoi(v) : 1;
  }

  void run_all(const std::vector<Insn>& insns, int states_per_insn, uint32_t seed) {
    states_per_insn *= scale();
    Generator g(seed);
    for (const Insn& in : insns) {
      NativeFn fn = native_.compile({in.op, in.modrm});
      ASSERT_NE(fn, nullptr);
      int failures = 0;
      for (int k = 0; k < states_per_insn && failures == 0; ++k) {
        FpuState s = g.state();
        auto operand = g.operand(in.op, static_cast<uint8_t>((in.modrm >> 3) & 7), in.memory() ? operand_size(in) : 0);
        if (in.memory() && (in.op == 0xD9 || in.op == 0xDD) && in.modrm == 0x26 &&
            g.below(2) == 0) {
          // FLDENV / FRSTOR: half the time a plausible image of another state.
          FpuState other = g.state();
          image_from_state(other, operand.data());
        }
        failures += run_one(in, fn, s, operand, g.flags());
      }
    }
  }

  ZydisDecoder decoder_;
  NativeX87 native_;
};

TEST_F(EmuFpuDifferential, EveryRegisterFormOnRandomStates) {
  std::vector<Insn> regs;
  for (const Insn& in : all_valid_encodings())
    if (!in.memory()) regs.push_back(in);
  EXPECT_EQ(regs.size(), 420u);  // 512 minus the reserved slots of A.4
  run_all(regs, 150, 1);
}

TEST_F(EmuFpuDifferential, EveryMemoryFormOnRandomStatesAndOperands) {
  std::vector<Insn> mems;
  for (const Insn& in : all_valid_encodings())
    if (in.memory()) mems.push_back(in);
  EXPECT_EQ(mems.size(), 57u);  // 64 minus D9/1, DB/1/4/6, DD/1/5, DF/1
  run_all(mems, 300, 2);
}

// The arithmetic core in each rounding mode separately, on ordinary and
// special operands (all exceptions masked, then all unmasked).
class EmuFpuRounding : public EmuFpuDifferential, public ::testing::WithParamInterface<int> {};

TEST_P(EmuFpuRounding, ArithmeticMatchesHost) {
  const uint16_t rc = static_cast<uint16_t>(GetParam() << 10);
  const std::vector<Insn> insns = {
      {0xD8, 0xC1}, {0xD8, 0xE1}, {0xD8, 0xE9}, {0xD8, 0xC9}, {0xD8, 0xF1}, {0xD8, 0xF9},  // op st0, st1
      {0xDC, 0xC1}, {0xDC, 0xE1}, {0xDC, 0xE9}, {0xDC, 0xC9}, {0xDC, 0xF1}, {0xDC, 0xF9},  // op st1, st0
      {0xDE, 0xC1}, {0xDE, 0xE1}, {0xDE, 0xE9}, {0xDE, 0xC9}, {0xDE, 0xF1}, {0xDE, 0xF9},  // opP st1, st0
      {0xD8, 0x06}, {0xD8, 0x26}, {0xD8, 0x36}, {0xDC, 0x06}, {0xDC, 0x2E}, {0xDC, 0x3E},  // m32fp, m64fp
      {0xDA, 0x06}, {0xDE, 0x0E}, {0xDA, 0x36},                                            // m32int, m16int
      {0xD9, 0xFA}, {0xD9, 0xFC}, {0xD9, 0xFD}, {0xD9, 0xF8}, {0xD9, 0xF5}, {0xD9, 0xF4},  // fsqrt frndint fscale fprem fprem1 fxtract
      {0xD9, 0x16}, {0xDD, 0x16}, {0xDB, 0x16}, {0xDF, 0x16}, {0xDF, 0x3E}, {0xDF, 0x36},  // stores with rounding
      {0xD9, 0xEB}, {0xD9, 0xE9}, {0xD9, 0xEA}, {0xD9, 0xEC}, {0xD9, 0xED}};               // rounded constants
  Generator g(100 + static_cast<uint32_t>(GetParam()));
  for (const Insn& in : insns) {
    NativeFn fn = native_.compile({in.op, in.modrm});
    ASSERT_NE(fn, nullptr);
    int failures = 0;
    for (int k = 0; k < 200 * scale() && failures == 0; ++k) {
      FpuState s = g.state();
      s.fcw = static_cast<uint16_t>((s.fcw & ~0x0C3F) | rc | (k % 2 == 0 ? 0x3F : 0x00));
      s.fsw &= static_cast<uint16_t>(~0x003F & ~0x0040);  // nothing pending
      auto operand = g.operand(in.op, static_cast<uint8_t>((in.modrm >> 3) & 7), in.memory() ? operand_size(in) : 0);
      failures += run_one(in, fn, s, operand, g.flags());
    }
  }
}

std::string RoundingName(const ::testing::TestParamInfo<int>& p) {
  static const char* const kNames[] = {"Nearest", "Down", "Up", "TowardZero"};
  return kNames[p.param];
}

INSTANTIATE_TEST_SUITE_P(AllModes, EmuFpuRounding, ::testing::Values(0, 1, 2, 3), RoundingName);

}  // namespace
}  // namespace twoostwo::vmcore::emu
