// The amqp and amqps schemes: URL shape and route options of the RabbitMQ
// sender, registered by make_sender.cc when HERALD_WITH_RABBITMQ is on.
//
// Pure functions; safe from any thread.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "core/template.h"
#include "herald/consumer_source.h"
#include "herald/sender.h"

namespace herald::detail {

// The scheme's keys, for unknown-key messages.
inline constexpr std::string_view kRabbitKeys =
    "exchange, routing_key, mode, connect_timeout, tls_verify, ca_file";

// The keys of an amqp:// consumer source ([[consumer]] tables).
inline constexpr std::string_view kRabbitSourceKeys =
    "queue, connect_timeout, tls_verify, ca_file";

// What a RabbitMQ route publishes where, parsed from its options.
struct RabbitOptions {
  // "amqp://user:pass@host:port/vhost" parts (rabbitmq-c's amqp_parse_url:
  // user and password default to guest, port to 5672 / 5671, an empty
  // vhost to "/"; percent-escapes decoded).
  std::string user, password, host, vhost;
  int port = 5672;
  bool tls = false;  // amqps://
  // Key `exchange` (required) and `routing_key` (default "{type}"):
  // templates of {type}, {stream}, {category}.
  NameTemplate exchange;
  NameTemplate routing_key;
  // Key `mode`: "binary" (default: cloudEvents: headers, content_type =
  // the event's) or "structured" (application/cloudevents+json body).
  CloudEventsMode mode = CloudEventsMode::kBinary;
  // Key `connect_timeout`: TCP connect plus AMQP handshake (default 5 s).
  std::chrono::milliseconds connect_timeout{5000};
  // amqps: keys `tls_verify` (default true: the certificate and host name
  // are checked) and `ca_file` (default: the system's CA store).
  bool tls_verify = true;
  std::string ca_file;
  // CloudEvents source (the route's `source`, default "herald").
  std::string source = "herald";
  // A consumer source's key `queue` (required there): the queue consumed.
  std::string queue;
};

// "amqp://[user[:pass]@]host[:port][/vhost]" or amqps://.
Status ValidateAmqpUrl(std::string_view url);

// Parses route.sender and route.options; errors name the key and line.
Status ParseRabbitOptions(const RouteConfig& route, RabbitOptions* out);

// SenderScheme::validate_options of amqp / amqps.
Status ValidateRabbitRoute(RouteConfig* route);

// A consumer source's URL and keys (queue, connect_timeout, tls_verify,
// ca_file); errors name the key and line.
Status ParseRabbitSourceOptions(const ConsumerSourceOptions& source,
                                RabbitOptions* out);

}  // namespace herald::detail
