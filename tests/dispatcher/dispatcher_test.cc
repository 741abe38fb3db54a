// The dispatcher and unit of work: phases, rollback, failures, scopes, the
// bounded async pool, typed conversion, and events reaching the store in
// the domain change's transaction. On a temporary SQLite file.
#include "herald/dispatcher.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "herald/json.h"
#include "herald/sqlite.h"
#include "herald/store.h"
#include "support/test_util.h"

// A typed event for the tests.
struct ItemAdded {
  int64_t id = 0;
  std::string name;
  bool operator==(const ItemAdded&) const = default;
};

template <>
struct herald::EventTraits<ItemAdded> {
  static constexpr std::string_view kType = "item.added";
  static std::string ToJson(const ItemAdded& e) {
    std::string out = "{\"id\":" + std::to_string(e.id) + ",\"name\":";
    herald::AppendJsonString(e.name, &out);
    out += "}";
    return out;
  }
  static herald::Result<ItemAdded> FromJson(std::string_view json) {
    auto doc = herald::Json::Parse(json);
    if (!doc.ok()) return doc.status();
    const herald::Json* id = doc->Find("id");
    const herald::Json* name = doc->Find("name");
    ItemAdded e;
    if (id == nullptr || !id->TryInt64(&e.id) || name == nullptr ||
        !name->is_string()) {
      return herald::Status::InvalidArgument("item.added needs id and name");
    }
    e.name = name->as_string();
    return e;
  }
  static std::string Stream(const ItemAdded& e) {
    return "item-" + std::to_string(e.id);
  }
};

// A typed event without a Stream in its traits.
struct Pinged {
  int n = 0;
};

template <>
struct herald::EventTraits<Pinged> {
  static constexpr std::string_view kType = "ping";
  static std::string ToJson(const Pinged& p) {
    return "{\"n\":" + std::to_string(p.n) + "}";
  }
  static herald::Result<Pinged> FromJson(std::string_view) { return Pinged{}; }
};

namespace herald {
namespace {

using testing::TempDir;
using testing::WaitFor;

// Collects on_error reports from any thread.
struct Errors {
  std::mutex mu;
  std::vector<HandlerError> list;  // guarded by mu
  std::function<void(const HandlerError&)> Callback() {
    return [this](const HandlerError& e) {
      std::lock_guard<std::mutex> lock(mu);
      list.push_back(e);
    };
  }
  std::vector<HandlerError> Get() {
    std::lock_guard<std::mutex> lock(mu);
    return list;
  }
  size_t size() { return Get().size(); }
};

// A gate async handlers wait on until the test opens it.
class Gate {
 public:
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("test.db");
    auto store = OpenStore(path_);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    auto tx = store_->Begin();
    ASSERT_TRUE(tx.ok());
    ASSERT_EQ(sqlite3_exec(SqliteHandle(**tx),
                           "CREATE TABLE items (id INTEGER PRIMARY KEY, "
                           "name TEXT NOT NULL)",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    ASSERT_TRUE((*tx)->Commit().ok());
  }

  DispatcherOptions Options() {
    DispatcherOptions o;
    o.on_error = errors_.Callback();
    return o;
  }

  // Inserts the domain row of `item` in the current unit's transaction.
  static Status InsertItem(const ItemAdded& item) {
    UnitOfWork* unit = UnitOfWork::Current();
    if (unit == nullptr) return Status::FailedPrecondition("no unit");
    std::string sql = "INSERT INTO items VALUES (" + std::to_string(item.id) +
                      ", '" + item.name + "')";
    int rc = sqlite3_exec(SqliteHandle(unit->transaction()), sql.c_str(),
                          nullptr, nullptr, nullptr);
    return rc == SQLITE_OK ? Status::OK() : Status::Internal("insert failed");
  }

  // What a request handler does: change a row, raise the event.
  static Status AddItem(const ItemAdded& item) {
    HERALD_RETURN_IF_ERROR(InsertItem(item));
    return Raise(item);
  }

  int64_t CountItems() {
    auto tx = store_->Begin();
    EXPECT_TRUE(tx.ok());
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(SqliteHandle(**tx), "SELECT count(*) FROM items", -1, &s,
                       nullptr);
    int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return n;
  }

  int64_t Head() {
    auto h = store_->Head();
    EXPECT_TRUE(h.ok());
    return h.ok() ? *h : -1;
  }

  TempDir dir_;
  std::string path_;
  std::unique_ptr<Store> store_;
  Errors errors_;
};

TEST_F(DispatcherTest, EveryPhaseRunsAtItsPoint) {
  Dispatcher dispatcher(store_.get(), Options());
  std::mutex mu;
  std::vector<std::string> seen;  // guarded by mu
  auto note = [&](std::string what) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(std::move(what));
  };
  Store* store = store_.get();
  bool in_tx_immediate = false, in_tx_before = false;
  bool stored_before = true, stored_after = false;
  std::atomic<bool> stored_async{false}, unit_on_pool_thread{true};
  std::thread::id async_thread;

  dispatcher.Subscribe<ItemAdded>(Phase::kImmediate, [&](const ItemAdded&) {
    in_tx_immediate = sqlite3_get_autocommit(SqliteHandle(
                          UnitOfWork::Current()->transaction())) == 0;
    note("immediate");
  });
  dispatcher.Subscribe<ItemAdded>(
      Phase::kBeforeCommit, [&](const ItemAdded&, const Event& e) {
        in_tx_before = sqlite3_get_autocommit(SqliteHandle(
                           UnitOfWork::Current()->transaction())) == 0;
        stored_before = store->Get(e.id).ok();
        note("before");
      });
  dispatcher.Subscribe<ItemAdded>(
      Phase::kAfterCommit, [&](const ItemAdded&, const Event& e) {
        stored_after = store->Get(e.id).ok();  // another connection sees it
        note("after");
      });
  dispatcher.Subscribe<ItemAdded>(
      Phase::kAfterCommitAsync, [&](const ItemAdded&, const Event& e) {
        {
          std::lock_guard<std::mutex> lock(mu);
          async_thread = std::this_thread::get_id();
        }
        stored_async = store->Get(e.id).ok();
        unit_on_pool_thread = UnitOfWork::Current() != nullptr;
        note("async");
      });

  auto unit = dispatcher.Begin();
  ASSERT_TRUE(unit.ok()) << unit.status().ToString();
  ASSERT_TRUE(AddItem({1, "apple"}).ok());
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(seen, std::vector<std::string>{"immediate"});
  }
  EXPECT_TRUE(in_tx_immediate);
  ASSERT_TRUE((*unit)->Commit().ok());
  ASSERT_TRUE(dispatcher.WaitIdle(std::chrono::seconds(10)));

  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(seen, (std::vector<std::string>{"immediate", "before", "after",
                                            "async"}));
  EXPECT_TRUE(in_tx_before);
  EXPECT_FALSE(stored_before) << "before-commit ran after the commit";
  EXPECT_TRUE(stored_after);
  EXPECT_TRUE(stored_async);
  EXPECT_FALSE(unit_on_pool_thread);
  EXPECT_NE(async_thread, std::this_thread::get_id());
  EXPECT_EQ(errors_.size(), 0u);
}

TEST_F(DispatcherTest, EventsReachTheStoreInTheDomainTransaction) {
  Dispatcher dispatcher(store_.get(), Options());
  {
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    ASSERT_TRUE(AddItem({1, "apple"}).ok());
    ASSERT_TRUE(AddItem({2, "pear"}).ok());
    ASSERT_TRUE((*unit)->Commit().ok());
    // After commit the unit's events are as stored.
    ASSERT_EQ((*unit)->events().size(), 2u);
    EXPECT_EQ((*unit)->events()[0].position, 1);
    EXPECT_EQ((*unit)->events()[1].position, 2);
  }
  EXPECT_EQ(CountItems(), 2);
  EXPECT_EQ(Head(), 2);
  auto page = store_->Read({});
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->events.size(), 2u);
  EXPECT_EQ(page->events[0].type, "item.added");
  EXPECT_EQ(page->events[0].stream, "item-1");
  EXPECT_EQ(page->events[1].payload, R"({"id":2,"name":"pear"})");

  // Rolled back (the scope ends without Commit): neither row nor event.
  {
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    ASSERT_TRUE(AddItem({3, "plum"}).ok());
  }
  EXPECT_EQ(CountItems(), 2);
  EXPECT_EQ(Head(), 2);

  // Explicit rollback.
  {
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    ASSERT_TRUE(AddItem({4, "fig"}).ok());
    ASSERT_TRUE((*unit)->Rollback().ok());
    EXPECT_TRUE((*unit)->Rollback().ok());  // idempotent
    EXPECT_EQ((*unit)->Commit().code(), Status::Code::kFailedPrecondition);
  }
  EXPECT_EQ(CountItems(), 2);
  EXPECT_EQ(Head(), 2);
}

TEST_F(DispatcherTest, JoinsTheCallersOwnConnection) {
  Dispatcher dispatcher(store_.get(), Options());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  int after = 0;
  dispatcher.Subscribe("item.*", Phase::kAfterCommit,
                       [&](const Event&) { ++after; });

  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
            SQLITE_OK);
  {
    auto unit = dispatcher.Join(db);
    EXPECT_EQ(SqliteHandle(unit->transaction()), db);
    ASSERT_TRUE(AddItem({7, "kiwi"}).ok());
    ASSERT_TRUE(unit->Commit().ok());
  }
  EXPECT_EQ(CountItems(), 1);
  EXPECT_EQ(Head(), 1);
  EXPECT_EQ(after, 1);

  // Ending a joined unit without Commit() rolls the caller's transaction
  // back too.
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
            SQLITE_OK);
  {
    auto unit = dispatcher.Join(db);
    ASSERT_TRUE(AddItem({8, "lime"}).ok());
  }
  EXPECT_NE(sqlite3_get_autocommit(db), 0);
  EXPECT_EQ(CountItems(), 1);
  EXPECT_EQ(Head(), 1);
  EXPECT_EQ(after, 1);
  sqlite3_close(db);
}

TEST_F(DispatcherTest, RollbackRunsNoAfterCommitHandlerAndStoresNothing) {
  Dispatcher dispatcher(store_.get(), Options());
  std::atomic<int> immediate{0}, after{0}, async{0};
  dispatcher.Subscribe<ItemAdded>(Phase::kImmediate,
                                  [&](const ItemAdded&) { ++immediate; });
  dispatcher.Subscribe<ItemAdded>(Phase::kAfterCommit,
                                  [&](const ItemAdded&) { ++after; });
  dispatcher.Subscribe<ItemAdded>(Phase::kAfterCommitAsync,
                                  [&](const ItemAdded&) { ++async; });
  for (int i = 0; i < 3; ++i) {
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    ASSERT_TRUE(AddItem({i + 1, "x"}).ok());
    if (i == 1) {
      ASSERT_TRUE((*unit)->Rollback().ok());
    }
    // i == 0, 2: the scope ends without Commit.
  }
  ASSERT_TRUE(dispatcher.WaitIdle(std::chrono::seconds(10)));
  EXPECT_EQ(immediate, 3);  // immediate handlers run at Raise regardless
  EXPECT_EQ(after, 0);
  EXPECT_EQ(async, 0);
  EXPECT_EQ(dispatcher.stats().completed, 0u);
  EXPECT_EQ(Head(), 0);
  EXPECT_EQ(CountItems(), 0);
}

TEST_F(DispatcherTest, ThrowingAfterCommitHandlersAreReportedCommitStands) {
  Dispatcher dispatcher(store_.get(), Options());
  std::atomic<int> later{0};
  dispatcher.Subscribe<ItemAdded>(
      Phase::kAfterCommit,
      [](const ItemAdded&) { throw std::runtime_error("sync boom"); },
      "sync-thrower");
  dispatcher.Subscribe<ItemAdded>(
      Phase::kAfterCommitAsync,
      [](const ItemAdded&) { throw std::runtime_error("async boom"); },
      "async-thrower");
  dispatcher.Subscribe(
      "item.added", Phase::kAfterCommit,
      [](const Event&) { return Status::Unavailable("mail server down"); },
      "status-returner");
  dispatcher.Subscribe<ItemAdded>(Phase::kAfterCommit,
                                  [&](const ItemAdded&) { ++later; });

  std::string id;
  {
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    ASSERT_TRUE(AddItem({1, "apple"}).ok());
    Status s = (*unit)->Commit();
    EXPECT_TRUE(s.ok()) << s.ToString();
    id = (*unit)->events()[0].id;
  }
  ASSERT_TRUE(dispatcher.WaitIdle(std::chrono::seconds(10)));
  EXPECT_EQ(CountItems(), 1);
  EXPECT_EQ(Head(), 1);
  EXPECT_EQ(later, 1);  // the other handlers still ran

  auto errs = errors_.Get();
  ASSERT_EQ(errs.size(), 3u);
  std::map<std::string, HandlerError> by_name;
  for (auto& e : errs) by_name[e.handler] = e;
  ASSERT_TRUE(by_name.count("sync-thrower"));
  EXPECT_EQ(by_name["sync-thrower"].phase, Phase::kAfterCommit);
  EXPECT_EQ(by_name["sync-thrower"].status.code(), Status::Code::kInternal);
  EXPECT_NE(by_name["sync-thrower"].status.message().find("sync boom"),
            std::string::npos);
  EXPECT_EQ(by_name["sync-thrower"].event_type, "item.added");
  EXPECT_EQ(by_name["sync-thrower"].event_id, id);
  ASSERT_TRUE(by_name.count("async-thrower"));
  EXPECT_EQ(by_name["async-thrower"].phase, Phase::kAfterCommitAsync);
  EXPECT_NE(by_name["async-thrower"].status.message().find("async boom"),
            std::string::npos);
  ASSERT_TRUE(by_name.count("status-returner"));
  EXPECT_EQ(by_name["status-returner"].status.code(),
            Status::Code::kUnavailable);
  EXPECT_EQ(dispatcher.stats().errors, 3u);
}

TEST_F(DispatcherTest, ThrowingBeforeCommitHandlerRollsBack) {
  Dispatcher dispatcher(store_.get(), Options());
  std::atomic<int> after{0};
  dispatcher.Subscribe<ItemAdded>(
      Phase::kBeforeCommit,
      [](const ItemAdded& e) {
        if (e.name == "bad") throw std::runtime_error("validation failed");
      },
      "validator");
  dispatcher.Subscribe<ItemAdded>(Phase::kAfterCommit,
                                  [&](const ItemAdded&) { ++after; });
  dispatcher.Subscribe<ItemAdded>(Phase::kAfterCommitAsync,
                                  [&](const ItemAdded&) { ++after; });
  {
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    ASSERT_TRUE(AddItem({1, "good"}).ok());
    ASSERT_TRUE(AddItem({2, "bad"}).ok());
    Status s = (*unit)->Commit();
    EXPECT_EQ(s.code(), Status::Code::kInternal);
    EXPECT_NE(s.message().find("validation failed"), std::string::npos);
    EXPECT_FALSE((*unit)->committed());
    EXPECT_EQ((*unit)->Commit().code(), Status::Code::kFailedPrecondition);
  }
  ASSERT_TRUE(dispatcher.WaitIdle(std::chrono::seconds(10)));
  EXPECT_EQ(CountItems(), 0);
  EXPECT_EQ(Head(), 0);
  EXPECT_EQ(after, 0);
  auto errs = errors_.Get();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].handler, "validator");
  EXPECT_EQ(errs[0].phase, Phase::kBeforeCommit);

  // The same with a handler that returns a Status instead of throwing.
  dispatcher.Subscribe<ItemAdded>(Phase::kBeforeCommit, [](const ItemAdded&) {
    return Status::Conflict("stock exhausted");
  });
  auto unit = dispatcher.Begin();
  ASSERT_TRUE(unit.ok());
  ASSERT_TRUE(AddItem({3, "good"}).ok());
  EXPECT_EQ((*unit)->Commit().code(), Status::Code::kConflict);
  unit->reset();
  EXPECT_EQ(CountItems(), 0);
  EXPECT_EQ(Head(), 0);
}

TEST_F(DispatcherTest, FailingImmediateHandlerFailsTheUnit) {
  Dispatcher dispatcher(store_.get(), Options());
  dispatcher.Subscribe<ItemAdded>(Phase::kImmediate, [](const ItemAdded&) {
    throw std::logic_error("not allowed");
  });
  auto unit = dispatcher.Begin();
  ASSERT_TRUE(unit.ok());
  Status raised = AddItem({1, "apple"});
  EXPECT_EQ(raised.code(), Status::Code::kInternal);
  EXPECT_NE(raised.message().find("not allowed"), std::string::npos);
  EXPECT_EQ((*unit)->Commit().code(), Status::Code::kInternal);
  unit->reset();
  EXPECT_EQ(CountItems(), 0);
  EXPECT_EQ(Head(), 0);
  EXPECT_EQ(errors_.size(), 1u);
}

TEST_F(DispatcherTest, ScopeClearsItsRegistrationsWhenItEnds) {
  Dispatcher dispatcher(store_.get(), Options());
  std::vector<std::string> first_scope_saw;
  int global_saw = 0;
  dispatcher.Subscribe<ItemAdded>(Phase::kAfterCommit,
                                  [&](const ItemAdded&) { ++global_saw; });
  {
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    EXPECT_EQ(UnitOfWork::Current(), unit->get());
    (*unit)->Subscribe<ItemAdded>(Phase::kAfterCommit, [&](const ItemAdded& e) {
      first_scope_saw.push_back(e.name);
    });
    ASSERT_TRUE(AddItem({1, "first"}).ok());
    ASSERT_TRUE((*unit)->Commit().ok());
  }
  EXPECT_EQ(UnitOfWork::Current(), nullptr);
  {
    // Same thread, next request: the first scope's handler is gone.
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    ASSERT_TRUE(AddItem({2, "second"}).ok());
    ASSERT_TRUE((*unit)->Commit().ok());
  }
  EXPECT_EQ(first_scope_saw, std::vector<std::string>{"first"});
  EXPECT_EQ(global_saw, 2);
  EXPECT_EQ(Head(), 2);
}

TEST_F(DispatcherTest, ScopeSubscriptionSeesOnlyItsOwnUnit) {
  Dispatcher dispatcher(store_.get(), Options());
  std::atomic<int> scoped{0};
  auto unit = dispatcher.Begin();
  ASSERT_TRUE(unit.ok());
  SubscriptionId id = (*unit)->Subscribe("*", Phase::kImmediate,
                                         [&](const Event&) { ++scoped; });
  ASSERT_TRUE(AddItem({1, "mine"}).ok());
  ASSERT_TRUE((*unit)->Commit().ok());
  unit->reset();
  // Another unit, on another thread, after the first ended.
  std::thread other([&] {
    auto u = dispatcher.Begin();
    ASSERT_TRUE(u.ok());
    ASSERT_TRUE(AddItem({2, "theirs"}).ok());
    ASSERT_TRUE((*u)->Commit().ok());
  });
  other.join();
  EXPECT_EQ(scoped, 1);
  EXPECT_TRUE(dispatcher.Unsubscribe(id).IsNotFound());
}

TEST_F(DispatcherTest, AsyncCallsQueuedByAScopeRunAfterItEnds) {
  DispatcherOptions o = Options();
  o.async_threads = 1;
  Dispatcher dispatcher(store_.get(), o);
  Gate gate;
  std::atomic<int> scoped{0};
  // Hold the only pool thread so the scope's call stays queued.
  dispatcher.Subscribe("block", Phase::kAfterCommitAsync,
                       [&](const Event&) { gate.Wait(); });
  {
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    (*unit)->Subscribe<ItemAdded>(Phase::kAfterCommitAsync,
                                  [&](const ItemAdded&) { ++scoped; });
    Event block;
    block.type = "block";
    block.stream = "b";
    block.payload = "{}";
    ASSERT_TRUE(Raise(block).ok());
    ASSERT_TRUE(AddItem({1, "x"}).ok());
    ASSERT_TRUE((*unit)->Commit().ok());
    ASSERT_TRUE(WaitFor([&] { return dispatcher.stats().queued == 1; }));
  }
  gate.Open();
  ASSERT_TRUE(dispatcher.WaitIdle(std::chrono::seconds(10)));
  EXPECT_EQ(scoped, 1);
}

TEST_F(DispatcherTest, RaiseOutsideAUnitOfWorkIsAnError) {
  Dispatcher dispatcher(store_.get(), Options());
  int ran = 0;
  dispatcher.Subscribe("*", Phase::kImmediate, [&](const Event&) { ++ran; });
  Status s = Raise(ItemAdded{1, "orphan"});
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("no unit of work"), std::string::npos);
  Event e;
  e.type = "item.added";
  e.stream = "item-1";
  e.payload = "{}";
  EXPECT_EQ(Raise(e).code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(ran, 0);
  EXPECT_EQ(Head(), 0);
}

TEST_F(DispatcherTest, RaiseAfterCommitIsAnError) {
  Dispatcher dispatcher(store_.get(), Options());
  Status from_after_commit;
  dispatcher.Subscribe<ItemAdded>(Phase::kAfterCommit, [&](const ItemAdded&) {
    from_after_commit = Raise(ItemAdded{9, "late"});
  });
  auto unit = dispatcher.Begin();
  ASSERT_TRUE(unit.ok());
  ASSERT_TRUE(AddItem({1, "a"}).ok());
  ASSERT_TRUE((*unit)->Commit().ok());
  EXPECT_EQ(from_after_commit.code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(Raise(ItemAdded{10, "later"}).code(),
            Status::Code::kFailedPrecondition);
  EXPECT_EQ((*unit)->Commit().code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(Head(), 1);
}

TEST_F(DispatcherTest, NestedUnitsHideAndRestoreTheOuterOne) {
  // Two stores, so the inner write transaction does not wait for the outer.
  auto other_store = OpenStore(dir_.file("other.db"));
  ASSERT_TRUE(other_store.ok());
  Dispatcher outer_dispatcher(store_.get(), Options());
  Dispatcher inner_dispatcher(other_store->get(), Options());
  auto outer = outer_dispatcher.Begin();
  ASSERT_TRUE(outer.ok());
  ASSERT_TRUE(Raise(Pinged{1}, {.stream = "outer"}).ok());
  {
    auto inner = inner_dispatcher.Begin();
    ASSERT_TRUE(inner.ok());
    EXPECT_EQ(UnitOfWork::Current(), inner->get());
    ASSERT_TRUE(Raise(Pinged{2}, {.stream = "inner"}).ok());
    ASSERT_TRUE((*inner)->Commit().ok());
  }
  EXPECT_EQ(UnitOfWork::Current(), outer->get());
  ASSERT_TRUE(Raise(Pinged{3}, {.stream = "outer"}).ok());
  ASSERT_TRUE((*outer)->Commit().ok());
  outer->reset();
  EXPECT_EQ(UnitOfWork::Current(), nullptr);

  auto a = store_->Read({});
  auto b = (*other_store)->Read({});
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->events.size(), 2u);
  ASSERT_EQ(b->events.size(), 1u);
  EXPECT_EQ(a->events[0].payload, R"({"n":1})");
  EXPECT_EQ(a->events[1].payload, R"({"n":3})");
  EXPECT_EQ(b->events[0].payload, R"({"n":2})");
}

TEST_F(DispatcherTest, TypedConversionRoundTrips) {
  Dispatcher dispatcher(store_.get(), Options());
  ItemAdded original{42, "quote \" and \\ and é"};
  std::vector<ItemAdded> typed_saw;
  dispatcher.Subscribe<ItemAdded>(
      Phase::kAfterCommit, [&](const ItemAdded& e) { typed_saw.push_back(e); });
  {
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    ASSERT_TRUE(
        Raise(original, {.metadata = R"({"correlation_id":"c-1"})"}).ok());
    // An untyped raise of the same type name reaches the typed handler
    // through FromJson.
    Event untyped;
    untyped.type = "item.added";
    untyped.stream = "item-43";
    untyped.payload = R"({"id":43,"name":"from json"})";
    ASSERT_TRUE(Raise(untyped).ok());
    ASSERT_TRUE((*unit)->Commit().ok());
  }
  ASSERT_EQ(typed_saw.size(), 2u);
  EXPECT_EQ(typed_saw[0], original);
  EXPECT_EQ(typed_saw[1], (ItemAdded{43, "from json"}));

  auto page = store_->Read({});
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->events.size(), 2u);
  const Event& stored = page->events[0];
  EXPECT_EQ(stored.type, "item.added");
  EXPECT_EQ(stored.stream, "item-42");
  EXPECT_EQ(stored.content_type, "application/json");
  EXPECT_EQ(stored.metadata, R"({"correlation_id":"c-1"})");
  EXPECT_TRUE(IsUuid(stored.id));
  auto back = EventTraits<ItemAdded>::FromJson(stored.payload);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, original);
}

TEST_F(DispatcherTest, UndecodablePayloadIsReportedToTheTypedHandler) {
  Dispatcher dispatcher(store_.get(), Options());
  int typed = 0;
  dispatcher.Subscribe<ItemAdded>(
      Phase::kAfterCommit, [&](const ItemAdded&) { ++typed; }, "typed");
  auto unit = dispatcher.Begin();
  ASSERT_TRUE(unit.ok());
  Event e;
  e.type = "item.added";
  e.stream = "item-1";
  e.payload = R"({"unexpected":true})";
  ASSERT_TRUE(Raise(e).ok());
  ASSERT_TRUE((*unit)->Commit().ok());
  EXPECT_EQ(typed, 0);
  auto errs = errors_.Get();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(errs[0].status.message().find("cannot decode"), std::string::npos);
}

TEST_F(DispatcherTest, BadEventsAreRefusedAtRaise) {
  Dispatcher dispatcher(store_.get(), Options());
  auto unit = dispatcher.Begin();
  ASSERT_TRUE(unit.ok());
  EXPECT_TRUE(Raise(Pinged{1}).IsInvalidArgument());  // no stream
  EXPECT_TRUE(
      Raise(ItemAdded{1, "x"}, {.id = "not-a-uuid"}).IsInvalidArgument());
  EXPECT_TRUE(
      Raise(ItemAdded{1, "x"}, {.metadata = "[1]"}).IsInvalidArgument());
  Event e;
  e.type = "t";
  e.stream = "s";
  e.payload = "not json";
  EXPECT_TRUE(Raise(e).IsInvalidArgument());
  EXPECT_TRUE((*unit)->events().empty());
  ASSERT_TRUE((*unit)->Commit().ok());  // nothing raised: nothing stored
  EXPECT_EQ(Head(), 0);
}

TEST_F(DispatcherTest, UntypedGlobSubscriptions) {
  Dispatcher dispatcher(store_.get(), Options());
  std::vector<std::string> orders, all, exact;
  dispatcher.Subscribe("order.*", Phase::kAfterCommit,
                       [&](const Event& e) { orders.push_back(e.type); });
  dispatcher.Subscribe("*", Phase::kAfterCommit,
                       [&](const Event& e) { all.push_back(e.type); });
  dispatcher.Subscribe("order.?laced", Phase::kAfterCommit,
                       [&](const Event& e) { exact.push_back(e.type); });
  auto unit = dispatcher.Begin();
  ASSERT_TRUE(unit.ok());
  for (const char* type :
       {"order.placed", "payment.refunded", "order.canceled"}) {
    Event e;
    e.type = type;
    e.stream = "s";
    e.payload = "{}";
    ASSERT_TRUE(Raise(e).ok());
  }
  ASSERT_TRUE((*unit)->Commit().ok());
  EXPECT_EQ(orders,
            (std::vector<std::string>{"order.placed", "order.canceled"}));
  EXPECT_EQ(all.size(), 3u);
  EXPECT_EQ(exact, std::vector<std::string>{"order.placed"});
}

TEST_F(DispatcherTest, BeforeCommitHandlersMayRaiseMoreEvents) {
  Dispatcher dispatcher(store_.get(), Options());
  dispatcher.Subscribe<ItemAdded>(Phase::kBeforeCommit, [](const ItemAdded& e) {
    return Raise(Pinged{static_cast<int>(e.id)}, {.stream = "audit"});
  });
  int pings_before = 0;
  dispatcher.Subscribe<Pinged>(Phase::kBeforeCommit,
                               [&](const Pinged&) { ++pings_before; });
  auto unit = dispatcher.Begin();
  ASSERT_TRUE(unit.ok());
  ASSERT_TRUE(AddItem({5, "e"}).ok());
  ASSERT_TRUE((*unit)->Commit().ok());
  EXPECT_EQ(pings_before, 1);
  auto page = store_->Read({});
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->events.size(), 2u);
  EXPECT_EQ(page->events[0].type, "item.added");
  EXPECT_EQ(page->events[1].type, "ping");
  EXPECT_EQ(page->events[1].stream, "audit");
}

TEST_F(DispatcherTest, QueueFullRejectDropsAndReports) {
  DispatcherOptions o = Options();
  o.async_threads = 1;
  o.async_queue_capacity = 2;
  o.queue_full = QueueFullPolicy::kReject;
  Dispatcher dispatcher(store_.get(), o);
  Gate gate;
  std::atomic<int> ran{0};
  dispatcher.Subscribe<ItemAdded>(
      Phase::kAfterCommitAsync,
      [&](const ItemAdded&) {
        gate.Wait();
        ++ran;
      },
      "slow");
  auto commit_one = [&](int64_t id) {
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    ASSERT_TRUE(AddItem({id, "x"}).ok());
    EXPECT_TRUE((*unit)->Commit().ok());  // queue full or not: committed
  };
  commit_one(1);
  ASSERT_TRUE(WaitFor([&] { return dispatcher.stats().running == 1; }));
  commit_one(2);
  commit_one(3);
  EXPECT_EQ(dispatcher.stats().queued, 2u);
  commit_one(4);  // the queue is full: dropped
  auto errs = errors_.Get();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].handler, "slow");
  EXPECT_EQ(errs[0].status.code(), Status::Code::kResourceExhausted);
  EXPECT_EQ(dispatcher.stats().rejected, 1u);
  gate.Open();
  ASSERT_TRUE(dispatcher.WaitIdle(std::chrono::seconds(10)));
  EXPECT_EQ(ran, 3);
  EXPECT_EQ(Head(), 4);  // every event was stored
  EXPECT_EQ(CountItems(), 4);
}

TEST_F(DispatcherTest, QueueFullBlockWaitsForRoom) {
  DispatcherOptions o = Options();
  o.async_threads = 1;
  o.async_queue_capacity = 1;
  o.queue_full = QueueFullPolicy::kBlock;
  Dispatcher dispatcher(store_.get(), o);
  Gate gate;
  std::atomic<int> ran{0};
  dispatcher.Subscribe<ItemAdded>(Phase::kAfterCommitAsync,
                                  [&](const ItemAdded&) {
                                    gate.Wait();
                                    ++ran;
                                  });
  auto commit_one = [&](int64_t id) {
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    ASSERT_TRUE(AddItem({id, "x"}).ok());
    EXPECT_TRUE((*unit)->Commit().ok());
  };
  commit_one(1);
  ASSERT_TRUE(WaitFor([&] { return dispatcher.stats().running == 1; }));
  commit_one(2);  // fills the queue
  std::atomic<bool> third_returned{false};
  std::thread third([&] {
    commit_one(3);
    third_returned = true;
  });
  ASSERT_TRUE(WaitFor([&] { return dispatcher.stats().blocked == 1; }));
  EXPECT_FALSE(third_returned);
  // The blocked committer holds no lock: its transaction has committed.
  EXPECT_EQ(Head(), 3);
  gate.Open();
  third.join();
  EXPECT_TRUE(third_returned);
  ASSERT_TRUE(dispatcher.WaitIdle(std::chrono::seconds(10)));
  EXPECT_EQ(ran, 3);
  EXPECT_EQ(dispatcher.stats().rejected, 0u);
  EXPECT_EQ(errors_.size(), 0u);
}

TEST_F(DispatcherTest, AsyncHandlersMayCommitTheirOwnUnitsOfWork) {
  DispatcherOptions o = Options();
  o.async_threads = 1;
  o.async_queue_capacity = 1;  // a worker meeting a full queue runs inline
  Dispatcher dispatcher(store_.get(), o);
  std::atomic<int> pings{0};
  dispatcher.Subscribe<ItemAdded>(
      Phase::kAfterCommitAsync, [&](const ItemAdded& e) -> Status {
        auto unit = dispatcher.Begin();  // not inside the producer's tx
        if (!unit.ok()) return unit.status();
        for (int i = 0; i < 3; ++i) {
          HERALD_RETURN_IF_ERROR(
              Raise(Pinged{static_cast<int>(e.id)}, {.stream = "p"}));
        }
        return (*unit)->Commit();
      });
  dispatcher.Subscribe<Pinged>(Phase::kAfterCommitAsync,
                               [&](const Pinged&) { ++pings; });
  for (int i = 1; i <= 3; ++i) {
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    ASSERT_TRUE(AddItem({i, "x"}).ok());
    ASSERT_TRUE((*unit)->Commit().ok());
  }
  ASSERT_TRUE(WaitFor([&] { return pings == 9; }));
  ASSERT_TRUE(dispatcher.WaitIdle(std::chrono::seconds(10)));
  EXPECT_EQ(Head(), 12);
  EXPECT_EQ(errors_.size(), 0u);
}

TEST_F(DispatcherTest, StopDrainsQueuedCallsIsIdempotentThenDrops) {
  DispatcherOptions o = Options();
  o.async_threads = 1;
  Dispatcher dispatcher(store_.get(), o);
  std::atomic<int> ran{0};
  dispatcher.Subscribe<ItemAdded>(Phase::kAfterCommitAsync,
                                  [&](const ItemAdded&) { ++ran; });
  for (int i = 1; i <= 5; ++i) {
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    ASSERT_TRUE(AddItem({i, "x"}).ok());
    ASSERT_TRUE((*unit)->Commit().ok());
  }
  dispatcher.Stop();
  EXPECT_EQ(ran, 5);  // queued calls ran before the threads were joined
  dispatcher.Stop();
  // After Stop: commits still work; async calls are dropped and reported.
  auto unit = dispatcher.Begin();
  ASSERT_TRUE(unit.ok());
  ASSERT_TRUE(AddItem({6, "x"}).ok());
  EXPECT_TRUE((*unit)->Commit().ok());
  EXPECT_EQ(ran, 5);
  auto errs = errors_.Get();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].status.code(), Status::Code::kUnavailable);
  EXPECT_EQ(Head(), 6);
}

TEST_F(DispatcherTest, UnsubscribeStopsFurtherCalls) {
  Dispatcher dispatcher(store_.get(), Options());
  int calls = 0;
  SubscriptionId id = dispatcher.Subscribe<ItemAdded>(
      Phase::kAfterCommit, [&](const ItemAdded&) { ++calls; });
  for (int i = 1; i <= 2; ++i) {
    auto unit = dispatcher.Begin();
    ASSERT_TRUE(unit.ok());
    ASSERT_TRUE(AddItem({i, "x"}).ok());
    ASSERT_TRUE((*unit)->Commit().ok());
    if (i == 1) {
      ASSERT_TRUE(dispatcher.Unsubscribe(id).ok());
    }
  }
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(dispatcher.Unsubscribe(id).IsNotFound());
}

TEST_F(DispatcherTest, SubscriptionsChangeWhileOtherThreadsDispatch) {
  Dispatcher dispatcher(store_.get(), Options());
  std::atomic<int> stable{0};
  dispatcher.Subscribe("*", Phase::kAfterCommitAsync,
                       [&](const Event&) { ++stable; });
  std::atomic<bool> done{false};
  std::thread churn([&] {
    while (!done) {
      SubscriptionId id =
          dispatcher.Subscribe("*", Phase::kAfterCommit, [](const Event&) {});
      EXPECT_TRUE(dispatcher.Unsubscribe(id).ok());
    }
  });
  constexpr int kThreads = 3, kUnits = 20;
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kUnits; ++i) {
        auto unit = dispatcher.Begin();
        ASSERT_TRUE(unit.ok()) << unit.status().ToString();
        ASSERT_TRUE(AddItem({t * 1000 + i, "x"}).ok());
        ASSERT_TRUE((*unit)->Commit().ok());
      }
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  churn.join();
  ASSERT_TRUE(dispatcher.WaitIdle(std::chrono::seconds(10)));
  EXPECT_EQ(stable, kThreads * kUnits);
  EXPECT_EQ(Head(), kThreads * kUnits);
}

}  // namespace
}  // namespace herald
