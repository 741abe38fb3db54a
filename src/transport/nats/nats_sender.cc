// The NATS JetStream sender: one connection and JetStream context per
// route, asynchronous publishes with Nats-Msg-Id = event id, the PubAck as
// the acknowledgement.
//
// Order: at most one event of a stream is in flight at a time (the next one
// is published only after the previous one's PubAck), so a failed event is
// never overtaken in its stream, and at most max_in_flight events are in
// flight in all. A repeat after a crash or a lost PubAck carries the same
// Nats-Msg-Id, so the stream's duplicate window stores it once.
//
// Failures: no responders on a subject while JetStream answers = no stream
// captures it (Permanent); a PubAck timeout, a lost connection, JetStream
// unavailable = Unavailable; a stream's refusal (a limit, a size) =
// Permanent, or ResourceExhausted for a full stream that refuses new ones.
//
// Threads: Send runs on the relay's thread; libnats calls the handlers below
// on its own threads; they only queue results in the sender's Mailbox and
// notify. libnats does not wait for them when the connection closes (a
// handler can still run after natsConnection_Close and jsCtx_Destroy
// returned), so a handler reaches the Mailbox through a registry, by
// number, and holds it while it uses it: a sender destroyed meanwhile
// leaves it behind until the handler is done. A completion owns the
// message libnats hands back, which identifies the event; the relay thread
// destroys it once matched.
//
// Cost per message: the headers are written as NATS sends them, in one
// buffer, and the message made from it in one allocation (Publish), where
// natsMsgHeader_Set costs ~4 allocations per header, all freed on libnats'
// collector thread while the relay thread allocates from the same arena:
// that contention alone had herald's client spend twice the CPU per
// message of a plain publisher (docs/benchmarks.md, NATS).
#include "transport/nats/nats_sender.h"

#include <nats/nats.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/template.h"
#include "herald/cloudevents.h"
#include "util/thread_annotations.h"

// libnats' own constructor of a message from its wire form (subject,
// reply, then one buffer holding the encoded header block and the body),
// which it uses for every message it receives. Not in nats.h, but exported
// with this signature from libnats 2.2 (headers) to 3.x; NatsSender checks
// at start that it behaves so (RawHeadersWork) and else builds messages
// with natsMsgHeader_Set (which a test forces: NatsTestKnobs).
extern "C" natsStatus natsMsg_create(natsMsg** new_msg, const char* subject,
                                     int subject_len, const char* reply,
                                     int reply_len, const char* buf,
                                     int buf_len, int header_len);

namespace herald::detail {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

struct NatsConfig {
  NameTemplate subject;
  std::string credentials;
  CloudEventsMode mode = CloudEventsMode::kBinary;
  milliseconds timeout{5000};
  milliseconds connect_timeout{5000};
};

Status ParseNatsOptions(const RouteOptions& o, int route_line,
                        NatsConfig* out) {
  bool have_subject = false;
  for (const auto& f : o.fields) {
    const std::string& k = f.key;
    const OptionValue& v = f.value;
    if (k == "subject") {
      HERALD_RETURN_IF_ERROR(ParseTemplateOption(o, k, v, &out->subject));
      if (v.string.find_first_of(" \t\r\n") != std::string::npos) {
        return o.Error(k, v.line, "a NATS subject has no whitespace");
      }
      have_subject = true;
    } else if (k == "credentials") {
      HERALD_RETURN_IF_ERROR(o.GetString(k, v, &out->credentials));
      if (out->credentials.empty()) {
        return o.Error(k, v.line, "must name a .creds file");
      }
    } else if (k == "mode") {
      HERALD_RETURN_IF_ERROR(o.GetMode(k, v, &out->mode));
    } else if (k == "timeout") {
      HERALD_RETURN_IF_ERROR(
          o.GetDuration(k, v, milliseconds(1), &out->timeout));
    } else if (k == "connect_timeout") {
      HERALD_RETURN_IF_ERROR(
          o.GetDuration(k, v, milliseconds(1), &out->connect_timeout));
    } else {
      return o.UnknownKey(f, kNatsKeys);
    }
  }
  if (!have_subject) {
    return o.Error("subject", route_line,
                   "required for a nats:// sender (e.g. subject = "
                   "\"events.{category}.{type}\")");
  }
  return Status::OK();
}

struct OptionsDeleter {
  void operator()(natsOptions* p) const { natsOptions_Destroy(p); }
};
struct ConnectionDeleter {
  void operator()(natsConnection* p) const { natsConnection_Destroy(p); }
};
struct JsDeleter {
  void operator()(jsCtx* p) const { jsCtx_Destroy(p); }
};
struct MsgDeleter {
  void operator()(natsMsg* p) const { natsMsg_Destroy(p); }
};
using MsgPtr = std::unique_ptr<natsMsg, MsgDeleter>;

// At most this many publishes in flight after a round of publishing: a
// trickle, flushed at once rather than by libnats' flusher a moment later.
constexpr size_t kFlushBelow = 4;

std::string NatsText(natsStatus s) { return natsStatus_GetText(s); }

// A URL without its user, password or token, for messages.
std::string RedactUrl(std::string_view url) {
  std::string out;
  size_t from = 0;
  while (from <= url.size()) {
    size_t comma = url.find(',', from);
    std::string_view one = url.substr(from, comma == std::string_view::npos
                                                ? std::string_view::npos
                                                : comma - from);
    size_t scheme_end = one.find("://");
    size_t at = one.rfind('@');
    if (scheme_end != std::string_view::npos && at != std::string_view::npos &&
        at > scheme_end) {
      out += std::string(one.substr(0, scheme_end + 3)) + "***@" +
             std::string(one.substr(at + 1));
    } else {
      out += one;
    }
    if (comma == std::string_view::npos) break;
    out += ',';
    from = comma + 1;
  }
  return out;
}

// One PubAck or publish error, as a libnats thread reported it.
struct Completion {
  // The message published, handed back with its answer and owned from then
  // on: it identifies the event (its address cannot be reused by another
  // publish while it is alive, so an answer that arrives late, for an
  // abandoned event, never passes for a newer one), and it is destroyed on
  // the relay thread once looked at.
  MsgPtr msg;
  std::string subject;  // where it went (a failure's only)
  bool ok = false;
  natsStatus err = NATS_OK;
  jsErrCode code = static_cast<jsErrCode>(0);
  std::string text;
};

// A map from keys (string views: the caller keeps the strings alive; or
// pointers) to indexes, for the relay thread's bookkeeping of a call: open
// addressing with linear probing in one array reused across calls, so a
// call neither allocates nor clears it (a slot belongs to the current call
// only when it carries the call's generation).
template <typename Key>
class IndexTable {
 public:
  static constexpr size_t kNone = static_cast<size_t>(-1);

  // Empties the table, with room for `keys` keys.
  void Reset(size_t keys) {
    size_t want = 16;
    while (want < 2 * keys) want *= 2;
    if (want > slots_.size()) {
      slots_.assign(want, Slot{});
      gen_ = 0;
    }
    if (++gen_ == 0) {  // wrapped: no slot may look current
      for (Slot& slot : slots_) slot.gen = 0;
      gen_ = 1;
    }
    mask_ = slots_.size() - 1;
    size_ = 0;
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The value of `key`, or kNone.
  size_t Find(Key key) const {
    const uint64_t h = Hash(key);
    for (size_t at = h & mask_;; at = (at + 1) & mask_) {
      const Slot& slot = slots_[at];
      if (slot.gen != gen_) return kNone;
      if (slot.hash == h && slot.key == key) return slot.value;
    }
  }
  // Adds key -> value unless `key` is there; returns its value slot and
  // whether it was added.
  std::pair<size_t*, bool> Insert(Key key, size_t value) {
    if (2 * (size_ + 1) > slots_.size()) Grow();
    const uint64_t h = Hash(key);
    for (size_t at = h & mask_;; at = (at + 1) & mask_) {
      Slot& slot = slots_[at];
      if (slot.gen != gen_) {
        slot = Slot{key, h, value, gen_};
        ++size_;
        return {&slot.value, true};
      }
      if (slot.hash == h && slot.key == key) return {&slot.value, false};
    }
  }
  // Removes `key`; its value, or kNone if it was not there.
  size_t Erase(Key key) {
    const uint64_t h = Hash(key);
    size_t at = h & mask_;
    for (;; at = (at + 1) & mask_) {
      const Slot& slot = slots_[at];
      if (slot.gen != gen_) return kNone;
      if (slot.hash == h && slot.key == key) break;
    }
    const size_t value = slots_[at].value;
    // Backward-shift deletion: moves later entries of the probe run into
    // the hole when their home slot allows it, so no tombstones remain.
    size_t hole = at;
    for (size_t next = (hole + 1) & mask_;; next = (next + 1) & mask_) {
      Slot& slot = slots_[next];
      if (slot.gen != gen_) break;
      const size_t home = slot.hash & mask_;
      // Stays when its home lies cyclically in (hole, next].
      const bool stays = hole <= next ? (home > hole && home <= next)
                                      : (home > hole || home <= next);
      if (stays) continue;
      slots_[hole] = slot;
      hole = next;
    }
    slots_[hole].gen = 0;
    --size_;
    return value;
  }
  // Calls fn(key, value) for each entry.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    if (size_ == 0) return;
    for (const Slot& slot : slots_) {
      if (slot.gen == gen_) fn(slot.key, slot.value);
    }
  }

 private:
  struct Slot {
    Key key{};
    uint64_t hash = 0;
    size_t value = 0;
    uint32_t gen = 0;
  };
  static uint64_t Hash(Key key) {
    if constexpr (std::is_pointer_v<Key>) {
      // Fibonacci hashing of the address (its low bits are alignment).
      return (reinterpret_cast<uintptr_t>(key) >> 4) * 0x9E3779B97F4A7C15ull;
    } else {
      return std::hash<Key>{}(key);
    }
  }
  // Doubles the slots, keeping the entries (not expected: Reset sizes the
  // table for the call).
  void Grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    const uint32_t old_gen = gen_;
    slots_.assign(std::max<size_t>(16, 2 * old.size()), Slot{});
    mask_ = slots_.size() - 1;
    gen_ = 1;
    size_ = 0;
    for (const Slot& slot : old) {
      if (slot.gen == old_gen) Insert(slot.key, slot.value);
    }
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
  uint32_t gen_ = 0;
};

// What libnats' threads hand a sender: completions and connection news.
struct Mailbox {
  detail::Mutex mu;
  detail::CondVar cv;
  std::vector<Completion> done GUARDED_BY(mu);
  bool lost GUARDED_BY(mu) = false;  // a disconnect happened
};

// The Mailboxes of the live senders, by number: the closure libnats hands
// back to the handlers is the number, never a pointer into a sender.
class Mailboxes {
 public:
  static Mailboxes& Get() {
    static auto* boxes = new Mailboxes;  // never destroyed: handlers may run
    return *boxes;                       // until the process ends
  }
  void* Add(std::shared_ptr<Mailbox> box) {
    detail::MutexLock lock(&mu_);
    uintptr_t n = ++next_;
    boxes_.emplace(n, std::move(box));
    return reinterpret_cast<void*>(n);
  }
  // After Remove no handler finds the Mailbox; one that found it before
  // keeps it alive until it is done.
  void Remove(void* closure) {
    std::shared_ptr<Mailbox> gone;  // released outside mu_
    detail::MutexLock lock(&mu_);
    auto it = boxes_.find(reinterpret_cast<uintptr_t>(closure));
    if (it == boxes_.end()) return;
    gone = std::move(it->second);
    boxes_.erase(it);
  }
  std::shared_ptr<Mailbox> Find(void* closure) {
    detail::MutexLock lock(&mu_);
    auto it = boxes_.find(reinterpret_cast<uintptr_t>(closure));
    return it == boxes_.end() ? nullptr : it->second;
  }

 private:
  detail::Mutex mu_;
  std::unordered_map<uintptr_t, std::shared_ptr<Mailbox>> boxes_
      GUARDED_BY(mu_);
  uintptr_t next_ GUARDED_BY(mu_) = 0;
};

using IdTable = IndexTable<std::string_view>;
using MsgTable = IndexTable<const natsMsg*>;
constexpr size_t kNone = static_cast<size_t>(-1);
constexpr char kMsgIdHeader[] = "Nats-Msg-Id";

// Whether natsMsg_create makes, from an encoded header block, a message
// whose headers and body read back through the public API as given.
bool RawHeadersWork() {
  static const bool works = [] {
    static constexpr char kBlock[] =
        "NATS/1.0\r\nce-id: a b%20c\r\nNats-Msg-Id: x-1\r\n\r\nbody";
    const int header_len = static_cast<int>(sizeof kBlock - 1 - 4);
    natsMsg* raw = nullptr;
    if (natsMsg_create(&raw, "s.t", 3, nullptr, 0, kBlock,
                       static_cast<int>(sizeof kBlock - 1),
                       header_len) != NATS_OK ||
        raw == nullptr) {
      return false;
    }
    MsgPtr msg(raw);
    const char* id = nullptr;
    const char* ce = nullptr;
    return natsMsgHeader_Get(raw, kMsgIdHeader, &id) == NATS_OK && id &&
           std::strcmp(id, "x-1") == 0 &&
           natsMsgHeader_Get(raw, "ce-id", &ce) == NATS_OK && ce &&
           std::strcmp(ce, "a b%20c") == 0 && natsMsg_GetDataLength(raw) == 4 &&
           std::memcmp(natsMsg_GetData(raw), "body", 4) == 0 &&
           std::strcmp(natsMsg_GetSubject(raw), "s.t") == 0;
  }();
  return works;
}

class NatsSender final : public Sender {
 public:
  NatsSender(const RouteConfig& route, NatsConfig config,
             const NatsTestKnobs& knobs)
      : config_(std::move(config)),
        url_(route.sender),
        source_(route.sender_options.source),
        max_in_flight_(std::max(1, route.max_in_flight)),
        force_header_set_(knobs.force_header_set) {}

  ~NatsSender() override {
    // From here on the handlers find nothing to report to.
    if (closure_) Mailboxes::Get().Remove(closure_);
    if (conn_) natsConnection_Close(conn_.get());
    js_.reset();
    conn_.reset();
  }

  Status Open(const std::string& name) {
    natsOptions* raw = nullptr;
    natsStatus s = natsOptions_Create(&raw);
    if (s != NATS_OK) return Status::Internal("nats options: " + NatsText(s));
    opts_.reset(raw);
    // Once libnats is open (natsOptions_Create opened it): a message's
    // destruction goes through its collector.
    raw_headers_ = !force_header_set_ && RawHeadersWork();
    natsOptions* o = opts_.get();
    s = natsOptions_SetURL(o, url_.c_str());
    if (s != NATS_OK) {
      return Status::InvalidArgument("'" + RedactUrl(url_) +
                                     "': " + NatsText(s));
    }
    if (!config_.credentials.empty()) {
      // libnats reads the file only when it connects, in the background:
      // a missing file is told here instead.
      if (FILE* f = std::fopen(config_.credentials.c_str(), "r")) {
        std::fclose(f);
      } else {
        return Status::InvalidArgument("credentials '" + config_.credentials +
                                       "': " + std::strerror(errno));
      }
      s = natsOptions_SetUserCredentialsFromFiles(
          o, config_.credentials.c_str(), nullptr);
      if (s != NATS_OK) {
        return Status::InvalidArgument("credentials '" + config_.credentials +
                                       "': " + NatsText(s));
      }
    }
    natsOptions_SetName(o, ("herald route " + name).c_str());
    natsOptions_SetTimeout(o, config_.connect_timeout.count());
    // Reconnect forever, quickly: a relay outlives broker restarts.
    natsOptions_SetAllowReconnect(o, true);
    natsOptions_SetMaxReconnect(o, -1);
    natsOptions_SetReconnectWait(o, 100);

    closure_ = Mailboxes::Get().Add(box_);
    natsOptions_SetDisconnectedCB(o, &NatsSender::OnDisconnected, closure_);
    natsOptions_SetReconnectedCB(o, &NatsSender::OnConnected, closure_);
    natsOptions_SetRetryOnFailedConnect(o, true, &NatsSender::OnConnected,
                                        closure_);
    natsConnection* nc = nullptr;
    s = natsConnection_Connect(&nc, o);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
      if (nc) natsConnection_Destroy(nc);
      return Status::Unavailable("connecting to " + RedactUrl(url_) + ": " +
                                 NatsText(s));
    }
    conn_.reset(nc);

    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = config_.timeout.count();
    // Above herald's own bound, which is what limits what is in flight;
    // room for publishes abandoned at a deadline until they are dropped.
    jo.PublishAsync.MaxPending = 2 * static_cast<int64_t>(max_in_flight_);
    jo.PublishAsync.AckHandler = &NatsSender::OnPubAck;
    jo.PublishAsync.AckHandlerClosure = closure_;
    jsCtx* js = nullptr;
    s = natsConnection_JetStream(&js, conn_.get(), &jo);
    if (s != NATS_OK) {
      return Status::Internal("JetStream context: " + NatsText(s));
    }
    js_.reset(js);
    return Status::OK();
  }

  std::string_view kind() const override { return "nats"; }
  bool raw_headers() const { return raw_headers_; }

  void Send(std::span<const Event> events, std::span<SendResult> results,
            steady_clock::time_point deadline) override {
    SendCall(events, results, deadline, false);
  }
  void SendKeepingInFlight(std::span<const Event> events,
                           std::span<SendResult> results,
                           steady_clock::time_point deadline) override {
    SendCall(events, results, deadline, true);
  }

 private:
  // Send and SendKeepingInFlight (`keep`): see herald/sender.h.
  void SendCall(std::span<const Event> events, std::span<SendResult> results,
                steady_clock::time_point deadline, bool keep) {
    if (events.empty() || steady_clock::now() >= deadline) {
      carried_n_ = 0;  // abandoned
      return;
    }
    // next_of_[i]: the next event of events[i]'s stream in this call, or
    // kNone; heads: the first event of each stream, in order of first
    // appearance. An event left in flight by the last call is its stream's
    // head here (the caller's promise; one that is not is sent again in
    // its place in the stream).
    std::vector<size_t>& next_of = next_of_;
    next_of.assign(events.size(), kNone);
    IdTable& last_of = last_of_;
    last_of.Reset(events.size());
    // The heads of streams ready to publish, in order: ready[ready_at..].
    std::vector<size_t>& ready = ready_;
    ready.clear();
    size_t ready_at = 0;
    IdTable& carried = carried_;
    carried.Reset(carried_n_);
    for (size_t k = 0; k < carried_n_; ++k) carried.Insert(carried_ids_[k], k);
    MsgTable& in_flight = in_flight_;
    in_flight.Reset(std::min(events.size(),
                             static_cast<size_t>(max_in_flight_) + carried_n_));
    size_t unsent = events.size();  // not sent yet, nor given up
    for (size_t i = 0; i < events.size(); ++i) {
      auto [last, added] = last_of.Insert(events[i].stream, i);
      if (!added) {
        next_of[*last] = i;
        *last = i;
        continue;
      }
      if (size_t k = carried.empty() ? kNone : carried.Find(events[i].id);
          k != kNone) {
        in_flight.Insert(carried_msgs_[k], i);  // its answer is awaited
        results[i].attempted = true;
        --unsent;
        continue;
      }
      ready.push_back(i);
    }
    // Anything not passed again is abandoned.
    carried.Reset(0);
    carried_n_ = 0;

    bool lost = false;
    {
      detail::MutexLock lock(&box_->mu);
      if (in_flight.empty()) {
        box_->done.clear();
        box_->lost = false;
      }
      lost = box_->lost;
    }
    if (lost) {
      // The connection dropped since the last call: what it left in flight
      // may or may not be stored (retryable; a repeat is absorbed by the
      // duplicate window). The rest waits for the next call.
      FailAll(&in_flight, results,
              "connection to " + RedactUrl(url_) + " lost before the PubAck");
      DropPending();
      return;
    }
    if (!WaitConnected(std::min(
            deadline, steady_clock::now() + config_.connect_timeout))) {
      // The head of every stream fails (an attempt: the route shows the
      // error and backs off); the rest waits behind it.
      std::string why =
          "not connected to " + RedactUrl(url_) + " (reconnecting";
      const char* last = nullptr;
      if (natsConnection_GetLastError(conn_.get(), &last) != NATS_OK && last &&
          *last) {
        why += ": ";
        why += last;
      }
      Status s = Status::Unavailable(why + ")");
      for (size_t k = ready_at; k < ready.size(); ++k) {
        const size_t i = ready[k];
        results[i].status = s;
        results[i].attempted = true;
      }
      FailAll(&in_flight, results, why + ")");
      DropPending();
      return;
    }

    // Gives up the rest of the stream after events[i] (not sent).
    auto stop_stream = [&](size_t i) {
      for (size_t j = next_of[i]; j != kNone; j = next_of[j]) --unsent;
    };
    int jetstream_answers = -1;  // -1 not asked yet, 0 no, 1 yes
    std::string jetstream_error;
    bool connection_lost = false;
    std::string& body = body_;
    std::string& subject = subject_;
    size_t published = 0;  // in this round of the loop
    std::vector<Completion>& got = got_;
    for (;;) {
      // Publish the head of ready streams, up to the bound.
      while (!connection_lost &&
             static_cast<int>(in_flight.size()) < max_in_flight_ &&
             ready_at < ready.size() && steady_clock::now() < deadline) {
        const size_t i = ready[ready_at++];
        const Event& e = events[i];
        subject.clear();
        config_.subject.ExpandTo(e, &subject);
        const natsMsg* sent = nullptr;
        Status s = Publish(e, subject, &body, &sent);
        results[i].attempted = true;
        --unsent;
        if (!s.ok()) {
          results[i].status = s;  // the stream stops here
          stop_stream(i);
          if (s.retryable()) connection_lost = true;
          continue;
        }
        in_flight.Insert(sent, i);
        ++published;
      }
      if (keep && unsent == 0 && !connection_lost) {
        // Everything of this call is sent: what is not answered yet stays
        // in flight, answered in the next call.
        in_flight.ForEach([&](const natsMsg* msg, size_t i) {
          if (carried_ids_.size() == carried_n_) {
            carried_ids_.emplace_back();
            carried_msgs_.emplace_back();
          }
          carried_ids_[carried_n_].assign(events[i].id);
          carried_msgs_[carried_n_] = const_cast<natsMsg*>(msg);
          ++carried_n_;
          results[i] = SendResult::InFlight();
        });
        return;
      }
      if (in_flight.empty()) break;
      if (published > 0 && in_flight.size() <= kFlushBelow) {
        // A trickle (a steady rate, not a backlog): libnats' flusher would
        // wait about a millisecond to gather more publishes; send now.
        auto left = std::chrono::duration_cast<milliseconds>(
            deadline - steady_clock::now());
        natsConnection_FlushTimeout(
            conn_.get(),
            std::max<int64_t>(1, std::min(left, config_.timeout).count()));
      }
      published = 0;

      got.clear();
      {
        detail::MutexLock lock(&box_->mu);
        while (box_->done.empty() && !box_->lost &&
               box_->cv.WaitUntil(&box_->mu, deadline)) {
        }
        got.swap(box_->done);
        lost = box_->lost;
        box_->lost = false;
      }
      for (Completion& c : got) {
        const size_t i = in_flight.Erase(c.msg.get());
        if (i == kNone) continue;  // of an abandoned event
        if (c.ok) {
          results[i].status = Status::OK();
          if (next_of[i] != kNone) ready.push_back(next_of[i]);
          continue;
        }
        results[i].status = Classify(c, &jetstream_answers, &jetstream_error);
        stop_stream(i);
      }
      if (lost) {
        // Whatever was in flight may or may not be stored: retryable, and
        // a repeat is absorbed by the duplicate window.
        connection_lost = true;
        FailAll(&in_flight, results,
                "connection to " + RedactUrl(url_) + " lost before the PubAck");
        DropPending();
        break;
      }
      if (!in_flight.empty() && steady_clock::now() >= deadline) {
        FailAll(&in_flight, results, "no PubAck before the deadline");
        DropPending();
        break;
      }
    }
  }

  static void OnConnected(natsConnection*, void* closure) {
    auto box = Mailboxes::Get().Find(closure);
    if (!box) return;
    detail::MutexLock lock(&box->mu);
    box->cv.SignalAll();
  }
  static void OnDisconnected(natsConnection*, void* closure) {
    auto box = Mailboxes::Get().Find(closure);
    if (!box) return;
    detail::MutexLock lock(&box->mu);
    box->lost = true;
    box->cv.SignalAll();
  }
  // Called by libnats for every async publish: pa on success, pae on error.
  static void OnPubAck(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae,
                       void* closure) {
    Completion c;
    c.msg.reset(msg);
    if (pa != nullptr) {
      c.ok = true;
    } else if (pae != nullptr) {
      c.err = pae->Err;
      c.code = pae->ErrCode;
      if (pae->ErrText) c.text = pae->ErrText;
    }
    if (!c.ok && msg && natsMsg_GetSubject(msg)) {
      c.subject = natsMsg_GetSubject(msg);
    }
    if (!msg) return;
    auto box = Mailboxes::Get().Find(closure);
    if (!box) return;
    detail::MutexLock lock(&box->mu);
    box->done.push_back(std::move(c));
    box->cv.SignalAll();
  }

  // Whether the connection is up, waiting for it until `until`. The status
  // is read outside box_->mu (libnats takes its own lock); the wait is
  // woken by OnConnected, and re-checks at least every 50 ms.
  bool WaitConnected(steady_clock::time_point until) {
    for (;;) {
      if (natsConnection_Status(conn_.get()) == NATS_CONN_STATUS_CONNECTED) {
        return true;
      }
      auto now = steady_clock::now();
      if (now >= until) return false;
      detail::MutexLock lock(&box_->mu);
      box_->cv.WaitUntil(&box_->mu, std::min(until, now + milliseconds(50)));
    }
  }

  // Publishes `e` to `subject`; *sent: the message, which libnats hands
  // back to OnPubAck with its answer.
  Status Publish(const Event& e, const std::string& subject, std::string* body,
                 const natsMsg** sent) {
    const char* data = e.payload.data();
    size_t len = e.payload.size();
    if (config_.mode == CloudEventsMode::kStructured) {
      body->clear();
      AppendCloudEventJson(e, source_, body);
      data = body->data();
      len = body->size();
      headers_.resize(1);
      headers_[0].first.assign("Content-Type");
      headers_[0].second.assign("application/cloudevents+json");
    } else {
      EncodeCloudEventHeadersInto(e, source_, CloudEventBinding::kNats,
                                  &headers_);
    }
    natsMsg* raw = nullptr;
    natsStatus s = NATS_OK;
    if (raw_headers_) {
      // The header block as NATS sends it ("NATS/1.0", "Name: value"
      // lines, a blank line) followed by the body, in one allocation: the
      // same bytes on the wire as natsMsgHeader_Set per header, without
      // its ~4 allocations per header (freed on libnats' collector thread,
      // which then contends with this one for the allocator).
      std::string& block = block_;
      block.assign("NATS/1.0\r\n");
      for (const auto& [name, value] : headers_) {
        if (name.find_first_of("\r\n") != std::string::npos ||
            value.find_first_of("\r\n") != std::string::npos) {
          return Status::Permanent("headers of event " + e.id + ": '" + name +
                                   "' holds a line break");
        }
        block.append(name).append(": ").append(value).append("\r\n");
      }
      // JetStream's dedupe key.
      block.append(kMsgIdHeader).append(": ").append(e.id).append("\r\n\r\n");
      const size_t header_len = block.size();
      block.append(data, len);
      s = natsMsg_create(&raw, subject.data(), static_cast<int>(subject.size()),
                         nullptr, 0, block.data(),
                         static_cast<int>(block.size()),
                         static_cast<int>(header_len));
    } else {
      s = natsMsg_Create(&raw, subject.c_str(), nullptr, data,
                         static_cast<int>(len));
    }
    if (s != NATS_OK) {
      return Status::Permanent("subject '" + subject + "': " + NatsText(s));
    }
    MsgPtr msg(raw);
    if (!raw_headers_) {
      for (const auto& [name, value] : headers_) {
        if (s == NATS_OK) {
          s = natsMsgHeader_Set(msg.get(), name.c_str(), value.c_str());
        }
      }
      if (s == NATS_OK) {
        s = natsMsgHeader_Set(msg.get(), kMsgIdHeader, e.id.c_str());
      }
    }
    if (s != NATS_OK) {
      return Status::Permanent("headers of event " + e.id + ": " + NatsText(s));
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = config_.timeout.count();
    natsMsg* owned = msg.release();
    *sent = owned;
    s = js_PublishMsgAsync(js_.get(), &owned, &po);
    natsMsg_Destroy(owned);  // null when libnats took it
    published_any_ = true;
    if (s != NATS_OK) {
      return Status::Unavailable("publishing to '" + subject +
                                 "': " + NatsText(s));
    }
    return Status::OK();
  }

  Status Classify(const Completion& c, int* jetstream_answers,
                  std::string* jetstream_error) {
    const std::string where = "subject '" + c.subject + "'";
    if (c.err == NATS_NO_RESPONDERS) {
      // Nobody took the message: no stream captures the subject, unless
      // JetStream itself is not answering (starting up, a lost leader).
      if (*jetstream_answers < 0) {
        jsAccountInfo* info = nullptr;
        jsErrCode code = static_cast<jsErrCode>(0);
        natsStatus s = js_GetAccountInfo(&info, js_.get(), nullptr, &code);
        if (info) jsAccountInfo_Destroy(info);
        *jetstream_answers = s == NATS_OK ? 1 : 0;
        *jetstream_error = NatsText(s);
      }
      if (*jetstream_answers == 1) {
        return Status::Permanent(
            "no JetStream stream captures " + where +
            " (no responders); herald does not create streams: add one "
            "whose subjects match it");
      }
      return Status::Unavailable("no responders on " + where +
                                 " and JetStream does not answer (" +
                                 *jetstream_error + ")");
    }
    if (c.code != 0) {
      std::string text = "JetStream refused the message on " + where + ": " +
                         c.text + " (err_code " +
                         std::to_string(static_cast<int>(c.code)) + ")";
      switch (static_cast<int>(c.code)) {
        case 10008:  // cluster not available
        case 10023:  // insufficient resources
          return Status::Unavailable(std::move(text));
        default:
          break;
      }
      if (c.text.find("maximum") != std::string::npos &&
          c.text.find("exceeded") != std::string::npos &&
          c.text.find("payload") == std::string::npos &&
          c.text.find("size") == std::string::npos) {
        return Status::ResourceExhausted(std::move(text));  // a full stream
      }
      return Status::Permanent(std::move(text));
    }
    std::string text = NatsText(c.err);
    if (!c.text.empty() && c.text != text) text += ": " + c.text;
    if (c.err == NATS_TIMEOUT) {
      return Status::Unavailable("no PubAck on " + where + " within " +
                                 std::to_string(config_.timeout.count()) +
                                 "ms");
    }
    return Status::Unavailable("publishing on " + where + ": " + text);
  }

  void FailAll(MsgTable* in_flight, std::span<SendResult> results,
               const std::string& why) {
    in_flight->ForEach([&](const natsMsg*, size_t i) {
      results[i].status = Status::Unavailable(why);
    });
    in_flight->Reset(0);
  }

  // Takes back the publishes still waiting for a PubAck, so none of them
  // is answered into a later call.
  void DropPending() {
    // libnats has no list to return before the first asynchronous publish
    // (and crashes when asked for it).
    if (!published_any_) return;
    natsMsgList pending{};
    if (js_PublishAsyncGetPendingList(&pending, js_.get()) == NATS_OK) {
      natsMsgList_Destroy(&pending);
    }
    detail::MutexLock lock(&box_->mu);
    box_->done.clear();
  }

  const NatsConfig config_;
  const std::string url_;
  const std::string source_;
  const int max_in_flight_;
  const bool force_header_set_;  // NatsTestKnobs
  // The relay thread's (reused across calls, so a call allocates little):
  MessageHeaders headers_;  // Publish's
  std::vector<size_t> next_of_;
  IdTable last_of_;  // stream -> its last event in the call
  std::vector<size_t> ready_;
  // Message in flight -> index of its event in the call.
  MsgTable in_flight_;
  // The events a SendKeepingInFlight call left in flight, for the next
  // call: ids and messages in carried_ids_ / carried_msgs_ [0, carried_n_)
  // (the strings are reused), and a table of the ids while that call looks
  // them up.
  std::vector<std::string> carried_ids_;
  std::vector<natsMsg*> carried_msgs_;
  size_t carried_n_ = 0;
  IdTable carried_;
  std::string block_;  // Publish's header block and body
  std::string body_, subject_;
  std::vector<Completion> got_;
  bool published_any_ = false;  // js_PublishMsgAsync was called
  bool raw_headers_ = false;    // see Publish; set by Open

  // Shared with libnats' threads, which find it by closure_ (Mailboxes).
  const std::shared_ptr<Mailbox> box_ = std::make_shared<Mailbox>();
  void* closure_ = nullptr;

  std::unique_ptr<natsOptions, OptionsDeleter> opts_;
  std::unique_ptr<natsConnection, ConnectionDeleter> conn_;
  std::unique_ptr<jsCtx, JsDeleter> js_;
};

}  // namespace

Status ValidateNatsUrl(std::string_view url) {
  size_t from = 0;
  for (;;) {
    size_t comma = url.find(',', from);
    std::string_view one = url.substr(from, comma == std::string_view::npos
                                                ? std::string_view::npos
                                                : comma - from);
    const std::string shown = RedactUrl(one);
    if (one.substr(0, 7) != "nats://") {
      return Status::InvalidArgument("'" + shown + "' must start with nats://");
    }
    std::string_view auth = one.substr(7);
    auth = auth.substr(0, auth.find_first_of("/?#"));
    if (auto at = auth.rfind('@'); at != std::string_view::npos) {
      auth = auth.substr(at + 1);
    }
    std::string_view host = auth, port;
    if (auto colon = auth.rfind(':');
        colon != std::string_view::npos &&
        auth.find(']', colon) == std::string_view::npos) {
      host = auth.substr(0, colon);
      port = auth.substr(colon + 1);
      if (port.empty() || port.size() > 5 ||
          port.find_first_not_of("0123456789") != std::string_view::npos ||
          std::stoi(std::string(port)) < 1 ||
          std::stoi(std::string(port)) > 65535) {
        return Status::InvalidArgument("'" + shown + "' has a malformed port");
      }
    }
    if (host.empty() || host == "[]") {
      return Status::InvalidArgument("'" + shown + "' has no host");
    }
    if (comma == std::string_view::npos) return Status::OK();
    from = comma + 1;
  }
}

Status ValidateNatsOptions(RouteConfig* route) {
  NatsConfig config;
  return ParseNatsOptions(route->options, route->line, &config);
}

Result<std::unique_ptr<Sender>> MakeNatsSender(const RouteConfig& route) {
  return MakeNatsSenderForTest(route, NatsTestKnobs{});
}

Result<std::unique_ptr<Sender>> MakeNatsSenderForTest(
    const RouteConfig& route, const NatsTestKnobs& knobs) {
  NatsConfig config;
  HERALD_RETURN_IF_ERROR(ParseNatsOptions(route.options, route.line, &config));
  HERALD_RETURN_IF_ERROR(ValidateNatsUrl(route.sender));
  auto sender = std::make_unique<NatsSender>(route, std::move(config), knobs);
  HERALD_RETURN_IF_ERROR(sender->Open(route.name));
  return std::unique_ptr<Sender>(std::move(sender));
}

bool NatsSenderUsesWireForm(const Sender& sender) {
  const auto* nats = dynamic_cast<const NatsSender*>(&sender);
  return nats != nullptr && nats->raw_headers();
}

}  // namespace herald::detail
