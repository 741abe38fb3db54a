// What the consumer benchmarks (bench/consumer, bench/consumer_brokers)
// share: the handler's domain table and its one-row write, on SQLite and
// on PostgreSQL, and one timed consumer run with the inbox (herald) or
// without it (the raw baseline). Header-only; single-threaded callers.
#pragma once

#include <libpq-fe.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "bench_util.h"
#include "herald/consumer.h"
#include "herald/consumer_source.h"
#include "herald/postgres.h"
#include "herald/sqlite.h"
#include "herald/store.h"

namespace herald::bench {

// The handler's table: one row per event, keyed by its id (SQLite and
// PostgreSQL alike).
inline constexpr const char* kDomainTable =
    "CREATE TABLE IF NOT EXISTS domain_rows (event_id TEXT PRIMARY KEY, "
    "stream TEXT NOT NULL, position BIGINT NOT NULL)";

// Runs `sql` (no result rows) in `tx`, on SQLite when `sqlite`, else on
// PostgreSQL.
inline Status ExecSql(Transaction& tx, bool sqlite, const std::string& sql) {
  if (sqlite) {
    return sqlite3_exec(SqliteHandle(tx), sql.c_str(), nullptr, nullptr,
                        nullptr) == SQLITE_OK
               ? Status::OK()
               : Status::Unavailable(sqlite3_errmsg(SqliteHandle(tx)));
  }
  PGresult* r = PQexec(PostgresHandle(tx), sql.c_str());
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
            PQresultStatus(r) == PGRES_TUPLES_OK;
  PQclear(r);
  return ok ? Status::OK()
            : Status::Unavailable(PQerrorMessage(PostgresHandle(tx)));
}

// The handler's write: one row for `e`, in `tx`.
inline Status InsertDomainRow(Transaction& tx, bool sqlite, const Event& e) {
  if (sqlite) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(SqliteHandle(tx),
                       "INSERT INTO domain_rows VALUES (?1, ?2, ?3)", -1, &st,
                       nullptr);
    sqlite3_bind_text(st, 1, e.id.c_str(), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, e.stream.c_str(), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, e.position);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? Status::OK() : Status::Unavailable("insert");
  }
  std::string pos = std::to_string(e.position);
  const char* v[] = {e.id.c_str(), e.stream.c_str(), pos.c_str()};
  PGresult* r = PQexecParams(PostgresHandle(tx),
                             "INSERT INTO domain_rows VALUES ($1, $2, "
                             "$3::bigint)",
                             3, nullptr, v, nullptr, nullptr, 0);
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  return ok ? Status::OK() : Status::Unavailable("insert");
}

// Creates the domain table in `db` (its backend: "sqlite" or
// "postgresql"); exits the program on failure.
inline void CreateDomainTable(Store* db) {
  auto tx = db->Begin();
  Check(tx.status(), "begin");
  Check(ExecSql(**tx, db->backend() == "sqlite", kDomainTable), "domain table");
  Check((*tx)->Commit(), "commit");
}

// One consumer run: seconds from Start until the handler ran `events`
// times. With `inbox` the inbox (and the source's state) is `db` and the
// handler writes its domain row in the inbox's transaction (herald);
// without, the handler begins, writes and commits a transaction of its own
// on `db` (raw). Exits the program when the consumer fails.
inline double TimeConsumerRun(ConsumerOptions o, ConsumerSourceOptions so,
                              Store* db, bool inbox, uint64_t events) {
  bool sqlite = db->backend() == "sqlite";
  o.inbox = inbox ? db : nullptr;
  so.state = inbox ? db : nullptr;
  so.max_in_hand = o.max_in_hand;
  auto source = MakeConsumerSource(so);
  Check(source.status(), "source");
  Consumer consumer(o, std::move(*source));
  consumer.SetHandler([db, sqlite](const Event& e, Transaction* tx) -> Status {
    if (tx) return InsertDomainRow(*tx, sqlite, e);
    auto own = db->Begin();
    if (!own.ok()) return own.status();
    HERALD_RETURN_IF_ERROR(InsertDomainRow(**own, sqlite, e));
    return (*own)->Commit();
  });
  auto t0 = Clock::now();
  Check(consumer.Start(), "start");
  while (consumer.stats().handled < events) {
    if (consumer.failed()) Check(consumer.error(), "consumer");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  double secs = Seconds(Clock::now() - t0);
  consumer.Stop();
  return secs;
}

}  // namespace herald::bench
