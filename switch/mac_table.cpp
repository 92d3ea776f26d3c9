#include "switch/mac_table.h"

#include <cstring>

namespace twoostwo::fabric {

SteadyClock system_steady_clock() {
  return [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch());
  };
}

size_t MacTable::KeyHash::operator()(const Key& k) const {
  uint64_t v = 0;
  std::memcpy(&v, k.mac.data(), k.mac.size());
  v |= static_cast<uint64_t>(k.vlan) << 48;
  // A 64-bit mix (splitmix64's finalizer): MACs of one vendor share 3 octets.
  v ^= v >> 30;
  v *= 0xbf58476d1ce4e5b9ULL;
  v ^= v >> 27;
  v *= 0x94d049bb133111ebULL;
  v ^= v >> 31;
  return static_cast<size_t>(v);
}

MacTable::MacTable(Options options) : options_(options) {
  if (options_.capacity == 0) options_.capacity = 1;
  if (options_.per_port_limit == 0 || options_.per_port_limit > options_.capacity) {
    options_.per_port_limit = options_.capacity;
  }
  entries_.reserve(std::min<size_t>(options_.capacity, 1024));
}

void MacTable::erase(Entry* entry) {
  table_lru_.erase(entry->in_table);
  auto port_it = port_lru_.find(entry->port);
  port_it->second.erase(entry->in_port);
  if (port_it->second.empty()) port_lru_.erase(port_it);
  entries_.erase(entry->key);
}

void MacTable::touch(Entry* entry, std::chrono::nanoseconds now) {
  entry->seen = now;
  table_lru_.splice(table_lru_.end(), table_lru_, entry->in_table);
  Lru& mine = port_lru_[entry->port];
  mine.splice(mine.end(), mine, entry->in_port);
}

void MacTable::learn(uint16_t vlan, const MacAddress& mac, const Port* port, std::chrono::nanoseconds now) {
  if (is_group(mac) || port == nullptr) return;
  const Key key{vlan, mac};
  if (auto it = entries_.find(key); it != entries_.end()) {
    Entry* entry = &it->second;
    if (entry->port == port) {
      // The common case: a known host sends again. Refresh only once the
      // entry is a little stale, to keep the per-frame cost at one lookup.
      if (now - entry->seen >= std::chrono::milliseconds(100)) touch(entry, now);
      return;
    }
    // The address moved (a cable was re-plugged, a VM migrated): relearn.
    ++counters_.moved;
    erase(entry);
  }
  // Make room: the port's own oldest entry if it is at its limit, else the
  // table's oldest if the table is full.
  if (auto mine = port_lru_.find(port); mine != port_lru_.end() && mine->second.size() >= options_.per_port_limit) {
    erase(mine->second.front());
    ++counters_.evicted;
  } else if (entries_.size() >= options_.capacity) {
    erase(table_lru_.front());
    ++counters_.evicted;
  }
  auto [it, inserted] = entries_.emplace(key, Entry{key, port, now, {}, {}});
  Entry* entry = &it->second;
  entry->in_table = table_lru_.insert(table_lru_.end(), entry);
  Lru& mine = port_lru_[port];
  entry->in_port = mine.insert(mine.end(), entry);
  ++counters_.learned;
}

const Port* MacTable::lookup(uint16_t vlan, const MacAddress& mac, std::chrono::nanoseconds now) const {
  auto it = entries_.find(Key{vlan, mac});
  if (it == entries_.end() || now - it->second.seen >= options_.aging) return nullptr;
  return it->second.port;
}

void MacTable::expire(std::chrono::nanoseconds now) {
  while (!table_lru_.empty() && now - table_lru_.front()->seen >= options_.aging) {
    erase(table_lru_.front());
    ++counters_.expired;
  }
}

void MacTable::flush_port(const Port* port) {
  auto it = port_lru_.find(port);
  if (it == port_lru_.end()) return;
  // erase() removes the list once it is empty: take entries one by one.
  while (true) {
    auto current = port_lru_.find(port);
    if (current == port_lru_.end()) break;
    erase(current->second.front());
  }
}

size_t MacTable::port_entries(const Port* port) const {
  auto it = port_lru_.find(port);
  return it == port_lru_.end() ? 0 : it->second.size();
}

}  // namespace twoostwo::fabric
