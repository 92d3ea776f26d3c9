// Going from one decoded block to the next: the jump cache, the two chain
// slots of each block, and end_block(), which near branches and the block
// sentinel call to run the next block at once (a tail call) instead of
// returning to the engine's block loop (emulator_engine.cpp).
//
// The loop is needed only for what happens between instructions: a pending
// interrupt, a kick or code invalidation from another thread, single-step,
// the end of a time slice, freeing dead blocks, or a block that no fast path
// knows. end_block() checks for all of these with a few loads and returns
// to the loop when any applies; otherwise it counts the finished block and
// enters the next one, found through a chain slot of the finished block or
// the jump cache, with the same validity checks the loop makes.
#pragma once

#include <cstdint>

#include "vmcore/emulator/cpu.h"
#include "vmcore/emulator/insn.h"

namespace twoostwo::vmcore::emu {

/// One entry of the jump cache: linear address of a block's first byte ->
/// block, valid for one Cpu::code_epoch, the decoding mode and the
/// user/supervisor bit it was filled with (its tag), and while the linear
/// page still translates to the block's physical page (checked through the
/// TLB on every use, so TLB flushes and CR3 writes need not empty it).
struct JumpEntry {
  uint32_t lin = 0;
  uint32_t tag = 0;  // jump_tag(); 0 = empty
  Block* block = nullptr;
};
inline constexpr unsigned kJumpBits = 13;
inline constexpr uint32_t kJumpEntries = 1u << kJumpBits;
/// Blocks that may chain without the loop in between (bounds the recursion
/// of builds that do not turn the handlers' calls into tail calls).
inline constexpr uint32_t kChainBudget = 64;

EMU_INLINE uint32_t jump_index(uint32_t lin) { return (lin ^ (lin >> kJumpBits)) & (kJumpEntries - 1); }
/// The tag of blocks entered now: code epoch, CPL 3 or not, decoding mode.
EMU_INLINE uint32_t jump_tag(const Cpu& c) {
  return (c.code_epoch << 3) | (c.cpl == 3 ? 4u : 0u) | c.decode_mode();
}

/// True if block `n`, entered at CS:EIP (linear `lin`), fits the CS limit
/// and its page is what `lin` translates to now. `prev` (may be null) ran
/// just before from linear `prev_lin`: a block in the same linear and
/// physical page needs no TLB check (nothing in prev changed the
/// translation, or it would have stopped the block).
EMU_INLINE bool block_may_run(Cpu& c, const Block* n, uint32_t lin, const Block* prev, uint32_t prev_lin) {
  const SegmentCache& cs = c.seg[kCs];
  if (cs.limit != 0xFFFFFFFFu && uint64_t{c.eip} + n->byte_len - 1 > cs.limit) return false;
  if (prev != nullptr && (((lin ^ prev_lin) | (n->phys ^ prev->phys)) & ~0xFFFu) == 0) return true;
  return c.code_page_is(lin, n->phys & ~0xFFFu);  // may raise #PF, as the fetch would
}

/// The block at CS:EIP (linear `lin`, tag `tag`) through a chain slot of
/// `prev` or the jump cache, or null if neither knows a block that may run.
/// Sets `from_chain` when a chain slot had it.
EMU_INLINE Block* find_block_fast(Cpu& c, const Block* prev, uint32_t prev_lin, uint32_t lin, uint32_t tag,
                                  bool& from_chain) {
  if (prev != nullptr) {
    for (unsigned k = 0; k < 2; ++k) {
      if (prev->chain_lin[k] == lin && prev->chain_tag[k] == tag) {
        Block* n = prev->chain[k];
        if (block_may_run(c, n, lin, prev, prev_lin)) {
          from_chain = true;
          return n;
        }
        break;
      }
    }
  }
  from_chain = false;
  const JumpEntry& j = c.jump_cache[jump_index(lin)];
  if (j.lin == lin && j.tag == tag && block_may_run(c, j.block, lin, nullptr, 0)) return j.block;
  return nullptr;
}

/// Remember `next` as a successor of `prev` (both cached blocks; blocks that
/// cross into a second page are never chained to: the checks above cover
/// one page).
EMU_INLINE void link_blocks(Block* prev, Block* next, uint32_t lin, uint32_t tag) {
  if (!next->cached || next->phys2 != Block::kNoPhys2) return;
  unsigned k;
  if (prev->chain_tag[0] != tag) k = 0;       // empty or from an older epoch
  else if (prev->chain_tag[1] != tag) k = 1;
  else k = prev->chain_victim ^= 1;           // both in use: replace them in turn
  prev->chain[k] = next;
  prev->chain_lin[k] = lin;
  prev->chain_tag[k] = tag;
}

/// The end of a block that ran to its end: a near branch has set EIP, or the
/// sentinel after the last instruction was reached. Counts the block's
/// instructions and, unless the loop is needed, runs the next block here
/// (see the top of this file). Returns to the loop with Cpu::current_block
/// null (counted) and Cpu::chain_from the block to chain from; with
/// stop_block set (single-step, or an instruction asked the block to stop)
/// it leaves both for the loop. TF is never set here: the loop single-steps
/// while it is (stop_block), and an instruction that sets it ends its block
/// (Cpu::write_eflags; jit.h "Flat segments"). Under the JIT (Cpu::in_jit) it only sets
/// Cpu::jit_chain (unless stop_block) and returns: the generated code makes
/// the same checks in its exit.
/// A block chained to has reached Cpu::jit_threshold runs: compiles it if
/// it ran that often within the JIT's counting window, else starts its
/// count over (Jit::count_hot; without a JIT, only the latter).
void jit_count_hot(Cpu& c, Block* n);

EMU_INLINE void end_block(Cpu& c) {
  if (EMU_UNLIKELY(c.stop_block | c.in_jit)) {
    c.jit_chain = !c.stop_block;
    return;
  }
  Block* b = const_cast<Block*>(c.current_block);
  c.icount += b->count;
  c.current_block = nullptr;
  c.chain_from = b->cached ? b : nullptr;
  c.chain_from_lin = c.block_lin;
  if (EMU_UNLIKELY(c.icount >= c.slice_end || c.chain_budget == 0 ||
                   c.exit_request.load(std::memory_order_relaxed) ||
                   (c.irq_hint && (c.eflags & kIF)) || !b->cached)) {
    return;
  }
  --c.chain_budget;
  const uint32_t lin = c.seg[kCs].base + c.eip;
  const uint32_t tag = jump_tag(c);
  bool from_chain;
  Block* n = find_block_fast(c, b, c.block_lin, lin, tag, from_chain);
  if (n == nullptr) return;
  if (!from_chain) link_blocks(b, n, lin, tag);
  // Every run counts towards the JIT's threshold (jit.h): a block that
  // becomes hot here is compiled, and its first handler then enters the
  // compiled code (Jit::enter_compiled).
  if (EMU_UNLIKELY(++n->jit_hits >= c.jit_threshold)) jit_count_hot(c, n);
  c.irq_shadow = false;  // it covered the instruction after STI / MOV SS at most
  c.current_block = n;
  c.block_eip = c.eip;
  c.block_lin = lin;
  ++c.blocks_chained;
  const Insn& f = *n->insns();
  f.fn(c, f);
}

}  // namespace twoostwo::vmcore::emu
