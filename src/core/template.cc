// Name templates of broker routes (core/template.h).
#include "core/template.h"

namespace herald::detail {

std::string_view CategoryOfStream(std::string_view stream) {
  return stream.substr(0, stream.find('-'));
}

Result<NameTemplate> NameTemplate::Parse(std::string_view text) {
  return ParseImpl(text, false);
}

Result<NameTemplate> NameTemplate::ParseWithId(std::string_view text) {
  return ParseImpl(text, true);
}

Result<NameTemplate> NameTemplate::ParseImpl(std::string_view text,
                                             bool with_id) {
  NameTemplate t;
  t.text_ = std::string(text);
  std::string literal;
  auto flush = [&] {
    if (!literal.empty()) {
      t.pieces_.push_back({Part::kLiteral, std::move(literal)});
      literal.clear();
    }
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '}') {
      if (i + 1 < text.size() && text[i + 1] == '}') {
        literal += '}';
        ++i;
        continue;
      }
      return Status::InvalidArgument("lone '}' at offset " + std::to_string(i) +
                                     " (write '}}' for a brace)");
    }
    if (c != '{') {
      literal += c;
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '{') {
      literal += '{';
      ++i;
      continue;
    }
    size_t close = text.find('}', i + 1);
    if (close == std::string_view::npos) {
      return Status::InvalidArgument("unclosed '{' at offset " +
                                     std::to_string(i));
    }
    std::string_view name = text.substr(i + 1, close - i - 1);
    Part part;
    if (name == "type") {
      part = Part::kType;
    } else if (name == "stream") {
      part = Part::kStream;
    } else if (name == "category") {
      part = Part::kCategory;
    } else if (name == "id" && with_id) {
      part = Part::kId;
    } else {
      return Status::InvalidArgument(
          "unknown placeholder {" + std::string(name) + "} (expected " +
          std::string(kTemplatePlaceholders) + (with_id ? ", {id})" : ")"));
    }
    flush();
    t.pieces_.push_back({part, {}});
    i = close;
  }
  flush();
  return t;
}

void NameTemplate::ExpandTo(const Event& event, std::string* out) const {
  for (const Piece& p : pieces_) {
    switch (p.part) {
      case Part::kLiteral:
        out->append(p.literal);
        break;
      case Part::kType:
        out->append(event.type);
        break;
      case Part::kStream:
        out->append(event.stream);
        break;
      case Part::kCategory:
        out->append(CategoryOfStream(event.stream));
        break;
      case Part::kId:
        out->append(event.id);
        break;
    }
  }
}

std::string NameTemplate::Expand(const Event& event) const {
  std::string out;
  ExpandTo(event, &out);
  return out;
}

bool NameTemplate::is_literal() const {
  for (const Piece& p : pieces_) {
    if (p.part != Part::kLiteral) return false;
  }
  return true;
}

bool NameTemplate::uses_stream() const {
  for (const Piece& p : pieces_) {
    if (p.part == Part::kStream || p.part == Part::kCategory) return true;
  }
  return false;
}

bool NameTemplate::uses_type() const {
  for (const Piece& p : pieces_) {
    if (p.part == Part::kType) return true;
  }
  return false;
}

Status ParseTemplateOption(const RouteOptions& o, std::string_view key,
                           const OptionValue& v, NameTemplate* out,
                           bool with_id) {
  std::string text;
  HERALD_RETURN_IF_ERROR(o.GetString(key, v, &text));
  if (text.empty()) return o.Error(key, v.line, "must not be empty");
  auto t =
      with_id ? NameTemplate::ParseWithId(text) : NameTemplate::Parse(text);
  if (!t.ok()) return o.Error(key, v.line, t.status().message());
  *out = std::move(*t);
  return Status::OK();
}

}  // namespace herald::detail
