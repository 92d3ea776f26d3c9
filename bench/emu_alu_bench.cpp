// Cost of the emulator's ALU semantics (vmcore/emulator/alu.h) per call, as the
// interpreter sees it: operation, operand size and operands only known at run
// time, the flags of one call feeding the next (a dependency chain, like EFLAGS
// through a guest's instruction stream).
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <random>

#include "vmcore/emulator/alu.h"

namespace {

using namespace twoostwo::vmcore::emu;

struct Inputs {
  std::array<uint32_t, 1024> a{};
  std::array<uint32_t, 1024> b{};
  std::array<uint8_t, 1024> count{};
  std::array<uint8_t, 1024> size{};
  std::array<uint8_t, 1024> op{};
};

const Inputs& inputs() {
  static const Inputs in = [] {
    Inputs r;
    std::mt19937 rng(42);
    static constexpr uint8_t kSizes[] = {1, 2, 4, 4};
    for (size_t i = 0; i < r.a.size(); ++i) {
      r.a[i] = rng();
      r.b[i] = rng();
      r.count[i] = static_cast<uint8_t>(rng());
      r.size[i] = kSizes[rng() % 4];
      r.op[i] = static_cast<uint8_t>(rng() % 8);
    }
    return r;
  }();
  return in;
}

// ADD with a run-time size (the common interpreter shape).
void BM_AluAdd(benchmark::State& state) {
  const Inputs& in = inputs();
  uint32_t flags = 0x2;
  size_t i = 0;
  for (auto _ : state) {
    const AluResult r = alu(AluOp::kAdd, in.a[i], in.b[i], in.size[i], flags);
    flags = r.flags;
    benchmark::DoNotOptimize(r.value);
    i = (i + 1) & 1023;
  }
}
BENCHMARK(BM_AluAdd);

// ADD 32-bit with the size known at compile time (a specialised handler).
void BM_AluAdd32(benchmark::State& state) {
  const Inputs& in = inputs();
  uint32_t flags = 0x2;
  size_t i = 0;
  for (auto _ : state) {
    const AluResult r = alu(AluOp::kAdd, in.a[i], in.b[i], 4, flags);
    flags = r.flags;
    benchmark::DoNotOptimize(r.value);
    i = (i + 1) & 1023;
  }
}
BENCHMARK(BM_AluAdd32);

// Any group-1 operation and size, chosen at run time.
void BM_AluAnyOp(benchmark::State& state) {
  const Inputs& in = inputs();
  uint32_t flags = 0x2;
  size_t i = 0;
  for (auto _ : state) {
    const AluResult r = alu(static_cast<AluOp>(in.op[i]), in.a[i], in.b[i], in.size[i], flags);
    flags = r.flags;
    benchmark::DoNotOptimize(r.value);
    i = (i + 1) & 1023;
  }
}
BENCHMARK(BM_AluAnyOp);

// Any group-2 shift/rotate, count and size, chosen at run time.
void BM_Shift(benchmark::State& state) {
  const Inputs& in = inputs();
  uint32_t flags = 0x2;
  size_t i = 0;
  for (auto _ : state) {
    const AluResult r = shift(static_cast<ShiftOp>(in.op[i]), in.a[i], in.count[i], in.size[i], flags);
    flags = r.flags;
    benchmark::DoNotOptimize(r.value);
    i = (i + 1) & 1023;
  }
}
BENCHMARK(BM_Shift);

// SHL r32, imm8 (the most frequent shift in kernels).
void BM_Shl32(benchmark::State& state) {
  const Inputs& in = inputs();
  uint32_t flags = 0x2;
  size_t i = 0;
  for (auto _ : state) {
    const AluResult r = shift(ShiftOp::kShl, in.a[i], in.count[i], 4, flags);
    flags = r.flags;
    benchmark::DoNotOptimize(r.value);
    i = (i + 1) & 1023;
  }
}
BENCHMARK(BM_Shl32);

void BM_Condition(benchmark::State& state) {
  const Inputs& in = inputs();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(condition(in.op[i] * 2u + (in.count[i] & 1u), in.a[i]));
    i = (i + 1) & 1023;
  }
}
BENCHMARK(BM_Condition);

}  // namespace
