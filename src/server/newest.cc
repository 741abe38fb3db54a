// GET /api/events/newest: the log newest first, for browsing (the operator
// console's log page). Pages by position backwards: `before` is the
// position to stop below, and each answer says where the next older page
// starts. Filters are globs on type and on stream.
//
// A request reads the store in windows of positions going back from
// `before` (positions are dense, so a window is one indexed range read) and
// keeps the newest `limit` events that match. It looks at no more than
// kMaxScan positions: with a rare filter on a large log an answer may hold
// fewer events than asked and still a `next_before`, so no request scans
// the whole log. See resources.h for the rules every handler keeps.
#include <algorithm>

#include "herald/event_json.h"
#include "herald/json.h"
#include "server/resources.h"

namespace herald::detail {

namespace {

constexpr int64_t kMaxScan = 100000;
constexpr int kMaxNewestLimit = 1000;

struct NewestQuery {
  int64_t before = 0;  // 0: above the head
  int limit = 50;
  std::vector<std::string> types;
  std::string stream;  // a glob; "" = any
  bool filtered() const { return !types.empty() || !stream.empty(); }
  bool Matches(const EventView& e) const {
    if (!stream.empty() && !GlobMatch(stream, e.stream)) return false;
    if (types.empty()) return true;
    return std::any_of(types.begin(), types.end(), [&](const std::string& t) {
      return GlobMatch(t, e.type);
    });
  }
};

Status ParseNewest(const Query& q, NewestQuery* out) {
  HERALD_RETURN_IF_ERROR(
      CheckQuery(q, {"before", "limit", "type", "stream"}, "type"));
  int64_t v;
  if (auto* s = QueryValue(q, "before")) {
    HERALD_RETURN_IF_ERROR(ParseCount("before", *s, 1, kMaxOffset, &v));
    out->before = v;
  }
  if (auto* s = QueryValue(q, "limit")) {
    HERALD_RETURN_IF_ERROR(ParseCount("limit", *s, 1, kMaxNewestLimit, &v));
    out->limit = static_cast<int>(v);
  }
  for (const auto& [k, val] : q) {
    if (k != "type") continue;
    if (val.empty() || val.size() > kMaxTypeLength) {
      return Status::InvalidArgument("type must be 1 to 256 bytes long");
    }
    out->types.push_back(val);
  }
  if (auto* s = QueryValue(q, "stream")) {
    if (s->empty() || s->size() > kMaxStreamLength) {
      return Status::InvalidArgument("stream must be 1 to 256 bytes long");
    }
    out->stream = *s;
  }
  return Status::OK();
}

class Newest : public ResourceBase,
               public std::enable_shared_from_this<Newest> {
 public:
  using ResourceBase::ResourceBase;

  void Get(const Query& query, std::function<void(Response)> then) {
    NewestQuery nq;
    Status s = ParseNewest(query, &nq);
    if (!s.ok()) return then(ErrorFor(s));
    auto self = shared_from_this();
    executor([self, nq, then = std::move(then)] {
      auto head = self->store->Head();
      if (!head.ok()) return then(ErrorFor(head.status()));
      int64_t hi = nq.before > 0 ? std::min(nq.before - 1, *head) : *head;
      // Matches, newest first, each rendered once.
      std::vector<std::pair<int64_t, std::string>> found;
      int64_t window = nq.filtered() ? std::max(nq.limit * 8, 256) : nq.limit;
      int64_t budget = kMaxScan;
      int64_t next_before = 0;
      while (hi >= 1 && static_cast<int>(found.size()) < nq.limit) {
        if (budget <= 0) {
          next_before = hi + 1;
          break;
        }
        int64_t want = nq.filtered()
                           ? window
                           : static_cast<int64_t>(nq.limit - found.size());
        int64_t w = std::min({want, budget, hi, int64_t{kMaxReadLimit}});
        int64_t lo = hi - w + 1;
        ReadRequest rr;
        rr.offset = lo;
        rr.limit = static_cast<int>(w);
        std::vector<std::pair<int64_t, std::string>> in_window;
        auto page = self->store->Scan(rr, [&](const EventView& e) {
          if (e.position > hi || !nq.Matches(e)) return;
          std::string json;
          AppendEventJson(e, &json);
          in_window.emplace_back(e.position, std::move(json));
        });
        if (!page.ok()) return then(ErrorFor(page.status()));
        // Newest first: the window's matches from its end.
        while (!in_window.empty() &&
               static_cast<int>(found.size()) < nq.limit) {
          found.push_back(std::move(in_window.back()));
          in_window.pop_back();
        }
        budget -= w;
        hi = lo - 1;
        window = std::min<int64_t>(window * 2, kMaxReadLimit);
        if (static_cast<int>(found.size()) == nq.limit) {
          next_before = found.back().first;
        } else if (hi >= 1) {
          next_before = hi + 1;
        } else {
          next_before = 0;
        }
      }
      if (next_before <= 1) next_before = 0;
      std::string body = "{\"events\":[";
      for (size_t i = 0; i < found.size(); ++i) {
        if (i) body += ",";
        body += found[i].second;
      }
      body += "],\"head\":" + std::to_string(*head) + ",\"next_before\":" +
              (next_before > 0 ? std::to_string(next_before) : "null") + "}";
      then(NoStoreResponse(std::move(body)));
    });
  }
};

}  // namespace

void AddNewestRoutes(const Context& ctx, Router* router) {
  auto newest = std::make_shared<Newest>(ctx);
  router->Get("/api/events/newest", Scope::kRead,
              [newest](Request&& req, const PathParams&, Reply reply) {
                newest->Get(req.query, std::move(reply));
              });
}

}  // namespace herald::detail
