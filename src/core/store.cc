// The non-virtual parts of Store: convenience calls and the append signal.
#include "herald/store.h"

#include <condition_variable>
#include <mutex>

namespace herald {

struct Store::Signal {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t epoch = 0;  // guarded by mu
};

Store::Store() : signal_(std::make_unique<Signal>()) {}
Store::~Store() = default;

Result<AppendResult> Store::Append(std::span<Event> events,
                                   const AppendOptions& options) {
  auto tx = Begin();
  if (!tx.ok()) return tx.status();
  auto r = Append(**tx, events, options);
  if (!r.ok()) return r;
  HERALD_RETURN_IF_ERROR((*tx)->Commit());
  return r;
}

Result<Page> Store::Scan(const ReadRequest& request,
                         const EventVisitor& visit) {
  auto page = Read(request);
  if (!page.ok()) return page.status();
  for (const Event& e : page->events) visit(e);
  page->events.clear();
  return page;
}

Status Store::SaveCheckpoint(const std::string& name, int64_t next_offset) {
  auto tx = Begin();
  if (!tx.ok()) return tx.status();
  HERALD_RETURN_IF_ERROR(SaveCheckpoint(**tx, name, next_offset));
  return (*tx)->Commit();
}

uint64_t Store::append_epoch() const {
  std::lock_guard<std::mutex> lock(signal_->mu);
  return signal_->epoch;
}

uint64_t Store::WaitForAppend(uint64_t seen,
                              std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(signal_->mu);
  signal_->cv.wait_for(lock, timeout, [&] { return signal_->epoch != seen; });
  return signal_->epoch;
}

void Store::NotifyAppend() {
  {
    std::lock_guard<std::mutex> lock(signal_->mu);
    ++signal_->epoch;
  }
  signal_->cv.notify_all();
}

}  // namespace herald
