// Router: the server's endpoints as rows of a table, in cpp-httplib's
// `svr.Get(pattern, handler)` style. A row is a method, a path pattern
// ("/api/relays/{name}/parked/{id}"), the token scope it needs and a
// handler; one file per resource adds its rows (events.cc, streams.cc,
// relays.cc, health.cc), and MountStatic serves in-memory files.
//
// Dispatch, for one request:
//   1. the path is split on '/' (empty segments skipped) and each segment is
//      percent-decoded on its own, so an encoded '/' stays inside a name
//      (a bad escape: 400);
//   2. among the patterns that match, the most specific wins (at the first
//      segment where two differ, a literal beats a {parameter}), then the
//      one added first;
//   3. no pattern: 404. HEAD runs the pattern's GET row (the transport
//      sends the GET's head without its body); OPTIONS answers 204 with
//      `Allow`, no token needed (a CORS preflight). A pattern without a row
//      for the method: 405 with `Allow` listing the pattern's methods in
//      the order they were added (HEAD after GET, OPTIONS last);
//   4. the bearer token is checked against the row's scope (auth.cc);
//   5. the handler runs, on the calling (I/O) thread: it must not block,
//      and must call `reply` exactly once, on any thread.
// With CORS origins set, every answer that passes through here carries
// `Access-Control-Allow-Origin` for an allowed `Origin` (and `Vary: Origin`
// unless "*" is allowed); a preflight also gets the allowed methods and
// request headers.
// Metrics label a response with its row's label (the pattern unless given),
// or "other" when no row matched.
//
// Thread safety: rows are added before the first Dispatch; Dispatch may
// then be called from any thread at once.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "herald/config.h"
#include "herald/server.h"
#include "server/internal.h"

namespace herald::detail {

// Who may call an endpoint when tokens are configured (with no token
// configured, everyone may call everything).
enum class Scope { kPublic, kRead, kAppend, kAdmin };

// The {parameters} of a matched pattern, percent-decoded.
class PathParams {
 public:
  // The value of `{name}`; "" when the pattern has no such parameter.
  const std::string& Get(std::string_view name) const;
  void Add(std::string name, std::string value) {
    values_.emplace_back(std::move(name), std::move(value));
  }

 private:
  std::vector<std::pair<std::string, std::string>> values_;
};

using Reply = std::function<void(Response)>;
using Handler =
    std::function<void(Request&& request, const PathParams& params, Reply)>;

class Router {
 public:
  // `tokens` (the [server] tokens) must outlive the router.
  explicit Router(const std::vector<TokenConfig>* tokens) : tokens_(tokens) {}

  // Adds a row. `label` names the row in metrics; "" = the pattern.
  void Add(std::string method, std::string pattern, Scope scope,
           Handler handler, std::string label = "");
  void Get(std::string pattern, Scope scope, Handler handler) {
    Add("GET", std::move(pattern), scope, std::move(handler));
  }
  void Post(std::string pattern, Scope scope, Handler handler) {
    Add("POST", std::move(pattern), scope, std::move(handler));
  }
  void Delete(std::string pattern, Scope scope, Handler handler) {
    Add("DELETE", std::move(pattern), scope, std::move(handler));
  }

  // Serves `files` under `prefix` ("/console": "/console/app.js"; a file
  // named "index.html" also answers "/console" itself) for GET and HEAD,
  // with their content type, a strong ETag (If-None-Match answers 304) and
  // `Cache-Control: no-cache` (clients revalidate, so a new binary's assets
  // are picked up). Public: no token needed. Metrics label: prefix + "/*".
  void MountStatic(const std::string& prefix, std::vector<StaticFile> files);

  // Origins allowed to call from a browser ("*": any). Default none.
  void SetCorsOrigins(std::vector<std::string> origins) {
    cors_origins_ = std::move(origins);
  }

  // Routes one request (see the top of this file).
  void Dispatch(Request request,
                std::function<void(Response, std::string label)> respond) const;

 private:
  struct Row {
    std::string method;
    std::vector<std::string> segments;  // "{name}" for a parameter
    std::string pattern;
    Scope scope;
    Handler handler;
    std::string label;
  };
  static bool Matches(const Row& row, const std::vector<std::string>& parts);
  // The CORS headers every answer to a request from `origin` carries.
  std::vector<std::pair<std::string, std::string>> CorsHeaders(
      std::string_view origin, bool* allowed) const;
  // Whether `a` is more specific than `b` (both match the same path).
  static bool MoreSpecific(const Row& a, const Row& b);

  const std::vector<TokenConfig>* tokens_;
  std::vector<Row> rows_;
  std::vector<std::string> cors_origins_;
};

// Checks the Authorization header against `tokens` for an endpoint of
// scope `need`: an error response (401 or 403, JSON body), or nullopt when the
// call may go on. With no tokens configured every call may go on.
std::optional<Response> Authorize(const std::vector<TokenConfig>& tokens,
                                  std::string_view authorization, Scope need);

// The configured token `authorization` ("Bearer TOKEN") names, or null
// (no header, another scheme, an unknown token).
const TokenConfig* FindToken(const std::vector<TokenConfig>& tokens,
                             std::string_view authorization);

// Who makes a request, for audit lines: "token 'NAME'" (never the token
// itself), "(no token)", or "(no tokens configured)".
std::string CallerName(const std::vector<TokenConfig>& tokens,
                       std::string_view authorization);

// Writes "herald: audit: LINE" to the server's log (stderr) as one line.
void AuditLog(std::string_view line);

}  // namespace herald::detail
