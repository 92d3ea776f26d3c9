#include "vmcore/boot/firmware.h"

#include <fmt/format.h>

namespace twoostwo::vmcore::boot {

Result<FirmwareInfo> load_firmware(bus::GuestMemory mem, std::span<const uint8_t> image, std::string_view file_name) {
  const uint64_t size = image.size();
  if (size == 0) return fail(fmt::format("{}: firmware image is empty", file_name));
  if (size % kFirmwareGranule != 0) {
    return fail(fmt::format("{}: firmware image is {} bytes, not a multiple of 64 KiB (65536 bytes)", file_name,
                            size));
  }
  if (size > kFirmwareMaxBytes) {
    return fail(fmt::format("{}: firmware image is {} bytes, more than the 256 KiB (262144 bytes) maximum",
                            file_name, size));
  }
  const uint64_t low = std::min(size, kFirmwareLowBytes);
  const uint64_t low_begin = kHighMemory - low;
  if (!mem.contains(low_begin, low)) {
    return fail(fmt::format("{}: guest RAM of {} bytes cannot hold the firmware's copy at [0x{:x}, 0x100000)",
                            file_name, mem.size(), low_begin));
  }
  mem.write(low_begin, image.subspan(size - low));

  FirmwareInfo info;
  info.rom.assign(image.begin(), image.end());
  info.rom_address = kFirmwareTop - size;
  info.low_copy = {low_begin, kHighMemory};
  info.entry = CpuState::reset();
  return info;
}

}  // namespace twoostwo::vmcore::boot
