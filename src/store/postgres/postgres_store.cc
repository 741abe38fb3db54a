// PostgreSQL Store: libpq, a pool of connections with prepared statements,
// and a sequencer that gives committed events their positions.
//
// How positions stay dense and gap-free while transactions commit out of
// order: an append call locks its streams' herald_streams rows (so appends
// to one stream are serialized: a later one starts only after the earlier
// transaction ended), takes a batch number and inserts its events as that
// batch. As the transaction commits, a deferred trigger
// (herald_position_batch) gives the batch the next free positions in
// herald_log, holding an advisory lock it only tries (it never waits), so
// one positioning commit runs at a time, and positions the batches queued
// in herald_pending with its own, in batch order; when the lock is taken, it
// queues the batch in herald_pending instead. A sequencer pass
// (herald_sequence, under the same lock) moves committed pending batches, in
// batch order, to herald_log. Readers only see batches in the log. A pass
// sees a batch only once its transaction committed, and whenever it sees a
// later append to a stream it also sees the earlier ones, so per-stream
// order is append order; positions are handed out from the head by one
// holder of the lock at a time, so a reader that saw position N never finds
// a new event <= N. No transaction, however long, holds back events other
// than its own (and appends to its streams).
//
// Who positions herald_pending's batches: a commit trigger that holds the
// lock; the background sequencer thread, when
// run_sequencer and this process holds the "herald.sequencer" lease (it
// also wakes this process's readers when other processes' commits move the
// head); reads that must see this process's own commits (CatchUp).
//
// Thread safety: the store is shared; each connection is used by one thread
// at a time (taken from and returned to the pool under pool_mu_). The
// sequencer thread owns its connection; seq_mu_ guards its wake-up state.
// pool_mu_ and seq_mu_ are never held together.
#include "store/postgres/postgres_store.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "herald/event_json.h"
#include "herald/redact.h"
#include "store/event_id.h"
#include "store/postgres/pg_util.h"
#include "util/thread_annotations.h"
#include "util/thread_name.h"

namespace herald::detail {

std::string RedactPostgresUrl(const std::string& url) {
  return RedactSecrets(url);  // the one redaction of every URL herald shows
}

namespace {

using pg::ConnPtr;
using pg::Params;
using pg::ResultPtr;

// Batches (append calls) per sequencer pass.
constexpr int kSequencerBatch = 2000;
constexpr const char* kSequencerLease = "herald.sequencer";
constexpr std::chrono::milliseconds kLeaseTtl{5000};
constexpr std::chrono::milliseconds kLeaseRenew{1500};
constexpr std::chrono::milliseconds kMaxIdlePoll{100};
// After a pass that positioned events, empty passes keep polling every
// millisecond this long before backing off.
constexpr std::chrono::milliseconds kBusyWindow{250};
// How often the lease holder vacuums the sequencer's queue.
constexpr std::chrono::milliseconds kVacuumInterval{1000};
// A commit-time wake-up waits this long before its pass.
constexpr std::chrono::milliseconds kWokenDelay{1};
// After a pass that positioned events, the next waits this long.
constexpr std::chrono::milliseconds kBusyPassInterval{2};
constexpr size_t kMaxPooled = 32;
// A transaction open this long with uncommitted events is reported.
constexpr int kHoldupThresholdMs = 1000;

enum Slot {
  kAppend,
  kAppendOne,
  kAppendOneNew,
  kAppendNew,
  kUndoAppendOne,
  kRead,
  kReadFiltered,
  kReadStream,
  kGet,
  kHead,
  kGetCheckpoint,
  kSaveCheckpoint,
  kListCheckpoints,
  kDeleteCheckpoints,
  kPark,
  kListParked,
  kGetParked,
  kCountParked,
  kCountParkedByState,
  kSetRouteError,
  kGetRouteStatus,
  kSweepInbox,
  kSetParkedAll,
  kSetParkedOne,
  kDropParkedAll,
  kDropParkedOne,
  kMarkHandled,
  kIsHandled,
  kSweepInboxBatch,
  kAcquireLease,
  kGetLease,
  kReleaseLease,
  kSequence,
  kHoldup,
  kPending,
  kWaiting,
  kNumSlots
};

#define HERALD_EVENT_COLUMNS                                             \
  "l.first_position + e.idx, e.id, e.stream, e.stream_version, e.type, " \
  "e.content_type, e.payload, e.metadata, e.occurred_at"

#define HERALD_HEAD_SQL                                       \
  "SELECT coalesce((SELECT first_position + events - 1 FROM " \
  "herald_log ORDER BY first_position DESC LIMIT 1), 0)"

const char* SlotSql(Slot s) {
  switch (s) {
    case kAppend:
      return "SELECT * FROM herald_append_events($1::uuid[], $2::text[], "
             "$3::text[], $4::text[], $5::bytea[], $6::text[], "
             "$7::timestamptz[], $8::bigint)";
    case kAppendOne:
      // herald_append_events' fast path for one event without an expected
      // version, as one statement (no plpgsql call): the stream row first
      // (locking it), then the batch number, then the event. A stored id
      // inserts nothing and returns no row (kUndoAppendOne, then kAppend).
      return "WITH v AS (INSERT INTO herald_streams AS s (stream, version) "
             "VALUES ($2::text, 1) ON CONFLICT (stream) DO UPDATE SET "
             "version = s.version + 1 RETURNING s.version), "
             "b AS (SELECT nextval('herald_batches') AS batch, v.version "
             "FROM v) "
             "INSERT INTO herald_events (batch, idx, id, stream, "
             "stream_version, type, content_type, payload, metadata, "
             "occurred_at) SELECT b.batch, 0, $1::uuid, $2::text, b.version, "
             "$3::text, $4::text, $5::bytea, $6::text, $7::timestamptz FROM b "
             "ON CONFLICT (id) DO NOTHING RETURNING stream_version";
    case kAppendOneNew:
      // One event with an id herald generated in this call (no row can
      // hold it): the stream row's update, or its insert when it has none
      // (locking it), then the batch number, then the event. No upsert of
      // an existing row (its speculative insertion probes the index first
      // and writes a lock record) and no ON CONFLICT on the id.
      return "WITH u AS (UPDATE herald_streams SET version = version + 1 "
             "WHERE stream = $2::text RETURNING version), "
             "i AS (INSERT INTO herald_streams AS s (stream, version) "
             "SELECT $2::text, 1 WHERE NOT EXISTS (SELECT 1 FROM u) "
             "ON CONFLICT (stream) DO UPDATE SET version = s.version + 1 "
             "RETURNING s.version), "
             "v AS (SELECT version FROM u UNION ALL SELECT version FROM i) "
             "INSERT INTO herald_events (batch, idx, id, stream, "
             "stream_version, type, content_type, payload, metadata, "
             "occurred_at) SELECT nextval('herald_batches'), 0, $1::uuid, "
             "$2::text, v.version, $3::text, $4::text, $5::bytea, $6::text, "
             "$7::timestamptz FROM v RETURNING stream_version";
    case kAppendNew:
      // $8 events of one stream, without an expected version, all with
      // ids herald generated in this call: herald_append_events' fast path
      // without its look-up of the ids, as one statement. Returns the
      // stream's version after the batch.
      return "WITH v AS (INSERT INTO herald_streams AS s (stream, version) "
             "VALUES ($2::text, $8::bigint) ON CONFLICT (stream) DO UPDATE "
             "SET version = s.version + $8::bigint RETURNING s.version), "
             "b AS (SELECT nextval('herald_batches') AS batch, v.version "
             "FROM v), "
             "i AS (INSERT INTO herald_events (batch, idx, id, stream, "
             "stream_version, type, content_type, payload, metadata, "
             "occurred_at) SELECT b.batch, t.ord - 1, t.id, $2::text, "
             "b.version - $8::bigint + t.ord, t.type, t.content_type, "
             "t.payload, t.metadata, t.occurred_at FROM b, "
             "unnest($1::uuid[], $3::text[], $4::text[], $5::bytea[], "
             "$6::text[], $7::timestamptz[]) WITH ORDINALITY AS t(id, type, "
             "content_type, payload, metadata, occurred_at, ord) "
             "RETURNING stream_version) "
             "SELECT max(stream_version), count(*) FROM i";
    case kUndoAppendOne:
      return "UPDATE herald_streams SET version = version - 1 "
             "WHERE stream = $1::text";
    case kRead:
      // The batches that hold positions offset .. offset + limit - 1.
      return "SELECT " HERALD_EVENT_COLUMNS ", (" HERALD_HEAD_SQL
             ") FROM herald_log l JOIN herald_events e ON e.batch = l.batch "
             "WHERE l.first_position >= coalesce((SELECT max(first_position) "
             "FROM herald_log WHERE first_position <= $1::bigint), 1) "
             "AND l.first_position < $1::bigint + $2::integer "
             "AND e.idx >= $1::bigint - l.first_position "
             "ORDER BY l.first_position, e.idx LIMIT $2::integer";
    case kReadFiltered:
      return "SELECT " HERALD_EVENT_COLUMNS
             " FROM herald_log l JOIN herald_events e ON e.batch = l.batch "
             "WHERE l.first_position >= coalesce((SELECT max(first_position) "
             "FROM herald_log WHERE first_position <= $1::bigint), 1) "
             "AND l.first_position <= $2::bigint "
             "AND e.idx >= $1::bigint - l.first_position "
             "AND ($3::text = '' OR e.stream = $3::text) "
             "AND (cardinality($4::text[]) = 0 "
             "OR e.type LIKE ANY ($4::text[])) "
             "ORDER BY l.first_position, e.idx LIMIT $5::integer";
    case kReadStream:
      return "SELECT " HERALD_EVENT_COLUMNS
             " FROM herald_events e JOIN herald_log l ON l.batch = e.batch "
             "WHERE e.stream = $1::text AND e.stream_version >= $2::bigint "
             "ORDER BY e.stream_version LIMIT $3::integer";
    case kGet:
      return "SELECT " HERALD_EVENT_COLUMNS
             " FROM herald_events e JOIN herald_log l ON l.batch = e.batch "
             "WHERE e.id = $1::uuid";
    case kHead:
      return HERALD_HEAD_SQL;
    case kGetCheckpoint:
      return "SELECT next_offset FROM herald_checkpoints WHERE name = $1::text";
    case kSaveCheckpoint:
      return "INSERT INTO herald_checkpoints (name, next_offset, updated_at) "
             "VALUES ($1::text, $2::bigint, clock_timestamp()) "
             "ON CONFLICT (name) DO UPDATE SET "
             "next_offset = excluded.next_offset, "
             "updated_at = excluded.updated_at";
    case kListCheckpoints:
      return "SELECT name, next_offset FROM herald_checkpoints WHERE "
             "left(name, length($1::text)) = $1::text ORDER BY name COLLATE "
             "\"C\"";
    case kDeleteCheckpoints:
      return "DELETE FROM herald_checkpoints WHERE "
             "left(name, length($1::text)) = $1::text";
    case kPark:
      return "INSERT INTO herald_parked (route, event_id, position, stream, "
             "state, attempts, error, parked_at, event, first_failed_at) "
             "VALUES ($1::text, $2::uuid, $3::bigint, $4::text, $5::text, "
             "$6::integer, $7::text, $8::timestamptz, $9::text, "
             "$10::timestamptz) "
             "ON CONFLICT (route, event_id) DO UPDATE SET "
             "state = excluded.state, attempts = excluded.attempts, "
             "error = excluded.error, parked_at = excluded.parked_at, "
             "event = coalesce(excluded.event, herald_parked.event), "
             "first_failed_at = coalesce(herald_parked.first_failed_at, "
             "excluded.first_failed_at)";
    case kListParked:
      return "SELECT p.route, p.state, p.attempts, p.error, p.parked_at, "
             "coalesce(l.first_position + e.idx, p.position), e.id, e.stream, "
             "e.stream_version, e.type, e.content_type, e.payload, "
             "e.metadata, e.occurred_at, p.event, p.first_failed_at "
             "FROM herald_parked p LEFT JOIN herald_events e "
             "ON e.id = p.event_id LEFT JOIN herald_log l ON l.batch = e.batch "
             "WHERE p.route = $1::text AND ($2::text = '' OR p.state = "
             "$2::text) AND (e.id IS NOT NULL OR p.event IS NOT NULL) "
             "ORDER BY p.position "
             "LIMIT CASE WHEN $3::integer > 0 THEN $3::integer END";
    case kGetParked:
      return "SELECT p.route, p.state, p.attempts, p.error, p.parked_at, "
             "coalesce(l.first_position + e.idx, p.position), e.id, e.stream, "
             "e.stream_version, e.type, e.content_type, e.payload, "
             "e.metadata, e.occurred_at, p.event, p.first_failed_at "
             "FROM herald_parked p LEFT JOIN herald_events e "
             "ON e.id = p.event_id LEFT JOIN herald_log l ON l.batch = e.batch "
             "WHERE p.route = $1::text AND p.event_id = $2::uuid "
             "AND (e.id IS NOT NULL OR p.event IS NOT NULL)";
    case kCountParked:
      return "SELECT count(*) FROM herald_parked WHERE route = $1::text";
    case kCountParkedByState:
      return "SELECT count(*) FILTER (WHERE state = 'parked'), "
             "count(*) FILTER (WHERE state = 'held'), "
             "count(*) FILTER (WHERE state = 'retry'), "
             "(SELECT e.occurred_at FROM herald_parked p JOIN herald_events e "
             "ON e.id = p.event_id WHERE p.route = $1::text "
             "ORDER BY p.position LIMIT 1) "
             "FROM herald_parked WHERE route = $1::text";
    case kSetRouteError:
      return "INSERT INTO herald_route_status (route, last_error, "
             "last_error_at, updated_at) VALUES ($1::text, $2::text, "
             "$3::timestamptz, clock_timestamp()) ON CONFLICT (route) DO "
             "UPDATE SET last_error = excluded.last_error, "
             "last_error_at = excluded.last_error_at, "
             "updated_at = excluded.updated_at";
    case kGetRouteStatus:
      return "SELECT route, last_error, last_error_at "
             "FROM herald_route_status WHERE route = $1::text";
    case kSweepInbox:
      return "DELETE FROM herald_inbox WHERE handled_at < clock_timestamp() - "
             "$1::bigint * interval '1 millisecond'";
    case kSetParkedAll:
      return "UPDATE herald_parked SET state = $1::text WHERE route = $2::text";
    case kSetParkedOne:
      return "UPDATE herald_parked SET state = $1::text WHERE route = $2::text "
             "AND event_id = $3::uuid";
    case kDropParkedAll:
      return "DELETE FROM herald_parked WHERE route = $1::text";
    case kDropParkedOne:
      return "DELETE FROM herald_parked WHERE route = $1::text "
             "AND event_id = $2::uuid";
    case kMarkHandled:
      return "INSERT INTO herald_inbox (consumer, event_id) "
             "VALUES ($1::text, $2::text) ON CONFLICT DO NOTHING";
    case kIsHandled:
      return "SELECT 1 FROM herald_inbox WHERE consumer = $1::text AND "
             "event_id = $2::text";
    case kSweepInboxBatch:
      return "DELETE FROM herald_inbox WHERE consumer = $1::text AND "
             "event_id IN (SELECT event_id FROM herald_inbox WHERE "
             "consumer = $1::text AND handled_at < clock_timestamp() - "
             "$2::bigint * interval '1 millisecond' LIMIT $3::integer)";
    case kAcquireLease:
      return "INSERT INTO herald_leases AS l (name, owner, expires_at) "
             "VALUES ($1::text, $2::text, "
             "clock_timestamp() + $3::bigint * interval '1 millisecond') "
             "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
             "expires_at = excluded.expires_at "
             "WHERE l.owner = excluded.owner "
             "OR l.expires_at < clock_timestamp()";
    case kGetLease:
      return "SELECT name, owner, expires_at FROM herald_leases "
             "WHERE name = $1::text";
    case kReleaseLease:
      return "DELETE FROM herald_leases WHERE name = $1::text "
             "AND owner = $2::text";
    case kSequence:
      return "SELECT positioned, batches, head FROM "
             "herald_sequence($1::integer, $2::boolean, $3::boolean)";
    case kHoldup:
      // Transactions that inserted into herald_events (they hold its
      // RowExclusiveLock) and have stayed open for a while.
      return "SELECT a.pid, a.xact_start, coalesce(a.application_name, ''), "
             "coalesce(a.state, ''), "
             "(extract(epoch FROM clock_timestamp() - a.xact_start) * 1000)"
             "::bigint "
             "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
             "WHERE l.locktype = 'relation' "
             "AND l.relation = 'herald_events'::regclass "
             "AND l.mode = 'RowExclusiveLock' AND l.granted "
             "AND a.pid <> pg_backend_pid() "
             "AND a.xact_start < clock_timestamp() - $1::bigint * "
             "interval '1 millisecond' "
             "ORDER BY a.xact_start LIMIT 1";
    case kPending:
      // Committed events waiting for the sequencer, and its lease.
      return "SELECT (SELECT coalesce(sum(events), 0) FROM herald_pending), "
             "(SELECT owner FROM herald_leases WHERE name = $1::text "
             "AND expires_at > clock_timestamp())";
    case kWaiting:
      return "SELECT EXISTS (SELECT 1 FROM herald_pending)";
    case kNumSlots:
      break;
  }
  return "";
}

// One connection and the statements prepared on it.
struct Conn {
  ConnPtr pg;
  uint64_t prepared = 0;  // bit per Slot
  int uses = 0;
  bool poisoned = false;  // left in an unknown protocol state

  bool broken() const { return poisoned || pg::Broken(pg.get()); }
};

std::string SlotName(Slot s) { return "herald_" + std::to_string(s); }

// Prepares `slot` on c once.
Status Prepare(Conn* c, Slot slot) {
  uint64_t bit = uint64_t{1} << slot;
  if (c->prepared & bit) return Status::OK();
  ResultPtr r(PQprepare(c->pg.get(), SlotName(slot).c_str(), SlotSql(slot), 0,
                        nullptr));
  if (!pg::Succeeded(r.get())) {
    return pg::ErrorStatus(c->pg.get(), r.get(), "prepare");
  }
  c->prepared |= bit;
  return Status::OK();
}

// Runs a prepared statement on a pooled connection; binary results.
Result<ResultPtr> Run(Conn* c, Slot slot, Params& p, std::string_view what) {
  HERALD_RETURN_IF_ERROR(Prepare(c, slot));
  const char* const* values = p.values();
  ResultPtr r(PQexecPrepared(c->pg.get(), SlotName(slot).c_str(), p.size(),
                             values, p.lengths(), p.formats(), 1));
  if (!pg::Succeeded(r.get())) {
    return pg::ErrorStatus(c->pg.get(), r.get(), what);
  }
  return r;
}

// Runs slot's SQL as an unnamed statement on a connection herald does not
// own (a joined transaction); binary results.
Result<ResultPtr> RunUnnamed(PGconn* c, Slot slot, Params& p,
                             std::string_view what) {
  const char* const* values = p.values();
  ResultPtr r(PQexecParams(c, SlotSql(slot), p.size(), nullptr, values,
                           p.lengths(), p.formats(), 1));
  if (!pg::Succeeded(r.get())) return pg::ErrorStatus(c, r.get(), what);
  return r;
}

// What opens a transaction; `relaxed` ones commit without waiting for
// the WAL flush (BeginRelaxed).
const char* BeginSql(bool relaxed) {
  return relaxed ? "BEGIN; SET LOCAL synchronous_commit = off" : "BEGIN";
}

// Sends BEGIN (and for a relaxed transaction SET LOCAL synchronous_commit
// = off) and the statement in one round trip (pipeline mode).
Result<ResultPtr> RunWithBegin(Conn* c, Slot slot, Params& p,
                               std::string_view what, bool relaxed) {
  HERALD_RETURN_IF_ERROR(Prepare(c, slot));
  PGconn* pc = c->pg.get();
  if (PQenterPipelineMode(pc) != 1) {
    HERALD_RETURN_IF_ERROR(pg::Exec(pc, BeginSql(relaxed), "begin"));
    return Run(c, slot, p, what);
  }
  auto send = [&](const char* sql) {
    return PQsendQueryParams(pc, sql, 0, nullptr, nullptr, nullptr, nullptr,
                             0) == 1;
  };
  const char* const* values = p.values();
  bool sent = send("BEGIN") &&
              (!relaxed || send("SET LOCAL synchronous_commit = off")) &&
              PQsendQueryPrepared(pc, SlotName(slot).c_str(), p.size(), values,
                                  p.lengths(), p.formats(), 1) == 1 &&
              PQpipelineSync(pc) == 1;
  ResultPtr all[3];
  int count = relaxed ? 3 : 2;
  if (sent) {
    for (int i = 0; i < count; ++i) {
      all[i].reset(PQgetResult(pc));
      if (!all[i]) break;
      while (PGresult* extra = PQgetResult(pc)) PQclear(extra);
    }
    ResultPtr sync(PQgetResult(pc));
    if (!sync || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC) {
      c->poisoned = true;
    }
  }
  if (PQexitPipelineMode(pc) != 1) c->poisoned = true;
  if (!sent) return pg::ErrorStatus(pc, nullptr, what);
  for (int i = 0; i + 1 < count; ++i) {
    if (!pg::Succeeded(all[i].get())) {
      return pg::ErrorStatus(pc, all[i].get(), "begin");
    }
  }
  if (!pg::Succeeded(all[count - 1].get())) {
    return pg::ErrorStatus(pc, all[count - 1].get(), what);
  }
  return std::move(all[count - 1]);
}

// Reads an event row whose first 9 columns are HERALD_EVENT_COLUMNS,
// starting at column `col`.
void RowToEvent(const PGresult* r, int row, int col, Event* e) {
  e->position = pg::Int8At(r, row, col);
  e->id = pg::UuidAt(r, row, col + 1);
  e->stream = pg::BytesAt(r, row, col + 2);
  e->stream_version = pg::Int8At(r, row, col + 3);
  e->type = pg::BytesAt(r, row, col + 4);
  e->content_type = pg::BytesAt(r, row, col + 5);
  e->payload = pg::BytesAt(r, row, col + 6);
  e->metadata = pg::BytesAt(r, row, col + 7);
  e->occurred_at_us = pg::TimestampAt(r, row, col + 8);
}

// '*' and '?' globs as a LIKE pattern.
std::string GlobToLike(std::string_view glob) {
  std::string out;
  for (char ch : glob) {
    switch (ch) {
      case '*':
        out += '%';
        break;
      case '?':
        out += '_';
        break;
      case '%':
      case '_':
      case '\\':
        out += '\\';
        out += ch;
        break;
      default:
        out += ch;
    }
  }
  return out;
}

std::string ParkedNotFound(const std::string& route, const std::string& id) {
  return id.empty() ? "route '" + route + "' has no parked events"
                    : "no parked event " + id + " on route '" + route + "'";
}

// What a commit learned about positions.
struct CommitResult {
  // Nothing committed waits in herald_pending after the commit: this
  // transaction's batches (positioned by its commit trigger) and every
  // batch committed before it are positioned.
  bool drained = false;
};

// Sends COMMIT on pc and, when `appended`, in the same round trip
// (pipeline mode), a look at herald_pending (CommitResult::drained). `c` is
// the pooled connection (prepared statements) or null for a caller's.
// *commit receives COMMIT's result.
Status SendCommit(Conn* c, PGconn* pc, bool appended, ResultPtr* commit,
                  CommitResult* out) {
  if (!appended) {
    commit->reset(PQexec(pc, "COMMIT"));
    return Status::OK();
  }
  if (c) HERALD_RETURN_IF_ERROR(Prepare(c, kWaiting));
  if (PQenterPipelineMode(pc) != 1) {
    commit->reset(PQexec(pc, "COMMIT"));
    return Status::OK();
  }
  bool sent = PQsendQueryParams(pc, "COMMIT", 0, nullptr, nullptr, nullptr,
                                nullptr, 0) == 1 &&
              (c ? PQsendQueryPrepared(pc, SlotName(kWaiting).c_str(), 0,
                                       nullptr, nullptr, nullptr, 1) == 1
                 : PQsendQueryParams(pc, SlotSql(kWaiting), 0, nullptr, nullptr,
                                     nullptr, nullptr, 1) == 1) &&
              PQpipelineSync(pc) == 1;
  ResultPtr results[2];
  bool clean = sent;
  if (sent) {
    for (auto& r : results) {
      r.reset(PQgetResult(pc));
      if (!r) break;
      while (PGresult* extra = PQgetResult(pc)) PQclear(extra);
    }
    ResultPtr sync(PQgetResult(pc));
    clean = sync && PQresultStatus(sync.get()) == PGRES_PIPELINE_SYNC;
  }
  if (PQexitPipelineMode(pc) != 1) clean = false;
  if (!clean) {
    // The connection failed mid-way (server gone): whether the COMMIT
    // happened is unknown. Retrying the same event ids is safe.
    if (c) c->poisoned = true;
    std::string msg = PQerrorMessage(pc);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) {
      msg.pop_back();
    }
    return Status::Unavailable("commit: " + msg +
                               " (PostgreSQL connection lost; the commit "
                               "may or may not have happened)");
  }
  *commit = std::move(results[0]);
  if (pg::Succeeded(results[1].get()) && PQntuples(results[1].get()) == 1) {
    out->drained = !pg::BoolAt(results[1].get(), 0, 0);
  }
  return Status::OK();
}

class PostgresStore;

class PgTransaction final : public Transaction {
 public:
  // Owned: a pooled connection; BEGIN goes out with the first statement.
  // `relaxed`: runs with synchronous_commit = off (BeginRelaxed).
  PgTransaction(PostgresStore* store, std::unique_ptr<Conn> conn, bool relaxed);
  // Joined: the caller's connection, with its transaction open.
  PgTransaction(PostgresStore* store, PGconn* caller);
  ~PgTransaction() override;

  Status Commit() override;
  Status Rollback() override;
  void* native_handle() override;

  // Runs slot in this transaction.
  Result<ResultPtr> Exec(Slot slot, Params& p, std::string_view what);
  void add_appended(int64_t events) { appended_ += events; }
  bool open() const { return open_; }

 private:
  PGconn* pg() const { return conn_ ? conn_->pg.get() : caller_; }
  Status FlushBegin();
  void Release();

  PostgresStore* store_;
  std::unique_ptr<Conn> conn_;  // owned transactions only
  PGconn* caller_ = nullptr;    // joined transactions only
  bool begin_pending_ = false;
  const bool relaxed_ = false;
  bool open_ = true;
  int64_t appended_ = 0;  // events created in this transaction
};

class PostgresStore final : public Store {
 public:
  PostgresStore(std::string url, StoreOptions options)
      : url_(std::move(url)),
        redacted_(RedactPostgresUrl(url_)),
        options_(options) {}
  ~PostgresStore() override { StopSequencer(); }

  std::string_view backend() const override { return "postgresql"; }

  Status Init();

  Result<std::unique_ptr<Conn>> Connect(const char* application);
  Result<std::unique_ptr<Conn>> Acquire();
  void ReturnConn(std::unique_ptr<Conn> conn);
  void DropPool() EXCLUDES(pool_mu_) {
    MutexLock lock(&pool_mu_);
    pool_.clear();
  }

  // A transaction that appended committed in this process; `before` is
  // local_commits() read before its commit; `commit` what its commit
  // learned.
  void OnAppendCommitted(Conn* idle_conn, uint64_t before,
                         const CommitResult& commit);
  uint64_t local_commits() const { return local_commits_.load(); }
  // Adds to the events this process's commits positioned themselves.
  void CountLocalPositioned(int64_t events) {
    local_positioned_.fetch_add(static_cast<uint64_t>(events));
  }
  // Asks the sequencer thread for a pass soon: a commit left batches
  // queued, or a joined transaction that appended ended without Commit()
  // (the caller is about to commit it). Signals the thread only when no
  // wake-up is pending: while one is (or while the thread pauses before a
  // pass it makes anyway) it costs one atomic exchange, no lock, no futex
  // call and no thread switch, which at 8 or more committing threads was
  // most commits.
  void WakeSequencer() EXCLUDES(seq_mu_) {
    if (seq_wake_.exchange(true)) return;
    {
      // The thread checks seq_wake_ holding seq_mu_ before it waits: taking
      // it here orders the Signal after that check.
      MutexLock lock(&seq_mu_);
    }
    seq_cv_.Signal();
  }

  Result<std::unique_ptr<Transaction>> Begin() override {
    if (options_.read_only) return ReadOnlyError();
    auto c = Acquire();
    if (!c.ok()) return c.status();
    return std::unique_ptr<Transaction>(
        new PgTransaction(this, std::move(*c), false));
  }

  Result<std::unique_ptr<Transaction>> BeginRelaxed() override {
    if (options_.read_only) return ReadOnlyError();
    auto c = Acquire();
    if (!c.ok()) return c.status();
    return std::unique_ptr<Transaction>(
        new PgTransaction(this, std::move(*c), true));
  }

  std::unique_ptr<Transaction> Join(void* native) override {
    return std::make_unique<PgTransaction>(this, static_cast<PGconn*>(native));
  }

  // One event without an expected version, in one statement: true when
  // created, false (nothing changed) when its id is stored already.
  Result<bool> AppendOne(PgTransaction& tx, Event& e, int64_t now);
  Result<AppendResult> Append(Transaction& tx, std::span<Event> events,
                              const AppendOptions& options) override;
  using EventLog::Append;

  Result<Page> Read(const ReadRequest& request) override;
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

  Result<std::string> DescribeHoldup() override;
  Result<Holdup> GetHoldup() override;

 private:
  // Runs fn(Conn*) on a pooled connection. When the connection turns out
  // to be broken (the server restarted), the pool is dropped and fn is
  // retried once on a new connection, so fn must be idempotent.
  template <typename F>
  auto WithConn(F&& fn) -> decltype(fn(static_cast<Conn*>(nullptr))) {
    for (int attempt = 0;; ++attempt) {
      auto c = Acquire();
      if (!c.ok()) return c.status();
      bool reused = (*c)->uses++ > 0;
      auto r = fn(c->get());
      if ((*c)->broken()) {
        DropPool();
        if (!r.ok() && reused && attempt == 0) continue;
        return r;
      }
      ReturnConn(std::move(*c));
      return r;
    }
  }

  Status Migrate(PGconn* c);
  Result<int> SchemaVersion(PGconn* c);
  Status ReadOnlyError() const {
    return Status::FailedPrecondition("the PostgreSQL database " + redacted_ +
                                      " was opened read-only");
  }
  // tx as this store's own transaction; InvalidArgument for another's.
  Result<PgTransaction*> Own(Transaction& tx) {
    HERALD_RETURN_IF_ERROR(CheckOwn(tx));
    return static_cast<PgTransaction*>(&tx);
  }

  // One sequencer pass on c: how many events it positioned, or -1 when
  // another pass holds the sequencer lock (wait = false). *full: the pass
  // took as many batches as it may, so more may be waiting. *head (when
  // given): the head after it, or -1 when it did not run.
  Result<int> SequencePass(Conn* c, bool wait, bool* full,
                           int64_t* head = nullptr);
  // Read-your-writes: positions the events this process committed before
  // the call, on c, if the sequencer has not yet.
  Status CatchUp(Conn* c);
  void AdvanceSequenced(uint64_t through) {
    uint64_t cur = sequenced_through_.load();
    while (cur < through &&
           !sequenced_through_.compare_exchange_weak(cur, through)) {
    }
  }

  void StartSequencer();
  void StopSequencer();
  void SequencerLoop();
  // Waits until woken, stopped or timeout; false when stopping.
  bool SequencerWait(std::chrono::milliseconds timeout) EXCLUDES(seq_mu_);
  // Waits `pause` unless stopped (wake-ups do not cut it short).
  bool SequencerPause(std::chrono::milliseconds pause) EXCLUDES(seq_mu_);

  const std::string url_;
  const std::string redacted_;
  const StoreOptions options_;

  Mutex pool_mu_;
  std::vector<std::unique_ptr<Conn>> pool_ GUARDED_BY(pool_mu_);

  // Appending transactions committed through this store, and how many of
  // them are known to be positioned.
  std::atomic<uint64_t> local_commits_{0};
  std::atomic<uint64_t> sequenced_through_{0};
  // Events of this process's commits positioned by the commits themselves
  // (so the sequencer can tell other processes' commits from ours).
  std::atomic<uint64_t> local_positioned_{0};  // wraps; only deltas count

  std::thread seq_thread_;
  std::string seq_owner_;
  Mutex seq_mu_;
  CondVar seq_cv_;
  bool seq_stop_ GUARDED_BY(seq_mu_) = false;
  // A wake-up is pending (set by WakeSequencer, cleared by the thread when
  // its pass is next; set by the thread itself during its pauses, so that
  // commits do not signal it then).
  std::atomic<bool> seq_wake_{false};
  // Set when a wait ended by a wake-up; read and cleared by the loop.
  bool seq_woken_ GUARDED_BY(seq_mu_) = false;
};

// ---- Transaction ----------------------------------------------------------

PgTransaction::PgTransaction(PostgresStore* store, std::unique_ptr<Conn> conn,
                             bool relaxed)
    : Transaction(store),
      store_(store),
      conn_(std::move(conn)),
      begin_pending_(true),
      relaxed_(relaxed) {}

PgTransaction::PgTransaction(PostgresStore* store, PGconn* caller)
    : Transaction(store), store_(store), caller_(caller) {}

PgTransaction::~PgTransaction() {
  if (open_ && conn_) (void)Rollback();
  if (open_ && caller_ && appended_ > 0) store_->WakeSequencer();
  Release();
}

void PgTransaction::Release() {
  if (conn_) store_->ReturnConn(std::move(conn_));
}

Status PgTransaction::FlushBegin() {
  if (!begin_pending_) return Status::OK();
  Status s = pg::Exec(conn_->pg.get(), BeginSql(relaxed_), "begin");
  if (!s.ok() && conn_->broken() && conn_->uses > 0) {
    // A stale pooled connection (the server restarted): nothing happened in
    // this transaction yet, so start it on a new one.
    store_->DropPool();
    auto fresh = store_->Acquire();
    if (!fresh.ok()) return fresh.status();
    conn_ = std::move(*fresh);
    conn_->uses++;
    s = pg::Exec(conn_->pg.get(), BeginSql(relaxed_), "begin");
  }
  conn_->uses++;
  if (s.ok()) begin_pending_ = false;
  return s;
}

void* PgTransaction::native_handle() {
  if (open_ && begin_pending_) (void)FlushBegin();
  return pg();
}

Result<ResultPtr> PgTransaction::Exec(Slot slot, Params& p,
                                      std::string_view what) {
  if (!open_) return Status::FailedPrecondition("transaction is not open");
  if (caller_) return RunUnnamed(caller_, slot, p, what);
  if (!begin_pending_) return Run(conn_.get(), slot, p, what);
  auto r = RunWithBegin(conn_.get(), slot, p, what, relaxed_);
  if (!r.ok() && conn_->broken() && conn_->uses > 0) {
    store_->DropPool();
    auto fresh = store_->Acquire();
    if (!fresh.ok()) return fresh.status();
    conn_ = std::move(*fresh);
    r = RunWithBegin(conn_.get(), slot, p, what, relaxed_);
  }
  conn_->uses++;
  begin_pending_ = false;
  return r;
}

Status PgTransaction::Commit() {
  if (!open_) return Status::FailedPrecondition("transaction is not open");
  open_ = false;
  if (conn_ && begin_pending_) {
    Release();  // nothing was done
    return Status::OK();
  }
  PGconn* c = pg();
  Status s;
  ResultPtr r;
  CommitResult done;
  uint64_t before = store_->local_commits();
  // The commit trigger positions this transaction's batches inside COMMIT.
  // Counted as positioned by this process before they can be seen.
  store_->CountLocalPositioned(appended_);
  s = SendCommit(conn_.get(), c, appended_ > 0, &r, &done);
  if (!s.ok() || !done.drained) store_->CountLocalPositioned(-appended_);
  if (s.ok() && !pg::Succeeded(r.get()))
    s = pg::ErrorStatus(c, r.get(), "commit");
  if (s.ok() && std::string_view(PQcmdStatus(r.get())) != "COMMIT") {
    s = Status::FailedPrecondition(
        "commit: the transaction had failed earlier and was rolled back");
  }
  if (!s.ok() && !pg::Broken(c) && PQtransactionStatus(c) != PQTRANS_IDLE) {
    ResultPtr rb(PQexec(c, "ROLLBACK"));
  }
  if (s.ok() && appended_ > 0) {
    store_->OnAppendCommitted(conn_ ? conn_.get() : nullptr, before, done);
  }
  Release();
  return s;
}

Status PgTransaction::Rollback() {
  if (!open_) return Status::OK();
  open_ = false;
  Status s;
  if (!(conn_ && begin_pending_)) {
    PGconn* c = pg();
    if (!pg::Broken(c) && PQtransactionStatus(c) != PQTRANS_IDLE) {
      s = pg::Exec(c, "ROLLBACK", "rollback");
    }
  }
  Release();
  return s;
}

// ---- Connections ----------------------------------------------------------

Result<std::unique_ptr<Conn>> PostgresStore::Connect(const char* application) {
  const char* keys[] = {"connect_timeout", "dbname",
                        "fallback_application_name", nullptr};
  const char* values[] = {"5", url_.c_str(), application, nullptr};
  ConnPtr c(PQconnectdbParams(keys, values, 1));
  if (!c) return Status::Unavailable("cannot allocate a PostgreSQL connection");
  if (PQstatus(c.get()) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(c.get());
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) {
      msg.pop_back();
    }
    return Status::Unavailable("cannot connect to PostgreSQL at " + redacted_ +
                               ": " + msg);
  }
  auto conn = std::make_unique<Conn>();
  conn->pg = std::move(c);
  return conn;
}

Result<std::unique_ptr<Conn>> PostgresStore::Acquire() {
  {
    MutexLock lock(&pool_mu_);
    if (!pool_.empty()) {
      auto c = std::move(pool_.back());
      pool_.pop_back();
      return c;
    }
  }
  return Connect("herald");
}

void PostgresStore::ReturnConn(std::unique_ptr<Conn> conn) {
  if (conn->broken()) return;
  if (PQtransactionStatus(conn->pg.get()) != PQTRANS_IDLE) {
    ResultPtr r(PQexec(conn->pg.get(), "ROLLBACK"));
    if (conn->broken() || PQtransactionStatus(conn->pg.get()) != PQTRANS_IDLE) {
      return;
    }
  }
  MutexLock lock(&pool_mu_);
  if (pool_.size() < kMaxPooled) pool_.push_back(std::move(conn));
}

// ---- Schema ---------------------------------------------------------------

Result<int> PostgresStore::SchemaVersion(PGconn* c) {
  ResultPtr r(PQexec(c, "SELECT to_regclass('herald_meta') IS NOT NULL"));
  if (!pg::Succeeded(r.get())) return pg::ErrorStatus(c, r.get(), "schema");
  if (std::string_view(PQgetvalue(r.get(), 0, 0)) != "t") return -1;
  r.reset(
      PQexec(c, "SELECT value FROM herald_meta WHERE key = 'schema_version'"));
  if (!pg::Succeeded(r.get())) return pg::ErrorStatus(c, r.get(), "schema");
  if (PQntuples(r.get()) == 0) return 0;
  return std::atoi(PQgetvalue(r.get(), 0, 0));
}

Status PostgresStore::Migrate(PGconn* c) {
  auto newer = [&](int version) {
    return Status::FailedPrecondition(
        "the PostgreSQL database " + redacted_ + " has herald schema version " +
        std::to_string(version) + ", newer than this herald supports (" +
        std::to_string(kPostgresSchemaVersion) + "); upgrade herald");
  };
  if (!options_.migrate || options_.read_only) {
    auto v = SchemaVersion(c);
    if (!v.ok()) return v.status();
    if (*v < 0) {
      return Status::FailedPrecondition(
          "the PostgreSQL database " + redacted_ +
          " has no herald schema: run `herald migrate --db " + redacted_ + "`");
    }
    if (*v > kPostgresSchemaVersion) return newer(*v);
    if (*v < kPostgresSchemaVersion) {
      return Status::FailedPrecondition(
          "the PostgreSQL database " + redacted_ +
          " has herald schema version " + std::to_string(*v) +
          " and needs migrating to " + std::to_string(kPostgresSchemaVersion) +
          ": run `herald migrate --db " + redacted_ + "`");
    }
    return Status::OK();
  }
  // One migrator at a time across processes.
  HERALD_RETURN_IF_ERROR(pg::Exec(c,
                                  "BEGIN; SELECT pg_advisory_xact_lock("
                                  "7306916370318864497)",
                                  "migrate"));
  struct Rollback {
    PGconn* c;
    ~Rollback() {
      if (PQtransactionStatus(c) != PQTRANS_IDLE) {
        ResultPtr r(PQexec(c, "ROLLBACK"));
      }
    }
  } guard{c};
  auto v = SchemaVersion(c);
  if (!v.ok()) return v.status();
  int version = std::max(*v, 0);
  if (version > kPostgresSchemaVersion) return newer(version);
  if (version == kPostgresSchemaVersion)
    return pg::Exec(c, "COMMIT", "migrate");
  for (int to = version + 1; to <= kPostgresSchemaVersion; ++to) {
    HERALD_RETURN_IF_ERROR(pg::Exec(c, PostgresMigration(to),
                                    "migrate to schema " + std::to_string(to)));
  }
  std::string set =
      "INSERT INTO herald_meta (key, value) VALUES ('schema_version', '" +
      std::to_string(kPostgresSchemaVersion) +
      "') ON CONFLICT (key) DO UPDATE SET value = excluded.value;"
      "INSERT INTO herald_meta (key, value) VALUES ('application', 'herald') "
      "ON CONFLICT DO NOTHING";
  HERALD_RETURN_IF_ERROR(pg::Exec(c, set.c_str(), "migrate"));
  return pg::Exec(c, "COMMIT", "migrate");
}

Status PostgresStore::Init() {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url_.c_str(), &err);
  if (!opts) {
    std::string msg = err ? err : "malformed";
    PQfreemem(err);
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return Status::InvalidArgument("invalid PostgreSQL URL '" + redacted_ +
                                   "': " + msg);
  }
  Status bad;
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    std::string_view key(o->keyword), val(o->val);
    if (key == "port" || key == "connect_timeout") {
      bool ok = !val.empty();
      for (char ch : val) ok = ok && ((ch >= '0' && ch <= '9') || ch == ',');
      if (!ok) {
        bad = Status::InvalidArgument("invalid PostgreSQL URL '" + redacted_ +
                                      "': " + std::string(key) + " '" +
                                      std::string(val) + "' is not a number");
      }
    }
  }
  PQconninfoFree(opts);
  HERALD_RETURN_IF_ERROR(bad);

  auto c = Connect("herald");
  if (!c.ok()) return c.status();
  HERALD_RETURN_IF_ERROR(Migrate((*c)->pg.get()));
  ReturnConn(std::move(*c));
  if (options_.run_sequencer && !options_.read_only) StartSequencer();
  return Status::OK();
}

// ---- Events ---------------------------------------------------------------

Result<bool> PostgresStore::AppendOne(PgTransaction& tx, Event& e,
                                      int64_t now) {
  bool new_id = e.id.empty();
  if (new_id) e.id = NewUuidV7();
  if (e.occurred_at_us == 0) e.occurred_at_us = now;
  std::string uuid;
  if (!pg::UuidToBytes(e.id, &uuid)) {
    return Status::InvalidArgument("event id '" + e.id + "' is not a UUID");
  }
  Params p;
  p.Binary(std::move(uuid))
      .Bytes(e.stream)
      .Bytes(e.type)
      .Bytes(e.content_type)
      .Binary(e.payload)
      .Bytes(e.metadata.empty() ? std::string_view("{}") : e.metadata)
      .Timestamp(e.occurred_at_us);
  // An id generated here cannot be stored already: kAppendOneNew always
  // inserts (no ON CONFLICT), so only kAppendOne can answer no row.
  auto r = tx.Exec(new_id ? kAppendOneNew : kAppendOne, p, "append");
  if (!r.ok()) return r.status();
  if (PQntuples(r->get()) == 1) {
    e.position = 0;
    e.stream_version = pg::Int8At(r->get(), 0, 0);
    return true;
  }
  Params undo;
  undo.Bytes(e.stream);
  auto u = tx.Exec(kUndoAppendOne, undo, "append");
  if (!u.ok()) return u.status();
  return false;
}

Result<AppendResult> PostgresStore::Append(Transaction& tx_base,
                                           std::span<Event> events,
                                           const AppendOptions& options) {
  auto own = Own(tx_base);
  if (!own.ok()) return own.status();
  auto& tx = **own;
  AppendResult result;
  if (events.empty()) return result;
  if (!options.validated) {
    for (auto& e : events) HERALD_RETURN_IF_ERROR(ValidateEvent(e));
  }
  // One event per UUID: ids are handed back in lower case, as the uuid
  // column stores them.
  for (auto& e : events) LowerIdInPlace(&e.id);
  if (options.expected_version) {
    if (*options.expected_version < 0) {
      return Status::InvalidArgument("expected_version must not be negative");
    }
    for (auto& e : events) {
      if (e.stream != events[0].stream) {
        return Status::InvalidArgument(
            "expected_version needs every event of the append in one stream");
      }
    }
  }
  int64_t now = NowMicros();
  size_t n = events.size();
  if (n == 1 && !options.expected_version) {
    auto one = AppendOne(tx, events[0], now);
    if (!one.ok()) return one.status();
    if (*one) {
      result.created = 1;
      tx.add_appended(1);
      return result;
    }
    // The id is stored already: the bump is undone; the careful path below
    // hands back the stored event.
  }
  // Every id generated here and one stream: no id can be stored already.
  bool new_ids = !options.expected_version;
  for (auto& e : events) {
    if (!e.id.empty() || e.stream != events[0].stream) new_ids = false;
  }
  pg::BinaryArray ids(pg::kOidUuid, n), streams(pg::kOidText, n),
      types(pg::kOidText, n), content_types(pg::kOidText, n),
      payloads(pg::kOidBytea, n), metadata(pg::kOidText, n),
      occurred(pg::kOidTimestamptz, n);
  std::string uuid;
  for (auto& e : events) {
    if (e.id.empty()) e.id = NewUuidV7();
    if (e.occurred_at_us == 0) e.occurred_at_us = now;
    if (!pg::UuidToBytes(e.id, &uuid)) {
      return Status::InvalidArgument("event id '" + e.id + "' is not a UUID");
    }
    ids.Add(uuid);
    streams.Add(e.stream);
    types.Add(e.type);
    content_types.Add(e.content_type);
    payloads.Add(e.payload);
    metadata.Add(e.metadata.empty() ? std::string_view("{}") : e.metadata);
    occurred.AddInt64(e.occurred_at_us - pg::kPgEpochOffsetUs);
  }
  Params p;
  p.Binary(ids.Take());
  if (new_ids) {
    p.Bytes(events[0].stream);  // kAppendNew takes the one stream
  } else {
    p.Binary(streams.Take());
  }
  p.Binary(types.Take())
      .Binary(content_types.Take())
      .Binary(payloads.Take())
      .Binary(metadata.Take())
      .Binary(occurred.Take());
  if (new_ids) {
    p.Int8(static_cast<int64_t>(n));
    auto r = tx.Exec(kAppendNew, p, "append");
    if (!r.ok()) return r.status();
    const PGresult* res = r->get();
    if (PQntuples(res) != 1 ||
        pg::Int8At(res, 0, 1) != static_cast<int64_t>(n)) {
      return Status::Internal("append of " + std::to_string(n) +
                              " events stored another count");
    }
    int64_t first = pg::Int8At(res, 0, 0) - static_cast<int64_t>(n) + 1;
    for (size_t i = 0; i < n; ++i) {
      events[i].position = 0;
      events[i].stream_version = first + static_cast<int64_t>(i);
    }
    result.created = n;
    tx.add_appended(result.created);
    return result;
  }
  if (options.expected_version) {
    p.Int8(*options.expected_version);
  } else {
    p.Null();
  }
  auto r = tx.Exec(kAppend, p, "append");
  if (!r.ok()) return r.status();
  const PGresult* res = r->get();
  int rows = PQntuples(res);
  if (rows == 1 && pg::Int4At(res, 0, 0) == 0) {
    return Status::Conflict("stream '" + events[0].stream + "' is at version " +
                            std::to_string(pg::Int8At(res, 0, 5)) +
                            ", expected " +
                            std::to_string(*options.expected_version));
  }
  if (rows != static_cast<int>(n)) {
    return Status::Internal("append returned " + std::to_string(rows) +
                            " rows for " + std::to_string(n) + " events");
  }
  for (int i = 0; i < rows; ++i) {
    int ord = pg::Int4At(res, i, 0);
    if (ord < 1 || ord > static_cast<int>(n)) continue;
    Event& e = events[static_cast<size_t>(ord - 1)];
    if (pg::BoolAt(res, i, 1)) {
      e.position = 0;
      e.stream_version = pg::Int8At(res, i, 5);
      ++result.created;
    } else {
      e.id = pg::UuidAt(res, i, 2);
      e.position = pg::Int8At(res, i, 3);
      e.stream = pg::BytesAt(res, i, 4);
      e.stream_version = pg::Int8At(res, i, 5);
      e.type = pg::BytesAt(res, i, 6);
      e.content_type = pg::BytesAt(res, i, 7);
      e.payload = pg::BytesAt(res, i, 8);
      e.metadata = pg::BytesAt(res, i, 9);
      e.occurred_at_us = pg::TimestampAt(res, i, 10);
    }
  }
  if (result.created > 0) tx.add_appended(result.created);
  return result;
}

Result<Page> PostgresStore::Read(const ReadRequest& req) {
  if (req.limit < 1 || req.limit > kMaxReadLimit) {
    return Status::InvalidArgument("limit must be between 1 and " +
                                   std::to_string(kMaxReadLimit));
  }
  if (req.offset < 0) {
    return Status::InvalidArgument("offset must not be negative");
  }
  int64_t from = req.offset < 1 ? 1 : req.offset;
  bool filtered = !req.types.empty() || !req.stream.empty();
  return WithConn([&](Conn* c) -> Result<Page> {
    HERALD_RETURN_IF_ERROR(CatchUp(c));
    Page page;
    page.next_offset = from;
    if (!filtered) {
      Params p;
      p.Int8(from).Int4(req.limit);
      auto r = Run(c, kRead, p, "read events");
      if (!r.ok()) return r.status();
      const PGresult* res = r->get();
      int rows = PQntuples(res);
      page.events.resize(static_cast<size_t>(rows));
      for (int i = 0; i < rows; ++i) {
        RowToEvent(res, i, 0, &page.events[static_cast<size_t>(i)]);
      }
      if (rows > 0) {
        page.head = pg::Int8At(res, 0, 9);
        page.next_offset = page.events.back().position + 1;
        return page;
      }
      Params none;
      auto h = Run(c, kHead, none, "read head");
      if (!h.ok()) return h.status();
      page.head = pg::Int8At(h->get(), 0, 0);
      return page;
    }
    Params none;
    auto h = Run(c, kHead, none, "read head");
    if (!h.ok()) return h.status();
    page.head = pg::Int8At(h->get(), 0, 0);
    pg::BinaryArray likes(pg::kOidText, req.types.size());
    for (const auto& t : req.types) likes.Add(GlobToLike(t));
    std::string like_array = req.types.empty()
                                 ? [] {
                                     std::string b;
                                     pg::PutU32(&b, 0);
                                     pg::PutU32(&b, 0);
                                     pg::PutU32(&b, pg::kOidText);
                                     return b;
                                   }()
                                 : likes.Take();
    Params p;
    p.Int8(from)
        .Int8(page.head)
        .Bytes(req.stream)
        .Binary(std::move(like_array))
        .Int4(req.limit);
    auto r = Run(c, kReadFiltered, p, "read events");
    if (!r.ok()) return r.status();
    const PGresult* res = r->get();
    int rows = PQntuples(res);
    page.events.resize(static_cast<size_t>(rows));
    for (int i = 0; i < rows; ++i) {
      RowToEvent(res, i, 0, &page.events[static_cast<size_t>(i)]);
    }
    if (rows > 0) page.next_offset = page.events.back().position + 1;
    if (rows < req.limit) page.next_offset = std::max(from, page.head + 1);
    return page;
  });
}

Result<std::vector<Event>> PostgresStore::ReadStream(const std::string& stream,
                                                     int64_t from_version,
                                                     int limit) {
  if (limit < 1 || limit > kMaxReadLimit) {
    return Status::InvalidArgument("limit must be between 1 and " +
                                   std::to_string(kMaxReadLimit));
  }
  return WithConn([&](Conn* c) -> Result<std::vector<Event>> {
    HERALD_RETURN_IF_ERROR(CatchUp(c));
    Params p;
    p.Bytes(stream).Int8(from_version).Int4(limit);
    auto r = Run(c, kReadStream, p, "read stream");
    if (!r.ok()) return r.status();
    int rows = PQntuples(r->get());
    std::vector<Event> out(static_cast<size_t>(rows));
    for (int i = 0; i < rows; ++i) {
      RowToEvent(r->get(), i, 0, &out[static_cast<size_t>(i)]);
    }
    return out;
  });
}

Result<Event> PostgresStore::Get(const std::string& id) {
  if (!IsUuid(id)) return Status::NotFound("no event with id " + id);
  return WithConn([&](Conn* c) -> Result<Event> {
    HERALD_RETURN_IF_ERROR(CatchUp(c));
    Params p;
    p.Text(id);
    auto r = Run(c, kGet, p, "get event");
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) == 0) {
      return Status::NotFound("no event with id " + id);
    }
    Event e;
    RowToEvent(r->get(), 0, 0, &e);
    return e;
  });
}

Result<int64_t> PostgresStore::Head() {
  return WithConn([&](Conn* c) -> Result<int64_t> {
    HERALD_RETURN_IF_ERROR(CatchUp(c));
    Params none;
    auto r = Run(c, kHead, none, "read head");
    if (!r.ok()) return r.status();
    return pg::Int8At(r->get(), 0, 0);
  });
}

// ---- Checkpoints, parked, inbox, leases -----------------------------------

Result<int64_t> PostgresStore::GetCheckpoint(const std::string& name) {
  return WithConn([&](Conn* c) -> Result<int64_t> {
    Params p;
    p.Bytes(name);
    auto r = Run(c, kGetCheckpoint, p, "read checkpoint");
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) == 0) return int64_t{0};
    return pg::Int8At(r->get(), 0, 0);
  });
}

Result<std::vector<std::pair<std::string, int64_t>>>
PostgresStore::ListCheckpoints(const std::string& prefix) {
  using List = std::vector<std::pair<std::string, int64_t>>;
  return WithConn([&](Conn* c) -> Result<List> {
    Params p;
    p.Bytes(prefix);
    auto r = Run(c, kListCheckpoints, p, "list checkpoints");
    if (!r.ok()) return r.status();
    List out;
    for (int i = 0; i < PQntuples(r->get()); ++i) {
      out.emplace_back(pg::BytesAt(r->get(), i, 0), pg::Int8At(r->get(), i, 1));
    }
    return out;
  });
}

Status PostgresStore::DeleteCheckpoints(Transaction& tx_base,
                                        const std::string& prefix) {
  auto own = Own(tx_base);
  if (!own.ok()) return own.status();
  auto& tx = **own;
  Params p;
  p.Bytes(prefix);
  return tx.Exec(kDeleteCheckpoints, p, "delete checkpoints").status();
}

Status PostgresStore::SaveCheckpoint(Transaction& tx_base,
                                     const std::string& name,
                                     int64_t next_offset) {
  auto own = Own(tx_base);
  if (!own.ok()) return own.status();
  auto& tx = **own;
  Params p;
  p.Bytes(name).Int8(next_offset);
  return tx.Exec(kSaveCheckpoint, p, "save checkpoint").status();
}

Status PostgresStore::Park(Transaction& tx_base, const ParkedEvent& parked) {
  auto own = Own(tx_base);
  if (!own.ok()) return own.status();
  auto& tx = **own;
  if (!IsUuid(parked.event.id)) {
    return Status::InvalidArgument("parked event id '" + parked.event.id +
                                   "' is not a UUID");
  }
  Params p;
  p.Bytes(parked.route)
      .Text(parked.event.id)
      .Int8(parked.event.position)
      .Bytes(parked.event.stream)
      .Bytes(parked.state)
      .Int4(parked.attempts)
      .Bytes(parked.error)
      .Timestamp(parked.parked_at_us ? parked.parked_at_us : NowMicros());
  if (parked.keep_event) {
    std::string json;
    AppendEventJson(parked.event, &json);
    p.Bytes(json);
  } else {
    p.Null();
  }
  if (parked.first_failed_at_us > 0) {
    p.Timestamp(parked.first_failed_at_us);
  } else {
    p.Null();
  }
  return tx.Exec(kPark, p, "park event").status();
}

// The rows of a kListParked / kGetParked result.
Result<std::vector<ParkedEvent>> ParkedRows(const PGresult* res) {
  int rows = PQntuples(res);
  std::vector<ParkedEvent> out(static_cast<size_t>(rows));
  for (int i = 0; i < rows; ++i) {
    ParkedEvent& pe = out[static_cast<size_t>(i)];
    pe.route = pg::BytesAt(res, i, 0);
    pe.state = pg::BytesAt(res, i, 1);
    pe.attempts = pg::Int4At(res, i, 2);
    pe.error = pg::BytesAt(res, i, 3);
    pe.parked_at_us = pg::TimestampAt(res, i, 4);
    if (!pg::IsNull(res, i, 15))
      pe.first_failed_at_us = pg::TimestampAt(res, i, 15);
    if (!pg::IsNull(res, i, 14)) {
      pe.keep_event = true;
      HERALD_RETURN_IF_ERROR(DecodeEventJson(pg::BytesAt(res, i, 14),
                                             EventJsonMode::kRead, &pe.event));
    } else {
      RowToEvent(res, i, 5, &pe.event);
    }
  }
  return out;
}

Result<std::vector<ParkedEvent>> PostgresStore::ListParked(
    const std::string& route, const std::string& state, int limit) {
  return WithConn([&](Conn* c) -> Result<std::vector<ParkedEvent>> {
    Params p;
    p.Bytes(route).Bytes(state).Int4(limit);
    auto r = Run(c, kListParked, p, "list parked");
    if (!r.ok()) return r.status();
    return ParkedRows(r->get());
  });
}

Result<std::optional<ParkedEvent>> PostgresStore::GetParked(
    const std::string& route, const std::string& event_id) {
  if (!IsUuid(event_id)) return std::optional<ParkedEvent>();
  return WithConn([&](Conn* c) -> Result<std::optional<ParkedEvent>> {
    Params p;
    p.Bytes(route).Text(event_id);
    auto r = Run(c, kGetParked, p, "read parked");
    if (!r.ok()) return r.status();
    auto rows = ParkedRows(r->get());
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return std::optional<ParkedEvent>();
    return std::optional<ParkedEvent>(std::move(rows->front()));
  });
}

Result<int64_t> PostgresStore::CountParked(const std::string& route) {
  return WithConn([&](Conn* c) -> Result<int64_t> {
    Params p;
    p.Bytes(route);
    auto r = Run(c, kCountParked, p, "count parked");
    if (!r.ok()) return r.status();
    return pg::Int8At(r->get(), 0, 0);
  });
}

Status PostgresStore::SetParkedState(const std::string& route,
                                     const std::string& id,
                                     const std::string& state) {
  if (!id.empty() && !IsUuid(id)) {
    return Status::NotFound(ParkedNotFound(route, id));
  }
  return WithConn([&](Conn* c) -> Status {
    Params p;
    p.Bytes(state).Bytes(route);
    if (!id.empty()) p.Text(id);
    auto r =
        Run(c, id.empty() ? kSetParkedAll : kSetParkedOne, p, "update parked");
    if (!r.ok()) return r.status();
    if (std::string_view(PQcmdTuples(r->get())) == "0") {
      return Status::NotFound(ParkedNotFound(route, id));
    }
    return Status::OK();
  });
}

Status PostgresStore::DropParked(Transaction& tx_base, const std::string& route,
                                 const std::string& id) {
  auto own = Own(tx_base);
  if (!own.ok()) return own.status();
  auto& tx = **own;
  if (!id.empty() && !IsUuid(id)) {
    return Status::NotFound(ParkedNotFound(route, id));
  }
  Params p;
  p.Bytes(route);
  if (!id.empty()) p.Text(id);
  auto r =
      tx.Exec(id.empty() ? kDropParkedAll : kDropParkedOne, p, "drop parked");
  if (!r.ok()) return r.status();
  if (std::string_view(PQcmdTuples(r->get())) == "0") {
    return Status::NotFound(ParkedNotFound(route, id));
  }
  return Status::OK();
}

Result<bool> PostgresStore::MarkHandled(Transaction& tx_base,
                                        const std::string& consumer,
                                        const std::string& event_id) {
  auto own = Own(tx_base);
  if (!own.ok()) return own.status();
  auto& tx = **own;
  std::string id = IsUuid(event_id) ? LowerId(event_id) : event_id;
  Params p;
  p.Bytes(consumer).Bytes(id);
  auto r = tx.Exec(kMarkHandled, p, "mark handled");
  if (!r.ok()) return r.status();
  return std::string_view(PQcmdTuples(r->get())) == "1";
}

Result<bool> PostgresStore::AcquireLease(const std::string& name,
                                         const std::string& owner,
                                         std::chrono::milliseconds ttl) {
  return WithConn([&](Conn* c) -> Result<bool> {
    Params p;
    p.Bytes(name).Bytes(owner).Int8(ttl.count());
    auto r = Run(c, kAcquireLease, p, "acquire lease");
    if (!r.ok()) return r.status();
    return std::string_view(PQcmdTuples(r->get())) == "1";
  });
}

Status PostgresStore::ReleaseLease(const std::string& name,
                                   const std::string& owner) {
  return WithConn([&](Conn* c) -> Status {
    Params p;
    p.Bytes(name).Bytes(owner);
    return Run(c, kReleaseLease, p, "release lease").status();
  });
}

Result<std::optional<LeaseInfo>> PostgresStore::GetLease(
    const std::string& name) {
  return WithConn([&](Conn* c) -> Result<std::optional<LeaseInfo>> {
    Params p;
    p.Bytes(name);
    auto r = Run(c, kGetLease, p, "read lease");
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) == 0) return std::optional<LeaseInfo>();
    LeaseInfo info{pg::BytesAt(r->get(), 0, 0), pg::BytesAt(r->get(), 0, 1),
                   pg::TimestampAt(r->get(), 0, 2)};
    return std::optional<LeaseInfo>(std::move(info));
  });
}

Result<ParkedCounts> PostgresStore::CountParkedByState(
    const std::string& route) {
  return WithConn([&](Conn* c) -> Result<ParkedCounts> {
    Params p;
    p.Bytes(route);
    auto r = Run(c, kCountParkedByState, p, "count parked");
    if (!r.ok()) return r.status();
    ParkedCounts counts;
    counts.parked = pg::Int8At(r->get(), 0, 0);
    counts.held = pg::Int8At(r->get(), 0, 1);
    counts.retry = pg::Int8At(r->get(), 0, 2);
    if (!PQgetisnull(r->get(), 0, 3)) {
      counts.oldest_occurred_at_us = pg::TimestampAt(r->get(), 0, 3);
    }
    return counts;
  });
}

Status PostgresStore::SetRouteError(const std::string& route,
                                    const std::string& error, int64_t at_us) {
  if (options_.read_only) return ReadOnlyError();
  return WithConn([&](Conn* c) -> Status {
    Params p;
    p.Bytes(route).Bytes(error).Timestamp(at_us);
    return Run(c, kSetRouteError, p, "save route status").status();
  });
}

Result<std::optional<RouteStatusRow>> PostgresStore::GetRouteStatus(
    const std::string& route) {
  return WithConn([&](Conn* c) -> Result<std::optional<RouteStatusRow>> {
    Params p;
    p.Bytes(route);
    auto r = Run(c, kGetRouteStatus, p, "read route status");
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) == 0) return std::optional<RouteStatusRow>();
    RouteStatusRow row{pg::BytesAt(r->get(), 0, 0), pg::BytesAt(r->get(), 0, 1),
                       pg::TimestampAt(r->get(), 0, 2)};
    return std::optional<RouteStatusRow>(std::move(row));
  });
}

Result<int64_t> PostgresStore::SweepInbox(std::chrono::milliseconds max_age) {
  if (max_age.count() < 0) {
    return Status::InvalidArgument("the inbox retention must not be negative");
  }
  if (options_.read_only) return ReadOnlyError();
  return WithConn([&](Conn* c) -> Result<int64_t> {
    Params p;
    p.Int8(max_age.count());
    auto r = Run(c, kSweepInbox, p, "sweep inbox");
    if (!r.ok()) return r.status();
    return static_cast<int64_t>(std::atoll(PQcmdTuples(r->get())));
  });
}

Result<bool> PostgresStore::IsHandled(const std::string& consumer,
                                      const std::string& event_id) {
  std::string id = IsUuid(event_id) ? LowerId(event_id) : event_id;
  return WithConn([&](Conn* c) -> Result<bool> {
    Params p;
    p.Bytes(consumer).Bytes(id);
    auto r = Run(c, kIsHandled, p, "read inbox");
    if (!r.ok()) return r.status();
    return PQntuples(r->get()) > 0;
  });
}

Result<int64_t> PostgresStore::SweepInboxBatch(
    const std::string& consumer, std::chrono::milliseconds max_age, int limit) {
  if (max_age.count() < 0 || limit < 1) {
    return Status::InvalidArgument(
        "the inbox retention must not be negative and the batch at least 1");
  }
  if (options_.read_only) return ReadOnlyError();
  return WithConn([&](Conn* c) -> Result<int64_t> {
    Params p;
    p.Bytes(consumer).Int8(max_age.count()).Int4(limit);
    auto r = Run(c, kSweepInboxBatch, p, "sweep inbox");
    if (!r.ok()) return r.status();
    return static_cast<int64_t>(std::atoll(PQcmdTuples(r->get())));
  });
}

Result<std::string> PostgresStore::DescribeHoldup() {
  auto h = GetHoldup();
  if (!h.ok()) return h.status();
  return std::move(h->description);
}

// One indexed look-up in pg_locks/pg_stat_activity, and, only when no
// transaction holds positions back, a sum over the sequencer's (short)
// queue: cheap enough for /metrics scrapes every few seconds.
Result<EventLog::Holdup> PostgresStore::GetHoldup() {
  return WithConn([&](Conn* c) -> Result<Holdup> {
    Params p;
    p.Int8(kHoldupThresholdMs);
    auto r = Run(c, kHoldup, p, "describe holdup");
    if (!r.ok()) return r.status();
    const PGresult* res = r->get();
    Holdup h;
    if (PQntuples(res) > 0) {
      h.held = true;
      h.pid = static_cast<int>(pg::Int4At(res, 0, 0));
      h.since_us = pg::TimestampAt(res, 0, 1);
      std::string app = pg::BytesAt(res, 0, 2);
      std::string state = pg::BytesAt(res, 0, 3);
      int64_t ms = pg::Int8At(res, 0, 4);
      h.seconds = static_cast<double>(ms) / 1000.0;
      std::string out = "backend pid " + std::to_string(h.pid);
      if (!app.empty()) out += " (" + app + ")";
      out += ", in transaction since " + FormatRfc3339(h.since_us) + " (" +
             std::to_string(ms / 1000) + " s";
      if (!state.empty()) out += ", " + state;
      out +=
          "), holds uncommitted herald events: they, and later appends to "
          "their streams, wait for it to end";
      h.description = std::move(out);
      return h;
    }
    Params q;
    q.Bytes(kSequencerLease);
    auto pending = Run(c, kPending, q, "describe holdup");
    if (!pending.ok()) return pending.status();
    int64_t waiting = pg::Int8At(pending->get(), 0, 0);
    if (waiting > 0 && pg::IsNull(pending->get(), 0, 1)) {
      h.held = true;
      h.description =
          std::to_string(waiting) +
          " committed events wait for a sequencer, and none holds the "
          "'herald.sequencer' lease (run `herald serve`, or open a store "
          "with run_sequencer)";
    }
    return h;
  });
}

// ---- Sequencer ------------------------------------------------------------

Result<int> PostgresStore::SequencePass(Conn* c, bool wait, bool* full,
                                        int64_t* head) {
  Params p;
  p.Int4(kSequencerBatch).Bool(wait).Bool(false);
  auto r = Run(c, kSequence, p, "sequence events");
  if (!r.ok()) return r.status();
  *full = pg::Int4At(r->get(), 0, 1) >= kSequencerBatch;
  if (head) {
    *head = pg::IsNull(r->get(), 0, 2) ? -1 : pg::Int8At(r->get(), 0, 2);
  }
  return pg::Int4At(r->get(), 0, 0);
}

Status PostgresStore::CatchUp(Conn* c) {
  uint64_t want = local_commits_.load();
  if (sequenced_through_.load() >= want) return Status::OK();
  bool positioned = false;
  bool full = true;
  while (full) {
    auto n = SequencePass(c, true, &full);
    if (!n.ok()) return n.status();
    positioned = positioned || *n > 0;
  }
  AdvanceSequenced(want);
  if (positioned) NotifyAppend();
  return Status::OK();
}

void PostgresStore::OnAppendCommitted(Conn* idle_conn, uint64_t before,
                                      const CommitResult& commit) {
  local_commits_.fetch_add(1);
  if (commit.drained) {
    // Every commit counted before ours, and ours, is positioned.
    AdvanceSequenced(before + 1);
    NotifyAppend();
    return;
  }
  if (options_.run_sequencer) {
    WakeSequencer();
    return;
  }
  // No sequencer in this process: position our events before returning so
  // that one-shot tools (herald append) leave them readable.
  if (idle_conn && !idle_conn->broken()) {
    (void)CatchUp(idle_conn);
  } else {
    (void)WithConn([&](Conn* c) -> Status { return CatchUp(c); });
  }
}

void PostgresStore::StartSequencer() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  seq_owner_ = std::string(host) + ":" + std::to_string(::getpid()) + ":" +
               NewUuidV7().substr(24);
  seq_thread_ = std::thread([this] { SequencerLoop(); });
}

void PostgresStore::StopSequencer() {
  {
    MutexLock lock(&seq_mu_);
    seq_stop_ = true;
  }
  seq_cv_.SignalAll();
  if (seq_thread_.joinable()) seq_thread_.join();
}

bool PostgresStore::SequencerPause(std::chrono::milliseconds pause) {
  const auto deadline = std::chrono::steady_clock::now() + pause;
  MutexLock lock(&seq_mu_);
  seq_wake_.store(true);  // the pass after the pause looks anyway
  while (!seq_stop_ && seq_cv_.WaitUntil(&seq_mu_, deadline)) {
  }
  seq_wake_.store(false);
  return !seq_stop_;
}

bool PostgresStore::SequencerWait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(&seq_mu_);
  while (!seq_stop_ && !seq_wake_.load() &&
         seq_cv_.WaitUntil(&seq_mu_, deadline)) {
  }
  if (seq_wake_.load() && !seq_stop_) {
    seq_woken_ = true;
    // Woken by a commit whose own pass could not run (another held the
    // lock): give the next committing transaction a moment to position it
    // on its way out, sparing a WAL flush of our own. The wake-up stays
    // pending meanwhile, so later commits do not signal again.
    const auto delay_end = std::chrono::steady_clock::now() + kWokenDelay;
    while (!seq_stop_ && seq_cv_.WaitUntil(&seq_mu_, delay_end)) {
    }
  }
  seq_wake_.store(false);
  return !seq_stop_;
}

void PostgresStore::SequencerLoop() {
  NameThisThread("herald-seq");
  using Clock = std::chrono::steady_clock;
  std::unique_ptr<Conn> conn;
  auto backoff = std::chrono::milliseconds(10);
  auto idle = std::chrono::milliseconds(1);
  bool held = false;
  Clock::time_point next_lease;
  Clock::time_point next_vacuum = Clock::now() + kVacuumInterval;
  Clock::time_point last_busy;
  // The head at the last pass, and local_positioned_ then: a head that moved
  // by more than this process's own commits and passes means another
  // process commits events.
  int64_t last_head = -1;
  uint64_t last_local = 0;
  auto fail = [&] {
    conn.reset();
    held = false;
    next_lease = Clock::time_point();
    bool go = SequencerWait(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
    return go;
  };
  while (true) {
    {
      MutexLock lock(&seq_mu_);
      if (seq_stop_) break;
    }
    if (Clock::now() >= next_lease) {
      auto r = AcquireLease(kSequencerLease, seq_owner_, kLeaseTtl);
      if (!r.ok()) {
        if (!fail()) break;
        continue;
      }
      held = *r;
      next_lease = Clock::now() + (held ? kLeaseRenew : kLeaseTtl / 5);
    }
    if (!held) {
      // Another process sequences; look again when its lease may lapse.
      if (!SequencerWait(std::chrono::duration_cast<std::chrono::milliseconds>(
              next_lease - Clock::now()))) {
        break;
      }
      continue;
    }
    if (!conn || conn->broken()) {
      auto c = Connect("herald-sequencer");
      if (!c.ok()) {
        if (!fail()) break;
        continue;
      }
      conn = std::move(*c);
    }
    if (Clock::now() >= next_vacuum) {
      // Every pass walks herald_pending from its lowest key: keep it free of
      // dead rows between autovacuum runs (a minute apart by default).
      // Needs ownership of the table; without it autovacuum alone does it.
      // Never truncates: that takes an exclusive lock on the table, and
      // every commit trigger looks at it.
      ResultPtr v(
          PQexec(conn->pg.get(), "VACUUM (TRUNCATE false) herald_pending"));
      next_vacuum = Clock::now() + kVacuumInterval;
    }
    uint64_t target = local_commits_.load();
    uint64_t local = local_positioned_.load();
    bool full = false;
    int64_t head = -1;
    auto n = SequencePass(conn.get(), false, &full, &head);
    if (!n.ok()) {
      if (!fail()) break;
      continue;
    }
    backoff = std::chrono::milliseconds(10);
    if (*n < 0) {
      // Another holds the lock: mostly a committing transaction's trigger,
      // which positions every batch committed before it (else a
      // read-your-writes pass). Commits that end meanwhile need not signal
      // us: look again after the same pause as after a busy pass.
      if (!SequencerPause(kBusyPassInterval)) break;
      continue;
    }
    if (full) {
      NotifyAppend();
      continue;  // more is waiting
    }
    AdvanceSequenced(target);
    // Events committed by other processes are positioned by their own
    // commits: wake this process's readers when the head moves.
    bool foreign =
        last_head >= 0 &&
        head - last_head - *n > static_cast<int64_t>(local - last_local);
    last_head = head;
    last_local = local;
    if (*n > 0 || foreign) NotifyAppend();
    if (*n > 0) {
      // Busy: let commits gather for a moment, so one pass (and one WAL
      // flush) positions many of them. Commit wake-ups wait too.
      idle = std::chrono::milliseconds(1);
      last_busy = Clock::now();
      if (!SequencerPause(kBusyPassInterval)) break;
      continue;
    }
    // Empty passes cost no WAL flush and take no lock: keep looking every
    // millisecond while other processes commit and for a while after, then
    // back off.
    if (foreign) {
      idle = std::chrono::milliseconds(1);
      last_busy = Clock::now();
    } else if (Clock::now() - last_busy > kBusyWindow) {
      idle = std::min(idle * 2, kMaxIdlePoll);
    }
    if (!SequencerWait(idle)) break;
    {
      // A wake-up means commits are coming: look often again.
      MutexLock lock(&seq_mu_);
      if (seq_woken_) idle = std::chrono::milliseconds(1);
      seq_woken_ = false;
    }
  }
  if (held) (void)ReleaseLease(kSequencerLease, seq_owner_);
}

}  // namespace

Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& url,
                                                 const StoreOptions& options) {
  auto store = std::make_unique<PostgresStore>(url, options);
  HERALD_RETURN_IF_ERROR(store->Init());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace herald::detail
