// The `herald:` sender: appends a route's events into herald's own event
// log (the [store] of `herald relay` / `herald serve`), so events adopted
// from an application's outbox table ([[source]]) get dense positions and
// every other route, the HTTP API, SSE and consumers see them. Made by the
// relay (Relay::Start) with the store that keeps its state; see
// herald/sender.h MakeLogSender.
//
// Idempotent by event id (EventLog::Append): a batch sent again after a
// crash (same derived ids) stores nothing twice and is acknowledged.
//
// Thread safety: called by one relay thread at a time (the Sender
// contract); the log is safe from many threads.
#include <set>

#include "herald/event_log.h"
#include "herald/sender.h"

namespace herald {

namespace {

class LogSender : public Sender {
 public:
  explicit LogSender(EventLog* log) : log_(log) {}

  void Send(std::span<const Event> events, std::span<SendResult> results,
            std::chrono::steady_clock::time_point deadline) override {
    // One local transaction, started only before the deadline.
    if (std::chrono::steady_clock::now() >= deadline) return;  // NotSent
    std::vector<Event> copy(events.begin(), events.end());
    for (auto& e : copy) {
      e.position = 0;  // the log assigns its own
      e.stream_version = 0;
    }
    // The whole batch in one transaction: all stored, or none.
    auto all = log_->Append(copy);
    if (all.ok() || all.status().retryable()) {
      for (auto& r : results) {
        r = SendResult();
        r.status = all.ok() ? Status::OK() : all.status();
      }
      return;
    }
    // A permanent error (an event the log refuses): one at a time, so only
    // that event fails, and the rest of its stream is not sent.
    std::set<std::string> stopped;
    for (size_t i = 0; i < copy.size(); ++i) {
      if (stopped.count(copy[i].stream)) continue;  // NotSent
      auto one = log_->Append(std::span<Event>(&copy[i], 1));
      results[i] = SendResult();
      results[i].status = one.ok() ? Status::OK() : one.status();
      if (!one.ok()) stopped.insert(copy[i].stream);
    }
  }

  std::string_view kind() const override { return "herald"; }

 private:
  EventLog* const log_;
};

}  // namespace

std::unique_ptr<Sender> MakeLogSender(EventLog* log) {
  return std::make_unique<LogSender>(log);
}

}  // namespace herald
