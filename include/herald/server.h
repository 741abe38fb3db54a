// Server: herald's HTTP API (events, streams, live SSE, appends, relays,
// health, metrics) as a library, the same code `herald serve` runs.
//
//   auto store = OpenStore("sqlite:herald.db");
//   ServerOptions options;
//   options.config.listen = "127.0.0.1:8080";
//   auto server = Server::Start(store->get(), options);
//   ...
//   (*server)->Stop();   // graceful: finishes in-flight requests
//
// Threads: `config.threads` I/O threads, each with an event loop of its own,
// run the connections, dealt out to them in turn (no thread per connection;
// long-polls and SSE streams cost a socket and a few KB each; chunks of
// streams catching up share one budget, config.sse_buffer_mb; connections
// are capped at config.max_connections and at what the descriptor limit
// leaves, and those beyond are closed at once),
// `worker_threads` run blocking store calls, one appender thread
// group-commits POSTed events, and one watcher thread follows the store's
// head. All are owned and joined by Stop().
//
// Thread safety: Start/Stop from one thread; the accessors from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "herald/config.h"
#include "herald/status.h"
#include "herald/store.h"

namespace herald {

class Relay;

// A file served from memory by a static mount (see ServerOptions::MountStatic).
struct StaticFile {
  // Path under the mount's prefix: "app.js", "css/site.css".
  std::string path;
  // Sent as Content-Type: "text/html; charset=utf-8".
  std::string content_type;
  std::string body;
};

struct StaticMount {
  std::string prefix;  // "/console"
  std::vector<StaticFile> files;
};

struct ServerOptions {
  // The [server] table, and the one place each of its settings lives:
  // listen address, tokens, limits, timeouts, page_cache_mb, tail_events.
  // A library user sets them here exactly as `herald serve` does from its
  // config file.
  ServerConfig config;
  // Threads for blocking store calls (reads that miss the in-memory tail,
  // single-event lookups, relay admin calls). Default 4.
  int worker_threads = 4;
  // Head check interval for appends made by other processes: 1 ms after
  // activity, doubling up to this when idle. Appends through this process
  // wake readers at once. Default 50 ms.
  std::chrono::milliseconds poll_max{50};
  // Most events in one POST. Default 10000.
  size_t max_events_per_post = 10000;
  // How long Stop() lets in-flight requests finish before closing them.
  // Default 10 s.
  std::chrono::milliseconds drain_timeout{10000};

  // Files served from memory under a path prefix, for GET and HEAD, with
  // their content type and a strong ETag; no token needed. Paths the API
  // uses win over a mount's. Default none.
  std::vector<StaticMount> static_mounts;
  void MountStatic(std::string prefix, std::vector<StaticFile> files) {
    static_mounts.push_back({std::move(prefix), std::move(files)});
  }

  // Deprecated spellings of config.tail_events and config.page_cache_mb
  // (kept so that code written for earlier versions compiles and means
  // what it meant). Unset by default; when set, they win over the config
  // field. New code sets the config fields.
  std::optional<size_t> cache_events;      // events: config.tail_events
  std::optional<size_t> page_cache_bytes;  // bytes: config.page_cache_mb

  // More lines for GET /metrics (Prometheus text, each metric with its HELP
  // and TYPE), appended after herald's own; called on a worker thread for
  // each scrape. `herald serve` lists its consumers' metrics this way.
  // Default none.
  std::function<void(std::string* out)> extra_metrics;
};

class Server {
 public:
  // Binds `options.config.listen` and starts serving `store` (and, when
  // `relay` is not null, the relay endpoints and metrics of that running
  // relay). Both must outlive the server. Errors: InvalidArgument (bad
  // listen address; a non-loopback address with no token configured),
  // Unavailable (the address is in use).
  static Result<std::unique_ptr<Server>> Start(Store* store,
                                               const ServerOptions& options,
                                               Relay* relay = nullptr);
  virtual ~Server();  // Stop()s

  // The bound port (useful with port 0) and "host:port".
  virtual int port() const = 0;
  virtual std::string address() const = 0;

  // Graceful stop: stops accepting, answers waiting long-polls, ends SSE
  // streams, lets in-flight requests and appends finish (up to
  // drain_timeout), then joins every thread. Idempotent; noexcept.
  virtual void Stop() noexcept = 0;

 protected:
  Server() = default;
};

}  // namespace herald
