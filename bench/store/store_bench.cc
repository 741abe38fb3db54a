// SQLite store benchmarks: herald's append and read beside raw SQLite doing
// the same work on the same rows in the same run.
//
// Append: each transaction updates a domain row (orders) and inserts 1 or
// 100 events, with synchronous=FULL or NORMAL. The raw baseline runs the
// same UPDATE and a prepared INSERT of the same columns into a table with the
// same indexes, on its own connection. Read: read(offset, 1000) pages beside
// a prepared SELECT of the same rows.
//
//   build/bench/store/store_bench --benchmark_repetitions=3
//       --benchmark_report_aggregates_only=true   (one line)
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "herald/sqlite.h"
#include "herald/store.h"
#include "ratio_reporter.h"

namespace {

std::string TempPath(const char* name) {
  static std::string dir = [] {
    std::string t =
        (std::filesystem::temp_directory_path() / "herald-bench-XXXXXX")
            .string();
    return std::string(mkdtemp(t.data()));
  }();
  std::string p = dir + "/" + name;
  std::filesystem::remove(p);
  std::filesystem::remove(p + "-wal");
  std::filesystem::remove(p + "-shm");
  return p;
}

void Check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    std::fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
    std::abort();
  }
}

constexpr const char* kPayload =
    R"({"order_id":"order-42","reason":"customer request","amount":1999})";

void HeraldAppend(benchmark::State& state, bool full, int per_tx) {
  herald::StoreOptions o;
  o.sqlite_synchronous_full = full;
  auto store = herald::OpenStore(TempPath("herald.db"), o);
  if (!store.ok()) std::abort();
  {
    auto tx = (*store)->Begin();
    Check(sqlite3_exec(herald::SqliteHandle(**tx),
                       "CREATE TABLE orders (id INTEGER PRIMARY KEY, "
                       "status TEXT, version INTEGER);"
                       "INSERT INTO orders VALUES (42, 'placed', 0)",
                       nullptr, nullptr, nullptr),
          nullptr, "setup");
    (void)(*tx)->Commit();
  }
  std::vector<herald::Event> events(per_tx);
  int64_t n = 0;
  for (auto _ : state) {
    auto tx = (*store)->Begin();
    sqlite3* db = herald::SqliteHandle(**tx);
    Check(sqlite3_exec(db,
                       "UPDATE orders SET version = version + 1 WHERE id = 42",
                       nullptr, nullptr, nullptr),
          db, "update");
    for (auto& e : events) {
      e = herald::Event();
      e.stream = "order-" + std::to_string(n++ % 1000);
      e.type = "order.canceled";
      e.payload = kPayload;
    }
    if (!(*store)->Append(**tx, events).ok()) std::abort();
    if (!(*tx)->Commit().ok()) std::abort();
  }
  state.SetItemsProcessed(state.iterations() * per_tx);
}

void RawAppend(benchmark::State& state, bool full, int per_tx) {
  sqlite3* db;
  sqlite3_open(TempPath("raw.db").c_str(), &db);
  std::string setup =
      std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=") +
      (full ? "FULL" : "NORMAL") +
      ";"
      // The checkpoint threshold herald's SQLite store sets.
      "PRAGMA wal_autocheckpoint=10000;"
      "CREATE TABLE orders (id INTEGER PRIMARY KEY, "
      "status TEXT, version INTEGER);"
      "INSERT INTO orders VALUES (42, 'placed', 0);"
      "CREATE TABLE events (position INTEGER PRIMARY KEY, "
      "id TEXT NOT NULL UNIQUE, stream TEXT NOT NULL, "
      "stream_version INTEGER NOT NULL, type TEXT NOT NULL, "
      "content_type TEXT NOT NULL, payload BLOB NOT NULL, "
      "metadata TEXT NOT NULL, occurred_at INTEGER NOT NULL, "
      "UNIQUE (stream, stream_version))";
  Check(sqlite3_exec(db, setup.c_str(), nullptr, nullptr, nullptr), db,
        "setup");
  sqlite3_stmt *update, *insert;
  sqlite3_prepare_v2(db,
                     "UPDATE orders SET version = version + 1 WHERE id = 42",
                     -1, &update, nullptr);
  sqlite3_prepare_v2(db,
                     "INSERT INTO events (id, stream, stream_version, type, "
                     "content_type, payload, metadata, occurred_at) VALUES "
                     "(?, ?, ?, ?, ?, ?, ?, ?)",
                     -1, &insert, nullptr);
  std::vector<int64_t> versions(1000, 0);
  int64_t n = 0;
  for (auto _ : state) {
    Check(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), db,
          "begin");
    Check(sqlite3_step(update), db, "update");
    sqlite3_reset(update);
    for (int i = 0; i < per_tx; ++i) {
      std::string id = herald::NewUuidV7();
      int64_t s = n++ % 1000;
      std::string stream = "order-" + std::to_string(s);
      sqlite3_bind_text(insert, 1, id.data(), 36, SQLITE_STATIC);
      sqlite3_bind_text(insert, 2, stream.data(), int(stream.size()),
                        SQLITE_STATIC);
      sqlite3_bind_int64(insert, 3, ++versions[s]);
      sqlite3_bind_text(insert, 4, "order.canceled", -1, SQLITE_STATIC);
      sqlite3_bind_text(insert, 5, "application/json", -1, SQLITE_STATIC);
      sqlite3_bind_blob(insert, 6, kPayload, int(strlen(kPayload)),
                        SQLITE_STATIC);
      sqlite3_bind_text(insert, 7, "{}", -1, SQLITE_STATIC);
      sqlite3_bind_int64(insert, 8, herald::NowMicros());
      Check(sqlite3_step(insert), db, "insert");
      sqlite3_reset(insert);
    }
    Check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
  }
  state.SetItemsProcessed(state.iterations() * per_tx);
  sqlite3_finalize(update);
  sqlite3_finalize(insert);
  sqlite3_close(db);
}

// A read fixture shared by both read benchmarks: 200,000 events.
constexpr int kReadEvents = 200000;
const std::string& ReadDb() {
  static std::string path = [] {
    std::string p = TempPath("read.db");
    herald::StoreOptions o;
    o.sqlite_synchronous_full = false;
    auto store = herald::OpenStore(p, o);
    std::vector<herald::Event> batch(1000);
    for (int b = 0; b < kReadEvents / 1000; ++b) {
      for (int i = 0; i < 1000; ++i) {
        batch[i] = herald::Event();
        batch[i].stream = "order-" + std::to_string(i % 500);
        batch[i].type = "order.canceled";
        batch[i].payload = kPayload;
      }
      if (!(*store)->Append(batch).ok()) std::abort();
    }
    return p;
  }();
  return path;
}

void HeraldRead(benchmark::State& state) {
  auto store = herald::OpenStore(ReadDb());
  if (!store.ok()) std::abort();
  int64_t items = 0;
  for (auto _ : state) {
    herald::ReadRequest r;
    r.limit = 1000;
    while (true) {
      auto page = (*store)->Read(r);
      if (!page.ok()) std::abort();
      if (page->events.empty()) break;
      items += static_cast<int64_t>(page->events.size());
      r.offset = page->next_offset;
    }
  }
  state.SetItemsProcessed(items);
}

void RawRead(benchmark::State& state) {
  sqlite3* db;
  sqlite3_open(ReadDb().c_str(), &db);
  sqlite3_stmt* s;
  sqlite3_prepare_v2(db,
                     "SELECT position, id, stream, stream_version, type, "
                     "content_type, payload, metadata, occurred_at FROM "
                     "herald_events WHERE position >= ? ORDER BY position "
                     "LIMIT 1000",
                     -1, &s, nullptr);
  int64_t items = 0;
  for (auto _ : state) {
    int64_t offset = 1;
    while (true) {
      // Copy each row out as a reader must.
      std::vector<herald::Event> page;
      page.reserve(1000);
      sqlite3_bind_int64(s, 1, offset);
      while (sqlite3_step(s) == SQLITE_ROW) {
        herald::Event e;
        e.position = sqlite3_column_int64(s, 0);
        e.id.assign(reinterpret_cast<const char*>(sqlite3_column_text(s, 1)));
        e.stream.assign(
            reinterpret_cast<const char*>(sqlite3_column_text(s, 2)));
        e.stream_version = sqlite3_column_int64(s, 3);
        e.type.assign(reinterpret_cast<const char*>(sqlite3_column_text(s, 4)));
        e.content_type.assign(
            reinterpret_cast<const char*>(sqlite3_column_text(s, 5)));
        e.payload.assign(static_cast<const char*>(sqlite3_column_blob(s, 6)),
                         sqlite3_column_bytes(s, 6));
        e.metadata.assign(
            reinterpret_cast<const char*>(sqlite3_column_text(s, 7)));
        e.occurred_at_us = sqlite3_column_int64(s, 8);
        page.push_back(std::move(e));
      }
      sqlite3_reset(s);
      if (page.empty()) break;
      items += static_cast<int64_t>(page.size());
      offset = page.back().position + 1;
    }
  }
  state.SetItemsProcessed(items);
  sqlite3_finalize(s);
  sqlite3_close(db);
}

}  // namespace

BENCHMARK_CAPTURE(HeraldAppend, full_1, true, 1)
    ->Name("append_full_1_per_tx/herald")
    ->MinTime(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(RawAppend, full_1, true, 1)
    ->Name("append_full_1_per_tx/raw")
    ->MinTime(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(HeraldAppend, normal_1, false, 1)
    ->Name("append_normal_1_per_tx/herald")
    ->MinTime(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(RawAppend, normal_1, false, 1)
    ->Name("append_normal_1_per_tx/raw")
    ->MinTime(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(HeraldAppend, full_100, true, 100)
    ->Name("append_full_100_per_tx/herald")
    ->MinTime(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(RawAppend, full_100, true, 100)
    ->Name("append_full_100_per_tx/raw")
    ->MinTime(2)
    ->UseRealTime();
BENCHMARK(HeraldRead)
    ->Name("read_pages_of_1000/herald")
    ->MinTime(2)
    ->UseRealTime();
BENCHMARK(RawRead)->Name("read_pages_of_1000/raw")->MinTime(2)->UseRealTime();

HERALD_BENCHMARK_MAIN();
