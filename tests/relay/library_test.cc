// The relay as a library, with in-process handlers: order, wake-up,
// parking and holding, retry and drop of parked events, block, restart,
// leases between two relays.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "herald/relay.h"
#include "herald/store.h"
#include "support/test_util.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using testing::WaitFor;

// Records what a handler was given; thread-safe.
class Inbox {
 public:
  Status Take(const Event& e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (fail_ids_.count(e.id)) {
      ++failures_[e.id];
      return fail_permanent_ ? Status::Permanent("rejected " + e.id)
                             : Status::Unavailable("busy " + e.id);
    }
    got_.push_back(e);
    return Status::OK();
  }
  EventHandler Handler() {
    return [this](const Event& e) { return Take(e); };
  }
  void Fail(const std::string& id, bool permanent) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_ids_.insert(id);
    fail_permanent_ = permanent;
  }
  void Heal() {
    std::lock_guard<std::mutex> lock(mu_);
    fail_ids_.clear();
  }
  std::vector<Event> got() {
    std::lock_guard<std::mutex> lock(mu_);
    return got_;
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return got_.size();
  }
  int failures(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return failures_[id];
  }
  std::vector<int64_t> Positions(const std::string& stream) {
    std::vector<int64_t> out;
    for (const auto& e : got()) {
      if (e.stream == stream) out.push_back(e.position);
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<Event> got_;
  std::set<std::string> fail_ids_;
  bool fail_permanent_ = true;
  std::map<std::string, int> failures_;
};

class RelayLibrary : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = OpenStore("sqlite:" + dir_.file("h.db"));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  Event Append(const std::string& stream, const std::string& type = "t.x") {
    Event e;
    e.stream = stream;
    e.type = type;
    e.payload = "{}";
    auto r = store_->Append(std::span<Event>(&e, 1));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return e;
  }

  RouteConfig Route(FailurePolicy policy = FailurePolicy::kBlock) {
    RouteConfig r;
    r.name = "r";
    r.batch = 10;
    r.on_failure = policy;
    r.retry.max_attempts = 3;
    r.retry.backoff_initial = milliseconds(1);
    r.retry.backoff_max = milliseconds(20);
    return r;
  }

  RelayOptions Options() {
    RelayOptions o;
    o.idle_poll = milliseconds(50);
    o.lease_ttl = milliseconds(3000);
    return o;
  }

  testing::TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(RelayLibrary, DeliversEveryEventInStreamOrder) {
  Inbox inbox;
  Relay relay(store_.get(), Options());
  RouteConfig route = Route();
  route.batch = 64;
  ASSERT_TRUE(relay.AddRoute(route, MakeCallbackSender(inbox.Handler())).ok());
  ASSERT_TRUE(relay.Start().ok());
  // Two writers append to 20 streams while the relay runs.
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 500; ++i) Append("s-" + std::to_string((i + w) % 20));
    });
  }
  for (auto& t : writers) t.join();
  ASSERT_TRUE(
      WaitFor([&] { return inbox.size() >= 1000; }, std::chrono::seconds(30)));
  std::set<std::string> ids;
  for (const auto& e : inbox.got()) ids.insert(e.id);
  EXPECT_EQ(ids.size(), 1000u);  // no failures: no duplicates either
  for (int s = 0; s < 20; ++s) {
    auto p = inbox.Positions("s-" + std::to_string(s));
    EXPECT_TRUE(std::is_sorted(p.begin(), p.end()));
  }
  relay.Stop();
  auto m = relay.GetMetrics();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].delivered, 1000u);
  EXPECT_EQ(m[0].failed, 0u);
  EXPECT_GT(m[0].send_latency.count, 0u);
  EXPECT_EQ(*store_->GetCheckpoint(Relay::CheckpointName("r")), 1001);
  auto st = relay.GetStatus("r");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->checkpoint, 1001);
  EXPECT_EQ(st->head, 1000);
  EXPECT_EQ(st->lag_events, 0);
  EXPECT_EQ(st->state, "stopped");
}

TEST_F(RelayLibrary, FiltersByTypeAndStream) {
  Inbox inbox;
  Relay relay(store_.get(), Options());
  RouteConfig route = Route();
  route.types = {"order.*"};
  route.streams = {"eu-*"};
  ASSERT_TRUE(relay.AddRoute(route, MakeCallbackSender(inbox.Handler())).ok());
  ASSERT_TRUE(relay.Start().ok());
  Append("eu-1", "order.placed");
  Append("us-1", "order.placed");
  Append("eu-2", "refund.made");
  Event last = Append("eu-3", "order.shipped");
  ASSERT_TRUE(WaitFor([&] {
    auto c = store_->GetCheckpoint(Relay::CheckpointName("r"));
    return c.ok() && *c == last.position + 1;
  }));
  auto got = inbox.got();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].stream, "eu-1");
  EXPECT_EQ(got[1].stream, "eu-3");
}

TEST_F(RelayLibrary, SameProcessAppendWakesTheRelayAtOnce) {
  Inbox inbox;
  RelayOptions o = Options();
  o.idle_poll = milliseconds(1000);  // only the append signal can be fast
  Relay relay(store_.get(), o);
  ASSERT_TRUE(
      relay.AddRoute(Route(), MakeCallbackSender(inbox.Handler())).ok());
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    auto s = relay.GetStatus("r");
    return s.ok() && s->state == "idle";
  }));
  std::vector<double> waits;
  for (int i = 0; i < 20; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    Append("s");
    ASSERT_TRUE(WaitFor([&] { return inbox.size() == size_t(i + 1); }));
    waits.push_back(std::chrono::duration<double, std::milli>(
                        std::chrono::steady_clock::now() - t0)
                        .count());
  }
  std::sort(waits.begin(), waits.end());
  // The median is far below the 1 s idle poll (the commit itself is in it).
  EXPECT_LT(waits[waits.size() / 2], 50.0);
}

TEST_F(RelayLibrary, ParkHoldsItsStreamAndRetryDeliversItThenTheHeld) {
  Inbox inbox;
  Relay relay(store_.get(), Options());
  ASSERT_TRUE(relay
                  .AddRoute(Route(FailurePolicy::kPark),
                            MakeCallbackSender(inbox.Handler()))
                  .ok());
  Event a1 = Append("a");
  Event a2;  // the poison event
  a2.id = NewUuidV7();
  inbox.Fail(a2.id, /*permanent=*/true);
  a2.stream = "a";
  a2.type = "t.x";
  a2.payload = "{}";
  ASSERT_TRUE(store_->Append(std::span<Event>(&a2, 1)).ok());
  Event a3 = Append("a");
  Event b1 = Append("b");
  Event a4 = Append("a");
  Event b2 = Append("b");
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    auto c = store_->GetCheckpoint(Relay::CheckpointName("r"));
    return c.ok() && *c == b2.position + 1;
  }));
  EXPECT_EQ(inbox.failures(a2.id), 3);  // max_attempts
  EXPECT_EQ(inbox.Positions("a"), std::vector<int64_t>{a1.position});
  EXPECT_EQ(inbox.Positions("b"),
            (std::vector<int64_t>{b1.position, b2.position}));
  auto parked = relay.ListParked("r");
  ASSERT_TRUE(parked.ok());
  ASSERT_EQ(parked->size(), 3u);
  EXPECT_EQ((*parked)[0].event.id, a2.id);
  EXPECT_EQ((*parked)[0].state, "parked");
  EXPECT_EQ((*parked)[0].attempts, 3);
  EXPECT_NE((*parked)[0].error.find("rejected"), std::string::npos);
  EXPECT_EQ((*parked)[1].state, "held");
  EXPECT_EQ((*parked)[2].state, "held");
  // Later events of the held stream are held too; others flow.
  Event a5 = Append("a");
  Event b3 = Append("b");
  ASSERT_TRUE(WaitFor([&] { return inbox.Positions("b").size() == 3; }));
  // Its held row is saved with the batch's checkpoint.
  ASSERT_TRUE(WaitFor([&] { return relay.ListParked("r")->size() == 4; }));
  auto status = relay.GetStatus("r");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->parked_only, 1);
  EXPECT_EQ(status->parked, 4);
  EXPECT_NE(status->last_error.find(a2.id), std::string::npos);
  auto m = relay.GetMetrics()[0];
  EXPECT_EQ(m.parked, 1u);
  EXPECT_EQ(m.held, 3u);

  inbox.Heal();
  ASSERT_TRUE(relay.RetryParked("r", a2.id).ok());
  ASSERT_TRUE(WaitFor([&] { return inbox.Positions("a").size() == 5; }));
  EXPECT_EQ(inbox.Positions("a"),
            (std::vector<int64_t>{a1.position, a2.position, a3.position,
                                  a4.position, a5.position}));
  ASSERT_TRUE(WaitFor([&] { return relay.ListParked("r")->empty(); }));
  Event a6 = Append("a");
  ASSERT_TRUE(WaitFor([&] { return inbox.Positions("a").size() == 6; }));
  EXPECT_EQ(inbox.Positions("a").back(), a6.position);
  (void)b3;
  EXPECT_TRUE(relay.RetryParked("r", a2.id).IsNotFound());
  EXPECT_TRUE(relay.RetryParked("nope", "").IsNotFound());
}

TEST_F(RelayLibrary, DroppingAParkedEventReleasesTheHeldOnes) {
  Inbox inbox;
  Relay relay(store_.get(), Options());
  ASSERT_TRUE(relay
                  .AddRoute(Route(FailurePolicy::kPark),
                            MakeCallbackSender(inbox.Handler()))
                  .ok());
  Event a1;
  a1.id = NewUuidV7();
  a1.stream = "a";
  a1.type = "t.x";
  a1.payload = "{}";
  inbox.Fail(a1.id, true);
  ASSERT_TRUE(store_->Append(std::span<Event>(&a1, 1)).ok());
  Event a2 = Append("a");
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    auto p = relay.ListParked("r");
    return p.ok() && p->size() == 2;
  }));
  ASSERT_TRUE(relay.DropParked("r", a1.id).ok());
  ASSERT_TRUE(WaitFor([&] { return inbox.size() == 1; }));
  EXPECT_EQ(inbox.got()[0].id, a2.id);
  ASSERT_TRUE(WaitFor([&] { return relay.ListParked("r")->empty(); }));
}

TEST_F(RelayLibrary, BlockWaitsRetryingAndSaysWhy) {
  Inbox inbox;
  Relay relay(store_.get(), Options());
  RouteConfig route = Route(FailurePolicy::kBlock);
  route.batch = 1;
  ASSERT_TRUE(relay.AddRoute(route, MakeCallbackSender(inbox.Handler())).ok());
  Event e1 = Append("a");
  Event e2;
  e2.id = NewUuidV7();
  e2.stream = "b";
  e2.type = "t.x";
  e2.payload = "{}";
  inbox.Fail(e2.id, /*permanent=*/true);
  ASSERT_TRUE(store_->Append(std::span<Event>(&e2, 1)).ok());
  Event e3 = Append("c");
  ASSERT_TRUE(relay.Start().ok());
  // Block retries forever, well past max_attempts.
  ASSERT_TRUE(WaitFor([&] { return inbox.failures(e2.id) >= 6; }));
  auto s = relay.GetStatus("r");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->checkpoint, e2.position);
  EXPECT_EQ(s->lag_events, 2);
  EXPECT_NE(s->last_error.find(e2.id), std::string::npos) << s->last_error;
  EXPECT_NE(s->last_error.find("rejected"), std::string::npos);
  EXPECT_GT(s->last_error_at_us, 0);
  EXPECT_TRUE(s->holding_lease);
  EXPECT_EQ(inbox.size(), 1u);  // e3 waits behind e2
  EXPECT_TRUE(relay.ListParked("r")->empty());
  inbox.Heal();
  ASSERT_TRUE(WaitFor([&] { return inbox.size() == 3; }));
  EXPECT_EQ(inbox.got()[2].id, e3.id);
  (void)e1;
}

TEST_F(RelayLibrary, HandlerExceptionsAreRetried) {
  std::atomic<int> calls{0};
  Relay relay(store_.get(), Options());
  ASSERT_TRUE(relay
                  .AddRoute(Route(), MakeCallbackSender([&](const Event&) {
                              if (calls++ < 2) throw std::runtime_error("boom");
                              return Status::OK();
                            }))
                  .ok());
  Append("a");
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return relay.GetMetrics()[0].delivered == 1; }));
  EXPECT_EQ(calls.load(), 3);
  EXPECT_EQ(relay.GetMetrics()[0].failed, 2u);
}

TEST_F(RelayLibrary, StopSavesTheCheckpointAndARestartResumesThere) {
  Inbox first, second;
  for (int i = 0; i < 25; ++i) Append("s");
  {
    Relay relay(store_.get(), Options());
    ASSERT_TRUE(
        relay.AddRoute(Route(), MakeCallbackSender(first.Handler())).ok());
    ASSERT_TRUE(relay.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return first.size() == 25; }));
    relay.Stop();
    relay.Stop();  // idempotent
  }
  for (int i = 0; i < 5; ++i) Append("s");
  Relay relay(store_.get(), Options());
  ASSERT_TRUE(
      relay.AddRoute(Route(), MakeCallbackSender(second.Handler())).ok());
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return second.size() == 5; }));
  EXPECT_EQ(second.got()[0].position, 26);
  EXPECT_EQ(relay.Start().code(), Status::Code::kFailedPrecondition);
}

TEST_F(RelayLibrary, OneRelayPerRouteAndHandOverOnStop) {
  // Two relays (two Store objects, as two processes would have) on one route.
  auto other = OpenStore("sqlite:" + dir_.file("h.db"));
  ASSERT_TRUE(other.ok());
  Inbox in_a, in_b;
  RelayOptions oa = Options(), ob = Options();
  oa.owner = "a";
  ob.owner = "b";
  Relay a(store_.get(), oa);
  ASSERT_TRUE(a.AddRoute(Route(), MakeCallbackSender(in_a.Handler())).ok());
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return a.GetStatus("r")->holding_lease; }));
  Relay b(other->get(), ob);
  ASSERT_TRUE(b.AddRoute(Route(), MakeCallbackSender(in_b.Handler())).ok());
  ASSERT_TRUE(b.Start().ok());
  for (int i = 0; i < 50; ++i) Append("s");
  ASSERT_TRUE(WaitFor([&] { return in_a.size() == 50; }));
  EXPECT_EQ(in_b.size(), 0u);
  auto sb = b.GetStatus("r");
  EXPECT_FALSE(sb->holding_lease);
  EXPECT_EQ(sb->state, "waiting_for_lease");
  EXPECT_EQ(sb->lease_owner, "a");
  a.Stop();  // releases the lease: b takes over at once
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) Append("s");
  ASSERT_TRUE(WaitFor([&] { return in_b.size() == 10; }));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(1000));
  EXPECT_EQ(in_b.got()[0].position, 51);
}

TEST_F(RelayLibrary, BadRoutesAreRefused) {
  Relay relay(store_.get());
  RouteConfig r = Route();
  r.name = "";
  EXPECT_TRUE(
      relay.AddRoute(r, MakeCallbackSender(nullptr)).IsInvalidArgument());
  r = Route();
  r.batch = 0;
  EXPECT_TRUE(
      relay.AddRoute(r, MakeCallbackSender(nullptr)).IsInvalidArgument());
  r = Route();
  r.sender = "ftp://x";
  EXPECT_TRUE(relay.AddRoute(r).IsInvalidArgument());
  r = Route();
  ASSERT_TRUE(relay.AddRoute(r, MakeCallbackSender(nullptr)).ok());
  EXPECT_TRUE(
      relay.AddRoute(r, MakeCallbackSender(nullptr)).IsInvalidArgument());
  EXPECT_TRUE(relay.GetStatus("zzz").status().IsNotFound());
}

}  // namespace
}  // namespace herald
