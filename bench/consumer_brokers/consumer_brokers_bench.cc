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
#include <libpq-fe.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#if HERALD_BENCH_WITH_AWS
#include "aws/aws_test_util.h"
#endif
#include "herald/consumer.h"
#include "herald/postgres.h"
#include "herald/sender.h"
#include "herald/sqlite.h"
#include "herald/store.h"
#include "herald/uuid.h"
#include "kafka/kafka_test_util.h"
#include "nats/nats_test_util.h"
#include "rabbitmq/amqp_client.h"
#include "support/test_util.h"

namespace herald {
namespace {

using Clock = std::chrono::steady_clock;

void Check(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "consumer_brokers_bench: %s: %s\n", what,
                 s.ToString().c_str());
    std::exit(1);
  }
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

OptionField Field(const std::string& key, const std::string& value) {
  OptionField f;
  f.key = key;
  f.value.string = value;
  return f;
}

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
    Event e;
    e.id = NewUuidV7();
    e.position = ++position;
    e.stream = "order-" + std::to_string(i % s.streams);
    e.type = "order.placed";
    e.occurred_at_us = 1700000000000000 + i;
    e.payload = "{\"i\":" + std::to_string(100000000 + i) + ",\"p\":\"" +
                std::string(178, 'x') + "\"}";
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

const char* kDomain =
    "CREATE TABLE IF NOT EXISTS domain_rows (event_id TEXT PRIMARY KEY, "
    "stream TEXT NOT NULL, position BIGINT NOT NULL)";

Status Insert(Transaction& tx, bool sqlite, const Event& e) {
  if (!sqlite) {
    std::string pos = std::to_string(e.position);
    const char* v[] = {e.id.c_str(), e.stream.c_str(), pos.c_str()};
    PGresult* r = PQexecParams(PostgresHandle(tx),
                               "INSERT INTO domain_rows VALUES ($1, $2, "
                               "$3::bigint)",
                               3, nullptr, v, nullptr, nullptr, 0);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? Status::OK() : Status::Unavailable("insert");
  }
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(SqliteHandle(tx),
                     "INSERT INTO domain_rows VALUES (?1, ?2, ?3)", -1, &st,
                     nullptr);
  sqlite3_bind_text(st, 1, e.id.c_str(), -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, e.stream.c_str(), -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, e.position);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? Status::OK() : Status::Unavailable("insert");
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
  {
    auto tx = (*store)->Begin();
    Check(tx.status(), "begin");
    if (sqlite) {
      sqlite3_exec(SqliteHandle(**tx), kDomain, nullptr, nullptr, nullptr);
    } else {
      PQclear(PQexec(PostgresHandle(**tx), kDomain));
    }
    Check((*tx)->Commit(), "commit");
  }
  ConsumerOptions o;
  o.name = so.consumer;
  o.inbox = inbox ? store->get() : nullptr;
  o.max_in_flight = s.in_flight;
  o.max_in_hand = 1024;
  o.on_log = [](const std::string&) {};
  so.state = inbox ? store->get() : nullptr;
  so.max_in_hand = o.max_in_hand;
  auto source = MakeConsumerSource(so);
  Check(source.status(), "source");
  Consumer consumer(o, std::move(*source));
  Store* db = store->get();
  consumer.SetHandler([db, sqlite](const Event& e, Transaction* tx) -> Status {
    if (tx) return Insert(*tx, sqlite, e);
    auto own = db->Begin();
    if (!own.ok()) return own.status();
    HERALD_RETURN_IF_ERROR(Insert(**own, sqlite, e));
    return (*own)->Commit();
  });
  auto t0 = Clock::now();
  Check(consumer.Start(), "start");
  while (consumer.stats().handled < static_cast<uint64_t>(s.events)) {
    if (consumer.failed()) Check(consumer.error(), "consumer");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  consumer.Stop();
  return s.events / secs;
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
}  // namespace herald

int main(int argc, char** argv) {
  using namespace herald;
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
               RouteConfig route;
               route.sender = server.url();
               route.options.fields.push_back(
                   Field("subject", "bench" + n + ".{stream}"));
               Publish(route, events);
               ConsumerSourceOptions so;
               so.consumer = "bench" + n;
               so.url = server.url();
               so.options.table = "consumer";
               so.options.fields.push_back(Field("stream", "B" + n));
               return so;
             }};
    Measure(s, b, dir);
  }
  if (brokers.find("kafka") != std::string::npos) {
    herald::testing::MockCluster cluster(1);
    Broker b{"kafka", [&](int run, const std::vector<Event>& events) {
               std::string topic = "bench" + std::to_string(run);
               cluster.CreateTopic(topic, 4);
               RouteConfig route;
               route.sender = "kafka://" + cluster.bootstraps();
               route.options.fields.push_back(Field("topic", topic));
               Publish(route, events);
               ConsumerSourceOptions so;
               so.consumer = "bench" + std::to_string(run);
               so.url = route.sender;
               so.options.table = "consumer";
               so.options.fields.push_back(Field("topic", topic));
               return so;
             }};
    Measure(s, b, dir);
  }
  if (brokers.find("rabbitmq") != std::string::npos &&
      !herald::testing::AmqpUrl().empty()) {
    herald::testing::AmqpClient admin;
    Broker b{"rabbitmq", [&](int run, const std::vector<Event>& events) {
               std::string q = "bench." + std::to_string(::getpid()) + "." +
                               std::to_string(run);
               admin.Exchange(q, "fanout");
               admin.Queue(q);
               admin.Bind(q, q, "");
               RouteConfig route;
               route.sender = herald::testing::AmqpUrl();
               route.options.fields.push_back(Field("exchange", q));
               Publish(route, events);
               ConsumerSourceOptions so;
               so.consumer = "bench";
               so.url = herald::testing::AmqpUrl();
               so.options.table = "consumer";
               so.options.fields.push_back(Field("queue", q));
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
               RouteConfig route;
               route.sender = "sqs:" + q;
               route.options.fields.push_back(Field("region", "us-east-1"));
               Publish(route, events);
               ConsumerSourceOptions so;
               so.consumer = "bench";
               so.url = route.sender;
               so.options.table = "consumer";
               so.options.fields.push_back(Field("region", "us-east-1"));
               return so;
             }};
    Measure(s, b, dir);
  }
#endif
  return 0;
}
