// Helpers for bench/server/run.sh: the baselines measured in the same run
// (the store's own append and read rates, the disk's flush rate) and the
// SSE fan-out latency probe. Not a timed test.
//
//   server_bench_tool fill DB N                 append N events (1,000/tx)
//   server_bench_tool append-rate DB BATCH SECS  Store::Append, BATCH per tx
//   server_bench_tool read-rate DB SECS          Store::Read 1,000-event pages
//   server_bench_tool sqlite-read PATH SECS THREADS
//       SQLite's own read of the same pages: THREADS threads, each with
//       its own read-only connection, step a prepared SELECT of every
//       column of 1,000 rows of herald_events (no JSON, no HTTP); prints
//       rows/s summed over the threads.
//   server_bench_tool render-rate DB SECS THREADS
//       What the server does for an uncached page, without HTTP: THREADS
//       threads each render 1,000-event pages straight from Store::Scan
//       to the JSON GET /api/events sends; prints events/s summed.
//   server_bench_tool fsync-rate DIR SECS        write 8 KB + fdatasync
//   server_bench_tool sqlite-group SRC COPY ROWS SECS [AUTOCHECKPOINT]
//       The physical ceiling of SQLite for herald's group commit: copies
//       the SQLite database SRC page by page to COPY (the same b-tree
//       shape), then inserts rows into its herald_events, ROWS per
//       transaction, round-robin over the streams it holds, with plain
//       prepared INSERTs (WAL, synchronous=FULL, wal_autocheckpoint
//       AUTOCHECKPOINT pages, 10000 by default like herald's store); prints
//       rows/s, frames per commit and CPU time per row (us), and to stderr
//       where its time went per commit (PhaseClock).
//   server_bench_tool store-group SRC COPY ROWS SECS
//       The same through herald's store: one transaction of ROWS
//       single-event Store::Append calls (what the appender does for ROWS
//       single-event POSTs), on a page copy of SRC; prints events/s and
//       CPU time per event (us).
//   server_bench_tool sse-fanout PORT SUBS RATE SECS
//       SUBS SSE subscribers; 8 writers POST RATE events/s in all; prints
//       a markdown row: rate, deliveries, then over every (event,
//       subscriber) the latency from occurred_at p50/p99/max and after the
//       writer's answer p50/p99, in ms.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "herald/event.h"
#include "herald/event_json.h"
#include "herald/store.h"
#include "sqlite_copy.h"

namespace {

using Clock = std::chrono::steady_clock;
using herald::bench::CopyDatabase;
using herald::bench::kInsertEvent;
using herald::bench::PhaseClock;
using herald::bench::RemoveDatabase;
using herald::bench::StreamVersions;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// CPU seconds (user + system) this process has used so far.
double CpuSeconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::unique_ptr<herald::Store> Open(const std::string& url) {
  auto s = herald::OpenStore(url);
  if (!s.ok()) {
    std::fprintf(stderr, "open %s: %s\n", url.c_str(),
                 s.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(*s);
}

herald::Event MakeEvent(int n) {
  herald::Event e;
  e.stream = "order-" + std::to_string(n % 1000);
  e.type = "order.placed";
  e.payload = "{\"order\":" + std::to_string(n) +
              ",\"item\":\"coffee\",\"quantity\":2,\"price_cents\":450}";
  e.metadata = "{\"correlation_id\":\"bench\"}";
  return e;
}

int Fill(const std::string& url, int n) {
  auto store = Open(url);
  for (int done = 0; done < n;) {
    std::vector<herald::Event> batch;
    for (int i = 0; i < 1000 && done < n; ++i, ++done) {
      batch.push_back(MakeEvent(done));
    }
    auto r = store->Append(std::span<herald::Event>(batch));
    if (!r.ok()) {
      std::fprintf(stderr, "append: %s\n", r.status().ToString().c_str());
      return 1;
    }
  }
  return 0;
}

int AppendRate(const std::string& url, int batch, double secs) {
  auto store = Open(url);
  int64_t events = 0;
  auto start = Clock::now();
  while (Seconds(start, Clock::now()) < secs) {
    std::vector<herald::Event> b;
    for (int i = 0; i < batch; ++i)
      b.push_back(MakeEvent(static_cast<int>(events) + i));
    auto r = store->Append(std::span<herald::Event>(b));
    if (!r.ok()) return 1;
    events += batch;
  }
  std::printf("%.0f\n", events / Seconds(start, Clock::now()));
  return 0;
}

int ReadRate(const std::string& url, double secs) {
  auto store = Open(url);
  auto head = store->Head();
  if (!head.ok() || *head < 1000) return 1;
  int64_t events = 0;
  herald::ReadRequest req;
  req.limit = 1000;
  auto start = Clock::now();
  int64_t page = 0;
  int64_t pages = *head / 1000;
  while (Seconds(start, Clock::now()) < secs) {
    req.offset = 1 + (page++ % pages) * 1000;
    auto p = store->Read(req);
    if (!p.ok()) return 1;
    events += static_cast<int64_t>(p->events.size());
  }
  std::printf("%.0f\n", events / Seconds(start, Clock::now()));
  return 0;
}

int SqliteRead(const std::string& path, double secs, int threads) {
  std::atomic<int64_t> rows{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> ts;
  auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      sqlite3* db = nullptr;
      sqlite3_stmt* st = nullptr;
      if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
              SQLITE_OK ||
          sqlite3_busy_timeout(db, 5000) != SQLITE_OK ||
          sqlite3_prepare_v2(db,
                             "SELECT position, id, stream, stream_version, "
                             "type, content_type, payload, metadata, "
                             "occurred_at FROM herald_events WHERE position "
                             ">= ? ORDER BY position LIMIT 1000",
                             -1, &st, nullptr) != SQLITE_OK) {
        std::fprintf(stderr, "sqlite-read: %s\n", sqlite3_errmsg(db));
        failed = true;
        sqlite3_close(db);
        return;
      }
      sqlite3_stmt* head = nullptr;
      sqlite3_prepare_v2(db, "SELECT max(position) FROM herald_events", -1,
                         &head, nullptr);
      sqlite3_step(head);
      int64_t pages = sqlite3_column_int64(head, 0) / 1000;
      sqlite3_finalize(head);
      int64_t n = 0, bytes = 0;
      for (int64_t page = t * 7919;
           pages > 0 && Seconds(start, Clock::now()) < secs; ++page) {
        sqlite3_bind_int64(st, 1, 1 + (page % pages) * 1000);
        while (sqlite3_step(st) == SQLITE_ROW) {
          for (int c = 0; c < 9; ++c) {
            if (sqlite3_column_blob(st, c) != nullptr)
              bytes += sqlite3_column_bytes(st, c);
          }
          ++n;
        }
        sqlite3_reset(st);
      }
      if (bytes == 0) failed = true;
      rows += n;
      sqlite3_finalize(st);
      sqlite3_close(db);
    });
  }
  for (auto& t : ts) t.join();
  if (failed) return 1;
  std::printf("%.0f\n", rows / Seconds(start, Clock::now()));
  return 0;
}

int RenderRate(const std::string& url, double secs, int threads) {
  auto store = Open(url);
  auto head = store->Head();
  if (!head.ok() || *head < 1000) return 1;
  const int64_t pages = *head / 1000;
  std::atomic<int64_t> events{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> ts;
  auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      herald::ReadRequest req;
      req.limit = 1000;
      int64_t n = 0;
      size_t bytes = 0;
      for (int64_t page = t * 7919; Seconds(start, Clock::now()) < secs;
           ++page) {
        req.offset = 1 + (page % pages) * 1000;
        std::string body = "{\"events\":[";
        body.reserve(400000);
        size_t count = 0;
        auto p = store->Scan(req, [&](const herald::EventView& e) {
          if (count++ > 0) body.push_back(',');
          herald::AppendEventJson(e, &body);
        });
        if (!p.ok()) {
          failed = true;
          return;
        }
        body += "]}";
        bytes += body.size();
        n += static_cast<int64_t>(count);
      }
      if (bytes == 0) failed = true;
      events += n;
    });
  }
  for (auto& t : ts) t.join();
  if (failed) return 1;
  std::printf("%.0f\n", events / Seconds(start, Clock::now()));
  return 0;
}

int FsyncRate(const std::string& dir, double secs) {
  std::string path = dir + "/fsync-probe";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return 1;
  std::string block(8192, 'x');
  int64_t n = 0;
  auto start = Clock::now();
  while (Seconds(start, Clock::now()) < secs) {
    if (::pwrite(fd, block.data(), block.size(), 0) < 0) return 1;
    if (::fdatasync(fd) != 0) return 1;
    ++n;
  }
  ::close(fd);
  ::unlink(path.c_str());
  std::printf("%.0f\n", n / Seconds(start, Clock::now()));
  return 0;
}

bool SqlOk(sqlite3* db, int rc, const char* what) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return true;
  std::fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
  return false;
}

// Counts the frames each commit appends to the WAL (the hook replaces
// SQLite's own autocheckpoint hook, so it checkpoints as that one does).
struct WalCount {
  int limit = 0;
  int last = 0;
  int64_t frames = 0;
};

int CountFrames(void* arg, sqlite3* db, const char* name, int frames) {
  auto* c = static_cast<WalCount*>(arg);
  c->frames += frames >= c->last ? frames - c->last : frames;
  c->last = frames;
  if (c->limit > 0 && frames >= c->limit) {
    sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                              nullptr);
  }
  return SQLITE_OK;
}

int SqliteGroup(const std::string& src, const std::string& copy, int rows,
                double secs, int autocheckpoint) {
  if (!CopyDatabase(src, copy)) return 1;
  sqlite3* db = nullptr;
  if (sqlite3_open(copy.c_str(), &db) != SQLITE_OK) return 1;
  const std::string pragmas =
      "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
      "PRAGMA wal_autocheckpoint = " +
      std::to_string(autocheckpoint) + ";";
  if (!SqlOk(db, sqlite3_exec(db, pragmas.c_str(), nullptr, nullptr, nullptr),
             "pragmas")) {
    return 1;
  }
  WalCount count;
  count.limit = autocheckpoint;
  sqlite3_wal_hook(db, &CountFrames, &count);

  // Each stream's version, read once: the baseline only inserts.
  auto streams = StreamVersions(db);
  if (streams.empty()) {
    std::fprintf(stderr, "%s holds no events\n", src.c_str());
    return 1;
  }
  sqlite3_stmt* ins = nullptr;
  if (!SqlOk(db, sqlite3_prepare_v2(db, kInsertEvent, -1, &ins, nullptr),
             "prepare")) {
    return 1;
  }
  auto exec = [&](const char* sql) {
    return SqlOk(db, sqlite3_exec(db, sql, nullptr, nullptr, nullptr), sql);
  };
  int64_t done = 0, commits = 0;
  size_t next = 0;
  const double cpu0 = CpuSeconds();
  PhaseClock phases;
  auto start = Clock::now();
  while (Seconds(start, Clock::now()) < secs) {
    phases.Charge(PhaseClock::kWait);
    if (!exec("BEGIN IMMEDIATE")) return 1;
    for (int i = 0; i < rows; ++i) {
      auto& [stream, version] = streams[next];
      next = (next + 1) % streams.size();
      herald::Event e = MakeEvent(static_cast<int>(done + i));
      std::string id = herald::NewUuidV7();
      sqlite3_reset(ins);
      sqlite3_bind_text(ins, 1, id.data(), static_cast<int>(id.size()),
                        SQLITE_STATIC);
      sqlite3_bind_text(ins, 2, stream.data(), static_cast<int>(stream.size()),
                        SQLITE_STATIC);
      sqlite3_bind_int64(ins, 3, ++version);
      sqlite3_bind_text(ins, 4, e.type.data(), static_cast<int>(e.type.size()),
                        SQLITE_STATIC);
      sqlite3_bind_text(ins, 5, e.content_type.data(),
                        static_cast<int>(e.content_type.size()), SQLITE_STATIC);
      sqlite3_bind_blob(ins, 6, e.payload.data(),
                        static_cast<int>(e.payload.size()), SQLITE_STATIC);
      sqlite3_bind_text(ins, 7, e.metadata.data(),
                        static_cast<int>(e.metadata.size()), SQLITE_STATIC);
      sqlite3_bind_int64(ins, 8, herald::NowMicros());
      if (!SqlOk(db, sqlite3_step(ins), "insert")) return 1;
    }
    phases.Charge(PhaseClock::kInsert);
    if (!exec("COMMIT")) return 1;
    phases.Charge(PhaseClock::kCommit);
    done += rows;
    ++commits;
  }
  phases.Print("plain INSERTs", commits);
  double elapsed = Seconds(start, Clock::now());
  const double cpu = CpuSeconds() - cpu0;
  sqlite3_finalize(ins);
  sqlite3_close(db);
  RemoveDatabase(copy);
  std::printf("%.0f %.1f %.2f\n", done / elapsed,
              static_cast<double>(count.frames) / commits, cpu * 1e6 / done);
  return 0;
}

int StoreGroup(const std::string& src, const std::string& copy, int rows,
               double secs) {
  if (!CopyDatabase(src, copy)) return 1;
  int64_t done = 0;
  double elapsed = 0, cpu0 = 0, cpu = 0;
  {
    auto store = Open("sqlite:" + copy);
    cpu0 = CpuSeconds();
    auto start = Clock::now();
    while (Seconds(start, Clock::now()) < secs) {
      auto tx = store->Begin();
      if (!tx.ok()) return 1;
      for (int i = 0; i < rows; ++i) {
        herald::Event e = MakeEvent(static_cast<int>(done + i));
        auto r = store->Append(**tx, std::span<herald::Event>(&e, 1), {});
        if (!r.ok()) return 1;
      }
      if (!(*tx)->Commit().ok()) return 1;
      done += rows;
    }
    elapsed = Seconds(start, Clock::now());
    cpu = CpuSeconds() - cpu0;
  }
  RemoveDatabase(copy);
  std::printf("%.0f %.2f\n", done / elapsed, cpu * 1e6 / done);
  return 0;
}

int Connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("connect");
    std::exit(1);
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool SendAll(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Reads one HTTP response (Content-Length bodies only) from a keep-alive
// connection.
bool ReadResponse(int fd, std::string* buf) {
  while (true) {
    auto end = buf->find("\r\n\r\n");
    if (end != std::string::npos) {
      auto cl = buf->find("Content-Length: ");
      size_t len = cl != std::string::npos && cl < end
                       ? std::strtoul(buf->c_str() + cl + 16, nullptr, 10)
                       : 0;
      if (buf->size() >= end + 4 + len) {
        buf->erase(0, end + 4 + len);
        return true;
      }
    }
    char tmp[65536];
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf->append(tmp, static_cast<size_t>(n));
  }
}

int SseFanout(int port, int subs, int rate, double secs) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  // Subscribers start at the current head + 1 via a large offset guess:
  // read the head first.
  int64_t head = 0;
  {
    int fd = Connect(port);
    SendAll(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    std::string buf;
    char tmp[4096];
    while (buf.find("}") == std::string::npos) {
      ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) break;
      buf.append(tmp, static_cast<size_t>(n));
    }
    auto h = buf.find("\"head\":");
    if (h != std::string::npos)
      head = std::strtoll(buf.c_str() + h + 7, nullptr, 10);
    ::close(fd);
  }
  std::vector<int> fds;
  for (int i = 0; i < subs; ++i) {
    int fd = Connect(port);
    SendAll(fd, "GET /api/events/stream?offset=" + std::to_string(head + 1) +
                    " HTTP/1.1\r\nHost: x\r\n\r\n");
    fds.push_back(fd);
  }
  std::atomic<bool> done{false};
  std::vector<double> latencies;  // ms
  // (event n, receipt time) and each event's POST answer time, UTC µs.
  std::vector<std::pair<int64_t, int64_t>> receipts;
  receipts.reserve(static_cast<size_t>(subs * rate * secs * 1.1));
  std::vector<std::atomic<int64_t>> answered(static_cast<size_t>(rate * secs) +
                                             16);
  latencies.reserve(static_cast<size_t>(subs * rate * secs * 1.1));
  std::thread reader([&] {
    std::vector<pollfd> p(fds.size());
    std::vector<std::string> bufs(fds.size());
    for (size_t i = 0; i < fds.size(); ++i) p[i] = {fds[i], POLLIN, 0};
    while (!done.load()) {
      int r = ::poll(p.data(), p.size(), 100);
      if (r <= 0) continue;
      auto now_us = herald::NowMicros();
      for (size_t i = 0; i < p.size(); ++i) {
        if (!(p[i].revents & POLLIN)) continue;
        char tmp[65536];
        ssize_t n = ::recv(p[i].fd, tmp, sizeof tmp, 0);
        if (n <= 0) continue;
        bufs[i].append(tmp, static_cast<size_t>(n));
        size_t pos;
        while ((pos = bufs[i].find("\n\n")) != std::string::npos) {
          std::string frame = bufs[i].substr(0, pos);
          bufs[i].erase(0, pos + 2);
          auto oa = frame.find("\"occurred_at\":\"");
          if (oa == std::string::npos) continue;
          auto t = herald::ParseRfc3339(frame.substr(oa + 15, 27));
          if (t.ok()) latencies.push_back((now_us - *t) / 1000.0);
          auto np = frame.find("\"payload\":{\"n\":");
          if (np != std::string::npos) {
            receipts.emplace_back(
                std::strtoll(frame.c_str() + np + 15, nullptr, 10), now_us);
          }
        }
      }
    }
  });
  // Writers: single-event POSTs from 8 connections, together paced at
  // `rate` per second (one connection waits for each durable commit, so
  // it alone could not keep up with 1,000/s).
  constexpr int kWriters = 8;
  std::atomic<int64_t> sent{0};
  std::atomic<bool> failed{false};
  auto start = Clock::now();
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      int wfd = Connect(port);
      std::string buf;
      for (int64_t i = w;; i += kWriters) {
        auto due = start + std::chrono::microseconds(
                               static_cast<int64_t>(i * 1e6 / rate));
        if (Seconds(start, due) >= secs) break;
        std::this_thread::sleep_until(due);
        std::string body =
            "{\"stream\":\"fan-" + std::to_string(i % 50) +
            "\",\"type\":\"fan.out\",\"payload\":{\"n\":" + std::to_string(i) +
            "}}";
        std::string req =
            "POST /api/events HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body;
        if (!SendAll(wfd, req) || !ReadResponse(wfd, &buf)) {
          failed = true;
          break;
        }
        if (static_cast<size_t>(i) < answered.size()) {
          answered[static_cast<size_t>(i)] = herald::NowMicros();
        }
        ++sent;
      }
      ::close(wfd);
    });
  }
  for (auto& t : writers) t.join();
  if (failed) return 1;
  double elapsed = Seconds(start, Clock::now());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  done = true;
  reader.join();
  for (int fd : fds) ::close(fd);
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double q) {
    if (latencies.empty()) return -1.0;
    return latencies[std::min(latencies.size() - 1,
                              static_cast<size_t>(q * latencies.size()))];
  };
  // The commit lies between occurred_at and the writer's answer, so
  // receipt - answer <= commit-to-receipt <= receipt - occurred_at.
  std::vector<double> after_answer;
  for (const auto& [n, at] : receipts) {
    if (n >= 0 && static_cast<size_t>(n) < answered.size() &&
        answered[static_cast<size_t>(n)] > 0) {
      after_answer.push_back(std::max<double>(
          0, (at - answered[static_cast<size_t>(n)]) / 1000.0));
    }
  }
  std::sort(after_answer.begin(), after_answer.end());
  auto pct2 = [&](double q) {
    if (after_answer.empty()) return -1.0;
    return after_answer[std::min(after_answer.size() - 1,
                                 static_cast<size_t>(q * after_answer.size()))];
  };
  std::printf(
      "%.0f events/s, %zu of %lld deliveries | %.2f | %.2f | %.2f | %.2f | "
      "%.2f |\n",
      sent / elapsed, latencies.size(),
      static_cast<long long>(sent.load()) * subs, pct(0.5), pct(0.99),
      latencies.empty() ? -1.0 : latencies.back(), pct2(0.5), pct2(0.99));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  auto usage = [] {
    std::fprintf(stderr,
                 "see the comment at the top of server_bench_tool.cc\n");
    return 2;
  };
  if (a.empty()) return usage();
  if (a[0] == "fill" && a.size() == 3) return Fill(a[1], std::stoi(a[2]));
  if (a[0] == "append-rate" && a.size() == 4) {
    return AppendRate(a[1], std::stoi(a[2]), std::stod(a[3]));
  }
  if (a[0] == "read-rate" && a.size() == 3)
    return ReadRate(a[1], std::stod(a[2]));
  if (a[0] == "sqlite-read" && a.size() == 4)
    return SqliteRead(a[1], std::stod(a[2]), std::stoi(a[3]));
  if (a[0] == "render-rate" && a.size() == 4)
    return RenderRate(a[1], std::stod(a[2]), std::stoi(a[3]));
  if (a[0] == "fsync-rate" && a.size() == 3)
    return FsyncRate(a[1], std::stod(a[2]));
  if (a[0] == "sqlite-group" && (a.size() == 5 || a.size() == 6)) {
    return SqliteGroup(a[1], a[2], std::stoi(a[3]), std::stod(a[4]),
                       a.size() == 6 ? std::stoi(a[5]) : 10000);
  }
  if (a[0] == "store-group" && a.size() == 5) {
    return StoreGroup(a[1], a[2], std::stoi(a[3]), std::stod(a[4]));
  }
  if (a[0] == "sse-fanout" && a.size() == 5) {
    return SseFanout(std::stoi(a[1]), std::stoi(a[2]), std::stoi(a[3]),
                     std::stod(a[4]));
  }
  return usage();
}
