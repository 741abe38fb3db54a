// A small JSON reader and writer helpers.
//
// Json::Parse builds a read-only tree for configuration and request bodies;
// the hot path (event payloads) uses IsValidJson, which checks without
// building anything, and AppendJsonString to write. Values are immutable
// after parsing and safe to share between threads.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "herald/status.h"

namespace herald {

class Json {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };

  // Parses one JSON text (RFC 8259), nesting at most 128 deep. The result's
  // raw() views point into `text`, which must outlive them. InvalidArgument
  // names the byte offset of the first problem.
  static Result<Json> Parse(std::string_view text);

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_number() const { return kind_ == Kind::kNumber; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_object() const { return kind_ == Kind::kObject; }

  bool as_bool() const { return bool_; }
  // The number; false from the Try forms when it is not an integer in range.
  double as_double() const;
  bool TryInt64(int64_t* out) const;
  // The decoded string (strings only).
  const std::string& as_string() const { return string_; }
  // Elements of an array.
  const std::vector<Json>& items() const { return items_; }
  // Members of an object, in document order.
  const std::vector<std::pair<std::string, Json>>& members() const {
    return members_;
  }
  // The member named `key` of an object, or nullptr.
  const Json* Find(std::string_view key) const;
  // The exact text of this value in the parsed document.
  std::string_view raw() const { return raw_; }

  // "null", "bool", "number", "string", "array", "object".
  static std::string_view KindName(Kind kind);

 private:
  friend class JsonParser;
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  std::string string_;  // decoded string, or the number's text
  std::vector<Json> items_;
  std::vector<std::pair<std::string, Json>> members_;
  std::string_view raw_;
};

// Whether `text` is exactly one valid JSON value (surrounding whitespace
// allowed). Builds nothing; fast enough for every payload.
bool IsValidJson(std::string_view text);
// Whether `text` is a JSON object.
bool IsJsonObject(std::string_view text);

// Whether `s` is well-formed UTF-8 (no overlongs, no surrogates).
bool IsValidUtf8(std::string_view s);

// Appends `s` as a quoted JSON string, escaping as RFC 8259 requires.
// Invalid UTF-8 bytes are replaced by U+FFFD.
void AppendJsonString(std::string_view s, std::string* out);
std::string JsonString(std::string_view s);

}  // namespace herald
