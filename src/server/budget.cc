// ByteBudget (see internal.h).
#include <algorithm>

#include "server/internal.h"

namespace herald::detail {

void ByteBudget::Acquire(size_t bytes, std::function<void(bool)> grant) {
  bytes = std::min(bytes, capacity_);
  bool granted = false;
  {
    MutexLock lock(&mu_);
    if (!stopped_) {
      if (!waiters_.empty() || used_ + bytes > capacity_) {
        waiters_.emplace_back(bytes, std::move(grant));
        return;
      }
      used_ += bytes;
      peak_ = std::max(peak_, used_);
      granted = true;
    }
  }
  grant(granted);
}

std::vector<std::function<void(bool)>> ByteBudget::TakeGrantable() {
  std::vector<std::function<void(bool)>> ready;
  while (!waiters_.empty() && used_ + waiters_.front().first <= capacity_) {
    used_ += waiters_.front().first;
    ready.push_back(std::move(waiters_.front().second));
    waiters_.pop_front();
  }
  peak_ = std::max(peak_, used_);
  return ready;
}

void ByteBudget::Resize(size_t from, size_t to) {
  if (from == to) return;
  std::vector<std::function<void(bool)>> ready;
  {
    MutexLock lock(&mu_);
    used_ = used_ - std::min(used_, from) + to;
    peak_ = std::max(peak_, used_);
    if (to < from && !stopped_) ready = TakeGrantable();
  }
  for (auto& g : ready) g(true);
}

void ByteBudget::Stop() {
  std::deque<std::pair<size_t, std::function<void(bool)>>> left;
  {
    MutexLock lock(&mu_);
    stopped_ = true;
    left.swap(waiters_);
  }
  for (auto& [bytes, g] : left) g(false);
}

size_t ByteBudget::used() const {
  MutexLock lock(&mu_);
  return used_;
}

size_t ByteBudget::peak() const {
  MutexLock lock(&mu_);
  return peak_;
}

size_t ByteBudget::waiting() const {
  MutexLock lock(&mu_);
  return waiters_.size();
}

}  // namespace herald::detail
