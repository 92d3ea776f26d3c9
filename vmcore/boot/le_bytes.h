// Little-endian field access for the boot loader's parsers (bzImage setup
// header, ELF headers, boot_params). Internal to vmcore/boot: callers check
// bounds first; these helpers only assemble bytes (x86 is little-endian, but
// the parsers must not depend on the host's byte order or alignment).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace twoostwo::vmcore::boot::le {

inline uint16_t u16(std::span<const uint8_t> b, size_t off) {
  return static_cast<uint16_t>(b[off] | (b[off + 1] << 8));
}

inline uint32_t u32(std::span<const uint8_t> b, size_t off) {
  return static_cast<uint32_t>(b[off]) | (static_cast<uint32_t>(b[off + 1]) << 8) |
         (static_cast<uint32_t>(b[off + 2]) << 16) | (static_cast<uint32_t>(b[off + 3]) << 24);
}

inline uint64_t u64(std::span<const uint8_t> b, size_t off) {
  return static_cast<uint64_t>(u32(b, off)) | (static_cast<uint64_t>(u32(b, off + 4)) << 32);
}

inline void put16(std::span<uint8_t> b, size_t off, uint16_t v) {
  b[off] = static_cast<uint8_t>(v);
  b[off + 1] = static_cast<uint8_t>(v >> 8);
}

inline void put32(std::span<uint8_t> b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}

inline void put64(std::span<uint8_t> b, size_t off, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace twoostwo::vmcore::boot::le
