// Child process for the store's crash and concurrency tests.
//
//   store_worker crash DB READY_FILE
//       Opens a transaction, updates a domain row, appends an event, creates
//       READY_FILE, then waits forever (the test kills it with SIGKILL).
//   store_worker write DB WRITER_ID TXNS COMMITTED_FILE
//       Runs TXNS transactions of 1-5 events on streams of its own; about one
//       in four is rolled back. Writes the ids of committed events, one per
//       line, to COMMITTED_FILE after each commit (and of rolled-back ones,
//       prefixed with '-').
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "herald/sqlite.h"
#include "herald/store.h"

using herald::Event;

namespace {

int Crash(const std::string& db, const std::string& ready) {
  auto store = herald::OpenStore(db);
  if (!store.ok()) return 3;
  auto tx = (*store)->Begin();
  if (!tx.ok()) return 3;
  sqlite3* conn = herald::SqliteHandle(**tx);
  if (sqlite3_exec(conn, "UPDATE orders SET status = 'canceled' WHERE id = 1",
                   nullptr, nullptr, nullptr) != SQLITE_OK) {
    return 3;
  }
  Event e;
  e.stream = "order-1";
  e.type = "order.canceled";
  e.payload = R"({"order_id":1})";
  if (!(*store)->Append(**tx, std::span<Event>(&e, 1)).ok()) return 3;
  if (FILE* f = std::fopen(ready.c_str(), "w")) {
    std::fputs(e.id.c_str(), f);
    std::fclose(f);
  }
  while (true) pause();
}

int Write(const std::string& db, int writer, int txns,
          const std::string& out_path) {
  auto store = herald::OpenStore(db);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    return 3;
  }
  FILE* out = std::fopen(out_path.c_str(), "w");
  std::mt19937 rng(static_cast<unsigned>(writer * 7919 + getpid()));
  int seq = 0;
  for (int t = 0; t < txns; ++t) {
    auto tx = (*store)->Begin();
    if (!tx.ok()) {
      std::fprintf(stderr, "begin: %s\n", tx.status().ToString().c_str());
      return 3;
    }
    std::vector<Event> events(1 + rng() % 5);
    for (auto& e : events) {
      e.stream =
          "w" + std::to_string(writer) + "-s" + std::to_string(rng() % 3);
      e.type = "test.written";
      e.payload = "{\"seq\":" + std::to_string(seq++) + "}";
    }
    auto r = (*store)->Append(**tx, events);
    if (!r.ok()) {
      std::fprintf(stderr, "append: %s\n", r.status().ToString().c_str());
      return 3;
    }
    bool rollback = rng() % 4 == 0;
    herald::Status s = rollback ? (*tx)->Rollback() : (*tx)->Commit();
    if (!s.ok()) {
      std::fprintf(stderr, "end: %s\n", s.ToString().c_str());
      return 3;
    }
    for (auto& e : events) {
      std::fprintf(out, "%s%s\n", rollback ? "-" : "", e.id.c_str());
    }
    std::fflush(out);
  }
  std::fclose(out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  if (a.size() == 3 && a[0] == "crash") return Crash(a[1], a[2]);
  if (a.size() == 5 && a[0] == "write") {
    return Write(a[1], std::stoi(a[2]), std::stoi(a[3]), a[4]);
  }
  std::fprintf(stderr, "usage: see store_worker.cc\n");
  return 2;
}
