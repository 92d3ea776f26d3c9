// Loading a raw PC firmware image (`twoostwo-vmm --bios FILE`, e.g.
// SeaBIOS's bios.bin from Debian's `seabios` package).
//
// A PC's firmware ROM is decoded at the top of the 4 GiB address space,
// where the CPU fetches its first instruction after RESET (CS base
// 0xFFFF0000, IP 0xFFF0: Intel SDM vol. 3, 9.1.4), and its last 128 KiB are
// also visible below 1 MiB at 0xE0000..0xFFFFF (the legacy BIOS area that
// real-mode code far-jumps into). QEMU's pc_system_firmware_init()/
// x86_bios_rom_init() do the same: the whole image at 4 GiB - size, the
// last min(size, 128 KiB) below 1 MiB.
//
// Guest RAM ends below 3 GiB, so the copy at the top of 4 GiB cannot live
// in GuestMemory: load_firmware() returns the bytes and the address, and
// the Monitor maps them as a read-only ROM region (a KVM memory slot with
// KVM_MEM_READONLY, or an MMIO-backed ROM for the emulator).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "vmcore/boot/linux_loader.h"
#include "vmcore/bus/error.h"
#include "vmcore/bus/guest_memory.h"
#include "vmcore/cpu_state.h"

namespace twoostwo::vmcore::boot {

inline constexpr uint64_t kFirmwareGranule = 64 * 1024;     // image size must be a multiple
inline constexpr uint64_t kFirmwareMaxBytes = 256 * 1024;   // largest image accepted
inline constexpr uint64_t kFirmwareLowBytes = 128 * 1024;   // copied below 1 MiB at most
inline constexpr uint64_t kFirmwareTop = uint64_t{1} << 32;  // the ROM ends at 4 GiB

struct FirmwareInfo {
  /// The whole image, to be mapped read-only at `rom_address`.
  std::vector<uint8_t> rom;
  /// Guest-physical address of the ROM: 0x1_0000_0000 - rom.size().
  uint64_t rom_address = 0;
  /// Where the last min(size, 128 KiB) bytes were copied into guest RAM:
  /// [0x100000 - n, 0x100000), e.g. [0xE0000, 0x100000) for 128 KiB or more.
  GuestRange low_copy;
  /// CpuState::reset(): real mode, CS base 0xFFFF0000, IP 0xFFF0.
  vmcore::CpuState entry;
};

/// Check a raw firmware `image` (named `file_name` in errors), copy its last
/// 128 KiB (or all of it if smaller) into `mem` so they end at 1 MiB, and
/// return the bytes for the ROM at the top of 4 GiB with the reset state.
/// Errors: empty image; size not a multiple of 64 KiB; size above 256 KiB;
/// guest RAM smaller than 1 MiB.
Result<FirmwareInfo> load_firmware(bus::GuestMemory mem, std::span<const uint8_t> image, std::string_view file_name);

}  // namespace twoostwo::vmcore::boot
