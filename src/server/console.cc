// The operator console (docs/console.md): its assets, built into the
// binary from console/ (cmake/embed_files.cmake), served at "/" and
// "/console/"; and GET /api/whoami, which tells the page what the caller's
// token may do. Added only when [server] console is true (the default),
// except /api/whoami, which any API client may call.
#include "herald/json.h"
#include "server/resources.h"

namespace herald::detail {

// Generated from console/ by cmake/embed_files.cmake.
std::vector<StaticFile> ConsoleFiles();

namespace {

// {"tokens":B,"name":N|null,"scopes":[...]}: with no tokens configured every
// scope; with tokens, the scopes of the caller's token (admin implies
// the others), none without a token. An unknown token: 401.
Response WhoAmI(const std::vector<TokenConfig>& tokens,
                const std::string& authorization) {
  std::string body = "{\"tokens\":";
  body += tokens.empty() ? "false" : "true";
  const TokenConfig* t = nullptr;
  if (!tokens.empty() && !authorization.empty()) {
    t = FindToken(tokens, authorization);
    if (!t) {
      // The 401 any endpoint would give this header.
      if (auto denied = Authorize(tokens, authorization, Scope::kRead)) {
        return std::move(*denied);
      }
    }
  }
  body += ",\"name\":";
  body += t && !t->name.empty() ? JsonString(t->name) : "null";
  body += ",\"scopes\":[";
  bool first = true;
  for (auto [scope, name] : {std::pair{TokenScope::kRead, "read"},
                             std::pair{TokenScope::kAppend, "append"},
                             std::pair{TokenScope::kAdmin, "admin"}}) {
    bool allowed = tokens.empty() ||
                   (t && (t->Allows(scope) || t->Allows(TokenScope::kAdmin)));
    if (!allowed) continue;
    if (!first) body += ",";
    first = false;
    body += JsonString(name);
  }
  body += "]}";
  return NoStoreResponse(std::move(body));
}

}  // namespace

void AddConsoleRoutes(const Context& ctx, Router* router) {
  const std::vector<TokenConfig>* tokens = &ctx->options.config.tokens;
  router->Get("/api/whoami", Scope::kPublic,
              [tokens](Request&& req, const PathParams&, const Reply& reply) {
                Status s = CheckQuery(req.query, {});
                if (!s.ok()) return reply(ErrorFor(s));
                reply(WhoAmI(*tokens, req.authorization));
              });
  if (!ctx->options.config.console) return;
  std::vector<StaticFile> files = ConsoleFiles();
  // "/" answers the console's page too; its assets are named by absolute
  // paths (/console/app.js), so both entry points load the same files.
  for (const auto& f : files) {
    if (f.path == "index.html") router->MountStatic("/", {f});
  }
  router->MountStatic("/console", std::move(files));
}

}  // namespace herald::detail
