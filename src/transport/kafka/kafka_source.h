// The Kafka consumer source (kafka://, keys topic, group, partitions,
// start, kafka) on librdkafka: herald/consumer_source.h.
#pragma once

#include <memory>
#include <string_view>

#include "herald/consumer_source.h"

namespace herald::detail {

inline constexpr std::string_view kKafkaSourceKeys =
    "topic, group, partitions, start, kafka";

// The SourceScheme of kafka: URLs as the sender's (ValidateKafkaUrl); keys
// `topic` required, `group` (default: the consumer's name), `partitions` an
// array of partition numbers (assigned, no group rebalancing), `start`
// "earliest" (default), "latest" or an RFC 3339 time, `kafka` a table of
// librdkafka properties; the source connects in Start.
SourceScheme KafkaSourceScheme();

}  // namespace herald::detail
