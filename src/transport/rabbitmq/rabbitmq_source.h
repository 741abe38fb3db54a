// The RabbitMQ consumer source (amqp:// and amqps://, key `queue`) on
// rabbitmq-c: herald/consumer_source.h.
#pragma once

#include <memory>

#include "herald/consumer_source.h"

namespace herald::detail {

// The SourceScheme of amqp / amqps: URLs as the sender's
// (ValidateAmqpUrl); keys as ParseRabbitSourceOptions reads them; the
// source connects in Start.
SourceScheme RabbitSourceScheme();

}  // namespace herald::detail
