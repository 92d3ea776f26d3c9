// MacTable: learning, moves, aging with an injected clock, capacity and the
// per-port limit (switch/mac_table.h).
#include "switch/mac_table.h"

#include <gtest/gtest.h>

#include "fabric_test_support.h"

namespace twoostwo::fabric {
namespace {

using std::chrono::seconds;
using testing::mac;
using testing::TestPort;

TEST(MacTable, LearnsAndLooksUpPerVlan) {
  MacTable table({});
  TestPort p1("p1"), p2("p2");
  const auto t = seconds(10);
  table.learn(1, mac(1), &p1, t);
  table.learn(2, mac(1), &p2, t);
  EXPECT_EQ(table.lookup(1, mac(1), t), &p1);
  EXPECT_EQ(table.lookup(2, mac(1), t), &p2);
  EXPECT_EQ(table.lookup(3, mac(1), t), nullptr);
  EXPECT_EQ(table.lookup(1, mac(2), t), nullptr);
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(table.counters().learned, 2u);
}

TEST(MacTable, IgnoresGroupSourceAddresses) {
  MacTable table({});
  TestPort p("p");
  table.learn(1, testing::kBroadcast, &p, seconds(1));
  table.learn(1, MacAddress{0x01, 0x00, 0x5e, 0, 0, 1}, &p, seconds(1));
  EXPECT_EQ(table.size(), 0u);
}

TEST(MacTable, AddressThatMovesIsRelearned) {
  MacTable table({});
  TestPort p1("p1"), p2("p2");
  table.learn(1, mac(7), &p1, seconds(1));
  table.learn(1, mac(7), &p2, seconds(2));
  EXPECT_EQ(table.lookup(1, mac(7), seconds(2)), &p2);
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.port_entries(&p1), 0u);
  EXPECT_EQ(table.counters().moved, 1u);
}

TEST(MacTable, EntriesAgeOutAndRefreshKeepsThem) {
  MacTable table({.capacity = 100, .per_port_limit = 100, .aging = seconds(300)});
  TestPort p("p");
  table.learn(1, mac(1), &p, seconds(0));
  table.learn(1, mac(2), &p, seconds(0));
  table.learn(1, mac(2), &p, seconds(200));  // mac 2 is seen again
  EXPECT_EQ(table.lookup(1, mac(1), seconds(299)), &p);
  EXPECT_EQ(table.lookup(1, mac(1), seconds(300)), nullptr) << "aged: lookups ignore it at once";
  table.expire(seconds(300));
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.counters().expired, 1u);
  EXPECT_EQ(table.lookup(1, mac(2), seconds(499)), &p);
  table.expire(seconds(500));
  EXPECT_EQ(table.size(), 0u);
}

TEST(MacTable, FullTableEvictsTheLeastRecentlySeen) {
  MacTable table({.capacity = 3, .per_port_limit = 3, .aging = seconds(300)});
  TestPort p("p");
  table.learn(1, mac(1), &p, seconds(1));
  table.learn(1, mac(2), &p, seconds(2));
  table.learn(1, mac(3), &p, seconds(3));
  table.learn(1, mac(1), &p, seconds(4));  // refreshes mac 1 (stale by > 100 ms)
  table.learn(1, mac(4), &p, seconds(5));  // evicts mac 2
  EXPECT_EQ(table.size(), 3u);
  EXPECT_EQ(table.lookup(1, mac(2), seconds(5)), nullptr);
  EXPECT_EQ(table.lookup(1, mac(1), seconds(5)), &p);
  EXPECT_EQ(table.counters().evicted, 1u);
}

TEST(MacTable, FloodingPortCannotEvictOtherPorts) {
  MacTable table({.capacity = 10, .per_port_limit = 4, .aging = seconds(300)});
  TestPort quiet("quiet"), flooder("flooder");
  for (uint16_t i = 0; i < 5; ++i) table.learn(1, mac(i), &quiet, seconds(1));
  // 1000 random-looking sources from one port.
  for (uint16_t i = 0; i < 1000; ++i) table.learn(1, mac(static_cast<uint16_t>(0x1000 + i)), &flooder, seconds(2));
  EXPECT_EQ(table.port_entries(&flooder), 4u) << "held to its limit";
  EXPECT_EQ(table.port_entries(&quiet), 4u) << "the quiet port is held to 4 as well: its 5th address replaced its oldest";
  for (uint16_t i = 1; i < 5; ++i) EXPECT_EQ(table.lookup(1, mac(i), seconds(3)), &quiet) << i;
  // The flooder keeps its most recent four.
  EXPECT_EQ(table.lookup(1, mac(0x1000 + 999), seconds(3)), &flooder);
  EXPECT_EQ(table.lookup(1, mac(0x1000 + 995), seconds(3)), nullptr);
}

TEST(MacTable, FlushPortForgetsOnlyThatPort) {
  MacTable table({});
  TestPort p1("p1"), p2("p2");
  for (uint16_t i = 0; i < 10; ++i) table.learn(1, mac(i), i % 2 ? &p1 : &p2, seconds(1));
  table.flush_port(&p1);
  EXPECT_EQ(table.size(), 5u);
  EXPECT_EQ(table.port_entries(&p1), 0u);
  EXPECT_EQ(table.lookup(1, mac(0), seconds(1)), &p2);
  table.flush_port(&p1);  // nothing left: no effect
  EXPECT_EQ(table.size(), 5u);
}

}  // namespace
}  // namespace twoostwo::fabric
