// Hub: the server's view of the log's tail (see internal.h).
//
// The watcher thread waits for an in-process append (Store::WaitForAppend)
// or a short poll interval, checks Head(), loads new events in position
// order into memory, and wakes waiters whose offset is now covered.
#include <algorithm>

#include "server/internal.h"
#include "util/thread_name.h"

namespace herald::detail {

namespace {
constexpr int kLoadPage = 1000;
}

Hub::Hub(Store* store, size_t capacity, std::chrono::milliseconds poll_max)
    : store_(store),
      capacity_(std::max<size_t>(capacity, 1)),
      poll_max_(std::max(poll_max, std::chrono::milliseconds(1))) {}

Hub::~Hub() { Stop(); }

void Hub::Start() {
  // Start at most `capacity_` events below the head.
  auto head = store_->Head();
  int64_t h = head.ok() ? *head : 0;
  {
    WriterLock lock(&mu_);
    head_.store(std::max<int64_t>(0, h - static_cast<int64_t>(capacity_)));
  }
  Load();
  thread_ = std::thread([this] { Run(); });
}

void Hub::Stop() {
  if (stop_.exchange(true)) return;
  // The watcher notices within one poll interval (poll_max at most).
  if (thread_.joinable()) thread_.join();
  WakeWaiters(true, true);
}

int64_t Hub::first() const {
  ReaderLock lock(&mu_);
  return cache_.empty() ? 0 : cache_.front()->position;
}

std::string Hub::db_tag() const {
  ReaderLock lock(&mu_);
  return db_tag_;
}

bool Hub::Load() {
  MutexLock load_lock(&load_mu_);
  bool loaded = false;
  bool tagged;
  {
    ReaderLock lock(&mu_);
    tagged = !db_tag_.empty();
  }
  if (!tagged) {
    ReadRequest first;
    first.offset = 1;
    first.limit = 1;
    auto page = store_->Read(first);
    if (page.ok() && !page->events.empty()) {
      // The random tail of the first event's id (a UUIDv7 starts with its
      // timestamp, which two databases may share).
      std::string tag;
      const std::string& id = page->events[0].id;
      for (size_t i = id.size(); i-- > 0 && tag.size() < 16;) {
        if (id[i] != '-') tag.insert(tag.begin(), id[i]);
      }
      WriterLock lock(&mu_);
      db_tag_ = tag;
    }
  }
  while (!stop_.load(std::memory_order_relaxed)) {
    ReadRequest req;
    req.offset = head_.load() + 1;
    req.limit = kLoadPage;
    auto page = store_->Read(req);
    if (!page.ok() || page->events.empty()) break;
    std::vector<std::shared_ptr<const CachedEvent>> batch;
    batch.reserve(page->events.size());
    int64_t expect = req.offset;
    for (const Event& e : page->events) {
      if (e.position != expect) break;  // positions are dense; never skip
      batch.push_back(Render(e));
      ++expect;
    }
    if (batch.empty()) break;
    {
      WriterLock lock(&mu_);
      AddToCache(&batch);
    }
    loaded = true;
    if (static_cast<int>(page->events.size()) < kLoadPage) break;
  }
  return loaded;
}

void Hub::AddToCache(std::vector<std::shared_ptr<const CachedEvent>>* batch) {
  // A batch that does not follow the cache replaces it (never a gap).
  if (!cache_.empty() &&
      cache_.back()->position + 1 != batch->front()->position) {
    cache_.clear();
  }
  for (auto& c : *batch) cache_.push_back(std::move(c));
  while (cache_.size() > capacity_) cache_.pop_front();
  head_.store(cache_.back()->position, std::memory_order_release);
}

std::shared_ptr<const CachedEvent> Hub::Render(const Event& e) const {
  auto c = std::make_shared<CachedEvent>();
  c->position = e.position;
  c->type = e.type;
  c->stream = e.stream;
  c->json.reserve(e.payload.size() + e.metadata.size() + 256);
  AppendEventJson(e, &c->json);
  c->json.push_back(',');
  AppendSseFrame(c->position, c->text(), &c->sse);
  return c;
}

void Hub::Push(std::vector<const Event*> events, uint64_t epoch) {
  bool taken = false;
  {
    MutexLock load_lock(&load_mu_);
    std::sort(events.begin(), events.end(), [](const Event* a, const Event* b) {
      return a->position < b->position;
    });
    int64_t next = head_.load() + 1;
    std::vector<std::shared_ptr<const CachedEvent>> batch;
    bool contiguous = true;
    for (const Event* e : events) {
      if (e->position < next) continue;  // stored before, or a repeat
      if (e->position != next) {
        contiguous = false;  // another writer's events lie between
        break;
      }
      batch.push_back(Render(*e));
      ++next;
    }
    WriterLock lock(&mu_);
    if (contiguous && !batch.empty() && !db_tag_.empty()) {
      // Positions up to next - 1 are final; later ones (another writer's)
      // are loaded by the watcher from there.
      AddToCache(&batch);
      taken = true;
    }
  }
  if (taken) {
    // The appender passes an epoch that covers only its own commit, or an
    // earlier one (another writer committed in between): nothing up to
    // `epoch` is left unread.
    uint64_t seen = pushed_epoch_.load();
    while (seen < epoch && !pushed_epoch_.compare_exchange_weak(seen, epoch)) {
    }
    WakeWaiters(false, false);
  } else {
    CatchUp();
  }
}

bool Hub::Read(int64_t from, int limit, const EventFilter& filter,
               TailRead* out) const {
  if (from < 1) from = 1;
  ReaderLock lock(&mu_);
  int64_t head = head_.load(std::memory_order_acquire);
  out->events.clear();
  if (from > head) {
    out->next_offset = from;
    return true;
  }
  if (cache_.empty() || from < cache_.front()->position) return false;
  size_t i = static_cast<size_t>(from - cache_.front()->position);
  int64_t next = from;
  for (; i < cache_.size() && static_cast<int>(out->events.size()) < limit;
       ++i) {
    const auto& c = cache_[i];
    next = c->position + 1;
    if (!filter.stream.empty() && c->stream != filter.stream) continue;
    if (!filter.types.empty()) {
      bool match = false;
      for (const auto& t : filter.types) {
        if (GlobMatch(t, c->type)) {
          match = true;
          break;
        }
      }
      if (!match) continue;
    }
    out->events.push_back(c);
  }
  out->next_offset = next;
  return true;
}

uint64_t Hub::Wait(int64_t offset, Clock::time_point deadline,
                   WaitCallback cb) {
  if (offset < 1) offset = 1;
  if (stop_.load()) {
    cb(false);
    return 0;
  }
  if (offset <= head()) {
    cb(true);
    return 0;
  }
  uint64_t id;
  {
    MutexLock lock(&wait_mu_);
    id = next_waiter_++;
    waiters_.emplace(id, Waiter{offset, deadline, std::move(cb)});
  }
  // An event may have arrived between the check and the insert. (A
  // deadline is kept to within one poll interval of the watcher.)
  if (offset <= head()) WakeWaiters(false, false);
  return id;
}

void Hub::Cancel(uint64_t id) {
  if (id == 0) return;
  WaitCallback cb;
  {
    MutexLock lock(&wait_mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return;
    cb = std::move(it->second.cb);
    waiters_.erase(it);
  }
  // cb destroyed outside the lock (it may own a connection).
}

size_t Hub::waiters() const {
  MutexLock lock(&wait_mu_);
  return waiters_.size();
}

void Hub::CatchUp() {
  if (Load()) WakeWaiters(false, false);
}

void Hub::WakeWaiters(bool all, bool stopping) {
  int64_t head = this->head();
  auto now = Clock::now();
  std::vector<std::pair<WaitCallback, bool>> due;
  {
    MutexLock lock(&wait_mu_);
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      bool woke = it->second.offset <= head;
      if (all || woke || it->second.deadline <= now) {
        due.emplace_back(std::move(it->second.cb), woke && !stopping);
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& [cb, woke] : due) cb(woke);
}

void Hub::Run() {
  NameThisThread("herald-hub");
  uint64_t epoch = store_->append_epoch();
  auto interval = std::chrono::milliseconds(1);
  while (!stop_.load()) {
    // Sleep until an in-process append, the poll interval, or the earliest
    // waiter deadline.
    auto wait = interval;
    {
      MutexLock lock(&wait_mu_);
      auto now = Clock::now();
      for (const auto& [id, w] : waiters_) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            w.deadline - now);
        if (left < wait) wait = std::max(left, std::chrono::milliseconds(0));
      }
    }
    uint64_t seen = epoch;
    epoch = store_->WaitForAppend(seen, wait);
    if (stop_.load()) break;
    // Woken by commits the appender already pushed: nothing to read (a
    // read transaction per commit cost 8% of a busy POST server).
    if (epoch != seen && epoch <= pushed_epoch_.load()) {
      WakeWaiters(false, false);
      continue;
    }
    // ... or is about to push (see BeginPush). Should another in-process
    // writer's commit be among them, the next Push finds the gap and reads
    // the store, or, with no further commit, the poll 1 ms from now does.
    if (epoch != seen && pushes_pending_.load() > 0) {
      interval = std::chrono::milliseconds(1);
      WakeWaiters(false, false);
      continue;
    }
    bool loaded = Load();
    if (loaded) {
      interval = std::chrono::milliseconds(1);
    } else if (epoch == seen) {
      interval = std::min(interval * 2, poll_max_);
    }
    WakeWaiters(false, false);
  }
}

}  // namespace herald::detail
