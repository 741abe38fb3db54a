// Event: the unit herald stores, orders and delivers.
//
// Plain value type; safe to copy and move between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "herald/status.h"
#include "herald/time.h"
#include "herald/uuid.h"

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

// Checks what a producer supplies: id (empty or a UUID); stream and type
// (1..256 bytes of UTF-8 with no control characters: none of U+0000..U+001F,
// U+007F..U+009F, U+2028, U+2029); content_type; metadata (a JSON object
// whose keys each name a distinct CloudEvents extension attribute, see
// herald/cloudevents.h); and the payload (valid JSON when the content type
// is JSON). Returns InvalidArgument naming the field on failure. Every entry
// point (library append, CLI, HTTP) passes here.
Status ValidateEvent(const Event& event);

// Whether payloads of this content type must be JSON: "application/json"
// and "application/*+json", parameters allowed.
bool IsJsonContentType(std::string_view content_type);

}  // namespace herald

// The JSON form of an event (AppendEventJson, EventToJson, DecodeEventJson)
// lives in its own header; included here so that code which always found it
// in event.h still does.
#include "herald/event_json.h"  // IWYU pragma: export
