// Helpers for the topology tests: a temporary directory (removed at the end)
// and a fake guest image directory in it, in guest/build-images.sh's layout.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/support/files.h"
#include "topology/loader.h"

namespace twoostwo::topology::testing {

inline const std::filesystem::path kSourceDir = TWOOSTWO_SOURCE_DIR;

class TempDir : public twoostwo::testing::TempDir {
 public:
  /// Write `text` to `name` (relative to the directory, parents made).
  std::filesystem::path write(const std::string& name, const std::string& text) const {
    const auto p = path() / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p;
  }
};

/// A guest directory holding empty vmlinuz and initrd.cpio for `archs`.
inline void make_guest_dir(const TempDir& dir, const std::vector<std::string>& archs) {
  for (const auto& arch : archs) {
    dir.write("guest/" + arch + "/vmlinuz", "");
    dir.write("guest/" + arch + "/initrd.cpio", "");
  }
}

/// Options without an image resolver that name the text `name` in diagnostics.
inline LoadOptions options_named(std::string name, bool check_files = true) {
  LoadOptions o;
  o.check_files = check_files;
  o.display_name = std::move(name);
  return o;
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace twoostwo::topology::testing
