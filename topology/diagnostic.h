// A problem found in a topology file, and how it is printed:
//
//   lab.yaml:12:7: node 'bob': unknown NIC model 'e1000' (expected rtl8029 or ne2000)
//
// (GNU's "file:line:column: message" form, which editors and terminals link
// to the place). The message names the element (lab-level keys, `defaults`,
// node 'NAME', switch 'NAME', link N) and the offending value.
#pragma once

#include <string>
#include <vector>

#include "topology/lab.h"

namespace twoostwo::topology {

struct Diagnostic {
  /// The file as the user named it (LoadOptions::display_name, else the path).
  std::string file;
  /// 1-based; unknown (0) for problems of the whole file (it cannot be read).
  Position pos;
  /// Without the "file:line:col: " prefix.
  std::string message;

  /// "file:line:col: message", or "file: message" without a position.
  std::string to_string() const;
  bool operator==(const Diagnostic&) const = default;
};

using Diagnostics = std::vector<Diagnostic>;

/// Every diagnostic's to_string(), one a line, each ending in '\n'.
std::string to_string(const Diagnostics& diagnostics);

}  // namespace twoostwo::topology
