// SQS (and SNS) benchmark: herald's relay beside a plain libcurl client sending
// the same requests, in one run, printed as ratios by bench/ratio_reporter.h.
// It starts its servers itself on 127.0.0.1 in temporary directories: the
// project's conformance server (tests/support/aws_conformance.py, Python,
// every request's SigV4 signature verified by botocore) and, when the npm
// emulators are installed (tests/aws/npm_deps.sh DIR; --npm DIR), sqslite.
//
//   aws_bench [--events N] [--single-events N] [--streams S]
//             [--connections C] [--batch B] [--runs R] [--npm DIR]
//             [--only conformance|sqslite|ceiling] [benchmark flags]
//
// relay       a backlog of N events (200-byte JSON payloads over S streams,
//             default 20,000 over 100) in a SQLite store, drained by an
//             in-process Relay (batch B, default 1000) to an SQS queue
//             until the checkpoint passes the last event: FIFO and
//             standard queues, max_batch 10 and 1 (1: SendMessage, with
//             --single-events events, default 5,000), max_in_flight =
//             C x max_batch so that C requests (default 2) are in flight.
//             Against sqslite max_batch is 1 (its batch answers name
//             entries by the MD5 of their Id), FIFO and standard. And an
//             SNS FIFO topic on the conformance server (PublishBatch and
//             Publish).
// raw         the plain client: the same events (ids, positions, times),
//             the same request bodies (built before the clock starts by
//             herald's own AwsRequestBody, so the bytes are identical),
//             the same batch size, signed the same way (libcurl
//             CURLOPT_AWS_SIGV4), C keep-alive connections each with one
//             request in flight; it checks HTTP 200 and one MessageId per
//             entry.
// ceiling     what the conformance server answers on its own: SendMessage
//             to a standard queue from the plain client over 1, 2 and 4
//             connections (requests/s), and its CPU use.
// Each figure carries server_cpu and client_cpu: the server process's and
// this process's (herald's relay or the plain client) CPU seconds per wall
// second during the measurement (1.0 = one core busy).
//
// Figures: medians of R repetitions (default 3), randomly interleaved
// (--benchmark_enable_random_interleaving=true unless given), herald's
// median over the plain client's median (RatioReporter).
#include <curl/curl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "herald/config.h"
#include "herald/relay.h"
#include "herald/store.h"
#include "herald/time.h"
#include "herald/uuid.h"
#include "ratio_reporter.h"
#include "support/test_util.h"
#include "transport/aws/aws_query.h"
#include "transport/aws/aws_scheme.h"

namespace herald {
namespace {

using namespace bench;  // NOLINT(google-build-using-namespace)
using std::chrono::milliseconds;
using testing::Child;
using testing::TempDir;

constexpr char kKey[] = "AKIDHERALDTEST";
constexpr char kSecret[] = "herald/test/secret+key";

int g_events = 20000;
int g_single_events = 5000;
int g_streams = 100;
int g_connections = 2;
int g_batch = 1000;
int g_runs = 3;
std::string g_npm;
std::string g_only;
int g_serial = 0;  // makes each queue name new

void Die(const std::string& what) {
  std::fprintf(stderr, "aws_bench: %s\n", what.c_str());
  std::exit(1);
}
// CPU seconds (user + system) a process used so far.
double CpuSeconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(f, line);
  size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields;
  std::string field;
  for (char c : line.substr(close + 2)) {
    if (c == ' ') {
      fields.push_back(field);
      field.clear();
    } else {
      field += c;
    }
  }
  // Fields after the name start at 3 (state): utime is 14, stime 15.
  if (fields.size() < 13) return 0;
  double ticks = std::stod(fields[11]) + std::stod(fields[12]);
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// ---- plain HTTP (control requests, queue creation) ----------------------

size_t Append(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

// One POST; the HTTP status (0 when it failed) and the body.
long Post(const std::string& url, const std::string& body, std::string* out) {
  CURL* c = curl_easy_init();
  out->clear();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  long status = 0;
  if (curl_easy_perform(c) == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  }
  curl_easy_cleanup(c);
  return status;
}

// ---- servers ----------------------------------------------------------

class Server {
 public:
  virtual ~Server() = default;
  virtual std::string endpoint() const = 0;
  virtual pid_t pid() const = 0;
  // A new, empty queue ("name" or "name.fifo"): its URL.
  virtual std::string NewQueue(const std::string& name) = 0;
  // A topic: its ARN (the conformance server only).
  static std::string TopicArn(const std::string& name) {
    return "arn:aws:sns:us-east-1:123456789012:" + name;
  }
  // Drops what earlier measurements stored.
  virtual void Forget() {}
  // How many messages the queue holds.
  virtual int64_t Stored(const std::string& url) = 0;
};

// Occurrences of `what` in `s`.
int64_t Count(const std::string& s, const std::string& what) {
  int64_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos;
       at = s.find(what, at + 1)) {
    ++n;
  }
  return n;
}

// `s` with every byte but A-Z a-z 0-9 percent-encoded.
std::string Encoded(const std::string& s) {
  std::string out;
  detail::AppendFormEncoded(s, &out);
  return out;
}

class Conformance final : public Server {
 public:
  Conformance() {
    std::string ready = dir_.file("ready");
    Child::Options o;
    o.stderr_path = dir_.file("server.err");
    child_ = std::make_unique<Child>(
        std::vector<std::string>{"/usr/bin/python3",
                                 std::string(HERALD_SOURCE_DIR) +
                                     "/tests/support/aws_conformance.py",
                                 "--ready", ready, "--access-key", kKey,
                                 "--secret-key", kSecret},
        o);
    if (!testing::WaitFor([&] { return std::ifstream(ready).good(); },
                          std::chrono::seconds(30))) {
      Die("the conformance server did not start: " +
          testing::ReadTextFile(dir_.file("server.err")));
    }
    std::ifstream(ready) >> port_;
  }
  std::string endpoint() const override {
    return "http://127.0.0.1:" + std::to_string(port_) + "/";
  }
  pid_t pid() const override { return child_->pid(); }
  std::string NewQueue(const std::string& name) override {
    return "http://127.0.0.1:" + std::to_string(port_) + "/123456789012/" +
           name;
  }
  void Forget() override {
    std::string out;
    if (Post(endpoint() + "_control/reset", "", &out) != 200) {
      Die("conformance reset: " + out);
    }
  }
  int64_t Stored(const std::string& url) override {
    std::string out;
    CURL* c = curl_easy_init();
    std::string get = endpoint() + "_control/messages?target=" + Encoded(url);
    curl_easy_setopt(c, CURLOPT_URL, get.c_str());
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Append);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    curl_easy_perform(c);
    curl_easy_cleanup(c);
    return Count(out, "\"message_id\"");
  }

 private:
  TempDir dir_;
  std::unique_ptr<Child> child_;
  int port_ = 0;
};

// sqslite (npm): queues are created with CreateQueue; URLs name localhost.
class Sqslite final : public Server {
 public:
  explicit Sqslite(const std::string& npm) {
    port_ = testing::FreePort();
    Child::Options o;
    o.stdout_path = dir_.file("sqslite.out");
    o.stderr_path = dir_.file("sqslite.err");
    child_ = std::make_unique<Child>(
        std::vector<std::string>{
            "node", npm + "/node_modules/sqslite/bin/cli.js", "--host",
            "localhost", "--port", std::to_string(port_)},
        o);
    std::string out;
    if (!testing::WaitFor(
            [&] {
              return Post(endpoint(), "Action=ListQueues&Version=2012-11-05",
                          &out) == 200;
            },
            std::chrono::seconds(30))) {
      Die("sqslite did not start: " +
          testing::ReadTextFile(dir_.file("sqslite.err")));
    }
  }
  std::string endpoint() const override {
    return "http://localhost:" + std::to_string(port_) + "/";
  }
  pid_t pid() const override { return child_->pid(); }
  std::string NewQueue(const std::string& name) override {
    std::string body =
        "Action=CreateQueue&Version=2012-11-05&QueueName=" + name;
    if (name.ends_with(".fifo")) {
      body += "&Attribute.1.Name=FifoQueue&Attribute.1.Value=true";
    }
    std::string out;
    long status = Post(endpoint(), body, &out);
    auto doc = detail::ParseXml(out);
    const detail::XmlElement* result =
        doc.ok() ? doc->Child("CreateQueueResult") : nullptr;
    if (status != 200 || !result) Die("sqslite CreateQueue: " + out);
    std::string url = result->ChildText("QueueUrl");
    if (!old_.empty()) {  // the previous measurement's queue
      Post(endpoint(),
           "Action=DeleteQueue&Version=2012-11-05&QueueUrl=" + Encoded(old_),
           &out);
    }
    old_ = url;
    return url;
  }
  int64_t Stored(const std::string& url) override {
    std::string out;
    Post(endpoint(),
         "Action=GetQueueAttributes&Version=2012-11-05&QueueUrl=" +
             Encoded(url) + "&AttributeName.1=ApproximateNumberOfMessages",
         &out);
    auto doc = detail::ParseXml(out);
    const detail::XmlElement* r =
        doc.ok() ? doc->Child("GetQueueAttributesResult") : nullptr;
    if (!r) return -1;
    for (const auto& a : r->children) {
      if (a.ChildText("Name") == "ApproximateNumberOfMessages") {
        return std::atoll(a.ChildText("Value").c_str());
      }
    }
    return -1;
  }

 private:
  TempDir dir_;
  std::unique_ptr<Child> child_;
  int port_ = 0;
  std::string old_;
};

std::unique_ptr<Server> g_conformance, g_sqslite;

// ---- one measurement --------------------------------------------------

// The route (as herald.toml would say it) of a measurement.
RouteConfig BenchRoute(const std::string& target, const Server& server,
                       int max_batch) {
  std::string toml =
      "[[route]]\nname = \"tp\"\nsender = \"" + target + "\"\nendpoint = \"" +
      server.endpoint() +
      "\"\nregion = \"us-east-1\"\nmax_batch = " + std::to_string(max_batch) +
      "\nbatch = " + std::to_string(g_batch) +
      "\nmax_in_flight = " + std::to_string(g_connections * max_batch) + "\n";
  auto c = ParseConfig(toml, "bench.toml");
  Check(c.status(), "route config");
  return c->routes[0];
}

struct Figure {
  double seconds = 0;
  double server_cpu = 0;  // CPU seconds of the server
  double client_cpu = 0;  // CPU seconds of this process
};

// herald: a Relay drains a SQLite backlog of n events.
// The sender URL of a new queue or topic ("sns:NAME" for a topic).
std::string NewTarget(Server& server, const std::string& name) {
  if (name.starts_with("sns:"))
    return "sns:" + Server::TopicArn(name.substr(4));
  return "sqs:" + server.NewQueue(name);
}

Figure Herald(Server& server, const std::string& queue, int max_batch, int n) {
  TempDir dir;
  auto opened = OpenStore("sqlite:" + dir.file("bench.db"));
  Check(opened.status(), "open store");
  std::unique_ptr<Store> store = std::move(*opened);
  for (int i = 0; i < n; i += 1000) {
    std::vector<Event> batch;
    for (int k = i; k < std::min(n, i + 1000); ++k) {
      batch.push_back(MakeBenchEvent(k, g_streams));
    }
    Check(store->Append(std::span<Event>(batch)).status(), "append");
  }
  std::string url = NewTarget(server, queue);
  Relay relay(store.get());
  Check(relay.AddRoute(BenchRoute(url, server, max_batch)), "route");
  double cpu0 = CpuSeconds(server.pid());
  double own0 = ProcessCpuSeconds();
  auto t0 = Clock::now();
  Check(relay.Start(), "start");
  auto deadline = t0 + std::chrono::minutes(10);
  for (;;) {
    auto cp = store->GetCheckpoint(Relay::CheckpointName("tp"));
    if (cp.ok() && *cp > n) break;
    if (Clock::now() > deadline) Die("the relay did not finish in 10 minutes");
    std::this_thread::sleep_for(milliseconds(1));
  }
  Figure f;
  f.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  f.server_cpu = CpuSeconds(server.pid()) - cpu0;
  f.client_cpu = ProcessCpuSeconds() - own0;
  relay.Stop();
  int64_t stored = server.Stored(url.substr(4));
  if (stored != n) {
    Die("herald: the queue or topic holds " + std::to_string(stored) +
        " messages, not " + std::to_string(n));
  }
  return f;
}

// The plain client: C connections, each with one request in flight.
struct PlainConn {
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string answer;
  size_t request = 0;  // index of the request it carries
};

Figure Plain(Server& server, const std::string& queue, int max_batch, int n,
             int connections) {
  std::string url = NewTarget(server, queue);
  RouteConfig route = BenchRoute(url, server, max_batch);
  detail::AwsOptions o;
  Check(detail::ParseAwsOptions(route, &o), "options");
  // The events as the store would give them, and their request bodies.
  std::vector<detail::AwsMessage> messages(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    Event e = MakeBenchEvent(i, g_streams);
    e.id = NewUuidV7();
    e.position = i + 1;
    e.occurred_at_us = NowMicros();
    Check(detail::MakeAwsMessage(e, o, &messages[static_cast<size_t>(i)]),
          "message");
  }
  std::vector<std::string> bodies;
  std::vector<size_t> entries;
  for (size_t i = 0; i < messages.size(); i += static_cast<size_t>(max_batch)) {
    std::vector<const detail::AwsMessage*> take;
    for (size_t k = i;
         k < std::min(messages.size(), i + static_cast<size_t>(max_batch));
         ++k) {
      take.push_back(&messages[k]);
    }
    bodies.push_back(detail::AwsRequestBody(o, take, max_batch > 1));
    entries.push_back(take.size());
  }
  std::string sigv4 = "aws:amz:us-east-1:" + std::string(o.service_name());
  CURLM* multi = curl_multi_init();
  std::vector<PlainConn> conns(static_cast<size_t>(connections));
  for (auto& c : conns) {
    c.easy = curl_easy_init();
    c.headers = curl_slist_append(
        nullptr,
        "Content-Type: application/x-www-form-urlencoded; charset=utf-8");
    curl_easy_setopt(c.easy, CURLOPT_URL, server.endpoint().c_str());
    curl_easy_setopt(c.easy, CURLOPT_POST, 1L);
    curl_easy_setopt(c.easy, CURLOPT_HTTPHEADER, c.headers);
    curl_easy_setopt(c.easy, CURLOPT_AWS_SIGV4, sigv4.c_str());
    curl_easy_setopt(c.easy, CURLOPT_USERNAME, kKey);
    curl_easy_setopt(c.easy, CURLOPT_PASSWORD, kSecret);
    curl_easy_setopt(c.easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c.easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c.easy, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c.easy, CURLOPT_WRITEFUNCTION, Append);
    curl_easy_setopt(c.easy, CURLOPT_WRITEDATA, &c.answer);
  }
  size_t next = 0, failed = 0;
  auto start = [&](PlainConn& c) {
    c.request = next++;
    c.answer.clear();
    const std::string& b = bodies[c.request];
    curl_easy_setopt(c.easy, CURLOPT_POSTFIELDS, b.data());
    curl_easy_setopt(c.easy, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(b.size()));
    curl_multi_add_handle(multi, c.easy);
  };
  double cpu0 = CpuSeconds(server.pid());
  double own0 = ProcessCpuSeconds();
  auto t0 = Clock::now();
  size_t running = 0;
  for (auto& c : conns) {
    if (next < bodies.size()) {
      start(c);
      ++running;
    }
  }
  while (running > 0) {
    int still = 0;
    curl_multi_perform(multi, &still);
    int left = 0;
    bool done = false;
    while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      done = true;
      PlainConn* c = nullptr;
      for (auto& k : conns) {
        if (k.easy == m->easy_handle) c = &k;
      }
      long status = 0;
      curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
      size_t ids = 0;
      for (size_t at = c->answer.find("<MessageId>"); at != std::string::npos;
           at = c->answer.find("<MessageId>", at + 1)) {
        ++ids;
      }
      if (m->data.result != CURLE_OK || status != 200 ||
          ids != entries[c->request]) {
        if (failed++ == 0) {
          std::fprintf(stderr, "plain: HTTP %ld: %s\n", status,
                       c->answer.substr(0, 300).c_str());
        }
      }
      curl_multi_remove_handle(multi, c->easy);
      if (next < bodies.size()) {
        start(*c);
      } else {
        --running;
      }
    }
    if (!done) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  Figure f;
  f.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  f.server_cpu = CpuSeconds(server.pid()) - cpu0;
  f.client_cpu = ProcessCpuSeconds() - own0;
  for (auto& c : conns) {
    curl_easy_cleanup(c.easy);
    curl_slist_free_all(c.headers);
  }
  curl_multi_cleanup(multi);
  if (failed > 0) Die(std::to_string(failed) + " plain requests failed");
  int64_t stored = server.Stored(url.substr(4));
  if (stored != n) {
    Die("plain: the queue or topic holds " + std::to_string(stored) +
        " messages, not " + std::to_string(n));
  }
  return f;
}

// ---- registration -----------------------------------------------------

void Report(::benchmark::State& state, const Figure& f, int n) {
  state.SetIterationTime(f.seconds);
  state.SetItemsProcessed(n);
  state.counters["server_cpu"] = f.server_cpu / f.seconds;
  state.counters["client_cpu"] = f.client_cpu / f.seconds;
}

void Register(const std::string& group, Server** server, bool fifo,
              int max_batch, bool sns = false) {
  int n = max_batch == 1 ? g_single_events : g_events;
  auto name = [fifo, sns](const char* who) {
    return std::string(sns ? "sns:" : "") + "bench-" + who + "-" +
           std::to_string(++g_serial) + (fifo ? ".fifo" : "");
  };
  auto setup = [](::benchmark::internal::Benchmark* b) {
    b->Iterations(1)->Repetitions(g_runs)->UseManualTime()->Unit(
        ::benchmark::kMillisecond);
  };
  setup(::benchmark::RegisterBenchmark(
      (group + "/herald").c_str(), [=](::benchmark::State& state) {
        for (auto _ : state) {
          (*server)->Forget();
          Report(state, Herald(**server, name("herald"), max_batch, n), n);
        }
      }));
  setup(::benchmark::RegisterBenchmark(
      (group + "/raw").c_str(), [=](::benchmark::State& state) {
        for (auto _ : state) {
          (*server)->Forget();
          Report(state,
                 Plain(**server, name("plain"), max_batch, n, g_connections),
                 n);
        }
      }));
}

Server* g_conformance_ptr = nullptr;
Server* g_sqslite_ptr = nullptr;

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
    std::string v = argv[++i];
    if (a == "--events") {
      g_events = std::atoi(v.c_str());
    } else if (a == "--single-events") {
      g_single_events = std::atoi(v.c_str());
    } else if (a == "--streams") {
      g_streams = std::atoi(v.c_str());
    } else if (a == "--connections") {
      g_connections = std::atoi(v.c_str());
    } else if (a == "--batch") {
      g_batch = std::atoi(v.c_str());
    } else if (a == "--runs") {
      g_runs = std::atoi(v.c_str());
    } else if (a == "--npm") {
      g_npm = v;
    } else if (a == "--only") {
      g_only = v;
    } else {
      std::fprintf(stderr,
                   "usage: aws_bench [--events N] [--single-events N] "
                   "[--streams S] [--connections C] [--batch B] [--runs R] "
                   "[--npm DIR] [--only conformance|sqslite|ceiling] "
                   "[--benchmark_...]\n");
      return 2;
    }
  }
  static char interleave[] = "--benchmark_enable_random_interleaving=true";
  if (!interleave_given) args.push_back(interleave);
  int bargc = static_cast<int>(args.size());
  ::benchmark::Initialize(&bargc, args.data());

  curl_global_init(CURL_GLOBAL_DEFAULT);
  ::setenv("AWS_ACCESS_KEY_ID", kKey, 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", kSecret, 1);
  ::unsetenv("AWS_SESSION_TOKEN");
  ::unsetenv("AWS_PROFILE");

  bool all = g_only.empty();
  if (all || g_only == "conformance" || g_only == "ceiling") {
    g_conformance = std::make_unique<Conformance>();
    g_conformance_ptr = g_conformance.get();
  }
  if (all || g_only == "sqslite") {
    if (g_npm.empty()) {
      if (g_only == "sqslite") Die("--only sqslite needs --npm DIR");
      std::fprintf(stderr,
                   "aws_bench: no --npm DIR (tests/aws/npm_deps.sh DIR "
                   "installs sqslite): sqslite left out\n");
    } else {
      g_sqslite = std::make_unique<Sqslite>(g_npm);
      g_sqslite_ptr = g_sqslite.get();
    }
  }
  std::printf(
      "aws_bench: %d events (%d with max_batch 1) over %d streams, relay "
      "batch %d, %d requests in flight, %d repetitions\n",
      g_events, g_single_events, g_streams, g_batch, g_connections, g_runs);
  if (g_conformance_ptr && g_only != "ceiling") {
    Register("conformance/sqs_fifo_batch10", &g_conformance_ptr, true, 10);
    Register("conformance/sqs_standard_batch10", &g_conformance_ptr, false, 10);
    Register("conformance/sqs_fifo_single", &g_conformance_ptr, true, 1);
    Register("conformance/sqs_standard_single", &g_conformance_ptr, false, 1);
    Register("conformance/sns_fifo_batch10", &g_conformance_ptr, true, 10,
             true);
    Register("conformance/sns_fifo_single", &g_conformance_ptr, true, 1, true);
  }
  if (g_sqslite_ptr) {
    Register("sqslite/sqs_fifo_single", &g_sqslite_ptr, true, 1);
    Register("sqslite/sqs_standard_single", &g_sqslite_ptr, false, 1);
  }
  if (g_conformance_ptr && (all || g_only == "ceiling")) {
    // The server alone: requests/s (items = requests) over 1..4 connections.
    for (int conns : {1, 2, 4}) {
      int n = g_single_events;
      ::benchmark::RegisterBenchmark(
          ("conformance_ceiling/SendMessage_connections:" +
           std::to_string(conns))
              .c_str(),
          [=](::benchmark::State& state) {
            for (auto _ : state) {
              g_conformance_ptr->Forget();
              Report(
                  state,
                  Plain(*g_conformance_ptr,
                        "ceiling-" + std::to_string(++g_serial), 1, n, conns),
                  n);
            }
          })
          ->Iterations(1)
          ->Repetitions(g_runs)
          ->UseManualTime()
          ->Unit(::benchmark::kMillisecond);
    }
  }
  bench::RatioReporter reporter;
  ::benchmark::RunSpecifiedBenchmarks(&reporter);
  ::benchmark::Shutdown();
  g_sqslite.reset();
  g_conformance.reset();
  return 0;
}

}  // namespace
}  // namespace herald

int main(int argc, char** argv) { return herald::Main(argc, argv); }
