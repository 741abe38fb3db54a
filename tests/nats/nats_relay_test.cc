// End to end: the built `herald relay` process publishing to a real
// nats-server with JetStream (started and stopped by the test on
// 127.0.0.1), while this test appends to a SQLite store; the JetStream
// stream is read back by a pull consumer. 10,000 events over 50 streams, a
// server restart in the middle, a subject no stream captures (park and
// block), and SIGKILLs of the relay under load: nothing lost, per-stream
// order kept, each event stored once (Nats-Msg-Id).
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "herald/json.h"
#include "herald/store.h"
#include "nats/nats_test_util.h"
#include "support/relay_e2e.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BackgroundWriter;
using testing::Child;
using testing::HeraldBin;
using testing::RunCommand;
using testing::WaitFor;

class NatsRelay : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.ready()) << server_.log();
    admin_ = std::make_unique<testing::JetStreamAdmin>(server_.url());
    ASSERT_TRUE(admin_->ok()) << admin_->error();
    auto s = OpenStore("sqlite:" + dir_.file("h.db"));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  // A config with one route "n" publishing to subject
  // it.{category}.{stream}; `extra` goes into the route table.
  std::string Config(const std::string& extra) {
    std::string path = dir_.file("c.toml");
    std::ofstream(path)
        << "[store]\nurl = \"sqlite:" << dir_.file("h.db") << "\"\n"
        << "[relay]\nidle_poll = \"50ms\"\nowner = \"nats-test\"\n"
        << "[[route]]\nname = \"n\"\nsender = \"" << server_.url() << "\"\n"
        << "subject = \"it.{category}.{stream}\"\n"
        << "backoff_initial = \"5ms\"\nbackoff_max = \"200ms\"\n"
        << "timeout = \"2s\"\nconnect_timeout = \"500ms\"\n"
        << extra;
    return path;
  }

  Child StartRelay(const std::string& config) {
    Child::Options o;
    o.stderr_path = dir_.file("relay.err");
    return Child({HeraldBin(), "relay", "--config", config}, o);
  }

  // Appends `n` events round-robin over `streams` streams ("s-0"...),
  // `per_tx` a transaction. Thread-safe.
  void Append(int n, int streams, int per_tx = 100,
              const std::string& prefix = "s-") {
    std::vector<Event> batch;
    for (int i = 0; i < n; ++i) {
      Event e;
      e.stream = prefix + std::to_string(next_++ % streams);
      e.type = "order.placed";
      e.payload = "{\"i\":" + std::to_string(i) + "}";
      batch.push_back(e);
      if (static_cast<int>(batch.size()) == per_tx || i + 1 == n) {
        auto r = store_->Append(std::span<Event>(batch));
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        std::lock_guard<std::mutex> lock(mu_);
        events_.insert(events_.end(), batch.begin(), batch.end());
        batch.clear();
      }
    }
  }

  // Reads the stream back and checks: every appended event is there
  // exactly once, and per stream in append order. Returns how many
  // messages the stream holds.
  size_t CheckStored(const std::string& stream_name = "it") {
    auto got = admin_->ReadAll(stream_name);
    std::map<std::string, const Event*> by_id;
    for (const auto& e : events_) by_id[e.id] = &e;
    std::map<std::string, int> copies;
    std::map<std::string, int64_t> last;  // stream -> last position
    for (const auto& m : got) {
      auto it = by_id.find(m.id);
      EXPECT_NE(it, by_id.end()) << "a message no event made: " << m.id;
      if (it == by_id.end()) continue;
      if (++copies[m.id] > 1) continue;
      const Event& e = *it->second;
      EXPECT_EQ(m.subject, "it.s." + e.stream);
      int64_t& l = last[e.stream];
      EXPECT_LT(l, e.position) << "stream " << e.stream << " out of order";
      l = e.position;
    }
    size_t missing = 0, repeated = 0;
    for (const auto& e : events_) {
      int n = copies[e.id];
      if (n == 0) ++missing;
      if (n > 1) ++repeated;
    }
    EXPECT_EQ(missing, 0u) << "events never stored";
    EXPECT_EQ(repeated, 0u) << "events stored more than once";
    return got.size();
  }

  std::vector<Json> StatusRows(const std::string& config) {
    std::string err;
    EXPECT_EQ(RunCommand({HeraldBin(), "relay", "status", "--config", config},
                         &status_text_, &err),
              0)
        << err;
    return ParseLines(status_text_, &status_lines_);
  }
  std::vector<Json> ParkedRows(const std::string& config) {
    std::string err;
    EXPECT_EQ(RunCommand({HeraldBin(), "parked", "list", "--config", config,
                          "--route", "n"},
                         &parked_text_, &err),
              0)
        << err;
    return ParseLines(parked_text_, &parked_lines_);
  }
  static std::vector<Json> ParseLines(const std::string& text,
                                      std::vector<std::string>* lines) {
    std::istringstream ss(text);
    std::string line;
    lines->clear();
    while (std::getline(ss, line)) lines->push_back(line);
    std::vector<Json> rows;
    for (const auto& l : *lines) {
      auto j = Json::Parse(l);
      if (j.ok()) rows.push_back(*j);
    }
    return rows;
  }
  static std::string Str(const Json& j, const char* key) {
    const Json* m = j.Find(key);
    return m && m->is_string() ? m->as_string() : "";
  }
  static int64_t Int(const Json& j, const char* key) {
    int64_t v = -1;
    const Json* m = j.Find(key);
    if (m) (void)m->TryInt64(&v);
    return v;
  }

  testing::TempDir dir_;
  testing::NatsServer server_;
  std::unique_ptr<testing::JetStreamAdmin> admin_;
  std::unique_ptr<Store> store_;
  std::mutex mu_;
  std::vector<Event> events_;  // guarded by mu_ while a writer runs
  int next_ = 0;
  std::string status_text_, parked_text_;
  std::vector<std::string> status_lines_, parked_lines_;
};

TEST_F(NatsRelay, TenThousandEventsOverFiftyStreamsAreStoredOnceInOrder) {
  ASSERT_EQ(admin_->AddStream("it", {"it.>"}), "");
  std::string config = Config("batch = 500\nmax_in_flight = 64\n");
  Child relay = StartRelay(config);
  Append(10000, 50);
  ASSERT_TRUE(
      WaitFor([&] { return admin_->Count("it") >= 10000; }, seconds(60)))
      << admin_->Count("it") << "\n"
      << testing::ReadTextFile(dir_.file("relay.err"));
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  EXPECT_EQ(CheckStored(), 10000u);
  auto rows = StatusRows(config);
  ASSERT_EQ(rows.size(), 1u) << status_text_;
  EXPECT_EQ(Int(rows[0], "checkpoint"), 10001);
  EXPECT_EQ(Int(rows[0], "lag_events"), 0);
}

TEST_F(NatsRelay, AServerRestartInTheMiddleLosesNothing) {
  ASSERT_EQ(admin_->AddStream("it", {"it.>"}), "");
  std::string config = Config("batch = 200\nmax_in_flight = 32\n");
  Child relay = StartRelay(config);
  Append(3000, 50);
  ASSERT_TRUE(
      WaitFor([&] { return admin_->Count("it") >= 1000; }, seconds(30)));
  admin_.reset();
  server_.Stop();
  auto stopped = std::chrono::steady_clock::now();
  Append(3000, 50);  // appended while the server is down
  // The route retries and says why while the server is away.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = StatusRows(config);
        return !r.empty() && !Str(r[0], "last_error").empty();
      },
      seconds(10)))
      << status_text_;
  // Down for about five seconds (an outage, not a wait for a condition).
  std::this_thread::sleep_until(stopped + seconds(5));
  ASSERT_TRUE(server_.Start()) << server_.log();
  admin_ = std::make_unique<testing::JetStreamAdmin>(server_.url());
  ASSERT_TRUE(admin_->ok());
  ASSERT_TRUE(WaitFor([&] { return admin_->Count("it") >= 6000; }, seconds(60)))
      << admin_->Count("it") << "\n"
      << testing::ReadTextFile(dir_.file("relay.err"));
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  EXPECT_EQ(CheckStored(), 6000u);
}

// herald does not create streams: a subject no stream captures is a
// permanent failure; with on_failure = "park" the event is parked (its
// stream held behind it) and every other stream flows.
TEST_F(NatsRelay, ASubjectWithNoStreamIsParked) {
  ASSERT_EQ(admin_->AddStream("it", {"it.s.>"}), "");
  std::string config =
      Config("on_failure = \"park\"\nmax_attempts = 2\nbatch = 50\n");
  Child relay = StartRelay(config);
  Append(100, 5);              // s-0..s-4: captured
  Append(3, 1, 100, "lost-");  // it.lost.lost-0: not captured
  Append(100, 5);
  ASSERT_TRUE(
      WaitFor([&] { return ParkedRows(config).size() == 3; }, seconds(30)))
      << parked_text_ << testing::ReadTextFile(dir_.file("relay.err"));
  ASSERT_TRUE(WaitFor([&] { return admin_->Count("it") >= 200; }, seconds(30)));
  auto parked = ParkedRows(config);
  ASSERT_EQ(parked.size(), 3u);
  EXPECT_EQ(Str(parked[0], "state"), "parked");
  EXPECT_NE(Str(parked[0], "error").find("no JetStream stream captures"),
            std::string::npos)
      << parked_text_;
  EXPECT_NE(Str(parked[0], "error").find("it.lost.lost-0"), std::string::npos)
      << parked_text_;
  EXPECT_EQ(Str(parked[1], "state"), "held");
  EXPECT_EQ(Str(parked[2], "state"), "held");
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  EXPECT_EQ(admin_->Count("it"), 200);
  auto rows = StatusRows(config);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(Int(rows[0], "parked"), 1);
  EXPECT_EQ(Int(rows[0], "held"), 2);
}

// With on_failure = "block" (the default) the route waits at the event,
// keeping total order, and reports why.
TEST_F(NatsRelay, ASubjectWithNoStreamBlocksTheRoute) {
  ASSERT_EQ(admin_->AddStream("it", {"it.s.>"}), "");
  std::string config = Config("batch = 10\n");
  Child relay = StartRelay(config);
  Append(20, 2);
  Append(1, 1, 100, "lost-");
  Append(20, 2);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = StatusRows(config);
        return !r.empty() &&
               Str(r[0], "last_error").find("no JetStream stream captures") !=
                   std::string::npos;
      },
      seconds(30)))
      << status_text_;
  ASSERT_TRUE(WaitFor([&] { return admin_->Count("it") >= 20; }, seconds(10)));
  auto rows = StatusRows(config);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(Int(rows[0], "checkpoint"), 21);  // waiting at position 21
  // Nothing past the batch that holds it (positions 21..30) was published:
  // the other streams' events of that batch at most.
  EXPECT_LE(admin_->Count("it"), 29);
  EXPECT_TRUE(ParkedRows(config).empty());
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
}

// The relay SIGKILLed at random moments under load: after a final run
// every event is stored exactly once (repeats absorbed by Nats-Msg-Id) and
// per stream in append order.
TEST_F(NatsRelay, SigkillAtRandomMomentsStoresEachEventOnceInOrder) {
  ASSERT_EQ(admin_->AddStream("it", {"it.>"}), "");
  std::string config = Config("batch = 100\nmax_in_flight = 16\n");
  BackgroundWriter writer([&] {
    Append(20, 30, 20);
    std::this_thread::sleep_for(milliseconds(5));
  });
  std::mt19937 rng(4242);
  const int trials = 10;
  int64_t stored_before = 0;
  int progressed = 0;
  for (int trial = 0; trial < trials; ++trial) {
    Child relay = StartRelay(config);
    std::this_thread::sleep_for(
        milliseconds(std::uniform_int_distribution<int>(100, 600)(rng)));
    relay.Signal(SIGKILL);
    relay.Wait();
    // Down a moment (an outage, as a crashed process has): repeats then
    // come later than a short duplicate window would absorb.
    std::this_thread::sleep_for(
        milliseconds(std::uniform_int_distribution<int>(100, 300)(rng)));
    int64_t now = admin_->Count("it");
    progressed += now > stored_before;
    stored_before = now;
  }
  writer.Stop();
  EXPECT_GE(progressed, trials / 2) << "the relay hardly ran between kills";
  Child relay = StartRelay(config);
  size_t total = events_.size();
  ASSERT_GT(total, 2000u);
  ASSERT_TRUE(WaitFor(
      [&] { return admin_->Count("it") >= static_cast<int64_t>(total); },
      seconds(60)))
      << admin_->Count("it") << " of " << total;
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  EXPECT_EQ(CheckStored(), total);
}

}  // namespace
}  // namespace herald
