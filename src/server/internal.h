// Internals of the HTTP server, kept free of Boost so only http_server.cc
// pays for Beast's compile time.
//
//   Hub       follows the store's head, keeps the newest events rendered in
//             memory, and wakes long-polls and SSE streams.
//   Appender  group-commits POSTed events: many requests, one transaction.
//   Api       the route table (router.h) and its resources (resources.h):
//             everything an HTTP request means, as plain data in and out.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "herald/config.h"
#include "herald/server.h"
#include "herald/store.h"
#include "util/thread_annotations.h"

namespace herald::detail {

using Clock = std::chrono::steady_clock;

// ---- Hub ------------------------------------------------------------------

// A read filter: type globs (any may match) and an exact stream.
struct EventFilter {
  std::vector<std::string> types;
  std::string stream;
  bool empty() const { return types.empty() && stream.empty(); }
};

struct CachedEvent {
  int64_t position = 0;
  std::string type;
  std::string stream;
  // EventToJson followed by one ',' so a page can be written as a gather
  // list of these buffers with no copy; text() is the JSON alone.
  std::string json;
  std::string_view text() const {
    return std::string_view(json.data(), json.size() - 1);
  }
  // The event's SSE message ("id: N\ndata: ...\n\n"), shared by every
  // subscriber.
  std::string sse;
};

// Appends the SSE message of an event: "id: POSITION", one "data:" line
// per line of its JSON, a blank line.
void AppendSseFrame(int64_t position, std::string_view json, std::string* out);

// What a cached read found.
struct TailRead {
  std::vector<std::shared_ptr<const CachedEvent>> events;
  int64_t next_offset = 1;
};

// Thread safety: every method may be called from any thread.
class Hub {
 public:
  Hub(Store* store, size_t capacity, std::chrono::milliseconds poll_max);
  ~Hub();

  void Start();
  // Joins the watcher; wakes every waiter with woke=false.
  void Stop();

  // The newest position loaded into memory (the head as far as readers of
  // this server are concerned).
  int64_t head() const { return head_.load(std::memory_order_acquire); }
  // The oldest position held in memory; 0 while empty.
  int64_t first() const;
  // A tag for ETags: derived from the id of the event at position 1, so
  // pages of another database never share an ETag. Empty while unknown.
  std::string db_tag() const;

  // Events at positions >= from that match `filter`, at most `limit`, from
  // memory. Returns false when `from` is below what memory holds (read the
  // store instead). Stops at head(); next_offset is past the last position
  // looked at.
  bool Read(int64_t from, int limit, const EventFilter& filter,
            TailRead* out) const;

  // Calls `cb(true)` once an event at a position >= offset is in memory, or
  // `cb(false)` at `deadline` or on Stop. Called at once (on this thread)
  // if already so. Returns an id for Cancel; 0 when called at once.
  using WaitCallback = std::function<void(bool woke)>;
  uint64_t Wait(int64_t offset, Clock::time_point deadline, WaitCallback cb);
  // Drops a waiter; its callback is not called after Cancel returns...
  // unless it is running on the watcher right now (callbacks must cope).
  void Cancel(uint64_t id);
  size_t waiters() const;

  // Loads whatever the store holds beyond head() now, then wakes waiters.
  // Called by the appender after a commit, so a client that POSTed and then
  // reads sees its event.
  void CatchUp();
  // Like CatchUp, for events this process just committed: when they are
  // exactly the positions after head(), they are taken as they are,
  // without reading them back; otherwise the store is read. `epoch` is an
  // append_epoch() up to which every in-process commit is among `events`
  // or before them: the watcher, woken by those commits, need not read the
  // store for them.
  void Push(std::vector<const Event*> events, uint64_t epoch);
  // Bracket a commit whose events the caller will Push (the appender's
  // group): from just before the commit until after the Push (or until it
  // knows there is nothing to push). Meanwhile the watcher, woken by that
  // commit, leaves the events to the Push instead of reading them back
  // from the store first (which cost a read transaction per commit and
  // kept the Push, and the answers behind it, waiting on load_mu_).
  void BeginPush() { pushes_pending_.fetch_add(1); }
  void EndPush() { pushes_pending_.fetch_sub(1); }

 private:
  std::shared_ptr<const CachedEvent> Render(const Event& e) const;
  // Appends rendered events (dense, non-empty) to cache_ and moves head_.
  void AddToCache(std::vector<std::shared_ptr<const CachedEvent>>* batch)
      REQUIRES(mu_);
  void Run();
  // Loads events (head_, store head]; returns whether any were loaded.
  bool Load() EXCLUDES(load_mu_, mu_);
  void WakeWaiters(bool all, bool stopping);

  Store* const store_;
  const size_t capacity_;
  const std::chrono::milliseconds poll_max_;

  Mutex load_mu_ ACQUIRED_BEFORE(mu_);  // one loader at a time
  mutable SharedMutex mu_;
  std::deque<std::shared_ptr<const CachedEvent>> cache_ GUARDED_BY(mu_);
  std::string db_tag_ GUARDED_BY(mu_);
  std::atomic<int64_t> head_{0};
  // Append epochs up to this one were pushed (see Push).
  std::atomic<uint64_t> pushed_epoch_{0};
  // Commits between BeginPush and EndPush.
  std::atomic<int> pushes_pending_{0};

  struct Waiter {
    int64_t offset;
    Clock::time_point deadline;
    WaitCallback cb;
  };
  mutable Mutex wait_mu_;
  std::map<uint64_t, Waiter> waiters_ GUARDED_BY(wait_mu_);
  uint64_t next_waiter_ GUARDED_BY(wait_mu_) = 1;

  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// ---- PageCache ------------------------------------------------------------

// Rendered full pages read from the store. A full page lies below the head
// and never changes, so it can be kept until memory is wanted for another:
// least recently used pages go first. Thread safety: any thread.
class PageCache {
 public:
  explicit PageCache(size_t max_bytes) : max_bytes_(max_bytes) {}
  std::shared_ptr<const std::string> Get(const std::string& key);
  void Put(const std::string& key, std::shared_ptr<const std::string> body);
  size_t max_bytes() const { return max_bytes_; }
  // Pages answered from the cache.
  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> hits_{0};
  using Entry = std::pair<std::string, std::shared_ptr<const std::string>>;
  const size_t max_bytes_;
  Mutex mu_;
  std::list<Entry> lru_ GUARDED_BY(mu_);  // front = most recent
  std::unordered_map<std::string, std::list<Entry>::iterator> index_
      GUARDED_BY(mu_);
  size_t bytes_ GUARDED_BY(mu_) = 0;
};

// ---- ByteBudget -----------------------------------------------------------

// A shared allowance of bytes for buffers that wait on clients: the SSE
// chunks rendered for streams and not yet written. Whatever the number of
// clients, the bytes held under it stay near its capacity: a buffer is
// rendered only after its bytes were granted, and waits for them when the
// budget is spent (back-pressure: a slow or stalled client holds back only
// the streams queued behind it, never the memory). Grants are FIFO and are
// never refused, only delayed. Thread safety: any thread.
class ByteBudget {
 public:
  explicit ByteBudget(size_t capacity) : capacity_(capacity) {}

  // Calls `grant(true)` once `bytes` (at most capacity()) fit, at once and
  // on this thread when they fit now and nobody waits; `grant(false)` on
  // Stop. The grantee then holds those bytes until it Resizes or Releases
  // them. Callbacks run outside the budget's lock, on the thread that freed
  // the bytes.
  void Acquire(size_t bytes, std::function<void(bool granted)> grant);
  // A held charge of `from` bytes becomes `to` bytes. Growing is never
  // refused (one event larger than a chunk): it delays later grants.
  void Resize(size_t from, size_t to);
  void Release(size_t bytes) { Resize(bytes, 0); }
  // Fails every waiter and every later Acquire with grant(false).
  void Stop();

  size_t capacity() const { return capacity_; }
  size_t used() const;
  size_t peak() const;
  size_t waiting() const;

 private:
  // Grants the waiters that fit now; returns their callbacks, to be called
  // once mu_ is released.
  std::vector<std::function<void(bool)>> TakeGrantable() REQUIRES(mu_);

  const size_t capacity_;
  mutable Mutex mu_;
  size_t used_ GUARDED_BY(mu_) = 0;
  size_t peak_ GUARDED_BY(mu_) = 0;
  std::deque<std::pair<size_t, std::function<void(bool)>>> waiters_
      GUARDED_BY(mu_);
  bool stopped_ GUARDED_BY(mu_) = false;
};

// ---- CompletionBatch ------------------------------------------------------

// Gathers the completions a thread hands to the I/O threads while one is
// alive on it (the appender answering a group, the Hub waking long-polls),
// and hands each I/O thread its share in one go when it ends. One post per
// I/O thread instead of one per request: each post wakes the I/O thread,
// which then takes the CPU from the thread answering (the appender, whose
// next commit waits for it). Completions keep their order per target.
// Nests: the innermost one on the thread gathers. Thread safety: one
// thread (the one it lives on).
class CompletionBatch {
 public:
  // Posts `fns`, in order, to `target` (an I/O thread's context).
  using Poster = void (*)(void* target, std::vector<std::function<void()>> fns);

  CompletionBatch();
  ~CompletionBatch();
  CompletionBatch(const CompletionBatch&) = delete;
  CompletionBatch& operator=(const CompletionBatch&) = delete;

  // The batch alive on this thread, or null.
  static CompletionBatch* Current();
  void Add(void* target, Poster post, std::function<void()> fn);

 private:
  struct Group {
    void* target;
    Poster post;
    std::vector<std::function<void()>> fns;
  };
  std::vector<Group> groups_;
  CompletionBatch* const outer_;
};

// ---- Appender -------------------------------------------------------------

struct AppendJob {
  std::vector<Event> events;
  AppendOptions options;
  // Set (by the I/O thread) when the client that sent the request has
  // closed its connection. A job whose client is gone by the time the
  // appender takes it into a transaction is not appended: it fails with
  // Unavailable. Null: never gone (library callers).
  std::shared_ptr<const std::atomic<bool>> client_gone;
  // Called once the job's fate is durable: the stored events, or why
  // nothing was written. On the appender thread, or, when `target` is set,
  // on that I/O thread (posted with the others of its group, see
  // CompletionBatch), so answering costs the appender no more than a post.
  std::function<void(Result<AppendResult>, std::vector<Event>)> done;
  void* target = nullptr;
  CompletionBatch::Poster post = nullptr;
};

// One thread; takes every job queued since its last commit and appends them
// in one transaction, each inside its own savepoint (Store::Append is
// all-or-nothing), so a bad job fails alone. Thread safety: Submit from any
// thread.
class Appender {
 public:
  Appender(Store* store, Hub* hub);
  ~Appender();
  void Start();
  // Finishes every queued job, then joins.
  void Stop();
  // Queues a job. After Stop, the job fails with Unavailable.
  void Submit(AppendJob job);

  uint64_t commits() const { return commits_.load(); }
  uint64_t events_appended() const { return appended_.load(); }
  // Jobs dropped because their client had gone (see AppendJob).
  uint64_t abandoned() const { return abandoned_.load(); }

  // Why the store refused appends, while it does: set when an append fails
  // for a reason other than the request itself (a full disk, a read-only
  // file, the database unreachable), cleared by the next append that
  // commits. `since` is when the failures began, `at` the latest one.
  struct Failure {
    std::string error;
    std::chrono::system_clock::time_point since;
    std::chrono::system_clock::time_point at;
    uint64_t count = 0;  // failed jobs since the last success
  };
  std::optional<Failure> failing() const;

 private:
  // Records the outcome of one job's append for failing().
  void Track(const Status& s);

  void Run();
  void Process(std::vector<AppendJob>* jobs);

  Store* const store_;
  Hub* const hub_;
  Mutex mu_;
  CondVar cv_;
  std::vector<AppendJob> queue_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  bool started_ = false;
  std::thread thread_;
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> appended_{0};
  std::atomic<uint64_t> abandoned_{0};
  mutable Mutex failure_mu_;
  std::optional<Failure> failure_ GUARDED_BY(failure_mu_);
};

// ---- HTTP as plain data ---------------------------------------------------

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, as sent
  std::string path;    // percent-decoded path
  std::vector<std::pair<std::string, std::string>> query;  // decoded
  std::string authorization;
  std::string content_type;
  std::string if_none_match;
  std::string last_event_id;
  std::string origin;  // the Origin header (browsers; CORS)
  std::string body;
  // Becomes true when the client closes its connection before the answer
  // (watched by the transport for POSTs; null when not watched).
  std::shared_ptr<const std::atomic<bool>> client_gone;
  // The I/O thread the request came from, for work that should run there
  // (an append's answer, see AppendJob); null: none.
  void* io_target = nullptr;
  CompletionBatch::Poster io_post = nullptr;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // A page from memory: the body is `body`, then the events' JSON joined
  // by ',', then `tail`; written from the cached strings without a copy.
  std::vector<std::shared_ptr<const CachedEvent>> parts;
  std::string tail;
  // Written after `body` (before parts): a rendered page shared with the
  // PageCache.
  std::shared_ptr<const std::string> shared_body;
  // Set by the API for GET /api/events/stream: the connection turns into
  // an SSE stream from this offset with this filter.
  bool sse = false;
  int64_t sse_offset = 1;
  EventFilter sse_filter;
};

// What Api::SseChunk found.
struct SseChunkResult {
  bool ok = true;  // false: the store failed
  // Frames ("id: N\ndata: ...\n\n"), at most the bytes asked for, with a
  // capacity no larger; empty when nothing is there yet.
  std::string chunk;
  int64_t next_cursor = 0;
  // When the frame of the next event alone is larger than the bytes asked
  // for: its size (nothing was taken; ask again with at least this much).
  size_t need = 0;
};
using SseDone = std::function<void(SseChunkResult)>;

// Runs blocking work off the I/O threads.
using Executor = std::function<void(std::function<void()>)>;

// Prometheus counters of the HTTP layer.
class HttpMetrics {
 public:
  void Count(const std::string& route, int status);
  void Render(std::string* out) const;
  std::atomic<int64_t> open_streams{0};
  std::atomic<int64_t> open_connections{0};
  // Connections at most (max_connections, lowered to fit the descriptor
  // limit) and connections closed at once because of it.
  std::atomic<int64_t> connection_limit{0};
  std::atomic<uint64_t> connections_refused{0};
  // Requests whose client closed the connection before the answer.
  std::atomic<uint64_t> requests_abandoned{0};
  // The SSE buffer budget ([server] sse_buffer_mb); set by the transport.
  const ByteBudget* sse_budget = nullptr;

 private:
  mutable Mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_ GUARDED_BY(mu_);
};

class Api {
 public:
  Api(Store* store, Relay* relay, Hub* hub, Appender* appender,
      HttpMetrics* metrics, Executor executor, const ServerOptions& options);

  // Handles one request; calls `respond` exactly once, on any thread.
  // `route_label` receives the route pattern for metrics ("/api/events").
  void Handle(Request request,
              std::function<void(Response, std::string route_label)> respond);

  // The next piece of an SSE stream at `cursor` (see SseChunkResult), at
  // most `max_bytes`. Calls `done` on any thread.
  void SseChunk(int64_t cursor, const EventFilter& filter, size_t max_bytes,
                SseDone done);

  static Response Error(int status, std::string_view code,
                        std::string_view message);
  static Response ErrorFor(const Status& s);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// The effective settings of `options` (the config field, unless its
// deprecated ServerOptions spelling is set).
size_t PageCacheBytes(const ServerOptions& options);
size_t TailEvents(const ServerOptions& options);

// Percent-decodes (and '+' to space when `form`). False on a bad escape.
bool PercentDecode(std::string_view in, bool form, std::string* out);
// Splits a target into path and decoded query pairs. False on bad escapes.
bool ParseTarget(std::string_view target, std::string* path,
                 std::vector<std::pair<std::string, std::string>>* query);

}  // namespace herald::detail
