// The RabbitMQ sender against a real server (tests/support/with-rabbitmq.sh):
// options checked at config load, the message it publishes (persistent,
// message_id, CloudEvents binary and structured mode), and how it tells the
// broker's answers apart: ack, basic.return (permanent), basic.nack
// (retryable), a missing exchange (permanent, channel reopened), a closed
// connection (retryable, reconnects by itself).
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <set>

#include "herald/cloudevents.h"
#include "herald/config.h"
#include "herald/sender.h"
#include "rabbitmq/amqp_client.h"
#include "support/sender_test_util.h"
#include "support/test_util.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;
using testing::AmqpClient;
using testing::AmqpUrl;
using testing::WaitFor;

// ---- options (no server needed) ---------------------------------------------

struct BadCase {
  std::string toml;
  std::string message;
};

TEST(RabbitOptions, AreCheckedAtConfigLoadNamingKeyAndLine) {
  const std::string head =
      "[[route]]\nname = \"r\"\nsender = \"amqp://u:p@127.0.0.1:5672/v\"\n";
  const BadCase cases[] = {
      {head, "t.toml:1: route 'r'.exchange: is required"},
      {head + "exchange = \"x.{strem}\"\n",
       "t.toml:4: route 'r'.exchange: unknown placeholder {strem}"},
      {head + "exchange = \"x\"\nrouting_key = \"{type\"\n",
       "t.toml:5: route 'r'.routing_key: "},
      {head + "exchange = 5\n",
       "t.toml:4: route 'r'.exchange: must be a string"},
      {head + "exchange = \"x\"\nmode = \"fancy\"\n",
       "t.toml:5: route 'r'.mode: unknown mode 'fancy'"},
      {head + "exchange = \"x\"\ntopic = \"t\"\n",
       "t.toml:5: route 'r'.topic: unknown key (expected name, sender, "},
      {"[[route]]\nname = \"r\"\nsender = \"amqp://:5672\"\nexchange = \"x\"\n",
       "no host"},
      {"[[route]]\nname = \"r\"\nsender = \"amqp://h:99999\"\nexchange = "
       "\"x\"\n",
       "'amqp://h:99999'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.toml);
    auto r = ParseConfig(c.toml, "t.toml");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(c.message), std::string::npos)
        << r.status().ToString();
  }
  auto ok = ParseConfig(head +
                            "exchange = \"events.{category}\"\n"
                            "routing_key = \"{type}.{stream}\"\n"
                            "mode = \"structured\"\nconnect_timeout = \"2s\"\n",
                        "t.toml");
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();
  auto tls = ParseConfig(
      "[[route]]\nname = \"r\"\nsender = \"amqps://h\"\nexchange = \"x\"\n"
      "tls_verify = false\nca_file = \"/x.pem\"\n",
      "t.toml");
  EXPECT_TRUE(tls.ok()) << tls.status().ToString();
}

// ---- against the server -----------------------------------------------------

class RabbitSenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (AmqpUrl().empty()) {
      // CI runs under with-rabbitmq.sh: there a missing server is a failure.
      if (std::getenv("CI")) FAIL() << "HERALD_TEST_AMQP_URL is not set";
      GTEST_SKIP() << "HERALD_TEST_AMQP_URL is not set (run under "
                      "tests/support/with-rabbitmq.sh)";
    }
    amqp_ = std::make_unique<AmqpClient>();
    ASSERT_TRUE(amqp_->ok());
    tag_ = std::to_string(::getpid()) + "." + std::to_string(++counter_);
    exchange_ = "x." + tag_;
    queue_ = "q." + tag_;
    amqp_->Exchange(exchange_, "topic");
    amqp_->Queue(queue_);
    amqp_->Bind(queue_, exchange_, "#");
  }

  std::unique_ptr<Sender> Make(const std::string& extra = "",
                               int max_in_flight = 16) {
    std::string toml = "[[route]]\nname = \"r\"\nsender = \"" + AmqpUrl() +
                       "\"\nexchange = \"" + exchange_ +
                       "\"\nmax_in_flight = " + std::to_string(max_in_flight) +
                       "\nsource = \"shop\"\n" + extra;
    return testing::SenderFromToml(toml);
  }

  std::vector<Event> Events(int streams, int per_stream,
                            const std::string& type = "order.placed") {
    std::vector<Event> out;
    for (int n = 0; n < per_stream; ++n) {
      for (int s = 0; s < streams; ++s) {
        Event e = testing::MakeEvent("order-" + std::to_string(s), type,
                                     "{\"n\":" + std::to_string(n) + "}");
        e.id = NewUuidV7();
        e.position = ++position_;
        e.stream_version = n + 1;
        e.occurred_at_us = NowMicros();
        e.metadata = "{\"correlation_id\":\"c-1\",\"traceparent\":\"00-ab\"}";
        out.push_back(std::move(e));
      }
    }
    return out;
  }

  std::vector<SendResult> Send(Sender* s, const std::vector<Event>& events,
                               milliseconds within = milliseconds(20000)) {
    return testing::SendAll(s, events, within);
  }

  std::unique_ptr<AmqpClient> amqp_;
  std::string tag_, exchange_, queue_;
  int64_t position_ = 0;
  static inline int counter_ = 0;
};

TEST_F(RabbitSenderTest, PublishesPersistentBinaryCloudEventsInStreamOrder) {
  auto sender = Make("routing_key = \"{category}.{type}\"\n", 8);
  ASSERT_NE(sender, nullptr);
  EXPECT_EQ(sender->kind(), "rabbitmq");
  auto events = Events(5, 20);  // 100 events, a window of 8
  auto results = Send(sender.get(), events);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_TRUE(results[i].status.ok()) << i << results[i].status.ToString();
    EXPECT_TRUE(results[i].attempted);
  }
  auto got = amqp_->Read(queue_, events.size());
  ASSERT_EQ(got.size(), events.size());
  std::map<std::string, const Event*> by_id;
  for (const auto& e : events) by_id[e.id] = &e;
  std::map<std::string, int64_t> last;  // stream -> position
  for (const auto& m : got) {
    ASSERT_TRUE(by_id.count(m.id)) << m.id;
    const Event& e = *by_id[m.id];
    EXPECT_EQ(m.delivery_mode, 2);
    EXPECT_EQ(m.type, e.type);
    EXPECT_EQ(m.content_type, "application/json");
    EXPECT_EQ(m.routing_key, "order.order.placed");
    EXPECT_EQ(m.body, e.payload);
    EXPECT_LT(last[e.stream], e.position) << "out of order in " << e.stream;
    last[e.stream] = e.position;
    // The AMQP binding decodes back to the event.
    MessageHeaders h = m.headers;
    h.emplace_back("content-type", m.content_type);
    auto d = DecodeCloudEventHeaders(h, m.body, CloudEventBinding::kAmqp);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->event.id, e.id);
    EXPECT_EQ(d->event.stream, e.stream);
    EXPECT_EQ(d->event.position, e.position);
    EXPECT_EQ(d->source, "shop");
    EXPECT_NE(d->event.metadata.find("\"correlationid\":\"c-1\""),
              std::string::npos)
        << d->event.metadata;
    bool has_trace = false;
    for (const auto& [k, v] : m.headers) {
      has_trace |= k == "cloudEvents:traceparent" && v == "00-ab";
    }
    EXPECT_TRUE(has_trace);
  }
}

TEST_F(RabbitSenderTest, StructuredModeSendsTheJsonEventFormat) {
  auto sender = Make("mode = \"structured\"\n");
  ASSERT_NE(sender, nullptr);
  auto events = Events(1, 2);
  auto results = Send(sender.get(), events);
  for (const auto& r : results) EXPECT_TRUE(r.status.ok());
  auto got = amqp_->Read(queue_, 2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].content_type, "application/cloudevents+json; charset=UTF-8");
  EXPECT_TRUE(got[0].headers.empty());
  auto d = DecodeCloudEventJson(got[0].body);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->event.id, events[0].id);
  EXPECT_EQ(got[0].id, events[0].id);
}

TEST_F(RabbitSenderTest, AnUnroutableMessageIsAPermanentFailureOfItsStream) {
  // Only order-0's type is bound: the return of order-1's events.
  std::string ex = "xr." + tag_;
  amqp_->Exchange(ex, "direct");
  amqp_->Bind(queue_, ex, "routed");
  exchange_ = ex;
  auto sender = Make("routing_key = \"{type}\"\n", 4);
  ASSERT_NE(sender, nullptr);
  std::vector<Event> events = Events(2, 3, "routed");
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].stream == "order-1" && i >= 3) events[i].type = "lost";
  }
  // order-0: routed x3; order-1: routed, lost, lost.
  auto results = Send(sender.get(), events);
  EXPECT_TRUE(results[0].status.ok());
  EXPECT_TRUE(results[1].status.ok());
  EXPECT_TRUE(results[2].status.ok());
  EXPECT_TRUE(results[4].status.ok());
  ASSERT_FALSE(results[3].status.ok());
  EXPECT_FALSE(results[3].status.retryable()) << results[3].status.ToString();
  EXPECT_NE(results[3].status.message().find("unroutable"), std::string::npos)
      << results[3].status.ToString();
  EXPECT_NE(results[3].status.message().find(ex), std::string::npos);
  EXPECT_FALSE(results[5].attempted);  // nothing of order-1 past the failure
  EXPECT_EQ(amqp_->Read(queue_, 4).size(), 4u);
}

TEST_F(RabbitSenderTest, AMissingExchangeIsPermanentAndTheChannelReopens) {
  exchange_ = "missing.{category}." + tag_;
  auto sender = Make("", 4);
  ASSERT_NE(sender, nullptr);
  auto events = Events(2, 2);
  auto results = Send(sender.get(), events);
  ASSERT_FALSE(results[0].status.ok());
  EXPECT_FALSE(results[0].status.retryable()) << results[0].status.ToString();
  EXPECT_NE(results[0].status.message().find("exchange 'missing.order." + tag_),
            std::string::npos)
      << results[0].status.ToString();
  EXPECT_FALSE(results[2].attempted);
  // Once the user creates it, the same sender publishes again.
  amqp_->Exchange("missing.order." + tag_, "fanout");
  amqp_->Bind(queue_, "missing.order." + tag_, "");
  auto again = Send(sender.get(), events);
  for (const auto& r : again) EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(amqp_->Read(queue_, 4).size(), 4u);
  amqp_->DeleteExchange("missing.order." + tag_);
}

TEST_F(RabbitSenderTest, ANackIsRetryableAndStopsOnlyItsStream) {
  // A full queue that refuses publishes: the broker nacks them.
  std::string ex = "xn." + tag_, full = "full." + tag_;
  amqp_->Exchange(ex, "direct");
  amqp_->Queue(full, {{"x-overflow", "reject-publish"}}, {{"x-max-length", 0}});
  amqp_->Bind(full, ex, "order-1");
  amqp_->Bind(queue_, ex, "order-0");
  exchange_ = ex;
  auto sender = Make("routing_key = \"{stream}\"\n", 4);
  ASSERT_NE(sender, nullptr);
  auto events = Events(2, 3);
  auto results = Send(sender.get(), events);
  EXPECT_TRUE(results[0].status.ok());
  EXPECT_TRUE(results[2].status.ok());
  EXPECT_TRUE(results[4].status.ok());
  ASSERT_FALSE(results[1].status.ok());
  EXPECT_TRUE(results[1].status.retryable()) << results[1].status.ToString();
  EXPECT_NE(results[1].status.message().find("nack"), std::string::npos);
  EXPECT_FALSE(results[3].attempted);
  EXPECT_FALSE(results[5].attempted);
  amqp_->DeleteQueue(full);
}

TEST_F(RabbitSenderTest, ReconnectsAfterTheBrokerClosedItsConnections) {
  auto sender = Make();
  ASSERT_NE(sender, nullptr);
  auto first = Events(3, 2);
  for (const auto& r : Send(sender.get(), first)) EXPECT_TRUE(r.status.ok());
  ASSERT_EQ(testing::RabbitCtl({"close_all_connections", "test"}), 0);
  // The test's own connection was closed too.
  amqp_ = std::make_unique<AmqpClient>();
  ASSERT_TRUE(amqp_->ok());
  // At most one retryable round, then delivered.
  auto events = Events(3, 2);
  auto results = Send(sender.get(), events);
  bool all_ok = true;
  for (const auto& r : results) {
    if (!r.status.ok()) {
      EXPECT_TRUE(r.status.retryable()) << r.status.ToString();
      all_ok = false;
    }
  }
  if (!all_ok) {
    std::vector<Event> again;
    for (size_t i = 0; i < events.size(); ++i) {
      if (!results[i].status.ok()) again.push_back(events[i]);
    }
    for (const auto& r : Send(sender.get(), again)) {
      EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    }
  }
  std::set<std::string> ids;
  for (const auto& m : amqp_->Read(queue_, 12)) ids.insert(m.id);
  for (const auto& e : events) EXPECT_TRUE(ids.count(e.id)) << e.id;
}

// Also shows the confirm window: with no confirm coming, exactly
// max_in_flight messages are published (more than one: no round trip per
// message; no more: the window holds).
TEST_F(RabbitSenderTest, ABlockedBrokerIsAbandonedAtTheDeadline) {
  auto sender = Make("", 4);
  ASSERT_NE(sender, nullptr);
  auto first = Events(2, 1);
  for (const auto& r : Send(sender.get(), first)) EXPECT_TRUE(r.status.ok());
  // A memory alarm: the broker stops reading from publishers, so no
  // confirm comes.
  ASSERT_EQ(testing::RabbitCtl({"set_vm_memory_high_watermark", "0"}), 0);
  auto events = Events(8, 2);  // 8 streams, 2 events each
  auto start = steady_clock::now();
  auto results = Send(sender.get(), events, milliseconds(500));
  auto took = steady_clock::now() - start;
  ASSERT_EQ(testing::RabbitCtl({"set_vm_memory_high_watermark", "0.4"}), 0);
  EXPECT_LT(took, milliseconds(1500)) << "Send overran its deadline";
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_FALSE(results[i].status.ok()) << i;
    if (i < 4) {  // the window: the first four streams' first events
      EXPECT_TRUE(results[i].attempted) << i;
      EXPECT_TRUE(results[i].status.retryable())
          << results[i].status.ToString();
    } else {
      EXPECT_FALSE(results[i].attempted) << i;
    }
  }
  // Unblocked, the same sender delivers (on a fresh connection).
  std::vector<SendResult> again;
  ASSERT_TRUE(WaitFor(
      [&] {
        again = Send(sender.get(), events, milliseconds(2000));
        for (const auto& r : again) {
          if (!r.status.ok()) return false;
        }
        return true;
      },
      std::chrono::seconds(20)));
}

TEST_F(RabbitSenderTest, ABrokerThatIsDownIsARetryableFailurePerStream) {
  int port = testing::FreePort();  // nothing listens there
  auto c = ParseConfig("[[route]]\nname = \"r\"\nsender = \"amqp://127.0.0.1:" +
                           std::to_string(port) +
                           "/\"\nexchange = \"x\"\nconnect_timeout = \"1s\"\n",
                       "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto s = MakeSender(c->routes[0]);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto events = Events(2, 2);
  auto results = Send(s->get(), events);
  EXPECT_TRUE(results[0].attempted);
  EXPECT_TRUE(results[1].attempted);
  EXPECT_TRUE(results[0].status.retryable()) << results[0].status.ToString();
  EXPECT_FALSE(results[2].attempted);
  EXPECT_FALSE(results[3].attempted);
}

}  // namespace
}  // namespace herald
