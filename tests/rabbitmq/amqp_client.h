// A small RabbitMQ client for tests, on rabbitmq-c: declares the topology a
// user would own (exchanges, queues, bindings) and consumes what herald
// published. The server comes from tests/support/with-rabbitmq.sh
// (HERALD_TEST_AMQP_URL); tests skip without it.
//
// Thread safety: one thread per AmqpClient. Header-only.
#pragma once

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace herald::testing {

// The test server's URL, or "" (the test should skip).
inline std::string AmqpUrl() {
  const char* u = std::getenv("HERALD_TEST_AMQP_URL");
  return u ? u : "";
}

// Runs rabbitmqctl on the test server ("close_all_connections", "why").
inline int RabbitCtl(const std::vector<std::string>& args) {
  const char* ctl = std::getenv("HERALD_TEST_RABBITMQ_CTL");
  if (!ctl) return -1;
  std::string cmd = std::string(ctl);
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " >/dev/null 2>&1";
  return std::system(cmd.c_str());
}

// "stop" or "start" the test server (start returns once it accepts).
inline int RabbitServer(const std::string& what) {
  const char* s = std::getenv("HERALD_TEST_RABBITMQ_SERVER");
  if (!s) return -1;
  return std::system((std::string(s) + " " + what + " >/dev/null").c_str());
}

// One message as a consumer got it.
struct AmqpMessage {
  std::string id;            // message_id
  std::string type;          // the type property
  std::string content_type;  // the content_type property
  int delivery_mode = 0;
  std::string routing_key;
  std::vector<std::pair<std::string, std::string>> headers;  // string ones
  std::string body;
};

// Owns a rabbitmq-c connection: closes it politely, then frees it.
struct AmqpConnectionClose {
  void operator()(amqp_connection_state_t c) const {
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
  }
};
using AmqpConnectionPtr =
    std::unique_ptr<amqp_connection_state_t_, AmqpConnectionClose>;

class AmqpClient {
 public:
  AmqpClient() { Connect(); }
  AmqpClient(const AmqpClient&) = delete;
  AmqpClient& operator=(const AmqpClient&) = delete;

  bool ok() const { return conn_ != nullptr; }

  // Declares (durable) and purges. `type` "direct", "topic", "fanout",
  // "headers".
  void Exchange(const std::string& name, const std::string& type = "topic") {
    if (!conn_) return;
    amqp_exchange_declare(conn_, 1, Bytes(name), Bytes(type), 0, 1, 0, 0,
                          amqp_empty_table);
    Check("exchange.declare " + name);
  }
  void DeleteExchange(const std::string& name) {
    if (!conn_) return;
    amqp_exchange_delete(conn_, 1, Bytes(name), 0);
    Check("exchange.delete " + name);
  }
  // A durable queue; `args` as x-arguments (integers and strings).
  void Queue(
      const std::string& name,
      const std::vector<std::pair<std::string, std::string>>& str_args = {},
      const std::vector<std::pair<std::string, int64_t>>& int_args = {}) {
    if (!conn_) return;
    std::vector<amqp_table_entry_t> e;
    for (const auto& [k, v] : str_args) {
      amqp_table_entry_t t{};
      t.key = Bytes(k);
      t.value.kind = AMQP_FIELD_KIND_UTF8;
      t.value.value.bytes = Bytes(v);
      e.push_back(t);
    }
    for (const auto& [k, v] : int_args) {
      amqp_table_entry_t t{};
      t.key = Bytes(k);
      t.value.kind = AMQP_FIELD_KIND_I64;
      t.value.value.i64 = v;
      e.push_back(t);
    }
    amqp_table_t table{static_cast<int>(e.size()), e.data()};
    amqp_queue_declare(conn_, 1, Bytes(name), 0, 1, 0, 0, table);
    Check("queue.declare " + name);
    amqp_queue_purge(conn_, 1, Bytes(name));
    Check("queue.purge " + name);
  }
  void DeleteQueue(const std::string& name) {
    if (!conn_) return;
    amqp_queue_delete(conn_, 1, Bytes(name), 0, 0);
    Check("queue.delete " + name);
  }
  // Binds with a routing key, or (headers exchanges) with `match` headers,
  // x-match all.
  void Bind(
      const std::string& queue, const std::string& exchange,
      const std::string& key,
      const std::vector<std::pair<std::string, std::string>>& match = {}) {
    if (!conn_) return;
    std::vector<amqp_table_entry_t> e;
    for (const auto& [k, v] : match) {
      amqp_table_entry_t t{};
      t.key = Bytes(k);
      t.value.kind = AMQP_FIELD_KIND_UTF8;
      t.value.value.bytes = Bytes(v);
      e.push_back(t);
    }
    amqp_table_t table{static_cast<int>(e.size()), e.data()};
    amqp_queue_bind(conn_, 1, Bytes(queue), Bytes(exchange), Bytes(key), table);
    Check("queue.bind " + queue);
  }

  // Reads messages of `queue` until `want` arrived or nothing came for
  // `quiet` (auto-ack: what is read is gone from the queue).
  std::vector<AmqpMessage> Read(
      const std::string& queue, size_t want,
      std::chrono::milliseconds quiet = std::chrono::milliseconds(500)) {
    std::vector<AmqpMessage> out;
    if (!conn_) return out;
    amqp_basic_qos(conn_, 1, 0, 1000, 0);
    Check("basic.qos");
    amqp_basic_consume_ok_t* ok =
        amqp_basic_consume(conn_, 1, Bytes(queue), amqp_empty_bytes, 0,
                           /*no_ack=*/1, 0, amqp_empty_table);
    Check("basic.consume " + queue);
    if (!ok) return out;
    std::string tag(static_cast<char*>(ok->consumer_tag.bytes),
                    ok->consumer_tag.len);
    while (out.size() < want) {
      amqp_envelope_t env;
      amqp_maybe_release_buffers(conn_);
      timeval tv{static_cast<time_t>(quiet.count() / 1000),
                 static_cast<suseconds_t>((quiet.count() % 1000) * 1000)};
      amqp_rpc_reply_t r = amqp_consume_message(conn_, &env, &tv, 0);
      if (r.reply_type != AMQP_RESPONSE_NORMAL) break;  // quiet, or an error
      AmqpMessage m;
      const amqp_basic_properties_t& p = env.message.properties;
      if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) m.id = Str(p.message_id);
      if (p._flags & AMQP_BASIC_TYPE_FLAG) m.type = Str(p.type);
      if (p._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) {
        m.content_type = Str(p.content_type);
      }
      if (p._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) {
        m.delivery_mode = p.delivery_mode;
      }
      if (p._flags & AMQP_BASIC_HEADERS_FLAG) {
        for (int i = 0; i < p.headers.num_entries; ++i) {
          const amqp_table_entry_t& t = p.headers.entries[i];
          if (t.value.kind == AMQP_FIELD_KIND_UTF8 ||
              t.value.kind == AMQP_FIELD_KIND_BYTES) {
            m.headers.emplace_back(Str(t.key), Str(t.value.value.bytes));
          }
        }
      }
      m.routing_key = Str(env.routing_key);
      m.body = Str(env.message.body);
      amqp_destroy_envelope(&env);
      out.push_back(std::move(m));
    }
    amqp_basic_cancel(conn_, 1, Bytes(tag));
    // Messages that arrived between the last read and the cancel.
    while (true) {
      amqp_envelope_t env;
      timeval tv{0, 200000};
      amqp_rpc_reply_t r = amqp_consume_message(conn_, &env, &tv, 0);
      if (r.reply_type != AMQP_RESPONSE_NORMAL) break;
      AmqpMessage m;
      if (env.message.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
        m.id = Str(env.message.properties.message_id);
      }
      m.body = Str(env.message.body);
      amqp_destroy_envelope(&env);
      out.push_back(std::move(m));
    }
    return out;
  }

 private:
  static amqp_bytes_t Bytes(const std::string& s) {
    return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
  }
  static std::string Str(amqp_bytes_t b) {
    return std::string(static_cast<const char*>(b.bytes), b.len);
  }

  void Connect() {
    std::string url = AmqpUrl();
    if (url.empty()) return;
    std::vector<char> copy(url.begin(), url.end());
    copy.push_back('\0');
    amqp_connection_info info;
    amqp_default_connection_info(&info);
    if (amqp_parse_url(copy.data(), &info) != AMQP_STATUS_OK) {
      ADD_FAILURE() << "bad url " << url;
      return;
    }
    std::unique_ptr<amqp_connection_state_t_,
                    decltype(&amqp_destroy_connection)>
        conn(amqp_new_connection(), &amqp_destroy_connection);
    amqp_socket_t* s = amqp_tcp_socket_new(conn.get());
    if (amqp_socket_open(s, info.host, info.port) != AMQP_STATUS_OK) {
      ADD_FAILURE() << "cannot connect to " << url;
      return;
    }
    std::string vhost = *info.vhost ? info.vhost : "/";
    amqp_rpc_reply_t r =
        amqp_login(conn.get(), vhost.c_str(), 0, 131072, 0,
                   AMQP_SASL_METHOD_PLAIN, info.user, info.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      ADD_FAILURE() << "login failed";
      return;
    }
    owner_.reset(conn.release());
    conn_ = owner_.get();
    amqp_channel_open(conn_, 1);
    Check("channel.open");
  }

  void Check(const std::string& what) {
    if (!conn_) return;  // Connect failed, and said so
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      ADD_FAILURE() << what << " failed (reply type " << r.reply_type << ")";
    }
  }

  AmqpConnectionPtr owner_;
  amqp_connection_state_t conn_ = nullptr;  // owner_.get()
};

}  // namespace herald::testing
