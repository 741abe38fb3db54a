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

// A forward-only reader over one JSON text, for decoders on hot paths that
// must not build a tree (event bodies, pages, CloudEvents). Each call skips
// whitespace first. Errors are InvalidArgument "invalid JSON: WHAT at offset
// N", like Json::Parse; nesting is limited to 128 levels as there. Reads
// `text` in place: it must outlive the cursor and the views it returns.
// Not thread-safe (one cursor per thread).
//
//   JsonCursor c(text);
//   HERALD_RETURN_IF_ERROR(c.BeginObject());
//   std::string key;
//   while (true) {
//     auto more = c.NextMember(&key);
//     if (!more.ok()) return more.status();
//     if (!*more) break;
//     ... c.ReadString(&s) / c.SkipValue(&raw) ...
//   }
//   HERALD_RETURN_IF_ERROR(c.End());
class JsonCursor {
 public:
  explicit JsonCursor(std::string_view text) : s_(text) {}

  // The first character of the next value ('{', '[', '"', 't', 'f', 'n', a
  // digit or '-'), or '\0' at the end of the text.
  char Peek();
  // "object", "array", "string", "bool", "null" or "number": the kind of
  // the next value, judged by its first character (for error messages).
  std::string_view PeekKindName();

  // Enters an object or an array (the next value must be one).
  Status BeginObject();
  Status BeginArray();
  // The next member of the innermost object: reads its key (decoded) and
  // the ':' and returns true; returns false after the closing '}'.
  Result<bool> NextMember(std::string* key);
  // Whether the innermost array has another item (positions the cursor at
  // it); false after the closing ']'.
  Result<bool> NextItem();

  // Reads a string value, decoded, into *out (InvalidArgument if the next
  // value is not a string).
  Status ReadString(std::string* out);
  // Reads one value of any kind, validating it; *raw (if given) gets its
  // exact text.
  Status SkipValue(std::string_view* raw = nullptr);
  // Only whitespace remains (call after the outermost value).
  Status End();

  size_t offset() const { return i_; }

 private:
  Status Fail(std::string_view what) const;
  Status BeforeValue();
  void SkipSpace();

  std::string_view s_;
  size_t i_ = 0;
  // Per open container: whether a ',' must come before the next entry.
  std::vector<bool> need_comma_;
};

// Whether `text` is exactly one valid JSON value (surrounding whitespace
// allowed). Builds nothing; fast enough for every payload.
bool IsValidJson(std::string_view text);
// The same check, answering InvalidArgument "invalid JSON: WHAT at offset N"
// (the message Json::Parse gives) when it is not.
Status CheckJson(std::string_view text);
// Whether `text` is a JSON object.
bool IsJsonObject(std::string_view text);

// Whether `s` is well-formed UTF-8 (no overlongs, no surrogates).
bool IsValidUtf8(std::string_view s);

// Appends `s` as a quoted JSON string, escaping as RFC 8259 requires.
// Invalid UTF-8 bytes are replaced by U+FFFD.
void AppendJsonString(std::string_view s, std::string* out);
std::string JsonString(std::string_view s);

// Base64 (RFC 4648 section 4, the standard alphabet, with '=' padding): how
// JSON and CloudEvents carry bytes that are not text.
void AppendBase64(std::string_view bytes, std::string* out);
// Decodes base64 text into *out (replacing its contents). Padding may be
// left out; whitespace and characters outside the alphabet are refused
// with InvalidArgument.
Status DecodeBase64(std::string_view text, std::string* out);

}  // namespace herald
