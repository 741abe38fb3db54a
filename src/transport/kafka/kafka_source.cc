// The Kafka consumer source on librdkafka: a consumer group (or assigned
// partitions) with enable.auto.commit=false; offsets are committed only
// after handling.
//
//   Start        joins group `group` (default: the consumer's name) on
//                `topic` (subscribe), or assigns `partitions`, starting
//                from the group's committed offsets; where the group has
//                none, from `start`: "earliest" (default), "latest" or an
//                RFC 3339 time (offsetsForTimes: the first record at or
//                after it; with none, the end as it stood when Start or the
//                assignment looked, so a record produced after is read).
//   delivery     one record, decoded from the Kafka binding the sender
//                writes (ce_* headers, content-type) or structured
//                CloudEvents JSON.
//   key          the event's stream (rule 2). Records of different
//                streams of one partition finish out of order; the commit
//                is the contiguous acknowledged prefix of each partition:
//                the lowest offset still in hand (or the next one to read
//                when nothing is), so a restart repeats at most what
//                was in hand, which the inbox absorbs.
//   Ack          marks records done; commits (asynchronously, at most
//                every 200 ms, and synchronously at Close and when
//                partitions are revoked) each partition's new prefix.
//   Release      nothing to send: the record stays unacknowledged, so the
//                commit never passes it and the next run reads it again.
//   Lag          per assigned partition, the high watermark minus the
//                commit point (librdkafka's cached watermarks), summed.
//   rebalance    partitions revoked: their prefixes are committed and
//                their records in hand forgotten (acks of them are
//                dropped; the new owner reads them again from the
//                commit). Eager and cooperative protocols.
//
// Thread safety: one thread (the consumer's source thread; librdkafka runs
// the rebalance callback inside rd_kafka_consumer_poll on it); Wake from
// any (rd_kafka_queue_yield).
#include "transport/kafka/kafka_source.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "herald/cloudevents.h"
#include "herald/time.h"
#include "transport/kafka/kafka_scheme.h"
#include "transport/source_util.h"

namespace herald::detail {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct OffsetListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using OffsetList =
    std::unique_ptr<rd_kafka_topic_partition_list_t, OffsetListDeleter>;

struct KafkaSourceConfig {
  std::string brokers;
  std::string topic;
  std::string group;
  std::vector<int32_t> partitions;  // empty: subscribe as a group member
  enum class Start { kEarliest, kLatest, kTime } start = Start::kEarliest;
  int64_t start_us = 0;
  std::vector<std::pair<std::string, std::string>> properties;
};

Status ParseKafkaSource(const ConsumerSourceOptions& so,
                        KafkaSourceConfig* out) {
  HERALD_RETURN_IF_ERROR(ParseKafkaUrl(so.url, &out->brokers));
  const RouteOptions& o = so.options;
  bool have_topic = false;
  out->group = so.consumer;
  for (const auto& f : o.fields) {
    const std::string& k = f.key;
    const OptionValue& v = f.value;
    if (k == "topic") {
      HERALD_RETURN_IF_ERROR(o.GetString(k, v, &out->topic));
      if (out->topic.empty() || out->topic.size() > 249) {
        return o.Error(k, v.line, "must be a topic name of 1 to 249 bytes");
      }
      have_topic = true;
    } else if (k == "group") {
      HERALD_RETURN_IF_ERROR(o.GetString(k, v, &out->group));
      if (out->group.empty()) return o.Error(k, v.line, "must not be empty");
    } else if (k == "partitions") {
      if (v.kind != OptionValue::Kind::kArray || v.items.empty()) {
        return o.Error(k, v.line,
                       "must be a non-empty array of partition numbers");
      }
      std::set<int32_t> seen;
      for (const auto& item : v.items) {
        if (item.kind != OptionValue::Kind::kInteger || item.integer < 0 ||
            item.integer > INT32_MAX) {
          return o.Error(k, v.line,
                         "must hold partition numbers (integers >= 0)");
        }
        if (!seen.insert(static_cast<int32_t>(item.integer)).second) {
          return o.Error(
              k, v.line,
              "names partition " + std::to_string(item.integer) + " twice");
        }
        out->partitions.push_back(static_cast<int32_t>(item.integer));
      }
    } else if (k == "start") {
      std::string text;
      if (v.kind == OptionValue::Kind::kDateTime) {
        text = v.string;
      } else {
        HERALD_RETURN_IF_ERROR(o.GetString(k, v, &text));
      }
      if (text == "earliest") {
        out->start = KafkaSourceConfig::Start::kEarliest;
      } else if (text == "latest") {
        out->start = KafkaSourceConfig::Start::kLatest;
      } else {
        auto t = ParseRfc3339(text);
        if (!t.ok()) {
          return o.Error(k, v.line,
                         "must be \"earliest\", \"latest\" or an RFC 3339 "
                         "time (2026-01-31T12:00:00Z), not '" +
                             text + "'");
        }
        out->start = KafkaSourceConfig::Start::kTime;
        out->start_us = *t;
      }
    } else if (k == "kafka") {
      HERALD_RETURN_IF_ERROR(
          ParseKafkaConsumerProperties(o, v, &out->properties));
    } else {
      return o.UnknownKey(f, kKafkaSourceKeys);
    }
  }
  if (!have_topic) {
    return o.Error("topic", ConsumerTableLine(so),
                   "is required for a kafka:// source (the topic to "
                   "consume)");
  }
  return Status::OK();
}

// One partition's records in hand.
struct Partition {
  uint64_t generation = 0;  // of its current assignment
  bool assigned = false;
  std::map<int64_t, bool> in_hand;  // offset -> acknowledged
  int64_t next = -1;       // the offset after the last record delivered
  int64_t committed = -1;  // the last commit point sent
  // Where it starts: the group's commit or the offset a `start` time found
  // (or RD_KAFKA_OFFSET_INVALID: auto.offset.reset, from `start`, decides).
  int64_t base = RD_KAFKA_OFFSET_INVALID;
};

struct Handle {
  int32_t partition;
  int64_t offset;
  uint64_t generation;
};

class KafkaSource final : public ConsumerSource {
 public:
  KafkaSource(const ConsumerSourceOptions& so, KafkaSourceConfig c)
      : options_(so), c_(std::move(c)) {}
  ~KafkaSource() override { Close(); }

  Status Start() override {
    if (rk_) return Status::OK();
    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    auto set = [&](const std::string& k, const std::string& v) -> Status {
      if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr,
                            sizeof errstr) != RD_KAFKA_CONF_OK) {
        return Status::InvalidArgument("kafka." + k + ": " + errstr);
      }
      return Status::OK();
    };
    Status s;
    for (const auto& [k, v] : c_.properties) {
      if (s.ok()) s = set(k, v);
    }
    if (s.ok()) s = set("bootstrap.servers", c_.brokers);
    if (s.ok()) s = set("group.id", c_.group);
    if (s.ok()) s = set("enable.auto.commit", "false");
    if (s.ok()) s = set("enable.auto.offset.store", "false");
    if (s.ok()) s = set("enable.partition.eof", "false");
    if (s.ok()) {
      s = set("auto.offset.reset", c_.start == KafkaSourceConfig::Start::kLatest
                                       ? "latest"
                                       : "earliest");
    }
    if (!s.ok()) {
      rd_kafka_conf_destroy(conf);
      return s;
    }
    rd_kafka_conf_set_opaque(conf, this);
    if (c_.partitions.empty()) {
      rd_kafka_conf_set_rebalance_cb(conf, &KafkaSource::OnRebalance);
    }
    rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk_) {
      rd_kafka_conf_destroy(conf);
      return Status::InvalidArgument(std::string("kafka consumer: ") + errstr);
    }
    rd_kafka_poll_set_consumer(rk_);
    queue_ = rd_kafka_queue_get_consumer(rk_);
    if (c_.partitions.empty()) {
      rd_kafka_topic_partition_list_t* topics =
          rd_kafka_topic_partition_list_new(1);
      rd_kafka_topic_partition_list_add(topics, c_.topic.c_str(),
                                        RD_KAFKA_PARTITION_UA);
      rd_kafka_resp_err_t err = rd_kafka_subscribe(rk_, topics);
      rd_kafka_topic_partition_list_destroy(topics);
      if (err) {
        return Status::Unavailable("subscribing to topic '" + c_.topic +
                                   "': " + rd_kafka_err2str(err));
      }
      return Status::OK();
    }
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(
        static_cast<int>(c_.partitions.size()));
    for (int32_t p : c_.partitions) {
      rd_kafka_topic_partition_list_add(list, c_.topic.c_str(), p);
    }
    Status st = StartingOffsets(list);
    if (st.ok()) {
      rd_kafka_error_t* e = rd_kafka_incremental_assign(rk_, list);
      if (e) {
        st = Status::Unavailable(std::string("assigning partitions: ") +
                                 rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
      } else {
        Assigned(list);
      }
    }
    rd_kafka_topic_partition_list_destroy(list);
    if (!st.ok()) Destroy();
    return st;
  }

  Result<std::vector<SourceDelivery>> Poll(int max,
                                           milliseconds timeout) override {
    std::vector<SourceDelivery> out;
    if (!rk_) HERALD_RETURN_IF_ERROR(Start());
    auto wait = std::clamp(timeout, milliseconds(0), milliseconds(100));
    Status failure;
    while (static_cast<int>(out.size()) < max) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(
          rk_, out.empty() ? static_cast<int>(wait.count()) : 0);
      if (!m) break;
      if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          failure =
              Status::Unavailable(std::string("consuming topic '") + c_.topic +
                                  "': " + rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
        if (!failure.ok()) break;
        continue;
      }
      Take(m, &out);
      rd_kafka_message_destroy(m);
    }
    if (Status c = MaybeCommit(false); !c.ok()) Log(c.ToString());
    if (out.empty() && !failure.ok()) return failure;
    return out;
  }

  Status Ack(std::span<const uint64_t> handles) override {
    for (uint64_t h : handles) {
      auto it = handles_.find(h);
      if (it == handles_.end()) continue;
      Handle hd = it->second;
      handles_.erase(it);
      Partition& p = parts_[hd.partition];
      if (p.generation != hd.generation) continue;  // revoked meanwhile
      auto r = p.in_hand.find(hd.offset);
      if (r != p.in_hand.end()) r->second = true;
      while (!p.in_hand.empty() && p.in_hand.begin()->second) {
        p.in_hand.erase(p.in_hand.begin());
      }
    }
    return MaybeCommit(false);
  }

  Status Release(std::span<const uint64_t> handles) override {
    // Kept unacknowledged: the commit stays below them.
    for (uint64_t h : handles) handles_.erase(h);
    return Status::OK();
  }

  std::optional<int64_t> Lag() override {
    if (!rk_) return std::nullopt;
    int64_t lag = 0;
    bool any = false;
    for (auto& [partition, p] : parts_) {
      if (!p.assigned) continue;
      int64_t lo = -1, hi = -1;
      if (rd_kafka_get_watermark_offsets(rk_, c_.topic.c_str(), partition, &lo,
                                         &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
          hi < 0) {
        continue;
      }
      int64_t from = CommitPoint(p);
      if (from < 0) {
        // Nothing read here yet: from the group's commit, or where `start`
        // puts a group without one.
        if (p.base >= 0) {
          from = p.base;
        } else if (c_.start == KafkaSourceConfig::Start::kLatest) {
          from = hi;
        } else {
          from = std::max<int64_t>(lo, 0);
        }
      }
      lag += std::max<int64_t>(0, hi - from);
      any = true;
    }
    if (!any) return std::nullopt;
    return lag;
  }

  void Wake() override {
    if (queue_) rd_kafka_queue_yield(queue_);
  }

  void Close() override {
    if (!rk_) return;
    if (Status c = MaybeCommit(true); !c.ok()) Log(c.ToString());
    rd_kafka_consumer_close(rk_);
    Destroy();
  }

  std::string_view kind() const override { return "kafka"; }

 private:
  void Log(const std::string& line) {
    if (options_.on_log) options_.on_log(line);
  }

  void Destroy() {
    if (queue_) rd_kafka_queue_destroy(queue_);
    queue_ = nullptr;
    if (rk_) rd_kafka_destroy(rk_);
    rk_ = nullptr;
  }

  // The offset the group should resume from for `p`, or -1 when nothing
  // was delivered since it was assigned.
  static int64_t CommitPoint(const Partition& p) {
    if (!p.in_hand.empty()) return p.in_hand.begin()->first;
    return p.next;
  }

  // Commits every partition whose prefix moved: asynchronously at most
  // every 200 ms, or now and synchronously.
  Status MaybeCommit(bool sync) {
    if (!rk_) return Status::OK();
    auto now = Clock::now();
    if (!sync && now < next_commit_) return Status::OK();
    next_commit_ = now + milliseconds(200);
    rd_kafka_topic_partition_list_t* list =
        rd_kafka_topic_partition_list_new(4);
    std::vector<std::pair<Partition*, int64_t>> moved;
    for (auto& [partition, p] : parts_) {
      int64_t at = CommitPoint(p);
      if (!p.assigned || at < 0 || at <= p.committed) continue;
      rd_kafka_topic_partition_list_add(list, c_.topic.c_str(), partition)
          ->offset = at;
      moved.emplace_back(&p, at);
    }
    Status s;
    if (list->cnt > 0) {
      rd_kafka_resp_err_t err = rd_kafka_commit(rk_, list, sync ? 0 : 1);
      if (err) {
        s = Status::Unavailable(std::string("committing offsets: ") +
                                rd_kafka_err2str(err));
      } else {
        for (auto& [p, at] : moved) p->committed = at;
      }
    }
    rd_kafka_topic_partition_list_destroy(list);
    return s;
  }

  void Take(rd_kafka_message_t* m, std::vector<SourceDelivery>* out) {
    int32_t partition = m->partition;
    Partition& p = parts_[partition];
    if (!p.assigned) {
      // Assigned outside the rebalance callback (explicit partitions are
      // recorded in Start): treat it as assigned now.
      p.assigned = true;
      p.generation = ++generation_;
    }
    MessageHeaders headers;
    std::string content_type;
    rd_kafka_headers_t* hdrs = nullptr;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        hdrs) {
      const char* name;
      const void* value;
      size_t size;
      for (size_t i = 0;
           rd_kafka_header_get_all(hdrs, i, &name, &value, &size) ==
           RD_KAFKA_RESP_ERR_NO_ERROR;
           ++i) {
        std::string v = value
                            ? std::string(static_cast<const char*>(value), size)
                            : std::string();
        if (StartsWithNoCase(name, "content-type") && std::strlen(name) == 12) {
          content_type = v;
        }
        headers.emplace_back(name, std::move(v));
      }
    }
    std::string id = "kafka:" + c_.topic + ":" + std::to_string(partition) +
                     ":" + std::to_string(m->offset);
    SourceDelivery d;
    std::string_view body(static_cast<const char*>(m->payload), m->len);
    DecodeBrokerMessage(headers, content_type, body, CloudEventBinding::kKafka,
                        id, c_.topic + "/" + std::to_string(partition), &d);
    d.key = d.event.stream;
    uint64_t h = ++next_handle_;
    d.handle = h;
    handles_[h] = Handle{partition, m->offset, p.generation};
    p.in_hand[m->offset] = false;
    p.next = std::max(p.next, m->offset + 1);
    out->push_back(std::move(d));
  }

  void Assigned(const rd_kafka_topic_partition_list_t* list) {
    for (int i = 0; i < list->cnt; ++i) {
      Partition& p = parts_[list->elems[i].partition];
      p = Partition();
      p.assigned = true;
      p.generation = ++generation_;
      p.base = list->elems[i].offset;
    }
  }

  void Revoked(const rd_kafka_topic_partition_list_t* list) {
    if (Status c = MaybeCommit(true); !c.ok()) Log(c.ToString());
    for (int i = 0; i < list->cnt; ++i) {
      Partition& p = parts_[list->elems[i].partition];
      p = Partition();
      p.generation = ++generation_;  // acks of its records are dropped
    }
  }

  // Starting offsets for `list`: the group's committed ones; where it has
  // none and `start` is a time, the first record at or after it, or, with
  // none, the partition's end as it stood just before the lookup.
  //
  // The end is a concrete offset, asked for BEFORE the time lookup. A
  // logical RD_KAFKA_OFFSET_END would be resolved only when fetching
  // begins, so a record produced in between would be skipped. And the
  // order matters: when the lookup answers "none", no record before the
  // lookup is at or after the time, so the records between the end asked
  // first and the lookup are earlier ones (read although not asked for:
  // more, never less, and the inbox absorbs them), while every record
  // produced after the lookup is at or past that end and is read. An end
  // asked after the lookup would skip a record produced between the two,
  // although it may be at or after the time.
  Status StartingOffsets(rd_kafka_topic_partition_list_t* list) {
    rd_kafka_resp_err_t err = rd_kafka_committed(rk_, list, 10000);
    if (err) {
      return Status::Unavailable(std::string("reading committed offsets: ") +
                                 rd_kafka_err2str(err));
    }
    if (c_.start != KafkaSourceConfig::Start::kTime) return Status::OK();
    // ListOffsets by timestamp for the partitions without a commit: `ends`
    // with timestamp RD_KAFKA_OFFSET_END (-1: the offset the next record
    // gets, the last stable one under read_committed, as the fetcher would
    // resolve RD_KAFKA_OFFSET_END), then `times` with the start time.
    OffsetList ends(rd_kafka_topic_partition_list_new(list->cnt));
    OffsetList times(rd_kafka_topic_partition_list_new(list->cnt));
    for (int i = 0; i < list->cnt; ++i) {
      if (list->elems[i].offset >= 0) continue;
      int32_t partition = list->elems[i].partition;
      rd_kafka_topic_partition_list_add(ends.get(), c_.topic.c_str(), partition)
          ->offset = RD_KAFKA_OFFSET_END;
      rd_kafka_topic_partition_list_add(times.get(), c_.topic.c_str(),
                                        partition)
          ->offset = c_.start_us / 1000;
    }
    if (times->cnt == 0) return Status::OK();
    err = rd_kafka_offsets_for_times(rk_, ends.get(), 10000);
    if (err) {
      return Status::Unavailable(
          std::string("finding the end offsets for a start time: ") +
          rd_kafka_err2str(err));
    }
    err = rd_kafka_offsets_for_times(rk_, times.get(), 10000);
    if (err) {
      return Status::Unavailable(std::string("finding offsets by time: ") +
                                 rd_kafka_err2str(err));
    }
    for (int i = 0; i < times->cnt; ++i) {
      const rd_kafka_topic_partition_t* t = &times->elems[i];
      const rd_kafka_topic_partition_t* end =
          rd_kafka_topic_partition_list_find(ends.get(), t->topic,
                                             t->partition);
      rd_kafka_topic_partition_t* to =
          rd_kafka_topic_partition_list_find(list, t->topic, t->partition);
      if (!to) continue;
      if (t->offset >= 0) {
        to->offset = t->offset;
      } else if (end && end->offset >= 0) {
        to->offset = end->offset;  // no record at or after the time
      } else {
        return Status::Unavailable("finding the end offset of partition " +
                                   std::to_string(t->partition) +
                                   ": the broker answered none");
      }
    }
    return Status::OK();
  }

  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t* partitions,
                          void* opaque) {
    auto* self = static_cast<KafkaSource*>(opaque);
    bool cooperative =
        std::strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      Status s = self->StartingOffsets(partitions);
      if (!s.ok()) self->Log("assigned partitions: " + s.ToString());
      self->Assigned(partitions);
      if (cooperative) {
        rd_kafka_error_t* e = rd_kafka_incremental_assign(rk, partitions);
        if (e) rd_kafka_error_destroy(e);
      } else {
        rd_kafka_assign(rk, partitions);
      }
      return;
    }
    self->Revoked(partitions);
    if (cooperative) {
      rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk, partitions);
      if (e) rd_kafka_error_destroy(e);
    } else {
      rd_kafka_assign(rk, nullptr);
    }
  }

  const ConsumerSourceOptions options_;
  const KafkaSourceConfig c_;
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_queue_t* queue_ = nullptr;
  std::map<int32_t, Partition> parts_;
  std::unordered_map<uint64_t, Handle> handles_;
  uint64_t next_handle_ = 0;
  uint64_t generation_ = 0;
  Clock::time_point next_commit_{};
};

}  // namespace

SourceScheme KafkaSourceScheme() {
  return BrokerSourceScheme<KafkaSource>(ValidateKafkaUrl, ParseKafkaSource);
}

}  // namespace herald::detail
