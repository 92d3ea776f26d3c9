// A bounds-checked view of guest RAM for devices and the boot loader.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

namespace twoostwo::bus {

/// Guest-physical RAM [0, size) backed by host memory that the Monitor owns
/// (an anonymous mmap). Devices see guest memory only through this view; every
/// access is checked against the size, so no guest-controlled address or
/// length can reach host memory outside the RAM block.
class GuestMemory {
 public:
  GuestMemory() = default;
  GuestMemory(uint8_t* host, uint64_t size) : host_(host), size_(size) {}

  uint64_t size() const { return size_; }

  /// True if [gpa, gpa + length) lies inside RAM (overflow-safe).
  bool contains(uint64_t gpa, uint64_t length) const {
    return gpa <= size_ && length <= size_ - gpa;
  }

  /// The host bytes of [gpa, gpa + length), or an empty span if out of range.
  std::span<uint8_t> slice(uint64_t gpa, uint64_t length) const {
    if (!contains(gpa, length)) return {};
    return {host_ + gpa, static_cast<size_t>(length)};
  }

  /// Copy guest bytes at `gpa` into `out`. Returns false (and copies nothing)
  /// if any byte is outside RAM.
  bool read(uint64_t gpa, std::span<uint8_t> out) const {
    if (!contains(gpa, out.size())) return false;
    if (!out.empty()) std::memcpy(out.data(), host_ + gpa, out.size());
    return true;
  }

  /// Copy `in` to guest RAM at `gpa`. Returns false (and writes nothing) if
  /// any byte is outside RAM.
  bool write(uint64_t gpa, std::span<const uint8_t> in) const {
    if (!contains(gpa, in.size())) return false;
    if (!in.empty()) std::memcpy(host_ + gpa, in.data(), in.size());
    return true;
  }

  /// The start of the host mapping (for KVM memory slots and CPU engines).
  uint8_t* host_base() const { return host_; }

 private:
  uint8_t* host_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace twoostwo::bus
