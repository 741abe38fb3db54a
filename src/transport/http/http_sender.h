// The HTTP webhook sender (libcurl): one POST per event in CloudEvents HTTP
// binary or structured mode.
#pragma once

#include <memory>

#include "herald/sender.h"

namespace herald::detail {

// Makes a sender POSTing to route.sender with route.sender_options.
Result<std::unique_ptr<Sender>> MakeHttpSender(const RouteConfig& route);

}  // namespace herald::detail
