// Consumer benchmark: events handled per second by herald::Consumer from a
// herald server (the HTTP source) with the inbox on SQLite and on
// PostgreSQL, beside the same consumer with no inbox, in one run.
//
//   consumer_bench [--events N] [--streams S] [--runs R] [--in-flight W]
//
// A `herald serve` (started here, SQLite store in a temporary directory)
// holds N events (200-byte JSON payloads over S streams). Each figure is a
// consumer reading all N from position 1 until its handler ran N times:
//   herald   the inbox on the database: per event BEGIN, the inbox row, the
//            handler's one domain row (INSERT), COMMIT, then the ack; the
//            checkpoint saved in the same database;
//   raw      the same consumer with no inbox: per event the handler's own
//            BEGIN, the same INSERT, COMMIT on the same kind of database;
//            the checkpoint in memory.
// Raw runs just before and just after herald; ratio = herald / their mean.
// Storage: the inbox's bytes (table and indexes) after the herald run,
// per row and per million events. PostgreSQL figures need
// HERALD_TEST_PG_URL (run under tests/support/with-postgres.sh).
// Each figure is the median of R runs.
#include <libpq-fe.h>
#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "consumer_util.h"
#include "herald/consumer.h"
#include "herald/postgres.h"
#include "herald/sqlite.h"
#include "herald/store.h"
#include "support/test_util.h"

namespace herald::bench {
namespace {

struct Setup {
  std::string server;
  int events = 0;
  int in_flight = 16;
};

// A fresh database URL for `backend` (a new SQLite file, or a new
// PostgreSQL database on HERALD_TEST_PG_URL's server).
std::string FreshDb(const std::string& backend, const testing::TempDir& dir) {
  static int n = 0;
  if (backend == "sqlite") {
    return "sqlite:" + dir.file("db" + std::to_string(++n) + ".db");
  }
  return testing::FreshStoreUrl("postgresql", dir);
}

// The inbox's bytes (its table and indexes) in `db`, per event handled.
double InboxBytesPerRow(Store* db, bool sqlite, int events) {
  auto tx = db->Begin();
  Check(tx.status(), "begin");
  int64_t bytes = 0;
  if (sqlite) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(SqliteHandle(**tx),
                       "SELECT sum(pgsize) FROM dbstat WHERE name IN "
                       "('herald_inbox', 'herald_inbox_by_time')",
                       -1, &st, nullptr);
    if (st && sqlite3_step(st) == SQLITE_ROW) {
      bytes = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
  } else {
    PGresult* r = PQexec(PostgresHandle(**tx),
                         "SELECT pg_total_relation_size('herald_inbox')");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      bytes = std::atoll(PQgetvalue(r, 0, 0));
    }
    PQclear(r);
  }
  (void)(*tx)->Rollback();
  return static_cast<double>(bytes) / events;
}

// One consumer run: seconds to handle every event. `inbox`: with the inbox
// (herald), else the raw baseline. *bytes_per_row: the inbox's storage.
double RunOnce(const Setup& s, const std::string& backend, bool inbox,
               const testing::TempDir& dir, double* bytes_per_row) {
  auto store = OpenStore(FreshDb(backend, dir));
  Check(store.status(), "open database");
  bool sqlite = backend == "sqlite";
  CreateDomainTable(store->get());
  ConsumerOptions o;
  o.name = "bench";
  o.max_in_flight = s.in_flight;
  o.max_in_hand = 4096;
  ConsumerSourceOptions so;
  so.consumer = "bench";
  so.url = s.server;
  double secs = TimeConsumerRun(o, so, store->get(), inbox,
                                static_cast<uint64_t>(s.events));
  if (inbox && bytes_per_row) {
    *bytes_per_row = InboxBytesPerRow(store->get(), sqlite, s.events);
  }
  return secs;
}

}  // namespace
}  // namespace herald::bench

int main(int argc, char** argv) {
  using namespace herald;
  using namespace herald::bench;
  int events = 20000, streams = 20, runs = 3, in_flight = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    int v = std::atoi(argv[i + 1]);
    if (k == "--events") events = v;
    if (k == "--streams") streams = v;
    if (k == "--runs") runs = v;
    if (k == "--in-flight") in_flight = v;
  }
  testing::TempDir dir;
  std::string server_db = "sqlite:" + dir.file("server.db");
  {
    auto store = OpenStore(server_db);
    Check(store.status(), "server store");
    FillBacklog(store->get(), events, streams);
  }
  int port = testing::FreePort();
  testing::Child::Options co;
  co.stderr_path = dir.file("serve.err");
  testing::Child serve({HERALD_BENCH_BIN, "serve", "--db", server_db,
                        "--listen", "127.0.0.1:" + std::to_string(port)},
                       co);
  Setup s;
  s.server = "http://127.0.0.1:" + std::to_string(port);
  s.events = events;
  s.in_flight = in_flight;
  // Wait for the server: a consumer run with no inbox would retry anyway,
  // but the first figure must not include the start-up.
  for (int i = 0; i < 200; ++i) {
    std::string out;
    if (testing::RunCommand({"curl", "-sf", s.server + "/health"}, &out) == 0) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::vector<std::string> backends = {"sqlite"};
  if (std::getenv("HERALD_TEST_PG_URL")) backends.push_back("postgresql");
  std::printf(
      "consumer_bench: %d events (200-byte payloads, %d streams), "
      "max_in_flight %d, %d runs (medians)\n",
      events, streams, in_flight, runs);
  std::printf("%-34s %12s %12s %7s %14s %14s\n", "figure (events/s)", "herald",
              "no inbox", "ratio", "inbox B/row", "MB/1M events");
  for (const auto& b : backends) {
    std::vector<double> herald_rate, raw_rate, ratio, bytes;
    for (int r = 0; r < runs; ++r) {
      double raw1 = events / RunOnce(s, b, false, dir, nullptr);
      double per_row = 0;
      double h = events / RunOnce(s, b, true, dir, &per_row);
      double raw2 = events / RunOnce(s, b, false, dir, nullptr);
      herald_rate.push_back(h);
      raw_rate.push_back((raw1 + raw2) / 2);
      ratio.push_back(h / ((raw1 + raw2) / 2));
      bytes.push_back(per_row);
    }
    std::string name = "http source, inbox on " + b;
    std::printf("%-34s %12.0f %12.0f %7.2f %14.1f %14.1f\n", name.c_str(),
                Median(herald_rate), Median(raw_rate), Median(ratio),
                Median(bytes), Median(bytes));
  }
  serve.Signal(SIGTERM);
  serve.Wait();
  return 0;
}
