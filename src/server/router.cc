// Router: the route table and static mounts (see router.h).
#include "server/router.h"

#include <cstdio>

namespace herald::detail {

namespace {

// Splits a path on '/', skipping empty segments.
std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    parts.emplace_back(path.substr(i, j - i));
    i = j;
  }
  return parts;
}

bool IsParam(const std::string& segment) {
  return segment.size() >= 2 && segment.front() == '{' && segment.back() == '}';
}

std::string StrongEtag(std::string_view body) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : body) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[40];
  std::snprintf(buf, sizeof buf, "\"%016llx-%zx\"",
                static_cast<unsigned long long>(h), body.size());
  return buf;
}

bool EtagListMatches(std::string_view header, std::string_view etag) {
  if (header.empty()) return false;
  if (header == "*") return true;
  size_t pos = 0;
  while ((pos = header.find(etag, pos)) != std::string_view::npos) {
    if (pos >= 2 && header.substr(pos - 2, 2) == "W/") {
      pos += etag.size();
      continue;
    }
    return true;
  }
  return false;
}

}  // namespace

const std::string& PathParams::Get(std::string_view name) const {
  static const std::string kEmpty;
  for (const auto& [k, v] : values_) {
    if (k == name) return v;
  }
  return kEmpty;
}

void Router::Add(std::string method, std::string pattern, Scope scope,
                 Handler handler, std::string label) {
  Row row;
  row.method = std::move(method);
  row.segments = SplitPath(pattern);
  row.label = label.empty() ? pattern : std::move(label);
  row.pattern = std::move(pattern);
  row.scope = scope;
  row.handler = std::move(handler);
  rows_.push_back(std::move(row));
}

bool Router::Matches(const Row& row, const std::vector<std::string>& parts) {
  if (row.segments.size() != parts.size()) return false;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!IsParam(row.segments[i]) && row.segments[i] != parts[i]) return false;
  }
  return true;
}

bool Router::MoreSpecific(const Row& a, const Row& b) {
  for (size_t i = 0; i < a.segments.size() && i < b.segments.size(); ++i) {
    bool pa = IsParam(a.segments[i]);
    bool pb = IsParam(b.segments[i]);
    if (pa != pb) return !pa;
  }
  return false;
}

void Router::MountStatic(const std::string& prefix,
                         std::vector<StaticFile> files) {
  std::string base = prefix;
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string label = base + "/*";
  for (auto& f : files) {
    struct Asset {
      std::string content_type;
      std::string body;
      std::string etag;
    };
    std::string etag = StrongEtag(f.body);
    auto asset = std::make_shared<const Asset>(
        Asset{f.content_type, std::move(f.body), std::move(etag)});
    Handler serve = [asset](Request&& req, const PathParams&,
                            const Reply& reply) {
      Response r;
      r.headers.emplace_back("ETag", asset->etag);
      r.headers.emplace_back("Cache-Control", "no-cache");
      if (EtagListMatches(req.if_none_match, asset->etag)) {
        r.status = 304;
        r.content_type.clear();
        return reply(std::move(r));
      }
      r.content_type = asset->content_type;
      r.body = asset->body;
      reply(std::move(r));
    };
    std::string path = f.path;
    while (!path.empty() && path.front() == '/') path.erase(0, 1);
    std::vector<std::string> patterns{base + "/" + path};
    if (path == "index.html") patterns.push_back(base.empty() ? "/" : base);
    for (const auto& p : patterns) Add("GET", p, Scope::kPublic, serve, label);
  }
}

std::vector<std::pair<std::string, std::string>> Router::CorsHeaders(
    std::string_view origin, bool* allowed) const {
  std::vector<std::pair<std::string, std::string>> h;
  *allowed = false;
  if (cors_origins_.empty()) return h;
  bool any = false;
  for (const auto& o : cors_origins_) {
    if (o == "*") any = true;
    if (!origin.empty() && (o == "*" || o == origin)) *allowed = true;
  }
  if (*allowed) {
    h.emplace_back("Access-Control-Allow-Origin",
                   any ? std::string("*") : std::string(origin));
    h.emplace_back("Access-Control-Expose-Headers",
                   "ETag, Location, WWW-Authenticate");
  }
  // The answer depends on Origin: caches must keep one per origin.
  if (!any) h.emplace_back("Vary", "Origin");
  return h;
}

void Router::Dispatch(
    Request req,
    std::function<void(Response, std::string label)> respond) const {
  bool cors_allowed = false;
  auto cors = CorsHeaders(req.origin, &cors_allowed);
  if (!cors.empty()) {
    respond = [cors, respond = std::move(respond)](Response r,
                                                   std::string label) {
      for (const auto& h : cors) r.headers.push_back(h);
      respond(std::move(r), std::move(label));
    };
  }
  // The path as sent (still encoded) so a '/' inside a name stays inside.
  std::string raw_path = req.target.substr(0, req.target.find('?'));
  std::vector<std::string> parts;
  for (const auto& r : SplitPath(raw_path)) {
    std::string d;
    if (!PercentDecode(r, false, &d)) {
      return respond(Api::Error(400, "invalid_argument",
                                "the path holds a malformed %-escape"),
                     "other");
    }
    parts.push_back(std::move(d));
  }
  const Row* best = nullptr;
  for (const auto& row : rows_) {
    if (Matches(row, parts) && (!best || MoreSpecific(row, *best))) {
      best = &row;
    }
  }
  if (!best) {
    return respond(Api::Error(404, "not_found",
                              "no such endpoint: " + req.method + " " +
                                  req.path.substr(0, 200)),
                   "other");
  }
  // The row for the method; HEAD falls back to GET.
  const Row* row = nullptr;
  const Row* get = nullptr;
  std::string allow;
  auto allow_method = [&allow](std::string_view m) {
    if (allow.find(m) == std::string::npos) {
      allow += (allow.empty() ? "" : ", ") + std::string(m);
    }
  };
  for (const auto& r : rows_) {
    if (r.pattern != best->pattern) continue;
    if (!row && r.method == req.method) row = &r;
    if (!get && r.method == "GET") get = &r;
    allow_method(r.method);
    if (r.method == "GET") allow_method("HEAD");
  }
  allow_method("OPTIONS");
  if (!row && req.method == "HEAD") row = get;
  if (!row && req.method == "OPTIONS") {
    // Also the CORS preflight, which never carries a token.
    Response r;
    r.status = 204;
    r.content_type.clear();
    r.headers.emplace_back("Allow", allow);
    if (cors_allowed) {
      r.headers.emplace_back("Access-Control-Allow-Methods", allow);
      r.headers.emplace_back(
          "Access-Control-Allow-Headers",
          "Authorization, Content-Type, Last-Event-ID, If-None-Match");
      r.headers.emplace_back("Access-Control-Max-Age", "600");
    }
    return respond(std::move(r), best->label);
  }
  if (!row) {
    auto r = Api::Error(405, "method_not_allowed",
                        req.method.substr(0, 16) +
                            " is not allowed here (allowed: " + allow + ")");
    r.headers.emplace_back("Allow", allow);
    return respond(std::move(r), "other");
  }
  if (auto denied = Authorize(*tokens_, req.authorization, row->scope)) {
    return respond(std::move(*denied), row->label);
  }
  PathParams params;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& s = row->segments[i];
    if (IsParam(s)) params.Add(s.substr(1, s.size() - 2), std::move(parts[i]));
  }
  row->handler(std::move(req), params,
               [respond = std::move(respond), label = row->label](Response r) {
                 respond(std::move(r), label);
               });
}

}  // namespace herald::detail
