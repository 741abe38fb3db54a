// The RabbitMQ consumer source (amqp://, key `queue`) against a real server
// (tests/support/with-rabbitmq.sh): events the built relay publishes are
// handled exactly once in effect, in per-stream order, through relay and
// consumer SIGKILLs and double publishing; a poison event parks its stream
// while the others finish; a broker restart is survived; redeliveries,
// structured mode and the queue's length are reported; `herald consume`
// runs it from a config; bad keys are refused with key and line.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "herald/consumer.h"
#include "herald/consumer_source.h"
#include "rabbitmq/amqp_client.h"
#include "support/consumer_e2e.h"
#include "support/test_util.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::AmqpClient;
using testing::AmqpUrl;
using testing::Child;
using testing::ConsumerE2E;
using testing::HeraldBin;
using testing::RunCommand;
using testing::WaitFor;

class RabbitConsumer : public ::testing::Test {
 protected:
  void SetUp() override {
    if (AmqpUrl().empty()) {
      if (std::getenv("CI")) FAIL() << "HERALD_TEST_AMQP_URL is not set";
      GTEST_SKIP() << "HERALD_TEST_AMQP_URL is not set (run under "
                      "tests/support/with-rabbitmq.sh)";
    }
    tag_ = std::to_string(::getpid()) + "." + std::to_string(++counter_);
    exchange_ = "cons." + tag_;
    queue_ = "cons." + tag_;
    amqp_ = std::make_unique<AmqpClient>();
    ASSERT_TRUE(amqp_->ok());
    amqp_->Exchange(exchange_, "fanout");
    amqp_->Queue(queue_);
    amqp_->Bind(queue_, exchange_, "");
  }

  std::string Route(const std::string& name, const std::string& extra = "") {
    return testing::RouteTable(name, AmqpUrl(),
                               "exchange = \"" + exchange_ + "\"\n" + extra);
  }
  // The [[consumer]] table "c" reading this test's queue.
  std::string ConsumerTable(const std::string& exec = "true") {
    return t_.ConsumerTable(AmqpUrl(), "queue = \"" + queue_ + "\"\n", exec);
  }

  ConsumerSourceOptions SourceOptions() {
    return testing::BrokerSourceOptions(
        AmqpUrl(), {testing::StringOption("queue", queue_)});
  }

  // Publishes `events` with the RabbitMQ sender in `mode`.
  void Publish(std::span<const Event> events, const std::string& mode) {
    testing::PublishWithSender(
        testing::SenderRoute(AmqpUrl(),
                             {testing::StringOption("exchange", exchange_),
                              testing::StringOption("mode", mode)}),
        events);
  }

  std::string tag_, exchange_, queue_;
  std::unique_ptr<AmqpClient> amqp_;
  ConsumerE2E t_;
  static inline int counter_ = 0;
};

TEST_F(RabbitConsumer,
       FiveThousandEventsOnceEachInStreamOrderThroughThreeKindsOfDuplicates) {
  // The dup route publishes streams s-3 and s-11 a second time: 500 more
  // messages with the same event ids.
  testing::RunExactlyOnceScenario(
      t_, Route("r") + Route("dup", "streams = [\"s-3\", \"s-11\"]\n"),
      ConsumerTable(), /*dup_copies=*/500);
}

TEST_F(RabbitConsumer,
       APoisonEventParksItsStreamWhileTheOthersFinishThenRetryDeliversInOrder) {
  testing::RunPoisonScenario(
      t_, SourceOptions(),
      [&](std::span<const Event> events) { Publish(events, "binary"); });
}

TEST_F(RabbitConsumer,
       RedeliveredReleasedMessagesStructuredModeAndQueueLength) {
  t_.Append(3, 3);
  Publish(t_.events(), "structured");
  auto so = SourceOptions();
  so.max_in_hand = 3;
  auto source = MakeConsumerSource(so);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  ConsumerSource& src = **source;
  EXPECT_EQ(src.kind(), "rabbitmq");
  ASSERT_TRUE(src.Start().ok());
  auto got = testing::PollUntil(src, 3, seconds(10), 10);
  ASSERT_EQ(got.size(), 3u);
  std::set<uint64_t> handles;
  for (size_t i = 0; i < 3; ++i) {
    testing::ExpectDeliveryOf(got[i], t_.events()[i]);
    EXPECT_EQ(got[i].redeliveries, 0);
    handles.insert(got[i].handle);
  }
  EXPECT_EQ(handles.size(), 3u);
  // Given back: delivered again, marked redelivered.
  ASSERT_TRUE(src.Release(testing::HandlesOf(got)).ok());
  Status last;
  got = testing::PollUntil(src, 3, seconds(10), 10, &last);
  ASSERT_EQ(got.size(), 3u) << last.ToString();
  std::set<std::string> ids;
  for (const auto& d : got) {
    EXPECT_EQ(d.redeliveries, 1);
    ids.insert(d.event.id);
  }
  EXPECT_EQ(ids.size(), 3u);
  // With 3 in hand the prefetch (max_in_hand 3) is used up: 2 more wait
  // in the queue, its length.
  t_.Append(2, 2);
  Publish(std::span<const Event>(t_.events()).subspan(3), "binary");
  ASSERT_TRUE(testing::AwaitLag(src, 2));
  ASSERT_TRUE(src.Ack(testing::HandlesOf(got)).ok());
  // Acknowledged ones are gone for good: next come the 2 new ones only.
  got = testing::PollUntil(src, 2, seconds(10), 10);
  ASSERT_EQ(got.size(), 2u);
  testing::ExpectDeliveryOf(got[0], t_.events()[3]);
  testing::ExpectDeliveryOf(got[1], t_.events()[4]);
  EXPECT_EQ(got[0].redeliveries, 0);
  ASSERT_TRUE(src.Ack(testing::HandlesOf(got)).ok());
  ASSERT_TRUE(testing::AwaitLag(src, 0));
  testing::ExpectNothingMore(src);
  src.Close();
}

TEST_F(RabbitConsumer, ABrokerRestartIsSurvivedWithoutLossOrRepeatedEffect) {
  auto store = OpenStore(t_.inbox_url());
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(testing::CreateDomainTable(store->get()).ok());
  ConsumerOptions o;
  o.name = "c";
  o.inbox = store->get();
  o.retry.backoff_initial = milliseconds(50);
  o.retry.backoff_max = milliseconds(500);
  o.on_log = [](const std::string&) {};
  auto so = SourceOptions();
  so.state = store->get();
  auto source = MakeConsumerSource(so);
  ASSERT_TRUE(source.ok());
  Consumer consumer(o, std::move(*source));
  consumer.SetHandler([](const Event& e, Transaction* tx) {
    return testing::InsertDomainRow(tx, e);
  });
  ASSERT_TRUE(consumer.Start().ok());
  t_.Append(200, 20);
  Publish(t_.events(), "binary");
  ASSERT_TRUE(
      WaitFor([&] { return t_.DistinctHandled() == 200; }, seconds(30)));
  amqp_.reset();
  ASSERT_EQ(testing::RabbitServer("stop"), 0);
  ASSERT_EQ(testing::RabbitServer("start"), 0);
  t_.Append(200, 20);
  Publish(std::span<const Event>(t_.events()).subspan(200), "binary");
  ASSERT_TRUE(WaitFor([&] { return t_.DistinctHandled() == 400; }, seconds(60)))
      << t_.DistinctHandled() << " " << consumer.stats().last_error;
  consumer.Stop();
  EXPECT_FALSE(consumer.failed()) << consumer.error().ToString();
  testing::ExpectOnceEachInStreamOrder(t_.Rows(), t_.events());
}

TEST_F(RabbitConsumer,
       HeraldConsumeRunsTheConfigAndParkedRetryDeliversThePoisonEvent) {
  std::string out = t_.dir().file("handled.txt");
  std::string cured = t_.dir().file("cured");
  std::string script = t_.dir().file("handler.sh");
  t_.Append(200, 10);
  std::string poison;
  int seen = 0;
  for (const auto& e : t_.events()) {
    if (e.stream == "s-4" && ++seen == 5) poison = e.id;
  }
  std::ofstream(script) << "#!/bin/sh\n"
                        << "if [ \"$HERALD_EVENT_ID\" = \"" << poison
                        << "\" ] && [ ! -f '" << cured
                        << "' ]; then exit 1; fi\n"
                        << "echo \"$HERALD_EVENT_ID $HERALD_EVENT_STREAM\" >> '"
                        << out << "'\n";
  std::string config = t_.WriteConfig(
      Route("r") + ConsumerTable("sh " + script) +
      "on_failure = \"park\"\nmax_attempts = 2\nbackoff = \"5ms\"\n");
  Child relay = t_.StartRelay(config);
  Child::Options co;
  co.stderr_path = t_.dir().file("consume.err");
  Child consume({HeraldBin(), "consume", "--config", config}, co);
  auto lines = [&] {
    std::vector<std::pair<std::string, std::string>> v;
    std::istringstream in(testing::ReadTextFile(out));
    std::string id, stream;
    while (in >> id >> stream) v.emplace_back(id, stream);
    return v;
  };
  // Everything but s-4 from its 5th event on.
  ASSERT_TRUE(WaitFor([&] { return lines().size() == 200 - 16; }, seconds(60)))
      << lines().size() << "\n"
      << testing::ReadTextFile(co.stderr_path);
  std::string text, err;
  ASSERT_TRUE(WaitFor(
      [&] {
        RunCommand({HeraldBin(), "parked", "list", "--config", config,
                    "--consumer", "c"},
                   &text, &err);
        return testing::JsonLines(text).size() == 16;
      },
      seconds(30)))
      << text << err;
  std::ofstream(cured) << "yes\n";
  ASSERT_EQ(RunCommand({HeraldBin(), "parked", "retry", "--config", config,
                        "--consumer", "c", "--all"},
                       &text, &err),
            0)
      << err;
  ASSERT_TRUE(WaitFor([&] { return lines().size() == 200; }, seconds(30)))
      << lines().size() << "\n"
      << testing::ReadTextFile(co.stderr_path);
  // Once each, s-4 in order.
  std::vector<testing::DomainRow> as_rows;
  int64_t seq = 0;
  for (const auto& [id, stream] : lines())
    as_rows.push_back({++seq, id, stream});
  testing::ExpectOnceEachInStreamOrder(as_rows, t_.events());
  consume.Signal(SIGTERM);
  EXPECT_EQ(consume.Wait(), 0) << testing::ReadTextFile(co.stderr_path);
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  ASSERT_EQ(RunCommand({HeraldBin(), "consume", "status", "--config", config,
                        "--consumer", "c"},
                       &text, &err),
            0)
      << err;
  auto status = testing::JsonLines(text);
  ASSERT_EQ(status.size(), 1u) << text;
  EXPECT_EQ(testing::JsonInt(status[0], "handled"), 200) << text;
}

// Bad per-source keys: `herald consume` refuses the config with the key and
// its line, exit 2, and starts nothing.
class RabbitConsumerConfig : public testing::ConsumerConfigRefusal {
 protected:
  RabbitConsumerConfig()
      : ConsumerConfigRefusal("amqp://guest:guest@127.0.0.1:1/") {}
};

TEST_F(RabbitConsumerConfig, AMissingQueueIsRefusedNamingTheKey) {
  std::string err = Refused("max_in_flight = 4\nconnect_timeout = \"1s\"\n");
  // The line of the [[consumer]] header: the key is not in the table.
  EXPECT_NE(err.find("herald.toml:4: consumer 'c'.queue: is required"),
            std::string::npos)
      << err;
}

TEST_F(RabbitConsumerConfig, AQueueThatIsNotAStringIsRefusedWithItsLine) {
  std::string err = Refused("queue = 5\n");
  EXPECT_NE(err.find("herald.toml:9: consumer 'c'.queue: must be a string"),
            std::string::npos)
      << err;
}

TEST_F(RabbitConsumerConfig, AnUnknownKeyIsRefusedWithItsLine) {
  std::string err = Refused("queue = \"q\"\nprefetch = 10\n");
  EXPECT_NE(err.find("herald.toml:10: consumer 'c'.prefetch: unknown key"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("queue, connect_timeout"), std::string::npos) << err;
}

}  // namespace
}  // namespace herald
