// The SQS consumer source (sqs:QUEUE_URL): herald/consumer_source.h.
#pragma once

#include <memory>
#include <string_view>

#include "herald/consumer_source.h"

namespace herald::detail {

inline constexpr std::string_view kSqsSourceKeys =
    "region, endpoint, visibility_timeout, wait_time, timeout, "
    "connect_timeout, tls_verify, ca_file";

// The SourceScheme of sqs: URLs sqs:QUEUE_URL (the queue URL as the SQS
// sender takes it); keys region and endpoint as for the SQS sender
// (default from the queue URL), visibility_timeout (default "30s",
// 1 s..12 h), wait_time (the long poll, default "20s", 0..20 s), timeout,
// connect_timeout, tls_verify, ca_file; Start checks the queue and the
// credentials.
SourceScheme SqsSourceScheme();

}  // namespace herald::detail
