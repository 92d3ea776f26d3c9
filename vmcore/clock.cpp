#include "vmcore/clock.h"

#include <ctime>

namespace twoostwo::vmcore {
namespace {
uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}
}  // namespace

HostClock::HostClock() : epoch_ns_(monotonic_ns()) {}

uint64_t HostClock::now_ns() const { return monotonic_ns() - epoch_ns_; }

void VirtualClock::skip_to(uint64_t ns) {
  uint64_t cur = now_.load(std::memory_order_relaxed);
  while (cur < ns && !now_.compare_exchange_weak(cur, ns, std::memory_order_acq_rel)) {
  }
}

void VirtualClock::advance_instructions(uint64_t count) {
  instructions_.fetch_add(count, std::memory_order_acq_rel);
  now_.fetch_add(count * ns_per_instruction_, std::memory_order_acq_rel);
}

}  // namespace twoostwo::vmcore
