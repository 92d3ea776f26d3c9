#include "vmcore/cpu_state.h"

#include <fmt/format.h>

namespace twoostwo::vmcore {

CpuState CpuState::reset() {
  CpuState s;
  auto data = [](Segment& seg) {
    seg = Segment{};
    seg.type = 0x3;  // read/write, accessed
  };
  data(s.ds);
  data(s.es);
  data(s.fs);
  data(s.gs);
  data(s.ss);
  s.cs = Segment{};
  s.cs.selector = 0xF000;
  s.cs.base = 0xFFFF0000;
  s.cs.type = 0xB;  // execute/read, accessed
  s.tr = Segment{};
  s.tr.s = false;
  s.tr.type = 0xB;  // busy 32-bit TSS (what KVM expects for a usable TR)
  s.ldt = Segment{};
  s.ldt.s = false;
  s.ldt.type = 0x2;
  s.rip = 0xFFF0;
  s.rflags = 0x2;
  s.cr0 = 0x60000010;
  s.gpr[kRdx] = 0x600;  // processor signature family 6
  return s;
}

CpuMode cpu_mode(const CpuState& s) {
  if ((s.cr0 & 1) == 0) return CpuMode::kReal;
  if ((s.efer & (1u << 10)) != 0) return s.cs.l ? CpuMode::kLong64 : CpuMode::kCompat32;
  return s.cs.db ? CpuMode::kProtected32 : CpuMode::kProtected16;
}

std::string format_registers(const CpuState& s) {
  static constexpr const char* kNames[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                             "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};
  std::string out;
  for (unsigned i = 0; i < 16; ++i) {
    out += fmt::format("{:>3}={:016x}{}", kNames[i], s.gpr[i], (i % 4 == 3) ? "\n" : "  ");
  }
  out += fmt::format("rip={:016x}  rflags={:08x}\n", s.rip, s.rflags);
  auto seg = [&](const char* n, const Segment& g) {
    out += fmt::format("{}={:04x} base={:016x} limit={:08x} type={:x} s={} dpl={} p={} db={} l={} g={}\n", n,
                       g.selector, g.base, g.limit, g.type, int(g.s), int(g.dpl), int(g.present), int(g.db),
                       int(g.l), int(g.g));
  };
  seg("cs", s.cs);
  seg("ss", s.ss);
  seg("ds", s.ds);
  seg("es", s.es);
  seg("fs", s.fs);
  seg("gs", s.gs);
  seg("tr", s.tr);
  seg("ldt", s.ldt);
  out += fmt::format("gdt={:016x}/{:04x} idt={:016x}/{:04x}\n", s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit);
  out += fmt::format("cr0={:08x} cr2={:016x} cr3={:016x} cr4={:08x} efer={:x}\n", s.cr0, s.cr2, s.cr3, s.cr4,
                     s.efer);
  return out;
}

}  // namespace twoostwo::vmcore
