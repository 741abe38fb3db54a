// The NATS JetStream consumer source on libnats: a durable PULL consumer.
//
//   Start        connects (libnats reconnects by itself, forever, as the
//                sender's connection does), creates the durable (explicit
//                acks, MaxAckPending = max_in_hand, deliver all, filtered
//                by `subject` when given) unless it exists, and binds a
//                pull subscription to it. A stream that does not exist, or
//                a durable of another kind (push), is FailedPrecondition.
//   Poll         natsSubscription_Fetch of up to `max` messages, waiting at
//                most 100 ms per call (a Fetch cannot be woken). Each is
//                decoded from the NATS binding the sender writes (ce-*
//                headers) or structured CloudEvents JSON (Content-Type
//                application/cloudevents+json); NumDelivered - 1 is the
//                delivery's redeliveries.
//   key          the event's stream (rule 2): JetStream acknowledges each
//                message on its own (AckExplicit), in any order, so the
//                streams of one JetStream stream are handled in parallel;
//                a stream's messages come in sequence order and are
//                handled one at a time.
//   restart      JetStream redelivers what a crashed run held unacknowledged
//                only after its AckWait (10 s on the durables herald
//                creates), after newer messages. So Start reads the
//                durable's NumAckPending (after 250 ms when the earlier
//                run's pull requests may still be served to its dead
//                inbox), counted by sequence: until those have come back (at
//                most 2 AckWaits) every message is held (kept alive with
//                InProgress); then the returned ones are handed out in
//                stream-sequence order (JetStream redelivers in no
//                particular order), then the newer ones: a stream's events
//                are not handled out of order after a crash.
//   Ack          natsMsg_Ack per message. Release: natsMsg_Nak (redelivered
//                at once). KeepAlive: natsMsg_InProgress for running ones
//                and for any in hand longer than half the AckWait, so a
//                slow handler's message is not handed out again.
//   Lag          the consumer's NumPending (messages not yet delivered), at
//                most once a second.
//
// Thread safety: one thread (the consumer's source thread); Wake from any
// (it only shortens the current wait: Fetch returns within 100 ms anyway).
#include "transport/nats/nats_source.h"

#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "herald/cloudevents.h"
#include "herald/redact.h"
#include "herald/sender.h"
#include "transport/nats/nats_sender.h"
#include "transport/source_util.h"

namespace herald::detail {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The AckWait of the durables herald creates.
constexpr std::chrono::seconds kAckWait{10};

struct NatsSourceConfig {
  std::string stream;
  std::string durable;
  std::string subject;  // filter; "" = every subject of the stream
  std::string credentials;
  milliseconds connect_timeout{5000};
};

bool ValidDurable(const std::string& d) {
  if (d.empty()) return false;
  for (char c : d) {
    if (c == '.' || c == '*' || c == '>' || c == ' ' || c == '\t' ||
        c == '\r' || c == '\n') {
      return false;
    }
  }
  return true;
}

Status ParseNatsSource(const ConsumerSourceOptions& so, NatsSourceConfig* out) {
  const RouteOptions& o = so.options;
  bool have_stream = false, have_durable = false;
  for (const auto& f : o.fields) {
    const std::string& k = f.key;
    const OptionValue& v = f.value;
    if (k == "stream") {
      HERALD_RETURN_IF_ERROR(o.GetString(k, v, &out->stream));
      if (!ValidDurable(out->stream)) {
        return o.Error(k, v.line,
                       "must be a JetStream stream name (no '.', '*', '>' "
                       "or whitespace)");
      }
      have_stream = true;
    } else if (k == "durable") {
      HERALD_RETURN_IF_ERROR(o.GetString(k, v, &out->durable));
      if (!ValidDurable(out->durable)) {
        return o.Error(k, v.line,
                       "must be a JetStream durable name (no '.', '*', '>' "
                       "or whitespace)");
      }
      have_durable = true;
    } else if (k == "subject") {
      HERALD_RETURN_IF_ERROR(o.GetString(k, v, &out->subject));
      if (out->subject.empty()) return o.Error(k, v.line, "must not be empty");
    } else if (k == "credentials") {
      HERALD_RETURN_IF_ERROR(o.GetString(k, v, &out->credentials));
      if (out->credentials.empty()) {
        return o.Error(k, v.line, "must name a .creds file");
      }
    } else if (k == "connect_timeout") {
      HERALD_RETURN_IF_ERROR(
          o.GetDuration(k, v, milliseconds(1), &out->connect_timeout));
    } else {
      return o.UnknownKey(f, kNatsSourceKeys);
    }
  }
  if (!have_stream) {
    return o.Error("stream", ConsumerTableLine(so),
                   "is required for a nats:// source (the JetStream stream "
                   "to consume)");
  }
  if (!have_durable) {
    out->durable = so.consumer;
    if (!ValidDurable(out->durable)) {
      return o.Error("durable", ConsumerTableLine(so),
                     "is required: the consumer's name '" + so.consumer +
                         "' cannot be a JetStream durable name (it has a "
                         "'.')");
    }
  }
  return Status::OK();
}

std::string NatsText(natsStatus s) {
  std::string t = natsStatus_GetText(s);
  const char* last = nats_GetLastError(nullptr);
  if (last && *last && t != last) t += std::string(": ") + last;
  return t;
}

struct InHand {
  natsMsg* msg = nullptr;
  Clock::time_point since;
  uint64_t seq = 0;  // the stream sequence (held and returning ones)
};

class NatsSource final : public ConsumerSource {
 public:
  NatsSource(const ConsumerSourceOptions& so, NatsSourceConfig c)
      : options_(so), c_(std::move(c)) {}
  ~NatsSource() override { Close(); }

  Status Start() override {
    if (!conn_) HERALD_RETURN_IF_ERROR(Connect());
    if (!sub_) HERALD_RETURN_IF_ERROR(Subscribe());
    return Status::OK();
  }

  Result<std::vector<SourceDelivery>> Poll(int max,
                                           milliseconds timeout) override {
    std::vector<SourceDelivery> out;
    if (!sub_) {
      Status s = Start();
      if (!s.ok()) return s;
    }
    auto now = Clock::now();
    TouchHeld(now);
    if (gated_ && gate_left_ > 0 && now >= next_gate_check_) {
      next_gate_check_ = now + milliseconds(200);
      CheckGate();
    }
    if (gated_ && (gate_left_ <= 0 || now >= gate_deadline_)) {
      gated_ = false;
      if (gate_left_ > 0 && options_.on_log) {
        options_.on_log("gave up waiting for " + std::to_string(gate_left_) +
                        " messages of an earlier run to come back");
      }
      // JetStream redelivers in no particular order: the earlier run's
      // messages in stream order, then the newer ones.
      std::stable_sort(
          returning_.begin(), returning_.end(),
          [](const InHand& a, const InHand& b) { return a.seq < b.seq; });
      held_.insert(held_.begin(), returning_.begin(), returning_.end());
      returning_.clear();
    }
    if (!gated_ && !held_.empty()) {
      // Newer messages held while an earlier run's came back: in order.
      while (!held_.empty() && static_cast<int>(out.size()) < max) {
        HandOut(held_.front().msg, now, &out);
        held_.pop_front();
      }
      return out;
    }
    if (wake_.exchange(false)) timeout = milliseconds(1);
    timeout = std::clamp(timeout, milliseconds(1), milliseconds(100));
    natsMsgList list{};
    jsErrCode code = static_cast<jsErrCode>(0);
    natsStatus s = natsSubscription_Fetch(&list, sub_, std::max(1, max),
                                          timeout.count(), &code);
    if (s == NATS_TIMEOUT || s == NATS_NOT_FOUND) return out;
    if (s != NATS_OK) {
      if (s == NATS_INVALID_SUBSCRIPTION || s == NATS_CONNECTION_CLOSED) {
        DropSubscription();
      }
      return Status::Unavailable("fetching from JetStream stream '" +
                                 c_.stream + "' consumer '" + c_.durable +
                                 "': " + NatsText(s));
    }
    now = Clock::now();
    for (int i = 0; i < list.Count; ++i) {
      natsMsg* m = list.Msgs[i];
      list.Msgs[i] = nullptr;  // ours now
      uint64_t seq = Sequence(m);
      if (gated_ && seq <= gate_seq_) {
        // Counted once: one held longer than its AckWait comes again.
        if (returned_.insert(seq).second) --gate_left_;
        returning_.push_back(InHand{m, now, seq});
        continue;
      }
      if (gated_ || !held_.empty()) {
        held_.push_back(InHand{m, now, seq});
        continue;
      }
      HandOut(m, now, &out);
    }
    natsMsgList_Destroy(&list);
    return out;
  }

  Status Ack(std::span<const uint64_t> handles) override {
    Status first;
    for (uint64_t h : handles) {
      auto it = in_hand_.find(h);
      if (it == in_hand_.end()) continue;
      natsStatus s = natsMsg_Ack(it->second.msg, nullptr);
      if (s != NATS_OK && first.ok()) {
        first = Status::Unavailable("acknowledging: " + NatsText(s));
      }
      natsMsg_Destroy(it->second.msg);
      in_hand_.erase(it);
    }
    return first;
  }

  Status Release(std::span<const uint64_t> handles) override {
    Status first;
    for (uint64_t h : handles) {
      auto it = in_hand_.find(h);
      if (it == in_hand_.end()) continue;
      natsStatus s = natsMsg_Nak(it->second.msg, nullptr);
      if (s != NATS_OK && first.ok()) {
        first = Status::Unavailable("releasing: " + NatsText(s));
      }
      natsMsg_Destroy(it->second.msg);
      in_hand_.erase(it);
    }
    return first;
  }

  void KeepAlive(std::span<const uint64_t> handles) override {
    auto now = Clock::now();
    auto old = now - ack_wait_ / 2;
    std::vector<uint64_t> touch(handles.begin(), handles.end());
    for (const auto& [h, m] : in_hand_) {
      if (m.since < old) touch.push_back(h);
    }
    for (uint64_t h : touch) {
      auto it = in_hand_.find(h);
      if (it == in_hand_.end() || it->second.since == now) continue;
      (void)natsMsg_InProgress(it->second.msg, nullptr);
      it->second.since = now;
    }
  }

  std::optional<int64_t> Lag() override {
    if (!sub_) return lag_;
    auto now = Clock::now();
    if (now < next_lag_) return lag_;
    next_lag_ = now + std::chrono::seconds(1);
    jsConsumerInfo* ci = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    natsStatus s = js_GetConsumerInfo(&ci, js_, c_.stream.c_str(),
                                      c_.durable.c_str(), nullptr, &code);
    if (s == NATS_OK && ci) {
      lag_ = static_cast<int64_t>(ci->NumPending);
    } else if (options_.on_log) {
      options_.on_log("asking for durable '" + c_.durable +
                      "' pending count: " + NatsText(s));
    }
    if (ci) jsConsumerInfo_Destroy(ci);
    return lag_;
  }

  void Wake() override { wake_.store(true); }

  void Close() override {
    // Unacknowledged messages are redelivered after their AckWait; the
    // durable stays (Unsubscribe would delete only an ephemeral one).
    for (auto& [h, m] : in_hand_) natsMsg_Destroy(m.msg);
    in_hand_.clear();
    for (auto& h : held_) natsMsg_Destroy(h.msg);
    held_.clear();
    for (auto& h : returning_) natsMsg_Destroy(h.msg);
    returning_.clear();
    DropSubscription();
    if (conn_) {
      natsConnection_Close(conn_);
      if (js_) jsCtx_Destroy(js_);
      js_ = nullptr;
      natsConnection_Destroy(conn_);
      conn_ = nullptr;
    }
    if (opts_) natsOptions_Destroy(opts_);
    opts_ = nullptr;
  }

  std::string_view kind() const override { return "nats"; }

 private:
  Status Connect() {
    natsStatus s = natsOptions_Create(&opts_);
    if (s != NATS_OK) return Status::Internal("nats options: " + NatsText(s));
    s = natsOptions_SetURL(opts_, options_.url.c_str());
    if (s != NATS_OK) {
      return Status::InvalidArgument("'" + RedactSecrets(options_.url) +
                                     "': " + NatsText(s));
    }
    if (!c_.credentials.empty()) {
      if (FILE* f = std::fopen(c_.credentials.c_str(), "r")) {
        std::fclose(f);
      } else {
        return Status::FailedPrecondition("credentials '" + c_.credentials +
                                          "': " + std::strerror(errno));
      }
      s = natsOptions_SetUserCredentialsFromFiles(opts_, c_.credentials.c_str(),
                                                  nullptr);
      if (s != NATS_OK) {
        return Status::FailedPrecondition("credentials '" + c_.credentials +
                                          "': " + NatsText(s));
      }
    }
    natsOptions_SetName(opts_,
                        ("herald consumer " + options_.consumer).c_str());
    natsOptions_SetTimeout(opts_, c_.connect_timeout.count());
    natsOptions_SetAllowReconnect(opts_, true);
    natsOptions_SetMaxReconnect(opts_, -1);
    natsOptions_SetReconnectWait(opts_, 100);
    s = natsConnection_Connect(&conn_, opts_);
    if (s != NATS_OK) {
      if (conn_) natsConnection_Destroy(conn_);
      conn_ = nullptr;
      natsOptions_Destroy(opts_);
      opts_ = nullptr;
      return Status::Unavailable(
          "connecting to " + RedactSecrets(options_.url) + ": " + NatsText(s));
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    s = natsConnection_JetStream(&js_, conn_, &jo);
    if (s != NATS_OK) {
      return Status::Internal("JetStream context: " + NatsText(s));
    }
    return Status::OK();
  }

  // Creates the durable unless it exists, then binds a pull subscription.
  Status Subscribe() {
    jsErrCode code = static_cast<jsErrCode>(0);
    jsConsumerInfo* ci = nullptr;
    natsStatus s = js_GetConsumerInfo(&ci, js_, c_.stream.c_str(),
                                      c_.durable.c_str(), nullptr, &code);
    if (code == JSStreamNotFoundErr) {
      return Status::FailedPrecondition(
          "JetStream stream '" + c_.stream +
          "' does not exist (herald creates no streams)");
    }
    if (s != NATS_OK &&
        (s == NATS_NOT_FOUND || code == JSConsumerNotFoundErr)) {
      if (ci) jsConsumerInfo_Destroy(ci);
      ci = nullptr;
      jsConsumerConfig cc;
      jsConsumerConfig_Init(&cc);
      cc.Durable = c_.durable.c_str();
      cc.AckPolicy = js_AckExplicit;
      cc.DeliverPolicy = js_DeliverAll;
      cc.MaxAckPending = std::max(1, options_.max_in_hand);
      // KeepAlive extends what is in hand; a crashed run's messages come
      // back after this.
      cc.AckWait = std::chrono::nanoseconds(kAckWait).count();
      if (!c_.subject.empty()) cc.FilterSubject = c_.subject.c_str();
      s = js_AddConsumer(&ci, js_, c_.stream.c_str(), &cc, nullptr, &code);
      if (s != NATS_OK && code != JSConsumerNameExistErr &&
          code != JSConsumerExistingActiveErr) {
        return Unreachable("creating durable '" + c_.durable + "' on stream '" +
                               c_.stream + "'",
                           s, code);
      }
      if (s != NATS_OK) {
        s = js_GetConsumerInfo(&ci, js_, c_.stream.c_str(), c_.durable.c_str(),
                               nullptr, &code);
      }
    }
    if (s != NATS_OK || !ci) {
      return Unreachable("looking up durable '" + c_.durable + "'", s, code);
    }
    std::string filter = ci->Config->FilterSubject
                             ? std::string(ci->Config->FilterSubject)
                             : std::string();
    bool push = ci->Config->DeliverSubject && *ci->Config->DeliverSubject;
    // Messages an earlier run held unacknowledged come back after their
    // AckWait; newer ones are held back until then (order per stream).
    // The earlier run's last pull requests (each expires within 100 ms of
    // being sent) may still be served to its dead inbox: wait until the
    // server has none waiting (a loaded server expires them late), then read
    // what that run holds. Bounded: another live process of this durable
    // keeps requests waiting all the time.
    const auto pulls_deadline = Clock::now() + std::chrono::seconds(2);
    while (ci->NumWaiting > 0 && Clock::now() < pulls_deadline) {
      std::this_thread::sleep_for(milliseconds(50));
      jsConsumerInfo* again = nullptr;
      if (js_GetConsumerInfo(&again, js_, c_.stream.c_str(), c_.durable.c_str(),
                             nullptr, &code) != NATS_OK ||
          !again) {
        break;
      }
      jsConsumerInfo_Destroy(ci);
      ci = again;
    }
    if (ci->NumAckPending > 0) {
      gated_ = true;
      gate_seq_ = ci->Delivered.Stream;
      gate_left_ = ci->NumAckPending;
      returned_.clear();
    }
    if (ci->Config->AckWait > 0) {
      ack_wait_ = std::chrono::duration_cast<Clock::duration>(
          std::chrono::nanoseconds(ci->Config->AckWait));
    }
    jsConsumerInfo_Destroy(ci);
    // A backstop only: CheckGate opens the gate once the server has no
    // message of the earlier run outside this process's hands. A message
    // redelivered to a pull request of the dead run is pending another
    // AckWait, hence more than two.
    gate_deadline_ = Clock::now() + 4 * ack_wait_ + std::chrono::seconds(1);
    if (push) {
      return Status::FailedPrecondition("JetStream consumer '" + c_.durable +
                                        "' is a push consumer; herald needs a "
                                        "pull consumer (another durable)");
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = c_.stream.c_str();
    so.Consumer = c_.durable.c_str();
    so.ManualAck = true;
    std::string subject = filter.empty() ? ">" : filter;
    s = js_PullSubscribe(&sub_, js_, subject.c_str(), c_.durable.c_str(),
                         nullptr, &so, &code);
    if (s != NATS_OK) {
      sub_ = nullptr;
      return Unreachable("subscribing to durable '" + c_.durable + "'", s,
                         code);
    }
    return Status::OK();
  }

  // Opens the gate (gate_left_ = 0) when every message the earlier run
  // held is acknowledged or back in this process's hands: the durable's
  // acknowledgement floor passed gate_seq_, or all its pending messages are
  // ones this process holds. Counting returns alone misses a message the
  // dead run acknowledged as it died, and the backstop deadline alone lets
  // newer messages of a stream overtake one that comes back late.
  void CheckGate() {
    jsConsumerInfo* ci = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    if (js_GetConsumerInfo(&ci, js_, c_.stream.c_str(), c_.durable.c_str(),
                           nullptr, &code) != NATS_OK ||
        !ci) {
      return;  // asked again at the next poll; the deadline still stands
    }
    const auto ours =
        static_cast<int64_t>(returned_.size() + held_.size() + in_hand_.size());
    if (ci->AckFloor.Stream >= gate_seq_ ||
        static_cast<int64_t>(ci->NumAckPending) <= ours) {
      gate_left_ = 0;
    }
    jsConsumerInfo_Destroy(ci);
  }

  static Status Unreachable(const std::string& what, natsStatus s,
                            jsErrCode code) {
    std::string text = what + ": " + NatsText(s);
    if (code != 0) text += " (JetStream error " + std::to_string(code) + ")";
    if (s == NATS_TIMEOUT || s == NATS_CONNECTION_CLOSED ||
        s == NATS_NO_SERVER || s == NATS_NOT_YET_CONNECTED ||
        s == NATS_CONNECTION_DISCONNECTED || code == JSNotEnabledErr) {
      return Status::Unavailable(text);
    }
    return Status::FailedPrecondition(text);
  }

  void DropSubscription() {
    if (!sub_) return;
    // Destroy without Unsubscribe: the durable is kept for the next run.
    natsSubscription_Destroy(sub_);
    sub_ = nullptr;
  }

  // Keeps the held-back messages (nothing is running for them, so the
  // consumer's KeepAlive does not name them) from reaching their AckWait.
  void TouchHeld(Clock::time_point now) {
    auto old = now - ack_wait_ / 2;
    for (auto* list : {&held_, &returning_}) {
      for (auto& h : *list) {
        if (h.since < old) {
          (void)natsMsg_InProgress(h.msg, nullptr);
          h.since = now;
        }
      }
    }
  }

  static uint64_t Sequence(natsMsg* m) {
    uint64_t seq = 0;
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK && meta) {
      seq = meta->Sequence.Stream;
      jsMsgMetaData_Destroy(meta);
    }
    return seq;
  }

  void HandOut(natsMsg* m, Clock::time_point now,
               std::vector<SourceDelivery>* out) {
    out->push_back(Decode(m));
    uint64_t h = ++next_handle_;
    out->back().handle = h;
    in_hand_[h] = InHand{m, now};
  }

  SourceDelivery Decode(natsMsg* m) {
    MessageHeaders headers;
    std::string content_type, message_id;
    const char** keys = nullptr;
    int n = 0;
    if (natsMsgHeader_Keys(m, &keys, &n) == NATS_OK) {
      for (int k = 0; k < n; ++k) {
        const char* v = nullptr;
        if (natsMsgHeader_Get(m, keys[k], &v) != NATS_OK || !v) continue;
        std::string name = keys[k];
        if (StartsWithNoCase(name, "Content-Type") && name.size() == 12) {
          content_type = v;
        } else if (name == "Nats-Msg-Id") {
          message_id = v;
        }
        headers.emplace_back(std::move(name), v);
      }
      free(static_cast<void*>(keys));
    }
    uint64_t delivered = 1;
    uint64_t seq = 0;
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK && meta) {
      delivered = meta->NumDelivered;
      seq = meta->Sequence.Stream;
      jsMsgMetaData_Destroy(meta);
    }
    if (message_id.empty()) {
      message_id = "nats:" + c_.stream + ":" + std::to_string(seq);
    }
    SourceDelivery d;
    std::string_view body(natsMsg_GetData(m),
                          static_cast<size_t>(natsMsg_GetDataLength(m)));
    // Binary mode's content type is the ce-datacontenttype header; only a
    // structured message's Content-Type says how to read the body.
    DecodeBrokerMessage(headers, content_type, body, CloudEventBinding::kNats,
                        message_id, natsMsg_GetSubject(m), &d);
    d.key = d.event.stream.empty() ? std::string(natsMsg_GetSubject(m))
                                   : d.event.stream;
    d.redeliveries = delivered > 1 ? static_cast<int>(delivered - 1) : 0;
    return d;
  }

  const ConsumerSourceOptions options_;
  const NatsSourceConfig c_;
  natsOptions* opts_ = nullptr;
  natsConnection* conn_ = nullptr;
  jsCtx* js_ = nullptr;
  natsSubscription* sub_ = nullptr;
  std::atomic<bool> wake_{false};
  std::map<uint64_t, InHand> in_hand_;
  std::deque<InHand> held_;       // newer messages held behind the gate
  std::deque<InHand> returning_;  // the earlier run's, back (gate open)
  bool gated_ = false;
  uint64_t gate_seq_ = 0;        // the earlier run's last delivered sequence
  int64_t gate_left_ = 0;        // its messages not back yet
  std::set<uint64_t> returned_;  // their sequences seen back
  Clock::time_point gate_deadline_{};
  Clock::time_point next_gate_check_{};
  uint64_t next_handle_ = 0;
  Clock::duration ack_wait_ = kAckWait;
  Clock::time_point next_lag_{};
  std::optional<int64_t> lag_;
};

}  // namespace

SourceScheme NatsSourceScheme() {
  return BrokerSourceScheme<NatsSource>(ValidateNatsUrl, ParseNatsSource);
}

}  // namespace herald::detail
