// The consumer source for a herald server: GET /api/events pages from the
// consumer's own checkpoint (see http_source.cc), registered as the
// "http" and "https" source schemes by src/transport/make_source.cc.
#pragma once

#include <memory>
#include <string_view>

#include "herald/consumer_source.h"

namespace herald::detail {

// The source's keys of a [[consumer]] table.
inline constexpr std::string_view kHttpSourceKeys = "token, limit";

// Checks `token` (a string) and `limit` (1..10000).
Status ValidateHttpSourceOptions(ConsumerSourceOptions* options);

Result<std::unique_ptr<ConsumerSource>> MakeHttpSource(
    const ConsumerSourceOptions& options);

}  // namespace herald::detail
