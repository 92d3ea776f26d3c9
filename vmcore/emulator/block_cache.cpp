#include "vmcore/emulator/block_cache.h"

#include <iterator>

namespace twoostwo::vmcore::emu {

BlockCache::BlockCache(uint64_t ram_size, size_t max_blocks)
    : max_blocks_(max_blocks == 0 ? 1 : max_blocks),
      table_(size_t{1} << kBucketBits, nullptr),
      page_head_(static_cast<size_t>((ram_size + 0xFFF) >> 12), nullptr),
      code_pages_(static_cast<size_t>((ram_size + 0xFFF) >> 12) + 1, 0) {}

BlockCache::~BlockCache() {
  flush();
  collect();
}

Block* BlockCache::insert(BlockPtr block) {
  if (count_ >= max_blocks_) flush();
  Block* b = block.release();
  const uint32_t page = b->phys >> 12;
  if (page >= page_head_.size()) {  // not RAM: cannot be tracked, must not be cached
    b->cached = false;
    b->dead = true;
    dead_.push_back(b);
    return b;
  }
  b->cached = true;
  b->dead = false;
  const uint32_t h = bucket(b->phys);
  b->hash_next = table_[h];
  table_[h] = b;
  b->page_next = page_head_[page];
  page_head_[page] = b;
  mark_code_page(page);
  if (b->phys2 != Block::kNoPhys2) {
    const uint32_t page2 = b->phys2 >> 12;
    if (page2 < page_head_.size()) {
      b->page_next2 = page_head_[page2];
      page_head_[page2] = b;
      mark_code_page(page2);
    }
  }
  ++count_;
  return b;
}

void BlockCache::unlink(Block* b) {
  Block** pp = &table_[bucket(b->phys)];
  while (*pp != nullptr && *pp != b) pp = &(*pp)->hash_next;
  if (*pp == b) *pp = b->hash_next;
  b->hash_next = nullptr;
  b->dead = true;
  dead_.push_back(b);
  if (cpu_ != nullptr) ++cpu_->code_epoch;
  --count_;
  ++invalidated_;
}

void BlockCache::mark_code_page(uint32_t page) {
  if (!code_pages_[page]) {
    code_pages_[page] = 1;
    if (cpu_ != nullptr) cpu_->protect_code_page(page << 12);
  }
}

void BlockCache::invalidate_page(uint32_t first_page) {
  // A block that crosses pages is in the lists of both; dropping it from one
  // drops the other page's blocks too, so no list keeps a freed block.
  uint32_t pending[8];
  unsigned npending = 0;
  pending[npending++] = first_page;
  while (npending > 0) {
    const uint32_t page = pending[--npending];
    if (page >= page_head_.size()) continue;
    Block* b = page_head_[page];
    page_head_[page] = nullptr;
    code_pages_[page] = 0;
    while (b != nullptr) {
      const bool via_second = b->phys2 != Block::kNoPhys2 && (b->phys2 >> 12) == page && (b->phys >> 12) != page;
      Block* next = via_second ? b->page_next2 : b->page_next;
      if (!b->dead) {
        unlink(b);
        if (b->phys2 != Block::kNoPhys2) {
          const uint32_t other = via_second ? b->phys >> 12 : b->phys2 >> 12;
          if (other != page && page_head_[other] != nullptr) {
            if (npending < std::size(pending)) pending[npending++] = other;
            else invalidate_page(other);
          }
        }
      }
      b = next;
    }
  }
}

void BlockCache::invalidate_range(uint64_t gpa, uint64_t length) {
  if (length == 0) return;
  const uint64_t first = gpa >> 12;
  const uint64_t last = (gpa + length - 1) >> 12;
  for (uint64_t p = first; p <= last && p < page_head_.size(); ++p) {
    if (code_pages_[p]) invalidate_page(static_cast<uint32_t>(p));
  }
}

void BlockCache::flush() {
  ++flushes_;
  for (size_t p = 0; p < page_head_.size(); ++p) {
    if (page_head_[p] != nullptr) invalidate_page(static_cast<uint32_t>(p));
  }
}

void BlockCache::free_dead() {
  for (Block* b : dead_) BlockDeleter{}(b);
  dead_.clear();
}

}  // namespace twoostwo::vmcore::emu
