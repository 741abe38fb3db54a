// An outbox table an application already has, read as an EventSource so
// the relay delivers its rows ([[source]] in the config; docs/adopt.md).
//
// Flag mode: rows whose published column holds the pending value (and that
// are older than min_age) are read in id order; a row is marked done (and
// its `at` column set to the database's current time) once every route
// reading the source acknowledged it. Nothing else in the table changes.
// A row's position is its id; its event id is the mapped event_id column,
// or a UUID derived from the source name and the row id (stable across
// restarts, so a repeat after a crash carries the same id).
//
// Thread safety: safe to use from many threads (one connection, guarded).
// With a relay state, routes of one source may run in different processes:
// acknowledgements are saved there, and each source reads all routes' saved
// ones before deciding that a row is done. Without one, all routes of a
// source must run on the same source object.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "herald/config.h"
#include "herald/event_log.h"
#include "herald/relay_state.h"
#include "herald/status.h"

namespace herald {

// Opens the source's database and checks the table: that it exists, that
// every mapped column exists, that the id column is an integer and that the
// published column can hold the pending and done values. Errors name the
// config key and line (InvalidArgument); Unavailable when the database
// cannot be reached; FailedPrecondition for a URL whose client is not built.
// `readers` are the routes that read it (a row is marked done once all of
// them acknowledged it); at least one.
// `state` (optional, not owned, must outlive the source) keeps each
// route's acknowledgements of rows not yet marked (checkpoints named
// "adopt/SOURCE/ROW_ID/ROUTE"), so a restart does not send them again to a
// route that had them acknowledged; without it they are kept in memory.
Result<std::unique_ptr<EventSource>> OpenTableSource(
    const SourceConfig& source, const std::vector<std::string>& readers,
    RelayState* state = nullptr);

// The rows of an open table source still to be delivered (what `herald
// relay status` shows): flag mode, those holding the pending value; id
// mode, those at or above the lowest route checkpoint saved in `state` (or,
// without one, read in this process). InvalidArgument when `source` is not
// a table source.
Result<int64_t> CountPendingRows(EventSource* source,
                                 RelayState* state = nullptr);

// Id mode: rows that appeared below a route's cursor after it had passed
// their id (a transaction longer than safety_delay) and were delivered
// late, out of their stream's order. Counted once acknowledged, per route,
// and kept in the relay state (checkpoints "adopt/SOURCE/late/ROUTE" and
// "adopt/SOURCE/late-row/ROUTE"), read from `state` when given (another
// process's counts), else as counted in this process.
struct LateCounts {
  bool id_mode = false;  // false: flag mode, never late (all zero)
  int64_t total = 0;
  int64_t last_row = 0;  // the highest late row id (0: none)
  std::vector<std::pair<std::string, int64_t>> per_route;
};
Result<LateCounts> CountLateRows(EventSource* source,
                                 RelayState* state = nullptr);

// The late rows this process delivered since the last call (for logs).
struct LateRow {
  std::string route;
  int64_t row_id = 0;
};
std::vector<LateRow> TakeLateRows(EventSource* source);

// The event id derived for row `row_id` of source `source_name` when no
// event_id column is mapped: a UUIDv8 (RFC 9562) holding a 122-bit hash of
// both, in lower case.
std::string DerivedEventId(std::string_view source_name, int64_t row_id);

}  // namespace herald
