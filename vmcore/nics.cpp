#include "vmcore/nics.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <mutex>

#include "nic/dp8390.h"
#include "nic/ne2000_isa.h"
#include "nic/rtl8029.h"
#include "vmcore/cpu_engine.h"
#include "vmcore/devices/pci_host.h"
#include "vmcore/devices/pic.h"
#include "vmcore/machine.h"
#include "vmcore/net_backends.h"

namespace twoostwo::vmcore {
namespace {

constexpr unsigned kPciSlots[kMaxNics] = {3, 4, 5, 6};
constexpr uint8_t kPciIrqs[] = {11, 10, 5, 7};
constexpr uint16_t kPciIoBase = 0xC000;
// IRQs an NE2000's jumpers offer that this PC leaves free (0 PIT, 1 i8042,
// 3/4 COM2/COM1, 8 RTC, 2 cascade, 6 floppy, 14/15 IDE are taken or reserved
// on a PC/AT; 12 is the PS/2 mouse's but free here).
constexpr uint8_t kIsaIrqs[] = {5, 7, 9, 10, 11, 12};

Result<uint64_t> parse_number(std::string_view spec, std::string_view key, std::string_view v, uint64_t max) {
  int base = 10;
  if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
    base = 16;
    v.remove_prefix(2);
  }
  uint64_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n, base);
  if (ec != std::errc{} || end != v.data() + v.size() || n > max) {
    return fail(fmt::format("--nic '{}': {}='{}' is not a number from 0 to {:#x}", spec, key, v, max));
  }
  return n;
}

/// A card with no cable: frames sent are counted and go nowhere.
class UnpluggedBackend final : public nic::NetBackend {
 public:
  void send(std::span<const std::byte>) override { ++dropped; }
  uint64_t dropped = 0;
};

}  // namespace

Result<nic::MacAddress> parse_mac(std::string_view text) {
  nic::MacAddress mac{};
  const auto bad = [&] { return fail(fmt::format("MAC address '{}': expected six hex bytes like 52:54:00:12:34:56", text)); };
  if (text.size() != 17) return bad();
  for (size_t i = 0; i < 6; ++i) {
    if (i > 0 && text[3 * i - 1] != ':' && text[3 * i - 1] != '-') return bad();
    unsigned v = 0;
    const auto [end, ec] = std::from_chars(text.data() + 3 * i, text.data() + 3 * i + 2, v, 16);
    if (ec != std::errc{} || end != text.data() + 3 * i + 2) return bad();
    mac[i] = static_cast<uint8_t>(v);
  }
  if (mac[0] & 1) return fail(fmt::format("MAC address '{}' is a multicast address (bit 0 of the first byte)", text));
  return mac;
}

nic::MacAddress default_mac(std::string_view vm_name, unsigned index) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (const char ch : vm_name) {
    h ^= static_cast<uint8_t>(ch);
    h *= 16777619u;
  }
  return {0x02, 0x2f, static_cast<uint8_t>(h >> 16), static_cast<uint8_t>(h >> 8), static_cast<uint8_t>(h),
          static_cast<uint8_t>(index)};
}

Result<NicSpec> parse_nic_spec(std::string_view spec) {
  NicSpec s;
  std::string_view rest = spec;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return fail(fmt::format("--nic '{}': '{}' is not KEY=VALUE", spec, item));
    }
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = item.substr(eq + 1);
    if (key == "model") {
      if (value == "rtl8029") s.model = NicSpec::Model::kRtl8029;
      else if (value == "ne2000") s.model = NicSpec::Model::kNe2000;
      else return fail(fmt::format("--nic '{}': unknown model '{}' (expected rtl8029 or ne2000)", spec, value));
    } else if (key == "mac") {
      auto mac = parse_mac(value);
      if (!mac) return fail(fmt::format("--nic '{}': {}", spec, mac.error().message));
      s.mac = *mac;
    } else if (key == "backend") {
      if (value == "fd") s.backend = NicSpec::Backend::kFd;
      else if (value == "udp") s.backend = NicSpec::Backend::kUdp;
      else if (value == "none") s.backend = NicSpec::Backend::kNone;
      else return fail(fmt::format("--nic '{}': unknown backend '{}' (expected fd, udp or none)", spec, value));
    } else if (key == "fd") {
      auto n = parse_number(spec, key, value, 1 << 20);
      if (!n) return std::unexpected(n.error());
      s.fd = static_cast<int>(*n);
    } else if (key == "local") {
      s.local = std::string(value);
    } else if (key == "remote") {
      s.remote = std::string(value);
    } else if (key == "io") {
      auto n = parse_number(spec, key, value, 0xFFFF);
      if (!n) return std::unexpected(n.error());
      s.io = static_cast<uint16_t>(*n);
    } else if (key == "irq") {
      auto n = parse_number(spec, key, value, 15);
      if (!n) return std::unexpected(n.error());
      s.irq = static_cast<uint8_t>(*n);
    } else {
      return fail(fmt::format("--nic '{}': unknown key '{}' (expected model, mac, backend, fd, local, remote, io, irq)",
                              spec, key));
    }
  }
  if (s.backend == NicSpec::Backend::kFd && s.fd < 0) return fail(fmt::format("--nic '{}': backend=fd needs fd=N", spec));
  if (s.backend != NicSpec::Backend::kFd && s.fd >= 0) {
    return fail(fmt::format("--nic '{}': fd= needs backend=fd", spec));
  }
  if (s.backend == NicSpec::Backend::kUdp && (s.local.empty() || s.remote.empty())) {
    return fail(fmt::format("--nic '{}': backend=udp needs local=HOST:PORT and remote=HOST:PORT", spec));
  }
  if (s.backend != NicSpec::Backend::kUdp && (!s.local.empty() || !s.remote.empty())) {
    return fail(fmt::format("--nic '{}': local= and remote= need backend=udp", spec));
  }
  if (s.model == NicSpec::Model::kRtl8029 && (s.io || s.irq)) {
    return fail(fmt::format("--nic '{}': io= and irq= are for model=ne2000 (a PCI card gets its resources like "
                            "from firmware)",
                            spec));
  }
  if (s.io && (*s.io < 0x200 || *s.io > 0x3E0 || (*s.io & 0x1F) != 0)) {
    return fail(fmt::format("--nic '{}': io={:#x}: an NE2000's jumpers offer 0x200-0x3e0 in steps of 0x20", spec,
                            *s.io));
  }
  if (s.irq && std::find(std::begin(kIsaIrqs), std::end(kIsaIrqs), *s.irq) == std::end(kIsaIrqs)) {
    return fail(fmt::format("--nic '{}': irq={} is not free for an ISA card on this PC (expected 5, 7, 9, 10, 11 or 12)",
                            spec, *s.irq));
  }
  return s;
}

struct NicSet::Card {
  unsigned index = 0;
  NicSpec spec;
  nic::MacAddress mac{};
  std::unique_ptr<SocketBackend> socket;
  UnpluggedBackend unplugged;
  std::unique_ptr<nic::Ne2000Isa> isa;
  std::unique_ptr<nic::Rtl8029> pci;
  uint16_t io_base = 0;
  uint8_t irq = 0;
  unsigned slot = 0;
  uint32_t coalesced_base = 0;  // the base whose data port is a coalesced zone, 0 = none
  std::atomic<bool> room{true};   // the host-side receive queue had room after the last frame

  nic::NetBackend& backend() { return socket ? static_cast<nic::NetBackend&>(*socket) : unplugged; }
  nic::Dp8390& core() { return isa ? isa->core() : pci->core(); }
  const char* model() const { return isa ? "ne2000" : "rtl8029"; }
};

NicSet::NicSet(Machine& machine) : machine_(machine) {}

NicSet::~NicSet() { stop(); }

Result<std::unique_ptr<NicSet>> NicSet::create(const std::vector<NicSpec>& specs, std::string_view vm_name,
                                               Machine& machine) {
  if (specs.size() > kMaxNics) {
    return fail(fmt::format("{} NICs asked for: a VM has at most {}", specs.size(), kMaxNics));
  }
  std::unique_ptr<NicSet> set(new NicSet(machine));
  std::lock_guard lock(machine.mutex());
  std::vector<uint8_t> isa_irqs;
  for (const auto& s : specs) {
    if (s.model == NicSpec::Model::kNe2000) isa_irqs.push_back(s.irq.value_or(nic::Ne2000Isa::kDefaultIrq));
  }
  unsigned pci_count = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    auto card = std::make_unique<Card>();
    Card& c = *card;
    c.index = static_cast<unsigned>(i);
    c.spec = specs[i];
    c.mac = specs[i].mac.value_or(default_mac(vm_name, c.index));
    const std::string who = fmt::format("nic{} ({})", i, specs[i].model == NicSpec::Model::kNe2000 ? "ne2000" : "rtl8029");
    switch (specs[i].backend) {
      case NicSpec::Backend::kFd: {
        auto b = SocketBackend::adopt_fd(specs[i].fd);
        if (!b) return fail(fmt::format("{}: {}", who, b.error().message));
        c.socket = std::move(*b);
        break;
      }
      case NicSpec::Backend::kUdp: {
        auto b = SocketBackend::udp(specs[i].local, specs[i].remote);
        if (!b) return fail(fmt::format("{}: {}", who, b.error().message));
        c.socket = std::move(*b);
        break;
      }
      case NicSpec::Backend::kNone:
        break;
    }
    // Flow control (nics.h receive_held_back): checked between frames
    // without the machine's mutex; deliver() and has_room() keep it current.
    if (c.socket) c.socket->set_room([cp = &c] { return cp->room.load(); });
    for (const auto& other : set->cards_) {
      if (other->mac == c.mac) {
        return fail(fmt::format("{}: MAC {} is also nic{}'s", who, nic::format_mac(c.mac), other->index));
      }
    }
    if (specs[i].model == NicSpec::Model::kNe2000) {
      c.io_base = specs[i].io.value_or(nic::Ne2000Isa::kDefaultIoBase);
      c.irq = specs[i].irq.value_or(nic::Ne2000Isa::kDefaultIrq);
      if (std::count(isa_irqs.begin(), isa_irqs.end(), c.irq) > 1) {
        return fail(fmt::format("{}: irq={} is also another ISA card's (give each ne2000 its own irq=)", who, c.irq));
      }
      c.isa = std::make_unique<nic::Ne2000Isa>(c.mac, machine.pic_pair().line(c.irq), c.backend());
      if (auto r = machine.io_bus().add(c.io_base, nic::Ne2000Isa::kPorts, *c.isa); !r) {
        return fail(fmt::format("{}: io={:#x}: {}", who, c.io_base, r.error().message));
      }
    } else {
      // The first IRQ of kPciIrqs that no ISA card and no earlier PCI card has.
      uint8_t irq = 0;
      for (const uint8_t candidate : kPciIrqs) {
        if (std::find(isa_irqs.begin(), isa_irqs.end(), candidate) != isa_irqs.end()) continue;
        const bool taken = std::any_of(set->cards_.begin(), set->cards_.end(),
                                       [&](const auto& other) { return other->pci && other->irq == candidate; });
        if (!taken) {
          irq = candidate;
          break;
        }
      }
      if (irq == 0) return fail(fmt::format("{}: no free IRQ left for a PCI card (ISA cards hold them)", who));
      c.irq = irq;
      c.slot = kPciSlots[pci_count];
      c.io_base = static_cast<uint16_t>(kPciIoBase + 0x100 * pci_count);
      ++pci_count;
      c.pci = std::make_unique<nic::Rtl8029>(c.mac, machine.pic_pair().line(c.irq), c.backend(), machine.io_bus());
      c.pci->set_interrupt_line(c.irq);
      if (auto r = machine.pci().attach(c.slot, *c.pci); !r) return fail(fmt::format("{}: {}", who, r.error().message));
      c.pci->assign_io_base(c.io_base);
      if (c.pci->decoded_io_base() != c.io_base) {
        return fail(fmt::format("{}: BAR0 at {:#x} could not be decoded (port conflict)", who, c.io_base));
      }
      // PCI interrupts are level-triggered and shareable (PCI Local Bus
      // spec 3.0 §2.2.6): make the IRQ level-triggered as firmware would.
      machine.pic_pair().set_elcr(static_cast<uint16_t>(machine.pic_pair().elcr() | (1u << c.irq)));
    }
    set->cards_.push_back(std::move(card));
  }
  return set;
}

void NicSet::deliver(Card& card, std::span<const std::byte> frame) {
  std::lock_guard lock(machine_.mutex());
  card.core().receive(frame);
  card.room.store(card.core().rx_queue_length() < nic::Dp8390::kRxQueueFrames);
}

void NicSet::start(boost::asio::io_context& io, std::function<bool()> defer) {
  for (auto& card : cards_) {
    if (!card->socket) continue;
    Card* c = card.get();
    c->socket->start(io, [this, c](std::span<const std::byte> frame) { deliver(*c, frame); }, defer);
  }
}

bool NicSet::has_room(Card& card) {
  std::lock_guard lock(machine_.mutex());
  const bool room = card.core().rx_queue_length() < nic::Dp8390::kRxQueueFrames;
  card.room.store(room);
  return room;
}

std::vector<int> NicSet::receive_fds() const {
  std::vector<int> fds;
  for (const auto& card : cards_) {
    if (card->socket && !card->socket->peer_closed() && !card->socket->held_back()) fds.push_back(card->socket->fd());
  }
  return fds;
}

size_t NicSet::receive_held_back() {
  size_t frames = 0;
  for (auto& card : cards_) {
    if (!card->socket || !card->socket->held_back()) continue;
    Card* c = card.get();
    if (!has_room(*c)) continue;
    frames += c->socket->receive_now([this, c](std::span<const std::byte> frame) { deliver(*c, frame); });
  }
  return frames;
}

void NicSet::resume_io() {
  for (auto& card : cards_) {
    if (card->socket) card->socket->resume();
  }
}

size_t NicSet::receive_pending() {
  size_t frames = 0;
  for (auto& card : cards_) {
    if (!card->socket) continue;
    Card* c = card.get();
    frames += c->socket->receive_now([this, c](std::span<const std::byte> frame) { deliver(*c, frame); });
  }
  return frames;
}

Result<bool> NicSet::coalesce(Card& c, uint32_t io_base) {
  if (c.coalesced_base != 0) {
    const uint32_t old = c.coalesced_base;
    c.coalesced_base = 0;
    if (auto r = engine_->uncoalesce_port_writes(static_cast<uint16_t>(old + nic::Dp8390::kDataPort),
                                                 nic::Dp8390::kDataPorts);
        !r) {
      return std::unexpected(r.error());
    }
  }
  if (io_base == 0) return false;
  auto r = engine_->coalesce_port_writes(static_cast<uint16_t>(io_base + nic::Dp8390::kDataPort),
                                         nic::Dp8390::kDataPorts);
  if (!r) return std::unexpected(r.error());
  if (*r) c.coalesced_base = io_base;
  return *r;
}

Result<size_t> NicSet::coalesce_data_ports(CpuEngine& engine) {
  std::lock_guard lock(machine_.mutex());
  engine_ = &engine;
  size_t coalesced = 0;
  for (auto& card : cards_) {
    Card* c = card.get();
    const uint32_t base = c->isa ? c->io_base : c->pci->decoded_io_base();
    auto r = coalesce(*c, base);
    if (!r) return fail(fmt::format("nic{} ({}): data port: {}", c->index, c->model(), r.error().message));
    if (*r) ++coalesced;
    if (c->pci) {
      // The guest may move BAR0 (Linux's probe sizes it, then puts it back):
      // the zone follows the card. A zone the engine refuses here only
      // costs speed: the writes are then handled one by one, in order.
      c->pci->on_io_base_changed([this, c](uint32_t new_base) { (void)coalesce(*c, new_base); });
    }
  }
  return coalesced;
}

void NicSet::stop() {
  for (auto& card : cards_) {
    if (card->socket) card->socket->stop();
  }
}

size_t NicSet::size() const { return cards_.size(); }

std::vector<std::string> NicSet::describe() const {
  std::vector<std::string> out;
  std::lock_guard lock(machine_.mutex());
  for (const auto& card : cards_) {
    Card& c = *card;
    const nic::Dp8390Counters& k = c.core().counters();
    const std::string where = c.isa ? fmt::format("io {:#x} irq {}", c.io_base, c.irq)
                                    : fmt::format("pci slot {} io {:#x} irq {}", c.slot, c.io_base, c.irq);
    std::string backend = "no backend";
    if (c.socket) {
      const auto b = c.socket->counters();
      backend = fmt::format("{} (tx dropped {}, rx errors {}{})", c.socket->description(), b.tx_dropped, b.rx_errors,
                            c.socket->peer_closed() ? ", peer closed" : "");
    }
    out.push_back(fmt::format("nic{}: {} {} {}, {}{}; tx {} frames {} bytes, rx {} frames {} bytes, rx filtered {}, "
                              "rx queued {}, rx dropped {}",
                              c.index, c.model(), nic::format_mac(c.mac), where, backend,
                              c.coalesced_base != 0 ? ", data port coalesced" : "", k.tx_frames, k.tx_bytes,
                              k.rx_frames, k.rx_bytes, k.rx_filtered, k.rx_queued, k.rx_dropped));
  }
  return out;
}

}  // namespace twoostwo::vmcore
