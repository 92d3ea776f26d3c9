// The JIT's counting window (vmcore/emulator/jit.h Jit::hot_code and
// update_window): a block is compiled once it is wanted `threshold` times
// within one window of Jit::kWindowNs, so code that runs only now and then
// (an idle guest's timer tick) stays interpreted.
#include <gtest/gtest.h>

#include <array>

#include "vmcore/emulator/block_cache.h"
#include "vmcore/emulator/jit.h"

namespace twoostwo::vmcore::emu {
namespace {

constexpr uint64_t kRamBytes = 1 << 20;

class JitWindow : public ::testing::Test {
 protected:
  void SetUp() override {
    auto j = Jit::create(cpu_, cache_, 3, Jit::kDefaultCacheBytes);
    ASSERT_TRUE(j.has_value()) << j.error().message;
    jit_ = std::move(*j);
    // A one-off (uncached) block: hot_code() counts it, and compile() turns
    // it down, so the count stays observable.
    const std::array<Insn, 1> code{};
    block_ = Block::create(code);
  }

  Cpu cpu_;
  BlockCache cache_{kRamBytes};
  std::unique_ptr<Jit> jit_;
  BlockPtr block_;
};

TEST_F(JitWindow, HitsCountWithinOneWindow) {
  jit_->update_window(1'000'000'000);
  EXPECT_EQ(jit_->hot_code(block_.get()), nullptr);
  EXPECT_EQ(jit_->hot_code(block_.get()), nullptr);
  EXPECT_EQ(block_->jit_hits, 2u);
  jit_->update_window(1'000'000'000 + Jit::kWindowNs - 1);  // still the same window
  EXPECT_EQ(jit_->hot_code(block_.get()), nullptr);         // the third: compile() turns it down
  EXPECT_EQ(block_->jit_hits, 3u);
}

TEST_F(JitWindow, ANewWindowStartsTheCountAgain) {
  jit_->update_window(1'000'000'000);
  (void)jit_->hot_code(block_.get());
  (void)jit_->hot_code(block_.get());
  EXPECT_EQ(block_->jit_hits, 2u);
  jit_->update_window(1'000'000'000 + Jit::kWindowNs);
  (void)jit_->hot_code(block_.get());
  EXPECT_EQ(block_->jit_hits, 1u);
  // The window moved on from the time it was started at, not by a fixed step.
  jit_->update_window(1'000'000'000 + Jit::kWindowNs + Jit::kWindowNs / 2);
  (void)jit_->hot_code(block_.get());
  EXPECT_EQ(block_->jit_hits, 2u);
}

}  // namespace
}  // namespace twoostwo::vmcore::emu
