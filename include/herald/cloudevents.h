// The CloudEvents 1.0 codec: how an event goes out to, and comes back from,
// every transport herald speaks. One set of neutral attributes, named once
// per protocol binding:
//
//   binding     attribute "id" as       content type as        values
//   kHttp       header ce-id            Content-Type           percent-encoded
//   kKafka      header ce_id            content-type           as is (UTF-8)
//   kAmqp       property cloudEvents:id content-type (message  as is
//               (decoders also accept    property)
//               cloudEvents_id)
//   kNats       header ce-id            ce-datacontenttype     percent-encoded
//
// plus structured mode, the JSON event format (application/cloudevents+json)
// with `data` for JSON payloads and `data_base64` for other payloads.
//
// Attributes of an event: specversion "1.0", id, source (the route's), type,
// subject (= stream), time (= occurred_at), datacontenttype (= content
// type), the extensions position and streamversion, and one extension per
// metadata key. A metadata key becomes an extension attribute lower-cased
// and reduced to [a-z0-9] (trace_parent and traceparent are both
// "traceparent", as the distributed-tracing extension names it); a name
// that is a context attribute above (or one preceded by x's) gets one more
// leading 'x' ("source" -> "xsource"), which decoders remove again. Values
// are strings: a metadata value that is not a JSON string goes as its JSON
// text. ValidateEvent refuses metadata whose keys reduce to nothing or to
// the same name. Decoders map every other attribute back into metadata.
// See docs/envelope.md.
//
// Pure functions; safe from any thread. No DOM is built.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "herald/event.h"
#include "herald/status.h"

namespace herald {

// Name/value pairs of a message: HTTP or NATS headers, Kafka headers, AMQP
// application properties (plus the "content-type" message property).
using MessageHeaders = std::vector<std::pair<std::string, std::string>>;

enum class CloudEventBinding { kHttp, kKafka, kAmqp, kNats };

// The event's context attributes in canonical string form, binding-neutral:
// specversion, id, source, type, subject, time, datacontenttype, position,
// streamversion, then the metadata extensions in document order.
MessageHeaders CloudEventAttributes(const Event& event,
                                    std::string_view source);

// Binary content mode: the headers (or properties) of `binding` for the
// event; the message body is event.payload, unchanged.
MessageHeaders EncodeCloudEventHeaders(const Event& event,
                                       std::string_view source,
                                       CloudEventBinding binding);
// The same into *out, replacing what it held and reusing its strings'
// memory: a sender encoding event after event into one MessageHeaders
// allocates nothing once it is warm.
void EncodeCloudEventHeadersInto(const Event& event, std::string_view source,
                                 CloudEventBinding binding,
                                 MessageHeaders* out);

// What a decoder found: the event (id, stream = subject, type, payload,
// content_type, metadata, occurred_at, and position / stream_version when
// present) plus the attributes an Event has no field for.
struct DecodedCloudEvent {
  Event event;
  std::string source;
  std::string dataschema;
};

// Binary content mode, the other way. Header names are matched
// case-insensitively; headers without the binding's prefix are ignored.
// HTTP and NATS values are unquoted and percent-decoded (invalid UTF-8 is
// refused). InvalidArgument when specversion is not "1.0", when id, source
// or type is missing, or when a value is malformed (time, position).
// Without a content type the payload is "application/octet-stream".
Result<DecodedCloudEvent> DecodeCloudEventHeaders(const MessageHeaders& headers,
                                                  std::string_view body,
                                                  CloudEventBinding binding);

// Structured content mode: the JSON event format of the event, one line:
// {"specversion":"1.0","id","source","type","subject","time",
//  "datacontenttype","position","streamversion", metadata extensions...,
//  "data" | "data_base64"}. A JSON payload is embedded as `data`, any other
// payload as `data_base64`.
void AppendCloudEventJson(const Event& event, std::string_view source,
                          std::string* out);

// The JSON event format, the other way (attributes set to null are unset;
// extension values that are not strings keep their JSON type in
// metadata). Without datacontenttype, `data` is application/json and
// `data_base64` application/octet-stream. InvalidArgument as above.
Result<DecodedCloudEvent> DecodeCloudEventJson(std::string_view json);

// The HTTP binary-mode headers, as the HTTP sender sends them: ce-specversion,
// ce-id, ce-source, ce-type, ce-subject, ce-time, ce-position,
// ce-streamversion, the metadata extensions (ce-NAME), Content-Type.
MessageHeaders CloudEventHeaders(const Event& event, std::string_view source);

}  // namespace herald
