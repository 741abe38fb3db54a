// Name templates of broker routes: a Kafka topic or key, a RabbitMQ exchange
// or routing key, a NATS subject. A template is literal text with
// placeholders taken from the event:
//
//   {type}      the event type           order.canceled
//   {stream}    the stream               order-42
//   {category}  the stream up to its     order
//               first '-' (all of it
//               when it has none)
//   {id}        the event id (only in    0190b7...
//               templates parsed by
//               ParseWithId: per-message
//               names such as an SQS
//               deduplication id)
//
// "{{" and "}}" stand for a literal brace. Parse checks a template once, at
// config load (an unknown placeholder or a lone brace is an error naming
// it); Expand then fills it per event without allocating more than the
// result. Shared by every broker transport; internal to herald.
//
// Thread safety: a parsed NameTemplate is immutable; Expand may be called
// from any number of threads at once.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "herald/event.h"
#include "herald/route.h"
#include "herald/status.h"

namespace herald::detail {

// The placeholders every template knows, for messages.
inline constexpr std::string_view kTemplatePlaceholders =
    "{type}, {stream}, {category}";

class NameTemplate {
 public:
  // The template of the literal text "" (expands to "").
  NameTemplate() = default;

  // Parses `text`. InvalidArgument says what is wrong, without a key or
  // line ("unknown placeholder {typ} (expected {type}, {stream},
  // {category})", "unclosed '{' at offset 3"): the caller wraps it with
  // RouteOptions::Error.
  static Result<NameTemplate> Parse(std::string_view text);
  // Parse, also accepting {id}.
  static Result<NameTemplate> ParseWithId(std::string_view text);

  // The text with every placeholder filled from `event`.
  std::string Expand(const Event& event) const;
  void ExpandTo(const Event& event, std::string* out) const;

  // True when the template has no placeholder (every event gets the same
  // name).
  bool is_literal() const;
  // Whether it uses {stream} or {category} / {type}.
  bool uses_stream() const;
  bool uses_type() const;
  const std::string& text() const { return text_; }

 private:
  static Result<NameTemplate> ParseImpl(std::string_view text, bool with_id);
  enum class Part { kLiteral, kType, kStream, kCategory, kId };
  struct Piece {
    Part part;
    std::string literal;  // kLiteral only
  };
  std::string text_;
  std::vector<Piece> pieces_;
};

// The category of a stream: up to its first '-' ("order-42" -> "order";
// "order" -> "order").
std::string_view CategoryOfStream(std::string_view stream);

// The route option `key` as a template (not empty), its errors with the
// key and config line; `with_id` also accepts {id}.
Status ParseTemplateOption(const RouteOptions& o, std::string_view key,
                           const OptionValue& v, NameTemplate* out,
                           bool with_id = false);

}  // namespace herald::detail
