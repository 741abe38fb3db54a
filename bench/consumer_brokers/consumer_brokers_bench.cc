// Broker consumer-source benchmark: events handled per second by
// herald::Consumer from each broker source with the inbox on SQLite (and
// PostgreSQL), beside the same consumer with no inbox, in one run.
//
//   consumer_brokers_bench [--events N] [--streams S] [--runs R]
//                          [--in-flight W]
//                          [--brokers nats,kafka,rabbitmq,sqs]
//                          [--inboxes sqlite,postgresql]
//
// Brokers: NATS JetStream (a nats-server -js started here), Kafka
// (librdkafka's mock cluster in this process; no Kafka broker runs here),
// RabbitMQ (the server of tests/support/with-rabbitmq.sh, when
// HERALD_TEST_AMQP_URL is set), SQS (the conformance server
// tests/support/aws_conformance.py started here: a FIFO queue, every
// request's signature verified; AWS cannot run here). Inboxes: SQLite, and
// PostgreSQL when HERALD_TEST_PG_URL is set (tests/support/with-postgres.sh).
// Per run a fresh stream / topic / queue is filled with N events (200-byte
// JSON payloads over S streams) by herald's own sender, untimed; then a
// consumer handles all N:
//   herald   the inbox in the database: per event BEGIN, the inbox row, the
//            handler's one domain row (INSERT), COMMIT, then the ack;
//   raw      the same consumer and source with no inbox: per event the
//            handler's own BEGIN, the same INSERT, COMMIT in the same kind
//            of database.
// Raw runs just before and just after herald; ratio = herald / their mean.
// Each figure is the median of R runs.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#if HERALD_BENCH_WITH_AWS
#include "aws/aws_test_util.h"
#endif
#include "bench_util.h"
#include "consumer_util.h"
#include "herald/consumer.h"
#include "herald/sender.h"
#include "herald/store.h"
#include "herald/uuid.h"
#include "kafka/kafka_test_util.h"
#include "nats/nats_test_util.h"
#include "rabbitmq/amqp_client.h"
#include "support/consumer_e2e.h"
#include "support/test_util.h"

namespace herald::bench {
namespace {

using testing::StringOption;

struct Setup {
  int events = 20000;
  int streams = 20;
  int runs = 3;
  int in_flight = 16;
  std::vector<std::string> inboxes;  // "sqlite", "postgresql"
};

// The events of one run (ids and positions as a store would give them).
std::vector<Event> MakeEvents(const Setup& s) {
  std::vector<Event> out;
  static int64_t position = 0;
  for (int i = 0; i < s.events; ++i) {
    Event e = MakeBenchEvent(i, s.streams);
    e.id = NewUuidV7();
    e.position = ++position;
    e.occurred_at_us = 1700000000000000 + i;
    out.push_back(std::move(e));
  }
  return out;
}

// Publishes every event through herald's sender of `route`.
void Publish(RouteConfig route, const std::vector<Event>& events) {
  route.name = "p";
  route.max_in_flight = 200;
  Check(ValidateSenderOptions(&route), "sender options");
  auto sender = MakeSender(route);
  Check(sender.status(), "sender");
  size_t done = 0;
  for (int round = 0; done < events.size() && round < 1000; ++round) {
    size_t n = std::min<size_t>(2000, events.size() - done);
    std::vector<SendResult> results(n);
    (*sender)->Send(std::span<const Event>(events).subspan(done, n), results,
                    Clock::now() + std::chrono::seconds(30));
    size_t ok = 0;
    while (ok < n && results[ok].status.ok() && results[ok].attempted) ++ok;
    done += ok;
  }
  if (done < events.size()) Check(Status::Unavailable("publish"), "publish");
}

// One consumer run over `so`'s filled destination, the database on
// `backend` ("sqlite" or "postgresql"): events per second.
double RunOnce(const Setup& s, ConsumerSourceOptions so,
               const std::string& backend, bool inbox,
               const testing::TempDir& dir) {
  static int n = 0;
  bool sqlite = backend == "sqlite";
  auto store = OpenStore(
      sqlite ? "sqlite:" + dir.file("db" + std::to_string(++n) + ".db")
             : testing::FreshStoreUrl("postgresql", dir));
  Check(store.status(), "open database");
  CreateDomainTable(store->get());
  ConsumerOptions o;
  o.name = so.consumer;
  o.max_in_flight = s.in_flight;
  o.max_in_hand = 1024;
  o.on_log = [](const std::string&) {};
  return s.events / TimeConsumerRun(o, so, store->get(), inbox,
                                    static_cast<uint64_t>(s.events));
}

// A broker: fills a fresh destination and returns the source options.
struct Broker {
  std::string name;
  std::function<ConsumerSourceOptions(int run, const std::vector<Event>&)> fill;
};

void Measure(const Setup& s, const Broker& b, const testing::TempDir& dir) {
  static int fills = 0;
  for (const std::string& backend : s.inboxes) {
    std::vector<double> herald, raw;
    for (int r = 0; r < s.runs; ++r) {
      auto events = MakeEvents(s);
      double before = RunOnce(s, b.fill(fills++, events), backend, false, dir);
      double with = RunOnce(s, b.fill(fills++, events), backend, true, dir);
      double after = RunOnce(s, b.fill(fills++, events), backend, false, dir);
      herald.push_back(with);
      raw.push_back((before + after) / 2);
      std::fprintf(stderr, "%s/%s run %d: herald %.0f/s, raw %.0f/s, %.0f/s\n",
                   b.name.c_str(), backend.c_str(), r + 1, with, before, after);
    }
    double h = Median(herald), w = Median(raw);
    std::printf("%-10s %-10s %12.0f %12.0f %7.2f\n", b.name.c_str(),
                backend.c_str(), h, w, h / w);
    std::fflush(stdout);
  }
}

}  // namespace
}  // namespace herald::bench

int main(int argc, char** argv) {
  using namespace herald;
  using namespace herald::bench;
  Setup s;
  std::string brokers = "nats,kafka,rabbitmq,sqs";
  std::string inboxes =
      std::getenv("HERALD_TEST_PG_URL") ? "sqlite,postgresql" : "sqlite";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--events") s.events = std::atoi(argv[i + 1]);
    if (k == "--streams") s.streams = std::atoi(argv[i + 1]);
    if (k == "--runs") s.runs = std::atoi(argv[i + 1]);
    if (k == "--in-flight") s.in_flight = std::atoi(argv[i + 1]);
    if (k == "--brokers") brokers = argv[i + 1];
    if (k == "--inboxes") inboxes = argv[i + 1];
  }
  for (const char* b : {"sqlite", "postgresql"}) {
    if (inboxes.find(b) != std::string::npos) s.inboxes.push_back(b);
  }
  herald::testing::TempDir dir;
  std::printf("events %d over %d streams, %d runs, max_in_flight %d\n",
              s.events, s.streams, s.runs, s.in_flight);
  std::printf("%-10s %-10s %12s %12s %7s\n", "source", "database",
              "inbox (ev/s)", "no inbox", "ratio");
  if (brokers.find("nats") != std::string::npos) {
    herald::testing::NatsServer server;
    if (!server.ready()) Check(Status::Unavailable(server.log()), "nats");
    herald::testing::JetStreamAdmin admin(server.url());
    Broker b{"nats", [&](int run, const std::vector<Event>& events) {
               std::string n = std::to_string(run);
               std::string err = admin.AddStream("B" + n, {"bench" + n + ".>"});
               if (!err.empty()) Check(Status::Unavailable(err), "stream");
               Publish(
                   herald::testing::SenderRoute(
                       server.url(),
                       {StringOption("subject", "bench" + n + ".{stream}")}),
                   events);
               auto so = herald::testing::BrokerSourceOptions(
                   server.url(), {StringOption("stream", "B" + n)});
               so.consumer = "bench" + n;  // a durable of its own
               return so;
             }};
    Measure(s, b, dir);
  }
  if (brokers.find("kafka") != std::string::npos) {
    herald::testing::MockCluster cluster(1);
    Broker b{"kafka", [&](int run, const std::vector<Event>& events) {
               std::string topic = "bench" + std::to_string(run);
               cluster.CreateTopic(topic, 4);
               std::string url = "kafka://" + cluster.bootstraps();
               Publish(herald::testing::SenderRoute(
                           url, {StringOption("topic", topic)}),
                       events);
               auto so = herald::testing::BrokerSourceOptions(
                   url, {StringOption("topic", topic)});
               so.consumer = topic;  // a group of its own
               return so;
             }};
    Measure(s, b, dir);
  }
  if (brokers.find("rabbitmq") != std::string::npos &&
      !herald::testing::AmqpUrl().empty()) {
    herald::testing::AmqpClient admin;
    Broker b{
        "rabbitmq", [&](int run, const std::vector<Event>& events) {
          std::string q =
              "bench." + std::to_string(::getpid()) + "." + std::to_string(run);
          admin.Exchange(q, "fanout");
          admin.Queue(q);
          admin.Bind(q, q, "");
          Publish(herald::testing::SenderRoute(herald::testing::AmqpUrl(),
                                               {StringOption("exchange", q)}),
                  events);
          auto so = herald::testing::BrokerSourceOptions(
              herald::testing::AmqpUrl(), {StringOption("queue", q)});
          so.consumer = "bench";
          return so;
        }};
    Measure(s, b, dir);
  }
#if HERALD_BENCH_WITH_AWS
  if (brokers.find("sqs") != std::string::npos) {
    herald::testing::ScopedAwsEnv env;
    herald::testing::AwsConformanceServer server;
    if (!server.ready()) Check(Status::Unavailable(server.log()), "sqs");
    Broker b{"sqs", [&](int run, const std::vector<Event>& events) {
               std::string q =
                   server.QueueUrl("bench" + std::to_string(run) + ".fifo");
               herald::testing::HttpClient c;
               auto r =
                   c.Post(server.endpoint() + "_control/queue",
                          "{\"url\":\"" + q +
                              "\",\"attributes\":{\"FifoQueue\":\"true\"}}");
               if (r.status != 200) Check(Status::Unavailable(r.body), "queue");
               Publish(herald::testing::SenderRoute(
                           "sqs:" + q, {StringOption("region", "us-east-1")}),
                       events);
               auto so = herald::testing::BrokerSourceOptions(
                   "sqs:" + q, {StringOption("region", "us-east-1")});
               so.consumer = "bench";
               return so;
             }};
    Measure(s, b, dir);
  }
#endif
  return 0;
}
