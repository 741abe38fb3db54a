// Fuzzes the JSON reader, validator and writer: they must agree, never
// crash, and a string written by AppendJsonString must read back as itself
// (after invalid UTF-8 is replaced).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "herald/event.h"
#include "herald/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = herald::Json::Parse(text);
  if (parsed.ok() != herald::IsValidJson(text)) std::abort();
  std::string quoted = herald::JsonString(text);
  auto back = herald::Json::Parse(quoted);
  if (!back.ok() || !back->is_string()) std::abort();
  if (herald::IsValidUtf8(text) && back->as_string() != text) std::abort();
  // Events built from the input validate or fail cleanly, and their JSON
  // form always parses.
  herald::Event e;
  e.stream = "s";
  e.type = "t";
  e.payload = std::string(text);
  e.content_type = parsed.ok() ? "application/json" : "text/plain";
  if (herald::ValidateEvent(e).ok()) {
    if (!herald::Json::Parse(herald::EventToJson(e)).ok()) std::abort();
  }
  (void)herald::ParseRfc3339(text);
  return 0;
}
