// NATS JetStream benchmark: herald's relay beside a plain program, in one
// run, against one nats-server (JetStream, file storage) this program
// starts on 127.0.0.1 in a temporary directory.
//
//   nats_bench [--events N] [--window W] [--streams S] [--runs R]
//              [--latency-seconds T] [--batch B] [--plain-raw 0|1]
//              [--threads 0|1] [--only herald|plain]
//
// throughput  a backlog of N events (200-byte JSON payloads, S streams) in
//             a SQLite store, relayed by herald's relay (batch B, default 1000,
//             max_in_flight W) until the checkpoint passes the last one;
//             beside it a plain program publishing the same N messages
//             (the same subject, headers and body as herald's binary mode,
//             Nats-Msg-Id included) with js_PublishMsgAsync and the same
//             window W of unacknowledged publishes, waiting for every
//             PubAck, once just before and once just after herald.
//             Ratio = herald / mean of the two plain runs.
// latency     1,000 events/s appended one per transaction for T seconds
//             with the relay running; commit (Append returned) to PubAck
//             (the relay's Send returned it OK) p50/p99; beside it the
//             plain program's publish-to-PubAck at the same rate.
// Each figure is the median of R runs. Beside each throughput figure: the
// CPU per message of this process (client) and of the nats-server.
// --plain-raw 1   the plain program builds its messages as herald does
//                 (one allocation from the encoded header block)
// --threads 1     per-thread CPU, runqueue wait and context switches of
//                 each throughput phase (profiling)
// --only SIDE     only that side's throughput, R times (profiling)
#include <dirent.h>
#include <nats/nats.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench_util.h"
#include "herald/cloudevents.h"
#include "herald/relay.h"
#include "herald/sender.h"
#include "herald/store.h"
#include "herald/time.h"
#include "herald/uuid.h"
#include "nats/nats_test_util.h"

// libnats' constructor of a message from its wire form (see
// src/transport/nats/nats_sender.cc).
extern "C" natsStatus natsMsg_create(natsMsg** new_msg, const char* subject,
                                     int subject_len, const char* reply,
                                     int reply_len, const char* buf,
                                     int buf_len, int header_len);

namespace herald {
namespace {

using namespace bench;  // NOLINT(google-build-using-namespace)
using std::chrono::milliseconds;

double g_cpu_us = 0;  // of the last throughput phase, per message
// The nats-server's, of the last throughput phase, per message.
double g_server_cpu_us = 0;
pid_t g_server_pid = -1;

// CPU seconds (user + system) /proc/PID/stat says a process used.
double ProcCpuSeconds(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return 0;
  char buf[1024];
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* close = std::strrchr(buf, ')');
  unsigned long long ut = 0, st = 0;
  if (!close || std::sscanf(close + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                            "%llu %llu",
                            &ut, &st) != 2) {
    return 0;
  }
  return static_cast<double>(ut + st) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

bool g_threads = false;  // --threads 1: per-thread CPU of herald's phase

// CPU seconds of each thread of this process, by "tid name".
// Of one thread, from /proc/self/task/TID/schedstat and status.
struct ThreadTimes {
  double cpu = 0;                       // s on a CPU
  double runqueue = 0;                  // s runnable but waiting for a CPU
  long voluntary = 0, involuntary = 0;  // context switches
};

// Each thread of this process, by "tid name".
std::map<std::string, ThreadTimes> ThreadCpu() {
  std::map<std::string, ThreadTimes> out;
  DIR* d = opendir("/proc/self/task");
  if (!d) return out;
  while (dirent* ent = readdir(d)) {
    if (ent->d_name[0] == '.') continue;
    std::string dir = std::string("/proc/self/task/") + ent->d_name;
    ThreadTimes t;
    unsigned long long run = 0, wait = 0;
    if (FILE* f = std::fopen((dir + "/schedstat").c_str(), "r")) {
      if (std::fscanf(f, "%llu %llu", &run, &wait) == 2) {
        t.cpu = static_cast<double>(run) / 1e9;
        t.runqueue = static_cast<double>(wait) / 1e9;
      }
      std::fclose(f);
    }
    std::string name;
    if (FILE* f = std::fopen((dir + "/status").c_str(), "r")) {
      char line[256];
      while (std::fgets(line, sizeof line, f)) {
        std::string_view l(line);
        if (l.starts_with("Name:")) {
          name = std::string(l.substr(5));
          name.erase(0, name.find_first_not_of(" \t"));
          name.erase(name.find_last_not_of(" \t\n") + 1);
        } else if (l.starts_with("voluntary_ctxt_switches:")) {
          t.voluntary = std::atol(line + 24);
        } else if (l.starts_with("nonvoluntary_ctxt_switches:")) {
          t.involuntary = std::atol(line + 27);
        }
      }
      std::fclose(f);
    }
    out[std::string(ent->d_name) + " " + name] = t;
  }
  closedir(d);
  return out;
}

// Prints what each thread used since `before`, per message of `n`.
void PrintThreadCpu(const std::map<std::string, ThreadTimes>& before, int n) {
  for (const auto& [name, t] : ThreadCpu()) {
    ThreadTimes b;
    if (auto it = before.find(name); it != before.end()) b = it->second;
    double used = t.cpu - b.cpu;
    if (used < 0.005) continue;
    std::printf(
        "  thread %-22s cpu %6.3f s (%4.1f us/event), runqueue %6.3f s, "
        "switches %ld voluntary %ld involuntary\n",
        name.c_str(), used, used * 1e6 / n, t.runqueue - b.runqueue,
        t.voluntary - b.voluntary, t.involuntary - b.involuntary);
  }
}

// ---- the plain program
// -------------------------------------------------------

struct PlainAcks {
  std::atomic<int64_t> ok{0}, failed{0};
};

void OnPlainAck(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr*,
                void* closure) {
  auto* acks = static_cast<PlainAcks*>(closure);
  if (pa) {
    ++acks->ok;
  } else {
    ++acks->failed;
  }
  natsMsg_Destroy(msg);
}

// --plain-raw 1: the plain program builds each message as herald's sender
// does, from its encoded header block in one allocation (libnats'
// natsMsg_create, not in nats.h), instead of natsMsgHeader_Set per header.
bool g_plain_raw = false;

natsMsg* BuildMessage(const Event& e, const std::string& subject) {
  natsMsg* m = nullptr;
  if (g_plain_raw) {
    std::string block = "NATS/1.0\r\n";
    for (const auto& [k, v] :
         EncodeCloudEventHeaders(e, "herald", CloudEventBinding::kNats)) {
      block += k + ": " + v + "\r\n";
    }
    block += "Nats-Msg-Id: " + e.id + "\r\n\r\n";
    const int header_len = static_cast<int>(block.size());
    block += e.payload;
    natsMsg_create(&m, subject.data(), static_cast<int>(subject.size()),
                   nullptr, 0, block.data(), static_cast<int>(block.size()),
                   header_len);
    return m;
  }
  natsMsg_Create(&m, subject.c_str(), nullptr, e.payload.data(),
                 static_cast<int>(e.payload.size()));
  for (const auto& [k, v] :
       EncodeCloudEventHeaders(e, "herald", CloudEventBinding::kNats)) {
    natsMsgHeader_Set(m, k.c_str(), v.c_str());
  }
  natsMsgHeader_Set(m, "Nats-Msg-Id", e.id.c_str());
  return m;
}

// Publishes `events` with at most `window` unacknowledged; events/s.
double PlainThroughput(const std::string& url, const std::vector<Event>& events,
                       const std::string& prefix, int window) {
  natsConnection* nc = nullptr;
  if (natsConnection_ConnectTo(&nc, url.c_str()) != NATS_OK) std::exit(1);
  PlainAcks acks;
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = window;
  jo.PublishAsync.AckHandler = &OnPlainAck;
  jo.PublishAsync.AckHandlerClosure = &acks;
  jsCtx* js = nullptr;
  natsConnection_JetStream(&js, nc, &jo);
  auto t0 = Clock::now();
  double cpu0 = ProcessCpuSeconds();
  double server0 = ProcCpuSeconds(g_server_pid);
  auto threads0 =
      g_threads ? ThreadCpu() : std::map<std::string, ThreadTimes>{};
  for (const Event& e : events) {
    natsMsg* m = BuildMessage(e, prefix + e.stream);
    while (js_PublishMsgAsync(js, &m, nullptr) != NATS_OK) {
    }
    natsMsg_Destroy(m);
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 60000;
  js_PublishAsyncComplete(js, &po);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  g_cpu_us = (ProcessCpuSeconds() - cpu0) * 1e6 / events.size();
  g_server_cpu_us =
      (ProcCpuSeconds(g_server_pid) - server0) * 1e6 / events.size();
  if (g_threads) PrintThreadCpu(threads0, static_cast<int>(events.size()));
  if (acks.failed > 0) {
    std::fprintf(stderr, "plain: %lld publishes failed\n",
                 static_cast<long long>(acks.failed.load()));
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return static_cast<double>(events.size()) / secs;
}

// One publish at a time at `rate`/s for `n` messages: publish-to-PubAck ms.
std::vector<double> PlainLatency(const std::string& url, int n, int rate,
                                 int streams) {
  natsConnection* nc = nullptr;
  if (natsConnection_ConnectTo(&nc, url.c_str()) != NATS_OK) std::exit(1);
  jsCtx* js = nullptr;
  natsConnection_JetStream(&js, nc, nullptr);
  std::vector<double> out;
  auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    std::this_thread::sleep_until(
        start + std::chrono::microseconds(int64_t{1000000} * i / rate));
    Event e = MakeBenchEvent(i, streams);
    e.id = NewUuidV7();
    e.position = i + 1;
    e.occurred_at_us = NowMicros();
    natsMsg* m = BuildMessage(e, "bench.plain.lat." + e.stream);
    auto t0 = Clock::now();
    jsPubAck* pa = nullptr;
    if (js_PublishMsg(&pa, js, m, nullptr, nullptr) == NATS_OK) {
      out.push_back(
          std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return out;
}

// ---- herald
// --------------------------------------------------------------------

int g_batch = 1000;

RouteConfig BenchRoute(const std::string& url, const std::string& name,
                       const std::string& subject, int window) {
  RouteConfig r;
  r.name = name;
  r.sender = url;
  r.batch = g_batch;
  r.max_in_flight = window;
  r.options.route = name;
  r.options.fields.push_back({"subject", OptionValue::String(subject)});
  return r;
}

double HeraldThroughput(const std::string& url, const std::string& db, int n,
                        int streams, int window, const std::string& subject) {
  auto opened = OpenStore("sqlite:" + db);
  Check(opened.status(), "open store");
  std::unique_ptr<Store> store = std::move(*opened);
  FillBacklog(store.get(), n, streams);
  Relay relay(store.get());
  Check(relay.AddRoute(BenchRoute(url, "tp", subject, window)), "route");
  auto t0 = Clock::now();
  double cpu0 = ProcessCpuSeconds();
  double server0 = ProcCpuSeconds(g_server_pid);
  Check(relay.Start(), "start");
  auto threads0 =
      g_threads ? ThreadCpu() : std::map<std::string, ThreadTimes>{};
  // Waits on the relay's own record of the checkpoint it saved last
  // (polling the store every millisecond cost this process ~1 us of CPU
  // per event, a SQLite query competing with the relay for the 2 cores).
  while (relay.GetMetrics()[0].checkpoint <= n) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  g_cpu_us = (ProcessCpuSeconds() - cpu0) * 1e6 / n;
  g_server_cpu_us = (ProcCpuSeconds(g_server_pid) - server0) * 1e6 / n;
  if (g_threads) PrintThreadCpu(threads0, n);
  relay.Stop();
  if (Checkpoint(store.get(), "tp") <= n) {
    std::fprintf(stderr, "herald: the stored checkpoint is behind\n");
    std::exit(1);
  }
  return n / secs;
}

int Main(int argc, char** argv) {
  int events = 100000, window = 256, streams = 1000, runs = 3, lat_secs = 5;
  // --only herald / --only plain: that side's throughput alone (profiling).
  std::string only;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int v = std::atoi(argv[i + 1]);
    if (a == "--events")
      events = v;
    else if (a == "--window")
      window = v;
    else if (a == "--streams")
      streams = v;
    else if (a == "--runs")
      runs = v;
    else if (a == "--latency-seconds")
      lat_secs = v;
    else if (a == "--batch")
      g_batch = v;
    else if (a == "--threads")
      g_threads = v != 0;
    else if (a == "--plain-raw")
      g_plain_raw = v != 0;
    else if (a == "--only")
      only = argv[i + 1];
    else {
      std::fprintf(stderr,
                   "usage: nats_bench [--events N] [--window W] "
                   "[--streams S] [--runs R] [--latency-seconds T] "
                   "[--batch B] [--threads 0|1] [--only herald|plain] "
                   "[--plain-raw 0|1]\n");
      return 2;
    }
  }
  testing::NatsServer server;
  if (!server.ready()) {
    std::fprintf(stderr, "nats-server did not start:\n%s\n",
                 server.log().c_str());
    return 1;
  }
  g_server_pid = server.pid();
  testing::JetStreamAdmin admin(server.url());
  if (!admin.ok() || !admin.AddStream("bench", {"bench.>"}).empty()) {
    std::fprintf(stderr, "cannot create the stream\n");
    return 1;
  }
  std::printf(
      "nats_bench: %d events, %d streams, window %d, batch %d, "
      "%d runs, latency %d s at 1000/s\n",
      events, streams, window, g_batch, runs, lat_secs);
  std::vector<double> herald_tp, plain_tp, ratios;
  std::vector<double> h50, h99, p50, p99;
  std::vector<double> herald_cpu, plain_cpu, herald_server, plain_server;
  for (int run = 0; run < runs; ++run) {
    testing::TempDir dir;
    std::vector<Event> plain_events;
    for (int i = 0; i < events; ++i) {
      Event e = MakeBenchEvent(i, streams);
      e.id = NewUuidV7();
      e.position = i + 1;
      e.occurred_at_us = NowMicros();
      plain_events.push_back(std::move(e));
    }
    std::string r = std::to_string(run);
    if (!only.empty()) {
      double h = only == "plain"
                     ? PlainThroughput(server.url(), plain_events,
                                       "bench.plain" + r + "a.", window)
                     : HeraldThroughput(server.url(), dir.file("tp.db"), events,
                                        streams, window,
                                        "bench.herald" + r + ".{stream}");
      std::printf(
          "run %d: throughput %s %.0f/s; CPU per message client %.1f us, "
          "server %.1f us\n",
          run + 1, only.c_str(), h, g_cpu_us, g_server_cpu_us);
      std::fflush(stdout);
      continue;
    }
    // The plain program runs just before and just after herald (the second
    // time with new ids, so nothing is a duplicate), and herald is compared
    // with the mean of the two: a load change on the shared machine during
    // the run weighs on both sides.
    double p1 = PlainThroughput(server.url(), plain_events,
                                "bench.plain" + r + "a.", window);
    double p1_cpu = g_cpu_us, p1_server = g_server_cpu_us;
    double h =
        HeraldThroughput(server.url(), dir.file("tp.db"), events, streams,
                         window, "bench.herald" + r + ".{stream}");
    double h_cpu = g_cpu_us, h_server = g_server_cpu_us;
    for (Event& e : plain_events) e.id = NewUuidV7();
    double p2 = PlainThroughput(server.url(), plain_events,
                                "bench.plain" + r + "b.", window);
    double p_cpu = (p1_cpu + g_cpu_us) / 2;
    double p_server = (p1_server + g_server_cpu_us) / 2;
    herald_cpu.push_back(h_cpu);
    plain_cpu.push_back(p_cpu);
    herald_server.push_back(h_server);
    plain_server.push_back(p_server);
    double p = (p1 + p2) / 2;
    plain_tp.push_back(p);
    herald_tp.push_back(h);
    ratios.push_back(h / p);
    std::printf(
        "run %d: throughput herald %.0f/s, plain %.0f/s (%.0f before, "
        "%.0f after), ratio %.2f; CPU per message: client herald %.1f us, "
        "plain %.1f us; nats-server herald %.1f us, plain %.1f us\n",
        run + 1, h, p, p1, p2, h / p, h_cpu, p_cpu, h_server, p_server);
    int n = 1000 * lat_secs;
    auto hl = PercentilesOf(
        MeasureCommitToAck(dir.file("lat.db"),
                           BenchRoute(server.url(), "lat",
                                      "bench.lat" + r + ".{stream}", window),
                           n, 1000, 50)
            .to_ack_ms);
    auto pl = PercentilesOf(PlainLatency(server.url(), n, 1000, 50));
    h50.push_back(hl.p50);
    h99.push_back(hl.p99);
    p50.push_back(pl.p50);
    p99.push_back(pl.p99);
    std::printf(
        "run %d: commit-to-PubAck herald p50 %.3f ms p99 %.3f ms; "
        "plain publish-to-PubAck p50 %.3f ms p99 %.3f ms\n",
        run + 1, hl.p50, hl.p99, pl.p50, pl.p99);
    std::fflush(stdout);
  }
  if (!only.empty()) return 0;
  std::printf("\nmedians of %d runs:\n", runs);
  std::printf(
      "  backlog throughput  herald %8.0f events/s  plain %8.0f "
      "msgs/s  ratio %.2f (goal >= 0.8)\n",
      Median(herald_tp), Median(plain_tp), Median(ratios));
  std::printf(
      "  client CPU/message  herald %8.1f us        plain %8.1f us    "
      "ratio %.2f\n",
      Median(herald_cpu), Median(plain_cpu),
      Median(plain_cpu) / Median(herald_cpu));
  std::printf(
      "  server CPU/message  herald %8.1f us        plain %8.1f us    "
      "ratio %.2f\n",
      Median(herald_server), Median(plain_server),
      Median(plain_server) / Median(herald_server));
  std::printf(
      "  @1000/s             herald commit-to-PubAck p50 %.3f ms "
      "p99 %.3f ms (goal p99 < 5 ms); plain p50 %.3f ms p99 %.3f ms\n",
      Median(h50), Median(h99), Median(p50), Median(p99));
  return 0;
}

}  // namespace
}  // namespace herald

int main(int argc, char** argv) { return herald::Main(argc, argv); }
