#include "vmcore/fault_report.h"

#include <Zydis/Zydis.h>
#include <fmt/format.h>

#include <array>
#include <vector>

namespace twoostwo::vmcore {
namespace {

constexpr uint64_t kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pse = 1ull << 4;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLma = 1ull << 10;

std::optional<uint64_t> read_entry(const bus::GuestMemory& mem, uint64_t gpa, unsigned width) {
  std::array<uint8_t, 8> b{};
  if (!mem.read(gpa, std::span<uint8_t>(b.data(), width))) return std::nullopt;
  uint64_t v = 0;
  for (unsigned i = 0; i < width; ++i) v |= uint64_t{b[i]} << (8 * i);
  return v;
}

ZydisMachineMode zydis_mode(const CpuState& s) {
  switch (cpu_mode(s)) {
    case CpuMode::kReal: return ZYDIS_MACHINE_MODE_REAL_16;
    case CpuMode::kProtected16: return ZYDIS_MACHINE_MODE_LEGACY_16;
    case CpuMode::kProtected32: return ZYDIS_MACHINE_MODE_LEGACY_32;
    case CpuMode::kLong64: return ZYDIS_MACHINE_MODE_LONG_64;
    case CpuMode::kCompat32: return ZYDIS_MACHINE_MODE_LONG_COMPAT_32;
  }
  return ZYDIS_MACHINE_MODE_LEGACY_32;
}

/// Read `len` bytes at a linear address, page by page; stops at the first
/// unmapped byte and returns what it could read.
std::vector<uint8_t> read_linear(const CpuState& s, const bus::GuestMemory& mem, uint64_t linear, size_t len) {
  std::vector<uint8_t> out;
  out.reserve(len);
  while (out.size() < len) {
    const uint64_t addr = linear + out.size();
    auto phys = linear_to_physical(s, mem, addr);
    if (!phys) break;
    const size_t in_page = 4096 - (addr & 4095);
    const size_t n = std::min(in_page, len - out.size());
    auto bytes = mem.slice(*phys, n);
    if (bytes.empty()) break;
    out.insert(out.end(), bytes.begin(), bytes.end());
  }
  return out;
}

}  // namespace

std::optional<uint64_t> linear_to_physical(const CpuState& s, const bus::GuestMemory& mem, uint64_t linear) {
  if ((s.cr0 & kCr0Pg) == 0) return linear & 0xFFFFFFFFull;
  if ((s.efer & kEferLma) != 0) {
    uint64_t table = s.cr3 & 0x000FFFFFFFFFF000ull;
    for (int level = 3; level >= 0; --level) {
      const uint64_t index = (linear >> (12 + 9 * level)) & 0x1FF;
      auto e = read_entry(mem, table + index * 8, 8);
      if (!e || (*e & 1) == 0) return std::nullopt;
      const uint64_t frame = *e & 0x000FFFFFFFFFF000ull;
      if (level == 2 && (*e & 0x80)) return (frame & ~0x3FFFFFFFull) | (linear & 0x3FFFFFFF);
      if (level == 1 && (*e & 0x80)) return (frame & ~0x1FFFFFull) | (linear & 0x1FFFFF);
      if (level == 0) return frame | (linear & 0xFFF);
      table = frame;
    }
    return std::nullopt;
  }
  linear &= 0xFFFFFFFFull;
  if ((s.cr4 & kCr4Pae) != 0) {
    auto pdpte = read_entry(mem, (s.cr3 & 0xFFFFFFE0ull) + ((linear >> 30) & 3) * 8, 8);
    if (!pdpte || (*pdpte & 1) == 0) return std::nullopt;
    auto pde = read_entry(mem, (*pdpte & 0x000FFFFFFFFFF000ull) + ((linear >> 21) & 0x1FF) * 8, 8);
    if (!pde || (*pde & 1) == 0) return std::nullopt;
    if (*pde & 0x80) return (*pde & 0x000FFFFFFFE00000ull) | (linear & 0x1FFFFF);
    auto pte = read_entry(mem, (*pde & 0x000FFFFFFFFFF000ull) + ((linear >> 12) & 0x1FF) * 8, 8);
    if (!pte || (*pte & 1) == 0) return std::nullopt;
    return (*pte & 0x000FFFFFFFFFF000ull) | (linear & 0xFFF);
  }
  auto pde = read_entry(mem, (s.cr3 & 0xFFFFF000ull) + ((linear >> 22) & 0x3FF) * 4, 4);
  if (!pde || (*pde & 1) == 0) return std::nullopt;
  if ((*pde & 0x80) && (s.cr4 & kCr4Pse)) return (*pde & 0xFFC00000ull) | (linear & 0x3FFFFF);
  auto pte = read_entry(mem, (*pde & 0xFFFFF000ull) + ((linear >> 12) & 0x3FF) * 4, 4);
  if (!pte || (*pte & 1) == 0) return std::nullopt;
  return (*pte & 0xFFFFF000ull) | (linear & 0xFFF);
}

std::string disassemble(const CpuState& s, const bus::GuestMemory& mem, uint64_t linear, unsigned count,
                        uint64_t mark) {
  const std::vector<uint8_t> code = read_linear(s, mem, linear, size_t{count} * 15);
  std::string out;
  size_t offset = 0;
  const ZydisMachineMode mode = zydis_mode(s);
  for (unsigned i = 0; i < count && offset < code.size(); ++i) {
    ZydisDisassembledInstruction insn;
    const uint64_t address = linear + offset;
    if (!ZYAN_SUCCESS(
            ZydisDisassembleIntel(mode, address, code.data() + offset, code.size() - offset, &insn))) {
      out += fmt::format("{} {:016x}: {:02x}    (undecodable)\n", address == mark ? "=>" : "  ", address,
                         code[offset]);
      break;
    }
    std::string bytes;
    for (unsigned b = 0; b < insn.info.length; ++b) bytes += fmt::format("{:02x} ", code[offset + b]);
    out += fmt::format("{} {:016x}: {:<30} {}\n", address == mark ? "=>" : "  ", address, bytes, insn.text);
    offset += insn.info.length;
  }
  if (code.empty()) out += fmt::format("   {:016x}: (not mapped or outside RAM)\n", linear);
  return out;
}

std::string fault_report(const std::string& reason, const CpuState& s, const bus::GuestMemory& mem) {
  std::string out = fmt::format("twoostwo-vmm: fault: {}\n", reason);
  out += format_registers(s);
  const uint64_t pc = (cpu_mode(s) == CpuMode::kLong64) ? s.rip : ((s.cs.base + s.rip) & 0xFFFFFFFFull);
  const uint64_t before = pc >= 32 ? pc - 32 : 0;
  const std::vector<uint8_t> prior = read_linear(s, mem, before, pc - before);
  out += fmt::format("bytes before {:x}:", pc);
  for (uint8_t b : prior) out += fmt::format(" {:02x}", b);
  out += "\ncode at cs:rip (linear " + fmt::format("{:x}", pc) + "):\n";
  out += disassemble(s, mem, pc, 8, pc);
  return out;
}

}  // namespace twoostwo::vmcore
