// One virtual machine: guest RAM, the legacy PC devices, the Linux boot
// loader, a CPU engine on its own thread, the console and the command
// channel. `twoostwo-vmm` is a thin command line around this class.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vmcore/bus/error.h"
#include "vmcore/nics.h"

namespace twoostwo::vmcore {

enum class EngineChoice { kAuto, kKvm, kEmulator };
enum class ClockChoice { kHost, kVirtual };

/// The kernel command line every Linux guest gets unless --cmdline replaces
/// it (reference/ne2000-kvm-facts.md §3, §9: no ACPI/APIC, PCI mechanism #1,
/// keyboard-controller reboot, and flags that save emulated work).
inline constexpr const char* kDefaultCmdline =
    "console=ttyS0 noapic acpi=off pci=conf1 reboot=k panic=1 i8042.noaux i8042.nopnp "
    "tsc=reliable no_timer_check cryptomgr.notests mitigations=off quiet";

/// MonitorOptions::timer_slack_ns by default.
inline constexpr uint64_t kDefaultTimerSlackNs = 12'000'000;

struct MonitorOptions {
  std::string name = "vm";          // for logs and the guest's default hostname
  std::string kernel;               // bzImage path (or empty with bios)
  std::string initrd;               // initrd path (optional)
  std::string bios;                 // raw firmware image (instead of kernel)
  std::string cmdline = kDefaultCmdline;
  std::string append;               // appended to cmdline
  std::string node_config;          // node.conf path, appended to the initrd as etc/twoostwo/node.conf
  uint64_t memory_mib = 128;
  EngineChoice engine = EngineChoice::kAuto;
  ClockChoice clock = ClockChoice::kHost;
  bool emulator_jit = true;         // emulator engine: compile hot blocks (EmulatorOptions::jit kOn; false: kOff)
  /// How long past a one-shot timer's deadline (TimedDevice::
  /// deadline_may_be_late) a halted CPU may sleep, in ns of host time, so
  /// that an idle guest wakes the host less often (Linux's timer slack,
  /// prctl PR_SET_TIMERSLACK, at the scale of the guest's tick). Host clock
  /// only; the virtual clock jumps to the exact deadline.
  uint64_t timer_slack_ns = kDefaultTimerSlackNs;
  bool host_decompress = true;      // decompress an XZ kernel payload on the host
  std::string cache_dir;            // where decompressed kernels are cached ("" = none)
  std::string console_log;          // file receiving COM1 output
  std::string console_socket;       // Unix socket serving COM1
  bool console_stdout = true;       // echo COM1 output to stdout
  std::string command_socket;       // Unix socket serving the raw COM2 stream
  std::vector<NicSpec> nics;        // network cards (nics.h), at most kMaxNics
  std::vector<std::string> exec;    // commands to run through COM2 once ready, then stop
  std::chrono::seconds ready_timeout{600};
  std::chrono::seconds exec_timeout{600};
  double kvm_max_ns_per_instruction = 20.0;  // --cpu-engine=auto threshold
};

/// Exit statuses of twoostwo-vmm (documented in --help).
enum ExitStatus : int {
  kExitOk = 0,        // guest powered off / reset, or SIGTERM
  kExitSetup = 1,     // bad options, files, or engine set-up failure
  kExitFault = 2,     // triple fault or an exit no engine could handle
  kExitTimeout = 3,   // --exec: guest not ready in time / command timed out
};

class Monitor {
 public:
  /// Build the machine and load the guest. Errors name the file or option.
  static Result<std::unique_ptr<Monitor>> create(const MonitorOptions& options);
  ~Monitor();

  /// Run until the VM ends. Returns the process exit status: see ExitStatus;
  /// with --exec, the exit status of the last command.
  int run();

  /// Ask the VM to stop (SIGTERM): thread-safe.
  void request_stop();

  /// The engine in use ("kvm" or "emulator") and why it was chosen.
  const std::string& engine_note() const;

 private:
  struct Impl;
  explicit Monitor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace twoostwo::vmcore
