// The Kafka sender against librdkafka's mock cluster in this process (the
// Kafka protocol on 127.0.0.1; no Kafka broker runs on this machine): the
// CloudEvents Kafka binding on the wire, keys on the partitions Java's
// murmur2 picks, injected broker errors told apart as permanent or
// retryable without breaking a stream's order, the deadline, and the route
// options checked at config load.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "herald/cloudevents.h"
#include "herald/config.h"
#include "herald/sender.h"
#include "herald/time.h"
#include "herald/uuid.h"
#include "kafka/kafka_test_util.h"
#include "support/sender_test_util.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

using testing::JavaMurmur2;
using testing::JavaPartition;

TEST(JavaMurmur2, MatchesKafkasOwnTestVectors) {
  // org.apache.kafka.common.utils.UtilsTest#testMurmur2.
  EXPECT_EQ(JavaMurmur2("21"), -973932308);
  EXPECT_EQ(JavaMurmur2("foobar"), -790332482);
  EXPECT_EQ(JavaMurmur2("a-little-bit-long-string"), -985981536);
  EXPECT_EQ(JavaMurmur2("a-little-bit-longer-string"), -1486304829);
  EXPECT_EQ(JavaMurmur2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971);
  EXPECT_EQ(JavaMurmur2("abc"), 479470107);
}

testing::MockCluster& Cluster() {
  static testing::MockCluster cluster(3);
  return cluster;
}

class KafkaSenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Cluster().ok());
    static int counter = 0;
    name_ = "lib" + std::to_string(++counter);
  }
  void TearDown() override {
    rd_kafka_mock_clear_request_errors(Cluster().get(), 0);
  }

  std::unique_ptr<Sender> Make(const std::string& topic,
                               std::vector<OptionField> extra = {},
                               int max_in_flight = 8) {
    RouteConfig route;
    route.name = name_;
    route.sender = "kafka://" + Cluster().bootstraps();
    route.max_in_flight = max_in_flight;
    route.options.route = name_;
    route.options.fields.push_back({"topic", OptionValue::String(topic)});
    for (auto& f : extra) route.options.fields.push_back(std::move(f));
    return testing::CheckedSender(std::move(route));
  }

  Event Ev(const std::string& stream, int64_t version) {
    return testing::BrokerTestEvent(stream, version, ++position_);
  }

  std::vector<SendResult> Send(Sender* s, const std::vector<Event>& events,
                               milliseconds budget = milliseconds(20000)) {
    return testing::SendAll(s, events, budget);
  }

  std::string name_;
  int64_t position_ = 0;
};

TEST_F(KafkaSenderTest, BinaryModeCarriesTheEventInKafkaHeaders) {
  ASSERT_TRUE(Cluster().CreateTopic(name_ + ".order", 4));
  auto sender = Make(name_ + ".{category}");
  ASSERT_NE(sender, nullptr);
  EXPECT_EQ(sender->kind(), "kafka");
  std::vector<Event> events = {Ev("order-42", 1), Ev("order-42", 2)};
  auto results = Send(sender.get(), events);
  for (const auto& r : results) {
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  }
  testing::KafkaReader reader(Cluster().bootstraps(), name_ + ".order", 4);
  auto got = reader.ReadUntil(2, seconds(10));
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < got.size(); ++i) {
    const Event& e = events[i];
    EXPECT_EQ(got[i].key, "order-42");
    EXPECT_EQ(got[i].value, e.payload);
    EXPECT_EQ(got[i].timestamp_ms, e.occurred_at_us / 1000);
    EXPECT_EQ(got[i].partition, JavaPartition("order-42", 4));
    EXPECT_EQ(got[i].Header("ce_id"), e.id);
    EXPECT_EQ(got[i].Header("content-type"), "application/json");
    EXPECT_EQ(got[i].Header("ce_traceparent"), "00-abc-def-01");
    MessageHeaders headers(got[i].headers.begin(), got[i].headers.end());
    auto d = DecodeCloudEventHeaders(headers, got[i].value,
                                     CloudEventBinding::kKafka);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->event.id, e.id);
    EXPECT_EQ(d->event.stream, e.stream);
    EXPECT_EQ(d->event.type, e.type);
    EXPECT_EQ(d->event.position, e.position);
    EXPECT_EQ(d->event.stream_version, e.stream_version);
    EXPECT_EQ(d->event.occurred_at_us, e.occurred_at_us);
    EXPECT_EQ(d->source, "herald");
    EXPECT_NE(d->event.metadata.find("\"tenant\":\"a b%\""), std::string::npos)
        << d->event.metadata;
  }
}

TEST_F(KafkaSenderTest, StructuredModeSendsTheJsonEventFormat) {
  ASSERT_TRUE(Cluster().CreateTopic(name_, 1));
  auto sender = Make(name_, {{"mode", OptionValue::String("structured")},
                             {"key", OptionValue::String("{type}")}});
  ASSERT_NE(sender, nullptr);
  std::vector<Event> events = {Ev("cart-1", 1)};
  auto results = Send(sender.get(), events);
  ASSERT_TRUE(results[0].status.ok()) << results[0].status.ToString();
  testing::KafkaReader reader(Cluster().bootstraps(), name_, 1);
  auto got = reader.ReadUntil(1, seconds(10));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].key, "order.placed");
  EXPECT_EQ(got[0].Header("content-type"), "application/cloudevents+json");
  EXPECT_EQ(got[0].Header("ce_id"), "");
  auto d = DecodeCloudEventJson(got[0].value);
  ASSERT_TRUE(d.ok()) << d.status().ToString() << got[0].value;
  EXPECT_EQ(d->event.id, events[0].id);
  EXPECT_EQ(d->event.stream, "cart-1");
  EXPECT_EQ(d->event.payload, events[0].payload);
}

// librdkafka's default partitioner (consistent_random, CRC32) puts a key
// elsewhere than Java producers do; herald's murmur2_random puts every key
// where Java's DefaultPartitioner does.
TEST_F(KafkaSenderTest, KeysLandOnThePartitionJavaProducersChoose) {
  const int kPartitions = 7;
  ASSERT_TRUE(Cluster().CreateTopic(name_, kPartitions));
  auto sender = Make(name_, {}, 64);
  ASSERT_NE(sender, nullptr);
  std::vector<Event> events;
  for (int s = 0; s < 60; ++s) {
    events.push_back(Ev("customer-" + std::to_string(s * 7919), 1));
  }
  auto results = Send(sender.get(), events);
  for (const auto& r : results) ASSERT_TRUE(r.status.ok());
  testing::KafkaReader reader(Cluster().bootstraps(), name_, kPartitions);
  auto got = reader.ReadUntil(events.size(), seconds(10));
  ASSERT_EQ(got.size(), events.size());
  std::set<int32_t> used;
  for (const auto& r : got) {
    EXPECT_EQ(r.partition, JavaPartition(r.key, kPartitions)) << r.key;
    used.insert(r.partition);
  }
  EXPECT_EQ(used.size(), static_cast<size_t>(kPartitions));
}

// A permanent broker error fails its event for good; the rest of its
// stream is not sent at all, while another stream sharing the partition
// goes on. One event in flight at a time makes each Produce request one
// event, so the injected error hits exactly B's first event.
TEST_F(KafkaSenderTest, APermanentErrorStopsItsStreamOnly) {
  ASSERT_TRUE(Cluster().CreateTopic(name_, 1));
  auto sender = Make(name_, {}, 1);
  ASSERT_NE(sender, nullptr);
  // A warm-up event first, so the producer id is in place.
  auto warm = Send(sender.get(), {Ev("w", 1)});
  ASSERT_TRUE(warm[0].status.ok()) << warm[0].status.ToString();
  std::vector<Event> events = {Ev("a", 1), Ev("b", 1), Ev("a", 2), Ev("b", 2)};
  Cluster().FailProduce(
      {RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_RESP_ERR_INVALID_RECORD});
  auto results = Send(sender.get(), events);
  EXPECT_TRUE(results[0].status.ok()) << results[0].status.ToString();
  EXPECT_FALSE(results[1].status.ok());
  EXPECT_FALSE(results[1].status.retryable()) << results[1].status.ToString();
  EXPECT_NE(results[1].status.message().find("INVALID_RECORD"),
            std::string::npos)
      << results[1].status.ToString();
  EXPECT_TRUE(results[2].status.ok()) << results[2].status.ToString();
  EXPECT_FALSE(results[3].attempted);
  EXPECT_FALSE(results[3].status.ok());

  // The next call (the relay's retry) sends b in order.
  auto again = Send(sender.get(), {events[1], events[3]});
  for (const auto& r : again) EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  testing::KafkaReader reader(Cluster().bootstraps(), name_, 1);
  auto got = reader.ReadUntil(5, seconds(10));
  std::vector<std::string> ids;
  for (const auto& r : reader.Drain(milliseconds(300))) {
    ids.push_back(r.Header("ce_id"));
  }
  std::vector<std::string> want = {warm.empty() ? "" : "", events[0].id,
                                   events[2].id, events[1].id, events[3].id};
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(std::vector<std::string>(ids.begin() + 1, ids.end()),
            std::vector<std::string>(want.begin() + 1, want.end()));
}

// Retriable broker errors (no leader, a timeout on the broker) are retried
// by librdkafka itself, in order; the event is then delivered.
TEST_F(KafkaSenderTest, RetriableBrokerErrorsAreRetriedInOrder) {
  ASSERT_TRUE(Cluster().CreateTopic(name_, 1));
  auto sender = Make(name_, {}, 4);
  ASSERT_NE(sender, nullptr);
  Cluster().FailProduce({RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                         RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                         RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS});
  std::vector<Event> events;
  for (int i = 1; i <= 6; ++i)
    events.push_back(Ev("s" + std::to_string(i % 2), i));
  auto results = Send(sender.get(), events);
  for (const auto& r : results)
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  testing::KafkaReader reader(Cluster().bootstraps(), name_, 1);
  auto got = reader.ReadUntil(6, seconds(10));
  std::map<std::string, int64_t> last;
  std::set<std::string> ids;
  for (const auto& r : reader.Drain(milliseconds(300))) {
    ids.insert(r.Header("ce_id"));
    int64_t v = std::stoll(r.Header("ce_streamversion"));
    EXPECT_GT(v, last[r.key]) << "stream " << r.key << " out of order";
    last[r.key] = v;
  }
  EXPECT_EQ(ids.size(), 6u);
}

// A topic that does not exist is a permanent failure that says so (herald
// does not create topics). The mock would create any topic asked for, so
// its metadata is made to answer UNKNOWN_TOPIC_OR_PART, as a real cluster
// without the topic (and without auto-creation) does.
TEST_F(KafkaSenderTest, AMissingTopicIsAPermanentFailure) {
  rd_kafka_mock_topic_set_error(Cluster().get(), (name_ + ".absent").c_str(),
                                RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
  // The mock applies that on its own thread; a call that waits for its
  // answer (queued behind it) makes sure it is in place first.
  ASSERT_TRUE(Cluster().CreateTopic(name_ + ".present", 1));
  // Within the route's timeout (half of it by default), so the records do
  // not time out (retryable) first.
  auto sender =
      Make(name_ + ".absent", {{"timeout", OptionValue::String("2s")}});
  ASSERT_NE(sender, nullptr);
  auto results = Send(sender.get(), {Ev("x", 1), Ev("x", 2)});
  EXPECT_FALSE(results[0].status.ok());
  EXPECT_FALSE(results[0].status.retryable()) << results[0].status.ToString();
  EXPECT_NE(results[0].status.message().find(name_ + ".absent"),
            std::string::npos)
      << results[0].status.ToString();
  EXPECT_FALSE(results[1].attempted);
}

// Brokers that do not answer: what is in flight at the deadline is purged
// and reported retryable, and Send returns by the deadline.
TEST_F(KafkaSenderTest, TheDeadlineIsHonouredWhenBrokersAreDown) {
  ASSERT_TRUE(Cluster().CreateTopic(name_, 3));
  auto sender = Make(name_, {}, 8);
  ASSERT_NE(sender, nullptr);
  auto first = Send(sender.get(), {Ev("up", 1)});
  ASSERT_TRUE(first[0].status.ok()) << first[0].status.ToString();
  for (int b = 1; b <= 3; ++b)
    rd_kafka_mock_broker_set_down(Cluster().get(), b);
  std::vector<Event> events = {Ev("a", 1), Ev("a", 2), Ev("b", 1)};
  auto start = steady_clock::now();
  auto results = Send(sender.get(), events, milliseconds(700));
  auto took = steady_clock::now() - start;
  for (int b = 1; b <= 3; ++b) rd_kafka_mock_broker_set_up(Cluster().get(), b);
  EXPECT_LT(took, milliseconds(700 + 1000));
  EXPECT_FALSE(results[0].status.ok());
  EXPECT_TRUE(results[0].status.retryable()) << results[0].status.ToString();
  EXPECT_TRUE(results[0].attempted);
  EXPECT_FALSE(results[1].attempted);
  EXPECT_TRUE(results[2].status.retryable());
  // Back up, the same sender delivers them.
  auto again = Send(sender.get(), events);
  for (const auto& r : again) EXPECT_TRUE(r.status.ok()) << r.status.ToString();
}

TEST_F(KafkaSenderTest, NothingIsSentPastTheDeadline) {
  ASSERT_TRUE(Cluster().CreateTopic(name_, 1));
  auto sender = Make(name_);
  ASSERT_NE(sender, nullptr);
  std::vector<Event> events = {Ev("a", 1)};
  std::vector<SendResult> results(1, SendResult::NotSent());
  sender->Send(events, results, steady_clock::now());
  EXPECT_FALSE(results[0].attempted);
}

// ---- options at config load ------------------------------------------------

std::string LoadError(const std::string& route_keys,
                      const std::string& url = "kafka://127.0.0.1:9092") {
  std::string text =
      "[[route]]\nname = \"k\"\nsender = \"" + url + "\"\n" + route_keys;
  auto c = ParseConfig(text, "h.toml");
  return c.ok() ? "" : c.status().message();
}

TEST(KafkaOptions, TemplatesAndKeysAreCheckedAtConfigLoad) {
  EXPECT_EQ(LoadError("topic = \"events.{category}\"\n"), "");
  EXPECT_EQ(LoadError("topic = \"e\"\nkey = \"{category}/{type}\"\n"
                      "mode = \"structured\"\ntimeout = \"2s\"\n"),
            "");
  std::string e = LoadError("topic = \"events.{typ}\"\n");
  EXPECT_NE(e.find("h.toml:4"), std::string::npos) << e;
  EXPECT_NE(e.find("topic"), std::string::npos) << e;
  EXPECT_NE(e.find("{typ}"), std::string::npos) << e;
  e = LoadError("topic = \"t\"\nkey = \"{stream\"\n");
  EXPECT_NE(e.find("h.toml:5"), std::string::npos) << e;
  EXPECT_NE(e.find("key"), std::string::npos) << e;
  e = LoadError("");
  EXPECT_NE(e.find("topic"), std::string::npos) << e;
  EXPECT_NE(e.find("required"), std::string::npos) << e;
  e = LoadError("topic = \"t\"\nmode = \"raw\"\n");
  EXPECT_NE(e.find("h.toml:5"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown mode"), std::string::npos) << e;
  e = LoadError("topic = \"t\"\nsubject = \"y\"\n");
  EXPECT_NE(e.find("unknown key"), std::string::npos) << e;
  EXPECT_NE(e.find("kafka"), std::string::npos) << e;
}

TEST(KafkaOptions, PassthroughPropertiesAreCheckedByLibrdkafka) {
  EXPECT_EQ(LoadError("topic = \"t\"\nkafka = { \"security.protocol\" = "
                      "\"SASL_SSL\", \"sasl.mechanisms\" = \"PLAIN\", "
                      "\"compression.codec\" = \"lz4\", \"linger.ms\" = 5, "
                      "\"acks\" = \"all\", \"enable.idempotence\" = true }\n"),
            "");
  // Dotted keys without quotes are the same properties.
  EXPECT_EQ(LoadError("topic = \"t\"\n[route.kafka]\nsecurity.protocol = "
                      "\"SSL\"\nbatch.num.messages = 500\n"),
            "");
  std::string e =
      LoadError("topic = \"t\"\nkafka = { \"no.such.property\" = \"1\" }\n");
  EXPECT_NE(e.find("h.toml:5"), std::string::npos) << e;
  EXPECT_NE(e.find("kafka.no.such.property"), std::string::npos) << e;
  EXPECT_NE(e.find("no such property"), std::string::npos) << e;
  e = LoadError("topic = \"t\"\nkafka = { \"compression.codec\" = \"zip\" }\n");
  EXPECT_NE(e.find("h.toml:5"), std::string::npos) << e;
  EXPECT_NE(e.find("kafka.compression.codec"), std::string::npos) << e;
  e = LoadError("topic = \"t\"\nkafka = { \"linger.ms\" = [1] }\n");
  EXPECT_NE(e.find("kafka.linger.ms"), std::string::npos) << e;
}

TEST(KafkaOptions, PropertiesThatWeakenTheAcknowledgementAreRefused) {
  struct Case {
    std::string property, why;
  };
  for (const Case& c : {
           Case{"\"acks\" = \"1\"", "acks=all"},
           Case{"\"acks\" = 0", "acks=all"},
           Case{"\"request.required.acks\" = \"1\"", "acks=all"},
           Case{"\"enable.idempotence\" = false", "idempotent"},
           Case{"\"partitioner\" = \"consistent_random\"", "Java"},
           Case{"\"delivery.report.only.error\" = true", "delivery report"},
           Case{"\"transactional.id\" = \"x\"", "transactional"},
           Case{"\"bootstrap.servers\" = \"h:1\"", "sender URL"},
           Case{"\"message.timeout.ms\" = 100", "timeout"},
           Case{"\"max.in.flight\" = 20", "at most 5"},
       }) {
    std::string e =
        LoadError("topic = \"t\"\nkafka = { " + c.property + " }\n");
    EXPECT_NE(e.find("h.toml:5"), std::string::npos) << e;
    EXPECT_NE(e.find("refused"), std::string::npos) << e;
    EXPECT_NE(e.find(c.why), std::string::npos) << e;
  }
}

TEST(KafkaOptions, SecretsAreNeverShown) {
  // A password that librdkafka takes is fine; a URL with credentials is
  // refused without quoting them.
  EXPECT_EQ(LoadError("topic = \"t\"\nkafka = { \"sasl.username\" = \"u\", "
                      "\"sasl.password\" = \"hunter2\" }\n"),
            "");
  std::string e = LoadError("topic = \"t\"\n", "kafka://u:hunter2@h:9092");
  EXPECT_NE(e.find("kafka table"), std::string::npos) << e;
  EXPECT_EQ(e.find("hunter2"), std::string::npos) << e;
  // A refused secret-bearing property does not echo its value either.
  e = LoadError(
      "topic = \"t\"\nkafka = { \"ssl.key.password\" = [\"hunter2\"] }\n");
  EXPECT_EQ(e.find("hunter2"), std::string::npos) << e;
}

TEST(KafkaOptions, UrlsAreChecked) {
  EXPECT_TRUE(ValidateSenderUrl("kafka://127.0.0.1:9092").ok());
  EXPECT_TRUE(ValidateSenderUrl("kafka://a:1,b:2,c:3").ok());
  EXPECT_TRUE(ValidateSenderUrl("kafka://a:1,kafka://b:2").ok());
  EXPECT_TRUE(ValidateSenderUrl("kafka://broker").ok());  // port 9092
  EXPECT_TRUE(ValidateSenderUrl("kafka://[::1]:9092").ok());
  EXPECT_FALSE(ValidateSenderUrl("kafka://").ok());
  EXPECT_FALSE(ValidateSenderUrl("kafka://h:0").ok());
  EXPECT_FALSE(ValidateSenderUrl("kafka://h:x").ok());
  EXPECT_FALSE(ValidateSenderUrl("kafka://a:1,").ok());
  EXPECT_FALSE(ValidateSenderUrl("kafka://h:9092/topic").ok());
}

}  // namespace
}  // namespace herald
