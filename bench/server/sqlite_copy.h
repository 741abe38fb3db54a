// What bench/server's SQLite baselines share: a page copy of a herald
// database, each stream's version in it, the plain INSERT of an event
// row, and the clock of where their writer's time goes
// (server_bench_tool sqlite-group, http_group_baseline).
#ifndef HERALD_BENCH_SERVER_SQLITE_COPY_H_
#define HERALD_BENCH_SERVER_SQLITE_COPY_H_

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace herald::bench {

// herald_events' columns but the position (the rowid), ?1 to ?8.
inline constexpr const char* kInsertEvent =
    "INSERT INTO herald_events (id, stream, stream_version, type, "
    "content_type, payload, metadata, occurred_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

// Where a writer thread's time goes, phase by phase, how much of it was on
// the CPU, and how long it sat runnable but off the CPU (the scheduler's
// run delay; both from /proc/thread-self/schedstat): printed to stderr
// when the run ends, so the group-commit baselines can be set side by
// side.
class PhaseClock {
 public:
  enum Phase { kWait, kInsert, kCommit, kAnswer, kPhases };
  PhaseClock() { Restart(); }
  // Forgets what was charged so far (a server's wait for its first request).
  void Restart() {
    last_ = Now();
    SchedStat(&cpu0_, &delay0_);
    for (double& s : spent_) s = 0;
  }
  // Ends the current phase, charging its time to `p`.
  void Charge(Phase p) {
    double now = Now();
    spent_[p] += now - last_;
    last_ = now;
  }
  void Print(const char* who, int64_t commits) const {
    double n = commits > 0 ? static_cast<double>(commits) : 1.0;
    double cpu = 0, delay = 0;
    SchedStat(&cpu, &delay);
    std::fprintf(stderr,
                 "%s per commit (us): wait %.0f insert %.0f commit %.0f "
                 "answer %.0f; on the CPU %.0f, run delay %.0f\n",
                 who, spent_[kWait] * 1e6 / n, spent_[kInsert] * 1e6 / n,
                 spent_[kCommit] * 1e6 / n, spent_[kAnswer] * 1e6 / n,
                 (cpu - cpu0_) * 1e6 / n, (delay - delay0_) * 1e6 / n);
  }

 private:
  static double Now() {
    return std::chrono::duration<double>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // Seconds this thread has run, and waited on a run queue.
  static void SchedStat(double* cpu, double* delay) {
    std::ifstream f("/proc/thread-self/schedstat");
    f >> *cpu >> *delay;
    *cpu *= 1e-9;
    *delay *= 1e-9;
  }
  double last_ = 0;
  double cpu0_ = 0, delay0_ = 0;
  double spent_[kPhases] = {};
};

inline void RemoveDatabase(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::remove((path + suffix).c_str());
  }
}

// Copies the SQLite database `src` to `copy` page by page, so the copy has
// the b-trees' shape (a VACUUM would pack the index pages full).
inline bool CopyDatabase(const std::string& src, const std::string& copy) {
  RemoveDatabase(copy);
  sqlite3* from = nullptr;
  sqlite3* to = nullptr;
  bool ok = sqlite3_open_v2(src.c_str(), &from, SQLITE_OPEN_READONLY,
                            nullptr) == SQLITE_OK &&
            sqlite3_open(copy.c_str(), &to) == SQLITE_OK;
  if (ok) {
    sqlite3_busy_timeout(from, 10000);
    sqlite3_backup* b = sqlite3_backup_init(to, "main", from, "main");
    ok = b != nullptr && sqlite3_backup_step(b, -1) == SQLITE_DONE;
    sqlite3_backup_finish(b);
  }
  if (!ok)
    std::fprintf(stderr, "copy %s: %s\n", src.c_str(), sqlite3_errmsg(to));
  sqlite3_close(from);
  sqlite3_close(to);
  return ok;
}

// Each stream of herald_events with its highest version, by stream.
inline std::vector<std::pair<std::string, int64_t>> StreamVersions(
    sqlite3* db) {
  std::vector<std::pair<std::string, int64_t>> out;
  sqlite3_stmt* q = nullptr;
  sqlite3_prepare_v2(db,
                     "SELECT stream, max(stream_version) FROM herald_events "
                     "GROUP BY stream ORDER BY stream",
                     -1, &q, nullptr);
  while (sqlite3_step(q) == SQLITE_ROW) {
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)),
                     sqlite3_column_int64(q, 1));
  }
  sqlite3_finalize(q);
  return out;
}

}  // namespace herald::bench

#endif  // HERALD_BENCH_SERVER_SQLITE_COPY_H_
