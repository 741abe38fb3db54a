// The SQS and SNS senders (sender = "sqs:QUEUE_URL" / "sns:TOPIC_ARN"):
// the Query protocol over libcurl, signed with SigV4 by libcurl
// (CURLOPT_AWS_SIGV4). Options: aws_scheme.h; messages: aws_query.h;
// credentials: aws_credentials.h.
#pragma once

#include <memory>

#include "herald/sender.h"

namespace herald::detail {

// Makes the sender of a route that passed ValidateAwsRoute. Credentials
// are looked up at every Send (a missing one is the route's error then,
// retried), so a sender is made without them.
Result<std::unique_ptr<Sender>> MakeAwsSender(const RouteConfig& route);

}  // namespace herald::detail
