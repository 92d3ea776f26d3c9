// Guest MIPS of the emulator engine on tight loops (issue 3, "Performance
// guidance"): each benchmark runs a small 32-bit guest loop to its HLT and
// reports instructions retired per second (the "MIPS" counter, in millions).
//   ./build/ci/bench/emu_loop_bench
// Kernels (flat 32-bit protected mode, paging off unless said otherwise):
//   Alu     add/xor/inc/dec/jnz                         5 insns per iteration
//   Memory  load, add, store through [base+index*4]    5 insns per iteration
//   Call    call/push/mov/pop/ret + dec/jnz             7 insns per iteration
//   Paged   the Memory kernel with paging on (4 KiB pages)
//   RepMovs rep movsd of 64 KiB per iteration (bytes/s reported too)
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <cstring>
#include <vector>

#include "vmcore/emulator/emulator_engine.h"

namespace twoostwo::vmcore {
namespace {

constexpr uint64_t kRam = 16 << 20;
constexpr uint32_t kCode = 0x10000;

class Guest {
 public:
  Guest() {
    void* p = ::mmap(nullptr, kRam, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ram_ = static_cast<uint8_t*>(p);
    MachineBindings b;
    b.memory = bus::GuestMemory(ram_, kRam);
    engine_ = std::move(*EmulatorEngine::create(b));
  }
  ~Guest() { ::munmap(ram_, kRam); }
  uint8_t* ram() const { return ram_; }

  void load(const std::vector<uint8_t>& code) const { std::memcpy(ram_ + kCode, code.data(), code.size()); }

  CpuState flat(uint32_t ecx, bool paging) const {
    // GDT at 0x800: 0x08 code, 0x10 data (flat 4 GiB).
    const uint64_t gdt[] = {0, 0x00cf9a000000ffffull, 0x00cf92000000ffffull};
    std::memcpy(ram_ + 0x800, gdt, sizeof(gdt));
    CpuState s = CpuState::reset();
    s.gpr = {};
    s.gpr[kRcx] = ecx;
    s.gpr[kRsi] = 0x100000;
    s.gpr[kRsp] = 0xF000;
    s.rip = kCode;
    s.rflags = 0x2;
    Segment code;
    code.selector = 0x08;
    code.base = 0;
    code.limit = 0xFFFFFFFF;
    code.type = 0xB;
    code.db = true;
    code.g = true;
    Segment data = code;
    data.selector = 0x10;
    data.type = 0x3;
    s.cs = code;
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.tr.selector = 0;
    s.tr.s = false;
    s.tr.type = 0xB;
    s.tr.limit = 0x67;
    s.gdt = {0x800, 23};
    s.idt = {0, 0};
    s.cr0 = 0x11;
    if (paging) {
      // Identity-map the first 16 MiB with 4 KiB pages: PD at 0x200000, PTs after it.
      const uint32_t pd = 0x200000;
      for (uint32_t t = 0; t < 4; ++t) {
        const uint32_t pt = pd + 0x1000 * (t + 1);
        const uint32_t pde = pt | 0x7;
        std::memcpy(ram_ + pd + 4 * t, &pde, 4);
        for (uint32_t e = 0; e < 1024; ++e) {
          const uint32_t pte = ((t * 1024 + e) << 12) | 0x7;
          std::memcpy(ram_ + pt + 4 * e, &pte, 4);
        }
      }
      s.cr3 = pd;
      s.cr0 |= 0x80000000u;
    }
    return s;
  }

  uint64_t run(const CpuState& s) const {
    const uint64_t before = engine_->instructions_retired();
    (void)engine_->set_state(s);
    RunResult r;
    do {
      r = engine_->run();
    } while (r.reason == StopReason::kKicked);
    return engine_->instructions_retired() - before;
  }

 private:
  uint8_t* ram_ = nullptr;
  std::unique_ptr<EmulatorEngine> engine_;
};

void run_kernel(benchmark::State& state, const std::vector<uint8_t>& code, uint32_t count, bool paging = false) {
  Guest g;
  g.load(code);
  uint64_t instructions = 0;
  for (auto _ : state) instructions += g.run(g.flat(count, paging));
  state.counters["MIPS"] =
      benchmark::Counter(static_cast<double>(instructions) / 1e6, benchmark::Counter::kIsRate);
}

// L: add %ecx,%eax; xor %eax,%ebx; inc %edx; dec %ecx; jnz L; hlt
const std::vector<uint8_t> kAlu = {0x01, 0xC8, 0x31, 0xC3, 0x42, 0x49, 0x75, 0xF8, 0xF4};
// L: mov (%esi,%ecx,4),%eax; add %eax,%ebx; mov %ebx,0x1000(%esi,%ecx,4); dec %ecx; jnz L; hlt
const std::vector<uint8_t> kMemory = {0x8B, 0x04, 0x8E, 0x01, 0xC3, 0x89, 0x9C, 0x8E, 0x00, 0x10,
                                      0x00, 0x00, 0x49, 0x75, 0xF1, 0xF4};
// L: call f; dec %ecx; jnz L; hlt; f: push %ebp; mov %esp,%ebp; mov %ecx,%eax; pop %ebp; ret
const std::vector<uint8_t> kCall = {0xE8, 0x04, 0x00, 0x00, 0x00, 0x49, 0x75, 0xF8, 0xF4,
                                    0x55, 0x89, 0xE5, 0x89, 0xC8, 0x5D, 0xC3};
// L: mov %ebx,%ecx(=16384); mov $0x100000,%esi; mov $0x200000... simpler: each iteration
// copies 64 KiB: push %ecx; mov $16384,%ecx; mov $0x100000,%esi; mov $0x400000,%edi;
// rep movsl; pop %ecx; dec %ecx; jnz L; hlt
const std::vector<uint8_t> kRepMovs = {0x51, 0xB9, 0x00, 0x40, 0x00, 0x00, 0xBE, 0x00, 0x00, 0x10, 0x00,
                                       0xBF, 0x00, 0x00, 0x40, 0x00, 0xF3, 0xA5, 0x59, 0x49, 0x75, 0xEA, 0xF4};

void BM_Alu(benchmark::State& state) { run_kernel(state, kAlu, 2'000'000); }
void BM_Memory(benchmark::State& state) { run_kernel(state, kMemory, 200'000); }
void BM_Call(benchmark::State& state) { run_kernel(state, kCall, 1'000'000); }
void BM_Paged(benchmark::State& state) { run_kernel(state, kMemory, 200'000, true); }
void BM_RepMovs(benchmark::State& state) {
  run_kernel(state, kRepMovs, 64);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 64 * 65536);
}

BENCHMARK(BM_Alu)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Memory)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Call)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Paged)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RepMovs)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace twoostwo::vmcore
