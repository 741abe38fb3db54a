// Fuzzes the event JSON decoder and the CloudEvents decoders with outside
// input: they never crash, success on a POST body implies valid JSON, and
// whatever decodes and validates encodes and decodes back to itself.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "herald/cloudevents.h"
#include "herald/event_json.h"
#include "herald/json.h"

namespace {

void CheckRoundTrip(const herald::Event& e) {
  herald::Event back;
  if (!herald::DecodeEventJson(herald::EventToJson(e),
                               herald::EventJsonMode::kRead, &back)
           .ok()) {
    std::abort();
  }
  if (back.payload != e.payload &&
      e.payload.find_first_of("\r\n") == std::string::npos) {
    std::abort();
  }
  for (auto b :
       {herald::CloudEventBinding::kHttp, herald::CloudEventBinding::kKafka,
        herald::CloudEventBinding::kAmqp, herald::CloudEventBinding::kNats}) {
    auto d = herald::DecodeCloudEventHeaders(
        herald::EncodeCloudEventHeaders(e, "/fuzz", b), e.payload, b);
    if (!d.ok() || d->event.payload != e.payload || d->event.id != e.id ||
        d->event.type != e.type || d->event.stream != e.stream) {
      std::abort();
    }
  }
  std::string json;
  herald::AppendCloudEventJson(e, "/fuzz", &json);
  if (!herald::IsValidJson(json)) std::abort();
  if (!herald::DecodeCloudEventJson(json).ok()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<herald::Event> events;
  bool array = false;
  herald::Status s = herald::DecodeEventsJson(text, 100, &events, &array);
  if (s.ok()) {
    if (!herald::IsValidJson(text)) std::abort();
    for (auto& e : events) {
      if (e.id.empty()) e.id = "0190a5d0-ac96-774b-bcce-b302099a8057";
      CheckRoundTrip(e);
    }
  }
  std::vector<herald::EventJsonItem> items;
  int64_t next = 0;
  (void)herald::DecodeEventPageJson(text, &items, &next);
  (void)herald::DecodeCloudEventJson(text);
  // Headers from the input's lines, "name: value".
  herald::MessageHeaders headers;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(at, end - at);
    size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      headers.emplace_back(std::string(line.substr(0, colon)),
                           std::string(line.substr(colon + 1)));
    }
    at = end + 1;
  }
  for (auto b :
       {herald::CloudEventBinding::kHttp, herald::CloudEventBinding::kKafka,
        herald::CloudEventBinding::kAmqp, herald::CloudEventBinding::kNats}) {
    (void)herald::DecodeCloudEventHeaders(headers, text, b);
  }
  return 0;
}
