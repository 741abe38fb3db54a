// The CloudEvents 1.0 codec (see herald/cloudevents.h).
#include "herald/cloudevents.h"

#include <charconv>
#include <string>

#include "core/codec_util.h"
#include "herald/json.h"

namespace herald {

namespace {

// Calls fn(name, value) for each metadata key that names an extension
// attribute: the reduced name and the value as a string (a JSON string's
// text, any other value's JSON text on one line). Keys that reduce to
// nothing or to a name already used are skipped: ValidateEvent refuses
// them, so only events stored before that rule can hold them.
template <typename Fn>
void ForEachExtension(std::string_view metadata, Fn&& fn) {
  if (metadata.size() <= 2) return;  // "{}" or ""
  JsonCursor c(metadata);
  if (!c.BeginObject().ok()) return;
  std::string key;
  std::string value;
  std::vector<std::string> seen;
  while (true) {
    auto more = c.NextMember(&key);
    if (!more.ok() || !*more) return;
    value.clear();
    if (c.Peek() == '"') {
      if (!c.ReadString(&value).ok()) return;
    } else {
      std::string_view raw;
      if (!c.SkipValue(&raw).ok()) return;
      detail::AppendOneLine(raw, &value);
    }
    std::string name = detail::ExtensionNameOfKey(key);
    bool dup = name.empty();
    for (const auto& s : seen) dup = dup || s == name;
    if (dup) continue;
    fn(std::string_view(name), std::string_view(value));
    seen.push_back(std::move(name));
  }
}

// CloudEvents HTTP and NATS bindings: space, '"', '%' and anything outside
// printable ASCII are percent-encoded (the UTF-8 bytes), upper-case hex.
void AppendPercentEncoded(std::string_view v, std::string* out) {
  static const char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : v) {
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '%') {
      out->push_back('%');
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A header value as the HTTP and NATS bindings read it: a double-quoted
// string is unquoted first (backslash escapes), then one round of
// percent-decoding; the result must be UTF-8.
Status HeaderValueDecode(std::string_view name, std::string_view v,
                         std::string* out) {
  // Optional whitespace around a field value is not part of it (RFC 9110).
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) {
    v.remove_prefix(1);
  }
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) {
    v.remove_suffix(1);
  }
  std::string unquoted;
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
    for (size_t i = 1; i + 1 < v.size(); ++i) {
      if (v[i] == '\\' && i + 2 < v.size()) ++i;
      unquoted.push_back(v[i]);
    }
    v = unquoted;
  }
  out->clear();
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '%') {
      out->push_back(v[i]);
      continue;
    }
    int hi = i + 2 < v.size() ? HexDigit(v[i + 1]) : -1;
    int lo = hi >= 0 ? HexDigit(v[i + 2]) : -1;
    if (lo < 0) {
      return Status::InvalidArgument("header " + std::string(name) +
                                     " has a malformed percent-encoding");
    }
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  if (!IsValidUtf8(*out)) {
    return Status::InvalidArgument("header " + std::string(name) +
                                   " decodes to invalid UTF-8");
  }
  return Status::OK();
}

bool ParseInt64(std::string_view text, int64_t* out) {
  auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Collects attributes into a DecodedCloudEvent.
class Builder {
 public:
  Builder() { out_.event.content_type.clear(); }

  // A context attribute in its string form.
  Status Set(std::string_view name, std::string_view value) {
    Event& e = out_.event;
    if (name == "specversion") {
      specversion_ = value;
      has_specversion_ = true;
    } else if (name == "id") {
      e.id = value;
      has_id_ = true;
    } else if (name == "source") {
      out_.source = value;
      has_source_ = true;
    } else if (name == "type") {
      e.type = value;
      has_type_ = true;
    } else if (name == "subject") {
      e.stream = value;
    } else if (name == "time") {
      auto t = ParseRfc3339(value);
      if (!t.ok()) {
        return Status::InvalidArgument("CloudEvents attribute 'time': " +
                                       t.status().message());
      }
      e.occurred_at_us = *t;
    } else if (name == "datacontenttype") {
      e.content_type = value;
      has_content_type_ = true;
    } else if (name == "dataschema") {
      out_.dataschema = value;
    } else if (name == "position" || name == "streamversion") {
      int64_t v = 0;
      if (!ParseInt64(value, &v) || v < 0) {
        return Status::InvalidArgument("CloudEvents attribute '" +
                                       std::string(name) +
                                       "' is not a non-negative integer: '" +
                                       std::string(value.substr(0, 64)) + "'");
      }
      (name == "position" ? e.position : e.stream_version) = v;
    } else if (name == "data" || name == "database64" ||
               name == "data_base64") {
      // Not attributes: structured mode handles them; ignored in headers.
    } else {
      Extension(name);
      AppendJsonString(value, &metadata_);
    }
    return Status::OK();
  }

  // An extension whose value is JSON other than a string (structured mode).
  void SetRaw(std::string_view name, std::string_view json) {
    Extension(name);
    detail::AppendOneLine(json, &metadata_);
  }

  bool has_content_type() const { return has_content_type_; }
  Event& event() { return out_.event; }

  Result<DecodedCloudEvent> Finish() {
    if (!has_specversion_) {
      return Status::InvalidArgument(
          "not a CloudEvents message: no specversion");
    }
    if (specversion_ != "1.0") {
      return Status::InvalidArgument("CloudEvents specversion '" +
                                     specversion_.substr(0, 16) +
                                     "' is not 1.0");
    }
    if (!has_id_ || !has_source_ || !has_type_) {
      return Status::InvalidArgument(std::string("CloudEvents attribute '") +
                                     (!has_id_       ? "id"
                                      : !has_source_ ? "source"
                                                     : "type") +
                                     "' is required");
    }
    metadata_.push_back('}');
    out_.event.metadata = std::move(metadata_);
    return std::move(out_);
  }

 private:
  void Extension(std::string_view name) {
    if (metadata_.size() > 1) metadata_.push_back(',');
    AppendJsonString(detail::KeyOfExtensionName(name), &metadata_);
    metadata_.push_back(':');
  }

  DecodedCloudEvent out_;
  std::string specversion_;
  std::string metadata_ = "{";
  bool has_specversion_ = false, has_id_ = false, has_source_ = false,
       has_type_ = false, has_content_type_ = false;
};

struct Naming {
  std::string_view prefix;
  std::string_view content_type;  // header of the content type; "" = none
  bool percent = false;
};

Naming NamingOf(CloudEventBinding b) {
  switch (b) {
    case CloudEventBinding::kHttp:
      return {"ce-", "Content-Type", true};
    case CloudEventBinding::kKafka:
      return {"ce_", "content-type", false};
    case CloudEventBinding::kAmqp:
      return {"cloudEvents:", "content-type", false};
    case CloudEventBinding::kNats:
      return {"ce-", "", true};
  }
  return {"ce-", "Content-Type", true};
}

}  // namespace

MessageHeaders CloudEventAttributes(const Event& e, std::string_view source) {
  MessageHeaders out;
  out.reserve(10);
  out.emplace_back("specversion", "1.0");
  out.emplace_back("id", e.id);
  out.emplace_back("source", source);
  out.emplace_back("type", e.type);
  out.emplace_back("subject", e.stream);
  out.emplace_back("time", FormatRfc3339(e.occurred_at_us));
  out.emplace_back("datacontenttype", e.content_type);
  out.emplace_back("position", std::to_string(e.position));
  out.emplace_back("streamversion", std::to_string(e.stream_version));
  ForEachExtension(e.metadata,
                   [&](std::string_view name, std::string_view value) {
                     out.emplace_back(name, value);
                   });
  return out;
}

void EncodeCloudEventHeadersInto(const Event& e, std::string_view source,
                                 CloudEventBinding binding,
                                 MessageHeaders* out) {
  const Naming n = NamingOf(binding);
  size_t used = 0;
  // The next pair of *out, its strings cleared (their capacity kept).
  auto next = [&]() -> std::pair<std::string, std::string>& {
    if (used == out->size()) out->emplace_back();
    auto& slot = (*out)[used++];
    slot.first.clear();
    slot.second.clear();
    return slot;
  };
  auto put = [&](std::string_view name, auto&& append_value) {
    auto& [header, value] = next();
    header.append(n.prefix).append(name);
    append_value(&value);
  };
  auto text = [&](std::string_view v) {
    return [v, &n](std::string* value) {
      if (n.percent) {
        AppendPercentEncoded(v, value);
      } else {
        value->append(v);
      }
    };
  };
  auto number = [](int64_t v) {
    return [v](std::string* value) {
      char buf[24];
      auto r = std::to_chars(buf, buf + sizeof buf, v);
      value->append(buf, r.ptr);
    };
  };
  // The order of CloudEventAttributes, with the content type moved to its
  // own header where the binding has one. (Digits, '-', ':', '.' and 'Z'
  // need no percent-encoding.)
  put("specversion", text("1.0"));
  put("id", text(e.id));
  put("source", text(source));
  put("type", text(e.type));
  put("subject", text(e.stream));
  put("time",
      [&](std::string* value) { AppendRfc3339(e.occurred_at_us, value); });
  if (n.content_type.empty()) put("datacontenttype", text(e.content_type));
  put("position", number(e.position));
  put("streamversion", number(e.stream_version));
  ForEachExtension(e.metadata,
                   [&](std::string_view name, std::string_view value) {
                     put(name, text(value));
                   });
  if (!n.content_type.empty()) {
    auto& [header, value] = next();
    header.append(n.content_type);
    value.append(e.content_type);
  }
  out->resize(used);
}

MessageHeaders EncodeCloudEventHeaders(const Event& e, std::string_view source,
                                       CloudEventBinding binding) {
  MessageHeaders out;
  out.reserve(12);
  EncodeCloudEventHeadersInto(e, source, binding, &out);
  return out;
}

MessageHeaders CloudEventHeaders(const Event& e, std::string_view source) {
  return EncodeCloudEventHeaders(e, source, CloudEventBinding::kHttp);
}

Result<DecodedCloudEvent> DecodeCloudEventHeaders(const MessageHeaders& headers,
                                                  std::string_view body,
                                                  CloudEventBinding binding) {
  Naming n = NamingOf(binding);
  Builder b;
  std::string fallback_content_type;
  std::string value;
  for (const auto& [raw_name, raw_value] : headers) {
    std::string name = Lower(raw_name);
    std::string_view attr;
    if (binding == CloudEventBinding::kAmqp) {
      if (name.starts_with("cloudevents:") ||
          name.starts_with("cloudevents_")) {
        attr = std::string_view(name).substr(12);
      }
    } else if (name.starts_with(Lower(n.prefix))) {
      attr = std::string_view(name).substr(3);
    }
    if (attr.empty()) {
      if (name == "content-type") fallback_content_type = raw_value;
      continue;
    }
    if (n.percent) {
      HERALD_RETURN_IF_ERROR(HeaderValueDecode(raw_name, raw_value, &value));
    } else {
      value = raw_value;
    }
    HERALD_RETURN_IF_ERROR(b.Set(attr, value));
  }
  if (!b.has_content_type()) {
    b.event().content_type = fallback_content_type.empty()
                                 ? "application/octet-stream"
                                 : fallback_content_type;
  }
  b.event().payload = body;
  return b.Finish();
}

void AppendCloudEventJson(const Event& e, std::string_view source,
                          std::string* out) {
  out->append("{\"specversion\":\"1.0\",\"id\":");
  AppendJsonString(e.id, out);
  out->append(",\"source\":");
  AppendJsonString(source, out);
  out->append(",\"type\":");
  AppendJsonString(e.type, out);
  out->append(",\"subject\":");
  AppendJsonString(e.stream, out);
  out->append(",\"time\":\"");
  AppendRfc3339(e.occurred_at_us, out);
  out->append("\",\"datacontenttype\":");
  AppendJsonString(e.content_type, out);
  out->append(",\"position\":");
  out->append(std::to_string(e.position));
  out->append(",\"streamversion\":");
  out->append(std::to_string(e.stream_version));
  ForEachExtension(e.metadata,
                   [&](std::string_view name, std::string_view value) {
                     out->push_back(',');
                     AppendJsonString(name, out);
                     out->push_back(':');
                     AppendJsonString(value, out);
                   });
  if (IsJsonContentType(e.content_type) && !e.payload.empty()) {
    out->append(",\"data\":");
    detail::AppendOneLine(e.payload, out);
  } else {
    out->append(",\"data_base64\":\"");
    AppendBase64(e.payload, out);
    out->push_back('"');
  }
  out->push_back('}');
}

Result<DecodedCloudEvent> DecodeCloudEventJson(std::string_view json) {
  JsonCursor c(json);
  if (c.Peek() != '{') {
    return Status::InvalidArgument(
        "a structured CloudEvent must be a JSON object, not " +
        std::string(c.PeekKindName()));
  }
  HERALD_RETURN_IF_ERROR(c.BeginObject());
  Builder b;
  std::string key;
  std::string value;
  std::string_view data;
  bool has_data = false, has_base64 = false;
  std::string base64;
  while (true) {
    auto more = c.NextMember(&key);
    if (!more.ok()) return more.status();
    if (!*more) break;
    char first = c.Peek();
    if (key == "data") {
      HERALD_RETURN_IF_ERROR(c.SkipValue(&data));
      has_data = data != "null";
      continue;
    }
    if (first == 'n') {  // null: the attribute is not set
      HERALD_RETURN_IF_ERROR(c.SkipValue());
      continue;
    }
    if (key == "data_base64") {
      if (first != '"') {
        return Status::InvalidArgument("'data_base64' must be a string");
      }
      HERALD_RETURN_IF_ERROR(c.ReadString(&base64));
      has_base64 = true;
      continue;
    }
    if (first == '"') {
      HERALD_RETURN_IF_ERROR(c.ReadString(&value));
      HERALD_RETURN_IF_ERROR(b.Set(key, value));
      continue;
    }
    std::string_view raw;
    HERALD_RETURN_IF_ERROR(c.SkipValue(&raw));
    if (key == "position" || key == "streamversion") {
      HERALD_RETURN_IF_ERROR(b.Set(key, raw));
    } else if (detail::IsCloudEventAttributeName(key)) {
      return Status::InvalidArgument("CloudEvents attribute '" + key +
                                     "' must be a string");
    } else {
      b.SetRaw(key, raw);
    }
  }
  HERALD_RETURN_IF_ERROR(c.End());
  if (has_data && has_base64) {
    return Status::InvalidArgument(
        "'data' and 'data_base64' exclude each other");
  }
  Event& e = b.event();
  if (!b.has_content_type()) {
    e.content_type =
        has_base64 ? "application/octet-stream" : std::string(kJsonContentType);
  }
  if (has_base64) {
    Status s = DecodeBase64(base64, &e.payload);
    if (!s.ok())
      return Status::InvalidArgument("'data_base64': " + s.message());
  } else if (has_data) {
    if (!IsJsonContentType(e.content_type) && data.front() == '"') {
      JsonCursor text(data);
      HERALD_RETURN_IF_ERROR(text.ReadString(&e.payload));
    } else {
      e.payload = data;
    }
  }
  return b.Finish();
}

}  // namespace herald
