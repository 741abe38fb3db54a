// JSON parsing, validation and string escaping (see herald/json.h).
#include "herald/json.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace herald {

namespace {
constexpr int kMaxDepth = 128;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Length of the valid UTF-8 sequence at s[i], or 0 if invalid.
size_t Utf8Length(std::string_view s, size_t i) {
  auto b = static_cast<unsigned char>(s[i]);
  size_t n;
  uint32_t cp;
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) {
    n = 2;
    cp = b & 0x1F;
  } else if ((b & 0xF0) == 0xE0) {
    n = 3;
    cp = b & 0x0F;
  } else if ((b & 0xF8) == 0xF0) {
    n = 4;
    cp = b & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (c & 0x3F);
  }
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
      (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}
}  // namespace

// Recursive-descent parser. With build == false it only validates.
class JsonParser {
 public:
  JsonParser(std::string_view text, bool build) : s_(text), build_(build) {}

  bool ParseDocument(Json* out) {
    SkipSpace();
    if (!ParseValue(out, 0)) return false;
    SkipSpace();
    if (i_ != s_.size()) return Fail("unexpected text after the JSON value");
    return true;
  }
  std::string error() const {
    return error_ + " at offset " + std::to_string(error_at_);
  }
  // For JsonCursor: one value (validated only) or one string (decoded into
  // *out when given) starting at *pos; *pos moves past it.
  bool ValueAt(size_t* pos, int depth) {
    i_ = *pos;
    Json unused;
    if (!ParseValue(&unused, depth)) return false;
    *pos = i_;
    return true;
  }
  bool StringAt(size_t* pos, std::string* out) {
    i_ = *pos;
    if (!ParseString(out)) return false;
    *pos = i_;
    return true;
  }

 private:
  bool Fail(const char* what) {
    if (error_.empty()) {
      error_ = what;
      error_at_ = i_;
    }
    return false;
  }
  void SkipSpace() {
    while (i_ < s_.size() && IsSpace(s_[i_])) ++i_;
  }
  bool Literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return Fail("invalid literal");
    i_ += word.size();
    return true;
  }

  bool ParseValue(Json* out, int depth) {
    if (depth > kMaxDepth) return Fail("nesting too deep");
    if (i_ >= s_.size()) return Fail("unexpected end of input");
    size_t start = i_;
    bool ok;
    char c = s_[i_];
    switch (c) {
      case '{':
        ok = ParseObject(out, depth);
        break;
      case '[':
        ok = ParseArray(out, depth);
        break;
      case '"':
        if (build_) out->kind_ = Json::Kind::kString;
        ok = ParseString(build_ ? &out->string_ : nullptr);
        break;
      case 't':
        ok = Literal("true");
        if (build_) out->kind_ = Json::Kind::kBool, out->bool_ = true;
        break;
      case 'f':
        ok = Literal("false");
        if (build_) out->kind_ = Json::Kind::kBool;
        break;
      case 'n':
        ok = Literal("null");
        break;
      default:
        ok = ParseNumber();
        if (ok && build_) {
          out->kind_ = Json::Kind::kNumber;
          out->string_.assign(s_.substr(start, i_ - start));
        }
    }
    if (ok && build_) out->raw_ = s_.substr(start, i_ - start);
    return ok;
  }

  bool ParseObject(Json* out, int depth) {
    ++i_;  // '{'
    if (build_) out->kind_ = Json::Kind::kObject;
    SkipSpace();
    if (i_ < s_.size() && s_[i_] == '}') {
      ++i_;
      return true;
    }
    while (true) {
      SkipSpace();
      if (i_ >= s_.size() || s_[i_] != '"')
        return Fail("expected a string key");
      std::string key;
      if (!ParseString(build_ ? &key : nullptr)) return false;
      SkipSpace();
      if (i_ >= s_.size() || s_[i_] != ':') return Fail("expected ':'");
      ++i_;
      SkipSpace();
      Json value;
      if (!ParseValue(&value, depth + 1)) return false;
      if (build_) out->members_.emplace_back(std::move(key), std::move(value));
      SkipSpace();
      if (i_ >= s_.size()) return Fail("unterminated object");
      if (s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (s_[i_] == '}') {
        ++i_;
        return true;
      }
      return Fail("expected ',' or '}'");
    }
  }

  bool ParseArray(Json* out, int depth) {
    ++i_;  // '['
    if (build_) out->kind_ = Json::Kind::kArray;
    SkipSpace();
    if (i_ < s_.size() && s_[i_] == ']') {
      ++i_;
      return true;
    }
    while (true) {
      SkipSpace();
      Json value;
      if (!ParseValue(&value, depth + 1)) return false;
      if (build_) out->items_.push_back(std::move(value));
      SkipSpace();
      if (i_ >= s_.size()) return Fail("unterminated array");
      if (s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (s_[i_] == ']') {
        ++i_;
        return true;
      }
      return Fail("expected ',' or ']'");
    }
  }

  bool Hex4(uint32_t* cp) {
    if (i_ + 4 > s_.size()) return Fail("short \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      int h = HexValue(s_[i_ + k]);
      if (h < 0) return Fail("bad \\u escape");
      v = (v << 4) | static_cast<uint32_t>(h);
    }
    i_ += 4;
    *cp = v;
    return true;
  }

  bool ParseString(std::string* out) {
    ++i_;  // opening quote
    while (true) {
      // Fast scan over plain ASCII.
      size_t run = i_;
      while (run < s_.size()) {
        auto b = static_cast<unsigned char>(s_[run]);
        if (b == '"' || b == '\\' || b < 0x20 || b >= 0x80) break;
        ++run;
      }
      if (out) out->append(s_.data() + i_, run - i_);
      i_ = run;
      if (i_ >= s_.size()) return Fail("unterminated string");
      auto b = static_cast<unsigned char>(s_[i_]);
      if (b == '"') {
        ++i_;
        return true;
      }
      if (b < 0x20) return Fail("control character in string");
      if (b >= 0x80) {
        size_t n = Utf8Length(s_, i_);
        if (n == 0) return Fail("invalid UTF-8 in string");
        if (out) out->append(s_.data() + i_, n);
        i_ += n;
        continue;
      }
      // Escape.
      ++i_;
      if (i_ >= s_.size()) return Fail("unterminated escape");
      char e = s_[i_++];
      char plain = 0;
      switch (e) {
        case '"':
          plain = '"';
          break;
        case '\\':
          plain = '\\';
          break;
        case '/':
          plain = '/';
          break;
        case 'b':
          plain = '\b';
          break;
        case 'f':
          plain = '\f';
          break;
        case 'n':
          plain = '\n';
          break;
        case 'r':
          plain = '\r';
          break;
        case 't':
          plain = '\t';
          break;
        case 'u': {
          uint32_t cp;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (s_.substr(i_, 2) != "\\u") return Fail("lone surrogate");
            i_ += 2;
            if (!Hex4(&lo)) return false;
            if (lo < 0xDC00 || lo > 0xDFFF) return Fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Fail("lone surrogate");
          }
          if (out) AppendUtf8(cp, out);
          continue;
        }
        default:
          return Fail("bad escape");
      }
      if (out) out->push_back(plain);
    }
  }

  bool ParseNumber() {
    size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ >= s_.size()) return Fail("invalid value");
    if (s_[i_] == '0') {
      ++i_;
    } else if (s_[i_] >= '1' && s_[i_] <= '9') {
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    } else {
      i_ = start;
      return Fail("invalid value");
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      size_t d = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      if (i_ == d) return Fail("digit expected after '.'");
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      size_t d = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      if (i_ == d) return Fail("digit expected in exponent");
    }
    return true;
  }

  std::string_view s_;
  bool build_;
  size_t i_ = 0;
  std::string error_;
  size_t error_at_ = 0;
};

Result<Json> Json::Parse(std::string_view text) {
  JsonParser p(text, true);
  Json out;
  if (!p.ParseDocument(&out)) {
    return Status::InvalidArgument("invalid JSON: " + p.error());
  }
  return out;
}

double Json::as_double() const {
  return kind_ == Kind::kNumber ? std::strtod(string_.c_str(), nullptr) : 0.0;
}

bool Json::TryInt64(int64_t* out) const {
  if (kind_ != Kind::kNumber) return false;
  if (string_.find_first_of(".eE") != std::string::npos) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(string_.c_str(), &end, 10);
  if (errno == ERANGE || *end != '\0') return false;
  *out = v;
  return true;
}

const Json* Json::Find(std::string_view key) const {
  for (const auto& [k, v] : members_) {
    if (k == key) return &v;
  }
  return nullptr;
}

std::string_view Json::KindName(Kind kind) {
  switch (kind) {
    case Kind::kNull:
      return "null";
    case Kind::kBool:
      return "bool";
    case Kind::kNumber:
      return "number";
    case Kind::kString:
      return "string";
    case Kind::kArray:
      return "array";
    case Kind::kObject:
      return "object";
  }
  return "?";
}

bool IsValidJson(std::string_view text) {
  JsonParser p(text, false);
  Json unused;
  return p.ParseDocument(&unused);
}

Status CheckJson(std::string_view text) {
  JsonParser p(text, false);
  Json unused;
  if (!p.ParseDocument(&unused)) {
    return Status::InvalidArgument("invalid JSON: " + p.error());
  }
  return Status::OK();
}

// ---- JsonCursor -------------------------------------------------------------

Status JsonCursor::Fail(std::string_view what) const {
  return Status::InvalidArgument("invalid JSON: " + std::string(what) +
                                 " at offset " + std::to_string(i_));
}

void JsonCursor::SkipSpace() {
  while (i_ < s_.size() && IsSpace(s_[i_])) ++i_;
}

char JsonCursor::Peek() {
  SkipSpace();
  return i_ < s_.size() ? s_[i_] : '\0';
}

std::string_view JsonCursor::PeekKindName() {
  switch (Peek()) {
    case '{':
      return "object";
    case '[':
      return "array";
    case '"':
      return "string";
    case 't':
    case 'f':
      return "bool";
    case 'n':
      return "null";
    default:
      return "number";
  }
}

// Called before reading a value: a value directly inside an array must be
// introduced by NextItem, which handles the comma; nothing to do here but
// skip space and check the end.
Status JsonCursor::BeforeValue() {
  SkipSpace();
  if (i_ >= s_.size()) return Fail("unexpected end of input");
  return Status::OK();
}

Status JsonCursor::BeginObject() {
  HERALD_RETURN_IF_ERROR(BeforeValue());
  if (s_[i_] != '{') return Fail("expected an object");
  if (need_comma_.size() > static_cast<size_t>(kMaxDepth)) {
    return Fail("nesting too deep");
  }
  ++i_;
  need_comma_.push_back(false);
  return Status::OK();
}

Status JsonCursor::BeginArray() {
  HERALD_RETURN_IF_ERROR(BeforeValue());
  if (s_[i_] != '[') return Fail("expected an array");
  if (need_comma_.size() > static_cast<size_t>(kMaxDepth)) {
    return Fail("nesting too deep");
  }
  ++i_;
  need_comma_.push_back(false);
  return Status::OK();
}

Result<bool> JsonCursor::NextMember(std::string* key) {
  if (need_comma_.empty()) return Fail("not inside an object");
  SkipSpace();
  if (i_ >= s_.size()) return Fail("unterminated object");
  if (s_[i_] == '}') {
    ++i_;
    need_comma_.pop_back();
    return false;
  }
  if (need_comma_.back()) {
    if (s_[i_] != ',') return Fail("expected ',' or '}'");
    ++i_;
    SkipSpace();
  }
  if (i_ >= s_.size() || s_[i_] != '"') return Fail("expected a string key");
  key->clear();
  JsonParser p(s_, false);
  if (!p.StringAt(&i_, key)) {
    return Status::InvalidArgument("invalid JSON: " + p.error());
  }
  SkipSpace();
  if (i_ >= s_.size() || s_[i_] != ':') return Fail("expected ':'");
  ++i_;
  need_comma_.back() = true;
  return true;
}

Result<bool> JsonCursor::NextItem() {
  if (need_comma_.empty()) return Fail("not inside an array");
  SkipSpace();
  if (i_ >= s_.size()) return Fail("unterminated array");
  if (s_[i_] == ']') {
    ++i_;
    need_comma_.pop_back();
    return false;
  }
  if (need_comma_.back()) {
    if (s_[i_] != ',') return Fail("expected ',' or ']'");
    ++i_;
  }
  need_comma_.back() = true;
  HERALD_RETURN_IF_ERROR(BeforeValue());
  return true;
}

Status JsonCursor::ReadString(std::string* out) {
  HERALD_RETURN_IF_ERROR(BeforeValue());
  if (s_[i_] != '"') return Fail("expected a string");
  out->clear();
  JsonParser p(s_, false);
  if (!p.StringAt(&i_, out)) {
    return Status::InvalidArgument("invalid JSON: " + p.error());
  }
  return Status::OK();
}

Status JsonCursor::SkipValue(std::string_view* raw) {
  HERALD_RETURN_IF_ERROR(BeforeValue());
  size_t start = i_;
  JsonParser p(s_, false);
  if (!p.ValueAt(&i_, static_cast<int>(need_comma_.size()))) {
    return Status::InvalidArgument("invalid JSON: " + p.error());
  }
  if (raw) *raw = s_.substr(start, i_ - start);
  return Status::OK();
}

Status JsonCursor::End() {
  if (!need_comma_.empty()) return Fail("unterminated value");
  SkipSpace();
  if (i_ != s_.size()) return Fail("unexpected text after the JSON value");
  return Status::OK();
}

// ---- base64
// -------------------------------------------------------------------

void AppendBase64(std::string_view in, std::string* out) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  out->reserve(out->size() + (in.size() + 2) / 3 * 4);
  size_t i = 0;
  while (i + 3 <= in.size()) {
    uint32_t v =
        (static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16) |
        (static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8) |
        static_cast<unsigned char>(in[i + 2]);
    out->push_back(kAlphabet[v >> 18]);
    out->push_back(kAlphabet[(v >> 12) & 63]);
    out->push_back(kAlphabet[(v >> 6) & 63]);
    out->push_back(kAlphabet[v & 63]);
    i += 3;
  }
  if (i < in.size()) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) {
      v |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    }
    out->push_back(kAlphabet[v >> 18]);
    out->push_back(kAlphabet[(v >> 12) & 63]);
    out->push_back(i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=');
    out->push_back('=');
  }
}

Status DecodeBase64(std::string_view text, std::string* out) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  out->clear();
  size_t n = text.size();
  if (n % 4 == 0 && n > 0 && text[n - 1] == '=') {
    --n;
    if (text[n - 1] == '=') --n;
  }
  if (n % 4 == 1) {
    return Status::InvalidArgument("base64 text has a stray last character");
  }
  out->reserve(n / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; ++i) {
    int v = value(text[i]);
    if (v < 0) {
      return Status::InvalidArgument("base64 text holds '" +
                                     std::string(1, text[i]) + "' at offset " +
                                     std::to_string(i));
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return Status::OK();
}

bool IsJsonObject(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && IsSpace(text[i])) ++i;
  return i < text.size() && text[i] == '{' && IsValidJson(text);
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t n = Utf8Length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

void AppendJsonString(std::string_view s, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    size_t run = i;
    while (run < s.size()) {
      auto b = static_cast<unsigned char>(s[run]);
      if (b == '"' || b == '\\' || b < 0x20 || b >= 0x80) break;
      ++run;
    }
    out->append(s.data() + i, run - i);
    i = run;
    if (i >= s.size()) break;
    auto b = static_cast<unsigned char>(s[i]);
    if (b >= 0x80) {
      size_t n = Utf8Length(s, i);
      if (n == 0) {
        out->append("\xEF\xBF\xBD");
        ++i;
      } else {
        out->append(s.data() + i, n);
        i += n;
      }
      continue;
    }
    ++i;
    switch (b) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        out->append("\\u00");
        out->push_back(kHex[b >> 4]);
        out->push_back(kHex[b & 0xF]);
    }
  }
  out->push_back('"');
}

std::string JsonString(std::string_view s) {
  std::string out;
  AppendJsonString(s, &out);
  return out;
}

}  // namespace herald
