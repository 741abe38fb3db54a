// herald::detail::Mutex, MutexLock and CondVar (src/util/thread_annotations.h)
// behave as the std:: types they wrap.
#include "util/thread_annotations.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

namespace herald::detail {
namespace {

class Counter {
 public:
  void Add(int n) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    total_ += n;
    cv_.SignalAll();
  }
  int WaitForAtLeast(int n) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (total_ < n) cv_.Wait(&mu_);
    return total_;
  }
  bool WaitUntilAtLeast(int n, std::chrono::steady_clock::time_point deadline)
      EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (total_ < n) {
      if (!cv_.WaitUntil(&mu_, deadline)) return total_ >= n;
    }
    return true;
  }
  Mutex& mu() { return mu_; }

 private:
  Mutex mu_;
  CondVar cv_;
  int total_ GUARDED_BY(mu_) = 0;
};

TEST(ThreadAnnotations, MutexLockExcludesOtherThreads) {
  Counter c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&c] {
      for (int i = 0; i < 10000; ++i) c.Add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.WaitForAtLeast(40000), 40000);
}

TEST(ThreadAnnotations, CondVarWakesAWaiter) {
  Counter c;
  std::thread adder([&c] { c.Add(5); });
  EXPECT_EQ(c.WaitForAtLeast(5), 5);
  adder.join();
}

TEST(ThreadAnnotations, CondVarWaitUntilTimesOut) {
  Counter c;
  EXPECT_FALSE(c.WaitUntilAtLeast(
      1, std::chrono::steady_clock::now() + std::chrono::milliseconds(20)));
}

TEST(ThreadAnnotations, TryLockFailsWhileHeld) {
  Counter c;
  MutexLock lock(&c.mu());
  bool got = true;
  std::thread other([&] {
    if (c.mu().TryLock()) {
      c.mu().Unlock();
    } else {
      got = false;
    }
  });
  other.join();
  EXPECT_FALSE(got);
}

}  // namespace
}  // namespace herald::detail
