// The NATS JetStream consumer source (nats://, keys `stream`, `durable`,
// `subject`, `credentials`, `connect_timeout`): herald/consumer_source.h.
#pragma once

#include <memory>
#include <string_view>

#include "herald/consumer_source.h"

namespace herald::detail {

inline constexpr std::string_view kNatsSourceKeys =
    "stream, durable, subject, credentials, connect_timeout";

// SourceScheme::validate_options of nats: `stream` required; `durable`
// (default: the consumer's name) has no '.', '*', '>' or whitespace.
Status ValidateNatsSource(ConsumerSourceOptions* options);

// Makes the source of options that passed ValidateNatsSource; connects in
// Start.
Result<std::unique_ptr<ConsumerSource>> MakeNatsSource(
    const ConsumerSourceOptions& options);

}  // namespace herald::detail
