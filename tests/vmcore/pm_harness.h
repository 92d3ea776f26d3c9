// An engine-neutral harness for the protected-mode test programs of
// tests/vmcore/pmguests/ (issue 3, "Protected-mode tests"): it builds a
// minimal machine (RAM, a UART that collects what the guest prints, the real
// 8259A pair, a 16550A at COM2), loads one flat program at 0x10000, enters
// it in flat 32-bit protected mode through CpuEngine::set_state, and runs it
// until it halts. The same programs and the same expected transcripts check
// every CpuEngine (KVM, the emulator).
//
// The machine the programs see:
//   RAM        4 MiB at guest-physical 0 (anonymous mapping, page-aligned).
//   0x3f8-0x3ff  UART: writes to +0 are collected as the transcript; LSR
//              (+5) reads 0x60 (transmitter empty), everything else 0.
//   0x20, 0xa0, 0x4d0  the 8259A pair (vmcore/devices/pic.h), which is also
//              the engine's InterruptController; its INTR kicks the engine,
//              as the Monitor wires it.
//   0x2f8-0x2ff  COM2: the project's 16550A model (vmcore/devices/uart.h)
//              on IRQ 3, output dropped; programs use its THRE interrupt
//              (IER bit 1 set while THR is empty) to raise an IRQ at a known
//              point, which behaves the same on QEMU's COM2.
// Entry state (entry_state()): CR0 = PE|ET (paging off), CS = 0x08 (flat
// 32-bit code, DPL 0), DS = ES = FS = GS = SS = 0x10 (flat data), TR = a
// busy 32-bit TSS at 0 (only so that the state is valid; every program loads
// its own), GDTR = a 3-entry flat GDT the harness writes at 0x800, IDTR
// limit 0, EFLAGS = 0x2 (IF = 0), ESP = 0xf000, EIP = 0x10000.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "vmcore/bus/io_bus.h"
#include "vmcore/clock.h"
#include "vmcore/cpu_engine.h"
#include "vmcore/devices/pic.h"
#include "vmcore/devices/uart.h"

namespace twoostwo::vmcore::pmtest {

constexpr uint64_t kRamSize = 4 << 20;
constexpr uint64_t kLoadAddress = 0x10000;
constexpr uint64_t kEntryStack = 0xf000;
constexpr uint64_t kHarnessGdt = 0x800;
constexpr uint16_t kUartPort = 0x3f8;
constexpr uint16_t kCom2Port = 0x2f8;

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
  bus::GuestMemory memory() const { return {host_, host_ != nullptr ? size_ : 0}; }

 private:
  uint8_t* host_ = nullptr;
  uint64_t size_;
};

/// Collects the bytes written to the UART's data register.
class TranscriptUart final : public bus::IoDevice {
 public:
  void read(uint64_t offset, std::span<uint8_t> data) override {
    std::fill(data.begin(), data.end(), static_cast<uint8_t>(offset == 5 ? 0x60 : 0x00));
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    if (offset == 0) text.append(data.begin(), data.end());
  }
  std::string_view name() const override { return "transcript uart"; }
  std::string text;
};

/// Makes an engine on the given machine ("kvm": KvmEngine::create, ...).
using EngineFactory = std::function<Result<std::unique_ptr<CpuEngine>>(MachineBindings)>;

/// What one run of a program produced.
struct ProgramRun {
  std::string setup_error;  // non-empty: the program never ran (why)
  std::string transcript;   // every byte written to 0x3f8
  RunResult last;           // the run() result that ended the run
  CpuState state;           // the register state after it
  bool timed_out = false;   // the watchdog had to kick the engine
  double seconds = 0;       // wall-clock time of the run loop
};

/// The protected-mode entry state described at the top of this file.
inline CpuState entry_state() {
  auto flat = [](uint16_t selector, uint8_t type) {
    Segment s;
    s.selector = selector;
    s.base = 0;
    s.limit = 0xFFFFFFFF;
    s.type = type;
    s.s = true;
    s.dpl = 0;
    s.present = true;
    s.db = true;
    s.g = true;
    return s;
  };
  CpuState s = CpuState::reset();
  s.gpr = {};
  s.gpr[kRsp] = kEntryStack;
  s.rip = kLoadAddress;
  s.rflags = 0x2;
  s.cs = flat(0x08, 0xB);
  s.ds = s.es = s.fs = s.gs = s.ss = flat(0x10, 0x3);
  s.tr = Segment{};
  s.tr.selector = 0;
  s.tr.limit = 0x67;
  s.tr.type = 0xB;
  s.tr.s = false;
  s.tr.present = true;
  s.gdt = {kHarnessGdt, 0x17};
  s.idt = {0, 0};
  s.cr0 = 0x11;  // PE | ET
  s.cr2 = s.cr3 = s.cr4 = s.efer = 0;
  return s;
}

/// The built program `name` (pmguests/<name>.bin in the build tree).
inline std::vector<uint8_t> load_program(const std::string& name) {
  const std::string path = std::string(TWOOSTWO_TEST_DATA_DIR) + "/pmguests/" + name + ".bin";
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Changes the entry state or memory before the run (for variants).
using EntryAdjust = std::function<void(CpuState&, bus::GuestMemory)>;

/// Runs program `name` on an engine from `factory` until it stops (HLT,
/// triple fault, engine fault) or `timeout` passes (then the watchdog kicks
/// the engine and `timed_out` is set). Kicks from the PIC only make the
/// loop call run() again, as in the Monitor. `adjust`, if given, may change
/// the entry state and guest memory after the program is loaded.
inline ProgramRun run_program(const std::string& name, const EngineFactory& factory,
                              std::chrono::milliseconds timeout = std::chrono::seconds(10),
                              const EntryAdjust& adjust = {}) {
  ProgramRun out;
  GuestRam ram(kRamSize);
  if (ram.memory().size() == 0) {
    out.setup_error = "cannot map guest RAM";
    return out;
  }
  const std::vector<uint8_t> image = load_program(name);
  if (image.empty() || image.size() > 0x10000) {
    out.setup_error = "pmguests/" + name + ".bin missing or too big (built by the twoostwo_pm_guests target)";
    return out;
  }
  ram.memory().write(kLoadAddress, image);
  const uint64_t gdt[3] = {0, 0x00cf9a000000ffff, 0x00cf92000000ffff};
  ram.memory().write(kHarnessGdt, std::span(reinterpret_cast<const uint8_t*>(gdt), sizeof gdt));

  bus::IoBus io;
  bus::MmioBus mmio;
  Pic8259Pair pic;
  TranscriptUart uart;
  Uart16550 com2("uart 0x2f8", pic.line(3), {});
  struct Claim {
    uint16_t base;
    uint32_t length;
    bus::IoDevice* device;
  };
  const Claim claims[] = {{kUartPort, 8, &uart},
                          {0x20, 2, &pic.master_device()},
                          {0xa0, 2, &pic.slave_device()},
                          {0x4d0, 2, &pic.elcr_device()},
                          {kCom2Port, 8, &com2}};
  for (const Claim& c : claims) {
    if (auto r = io.add(c.base, c.length, *c.device); !r) {
      out.setup_error = r.error().message;
      return out;
    }
  }
  HostClock clock;
  MachineBindings b;
  b.memory = ram.memory();
  b.clock = &clock;
  b.io = &io;
  b.mmio = &mmio;
  b.pic = &pic;
  auto engine = factory(b);
  if (!engine) {
    out.setup_error = "engine: " + engine.error().message;
    return out;
  }
  CpuEngine& cpu = **engine;
  pic.on_intr_raised = [&cpu] { cpu.kick(); };
  CpuState entry = entry_state();
  if (adjust) adjust(entry, ram.memory());
  if (auto r = cpu.set_state(entry); !r) {
    out.setup_error = "set_state: " + r.error().message;
    return out;
  }

  std::mutex mutex;
  std::condition_variable cv;
  bool finished = false, fired = false;
  std::thread watchdog([&] {
    std::unique_lock lock(mutex);
    if (!cv.wait_for(lock, timeout, [&] { return finished; })) {
      fired = true;
      cpu.kick();
    }
  });
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    out.last = cpu.run();
    if (out.last.reason != StopReason::kKicked) break;
    std::lock_guard lock(mutex);
    if (fired) {
      out.timed_out = true;
      break;
    }
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  {
    std::lock_guard lock(mutex);
    finished = true;
  }
  cv.notify_all();
  watchdog.join();
  pic.on_intr_raised = nullptr;
  if (auto s = cpu.state(); s) out.state = *s;
  out.transcript = std::move(uart.text);
  return out;
}

}  // namespace twoostwo::vmcore::pmtest
