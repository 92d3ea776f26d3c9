// Individual instructions on the emulator engine: the snippets of
// emuguests/insn.S, entered one at a time in flat 32-bit protected mode
// (emu_harness.h). Expected values follow the Intel SDM vol. 2 page of each
// instruction.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "tests/vmcore/emu_harness.h"

namespace twoostwo::vmcore::emutest {
namespace {

constexpr uint32_t kSrc = 0x20000, kDst = 0x30000;

class EmuInsn : public ::testing::Test {
 protected:
  void SetUp() override {
    prog_ = load_program("insn");
    ASSERT_FALSE(prog_.bytes.empty());
    ASSERT_NE(m_.engine, nullptr);
    m_.load(0x10000, prog_.bytes);
  }

  // Enter `label` with `setup` applied to the entry state; run to HLT.
  CpuState run(const std::string& label, const std::function<void(CpuState&)>& setup = {}) {
    CpuState s = m_.flat32(prog_.sym(label), &prog_);
    if (setup) setup(s);
    EXPECT_TRUE(m_.engine->set_state(s));
    m_.ram.put32(prog_.sym("exc_vector"), 0xFFFFFFFF);
    const RunResult r = m_.run();
    EXPECT_EQ(r.reason, StopReason::kHalt) << r.detail;
    auto st = m_.engine->state();
    EXPECT_TRUE(st);
    return st ? *st : CpuState{};
  }
  uint32_t exc_vector() const { return m_.ram.u32(prog_.sym("exc_vector")); }
  uint32_t exc_esp() const { return m_.ram.u32(prog_.sym("exc_esp")); }
  // The frame the CPU pushed for an exception without privilege change:
  // [error code,] EIP, CS, EFLAGS.
  uint32_t frame(unsigned k) const { return m_.ram.u32(exc_esp() + 4 * k); }

  Program prog_;
  EmuMachine m_;
};

// --- string instructions ---------------------------------------------------------

TEST_F(EmuInsn, RepMovsbCopiesForwardAndUpdatesRegisters) {
  for (unsigned k = 0; k < 5000; ++k) m_.ram.data()[kSrc + k] = static_cast<uint8_t>(k * 7);
  const CpuState s = run("t_rep_movsb", [](CpuState& e) {
    e.gpr[kRsi] = kSrc;
    e.gpr[kRdi] = kDst + 3;
    e.gpr[kRcx] = 5000;  // crosses pages on both sides
  });
  EXPECT_EQ(0, std::memcmp(m_.ram.data() + kSrc, m_.ram.data() + kDst + 3, 5000));
  EXPECT_EQ(s.gpr[kRcx], 0u);
  EXPECT_EQ(s.gpr[kRsi], kSrc + 5000);
  EXPECT_EQ(s.gpr[kRdi], kDst + 3 + 5000);
}

TEST_F(EmuInsn, RepMovsbOverlappingForwardCopyRepeatsThePattern) {
  // DI = SI + 1: each byte copies the one just written (SDM: byte by byte).
  m_.ram.data()[kSrc] = 0xAB;
  run("t_rep_movsb", [](CpuState& e) {
    e.gpr[kRsi] = kSrc;
    e.gpr[kRdi] = kSrc + 1;
    e.gpr[kRcx] = 100;
  });
  for (unsigned k = 0; k <= 100; ++k) ASSERT_EQ(m_.ram.data()[kSrc + k], 0xAB) << k;
}

TEST_F(EmuInsn, RepMovswAndMovsd) {
  for (unsigned k = 0; k < 64; ++k) m_.ram.data()[kSrc + k] = static_cast<uint8_t>(k);
  CpuState s = run("t_rep_movsw", [](CpuState& e) {
    e.gpr[kRsi] = kSrc;
    e.gpr[kRdi] = kDst;
    e.gpr[kRcx] = 8;
  });
  EXPECT_EQ(0, std::memcmp(m_.ram.data() + kSrc, m_.ram.data() + kDst, 16));
  EXPECT_EQ(m_.ram.data()[kDst + 16], 0);
  EXPECT_EQ(s.gpr[kRsi], kSrc + 16);
  s = run("t_rep_movsd", [](CpuState& e) {
    e.gpr[kRsi] = kSrc;
    e.gpr[kRdi] = kDst + 0x100;
    e.gpr[kRcx] = 16;
  });
  EXPECT_EQ(0, std::memcmp(m_.ram.data() + kSrc, m_.ram.data() + kDst + 0x100, 64));
  EXPECT_EQ(s.gpr[kRdi], kDst + 0x100 + 64);
}

TEST_F(EmuInsn, StdRepMovsdCopiesBackward) {
  for (unsigned k = 0; k < 16; ++k) m_.ram.put32(kSrc + 4 * k, 0x1000 + k);
  const CpuState s = run("t_std_rep_movsd", [](CpuState& e) {
    e.gpr[kRsi] = kSrc + 60;  // last dword
    e.gpr[kRdi] = kDst + 60;
    e.gpr[kRcx] = 16;
  });
  for (unsigned k = 0; k < 16; ++k) EXPECT_EQ(m_.ram.u32(kDst + 4 * k), 0x1000 + k);
  EXPECT_EQ(s.gpr[kRsi], kSrc - 4);
  EXPECT_EQ(s.gpr[kRdi], kDst - 4);
  EXPECT_EQ(s.rflags & 0x400, 0u);  // CLD after the copy
}

TEST_F(EmuInsn, RepStos) {
  CpuState s = run("t_rep_stosb", [](CpuState& e) {
    e.gpr[kRax] = 0x5A;
    e.gpr[kRdi] = kDst + 1;
    e.gpr[kRcx] = 9000;
  });
  for (unsigned k = 0; k < 9000; ++k) ASSERT_EQ(m_.ram.data()[kDst + 1 + k], 0x5A) << k;
  EXPECT_EQ(m_.ram.data()[kDst], 0);
  EXPECT_EQ(m_.ram.data()[kDst + 9001], 0);
  EXPECT_EQ(s.gpr[kRdi], kDst + 9001);
  s = run("t_rep_stosd", [](CpuState& e) {
    e.gpr[kRax] = 0xDEADBEEF;
    e.gpr[kRdi] = kDst + 0x4000;
    e.gpr[kRcx] = 3;
  });
  EXPECT_EQ(m_.ram.u32(kDst + 0x4000), 0xDEADBEEFu);
  EXPECT_EQ(m_.ram.u32(kDst + 0x4008), 0xDEADBEEFu);
  EXPECT_EQ(m_.ram.u32(kDst + 0x400C), 0u);
  s = run("t_std_rep_stosw", [](CpuState& e) {
    e.gpr[kRax] = 0x1234;
    e.gpr[kRdi] = kDst + 0x5004;
    e.gpr[kRcx] = 3;
  });
  EXPECT_EQ(m_.ram.u16(kDst + 0x5004), 0x1234);
  EXPECT_EQ(m_.ram.u16(kDst + 0x5000), 0x1234);
  EXPECT_EQ(m_.ram.u16(kDst + 0x5006), 0);
  EXPECT_EQ(m_.ram.u16(kDst + 0x4FFE), 0);
  EXPECT_EQ(s.gpr[kRdi], kDst + 0x4FFE);
}

TEST_F(EmuInsn, RepeCmpsbStopsAtTheFirstDifference) {
  std::memcpy(m_.ram.data() + kSrc, "abcdefgh", 8);
  std::memcpy(m_.ram.data() + kDst, "abcdXfgh", 8);
  const CpuState s = run("t_repe_cmpsb", [](CpuState& e) {
    e.gpr[kRsi] = kSrc;
    e.gpr[kRdi] = kDst;
    e.gpr[kRcx] = 8;
  });
  EXPECT_EQ(s.gpr[kRcx], 3u);  // 5 compared, the 5th differed
  EXPECT_EQ(s.gpr[kRsi], kSrc + 5);
  EXPECT_EQ(s.gpr[kRdi], kDst + 5);
  EXPECT_EQ(s.rflags & 0x40, 0u);  // ZF = 0
  EXPECT_EQ(s.rflags & 0x1, 0u);   // 'e' > 'X': no borrow
}

TEST_F(EmuInsn, RepneScasbFindsTheByte) {
  std::memcpy(m_.ram.data() + kDst, "hello, world", 12);
  const CpuState s = run("t_repne_scasb", [](CpuState& e) {
    e.gpr[kRax] = ',';
    e.gpr[kRdi] = kDst;
    e.gpr[kRcx] = 100;
  });
  EXPECT_EQ(s.gpr[kRdi], kDst + 6);  // one past the comma
  EXPECT_EQ(s.gpr[kRcx], 94u);
  EXPECT_NE(s.rflags & 0x40, 0u);  // ZF = 1: found
}

TEST_F(EmuInsn, AddressSize16RepMovsbWrapsSiAndDi) {
  // With a 16-bit address size only SI/DI/CX are used and they wrap at 64 KiB.
  m_.ram.data()[0xFFFF] = 0x11;
  m_.ram.data()[0x0000] = 0x22;
  const CpuState s = run("t_a16_rep_movsb", [](CpuState& e) {
    e.gpr[kRsi] = 0xABCDFFFF;
    e.gpr[kRdi] = 0x00025000;  // DI = 0x5000
    e.gpr[kRcx] = 0x12340002;
  });
  EXPECT_EQ(m_.ram.data()[0x5000], 0x11);
  EXPECT_EQ(m_.ram.data()[0x5001], 0x22);
  EXPECT_EQ(s.gpr[kRsi], 0xABCD0001u);
  EXPECT_EQ(s.gpr[kRdi], 0x00025002u);
  EXPECT_EQ(s.gpr[kRcx], 0x12340000u);
}

TEST_F(EmuInsn, LodsAndSegmentOverrides) {
  m_.ram.put32(kSrc, 0xCAFEF00D);
  CpuState s = run("t_lodsd", [](CpuState& e) { e.gpr[kRsi] = kSrc; });
  EXPECT_EQ(s.gpr[kRax], 0xCAFEF00Du);
  EXPECT_EQ(s.gpr[kRsi], kSrc + 4);
  // FS with base 0x1000 (GDT entry 0x48 written here): FS: REP MOVSB reads FS-relative.
  m_.ram.put64(kGdt + 0x48, descriptor(0x1000, 0xFFFFF, 0x92, 0xC));
  std::memcpy(m_.ram.data() + kSrc + 0x1000, "FSFS", 4);
  s = run("t_rep_movsb_fs", [](CpuState& e) {
    e.gdt.limit = 0x4F;
    e.gpr[kRax] = 0x48;
    e.gpr[kRsi] = kSrc;
    e.gpr[kRdi] = kDst;
    e.gpr[kRcx] = 4;
  });
  EXPECT_EQ(0, std::memcmp(m_.ram.data() + kDst, "FSFS", 4));
}

TEST_F(EmuInsn, RepInsAndOuts) {
  CpuState s = run("t_rep_insb", [](CpuState& e) {
    e.gpr[kRdi] = kDst;
    e.gpr[kRcx] = 10;
  });
  for (unsigned k = 0; k < 10; ++k) EXPECT_EQ(m_.ram.data()[kDst + k], PatternPort::byte_at(k));
  EXPECT_EQ(s.gpr[kRdi], kDst + 10);
  s = run("t_rep_insw", [](CpuState& e) {
    e.gpr[kRdi] = kDst + 0x100;
    e.gpr[kRcx] = 4;
  });
  for (unsigned k = 0; k < 4; ++k) EXPECT_EQ(m_.ram.u16(kDst + 0x100 + 2 * k), PatternPort::word_at(k));
  std::memcpy(m_.ram.data() + kSrc, "out!", 4);
  run("t_rep_outsb", [](CpuState& e) {
    e.gpr[kRsi] = kSrc;
    e.gpr[kRcx] = 4;
  });
  EXPECT_EQ(m_.uart.output, "out!");
}

TEST_F(EmuInsn, RepInsAndOutsTakeTheDeviceLockOncePerRunOfElements) {
  // 600 bytes out, 300 in: the lock is taken once per run of up to 256
  // elements (ops_string.cpp PortRun), and let go before the next
  // instruction (the final HLT): taken and released as often.
  std::string text(600, ' ');
  for (unsigned k = 0; k < text.size(); ++k) text[k] = static_cast<char>('a' + k % 26);
  std::memcpy(m_.ram.data() + kSrc, text.data(), text.size());
  unsigned locks = m_.locks;
  run("t_rep_outsb", [&](CpuState& e) {
    e.gpr[kRsi] = kSrc;
    e.gpr[kRcx] = static_cast<uint32_t>(text.size());
  });
  EXPECT_EQ(m_.uart.output, text);
  EXPECT_EQ(m_.locks - locks, 3u);
  EXPECT_EQ(m_.locks, m_.unlocks);
  locks = m_.locks;
  const unsigned before = m_.pattern.bytes_read;
  run("t_rep_insb", [](CpuState& e) {
    e.gpr[kRdi] = kDst;
    e.gpr[kRcx] = 300;
  });
  for (unsigned k = 0; k < 300; ++k) ASSERT_EQ(m_.ram.data()[kDst + k], PatternPort::byte_at(before + k)) << k;
  EXPECT_EQ(m_.locks - locks, 2u);
  EXPECT_EQ(m_.locks, m_.unlocks);
}

TEST_F(EmuInsn, LongRepStosIsRestartedBetweenChunks) {
  // 1 MiB with a small slice: run() returns kKicked in between and the
  // instruction resumes where it stopped.
  EmuMachine small(4 << 20, EmulatorOptions{.slice_instructions = 1});
  small.load(0x10000, prog_.bytes);
  CpuState s = small.flat32(prog_.sym("t_rep_stosd"), &prog_);
  s.gpr[kRax] = 0x01020304;
  s.gpr[kRdi] = 0x100000;
  s.gpr[kRcx] = 0x40000;
  ASSERT_TRUE(small.engine->set_state(s));
  unsigned kicks = 0;
  RunResult r;
  do {
    r = small.engine->run();
    kicks += r.reason == StopReason::kKicked;
  } while (r.reason == StopReason::kKicked && kicks < 1000);
  EXPECT_EQ(r.reason, StopReason::kHalt);
  EXPECT_GT(kicks, 1u);
  EXPECT_EQ(small.ram.u32(0x100000), 0x01020304u);
  EXPECT_EQ(small.ram.u32(0x1FFFFC), 0x01020304u);
  EXPECT_EQ(small.ram.u32(0x200000), 0u);
}

// --- data movement and stack ---------------------------------------------------------

TEST_F(EmuInsn, Xlat) {
  m_.ram.data()[kSrc + 0x42] = 0x99;
  const CpuState s = run("t_xlat", [](CpuState& e) {
    e.gpr[kRbx] = kSrc;
    e.gpr[kRax] = 0x12345642;
  });
  EXPECT_EQ(s.gpr[kRax], 0x12345699u);
}

TEST_F(EmuInsn, EnterWithNestingLevelAndLeave) {
  // ENTER 16, 3 (SDM "ENTER"): push EBP; frame = ESP; copy 2 outer frame
  // pointers from [EBP-4], [EBP-8]; push frame; EBP = frame; ESP -= 16.
  m_.ram.put32(0x8000 - 4, 0xAAAA0001);
  m_.ram.put32(0x8000 - 8, 0xAAAA0002);
  CpuState s = run("t_enter", [](CpuState& e) {
    e.gpr[kRbp] = 0x8000;
    e.gpr[kRsp] = 0x9000;
  });
  EXPECT_EQ(s.gpr[kRbp], 0x9000u - 4);
  EXPECT_EQ(m_.ram.u32(0x9000 - 4), 0x8000u);       // old EBP
  EXPECT_EQ(m_.ram.u32(0x9000 - 8), 0xAAAA0001u);   // [old EBP - 4]
  EXPECT_EQ(m_.ram.u32(0x9000 - 12), 0xAAAA0002u);  // [old EBP - 8]
  EXPECT_EQ(m_.ram.u32(0x9000 - 16), 0x9000u - 4);  // the new frame pointer
  EXPECT_EQ(s.gpr[kRsp], 0x9000u - 16 - 16);
  s = run("t_leave", [&](CpuState& st) {
    st.gpr[kRbp] = 0x9000 - 4;
    st.gpr[kRsp] = 0x9000 - 32;
  });
  EXPECT_EQ(s.gpr[kRbp], 0x8000u);
  EXPECT_EQ(s.gpr[kRsp], 0x9000u);
}

TEST_F(EmuInsn, PushaPopaAndPushEsp) {
  CpuState s = run("t_pusha", [](CpuState& e) {
    for (unsigned r = 0; r < 8; ++r) e.gpr[r] = 0x100 + r;
    e.gpr[kRsp] = 0x9000;
  });
  EXPECT_EQ(s.gpr[kRsp], 0x9000u - 32);
  EXPECT_EQ(m_.ram.u32(0x9000 - 4), 0x100u);     // EAX first
  EXPECT_EQ(m_.ram.u32(0x9000 - 20), 0x9000u);   // the original ESP
  EXPECT_EQ(m_.ram.u32(0x9000 - 32), 0x107u);    // EDI last
  s = run("t_popa", [](CpuState& e) { e.gpr[kRsp] = 0x9000 - 32; });
  for (unsigned r = 0; r < 8; ++r) {
    if (r != kRsp) {
      EXPECT_EQ(s.gpr[r], 0x100u + r) << r;
    }
  }
  EXPECT_EQ(s.gpr[kRsp], 0x9000u);
  s = run("t_push_esp", [](CpuState& e) { e.gpr[kRsp] = 0x9000; });
  EXPECT_EQ(s.gpr[kRax], 0x9000u);  // PUSH ESP pushes the value before the push
}

TEST_F(EmuInsn, PopToEspRelativeMemoryUsesTheIncrementedEsp) {
  m_.ram.put32(0x9000, 0x55667788);
  const CpuState s = run("t_pop_mem_esp", [](CpuState& e) { e.gpr[kRsp] = 0x9000; });
  EXPECT_EQ(s.gpr[kRsp], 0x9004u);
  EXPECT_EQ(m_.ram.u32(0x9008), 0x55667788u);  // [ESP(after) + 4]
}

TEST_F(EmuInsn, CompareExchangeFamily) {
  m_.ram.put64(kSrc, 0x1111222233334444ull);
  CpuState s = run("t_cmpxchg8b", [](CpuState& e) {
    e.gpr[kRsi] = kSrc;
    e.gpr[kRax] = 0x33334444;
    e.gpr[kRdx] = 0x11112222;
    e.gpr[kRbx] = 0xBBBBBBBB;
    e.gpr[kRcx] = 0xCCCCCCCC;
  });
  EXPECT_EQ(m_.ram.u32(kSrc), 0xBBBBBBBBu);
  EXPECT_EQ(m_.ram.u32(kSrc + 4), 0xCCCCCCCCu);
  EXPECT_NE(s.rflags & 0x40, 0u);
  s = run("t_cmpxchg8b", [](CpuState& e) {
    e.gpr[kRsi] = kSrc;
    e.gpr[kRax] = 1;
    e.gpr[kRdx] = 2;
  });
  EXPECT_EQ(s.gpr[kRax], 0xBBBBBBBBu);
  EXPECT_EQ(s.gpr[kRdx], 0xCCCCCCCCu);
  EXPECT_EQ(s.rflags & 0x40, 0u);

  m_.ram.put32(kSrc, 7);
  s = run("t_cmpxchg", [](CpuState& e) {
    e.gpr[kRsi] = kSrc;
    e.gpr[kRax] = 7;
    e.gpr[kRcx] = 9;
  });
  EXPECT_EQ(m_.ram.u32(kSrc), 9u);
  s = run("t_cmpxchg", [](CpuState& e) {
    e.gpr[kRsi] = kSrc;
    e.gpr[kRax] = 7;
    e.gpr[kRcx] = 11;
  });
  EXPECT_EQ(m_.ram.u32(kSrc), 9u);
  EXPECT_EQ(s.gpr[kRax], 9u);

  m_.ram.put32(kSrc, 40);
  s = run("t_xadd", [](CpuState& e) {
    e.gpr[kRsi] = kSrc;
    e.gpr[kRcx] = 2;
  });
  EXPECT_EQ(m_.ram.u32(kSrc), 42u);
  EXPECT_EQ(s.gpr[kRcx], 40u);
}

TEST_F(EmuInsn, SmallOnes) {
  CpuState s = run("t_bswap", [](CpuState& e) { e.gpr[kRax] = 0x11223344; });
  EXPECT_EQ(s.gpr[kRax], 0x44332211u);
  s = run("t_movzx_movsx", [](CpuState& e) { e.gpr[kRax] = 0x1234F08F; });
  EXPECT_EQ(s.gpr[kRbx], 0x8Fu);
  EXPECT_EQ(s.gpr[kRcx], 0xFFFFFF8Fu);
  EXPECT_EQ(s.gpr[kRdx], 0xF08Fu);
  EXPECT_EQ(s.gpr[kRsi], 0xFFFFF08Fu);
  s = run("t_setcc_cmov", [](CpuState& e) {
    e.gpr[kRax] = 0xFFFFFFFF;  // -1 vs 1: below? no (unsigned); less? yes (signed)
    e.gpr[kRbx] = 1;
    e.gpr[kRdx] = 0x77;
    e.gpr[kRsi] = 0x88;
  });
  EXPECT_EQ(s.gpr[kRcx] & 0xFFFF, 0x0100u);  // CL = setb = 0, CH = setl = 1
  EXPECT_EQ(s.gpr[kRdx], 0x77u);             // cmovb not taken
  EXPECT_EQ(s.gpr[kRsi], 0x88u);             // cmovg not taken (-1 < 1)
  s = run("t_lahf_sahf", [](CpuState& e) { e.rflags = 0x2 | 0x1 | 0x40; });
  EXPECT_EQ(s.gpr[kRbx] & 0xFF, 0x43u);  // LAHF: SF ZF 0 AF 0 PF 1 CF
  EXPECT_EQ(s.rflags & 0xFF, 0xD7u);     // SAHF 0xd5 (+ the fixed bit 1)
  s = run("t_cbw_cwde_cwd_cdq");
  EXPECT_EQ(s.gpr[kRbx] & 0xFFFF, 0xFF80u);
  EXPECT_EQ(s.gpr[kRcx], 0xFFFFFF80u);
  EXPECT_EQ(s.gpr[kRdx], 0xFFFFFFFFu);
  s = run("t_loop", [](CpuState& e) { e.gpr[kRcx] = 10; });
  EXPECT_EQ(s.gpr[kRax], 55u);
  EXPECT_EQ(s.gpr[kRcx], 0u);
}

TEST_F(EmuInsn, StoreIntoTheSameBlockIsSeen) {
  const CpuState s = run("t_smc_block");
  EXPECT_EQ(s.gpr[kRbx], 0x11111122u);
}

// --- exceptions raised by instructions --------------------------------------------------

TEST_F(EmuInsn, DivideErrorIsAFaultOnTheDivide) {
  run("t_div0", [](CpuState& e) { e.gpr[kRcx] = 0; });
  EXPECT_EQ(exc_vector(), 0u);
  EXPECT_EQ(frame(0), prog_.sym("t_div0"));  // EIP of the DIV
  EXPECT_EQ(frame(1), 0x08u);
  run("t_divovf", [](CpuState& e) {
    e.gpr[kRdx] = 0x7FFFFFFF;  // quotient does not fit
    e.gpr[kRax] = 0;
    e.gpr[kRcx] = 2;
  });
  EXPECT_EQ(exc_vector(), 0u);
}

TEST_F(EmuInsn, BoundUdInt3IntoAndIntN) {
  m_.ram.put32(kSrc, 10);
  m_.ram.put32(kSrc + 4, 20);
  CpuState s = run("t_bound", [](CpuState& e) {
    e.gpr[kRsi] = kSrc;
    e.gpr[kRax] = 15;
  });
  EXPECT_EQ(exc_vector(), 0xFFFFFFFFu);  // in range: no exception
  run("t_bound", [](CpuState& e) {
    e.gpr[kRsi] = kSrc;
    e.gpr[kRax] = 21;
  });
  EXPECT_EQ(exc_vector(), 5u);
  EXPECT_EQ(frame(0), prog_.sym("t_bound"));
  run("t_ud2");
  EXPECT_EQ(exc_vector(), 6u);
  EXPECT_EQ(frame(0), prog_.sym("t_ud2"));
  run("t_int3");
  EXPECT_EQ(exc_vector(), 3u);
  EXPECT_EQ(frame(0), prog_.sym("t_int3") + 1);  // a trap: after INT3
  run("t_into", [](CpuState& e) { e.rflags = 0x2 | 0x800; });
  EXPECT_EQ(exc_vector(), 4u);
  EXPECT_EQ(frame(0), prog_.sym("t_into") + 1);
  s = run("t_into");  // OF = 0: nothing
  EXPECT_EQ(exc_vector(), 0xFFFFFFFFu);
  run("t_int_n");
  EXPECT_EQ(exc_vector(), 0x1Fu);
  EXPECT_EQ(frame(0), prog_.sym("t_int_n") + 2);
  EXPECT_EQ(frame(2) & 0x200, 0u);
}

TEST_F(EmuInsn, SegmentLoadFaultsCarryTheSelector) {
  run("t_bad_ds", [](CpuState& e) { e.gpr[kRax] = 0x1F8; });  // beyond the GDT limit
  EXPECT_EQ(exc_vector(), 13u);
  EXPECT_EQ(frame(0), 0x1F8u);  // error code: the selector (RPL cleared)
  EXPECT_EQ(frame(1), prog_.sym("t_bad_ds"));
  run("t_bad_ds", [](CpuState& e) { e.gpr[kRax] = 0x18; });  // readable code, DPL 3 >= CPL 0: allowed
  EXPECT_EQ(exc_vector(), 0xFFFFFFFFu);
  run("t_null_ss", [](CpuState& e) { e.gpr[kRax] = 0; });
  EXPECT_EQ(exc_vector(), 13u);
  EXPECT_EQ(frame(0), 0u);
  run("t_null_ss", [](CpuState& e) { e.gpr[kRax] = 0x23; });  // RPL 3 != CPL 0
  EXPECT_EQ(exc_vector(), 13u);
  EXPECT_EQ(frame(0), 0x20u);
}

TEST_F(EmuInsn, SegmentLimitsAndExpandDown) {
  CpuState s = run("t_limit", [](CpuState& e) { e.gpr[kRsi] = 0xFFC; });
  EXPECT_EQ(exc_vector(), 0xFFFFFFFFu);
  run("t_limit", [](CpuState& e) { e.gpr[kRsi] = 0xFFD; });  // last byte at 0x1000: beyond
  EXPECT_EQ(exc_vector(), 13u);
  EXPECT_EQ(frame(0), 0u);
  run("t_expand_down", [](CpuState& e) { e.gpr[kRsi] = 0xFFF; });
  EXPECT_EQ(exc_vector(), 13u);
  m_.ram.put32(0x5000, 0x600DF00D);
  s = run("t_expand_down", [](CpuState& e) { e.gpr[kRsi] = 0x5000; });
  EXPECT_EQ(exc_vector(), 0xFFFFFFFFu);
  EXPECT_EQ(s.gpr[kRax], 0x600DF00Du);
}

// --- system instructions ----------------------------------------------------------------

TEST_F(EmuInsn, CpuidReportsWhatIsImplemented) {
  CpuState s = run("t_cpuid0");
  EXPECT_EQ(s.gpr[kRax], 1u);
  EXPECT_EQ(s.gpr[kRbx], 0x756E6547u);  // "Genu"
  EXPECT_EQ(s.gpr[kRdx], 0x49656E69u);  // "ineI"
  EXPECT_EQ(s.gpr[kRcx], 0x6C65746Eu);  // "ntel"
  s = run("t_cpuid1");
  EXPECT_EQ((s.gpr[kRax] >> 8) & 0xF, 6u);  // family 6
  const uint32_t edx = static_cast<uint32_t>(s.gpr[kRdx]);
  for (unsigned bit : {0u, 3u, 4u, 5u, 8u, 11u, 13u, 15u}) EXPECT_NE(edx & (1u << bit), 0u) << bit;  // FPU PSE TSC MSR CX8 SEP PGE CMOV
  for (unsigned bit : {6u, 9u, 23u, 24u, 25u, 26u}) EXPECT_EQ(edx & (1u << bit), 0u) << bit;  // no PAE APIC MMX FXSR SSE SSE2
  EXPECT_EQ(s.gpr[kRcx], 0u);
}

TEST_F(EmuInsn, RdtscIsMonotonicAndUnknownMsrFaults) {
  const CpuState s = run("t_rdtsc2");
  const uint64_t first = (uint64_t{static_cast<uint32_t>(s.gpr[kRdi])} << 32) | static_cast<uint32_t>(s.gpr[kRsi]);
  const uint64_t second = (uint64_t{static_cast<uint32_t>(s.gpr[kRdx])} << 32) | static_cast<uint32_t>(s.gpr[kRax]);
  EXPECT_GT(second, first);
  run("t_rdmsr_bad");
  EXPECT_EQ(exc_vector(), 13u);
}

TEST_F(EmuInsn, SysexitToRing3AndSysenterBack) {
  const CpuState s = run("t_sysexit");
  EXPECT_EQ(s.gpr[kRbx], 0x1Bu);    // ring-3 CS = SYSENTER_CS + 16, RPL 3
  EXPECT_EQ(s.gpr[kRsi], 0x23u);    // ring-3 SS = SYSENTER_CS + 24, RPL 3
  EXPECT_EQ(s.gpr[kRdi], 0xD000u);  // ESP = ECX at SYSEXIT
  EXPECT_EQ(s.cs.selector, 0x08);   // back in ring 0 after SYSENTER
  EXPECT_EQ(s.ss.selector, 0x10);
  EXPECT_EQ(s.gpr[kRsp], 0xE000u);  // SYSENTER_ESP
}

TEST_F(EmuInsn, PopfInRing3KeepsIfAndIopl) {
  // Ring 3 with IOPL 0 (through SYSEXIT), POPF of 0x3202 (SDM "POPF": IF and
  // IOPL unchanged, no fault), PUSHF into EBX, SYSENTER back.
  const CpuState s = run("t_sysexit_popf");
  EXPECT_EQ(s.cs.selector, 0x08);
  EXPECT_EQ(s.gpr[kRbx] & 0x3200, 0u);
  EXPECT_NE(s.gpr[kRbx] & 0x2, 0u);
}

TEST_F(EmuInsn, FpuThroughTheCoreAndDeviceNotAvailable) {
  CpuState s = run("t_fpu", [](CpuState& e) { e.gpr[kRsi] = kSrc; });
  double v;
  std::memcpy(&v, m_.ram.data() + kSrc, 8);
  EXPECT_NEAR(v, 1.0 + M_PI, 1e-15);
  EXPECT_EQ(s.gpr[kRax] & 0x3800, 0u);  // TOP back to 0 after FADDP+FSTP
  run("t_fpu_nm", [](CpuState& e) { e.cr0 |= 0x8; });  // CR0.TS
  EXPECT_EQ(exc_vector(), 7u);
  run("t_fpu_nm", [](CpuState& e) { e.cr0 |= 0x4; });  // CR0.EM
  EXPECT_EQ(exc_vector(), 7u);
}

TEST_F(EmuInsn, LarAndLsl) {
  CpuState s = run("t_lar_lsl", [](CpuState& e) { e.gpr[kRax] = 0x38; });
  EXPECT_NE(s.rflags & 0x40, 0u);
  EXPECT_EQ(s.gpr[kRbx], 0x00409200u);  // access byte 0x92, flags nibble 0x4 (B)
  EXPECT_EQ(s.gpr[kRcx], 0xFFFu);
  s = run("t_lar_lsl", [](CpuState& e) { e.gpr[kRax] = 0x400; });  // beyond the GDT
  EXPECT_EQ(s.rflags & 0x40, 0u);
}

}  // namespace
}  // namespace twoostwo::vmcore::emutest
