#include "vmcore/boot/linux_loader.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <optional>

#include "vmcore/boot/le_bytes.h"
#include "vmcore/boot/vmlinux.h"

namespace twoostwo::vmcore::boot {

namespace {

// boot_params fields outside the setup header (zero-page.rst).
constexpr uint32_t kBpExtMemK = 0x002;   // screen_info.ext_mem_k, u16
constexpr uint32_t kBpAltMemK = 0x1E0;   // u32
constexpr uint32_t kBpE820Entries = 0x1E8;  // u8
constexpr uint32_t kBpE820Table = 0x2D0;    // 20-byte entries
constexpr uint32_t kSetupHeaderStart = hdr::kSetupSects;  // 0x1F1
constexpr uint64_t kPageSize = 4096;
constexpr uint64_t kLong64EntryOffset = 0x200;  // boot.rst: 64-bit entry = load address + 0x200
constexpr uint64_t kGdtBytes = 0x30;            // 6 entries: the 64-bit TSS descriptor takes 16 bytes

constexpr uint64_t kCr0Pe = 1u << 0;
constexpr uint64_t kCr0Et = 1u << 4;
constexpr uint64_t kCr0Pg = 1u << 31;
constexpr uint64_t kCr4Pae = 1u << 5;
constexpr uint64_t kEferLme = 1u << 8;
constexpr uint64_t kEferLma = 1u << 10;

// Page-table entry bits (Intel SDM vol. 3, 4.5).
constexpr uint64_t kPtePresent = 1u << 0;
constexpr uint64_t kPteWrite = 1u << 1;
constexpr uint64_t kPtePageSize = 1u << 7;

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
uint64_t align_down(uint64_t v, uint64_t a) { return v & ~(a - 1); }

std::string mib(uint64_t bytes) {
  if (bytes % (1u << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  return fmt::format("{:.2f} MiB", static_cast<double>(bytes) / (1u << 20));
}

/// A segment descriptor (Intel SDM vol. 3, 3.4.5): `limit` in units given
/// by G (20 bits), `access` = P|DPL|S|type, `flags` = G|D/B|L|AVL.
uint64_t descriptor(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags) {
  return (uint64_t{limit} & 0xFFFF) | ((uint64_t{base} & 0xFFFFFF) << 16) | (uint64_t{access} << 40) |
         ((uint64_t{limit} >> 16 & 0xF) << 48) | (uint64_t{flags} << 52) | ((uint64_t{base} >> 24) << 56);
}

Segment flat_segment(uint16_t selector, uint8_t type, bool code64) {
  Segment s;
  s.selector = selector;
  s.base = 0;
  s.limit = 0xFFFFFFFF;
  s.type = type;
  s.s = true;
  s.dpl = 0;
  s.present = true;
  s.db = !code64;
  s.l = code64;
  s.g = true;
  return s;
}

void write_u64(bus::GuestMemory mem, uint64_t gpa, uint64_t v) {
  std::array<uint8_t, 8> b{};
  le::put64(b, 0, v);
  mem.write(gpa, b);
}

void zero(bus::GuestMemory mem, uint64_t gpa, uint64_t len) {
  auto s = mem.slice(gpa, len);
  std::fill(s.begin(), s.end(), uint8_t{0});
}

/// Highest page-aligned start for `size` bytes ending at or below `top`
/// and overlapping none of `avoid`; nullopt if there is none.
std::optional<uint64_t> place_high(uint64_t size, uint64_t top, const std::vector<GuestRange>& avoid) {
  if (size > top) return std::nullopt;
  uint64_t addr = align_down(top - size, kPageSize);
  for (bool moved = true; moved;) {
    moved = false;
    for (const GuestRange& r : avoid) {
      if (addr < r.end && r.begin < addr + size) {
        if (r.begin < size) return std::nullopt;
        addr = align_down(r.begin - size, kPageSize);
        moved = true;
      }
    }
  }
  return addr;
}

}  // namespace

std::string_view entry_kind_name(EntryKind kind) {
  switch (kind) {
    case EntryKind::kAuto: return "auto";
    case EntryKind::kProtected32: return "protected32";
    case EntryKind::kLong64: return "long64";
  }
  return "auto";
}

std::vector<E820Entry> e820_map(uint64_t ram_bytes) {
  std::vector<E820Entry> map;
  map.push_back({0, kEbdaStart, kE820Ram});
  map.push_back({kEbdaStart, kHighMemory - kEbdaStart, kE820Reserved});
  const uint64_t top = std::min(ram_bytes, kMaxRamBytes);
  if (top > kHighMemory) map.push_back({kHighMemory, top - kHighMemory, kE820Ram});
  return map;
}

Result<LinuxBootInfo> load_linux(bus::GuestMemory mem, const BzImage& image, std::span<const uint8_t> kernel_file,
                                 const LinuxBootOptions& options) {
  const std::string& f = image.file_name;
  const uint64_t ram = mem.size();
  if (kernel_file.size() != image.file_size) {
    return fail(fmt::format("{}: the kernel bytes ({}) are not the file parse_bzimage read ({} bytes)", f,
                            kernel_file.size(), image.file_size));
  }
  if (ram < 2 * kHighMemory) {
    return fail(fmt::format("{}: guest RAM of {} is too small: Linux needs RAM above 1 MiB", f, mib(ram)));
  }
  if (ram > kMaxRamBytes) {
    return fail(fmt::format("{}: guest RAM of {} is more than the {} the boot loader supports (RAM above "
                            "0xc0000000 would need an E820 entry above 4 GiB)",
                            f, mib(ram), mib(kMaxRamBytes)));
  }

  // Command line: at most cmdline_size bytes (boot.rst "cmdline_size"), and
  // it must stay below the EBDA.
  const std::string& cmdline = options.command_line;
  if (cmdline.find('\0') != std::string::npos) {
    return fail(fmt::format("{}: the kernel command line contains a NUL byte", f));
  }
  const uint64_t cmdline_max = std::min<uint64_t>(image.cmdline_size, kEbdaStart - kCmdlineAddress - 1);
  if (cmdline.size() > cmdline_max) {
    return fail(fmt::format("{}: the kernel command line is {} bytes; this kernel accepts at most {} (cmdline_size)",
                            f, cmdline.size(), cmdline_max));
  }

  // Entry kind.
  if (options.entry == EntryKind::kLong64 && !image.has_64bit_entry()) {
    return fail(fmt::format("{}: the 64-bit entry was asked for, but the kernel has none (xloadflags bit "
                            "XLF_KERNEL_64 is clear: not an x86_64 kernel)",
                            f));
  }
  LinuxBootInfo info;
  info.entry_kind = options.entry != EntryKind::kAuto
                        ? options.entry
                        : (image.has_64bit_entry() ? EntryKind::kLong64 : EntryKind::kProtected32);
  const bool long64 = info.entry_kind == EntryKind::kLong64;

  // Host decompression (vmlinux.h), or the compressed kernel.
  std::optional<Vmlinux> vmlinux;
  if (options.decompress_on_host) {
    const char* fallback = "; booting the compressed kernel";
    if (image.payload_format != PayloadFormat::kXz) {
      info.notes.push_back(fmt::format("host decompression skipped: the payload is {}, not XZ{}",
                                       payload_format_name(image.payload_format), fallback));
    } else {
      const auto t0 = std::chrono::steady_clock::now();
      VmlinuxCache cache{.dir = options.decompress_cache_dir, .hit = false, .note = {}};
      auto v = decompress_vmlinux(image, kernel_file, options.decompress_cache_dir.empty() ? nullptr : &cache);
      info.decompress_time =
          std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
      if (!cache.note.empty()) info.notes.push_back("decompression cache: " + cache.note);
      if (!v) {
        info.notes.push_back(fmt::format("host decompression failed ({}){}", v.error().message, fallback));
      } else if ((v->elf_class == 64) != long64) {
        info.notes.push_back(fmt::format(
            "host decompression not used: the vmlinux is ELF{}, whose entry needs {}, but the {} entry was "
            "chosen{}",
            v->elf_class, v->elf_class == 64 ? "64-bit mode" : "32-bit protected mode",
            entry_kind_name(info.entry_kind), fallback));
      } else if (v->load_begin < kHighMemory || v->load_end > ram) {
        info.notes.push_back(fmt::format("host decompression not used: the vmlinux segments [0x{:x}, 0x{:x}) do "
                                         "not fit guest RAM [0x100000, 0x{:x}){}",
                                         v->load_begin, v->load_end, ram, fallback));
      } else {
        vmlinux = std::move(*v);
      }
    }
  }

  // Where the kernel lives until it has read the memory map.
  if (vmlinux) {
    info.kernel = {vmlinux->load_begin, vmlinux->load_end};
    info.kernel_reserved = {vmlinux->load_begin,
                            std::max(vmlinux->load_end, vmlinux->load_begin + uint64_t{image.init_size})};
  } else {
    info.kernel = {kKernelLoadAddress, kKernelLoadAddress + image.kernel_size};
    const uint64_t runtime_start =
        image.relocatable_kernel
            ? std::max(align_up(kKernelLoadAddress, std::max<uint64_t>(image.kernel_alignment, 1)),
                       image.pref_address)
            : image.pref_address;
    info.kernel_reserved = {kKernelLoadAddress, std::max(info.kernel.end, runtime_start + image.init_size)};
  }
  if (info.kernel_reserved.end > ram) {
    return fail(fmt::format("{}: guest RAM of {} is too small for the kernel: it needs [0x{:x}, 0x{:x}) ({})", f,
                            mib(ram), info.kernel_reserved.begin, info.kernel_reserved.end,
                            mib(info.kernel_reserved.end)));
  }

  // The initrd, zero padding to 4 bytes, the appended archive.
  const uint64_t initrd_size = options.initrd.size();
  const uint64_t extra_size = options.extra_initrd.size();
  const uint64_t extra_offset = extra_size != 0 ? align_up(initrd_size, 4) : 0;
  const uint64_t ramdisk_size = extra_size != 0 ? extra_offset + extra_size : initrd_size;
  if (ramdisk_size != 0) {
    const uint64_t top = std::min<uint64_t>(uint64_t{image.initrd_addr_max} + 1, ram);
    const std::vector<GuestRange> avoid = {{0, kHighMemory}, info.kernel_reserved};
    auto addr = place_high(ramdisk_size, top, avoid);
    if (!addr) {
      return fail(fmt::format("{}: guest RAM of {} is too small for the kernel and the initrd: {} bytes of initrd "
                              "do not fit below 0x{:x} (min(initrd_addr_max + 1, RAM size)) outside the kernel's "
                              "[0x{:x}, 0x{:x})",
                              f, mib(ram), ramdisk_size, top, info.kernel_reserved.begin,
                              info.kernel_reserved.end));
    }
    info.initrd = {*addr, *addr + ramdisk_size};
    if (extra_size != 0) info.extra_initrd_address = *addr + extra_offset;
  }

  // Everything is checked: write guest memory.
  if (vmlinux) {
    if (auto r = load_vmlinux_segments(mem, *vmlinux, f); !r) return std::unexpected(r.error());
    info.decompressed_on_host = true;
    info.notes.push_back(fmt::format(
        "host decompression: XZ payload of {} bytes -> ELF{} vmlinux of {} bytes in {} ms; {} PT_LOAD segments "
        "at their p_paddr [0x{:x}, 0x{:x}) (no relocation needed), entry 0x{:x}",
        image.payload_length, vmlinux->elf_class, vmlinux->bytes.size(), info.decompress_time.count() / 1000,
        vmlinux->segments.size(), vmlinux->load_begin, vmlinux->load_end, vmlinux->entry_physical));
  } else {
    mem.write(kKernelLoadAddress, kernel_file.subspan(image.kernel_offset));
  }
  if (ramdisk_size != 0) {
    mem.write(info.initrd.begin, options.initrd);
    zero(mem, info.initrd.begin + initrd_size, extra_offset > initrd_size ? extra_offset - initrd_size : 0);
    if (extra_size != 0) mem.write(info.extra_initrd_address, options.extra_initrd);
  }

  // Command line (zero the whole buffer the kernel may copy, then the string).
  zero(mem, kCmdlineAddress, cmdline_max + 1);
  mem.write(kCmdlineAddress, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(cmdline.data()),
                                                      cmdline.size()));
  info.command_line = {kCmdlineAddress, kCmdlineAddress + cmdline.size() + 1};

  // Zero page (boot.rst "32-bit Boot Protocol": zero it, copy the setup header, fill in).
  std::array<uint8_t, kPageSize> bp{};
  std::copy(kernel_file.begin() + kSetupHeaderStart, kernel_file.begin() + image.header_end,
            bp.begin() + kSetupHeaderStart);
  bp[hdr::kTypeOfLoader] = 0xFF;
  bp[hdr::kLoadflags] = static_cast<uint8_t>(image.loadflags & ~(kCanUseHeap | kKaslrFlag));
  le::put16(bp, hdr::kHeapEndPtr, 0);
  le::put32(bp, hdr::kCode32Start, static_cast<uint32_t>(kKernelLoadAddress));
  le::put32(bp, hdr::kCmdLinePtr, static_cast<uint32_t>(kCmdlineAddress));
  le::put32(bp, hdr::kRamdiskImage, static_cast<uint32_t>(info.initrd.begin));
  le::put32(bp, hdr::kRamdiskSize, static_cast<uint32_t>(ramdisk_size));
  const uint64_t ext_k = (ram - kHighMemory) / 1024;
  le::put16(bp, kBpExtMemK, static_cast<uint16_t>(std::min<uint64_t>(ext_k, 0xFC00)));
  le::put32(bp, kBpAltMemK, static_cast<uint32_t>(ext_k));
  info.e820 = e820_map(ram);
  bp[kBpE820Entries] = static_cast<uint8_t>(info.e820.size());
  for (size_t i = 0; i < info.e820.size(); ++i) {
    const size_t at = kBpE820Table + i * 20;
    le::put64(bp, at, info.e820[i].addr);
    le::put64(bp, at + 8, info.e820[i].size);
    le::put32(bp, at + 16, info.e820[i].type);
  }
  mem.write(kZeroPageAddress, bp);

  // GDT: null, null, __BOOT_CS, __BOOT_DS, TSS (16 bytes in long mode).
  zero(mem, kGdtAddress, kGdtBytes);
  write_u64(mem, kGdtAddress + kBootCs, descriptor(0, 0xFFFFF, 0x9B, long64 ? 0xA : 0xC));
  write_u64(mem, kGdtAddress + kBootDs, descriptor(0, 0xFFFFF, 0x93, 0xC));
  write_u64(mem, kGdtAddress + kBootTss, descriptor(0, 0x67, 0x8B, 0x0));

  // Identity map [0, 4 GiB) with 2 MiB pages for the 64-bit entry.
  if (long64) {
    constexpr uint64_t kPds = kIdentityMapBytes >> 30;
    zero(mem, kPml4Address, kPageSize);
    zero(mem, kPdptAddress, kPageSize);
    write_u64(mem, kPml4Address, kPdptAddress | kPtePresent | kPteWrite);
    for (uint64_t i = 0; i < kPds; ++i) {
      const uint64_t pd = kPdAddress + i * kPageSize;
      write_u64(mem, kPdptAddress + i * 8, pd | kPtePresent | kPteWrite);
      std::array<uint8_t, kPageSize> table{};
      for (uint64_t j = 0; j < 512; ++j) {
        le::put64(table, j * 8, ((i << 30) + (j << 21)) | kPtePresent | kPteWrite | kPtePageSize);
      }
      mem.write(pd, table);
    }
  }

  // The entry vCPU state (boot.rst "32-bit/64-bit Boot Protocol").
  CpuState s = CpuState::reset();
  s.gpr = {};
  s.gpr[kRsi] = kZeroPageAddress;
  s.gpr[kRsp] = kBootStackPointer;
  s.rflags = 0x2;
  s.cs = flat_segment(kBootCs, 0xB, long64);
  s.ds = s.es = s.fs = s.gs = s.ss = flat_segment(kBootDs, 0x3, false);
  s.tr = Segment{};
  s.tr.selector = kBootTss;
  s.tr.base = 0;
  s.tr.limit = 0x67;
  s.tr.type = 0xB;
  s.tr.s = false;
  s.tr.present = true;
  s.gdt = {kGdtAddress, static_cast<uint16_t>(kGdtBytes - 1)};
  s.idt = {0, 0};
  s.cr2 = 0;
  if (long64) {
    s.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
    s.cr3 = kPml4Address;
    s.cr4 = kCr4Pae;
    s.efer = kEferLme | kEferLma;
  } else {
    s.cr0 = kCr0Pe | kCr0Et;
    s.cr3 = 0;
    s.cr4 = 0;
    s.efer = 0;
  }
  if (vmlinux) {
    s.rip = vmlinux->entry_physical;
  } else {
    s.rip = kKernelLoadAddress + (long64 ? kLong64EntryOffset : 0);
  }
  info.entry = s;
  return info;
}

}  // namespace twoostwo::vmcore::boot
