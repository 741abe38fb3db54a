// End to end: the built `herald relay` process publishing over TCP to a
// librdkafka mock cluster served by the herald_test_kafka_mock process (3
// brokers on 127.0.0.1; no Kafka broker runs on this machine), while this
// test appends to a SQLite store; a real consumer reads the partitions back
// with assign(). 10,000 events over 50 streams, the leader of some
// partitions down for 5 s in the middle, injected permanent broker errors
// (park and block), and SIGKILLs of the relay under load: every event
// present, each key on Java's murmur2 partition, and per stream the order
// of first appearance kept.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "herald/store.h"
#include "kafka/kafka_test_util.h"
#include "support/relay_e2e.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BackgroundWriter;
using testing::Child;
using testing::HeraldBin;
using testing::JsonInt;
using testing::JsonStr;
using testing::WaitFor;

constexpr int kPartitions = 6;

class KafkaRelay : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<testing::MockClusterProcess>(
        HERALD_TEST_KAFKA_MOCK, 3,
        std::vector<std::string>{"it:" + std::to_string(kPartitions)});
    ASSERT_TRUE(cluster_->ok()) << cluster_->err();
    auto s = OpenStore("sqlite:" + dir_.file("h.db"));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    reader_ = std::make_unique<testing::KafkaReader>(cluster_->bootstraps(),
                                                     "it", kPartitions);
  }

  // A config with one route "k" publishing to topic "it", key = stream;
  // `extra` goes into the route table.
  std::string Config(const std::string& extra,
                     const std::string& timeout = "10s") {
    std::string path = dir_.file("c.toml");
    std::ofstream(path) << "[store]\nurl = \"sqlite:" << dir_.file("h.db")
                        << "\"\n"
                        << "[relay]\nidle_poll = \"50ms\"\nowner = "
                           "\"kafka-test\"\n"
                        << "[[route]]\nname = \"k\"\nsender = \"kafka://"
                        << cluster_->bootstraps() << "\"\n"
                        << "topic = \"it\"\n"
                        << "backoff_initial = \"5ms\"\nbackoff_max = "
                           "\"200ms\"\n"
                        << "timeout = \"" << timeout << "\"\n"
                        << extra;
    return path;
  }

  Child StartRelay(const std::string& config) {
    Child::Options o;
    o.stderr_path = dir_.file("relay.err");
    return Child({HeraldBin(), "relay", "--config", config}, o);
  }
  std::string RelayLog() const {
    return testing::ReadTextFile(dir_.file("relay.err"));
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

  // Distinct event ids read so far (reading on until `want` or `timeout`).
  size_t ReadDistinct(size_t want, milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto& got =
          reader_->ReadUntil(reader_->records().size() + 1, milliseconds(200));
      for (; seen_ < got.size(); ++seen_)
        ids_.insert(got[seen_].Header("ce_id"));
      if (ids_.size() >= want || std::chrono::steady_clock::now() >= deadline) {
        return ids_.size();
      }
    }
  }

  // Every appended event was read; each on its key's Java partition; per
  // stream, first appearances in append order. Returns the duplicates.
  size_t CheckDelivered() {
    std::map<std::string, const Event*> by_id;
    for (const auto& e : events_) by_id[e.id] = &e;
    std::map<std::string, int64_t> last;  // stream -> last position
    std::set<std::string> seen;
    size_t dups = 0;
    for (const auto& r : reader_->records()) {
      std::string id = r.Header("ce_id");
      auto it = by_id.find(id);
      if (it == by_id.end()) {
        ADD_FAILURE() << "a record no event made: " << id;
        continue;
      }
      if (!seen.insert(id).second) {
        ++dups;
        continue;
      }
      const Event& e = *it->second;
      EXPECT_EQ(r.key, e.stream);
      EXPECT_EQ(r.partition, testing::JavaPartition(e.stream, kPartitions))
          << e.stream;
      int64_t& l = last[e.stream];
      EXPECT_LT(l, e.position) << "stream " << e.stream << " out of order";
      l = e.position;
    }
    size_t missing = 0;
    for (const auto& e : events_) missing += !seen.count(e.id);
    EXPECT_EQ(missing, 0u) << "events never delivered";
    return dups;
  }

  std::vector<Json> StatusRows(const std::string& config) {
    return testing::RelayStatusRows(config, &status_text_);
  }
  std::vector<Json> ParkedRows(const std::string& config) {
    return testing::ParkedRows(config, "k", &parked_text_);
  }

  testing::TempDir dir_;
  std::unique_ptr<testing::MockClusterProcess> cluster_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<testing::KafkaReader> reader_;
  std::mutex mu_;
  std::vector<Event> events_;  // guarded by mu_ while a writer runs
  int next_ = 0;
  size_t seen_ = 0;
  std::set<std::string> ids_;
  std::string status_text_, parked_text_;
};

TEST_F(KafkaRelay, TenThousandEventsOverFiftyStreamsArriveInOrder) {
  std::string config = Config("batch = 500\nmax_in_flight = 64\n");
  Child relay = StartRelay(config);
  Append(10000, 50);
  ASSERT_EQ(ReadDistinct(10000, seconds(90)), 10000u) << RelayLog();
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  reader_->Drain(milliseconds(300));
  EXPECT_EQ(CheckDelivered(), 0u) << "no crash, so no repeats";
  auto rows = StatusRows(config);
  ASSERT_EQ(rows.size(), 1u) << status_text_;
  EXPECT_EQ(JsonInt(rows[0], "checkpoint"), 10001);
  EXPECT_EQ(JsonInt(rows[0], "lag_events"), 0);
}

// The leader of partitions 0 and 3 (broker 1) refuses connections for
// about five seconds while events keep coming: the route reports it, and
// everything arrives once it is back, in order.
TEST_F(KafkaRelay, ALeaderDownForFiveSecondsLosesNothing) {
  std::string config = Config("batch = 200\nmax_in_flight = 32\n", "2s");
  Child relay = StartRelay(config);
  Append(3000, 50);
  ASSERT_GE(ReadDistinct(1000, seconds(30)), 1000u) << RelayLog();
  ASSERT_EQ(cluster_->Command("down 1"), "ok");
  auto stopped = std::chrono::steady_clock::now();
  Append(3000, 50);  // appended while the leader is away
  // The route says why while the leader is away (once records time out,
  // `timeout` = 2 s, or a busy machine later), then the outage lasts five
  // seconds at least (an outage, not a wait for a condition).
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = StatusRows(config);
        return !r.empty() && !JsonStr(r[0], "last_error").empty();
      },
      seconds(30)))
      << status_text_;
  std::this_thread::sleep_until(stopped + seconds(5));
  ASSERT_EQ(cluster_->Command("up 1"), "ok");
  ASSERT_EQ(ReadDistinct(6000, seconds(60)), 6000u) << RelayLog();
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  reader_->Drain(milliseconds(300));
  CheckDelivered();
}

// A permanent broker error (INVALID_RECORD, injected for the next Produce
// request) with on_failure = "park": the event is parked with the error,
// its stream held behind it, and every other stream flows.
TEST_F(KafkaRelay, APermanentBrokerErrorIsParked) {
  std::string config =
      Config("on_failure = \"park\"\nmax_attempts = 2\nbatch = 50\n");
  Child relay = StartRelay(config);
  Append(100, 5);
  ASSERT_EQ(ReadDistinct(100, seconds(30)), 100u) << RelayLog();
  // The relay is idle now: the next Produce request carries the first
  // event of "bad-0" alone.
  ASSERT_EQ(cluster_->Command("errors 0 87"), "ok");
  Append(3, 1, 100, "bad-");
  ASSERT_TRUE(
      WaitFor([&] { return ParkedRows(config).size() == 3; }, seconds(30)))
      << parked_text_ << RelayLog();
  Append(100, 5);
  ASSERT_EQ(ReadDistinct(200, seconds(30)), 200u) << RelayLog();
  auto parked = ParkedRows(config);
  ASSERT_EQ(parked.size(), 3u);
  EXPECT_EQ(JsonStr(parked[0], "state"), "parked");
  EXPECT_NE(JsonStr(parked[0], "error").find("INVALID_RECORD"),
            std::string::npos)
      << parked_text_;
  EXPECT_EQ(JsonStr(parked[1], "state"), "held");
  EXPECT_EQ(JsonStr(parked[2], "state"), "held");
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  reader_->Drain(milliseconds(300));
  EXPECT_EQ(ids_.size(), 200u) << "a parked or held event was delivered";
  auto rows = StatusRows(config);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(JsonInt(rows[0], "parked"), 1);
  EXPECT_EQ(JsonInt(rows[0], "held"), 2);
}

// With on_failure = "block" (the default) the route waits at the event
// while the broker keeps refusing it, and says why; once the broker takes
// it again everything arrives, in order.
TEST_F(KafkaRelay, APermanentBrokerErrorBlocksTheRoute) {
  std::string config = Config("batch = 10\n");
  Child relay = StartRelay(config);
  Append(20, 2);
  ASSERT_EQ(ReadDistinct(20, seconds(30)), 20u) << RelayLog();
  std::string errors = "errors 0";
  for (int i = 0; i < 200; ++i) errors += " 87";
  ASSERT_EQ(cluster_->Command(errors), "ok");
  Append(1, 1, 100, "bad-");  // position 21
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = StatusRows(config);
        return !r.empty() &&
               JsonStr(r[0], "last_error").find("INVALID_RECORD") !=
                   std::string::npos;
      },
      seconds(30)))
      << status_text_;
  Append(20, 2);
  auto rows = StatusRows(config);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(JsonInt(rows[0], "checkpoint"), 21);  // waiting at position 21
  EXPECT_TRUE(ParkedRows(config).empty());
  ASSERT_EQ(cluster_->Command("clear 0"), "ok");
  ASSERT_EQ(ReadDistinct(41, seconds(30)), 41u) << RelayLog();
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  reader_->Drain(milliseconds(300));
  CheckDelivered();
}

// The relay SIGKILLed at random moments under load: after a final run
// every event is there and per stream the order of first appearance is
// the append order (repeats of an unacknowledged batch are allowed: the
// idempotent producer dedupes only within one producer session).
TEST_F(KafkaRelay, SigkillAtRandomMomentsLosesNothingAndKeepsOrder) {
  std::string config = Config("batch = 100\nmax_in_flight = 16\n");
  BackgroundWriter writer([&] {
    Append(20, 30, 20);
    std::this_thread::sleep_for(milliseconds(5));
  });
  std::mt19937 rng(4242);
  const int trials = 10;
  size_t read_before = 0;
  int progressed = 0;
  for (int trial = 0; trial < trials; ++trial) {
    Child relay = StartRelay(config);
    std::this_thread::sleep_for(
        milliseconds(std::uniform_int_distribution<int>(100, 600)(rng)));
    relay.Signal(SIGKILL);
    relay.Wait();
    size_t now = ReadDistinct(0, milliseconds(0));
    progressed += now > read_before;
    read_before = now;
  }
  writer.Stop();
  EXPECT_GE(progressed, trials / 2) << "the relay hardly ran between kills";
  Child relay = StartRelay(config);
  size_t total = events_.size();
  ASSERT_GT(total, 2000u);
  ASSERT_LT(total, 60000u) << "keep under the mock's retention";
  ASSERT_EQ(ReadDistinct(total, seconds(60)), total) << RelayLog();
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  reader_->Drain(milliseconds(300));
  size_t dups = CheckDelivered();
  RecordProperty("duplicates", static_cast<int>(dups));
}

}  // namespace
}  // namespace herald
