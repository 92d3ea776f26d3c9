// An NE2000's remote-DMA data port as a coalesced PIO zone under the KVM
// engine (vmcore/nics.h "Data port", CpuEngine::coalesce_port_writes): the
// card wired by NicSet into a real Machine, a tiny guest
// (tests/vmcore/guests/nic_outsl.S) that moves a frame into the card with
// one `rep outsl` and transmits it. Skips, with the reason, only when
// /dev/kvm cannot be opened (scripts/test.sh fails a run that skipped it on
// a machine that has /dev/kvm).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "vmcore/kvm/kvm_engine.h"
#include "vmcore/machine.h"
#include "vmcore/nics.h"

namespace twoostwo::vmcore {
namespace {

constexpr uint64_t kRamSize = 2 << 20;
constexpr uint64_t kLoadAddress = 0x1000;
constexpr unsigned kDwords = 256;        // the guest's `rep outsl` count
constexpr unsigned kRegisterAccesses = 13;  // its port accesses other than the data port's

std::vector<uint8_t> load_guest(const std::string& name) {
  const std::string path = std::string(TWOOSTWO_TEST_DATA_DIR) + "/guests/" + name + ".bin";
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path << " (built by the twoostwo_test_guests target)";
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Page-aligned guest RAM, as KVM needs it.
struct Ram {
  uint8_t* host = nullptr;
  Ram() {
    void* p = ::mmap(nullptr, kRamSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) host = static_cast<uint8_t*>(p);
  }
  ~Ram() {
    if (host != nullptr) ::munmap(host, kRamSize);
  }
  Ram(const Ram&) = delete;
  Ram& operator=(const Ram&) = delete;
};

TEST(KvmNicDataPort, RepOutslThroughTheCoalescedZoneArrivesWholeAndInOrder) {
  if (auto probe = KvmEngine::probe(); !probe) GTEST_SKIP() << "no /dev/kvm: " << probe.error().message;
  Ram ram;
  ASSERT_NE(ram.host, nullptr);
  const bus::GuestMemory memory(ram.host, kRamSize);
  HostClock clock;
  MachineConfig mc;
  mc.memory = memory;
  mc.clock = &clock;
  auto machine = Machine::create(std::move(mc));
  ASSERT_TRUE(machine) << machine.error().message;

  // The card's cable: one end of a SOCK_SEQPACKET pair (the NicSet owns sv[0]).
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  auto spec = parse_nic_spec("model=ne2000,io=0x300,irq=9,backend=fd,fd=" + std::to_string(sv[0]));
  ASSERT_TRUE(spec) << spec.error().message;
  auto nics = NicSet::create({*spec}, "kvm", **machine);
  ASSERT_TRUE(nics) << nics.error().message;

  MachineBindings b;
  b.memory = memory;
  b.io = &(*machine)->io_bus();
  b.mmio = &(*machine)->mmio_bus();
  b.pic = &(*machine)->pic();
  b.clock = &clock;
  b.lock_devices = [m = machine->get()] { m->mutex().lock(); };
  b.unlock_devices = [m = machine->get()] { m->mutex().unlock(); };
  auto engine = KvmEngine::create(std::move(b));
  ASSERT_TRUE(engine) << engine.error().message;
  KvmEngine& kvm = **engine;

  auto coalesced = (*nics)->coalesce_data_ports(kvm);
  ASSERT_TRUE(coalesced) << coalesced.error().message;
  // Without KVM_CAP_COALESCED_PIO nothing is coalesced, and the data must
  // still arrive whole (each write then exits).
  EXPECT_EQ(*coalesced, kvm.has_coalesced_pio() ? 1u : 0u);
  EXPECT_EQ((*nics)->describe()[0].find("data port coalesced") != std::string::npos, kvm.has_coalesced_pio())
      << (*nics)->describe()[0];

  const std::vector<uint8_t> image = load_guest("nic_outsl");
  ASSERT_FALSE(image.empty());
  ASSERT_TRUE(memory.write(kLoadAddress, image));
  CpuState entry = CpuState::reset();
  entry.cs.selector = 0;
  entry.cs.base = 0;
  entry.rip = kLoadAddress;
  ASSERT_TRUE(kvm.set_state(entry));

  const RunResult r = kvm.run();
  ASSERT_EQ(r.reason, StopReason::kHalt) << r.detail;
  auto st = kvm.state();
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(st->gpr[kRax] & 0xFFFFFFFF, 0x4e455432u) << "the guest did not reach its end";
  // The ISR read exited after the last dword: the card had all 1024 bytes
  // (RBCR down to 0: RDC), so the ring was drained before the read.
  EXPECT_EQ(st->gpr[kRbx] & 0xFF, 0x40u) << "ISR after the remote DMA";
  EXPECT_EQ((st->gpr[kRbx] >> 8) & 0xFF, 0x01u) << "TSR after the transmit (PTX)";

  // The frame on the wire: every dword, in the order the guest wrote them.
  std::vector<uint8_t> frame(2048);
  const ssize_t n = ::recv(sv[1], frame.data(), frame.size(), MSG_DONTWAIT);
  ASSERT_EQ(n, 4 * kDwords);
  for (unsigned i = 0; i < kDwords; ++i) {
    uint32_t v;
    std::memcpy(&v, frame.data() + 4 * i, 4);
    ASSERT_EQ(v, 0xa5000000u + i) << "dword " << i;
  }

  const KvmExitCounters& c = kvm.counters();
  // Every data-port write went either through the ring or through an exit
  // of its own, and the register accesses all exited.
  EXPECT_EQ(c.coalesced_writes + (c.io_elements - kRegisterAccesses), kDwords)
      << "coalesced " << c.coalesced_writes << ", elements from exits " << c.io_elements;
  if (kvm.has_coalesced_pio()) {
    // At least one full ring's worth without an exit, and far fewer exits
    // than dwords (the ring holds 169: one exit each time it fills).
    EXPECT_GE(c.coalesced_writes, 169u);
    EXPECT_LE(c.io_exits, kRegisterAccesses + 4);
  }
  ::close(sv[1]);
}

}  // namespace
}  // namespace twoostwo::vmcore
