// The Kafka sender: one idempotent librdkafka producer per route (acks=all,
// partitioner murmur2_random), a delivery report as the acknowledgement.
//
// Order: at most one event of a stream is in flight at a time; a stream's
// next event is produced only after the previous one's delivery report said
// delivered. librdkafka keeps a partition's order across its own retries,
// but a permanent error on one batch lets later batches of the partition
// through (a gap, INTRODUCTION.md "Standard errors"), so pipelining a
// stream would let its later events overtake a failed one. Streams share
// partitions freely: a failure of one stream never stops another. At most
// max_in_flight events are in flight in all.
//
// Results, from the delivery report (dr_msg_cb):
//   err == 0                                      OK (delivered)
//   message too large, record list too large,     Permanent
//   invalid or corrupt record, unknown topic or
//   partition, authorization, invalid timestamp,
//   policy violation, unsupported message format
//   anything else (timeouts, transport, no        Unavailable
//   leader, purged at the deadline, a fatal
//   producer error)
// librdkafka retries retriable errors itself until `timeout`
// (message.timeout.ms), so a report of one means that time is spent.
//
// Deadline: what is still in flight when it passes is purged (queued and
// in flight, RD_KAFKA_PURGE_F_QUEUE | _INFLIGHT) and reported Unavailable;
// a purged in-flight message may still have been written (a duplicate when
// it is sent again, never a loss). A fatal producer error (idempotence
// desynchronised) fails what is in flight as Unavailable; the producer is
// made anew at the next Send.
//
// Threads: librdkafka runs its own threads, but every callback herald sets
// (delivery reports, errors) is served by rd_kafka_poll / rd_kafka_flush,
// which only Send and the destructor call: no state is shared across
// threads. Logs go to stderr from librdkafka's threads, redacted.
#include "transport/kafka/kafka_sender.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

#include "herald/cloudevents.h"
#include "herald/redact.h"
#include "transport/kafka/kafka_scheme.h"

namespace herald::detail {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
struct HeadersDeleter {
  void operator()(rd_kafka_headers_t* h) const { rd_kafka_headers_destroy(h); }
};
struct TopicDeleter {
  void operator()(rd_kafka_topic_t* t) const { rd_kafka_topic_destroy(t); }
};
struct ProducerDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};

// Broker errors that no retry heals: the event is parked or blocks.
bool IsPermanent(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_INVALID_MSG:  // CORRUPT_MESSAGE
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__BAD_MSG:
      return true;
    default:
      return false;
  }
}

std::string ErrText(rd_kafka_resp_err_t err) {
  return std::string(rd_kafka_err2name(err)) + ": " + rd_kafka_err2str(err);
}

// One delivery report, as rd_kafka_poll handed it over.
struct Delivery {
  uint64_t tag;  // call << 32 | event index
  rd_kafka_resp_err_t err;
  rd_kafka_msg_status_t persisted;
};

class KafkaSender final : public Sender {
 public:
  KafkaSender(std::string route, KafkaOptions o, int max_in_flight)
      : route_(std::move(route)),
        o_(std::move(o)),
        max_in_flight_(max_in_flight < 1 ? 1 : max_in_flight) {}

  ~KafkaSender() override { Close(); }

  std::string_view kind() const override { return "kafka"; }

  // Makes the producer (no connection yet: librdkafka connects in the
  // background).
  Status Open() {
    std::unique_ptr<rd_kafka_conf_t, ConfDeleter> conf(rd_kafka_conf_new());
    char errstr[512];
    auto set = [&](const std::string& name,
                   const std::string& value) -> Status {
      if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), errstr,
                            sizeof errstr) != RD_KAFKA_CONF_OK) {
        std::string shown = IsSecretKafkaProperty(name) ? "***" : value;
        return Status::InvalidArgument("kafka property " + name + "=" + shown +
                                       ": " + RedactSecrets(errstr));
      }
      return Status::OK();
    };
    // herald's defaults, which the kafka table may change.
    HERALD_RETURN_IF_ERROR(set("client.id", "herald-" + route_));
    HERALD_RETURN_IF_ERROR(set("allow.auto.create.topics", "false"));
    // A relay sends what it read at once and waits for the reports; a
    // linger only adds to the commit-to-acknowledgement time.
    HERALD_RETURN_IF_ERROR(set("linger.ms", "0"));
    // As Java clients do: a small request is written at once, not held
    // back (Nagle) until the broker acknowledges the one before it.
    HERALD_RETURN_IF_ERROR(set("socket.nagle.disable", "true"));
    // A topic the cluster says does not exist fails its records with
    // _UNKNOWN_TOPIC (permanent) after this long: within `timeout`, or
    // they would time out first (retryable) and a missing topic would
    // never be told as such. librdkafka's default is 30 s.
    HERALD_RETURN_IF_ERROR(
        set("topic.metadata.propagation.max.ms",
            std::to_string(std::min<int64_t>(30000, o_.timeout.count() / 2))));
    for (const auto& [name, value] : o_.properties) {
      HERALD_RETURN_IF_ERROR(set(name, value));
    }
    // What the acknowledgement rests on, last: never overridden.
    HERALD_RETURN_IF_ERROR(set("bootstrap.servers", o_.brokers));
    HERALD_RETURN_IF_ERROR(
        set("message.timeout.ms", std::to_string(o_.timeout.count())));
    for (const auto& [name, value] : kKafkaFixedProperties) {
      HERALD_RETURN_IF_ERROR(set(std::string(name), std::string(value)));
    }
    HERALD_RETURN_IF_ERROR(set("delivery.report.only.error", "false"));
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_dr_msg_cb(conf.get(), &KafkaSender::OnDelivery);
    rd_kafka_conf_set_error_cb(conf.get(), &KafkaSender::OnError);
    rd_kafka_conf_set_log_cb(conf.get(), &KafkaSender::OnLog);
    rd_kafka_t* rk =
        rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof errstr);
    if (rk == nullptr) {
      return Status::InvalidArgument("kafka producer: " +
                                     RedactSecrets(errstr));
    }
    (void)conf.release();  // rd_kafka_new took it
    rk_.reset(rk);
    fatal_ = false;
    return Status::OK();
  }

  void Send(std::span<const Event> events, std::span<SendResult> results,
            steady_clock::time_point deadline) override {
    if (events.empty() || steady_clock::now() >= deadline) return;
    const size_t n = events.size();
    ++call_;

    // Streams, each a queue of its events in the order given; the heads of
    // streams with nothing in flight are ready, in order of first
    // appearance.
    struct StreamQueue {
      std::vector<size_t> events;
      size_t next = 0;
    };
    std::vector<StreamQueue> queues;
    std::vector<uint32_t> queue_of(n);
    {
      std::unordered_map<std::string_view, uint32_t> index;
      for (size_t i = 0; i < n; ++i) {
        auto [it, added] = index.emplace(events[i].stream,
                                         static_cast<uint32_t>(queues.size()));
        if (added) queues.emplace_back();
        queues[it->second].events.push_back(i);
        queue_of[i] = it->second;
      }
    }
    std::deque<uint32_t> ready;
    for (uint32_t q = 0; q < queues.size(); ++q) ready.push_back(q);

    if (!rk_ || fatal_) {
      Close();
      Status s = Open();
      if (!s.ok()) {
        // One attempt per stream: its head failed, the rest waits.
        for (const auto& q : queues) {
          results[q.events.front()].status = Status::Unavailable(s.message());
          results[q.events.front()].attempted = true;
        }
        return;
      }
    }

    size_t in_flight = 0;
    std::vector<char> flying(n, 0);  // produced, no report yet
    std::string body, topic, key;
    std::vector<Delivery> got;
    for (;;) {
      while (static_cast<int>(in_flight) < max_in_flight_ && !ready.empty() &&
             !fatal_ && steady_clock::now() < deadline) {
        uint32_t q = ready.front();
        ready.pop_front();
        size_t i = queues[q].events[queues[q].next];
        results[i].attempted = true;
        Status s = Produce(events[i], i, &body, &topic, &key);
        if (!s.ok()) {
          results[i].status = std::move(s);  // the stream stops here
          continue;
        }
        ++in_flight;
        flying[i] = 1;
      }
      if (in_flight == 0) break;

      auto now = steady_clock::now();
      if (now >= deadline || fatal_) {
        Abandon(&flying, results,
                fatal_
                    ? "the producer failed: " + fatal_text_
                    : "no delivery report before the deadline" + LastError());
        break;
      }
      auto wait = std::chrono::duration_cast<milliseconds>(deadline - now);
      rd_kafka_poll(rk_.get(), static_cast<int>(
                                   std::clamp<int64_t>(wait.count(), 1, 100)));
      got.swap(done_);
      done_.clear();
      for (const Delivery& d : got) {
        if ((d.tag >> 32) != (call_ & 0xffffffffu)) continue;  // old call
        size_t i = d.tag & 0xffffffffu;
        if (i >= n || !flying[i]) continue;
        flying[i] = 0;
        --in_flight;
        if (d.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          results[i].status = Status::OK();
          StreamQueue& sq = queues[queue_of[i]];
          if (++sq.next < sq.events.size()) ready.push_back(queue_of[i]);
        } else {
          results[i].status = Classify(d, events[i]);
        }
      }
      got.clear();
    }
  }

 private:
  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m,
                         void* opaque) {
    auto* self = static_cast<KafkaSender*>(opaque);
    self->done_.push_back({reinterpret_cast<uintptr_t>(m->_private), m->err,
                           rd_kafka_message_status(m)});
  }
  static void OnError(rd_kafka_t* rk, int err, const char* reason,
                      void* opaque) {
    auto* self = static_cast<KafkaSender*>(opaque);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      char text[512] = "";
      rd_kafka_resp_err_t code = rd_kafka_fatal_error(rk, text, sizeof text);
      self->fatal_ = true;
      self->fatal_text_ =
          std::string(rd_kafka_err2name(code)) + ": " + RedactSecrets(text);
      return;
    }
    self->last_error_ = RedactSecrets(reason ? reason : "");
  }
  static void OnLog(const rd_kafka_t*, int level, const char* facility,
                    const char* text) {
    std::fprintf(stderr, "herald: kafka %d %s: %s\n", level,
                 facility ? facility : "",
                 RedactSecrets(text ? text : "").c_str());
  }

  std::string LastError() const {
    return last_error_.empty() ? ""
                               : " (last client error: " + last_error_ + ")";
  }

  rd_kafka_topic_t* Topic(const std::string& name) {
    auto it = topics_.find(name);
    if (it != topics_.end()) return it->second.get();
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk_.get(), name.c_str(), nullptr);
    if (t != nullptr) topics_[name].reset(t);
    return t;
  }

  // Hands one event to librdkafka. A local refusal is its result (the
  // stream stops); OK means a delivery report will come.
  Status Produce(const Event& e, size_t index, std::string* body,
                 std::string* topic, std::string* key) {
    topic->clear();
    o_.topic.ExpandTo(e, topic);
    key->clear();
    o_.key.ExpandTo(e, key);
    rd_kafka_topic_t* rkt = Topic(*topic);
    if (rkt == nullptr) {
      return Status::Permanent("topic '" + *topic +
                               "': " + ErrText(rd_kafka_last_error()));
    }
    std::unique_ptr<rd_kafka_headers_t, HeadersDeleter> headers;
    const char* value = e.payload.data();
    size_t value_len = e.payload.size();
    if (o_.mode == CloudEventsMode::kStructured) {
      body->clear();
      AppendCloudEventJson(e, o_.source, body);
      value = body->data();
      value_len = body->size();
      headers.reset(rd_kafka_headers_new(1));
      rd_kafka_header_add(headers.get(), "content-type", -1,
                          "application/cloudevents+json", -1);
    } else {
      EncodeCloudEventHeadersInto(e, o_.source, CloudEventBinding::kKafka,
                                  &headers_);
      headers.reset(rd_kafka_headers_new(headers_.size()));
      for (const auto& [name, v] : headers_) {
        rd_kafka_header_add(headers.get(), name.data(),
                            static_cast<ssize_t>(name.size()), v.data(),
                            static_cast<ssize_t>(v.size()));
      }
    }
    uint64_t tag = ((call_ & 0xffffffffu) << 32) | index;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk_.get(), RD_KAFKA_V_RKT(rkt),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_VALUE(const_cast<char*>(value), value_len),
        RD_KAFKA_V_KEY(key->data(), key->size()),
        RD_KAFKA_V_TIMESTAMP(e.occurred_at_us / 1000),
        RD_KAFKA_V_HEADERS(headers.get()),
        RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<uintptr_t>(tag))),
        RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::string why = "producing event " + e.id + " to topic '" + *topic +
                        "': " + ErrText(err);
      if (IsPermanent(err)) return Status::Permanent(std::move(why));
      return Status::Unavailable(std::move(why));
    }
    (void)headers.release();  // the message owns them now
    return Status::OK();
  }

  Status Classify(const Delivery& d, const Event& e) const {
    std::string where = "event " + e.id + " to topic '" + o_.topic.Expand(e) +
                        "': " + ErrText(d.err);
    if (IsPermanent(d.err)) {
      return Status::Permanent("the broker refused " + where);
    }
    if (d.err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT) {
      return Status::Unavailable(
          "no delivery report for " + where + " within " +
          std::to_string(o_.timeout.count()) + "ms" + LastError());
    }
    if (d.err == RD_KAFKA_RESP_ERR__FATAL) {
      return Status::Unavailable("the producer failed: " + fatal_text_ +
                                 " (sending " + where + ")");
    }
    return Status::Unavailable("not delivered: " + where + LastError());
  }

  // Purges what is in flight (queued or sent), collects its reports and
  // reports every event still without one as Unavailable(`why`).
  void Abandon(std::vector<char>* flying, std::span<SendResult> results,
               const std::string& why) {
    rd_kafka_purge(rk_.get(),
                   RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    size_t left = 0;
    for (char f : *flying) left += f;
    // Purged messages are reported at the next poll; a moment at most.
    auto until = steady_clock::now() + milliseconds(500);
    std::vector<Delivery> got;
    while (left > 0 && steady_clock::now() < until) {
      rd_kafka_poll(rk_.get(), 10);
      got.swap(done_);
      done_.clear();
      for (const Delivery& d : got) {
        if ((d.tag >> 32) != (call_ & 0xffffffffu)) continue;
        size_t i = d.tag & 0xffffffffu;
        if (i >= results.size() || !(*flying)[i]) continue;
        (*flying)[i] = 0;
        --left;
        // A report that beat the purge counts as it says.
        results[i].status = d.err == RD_KAFKA_RESP_ERR_NO_ERROR
                                ? Status::OK()
                                : Status::Unavailable(why);
      }
      got.clear();
    }
    for (size_t i = 0; i < flying->size(); ++i) {
      if ((*flying)[i]) results[i].status = Status::Unavailable(why);
      (*flying)[i] = 0;
    }
  }

  void Close() {
    if (!rk_) return;
    rd_kafka_purge(rk_.get(),
                   RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(rk_.get(), 1000);  // serves the purged messages' reports
    done_.clear();
    topics_.clear();
    rk_.reset();
  }

  const std::string route_;
  const KafkaOptions o_;
  const int max_in_flight_;

  // Touched only by the thread in Send / the destructor (callbacks are
  // served by rd_kafka_poll there).
  // Topics before the producer: destroyed first.
  std::unique_ptr<rd_kafka_t, ProducerDeleter> rk_;
  std::unordered_map<std::string,
                     std::unique_ptr<rd_kafka_topic_t, TopicDeleter>>
      topics_;
  uint64_t call_ = 0;
  MessageHeaders headers_;  // Produce's, reused
  std::vector<Delivery> done_;
  bool fatal_ = false;
  std::string fatal_text_;
  std::string last_error_;
};

}  // namespace

Result<std::unique_ptr<Sender>> MakeKafkaSender(const RouteConfig& route) {
  KafkaOptions o;
  HERALD_RETURN_IF_ERROR(ParseKafkaOptions(route, &o));
  auto sender = std::make_unique<KafkaSender>(route.name, std::move(o),
                                              route.max_in_flight);
  HERALD_RETURN_IF_ERROR(sender->Open());
  return std::unique_ptr<Sender>(std::move(sender));
}

}  // namespace herald::detail
