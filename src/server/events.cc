// The events resource: GET /api/events (pages, long-poll, ETags and the
// page cache), GET /api/events/stream (SSE), GET /api/events/{id} (with its
// per-route status) and POST /api/events (idempotent append). See
// resources.h for the rules every handler keeps.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

#include "herald/event_json.h"
#include "herald/json.h"
#include "herald/relay.h"
#include "server/resources.h"

namespace herald::detail {

namespace {

constexpr const char* kImmutableCache = "public, max-age=31536000, immutable";

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

// ---- POST /api/events: the body's events ------------------------------------
// The decoding of a POSTed body is this function, and nothing else.

// The body of POST /api/events, decoded by the one event decoder
// (herald/event_json.h): one event (an object) or several (an array, 1 to
// max_events). On success fills *events and *array and returns nullopt;
// otherwise the error answer (400 invalid_json or invalid_argument, 413
// too_many_events). Nothing is written either way.
std::optional<Response> DecodePostedEvents(std::string_view body,
                                           size_t max_events,
                                           std::vector<Event>* events,
                                           bool* array) {
  Status ds = DecodeEventsJson(body, max_events, events, array);
  if (ds.ok()) return std::nullopt;
  // A body that is not JSON at all is told apart from a bad event.
  if (Status js = CheckJson(body); !js.ok()) {
    return Error(400, "invalid_json",
                 "the body is not valid JSON: " + js.message());
  }
  if (ds.code() == Status::Code::kResourceExhausted) {
    return Error(413, "too_many_events", ds.message());
  }
  return ErrorFor(ds);
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

}  // namespace

// Appends an SSE frame: "id: N\ndata: ...\n\n". The event JSON may hold
// line breaks (a payload is embedded verbatim), so each line gets its own
// "data:" field; carriage returns, only ever whitespace there, are dropped.
void AppendSseFrame(int64_t position, std::string_view json, std::string* out) {
  out->append("id: ");
  out->append(std::to_string(position));
  out->append("\ndata: ");
  // An event's JSON is one line (AppendEventJson): copied in one piece.
  if (!std::memchr(json.data(), '\n', json.size()) &&
      !std::memchr(json.data(), '\r', json.size())) {
    out->append(json);
    out->append("\n\n");
    return;
  }
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

namespace {

// The handlers of the events resource; shared by its rows and by the SSE
// reader (see AddEventRoutes at the end of this file).
class Events : public ResourceBase,
               public std::enable_shared_from_this<Events> {
 public:
  using ResourceBase::ResourceBase;

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

  Response StartStream(const Request& req) const {
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

  // A chunk holds at most `max_bytes` of frames, allocated no larger: the
  // transport charges those bytes to the SSE buffer budget before asking,
  // so memory follows the budget, not the number of streams. An event whose
  // frame alone is larger is not taken: `need` says how much to ask for.
  // From the store, the read asks for about as many events as fit (by the
  // running average of a frame's size), so a worker holds about one
  // chunk's worth of events at a time.
  void SseChunk(int64_t cursor, const EventFilter& filter, size_t max_bytes,
                SseDone done) {
    constexpr int kMaxChunkEvents = 1000;
    TailRead tr;
    bool globs_ok = std::none_of(
        filter.types.begin(), filter.types.end(),
        [](const std::string& t) { return t.find('[') != std::string::npos; });
    if (globs_ok && hub->Read(cursor, kMaxChunkEvents, filter, &tr)) {
      SseChunkResult r;
      r.next_cursor = tr.next_offset;
      size_t n = 0, bytes = 0;
      for (; n < tr.events.size(); ++n) {
        size_t size = tr.events[n]->sse.size();
        if (bytes + size > max_bytes) {
          r.next_cursor = tr.events[n]->position;
          if (n == 0) r.need = size;
          break;
        }
        bytes += size;
      }
      r.chunk.reserve(bytes);
      for (size_t i = 0; i < n; ++i) r.chunk += tr.events[i]->sse;
      done(std::move(r));
      return;
    }
    size_t per_event = std::max<size_t>(64, frame_bytes_.load());
    int limit = static_cast<int>(std::clamp<size_t>(
        max_bytes / per_event, 1, static_cast<size_t>(kMaxChunkEvents)));
    auto self = shared_from_this();
    executor([self, cursor, filter, limit, max_bytes, done = std::move(done)] {
      ReadRequest rr;
      rr.offset = cursor;
      rr.limit = limit;
      rr.types = filter.types;
      rr.stream = filter.stream;
      auto page = self->store->Read(rr);
      SseChunkResult r;
      r.next_cursor = cursor;
      if (!page.ok()) {
        r.ok = false;
        return done(std::move(r));
      }
      r.next_cursor = page->next_offset;
      std::string& out = r.chunk;
      std::string frame;
      size_t frames = 0;
      for (const auto& e : page->events) {
        frame.clear();
        AppendSseFrame(e.position, EventToJson(e), &frame);
        if (out.size() + frame.size() > max_bytes) {
          r.next_cursor = e.position;
          if (frames == 0) r.need = frame.size();
          break;
        }
        // Reserved once, for the bytes granted: never reallocated larger.
        if (out.empty()) out.reserve(max_bytes);
        out += frame;
        ++frames;
      }
      if (frames > 0) {
        size_t avg = out.size() / frames;
        size_t old = self->frame_bytes_.load();
        self->frame_bytes_.store((old * 7 + avg) / 8);
      }
      done(std::move(r));
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
          auto parked = self->relay->GetParked(rc.name, e->id);
          const ParkedEvent* p =
              parked.ok() && parked->has_value() ? &**parked : nullptr;
          if (p) {
            body += JsonString(p->state) +
                    ",\"attempts\":" + std::to_string(p->attempts) +
                    ",\"error\":" + JsonString(p->error) + ",\"parked_at\":" +
                    JsonString(FormatRfc3339(p->parked_at_us)) +
                    ",\"first_failed_at\":" +
                    (p->first_failed_at_us
                         ? JsonString(FormatRfc3339(p->first_failed_at_us))
                         : std::string("null"));
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
      bool array = false;
      std::vector<Event> events;
      if (auto error = DecodePostedEvents(
              req.body, self->options.max_events_per_post, &events, &array)) {
        return then(std::move(*error));
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
      // DecodePostedEvents ran ValidateEvent on each: the appender, which
      // every POST waits for, need not again.
      job.options.validated = true;
      job.client_gone = req.client_gone;
      job.target = req.io_target;
      job.post = req.io_post;
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

 private:
  // Running average of an SSE frame's size, to size store reads.
  std::atomic<size_t> frame_bytes_{512};
};

}  // namespace

SseReader AddEventRoutes(const Context& ctx, Router* router) {
  auto events = std::make_shared<Events>(ctx);
  router->Get("/api/events", Scope::kRead,
              [events](Request&& req, const PathParams&, Reply reply) {
                events->GetEvents(req, std::move(reply));
              });
  router->Post("/api/events", Scope::kAppend,
               [events](Request&& req, const PathParams&, Reply reply) {
                 events->PostEvents(std::move(req), std::move(reply));
               });
  router->Get("/api/events/stream", Scope::kRead,
              [events](Request&& req, const PathParams&, const Reply& reply) {
                reply(events->StartStream(req));
              });
  router->Get("/api/events/{id}", Scope::kRead,
              [events](Request&& req, const PathParams& p, Reply reply) {
                Status s = CheckQuery(req.query, {});
                if (!s.ok()) return reply(ErrorFor(s));
                events->GetEvent(p.Get("id"), std::move(reply));
              });
  return [events](int64_t cursor, const EventFilter& filter, size_t max_bytes,
                  SseDone done) {
    events->SseChunk(cursor, filter, max_bytes, std::move(done));
  };
}

// ---- PageCache ------------------------------------------------------------

std::shared_ptr<const std::string> PageCache::Get(const std::string& key) {
  MutexLock lock(&mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  hits_.fetch_add(1, std::memory_order_relaxed);
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void PageCache::Put(const std::string& key,
                    std::shared_ptr<const std::string> body) {
  if (body->size() > max_bytes_ / 4) return;
  MutexLock lock(&mu_);
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

}  // namespace herald::detail
