// What the RabbitMQ sender and source share on rabbitmq-c: the connection
// handle, byte conversions, RPC reply statuses and the connect-and-login.
//
// Thread safety: a connection is used by one thread at a time.
#pragma once

#include <amqp.h>
#include <sys/time.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "herald/status.h"
#include "transport/rabbitmq/rabbitmq_scheme.h"

namespace herald::detail {

struct AmqpConnectionFree {
  void operator()(amqp_connection_state_t c) const {
    amqp_destroy_connection(c);
  }
};
using AmqpConnection =
    std::unique_ptr<amqp_connection_state_t_, AmqpConnectionFree>;

// A view of `s` as amqp_bytes_t (not copied: `s` must outlive it).
amqp_bytes_t AmqpBytes(std::string_view s);
// A copy of `b`.
std::string AmqpText(amqp_bytes_t b);
// `d` (>= 0) as a timeval.
timeval AmqpTimeval(std::chrono::microseconds d);

// The error of an RPC reply, or OK: Unavailable for everything (a closed
// connection or channel, no answer, a socket error), naming `what`.
Status AmqpReplyStatus(const amqp_rpc_reply_t& r, std::string_view what);

// The reply code of a server exception (channel.close or
// connection.close), or 0.
int AmqpReplyCode(const amqp_rpc_reply_t& r);

// Opens a TCP (or TLS, amqps) connection to o's host and logs in to its
// vhost within `limit`, with `heartbeat` seconds (0: none). The handshake
// and RPC timeouts are set to `limit`. Unavailable on failure, with the
// broker's reply code in *reply_code when it refused the login (403: the
// credentials, 530: the vhost), else 0.
Status OpenAmqpConnection(const RabbitOptions& o,
                          std::chrono::microseconds limit, int heartbeat,
                          AmqpConnection* out, int* reply_code = nullptr);

}  // namespace herald::detail
