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
// long-polls and SSE streams cost a socket and a few KB each),
// `worker_threads` run blocking store calls, one appender thread
// group-commits POSTed events, and one watcher thread follows the store's
// head. All are owned and joined by Stop().
//
// Thread safety: Start/Stop from one thread; the accessors from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "herald/config.h"
#include "herald/status.h"
#include "herald/store.h"

namespace herald {

class Relay;

struct ServerOptions {
  // The [server] table: listen address, tokens, limits, timeouts.
  ServerConfig config;
  // Threads for blocking store calls (reads that miss the in-memory tail,
  // single-event lookups, relay admin calls). Default 4.
  int worker_threads = 4;
  // Most recent events kept rendered in memory, so live readers (long-poll,
  // SSE, pages near the head) never touch the database. Default 20000.
  size_t cache_events = 20000;
  // Head check interval for appends made by other processes: 1 ms after
  // activity, doubling up to this when idle. Appends through this process
  // wake readers at once. Default 50 ms.
  std::chrono::milliseconds poll_max{50};
  // Bytes of rendered full pages read from the database kept in memory
  // (they never change); least recently used go first. 0 turns it off.
  // Default 64 MiB.
  size_t page_cache_bytes = 64u << 20;
  // Most events in one POST. Default 10000.
  size_t max_events_per_post = 10000;
  // How long Stop() lets in-flight requests finish before closing them.
  // Default 10 s.
  std::chrono::milliseconds drain_timeout{10000};
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
