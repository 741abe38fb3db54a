// Event: the unit herald stores, orders and delivers.
//
// Plain value type; safe to copy and move between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "herald/status.h"

namespace herald {

inline constexpr std::string_view kJsonContentType = "application/json";
inline constexpr size_t kMaxTypeLength = 256;
inline constexpr size_t kMaxStreamLength = 256;
inline constexpr size_t kMaxIdLength = 36;

struct Event {
  // UUID text, lowercase, 36 characters. Empty on append: herald makes a
  // UUIDv7. The dedupe key everywhere downstream.
  std::string id;
  // Global, dense, gap-free, 1-based position; 0 until the store assigns it
  // (on PostgreSQL, the sequencer assigns it shortly after commit).
  int64_t position = 0;
  // The aggregate this event belongs to ("order-42"): the ordering key.
  std::string stream;
  // 1-based index of the event within its stream; assigned by the store.
  int64_t stream_version = 0;
  // What happened, past tense ("order.canceled").
  std::string type;
  // Of the payload. Default "application/json".
  std::string content_type = std::string(kJsonContentType);
  // Stored and sent verbatim.
  std::string payload;
  // JSON object text: correlation id, causation id, trace context... "{}" by
  // default.
  std::string metadata = "{}";
  // UTC microseconds since the Unix epoch; 0 on append means "now".
  int64_t occurred_at_us = 0;
};

// An event read in place: views into buffers its reader owns (a store's
// row, an Event), valid only as long as those are. Lets a page be rendered
// straight from the database without copying each field into an Event.
struct EventView {
  std::string_view id;
  int64_t position = 0;
  std::string_view stream;
  int64_t stream_version = 0;
  std::string_view type;
  std::string_view content_type;
  std::string_view payload;
  std::string_view metadata;
  int64_t occurred_at_us = 0;

  EventView() = default;
  EventView(const Event& e)  // NOLINT: implicit, so Events render alike
      : id(e.id),
        position(e.position),
        stream(e.stream),
        stream_version(e.stream_version),
        type(e.type),
        content_type(e.content_type),
        payload(e.payload),
        metadata(e.metadata),
        occurred_at_us(e.occurred_at_us) {}
  Event ToEvent() const;
};

// Checks what a producer supplies: id (empty or a UUID), stream and type
// (1..256 bytes, no control characters), metadata (a JSON object), and the
// payload (valid JSON when the content type is JSON). Returns
// InvalidArgument naming the field on failure.
Status ValidateEvent(const Event& event);

// Whether payloads of this content type must be JSON: "application/json"
// and "application/*+json", parameters allowed.
bool IsJsonContentType(std::string_view content_type);

// Returns a new UUIDv7 (time-ordered, random tail) as lowercase text.
std::string NewUuidV7();

// Whether `text` is a UUID in 8-4-4-4-12 hex form (any version).
bool IsUuid(std::string_view text);

// Current UTC time in microseconds since the Unix epoch.
int64_t NowMicros();

// RFC 3339 UTC with microseconds: "2026-11-22T09:30:00.123456Z".
std::string FormatRfc3339(int64_t micros);
void AppendRfc3339(int64_t micros, std::string* out);

// Parses RFC 3339 (with 'Z' or a numeric offset, fraction optional).
Result<int64_t> ParseRfc3339(std::string_view text);

// The event as one JSON object:
// {"id","position","stream","stream_version","type","content_type",
//  "payload","metadata","occurred_at"}. A JSON payload is embedded as JSON;
// any other payload as a JSON string. No DOM is built.
std::string EventToJson(const EventView& event);
void AppendEventJson(const EventView& event, std::string* out);

}  // namespace herald
