// Raw firmware images (vmcore/boot/firmware.h): size checks, the copy below
// 1 MiB and the ROM at the top of 4 GiB.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "vmcore/boot/firmware.h"

namespace twoostwo::vmcore::boot {
namespace {

constexpr uint64_t kKiB = 1024;

std::vector<uint8_t> image(uint64_t size) {
  std::vector<uint8_t> b(size);
  for (uint64_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>((i * 31) ^ (i >> 9));
  // A far jump at the reset vector (last 16 bytes), as a BIOS has.
  b[size - 16] = 0xEA;
  return b;
}

struct Ram {
  explicit Ram(uint64_t size) : bytes(size, 0x5C) {}
  bus::GuestMemory mem() { return {bytes.data(), bytes.size()}; }
  std::vector<uint8_t> bytes;
};

TEST(BootFirmwareTest, ImageOf128KiBFillsTheLegacyBiosArea) {
  Ram ram(2 << 20);
  const auto img = image(128 * kKiB);
  auto info = load_firmware(ram.mem(), img, "bios.bin");
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_EQ(info->low_copy.begin, 0xE0000u);
  EXPECT_EQ(info->low_copy.end, 0x100000u);
  EXPECT_TRUE(std::equal(img.begin(), img.end(), ram.bytes.begin() + 0xE0000));
  EXPECT_EQ(ram.bytes[0xDFFFF], 0x5C);  // nothing below
  EXPECT_EQ(ram.bytes[0x100000], 0x5C);  // nothing above
  EXPECT_EQ(info->rom, img);
  EXPECT_EQ(info->rom_address, 0xFFFE0000u);
  // The reset vector: 0xFFFFFFF0 in the ROM and 0xFFFF0 in the low copy are
  // the same image byte.
  EXPECT_EQ(info->rom[0xFFFFFFF0u - info->rom_address], 0xEA);
  EXPECT_EQ(ram.bytes[0xFFFF0], 0xEA);
  // Entry: the RESET state (real mode, CS base 0xFFFF0000, IP 0xFFF0).
  EXPECT_EQ(cpu_mode(info->entry), CpuMode::kReal);
  EXPECT_EQ(info->entry.cs.selector, 0xF000);
  EXPECT_EQ(info->entry.cs.base, 0xFFFF0000u);
  EXPECT_EQ(info->entry.rip, 0xFFF0u);
  EXPECT_EQ(info->entry.cs.base + info->entry.rip, 0xFFFFFFF0u);
}

TEST(BootFirmwareTest, LargerImageCopiesOnlyItsLast128KiBBelowOneMiB) {
  Ram ram(2 << 20);
  const auto img = image(256 * kKiB);
  auto info = load_firmware(ram.mem(), img, "bios.bin");
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_EQ(info->rom_address, 0xFFFC0000u);
  EXPECT_EQ(info->rom.size(), 256 * kKiB);
  EXPECT_EQ(info->low_copy.begin, 0xE0000u);
  EXPECT_TRUE(std::equal(img.begin() + 128 * kKiB, img.end(), ram.bytes.begin() + 0xE0000));
  EXPECT_EQ(ram.bytes[0xDFFFF], 0x5C);
}

TEST(BootFirmwareTest, SmallImageEndsAtOneMiB) {
  Ram ram(1 << 20);
  const auto img = image(64 * kKiB);
  auto info = load_firmware(ram.mem(), img, "bios.bin");
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_EQ(info->low_copy.begin, 0xF0000u);
  EXPECT_EQ(info->low_copy.end, 0x100000u);
  EXPECT_EQ(info->rom_address, 0xFFFF0000u);
  EXPECT_TRUE(std::equal(img.begin(), img.end(), ram.bytes.begin() + 0xF0000));
  EXPECT_EQ(ram.bytes[0xEFFFF], 0x5C);
}

TEST(BootFirmwareTest, RejectsBadSizes) {
  Ram ram(2 << 20);
  auto msg = [&](uint64_t size) {
    auto r = load_firmware(ram.mem(), std::vector<uint8_t>(size, 1), "bios.bin");
    return r ? std::string("(ok)") : r.error().message;
  };
  EXPECT_EQ(msg(0), "bios.bin: firmware image is empty");
  EXPECT_EQ(msg(100000), "bios.bin: firmware image is 100000 bytes, not a multiple of 64 KiB (65536 bytes)");
  EXPECT_EQ(msg(320 * kKiB), "bios.bin: firmware image is 327680 bytes, more than the 256 KiB (262144 bytes) maximum");
  EXPECT_EQ(msg(192 * kKiB), "(ok)");
  Ram small(512 * kKiB);
  auto r = load_firmware(small.mem(), image(64 * kKiB), "bios.bin");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message,
            "bios.bin: guest RAM of 524288 bytes cannot hold the firmware's copy at [0xf0000, 0x100000)");
  // Nothing was written on error.
  EXPECT_TRUE(std::all_of(small.bytes.begin(), small.bytes.end(), [](uint8_t b) { return b == 0x5C; }));
}

}  // namespace
}  // namespace twoostwo::vmcore::boot
