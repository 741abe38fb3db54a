// Small pieces the broker consumer sources share (herald/consumer_source.h):
// their SourceScheme, the line to name for a missing key, and the decoding
// of one message into a SourceDelivery. Header-only.
#pragma once

#include <algorithm>
#include <cctype>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "herald/cloudevents.h"
#include "herald/consumer_source.h"
#include "herald/route.h"

namespace herald::detail {

// The SourceScheme of a broker source: `validate_url` checks its URLs;
// `parse` reads the per-source keys into a Config (errors name the key and
// line), which validate_options does and forgets; make_source parses again
// (options that passed validation parse the same) and makes
// Source(options, config), which opens nothing until Start.
template <typename Source, typename Config>
SourceScheme BrokerSourceScheme(
    decltype(SourceScheme::validate_url) validate_url,
    Status (*parse)(const ConsumerSourceOptions& options, Config* out)) {
  SourceScheme s;
  s.validate_url = std::move(validate_url);
  s.validate_options = [parse](ConsumerSourceOptions* options) {
    Config config;
    return parse(*options, &config);
  };
  s.make_source = [parse](const ConsumerSourceOptions& options)
      -> Result<std::unique_ptr<ConsumerSource>> {
    Config config;
    HERALD_RETURN_IF_ERROR(parse(options, &config));
    return std::unique_ptr<ConsumerSource>(
        std::make_unique<Source>(options, std::move(config)));
  };
  return s;
}

// The config line to name when a required per-source key is missing: the
// [[consumer]] header's line, else (options built in code) the first line
// among its per-source keys, else 0.
inline int ConsumerTableLine(const ConsumerSourceOptions& so) {
  if (so.line > 0) return so.line;
  int line = 0;
  for (const auto& f : so.options.fields) {
    if (f.value.line > 0 && (line == 0 || f.value.line < line)) {
      line = f.value.line;
    }
  }
  return line;
}

inline bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) !=
        std::tolower(static_cast<unsigned char>(prefix[i]))) {
      return false;
    }
  }
  return true;
}

// Whether `name` is a CloudEvents attribute header of `binding`.
inline bool IsCloudEventHeader(std::string_view name,
                               CloudEventBinding binding) {
  switch (binding) {
    case CloudEventBinding::kAmqp:
      return StartsWithNoCase(name, "cloudEvents:") ||
             StartsWithNoCase(name, "cloudEvents_");
    case CloudEventBinding::kKafka:
      return StartsWithNoCase(name, "ce_");
    case CloudEventBinding::kHttp:
    case CloudEventBinding::kNats:
      return StartsWithNoCase(name, "ce-");
  }
  return false;
}

// One broker message as a delivery (everything but key and handle):
//   - structured mode when its content type is application/cloudevents+json
//     (or it has none and the body is a JSON object with "specversion");
//   - binary mode when a header carries the binding's attribute prefix
//     (`headers` includes the content type under the binding's name);
//   - else not a CloudEvent: decode_status says so and the delivery keeps
//     the broker's `message_id` as its id (the consumer parks it).
// A delivery that does not decode gets stream `fallback_stream`, id
// `message_id` and the body as payload, so it can be parked and shown.
inline void DecodeBrokerMessage(const MessageHeaders& headers,
                                std::string_view content_type,
                                std::string_view body,
                                CloudEventBinding binding,
                                const std::string& message_id,
                                const std::string& fallback_stream,
                                SourceDelivery* d) {
  bool binary = false;
  for (const auto& [name, value] : headers) {
    binary = binary || IsCloudEventHeader(name, binding);
  }
  size_t first = body.find_first_not_of(" \t\r\n");
  bool structured =
      StartsWithNoCase(content_type, "application/cloudevents+json") ||
      (!binary && content_type.empty() && first != std::string_view::npos &&
       body[first] == '{' &&
       body.find("\"specversion\"") != std::string_view::npos);
  Result<DecodedCloudEvent> decoded =
      Status::InvalidArgument("not a CloudEvent");
  if (structured) {
    decoded = DecodeCloudEventJson(body);
  } else if (binary) {
    decoded = DecodeCloudEventHeaders(headers, body, binding);
  } else {
    decoded = Status::InvalidArgument(
        "not a CloudEvent: no CloudEvents attributes and content type '" +
        std::string(content_type) + "'");
  }
  if (decoded.ok()) {
    d->event = std::move(decoded->event);
    d->decode_status = Status::OK();
    if (d->event.stream.empty()) d->event.stream = fallback_stream;
    return;
  }
  d->decode_status = Status::InvalidArgument("message " + message_id + ": " +
                                             decoded.status().message());
  d->event = Event();
  d->event.id = message_id;
  d->event.stream = fallback_stream;
  d->event.payload = std::string(body);
  d->event.content_type =
      content_type.empty() ? "application/octet-stream" : content_type;
}

}  // namespace herald::detail
