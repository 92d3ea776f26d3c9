// twoostwo-vmm: one virtual machine per process (DESIGN.md, "Processes").
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "vmcore/monitor.h"

using namespace twoostwo::vmcore;

int main(int argc, char** argv) {
  MonitorOptions o;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0') {
    o.cache_dir = std::string(x) + "/twoostwo";
  } else if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') {
    o.cache_dir = std::string(h) + "/.cache/twoostwo";
  }
  CLI::App app{
      "twoostwo-vmm: run one x86 virtual machine (a Linux kernel booted directly, or a raw BIOS image).\n"
      "The serial console is COM1 (ttyS0); the guest command channel is COM2 (ttyS1)."};
  app.set_version_flag("--version", "twoostwo-vmm 0.1.0");
  app.get_formatter()->column_width(34);
  app.footer(
      "Exit status: 0 the guest powered off or reset (reboot=k), or SIGTERM; 1 bad options or files, or no usable "
      "CPU engine; 2 triple fault or an unhandled exit (a fault report with registers and disassembly goes to "
      "stderr); 3 with --exec, the guest was not ready in time or a command timed out. With --exec, the status is "
      "that of the last command.\n\nExample:\n  twoostwo-vmm --kernel build/guest/i386/vmlinuz --initrd "
      "build/guest/i386/initrd.cpio --exec 'uname -a'");

  std::string engine = "auto", clock = "host", jit = "on";
  bool no_decompress = false, quiet_console = false;
  double timer_slack_ms = static_cast<double>(kDefaultTimerSlackNs) / 1e6;
  long ready_timeout = 600, exec_timeout = 600;
  app.add_option("--kernel", o.kernel, "Linux bzImage to boot directly")->check(CLI::ExistingFile);
  app.add_option("--initrd", o.initrd, "initrd (cpio, optionally compressed) for the kernel")
      ->check(CLI::ExistingFile);
  app.add_option("--bios", o.bios, "raw firmware image (64 KiB multiple, <= 256 KiB) started at the reset vector")
      ->check(CLI::ExistingFile)
      ->excludes("--kernel");
  app.add_option("--cmdline", o.cmdline, "kernel command line, replacing the default")->capture_default_str();
  app.add_option("--append", o.append, "text appended to the kernel command line");
  app.add_option("--node-config", o.node_config,
                 "node.conf for the guest's /init (guest/README.md), appended to the initrd as "
                 "etc/twoostwo/node.conf")
      ->check(CLI::ExistingFile);
  app.add_option("--name", o.name, "VM name used in logs")->capture_default_str();
  app.add_option("-m,--memory", o.memory_mib, "guest RAM in MiB (16..3072)")
      ->check(CLI::Range(16, 3072))
      ->capture_default_str();
  app.add_option("--cpu-engine", engine,
                 "auto: KVM if a short self-test runs guest code at native speed, else the emulator; kvm; emulator")
      ->check(CLI::IsMember({"auto", "kvm", "emulator"}))
      ->capture_default_str();
  app.add_option("--clock", clock,
                 "host: guest time follows the host; virtual: guest time follows instructions executed "
                 "(repeatable runs; emulator engine)")
      ->check(CLI::IsMember({"host", "virtual"}))
      ->capture_default_str();
  app.add_option("--jit", jit,
                 "emulator engine: on compiles hot guest code to host code, off interprets only "
                 "(TWOOSTWO_EMU_JIT=off|on|always overrides both)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--timer-slack", timer_slack_ms,
                 "milliseconds a halted guest's one-shot timer interrupt (the Linux tick in high-resolution mode) "
                 "may come late, so that an idle guest wakes the host less often; the guest counts the ticks that "
                 "passed. 0: on time. Interrupts from devices (network, console) are never delayed")
      ->check(CLI::Range(0.0, 1000.0))
      ->capture_default_str();
  app.add_flag("--no-host-decompress", no_decompress,
               "run the kernel's own decompressor instead of unpacking an XZ payload on the host");
  app.add_option("--cache-dir", o.cache_dir,
                 "where kernels decompressed on the host are cached (default $XDG_CACHE_HOME/twoostwo or "
                 "~/.cache/twoostwo; 'none' disables)");
  app.add_option("--console-log", o.console_log, "write everything the guest prints on COM1 to this file");
  app.add_option("--console-socket", o.console_socket,
                 "serve COM1 on this Unix socket (connect with e.g. `socat - UNIX-CONNECT:PATH`)");
  app.add_flag("-q,--quiet", quiet_console, "do not echo COM1 to stdout (the default when --exec is given)");
  app.add_option("--command-socket", o.command_socket, "serve the raw COM2 command channel on this Unix socket");
  std::vector<std::string> nic_specs;
  app.add_option("--nic", nic_specs,
                 "a network card (repeatable, at most 4): comma-separated KEY=VALUE: model=rtl8029|ne2000 (default "
                 "rtl8029), mac=52:54:00:12:34:56 (default: derived from --name and the card's index, locally "
                 "administered), backend=fd|udp|none (default none: no cable), fd=N (an inherited SOCK_SEQPACKET "
                 "socket, one frame per message), local=HOST:PORT and remote=HOST:PORT (UDP, one frame per datagram, "
                 "as QEMU's -netdev dgram), io=0x300 and irq=9 (ne2000 only). PCI cards sit in slots 3-6 at I/O "
                 "0xc000+0x100*n with IRQ 11, 10, 5, 7. Example: --nic model=ne2000,backend=udp,"
                 "local=127.0.0.1:10001,remote=127.0.0.1:10000");
  app.add_option("-e,--exec", o.exec,
                 "run this shell command in the guest once it is ready (repeatable), print its output, then stop "
                 "the VM");
  app.add_option("--ready-timeout", ready_timeout, "seconds to wait for the guest agent (with --exec)")
      ->capture_default_str();
  app.add_option("--exec-timeout", exec_timeout, "seconds each --exec command may run")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, naming the option or file: "twoostwo-vmm: --kernel: File does not exist: x".
    std::fprintf(stderr, "twoostwo-vmm: %s (see --help)\n", e.what());
    return kExitSetup;
  }

  if (o.kernel.empty() && o.bios.empty()) {
    std::fprintf(stderr, "twoostwo-vmm: nothing to boot: give --kernel FILE (or --bios FILE)\n");
    return kExitSetup;
  }
  if (nic_specs.size() > kMaxNics) {
    std::fprintf(stderr, "twoostwo-vmm: --nic: %zu cards given, a VM has at most %zu\n", nic_specs.size(), kMaxNics);
    return kExitSetup;
  }
  for (const auto& spec : nic_specs) {
    auto parsed = parse_nic_spec(spec);
    if (!parsed) {
      std::fprintf(stderr, "twoostwo-vmm: %s\n", parsed.error().message.c_str());
      return kExitSetup;
    }
    o.nics.push_back(*parsed);
  }
  if (o.cache_dir == "none") o.cache_dir.clear();
  o.engine = engine == "kvm" ? EngineChoice::kKvm : engine == "emulator" ? EngineChoice::kEmulator
                                                                         : EngineChoice::kAuto;
  o.clock = clock == "virtual" ? ClockChoice::kVirtual : ClockChoice::kHost;
  o.emulator_jit = jit == "on";
  o.timer_slack_ns = static_cast<uint64_t>(timer_slack_ms * 1e6);
  o.host_decompress = !no_decompress;
  o.console_stdout = !quiet_console && o.exec.empty();
  o.ready_timeout = std::chrono::seconds(ready_timeout);
  o.exec_timeout = std::chrono::seconds(exec_timeout);

  auto monitor = Monitor::create(o);
  if (!monitor) {
    std::fprintf(stderr, "twoostwo-vmm: %s\n", monitor.error().message.c_str());
    return kExitSetup;
  }
  return (*monitor)->run();
}
