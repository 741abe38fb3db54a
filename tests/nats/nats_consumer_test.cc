// The NATS JetStream consumer source (nats://, keys stream + durable)
// against a real nats-server -js started once for this binary: events the
// built relay publishes are handled exactly once in effect, in per-stream
// order, through relay and consumer SIGKILLs and copies under other
// Nats-Msg-Ids; `herald relay reset` to position 1 re-sends everything and
// the inbox absorbs it all; a poison event parks its stream while the
// others finish; redeliveries, structured mode and the durable's pending
// count are reported; bad keys are refused with key and line.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "herald/cloudevents.h"
#include "herald/consumer.h"
#include "herald/consumer_source.h"
#include "nats/nats_test_util.h"
#include "support/consumer_e2e.h"
#include "support/test_util.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::Child;
using testing::ConsumerE2E;
using testing::HeraldBin;
using testing::RunCommand;
using testing::WaitFor;

class NatsConsumer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new testing::NatsServer(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(server_->ready()) << server_->log();
    n_ = std::to_string(++counter_);
    stream_ = "S" + n_;
    admin_ = std::make_unique<testing::JetStreamAdmin>(server_->url());
    ASSERT_TRUE(admin_->ok()) << admin_->error();
    // A 100 ms duplicate window (the least JetStream takes): what the relay
    // republishes after a SIGKILL and a restart
    // is stored again, so the consumer sees it twice.
    ASSERT_EQ(admin_->AddStream(stream_, {"ev" + n_ + ".>"}, 100), "");
  }

  std::string Route(const std::string& name, const std::string& mode) {
    return testing::RouteTable(
        name, server_->url(),
        "subject = \"ev" + n_ + ".{stream}\"\nmode = \"" + mode + "\"\n");
  }
  // The [[consumer]] table "c" reading this test's stream.
  std::string ConsumerTable(const std::string& exec = "true") {
    return t_.ConsumerTable(server_->url(), "stream = \"" + stream_ + "\"\n",
                            exec);
  }

  ConsumerSourceOptions SourceOptions() {
    return testing::BrokerSourceOptions(
        server_->url(), {testing::StringOption("stream", stream_)});
  }

  void Publish(std::span<const Event> events, const std::string& mode) {
    testing::PublishWithSender(
        testing::SenderRoute(
            server_->url(),
            {testing::StringOption("subject", "ev" + n_ + ".{stream}"),
             testing::StringOption("mode", mode)}),
        events);
  }

  // Each event again, as the NATS sender encodes it but with another
  // Nats-Msg-Id: a second broker message of the same event.
  void PublishCopies(std::span<const Event> events) {
    for (const auto& e : events) {
      natsMsg* m = nullptr;
      std::string subject = "ev" + n_ + "." + e.stream;
      ASSERT_EQ(natsMsg_Create(&m, subject.c_str(), nullptr, e.payload.data(),
                               static_cast<int>(e.payload.size())),
                NATS_OK);
      for (const auto& [k, v] :
           EncodeCloudEventHeaders(e, "herald", CloudEventBinding::kNats)) {
        natsMsgHeader_Set(m, k.c_str(), v.c_str());
      }
      jsPubOptions po;
      jsPubOptions_Init(&po);
      std::string id = e.id + ".again";
      po.MsgId = id.c_str();
      jsPubAck* ack = nullptr;
      natsStatus s = js_PublishMsg(&ack, admin_->js(), m, &po, nullptr);
      if (ack) jsPubAck_Destroy(ack);
      natsMsg_Destroy(m);
      ASSERT_EQ(s, NATS_OK) << natsStatus_GetText(s);
    }
  }

  static inline testing::NatsServer* server_ = nullptr;
  static inline int counter_ = 0;
  std::string n_, stream_;
  std::unique_ptr<testing::JetStreamAdmin> admin_;
  ConsumerE2E t_;
};

TEST_F(NatsConsumer,
       FiveThousandEventsOnceEachInStreamOrderThroughThreeKindsOfDuplicates) {
  testing::RunExactlyOnceScenario(
      t_, Route("r", "binary"), ConsumerTable(), /*dup_copies=*/500,
      [&](std::span<const Event> copies) { PublishCopies(copies); });
}

TEST_F(NatsConsumer,
       APoisonEventParksItsStreamWhileTheOthersFinishThenRetryDeliversInOrder) {
  testing::RunPoisonScenario(
      t_, SourceOptions(),
      [&](std::span<const Event> events) { Publish(events, "binary"); });
}

TEST_F(NatsConsumer, RedeliveriesStructuredModeAndPendingCount) {
  t_.Append(5, 5);
  Publish(std::span<const Event>(t_.events()).subspan(0, 3), "structured");
  auto so = SourceOptions();
  so.max_in_hand = 10;
  auto source = MakeConsumerSource(so);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  ConsumerSource& src = **source;
  EXPECT_EQ(src.kind(), "nats");
  ASSERT_TRUE(src.Start().ok());
  ASSERT_TRUE(testing::AwaitLag(src, 3));
  auto poll = [&](size_t want) {
    return testing::PollUntil(src, want, seconds(10), 10);
  };
  auto got = poll(3);
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    testing::ExpectDeliveryOf(got[i], t_.events()[i]);
    EXPECT_EQ(got[i].redeliveries, 0);
  }
  ASSERT_TRUE(src.Release(testing::HandlesOf(got)).ok());
  auto again = poll(3);
  ASSERT_EQ(again.size(), 3u);
  std::set<std::string> ids;
  for (const auto& d : again) {
    EXPECT_EQ(d.redeliveries, 1);
    ids.insert(d.event.id);
  }
  EXPECT_EQ(ids.size(), 3u);
  ASSERT_TRUE(src.Ack(testing::HandlesOf(again)).ok());
  // Binary mode too; acknowledged ones never come back.
  Publish(std::span<const Event>(t_.events()).subspan(3), "binary");
  auto rest = poll(2);
  ASSERT_EQ(rest.size(), 2u);
  testing::ExpectDeliveryOf(rest[0], t_.events()[3]);
  testing::ExpectDeliveryOf(rest[1], t_.events()[4]);
  ASSERT_TRUE(src.Ack(testing::HandlesOf(rest)).ok());
  ASSERT_TRUE(testing::AwaitLag(src, 0));
  testing::ExpectNothingMore(src);
  src.Close();
}

// `herald relay reset` end to end: the built relay publishes 200 events to
// JetStream, `herald consume` hands each to an exec handler that inserts
// one row into a domain table; the route's checkpoint is moved back to
// position 1 and the relay sends everything again (the stream's 100 ms
// duplicate window long past, JetStream stores every copy): the inbox
// absorbs every re-sent event, so the domain table is unchanged and the
// duplicates counted are the copies the broker delivered.
TEST_F(NatsConsumer, RelayResetToPositionOneLeavesTheDomainTableUnchanged) {
  constexpr int kEvents = 200;
  std::string domain = t_.dir().file("domain.db");
  std::string out, err;
  ASSERT_EQ(RunCommand({"sqlite3", domain, testing::kDomainTable}, &out, &err),
            0)
      << err;
  std::string script = t_.dir().file("handler.sh");
  std::ofstream(script) << "#!/bin/sh\nexec sqlite3 -cmd '.timeout 10000' '"
                        << domain
                        << "' \"INSERT INTO domain_rows (id, stream) VALUES "
                           "('$HERALD_EVENT_ID', '$HERALD_EVENT_STREAM')\"\n";
  std::string config =
      t_.WriteConfig(Route("r", "binary") + ConsumerTable("sh " + script));
  t_.Append(kEvents, 10);
  auto relay = std::make_unique<Child>(t_.StartRelay(config));
  Child::Options co;
  co.stderr_path = t_.dir().file("consume.err");
  Child consume({HeraldBin(), "consume", "--config", config}, co);
  std::string status_text;  // the last `herald consume status`
  auto consume_status = [&] {
    std::string e;
    RunCommand({HeraldBin(), "consume", "status", "--config", config},
               &status_text, &e);
    auto rows = testing::JsonLines(status_text);
    return rows.size() == 1 ? rows[0] : Json();
  };
  // The relay caught up (its checkpoint past the head) and every event was
  // handled once and counted.
  auto relay_caught_up = [&](std::string* text) {
    auto rows = testing::RelayStatusRows(config, text);
    return rows.size() == 1 &&
           testing::JsonInt(rows[0], "checkpoint") == kEvents + 1 &&
           testing::JsonInt(rows[0], "lag_events") == 0;
  };
  std::string text;
  ASSERT_TRUE(WaitFor(
      [&] {
        return relay_caught_up(&text) &&
               testing::JsonInt(consume_status(), "handled") == kEvents;
      },
      seconds(60)))
      << text << testing::ReadTextFile(co.stderr_path);
  auto before = testing::ReadDomainRows(domain);
  testing::ExpectOnceEachInStreamOrder(before, t_.events());
  EXPECT_EQ(testing::JsonInt(consume_status(), "duplicates"), 0);
  ASSERT_EQ(admin_->Count(stream_), kEvents);

  // The relay stopped (reset takes the route's lease), the checkpoint moved
  // to 1, the relay started again: everything is sent a second time.
  relay->Signal(SIGTERM);
  ASSERT_EQ(relay->Wait(), 0);
  ASSERT_EQ(RunCommand({HeraldBin(), "relay", "reset", "--config", config,
                        "--route", "r", "--to-position", "1"},
                       &out, &err),
            0)
      << err;
  EXPECT_EQ(out, "{\"route\":\"r\",\"checkpoint\":1}\n");
  relay = std::make_unique<Child>(t_.StartRelay(config));
  ASSERT_TRUE(WaitFor([&] { return relay_caught_up(&text); }, seconds(60)))
      << text;
  // Every copy the broker stored reached the consumer (nothing pending)
  // and was counted as a duplicate.
  int64_t stored = admin_->Count(stream_);
  EXPECT_GE(stored, 2 * kEvents);
  Json status;
  ASSERT_TRUE(WaitFor(
      [&] {
        status = consume_status();
        return testing::JsonInt(status, "lag") == 0 &&
               testing::JsonInt(status, "duplicates") == stored - kEvents;
      },
      seconds(60)))
      << status_text << " stored " << stored << "\n"
      << testing::ReadTextFile(co.stderr_path);
  relay->Signal(SIGTERM);
  EXPECT_EQ(relay->Wait(), 0);
  consume.Signal(SIGTERM);
  EXPECT_EQ(consume.Wait(), 0) << testing::ReadTextFile(co.stderr_path);
  status = consume_status();
  EXPECT_EQ(testing::JsonInt(status, "handled"), kEvents);
  EXPECT_EQ(testing::JsonInt(status, "duplicates"), stored - kEvents);
  // The domain table: the same rows, in the same order, none added.
  auto after = testing::ReadDomainRows(domain);
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].seq, before[i].seq);
    EXPECT_EQ(after[i].id, before[i].id);
    EXPECT_EQ(after[i].stream, before[i].stream);
  }
}

TEST_F(NatsConsumer, AStreamThatDoesNotExistStopsTheConsumerWithItsName) {
  auto so = SourceOptions();
  so.options.fields[0].value.string = "NoSuchStream";
  auto source = MakeConsumerSource(so);
  ASSERT_TRUE(source.ok());
  Status s = (*source)->Start();
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find("NoSuchStream"), std::string::npos)
      << s.ToString();
}

class NatsConsumerConfig : public testing::ConsumerConfigRefusal {
 protected:
  NatsConsumerConfig() : ConsumerConfigRefusal("nats://127.0.0.1:1") {}
};

// A key that is not there is named with the [[consumer]] header's line.
TEST_F(NatsConsumerConfig, AMissingStreamIsRefusedNamingTheKey) {
  std::string err = Refused("durable = \"d\"\n");
  EXPECT_NE(err.find("herald.toml:4: consumer 'c'.stream: is required"),
            std::string::npos)
      << err;
}

TEST_F(NatsConsumerConfig, ADurableWithADotIsRefusedWithItsLine) {
  std::string err = Refused("stream = \"S\"\ndurable = \"a.b\"\n");
  EXPECT_NE(err.find("herald.toml:10: consumer 'c'.durable: must be a "
                     "JetStream durable name"),
            std::string::npos)
      << err;
}

TEST_F(NatsConsumerConfig, AConsumerNameWithADotNeedsADurable) {
  std::string err = Refused("stream = \"S\"\n", "a.b");
  EXPECT_NE(err.find("consumer 'a.b'.durable: is required"), std::string::npos)
      << err;
}

TEST_F(NatsConsumerConfig, AnUnknownKeyIsRefusedWithItsLine) {
  std::string err = Refused("stream = \"S\"\ntopic = \"t\"\n");
  EXPECT_NE(err.find("herald.toml:10: consumer 'c'.topic: unknown key"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("stream, durable"), std::string::npos) << err;
}

}  // namespace
}  // namespace herald
