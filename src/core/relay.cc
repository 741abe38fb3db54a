// Relay: one thread per route reads batches after the route's checkpoint,
// sends them, and moves the checkpoint once every event of the batch is
// acknowledged, parked or held; one lease thread keeps the routes' leases.
//
// Locking: Shared::mu guards the lifecycle flags; each runner's mu_ guards
// its wake flags, metrics and in-process status. Never hold a runner's mu_
// while calling the store or a sender. Lock order: Shared::mu before a
// runner's mu_ (only Stop takes both).
#include "herald/relay.h"

#include <unistd.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <unordered_set>

#include "herald/redact.h"
#include "util/thread_annotations.h"
#include "util/thread_name.h"

namespace herald {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kMaxParkedScan = 100000;
constexpr size_t kMaxErrorLength = 1000;
constexpr milliseconds kWaitSlice{20};
// How long the head check stays at busy_poll after the last event.
constexpr milliseconds kBusyWindow{100};
// How long the checkpoint saver gathers batches into one commit.
constexpr milliseconds kSaveGather{5};

// Upper bounds of the send latency histogram, in seconds.
const std::vector<double>& LatencyBounds() {
  static const std::vector<double> b{0.0005, 0.001, 0.0025, 0.005, 0.01,
                                     0.025,  0.05,  0.1,    0.25,  0.5,
                                     1,      2.5,   5,      10};
  return b;
}

// Upper bounds of the commit-to-acknowledgement histogram, in seconds.
const std::vector<double>& CommitToAckBounds() {
  static const std::vector<double> b{0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                     0.25,  0.5,   1,    2.5,   5,    10,
                                     30,    60,    300,  900,   3600};
  return b;
}

void InitHistogram(LatencyHistogram* h, const std::vector<double>& bounds) {
  h->bounds_seconds = bounds;
  h->counts.assign(bounds.size() + 1, 0);
}

void ObserveIn(LatencyHistogram* h, double seconds) {
  size_t i = 0;
  while (i < h->bounds_seconds.size() && seconds > h->bounds_seconds[i]) ++i;
  ++h->counts[i];
  h->sum_seconds += seconds;
  ++h->count;
}

// Seconds from the event's commit (its occurred_at) to now, at least 0.
double SinceCommit(const Event& e, int64_t now_us) {
  return std::max<double>(0,
                          static_cast<double>(now_us - e.occurred_at_us) / 1e6);
}

bool SameId(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string DefaultOwner() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::random_device rd;
  char tail[16];
  std::snprintf(tail, sizeof tail, "%08x", rd());
  return std::string(host) + ":" + std::to_string(::getpid()) + ":" + tail;
}

bool MatchesAny(const std::vector<std::string>& globs, const std::string& s) {
  if (globs.empty()) return true;
  for (const auto& g : globs) {
    if (GlobMatch(g, s)) return true;
  }
  return false;
}

}  // namespace

struct Relay::Shared {
  detail::Mutex mu;
  detail::CondVar cv;  // wakes the lease thread
  bool started GUARDED_BY(mu) = false;
  bool stopping GUARDED_BY(mu) = false;
  bool lease_stop GUARDED_BY(mu) = false;  // set after runners joined
  std::atomic<bool> stop{false};
  std::string owner;
  std::thread lease_thread;
};

// Runs one route. Run() is the thread body; the rest is called from the
// lease thread or from API callers.
class Relay::RouteRunner {
 public:
  RouteRunner(Relay* relay, const RouteConfig& config,
              std::unique_ptr<Sender> sender, EventSource* source,
              RelayOptions options)
      : relay_(relay),
        source_(source),
        options_(std::move(options)),
        relay_state_(relay->state_),
        config_(config),
        sender_(std::move(sender)),
        rng_(std::random_device{}()) {
    metrics_.name = config.name;
    InitHistogram(&metrics_.send_latency, LatencyBounds());
    InitHistogram(&metrics_.commit_to_ack, CommitToAckBounds());
  }

  void StartThread() {
    saver_ = std::thread([this] { SaverLoop(); });
    thread_ = std::thread([this] { Run(); });
  }
  // Joins the runner (which saves what it queued) and then the saver.
  void Join() {
    if (thread_.joinable()) thread_.join();
    {
      detail::MutexLock lock(&save_mu_);
      saver_stop_ = true;
    }
    save_cv_.SignalAll();
    if (saver_.joinable()) saver_.join();
  }

  void Wake(bool drain_parked) {
    {
      detail::MutexLock lock(&mu_);
      woken_ = true;
      if (drain_parked) drain_requested_ = true;
    }
    cv_.SignalAll();
  }

  // An operator asked for the event at `position` to be sent again; ends
  // the slow wait of a route blocked on it (in this process).
  void RetryBlocked(int64_t position) {
    {
      detail::MutexLock lock(&mu_);
      blocked_retry_position_ = position;
    }
    cv_.SignalAll();
  }

  // ---- Lease (called by the lease thread) ---------------------------------

  // Renews or takes the lease. Returns when to try next.
  Clock::time_point TendLease(const std::string& owner, milliseconds ttl) {
    auto t0 = Clock::now();
    auto r = relay_state_->AcquireLease(LeaseName(config_.name), owner, ttl);
    milliseconds renew_every = std::max(ttl / 4, milliseconds(10));
    if (!r.ok()) {
      // Keep the old deadline: the runner stops when it passes.
      return t0 + std::min(renew_every, milliseconds(200));
    }
    if (*r) {
      milliseconds margin = std::max(ttl / 10, milliseconds(20));
      bool gained = !HoldsLease();
      if (gained) lease_gen_.fetch_add(1);
      lease_until_ns_.store((t0 + ttl - margin).time_since_epoch().count());
      if (gained) Wake(false);
      return t0 + renew_every;
    }
    lease_until_ns_.store(0);
    // Someone else holds it: try again right after it would expire.
    auto info = relay_state_->GetLease(LeaseName(config_.name));
    milliseconds wait = renew_every;
    if (info.ok() && info->has_value()) {
      int64_t left_us = (*info)->expires_at_us - NowMicros();
      wait = std::clamp(milliseconds(left_us / 1000 + 2), milliseconds(1),
                        renew_every);
    }
    return t0 + wait;
  }

  void ReleaseLease(const std::string& owner) {
    lease_until_ns_.store(0);
    (void)relay_state_->ReleaseLease(LeaseName(config_.name), owner);
  }

  bool HoldsLease() const {
    return Clock::now().time_since_epoch().count() < lease_until_ns_.load();
  }
  Clock::time_point LeaseDeadline() const {
    return Clock::time_point(Clock::duration(lease_until_ns_.load()));
  }

  // ---- Status -------------------------------------------------------------

  void FillStatus(RouteStatus* s) {
    detail::MutexLock lock(&mu_);
    if (!blocked_id_.empty() && s->blocked_id == blocked_id_) {
      s->blocked_error = blocked_error_;
    }
    s->running = true;
    s->holding_lease = HoldsLease();
    s->state = state_;
    if (!s->holding_lease && state_ != "stopped")
      s->state = "waiting_for_lease";
  }

  RouteMetrics Metrics() {
    detail::MutexLock lock(&mu_);
    return metrics_;
  }

 private:
  void SetState(const char* state) {
    detail::MutexLock lock(&mu_);
    state_ = state;
  }

  bool Stopping() const { return relay_->shared_->stop.load(); }

  // Waits until `deadline`, a Wake, Stop, or (when `epoch` is given) an
  // append by this process.
  void WaitUntil(Clock::time_point deadline, const uint64_t* epoch) {
    while (!Stopping()) {
      auto now = Clock::now();
      if (now >= deadline) return;
      {
        detail::MutexLock lock(&mu_);
        if (woken_) {
          woken_ = false;
          return;
        }
        if (!epoch) {
          cv_.WaitUntil(&mu_, now + std::min<Clock::duration>(deadline - now,
                                                              kWaitSlice));
          continue;
        }
      }
      auto slice = std::min<Clock::duration>(deadline - now, kWaitSlice);
      uint64_t e = source_->WaitForAppend(
          *epoch, std::chrono::duration_cast<milliseconds>(slice) +
                      milliseconds(slice < kWaitSlice ? 1 : 0));
      if (e != *epoch) return;
    }
  }

  // Waits out a retry delay. Only Stop cuts it short: a Wake meant for an
  // idle runner (the lease was gained, an operator asked for a retry) must
  // not turn a receiver's Retry-After into an instant retry.
  void SleepUntil(Clock::time_point deadline) {
    detail::MutexLock lock(&mu_);
    while (!Stopping() && Clock::now() < deadline) {
      cv_.WaitUntil(&mu_, deadline);
    }
  }

  milliseconds Backoff(int round, milliseconds retry_after) {
    const auto& p = config_.retry;
    double d = static_cast<double>(p.backoff_initial.count());
    for (int i = 1; i < round && d < p.backoff_max.count(); ++i) d *= 2;
    d = std::min(d, static_cast<double>(p.backoff_max.count()));
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    auto delay = milliseconds(static_cast<int64_t>(d * jitter(rng_)));
    if (retry_after > delay) {
      delay = std::min(retry_after, milliseconds(600000));
    }
    return std::max(delay, milliseconds(1));
  }

  // Keeps `error` (secrets masked first) as the route's last error.
  void RecordError(const std::string& error) {
    std::string text = RedactSecrets(error).substr(0, kMaxErrorLength);
    int64_t now = NowMicros();
    {
      detail::MutexLock lock(&mu_);
      metrics_.last_error = text;
      metrics_.last_error_at_us = now;
    }
    // Kept in the route's status row so `herald relay status` elsewhere
    // sees it. Written at most every 200 ms per route. Runner and saver
    // threads both report errors: error_mu_ orders their writes.
    detail::MutexLock lock(&error_mu_);
    if (text == stored_error_ && now - stored_error_at_ < 200000) return;
    if (relay_state_->SetRouteError(config_.name, text, now).ok()) {
      stored_error_ = text;
      stored_error_at_ = now;
    }
  }

  // ---- Blocked (on_failure = "block", permanent rejection) ----------------

  // Marks the route blocked on `e` (kept in the store as the position, so
  // status in any process shows it). Written once per blocked event.
  void EnterBlocked(const Event& e, const std::string& error) {
    std::string text = RedactSecrets(error).substr(0, kMaxErrorLength);
    bool fresh = false;
    {
      detail::MutexLock lock(&mu_);
      fresh = blocked_id_ != e.id;
      blocked_id_ = e.id;
      blocked_error_ = text;
    }
    if (fresh || blocked_stored_ != e.position) {
      Status s =
          relay_state_->SaveCheckpoint(BlockedName(config_.name), e.position);
      if (s.ok()) blocked_stored_ = e.position;
    }
  }

  // The route delivered (or gave up on) what it was blocked on.
  void LeaveBlocked() {
    {
      detail::MutexLock lock(&mu_);
      if (blocked_id_.empty() && blocked_stored_ == 0) return;
      blocked_id_.clear();
      blocked_error_.clear();
      blocked_retry_position_ = 0;
    }
    if (relay_state_->SaveCheckpoint(BlockedName(config_.name), 0).ok()) {
      blocked_stored_ = 0;
    }
  }

  // Waits out the slow retry of a blocked event: until `deadline`, Stop,
  // the loss of the lease, or an operator's retry of `position` (in this
  // process at once; from another process through the store's
  // "relay-retry/ROUTE" row, checked every idle_poll).
  void WaitBlocked(Clock::time_point deadline, int64_t position) {
    const milliseconds check = options_.idle_poll;
    auto next_check = Clock::now();
    while (!Stopping() && HoldsLease() && Clock::now() < deadline) {
      if (Clock::now() >= next_check) {
        auto asked = relay_state_->GetCheckpoint(RetryName(config_.name));
        if (asked.ok() && *asked == position) {
          (void)relay_state_->SaveCheckpoint(RetryName(config_.name), 0);
          return;
        }
        next_check = Clock::now() + check;
      }
      detail::MutexLock lock(&mu_);
      if (blocked_retry_position_ == position) {
        blocked_retry_position_ = 0;
        return;
      }
      cv_.WaitUntil(&mu_, std::min({deadline, next_check,
                                    Clock::now() + milliseconds(200)}));
    }
  }

  void Observe(double seconds) REQUIRES(mu_) {
    ObserveIn(&metrics_.send_latency, seconds);
  }

  // Loads the checkpoint and the parked rows after gaining the lease.
  Status Load() {
    auto cp = relay_state_->GetCheckpoint(CheckpointName(config_.name));
    if (!cp.ok()) return cp.status();
    checkpoint_ = std::max<int64_t>(*cp, 1);
    // Another relay may have sent from the checkpoint meanwhile: the
    // window carried over is dropped and read again from the store.
    carry_.clear();
    carry_done_.clear();
    carry_reported_.clear();
    {
      detail::MutexLock lock(&mu_);
      metrics_.checkpoint = checkpoint_;
    }
    // A route blocked before (here or in another process) clears the
    // marker once it gets past the event.
    auto blocked = relay_state_->GetCheckpoint(BlockedName(config_.name));
    if (!blocked.ok()) return blocked.status();
    blocked_stored_ = *blocked;
    return RefreshParked(nullptr);
  }

  // Reloads the held streams and parked ids; returns the rows when `rows`.
  Status RefreshParked(std::vector<ParkedEvent>* rows) {
    auto list = relay_state_->ListParked(config_.name, "", kMaxParkedScan);
    if (!list.ok()) return list.status();
    held_streams_.clear();
    parked_ids_.clear();
    for (const auto& p : *list) {
      held_streams_.insert(p.event.stream);
      parked_ids_.insert(p.event.id);
    }
    if (rows) *rows = std::move(*list);
    return Status::OK();
  }

  // Parked rows and the checkpoint in one transaction. Relaxed (not
  // flushed at once): losing it to a power failure only repeats deliveries.
  Status SaveCheckpoint(int64_t next, const std::vector<ParkedEvent>& parks) {
    auto tx = relay_state_->BeginRelaxed();
    if (!tx.ok()) return tx.status();
    for (const auto& p : parks) {
      HERALD_RETURN_IF_ERROR(relay_state_->Park(**tx, p));
    }
    HERALD_RETURN_IF_ERROR(
        relay_state_->SaveCheckpoint(**tx, CheckpointName(config_.name), next));
    HERALD_RETURN_IF_ERROR((*tx)->Commit());
    detail::MutexLock lock(&mu_);
    metrics_.checkpoint = next;
    ++metrics_.batches;
    return Status::OK();
  }

  // ---- Checkpoint saver ----------------------------------------------------
  //
  // Checkpoints (with the parked rows of their batches) are saved by a
  // thread of their own, so a commit that waits for the database's write
  // lock never delays the next delivery. The runner queues a save after each
  // batch and goes on; saves queued meanwhile are merged (the newest
  // checkpoint, every parked row in order). The runner reads at most
  // `batch` minus the events whose checkpoint is not yet saved, so a crash
  // repeats at most one batch of events.

  void QueueSave(int64_t next, std::vector<ParkedEvent> parks, int64_t events) {
    {
      detail::MutexLock lock(&save_mu_);
      pending_checkpoint_ = next;
      for (auto& p : parks) pending_parks_.push_back(std::move(p));
      pending_events_ += events;
      save_pending_ = true;
    }
    save_cv_.SignalAll();
  }

  // Moves the checkpoint to `next` (at most the position of the first
  // event of `batch` not done) and queues its save with `parks`; counts
  // the events of `batch` it moves over, each once.
  void Advance(const std::vector<Event>& batch, int64_t next,
               std::vector<ParkedEvent>* parks) {
    if (next == queued_checkpoint_ && parks->empty()) return;
    auto index_of = [&](int64_t position) {
      return std::lower_bound(
                 batch.begin(), batch.end(), position,
                 [](const Event& e, int64_t p) { return e.position < p; }) -
             batch.begin();
    };
    int64_t moved = next > queued_checkpoint_
                        ? index_of(next) - index_of(queued_checkpoint_)
                        : 0;
    QueueSave(next, std::move(*parks), moved);
    parks->clear();
    queued_checkpoint_ = next;
    checkpoint_ = next;
  }

  // Events delivered whose checkpoint is not saved yet.
  int64_t Unsaved() {
    detail::MutexLock lock(&save_mu_);
    return pending_events_ + saving_events_;
  }

  // Waits until fewer than `limit` events are unsaved (0: everything
  // queued is saved), or the saver gave up.
  void WaitSaved(int64_t limit) {
    detail::MutexLock lock(&save_mu_);
    ++flush_waiters_;
    save_cv_.SignalAll();
    while ((save_pending_ || saving_) &&
           !(limit > 0 && pending_events_ + saving_events_ < limit)) {
      save_cv_.Wait(&save_mu_);
    }
    --flush_waiters_;
  }

  void SaverLoop() {
    detail::NameThisThread("herald-saver");
    save_mu_.Lock();
    while (true) {
      while (!save_pending_ && !saver_stop_) save_cv_.Wait(&save_mu_);
      if (!save_pending_) break;  // stopping with nothing left
      // Gather a few milliseconds of batches into one commit (fewer
      // fsyncs beside the application's own), unless someone waits.
      auto gathered = Clock::now() + kSaveGather;
      while (!saver_stop_ && flush_waiters_ == 0 &&
             pending_events_ < config_.batch / 2 &&
             save_cv_.WaitUntil(&save_mu_, gathered)) {
      }
      int64_t next = pending_checkpoint_;
      std::vector<ParkedEvent> parks = std::move(pending_parks_);
      pending_parks_.clear();
      saving_events_ = pending_events_;
      pending_events_ = 0;
      save_pending_ = false;
      saving_ = true;
      save_mu_.Unlock();
      // Retried while the store is unavailable (the events are sent; giving
      // up would only send them again); a few tries once stopping. Saved
      // even when the lease lapsed meanwhile: every event below `next` was
      // acknowledged, so a relay that took over from the older checkpoint
      // only sends some of them again.
      for (int round = 1;; ++round) {
        Status s = SaveCheckpoint(next, parks);
        if (s.ok()) break;
        RecordError("saving checkpoint: " + s.ToString());
        if (Stopping() && round >= 3) break;
        std::this_thread::sleep_for(milliseconds(std::min(50 * round, 1000)));
      }
      save_mu_.Lock();
      saving_ = false;
      saving_events_ = 0;
      save_cv_.SignalAll();
    }
    save_mu_.Unlock();
  }

  // Sends `events`; marks each done (delivered or parked/held). Retries
  // until all are done, the lease is lost or the relay stops, or (`keep`)
  // the first round left events in flight without a failure: those stay
  // not done, and the caller passes them again first (the pipelined
  // sending of Sender::SendKeepingInFlight). Returns the parked/held rows
  // to write.
  // `reported`: set for the events whose acknowledgement was already
  // passed to the source's OnRouteProgress (a round that leaves others to
  // retry reports its deliveries at once).
  void SendBatch(std::vector<Event>& events, std::vector<bool>* done,
                 std::vector<ParkedEvent>* parks, std::vector<bool>* reported,
                 bool keep) {
    // Reused across batches (no large allocation per batch).
    std::vector<int>& attempts = attempts_;
    std::vector<int64_t>& first_failed_us = first_failed_us_;
    std::vector<size_t>& idx = idx_;
    std::vector<Event>& to_send = to_send_;
    std::vector<SendResult>& results = results_;
    std::vector<double>& acked = acked_;  // commit-to-acknowledgement, s
    std::vector<size_t>& delivered_now = delivered_now_;
    attempts.assign(events.size(), 0);
    first_failed_us.assign(events.size(), 0);
    for (int round = 1;; ++round) {
      idx.clear();
      for (size_t i = 0; i < events.size(); ++i) {
        if (!(*done)[i]) idx.push_back(i);
      }
      if (idx.empty() || Stopping() || !HoldsLease()) return;
      // The events to send: the batch itself when none is done, else the
      // ones not done, moved out for the call and back after it.
      const bool whole = idx.size() == events.size();
      to_send.clear();
      if (!whole) {
        for (size_t i : idx) to_send.push_back(std::move(events[i]));
      }
      std::span<const Event> sending = whole ? std::span<const Event>(events)
                                             : std::span<const Event>(to_send);
      results.assign(idx.size(), SendResult::NotSent());
      SetState(round == 1 ? "sending" : "retrying");
      auto t0 = Clock::now();
      if (keep && round == 1) {
        sender_->SendKeepingInFlight(sending, results, LeaseDeadline());
      } else {
        sender_->Send(sending, results, LeaseDeadline());
      }
      double took = std::chrono::duration<double>(Clock::now() - t0).count();
      if (!whole) {
        for (size_t k = 0; k < idx.size(); ++k) {
          events[idx[k]] = std::move(to_send[k]);
        }
      }
      milliseconds retry_after{0};
      std::string error;
      uint64_t delivered = 0, failed = 0, parked = 0, held = 0;
      size_t left_in_flight = 0;
      // The first event of this round permanently rejected under "block".
      const Event* blocked_on = nullptr;
      std::string blocked_error;
      acked.clear();
      delivered_now.clear();
      const int64_t now_us = NowMicros();
      for (size_t k = 0; k < idx.size(); ++k) {
        size_t i = idx[k];
        if ((*done)[i]) continue;  // held just now by an earlier failure
        const SendResult& r = results[k];
        if (r.status.ok()) {
          (*done)[i] = true;
          ++delivered;
          delivered_now.push_back(i);
          acked.push_back(SinceCommit(events[i], now_us));
          continue;
        }
        if (r.in_flight) {
          ++left_in_flight;  // answered in the next call
          continue;
        }
        if (!r.attempted) continue;
        ++failed;
        if (attempts[i]++ == 0) first_failed_us[i] = now_us;
        retry_after = std::max(retry_after, r.retry_after);
        error = "event " + events[i].id + " (position " +
                std::to_string(events[i].position) +
                "): " + r.status.ToString();
        // A permanent rejection (Status::retryable() false, whichever
        // sender said it) is not tried again like a transient failure: it
        // parks at once, or blocks the route.
        const bool permanent = !r.status.retryable();
        if (permanent && config_.on_failure == FailurePolicy::kBlock &&
            !blocked_on) {
          blocked_on = &events[i];
          blocked_error = error;
        }
        if (config_.on_failure == FailurePolicy::kPark &&
            (permanent || attempts[i] >= config_.retry.max_attempts)) {
          ParkedEvent p;
          p.route = config_.name;
          p.event = events[i];
          p.state = "parked";
          p.attempts = attempts[i];
          p.first_failed_at_us = first_failed_us[i];
          p.error =
              RedactSecrets(r.status.ToString()).substr(0, kMaxErrorLength);
          parks->push_back(std::move(p));
          (*done)[i] = true;
          ++parked;
          held_streams_.insert(events[i].stream);
          parked_ids_.insert(events[i].id);
          // Later events of its stream wait behind it.
          for (size_t j = i + 1; j < events.size(); ++j) {
            if ((*done)[j] || events[j].stream != events[i].stream) continue;
            ParkedEvent h;
            h.route = config_.name;
            h.event = events[j];
            h.state = "held";
            h.error = "held behind parked event " + events[i].id;
            parks->push_back(std::move(h));
            (*done)[j] = true;
            parked_ids_.insert(events[j].id);
            ++held;
          }
        }
      }
      {
        detail::MutexLock lock(&mu_);
        metrics_.delivered += delivered;
        metrics_.failed += failed;
        metrics_.parked += parked;
        metrics_.held += held;
        Observe(took);
        for (double a : acked) ObserveIn(&metrics_.commit_to_ack, a);
      }
      if (!error.empty()) RecordError(error);
      bool all =
          std::all_of(done->begin(), done->end(), [](bool b) { return b; });
      // Left in flight without a failure: the caller carries them over.
      const bool carry = !all && error.empty() && left_in_flight > 0;
      if (!all && !carry && !delivered_now.empty()) {
        // Others of the batch are retried: what was acknowledged is
        // reported now, so an event that keeps failing holds back no other
        // row's mark (an adopted table marks rows on it).
        std::vector<int64_t> positions;
        for (size_t i : delivered_now) {
          positions.push_back(events[i].position);
          (*reported)[i] = true;
        }
        source_->OnRouteProgress(config_.name, positions, {});
      }
      if (all) LeaveBlocked();
      if (all || carry || Stopping()) return;
      if (error.empty()) continue;  // only unsent ones left: go on at once
      // Retrying: the checkpoint moves over what is done before the first
      // event that is not, so that it does not wait for the retries.
      for (size_t i = 0; i < events.size(); ++i) {
        if ((*done)[i]) continue;
        if (events[i].position > queued_checkpoint_) {
          Advance(events, events[i].position, parks);
        }
        break;
      }
      SetState(config_.on_failure == FailurePolicy::kBlock ? "blocked"
                                                           : "retrying");
      if (blocked_on) {
        // Blocked on a permanent rejection: tried again only every
        // backoff_max (or later, if the receiver asked), or at once when an
        // operator retries it.
        EnterBlocked(*blocked_on, blocked_error);
        WaitBlocked(Clock::now() +
                        std::max(config_.retry.backoff_max,
                                 std::min(retry_after, milliseconds(600000))),
                    blocked_on->position);
        continue;
      }
      SleepUntil(Clock::now() + Backoff(round, retry_after));
    }
  }

  // Sends parked events asked for again ("retry") and the held events of
  // streams with nothing parked before them, in position order per stream.
  void DrainParked() {
    WaitSaved(0);  // parked rows still queued must be in the store first
    std::vector<ParkedEvent> rows;
    Status s = RefreshParked(&rows);
    if (!s.ok()) {
      RecordError("listing parked events: " + s.ToString());
      return;
    }
    std::map<std::string, std::vector<ParkedEvent*>> by_stream;
    for (auto& r : rows) by_stream[r.event.stream].push_back(&r);
    for (auto& [stream, list] : by_stream) {
      size_t sent = 0;
      for (ParkedEvent* p : list) {
        if (p->state != "retry" && p->state != "held") break;
        if (Stopping() || !HoldsLease()) return;
        if (!Redeliver(*p)) break;
        ++sent;
      }
      if (sent == list.size()) held_streams_.erase(stream);
    }
  }

  // One parked/held event: send with retries (max_attempts); on success
  // drop its row; on failure park it again. Returns whether delivered.
  bool Redeliver(ParkedEvent& p) {
    std::vector<Event> one{p.event};
    // A held row fails here for the first time; a parked one keeps its
    // first failure (the store keeps the earliest either way).
    int64_t first_failed_us = 0;
    std::vector<SendResult> result(1);
    for (int attempt = 1;; ++attempt) {
      result.assign(1, SendResult::NotSent());
      auto t0 = Clock::now();
      SetState("sending");
      sender_->Send(one, result, LeaseDeadline());
      double took = std::chrono::duration<double>(Clock::now() - t0).count();
      if (result[0].status.ok()) {
        auto tx = relay_state_->Begin();
        Status s =
            tx.ok() ? relay_state_->DropParked(**tx, config_.name, p.event.id)
                    : tx.status();
        if (s.ok()) s = (*tx)->Commit();
        if (!s.ok() && !s.IsNotFound()) {
          RecordError("dropping a redelivered parked event: " + s.ToString());
          return false;
        }
        parked_ids_.erase(p.event.id);
        const int64_t pos = p.event.position;
        source_->OnRouteProgress(config_.name, std::span(&pos, 1), {});
        detail::MutexLock lock(&mu_);
        ++metrics_.delivered;
        Observe(took);
        ObserveIn(&metrics_.commit_to_ack, SinceCommit(p.event, NowMicros()));
        return true;
      }
      if (!result[0].attempted) return false;
      if (first_failed_us == 0) first_failed_us = NowMicros();
      {
        detail::MutexLock lock(&mu_);
        ++metrics_.failed;
      }
      RecordError("event " + p.event.id + " (position " +
                  std::to_string(p.event.position) +
                  ", parked): " + result[0].status.ToString());
      if (attempt >= config_.retry.max_attempts ||
          !result[0].status.retryable() || Stopping() || !HoldsLease()) {
        ParkedEvent again = p;
        again.state = "parked";
        again.attempts = p.attempts + attempt;
        again.error = RedactSecrets(result[0].status.ToString())
                          .substr(0, kMaxErrorLength);
        again.parked_at_us = 0;
        if (again.first_failed_at_us == 0) {
          again.first_failed_at_us = first_failed_us;
        }
        auto tx = relay_state_->Begin();
        Status s = tx.ok() ? relay_state_->Park(**tx, again) : tx.status();
        if (s.ok()) s = (*tx)->Commit();
        if (!s.ok()) RecordError("re-parking: " + s.ToString());
        detail::MutexLock lock(&mu_);
        ++metrics_.parked;
        return false;
      }
      SleepUntil(Clock::now() + Backoff(attempt, result[0].retry_after));
    }
  }

  void Run() {
    detail::NameThisThread("herald-relay");
    const auto& opts = options_;
    bool loaded = false;
    uint64_t loaded_gen = 0;
    milliseconds poll = opts.busy_poll;
    auto last_activity = Clock::now();
    auto next_parked_check = Clock::now();
    ReadRequest req;
    req.types = config_.types;
    req.limit = config_.batch;
    req.reader = config_.name;
    std::vector<int64_t> acked_positions, aside_positions;
    std::vector<Event> batch;
    std::vector<bool> done, reported;
    std::vector<ParkedEvent> parks;
    int error_round = 0;
    while (!Stopping()) {
      if (!HoldsLease()) {
        loaded = false;
        SetState("waiting_for_lease");
        WaitUntil(Clock::now() + milliseconds(50), nullptr);
        continue;
      }
      if (!loaded || loaded_gen != lease_gen_.load()) {
        loaded_gen = lease_gen_.load();
        WaitSaved(0);  // what was queued before the lease lapsed
        Status s = Load();
        if (!s.ok()) {
          RecordError("loading checkpoint: " + s.ToString());
          WaitUntil(Clock::now() + Backoff(++error_round, milliseconds(0)),
                    nullptr);
          continue;
        }
        queued_checkpoint_ = checkpoint_;
        loaded = true;
        next_parked_check = Clock::now();
      }
      bool drain = false;
      {
        detail::MutexLock lock(&mu_);
        drain = drain_requested_;
        drain_requested_ = false;
      }
      if (drain ||
          (!held_streams_.empty() && Clock::now() >= next_parked_check)) {
        DrainParked();
        next_parked_check = Clock::now() + opts.idle_poll;
      }

      // At most one batch of events past the saved checkpoint: those
      // delivered whose checkpoint is not saved yet, those carried over
      // from the last batch (sent, and some not answered yet) and the new
      // ones read now.
      const int64_t carried = static_cast<int64_t>(carry_.size());
      const int64_t room = config_.batch - carried;
      int64_t unsaved = Unsaved();
      if (room > 0 && unsaved >= room) {
        WaitSaved(room);
        unsaved = Unsaved();
      }
      const int64_t limit = room - unsaved;
      uint64_t epoch = source_->append_epoch();
      Result<Page> page = Page{};
      if (limit > 0) {
        req.limit = static_cast<int>(limit);
        req.offset = carried > 0 ? read_offset_ : checkpoint_;
        page = source_->Read(req);
        if (!page.ok()) {
          RecordError("reading events: " + page.status().ToString());
          SetState("retrying");
          WaitUntil(Clock::now() + Backoff(++error_round, milliseconds(0)),
                    nullptr);
          continue;
        }
      }
      error_round = 0;
      bool full =
          limit > 0 && static_cast<int64_t>(page->events.size()) == limit;
      // The batch: what was carried over, then the events read now.
      batch.clear();
      parks.clear();
      acked_positions.clear();
      aside_positions.clear();
      batch.swap(carry_);
      done.swap(carry_done_);
      reported.swap(carry_reported_);
      carry_.clear();
      carry_done_.clear();
      carry_reported_.clear();
      // Where the next read starts; the checkpoint when all is done.
      int64_t read_next = carried > 0 ? read_offset_ : checkpoint_;
      if (limit > 0) {
        for (auto& e : page->events) {
          if (!MatchesAny(config_.streams, e.stream)) {
            acked_positions.push_back(e.position);  // not for this route
            continue;
          }
          if (parked_ids_.count(e.id)) {  // parked before a restart
            aside_positions.push_back(e.position);
            continue;
          }
          batch.push_back(std::move(e));
        }
        done.resize(batch.size(), false);
        reported.resize(batch.size(), false);
        {
          detail::MutexLock lock(&mu_);
          metrics_.lag_events =
              std::max<int64_t>(0, page->head - checkpoint_ + 1);
        }
        read_next = page->next_offset;
      }
      int64_t next = read_next;
      size_t first_open = batch.size();  // the first event not done
      if (!batch.empty()) {
        // Streams held behind a parked event: hold these too (the carried
        // events were looked at when they were read).
        uint64_t held = 0;
        for (size_t i = static_cast<size_t>(carried); i < batch.size(); ++i) {
          if (!held_streams_.count(batch[i].stream)) continue;
          ParkedEvent h;
          h.route = config_.name;
          h.event = batch[i];
          h.state = "held";
          h.error = "held behind a parked event of stream " + batch[i].stream;
          parks.push_back(std::move(h));
          parked_ids_.insert(batch[i].id);
          done[i] = true;
          ++held;
        }
        if (held) {
          detail::MutexLock lock(&mu_);
          metrics_.held += held;
        }
        // With more to read (a full page), the sender may keep the last
        // events in flight while the next page is read.
        SendBatch(batch, &done, &parks, &reported, full && !Stopping());
        for (size_t i = 0; i < batch.size(); ++i) {
          if (!done[i]) {
            if (first_open == batch.size()) first_open = i;
            continue;
          }
          if (reported[i]) continue;
          // Done: delivered, or parked / held (set aside).
          (parked_ids_.count(batch[i].id) ? aside_positions : acked_positions)
              .push_back(batch[i].position);
          reported[i] = true;
        }
        // The checkpoint moves past everything done, up to the first event
        // that is not. Rows of events beyond it are written too: they are
        // skipped (parked_ids_) when read again.
        if (first_open < batch.size()) next = batch[first_open].position;
      }
      if (!acked_positions.empty() || !aside_positions.empty()) {
        source_->OnRouteProgress(config_.name, acked_positions,
                                 aside_positions);
      }
      Advance(batch, next, &parks);
      checkpoint_ = next;
      if (first_open < batch.size()) {
        // Carried over: the events from the first one not done (some left
        // in flight by the sender, some done after it), sent again first in
        // the next round; reading goes on after them.
        read_offset_ = read_next;
        carry_.assign(std::make_move_iterator(batch.begin() +
                                              static_cast<long>(first_open)),
                      std::make_move_iterator(batch.end()));
        carry_done_.assign(done.begin() + static_cast<long>(first_open),
                           done.end());
        carry_reported_.assign(reported.begin() + static_cast<long>(first_open),
                               reported.end());
      }
      if (Stopping()) break;
      if (!batch.empty() || full) {
        poll = opts.busy_poll;
        last_activity = Clock::now();
        // More to read, or a window to finish: go on at once.
        if (full || limit <= 0 || !carry_.empty()) continue;
      }
      SetState("idle");
      WaitUntil(Clock::now() + poll, &epoch);
      // Adaptive head check: busy_poll for a while after the last event
      // (a steady trickle never waits long), then doubling to idle_poll.
      if (Clock::now() - last_activity > kBusyWindow) {
        poll = std::min(poll * 2, opts.idle_poll);
      }
    }
    WaitSaved(0);
    SetState("stopped");
  }

  Relay* const relay_;
  EventSource* const source_;
  const RelayOptions options_;  // the relay's, with this route's polls
  RelayState* const relay_state_;
  const RouteConfig config_;
  std::unique_ptr<Sender> sender_;
  std::thread thread_;
  // Steady-clock nanoseconds until which this process may send; 0: no lease.
  std::atomic<int64_t> lease_until_ns_{0};
  // Counts the times the lease was gained: after a gap another relay may
  // have moved the checkpoint or parked events, so the runner reloads.
  std::atomic<uint64_t> lease_gen_{0};

  // Runner thread only.
  std::mt19937_64 rng_;
  int64_t checkpoint_ = 1;
  int64_t queued_checkpoint_ = -1;
  // The window carried over from the last batch (see Run): its events in
  // position order from the first one not done, their done and reported
  // flags, and the position the next read starts at.
  std::vector<Event> carry_;
  std::vector<bool> carry_done_, carry_reported_;
  int64_t read_offset_ = 1;
  // SendBatch's, reused so that a batch makes no large allocations.
  std::vector<int> attempts_;
  std::vector<int64_t> first_failed_us_;
  std::vector<size_t> idx_, delivered_now_;
  std::vector<Event> to_send_;
  std::vector<SendResult> results_;
  std::vector<double> acked_;
  std::unordered_set<std::string> held_streams_;
  std::unordered_set<std::string> parked_ids_;
  int64_t blocked_stored_ = 0;  // the blocked marker as saved in the store
  detail::Mutex error_mu_;
  std::string stored_error_ GUARDED_BY(error_mu_);
  int64_t stored_error_at_ GUARDED_BY(error_mu_) = 0;

  std::thread saver_;
  detail::Mutex save_mu_;
  detail::CondVar save_cv_;
  bool save_pending_ GUARDED_BY(save_mu_) = false;
  bool saving_ GUARDED_BY(save_mu_) = false;
  bool saver_stop_ GUARDED_BY(save_mu_) = false;
  int flush_waiters_ GUARDED_BY(save_mu_) = 0;
  int64_t pending_checkpoint_ GUARDED_BY(save_mu_) = 0;
  std::vector<ParkedEvent> pending_parks_ GUARDED_BY(save_mu_);
  int64_t pending_events_ GUARDED_BY(save_mu_) = 0;
  int64_t saving_events_ GUARDED_BY(save_mu_) = 0;

  detail::Mutex mu_;
  detail::CondVar cv_;
  bool woken_ GUARDED_BY(mu_) = false;
  bool drain_requested_ GUARDED_BY(mu_) = false;
  std::string state_ GUARDED_BY(mu_) = "stopped";
  RouteMetrics metrics_ GUARDED_BY(mu_);
  // The event the route is blocked on here and its error; the position an
  // operator asked to retry (0: none).
  std::string blocked_id_ GUARDED_BY(mu_);
  std::string blocked_error_ GUARDED_BY(mu_);
  int64_t blocked_retry_position_ GUARDED_BY(mu_) = 0;
};

// ---- Relay -----------------------------------------------------------------

Relay::Relay(Store* store, RelayOptions options)
    : Relay(store, store, std::move(options)) {}

Relay::Relay(EventSource* source, RelayState* state, RelayOptions options)
    : source_(source),
      state_(state),
      options_(std::move(options)),
      shared_(std::make_unique<Shared>()) {
  shared_->owner = options_.owner.empty() ? DefaultOwner() : options_.owner;
}

Relay::~Relay() { Stop(); }

std::string Relay::CheckpointName(const std::string& route) {
  return "relay/" + route;
}
std::string Relay::LeaseName(const std::string& route) {
  return "relay/" + route;
}
std::string Relay::BlockedName(const std::string& route) {
  return "relay-blocked/" + route;
}
std::string Relay::RetryName(const std::string& route) {
  return "relay-retry/" + route;
}

Result<std::unique_ptr<Relay>> Relay::FromConfig(Store* store,
                                                 const Config& config) {
  return FromConfig(store, store, config);
}

Result<std::unique_ptr<Relay>> Relay::FromConfig(EventSource* source,
                                                 RelayState* state,
                                                 const Config& config,
                                                 std::string_view from) {
  auto relay = std::make_unique<Relay>(source, state, config.relay);
  for (const auto& r : config.routes) {
    if (r.from != from) continue;
    HERALD_RETURN_IF_ERROR(relay->AddRoute(r));
  }
  return relay;
}

Status Relay::AddRoute(const RouteConfig& route) {
  return AddRoute(route, nullptr);
}

Status Relay::AddRoute(const RouteConfig& route,
                       std::unique_ptr<Sender> sender) {
  HERALD_RETURN_IF_ERROR(ValidateRoute(route, sender != nullptr));
  detail::MutexLock lock(&shared_->mu);
  if (shared_->started) {
    return Status::FailedPrecondition("routes are added before Start");
  }
  for (const auto& r : routes_) {
    if (r.name == route.name) {
      return Status::InvalidArgument("route '" + route.name +
                                     "' is defined twice");
    }
  }
  routes_.push_back(route);
  given_senders_.push_back(std::move(sender));
  route_sources_.push_back(source_);
  route_polls_.emplace_back(0);
  return Status::OK();
}

Status Relay::AddRoute(const RouteConfig& route, EventSource* source,
                       std::chrono::milliseconds poll) {
  if (!source) return Status::InvalidArgument("no source for the route");
  HERALD_RETURN_IF_ERROR(AddRoute(route));
  detail::MutexLock lock(&shared_->mu);
  route_sources_.back() = source;
  route_polls_.back() = poll;
  return Status::OK();
}

EventSource* Relay::SourceOf(const std::string& route) const {
  for (size_t i = 0; i < routes_.size(); ++i) {
    if (routes_[i].name == route) return route_sources_[i];
  }
  return source_;
}

Status Relay::Start() {
  detail::MutexLock lock(&shared_->mu);
  if (shared_->started) {
    return Status::FailedPrecondition("the relay was started before");
  }
  std::vector<std::unique_ptr<RouteRunner>> runners;
  for (size_t i = 0; i < routes_.size(); ++i) {
    std::unique_ptr<Sender> sender = std::move(given_senders_[i]);
    if (!sender && SchemeOfUrl(routes_[i].sender) == "herald") {
      // herald: appends into the store that keeps this relay's state.
      auto* log = dynamic_cast<EventLog*>(state_);
      if (!log || static_cast<EventSource*>(log) == route_sources_[i]) {
        return Status::FailedPrecondition(
            "route '" + routes_[i].name +
            "': herald: needs a relay reading a [[source]] with herald's "
            "store as its state");
      }
      sender = MakeLogSender(log);
    }
    if (!sender) {
      auto made = MakeSender(routes_[i]);
      if (!made.ok()) {
        return Status(made.status().code(),
                      "route '" + routes_[i].name +
                          "': " + RedactSecrets(made.status().message()));
      }
      sender = std::move(*made);
    }
    RelayOptions opts = options_;
    if (route_polls_[i].count() > 0) {
      opts = SourceRelayOptions(opts, route_polls_[i]);
    }
    runners.push_back(std::make_unique<RouteRunner>(
        this, routes_[i], std::move(sender), route_sources_[i], opts));
  }
  shared_->started = true;
  runners_ = std::move(runners);
  for (auto& r : runners_) r->StartThread();
  shared_->lease_thread = std::thread([this] { LeaseLoop(); });
  return Status::OK();
}

RelayOptions SourceRelayOptions(RelayOptions base,
                                std::chrono::milliseconds poll) {
  base.idle_poll = poll;
  base.busy_poll = poll;
  return base;
}

void Relay::LeaseLoop() {
  detail::NameThisThread("herald-lease");
  std::vector<Clock::time_point> next(runners_.size(), Clock::now());
  shared_->mu.Lock();
  while (!shared_->lease_stop) {
    auto now = Clock::now();
    auto soonest = now + std::chrono::seconds(1);
    for (size_t i = 0; i < runners_.size(); ++i) {
      if (next[i] <= now) {
        shared_->mu.Unlock();
        next[i] = runners_[i]->TendLease(shared_->owner, options_.lease_ttl);
        shared_->mu.Lock();
        if (shared_->lease_stop) break;
      }
      soonest = std::min(soonest, next[i]);
    }
    shared_->cv.WaitUntil(&shared_->mu, soonest);
  }
  shared_->mu.Unlock();
}

void Relay::Stop() noexcept {
  {
    detail::MutexLock lock(&shared_->mu);
    if (shared_->stopping) return;
    shared_->stopping = true;
    shared_->stop.store(true);
    if (!shared_->started) return;
  }
  for (auto& r : runners_) r->Wake(false);
  // Runners finish their sends and save checkpoints; the leases are kept
  // (and renewed) until then so nobody else starts sending meanwhile.
  for (auto& r : runners_) r->Join();
  {
    detail::MutexLock lock(&shared_->mu);
    shared_->lease_stop = true;
  }
  shared_->cv.SignalAll();
  if (shared_->lease_thread.joinable()) shared_->lease_thread.join();
  for (auto& r : runners_) r->ReleaseLease(shared_->owner);
}

void Relay::Wake() {
  for (auto& r : runners_) r->Wake(false);
}

std::vector<std::string> Relay::route_names() const {
  std::vector<std::string> names;
  for (const auto& r : routes_) names.push_back(r.name);
  return names;
}

Status Relay::CheckRoute(const std::string& route) const {
  for (const auto& r : routes_) {
    if (r.name == route) return Status::OK();
  }
  return Status::NotFound("no route named '" + route + "'");
}

Result<RouteStatus> Relay::GetStatus(const std::string& route) const {
  const RouteConfig* cfg = nullptr;
  size_t index = 0;
  for (size_t i = 0; i < routes_.size(); ++i) {
    if (routes_[i].name == route) {
      cfg = &routes_[i];
      index = i;
    }
  }
  if (!cfg) return Status::NotFound("no route named '" + route + "'");
  EventSource* source = route_sources_[index];
  RouteStatus s;
  s.name = cfg->name;
  s.sender = RedactSecrets(cfg->sender);
  s.on_failure = std::string(FailurePolicyName(cfg->on_failure));
  auto cp = state_->GetCheckpoint(CheckpointName(route));
  if (!cp.ok()) return cp.status();
  s.checkpoint = std::max<int64_t>(*cp, 1);
  auto head = source->Head();
  if (!head.ok()) return head.status();
  s.head = *head;
  s.lag_events = std::max<int64_t>(0, s.head - s.checkpoint + 1);
  // The event a blocked route stopped on (a marker left below the
  // checkpoint is stale: the route got past it).
  auto blocked = state_->GetCheckpoint(BlockedName(route));
  if (!blocked.ok()) return blocked.status();
  if (*blocked >= s.checkpoint && *blocked > 0) {
    ReadRequest one;
    one.offset = *blocked;
    one.limit = 1;
    auto page = source->Read(one);
    if (!page.ok()) return page.status();
    if (!page->events.empty() && page->events[0].position == *blocked) {
      s.blocked_id = page->events[0].id;
      s.blocked_position = *blocked;
    }
  }
  int64_t now = NowMicros();
  if (s.lag_events > 0) {
    ReadRequest req;
    req.offset = s.checkpoint;
    req.types = cfg->types;
    req.limit = 100;
    for (int pages = 0; pages < 10; ++pages) {
      auto page = source->Read(req);
      if (!page.ok()) return page.status();
      bool found = false;
      for (const auto& e : page->events) {
        if (!MatchesAny(cfg->streams, e.stream)) continue;
        s.lag_seconds = std::max<double>(
            0, static_cast<double>(now - e.occurred_at_us) / 1e6);
        found = true;
        break;
      }
      if (found || page->events.empty() || page->next_offset == req.offset) {
        break;
      }
      req.offset = page->next_offset;
    }
  }
  // One query each: the counts by state, the route's status row, the
  // lease. Never a listing of the parked rows.
  auto parked = state_->CountParkedByState(route);
  if (!parked.ok()) return parked.status();
  s.parked = parked->parked;
  s.held = parked->held;
  s.retry = parked->retry;
  s.parked_only = parked->parked;
  // Parked, held and retry rows are undelivered too: the oldest of them
  // counts when it occurred before the first event past the checkpoint.
  if (parked->total() > 0 && parked->oldest_occurred_at_us > 0) {
    s.lag_seconds = std::max(
        s.lag_seconds,
        std::max<double>(
            0, static_cast<double>(now - parked->oldest_occurred_at_us) / 1e6));
  }
  auto row = state_->GetRouteStatus(route);
  if (!row.ok()) return row.status();
  if (row->has_value()) {
    // Masked again on the way out: rows written by older versions.
    s.last_error = RedactSecrets((*row)->last_error);
    s.last_error_at_us = (*row)->last_error_at_us;
  }
  if (!s.blocked_id.empty()) s.blocked_error = s.last_error;
  auto lease = state_->GetLease(LeaseName(route));
  if (!lease.ok()) return lease.status();
  if (lease->has_value() && (*lease)->expires_at_us > NowMicros()) {
    s.lease_owner = (*lease)->owner;
    s.lease_expires_at_us = (*lease)->expires_at_us;
  }
  if (index < runners_.size()) runners_[index]->FillStatus(&s);
  return s;
}

Result<std::vector<RouteStatus>> Relay::GetStatuses() const {
  std::vector<RouteStatus> out;
  for (const auto& r : routes_) {
    auto s = GetStatus(r.name);
    if (!s.ok()) return s.status();
    out.push_back(std::move(*s));
  }
  return out;
}

std::vector<RouteMetrics> Relay::GetMetrics() const {
  std::vector<RouteMetrics> out;
  for (size_t i = 0; i < routes_.size(); ++i) {
    if (i < runners_.size()) {
      out.push_back(runners_[i]->Metrics());
    } else {
      RouteMetrics m;
      m.name = routes_[i].name;
      InitHistogram(&m.send_latency, LatencyBounds());
      InitHistogram(&m.commit_to_ack, CommitToAckBounds());
      out.push_back(std::move(m));
    }
  }
  return out;
}

Result<std::vector<ParkedEvent>> Relay::ListParked(const std::string& route,
                                                   const std::string& state,
                                                   int limit) const {
  HERALD_RETURN_IF_ERROR(CheckRoute(route));
  if (!state.empty() && state != "parked" && state != "held" &&
      state != "retry") {
    return Status::InvalidArgument("unknown parked state '" + state +
                                   "' (expected parked, held or retry)");
  }
  auto list = state_->ListParked(route, state, limit);
  if (!list.ok()) return list.status();
  for (auto& p : *list) p.error = RedactSecrets(p.error);
  return list;
}

Result<std::optional<ParkedEvent>> Relay::GetParked(
    const std::string& route, const std::string& id) const {
  HERALD_RETURN_IF_ERROR(CheckRoute(route));
  auto row = state_->GetParked(route, id);
  if (row.ok() && row->has_value())
    (*row)->error = RedactSecrets((*row)->error);
  return row;
}

Status Relay::RetryParked(const std::string& route, const std::string& id) {
  HERALD_RETURN_IF_ERROR(CheckRoute(route));
  Status parked = state_->SetParkedState(route, id, "retry");
  if (!parked.ok() && !parked.IsNotFound()) return parked;
  // The event a blocked route stopped on is retried the same way: the
  // position is left in the store for the relay holding the lease (any
  // process), and this process's runner is told at once.
  int64_t blocked_position = 0;
  auto blocked = state_->GetCheckpoint(BlockedName(route));
  if (!blocked.ok()) return blocked.status();
  auto cp = state_->GetCheckpoint(CheckpointName(route));
  if (!cp.ok()) return cp.status();
  if (*blocked > 0 && *blocked >= *cp) {
    ReadRequest one;
    one.offset = *blocked;
    one.limit = 1;
    auto page = SourceOf(route)->Read(one);
    if (!page.ok()) return page.status();
    if (!page->events.empty() && page->events[0].position == *blocked &&
        (id.empty() || SameId(page->events[0].id, id))) {
      blocked_position = *blocked;
    }
  }
  if (blocked_position == 0 && !parked.ok()) return parked;
  bool told = false;  // a runner of this process holding the lease was told
  for (size_t i = 0; i < runners_.size(); ++i) {
    if (routes_[i].name != route) continue;
    if (parked.ok()) runners_[i]->Wake(true);
    if (blocked_position > 0 && runners_[i]->HoldsLease()) {
      runners_[i]->RetryBlocked(blocked_position);
      told = true;
    }
  }
  if (blocked_position > 0 && !told) {
    HERALD_RETURN_IF_ERROR(
        state_->SaveCheckpoint(RetryName(route), blocked_position));
  }
  return Status::OK();
}

Status Relay::DropParked(const std::string& route, const std::string& id) {
  HERALD_RETURN_IF_ERROR(CheckRoute(route));
  auto tx = state_->Begin();
  if (!tx.ok()) return tx.status();
  HERALD_RETURN_IF_ERROR(state_->DropParked(**tx, route, id));
  HERALD_RETURN_IF_ERROR((*tx)->Commit());
  for (size_t i = 0; i < runners_.size(); ++i) {
    if (routes_[i].name == route) runners_[i]->Wake(true);
  }
  return Status::OK();
}

}  // namespace herald
