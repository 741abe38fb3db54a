// Appender: group commit of POSTed events (see internal.h).
//
// Each request is answered only after the transaction holding its events
// committed (with SQLite synchronous=FULL, after the fsync). While one
// commit is under way, new requests queue; the next transaction takes them
// all, so N concurrent requests cost about one commit, not N.
//
// A job whose client has gone (AppendJob::client_gone) when the appender
// reaches it, in the group transaction or in the one-by-one retry, is not
// appended. The check is the last moment a job can be withdrawn: once its
// Store::Append ran inside the group's transaction, it commits with the
// group, and a client that leaves after that point only misses its answer.
#include <span>
#include <vector>

#include "server/internal.h"
#include "util/thread_name.h"

namespace herald::detail {

namespace {
// Jobs and events taken into one transaction at most.
constexpr size_t kMaxGroupJobs = 1024;
constexpr size_t kMaxGroupEvents = 20000;

bool FailsAlone(const Status& s) {
  return s.code() == Status::Code::kInvalidArgument ||
         s.code() == Status::Code::kConflict;
}

bool Gone(const AppendJob& j) {
  return j.client_gone && j.client_gone->load(std::memory_order_acquire);
}

Status GoneStatus() {
  return Status::Unavailable(
      "the client closed its connection before the append was taken; "
      "nothing was written");
}
}  // namespace

std::optional<Appender::Failure> Appender::failing() const {
  MutexLock lock(&failure_mu_);
  return failure_;
}

void Appender::Track(const Status& s) {
  if (FailsAlone(s)) return;  // the request's fault, not the store's
  MutexLock lock(&failure_mu_);
  if (s.ok()) {
    failure_.reset();
    return;
  }
  auto now = std::chrono::system_clock::now();
  if (!failure_) failure_ = Failure{"", now, now, 0};
  failure_->error = s.message();
  failure_->at = now;
  ++failure_->count;
}

Appender::Appender(Store* store, Hub* hub) : store_(store), hub_(hub) {}

Appender::~Appender() { Stop(); }

void Appender::Start() {
  started_ = true;
  thread_ = std::thread([this] { Run(); });
}

void Appender::Stop() {
  {
    MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
  // Not started: fail what is queued.
  std::vector<AppendJob> left;
  {
    MutexLock lock(&mu_);
    left.swap(queue_);
  }
  for (auto& j : left) {
    j.done(Status::Unavailable("the server is stopping"), std::move(j.events));
  }
}

void Appender::Submit(AppendJob job) {
  {
    MutexLock lock(&mu_);
    if (!stop_) {
      queue_.push_back(std::move(job));
      cv_.Signal();
      return;
    }
  }
  job.done(Status::Unavailable("the server is stopping"),
           std::move(job.events));
}

void Appender::Run() {
  NameThisThread("herald-append");
  std::vector<AppendJob> jobs;
  while (true) {
    {
      MutexLock lock(&mu_);
      while (!stop_ && queue_.empty()) cv_.Wait(&mu_);
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
  uint64_t gone = 0;  // jobs withdrawn because their client left

  // Append epochs before and after: if this group's commit is the only one
  // between them, the Hub need not read the store for it (see Hub::Push).
  const uint64_t epoch_before = store_->append_epoch();
  // The watcher leaves this group's events to the Push below.
  hub_->BeginPush();
  struct PushDone {
    Hub* hub;
    ~PushDone() { hub->EndPush(); }
  } push_done{hub_};
  auto tx = store_->Begin();
  if (!tx.ok()) {
    group_ok = false;
  } else {
    for (auto& j : *jobs) {
      if (Gone(j)) {
        results.emplace_back(GoneStatus());
        ++gone;
        continue;
      }
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
    Track(Status::OK());
  } else {
    if (!tx.ok()) Track(tx.status());
    // Something beyond one request failed (the database is busy or gone):
    // try each job in a transaction of its own so each gets its own answer.
    // Append only filled in ids, times and positions, which a retry
    // keeps or overwrites.
    results.clear();
    gone = 0;
    for (auto& j : *jobs) {
      if (Gone(j)) {
        results.emplace_back(GoneStatus());
        ++gone;
        continue;
      }
      results.push_back(store_->Append(std::span<Event>(j.events), j.options));
      if (results.back().ok()) commits_.fetch_add(1);
      Track(results.back().status());
    }
  }
  abandoned_.fetch_add(gone);
  uint64_t created = 0;
  for (auto& r : results) {
    if (r.ok()) created += r->created;
  }
  appended_.fetch_add(created);
  // The answers (and the long-polls the Hub wakes) go to each I/O thread
  // in one post when this scope ends, after the loop below.
  CompletionBatch batch;
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
    if (j.target && j.post) {
      // Rendered and answered on the request's I/O thread.
      batch.Add(j.target, j.post,
                [done = std::move(j.done), r = std::move(results[i]),
                 events = std::move(j.events)]() mutable {
                  done(std::move(r), std::move(events));
                });
    } else {
      j.done(std::move(results[i]), std::move(j.events));
    }
  }
}

namespace {
thread_local CompletionBatch* current_batch = nullptr;
}  // namespace

CompletionBatch::CompletionBatch() : outer_(current_batch) {
  current_batch = this;
}

CompletionBatch::~CompletionBatch() {
  current_batch = outer_;
  for (auto& g : groups_) g.post(g.target, std::move(g.fns));
}

CompletionBatch* CompletionBatch::Current() { return current_batch; }

void CompletionBatch::Add(void* target, Poster post, std::function<void()> fn) {
  for (auto& g : groups_) {
    if (g.target == target) {
      g.fns.push_back(std::move(fn));
      return;
    }
  }
  groups_.push_back(Group{target, post, {}});
  groups_.back().fns.push_back(std::move(fn));
}

}  // namespace herald::detail
