// RelayState: what a relay keeps in the database beside the events it
// relays: checkpoints (consumer name -> next offset), parked events per
// route, leases, and one status row per route (its last error). Kept in the
// database so every process running or inspecting a route sees the same.
//
// Thread safety: safe to use from many threads at once; each call takes a
// connection of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "herald/event.h"
#include "herald/event_log.h"
#include "herald/status.h"

namespace herald {

// An event a route could not deliver, or one held behind it.
struct ParkedEvent {
  std::string route;
  Event event;
  // "parked": failed max_attempts times; "held": waits behind a parked event
  // of its stream; "retry": an operator asked for it to be sent again.
  std::string state;
  int attempts = 0;
  std::string error;
  int64_t parked_at_us = 0;
  // When its first failed attempt was (UTC µs), kept when it is parked
  // again; parked_at_us is the last. 0: none (a held row) or not known (a
  // row written before schema sqlite 4 / postgres 5).
  int64_t first_failed_at_us = 0;
  // Keep the event itself in the row (its JSON), for an event that is not
  // in this store's log: a consumer's (herald/consumer.h). Rows read back
  // have it set when their event came from the row. Default false: the row
  // refers to the log's event by id.
  bool keep_event = false;
};

// The parked rows of one route, by state.
struct ParkedCounts {
  int64_t parked = 0;
  int64_t held = 0;
  int64_t retry = 0;
  // occurred_at (UTC µs) of the event of the route's first row in position
  // order, whatever its state; 0 when the route has none. Read by the same
  // query as the counts, for the route's lag_seconds.
  int64_t oldest_occurred_at_us = 0;
  int64_t total() const { return parked + held + retry; }
};

struct LeaseInfo {
  std::string name;
  std::string owner;
  int64_t expires_at_us = 0;
};

// The stored status of one route (herald_route_status).
struct RouteStatusRow {
  std::string route;
  // The last delivery error and when (UTC µs); empty / 0 when none.
  std::string last_error;
  int64_t last_error_at_us = 0;
};

class RelayState : public virtual Database {
 public:
  // ---- Checkpoints (consumer name -> next offset) -----------------------

  // The saved offset, or 0 when none was saved.
  virtual Result<int64_t> GetCheckpoint(const std::string& name) = 0;
  // REQUIRES: tx was made by this store (else InvalidArgument).
  virtual Status SaveCheckpoint(Transaction& tx, const std::string& name,
                                int64_t next_offset) = 0;
  // In a transaction of its own.
  Status SaveCheckpoint(const std::string& name, int64_t next_offset);
  // The checkpoints whose name starts with `prefix`, by name (an adopted
  // table's per-route progress: herald/table_source.h). The default
  // answers FailedPrecondition (a state without it: that progress is kept
  // in memory only).
  virtual Result<std::vector<std::pair<std::string, int64_t>>> ListCheckpoints(
      const std::string& prefix);
  // Removes every checkpoint whose name starts with `prefix`.
  // REQUIRES: tx was made by this store (else InvalidArgument).
  virtual Status DeleteCheckpoints(Transaction& tx, const std::string& prefix);

  // ---- Parked events (per route) ------------------------------------------

  // Inserts or replaces the parked row of (route, event.id).
  // REQUIRES: tx was made by this store (else InvalidArgument).
  virtual Status Park(Transaction& tx, const ParkedEvent& parked) = 0;
  // In position order; `state` empty lists every state.
  virtual Result<std::vector<ParkedEvent>> ListParked(const std::string& route,
                                                      const std::string& state,
                                                      int limit) = 0;
  // The parked row of one event (any case of its UUID), or nullopt.
  virtual Result<std::optional<ParkedEvent>> GetParked(
      const std::string& route, const std::string& event_id) = 0;
  // Rows of every state.
  virtual Result<int64_t> CountParked(const std::string& route) = 0;
  // Rows by state and the oldest row's event time, in one query.
  virtual Result<ParkedCounts> CountParkedByState(const std::string& route) = 0;
  // Sets the state of one parked event (or of all when id is empty) of the
  // route. NotFound when nothing matched.
  virtual Status SetParkedState(const std::string& route, const std::string& id,
                                const std::string& state) = 0;
  // Removes one parked event (or all when id is empty). NotFound when
  // nothing matched. REQUIRES: tx was made by this store.
  virtual Status DropParked(Transaction& tx, const std::string& route,
                            const std::string& id) = 0;

  // ---- Leases -------------------------------------------------------------

  // Takes or renews lease `name` for `owner` until now + ttl. Returns true
  // if `owner` holds it afterwards, false if another owner holds an
  // unexpired lease.
  virtual Result<bool> AcquireLease(const std::string& name,
                                    const std::string& owner,
                                    std::chrono::milliseconds ttl) = 0;
  // Gives the lease up if `owner` holds it.
  virtual Status ReleaseLease(const std::string& name,
                              const std::string& owner) = 0;
  virtual Result<std::optional<LeaseInfo>> GetLease(
      const std::string& name) = 0;

  // ---- Route status --------------------------------------------------------

  // Records the route's last delivery error and its time (UTC µs), creating
  // the route's row when needed.
  virtual Status SetRouteError(const std::string& route,
                               const std::string& error, int64_t at_us) = 0;
  // The route's row, or nullopt when nothing was recorded for it.
  virtual Result<std::optional<RouteStatusRow>> GetRouteStatus(
      const std::string& route) = 0;
};

}  // namespace herald
