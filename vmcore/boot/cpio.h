// A writer for "newc" cpio archives (the initramfs format), used for the
// per-node configuration archive that the monitor appends to the initrd.
//
// Format: Linux Documentation/driver-api/early-userspace/buffer-format.rst
// and init/initramfs.c (what the kernel accepts): each entry is a 110-byte
// ASCII header "070701" + 13 eight-digit hex fields (ino, mode, uid, gid,
// nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
// namesize including the NUL, check = 0), the NUL-terminated name padded so
// header + name is a multiple of 4, then the data padded to a multiple of 4.
// The archive ends with an entry named "TRAILER!!!".
//
// Linux unpacks concatenated archives: after one archive it skips zero bytes
// and starts the next at a '0' only when that byte's offset from the start
// of the whole initrd is a multiple of 4 (init/initramfs.c,
// unpack_to_rootfs: `*buf == '0' && !(this_header & 3)`); otherwise it
// reports "broken padding" or "junk in compressed archive". So an archive
// appended to an initrd must start at a 4-byte boundary: load_linux() pads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vmcore/bus/error.h"

namespace twoostwo::vmcore::boot {

struct CpioEntry {
  enum class Kind { kDirectory, kFile, kSymlink };
  /// Path inside the archive, relative ("etc/twoostwo/node.conf"): no leading
  /// '/', no NUL. Parent directories must come earlier in the archive (or
  /// exist in an earlier archive of the same initrd): Linux creates files
  /// with open(O_CREAT), which does not create directories.
  std::string name;
  Kind kind = Kind::kFile;
  /// Permission bits only (at most 07777); the file type comes from `kind`.
  uint32_t mode = 0644;
  /// File contents (any bytes), or the symlink target. Empty for directories.
  std::string data;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t mtime = 0;  // seconds since the epoch; 0 keeps archives reproducible
};

/// The newc archive of `entries`, in order, followed by the TRAILER!!!
/// entry; its size is a multiple of 4. Inode numbers are 1, 2, ... in
/// order; nlink is 2 for directories and 1 otherwise (so Linux never treats
/// two entries as hard links).
/// Errors (naming the entry's index and name): empty name, a leading '/',
/// a NUL in the name, the reserved name "TRAILER!!!", mode bits outside
/// 07777, data on a directory, data of 4 GiB or more.
Result<std::vector<uint8_t>> cpio_newc_archive(const std::vector<CpioEntry>& entries);

/// Where /init reads the node's configuration (guest/README.md).
inline constexpr std::string_view kNodeConfigPath = "etc/twoostwo/node.conf";

/// The per-node archive: directories "etc" and "etc/twoostwo" (0755) and
/// the file "etc/twoostwo/node.conf" (0644) holding `node_conf`.
Result<std::vector<uint8_t>> node_config_archive(std::string_view node_conf);

}  // namespace twoostwo::vmcore::boot
