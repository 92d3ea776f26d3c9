// A bounded MAC learning table with aging and per-port fairness.
//
// Design (after Open vSwitch's lib/mac-learning.h):
// - Entries map (VLAN ID, MAC address) to the port the address was last seen
//   on, with the time it was last seen. Lookups ignore entries older than the
//   aging time (IEEE 802.1Q §8.8.3: 300 s by default); expire() removes them.
// - The table holds at most `capacity` entries, and one port at most
//   `per_port_limit` of them. A port at its limit that shows a new address
//   replaces its own least recently seen entry; a full table replaces the
//   least recently seen entry of all. So a port flooding random source
//   addresses churns its own share and cannot evict everyone else's.
// - Every entry is on two least-recently-seen lists, the table's and its
//   port's, so learning, refreshing, eviction and aging are O(1).
//
// Time is injected (a steady clock in nanoseconds), so tests age entries
// without waiting.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <unordered_map>

#include "switch/frame.h"

namespace twoostwo::fabric {

class Port;

/// A monotonic clock: nanoseconds since an arbitrary origin.
using SteadyClock = std::function<std::chrono::nanoseconds()>;
/// std::chrono::steady_clock as a SteadyClock.
SteadyClock system_steady_clock();

class MacTable {
 public:
  struct Options {
    size_t capacity = 8192;
    size_t per_port_limit = 2048;
    std::chrono::nanoseconds aging = std::chrono::seconds(300);
  };
  struct Counters {
    uint64_t learned = 0;   // new entries
    uint64_t moved = 0;     // an address seen on another port than before
    uint64_t evicted = 0;   // replaced because of capacity or a port's limit
    uint64_t expired = 0;   // removed by aging
  };

  explicit MacTable(Options options);

  /// Record that `mac` (a unicast address; group addresses are ignored) was
  /// seen on `port` in `vlan` at `now`.
  void learn(uint16_t vlan, const MacAddress& mac, const Port* port, std::chrono::nanoseconds now);
  /// The port `mac` was last seen on in `vlan`, or nullptr if unknown or aged.
  const Port* lookup(uint16_t vlan, const MacAddress& mac, std::chrono::nanoseconds now) const;
  /// Remove entries not seen within the aging time.
  void expire(std::chrono::nanoseconds now);
  /// Forget every address learned on `port` (it went down or was removed).
  void flush_port(const Port* port);

  size_t size() const { return entries_.size(); }
  /// How many entries `port` holds.
  size_t port_entries(const Port* port) const;
  const Options& options() const { return options_; }
  const Counters& counters() const { return counters_; }

 private:
  struct Key {
    uint16_t vlan;
    MacAddress mac;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Entry;
  using Lru = std::list<Entry*>;  // least recently seen first
  struct Entry {
    Key key;
    const Port* port;
    std::chrono::nanoseconds seen;
    Lru::iterator in_table;
    Lru::iterator in_port;
  };

  void erase(Entry* entry);
  void touch(Entry* entry, std::chrono::nanoseconds now);

  Options options_;
  Counters counters_;
  std::unordered_map<Key, Entry, KeyHash> entries_;
  Lru table_lru_;
  std::unordered_map<const Port*, Lru> port_lru_;
};

}  // namespace twoostwo::fabric
