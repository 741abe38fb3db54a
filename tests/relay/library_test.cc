// The relay as a library, with in-process handlers: order, wake-up,
// parking and holding, retry and drop of parked events, block, restart,
// leases between two relays.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "herald/json.h"
#include "herald/relay.h"
#include "herald/store.h"
#include "herald/store_wrapper.h"
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

// Runs on every backend the test script provides (SQLite always).
class RelayLibrary : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    HERALD_SKIP_UNLESS_BACKEND(GetParam());
    url_ = testing::FreshStoreUrl(GetParam(), dir_);
    auto s = OpenStore(url_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  Event Append(const std::string& stream, const std::string& type = "t.x") {
    Event e;
    e.stream = stream;
    e.type = type;
    e.payload = "{}";
    AppendEvent(&e);
    return e;
  }

  // Appends and waits for the event's position (PostgreSQL's sequencer
  // gives it shortly after commit).
  void AppendEvent(Event* e) {
    auto r = store_->Append(std::span<Event>(e, 1));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    if (e->position == 0) {
      ASSERT_TRUE(WaitFor([&] {
        auto got = store_->Get(e->id);
        if (got.ok()) e->position = got->position;
        return e->position > 0;
      }));
    }
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
  std::string url_;
  std::unique_ptr<Store> store_;
};

TEST_P(RelayLibrary, DeliversEveryEventInStreamOrder) {
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

TEST_P(RelayLibrary, FiltersByTypeAndStream) {
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

TEST_P(RelayLibrary, SameProcessAppendWakesTheRelayAtOnce) {
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

TEST_P(RelayLibrary, ParkHoldsItsStreamAndRetryDeliversItThenTheHeld) {
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
  AppendEvent(&a2);
  Event a3 = Append("a");
  Event b1 = Append("b");
  Event a4 = Append("a");
  Event b2 = Append("b");
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    auto c = store_->GetCheckpoint(Relay::CheckpointName("r"));
    return c.ok() && *c == b2.position + 1;
  }));
  // A permanent rejection parks at once: tried once, not max_attempts.
  EXPECT_EQ(inbox.failures(a2.id), 1);
  EXPECT_EQ(inbox.Positions("a"), std::vector<int64_t>{a1.position});
  EXPECT_EQ(inbox.Positions("b"),
            (std::vector<int64_t>{b1.position, b2.position}));
  auto parked = relay.ListParked("r");
  ASSERT_TRUE(parked.ok());
  ASSERT_EQ(parked->size(), 3u);
  EXPECT_EQ((*parked)[0].event.id, a2.id);
  EXPECT_EQ((*parked)[0].state, "parked");
  EXPECT_EQ((*parked)[0].attempts, 1);
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
  // One number per state, the same on every page (#12.5).
  EXPECT_EQ(status->parked, 1);
  EXPECT_EQ(status->held, 3);
  EXPECT_EQ(status->retry, 0);
  EXPECT_EQ(status->parked_only, 1);
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

TEST_P(RelayLibrary, DroppingAParkedEventReleasesTheHeldOnes) {
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
  AppendEvent(&a1);
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

TEST_P(RelayLibrary, BlockWaitsRetryingAndSaysWhy) {
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
  AppendEvent(&e2);
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

TEST_P(RelayLibrary, HandlerExceptionsAreRetried) {
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

TEST_P(RelayLibrary, StopSavesTheCheckpointAndARestartResumesThere) {
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

TEST_P(RelayLibrary, OneRelayPerRouteAndHandOverOnStop) {
  // Two relays (two Store objects, as two processes would have) on one route.
  auto other = OpenStore(url_);
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

// Counts the store calls a status read makes, and the parked rows it lists.
class CountingStore : public StoreWrapper {
 public:
  using StoreWrapper::Append;
  using StoreWrapper::SaveCheckpoint;
  using StoreWrapper::StoreWrapper;

  Result<int64_t> GetCheckpoint(const std::string& name) override {
    ++calls;
    return StoreWrapper::GetCheckpoint(name);
  }
  Result<int64_t> Head() override {
    ++calls;
    return StoreWrapper::Head();
  }
  Result<Page> Read(const ReadRequest& request) override {
    ++calls;
    return StoreWrapper::Read(request);
  }
  Result<int64_t> CountParked(const std::string& route) override {
    ++calls;
    return StoreWrapper::CountParked(route);
  }
  Result<ParkedCounts> CountParkedByState(const std::string& route) override {
    ++calls;
    return StoreWrapper::CountParkedByState(route);
  }
  Result<std::vector<ParkedEvent>> ListParked(const std::string& route,
                                              const std::string& state,
                                              int limit) override {
    ++calls;
    auto r = StoreWrapper::ListParked(route, state, limit);
    if (r.ok()) parked_rows_read += static_cast<int64_t>(r->size());
    return r;
  }
  Result<std::optional<LeaseInfo>> GetLease(const std::string& name) override {
    ++calls;
    return StoreWrapper::GetLease(name);
  }
  Result<std::optional<RouteStatusRow>> GetRouteStatus(
      const std::string& route) override {
    ++calls;
    return StoreWrapper::GetRouteStatus(route);
  }

  std::atomic<int> calls{0};
  std::atomic<int64_t> parked_rows_read{0};
};

TEST_P(RelayLibrary, StatusMakesAConstantNumberOfStoreCalls) {
  constexpr int kParked = 1500;
  std::vector<Event> batch;
  for (int i = 0; i < kParked + 1; ++i) {
    Event e;
    e.stream = "s" + std::to_string(i % 7);
    e.type = "t.x";
    e.payload = "{}";
    batch.push_back(e);
  }
  ASSERT_TRUE(store_->Append(batch).ok());
  ReadRequest all;
  all.limit = kMaxReadLimit;
  std::vector<Event> stored;
  ASSERT_TRUE(WaitFor([&] {
    auto page = store_->Read(all);
    if (page.ok()) stored = page->events;
    return stored.size() == batch.size();
  }));
  {
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    for (int i = 0; i < kParked; ++i) {
      ParkedEvent p;
      p.route = "r";
      p.event = stored[static_cast<size_t>(i)];
      p.state = i % 3 == 0 ? "parked" : "held";
      ASSERT_TRUE(store_->Park(**tx, p).ok());
    }
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  ASSERT_TRUE(store_->SetRouteError("r", "HTTP 400", NowMicros()).ok());
  CountingStore counting(store_.get());
  Relay relay(&counting, Options());
  RouteConfig r1 = Route(FailurePolicy::kPark);
  RouteConfig r2 = Route(FailurePolicy::kPark);
  r2.name = "r2";
  ASSERT_TRUE(relay
                  .AddRoute(r1, MakeCallbackSender(
                                    [](const Event&) { return Status::OK(); }))
                  .ok());
  ASSERT_TRUE(relay
                  .AddRoute(r2, MakeCallbackSender(
                                    [](const Event&) { return Status::OK(); }))
                  .ok());
  auto statuses = relay.GetStatuses();
  ASSERT_TRUE(statuses.ok()) << statuses.status().ToString();
  ASSERT_EQ(statuses->size(), 2u);
  const RouteStatus& s = (*statuses)[0];
  EXPECT_EQ(s.parked, kParked / 3);
  EXPECT_EQ(s.held, kParked - kParked / 3);
  EXPECT_EQ(s.parked_only, kParked / 3);
  EXPECT_EQ(s.last_error, "HTTP 400");
  EXPECT_TRUE(s.lease_owner.empty());
  EXPECT_EQ((*statuses)[1].parked, 0);
  EXPECT_TRUE((*statuses)[1].last_error.empty());
  // Per route: checkpoint, blocked marker, head, one page for lag_seconds,
  // parked counts (with the oldest parked event's time), status row, lease.
  // Listing the parked rows to count them is what this catches.
  EXPECT_EQ(counting.parked_rows_read.load(), 0);
  EXPECT_LE(counting.calls.load(), 2 * 7);
}

// The relay reads one store's log and keeps its state in another: the
// source need not be herald's own store.
TEST_P(RelayLibrary, SourceAndStateAreSeparateInterfaces) {
  testing::TempDir state_dir;
  auto state = OpenStore("sqlite:" + state_dir.file("state.db"));
  ASSERT_TRUE(state.ok());
  for (int i = 0; i < 5; ++i) Append("s");
  Inbox inbox;
  EventSource* source = store_.get();
  RelayState* relay_state = state->get();
  {
    Relay relay(source, relay_state, Options());
    ASSERT_TRUE(
        relay.AddRoute(Route(), MakeCallbackSender(inbox.Handler())).ok());
    ASSERT_TRUE(relay.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return inbox.size() == 5; }));
    ASSERT_TRUE(WaitFor([&] {
      auto c = (*state)->GetCheckpoint(Relay::CheckpointName("r"));
      return c.ok() && *c == 6;
    }));
    auto status = relay.GetStatus("r");
    ASSERT_TRUE(status.ok());
    EXPECT_EQ(status->checkpoint, 6);
    EXPECT_EQ(status->head, 5);
  }
  EXPECT_EQ(*store_->GetCheckpoint(Relay::CheckpointName("r")), 0)
      << "nothing kept in the source's database";
  EXPECT_EQ(*(*state)->Head(), 0);
}

TEST_P(RelayLibrary, BadRoutesAreRefused) {
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

// A receiver process for the HTTP sender tests.
class BodyReceiver {
 public:
  explicit BodyReceiver(const testing::TempDir& dir,
                        std::vector<std::string> extra = {})
      : port_(testing::FreePort()),
        log_(dir.file("rx.log")),
        bodies_(dir.file("rx.bodies")) {
    std::string ready = dir.file("rx.ready");
    std::vector<std::string> argv{HERALD_TEST_RECEIVER,
                                  "--port",
                                  std::to_string(port_),
                                  "--log",
                                  log_,
                                  "--body-log",
                                  bodies_,
                                  "--ready",
                                  ready};
    argv.insert(argv.end(), extra.begin(), extra.end());
    child_ = std::make_unique<testing::Child>(argv);
    EXPECT_TRUE(WaitFor([&] { return std::ifstream(ready).good(); }));
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/hook";
  }
  static std::vector<std::string> Lines(const std::string& path) {
    std::vector<std::string> out;
    std::ifstream f(path);
    std::string line;
    while (std::getline(f, line)) out.push_back(line);
    return out;
  }
  std::vector<std::string> Bodies() const { return Lines(bodies_); }
  std::vector<std::string> Log() const { return Lines(log_); }

 private:
  int port_;
  std::string log_, bodies_;
  std::unique_ptr<testing::Child> child_;
};

TEST_P(RelayLibrary, HttpBinaryModeSendsCeHeadersAndThePayload) {
  BodyReceiver rx(dir_);
  Relay relay(store_.get(), Options());
  RouteConfig route = Route();
  route.sender = rx.url();
  route.sender_options.headers = {{"X-Test", "hello"}};
  ASSERT_TRUE(relay.AddRoute(route).ok());
  ASSERT_TRUE(relay.Start().ok());
  Event e = Append("order-7", "order.placed");
  // The receiver writes the body and the log line one after the other.
  ASSERT_TRUE(
      WaitFor([&] { return rx.Bodies().size() == 1 && rx.Log().size() == 1; }));
  EXPECT_EQ(rx.Bodies()[0], "application/json\thello\t{}");
  // The receiver's log line: position, subject, id from ce-* headers.
  std::string line = rx.Log()[0];
  EXPECT_EQ(line.rfind(std::to_string(e.position) + " order-7 " + e.id, 0), 0u)
      << line;
  EXPECT_NE(line.find(" 200 herald"), std::string::npos) << line;
}

TEST_P(RelayLibrary, HttpStructuredModeSendsACloudEventsJsonBody) {
  BodyReceiver rx(dir_);
  Relay relay(store_.get(), Options());
  RouteConfig route = Route();
  route.sender = rx.url();
  route.sender_options.mode = CloudEventsMode::kStructured;
  route.sender_options.source = "shop";
  ASSERT_TRUE(relay.AddRoute(route).ok());
  ASSERT_TRUE(relay.Start().ok());
  Event e;
  e.stream = "order-8";
  e.type = "order.paid";
  e.payload = R"({"amount":42})";
  AppendEvent(&e);
  ASSERT_TRUE(WaitFor([&] { return rx.Bodies().size() == 1; }));
  std::string body = rx.Bodies()[0];
  std::string prefix = "application/cloudevents+json; charset=utf-8\t-\t";
  ASSERT_EQ(body.rfind(prefix, 0), 0u) << body;
  std::string text = body.substr(prefix.size());
  auto j = Json::Parse(text);
  ASSERT_TRUE(j.ok()) << text;
  EXPECT_EQ(j->Find("specversion")->as_string(), "1.0");
  EXPECT_EQ(j->Find("id")->as_string(), e.id);
  EXPECT_EQ(j->Find("source")->as_string(), "shop");
  EXPECT_EQ(j->Find("type")->as_string(), "order.paid");
  EXPECT_EQ(j->Find("subject")->as_string(), "order-8");
  int64_t pos = 0;
  EXPECT_TRUE(j->Find("position")->TryInt64(&pos));
  EXPECT_EQ(pos, e.position);
  EXPECT_EQ(j->Find("data")->raw(), R"({"amount":42})");
}

TEST_P(RelayLibrary, HttpRetryAfterIsHonoured) {
  Event e;
  e.id = NewUuidV7();
  e.stream = "s";
  e.type = "t.x";
  e.payload = "{}";
  AppendEvent(&e);
  // 503 with Retry-After: 1 for this event, every time.
  BodyReceiver rx(dir_, {"--unavailable-id", e.id});
  Relay relay(store_.get(), Options());
  RouteConfig route = Route();
  route.sender = rx.url();
  ASSERT_TRUE(relay.AddRoute(route).ok());
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(
      WaitFor([&] { return rx.Log().size() >= 2; }, std::chrono::seconds(5)));
  relay.Stop();
  auto log = rx.Log();
  auto time_of = [](const std::string& l) {
    std::istringstream ss(l);
    std::string a, b, c;
    int64_t us = 0;
    ss >> a >> b >> c >> us;
    return us;
  };
  // backoff_initial is 1 ms; the receiver asked for a second.
  EXPECT_GE(time_of(log[1]) - time_of(log[0]), 900000) << log[0] << log[1];
  EXPECT_NE(log[0].find(" 503 "), std::string::npos);
  auto s = relay.GetStatus("r");
  EXPECT_NE(s->last_error.find("HTTP 503"), std::string::npos) << s->last_error;
}

TEST_P(RelayLibrary, HttpConnectionErrorsAreRetried) {
  RouteConfig route = Route();
  int port = testing::FreePort();  // nobody listens yet
  route.sender = "http://127.0.0.1:" + std::to_string(port) + "/x";
  route.sender_options.connect_timeout = milliseconds(200);
  Relay relay(store_.get(), Options());
  ASSERT_TRUE(relay.AddRoute(route).ok());
  Append("s");
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return relay.GetMetrics()[0].failed >= 2; }));
  EXPECT_NE(relay.GetStatus("r")->last_error.find("POST"), std::string::npos);
  EXPECT_EQ(relay.GetMetrics()[0].parked, 0u);
}

TEST_P(RelayLibrary, FileSinkAppendsOneCloudEventPerLine) {
  Relay relay(store_.get(), Options());
  RouteConfig route = Route();
  std::string path = dir_.file("out.jsonl");
  route.sender = "file:" + path;
  ASSERT_TRUE(relay.AddRoute(route).ok());
  for (int i = 0; i < 30; ++i) Append("s-" + std::to_string(i % 3));
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return BodyReceiver::Lines(path).size() == 30; }));
  int64_t last = 0;
  for (const auto& line : BodyReceiver::Lines(path)) {
    auto j = Json::Parse(line);
    ASSERT_TRUE(j.ok()) << line;
    int64_t pos = 0;
    ASSERT_TRUE(j->Find("position")->TryInt64(&pos));
    EXPECT_GT(pos, last);
    last = pos;
  }
}

TEST_P(RelayLibrary, UnopenableFileFailsStart) {
  Relay relay(store_.get(), Options());
  RouteConfig route = Route();
  route.sender = "file:" + dir_.file("no/such/dir/out.jsonl");
  ASSERT_TRUE(relay.AddRoute(route).ok());
  Status s = relay.Start();
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find("route 'r'"), std::string::npos);
}

// A permanent rejection under "block" stops the route on that event: it is
// tried again only every backoff_max, status says which event and why, and
// an operator's retry sends it at once (#12.1).
TEST_P(RelayLibrary, BlockOnAPermanentRejectionRetriesOnlyAtBackoffMax) {
  Inbox inbox;
  Relay relay(store_.get(), Options());
  RouteConfig route = Route(FailurePolicy::kBlock);
  route.batch = 1;
  route.retry.backoff_max = milliseconds(60000);  // never within the test
  ASSERT_TRUE(relay.AddRoute(route, MakeCallbackSender(inbox.Handler())).ok());
  Event e1 = Append("a");
  Event e2;
  e2.id = NewUuidV7();
  e2.stream = "b";
  e2.type = "t.x";
  e2.payload = "{}";
  inbox.Fail(e2.id, /*permanent=*/true);
  AppendEvent(&e2);
  Event e3 = Append("c");
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    auto s = relay.GetStatus("r");
    return s.ok() && s->blocked_id == e2.id;
  }));
  auto s = relay.GetStatus("r");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->blocked_position, e2.position);
  EXPECT_NE(s->blocked_error.find("rejected"), std::string::npos)
      << s->blocked_error;
  EXPECT_EQ(s->state, "blocked");
  EXPECT_EQ(s->parked, 0);
  EXPECT_EQ(s->checkpoint, e2.position);
  // Not tried again meanwhile: many idle polls pass with one attempt.
  EXPECT_FALSE(
      WaitFor([&] { return inbox.failures(e2.id) > 1; }, milliseconds(500)));
  EXPECT_EQ(inbox.failures(e2.id), 1);
  EXPECT_EQ(inbox.size(), 1u);  // e3 waits behind e2
  // Another process sees it too (it reads the store).
  Relay other(store_.get(), Options());
  ASSERT_TRUE(other.AddRoute(route, MakeCallbackSender(inbox.Handler())).ok());
  auto seen = other.GetStatus("r");
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->blocked_id, e2.id);
  // An operator's retry of an event that is neither parked nor blocked is
  // refused; of the blocked one, sent at once.
  EXPECT_TRUE(relay.RetryParked("r", e3.id).IsNotFound());
  EXPECT_TRUE(relay.RetryParked("r", e2.id).ok());
  ASSERT_TRUE(WaitFor([&] { return inbox.failures(e2.id) == 2; }));
  inbox.Heal();
  // From another Relay object (as `herald parked retry` in another process
  // would): through the store.
  ASSERT_TRUE(WaitFor([&] {
    return relay.GetStatus("r")->state == "blocked" &&
           inbox.failures(e2.id) == 2;
  }));
  EXPECT_TRUE(other.RetryParked("r", e2.id).ok());
  ASSERT_TRUE(WaitFor([&] { return inbox.size() == 3; }));
  EXPECT_EQ(inbox.got()[1].id, e2.id);
  EXPECT_EQ(inbox.got()[2].id, e3.id);
  ASSERT_TRUE(
      WaitFor([&] { return relay.GetStatus("r")->blocked_id.empty(); }));
  EXPECT_TRUE(relay.RetryParked("r", e2.id).IsNotFound());
  (void)e1;
}

// A parked event that fails permanently again is parked again at once.
TEST_P(RelayLibrary, RetriedParkedEventRejectedAgainIsParkedAfterOneAttempt) {
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
  AppendEvent(&a1);
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    auto p = relay.ListParked("r", "parked");
    return p.ok() && p->size() == 1;
  }));
  EXPECT_EQ(inbox.failures(a1.id), 1);
  auto first = relay.ListParked("r", "parked");
  ASSERT_TRUE(first.ok() && first->size() == 1);
  const int64_t first_failed = (*first)[0].first_failed_at_us;
  EXPECT_GT(first_failed, 0);
  EXPECT_LE(first_failed, (*first)[0].parked_at_us);
  ASSERT_TRUE(relay.RetryParked("r", a1.id).ok());
  ASSERT_TRUE(WaitFor([&] {
    auto p = relay.ListParked("r", "parked");
    return inbox.failures(a1.id) == 2 && p.ok() && p->size() == 1 &&
           (*p)[0].attempts == 2;
  }));
  EXPECT_EQ(inbox.failures(a1.id), 2);
  // Parked again: the first failure is still the first, the last is later.
  auto again = relay.ListParked("r", "parked");
  ASSERT_TRUE(again.ok() && again->size() == 1);
  EXPECT_EQ((*again)[0].first_failed_at_us, first_failed);
  EXPECT_GT((*again)[0].parked_at_us, first_failed);
}

// lag_seconds is the age of the oldest undelivered event, parked and held
// ones included (#13.6).
TEST_P(RelayLibrary, LagSecondsCountsParkedAndHeldEvents) {
  Inbox inbox;
  Relay relay(store_.get(), Options());
  ASSERT_TRUE(relay
                  .AddRoute(Route(FailurePolicy::kPark),
                            MakeCallbackSender(inbox.Handler()))
                  .ok());
  const int64_t hour_ago = NowMicros() - int64_t{3600} * 1000000;
  Event a1;
  a1.id = NewUuidV7();
  a1.stream = "a";
  a1.type = "t.x";
  a1.payload = "{}";
  a1.occurred_at_us = hour_ago;
  inbox.Fail(a1.id, true);
  AppendEvent(&a1);
  Event a2 = Append("a");  // held behind a1
  Event b1 = Append("b");  // delivered
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    auto s = relay.GetStatus("r");
    return s.ok() && s->parked == 1 && s->held == 1 && s->lag_events == 0;
  }));
  auto s = relay.GetStatus("r");
  ASSERT_TRUE(s.ok());
  EXPECT_GE(s->lag_seconds, 3600.0);
  EXPECT_LT(s->lag_seconds, 3700.0);
  // Dropping them leaves nothing undelivered.
  ASSERT_TRUE(relay.DropParked("r", "").ok());
  s = relay.GetStatus("r");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->lag_seconds, 0);
  (void)a2;
  (void)b1;
}

// commit_to_ack counts each delivered event, from its occurred_at.
TEST_P(RelayLibrary, CommitToAckHistogramCountsEveryDeliveredEvent) {
  Inbox inbox;
  Relay relay(store_.get(), Options());
  ASSERT_TRUE(
      relay.AddRoute(Route(), MakeCallbackSender(inbox.Handler())).ok());
  Event old;
  old.stream = "a";
  old.type = "t.x";
  old.payload = "{}";
  old.occurred_at_us = NowMicros() - int64_t{120} * 1000000;  // 2 min ago
  AppendEvent(&old);
  Append("a");
  Append("b");
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return relay.GetMetrics()[0].delivered == 3; }));
  const LatencyHistogram h = relay.GetMetrics()[0].commit_to_ack;
  EXPECT_EQ(h.count, 3u);
  ASSERT_EQ(h.counts.size(), h.bounds_seconds.size() + 1);
  uint64_t sum = 0, at_least_two_minutes = 0;
  for (size_t i = 0; i < h.counts.size(); ++i) {
    sum += h.counts[i];
    if (i > 0 && h.bounds_seconds[i - 1] >= 60)
      at_least_two_minutes += h.counts[i];
  }
  EXPECT_EQ(sum, 3u);
  EXPECT_EQ(at_least_two_minutes, 1u);
  EXPECT_GE(h.sum_seconds, 120.0);
}

// ---- Pipelined sending (Sender::SendKeepingInFlight) -----------------------

// A pipelining sender over an in-process receiver, the relay's side of
// SendKeepingInFlight made deterministic: a call that may keep events in
// flight leaves the last event of each stream in it unanswered; the next
// call answers those first. Events fail on cue (a number of times, or for
// good), and every broken REQUIRES of the contract is recorded.
class PipeSender final : public Sender {
 public:
  struct State {
    std::mutex mu;
    std::vector<Event> got;           // acknowledged, in order
    std::map<std::string, int> fail;  // id -> failures left; -1: for good
    int left_in_flight = 0;           // events left in flight, all calls
    int carried_failed = 0;           // in-flight events that then failed
    std::vector<std::string> broken;  // what the caller did wrong

    std::vector<int64_t> Positions(const std::string& stream) {
      std::lock_guard<std::mutex> lock(mu);
      std::vector<int64_t> out;
      for (const auto& e : got) {
        if (e.stream == stream) out.push_back(e.position);
      }
      return out;
    }
  };
  explicit PipeSender(std::shared_ptr<State> state)
      : state_(std::move(state)) {}

  void Send(std::span<const Event> events, std::span<SendResult> results,
            std::chrono::steady_clock::time_point) override {
    Call(events, results, false);
  }
  void SendKeepingInFlight(std::span<const Event> events,
                           std::span<SendResult> results,
                           std::chrono::steady_clock::time_point) override {
    Call(events, results, true);
  }
  std::string_view kind() const override { return "pipe"; }

 private:
  void Call(std::span<const Event> events, std::span<SendResult> results,
            bool keep) {
    std::lock_guard<std::mutex> lock(state_->mu);
    std::map<std::string, std::string> carried = std::move(in_flight_);
    in_flight_.clear();                  // id -> stream
    std::map<std::string, size_t> last;  // stream -> its last index here
    for (size_t i = 0; i < events.size(); ++i) last[events[i].stream] = i;
    std::set<std::string> seen, stopped;
    for (size_t i = 0; i < events.size(); ++i) {
      const Event& e = events[i];
      const bool answered_now = carried.erase(e.id) > 0;
      if (answered_now && seen.count(e.stream)) {
        state_->broken.push_back("in-flight " + e.id +
                                 " passed after another of its stream");
      }
      seen.insert(e.stream);
      if (stopped.count(e.stream)) continue;  // NotSent
      results[i].attempted = true;
      if (!answered_now && keep && last[e.stream] == i) {
        in_flight_[e.id] = e.stream;
        results[i] = SendResult::InFlight();
        ++state_->left_in_flight;
        continue;
      }
      auto f = state_->fail.find(e.id);
      if (f != state_->fail.end() && f->second != 0) {
        const bool permanent = f->second < 0;
        if (!permanent) --f->second;
        results[i].status = permanent ? Status::Permanent("rejected " + e.id)
                                      : Status::Unavailable("busy " + e.id);
        if (answered_now) ++state_->carried_failed;
        stopped.insert(e.stream);
        continue;
      }
      results[i].status = Status::OK();
      state_->got.push_back(e);
    }
    // Abandoned: an event left in flight and not passed again must not be
    // overtaken by a later one of its stream.
    for (const auto& [id, stream] : carried) {
      if (seen.count(stream)) {
        state_->broken.push_back("in-flight " + id +
                                 " left out, yet its stream went on");
      }
    }
  }

  std::shared_ptr<State> state_;
  std::map<std::string, std::string> in_flight_;  // left by the last call
};

// n events over the streams a, b, c in turn (a b c a b c ...).
std::vector<Event> RoundRobinEvents(int n) {
  std::vector<Event> events;
  for (int i = 0; i < n; ++i) {
    Event e;
    e.id = NewUuidV7();
    e.stream = std::string(1, static_cast<char>('a' + i % 3));
    e.type = "t.x";
    e.payload = "{}";
    events.push_back(e);
  }
  return events;
}

// The relay carries events left in flight into its next batch; one of
// them then fails for good: it is parked, nothing later of its stream is
// acknowledged or overtakes it (held, in this batch and the later ones),
// the other streams flow in order, and the checkpoint passes everything.
TEST_P(RelayLibrary, PipelinedAFailureCarriedIntoTheNextBatchParksItsStream) {
  auto state = std::make_shared<PipeSender::State>();
  Relay relay(store_.get(), Options());
  ASSERT_TRUE(relay
                  .AddRoute(Route(FailurePolicy::kPark),
                            std::make_unique<PipeSender>(state))
                  .ok());
  // a b c a b c ...: the 10th event (a's 4th) is the last of a in the
  // first batch of 10, so it is left in flight and answered in the next.
  std::vector<Event> events = RoundRobinEvents(30);
  {
    std::lock_guard<std::mutex> lock(state->mu);
    state->fail[events[9].id] = -1;
  }
  for (auto& e : events) AppendEvent(&e);
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    auto c = store_->GetCheckpoint(Relay::CheckpointName("r"));
    return c.ok() && *c == events.back().position + 1;
  }));
  {
    std::lock_guard<std::mutex> lock(state->mu);
    EXPECT_GT(state->left_in_flight, 0);
    EXPECT_EQ(state->carried_failed, 1);
    EXPECT_TRUE(state->broken.empty()) << state->broken[0];
  }
  std::map<std::string, std::vector<int64_t>> want;
  for (const auto& e : events) want[e.stream].push_back(e.position);
  // a: the three before the failure, nothing after it.
  EXPECT_EQ(state->Positions("a"),
            (std::vector<int64_t>(want["a"].begin(), want["a"].begin() + 3)));
  EXPECT_EQ(state->Positions("b"), want["b"]);
  EXPECT_EQ(state->Positions("c"), want["c"]);
  auto parked = relay.ListParked("r");
  ASSERT_TRUE(parked.ok());
  ASSERT_EQ(parked->size(), 7u);  // a's 4th parked, its 5th-10th held
  EXPECT_EQ((*parked)[0].event.id, events[9].id);
  EXPECT_EQ((*parked)[0].state, "parked");
  for (size_t i = 1; i < parked->size(); ++i) {
    EXPECT_EQ((*parked)[i].state, "held");
    EXPECT_EQ((*parked)[i].event.stream, "a");
  }
}

// The same with a retryable failure under "block": the carried event is
// retried until it goes through, and its stream's later events are
// acknowledged only after it, each once.
TEST_P(RelayLibrary, PipelinedARetriedCarriedEventKeepsItsStreamInOrder) {
  auto state = std::make_shared<PipeSender::State>();
  Relay relay(store_.get(), Options());
  ASSERT_TRUE(
      relay.AddRoute(Route(), std::make_unique<PipeSender>(state)).ok());
  std::vector<Event> events = RoundRobinEvents(40);
  {
    std::lock_guard<std::mutex> lock(state->mu);
    state->fail[events[9].id] = 2;  // busy twice, then taken
  }
  for (auto& e : events) AppendEvent(&e);
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    auto c = store_->GetCheckpoint(Relay::CheckpointName("r"));
    return c.ok() && *c == events.back().position + 1;
  }));
  std::map<std::string, std::vector<int64_t>> want;
  for (const auto& e : events) want[e.stream].push_back(e.position);
  for (const auto& [stream, positions] : want) {
    EXPECT_EQ(state->Positions(stream), positions) << stream;
  }
  std::lock_guard<std::mutex> lock(state->mu);
  EXPECT_EQ(state->got.size(), events.size());  // each once
  EXPECT_GT(state->left_in_flight, 0);
  EXPECT_EQ(state->carried_failed, 1);
  EXPECT_TRUE(state->broken.empty()) << state->broken[0];
}

INSTANTIATE_TEST_SUITE_P(Backends, RelayLibrary,
                         ::testing::ValuesIn(testing::TestBackends()));

}  // namespace
}  // namespace herald
