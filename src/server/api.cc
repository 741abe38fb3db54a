// Api: what each HTTP request means (see internal.h and docs/http-api.md).
//
// Handle() runs on an I/O thread and must not block: reads served from the
// Hub's memory answer at once; anything touching the database goes to the
// executor (the worker pool); appends go to the Appender; long-polls wait on
// the Hub. Every path ends in exactly one call of `respond`.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <span>

#include "herald/json.h"
#include "herald/relay.h"
#include "server/internal.h"

namespace herald::detail {

namespace {

constexpr int kDefaultLimit = 100;
// Offsets and versions above 2^53 - 1 cannot round-trip through JSON
// numbers in most clients; they are refused as too large.
constexpr int64_t kMaxOffset = (int64_t{1} << 53) - 1;
constexpr const char* kImmutableCache = "public, max-age=31536000, immutable";

using Respond = std::function<void(Response, std::string)>;
using Query = std::vector<std::pair<std::string, std::string>>;

// ---- small helpers ----------------------------------------------------------

// Strict non-negative integer: digits only, at most kMaxOffset.
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

// Seconds, decimals allowed ("0.5"), in [0, max_seconds].
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

// Checks that every query parameter is known and, except `repeatable`,
// given once.
Status CheckQuery(const Query& query,
                  std::initializer_list<std::string_view> allowed,
                  std::string_view repeatable = "") {
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

int HttpStatusFor(const Status& s) {
  switch (s.code()) {
    case Status::Code::kOk:
      return 200;
    case Status::Code::kInvalidArgument:
      return 400;
    case Status::Code::kNotFound:
      return 404;
    case Status::Code::kConflict:
      return 409;
    case Status::Code::kResourceExhausted:
      return 413;
    case Status::Code::kUnavailable:
      return 503;
    case Status::Code::kFailedPrecondition:
      return 409;
    default:
      return 500;
  }
}

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

uint64_t Fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// A page body is kPageStart, the events' JSON joined by ',', then what
// EndPage appends.
constexpr std::string_view kPageStart = "{\"events\":[";
void EndPage(int64_t next_offset, std::string* body) {
  body->append("],\"next_offset\":");
  body->append(std::to_string(next_offset));
  body->push_back('}');
}

bool IsJsonRequest(std::string_view ct) {
  auto semi = ct.find(';');
  std::string base(ct.substr(0, semi));
  while (!base.empty() && base.back() == ' ') base.pop_back();
  for (char& c : base) c = static_cast<char>(std::tolower(c));
  return base == "application/json";
}

bool Selects(const RouteConfig& r, const Event& e) {
  auto any = [](const std::vector<std::string>& globs, const std::string& s) {
    if (globs.empty()) return true;
    for (const auto& g : globs) {
      if (GlobMatch(g, s)) return true;
    }
    return false;
  };
  return any(r.types, e.type) && any(r.streams, e.stream);
}

void AppendNumberField(std::string* out, std::string_view name, double v) {
  out->push_back('"');
  out->append(name);
  out->append("\":");
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  out->append(buf);
}

// A 200 JSON answer that describes the present state: never cached.
Response NoStoreResponse(std::string body) {
  Response r;
  r.body = std::move(body);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

}  // namespace

// Appends an SSE frame: "id: N\ndata: ...\n\n". The event JSON may hold
// line breaks (a payload is embedded verbatim), so each line gets its own
// "data:" field; carriage returns, only ever whitespace there, are dropped.
void AppendSseFrame(int64_t position, std::string_view json, std::string* out) {
  out->append("id: ");
  out->append(std::to_string(position));
  out->append("\ndata: ");
  size_t start = 0;
  while (true) {
    size_t nl = json.find('\n', start);
    std::string_view line =
        json.substr(start, nl == std::string_view::npos ? std::string_view::npos
                                                        : nl - start);
    for (char c : line) {
      if (c != '\r') out->push_back(c);
    }
    if (nl == std::string_view::npos) break;
    out->append("\ndata: ");
    start = nl + 1;
  }
  out->append("\n\n");
}

// ---- Impl -------------------------------------------------------------------

struct Api::Impl : std::enable_shared_from_this<Api::Impl> {
  Store* store;
  Relay* relay;
  Hub* hub;
  Appender* appender;
  HttpMetrics* metrics;
  Executor executor;
  ServerOptions options;
  std::unique_ptr<PageCache> pages;

  enum class Need { kNone, kRead, kAppend, kAdmin };

  // Checks the bearer token. Returns an error response, or nullopt.
  std::optional<Response> Authorize(const Request& req, Need need) const {
    if (options.config.tokens.empty() || need == Need::kNone) {
      return std::nullopt;
    }
    std::string_view h = req.authorization;
    constexpr std::string_view kBearer = "Bearer ";
    if (h.empty()) {
      auto r = Error(401, "unauthorized",
                     "this endpoint needs a bearer token "
                     "(Authorization: Bearer TOKEN)");
      r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"herald\"");
      return r;
    }
    if (h.size() <= kBearer.size() ||
        !std::equal(kBearer.begin(), kBearer.end(), h.begin(),
                    [](char a, char b) {
                      return std::tolower(a) == std::tolower(b);
                    })) {
      auto r = Error(401, "unauthorized",
                     "the Authorization header must be 'Bearer TOKEN'");
      r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"herald\"");
      return r;
    }
    std::string_view given = h.substr(kBearer.size());
    const TokenConfig* match = nullptr;
    for (const auto& t : options.config.tokens) {
      if (ConstantTimeEquals(t.token, given) && !match) match = &t;
    }
    if (!match) {
      auto r = Error(401, "unauthorized", "the bearer token is not valid");
      r.headers.emplace_back(
          "WWW-Authenticate",
          "Bearer realm=\"herald\", error=\"invalid_token\"");
      return r;
    }
    TokenScope scope = need == Need::kRead     ? TokenScope::kRead
                       : need == Need::kAppend ? TokenScope::kAppend
                                               : TokenScope::kAdmin;
    if (match->Allows(scope) || match->Allows(TokenScope::kAdmin)) {
      return std::nullopt;
    }
    const char* name = need == Need::kRead     ? "read"
                       : need == Need::kAppend ? "append"
                                               : "admin";
    return Error(403, "forbidden",
                 std::string("this token lacks the '") + name + "' scope");
  }

  std::string Etag(int64_t from, int limit, const EventFilter& f) const {
    std::string tag = hub->db_tag();
    if (tag.empty()) return "";
    std::string etag =
        "\"" + tag + "-" + std::to_string(from) + "-" + std::to_string(limit);
    if (!f.empty()) {
      uint64_t h = Fnv1a(f.stream);
      for (const auto& t : f.types) h = Fnv1a(t, Fnv1a("\x1f", h));
      char buf[20];
      std::snprintf(buf, sizeof buf, "-%016llx",
                    static_cast<unsigned long long>(h));
      etag += buf;
    }
    etag += "\"";
    return etag;
  }

  static bool EtagMatches(std::string_view header, std::string_view etag) {
    if (header.empty() || etag.empty()) return false;
    if (header == "*") return true;
    size_t pos = 0;
    while ((pos = header.find(etag, pos)) != std::string_view::npos) {
      // A weak validator ("W/...") does not match a strong comparison.
      if (pos >= 2 && header.substr(pos - 2, 2) == "W/") {
        pos += etag.size();
        continue;
      }
      return true;
    }
    return false;
  }

  // A page rendered whole: `body` holds `count` events.
  Response PageResponse(std::string body, size_t count, int64_t from, int limit,
                        const EventFilter& filter) const {
    Response r;
    r.body = std::move(body);
    return WithCaching(std::move(r), count, from, limit, filter);
  }
  // A page from memory, written from the cached strings.
  Response PageResponse(std::vector<std::shared_ptr<const CachedEvent>> events,
                        int64_t next_offset, int64_t from, int limit,
                        const EventFilter& filter) const {
    Response r;
    r.body = kPageStart;
    size_t n = events.size();
    r.parts = std::move(events);
    EndPage(next_offset, &r.tail);
    return WithCaching(std::move(r), n, from, limit, filter);
  }
  Response WithCaching(Response r, size_t count, int64_t from, int limit,
                       const EventFilter& filter) const {
    if (static_cast<int>(count) == limit) {
      // A full page lies below the head: it never changes.
      std::string etag = Etag(from, limit, filter);
      if (!etag.empty()) {
        r.headers.emplace_back("ETag", etag);
        r.headers.emplace_back("Cache-Control", kImmutableCache);
        return r;
      }
    }
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
  }

  // ---- GET /api/events --------------------------------------------------

  struct PageQuery {
    int64_t from = 1;
    int limit = kDefaultLimit;
    EventFilter filter;
    std::chrono::milliseconds wait{0};
  };

  Status ParsePageQuery(const Query& q, bool sse, PageQuery* out) const {
    if (sse) {
      HERALD_RETURN_IF_ERROR(
          CheckQuery(q, {"offset", "type", "stream"}, "type"));
    } else {
      HERALD_RETURN_IF_ERROR(
          CheckQuery(q, {"offset", "limit", "type", "stream", "wait"}, "type"));
    }
    int64_t v;
    if (auto* s = QueryValue(q, "offset")) {
      HERALD_RETURN_IF_ERROR(ParseCount("offset", *s, 0, kMaxOffset, &v));
      out->from = std::max<int64_t>(v, 1);
    }
    if (auto* s = QueryValue(q, "limit")) {
      HERALD_RETURN_IF_ERROR(ParseCount("limit", *s, 1, kMaxReadLimit, &v));
      out->limit = static_cast<int>(v);
    }
    if (auto* s = QueryValue(q, "wait")) {
      double max_s = options.config.max_wait.count() / 1000.0;
      HERALD_RETURN_IF_ERROR(ParseSeconds("wait", *s, max_s, &out->wait));
    }
    for (const auto& [k, val] : q) {
      if (k == "type") {
        if (val.empty()) {
          return Status::InvalidArgument("type must not be empty");
        }
        if (val.size() > kMaxTypeLength) {
          return Status::InvalidArgument("type is longer than 256 bytes");
        }
        out->filter.types.push_back(val);
      }
    }
    if (auto* s = QueryValue(q, "stream")) {
      if (s->empty() || s->size() > kMaxStreamLength) {
        return Status::InvalidArgument("stream must be 1 to 256 bytes long");
      }
      out->filter.stream = *s;
    }
    return Status::OK();
  }

  // Reads the page from the Hub's memory if it can, else from the store on
  // the executor; `then` gets the response.
  void ReadPage(const PageQuery& pq, std::function<void(Response)> then) {
    // A full page served before, from the tail or the store.
    std::string etag = Etag(pq.from, pq.limit, pq.filter);
    if (pages && !etag.empty()) {
      if (auto body = pages->Get(etag)) {
        Response r;
        r.shared_body = std::move(body);
        r.headers.emplace_back("ETag", etag);
        r.headers.emplace_back("Cache-Control", kImmutableCache);
        then(std::move(r));
        return;
      }
    }
    TailRead tr;
    bool globs_ok = std::none_of(
        pq.filter.types.begin(), pq.filter.types.end(),
        [](const std::string& t) { return t.find('[') != std::string::npos; });
    if (globs_ok && hub->Read(pq.from, pq.limit, pq.filter, &tr) &&
        (!tr.events.empty() || pq.from <= hub->head())) {
      bool full = static_cast<int>(tr.events.size()) == pq.limit;
      Response r = PageResponse(std::move(tr.events), tr.next_offset, pq.from,
                                pq.limit, pq.filter);
      if (full && pages && !etag.empty()) {
        // Assemble it once; the next requests copy one string.
        auto body = std::make_shared<std::string>();
        body->reserve(r.body.size() + r.tail.size() + r.parts.size() * 400);
        *body += r.body;
        for (size_t i = 0; i < r.parts.size(); ++i) {
          const std::string& j = r.parts[i]->json;
          body->append(j.data(),
                       i + 1 < r.parts.size() ? j.size() : j.size() - 1);
        }
        *body += r.tail;
        std::shared_ptr<const std::string> shared = std::move(body);
        pages->Put(etag, shared);
        r.body.clear();
        r.parts.clear();
        r.tail.clear();
        r.shared_body = std::move(shared);
      }
      then(std::move(r));
      return;
    }
    auto self = shared_from_this();
    executor([self, pq, etag, then = std::move(then)] {
      ReadRequest rr;
      rr.offset = pq.from;
      rr.limit = pq.limit;
      rr.types = pq.filter.types;
      rr.stream = pq.filter.stream;
      // Rendered straight from the store's rows: no Event copies.
      std::string body(kPageStart);
      size_t count = 0;
      auto page = self->store->Scan(rr, [&](const EventView& e) {
        if (count++ > 0) {
          body.push_back(',');
        } else {
          body.reserve(std::min<size_t>(size_t{4} << 20, pq.limit * 384));
        }
        AppendEventJson(e, &body);
      });
      if (!page.ok()) {
        then(ErrorFor(page.status()));
        return;
      }
      EndPage(page->next_offset, &body);
      Response r = self->PageResponse(std::move(body), count, pq.from, pq.limit,
                                      pq.filter);
      if (self->pages && !etag.empty() && static_cast<int>(count) == pq.limit) {
        auto body = std::make_shared<const std::string>(std::move(r.body));
        self->pages->Put(etag, body);
        r.body.clear();
        r.shared_body = std::move(body);
      }
      then(std::move(r));
    });
  }

  // Long-poll: waits until the page at pq.from holds something or the
  // deadline passes, then reads it.
  void WaitPage(PageQuery pq, Clock::time_point deadline,
                std::function<void(Response)> then) {
    TailRead tr;
    bool globs_ok = std::none_of(
        pq.filter.types.begin(), pq.filter.types.end(),
        [](const std::string& t) { return t.find('[') != std::string::npos; });
    if (!globs_ok || !hub->Read(pq.from, pq.limit, pq.filter, &tr) ||
        !tr.events.empty() || Clock::now() >= deadline) {
      ReadPage(pq, std::move(then));
      return;
    }
    // Nothing yet; for a filtered read, positions up to tr.next_offset were
    // looked at and did not match.
    int64_t next = tr.next_offset;
    auto self = shared_from_this();
    hub->Wait(
        next, deadline,
        [self, pq, deadline, next, then = std::move(then)](bool woke) mutable {
          if (!woke) {
            // Timed out (or stopping): an empty page that still moves
            // past whatever a filter skipped.
            std::string body(kPageStart);
            EndPage(std::max(next, pq.from), &body);
            then(self->PageResponse(std::move(body), 0, pq.from, pq.limit,
                                    pq.filter));
            return;
          }
          if (!pq.filter.empty()) pq.from = std::max(pq.from, next);
          self->WaitPage(pq, deadline, std::move(then));
        });
  }

  void GetEvents(const Request& req, std::function<void(Response)> then) {
    PageQuery pq;
    Status s = ParsePageQuery(req.query, false, &pq);
    if (!s.ok()) return then(ErrorFor(s));
    if (!req.if_none_match.empty() && pq.from + pq.limit - 1 <= hub->head() &&
        pq.filter.empty()) {
      std::string etag = Etag(pq.from, pq.limit, pq.filter);
      if (EtagMatches(req.if_none_match, etag)) {
        Response r;
        r.status = 304;
        r.content_type.clear();
        r.headers.emplace_back("ETag", etag);
        r.headers.emplace_back("Cache-Control", kImmutableCache);
        return then(std::move(r));
      }
    }
    std::string inm = req.if_none_match;
    auto finish = [inm, then = std::move(then)](Response r) {
      if (!inm.empty() && r.status == 200) {
        for (const auto& [k, v] : r.headers) {
          if (k == "ETag" && EtagMatches(inm, v)) {
            r.status = 304;
            r.body.clear();
            r.parts.clear();
            r.tail.clear();
            r.shared_body.reset();
            r.content_type.clear();
            break;
          }
        }
      }
      then(std::move(r));
    };
    if (pq.wait.count() > 0) {
      WaitPage(pq, Clock::now() + pq.wait, std::move(finish));
    } else {
      ReadPage(pq, std::move(finish));
    }
  }

  // ---- GET /api/events/stream ------------------------------------------

  Response StartStream(const Request& req) {
    PageQuery pq;
    Status s = ParsePageQuery(req.query, true, &pq);
    if (!s.ok()) return ErrorFor(s);
    if (!req.last_event_id.empty()) {
      int64_t id;
      s = ParseCount("Last-Event-ID", req.last_event_id, 0, kMaxOffset - 1,
                     &id);
      if (!s.ok()) return ErrorFor(s);
      pq.from = id + 1;
    }
    Response r;
    r.sse = true;
    r.sse_offset = pq.from;
    r.sse_filter = pq.filter;
    r.content_type = "text/event-stream";
    return r;
  }

  void SseChunk(int64_t cursor, const EventFilter& filter,
                std::function<void(bool, std::string, int64_t)> done) {
    constexpr int kChunk = 1000;
    TailRead tr;
    bool globs_ok = std::none_of(
        filter.types.begin(), filter.types.end(),
        [](const std::string& t) { return t.find('[') != std::string::npos; });
    if (globs_ok && hub->Read(cursor, kChunk, filter, &tr)) {
      std::string out;
      for (const auto& e : tr.events) out += e->sse;
      done(true, std::move(out), tr.next_offset);
      return;
    }
    auto self = shared_from_this();
    executor([self, cursor, filter, done = std::move(done)] {
      ReadRequest rr;
      rr.offset = cursor;
      rr.limit = kChunk;
      rr.types = filter.types;
      rr.stream = filter.stream;
      auto page = self->store->Read(rr);
      if (!page.ok()) return done(false, "", cursor);
      std::string out;
      for (const auto& e : page->events) {
        AppendSseFrame(e.position, EventToJson(e), &out);
      }
      done(true, std::move(out), page->next_offset);
    });
  }

  // ---- GET /api/events/{id} ----------------------------------------------

  void GetEvent(std::string id, std::function<void(Response)> then) {
    if (!IsUuid(id)) {
      return then(Error(400, "invalid_argument",
                        "event id '" + id.substr(0, 64) + "' is not a UUID"));
    }
    for (char& c : id) c = static_cast<char>(std::tolower(c));
    auto self = shared_from_this();
    executor([self, id, then = std::move(then)] {
      auto e = self->store->Get(id);
      if (!e.ok()) return then(ErrorFor(e.status()));
      std::string body = EventToJson(*e);
      body.pop_back();  // '}'
      body += ",\"routes\":[";
      if (self->relay) {
        bool first = true;
        for (const auto& rc : self->relay->routes()) {
          if (!Selects(rc, *e)) continue;
          if (!first) body += ",";
          first = false;
          body += "{\"route\":" + JsonString(rc.name) + ",\"status\":";
          auto parked = self->relay->ListParked(rc.name, "", 100000);
          const ParkedEvent* p = nullptr;
          if (parked.ok()) {
            for (const auto& pe : *parked) {
              if (pe.event.id == e->id) p = &pe;
            }
          }
          if (p) {
            body += JsonString(p->state) +
                    ",\"attempts\":" + std::to_string(p->attempts) +
                    ",\"error\":" + JsonString(p->error) + ",\"parked_at\":" +
                    JsonString(FormatRfc3339(p->parked_at_us));
          } else {
            auto cp =
                self->store->GetCheckpoint(Relay::CheckpointName(rc.name));
            bool delivered = cp.ok() && e->position > 0 && e->position < *cp;
            body += delivered ? "\"delivered\"" : "\"pending\"";
            if (!delivered) {
              auto st = self->relay->GetStatus(rc.name);
              if (st.ok() && !st->last_error.empty()) {
                body += ",\"error\":" + JsonString(st->last_error);
              }
            }
          }
          body += "}";
        }
      }
      body += "]}";
      then(NoStoreResponse(std::move(body)));
    });
  }

  // ---- GET /api/streams/{stream} -----------------------------------------

  void GetStream(std::string stream, const Query& q,
                 std::function<void(Response)> then) {
    Status s = CheckQuery(q, {"from_version", "limit"});
    int64_t from = 1, limit = kDefaultLimit;
    if (s.ok()) {
      if (auto* v = QueryValue(q, "from_version")) {
        s = ParseCount("from_version", *v, 0, kMaxOffset, &from);
      }
    }
    if (s.ok()) {
      if (auto* v = QueryValue(q, "limit")) {
        s = ParseCount("limit", *v, 1, kMaxReadLimit, &limit);
      }
    }
    if (s.ok() && (stream.empty() || stream.size() > kMaxStreamLength)) {
      s = Status::InvalidArgument("stream must be 1 to 256 bytes long");
    }
    if (!s.ok()) return then(ErrorFor(s));
    from = std::max<int64_t>(from, 1);
    auto self = shared_from_this();
    executor([self, stream, from, limit, then = std::move(then)] {
      auto events =
          self->store->ReadStream(stream, from, static_cast<int>(limit));
      if (!events.ok()) return then(ErrorFor(events.status()));
      std::string body = "{\"stream\":" + JsonString(stream) + ",\"events\":[";
      for (size_t i = 0; i < events->size(); ++i) {
        if (i) body += ",";
        AppendEventJson((*events)[i], &body);
      }
      int64_t next = events->empty() ? from : events->back().stream_version + 1;
      body += "],\"next_version\":" + std::to_string(next) + "}";
      then(NoStoreResponse(std::move(body)));
    });
  }

  // ---- POST /api/events ----------------------------------------------------

  void PostEvents(Request req, std::function<void(Response)> then) {
    if (!IsJsonRequest(req.content_type)) {
      return then(Error(415, "unsupported_media_type",
                        "POST /api/events takes Content-Type: "
                        "application/json, not '" +
                            req.content_type.substr(0, 64) + "'"));
    }
    Status s = CheckQuery(req.query, {"expected_version"});
    AppendOptions ao;
    if (s.ok()) {
      if (auto* v = QueryValue(req.query, "expected_version")) {
        int64_t ev;
        s = ParseCount("expected_version", *v, 0, kMaxOffset, &ev);
        ao.expected_version = ev;
      }
    }
    if (!s.ok()) return then(ErrorFor(s));
    auto self = shared_from_this();
    // Small bodies are parsed here, on the I/O thread: a hop to a worker
    // costs more than the parse. Large ones go to the workers.
    bool inline_parse = req.body.size() <= (64u << 10);
    auto work = [self, req = std::move(req), ao,
                 then = std::move(then)]() mutable {
      // One decoder for the JSON form of events (herald/event_json.h).
      bool array = false;
      std::vector<Event> events;
      Status ds = DecodeEventsJson(req.body, self->options.max_events_per_post,
                                   &events, &array);
      if (!ds.ok()) {
        // A body that is not JSON at all is told apart from a bad event.
        if (Status js = CheckJson(req.body); !js.ok()) {
          return then(Error(400, "invalid_json",
                            "the body is not valid JSON: " + js.message()));
        }
        if (ds.code() == Status::Code::kResourceExhausted) {
          return then(Error(413, "too_many_events", ds.message()));
        }
        return then(ErrorFor(ds));
      }
      if (ao.expected_version) {
        for (const auto& e : events) {
          if (e.stream != events[0].stream) {
            return then(Error(400, "invalid_argument",
                              "expected_version needs every event in one "
                              "stream"));
          }
        }
      }
      AppendJob job;
      job.events = std::move(events);
      job.options = ao;
      job.done = [array, then = std::move(then)](Result<AppendResult> r,
                                                 std::vector<Event> stored) {
        if (!r.ok()) return then(ErrorFor(r.status()));
        Response resp;
        resp.status = r->created > 0 ? 201 : 200;
        if (array) {
          resp.body = "[";
          for (size_t i = 0; i < stored.size(); ++i) {
            if (i) resp.body += ",";
            AppendEventJson(stored[i], &resp.body);
          }
          resp.body += "]";
        } else {
          resp.body = EventToJson(stored[0]);
          if (!stored[0].id.empty()) {
            resp.headers.emplace_back("Location",
                                      "/api/events/" + stored[0].id);
          }
        }
        then(std::move(resp));
      };
      self->appender->Submit(std::move(job));
    };
    if (inline_parse) {
      work();
    } else {
      executor(std::move(work));
    }
  }

  // ---- relays ------------------------------------------------------------

  static void AppendRouteStatus(const RouteStatus& st, std::string* b) {
    *b += "{\"name\":" + JsonString(st.name) +
          ",\"sender\":" + JsonString(st.sender) +
          ",\"on_failure\":" + JsonString(st.on_failure) +
          ",\"checkpoint\":" + std::to_string(st.checkpoint) +
          ",\"head\":" + std::to_string(st.head) +
          ",\"lag_events\":" + std::to_string(st.lag_events) + ",";
    AppendNumberField(b, "lag_seconds", st.lag_seconds);
    *b += ",\"parked\":" + std::to_string(st.parked) +
          ",\"parked_only\":" + std::to_string(st.parked_only) +
          ",\"last_error\":" + JsonString(st.last_error) +
          ",\"last_error_at\":" +
          (st.last_error_at_us ? JsonString(FormatRfc3339(st.last_error_at_us))
                               : std::string("null")) +
          ",\"lease_owner\":" + JsonString(st.lease_owner) +
          ",\"lease_expires_at\":" +
          (st.lease_expires_at_us
               ? JsonString(FormatRfc3339(st.lease_expires_at_us))
               : std::string("null")) +
          ",\"running\":" + (st.running ? "true" : "false") +
          ",\"holding_lease\":" + (st.holding_lease ? "true" : "false") +
          ",\"state\":" + JsonString(st.state) + "}";
  }

  Status CheckRoute(const std::string& name) const {
    if (!relay) {
      return Status::NotFound("no route named '" + name.substr(0, 64) +
                              "' (this server runs no relay)");
    }
    for (const auto& r : relay->routes()) {
      if (r.name == name) return Status::OK();
    }
    return Status::NotFound("no route named '" + name.substr(0, 64) + "'");
  }

  void GetRelays(std::function<void(Response)> then) {
    auto self = shared_from_this();
    executor([self, then = std::move(then)] {
      std::string body = "{\"routes\":[";
      if (self->relay) {
        auto st = self->relay->GetStatuses();
        if (!st.ok()) return then(ErrorFor(st.status()));
        for (size_t i = 0; i < st->size(); ++i) {
          if (i) body += ",";
          AppendRouteStatus((*st)[i], &body);
        }
      }
      body += "]}";
      then(NoStoreResponse(std::move(body)));
    });
  }

  void GetParked(std::string route, const Query& q,
                 std::function<void(Response)> then) {
    Status s = CheckQuery(q, {"state", "limit"});
    int64_t limit = 1000;
    std::string state;
    if (s.ok()) {
      if (auto* v = QueryValue(q, "limit")) {
        s = ParseCount("limit", *v, 1, kMaxReadLimit, &limit);
      }
    }
    if (s.ok()) {
      if (auto* v = QueryValue(q, "state")) {
        state = *v;
        if (state != "parked" && state != "held" && state != "retry") {
          s = Status::InvalidArgument(
              "state must be parked, held or retry, not '" +
              state.substr(0, 32) + "'");
        }
      }
    }
    if (s.ok()) s = CheckRoute(route);
    if (!s.ok()) return then(ErrorFor(s));
    auto self = shared_from_this();
    executor([self, route, state, limit, then = std::move(then)] {
      auto list =
          self->relay->ListParked(route, state, static_cast<int>(limit));
      if (!list.ok()) return then(ErrorFor(list.status()));
      std::string body = "{\"route\":" + JsonString(route) + ",\"parked\":[";
      for (size_t i = 0; i < list->size(); ++i) {
        const auto& p = (*list)[i];
        if (i) body += ",";
        body += "{\"state\":" + JsonString(p.state) +
                ",\"attempts\":" + std::to_string(p.attempts) +
                ",\"error\":" + JsonString(p.error) +
                ",\"parked_at\":" + JsonString(FormatRfc3339(p.parked_at_us)) +
                ",\"event\":";
        AppendEventJson(p.event, &body);
        body += "}";
      }
      body += "]}";
      then(NoStoreResponse(std::move(body)));
    });
  }

  void ParkedAction(bool retry, std::string route, std::string id,
                    const Query& q, std::function<void(Response)> then) {
    Status s = CheckQuery(q, {});
    if (s.ok() && !IsUuid(id)) {
      s = Status::InvalidArgument("event id '" + id.substr(0, 64) +
                                  "' is not a UUID");
    }
    if (s.ok()) s = CheckRoute(route);
    if (!s.ok()) return then(ErrorFor(s));
    for (char& c : id) c = static_cast<char>(std::tolower(c));
    auto self = shared_from_this();
    executor([self, retry, route, id, then = std::move(then)] {
      Status st = retry ? self->relay->RetryParked(route, id)
                        : self->relay->DropParked(route, id);
      if (!st.ok()) return then(ErrorFor(st));
      Response r;
      r.status = retry ? 202 : 200;
      r.body = "{\"route\":" + JsonString(route) + ",\"id\":" + JsonString(id) +
               ",\"result\":" + (retry ? "\"retry\"" : "\"dropped\"") + "}";
      then(std::move(r));
    });
  }

  // ---- /health and /metrics ------------------------------------------------

  void Health(std::function<void(Response)> then) {
    auto self = shared_from_this();
    executor([self, then = std::move(then)] {
      auto head = self->store->Head();
      bool ok = head.ok();
      std::string body = "{\"status\":";
      std::string relays = "[";
      std::vector<std::string> problems;
      if (!head.ok()) problems.push_back("store: " + head.status().message());
      if (self->relay && head.ok()) {
        auto st = self->relay->GetStatuses();
        if (st.ok()) {
          for (size_t i = 0; i < st->size(); ++i) {
            const auto& r = (*st)[i];
            if (i) relays += ",";
            relays += "{\"name\":" + JsonString(r.name) +
                      ",\"running\":" + (r.running ? "true" : "false") +
                      ",\"state\":" + JsonString(r.state) +
                      ",\"parked\":" + std::to_string(r.parked_only) +
                      ",\"lag_events\":" + std::to_string(r.lag_events) + "}";
            if (!r.running)
              problems.push_back("route " + r.name + " is not running");
            if (r.state == "blocked") {
              problems.push_back("route " + r.name +
                                 " is blocked: " + r.last_error);
            }
            if (r.parked_only > 0) {
              problems.push_back("route " + r.name + " has " +
                                 std::to_string(r.parked_only) +
                                 " parked events");
            }
          }
        } else {
          problems.push_back("relay status: " + st.status().message());
        }
      }
      relays += "]";
      auto holdup =
          ok ? self->store->DescribeHoldup() : Result<std::string>("");
      if (holdup.ok() && !holdup->empty()) {
        problems.push_back("positions held back: " + *holdup);
      }
      body += ok ? (problems.empty() ? "\"ok\"" : "\"degraded\"")
                 : "\"unavailable\"";
      body += ",\"store\":{\"backend\":" + JsonString(self->store->backend()) +
              ",\"reachable\":" + (ok ? "true" : "false");
      if (ok) body += ",\"head\":" + std::to_string(*head);
      body += "},\"relays\":" + relays + ",\"problems\":[";
      for (size_t i = 0; i < problems.size(); ++i) {
        if (i) body += ",";
        body += JsonString(problems[i]);
      }
      body += "]}";
      Response r;
      r.status = ok ? 200 : 503;
      r.body = std::move(body);
      r.headers.emplace_back("Cache-Control", "no-store");
      then(std::move(r));
    });
  }

  void Metrics(std::function<void(Response)> then) {
    auto self = shared_from_this();
    executor([self, then = std::move(then)] {
      std::string m;
      auto line = [&m](const std::string& name, const std::string& labels,
                       double v) {
        m += name;
        if (!labels.empty()) m += "{" + labels + "}";
        char buf[48];
        if (v == std::floor(v) && std::fabs(v) < 1e15) {
          std::snprintf(buf, sizeof buf, " %lld\n", static_cast<long long>(v));
        } else {
          std::snprintf(buf, sizeof buf, " %.6g\n", v);
        }
        m += buf;
      };
      auto help = [&m](const char* name, const char* type, const char* text) {
        m += std::string("# HELP ") + name + " " + text + "\n# TYPE " + name +
             " " + type + "\n";
      };
      help("herald_events_appended_total", "counter",
           "Events appended through this server's POST /api/events.");
      line("herald_events_appended_total", "",
           static_cast<double>(self->appender->events_appended()));
      help("herald_append_commits_total", "counter",
           "Transactions committed for POST /api/events (group commits).");
      line("herald_append_commits_total", "",
           static_cast<double>(self->appender->commits()));
      auto head = self->store->Head();
      help("herald_head", "gauge", "Highest position in the store.");
      line("herald_head", "", head.ok() ? static_cast<double>(*head) : -1);
      help("herald_store_up", "gauge", "1 when the store answers.");
      line("herald_store_up", "", head.ok() ? 1 : 0);
      // What holds positions back (a long open transaction on PostgreSQL).
      // A store that cannot answer exports none of these.
      if (head.ok()) {
        auto holdup = self->store->GetHoldup();
        if (holdup.ok()) {
          help("herald_store_holdup", "gauge",
               "1 when something holds positions back (see /health).");
          line("herald_store_holdup", "", holdup->held ? 1 : 0);
          help("herald_store_holdup_seconds", "gauge",
               "How long the oldest transaction holding positions back has "
               "been open; 0 when none.");
          line("herald_store_holdup_seconds", "", holdup->seconds);
          if (holdup->pid) {
            help("herald_store_holdup_info", "gauge",
                 "The backend pid of the oldest transaction holding "
                 "positions back; absent when none.");
            line("herald_store_holdup_info",
                 "pid=\"" + std::to_string(holdup->pid) + "\"", 1);
          }
        }
      }
      help("herald_open_streams", "gauge", "Open SSE streams.");
      line("herald_open_streams", "",
           static_cast<double>(self->metrics->open_streams.load()));
      help("herald_open_connections", "gauge", "Open HTTP connections.");
      line("herald_open_connections", "",
           static_cast<double>(self->metrics->open_connections.load()));
      help("herald_long_polls_waiting", "gauge",
           "Long-polls and idle SSE streams waiting for events.");
      line("herald_long_polls_waiting", "",
           static_cast<double>(self->hub->waiters()));
      self->metrics->Render(&m);
      if (self->relay) {
        auto statuses = self->relay->GetStatuses();
        auto metrics = self->relay->GetMetrics();
        auto lbl = [](const std::string& route) {
          std::string s = "route=";
          AppendJsonString(route, &s);
          return s;
        };
        if (statuses.ok()) {
          help("herald_route_checkpoint", "gauge",
               "Next position the route reads.");
          for (const auto& s : *statuses) {
            line("herald_route_checkpoint", lbl(s.name),
                 static_cast<double>(s.checkpoint));
          }
          help("herald_route_lag_events", "gauge",
               "Positions the route has not passed yet.");
          for (const auto& s : *statuses) {
            line("herald_route_lag_events", lbl(s.name),
                 static_cast<double>(s.lag_events));
          }
          help("herald_route_lag_seconds", "gauge",
               "Age of the oldest undelivered event of the route.");
          for (const auto& s : *statuses) {
            line("herald_route_lag_seconds", lbl(s.name), s.lag_seconds);
          }
          help("herald_route_parked_events", "gauge",
               "Rows in the parked table of the route (parked, held, retry).");
          for (const auto& s : *statuses) {
            line("herald_route_parked_events", lbl(s.name),
                 static_cast<double>(s.parked));
          }
          help("herald_route_up", "gauge",
               "1 when the route runs in this process.");
          for (const auto& s : *statuses) {
            line("herald_route_up", lbl(s.name), s.running ? 1 : 0);
          }
        }
        help("herald_route_delivered_total", "counter",
             "Events delivered by this process.");
        for (const auto& r : metrics) {
          line("herald_route_delivered_total", lbl(r.name),
               static_cast<double>(r.delivered));
        }
        help("herald_route_failed_total", "counter", "Failed send attempts.");
        for (const auto& r : metrics) {
          line("herald_route_failed_total", lbl(r.name),
               static_cast<double>(r.failed));
        }
        help("herald_route_parked_total", "counter",
             "Events parked after max_attempts.");
        for (const auto& r : metrics) {
          line("herald_route_parked_total", lbl(r.name),
               static_cast<double>(r.parked));
        }
        help("herald_route_send_latency_seconds", "histogram",
             "Commit-to-acknowledgement latency of sends.");
        for (const auto& r : metrics) {
          const auto& h = r.send_latency;
          uint64_t cum = 0;
          for (size_t i = 0; i < h.bounds_seconds.size(); ++i) {
            cum += i < h.counts.size() ? h.counts[i] : 0;
            char le[32];
            std::snprintf(le, sizeof le, "%g", h.bounds_seconds[i]);
            line("herald_route_send_latency_seconds_bucket",
                 lbl(r.name) + ",le=\"" + le + "\"", static_cast<double>(cum));
          }
          line("herald_route_send_latency_seconds_bucket",
               lbl(r.name) + ",le=\"+Inf\"", static_cast<double>(h.count));
          line("herald_route_send_latency_seconds_sum", lbl(r.name),
               h.sum_seconds);
          line("herald_route_send_latency_seconds_count", lbl(r.name),
               static_cast<double>(h.count));
        }
      }
      Response r;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = std::move(m);
      r.headers.emplace_back("Cache-Control", "no-store");
      then(std::move(r));
    });
  }

  // ---- routing ---------------------------------------------------------

  void Handle(Request req, Respond respond) {
    const std::string& p = req.path;
    auto split = [](std::string_view path) {
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
    };
    // The path as sent (still encoded) so a '/' inside a name stays inside.
    std::string raw_path = req.target.substr(0, req.target.find('?'));
    std::vector<std::string> raw = split(raw_path);
    std::vector<std::string> parts;
    for (const auto& r : raw) {
      std::string d;
      if (!PercentDecode(r, false, &d)) {
        return respond(Error(400, "invalid_argument",
                             "the path holds a malformed %-escape"),
                       "other");
      }
      parts.push_back(std::move(d));
    }
    const std::string& m = req.method;
    std::string label;
    Need need = Need::kRead;
    std::vector<std::string> allowed;  // methods of the matched path
    enum class Op {
      kNone,
      kHealth,
      kMetrics,
      kEvents,
      kPost,
      kStream,
      kEvent,
      kStreamOf,
      kRelays,
      kParked,
      kRetry,
      kDrop
    } op = Op::kNone;
    auto is = [&](std::initializer_list<const char*> want) {
      if (parts.size() != want.size()) return false;
      size_t i = 0;
      for (const char* w : want) {
        if (w[0] != '*' && parts[i] != w) return false;
        ++i;
      }
      return true;
    };
    auto pick = [&](const char* method, Op o, Need n, const char* l) {
      allowed.push_back(method);
      if (m == method && op == Op::kNone) {
        op = o;
        need = n;
        label = l;
      }
    };
    if (is({"health"})) {
      pick("GET", Op::kHealth, Need::kNone, "/health");
    } else if (is({"metrics"})) {
      pick("GET", Op::kMetrics, Need::kRead, "/metrics");
    } else if (is({"api", "events"})) {
      pick("GET", Op::kEvents, Need::kRead, "/api/events");
      pick("POST", Op::kPost, Need::kAppend, "/api/events");
    } else if (is({"api", "events", "stream"})) {
      pick("GET", Op::kStream, Need::kRead, "/api/events/stream");
    } else if (is({"api", "events", "*"})) {
      pick("GET", Op::kEvent, Need::kRead, "/api/events/{id}");
    } else if (is({"api", "streams", "*"})) {
      pick("GET", Op::kStreamOf, Need::kRead, "/api/streams/{stream}");
    } else if (is({"api", "relays"})) {
      pick("GET", Op::kRelays, Need::kRead, "/api/relays");
    } else if (is({"api", "relays", "*", "parked"})) {
      pick("GET", Op::kParked, Need::kRead, "/api/relays/{name}/parked");
    } else if (is({"api", "relays", "*", "parked", "*", "retry"})) {
      pick("POST", Op::kRetry, Need::kAdmin,
           "/api/relays/{name}/parked/{id}/retry");
    } else if (is({"api", "relays", "*", "parked", "*"})) {
      pick("DELETE", Op::kDrop, Need::kAdmin, "/api/relays/{name}/parked/{id}");
    }
    if (op == Op::kNone) {
      if (allowed.empty()) {
        return respond(
            Error(404, "not_found",
                  "no such endpoint: " + req.method + " " + p.substr(0, 200)),
            "other");
      }
      std::string allow;
      for (const auto& a : allowed) allow += (allow.empty() ? "" : ", ") + a;
      auto r = Error(405, "method_not_allowed",
                     req.method.substr(0, 16) +
                         " is not allowed here (allowed: " + allow + ")");
      r.headers.emplace_back("Allow", allow);
      return respond(std::move(r), "other");
    }
    if (auto denied = Authorize(req, need)) {
      return respond(std::move(*denied), label);
    }
    auto then = [respond, label](Response r) { respond(std::move(r), label); };
    auto no_query = [&]() -> bool {
      Status s = CheckQuery(req.query, {});
      if (s.ok()) return true;
      then(ErrorFor(s));
      return false;
    };
    switch (op) {
      case Op::kHealth:
        if (no_query()) Health(then);
        return;
      case Op::kMetrics:
        if (no_query()) Metrics(then);
        return;
      case Op::kEvents:
        return GetEvents(req, then);
      case Op::kPost:
        return PostEvents(std::move(req), then);
      case Op::kStream:
        return then(StartStream(req));
      case Op::kEvent:
        if (no_query()) GetEvent(parts[2], then);
        return;
      case Op::kStreamOf:
        return GetStream(parts[2], req.query, then);
      case Op::kRelays:
        if (no_query()) GetRelays(then);
        return;
      case Op::kParked:
        return GetParked(parts[2], req.query, then);
      case Op::kRetry:
        return ParkedAction(true, parts[2], parts[4], req.query, then);
      case Op::kDrop:
        return ParkedAction(false, parts[2], parts[4], req.query, then);
      case Op::kNone:
        break;
    }
  }
};

// ---- Api
// ----------------------------------------------------------------------

Api::Api(Store* store, Relay* relay, Hub* hub, Appender* appender,
         HttpMetrics* metrics, Executor executor, const ServerOptions& options)
    : impl_(std::make_shared<Impl>()) {
  impl_->store = store;
  impl_->relay = relay;
  impl_->hub = hub;
  impl_->appender = appender;
  impl_->metrics = metrics;
  impl_->executor = std::move(executor);
  impl_->options = options;
  if (options.page_cache_bytes > 0) {
    impl_->pages = std::make_unique<PageCache>(options.page_cache_bytes);
  }
}

std::shared_ptr<const std::string> PageCache::Get(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void PageCache::Put(const std::string& key,
                    std::shared_ptr<const std::string> body) {
  if (body->size() > max_bytes_ / 4) return;
  std::lock_guard lock(mu_);
  if (index_.count(key)) return;
  bytes_ += body->size() + key.size();
  lru_.emplace_front(key, std::move(body));
  index_[key] = lru_.begin();
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    auto& last = lru_.back();
    bytes_ -= last.second->size() + last.first.size();
    index_.erase(last.first);
    lru_.pop_back();
  }
}

void Api::Handle(Request request, Respond respond) {
  impl_->Handle(std::move(request), std::move(respond));
}

void Api::SseChunk(int64_t cursor, const EventFilter& filter,
                   std::function<void(bool, std::string, int64_t)> done) {
  impl_->SseChunk(cursor, filter, std::move(done));
}

Response Api::Error(int status, std::string_view code,
                    std::string_view message) {
  Response r;
  r.status = status;
  r.body = "{\"error\":{\"code\":";
  AppendJsonString(code, &r.body);
  r.body += ",\"message\":";
  AppendJsonString(message, &r.body);
  r.body += "}}";
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

Response Api::ErrorFor(const Status& s) {
  return Error(HttpStatusFor(s), s.code_name(), s.message());
}

// ---- metrics and URL helpers ----------------------------------------------

void HttpMetrics::Count(const std::string& route, int status) {
  std::lock_guard lock(mu_);
  ++requests_[{route, status}];
}

void HttpMetrics::Render(std::string* out) const {
  *out +=
      "# HELP herald_http_requests_total HTTP requests by route pattern and "
      "status.\n# TYPE herald_http_requests_total counter\n";
  std::lock_guard lock(mu_);
  for (const auto& [key, n] : requests_) {
    *out += "herald_http_requests_total{route=";
    AppendJsonString(key.first, out);
    *out += ",status=\"" + std::to_string(key.second) + "\"} " +
            std::to_string(n) + "\n";
  }
}

bool PercentDecode(std::string_view in, bool form, std::string* out) {
  out->clear();
  out->reserve(in.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hex(in[i + 1]);
      int lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && form) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

bool ParseTarget(std::string_view target, std::string* path,
                 std::vector<std::pair<std::string, std::string>>* query) {
  auto q = target.find('?');
  if (!PercentDecode(target.substr(0, q), false, path)) return false;
  query->clear();
  if (q == std::string_view::npos) return true;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view part = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view()
                                         : rest.substr(amp + 1);
    if (part.empty()) continue;
    auto eq = part.find('=');
    std::string k, v;
    if (!PercentDecode(part.substr(0, eq), true, &k)) return false;
    if (eq != std::string_view::npos &&
        !PercentDecode(part.substr(eq + 1), true, &v)) {
      return false;
    }
    query->emplace_back(std::move(k), std::move(v));
  }
  return true;
}

}  // namespace herald::detail
