// The RabbitMQ sender on rabbitmq-c: persistent messages, publisher
// confirms, mandatory publishing.
//
// One connection and one channel in confirm mode (confirm.select). A Send
// publishes up to max_in_flight messages before reading the broker's
// answers, never two of one stream at once: a stream's next event is
// published only after the broker confirmed the previous one, and a failure
// stops the rest of its stream for this call (the sender contract,
// herald/sender.h). The broker's answers:
//   basic.ack                 delivered (a multiple ack covers every tag up
//                             to it)
//   basic.return, then ack    no queue took it (mandatory): Permanent
//   basic.nack                the broker could not take it: Unavailable
//   channel.close 404         the exchange does not exist: Permanent for the
//                             messages to that exchange, Unavailable for the
//                             others in flight; the channel is reopened
//   connection.close, a socket error, no answer by the deadline
//                             Unavailable for everything in flight; the
//                             connection is dropped and the next Send
//                             connects again (a broker restart heals itself)
// Messages: delivery_mode 2, message_id = event id, type = event type,
// timestamp = occurred_at (seconds); CloudEvents binary mode (headers
// cloudEvents:*, content_type = the event's) or structured mode.
//
// Thread safety: one relay thread calls Send at a time; the connection is
// used only inside Send and the destructor.
#include "transport/rabbitmq/rabbitmq_sender.h"

#include <amqp.h>
#include <sys/time.h>

#include <map>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "herald/cloudevents.h"
#include "transport/rabbitmq/amqp_connection.h"
#include "transport/rabbitmq/rabbitmq_scheme.h"

namespace herald::detail {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// The exchange named by a 404 channel.close text ("NOT_FOUND - no exchange
// 'x' in vhost '/'"), or "".
std::string MissingExchange(std::string_view text) {
  constexpr std::string_view kMark = "no exchange '";
  auto from = text.find(kMark);
  if (from == std::string_view::npos) return "";
  from += kMark.size();
  auto to = text.find("' in vhost", from);
  if (to == std::string_view::npos) return "";
  return std::string(text.substr(from, to - from));
}

class RabbitSender final : public Sender {
 public:
  RabbitSender(RabbitOptions options, int window)
      : o_(std::move(options)), window_(window < 1 ? 1 : window) {}

  ~RabbitSender() override { Close(); }

  std::string_view kind() const override { return "rabbitmq"; }

  void Send(std::span<const Event> events, std::span<SendResult> results,
            steady_clock::time_point deadline) override {
    if (events.empty() || steady_clock::now() >= deadline) return;
    const size_t n = events.size();

    // Streams, each a queue of its events in the order given.
    std::unordered_map<std::string_view, size_t> ids;
    std::vector<size_t> stream_of(n);
    std::vector<std::vector<size_t>> queue;
    for (size_t i = 0; i < n; ++i) {
      auto [it, added] = ids.emplace(events[i].stream, queue.size());
      if (added) queue.emplace_back();
      stream_of[i] = it->second;
      queue[it->second].push_back(i);
    }
    std::vector<size_t> head(queue.size(), 0);
    // Events ready to publish: the heads of streams with nothing in flight,
    // earliest position first.
    std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
    for (const auto& q : queue) ready.push(q.front());

    DropIfClosed();
    if (!conn_) {
      Status s = Connect(deadline);
      if (!s.ok()) {
        // One attempt per stream: the first event of each failed.
        for (const auto& q : queue) results[q.front()] = Failure(s);
        return;
      }
    }

    std::map<uint64_t, size_t> in_flight;  // delivery tag -> event index
    std::unordered_map<std::string_view, size_t> by_id;  // for returns
    std::vector<std::string> exchange(n);
    std::map<size_t, std::string> returned;  // event index -> why

    auto settle = [&](size_t i, Status s) {
      by_id.erase(events[i].id);
      if (auto r = returned.find(i); r != returned.end() && s.ok()) {
        s = Status::Permanent(r->second);
      }
      bool ok = s.ok();
      results[i] = Failure(std::move(s));
      size_t st = stream_of[i];
      if (ok && ++head[st] < queue[st].size()) ready.push(queue[st][head[st]]);
    };
    auto fail_in_flight = [&](const Status& s) {
      for (const auto& [tag, i] : in_flight) settle(i, s);
      in_flight.clear();
    };

    std::string body;
    std::string routing_key;
    while (true) {
      while (in_flight.size() < static_cast<size_t>(window_) &&
             !ready.empty() && steady_clock::now() < deadline) {
        size_t i = ready.top();
        ready.pop();
        exchange[i] = o_.exchange.Expand(events[i]);
        routing_key = o_.routing_key.Expand(events[i]);
        int rc = Publish(events[i], exchange[i], routing_key, &body);
        if (rc != AMQP_STATUS_OK) {
          Status s = Status::Unavailable(std::string("publishing: ") +
                                         amqp_error_string2(rc));
          in_flight[0] = i;  // settled with the rest below
          fail_in_flight(s);
          Reset();
          return;
        }
        in_flight[++next_tag_] = i;
        by_id[events[i].id] = i;
      }
      if (in_flight.empty()) return;  // all settled, or nothing more may go

      auto now = steady_clock::now();
      if (now >= deadline) {
        fail_in_flight(Status::Unavailable(
            "no publisher confirm from the broker by the deadline"));
        Reset();  // late confirms must not count in the next call
        return;
      }
      timeval tv =
          AmqpTimeval(std::chrono::duration_cast<std::chrono::microseconds>(
              deadline - now));
      amqp_frame_t frame;
      amqp_maybe_release_buffers(conn_.get());
      int rc = amqp_simple_wait_frame_noblock(conn_.get(), &frame, &tv);
      if (rc == AMQP_STATUS_TIMEOUT) continue;
      if (rc != AMQP_STATUS_OK) {
        fail_in_flight(
            Status::Unavailable(std::string("connection to the broker lost: ") +
                                amqp_error_string2(rc)));
        Reset();
        return;
      }
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;
      switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD:
        case AMQP_BASIC_NACK_METHOD: {
          bool ack = frame.payload.method.id == AMQP_BASIC_ACK_METHOD;
          uint64_t tag;
          bool multiple;
          if (ack) {
            auto* m =
                static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
            tag = m->delivery_tag;
            multiple = m->multiple != 0;
          } else {
            auto* m =
                static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
            tag = m->delivery_tag;
            multiple = m->multiple != 0;
          }
          auto end = in_flight.upper_bound(tag);
          auto begin = multiple ? in_flight.begin() : in_flight.find(tag);
          if (begin == in_flight.end()) break;  // not ours (or settled)
          std::vector<size_t> done;
          for (auto it = begin; it != end; ++it) done.push_back(it->second);
          in_flight.erase(begin, end);
          for (size_t i : done) {
            settle(i, ack ? Status::OK()
                          : Status::Unavailable(
                                "the broker refused the message (basic.nack); "
                                "it may be retried"));
          }
          break;
        }
        case AMQP_BASIC_RETURN_METHOD: {
          auto* m =
              static_cast<amqp_basic_return_t*>(frame.payload.method.decoded);
          std::string why = "unroutable: no queue is bound to exchange '" +
                            AmqpText(m->exchange) + "' for routing key '" +
                            AmqpText(m->routing_key) + "' (" +
                            std::to_string(m->reply_code) + " " +
                            AmqpText(m->reply_text) + ")";
          amqp_message_t msg;
          amqp_rpc_reply_t r =
              amqp_read_message(conn_.get(), frame.channel, &msg, 0);
          Status s = AmqpReplyStatus(r, "reading a returned message");
          if (!s.ok()) {
            fail_in_flight(s);
            Reset();
            return;
          }
          std::string id;
          if (msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
            id = AmqpText(msg.properties.message_id);
          }
          amqp_destroy_message(&msg);
          if (auto it = by_id.find(id); it != by_id.end()) {
            returned[it->second] = std::move(why);
          }
          break;
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
          auto* m =
              static_cast<amqp_channel_close_t*>(frame.payload.method.decoded);
          int code = m->reply_code;
          std::string text = AmqpText(m->reply_text);
          amqp_channel_close_ok_t close_ok{};
          amqp_send_method(conn_.get(), frame.channel,
                           AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
          std::string missing = code == 404 ? MissingExchange(text) : "";
          bool blamed = false;
          for (const auto& [tag, i] : in_flight) {
            if (code == 404 &&
                (exchange[i] == missing || (missing.empty() && !blamed))) {
              blamed = true;
              settle(i, Status::Permanent("exchange '" + exchange[i] +
                                          "' does not exist in vhost '" +
                                          o_.vhost +
                                          "' (herald creates no exchanges): " +
                                          std::to_string(code) + " " + text));
            } else {
              settle(i, Status::Unavailable("the broker closed the channel: " +
                                            std::to_string(code) + " " + text));
            }
          }
          in_flight.clear();
          Status s = OpenChannel(deadline);
          if (!s.ok()) {
            Reset();
            return;
          }
          break;
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
          auto* m = static_cast<amqp_connection_close_t*>(
              frame.payload.method.decoded);
          Status s = Status::Unavailable("the broker closed the connection: " +
                                         std::to_string(m->reply_code) + " " +
                                         AmqpText(m->reply_text));
          amqp_connection_close_ok_t close_ok{};
          amqp_send_method(conn_.get(), 0, AMQP_CONNECTION_CLOSE_OK_METHOD,
                           &close_ok);
          fail_in_flight(s);
          Reset();
          return;
        }
        default:
          break;  // connection.blocked/unblocked and the like: keep waiting
      }
    }
  }

 private:
  static SendResult Failure(Status s) {
    SendResult r;
    r.status = std::move(s);
    r.attempted = true;
    return r;
  }

  int Publish(const Event& e, const std::string& exchange,
              const std::string& routing_key, std::string* body) {
    amqp_basic_properties_t p{};
    p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
               AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG |
               AMQP_BASIC_TYPE_FLAG;
    p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    p.message_id = AmqpBytes(e.id);
    p.type = AmqpBytes(e.type);
    p.timestamp = static_cast<uint64_t>(e.occurred_at_us / 1000000);
    MessageHeaders headers;
    std::vector<amqp_table_entry_t> entries;
    std::string content_type;
    amqp_bytes_t payload;
    if (o_.mode == CloudEventsMode::kBinary) {
      headers = EncodeCloudEventHeaders(e, o_.source, CloudEventBinding::kAmqp);
      entries.reserve(headers.size());
      for (const auto& [name, value] : headers) {
        if (name == "content-type") {
          content_type = value;
          continue;
        }
        amqp_table_entry_t t{};
        t.key = AmqpBytes(name);
        t.value.kind = AMQP_FIELD_KIND_UTF8;
        t.value.value.bytes = AmqpBytes(value);
        entries.push_back(t);
      }
      p._flags |= AMQP_BASIC_HEADERS_FLAG;
      p.headers.num_entries = static_cast<int>(entries.size());
      p.headers.entries = entries.data();
      payload = AmqpBytes(e.payload);
    } else {
      content_type = "application/cloudevents+json; charset=UTF-8";
      body->clear();
      AppendCloudEventJson(e, o_.source, body);
      payload = AmqpBytes(*body);
    }
    p.content_type = AmqpBytes(content_type);
    return amqp_basic_publish(conn_.get(), channel_, AmqpBytes(exchange),
                              AmqpBytes(routing_key), /*mandatory=*/1,
                              /*immediate=*/0, &p, payload);
  }

  Status Connect(steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(
        deadline - steady_clock::now());
    auto limit = std::min<std::chrono::microseconds>(left, o_.connect_timeout);
    AmqpConnection conn;
    HERALD_RETURN_IF_ERROR(
        OpenAmqpConnection(o_, limit, /*heartbeat=*/0, &conn));
    conn_ = std::move(conn);
    channel_ = 0;
    Status s = OpenChannel(deadline);
    if (!s.ok()) Reset();
    return s;
  }

  // Opens the next channel in confirm mode; delivery tags start again at 1.
  Status OpenChannel(steady_clock::time_point deadline) {
    (void)deadline;
    channel_ = channel_ >= 1000 ? 1 : channel_ + 1;
    next_tag_ = 0;
    amqp_channel_open(conn_.get(), channel_);
    HERALD_RETURN_IF_ERROR(
        AmqpReplyStatus(amqp_get_rpc_reply(conn_.get()), "opening a channel"));
    amqp_confirm_select(conn_.get(), channel_);
    return AmqpReplyStatus(amqp_get_rpc_reply(conn_.get()),
                           "turning on publisher confirms");
  }

  // Between calls the broker may have closed the connection (a restart, an
  // operator's close_all_connections): read what it sent, without waiting,
  // and drop the connection if it is gone.
  void DropIfClosed() {
    while (conn_) {
      timeval zero{0, 0};
      amqp_frame_t frame;
      amqp_maybe_release_buffers(conn_.get());
      int rc = amqp_simple_wait_frame_noblock(conn_.get(), &frame, &zero);
      if (rc == AMQP_STATUS_TIMEOUT) return;
      if (rc != AMQP_STATUS_OK) {
        Reset();
        return;
      }
      if (frame.frame_type == AMQP_FRAME_METHOD &&
          (frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD ||
           frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD)) {
        Reset();
        return;
      }
    }
  }

  void Reset() {
    conn_.reset();
    next_tag_ = 0;
  }

  void Close() {
    if (!conn_) return;
    timeval tv{1, 0};
    amqp_set_rpc_timeout(conn_.get(), &tv);
    amqp_channel_close(conn_.get(), channel_, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn_.get(), AMQP_REPLY_SUCCESS);
    conn_.reset();
  }

  const RabbitOptions o_;
  const int window_;
  AmqpConnection conn_;
  amqp_channel_t channel_ = 0;
  uint64_t next_tag_ = 0;  // the last delivery tag given on channel_
};

}  // namespace

Result<std::unique_ptr<Sender>> MakeRabbitSender(const RouteConfig& route) {
  RabbitOptions o;
  HERALD_RETURN_IF_ERROR(ParseRabbitOptions(route, &o));
  return std::unique_ptr<Sender>(
      std::make_unique<RabbitSender>(std::move(o), route.max_in_flight));
}

}  // namespace herald::detail
