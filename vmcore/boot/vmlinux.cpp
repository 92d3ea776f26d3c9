#include "vmcore/boot/vmlinux.h"

#include <fmt/format.h>
#include <lzma.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>

#include "vmcore/boot/le_bytes.h"

namespace twoostwo::vmcore::boot {

namespace {

const char* lzma_error_text(lzma_ret r) {
  switch (r) {
    case LZMA_MEM_ERROR: return "out of memory";
    case LZMA_MEMLIMIT_ERROR: return "memory limit reached";
    case LZMA_FORMAT_ERROR: return "not an .xz stream";
    case LZMA_OPTIONS_ERROR: return "unsupported filter or options";
    case LZMA_DATA_ERROR: return "corrupt data";
    case LZMA_BUF_ERROR: return "truncated stream";
    case LZMA_UNSUPPORTED_CHECK: return "unsupported integrity check";
    case LZMA_PROG_ERROR: return "liblzma programming error";
    default: return "liblzma error";
  }
}

constexpr uint32_t kPtLoad = 1;
constexpr uint16_t kEm386 = 3;
constexpr uint16_t kEmX8664 = 62;
constexpr uint16_t kEtExec = 2;

}  // namespace

Result<std::vector<uint8_t>> xz_decompress(std::span<const uint8_t> stream, std::string_view what,
                                           uint64_t max_output) {
  // The kernel's payload ends with the decompressed size (4 bytes, LE). Trust
  // it only within a plausible ratio, so a garbage trailer cannot make us
  // allocate a gigabyte up front; the buffer grows if it was too small.
  const uint64_t plausible = std::min<uint64_t>(max_output, uint64_t{stream.size()} * 32 + (1u << 20));
  uint64_t hint = stream.size() >= 4 ? le::u32(stream, stream.size() - 4) : 0;
  if (hint == 0 || hint > plausible) hint = std::min<uint64_t>(plausible, uint64_t{stream.size()} * 4);

  lzma_stream strm = LZMA_STREAM_INIT;
  lzma_ret r = lzma_stream_decoder(&strm, UINT64_MAX, 0);
  if (r != LZMA_OK) return fail(fmt::format("{}: cannot start the XZ decoder: {}", what, lzma_error_text(r)));

  // A little slack past the exact size lets the decoder read the index and
  // footer without first growing the buffer.
  std::vector<uint8_t> out(static_cast<size_t>(hint + 64));
  strm.next_in = stream.data();
  strm.avail_in = stream.size();
  strm.next_out = out.data();
  strm.avail_out = out.size();
  for (;;) {
    r = lzma_code(&strm, LZMA_FINISH);
    if (r == LZMA_STREAM_END) break;
    if (r != LZMA_OK) {
      const uint64_t at = strm.total_in;
      lzma_end(&strm);
      return fail(fmt::format("{}: XZ payload: {} (after {} of {} input bytes)", what, lzma_error_text(r), at,
                              stream.size()));
    }
    if (strm.avail_out == 0) {  // LZMA_OK with a full buffer: grow it
      const size_t used = out.size();
      if (used >= max_output) {
        lzma_end(&strm);
        return fail(fmt::format("{}: XZ payload decompresses to more than {} bytes", what, max_output));
      }
      out.resize(static_cast<size_t>(std::min<uint64_t>(max_output, uint64_t{used} * 2)));
      strm.next_out = out.data() + used;
      strm.avail_out = out.size() - used;
    }
    // LZMA_OK with room left: call again; liblzma answers LZMA_BUF_ERROR
    // when the input ends before the stream does.
  }
  out.resize(static_cast<size_t>(strm.total_out));
  lzma_end(&strm);
  return out;
}

Result<Vmlinux> parse_vmlinux_elf(std::vector<uint8_t> bytes, std::string_view what) {
  const std::span<const uint8_t> b(bytes);
  if (b.size() < 52 || std::memcmp(b.data(), "\x7f" "ELF", 4) != 0) {
    return fail(fmt::format("{}: the decompressed kernel is not an ELF file", what));
  }
  Vmlinux v;
  const uint8_t cls = b[4];
  if (cls != 1 && cls != 2) return fail(fmt::format("{}: vmlinux has unknown ELF class {}", what, cls));
  if (b[5] != 1) return fail(fmt::format("{}: vmlinux is not little-endian ELF", what));
  v.elf_class = cls == 1 ? 32 : 64;
  const uint16_t type = le::u16(b, 16);
  v.machine = le::u16(b, 18);
  if (type != kEtExec) return fail(fmt::format("{}: vmlinux ELF type is {}, not EXEC", what, type));
  if ((v.elf_class == 32 && v.machine != kEm386) || (v.elf_class == 64 && v.machine != kEmX8664)) {
    return fail(fmt::format("{}: vmlinux ELF{} has e_machine {}, expected {}", what, v.elf_class, v.machine,
                            v.elf_class == 32 ? "3 (EM_386)" : "62 (EM_X86_64)"));
  }
  uint64_t phoff = 0;
  uint16_t phentsize = 0, phnum = 0;
  if (v.elf_class == 32) {
    v.entry_field = le::u32(b, 24);
    phoff = le::u32(b, 28);
    phentsize = le::u16(b, 42);
    phnum = le::u16(b, 44);
  } else {
    if (b.size() < 64) return fail(fmt::format("{}: vmlinux ELF64 header truncated", what));
    v.entry_field = le::u64(b, 24);
    phoff = le::u64(b, 32);
    phentsize = le::u16(b, 54);
    phnum = le::u16(b, 56);
  }
  const uint16_t min_phentsize = v.elf_class == 32 ? 32 : 56;
  if (phentsize < min_phentsize || phoff > b.size() ||
      static_cast<uint64_t>(phentsize) * phnum > b.size() - phoff) {
    return fail(fmt::format("{}: vmlinux program headers (offset 0x{:x}, {} x {} bytes) lie outside the {} bytes",
                            what, phoff, phnum, phentsize, b.size()));
  }
  for (uint16_t i = 0; i < phnum; ++i) {
    const size_t ph = static_cast<size_t>(phoff) + static_cast<size_t>(i) * phentsize;
    if (le::u32(b, ph) != kPtLoad) continue;
    ElfSegment s;
    if (v.elf_class == 32) {
      s.offset = le::u32(b, ph + 4);
      s.vaddr = le::u32(b, ph + 8);
      s.paddr = le::u32(b, ph + 12);
      s.filesz = le::u32(b, ph + 16);
      s.memsz = le::u32(b, ph + 20);
      s.flags = le::u32(b, ph + 24);
    } else {
      s.flags = le::u32(b, ph + 4);
      s.offset = le::u64(b, ph + 8);
      s.vaddr = le::u64(b, ph + 16);
      s.paddr = le::u64(b, ph + 24);
      s.filesz = le::u64(b, ph + 32);
      s.memsz = le::u64(b, ph + 40);
    }
    if (s.filesz > s.memsz || s.offset > b.size() || s.filesz > b.size() - s.offset ||
        s.paddr + s.memsz < s.paddr) {
      return fail(fmt::format("{}: vmlinux PT_LOAD #{} (offset 0x{:x}, filesz 0x{:x}, memsz 0x{:x}, paddr "
                              "0x{:x}) is inconsistent with the {}-byte file",
                              what, v.segments.size(), s.offset, s.filesz, s.memsz, s.paddr, b.size()));
    }
    v.segments.push_back(s);
  }
  if (v.segments.empty()) return fail(fmt::format("{}: vmlinux has no PT_LOAD segment", what));
  v.load_begin = UINT64_MAX;
  for (const ElfSegment& s : v.segments) {
    v.load_begin = std::min(v.load_begin, s.paddr);
    v.load_end = std::max(v.load_end, s.paddr + s.memsz);
  }
  bool found = false;
  for (const ElfSegment& s : v.segments) {
    if (v.entry_field >= s.paddr && v.entry_field - s.paddr < s.memsz) {
      v.entry_physical = v.entry_field;
      found = true;
      break;
    }
  }
  for (const ElfSegment& s : v.segments) {
    if (found) break;
    if (v.entry_field >= s.vaddr && v.entry_field - s.vaddr < s.memsz) {
      v.entry_physical = s.paddr + (v.entry_field - s.vaddr);
      found = true;
    }
  }
  if (!found) {
    return fail(fmt::format("{}: vmlinux entry point 0x{:x} lies in no PT_LOAD segment", what, v.entry_field));
  }
  v.bytes = std::move(bytes);
  return v;
}

std::filesystem::path vmlinux_cache_path(const std::filesystem::path& dir, std::span<const uint8_t> kernel_file) {
  const uint64_t crc = lzma_crc64(kernel_file.data(), kernel_file.size(), 0);
  return dir / fmt::format("vmlinux-{:016x}-{}.bin", crc, kernel_file.size());
}

namespace {

std::optional<std::vector<uint8_t>> read_whole_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return std::nullopt;
  const std::streamsize size = in.tellg();
  if (size <= 0) return std::nullopt;
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), size)) return std::nullopt;
  return bytes;
}

/// Write `bytes` to `path` through a temporary file and rename(2).
std::string store_file(const std::filesystem::path& path, std::span<const uint8_t> bytes) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) return fmt::format("cannot create {}: {}", path.parent_path().string(), ec.message());
  const std::filesystem::path tmp = path.string() + fmt::format(".tmp{}", static_cast<long>(getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size())) ||
        !out.flush()) {
      std::filesystem::remove(tmp, ec);
      return fmt::format("cannot write {}", tmp.string());
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return fmt::format("cannot rename {} to {}", tmp.string(), path.string());
  }
  return {};
}

}  // namespace

Result<Vmlinux> decompress_vmlinux(const BzImage& image, std::span<const uint8_t> kernel_file, VmlinuxCache* cache) {
  const std::string what = image.file_name;
  if (image.payload_length == 0) return fail(fmt::format("{}: the bzImage has no payload (protocol < 2.08)", what));
  if (image.payload_format != PayloadFormat::kXz) {
    return fail(fmt::format("{}: the payload is {}, not XZ", what, payload_format_name(image.payload_format)));
  }
  if (kernel_file.size() != image.file_size) {
    return fail(fmt::format("{}: the kernel bytes ({}) are not the file parse_bzimage read ({} bytes)", what,
                            kernel_file.size(), image.file_size));
  }
  std::filesystem::path cache_file;
  if (cache != nullptr) {
    cache->hit = false;
    cache->note.clear();
    cache_file = vmlinux_cache_path(cache->dir, kernel_file);
    if (auto bytes = read_whole_file(cache_file)) {
      auto v = parse_vmlinux_elf(std::move(*bytes), cache_file.string());
      if (v) {
        cache->hit = true;
        cache->note = fmt::format("read {}", cache_file.string());
        return v;
      }
      cache->note = fmt::format("ignored {} ({}); ", cache_file.string(), v.error().message);
    }
  }
  auto payload = kernel_file.subspan(image.kernel_offset + image.payload_offset, image.payload_length);
  auto bytes = xz_decompress(payload, what);
  if (!bytes) return std::unexpected(bytes.error());
  auto v = parse_vmlinux_elf(std::move(*bytes), what);
  if (v && cache != nullptr) {
    const std::string err = store_file(cache_file, v->bytes);
    cache->note += err.empty() ? fmt::format("stored {}", cache_file.string()) : err;
  }
  return v;
}

Result<void> load_vmlinux_segments(bus::GuestMemory mem, const Vmlinux& v, std::string_view what) {
  for (size_t i = 0; i < v.segments.size(); ++i) {
    const ElfSegment& s = v.segments[i];
    if (s.paddr < 0x100000 || !mem.contains(s.paddr, s.memsz)) {
      return fail(fmt::format("{}: vmlinux PT_LOAD #{} [0x{:x}, 0x{:x}) does not fit guest RAM [0x100000, 0x{:x})",
                              what, i, s.paddr, s.paddr + s.memsz, mem.size()));
    }
  }
  for (const ElfSegment& s : v.segments) {
    mem.write(s.paddr, std::span<const uint8_t>(v.bytes).subspan(s.offset, s.filesz));
    auto bss = mem.slice(s.paddr + s.filesz, s.memsz - s.filesz);
    std::fill(bss.begin(), bss.end(), uint8_t{0});
  }
  return {};
}

}  // namespace twoostwo::vmcore::boot
