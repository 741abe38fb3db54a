// Consumer: runs a source of events (a broker, a herald server:
// herald/consumer_source.h) into handlers, with an inbox in the consumer's
// own database so that an event's effect happens once per event id however
// often the event arrives.
//
//   auto store = herald::OpenStore("sqlite:refunds.db");      // the inbox
//   herald::ConsumerOptions o;
//   o.name = "refunds";
//   o.inbox = store->get();
//   o.on_failure = herald::FailurePolicy::kPark;
//   auto source = herald::MakeConsumerSource({.consumer = "refunds",
//                                             .url = "http://127.0.0.1:8080",
//                                             .state = store->get()});
//   herald::Consumer consumer(o, std::move(*source));
//   consumer.SetHandler([](const herald::Event& e, herald::Transaction* tx) {
//     sqlite3* db = herald::SqliteHandle(*tx);
//     ... INSERT INTO refunds ... (in the inbox's transaction)
//     return herald::Status::OK();
//   });
//   consumer.Start();  ...  consumer.Stop();
//
// Per delivery, with an inbox:
//   - a handler given the transaction (SetHandler, SetDispatcher): BEGIN on
//     the inbox store; Inbox::MarkHandled(tx, name, id) (already there: a
//     duplicate, rolled back, acknowledged, the handler is not called);
//     the handler's own writes through tx->native_handle(); COMMIT; then
//     the source is acknowledged. Effect and inbox row commit together.
//   - a handler outside any transaction (SetExternalHandler: `exec`, a
//     forwarding sender): Inbox::IsHandled (a duplicate is acknowledged
//     unhandled); the handler; once it succeeded, the inbox row in a
//     transaction of its own; then the acknowledgement. A consumer that
//     dies between the handler's success and that commit handles the event
//     again when it comes back: the handler must tolerate that repeat.
// Without an inbox (inbox = null) every delivery is handled (no dedupe),
// the handler gets a null transaction, and on_failure must be block.
//
// Order and failures: deliveries of one ordering key are handled one at a
// time in order; up to max_in_flight keys in parallel. A failing handler is
// retried with backoff (RetryPolicy, as for routes); after max_attempts
// (or at once when its error is not retryable) on_failure = park parks the
// event in the inbox store (route ConsumerCheckpointName(name), state
// "parked") and every later event of its stream as "held", acknowledging
// them to the source, while other streams go on; block retries until it
// succeeds. Parked events set to "retry" (RetryConsumerParked, `herald
// parked retry --consumer NAME`) are handled again, then the held ones of
// their stream, in order.
//
// Retention: every sweep_interval the inbox rows of this consumer older
// than inbox_retention are deleted in batches of sweep_batch, each its own
// short transaction. A duplicate arriving after that is handled again.
//
// Thread safety: Start, Stop and the setters from one thread; stats() from
// any. Handlers run on the consumer's worker threads, several at once (one
// per key); a handler must be thread-safe across keys.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "herald/consumer_source.h"
#include "herald/event.h"
#include "herald/route.h"
#include "herald/status.h"
#include "herald/store.h"

namespace herald {

class Dispatcher;

// The keys every [[consumer]] table has (core parses them; the rest are
// the source scheme's).
inline constexpr std::string_view kConsumerKeys =
    "name, source, inbox, types, exec, sender, on_failure, max_attempts, "
    "backoff, backoff_max, max_in_flight, inbox_retention";

struct ConsumerOptions {
  // Letters, digits, '.', '_', '-'. Names the inbox rows, the parked rows
  // and the checkpoint. Required.
  std::string name;
  // The consumer's store (inbox, parked events, checkpoint); must outlive
  // the consumer. Null: no inbox (see above).
  Store* inbox = nullptr;
  // Type globs; empty = every type. Deliveries of other types are
  // acknowledged unhandled.
  std::vector<std::string> types;
  // Keys handled at once (worker threads). Default 16; 1..1024.
  int max_in_flight = 16;
  // Deliveries in hand at most (ConsumerSourceOptions::max_in_hand).
  // Default 256.
  int max_in_hand = 256;
  // Attempts and backoff, as for routes (herald/route.h). Under park, an
  // event failing max_attempts times is parked.
  RetryPolicy retry;
  FailurePolicy on_failure = FailurePolicy::kBlock;
  // The dedupe window. Default 7 days.
  std::chrono::milliseconds inbox_retention{std::chrono::hours(24 * 7)};
  // How often the sweep runs (default 1 min) and its batch (default 500).
  std::chrono::milliseconds sweep_interval{60000};
  int sweep_batch = 500;
  // How often parked rows are checked for operator retries while any are
  // held (default 1 s).
  std::chrono::milliseconds parked_poll{1000};
  // One line per notable event (retries, parks, source errors). Default:
  // stderr. Called from the consumer's threads.
  std::function<void(const std::string&)> on_log;
};

// Counters since Start (this process), for status pages.
struct ConsumerStats {
  uint64_t handled = 0;     // handler succeeded (and the inbox committed)
  uint64_t duplicates = 0;  // deliveries absorbed by the inbox
  uint64_t filtered = 0;    // not selected by `types`
  uint64_t parked = 0;      // events parked
  uint64_t held = 0;        // events held behind a parked one
  uint64_t failures = 0;    // failed handler attempts
  uint64_t swept = 0;       // inbox rows removed by the retention sweep
  uint64_t in_hand = 0;     // deliveries not yet acknowledged (now)
  int64_t last_handled_at_us = 0;  // 0: none yet
  std::optional<int64_t> lag;      // the source's Lag(), when known
  std::string last_error;          // "" when none
};

// A handler in the inbox's transaction. `tx` is null when the consumer has
// no inbox. Returns OK when handled; a retryable error is retried, another
// parks (or blocks). Runs on a worker thread.
using InboxHandler = std::function<Status(const Event& event, Transaction* tx)>;
// A handler outside any transaction (the inbox row is written after it).
using ExternalHandler = std::function<Status(const Event& event)>;

class Consumer {
 public:
  Consumer(ConsumerOptions options, std::unique_ptr<ConsumerSource> source);
  // Stop()s.
  ~Consumer();
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  // The handler; set exactly one of the three before Start.
  void SetHandler(InboxHandler handler);
  void SetExternalHandler(ExternalHandler handler);
  // The dispatcher's subscriptions handle every delivery
  // (UnitOfWork::Receive in a unit of work begun on the dispatcher, whose
  // store must be the inbox): the Subscribe<T> written for in-process
  // events serves consumed ones unchanged. Immediate and before-commit
  // handlers run in the inbox's transaction; after-commit ones after it
  // committed (their failure is only reported).
  void SetDispatcher(Dispatcher* dispatcher);

  // Checks the options, starts the threads (the source connects on its
  // thread, retrying while Unavailable). InvalidArgument for bad options
  // (no handler, park without an inbox, a dispatcher on another store).
  Status Start();
  // Stops polling, finishes what is in hand (a handler waiting to retry
  // gives its delivery back, and the later ones of its key), acknowledges
  // what committed, closes the source and joins the threads. Idempotent.
  void Stop() noexcept;
  // Whether the consumer stopped by itself (the source failed for good);
  // its error then.
  bool failed() const;
  Status error() const;

  ConsumerStats stats() const;
  const ConsumerOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- Operator calls on a consumer's store (no consumer running needed) ---

// The parked rows of consumer `name` in `state` ("" = every state).
Result<std::vector<ParkedEvent>> ListConsumerParked(RelayState* store,
                                                    const std::string& name,
                                                    const std::string& state,
                                                    int limit);
// Marks a parked event (`id` empty: every parked one) for another attempt;
// a running consumer picks it up within parked_poll. NotFound when nothing
// matched.
Status RetryConsumerParked(RelayState* store, const std::string& name,
                           const std::string& id);
// Drops a parked event (`id` empty: all rows); the held events behind it
// are then handled. NotFound when nothing matched.
Status DropConsumerParked(RelayState* store, const std::string& name,
                          const std::string& id);

// What a running consumer saved of itself (every second) for `herald
// consume status`, read from its store.
struct ConsumerStatusRow {
  int64_t checkpoint = 0;  // the HTTP source's next offset; 0 none
  int64_t handled = 0;     // since the consumer's first start
  int64_t duplicates = 0;  // since the consumer's first start
  int64_t last_handled_at_us = 0;
  int64_t lag = -1;           // -1: unknown
  int64_t updated_at_us = 0;  // when it was saved; 0: never ran
  ParkedCounts parked;        // read now
};
Result<ConsumerStatusRow> ReadConsumerStatus(RelayState* store,
                                             const std::string& name);

}  // namespace herald
