// The JIT's hotness rule (vmcore/emulator/jit.h Jit::hot_code, count_hot
// and update_window): a block is compiled once it has run `threshold` times
// within at most two windows of Jit::kWindowNs, so code that runs only now
// and then (an idle guest's timer tick, once per network frame) stays
// interpreted.
#include <gtest/gtest.h>

#include <array>

#include "vmcore/emulator/block_cache.h"
#include "vmcore/emulator/chain.h"
#include "vmcore/emulator/jit.h"

namespace twoostwo::vmcore::emu {
namespace {

constexpr uint64_t kRamBytes = 1 << 20;
constexpr uint64_t kT0 = 1'000'000'000;

class JitWindow : public ::testing::Test {
 protected:
  void SetUp() override {
    auto j = Jit::create(cpu_, cache_, 3, Jit::kDefaultCacheBytes);
    ASSERT_TRUE(j.has_value()) << j.error().message;
    jit_ = std::move(*j);
    cpu_.bind.jit = jit_.get();
    // A block the JIT compiles: cached, one page, 32-bit code. Its one
    // instruction (no inline form) becomes a handler call; nothing runs it.
    const std::array<Insn, 1> code{};
    block_ = Block::create(code);
    block_->cached = true;
    block_->mode = 2;
    block_->count = 1;
    jit_->update_window(kT0);
    block_->jit_window = jit_->window();  // its count starts now
  }
  /// Runs counted from the loop until the block compiles: how many.
  int runs_until_compiled(int limit) {
    for (int n = 1; n <= limit; ++n) {
      if (jit_->hot_code(block_.get()) != nullptr) return n;
    }
    return 0;
  }

  Cpu cpu_;
  BlockCache cache_{kRamBytes};
  std::unique_ptr<Jit> jit_;
  BlockPtr block_;
};

TEST_F(JitWindow, CompilesAtTheThresholdWithinOneWindow) {
  EXPECT_EQ(jit_->hot_code(block_.get()), nullptr);
  EXPECT_EQ(jit_->hot_code(block_.get()), nullptr);
  EXPECT_EQ(block_->jit_hits, 2u);
  jit_->update_window(kT0 + Jit::kWindowNs - 1);  // still the same window
  void* code = jit_->hot_code(block_.get());
  ASSERT_NE(code, nullptr);
  EXPECT_EQ(block_->jit_code, code);
  EXPECT_EQ(jit_->stats().blocks_compiled, 1u);
  EXPECT_EQ(jit_->hot_code(block_.get()), code);  // compiled: no more counting
}

TEST_F(JitWindow, ACountFromThePreviousWindowStillCompiles) {
  (void)jit_->hot_code(block_.get());
  (void)jit_->hot_code(block_.get());
  jit_->update_window(kT0 + Jit::kWindowNs);
  EXPECT_NE(jit_->hot_code(block_.get()), nullptr);
}

TEST_F(JitWindow, ACountOlderThanTwoWindowsStartsOver) {
  (void)jit_->hot_code(block_.get());
  (void)jit_->hot_code(block_.get());
  jit_->update_window(kT0 + Jit::kWindowNs);
  // The window moves on from the time it was started at, not by a fixed step.
  jit_->update_window(kT0 + Jit::kWindowNs + Jit::kWindowNs / 2);  // no new window yet
  jit_->update_window(kT0 + 2 * Jit::kWindowNs + Jit::kWindowNs / 2);
  EXPECT_EQ(jit_->hot_code(block_.get()), nullptr);  // the third run: too slow, counted again from now
  EXPECT_EQ(block_->jit_hits, 0u);
  EXPECT_EQ(jit_->stats().blocks_compiled, 0u);
  EXPECT_EQ(runs_until_compiled(10), 3);
}

TEST_F(JitWindow, RunsChainedFromInterpretedBlocksCount) {
  // end_block() counts each block it chains to and asks the JIT at
  // Cpu::jit_threshold runs (jit_count_hot).
  EXPECT_EQ(cpu_.jit_threshold, 3u);
  block_->jit_hits = 3;
  jit_count_hot(cpu_, block_.get());
  EXPECT_NE(block_->jit_code, nullptr);
  EXPECT_EQ(block_->jit_hits, 0u);
  // Compiled (its first handler enters the code): the count only starts over.
  block_->jit_hits = 3;
  jit_count_hot(cpu_, block_.get());
  EXPECT_EQ(block_->jit_hits, 0u);
  EXPECT_EQ(jit_->stats().blocks_compiled, 1u);
}

TEST_F(JitWindow, WithoutAJitTheCountOnlyWraps) {
  jit_.reset();
  EXPECT_EQ(cpu_.jit_threshold, 0xFFFFu);
  cpu_.bind.jit = nullptr;
  block_->jit_hits = 0xFFFF;
  jit_count_hot(cpu_, block_.get());
  EXPECT_EQ(block_->jit_hits, 0u);
  EXPECT_EQ(block_->jit_code, nullptr);
}

TEST_F(JitWindow, ThresholdZeroCompilesAtTheFirstRun) {
  Cpu cpu;
  BlockCache cache{kRamBytes};
  auto j = Jit::create(cpu, cache, 0, Jit::kDefaultCacheBytes);
  ASSERT_TRUE(j.has_value()) << j.error().message;
  for (uint64_t w = 0; w < 3; ++w) (*j)->update_window(kT0 + w * Jit::kWindowNs);
  block_->jit_window = 0;  // a count that started windows ago does not matter
  EXPECT_NE((*j)->hot_code(block_.get()), nullptr);
}

}  // namespace
}  // namespace twoostwo::vmcore::emu
