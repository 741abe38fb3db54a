// Store: herald's event log, checkpoints, parked events, inbox and leases in
// one database (SQLite or PostgreSQL), behind one interface.
//
// Thread safety: a Store is safe to use from many threads at once; each call
// takes a connection of its own. A Transaction belongs to one thread at a time.
// Several processes may open the same database at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "herald/event.h"
#include "herald/status.h"

namespace herald {

// An open database transaction. Either made by Store::Begin (herald owns the
// connection) or joined onto a caller's connection by Store::Join (the caller
// owns it). Destroying a transaction that was neither committed nor rolled
// back rolls it back.
class Transaction {
 public:
  virtual ~Transaction() = default;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  // Commits. On failure the transaction is rolled back and the error is
  // returned (Unavailable when the database is busy or unreachable).
  virtual Status Commit() = 0;
  // Rolls back; idempotent.
  virtual Status Rollback() = 0;
  // The backend's connection handle: sqlite3* or PGconn*. Use it to make the
  // domain change in this same transaction. Owned by the transaction (Begin)
  // or by the caller (Join).
  virtual void* native_handle() = 0;

 protected:
  Transaction() = default;
};

struct AppendOptions {
  // When set, the stream must hold exactly this many events before the
  // append (0: the stream must be new), else the append fails with Conflict
  // and writes nothing. All events of the call must then share one stream.
  std::optional<int64_t> expected_version;
};

struct AppendResult {
  // How many of the events were new; the rest had been stored before (same
  // id) and were returned as stored.
  size_t created = 0;
};

struct ReadRequest {
  int64_t offset = 0;  // next position to read; 0 and 1 both mean the start
  int limit = 100;     // 1..kMaxReadLimit
  // Optional filters: glob patterns ('*' any run, '?' one character) on type;
  // an exact stream name. Filtered pages may hold fewer than `limit` events;
  // next_offset still moves past everything scanned.
  std::vector<std::string> types;
  std::string stream;
};
inline constexpr int kMaxReadLimit = 10000;

struct Page {
  std::vector<Event> events;
  // Where the next read starts. Store it; never compute offset + count.
  int64_t next_offset = 1;
  // The head (highest position) when the page was read.
  int64_t head = 0;
};

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
};

struct LeaseInfo {
  std::string name;
  std::string owner;
  int64_t expires_at_us = 0;
};

class Store {
 public:
  virtual ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // "sqlite" or "postgresql".
  virtual std::string_view backend() const = 0;

  // ---- Transactions -------------------------------------------------------

  // Opens a transaction on a connection the store owns.
  virtual Result<std::unique_ptr<Transaction>> Begin() = 0;
  // Like Begin, for bookkeeping that is safe to repeat (a relay's
  // checkpoint): the commit need not be flushed to disk at once. A process
  // crash loses nothing; a power failure may lose the transaction (whole,
  // never half). SQLite: synchronous=NORMAL for this commit; PostgreSQL:
  // SET LOCAL synchronous_commit = off. The default is Begin().
  virtual Result<std::unique_ptr<Transaction>> BeginRelaxed() {
    return Begin();
  }
  // Joins a transaction the caller already opened on its own connection
  // (sqlite3* / PGconn*). Commit() on the result commits the caller's
  // transaction; destroying it without Commit() leaves the caller's
  // transaction open (the caller decides). The connection must outlive it.
  virtual std::unique_ptr<Transaction> Join(void* native_connection) = 0;

  // ---- Events -------------------------------------------------------------

  // Appends `events` inside `tx`: they exist iff tx commits. Fills in each
  // event's missing id and occurred_at, and its stream_version and (SQLite)
  // position. Idempotent by id: an event whose id is stored already is not
  // stored again, and comes back as stored. If every event was stored
  // before, the call is a retry and expected_version is not checked.
  // Errors: InvalidArgument (bad event; nothing written), Conflict (expected
  // version; nothing written), Unavailable.
  virtual Result<AppendResult> Append(Transaction& tx, std::span<Event> events,
                                      const AppendOptions& options = {}) = 0;
  // Appends in a transaction of its own and commits it.
  Result<AppendResult> Append(std::span<Event> events,
                              const AppendOptions& options = {});

  // Reads the events at positions >= offset in position order.
  virtual Result<Page> Read(const ReadRequest& request) = 0;
  // Reads like Read, but hands each event to `visit` as views into the
  // store's own row buffers (valid only during the call) instead of copying
  // it into an Event: what rendering a page needs. The returned Page holds
  // next_offset and head; its events stay empty.
  using EventVisitor = std::function<void(const EventView&)>;
  virtual Result<Page> Scan(const ReadRequest& request,
                            const EventVisitor& visit);
  // Reads one stream in order, from stream version `from_version` (1-based).
  virtual Result<std::vector<Event>> ReadStream(const std::string& stream,
                                                int64_t from_version,
                                                int limit) = 0;
  // The event with this id, or NotFound.
  virtual Result<Event> Get(const std::string& id) = 0;
  // The highest position (0 when empty).
  virtual Result<int64_t> Head() = 0;

  // ---- Checkpoints (consumer name -> next offset) -----------------------

  // The saved offset, or 0 when none was saved.
  virtual Result<int64_t> GetCheckpoint(const std::string& name) = 0;
  virtual Status SaveCheckpoint(Transaction& tx, const std::string& name,
                                int64_t next_offset) = 0;
  Status SaveCheckpoint(const std::string& name, int64_t next_offset);

  // ---- Parked events (per route) ------------------------------------------

  // Inserts or replaces the parked row of (route, event.id).
  virtual Status Park(Transaction& tx, const ParkedEvent& parked) = 0;
  // In position order; `state` empty lists every state.
  virtual Result<std::vector<ParkedEvent>> ListParked(const std::string& route,
                                                      const std::string& state,
                                                      int limit) = 0;
  virtual Result<int64_t> CountParked(const std::string& route) = 0;
  // Sets the state of one parked event (or of all when id is empty) of the
  // route. NotFound when nothing matched.
  virtual Status SetParkedState(const std::string& route, const std::string& id,
                                const std::string& state) = 0;
  // Removes one parked event (or all when id is empty). NotFound when
  // nothing matched.
  virtual Status DropParked(Transaction& tx, const std::string& route,
                            const std::string& id) = 0;

  // ---- Inbox (consumer-side dedupe) ---------------------------------------

  // Records that `consumer` handled `event_id` inside tx. Returns true the
  // first time, false if it was recorded before (skip the event).
  virtual Result<bool> MarkHandled(Transaction& tx, const std::string& consumer,
                                   const std::string& event_id) = 0;

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

  // ---- Health -------------------------------------------------------------

  // What holds positions back, for status pages: empty when nothing does.
  // On PostgreSQL it names the oldest open transaction that keeps the
  // sequencer waiting ("backend pid 4242, in transaction since ...").
  virtual Result<std::string> DescribeHoldup() { return std::string(); }

  // The same, structured (for /metrics). `held` is true whenever
  // DescribeHoldup would be non-empty; `pid`, `since_us` and `seconds`
  // describe the oldest open transaction that holds positions back, and
  // stay 0 when the holdup is not a transaction (e.g. no sequencer runs).
  struct Holdup {
    bool held = false;
    int pid = 0;              // backend pid of the holding transaction
    int64_t since_us = 0;     // its start, microseconds since the epoch
    double seconds = 0;       // how long it has been open
    std::string description;  // what DescribeHoldup returns
  };
  // The default wraps DescribeHoldup.
  virtual Result<Holdup> GetHoldup() {
    auto d = DescribeHoldup();
    if (!d.ok()) return d.status();
    Holdup h;
    h.held = !d->empty();
    h.description = std::move(*d);
    return h;
  }

  // ---- Wake-up -----------------------------------------------------------

  // A counter that moves whenever this process commits new events through
  // this store. WaitForAppend blocks until it differs from `seen` or the
  // timeout passes, and returns its value. Appends by other processes are
  // not signalled: poll Head() for those.
  uint64_t append_epoch() const;
  uint64_t WaitForAppend(uint64_t seen, std::chrono::milliseconds timeout);

 protected:
  Store();
  // Backends call this after a commit that stored events.
  void NotifyAppend();

 private:
  struct Signal;
  std::unique_ptr<Signal> signal_;
};

struct StoreOptions {
  // Create the schema if the database is new and migrate an older one.
  // Default true. With false, an unmigrated database is FailedPrecondition.
  bool migrate = true;
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
// Corruption (not a herald database), FailedPrecondition (schema newer than
// this binary, or not migrated with migrate=false), Unavailable.
Result<std::unique_ptr<Store>> OpenStore(const std::string& url,
                                         const StoreOptions& options = {});

}  // namespace herald
