// The RabbitMQ consumer source (amqp:// and amqps://, key `queue`) on
// rabbitmq-c: herald/consumer_source.h.
#pragma once

#include <memory>

#include "herald/consumer_source.h"

namespace herald::detail {

// Makes the source of options that passed ValidateRabbitSource; connects
// in Start.
Result<std::unique_ptr<ConsumerSource>> MakeRabbitSource(
    const ConsumerSourceOptions& options);

}  // namespace herald::detail
