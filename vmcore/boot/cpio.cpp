#include "vmcore/boot/cpio.h"

#include <fmt/format.h>

namespace twoostwo::vmcore::boot {

namespace {

constexpr uint32_t kIfDir = 0040000;
constexpr uint32_t kIfReg = 0100000;
constexpr uint32_t kIfLnk = 0120000;

void pad4(std::vector<uint8_t>& out) {
  while (out.size() % 4 != 0) out.push_back(0);
}

void append_entry(std::vector<uint8_t>& out, uint32_t ino, uint32_t mode, uint32_t uid, uint32_t gid,
                  uint32_t nlink, uint32_t mtime, std::string_view name, std::string_view data) {
  // 110 bytes: magic + 13 fields of 8 hex digits (devmajor/devminor/rdev*/check are 0).
  const std::string header = fmt::format("070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}"
                                         "{:08X}{:08X}",
                                         ino, mode, uid, gid, nlink, mtime, static_cast<uint32_t>(data.size()), 0,
                                         0, 0, 0, static_cast<uint32_t>(name.size() + 1), 0);
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), name.begin(), name.end());
  out.push_back(0);
  pad4(out);  // the archive starts 4-aligned, so this aligns header + name
  out.insert(out.end(), data.begin(), data.end());
  pad4(out);
}

}  // namespace

Result<std::vector<uint8_t>> cpio_newc_archive(const std::vector<CpioEntry>& entries) {
  std::vector<uint8_t> out;
  uint32_t ino = 1;
  for (size_t i = 0; i < entries.size(); ++i) {
    const CpioEntry& e = entries[i];
    auto bad = [&](std::string_view why) {
      return fail(fmt::format("cpio entry {} '{}': {}", i, e.name, why));
    };
    if (e.name.empty()) return bad("empty name");
    if (e.name.front() == '/') return bad("names are relative to the archive root (no leading '/')");
    if (e.name.find('\0') != std::string::npos) return bad("NUL byte in the name");
    if (e.name == "TRAILER!!!") return bad("\"TRAILER!!!\" is reserved for the end of the archive");
    if ((e.mode & ~07777u) != 0) return bad(fmt::format("mode 0{:o} has bits outside 07777", e.mode));
    if (e.data.size() > 0xFFFFFFFFu) return bad("data of 4 GiB or more does not fit the 32-bit filesize field");
    uint32_t type = kIfReg;
    uint32_t nlink = 1;
    switch (e.kind) {
      case CpioEntry::Kind::kDirectory:
        if (!e.data.empty()) return bad("a directory cannot have data");
        type = kIfDir;
        nlink = 2;
        break;
      case CpioEntry::Kind::kFile: type = kIfReg; break;
      case CpioEntry::Kind::kSymlink:
        if (e.data.empty()) return bad("a symlink needs a target");
        type = kIfLnk;
        break;
    }
    append_entry(out, ino++, type | e.mode, e.uid, e.gid, nlink, e.mtime, e.name, e.data);
  }
  append_entry(out, 0, 0, 0, 0, 1, 0, "TRAILER!!!", {});
  return out;
}

Result<std::vector<uint8_t>> node_config_archive(std::string_view node_conf) {
  auto entry = [](std::string_view name, CpioEntry::Kind kind, uint32_t mode, std::string_view data) {
    CpioEntry e;
    e.name = std::string(name);
    e.kind = kind;
    e.mode = mode;
    e.data = std::string(data);
    return e;
  };
  const std::vector<CpioEntry> entries = {
      entry("etc", CpioEntry::Kind::kDirectory, 0755, {}),
      entry("etc/twoostwo", CpioEntry::Kind::kDirectory, 0755, {}),
      entry(kNodeConfigPath, CpioEntry::Kind::kFile, 0644, node_conf),
  };
  return cpio_newc_archive(entries);
}

}  // namespace twoostwo::vmcore::boot
