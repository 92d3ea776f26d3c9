// The fault report: page walks as the CPU does them, Zydis disassembly.
#include "vmcore/fault_report.h"

#include <gtest/gtest.h>

#include <vector>

namespace twoostwo::vmcore {
namespace {

void put32(std::vector<uint8_t>& ram, uint64_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) ram[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
void put64(std::vector<uint8_t>& ram, uint64_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) ram[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

TEST(FaultReportTest, Walks32BitPagingWith4KAnd4MPages) {
  std::vector<uint8_t> ram(16 << 20);
  bus::GuestMemory mem(ram.data(), ram.size());
  CpuState s = CpuState::reset();
  s.cr0 = 0x80000011;
  s.cr4 = 0x10;  // PSE
  s.cr3 = 0x1000;
  put32(ram, 0x1000 + (0xC0000000u >> 22) * 4, 0x00000083);  // 4 MiB page at 0
  put32(ram, 0x1000 + (0x08048000u >> 22) * 4, 0x2003);      // page table at 0x2000
  put32(ram, 0x2000 + ((0x08048000u >> 12) & 0x3FF) * 4, 0x00345007);
  EXPECT_EQ(linear_to_physical(s, mem, 0xC0123456), std::optional<uint64_t>(0x123456));
  EXPECT_EQ(linear_to_physical(s, mem, 0x08048ABC), std::optional<uint64_t>(0x345ABC));
  EXPECT_EQ(linear_to_physical(s, mem, 0x40000000), std::nullopt);
  s.cr4 = 0;  // without PSE the PS bit is ignored: the entry names a page table at 0
  EXPECT_EQ(linear_to_physical(s, mem, 0xC0000000), std::optional<uint64_t>(std::nullopt));
}

TEST(FaultReportTest, Walks4LevelPagingWith2MPages) {
  std::vector<uint8_t> ram(1 << 20);
  bus::GuestMemory mem(ram.data(), ram.size());
  CpuState s = CpuState::reset();
  s.cr0 = 0x80000011;
  s.cr4 = 0x20;
  s.efer = 0x500;
  s.cs.l = true;
  s.cr3 = 0x9000;
  put64(ram, 0x9000, 0xA003);
  put64(ram, 0xA000, 0xB003);
  put64(ram, 0xB000 + 8, 0x200083);  // 2 MiB page: [2 MiB, 4 MiB)
  EXPECT_EQ(linear_to_physical(s, mem, 0x212345), std::optional<uint64_t>(0x212345));
  EXPECT_EQ(linear_to_physical(s, mem, 0x12345), std::nullopt);
}

TEST(FaultReportTest, DisassemblesAtRipAndMarksIt) {
  std::vector<uint8_t> ram(1 << 20);
  bus::GuestMemory mem(ram.data(), ram.size());
  CpuState s = CpuState::reset();
  s.cr0 = 0x11;
  s.cs.db = true;
  s.cs.base = 0;
  s.rip = 0x1000;
  const uint8_t code[] = {0x0F, 0x0B, 0xF4, 0xEB, 0xFE};  // ud2; hlt; jmp $
  std::copy(std::begin(code), std::end(code), ram.begin() + 0x1000);
  const std::string report = fault_report("triple fault", s, mem);
  EXPECT_NE(report.find("twoostwo-vmm: fault: triple fault"), std::string::npos);
  EXPECT_NE(report.find("=> 0000000000001000: 0f 0b"), std::string::npos) << report;
  EXPECT_NE(report.find("ud2"), std::string::npos);
  EXPECT_NE(report.find("hlt"), std::string::npos);
  EXPECT_NE(report.find("rip=0000000000001000"), std::string::npos);
}

}  // namespace
}  // namespace twoostwo::vmcore
