// The cache of decoded blocks of the emulator engine, keyed by the guest-
// physical address of a block's first byte and the decoding mode (real,
// 16-bit or 32-bit protected). Every RAM page that holds the start of a
// cached block is marked in a per-page table; a store into a marked page (by
// the CPU, a string instruction, or a device through
// EmulatorEngine::invalidate_code) drops all blocks of that page, so
// self-modifying and freshly loaded code run correctly.
//
// Blocks end at the page end; an instruction that crosses into the next page
// is a block of its own, which is listed under both pages (Block::phys2) and
// is valid only while the next linear page still maps to phys2.
//
// Invalidated blocks are unlinked at once but freed only at `collect()`,
// which the engine calls between blocks, so a block that invalidates itself
// (self-modifying code) can finish its current instruction safely.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "vmcore/emulator/insn.h"

namespace twoostwo::vmcore::emu {

class BlockCache {
 public:
  /// At most this many blocks by default: about 8 MiB of decoded code
  /// (a block of Debian's kernel averages ~250 bytes: a 128-byte header and
  /// ~3 instructions of 32). Booting decodes ~67,000 blocks, most of them
  /// run once; the working set of a booted guest is ~24,000. Dropping
  /// everything when full, as QEMU does when its code buffer fills
  /// (tb_flush), keeps a monitor's memory bounded — a lab runs many — at
  /// the cost of decoding the hot code again once per fill.
  static constexpr size_t kDefaultMaxBlocks = size_t{1} << 15;

  /// `ram_size`: bytes of guest RAM (pages beyond it are never code pages);
  /// `max_blocks`: when inserting would exceed it, everything is dropped first.
  explicit BlockCache(uint64_t ram_size, size_t max_blocks = kDefaultMaxBlocks);
  ~BlockCache();
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  /// The CPU whose TLB must drop write access to a page when it first holds code.
  void attach(Cpu* cpu) { cpu_ = cpu; }

  EMU_INLINE Block* find(uint32_t phys, uint32_t mode) const {
    for (Block* b = table_[bucket(phys)]; b != nullptr; b = b->hash_next) {
      if (b->phys == phys && b->mode == mode) return b;
    }
    return nullptr;
  }

  /// Take ownership of `block` and make it findable. Its page becomes a code
  /// page. If the cache is over its size limit, everything else is dropped
  /// first.
  Block* insert(BlockPtr block);

  /// Drop every block that starts in the RAM page `page` (a page number).
  void invalidate_page(uint32_t page);
  /// Drop the blocks of every page that [gpa, gpa + length) touches.
  void invalidate_range(uint64_t gpa, uint64_t length);
  /// Drop everything.
  void flush();
  /// Free blocks dropped since the last call (no block may be executing).
  void collect() {
    if (!dead_.empty()) free_dead();
  }
  /// True if blocks wait to be freed by collect().
  bool has_dead() const { return !dead_.empty(); }

  /// Per RAM page: nonzero if it holds the start of a cached block.
  const uint8_t* code_pages() const { return code_pages_.data(); }
  size_t block_count() const { return count_; }
  /// Times flush() has dropped everything (the JIT frees its code buffer
  /// once a flush's blocks are collected).
  uint64_t flushes() const { return flushes_; }
  uint64_t invalidated_blocks() const { return invalidated_; }

 private:
  static constexpr unsigned kBucketBits = 16;
  static EMU_INLINE uint32_t bucket(uint32_t phys) { return (phys * 0x9E3779B1u) >> (32 - kBucketBits); }
  void unlink(Block* b);
  void mark_code_page(uint32_t page);
  void free_dead();

  size_t max_blocks_;
  Cpu* cpu_ = nullptr;
  std::vector<Block*> table_;
  std::vector<Block*> page_head_;
  std::vector<uint8_t> code_pages_;
  std::vector<Block*> dead_;
  size_t count_ = 0;
  uint64_t invalidated_ = 0;
  uint64_t flushes_ = 0;
};

}  // namespace twoostwo::vmcore::emu
