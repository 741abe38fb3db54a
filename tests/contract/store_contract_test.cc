// The Store contract: every backend passes this suite unchanged.
// Runs on SQLite always and on PostgreSQL when the test script started one
// (HERALD_TEST_PG_URL).
#include <gtest/gtest.h>

#include <cctype>
#include <set>
#include <thread>

#include "herald/store.h"
#include "support/test_util.h"

namespace herald {
namespace {

using testing::FreshStoreUrl;
using testing::MakeEvent;
using testing::TempDir;
using testing::WaitFor;

class StoreContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    HERALD_SKIP_UNLESS_BACKEND(GetParam());
    url_ = FreshStoreUrl(GetParam(), dir_);
    auto s = OpenStore(url_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  // Reads everything, waiting until `count` events are visible (PostgreSQL
  // positions events shortly after commit).
  std::vector<Event> ReadAll(size_t count) {
    std::vector<Event> out;
    EXPECT_TRUE(WaitFor([&] {
      ReadRequest r;
      r.offset = 0;
      r.limit = kMaxReadLimit;
      auto page = store_->Read(r);
      if (!page.ok()) return false;
      out = page->events;
      return out.size() >= count;
    })) << "saw "
        << out.size() << " of " << count;
    return out;
  }

  Status AppendOne(Event* e, AppendOptions options = {}) {
    auto r = store_->Append(std::span<Event>(e, 1), options);
    return r.status();
  }

  TempDir dir_;
  std::string url_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreContract, AppendAssignsIdTimeAndVersion) {
  Event e = MakeEvent("order-1", "order.placed", R"({"total":12})");
  ASSERT_TRUE(AppendOne(&e).ok());
  EXPECT_TRUE(IsUuid(e.id));
  EXPECT_EQ(e.id[14], '7') << "UUIDv7 expected: " << e.id;
  EXPECT_GT(e.occurred_at_us, 0);
  EXPECT_EQ(e.stream_version, 1);
  auto events = ReadAll(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].id, e.id);
  EXPECT_EQ(events[0].position, 1);
  EXPECT_EQ(events[0].payload, R"({"total":12})");
  EXPECT_EQ(events[0].metadata, "{}");
  EXPECT_EQ(events[0].occurred_at_us, e.occurred_at_us);
}

TEST_P(StoreContract, PayloadAndMetadataStoredVerbatim) {
  Event e = MakeEvent("s", "t", "{ \"a\" : [1, 2.50, \"\\u00e9\"] }\n");
  e.metadata = R"({"correlation_id":"c-1","trace":{"id":"x"}})";
  ASSERT_TRUE(AppendOne(&e).ok());
  Event binary = MakeEvent("s", "t");
  binary.content_type = "application/octet-stream";
  binary.payload = std::string("\x00\x01\xff\xfe", 4);
  ASSERT_TRUE(AppendOne(&binary).ok());
  auto events = ReadAll(2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].payload, e.payload);
  EXPECT_EQ(events[0].metadata, e.metadata);
  EXPECT_EQ(events[1].payload, binary.payload);
  EXPECT_EQ(events[1].content_type, "application/octet-stream");
}

TEST_P(StoreContract, AppendIsIdempotentById) {
  Event e = MakeEvent("s", "t");
  e.id = NewUuidV7();
  ASSERT_TRUE(AppendOne(&e).ok());
  Event again = MakeEvent("s", "t", R"({"different":true})");
  again.id = e.id;
  auto r = store_->Append(std::span<Event>(&again, 1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->created, 0u);
  EXPECT_EQ(again.payload, "{}") << "the stored event comes back";
  EXPECT_EQ(ReadAll(1).size(), 1u);
  auto head = store_->Head();
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(*head, 1);
}

TEST_P(StoreContract, ExpectedVersionConflictWritesNothing) {
  Event a = MakeEvent("acct-1", "opened");
  AppendOptions new_stream;
  new_stream.expected_version = 0;
  ASSERT_TRUE(AppendOne(&a, new_stream).ok());
  std::vector<Event> batch{MakeEvent("acct-1", "credited"),
                           MakeEvent("acct-1", "debited")};
  AppendOptions stale;
  stale.expected_version = 0;
  auto r = store_->Append(batch, stale);
  EXPECT_TRUE(r.status().IsConflict()) << r.status().ToString();
  AppendOptions current;
  current.expected_version = 1;
  ASSERT_TRUE(store_->Append(batch, current).ok());
  EXPECT_EQ(batch[1].stream_version, 3);
  // A retry of the same append is not a conflict.
  auto retry = store_->Append(batch, current);
  ASSERT_TRUE(retry.ok()) << retry.status().ToString();
  EXPECT_EQ(retry->created, 0u);
  EXPECT_EQ(ReadAll(3).size(), 3u);
}

TEST_P(StoreContract, ExpectedVersionNeedsOneStream) {
  std::vector<Event> batch{MakeEvent("a", "t"), MakeEvent("b", "t")};
  AppendOptions o;
  o.expected_version = 0;
  EXPECT_TRUE(store_->Append(batch, o).status().IsInvalidArgument());
}

TEST_P(StoreContract, InvalidEventsWriteNothing) {
  std::vector<std::pair<std::string, Event>> bad;
  Event e = MakeEvent("s", "t");
  e.id = "not-a-uuid";
  bad.emplace_back("bad id", e);
  bad.emplace_back("empty type", MakeEvent("s", ""));
  bad.emplace_back("empty stream", MakeEvent("", "t"));
  bad.emplace_back("long type", MakeEvent("s", std::string(257, 't')));
  bad.emplace_back("long stream", MakeEvent(std::string(257, 's'), "t"));
  bad.emplace_back("payload not JSON", MakeEvent("s", "t", "{nope"));
  e = MakeEvent("s", "t");
  e.metadata = "[1]";
  bad.emplace_back("metadata not an object", e);
  for (auto& [name, ev] : bad) {
    // A good event first in the same call: the whole call must fail.
    std::vector<Event> batch{MakeEvent("s", "t"), ev};
    auto r = store_->Append(batch);
    EXPECT_TRUE(r.status().IsInvalidArgument()) << name;
  }
  auto head = store_->Head();
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(*head, 0);
}

TEST_P(StoreContract, RolledBackAppendLeavesNothing) {
  {
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    Event e = MakeEvent("s", "t");
    ASSERT_TRUE(store_->Append(**tx, std::span<Event>(&e, 1)).ok());
    ASSERT_TRUE((*tx)->Rollback().ok());
  }
  {
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    Event e = MakeEvent("s", "t");
    ASSERT_TRUE(store_->Append(**tx, std::span<Event>(&e, 1)).ok());
    // Destroyed without commit: rolled back.
  }
  Event kept = MakeEvent("s", "t");
  ASSERT_TRUE(AppendOne(&kept).ok());
  auto events = ReadAll(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].id, kept.id);
  EXPECT_EQ(events[0].position, 1) << "positions stay dense after rollbacks";
  EXPECT_EQ(events[0].stream_version, 1);
}

TEST_P(StoreContract, ReadPagesWithNextOffset) {
  std::vector<Event> batch;
  for (int i = 0; i < 25; ++i) batch.push_back(MakeEvent("s", "t"));
  ASSERT_TRUE(store_->Append(batch).ok());
  ReadAll(25);
  int64_t offset = 0;
  std::vector<int64_t> seen;
  while (true) {
    ReadRequest r;
    r.offset = offset;
    r.limit = 10;
    auto page = store_->Read(r);
    ASSERT_TRUE(page.ok());
    EXPECT_EQ(page->head, 25);
    for (auto& e : page->events) seen.push_back(e.position);
    if (page->events.empty()) {
      EXPECT_EQ(page->next_offset, offset == 0 ? 1 : offset);
      break;
    }
    offset = page->next_offset;
  }
  ASSERT_EQ(seen.size(), 25u);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], int64_t(i + 1));
  // Offsets 0 and 1 both mean the start.
  ReadRequest r0, r1;
  r0.offset = 0;
  r1.offset = 1;
  EXPECT_EQ(store_->Read(r0)->events.front().position, 1);
  EXPECT_EQ(store_->Read(r1)->events.front().position, 1);
}

TEST_P(StoreContract, ReadRejectsBadLimitsAndOffsets) {
  ReadRequest r;
  r.limit = 0;
  EXPECT_TRUE(store_->Read(r).status().IsInvalidArgument());
  r.limit = -1;
  EXPECT_TRUE(store_->Read(r).status().IsInvalidArgument());
  r.limit = kMaxReadLimit + 1;
  EXPECT_TRUE(store_->Read(r).status().IsInvalidArgument());
  r.limit = 10;
  r.offset = -5;
  EXPECT_TRUE(store_->Read(r).status().IsInvalidArgument());
}

TEST_P(StoreContract, FilteredReadMovesPastScannedEvents) {
  std::vector<Event> batch;
  for (int i = 0; i < 10; ++i) {
    batch.push_back(MakeEvent(i % 2 ? "order-1" : "cart-1",
                              i % 2 ? "order.placed" : "cart.emptied"));
  }
  ASSERT_TRUE(store_->Append(batch).ok());
  ReadAll(10);
  ReadRequest r;
  r.types = {"order.*"};
  r.limit = 100;
  auto page = store_->Read(r);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->events.size(), 5u);
  for (auto& e : page->events) EXPECT_EQ(e.type, "order.placed");
  EXPECT_EQ(page->next_offset, 11);
  r.types.clear();
  r.stream = "cart-1";
  page = store_->Read(r);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->events.size(), 5u);
  r.limit = 2;
  page = store_->Read(r);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->events.size(), 2u);
  EXPECT_EQ(page->next_offset, page->events.back().position + 1);
}

TEST_P(StoreContract, ScanVisitsWhatReadReturns) {
  std::vector<Event> batch;
  for (int i = 0; i < 12; ++i) {
    batch.push_back(MakeEvent(i % 3 ? "order-1" : "cart-1",
                              i % 3 ? "order.placed" : "cart.emptied"));
  }
  batch[4].content_type = "text/plain";
  batch[4].payload = "plain\ntext";
  ASSERT_TRUE(store_->Append(batch).ok());
  ReadAll(12);
  for (ReadRequest r :
       {ReadRequest{0, 5, {}, "", ""}, ReadRequest{3, 100, {"order.*"}, "", ""},
        ReadRequest{0, 2, {}, "cart-1", ""}}) {
    auto read = store_->Read(r);
    ASSERT_TRUE(read.ok());
    std::vector<std::string> seen;
    auto scan = store_->Scan(
        r, [&](const EventView& v) { seen.push_back(EventToJson(v)); });
    ASSERT_TRUE(scan.ok());
    EXPECT_TRUE(scan->events.empty());
    EXPECT_EQ(scan->next_offset, read->next_offset);
    EXPECT_EQ(scan->head, read->head);
    ASSERT_EQ(seen.size(), read->events.size());
    for (size_t i = 0; i < seen.size(); ++i) {
      EXPECT_EQ(seen[i], EventToJson(read->events[i]));
    }
  }
  ReadRequest bad;
  bad.limit = 0;
  EXPECT_TRUE(
      store_->Scan(bad, [](const EventView&) {}).status().IsInvalidArgument());
}

TEST_P(StoreContract, ReadStreamInOrderFromVersion) {
  for (int i = 0; i < 6; ++i) {
    Event e = MakeEvent(i % 2 ? "a" : "b", "t", std::to_string(i));
    ASSERT_TRUE(AppendOne(&e).ok());
  }
  auto a = store_->ReadStream("a", 2, 100);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].payload, "3");
  EXPECT_EQ((*a)[0].stream_version, 2);
  EXPECT_EQ((*a)[1].payload, "5");
  auto none = store_->ReadStream("nope", 1, 100);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_P(StoreContract, GetById) {
  Event e = MakeEvent("s", "t");
  ASSERT_TRUE(AppendOne(&e).ok());
  auto got = store_->Get(e.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->stream, "s");
  EXPECT_TRUE(store_->Get(NewUuidV7()).status().IsNotFound());
}

TEST_P(StoreContract, CheckpointsInTheCallersTransaction) {
  auto none = store_->GetCheckpoint("c");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0);
  ASSERT_TRUE(store_->SaveCheckpoint("c", 42).ok());
  EXPECT_EQ(*store_->GetCheckpoint("c"), 42);
  {
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(store_->SaveCheckpoint(**tx, "c", 99).ok());
    ASSERT_TRUE((*tx)->Rollback().ok());
  }
  EXPECT_EQ(*store_->GetCheckpoint("c"), 42);
}

// Listing and removing checkpoints by name prefix (an adopted table's
// per-route progress); a prefix is literal ('_' and '%' match themselves).
TEST_P(StoreContract, CheckpointsListedAndDeletedByPrefix) {
  for (const char* name : {"adopt/s_1/10/a", "adopt/s_1/10/b", "adopt/s_1/2/a",
                           "adopt/sx1/10/a", "adopt/s_10/1/a", "relay/r"}) {
    ASSERT_TRUE(store_->SaveCheckpoint(name, 5).ok());
  }
  auto names = [&](const std::string& prefix) {
    std::vector<std::string> out;
    auto list = store_->ListCheckpoints(prefix);
    EXPECT_TRUE(list.ok()) << list.status().ToString();
    if (list.ok()) {
      for (const auto& [name, v] : *list) {
        EXPECT_EQ(v, 5);
        out.push_back(name);
      }
    }
    return out;
  };
  EXPECT_EQ(names("adopt/s_1/"),
            (std::vector<std::string>{"adopt/s_1/10/a", "adopt/s_1/10/b",
                                      "adopt/s_1/2/a"}));
  {
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(store_->DeleteCheckpoints(**tx, "adopt/s_1/10/").ok());
    ASSERT_TRUE((*tx)->Rollback().ok());
  }
  EXPECT_EQ(names("adopt/s_1/10/").size(), 2u);
  {
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(store_->DeleteCheckpoints(**tx, "adopt/s_1/10/").ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  EXPECT_EQ(names("adopt/"),
            (std::vector<std::string>{"adopt/s_1/2/a", "adopt/s_10/1/a",
                                      "adopt/sx1/10/a"}));
  EXPECT_EQ(*store_->GetCheckpoint("relay/r"), 5);
}

TEST_P(StoreContract, ParkedEventsListRetryDrop) {
  std::vector<Event> batch{MakeEvent("s", "t"), MakeEvent("s", "t")};
  ASSERT_TRUE(store_->Append(batch).ok());
  ReadAll(2);
  auto stored = store_->Read(ReadRequest{});
  ASSERT_TRUE(stored.ok());
  {
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    ParkedEvent p;
    p.route = "r";
    p.event = stored->events[0];
    p.state = "parked";
    p.attempts = 5;
    p.error = "HTTP 400";
    ASSERT_TRUE(store_->Park(**tx, p).ok());
    p.event = stored->events[1];
    p.state = "held";
    p.error = "held behind " + stored->events[0].id;
    ASSERT_TRUE(store_->Park(**tx, p).ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  auto list = store_->ListParked("r", "", 100);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].event.id, stored->events[0].id);
  EXPECT_EQ((*list)[0].state, "parked");
  EXPECT_EQ((*list)[0].error, "HTTP 400");
  EXPECT_EQ((*list)[0].attempts, 5);
  EXPECT_EQ(*store_->CountParked("r"), 2);
  EXPECT_EQ(*store_->CountParked("other"), 0);
  ASSERT_TRUE(store_->SetParkedState("r", stored->events[0].id, "retry").ok());
  EXPECT_EQ(store_->ListParked("r", "retry", 100)->size(), 1u);
  EXPECT_TRUE(store_->SetParkedState("r", NewUuidV7(), "retry").IsNotFound());
  {
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(store_->DropParked(**tx, "r", stored->events[0].id).ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  EXPECT_EQ(*store_->CountParked("r"), 1);
  auto tx = store_->Begin();
  ASSERT_TRUE(tx.ok());
  EXPECT_TRUE(store_->DropParked(**tx, "r", NewUuidV7()).IsNotFound());
}

TEST_P(StoreContract, InboxMarksEachEventOnce) {
  auto tx = store_->Begin();
  ASSERT_TRUE(tx.ok());
  std::string id = NewUuidV7();
  auto first = store_->MarkHandled(**tx, "billing", id);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(*first);
  auto second = store_->MarkHandled(**tx, "billing", id);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(*second);
  auto other = store_->MarkHandled(**tx, "shipping", id);
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(*other);
  ASSERT_TRUE((*tx)->Commit().ok());
}

TEST_P(StoreContract, LeasesAreExclusiveUntilExpiry) {
  using std::chrono::milliseconds;
  auto a = store_->AcquireLease("route:r", "a", milliseconds(300));
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(*a);
  EXPECT_FALSE(*store_->AcquireLease("route:r", "b", milliseconds(300)));
  EXPECT_TRUE(*store_->AcquireLease("route:r", "a", milliseconds(300)))
      << "the owner renews";
  auto info = store_->GetLease("route:r");
  ASSERT_TRUE(info.ok());
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->owner, "a");
  // After expiry another owner takes it.
  EXPECT_TRUE(WaitFor(
      [&] { return *store_->AcquireLease("route:r", "b", milliseconds(300)); },
      std::chrono::seconds(5)));
  ASSERT_TRUE(store_->ReleaseLease("route:r", "b").ok());
  EXPECT_TRUE(*store_->AcquireLease("route:r", "a", milliseconds(300)));
}

TEST_P(StoreContract, AppendWakesWaiters) {
  uint64_t seen = store_->append_epoch();
  std::thread writer([&] {
    Event e = MakeEvent("s", "t");
    ASSERT_TRUE(AppendOne(&e).ok());
  });
  uint64_t now = store_->WaitForAppend(seen, std::chrono::seconds(10));
  writer.join();
  EXPECT_NE(now, seen);
}

TEST_P(StoreContract, ConcurrentAppendersGetDensePositions) {
  constexpr int kThreads = 4, kPerThread = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Event e = MakeEvent("s-" + std::to_string(t), "t", std::to_string(i));
        ASSERT_TRUE(AppendOne(&e).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  auto events = ReadAll(kThreads * kPerThread);
  ASSERT_EQ(events.size(), size_t(kThreads * kPerThread));
  std::map<std::string, int> next;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].position, int64_t(i + 1));
    EXPECT_EQ(events[i].payload, std::to_string(next[events[i].stream]++))
        << "per-stream order";
  }
}

TEST_P(StoreContract, ReopenKeepsEverything) {
  Event e = MakeEvent("s", "t");
  ASSERT_TRUE(AppendOne(&e).ok());
  ReadAll(1);
  store_.reset();
  auto again = OpenStore(url_);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  store_ = std::move(*again);
  auto events = ReadAll(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].id, e.id);
}

// A transaction some other code made (no store's).
class StrayTransaction final : public Transaction {
 public:
  Status Commit() override { return Status::OK(); }
  Status Rollback() override { return Status::OK(); }
  void* native_handle() override { return nullptr; }
};

TEST_P(StoreContract, TransactionOfAnotherStoreIsRefused) {
  Event e = MakeEvent("s", "t");
  ASSERT_TRUE(AppendOne(&e).ok());
  ReadAll(1);
  // A second store of the same backend, and (on PostgreSQL) an SQLite one.
  TempDir other_dir;
  std::vector<std::unique_ptr<Store>> others;
  auto same = OpenStore(FreshStoreUrl(GetParam(), other_dir));
  ASSERT_TRUE(same.ok()) << same.status().ToString();
  others.push_back(std::move(*same));
  if (GetParam() != "sqlite") {
    auto lite = OpenStore("sqlite:" + other_dir.file("other.db"));
    ASSERT_TRUE(lite.ok()) << lite.status().ToString();
    others.push_back(std::move(*lite));
  }
  for (auto& other : others) {
    SCOPED_TRACE(std::string(other->backend()));
    auto tx = other->Begin();
    ASSERT_TRUE(tx.ok()) << tx.status().ToString();
    Transaction& foreign = **tx;
    Event x = MakeEvent("s", "t");
    EXPECT_TRUE(store_->Append(foreign, std::span<Event>(&x, 1))
                    .status()
                    .IsInvalidArgument());
    EXPECT_TRUE(store_->SaveCheckpoint(foreign, "c", 7).IsInvalidArgument());
    ParkedEvent p;
    p.route = "r";
    p.event = e;
    p.state = "parked";
    EXPECT_TRUE(store_->Park(foreign, p).IsInvalidArgument());
    EXPECT_TRUE(store_->DropParked(foreign, "r", e.id).IsInvalidArgument());
    EXPECT_TRUE(
        store_->MarkHandled(foreign, "c", e.id).status().IsInvalidArgument());
    ASSERT_TRUE(foreign.Commit().ok());
  }
  StrayTransaction stray;
  Event y = MakeEvent("s", "t");
  EXPECT_TRUE(store_->Append(stray, std::span<Event>(&y, 1))
                  .status()
                  .IsInvalidArgument());
  // Nothing was written anywhere through a foreign transaction.
  EXPECT_EQ(*store_->Head(), 1);
  EXPECT_EQ(*store_->GetCheckpoint("c"), 0);
  EXPECT_EQ(*store_->CountParked("r"), 0);
  for (auto& other : others) EXPECT_EQ(*other->Head(), 0);
  // A joined transaction is the store's own.
  auto own = store_->Begin();
  ASSERT_TRUE(own.ok());
  auto joined = store_->Join((*own)->native_handle());
  EXPECT_TRUE(store_->SaveCheckpoint(*joined, "c", 9).ok());
  ASSERT_TRUE((*own)->Commit().ok());
  EXPECT_EQ(*store_->GetCheckpoint("c"), 9);
}

TEST_P(StoreContract, OneEventPerUuidWhateverItsCase) {
  std::string lower = NewUuidV7();
  std::string upper = lower;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  ASSERT_NE(upper, lower);
  Event e = MakeEvent("s", "t", R"({"n":1})");
  e.id = upper;
  auto r = store_->Append(std::span<Event>(&e, 1));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->created, 1u);
  EXPECT_EQ(e.id, lower) << "handed back as stored";
  Event again = MakeEvent("s", "t", R"({"n":2})");
  again.id = lower;
  r = store_->Append(std::span<Event>(&again, 1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->created, 0u) << "the same UUID in another case";
  EXPECT_EQ(again.payload, R"({"n":1})");
  Event third = MakeEvent("s", "t", R"({"n":3})");
  third.id = upper;
  r = store_->Append(std::span<Event>(&third, 1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->created, 0u);
  auto events = ReadAll(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].id, lower);
  for (const auto& id : {lower, upper}) {
    auto got = store_->Get(id);
    ASSERT_TRUE(got.ok()) << id << ": " << got.status().ToString();
    EXPECT_EQ(got->id, lower);
    EXPECT_EQ(got->payload, R"({"n":1})");
  }
  // The inbox compares UUIDs the same way.
  auto tx = store_->Begin();
  ASSERT_TRUE(tx.ok());
  EXPECT_TRUE(*store_->MarkHandled(**tx, "c", upper));
  EXPECT_FALSE(*store_->MarkHandled(**tx, "c", lower));
  ASSERT_TRUE((*tx)->Commit().ok());
}

TEST_P(StoreContract, ParkedCountsByState) {
  std::vector<Event> batch{MakeEvent("a", "t"), MakeEvent("a", "t"),
                           MakeEvent("b", "t"), MakeEvent("c", "t")};
  ASSERT_TRUE(store_->Append(batch).ok());
  auto stored = ReadAll(4);
  ASSERT_EQ(stored.size(), 4u);
  const char* states[] = {"parked", "held", "parked", "retry"};
  {
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    for (size_t i = 0; i < 4; ++i) {
      ParkedEvent p;
      p.route = "r";
      p.event = stored[i];
      p.state = states[i];
      ASSERT_TRUE(store_->Park(**tx, p).ok());
    }
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  auto one = store_->GetParked("r", stored[1].id);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  ASSERT_TRUE(one->has_value());
  EXPECT_EQ((*one)->state, "held");
  EXPECT_EQ((*one)->event.id, stored[1].id);
  EXPECT_EQ((*one)->event.position, stored[1].position);
  std::string upper = stored[1].id;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  EXPECT_TRUE(store_->GetParked("r", upper)->has_value());
  EXPECT_FALSE(store_->GetParked("other", stored[1].id)->has_value());
  EXPECT_FALSE(store_->GetParked("r", NewUuidV7())->has_value());
  auto counts = store_->CountParkedByState("r");
  ASSERT_TRUE(counts.ok()) << counts.status().ToString();
  EXPECT_EQ(counts->parked, 2);
  EXPECT_EQ(counts->held, 1);
  EXPECT_EQ(counts->retry, 1);
  EXPECT_EQ(counts->total(), *store_->CountParked("r"));
  auto none = store_->CountParkedByState("other");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->total(), 0);
}

TEST_P(StoreContract, RouteStatusRowKeepsTheLastError) {
  auto none = store_->GetRouteStatus("r");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value());
  int64_t t1 = NowMicros();
  ASSERT_TRUE(store_->SetRouteError("r", "HTTP 500", t1).ok());
  ASSERT_TRUE(store_->SetRouteError("r", "HTTP 503", t1 + 10).ok());
  auto row = store_->GetRouteStatus("r");
  ASSERT_TRUE(row.ok());
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ((*row)->route, "r");
  EXPECT_EQ((*row)->last_error, "HTTP 503");
  EXPECT_EQ((*row)->last_error_at_us, t1 + 10);
  EXPECT_FALSE(store_->GetRouteStatus("other")->has_value());
  // Not a lease any more.
  EXPECT_FALSE(store_->GetLease("relay-error/r")->has_value());
}

TEST_P(StoreContract, InboxRetentionSweep) {
  std::string old_id = NewUuidV7();
  {
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    EXPECT_TRUE(*store_->MarkHandled(**tx, "c", old_id));
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  EXPECT_TRUE(store_->SweepInbox(std::chrono::milliseconds(-1))
                  .status()
                  .IsInvalidArgument());
  auto kept = store_->SweepInbox(std::chrono::hours(1));
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  EXPECT_EQ(*kept, 0) << "younger than the retention";
  {
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    EXPECT_FALSE(*store_->MarkHandled(**tx, "c", old_id)) << "still deduped";
    ASSERT_TRUE((*tx)->Rollback().ok());
  }
  int64_t swept = 0;
  EXPECT_TRUE(WaitFor([&] {
    auto n = store_->SweepInbox(std::chrono::milliseconds(1));
    if (n.ok()) swept += *n;
    return swept > 0;
  }));
  EXPECT_EQ(swept, 1);
  auto tx = store_->Begin();
  ASSERT_TRUE(tx.ok());
  EXPECT_TRUE(*store_->MarkHandled(**tx, "c", old_id))
      << "older than the retention: handled again";
  ASSERT_TRUE((*tx)->Commit().ok());
}

// The consumer's calls: a read-only check and a per-consumer sweep in
// batches that leaves younger rows and other consumers alone.
TEST_P(StoreContract, InboxIsHandledAndBatchedSweep) {
  std::vector<std::string> ids;
  {
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    for (int i = 0; i < 5; ++i) {
      ids.push_back(NewUuidV7());
      EXPECT_TRUE(*store_->MarkHandled(**tx, "c", ids.back()));
    }
    EXPECT_TRUE(*store_->MarkHandled(**tx, "other", ids[0]));
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  std::string upper = ids[0];
  for (char& ch : upper) ch = static_cast<char>(std::toupper(ch));
  EXPECT_TRUE(*store_->IsHandled("c", upper));
  EXPECT_FALSE(*store_->IsHandled("c", NewUuidV7()));
  EXPECT_FALSE(*store_->IsHandled("nobody", ids[0]));
  EXPECT_TRUE(store_->SweepInboxBatch("c", std::chrono::milliseconds(-1), 2)
                  .status()
                  .IsInvalidArgument());
  EXPECT_TRUE(store_->SweepInboxBatch("c", std::chrono::milliseconds(1), 0)
                  .status()
                  .IsInvalidArgument());
  EXPECT_EQ(*store_->SweepInboxBatch("c", std::chrono::hours(1), 2), 0);
  ASSERT_TRUE(WaitFor([&]() -> bool {
    auto n = store_->SweepInboxBatch("c", std::chrono::milliseconds(0), 2);
    return n.ok() && *n == 2;
  }));
  EXPECT_EQ(*store_->SweepInboxBatch("c", std::chrono::milliseconds(0), 2), 2);
  EXPECT_EQ(*store_->SweepInboxBatch("c", std::chrono::milliseconds(0), 2), 1);
  EXPECT_EQ(*store_->SweepInboxBatch("c", std::chrono::milliseconds(0), 2), 0);
  for (const auto& id : ids) EXPECT_FALSE(*store_->IsHandled("c", id));
  EXPECT_TRUE(*store_->IsHandled("other", ids[0])) << "another consumer's";
}

// A consumer's parked event is not in the store's log: the row keeps it.
TEST_P(StoreContract, ParkedRowKeepsAnEventNotInTheLog) {
  Event e = MakeEvent("s-9", "order.placed", "{\"n\":1}");
  e.id = NewUuidV7();
  e.position = 42;
  e.metadata = "{\"k\":\"v\"}";
  e.occurred_at_us = 1'700'000'000'000'000;
  ParkedEvent p;
  p.route = "consumer:c";
  p.event = e;
  p.state = "parked";
  p.attempts = 3;
  p.error = "boom";
  p.keep_event = true;
  {
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(store_->Park(**tx, p).ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  auto rows = store_->ListParked("consumer:c", "", 10);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 1u);
  const ParkedEvent& got = (*rows)[0];
  EXPECT_TRUE(got.keep_event);
  EXPECT_EQ(got.event.id, e.id);
  EXPECT_EQ(got.event.stream, "s-9");
  EXPECT_EQ(got.event.type, "order.placed");
  EXPECT_EQ(got.event.payload, "{\"n\":1}");
  EXPECT_EQ(got.event.position, 42);
  EXPECT_EQ(got.event.occurred_at_us, e.occurred_at_us);
  EXPECT_EQ(got.attempts, 3);
  auto one = store_->GetParked("consumer:c", e.id);
  ASSERT_TRUE(one.ok() && one->has_value());
  EXPECT_EQ((*one)->event.payload, "{\"n\":1}");
  // Re-parking (state change) keeps the event.
  p.state = "held";
  p.keep_event = false;
  {
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(store_->Park(**tx, p).ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  rows = store_->ListParked("consumer:c", "held", 10);
  ASSERT_TRUE(rows.ok() && rows->size() == 1u);
  EXPECT_EQ((*rows)[0].event.payload, "{\"n\":1}");
  EXPECT_EQ(store_->CountParkedByState("consumer:c")->held, 1);
}

TEST_P(StoreContract, ReadOnlyOpenReadsAndRefusesWrites) {
  Event e = MakeEvent("s", "t");
  ASSERT_TRUE(AppendOne(&e).ok());
  ReadAll(1);
  StoreOptions options;
  options.read_only = true;
  auto ro = OpenStore(url_, options);
  ASSERT_TRUE(ro.ok()) << ro.status().ToString();
  auto page = (*ro)->Read(ReadRequest{});
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->events.size(), 1u);
  EXPECT_EQ(page->events[0].id, e.id);
  EXPECT_EQ((*ro)->Get(e.id)->id, e.id);
  EXPECT_EQ((*ro)->Begin().status().code(), Status::Code::kFailedPrecondition);
  Event x = MakeEvent("s", "t");
  EXPECT_EQ((*ro)->Append(std::span<Event>(&x, 1)).status().code(),
            Status::Code::kFailedPrecondition);
  EXPECT_EQ(*store_->Head(), 1);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreContract,
                         ::testing::ValuesIn(testing::TestBackends()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace herald
