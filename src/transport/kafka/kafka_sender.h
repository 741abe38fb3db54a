// The Kafka sender (kafka://) on librdkafka. See kafka_scheme.h for the
// route keys and kafka_sender.cc for how events go out and what counts as
// acknowledged.
#pragma once

#include <memory>

#include "herald/sender.h"

namespace herald::detail {

// Makes the sender of a route that passed ValidateKafkaRoute. The producer
// connects in the background, so brokers that are down now are not an
// error here: Send reports them. InvalidArgument when librdkafka refuses
// the configuration as a whole (rd_kafka_new).
Result<std::unique_ptr<Sender>> MakeKafkaSender(const RouteConfig& route);

}  // namespace herald::detail
