// Event validation and JSON encoding (see herald/event.h).
#include "herald/event.h"

#include <cstring>
#include <string>

#include "herald/json.h"

namespace herald {

namespace {

Status CheckName(std::string_view field, std::string_view value,
                 size_t max_len) {
  if (value.empty()) {
    return Status::InvalidArgument(std::string(field) + " must not be empty");
  }
  if (value.size() > max_len) {
    return Status::InvalidArgument(
        std::string(field) + " is " + std::to_string(value.size()) +
        " bytes long; the maximum is " + std::to_string(max_len));
  }
  for (char c : value) {
    auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7f) {
      return Status::InvalidArgument(std::string(field) +
                                     " contains a control character");
    }
  }
  return Status::OK();
}

void AppendBase64(std::string_view in, std::string* out) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i = 0;
  while (i + 3 <= in.size()) {
    uint32_t v = (static_cast<unsigned char>(in[i]) << 16) |
                 (static_cast<unsigned char>(in[i + 1]) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out->push_back(kAlphabet[v >> 18]);
    out->push_back(kAlphabet[(v >> 12) & 63]);
    out->push_back(kAlphabet[(v >> 6) & 63]);
    out->push_back(kAlphabet[v & 63]);
    i += 3;
  }
  if (i < in.size()) {
    uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out->push_back(kAlphabet[v >> 18]);
    out->push_back(kAlphabet[(v >> 12) & 63]);
    out->push_back(i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=');
    out->push_back('=');
  }
}

// Appends JSON text, turning raw line breaks (which valid JSON holds only
// as whitespace between tokens) into spaces, so the result stays on one line
// for JSON lines and Server-Sent Events.
void AppendOneLine(std::string_view json, std::string* out) {
  // Two memchr scans: find_first_of would call memchr once per byte.
  if (!std::memchr(json.data(), '\n', json.size()) &&
      !std::memchr(json.data(), '\r', json.size())) {
    out->append(json);
    return;
  }
  for (char c : json) out->push_back(c == '\n' || c == '\r' ? ' ' : c);
}

}  // namespace

bool IsJsonContentType(std::string_view ct) {
  // "application/json", "application/cloudevents+json", with parameters.
  size_t semi = ct.find(';');
  std::string_view base = ct.substr(0, semi);
  while (!base.empty() && base.back() == ' ') base.remove_suffix(1);
  return base == "application/json" ||
         (base.starts_with("application/") && base.ends_with("+json"));
}

Status ValidateEvent(const Event& e) {
  if (!e.id.empty() && !IsUuid(e.id)) {
    return Status::InvalidArgument("id '" + e.id +
                                   "' is not a UUID (8-4-4-4-12 hex digits)");
  }
  HERALD_RETURN_IF_ERROR(CheckName("type", e.type, kMaxTypeLength));
  HERALD_RETURN_IF_ERROR(CheckName("stream", e.stream, kMaxStreamLength));
  HERALD_RETURN_IF_ERROR(CheckName("content_type", e.content_type, 256));
  if (!IsJsonObject(e.metadata)) {
    return Status::InvalidArgument("metadata must be a JSON object");
  }
  if (IsJsonContentType(e.content_type) && !IsValidJson(e.payload)) {
    return Status::InvalidArgument(
        "payload is not valid JSON but content_type is " + e.content_type);
  }
  return Status::OK();
}

Event EventView::ToEvent() const {
  Event e;
  e.id = id;
  e.position = position;
  e.stream = stream;
  e.stream_version = stream_version;
  e.type = type;
  e.content_type = content_type;
  e.payload = payload;
  e.metadata = metadata;
  e.occurred_at_us = occurred_at_us;
  return e;
}

void AppendEventJson(const EventView& e, std::string* out) {
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
  if (IsJsonContentType(e.content_type) && !e.payload.empty()) {
    out->append(",\"payload\":");
    AppendOneLine(e.payload, out);
  } else if (IsValidUtf8(e.payload)) {
    out->append(",\"payload\":");
    AppendJsonString(e.payload, out);
  } else {
    out->append(",\"payload_base64\":\"");
    AppendBase64(e.payload, out);
    out->push_back('"');
  }
  out->append(",\"metadata\":");
  AppendOneLine(e.metadata.empty() ? "{}" : e.metadata, out);
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

}  // namespace herald
