// Relay: delivers every committed event to the routes that select it, in
// per-stream order, at least once, with retries, parking and leases.
//
// One Relay runs the routes of one process: per route a thread that reads
// and sends in batches and a thread that commits its checkpoints, and one
// lease thread that renews the routes' leases. Checkpoints, parked events and
// leases live in the store's database, so a relay killed at any instruction
// resumes where it left off, and several processes may run the same config: one
// of them sends per route, the others wait to take over.
//
//   auto store = OpenStore("sqlite:app.db");
//   Relay relay(store->get());
//   RouteConfig route;
//   route.name = "billing";
//   route.types = {"order.*"};
//   relay.AddRoute(route, MakeCallbackSender([](const Event& e) {
//     return Bill(e);  // OK = delivered
//   }));
//   relay.Start();
//   ...
//   relay.Stop();  // finishes in-flight sends, saves checkpoints
//
// Thread safety: call AddRoute and Start from one thread, before sharing
// the relay; afterwards every method may be called from any thread. Status,
// metrics and parked-event calls work whether or not the relay is started,
// and on routes another process is running (they read the store).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "herald/config.h"
#include "herald/sender.h"
#include "herald/status.h"
#include "herald/store.h"

namespace herald {

// How one route stands. Numbers come from the store (shared across
// processes); fields marked "this process" only from a running relay.
struct RouteStatus {
  std::string name;
  std::string sender;      // the sender URL, secrets masked (RedactSecrets)
  std::string on_failure;  // "block" | "park"
  // The next position the route will read (everything below it is
  // delivered, parked or held, or not selected by the route's filters).
  int64_t checkpoint = 0;
  int64_t head = 0;  // the store's highest position
  // Positions not yet passed: head - checkpoint + 1, at least 0 (filtered
  // routes count events they will skip too).
  int64_t lag_events = 0;
  // Age in seconds of the oldest event the route selects and has not
  // delivered: the first one past the checkpoint, or a parked, held or
  // retry row, whichever occurred first (0 when none).
  double lag_seconds = 0;
  // The route's rows in the parked table, by state (one query,
  // RelayState::CountParkedByState): every page and command shows these
  // same three numbers under these names.
  int64_t parked = 0;  // state "parked": failed and set aside
  int64_t held = 0;    // state "held": wait behind a parked event
  int64_t retry = 0;   // state "retry": an operator asked for a new attempt
  int64_t parked_only = 0;  // the same as `parked` (kept for older callers)
  // The event a route with on_failure = "block" stopped on after a
  // permanent rejection (non-retryable Status): it is tried again only
  // every backoff_max, or at once when an operator retries it (RetryParked
  // with its id). Empty id / 0 when the route is not blocked. Kept in the
  // store, so every process sees it.
  std::string blocked_id;
  int64_t blocked_position = 0;
  std::string blocked_error;
  // The last delivery error of the route and when (UTC µs), kept in the
  // store so `herald relay status` in another process sees it; empty when
  // the last attempt succeeded. Secrets masked.
  std::string last_error;
  int64_t last_error_at_us = 0;
  // The lease: who sends for this route now, and until when (UTC µs).
  std::string lease_owner;
  int64_t lease_expires_at_us = 0;
  // This process: the route runs here, holds its lease, and what it does
  // ("stopped", "waiting_for_lease", "idle", "sending", "retrying",
  // "blocked").
  bool running = false;
  bool holding_lease = false;
  std::string state = "stopped";
};

// Send latency histogram: counts[i] holds sends whose latency was <=
// bounds_seconds[i] and > the previous bound; counts.back() (one more than
// bounds) holds the rest (+Inf). Not cumulative: Prometheus wants them
// summed.
struct LatencyHistogram {
  std::vector<double> bounds_seconds;
  std::vector<uint64_t> counts;
  double sum_seconds = 0;
  uint64_t count = 0;
};

// Counters of one route in this process since Start (monotonic).
struct RouteMetrics {
  std::string name;
  uint64_t delivered = 0;  // events acknowledged by the receiver
  uint64_t failed = 0;     // failed attempts (each retry counts)
  uint64_t parked = 0;     // events parked (max_attempts, or permanent)
  uint64_t held = 0;       // events held behind a parked one
  uint64_t batches = 0;    // checkpoints saved
  // How long each Sender::Send call took, from the call to the sender's
  // answer (one batch, or one parked event sent again), first attempts and
  // retries alike.
  LatencyHistogram send_latency;
  // Per delivered event: from its commit to the receiver's acknowledgement.
  // The commit time is the event's occurred_at, which the store stamps at
  // append when the producer left it empty (a producer that sets it
  // earlier makes this longer).
  LatencyHistogram commit_to_ack;
  int64_t checkpoint = 0;  // last checkpoint saved or read here
  int64_t lag_events = 0;  // as of the last read
  // The last error met here and when (UTC µs); empty when none yet.
  std::string last_error;
  int64_t last_error_at_us = 0;
};

// Options of a Relay (the [relay] table of the config).
using RelayOptions = RelaySettings;

class Relay {
 public:
  // `store` is not owned and must outlive the relay. Relays the store's
  // own event log, keeping its state in the same store.
  explicit Relay(Store* store, RelayOptions options = {});
  // Relays the events of `source` (herald's log, or a table an application
  // already has), keeping checkpoints, parked events, leases and route
  // status in `state`. Neither is owned; both must outlive the relay.
  Relay(EventSource* source, RelayState* state, RelayOptions options = {});
  // Stops the relay (as Stop()).
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Makes a relay with the routes of `config` that read herald's log (no
  // `from`); senders are made from their URLs. InvalidArgument for a bad
  // route (names the route). The second form takes the routes whose `from`
  // is `from` (a [[source]] name; "" = herald's log) and reads `source`.
  static Result<std::unique_ptr<Relay>> FromConfig(Store* store,
                                                   const Config& config);
  static Result<std::unique_ptr<Relay>> FromConfig(EventSource* source,
                                                   RelayState* state,
                                                   const Config& config,
                                                   std::string_view from = "");

  // Adds a route before Start. The first form makes its sender from
  // route.sender (MakeSender); the second uses `sender` (route.sender is
  // then only shown in status). InvalidArgument for a bad route or a
  // duplicate name; FailedPrecondition after Start.
  Status AddRoute(const RouteConfig& route);
  Status AddRoute(const RouteConfig& route, std::unique_ptr<Sender> sender);
  // Adds a route that reads `source` (an application's outbox table, a
  // [[source]]) instead of the relay's own source, polling it every
  // `poll` when idle; its sender is made from its URL. Checkpoints,
  // leases, parked events and status stay in the relay's state, so one
  // relay (and its status, metrics and parked-event calls) covers the
  // routes of herald's log and of every source, as `herald serve` runs
  // them. `source` is not owned and must outlive the relay.
  Status AddRoute(const RouteConfig& route, EventSource* source,
                  std::chrono::milliseconds poll);

  // Starts the route threads and the lease thread. Each route waits for its
  // lease, then delivers from its checkpoint. Errors: FailedPrecondition
  // when already started or stopped. Senders are made here (Unavailable
  // when one cannot be, e.g. a file that cannot be opened).
  Status Start();

  // Finishes the sends in flight (up to the sender's timeout), saves the
  // checkpoints, releases the leases and joins every thread. Idempotent;
  // a stopped relay cannot be started again.
  void Stop() noexcept;

  // Wakes every route at once (an append made elsewhere, a parked event
  // retried). Appends through the same Store object wake it by themselves.
  void Wake();

  std::vector<std::string> route_names() const;
  const std::vector<RouteConfig>& routes() const { return routes_; }

  // Status of one route (NotFound for an unknown name) or of all routes in
  // config order. Reads the store with a constant number of calls per route
  // (checkpoint, blocked marker, head, status row, lease, parked counts by
  // state with the oldest parked event's time, at most 10 pages of events
  // for lag_seconds, and one event when blocked); Unavailable when it
  // cannot.
  Result<RouteStatus> GetStatus(const std::string& route) const;
  Result<std::vector<RouteStatus>> GetStatuses() const;

  // Counters kept by this process (zeros for routes not running here).
  std::vector<RouteMetrics> GetMetrics() const;

  // Parked events of a route, in position order; `state` empty = every
  // state ("parked", "held", "retry"). NotFound for an unknown route.
  Result<std::vector<ParkedEvent>> ListParked(const std::string& route,
                                              const std::string& state = "",
                                              int limit = 1000) const;
  // The parked row of one event on a route (one store call), or nullopt
  // when the route has none for it. NotFound for an unknown route.
  Result<std::optional<ParkedEvent>> GetParked(const std::string& route,
                                               const std::string& id) const;
  // Asks the route to send a parked event again (`id` empty: every parked
  // event of the route). The relay holding the route's lease sends it, then
  // the events held behind it in order; then the stream flows normally.
  // If it fails max_attempts times again (once, when permanently rejected)
  // it is parked again. The event a blocked route stopped on
  // (RouteStatus::blocked_id) is retried at once too, by whichever process
  // holds the lease. NotFound for an unknown route or id.
  Status RetryParked(const std::string& route, const std::string& id);
  // Gives up on a parked event (`id` empty: every parked and held event of
  // the route). Events held behind a dropped one are then sent in order.
  // NotFound for an unknown route or id.
  Status DropParked(const std::string& route, const std::string& id);

  // Store names used for a route: its checkpoint ("relay/NAME") and lease.
  static std::string CheckpointName(const std::string& route);
  static std::string LeaseName(const std::string& route);
  // Checkpoint rows (RelayState checkpoints) holding the position of the
  // event a blocked route stopped on ("relay-blocked/NAME", 0 when none)
  // and the position an operator asked to retry ("relay-retry/NAME").
  static std::string BlockedName(const std::string& route);
  static std::string RetryName(const std::string& route);

 private:
  class RouteRunner;
  friend class RouteRunner;
  struct Shared;

  Status CheckRoute(const std::string& route) const;
  void LeaseLoop();
  EventSource* SourceOf(const std::string& route) const;

  EventSource* const source_;
  RelayState* const state_;
  const RelayOptions options_;
  std::vector<RouteConfig> routes_;
  std::vector<std::unique_ptr<Sender>> given_senders_;  // null: from URL
  // Per route: the source it reads, and its idle poll (0: the relay's).
  std::vector<EventSource*> route_sources_;
  std::vector<std::chrono::milliseconds> route_polls_;
  std::vector<std::unique_ptr<RouteRunner>> runners_;
  std::unique_ptr<Shared> shared_;
};

}  // namespace herald
