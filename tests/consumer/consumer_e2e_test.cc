// Consumers with an inbox, end to end: a real `herald serve` process is the
// HTTP source; herald_test_consumer (a herald::Consumer in a process of its
// own, SIGKILLed on cue) handles its events with a handler that inserts one
// row per call into a domain table in the inbox's transaction. Run with the
// inbox on SQLite and on PostgreSQL (tests/support/with-postgres.sh).
#include <gtest/gtest.h>
#include <sqlite3.h>
#ifdef HERALD_TEST_WITH_POSTGRES
#include <libpq-fe.h>
#endif

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "herald/consumer.h"
#include "herald/dispatcher.h"
#include "herald/postgres.h"
#include "herald/sqlite.h"
#include "herald/store.h"
#include "herald/store_wrapper.h"
#include "herald/time.h"
#include "server/server_test_util.h"
#include "support/test_util.h"

namespace herald {
namespace {

using testing::Child;
using testing::FreshStoreUrl;
using testing::HeraldBin;
using testing::RunCommand;
using testing::ServeProcess;
using testing::TempDir;
using testing::WaitFor;
using testing::WriteFile;

constexpr char kName[] = "billing";

struct Row {
  std::string event_id;
  std::string stream;
  int64_t position;
};

// Runs `sql` (one text column per row, '|'-joined) in a transaction of
// `store` through its native handle.
std::vector<std::string> Query(Store* store, const std::string& sql) {
  std::vector<std::string> out;
  auto tx = store->Begin();
  if (!tx.ok()) return out;
  if (store->backend() == "sqlite") {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(SqliteHandle(**tx), sql.c_str(), -1, &st, nullptr) !=
        SQLITE_OK) {
      return out;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::string line;
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        if (c) line += "|";
        auto* t = sqlite3_column_text(st, c);
        line += t ? reinterpret_cast<const char*>(t) : "";
      }
      out.push_back(line);
    }
    sqlite3_finalize(st);
  } else {
#ifdef HERALD_TEST_WITH_POSTGRES
    PGresult* r = PQexec(PostgresHandle(**tx), sql.c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      for (int i = 0; i < PQntuples(r); ++i) {
        std::string line;
        for (int c = 0; c < PQnfields(r); ++c) {
          if (c) line += "|";
          line += PQgetvalue(r, i, c);
        }
        out.push_back(line);
      }
    }
    PQclear(r);
#endif
  }
  (void)(*tx)->Rollback();
  return out;
}

int64_t Count(Store* store, const std::string& sql) {
  auto rows = Query(store, sql);
  return rows.empty() ? -1 : std::stoll(rows[0]);
}

// Lines in the file at `path` (0 when there is none).
int64_t LineCount(const std::string& path) {
  std::string text = testing::ReadTextFile(path);
  return std::count(text.begin(), text.end(), '\n');
}

class ConsumerE2e : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    HERALD_SKIP_UNLESS_BACKEND(GetParam());
    server_db_ = "sqlite:" + dir_.file("server.db");
    serve_ = std::make_unique<ServeProcess>(dir_, server_db_);
    ASSERT_TRUE(serve_->ready()) << serve_->stderr_text();
    auto producer = OpenStore(server_db_);
    ASSERT_TRUE(producer.ok()) << producer.status().ToString();
    producer_ = std::move(*producer);
    inbox_url_ = FreshStoreUrl(GetParam(), dir_);
    auto inbox = OpenStore(inbox_url_);
    ASSERT_TRUE(inbox.ok()) << inbox.status().ToString();
    inbox_ = std::move(*inbox);
    config_ = dir_.file("consume.toml");
    WriteFile(config_, "[[consumer]]\nname = \"" + std::string(kName) +
                           "\"\nsource = \"" + serve_->base() +
                           "\"\ninbox = \"" + inbox_url_ +
                           "\"\nexec = \"true\"\non_failure = \"park\"\n");
  }

  // Appends `per_stream` events to each of `streams` streams, interleaved;
  // returns their ids by stream.
  void Append(int streams, int per_stream) {
    std::vector<Event> batch;
    for (int i = 0; i < per_stream; ++i) {
      for (int s = 0; s < streams; ++s) {
        batch.push_back(
            testing::MakeEvent("s-" + std::to_string(s), "order.placed",
                               "{\"n\":" + std::to_string(i) + "}"));
        if (batch.size() == 500) {
          ASSERT_TRUE(producer_->Append(batch).ok());
          batch.clear();
        }
      }
    }
    if (!batch.empty()) {
      ASSERT_TRUE(producer_->Append(batch).ok());
    }
  }

  std::unique_ptr<Child> StartChild(std::vector<std::string> extra,
                                    const std::string& tag) {
    std::vector<std::string> argv = {
        HERALD_TEST_CONSUMER, "--server", serve_->base(), "--inbox",
        inbox_url_,           "--name",   kName};
    for (auto& e : extra) argv.push_back(e);
    Child::Options o;
    o.stdout_path = dir_.file(tag + ".out");
    o.stderr_path = dir_.file(tag + ".err");
    return std::make_unique<Child>(argv, o);
  }

  // SIGTERM, exit 0, and the stats line it printed.
  std::map<std::string, int64_t> StopChild(Child* c, const std::string& tag) {
    c->Signal(SIGTERM);
    EXPECT_EQ(c->Wait(), 0) << testing::ReadTextFile(dir_.file(tag + ".err"));
    std::map<std::string, int64_t> stats;
    auto doc = Json::Parse(testing::ReadTextFile(dir_.file(tag + ".out")));
    if (doc.ok()) {
      for (const auto& [k, v] : doc->members()) {
        int64_t n = 0;
        if (v.TryInt64(&n)) stats[k] = n;
      }
    }
    return stats;
  }

  int64_t DomainRows() {
    return Count(inbox_.get(), "SELECT count(*) FROM domain_rows");
  }

  std::vector<Row> Rows() {
    std::vector<Row> out;
    for (const auto& line : Query(inbox_.get(),
                                  "SELECT event_id, stream, position FROM "
                                  "domain_rows ORDER BY seq")) {
      auto a = line.find('|'), b = line.rfind('|');
      out.push_back({line.substr(0, a), line.substr(a + 1, b - a - 1),
                     std::stoll(line.substr(b + 1))});
    }
    return out;
  }

  // Exactly one row per event of the server, and per stream the rows in
  // the order of the stream (first handling order = append order).
  void ExpectOneRowPerEventInStreamOrder(int64_t events) {
    auto rows = Rows();
    ASSERT_EQ(static_cast<int64_t>(rows.size()), events);
    std::set<std::string> ids;
    std::map<std::string, int64_t> last;
    for (const auto& r : rows) {
      EXPECT_TRUE(ids.insert(r.event_id).second) << "twice: " << r.event_id;
      EXPECT_GT(r.position, last[r.stream]) << "out of order in " << r.stream;
      last[r.stream] = r.position;
    }
    EXPECT_EQ(static_cast<int64_t>(ids.size()), events);
  }

  int64_t Checkpoint() {
    auto cp = inbox_->GetCheckpoint(ConsumerCheckpointName(kName));
    return cp.ok() ? *cp : -1;
  }

  // `herald consume --config CONFIG`, its stderr in TAG.err.
  std::unique_ptr<Child> StartConsume(const std::string& config,
                                      const std::string& tag) {
    Child::Options o;
    o.stderr_path = dir_.file(tag + ".err");
    return std::make_unique<Child>(
        std::vector<std::string>{HeraldBin(), "consume", "--config", config},
        o);
  }
  std::string Err(const std::string& tag) {
    return testing::ReadTextFile(dir_.file(tag + ".err"));
  }

  int Herald(std::vector<std::string> args, std::string* out,
             std::string* err = nullptr) {
    args.insert(args.begin(), HeraldBin());
    return RunCommand(args, out, err);
  }

  TempDir dir_;
  std::string server_db_;
  std::unique_ptr<ServeProcess> serve_;
  std::unique_ptr<Store> producer_;
  std::string inbox_url_;
  std::unique_ptr<Store> inbox_;
  std::string config_;
};

// 5,000 events over 20 streams; the consumer SIGKILLed twice after its
// inbox transaction committed and before it acknowledged (so before the
// checkpoint moved), then everything served again by `consume reset`: the
// domain table holds exactly one row per event, in per-stream order.
TEST_P(ConsumerE2e, OneRowPerEventAcrossKillsAndAReplay) {
  Append(20, 125);  // 2,500
  {
    auto c = StartChild({"--kill-at-ack", "700"}, "run1");
    EXPECT_EQ(c->Wait(), 128 + SIGKILL);
  }
  int64_t after_first = DomainRows();
  EXPECT_GE(after_first, 700);
  {
    auto c = StartChild({"--kill-at-ack", "2500"}, "run2");
    Append(20, 125);  // 5,000 in all, while it runs
    EXPECT_EQ(c->Wait(), 128 + SIGKILL);
  }
  auto c = StartChild({}, "run3");
  ASSERT_TRUE(
      WaitFor([&] { return DomainRows() >= 5000; }, std::chrono::seconds(120)))
      << DomainRows();
  ASSERT_TRUE(
      WaitFor([&] { return Checkpoint() == 5001; }, std::chrono::seconds(30)))
      << Checkpoint();
  auto stats = StopChild(c.get(), "run3");
  // What the killed run had committed but not acknowledged came again and
  // was absorbed.
  EXPECT_GE(stats["duplicates"], 1);
  ExpectOneRowPerEventInStreamOrder(5000);

  // The same events served again: consume reset to position 1.
  std::string out, err;
  ASSERT_EQ(Herald({"consume", "reset", "--config", config_, "--consumer",
                    kName, "--to-position", "1"},
                   &out, &err),
            0)
      << err;
  EXPECT_EQ(Checkpoint(), 1);
  auto again = StartChild({}, "run4");
  ASSERT_TRUE(
      WaitFor([&] { return Checkpoint() == 5001; }, std::chrono::seconds(120)))
      << Checkpoint();
  stats = StopChild(again.get(), "run4");
  EXPECT_EQ(stats["handled"], 0);
  EXPECT_EQ(stats["duplicates"], 5000);
  ExpectOneRowPerEventInStreamOrder(5000);
}

// A poison event parks and holds the rest of its stream while the other 19
// streams finish; `herald parked retry --consumer` hands it to the handler
// again, then the held events, in order.
TEST_P(ConsumerE2e, PoisonParksHoldsItsStreamAndRetryDeliversInOrder) {
  Append(20, 25);  // 500
  auto s3 = producer_->ReadStream("s-3", 5, 1);
  ASSERT_TRUE(s3.ok() && s3->size() == 1);
  std::string poison = (*s3)[0].id;
  std::string heal = dir_.file("heal");
  auto c = StartChild({"--fail-id", poison, "--heal-file", heal}, "poison");
  // 19 streams whole, s-3 up to its 4th event; 21 events parked or held.
  ASSERT_TRUE(WaitFor([&] { return DomainRows() == 500 - 21; },
                      std::chrono::seconds(60)))
      << DomainRows();
  std::string out, err;
  ASSERT_TRUE(WaitFor(
      [&] {
        Herald({"parked", "list", "--config", config_, "--consumer", kName},
               &out);
        return std::count(out.begin(), out.end(), '\n') == 21;
      },
      std::chrono::seconds(30)))
      << out;
  EXPECT_NE(out.find("\"state\":\"parked\""), std::string::npos) << out;
  EXPECT_NE(out.find(poison), std::string::npos) << out;
  EXPECT_EQ(DomainRows(), 500 - 21);
  ASSERT_EQ(Herald({"consume", "status", "--config", config_}, &out, &err), 0)
      << err;
  EXPECT_NE(out.find("\"parked\":1,\"held\":20"), std::string::npos) << out;

  WriteFile(heal, "");
  ASSERT_EQ(Herald({"parked", "retry", "--config", config_, "--consumer", kName,
                    "--id", poison},
                   &out, &err),
            0)
      << err;
  ASSERT_TRUE(
      WaitFor([&] { return DomainRows() == 500; }, std::chrono::seconds(60)))
      << DomainRows();
  StopChild(c.get(), "poison");
  ExpectOneRowPerEventInStreamOrder(500);
  Herald({"parked", "list", "--config", config_, "--consumer", kName}, &out);
  EXPECT_EQ(out, "");
}

// Retention is the dedupe window: rows older than it are swept, and an
// event served again after the sweep is handled again.
TEST_P(ConsumerE2e, RetentionSweepsAndALateDuplicateIsHandledAgain) {
  Append(2, 5);  // 10
  auto c = StartChild({"--retention-ms", "300", "--sweep-ms", "100"}, "short");
  ASSERT_TRUE(
      WaitFor([&] { return DomainRows() == 10; }, std::chrono::seconds(30)));
  std::string inbox_rows =
      "SELECT count(*) FROM herald_inbox WHERE consumer = '" +
      std::string(kName) + "'";
  ASSERT_TRUE(WaitFor([&] { return Count(inbox_.get(), inbox_rows) == 0; },
                      std::chrono::seconds(30)));
  auto stats = StopChild(c.get(), "short");
  EXPECT_EQ(stats["swept"], 10);
  std::string out, err;
  ASSERT_EQ(Herald({"consume", "reset", "--config", config_, "--consumer",
                    kName, "--to-position", "1"},
                   &out, &err),
            0)
      << err;
  auto again = StartChild({}, "late");
  ASSERT_TRUE(
      WaitFor([&] { return DomainRows() == 20; }, std::chrono::seconds(30)))
      << DomainRows();
  stats = StopChild(again.get(), "late");
  EXPECT_EQ(stats["handled"], 10);
  EXPECT_EQ(stats["duplicates"], 0);
}

// `herald consume` itself: an exec handler per event (the event's JSON on
// stdin), status, and `consume reset` refused while it runs.
TEST_P(ConsumerE2e, HeraldConsumeRunsExecAndRefusesAResetWhileRunning) {
  Append(4, 10);  // 40
  std::string handled = dir_.file("handled.jsonl");
  std::string config = dir_.file("exec.toml");
  WriteFile(config, "[[consumer]]\nname = \"" + std::string(kName) +
                        "\"\nsource = \"" + serve_->base() + "\"\ninbox = \"" +
                        inbox_url_ + "\"\nexec = \"cat >> " + handled +
                        "\"\ntypes = [\"order.*\"]\n");
  auto consume = StartConsume(config, "consume");
  auto lines = [&] { return LineCount(handled); };
  ASSERT_TRUE(WaitFor([&] { return lines() == 40; }, std::chrono::seconds(60)))
      << lines() << Err("consume");
  std::string text = testing::ReadTextFile(handled);
  EXPECT_NE(text.find("\"type\":\"order.placed\""), std::string::npos);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto l = inbox_->GetLease(ConsumerCheckpointName(kName));
        return l.ok() && l->has_value();
      },
      std::chrono::seconds(10)));
  std::string out, err;
  EXPECT_NE(Herald({"consume", "reset", "--config", config, "--consumer", kName,
                    "--to-position", "1"},
                   &out, &err),
            0);
  EXPECT_NE(err.find("consumer '" + std::string(kName) + "' is running in"),
            std::string::npos)
      << err;
  EXPECT_GT(Checkpoint(), 1) << "not moved";
  // A second process for the same consumer is refused too.
  EXPECT_EQ(Herald({"consume", "--config", config}, &out, &err), 1);
  EXPECT_NE(err.find("consumer '" + std::string(kName) + "' is running in"),
            std::string::npos)
      << err;
  ASSERT_TRUE(WaitFor(
      [&] {
        Herald({"consume", "status", "--config", config}, &out);
        return out.find("\"handled\":40,\"duplicates\":0") != std::string::npos;
      },
      std::chrono::seconds(10)))
      << out;
  consume->Signal(SIGTERM);
  EXPECT_EQ(consume->Wait(), 0) << Err("consume");
  // Stopped: the reset goes through, and a second run absorbs everything.
  ASSERT_EQ(Herald({"consume", "reset", "--config", config, "--consumer", kName,
                    "--to-position", "1"},
                   &out, &err),
            0)
      << err;
  auto again = StartConsume(config, "again");
  ASSERT_TRUE(WaitFor(
      [&] {
        Herald({"consume", "status", "--config", config}, &out);
        return out.find("\"handled\":40,\"duplicates\":40") !=
               std::string::npos;
      },
      std::chrono::seconds(30)))
      << out;
  again->Signal(SIGTERM);
  EXPECT_EQ(again->Wait(), 0) << Err("again");
  EXPECT_EQ(lines(), 40) << "no event handled twice";
}

// on_failure = "block": the failing event is retried in place, holding
// only its stream (nothing parked); once it succeeds the stream goes on in
// order. SIGTERM while it is retrying gives it back, unacknowledged.
TEST_P(ConsumerE2e, BlockRetriesInPlaceHoldingOnlyItsStream) {
  Append(4, 6);  // 24
  auto s2 = producer_->ReadStream("s-2", 3, 1);
  ASSERT_TRUE(s2.ok() && s2->size() == 1);
  std::string failing = (*s2)[0].id;
  std::string heal = dir_.file("heal");
  auto c = StartChild(
      {"--fail-id", failing, "--heal-file", heal, "--on-failure", "block"},
      "block1");
  // s-2 stops before its 3rd event; the other streams finish.
  ASSERT_TRUE(
      WaitFor([&] { return DomainRows() == 24 - 4; }, std::chrono::seconds(60)))
      << DomainRows();
  auto stats = StopChild(c.get(), "block1");
  EXPECT_EQ(stats["parked"], 0);
  std::string out;
  Herald({"parked", "list", "--config", config_, "--consumer", kName}, &out);
  EXPECT_EQ(out, "") << "block parks nothing";
  // Given back, not acknowledged: the checkpoint stayed before it.
  EXPECT_LE(Checkpoint(), (*s2)[0].position);
  WriteFile(heal, "");
  auto again = StartChild({"--on-failure", "block"}, "block2");
  ASSERT_TRUE(
      WaitFor([&] { return DomainRows() == 24; }, std::chrono::seconds(60)))
      << DomainRows();
  StopChild(again.get(), "block2");
  ExpectOneRowPerEventInStreamOrder(24);
}

// consume reset --to-time: the first position whose event occurred at or
// after the time, found on the server.
TEST_P(ConsumerE2e, ConsumeResetToTimeFindsThePositionOnTheServer) {
  std::vector<Event> events;
  const int64_t base = 1'700'000'000'000'000;
  for (int i = 0; i < 10; ++i) {
    Event e = testing::MakeEvent("s", "order.placed");
    e.occurred_at_us = base + i * 1'000'000;  // 1 s apart
    events.push_back(e);
  }
  ASSERT_TRUE(producer_->Append(events).ok());
  std::string out, err;
  ASSERT_EQ(Herald({"consume", "reset", "--config", config_, "--consumer",
                    kName, "--to-time", FormatRfc3339(base + 4'500'000)},
                   &out, &err),
            0)
      << err;
  EXPECT_EQ(Checkpoint(), 6);
  EXPECT_EQ(out, "{\"consumer\":\"billing\",\"checkpoint\":6}\n");
}

// `parked drop`: the parked event is given up, the events held behind it
// are handled in order.
TEST_P(ConsumerE2e, DroppingAParkedEventReleasesItsStream) {
  Append(4, 6);  // 24
  auto s1 = producer_->ReadStream("s-1", 2, 1);
  ASSERT_TRUE(s1.ok() && s1->size() == 1);
  std::string poison = (*s1)[0].id;
  auto c = StartChild({"--fail-id", poison, "--heal-file", dir_.file("never")},
                      "drop");
  // s-1 holds its 2nd to 6th events: 5 rows parked or held.
  ASSERT_TRUE(
      WaitFor([&] { return DomainRows() == 24 - 5; }, std::chrono::seconds(60)))
      << DomainRows();
  std::string out, err;
  ASSERT_TRUE(WaitFor(
      [&] {
        Herald({"parked", "list", "--config", config_, "--consumer", kName,
                "--state", "held"},
               &out);
        return std::count(out.begin(), out.end(), '\n') == 4;
      },
      std::chrono::seconds(30)))
      << out;
  ASSERT_EQ(Herald({"parked", "drop", "--config", config_, "--consumer", kName,
                    "--id", poison},
                   &out, &err),
            0)
      << err;
  ASSERT_TRUE(
      WaitFor([&] { return DomainRows() == 23; }, std::chrono::seconds(30)))
      << DomainRows();
  StopChild(c.get(), "drop");
  auto rows = Rows();
  std::vector<int64_t> s1_positions;
  for (const auto& r : rows) {
    EXPECT_NE(r.event_id, poison);
    if (r.stream == "s-1") s1_positions.push_back(r.position);
  }
  ASSERT_EQ(s1_positions.size(), 5u);
  EXPECT_TRUE(std::is_sorted(s1_positions.begin(), s1_positions.end()));
  Herald({"parked", "list", "--config", config_, "--consumer", kName}, &out);
  EXPECT_EQ(out, "");
}

// A forwarding sender as the handler: each event goes to the sender (here
// a file: JSON lines, fsynced) once.
TEST_P(ConsumerE2e, HeraldConsumeForwardsThroughASender) {
  Append(2, 10);  // 20
  std::string forwarded = dir_.file("forwarded.jsonl");
  std::string config = dir_.file("sender.toml");
  WriteFile(config, "[[consumer]]\nname = \"fwd\"\nsource = \"" +
                        serve_->base() + "\"\ninbox = \"" + inbox_url_ +
                        "\"\nsender = \"file:" + forwarded + "\"\n");
  auto consume = StartConsume(config, "fwd");
  ASSERT_TRUE(WaitFor([&] { return LineCount(forwarded) == 20; },
                      std::chrono::seconds(60)))
      << LineCount(forwarded) << Err("fwd");
  consume->Signal(SIGTERM);
  EXPECT_EQ(consume->Wait(), 0) << Err("fwd");
  EXPECT_EQ(Count(inbox_.get(),
                  "SELECT count(*) FROM herald_inbox WHERE consumer = 'fwd'"),
            20);
}

INSTANTIATE_TEST_SUITE_P(Inbox, ConsumerE2e,
                         ::testing::ValuesIn(testing::TestBackends()));

// ---- The library, in process ------------------------------------------------

struct OrderPlaced {
  int n = 0;
};

}  // namespace

template <>
struct EventTraits<OrderPlaced> {
  static constexpr std::string_view kType = "order.placed";
  static std::string ToJson(const OrderPlaced& e) {
    return "{\"n\":" + std::to_string(e.n) + "}";
  }
  static Result<OrderPlaced> FromJson(std::string_view json) {
    auto doc = Json::Parse(json);
    if (!doc.ok()) return doc.status();
    OrderPlaced e;
    int64_t n = 0;
    if (const Json* v = doc->Find("n"); v && v->TryInt64(&n)) {
      e.n = static_cast<int>(n);
    }
    return e;
  }
};

namespace {

// The Subscribe<T> a service wrote for in-process events serves consumed
// events unchanged: an immediate handler writes in the inbox's transaction
// (UnitOfWork::Current()), an after-commit one runs once it committed.
TEST(ConsumerLibrary, DispatcherSubscriptionsServeConsumedEvents) {
  TempDir dir;
  ServeProcess serve(dir, "sqlite:" + dir.file("server.db"));
  ASSERT_TRUE(serve.ready()) << serve.stderr_text();
  {
    auto producer = OpenStore("sqlite:" + dir.file("server.db"));
    ASSERT_TRUE(producer.ok());
    std::vector<Event> events;
    for (int i = 0; i < 30; ++i) {
      events.push_back(testing::MakeEvent("s-" + std::to_string(i % 3),
                                          "order.placed",
                                          "{\"n\":" + std::to_string(i) + "}"));
    }
    ASSERT_TRUE((*producer)->Append(events).ok());
  }
  auto inbox = OpenStore("sqlite:" + dir.file("inbox.db"));
  ASSERT_TRUE(inbox.ok());
  {
    auto tx = (*inbox)->Begin();
    ASSERT_TRUE(tx.ok());
    ASSERT_EQ(sqlite3_exec(SqliteHandle(**tx),
                           "CREATE TABLE placed (n INTEGER PRIMARY KEY)",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  Dispatcher dispatcher(inbox->get());
  std::atomic<int> after{0};
  dispatcher.Subscribe<OrderPlaced>(
      Phase::kImmediate, [](const OrderPlaced& e) -> Status {
        sqlite3* db = SqliteHandle(UnitOfWork::Current()->transaction());
        std::string sql =
            "INSERT INTO placed (n) VALUES (" + std::to_string(e.n) + ")";
        return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) ==
                       SQLITE_OK
                   ? Status::OK()
                   : Status::Internal("insert");
      });
  dispatcher.Subscribe<OrderPlaced>(Phase::kAfterCommit,
                                    [&](const OrderPlaced&) { ++after; });
  ConsumerOptions o;
  o.name = "library";
  o.inbox = inbox->get();
  ConsumerSourceOptions so;
  so.consumer = o.name;
  so.url = serve.base();
  so.state = inbox->get();
  auto source = MakeConsumerSource(so);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  {
    Consumer consumer(o, std::move(*source));
    consumer.SetDispatcher(&dispatcher);
    ASSERT_TRUE(consumer.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return consumer.stats().handled == 30; },
                        std::chrono::seconds(30)));
    consumer.Stop();
  }
  EXPECT_EQ(after.load(), 30);
  EXPECT_EQ(Count(inbox->get(), "SELECT count(*) FROM placed"), 30);
  // Nothing consumed was appended to the consumer's own log.
  EXPECT_EQ(*(*inbox)->Head(), 0);
  EXPECT_EQ(Count(inbox->get(),
                  "SELECT count(*) FROM herald_inbox WHERE consumer = "
                  "'library'"),
            30);
}

// A store whose Park always fails for good (as a non-UUID id does on
// PostgreSQL).
class UnparkableStore : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Status Park(Transaction&, const ParkedEvent&) override {
    return Status::InvalidArgument("cannot park here");
  }
};

// A park that cannot be written holds only its stream, retried in place:
// the other streams finish; once the handler succeeds the stream goes on.
TEST(ConsumerLibrary, AParkThatCannotBeWrittenHoldsOnlyItsStream) {
  TempDir dir;
  ServeProcess serve(dir, "sqlite:" + dir.file("server.db"));
  ASSERT_TRUE(serve.ready()) << serve.stderr_text();
  std::string poison;
  {
    auto producer = OpenStore("sqlite:" + dir.file("server.db"));
    ASSERT_TRUE(producer.ok());
    std::vector<Event> events;
    for (int i = 0; i < 15; ++i) {
      events.push_back(
          testing::MakeEvent("s-" + std::to_string(i % 3), "order.placed"));
    }
    ASSERT_TRUE((*producer)->Append(events).ok());
    poison = events[4].id;  // s-1's second event
  }
  auto inner = OpenStore("sqlite:" + dir.file("inbox.db"));
  ASSERT_TRUE(inner.ok());
  UnparkableStore inbox(inner->get());
  std::atomic<bool> healed{false};
  std::mutex mu;
  std::vector<std::string> handled;
  ConsumerOptions o;
  o.name = "unparkable";
  o.inbox = &inbox;
  o.on_failure = FailurePolicy::kPark;
  o.retry.max_attempts = 2;
  o.retry.backoff_initial = std::chrono::milliseconds(5);
  o.retry.backoff_max = std::chrono::milliseconds(20);
  o.on_log = [](const std::string&) {};
  ConsumerSourceOptions so;
  so.consumer = o.name;
  so.url = serve.base();
  so.state = &inbox;
  auto source = MakeConsumerSource(so);
  ASSERT_TRUE(source.ok());
  Consumer consumer(o, std::move(*source));
  consumer.SetHandler([&](const Event& e, Transaction*) -> Status {
    if (e.id == poison && !healed.load()) return Status::Permanent("poison");
    std::lock_guard<std::mutex> lock(mu);
    handled.push_back(e.stream);
    return Status::OK();
  });
  ASSERT_TRUE(consumer.Start().ok());
  // s-0 and s-2 whole, s-1 only its first event.
  ASSERT_TRUE(WaitFor([&] { return consumer.stats().handled == 11; },
                      std::chrono::seconds(30)))
      << consumer.stats().handled;
  EXPECT_TRUE(WaitFor([&] { return consumer.stats().failures >= 4; },
                      std::chrono::seconds(30)))
      << "retried in place after the park failed";
  EXPECT_EQ(consumer.stats().handled, 11u);
  EXPECT_EQ(consumer.stats().parked, 0u);
  healed.store(true);
  ASSERT_TRUE(WaitFor([&] { return consumer.stats().handled == 15; },
                      std::chrono::seconds(30)));
  consumer.Stop();
  EXPECT_EQ(std::count(handled.begin(), handled.end(), "s-1"), 5);
}

// `herald serve` runs the [[consumer]] tables of its config too (here one
// reading that very server) and lists them in /metrics.
TEST(ConsumerServe, ServeRunsConsumersAndShowsThemInMetrics) {
  TempDir dir;
  std::string db = "sqlite:" + dir.file("server.db");
  {
    auto producer = OpenStore(db);
    ASSERT_TRUE(producer.ok());
    std::vector<Event> events;
    for (int i = 0; i < 12; ++i) {
      events.push_back(
          testing::MakeEvent("s-" + std::to_string(i % 3), "order.placed"));
    }
    ASSERT_TRUE((*producer)->Append(events).ok());
  }
  int port = testing::FreePort();
  std::string handled = dir.file("handled.jsonl");
  std::string config =
      "[[consumer]]\nname = \"self\"\nsource = "
      "\"http://127.0.0.1:" +
      std::to_string(port) + "\"\ninbox = \"sqlite:" + dir.file("inbox.db") +
      "\"\nexec = \"cat >> " + handled + "\"\n";
  ServeProcess serve(dir, db, config, {}, port);
  ASSERT_TRUE(serve.ready()) << serve.stderr_text();
  testing::HttpClient http;
  std::string body;
  ASSERT_TRUE(WaitFor(
      [&] {
        body = http.Request("GET", serve.base() + "/metrics").body;
        return body.find(
                   "herald_consumer_handled_total{consumer=\"self\"} "
                   "12\n") != std::string::npos;
      },
      std::chrono::seconds(30)))
      << body;
  EXPECT_NE(body.find("# TYPE herald_consumer_duplicates_total counter"),
            std::string::npos);
  EXPECT_TRUE(WaitFor(
      [&] {
        body = http.Request("GET", serve.base() + "/metrics").body;
        return body.find("herald_consumer_in_hand{consumer=\"self\"} 0\n") !=
               std::string::npos;
      },
      std::chrono::seconds(10)))
      << body;
  EXPECT_EQ(serve.Stop(), 0) << serve.stderr_text();
  EXPECT_EQ(LineCount(handled), 12);
}

}  // namespace
}  // namespace herald
