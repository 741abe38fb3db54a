// The RabbitMQ consumer source on rabbitmq-c: basic.consume with manual
// acknowledgements on one channel, basic.qos prefetch = max_in_hand.
//
//   delivery     one basic.deliver, decoded from the AMQP binding the
//                RabbitMQ sender writes (cloudEvents:* application
//                properties, or cloudEvents_*, plus the content-type
//                property) or structured CloudEvents JSON; `redelivered`
//                -> redeliveries 1.
//   key          the event's stream (rule 2). RabbitMQ acknowledges each
//                delivery tag on its own, in any order, so handling the
//                streams of one queue in parallel loses nothing; a
//                stream's deliveries come in queue order and are handled
//                one at a time. Keying by the queue would handle one
//                event at a time.
//   Ack          basic.ack: one with multiple=true for the longest run of
//                acknowledged tags at the low end of the unacknowledged
//                ones (in hand or buffered), single acks for the rest.
//   Release      basic.nack requeue=true, tag by tag.
//   Lag          the queue's ready-message count from a passive
//                queue.declare on a second channel, at most once a second.
//   connection   heartbeat 30 s. A lost connection (a broker restart, an
//                operator's close) makes Poll return Unavailable; the next
//                Poll connects again. Deliveries in hand from the old
//                connection are forgotten: their acks are dropped (the
//                broker redelivers them, the inbox absorbs the repeat).
//                A queue that does not exist, refused credentials or a
//                vhost that does not exist are not outages: Start (or the
//                Poll that reconnects) returns FailedPrecondition.
//
// Poll waits in poll(2) on the socket and an eventfd that Wake writes, so
// a worker that finished wakes the source thread at once.
//
// Thread safety: one thread (the consumer's source thread); Wake from any.
#include "transport/rabbitmq/rabbitmq_source.h"

#include <amqp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "herald/cloudevents.h"
#include "transport/rabbitmq/amqp_connection.h"
#include "transport/rabbitmq/rabbitmq_scheme.h"
#include "transport/source_util.h"

namespace herald::detail {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr amqp_channel_t kConsumeChannel = 1;
constexpr amqp_channel_t kLagChannel = 2;
constexpr int kHeartbeatSeconds = 30;

// A header value as text: strings as they are, numbers and booleans in
// their usual form; other kinds (tables, arrays) are skipped.
bool FieldText(const amqp_field_value_t& v, std::string* out) {
  switch (v.kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
      *out = AmqpText(v.value.bytes);
      return true;
    case AMQP_FIELD_KIND_BOOLEAN:
      *out = v.value.boolean ? "true" : "false";
      return true;
    case AMQP_FIELD_KIND_I8:
      *out = std::to_string(v.value.i8);
      return true;
    case AMQP_FIELD_KIND_U8:
      *out = std::to_string(v.value.u8);
      return true;
    case AMQP_FIELD_KIND_I16:
      *out = std::to_string(v.value.i16);
      return true;
    case AMQP_FIELD_KIND_U16:
      *out = std::to_string(v.value.u16);
      return true;
    case AMQP_FIELD_KIND_I32:
      *out = std::to_string(v.value.i32);
      return true;
    case AMQP_FIELD_KIND_U32:
      *out = std::to_string(v.value.u32);
      return true;
    case AMQP_FIELD_KIND_I64:
      *out = std::to_string(v.value.i64);
      return true;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
      *out = std::to_string(v.value.u64);
      return true;
    default:
      return false;
  }
}

class RabbitSource final : public ConsumerSource {
 public:
  RabbitSource(const ConsumerSourceOptions& options, RabbitOptions o)
      : options_(options), o_(std::move(o)) {
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  }
  ~RabbitSource() override {
    Close();
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  Status Start() override { return Connect(); }

  Result<std::vector<SourceDelivery>> Poll(int max,
                                           milliseconds timeout) override {
    std::vector<SourceDelivery> out;
    if (!conn_) {
      Status s = Connect();
      if (!s.ok()) return s;
    }
    auto deadline = Clock::now() + timeout;
    while (static_cast<int>(out.size()) < max) {
      if (!buffer_.empty()) {
        out.push_back(std::move(buffer_.front()));
        buffer_.pop_front();
        continue;
      }
      // Having some, take only what is there already.
      bool woken = DrainWake();
      auto left = out.empty() && !woken ? deadline - Clock::now()
                                        : Clock::duration::zero();
      if (left < Clock::duration::zero()) left = Clock::duration::zero();
      Result<bool> got = ReadOne(left);
      if (!got.ok()) {
        if (!out.empty()) {
          // Hand out what came before the failure; the next Poll reports
          // it (the connection is gone by then, or will fail again).
          break;
        }
        return got.status();
      }
      if (!*got) break;  // nothing more by the deadline
    }
    // Deliveries of a connection lost meanwhile get handles with no tag:
    // their acks are dropped (the broker redelivers them).
    for (auto& d : out) d.handle = conn_ ? Hand(d.handle) : ++next_handle_;
    return out;
  }

  Status Ack(std::span<const uint64_t> handles) override {
    if (!conn_) return Status::OK();
    for (uint64_t h : handles) {
      auto it = in_hand_.find(h);
      if (it == in_hand_.end()) continue;  // of a lost connection
      unacked_[it->second] = true;
      in_hand_.erase(it);
    }
    // The run of acknowledged tags at the low end: one multiple ack.
    uint64_t run_end = 0;
    int run = 0;
    for (auto it = unacked_.begin(); it != unacked_.end() && it->second; ++it) {
      run_end = it->first;
      ++run;
    }
    if (run > 1) {
      if (amqp_basic_ack(conn_.get(), kConsumeChannel, run_end, 1) !=
          AMQP_STATUS_OK) {
        return Lost("acknowledging");
      }
      unacked_.erase(unacked_.begin(), unacked_.upper_bound(run_end));
    }
    for (auto it = unacked_.begin(); it != unacked_.end();) {
      if (!it->second) {
        ++it;
        continue;
      }
      if (amqp_basic_ack(conn_.get(), kConsumeChannel, it->first, 0) !=
          AMQP_STATUS_OK) {
        return Lost("acknowledging");
      }
      it = unacked_.erase(it);
    }
    return Status::OK();
  }

  Status Release(std::span<const uint64_t> handles) override {
    if (!conn_) return Status::OK();
    for (uint64_t h : handles) {
      auto it = in_hand_.find(h);
      if (it == in_hand_.end()) continue;
      uint64_t tag = it->second;
      in_hand_.erase(it);
      unacked_.erase(tag);
      if (amqp_basic_nack(conn_.get(), kConsumeChannel, tag, 0, 1) !=
          AMQP_STATUS_OK) {
        return Lost("releasing");
      }
    }
    return Status::OK();
  }

  std::optional<int64_t> Lag() override {
    if (!conn_) return lag_;
    auto now = Clock::now();
    if (now < next_lag_) return lag_;
    next_lag_ = now + std::chrono::seconds(1);
    if (!lag_channel_open_) {
      amqp_channel_open(conn_.get(), kLagChannel);
      if (!AmqpReplyStatus(amqp_get_rpc_reply(conn_.get()), "").ok()) {
        (void)Lost("opening a channel");
        return lag_;
      }
      lag_channel_open_ = true;
    }
    amqp_queue_declare_ok_t* ok = amqp_queue_declare(
        conn_.get(), kLagChannel, AmqpBytes(o_.queue), /*passive=*/1,
        /*durable=*/0, /*exclusive=*/0, /*auto_delete=*/0, amqp_empty_table);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_.get());
    if (ok && r.reply_type == AMQP_RESPONSE_NORMAL) {
      lag_ = static_cast<int64_t>(ok->message_count);
    } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
               r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      amqp_channel_close_ok_t close_ok{};
      amqp_send_method(conn_.get(), kLagChannel, AMQP_CHANNEL_CLOSE_OK_METHOD,
                       &close_ok);
      lag_channel_open_ = false;
      lag_.reset();
    } else {
      (void)Lost("asking for the queue's length");
    }
    return lag_;
  }

  void Wake() override {
    uint64_t one = 1;
    if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof one);
  }

  void Close() override {
    if (!conn_) return;
    // Unacknowledged deliveries go back to the queue when the channel
    // closes.
    timeval tv{1, 0};
    amqp_set_rpc_timeout(conn_.get(), &tv);
    amqp_channel_close(conn_.get(), kConsumeChannel, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn_.get(), AMQP_REPLY_SUCCESS);
    Reset();
  }

  std::string_view kind() const override { return "rabbitmq"; }

 private:
  void Log(const std::string& line) {
    if (options_.on_log) options_.on_log(line);
  }

  // Records a buffered delivery's tag (kept in d.handle until handed out)
  // under a new handle.
  uint64_t Hand(uint64_t tag) {
    uint64_t h = ++next_handle_;
    in_hand_[h] = tag;
    return h;
  }

  bool DrainWake() const {
    uint64_t n;
    return wake_fd_ >= 0 && ::read(wake_fd_, &n, sizeof n) == sizeof n;
  }

  Status Connect() {
    Reset();
    AmqpConnection conn;
    int code = 0;
    Status s = OpenAmqpConnection(
        o_,
        std::chrono::duration_cast<std::chrono::microseconds>(
            o_.connect_timeout),
        kHeartbeatSeconds, &conn, &code);
    if (!s.ok()) {
      if (code == 403 || code == 530) {
        return Status::FailedPrecondition(s.message());
      }
      return s;
    }
    conn_ = std::move(conn);
    amqp_channel_open(conn_.get(), kConsumeChannel);
    s = AmqpReplyStatus(amqp_get_rpc_reply(conn_.get()), "opening a channel");
    if (!s.ok()) return Fail(s);
    uint16_t prefetch =
        static_cast<uint16_t>(std::clamp(options_.max_in_hand, 1, 65535));
    amqp_basic_qos(conn_.get(), kConsumeChannel, 0, prefetch, 0);
    s = AmqpReplyStatus(amqp_get_rpc_reply(conn_.get()), "setting prefetch");
    if (!s.ok()) return Fail(s);
    amqp_basic_consume(conn_.get(), kConsumeChannel, AmqpBytes(o_.queue),
                       amqp_empty_bytes, /*no_local=*/0, /*no_ack=*/0,
                       /*exclusive=*/0, amqp_empty_table);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_.get());
    s = AmqpReplyStatus(r, "consuming queue '" + o_.queue + "'");
    if (!s.ok()) {
      int why = AmqpReplyCode(r);
      Reset();
      if (why == 404) {
        return Status::FailedPrecondition(
            "queue '" + o_.queue + "' does not exist in vhost '" + o_.vhost +
            "' (herald declares no queues): " + s.message());
      }
      if (why == 403) return Status::FailedPrecondition(s.message());
      return s;
    }
    if (connected_before_) {
      Log("reconnected to " + o_.host + ":" + std::to_string(o_.port) +
          ", consuming queue '" + o_.queue + "'");
    }
    connected_before_ = true;
    return Status::OK();
  }

  Status Fail(Status s) {
    Reset();
    return s;
  }

  Status Lost(const std::string& what) {
    Reset();
    return Status::Unavailable(what + ": the connection to the broker is lost");
  }

  // Forgets the connection and everything delivered on it.
  void Reset() {
    conn_.reset();
    buffer_.clear();
    in_hand_.clear();
    unacked_.clear();
    lag_channel_open_ = false;
  }

  // Reads one message into buffer_ within `wait`. true: one came; false:
  // none by then (or only other frames). Unavailable when the connection
  // is gone (and dropped), FailedPrecondition when the queue went away.
  Result<bool> ReadOne(Clock::duration wait) {
    amqp_connection_state_t c = conn_.get();
    if (!amqp_frames_enqueued(c) && !amqp_data_in_buffer(c) &&
        wait > Clock::duration::zero()) {
      // Wait for the socket or a Wake. TLS may hold decrypted bytes the
      // socket does not show: wait in short slices there.
      auto w = std::chrono::duration_cast<milliseconds>(wait);
      if (o_.tls) w = std::min(w, milliseconds(10));
      pollfd fds[2] = {{amqp_get_sockfd(c), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      (void)::poll(fds, wake_fd_ >= 0 ? 2 : 1,
                   static_cast<int>(std::max<int64_t>(w.count(), 1)));
      // Read (or time out at once) either way: the library sends its
      // heartbeats, and notices missing ones, only when called.
    }
    amqp_maybe_release_buffers(c);
    timeval zero{0, 0};
    amqp_envelope_t env;
    amqp_rpc_reply_t r = amqp_consume_message(c, &env, &zero, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      Take(env);
      amqp_destroy_envelope(&env);
      return true;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_TIMEOUT) {
      return false;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      amqp_frame_t frame;
      if (amqp_simple_wait_frame_noblock(c, &frame, &zero) != AMQP_STATUS_OK) {
        return Lost("reading from the broker");
      }
      if (frame.frame_type != AMQP_FRAME_METHOD) return false;
      switch (frame.payload.method.id) {
        case AMQP_CHANNEL_CLOSE_METHOD: {
          auto* m =
              static_cast<amqp_channel_close_t*>(frame.payload.method.decoded);
          std::string text =
              std::to_string(m->reply_code) + " " + AmqpText(m->reply_text);
          bool gone = m->reply_code == 404;
          if (frame.channel == kLagChannel && !gone) {
            amqp_channel_close_ok_t close_ok{};
            amqp_send_method(c, kLagChannel, AMQP_CHANNEL_CLOSE_OK_METHOD,
                             &close_ok);
            lag_channel_open_ = false;
            return false;
          }
          Reset();
          if (gone && frame.channel == kConsumeChannel) {
            return Status::FailedPrecondition("queue '" + o_.queue +
                                              "' is gone: " + text);
          }
          return Status::Unavailable("the broker closed the channel: " + text);
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
          auto* m = static_cast<amqp_connection_close_t*>(
              frame.payload.method.decoded);
          std::string text =
              std::to_string(m->reply_code) + " " + AmqpText(m->reply_text);
          amqp_connection_close_ok_t close_ok{};
          amqp_send_method(c, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok);
          Reset();
          return Status::Unavailable("the broker closed the connection: " +
                                     text);
        }
        case AMQP_BASIC_CANCEL_METHOD:
          // The queue was deleted under the consumer.
          Reset();
          return Status::FailedPrecondition(
              "the broker cancelled the consumer of queue '" + o_.queue +
              "' (the queue was deleted?)");
        default:
          return false;  // connection.blocked and the like
      }
    }
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
      Status s = AmqpReplyStatus(r, "reading a message");
      Reset();
      return s;
    }
    Status s = AmqpReplyStatus(r, "reading from the broker");
    Reset();
    return s;
  }

  // Decodes a delivered message into buffer_ (its tag in .handle for now).
  void Take(const amqp_envelope_t& env) {
    const amqp_basic_properties_t& p = env.message.properties;
    MessageHeaders headers;
    std::string content_type;
    if (p._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) {
      content_type = AmqpText(p.content_type);
      headers.emplace_back("content-type", content_type);
    }
    if (p._flags & AMQP_BASIC_HEADERS_FLAG) {
      for (int i = 0; i < p.headers.num_entries; ++i) {
        const amqp_table_entry_t& e = p.headers.entries[i];
        std::string value;
        if (FieldText(e.value, &value)) {
          headers.emplace_back(AmqpText(e.key), std::move(value));
        }
      }
    }
    std::string message_id;
    if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
      message_id = AmqpText(p.message_id);
    }
    if (message_id.empty()) {
      message_id = "amqp:" + o_.queue + ":" + std::to_string(env.delivery_tag);
    }
    SourceDelivery d;
    std::string_view body(static_cast<const char*>(env.message.body.bytes),
                          env.message.body.len);
    DecodeBrokerMessage(headers, content_type, body, CloudEventBinding::kAmqp,
                        message_id, o_.queue, &d);
    if (d.event.id.empty()) d.event.id = message_id;
    d.key = d.event.stream.empty() ? o_.queue : d.event.stream;
    d.redeliveries = env.redelivered ? 1 : 0;
    d.handle = env.delivery_tag;
    unacked_[env.delivery_tag] = false;
    buffer_.push_back(std::move(d));
  }

  const ConsumerSourceOptions options_;
  const RabbitOptions o_;
  AmqpConnection conn_;
  int wake_fd_ = -1;
  bool connected_before_ = false;
  std::deque<SourceDelivery> buffer_;  // read, not handed out (handle = tag)
  std::unordered_map<uint64_t, uint64_t> in_hand_;  // handle -> tag
  std::map<uint64_t, bool> unacked_;  // tag -> acknowledged by the consumer
  uint64_t next_handle_ = 0;
  bool lag_channel_open_ = false;
  Clock::time_point next_lag_{};
  std::optional<int64_t> lag_;
};

}  // namespace

SourceScheme RabbitSourceScheme() {
  return BrokerSourceScheme<RabbitSource>(ValidateAmqpUrl,
                                          ParseRabbitSourceOptions);
}

}  // namespace herald::detail
