// Relay benchmark. Each figure is printed beside a baseline measured in the
// same run, as a ratio; each is the median of --runs runs (default 3).
//
//   relay_bench [--runs N] [--only webhook|file|latency|drain] [--quick]
//
//   webhook  relay events/s to herald_bench_receiver over HTTP, beside wrk
//            POSTing the same request to the same receiver (same in-flight)
//   file     relay events/s to a file sink, beside a plain loop that reads
//            the same pages and writes the same lines with the same fsyncs
//   latency  commit-to-delivery p50/p99/max at 1,000 events/s, writer in
//            the same process and in a separate one, beside one POST's
//            round trip with libcurl
//   drain    `herald relay` draining a 1,000,000-event backlog to a file:
//            events/s beside the store's own page-read rate, and peak RSS
//            for a 100,000 and a 1,000,000 backlog
#include <curl/curl.h>
#include <fcntl.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "bench_util.h"
#include "herald/relay.h"
#include "herald/store.h"
#include "support/test_util.h"

namespace herald {
namespace {

using namespace bench;  // NOLINT(google-build-using-namespace)
using std::chrono::milliseconds;
using testing::Child;
using testing::TempDir;

int g_runs = 3;
bool g_quick = false;

std::unique_ptr<Store> Open(const std::string& path) {
  auto s = OpenStore("sqlite:" + path);
  Check(s.status(), "open store");
  return std::move(*s);
}

// Appends n events over `streams` streams, `per_tx` a transaction.
void Fill(Store* store, int64_t n, int streams, int per_tx) {
  std::vector<Event> batch;
  for (int64_t i = 0; i < n; ++i) {
    Event e;
    e.stream = "order-" + std::to_string(i % streams);
    e.type = "order.placed";
    e.payload = "{\"order\":" + std::to_string(i) + ",\"amount\":4200}";
    batch.push_back(std::move(e));
    if (static_cast<int>(batch.size()) == per_tx || i + 1 == n) {
      Check(store->Append(std::span<Event>(batch)).status(), "fill");
      batch.clear();
    }
  }
}

class Receiver {
 public:
  explicit Receiver(const TempDir& dir, bool log) : port_(testing::FreePort()) {
    std::string ready = dir.file("ready");
    std::remove(ready.c_str());
    std::vector<std::string> argv{HERALD_BENCH_RECEIVER, "--port",
                                  std::to_string(port_), "--ready", ready};
    if (log) {
      log_ = dir.file("received.log");
      argv.push_back("--log");
      argv.push_back(log_);
    }
    child_ = std::make_unique<Child>(argv);
    testing::WaitFor([&] { return std::ifstream(ready).good(); });
  }
  ~Receiver() {
    child_->Signal(SIGTERM);
    child_->Wait();
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/events";
  }
  const std::string& log() const { return log_; }

 private:
  int port_;
  std::string log_;
  std::unique_ptr<Child> child_;
};

RouteConfig HttpRoute(const std::string& name, const std::string& url) {
  RouteConfig r;
  r.name = name;
  r.sender = url;
  r.batch = 100;
  r.max_in_flight = 16;
  return r;
}

// ---- webhook ----------------------------------------------------------------

double WrkRate(const TempDir& dir, const std::string& url, int conns) {
  std::string script = dir.file("post.lua");
  std::ofstream(script)
      << "wrk.method = \"POST\"\n"
         "wrk.body = '{\"order\":123456,\"amount\":4200}'\n"
         "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
         "wrk.headers[\"ce-specversion\"] = \"1.0\"\n"
         "wrk.headers[\"ce-id\"] = \"01890a5d-ac96-774b-bcce-b302099a8057\"\n"
         "wrk.headers[\"ce-source\"] = \"herald\"\n"
         "wrk.headers[\"ce-type\"] = \"order.placed\"\n"
         "wrk.headers[\"ce-subject\"] = \"order-42\"\n"
         "wrk.headers[\"ce-time\"] = \"2026-11-22T09:30:00.123456Z\"\n"
         "wrk.headers[\"ce-position\"] = \"123456\"\n"
         "wrk.headers[\"ce-streamversion\"] = \"7\"\n";
  std::string out;
  testing::RunCommand({"wrk", "-t1", "-c" + std::to_string(conns),
                       g_quick ? "-d2s" : "-d4s", "-s", script, url},
                      &out);
  auto p = out.find("Requests/sec:");
  return p == std::string::npos ? 0 : std::atof(out.c_str() + p + 13);
}

void Webhook() {
  const int64_t n = g_quick ? 20000 : 60000;
  std::vector<double> relay_rates, wrk_rates;
  for (int run = 0; run < g_runs; ++run) {
    TempDir dir;
    auto store = Open(dir.file("h.db"));
    Fill(store.get(), n, 100, 1000);
    Receiver rx(dir, false);
    Relay relay(store.get());
    Check(relay.AddRoute(HttpRoute("hook", rx.url())), "route");
    auto t0 = Clock::now();
    Check(relay.Start(), "start");
    WaitCheckpoint(store.get(), "hook", n);
    relay_rates.push_back(n / Seconds(Clock::now() - t0));
    relay.Stop();
    wrk_rates.push_back(WrkRate(dir, rx.url(), 16));
  }
  double r = Median(relay_rates), w = Median(wrk_rates);
  std::printf("%-52s %12.0f %12.0f %7.2f\n",
              "webhook: relay events/s vs wrk req/s (16 in flight)", r, w,
              r / w);
}

// ---- file -------------------------------------------------------------------

// The baseline: read pages, write the same JSON lines, one fdatasync a page.
double RawFileRate(Store* store, int64_t n, int batch,
                   const std::string& path) {
  auto t0 = Clock::now();
  FILE* f = std::fopen(path.c_str(), "ab");
  ReadRequest req;
  req.offset = 1;
  req.limit = batch;
  std::string buf;
  int64_t done = 0;
  while (done < n) {
    auto page = store->Read(req);
    Check(page.status(), "read");
    if (page->events.empty()) break;
    buf.clear();
    for (const auto& e : page->events) {
      AppendCloudEventJson(e, "herald", &buf);
      buf.push_back('\n');
    }
    std::fwrite(buf.data(), 1, buf.size(), f);
    std::fflush(f);
    ::fdatasync(fileno(f));
    done += static_cast<int64_t>(page->events.size());
    req.offset = page->next_offset;
  }
  std::fclose(f);
  return done / Seconds(Clock::now() - t0);
}

void FileSink() {
  const int64_t n = g_quick ? 50000 : 200000;
  for (int batch : {100, 1000}) {
    std::vector<double> relay_rates, raw_rates;
    for (int run = 0; run < g_runs; ++run) {
      TempDir dir;
      auto store = Open(dir.file("h.db"));
      Fill(store.get(), n, 100, 1000);
      Relay relay(store.get());
      RouteConfig r;
      r.name = "file";
      r.sender = "file:" + dir.file("out.jsonl");
      r.batch = batch;
      Check(relay.AddRoute(r), "route");
      auto t0 = Clock::now();
      Check(relay.Start(), "start");
      WaitCheckpoint(store.get(), "file", n);
      relay_rates.push_back(n / Seconds(Clock::now() - t0));
      relay.Stop();
      raw_rates.push_back(RawFileRate(store.get(), n, batch, dir.file("raw")));
    }
    double a = Median(relay_rates), b = Median(raw_rates);
    char label[96];
    std::snprintf(label, sizeof label,
                  "file: relay events/s vs read+write+fsync loop (batch %d)",
                  batch);
    std::printf("%-52s %12.0f %12.0f %7.2f\n", label, a, b, a / b);
  }
}

// ---- latency
// -----------------------------------------------------------------

// Appends one event per transaction at `rate`/s for `n` events; returns
// (id, commit-acknowledged UTC µs).
std::vector<std::pair<std::string, int64_t>> PacedWriter(Store* store, int n,
                                                         int rate) {
  std::vector<std::pair<std::string, int64_t>> out;
  out.reserve(static_cast<size_t>(n));
  auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    std::this_thread::sleep_until(
        start + std::chrono::microseconds(int64_t{1000000} * i / rate));
    Event e;
    e.stream = "order-" + std::to_string(i % 50);
    e.type = "order.placed";
    e.payload = "{\"order\":1}";
    Check(store->Append(std::span<Event>(&e, 1)).status(), "append");
    out.emplace_back(e.id, NowMicros());
  }
  return out;
}

// Matches commits with first receipts in the receiver's log.
Percentiles FromLog(
    const std::string& log,
    const std::vector<std::pair<std::string, int64_t>>& commits) {
  std::map<std::string, int64_t> recv;
  std::ifstream f(log);
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream ss(line);
    std::string pos, stream, id;
    int64_t us;
    if (ss >> pos >> stream >> id >> us) recv.emplace(id, us);
  }
  std::vector<double> ms;
  FILE* dump = std::getenv("RELAY_BENCH_DUMP")
                   ? std::fopen(std::getenv("RELAY_BENCH_DUMP"), "a")
                   : nullptr;
  for (const auto& [id, at] : commits) {
    auto it = recv.find(id);
    if (it != recv.end()) ms.push_back((it->second - at) / 1000.0);
    if (dump && it != recv.end())
      std::fprintf(dump, "%lld %.3f\n", static_cast<long long>(at), ms.back());
  }
  if (dump) std::fclose(dump);
  return PercentilesOf(ms);
}

// One POST round trip with libcurl (keep-alive), sequentially.
Percentiles CurlRoundTrip(const std::string& url, int n) {
  CURL* c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"order\":1}");
  curl_easy_setopt(
      c, CURLOPT_WRITEFUNCTION,
      +[](char*, size_t s, size_t m, void*) { return s * m; });
  curl_slist* h = curl_slist_append(nullptr, "ce-id: x");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    curl_easy_perform(c);
    ms.push_back(Seconds(Clock::now() - t0) * 1000);
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return PercentilesOf(ms);
}

// 8 KiB write + fdatasync, 200 times.
Percentiles FsyncLatency(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::string block(8192, 'x');
  std::vector<double> ms;
  for (int i = 0; i < 200; ++i) {
    auto t0 = Clock::now();
    if (::pwrite(fd, block.data(), block.size(), 0) < 0) break;
    ::fdatasync(fd);
    ms.push_back(Seconds(Clock::now() - t0) * 1000);
  }
  ::close(fd);
  return PercentilesOf(ms);
}

std::string g_self;

void LatencyRun(bool same_process, int n, std::vector<Percentiles>* out,
                std::vector<Percentiles>* base) {
  TempDir dir;
  std::string db = dir.file("h.db");
  auto store = Open(db);
  Receiver rx(dir, true);
  RelayOptions o;
  Relay relay(store.get(), o);
  RouteConfig r = HttpRoute("lat", rx.url());
  Check(relay.AddRoute(r), "route");
  Check(relay.Start(), "start");
  std::vector<std::pair<std::string, int64_t>> commits;
  if (same_process) {
    commits = PacedWriter(store.get(), n, 1000);
  } else {
    std::string out_path = dir.file("commits");
    Child w({g_self, "--writer", db, std::to_string(n), out_path});
    w.Wait();
    std::ifstream f(out_path);
    std::string id;
    int64_t at;
    while (f >> id >> at) commits.emplace_back(id, at);
  }
  WaitCheckpoint(store.get(), "lat", static_cast<int64_t>(commits.size()));
  relay.Stop();
  out->push_back(FromLog(rx.log(), commits));
  base->push_back(CurlRoundTrip(rx.url(), 2000));
}

void LatencySection() {
  const int n = g_quick ? 2000 : 5000;
  for (bool same : {true, false}) {
    std::vector<Percentiles> runs, base;
    for (int i = 0; i < g_runs; ++i) LatencyRun(same, n, &runs, &base);
    auto med = [&](std::vector<Percentiles>& v, double Percentiles::*f) {
      std::vector<double> x;
      for (auto& l : v) x.push_back(l.*f);
      return Median(x);
    };
    const char* who = same ? "same process" : "separate writer process";
    std::printf(
        "latency @1000/s, %-24s p50 %6.3f ms  p99 %6.3f ms  max %7.3f ms"
        "   (one POST: p50 %5.3f, p99 %5.3f ms; p99 ratio %.1f)\n",
        who, med(runs, &Percentiles::p50), med(runs, &Percentiles::p99),
        med(runs, &Percentiles::max), med(base, &Percentiles::p50),
        med(base, &Percentiles::p99),
        med(runs, &Percentiles::p99) / med(base, &Percentiles::p99));
  }
}

// ---- drain
// -------------------------------------------------------------------

int64_t PeakRssKb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

// Runs `herald relay` on a new route over the filled store; returns
// events/s and peak RSS (kB).
std::pair<double, int64_t> DrainOnce(const TempDir& dir, Store* store,
                                     const std::string& db, int64_t n,
                                     const std::string& route, int batch) {
  std::string cfg = dir.file(route + ".toml");
  std::string out = dir.file(route + ".jsonl");
  std::ofstream(cfg) << "[store]\nurl = \"sqlite:" << db << "\"\n"
                     << "[[route]]\nname = \"" << route
                     << "\"\nsender = \"file:" << out << "\"\nbatch = " << batch
                     << "\n";
  auto t0 = Clock::now();
  Child::Options o;
  o.stderr_path = dir.file(route + ".err");
  Child relay({testing::HeraldBin(), "relay", "--config", cfg}, o);
  WaitCheckpoint(store, route, n);
  double rate = n / Seconds(Clock::now() - t0);
  int64_t rss = PeakRssKb(relay.pid());
  relay.Signal(SIGTERM);
  relay.Wait();
  std::remove(out.c_str());
  return {rate, rss};
}

double RawReadRate(Store* store, int64_t n, int batch) {
  auto t0 = Clock::now();
  ReadRequest req;
  req.offset = 1;
  req.limit = batch;
  int64_t done = 0;
  while (done < n) {
    auto page = store->Read(req);
    Check(page.status(), "read");
    if (page->events.empty()) break;
    done += static_cast<int64_t>(page->events.size());
    req.offset = page->next_offset;
  }
  return done / Seconds(Clock::now() - t0);
}

void Drain() {
  const int64_t n = g_quick ? 200000 : 1000000;
  const int batch = 1000;
  TempDir dir;
  std::string db = dir.file("h.db");
  auto store = Open(db);
  auto f0 = Clock::now();
  Fill(store.get(), n, 1000, 10000);
  std::printf("(filled %lld events in %.1f s)\n", static_cast<long long>(n),
              Seconds(Clock::now() - f0));
  std::vector<double> rates, raws;
  std::vector<int64_t> rss;
  for (int run = 0; run < g_runs; ++run) {
    auto [rate, peak] = DrainOnce(dir, store.get(), db, n,
                                  "drain" + std::to_string(run), batch);
    rates.push_back(rate);
    rss.push_back(peak);
    raws.push_back(RawReadRate(store.get(), n, batch));
  }
  double a = Median(rates), b = Median(raws);
  std::printf("%-52s %12.0f %12.0f %7.2f\n",
              "drain 1M to file: relay events/s vs store page reads", a, b,
              a / b);
  std::sort(rss.begin(), rss.end());
  // A tenth of the backlog, same batch: peak RSS must not grow with it.
  TempDir small_dir;
  std::string small_db = small_dir.file("h.db");
  auto small = Open(small_db);
  Fill(small.get(), n / 10, 1000, 10000);
  auto [small_rate, small_rss] =
      DrainOnce(small_dir, small.get(), small_db, n / 10, "small", batch);
  (void)small_rate;
  std::printf(
      "peak RSS draining (batch %d): %lld kB for %lld events, %lld kB "
      "for %lld (ratio %.2f)\n",
      batch, static_cast<long long>(rss[rss.size() / 2]),
      static_cast<long long>(n), static_cast<long long>(small_rss),
      static_cast<long long>(n / 10),
      static_cast<double>(rss[rss.size() / 2]) / small_rss);
}

int WriterMain(int argc, char** argv) {
  if (argc < 5) return 2;
  auto store = Open(argv[2]);
  auto commits = PacedWriter(store.get(), std::atoi(argv[3]), 1000);
  std::ofstream f(argv[4]);
  for (const auto& [id, at] : commits) f << id << " " << at << "\n";
  return 0;
}

}  // namespace
}  // namespace herald

int main(int argc, char** argv) {
  using namespace herald;
  if (argc > 1 && std::string(argv[1]) == "--writer") {
    return WriterMain(argc, argv);
  }
  g_self = argv[0];
  std::string only;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--runs" && i + 1 < argc) {
      g_runs = std::atoi(argv[++i]);
    } else if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else if (a == "--quick") {
      g_quick = true;
    } else {
      std::fprintf(stderr,
                   "usage: relay_bench [--runs N] [--only "
                   "webhook|file|latency|drain] [--quick]\n");
      return 2;
    }
  }
  if (!std::getenv("HERALD_BIN")) setenv("HERALD_BIN", HERALD_BENCH_BIN, 1);
  {
    // The disk's state in this run: every checkpoint and commit waits on it.
    TempDir dir;
    Percentiles f = FsyncLatency(dir.file("fsync"));
    std::printf("(disk now: 8 KiB write+fdatasync p50 %.3f ms, p99 %.3f ms)\n",
                f.p50, f.p99);
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  std::printf("%-52s %12s %12s %7s\n", "figure (medians of runs)", "herald",
              "baseline", "ratio");
  if (only.empty() || only == "webhook") Webhook();
  if (only.empty() || only == "file") FileSink();
  if (only.empty() || only == "latency") LatencySection();
  if (only.empty() || only == "drain") Drain();
  return 0;
}
