// Kafka benchmark: herald's relay beside a plain librdkafka producer, in
// one run, against one librdkafka mock cluster (3 brokers) served by the
// herald_test_kafka_mock process on 127.0.0.1. The mock keeps messages in
// memory and answers at once: it measures the client side (herald's relay
// and librdkafka), not a Kafka cluster's disks or network.
//
//   kafka_bench [--events N] [--window W] [--streams S] [--runs R]
//               [--latency-seconds T] [--batch B] [--partitions P]
//               [--kafka NAME=VALUE]... (librdkafka properties of herald's
//               route, to measure a setting)
//
// throughput  a backlog of N events (200-byte JSON payloads, S streams) in
//             a SQLite store, relayed by herald's relay (batch B, default
//             10000, max_in_flight W, default 1024: both their largest
//             values) until the checkpoint passes the last one; beside it
//             what the relay added to the process's resident set at its
//             peak (VmHWM, reset just before, minus VmRSS then) and the
//             share of the time spent inside the sender's Send. Beside it
//             a plain program producing the same N records (same topic
//             layout, key, value and ce_ headers as herald's binary mode)
//             with the same producer settings (idempotent, acks=all,
//             murmur2_random, linger.ms=0, socket.nagle.disable=true),
//             waiting for every delivery report, once just before and once
//             just after herald. Ratio = herald / mean of the two. A third
//             plain run keeps at most W records unreported, as herald's
//             max_in_flight does: the ceiling of any sender held to it;
//             a fourth the same without the ce_ headers (content-type
//             only): what the CloudEvents binary headers cost.
// latency     1,000 events/s appended one per transaction for T seconds
//             with the relay running; commit (Append returned) to the
//             delivery report (the relay's Send returned it OK) p50/p99;
//             beside it the plain producer's produce-to-report at the same
//             rate, one record at a time.
// Each figure is the median of R runs.
//
// The mock's broker sockets keep Nagle's algorithm on (Kafka brokers set
// TCP_NODELAY); herald_test_kafka_mock turns it off, else every request
// answered behind another waits ~40 ms for a delayed ACK.
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
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
#include "kafka/kafka_test_util.h"

namespace herald {
namespace {

using namespace bench;  // NOLINT(google-build-using-namespace)
using std::chrono::milliseconds;

// A field of /proc/self/status in MiB ("VmRSS", "VmHWM").
double StatusMiB(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  std::string prefix = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) {
      return std::atof(line.c_str() + prefix.size()) / 1024.0;
    }
  }
  return 0;
}
// Sets the peak resident set (VmHWM) back to the current one; returns it.
double ResetPeakRss() {
  std::ofstream("/proc/self/clear_refs") << "5";
  return StatusMiB("VmRSS");
}

// ---- the plain program -----------------------------------------------------

struct PlainReports {
  int64_t ok = 0, failed = 0;
  Clock::time_point last;
};

void OnPlainReport(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  auto* r = static_cast<PlainReports*>(opaque);
  if (m->err) {
    ++r->failed;
  } else {
    ++r->ok;
  }
  r->last = Clock::now();
}

rd_kafka_t* PlainProducer(const std::string& brokers, PlainReports* reports) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"bootstrap.servers", brokers},
           {"enable.idempotence", "true"},
           {"acks", "all"},
           {"partitioner", "murmur2_random"},
           {"linger.ms", "0"},
           {"socket.nagle.disable", "true"},
           {"message.timeout.ms", "10000"}}) {
    rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof errstr);
  }
  rd_kafka_conf_set_opaque(conf, reports);
  rd_kafka_conf_set_dr_msg_cb(conf, &OnPlainReport);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) {
    std::fprintf(stderr, "plain producer: %s\n", errstr);
    std::exit(1);
  }
  return rk;
}

rd_kafka_resp_err_t ProducePlain(rd_kafka_t* rk, rd_kafka_topic_t* rkt,
                                 const Event& e, bool headers = true) {
  rd_kafka_headers_t* h = rd_kafka_headers_new(12);
  if (!headers) {
    rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
  }
  for (const auto& [k, v] :
       headers ? EncodeCloudEventHeaders(e, "herald", CloudEventBinding::kKafka)
               : MessageHeaders{}) {
    rd_kafka_header_add(h, k.data(), static_cast<ssize_t>(k.size()), v.data(),
                        static_cast<ssize_t>(v.size()));
  }
  rd_kafka_resp_err_t err = rd_kafka_producev(
      rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_VALUE(const_cast<char*>(e.payload.data()), e.payload.size()),
      RD_KAFKA_V_KEY(e.stream.data(), e.stream.size()),
      RD_KAFKA_V_TIMESTAMP(e.occurred_at_us / 1000), RD_KAFKA_V_HEADERS(h),
      RD_KAFKA_V_END);
  if (err) rd_kafka_headers_destroy(h);
  return err;
}

// Produces `events` asynchronously and waits for every report; records/s.
// `window` > 0: at most that many records without a report (herald's
// max_in_flight); 0: only librdkafka's own queue bounds them.
double PlainThroughput(const std::string& brokers,
                       const std::vector<Event>& events,
                       const std::string& topic, int window = 0,
                       bool headers = true) {
  PlainReports reports;
  rd_kafka_t* rk = PlainProducer(brokers, &reports);
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  // Connected and the producer id in place before the clock starts, as
  // herald's relay has after its first batch.
  {
    Event warm = events.front();
    warm.id = NewUuidV7();
    ProducePlain(rk, rkt, warm);
    rd_kafka_flush(rk, 10000);
    reports.ok = 0;
  }
  auto t0 = Clock::now();
  int64_t produced = 0;
  for (const Event& e : events) {
    while (window > 0 && produced - reports.ok - reports.failed >= window) {
      rd_kafka_poll(rk, 100);
    }
    while (ProducePlain(rk, rkt, e, headers) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk, 1);
    }
    ++produced;
    rd_kafka_poll(rk, 0);
  }
  rd_kafka_flush(rk, 60000);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  if (reports.failed > 0 || reports.ok != static_cast<int64_t>(events.size())) {
    std::fprintf(stderr, "plain: %lld delivered, %lld failed\n",
                 static_cast<long long>(reports.ok),
                 static_cast<long long>(reports.failed));
  }
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  return static_cast<double>(events.size()) / secs;
}

// One record at a time at `rate`/s for `n` records: produce-to-report ms.
std::vector<double> PlainLatency(const std::string& brokers,
                                 const std::string& topic, int n, int rate,
                                 int streams) {
  PlainReports reports;
  rd_kafka_t* rk = PlainProducer(brokers, &reports);
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  std::vector<double> out;
  auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    std::this_thread::sleep_until(
        start + std::chrono::microseconds(int64_t{1000000} * i / rate));
    Event e = MakeBenchEvent(i, streams);
    e.id = NewUuidV7();
    e.position = i + 1;
    e.occurred_at_us = NowMicros();
    int64_t before = reports.ok;
    auto t0 = Clock::now();
    if (ProducePlain(rk, rkt, e)) continue;
    while (reports.ok == before && reports.failed == 0 &&
           Clock::now() - t0 < std::chrono::seconds(10)) {
      rd_kafka_poll(rk, 10);
    }
    if (reports.ok > before && i > 0) {  // the first one connects
      out.push_back(
          std::chrono::duration<double, std::milli>(reports.last - t0).count());
    }
  }
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  return out;
}

// ---- herald ----------------------------------------------------------------

int g_batch = 10000;
// --kafka NAME=VALUE: librdkafka properties for herald's route (its kafka
// table), to measure a setting.
std::vector<std::pair<std::string, std::string>> g_kafka;

RouteConfig BenchRoute(const std::string& brokers, const std::string& name,
                       const std::string& topic, int window) {
  RouteConfig r;
  r.name = name;
  r.sender = "kafka://" + brokers;
  r.batch = g_batch;
  r.max_in_flight = window;
  r.options.route = name;
  r.options.fields.push_back({"topic", OptionValue::String(topic)});
  if (!g_kafka.empty()) {
    OptionValue table;
    table.kind = OptionValue::Kind::kTable;
    for (const auto& [k, v] : g_kafka) {
      table.fields.push_back({k, OptionValue::String(v)});
    }
    r.options.fields.push_back({"kafka", table});
  }
  Check(ValidateSenderOptions(&r), "route options");
  return r;
}

class SendTimer final : public Sender {
 public:
  explicit SendTimer(std::unique_ptr<Sender> inner)
      : inner_(std::move(inner)) {}
  void Send(std::span<const Event> events, std::span<SendResult> results,
            Clock::time_point deadline) override {
    auto t0 = Clock::now();
    inner_->Send(events, results, deadline);
    busy_ += Clock::now() - t0;
    ++calls_;
  }
  std::string_view kind() const override { return inner_->kind(); }
  double busy_seconds() const {
    return std::chrono::duration<double>(busy_).count();
  }
  int calls() const { return calls_; }

 private:
  std::unique_ptr<Sender> inner_;
  Clock::duration busy_{};
  int calls_ = 0;
};

struct HeraldRun {
  double rate = 0;
  double peak_rss_mib = 0;
  double send_share = 0;  // of the run's time, inside Send
  int calls = 0;
};

HeraldRun HeraldThroughput(const std::string& brokers, const std::string& db,
                           int n, int streams, int window,
                           const std::string& topic) {
  auto opened = OpenStore("sqlite:" + db);
  Check(opened.status(), "open store");
  std::unique_ptr<Store> store = std::move(*opened);
  FillBacklog(store.get(), n, streams);
  RouteConfig route = BenchRoute(brokers, "tp", topic, window);
  auto inner = MakeSender(route);
  Check(inner.status(), "sender");
  auto timer = std::make_unique<SendTimer>(std::move(*inner));
  SendTimer* timed = timer.get();
  Relay relay(store.get());
  Check(relay.AddRoute(route, std::move(timer)), "route");
  const double rss_before = ResetPeakRss();
  auto t0 = Clock::now();
  Check(relay.Start(), "start");
  WaitCheckpoint(store.get(), "tp", n);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  HeraldRun out;
  // What the relay added to the process at its peak (the benchmark's own
  // copy of the plain program's records is there before and after).
  out.peak_rss_mib = StatusMiB("VmHWM") - rss_before;
  relay.Stop();
  out.rate = n / secs;
  out.send_share = timed->busy_seconds() / secs;
  out.calls = timed->calls();
  return out;
}

int Main(int argc, char** argv) {
  int events = 1000000, window = 1024, streams = 10000, runs = 3, lat_secs = 10,
      partitions = 16, fixed_leaders = 0;
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
    else if (a == "--partitions")
      partitions = v;
    else if (a == "--fixed-leaders")
      fixed_leaders = v;
    else if (a == "--kafka" && std::strchr(argv[i + 1], '=') != nullptr) {
      std::string kv = argv[i + 1];
      g_kafka.emplace_back(kv.substr(0, kv.find('=')),
                           kv.substr(kv.find('=') + 1));
    } else {
      std::fprintf(stderr,
                   "usage: kafka_bench [--events N] [--window W] "
                   "[--streams S] [--runs R] [--latency-seconds T] "
                   "[--batch B] [--partitions P] [--kafka NAME=VALUE]...\n");
      return 2;
    }
  }
  std::vector<std::string> topics;
  for (int run = 0; run < runs; ++run) {
    std::string r = std::to_string(run);
    for (const char* t : {"plain-a", "plain-b", "plain-w", "plain-n", "herald",
                          "lat-h", "lat-p"}) {
      topics.push_back("bench." + r + "." + t + ":" +
                       std::to_string(partitions));
    }
  }
  testing::MockClusterProcess cluster(HERALD_TEST_KAFKA_MOCK, 3, topics,
                                      fixed_leaders != 0);
  if (!cluster.ok()) {
    std::fprintf(stderr, "the mock cluster did not start:\n%s\n",
                 cluster.err().c_str());
    return 1;
  }
  const std::string brokers = cluster.bootstraps();
  std::printf(
      "kafka_bench: %d events, %d streams, %d partitions, window %d, batch "
      "%d, %d runs, latency %d s at 1000/s\n",
      events, streams, partitions, window, g_batch, runs, lat_secs);
  std::vector<double> herald_tp, plain_tp, plain_window_tp, plain_bare_tp,
      ratios, rss;
  std::vector<double> h50, h99, p50, p99;
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
    std::string r = "bench." + std::to_string(run) + ".";
    double p1 = PlainThroughput(brokers, plain_events, r + "plain-a");
    HeraldRun h = HeraldThroughput(brokers, dir.file("tp.db"), events, streams,
                                   window, r + "herald");
    double p2 = PlainThroughput(brokers, plain_events, r + "plain-b");
    double pw = PlainThroughput(brokers, plain_events, r + "plain-w", window);
    plain_window_tp.push_back(pw);
    double pn =
        PlainThroughput(brokers, plain_events, r + "plain-n", window, false);
    plain_bare_tp.push_back(pn);
    plain_events.clear();
    plain_events.shrink_to_fit();
    double p = (p1 + p2) / 2;
    plain_tp.push_back(p);
    herald_tp.push_back(h.rate);
    ratios.push_back(h.rate / p);
    rss.push_back(h.peak_rss_mib);
    std::printf(
        "run %d: throughput herald %.0f/s (peak RSS +%.0f MiB; %d Send calls, "
        "%.0f%% of the time in Send), plain %.0f/s (%.0f before, %.0f after), "
        "ratio %.2f; plain with herald's window of %d: %.0f/s, ratio %.2f; "
        "the same without the ce_ headers: %.0f/s\n",
        run + 1, h.rate, h.peak_rss_mib, h.calls, 100 * h.send_share, p, p1, p2,
        h.rate / p, window, pw, h.rate / pw, pn);
    std::fflush(stdout);
    int n = 1000 * lat_secs;
    // The first second is left out: it connects and gets a producer id.
    CommitToAck lat = MeasureCommitToAck(
        dir.file("lat.db"), BenchRoute(brokers, "lat", r + "lat-h", window), n,
        1000, 50, /*skip=*/1000);
    auto hl = PercentilesOf(lat.to_ack_ms);
    auto ts = PercentilesOf(lat.to_send_ms);
    auto pl = PercentilesOf(PlainLatency(brokers, r + "lat-p", n, 1000, 50));
    h50.push_back(hl.p50);
    h99.push_back(hl.p99);
    p50.push_back(pl.p50);
    p99.push_back(pl.p99);
    std::printf(
        "run %d: commit-to-Send herald p50 %.3f ms p99 %.3f ms max %.1f ms\n",
        run + 1, ts.p50, ts.p99, ts.max);
    std::printf(
        "run %d: commit-to-report herald p50 %.3f ms p99 %.3f ms max %.1f ms "
        "(%zu over 5 ms); plain produce-to-report p50 %.3f ms p99 %.3f ms "
        "max %.1f ms (%zu over 5 ms)\n",
        run + 1, hl.p50, hl.p99, hl.max, hl.over_5ms, pl.p50, pl.p99, pl.max,
        pl.over_5ms);
    std::fflush(stdout);
  }
  std::printf("\nmedians of %d runs:\n", runs);
  std::printf(
      "  backlog throughput  herald %8.0f events/s (goal >= 200000; peak RSS "
      "+%.0f MiB)  plain %8.0f msgs/s  ratio %.2f; plain with window %d "
      "%8.0f msgs/s, without ce_ headers %8.0f msgs/s\n",
      Median(herald_tp), Median(rss), Median(plain_tp), Median(ratios), window,
      Median(plain_window_tp), Median(plain_bare_tp));
  std::printf(
      "  @1000/s             herald commit-to-report p50 %.3f ms p99 %.3f ms "
      "(goal p99 < 5 ms); plain p50 %.3f ms p99 %.3f ms\n",
      Median(h50), Median(h99), Median(p50), Median(p99));
  return 0;
}

}  // namespace
}  // namespace herald

int main(int argc, char** argv) { return herald::Main(argc, argv); }
