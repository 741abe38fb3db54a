// The NATS JetStream consumer source (nats://, keys `stream`, `durable`,
// `subject`, `credentials`, `connect_timeout`): herald/consumer_source.h.
#pragma once

#include <memory>
#include <string_view>

#include "herald/consumer_source.h"

namespace herald::detail {

inline constexpr std::string_view kNatsSourceKeys =
    "stream, durable, subject, credentials, connect_timeout";

// The SourceScheme of nats: URLs as the sender's (ValidateNatsUrl); keys
// `stream` required, `durable` (default: the consumer's name) with no '.',
// '*', '>' or whitespace; the source connects in Start.
SourceScheme NatsSourceScheme();

}  // namespace herald::detail
