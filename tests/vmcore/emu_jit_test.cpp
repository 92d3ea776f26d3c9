// The emulator's JIT (vmcore/emulator/jit.h) against its interpreter: every
// inline form (JitForm), sizes 1/2/4, after each kind of lazy-flag producer
// and followed by a Jcc, on random registers and on memory operands that hit,
// cross pages, leave RAM, wrap at 4 GiB, exceed a segment limit, or reach a
// not-present or read-only page. The same program and state run once
// interpreted and once compiled (TWOOSTWO_EMU_JIT=always semantics); the
// stop reason, registers (EFLAGS materialized), CR2, instructions retired
// and RAM must be identical.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "tests/vmcore/emu_harness.h"

namespace twoostwo::vmcore::emutest {
namespace {

/// Unsets TWOOSTWO_EMU_JIT for the scope (it overrides EmulatorOptions::jit,
/// and this test needs both engines), and restores it.
class NoJitEnv {
 public:
  NoJitEnv() {
    if (const char* v = std::getenv("TWOOSTWO_EMU_JIT"); v != nullptr) saved_ = v;
    ::unsetenv("TWOOSTWO_EMU_JIT");
  }
  ~NoJitEnv() {
    if (saved_) ::setenv("TWOOSTWO_EMU_JIT", saved_->c_str(), 1);
  }
  NoJitEnv(const NoJitEnv&) = delete;
  NoJitEnv& operator=(const NoJitEnv&) = delete;

 private:
  std::optional<std::string> saved_;
};

constexpr uint32_t kCode = 0x1000;
constexpr uint32_t kPageDir = 0x10000, kPageTable = 0x11000;
constexpr uint32_t kData = 0x20000;        // 64 KiB of random data
constexpr uint32_t kNotPresent = 0x200000;  // page not present
constexpr uint32_t kReadOnly = 0x201000;    // read-only page (CR0.WP)
constexpr uint64_t kRam = 4 << 20;

EmulatorOptions options(EmulatorJit jit) {
  EmulatorOptions o;
  o.jit = jit;
  o.slice_instructions = 1000;
  return o;
}

/// Identity paging of the first 4 MiB with one not-present and one
/// read-only page.
void write_page_tables(const GuestRam& ram) {
  ram.put32(kPageDir, kPageTable | 3);
  for (uint32_t p = 1; p < 1024; ++p) ram.put32(kPageDir + 4 * p, 0);
  for (uint32_t p = 0; p < 1024; ++p) {
    uint32_t pte = (p << 12) | 3;
    if ((p << 12) == kNotPresent) pte = 0;
    if ((p << 12) == kReadOnly) pte = (p << 12) | 1;
    ram.put32(kPageTable + 4 * p, pte);
  }
}

struct Emitter {
  std::vector<uint8_t> b;
  void u8(unsigned v) { b.push_back(static_cast<uint8_t>(v)); }
  void u16(unsigned v) {
    u8(v & 0xFF);
    u8((v >> 8) & 0xFF);
  }
  void u32(uint32_t v) {
    for (int k = 0; k < 4; ++k) u8((v >> (8 * k)) & 0xFF);
  }
  void imm(unsigned size, uint32_t v) {
    if (size == 1) u8(v);
    else if (size == 2) u16(v);
    else u32(v);
  }
};

class Gen {
 public:
  explicit Gen(uint32_t seed) : rng_(seed) {}
  uint32_t r32() { return static_cast<uint32_t>(rng_()); }
  unsigned below(unsigned n) { return static_cast<unsigned>(rng_() % n); }

  /// A register other than ESP (which the stack forms use).
  unsigned reg() {
    unsigned r;
    do r = below(8);
    while (r == 4);
    return r;
  }
  void prefix(Emitter& e, unsigned size) {
    if (size == 2) e.u8(0x66);
  }
  /// ModRM (+SIB, disp) for a memory operand with base `base_reg` (whose
  /// value the test chooses) and maybe an index register of value 0..3.
  void modrm_mem(Emitter& e, unsigned digit, unsigned base_reg, unsigned index_reg) {
    switch (below(3)) {
      case 0:  // [base]
        e.u8((digit << 3) | base_reg);
        break;
      case 1:  // [base + disp8]
        e.u8(0x40 | (digit << 3) | base_reg);
        e.u8(below(2) ? 0x7C : 0x04);
        break;
      default:  // [base + index*scale + disp32]
        e.u8(0x80 | (digit << 3) | 4);
        e.u8((below(4) << 6) | (index_reg << 3) | base_reg);
        e.u32(below(2) ? 0x10 : 0xFFFFFFF0u);
        break;
    }
  }
  unsigned size() {
    static constexpr unsigned kSizes[] = {1, 2, 4, 4};
    return kSizes[below(4)];
  }
  /// A flag producer (ADD/SUB/CMP/AND/TEST/INC/DEC of a random size) on registers.
  void producer(Emitter& e) {
    const unsigned k = below(6);
    const unsigned s = size();
    const unsigned a = reg(), b2 = reg();
    prefix(e, s);
    if (k < 4) {
      static constexpr unsigned kOps[] = {0x00, 0x28, 0x38, 0x20};
      e.u8(kOps[k] + (s == 1 ? 0 : 1));
      e.u8(0xC0 | (b2 << 3) | a);
    } else if (k == 4) {
      e.u8(s == 1 ? 0x84 : 0x85);
      e.u8(0xC0 | (b2 << 3) | a);
    } else {
      e.u8(s == 1 ? 0xFE : 0xFF);
      e.u8(0xC0 | (below(2) << 3) | a);
    }
  }

 private:
  std::mt19937 rng_;
};

enum class Kind { kAlu, kTest, kMov, kLea, kMovx, kIncDec, kPushPop, kCall, kRet, kJmp, kJcc, kShift, kSetCmov };

/// One case: the program at kCode, the registers to start with.
struct Case {
  std::vector<uint8_t> code;
  uint32_t gpr[8];
  uint16_t ds = 0x10;
  // SS: 0 flat 32-bit; 1 flat but 16-bit (B = 0); 2 limit 0xfff. Both
  // others make a compiled block's flat-segment check fail at entry.
  unsigned ss = 0;
};

uint32_t interesting_address(Gen& g) {
  switch (g.below(9)) {
    case 0: return kNotPresent - 2 - g.below(3);  // crosses into the not-present page
    case 1: return kNotPresent + g.below(0x1000);
    case 2: return kReadOnly + g.below(0x1000);
    case 3: return 0xFFFFFFFEu;                  // wraps at 4 GiB (past RAM: MMIO)
    case 4: return static_cast<uint32_t>(kRam) - 2;  // the end of RAM
    case 5: return 0x800 + g.below(0x1000);      // segment limit 0xfff with DS = 0x38
    default: return kData + g.below(0x10000 - 0x100);
  }
}

Case make_case(Gen& g, Kind kind) {
  Case c;
  for (auto& r : c.gpr) r = g.r32();
  c.gpr[4] = 0x30000 + (g.below(0x400) * 4);
  if (g.below(6) == 0) c.gpr[4] = g.below(2) ? kNotPresent + 8 : kReadOnly + 8;
  if (g.below(8) == 0) c.gpr[4] = 2;  // pushes wrap below 0
  Emitter e;
  if (g.below(4) != 0) g.producer(e);
  if (kind == Kind::kShift || kind == Kind::kIncDec || kind == Kind::kSetCmov) {
    // Sometimes in the block before: the form then starts a block whose
    // flag producer the compiler does not know.
    if (g.below(3) == 0) {
      e.u8(0xE9);
      e.u32(0);
    }
  }
  const unsigned base = g.reg();
  unsigned index = g.reg();
  while (index == base) index = g.reg();
  c.gpr[base] = interesting_address(g);
  c.gpr[index] = g.below(4);
  if (g.below(10) == 0) c.ds = 0x38;  // limit 0xfff
  if (kind == Kind::kPushPop || kind == Kind::kCall || kind == Kind::kRet) {
    c.ss = g.below(10) == 0 ? 1 + g.below(2) : 0;
    if (c.ss != 0) c.gpr[4] = g.below(2) ? 0x800 + 4 * g.below(0x200) : 0x30000 + 4 * g.below(0x10);
  }
  const unsigned s = g.size();
  const unsigned r1 = g.reg();
  unsigned r2 = g.reg();
  auto dst_not_base = [&](unsigned r) { return (r == base || r == index) ? (base + 1) % 8 == 4 ? 5 : (base + 1) % 8 : r; };
  switch (kind) {
    case Kind::kAlu: {
      static constexpr unsigned kOps[] = {0, 1, 4, 5, 6, 7};  // add or and sub xor cmp
      const unsigned op = kOps[g.below(6)];
      const unsigned form = g.below(5);
      g.prefix(e, s);
      const unsigned w = s == 1 ? 0 : 1;
      switch (form) {
        case 0:  // RR
          e.u8(op * 8 + w);
          e.u8(0xC0 | (r2 << 3) | r1);
          break;
        case 1:  // RM
          e.u8(op * 8 + 2 + w);
          g.modrm_mem(e, dst_not_base(r1), base, index);
          break;
        case 2:  // MR
          e.u8(op * 8 + w);
          g.modrm_mem(e, r2, base, index);
          break;
        case 3:  // RI
          if (s != 1 && g.below(2)) {
            e.u8(0x83);
            e.u8(0xC0 | (op << 3) | r1);
            e.u8(g.r32());
          } else {
            e.u8(s == 1 ? 0x80 : 0x81);
            e.u8(0xC0 | (op << 3) | r1);
            e.imm(s, g.r32());
          }
          break;
        default:  // MI
          e.u8(s == 1 ? 0x80 : 0x81);
          g.modrm_mem(e, op, base, index);
          e.imm(s, g.r32());
          break;
      }
      break;
    }
    case Kind::kTest: {
      const unsigned form = g.below(4);
      g.prefix(e, s);
      const unsigned w = s == 1 ? 0 : 1;
      if (form == 0) {
        e.u8(0x84 + w);
        e.u8(0xC0 | (r2 << 3) | r1);
      } else if (form == 1) {
        e.u8(0x84 + w);
        g.modrm_mem(e, r2, base, index);
      } else if (form == 2) {
        e.u8(0xF6 + w);
        e.u8(0xC0 | r1);
        e.imm(s, g.r32());
      } else {
        e.u8(0xF6 + w);
        g.modrm_mem(e, 0, base, index);
        e.imm(s, g.r32());
      }
      break;
    }
    case Kind::kMov: {
      const unsigned form = g.below(5);
      g.prefix(e, s);
      const unsigned w = s == 1 ? 0 : 1;
      if (form == 0) {
        e.u8(0x88 + w);
        e.u8(0xC0 | (r2 << 3) | r1);
      } else if (form == 1) {
        e.u8(0x8A + w);
        g.modrm_mem(e, dst_not_base(r1), base, index);
      } else if (form == 2) {
        e.u8(0x88 + w);
        g.modrm_mem(e, r2, base, index);
      } else if (form == 3) {
        e.u8((s == 1 ? 0xB0 : 0xB8) + r1);
        e.imm(s, g.r32());
      } else {
        e.u8(0xC6 + w);
        g.modrm_mem(e, 0, base, index);
        e.imm(s, g.r32());
      }
      break;
    }
    case Kind::kLea:
      e.u8(0x8D);
      g.modrm_mem(e, r1, base, index);
      break;
    case Kind::kMovx: {
      const bool sx = g.below(2) != 0, word = g.below(2) != 0;
      e.u8(0x0F);
      e.u8((sx ? 0xBE : 0xB6) + (word ? 1 : 0));
      if (g.below(2)) e.u8(0xC0 | (r1 << 3) | r2);
      else g.modrm_mem(e, dst_not_base(r1), base, index);
      break;
    }
    case Kind::kIncDec:
      if (g.below(3) == 0) {  // NOT or NEG r32 (or r/m8, a call) first
        e.u8(g.below(4) == 0 ? 0xF6 : 0xF7);
        e.u8(0xC0 | ((2 + g.below(2)) << 3) | r2);
      }
      e.u8((g.below(2) ? 0x40 : 0x48) + r1);
      if (g.below(2)) e.u8((g.below(2) ? 0x40 : 0x48) + r2);  // after a known INC/DEC
      break;
    case Kind::kPushPop:
      for (unsigned k = 0, n = 1 + g.below(3); k < n; ++k) {
        switch (g.below(4)) {
          case 0: e.u8(0x50 + g.below(8)); break;  // PUSH r32
          case 1: e.u8(0x58 + g.below(8)); break;  // POP r32
          case 2:                                   // PUSH imm32 / imm8
            if (g.below(2)) {
              e.u8(0x68);
              e.u32(g.r32());
            } else {
              e.u8(0x6A);
              e.u8(g.r32());
            }
            break;
          default:  // PUSH m32 (maybe [esp + disp])
            e.u8(0xFF);
            if (g.below(4) == 0) {
              e.u8(0x74);
              e.u8(0x24);
              e.u8(4 * g.below(4));
            } else {
              g.modrm_mem(e, 6, base, index);
            }
            break;
        }
      }
      break;
    case Kind::kCall:
      e.u8(0xE8);
      e.u32(7);  // over the Jcc below, to its taken HLT
      break;
    case Kind::kRet:
      e.u8(0xC3);
      break;
    case Kind::kJmp:
      e.u8(0xE9);
      e.u32(6);  // over the Jcc below
      break;
    case Kind::kJcc:
      break;  // the Jcc below
    case Kind::kSetCmov:
      // SETcc r8 (AL..BH) or CMOVcc r32, r32 (or CMOVcc r32, m32: a call).
      e.u8(0x0F);
      switch (g.below(5)) {
        case 0:
        case 1:
          e.u8(0x90 + g.below(16));
          e.u8(0xC0 | g.below(8));
          break;
        case 2:
        case 3:
          e.u8(0x40 + g.below(16));
          e.u8(0xC0 | (r1 << 3) | r2);
          break;
        default:
          e.u8(0x40 + g.below(16));
          g.modrm_mem(e, dst_not_base(r1), base, index);
          break;
      }
      break;
    case Kind::kShift: {
      // ROL ROR SHL SHR SAR (and RCL, compiled as a handler call) r/m32 by
      // imm8 (0, 1, 31, 32 or any), then maybe another one or an INC.
      static constexpr unsigned kDigits[] = {0, 1, 4, 5, 7, 2};
      static constexpr unsigned kCounts[] = {0, 1, 31, 32, 33};
      for (unsigned k = 0, n = 1 + g.below(2); k < n; ++k) {
        const unsigned digit = kDigits[g.below(6)];
        e.u8(0xC1);
        if (g.below(8) == 0) g.modrm_mem(e, digit, base, index);
        else e.u8(0xC0 | (digit << 3) | (k == 0 ? r1 : r2));
        e.u8(g.below(2) ? kCounts[g.below(5)] : g.r32() & 0xFF);
      }
      if (g.below(3) == 0) e.u8(0x40 + r2);  // INC after materialized flags
      break;
    }
  }
  // A Jcc on the flags the form left, then two HLTs (taken: the second).
  e.u8(0x0F);
  e.u8(0x80 + g.below(16));
  e.u32(1);
  e.u8(0xF4);
  e.u8(0xF4);
  e.u8(0xF4);
  e.u8(0xF4);
  c.code = e.b;
  (void)r2;
  return c;
}

struct Outcome {
  RunResult result;
  CpuState state;
  uint64_t retired;
};

Outcome run_case(EmuMachine& m, const Case& c, uint32_t seed) {
  // Fresh memory: data, stack, page tables, the read-only page.
  std::mt19937 fill(seed);
  for (uint32_t a = kData; a < kData + 0x10000; a += 4) m.ram.put32(a, static_cast<uint32_t>(fill()));
  for (uint32_t a = 0x30000 - 0x1000; a < 0x31000; a += 4) m.ram.put32(a, kCode + c.code.size() - 1);
  for (uint32_t a = 0x800; a < 0x2000; a += 4) m.ram.put32(a, static_cast<uint32_t>(fill()));
  for (uint32_t a = kReadOnly; a < kReadOnly + 0x1000; a += 4) m.ram.put32(a, kCode + c.code.size() - 2);
  CpuState s = m.flat32(kCode);  // writes the GDT (over part of the random data at 0x800)
  write_page_tables(m.ram);
  m.load(kCode, c.code);
  for (unsigned r = 0; r < 8; ++r) s.gpr[r] = c.gpr[r];
  s.cr0 = 0x80010011;  // PG WP ET PE
  s.cr3 = kPageDir;
  if (c.ds == 0x38) {
    s.ds.selector = 0x38;
    s.ds.limit = 0xFFF;
    s.ds.g = false;
  }
  if (c.ss == 1) s.ss.db = false;
  if (c.ss == 2) {
    s.ss.selector = 0x38;
    s.ss.limit = 0xFFF;
    s.ss.g = false;
  }
  EXPECT_TRUE(m.engine->set_state(s));
  Outcome o;
  o.result = m.run(4);
  auto st = m.engine->state();
  EXPECT_TRUE(st);
  if (st) o.state = *st;
  o.retired = m.engine->instructions_retired();
  return o;
}

std::string describe(const Case& c) {
  std::string s = "code";
  for (uint8_t b : c.code) s += fmt::format(" {:02x}", b);
  s += "; regs";
  for (uint32_t r : c.gpr) s += fmt::format(" {:08x}", r);
  s += fmt::format("; ds {:#x}; ss kind {}", c.ds, c.ss);
  return s;
}

void differential(Kind kind, unsigned cases, uint32_t seed0) {
  NoJitEnv no_env;
  EmuMachine interp(kRam, options(EmulatorJit::kOff));
  EmuMachine jit(kRam, options(EmulatorJit::kAlways));
  ASSERT_TRUE(interp.engine && jit.engine);
  Gen g(seed0);
  unsigned failures = 0;
  for (unsigned n = 0; n < cases && failures < 5; ++n) {
    const Case c = make_case(g, kind);
    const uint32_t seed = seed0 * 7919 + n;
    const Outcome a = run_case(interp, c, seed);
    const Outcome b = run_case(jit, c, seed);
    bool same = a.result.reason == b.result.reason && a.retired == b.retired && a.state.rip == b.state.rip &&
                a.state.rflags == b.state.rflags && a.state.cr2 == b.state.cr2;
    for (unsigned r = 0; r < 8; ++r) same = same && a.state.gpr[r] == b.state.gpr[r];
    same = same && std::memcmp(interp.ram.data(), jit.ram.data(), kRam) == 0;
    if (!same) {
      ++failures;
      std::string regs;
      for (unsigned r = 0; r < 8; ++r) regs += fmt::format(" {:08x}/{:08x}", a.state.gpr[r], b.state.gpr[r]);
      ADD_FAILURE() << "case " << n << ": " << describe(c) << "\n  interp/jit: reason "
                    << static_cast<int>(a.result.reason) << "/" << static_cast<int>(b.result.reason) << " ("
                    << a.result.detail << " / " << b.result.detail << "), retired " << a.retired << "/" << b.retired
                    << ", eip " << fmt::format("{:x}/{:x}", a.state.rip, b.state.rip) << ", flags "
                    << fmt::format("{:x}/{:x}", a.state.rflags, b.state.rflags) << ", cr2 "
                    << fmt::format("{:x}/{:x}", a.state.cr2, b.state.cr2) << ", regs" << regs;
    }
  }
  // The JIT did compile (and the cases ran its code, not the interpreter).
  EXPECT_GT(jit.engine->counters().blocks_compiled, 0u);
}

TEST(EmuJit, AluFormsMatchTheInterpreter) { differential(Kind::kAlu, 3000, 1); }
TEST(EmuJit, TestFormsMatchTheInterpreter) { differential(Kind::kTest, 1000, 2); }
TEST(EmuJit, MovFormsMatchTheInterpreter) { differential(Kind::kMov, 2000, 3); }
TEST(EmuJit, LeaMatchesTheInterpreter) { differential(Kind::kLea, 500, 4); }
TEST(EmuJit, MovzxMovsxMatchTheInterpreter) { differential(Kind::kMovx, 1000, 5); }
TEST(EmuJit, IncDecMatchTheInterpreter) { differential(Kind::kIncDec, 1000, 6); }
TEST(EmuJit, PushPopMatchTheInterpreter) { differential(Kind::kPushPop, 1000, 7); }
TEST(EmuJit, CallMatchesTheInterpreter) { differential(Kind::kCall, 500, 8); }
TEST(EmuJit, RetMatchesTheInterpreter) { differential(Kind::kRet, 500, 9); }
TEST(EmuJit, JmpMatchesTheInterpreter) { differential(Kind::kJmp, 300, 10); }
TEST(EmuJit, JccAfterEveryProducerMatchesTheInterpreter) { differential(Kind::kJcc, 1000, 11); }
TEST(EmuJit, ShiftsAndRotatesMatchTheInterpreter) { differential(Kind::kShift, 3000, 12); }
TEST(EmuJit, SetccAndCmovccMatchTheInterpreter) { differential(Kind::kSetCmov, 2000, 13); }

TEST(EmuJit, ParseSetting) {
  EXPECT_EQ(*parse_emulator_jit("off"), EmulatorJit::kOff);
  EXPECT_EQ(*parse_emulator_jit("on"), EmulatorJit::kOn);
  EXPECT_EQ(*parse_emulator_jit("always"), EmulatorJit::kAlways);
  EXPECT_FALSE(parse_emulator_jit("yes"));
}

/// A loop that runs long enough to be compiled at the default threshold,
/// with a tiny code buffer so that it fills and flushes repeatedly; the
/// result and the instruction count equal the interpreter's.
TEST(EmuJit, SmallCodeBufferFlushesAndStaysExact) {
  NoJitEnv no_env;
  // 200 blocks in different pages, each: add eax, ecx; inc ecx; jmp next;
  // the last decrements edx and loops back while edx != 0, then hlt.
  constexpr unsigned kBlocks = 200;
  auto build = [&](EmuMachine& m) {
    for (unsigned k = 0; k < kBlocks; ++k) {
      const uint32_t at = 0x100000 + k * 0x1000;
      Emitter b;
      b.u8(0x01);
      b.u8(0xC8);  // add eax, ecx
      b.u8(0x41);  // inc ecx
      if (k + 1 < kBlocks) {
        b.u8(0xE9);
        b.u32(0x1000 - 8);  // jmp next page start
      } else {
        b.u8(0x4A);  // dec edx
        b.u8(0x0F);
        b.u8(0x85);
        b.u32(static_cast<uint32_t>(0x100000 - (at + 10)));  // jnz first
        b.u8(0xF4);
      }
      m.load(at, b.b);
    }
    CpuState s = m.flat32(0x100000);
    s.gpr[2] = 300;
    EXPECT_TRUE(m.engine->set_state(s));
  };
  EmulatorOptions small = options(EmulatorJit::kOn);
  small.jit_threshold = 2;
  small.jit_cache_bytes = 64 << 10;  // the minimum: flushes while the loop runs
  EmuMachine a(kRam, options(EmulatorJit::kOff)), b(kRam, small);
  build(a);
  build(b);
  const RunResult ra = a.run(), rb = b.run();
  EXPECT_EQ(ra.reason, StopReason::kHalt);
  EXPECT_EQ(rb.reason, StopReason::kHalt);
  EXPECT_EQ(a.engine->instructions_retired(), b.engine->instructions_retired());
  EXPECT_EQ(a.engine->state()->gpr[0], b.engine->state()->gpr[0]);
  EXPECT_EQ(a.engine->state()->gpr[1], b.engine->state()->gpr[1]);
  const EmulatorCounters cb = b.engine->counters();
  EXPECT_GT(cb.blocks_compiled, kBlocks);
  EXPECT_GT(cb.jit_flushes, 0u);
}

/// Self-modifying code: a compiled loop stores into its own block; the
/// next iteration runs the new instruction.
TEST(EmuJit, SelfModifyingCodeInvalidatesCompiledBlocks) {
  NoJitEnv no_env;
  for (EmulatorJit mode : {EmulatorJit::kOff, EmulatorJit::kAlways}) {
    EmuMachine m(kRam, options(mode));
    // 0x1000: mov byte [0x1008], 0x41 ... patch "inc ecx" (0x41) over "inc eax" (0x40) at 0x1008
    //  c6 05 08 10 00 00 41    mov byte [0x1008], 0x41   (7 bytes, 0x1000..0x1006)
    //  90                      nop                        (0x1007)
    //  40                      inc eax                    (0x1008)
    //  4a                      dec edx
    //  75 f4                   jnz 0x1000
    //  f4                      hlt
    m.load(0x1000, {0xC6, 0x05, 0x08, 0x10, 0x00, 0x00, 0x41, 0x90, 0x40, 0x4A, 0x75, 0xF4, 0xF4});
    CpuState s = m.flat32(0x1000);
    s.gpr[2] = 5;
    ASSERT_TRUE(m.engine->set_state(s));
    EXPECT_EQ(m.run().reason, StopReason::kHalt);
    auto st = m.engine->state();
    ASSERT_TRUE(st);
    // The first store lands in the running block: the interpreter stops the
    // block after it, so the first iteration already runs "inc ecx".
    EXPECT_EQ(st->gpr[0], 0u) << (mode == EmulatorJit::kOff ? "interpreter" : "jit");
    EXPECT_EQ(st->gpr[1], 5u) << (mode == EmulatorJit::kOff ? "interpreter" : "jit");
  }
}

/// kick() from another thread stops a compiled loop that never leaves its
/// block chain (the exit checks Cpu::exit_request), with the instruction
/// count exact: the loop body is 3 instructions, entered at its start.
TEST(EmuJit, AKickStopsACompiledLoop) {
  NoJitEnv no_env;
  EmulatorOptions o = options(EmulatorJit::kAlways);
  o.slice_instructions = uint64_t{1} << 40;  // only the kick ends run()
  EmuMachine m(kRam, o);
  // 0x1000: inc eax; add ebx, eax; jmp 0x1000
  m.load(0x1000, {0x40, 0x01, 0xC3, 0xEB, 0xFB});
  ASSERT_TRUE(m.engine->set_state(m.flat32(0x1000)));
  std::thread kicker([&m] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    m.engine->kick();
  });
  const RunResult r = m.engine->run();
  kicker.join();
  EXPECT_EQ(r.reason, StopReason::kKicked);
  auto s = m.engine->state();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->rip, 0x1000u);  // between blocks
  const uint64_t n = m.engine->instructions_retired();
  EXPECT_GT(n, 1000u);
  EXPECT_EQ(n % 3, 0u);
  EXPECT_EQ(s->gpr[kRax], n / 3);
  EXPECT_GT(m.engine->counters().blocks_compiled, 0u);
}

/// TWOOSTWO_EMU_JIT_PERFMAP=1 describes compiled blocks in
/// /tmp/perf-<pid>.map: the regions of the block at 0x1000.
TEST(EmuJit, PerfMapNamesTheRegionsOfABlock) {
  NoJitEnv no_env;
  const std::string path = fmt::format("/tmp/perf-{}.map", ::getpid());
  std::remove(path.c_str());
  ::setenv("TWOOSTWO_EMU_JIT_PERFMAP", "1", 1);
  {
    EmuMachine m(kRam, options(EmulatorJit::kAlways));
    ::unsetenv("TWOOSTWO_EMU_JIT_PERFMAP");
    // 0x1000: inc eax; dec edx; jnz 0x1000; hlt
    m.load(0x1000, {0x40, 0x4A, 0x75, 0xFC, 0xF4});
    CpuState s = m.flat32(0x1000);
    s.gpr[2] = 3;
    ASSERT_TRUE(m.engine->set_state(s));
    EXPECT_EQ(m.run().reason, StopReason::kHalt);
  }
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::remove(path.c_str());
  for (const char* region : {"entry", "body", "exit", "jc"}) {
    EXPECT_NE(text.find(fmt::format(" jit.{}@00001000\n", region)), std::string::npos) << region << " in:\n" << text;
  }
}

/// Block transitions (emuguests/jit.S): each snippet runs interpreted and
/// compiled (threshold 0, so its first runs already link and push on the
/// return-address stack); the registers, EIP and instructions retired must
/// be identical, and the registers what the snippet computes.
class EmuJitTransitions : public ::testing::Test {
 protected:
  struct Result {
    CpuState state;
    uint64_t retired = 0;
  };
  /// `paging`: identity paging of the first 4 MiB (write_page_tables).
  Result run(EmulatorJit mode, const std::string& label, bool paging,
             const std::function<void(EmuMachine&, CpuState&)>& setup = {}) {
    EmuMachine m(kRam, options(mode));
    const Program p = load_program("jit");
    m.load(0x100000, p.bytes);
    CpuState s = m.flat32(p.sym(label), &p);
    if (paging) {
      write_page_tables(m.ram);
      s.cr0 = 0x80010011;  // PG WP ET PE
      s.cr3 = kPageDir;
    }
    if (setup) setup(m, s);
    EXPECT_TRUE(m.engine->set_state(s));
    const RunResult r = m.run();
    EXPECT_EQ(r.reason, StopReason::kHalt) << r.detail;
    Result out;
    auto st = m.engine->state();
    EXPECT_TRUE(st);
    if (st) out.state = *st;
    out.retired = m.engine->instructions_retired();
    if (mode != EmulatorJit::kOff) {
      EXPECT_GT(m.engine->counters().blocks_compiled, 0u);
    }
    return out;
  }
  /// Both engines; returns the JIT's result after comparing it with the interpreter's.
  Result both(const std::string& label, bool paging = false,
              const std::function<void(EmuMachine&, CpuState&)>& setup = {}) {
    NoJitEnv no_env;
    const Result a = run(EmulatorJit::kOff, label, paging, setup);
    const Result b = run(EmulatorJit::kAlways, label, paging, setup);
    EXPECT_EQ(a.retired, b.retired);
    EXPECT_EQ(a.state.rip, b.state.rip);
    for (unsigned r = 0; r < 8; ++r) EXPECT_EQ(a.state.gpr[r], b.state.gpr[r]) << "register " << r;
    return b;
  }
  /// both() with paging, where ESI points at the PTE of page `page_sym` and
  /// EDX holds a PTE (present, writable) of `copy_sym`: a copy of that page
  /// whose byte at `patch_sym`'s offset is INC ECX. The snippet remaps the
  /// page to its copy with these.
  Result both_remapped(const std::string& label, const std::string& page_sym, const std::string& copy_sym,
                       const std::string& patch_sym) {
    const Program p = load_program("jit");
    const uint32_t page = p.sym(page_sym), copy = p.sym(copy_sym);
    EXPECT_EQ(page & 0xFFFu, 0u);
    EXPECT_EQ(copy & 0xFFFu, 0u);
    return both(label, true, [&](EmuMachine& m, CpuState& s) {
      std::memcpy(m.ram.data() + copy, m.ram.data() + page, 0x1000);
      m.ram.data()[copy + (p.sym(patch_sym) - page)] = 0x41;  // INC ECX
      s.gpr[kRsi] = kPageTable + 4 * (page >> 12);
      s.gpr[kRdx] = copy | 3;
    });
  }
};

TEST_F(EmuJitTransitions, DeepRecursionWrapsTheReturnAddressStack) {
  const Result r = both("t_ras_calls");
  EXPECT_EQ(r.state.gpr[kRax], 50u * (40u * 41u / 2u));
  EXPECT_EQ(r.state.gpr[kRbx], 50u * 40u);
}

TEST_F(EmuJitTransitions, ARetToAnotherAddressIgnoresTheReturnAddressStack) {
  const Result r = both("t_ras_fake_return");
  EXPECT_EQ(r.state.gpr[kRax], 0u);
  EXPECT_EQ(r.state.gpr[kRcx], 20u);
}

TEST_F(EmuJitTransitions, ARetAfterTheCalleeRewroteTheReturnSiteRunsTheNewCode) {
  const Result r = both("t_ras_smc");
  EXPECT_EQ(r.state.gpr[kRax], 5u);
  EXPECT_EQ(r.state.gpr[kRcx], 5u);
}

TEST_F(EmuJitTransitions, ARetAfterTheCalleeRemappedTheReturnSiteRunsTheNewPage) {
  const Result r = both_remapped("t_ras_remap", "t_ras_remap", "remap_copy", "remap_target");
  EXPECT_EQ(r.state.gpr[kRax], 5u);
  EXPECT_EQ(r.state.gpr[kRcx], 5u);
}

TEST_F(EmuJitTransitions, ACrossPageLinkToRewrittenCodeRunsTheNewCode) {
  const Result r = both("t_xlink_smc");
  EXPECT_EQ(r.state.gpr[kRax], 5u);
  EXPECT_EQ(r.state.gpr[kRcx], 5u);
}

TEST_F(EmuJitTransitions, ACrossPageLinkToARemappedPageRunsTheNewPage) {
  const Result r = both_remapped("t_xlink_remap", "xremap_page", "xremap_copy", "xremap_page");
  EXPECT_EQ(r.state.gpr[kRax], 5u);
  EXPECT_EQ(r.state.gpr[kRcx], 5u);
}

/// Single-step (TF) into compiled blocks: the loop runs a block's first
/// instruction through the Block's handler, which the JIT has replaced
/// (Jit::enter_compiled); it must run that one instruction only.
TEST_F(EmuJitTransitions, SingleStepThroughCompiledBlocksTrapsEveryInstruction) {
  const Result r = both("t_single_step");
  EXPECT_EQ(r.state.gpr[kRax], 23u);
  EXPECT_GT(r.state.gpr[kRbp], 9u);
  EXPECT_LT(r.state.gpr[kRbp], 0x100u);
}

/// A POPF that sets TF ends its block (Cpu::write_eflags): the next
/// instruction traps, not the end of the block, and compiled exits, which
/// do not test TF, never see it set.
TEST_F(EmuJitTransitions, APopfThatSetsTfTrapsAfterTheNextInstruction) {
  const Result r = both("t_popf_tf");
  EXPECT_EQ(r.state.gpr[kRax], 3u);
  EXPECT_EQ(r.state.gpr[kRbp], 6u);  // after each INC, PUSHF, AND and the POPF that clears TF
}

TEST_F(EmuJitTransitions, ABlockCompiledWithAFlatSegmentChecksTheLimitOnceItIsNot) {
  const Result r = both("t_flat_then_not");
  EXPECT_EQ(r.state.gpr[kRbp], 0x100u + 13u);  // #GP on the last read
  EXPECT_EQ(r.state.gpr[kRbx], 3u);            // three reads completed
}

TEST_F(EmuJitTransitions, ASegmentLoadThatIsNotFlatEndsTheBlock) {
  const Result r = both("t_flat_load_in_block");
  EXPECT_EQ(r.state.gpr[kRbp], 0x100u + 13u);  // #GP on the read
  EXPECT_EQ(r.state.gpr[kRbx], 0u);
}

}  // namespace
}  // namespace twoostwo::vmcore::emutest
