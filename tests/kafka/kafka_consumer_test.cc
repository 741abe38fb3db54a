// The Kafka consumer source (kafka://, keys topic + group) against
// librdkafka's mock cluster served over TCP by the herald_test_kafka_mock
// process (one for this binary; a topic per test): events the built relay
// publishes are handled exactly once in effect, in per-stream order,
// through relay and consumer SIGKILLs and a second publishing of the same
// events; a poison event parks its stream while the others finish;
// released records are read again by the next run, `start = "latest"`
// skips what is there, `start` as a time as far as the mock answers it
// (see KafkaConsumerStartTime), the lag is the high watermark minus the
// commit; bad keys are refused with key and line.
#include <gtest/gtest.h>

#include <mutex>
#include <regex>
#include <set>

#include "herald/consumer.h"
#include "herald/consumer_source.h"
#include "herald/time.h"
#include "kafka/kafka_test_util.h"
#include "support/consumer_e2e.h"
#include "support/test_util.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::ConsumerE2E;
using testing::WaitFor;

constexpr int kPartitions = 4;

class KafkaConsumer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new testing::MockClusterProcess(HERALD_TEST_KAFKA_MOCK, 1,
                                               std::vector<std::string>{},
                                               /*fixed_leaders=*/false);
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(cluster_->ok()) << cluster_->err();
    topic_ = "t" + std::to_string(++counter_);
    ASSERT_EQ(cluster_->Command("topic " + topic_ + ":" +
                                std::to_string(kPartitions)),
              "ok");
  }

  std::string Url() const { return "kafka://" + cluster_->bootstraps(); }

  std::string Route(const std::string& name, const std::string& extra = "") {
    return testing::RouteTable(name, Url(),
                               "topic = \"" + topic_ + "\"\n" + extra);
  }

  // A group of this test's own (a member of an earlier test's group would
  // hold up the join until its session times out).
  ConsumerSourceOptions SourceOptions(const std::string& group = "c") {
    auto so = testing::BrokerSourceOptions(
        Url(), {testing::StringOption("topic", topic_),
                testing::StringOption("group", group + "-" + topic_)});
    OptionField k;
    k.key = "kafka";
    k.value.kind = OptionValue::Kind::kTable;
    k.value.fields = KafkaTimeouts();
    so.options.fields.push_back(k);
    return so;
  }

  // Short group timeouts, so a SIGKILLed member's partitions move soon.
  static std::vector<OptionField> KafkaTimeouts() {
    OptionField session, heartbeat;
    session.key = "session.timeout.ms";
    session.value.kind = OptionValue::Kind::kInteger;
    session.value.integer = 6000;
    heartbeat.key = "heartbeat.interval.ms";
    heartbeat.value.kind = OptionValue::Kind::kInteger;
    heartbeat.value.integer = 500;
    return {heartbeat, session};
  }

  // The `partitions` key naming every partition of the topic (of a topic
  // of `count` partitions).
  static OptionField AllPartitions(int count = kPartitions) {
    OptionField parts;
    parts.key = "partitions";
    parts.value.kind = OptionValue::Kind::kArray;
    for (int p = 0; p < count; ++p) {
      OptionValue v;
      v.kind = OptionValue::Kind::kInteger;
      v.integer = p;
      parts.value.items.push_back(v);
    }
    return parts;
  }

  void Publish(std::span<const Event> events, const std::string& mode) {
    testing::PublishWithSender(
        testing::SenderRoute(Url(), {testing::StringOption("topic", topic_),
                                     testing::StringOption("mode", mode)}),
        events);
  }

  // `so` with `start` = `value`, checked as a config's would be.
  static ConsumerSourceOptions WithStart(ConsumerSourceOptions so,
                                         const std::string& value) {
    so.options.fields.push_back(testing::StringOption("start", value));
    EXPECT_TRUE(ValidateSourceOptions(&so).ok());
    return so;
  }

  // The ids of `got` are those of events [from, to) of t_, each once.
  void ExpectEvents(const std::vector<SourceDelivery>& got, size_t from,
                    size_t to) {
    std::set<std::string> ids;
    for (const auto& d : got) ids.insert(d.event.id);
    EXPECT_EQ(ids.size(), got.size()) << "an event came twice";
    EXPECT_EQ(got.size(), to - from);
    for (size_t i = from; i < to; ++i) {
      EXPECT_TRUE(ids.count(t_.events()[i].id)) << "event " << i;
    }
  }

  // A source of `so` (a group or assignment without a commit) that must
  // start at the end: 8 records are there before it starts, nothing waits
  // once it has its position, and of 4 records published then it gets
  // exactly those 4.
  void ExpectOnlyLaterRecords(const ConsumerSourceOptions& so) {
    t_.Append(8, 4);
    Publish(t_.events(), "binary");
    auto source = MakeConsumerSource(so);
    ASSERT_TRUE(source.ok()) << source.status().ToString();
    ConsumerSource& src = **source;
    ASSERT_TRUE(src.Start().ok());
    // Once the fetcher knows the watermarks, it has its position; nothing
    // old comes meanwhile.
    ASSERT_TRUE(WaitFor(
        [&] {
          auto none = src.Poll(100, milliseconds(50));
          EXPECT_TRUE(none.ok() && none->empty());
          return src.Lag().has_value();
        },
        seconds(20)));
    EXPECT_EQ(src.Lag(), 0) << "the 8 old records count as waiting";
    t_.Append(4, 4);
    Publish(std::span<const Event>(t_.events()).subspan(8), "binary");
    ExpectEvents(testing::PollUntil(src, 4), 8, 12);
    testing::ExpectNothingMore(src, milliseconds(300));  // no old record
    src.Close();
  }

  static inline testing::MockClusterProcess* cluster_ = nullptr;
  static inline int counter_ = 0;
  std::string topic_;
  ConsumerE2E t_;
};

TEST_F(KafkaConsumer,
       FiveThousandEventsOnceEachInStreamOrderThroughThreeKindsOfDuplicates) {
  std::string consumer = t_.ConsumerTable(
      Url(), "topic = \"" + topic_ + "\"\ngroup = \"c-" + topic_ +
                 "\"\nkafka = { \"session.timeout.ms\" = 6000, "
                 "\"heartbeat.interval.ms\" = 500 }\n");
  // The dup route publishes s-3 and s-11 again: other records (offsets).
  testing::RunExactlyOnceScenario(
      t_, Route("r") + Route("dup", "streams = [\"s-3\", \"s-11\"]\n"),
      consumer, /*dup_copies=*/500);
}

TEST_F(KafkaConsumer,
       APoisonEventParksItsStreamWhileTheOthersFinishThenRetryDeliversInOrder) {
  testing::RunPoisonScenario(
      t_, SourceOptions(),
      [&](std::span<const Event> events) { Publish(events, "binary"); });
}

TEST_F(KafkaConsumer, ReleasedRecordsAreReadAgainStructuredModeAndLag) {
  t_.Append(6, 3);
  Publish(t_.events(), "structured");
  auto so = SourceOptions();
  auto source = MakeConsumerSource(so);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  ConsumerSource& src = **source;
  EXPECT_EQ(src.kind(), "kafka");
  ASSERT_TRUE(src.Start().ok());
  auto got = testing::PollUntil(src, 6);
  ASSERT_EQ(got.size(), 6u);
  ExpectEvents(got, 0, 6);
  std::map<std::string, const Event*> by_id;
  for (const auto& e : t_.events()) by_id[e.id] = &e;
  std::vector<uint64_t> acks, released;
  std::set<std::string> released_ids;
  for (const auto& d : got) {
    ASSERT_TRUE(by_id.count(d.event.id));
    const Event& want = *by_id[d.event.id];
    testing::ExpectDeliveryOf(d, want);
    // s-1's events are given back; the rest are done.
    if (want.stream == "s-1") {
      released.push_back(d.handle);
      released_ids.insert(d.event.id);
    } else {
      acks.push_back(d.handle);
    }
  }
  ASSERT_EQ(released.size(), 2u);
  ASSERT_TRUE(src.Ack(acks).ok());
  ASSERT_TRUE(src.Release(released).ok());
  // What waits: at least the released ones (the commit of their partition
  // stays below them; records of other streams after them count too).
  std::optional<int64_t> lag;
  ASSERT_TRUE(WaitFor(
      [&] {
        lag = src.Lag();
        return lag && *lag >= 2 && *lag <= 6;
      },
      seconds(10)))
      << (lag ? std::to_string(*lag) : "unknown");
  src.Close();
  // The next run of the group reads s-1's two again (and what follows them
  // in their partition: the commit is a prefix; the inbox absorbs those).
  auto again = MakeConsumerSource(so);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->Start().ok());
  std::vector<SourceDelivery> second;
  ASSERT_TRUE(WaitFor(
      [&] {
        for (auto& d : testing::PollUntil(**again, 1, milliseconds(100))) {
          released_ids.erase(d.event.id);
          second.push_back(std::move(d));
        }
        return released_ids.empty();
      },
      seconds(20)));
  // Acked, with the rest of their partition (records after them may come
  // in a later poll than theirs), nothing waits.
  ASSERT_TRUE((*again)->Ack(testing::HandlesOf(second)).ok());
  std::optional<int64_t> last_lag;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto more = (*again)->Poll(100, milliseconds(50));
        if (more.ok() && !more->empty()) {
          EXPECT_TRUE((*again)->Ack(testing::HandlesOf(*more)).ok());
          for (auto& d : *more) second.push_back(std::move(d));
        }
        last_lag = (*again)->Lag();
        return last_lag == 0;
      },
      seconds(10)))
      << (last_lag ? std::to_string(*last_lag) : "unknown");
  EXPECT_LT(second.size(), 6u) << "records below the commit were read again";
  (*again)->Close();
}

// A new consumer starting at the end (on assigned partitions) gets only
// the records published after it started.
TEST_F(KafkaConsumer, StartLatestSkipsWhatIsThereAndAssignedPartitionsWork) {
  auto so = WithStart(SourceOptions("late"), "latest");
  so.options.fields.push_back(AllPartitions());
  ExpectOnlyLaterRecords(so);
}

// `start` as a time. librdkafka's mock cluster (2.0.2, and still its
// master) answers every ListOffsets by timestamp with offset -1, "no record
// at or after that time": what a real broker answers for a time after every
// record. So what can be checked here is the lookup itself (asked of the
// broker, answered, mapped to the end Start saw), its place after the
// group's commit, and its failure; not the pick of a record in the middle
// of a partition.
class KafkaConsumerStartTime : public KafkaConsumer {
 protected:
  // SourceOptions(group) with `start` = the time one hour from now, after
  // every record of the topic.
  ConsumerSourceOptions AfterEverything(const std::string& group) {
    return WithStart(SourceOptions(group),
                     FormatRfc3339(NowMicros() + 3'600'000'000));
  }

  // Start of assigned partitions with ListOffsets answered `errors` (mock
  // error codes in turn, 0 for an answer) fails with `message`.
  void ExpectStartFails(const std::string& errors, const std::string& message) {
    auto so = AfterEverything("refused");
    so.options.fields.push_back(AllPartitions());
    ASSERT_EQ(cluster_->Command("errors 2 " + errors), "ok");
    auto source = MakeConsumerSource(so);
    ASSERT_TRUE(source.ok());
    Status s = (*source)->Start();
    ASSERT_EQ(cluster_->Command("clear 2"), "ok");
    EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
    EXPECT_NE(s.message().find(message), std::string::npos) << s.ToString();
  }
};

// A new group (no commit): the broker is asked for the first record at or
// after the time, has none, and the group starts at the end.
TEST_F(KafkaConsumerStartTime, ATimeAfterEveryRecordReadsOnlyLaterOnes) {
  ExpectOnlyLaterRecords(AfterEverything("time"));
}

// Records published right after Start returns, before the fetcher has
// begun, are read: Start fixed the position itself (the end as it stood
// just before the lookup). To hold the fetcher back, the mock answers the first
// ListOffsets request and drops the connection at the next three: a source
// leaving the end to be resolved when fetching begins (a logical
// RD_KAFKA_OFFSET_END) would resolve it only after the records are there
// and skip them; this source's lookups in Start retry the drops.
TEST_F(KafkaConsumerStartTime, RecordsPublishedRightAfterStartAreRead) {
  // One partition: one fetcher request at a time takes the drops.
  topic_ += "-one";
  ASSERT_EQ(cluster_->Command("topic " + topic_ + ":1"), "ok");
  t_.Append(8, 4);
  Publish(t_.events(), "binary");
  auto so = AfterEverything("right-after");
  so.options.fields.push_back(AllPartitions(1));
  auto source = MakeConsumerSource(so);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  ConsumerSource& src = **source;
  ASSERT_EQ(cluster_->Command("errors 2 0 -195 -195 -195"), "ok");
  Status started = src.Start();
  t_.Append(4, 4);
  Publish(std::span<const Event>(t_.events()).subspan(8), "binary");
  auto got = testing::PollUntil(src, 4);
  ASSERT_EQ(cluster_->Command("clear 2"), "ok");
  ASSERT_TRUE(started.ok()) << started.ToString();
  ExpectEvents(got, 8, 12);
  testing::ExpectNothingMore(src, milliseconds(300));  // no old record
  src.Close();
}

TEST_F(KafkaConsumerStartTime, TheGroupsCommitWinsOverTheTime) {
  t_.Append(8, 4);
  Publish(t_.events(), "binary");
  // The group reads and commits the 8.
  {
    auto source = MakeConsumerSource(SourceOptions("committed"));
    ASSERT_TRUE(source.ok());
    ASSERT_TRUE((*source)->Start().ok());
    auto got = testing::PollUntil(**source, 8);
    ExpectEvents(got, 0, 8);
    ASSERT_TRUE((*source)->Ack(testing::HandlesOf(got)).ok());
    (*source)->Close();
  }
  // 4 more while nobody reads; the group comes back with `start` after
  // everything: its commit, not the time, says where it goes on, so it
  // gets the 4 (the time would have put it after them).
  t_.Append(4, 4);
  Publish(std::span<const Event>(t_.events()).subspan(8), "binary");
  auto source = MakeConsumerSource(AfterEverything("committed"));
  ASSERT_TRUE(source.ok());
  ASSERT_TRUE((*source)->Start().ok());
  ExpectEvents(testing::PollUntil(**source, 4), 8, 12);
  (*source)->Close();
}

// A lookup the broker refuses (ListOffsets answered with
// UNKNOWN_TOPIC_OR_PART, once): with assigned partitions Start fails with
// the broker's answer (the consumer retries it); a group member logs it and
// lets librdkafka start those partitions at the group's commit or, without
// one, the earliest record: more than asked for, never less (the inbox
// absorbs what was handled). Start asks first for the partitions' ends, then
// by time, each one ListOffsets request (the cluster has one broker): the
// mock's `errors 2 ...` says which of the two is refused.
TEST_F(KafkaConsumerStartTime, AFailedLookupFailsStartWithTheBrokersAnswer) {
  ExpectStartFails(
      "0 3", "finding offsets by time: Broker: Unknown topic or partition");
}

TEST_F(KafkaConsumerStartTime, AFailedEndLookupFailsStartWithTheBrokersAnswer) {
  ExpectStartFails("3",
                   "finding the end offsets for a start time: Broker: Unknown "
                   "topic or partition");
}

TEST_F(KafkaConsumerStartTime,
       AFailedLookupInAGroupIsLoggedAndReadsFromEarliest) {
  t_.Append(8, 4);
  Publish(t_.events(), "binary");
  auto so = AfterEverything("refused");
  std::mutex mu;
  std::string log;
  so.on_log = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(mu);
    log += line + "\n";
  };
  ASSERT_EQ(cluster_->Command("errors 2 0 3"), "ok");  // the time lookup
  auto source = MakeConsumerSource(so);
  ASSERT_TRUE(source.ok());
  ASSERT_TRUE((*source)->Start().ok());
  auto got = testing::PollUntil(**source, 8);
  ASSERT_EQ(cluster_->Command("clear 2"), "ok");
  ExpectEvents(got, 0, 8);
  (*source)->Close();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_NE(log.find("finding offsets by time: Broker: Unknown topic or "
                     "partition"),
            std::string::npos)
      << log;
}

class KafkaConsumerConfig : public testing::ConsumerConfigRefusal {
 protected:
  KafkaConsumerConfig() : ConsumerConfigRefusal("kafka://127.0.0.1:1") {}
};

TEST_F(KafkaConsumerConfig, AMissingTopicIsRefusedNamingTheKey) {
  std::string err = Refused("group = \"g\"\n");
  EXPECT_TRUE(std::regex_search(
      err, std::regex("herald.toml:[0-9]+: consumer 'c'.topic: is required")))
      << err;
}

TEST_F(KafkaConsumerConfig, ABadStartIsRefusedWithItsLine) {
  std::string err = Refused("topic = \"t\"\nstart = \"yesterday\"\n");
  EXPECT_NE(err.find("herald.toml:10: consumer 'c'.start: must be "
                     "\"earliest\", \"latest\" or an RFC 3339 time"),
            std::string::npos)
      << err;
}

TEST_F(KafkaConsumerConfig, BadPartitionsAreRefusedWithTheirLine) {
  std::string err = Refused("topic = \"t\"\npartitions = [0, -1]\n");
  EXPECT_NE(err.find("herald.toml:10: consumer 'c'.partitions: must hold "
                     "partition numbers"),
            std::string::npos)
      << err;
}

TEST_F(KafkaConsumerConfig, AutoCommitInTheKafkaTableIsRefused) {
  std::string err =
      Refused("topic = \"t\"\nkafka = { \"enable.auto.commit\" = \"true\" }\n");
  EXPECT_NE(err.find("herald.toml:10: consumer 'c'.kafka.enable.auto.commit: "
                     "refused"),
            std::string::npos)
      << err;
}

TEST_F(KafkaConsumerConfig, AnUnknownKeyIsRefusedWithItsLine) {
  std::string err = Refused("topic = \"t\"\nqueue = \"q\"\n");
  EXPECT_NE(err.find("herald.toml:10: consumer 'c'.queue: unknown key"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("topic, group, partitions, start, kafka"),
            std::string::npos)
      << err;
}

}  // namespace
}  // namespace herald
