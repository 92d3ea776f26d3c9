// The topology file loader and validator (docs/topology.md is the format;
// docs/topology.schema.json the same shape as a JSON Schema for editors).
//
// load_lab() reads a YAML topology file (yaml-cpp 0.7), builds the Lab of
// topology/lab.h and checks it in one pass, collecting every problem rather
// than stopping at the first: YAML syntax, unknown keys (with a did-you-mean),
// wrong types and values, duplicate names, dangling and doubly used link
// endpoints, invalid CIDRs and MACs, duplicate IPs or MACs on one L2 segment,
// ISA I/O and IRQ clashes in a node, switch loops, VLAN IDs outside
// 1..4094, missing image files. docs/topology.md lists every check with its
// message. yaml-cpp's exceptions never leave this module: a syntax error is
// one Diagnostic (and the only one, since nothing after it can be read).
//
// Nothing here keeps state between calls; the functions are safe to call
// from several threads at once (the resolver is called on the caller's
// thread).
#pragma once

#include <expected>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "topology/diagnostic.h"
#include "topology/lab.h"

namespace twoostwo::topology {

/// A named image's files.
struct ImageFiles {
  std::filesystem::path kernel;
  std::filesystem::path initrd;
};

/// Maps a named image ("default", "i386", "x86_64") to its files; nullopt if
/// the resolver knows no such image (reported as an error at the `image:`).
using ImageResolver = std::function<std::optional<ImageFiles>(std::string_view name)>;

/// The images guest/build-images.sh builds into `guest_dir`:
/// <guest_dir>/<arch>/vmlinuz and <guest_dir>/<arch>/initrd.cpio, with
/// "default" meaning i386 (DESIGN.md, "Guests"). Files are not checked here.
ImageResolver guest_image_dir(std::filesystem::path guest_dir);

struct LoadOptions {
  /// Resolves named images; without one, named images keep empty paths and
  /// are not checked.
  ImageResolver images;
  /// Check that every image's kernel and initrd exist (regular files).
  bool check_files = true;
  /// The file name used in diagnostics; default: the path as given.
  std::optional<std::string> display_name;
};

/// Load and check the topology file at `path`. Relative paths in the file
/// (explicit image files, the captures directory) are resolved against the
/// file's directory, made absolute.
///
/// Returns the Lab, or every Diagnostic found, sorted by position (line,
/// then column; problems of the whole file first). Errors include a file
/// that cannot be read ("lab.yaml: cannot read: No such file or directory").
std::expected<Lab, Diagnostics> load_lab(const std::filesystem::path& path, const LoadOptions& options = {});

/// The same for YAML text held in memory: `directory` is where relative
/// paths start, `options.display_name` (default "<text>") names it in
/// diagnostics; Lab::file is empty.
std::expected<Lab, Diagnostics> parse_lab(std::string_view yaml, const std::filesystem::path& directory,
                                          const LoadOptions& options = {});

/// The lab `twoostwo up` brings up without a file: two hosts, alice
/// (10.0.0.1/24) and bob (10.0.0.2/24), each with an rtl8029 on switch sw1,
/// the default image, captures in "captures". Commented YAML, loadable with
/// parse_lab().
std::string_view default_lab_text();

}  // namespace twoostwo::topology
