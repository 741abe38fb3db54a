// The streams resource: GET /api/streams/{stream}, one stream's events in
// stream-version order. See resources.h for the rules every handler keeps.
#include <algorithm>

#include "herald/json.h"
#include "server/resources.h"

namespace herald::detail {

namespace {

class Streams : public ResourceBase,
                public std::enable_shared_from_this<Streams> {
 public:
  using ResourceBase::ResourceBase;

  void GetStream(const std::string& stream, const Query& q,
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
};

}  // namespace

void AddStreamRoutes(const Context& ctx, Router* router) {
  auto streams = std::make_shared<Streams>(ctx);
  router->Get("/api/streams/{stream}", Scope::kRead,
              [streams](Request&& req, const PathParams& p, Reply reply) {
                streams->GetStream(p.Get("stream"), req.query,
                                   std::move(reply));
              });
}

}  // namespace herald::detail
