// Host-side decompression of a bzImage's payload into the kernel proper
// (vmlinux), so that an emulated guest does not spend hundreds of millions
// of instructions in the kernel's own decompressor
// (reference/ne2000-kvm-facts.md §9).
//
// What the in-guest decompressor does, and what this replaces
// (arch/x86/boot/compressed/head_32.S, head_64.S, misc.c):
//   1. extract_kernel() clears KASLR_FLAG in boot_params.hdr.loadflags,
//      sanitizes boot_params, picks the output address (LOAD_PHYSICAL_ADDR,
//      or a KASLR choice), decompresses the payload there (an ELF "vmlinux"
//      followed by its relocation tables, scripts/Makefile.lib size_append),
//   2. parse_elf() moves every PT_LOAD segment to
//      output + (p_paddr - LOAD_PHYSICAL_ADDR),
//   3. handle_relocations() applies the tables only when the kernel did not
//      land where it was linked (delta = output - LOAD_PHYSICAL_ADDR, and on
//      x86_64 the virtual KASLR offset): "No relocation needed" otherwise,
//   4. jumps to the kernel's entry with ESI/RSI = boot_params, EBX = 0.
// Loading each segment at its own p_paddr makes delta 0, so no relocation
// is needed and the relocation tables are ignored; KASLR is simply not used
// (KASLR_FLAG stays clear, which is what kernel proper checks).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vmcore/boot/bzimage.h"
#include "vmcore/bus/error.h"
#include "vmcore/bus/guest_memory.h"

namespace twoostwo::vmcore::boot {

/// One PT_LOAD program header of the vmlinux ELF.
struct ElfSegment {
  uint64_t offset = 0;  // p_offset: file offset of the bytes
  uint64_t paddr = 0;   // p_paddr: guest-physical load address
  uint64_t vaddr = 0;   // p_vaddr: link (virtual) address, for information
  uint64_t filesz = 0;  // bytes copied from the file
  uint64_t memsz = 0;   // bytes occupied in memory; memsz - filesz are zeroed (BSS)
  uint32_t flags = 0;   // PF_X = 1, PF_W = 2, PF_R = 4
};

/// A decompressed kernel proper.
struct Vmlinux {
  std::vector<uint8_t> bytes;         // the whole decompressed payload (ELF, then relocation tables)
  unsigned elf_class = 0;             // 32 (ELFCLASS32, EM_386) or 64 (ELFCLASS64, EM_X86_64)
  uint16_t machine = 0;               // e_machine: 3 = EM_386, 62 = EM_X86_64
  uint64_t entry_field = 0;           // e_entry as written in the ELF header
  uint64_t entry_physical = 0;        // the entry as a guest-physical address (see parse_vmlinux_elf)
  std::vector<ElfSegment> segments;   // PT_LOAD only, in file order
  uint64_t load_begin = 0;            // lowest p_paddr
  uint64_t load_end = 0;              // highest p_paddr + p_memsz (exclusive)
};

/// Decode one .xz stream (liblzma's stream decoder, which also runs the
/// x86 BCJ filter the kernel's xz_wrap.sh uses). Bytes after the stream's
/// end are ignored: a kernel payload ends with the 4-byte little-endian
/// decompressed size, which is used only as a size hint. `what` names the
/// input in errors ("vmlinuz: XZ payload: ..."). Errors: not XZ, corrupt
/// data, truncated stream, output larger than `max_output` bytes.
Result<std::vector<uint8_t>> xz_decompress(std::span<const uint8_t> stream, std::string_view what,
                                           uint64_t max_output = uint64_t{1} << 30);

/// Parse a vmlinux ELF (little-endian ELF32/EM_386 or ELF64/EM_X86_64,
/// e_type EXEC) and its PT_LOAD headers. The entry point: both x86 linker
/// scripts set ENTRY() to a physical address (arch/x86/kernel/vmlinux.lds.S:
/// phys_startup_32 on i386, phys_startup_64 on x86_64), so e_entry is used
/// as is when it falls inside a segment's [p_paddr, p_paddr + p_memsz);
/// otherwise, if it falls inside [p_vaddr, p_vaddr + p_memsz) it is
/// converted to p_paddr + (e_entry - p_vaddr). Errors: bad magic/class/
/// machine, headers or segments outside the file, filesz > memsz, address
/// overflow, no PT_LOAD, an entry outside every segment.
Result<Vmlinux> parse_vmlinux_elf(std::vector<uint8_t> bytes, std::string_view what);

/// An optional on-disk cache of decompressed payloads: decoding Debian's
/// 686 payload took 0.4-0.7 s of host CPU on the project's machines and the
/// amd64 one 0.9-1.4 s (as long as `xz -dc`; liblzma cannot split a
/// single-block .xz stream across threads), a cache hit ~10 ms, and every
/// VM of a lab boots the same kernel.
struct VmlinuxCache {
  /// Directory of the cache files (created when missing).
  std::filesystem::path dir;
  /// Set by decompress_vmlinux(): whether the cache answered, and a remark
  /// for the log ("read ...", "stored ...", or why the cache was not used).
  bool hit = false;
  std::string note;
};

/// The cache file for `kernel_file`: `dir`/vmlinux-<CRC-64 of the whole
/// file, 16 hex digits>-<file size>.bin, holding the decompressed payload.
std::filesystem::path vmlinux_cache_path(const std::filesystem::path& dir, std::span<const uint8_t> kernel_file);

/// Decompress `image`'s payload (it must be XZ) from `kernel_file` and
/// parse the resulting ELF. With `cache`, first try its file for this
/// kernel (a file that does not parse is ignored and replaced), and store
/// a fresh result there (written to a temporary name, then renamed, so
/// concurrent monitors never read a partial file); cache problems never
/// fail the call, they only show in cache->note. Errors as xz_decompress /
/// parse_vmlinux_elf, plus "the payload is gzip, not XZ" and "no payload".
Result<Vmlinux> decompress_vmlinux(const BzImage& image, std::span<const uint8_t> kernel_file,
                                   VmlinuxCache* cache = nullptr);

/// Copy each PT_LOAD segment to guest RAM at p_paddr and zero its
/// [p_filesz, p_memsz) tail (the BSS). Errors: a segment outside RAM or
/// below 1 MiB (where the zero page, GDT and page tables live).
Result<void> load_vmlinux_segments(bus::GuestMemory mem, const Vmlinux& vmlinux, std::string_view what);

}  // namespace twoostwo::vmcore::boot
