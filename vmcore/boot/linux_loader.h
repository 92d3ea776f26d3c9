// Linux direct boot: place a bzImage, its initrd and the boot parameters in
// guest RAM and compute the vCPU state at the kernel's 32-bit or 64-bit
// entry, without firmware and without running the kernel's real-mode setup.
//
// Sources: Linux Documentation/arch/x86/boot.rst ("32-bit Boot Protocol",
// "64-bit Boot Protocol", "Details of Header Fields"),
// Documentation/arch/x86/zero-page.rst (boot_params layout),
// arch/x86/include/asm/bootparam_utils.h (why the sentinel at 0x1EF must be
// zero), reference/ne2000-kvm-facts.md §1 and §9, and Firecracker's layout
// (src/vmm/src/arch/x86_64/{layout,regs}.rs) for the addresses below 1 MiB.
//
// Guest-physical layout written by load_linux():
//   0x00500  GDT: 0x00 null, 0x08 null, 0x10 __BOOT_CS (flat code; 32-bit,
//            or 64-bit for the long-mode entry), 0x18 __BOOT_DS (flat data),
//            0x20 a busy TSS (base 0, limit 0x67) so TR is usable
//   0x07000  zero page (struct boot_params, 4 KiB)
//   0x08ff0  initial stack pointer (nothing relies on it)
//   0x09000  PML4, 0x0A000 PDPT, 0x0B000..0x0EFFF four PDs: identity map of
//            [0, 4 GiB) with 2 MiB pages (64-bit entry only)
//   0x20000  kernel command line (NUL-terminated)
//   0x100000 protected-mode kernel (or, with host decompression, the
//            vmlinux PT_LOAD segments at their p_paddr, 16 MiB for Debian)
//   top      initrd (+ zero padding + appended archive), page-aligned, as
//            high as initrd_addr_max and RAM allow
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vmcore/boot/bzimage.h"
#include "vmcore/bus/error.h"
#include "vmcore/bus/guest_memory.h"
#include "vmcore/cpu_state.h"

namespace twoostwo::vmcore::boot {

/// Guest-physical addresses of the boot structures (see the file comment).
inline constexpr uint64_t kGdtAddress = 0x500;
inline constexpr uint64_t kZeroPageAddress = 0x7000;
inline constexpr uint64_t kBootStackPointer = 0x8FF0;
inline constexpr uint64_t kPml4Address = 0x9000;
inline constexpr uint64_t kPdptAddress = 0xA000;
inline constexpr uint64_t kPdAddress = 0xB000;         // 4 consecutive page directories
inline constexpr uint64_t kIdentityMapBytes = uint64_t{4} << 30;  // 64-bit entry: [0, 4 GiB) identity-mapped
inline constexpr uint64_t kCmdlineAddress = 0x20000;
inline constexpr uint64_t kKernelLoadAddress = 0x100000;  // bzImage protected-mode code (boot.rst)
inline constexpr uint64_t kEbdaStart = 0x9FC00;           // E820: reserved from here to 1 MiB
inline constexpr uint64_t kHighMemory = 0x100000;
/// Guest RAM above this would need an E820 entry above 4 GiB (the PCI hole
/// lives in [3 GiB, 4 GiB)); not supported yet.
inline constexpr uint64_t kMaxRamBytes = 0xC0000000;

/// GDT selectors (boot.rst: __BOOT_CS and __BOOT_DS).
inline constexpr uint16_t kBootCs = 0x10;
inline constexpr uint16_t kBootDs = 0x18;
inline constexpr uint16_t kBootTss = 0x20;

/// Which kernel entry to use.
enum class EntryKind {
  kAuto,         // kLong64 if the kernel has XLF_KERNEL_64 (only x86_64 kernels do), else kProtected32
  kProtected32,  // 32-bit protected mode, paging off, at the load address (boot.rst "32-bit Boot Protocol")
  kLong64,       // 64-bit mode, identity paging, at load address + 0x200 ("64-bit Boot Protocol")
};
std::string_view entry_kind_name(EntryKind kind);  // "auto", "protected32", "long64"

/// A half-open guest-physical range [begin, end).
struct GuestRange {
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t size() const { return end - begin; }
  bool empty() const { return begin == end; }
};

/// One E820 entry as boot_params stores it (zero-page.rst: 0x2D0, 20 bytes each).
struct E820Entry {
  uint64_t addr = 0;  // bytes
  uint64_t size = 0;  // bytes
  uint32_t type = 0;  // kE820Ram or kE820Reserved
  bool operator==(const E820Entry&) const = default;
};
inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;

/// The memory map for `ram_bytes` of guest RAM (ram_bytes in [1 MiB, 3 GiB]):
/// RAM [0, 0x9FC00), reserved [0x9FC00, 0x100000) (EBDA, VGA, option and
/// system ROMs), RAM [0x100000, ram_bytes).
std::vector<E820Entry> e820_map(uint64_t ram_bytes);

struct LinuxBootOptions {
  /// The kernel command line, without NUL; at most BzImage::cmdline_size bytes.
  std::string command_line;
  /// The initrd image (cpio, possibly compressed); may be empty.
  std::span<const uint8_t> initrd;
  /// An archive to append to the initrd (the node archive, cpio_newc_archive());
  /// may be empty. It is placed at the next 4-byte boundary after the initrd,
  /// the gap zero-filled, as init/initramfs.c requires (see cpio.h).
  std::span<const uint8_t> extra_initrd;
  EntryKind entry = EntryKind::kAuto;
  /// Decompress an XZ payload on the host and enter the kernel proper
  /// (vmlinux.h); falls back to the compressed kernel with a note when that
  /// is not possible.
  bool decompress_on_host = false;
  /// With decompress_on_host: a directory caching decompressed payloads
  /// across monitors (VmlinuxCache in vmlinux.h); empty for no cache.
  std::string decompress_cache_dir;
};

struct LinuxBootInfo {
  /// The vCPU state to start from: CS = 0x10 (base 0, limit 4 GiB, type 0xB,
  /// s, present, g, db for 32-bit / l for 64-bit), DS = ES = FS = GS = SS =
  /// 0x18 (type 0x3, db, g), TR = 0x20 busy TSS (type 0xB), GDTR = 0x500 /
  /// 0x2F, IDTR = 0 / 0 (no IDT: any exception before the kernel loads its
  /// own escalates to a triple fault), RFLAGS = 0x2 (IF clear), RSI = 0x7000,
  /// RBX = RBP = RDI = 0, RSP = 0x8FF0. 32-bit: CR0 = PE|ET (0x11), paging
  /// off. 64-bit: CR0 = PG|ET|PE (0x80000011), CR3 = 0x9000, CR4 = PAE,
  /// EFER = LME|LMA (0x500).
  vmcore::CpuState entry;
  EntryKind entry_kind = EntryKind::kProtected32;  // resolved: never kAuto
  bool decompressed_on_host = false;
  uint64_t zero_page = kZeroPageAddress;
  /// Bytes written for the kernel: [1 MiB, 1 MiB + kernel_size), or the
  /// span of the vmlinux PT_LOAD segments when decompressed on the host.
  GuestRange kernel;
  /// Memory the kernel uses before it reads the E820 map, kept free of the
  /// initrd. Compressed kernel: from 1 MiB to max(end of `kernel`,
  /// runtime_start + init_size), where runtime_start =
  /// max(align_up(load address, kernel_alignment), pref_address) for
  /// relocatable kernels (arch/x86/boot/compressed/head_32.S and head_64.S
  /// never decompress below LOAD_PHYSICAL_ADDR, which pref_address holds)
  /// and pref_address otherwise (boot.rst, "init_size"). Host-decompressed:
  /// from the lowest p_paddr to max(highest p_paddr + p_memsz, lowest
  /// p_paddr + init_size).
  GuestRange kernel_reserved;
  /// ramdisk_image .. ramdisk_image + ramdisk_size: the initrd, its zero
  /// padding and the appended archive. Empty when both are empty.
  GuestRange initrd;
  /// Guest address of the appended archive (inside `initrd`, 4-aligned), 0 if none.
  uint64_t extra_initrd_address = 0;
  /// The command line bytes including the NUL.
  GuestRange command_line;
  std::vector<E820Entry> e820;
  /// Host time spent decompressing the payload (0 when not decompressed).
  std::chrono::microseconds decompress_time{0};
  /// Human-readable remarks for the log: the decompression cache's use
  /// ("decompression cache: read/stored PATH"), the host decompression
  /// result, or why it fell back to the compressed kernel.
  std::vector<std::string> notes;
};

/// Load `image` (parsed from `kernel_file`, which must be the same bytes)
/// into `mem` (guest RAM [0, mem.size()), 2 MiB .. 3 GiB) and return the
/// entry state. Writes, per boot.rst's 32-/64-bit protocols:
///  - the zero page at 0x7000: zeroed, then the setup header copied from
///    file offset 0x1F1 up to 0x202 + file[0x201] (never the first page
///    wholesale: the sentinel at 0x1EF stays 0), then type_of_loader = 0xFF,
///    cmd_line_ptr, ramdisk_image/size, ext_mem_k (0x002, KiB above 1 MiB
///    capped at 0xFC00 as INT 15h AX=88h reports), alt_mem_k (0x1E0, KiB
///    above 1 MiB, as E801), e820_entries (0x1E8) and e820_table (0x2D0).
///    loadflags keeps the kernel's LOADED_HIGH; CAN_USE_HEAP and
///    heap_end_ptr are left clear because they describe the real-mode setup
///    code's heap, and the direct 32/64-bit entries skip that code.
///  - the command line at 0x20000, the GDT at 0x500, the page tables for
///    the 64-bit entry, the kernel and the initrd (see the file comment).
/// Errors (each naming the kernel file): the kernel bytes differ in size
/// from the parsed file; RAM below 2 MiB or above 3 GiB; command line longer
/// than cmdline_size or containing a NUL; kLong64 asked for a kernel without
/// XLF_KERNEL_64; RAM too small for the kernel or for kernel + initrd.
Result<LinuxBootInfo> load_linux(bus::GuestMemory mem, const BzImage& image, std::span<const uint8_t> kernel_file,
                                 const LinuxBootOptions& options);

}  // namespace twoostwo::vmcore::boot
