// Ordering under concurrency on PostgreSQL: transactions commit out of
// order, yet readers see every committed event exactly once at dense,
// increasing positions, per-stream order is append order, and nothing
// rolled back is ever seen.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "herald/postgres.h"
#include "herald/store.h"
#include "postgres/pg_test_util.h"
#include "support/test_util.h"

namespace herald {
namespace {

using testing::FreshStoreUrl;
using testing::MakeEvent;
using testing::PgConnect;
using testing::PgExec;
using testing::TempDir;
using testing::WaitFor;

// Follows the log from the start like a pull consumer, checking as it goes
// that pages continue exactly where the previous one ended.
class Follower {
 public:
  explicit Follower(Store* store) : store_(store) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Follower() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
  }
  std::vector<Event> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  std::vector<std::string> errors() {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }

 private:
  void Run() {
    int64_t offset = 1;
    uint64_t epoch = store_->append_epoch();
    while (!stop_) {
      ReadRequest r;
      r.offset = offset;
      r.limit = 500;
      auto page = store_->Read(r);
      if (!page.ok()) {
        Error("read: " + page.status().ToString());
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      if (page->events.empty()) {
        epoch = store_->WaitForAppend(epoch, std::chrono::milliseconds(50));
        continue;
      }
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& e : page->events) {
        if (e.position != offset) {
          errors_.push_back("expected position " + std::to_string(offset) +
                            ", got " + std::to_string(e.position));
        }
        offset = e.position + 1;
        events_.push_back(e);
      }
    }
  }
  void Error(std::string s) {
    std::lock_guard<std::mutex> lock(mu_);
    errors_.push_back(std::move(s));
  }

  Store* store_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Event> events_;        // guarded by mu_
  std::vector<std::string> errors_;  // guarded by mu_
  std::thread thread_;
};

struct Appended {
  std::string id;
  std::string stream;
  int64_t stream_version;
};

// 8 writer connections, transactions of 1-10 events over 12 shared streams,
// 20% rolled back, some held open 2-5 s before they end, half on the
// application's own connection (Join) and half on herald's (Begin), while
// two followers read: one on the writers' store and one on a second store
// (another sequencer competing for the lease).
TEST(PostgresOrder, EightWritersEveryCommittedEventOnceDenseInOrder) {
  HERALD_REQUIRE_PG();
  TempDir dir;
  std::string url = FreshStoreUrl("postgresql", dir);
  auto a = OpenStore(url);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto b = OpenStore(url);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  Store* store = a->get();
  {
    auto c = PgConnect(url);
    ASSERT_EQ(PgExec(c.get(),
                     "CREATE TABLE accounts (id int PRIMARY KEY, n int);"
                     "INSERT INTO accounts SELECT g, 0 FROM "
                     "generate_series(0, 7) g"),
              "");
  }

  Follower near(store);
  Follower far(b->get());

  std::mutex mu;
  std::vector<Appended> committed;    // guarded by mu
  std::set<std::string> rolled_back;  // guarded by mu
  std::atomic<int> failures{0};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(6);
  std::vector<std::thread> writers;
  for (int w = 0; w < 8; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937 rng(1000 + w);
      auto app = PgConnect(url);
      bool join = w % 2 == 0;
      int txs = 0;
      while (std::chrono::steady_clock::now() < deadline) {
        int n = 1 + static_cast<int>(rng() % 10);
        bool rollback = rng() % 5 == 0;
        bool hold = rng() % 25 == 0;
        std::vector<Event> events;
        for (int i = 0; i < n; ++i) {
          events.push_back(MakeEvent("s" + std::to_string(rng() % 12),
                                     "w" + std::to_string(w),
                                     "{\"tx\":" + std::to_string(txs) + "}"));
        }
        std::unique_ptr<Transaction> tx;
        if (join) {
          PgExec(app.get(), "BEGIN");
          tx = store->Join(app.get());
        } else {
          auto t = store->Begin();
          if (!t.ok()) {
            ++failures;
            continue;
          }
          tx = std::move(*t);
        }
        PgExec(PostgresHandle(*tx),
               "UPDATE accounts SET n = n + 1 WHERE id = " + std::to_string(w));
        auto r = store->Append(*tx, std::span<Event>(events));
        if (!r.ok()) {
          ADD_FAILURE() << r.status().ToString();
          ++failures;
          (void)tx->Rollback();
          continue;
        }
        if (hold) {
          std::this_thread::sleep_for(
              std::chrono::milliseconds(2000 + rng() % 3000));
        }
        if (rollback) {
          EXPECT_TRUE(tx->Rollback().ok());
          std::lock_guard<std::mutex> lock(mu);
          for (auto& e : events) rolled_back.insert(e.id);
        } else {
          Status s;
          if (join && txs % 2 == 0) {
            // The application commits on its own connection.
            tx.reset();
            std::string out = PgExec(app.get(), "COMMIT");
            if (!out.empty()) s = Status::Internal(out);
          } else {
            s = tx->Commit();
          }
          EXPECT_TRUE(s.ok()) << s.ToString();
          std::lock_guard<std::mutex> lock(mu);
          if (s.ok()) {
            for (auto& e : events) {
              committed.push_back({e.id, e.stream, e.stream_version});
            }
          }
        }
        ++txs;
      }
    });
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(failures.load(), 0);

  size_t want;
  {
    std::lock_guard<std::mutex> lock(mu);
    want = committed.size();
  }
  ASSERT_GT(want, 100u);
  ASSERT_TRUE(
      WaitFor([&] { return near.count() >= want; }, std::chrono::seconds(20)))
      << near.count() << " of " << want;
  ASSERT_TRUE(
      WaitFor([&] { return far.count() >= want; }, std::chrono::seconds(20)))
      << far.count() << " of " << want;
  near.Stop();
  far.Stop();

  std::map<std::string, Appended> by_id;
  for (auto& c : committed) by_id[c.id] = c;
  for (Follower* f : {&near, &far}) {
    EXPECT_TRUE(f->errors().empty()) << f->errors().front();
    auto seen = f->events();
    ASSERT_EQ(seen.size(), want) << "every committed event exactly once";
    std::set<std::string> ids;
    std::map<std::string, int64_t> stream_at;
    for (size_t i = 0; i < seen.size(); ++i) {
      const Event& e = seen[i];
      EXPECT_EQ(e.position, static_cast<int64_t>(i + 1));
      EXPECT_TRUE(ids.insert(e.id).second) << "seen twice: " << e.id;
      EXPECT_EQ(rolled_back.count(e.id), 0u) << "rolled back: " << e.id;
      auto it = by_id.find(e.id);
      ASSERT_NE(it, by_id.end()) << "not committed: " << e.id;
      EXPECT_EQ(e.stream_version, it->second.stream_version);
      // Per stream, versions come 1, 2, 3... in position order: append
      // order (versions are given in append order under the stream lock).
      EXPECT_EQ(e.stream_version, ++stream_at[e.stream])
          << "stream " << e.stream << " at position " << e.position;
    }
  }
  EXPECT_GT(rolled_back.size(), 0u);
}

// Per-stream order across transaction ids: A takes its id, then O takes a
// newer one and stays open, then B takes a newer one still, appends event 1
// to S and commits; then A appends event 2 to S and commits. Event 1 must
// get the smaller position, before and after O ends.
TEST(PostgresOrder, PerStreamOrderAcrossTransactionIds) {
  HERALD_REQUIRE_PG();
  TempDir dir;
  std::string url = FreshStoreUrl("postgresql", dir);
  auto opened = OpenStore(url);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Store* store = opened->get();
  auto ca = PgConnect(url), co = PgConnect(url), cb = PgConnect(url);

  auto xid = [](PGconn* c) {
    return std::stoll(PgExec(c, "SELECT pg_current_xact_id()::text"));
  };
  ASSERT_EQ(PgExec(ca.get(), "BEGIN"), "");
  int64_t xa = xid(ca.get());
  ASSERT_EQ(PgExec(co.get(), "BEGIN"), "");
  int64_t xo = xid(co.get());
  ASSERT_EQ(PgExec(cb.get(), "BEGIN"), "");
  int64_t xb = xid(cb.get());
  ASSERT_LT(xa, xo);
  ASSERT_LT(xo, xb);

  Event e1 = MakeEvent("S", "first");
  {
    auto tx = store->Join(cb.get());
    ASSERT_TRUE(store->Append(*tx, std::span<Event>(&e1, 1)).ok());
    ASSERT_TRUE(tx->Commit().ok());
  }
  Event e2 = MakeEvent("S", "second");
  {
    auto tx = store->Join(ca.get());
    ASSERT_TRUE(store->Append(*tx, std::span<Event>(&e2, 1)).ok());
    ASSERT_TRUE(tx->Commit().ok());
  }
  EXPECT_EQ(e1.stream_version, 1);
  EXPECT_EQ(e2.stream_version, 2);

  auto positions = [&] {
    std::map<std::string, int64_t> out;
    ReadRequest r;
    r.limit = 100;
    auto page = store->Read(r);
    if (page.ok()) {
      for (auto& e : page->events) out[e.id] = e.position;
    }
    return out;
  };
  std::map<std::string, int64_t> before;
  ASSERT_TRUE(WaitFor([&] {
    before = positions();
    return before.size() == 2;
  })) << "both are delivered while O is still open";
  EXPECT_LT(before[e1.id], before[e2.id]);

  ASSERT_EQ(PgExec(co.get(), "COMMIT"), "");
  auto after = positions();
  EXPECT_EQ(after, before) << "positions never change";
  auto stream = store->ReadStream("S", 1, 10);
  ASSERT_TRUE(stream.ok());
  ASSERT_EQ(stream->size(), 2u);
  EXPECT_EQ((*stream)[0].id, e1.id);
  EXPECT_EQ((*stream)[1].id, e2.id);
}

}  // namespace
}  // namespace herald
