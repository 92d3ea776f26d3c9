// Error values that cross module boundaries (DESIGN.md, "Conventions").
#pragma once

#include <expected>
#include <string>
#include <utility>

namespace twoostwo {

/// An error whose message names the input it is about, e.g.
/// "vmlinuz: not a bzImage (no \"HdrS\" signature at offset 0x202)".
struct Error {
  std::string message;
};

/// The result type of every fallible operation that crosses a module boundary.
template <class T>
using Result = std::expected<T, Error>;

/// Shorthand: `return fail("...")` in a function returning Result<T>.
inline std::unexpected<Error> fail(std::string message) {
  return std::unexpected<Error>(Error{std::move(message)});
}

}  // namespace twoostwo
