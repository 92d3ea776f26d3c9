// The EmulatorEngine as a CpuEngine: the KVM engine's tiny guests
// (guests/*.S) and the real-mode program of emuguests/ run on it, and the
// run()/kick()/HLT/interrupt contract of cpu_engine.h, the virtual clock,
// invalidate_code and the error paths are checked.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "tests/vmcore/emu_harness.h"

namespace twoostwo::vmcore::emutest {
namespace {

using namespace std::chrono_literals;

std::vector<uint8_t> kvm_guest(const std::string& name) {
  const std::string path = std::string(TWOOSTWO_TEST_DATA_DIR) + "/guests/" + name + ".bin";
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path << " (built by the twoostwo_test_guests target)";
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

CpuState real_mode_entry(uint64_t address) {
  CpuState s = CpuState::reset();
  s.cs.selector = 0;
  s.cs.base = 0;
  s.rip = address;
  return s;
}

// INTR pin and INTA cycle of a PIC reduced to one request line.
class FakePic final : public InterruptController {
 public:
  bool interrupt_pending() const override { return pending_.load(); }
  uint8_t acknowledge() override {
    ++acknowledged;
    pending_.store(false);
    return vector_;
  }
  void raise(uint8_t vector) {
    vector_ = vector;
    pending_.store(true);
  }
  std::atomic<unsigned> acknowledged{0};

 private:
  std::atomic<bool> pending_{false};
  uint8_t vector_ = 0;
};

// A port whose write calls kick() on the engine (as the Monitor does when a device asks for shutdown).
class KickPort final : public bus::IoDevice {
 public:
  void read(uint64_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), uint8_t{0xFF}); }
  void write(uint64_t, std::span<const uint8_t>) override {
    if (engine != nullptr) engine->kick();
  }
  std::string_view name() const override { return "kick port"; }
  CpuEngine* engine = nullptr;
};

struct Rig {
  explicit Rig(InterruptController* pic = nullptr, Clock* clock = nullptr, EmulatorOptions options = {})
      : ram(2 << 20) {
    EXPECT_TRUE(io.add(0x3f8, 8, uart));
    EXPECT_TRUE(io.add(0x500, 4, pattern));
    EXPECT_TRUE(io.add(0xf0, 1, kick_port));
    MachineBindings b;
    b.memory = ram.memory();
    b.io = &io;
    b.pic = pic;
    b.clock = clock;
    auto e = EmulatorEngine::create(b, options);
    EXPECT_TRUE(e) << (e ? "" : e.error().message);
    if (e) engine = std::move(*e);
    kick_port.engine = engine.get();
  }
  void load(uint32_t at, const std::vector<uint8_t>& bytes) const {
    std::memcpy(ram.data() + at, bytes.data(), bytes.size());
  }
  RunResult run_until_stop(unsigned max = 100000) const {
    RunResult r;
    for (unsigned k = 0; k < max; ++k) {
      r = engine->run();
      if (r.reason != StopReason::kKicked) break;
    }
    return r;
  }
  GuestRam ram;
  bus::IoBus io;
  CollectingUart uart;
  PatternPort pattern;
  KickPort kick_port;
  std::unique_ptr<EmulatorEngine> engine;
};

TEST(EmuEngine, RealModeGuest) {
  Rig rig;
  rig.load(0x1000, kvm_guest("real"));
  ASSERT_TRUE(rig.engine->set_state(real_mode_entry(0x1000)));
  const RunResult r = rig.run_until_stop();
  EXPECT_EQ(r.reason, StopReason::kHalt);
  EXPECT_EQ(r.detail, "halted with interrupts disabled");
  EXPECT_EQ(rig.uart.output, "hello real\nrep outsb\n");
  auto s = rig.engine->state();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->gpr[kRax] & 0xFFFFFFFF, 0x5245414Cu);
  EXPECT_EQ(cpu_mode(*s), CpuMode::kReal);
  EXPECT_GT(rig.engine->instructions_retired(), 20u);
}

TEST(EmuEngine, ProtectedModeGuestWithStringInput) {
  Rig rig;
  rig.load(0x1000, kvm_guest("prot"));
  ASSERT_TRUE(rig.engine->set_state(real_mode_entry(0x1000)));
  const RunResult r = rig.run_until_stop();
  EXPECT_EQ(r.reason, StopReason::kHalt);
  EXPECT_EQ(rig.uart.output, "hello prot\n");
  // The checksum the guest computes over 16 bytes of `rep insb` and 8 words of `rep insw`.
  uint32_t sum = 0;
  for (unsigned i = 0; i < 16; ++i) sum = ((sum << 5) | (sum >> 27)) + PatternPort::byte_at(i);
  for (unsigned j = 0; j < 8; ++j) {
    const uint16_t w = PatternPort::word_at(j);
    sum = ((sum << 5) | (sum >> 27)) + (w & 0xFF);
    sum = ((sum << 5) | (sum >> 27)) + (w >> 8);
  }
  auto s = rig.engine->state();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->gpr[kRax] & 0xFFFFFFFF, sum);
  EXPECT_EQ(s->gpr[kRbx] & 0xFFFFFFFF, 0x544F5250u);
  EXPECT_EQ(cpu_mode(*s), CpuMode::kProtected32);
}

TEST(EmuEngine, RealModeProgram) {
  Rig rig;
  const Program p = load_program("realmode");
  rig.load(0x7c00, p.bytes);
  ASSERT_TRUE(rig.engine->set_state(real_mode_entry(0x7c00)));
  const RunResult r = rig.run_until_stop();
  EXPECT_EQ(r.reason, StopReason::kHalt) << r.detail;
  EXPECT_EQ(rig.uart.output,
            "int30 ax=1234\n"
            "de ip ok\n"
            "far 0800\n"
            "o32 12345678\n"
            "pm back\n"
            "done\n");
}

TEST(EmuEngine, TripleFaultIsReported) {
  Rig rig;
  rig.load(0x1000, kvm_guest("triple"));
  ASSERT_TRUE(rig.engine->set_state(real_mode_entry(0x1000)));
  const RunResult r = rig.run_until_stop();
  EXPECT_EQ(r.reason, StopReason::kTripleFault);
  EXPECT_NE(r.detail.find("#UD"), std::string::npos) << r.detail;
}

TEST(EmuEngine, KickEndsAnEndlessLoopPromptly) {
  Rig rig;
  rig.load(0x1000, kvm_guest("spin"));
  ASSERT_TRUE(rig.engine->set_state(real_mode_entry(0x1000)));
  // The guest's own port write kicks: the current run() returns kKicked.
  RunResult r = rig.engine->run();
  EXPECT_EQ(r.reason, StopReason::kKicked);
  // A kick from another thread ends an endless loop well under a second.
  std::atomic<bool> done{false};
  std::thread kicker([&] {
    std::this_thread::sleep_for(20ms);
    rig.engine->kick();
    done = true;
  });
  const auto t0 = std::chrono::steady_clock::now();
  do {
    r = rig.engine->run();
  } while (!done || r.reason != StopReason::kKicked);
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  kicker.join();
  EXPECT_LT(elapsed, 500ms);
}

TEST(EmuEngine, RunReturnsPeriodicallyWithoutKicks) {
  Rig rig(nullptr, nullptr, EmulatorOptions{.slice_instructions = 10000});
  rig.load(0x1000, kvm_guest("spin"));
  ASSERT_TRUE(rig.engine->set_state(real_mode_entry(0x1000)));
  EXPECT_EQ(rig.engine->run().reason, StopReason::kKicked);  // the guest's kick
  const uint64_t before = rig.engine->instructions_retired();
  EXPECT_EQ(rig.engine->run().reason, StopReason::kKicked);  // the slice
  const uint64_t ran = rig.engine->instructions_retired() - before;
  EXPECT_GE(ran, 10000u);
  EXPECT_LT(ran, 10100u);
}

TEST(EmuEngine, ChainedBlocksAreCountedExactly) {
  // mov cx, 1000; L: inc ax; dec cx; jnz L; hlt -- the loop block chains to
  // itself, and every instruction is retired exactly once.
  Rig rig;
  rig.load(0x1000, {0xB9, 0xE8, 0x03, 0x40, 0x49, 0x75, 0xFC, 0xF4});
  ASSERT_TRUE(rig.engine->set_state(real_mode_entry(0x1000)));
  const RunResult r = rig.run_until_stop();
  EXPECT_EQ(r.reason, StopReason::kHalt);
  auto s = rig.engine->state();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->gpr[kRax] & 0xFFFF, 1000u);
  EXPECT_EQ(s->gpr[kRcx] & 0xFFFF, 0u);
  EXPECT_EQ(rig.engine->instructions_retired(), 1u + 3u * 1000u + 1u);
  const EmulatorCounters c = rig.engine->counters();
  // The block loop runs once per kChainBudget (64) chained blocks.
  EXPECT_GE(c.blocks_chained, 1000u * 64 / 65 - 2);
  EXPECT_LE(c.blocks_chained, c.blocks_executed);
}

TEST(EmuEngine, AnInterruptStopsAChainedLoop) {
  // cli-free endless loop "L: inc ax; jmp L" with IF=1: an interrupt raised
  // from another thread is taken although the block chains to itself.
  FakePic pic;
  Rig rig(&pic);
  // IVT[0x20] -> 0000:2000, where the handler halts with IF clear.
  const std::vector<uint8_t> ivt = {0x00, 0x20, 0x00, 0x00};
  std::memcpy(rig.ram.data() + 0x20 * 4, ivt.data(), ivt.size());
  rig.load(0x2000, {0xFA, 0xF4});                 // cli; hlt
  rig.load(0x1000, {0xFB, 0x40, 0xEB, 0xFD});     // sti; L: inc ax; jmp L
  ASSERT_TRUE(rig.engine->set_state(real_mode_entry(0x1000)));
  std::thread raiser([&] {
    std::this_thread::sleep_for(20ms);
    pic.raise(0x20);
    rig.engine->kick();  // as the Monitor does after a device raised a line
  });
  RunResult r;
  const auto t0 = std::chrono::steady_clock::now();
  do {
    r = rig.engine->run();
  } while (r.reason == StopReason::kKicked && std::chrono::steady_clock::now() - t0 < 5s);
  raiser.join();
  EXPECT_EQ(r.reason, StopReason::kHalt);
  EXPECT_EQ(r.detail, "halted with interrupts disabled");
  EXPECT_EQ(pic.acknowledged.load(), 1u);
  auto s = rig.engine->state();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->rip, 0x2002u);
  EXPECT_GT(s->gpr[kRax] & 0xFFFF, 0u);
}

TEST(EmuEngine, ExternalInterruptsWakeAHaltedGuest) {
  FakePic pic;
  Rig rig(&pic);
  rig.load(0x1000, kvm_guest("irq"));
  ASSERT_TRUE(rig.engine->set_state(real_mode_entry(0x1000)));
  unsigned halts = 0;
  for (unsigned k = 0; k < 100; ++k) {
    const RunResult r = rig.engine->run();
    if (r.reason == StopReason::kHalt && !r.detail.empty()) break;  // the final CLI; HLT
    if (r.reason == StopReason::kHalt) {
      ++halts;
      // Halted with IF = 1: run() keeps returning kHalt until an interrupt is pending.
      EXPECT_EQ(rig.engine->run().reason, StopReason::kHalt);
      pic.raise(0x20);
    }
  }
  EXPECT_EQ(halts, 3u);
  EXPECT_EQ(pic.acknowledged.load(), 3u);
  EXPECT_EQ(rig.uart.output, "3 interrupts\n");
}

TEST(EmuEngine, VirtualClockRunsAreRepeatable) {
  auto run_once = [](uint64_t& instructions, uint64_t& clock_ns) {
    VirtualClock clock;
    Rig rig(nullptr, &clock, EmulatorOptions{.slice_instructions = 777});
    const Program p = load_program("realmode");
    rig.load(0x7c00, p.bytes);
    EXPECT_TRUE(rig.engine->set_state(real_mode_entry(0x7c00)));
    EXPECT_EQ(rig.run_until_stop().reason, StopReason::kHalt);
    instructions = rig.engine->instructions_retired();
    clock_ns = clock.now_ns();
    return rig.uart.output;
  };
  uint64_t i1, i2, c1, c2;
  const std::string o1 = run_once(i1, c1);
  const std::string o2 = run_once(i2, c2);
  EXPECT_EQ(o1, o2);
  EXPECT_EQ(i1, i2);
  EXPECT_EQ(c1, i1);  // 1 ns per instruction
  EXPECT_EQ(c2, c1);
}

TEST(EmuEngine, InvalidateCodeSeesCodeChangedBehindTheCpu) {
  // "L: mov $1, %eax; out %al, $0xf0 (kicks); jmp L" at 0x12000: each run()
  // returns kKicked after one round. The host then changes the immediate;
  // without invalidate_code the cached block would still load 1.
  Rig rig;
  const uint8_t code[] = {0xB8, 1, 0, 0, 0, 0xE6, 0xF0, 0xEB, 0xF7};
  std::memcpy(rig.ram.data() + 0x12000, code, sizeof(code));
  ASSERT_TRUE(rig.engine->set_state(flat32_state(rig.ram, 0x12000)));
  ASSERT_EQ(rig.engine->run().reason, StopReason::kKicked);
  EXPECT_EQ(rig.engine->state()->gpr[kRax], 1u);
  rig.ram.data()[0x12001] = 2;
  rig.engine->invalidate_code(0x12001, 1);
  ASSERT_EQ(rig.engine->run().reason, StopReason::kKicked);
  EXPECT_EQ(rig.engine->state()->gpr[kRax], 2u);
  EXPECT_GT(rig.engine->counters().blocks_invalidated, 0u);
}

TEST(EmuEngine, UnimplementedInstructionRaisesUd) {
  // SSE's MOVAPS is not part of this CPU: #UD, delivered through the IDT.
  Rig rig;
  const Program p = load_program("insn");
  rig.load(0x10000, p.bytes);
  const uint8_t movaps[] = {0x0F, 0x28, 0xC1, 0xF4};
  std::memcpy(rig.ram.data() + 0x18000, movaps, sizeof(movaps));
  ASSERT_TRUE(rig.engine->set_state(flat32_state(rig.ram, 0x18000, &p)));
  ASSERT_EQ(rig.run_until_stop().reason, StopReason::kHalt);
  EXPECT_EQ(rig.ram.u32(p.sym("exc_vector")), 6u);
  EXPECT_EQ(rig.engine->counters().unimplemented, 1u);
}

TEST(EmuEngine, ExecutingOutsideRamIsAnEngineFault) {
  Rig rig;
  ASSERT_TRUE(rig.engine->set_state(flat32_state(rig.ram, 0x40000000)));
  const RunResult r = rig.run_until_stop();
  EXPECT_EQ(r.reason, StopReason::kFault);
  EXPECT_NE(r.detail.find("outside RAM"), std::string::npos) << r.detail;
}

TEST(EmuEngine, RefusesStatesItCannotRun) {
  Rig rig;
  CpuState s = CpuState::reset();
  s.efer = 1u << 10;
  EXPECT_FALSE(rig.engine->set_state(s));
  s = CpuState::reset();
  s.cr4 = 1u << 5;  // PAE
  EXPECT_FALSE(rig.engine->set_state(s));
  MachineBindings empty;
  EXPECT_FALSE(EmulatorEngine::create(empty));
}

TEST(EmuEngine, StateRoundTrips) {
  Rig rig;
  CpuState s = flat32_state(rig.ram, 0x12345);
  for (unsigned r = 0; r < 8; ++r) s.gpr[r] = 0x1000 * (r + 1);
  s.rflags = 0x2 | 0x1 | 0x800;
  s.cr2 = 0xABC;
  ASSERT_TRUE(rig.engine->set_state(s));
  auto back = rig.engine->state();
  ASSERT_TRUE(back);
  for (unsigned r = 0; r < 8; ++r) EXPECT_EQ(back->gpr[r], s.gpr[r]);
  EXPECT_EQ(back->rip, s.rip);
  EXPECT_EQ(back->rflags, s.rflags);
  EXPECT_EQ(back->cs.selector, s.cs.selector);
  EXPECT_EQ(back->cs.limit, s.cs.limit);
  EXPECT_EQ(back->tr.base, s.tr.base);
  EXPECT_EQ(back->gdt.base, s.gdt.base);
  EXPECT_EQ(back->cr0, s.cr0);
  EXPECT_EQ(back->cr2, s.cr2);
}

}  // namespace
}  // namespace twoostwo::vmcore::emutest
