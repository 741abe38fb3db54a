// RabbitMQ benchmark: the relay's RabbitMQ route beside a plain rabbitmq-c
// publisher in the same run, as a ratio; medians of --runs runs (default 3).
// Needs a server: run it under tests/support/with-rabbitmq.sh.
//
//   tests/support/with-rabbitmq.sh build/bench/rabbitmq/rabbitmq_bench
//       [--runs N] [--events N] [--window W] [--only throughput|latency]
//
//   throughput  an in-process Relay draining a SQLite backlog of --events
//               events (default 50,000, 200-byte payloads, 1,000 streams,
//               batch B, default 1,000, max_in_flight W, default 500) to a
//               direct exchange and a durable queue, until the checkpoint
//               passes the head; beside a plain program publishing the same
//               messages (same body, same properties and CloudEvents
//               headers, persistent, publisher confirms, a sliding window
//               of W outstanding)
//   latency     commit-to-acknowledgement at a steady 1,000 events/s (one
//               event per transaction, 50 streams, 5,000 events): from the
//               append's commit to the broker's confirm as the relay sees it
//               (the sender's Send returned it OK); beside one plain
//               publish + confirm round trip (window 1)
#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "bench_util.h"
#include "herald/cloudevents.h"
#include "herald/config.h"
#include "herald/relay.h"
#include "herald/store.h"
#include "rabbitmq/amqp_client.h"
#include "support/test_util.h"

namespace herald {
namespace {

using namespace bench;  // NOLINT(google-build-using-namespace)
using std::chrono::milliseconds;
using testing::TempDir;

int g_runs = 3;
int64_t g_events = 50000;
int g_window = 500;
int g_batch = 1000;
std::string g_only;

std::string Payload(int64_t i) {
  std::string p = "{\"order\":" + std::to_string(i) + ",\"pad\":\"";
  p.append(200 - p.size() - 2, 'x');
  p += "\"}";
  return p;
}

RouteConfig Route(const std::string& name, const std::string& exchange,
                  int window, int batch) {
  auto c = ParseConfig("[[route]]\nname = \"" + name + "\"\nsender = \"" +
                           testing::AmqpUrl() + "\"\nexchange = \"" + exchange +
                           "\"\nrouting_key = \"bench\"\nmax_in_flight = " +
                           std::to_string(window) +
                           "\nbatch = " + std::to_string(batch) + "\n",
                       "bench.toml");
  Check(c.status(), "route config");
  return c->routes[0];
}

// ---- the plain publisher ----------------------------------------------------

class Plain {
 public:
  Plain() {
    std::string url = testing::AmqpUrl();
    std::vector<char> copy(url.begin(), url.end());
    copy.push_back('\0');
    amqp_connection_info info;
    amqp_default_connection_info(&info);
    amqp_parse_url(copy.data(), &info);
    owner_.reset(amqp_new_connection());
    conn_ = owner_.get();
    amqp_socket_t* s = amqp_tcp_socket_new(conn_);
    if (amqp_socket_open(s, info.host, info.port) != AMQP_STATUS_OK) {
      std::fprintf(stderr, "plain: cannot connect\n");
      std::exit(1);
    }
    amqp_login(conn_, *info.vhost ? info.vhost : "/", 0, 131072, 0,
               AMQP_SASL_METHOD_PLAIN, info.user, info.password);
    amqp_channel_open(conn_, 1);
    amqp_get_rpc_reply(conn_);
    amqp_confirm_select(conn_, 1);
    amqp_get_rpc_reply(conn_);
  }

  // One prepared message: what a plain program would hold.
  struct Message {
    std::string id, type, content_type, body;
    MessageHeaders headers;
  };

  // Publishes every message with at most `window` unconfirmed; returns once
  // all are confirmed.
  void PublishAll(const std::string& exchange, const std::vector<Message>& msgs,
                  int window) {
    std::set<uint64_t> outstanding;
    size_t next = 0;
    std::vector<amqp_table_entry_t> entries;
    while (next < msgs.size() || !outstanding.empty()) {
      while (next < msgs.size() &&
             outstanding.size() < static_cast<size_t>(window)) {
        Publish(exchange, msgs[next++], &entries);
        outstanding.insert(++tag_);
      }
      amqp_frame_t f;
      amqp_maybe_release_buffers(conn_);
      if (amqp_simple_wait_frame(conn_, &f) != AMQP_STATUS_OK) {
        std::fprintf(stderr, "plain: connection lost\n");
        std::exit(1);
      }
      if (f.frame_type != AMQP_FRAME_METHOD) continue;
      if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
        auto* a = static_cast<amqp_basic_ack_t*>(f.payload.method.decoded);
        if (a->multiple) {
          outstanding.erase(outstanding.begin(),
                            outstanding.upper_bound(a->delivery_tag));
        } else {
          outstanding.erase(a->delivery_tag);
        }
      } else if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
        std::fprintf(stderr, "plain: nack\n");
        std::exit(1);
      }
    }
  }

 private:
  static amqp_bytes_t B(const std::string& s) {
    return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
  }
  void Publish(const std::string& exchange, const Message& m,
               std::vector<amqp_table_entry_t>* entries) {
    entries->clear();
    for (const auto& [k, v] : m.headers) {
      amqp_table_entry_t t{};
      t.key = B(k);
      t.value.kind = AMQP_FIELD_KIND_UTF8;
      t.value.value.bytes = B(v);
      entries->push_back(t);
    }
    amqp_basic_properties_t p{};
    p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
               AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG |
               AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_HEADERS_FLAG;
    p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    p.message_id = B(m.id);
    p.type = B(m.type);
    p.content_type = B(m.content_type);
    p.timestamp = 1;
    p.headers.num_entries = static_cast<int>(entries->size());
    p.headers.entries = entries->data();
    static const std::string kKey = "bench";
    if (amqp_basic_publish(conn_, 1, B(exchange), B(kKey), 1, 0, &p,
                           B(m.body)) != AMQP_STATUS_OK) {
      std::fprintf(stderr, "plain: publish failed\n");
      std::exit(1);
    }
  }

  testing::AmqpConnectionPtr owner_;
  amqp_connection_state_t conn_ = nullptr;  // owner_.get()
  uint64_t tag_ = 0;
};

Plain::Message ToMessage(const Event& e) {
  Plain::Message m;
  m.id = e.id;
  m.type = e.type;
  m.body = e.payload;
  for (auto& [k, v] :
       EncodeCloudEventHeaders(e, "herald", CloudEventBinding::kAmqp)) {
    if (k == "content-type") {
      m.content_type = v;
    } else {
      m.headers.emplace_back(k, v);
    }
  }
  return m;
}

// ---- throughput -------------------------------------------------------------

void Throughput() {
  std::vector<double> relay_rates, plain_rates;
  testing::AmqpClient admin;
  const std::string ex = "bench.tp", q = "bench.tp";
  admin.Exchange(ex, "direct");
  for (int run = 0; run < g_runs; ++run) {
    admin.Queue(q);  // declared and purged
    admin.Bind(q, ex, "bench");
    TempDir dir;
    auto s = OpenStore("sqlite:" + dir.file("h.db"));
    Check(s.status(), "open store");
    auto store = std::move(*s);
    std::vector<Event> all;
    std::vector<Event> batch;
    for (int64_t i = 0; i < g_events; ++i) {
      Event e;
      e.stream = "order-" + std::to_string(i % 1000);
      e.type = "order.placed";
      e.payload = Payload(i);
      batch.push_back(std::move(e));
      if (batch.size() == 1000 || i + 1 == g_events) {
        Check(store->Append(std::span<Event>(batch)).status(), "fill");
        all.insert(all.end(), batch.begin(), batch.end());
        batch.clear();
      }
    }
    {
      RelayOptions o;
      Relay relay(store.get(), o);
      Check(relay.AddRoute(Route("tp", ex, g_window, g_batch)), "route");
      auto t0 = Clock::now();
      Check(relay.Start(), "start");
      WaitCheckpoint(store.get(), "tp", g_events);
      relay_rates.push_back(g_events / Seconds(Clock::now() - t0));
      relay.Stop();
    }
    admin.Queue(q);
    std::vector<Plain::Message> msgs;
    msgs.reserve(all.size());
    for (const auto& e : all) msgs.push_back(ToMessage(e));
    {
      Plain plain;
      auto t0 = Clock::now();
      plain.PublishAll(ex, msgs, g_window);
      plain_rates.push_back(g_events / Seconds(Clock::now() - t0));
    }
    std::printf("  run %d: relay %.0f/s, plain %.0f/s\n", run + 1,
                relay_rates.back(), plain_rates.back());
  }
  admin.DeleteQueue(q);
  double r = Median(relay_rates), p = Median(plain_rates);
  std::printf(
      "throughput, %lld-event backlog, window %d, batch %d: relay %.0f "
      "events/s, plain rabbitmq-c %.0f msgs/s, ratio %.2f\n",
      static_cast<long long>(g_events), g_window, g_batch, r, p, r / p);
}

// ---- latency ----------------------------------------------------------------

// Records when each event's Send returned it delivered.
class TimedSender final : public Sender {
 public:
  explicit TimedSender(std::unique_ptr<Sender> inner)
      : inner_(std::move(inner)) {}
  void Send(std::span<const Event> events, std::span<SendResult> results,
            Clock::time_point deadline) override {
    inner_->Send(events, results, deadline);
    int64_t now = NowMicros();
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < events.size(); ++i) {
      if (results[i].status.ok()) acked_.emplace(events[i].id, now);
    }
  }
  std::string_view kind() const override { return inner_->kind(); }
  std::map<std::string, int64_t> acked() {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_;
  }

 private:
  std::unique_ptr<Sender> inner_;
  std::mutex mu_;
  std::map<std::string, int64_t> acked_;
};

void LatencySection() {
  const int n = 5000;
  std::vector<double> p50, p99, mx, b50, b99;
  testing::AmqpClient admin;
  const std::string ex = "bench.lat", q = "bench.lat";
  admin.Exchange(ex, "direct");
  for (int run = 0; run < g_runs; ++run) {
    admin.Queue(q);
    admin.Bind(q, ex, "bench");
    TempDir dir;
    auto s = OpenStore("sqlite:" + dir.file("h.db"));
    Check(s.status(), "open store");
    auto store = std::move(*s);
    RouteConfig route = Route("lat", ex, 16, 100);
    auto inner = MakeSender(route);
    Check(inner.status(), "sender");
    auto timed = std::make_unique<TimedSender>(std::move(*inner));
    TimedSender* t = timed.get();
    route.sender.clear();
    route.options.fields.clear();
    std::vector<std::pair<std::string, int64_t>> commits;
    std::map<std::string, int64_t> acked;
    {
      RelayOptions o;
      Relay relay(store.get(), o);
      Check(relay.AddRoute(route, std::move(timed)), "route");
      Check(relay.Start(), "start");
      auto start = Clock::now();
      for (int i = 0; i < n; ++i) {
        std::this_thread::sleep_until(
            start + std::chrono::microseconds(int64_t{1000} * i));
        Event e;
        e.stream = "order-" + std::to_string(i % 50);
        e.type = "order.placed";
        e.payload = Payload(i);
        Check(store->Append(std::span<Event>(&e, 1)).status(), "append");
        commits.emplace_back(e.id, NowMicros());
      }
      WaitCheckpoint(store.get(), "lat", n);
      relay.Stop();
      acked = t->acked();  // the relay owns the sender
    }
    std::vector<double> ms;
    for (const auto& [id, at] : commits) {
      auto it = acked.find(id);
      if (it != acked.end()) ms.push_back((it->second - at) / 1000.0);
    }
    Percentiles l = PercentilesOf(ms);
    p50.push_back(l.p50);
    p99.push_back(l.p99);
    mx.push_back(l.max);
    // One plain publish + confirm at a time.
    std::vector<double> rt;
    {
      Plain plain;
      Event e;
      e.stream = "order-1";
      e.type = "order.placed";
      e.payload = Payload(1);
      e.id = NewUuidV7();
      std::vector<Plain::Message> one{ToMessage(e)};
      for (int i = 0; i < 2000; ++i) {
        auto t0 = Clock::now();
        plain.PublishAll(ex, one, 1);
        rt.push_back(Seconds(Clock::now() - t0) * 1000);
      }
    }
    Percentiles b = PercentilesOf(rt);
    b50.push_back(b.p50);
    b99.push_back(b.p99);
    std::printf(
        "  run %d: relay p50 %.3f p99 %.3f max %.3f ms; plain round trip "
        "p50 %.3f p99 %.3f ms\n",
        run + 1, l.p50, l.p99, l.max, b.p50, b.p99);
  }
  admin.DeleteQueue(q);
  std::printf(
      "latency @1000/s, commit to broker confirm: p50 %.3f ms, p99 %.3f ms, "
      "max %.3f ms   (plain publish+confirm round trip: p50 %.3f, p99 %.3f "
      "ms)\n",
      Median(p50), Median(p99), Median(mx), Median(b50), Median(b99));
}

}  // namespace
}  // namespace herald

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : ""; };
    if (a == "--runs") {
      herald::g_runs = std::atoi(next().c_str());
    } else if (a == "--events") {
      herald::g_events = std::atoll(next().c_str());
    } else if (a == "--window") {
      herald::g_window = std::atoi(next().c_str());
    } else if (a == "--batch") {
      herald::g_batch = std::atoi(next().c_str());
    } else if (a == "--only") {
      herald::g_only = next();
    } else {
      std::fprintf(stderr,
                   "usage: %s [--runs N] [--events N] [--window W] [--batch B] "
                   "[--only throughput|latency]\n",
                   argv[0]);
      return 2;
    }
  }
  if (herald::testing::AmqpUrl().empty()) {
    std::fprintf(stderr,
                 "HERALD_TEST_AMQP_URL is not set: run under "
                 "tests/support/with-rabbitmq.sh\n");
    return 2;
  }
  if (herald::g_only.empty() || herald::g_only == "throughput") {
    herald::Throughput();
  }
  if (herald::g_only.empty() || herald::g_only == "latency") {
    herald::LatencySection();
  }
  return 0;
}
