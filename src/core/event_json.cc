// The JSON form of an event (see herald/event_json.h).
#include "herald/event_json.h"

#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/codec_util.h"
#include "herald/json.h"

namespace herald {

namespace {

// Word-at-a-time byte tests (8 bytes per step; a byte loop costs several
// times more and the compiler does not vectorise it at -O2).
constexpr uint64_t kOnes = 0x0101010101010101ull;
constexpr uint64_t kHigh = 0x8080808080808080ull;
// Nonzero iff a byte of `v` is zero (exact as a test, not as a count).
constexpr uint64_t HasZero(uint64_t v) { return (v - kOnes) & ~v & kHigh; }
constexpr uint64_t HasByte(uint64_t v, unsigned char b) {
  return HasZero(v ^ (kOnes * b));
}
// Nonzero iff a byte of `v` is below `n` (n <= 128; exact as a test).
constexpr uint64_t HasLess(uint64_t v, unsigned char n) {
  return (v - kOnes * n) & ~v & kHigh;
}

// Whether no 8-byte word of `s` has a byte `bad` flags (`bad` returns a
// nonzero mask for such a word). Short strings are padded with a plain byte.
template <typename Bad>
bool NoneFlagged(std::string_view s, Bad bad) {
  const char* p = s.data();
  const size_t n = s.size();
  uint64_t w = kOnes * 'a';
  if (n < 8) {
    std::memcpy(&w, p, n);
    return bad(w) == 0;
  }
  uint64_t found = 0;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    std::memcpy(&w, p + i, 8);
    found |= bad(w);
  }
  std::memcpy(&w, p + n - 8, 8);  // the last 8 bytes, overlapping
  return (found | bad(w)) == 0;
}

// Whether AppendJsonString would copy `s` unchanged: no byte needs an
// escape or a UTF-8 check.
bool PlainJsonText(std::string_view s) {
  return NoneFlagged(s, [](uint64_t w) {
    return (w & kHigh) | HasLess(w, 0x20) | HasByte(w, '"') | HasByte(w, '\\');
  });
}

// Whether AppendOneLine would copy `s` unchanged (no line break).
bool OneLine(std::string_view s) {
  return NoneFlagged(
      s, [](uint64_t w) { return HasByte(w, '\n') | HasByte(w, '\r'); });
}

// The rows a page is made of: every name plain text, a JSON payload on one
// line. Rendered into a buffer on the stack, then appended at once: the
// same bytes as the general path below, for a fraction of its calls (a
// page renders a million of these a second).
constexpr size_t kFastEventBytes = 2048;

bool AppendPlainEventJson(const EventView& e, std::string* out) {
  const std::string_view metadata =
      e.metadata.empty() ? std::string_view("{}") : e.metadata;
  // Fixed text 122 bytes, two integers of at most 20, the time 27.
  const size_t bound = 122 + 40 + 27 + e.id.size() + e.stream.size() +
                       e.type.size() + e.content_type.size() +
                       e.payload.size() + metadata.size();
  if (bound > kFastEventBytes || e.payload.empty() || !PlainJsonText(e.id) ||
      !PlainJsonText(e.stream) || !PlainJsonText(e.type) ||
      !PlainJsonText(e.content_type) || !IsJsonContentType(e.content_type) ||
      !OneLine(e.payload) || !OneLine(metadata)) {
    return false;
  }
  char buf[kFastEventBytes];
  char* p = buf;
  auto put = [&p](std::string_view v) {
    std::memcpy(p, v.data(), v.size());
    p += v.size();
  };
  auto num = [&p](int64_t v) { p = std::to_chars(p, p + 20, v).ptr; };
  put("{\"id\":\"");
  put(e.id);
  put("\",\"position\":");
  num(e.position);
  put(",\"stream\":\"");
  put(e.stream);
  put("\",\"stream_version\":");
  num(e.stream_version);
  put(",\"type\":\"");
  put(e.type);
  put("\",\"content_type\":\"");
  put(e.content_type);
  put("\",\"payload\":");
  put(e.payload);
  put(",\"metadata\":");
  put(metadata);
  put(",\"occurred_at\":\"");
  out->append(buf, static_cast<size_t>(p - buf));
  AppendRfc3339(e.occurred_at_us, out);
  out->append("\"}");
  return true;
}

}  // namespace

void AppendEventJson(const EventView& e, std::string* out) {
  if (AppendPlainEventJson(e, out)) return;
  out->append("{\"id\":");
  AppendJsonString(e.id, out);
  out->append(",\"position\":");
  out->append(std::to_string(e.position));
  out->append(",\"stream\":");
  AppendJsonString(e.stream, out);
  out->append(",\"stream_version\":");
  out->append(std::to_string(e.stream_version));
  out->append(",\"type\":");
  AppendJsonString(e.type, out);
  out->append(",\"content_type\":");
  AppendJsonString(e.content_type, out);
  bool json = IsJsonContentType(e.content_type);
  if (json && !e.payload.empty()) {
    out->append(",\"payload\":");
    detail::AppendOneLine(e.payload, out);
  } else if (!json && IsValidUtf8(e.payload)) {
    out->append(",\"payload\":");
    AppendJsonString(e.payload, out);
  } else {
    // Bytes that are not text (or an empty "JSON" payload, which only
    // base64 can tell apart from the JSON string "").
    out->append(",\"payload_base64\":\"");
    AppendBase64(e.payload, out);
    out->push_back('"');
  }
  out->append(",\"metadata\":");
  detail::AppendOneLine(e.metadata.empty() ? "{}" : e.metadata, out);
  out->append(",\"occurred_at\":\"");
  AppendRfc3339(e.occurred_at_us, out);
  out->append("\"}");
}

std::string EventToJson(const EventView& e) {
  std::string out;
  out.reserve(256 + e.payload.size() + e.metadata.size());
  AppendEventJson(e, &out);
  return out;
}

namespace {

bool ParseInt64(std::string_view text, int64_t* out) {
  auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

// Decodes one event object at the cursor.
Status DecodeAt(JsonCursor& c, EventJsonMode mode, std::string_view where,
                Event* e) {
  const bool append = mode == EventJsonMode::kAppend;
  auto fail = [&](const std::string& what) {
    return Status::InvalidArgument(std::string(where) + what);
  };
  // Errors of the JSON reader keep their own wording, with the prefix.
  auto wrap = [&](const Status& s) {
    return s.ok() ? s
                  : Status::InvalidArgument(std::string(where) + s.message());
  };
  if (c.Peek() != '{') {
    return fail("must be a JSON object, not " + std::string(c.PeekKindName()));
  }
  HERALD_RETURN_IF_ERROR(wrap(c.BeginObject()));
  std::string key;
  std::string text;
  bool has_stream = false, has_type = false;
  bool has_payload = false, payload_is_string = false, has_base64 = false;
  std::string_view payload_raw;
  std::string base64;
  while (true) {
    auto more = c.NextMember(&key);
    if (!more.ok()) return wrap(more.status());
    if (!*more) break;
    auto want_string = [&](std::string* field) -> Status {
      if (c.Peek() != '"') {
        if (!append) {
          // Read mode: skip what this version does not understand.
          return wrap(c.SkipValue());
        }
        return fail("'" + key + "' must be a string");
      }
      return wrap(c.ReadString(field));
    };
    if (key == "id") {
      HERALD_RETURN_IF_ERROR(want_string(&e->id));
      if (append && !IsUuid(e->id)) {
        return fail("'id' must be a UUID, not '" + e->id.substr(0, 64) + "'");
      }
      for (char& ch : e->id) {
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      }
    } else if (key == "stream") {
      has_stream = true;
      HERALD_RETURN_IF_ERROR(want_string(&e->stream));
    } else if (key == "type") {
      has_type = true;
      HERALD_RETURN_IF_ERROR(want_string(&e->type));
    } else if (key == "content_type") {
      HERALD_RETURN_IF_ERROR(want_string(&e->content_type));
    } else if (key == "payload") {
      has_payload = true;
      HERALD_RETURN_IF_ERROR(wrap(c.SkipValue(&payload_raw)));
      payload_is_string = payload_raw.front() == '"';
    } else if (key == "payload_base64") {
      has_base64 = true;
      HERALD_RETURN_IF_ERROR(want_string(&base64));
    } else if (key == "metadata") {
      if (c.Peek() != '{') {
        if (!append) {
          HERALD_RETURN_IF_ERROR(wrap(c.SkipValue()));
          continue;
        }
        return fail("'metadata' must be a JSON object");
      }
      std::string_view raw;
      HERALD_RETURN_IF_ERROR(wrap(c.SkipValue(&raw)));
      e->metadata.assign(raw);
    } else if (key == "occurred_at") {
      HERALD_RETURN_IF_ERROR(want_string(&text));
      auto t = ParseRfc3339(text);
      if (t.ok()) {
        e->occurred_at_us = *t;
      } else if (append) {
        return fail("'occurred_at': " + t.status().message());
      }
    } else if (key == "position" || key == "stream_version") {
      // Assigned by the store: a producer's are accepted (so a served
      // event can be posted again as is) and ignored.
      std::string_view raw;
      HERALD_RETURN_IF_ERROR(wrap(c.SkipValue(&raw)));
      if (!append) {
        (void)ParseInt64(raw,
                         key == "position" ? &e->position : &e->stream_version);
      }
    } else if (key == "routes") {
      // Served with GET /api/events/{id} (delivery per route): accepted and
      // ignored, for the same reason.
      HERALD_RETURN_IF_ERROR(wrap(c.SkipValue()));
    } else if (append) {
      return fail("unknown field '" + key.substr(0, 64) +
                  "' (expected id, stream, type, content_type, payload, "
                  "payload_base64, metadata, occurred_at)");
    } else {
      HERALD_RETURN_IF_ERROR(wrap(c.SkipValue()));
    }
  }
  if (append) {
    if (!has_stream) return fail("'stream' is required");
    if (!has_type) return fail("'type' is required");
    if (e->type.empty()) return fail("'type' must not be empty");
    if (e->stream.empty()) return fail("'stream' must not be empty");
  }
  if (has_payload && has_base64) {
    return fail("'payload' and 'payload_base64' exclude each other");
  }
  if (has_base64) {
    Status s = DecodeBase64(base64, &e->payload);
    if (!s.ok()) return fail("'payload_base64': " + s.message());
  } else if (IsJsonContentType(e->content_type)) {
    if (!has_payload) {
      e->payload = append ? "null" : "";
    } else {
      e->payload.assign(payload_raw);
    }
  } else if (has_payload && payload_is_string) {
    // Text: the string's decoded value (its raw text was checked already).
    JsonCursor text_cursor(payload_raw);
    HERALD_RETURN_IF_ERROR(wrap(text_cursor.ReadString(&e->payload)));
  } else if (append) {
    return fail(
        "'payload' must be a string (or 'payload_base64' given) "
        "when content_type is '" +
        e->content_type + "'");
  } else {
    e->payload.assign(payload_raw);
  }
  if (append) {
    Status s = ValidateEvent(*e);
    if (!s.ok()) return fail(s.message());
  }
  return Status::OK();
}

}  // namespace

Status DecodeEventJson(std::string_view json, EventJsonMode mode, Event* e,
                       std::string_view where) {
  JsonCursor c(json);
  HERALD_RETURN_IF_ERROR(DecodeAt(c, mode, where, e));
  Status s = c.End();
  if (!s.ok()) return Status::InvalidArgument(std::string(where) + s.message());
  return Status::OK();
}

Status DecodeEventsJson(std::string_view body, size_t max_events,
                        std::vector<Event>* events, bool* is_array) {
  JsonCursor c(body);
  events->clear();
  *is_array = c.Peek() == '[';
  if (!*is_array) {
    events->resize(1);
    HERALD_RETURN_IF_ERROR(
        DecodeAt(c, EventJsonMode::kAppend, "", &(*events)[0]));
    return c.End();
  }
  HERALD_RETURN_IF_ERROR(c.BeginArray());
  std::string where;
  while (true) {
    auto more = c.NextItem();
    if (!more.ok()) return more.status();
    if (!*more) break;
    if (events->size() == max_events) {
      return Status::ResourceExhausted("at most " + std::to_string(max_events) +
                                       " events per request");
    }
    where = "events[" + std::to_string(events->size()) + "]: ";
    events->emplace_back();
    HERALD_RETURN_IF_ERROR(
        DecodeAt(c, EventJsonMode::kAppend, where, &events->back()));
  }
  if (events->empty()) {
    return Status::InvalidArgument("the array holds no events");
  }
  return c.End();
}

Status DecodeEventPageJson(std::string_view page,
                           std::vector<EventJsonItem>* events,
                           int64_t* next_offset) {
  auto corrupt = [](const Status& s) {
    return Status::Corruption("the server's page is not valid: " + s.message());
  };
  JsonCursor c(page);
  events->clear();
  if (c.Peek() != '{') {
    return Status::Corruption("the server's page is not a JSON object");
  }
  if (Status s = c.BeginObject(); !s.ok()) return corrupt(s);
  bool has_events = false, has_next = false;
  std::string key;
  while (true) {
    auto more = c.NextMember(&key);
    if (!more.ok()) return corrupt(more.status());
    if (!*more) break;
    if (key == "events" && c.Peek() == '[') {
      has_events = true;
      if (Status s = c.BeginArray(); !s.ok()) return corrupt(s);
      while (true) {
        auto item = c.NextItem();
        if (!item.ok()) return corrupt(item.status());
        if (!*item) break;
        size_t start = c.offset();
        events->emplace_back();
        Status s = DecodeAt(c, EventJsonMode::kRead, "", &events->back().event);
        if (!s.ok()) return corrupt(s);
        events->back().json = page.substr(start, c.offset() - start);
      }
    } else if (key == "next_offset") {
      std::string_view raw;
      if (Status s = c.SkipValue(&raw); !s.ok()) return corrupt(s);
      has_next = ParseInt64(raw, next_offset);
    } else if (Status s = c.SkipValue(); !s.ok()) {
      return corrupt(s);
    }
  }
  if (Status s = c.End(); !s.ok()) return corrupt(s);
  if (!has_events || !has_next) {
    return Status::Corruption("the server's page lacks events or next_offset");
  }
  return Status::OK();
}

}  // namespace herald
