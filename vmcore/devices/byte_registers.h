// Shared plumbing of the legacy PC devices: byte-wide register files on the
// ISA bus, and how they answer accesses of other widths.
//
// Width policy (DESIGN.md, "A misbehaving guest never crashes a monitor"): the
// legacy devices (PIC, PIT, CMOS, UART, i8042, port 0x61/0x80/0x92...) have
// 8-bit registers only. A 2- or 4-byte access to them is split the way an ISA
// bus splits a 16-bit cycle to an 8-bit device: into consecutive byte
// accesses at offset, offset + 1, ... (little-endian). Such an access is
// counted once in the device's bad_accesses(), since Linux never issues one.
// Bytes that fall beyond the device's range read 0xFF / are dropped, and are
// counted too.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "vmcore/bus/io_device.h"

namespace twoostwo::vmcore {

/// Split a port read of data.size() bytes at `offset` of a byte-register
/// device of `length` ports into read_byte(offset + i) calls (see the width
/// policy above). `bad` counts wide and out-of-range accesses.
template <class ReadByte>
void split_byte_read(uint64_t offset, std::span<uint8_t> data, uint32_t length, uint64_t& bad,
                     ReadByte&& read_byte) {
  if (data.size() != 1) ++bad;
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t off = offset + i;
    if (off < length) {
      data[i] = read_byte(static_cast<uint32_t>(off));
    } else {
      data[i] = 0xFF;
      ++bad;
    }
  }
}

/// The write counterpart of split_byte_read.
template <class WriteByte>
void split_byte_write(uint64_t offset, std::span<const uint8_t> data, uint32_t length,
                      uint64_t& bad, WriteByte&& write_byte) {
  if (data.size() != 1) ++bad;
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t off = offset + i;
    if (off < length) {
      write_byte(static_cast<uint32_t>(off), data[i]);
    } else {
      ++bad;
    }
  }
}

/// One port range of a device that owns several (the PIC pair's master,
/// slave and ELCR ranges; the PIT's port 0x61; ports 0x80/0xED/0x92):
/// accesses are split into bytes and forwarded to the owner's functions,
/// bad ones counted in the owner's counter.
class ByteRegisters final : public bus::IoDevice {
 public:
  using ReadFn = std::function<uint8_t(uint32_t offset)>;
  using WriteFn = std::function<void(uint32_t offset, uint8_t value)>;

  ByteRegisters(std::string name, uint32_t length, uint64_t& bad, ReadFn read, WriteFn write)
      : name_(std::move(name)), length_(length), bad_(&bad), read_(std::move(read)),
        write_(std::move(write)) {}
  ByteRegisters(const ByteRegisters&) = delete;
  ByteRegisters& operator=(const ByteRegisters&) = delete;

  void read(uint64_t offset, std::span<uint8_t> data) override {
    split_byte_read(offset, data, length_, *bad_, read_);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    split_byte_write(offset, data, length_, *bad_, write_);
  }
  std::string_view name() const override { return name_; }
  /// Number of ports of the range.
  uint32_t length() const { return length_; }

 private:
  std::string name_;
  uint32_t length_;
  uint64_t* bad_;
  ReadFn read_;
  WriteFn write_;
};

/// BCD helpers (8254 BCD counting, MC146818 BCD time registers).
constexpr uint8_t to_bcd8(unsigned v) { return static_cast<uint8_t>(((v / 10) % 10) << 4 | (v % 10)); }
constexpr unsigned from_bcd8(uint8_t v) { return (v >> 4) * 10u + (v & 0x0Fu); }

}  // namespace twoostwo::vmcore
