// A qemu-system-i386 -accel tcg guest running the same kernel and initrd as
// twoOStwo's default guest, with its node.conf appended as the monitor would
// (a second cpio archive at a 4-byte boundary), its COM2 agent on a Unix
// socket, and one ne2k_pci card on the netdev the test gives. The reference
// peer of the NIC and fabric end-to-end tests.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/guest.h"
#include "vmcore/boot/cpio.h"

namespace twoostwo::testing {



class QemuGuest {
 public:
  /// `netdev`: the -netdev value without its id, e.g.
  /// "dgram,local.type=inet,local.host=127.0.0.1,local.port=5000,remote.type=inet,…".
  QemuGuest(const std::string& node_conf, const std::string& netdev, const std::string& mac) {
    std::string initrd = slurp(kGuestI386 / "initrd.cpio");
    initrd.resize((initrd.size() + 3) & ~size_t{3}, '\0');
    auto archive = vmcore::boot::node_config_archive(node_conf);
    if (archive) initrd.append(reinterpret_cast<const char*>(archive->data()), archive->size());
    std::ofstream(dir_.path() / "initrd.cpio", std::ios::binary) << initrd;
    process_ = std::make_unique<ChildProcess>(
        dir_.path(),
        std::vector<std::string>{
            "/usr/bin/qemu-system-i386", "-accel", "tcg", "-m", "128", "-display", "none", "-monitor", "none",
            "-no-reboot", "-kernel", (kGuestI386 / "vmlinuz").string(), "-initrd", (dir_.path() / "initrd.cpio").string(),
            "-append", "console=ttyS0 quiet panic=1 cryptomgr.notests tsc=reliable no_timer_check mitigations=off",
            "-serial", "file:" + (dir_.path() / "console.log").string(), "-serial",
            "unix:" + (dir_.path() / "com2.sock").string() + ",server,nowait", "-netdev", netdev + ",id=n0",
            "-device", "ne2k_pci,netdev=n0,romfile=,mac=" + mac});
    // Connect to COM2 at once: QEMU's `server,nowait` socket drops what the
    // guest writes while no client is connected, so a late connection could
    // miss the agent's one "@@twoostwo ready" line.
    const std::filesystem::path sock = dir_.path() / "com2.sock";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!std::filesystem::exists(sock) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    connected_ = agent_.connect(sock);
  }
  ~QemuGuest() { stop(); }

  /// The guest's hostname once its agent is ready, or "" (see diagnostics()).
  std::string wait_ready(std::chrono::seconds timeout) {
    if (!connected_) return agent_.wait_ready(dir_.path() / "com2.sock", timeout);
    return agent_.channel().wait_ready(timeout).value_or("");
  }
  Agent::Output run(const std::string& cmd, std::chrono::seconds timeout = std::chrono::seconds(120)) {
    return agent_.run(cmd, timeout);
  }
  std::string diagnostics() const { return "qemu:\n" + process_->err() + "\nconsole:\n" + slurp(dir_.path() / "console.log"); }
  ChildProcess& process() { return *process_; }
  /// SIGTERM, then wait up to 10 s (the destructor SIGKILLs a straggler).
  void stop() {
    if (process_) {
      process_->signal(SIGTERM);
      (void)process_->wait(std::chrono::seconds(10));
    }
  }

 private:
  TempDir dir_;
  std::unique_ptr<ChildProcess> process_;
  Agent agent_;
  bool connected_ = false;
};

}  // namespace twoostwo::testing
