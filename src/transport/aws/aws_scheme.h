// The sqs and sns schemes: the URL forms and route options of the AWS
// senders, registered by make_sender.cc when HERALD_WITH_AWS is on.
//
//   sender = "sqs:QUEUE_URL"   e.g. sqs:https://sqs.eu-west-1.amazonaws.com/
//                              123456789012/orders.fifo
//   sender = "sns:TOPIC_ARN"   e.g. sns:arn:aws:sns:eu-west-1:123456789012:
//                              orders
//
// Route keys of the schemes (besides every route's):
//   region            signing region; default: taken from the queue URL's
//                     host (sqs.REGION.amazonaws.com) or the ARN
//   endpoint          where requests are POSTed; default the queue URL's
//                     scheme://host/ (SQS) or https://sns.REGION.amazonaws.com/
//   max_batch         entries per request, 1-10 (default 10); 1 sends
//                     SendMessage / Publish, more SendMessageBatch /
//                     PublishBatch
//   message_group_id  template (default "{stream}"), FIFO only
//   deduplication_id  template (default "{id}"), FIFO only
//   raw               true: the body is the payload as stored; default
//                     false: the CloudEvents structured JSON
//   max_message_size  bytes, body plus attributes (default 262144 =
//                     256 KiB; at most 1048576)
//   timeout, connect_timeout, tls_verify, ca_file   as for webhooks
//
// Pure functions; safe from any thread.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "core/template.h"
#include "herald/sender.h"

namespace herald::detail {

inline constexpr std::string_view kAwsKeys =
    "region, endpoint, max_batch, message_group_id, deduplication_id, raw, "
    "max_message_size, timeout, connect_timeout, tls_verify, ca_file";

enum class AwsService { kSqs, kSns };

struct AwsOptions {
  AwsService service = AwsService::kSqs;
  // The queue URL (SQS) or topic ARN (SNS), as written after "sqs:"/"sns:".
  std::string target;
  // The queue or topic name ends in ".fifo".
  bool fifo = false;
  std::string region;
  // Where requests go: "http(s)://host[:port]/path".
  std::string endpoint;
  int max_batch = 10;
  NameTemplate message_group_id;
  NameTemplate deduplication_id;
  bool raw = false;
  size_t max_message_size = 256 * 1024;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{10000};
  bool tls_verify = true;
  std::string ca_file;
  std::string source = "herald";  // CloudEvents source (route key `source`)

  // "sqs" / "sns": the SigV4 service name.
  std::string_view service_name() const {
    return service == AwsService::kSqs ? "sqs" : "sns";
  }
};

// SenderScheme::validate_url of sqs: / sns:.
Status ValidateAwsUrl(std::string_view url);

// Parses route.sender and route.options (errors name the key and line).
Status ParseAwsOptions(const RouteConfig& route, AwsOptions* out);

// SenderScheme::validate_options of sqs / sns.
Status ValidateAwsRoute(RouteConfig* route);

// The region of an SQS host ("sqs.eu-west-1.amazonaws.com",
// "eu-west-1.queue.amazonaws.com", "queue.amazonaws.com" = us-east-1), or
// "" when the host names none (a local server).
std::string RegionOfSqsHost(std::string_view host);

}  // namespace herald::detail
