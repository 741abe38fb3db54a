// PostgreSQL store benchmark: herald's append beside raw UPDATE + INSERT of
// the same rows in the same run, the sequencer's throughput, and
// commit-to-delivery latency; the same append and latency workloads on
// SQLite for a side-by-side table.
//
// Needs a PostgreSQL server: HERALD_BENCH_PG_URL or HERALD_TEST_PG_URL (a
// database the user may CREATE DATABASE from). With none, run it through
// the test script, which starts a private cluster:
//
//   tests/support/with-postgres.sh build/bench/postgres/pg_bench [SECONDS]
//
// Append workloads (each transaction updates one domain row, orders, then
// appends): 1 event/tx on 1, 8 and 32 connections (beside the floor and
// the ceiling of positioning at commit too),
// 100 events/tx on 1 and 8.
// The raw baseline runs the same UPDATE, then a prepared INSERT of the same
// columns into a plain outbox table (bigserial key, unique id, stream index)
// — one row, or 100 rows via unnest arrays — on its own connections.
// Phases alternate herald / raw so machine noise hits both.
#include <libpq-fe.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "herald/postgres.h"
#include "herald/sqlite.h"
#include "herald/store.h"
#include "store/postgres/pg_util.h"

namespace {

using Clock = std::chrono::steady_clock;
using herald::detail::pg::BinaryArray;
using herald::detail::pg::ConnPtr;

constexpr const char* kPayload =
    R"({"order_id":"order-42","reason":"customer request","amount":1999})";

double g_seconds = 3.0;
std::string g_base_url;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "pg_bench: %s\n", what.c_str());
  std::exit(1);
}

void Exec(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  auto st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    std::string msg = PQresultErrorMessage(r);
    PQclear(r);
    Die(sql.substr(0, 60) + ": " + msg);
  }
  PQclear(r);
}

ConnPtr Connect(const std::string& url) {
  ConnPtr c(PQconnectdb(url.c_str()));
  if (PQstatus(c.get()) != CONNECTION_OK) Die(PQerrorMessage(c.get()));
  return c;
}

// A new empty database on the server; returns its URL.
std::string FreshDatabase(const std::string& tag) {
  static int n = 0;
  std::string name = "herald_bench_" + std::to_string(::getpid()) + "_" + tag +
                     "_" + std::to_string(++n);
  auto admin = Connect(g_base_url);
  Exec(admin.get(), "CREATE DATABASE " + name);
  auto slash = g_base_url.rfind('/');
  auto query = g_base_url.find('?', slash);
  return g_base_url.substr(0, slash + 1) + name +
         (query == std::string::npos ? "" : g_base_url.substr(query));
}

void CreateDomain(PGconn* c) {
  Exec(c,
       "CREATE TABLE orders (id int PRIMARY KEY, status text, version int);"
       "INSERT INTO orders SELECT g, 'placed', 0 FROM generate_series(0, 63) "
       "g;"
       "CREATE TABLE raw_events (seq bigserial PRIMARY KEY, id uuid NOT NULL "
       "UNIQUE, stream text NOT NULL, type text NOT NULL, content_type text "
       "NOT NULL, payload bytea NOT NULL, metadata text NOT NULL, "
       "occurred_at timestamptz NOT NULL);"
       "CREATE INDEX raw_events_stream ON raw_events (stream);"
       // herald_events' columns and indexes, without its commit trigger.
       "CREATE TABLE floor_events (LIKE herald_events INCLUDING ALL);"
       // The ceiling's (bench/postgres/floor/ceiling.sql): herald's shapes,
       // a trigger that only writes a position row at commit.
       "CREATE TABLE ceil_events (LIKE herald_events INCLUDING ALL);"
       "CREATE TABLE ceil_streams (LIKE herald_streams INCLUDING ALL);"
       "CREATE TABLE ceil_log (LIKE herald_log INCLUDING ALL);"
       "CREATE SEQUENCE ceil_positions;"
       "CREATE FUNCTION ceil_position() RETURNS trigger LANGUAGE plpgsql AS "
       "$fn$ BEGIN INSERT INTO ceil_log (first_position, batch, events) "
       "VALUES (nextval('ceil_positions'), NEW.batch, 1); RETURN NULL; END "
       "$fn$;"
       "CREATE CONSTRAINT TRIGGER ceil_position_on_commit AFTER INSERT ON "
       "ceil_events DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN "
       "(NEW.idx = 0) EXECUTE FUNCTION ceil_position()");
}

void UpdateDomain(PGconn* c, int id) {
  std::string v = std::to_string(id);
  const char* values[] = {v.c_str()};
  PGresult* r = PQexecParams(
      c, "UPDATE orders SET version = version + 1 WHERE id = $1::int", 1,
      nullptr, values, nullptr, nullptr, 0);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) Die(PQresultErrorMessage(r));
  PQclear(r);
}

// CPU seconds (user + system) of this process; *switches (when given): its
// threads' voluntary context switches so far.
double ClientCpu(long* switches = nullptr) {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  if (switches) *switches = u.ru_nvcsw;
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// CPU seconds (user + system) of the processes of the cluster whose data
// directory is HERALD_TEST_PG_DATA (its postmaster and its children), by
// pid; empty when unknown.
std::map<int, double> ServerCpu() {
  std::map<int, double> out;
  const char* data = std::getenv("HERALD_TEST_PG_DATA");
  if (!data) return out;
  FILE* f = std::fopen((std::string(data) + "/postmaster.pid").c_str(), "r");
  if (!f) return out;
  int postmaster = 0;
  if (std::fscanf(f, "%d", &postmaster) != 1) postmaster = 0;
  std::fclose(f);
  if (postmaster <= 0) return out;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename().string();
    if (name.empty() || name[0] < '0' || name[0] > '9') continue;
    FILE* st = std::fopen((entry.path() / "stat").c_str(), "r");
    if (!st) continue;
    char buf[1024];
    size_t len = std::fread(buf, 1, sizeof buf - 1, st);
    std::fclose(st);
    buf[len] = 0;
    const char* close = std::strrchr(buf, ')');
    if (!close) continue;
    // Fields after the command: state ppid ... utime (14th) stime (15th).
    char state;
    int ppid;
    unsigned long long skip, ut, stt;
    if (std::sscanf(close + 2,
                    "%c %d %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu "
                    "%llu",
                    &state, &ppid, &skip, &skip, &skip, &skip, &skip, &skip,
                    &skip, &skip, &skip, &ut, &stt) != 13) {
      continue;
    }
    int pid = std::atoi(name.c_str());
    if (pid != postmaster && ppid != postmaster) continue;
    out[pid] = static_cast<double>(ut + stt) / tick;
  }
  return out;
}

// A cluster process's kind from its title ("postgres: walwriter", or
// "postgres: USER DB HOST(PORT) STATE" for a backend: "backend").
std::string ProcessKind(int pid) {
  FILE* f =
      std::fopen(("/proc/" + std::to_string(pid) + "/cmdline").c_str(), "r");
  if (!f) return "gone";
  char buf[256];
  size_t len = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[len] = 0;
  std::string title(buf);
  if (title.rfind("postgres: ", 0) != 0) return "postmaster";
  title = title.substr(10);
  if (title.find('(') != std::string::npos ||
      title.find("[local]") != std::string::npos) {
    return "backend";
  }
  return title.substr(0, title.find(' '));
}

// Runs fn(thread, iteration) -> events on `threads` threads for g_seconds;
// returns events per second. With HERALD_BENCH_VERBOSE, prints the CPU
// time per call of fn of this process (client) and of the cluster's
// processes (server).
double RunFor(int threads, const std::function<int(int, int64_t)>& fn) {
  const bool verbose = std::getenv("HERALD_BENCH_VERBOSE") != nullptr;
  std::map<int, double> server_before;
  double client_before = 0;
  long switches_before = 0;
  if (verbose) {
    server_before = ServerCpu();
    client_before = ClientCpu(&switches_before);
  }
  std::atomic<int64_t> calls{0};
  std::atomic<int64_t> total{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      int64_t n = 0;
      int64_t i = 0;
      for (; !stop; ++i) n += fn(t, i);
      total += n;
      calls += i;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(g_seconds));
  stop = true;
  for (auto& t : ts) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  if (verbose && calls.load() > 0) {
    long switches = 0;
    double client = ClientCpu(&switches) - client_before;
    double server = 0;
    std::map<std::string, double> parts;  // by process kind
    for (const auto& [pid, cpu] : ServerCpu()) {
      auto it = server_before.find(pid);
      double d = cpu - (it == server_before.end() ? 0 : it->second);
      server += d;
      parts[ProcessKind(pid)] += d;
    }
    const double n = static_cast<double>(calls.load());
    std::string detail;
    for (const auto& [kind, cpu] : parts) {
      if (cpu / n * 1e6 < 1) continue;
      detail +=
          " " + kind + " " + std::to_string(static_cast<int>(cpu / n * 1e6));
    }
    std::fprintf(stderr,
                 "    %lld tx: CPU per tx %.0f us client (%.1f voluntary "
                 "context switches), %.0f us server (%s)\n",
                 static_cast<long long>(calls.load()), client / n * 1e6,
                 static_cast<double>(switches - switches_before) / n,
                 server / n * 1e6, detail.c_str() + (detail.empty() ? 0 : 1));
  }
  return static_cast<double>(total.load()) / secs;
}

std::vector<herald::Event> MakeEvents(int t, int64_t i, int n) {
  std::vector<herald::Event> events(static_cast<size_t>(n));
  std::string stream =
      "order-" + std::to_string(t) + "-" + std::to_string(i % 1000);
  for (auto& e : events) {
    e.stream = stream;
    e.type = "order.canceled";
    e.payload = kPayload;
  }
  return events;
}

// herald: Begin, the domain UPDATE on the transaction's own connection
// (`update(tx, domain_row)`), Append, Commit. Run unchanged on both
// backends.
double HeraldAppend(
    herald::Store* store, int threads, int per_tx,
    const std::function<void(herald::Transaction&, int)>& update) {
  return RunFor(threads, [&](int t, int64_t i) {
    auto tx = store->Begin();
    if (!tx.ok()) Die(tx.status().ToString());
    update(**tx, t);
    auto events = MakeEvents(t, i, per_tx);
    auto r = store->Append(**tx, std::span<herald::Event>(events));
    if (!r.ok()) Die(r.status().ToString());
    herald::Status s = (*tx)->Commit();
    if (!s.ok()) Die(s.ToString());
    return per_tx;
  });
}

double HeraldPgAppend(herald::Store* store, int threads, int per_tx) {
  return HeraldAppend(store, threads, per_tx,
                      [](herald::Transaction& tx, int id) {
                        UpdateDomain(herald::PostgresHandle(tx), id);
                      });
}

// The raw baseline: BEGIN, the same UPDATE, a prepared INSERT of the same
// columns (one row, or per_tx rows through unnest arrays), COMMIT.
double RawPgAppend(const std::string& url, int threads, int per_tx) {
  std::vector<ConnPtr> conns;
  for (int t = 0; t < threads; ++t) {
    conns.push_back(Connect(url));
    PGresult* r = PQprepare(
        conns.back().get(), "ins",
        "INSERT INTO raw_events (id, stream, type, content_type, payload, "
        "metadata, occurred_at) SELECT * FROM unnest($1::uuid[], $2::text[], "
        "$3::text[], $4::text[], $5::bytea[], $6::text[], "
        "$7::timestamptz[])",
        0, nullptr);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) Die(PQresultErrorMessage(r));
    PQclear(r);
    r = PQprepare(conns.back().get(), "ins1",
                  "INSERT INTO raw_events (id, stream, type, content_type, "
                  "payload, metadata, occurred_at) VALUES ($1::uuid, "
                  "$2::text, $3::text, $4::text, $5::bytea, $6::text, "
                  "$7::timestamptz)",
                  0, nullptr);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) Die(PQresultErrorMessage(r));
    PQclear(r);
  }
  return RunFor(threads, [&](int t, int64_t i) {
    PGconn* c = conns[static_cast<size_t>(t)].get();
    Exec(c, "BEGIN");
    UpdateDomain(c, t);
    auto events = MakeEvents(t, i, per_tx);
    int64_t now = herald::NowMicros() - herald::detail::pg::kPgEpochOffsetUs;
    std::string values[7];
    int formats[7] = {1, 1, 1, 1, 1, 1, 1};
    std::string uuid;
    if (per_tx == 1) {
      herald::detail::pg::UuidToBytes(herald::NewUuidV7(), &uuid);
      values[0] = uuid;
      values[1] = events[0].stream;
      values[2] = events[0].type;
      values[3] = events[0].content_type;
      values[4] = events[0].payload;
      values[5] = events[0].metadata;
      herald::detail::pg::PutU64(&values[6], static_cast<uint64_t>(now));
    } else {
      size_t n = events.size();
      BinaryArray a0(herald::detail::pg::kOidUuid, n),
          a1(herald::detail::pg::kOidText, n),
          a2(herald::detail::pg::kOidText, n),
          a3(herald::detail::pg::kOidText, n),
          a4(herald::detail::pg::kOidBytea, n),
          a5(herald::detail::pg::kOidText, n),
          a6(herald::detail::pg::kOidTimestamptz, n);
      for (auto& e : events) {
        herald::detail::pg::UuidToBytes(herald::NewUuidV7(), &uuid);
        a0.Add(uuid);
        a1.Add(e.stream);
        a2.Add(e.type);
        a3.Add(e.content_type);
        a4.Add(e.payload);
        a5.Add(e.metadata);
        a6.AddInt64(now);
      }
      values[0] = a0.Take();
      values[1] = a1.Take();
      values[2] = a2.Take();
      values[3] = a3.Take();
      values[4] = a4.Take();
      values[5] = a5.Take();
      values[6] = a6.Take();
    }
    const char* ptrs[7];
    int lens[7];
    for (int k = 0; k < 7; ++k) {
      ptrs[k] = values[k].data();
      lens[k] = static_cast<int>(values[k].size());
    }
    PGresult* r = PQexecPrepared(c, per_tx == 1 ? "ins1" : "ins", 7, ptrs, lens,
                                 formats, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) Die(PQresultErrorMessage(r));
    PQclear(r);
    Exec(c, "COMMIT");
    return per_tx;
  });
}

// The floor (bench/postgres/floor/floor.sql through libpq, as the C++
// store would send it): BEGIN, the same UPDATE, one INSERT of the event
// into a table of herald_events' shape with its stream version (one more
// than the stream's highest, read in the same statement), COMMIT. No
// stream row, no position, no trigger; a clash with a concurrent append to
// the same stream drops the event. Less than any event store must do.
constexpr const char* kFloorInsert =
    "INSERT INTO floor_events (batch, idx, id, stream, stream_version, "
    "type, content_type, payload, metadata, occurred_at) SELECT "
    "nextval('herald_batches'), 0, $1::uuid, $2::text, coalesce((SELECT "
    "max(e.stream_version) FROM floor_events e WHERE e.stream = "
    "$2::text), 0) + 1, $3::text, $4::text, $5::bytea, $6::text, "
    "$7::timestamptz ON CONFLICT DO NOTHING";

// The ceiling of any store that positions at commit (ceiling.sql): the C++
// store's own statement for one new event (the stream row's update, or its
// insert, then the event) into tables of herald's shapes, and at COMMIT
// the cheapest position row there is (a trigger inserting it, its position
// from a sequence: no lock, no queue, so neither dense nor ordered).
constexpr const char* kCeilingInsert =
    "WITH u AS (UPDATE ceil_streams s SET version = s.version + 1 WHERE "
    "s.stream = $2::text RETURNING s.version), i AS (INSERT INTO "
    "ceil_streams AS s (stream, version) SELECT $2::text, 1 WHERE NOT "
    "EXISTS (SELECT 1 FROM u) ON CONFLICT (stream) DO UPDATE SET version = "
    "s.version + 1 RETURNING s.version), v AS (SELECT u.version FROM u "
    "UNION ALL SELECT i.version FROM i) INSERT INTO ceil_events (batch, idx, "
    "id, stream, stream_version, type, content_type, payload, metadata, "
    "occurred_at) SELECT nextval('herald_batches'), 0, $1::uuid, $2::text, "
    "v.version, $3::text, $4::text, $5::bytea, $6::text, $7::timestamptz "
    "FROM v";

// One event per transaction with `insert` after the domain UPDATE.
double PlainPgAppend(const std::string& url, int threads, const char* insert) {
  std::vector<ConnPtr> conns;
  for (int t = 0; t < threads; ++t) {
    conns.push_back(Connect(url));
    PGresult* r = PQprepare(conns.back().get(), "plain", insert, 0, nullptr);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) Die(PQresultErrorMessage(r));
    PQclear(r);
  }
  return RunFor(threads, [&](int t, int64_t i) {
    PGconn* c = conns[static_cast<size_t>(t)].get();
    Exec(c, "BEGIN");
    UpdateDomain(c, t);
    auto events = MakeEvents(t, i, 1);
    int64_t now = herald::NowMicros() - herald::detail::pg::kPgEpochOffsetUs;
    std::string values[7];
    int formats[7] = {1, 1, 1, 1, 1, 1, 1};
    herald::detail::pg::UuidToBytes(herald::NewUuidV7(), &values[0]);
    values[1] = events[0].stream;
    values[2] = events[0].type;
    values[3] = events[0].content_type;
    values[4] = events[0].payload;
    values[5] = events[0].metadata;
    herald::detail::pg::PutU64(&values[6], static_cast<uint64_t>(now));
    const char* ptrs[7];
    int lens[7];
    for (int k = 0; k < 7; ++k) {
      ptrs[k] = values[k].data();
      lens[k] = static_cast<int>(values[k].size());
    }
    PGresult* r = PQexecPrepared(c, "plain", 7, ptrs, lens, formats, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) Die(PQresultErrorMessage(r));
    PQclear(r);
    Exec(c, "COMMIT");
    return 1;
  });
}

// herald on SQLite, same workload (the domain UPDATE through sqlite3_exec).
double HeraldSqliteAppend(herald::Store* store, int threads, int per_tx) {
  return HeraldAppend(
      store, threads, per_tx, [](herald::Transaction& tx, int id) {
        std::string sql =
            "UPDATE orders SET version = version + 1 WHERE id = " +
            std::to_string(id);
        if (sqlite3_exec(herald::SqliteHandle(tx), sql.c_str(), nullptr,
                         nullptr, nullptr) != SQLITE_OK) {
          Die("sqlite update");
        }
      });
}

std::unique_ptr<herald::Store> Open(const std::string& url,
                                    bool run_sequencer = true) {
  herald::StoreOptions o;
  o.run_sequencer = run_sequencer;
  auto s = herald::OpenStore(url, o);
  if (!s.ok()) Die(s.status().ToString());
  return std::move(*s);
}

// Sequencer throughput: `count` committed, unpositioned events, each in a
// batch of its own (the sequencer's worst case: one log row per event),
// inserted through herald_append_events in one REPEATABLE READ transaction
// (whose commit queues its batches in herald_pending instead of positioning
// them) with no sequencer running; then passes of herald_sequence until
// none is left.
double SequencerThroughput(int count) {
  std::string url = FreshDatabase("seq");
  auto store = Open(url, false);  // migrates; no sequencer
  auto c = Connect(url);
  Exec(c.get(),
       "BEGIN ISOLATION LEVEL REPEATABLE READ; "
       "DO $$ BEGIN FOR i IN 1.." +
           std::to_string(count) +
           " LOOP PERFORM herald_append_events("
           "ARRAY[herald_uuid_v7()], ARRAY['order-' || (i % 1000)], "
           "ARRAY['order.canceled'], ARRAY['application/json'], "
           "ARRAY[convert_to('" +
           std::string(kPayload) +
           "', 'UTF8')], ARRAY['{}'], ARRAY[now()], NULL); END LOOP; "
           "END $$; COMMIT");
  Exec(c.get(), "VACUUM ANALYZE herald_pending");
  auto start = Clock::now();
  int64_t positioned = 0;
  while (true) {
    PGresult* r =
        PQexec(c.get(), "SELECT positioned FROM herald_sequence(2000)");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) Die(PQresultErrorMessage(r));
    int n = std::atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (n <= 0) break;
    positioned += n;
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  if (positioned != count) {
    Die("sequencer positioned " + std::to_string(positioned));
  }
  return static_cast<double>(positioned) / secs;
}

struct Latency {
  double p50_ms, p99_ms, max_ms;
  size_t samples;
};

// How the latency workload's writer appends and commits.
enum class Writer {
  kStore,    // Append(events) on the writer store: Begin, Append, Commit
  kJoined,   // Join on the application's connection, which sends COMMIT
  kSqlOnly,  // SELECT herald_append(...) on a plain connection, then COMMIT
};

// Commit-to-delivery: one writer appends 1 event per transaction at `rate`
// per second; a reader follows `reader`, woken by its append signal or
// looking again after 1 ms (as the server's log watcher does while events
// flow), and notes when each event became readable.
Latency CommitToDelivery(herald::Store* writer, herald::Store* reader, int rate,
                         Writer how, const std::string& pg_url) {
  std::mutex mu;
  std::unordered_map<std::string, Clock::time_point> committed;  // by mu
  std::unordered_map<std::string, Clock::time_point> seen;       // by mu
  std::atomic<bool> stop{false};
  std::atomic<bool> writing_done{false};
  int64_t head = 0;
  {
    auto h = reader->Head();
    if (h.ok()) head = *h;
  }
  {
    // Warm-up: open the pooled connections the writer and the reader use,
    // so that the timed part measures steady state, not connection set-up.
    auto tx = writer->Begin();
    if (!tx.ok()) Die(tx.status().ToString());
    herald::ReadRequest r;
    r.offset = head + 1;
    r.limit = 1;
    if (!reader->Read(r).ok()) Die("warm-up read");
  }
  std::thread rd([&] {
    int64_t offset = head + 1;
    uint64_t epoch = reader->append_epoch();
    while (!stop) {
      herald::ReadRequest r;
      r.offset = offset;
      r.limit = 1000;
      auto page = reader->Read(r);
      auto now = Clock::now();
      if (page.ok() && !page->events.empty()) {
        std::lock_guard<std::mutex> lock(mu);
        for (auto& e : page->events) seen.emplace(e.id, now);
        offset = page->next_offset;
        continue;
      }
      epoch = reader->WaitForAppend(epoch, std::chrono::milliseconds(1));
    }
  });
  ConnPtr app;
  if (how != Writer::kStore) app = Connect(pg_url);
  auto period = std::chrono::nanoseconds(1000000000LL / rate);
  auto next = Clock::now();
  auto end = next + std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double>(g_seconds));
  int64_t i = 0;
  while (Clock::now() < end) {
    std::this_thread::sleep_until(next);
    next += period;
    auto events = MakeEvents(0, i++, 1);
    events[0].id = herald::NewUuidV7();
    if (how == Writer::kJoined) {
      // An application on its own connection, committing itself.
      Exec(app.get(), "BEGIN");
      auto tx = writer->Join(app.get());
      auto r = writer->Append(*tx, std::span<herald::Event>(events));
      if (!r.ok()) Die(r.status().ToString());
      Exec(app.get(), "COMMIT");
    } else if (how == Writer::kSqlOnly) {
      // A service in another language: its driver, herald_append, COMMIT.
      const char* values[] = {events[0].stream.c_str(), events[0].type.c_str(),
                              kPayload, events[0].id.c_str()};
      Exec(app.get(), "BEGIN");
      PGresult* r = PQexecParams(app.get(),
                                 "SELECT created FROM herald_append($1, $2, "
                                 "$3, '{}', $4::uuid)",
                                 4, nullptr, values, nullptr, nullptr, 0);
      if (PQresultStatus(r) != PGRES_TUPLES_OK) Die(PQresultErrorMessage(r));
      PQclear(r);
      Exec(app.get(), "COMMIT");
    } else {
      auto r = writer->Append(std::span<herald::Event>(events));
      if (!r.ok()) Die(r.status().ToString());
    }
    std::lock_guard<std::mutex> lock(mu);
    committed[events[0].id] = Clock::now();
  }
  writing_done = true;
  auto wait_until = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < wait_until) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (seen.size() >= committed.size()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop = true;
  rd.join();
  // Seen before Commit() returned counts as 0.
  std::vector<double> lat;
  for (auto& [id, at] : committed) {
    auto it = seen.find(id);
    if (it == seen.end()) continue;
    lat.push_back(std::max(
        0.0,
        std::chrono::duration<double, std::milli>(it->second - at).count()));
  }
  std::sort(lat.begin(), lat.end());
  Latency out{};
  out.samples = lat.size();
  if (!lat.empty()) {
    out.p50_ms = lat[lat.size() / 2];
    out.p99_ms = lat[std::min(lat.size() - 1, lat.size() * 99 / 100)];
    out.max_ms = lat.back();
  }
  if (lat.size() < committed.size()) {
    std::fprintf(stderr, "latency: only %zu of %zu events delivered\n",
                 lat.size(), committed.size());
  }
  return out;
}

std::string TempSqlite(const std::string& name) {
  static std::string dir = [] {
    std::string t =
        (std::filesystem::temp_directory_path() / "herald-pgbench-XXXXXX")
            .string();
    return std::string(mkdtemp(t.data()));
  }();
  return "sqlite:" + dir + "/" + name;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) g_seconds = std::atof(argv[1]);
  const char* url = std::getenv("HERALD_BENCH_PG_URL");
  if (!url) url = std::getenv("HERALD_TEST_PG_URL");
  if (!url) {
    Die("set HERALD_BENCH_PG_URL, or run through "
        "tests/support/with-postgres.sh");
  }
  g_base_url = url;

  struct Workload {
    const char* name;
    int threads;
    int per_tx;
  };
  const Workload workloads[] = {{"1 event/tx, 1 connection", 1, 1},
                                {"1 event/tx, 8 connections", 8, 1},
                                {"1 event/tx, 32 connections", 32, 1},
                                {"100 events/tx, 1 connection", 1, 100},
                                {"100 events/tx, 8 connections", 8, 100}};
  std::printf("# herald PostgreSQL benchmark, %.1f s per phase\n", g_seconds);
  std::printf("%-32s %12s %12s %7s %12s %7s %12s %9s %14s\n",
              "append (domain UPDATE + events)", "herald ev/s", "raw ev/s",
              "ratio", "floor ev/s", "/floor", "ceiling ev/s", "/ceiling",
              "herald-sqlite");
  double append100 = 0;
  const char* only = std::getenv("HERALD_BENCH_ONLY");
  for (const auto& w : workloads) {
    if (only && std::string(w.name).find(only) == std::string::npos) continue;
    std::string db = FreshDatabase("append");
    {
      auto c = Connect(db);
      auto store = Open(db, !std::getenv("HERALD_BENCH_NO_SEQUENCER"));
      CreateDomain(c.get());
      // Alternate herald, raw and (1 event/tx) the floor and the ceiling;
      // report the better of two rounds each.
      double h = 0, r = 0, f = 0, ce = 0;
      for (int round = 0; round < 2; ++round) {
        double hr = HeraldPgAppend(store.get(), w.threads, w.per_tx);
        double rr = RawPgAppend(db, w.threads, w.per_tx);
        double fr =
            w.per_tx == 1 ? PlainPgAppend(db, w.threads, kFloorInsert) : 0;
        double cr =
            w.per_tx == 1 ? PlainPgAppend(db, w.threads, kCeilingInsert) : 0;
        if (std::getenv("HERALD_BENCH_VERBOSE")) {
          std::fprintf(stderr,
                       "  round %d: herald %.0f raw %.0f floor %.0f "
                       "ceiling %.0f\n",
                       round, hr, rr, fr, cr);
        }
        h = std::max(h, hr);
        r = std::max(r, rr);
        f = std::max(f, fr);
        ce = std::max(ce, cr);
      }
      if (w.threads == 1 && w.per_tx == 100) append100 = h;
      std::string sq = TempSqlite(std::string("a") + std::to_string(w.threads) +
                                  "_" + std::to_string(w.per_tx) + ".db");
      auto sstore = Open(sq);
      {
        auto tx = sstore->Begin();
        sqlite3_exec(herald::SqliteHandle(**tx),
                     "CREATE TABLE orders (id INTEGER PRIMARY KEY, status "
                     "TEXT, version INTEGER); INSERT INTO orders WITH "
                     "RECURSIVE g(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM "
                     "g WHERE x < 63) SELECT x, 'placed', 0 FROM g",
                     nullptr, nullptr, nullptr);
        if (!(*tx)->Commit().ok()) Die("sqlite setup");
      }
      double s = HeraldSqliteAppend(sstore.get(), w.threads, w.per_tx);
      if (f > 0 && ce > 0) {
        std::printf(
            "%-32s %12.0f %12.0f %7.2f %12.0f %7.2f %12.0f %9.2f %14.0f\n",
            w.name, h, r, h / r, f, h / f, ce, h / ce, s);
      } else {
        std::printf("%-32s %12.0f %12.0f %7.2f %12s %7s %12s %9s %14.0f\n",
                    w.name, h, r, h / r, "-", "-", "-", "-", s);
      }
      std::fflush(stdout);
    }
  }

  if (std::getenv("HERALD_BENCH_APPEND_ONLY")) return 0;
  double seq = SequencerThroughput(50000);
  std::printf(
      "\n%-32s %12.0f ev/s  (1 event per batch; %.2fx the 100 events/tx, "
      "1 connection append rate)\n",
      "sequencer throughput", seq, append100 > 0 ? seq / append100 : 0);

  std::printf("\n%-44s %9s %9s %9s %8s\n", "commit-to-delivery, 1,000 ev/s",
              "p50 ms", "p99 ms", "max ms", "samples");
  {
    std::string db = FreshDatabase("lat");
    auto server = Open(db);
    // In-process: the writer commits through the same store; its commit
    // wakes the sequencer at once.
    auto in =
        CommitToDelivery(server.get(), server.get(), 1000, Writer::kStore, db);
    std::printf("%-44s %9.2f %9.2f %9.2f %8zu\n",
                "PostgreSQL, writer in the sequencer's process", in.p50_ms,
                in.p99_ms, in.max_ms, in.samples);
    // Another process's writer (a store without a sequencer, joined to the
    // application's connection, which commits itself; then plain SQL): its
    // commit positions its events; the reader's store has no signal of it.
    auto app = Open(db, false);
    auto out =
        CommitToDelivery(app.get(), server.get(), 1000, Writer::kJoined, db);
    std::printf("%-44s %9.2f %9.2f %9.2f %8zu\n",
                "PostgreSQL, other process, herald library", out.p50_ms,
                out.p99_ms, out.max_ms, out.samples);
    auto sql =
        CommitToDelivery(app.get(), server.get(), 1000, Writer::kSqlOnly, db);
    std::printf("%-44s %9.2f %9.2f %9.2f %8zu\n",
                "PostgreSQL, other process, SQL herald_append", sql.p50_ms,
                sql.p99_ms, sql.max_ms, sql.samples);
    auto sq = Open(TempSqlite("lat.db"));
    auto sl = CommitToDelivery(sq.get(), sq.get(), 1000, Writer::kStore, db);
    std::printf("%-44s %9.2f %9.2f %9.2f %8zu\n", "SQLite, writer in process",
                sl.p50_ms, sl.p99_ms, sl.max_ms, sl.samples);
  }
  return 0;
}
