// The non-virtual parts of the store interfaces: convenience calls, the
// transaction ownership check and the in-process append signal.
#include "herald/store.h"

#include "util/thread_annotations.h"

namespace herald {

Status Database::CheckOwn(const Transaction& tx) const {
  if (tx.database() == this) return Status::OK();
  return Status::InvalidArgument(
      "the transaction belongs to another store (" +
      std::string(tx.database() ? tx.database()->backend() : "unknown") +
      "); pass a transaction made by this store's Begin or Join");
}

struct EventLog::Signal {
  detail::Mutex mu;
  detail::CondVar cv;
  uint64_t epoch GUARDED_BY(mu) = 0;
};

EventLog::EventLog() : signal_(std::make_unique<Signal>()) {}
EventLog::~EventLog() = default;

Store::Store() = default;
Store::~Store() = default;

Result<AppendResult> EventLog::Append(std::span<Event> events,
                                      const AppendOptions& options) {
  auto tx = Begin();
  if (!tx.ok()) return tx.status();
  auto r = Append(**tx, events, options);
  if (!r.ok()) return r;
  HERALD_RETURN_IF_ERROR((*tx)->Commit());
  return r;
}

Result<Page> EventLog::Scan(const ReadRequest& request,
                            const EventVisitor& visit) {
  auto page = Read(request);
  if (!page.ok()) return page.status();
  for (const Event& e : page->events) visit(e);
  page->events.clear();
  return page;
}

Result<EventLog::Holdup> EventLog::GetHoldup() {
  auto d = DescribeHoldup();
  if (!d.ok()) return d.status();
  Holdup h;
  h.held = !d->empty();
  h.description = std::move(*d);
  return h;
}

Status RelayState::SaveCheckpoint(const std::string& name,
                                  int64_t next_offset) {
  auto tx = Begin();
  if (!tx.ok()) return tx.status();
  HERALD_RETURN_IF_ERROR(SaveCheckpoint(**tx, name, next_offset));
  return (*tx)->Commit();
}

Result<std::vector<std::pair<std::string, int64_t>>>
RelayState::ListCheckpoints(const std::string& prefix) {
  (void)prefix;
  return Status::FailedPrecondition("this relay state cannot list checkpoints");
}

Status RelayState::DeleteCheckpoints(Transaction& tx,
                                     const std::string& prefix) {
  (void)tx;
  (void)prefix;
  return Status::FailedPrecondition(
      "this relay state cannot delete checkpoints");
}

uint64_t EventLog::append_epoch() const {
  detail::MutexLock lock(&signal_->mu);
  return signal_->epoch;
}

uint64_t EventLog::WaitForAppend(uint64_t seen,
                                 std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  detail::MutexLock lock(&signal_->mu);
  while (signal_->epoch == seen) {
    if (!signal_->cv.WaitUntil(&signal_->mu, deadline)) break;
  }
  return signal_->epoch;
}

void EventLog::NotifyAppend() {
  {
    detail::MutexLock lock(&signal_->mu);
    ++signal_->epoch;
  }
  signal_->cv.SignalAll();
}

}  // namespace herald
