// Dispatcher: in-process domain events, tied to a database transaction.
//
// Domain code raises events while it changes its rows; handlers subscribed
// to those events run in one of four phases:
//
//   kImmediate         at Raise(), on the raising thread, inside the
//                      transaction.
//   kBeforeCommit      in UnitOfWork::Commit(), inside the transaction, just
//                      before it commits. After these handlers the unit of
//                      work appends every raised event to the store with
//                      Store::Append(tx, ...): this is how events reach the
//                      store, in the same transaction as the domain change.
//   kAfterCommit       in Commit(), on the committing thread, only once the
//                      transaction has committed.
//   kAfterCommitAsync  only once the transaction has committed, on the
//                      Dispatcher's bounded thread pool; never inside the
//                      producer's transaction.
//
// A UnitOfWork is the scope of one request (one transaction): it owns the
// transaction, the events raised in it and the subscriptions made on it, and
// clears them when it ends, so nothing leaks into the next request served by
// the same thread. While it lives it is the thread's current unit of work,
// so domain code can call herald::Raise(event) without passing it around.
//
//   herald::Dispatcher dispatcher(store.get());
//   dispatcher.Subscribe<OrderCanceled>(
//       herald::Phase::kAfterCommitAsync,
//       [](const OrderCanceled& e) { Refund(e.order_id); });
//
//   auto uow = dispatcher.Begin();              // BEGIN IMMEDIATE
//   if (!uow.ok()) return uow.status();
//   sqlite3* db = herald::SqliteHandle((*uow)->transaction());
//   ... UPDATE orders SET status = 'canceled' WHERE id = 42 ...
//   HERALD_RETURN_IF_ERROR(herald::Raise(OrderCanceled{42, "changed mind"}));
//   return (*uow)->Commit();  // before-commit, append, COMMIT, after-commit
//
// Errors: no exception crosses this API. A handler that throws (or returns
// a non-ok Status) is caught and reported to DispatcherOptions::on_error.
// Inside the transaction (immediate, before-commit) the failure also fails
// the unit of work: Commit() rolls back and returns the error. After commit
// the failure is only reported: the transaction stays committed.
//
// Thread safety: a Dispatcher is safe to use from many threads at once;
// subscriptions may be added and removed while other threads dispatch. A
// UnitOfWork belongs to the thread that began it: use and destroy it there.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "herald/event.h"
#include "herald/status.h"
#include "herald/store.h"

namespace herald {

// ---- Typed events -----------------------------------------------------------

// Specialise for each C++ event type:
//
//   template <>
//   struct herald::EventTraits<OrderCanceled> {
//     static constexpr std::string_view kType = "order.canceled";
//     static std::string ToJson(const OrderCanceled& e);          // payload
//     static herald::Result<OrderCanceled> FromJson(std::string_view json);
//     // Optional: the stream (aggregate) an event belongs to. Without it,
//     // pass RaiseOptions::stream to every Raise.
//     static std::string Stream(const OrderCanceled& e);
//   };
//
// ToJson must return valid JSON (the payload is stored verbatim with
// content type application/json); FromJson must accept what ToJson writes.
// Typed handlers receive the raised C++ value itself when the event was
// raised in this process as that type, and a value decoded by FromJson
// otherwise (an untyped Raise of an Event with that type name).
template <typename T>
struct EventTraits;

template <typename T>
concept DomainEvent = requires(const T& value, std::string_view json) {
  { EventTraits<T>::kType } -> std::convertible_to<std::string_view>;
  { EventTraits<T>::ToJson(value) } -> std::convertible_to<std::string>;
  { EventTraits<T>::FromJson(json) } -> std::same_as<Result<T>>;
};

template <typename T>
concept DomainEventWithStream = DomainEvent<T> && requires(const T& value) {
  { EventTraits<T>::Stream(value) } -> std::convertible_to<std::string>;
};

// ---- Phases, options, errors ----------------------------------------------

enum class Phase { kImmediate, kBeforeCommit, kAfterCommit, kAfterCommitAsync };

// "immediate", "before_commit", "after_commit", "after_commit_async".
std::string_view PhaseName(Phase phase);

// Identifies a subscription; unique within the process. Never 0.
using SubscriptionId = uint64_t;

// A handler failure, as reported to DispatcherOptions::on_error.
struct HandlerError {
  std::string handler;  // the subscription's name
  Phase phase = Phase::kImmediate;
  std::string event_type;  // the event's type name
  std::string event_id;
  // Internal "handler threw: <what()>" for an exception; the handler's own
  // Status when it returned one; InvalidArgument when a typed handler's
  // payload did not decode; ResourceExhausted when an async handler was
  // dropped because the queue was full (QueueFullPolicy::kReject);
  // Unavailable when it was dropped because the dispatcher had stopped.
  Status status;
};

// What Commit() does with an async after-commit handler when the queue
// holds async_queue_capacity jobs already.
enum class QueueFullPolicy {
  // Wait until the pool makes room (back-pressure on committers; the
  // transaction has committed already, so no lock is held while waiting).
  // A pool thread that meets a full queue runs the handler itself instead
  // of waiting, so handlers that commit units of work cannot deadlock the
  // pool.
  kBlock,
  // Drop the handler call and report it to on_error with ResourceExhausted.
  // The event itself is committed and stays in the store.
  kReject,
};

struct DispatcherOptions {
  // Threads of the async after-commit pool, started on first use. Default 2;
  // values below 1 mean 1.
  int async_threads = 2;
  // Jobs (one per event and async handler) waiting for a pool thread.
  // Default 1024; values below 1 mean 1.
  size_t async_queue_capacity = 1024;
  // Default kBlock.
  QueueFullPolicy queue_full = QueueFullPolicy::kBlock;
  // Called for every handler failure, on the thread that ran (or dropped)
  // the handler: the raising or committing thread for the synchronous
  // phases, a pool thread for kAfterCommitAsync (or the committing thread
  // when the job was dropped). May run on several threads at once. Whatever
  // it throws is swallowed. Default (empty): one line on stderr.
  std::function<void(const HandlerError&)> on_error;
};

struct RaiseOptions {
  // The event's stream. Default: EventTraits<T>::Stream(value); required
  // when the traits have no Stream.
  std::string stream{};
  // A UUID; empty (default): herald makes a UUIDv7 at Raise.
  std::string id{};
  // A JSON object; empty (default): "{}".
  std::string metadata{};
};

// Counters of the async pool, for status pages and tests.
struct DispatcherStats {
  uint64_t queued = 0;     // jobs waiting now
  uint64_t running = 0;    // jobs running now
  uint64_t completed = 0;  // jobs run since start (failed ones included)
  uint64_t rejected = 0;   // jobs dropped (queue full or stopped)
  uint64_t blocked = 0;    // committers waiting for room now
  uint64_t errors = 0;     // handler failures reported, all phases
};

namespace detail {

// What a handler is called with: the event, and the raised C++ value when
// there is one (`value` points to a `*value_type`).
struct Delivery {
  const Event& event;
  const void* value = nullptr;
  const std::type_info* value_type = nullptr;
};

using RawHandler = std::function<Status(const Delivery&)>;

struct Registration {
  std::string pattern;  // a type name, or a glob ('*', '?') for untyped
  bool glob = false;
  Phase phase = Phase::kImmediate;
  std::string name;
  RawHandler handler;
};

// Calls fn(args...), turning a void result into OK.
template <typename F, typename... Args>
Status CallHandler(const F& fn, const Args&... args) {
  using R = std::invoke_result_t<const F&, const Args&...>;
  if constexpr (std::is_void_v<R>) {
    fn(args...);
    return Status::OK();
  } else {
    static_assert(std::is_convertible_v<R, Status>,
                  "a handler returns void or herald::Status");
    return fn(args...);
  }
}

template <typename T, typename F>
Status CallTyped(const F& fn, const T& value, const Event& event) {
  if constexpr (std::is_invocable_v<const F&, const T&, const Event&>) {
    return CallHandler(fn, value, event);
  } else {
    static_assert(std::is_invocable_v<const F&, const T&>,
                  "a typed handler takes (const T&) or "
                  "(const T&, const herald::Event&)");
    return CallHandler(fn, value);
  }
}

Status DecodeFailed(std::string_view type, const Status& status);

template <DomainEvent T, typename F>
Registration MakeTyped(Phase phase, F&& fn, std::string name) {
  Registration r;
  r.pattern = std::string(EventTraits<T>::kType);
  r.phase = phase;
  r.name = name.empty() ? r.pattern : std::move(name);
  r.handler = [fn = std::forward<F>(fn)](const Delivery& d) -> Status {
    if (d.value != nullptr && *d.value_type == typeid(T)) {
      return CallTyped<T>(fn, *static_cast<const T*>(d.value), d.event);
    }
    Result<T> decoded = EventTraits<T>::FromJson(d.event.payload);
    if (!decoded.ok()) {
      return DecodeFailed(EventTraits<T>::kType, decoded.status());
    }
    return CallTyped<T>(fn, *decoded, d.event);
  };
  return r;
}

template <typename F>
Registration MakeUntyped(std::string pattern, Phase phase, F&& fn,
                         std::string name) {
  static_assert(std::is_invocable_v<const std::decay_t<F>&, const Event&>,
                "an untyped handler takes (const herald::Event&)");
  Registration r;
  r.glob = pattern.find_first_of("*?") != std::string::npos;
  r.pattern = std::move(pattern);
  r.phase = phase;
  r.name = name.empty() ? r.pattern : std::move(name);
  r.handler = [fn = std::forward<F>(fn)](const Delivery& d) -> Status {
    return CallHandler(fn, d.event);
  };
  return r;
}

struct Subscription;  // defined in dispatcher.cc

// Runs `make` (user conversions), turning an exception into Internal.
template <typename F>
Status Guard(std::string_view what, F&& make) {
  try {
    return make();
  } catch (const std::exception& e) {
    return Status::Internal(std::string(what) + " threw: " + e.what());
  } catch (...) {
    return Status::Internal(std::string(what) + " threw");
  }
}

}  // namespace detail

class UnitOfWork;

// ---- Dispatcher -------------------------------------------------------------

class Dispatcher {
 public:
  // `store` receives the raised events and makes the transactions of
  // Begin() and Join(); it must outlive the dispatcher. So must the
  // dispatcher every unit of work it made.
  explicit Dispatcher(Store* store, DispatcherOptions options = {});
  // Stop()s.
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Subscribes a handler to events of C++ type T (matched by
  // EventTraits<T>::kType) in every unit of work of this dispatcher. The
  // handler takes (const T&) or (const T&, const Event&) and returns void
  // or Status; it may be called on several threads at once (async phase).
  // `name` (default: the type name) is what on_error reports.
  template <DomainEvent T, typename F>
  SubscriptionId Subscribe(Phase phase, F&& handler, std::string name = {}) {
    return Add(
        detail::MakeTyped<T>(phase, std::forward<F>(handler), std::move(name)));
  }
  // Subscribes an untyped handler, taking (const Event&), to every event
  // whose type matches `type_pattern`: a type name, or a glob where '*'
  // matches any run of characters and '?' one ("order.*", "*").
  template <typename F>
  SubscriptionId Subscribe(std::string type_pattern, Phase phase, F&& handler,
                           std::string name = {}) {
    return Add(detail::MakeUntyped(std::move(type_pattern), phase,
                                   std::forward<F>(handler), std::move(name)));
  }
  // Removes a subscription of this dispatcher. No call of its handler
  // starts after this returns (queued async calls are skipped); a call
  // already running on another thread may still finish. NotFound if the id
  // is not a live subscription of this dispatcher.
  Status Unsubscribe(SubscriptionId id);

  // Begins a unit of work on a new transaction of the store (Store::Begin;
  // on SQLite "BEGIN IMMEDIATE", so it waits up to the busy timeout for
  // other writers). It becomes the calling thread's current unit of work.
  Result<std::unique_ptr<UnitOfWork>> Begin();
  // Begins a unit of work on the caller's own connection, on which the
  // caller has already opened a transaction (Store::Join). Commit() commits
  // the caller's transaction; ending the unit without Commit() rolls it
  // back. The connection must outlive the unit.
  std::unique_ptr<UnitOfWork> Join(void* native_connection);

  // Waits until no async job is queued or running, or `timeout` passes.
  // Returns whether the pool is idle. Jobs queued meanwhile count too.
  bool WaitIdle(std::chrono::milliseconds timeout);

  // Stops the pool: jobs already queued still run, then the threads are
  // joined. Afterwards async handlers are dropped and reported with
  // Unavailable; everything else keeps working. Idempotent; must not be
  // called from a handler.
  void Stop() noexcept;

  DispatcherStats stats() const;

 private:
  friend class UnitOfWork;
  struct Impl;
  SubscriptionId Add(detail::Registration registration);
  std::unique_ptr<Impl> impl_;
};

// ---- Unit of work -----------------------------------------------------------

// One transaction with the events raised in it and the subscriptions made
// for it. Made by Dispatcher::Begin or Join; while it lives it is the
// current unit of work of the thread that made it (units nest: a new one
// hides the previous until it ends, and they are independent transactions;
// on SQLite a second write transaction on the same thread waits for the
// first, so do not nest Begin() inside an open SQLite unit).
//
// Ending it (destruction) without a successful Commit() rolls the
// transaction back: neither the domain change nor the events persist, and
// no after-commit handler runs. Either way its raised events and its
// subscriptions are dropped and the thread's previous unit (or none)
// becomes current again.
class UnitOfWork {
 public:
  ~UnitOfWork();
  UnitOfWork(const UnitOfWork&) = delete;
  UnitOfWork& operator=(const UnitOfWork&) = delete;

  // The calling thread's current unit of work, or nullptr.
  static UnitOfWork* Current();

  // The transaction: reach its connection with herald::SqliteHandle(tx)
  // (herald/sqlite.h) to change domain rows in it. Owned by the unit.
  Transaction& transaction() { return *tx_; }

  // Raises an event: checks it (InvalidArgument, nothing raised), gives it
  // an id and occurred_at when missing, runs the immediate handlers, and
  // keeps it for the before-commit handlers and the append. Errors:
  // InvalidArgument (bad event or options), FailedPrecondition (the unit is
  // committing its events, committed or rolled back), or the error of a
  // failing immediate handler: the event stays raised, but the unit has
  // failed and Commit() will roll back and return that error.
  template <DomainEvent T>
  Status Raise(const T& value, RaiseOptions options = {});
  Status Raise(Event event);

  // Hands the unit an event that arrived from elsewhere (a broker or a
  // herald server, through herald::Consumer) to be handled, not stored:
  // its immediate handlers run now, inside the transaction, its
  // before-commit handlers in Commit(), its after-commit handlers once the
  // transaction committed, exactly as for a raised event, but it is not
  // appended to the store. Typed handlers decode it with
  // EventTraits<T>::FromJson. Errors as Raise; an event without an id is
  // InvalidArgument.
  Status Receive(const Event& event);

  // Subscriptions that see only the events of this unit and end with it
  // (see Dispatcher::Subscribe). Async calls already queued when the unit
  // ends still run, so an async handler must capture by value what it uses.
  // Unsubscribe skips them too.
  template <DomainEvent T, typename F>
  SubscriptionId Subscribe(Phase phase, F&& handler, std::string name = {}) {
    return Add(
        detail::MakeTyped<T>(phase, std::forward<F>(handler), std::move(name)));
  }
  template <typename F>
  SubscriptionId Subscribe(std::string type_pattern, Phase phase, F&& handler,
                           std::string name = {}) {
    return Add(detail::MakeUntyped(std::move(type_pattern), phase,
                                   std::forward<F>(handler), std::move(name)));
  }
  Status Unsubscribe(SubscriptionId id);

  // Runs the before-commit handlers (events they raise get theirs too),
  // appends every raised event to the store in the transaction, commits,
  // then runs the after-commit handlers and queues the async ones. Returns
  // OK once committed, whatever the after-commit handlers do. If a handler
  // inside the transaction failed, or the append or commit fails, the
  // transaction is rolled back and the error returned (Conflict, Unavailable
  // from the store...). FailedPrecondition when called twice or after
  // Rollback().
  Status Commit();
  // Rolls back and drops the raised events. Idempotent; OK when already
  // ended. FailedPrecondition after Commit().
  Status Rollback();

  // The events raised so far; after Commit() as stored (with position and
  // stream_version).
  const std::vector<Event>& events() const { return events_; }
  bool committed() const { return state_ == State::kCommitted; }

 private:
  friend class Dispatcher;
  enum class State { kOpen, kCommitting, kCommitted, kRolledBack };
  struct Value {
    std::shared_ptr<const void> value;
    const std::type_info* type = nullptr;
  };
  UnitOfWork(Dispatcher::Impl* dispatcher, std::unique_ptr<Transaction> tx);
  SubscriptionId Add(detail::Registration registration);
  // Whether any subscription, the dispatcher's or this unit's, has `phase`.
  bool Listened(Phase phase) const;
  Status RaiseValue(Event event, Value value);
  void End();

  Dispatcher::Impl* const dispatcher_;
  std::unique_ptr<Transaction> tx_;
  State state_ = State::kOpen;
  bool handlers_done_ = false;  // before-commit handlers have run
  int raise_depth_ = 0;         // immediate handlers raising events
  Status failed_;               // first in-transaction handler failure
  std::vector<Event> events_;
  std::vector<Value> values_;   // parallel to events_
  std::vector<bool> received_;  // parallel to events_: Receive(), not Raise
  std::vector<std::shared_ptr<detail::Subscription>> subs_;
  UnitOfWork* previous_;  // the thread's previous current unit
};

// Raises on the calling thread's current unit of work (UnitOfWork::Raise).
// FailedPrecondition "no unit of work on this thread" when there is none:
// nothing is raised and no handler runs.
template <DomainEvent T>
Status Raise(const T& value, RaiseOptions options = {});
Status Raise(Event event);

// ---- Implementation of the templates ---------------------------------------

template <DomainEvent T>
Status UnitOfWork::Raise(const T& value, RaiseOptions options) {
  Event event;
  Value held;
  Status s = detail::Guard("EventTraits::ToJson", [&]() -> Status {
    event.type = std::string(EventTraits<T>::kType);
    if (!options.stream.empty()) {
      event.stream = std::move(options.stream);
    } else if constexpr (DomainEventWithStream<T>) {
      event.stream = EventTraits<T>::Stream(value);
    } else {
      return Status::InvalidArgument(
          "event " + event.type +
          " has no stream: give RaiseOptions::stream or "
          "EventTraits<T>::Stream");
    }
    event.payload = EventTraits<T>::ToJson(value);
    held.value = std::make_shared<const T>(value);
    held.type = &typeid(T);
    return Status::OK();
  });
  if (!s.ok()) return s;
  event.id = std::move(options.id);
  if (!options.metadata.empty()) event.metadata = std::move(options.metadata);
  return RaiseValue(std::move(event), std::move(held));
}

template <DomainEvent T>
Status Raise(const T& value, RaiseOptions options) {
  UnitOfWork* unit = UnitOfWork::Current();
  if (unit == nullptr) {
    return Status::FailedPrecondition(
        "no unit of work on this thread: cannot raise " +
        std::string(EventTraits<T>::kType));
  }
  return unit->Raise(value, std::move(options));
}

}  // namespace herald
