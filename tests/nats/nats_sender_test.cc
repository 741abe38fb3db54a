// The NATS JetStream sender against a real nats-server (one per test
// binary, started by the test): the CloudEvents NATS binding on the wire,
// Nats-Msg-Id deduplication, a subject no stream captures, a server that
// goes away and comes back, and the route options checked at config load.
#include "transport/nats/nats_sender.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include "herald/cloudevents.h"
#include "herald/config.h"
#include "herald/relay.h"
#include "herald/sender.h"
#include "herald/store.h"
#include "herald/time.h"
#include "herald/uuid.h"
#include "nats/nats_test_util.h"
#include "support/sender_test_util.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

testing::NatsServer& Server() {
  static testing::NatsServer server;
  return server;
}

class NatsSenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Server().ready()) << Server().log();
    static int counter = 0;
    name_ = "lib" + std::to_string(++counter);
    admin_ = std::make_unique<testing::JetStreamAdmin>(Server().url());
    ASSERT_TRUE(admin_->ok()) << admin_->error();
  }

  RouteConfig Route(const std::string& subject,
                    std::vector<OptionField> extra = {},
                    int max_in_flight = 8) {
    RouteConfig route;
    route.name = name_;
    route.sender = Server().url();
    route.max_in_flight = max_in_flight;
    route.options.route = name_;
    route.options.fields.push_back({"subject", OptionValue::String(subject)});
    for (auto& f : extra) route.options.fields.push_back(std::move(f));
    return route;
  }
  std::unique_ptr<Sender> Make(const std::string& subject,
                               std::vector<OptionField> extra = {},
                               int max_in_flight = 8) {
    return testing::CheckedSender(
        Route(subject, std::move(extra), max_in_flight));
  }

  Event Ev(const std::string& stream, int64_t version) {
    return testing::BrokerTestEvent(stream, version, ++position_);
  }

  std::vector<SendResult> Send(Sender* s, const std::vector<Event>& events,
                               milliseconds budget = milliseconds(20000)) {
    return testing::SendAll(s, events, budget);
  }

  std::string name_;
  std::unique_ptr<testing::JetStreamAdmin> admin_;
  int64_t position_ = 0;
};

TEST_F(NatsSenderTest, BinaryModeCarriesTheEventInNatsHeaders) {
  ASSERT_EQ(admin_->AddStream(name_, {name_ + ".>"}), "");
  auto sender = Make(name_ + ".{category}.{type}");
  ASSERT_NE(sender, nullptr);
  EXPECT_EQ(sender->kind(), "nats");
  std::vector<Event> events = {Ev("order-42", 1), Ev("order-42", 2)};
  auto results = Send(sender.get(), events);
  for (const auto& r : results)
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();

  auto got = admin_->ReadAll(name_);
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < got.size(); ++i) {
    const Event& e = events[i];
    EXPECT_EQ(got[i].subject, name_ + ".order.order.placed");
    EXPECT_EQ(got[i].id, e.id);  // Nats-Msg-Id
    EXPECT_EQ(got[i].data, e.payload);
    MessageHeaders headers(got[i].headers.begin(), got[i].headers.end());
    auto d =
        DecodeCloudEventHeaders(headers, got[i].data, CloudEventBinding::kNats);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->event.id, e.id);
    EXPECT_EQ(d->event.stream, e.stream);
    EXPECT_EQ(d->event.type, e.type);
    EXPECT_EQ(d->event.position, e.position);
    EXPECT_EQ(d->event.occurred_at_us, e.occurred_at_us);
    EXPECT_EQ(d->event.content_type, e.content_type);
    EXPECT_EQ(d->source, "herald");
    // Metadata as extension attributes (traceparent as tracing names it).
    EXPECT_EQ(got[i].headers["ce-traceparent"], "00-abc-def-01");
    EXPECT_NE(d->event.metadata.find("\"tenant\":\"a b%\""), std::string::npos)
        << d->event.metadata;
  }
}

TEST_F(NatsSenderTest, StructuredModeSendsTheJsonEventFormat) {
  ASSERT_EQ(admin_->AddStream(name_, {name_ + ".>"}), "");
  auto sender =
      Make(name_ + ".{stream}", {{"mode", OptionValue::String("structured")}});
  ASSERT_NE(sender, nullptr);
  std::vector<Event> events = {Ev("cart-1", 1)};
  auto results = Send(sender.get(), events);
  ASSERT_TRUE(results[0].status.ok()) << results[0].status.ToString();
  auto got = admin_->ReadAll(name_);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].headers["Content-Type"], "application/cloudevents+json");
  EXPECT_EQ(got[0].id, events[0].id);
  auto d = DecodeCloudEventJson(got[0].data);
  ASSERT_TRUE(d.ok()) << d.status().ToString() << got[0].data;
  EXPECT_EQ(d->event.id, events[0].id);
  EXPECT_EQ(d->event.stream, "cart-1");
  EXPECT_EQ(d->event.payload, events[0].payload);
}

// The header lines of a NATS header block, sorted (the status line and the
// blank line left out).
std::vector<std::string> HeaderLines(const std::string& block) {
  std::vector<std::string> lines;
  size_t from = 0;
  for (size_t end; (end = block.find("\r\n", from)) != std::string::npos;
       from = end + 2) {
    if (from > 0 && end > from) lines.push_back(block.substr(from, end - from));
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

// A libnats whose natsMsg_create fails the sender's start-up check gets its
// messages made with natsMsgHeader_Set instead (forced here): JetStream
// stores the same header lines (ce- attributes, Nats-Msg-Id) and body as
// from the fast path's header block, in both modes; only their order
// differs (libnats writes its own).
TEST_F(NatsSenderTest, TheHeaderSetFallbackStoresWhatTheFastPathStores) {
  ASSERT_EQ(admin_->AddStream(name_ + "-fast", {name_ + ".fast.>"}), "");
  ASSERT_EQ(admin_->AddStream(name_ + "-set", {name_ + ".set.>"}), "");
  // Stored in each stream: binary 1, 2, then structured 1, 2 (new ids:
  // a repeated Nats-Msg-Id would be dropped as a duplicate).
  std::vector<Event> all;
  for (const std::string mode : {"binary", "structured"}) {
    std::vector<Event> events = {Ev("order-42", 1), Ev("order-42", 2)};
    all.insert(all.end(), events.begin(), events.end());
    for (const std::string path : {"fast", "set"}) {
      RouteConfig route = Route(name_ + "." + path + "." + mode + ".{stream}",
                                {{"mode", OptionValue::String(mode)}});
      ASSERT_TRUE(ValidateSenderOptions(&route).ok());
      detail::NatsTestKnobs knobs;
      knobs.force_header_set = path == "set";
      auto made = detail::MakeNatsSenderForTest(route, knobs);
      ASSERT_TRUE(made.ok()) << made.status().ToString();
      // This libnats passes the check: the fallback is taken only forced.
      EXPECT_EQ(detail::NatsSenderUsesWireForm(**made), path == "fast");
      for (const auto& r : Send(made->get(), events)) {
        EXPECT_TRUE(r.status.ok()) << r.status.ToString();
      }
    }
  }
  for (uint64_t seq = 1; seq <= all.size(); ++seq) {
    SCOPED_TRACE("message " + std::to_string(seq));
    std::string error;
    auto fast = admin_->GetRaw(name_ + "-fast", seq, &error);
    auto set = admin_->GetRaw(name_ + "-set", seq, &error);
    ASSERT_EQ(error, "");
    const Event& e = all[seq - 1];
    const std::string mode = seq <= 2 ? "binary" : "structured";
    EXPECT_EQ(fast.subject, name_ + ".fast." + mode + ".order-42");
    EXPECT_EQ(set.subject, name_ + ".set." + mode + ".order-42");
    EXPECT_EQ(set.data, fast.data);
    if (mode == "binary") {
      EXPECT_EQ(fast.data, e.payload);
    }
    EXPECT_EQ(fast.header_block.rfind("NATS/1.0\r\n", 0), 0u)
        << fast.header_block;
    EXPECT_EQ(set.header_block.rfind("NATS/1.0\r\n", 0), 0u)
        << set.header_block;
    EXPECT_EQ(set.header_block.size(), fast.header_block.size())
        << set.header_block << fast.header_block;
    const auto lines = HeaderLines(fast.header_block);
    EXPECT_EQ(HeaderLines(set.header_block), lines);
    EXPECT_NE(std::find(lines.begin(), lines.end(), "Nats-Msg-Id: " + e.id),
              lines.end())
        << fast.header_block;
    if (mode == "binary") {
      // Every attribute the binding gives the event, percent-encoded.
      for (const auto& [name, value] :
           EncodeCloudEventHeaders(e, "herald", CloudEventBinding::kNats)) {
        EXPECT_NE(std::find(lines.begin(), lines.end(), name + ": " + value),
                  lines.end())
            << name << " in " << fast.header_block;
      }
      EXPECT_EQ(lines.size(),
                EncodeCloudEventHeaders(e, "herald", CloudEventBinding::kNats)
                        .size() +
                    1);
    } else {
      EXPECT_NE(std::find(lines.begin(), lines.end(),
                          "Content-Type: application/cloudevents+json"),
                lines.end())
          << fast.header_block;
    }
  }
}

// A relay that sends a batch again (after a crash, a lost PubAck) sends the
// same Nats-Msg-Id: JetStream's duplicate window keeps one copy, and the
// repeat is acknowledged.
TEST_F(NatsSenderTest, ARepeatIsStoredOnce) {
  ASSERT_EQ(admin_->AddStream(name_, {name_ + ".>"}), "");
  auto sender = Make(name_ + ".{stream}");
  ASSERT_NE(sender, nullptr);
  std::vector<Event> events;
  for (int v = 1; v <= 20; ++v) {
    for (int s = 0; s < 5; ++s)
      events.push_back(Ev("s-" + std::to_string(s), v));
  }
  for (int round = 0; round < 2; ++round) {
    auto results = Send(sender.get(), events);
    for (const auto& r : results)
      ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  }
  auto got = admin_->ReadAll(name_);
  ASSERT_EQ(got.size(), events.size());
  // Per stream, in the order given.
  std::map<std::string, int64_t> last;
  std::map<std::string, int64_t> position;
  for (const auto& e : events) position[e.id] = e.position;
  for (const auto& m : got) {
    ASSERT_TRUE(position.count(m.id)) << m.id;
    EXPECT_LT(last[m.subject], position[m.id]) << m.subject;
    last[m.subject] = position[m.id];
  }
}

// herald does not create streams: a subject no stream captures is a
// permanent failure saying so; the rest of that stream is not sent, other
// streams go on.
TEST_F(NatsSenderTest, ASubjectNoStreamCapturesIsAPermanentFailure) {
  ASSERT_EQ(admin_->AddStream(name_, {name_ + ".good.>"}), "");
  auto sender = Make(name_ + ".{category}.{stream}");
  ASSERT_NE(sender, nullptr);
  std::vector<Event> events = {Ev("good-1", 1), Ev("bad-1", 1), Ev("good-1", 2),
                               Ev("bad-1", 2), Ev("good-2", 1)};
  auto results = Send(sender.get(), events);
  EXPECT_TRUE(results[0].status.ok());
  EXPECT_TRUE(results[2].status.ok());
  EXPECT_TRUE(results[4].status.ok());
  EXPECT_FALSE(results[1].status.ok());
  EXPECT_FALSE(results[1].status.retryable()) << results[1].status.ToString();
  EXPECT_TRUE(results[1].attempted);
  EXPECT_NE(results[1].status.message().find("no JetStream stream captures"),
            std::string::npos)
      << results[1].status.ToString();
  EXPECT_NE(results[1].status.message().find(name_ + ".bad.bad-1"),
            std::string::npos)
      << results[1].status.ToString();
  EXPECT_FALSE(results[3].attempted);
  EXPECT_FALSE(results[3].status.ok());
  EXPECT_EQ(admin_->ReadAll(name_).size(), 3u);
}

// Pipelined sending: a call may return with its last publishes in flight;
// the next call passes them again first and gets their PubAcks. One of
// them fails there (no stream captures its subject): it is reported then,
// and nothing later of its stream is sent; the other streams go on, in
// order, each event stored once.
TEST_F(NatsSenderTest, AFailureOfAnEventLeftInFlightStopsItsStreamNextCall) {
  ASSERT_EQ(admin_->AddStream(name_, {name_ + ".good.>"}), "");
  auto sender = Make(name_ + ".{category}.{stream}");
  ASSERT_NE(sender, nullptr);
  const auto deadline = steady_clock::now() + std::chrono::seconds(20);
  std::vector<Event> first = {Ev("good-1", 1), Ev("bad-1", 1)};
  std::vector<SendResult> r1(first.size(), SendResult::NotSent());
  sender->SendKeepingInFlight(first, r1, deadline);
  // Everything sent, nothing waited for: both are still in flight.
  for (const auto& r : r1) {
    EXPECT_TRUE(r.in_flight);
    EXPECT_TRUE(r.attempted);
    EXPECT_FALSE(r.status.ok());
  }

  std::vector<Event> second = {first[0], first[1], Ev("good-1", 2),
                               Ev("bad-1", 2), Ev("good-2", 1)};
  std::vector<SendResult> r2(second.size(), SendResult::NotSent());
  sender->SendKeepingInFlight(second, r2, deadline);
  EXPECT_TRUE(r2[0].status.ok()) << r2[0].status.ToString();
  EXPECT_FALSE(r2[1].status.ok());
  EXPECT_FALSE(r2[1].in_flight);
  EXPECT_FALSE(r2[1].status.retryable()) << r2[1].status.ToString();
  EXPECT_NE(r2[1].status.message().find("no JetStream stream captures"),
            std::string::npos)
      << r2[1].status.ToString();
  EXPECT_FALSE(r2[3].attempted);  // behind the failure: not sent
  EXPECT_FALSE(r2[3].status.ok());
  EXPECT_FALSE(r2[3].in_flight);
  // The last of the good streams: acknowledged or still in flight.
  std::vector<Event> third;
  for (size_t i : {2, 4}) {
    EXPECT_TRUE(r2[i].status.ok() || r2[i].in_flight)
        << r2[i].status.ToString();
    if (r2[i].in_flight) third.push_back(second[i]);
  }
  // A plain Send answers what is left and leaves nothing in flight.
  std::vector<SendResult> r3(third.size(), SendResult::NotSent());
  sender->Send(third, r3, deadline);
  for (const auto& r : r3) {
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_FALSE(r.in_flight);
  }

  auto got = admin_->ReadAll(name_);
  ASSERT_EQ(got.size(), 3u);
  std::vector<std::string> ids;
  for (const auto& m : got) ids.push_back(m.id);
  std::vector<std::string> good1;
  for (const auto& m : got) {
    if (m.subject == name_ + ".good.good-1") good1.push_back(m.id);
  }
  EXPECT_EQ(good1, (std::vector<std::string>{second[0].id, second[2].id}));
  EXPECT_NE(std::find(ids.begin(), ids.end(), second[4].id), ids.end());
}

// An event left in flight that the next call does not pass is abandoned;
// passed later, it is sent again and acknowledged (stored once, thanks to
// Nats-Msg-Id).
TEST_F(NatsSenderTest, AnEventLeftInFlightAndNotPassedAgainIsAbandoned) {
  ASSERT_EQ(admin_->AddStream(name_, {name_ + ".>"}), "");
  auto sender = Make(name_ + ".{stream}");
  ASSERT_NE(sender, nullptr);
  const auto deadline = steady_clock::now() + std::chrono::seconds(20);
  std::vector<Event> kept = {Ev("a", 1), Ev("b", 1)};
  std::vector<SendResult> r(kept.size(), SendResult::NotSent());
  sender->SendKeepingInFlight(kept, r, deadline);
  EXPECT_TRUE(r[0].in_flight && r[1].in_flight);
  std::vector<Event> other = {Ev("c", 1)};
  auto r2 = Send(sender.get(), other);
  EXPECT_TRUE(r2[0].status.ok()) << r2[0].status.ToString();
  auto r3 = Send(sender.get(), kept);
  for (const auto& x : r3) EXPECT_TRUE(x.status.ok()) << x.status.ToString();
  EXPECT_EQ(admin_->Count(name_), 3);
}

// The relay's side, end to end: a backlog read in batches of 10, the 10th
// event the first of a stream no JetStream stream captures. It is the last
// publish of the first batch, so it is still in flight when the next batch
// (with that stream's later events) is handed over; its failure there parks
// it and holds everything later of its stream, and nothing of that stream
// reaches JetStream, while the other streams are stored in order.
TEST_F(NatsSenderTest, RelayParksAFailureCarriedIntoTheNextBatch) {
  ASSERT_EQ(admin_->AddStream(name_, {name_ + ".good.>"}), "");
  testing::TempDir dir;
  auto opened = OpenStore("sqlite:" + dir.file("h.db"));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Store> store = std::move(*opened);
  std::vector<Event> events;
  for (int i = 0; i < 30; ++i) {
    // good-0..good-8 in turn; the 10th is bad-1, then bad-1 every 4th.
    std::string stream = i == 9 || (i > 9 && i % 4 == 1)
                             ? "bad-1"
                             : "good-" + std::to_string(i % 9);
    Event e = testing::MakeEvent(stream, "t.x");
    events.push_back(e);
  }
  auto appended = store->Append(std::span<Event>(events));
  ASSERT_TRUE(appended.ok()) << appended.status().ToString();
  RouteConfig route;
  route.name = name_;
  route.sender = Server().url();
  route.batch = 10;
  route.max_in_flight = 8;
  route.on_failure = FailurePolicy::kPark;
  route.options.route = name_;
  route.options.fields.push_back(
      {"subject", OptionValue::String(name_ + ".{category}.{stream}")});
  RelayOptions options;
  options.lease_ttl = milliseconds(3000);
  Relay relay(store.get(), options);
  ASSERT_TRUE(relay.AddRoute(route).ok());
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(testing::WaitFor([&] {
    auto c = store->GetCheckpoint(Relay::CheckpointName(name_));
    return c.ok() && *c == events.back().position + 1;
  }));
  relay.Stop();
  auto parked = relay.ListParked(name_);
  ASSERT_TRUE(parked.ok()) << parked.status().ToString();
  std::vector<int64_t> bad;
  for (const auto& e : events) {
    if (e.stream == "bad-1") bad.push_back(e.position);
  }
  ASSERT_EQ(parked->size(), bad.size());
  EXPECT_EQ((*parked)[0].event.position, bad[0]);
  EXPECT_EQ((*parked)[0].state, "parked");
  EXPECT_NE((*parked)[0].error.find("no JetStream stream captures"),
            std::string::npos)
      << (*parked)[0].error;
  for (size_t i = 1; i < parked->size(); ++i) {
    EXPECT_EQ((*parked)[i].state, "held");
    EXPECT_EQ((*parked)[i].event.position, bad[i]);
  }
  auto got = admin_->ReadAll(name_);
  EXPECT_EQ(got.size(), events.size() - bad.size());
  std::map<std::string, int64_t> position, last;
  for (const auto& e : events) position[e.id] = e.position;
  std::set<std::string> seen;
  for (const auto& m : got) {
    EXPECT_TRUE(seen.insert(m.id).second) << "stored twice: " << m.id;
    EXPECT_LT(last[m.subject], position[m.id]) << m.subject << " out of order";
    last[m.subject] = position[m.id];
  }
}

// The stream's own refusals: a message larger than it takes is permanent;
// a full stream that discards new messages is retryable (it may drain).
TEST_F(NatsSenderTest, AStreamsRefusalsAreToldApart) {
  ASSERT_EQ(admin_->AddStream(name_, {name_ + ".>"}, 120000,
                              [](jsStreamConfig* c) {
                                c->MaxMsgs = 2;
                                c->Discard = js_DiscardNew;
                                c->MaxMsgSize = 1000;
                              }),
            "");
  auto sender = Make(name_ + ".{stream}");
  ASSERT_NE(sender, nullptr);
  Event big = Ev("big", 1);
  big.payload = "\"" + std::string(2000, 'x') + "\"";
  std::vector<Event> events = {big, Ev("a", 1), Ev("a", 2), Ev("a", 3)};
  auto results = Send(sender.get(), events);
  EXPECT_FALSE(results[0].status.ok());
  EXPECT_FALSE(results[0].status.retryable()) << results[0].status.ToString();
  EXPECT_NE(results[0].status.message().find("err_code"), std::string::npos)
      << results[0].status.ToString();
  EXPECT_TRUE(results[1].status.ok()) << results[1].status.ToString();
  EXPECT_TRUE(results[2].status.ok()) << results[2].status.ToString();
  EXPECT_FALSE(results[3].status.ok());
  EXPECT_EQ(results[3].status.code(), Status::Code::kResourceExhausted)
      << results[3].status.ToString();
  EXPECT_EQ(admin_->Count(name_), 2);
}

TEST_F(NatsSenderTest, NothingIsSentPastTheDeadline) {
  ASSERT_EQ(admin_->AddStream(name_, {name_ + ".>"}), "");
  auto sender = Make(name_ + ".{stream}");
  ASSERT_NE(sender, nullptr);
  std::vector<Event> events = {Ev("a", 1), Ev("b", 1)};
  std::vector<SendResult> results(events.size(), SendResult::NotSent());
  sender->Send(events, results, steady_clock::now());
  for (const auto& r : results) EXPECT_FALSE(r.attempted);
  EXPECT_EQ(admin_->Count(name_), 0);
}

// A server that goes away: retryable failures, never OK; when it is back
// the same sender reconnects by itself and delivers, each event once.
TEST(NatsSenderRestart, AServerThatComesBackIsReconnectedToByItself) {
  testing::NatsServer server;
  ASSERT_TRUE(server.ready()) << server.log();
  {
    testing::JetStreamAdmin admin(server.url());
    ASSERT_TRUE(admin.ok());
    ASSERT_EQ(admin.AddStream("restart", {"restart.>"}), "");
  }
  RouteConfig route;
  route.name = "restart";
  route.sender = server.url();
  route.max_in_flight = 4;
  route.options.route = "restart";
  route.options.fields.push_back(
      {"subject", OptionValue::String("restart.{stream}")});
  route.options.fields.push_back(
      {"connect_timeout", OptionValue::String("200ms")});
  route.options.fields.push_back({"timeout", OptionValue::String("1s")});
  auto made = MakeSender(route);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  std::unique_ptr<Sender> sender = std::move(*made);

  int64_t position = 0;
  auto batch = [&](int n) {
    std::vector<Event> out;
    for (int i = 0; i < n; ++i) {
      Event e = testing::MakeEvent("s-" + std::to_string(i % 3), "t.x");
      e.id = NewUuidV7();
      e.position = ++position;
      out.push_back(e);
    }
    return out;
  };
  auto send = [&](const std::vector<Event>& events) {
    std::vector<SendResult> r(events.size(), SendResult::NotSent());
    sender->Send(events, r, steady_clock::now() + std::chrono::seconds(5));
    return r;
  };
  auto first = batch(30);
  for (const auto& r : send(first)) ASSERT_TRUE(r.status.ok());

  server.Stop();
  auto down = batch(9);
  auto t0 = steady_clock::now();
  auto results = send(down);
  EXPECT_LT(steady_clock::now() - t0, std::chrono::seconds(3));
  int attempted = 0;
  for (const auto& r : results) {
    EXPECT_FALSE(r.status.ok());
    if (r.attempted) {
      ++attempted;
      EXPECT_TRUE(r.status.retryable()) << r.status.ToString();
    }
  }
  EXPECT_GE(attempted, 1);

  ASSERT_TRUE(server.Start()) << server.log();
  // The relay sends again (with backoff); here: until all are delivered.
  std::vector<Event> pending = down;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        auto r = send(pending);
        std::vector<Event> left;
        for (size_t i = 0; i < r.size(); ++i) {
          if (!r[i].status.ok()) left.push_back(pending[i]);
        }
        pending = left;
        return pending.empty();
      },
      std::chrono::seconds(20)));
  testing::JetStreamAdmin admin(server.url());
  auto got = admin.ReadAll("restart");
  std::set<std::string> ids;
  for (const auto& m : got) EXPECT_TRUE(ids.insert(m.id).second) << m.id;
  EXPECT_EQ(got.size(), first.size() + down.size());
}

// The server crashes while a call has many publishes in flight: per
// stream, what was reported delivered is a prefix (and survives the
// crash), the first failure is retryable, and the rest of that stream was
// not sent. Sent again (as the relay does) once the server is back, every
// event is stored once and in stream order.
//
// The crash is forced to find a publish in flight: the server is frozen
// (SIGSTOP), so it answers nothing more, and killed (SIGKILL) only once a
// publish it will never read sits in its socket. A clean stop (SIGTERM)
// could answer everything in flight first, and a kill alone could come
// while the sender had, for a moment, nothing in flight: either way no
// attempt would fail, and the call would only leave the rest unsent.
TEST(NatsSenderRestart, AServerStoppedMidCallBreaksNoStreamOrder) {
  testing::NatsServer server;
  ASSERT_TRUE(server.ready()) << server.log();
  auto admin = std::make_unique<testing::JetStreamAdmin>(server.url());
  ASSERT_EQ(admin->AddStream("mid", {"mid.>"}), "");
  constexpr int kMaxInFlight = 64;
  RouteConfig route;
  route.name = "mid";
  route.sender = server.url();
  route.max_in_flight = kMaxInFlight;
  route.options.route = "mid";
  route.options.fields.push_back(
      {"subject", OptionValue::String("mid.{stream}")});
  // Longer than the test takes to kill the frozen server: what is in flight
  // then fails by the lost connection (a PubAck timeout would do as well).
  route.options.fields.push_back({"timeout", OptionValue::String("10s")});
  route.options.fields.push_back(
      {"connect_timeout", OptionValue::String("200ms")});
  auto made = MakeSender(route);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  std::unique_ptr<Sender> sender = std::move(*made);

  std::vector<Event> events;
  for (int i = 0; i < 20000; ++i) {
    Event e = testing::MakeEvent("s-" + std::to_string(i % 100), "t.x");
    e.id = NewUuidV7();
    e.position = i + 1;
    events.push_back(e);
  }
  std::vector<SendResult> results(events.size(), SendResult::NotSent());
  std::thread call([&] {
    sender->Send(events, results,
                 steady_clock::now() + std::chrono::seconds(20));
  });
  constexpr int64_t kStoredBeforeCrash = 500;
  bool midway = testing::WaitFor(
      [&] { return admin->Count("mid") >= kStoredBeforeCrash; },
      std::chrono::seconds(20));
  admin.reset();
  server.Freeze();
  // The sender answers what was acknowledged before the freeze with more
  // publishes (or has some unanswered already): they stay unread.
  bool unanswered = testing::WaitFor([&] { return server.UnreadBytes() > 0; },
                                     std::chrono::seconds(20));
  server.Kill();
  call.join();
  ASSERT_TRUE(midway);
  ASSERT_TRUE(unanswered) << "nothing unanswered: the call ended too soon";

  std::map<std::string, bool> failed;  // stream -> a failure seen
  size_t ok = 0, attempted_failures = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    const std::string& st = events[i].stream;
    if (failed[st]) {
      EXPECT_FALSE(results[i].status.ok()) << "OK after a failure, " << i;
      EXPECT_FALSE(results[i].attempted) << "sent after a failure, " << i;
      continue;
    }
    if (results[i].status.ok()) {
      ++ok;
      continue;
    }
    failed[st] = true;
    if (results[i].attempted) {
      ++attempted_failures;
      EXPECT_TRUE(results[i].status.retryable())
          << results[i].status.ToString();
    }
  }
  // Every stored message was acknowledged to the sender but for those in
  // flight when the server froze (at most max_in_flight).
  EXPECT_GE(ok + kMaxInFlight, static_cast<size_t>(kStoredBeforeCrash));
  EXPECT_LT(ok, events.size()) << "the stop came too late to test anything";
  // The publishes the server never read were attempted and failed.
  EXPECT_GE(attempted_failures, 1u);

  ASSERT_TRUE(server.Start()) << server.log();
  {
    // What was reported delivered outlived the crash.
    testing::JetStreamAdmin after_crash(server.url());
    std::set<std::string> stored;
    for (const auto& m : after_crash.ReadAll("mid")) stored.insert(m.id);
    for (size_t i = 0; i < events.size(); ++i) {
      if (results[i].status.ok()) {
        EXPECT_TRUE(stored.count(events[i].id)) << "lost in the crash: " << i;
      }
    }
  }
  std::vector<Event> pending;
  for (size_t i = 0; i < events.size(); ++i) {
    if (!results[i].status.ok()) pending.push_back(events[i]);
  }
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        std::vector<SendResult> r(pending.size(), SendResult::NotSent());
        sender->Send(pending, r, steady_clock::now() + std::chrono::seconds(5));
        std::vector<Event> left;
        for (size_t i = 0; i < r.size(); ++i) {
          if (!r[i].status.ok()) left.push_back(pending[i]);
        }
        pending = left;
        return pending.empty();
      },
      std::chrono::seconds(30)));
  testing::JetStreamAdmin after(server.url());
  auto got = after.ReadAll("mid");
  ASSERT_EQ(got.size(), events.size());
  std::map<std::string, int64_t> position, last;
  for (const auto& e : events) position[e.id] = e.position;
  std::set<std::string> seen;
  for (const auto& m : got) {
    EXPECT_TRUE(seen.insert(m.id).second) << "stored twice: " << m.id;
    EXPECT_LT(last[m.subject], position[m.id]) << m.subject << " out of order";
    last[m.subject] = position[m.id];
  }
}

// user:password in the URL: accepted with the right ones; with wrong ones
// the sender keeps trying and each attempt says why (retryable: the
// server's users may be fixed without restarting herald).
TEST(NatsSenderAuth, UserAndPasswordInTheUrl) {
  testing::NatsServer server({"--user", "herald", "--pass", "s3cret"});
  ASSERT_TRUE(server.ready()) << server.log();
  std::string good =
      "nats://herald:s3cret@127.0.0.1:" + std::to_string(server.port());
  {
    testing::JetStreamAdmin admin(good);
    ASSERT_TRUE(admin.ok()) << admin.error();
    ASSERT_EQ(admin.AddStream("auth", {"auth.>"}), "");
  }
  auto make = [&](const std::string& url) {
    RouteConfig route;
    route.name = "auth";
    route.sender = url;
    route.options.route = "auth";
    route.options.fields.push_back(
        {"subject", OptionValue::String("auth.{stream}")});
    route.options.fields.push_back(
        {"connect_timeout", OptionValue::String("300ms")});
    return MakeSender(route);
  };
  std::vector<Event> events = {testing::MakeEvent("a-1", "t.x")};
  events[0].id = NewUuidV7();
  events[0].position = 1;

  auto ok = make(good);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  std::vector<SendResult> r(1, SendResult::NotSent());
  (*ok)->Send(events, r, steady_clock::now() + std::chrono::seconds(10));
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.ToString();

  auto bad =
      make("nats://herald:wrong@127.0.0.1:" + std::to_string(server.port()));
  ASSERT_TRUE(bad.ok()) << bad.status().ToString();
  r.assign(1, SendResult::NotSent());
  (*bad)->Send(events, r, steady_clock::now() + std::chrono::seconds(10));
  EXPECT_FALSE(r[0].status.ok());
  EXPECT_TRUE(r[0].status.retryable());
  EXPECT_NE(r[0].status.message().find("not connected"), std::string::npos)
      << r[0].status.ToString();
  EXPECT_EQ(r[0].status.message().find("wrong"), std::string::npos)
      << "the password is shown: " << r[0].status.ToString();

  testing::JetStreamAdmin admin(good);
  EXPECT_EQ(admin.Count("auth"), 1);
}

TEST(NatsSenderAuth, AMissingCredentialsFileIsToldWhenTheSenderIsMade) {
  RouteConfig route;
  route.name = "creds";
  route.sender = "nats://127.0.0.1:1";
  route.options.route = "creds";
  route.options.fields.push_back({"subject", OptionValue::String("x")});
  route.options.fields.push_back(
      {"credentials", OptionValue::String("/nonexistent/herald.creds")});
  auto s = MakeSender(route);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.status().message().find("/nonexistent/herald.creds"),
            std::string::npos)
      << s.status().ToString();
}

// ---- options, checked at config load -------------------------------------

std::string LoadError(const std::string& route_keys) {
  std::string text =
      "[[route]]\nname = \"n\"\nsender = \"nats://127.0.0.1:4222\"\n" +
      route_keys;
  auto c = ParseConfig(text, "h.toml");
  return c.ok() ? "" : c.status().message();
}

TEST(NatsOptions, AreCheckedAtConfigLoad) {
  EXPECT_EQ(LoadError("subject = \"events.{category}.{type}\"\n"), "");
  EXPECT_EQ(LoadError("subject = \"e.{stream}\"\nmode = \"structured\"\n"
                      "timeout = \"2s\"\ncredentials = \"/x.creds\"\n"),
            "");
  std::string e = LoadError("subject = \"events.{typ}\"\n");
  EXPECT_NE(e.find("h.toml:4"), std::string::npos) << e;
  EXPECT_NE(e.find("subject"), std::string::npos) << e;
  EXPECT_NE(e.find("{typ}"), std::string::npos) << e;
  e = LoadError("");
  EXPECT_NE(e.find("subject"), std::string::npos) << e;
  EXPECT_NE(e.find("required"), std::string::npos) << e;
  e = LoadError("subject = \"x\"\nmode = \"raw\"\n");
  EXPECT_NE(e.find("h.toml:5"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown mode"), std::string::npos) << e;
  e = LoadError("subject = \"x\"\nexchange = \"y\"\n");
  EXPECT_NE(e.find("unknown key"), std::string::npos) << e;
  EXPECT_NE(e.find("credentials"), std::string::npos) << e;
  e = LoadError("subject = \"a b\"\n");
  EXPECT_NE(e.find("whitespace"), std::string::npos) << e;
}

TEST(NatsOptions, UrlsAreChecked) {
  EXPECT_TRUE(ValidateSenderUrl("nats://127.0.0.1:4222").ok());
  EXPECT_TRUE(ValidateSenderUrl("nats://user:pw@h:4222").ok());
  EXPECT_TRUE(ValidateSenderUrl("nats://token@h").ok());
  EXPECT_TRUE(ValidateSenderUrl("nats://a:1,nats://b:2").ok());
  EXPECT_FALSE(ValidateSenderUrl("nats://").ok());
  EXPECT_FALSE(ValidateSenderUrl("nats://h:0").ok());
  EXPECT_FALSE(ValidateSenderUrl("nats://h:x").ok());
  Status s = ValidateSenderUrl("nats://u:secret@h:99999");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.message().find("secret"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace herald
