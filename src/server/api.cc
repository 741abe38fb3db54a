// Api: the route table of herald's HTTP API and what every resource shares
// (see internal.h, router.h, resources.h and docs/http-api.md). Each
// resource file adds its rows; Handle() hands a request to the Router.
#include <algorithm>

#include "herald/json.h"
#include "server/resources.h"
#include "server/router.h"

namespace herald::detail {

namespace {

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

}  // namespace

struct Api::Impl {
  explicit Impl(Context c)
      : ctx(std::move(c)), router(&ctx->options.config.tokens) {}
  Context ctx;
  Router router;
  SseReader sse;
};

Api::Api(Store* store, Relay* relay, Hub* hub, Appender* appender,
         HttpMetrics* metrics, Executor executor,
         const ServerOptions& options) {
  auto ctx = std::make_shared<ApiContext>();
  ctx->store = store;
  ctx->relay = relay;
  ctx->hub = hub;
  ctx->appender = appender;
  ctx->metrics = metrics;
  ctx->executor = std::move(executor);
  ctx->options = options;
  size_t page_cache_bytes = PageCacheBytes(options);
  if (page_cache_bytes > 0) {
    ctx->pages = std::make_unique<PageCache>(page_cache_bytes);
  }
  impl_ = std::make_shared<Impl>(std::move(ctx));
  Router* router = &impl_->router;
  router->SetCorsOrigins(options.config.cors_origins);
  AddHealthRoutes(impl_->ctx, router);
  impl_->sse = AddEventRoutes(impl_->ctx, router);
  AddStreamRoutes(impl_->ctx, router);
  AddRelayRoutes(impl_->ctx, router);
  AddNewestRoutes(impl_->ctx, router);
  for (const auto& mount : options.static_mounts) {
    router->MountStatic(mount.prefix, mount.files);
  }
  // After the mounts: a program's own file at a path wins over the
  // console's (the first row added wins a tie).
  AddConsoleRoutes(impl_->ctx, router);
}

void Api::Handle(Request request,
                 std::function<void(Response, std::string)> respond) {
  impl_->router.Dispatch(std::move(request), std::move(respond));
}

void Api::SseChunk(int64_t cursor, const EventFilter& filter, size_t max_bytes,
                   SseDone done) {
  impl_->sse(cursor, filter, max_bytes, std::move(done));
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

// ---- settings
// ----------------------------------------------------------------

size_t PageCacheBytes(const ServerOptions& options) {
  if (options.page_cache_bytes) return *options.page_cache_bytes;
  return static_cast<size_t>(std::max<int64_t>(0, options.config.page_cache_mb))
         << 20;
}

size_t TailEvents(const ServerOptions& options) {
  if (options.cache_events) return *options.cache_events;
  return static_cast<size_t>(std::max<int64_t>(1, options.config.tail_events));
}

// ---- URL helpers
// -------------------------------------------------------------

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
