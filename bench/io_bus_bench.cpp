// IoBus dispatch cost: nanoseconds per port access through IoBus (the path
// every emulated IN/OUT and every KVM_EXIT_IO takes), for a claimed port, an
// unclaimed port, and a bus populated like a PC's.
#include <benchmark/benchmark.h>

#include <deque>

#include "vmcore/bus/io_bus.h"

namespace {

using twoostwo::bus::IoBus;
using twoostwo::bus::IoDevice;

class Register : public IoDevice {
 public:
  void read(uint64_t offset, std::span<uint8_t> data) override {
    for (auto& b : data) b = static_cast<uint8_t>(value_ + offset);
  }
  void write(uint64_t, std::span<const uint8_t> data) override { value_ = data[0]; }
  std::string_view name() const override { return "register"; }

 private:
  uint8_t value_ = 0;
};

struct PcBus {
  PcBus() {
    // The ranges of a PC with two UARTs, PIC, PIT, CMOS, i8042, PCI and a NIC.
    const std::pair<uint16_t, uint32_t> ranges[] = {{0x20, 2},  {0x40, 4},   {0x60, 1},   {0x64, 1},
                                                    {0x70, 2},  {0xA0, 2},   {0x2F8, 8},  {0x3F8, 8},
                                                    {0x4D0, 2}, {0xCF8, 8},  {0xC000, 0x20}};
    for (auto [base, len] : ranges) {
      devices.emplace_back();
      (void)bus.add(base, len, devices.back());
    }
  }
  IoBus bus;
  std::deque<Register> devices;
};

void BM_IoBusReadClaimed(benchmark::State& state) {
  PcBus pc;
  uint8_t v[1];
  for (auto _ : state) {
    pc.bus.read(0x3FD, v);
    benchmark::DoNotOptimize(v[0]);
  }
}
BENCHMARK(BM_IoBusReadClaimed);

void BM_IoBusWriteClaimed(benchmark::State& state) {
  PcBus pc;
  uint8_t v[1] = {0x41};
  for (auto _ : state) {
    pc.bus.write(0x3F8, v);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_IoBusWriteClaimed);

void BM_IoBusReadDword(benchmark::State& state) {
  PcBus pc;
  uint8_t v[4];
  for (auto _ : state) {
    pc.bus.read(0xC010, v);
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_IoBusReadDword);

void BM_IoBusReadUnclaimed(benchmark::State& state) {
  PcBus pc;
  uint8_t v[1];
  for (auto _ : state) {
    pc.bus.read(0x1234, v);
    benchmark::DoNotOptimize(v[0]);
  }
}
BENCHMARK(BM_IoBusReadUnclaimed);

}  // namespace
