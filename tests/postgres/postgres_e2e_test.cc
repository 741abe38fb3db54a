// End to end on PostgreSQL: the built `herald serve` (HTTP appends and
// reads, one route to a file sink) and a separate `herald relay` process
// keep running while the PostgreSQL server under them is stopped
// (pg_ctl stop -m fast) and started again. Both reconnect, and nothing is
// lost: every acknowledged append is stored exactly once at a dense
// position and reaches both sinks in per-stream order.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "herald/event.h"
#include "herald/json.h"
#include "postgres/pg_test_util.h"
#include "server/server_test_util.h"
#include "support/test_util.h"

namespace herald {
namespace {

using std::chrono::seconds;
using testing::Child;
using testing::HeraldBin;
using testing::HttpClient;
using testing::HttpResult;
using testing::PrivateCluster;
using testing::RunCommand;
using testing::WaitFor;

// An appended event as the test knows it.
struct Appended {
  std::string id;
  std::string stream;
};

// Appends events over HTTP on a thread of its own, one request at a time,
// each retried with the same id until it is acknowledged (2xx); so each
// event is stored once (idempotency by id) and its stream's events are
// acknowledged in append order.
class HttpWriter {
 public:
  HttpWriter(std::string base, int writer, int streams)
      : base_(std::move(base)), writer_(writer), streams_(streams) {
    thread_ = std::thread([this] { Run(); });
  }
  ~HttpWriter() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  size_t acked() const { return acked_count_; }
  size_t failed_attempts() const { return failed_; }
  // Appends refused with a 4xx or never answered for 60 s: should be 0.
  size_t rejected() const { return rejected_; }
  std::vector<Appended> events() {
    std::lock_guard<std::mutex> l(mu_);
    return acked_;
  }

 private:
  void Run() {
    HttpClient client;
    int n = 0;
    while (!stop_) {
      Appended a{NewUuidV7(), "w" + std::to_string(writer_) + "-s" +
                                  std::to_string(n % streams_)};
      std::string body = "{\"id\":\"" + a.id + "\",\"stream\":\"" + a.stream +
                         "\",\"type\":\"order.placed\",\"payload\":{\"n\":" +
                         std::to_string(n) + "}}";
      // Retried until acknowledged, even after Stop(): an attempt that may
      // have committed must be settled before the test counts events.
      // Gives up (and says so) only if the server never answers again.
      auto give_up =
          std::chrono::steady_clock::now() + std::chrono::seconds(60);
      bool ok = false;
      while (true) {
        HttpResult r =
            client.Request("POST", base_ + "/api/events", body, {}, 10000);
        if (r.status == 200 || r.status == 201) {
          ok = true;
          break;
        }
        if (r.status >= 400 && r.status < 500) {
          ++rejected_;  // a bug: the test's events are valid
          break;
        }
        if (std::chrono::steady_clock::now() > give_up) {
          ++rejected_;
          break;
        }
        ++failed_;  // 503 (or no answer) while the database is down
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (!ok) return;  // the test fails on rejected()
      {
        std::lock_guard<std::mutex> l(mu_);
        acked_.push_back(a);
      }
      ++acked_count_;
      ++n;
    }
  }

  std::string base_;
  int writer_, streams_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> acked_count_{0}, failed_{0}, rejected_{0};
  std::mutex mu_;
  std::vector<Appended> acked_;
  std::thread thread_;
};

struct Delivered {
  std::string id, stream;
  int64_t position = 0;
};

// The events written to a `file:` sink (structured CloudEvents lines).
std::vector<Delivered> ReadSink(const std::string& path) {
  std::vector<Delivered> out;
  std::istringstream in(testing::ReadFile(path));
  std::string line;
  while (std::getline(in, line)) {
    auto j = Json::Parse(line);
    if (!j.ok()) continue;  // a torn last line while the sink writes
    Delivered d;
    if (const Json* m = j->Find("id"); m && m->is_string())
      d.id = m->as_string();
    if (const Json* m = j->Find("subject"); m && m->is_string()) {
      d.stream = m->as_string();
    }
    if (const Json* m = j->Find("position")) (void)m->TryInt64(&d.position);
    out.push_back(d);
  }
  return out;
}

// Checks every acknowledged event reached the sink at least once, and per
// stream first deliveries follow append order.
void CheckSink(const std::string& name, const std::vector<Delivered>& log,
               const std::vector<Appended>& acked) {
  std::set<std::string> seen;
  std::map<std::string, std::vector<std::string>> firsts;  // stream -> ids
  for (const auto& d : log) {
    if (seen.insert(d.id).second) firsts[d.stream].push_back(d.id);
  }
  std::map<std::string, std::vector<std::string>> want;
  for (const auto& a : acked) want[a.stream].push_back(a.id);
  for (const auto& [stream, ids] : want) {
    // The sink may also hold nothing extra: acknowledged is all there is.
    EXPECT_EQ(firsts[stream], ids) << name << ": stream " << stream;
  }
  EXPECT_EQ(seen.size(), acked.size()) << name;
}

TEST(PostgresE2E, RestartWhileRelayAndServerRunLosesNothing) {
  PrivateCluster cluster;
  ASSERT_TRUE(cluster.ok()) << "could not start a private PostgreSQL cluster";
  testing::TempDir dir;
  std::string out, err;
  ASSERT_EQ(
      RunCommand({HeraldBin(), "migrate", "--db", cluster.url()}, &out, &err),
      0)
      << err;

  // `herald serve` runs route "served"; a separate `herald relay` runs
  // route "relayed". Short leases so a route that lost its lease while the
  // database was down takes it back quickly.
  std::string served_sink = dir.file("served.jsonl");
  std::string relayed_sink = dir.file("relayed.jsonl");
  auto config = [&](const std::string& route, const std::string& sink) {
    return "[store]\nurl = \"" + cluster.url() +
           "\"\n[relay]\nidle_poll = \"100ms\"\nlease_ttl = \"2s\"\n"
           "[[route]]\nname = \"" +
           route + "\"\nsender = \"file:" + sink +
           "\"\nbatch = 100\nbackoff_initial = \"10ms\"\n"
           "backoff_max = \"200ms\"\n";
  };
  testing::ServeProcess serve(dir, cluster.url(),
                              config("served", served_sink));
  ASSERT_TRUE(serve.ready()) << serve.stderr_text();
  std::string relay_config = dir.file("relay.toml");
  testing::WriteFile(relay_config, config("relayed", relayed_sink));
  Child::Options o;
  o.stderr_path = dir.file("relay.err");
  Child relay({HeraldBin(), "relay", "--config", relay_config}, o);

  HttpWriter w1(serve.base(), 1, 5), w2(serve.base(), 2, 5);
  auto acked = [&] { return w1.acked() + w2.acked(); };
  ASSERT_TRUE(WaitFor([&] { return acked() >= 300; }, seconds(30)));

  // Stop the server while appends go on: they fail (503) and are retried.
  ASSERT_EQ(cluster.Ctl("stop -m fast"), 0);
  size_t at_stop = acked();
  ASSERT_TRUE(
      WaitFor([&] { return w1.failed_attempts() + w2.failed_attempts() >= 10; },
              seconds(30)));
  HttpClient client;
  // /health says the store is unavailable while it is down.
  EXPECT_TRUE(WaitFor(
      [&] { return client.Get(serve.base() + "/health").status == 503; }));
  size_t while_down = acked();
  ASSERT_EQ(cluster.Ctl("start"), 0);

  // Appends succeed again; add some more.
  ASSERT_TRUE(
      WaitFor([&] { return acked() >= while_down + 300; }, seconds(60)));
  w1.Stop();
  w2.Stop();
  EXPECT_EQ(w1.rejected() + w2.rejected(), 0u);
  std::vector<Appended> events = w1.events();
  for (const auto& a : w2.events()) events.push_back(a);
  std::printf(
      "acknowledged %zu (at stop %zu, while down %zu), failed "
      "attempts %zu\n",
      events.size(), at_stop, while_down,
      w1.failed_attempts() + w2.failed_attempts());

  // Every acknowledged event is stored exactly once, at dense positions,
  // each stream in append order. Positions come from the sequencer just
  // after the commit: wait until every event has one.
  std::vector<Delivered> stored;
  auto read_all = [&] {
    stored.clear();
    int64_t offset = 0;
    while (true) {
      HttpResult r = client.Get(serve.base() + "/api/events?offset=" +
                                std::to_string(offset) + "&limit=1000");
      if (r.status != 200) return false;
      auto doc = Json::Parse(r.body);
      if (!doc.ok()) return false;
      const Json* evs = doc->Find("events");
      const Json* next = doc->Find("next_offset");
      if (!evs || !next || !next->TryInt64(&offset)) return false;
      if (!evs->is_array() || evs->items().empty()) break;
      for (const Json& e : evs->items()) {
        Delivered d;
        d.id = e.Find("id")->as_string();
        d.stream = e.Find("stream")->as_string();
        (void)e.Find("position")->TryInt64(&d.position);
        stored.push_back(d);
      }
    }
    return stored.size() >= events.size();
  };
  ASSERT_TRUE(WaitFor(read_all, seconds(30)))
      << "stored " << stored.size() << " of " << events.size();
  ASSERT_EQ(stored.size(), events.size());
  std::set<std::string> ids;
  for (size_t i = 0; i < stored.size(); ++i) {
    EXPECT_EQ(stored[i].position, static_cast<int64_t>(i + 1));
    EXPECT_TRUE(ids.insert(stored[i].id).second)
        << "stored twice: " << stored[i].id;
  }
  for (const auto& a : events) EXPECT_TRUE(ids.count(a.id)) << a.id;
  std::map<std::string, std::vector<std::string>> stored_order, want_order;
  for (const auto& d : stored) stored_order[d.stream].push_back(d.id);
  for (const auto& a : events) want_order[a.stream].push_back(a.id);
  EXPECT_EQ(stored_order, want_order);

  // Both routes deliver everything, at least once, in stream order.
  for (const auto& [name, sink] :
       {std::pair{std::string("serve"), served_sink},
        std::pair{std::string("relay"), relayed_sink}}) {
    ASSERT_TRUE(WaitFor(
        [&] {
          std::set<std::string> got;
          for (const auto& d : ReadSink(sink)) got.insert(d.id);
          return got.size() >= events.size();
        },
        seconds(30)))
        << name << " sink has " << ReadSink(sink).size() << " lines";
    CheckSink(name, ReadSink(sink), events);
  }

  // /health is back to ok, and neither process exited on the way.
  EXPECT_TRUE(WaitFor([&] {
    HttpResult r = client.Get(serve.base() + "/health");
    auto doc = Json::Parse(r.body);
    const Json* s = doc.ok() ? doc->Find("status") : nullptr;
    return r.status == 200 && s && s->is_string() && s->as_string() == "ok";
  })) << client.Get(serve.base() + "/health").body;
  EXPECT_EQ(testing::MetricValue(client.Get(serve.base() + "/metrics").body,
                                 "herald_store_up"),
            1);
  EXPECT_TRUE(serve.child().running()) << serve.stderr_text();
  EXPECT_TRUE(relay.running()) << testing::ReadFile(dir.file("relay.err"));
  EXPECT_EQ(serve.Stop(), 0) << serve.stderr_text();
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0) << testing::ReadFile(dir.file("relay.err"));
}

}  // namespace
}  // namespace herald
