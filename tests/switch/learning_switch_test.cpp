// LearningSwitch with synthetic frames: learning, flooding rules, filtering,
// aging with an injected clock, VLAN access/trunk tagging and isolation,
// ports going down, loops (switch/learning_switch.h).
#include "switch/learning_switch.h"

#include <gtest/gtest.h>

#include <memory>

#include "fabric_test_support.h"
#include "switch/link.h"

namespace twoostwo::fabric {
namespace {

using std::chrono::seconds;
using testing::kBroadcast;
using testing::mac;
using testing::make_frame;
using testing::ManualClock;
using testing::TestPort;

// A switch with `n` ports, each linked to a TestPort host "hN".
struct Bench {
  explicit Bench(size_t n, std::vector<VlanMode> modes = {}) : sw("sw", options()) {
    for (size_t i = 0; i < n; ++i) {
      auto port = sw.add_port(std::to_string(i + 1), i < modes.size() ? modes[i] : VlanMode::access(1));
      EXPECT_TRUE(port.has_value());
      hosts.push_back(std::make_unique<TestPort>("h" + std::to_string(i + 1)));
      links.push_back(std::move(*Link::connect("l" + std::to_string(i + 1), *hosts.back(), **port)));
    }
  }
  LearningSwitch::Options options() {
    LearningSwitch::Options o;
    o.clock = clock.clock();
    return o;
  }
  TestPort& host(size_t i) { return *hosts.at(i); }
  ManualClock clock;
  LearningSwitch sw;
  std::vector<std::unique_ptr<TestPort>> hosts;
  std::vector<std::unique_ptr<Link>> links;
};

std::vector<size_t> received_counts(Bench& b) {
  std::vector<size_t> out;
  for (auto& h : b.hosts) out.push_back(h->received.size());
  return out;
}

TEST(LearningSwitch, FloodsUnknownUnicastThenForwardsOnceLearned) {
  Bench b(4);
  const auto f1 = make_frame(mac(2), mac(1));  // h1 → h2, h2 not yet known
  b.host(0).inject(f1);
  EXPECT_EQ(received_counts(b), (std::vector<size_t>{0, 1, 1, 1}));
  EXPECT_EQ(b.host(1).received[0], f1) << "bytes unchanged";
  const auto f2 = make_frame(mac(1), mac(2));  // h2 → h1: h1 was learned
  b.host(1).inject(f2);
  EXPECT_EQ(received_counts(b), (std::vector<size_t>{1, 1, 1, 1}));
  b.host(0).inject(f1);  // h2 is now known too
  EXPECT_EQ(received_counts(b), (std::vector<size_t>{1, 2, 1, 1}));
  EXPECT_EQ(b.sw.counters().flooded, 1u);
  EXPECT_EQ(b.sw.counters().forwarded, 2u);
}

TEST(LearningSwitch, AlwaysFloodsBroadcastAndMulticast) {
  Bench b(3);
  b.host(1).inject(make_frame(mac(1), mac(2)));  // learn h2 … irrelevant for group frames
  b.host(0).inject(make_frame(kBroadcast, mac(1)));
  b.host(0).inject(make_frame(MacAddress{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, mac(1)));
  b.host(0).inject(make_frame(MacAddress{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}, mac(1)));
  EXPECT_EQ(received_counts(b), (std::vector<size_t>{1, 3, 4}));
}

TEST(LearningSwitch, FiltersFramesForAnAddressOnTheIngressPort) {
  Bench b(3);
  b.host(0).inject(make_frame(kBroadcast, mac(1)));
  b.host(0).inject(make_frame(kBroadcast, mac(11)));  // a second host behind port 1
  const auto before = received_counts(b);
  b.host(0).inject(make_frame(mac(11), mac(1)));
  EXPECT_EQ(received_counts(b), before) << "stays on its own segment";
  EXPECT_EQ(b.sw.counters().filtered, 1u);
}

TEST(LearningSwitch, AgedEntriesAreFloodedAgain) {
  Bench b(3);
  b.host(1).inject(make_frame(kBroadcast, mac(2)));
  b.host(0).inject(make_frame(mac(2), mac(1)));
  EXPECT_EQ(b.host(2).received.size(), 1u) << "only the broadcast";
  b.clock.now += seconds(301);
  b.host(0).inject(make_frame(mac(2), mac(1)));
  EXPECT_EQ(b.host(2).received.size(), 2u) << "h2's entry aged out: flooded";
}

TEST(LearningSwitch, MovedHostIsFollowed) {
  Bench b(3);
  b.host(1).inject(make_frame(kBroadcast, mac(9)));
  b.host(2).inject(make_frame(kBroadcast, mac(9)));  // the same MAC now behind port 3
  b.host(0).inject(make_frame(mac(9), mac(1)));
  EXPECT_EQ(b.host(2).received.size(), 2u);
  EXPECT_EQ(b.host(1).received.size(), 1u);
}

TEST(LearningSwitch, DownPortNeitherSendsNorReceivesAndForgets) {
  Bench b(3);
  b.host(1).inject(make_frame(kBroadcast, mac(2)));
  SwitchPort* p2 = b.sw.port("2");
  ASSERT_NE(p2, nullptr);
  EXPECT_EQ(b.sw.mac_table().port_entries(p2), 1u);
  p2->set_up(false);
  EXPECT_EQ(b.sw.mac_table().port_entries(p2), 0u);
  b.host(0).inject(make_frame(mac(2), mac(1)));
  EXPECT_EQ(b.host(1).received.size(), 0u);
  EXPECT_EQ(b.host(2).received.size(), 2u) << "unknown again: flooded to the ports that are up";
  b.host(1).inject(make_frame(kBroadcast, mac(2)));
  EXPECT_EQ(p2->counters().rx_dropped, 1u) << "a down port drops what its link delivers";
  EXPECT_EQ(b.host(0).received.size(), 1u) << "h1 has only the broadcast h2 sent while up";
  p2->set_up(true);
  b.host(0).inject(make_frame(kBroadcast, mac(1)));
  EXPECT_EQ(b.host(1).received.size(), 1u);
}

TEST(LearningSwitch, AccessPortsIsolateVlans) {
  Bench b(4, {VlanMode::access(10), VlanMode::access(10), VlanMode::access(20), VlanMode::access(20)});
  b.host(0).inject(make_frame(kBroadcast, mac(1)));
  b.host(2).inject(make_frame(kBroadcast, mac(3)));
  EXPECT_EQ(received_counts(b), (std::vector<size_t>{0, 1, 0, 1}));
  // Unicast to an address learned in the other VLAN is flooded in the
  // sender's VLAN only.
  b.host(0).inject(make_frame(mac(3), mac(1)));
  EXPECT_EQ(received_counts(b), (std::vector<size_t>{0, 2, 0, 1}));
}

TEST(LearningSwitch, AccessPortDropsTaggedFrames) {
  Bench b(2);
  b.host(0).inject(make_frame(kBroadcast, mac(1), 46, 0, /*tci=*/5));
  EXPECT_EQ(b.host(1).received.size(), 0u);
  EXPECT_EQ(b.sw.counters().vlan_dropped, 1u);
}

TEST(LearningSwitch, TrunkTagsOnEgressAndUntagsOnIngress) {
  // Port 1: access VLAN 10; port 2: access VLAN 20; port 3: trunk for 10, 20.
  Bench b(3, {VlanMode::access(10), VlanMode::access(20), VlanMode::trunk({10, 20})});
  const auto plain = make_frame(kBroadcast, mac(1), 50, 7);
  b.host(0).inject(plain);
  ASSERT_EQ(b.host(2).received.size(), 1u);
  EXPECT_EQ(b.host(2).received[0], make_frame(kBroadcast, mac(1), 50, 7, /*tci=*/10)) << "tagged VLAN 10";
  EXPECT_EQ(b.host(1).received.size(), 0u);
  // From the trunk, tagged 20 (priority 5): untagged on the VLAN 20 access port.
  b.host(2).inject(make_frame(mac(1), mac(3), 50, 9, (5 << 13) | 20));
  ASSERT_EQ(b.host(1).received.size(), 1u);
  EXPECT_EQ(b.host(1).received[0], make_frame(mac(1), mac(3), 50, 9)) << "untagged, mac(1) is not in VLAN 20";
  EXPECT_EQ(b.host(0).received.size(), 0u) << "mac(1) lives in VLAN 10 only";
  // Tagged 10 from the trunk reaches h1 untagged.
  b.host(2).inject(make_frame(mac(1), mac(3), 50, 9, 10));
  ASSERT_EQ(b.host(0).received.size(), 1u);
  EXPECT_EQ(b.host(0).received[0], make_frame(mac(1), mac(3), 50, 9));
  // VLAN 30 is not carried; untagged frames have no native VLAN here.
  b.host(2).inject(make_frame(kBroadcast, mac(3), 50, 9, 30));
  b.host(2).inject(make_frame(kBroadcast, mac(3), 50, 9));
  EXPECT_EQ(b.sw.counters().vlan_dropped, 2u);
}

TEST(LearningSwitch, TrunkToTrunkKeepsPriorityAndNativeVlanIsUntagged) {
  Bench b(3, {VlanMode::trunk({}, 1), VlanMode::trunk({}, 1), VlanMode::access(1)});
  b.host(0).inject(make_frame(kBroadcast, mac(1), 46, 0, (3 << 13) | 77));
  ASSERT_EQ(b.host(1).received.size(), 1u);
  EXPECT_EQ(b.host(1).received[0], make_frame(kBroadcast, mac(1), 46, 0, (3 << 13) | 77));
  EXPECT_EQ(b.host(2).received.size(), 0u);
  b.host(2).inject(make_frame(kBroadcast, mac(3)));
  ASSERT_EQ(b.host(0).received.size(), 1u);
  EXPECT_EQ(b.host(0).received[0], make_frame(kBroadcast, mac(3))) << "native VLAN: untagged on the trunk";
}

TEST(LearningSwitch, TaggingAFullSizeFrameDropsItRatherThanOverflow) {
  Bench b(2, {VlanMode::access(5), VlanMode::trunk({5})});
  b.host(0).inject(make_frame(kBroadcast, mac(1), kMaxFrame - 14));  // 1518: no room for a tag
  EXPECT_EQ(b.host(1).received.size(), 0u);
  b.host(0).inject(make_frame(kBroadcast, mac(1), kMaxUntaggedFrame - 14));
  ASSERT_EQ(b.host(1).received.size(), 1u);
  EXPECT_EQ(b.host(1).received[0].size(), kMaxFrame);
}

TEST(LearningSwitch, RejectsBadPortConfiguration) {
  LearningSwitch sw("core", {});
  ASSERT_TRUE(sw.add_port("1").has_value());
  auto dup = sw.add_port("1");
  ASSERT_FALSE(dup.has_value());
  EXPECT_EQ(dup.error().message, "switch 'core': port '1' already exists");
  auto bad = sw.add_port("2", VlanMode::access(4095));
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().message, "switch 'core': port '2': VLAN 4095 is outside 1..4094");
  EXPECT_FALSE(sw.add_port("3", VlanMode::trunk({1, 0})).has_value());
  EXPECT_EQ(sw.port("core:1"), sw.port("1"));
}

TEST(LearningSwitch, LoopIsCutInsteadOfRecursingForever) {
  // Two ports of one switch cabled together: a broadcast storm in the making.
  LearningSwitch sw("loop", {});
  TestPort host("host");
  auto p1 = *sw.add_port("1"), p2 = *sw.add_port("2"), p3 = *sw.add_port("3");
  auto l1 = Link::connect("a", host, *p1);
  auto l2 = Link::connect("b", *p2, *p3);
  ASSERT_TRUE(l1 && l2);
  host.inject(make_frame(kBroadcast, mac(1)));
  EXPECT_GT(sw.counters().loop_dropped, 0u);
}

}  // namespace
}  // namespace twoostwo::fabric
