// The VM's network cards: `--nic` specifications, and the set of card models
// (nic/) with their socket backends (net_backends.h), wired into the machine
// the way a PC's firmware would leave them.
//
// Wiring (issue 4; reference/ne2000-kvm-facts.md §4, §6):
// - rtl8029: a PCI function in slots 3, 4, 5, 6 (in --nic order), BAR0
//   assigned at 0xC000 + 0x100 * n with I/O decoding on (as SeaBIOS does),
//   and an Interrupt Line from 11, 10, 5, 7 (the first not taken by an ISA
//   card), made level-triggered in the ELCR: Linux booted with `noapic` and
//   no $PIR table uses the Interrupt Line register as the IRQ.
// - ne2000: the ISA card at `io` (default 0x300) and `irq` (default 9), as
//   its jumpers would set them; `ne.ko io=0x300 irq=9` finds it.
// - MAC: given, or 02:2f:HH:HH:HH:NN — a locally administered address from a
//   hash of the VM name and the card's index, the same on every run.
// - Data port: with an engine that can buffer port writes (KVM with
//   KVM_CAP_COALESCED_PIO, CpuEngine::coalesce_port_writes), each card's
//   remote-DMA data port (base + 0x10 .. 0x17, nic/dp8390.h's port map) is a
//   coalesced zone, so the `rep outsl` of a transmit does not exit once per
//   dword (facts §8). Only the data port: its writes only move bytes into
//   card memory and count RBCR down, which the driver looks at through a
//   register read (an exit, before which the engine delivers every buffered
//   write). Register writes (CR starts a transmit, IMR/ISR move the IRQ
//   line) and the reset port (base + 0x18, whose read resets the card) are
//   never buffered; reads never are.
#pragma once

#include <boost/asio/io_context.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nic/net_backend.h"
#include "vmcore/bus/error.h"

namespace twoostwo::vmcore {

class Machine;
class CpuEngine;

inline constexpr size_t kMaxNics = 4;

/// One `--nic` option: comma-separated KEY=VALUE pairs.
///   model=rtl8029|ne2000         (default rtl8029)
///   mac=52:54:00:12:34:56        (default: see above)
///   backend=fd|udp|none          (default none: a card with no cable)
///   fd=N                         backend=fd: an inherited SOCK_SEQPACKET socket
///   local=HOST:PORT,remote=HOST:PORT   backend=udp (QEMU's -netdev dgram framing)
///   io=0x300,irq=9               model=ne2000 only
struct NicSpec {
  enum class Model { kRtl8029, kNe2000 };
  enum class Backend { kNone, kFd, kUdp };
  Model model = Model::kRtl8029;
  std::optional<nic::MacAddress> mac;
  Backend backend = Backend::kNone;
  int fd = -1;
  std::string local, remote;
  std::optional<uint16_t> io;
  std::optional<uint8_t> irq;
};

/// Parse one `--nic` value. Errors name the offending key or value, e.g.
/// "--nic 'model=e1000': unknown model 'e1000' (expected rtl8029 or ne2000)".
Result<NicSpec> parse_nic_spec(std::string_view spec);
/// "52:54:00:12:34:56" (also with '-'). Errors: syntax, multicast bit set.
Result<nic::MacAddress> parse_mac(std::string_view text);
/// The default MAC of card `index` of VM `vm_name` (see the top of this file).
nic::MacAddress default_mac(std::string_view vm_name, unsigned index);

/// The cards of one VM. Created with the machine, before the CPU runs;
/// receiving starts with start() on the monitor's I/O thread.
class NicSet {
 public:
  /// Build, wire and attach the cards. Errors: too many cards, port or slot
  /// conflicts, bad backends (each message names the card: "nic1 (ne2000): ...").
  static Result<std::unique_ptr<NicSet>> create(const std::vector<NicSpec>& specs, std::string_view vm_name,
                                                Machine& machine);
  ~NicSet();
  NicSet(const NicSet&) = delete;
  NicSet& operator=(const NicSet&) = delete;

  /// Start receiving from the backends on `io`'s thread. While `defer`
  /// (optional) returns true, that thread leaves waiting frames to a thread
  /// that polls receive_fds() and calls receive_pending(), and which calls
  /// resume_io() when it stops (SocketBackend::start).
  void start(boost::asio::io_context& io, std::function<bool()> defer = {});
  /// Stop receiving (before `io` stops).
  void stop();

  /// The backends' sockets worth poll(2)ing (POLLIN) for frames: those
  /// whose peer is not known to have closed and whose card has room. The
  /// Monitor's CPU thread polls them while the guest halts, with
  /// receive_pending().
  std::vector<int> receive_fds() const;
  /// Hand every frame waiting on any backend to its card now, without
  /// blocking, on the calling thread (which must not hold the machine's
  /// mutex; each frame takes it). Safe while the I/O thread receives too:
  /// each card still gets its frames in arrival order (SocketBackend::
  /// receive_now). Returns the number of frames handed to the cards.
  size_t receive_pending();
  /// Flow control: a card takes frames from its backend only while its
  /// host-side queue has room (Dp8390::kRxQueueFrames); otherwise they wait
  /// on the socket, where a SOCK_SEQPACKET peer's sends fail once the
  /// buffer is full, so a frame is never lost silently inside the monitor.
  /// When the guest has freed ring space, this receives what was held back
  /// (call it on a thread that does not hold the machine's mutex: the
  /// Monitor's CPU thread, after every run()). Cheap when nothing is held
  /// back. Returns the number of frames handed to the cards.
  size_t receive_held_back();
  /// Once the thread that polled receive_fds() has stopped (start()'s
  /// `defer` false again): the I/O thread waits on every socket again
  /// (SocketBackend::resume).
  void resume_io();

  /// Ask `engine` to buffer guest writes to each card's data port (see the
  /// top of this file), now and whenever an RTL8029's BAR0 moves (the old
  /// zone is dropped, the new one added). Call once, with the machine's
  /// mutex not held by another thread, before the CPU runs; `engine` must
  /// outlive this NicSet. Returns how many cards' data ports are coalesced:
  /// 0 with an engine that delivers every write at once anyway (the
  /// emulator). Errors: the engine refused a zone (the message names the card).
  Result<size_t> coalesce_data_ports(CpuEngine& engine);

  size_t size() const;
  /// One line per card: model, MAC, where it is, backend and counters.
  std::vector<std::string> describe() const;

 private:
  struct Card;
  explicit NicSet(Machine& machine);
  void deliver(Card& card, std::span<const std::byte> frame);
  bool has_room(Card& card);
  Result<bool> coalesce(Card& card, uint32_t io_base);
  Machine& machine_;
  CpuEngine* engine_ = nullptr;  // set by coalesce_data_ports
  std::vector<std::unique_ptr<Card>> cards_;
};

}  // namespace twoostwo::vmcore
