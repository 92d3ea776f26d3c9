// The Linux/x86 bzImage setup header: what a direct-boot loader reads from
// a kernel file before placing it in guest memory.
//
// Source: Linux Documentation/arch/x86/boot.rst ("The Real-Mode Kernel
// Header", "Details of Header Fields", "Loading The Rest of The Kernel") and
// arch/x86/include/uapi/asm/bootparam.h for the field offsets. All offsets
// below are file offsets, which are also offsets inside struct boot_params
// (the setup header sits at 0x1F1 in both).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "vmcore/bus/error.h"

namespace twoostwo::vmcore::boot {

/// Setup header field offsets (boot.rst, "The Real-Mode Kernel Header").
namespace hdr {
inline constexpr uint32_t kSetupSects = 0x1F1;       // u8, 0 means 4
inline constexpr uint32_t kSyssize = 0x1F4;          // u32, 16-byte paragraphs (2.04+)
inline constexpr uint32_t kVidMode = 0x1FA;          // u16
inline constexpr uint32_t kBootFlag = 0x1FE;         // u16, 0xAA55
inline constexpr uint32_t kJump = 0x200;             // 0xEB, then the header length byte
inline constexpr uint32_t kHeaderMagic = 0x202;      // "HdrS"
inline constexpr uint32_t kVersion = 0x206;          // u16, (major << 8) | minor
inline constexpr uint32_t kKernelVersion = 0x20E;    // u16, string offset - 0x200
inline constexpr uint32_t kTypeOfLoader = 0x210;     // u8 (write)
inline constexpr uint32_t kLoadflags = 0x211;        // u8 (modify)
inline constexpr uint32_t kCode32Start = 0x214;      // u32
inline constexpr uint32_t kRamdiskImage = 0x218;     // u32 (write)
inline constexpr uint32_t kRamdiskSize = 0x21C;      // u32 (write)
inline constexpr uint32_t kHeapEndPtr = 0x224;       // u16 (write, 2.01+)
inline constexpr uint32_t kCmdLinePtr = 0x228;       // u32 (write, 2.02+)
inline constexpr uint32_t kInitrdAddrMax = 0x22C;    // u32 (2.03+)
inline constexpr uint32_t kKernelAlignment = 0x230;  // u32 (2.05+)
inline constexpr uint32_t kRelocatable = 0x234;      // u8 (2.05+)
inline constexpr uint32_t kMinAlignment = 0x235;     // u8, log2 (2.10+)
inline constexpr uint32_t kXloadflags = 0x236;       // u16 (2.12+)
inline constexpr uint32_t kCmdlineSize = 0x238;      // u32 (2.06+), excluding the NUL
inline constexpr uint32_t kPayloadOffset = 0x248;    // u32 (2.08+), from the protected-mode code
inline constexpr uint32_t kPayloadLength = 0x24C;    // u32 (2.08+)
inline constexpr uint32_t kPrefAddress = 0x258;      // u64 (2.10+)
inline constexpr uint32_t kInitSize = 0x260;         // u32 (2.10+)
/// The setup header can end no later than this (boot.rst, "The kernel_info":
/// the 2-byte jump at 0x200 bounds it to 0x202 + 0x7F).
inline constexpr uint32_t kMaxHeaderEnd = 0x281;
}  // namespace hdr

/// loadflags bits (boot.rst, "loadflags").
inline constexpr uint8_t kLoadedHigh = 0x01;    // protected-mode code loads at 0x100000 (a bzImage)
inline constexpr uint8_t kKaslrFlag = 0x02;     // kernel internal: decompressor -> kernel proper
inline constexpr uint8_t kQuietFlag = 0x20;
inline constexpr uint8_t kKeepSegments = 0x40;  // obsolete
inline constexpr uint8_t kCanUseHeap = 0x80;    // heap_end_ptr is valid (real-mode setup code only)

/// xloadflags bits (boot.rst, "xloadflags", protocol 2.12+).
inline constexpr uint16_t kXlfKernel64 = 0x01;  // 64-bit entry point at load address + 0x200
inline constexpr uint16_t kXlfCanBeLoadedAbove4G = 0x02;
inline constexpr uint16_t kXlfEfiHandover32 = 0x04;
inline constexpr uint16_t kXlfEfiHandover64 = 0x08;
inline constexpr uint16_t kXlfEfiKexec = 0x10;

/// Oldest protocol accepted: 2.06 introduced cmdline_size.
inline constexpr uint16_t kMinProtocolVersion = 0x0206;

/// Compression of the payload, from its magic number (boot.rst,
/// "payload_offset": gzip 1F 8B/1F 9E, bzip2 42 5A, LZMA 5D 00, XZ FD 37 7A
/// 58 5A 00, LZ4 02 21, ZSTD 28 B5; uncompressed ELF 7F 45 4C 46).
enum class PayloadFormat { kNone, kGzip, kBzip2, kLzma, kXz, kLz4, kZstd, kElf, kUnknown };

/// "xz", "gzip", ..., "none", "unknown".
std::string_view payload_format_name(PayloadFormat format);

/// The format of `payload` from its first bytes.
PayloadFormat detect_payload_format(std::span<const uint8_t> payload);

/// What parse_bzimage() learned from a kernel file. Holds no file bytes:
/// load_linux() takes the file again (it must be the same bytes).
struct BzImage {
  std::string file_name;      // as given to parse_bzimage, for error messages
  uint64_t file_size = 0;     // bytes
  uint16_t protocol_version = 0;  // (major << 8) | minor, e.g. 0x020F for 2.15
  unsigned setup_sects = 4;   // 512-byte sectors of setup code after the boot sector (0 in the file -> 4)
  uint64_t kernel_offset = 0;  // file offset of the protected-mode kernel: (setup_sects + 1) * 512
  uint64_t kernel_size = 0;    // bytes of protected-mode kernel: file_size - kernel_offset
  uint32_t header_end = 0;     // 0x202 + file[0x201]: exclusive end of the setup header
  uint8_t loadflags = 0;
  uint16_t xloadflags = 0;            // 0 before protocol 2.12
  uint32_t code32_start = 0x100000;   // default 32-bit entry (the load address)
  uint32_t initrd_addr_max = 0;       // highest address the initrd may occupy (inclusive)
  uint32_t kernel_alignment = 0;      // bytes; a power of two when relocatable
  bool relocatable_kernel = false;
  uint8_t min_alignment = 0;          // log2 bytes, 0 before 2.10
  uint32_t cmdline_size = 0;          // longest command line, in bytes without the NUL
  uint32_t payload_offset = 0;        // from the start of the protected-mode kernel (0 before 2.08)
  uint32_t payload_length = 0;        // bytes (the XZ stream plus the 4-byte decompressed size)
  uint64_t pref_address = 0x100000;   // LOAD_PHYSICAL_ADDR (2.10+; 1 MiB assumed before)
  uint32_t init_size = 0;             // bytes needed from the runtime start (0 before 2.10)
  PayloadFormat payload_format = PayloadFormat::kNone;
  std::string kernel_version;         // e.g. "6.1.0-50-686 (debian-kernel@...) #1 SMP ...", may be empty

  /// XLF_KERNEL_64: the kernel has the 64-bit entry at load address + 0x200.
  /// Only x86_64 kernels set it (arch/x86/boot/header.S).
  bool has_64bit_entry() const { return (xloadflags & kXlfKernel64) != 0; }
  /// "2.15".
  std::string protocol_string() const;
};

/// Parse and check the setup header of a bzImage held in `file` (the whole
/// kernel file). `file_name` only names the file in error messages.
///
/// Checks, in this order, each with its own error naming `file_name`:
/// size (at least the 1024-byte boot sector and first setup sector);
/// boot_flag 0xAA55 at 0x1FE; "HdrS" at 0x202; protocol >= 2.06; loadflags
/// LOADED_HIGH (a bzImage, not a zImage); the header length byte at 0x201
/// (header must reach cmdline_size at 0x23C and end by 0x281); the
/// protected-mode kernel offset (setup_sects, 0 -> 4) inside the file;
/// syssize (2.04+) not larger than what the file holds; kernel_alignment a
/// power of two for relocatable kernels; payload_offset/length (2.08+)
/// inside the protected-mode kernel.
/// Example error: "vmlinuz: not a bzImage: no \"HdrS\" signature at offset 0x202".
Result<BzImage> parse_bzimage(std::span<const uint8_t> file, std::string_view file_name);

}  // namespace twoostwo::vmcore::boot
