// End to end: the built `herald relay` publishing to a real RabbitMQ server
// (tests/support/with-rabbitmq.sh) while this process appends to a SQLite
// store, and a real consumer (rabbitmq-c) reading the queue bound to the
// exchange: every event present and per-stream order of first appearance
// kept, through a broker restart, closed connections, an unroutable
// stream (park or block) and SIGKILLs of the relay.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "herald/json.h"
#include "herald/store.h"
#include "rabbitmq/amqp_client.h"
#include "support/test_util.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::AmqpClient;
using testing::AmqpUrl;
using testing::Child;
using testing::HeraldBin;
using testing::RunCommand;
using testing::WaitFor;

class RabbitE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (AmqpUrl().empty()) {
      // CI runs under with-rabbitmq.sh: there a missing server is a failure.
      if (std::getenv("CI")) FAIL() << "HERALD_TEST_AMQP_URL is not set";
      GTEST_SKIP() << "HERALD_TEST_AMQP_URL is not set (run under "
                      "tests/support/with-rabbitmq.sh)";
    }
    url_ = "sqlite:" + dir_.file("h.db");
    auto s = OpenStore(url_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    tag_ = std::to_string(::getpid()) + "." + std::to_string(++counter_);
    exchange_ = "e2e." + tag_;
    queue_ = "e2e." + tag_;
    amqp_ = std::make_unique<AmqpClient>();
    ASSERT_TRUE(amqp_->ok());
    amqp_->Exchange(exchange_, "direct");
    amqp_->Queue(queue_);
  }

  // Binds the queue for each stream s-0 .. s-(n-1) (routing key = stream).
  void BindStreams(int n) {
    for (int s = 0; s < n; ++s) {
      amqp_->Bind(queue_, exchange_, "s-" + std::to_string(s));
    }
  }

  std::string Config(const std::string& extra,
                     const std::string& name = "c.toml") {
    std::string path = dir_.file(name);
    std::ofstream(path) << "[store]\nurl = \"" << url_
                        << "\"\n[relay]\nidle_poll = \"100ms\"\n"
                        << "\n[[route]]\nname = \"r\"\nsender = \"" << AmqpUrl()
                        << "\"\nexchange = \"" << exchange_
                        << "\"\nrouting_key = \"{stream}\"\n"
                        << "backoff_initial = \"5ms\"\nbackoff_max = "
                           "\"200ms\"\n"
                        << extra;
    return path;
  }

  Child StartRelay(const std::string& config) {
    Child::Options o;
    o.stderr_path = dir_.file("relay.err");
    return Child({HeraldBin(), "relay", "--config", config}, o);
  }

  void Append(int n, int streams, int per_tx = 10) {
    std::vector<Event> batch;
    for (int i = 0; i < n; ++i) {
      Event e;
      e.stream = "s-" + std::to_string(next_++ % streams);
      e.type = "order.placed";
      e.payload = "{\"i\":" + std::to_string(i) + "}";
      batch.push_back(e);
      if (static_cast<int>(batch.size()) == per_tx || i + 1 == n) {
        auto r = store_->Append(std::span<Event>(batch));
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        events_.insert(events_.end(), batch.begin(), batch.end());
        batch.clear();
      }
    }
  }

  // Reads the queue until every id of `events_` (or `want` ids) arrived,
  // or `timeout` passed. Returns the number of distinct ids read so far.
  size_t ReadUntil(size_t want, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (ids_.size() < want && std::chrono::steady_clock::now() < deadline) {
      if (!amqp_ || !amqp_->ok()) amqp_ = std::make_unique<AmqpClient>();
      for (auto& m :
           amqp_->Read(queue_, want - ids_.size(), milliseconds(500))) {
        ids_.insert(m.id);
        got_.push_back(std::move(m.id));
      }
    }
    return ids_.size();
  }

  // Every appended event arrived; per stream, first appearances in append
  // order. Returns the number of duplicates.
  size_t CheckDelivered() {
    std::map<std::string, const Event*> by_id;
    for (const auto& e : events_) by_id[e.id] = &e;
    std::map<std::string, int64_t> last;
    std::set<std::string> seen;
    size_t dups = 0;
    for (const auto& id : got_) {
      auto it = by_id.find(id);
      if (it == by_id.end()) {
        ADD_FAILURE() << "a message not appended here: " << id;
        continue;
      }
      if (!seen.insert(id).second) {
        ++dups;
        continue;
      }
      const Event& e = *it->second;
      EXPECT_LT(last[e.stream], e.position)
          << "stream " << e.stream << " out of order";
      last[e.stream] = e.position;
    }
    size_t missing = 0;
    for (const auto& e : events_) missing += !seen.count(e.id);
    EXPECT_EQ(missing, 0u) << "events never arrived";
    return dups;
  }

  std::vector<Json> JsonLines(const std::vector<std::string>& argv,
                              std::string* keep) {
    std::string err;
    EXPECT_EQ(RunCommand(argv, keep, &err), 0) << err;
    std::vector<Json> rows;
    std::istringstream ss(*keep);
    std::string line;
    while (std::getline(ss, line)) {
      auto j = Json::Parse(line);
      if (j.ok()) rows.push_back(*j);
    }
    return rows;
  }
  std::vector<Json> Status(const std::string& config) {
    return JsonLines({HeraldBin(), "relay", "status", "--config", config},
                     &status_text_);
  }
  std::vector<Json> Parked(const std::string& config) {
    return JsonLines(
        {HeraldBin(), "parked", "list", "--config", config, "--route", "r"},
        &parked_text_);
  }
  static int64_t Int(const Json& j, const char* key) {
    int64_t v = -1;
    const Json* m = j.Find(key);
    if (m) (void)m->TryInt64(&v);
    return v;
  }
  static std::string Str(const Json& j, const char* key) {
    const Json* m = j.Find(key);
    return m && m->is_string() ? m->as_string() : "";
  }

  testing::TempDir dir_;
  std::string url_, tag_, exchange_, queue_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<AmqpClient> amqp_;
  std::vector<Event> events_;
  std::vector<std::string> got_;  // message ids in arrival order
  std::set<std::string> ids_;
  int next_ = 0;
  std::string status_text_, parked_text_;
  static inline int counter_ = 0;
};

TEST_F(RabbitE2E, TenThousandEventsOverFiftyStreamsReachTheQueueInOrder) {
  BindStreams(50);
  Child relay = StartRelay(Config("batch = 200\nmax_in_flight = 100\n"));
  Append(10000, 50, 100);
  ASSERT_EQ(ReadUntil(10000, seconds(60)), 10000u);
  EXPECT_EQ(CheckDelivered(), 0u);
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  auto rows = Status(dir_.file("c.toml"));
  ASSERT_EQ(rows.size(), 1u) << status_text_;
  EXPECT_EQ(Int(rows[0], "checkpoint"), 10001);
  EXPECT_EQ(Int(rows[0], "lag_events"), 0);
}

TEST_F(RabbitE2E, ABrokerRestartAndClosedConnectionsLoseNothing) {
  BindStreams(20);
  std::string config = Config("batch = 50\nmax_in_flight = 20\n");
  Child relay = StartRelay(config);
  Append(1000, 20);
  ASSERT_EQ(ReadUntil(1000, seconds(30)), 1000u);
  // Connections closed by the operator while events flow.
  Append(500, 20);
  ASSERT_EQ(testing::RabbitCtl({"close_all_connections", "herald test"}), 0);
  amqp_.reset();
  ASSERT_EQ(ReadUntil(1500, seconds(30)), 1500u);
  // The server stopped; events appended meanwhile wait, with the reason.
  amqp_.reset();
  ASSERT_EQ(testing::RabbitServer("stop"), 0);
  Append(1000, 20);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = Status(config);
        return !r.empty() && !Str(r[0], "last_error").empty() &&
               Int(r[0], "lag_events") > 0;
      },
      seconds(20)))
      << status_text_;
  ASSERT_EQ(testing::RabbitServer("start"), 0);
  Append(500, 20);
  ASSERT_EQ(ReadUntil(3000, seconds(60)), 3000u);
  size_t dups = CheckDelivered();
  EXPECT_LE(dups, 100u);
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
}

TEST_F(RabbitE2E, AnUnroutableStreamIsParkedWhileTheOthersFlow) {
  BindStreams(2);  // s-2 has no binding: its messages come back
  std::string config =
      Config("on_failure = \"park\"\nmax_attempts = 2\nbatch = 20\n");
  Child relay = StartRelay(config);
  Append(30, 3);  // 10 events per stream
  ASSERT_EQ(ReadUntil(20, seconds(30)), 20u);
  ASSERT_TRUE(WaitFor([&] { return Parked(config).size() == 10; }, seconds(20)))
      << parked_text_;
  auto parked = Parked(config);
  int first = 0, held = 0;
  for (const auto& p : parked) {
    std::string state = Str(p, "state");
    first += state == "parked";
    held += state == "held";
    if (state == "parked") {
      EXPECT_NE(Str(p, "error").find("unroutable"), std::string::npos)
          << parked_text_;
    }
  }
  EXPECT_EQ(first, 1) << parked_text_;
  EXPECT_EQ(held, 9) << parked_text_;
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  // Nothing of s-2 was delivered anywhere; s-0 and s-1 in order.
  for (const auto& id : got_) {
    for (const auto& e : events_) {
      if (e.id == id) {
        EXPECT_NE(e.stream, "s-2");
      }
    }
  }
}

TEST_F(RabbitE2E, AnUnroutableStreamBlocksTheRouteUntilItIsBound) {
  BindStreams(2);
  std::string config = Config("on_failure = \"block\"\nbatch = 20\n");
  Child relay = StartRelay(config);
  Append(30, 3);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = Status(config);
        return !r.empty() &&
               Str(r[0], "last_error").find("unroutable") != std::string::npos;
      },
      seconds(20)))
      << status_text_;
  EXPECT_TRUE(Parked(config).empty()) << parked_text_;
  // The user binds s-2: the blocked events go, in order.
  amqp_->Bind(queue_, exchange_, "s-2");
  ASSERT_EQ(ReadUntil(30, seconds(30)), 30u);
  CheckDelivered();
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
}

TEST_F(RabbitE2E, SigkilledRelaysUnderLoadLoseNothingAndKeepOrder) {
  BindStreams(20);
  std::string config = Config("batch = 100\nmax_in_flight = 50\n");
  std::mt19937 rng(std::random_device{}());
  const int kTrials = 6;
  for (int t = 0; t < kTrials; ++t) {
    SCOPED_TRACE("trial " + std::to_string(t));
    Child relay = StartRelay(config);
    Append(600, 20, 20);
    // Killed somewhere between just started and well under way.
    std::this_thread::sleep_for(
        milliseconds(std::uniform_int_distribution<int>(20, 600)(rng)));
    relay.Signal(SIGKILL);
    relay.Wait();
  }
  Child relay = StartRelay(config);
  ASSERT_EQ(ReadUntil(events_.size(), seconds(60)), events_.size());
  size_t dups = CheckDelivered();
  // At most the unacknowledged part of a batch per kill.
  EXPECT_LE(dups, static_cast<size_t>(kTrials * 100));
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
}

}  // namespace
}  // namespace herald
