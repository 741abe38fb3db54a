// The JSON form of an event: one encoder and one decoder, used by every
// place that writes or reads it (GET and POST /api/events, SSE, `herald
// read`, `herald pull`, PullConsumer).
//
//   {"id":"0190...","position":7,"stream":"order-42","stream_version":3,
//    "type":"order.paid","content_type":"application/json",
//    "payload":{...},"metadata":{...},"occurred_at":"2026-...Z"}
//
// The payload is written as JSON when the content type is JSON, as a JSON
// string when it is UTF-8 text, and as "payload_base64" (RFC 4648 base64 of
// the bytes) otherwise; every decoder accepts all three, so an event read
// from the API can be POSTed back unchanged. Neither side builds a DOM.
//
// Pure functions; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "herald/event.h"
#include "herald/status.h"

namespace herald {

// ---- encoder ----------------------------------------------------------------

// Appends the event as one JSON object on one line (line breaks between
// the tokens of a JSON payload or metadata become spaces, so the result
// suits JSON lines and Server-Sent Events).
void AppendEventJson(const EventView& event, std::string* out);
std::string EventToJson(const EventView& event);

// ---- decoder ----------------------------------------------------------------

// Who is reading.
enum class EventJsonMode {
  // A producer's event (POST /api/events): members other than the fields
  // above are refused; `position`, `stream_version` and `routes` (of GET
  // /api/events/{id}) are accepted and ignored (the store assigns them), stream
  // and type are required, the id
  // is lower-cased, and the result passes ValidateEvent.
  kAppend,
  // An event a server served (pull consumers): unknown members are
  // skipped (a newer server may add some), position and stream_version are
  // kept, nothing more is checked than the JSON shape.
  kRead,
};

// Decodes one event object. Payload: with a JSON content type the
// `payload` value's exact text (absent: "null"); otherwise `payload` must
// be a string (its decoded text) or `payload_base64` given (its bytes); not
// both. InvalidArgument names the member; `where` prefixes every message
// ("events[3]: ").
Status DecodeEventJson(std::string_view json, EventJsonMode mode, Event* event,
                       std::string_view where = {});

// Decodes the body of POST /api/events: one event object, or an array of
// 1..max_events of them (*is_array says which). Every event is decoded in
// kAppend mode, messages prefixed "events[i]: " in an array. One pass, no
// DOM; success implies the whole body is valid JSON. InvalidArgument for a
// bad body or event (the first problem met: a caller that must tell "not
// JSON at all" apart runs CheckJson on failure); ResourceExhausted when the
// array holds more than max_events. On failure *events is unspecified.
Status DecodeEventsJson(std::string_view body, size_t max_events,
                        std::vector<Event>* events, bool* is_array);

// One event of a page, decoded and as the server wrote it (a view into the
// page text).
struct EventJsonItem {
  Event event;
  std::string_view json;
};

// Decodes a page of GET /api/events, {"events":[...],"next_offset":N}, in
// kRead mode. Corruption when the page is not that shape.
Status DecodeEventPageJson(std::string_view page,
                           std::vector<EventJsonItem>* events,
                           int64_t* next_offset);

}  // namespace herald
