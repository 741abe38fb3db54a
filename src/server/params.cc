// Query parameters, numbers and the small answers every resource shares
// (see resources.h). Pure functions; any thread.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "server/resources.h"

namespace herald::detail {

Status ParseCount(std::string_view name, std::string_view text, int64_t min,
                  int64_t max, int64_t* out) {
  std::string n(name);
  if (text.empty()) return Status::InvalidArgument(n + " must not be empty");
  if (text[0] == '-') {
    bool digits = text.size() > 1 &&
                  std::all_of(text.begin() + 1, text.end(),
                              [](char c) { return c >= '0' && c <= '9'; });
    if (digits) {
      return Status::InvalidArgument(n + " must not be negative, not " +
                                     std::string(text));
    }
  }
  int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return Status::InvalidArgument(n + " must be a whole number, not '" +
                                     std::string(text.substr(0, 40)) + "'");
    }
    if (v > (kMaxOffset - (c - '0')) / 10) {
      return Status::InvalidArgument(n + " is too large (at most " +
                                     std::to_string(max) + ")");
    }
    v = v * 10 + (c - '0');
  }
  if (v < min || v > max) {
    return Status::InvalidArgument(
        n + " must be between " + std::to_string(min) + " and " +
        std::to_string(max) + ", not " + std::string(text));
  }
  *out = v;
  return Status::OK();
}

Status ParseSeconds(std::string_view name, std::string_view text,
                    double max_seconds, std::chrono::milliseconds* out) {
  std::string s(text);
  bool ok =
      !s.empty() && s.size() < 20 &&
      std::all_of(s.begin(), s.end(),
                  [](char c) { return (c >= '0' && c <= '9') || c == '.'; }) &&
      std::count(s.begin(), s.end(), '.') <= 1 && s != ".";
  if (!ok) {
    return Status::InvalidArgument(std::string(name) +
                                   " must be a number of seconds, not '" +
                                   s.substr(0, 40) + "'");
  }
  double v = std::strtod(s.c_str(), nullptr);
  if (v > max_seconds) {
    return Status::InvalidArgument(
        std::string(name) + " must be at most " +
        std::to_string(static_cast<int64_t>(max_seconds)) + " seconds, not " +
        s);
  }
  *out =
      std::chrono::milliseconds(static_cast<int64_t>(std::llround(v * 1000)));
  return Status::OK();
}

Status CheckQuery(const Query& query,
                  std::initializer_list<std::string_view> allowed,
                  std::string_view repeatable) {
  for (size_t i = 0; i < query.size(); ++i) {
    const auto& name = query[i].first;
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      std::string list;
      for (auto a : allowed) {
        if (!list.empty()) list += ", ";
        list += a;
      }
      return Status::InvalidArgument(
          "unknown query parameter '" + name.substr(0, 64) + "'" +
          (list.empty() ? " (this endpoint takes none)"
                        : " (expected one of: " + list + ")"));
    }
    if (name == repeatable) continue;
    for (size_t j = 0; j < i; ++j) {
      if (query[j].first == name) {
        return Status::InvalidArgument("query parameter '" + name +
                                       "' is given more than once");
      }
    }
  }
  return Status::OK();
}

const std::string* QueryValue(const Query& query, std::string_view name) {
  for (const auto& [k, v] : query) {
    if (k == name) return &v;
  }
  return nullptr;
}

Response NoStoreResponse(std::string body) {
  Response r;
  r.body = std::move(body);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

void LowerCase(std::string* s) {
  for (char& c : *s) c = static_cast<char>(std::tolower(c));
}

}  // namespace herald::detail
