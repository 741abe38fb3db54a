// The RabbitMQ sender's and source's shared rabbitmq-c helpers.
#include "transport/rabbitmq/amqp_connection.h"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>

namespace herald::detail {

amqp_bytes_t AmqpBytes(std::string_view s) {
  amqp_bytes_t b;
  b.len = s.size();
  b.bytes = const_cast<char*>(s.data());
  return b;
}

std::string AmqpText(amqp_bytes_t b) {
  if (b.len == 0) return "";
  return std::string(static_cast<const char*>(b.bytes), b.len);
}

timeval AmqpTimeval(std::chrono::microseconds d) {
  if (d.count() < 0) d = std::chrono::microseconds(0);
  timeval tv;
  tv.tv_sec = static_cast<time_t>(d.count() / 1000000);
  tv.tv_usec = static_cast<suseconds_t>(d.count() % 1000000);
  return tv;
}

Status AmqpReplyStatus(const amqp_rpc_reply_t& r, std::string_view what) {
  std::string where(what);
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return Status::OK();
    case AMQP_RESPONSE_NONE:
      return Status::Unavailable(where + ": no answer from the broker");
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return Status::Unavailable(where + ": " +
                                 amqp_error_string2(r.library_error));
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        return Status::Unavailable(
            where + ": the broker closed the connection: " +
            std::to_string(m->reply_code) + " " + AmqpText(m->reply_text));
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        return Status::Unavailable(where + ": the broker closed the channel: " +
                                   std::to_string(m->reply_code) + " " +
                                   AmqpText(m->reply_text));
      }
      return Status::Unavailable(where + ": unexpected broker method");
  }
  return Status::Unavailable(where + ": unknown reply");
}

int AmqpReplyCode(const amqp_rpc_reply_t& r) {
  if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION) return 0;
  if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
    return static_cast<amqp_connection_close_t*>(r.reply.decoded)->reply_code;
  }
  if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    return static_cast<amqp_channel_close_t*>(r.reply.decoded)->reply_code;
  }
  return 0;
}

Status OpenAmqpConnection(const RabbitOptions& o,
                          std::chrono::microseconds limit, int heartbeat,
                          AmqpConnection* out, int* reply_code) {
  if (reply_code) *reply_code = 0;
  if (limit.count() <= 0) {
    return Status::Unavailable("no time left to connect to the broker");
  }
  std::string where = o.host + ":" + std::to_string(o.port);
  AmqpConnection conn(amqp_new_connection());
  if (!conn) return Status::Unavailable("amqp_new_connection failed");
  amqp_socket_t* sock =
      o.tls ? amqp_ssl_socket_new(conn.get()) : amqp_tcp_socket_new(conn.get());
  if (!sock) return Status::Unavailable("cannot make a socket");
  if (o.tls) {
    amqp_ssl_socket_set_verify_peer(sock, o.tls_verify ? 1 : 0);
    amqp_ssl_socket_set_verify_hostname(sock, o.tls_verify ? 1 : 0);
    if (!o.ca_file.empty()) {
      int rc = amqp_ssl_socket_set_cacert(sock, o.ca_file.c_str());
      if (rc != AMQP_STATUS_OK) {
        return Status::Unavailable("ca_file " + o.ca_file + ": " +
                                   amqp_error_string2(rc));
      }
    }
  }
  timeval tv = AmqpTimeval(limit);
  int rc = amqp_socket_open_noblock(sock, o.host.c_str(), o.port, &tv);
  if (rc != AMQP_STATUS_OK) {
    return Status::Unavailable("connecting to " + where + ": " +
                               amqp_error_string2(rc));
  }
  amqp_set_handshake_timeout(conn.get(), &tv);
  amqp_set_rpc_timeout(conn.get(), &tv);
  amqp_rpc_reply_t r =
      amqp_login(conn.get(), o.vhost.c_str(), 0, 131072, heartbeat,
                 AMQP_SASL_METHOD_PLAIN, o.user.c_str(), o.password.c_str());
  Status s =
      AmqpReplyStatus(r, "logging in to " + where + " vhost '" + o.vhost + "'");
  if (!s.ok()) {
    if (reply_code) *reply_code = AmqpReplyCode(r);
    return s;
  }
  *out = std::move(conn);
  return Status::OK();
}

}  // namespace herald::detail
