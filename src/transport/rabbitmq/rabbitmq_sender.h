// The RabbitMQ sender (amqp:// and amqps://) on rabbitmq-c.
#pragma once

#include <memory>

#include "herald/sender.h"

namespace herald::detail {

// Makes the sender of a route that passed ValidateRabbitRoute. Connects
// lazily (the first Send), so a broker that is down at start is a
// retryable failure of the route, not an error here. InvalidArgument for
// bad options.
Result<std::unique_ptr<Sender>> MakeRabbitSender(const RouteConfig& route);

}  // namespace herald::detail
