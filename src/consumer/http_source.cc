// HttpSource: a herald server as a consumer source. Pages of GET
// /api/events (detail::PageClient, the pull consumer's client) are read
// from the consumer's checkpoint; each event is one delivery whose key is
// its stream and whose handle is its position. The checkpoint is the
// lowest position still in hand (or the next page's offset when nothing
// is): deliveries of different streams finish out of order, and the
// checkpoint never passes one that was not acknowledged, a released one
// least of all. It is saved in the consumer's store (RelayState checkpoint
// "consumer:NAME", a relaxed transaction) at most every 100 ms and at
// Close; a crash repeats at most what was acknowledged since the last save,
// which the inbox absorbs. It is not written in each inbox transaction: on
// PostgreSQL every handler would then wait on the one checkpoint row.
//
// Thread safety: as every ConsumerSource (one thread; Wake from any).
#include "consumer/http_source.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>

#include "consumer/page_client.h"
#include "herald/relay_state.h"

namespace herald::detail {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

class HttpSource final : public ConsumerSource {
 public:
  explicit HttpSource(const ConsumerSourceOptions& o) : options_(o) {
    if (const OptionValue* v = o.options.Find("token")) token_ = v->string;
    if (const OptionValue* v = o.options.Find("limit")) {
      limit_ = static_cast<int>(v->integer);
    }
  }
  ~HttpSource() override { Close(); }

  Status Start() override {
    PageClientOptions po;
    po.url = options_.url;
    po.token = token_;
    po.types = options_.types;
    po.stop = [this] { return long_poll_ && wake_.load(); };
    auto client = PageClient::Make(std::move(po));
    if (!client.ok()) return client.status();
    client_ = std::move(*client);
    if (options_.state) {
      auto saved = options_.state->GetCheckpoint(name());
      if (!saved.ok()) return saved.status();
      saved_ = *saved;
    }
    next_fetch_ = std::max<int64_t>(saved_, 1);
    return Status::OK();
  }

  Result<std::vector<SourceDelivery>> Poll(int max,
                                           milliseconds timeout) override {
    std::vector<SourceDelivery> out;
    if (buffer_.empty() && !wake_.exchange(false)) {
      std::vector<EventJsonItem> items;
      int64_t next = 0;
      // Only a long poll is cut short by Wake: a short one ends by itself.
      long_poll_ = timeout >= milliseconds(100);
      Status s = client_->Fetch(next_fetch_, limit_, timeout, &items, &next);
      if (wake_.exchange(false) && !s.ok()) return out;  // woken
      if (!s.ok()) return s;
      for (auto& item : items) {
        SourceDelivery d;
        d.event = std::move(item.event);
        d.key = d.event.stream;
        d.handle = static_cast<uint64_t>(d.event.position);
        buffer_.push_back(std::move(d));
      }
      if (next > next_fetch_) next_fetch_ = next;
      if (in_hand_.empty() && buffer_.empty()) (void)MaybeSave(false);
    }
    while (!buffer_.empty() && static_cast<int>(out.size()) < max) {
      in_hand_[static_cast<int64_t>(buffer_.front().handle)] = false;
      out.push_back(std::move(buffer_.front()));
      buffer_.pop_front();
    }
    return out;
  }

  Status Ack(std::span<const uint64_t> handles) override {
    for (uint64_t h : handles) {
      auto it = in_hand_.find(static_cast<int64_t>(h));
      if (it != in_hand_.end()) it->second = true;
    }
    while (!in_hand_.empty() && in_hand_.begin()->second) {
      in_hand_.erase(in_hand_.begin());
    }
    return MaybeSave(false);
  }

  Status Release(std::span<const uint64_t> handles) override {
    // Kept in hand unacknowledged: the checkpoint stays below them, so
    // they are read again after a restart.
    (void)handles;
    released_ = true;
    return Status::OK();
  }

  std::optional<int64_t> Lag() override {
    if (!client_) return std::nullopt;
    auto now = Clock::now();
    if (now >= next_head_) {
      next_head_ = now + std::chrono::seconds(5);
      auto head = client_->Head();
      if (head.ok()) head_ = *head;
    }
    if (head_ < 0) return std::nullopt;
    return std::max<int64_t>(0, head_ - (Checkpoint() - 1));
  }

  void Wake() override { wake_.store(true); }

  void Close() override {
    if (closed_ || !client_) return;
    closed_ = true;
    (void)MaybeSave(true);
  }

  std::string_view kind() const override { return "http"; }

 private:
  std::string name() const { return ConsumerCheckpointName(options_.consumer); }

  // The next offset to read after a restart.
  int64_t Checkpoint() const {
    if (!in_hand_.empty()) return in_hand_.begin()->first;
    if (!buffer_.empty()) return static_cast<int64_t>(buffer_.front().handle);
    return next_fetch_;
  }

  Status MaybeSave(bool now) {
    int64_t cp = Checkpoint();
    if (cp <= saved_ || !options_.state) return Status::OK();
    if (!now && Clock::now() < next_save_) return Status::OK();
    next_save_ = Clock::now() + milliseconds(100);
    auto tx = options_.state->BeginRelaxed();
    if (!tx.ok()) return tx.status();
    HERALD_RETURN_IF_ERROR(options_.state->SaveCheckpoint(**tx, name(), cp));
    HERALD_RETURN_IF_ERROR((*tx)->Commit());
    saved_ = cp;
    return Status::OK();
  }

  ConsumerSourceOptions options_;
  std::string token_;
  int limit_ = 1000;
  std::unique_ptr<PageClient> client_;
  std::atomic<bool> wake_{false};
  std::atomic<bool> long_poll_{false};
  int64_t next_fetch_ = 1;
  int64_t saved_ = 0;
  std::deque<SourceDelivery> buffer_;  // read, not yet handed out
  std::map<int64_t, bool> in_hand_;    // position -> acknowledged
  bool released_ = false;
  bool closed_ = false;
  Clock::time_point next_save_{};
  Clock::time_point next_head_{};
  int64_t head_ = -1;
};

}  // namespace

Status ValidateHttpSourceOptions(ConsumerSourceOptions* options) {
  const RouteOptions& o = options->options;
  for (const auto& f : o.fields) {
    if (f.key == "token") {
      std::string token;
      HERALD_RETURN_IF_ERROR(o.GetString(f.key, f.value, &token));
    } else if (f.key == "limit") {
      int64_t limit;
      HERALD_RETURN_IF_ERROR(o.GetInt(f.key, f.value, 1, 10000, &limit));
    } else {
      return o.UnknownKey(f, kHttpSourceKeys);
    }
  }
  return Status::OK();
}

Result<std::unique_ptr<ConsumerSource>> MakeHttpSource(
    const ConsumerSourceOptions& options) {
  return std::unique_ptr<ConsumerSource>(new HttpSource(options));
}

}  // namespace herald::detail
