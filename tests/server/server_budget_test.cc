// ByteBudget: the shared allowance SSE streams render their chunks under.
#include <gtest/gtest.h>

#include <vector>

#include "herald/config.h"
#include "server/internal.h"

namespace herald::detail {
namespace {

TEST(ByteBudget, GrantsInOrderOnceTheBytesFit) {
  ByteBudget b(100);
  std::vector<int> got;
  b.Acquire(60, [&](bool ok) { got.push_back(ok ? 1 : -1); });
  ASSERT_EQ(got, std::vector<int>{1});  // fits: granted at once
  b.Acquire(60, [&](bool ok) { got.push_back(ok ? 2 : -2); });
  // Fits, but waits behind the one before it (FIFO: no starvation).
  b.Acquire(10, [&](bool ok) { got.push_back(ok ? 3 : -3); });
  EXPECT_EQ(got.size(), 1u);
  EXPECT_EQ(b.waiting(), 2u);
  EXPECT_EQ(b.used(), 60u);
  b.Release(60);
  EXPECT_EQ(got, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(b.used(), 70u);
  EXPECT_EQ(b.waiting(), 0u);
}

TEST(ByteBudget, AChargeMayGrowPastTheCapacityAndHoldsLaterGrants) {
  ByteBudget b(100);
  bool first = false, second = false;
  b.Acquire(64, [&](bool ok) { first = ok; });
  ASSERT_TRUE(first);
  b.Resize(64, 150);  // one event larger than a chunk
  EXPECT_EQ(b.used(), 150u);
  EXPECT_EQ(b.peak(), 150u);
  b.Acquire(1, [&](bool ok) { second = ok; });
  EXPECT_FALSE(second);
  b.Resize(150, 20);  // shrinking grants what now fits
  EXPECT_TRUE(second);
  EXPECT_EQ(b.used(), 21u);
}

TEST(ByteBudget, AskingMoreThanTheCapacityAsksForAllOfIt) {
  ByteBudget b(100);
  bool ok = false;
  b.Acquire(1 << 20, [&](bool g) { ok = g; });
  EXPECT_TRUE(ok);
  EXPECT_EQ(b.used(), 100u);
}

TEST(ByteBudget, StopFailsWaitersAndLaterAsks) {
  ByteBudget b(10);
  int waiter = 0, later = 0;
  b.Acquire(10, [](bool) {});
  b.Acquire(5, [&](bool ok) { waiter = ok ? 1 : -1; });
  b.Stop();
  EXPECT_EQ(waiter, -1);
  b.Acquire(1, [&](bool ok) { later = ok ? 1 : -1; });
  EXPECT_EQ(later, -1);
  b.Release(10);  // harmless after Stop
  EXPECT_EQ(b.used(), 0u);
}

TEST(ByteBudget, IsSetBySseBufferMbInTheServerTable) {
  auto c = ParseConfig("[server]\nsse_buffer_mb = 8\n", "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server.sse_buffer_mb, 8);
  EXPECT_EQ(ParseConfig("", "t.toml")->server.sse_buffer_mb, 64);
  auto bad = ParseConfig("[server]\nsse_buffer_mb = 0\n", "t.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("server.sse_buffer_mb"),
            std::string::npos)
      << bad.status().message();
}

}  // namespace
}  // namespace herald::detail
