// The order service example: a cancel updates the orders row and appends
// OrderCanceled in one transaction, the refund runs after commit, and a
// failed cancel leaves neither the update nor the event.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "herald/dispatcher.h"
#include "herald/sqlite.h"
#include "herald/store.h"
#include "orders.h"
#include "support/test_util.h"

namespace orders {
namespace {

using herald::Status;
using herald::testing::TempDir;

class OrderServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("orders.db");
    auto store = herald::OpenStore(path_);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    ASSERT_TRUE(CreateSchema(*store_).ok());
    herald::DispatcherOptions options;
    options.on_error = [this](const herald::HandlerError& e) {
      ++handler_errors_;
      ADD_FAILURE() << e.handler << ": " << e.status.ToString();
    };
    dispatcher_ = std::make_unique<herald::Dispatcher>(store_.get(), options);
    refunds_ = std::make_unique<Refunds>(dispatcher_.get());
    service_ = std::make_unique<OrderService>(store_.get(), dispatcher_.get());
  }

  void TearDown() override {
    dispatcher_->Stop();
    refunds_.reset();
  }

  std::vector<herald::Event> Events() {
    auto page = store_->Read({});
    EXPECT_TRUE(page.ok());
    return page.ok() ? page->events : std::vector<herald::Event>{};
  }

  std::vector<herald::Event> EventsOf(int64_t order_id) {
    auto events = store_->ReadStream(OrderStream(order_id), 1, 100);
    EXPECT_TRUE(events.ok());
    return events.ok() ? *events : std::vector<herald::Event>{};
  }

  int64_t Refunded(int64_t order_id) {
    auto n = Refunds::CountRefunds(*store_, order_id);
    EXPECT_TRUE(n.ok());
    return n.ok() ? *n : -1;
  }

  TempDir dir_;
  std::string path_;
  std::unique_ptr<herald::Store> store_;
  std::atomic<int> handler_errors_{0};
  std::unique_ptr<herald::Dispatcher> dispatcher_;
  std::unique_ptr<Refunds> refunds_;
  std::unique_ptr<OrderService> service_;
};

TEST_F(OrderServiceTest, CancelUpdatesTheRowAndAppendsTheEventTogether) {
  auto id = service_->PlaceOrder("alice", 2500);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*service_->OrderStatus(*id), "placed");

  ASSERT_TRUE(service_->CancelOrder(*id, "changed mind").ok());
  EXPECT_EQ(*service_->OrderStatus(*id), "canceled");
  ASSERT_TRUE(dispatcher_->WaitIdle(std::chrono::seconds(10)));

  auto events = EventsOf(*id);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type, "order.placed");
  EXPECT_EQ(events[1].type, "order.canceled");
  auto canceled =
      herald::EventTraits<OrderCanceled>::FromJson(events[1].payload);
  ASSERT_TRUE(canceled.ok());
  EXPECT_EQ(*canceled, (OrderCanceled{*id, "changed mind", 2500}));
  // The refund handler's own transaction: a refunds row and its event.
  EXPECT_EQ(events[2].type, "payment.refunded");
  EXPECT_NE(events[2].metadata.find(events[1].id), std::string::npos);
  EXPECT_EQ(Refunded(*id), 1);
  EXPECT_EQ(handler_errors_, 0);
}

TEST_F(OrderServiceTest, RefundRunsOnlyAfterTheCancelCommitted) {
  auto id = service_->PlaceOrder("bob", 1250);
  ASSERT_TRUE(id.ok());
  // What an after-commit handler sees from another connection, reading
  // without taking the write lock: the cancel has committed.
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &reader), SQLITE_OK);
  std::string status_seen;
  std::atomic<bool> ran{false};
  dispatcher_->Subscribe<OrderCanceled>(
      herald::Phase::kAfterCommitAsync, [&](const OrderCanceled& e) {
        std::string sql = "SELECT status FROM orders WHERE id = " +
                          std::to_string(e.order_id);
        sqlite3_exec(
            reader, sql.c_str(),
            [](void* out, int, char** values, char**) {
              *static_cast<std::string*>(out) = values[0] ? values[0] : "";
              return 0;
            },
            &status_seen, nullptr);
        ran = true;
      });
  ASSERT_TRUE(service_->CancelOrder(*id, "late").ok());
  ASSERT_TRUE(dispatcher_->WaitIdle(std::chrono::seconds(10)));
  ASSERT_TRUE(ran);
  EXPECT_EQ(status_seen, "canceled");
  EXPECT_EQ(Refunded(*id), 1);
  sqlite3_close(reader);
}

TEST_F(OrderServiceTest, CancellingTwiceLeavesNothingTheSecondTime) {
  auto id = service_->PlaceOrder("carol", 9900);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(service_->CancelOrder(*id, "first").ok());
  ASSERT_TRUE(dispatcher_->WaitIdle(std::chrono::seconds(10)));
  auto before = Events();

  Status again = service_->CancelOrder(*id, "second");
  EXPECT_EQ(again.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(again.message().find("already canceled"), std::string::npos);
  ASSERT_TRUE(dispatcher_->WaitIdle(std::chrono::seconds(10)));
  EXPECT_EQ(Events().size(), before.size());
  EXPECT_EQ(Refunded(*id), 1);
}

TEST_F(OrderServiceTest, CancellingAMissingOrderLeavesNothing) {
  Status s = service_->CancelOrder(424242, "nope");
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_TRUE(Events().empty());
}

TEST_F(OrderServiceTest, ForcedFailureLeavesNeitherTheUpdateNorTheEvent) {
  auto id = service_->PlaceOrder("dave", 700);
  ASSERT_TRUE(id.ok());
  std::atomic<int> after_commit{0};
  dispatcher_->Subscribe("order.canceled", herald::Phase::kAfterCommit,
                         [&](const herald::Event&) { ++after_commit; });

  Status s = service_->CancelOrder(*id, "forced", {.fail_before_commit = true});
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  ASSERT_TRUE(dispatcher_->WaitIdle(std::chrono::seconds(10)));

  EXPECT_EQ(*service_->OrderStatus(*id), "placed");
  auto events = EventsOf(*id);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, "order.placed");
  EXPECT_EQ(after_commit, 0);
  EXPECT_EQ(Refunded(*id), 0);

  // The order can still be canceled for real afterwards.
  ASSERT_TRUE(service_->CancelOrder(*id, "for real").ok());
  ASSERT_TRUE(dispatcher_->WaitIdle(std::chrono::seconds(10)));
  EXPECT_EQ(after_commit, 1);
  EXPECT_EQ(Refunded(*id), 1);
}

TEST_F(OrderServiceTest, BadOrdersAreRefused) {
  EXPECT_TRUE(service_->PlaceOrder("", 100).status().IsInvalidArgument());
  EXPECT_TRUE(service_->PlaceOrder("erin", 0).status().IsInvalidArgument());
  EXPECT_TRUE(Events().empty());
}

TEST_F(OrderServiceTest, ConcurrentCancelsRefundEachOrderOnce) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 8; ++i) {
    auto id = service_->PlaceOrder("c" + std::to_string(i), 100 + i);
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  // Two threads race to cancel every order: each cancel succeeds once.
  std::atomic<int> ok{0}, already{0};
  auto worker = [&] {
    for (int64_t id : ids) {
      Status s = service_->CancelOrder(id, "race");
      if (s.ok()) {
        ++ok;
      } else if (s.code() == Status::Code::kFailedPrecondition) {
        ++already;
      } else {
        ADD_FAILURE() << s.ToString();
      }
    }
  };
  std::thread a(worker), b(worker);
  a.join();
  b.join();
  ASSERT_TRUE(dispatcher_->WaitIdle(std::chrono::seconds(20)));
  EXPECT_EQ(ok, 8);
  EXPECT_EQ(already, 8);
  for (int64_t id : ids) {
    EXPECT_EQ(Refunded(id), 1);
    EXPECT_EQ(EventsOf(id).size(), 3u);  // placed, canceled, refunded
  }
}

TEST(OrderServiceProgram, PrintsEventsAppendedAndHandled) {
  TempDir dir;
  std::string out_path = dir.file("out.txt");
  herald::testing::Child::Options options;
  options.stdout_path = out_path;
  herald::testing::Child child({ORDER_SERVICE_BIN, dir.file("shop.db")},
                               options);
  ASSERT_EQ(child.Wait(), 0);
  std::ifstream in(out_path);
  std::stringstream text;
  text << in.rdbuf();
  std::string out = text.str();
  EXPECT_NE(out.find("appended #1 order.placed"), std::string::npos) << out;
  EXPECT_NE(out.find("order.canceled"), std::string::npos) << out;
  EXPECT_NE(out.find("refund handler (after commit"), std::string::npos) << out;
  EXPECT_NE(out.find("already canceled"), std::string::npos) << out;
  EXPECT_NE(out.find("forced failure"), std::string::npos) << out;
  EXPECT_NE(out.find("the store now holds 5 events"), std::string::npos) << out;
}

}  // namespace
}  // namespace orders
