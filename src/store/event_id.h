// Event ids as both backends store them (internal): UUIDs are
// case-insensitive (RFC 9562), so ids are kept and compared in lower case.
#pragma once

#include <string>
#include <string_view>

namespace herald::detail {

// Lowers the ASCII letters of `*id` in place (no copy).
inline void LowerIdInPlace(std::string* id) {
  for (char& c : *id) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
}

// `id` with ASCII letters in lower case.
inline std::string LowerId(std::string_view id) {
  std::string out(id);
  LowerIdInPlace(&out);
  return out;
}

}  // namespace herald::detail
