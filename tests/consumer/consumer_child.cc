// herald_test_consumer: a herald::Consumer in a process of its own, for the
// consumer end-to-end tests (which SIGKILL it). The handler inserts one row
// per call into the domain table `domain_rows` of the inbox's database, in
// the inbox's transaction.
//
//   herald_test_consumer --server URL --inbox URL --name NAME
//       [--kill-at-ack N]      SIGKILL itself when the N-th acknowledgement
//                              reaches the source: after the inbox
//                              transaction committed, before the ack and
//                              the checkpoint
//       [--fail-id UUID --heal-file PATH]  the handler fails on that event
//                              (permanently) until PATH exists
//       [--on-failure park|block] [--max-attempts N]
//       [--retention-ms N --sweep-ms N]
//
// Runs until SIGTERM, then prints {"handled":N,"duplicates":N,...}.
#include <sqlite3.h>
#include <unistd.h>
#if HERALD_TEST_WITH_POSTGRES
#include <libpq-fe.h>
#endif

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include "herald/consumer.h"
#include "herald/postgres.h"
#include "herald/sqlite.h"
#include "support/dying_source.h"

using namespace herald;

namespace {

std::atomic<bool> g_stop{false};
void OnTerm(int) { g_stop = true; }

Status Exec(Transaction& tx, const std::string& backend, const char* sql) {
  if (backend == "sqlite") {
    char* err = nullptr;
    if (sqlite3_exec(SqliteHandle(tx), sql, nullptr, nullptr, &err) !=
        SQLITE_OK) {
      std::string m = err ? err : "?";
      sqlite3_free(err);
      return Status::Internal(m);
    }
    return Status::OK();
  }
#if HERALD_TEST_WITH_POSTGRES
  PGresult* r = PQexec(PostgresHandle(tx), sql);
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  std::string m = PQerrorMessage(PostgresHandle(tx));
  PQclear(r);
  return ok ? Status::OK() : Status::Internal(m);
#else
  return Status::Internal("no PostgreSQL in this build");
#endif
}

Status InsertRow(Transaction& tx, const std::string& backend, const Event& e) {
  if (backend == "sqlite") {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(SqliteHandle(tx),
                       "INSERT INTO domain_rows (event_id, stream, position) "
                       "VALUES (?1, ?2, ?3)",
                       -1, &st, nullptr);
    sqlite3_bind_text(st, 1, e.id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, e.stream.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, e.position);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? Status::OK()
                             : Status::Unavailable("insert domain row");
  }
#if HERALD_TEST_WITH_POSTGRES
  std::string pos = std::to_string(e.position);
  const char* values[] = {e.id.c_str(), e.stream.c_str(), pos.c_str()};
  PGresult* r = PQexecParams(PostgresHandle(tx),
                             "INSERT INTO domain_rows (event_id, stream, "
                             "position) VALUES ($1, $2, $3::bigint)",
                             3, nullptr, values, nullptr, nullptr, 0);
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  return ok ? Status::OK() : Status::Unavailable("insert domain row");
#else
  return Status::Internal("no PostgreSQL in this build");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> a;
  for (int i = 1; i + 1 < argc; i += 2) a[argv[i] + 2] = argv[i + 1];
  std::signal(SIGTERM, OnTerm);
  std::signal(SIGINT, OnTerm);
  auto store = OpenStore(a["inbox"]);
  if (!store.ok()) {
    std::fprintf(stderr, "inbox: %s\n", store.status().ToString().c_str());
    return 1;
  }
  std::string backend((*store)->backend());
  {
    auto tx = (*store)->Begin();
    Status s = tx.ok() ? Exec(**tx, backend,
                              backend == "sqlite"
                                  ? "CREATE TABLE IF NOT EXISTS domain_rows ("
                                    "seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                                    "event_id TEXT NOT NULL, stream TEXT NOT "
                                    "NULL, position INTEGER NOT NULL)"
                                  : "CREATE TABLE IF NOT EXISTS domain_rows ("
                                    "seq bigserial PRIMARY KEY, event_id text "
                                    "NOT NULL, stream text NOT NULL, "
                                    "position bigint NOT NULL)")
                       : tx.status();
    if (s.ok()) s = (*tx)->Commit();
    if (!s.ok()) {
      std::fprintf(stderr, "domain table: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  ConsumerOptions o;
  o.name = a["name"];
  o.inbox = store->get();
  o.max_in_flight = 8;
  o.on_failure =
      a["on-failure"] == "block" ? FailurePolicy::kBlock : FailurePolicy::kPark;
  o.retry.max_attempts =
      a.count("max-attempts") ? std::stoi(a["max-attempts"]) : 3;
  o.retry.backoff_initial = std::chrono::milliseconds(10);
  o.retry.backoff_max = std::chrono::milliseconds(50);
  o.parked_poll = std::chrono::milliseconds(100);
  if (a.count("retention-ms")) {
    o.inbox_retention =
        std::chrono::milliseconds(std::stoll(a["retention-ms"]));
  }
  if (a.count("sweep-ms")) {
    o.sweep_interval = std::chrono::milliseconds(std::stoll(a["sweep-ms"]));
  }
  ConsumerSourceOptions so;
  so.consumer = o.name;
  so.url = a["server"];
  so.state = store->get();
  so.max_in_hand = o.max_in_hand;
  so.options.table = "consumer";
  so.options.route = o.name;
  auto source = MakeConsumerSource(so);
  if (!source.ok()) {
    std::fprintf(stderr, "source: %s\n", source.status().ToString().c_str());
    return 1;
  }
  int64_t kill_at = a.count("kill-at-ack") ? std::stoll(a["kill-at-ack"]) : 0;
  Consumer consumer(
      o, std::make_unique<testing::DieAtAck>(std::move(*source), kill_at));
  std::string fail_id = a["fail-id"];
  std::string heal = a["heal-file"];
  consumer.SetHandler([&](const Event& e, Transaction* tx) -> Status {
    if (!fail_id.empty() && e.id == fail_id && ::access(heal.c_str(), F_OK)) {
      return Status::Permanent("poison event " + e.id);
    }
    return InsertRow(*tx, backend, e);
  });
  Status s = consumer.Start();
  if (!s.ok()) {
    std::fprintf(stderr, "start: %s\n", s.ToString().c_str());
    return 1;
  }
  while (!g_stop.load() && !consumer.failed()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  consumer.Stop();
  auto st = consumer.stats();
  std::printf(
      "{\"handled\":%llu,\"duplicates\":%llu,\"parked\":%llu,\"held\":%llu,"
      "\"swept\":%llu}\n",
      static_cast<unsigned long long>(st.handled),
      static_cast<unsigned long long>(st.duplicates),
      static_cast<unsigned long long>(st.parked),
      static_cast<unsigned long long>(st.held),
      static_cast<unsigned long long>(st.swept));
  return consumer.failed() ? 1 : 0;
}
