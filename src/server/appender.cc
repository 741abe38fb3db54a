// Appender: group commit of POSTed events (see internal.h).
//
// Each request is answered only after the transaction holding its events
// committed (with SQLite synchronous=FULL, after the fsync). While one
// commit is under way, new requests queue; the next transaction takes them
// all, so N concurrent requests cost about one commit, not N.
#include <span>
#include <vector>

#include "server/internal.h"

namespace herald::detail {

namespace {
// Jobs and events taken into one transaction at most.
constexpr size_t kMaxGroupJobs = 1024;
constexpr size_t kMaxGroupEvents = 20000;

bool FailsAlone(const Status& s) {
  return s.code() == Status::Code::kInvalidArgument ||
         s.code() == Status::Code::kConflict;
}
}  // namespace

Appender::Appender(Store* store, Hub* hub) : store_(store), hub_(hub) {}

Appender::~Appender() { Stop(); }

void Appender::Start() {
  started_ = true;
  thread_ = std::thread([this] { Run(); });
}

void Appender::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Not started: fail what is queued.
  std::vector<AppendJob> left;
  {
    std::lock_guard lock(mu_);
    left.swap(queue_);
  }
  for (auto& j : left) {
    j.done(Status::Unavailable("the server is stopping"), std::move(j.events));
  }
}

void Appender::Submit(AppendJob job) {
  {
    std::lock_guard lock(mu_);
    if (!stop_) {
      queue_.push_back(std::move(job));
      cv_.notify_one();
      return;
    }
  }
  job.done(Status::Unavailable("the server is stopping"),
           std::move(job.events));
}

void Appender::Run() {
  std::vector<AppendJob> jobs;
  while (true) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      size_t events = 0, n = 0;
      while (n < queue_.size() && n < kMaxGroupJobs &&
             (n == 0 || events + queue_[n].events.size() <= kMaxGroupEvents)) {
        events += queue_[n].events.size();
        ++n;
      }
      jobs.assign(std::make_move_iterator(queue_.begin()),
                  std::make_move_iterator(queue_.begin() + n));
      queue_.erase(queue_.begin(), queue_.begin() + n);
    }
    Process(&jobs);
    jobs.clear();
  }
}

void Appender::Process(std::vector<AppendJob>* jobs) {
  std::vector<Result<AppendResult>> results;
  results.reserve(jobs->size());
  bool group_ok = true;

  // Append epochs before and after: if this group's commit is the only one
  // between them, the Hub need not read the store for it (see Hub::Push).
  const uint64_t epoch_before = store_->append_epoch();
  auto tx = store_->Begin();
  if (!tx.ok()) {
    group_ok = false;
  } else {
    for (auto& j : *jobs) {
      auto r = store_->Append(**tx, std::span<Event>(j.events), j.options);
      if (!r.ok() && !FailsAlone(r.status())) {
        group_ok = false;
        break;
      }
      results.push_back(std::move(r));
    }
    if (group_ok) {
      Status s = (*tx)->Commit();
      if (!s.ok()) group_ok = false;
    } else {
      (void)(*tx)->Rollback();
    }
  }
  if (group_ok) {
    commits_.fetch_add(1);
  } else {
    // Something beyond one request failed (the database is busy or gone):
    // try each job in a transaction of its own so each gets its own answer.
    // Append only filled in ids, times and positions, which a retry
    // keeps or overwrites.
    results.clear();
    for (size_t i = 0; i < jobs->size(); ++i) {
      results.push_back(store_->Append(std::span<Event>((*jobs)[i].events),
                                       (*jobs)[i].options));
      if (results.back().ok()) commits_.fetch_add(1);
    }
  }
  uint64_t created = 0;
  for (auto& r : results) {
    if (r.ok()) created += r->created;
  }
  appended_.fetch_add(created);
  // Readers of this server see the events before their writers hear back.
  if (created > 0) {
    std::vector<const Event*> stored;
    for (size_t i = 0; i < jobs->size(); ++i) {
      if (!results[i].ok()) continue;
      for (const auto& e : (*jobs)[i].events) {
        if (e.position > 0) stored.push_back(&e);
      }
    }
    uint64_t epoch_after = store_->append_epoch();
    hub_->Push(std::move(stored),
               epoch_after == epoch_before + 1 ? epoch_after : epoch_before);
  }
  for (size_t i = 0; i < jobs->size(); ++i) {
    auto& j = (*jobs)[i];
    j.done(std::move(results[i]), std::move(j.events));
  }
}

}  // namespace herald::detail
