#include "vmcore/monitor.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

#include "vmcore/boot/cpio.h"
#include "vmcore/boot/firmware.h"
#include "vmcore/boot/linux_loader.h"
#include "vmcore/devices/uart.h"
#include "vmcore/emulator/emulator_engine.h"
#include "guest/host/command_channel.h"
#include "vmcore/console.h"
#include "vmcore/cpu_engine.h"
#include "vmcore/fault_report.h"
#include "vmcore/kvm/kvm_engine.h"
#include "vmcore/machine.h"

namespace twoostwo::vmcore {

using guest::CommandChannel;

namespace asio = boost::asio;
using Clk = std::chrono::steady_clock;

namespace {

Result<std::vector<uint8_t>> read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(fmt::format("{}: cannot open {}", path, what));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return fail(fmt::format("{}: read error", path));
  return bytes;
}

/// Guest RAM: an anonymous private mapping, released on destruction.
class RamBlock {
 public:
  static Result<RamBlock> allocate(uint64_t bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return fail(fmt::format("cannot allocate {} MiB of guest RAM", bytes >> 20));
    ::madvise(p, bytes, MADV_MERGEABLE);
    return RamBlock(static_cast<uint8_t*>(p), bytes);
  }
  RamBlock(RamBlock&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(o.n_) {}
  ~RamBlock() {
    if (p_ != nullptr) ::munmap(p_, n_);
  }
  uint8_t* data() const { return p_; }
  uint64_t size() const { return n_; }

 private:
  RamBlock(uint8_t* p, uint64_t n) : p_(p), n_(n) {}
  uint8_t* p_;
  uint64_t n_;
};

/// Kicks the CPU engine when the earliest device deadline passes while guest
/// code runs (a halted CPU waits for deadlines itself).
class DeadlineTimer {
 public:
  DeadlineTimer(Clock& clock, std::function<void()> kick) : clock_(clock), kick_(std::move(kick)) {
    thread_ = std::thread([this] { loop(); });
  }
  ~DeadlineTimer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  /// Kick at guest time `ns` (replaces the armed deadline). Called before
  /// every run() of the CPU: the timer thread is woken only when the
  /// deadline moves earlier; a later one it finds when its wait for the
  /// earlier one ends.
  void arm(uint64_t ns) {
    {
      std::lock_guard lock(mu_);
      if (ns == armed_) return;
      const bool earlier = ns < armed_;
      armed_ = ns;
      if (!earlier) return;
    }
    cv_.notify_all();
  }

 private:
  void loop() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      if (armed_ == TimedDevice::kNever) {
        cv_.wait(lock);
        continue;
      }
      const uint64_t now = clock_.now_ns();
      if (now >= armed_) {
        armed_ = TimedDevice::kNever;
        kick_();
        continue;
      }
      cv_.wait_for(lock, std::chrono::nanoseconds(armed_ - now));
    }
  }
  Clock& clock_;
  std::function<void()> kick_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t armed_ = TimedDevice::kNever;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

struct Monitor::Impl {
  MonitorOptions options;
  std::unique_ptr<Clock> clock;
  std::optional<RamBlock> ram;
  std::unique_ptr<Machine> machine;
  std::unique_ptr<CpuEngine> engine;
  std::string engine_note;

  asio::io_context io;
  std::unique_ptr<Console> console;
  std::unique_ptr<Console> command_socket;
  std::unique_ptr<CommandChannel> channel;
  std::unique_ptr<NicSet> nics;

  std::atomic<bool> stop{false};
  std::atomic<bool> guest_shutdown{false};
  std::atomic<int> exec_status{kExitOk};

  // Waking the CPU thread. While the guest runs, CpuEngine::kick() makes
  // run() return. While it halts, the CPU thread waits in poll(2) on
  // `wake_fd` (an eventfd) and on the NICs' sockets (wait_while_halted), so
  // a frame arriving for a halted guest wakes the CPU thread itself, which
  // receives it: one thread wake-up between the socket and the guest, not a
  // hop through the I/O thread first. Meanwhile the I/O thread, which the
  // frame wakes too, leaves it alone (nic_polling, NicSet::start's defer).
  int wake_fd = -1;
  std::atomic<bool> halt_waiting{false};  // the CPU thread is in (or entering) a halted wait
  std::atomic<bool> nic_polling{false};   // ... and polls the NICs' sockets there
  std::thread::id cpu_thread;             // the thread in Monitor::run()

  ~Impl() {
    if (wake_fd >= 0) ::close(wake_fd);
  }

  void wake_halted() {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd, &one, sizeof one);  // fails only if the counter is full
  }

  /// Make the CPU thread look at the machine again now (stop request, guest
  /// reset): leave run() or the halted wait. Any thread.
  void kick() {
    if (engine) engine->kick();
    if (halt_waiting.load()) wake_halted();
  }

  /// INTR may have risen (the PIC's on_intr_raised; device lock held).
  /// From the CPU thread itself nothing is needed: both engines read the
  /// PIC again after every device access and before entering guest code,
  /// and the halted wait checks it before sleeping; kicking there would
  /// only end run() early for nothing. From another thread (the I/O
  /// thread's receive, console input): wake the halted wait, or kick a
  /// running engine. The halted wait publishes halt_waiting before it takes
  /// the device lock to check INTR, so a rise seen under that lock either
  /// comes before the check or finds halt_waiting set.
  void interrupt_raised() {
    if (std::this_thread::get_id() == cpu_thread) return;
    if (halt_waiting.load()) {
      wake_halted();
    } else if (engine) {
      engine->kick();
    }
  }

  /// A device deadline passed (DeadlineTimer's thread): only a running
  /// engine needs the kick; the halted wait sleeps until deadlines itself.
  void deadline_passed() {
    if (!halt_waiting.load()) engine->kick();
  }

  void wait_while_halted();
  void wait_for_stop();
};

void Monitor::Impl::wait_while_halted() {
  // Published before INTR is checked under the device lock (interrupt_raised).
  halt_waiting.store(true);
  nic_polling.store(!clock->is_virtual());
  std::vector<pollfd> fds;
  auto watch = [&] {
    fds.assign(1, pollfd{wake_fd, POLLIN, 0});
    for (const int fd : nics->receive_fds()) fds.push_back(pollfd{fd, POLLIN, 0});
  };
  watch();
  for (;;) {
    timespec timeout{};
    bool finite = false;
    {
      std::lock_guard lock(machine->mutex());
      if (stop || guest_shutdown) break;
      machine->advance_time(clock->now_ns());
      if (machine->pic().interrupt_pending()) break;
      const uint64_t next = machine->next_wake_ns(clock->is_virtual() ? 0 : options.timer_slack_ns);
      if (clock->is_virtual()) {
        // Guest time stands still while the CPU halts: jump to the next
        // deadline at once (frames still arrive through the I/O thread).
        if (next == TimedDevice::kNever) break;  // nothing will ever wake the guest
        clock->skip_to(next);
        continue;
      }
      if (next != TimedDevice::kNever) {
        const uint64_t now = clock->now_ns();
        if (next <= now) continue;
        const uint64_t left = next - now;
        timeout.tv_sec = static_cast<time_t>(left / 1'000'000'000);
        timeout.tv_nsec = static_cast<long>(left % 1'000'000'000);
        finite = true;
      }
    }
    for (pollfd& p : fds) p.revents = 0;
    const int n = ::ppoll(fds.data(), fds.size(), finite ? &timeout : nullptr, nullptr);
    if (n <= 0) continue;  // deadline (or EINTR): look again
    if (fds[0].revents != 0) {
      uint64_t count;
      [[maybe_unused]] const ssize_t r = ::read(wake_fd, &count, sizeof count);
    }
    bool frames = false;
    for (size_t i = 1; i < fds.size(); ++i) frames |= fds[i].revents != 0;
    if (frames) {
      nics->receive_pending();
      // A backend whose peer closed stays readable: poll the others only.
      if (nics->receive_fds().size() + 1 != fds.size()) watch();
    }
  }
  halt_waiting.store(false);
  if (nic_polling.exchange(false)) {
    // The I/O thread stopped waiting on sockets it left to this thread: it
    // waits again. It may have left a frame just before the flag fell: take
    // it now.
    nics->resume_io();
    nics->receive_pending();
  }
}

void Monitor::Impl::wait_for_stop() {
  halt_waiting.store(true);
  pollfd p{wake_fd, POLLIN, 0};
  while (!stop && !guest_shutdown) {
    if (::poll(&p, 1, -1) > 0) {
      uint64_t count;
      [[maybe_unused]] const ssize_t r = ::read(wake_fd, &count, sizeof count);
    }
  }
  halt_waiting.store(false);
}

Monitor::Monitor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Monitor::~Monitor() = default;

const std::string& Monitor::engine_note() const { return impl_->engine_note; }

void Monitor::request_stop() {
  impl_->stop = true;
  impl_->kick();
}

namespace {

Result<std::unique_ptr<CpuEngine>> make_engine(const MonitorOptions& o, const MachineBindings& b, std::string& note) {
  EngineChoice choice = o.engine;
  if (choice == EngineChoice::kAuto) {
    auto speed = KvmEngine::self_test_speed();
    if (!speed) {
      note = fmt::format("cpu engine: emulator (KVM unusable: {})", speed.error().message);
      choice = EngineChoice::kEmulator;
    } else if (*speed > o.kvm_max_ns_per_instruction) {
      note = fmt::format(
          "cpu engine: emulator (KVM runs guest code at {:.0f} ns/instruction, above the {:.0f} ns threshold: "
          "a software hypervisor)",
          *speed, o.kvm_max_ns_per_instruction);
      choice = EngineChoice::kEmulator;
    } else {
      note = fmt::format("cpu engine: kvm ({:.1f} ns/instruction in the self-test)", *speed);
      choice = EngineChoice::kKvm;
    }
  } else {
    note = choice == EngineChoice::kKvm ? "cpu engine: kvm (requested)" : "cpu engine: emulator (requested)";
  }
  if (choice == EngineChoice::kEmulator) {
    EmulatorOptions eo;
    eo.jit = o.emulator_jit ? EmulatorJit::kOn : EmulatorJit::kOff;
    auto emulator = EmulatorEngine::create(b, eo);
    if (!emulator) return fail("emulator: " + emulator.error().message);
    return std::unique_ptr<CpuEngine>(std::move(*emulator));
  }
  KvmOptions ko;
  ko.minimal_cpuid = true;
  auto kvm = KvmEngine::create(b, ko);
  if (!kvm) return fail("kvm: " + kvm.error().message);
  return std::unique_ptr<CpuEngine>(std::move(*kvm));
}

}  // namespace

Result<std::unique_ptr<Monitor>> Monitor::create(const MonitorOptions& o) {
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.options = o;
  if (o.clock == ClockChoice::kVirtual) {
    m.clock = std::make_unique<VirtualClock>();
  } else {
    m.clock = std::make_unique<HostClock>();
  }

  m.wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (m.wake_fd < 0) return fail(fmt::format("eventfd: {}", std::strerror(errno)));

  auto ram = RamBlock::allocate(o.memory_mib << 20);
  if (!ram) return std::unexpected(ram.error());
  m.ram.emplace(std::move(*ram));
  const bus::GuestMemory memory(m.ram->data(), m.ram->size());

  // Console (COM1) and command channel (COM2).
  m.console = std::make_unique<Console>(m.io, [&m](std::string_view in) {
    std::lock_guard lock(m.machine->mutex());
    m.machine->com1().receive(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(in.data()), in.size()));
  });
  m.console->echo_to_stdout(o.console_stdout);
  if (!o.console_log.empty()) {
    if (auto r = m.console->open_log(o.console_log); !r) return std::unexpected(r.error());
  }
  if (!o.console_socket.empty()) {
    if (auto r = m.console->listen(o.console_socket); !r) return std::unexpected(r.error());
  }
  auto to_com2 = [&m](std::string_view in) {
    std::lock_guard lock(m.machine->mutex());
    m.machine->com2().receive(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(in.data()), in.size()));
  };
  m.channel = std::make_unique<CommandChannel>(to_com2);
  if (!o.command_socket.empty()) {
    m.command_socket = std::make_unique<Console>(m.io, to_com2);
    if (auto r = m.command_socket->listen(o.command_socket); !r) return std::unexpected(r.error());
  }

  MachineConfig mc;
  mc.memory = memory;
  mc.clock = m.clock.get();
  if (o.clock == ClockChoice::kVirtual) {
    // Repeatable runs: the guest must not see the host's wall clock either
    // (Linux seeds its RNG and hash tables from it). 2026-01-01T00:00:00Z.
    mc.rtc_start_unix_seconds = 1767225600;
  }
  mc.com1_output = [&m](std::span<const uint8_t> b) { m.console->output(b); };
  mc.com2_output = [&m](std::span<const uint8_t> b) {
    m.channel->feed(b);
    if (m.command_socket) m.command_socket->output(b);
  };
  mc.on_reset = [&m] {
    m.guest_shutdown = true;
    m.kick();
  };
  mc.on_intr = [&m] { m.interrupt_raised(); };
  auto machine = Machine::create(std::move(mc));
  if (!machine) return std::unexpected(machine.error());
  m.machine = std::move(*machine);
  auto nics = NicSet::create(o.nics, o.name, *m.machine);
  if (!nics) return std::unexpected(nics.error());
  m.nics = std::move(*nics);

  MachineBindings bindings;
  bindings.memory = memory;
  bindings.io = &m.machine->io_bus();
  bindings.mmio = &m.machine->mmio_bus();
  bindings.pic = &m.machine->pic();
  bindings.clock = m.clock.get();
  bindings.lock_devices = [&m] { m.machine->mutex().lock(); };
  bindings.unlock_devices = [&m] { m.machine->mutex().unlock(); };
  auto engine = make_engine(o, bindings, m.engine_note);
  if (!engine) return std::unexpected(engine.error());
  m.engine = std::move(*engine);
  const bool emulator = dynamic_cast<EmulatorEngine*>(m.engine.get()) != nullptr;
  if (auto r = m.nics->coalesce_data_ports(*m.engine); !r) {
    // Only speed is lost: the engine then hands over every data-port write at once.
    fmt::print(stderr, "twoostwo-vmm: {}: {}; data port writes are not coalesced\n", o.name, r.error().message);
  }

  // Load the guest.
  CpuState entry;
  std::optional<boot::FirmwareInfo> rom;
  if (!o.bios.empty()) {
    auto image = read_file(o.bios, "firmware image");
    if (!image) return std::unexpected(image.error());
    auto fw = boot::load_firmware(memory, *image, o.bios);
    if (!fw) return std::unexpected(fw.error());
    rom = std::move(*fw);
    entry = rom->entry;
  } else {
    auto kernel = read_file(o.kernel, "kernel");
    if (!kernel) return std::unexpected(kernel.error());
    auto bz = boot::parse_bzimage(*kernel, o.kernel);
    if (!bz) return std::unexpected(bz.error());
    std::vector<uint8_t> initrd;
    if (!o.initrd.empty()) {
      auto r = read_file(o.initrd, "initrd");
      if (!r) return std::unexpected(r.error());
      initrd = std::move(*r);
    }
    std::vector<uint8_t> node_archive;
    if (!o.node_config.empty()) {
      auto conf = read_file(o.node_config, "node configuration");
      if (!conf) return std::unexpected(conf.error());
      auto archive = boot::node_config_archive(std::string_view(reinterpret_cast<const char*>(conf->data()), conf->size()));
      if (!archive) return std::unexpected(archive.error());
      node_archive = std::move(*archive);
    }
    boot::LinuxBootOptions lo;
    lo.command_line = o.append.empty() ? o.cmdline : o.cmdline + " " + o.append;
    if (emulator && lo.command_line.find("tsc_early_khz=") == std::string::npos) {
      // The emulator's TSC runs at exactly 1 GHz of guest time (Cpu::read_tsc):
      // tell Linux (arch/x86/kernel/tsc.c), instead of letting it calibrate
      // against the PIT, which a loaded host can upset.
      lo.command_line += " tsc_early_khz=1000000";
    }
    lo.initrd = initrd;
    lo.extra_initrd = node_archive;
    lo.entry = boot::EntryKind::kAuto;
    lo.decompress_on_host = o.host_decompress;
    lo.decompress_cache_dir = o.cache_dir;
    auto info = boot::load_linux(memory, *bz, *kernel, lo);
    if (!info) return std::unexpected(info.error());
    for (const auto& n : info->notes) fmt::print(stderr, "twoostwo-vmm: {}\n", n);
    entry = info->entry;
  }
  if (rom) {
    auto* kvm = dynamic_cast<KvmEngine*>(m.engine.get());
    if (kvm == nullptr) return fail("--bios: the " + std::string(m.engine->name()) + " engine cannot map a ROM yet");
    if (auto r = kvm->add_rom(rom->rom_address, rom->rom); !r) return std::unexpected(r.error());
  }
  if (auto r = m.engine->set_state(entry); !r) return std::unexpected(r.error());
  return std::unique_ptr<Monitor>(new Monitor(std::move(impl)));
}

int Monitor::run() {
  Impl& m = *impl_;
  fmt::print(stderr, "twoostwo-vmm: {}: {}\n", m.options.name, m.engine_note);

  // I/O thread: console sockets, signals, periodic log flushing.
  asio::signal_set signals(m.io, SIGTERM, SIGINT, SIGHUP);
  signals.async_wait([this](const boost::system::error_code& ec, int) {
    if (!ec) request_stop();
  });
  asio::steady_timer flush_timer(m.io);
  std::function<void()> flush_loop = [&] {
    flush_timer.expires_after(std::chrono::milliseconds(200));
    flush_timer.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      m.console->flush();
      flush_loop();
    });
  };
  flush_loop();
  auto work = asio::make_work_guard(m.io);
  m.nics->start(m.io, [&m] { return m.nic_polling.load(); });
  for (const auto& line : m.nics->describe()) fmt::print(stderr, "twoostwo-vmm: {}: {}\n", m.options.name, line);
  std::thread io_thread([&] { m.io.run(); });

  // --exec: wait for the agent, run the commands, then stop the VM.
  std::thread exec_thread;
  if (!m.options.exec.empty()) {
    exec_thread = std::thread([this, &m] {
      auto name = m.channel->wait_ready(m.options.ready_timeout);
      if (!name) {
        if (!m.stop) {
          fmt::print(stderr, "twoostwo-vmm: the guest agent was not ready within {} s\n",
                     m.options.ready_timeout.count());
          m.exec_status = kExitTimeout;
        }
        request_stop();
        return;
      }
      for (const auto& cmd : m.options.exec) {
        auto status = m.channel->exec(
            cmd,
            [](std::string_view out) {
              std::fwrite(out.data(), 1, out.size(), stdout);
              std::fflush(stdout);
            },
            m.options.exec_timeout);
        if (!status && m.guest_shutdown) {
          // The command powered the guest off or rebooted it (`poweroff`):
          // that is its expected end, not a failure.
          m.exec_status = kExitOk;
          break;
        }
        if (!status) {
          fmt::print(stderr, "twoostwo-vmm: exec '{}': {}\n", cmd, status.error().message);
          m.exec_status = kExitTimeout;
          break;
        }
        m.exec_status = *status;
      }
      request_stop();
    });
  }

  // Block the signals on this thread so that SIGTERM reaches the I/O thread's
  // signal_set only; the engine uses its own signal to leave KVM_RUN.
  int status = kExitOk;
  m.cpu_thread = std::this_thread::get_id();
  {
    DeadlineTimer timer(*m.clock, [&m] { m.deadline_passed(); });
    while (!m.stop && !m.guest_shutdown) {
      uint64_t deadline;
      {
        std::lock_guard lock(m.machine->mutex());
        m.machine->advance_time(m.clock->now_ns());
        deadline = m.machine->next_deadline_ns();
      }
      timer.arm(deadline);
      const RunResult r = m.engine->run();
      m.nics->receive_held_back();  // the guest may have freed ring space for frames held on a socket
      if (r.reason == StopReason::kHalt && !r.detail.empty()) {
        // HLT with interrupts disabled (and no NMI source): the guest has
        // stopped for good; wait for SIGTERM rather than spin.
        fmt::print(stderr, "twoostwo-vmm: {}: the guest halted with interrupts disabled\n", m.options.name);
        if (auto st = m.engine->state()) {
          fmt::print(stderr, "{}", format_registers(*st));
          const uint64_t pc = cpu_mode(*st) == CpuMode::kLong64 ? st->rip : ((st->cs.base + st->rip) & 0xFFFFFFFF);
          fmt::print(stderr, "{}", disassemble(*st, bus::GuestMemory(m.ram->data(), m.ram->size()),
                                               pc >= 1 ? pc - 1 : pc, 2, pc));
        }
        m.wait_for_stop();
      } else if (r.reason == StopReason::kHalt) {
        m.wait_while_halted();
      } else if (r.reason == StopReason::kShutdown) {
        m.guest_shutdown = true;
      } else if (r.reason == StopReason::kTripleFault || r.reason == StopReason::kFault) {
        auto state = m.engine->state();
        const std::string reason =
            (r.reason == StopReason::kTripleFault ? "triple fault" : "unhandled exit") +
            (r.detail.empty() ? std::string() : ": " + r.detail);
        if (state) {
          fmt::print(stderr, "{}", fault_report(reason, *state, bus::GuestMemory(m.ram->data(), m.ram->size())));
        } else {
          fmt::print(stderr, "twoostwo-vmm: fault: {} (registers unavailable: {})\n", reason, state.error().message);
        }
        status = kExitFault;
        break;
      }
    }
  }
  m.stop = true;  // the exec thread must not report a timeout for a VM that ended
  if (m.guest_shutdown) fmt::print(stderr, "twoostwo-vmm: {}: the guest powered off or reset\n", m.options.name);
  if (const uint64_t n = m.engine->instructions_retired(); n != 0) {
    fmt::print(stderr, "twoostwo-vmm: {}: {} instructions retired, guest time {:.6f} s\n", m.options.name, n,
               static_cast<double>(m.clock->now_ns()) / 1e9);
  }
  m.channel->close();
  if (exec_thread.joinable()) exec_thread.join();
  m.console->flush();
  m.io.stop();
  io_thread.join();
  m.nics->stop();
  for (const auto& line : m.nics->describe()) fmt::print(stderr, "twoostwo-vmm: {}: {}\n", m.options.name, line);
  if (status == kExitOk && !m.options.exec.empty()) status = m.exec_status;
  return status;
}

}  // namespace twoostwo::vmcore
