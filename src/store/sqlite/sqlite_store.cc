// SQLite Store: WAL mode, a pool of connections (one per concurrent caller),
// prepared statements cached per connection, positions assigned at insert
// (SQLite has one writer at a time, so rowid order is commit order).
//
// Thread safety: the store is shared; each connection is used by one thread
// at a time (taken from and returned to the pool under pool_mu_).
#include "store/sqlite/sqlite_store.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <deque>
#include <map>
#include <unordered_map>
#include <vector>

#include "herald/event_json.h"
#include "herald/json.h"
#include "herald/sqlite.h"
#include "store/event_id.h"
#include "util/thread_annotations.h"

namespace herald::detail {
namespace {

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

Status SqlError(sqlite3* db, int rc, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
      return Status::Unavailable(msg);
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return Status::Corruption(msg);
    case SQLITE_CONSTRAINT:
      return Status::Conflict(msg);
    default:
      return Status::Internal(msg);
  }
}

Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return SqlError(nullptr, rc, msg);
  }
  return Status::OK();
}

// Statement text by slot; a connection prepares each at first use.
enum Slot {
  kFindId,
  kStreamVersion,
  kInsertEvent,
  kRead,
  kReadStream,
  kHead,
  kGetCheckpoint,
  kSaveCheckpoint,
  kListCheckpoints,
  kDeleteCheckpoints,
  kPark,
  kCountParked,
  kCountParkedByState,
  kSetRouteError,
  kGetRouteStatus,
  kSweepInbox,
  kMarkHandled,
  kIsHandled,
  kSweepInboxBatch,
  kAcquireLease,
  kGetLease,
  kReleaseLease,
  kSavepoint,
  kRelease,
  kRollbackTo,
  kNumSlots
};

constexpr const char* kEventColumns =
    "position, id, stream, stream_version, type, content_type, payload, "
    "metadata, occurred_at";

const char* SlotSql(Slot s) {
  switch (s) {
    case kFindId:
      return "SELECT position, id, stream, stream_version, type, content_type, "
             "payload, metadata, occurred_at FROM herald_events WHERE id = ?1";
    case kStreamVersion:
      return "SELECT coalesce(max(stream_version), 0) FROM herald_events "
             "WHERE stream = ?1";
    case kInsertEvent:
      return "INSERT INTO herald_events (id, stream, stream_version, type, "
             "content_type, payload, metadata, occurred_at) "
             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
             "ON CONFLICT (id) DO NOTHING";
    case kRead:
      return "SELECT position, id, stream, stream_version, type, content_type, "
             "payload, metadata, occurred_at FROM herald_events "
             "WHERE position >= ?1 ORDER BY position LIMIT ?2";
    case kReadStream:
      return "SELECT position, id, stream, stream_version, type, content_type, "
             "payload, metadata, occurred_at FROM herald_events "
             "WHERE stream = ?1 AND stream_version >= ?2 "
             "ORDER BY stream_version LIMIT ?3";
    case kHead:
      return "SELECT coalesce(max(position), 0) FROM herald_events";
    case kSavepoint:
      return "SAVEPOINT herald_append";
    case kRelease:
      return "RELEASE herald_append";
    case kRollbackTo:
      return "ROLLBACK TO herald_append";
    case kGetCheckpoint:
      return "SELECT next_offset FROM herald_checkpoints WHERE name = ?1";
    case kSaveCheckpoint:
      return "INSERT INTO herald_checkpoints (name, next_offset, updated_at) "
             "VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE SET "
             "next_offset = excluded.next_offset, "
             "updated_at = excluded.updated_at";
    case kListCheckpoints:
      return "SELECT name, next_offset FROM herald_checkpoints WHERE "
             "substr(name, 1, length(?1)) = ?1 ORDER BY name";
    case kDeleteCheckpoints:
      return "DELETE FROM herald_checkpoints WHERE "
             "substr(name, 1, length(?1)) = ?1";
    case kPark:
      return "INSERT INTO herald_parked (route, event_id, position, stream, "
             "state, attempts, error, parked_at, event, first_failed_at) "
             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
             "ON CONFLICT (route, event_id) DO UPDATE SET "
             "state = excluded.state, attempts = excluded.attempts, "
             "error = excluded.error, parked_at = excluded.parked_at, "
             "event = coalesce(excluded.event, event), "
             "first_failed_at = coalesce(first_failed_at, "
             "excluded.first_failed_at)";
    case kCountParked:
      return "SELECT count(*) FROM herald_parked WHERE route = ?1";
    case kCountParkedByState:
      return "SELECT coalesce(sum(state = 'parked'), 0), "
             "coalesce(sum(state = 'held'), 0), "
             "coalesce(sum(state = 'retry'), 0), "
             "coalesce((SELECT e.occurred_at FROM herald_parked p "
             "JOIN herald_events e ON e.id = p.event_id WHERE p.route = ?1 "
             "ORDER BY p.position LIMIT 1), 0) FROM herald_parked "
             "WHERE route = ?1";
    case kSetRouteError:
      return "INSERT INTO herald_route_status (route, last_error, "
             "last_error_at, updated_at) VALUES (?1, ?2, ?3, ?3) "
             "ON CONFLICT (route) DO UPDATE SET "
             "last_error = excluded.last_error, "
             "last_error_at = excluded.last_error_at, "
             "updated_at = excluded.updated_at";
    case kGetRouteStatus:
      return "SELECT route, last_error, last_error_at "
             "FROM herald_route_status WHERE route = ?1";
    case kSweepInbox:
      return "DELETE FROM herald_inbox WHERE handled_at < ?1";
    case kMarkHandled:
      return "INSERT INTO herald_inbox (consumer, event_id, handled_at) "
             "VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";
    case kIsHandled:
      return "SELECT 1 FROM herald_inbox WHERE consumer = ?1 AND "
             "event_id = ?2";
    case kSweepInboxBatch:
      return "DELETE FROM herald_inbox WHERE consumer = ?1 AND event_id IN "
             "(SELECT event_id FROM herald_inbox WHERE consumer = ?1 AND "
             "handled_at < ?2 LIMIT ?3)";
    case kAcquireLease:
      return "INSERT INTO herald_leases (name, owner, expires_at) "
             "VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE SET "
             "owner = excluded.owner, expires_at = excluded.expires_at "
             "WHERE herald_leases.owner = excluded.owner "
             "OR herald_leases.expires_at < ?4";
    case kGetLease:
      return "SELECT name, owner, expires_at FROM herald_leases "
             "WHERE name = ?1";
    case kReleaseLease:
      return "DELETE FROM herald_leases WHERE name = ?1 AND owner = ?2";
    case kNumSlots:
      break;
  }
  return "";
}

// Schema migrations: migration i (1-based) brings the schema to version i.
const char* const kMigrations[] = {
    // 1: the initial schema.
    R"sql(
CREATE TABLE IF NOT EXISTS herald_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE herald_events (
  position       INTEGER PRIMARY KEY,
  id             TEXT    NOT NULL UNIQUE,
  stream         TEXT    NOT NULL,
  stream_version INTEGER NOT NULL,
  type           TEXT    NOT NULL,
  content_type   TEXT    NOT NULL,
  payload        BLOB    NOT NULL,
  metadata       TEXT    NOT NULL,
  occurred_at    INTEGER NOT NULL,
  UNIQUE (stream, stream_version)
);
CREATE TABLE herald_checkpoints (
  name        TEXT PRIMARY KEY,
  next_offset INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
);
CREATE TABLE herald_parked (
  route     TEXT    NOT NULL,
  event_id  TEXT    NOT NULL,
  position  INTEGER NOT NULL,
  stream    TEXT    NOT NULL,
  state     TEXT    NOT NULL,
  attempts  INTEGER NOT NULL,
  error     TEXT    NOT NULL,
  parked_at INTEGER NOT NULL,
  PRIMARY KEY (route, event_id)
);
CREATE INDEX herald_parked_by_position ON herald_parked (route, position);
CREATE TABLE herald_inbox (
  consumer   TEXT    NOT NULL,
  event_id   TEXT    NOT NULL,
  handled_at INTEGER NOT NULL,
  PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
CREATE TABLE herald_leases (
  name       TEXT PRIMARY KEY,
  owner      TEXT    NOT NULL,
  expires_at INTEGER NOT NULL
);
)sql",
    // 2: one status row per route (its last error), which schema 1 kept as
    // a lease row named "relay-error/ROUTE" (owner: the error, expires_at:
    // its time); those rows move here. The inbox gets an index for its
    // retention sweep.
    R"sql(
CREATE TABLE herald_route_status (
  route         TEXT PRIMARY KEY,
  last_error    TEXT    NOT NULL,
  last_error_at INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL
);
INSERT INTO herald_route_status (route, last_error, last_error_at, updated_at)
  SELECT substr(name, 13), owner, expires_at, expires_at FROM herald_leases
   WHERE name LIKE 'relay-error/%';
DELETE FROM herald_leases WHERE name LIKE 'relay-error/%';
CREATE INDEX herald_inbox_by_time ON herald_inbox (handled_at);
)sql",
    // 3: a parked row may hold its event itself (JSON), for a consumer's
    // event, which is not in this database's log.
    R"sql(
ALTER TABLE herald_parked ADD COLUMN event TEXT;
)sql",
    // 4: a parked row keeps the time of its event's first failed attempt
    // (parked_at is the last); null for held rows and older rows.
    R"sql(
ALTER TABLE herald_parked ADD COLUMN first_failed_at INTEGER;
)sql",
};
constexpr int kNumMigrations = sizeof(kMigrations) / sizeof(kMigrations[0]);
static_assert(kNumMigrations == kSqliteSchemaVersion);

// One connection and its prepared statements.
struct Conn {
  DbPtr db;
  StmtPtr stmts[kNumSlots];
  // Each stream's current version as this connection last wrote or read it
  // inside its own write transactions, so an append need not look it up
  // again (the lookup was ~15 % of the group commit's appender). Valid
  // while nobody else changed the database: `data_version` is SQLite's
  // data version (SQLITE_FCNTL_DATA_VERSION, which moves on every commit,
  // this connection's or another's, once this connection sees it) right
  // after this connection's last commit; each write transaction compares
  // it when it first appends. A rollback, or an append that fails, drops
  // the lot.
  std::unordered_map<std::string, int64_t> versions;
  unsigned data_version = 0;
  bool versions_valid = false;

  void DropVersions() {
    versions.clear();
    versions_valid = false;
  }
  // SQLite's data version of this connection's main database, or false.
  bool DataVersion(unsigned* out) const {
    return sqlite3_file_control(db.get(), "main", SQLITE_FCNTL_DATA_VERSION,
                                out) == SQLITE_OK;
  }

  Result<sqlite3_stmt*> Get(Slot slot) {
    if (!stmts[slot]) {
      sqlite3_stmt* s = nullptr;
      int rc = sqlite3_prepare_v3(db.get(), SlotSql(slot), -1,
                                  SQLITE_PREPARE_PERSISTENT, &s, nullptr);
      if (rc != SQLITE_OK) return SqlError(db.get(), rc, "prepare");
      stmts[slot].reset(s);
    }
    sqlite3_stmt* s = stmts[slot].get();
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
  }
};

// A statement prepared for one use (joined connections, dynamic SQL).
Result<StmtPtr> Prepare(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr);
  if (rc != SQLITE_OK) return SqlError(db, rc, "prepare");
  return StmtPtr(s);
}

// Resets a statement when it leaves scope so it holds no read lock.
struct ResetGuard {
  sqlite3_stmt* s;
  ~ResetGuard() { sqlite3_reset(s); }
};

void BindText(sqlite3_stmt* s, int i, std::string_view v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}

std::string_view ColumnView(sqlite3_stmt* s, int i) {
  const void* p = sqlite3_column_blob(s, i);
  int n = sqlite3_column_bytes(s, i);
  return p ? std::string_view(static_cast<const char*>(p),
                              static_cast<size_t>(n))
           : std::string_view();
}

std::string ColumnText(sqlite3_stmt* s, int i) {
  return std::string(ColumnView(s, i));
}

// A column's bytes through its sqlite3_value: one column lookup instead of
// two (sqlite3_column_blob, then sqlite3_column_bytes), which a page read
// pays six times a row. The value is "unprotected" (no mutex held): fine
// on this store's connections, opened SQLITE_OPEN_NOMUTEX and used by one
// thread at a time.
std::string_view ValueView(sqlite3_value* v) {
  const void* p = sqlite3_value_blob(v);
  int n = sqlite3_value_bytes(v);
  return p ? std::string_view(static_cast<const char*>(p),
                              static_cast<size_t>(n))
           : std::string_view();
}

// Views an event's columns, in kEventColumns order from column `at`
// (valid until the next step).
EventView RowView(sqlite3_stmt* s, int at = 0) {
  EventView v;
  auto col = [s, at](int i) { return sqlite3_column_value(s, at + i); };
  v.position = sqlite3_value_int64(col(0));
  v.id = ValueView(col(1));
  v.stream = ValueView(col(2));
  v.stream_version = sqlite3_value_int64(col(3));
  v.type = ValueView(col(4));
  v.content_type = ValueView(col(5));
  v.payload = ValueView(col(6));
  v.metadata = ValueView(col(7));
  v.occurred_at_us = sqlite3_value_int64(col(8));
  return v;
}

// Reads an event row in kEventColumns order.
void RowToEvent(sqlite3_stmt* s, Event* e) { *e = RowView(s).ToEvent(); }

// Gives this process's write transactions the database in arrival order.
// SQLite's own busy handler polls for the write lock, so under a steady
// stream of short transactions a waiting connection (a relay's checkpoint)
// can lose the race again and again; queueing in-process writers first
// bounds each wait by the transactions ahead of it. Other processes still
// meet at SQLite's lock.
class WriteTurns {
 public:
  // Waits for this caller's turn; false after `timeout` (the turn is given
  // up and the queue moves on).
  bool Acquire(std::chrono::milliseconds timeout) EXCLUDES(mu_) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    MutexLock lock(&mu_);
    uint64_t me = next_++;
    waiting_.push_back(me);
    while (held_ || waiting_.front() != me) {
      if (!cv_.WaitUntil(&mu_, deadline) && (held_ || waiting_.front() != me)) {
        waiting_.erase(std::find(waiting_.begin(), waiting_.end(), me));
        cv_.SignalAll();
        return false;
      }
    }
    waiting_.pop_front();
    held_ = true;
    return true;
  }
  void Release() EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      held_ = false;
    }
    cv_.SignalAll();
  }

 private:
  Mutex mu_;
  CondVar cv_;
  std::deque<uint64_t> waiting_ GUARDED_BY(mu_);
  uint64_t next_ GUARDED_BY(mu_) = 0;
  bool held_ GUARDED_BY(mu_) = false;
};

class SqliteStore;

class SqliteTransaction final : public Transaction {
 public:
  // Owned: the connection comes from the store's pool and goes back to it.
  SqliteTransaction(SqliteStore* store, std::unique_ptr<Conn> conn);
  // Joined: the caller's connection, with its transaction already open.
  SqliteTransaction(SqliteStore* store, sqlite3* caller_db);
  ~SqliteTransaction() override;

  Status Commit() override;
  Status Rollback() override;
  // Lending the connection out ends the remembered stream versions for
  // this transaction: the caller's own SQL (a savepoint rolled back over an
  // append, say) could change what they describe unseen.
  void* native_handle() override {
    handle_lent_ = true;
    return db_;
  }

  sqlite3* db() const { return db_; }
  // The pooled connection with its cached statements, or null when joined.
  Conn* conn() const { return conn_.get(); }
  void set_appended() { appended_ = true; }
  // Made by BeginRelaxed: synchronous=FULL is restored on release.
  void set_relaxed() { relaxed_ = true; }
  // Holds the store's write turn, given back on release.
  void set_has_turn() { has_turn_ = true; }
  // The connection's stream versions (Conn::versions), checked against the
  // data version at this transaction's first append; null when joined (or
  // SQLite cannot tell its data version).
  std::unordered_map<std::string, int64_t>* Versions();

 private:
  void Release();

  SqliteStore* store_;
  std::unique_ptr<Conn> conn_;
  sqlite3* db_;
  bool open_ = true;
  bool appended_ = false;
  bool relaxed_ = false;
  bool has_turn_ = false;
  bool versions_checked_ = false;
  bool handle_lent_ = false;
};

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string path, StoreOptions options)
      : path_(std::move(path)), options_(options) {}

  std::string_view backend() const override { return "sqlite"; }

  Status Init();

  Result<std::unique_ptr<Conn>> Acquire();
  void ReturnConn(std::unique_ptr<Conn> conn);
  void Notify() { NotifyAppend(); }

  Result<std::unique_ptr<Transaction>> Begin() override {
    return BeginWrite(false);
  }

  Result<std::unique_ptr<Transaction>> BeginRelaxed() override {
    return BeginWrite(options_.sqlite_synchronous_full);
  }

  // Takes this process's next write turn, then BEGIN IMMEDIATE. `relaxed`:
  // synchronous=NORMAL for this transaction's commit (the level cannot
  // change inside a transaction, so it is set before BEGIN and restored by
  // SqliteTransaction::Release).
  Result<std::unique_ptr<Transaction>> BeginWrite(bool relaxed) {
    if (options_.read_only) {
      return Status::FailedPrecondition("the database '" + path_ +
                                        "' was opened read-only");
    }
    if (!turns_.Acquire(options_.busy_timeout)) {
      return Status::Unavailable(
          "database is busy: this process's other write transactions held "
          "it for longer than the busy timeout");
    }
    auto conn = Acquire();
    if (!conn.ok()) {
      turns_.Release();
      return conn.status();
    }
    auto tx = std::make_unique<SqliteTransaction>(this, std::move(*conn));
    tx->set_has_turn();
    Status s;
    if (relaxed) {
      tx->set_relaxed();
      s = Exec(tx->db(), "PRAGMA synchronous = NORMAL");
    }
    if (s.ok()) s = Exec(tx->db(), "BEGIN IMMEDIATE");
    if (!s.ok()) {
      (void)tx->Rollback();  // gives the connection and the turn back
      return s;
    }
    return std::unique_ptr<Transaction>(std::move(tx));
  }

  void ReleaseTurn() { turns_.Release(); }

  std::unique_ptr<Transaction> Join(void* native) override {
    return std::make_unique<SqliteTransaction>(this,
                                               static_cast<sqlite3*>(native));
  }

  Result<AppendResult> Append(Transaction& tx, std::span<Event> events,
                              const AppendOptions& options) override;
  using EventLog::Append;

  Result<Page> Read(const ReadRequest& request) override;
  Result<Page> Scan(const ReadRequest& request,
                    const EventVisitor& visit) override;
  Result<std::vector<Event>> ReadStream(const std::string& stream,
                                        int64_t from_version,
                                        int limit) override;
  Result<Event> Get(const std::string& id) override;
  Result<int64_t> Head() override;

  Result<int64_t> GetCheckpoint(const std::string& name) override;
  Result<std::vector<std::pair<std::string, int64_t>>> ListCheckpoints(
      const std::string& prefix) override;
  Status DeleteCheckpoints(Transaction& tx, const std::string& prefix) override;
  Status SaveCheckpoint(Transaction& tx, const std::string& name,
                        int64_t next_offset) override;
  using RelayState::SaveCheckpoint;

  Status Park(Transaction& tx, const ParkedEvent& parked) override;
  Result<std::vector<ParkedEvent>> ListParked(const std::string& route,
                                              const std::string& state,
                                              int limit) override;
  Result<std::optional<ParkedEvent>> GetParked(
      const std::string& route, const std::string& event_id) override;
  Result<int64_t> CountParked(const std::string& route) override;
  Result<ParkedCounts> CountParkedByState(const std::string& route) override;
  Status SetParkedState(const std::string& route, const std::string& id,
                        const std::string& state) override;
  Status DropParked(Transaction& tx, const std::string& route,
                    const std::string& id) override;

  Result<bool> MarkHandled(Transaction& tx, const std::string& consumer,
                           const std::string& event_id) override;
  Result<int64_t> SweepInbox(std::chrono::milliseconds max_age) override;
  Result<bool> IsHandled(const std::string& consumer,
                         const std::string& event_id) override;
  Result<int64_t> SweepInboxBatch(const std::string& consumer,
                                  std::chrono::milliseconds max_age,
                                  int limit) override;

  Result<bool> AcquireLease(const std::string& name, const std::string& owner,
                            std::chrono::milliseconds ttl) override;
  Status ReleaseLease(const std::string& name,
                      const std::string& owner) override;
  Result<std::optional<LeaseInfo>> GetLease(const std::string& name) override;

  Status SetRouteError(const std::string& route, const std::string& error,
                       int64_t at_us) override;
  Result<std::optional<RouteStatusRow>> GetRouteStatus(
      const std::string& route) override;

 private:
  // tx as this store's own transaction; InvalidArgument for another's.
  Result<SqliteTransaction*> Own(Transaction& tx) {
    HERALD_RETURN_IF_ERROR(CheckOwn(tx));
    return static_cast<SqliteTransaction*>(&tx);
  }
  // A pooled connection for a single call; returned to the pool on exit.
  class Lease {
   public:
    explicit Lease(SqliteStore* store) : store_(store) {
      auto c = store->Acquire();
      if (c.ok()) {
        conn_ = std::move(*c);
      } else {
        status_ = c.status();
      }
    }
    ~Lease() {
      if (conn_) store_->ReturnConn(std::move(conn_));
    }
    const Status& status() const { return status_; }
    Conn* operator->() { return conn_.get(); }
    Conn* get() { return conn_.get(); }

   private:
    SqliteStore* store_;
    std::unique_ptr<Conn> conn_;
    Status status_;
  };

  // A statement for `slot` on tx's connection: cached when pooled, prepared
  // for this one use when joined (`holder` keeps it alive).
  Result<sqlite3_stmt*> TxStmt(SqliteTransaction& tx, Slot slot,
                               StmtPtr* holder) {
    if (tx.conn()) return tx.conn()->Get(slot);
    auto s = Prepare(tx.db(), SlotSql(slot));
    if (!s.ok()) return s.status();
    *holder = std::move(*s);
    return holder->get();
  }
  Result<std::unique_ptr<Conn>> OpenConn();
  Status Migrate(sqlite3* db);
  // Reads the schema version without a write lock: -1 when the database
  // holds no herald_meta table; `tables` is how many tables it holds.
  Result<int> ReadSchemaVersion(sqlite3* db, int64_t* tables);
  // Parked rows of `route`, of `state` and `event_id` when not empty.
  Result<std::vector<ParkedEvent>> QueryParked(const std::string& route,
                                               const std::string& state,
                                               const std::string& event_id,
                                               int limit);
  Status CheckVersion(int version);
  Result<int64_t> QueryInt(Conn* c, Slot slot);

  const std::string path_;
  const StoreOptions options_;
  // Read-only, in a directory nobody may write: opened with immutable=1.
  // Set by Init before the store is shared.
  bool immutable_ = false;
  const int64_t busy_timeout_us_ = options_.busy_timeout.count() * 1000;

  Mutex pool_mu_;
  std::vector<std::unique_ptr<Conn>> pool_ GUARDED_BY(pool_mu_);
  // Its own lock; never taken with pool_mu_ held.
  WriteTurns turns_;
};

SqliteTransaction::SqliteTransaction(SqliteStore* store,
                                     std::unique_ptr<Conn> conn)
    : Transaction(store),
      store_(store),
      conn_(std::move(conn)),
      db_(conn_->db.get()) {}

SqliteTransaction::SqliteTransaction(SqliteStore* store, sqlite3* caller_db)
    : Transaction(store), store_(store), db_(caller_db) {}

SqliteTransaction::~SqliteTransaction() {
  if (open_ && conn_) (void)Rollback();
  Release();
}

void SqliteTransaction::Release() {
  if (conn_ && relaxed_ &&
      !Exec(conn_->db.get(), "PRAGMA synchronous = FULL").ok()) {
    conn_.reset();  // never pool a connection left at NORMAL
  }
  if (conn_) store_->ReturnConn(std::move(conn_));
  if (has_turn_) {
    has_turn_ = false;
    store_->ReleaseTurn();
  }
}

std::unordered_map<std::string, int64_t>* SqliteTransaction::Versions() {
  if (!conn_ || handle_lent_) return nullptr;
  if (!versions_checked_) {
    versions_checked_ = true;
    unsigned now = 0;
    if (!conn_->DataVersion(&now)) {
      conn_->DropVersions();
      return nullptr;
    }
    // Another connection committed since this one last did: start over.
    if (!conn_->versions_valid || now != conn_->data_version) {
      conn_->versions.clear();
    }
    // Until this transaction ends, only it writes: what it looks up and
    // appends stays true (a rollback drops the lot, see Rollback).
    conn_->versions_valid = true;
  }
  return conn_->versions_valid ? &conn_->versions : nullptr;
}

Status SqliteTransaction::Commit() {
  if (!open_) return Status::FailedPrecondition("transaction is not open");
  Status s = Exec(db_, "COMMIT");
  if (!s.ok()) {
    if (!sqlite3_get_autocommit(db_)) (void)Exec(db_, "ROLLBACK");
    if (conn_) conn_->DropVersions();
    open_ = false;
    Release();
    return s;
  }
  if (conn_) {
    // The versions are this commit's; a later commit by anyone moves the
    // data version past this one. A transaction that appended nothing
    // wrote something else: the versions are not vouched for.
    if (!versions_checked_ || handle_lent_ || !conn_->versions_valid ||
        !conn_->DataVersion(&conn_->data_version)) {
      conn_->DropVersions();
    }
  }
  open_ = false;
  Release();
  if (appended_) store_->Notify();
  return Status::OK();
}

Status SqliteTransaction::Rollback() {
  if (!open_) return Status::OK();
  open_ = false;
  if (conn_) conn_->DropVersions();
  Status s;
  if (!sqlite3_get_autocommit(db_)) s = Exec(db_, "ROLLBACK");
  Release();
  return s;
}

// Whether files can be made in the directory of `path`.
bool DirectoryWritable(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  if (dir.empty()) dir = "/";
  return ::access(dir.c_str(), W_OK) == 0;
}

// "file:PATH?immutable=1", PATH escaped for a URI.
std::string ImmutableUri(const std::string& path) {
  std::string uri = "file:";
  for (char c : path) {
    if (c == '%' || c == '?' || c == '#') {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", static_cast<unsigned char>(c));
      uri += hex;
    } else {
      uri += c;
    }
  }
  return uri + "?immutable=1";
}

// Busy handler: sleeps 50 µs, doubling up to 1 ms a try, until the timeout
// (µs, in *arg) has passed; then returns 0 (SQLITE_BUSY). SQLite's default
// handler sleeps up to 100 ms a try, which starves a connection (a relay's
// checkpoint) that competes with a steady stream of short transactions.
int BusyWait(void* arg, int tries) {
  const int64_t timeout_us = *static_cast<const int64_t*>(arg);
  auto step = [](int i) { return std::min<int64_t>(int64_t{50} << i, 1000); };
  int64_t slept = 0;  // by the schedule, so far
  for (int i = 0; i < std::min(tries, 5); ++i) slept += step(i);
  if (tries > 5) slept += int64_t{1000} * (tries - 5);
  if (slept >= timeout_us) return 0;
  struct timespec ts {
    0, static_cast<long>(step(std::min(tries, 5)) * 1000)
  };
  nanosleep(&ts, nullptr);
  return 1;
}

Result<std::unique_ptr<Conn>> SqliteStore::OpenConn() {
  sqlite3* raw = nullptr;
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
  flags |= options_.read_only ? SQLITE_OPEN_READONLY
                              : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  // On a read-only directory (a read-only mount) SQLite cannot make the
  // WAL index beside the file; such a file is then read as immutable.
  std::string name = immutable_ ? ImmutableUri(path_) : path_;
  int rc = sqlite3_open_v2(name.c_str(), &raw, flags, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) {
    return SqlError(raw, rc,
                    std::string("cannot open database '") + path_ + "'" +
                        (options_.read_only ? " for reading" : ""));
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_handler(db.get(), &BusyWait,
                       const_cast<int64_t*>(&busy_timeout_us_));
  std::string pragmas = "PRAGMA foreign_keys = ON; PRAGMA synchronous = ";
  pragmas += options_.sqlite_synchronous_full ? "FULL;" : "NORMAL;";
  // Checkpoint when the WAL holds sqlite_checkpoint_pages (10,000 by
  // default, ~40 MiB), not SQLite's 1,000. The connection whose commit
  // crosses the mark checkpoints before COMMIT returns, and a checkpoint
  // writes each page once however often the WAL holds it: on a grown
  // database, where every event dirties its own index leaf, fewer and
  // larger checkpoints write far fewer pages per event (group commit of 64
  // connections: 13.5k -> 16k events/s, see docs/benchmarks-server.md).
  pragmas += "PRAGMA wal_autocheckpoint = " +
             std::to_string(options_.sqlite_checkpoint_pages) + ";";
  HERALD_RETURN_IF_ERROR(Exec(db.get(), pragmas.c_str()));
  auto conn = std::make_unique<Conn>();
  conn->db = std::move(db);
  return conn;
}

Result<std::unique_ptr<Conn>> SqliteStore::Acquire() {
  {
    MutexLock lock(&pool_mu_);
    if (!pool_.empty()) {
      auto c = std::move(pool_.back());
      pool_.pop_back();
      return c;
    }
  }
  return OpenConn();
}

void SqliteStore::ReturnConn(std::unique_ptr<Conn> conn) {
  if (!sqlite3_get_autocommit(conn->db.get())) {
    (void)Exec(conn->db.get(), "ROLLBACK");
  }
  MutexLock lock(&pool_mu_);
  if (pool_.size() < 16) pool_.push_back(std::move(conn));
}

Status SqliteStore::Init() {
  // A file that exists but is not SQLite is refused before SQLite touches it.
  struct stat st;
  bool exists = ::stat(path_.c_str(), &st) == 0;
  int stat_errno = errno;
  if (exists && S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("'" + path_ + "' is a directory");
  }
  bool plain_path = !path_.starts_with("file:") && path_ != ":memory:";
  if (!exists && options_.read_only && plain_path && stat_errno == ENOENT) {
    return Status::NotFound("no database at '" + path_ +
                            "' (nothing was created; `herald migrate --db " +
                            path_ + "` makes one)");
  }
  if (exists && st.st_size > 0) {
    FILE* f = std::fopen(path_.c_str(), "rb");
    if (!f) {
      return Status::Unavailable("cannot read database '" + path_ +
                                 "': " + std::strerror(errno));
    }
    char magic[16] = {};
    size_t n = std::fread(magic, 1, sizeof magic, f);
    std::fclose(f);
    if (n < 16 || std::memcmp(magic, "SQLite format 3", 16) != 0) {
      return Status::Corruption("'" + path_ +
                                "' is not a herald database (not an SQLite "
                                "file)");
    }
  }
  // Whose file is it? Read before anything is written, so a file that is
  // not herald's is refused unchanged (not even switched to WAL).
  std::unique_ptr<Conn> conn;
  int64_t tables = 0;
  auto open_and_read = [&]() -> Result<int> {
    auto c = OpenConn();
    if (!c.ok()) return c.status();
    conn = std::move(*c);
    return ReadSchemaVersion(conn->db.get(), &tables);
  };
  auto version = open_and_read();
  if (!version.ok() && options_.read_only && version.status().IsUnavailable() &&
      plain_path && !DirectoryWritable(path_)) {
    immutable_ = true;
    version = open_and_read();
  }
  if (!version.ok()) {
    if (version.status().message().find(path_) != std::string::npos) {
      return version.status();
    }
    return Status(version.status().code(),
                  "database '" + path_ + "': " + version.status().message());
  }
  sqlite3* db = conn->db.get();
  if (*version < 0 && tables > 0 && !options_.adopt) {
    return Status::Corruption(
        "'" + path_ +
        "' is not a herald database (it holds another application's tables "
        "and no herald_meta table)");
  }
  if (options_.read_only) {
    // No write lock, no WAL switch, no migration: the version must be
    // this binary's already.
    HERALD_RETURN_IF_ERROR(CheckVersion(*version));
    if (*version < kSqliteSchemaVersion) {
      return Status::FailedPrecondition(
          "the database '" + path_ + "' has schema version " +
          std::to_string(std::max(*version, 0)) + " and needs migrating to " +
          std::to_string(kSqliteSchemaVersion) +
          " (opened read-only): run `herald migrate`");
    }
    ReturnConn(std::move(conn));
    return Status::OK();
  }
  // WAL lets readers run beside the single writer, across processes.
  StmtPtr mode;
  {
    auto s = Prepare(db, "PRAGMA journal_mode = WAL");
    if (!s.ok()) return s.status();
    mode = std::move(*s);
    int rc = sqlite3_step(mode.get());
    if (rc != SQLITE_ROW) return SqlError(db, rc, "enable WAL");
  }
  mode.reset();
  HERALD_RETURN_IF_ERROR(Migrate(db));
  ReturnConn(std::move(conn));
  return Status::OK();
}

Result<int> SqliteStore::ReadSchemaVersion(sqlite3* db, int64_t* tables) {
  auto count = Prepare(db,
                       "SELECT count(*), "
                       "sum(name = 'herald_meta') FROM sqlite_master "
                       "WHERE type = 'table'");
  if (!count.ok()) {
    return Status(count.status().code(),
                  "database '" + path_ + "': " + count.status().message());
  }
  int rc = sqlite3_step(count->get());
  if (rc != SQLITE_ROW) {
    return SqlError(db, rc, "read the schema of '" + path_ + "'");
  }
  *tables = sqlite3_column_int64(count->get(), 0);
  bool has_meta = sqlite3_column_int64(count->get(), 1) > 0;
  count->reset();
  if (!has_meta) return -1;
  int version = 0;
  auto v = Prepare(db,
                   "SELECT value FROM herald_meta "
                   "WHERE key = 'schema_version'");
  if (!v.ok()) return v.status();
  rc = sqlite3_step(v->get());
  if (rc == SQLITE_ROW) {
    version = sqlite3_column_int(v->get(), 0);
  } else if (rc != SQLITE_DONE) {
    return SqlError(db, rc, "read the schema version of '" + path_ + "'");
  }
  return version;
}

Status SqliteStore::CheckVersion(int version) {
  if (version > kSqliteSchemaVersion) {
    return Status::FailedPrecondition(
        "the database '" + path_ + "' has schema version " +
        std::to_string(version) + ", newer than this herald supports (" +
        std::to_string(kSqliteSchemaVersion) + "); upgrade herald");
  }
  return Status::OK();
}

Status SqliteStore::Migrate(sqlite3* db) {
  // Everything under one write lock so concurrent openers migrate once.
  HERALD_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
  struct Rollback {
    sqlite3* db;
    ~Rollback() {
      if (!sqlite3_get_autocommit(db)) (void)Exec(db, "ROLLBACK");
    }
  } guard{db};

  int64_t tables = 0;
  auto read = ReadSchemaVersion(db, &tables);
  if (!read.ok()) return read.status();
  int version = std::max(*read, 0);
  if (*read < 0 && tables > 0 && !options_.adopt) {
    return Status::Corruption(
        "'" + path_ +
        "' is not a herald database (it holds another application's tables "
        "and no herald_meta table)");
  }
  HERALD_RETURN_IF_ERROR(CheckVersion(version));
  if (version == kSqliteSchemaVersion) return Status::OK();
  if (!options_.migrate) {
    return Status::FailedPrecondition(
        "the database '" + path_ + "' has schema version " +
        std::to_string(version) + " and needs migrating to " +
        std::to_string(kSqliteSchemaVersion) + ": run `herald migrate`");
  }
  for (int v = version; v < kSqliteSchemaVersion; ++v) {
    HERALD_RETURN_IF_ERROR(Exec(db, kMigrations[v]));
  }
  std::string set =
      "INSERT INTO herald_meta (key, value) VALUES ('schema_version', '" +
      std::to_string(kSqliteSchemaVersion) +
      "') ON CONFLICT (key) DO UPDATE SET value = excluded.value;"
      "INSERT OR IGNORE INTO herald_meta (key, value) "
      "VALUES ('application', 'herald');";
  HERALD_RETURN_IF_ERROR(Exec(db, set.c_str()));
  return Exec(db, "COMMIT");
}

Result<AppendResult> SqliteStore::Append(Transaction& tx_base,
                                         std::span<Event> events,
                                         const AppendOptions& options) {
  auto own = Own(tx_base);
  if (!own.ok()) return own.status();
  auto& tx = **own;
  sqlite3* db = tx.db();
  AppendResult result;
  if (events.empty()) return result;
  if (!options.validated) {
    for (auto& e : events) HERALD_RETURN_IF_ERROR(ValidateEvent(e));
  }
  // One event per UUID: ids are kept in lower case.
  for (auto& e : events) LowerIdInPlace(&e.id);
  if (options.expected_version) {
    for (auto& e : events) {
      if (e.stream != events[0].stream) {
        return Status::InvalidArgument(
            "expected_version needs every event of the append in one stream");
      }
    }
  }

  StmtPtr h_find, h_version, h_insert, h_save, h_release, h_rollback;
  auto find = TxStmt(tx, kFindId, &h_find);
  auto version = TxStmt(tx, kStreamVersion, &h_version);
  auto insert = TxStmt(tx, kInsertEvent, &h_insert);
  auto savepoint = TxStmt(tx, kSavepoint, &h_save);
  auto release = TxStmt(tx, kRelease, &h_release);
  auto rollback = TxStmt(tx, kRollbackTo, &h_rollback);
  for (const auto* st :
       {&find, &version, &insert, &savepoint, &release, &rollback}) {
    if (!st->ok()) return st->status();
  }
  // Savepoint statements are prepared once per connection like the rest.
  auto run = [&](sqlite3_stmt* st, const char* what) -> Status {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? Status::OK() : SqlError(db, rc, what);
  };

  // A savepoint makes the call all-or-nothing inside the caller's
  // transaction. One event is one INSERT, which SQLite applies whole or
  // not at all, so it needs none (the group commit's appender makes one
  // such call per POSTed event: SAVEPOINT and RELEASE cost it ~1 us each,
  // and every page the group had dirtied before was copied to the
  // statement journal again).
  const bool use_savepoint = events.size() > 1;
  if (use_savepoint) HERALD_RETURN_IF_ERROR(run(*savepoint, "savepoint"));
  // Each stream's current version: the connection's (see Conn::versions),
  // or, in a joined transaction, this call's own.
  std::unordered_map<std::string, int64_t> own_versions;
  std::unordered_map<std::string, int64_t>* versions = tx.Versions();
  if (!versions) versions = &own_versions;
  auto fail = [&](Status s) -> Result<AppendResult> {
    // What this call looked up or wrote may be rolled back below.
    if (tx.conn()) tx.conn()->DropVersions();
    if (use_savepoint) {
      (void)run(*rollback, "rollback to savepoint");
      (void)run(*release, "release savepoint");
    }
    return s;
  };

  // A connection's versions stay below this many streams.
  constexpr size_t kMaxCachedStreams = 16384;
  auto stream_version = [&](const std::string& stream) -> Result<int64_t> {
    auto it = versions->find(stream);
    if (it != versions->end()) return it->second;
    sqlite3_stmt* s = *version;
    sqlite3_reset(s);
    BindText(s, 1, stream);
    ResetGuard g{s};
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) return SqlError(db, rc, "read stream version");
    int64_t v = sqlite3_column_int64(s, 0);
    if (versions->size() >= kMaxCachedStreams) versions->clear();
    versions->emplace(stream, v);
    return v;
  };
  auto lookup = [&](Event* e) -> Result<bool> {
    sqlite3_stmt* s = *find;
    sqlite3_reset(s);
    BindText(s, 1, e->id);
    ResetGuard g{s};
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      RowToEvent(s, e);
      return true;
    }
    if (rc != SQLITE_DONE) return SqlError(db, rc, "find event");
    return false;
  };

  if (options.expected_version) {
    auto current = stream_version(events[0].stream);
    if (!current.ok()) return fail(current.status());
    if (*current != *options.expected_version) {
      // A retry of an append that succeeded is not a conflict.
      std::vector<Event> stored(events.begin(), events.end());
      bool all_stored = true;
      for (auto& e : stored) {
        if (e.id.empty()) {
          all_stored = false;
          break;
        }
        auto found = lookup(&e);
        if (!found.ok()) return fail(found.status());
        if (!*found) {
          all_stored = false;
          break;
        }
      }
      if (!all_stored) {
        return fail(Status::Conflict(
            "stream '" + events[0].stream + "' is at version " +
            std::to_string(*current) + ", expected " +
            std::to_string(*options.expected_version)));
      }
      std::copy(stored.begin(), stored.end(), events.begin());
      if (use_savepoint) (void)run(*release, "release savepoint");
      return result;
    }
  }

  int64_t now = NowMicros();
  for (auto& e : events) {
    if (e.id.empty()) e.id = NewUuidV7();
    if (e.occurred_at_us == 0) e.occurred_at_us = now;
    auto current = stream_version(e.stream);
    if (!current.ok()) return fail(current.status());
    sqlite3_stmt* s = *insert;
    sqlite3_reset(s);
    BindText(s, 1, e.id);
    BindText(s, 2, e.stream);
    sqlite3_bind_int64(s, 3, *current + 1);
    BindText(s, 4, e.type);
    BindText(s, 5, e.content_type);
    sqlite3_bind_blob(s, 6, e.payload.data(),
                      static_cast<int>(e.payload.size()), SQLITE_STATIC);
    BindText(s, 7, e.metadata.empty() ? std::string_view("{}") : e.metadata);
    sqlite3_bind_int64(s, 8, e.occurred_at_us);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return fail(SqlError(db, rc, "append"));
    if (sqlite3_changes(db) == 0) {
      // Stored before: hand back the stored event.
      auto found = lookup(&e);
      if (!found.ok()) return fail(found.status());
      if (!*found) return fail(Status::Internal("duplicate id vanished"));
      continue;
    }
    e.position = sqlite3_last_insert_rowid(db);
    e.stream_version = *current + 1;
    (*versions)[e.stream] = e.stream_version;
    ++result.created;
  }
  if (use_savepoint) {
    Status released = run(*release, "release savepoint");
    if (!released.ok()) {
      if (tx.conn()) tx.conn()->DropVersions();
      return released;
    }
  }
  if (result.created > 0) tx.set_appended();
  return result;
}

Result<Page> SqliteStore::Read(const ReadRequest& req) {
  std::vector<Event> events;
  auto page = Scan(req, [&](const EventView& v) {
    if (events.empty()) events.reserve(static_cast<size_t>(req.limit));
    events.push_back(v.ToEvent());
  });
  if (page.ok()) page->events = std::move(events);
  return page;
}

Result<Page> SqliteStore::Scan(const ReadRequest& req,
                               const EventVisitor& visit) {
  if (req.limit < 1 || req.limit > kMaxReadLimit) {
    return Status::InvalidArgument("limit must be between 1 and " +
                                   std::to_string(kMaxReadLimit));
  }
  if (req.offset < 0) {
    return Status::InvalidArgument("offset must not be negative");
  }
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  sqlite3* db = c->db.get();
  int64_t from = req.offset < 1 ? 1 : req.offset;
  Page page;
  page.next_offset = from;
  // One read transaction so the head and the rows agree.
  HERALD_RETURN_IF_ERROR(Exec(db, "BEGIN"));
  struct End {
    sqlite3* db;
    ~End() { (void)Exec(db, "COMMIT"); }
  } end{db};
  auto head = QueryInt(c.get(), kHead);
  if (!head.ok()) return head.status();
  page.head = *head;

  sqlite3_stmt* s;
  StmtPtr dynamic;
  bool filtered = !req.types.empty() || !req.stream.empty();
  if (!filtered) {
    auto st = c->Get(kRead);
    if (!st.ok()) return st.status();
    s = *st;
  } else {
    std::string sql = std::string("SELECT ") + kEventColumns +
                      " FROM herald_events WHERE position >= ?1 AND "
                      "position <= ?2";
    if (!req.stream.empty()) sql += " AND stream = ?3";
    if (!req.types.empty()) {
      sql += " AND (";
      for (size_t i = 0; i < req.types.size(); ++i) {
        if (i) sql += " OR ";
        sql += "type GLOB ?" + std::to_string(4 + i);
      }
      sql += ")";
    }
    sql += " ORDER BY position LIMIT ?" + std::to_string(4 + req.types.size());
    auto st = Prepare(db, sql);
    if (!st.ok()) return st.status();
    dynamic = std::move(*st);
    s = dynamic.get();
  }
  sqlite3_bind_int64(s, 1, from);
  if (!filtered) {
    sqlite3_bind_int(s, 2, req.limit);
  } else {
    sqlite3_bind_int64(s, 2, page.head);
    if (!req.stream.empty()) BindText(s, 3, req.stream);
    for (size_t i = 0; i < req.types.size(); ++i) {
      BindText(s, static_cast<int>(4 + i), req.types[i]);
    }
    sqlite3_bind_int(s, static_cast<int>(4 + req.types.size()), req.limit);
  }
  ResetGuard g{s};
  int rc;
  int count = 0;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    EventView v = RowView(s);
    page.next_offset = v.position + 1;
    ++count;
    visit(v);
  }
  if (rc != SQLITE_DONE) return SqlError(db, rc, "read events");
  if (filtered && count < req.limit) {
    // Everything up to the head was scanned.
    page.next_offset = std::max(from, page.head + 1);
  }
  return page;
}

Result<int64_t> SqliteStore::QueryInt(Conn* c, Slot slot) {
  auto st = c->Get(slot);
  if (!st.ok()) return st.status();
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc != SQLITE_ROW) return SqlError(c->db.get(), rc, "query");
  return sqlite3_column_int64(*st, 0);
}

Result<std::vector<Event>> SqliteStore::ReadStream(const std::string& stream,
                                                   int64_t from_version,
                                                   int limit) {
  if (limit < 1 || limit > kMaxReadLimit) {
    return Status::InvalidArgument("limit must be between 1 and " +
                                   std::to_string(kMaxReadLimit));
  }
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  auto st = c->Get(kReadStream);
  if (!st.ok()) return st.status();
  sqlite3_stmt* s = *st;
  BindText(s, 1, stream);
  sqlite3_bind_int64(s, 2, from_version);
  sqlite3_bind_int(s, 3, limit);
  ResetGuard g{s};
  std::vector<Event> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    out.emplace_back();
    RowToEvent(s, &out.back());
  }
  if (rc != SQLITE_DONE) return SqlError(c->db.get(), rc, "read stream");
  return out;
}

Result<Event> SqliteStore::Get(const std::string& id) {
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  auto st = c->Get(kFindId);
  if (!st.ok()) return st.status();
  // Stored in lower case; the id as given too, for rows a herald before
  // schema 2 stored in another case.
  std::string lower = LowerId(id);
  const std::string* keys[] = {&lower, &id};
  for (const std::string* key : keys) {
    if (key == &id && id == lower) break;
    sqlite3_reset(*st);
    BindText(*st, 1, *key);
    ResetGuard g{*st};
    int rc = sqlite3_step(*st);
    if (rc == SQLITE_DONE) continue;
    if (rc != SQLITE_ROW) return SqlError(c->db.get(), rc, "get event");
    Event e;
    RowToEvent(*st, &e);
    return e;
  }
  return Status::NotFound("no event with id " + id);
}

Result<int64_t> SqliteStore::Head() {
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  return QueryInt(c.get(), kHead);
}

Result<int64_t> SqliteStore::GetCheckpoint(const std::string& name) {
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  auto st = c->Get(kGetCheckpoint);
  if (!st.ok()) return st.status();
  BindText(*st, 1, name);
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc == SQLITE_DONE) return int64_t{0};
  if (rc != SQLITE_ROW) return SqlError(c->db.get(), rc, "read checkpoint");
  return sqlite3_column_int64(*st, 0);
}

Result<std::vector<std::pair<std::string, int64_t>>>
SqliteStore::ListCheckpoints(const std::string& prefix) {
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  auto st = c->Get(kListCheckpoints);
  if (!st.ok()) return st.status();
  BindText(*st, 1, prefix);
  ResetGuard g{*st};
  std::vector<std::pair<std::string, int64_t>> out;
  int rc;
  while ((rc = sqlite3_step(*st)) == SQLITE_ROW) {
    out.emplace_back(ColumnText(*st, 0), sqlite3_column_int64(*st, 1));
  }
  if (rc != SQLITE_DONE) return SqlError(c->db.get(), rc, "list checkpoints");
  return out;
}

Status SqliteStore::DeleteCheckpoints(Transaction& tx_base,
                                      const std::string& prefix) {
  auto own = Own(tx_base);
  if (!own.ok()) return own.status();
  auto& tx = **own;
  StmtPtr holder;
  auto st = TxStmt(tx, kDeleteCheckpoints, &holder);
  if (!st.ok()) return st.status();
  BindText(*st, 1, prefix);
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc != SQLITE_DONE) return SqlError(tx.db(), rc, "delete checkpoints");
  return Status::OK();
}

Status SqliteStore::SaveCheckpoint(Transaction& tx_base,
                                   const std::string& name,
                                   int64_t next_offset) {
  auto own = Own(tx_base);
  if (!own.ok()) return own.status();
  auto& tx = **own;
  StmtPtr holder;
  auto st = TxStmt(tx, kSaveCheckpoint, &holder);
  if (!st.ok()) return st.status();
  BindText(*st, 1, name);
  sqlite3_bind_int64(*st, 2, next_offset);
  sqlite3_bind_int64(*st, 3, NowMicros());
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc != SQLITE_DONE) return SqlError(tx.db(), rc, "save checkpoint");
  return Status::OK();
}

Status SqliteStore::Park(Transaction& tx_base, const ParkedEvent& p) {
  auto own = Own(tx_base);
  if (!own.ok()) return own.status();
  auto& tx = **own;
  StmtPtr holder;
  auto st = TxStmt(tx, kPark, &holder);
  if (!st.ok()) return st.status();
  sqlite3_stmt* s = *st;
  BindText(s, 1, p.route);
  std::string event_id = LowerId(p.event.id);
  BindText(s, 2, event_id);
  sqlite3_bind_int64(s, 3, p.event.position);
  BindText(s, 4, p.event.stream);
  BindText(s, 5, p.state);
  sqlite3_bind_int(s, 6, p.attempts);
  BindText(s, 7, p.error);
  sqlite3_bind_int64(s, 8, p.parked_at_us ? p.parked_at_us : NowMicros());
  std::string json;
  if (p.keep_event) {
    AppendEventJson(p.event, &json);
    BindText(s, 9, json);
  } else {
    sqlite3_bind_null(s, 9);
  }
  if (p.first_failed_at_us > 0) {
    sqlite3_bind_int64(s, 10, p.first_failed_at_us);
  } else {
    sqlite3_bind_null(s, 10);
  }
  ResetGuard g{s};
  int rc = sqlite3_step(s);
  if (rc != SQLITE_DONE) return SqlError(tx.db(), rc, "park event");
  return Status::OK();
}

Result<std::optional<ParkedEvent>> SqliteStore::GetParked(
    const std::string& route, const std::string& event_id) {
  auto rows = QueryParked(route, "", LowerId(event_id), 1);
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::optional<ParkedEvent>();
  return std::optional<ParkedEvent>(std::move(rows->front()));
}

Result<std::vector<ParkedEvent>> SqliteStore::ListParked(
    const std::string& route, const std::string& state, int limit) {
  return QueryParked(route, state, "", limit);
}

Result<std::vector<ParkedEvent>> SqliteStore::QueryParked(
    const std::string& route, const std::string& state,
    const std::string& event_id, int limit) {
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  std::string sql =
      "SELECT p.route, p.state, p.attempts, p.error, p.parked_at, "
      "e.position, e.id, e.stream, e.stream_version, e.type, e.content_type, "
      "e.payload, e.metadata, e.occurred_at, p.event, p.first_failed_at "
      "FROM herald_parked p "
      "LEFT JOIN herald_events e ON e.id = p.event_id WHERE p.route = ?1 "
      "AND (e.id IS NOT NULL OR p.event IS NOT NULL)";
  if (!state.empty()) sql += " AND p.state = ?2";
  if (!event_id.empty()) sql += " AND p.event_id = ?4";
  sql += " ORDER BY p.position LIMIT ?3";
  auto st = Prepare(c->db.get(), sql);
  if (!st.ok()) return st.status();
  sqlite3_stmt* s = st->get();
  BindText(s, 1, route);
  if (!state.empty()) BindText(s, 2, state);
  sqlite3_bind_int(s, 3, limit);
  if (!event_id.empty()) BindText(s, 4, event_id);
  std::vector<ParkedEvent> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    ParkedEvent p;
    p.route = ColumnText(s, 0);
    p.state = ColumnText(s, 1);
    p.attempts = sqlite3_column_int(s, 2);
    p.error = ColumnText(s, 3);
    p.parked_at_us = sqlite3_column_int64(s, 4);
    p.first_failed_at_us = sqlite3_column_int64(s, 15);  // 0 when null
    if (sqlite3_column_type(s, 14) != SQLITE_NULL) {
      p.keep_event = true;
      HERALD_RETURN_IF_ERROR(
          DecodeEventJson(ColumnText(s, 14), EventJsonMode::kRead, &p.event));
    } else {
      p.event = RowView(s, 5).ToEvent();
    }
    out.push_back(std::move(p));
  }
  if (rc != SQLITE_DONE) return SqlError(c->db.get(), rc, "list parked");
  return out;
}

Result<int64_t> SqliteStore::CountParked(const std::string& route) {
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  auto st = c->Get(kCountParked);
  if (!st.ok()) return st.status();
  BindText(*st, 1, route);
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc != SQLITE_ROW) return SqlError(c->db.get(), rc, "count parked");
  return sqlite3_column_int64(*st, 0);
}

Status SqliteStore::SetParkedState(const std::string& route,
                                   const std::string& id,
                                   const std::string& state) {
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  std::string sql = "UPDATE herald_parked SET state = ?1 WHERE route = ?2";
  if (!id.empty()) sql += " AND event_id = ?3";
  auto st = Prepare(c->db.get(), sql);
  if (!st.ok()) return st.status();
  std::string lower = LowerId(id);
  BindText(st->get(), 1, state);
  BindText(st->get(), 2, route);
  if (!id.empty()) BindText(st->get(), 3, lower);
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_DONE) return SqlError(c->db.get(), rc, "update parked");
  if (sqlite3_changes(c->db.get()) == 0) {
    return Status::NotFound(
        id.empty() ? "route '" + route + "' has no parked events"
                   : "no parked event " + id + " on route '" + route + "'");
  }
  return Status::OK();
}

Status SqliteStore::DropParked(Transaction& tx_base, const std::string& route,
                               const std::string& id) {
  auto own = Own(tx_base);
  if (!own.ok()) return own.status();
  auto& tx = **own;
  std::string sql = "DELETE FROM herald_parked WHERE route = ?1";
  if (!id.empty()) sql += " AND event_id = ?2";
  auto st = Prepare(tx.db(), sql);
  if (!st.ok()) return st.status();
  std::string lower = LowerId(id);
  BindText(st->get(), 1, route);
  if (!id.empty()) BindText(st->get(), 2, lower);
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_DONE) return SqlError(tx.db(), rc, "drop parked");
  if (sqlite3_changes(tx.db()) == 0) {
    return Status::NotFound(
        id.empty() ? "route '" + route + "' has no parked events"
                   : "no parked event " + id + " on route '" + route + "'");
  }
  return Status::OK();
}

Result<bool> SqliteStore::MarkHandled(Transaction& tx_base,
                                      const std::string& consumer,
                                      const std::string& event_id) {
  auto own = Own(tx_base);
  if (!own.ok()) return own.status();
  auto& tx = **own;
  StmtPtr holder;
  auto st = TxStmt(tx, kMarkHandled, &holder);
  if (!st.ok()) return st.status();
  std::string id = IsUuid(event_id) ? LowerId(event_id) : event_id;
  BindText(*st, 1, consumer);
  BindText(*st, 2, id);
  sqlite3_bind_int64(*st, 3, NowMicros());
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc != SQLITE_DONE) return SqlError(tx.db(), rc, "mark handled");
  return sqlite3_changes(tx.db()) > 0;
}

Result<bool> SqliteStore::AcquireLease(const std::string& name,
                                       const std::string& owner,
                                       std::chrono::milliseconds ttl) {
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  auto st = c->Get(kAcquireLease);
  if (!st.ok()) return st.status();
  int64_t now = NowMicros();
  BindText(*st, 1, name);
  BindText(*st, 2, owner);
  sqlite3_bind_int64(*st, 3, now + ttl.count() * 1000);
  sqlite3_bind_int64(*st, 4, now);
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc != SQLITE_DONE) return SqlError(c->db.get(), rc, "acquire lease");
  return sqlite3_changes(c->db.get()) > 0;
}

Status SqliteStore::ReleaseLease(const std::string& name,
                                 const std::string& owner) {
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  auto st = c->Get(kReleaseLease);
  if (!st.ok()) return st.status();
  BindText(*st, 1, name);
  BindText(*st, 2, owner);
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc != SQLITE_DONE) return SqlError(c->db.get(), rc, "release lease");
  return Status::OK();
}

Result<std::optional<LeaseInfo>> SqliteStore::GetLease(
    const std::string& name) {
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  auto st = c->Get(kGetLease);
  if (!st.ok()) return st.status();
  BindText(*st, 1, name);
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc == SQLITE_DONE) return std::optional<LeaseInfo>();
  if (rc != SQLITE_ROW) return SqlError(c->db.get(), rc, "read lease");
  LeaseInfo info{ColumnText(*st, 0), ColumnText(*st, 1),
                 sqlite3_column_int64(*st, 2)};
  return std::optional<LeaseInfo>(std::move(info));
}

Result<ParkedCounts> SqliteStore::CountParkedByState(const std::string& route) {
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  auto st = c->Get(kCountParkedByState);
  if (!st.ok()) return st.status();
  BindText(*st, 1, route);
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc != SQLITE_ROW) return SqlError(c->db.get(), rc, "count parked");
  ParkedCounts counts;
  counts.parked = sqlite3_column_int64(*st, 0);
  counts.held = sqlite3_column_int64(*st, 1);
  counts.retry = sqlite3_column_int64(*st, 2);
  counts.oldest_occurred_at_us = sqlite3_column_int64(*st, 3);
  return counts;
}

Status SqliteStore::SetRouteError(const std::string& route,
                                  const std::string& error, int64_t at_us) {
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  if (options_.read_only) {
    return Status::FailedPrecondition("the database '" + path_ +
                                      "' was opened read-only");
  }
  auto st = c->Get(kSetRouteError);
  if (!st.ok()) return st.status();
  BindText(*st, 1, route);
  BindText(*st, 2, error);
  sqlite3_bind_int64(*st, 3, at_us);
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc != SQLITE_DONE) return SqlError(c->db.get(), rc, "save route status");
  return Status::OK();
}

Result<std::optional<RouteStatusRow>> SqliteStore::GetRouteStatus(
    const std::string& route) {
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  auto st = c->Get(kGetRouteStatus);
  if (!st.ok()) return st.status();
  BindText(*st, 1, route);
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc == SQLITE_DONE) return std::optional<RouteStatusRow>();
  if (rc != SQLITE_ROW) return SqlError(c->db.get(), rc, "read route status");
  RouteStatusRow row{ColumnText(*st, 0), ColumnText(*st, 1),
                     sqlite3_column_int64(*st, 2)};
  return std::optional<RouteStatusRow>(std::move(row));
}

Result<int64_t> SqliteStore::SweepInbox(std::chrono::milliseconds max_age) {
  if (max_age.count() < 0) {
    return Status::InvalidArgument("the inbox retention must not be negative");
  }
  if (options_.read_only) {
    return Status::FailedPrecondition("the database '" + path_ +
                                      "' was opened read-only");
  }
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  auto st = c->Get(kSweepInbox);
  if (!st.ok()) return st.status();
  sqlite3_bind_int64(*st, 1, NowMicros() - max_age.count() * 1000);
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc != SQLITE_DONE) return SqlError(c->db.get(), rc, "sweep inbox");
  return static_cast<int64_t>(sqlite3_changes(c->db.get()));
}

Result<bool> SqliteStore::IsHandled(const std::string& consumer,
                                    const std::string& event_id) {
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  auto st = c->Get(kIsHandled);
  if (!st.ok()) return st.status();
  std::string id = IsUuid(event_id) ? LowerId(event_id) : event_id;
  BindText(*st, 1, consumer);
  BindText(*st, 2, id);
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) return SqlError(c->db.get(), rc, "read inbox");
  return false;
}

Result<int64_t> SqliteStore::SweepInboxBatch(const std::string& consumer,
                                             std::chrono::milliseconds max_age,
                                             int limit) {
  if (max_age.count() < 0 || limit < 1) {
    return Status::InvalidArgument(
        "the inbox retention must not be negative and the batch at least 1");
  }
  if (options_.read_only) {
    return Status::FailedPrecondition("the database '" + path_ +
                                      "' was opened read-only");
  }
  Lease c(this);
  HERALD_RETURN_IF_ERROR(c.status());
  auto st = c->Get(kSweepInboxBatch);
  if (!st.ok()) return st.status();
  BindText(*st, 1, consumer);
  sqlite3_bind_int64(*st, 2, NowMicros() - max_age.count() * 1000);
  sqlite3_bind_int(*st, 3, limit);
  ResetGuard g{*st};
  int rc = sqlite3_step(*st);
  if (rc != SQLITE_DONE) return SqlError(c->db.get(), rc, "sweep inbox");
  return static_cast<int64_t>(sqlite3_changes(c->db.get()));
}

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path,
                                               const StoreOptions& options) {
  if (path.empty()) {
    return Status::InvalidArgument("the SQLite database path is empty");
  }
  if (options.sqlite_checkpoint_pages < 0) {
    return Status::InvalidArgument(
        "sqlite_checkpoint_pages must not be negative");
  }
  auto store = std::make_unique<SqliteStore>(path, options);
  HERALD_RETURN_IF_ERROR(store->Init());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace herald::detail
