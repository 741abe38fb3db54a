// Bearer tokens: which token may call which endpoint (see docs/http-api.md,
// "Security"), and the audit lines of operator actions. Pure functions of
// their inputs (AuditLog writes one line to stderr); any thread.
#include <algorithm>
#include <cctype>
#include <cstdio>

#include "server/router.h"

namespace herald::detail {

namespace {

bool ConstantTimeEquals(std::string_view secret, std::string_view given) {
  // Runs over every byte of `given` whatever matches, and never exits early.
  unsigned diff = secret.size() != given.size() ? 1u : 0u;
  if (secret.empty()) return false;
  for (size_t i = 0; i < given.size(); ++i) {
    diff |= static_cast<unsigned char>(given[i]) ^
            static_cast<unsigned char>(secret[i % secret.size()]);
  }
  return diff == 0;
}

Response Unauthorized(std::string_view message, const char* challenge) {
  auto r = Api::Error(401, "unauthorized", message);
  r.headers.emplace_back("WWW-Authenticate", challenge);
  return r;
}

}  // namespace

const TokenConfig* FindToken(const std::vector<TokenConfig>& tokens,
                             std::string_view authorization) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size() ||
      !std::equal(
          kBearer.begin(), kBearer.end(), authorization.begin(),
          [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
    return nullptr;
  }
  std::string_view given = authorization.substr(kBearer.size());
  const TokenConfig* match = nullptr;
  for (const auto& t : tokens) {
    if (ConstantTimeEquals(t.token, given) && !match) match = &t;
  }
  return match;
}

std::string CallerName(const std::vector<TokenConfig>& tokens,
                       std::string_view authorization) {
  if (tokens.empty()) return "(no tokens configured)";
  const TokenConfig* t = FindToken(tokens, authorization);
  if (!t) return "(no token)";
  return t->name.empty() ? "(unnamed token)" : "token '" + t->name + "'";
}

void AuditLog(std::string_view line) {
  std::string out = "herald: audit: ";
  for (char c : line) {
    // One line per action, whatever a name or an error holds.
    out.push_back(c == '\n' || c == '\r' ? ' ' : c);
  }
  out.push_back('\n');
  std::fwrite(out.data(), 1, out.size(), stderr);
  std::fflush(stderr);
}

std::optional<Response> Authorize(const std::vector<TokenConfig>& tokens,
                                  std::string_view authorization, Scope need) {
  if (tokens.empty() || need == Scope::kPublic) return std::nullopt;
  constexpr std::string_view kBearer = "Bearer ";
  constexpr const char* kRealm = "Bearer realm=\"herald\"";
  if (authorization.empty()) {
    return Unauthorized(
        "this endpoint needs a bearer token "
        "(Authorization: Bearer TOKEN)",
        kRealm);
  }
  if (authorization.size() <= kBearer.size() ||
      !std::equal(
          kBearer.begin(), kBearer.end(), authorization.begin(),
          [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
    return Unauthorized("the Authorization header must be 'Bearer TOKEN'",
                        kRealm);
  }
  const TokenConfig* match = FindToken(tokens, authorization);
  if (!match) {
    return Unauthorized("the bearer token is not valid",
                        "Bearer realm=\"herald\", error=\"invalid_token\"");
  }
  TokenScope scope = need == Scope::kRead     ? TokenScope::kRead
                     : need == Scope::kAppend ? TokenScope::kAppend
                                              : TokenScope::kAdmin;
  if (match->Allows(scope) || match->Allows(TokenScope::kAdmin)) {
    return std::nullopt;
  }
  const char* name = need == Scope::kRead     ? "read"
                     : need == Scope::kAppend ? "append"
                                              : "admin";
  return Api::Error(403, "forbidden",
                    std::string("this token lacks the '") + name + "' scope");
}

}  // namespace herald::detail
