// Store: herald's event log, relay state (checkpoints, parked events,
// leases, route status) and inbox in one database (SQLite or PostgreSQL).
// Each part is an interface of its own, for its own callers: producers and
// readers use EventLog (event_log.h), a relay RelayState (relay_state.h),
// consumers Inbox (inbox.h). A Store implements all three on one database,
// so one transaction can span them.
//
// Thread safety: a Store is safe to use from many threads at once; each call
// takes a connection of its own. A Transaction belongs to one thread at a
// time. Several processes may open the same database at once.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "herald/event_log.h"
#include "herald/inbox.h"
#include "herald/relay_state.h"
#include "herald/status.h"

namespace herald {

class Store : public EventLog, public RelayState, public Inbox {
 public:
  ~Store() override;

 protected:
  Store();
};

struct StoreOptions {
  // Create the schema if the database is new and migrate an older one.
  // Default true. With false, an unmigrated database is FailedPrecondition.
  bool migrate = true;
  // Open for reading only: nothing is created, migrated or written, and no
  // write lock is taken (WAL readers proceed beside a writer); the schema
  // version is checked read-only. Begin, and so every write, then fails
  // with FailedPrecondition. A missing SQLite file is NotFound, a file that
  // cannot be read Unavailable; messages name the path. Default false.
  bool read_only = false;
  // SQLite: synchronous=FULL (default, durable at commit) or NORMAL.
  bool sqlite_synchronous_full = true;
  // SQLite: checkpoint the WAL into the database once it holds this many
  // pages (PRAGMA wal_autocheckpoint); 0 never checkpoints automatically.
  // The default 10,000 (~40 MiB of WAL) writes far fewer pages per event
  // than SQLite's own 1,000 on a grown database; each checkpoint then takes
  // tens of milliseconds inside the commit that crosses the mark, so a
  // lower value trades append throughput for smaller latency spikes.
  int sqlite_checkpoint_pages = 10000;
  // How long a call waits for a lock held by another connection.
  std::chrono::milliseconds busy_timeout{5000};
  // SQLite: accept a database that already holds other tables but no herald
  // schema, and add herald's tables to it (the application's own database).
  // Default false: such a file is refused as "not a herald database".
  bool adopt = false;
  // PostgreSQL: run the sequencer (lease-held, so one instance is active
  // across processes) inside this store. Default true.
  bool run_sequencer = true;
};

// Opens a store by URL: "sqlite:PATH", a bare PATH (SQLite), or
// "postgresql://..." / "postgres://...". Errors: InvalidArgument (bad URL),
// Corruption (not a herald database; the file is left byte-for-byte
// unchanged), FailedPrecondition (schema newer than this binary, or not
// migrated with migrate=false or read_only), NotFound (read_only and no such
// SQLite file), Unavailable.
Result<std::unique_ptr<Store>> OpenStore(const std::string& url,
                                         const StoreOptions& options = {});

}  // namespace herald
