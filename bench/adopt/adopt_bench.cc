// Adopted outbox table benchmark (issue 17): herald relaying an
// application's event_record table in flag mode, beside a plain program
// doing the same work, in one run, against one private MariaDB server this
// program starts (tests/adopt/mariadb_server.h; Debian mariadb-server).
//
//   adopt_bench [--rows N] [--batch B] [--streams S] [--runs R]
//               [--latency-seconds T] [--rate P] [--benchmark_...]
//
// backlog   N rows (default 100,000) pending in the table, verbatim as in
//           the issue, with 200-byte JSON messages over S streams. herald:
//           a [[source]] in flag mode (batch B, default 500) read by one
//           route whose sender acknowledges at once (an in-process null
//           sender, so the figure is herald's own reading and marking),
//           timed from Relay::Start until the sender acknowledged N rows
//           and then no row is pending (the count is queried only then). raw: a
//           plain loop on one libmariadb connection selecting the pending rows
//           in id order B at a time and marking them (the same UPDATE herald
//           runs: published = 'Y', published_date = NOW(6), by id list)
//           until none is left. Ratio = herald / raw (goal >= 0.8).
// latency   P rows/s (default 200) inserted one per autocommit transaction
//           for T seconds (default 10) while herald runs with the default
//           poll (200ms): from the insert's commit (its statement
//           returned) to the null sender's acknowledgement, p50/p99;
//           beside it the plain loop polling every 200ms (select, then
//           mark), from commit to the select that found the row.
// Repetitions are interleaved at random; medians of R runs are reported.
#include <benchmark/benchmark.h>
#include <mysql.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "adopt/mariadb_server.h"
#include "herald/config.h"
#include "herald/relay.h"
#include "herald/sender.h"
#include "herald/store.h"
#include "herald/table_source.h"
#include "herald/time.h"
#include "ratio_reporter.h"

namespace herald {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

int g_rows = 100000;
int g_batch = 500;
int g_streams = 50;
int g_runs = 3;
int g_latency_seconds = 10;
int g_rate = 200;
testing::MariaDb* g_db = nullptr;

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "adopt_bench: %s\n", why.c_str());
  std::exit(1);
}

const char* kTable = R"(create table event_record
(
    event_id bigint auto_increment not null primary key comment '이벤트 번호',
    orderNo varchar(32) not null comment '주문번호',
    topic varchar(20) not null comment '토픽',
    message text not null comment '이벤트 메세지',
    published char(1) not null comment '발행 여부',
    published_date datetime null comment '발행 확인 시간',
    created_date datetime not null comment '이벤트 생성 시간'
);)";

// One libmariadb connection (the baseline's, and the inserter's).
class Conn {
 public:
  Conn() : m_(mysql_init(nullptr)) {
    mysql_options(m_, MYSQL_INIT_COMMAND,
                  "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
    if (!mysql_real_connect(m_, "127.0.0.1", "app", "secret", "shop",
                            static_cast<unsigned>(g_db->port()), nullptr, 0)) {
      Die(std::string("connect: ") + mysql_error(m_));
    }
  }
  ~Conn() { mysql_close(m_); }
  void Exec(const std::string& sql) {
    if (mysql_real_query(m_, sql.data(), sql.size()) != 0) {
      Die(std::string("query: ") + mysql_error(m_));
    }
    if (MYSQL_RES* r = mysql_store_result(m_)) mysql_free_result(r);
  }
  // Rows of a query, each column as text.
  std::vector<std::vector<std::string>> Query(const std::string& sql) {
    if (mysql_real_query(m_, sql.data(), sql.size()) != 0) {
      Die(std::string("query: ") + mysql_error(m_));
    }
    MYSQL_RES* r = mysql_store_result(m_);
    std::vector<std::vector<std::string>> out;
    if (!r) return out;
    unsigned n = mysql_num_fields(r);
    while (MYSQL_ROW row = mysql_fetch_row(r)) {
      unsigned long* len = mysql_fetch_lengths(r);
      std::vector<std::string> v;
      for (unsigned i = 0; i < n; ++i) {
        v.emplace_back(row[i] ? std::string(row[i], len[i]) : "");
      }
      out.push_back(std::move(v));
    }
    mysql_free_result(r);
    return out;
  }
  int64_t InsertId() { return static_cast<int64_t>(mysql_insert_id(m_)); }

 private:
  MYSQL* m_;
};

// Empties the table and fills it with `n` pending rows (as a service
// would have written them), then lets the server settle.
void Fill(int n) {
  Conn c;
  c.Exec("truncate table event_record");
  std::string pad(178, 'x');
  for (int i = 0; i < n; i += 10000) {
    int to = std::min(n, i + 10000);
    c.Exec(
        "insert into event_record (orderNo, topic, message, published, "
        "created_date) select concat('order-', seq % " +
        std::to_string(g_streams) +
        "), 'order.placed', concat('{\"i\":', 100000000 + seq, ',\"p\":\"" +
        pad + "\"}'), 'N', utc_timestamp() from seq_" + std::to_string(i + 1) +
        "_to_" + std::to_string(to));
  }
}

int64_t PendingRows(Conn& c) {
  auto rows =
      c.Query("select count(*) from event_record where published = 'N'");
  return rows.empty() ? -1 : std::atoll(rows[0][0].c_str());
}

// Acknowledges every event at once; records when each row was acked.
class NullSender final : public Sender {
 public:
  explicit NullSender(bool record) : record_(record) {}
  void Send(std::span<const Event> events, std::span<SendResult> results,
            Clock::time_point) override {
    int64_t now = record_ ? NowMicros() : 0;
    for (size_t i = 0; i < events.size(); ++i) {
      results[i] = SendResult();
      if (record_) {
        std::lock_guard<std::mutex> lock(mu_);
        acked_.emplace(events[i].position, now);
      }
    }
    sent_ += static_cast<int64_t>(events.size());
  }
  std::string_view kind() const override { return "null"; }
  int64_t sent() const { return sent_.load(); }
  std::unordered_map<int64_t, int64_t> acked() {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_;
  }

 private:
  const bool record_;
  std::atomic<int64_t> sent_{0};
  std::mutex mu_;
  std::unordered_map<int64_t, int64_t> acked_;
};

SourceConfig Source() {
  auto c = ParseConfig(
      "[[source]]\nname = \"orders_outbox\"\nurl = \"" + g_db->url() +
          "\"\ntable = \"event_record\"\ncolumns = { id = \"event_id\", "
          "stream = \"orderNo\", type = \"topic\", payload = \"message\", "
          "occurred_at = \"created_date\" }\npublished = { column = "
          "\"published\", pending = \"N\", done = \"Y\", at = "
          "\"published_date\" }\nbatch = " +
          std::to_string(g_batch) + "\n",
      "bench.toml");
  if (!c.ok()) Die(c.status().ToString());
  return c->sources.at(0);
}

// A running herald relay of the table to a null sender, its state in a
// fresh SQLite store.
struct HeraldRelay {
  testing::TempDir dir;
  std::unique_ptr<Store> store;
  std::unique_ptr<EventSource> source;
  std::unique_ptr<Relay> relay;
  NullSender* sender = nullptr;

  explicit HeraldRelay(bool record) {
    auto s = OpenStore("sqlite:" + dir.file("herald.db"));
    if (!s.ok()) Die(s.status().ToString());
    store = std::move(*s);
    SourceConfig sc = Source();
    auto src = OpenTableSource(sc, {"bench"}, store.get());
    if (!src.ok()) Die(src.status().ToString());
    source = std::move(*src);
    RelayOptions opts;  // as herald relay runs a source: poll = 200ms
    opts.idle_poll = sc.poll;
    opts.busy_poll = std::min(opts.busy_poll, sc.poll);
    relay = std::make_unique<Relay>(source.get(), store.get(), opts);
    RouteConfig route;
    route.name = "bench";
    route.sender = "null:";
    route.batch = g_batch;
    auto snd = std::make_unique<NullSender>(record);
    sender = snd.get();
    Status st = relay->AddRoute(route, std::move(snd));
    if (!st.ok()) Die(st.ToString());
  }
  void Start() {
    Status st = relay->Start();
    if (!st.ok()) Die(st.ToString());
  }
};

// ---- backlog ------------------------------------------------------------

double HeraldBacklog() {
  HeraldRelay h(false);
  Conn watch;
  auto t0 = Clock::now();
  h.Start();
  // Every row acknowledged (a counter, no query beside herald's), then
  // the last batch's marks.
  while (h.sender->sent() < g_rows) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  while (PendingRows(watch) > 0) std::this_thread::sleep_for(milliseconds(1));
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  h.relay->Stop();
  return secs;
}

double RawBacklog() {
  Conn c;
  auto t0 = Clock::now();
  for (;;) {
    auto rows = c.Query(
        "select event_id, orderNo, topic, message, created_date from "
        "event_record where published = 'N' order by event_id limit " +
        std::to_string(g_batch));
    if (rows.empty()) break;
    std::string in;
    for (const auto& r : rows) {
      in += (in.empty() ? "" : ",") + r[0];
    }
    c.Exec(
        "update event_record set published = 'Y', published_date = now(6) "
        "where event_id in (" +
        in + ") and published = 'N'");
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---- latency ------------------------------------------------------------

// Inserts g_rate rows/s for g_latency_seconds, one per autocommit
// statement; returns (row id, commit time in UTC µs).
std::vector<std::pair<int64_t, int64_t>> Insert() {
  Conn c;
  std::vector<std::pair<int64_t, int64_t>> out;
  int n = g_rate * g_latency_seconds;
  auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    std::this_thread::sleep_until(
        start + std::chrono::microseconds(int64_t{1000000} * i / g_rate));
    c.Exec(
        "insert into event_record (orderNo, topic, message, published, "
        "created_date) values ('order-" +
        std::to_string(i % g_streams) + "','order.placed','{\"i\":" +
        std::to_string(i) + "}','N',utc_timestamp(6))");
    out.emplace_back(c.InsertId(), NowMicros());
  }
  return out;
}

struct Latency {
  double p50 = 0, p99 = 0;
  double selects_per_s = 0;  // SELECTs the server ran (Com_select) per s
};

int64_t ComSelect(Conn& c) {
  auto rows = c.Query("show global status like 'Com_select'");
  return rows.empty() ? 0 : std::atoll(rows[0][1].c_str());
}

Latency Percentiles(std::vector<double> ms) {
  Latency l;
  if (ms.empty()) return l;
  std::sort(ms.begin(), ms.end());
  l.p50 = ms[ms.size() / 2];
  l.p99 = ms[std::min(ms.size() - 1, ms.size() * 99 / 100)];
  return l;
}

Latency HeraldLatency() {
  Fill(0);
  HeraldRelay h(true);
  Conn watch;
  int64_t selects = ComSelect(watch);
  h.Start();
  auto commits = Insert();
  selects = ComSelect(watch) - selects - 1;
  while (PendingRows(watch) > 0) std::this_thread::sleep_for(milliseconds(5));
  h.relay->Stop();
  auto acked = h.sender->acked();
  std::vector<double> ms;
  for (const auto& [id, at] : commits) {
    auto it = acked.find(id);
    if (it == acked.end()) Die("row " + std::to_string(id) + " not acked");
    ms.push_back(static_cast<double>(it->second - at) / 1000.0);
  }
  Latency l = Percentiles(ms);
  l.selects_per_s = static_cast<double>(selects) / g_latency_seconds;
  return l;
}

Latency RawLatency() {
  Fill(0);
  Conn watch;
  int64_t selects = ComSelect(watch);
  std::atomic<bool> done{false};
  std::unordered_map<int64_t, int64_t> seen;
  std::thread loop([&] {
    Conn c;
    for (;;) {
      bool last = done.load();
      auto rows = c.Query(
          "select event_id, orderNo, topic, message, created_date from "
          "event_record where published = 'N' order by event_id limit " +
          std::to_string(g_batch));
      int64_t now = NowMicros();
      std::string in;
      for (const auto& r : rows) {
        seen.emplace(std::atoll(r[0].c_str()), now);
        in += (in.empty() ? "" : ",") + r[0];
      }
      if (!rows.empty()) {
        c.Exec(
            "update event_record set published = 'Y', published_date = "
            "now(6) where event_id in (" +
            in + ") and published = 'N'");
      }
      if (last && rows.empty()) break;
      if (static_cast<int>(rows.size()) < g_batch) {
        std::this_thread::sleep_for(milliseconds(200));
      }
    }
  });
  auto commits = Insert();
  selects = ComSelect(watch) - selects - 1;
  done = true;
  loop.join();
  std::vector<double> ms;
  for (const auto& [id, at] : commits) {
    auto it = seen.find(id);
    if (it == seen.end()) Die("raw: row " + std::to_string(id) + " not seen");
    ms.push_back(static_cast<double>(it->second - at) / 1000.0);
  }
  Latency l = Percentiles(ms);
  l.selects_per_s = static_cast<double>(selects) / g_latency_seconds;
  return l;
}

// ---- registration -------------------------------------------------------

std::mutex g_lat_mu;
std::vector<Latency> g_herald_lat, g_raw_lat;

void Register() {
  auto setup = [](::benchmark::internal::Benchmark* b) {
    b->Iterations(1)->Repetitions(g_runs)->UseManualTime()->Unit(
        ::benchmark::kMillisecond);
  };
  setup(::benchmark::RegisterBenchmark(
      "backlog/herald", [](::benchmark::State& state) {
        for (auto _ : state) {
          state.PauseTiming();
          Fill(g_rows);
          state.ResumeTiming();
          state.SetIterationTime(HeraldBacklog());
        }
        state.SetItemsProcessed(g_rows);
      }));
  setup(::benchmark::RegisterBenchmark("backlog/raw",
                                       [](::benchmark::State& state) {
                                         for (auto _ : state) {
                                           state.PauseTiming();
                                           Fill(g_rows);
                                           state.ResumeTiming();
                                           state.SetIterationTime(RawBacklog());
                                         }
                                         state.SetItemsProcessed(g_rows);
                                       }));
  auto latency = [](bool herald) {
    return [herald](::benchmark::State& state) {
      Latency l;
      for (auto _ : state) {
        l = herald ? HeraldLatency() : RawLatency();
        state.SetIterationTime(g_latency_seconds);
      }
      state.counters["p50_ms"] = l.p50;
      state.counters["p99_ms"] = l.p99;
      state.counters["selects_per_s"] = l.selects_per_s;
      std::lock_guard<std::mutex> lock(g_lat_mu);
      (herald ? g_herald_lat : g_raw_lat).push_back(l);
    };
  };
  setup(::benchmark::RegisterBenchmark("latency_200_per_s/herald_poll200ms",
                                       latency(true)));
  setup(::benchmark::RegisterBenchmark("latency_200_per_s/raw_poll200ms",
                                       latency(false)));
}

double MedianOf(std::vector<Latency> v, double Latency::*field) {
  if (v.empty()) return 0;
  std::vector<double> x;
  for (const auto& l : v) x.push_back(l.*field);
  std::sort(x.begin(), x.end());
  return x[x.size() / 2];
}

int Main(int argc, char** argv) {
  std::vector<char*> args = {argv[0]};
  bool interleave_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--benchmark_", 0) == 0) {
      interleave_given |= a.find("random_interleaving") != std::string::npos;
      args.push_back(argv[i]);
      continue;
    }
    if (i + 1 >= argc) Die("missing the value of " + a);
    int v = std::atoi(argv[++i]);
    if (a == "--rows") {
      g_rows = v;
    } else if (a == "--batch") {
      g_batch = v;
    } else if (a == "--streams") {
      g_streams = v;
    } else if (a == "--runs") {
      g_runs = v;
    } else if (a == "--latency-seconds") {
      g_latency_seconds = v;
    } else if (a == "--rate") {
      g_rate = v;
    } else {
      std::fprintf(stderr,
                   "usage: adopt_bench [--rows N] [--batch B] [--streams S] "
                   "[--runs R] [--latency-seconds T] [--rate P] "
                   "[--benchmark_...]\n");
      return 2;
    }
  }
  static char interleave[] = "--benchmark_enable_random_interleaving=true";
  if (!interleave_given) args.push_back(interleave);
  int bargc = static_cast<int>(args.size());
  ::benchmark::Initialize(&bargc, args.data());
  testing::MariaDb db;
  if (!db.error().empty()) Die(db.error());
  g_db = &db;
  std::string r = db.Sql(kTable);
  if (!r.empty()) Die("create table: " + r);
  std::printf(
      "adopt_bench: %d rows backlog, batch %d, %d streams, %d runs; latency "
      "%d rows/s for %d s\n",
      g_rows, g_batch, g_streams, g_runs, g_rate, g_latency_seconds);
  Register();
  bench::RatioReporter reporter;
  ::benchmark::RunSpecifiedBenchmarks(&reporter);
  ::benchmark::Shutdown();
  double h50 = MedianOf(g_herald_lat, &Latency::p50);
  double h99 = MedianOf(g_herald_lat, &Latency::p99);
  double r50 = MedianOf(g_raw_lat, &Latency::p50);
  double r99 = MedianOf(g_raw_lat, &Latency::p99);
  double hs = MedianOf(g_herald_lat, &Latency::selects_per_s);
  double rs = MedianOf(g_raw_lat, &Latency::selects_per_s);
  std::printf(
      "\ncommit-to-ack at %d rows/s, medians of %d runs (ms):\n"
      "  herald (poll 200ms)  p50 %8.1f  p99 %8.1f  selects/s %7.0f\n"
      "  raw loop (200ms)     p50 %8.1f  p99 %8.1f  selects/s %7.0f\n"
      "  ratio raw/herald     p50 %8.2f  p99 %8.2f\n",
      g_rate, g_runs, h50, h99, hs, r50, r99, rs, h50 > 0 ? r50 / h50 : 0,
      h99 > 0 ? r99 / h99 : 0);
  return 0;
}

}  // namespace
}  // namespace herald

int main(int argc, char** argv) { return herald::Main(argc, argv); }
