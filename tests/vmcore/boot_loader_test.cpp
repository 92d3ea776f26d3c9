// The Linux direct-boot loader (vmcore/boot/): setup header parsing, the
// zero page, E820, initrd placement, entry states, page tables and host-side
// decompression, on the real Debian bzImages (TWOOSTWO_GUEST_DIR) and on
// small synthetic bzImages built here (so error paths run everywhere).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <lzma.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "vmcore/boot/bzimage.h"
#include "vmcore/boot/cpio.h"
#include "vmcore/boot/linux_loader.h"
#include "vmcore/boot/vmlinux.h"

namespace twoostwo::vmcore::boot {
namespace {

constexpr uint64_t kMiB = 1u << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

// ---------------------------------------------------------------- helpers

/// Guest RAM for a test: anonymous memory, so 1 GiB (or a 3 GiB+ size that
/// must be refused) costs only the pages actually written.
class TestRam {
 public:
  explicit TestRam(uint64_t size) : size_(size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap of test RAM failed");
    base_ = static_cast<uint8_t*>(p);
  }
  ~TestRam() { munmap(base_, size_); }
  TestRam(const TestRam&) = delete;
  TestRam& operator=(const TestRam&) = delete;
  bus::GuestMemory mem() const { return {base_, size_}; }
  const uint8_t* at(uint64_t gpa) const { return base_ + gpa; }
  uint8_t* at(uint64_t gpa) { return base_ + gpa; }
  uint8_t u8(uint64_t gpa) const { return base_[gpa]; }
  uint16_t u16(uint64_t gpa) const { return static_cast<uint16_t>(base_[gpa] | base_[gpa + 1] << 8); }
  uint32_t u32(uint64_t gpa) const { return u16(gpa) | static_cast<uint32_t>(u16(gpa + 2)) << 16; }
  uint64_t u64(uint64_t gpa) const { return u32(gpa) | static_cast<uint64_t>(u32(gpa + 4)) << 32; }
  std::vector<uint8_t> bytes(uint64_t gpa, uint64_t n) const { return {base_ + gpa, base_ + gpa + n}; }

 private:
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
};

std::optional<std::vector<uint8_t>> read_guest_file(const std::string& rel) {
  std::ifstream in(std::filesystem::path(TWOOSTWO_GUEST_DIR) / rel, std::ios::binary);
  if (!in) return std::nullopt;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

#define LOAD_GUEST_KERNEL(var, rel)                                                                        \
  auto var##_file = read_guest_file(rel);                                                                  \
  if (!var##_file) {                                                                                       \
    GTEST_SKIP() << TWOOSTWO_GUEST_DIR "/" rel " is absent: run scripts/setup.sh (guest/build-images.sh) " \
                    "to build the guest images";                                                           \
  }                                                                                                        \
  const std::vector<uint8_t>& var = *var##_file

void put16(std::vector<uint8_t>& b, size_t off, uint16_t v) {
  b[off] = static_cast<uint8_t>(v);
  b[off + 1] = static_cast<uint8_t>(v >> 8);
}
void put32(std::vector<uint8_t>& b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
void put64(std::vector<uint8_t>& b, size_t off, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}

/// An .xz stream with the x86 BCJ + LZMA2 filters (what the kernel's
/// scripts/xz_wrap.sh uses), followed by the 4-byte size as size_append adds.
std::vector<uint8_t> xz_compress_like_kernel(const std::vector<uint8_t>& in) {
  lzma_options_lzma opt;
  lzma_lzma_preset(&opt, 6);
  lzma_filter filters[] = {{LZMA_FILTER_X86, nullptr}, {LZMA_FILTER_LZMA2, &opt}, {LZMA_VLI_UNKNOWN, nullptr}};
  std::vector<uint8_t> out(in.size() + in.size() / 2 + 4096);
  size_t pos = 0;
  if (lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC32, nullptr, in.data(), in.size(), out.data(), &pos,
                                out.size()) != LZMA_OK) {
    throw std::runtime_error("lzma_stream_buffer_encode failed");
  }
  out.resize(pos + 4);
  put32(out, pos, static_cast<uint32_t>(in.size()));
  return out;
}

struct FakeSegment {
  uint64_t paddr, vaddr, filesz, memsz;
  uint8_t fill;
};

/// A minimal vmlinux: an ELF header, PT_LOAD headers and segment bytes
/// (each filled with `fill`), then 64 bytes standing in for the relocations.
std::vector<uint8_t> make_elf(unsigned cls, uint64_t entry, const std::vector<FakeSegment>& segs) {
  const bool is64 = cls == 64;
  const size_t ehsize = is64 ? 64 : 52, phentsize = is64 ? 56 : 32;
  const size_t data_start = 0x1000;
  size_t size = data_start;
  for (const auto& s : segs) size += s.filesz;
  std::vector<uint8_t> b(size + 64, 0);
  b[0] = 0x7F;
  b[1] = 'E';
  b[2] = 'L';
  b[3] = 'F';
  b[4] = is64 ? 2 : 1;
  b[5] = 1;
  b[6] = 1;
  put16(b, 16, 2);                    // ET_EXEC
  put16(b, 18, is64 ? 62 : 3);        // EM_X86_64 / EM_386
  put32(b, 20, 1);
  size_t off = data_start;
  if (is64) {
    put64(b, 24, entry);
    put64(b, 32, ehsize);  // phoff
    put16(b, 52, static_cast<uint16_t>(ehsize));
    put16(b, 54, static_cast<uint16_t>(phentsize));
    put16(b, 56, static_cast<uint16_t>(segs.size() + 1));
  } else {
    put32(b, 24, static_cast<uint32_t>(entry));
    put32(b, 28, static_cast<uint32_t>(ehsize));
    put16(b, 40, static_cast<uint16_t>(ehsize));
    put16(b, 42, static_cast<uint16_t>(phentsize));
    put16(b, 44, static_cast<uint16_t>(segs.size() + 1));
  }
  for (size_t i = 0; i < segs.size(); ++i) {
    const auto& s = segs[i];
    const size_t ph = ehsize + i * phentsize;
    if (is64) {
      put32(b, ph, 1);
      put32(b, ph + 4, 7);
      put64(b, ph + 8, off);
      put64(b, ph + 16, s.vaddr);
      put64(b, ph + 24, s.paddr);
      put64(b, ph + 32, s.filesz);
      put64(b, ph + 40, s.memsz);
    } else {
      put32(b, ph, 1);
      put32(b, ph + 4, static_cast<uint32_t>(off));
      put32(b, ph + 8, static_cast<uint32_t>(s.vaddr));
      put32(b, ph + 12, static_cast<uint32_t>(s.paddr));
      put32(b, ph + 16, static_cast<uint32_t>(s.filesz));
      put32(b, ph + 20, static_cast<uint32_t>(s.memsz));
      put32(b, ph + 24, 7);
    }
    std::fill_n(b.begin() + static_cast<ptrdiff_t>(off), s.filesz, s.fill);
    off += s.filesz;
  }
  // A PT_NOTE, which the loader must ignore.
  put32(b, ehsize + segs.size() * phentsize, 4);
  for (size_t i = 0; i < 64; ++i) b[size + i] = static_cast<uint8_t>(0xE0 + i % 16);  // "relocs"
  return b;
}

struct FakeKernel {
  uint16_t version = 0x020F;
  uint8_t loadflags = kLoadedHigh;
  uint16_t xloadflags = 0;
  uint32_t initrd_addr_max = 0x7FFFFFFF;
  uint32_t kernel_alignment = 0x1000000;
  uint64_t pref_address = 0x1000000;
  uint32_t init_size = 0x400000;  // 4 MiB from the runtime start
  uint32_t cmdline_size = 0x7FF;
  std::vector<uint8_t> payload;   // default: 16 bytes of a fake gzip stream
  size_t code_bytes = 0x200;      // protected-mode bytes before the payload
};

constexpr size_t kFakeSetupBytes = 5 * 512;  // setup_sects = 4

/// A bzImage with a setup header like Linux 6.1's (protocol 2.15, header
/// end 0x26c), non-zero boot-sector and setup-code bytes around the header
/// (the sentinel at 0x1EF is 0xFF as in real images), and a protected-mode
/// part of `code_bytes` pattern bytes followed by the payload.
std::vector<uint8_t> make_bzimage(const FakeKernel& k) {
  std::vector<uint8_t> payload = k.payload;
  if (payload.empty()) payload = {0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6};
  size_t pm = k.code_bytes + payload.size();
  pm = (pm + 15) & ~size_t{15};
  std::vector<uint8_t> f(kFakeSetupBytes + pm, 0);
  std::fill_n(f.begin(), 0x1F1, uint8_t{0x5A});
  f[0x1EF] = 0xFF;
  std::fill(f.begin() + 0x26C, f.begin() + kFakeSetupBytes, uint8_t{0x77});
  f[hdr::kSetupSects] = 4;
  put32(f, hdr::kSyssize, static_cast<uint32_t>(pm / 16));
  put16(f, hdr::kVidMode, 0xFFFF);
  put16(f, hdr::kBootFlag, 0xAA55);
  f[hdr::kJump] = 0xEB;
  f[hdr::kJump + 1] = 0x6A;
  std::memcpy(&f[hdr::kHeaderMagic], "HdrS", 4);
  put16(f, hdr::kVersion, k.version);
  put16(f, hdr::kKernelVersion, 0x300);
  std::memcpy(&f[0x500], "9.9.9-fake (test@example) #1", 29);
  f[hdr::kTypeOfLoader] = 0;
  f[hdr::kLoadflags] = k.loadflags;
  put32(f, hdr::kCode32Start, 0x100000);
  put32(f, hdr::kInitrdAddrMax, k.initrd_addr_max);
  put32(f, hdr::kKernelAlignment, k.kernel_alignment);
  f[hdr::kRelocatable] = 1;
  f[hdr::kMinAlignment] = 21;
  put16(f, hdr::kXloadflags, k.xloadflags);
  put32(f, hdr::kCmdlineSize, k.cmdline_size);
  put32(f, hdr::kPayloadOffset, static_cast<uint32_t>(k.code_bytes));
  put32(f, hdr::kPayloadLength, static_cast<uint32_t>(payload.size()));
  put64(f, hdr::kPrefAddress, k.pref_address);
  put32(f, hdr::kInitSize, k.init_size);
  put32(f, 0x264, 0x1234);  // handover_offset
  put32(f, 0x268, 0x5678);  // kernel_info_offset
  for (size_t i = 0; i < k.code_bytes; ++i) f[kFakeSetupBytes + i] = static_cast<uint8_t>(i * 7 + 1);
  std::copy(payload.begin(), payload.end(), f.begin() + static_cast<ptrdiff_t>(kFakeSetupBytes + k.code_bytes));
  return f;
}

BzImage parse_ok(const std::vector<uint8_t>& file, std::string_view name = "vmlinuz") {
  auto img = parse_bzimage(file, name);
  if (!img) throw std::runtime_error(img.error().message);
  return *img;
}

std::string parse_error(const std::vector<uint8_t>& file) {
  auto img = parse_bzimage(file, "vmlinuz");
  return img ? std::string("(parsed)") : img.error().message;
}

std::vector<E820Entry> e820_from_zero_page(const TestRam& ram) {
  std::vector<E820Entry> out;
  const unsigned n = ram.u8(kZeroPageAddress + 0x1E8);
  for (unsigned i = 0; i < n; ++i) {
    const uint64_t at = kZeroPageAddress + 0x2D0 + i * 20;
    out.push_back({ram.u64(at), ram.u64(at + 8), ram.u32(at + 16)});
  }
  return out;
}

/// Walk the 4-level tables at `cr3` for `va` (2 MiB pages only); nullopt if
/// not present.
std::optional<uint64_t> translate(const TestRam& ram, uint64_t cr3, uint64_t va) {
  const uint64_t addr_mask = 0x000FFFFFFFFFF000;
  const uint64_t pml4e = ram.u64((cr3 & addr_mask) + ((va >> 39) & 511) * 8);
  if ((pml4e & 1) == 0) return std::nullopt;
  const uint64_t pdpte = ram.u64((pml4e & addr_mask) + ((va >> 30) & 511) * 8);
  if ((pdpte & 1) == 0 || (pdpte & 0x80) != 0) return std::nullopt;
  const uint64_t pde = ram.u64((pdpte & addr_mask) + ((va >> 21) & 511) * 8);
  if ((pde & 1) == 0 || (pde & 0x80) == 0 || (pde & 2) == 0) return std::nullopt;
  return (pde & 0x000FFFFFFFE00000) | (va & 0x1FFFFF);
}

/// The names in a (possibly concatenated, zero-padded) newc initramfs,
/// following init/initramfs.c: zeros between archives are skipped and an
/// archive may start only at a 4-aligned offset. Throws on what Linux would
/// reject ("broken padding" / "junk").
std::vector<std::string> initramfs_names(const std::vector<uint8_t>& b) {
  std::vector<std::string> names;
  size_t pos = 0;
  auto hex = [&](size_t at) { return static_cast<uint32_t>(std::stoul(std::string(b.begin() + at, b.begin() + at + 8), nullptr, 16)); };
  while (pos < b.size()) {
    if (b[pos] == 0) {
      ++pos;
      continue;
    }
    if (b[pos] != '0' || pos % 4 != 0) throw std::runtime_error("junk or broken padding at " + std::to_string(pos));
    for (;;) {
      if (std::memcmp(&b[pos], "070701", 6) != 0) throw std::runtime_error("no cpio magic");
      const uint32_t filesize = hex(pos + 6 + 6 * 8);
      const uint32_t namesize = hex(pos + 6 + 11 * 8);
      std::string name(reinterpret_cast<const char*>(&b[pos + 110]), namesize - 1);
      pos = (pos + 110 + namesize + 3) & ~size_t{3};
      pos = (pos + filesize + 3) & ~size_t{3};
      if (name == "TRAILER!!!") break;
      names.push_back(name);
    }
  }
  return names;
}

// ---------------------------------------------------------- parse_bzimage

TEST(BootBzImageTest, ParsesDebian686Kernel) {
  LOAD_GUEST_KERNEL(file, "i386/vmlinuz");
  auto img = parse_bzimage(file, "i386/vmlinuz");
  ASSERT_TRUE(img.has_value()) << img.error().message;
  EXPECT_EQ(img->protocol_version, 0x020F);
  EXPECT_EQ(img->protocol_string(), "2.15");
  EXPECT_GE(img->setup_sects, 4u);
  EXPECT_EQ(img->kernel_offset, (img->setup_sects + 1) * 512u);
  EXPECT_EQ(img->kernel_size, file.size() - img->kernel_offset);
  EXPECT_EQ(img->header_end, 0x26Cu);
  EXPECT_FALSE(img->has_64bit_entry());
  EXPECT_EQ(img->xloadflags & kXlfKernel64, 0);
  EXPECT_TRUE(img->loadflags & kLoadedHigh);
  EXPECT_TRUE(img->relocatable_kernel);
  EXPECT_EQ(img->kernel_alignment, 0x1000000u);  // CONFIG_PHYSICAL_ALIGN
  EXPECT_EQ(img->pref_address, 0x1000000u);      // CONFIG_PHYSICAL_START
  EXPECT_EQ(img->cmdline_size, 2047u);
  EXPECT_EQ(img->initrd_addr_max, 0x7FFFFFFFu);
  // init_size: the decompressed kernel with its .bss/.brk, more than the
  // compressed file and well under what a small VM has.
  EXPECT_GT(img->init_size, img->kernel_size);
  EXPECT_GT(img->init_size, 8 * kMiB);
  EXPECT_LT(img->init_size, 64 * kMiB);
  EXPECT_EQ(img->payload_format, PayloadFormat::kXz);
  EXPECT_LT(uint64_t{img->payload_offset} + img->payload_length, img->kernel_size + 1);
  EXPECT_EQ(img->kernel_version.rfind("6.1.0-", 0), 0u) << img->kernel_version;
  EXPECT_NE(img->kernel_version.find("686"), std::string::npos) << img->kernel_version;
}

TEST(BootBzImageTest, ParsesDebianAmd64Kernel) {
  LOAD_GUEST_KERNEL(file, "x86_64/vmlinuz");
  auto img = parse_bzimage(file, "x86_64/vmlinuz");
  ASSERT_TRUE(img.has_value()) << img.error().message;
  EXPECT_EQ(img->protocol_version, 0x020F);
  EXPECT_GE(img->setup_sects, 4u);
  EXPECT_TRUE(img->has_64bit_entry());
  EXPECT_TRUE(img->xloadflags & kXlfCanBeLoadedAbove4G);
  EXPECT_TRUE(img->relocatable_kernel);
  EXPECT_EQ(img->kernel_alignment, 0x200000u);
  EXPECT_EQ(img->pref_address, 0x1000000u);
  EXPECT_GT(img->init_size, img->kernel_size);
  EXPECT_GT(img->init_size, 16 * kMiB);
  EXPECT_LT(img->init_size, 256 * kMiB);
  EXPECT_EQ(img->payload_format, PayloadFormat::kXz);
  EXPECT_NE(img->kernel_version.find("amd64"), std::string::npos) << img->kernel_version;
}

TEST(BootBzImageTest, ParsesSyntheticHeaderFields) {
  FakeKernel k;
  k.xloadflags = kXlfKernel64 | kXlfCanBeLoadedAbove4G;
  k.init_size = 0x123000;
  k.initrd_addr_max = 0x37FFFFFF;
  const auto file = make_bzimage(k);
  const BzImage img = parse_ok(file);
  EXPECT_EQ(img.setup_sects, 4u);
  EXPECT_EQ(img.kernel_offset, 0xA00u);
  EXPECT_EQ(img.kernel_size, file.size() - 0xA00);
  EXPECT_EQ(img.init_size, 0x123000u);
  EXPECT_EQ(img.initrd_addr_max, 0x37FFFFFFu);
  EXPECT_TRUE(img.has_64bit_entry());
  EXPECT_EQ(img.payload_offset, 0x200u);
  EXPECT_EQ(img.payload_length, 16u);
  EXPECT_EQ(img.payload_format, PayloadFormat::kGzip);
  EXPECT_EQ(img.kernel_version, "9.9.9-fake (test@example) #1");
}

TEST(BootBzImageTest, SetupSectsZeroMeansFour) {
  auto file = make_bzimage({});
  file[hdr::kSetupSects] = 0;
  EXPECT_EQ(parse_ok(file).setup_sects, 4u);
  EXPECT_EQ(parse_ok(file).kernel_offset, 0xA00u);
}

TEST(BootBzImageTest, RejectsBrokenImagesWithExactErrors) {
  const auto good = make_bzimage({});
  {
    std::vector<uint8_t> f(good.begin(), good.begin() + 600);
    EXPECT_EQ(parse_error(f),
              "vmlinuz: not a bzImage: the file is 600 bytes, shorter than the 1024-byte boot sector and setup "
              "header");
  }
  {
    auto f = good;
    put16(f, hdr::kBootFlag, 0x1234);
    EXPECT_EQ(parse_error(f), "vmlinuz: not a bzImage: no boot_flag 0xAA55 at offset 0x1fe (found 0x1234)");
  }
  {
    auto f = good;
    f[0x202] = 'X';
    EXPECT_EQ(parse_error(f), "vmlinuz: not a bzImage: no \"HdrS\" signature at offset 0x202");
  }
  {
    auto f = good;
    put16(f, hdr::kVersion, 0x0204);
    EXPECT_EQ(parse_error(f), "vmlinuz: boot protocol 2.04 is too old: need 2.06 or later (for cmdline_size)");
  }
  {
    auto f = good;
    f[hdr::kLoadflags] = 0;
    EXPECT_EQ(parse_error(f),
              "vmlinuz: not a bzImage: loadflags bit LOADED_HIGH is clear (a zImage, which loads below 1 MiB, "
              "is not supported)");
  }
  {
    auto f = good;
    f[0x201] = 0x90;
    EXPECT_EQ(parse_error(f),
              "vmlinuz: setup header length byte at 0x201 is 0x90: the header would end at 0x292, outside "
              "0x23c..0x281 (protocol 2.15 needs the fields up to cmdline_size)");
  }
  {
    auto f = good;
    f[hdr::kSetupSects] = 200;
    EXPECT_EQ(parse_error(f),
              fmt::format("vmlinuz: truncated: setup_sects 200 puts the protected-mode kernel at offset 0x19200, "
                          "but the file is only 0x{:x} bytes",
                          f.size()));
  }
  {
    std::vector<uint8_t> f(good.begin(), good.end() - 0x80);
    EXPECT_EQ(parse_error(f),
              fmt::format("vmlinuz: truncated: syssize says the protected-mode kernel is 0x{:x} bytes, but only "
                          "0x{:x} follow the setup code",
                          good.size() - 0xA00, f.size() - 0xA00));
  }
  {
    auto f = good;
    put32(f, hdr::kSyssize, 0);  // an image without syssize: the payload check still catches truncation
    put32(f, hdr::kPayloadLength, 0x10000);
    EXPECT_EQ(parse_error(f),
              fmt::format("vmlinuz: truncated: the payload (offset 0x200, length 0x10000 in the protected-mode "
                          "kernel) runs past its end (0x{:x} bytes)",
                          f.size() - 0xA00));
  }
  {
    auto f = good;
    put32(f, hdr::kKernelAlignment, 0x300000);
    EXPECT_EQ(parse_error(f),
              "vmlinuz: relocatable kernel with kernel_alignment 0x300000, which is not a power of two");
  }
}

TEST(BootBzImageTest, RejectsTruncatedAndCorruptedDebianImage) {
  LOAD_GUEST_KERNEL(file, "i386/vmlinuz");
  const BzImage img = parse_ok(file);
  std::vector<uint8_t> cut(file.begin(), file.begin() + static_cast<ptrdiff_t>(kMiB));
  EXPECT_EQ(parse_error(cut),
            fmt::format("vmlinuz: truncated: syssize says the protected-mode kernel is 0x{:x} bytes, but only "
                        "0x{:x} follow the setup code",
                        img.kernel_size, kMiB - img.kernel_offset));
  auto bad = file;
  bad[0x203] = 0;
  EXPECT_EQ(parse_error(bad), "vmlinuz: not a bzImage: no \"HdrS\" signature at offset 0x202");
  bad = file;
  put16(bad, hdr::kVersion, 0x0205);
  EXPECT_EQ(parse_error(bad), "vmlinuz: boot protocol 2.05 is too old: need 2.06 or later (for cmdline_size)");
}

// ------------------------------------------------------------- load_linux

TEST(BootLinuxTest, ZeroPageForSyntheticKernel) {
  const auto file = make_bzimage({});
  const BzImage img = parse_ok(file);
  TestRam ram(128 * kMiB);
  const std::string cmdline = "console=ttyS0 quiet";
  std::vector<uint8_t> initrd(1001);
  for (size_t i = 0; i < initrd.size(); ++i) initrd[i] = static_cast<uint8_t>(i * 13 + 5);
  const std::vector<uint8_t> extra = {'0', '7', '0', '7', '0', '1', 'x', 'y', 'z'};
  LinuxBootOptions opt;
  opt.command_line = cmdline;
  opt.initrd = initrd;
  opt.extra_initrd = extra;
  auto info = load_linux(ram.mem(), img, file, opt);
  ASSERT_TRUE(info.has_value()) << info.error().message;

  const uint64_t zp = kZeroPageAddress;
  EXPECT_EQ(info->zero_page, zp);
  // Setup header copied: 0x1F1 .. 0x26C, except the fields the loader writes.
  for (uint32_t off = 0x1F1; off < 0x26C; ++off) {
    const bool written = off == hdr::kTypeOfLoader || off == hdr::kLoadflags ||
                         (off >= hdr::kRamdiskImage && off < hdr::kRamdiskSize + 4) ||
                         (off >= hdr::kCmdLinePtr && off < hdr::kCmdLinePtr + 4);
    if (!written) {
      EXPECT_EQ(ram.u8(zp + off), file[off]) << "setup header byte 0x" << std::hex << off;
    }
  }
  // Nothing outside the header came from the file: boot sector bytes, the
  // sentinel and the setup code after 0x26C stay zero.
  EXPECT_EQ(file[0x1EF], 0xFF);
  EXPECT_EQ(ram.u8(zp + 0x1EF), 0);
  for (uint32_t off = 0x10; off < 0x1E0; ++off) EXPECT_EQ(ram.u8(zp + off), 0) << std::hex << off;
  for (uint32_t off = 0x26C; off < 0x2D0; ++off) EXPECT_EQ(ram.u8(zp + off), 0) << std::hex << off;

  EXPECT_EQ(ram.u8(zp + hdr::kTypeOfLoader), 0xFF);
  EXPECT_EQ(ram.u8(zp + hdr::kLoadflags), kLoadedHigh);
  EXPECT_EQ(ram.u16(zp + hdr::kHeapEndPtr), 0);
  EXPECT_EQ(ram.u32(zp + hdr::kCode32Start), 0x100000u);
  EXPECT_EQ(ram.u32(zp + hdr::kCmdLinePtr), kCmdlineAddress);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(ram.at(kCmdlineAddress))), cmdline);
  EXPECT_EQ(ram.u8(kCmdlineAddress + cmdline.size()), 0);
  EXPECT_EQ(info->command_line.begin, kCmdlineAddress);
  EXPECT_EQ(info->command_line.size(), cmdline.size() + 1);

  // ext_mem_k / alt_mem_k: KiB above 1 MiB (ext capped at 63 MiB).
  EXPECT_EQ(ram.u16(zp + 0x002), 0xFC00);
  EXPECT_EQ(ram.u32(zp + 0x1E0), 127u * 1024);

  // The initrd: 1001 bytes, 3 zero bytes to the 4-byte boundary, the archive.
  const uint64_t ramdisk = ram.u32(zp + hdr::kRamdiskImage);
  const uint32_t ramdisk_size = ram.u32(zp + hdr::kRamdiskSize);
  EXPECT_EQ(ramdisk_size, 1004u + extra.size());
  EXPECT_EQ(ramdisk % 4096, 0u);
  EXPECT_EQ(ramdisk, 128 * kMiB - 4096);  // the highest page that fits
  EXPECT_EQ(info->initrd.begin, ramdisk);
  EXPECT_EQ(info->initrd.end, ramdisk + ramdisk_size);
  EXPECT_EQ(ram.bytes(ramdisk, initrd.size()), initrd);
  EXPECT_EQ(ram.bytes(ramdisk + 1001, 3), std::vector<uint8_t>(3, 0));
  EXPECT_EQ(info->extra_initrd_address, ramdisk + 1004);
  EXPECT_EQ(ram.bytes(ramdisk + 1004, extra.size()), extra);

  // The protected-mode kernel at 1 MiB.
  EXPECT_EQ(info->kernel.begin, 0x100000u);
  EXPECT_EQ(info->kernel.size(), img.kernel_size);
  EXPECT_EQ(ram.bytes(0x100000, img.kernel_size),
            std::vector<uint8_t>(file.begin() + 0xA00, file.end()));
  // Reserved until the kernel has read E820: decompression goes to
  // pref_address (16 MiB), never lower, and needs init_size from there.
  EXPECT_EQ(info->kernel_reserved.begin, 0x100000u);
  EXPECT_EQ(info->kernel_reserved.end, 0x1000000u + 0x400000u);
  EXPECT_FALSE(info->decompressed_on_host);
  EXPECT_TRUE(info->notes.empty());
}

TEST(BootLinuxTest, E820ForSmallAndLargeRam) {
  const auto file = make_bzimage({});
  const BzImage img = parse_ok(file);
  {
    TestRam ram(128 * kMiB);
    auto info = load_linux(ram.mem(), img, file, {});
    ASSERT_TRUE(info.has_value()) << info.error().message;
    const std::vector<E820Entry> expect = {
        {0, 0x9FC00, kE820Ram}, {0x9FC00, 0x60400, kE820Reserved}, {0x100000, 127 * kMiB, kE820Ram}};
    EXPECT_EQ(e820_from_zero_page(ram), expect);
    EXPECT_EQ(info->e820, expect);
  }
  {
    TestRam ram(kGiB);
    auto info = load_linux(ram.mem(), img, file, {});
    ASSERT_TRUE(info.has_value()) << info.error().message;
    const std::vector<E820Entry> expect = {
        {0, 0x9FC00, kE820Ram}, {0x9FC00, 0x60400, kE820Reserved}, {0x100000, 0x3FF00000, kE820Ram}};
    EXPECT_EQ(e820_from_zero_page(ram), expect);
    EXPECT_EQ(ram.u32(kZeroPageAddress + 0x1E0), (kGiB - kMiB) / 1024);
    // No initrd: ramdisk fields stay 0.
    EXPECT_EQ(ram.u32(kZeroPageAddress + hdr::kRamdiskImage), 0u);
    EXPECT_EQ(ram.u32(kZeroPageAddress + hdr::kRamdiskSize), 0u);
    EXPECT_TRUE(info->initrd.empty());
  }
}

TEST(BootLinuxTest, InitrdStaysBelowInitrdAddrMax) {
  FakeKernel k;
  k.initrd_addr_max = 0x37FFFFFF;
  const auto file = make_bzimage(k);
  TestRam ram(kGiB);
  std::vector<uint8_t> initrd(3 * 4096 + 5, 0x42);
  LinuxBootOptions opt;
  opt.initrd = initrd;
  auto info = load_linux(ram.mem(), parse_ok(file), file, opt);
  ASSERT_TRUE(info.has_value()) << info.error().message;
  // Highest page-aligned start with the last byte at or below 0x37FFFFFF.
  EXPECT_EQ(info->initrd.begin, 0x38000000u - 4 * 4096);
  EXPECT_EQ(info->initrd.size(), initrd.size());  // no archive appended: no padding
  EXPECT_EQ(ram.bytes(info->initrd.begin, initrd.size()), initrd);
}

TEST(BootLinuxTest, AppendedArchiveIsWhatLinuxUnpacks) {
  const auto file = make_bzimage({});
  // A first archive whose length is not a multiple of 4 (cut its padding).
  CpioEntry bin;
  bin.name = "bin";
  bin.kind = CpioEntry::Kind::kDirectory;
  bin.mode = 0755;
  CpioEntry sh;
  sh.name = "bin/sh";
  sh.data = "#!x";
  auto first = cpio_newc_archive({bin, sh});
  ASSERT_TRUE(first.has_value());
  first->resize(first->size() - 2);  // TRAILER!!! name padding trimmed: 2 bytes short of alignment
  ASSERT_NE(first->size() % 4, 0u);
  auto node = node_config_archive("hostname=alice\n");
  ASSERT_TRUE(node.has_value());
  TestRam ram(64 * kMiB);
  LinuxBootOptions opt;
  opt.initrd = *first;
  opt.extra_initrd = *node;
  auto info = load_linux(ram.mem(), parse_ok(file), file, opt);
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_EQ(info->extra_initrd_address % 4, 0u);
  const auto ramdisk = ram.bytes(info->initrd.begin, info->initrd.size());
  EXPECT_EQ(initramfs_names(ramdisk),
            (std::vector<std::string>{"bin", "bin/sh", "etc", "etc/twoostwo", "etc/twoostwo/node.conf"}));
}

TEST(BootLinuxTest, ProtectedModeEntryState) {
  const auto file = make_bzimage({});
  TestRam ram(64 * kMiB);
  auto info = load_linux(ram.mem(), parse_ok(file), file, {});
  ASSERT_TRUE(info.has_value()) << info.error().message;
  const CpuState& s = info->entry;
  EXPECT_EQ(info->entry_kind, EntryKind::kProtected32);
  EXPECT_EQ(cpu_mode(s), CpuMode::kProtected32);
  EXPECT_EQ(s.rip, 0x100000u);
  EXPECT_EQ(s.gpr[kRsi], 0x7000u);
  EXPECT_EQ(s.gpr[kRbx], 0u);
  EXPECT_EQ(s.gpr[kRbp], 0u);
  EXPECT_EQ(s.gpr[kRdi], 0u);
  EXPECT_EQ(s.rflags, 0x2u);
  EXPECT_EQ(s.cr0, 0x11u);
  EXPECT_EQ(s.cr3, 0u);
  EXPECT_EQ(s.cr4, 0u);
  EXPECT_EQ(s.efer, 0u);
  EXPECT_EQ(s.cs.selector, 0x10);
  EXPECT_EQ(s.cs.base, 0u);
  EXPECT_EQ(s.cs.limit, 0xFFFFFFFFu);
  EXPECT_EQ(s.cs.type, 0xB);
  EXPECT_TRUE(s.cs.s && s.cs.present && s.cs.db && s.cs.g);
  EXPECT_FALSE(s.cs.l);
  EXPECT_EQ(s.cs.dpl, 0);
  for (const Segment* d : {&s.ds, &s.es, &s.ss, &s.fs, &s.gs}) {
    EXPECT_EQ(d->selector, 0x18);
    EXPECT_EQ(d->base, 0u);
    EXPECT_EQ(d->limit, 0xFFFFFFFFu);
    EXPECT_EQ(d->type, 0x3);
    EXPECT_TRUE(d->s && d->present && d->db && d->g);
  }
  EXPECT_EQ(s.tr.selector, 0x20);
  EXPECT_EQ(s.tr.type, 0xB);
  EXPECT_FALSE(s.tr.s);
  EXPECT_TRUE(s.tr.present);
  EXPECT_EQ(s.tr.limit, 0x67u);
  EXPECT_EQ(s.gdt.base, 0x500u);
  EXPECT_EQ(s.gdt.limit, 0x2F);
  // The GDT in memory matches the segment caches.
  EXPECT_EQ(ram.u64(0x500), 0u);
  EXPECT_EQ(ram.u64(0x508), 0u);
  EXPECT_EQ(ram.u64(0x510), 0x00CF9B000000FFFFu);  // flat 32-bit code, execute/read, accessed
  EXPECT_EQ(ram.u64(0x518), 0x00CF93000000FFFFu);  // flat data, read/write, accessed
  EXPECT_EQ(ram.u64(0x520), 0x00008B0000000067u);  // busy TSS
  // No page tables for the 32-bit entry.
  EXPECT_EQ(ram.u64(kPml4Address), 0u);
}

TEST(BootLinuxTest, I386KernelEntersProtectedModeAtOneMiB) {
  LOAD_GUEST_KERNEL(file, "i386/vmlinuz");
  TestRam ram(128 * kMiB);
  LinuxBootOptions opt;
  opt.command_line = "console=ttyS0";
  auto info = load_linux(ram.mem(), parse_ok(file), file, opt);
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_EQ(info->entry_kind, EntryKind::kProtected32);
  EXPECT_EQ(cpu_mode(info->entry), CpuMode::kProtected32);
  EXPECT_EQ(info->entry.rip, 0x100000u);
  EXPECT_EQ(info->entry.gpr[kRsi], 0x7000u);
  const auto pm = file.begin() + static_cast<ptrdiff_t>(parse_ok(file).kernel_offset);
  EXPECT_EQ(ram.bytes(0x100000, 4096), std::vector<uint8_t>(pm, pm + 4096));
  // Header bytes copied up to 0x26C (except loader-written fields); sentinel 0.
  for (uint32_t off : {0x1F1u, 0x1F4u, 0x1FEu, 0x1FFu, 0x202u, 0x206u, 0x230u, 0x238u, 0x258u, 0x260u, 0x268u}) {
    EXPECT_EQ(ram.u8(kZeroPageAddress + off), file[off]) << std::hex << off;
  }
  EXPECT_NE(file[0x1EF], 0);
  EXPECT_EQ(ram.u8(kZeroPageAddress + 0x1EF), 0);
  EXPECT_EQ(ram.u8(kZeroPageAddress + hdr::kTypeOfLoader), 0xFF);
}

TEST(BootLinuxTest, Amd64KernelEntersLongModeWithIdentityMap) {
  LOAD_GUEST_KERNEL(file, "x86_64/vmlinuz");
  const BzImage img = parse_ok(file);
  TestRam ram(kGiB);
  auto info = load_linux(ram.mem(), img, file, {});
  ASSERT_TRUE(info.has_value()) << info.error().message;
  const CpuState& s = info->entry;
  EXPECT_EQ(info->entry_kind, EntryKind::kLong64);
  EXPECT_EQ(cpu_mode(s), CpuMode::kLong64);
  EXPECT_EQ(s.rip, 0x100200u);  // 64-bit entry: load address + 0x200
  EXPECT_EQ(s.gpr[kRsi], 0x7000u);
  EXPECT_TRUE(s.cs.l);
  EXPECT_FALSE(s.cs.db);
  EXPECT_EQ(s.cs.selector, 0x10);
  EXPECT_EQ(s.cs.type, 0xB);
  EXPECT_EQ(s.ss.selector, 0x18);
  EXPECT_EQ(s.cr0, 0x80000011u);
  EXPECT_EQ(s.cr3, 0x9000u);
  EXPECT_EQ(s.cr4, 0x20u);
  EXPECT_EQ(s.efer, 0x500u);
  EXPECT_EQ(s.rflags, 0x2u);
  EXPECT_EQ(ram.u64(0x510), 0x00AF9B000000FFFFu);  // 64-bit code segment (L=1, D=0)
  // Identity mapping of everything the kernel touches before its own tables:
  // the GDT, zero page, command line, the kernel up to init_size.
  for (uint64_t va : {uint64_t{0}, uint64_t{0x500}, uint64_t{0x7000}, uint64_t{0x20000}, uint64_t{0x100200},
                      uint64_t{0x1000000} + img.init_size - 1, kGiB - 1, kGiB, 3 * kGiB + 0x1234, 4 * kGiB - 1}) {
    EXPECT_EQ(translate(ram, s.cr3, va), std::optional<uint64_t>(va)) << std::hex << va;
  }
  EXPECT_EQ(translate(ram, s.cr3, 4 * kGiB), std::nullopt);
}

TEST(BootLinuxTest, PageTablesIdentityMapEveryTwoMiBPage) {
  FakeKernel k;
  k.xloadflags = kXlfKernel64;
  const auto file = make_bzimage(k);
  TestRam ram(64 * kMiB);
  auto info = load_linux(ram.mem(), parse_ok(file), file, {});
  ASSERT_TRUE(info.has_value()) << info.error().message;
  ASSERT_EQ(info->entry_kind, EntryKind::kLong64);
  EXPECT_EQ(ram.u64(kPml4Address), kPdptAddress | 3);
  for (uint64_t page = 0; page < kGiB; page += 2 * kMiB) {
    ASSERT_EQ(translate(ram, kPml4Address, page + 0x1FFFFF), std::optional<uint64_t>(page + 0x1FFFFF));
  }
}

TEST(BootLinuxTest, EntryKindChoices) {
  FakeKernel k64;
  k64.xloadflags = kXlfKernel64;
  const auto f64 = make_bzimage(k64);
  const auto f32 = make_bzimage({});
  TestRam ram(64 * kMiB);
  LinuxBootOptions opt;
  opt.entry = EntryKind::kProtected32;  // a 64-bit kernel's startup_32 at the load address
  auto a = load_linux(ram.mem(), parse_ok(f64), f64, opt);
  ASSERT_TRUE(a.has_value()) << a.error().message;
  EXPECT_EQ(a->entry_kind, EntryKind::kProtected32);
  EXPECT_EQ(a->entry.rip, 0x100000u);
  EXPECT_EQ(cpu_mode(a->entry), CpuMode::kProtected32);
  opt.entry = EntryKind::kLong64;
  auto b = load_linux(ram.mem(), parse_ok(f32), f32, opt);
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error().message,
            "vmlinuz: the 64-bit entry was asked for, but the kernel has none (xloadflags bit XLF_KERNEL_64 is "
            "clear: not an x86_64 kernel)");
}

TEST(BootLinuxTest, CommandLineLimits) {
  const auto file = make_bzimage({});
  const BzImage img = parse_ok(file);
  TestRam ram(64 * kMiB);
  LinuxBootOptions opt;
  opt.command_line = std::string(2047, 'x');
  EXPECT_TRUE(load_linux(ram.mem(), img, file, opt).has_value());
  EXPECT_EQ(ram.u8(kCmdlineAddress + 2046), 'x');
  EXPECT_EQ(ram.u8(kCmdlineAddress + 2047), 0);
  opt.command_line = std::string(2048, 'x');
  auto r = load_linux(ram.mem(), img, file, opt);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message,
            "vmlinuz: the kernel command line is 2048 bytes; this kernel accepts at most 2047 (cmdline_size)");
  opt.command_line = std::string("a\0b", 3);
  r = load_linux(ram.mem(), img, file, opt);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "vmlinuz: the kernel command line contains a NUL byte");
}

TEST(BootLinuxTest, CommandLineTooLongForDebianKernel) {
  LOAD_GUEST_KERNEL(file, "i386/vmlinuz");
  TestRam ram(128 * kMiB);
  LinuxBootOptions opt;
  opt.command_line = std::string(4000, 'q');
  auto r = load_linux(ram.mem(), parse_ok(file, "i386/vmlinuz"), file, opt);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message,
            "i386/vmlinuz: the kernel command line is 4000 bytes; this kernel accepts at most 2047 (cmdline_size)");
}

TEST(BootLinuxTest, RamTooSmallForKernelOrInitrd) {
  LOAD_GUEST_KERNEL(file, "i386/vmlinuz");
  const BzImage img = parse_ok(file, "i386/vmlinuz");
  const uint64_t need = 0x1000000 + img.init_size;  // runtime start 16 MiB + init_size
  {
    TestRam ram(32 * kMiB);
    auto r = load_linux(ram.mem(), img, file, {});
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().message,
              fmt::format("i386/vmlinuz: guest RAM of 32 MiB is too small for the kernel: it needs [0x100000, "
                          "0x{:x}) ({:.2f} MiB)",
                          need, static_cast<double>(need) / kMiB));
  }
  {
    TestRam ram(40 * kMiB);
    std::vector<uint8_t> initrd(16 * kMiB, 1);
    LinuxBootOptions opt;
    opt.initrd = initrd;
    auto r = load_linux(ram.mem(), img, file, opt);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().message,
              fmt::format("i386/vmlinuz: guest RAM of 40 MiB is too small for the kernel and the initrd: 16777216 "
                          "bytes of initrd do not fit below 0x2800000 (min(initrd_addr_max + 1, RAM size)) outside "
                          "the kernel's [0x100000, 0x{:x})",
                          need));
    // The same initrd fits with more RAM, above the kernel.
    TestRam big(64 * kMiB);
    auto ok = load_linux(big.mem(), img, file, opt);
    ASSERT_TRUE(ok.has_value()) << ok.error().message;
    EXPECT_GE(ok->initrd.begin, need);
    EXPECT_EQ(ok->initrd.end, 64 * kMiB);
  }
}

TEST(BootLinuxTest, RamSizeLimits) {
  const auto file = make_bzimage({});
  const BzImage img = parse_ok(file);
  TestRam huge(4 * kGiB);  // address space only: refused before any write
  auto r = load_linux(huge.mem(), img, file, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message,
            "vmlinuz: guest RAM of 4096 MiB is more than the 3072 MiB the boot loader supports (RAM above "
            "0xc0000000 would need an E820 entry above 4 GiB)");
  TestRam tiny(kMiB);
  r = load_linux(tiny.mem(), img, file, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "vmlinuz: guest RAM of 1 MiB is too small: Linux needs RAM above 1 MiB");
  auto other = file;
  other.push_back(0);
  r = load_linux(tiny.mem(), img, other, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message,
            fmt::format("vmlinuz: the kernel bytes ({}) are not the file parse_bzimage read ({} bytes)", other.size(),
                        file.size()));
}

// ------------------------------------------------------ host decompression

TEST(BootVmlinuxTest, SyntheticXzKernelIsLoadedAtPaddrWithBssZeroed) {
  // i386-style: linked at 0xC1000000, loaded at 16 MiB; e_entry virtual to
  // exercise the conversion.
  const auto elf = make_elf(32, 0xC1000010,
                            {{0x1000000, 0xC1000000, 0x3000, 0x3000, 0xAB}, {0x1004000, 0xC1004000, 0x800, 0x5000, 0xCD}});
  FakeKernel k;
  k.payload = xz_compress_like_kernel(elf);
  const auto file = make_bzimage(k);
  const BzImage img = parse_ok(file);
  ASSERT_EQ(img.payload_format, PayloadFormat::kXz);
  TestRam ram(64 * kMiB);
  std::fill_n(ram.at(0x1000000), 0x10000, uint8_t{0xEE});  // BSS must be cleared
  LinuxBootOptions opt;
  opt.decompress_on_host = true;
  auto info = load_linux(ram.mem(), img, file, opt);
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_TRUE(info->decompressed_on_host);
  EXPECT_EQ(info->entry.rip, 0x1000010u);
  EXPECT_EQ(cpu_mode(info->entry), CpuMode::kProtected32);
  EXPECT_EQ(info->entry.gpr[kRsi], 0x7000u);
  EXPECT_EQ(info->kernel.begin, 0x1000000u);
  EXPECT_EQ(info->kernel.end, 0x1009000u);
  EXPECT_EQ(ram.bytes(0x1000000, 0x3000), std::vector<uint8_t>(0x3000, 0xAB));
  EXPECT_EQ(ram.bytes(0x1003000, 0x1000), std::vector<uint8_t>(0x1000, 0xEE));  // gap: untouched
  EXPECT_EQ(ram.bytes(0x1004000, 0x800), std::vector<uint8_t>(0x800, 0xCD));
  EXPECT_EQ(ram.bytes(0x1004800, 0x4800), std::vector<uint8_t>(0x4800, 0));  // BSS
  EXPECT_EQ(ram.u8(0x100000), 0);  // the compressed kernel was not loaded
  ASSERT_EQ(info->notes.size(), 1u);
  EXPECT_EQ(info->notes[0].rfind("host decompression: XZ payload of", 0), 0u) << info->notes[0];
  EXPECT_EQ(ram.u32(kZeroPageAddress + hdr::kCmdLinePtr), kCmdlineAddress);
}

TEST(BootVmlinuxTest, SyntheticElf64EntersLongModeAtEntry) {
  const auto elf = make_elf(64, 0x1000000, {{0x1000000, 0xFFFFFFFF81000000, 0x2000, 0x2000, 0x11}});
  FakeKernel k;
  k.xloadflags = kXlfKernel64;
  k.payload = xz_compress_like_kernel(elf);
  const auto file = make_bzimage(k);
  TestRam ram(64 * kMiB);
  LinuxBootOptions opt;
  opt.decompress_on_host = true;
  auto info = load_linux(ram.mem(), parse_ok(file), file, opt);
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_TRUE(info->decompressed_on_host);
  EXPECT_EQ(info->entry_kind, EntryKind::kLong64);
  EXPECT_EQ(cpu_mode(info->entry), CpuMode::kLong64);
  EXPECT_EQ(info->entry.rip, 0x1000000u);
  EXPECT_EQ(translate(ram, info->entry.cr3, 0x1000000), std::optional<uint64_t>(0x1000000));
  // ...but a 32-bit entry cannot run startup_64: fall back, with a note.
  opt.entry = EntryKind::kProtected32;
  TestRam ram2(64 * kMiB);
  auto fb = load_linux(ram2.mem(), parse_ok(file), file, opt);
  ASSERT_TRUE(fb.has_value()) << fb.error().message;
  EXPECT_FALSE(fb->decompressed_on_host);
  EXPECT_EQ(fb->entry.rip, 0x100000u);
  ASSERT_EQ(fb->notes.size(), 1u);
  EXPECT_EQ(fb->notes[0],
            "host decompression not used: the vmlinux is ELF64, whose entry needs 64-bit mode, but the protected32 "
            "entry was chosen; booting the compressed kernel");
}

TEST(BootVmlinuxTest, FallsBackToCompressedKernelWithANote) {
  TestRam ram(64 * kMiB);
  LinuxBootOptions opt;
  opt.decompress_on_host = true;
  {
    const auto file = make_bzimage({});  // gzip payload
    auto info = load_linux(ram.mem(), parse_ok(file), file, opt);
    ASSERT_TRUE(info.has_value()) << info.error().message;
    EXPECT_FALSE(info->decompressed_on_host);
    EXPECT_EQ(info->entry.rip, 0x100000u);
    ASSERT_EQ(info->notes.size(), 1u);
    EXPECT_EQ(info->notes[0],
              "host decompression skipped: the payload is gzip, not XZ; booting the compressed kernel");
  }
  {
    FakeKernel k;
    k.payload = xz_compress_like_kernel(make_elf(32, 0x1000000, {{0x1000000, 0xC1000000, 0x1000, 0x1000, 1}}));
    k.payload[k.payload.size() / 2] ^= 0xFF;  // corrupt the stream
    const auto file = make_bzimage(k);
    auto info = load_linux(ram.mem(), parse_ok(file), file, opt);
    ASSERT_TRUE(info.has_value()) << info.error().message;
    EXPECT_FALSE(info->decompressed_on_host);
    EXPECT_EQ(info->entry.rip, 0x100000u);
    ASSERT_EQ(info->notes.size(), 1u);
    EXPECT_EQ(info->notes[0].rfind("host decompression failed (vmlinuz: XZ payload: ", 0), 0u) << info->notes[0];
    EXPECT_NE(info->notes[0].find("; booting the compressed kernel"), std::string::npos);
  }
}

TEST(BootVmlinuxTest, ElfErrors) {
  auto elf = make_elf(32, 0x5000000, {{0x1000000, 0xC1000000, 0x100, 0x100, 1}});
  auto r = parse_vmlinux_elf(elf, "k");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "k: vmlinux entry point 0x5000000 lies in no PT_LOAD segment");
  elf = make_elf(32, 0x1000000, {{0x1000000, 0xC1000000, 0x100, 0x80, 1}});
  r = parse_vmlinux_elf(elf, "k");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message.rfind("k: vmlinux PT_LOAD #0 (offset 0x1000, filesz 0x100, memsz 0x80", 0), 0u)
      << r.error().message;
  elf[18] = 62;  // ELF32 claiming EM_X86_64
  r = parse_vmlinux_elf(elf, "k");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "k: vmlinux ELF32 has e_machine 62, expected 3 (EM_386)");
  r = parse_vmlinux_elf(std::vector<uint8_t>(100, 0), "k");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "k: the decompressed kernel is not an ELF file");
  auto x = xz_decompress(std::vector<uint8_t>(64, 0x33), "k");
  ASSERT_FALSE(x.has_value());
  EXPECT_EQ(x.error().message, "k: XZ payload: not an .xz stream (after 12 of 64 input bytes)");
}

TEST(BootVmlinuxTest, XzBufferGrowsPastAWrongSizeTrailerAndHonoursTheLimit) {
  std::vector<uint8_t> data(3 * kMiB);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>((i * i) >> 7);
  auto xz = xz_compress_like_kernel(data);
  put32(xz, xz.size() - 4, 16);  // a trailer that understates the size
  auto out = xz_decompress(xz, "k");
  ASSERT_TRUE(out.has_value()) << out.error().message;
  EXPECT_EQ(*out, data);
  auto limited = xz_decompress(xz, "k", kMiB);
  ASSERT_FALSE(limited.has_value());
  EXPECT_EQ(limited.error().message, "k: XZ payload decompresses to more than 1048576 bytes");
  xz.resize(xz.size() / 2);  // truncated stream
  auto cut = xz_decompress(xz, "k");
  ASSERT_FALSE(cut.has_value());
  EXPECT_EQ(cut.error().message.rfind("k: XZ payload: truncated stream (after ", 0), 0u) << cut.error().message;
}

TEST(BootVmlinuxTest, CacheStoresThenAnswersAndReplacesABadFile) {
  const auto elf = make_elf(32, 0x1000000, {{0x1000000, 0xC1000000, 0x2000, 0x4000, 0x66}});
  FakeKernel k;
  k.payload = xz_compress_like_kernel(elf);
  const auto file = make_bzimage(k);
  const BzImage img = parse_ok(file);
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("twoostwo-vmlinux-cache-{}", getpid());
  std::filesystem::remove_all(dir);
  VmlinuxCache cache{.dir = dir / "sub", .hit = false, .note = {}};
  const auto path = vmlinux_cache_path(cache.dir, file);
  EXPECT_EQ(path.parent_path(), cache.dir);
  EXPECT_EQ(path.filename().string().rfind("vmlinux-", 0), 0u);

  auto first = decompress_vmlinux(img, file, &cache);
  ASSERT_TRUE(first.has_value()) << first.error().message;
  EXPECT_FALSE(cache.hit);
  EXPECT_EQ(cache.note, "stored " + path.string());
  EXPECT_EQ(std::filesystem::file_size(path), elf.size());

  auto second = decompress_vmlinux(img, file, &cache);
  ASSERT_TRUE(second.has_value()) << second.error().message;
  EXPECT_TRUE(cache.hit);
  EXPECT_EQ(cache.note, "read " + path.string());
  EXPECT_EQ(second->bytes, first->bytes);
  EXPECT_EQ(second->entry_physical, 0x1000000u);

  std::ofstream(path, std::ios::binary | std::ios::trunc) << "garbage";
  auto third = decompress_vmlinux(img, file, &cache);
  ASSERT_TRUE(third.has_value()) << third.error().message;
  EXPECT_FALSE(cache.hit);
  EXPECT_EQ(cache.note, "ignored " + path.string() + " (" + path.string() +
                            ": the decompressed kernel is not an ELF file); stored " + path.string());
  EXPECT_EQ(std::filesystem::file_size(path), elf.size());

  // Through load_linux: the cache note is logged.
  TestRam ram(64 * kMiB);
  LinuxBootOptions opt;
  opt.decompress_on_host = true;
  opt.decompress_cache_dir = cache.dir.string();
  auto info = load_linux(ram.mem(), img, file, opt);
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_TRUE(info->decompressed_on_host);
  ASSERT_EQ(info->notes.size(), 2u);
  EXPECT_EQ(info->notes[0], "decompression cache: read " + path.string());
  std::filesystem::remove_all(dir);
}

TEST(BootVmlinuxTest, Debian686KernelDecompressesToElf32AtSixteenMiB) {
  LOAD_GUEST_KERNEL(file, "i386/vmlinuz");
  const BzImage img = parse_ok(file, "i386/vmlinuz");
  const auto t0 = std::chrono::steady_clock::now();
  auto v = decompress_vmlinux(img, file);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(v.has_value()) << v.error().message;
  std::cout << "[ measure  ] host XZ decompression of " << img.kernel_version.substr(0, 12) << ": " << ms
            << " ms (" << img.payload_length << " -> " << v->bytes.size() << " bytes)\n";
  RecordProperty("decompress_ms", static_cast<int>(ms));
  {
    const auto dir = std::filesystem::temp_directory_path() / fmt::format("twoostwo-vmlinux-cache-686-{}", getpid());
    VmlinuxCache cache{.dir = dir, .hit = false, .note = {}};
    ASSERT_TRUE(decompress_vmlinux(img, file, &cache).has_value());
    const auto h0 = std::chrono::steady_clock::now();
    auto hit = decompress_vmlinux(img, file, &cache);
    const auto hit_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - h0).count();
    ASSERT_TRUE(hit.has_value()) << hit.error().message;
    EXPECT_TRUE(cache.hit);
    EXPECT_EQ(hit->bytes, v->bytes);
    std::cout << "[ measure  ] the same from the decompression cache: " << hit_ms << " ms\n";
    std::filesystem::remove_all(dir);
  }
  EXPECT_EQ(v->elf_class, 32u);
  EXPECT_EQ(v->machine, 3);
  // The trailing 4 bytes of the payload hold the decompressed size.
  const auto* tail = file.data() + img.kernel_offset + img.payload_offset + img.payload_length - 4;
  EXPECT_EQ(v->bytes.size(), static_cast<size_t>(tail[0] | tail[1] << 8 | tail[2] << 16 | tail[3] << 24));
  // vmlinux.lds.S: ENTRY(phys_startup_32), LOAD_PHYSICAL_ADDR = 16 MiB.
  EXPECT_EQ(v->entry_field, img.pref_address);
  EXPECT_EQ(v->entry_physical, img.pref_address);
  EXPECT_EQ(v->load_begin, img.pref_address);
  ASSERT_GE(v->segments.size(), 2u);
  for (const ElfSegment& s : v->segments) {
    EXPECT_GE(s.paddr, img.pref_address);
    EXPECT_EQ(s.vaddr - s.paddr, 0xC0000000u);  // PAGE_OFFSET: p_vaddr is not where it loads
    EXPECT_LE(s.filesz, s.memsz);
  }
  // Everything the kernel owns fits in what init_size promised.
  EXPECT_LE(v->load_end - v->load_begin, img.init_size);
}

TEST(BootVmlinuxTest, Debian686KernelLoadsDecompressed) {
  LOAD_GUEST_KERNEL(file, "i386/vmlinuz");
  const BzImage img = parse_ok(file, "i386/vmlinuz");
  auto v = decompress_vmlinux(img, file);
  ASSERT_TRUE(v.has_value()) << v.error().message;
  TestRam ram(128 * kMiB);
  for (const ElfSegment& s : v->segments) std::fill_n(ram.at(s.paddr), s.memsz, uint8_t{0xA5});
  LinuxBootOptions opt;
  opt.decompress_on_host = true;
  opt.command_line = "console=ttyS0";
  std::vector<uint8_t> initrd(5 * kMiB + 7, 0x3C);
  opt.initrd = initrd;
  auto info = load_linux(ram.mem(), img, file, opt);
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_TRUE(info->decompressed_on_host);
  EXPECT_EQ(info->entry_kind, EntryKind::kProtected32);
  EXPECT_EQ(cpu_mode(info->entry), CpuMode::kProtected32);
  EXPECT_EQ(info->entry.rip, 0x1000000u);
  EXPECT_EQ(info->entry.gpr[kRsi], 0x7000u);
  EXPECT_EQ(info->entry.cr0 & 0x80000000u, 0u);  // paging off
  for (const ElfSegment& s : v->segments) {
    EXPECT_EQ(std::memcmp(ram.at(s.paddr), v->bytes.data() + s.offset, s.filesz), 0) << std::hex << s.paddr;
    const auto bss = ram.bytes(s.paddr + s.filesz, s.memsz - s.filesz);
    EXPECT_TRUE(std::all_of(bss.begin(), bss.end(), [](uint8_t b) { return b == 0; })) << std::hex << s.paddr;
  }
  // The kernel's first instruction (startup_32) is what the ELF's entry holds.
  const ElfSegment& text = v->segments.front();
  EXPECT_EQ(ram.bytes(info->entry.rip, 16),
            std::vector<uint8_t>(v->bytes.begin() + static_cast<ptrdiff_t>(text.offset),
                                 v->bytes.begin() + static_cast<ptrdiff_t>(text.offset) + 16));
  EXPECT_GE(info->initrd.begin, info->kernel_reserved.end);
  EXPECT_EQ(ram.u32(kZeroPageAddress + hdr::kRamdiskImage), info->initrd.begin);
  EXPECT_EQ(ram.u8(kZeroPageAddress + hdr::kLoadflags) & kKaslrFlag, 0);
  ASSERT_EQ(info->notes.size(), 1u);
  std::cout << "[ note     ] " << info->notes[0] << "\n";
}

TEST(BootVmlinuxTest, DebianAmd64KernelDecompressesToElf64) {
  LOAD_GUEST_KERNEL(file, "x86_64/vmlinuz");
  const BzImage img = parse_ok(file, "x86_64/vmlinuz");
  TestRam ram(256 * kMiB);
  LinuxBootOptions opt;
  opt.decompress_on_host = true;
  auto info = load_linux(ram.mem(), img, file, opt);
  ASSERT_TRUE(info.has_value()) << info.error().message;
  ASSERT_TRUE(info->decompressed_on_host) << (info->notes.empty() ? "" : info->notes[0]);
  std::cout << "[ note     ] " << info->notes[0] << "\n";
  EXPECT_EQ(info->entry_kind, EntryKind::kLong64);
  EXPECT_EQ(cpu_mode(info->entry), CpuMode::kLong64);
  EXPECT_EQ(info->entry.rip, 0x1000000u);  // phys_startup_64
  EXPECT_EQ(info->kernel.begin, 0x1000000u);
  EXPECT_EQ(translate(ram, info->entry.cr3, info->entry.rip), std::optional<uint64_t>(info->entry.rip));
  EXPECT_EQ(translate(ram, info->entry.cr3, info->kernel.end - 1), std::optional<uint64_t>(info->kernel.end - 1));
}

}  // namespace
}  // namespace twoostwo::vmcore::boot
