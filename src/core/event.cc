// Event validation (see herald/event.h).
#include "herald/event.h"

#include <string>
#include <vector>

#include "core/codec_util.h"
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
  bool ascii = true;
  for (char c : value) {
    auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7f) {
      return Status::InvalidArgument(std::string(field) +
                                     " contains a control character");
    }
    if (b >= 0x80) ascii = false;
  }
  if (ascii) return Status::OK();
  if (!IsValidUtf8(value)) {
    return Status::InvalidArgument(std::string(field) + " is not valid UTF-8");
  }
  // C1 controls U+0080..U+009F are C2 80..C2 9F; U+2028 and U+2029 (line
  // and paragraph separators, which break JavaScript and log lines) are
  // E2 80 A8 and E2 80 A9.
  for (size_t i = 0; i + 1 < value.size(); ++i) {
    auto b = static_cast<unsigned char>(value[i]);
    auto n = static_cast<unsigned char>(value[i + 1]);
    if (b == 0xC2 && n >= 0x80 && n <= 0x9F) {
      return Status::InvalidArgument(std::string(field) +
                                     " contains a control character (C1)");
    }
    if (b == 0xE2 && n == 0x80 && i + 2 < value.size() &&
        (static_cast<unsigned char>(value[i + 2]) == 0xA8 ||
         static_cast<unsigned char>(value[i + 2]) == 0xA9)) {
      return Status::InvalidArgument(
          std::string(field) +
          " contains a line or paragraph separator (U+2028/U+2029)");
    }
  }
  return Status::OK();
}

// Metadata is a JSON object whose keys each name their own CloudEvents
// extension attribute (see docs/envelope.md).
Status CheckMetadata(std::string_view metadata) {
  if (metadata == "{}") return Status::OK();
  JsonCursor c(metadata);
  if (c.Peek() != '{' || !c.BeginObject().ok()) {
    return Status::InvalidArgument("metadata must be a JSON object");
  }
  std::vector<std::pair<std::string, std::string>> seen;  // name, key
  std::string key;
  while (true) {
    auto more = c.NextMember(&key);
    if (!more.ok()) {
      return Status::InvalidArgument("metadata must be a JSON object: " +
                                     more.status().message());
    }
    if (!*more) break;
    if (Status s = c.SkipValue(); !s.ok()) {
      return Status::InvalidArgument("metadata must be a JSON object: " +
                                     s.message());
    }
    std::string name = detail::ExtensionNameOfKey(key);
    if (name.empty()) {
      return Status::InvalidArgument(
          "metadata key '" + key.substr(0, 64) +
          "' has no letter or digit (a-z, 0-9) to name a CloudEvents "
          "extension attribute");
    }
    for (const auto& [n, k] : seen) {
      if (n == name) {
        return Status::InvalidArgument(
            "metadata keys '" + k.substr(0, 64) + "' and '" +
            key.substr(0, 64) + "' both become the CloudEvents attribute '" +
            name + "'; rename one");
      }
    }
    seen.emplace_back(std::move(name), key);
  }
  if (!c.End().ok()) {
    return Status::InvalidArgument("metadata must be a JSON object");
  }
  return Status::OK();
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
  HERALD_RETURN_IF_ERROR(CheckMetadata(e.metadata));
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

}  // namespace herald
