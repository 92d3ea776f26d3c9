// KvmEngine against tiny guests (tests/vmcore/guests/*.S). Every test that
// needs /dev/kvm is in a suite whose name starts with "Kvm" and skips, with
// the reason, only when the device cannot be opened (scripts/test.sh fails a
// run that skipped them on a machine that has /dev/kvm).
#include "vmcore/kvm/kvm_engine.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace twoostwo::vmcore {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kRamSize = 2 << 20;
constexpr uint64_t kLoadAddress = 0x1000;

#define TWOOSTWO_REQUIRE_KVM()                                                  \
  do {                                                                          \
    if (auto probe = KvmEngine::probe(); !probe) {                              \
      GTEST_SKIP() << "no /dev/kvm: " << probe.error().message;                 \
    }                                                                           \
  } while (0)

std::vector<uint8_t> load_guest(const std::string& name) {
  const std::string path = std::string(TWOOSTWO_TEST_DATA_DIR) + "/guests/" + name + ".bin";
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path << " (built by the twoostwo_test_guests target)";
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The nested kvm_pvm hypervisor of the project's machines (measured): its
// KVM_SET_CPUID2 ORs a fixed set of host bits into CPUID.1:ECX/EDX,
// XSAVE and AVX among them, so those cannot be hidden there. Real KVM
// (kvm_intel, kvm_amd) stores the table as given.
bool running_on_kvm_pvm() {
  namespace fs = std::filesystem;
  return fs::exists("/sys/module/kvm_pvm") && !fs::exists("/sys/module/kvm_intel") &&
         !fs::exists("/sys/module/kvm_amd");
}

// Guest RAM as the Monitor makes it: an anonymous mapping.
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

 private:
  uint8_t* host_ = nullptr;
  uint64_t size_;
};

// One port write seen by any test device, in order.
struct Event {
  uint16_t port;
  std::vector<uint8_t> bytes;
};

// A UART that only collects what is written to its data register.
class FakeUart final : public bus::IoDevice {
 public:
  explicit FakeUart(std::vector<Event>& log) : log_(log) {}
  void read(uint64_t offset, std::span<uint8_t> data) override {
    std::fill(data.begin(), data.end(), static_cast<uint8_t>(offset == 5 ? 0x60 : 0x00));  // LSR: transmitter empty
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    if (offset == 0) output.append(data.begin(), data.end());
    log_.push_back({static_cast<uint16_t>(0x3f8 + offset), {data.begin(), data.end()}});
  }
  std::string_view name() const override { return "fake uart"; }
  std::string output;

 private:
  std::vector<Event>& log_;
};

// Port 0x500: byte reads give 3*i+7, word reads at +2 give 0x1111*j+0x0102,
// a dword written at +4 is kept.
class PatternDevice final : public bus::IoDevice {
 public:
  static uint8_t byte_at(unsigned i) { return static_cast<uint8_t>(3 * i + 7); }
  static uint16_t word_at(unsigned j) { return static_cast<uint16_t>(0x1111 * j + 0x0102); }
  void read(uint64_t offset, std::span<uint8_t> data) override {
    if (offset == 0 && data.size() == 1) {
      data[0] = byte_at(bytes_read++);
    } else if (offset == 2 && data.size() == 2) {
      bus::store_le(data, word_at(words_read++));
    } else {
      std::fill(data.begin(), data.end(), uint8_t{0xFF});
      ++bad_accesses;
    }
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    if (offset == 4 && data.size() == 4) {
      checksum = bus::load_le(data);
      ++checksum_writes;
    } else {
      ++bad_accesses;
    }
  }
  std::string_view name() const override { return "pattern"; }
  unsigned bytes_read = 0, words_read = 0, checksum_writes = 0, bad_accesses = 0;
  uint32_t checksum = 0;
};

// Records every write (the coalesced data port, the EOI port).
class WriteRecorder final : public bus::IoDevice {
 public:
  WriteRecorder(uint16_t base, std::vector<Event>& log) : base_(base), log_(log) {}
  void read(uint64_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), uint8_t{0xFF}); }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    log_.push_back({static_cast<uint16_t>(base_ + offset), {data.begin(), data.end()}});
    ++writes;
  }
  std::string_view name() const override { return "recorder"; }
  unsigned writes = 0;

 private:
  uint16_t base_;
  std::vector<Event>& log_;
};

// Records MMIO writes (to the read-only ROM slot).
class MmioRecorder final : public bus::IoDevice {
 public:
  void read(uint64_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), uint8_t{0xFF}); }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    writes.push_back({static_cast<uint16_t>(offset), {data.begin(), data.end()}});
  }
  std::string_view name() const override { return "rom write recorder"; }
  std::vector<Event> writes;  // port = offset in the ROM
};

// A port whose write kicks the engine, as the Monitor does when a device
// requests shutdown.
class KickPort final : public bus::IoDevice {
 public:
  void read(uint64_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), uint8_t{0xFF}); }
  void write(uint64_t, std::span<const uint8_t>) override {
    ++writes;
    if (engine != nullptr) engine->kick();
  }
  std::string_view name() const override { return "kick port"; }
  CpuEngine* engine = nullptr;
  unsigned writes = 0;
};

// INTR pin and INTA cycle of a PIC reduced to one request line.
class FakePic final : public InterruptController {
 public:
  bool interrupt_pending() const override { return pending_.load(); }
  uint8_t acknowledge() override {
    ++acknowledged;
    pending_.store(false);
    return vector_;
  }
  void raise(uint8_t vector) {
    vector_ = vector;
    pending_.store(true);
    ++raised;
  }
  unsigned raised = 0, acknowledged = 0;

 private:
  std::atomic<bool> pending_{false};
  uint8_t vector_ = 0;
};

CpuState real_mode_entry(uint64_t address) {
  CpuState s = CpuState::reset();
  s.cs.selector = 0;
  s.cs.base = 0;
  s.rip = address;
  return s;
}

class KvmEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TWOOSTWO_REQUIRE_KVM();
    ASSERT_TRUE(io_.add(0x3f8, 8, uart_));
  }

  // Creates the engine with the current bindings and loads `guest` at 0x1000.
  void start(const std::string& guest, const KvmOptions& options = {}) {
    MachineBindings b;
    b.memory = ram_.memory();
    b.io = &io_;
    b.mmio = &mmio_;
    b.pic = &pic_;
    b.lock_devices = [this] { ++locks_; };
    b.unlock_devices = [this] { ++unlocks_; };
    auto engine = KvmEngine::create(std::move(b), options);
    ASSERT_TRUE(engine) << engine.error().message;
    engine_ = std::move(*engine);
    if (!guest.empty()) {
      const std::vector<uint8_t> image = load_guest(guest);
      ASSERT_FALSE(image.empty());
      ASSERT_TRUE(ram_.memory().write(kLoadAddress, image));
      ASSERT_TRUE(engine_->set_state(real_mode_entry(kLoadAddress)));
    }
  }

  CpuState state() {
    auto s = engine_->state();
    EXPECT_TRUE(s) << s.error().message;
    return s ? *s : CpuState{};
  }

  GuestRam ram_{kRamSize};
  std::vector<Event> log_;
  bus::IoBus io_;
  bus::MmioBus mmio_;
  FakePic pic_;
  FakeUart uart_{log_};
  unsigned locks_ = 0, unlocks_ = 0;
  std::unique_ptr<KvmEngine> engine_;
};

TEST(KvmEngineArgs, RejectsRamThatKvmCannotMap) {
  // Checked before /dev/kvm is opened: no KVM needed.
  MachineBindings b;
  EXPECT_FALSE(KvmEngine::create(b));  // empty
  GuestRam ram(1 << 20);
  b.memory = bus::GuestMemory(ram.memory().host_base(), (1 << 20) - 100);
  auto r = KvmEngine::create(b);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("4 KiB"), std::string::npos) << r.error().message;
}

TEST(KvmEngineArgs, MissingDeviceIsNamed) {
  KvmOptions options;
  options.device = "/nonexistent/kvm";
  auto r = KvmEngine::probe(options);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message.rfind("/nonexistent/kvm: no such device node", 0), 0u) << r.error().message;
}

TEST(KvmEngineArgs, NotAKvmDeviceIsNamed) {
  KvmOptions options;
  options.device = "/dev/null";
  auto r = KvmEngine::probe(options);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message.rfind("/dev/null: KVM_GET_API_VERSION: ", 0), 0u) << r.error().message;
}

TEST_F(KvmEngineTest, StartsInTheResetState) {
  ASSERT_NO_FATAL_FAILURE(start(""));
  const CpuState s = state();
  EXPECT_EQ(s.cs.selector, 0xF000);
  EXPECT_EQ(s.cs.base, 0xFFFF0000u);
  EXPECT_EQ(s.rip, 0xFFF0u);
  EXPECT_EQ(s.cr0, 0x60000010u);
  EXPECT_EQ(s.gpr[kRdx], 0x600u);
  EXPECT_EQ(cpu_mode(s), CpuMode::kReal);
  EXPECT_EQ(engine_->name(), "kvm");
}

TEST_F(KvmEngineTest, RealModeOutAndRepOutsb) {
  ASSERT_NO_FATAL_FAILURE(start("real"));
  const RunResult r = engine_->run();
  ASSERT_EQ(r.reason, StopReason::kHalt) << r.detail;
  EXPECT_EQ(r.detail, "halted with interrupts disabled");
  EXPECT_EQ(uart_.output, "hello real\nrep outsb\n");
  const CpuState s = state();
  EXPECT_EQ(s.gpr[kRax] & 0xFFFFFFFF, 0x5245414Cu);
  EXPECT_EQ(s.gpr[kRcx] & 0xFFFF, 0u);  // rep count consumed
  EXPECT_EQ(s.rflags & 0x200, 0u);      // IF clear
  EXPECT_EQ(cpu_mode(s), CpuMode::kReal);
  EXPECT_EQ(engine_->counters().io_elements, 21u);
  EXPECT_EQ(locks_, unlocks_);
  // A halted CPU with IF=0 stays halted.
  EXPECT_EQ(engine_->run().reason, StopReason::kHalt);
}

TEST_F(KvmEngineTest, ProtectedModeStringInput) {
  PatternDevice pattern;
  ASSERT_TRUE(io_.add(0x500, 8, pattern));
  ASSERT_NO_FATAL_FAILURE(start("prot"));
  const RunResult r = engine_->run();
  ASSERT_EQ(r.reason, StopReason::kHalt) << r.detail;
  EXPECT_EQ(uart_.output, "hello prot\n");

  std::vector<uint8_t> buf;
  for (unsigned i = 0; i < 16; ++i) buf.push_back(PatternDevice::byte_at(i));
  for (unsigned j = 0; j < 8; ++j) {
    buf.push_back(static_cast<uint8_t>(PatternDevice::word_at(j)));
    buf.push_back(static_cast<uint8_t>(PatternDevice::word_at(j) >> 8));
  }
  uint32_t expected = 0;
  for (uint8_t b : buf) expected = ((expected << 5) | (expected >> 27)) + b;

  EXPECT_EQ(pattern.bytes_read, 16u);
  EXPECT_EQ(pattern.words_read, 8u);
  EXPECT_EQ(pattern.bad_accesses, 0u);
  EXPECT_EQ(pattern.checksum_writes, 1u);
  EXPECT_EQ(pattern.checksum, expected);
  const CpuState s = state();
  EXPECT_EQ(s.gpr[kRax] & 0xFFFFFFFF, expected);
  EXPECT_EQ(s.gpr[kRbx] & 0xFFFFFFFF, 0x544F5250u);
  EXPECT_EQ(cpu_mode(s), CpuMode::kProtected32);
  EXPECT_EQ(s.cs.selector, 0x08);
  EXPECT_EQ(s.ds.selector, 0x10);
  EXPECT_EQ(s.cs.limit, 0xFFFFFFFFu);
  EXPECT_TRUE(s.cs.g);
  // The guest's own buffer got the same bytes.
  std::vector<uint8_t> guest_buf(32);
  const std::vector<uint8_t> image = load_guest("prot");
  ASSERT_GE(image.size(), 32u);
  ASSERT_TRUE(ram_.memory().read(kLoadAddress + image.size() - 32, guest_buf));
  EXPECT_EQ(guest_buf, buf);
}

TEST_F(KvmEngineTest, LongModeByItself) {
  ASSERT_NO_FATAL_FAILURE(start("long"));
  const RunResult r = engine_->run();
  ASSERT_EQ(r.reason, StopReason::kHalt) << r.detail;
  EXPECT_EQ(uart_.output, "hello long\n");
  const CpuState s = state();
  EXPECT_EQ(s.gpr[kRax], 0x4C4F4E474D4F4445u);
  EXPECT_EQ(cpu_mode(s), CpuMode::kLong64);
  EXPECT_TRUE(s.cs.l);
  EXPECT_EQ(s.cs.selector, 0x18);
  EXPECT_NE(s.efer & 0x400, 0u);  // LMA
  EXPECT_NE(s.efer & 0x100, 0u);  // LME
  EXPECT_NE(s.cr0 & 0x80000000, 0u);
  EXPECT_NE(s.cr4 & 0x20, 0u);
  EXPECT_EQ(s.cr3, 0x10000u);
}

TEST_F(KvmEngineTest, InterruptsFromTheInterruptController) {
  std::vector<Event> eoi_log;
  WriteRecorder eoi(0x20, eoi_log);
  ASSERT_TRUE(io_.add(0x20, 2, eoi));
  ASSERT_NO_FATAL_FAILURE(start("irq"));
  // The first request is raised before the guest has IF=1, so the engine
  // must ask KVM for an interrupt window; the others wake it from HLT.
  pic_.raise(0x20);
  RunResult r;
  for (int round = 0; round < 10; ++round) {
    r = engine_->run();
    ASSERT_EQ(r.reason, StopReason::kHalt) << r.detail;
    if (pic_.raised == 3 && !pic_.interrupt_pending() && r.detail == "halted with interrupts disabled") break;
    ASSERT_EQ(r.detail, "") << "halted with IF=0 after " << pic_.acknowledged << " interrupts";
    // Halted with IF=1 and nothing pending: run() must not resume the guest.
    EXPECT_EQ(engine_->run().reason, StopReason::kHalt);
    pic_.raise(0x20);
  }
  EXPECT_EQ(r.detail, "halted with interrupts disabled");
  EXPECT_EQ(pic_.acknowledged, 3u);
  EXPECT_EQ(eoi.writes, 3u);
  for (const Event& e : eoi_log) EXPECT_EQ(e.bytes, std::vector<uint8_t>{0x20});
  EXPECT_EQ(uart_.output, "3 interrupts\n");
  const CpuState s = state();
  EXPECT_EQ(s.gpr[kRbx] & 0xFFFF, 3u);
  EXPECT_EQ(s.gpr[kRax] & 0xFFFFFFFF, 0x21515249u);
  const KvmExitCounters& c = engine_->counters();
  EXPECT_EQ(c.injected, 3u);
  std::printf("[ KVM      ] runs %llu, hlt exits %llu, irq window exits %llu, io exits %llu\n",
              static_cast<unsigned long long>(c.runs), static_cast<unsigned long long>(c.hlt_exits),
              static_cast<unsigned long long>(c.irq_window_exits), static_cast<unsigned long long>(c.io_exits));
  EXPECT_GT(locks_, 0u);
  EXPECT_EQ(locks_, unlocks_);
}

TEST_F(KvmEngineTest, InterruptWhileRunningAfterAKick) {
  std::vector<Event> eoi_log;
  WriteRecorder eoi(0x20, eoi_log);
  ASSERT_TRUE(io_.add(0x20, 2, eoi));
  ASSERT_NO_FATAL_FAILURE(start("irq_busy"));
  // Another thread raises the request and kicks, as the Monitor does from
  // InterruptController::on_intr_raised; run() returns kKicked and the next
  // run() injects.
  std::thread device([&] {
    std::this_thread::sleep_for(30ms);
    pic_.raise(0x20);
    engine_->kick();
  });
  RunResult r = engine_->run();
  device.join();
  int kicked = 0;
  while (r.reason == StopReason::kKicked && kicked < 10) {
    ++kicked;
    r = engine_->run();
  }
  EXPECT_GE(kicked, 1);
  ASSERT_EQ(r.reason, StopReason::kHalt) << r.detail;
  EXPECT_EQ(uart_.output, "busy irq\n");
  EXPECT_EQ(pic_.acknowledged, 1u);
  EXPECT_EQ(eoi.writes, 1u);
  const CpuState s = state();
  EXPECT_EQ(s.gpr[kRbx] & 0xFFFF, 1u);
  EXPECT_EQ(s.gpr[kRax] & 0xFFFFFFFF, 0x59535542u);
}

TEST_F(KvmEngineTest, InterruptWindowWhileInterruptsAreDisabled) {
  WriteRecorder eoi(0x20, log_);
  ASSERT_TRUE(io_.add(0x20, 2, eoi));
  ASSERT_NO_FATAL_FAILURE(start("irq_busy"));
  // Pending before the guest runs, while it still has IF=0: the engine must
  // request an interrupt window and inject at KVM_EXIT_IRQ_WINDOW_OPEN,
  // after the guest's `sti`, without any HLT.
  pic_.raise(0x20);
  const RunResult r = engine_->run();
  ASSERT_EQ(r.reason, StopReason::kHalt) << r.detail;
  EXPECT_EQ(uart_.output, "busy irq\n");
  EXPECT_EQ(pic_.acknowledged, 1u);
  EXPECT_GE(engine_->counters().irq_window_exits, 1u);
  EXPECT_EQ(engine_->counters().hlt_exits, 1u);  // only the final one
  EXPECT_EQ(state().gpr[kRbx] & 0xFFFF, 1u);
}

TEST_F(KvmEngineTest, CoalescedPioKeepsOrder) {
  WriteRecorder data_port(0x510, log_);
  ASSERT_TRUE(io_.add(0x510, 1, data_port));
  ASSERT_NO_FATAL_FAILURE(start("coalesced"));
  if (!engine_->has_coalesced_pio()) {
    // Not a skip: the capability is optional, and its absence must be a clear error.
    auto r = engine_->add_coalesced_pio(0x510, 1);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("KVM_CAP_COALESCED_PIO"), std::string::npos);
    return;
  }
  ASSERT_TRUE(engine_->add_coalesced_pio(0x510, 1));
  const RunResult r = engine_->run();
  ASSERT_EQ(r.reason, StopReason::kHalt) << r.detail;
  ASSERT_EQ(log_.size(), 65u);
  for (unsigned i = 0; i < 64; ++i) {
    EXPECT_EQ(log_[i].port, 0x510);
    EXPECT_EQ(log_[i].bytes, std::vector<uint8_t>{static_cast<uint8_t>(3 * i + 1)}) << i;
  }
  EXPECT_EQ(log_[64].port, 0x3f8);
  EXPECT_EQ(uart_.output, "!");
  EXPECT_EQ(state().gpr[kRax] & 0xFFFFFFFF, 0x4C414F43u);
  const KvmExitCounters& c = engine_->counters();
  EXPECT_EQ(c.coalesced_writes, 64u) << "io exits " << c.io_exits;
  EXPECT_EQ(c.io_exits, 1u);  // only the UART write exited
}

TEST_F(KvmEngineTest, CoalescePortWritesThroughTheEngineInterface) {
  // CpuEngine::coalesce_port_writes / uncoalesce_port_writes, as NicSet uses
  // them: a zone registered and then dropped again leaves every write of
  // the `rep outsb` to exit, still in order.
  WriteRecorder data_port(0x510, log_);
  ASSERT_TRUE(io_.add(0x510, 1, data_port));
  ASSERT_NO_FATAL_FAILURE(start("coalesced"));
  CpuEngine& engine = *engine_;
  EXPECT_FALSE(engine.coalesce_port_writes(0x510, 0));
  EXPECT_FALSE(engine.coalesce_port_writes(0xFFFF, 2));
  auto on = engine.coalesce_port_writes(0x510, 1);
  ASSERT_TRUE(on) << on.error().message;
  EXPECT_EQ(*on, engine_->has_coalesced_pio());
  ASSERT_TRUE(engine.uncoalesce_port_writes(0x510, 1));
  const RunResult r = engine_->run();
  ASSERT_EQ(r.reason, StopReason::kHalt) << r.detail;
  ASSERT_EQ(log_.size(), 65u);
  for (unsigned i = 0; i < 64; ++i) {
    EXPECT_EQ(log_[i].bytes, std::vector<uint8_t>{static_cast<uint8_t>(3 * i + 1)}) << i;
  }
  EXPECT_EQ(log_[64].port, 0x3f8);
  EXPECT_EQ(engine_->counters().coalesced_writes, 0u);
  EXPECT_EQ(engine_->counters().io_elements, 65u);
}

TEST_F(KvmEngineTest, RomAtTheResetVector) {
  MmioRecorder rom_writes;
  ASSERT_TRUE(mmio_.add(0xFFFFF000, 0x1000, rom_writes));
  ASSERT_NO_FATAL_FAILURE(start(""));
  const std::vector<uint8_t> rom = load_guest("rom");
  ASSERT_EQ(rom.size(), 4096u);
  ASSERT_TRUE(engine_->add_rom(0xFFFFF000, rom));
  const RunResult r = engine_->run();  // from CpuState::reset(): F000:FFF0
  ASSERT_EQ(r.reason, StopReason::kHalt) << r.detail;
  EXPECT_EQ(uart_.output, "hello rom\n");
  ASSERT_EQ(rom_writes.writes.size(), 1u);
  EXPECT_EQ(rom_writes.writes[0].port, 0x800);
  EXPECT_EQ(rom_writes.writes[0].bytes, std::vector<uint8_t>{0x55});
  const CpuState s = state();
  EXPECT_EQ(s.gpr[kRbx] & 0xFF, 0xA5u);  // the ROM byte did not change
  EXPECT_EQ(s.gpr[kRax] & 0xFFFFFFFF, 0x214D4F52u);
  EXPECT_EQ(engine_->counters().mmio_exits, 1u);
}

TEST_F(KvmEngineTest, AddRomRejectsBadPlacement) {
  ASSERT_NO_FATAL_FAILURE(start(""));
  const std::vector<uint8_t> rom(4096, 0x90);
  auto unaligned = engine_->add_rom(0xFFFFF800, rom);
  ASSERT_FALSE(unaligned);
  EXPECT_NE(unaligned.error().message.find("not 4 KiB-aligned"), std::string::npos) << unaligned.error().message;
  auto over_ram = engine_->add_rom(0x1000, rom);
  ASSERT_FALSE(over_ram);
  EXPECT_NE(over_ram.error().message.find("overlaps guest RAM"), std::string::npos) << over_ram.error().message;
  auto over_tss = engine_->add_rom(KvmEngine::kTssAddress, rom);
  ASSERT_FALSE(over_tss);
  EXPECT_NE(over_tss.error().message.find("TSS"), std::string::npos) << over_tss.error().message;
  ASSERT_TRUE(engine_->add_rom(0xFFFF0000, std::vector<uint8_t>(0x10000, 0xF4)));
  auto twice = engine_->add_rom(0xFFFFF000, rom);
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message.find("overlaps ROM"), std::string::npos) << twice.error().message;
}

TEST_F(KvmEngineTest, TripleFaultIsReported) {
  ASSERT_NO_FATAL_FAILURE(start("triple"));
  const RunResult r = engine_->run();
  ASSERT_EQ(r.reason, StopReason::kTripleFault) << r.detail;
  EXPECT_NE(r.detail.find("KVM_EXIT_SHUTDOWN"), std::string::npos) << r.detail;
  EXPECT_EQ(state().gpr[kRax] & 0xFFFFFFFF, 0x54524950u);
}

// What the `cpuid` guest saw must be the vCPU's table.
void expect_guest_sees(const CpuState& s, const CpuidLeaf& table) {
  std::printf("[ KVM      ] CPUID.1 table: %08x %08x %08x %08x; guest saw %08llx %08llx %08llx %08llx\n",
              table.eax, table.ebx, table.ecx, table.edx, static_cast<unsigned long long>(s.gpr[kRax]),
              static_cast<unsigned long long>(s.gpr[kRbx]), static_cast<unsigned long long>(s.gpr[kRcx]),
              static_cast<unsigned long long>(s.gpr[kRdx]));
  EXPECT_EQ(s.gpr[kRax] & 0xFFFFFFFF, table.eax);
  EXPECT_EQ(s.gpr[kRbx] & 0xFFFFFFFF, table.ebx);
  EXPECT_EQ(s.gpr[kRcx] & 0xFFFFFFFF, table.ecx);
  EXPECT_EQ(s.gpr[kRdx] & 0xFFFFFFFF, table.edx);
}

TEST_F(KvmEngineTest, CpuidIsEditedForOurMachine) {
  ASSERT_NO_FATAL_FAILURE(start("cpuid"));
  auto leaf = engine_->cpuid(1);
  ASSERT_TRUE(leaf) << leaf.error().message;
  EXPECT_NE(leaf->ecx & (1u << 31), 0u) << "hypervisor bit";
  EXPECT_EQ(leaf->edx & (1u << 9), 0u) << "APIC bit";
  EXPECT_EQ(leaf->ecx & (1u << 21), 0u) << "x2APIC bit";
  EXPECT_EQ((leaf->ebx >> 24) & 0xFF, 0u) << "initial APIC ID";
  EXPECT_FALSE(engine_->cpuid(0x12345678)) << "no such leaf";
  ASSERT_EQ(engine_->run().reason, StopReason::kHalt);
  expect_guest_sees(state(), *leaf);
}

TEST_F(KvmEngineTest, MinimalCpuidHidesXsaveAndAvx) {
  KvmOptions options;
  options.minimal_cpuid = true;
  ASSERT_NO_FATAL_FAILURE(start("cpuid", options));
  auto leaf = engine_->cpuid(1);
  ASSERT_TRUE(leaf) << leaf.error().message;
  EXPECT_NE(leaf->ecx & (1u << 31), 0u);
  EXPECT_EQ(leaf->ecx & (1u << 27), 0u) << "OSXSAVE follows the guest's CR4, which is 0";
  if (running_on_kvm_pvm()) {
    std::printf("[ KVM      ] kvm_pvm forces CPUID.1:ECX bits %08x on; XSAVE/AVX hidden: %s\n",
                leaf->ecx & (5u << 26), (leaf->ecx & (5u << 26)) == 0 ? "yes" : "no");
  } else {
    EXPECT_EQ(leaf->ecx & (7u << 26), 0u) << "XSAVE/OSXSAVE/AVX";
  }
  ASSERT_EQ(engine_->run().reason, StopReason::kHalt);
  expect_guest_sees(state(), *leaf);
}

TEST_F(KvmEngineTest, KickBeforeRunReturnsAtOnce) {
  ASSERT_NO_FATAL_FAILURE(start("spin"));
  engine_->kick();
  const RunResult r = engine_->run();
  EXPECT_EQ(r.reason, StopReason::kKicked);
  EXPECT_EQ(engine_->counters().runs, 0u);  // the guest never ran
}

TEST_F(KvmEngineTest, KickFromAPortWriteAndFromAnotherThread) {
  KickPort kick_port;
  ASSERT_TRUE(io_.add(0xf0, 1, kick_port));
  ASSERT_NO_FATAL_FAILURE(start("spin"));
  kick_port.engine = engine_.get();
  // 1. A device write on the vCPU thread kicks (the Monitor's shutdown path).
  RunResult r = engine_->run();
  ASSERT_EQ(r.reason, StopReason::kKicked) << r.detail;
  EXPECT_EQ(kick_port.writes, 1u);
  // 2. The guest now spins in `jmp .` with IF=0; only a kick from another
  //    thread can end run(), and it must do so promptly.
  std::atomic<bool> returned{false};
  std::thread kicker([&] {
    std::this_thread::sleep_for(100ms);
    EXPECT_FALSE(returned.load()) << "run() returned before the kick";
    engine_->kick();
  });
  const auto t0 = std::chrono::steady_clock::now();
  r = engine_->run();
  returned = true;
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  kicker.join();
  EXPECT_EQ(r.reason, StopReason::kKicked) << r.detail;
  EXPECT_GE(elapsed, 90ms);
  EXPECT_LT(elapsed, 2s);
  // The guest is still spinning where it was.
  const CpuState s = state();
  EXPECT_EQ(s.rip, kLoadAddress + 5);  // cli; mov $1, %al; out %al, $0xf0; here: jmp .
  // And a burst of kicks from several threads leaves it consistent.
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back([&] { for (int k = 0; k < 50; ++k) engine_->kick(); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(engine_->run().reason, StopReason::kKicked);
}

TEST(KvmEngineSpeed, SelfTestMeasuresNanosecondsPerInstruction) {
  TWOOSTWO_REQUIRE_KVM();
  const auto t0 = std::chrono::steady_clock::now();
  auto ns = KvmEngine::self_test_speed();
  const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(ns) << ns.error().message;
  EXPECT_GT(*ns, 0.0);
  EXPECT_LT(ms, 2000.0);
  // kvm_pvm emulates every instruction: --cpu-engine=auto must not pick it
  // (the Monitor's threshold is 20 ns).
  if (running_on_kvm_pvm()) {
    EXPECT_GT(*ns, 50.0);
  }
  std::printf("[ KVM      ] self_test_speed: %.2f ns per guest instruction (took %.1f ms)\n", *ns, ms);
}

}  // namespace
}  // namespace twoostwo::vmcore
