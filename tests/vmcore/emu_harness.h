// Shared pieces of the emulator engine's tests (tests/vmcore/emu_*_test.cpp):
// guest RAM, small devices, the assembled programs of emuguests/ with their
// symbols, and a machine around an EmulatorEngine that enters a program in
// flat 32-bit protected mode.
//
// The protected-mode environment (EmuMachine::flat32):
//   GDT at 0x800:  0x08 ring-0 flat code (32-bit), 0x10 ring-0 flat data,
//                  0x18 ring-3 flat code, 0x20 ring-3 flat data, 0x28 a
//                  32-bit TSS at 0x3000 (SS0:ESP0 = 0x10:0xe000),
//                  0x30 16-bit code (base 0, limit 0xffff), 0x38 data with
//                  limit 0xfff, 0x40 expand-down data (limit 0xfff, B=1).
//   IDT at 0x1000: vectors 0..31 -> insn.S's exc_<n> (32-bit interrupt
//                  gates, DPL 3, so INT3/INTO from any ring reach them).
//   CR0 = PE|ET, paging off, CS = 0x08, DS = ES = FS = GS = SS = 0x10,
//   TR = 0x28, ESP = 0xf000, EFLAGS = 0x2.
// Devices: 0x3f8 a UART whose data-port writes are collected; 0x500 a
// pattern port (byte reads 3i+7, word reads at +2 0x1111j+0x0102).
#pragma once

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "vmcore/bus/io_bus.h"
#include "vmcore/emulator/emulator_engine.h"

namespace twoostwo::vmcore::emutest {

/// Guest RAM as the Monitor makes it: an anonymous private mapping.
class GuestRam {
 public:
  explicit GuestRam(uint64_t size) : size_(size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) host_ = static_cast<uint8_t*>(p);
  }
  ~GuestRam() {
    if (host_ != nullptr) ::munmap(host_, size_);
  }
  GuestRam(const GuestRam&) = delete;
  GuestRam& operator=(const GuestRam&) = delete;
  bus::GuestMemory memory() const { return {host_, size_}; }
  uint8_t* data() const { return host_; }
  uint64_t size() const { return size_; }
  uint32_t u32(uint64_t a) const {
    uint32_t v;
    std::memcpy(&v, host_ + a, 4);
    return v;
  }
  uint16_t u16(uint64_t a) const {
    uint16_t v;
    std::memcpy(&v, host_ + a, 2);
    return v;
  }
  void put32(uint64_t a, uint32_t v) const { std::memcpy(host_ + a, &v, 4); }
  void put64(uint64_t a, uint64_t v) const { std::memcpy(host_ + a, &v, 8); }
  void put16(uint64_t a, uint16_t v) const { std::memcpy(host_ + a, &v, 2); }

 private:
  uint8_t* host_ = nullptr;
  uint64_t size_;
};

/// An assembled program of emuguests/: its bytes and its symbols.
struct Program {
  std::vector<uint8_t> bytes;
  std::map<std::string, uint32_t> symbols;
  uint32_t sym(const std::string& name) const {
    auto it = symbols.find(name);
    EXPECT_NE(it, symbols.end()) << "no symbol " << name;
    return it == symbols.end() ? 0 : it->second;
  }
};

inline Program load_program(const std::string& name) {
  Program p;
  const std::string base = std::string(TWOOSTWO_TEST_DATA_DIR) + "/emuguests/" + name;
  std::ifstream bin(base + ".bin", std::ios::binary);
  EXPECT_TRUE(bin) << "cannot open " << base << ".bin (built by the twoostwo_emu_guests target)";
  p.bytes.assign(std::istreambuf_iterator<char>(bin), std::istreambuf_iterator<char>());
  std::ifstream sym(base + ".sym");
  std::string line;
  while (std::getline(sym, line)) {
    std::istringstream in(line);
    std::string addr, type, label;
    if (in >> addr >> type >> label) p.symbols[label] = static_cast<uint32_t>(std::stoul(addr, nullptr, 16));
  }
  return p;
}

class CollectingUart final : public bus::IoDevice {
 public:
  void read(uint64_t offset, std::span<uint8_t> data) override {
    std::fill(data.begin(), data.end(), static_cast<uint8_t>(offset == 5 ? 0x60 : 0x00));
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    if (offset == 0) output.append(data.begin(), data.end());
  }
  std::string_view name() const override { return "collecting uart"; }
  std::string output;
};

class PatternPort final : public bus::IoDevice {
 public:
  static uint8_t byte_at(unsigned i) { return static_cast<uint8_t>(3 * i + 7); }
  static uint16_t word_at(unsigned j) { return static_cast<uint16_t>(0x1111 * j + 0x0102); }
  void read(uint64_t offset, std::span<uint8_t> data) override {
    if (offset == 0 && data.size() == 1) {
      data[0] = byte_at(bytes_read++);
    } else if (offset == 2 && data.size() == 2) {
      const uint16_t w = word_at(words_read++);
      std::memcpy(data.data(), &w, 2);
    } else {
      std::fill(data.begin(), data.end(), uint8_t{0xFF});
    }
  }
  void write(uint64_t, std::span<const uint8_t>) override {}
  std::string_view name() const override { return "pattern"; }
  unsigned bytes_read = 0, words_read = 0;
};

inline uint64_t descriptor(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags) {
  return (limit & 0xFFFFull) | (uint64_t{base & 0xFFFFFF} << 16) | (uint64_t{access} << 40) |
         (uint64_t{(limit >> 16) & 0xF} << 48) | (uint64_t{flags & 0xFu} << 52) | (uint64_t{base >> 24} << 56);
}
inline uint64_t gate(uint16_t sel, uint32_t offset, uint8_t access) {
  return (offset & 0xFFFFull) | (uint64_t{sel} << 16) | (uint64_t{access} << 40) |
         (uint64_t{offset >> 16} << 48);
}

constexpr uint32_t kGdt = 0x800, kIdt = 0x1000, kTss = 0x3000;

/// Writes the GDT, the TSS and (with `program`'s exc_<n>) the IDT, and
/// returns the flat 32-bit entry state at `eip`.
inline CpuState flat32_state(const GuestRam& ram, uint32_t eip, const Program* program = nullptr) {
  const uint64_t gdt[] = {
      0,
      descriptor(0, 0xFFFFF, 0x9A, 0xC),  // 0x08 ring-0 code
      descriptor(0, 0xFFFFF, 0x92, 0xC),  // 0x10 ring-0 data
      descriptor(0, 0xFFFFF, 0xFA, 0xC),  // 0x18 ring-3 code
      descriptor(0, 0xFFFFF, 0xF2, 0xC),  // 0x20 ring-3 data
      descriptor(kTss, 0x67, 0x8B, 0x0),  // 0x28 32-bit TSS (busy)
      descriptor(0, 0xFFFF, 0x9A, 0x0),   // 0x30 16-bit code
      descriptor(0, 0xFFF, 0x92, 0x4),    // 0x38 data, limit 0xfff
      descriptor(0, 0xFFF, 0x96, 0x4),    // 0x40 expand-down data, limit 0xfff, B=1
  };
  for (size_t k = 0; k < std::size(gdt); ++k) ram.put64(kGdt + 8 * k, gdt[k]);
  std::memset(ram.data() + kTss, 0, 0x68);
  ram.put32(kTss + 4, 0xe000);
  ram.put32(kTss + 8, 0x10);
  ram.put16(kTss + 0x66, 0x68);  // no I/O bitmap
  if (program != nullptr) {
    for (unsigned v = 0; v < 32; ++v) {
      ram.put64(kIdt + 8 * v, gate(0x08, program->sym("exc_" + std::to_string(v)), 0xEE));
    }
  }
  CpuState s = CpuState::reset();
  s.gpr = {};
  s.gpr[kRsp] = 0xf000;
  s.rip = eip;
  s.rflags = 0x2;
  auto flat = [](uint16_t sel, uint8_t type) {
    Segment g;
    g.selector = sel;
    g.base = 0;
    g.limit = 0xFFFFFFFF;
    g.type = type;
    g.s = true;
    g.dpl = 0;
    g.present = true;
    g.db = true;
    g.g = true;
    return g;
  };
  s.cs = flat(0x08, 0xB);
  s.ds = s.es = s.fs = s.gs = s.ss = flat(0x10, 0x3);
  s.tr = Segment{};
  s.tr.selector = 0x28;
  s.tr.base = kTss;
  s.tr.limit = 0x67;
  s.tr.type = 0xB;
  s.tr.s = false;
  s.tr.present = true;
  s.ldt = Segment{};
  s.ldt.unusable = true;
  s.gdt = {kGdt, static_cast<uint16_t>(std::size(gdt) * 8 - 1)};
  s.idt = {kIdt, program != nullptr ? uint16_t{32 * 8 - 1} : uint16_t{0}};
  s.cr0 = 0x11;
  return s;
}

/// A machine with an EmulatorEngine, RAM, the UART and the pattern port.
class EmuMachine {
 public:
  explicit EmuMachine(uint64_t ram_size = 4 << 20, EmulatorOptions options = {}, Clock* clock = nullptr)
      : ram(ram_size) {
    EXPECT_TRUE(io.add(0x3f8, 8, uart));
    EXPECT_TRUE(io.add(0x500, 4, pattern));
    MachineBindings b;
    b.memory = ram.memory();
    b.io = &io;
    b.clock = clock;
    b.lock_devices = [this] { ++locks; };
    b.unlock_devices = [this] { ++unlocks; };
    auto e = EmulatorEngine::create(b, options);
    EXPECT_TRUE(e) << (e ? "" : e.error().message);
    if (e) engine = std::move(*e);
  }

  void load(uint32_t address, const std::vector<uint8_t>& bytes) const {
    std::memcpy(ram.data() + address, bytes.data(), bytes.size());
  }

  /// See flat32_state().
  CpuState flat32(uint32_t eip, const Program* program = nullptr) const { return flat32_state(ram, eip, program); }

  /// run() until it returns something other than kKicked (at most `max_runs` times).
  RunResult run(unsigned max_runs = 10000) const {
    RunResult r;
    for (unsigned k = 0; k < max_runs; ++k) {
      r = engine->run();
      if (r.reason != StopReason::kKicked) return r;
    }
    return r;
  }

  GuestRam ram;
  bus::IoBus io;
  CollectingUart uart;
  PatternPort pattern;
  unsigned locks = 0, unlocks = 0;  // calls of the device lock's lock/unlock
  std::unique_ptr<EmulatorEngine> engine;
};

}  // namespace twoostwo::vmcore::emutest
