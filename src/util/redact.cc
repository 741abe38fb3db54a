// RedactSecrets: see herald/redact.h.
#include "herald/redact.h"

#include <array>
#include <cctype>

namespace herald {

namespace {

constexpr std::string_view kMask = "***";

constexpr std::array<std::string_view, 13> kSecretKeys = {
    "password",        "passwd",          "pwd",
    "token",           "secret",          "access_token",
    "api_key",         "apikey",          "sig",
    "signature",       "x-amz-signature", "x-amz-security-token",
    "x-amz-credential"};

char Lower(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

bool StartsWithIgnoreCase(std::string_view s, size_t at, std::string_view p) {
  return s.size() - at >= p.size() &&
         EqualsIgnoreCase(s.substr(at, p.size()), p);
}

bool IsKeyChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ||
         c == '.';
}

// Where a URL's authority, or a parameter's value, ends in free text.
bool EndsAuthority(char c) {
  return c == '/' || c == '?' || c == '#' || c == ' ' || c == '\t' ||
         c == '\n' || c == '\r' || c == '"' || c == '\'' || c == '<' ||
         c == '>' || c == '`';
}
bool EndsValue(char c) {
  return c == '&' || c == '#' || c == ';' || c == ',' || c == ' ' ||
         c == '\t' || c == '\n' || c == '\r' || c == '"' || c == '\'' ||
         c == '<' || c == '>' || c == '`' || c == ')';
}

// Masks the password of the userinfo of every "scheme://" in `s`.
void MaskUserinfo(std::string* s) {
  size_t from = 0;
  while (true) {
    size_t sep = s->find("://", from);
    if (sep == std::string::npos) return;
    size_t start = sep + 3;
    size_t end = start;
    while (end < s->size() && !EndsAuthority((*s)[end])) ++end;
    size_t at = s->rfind('@', end == 0 ? 0 : end - 1);
    if (at != std::string::npos && at >= start && at < end) {
      size_t colon = s->find(':', start);
      if (colon != std::string::npos && colon < at &&
          s->compare(colon + 1, at - colon - 1, kMask) != 0) {
        s->replace(colon + 1, at - colon - 1, kMask);
        end = colon + 1 + kMask.size() + (end - at);
      }
    }
    from = end;
  }
}

// Masks the value of every "key=value" whose key is a secret's name.
void MaskParameters(std::string* s) {
  size_t i = 0;
  while ((i = s->find('=', i)) != std::string::npos) {
    size_t key_end = i;
    size_t key_start = key_end;
    while (key_start > 0 && IsKeyChar((*s)[key_start - 1])) --key_start;
    std::string_view key(s->data() + key_start, key_end - key_start);
    bool secret = false;
    for (auto k : kSecretKeys) secret = secret || EqualsIgnoreCase(key, k);
    size_t v = i + 1;
    if (!secret) {
      i = v;
      continue;
    }
    size_t v_end = v;
    if (v < s->size() && (*s)[v] == '\'') {
      // A quoted libpq value: up to the closing quote.
      ++v;
      v_end = s->find('\'', v);
      if (v_end == std::string::npos) v_end = s->size();
    } else {
      // A value ends at a separator, or at ": " (a message goes on).
      while (v_end < s->size() && !EndsValue((*s)[v_end]) &&
             !((*s)[v_end] == ':' &&
               (v_end + 1 == s->size() || (*s)[v_end + 1] == ' '))) {
        ++v_end;
      }
    }
    if (s->compare(v, v_end - v, kMask) != 0 && v_end > v) {
      s->replace(v, v_end - v, kMask);
    }
    i = v + kMask.size();
  }
}

// Masks header values that carry credentials: everything after
// "Authorization:" (to the end of the line, a quote or a comma) and the
// token after "Bearer ".
void MaskHeaders(std::string* s) {
  for (std::string_view marker : {"authorization:", "bearer "}) {
    const bool whole = marker == "authorization:";
    size_t i = 0;
    while (i < s->size()) {
      if (!StartsWithIgnoreCase(*s, i, marker) ||
          (i > 0 && IsKeyChar((*s)[i - 1]))) {
        ++i;
        continue;
      }
      size_t v = i + marker.size();
      while (v < s->size() && (*s)[v] == ' ') ++v;
      size_t end = v;
      while (end < s->size() && (*s)[end] != '\n' && (*s)[end] != '\r' &&
             (*s)[end] != '"' && (*s)[end] != ',' &&
             (whole || (*s)[end] != ' ')) {
        ++end;
      }
      if (end > v && s->compare(v, end - v, kMask) != 0) {
        s->replace(v, end - v, kMask);
      }
      i = v + kMask.size();
    }
  }
}

}  // namespace

std::string RedactSecrets(std::string_view text) {
  std::string out(text);
  MaskUserinfo(&out);
  MaskParameters(&out);
  MaskHeaders(&out);
  return out;
}

}  // namespace herald
