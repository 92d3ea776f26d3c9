// Ports and links: counters, taps in order, link and port down, malformed
// frames, connection errors (switch/port.h, switch/link.h).
#include "switch/link.h"

#include <gtest/gtest.h>

#include "fabric_test_support.h"

namespace twoostwo::fabric {
namespace {

using testing::kBroadcast;
using testing::mac;
using testing::make_frame;
using testing::RecordingTap;
using testing::TestPort;

TEST(Link, CarriesBothWaysWithCountersAndTapsInOrder) {
  TestPort a("a"), b("b");
  auto link = Link::connect("wire", a, b);
  ASSERT_TRUE(link.has_value());
  RecordingTap tap;
  (*link)->add_tap(&tap);
  const auto f1 = make_frame(mac(2), mac(1), 46, 1);
  const auto f2 = make_frame(mac(1), mac(2), 100, 2);
  const auto f3 = make_frame(kBroadcast, mac(1), 46, 3);
  a.inject(f1);
  b.inject(f2);
  a.inject(f3);
  EXPECT_EQ(b.received, (std::vector<std::vector<std::byte>>{f1, f3}));
  EXPECT_EQ(a.received, (std::vector<std::vector<std::byte>>{f2}));
  EXPECT_EQ(tap.frames, (std::vector<std::vector<std::byte>>{f1, f2, f3}));
  EXPECT_EQ(tap.ingress, (std::vector<const Port*>{&a, &b, &a}));
  EXPECT_LE(tap.times[0], tap.times[1]);
  EXPECT_LE(tap.times[1], tap.times[2]);
  EXPECT_EQ((*link)->counters().a_to_b_frames, 2u);
  EXPECT_EQ((*link)->counters().b_to_a_frames, 1u);
  EXPECT_EQ(a.counters().tx_frames, 2u);
  EXPECT_EQ(a.counters().tx_bytes, f1.size() + f3.size());
  EXPECT_EQ(a.counters().rx_frames, 1u);
  EXPECT_EQ(a.counters().rx_bytes, f2.size());
  EXPECT_EQ(b.counters().rx_frames, 2u);
  (*link)->remove_tap(&tap);
  a.inject(f1);
  EXPECT_EQ(tap.frames.size(), 3u) << "removed taps see nothing";
}

TEST(Link, PortTapsSeeBothDirections) {
  TestPort a("a"), b("b");
  auto link = Link::connect("wire", a, b);
  RecordingTap tap;
  a.add_tap(&tap);
  a.inject(make_frame(mac(2), mac(1)));
  b.inject(make_frame(mac(1), mac(2)));
  EXPECT_EQ(tap.ingress, (std::vector<const Port*>{&a, &b}));
}

TEST(Link, DownLinkDropsAndCounts) {
  TestPort a("a"), b("b");
  auto link = Link::connect("wire", a, b);
  (*link)->set_up(false);
  a.inject(make_frame(mac(2), mac(1)));
  EXPECT_TRUE(b.received.empty());
  EXPECT_EQ((*link)->counters().dropped, 1u);
  (*link)->set_up(true);
  a.inject(make_frame(mac(2), mac(1)));
  EXPECT_EQ(b.received.size(), 1u);
}

TEST(Port, DownPortDropsBothWaysAndReportsTheChange) {
  TestPort a("a"), b("b");
  auto link = Link::connect("wire", a, b);
  b.set_up(false);
  a.inject(make_frame(mac(2), mac(1)));
  b.inject(make_frame(mac(1), mac(2)));
  EXPECT_TRUE(b.received.empty());
  EXPECT_TRUE(a.received.empty());
  EXPECT_EQ(b.counters().rx_dropped, 1u);
  EXPECT_EQ(b.counters().tx_dropped, 1u);
  b.set_up(false);  // no change, no report
  b.set_up(true);
  EXPECT_EQ(b.up_changes, (std::vector<bool>{false, true}));
}

TEST(Port, RefusedDeliveryIsCountedAsDrop) {
  TestPort a("a"), b("b");
  auto link = Link::connect("wire", a, b);
  b.accept = false;
  a.inject(make_frame(mac(2), mac(1)));
  EXPECT_EQ(b.counters().rx_dropped, 1u);
  EXPECT_EQ(b.counters().rx_frames, 0u);
}

TEST(Port, MalformedOrUnlinkedFramesAreDropped) {
  TestPort a("a"), b("b");
  a.inject(make_frame(mac(2), mac(1)));
  EXPECT_EQ(a.counters().tx_dropped, 1u) << "no link";
  auto link = Link::connect("wire", a, b);
  a.inject(std::vector<std::byte>(13));
  a.inject(std::vector<std::byte>(kMaxFrame + 1));
  EXPECT_EQ(a.counters().tx_dropped, 3u);
  a.inject(std::vector<std::byte>(kMaxFrame));
  EXPECT_EQ(b.received.size(), 1u);
}

TEST(Link, ConnectErrorsNameThePort) {
  TestPort a("alice:eth0"), b("sw:1"), c("sw:2");
  auto l1 = Link::connect("l1", a, b);
  ASSERT_TRUE(l1.has_value());
  auto l2 = Link::connect("l2", a, c);
  ASSERT_FALSE(l2.has_value());
  EXPECT_EQ(l2.error().message, "link 'l2': port 'alice:eth0' is already on link 'l1'");
  auto l3 = Link::connect("l3", c, c);
  ASSERT_FALSE(l3.has_value());
  EXPECT_EQ(l3.error().message, "link 'l3': both ends are port 'sw:2'");
  l1->reset();
  EXPECT_EQ(a.link(), nullptr) << "destroying a link frees its ports";
  EXPECT_TRUE(Link::connect("l4", a, c).has_value());
}

TEST(Frame, ParsesAddressesAndVlanTag) {
  const auto plain = make_frame(mac(2), mac(1));
  const auto tagged = make_frame(mac(2), mac(1), 46, 0, (7 << 13) | 100);
  EXPECT_EQ((Frame{plain}.destination()), mac(2));
  EXPECT_EQ((Frame{plain}.source()), mac(1));
  EXPECT_EQ((Frame{plain}.vlan_id()), std::nullopt);
  EXPECT_EQ((Frame{tagged}.vlan_id()), 100);
  EXPECT_EQ(format_mac(mac(0x1234)), "02:00:00:00:12:34");
}

}  // namespace
}  // namespace twoostwo::fabric
