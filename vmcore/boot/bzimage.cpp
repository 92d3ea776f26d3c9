#include "vmcore/boot/bzimage.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "vmcore/boot/le_bytes.h"

namespace twoostwo::vmcore::boot {

std::string_view payload_format_name(PayloadFormat format) {
  switch (format) {
    case PayloadFormat::kNone: return "none";
    case PayloadFormat::kGzip: return "gzip";
    case PayloadFormat::kBzip2: return "bzip2";
    case PayloadFormat::kLzma: return "lzma";
    case PayloadFormat::kXz: return "xz";
    case PayloadFormat::kLz4: return "lz4";
    case PayloadFormat::kZstd: return "zstd";
    case PayloadFormat::kElf: return "elf";
    case PayloadFormat::kUnknown: return "unknown";
  }
  return "unknown";
}

PayloadFormat detect_payload_format(std::span<const uint8_t> p) {
  auto starts = [&](std::initializer_list<uint8_t> magic) {
    return p.size() >= magic.size() && std::equal(magic.begin(), magic.end(), p.begin());
  };
  if (p.empty()) return PayloadFormat::kNone;
  if (starts({0xFD, '7', 'z', 'X', 'Z', 0x00})) return PayloadFormat::kXz;
  if (starts({0x1F, 0x8B}) || starts({0x1F, 0x9E})) return PayloadFormat::kGzip;
  if (starts({'B', 'Z', 'h'})) return PayloadFormat::kBzip2;
  if (starts({0x5D, 0x00})) return PayloadFormat::kLzma;
  if (starts({0x02, 0x21})) return PayloadFormat::kLz4;
  if (starts({0x28, 0xB5, 0x2F, 0xFD})) return PayloadFormat::kZstd;
  if (starts({0x7F, 'E', 'L', 'F'})) return PayloadFormat::kElf;
  return PayloadFormat::kUnknown;
}

namespace {

std::string version_text(uint16_t v) { return fmt::format("{}.{:02}", v >> 8, v & 0xFF); }

constexpr uint64_t kMinFileSize = 1024;  // boot sector + first setup sector: holds the whole header

}  // namespace

std::string BzImage::protocol_string() const { return version_text(protocol_version); }

Result<BzImage> parse_bzimage(std::span<const uint8_t> file, std::string_view file_name) {
  const std::string name(file_name);
  if (file.size() < kMinFileSize) {
    return fail(fmt::format("{}: not a bzImage: the file is {} bytes, shorter than the {}-byte boot sector "
                            "and setup header",
                            name, file.size(), kMinFileSize));
  }
  const uint16_t boot_flag = le::u16(file, hdr::kBootFlag);
  if (boot_flag != 0xAA55) {
    return fail(fmt::format("{}: not a bzImage: no boot_flag 0xAA55 at offset 0x1fe (found 0x{:04x})", name,
                            boot_flag));
  }
  if (std::memcmp(file.data() + hdr::kHeaderMagic, "HdrS", 4) != 0) {
    return fail(fmt::format("{}: not a bzImage: no \"HdrS\" signature at offset 0x202", name));
  }

  BzImage img;
  img.file_name = name;
  img.file_size = file.size();
  img.protocol_version = le::u16(file, hdr::kVersion);
  if (img.protocol_version < kMinProtocolVersion) {
    return fail(fmt::format("{}: boot protocol {} is too old: need {} or later (for cmdline_size)", name,
                            version_text(img.protocol_version), version_text(kMinProtocolVersion)));
  }
  img.loadflags = file[hdr::kLoadflags];
  if ((img.loadflags & kLoadedHigh) == 0) {
    return fail(fmt::format("{}: not a bzImage: loadflags bit LOADED_HIGH is clear (a zImage, which loads "
                            "below 1 MiB, is not supported)",
                            name));
  }
  img.header_end = hdr::kHeaderMagic + file[hdr::kJump + 1];
  if (img.header_end < hdr::kCmdlineSize + 4 || img.header_end > hdr::kMaxHeaderEnd) {
    return fail(fmt::format("{}: setup header length byte at 0x201 is 0x{:02x}: the header would end at 0x{:x}, "
                            "outside 0x23c..0x281 (protocol {} needs the fields up to cmdline_size)",
                            name, file[hdr::kJump + 1], img.header_end, version_text(img.protocol_version)));
  }

  const unsigned raw_sects = file[hdr::kSetupSects];
  img.setup_sects = raw_sects == 0 ? 4 : raw_sects;
  img.kernel_offset = (static_cast<uint64_t>(img.setup_sects) + 1) * 512;
  if (img.kernel_offset >= file.size()) {
    return fail(fmt::format("{}: truncated: setup_sects {} puts the protected-mode kernel at offset 0x{:x}, but "
                            "the file is only 0x{:x} bytes",
                            name, img.setup_sects, img.kernel_offset, file.size()));
  }
  img.kernel_size = file.size() - img.kernel_offset;
  const uint64_t syssize_bytes = static_cast<uint64_t>(le::u32(file, hdr::kSyssize)) * 16;
  if (syssize_bytes > img.kernel_size) {
    return fail(fmt::format("{}: truncated: syssize says the protected-mode kernel is 0x{:x} bytes, but only "
                            "0x{:x} follow the setup code",
                            name, syssize_bytes, img.kernel_size));
  }

  const uint16_t v = img.protocol_version;
  img.code32_start = le::u32(file, hdr::kCode32Start);
  img.initrd_addr_max = le::u32(file, hdr::kInitrdAddrMax);  // 2.03+, always present at >= 2.06
  img.kernel_alignment = le::u32(file, hdr::kKernelAlignment);
  img.relocatable_kernel = file[hdr::kRelocatable] != 0;
  img.cmdline_size = le::u32(file, hdr::kCmdlineSize);
  if (v >= 0x020A) {
    img.min_alignment = file[hdr::kMinAlignment];
    img.pref_address = le::u64(file, hdr::kPrefAddress);
    img.init_size = le::u32(file, hdr::kInitSize);
  }
  if (v >= 0x020C) img.xloadflags = le::u16(file, hdr::kXloadflags);
  if (img.relocatable_kernel &&
      (img.kernel_alignment == 0 || (img.kernel_alignment & (img.kernel_alignment - 1)) != 0)) {
    return fail(fmt::format("{}: relocatable kernel with kernel_alignment 0x{:x}, which is not a power of two",
                            name, img.kernel_alignment));
  }
  if (v >= 0x0208) {
    img.payload_offset = le::u32(file, hdr::kPayloadOffset);
    img.payload_length = le::u32(file, hdr::kPayloadLength);
    if (static_cast<uint64_t>(img.payload_offset) + img.payload_length > img.kernel_size) {
      return fail(fmt::format("{}: truncated: the payload (offset 0x{:x}, length 0x{:x} in the protected-mode "
                              "kernel) runs past its end (0x{:x} bytes)",
                              name, img.payload_offset, img.payload_length, img.kernel_size));
    }
    if (img.payload_length != 0) {
      img.payload_format = detect_payload_format(
          file.subspan(img.kernel_offset + img.payload_offset, img.payload_length));
    }
  }

  // kernel_version: a NUL-terminated string at (field + 0x200), inside the setup code.
  const uint32_t kv = le::u16(file, hdr::kKernelVersion);
  if (kv != 0 && kv + 0x200u < img.kernel_offset) {
    const auto* begin = file.data() + kv + 0x200;
    const auto* end = file.data() + img.kernel_offset;
    const auto* nul = std::find(begin, end, uint8_t{0});
    img.kernel_version.assign(begin, nul);
  }
  return img;
}

}  // namespace twoostwo::vmcore::boot
