// EventLog: herald's ordered, append-only log of events, the part of a store
// that producers and readers call (append, read, stream read, get, head,
// wait). Also the two small interfaces every part of a store shares:
// Transaction and Database (a place transactions are opened), and
// EventSource, the least a relay needs of a log.
//
// Thread safety: an EventLog is safe to use from many threads at once; each
// call takes a connection of its own. A Transaction belongs to one thread at
// a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "herald/event.h"
#include "herald/status.h"

namespace herald {

class Database;

// An open database transaction. Either made by Database::Begin (herald owns
// the connection) or joined onto a caller's connection by Database::Join
// (the caller owns it). Destroying a transaction that was neither committed
// nor rolled back rolls it back.
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

  // The database (store) that made this transaction, or null when it was
  // made elsewhere. A store refuses a transaction it did not make with
  // InvalidArgument.
  const Database* database() const { return database_; }

 protected:
  Transaction() = default;
  explicit Transaction(const Database* database) : database_(database) {}

 private:
  const Database* database_ = nullptr;
};

// One database that transactions are opened on. EventLog, RelayState and
// Inbox share it (a virtual base), so a Store that implements all three has
// one Begin and one Join.
class Database {
 public:
  virtual ~Database() = default;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // "sqlite" or "postgresql".
  virtual std::string_view backend() const = 0;

  // Opens a transaction on a connection the store owns.
  // FailedPrecondition when the store was opened read-only.
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

 protected:
  Database() = default;
  // OK when `tx` was made by this database; InvalidArgument otherwise
  // (a transaction of another store, or of another backend).
  Status CheckOwn(const Transaction& tx) const;
};

struct AppendOptions {
  // When set, the stream must hold exactly this many events before the
  // append (0: the stream must be new), else the append fails with Conflict
  // and writes nothing. All events of the call must then share one stream.
  std::optional<int64_t> expected_version;
  // The caller passed every event through ValidateEvent and has not changed
  // it since, so the store does not check it again (herald serve decodes
  // and validates a POST on its I/O thread; its one appender thread, which
  // every POST waits for, then only writes). An event that would fail
  // ValidateEvent is then stored as it is: set it only for checked events.
  bool validated = false;
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
  // Who reads: the relay sets its route's name. A source that keeps
  // progress per reader (an adopted outbox table) answers by it; herald's
  // log ignores it.
  std::string reader;
};
inline constexpr int kMaxReadLimit = 10000;

struct Page {
  std::vector<Event> events;
  // Where the next read starts. Store it; never compute offset + count.
  int64_t next_offset = 1;
  // The head (highest position) when the page was read.
  int64_t head = 0;
};

// What a relay reads from: positioned events in order, the head, and a
// wake-up signal. herald's own log is one; a table an application already
// has can be another.
class EventSource {
 public:
  virtual ~EventSource() = default;

  // Reads the events at positions >= offset in position order.
  virtual Result<Page> Read(const ReadRequest& request) = 0;
  // The highest position (0 when empty).
  virtual Result<int64_t> Head() = 0;

  // A counter that moves whenever this process commits new events through
  // this source. WaitForAppend blocks until it differs from `seen` or the
  // timeout passes, and returns its value. Appends by other processes are
  // not signalled: poll Head() for those.
  virtual uint64_t append_epoch() const = 0;
  virtual uint64_t WaitForAppend(uint64_t seen,
                                 std::chrono::milliseconds timeout) = 0;

  // Called by a relay route, on its thread, after events it read from this
  // source (by position) were acknowledged by its receiver, or set aside
  // for it (parked, or held behind a parked event: not delivered). A source
  // that marks rows once every reader acknowledged them (an adopted outbox
  // table) acts on it; herald's log keeps no such state and ignores it.
  virtual void OnRouteProgress(const std::string& route,
                               std::span<const int64_t> acknowledged,
                               std::span<const int64_t> set_aside) {
    (void)route;
    (void)acknowledged;
    (void)set_aside;
  }
};

class EventLog : public virtual Database, public EventSource {
 public:
  ~EventLog() override;

  // Appends `events` inside `tx`: they exist iff tx commits. Fills in each
  // event's missing id and occurred_at, and its stream_version and (SQLite)
  // position. Ids are UUIDs and compared without regard to case: they are
  // stored, and handed back, in lower case. Idempotent by id: an event whose
  // id is stored already is not stored again, and comes back as stored. If
  // every event was stored before, the call is a retry and expected_version
  // is not checked.
  // Errors: InvalidArgument (bad event, or a transaction of another store;
  // nothing written), Conflict (expected version; nothing written),
  // Unavailable.
  virtual Result<AppendResult> Append(Transaction& tx, std::span<Event> events,
                                      const AppendOptions& options = {}) = 0;
  // Appends in a transaction of its own and commits it.
  Result<AppendResult> Append(std::span<Event> events,
                              const AppendOptions& options = {});

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
  // The event with this id (any case), or NotFound.
  virtual Result<Event> Get(const std::string& id) = 0;

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
  virtual Result<Holdup> GetHoldup();

  // The in-process append signal (see EventSource). Backends move it with
  // NotifyAppend after a commit that stored events.
  uint64_t append_epoch() const override;
  uint64_t WaitForAppend(uint64_t seen,
                         std::chrono::milliseconds timeout) override;

 protected:
  EventLog();
  // Backends call this after a commit that stored events.
  void NotifyAppend();

 private:
  struct Signal;
  std::unique_ptr<Signal> signal_;
};

}  // namespace herald
