// Helpers of the broker consumer-source end-to-end tests (tests/rabbitmq,
// tests/nats, tests/kafka, tests/aws): a producer store the built `herald
// relay` publishes from, a consumer inbox on SQLite with a domain table the
// handler writes one row per call into (in the inbox's transaction), the
// consumer run as a child process (tests/broker_consumer/consumer_child.cc,
// herald::Consumer in it) that can die by SIGKILL after its inbox
// committed and before the broker was acknowledged, and the check that the
// domain table holds exactly one row per event, in per-stream order; for
// the tests that drive a ConsumerSource directly: its options, polling
// until deliveries came, awaiting a lag, checking a decoded delivery; and
// the fixture of the bad-key tests of `herald consume`. Header-only.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "herald/consumer.h"
#include "herald/consumer_source.h"
#include "herald/route.h"
#include "herald/sender.h"
#include "herald/sqlite.h"
#include "herald/store.h"
#include "support/relay_e2e.h"
#include "support/test_util.h"

namespace herald::testing {

// The domain table of the tests' consumers: one row per handler call.
inline constexpr const char* kDomainTable =
    "CREATE TABLE IF NOT EXISTS domain_rows ("
    "seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, "
    "stream TEXT NOT NULL)";

// Creates the domain table in `store` (an SQLite store).
inline Status CreateDomainTable(Store* store) {
  auto tx = store->Begin();
  if (!tx.ok()) return tx.status();
  char* err = nullptr;
  if (sqlite3_exec(SqliteHandle(**tx), kDomainTable, nullptr, nullptr, &err) !=
      SQLITE_OK) {
    std::string m = err ? err : "?";
    sqlite3_free(err);
    return Status::Internal(m);
  }
  return (*tx)->Commit();
}

// The handler's write: one row for `e`, in the inbox's transaction.
inline Status InsertDomainRow(Transaction* tx, const Event& e) {
  sqlite3* db = SqliteHandle(*tx);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO domain_rows (id, stream) VALUES (?, ?)",
                         -1, &st, nullptr) != SQLITE_OK) {
    return Status::Internal(sqlite3_errmsg(db));
  }
  sqlite3_bind_text(st, 1, e.id.data(), static_cast<int>(e.id.size()),
                    SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, e.stream.data(), static_cast<int>(e.stream.size()),
                    SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return Status::Unavailable(sqlite3_errmsg(db));
  return Status::OK();
}

struct DomainRow {
  int64_t seq = 0;
  std::string id, stream;
};

// The domain rows of the SQLite database at `path`, in insertion order
// (empty when there is no such table yet).
inline std::vector<DomainRow> ReadDomainRows(const std::string& path) {
  std::vector<DomainRow> rows;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
      SQLITE_OK) {
    sqlite3_close(db);
    return rows;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db,
                         "SELECT seq, id, stream FROM domain_rows ORDER BY seq",
                         -1, &st, nullptr) == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW) {
      DomainRow r;
      r.seq = sqlite3_column_int64(st, 0);
      r.id = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
      r.stream = reinterpret_cast<const char*>(sqlite3_column_text(st, 2));
      rows.push_back(std::move(r));
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rows;
}

// Exactly one row per event of `events` and no other; per stream, the rows
// in the events' order (their positions).
// `order` false: only once each (an SQS standard queue keeps no order).
inline void ExpectOnceEachInStreamOrder(const std::vector<DomainRow>& rows,
                                        const std::vector<Event>& events,
                                        bool order = true) {
  std::map<std::string, const Event*> by_id;
  for (const auto& e : events) by_id[e.id] = &e;
  std::map<std::string, int> count;
  std::map<std::string, int64_t> last;
  size_t out_of_order = 0, strangers = 0;
  for (const auto& r : rows) {
    auto it = by_id.find(r.id);
    if (it == by_id.end()) {
      ++strangers;
      continue;
    }
    if (++count[r.id] > 1) continue;
    const Event& e = *it->second;
    EXPECT_EQ(r.stream, e.stream) << r.id;
    if (order && last[e.stream] >= e.position) {
      ++out_of_order;
      ADD_FAILURE() << "row " << r.seq << ": event " << e.position
                    << " of stream " << e.stream << " after event "
                    << last[e.stream];
    }
    last[e.stream] = e.position;
  }
  size_t missing = 0, doubled = 0;
  for (const auto& e : events) {
    int c = count[e.id];
    missing += c == 0;
    doubled += c > 1;
  }
  EXPECT_EQ(strangers, 0u) << "rows of events not published here";
  EXPECT_EQ(missing, 0u) << "events never handled";
  EXPECT_EQ(doubled, 0u) << "events handled more than once";
  EXPECT_EQ(out_of_order, 0u) << "rows out of their stream's order";
  EXPECT_EQ(rows.size(), events.size());
}

// A [[route]] table `name` of the broker tests: `sender` with the sender's
// `keys` (TOML lines), batches of 100, 50 in flight, short backoff.
inline std::string RouteTable(const std::string& name,
                              const std::string& sender,
                              const std::string& keys) {
  return "[[route]]\nname = \"" + name + "\"\nsender = \"" + sender + "\"\n" +
         keys +
         "batch = 100\nmax_in_flight = 50\nbackoff_initial = \"5ms\"\n"
         "backoff_max = \"200ms\"\n\n";
}

// A string-valued key of a [[route]] or [[consumer]] table.
inline OptionField StringOption(const std::string& key,
                                const std::string& value) {
  OptionField f;
  f.key = key;
  f.value.string = value;
  return f;
}

// The source options of consumer "c" reading `url` with the per-source
// `keys` (as a [[consumer]] table "c" would give them).
inline ConsumerSourceOptions BrokerSourceOptions(
    const std::string& url, std::vector<OptionField> keys) {
  ConsumerSourceOptions so;
  so.consumer = "c";
  so.url = url;
  so.options.table = "consumer";
  so.options.route = "c";
  so.options.fields = std::move(keys);
  return so;
}

// A [[route]] sending to `url` with the sender's `keys`, for
// PublishWithSender.
inline RouteConfig SenderRoute(const std::string& url,
                               std::vector<OptionField> keys) {
  RouteConfig route;
  route.sender = url;
  route.options.fields = std::move(keys);
  return route;
}

// Polls `src` (up to `max` a call) until `want` deliveries came or
// `timeout` passed; what came, in order. *last_error: the last failed
// Poll's status, if any.
inline std::vector<SourceDelivery> PollUntil(
    ConsumerSource& src, size_t want,
    std::chrono::milliseconds timeout = std::chrono::seconds(20), int max = 100,
    Status* last_error = nullptr) {
  std::vector<SourceDelivery> got;
  WaitFor(
      [&] {
        auto p = src.Poll(max, std::chrono::milliseconds(100));
        if (p.ok()) {
          for (auto& d : *p) got.push_back(std::move(d));
        } else if (last_error) {
          *last_error = p.status();
        }
        return got.size() >= want;
      },
      timeout);
  return got;
}

// The handles of `deliveries`, for Ack and Release.
inline std::vector<uint64_t> HandlesOf(
    const std::vector<SourceDelivery>& deliveries) {
  std::vector<uint64_t> handles;
  for (const auto& d : deliveries) handles.push_back(d.handle);
  return handles;
}

// Waits until the source reports `want` waiting (Lag); false after
// `timeout`.
inline bool AwaitLag(
    ConsumerSource& src, int64_t want,
    std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  return WaitFor(
      [&] {
        auto lag = src.Lag();
        return lag && *lag == want;
      },
      timeout);
}

// Nothing more comes from `src` within `wait`.
inline void ExpectNothingMore(
    ConsumerSource& src,
    std::chrono::milliseconds wait = std::chrono::milliseconds(200)) {
  auto more = src.Poll(100, wait);
  ASSERT_TRUE(more.ok()) << more.status().ToString();
  EXPECT_TRUE(more->empty())
      << more->size() << " more, the first " << more->front().event.id;
}

// `d` decoded into `want` (id, stream, type, payload, position) and keyed
// by its stream.
inline void ExpectDeliveryOf(const SourceDelivery& d, const Event& want) {
  EXPECT_TRUE(d.decode_status.ok()) << d.decode_status.ToString();
  EXPECT_EQ(d.event.id, want.id);
  EXPECT_EQ(d.event.stream, want.stream);
  EXPECT_EQ(d.event.type, want.type);
  EXPECT_EQ(d.event.payload, want.payload);
  EXPECT_EQ(d.event.position, want.position);
  EXPECT_EQ(d.key, want.stream);
}

// Bad per-source keys: `herald consume` on a config whose [[consumer]]
// table (line 4) reads the source URL given to the constructor, with
// `keys` from line 9 on, must refuse it (exit 2) naming key and line, and
// start nothing. Refused returns what it printed on stderr.
class ConsumerConfigRefusal : public ::testing::Test {
 protected:
  explicit ConsumerConfigRefusal(std::string source)
      : source_(std::move(source)) {}

  std::string Refused(const std::string& keys, const std::string& name = "c") {
    return RefusedFrom(source_, keys, name);
  }
  // The same with another source URL (line 6).
  std::string RefusedFrom(const std::string& source, const std::string& keys,
                          const std::string& name = "c") {
    std::string path = dir_.file("herald.toml");
    std::ofstream(path) << "[store]\nurl = \"sqlite:" << dir_.file("h.db")
                        << "\"\n\n[[consumer]]\nname = \"" << name << "\"\n"
                        << "source = \"" << source << "\"\n"
                        << "inbox = \"sqlite:" << dir_.file("inbox.db")
                        << "\"\nexec = \"true\"\n"
                        << keys;
    std::string out, err;
    EXPECT_EQ(
        RunCommand({HeraldBin(), "consume", "--config", path}, &out, &err), 2)
        << err;
    return err;
  }

 private:
  TempDir dir_;
  std::string source_;
};

// The consumer child (tests/broker_consumer): CTest sets
// HERALD_TEST_BROKER_CONSUMER.
inline std::string ConsumerChildBin() {
  const char* b = std::getenv("HERALD_TEST_BROKER_CONSUMER");
  if (b) return b;
#ifdef HERALD_TEST_BROKER_CONSUMER_BIN
  return HERALD_TEST_BROKER_CONSUMER_BIN;
#else
  return "herald_test_broker_consumer";
#endif
}

// A producer store, a config file, the relay and consumer processes.
class ConsumerE2E {
 public:
  ConsumerE2E() {
    producer_url_ = "sqlite:" + dir_.file("producer.db");
    auto s = OpenStore(producer_url_);
    if (s.ok()) producer_ = std::move(*s);
    inbox_path_ = dir_.file("inbox.db");
  }

  const TempDir& dir() const { return dir_; }
  Store* producer() { return producer_.get(); }
  const std::string& inbox_path() const { return inbox_path_; }
  std::string inbox_url() const { return "sqlite:" + inbox_path_; }
  const std::vector<Event>& events() const { return events_; }

  // Writes the config: [store] (the producer), [relay], then `tables`
  // ([[route]] and [[consumer]] tables). Returns its path.
  std::string WriteConfig(const std::string& tables,
                          const std::string& name = "herald.toml") {
    std::string path = dir_.file(name);
    std::ofstream(path) << "[store]\nurl = \"" << producer_url_
                        << "\"\n[relay]\nidle_poll = \"50ms\"\n\n"
                        << tables;
    return path;
  }

  // Appends `n` events over streams s-0 .. s-(streams-1), `per_tx` per
  // transaction.
  void Append(int n, int streams, int per_tx = 50,
              const std::string& type = "order.placed") {
    std::vector<Event> batch;
    for (int i = 0; i < n; ++i) {
      Event e;
      e.stream = "s-" + std::to_string(next_++ % streams);
      e.type = type;
      e.payload = "{\"i\":" + std::to_string(next_) + "}";
      batch.push_back(e);
      if (static_cast<int>(batch.size()) == per_tx || i + 1 == n) {
        auto r = producer_->Append(std::span<Event>(batch));
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        events_.insert(events_.end(), batch.begin(), batch.end());
        batch.clear();
      }
    }
  }

  // The [[consumer]] table "c" of the broker tests: `source` with the
  // per-source `keys` (TOML lines), this inbox, 8 in flight, and `exec`
  // (the consumer child replaces it with its own handler).
  std::string ConsumerTable(const std::string& source, const std::string& keys,
                            const std::string& exec = "true") const {
    return "[[consumer]]\nname = \"c\"\nsource = \"" + source + "\"\n" + keys +
           "inbox = \"" + inbox_url() + "\"\nexec = \"" + exec +
           "\"\nmax_in_flight = 8\n";
  }

  Child StartRelay(const std::string& config) {
    Child::Options o;
    o.stderr_path = dir_.file("relay." + std::to_string(++relays_) + ".err");
    return Child({HeraldBin(), "relay", "--config", config}, o);
  }

  // The consumer child on `config`'s consumer `name`; with die_after_acks
  // > 0 it SIGKILLs itself when that many deliveries were acknowledged,
  // after their inbox transactions committed and before the broker heard.
  Child StartConsumer(const std::string& config, const std::string& name,
                      int die_after_acks = 0) {
    Child::Options o;
    o.stderr_path =
        dir_.file("consumer." + std::to_string(++consumers_) + ".err");
    last_consumer_err_ = o.stderr_path;
    std::vector<std::string> argv = {ConsumerChildBin(), config, name};
    if (die_after_acks > 0) {
      argv.push_back("--die-after-acks");
      argv.push_back(std::to_string(die_after_acks));
    }
    return Child(argv, o);
  }
  std::string LastConsumerErr() const {
    return ReadTextFile(last_consumer_err_);
  }

  std::vector<DomainRow> Rows() const { return ReadDomainRows(inbox_path_); }

  // Distinct event ids handled so far.
  size_t DistinctHandled() const {
    std::set<std::string> ids;
    for (const auto& r : Rows()) ids.insert(r.id);
    return ids.size();
  }

  // What the consumer saved of itself (duplicates absorbed, handled).
  ConsumerStatusRow Status(const std::string& name) {
    ConsumerStatusRow row;
    auto s = OpenStore(inbox_url());
    if (!s.ok()) return row;
    auto r = ReadConsumerStatus(s->get(), name);
    if (r.ok()) row = *r;
    return row;
  }

 private:
  TempDir dir_;
  std::string producer_url_, inbox_path_, last_consumer_err_;
  std::unique_ptr<Store> producer_;
  std::vector<Event> events_;
  int next_ = 0;
  int relays_ = 0, consumers_ = 0;
};

// The exactly-once scenario of every broker source: 5,000 events over 20
// streams published by the built relay through `routes` (a [[route]] "r"
// for every stream, and a [[route]] "dup" publishing the events of s-3 and
// s-11 a second time as other broker messages, or `publish_copies` doing
// that where the broker would drop the dup route's copies as repeats),
// consumed by [[consumer]] "c"
// (`consumer_table`) in the consumer child. Duplicates forced three ways:
// the relay SIGKILLed twice under load (it republishes its unacknowledged
// batch), the dup route, and the consumer SIGKILLed after its inbox
// committed and before it acknowledged (then restarted). At the end the
// domain table has exactly one row per event, in per-stream order, and the
// inbox absorbed at least `dup_copies` duplicates.
inline void RunExactlyOnceScenario(
    ConsumerE2E& t, const std::string& routes,
    const std::string& consumer_table, int dup_copies,
    const std::function<void(std::span<const Event>)>& publish_copies = nullptr,
    bool order = true) {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  std::string config = t.WriteConfig(routes + "\n" + consumer_table);
  auto consumer = std::make_unique<Child>(t.StartConsumer(config, "c", 1200));
  auto relay = std::make_unique<Child>(t.StartRelay(config));
  std::mt19937 rng(std::random_device{}());
  for (int round = 0; round < 2; ++round) {
    t.Append(1500, 20);
    // Killed somewhere between just started and well under way.
    std::this_thread::sleep_for(
        milliseconds(std::uniform_int_distribution<int>(50, 400)(rng)));
    relay->Signal(SIGKILL);
    relay->Wait();
    relay = std::make_unique<Child>(t.StartRelay(config));
  }
  t.Append(2000, 20);
  if (publish_copies) {
    // The copies of s-3 and s-11 under other broker message ids.
    std::vector<Event> copies;
    for (const auto& e : t.events()) {
      if (e.stream == "s-3" || e.stream == "s-11") copies.push_back(e);
    }
    publish_copies(copies);
  }
  // The consumer dies in the window between commit and acknowledgement.
  ASSERT_TRUE(WaitFor([&] { return !consumer->running(); }, seconds(120)))
      << t.LastConsumerErr();
  EXPECT_EQ(consumer->Wait(), 128 + SIGKILL) << t.LastConsumerErr();
  size_t before_restart = t.DistinctHandled();
  EXPECT_GE(before_restart, 1u);
  consumer = std::make_unique<Child>(t.StartConsumer(config, "c"));
  // Every event handled, the relay caught up on both routes and the
  // source has nothing more waiting: every copy reached the consumer.
  std::string status;
  ASSERT_TRUE(WaitFor(
      [&] {
        if (t.DistinctHandled() < t.events().size()) return false;
        auto rows = RelayStatusRows(config, &status);
        for (const auto& r : rows) {
          if (JsonInt(r, "lag_events") != 0) return false;
        }
        return !rows.empty() && t.Status("c").lag == 0;
      },
      seconds(120)))
      << "handled " << t.DistinctHandled() << " of " << t.events().size()
      << ", lag " << t.Status("c").lag << "\n"
      << status << t.LastConsumerErr();
  relay->Signal(SIGTERM);
  EXPECT_EQ(relay->Wait(), 0);
  consumer->Signal(SIGTERM);
  EXPECT_EQ(consumer->Wait(), 0) << t.LastConsumerErr();
  SCOPED_TRACE("consumer's log:\n" + t.LastConsumerErr());
  ExpectOnceEachInStreamOrder(t.Rows(), t.events(), order);
  // The repeats were absorbed (the counts of the killed run's last second
  // may be lost, so not all of them are necessarily counted).
  EXPECT_GE(t.Status("c").duplicates, dup_copies / 2);
}

// The poison scenario of every broker source, in process: 1,000 events
// over 20 streams published with `publish`; the 10th event of s-5 fails
// (a permanent error) until cured. It parks, the rest of s-5 is held and
// the other 19 streams finish; cured and retried (RetryConsumerParked),
// the parked event and then the held ones are handled in order, and the
// source reports nothing left waiting (Lag 0).
inline void RunPoisonScenario(
    ConsumerE2E& t, ConsumerSourceOptions so,
    const std::function<void(std::span<const Event>)>& publish) {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  auto store = OpenStore(t.inbox_url());
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(CreateDomainTable(store->get()).ok());
  t.Append(1000, 20);  // 50 per stream
  // The 10th event of s-5 fails until it is cured.
  std::string poison;
  int seen = 0;
  for (const auto& e : t.events()) {
    if (e.stream == "s-5" && ++seen == 10) poison = e.id;
  }
  publish(t.events());

  ConsumerOptions o;
  o.name = "c";
  o.inbox = store->get();
  o.on_failure = FailurePolicy::kPark;
  o.retry.max_attempts = 2;
  o.retry.backoff_initial = milliseconds(5);
  o.retry.backoff_max = milliseconds(20);
  o.parked_poll = milliseconds(50);
  o.on_log = [](const std::string&) {};
  so.state = store->get();
  auto source = MakeConsumerSource(so);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  std::atomic<bool> cured{false};
  Consumer consumer(o, std::move(*source));
  consumer.SetHandler([&](const Event& e, Transaction* tx) {
    if (e.id == poison && !cured.load()) {
      return Status::Permanent("poison");
    }
    return InsertDomainRow(tx, e);
  });
  ASSERT_TRUE(consumer.Start().ok());
  // The other 19 streams finish, s-5 up to its poison event; the rest of
  // s-5 is held behind it.
  ASSERT_TRUE(
      WaitFor([&] { return t.DistinctHandled() == 1000 - 41; }, seconds(60)))
      << t.DistinctHandled();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto held = ListConsumerParked(store->get(), "c", "held", 100);
        return held.ok() && held->size() == 40;
      },
      seconds(30)));
  auto parked = ListConsumerParked(store->get(), "c", "parked", 100);
  ASSERT_TRUE(parked.ok());
  ASSERT_EQ(parked->size(), 1u);
  EXPECT_EQ((*parked)[0].event.id, poison);
  EXPECT_EQ(t.DistinctHandled(), 1000u - 41u);
  // Cured and retried: the parked event, then the held ones, in order.
  cured.store(true);
  ASSERT_TRUE(RetryConsumerParked(store->get(), "c", "").ok());
  ASSERT_TRUE(WaitFor([&] { return t.DistinctHandled() == 1000; }, seconds(30)))
      << t.DistinctHandled();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto left = ListConsumerParked(store->get(), "c", "", 100);
        return left.ok() && left->empty();
      },
      seconds(10)));
  // The queue is empty: every delivery was acknowledged.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto lag = consumer.stats().lag;
        return lag && *lag == 0;
      },
      seconds(10)));
  consumer.Stop();
  EXPECT_FALSE(consumer.failed());
  ExpectOnceEachInStreamOrder(t.Rows(), t.events());
}

// Publishes `events` through a herald sender made from `route` (the
// route's sender URL and options); every one must be acknowledged.
inline void PublishWithSender(RouteConfig route,
                              std::span<const Event> events) {
  route.name = route.name.empty() ? "p" : route.name;
  Status v = ValidateSenderOptions(&route);
  ASSERT_TRUE(v.ok()) << v.ToString();
  auto sender = MakeSender(route);
  ASSERT_TRUE(sender.ok()) << sender.status().ToString();
  size_t done = 0;
  // Several calls, each sending what is left (a stream stops at a
  // failure).
  for (int round = 0; round < 20 && done < events.size(); ++round) {
    std::vector<SendResult> results(events.size() - done);
    (*sender)->Send(
        events.subspan(done), results,
        std::chrono::steady_clock::now() + std::chrono::seconds(10));
    size_t ok = 0;
    while (ok < results.size() && results[ok].status.ok() &&
           results[ok].attempted) {
      ++ok;
    }
    if (ok == results.size()) return;
    done += ok;
  }
  FAIL() << "could not publish " << events.size() - done << " events";
}

}  // namespace herald::testing
