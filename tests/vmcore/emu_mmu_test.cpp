// The emulator CPU's memory paths, driven directly (vmcore/emulator/cpu.h):
// segmentation checks, the 2-level page walk with 4 KiB and 4 MiB pages,
// accessed/dirty bits, U/S, R/W and CR0.WP with the exact #PF error codes
// and CR2 (Intel SDM vol. 3, 4.3, 4.6-4.8), TLB behaviour (4.10) and the
// invalidation of cached code on stores.
#include <gtest/gtest.h>

#include <functional>

#include "tests/vmcore/emu_harness.h"
#include "vmcore/emulator/block_cache.h"
#include "vmcore/emulator/cpu.h"

namespace twoostwo::vmcore::emutest {
namespace {

using emu::Cpu;
using emu::CpuException;

constexpr uint32_t kPd = 0x100000;       // page directory
constexpr uint32_t kPt = 0x101000;       // first page table (covers 0..4 MiB)
constexpr uint32_t P = 1, W = 2, U = 4, A = 0x20, D = 0x40, PS = 0x80, G = 0x100;

class EmuMmu : public ::testing::Test {
 protected:
  void SetUp() override {
    cpu_.attach_ram(ram_.data(), static_cast<uint32_t>(ram_.size()));
    ASSERT_TRUE(emu::from_cpu_state(cpu_, flat32_state(ram_, 0x10000)));
  }
  void pde(uint32_t lin, uint32_t v) { ram_.put32(kPd + (lin >> 22) * 4, v); }
  void pte(uint32_t lin, uint32_t v) { ram_.put32(kPt + ((lin >> 12) & 0x3FF) * 4, v); }
  uint32_t pte_of(uint32_t lin) const { return ram_.u32(kPt + ((lin >> 12) & 0x3FF) * 4); }
  void paging(bool wp = false, uint32_t cr4 = 0) {
    cpu_.set_cr4(cr4);
    cpu_.set_cr3(kPd);
    cpu_.set_cr0(cpu_.cr0 | emu::kCr0Pg | (wp ? emu::kCr0Wp : 0));
  }
  // Runs `f`, expecting a #PF with `error` and CR2 = `cr2`.
  void expect_pf(const std::function<void()>& f, uint32_t error, uint32_t cr2) {
    try {
      f();
      ADD_FAILURE() << "no page fault";
    } catch (const CpuException& e) {
      EXPECT_EQ(e.vector, emu::kVecPF);
      EXPECT_TRUE(e.has_error);
      EXPECT_EQ(e.error, error);
      EXPECT_EQ(cpu_.cr2, cr2);
    }
  }
  void expect_fault(const std::function<void()>& f, uint8_t vector, uint32_t error) {
    try {
      f();
      ADD_FAILURE() << "no fault";
    } catch (const CpuException& e) {
      EXPECT_EQ(e.vector, vector);
      EXPECT_EQ(e.error, error);
    }
  }

  GuestRam ram_{8 << 20};
  Cpu cpu_;
};

TEST_F(EmuMmu, FourKibPageWalkSetsAccessedAndDirtyBits) {
  pde(0x400000, kPt | P | W | U);  // 4..8 MiB through the table at kPt
  pte(0x401000, 0x205000 | P | W);
  paging();
  ram_.put32(0x205010, 0x12345678);
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x401010), 0x12345678u);
  EXPECT_EQ(ram_.u32(kPd + 4) & (A | D), A);  // PDE: accessed only (no D in a PDE for 4 KiB pages)
  EXPECT_EQ(pte_of(0x401000) & (A | D), A);    // read: A, not D
  cpu_.write<4>(emu::kDs, 0x401020, 0xCAFE);   // the TLB entry had no write permission yet (D=0)
  EXPECT_EQ(pte_of(0x401000) & (A | D), A | D);
  EXPECT_EQ(ram_.u32(0x205020), 0xCAFEu);
}

TEST_F(EmuMmu, FourMibPagesNeedCr4Pse) {
  pde(0x800000, 0x400000 | P | W | PS);  // 8..12 MiB -> 4..8 MiB
  ram_.put32(0x400000 + 0x123454, 0xFEEDF00D);
  paging(false, emu::kCr4Pse);
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x800000 + 0x123454), 0xFEEDF00Du);
  EXPECT_EQ(ram_.u32(kPd + 8) & (A | D), A);
  cpu_.write<2>(emu::kDs, 0x800000 + 0x123454, 0xBEEF);
  EXPECT_EQ(ram_.u32(kPd + 8) & (A | D), A | D);  // a 4 MiB page's D bit is in the PDE
  // Without CR4.PSE the PS bit is ignored: the PDE is a page-table pointer
  // (to 0x400000, whose zero entries are not present).
  cpu_.set_cr4(0);
  expect_pf([&] { cpu_.read<4>(emu::kDs, 0x800000); }, 0, 0x800000);
}

TEST_F(EmuMmu, ReservedBitsOfA4MibPdeFault) {
  pde(0x800000, 0x400000 | P | W | PS | (1u << 13));  // bit 13: PSE-36 bits are reserved here
  paging(false, emu::kCr4Pse);
  expect_pf([&] { cpu_.read<4>(emu::kDs, 0x800010); }, emu::kPfPresent | emu::kPfReserved, 0x800010);
}

TEST_F(EmuMmu, NotPresentErrorCodes) {
  pde(0x400000, kPt | P | W | U);
  paging();
  // PTE not present: P=0; W for a write; U for a CPL-3 access.
  expect_pf([&] { cpu_.read<1>(emu::kDs, 0x403007); }, 0, 0x403007);
  expect_pf([&] { cpu_.write<4>(emu::kDs, 0x404000, 1); }, emu::kPfWrite, 0x404000);
  cpu_.set_cpl(3);
  expect_pf([&] { cpu_.write<4>(emu::kDs, 0x404000, 1); }, emu::kPfWrite | emu::kPfUser, 0x404000);
  // PDE not present.
  expect_pf([&] { cpu_.read<4>(emu::kDs, 0xC00000); }, emu::kPfUser, 0xC00000);
}

TEST_F(EmuMmu, UserSupervisorAndReadWrite) {
  pde(0x400000, kPt | P | W | U);
  pte(0x400000, 0x200000 | P | W);      // supervisor, writable
  pte(0x401000, 0x201000 | P | U);      // user, read-only
  pte(0x402000, 0x202000 | P | W | U);  // user, writable
  paging();
  cpu_.set_cpl(3);
  expect_pf([&] { cpu_.read<4>(emu::kDs, 0x400000); }, emu::kPfPresent | emu::kPfUser, 0x400000);
  expect_pf([&] { cpu_.write<4>(emu::kDs, 0x400004, 1); }, emu::kPfPresent | emu::kPfWrite | emu::kPfUser,
            0x400004);
  EXPECT_NO_THROW(cpu_.read<4>(emu::kDs, 0x401000));
  expect_pf([&] { cpu_.write<4>(emu::kDs, 0x401008, 1); }, emu::kPfPresent | emu::kPfWrite | emu::kPfUser,
            0x401008);
  EXPECT_NO_THROW(cpu_.write<4>(emu::kDs, 0x402000, 1));
  // A user page is writable by the supervisor through a writable PDE and a
  // read-only PTE only while CR0.WP = 0 (SDM 4.6.1).
  cpu_.set_cpl(0);
  EXPECT_NO_THROW(cpu_.write<4>(emu::kDs, 0x401000, 7));
  EXPECT_EQ(ram_.u32(0x201000), 7u);
  cpu_.set_cr0(cpu_.cr0 | emu::kCr0Wp);
  expect_pf([&] { cpu_.write<4>(emu::kDs, 0x401000, 8); }, emu::kPfPresent | emu::kPfWrite, 0x401000);
  // A read-only PDE makes the whole 4 MiB read-only for users.
  pde(0x400000, kPt | P | U);
  cpu_.flush_tlb(true);
  cpu_.set_cpl(3);
  expect_pf([&] { cpu_.write<4>(emu::kDs, 0x402000, 1); }, emu::kPfPresent | emu::kPfWrite | emu::kPfUser,
            0x402000);
}

TEST_F(EmuMmu, SystemAccessesAreSupervisorEvenFromRing3) {
  pde(0x400000, kPt | P | W | U);
  pte(0x400000, 0x200000 | P | W);  // supervisor page
  paging();
  cpu_.set_cpl(3);
  ram_.put32(0x200000, 0x5151);
  EXPECT_EQ(cpu_.read_lin_priv(0x400000, 4, emu::Priv::kSys), 0x5151u);
  expect_pf([&] { cpu_.read_lin_priv(0x400000, 4, emu::Priv::kCurrent); }, emu::kPfPresent | emu::kPfUser,
            0x400000);
}

TEST_F(EmuMmu, AccessAcrossAPageBoundaryChecksBothPagesFirst) {
  pde(0x400000, kPt | P | W | U);
  pte(0x400000, 0x200000 | P | W);
  paging();
  ram_.put32(0x200FFC, 0xAAAAAAAA);
  // The second page is not present: CR2 is its first byte, nothing is written.
  expect_pf([&] { cpu_.write<4>(emu::kDs, 0x400FFE, 0x11223344); }, emu::kPfWrite, 0x401000);
  EXPECT_EQ(ram_.u32(0x200FFC), 0xAAAAAAAAu);
  pte(0x401000, 0x300000 | P | W);  // a not-present entry is never cached: no INVLPG needed
  cpu_.write<4>(emu::kDs, 0x400FFE, 0x11223344);
  EXPECT_EQ(ram_.u16(0x200FFE), 0x3344);
  EXPECT_EQ(ram_.u16(0x300000), 0x1122);
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x400FFE), 0x11223344u);
}

TEST_F(EmuMmu, TlbKeepsTranslationsUntilInvlpgOrCr3) {
  pde(0x400000, kPt | P | W);
  pte(0x400000, 0x200000 | P | W);
  paging();
  ram_.put32(0x200000, 1);
  ram_.put32(0x210000, 2);
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x400000), 1u);
  pte(0x400000, 0x210000 | P | W);
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x400000), 1u);  // stale until invalidated, as on hardware
  cpu_.invlpg(0x400000);
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x400000), 2u);
  pte(0x400000, 0x200000 | P | W);
  cpu_.set_cr3(kPd);
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x400000), 1u);
}

TEST_F(EmuMmu, GlobalPagesSurviveCr3ButNotInvlpg) {
  pde(0x400000, kPt | P | W);
  pte(0x400000, 0x200000 | P | W | G);
  paging(false, emu::kCr4Pge);
  ram_.put32(0x200000, 1);
  ram_.put32(0x210000, 2);
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x400000), 1u);
  pte(0x400000, 0x210000 | P | W | G);
  cpu_.set_cr3(kPd);
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x400000), 1u);  // global: kept across the CR3 write
  cpu_.invlpg(0x400000);
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x400000), 2u);
  // Toggling CR4.PGE flushes everything, global entries included.
  pte(0x400000, 0x200000 | P | W | G);
  cpu_.set_cr4(emu::kCr4Pge);  // unchanged: no flush
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x400000), 2u);
  cpu_.set_cr4(0);
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x400000), 1u);
}

TEST_F(EmuMmu, InvlpgInsideA4MibPageDropsTheWholeMapping) {
  pde(0x800000, 0x400000 | P | W | PS);
  paging(false, emu::kCr4Pse);
  ram_.put32(0x400000 + 0x5000, 1);
  ram_.put32(0x000000 + 0x5000, 2);
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x805000), 1u);
  pde(0x800000, 0x000000 | P | W | PS);
  cpu_.invlpg(0x800000);  // another 4 KiB part of the same 4 MiB page
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x805000), 2u);
}

TEST_F(EmuMmu, SegmentChecks) {
  // Read-only data segment: writes #GP(0); SS: limit violations are #SS(0).
  ram_.put64(kGdt + 0x48, descriptor(0, 0xFFFFF, 0x90, 0xC));  // data, read-only
  ram_.put64(kGdt + 0x50, descriptor(0, 0xFFFFF, 0x98, 0xC));  // code, execute-only
  ram_.put64(kGdt + 0x58, descriptor(0, 0x0FFF, 0x96, 0x0));   // 16-bit expand-down, limit 0xfff
  cpu_.gdt_limit = 0x5F;
  cpu_.load_segment(emu::kEs, 0x48);
  EXPECT_NO_THROW(cpu_.read<4>(emu::kEs, 0x100));
  expect_fault([&] { cpu_.write<4>(emu::kEs, 0x100, 1); }, emu::kVecGP, 0);
  expect_fault([&] { cpu_.load_segment(emu::kDs, 0x50); }, emu::kVecGP, 0x50);  // not readable
  cpu_.load_segment(emu::kFs, 0x58);
  EXPECT_NO_THROW(cpu_.read<2>(emu::kFs, 0x1000));
  EXPECT_NO_THROW(cpu_.read<2>(emu::kFs, 0xFFFE));
  expect_fault([&] { cpu_.read<2>(emu::kFs, 0xFFFF); }, emu::kVecGP, 0);  // beyond 0xffff (B = 0)
  expect_fault([&] { cpu_.read<1>(emu::kFs, 0xFFF); }, emu::kVecGP, 0);
  ram_.put64(kGdt + 0x38, descriptor(0, 0xFFF, 0x92, 0x4));
  cpu_.load_segment(emu::kSs, 0x38);
  expect_fault([&] { cpu_.push<4>(0); cpu_.write<4>(emu::kSs, 0x2000, 0); }, emu::kVecSS, 0);
  // The null selector may be loaded into DS, but any access then faults.
  cpu_.load_segment(emu::kDs, 0);
  expect_fault([&] { cpu_.read<1>(emu::kDs, 0); }, emu::kVecGP, 0);
  // A DPL-0 data segment cannot be loaded from CPL 3.
  cpu_.set_cpl(3);
  expect_fault([&] { cpu_.load_segment(emu::kGs, 0x10); }, emu::kVecGP, 0x10);
  expect_fault([&] { cpu_.load_segment(emu::kGs, 0x13); }, emu::kVecGP, 0x10);
  EXPECT_NO_THROW(cpu_.load_segment(emu::kGs, 0x23));
}

TEST_F(EmuMmu, StoresIntoCachedCodeInvalidateItsBlocks) {
  emu::BlockCache cache(ram_.size());
  cache.attach(&cpu_);
  cpu_.code_pages = cache.code_pages();
  cpu_.bind.cache = &cache;
  const emu::Insn insns[1] = {};
  auto block = emu::Block::create(insns);
  block->phys = 0x5000;
  block->byte_len = 16;
  cache.insert(std::move(block));
  ASSERT_NE(cache.find(0x5000, 0), nullptr);
  EXPECT_EQ(cpu_.read<4>(emu::kDs, 0x5000), 0u);  // reads leave it alone
  ASSERT_NE(cache.find(0x5000, 0), nullptr);
  cpu_.write<1>(emu::kDs, 0x5FFF, 1);  // any byte of the page
  EXPECT_EQ(cache.find(0x5000, 0), nullptr);
  EXPECT_TRUE(cpu_.stop_block);
  cache.collect();
}

TEST_F(EmuMmu, AFullBlockCacheDropsEverythingBeforeTheNextInsert) {
  emu::BlockCache cache(ram_.size(), 3);
  cache.attach(&cpu_);
  const emu::Insn insns[1] = {};
  auto add = [&](uint32_t phys) {
    auto block = emu::Block::create(insns);
    block->phys = phys;
    block->byte_len = 16;
    return cache.insert(std::move(block));
  };
  for (uint32_t phys : {0x1000u, 0x2000u, 0x3000u}) add(phys);
  EXPECT_EQ(cache.block_count(), 3u);
  EXPECT_FALSE(cache.has_dead());
  emu::Block* fourth = add(0x4000);
  EXPECT_EQ(cache.block_count(), 1u);
  EXPECT_EQ(cache.find(0x1000, 0), nullptr);
  EXPECT_EQ(cache.find(0x3000, 0), nullptr);
  EXPECT_EQ(cache.find(0x4000, 0), fourth);
  EXPECT_TRUE(cache.has_dead());  // freed by collect(), once no block runs
  cache.collect();
  EXPECT_FALSE(cache.has_dead());
  EXPECT_EQ(cache.find(0x4000, 0), fourth);
}

}  // namespace
}  // namespace twoostwo::vmcore::emutest
