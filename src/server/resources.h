// The API's resources: what each adds to the route table, and what they
// share (the ApiContext and the query-parameter helpers of params.cc).
//
//   events.cc   GET/POST /api/events, GET /api/events/stream (SSE),
//               GET /api/events/{id}; the page cache
//   streams.cc  GET /api/streams/{stream}
//   relays.cc   GET /api/relays, the parked events of a route
//   health.cc   GET /health, GET /metrics
//   newest.cc   GET /api/events/newest (newest first, for browsing)
//   console.cc  the operator console's assets, GET /api/whoami
//
// Handlers run on an I/O thread and must not block: reads served from the
// Hub's memory answer at once; anything touching the database goes to
// ctx->executor (the worker pool); appends go to the Appender; long-polls
// wait on the Hub. Every path ends in exactly one call of `reply`. Handlers
// hold the context by shared_ptr, so work still queued when the Api goes
// keeps it alive.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "herald/server.h"
#include "herald/store.h"
#include "server/internal.h"
#include "server/router.h"

namespace herald {
class Relay;
}

namespace herald::detail {

struct ApiContext {
  Store* store = nullptr;
  Relay* relay = nullptr;  // null when the server runs no relay
  Hub* hub = nullptr;
  Appender* appender = nullptr;
  HttpMetrics* metrics = nullptr;
  Executor executor;
  ServerOptions options;
  // Null when the page cache is off (page_cache_mb = 0).
  std::unique_ptr<PageCache> pages;
};
using Context = std::shared_ptr<ApiContext>;

// What a resource class derives from: the context's parts under short
// names. Holds the context, so the references stay valid.
struct ResourceBase {
  explicit ResourceBase(Context c)
      : ctx(std::move(c)),
        store(ctx->store),
        relay(ctx->relay),
        hub(ctx->hub),
        appender(ctx->appender),
        metrics(ctx->metrics),
        executor(ctx->executor),
        options(ctx->options),
        pages(ctx->pages.get()) {}
  const Context ctx;
  Store* const store;
  Relay* const relay;
  Hub* const hub;
  Appender* const appender;
  HttpMetrics* const metrics;
  const Executor& executor;
  const ServerOptions& options;
  PageCache* const pages;
};

// Reads the next piece of an SSE stream (see Api::SseChunk).
using SseReader = std::function<void(int64_t cursor, const EventFilter& filter,
                                     size_t max_bytes, SseDone)>;

// Returns the reader SSE streams opened by GET /api/events/stream use.
SseReader AddEventRoutes(const Context& ctx, Router* router);
void AddStreamRoutes(const Context& ctx, Router* router);
void AddRelayRoutes(const Context& ctx, Router* router);
void AddHealthRoutes(const Context& ctx, Router* router);
void AddNewestRoutes(const Context& ctx, Router* router);
void AddConsoleRoutes(const Context& ctx, Router* router);

// ---- request parameters (params.cc) ----------------------------------------

using Query = std::vector<std::pair<std::string, std::string>>;

constexpr int kDefaultLimit = 100;
// Offsets and versions above 2^53 - 1 cannot round-trip through JSON
// numbers in most clients; they are refused as too large.
constexpr int64_t kMaxOffset = (int64_t{1} << 53) - 1;

// Strict non-negative integer: digits only, in [min, max].
Status ParseCount(std::string_view name, std::string_view text, int64_t min,
                  int64_t max, int64_t* out);
// Seconds, decimals allowed ("0.5"), in [0, max_seconds].
Status ParseSeconds(std::string_view name, std::string_view text,
                    double max_seconds, std::chrono::milliseconds* out);
// Checks that every query parameter is known and, except `repeatable`,
// given once.
Status CheckQuery(const Query& query,
                  std::initializer_list<std::string_view> allowed,
                  std::string_view repeatable = "");
// The value of the first parameter called `name`, or nullptr.
const std::string* QueryValue(const Query& query, std::string_view name);

inline Response Error(int status, std::string_view code,
                      std::string_view message) {
  return Api::Error(status, code, message);
}
inline Response ErrorFor(const Status& s) { return Api::ErrorFor(s); }

// A 200 JSON answer that describes the present state: never cached.
Response NoStoreResponse(std::string body);

// Lower-cases an event id in place.
void LowerCase(std::string* s);

}  // namespace herald::detail
