// Shared codec helpers (see core/codec_util.h).
#include "core/codec_util.h"

#include <array>
#include <cstring>

namespace herald::detail {

void AppendOneLine(std::string_view json, std::string* out) {
  // Two memchr scans: find_first_of would call memchr once per byte.
  if (!std::memchr(json.data(), '\n', json.size()) &&
      !std::memchr(json.data(), '\r', json.size())) {
    out->append(json);
    return;
  }
  for (char c : json) out->push_back(c == '\n' || c == '\r' ? ' ' : c);
}

bool IsCloudEventAttributeName(std::string_view name) {
  static constexpr std::array<std::string_view, 12> kNames = {
      "specversion", "id",         "source",          "type",
      "subject",     "time",       "datacontenttype", "dataschema",
      "data",        "database64", "position",        "streamversion"};
  for (auto n : kNames) {
    if (n == name) return true;
  }
  return false;
}

namespace {
// Whether `name` is x...x followed by an attribute name, with at least
// `min_x` leading x's.
bool IsEscapedForm(std::string_view name, size_t min_x) {
  size_t x = 0;
  while (x < name.size() && name[x] == 'x') {
    if (x >= min_x && IsCloudEventAttributeName(name.substr(x))) return true;
    ++x;
  }
  return x >= min_x && IsCloudEventAttributeName(name.substr(x));
}
}  // namespace

std::string ExtensionNameOfKey(std::string_view key) {
  std::string name;
  name.reserve(key.size() + 1);
  for (char c : key) {
    if (c >= 'A' && c <= 'Z') {
      name.push_back(static_cast<char>(c - 'A' + 'a'));
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      name.push_back(c);
    }
  }
  if (!name.empty() && IsEscapedForm(name, 0)) name.insert(name.begin(), 'x');
  return name;
}

std::string_view KeyOfExtensionName(std::string_view name) {
  if (IsEscapedForm(name, 1)) return name.substr(1);
  return name;
}

}  // namespace herald::detail
