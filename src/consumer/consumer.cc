// Consumer (see include/herald/consumer.h): one source thread (Poll, Ack,
// Release, KeepAlive, Lag: the source is only ever called from it), a pool
// of max_in_flight workers taking one ordering key at a time, and one
// housekeeping thread (parked retries, the inbox sweep, the saved status).
//
// Locks: mu_ guards the key lanes and the ack queues; park_mu_ guards the
// set of streams held behind a parked event and is held while a held row
// is written, so a stream is never released while a row joins it. Lock
// order: park_mu_ before mu_ (never both in practice).
#include "herald/consumer.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "herald/config.h"  // GlobMatch
#include "herald/dispatcher.h"
#include "herald/redact.h"
#include "herald/time.h"
#include "util/thread_annotations.h"
#include "util/thread_name.h"

namespace herald {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kMaxParkedScan = 100000;
constexpr size_t kMaxErrorLength = 2000;

// The names a consumer's saved status lives under (RelayState checkpoints).
std::string StatName(const std::string& consumer, const char* what) {
  return ConsumerCheckpointName(consumer) + "/" + what;
}

template <typename F>
Status Guarded(F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("handler threw: ") + e.what());
  } catch (...) {
    return Status::Internal("handler threw");
  }
}

}  // namespace

struct Consumer::Impl {
  enum class Outcome { kAck, kRelease };
  struct Lane {
    std::deque<SourceDelivery> queue;
  };

  Impl(ConsumerOptions o, std::unique_ptr<ConsumerSource> s)
      : options(std::move(o)),
        source(std::move(s)),
        route(ConsumerCheckpointName(options.name)) {}

  ConsumerOptions options;
  std::unique_ptr<ConsumerSource> source;
  const std::string route;  // parked rows, checkpoint: "consumer:NAME"
  InboxHandler tx_handler;
  ExternalHandler external_handler;
  Dispatcher* dispatcher = nullptr;

  std::atomic<bool> stopping{false};
  std::atomic<bool> started{false};
  std::thread source_thread;
  std::thread house_thread;
  std::vector<std::thread> workers;

  mutable detail::Mutex mu;
  detail::CondVar work_cv;     // a lane became ready, or the workers may exit
  detail::CondVar house_cv;    // stopping (wakes the housekeeping thread)
  detail::CondVar drained_cv;  // a delivery finished
  std::unordered_map<std::string, Lane> lanes GUARDED_BY(mu);
  std::deque<std::string> ready GUARDED_BY(mu);  // keys with work, not busy
  std::unordered_set<std::string> busy GUARDED_BY(mu);
  std::vector<uint64_t> acks GUARDED_BY(mu);
  std::vector<uint64_t> releases GUARDED_BY(mu);
  std::set<uint64_t> running GUARDED_BY(mu);  // handles being handled
  uint64_t in_hand GUARDED_BY(mu) = 0;
  bool workers_exit GUARDED_BY(mu) = false;
  bool wake_drain GUARDED_BY(mu) = false;
  ConsumerStats stats GUARDED_BY(mu);
  Status failure GUARDED_BY(mu);

  detail::Mutex park_mu ACQUIRED_BEFORE(mu);
  std::unordered_set<std::string> held_streams GUARDED_BY(park_mu);

  // Saved totals at start (this consumer's earlier runs).
  int64_t base_handled = 0;
  int64_t base_duplicates = 0;

  void Log(const std::string& line) const {
    std::string text = "consumer '" + options.name + "': " + line;
    if (options.on_log) {
      try {
        options.on_log(text);
      } catch (...) {
      }
      return;
    }
    std::fprintf(stderr, "herald: %s\n", text.c_str());
  }

  void RecordError(const std::string& error) {
    std::string text = RedactSecrets(error).substr(0, kMaxErrorLength);
    Log(text);
    detail::MutexLock lock(&mu);
    stats.last_error = text;
  }

  // Full-jitter exponential backoff, as the relay's routes do.
  milliseconds Backoff(int round, std::mt19937_64& rng) const {
    const auto& p = options.retry;
    double d = static_cast<double>(p.backoff_initial.count());
    for (int i = 1; i < round && d < p.backoff_max.count(); ++i) d *= 2;
    d = std::min(d, static_cast<double>(p.backoff_max.count()));
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    return std::max(milliseconds(static_cast<int64_t>(d * jitter(rng))),
                    milliseconds(1));
  }

  // Sleeps until `deadline` or Stop; returns false when stopping.
  bool SleepUntil(Clock::time_point deadline) {
    detail::MutexLock lock(&mu);
    while (!stopping.load() && Clock::now() < deadline) {
      house_cv.WaitUntil(&mu, deadline);
    }
    return !stopping.load();
  }

  bool Selected(const Event& e) const {
    if (options.types.empty()) return true;
    for (const auto& t : options.types) {
      if (GlobMatch(t, e.type)) return true;
    }
    return false;
  }

  // ---- Handling one event -----------------------------------------------

  // Handles `event` once: OK with *duplicate when the inbox had it already.
  Status HandleOnce(const Event& event, bool* duplicate) const {
    *duplicate = false;
    Store* inbox = options.inbox;
    if (external_handler) {
      if (inbox) {
        auto seen = inbox->IsHandled(options.name, event.id);
        if (!seen.ok()) return seen.status();
        if (*seen) {
          *duplicate = true;
          return Status::OK();
        }
      }
      HERALD_RETURN_IF_ERROR(Guarded([&] { return external_handler(event); }));
      if (!inbox) return Status::OK();
      // The handler succeeded: record it. A crash before this commit makes
      // the event be handled again (docs/consumers.md).
      auto tx = inbox->Begin();
      if (!tx.ok()) return tx.status();
      auto fresh = inbox->MarkHandled(**tx, options.name, event.id);
      if (!fresh.ok()) return fresh.status();
      return (*tx)->Commit();
    }
    if (dispatcher) {
      auto uow = dispatcher->Begin();
      if (!uow.ok()) return uow.status();
      if (inbox) {
        auto fresh =
            inbox->MarkHandled((*uow)->transaction(), options.name, event.id);
        if (!fresh.ok()) return fresh.status();
        if (!*fresh) {
          *duplicate = true;
          return (*uow)->Rollback();
        }
      }
      HERALD_RETURN_IF_ERROR((*uow)->Receive(event));
      return (*uow)->Commit();
    }
    if (!inbox) return Guarded([&] { return tx_handler(event, nullptr); });
    auto tx = inbox->Begin();
    if (!tx.ok()) return tx.status();
    auto fresh = inbox->MarkHandled(**tx, options.name, event.id);
    if (!fresh.ok()) return fresh.status();
    if (!*fresh) {
      *duplicate = true;
      return (*tx)->Rollback();
    }
    Status s = Guarded([&] { return tx_handler(event, tx->get()); });
    if (!s.ok()) {
      (void)(*tx)->Rollback();
      return s;
    }
    return (*tx)->Commit();
  }

  void CountHandled(bool duplicate) {
    detail::MutexLock lock(&mu);
    if (duplicate) {
      ++stats.duplicates;
    } else {
      ++stats.handled;
      stats.last_handled_at_us = NowMicros();
    }
  }

  // Writes one parked row in a transaction of its own (one attempt).
  Status TryPark(ParkedEvent p) {
    p.route = route;
    p.keep_event = true;
    // Arrival order for events of a source without positions, so the
    // parked list (in position order) keeps each stream's order.
    if (p.event.position == 0) p.event.position = NowMicros();
    auto tx = options.inbox->Begin();
    Status s = tx.ok() ? options.inbox->Park(**tx, p) : tx.status();
    if (s.ok()) s = (*tx)->Commit();
    if (!s.ok())
      RecordError("parking event " + p.event.id + ": " + s.ToString());
    return s;
  }

  // Parks `event` ("parked", with its error) and holds its stream. Retries
  // while the store fails, until Stop. False when stopping first, or when
  // the row cannot be written at all (a non-UUID id on PostgreSQL): the
  // caller then keeps the event in hand, as under block.
  bool ParkAndHold(const Event& event, int attempts, const std::string& error,
                   int64_t first_failed_us, std::mt19937_64& rng) {
    ParkedEvent p;
    p.event = event;
    p.state = "parked";
    p.attempts = attempts;
    p.first_failed_at_us = first_failed_us;
    p.error = RedactSecrets(error).substr(0, kMaxErrorLength);
    for (int round = 1;; ++round) {
      Status s = TryPark(p);
      if (s.ok()) break;
      if (!s.retryable()) return false;
      if (!SleepUntil(Clock::now() + Backoff(round, rng))) return false;
    }
    detail::MutexLock lock(&park_mu);
    held_streams.insert(event.stream);
    detail::MutexLock l2(&mu);
    ++stats.parked;
    return true;
  }

  enum class Hold { kNotHeld, kHeld, kStopped };
  // Parks `event` as held when its stream is held. The held row is written
  // under park_mu, so the stream cannot be released meanwhile; the lock is
  // not held while waiting to try again.
  Hold HoldIfHeld(const Event& event, std::mt19937_64& rng) {
    if (!options.inbox) return Hold::kNotHeld;
    for (int round = 1;; ++round) {
      {
        detail::MutexLock lock(&park_mu);
        if (!held_streams.count(event.stream)) return Hold::kNotHeld;
        ParkedEvent h;
        h.event = event;
        h.state = "held";
        h.error = "held behind a parked event of stream " + event.stream;
        if (TryPark(std::move(h)).ok()) {
          detail::MutexLock l2(&mu);
          ++stats.held;
          return Hold::kHeld;
        }
      }
      if (!SleepUntil(Clock::now() + Backoff(round, rng))) {
        return Hold::kStopped;
      }
    }
  }

  Outcome Process(const SourceDelivery& d, std::mt19937_64& rng) {
    const Event& event = d.event;
    if (!d.decode_status.ok()) {
      // Parked at once; without an inbox (or when the row cannot be
      // written) given back, so the broker keeps it (its redelivery or
      // dead-letter policy applies).
      RecordError("a message that does not decode: " +
                  d.decode_status.ToString());
      if (!options.inbox) return Outcome::kRelease;
      return ParkAndHold(event, 0, d.decode_status.ToString(), NowMicros(), rng)
                 ? Outcome::kAck
                 : Outcome::kRelease;
    }
    if (!Selected(event)) {
      detail::MutexLock lock(&mu);
      ++stats.filtered;
      return Outcome::kAck;
    }
    switch (HoldIfHeld(event, rng)) {
      case Hold::kHeld:
        return Outcome::kAck;
      case Hold::kStopped:
        return Outcome::kRelease;
      case Hold::kNotHeld:
        break;
    }
    bool can_park = options.on_failure == FailurePolicy::kPark;
    int64_t first_failed_us = 0;
    for (int attempt = 1;; ++attempt) {
      bool duplicate = false;
      Status s = HandleOnce(event, &duplicate);
      if (s.ok()) {
        CountHandled(duplicate);
        return Outcome::kAck;
      }
      if (first_failed_us == 0) first_failed_us = NowMicros();
      {
        detail::MutexLock lock(&mu);
        ++stats.failures;
      }
      RecordError("event " + event.id + " (stream " + event.stream +
                  ", attempt " + std::to_string(attempt) +
                  "): " + s.ToString());
      if (can_park &&
          (attempt >= options.retry.max_attempts || !s.retryable())) {
        if (ParkAndHold(event, attempt, s.ToString(), first_failed_us, rng)) {
          return Outcome::kAck;
        }
        if (stopping.load()) return Outcome::kRelease;
        // The row cannot be written: retried in place, as under block.
        can_park = false;
      }
      if (stopping.load()) return Outcome::kRelease;
      if (!SleepUntil(Clock::now() + Backoff(attempt, rng))) {
        return Outcome::kRelease;
      }
    }
  }

  void WorkerLoop() {
    detail::NameThisThread("herald-worker");
    std::mt19937_64 rng(std::random_device{}());
    detail::MutexLock lock(&mu);
    while (true) {
      while (ready.empty() && !workers_exit) work_cv.Wait(&mu);
      if (ready.empty()) break;
      std::string key = std::move(ready.front());
      ready.pop_front();
      Lane& lane = lanes[key];
      SourceDelivery d = std::move(lane.queue.front());
      lane.queue.pop_front();
      busy.insert(key);
      running.insert(d.handle);
      mu.Unlock();
      Outcome o = Process(d, rng);
      mu.Lock();
      running.erase(d.handle);
      busy.erase(key);
      Lane& after = lanes[key];
      if (o == Outcome::kAck) {
        acks.push_back(d.handle);
      } else {
        // Given back: so is everything after it of its key (order).
        releases.push_back(d.handle);
        for (auto& rest : after.queue) releases.push_back(rest.handle);
        after.queue.clear();
      }
      if (after.queue.empty()) {
        lanes.erase(key);
      } else {
        ready.push_back(key);
        work_cv.Signal();
      }
      // The source thread polls with a short timeout while anything is in
      // hand, so it picks this acknowledgement up within it; Wake is kept
      // for Stop (it would cut a fetch in progress short).
      drained_cv.SignalAll();
    }
  }

  // ---- The source thread --------------------------------------------------

  // Hands the queued acknowledgements and releases to the source.
  void FlushAcks() {
    std::vector<uint64_t> a, r;
    {
      detail::MutexLock lock(&mu);
      a.swap(acks);
      r.swap(releases);
      in_hand -= a.size() + r.size();
      stats.in_hand = in_hand;
    }
    if (!a.empty()) {
      Status s = source->Ack(a);
      if (!s.ok()) RecordError("acknowledging: " + s.ToString());
    }
    if (!r.empty()) {
      Status s = source->Release(r);
      if (!s.ok()) RecordError("releasing: " + s.ToString());
    }
  }

  void Fail(const Status& s) {
    RecordError("stopped: " + s.ToString());
    detail::MutexLock lock(&mu);
    failure = s;
  }

  void SourceLoop() {
    detail::NameThisThread("herald-source");
    std::mt19937_64 rng(std::random_device{}());
    for (int round = 1; !stopping.load(); ++round) {
      Status s = source->Start();
      if (s.ok()) break;
      if (!s.IsUnavailable()) {
        Fail(s);
        stopping.store(true);
        break;
      }
      RecordError("connecting the source: " + s.ToString());
      SleepUntil(Clock::now() + Backoff(round, rng));
    }
    auto next_tick = Clock::now();
    int poll_errors = 0;
    while (!stopping.load()) {
      FlushAcks();
      if (Clock::now() >= next_tick) {
        next_tick = Clock::now() + std::chrono::seconds(1);
        std::vector<uint64_t> alive;
        {
          detail::MutexLock lock(&mu);
          alive.assign(running.begin(), running.end());
        }
        if (!alive.empty()) source->KeepAlive(alive);
        auto lag = source->Lag();
        detail::MutexLock lock(&mu);
        stats.lag = lag;
      }
      int room;
      uint64_t now_in_hand;
      {
        detail::MutexLock lock(&mu);
        room = options.max_in_hand - static_cast<int>(in_hand);
        now_in_hand = in_hand;
        if (room <= 0) {
          // Full: wait for a delivery to finish.
          drained_cv.WaitUntil(&mu, Clock::now() + milliseconds(100));
          continue;
        }
      }
      auto polled = source->Poll(
          room, now_in_hand > 0 ? milliseconds(20) : milliseconds(500));
      if (!polled.ok()) {
        if (!polled.status().IsUnavailable()) {
          Fail(polled.status());
          break;
        }
        RecordError("polling the source: " + polled.status().ToString());
        SleepUntil(Clock::now() + Backoff(++poll_errors, rng));
        continue;
      }
      poll_errors = 0;
      if (polled->empty()) continue;
      detail::MutexLock lock(&mu);
      in_hand += polled->size();
      stats.in_hand = in_hand;
      for (auto& d : *polled) {
        std::string key = d.key.empty() ? d.event.stream : d.key;
        Lane& lane = lanes[key];
        bool was_idle = lane.queue.empty() && !busy.count(key);
        lane.queue.push_back(std::move(d));
        if (was_idle) {
          ready.push_back(key);
          work_cv.Signal();
        }
      }
    }
    // Stop: no more polling; the workers finish what is in hand.
    {
      detail::MutexLock lock(&mu);
      workers_exit = true;
      work_cv.SignalAll();
    }
    for (auto& w : workers) w.join();
    FlushAcks();
    source->Close();
  }

  // ---- Housekeeping: parked retries, sweep, saved status ------------------

  // Reloads the held streams from the store (parked rows of this consumer).
  Status LoadHeld() {
    auto rows = options.inbox->ListParked(route, "", kMaxParkedScan);
    if (!rows.ok()) return rows.status();
    detail::MutexLock lock(&park_mu);
    for (const auto& p : *rows) held_streams.insert(p.event.stream);
    return Status::OK();
  }

  // One parked/held row: handled with retries (max_attempts); dropped on
  // success, parked again on failure. Returns whether it was handled.
  bool Redeliver(const ParkedEvent& p, std::mt19937_64& rng) {
    int64_t first_failed_us = p.first_failed_at_us;  // 0 for a held row
    for (int attempt = 1;; ++attempt) {
      bool duplicate = false;
      Status s = HandleOnce(p.event, &duplicate);
      if (s.ok()) {
        CountHandled(duplicate);
        auto tx = options.inbox->Begin();
        Status d = tx.ok() ? options.inbox->DropParked(**tx, route, p.event.id)
                           : tx.status();
        if (d.ok()) d = (*tx)->Commit();
        if (!d.ok() && !d.IsNotFound()) {
          RecordError("dropping a handled parked event: " + d.ToString());
          return false;
        }
        return true;
      }
      if (first_failed_us == 0) first_failed_us = NowMicros();
      {
        detail::MutexLock lock(&mu);
        ++stats.failures;
      }
      RecordError("parked event " + p.event.id + " (attempt " +
                  std::to_string(attempt) + "): " + s.ToString());
      if (attempt >= options.retry.max_attempts || !s.retryable() ||
          stopping.load()) {
        ParkedEvent again = p;
        again.state = "parked";
        again.attempts = p.attempts + attempt;
        again.error = RedactSecrets(s.ToString()).substr(0, kMaxErrorLength);
        again.parked_at_us = 0;
        again.first_failed_at_us = first_failed_us;
        for (int round = 1; !TryPark(again).ok(); ++round) {
          if (!SleepUntil(Clock::now() + Backoff(round, rng))) break;
        }
        detail::MutexLock lock(&mu);
        ++stats.parked;
        return false;
      }
      if (!SleepUntil(Clock::now() + Backoff(attempt, rng))) return false;
    }
  }

  // Handles the parked rows an operator asked to retry, and the held rows
  // of streams with nothing parked before them, in order per stream.
  void DrainParked(std::mt19937_64& rng) {
    {
      detail::MutexLock lock(&park_mu);
      if (held_streams.empty()) return;
    }
    auto rows = options.inbox->ListParked(route, "", kMaxParkedScan);
    if (!rows.ok()) {
      RecordError("listing parked events: " + rows.status().ToString());
      return;
    }
    std::map<std::string, std::vector<const ParkedEvent*>> by_stream;
    for (const auto& r : *rows) by_stream[r.event.stream].push_back(&r);
    for (const auto& [stream, list] : by_stream) {
      bool done = true;
      for (const ParkedEvent* p : list) {
        if (stopping.load()) return;
        if (p->state != "retry" && p->state != "held") {
          done = false;
          break;
        }
        if (!Redeliver(*p, rng)) {
          done = false;
          break;
        }
      }
      if (!done) continue;
      // Release the stream unless rows joined it meanwhile (then the next
      // round handles them).
      detail::MutexLock lock(&park_mu);
      auto again = options.inbox->ListParked(route, "", kMaxParkedScan);
      if (!again.ok()) continue;
      bool left = false;
      for (const auto& r : *again) left = left || r.event.stream == stream;
      if (!left) held_streams.erase(stream);
    }
    // Streams whose rows were dropped by an operator.
    detail::MutexLock lock(&park_mu);
    for (auto it = held_streams.begin(); it != held_streams.end();) {
      if (!by_stream.count(*it)) {
        it = held_streams.erase(it);
      } else {
        ++it;
      }
    }
  }

  void Sweep() {
    for (;;) {
      if (stopping.load()) return;
      auto n = options.inbox->SweepInboxBatch(
          options.name, options.inbox_retention, options.sweep_batch);
      if (!n.ok()) {
        RecordError("sweeping the inbox: " + n.status().ToString());
        return;
      }
      {
        detail::MutexLock lock(&mu);
        stats.swept += static_cast<uint64_t>(*n);
      }
      if (*n < options.sweep_batch) return;
      // Between batches the handlers get the write lock.
      std::this_thread::sleep_for(milliseconds(2));
    }
  }

  void SaveStatus(const std::optional<int64_t>& lag) {
    ConsumerStats s;
    {
      detail::MutexLock lock(&mu);
      s = stats;
    }
    auto tx = options.inbox->BeginRelaxed();
    if (!tx.ok()) return;
    RelayState* st = options.inbox;
    Status r =
        st->SaveCheckpoint(**tx, StatName(options.name, "handled"),
                           base_handled + static_cast<int64_t>(s.handled));
    if (r.ok()) {
      r = st->SaveCheckpoint(
          **tx, StatName(options.name, "duplicates"),
          base_duplicates + static_cast<int64_t>(s.duplicates));
    }
    if (r.ok() && s.last_handled_at_us) {
      r = st->SaveCheckpoint(**tx, StatName(options.name, "last_handled_at"),
                             s.last_handled_at_us);
    }
    if (r.ok()) {
      r = st->SaveCheckpoint(**tx, StatName(options.name, "lag"),
                             lag.value_or(-1));
    }
    if (r.ok()) {
      r = st->SaveCheckpoint(**tx, StatName(options.name, "updated_at"),
                             NowMicros());
    }
    if (r.ok()) r = (*tx)->Commit();
  }

  void HouseLoop() {
    detail::NameThisThread("herald-house");
    std::mt19937_64 rng(std::random_device{}());
    if (!options.inbox) return;
    auto next_sweep = Clock::now();
    auto next_save = Clock::now();
    auto next_drain = Clock::now();
    while (!stopping.load()) {
      auto now = Clock::now();
      if (now >= next_drain) {
        DrainParked(rng);
        next_drain = Clock::now() + options.parked_poll;
      }
      if (now >= next_sweep) {
        Sweep();
        next_sweep = Clock::now() + options.sweep_interval;
      }
      if (now >= next_save) {
        std::optional<int64_t> lag;
        {
          detail::MutexLock lock(&mu);
          lag = stats.lag;
        }
        SaveStatus(lag);
        next_save = Clock::now() + std::chrono::seconds(1);
      }
      auto wake = std::min({next_drain, next_sweep, next_save});
      detail::MutexLock lock(&mu);
      while (!stopping.load() && !wake_drain && Clock::now() < wake) {
        house_cv.WaitUntil(&mu, wake);
      }
      if (wake_drain) {
        wake_drain = false;
        next_drain = Clock::now();
      }
    }
    std::optional<int64_t> lag;
    {
      detail::MutexLock lock(&mu);
      lag = stats.lag;
    }
    SaveStatus(lag);
  }
};

Consumer::Consumer(ConsumerOptions options,
                   std::unique_ptr<ConsumerSource> source)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(source))) {}

Consumer::~Consumer() { Stop(); }

void Consumer::SetHandler(InboxHandler handler) {
  impl_->tx_handler = std::move(handler);
}
void Consumer::SetExternalHandler(ExternalHandler handler) {
  impl_->external_handler = std::move(handler);
}
void Consumer::SetDispatcher(Dispatcher* dispatcher) {
  impl_->dispatcher = dispatcher;
}

const ConsumerOptions& Consumer::options() const { return impl_->options; }

Status Consumer::Start() {
  Impl& m = *impl_;
  if (m.started.load()) return Status::FailedPrecondition("already started");
  const auto& o = m.options;
  if (o.name.empty()) return Status::InvalidArgument("a consumer needs a name");
  if (!m.source) return Status::InvalidArgument("a consumer needs a source");
  int handlers = (m.tx_handler ? 1 : 0) + (m.external_handler ? 1 : 0) +
                 (m.dispatcher ? 1 : 0);
  if (handlers != 1) {
    return Status::InvalidArgument("consumer '" + o.name +
                                   "' needs exactly one handler (" +
                                   std::to_string(handlers) + " set)");
  }
  if (o.on_failure == FailurePolicy::kPark && !o.inbox) {
    return Status::InvalidArgument("consumer '" + o.name +
                                   "': on_failure = park needs an inbox");
  }
  if (o.max_in_flight < 1 || o.max_in_flight > 1024) {
    return Status::InvalidArgument("max_in_flight must be between 1 and 1024");
  }
  if (o.max_in_hand < 1 || o.retry.max_attempts < 1 || o.sweep_batch < 1) {
    return Status::InvalidArgument(
        "max_in_hand, max_attempts and sweep_batch must be at least 1");
  }
  if (o.inbox) {
    HERALD_RETURN_IF_ERROR(m.LoadHeld());
    auto saved = o.inbox->ListCheckpoints(m.route + "/");
    if (saved.ok()) {
      for (const auto& [name, value] : *saved) {
        if (name == StatName(o.name, "handled")) m.base_handled = value;
        if (name == StatName(o.name, "duplicates")) m.base_duplicates = value;
      }
    }
  }
  m.started.store(true);
  for (int i = 0; i < o.max_in_flight; ++i) {
    m.workers.emplace_back([&m] { m.WorkerLoop(); });
  }
  m.source_thread = std::thread([&m] { m.SourceLoop(); });
  m.house_thread = std::thread([&m] { m.HouseLoop(); });
  return Status::OK();
}

void Consumer::Stop() noexcept {
  Impl& m = *impl_;
  if (!m.started.load()) return;
  m.stopping.store(true);
  {
    detail::MutexLock lock(&m.mu);
    m.house_cv.SignalAll();
    m.drained_cv.SignalAll();
  }
  m.source->Wake();
  if (m.source_thread.joinable()) m.source_thread.join();
  if (m.house_thread.joinable()) m.house_thread.join();
  m.started.store(false);
}

bool Consumer::failed() const {
  detail::MutexLock lock(&impl_->mu);
  return !impl_->failure.ok();
}

Status Consumer::error() const {
  detail::MutexLock lock(&impl_->mu);
  return impl_->failure;
}

ConsumerStats Consumer::stats() const {
  detail::MutexLock lock(&impl_->mu);
  return impl_->stats;
}

// ---- Operator calls ---------------------------------------------------------

Result<std::vector<ParkedEvent>> ListConsumerParked(RelayState* store,
                                                    const std::string& name,
                                                    const std::string& state,
                                                    int limit) {
  if (!state.empty() && state != "parked" && state != "held" &&
      state != "retry") {
    return Status::InvalidArgument("unknown parked state '" + state +
                                   "' (expected parked, held or retry)");
  }
  auto list = store->ListParked(ConsumerCheckpointName(name), state, limit);
  if (!list.ok()) return list.status();
  for (auto& p : *list) p.error = RedactSecrets(p.error);
  return list;
}

Status RetryConsumerParked(RelayState* store, const std::string& name,
                           const std::string& id) {
  return store->SetParkedState(ConsumerCheckpointName(name), id, "retry");
}

Status DropConsumerParked(RelayState* store, const std::string& name,
                          const std::string& id) {
  auto tx = store->Begin();
  if (!tx.ok()) return tx.status();
  HERALD_RETURN_IF_ERROR(
      store->DropParked(**tx, ConsumerCheckpointName(name), id));
  return (*tx)->Commit();
}

Result<ConsumerStatusRow> ReadConsumerStatus(RelayState* store,
                                             const std::string& name) {
  ConsumerStatusRow row;
  auto cp = store->GetCheckpoint(ConsumerCheckpointName(name));
  if (!cp.ok()) return cp.status();
  row.checkpoint = *cp;
  auto saved = store->ListCheckpoints(ConsumerCheckpointName(name) + "/");
  if (!saved.ok()) return saved.status();
  for (const auto& [key, value] : *saved) {
    if (key == StatName(name, "handled")) row.handled = value;
    if (key == StatName(name, "duplicates")) row.duplicates = value;
    if (key == StatName(name, "last_handled_at"))
      row.last_handled_at_us = value;
    if (key == StatName(name, "lag")) row.lag = value;
    if (key == StatName(name, "updated_at")) row.updated_at_us = value;
  }
  auto parked = store->CountParkedByState(ConsumerCheckpointName(name));
  if (!parked.ok()) return parked.status();
  row.parked = *parked;
  return row;
}

}  // namespace herald
