// The in-process dispatcher and unit of work (see herald/dispatcher.h).
//
// Subscriptions of a Dispatcher live in a copy-on-write list: dispatching
// takes a snapshot (a shared_ptr copy) under subs_mu_ and runs handlers
// without any lock, so handlers may subscribe, unsubscribe and raise.
// Each subscription carries an `active` flag checked before every call, so
// Unsubscribe also stops calls already queued on the pool.
//
// The async pool: one deque of jobs guarded by pool_mu, threads started on
// first use, drained and joined by Stop(). Lock order: stop_mu before
// pool_mu (ACQUIRED_AFTER); subs_mu is never held with another lock.
// on_error is never called with a lock held. The locks are
// detail::Mutex, checked by clang's -Wthread-safety.
#include "herald/dispatcher.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <span>
#include <thread>

#include "util/thread_annotations.h"
#include "util/thread_name.h"

namespace herald {

namespace detail {

struct Subscription {
  SubscriptionId id = 0;
  Registration reg;
  std::atomic<bool> active{true};
};

}  // namespace detail

namespace {

using Sub = detail::Subscription;
using SubList = std::vector<std::shared_ptr<Sub>>;

std::atomic<uint64_t> next_subscription_id{1};

thread_local UnitOfWork* current_unit = nullptr;

// Glob match: '*' any run of characters, '?' exactly one.
bool GlobMatch(std::string_view pattern, std::string_view text) {
  size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool Matches(const Sub& sub, Phase phase, const std::string& type) {
  if (sub.reg.phase != phase) return false;
  return sub.reg.glob ? GlobMatch(sub.reg.pattern, type)
                      : sub.reg.pattern == type;
}

std::shared_ptr<Sub> NewSub(detail::Registration reg) {
  auto sub = std::make_shared<Sub>();
  sub->id = next_subscription_id.fetch_add(1, std::memory_order_relaxed);
  sub->reg = std::move(reg);
  return sub;
}

// An event raised in a unit of work, shared with the async jobs that
// outlive the unit.
struct Raised {
  Event event;
  std::shared_ptr<const void> value;
  const std::type_info* type = nullptr;
};

}  // namespace

std::string_view PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kImmediate:
      return "immediate";
    case Phase::kBeforeCommit:
      return "before_commit";
    case Phase::kAfterCommit:
      return "after_commit";
    case Phase::kAfterCommitAsync:
      return "after_commit_async";
  }
  return "unknown";
}

namespace detail {

Status DecodeFailed(std::string_view type, const Status& status) {
  return Status::InvalidArgument("cannot decode the payload of " +
                                 std::string(type) + ": " + status.ToString());
}

}  // namespace detail

// ---- Dispatcher::Impl -------------------------------------------------------

struct Dispatcher::Impl {
  struct Job {
    std::shared_ptr<const Raised> raised;
    std::shared_ptr<Sub> sub;
  };

  Impl(Store* s, DispatcherOptions o) : store(s), options(std::move(o)) {
    options.async_threads = std::max(options.async_threads, 1);
    options.async_queue_capacity =
        std::max<size_t>(options.async_queue_capacity, 1);
  }

  Store* const store;
  DispatcherOptions options;
  std::atomic<uint64_t> errors{0};

  detail::Mutex subs_mu;
  std::shared_ptr<const SubList> subs GUARDED_BY(subs_mu) =
      std::make_shared<SubList>();
  // Live subscriptions per phase, so phases nobody listens to cost nothing.
  std::atomic<int> per_phase[4] = {};

  bool Listened(Phase phase) const {
    return per_phase[static_cast<int>(phase)].load(std::memory_order_relaxed) >
           0;
  }

  detail::Mutex stop_mu;  // serialises Stop(); taken before pool_mu
  detail::Mutex pool_mu ACQUIRED_AFTER(stop_mu);
  detail::CondVar work_cv;  // a job was queued, or stopping
  detail::CondVar room_cv;  // a job left the queue, or stopping
  detail::CondVar idle_cv;  // queue empty and nothing running
  std::deque<Job> queue GUARDED_BY(pool_mu);
  std::vector<std::thread> threads GUARDED_BY(pool_mu);
  bool stopping GUARDED_BY(pool_mu) = false;
  uint64_t running GUARDED_BY(pool_mu) = 0;
  uint64_t completed GUARDED_BY(pool_mu) = 0;
  uint64_t rejected GUARDED_BY(pool_mu) = 0;
  uint64_t blocked GUARDED_BY(pool_mu) = 0;

  static thread_local const Impl* worker_of;  // set on pool threads

  std::shared_ptr<const SubList> Snapshot() EXCLUDES(subs_mu) {
    detail::MutexLock lock(&subs_mu);
    return subs;
  }

  void Report(const Sub& sub, Phase phase, const Event& event, Status status) {
    errors.fetch_add(1, std::memory_order_relaxed);
    HandlerError err;
    err.handler = sub.reg.name;
    err.phase = phase;
    err.event_type = event.type;
    err.event_id = event.id;
    err.status = std::move(status);
    try {
      if (options.on_error) {
        options.on_error(err);
      } else {
        std::fprintf(stderr,
                     "herald: handler '%s' (%s) failed on %s event %s: %s\n",
                     err.handler.c_str(), std::string(PhaseName(phase)).c_str(),
                     err.event_type.c_str(), err.event_id.c_str(),
                     err.status.ToString().c_str());
      }
    } catch (...) {
      // The error callback's own failure has nowhere to go.
    }
  }

  // Calls one handler; exceptions become Internal. Skips inactive ones.
  static Status Invoke(const Sub& sub, const Event& event, const void* value,
                       const std::type_info* type) {
    if (!sub.active.load(std::memory_order_acquire)) return Status::OK();
    detail::Delivery delivery{event, value, type};
    try {
      return sub.reg.handler(delivery);
    } catch (const std::exception& e) {
      return Status::Internal(std::string("handler threw: ") + e.what());
    } catch (...) {
      return Status::Internal("handler threw a non-standard exception");
    }
  }

  // Runs the synchronous handlers of `phase` (dispatcher-wide ones first,
  // then the unit's) on `event`. Reports every failure; returns the first.
  Status RunSync(Phase phase, const Event& event, const void* value,
                 const std::type_info* type, const SubList& unit_subs) {
    Status first;
    auto run = [&](const SubList& list) {
      for (const auto& sub : list) {
        if (!Matches(*sub, phase, event.type)) continue;
        Status s = Invoke(*sub, event, value, type);
        if (!s.ok()) {
          Report(*sub, phase, event, s);
          if (first.ok()) first = std::move(s);
        }
      }
    };
    run(*Snapshot());
    run(unit_subs);
    return first;
  }

  void Enqueue(Job job) EXCLUDES(pool_mu) {
    Status dropped;
    bool run_here = false;
    {
      detail::MutexLock lock(&pool_mu);
      if (!stopping && queue.size() >= options.async_queue_capacity) {
        if (options.queue_full == QueueFullPolicy::kReject) {
          dropped = Status::ResourceExhausted(
              "async queue full (" +
              std::to_string(options.async_queue_capacity) +
              " jobs): handler call dropped");
        } else if (worker_of == this) {
          run_here = true;
        } else {
          ++blocked;
          while (!stopping && queue.size() >= options.async_queue_capacity) {
            room_cv.Wait(&pool_mu);
          }
          --blocked;
        }
      }
      if (dropped.ok() && !run_here && stopping) {
        dropped = Status::Unavailable(
            "dispatcher stopped: async handler call dropped");
      }
      if (!dropped.ok()) {
        ++rejected;
      } else if (!run_here) {
        if (threads.empty()) {
          for (int i = 0; i < options.async_threads; ++i) {
            threads.emplace_back([this] { WorkerLoop(); });
          }
        }
        queue.push_back(std::move(job));
        work_cv.Signal();
        return;
      }
    }
    if (run_here) {
      RunJob(job);
      return;
    }
    Report(*job.sub, Phase::kAfterCommitAsync, job.raised->event,
           std::move(dropped));
  }

  void RunJob(const Job& job) {
    const Raised& r = *job.raised;
    Status s = Invoke(*job.sub, r.event, r.value.get(), r.type);
    if (!s.ok()) Report(*job.sub, Phase::kAfterCommitAsync, r.event, s);
  }

  void WorkerLoop() EXCLUDES(pool_mu) {
    detail::NameThisThread("herald-dispatch");
    worker_of = this;
    detail::MutexLock lock(&pool_mu);
    while (true) {
      while (!stopping && queue.empty()) work_cv.Wait(&pool_mu);
      if (queue.empty()) break;  // stopping and drained
      Job job = std::move(queue.front());
      queue.pop_front();
      ++running;
      room_cv.Signal();
      pool_mu.Unlock();
      RunJob(job);
      job = Job();  // drop references outside the lock
      pool_mu.Lock();
      --running;
      ++completed;
      if (queue.empty() && running == 0) idle_cv.SignalAll();
    }
  }
};

thread_local const Dispatcher::Impl* Dispatcher::Impl::worker_of = nullptr;

// ---- Dispatcher -------------------------------------------------------------

Dispatcher::Dispatcher(Store* store, DispatcherOptions options)
    : impl_(std::make_unique<Impl>(store, std::move(options))) {}

Dispatcher::~Dispatcher() { Stop(); }

SubscriptionId Dispatcher::Add(detail::Registration registration) {
  auto sub = NewSub(std::move(registration));
  SubscriptionId id = sub->id;
  detail::MutexLock lock(&impl_->subs_mu);
  impl_->per_phase[static_cast<int>(sub->reg.phase)]++;
  auto next = std::make_shared<SubList>(*impl_->subs);
  next->push_back(std::move(sub));
  impl_->subs = std::move(next);
  return id;
}

Status Dispatcher::Unsubscribe(SubscriptionId id) {
  detail::MutexLock lock(&impl_->subs_mu);
  const SubList& list = *impl_->subs;
  auto it = std::find_if(list.begin(), list.end(),
                         [&](const auto& s) { return s->id == id; });
  if (it == list.end()) {
    return Status::NotFound("no subscription " + std::to_string(id) +
                            " in this dispatcher");
  }
  (*it)->active.store(false, std::memory_order_release);
  impl_->per_phase[static_cast<int>((*it)->reg.phase)]--;
  auto next = std::make_shared<SubList>(list);
  next->erase(next->begin() + (it - list.begin()));
  impl_->subs = std::move(next);
  return Status::OK();
}

Result<std::unique_ptr<UnitOfWork>> Dispatcher::Begin() {
  auto tx = impl_->store->Begin();
  if (!tx.ok()) return tx.status();
  return std::unique_ptr<UnitOfWork>(
      new UnitOfWork(impl_.get(), std::move(*tx)));
}

std::unique_ptr<UnitOfWork> Dispatcher::Join(void* native_connection) {
  return std::unique_ptr<UnitOfWork>(
      new UnitOfWork(impl_.get(), impl_->store->Join(native_connection)));
}

bool Dispatcher::WaitIdle(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  detail::MutexLock lock(&impl_->pool_mu);
  while (!impl_->queue.empty() || impl_->running != 0) {
    if (!impl_->idle_cv.WaitUntil(&impl_->pool_mu, deadline)) {
      return impl_->queue.empty() && impl_->running == 0;
    }
  }
  return true;
}

void Dispatcher::Stop() noexcept {
  detail::MutexLock stop_lock(&impl_->stop_mu);
  std::vector<std::thread> threads;
  {
    detail::MutexLock lock(&impl_->pool_mu);
    impl_->stopping = true;
    threads.swap(impl_->threads);
  }
  impl_->work_cv.SignalAll();
  impl_->room_cv.SignalAll();
  for (auto& t : threads) t.join();
  // No thread is left to run what a blocked committer may have queued.
  std::deque<Impl::Job> left;
  {
    detail::MutexLock lock(&impl_->pool_mu);
    left.swap(impl_->queue);
    impl_->rejected += left.size();
  }
  for (auto& job : left) {
    impl_->Report(
        *job.sub, Phase::kAfterCommitAsync, job.raised->event,
        Status::Unavailable("dispatcher stopped: async handler call dropped"));
  }
  impl_->idle_cv.SignalAll();
}

DispatcherStats Dispatcher::stats() const {
  DispatcherStats s;
  detail::MutexLock lock(&impl_->pool_mu);
  s.queued = impl_->queue.size();
  s.running = impl_->running;
  s.completed = impl_->completed;
  s.rejected = impl_->rejected;
  s.blocked = impl_->blocked;
  s.errors = impl_->errors.load(std::memory_order_relaxed);
  return s;
}

// ---- UnitOfWork -------------------------------------------------------------

UnitOfWork::UnitOfWork(Dispatcher::Impl* dispatcher,
                       std::unique_ptr<Transaction> tx)
    : dispatcher_(dispatcher), tx_(std::move(tx)), previous_(current_unit) {
  current_unit = this;
}

UnitOfWork::~UnitOfWork() {
  if (state_ == State::kOpen || state_ == State::kCommitting) {
    (void)tx_->Rollback();
    state_ = State::kRolledBack;
  }
  End();
  // Units normally end in reverse order; if not, unlink this one from the
  // thread's chain wherever it is.
  if (current_unit == this) {
    current_unit = previous_;
  } else {
    for (UnitOfWork* u = current_unit; u != nullptr; u = u->previous_) {
      if (u->previous_ == this) {
        u->previous_ = previous_;
        break;
      }
    }
  }
}

UnitOfWork* UnitOfWork::Current() { return current_unit; }

void UnitOfWork::End() {
  // Not deactivated: async calls queued for this unit's events still run.
  subs_.clear();
  if (state_ != State::kCommitted) events_.clear();
  values_.clear();
  received_.clear();
}

bool UnitOfWork::Listened(Phase phase) const {
  if (dispatcher_->Listened(phase)) return true;
  for (const auto& sub : subs_) {
    if (sub->reg.phase == phase) return true;
  }
  return false;
}

SubscriptionId UnitOfWork::Add(detail::Registration registration) {
  auto sub = NewSub(std::move(registration));
  SubscriptionId id = sub->id;
  subs_.push_back(std::move(sub));
  return id;
}

Status UnitOfWork::Unsubscribe(SubscriptionId id) {
  auto it = std::find_if(subs_.begin(), subs_.end(),
                         [&](const auto& s) { return s->id == id; });
  if (it == subs_.end()) {
    return Status::NotFound("no subscription " + std::to_string(id) +
                            " in this unit of work");
  }
  (*it)->active.store(false, std::memory_order_release);
  subs_.erase(it);
  return Status::OK();
}

Status UnitOfWork::Raise(Event event) {
  return RaiseValue(std::move(event), Value());
}

Status Raise(Event event) {
  UnitOfWork* unit = UnitOfWork::Current();
  if (unit == nullptr) {
    return Status::FailedPrecondition(
        "no unit of work on this thread: cannot raise " + event.type);
  }
  return unit->Raise(std::move(event));
}

Status UnitOfWork::RaiseValue(Event event, Value value) {
  switch (state_) {
    case State::kOpen:
      break;
    case State::kCommitting:
      if (!handlers_done_) break;
      return Status::FailedPrecondition(
          "the unit of work is appending its events: cannot raise " +
          event.type);
    case State::kCommitted:
      return Status::FailedPrecondition(
          "the unit of work has committed: cannot raise " + event.type);
    case State::kRolledBack:
      return Status::FailedPrecondition(
          "the unit of work has rolled back: cannot raise " + event.type);
  }
  if (event.metadata.empty()) event.metadata = "{}";
  HERALD_RETURN_IF_ERROR(ValidateEvent(event));
  if (event.id.empty()) event.id = NewUuidV7();
  if (event.occurred_at_us == 0) event.occurred_at_us = NowMicros();
  constexpr int kMaxRaiseDepth = 32;
  if (raise_depth_ >= kMaxRaiseDepth) {
    return Status::ResourceExhausted(
        "immediate handlers raised events " + std::to_string(kMaxRaiseDepth) +
        " levels deep: cannot raise " + event.type);
  }

  events_.push_back(std::move(event));
  values_.push_back(std::move(value));
  received_.push_back(false);
  if (!Listened(Phase::kImmediate)) return Status::OK();
  // Handlers may raise (growing the vectors): pass copies that stay put.
  Event raised = events_.back();
  Value held = values_.back();
  SubList unit_subs = subs_;
  ++raise_depth_;
  Status s = dispatcher_->RunSync(Phase::kImmediate, raised, held.value.get(),
                                  held.type, unit_subs);
  --raise_depth_;
  if (!s.ok() && failed_.ok()) failed_ = s;
  return s;
}

Status UnitOfWork::Receive(const Event& event) {
  if (state_ != State::kOpen) {
    return Status::FailedPrecondition(
        "the unit of work is not open: cannot receive " + event.type);
  }
  if (event.id.empty()) {
    return Status::InvalidArgument("a received event needs its id");
  }
  events_.push_back(event);
  values_.emplace_back();
  received_.push_back(true);
  if (!Listened(Phase::kImmediate)) return Status::OK();
  Event received = events_.back();
  SubList unit_subs = subs_;
  ++raise_depth_;
  Status s = dispatcher_->RunSync(Phase::kImmediate, received, nullptr, nullptr,
                                  unit_subs);
  --raise_depth_;
  if (!s.ok() && failed_.ok()) failed_ = s;
  return s;
}

Status UnitOfWork::Commit() {
  if (state_ != State::kOpen) {
    return Status::FailedPrecondition(
        state_ == State::kCommitted ? "the unit of work has committed already"
                                    : "the unit of work is not open");
  }
  state_ = State::kCommitting;
  auto fail = [&](Status s) {
    (void)tx_->Rollback();
    state_ = State::kRolledBack;
    events_.clear();
    values_.clear();
    received_.clear();
    return s;
  };
  if (!failed_.ok()) return fail(failed_);

  // Before commit. Handlers may raise events; those get their turn too.
  for (size_t i = 0; i < events_.size() && Listened(Phase::kBeforeCommit);
       ++i) {
    Event event = events_[i];
    Value held = values_[i];
    SubList unit_subs = subs_;
    Status s = dispatcher_->RunSync(Phase::kBeforeCommit, event,
                                    held.value.get(), held.type, unit_subs);
    if (!s.ok()) return fail(s);
    if (!failed_.ok()) return fail(failed_);  // an immediate handler of theirs
    if (state_ != State::kCommitting) {
      return Status::FailedPrecondition(
          "a before-commit handler ended the unit of work");
    }
  }
  handlers_done_ = true;

  if (std::find(received_.begin(), received_.end(), true) == received_.end()) {
    if (!events_.empty()) {
      auto appended =
          dispatcher_->store->Append(*tx_, std::span<Event>(events_));
      if (!appended.ok()) return fail(appended.status());
    }
  } else {
    // Received events are handled, never stored: append only the raised.
    std::vector<Event> raised;
    for (size_t i = 0; i < events_.size(); ++i) {
      if (!received_[i]) raised.push_back(events_[i]);
    }
    if (!raised.empty()) {
      auto appended =
          dispatcher_->store->Append(*tx_, std::span<Event>(raised));
      if (!appended.ok()) return fail(appended.status());
      size_t j = 0;
      for (size_t i = 0; i < events_.size(); ++i) {
        if (!received_[i]) events_[i] = std::move(raised[j++]);
      }
    }
  }
  Status s = tx_->Commit();
  if (!s.ok()) return fail(s);
  state_ = State::kCommitted;

  // After commit: nothing here can undo the transaction.
  auto global = dispatcher_->Snapshot();
  SubList unit_subs = subs_;
  for (size_t i = 0; i < events_.size(); ++i) {
    (void)dispatcher_->RunSync(Phase::kAfterCommit, events_[i],
                               values_[i].value.get(), values_[i].type,
                               unit_subs);
  }
  for (size_t i = 0; i < events_.size(); ++i) {
    std::shared_ptr<Raised> raised;
    auto queue_matching = [&](const SubList& list) {
      for (const auto& sub : list) {
        if (!Matches(*sub, Phase::kAfterCommitAsync, events_[i].type) ||
            !sub->active.load(std::memory_order_acquire)) {
          continue;
        }
        if (!raised) {
          raised = std::make_shared<Raised>();
          raised->event = events_[i];
          raised->value = values_[i].value;
          raised->type = values_[i].type;
        }
        dispatcher_->Enqueue(Dispatcher::Impl::Job{raised, sub});
      }
    };
    queue_matching(*global);
    queue_matching(unit_subs);
  }
  return Status::OK();
}

Status UnitOfWork::Rollback() {
  if (state_ == State::kCommitted) {
    return Status::FailedPrecondition("the unit of work has committed");
  }
  if (state_ == State::kRolledBack) return Status::OK();
  state_ = State::kRolledBack;
  events_.clear();
  values_.clear();
  received_.clear();
  return tx_->Rollback();
}

}  // namespace herald
