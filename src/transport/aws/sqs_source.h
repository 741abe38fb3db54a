// The SQS consumer source (sqs:QUEUE_URL): herald/consumer_source.h.
#pragma once

#include <memory>
#include <string_view>

#include "herald/consumer_source.h"

namespace herald::detail {

inline constexpr std::string_view kSqsSourceKeys =
    "region, endpoint, visibility_timeout, wait_time, timeout, "
    "connect_timeout, tls_verify, ca_file";

// SourceScheme::validate_options of sqs: region and endpoint as for the
// SQS sender (default from the queue URL), visibility_timeout (default
// "30s", 1 s..12 h), wait_time (the long poll, default "20s", 0..20 s),
// timeout, connect_timeout, tls_verify, ca_file.
Status ValidateSqsSource(ConsumerSourceOptions* options);

// Makes the source of options that passed ValidateSqsSource; Start checks
// the queue and the credentials.
Result<std::unique_ptr<ConsumerSource>> MakeSqsSource(
    const ConsumerSourceOptions& options);

}  // namespace herald::detail
