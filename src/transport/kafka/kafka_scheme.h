// The kafka scheme: URL shape and route options of the Kafka sender,
// registered by make_sender.cc when HERALD_WITH_KAFKA is on.
//
//   sender = "kafka://host:port[,host:port...]"   the bootstrap brokers
//   topic  = "events.{category}"   required; a template ({type}, {stream},
//                                  {category}; core/template.h)
//   key    = "{stream}"            the record key, a template (default
//                                  "{stream}"); murmur2 picks the partition
//                                  exactly as Java producers do
//   mode   = "binary" | "structured"   CloudEvents content mode (binary:
//                                  ce_ headers + content-type)
//   timeout = "10s"                how long one event may wait for its
//                                  delivery report (message.timeout.ms)
//   kafka  = { "security.protocol" = "SASL_SSL", ... }   any other
//                                  librdkafka property, checked by
//                                  rd_kafka_conf_set at config load
//
// herald fixes what the acknowledgement rests on: enable.idempotence=true,
// acks=all, partitioner=murmur2_random. A kafka-table entry that would
// change them, or that would hide or bypass delivery reports
// (delivery.report.only.error, transactional.id, bootstrap.servers, the
// message timeout, more than 5 requests in flight), is refused with the
// key and line.
//
// Pure functions (librdkafka's configuration object only, no connection);
// safe from any thread.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/template.h"
#include "herald/sender.h"

namespace herald::detail {

// The scheme's keys, for unknown-key messages.
inline constexpr std::string_view kKafkaKeys =
    "topic, key, mode, timeout, kafka";

// What a Kafka route publishes where, parsed from its options.
struct KafkaOptions {
  // The bootstrap brokers of the URL, "host:port,host:port".
  std::string brokers;
  // Key `topic` (required) and `key` (default "{stream}").
  NameTemplate topic;
  NameTemplate key;
  // Key `mode` (default binary).
  CloudEventsMode mode = CloudEventsMode::kBinary;
  // Key `timeout` (default 10 s): librdkafka's message.timeout.ms.
  std::chrono::milliseconds timeout{10000};
  // Key `kafka`: librdkafka properties in file order (values as strings),
  // each accepted by rd_kafka_conf_set and none of the refused ones.
  std::vector<std::pair<std::string, std::string>> properties;
  // CloudEvents source (the route's `source`, default "herald").
  std::string source = "herald";
};

// The properties herald sets on every producer, after the user's (so they
// cannot be overridden; the refused keys say so at config load).
inline constexpr std::pair<std::string_view, std::string_view>
    kKafkaFixedProperties[] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"partitioner", "murmur2_random"},
};

// Whether a librdkafka property's value is a secret (never shown).
bool IsSecretKafkaProperty(std::string_view name);

// "kafka://host[:port][,host[:port]...]" (a later host may repeat the
// "kafka://"). The port defaults to 9092. Credentials belong in the kafka
// table (sasl.username, sasl.password), never in the URL.
Status ValidateKafkaUrl(std::string_view url);

// Parses route.sender and route.options; errors name the key and line.
Status ParseKafkaOptions(const RouteConfig& route, KafkaOptions* out);

// SenderScheme::validate_options of kafka.
Status ValidateKafkaRoute(RouteConfig* route);

// The URL's bootstrap brokers, "host:port,host:port".
Status ParseKafkaUrl(std::string_view url, std::string* brokers);

// A consumer source's `kafka` table: librdkafka properties checked as a
// route's are, refusing what the source fixes (group.id,
// enable.auto.commit, enable.auto.offset.store, auto.offset.reset,
// bootstrap.servers). Errors name the key and line.
Status ParseKafkaConsumerProperties(
    const RouteOptions& o, const OptionValue& table,
    std::vector<std::pair<std::string, std::string>>* out);

}  // namespace herald::detail
