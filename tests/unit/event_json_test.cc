// The event JSON codec (herald/event_json.h), the JSON cursor and base64 it
// rests on, and the stricter checks of names and times.
#include "herald/event_json.h"

#include <gtest/gtest.h>

#include "herald/json.h"
#include "herald/time.h"
#include "herald/uuid.h"

namespace herald {
namespace {

Event Sample() {
  Event e;
  e.id = NewUuidV7();
  e.position = 7;
  e.stream = "order-42";
  e.stream_version = 3;
  e.type = "order.paid";
  e.payload = R"({"total":12.5,"items":["a","b"]})";
  e.metadata =
      R"({"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","n":5})";
  e.occurred_at_us = 1795340000123456;
  return e;
}

void ExpectSame(const Event& a, const Event& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.position, b.position);
  EXPECT_EQ(a.stream, b.stream);
  EXPECT_EQ(a.stream_version, b.stream_version);
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.content_type, b.content_type);
  EXPECT_EQ(a.payload, b.payload);
  EXPECT_EQ(a.metadata, b.metadata);
  EXPECT_EQ(a.occurred_at_us, b.occurred_at_us);
}

// Encodes, then decodes in both modes; both must give the event back (the
// append mode drops position and stream_version, which the store assigns).
void ExpectRoundTrip(const Event& e) {
  std::string json = EventToJson(e);
  EXPECT_TRUE(IsValidJson(json)) << json;
  EXPECT_EQ(json.find('\n'), std::string::npos);
  Event read;
  ASSERT_TRUE(DecodeEventJson(json, EventJsonMode::kRead, &read).ok()) << json;
  ExpectSame(read, e);
  Event posted;
  Status s = DecodeEventJson(json, EventJsonMode::kAppend, &posted);
  ASSERT_TRUE(s.ok()) << s.message() << " in " << json;
  Event expected = e;
  expected.position = 0;
  expected.stream_version = 0;
  ExpectSame(posted, expected);
}

TEST(EventJson, JsonPayloadRoundTrips) { ExpectRoundTrip(Sample()); }

TEST(EventJson, TextPayloadRoundTrips) {
  Event e = Sample();
  e.content_type = "text/plain; charset=utf-8";
  e.payload = "line 1\nline \"2\"\t\xC3\xA9\xE2\x82\xAC";
  ExpectRoundTrip(e);
  EXPECT_NE(EventToJson(e).find("\"payload\":\"line 1\\n"), std::string::npos);
}

TEST(EventJson, NonUtf8PayloadGoesAsBase64AndRoundTrips) {
  Event e = Sample();
  e.content_type = "text/plain";
  e.payload = "caf\xE9 latin-1";  // not UTF-8
  std::string json = EventToJson(e);
  EXPECT_NE(json.find("\"payload_base64\":\"Y2Fm6SBsYXRpbi0x\""),
            std::string::npos)
      << json;
  EXPECT_EQ(json.find("\"payload\":"), std::string::npos);
  ExpectRoundTrip(e);
}

TEST(EventJson, EveryByteValueRoundTrips) {
  Event e = Sample();
  e.content_type = "application/octet-stream";
  e.payload.clear();
  for (int i = 0; i < 256; ++i) e.payload.push_back(static_cast<char>(i));
  e.payload += std::string("\x00\x00", 2);
  ExpectRoundTrip(e);
}

TEST(EventJson, EmptyPayloads) {
  Event e = Sample();
  e.content_type = "text/plain";
  e.payload = "";
  ExpectRoundTrip(e);
  // An empty payload of a JSON type cannot be told from the JSON string ""
  // in the "payload" member: it goes as base64 and reads back empty.
  e.content_type = "application/json";
  Event read;
  ASSERT_TRUE(
      DecodeEventJson(EventToJson(e), EventJsonMode::kRead, &read).ok());
  EXPECT_EQ(read.payload, "");
}

TEST(EventJson, JsonPayloadKeepsItsTextExceptLineBreaks) {
  Event e = Sample();
  e.payload = "\"caf\\u00e9\"";  // a JSON string, escapes kept as written
  ExpectRoundTrip(e);
  e.payload = "{\n \"a\" : [1,\r\n2] }";
  Event read;
  ASSERT_TRUE(
      DecodeEventJson(EventToJson(e), EventJsonMode::kRead, &read).ok());
  EXPECT_EQ(read.payload, "{  \"a\" : [1,  2] }");
}

TEST(EventJson, AppendModeChecksWhatAProducerSends) {
  Event e;
  auto decode = [&](std::string_view json) {
    e = Event();
    return DecodeEventJson(json, EventJsonMode::kAppend, &e, "events[2]: ");
  };
  EXPECT_TRUE(decode(R"({"stream":"s","type":"t"})").ok());
  EXPECT_EQ(e.payload, "null");
  Status s = decode(R"({"stream":"s","type":"t","colour":1})");
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_EQ(s.message().rfind("events[2]: unknown field 'colour'", 0), 0u)
      << s.message();
  EXPECT_FALSE(decode(R"({"type":"t"})").ok());
  EXPECT_FALSE(decode(R"({"stream":"s","type":""})").ok());
  EXPECT_FALSE(decode(R"({"stream":"s","type":"t","id":"1234"})").ok());
  EXPECT_FALSE(decode(R"({"stream":"s","type":"t","metadata":[]})").ok());
  EXPECT_FALSE(
      decode(
          R"({"stream":"s","type":"t","occurred_at":"2023-02-30T00:00:00Z"})")
          .ok());
  EXPECT_FALSE(decode(R"({"stream":"s","type":"t","payload":{"a":1})"
                      R"(,"content_type":"text/plain"})")
                   .ok());
  s = decode(R"({"stream":"s","type":"t","content_type":"text/plain",)"
             R"("payload":"x","payload_base64":"eA=="})");
  EXPECT_NE(s.message().find("exclude"), std::string::npos) << s.message();
  s = decode(R"({"stream":"s","type":"t","content_type":"text/plain",)"
             R"("payload_base64":"not base64!"})");
  EXPECT_NE(s.message().find("payload_base64"), std::string::npos);
  // A payload_base64 of a JSON type must still hold JSON.
  EXPECT_FALSE(
      decode(R"({"stream":"s","type":"t","payload_base64":"eA=="})").ok());
  ASSERT_TRUE(
      decode(R"({"stream":"s","type":"t","payload_base64":"eyJhIjoxfQ=="})")
          .ok());
  EXPECT_EQ(e.payload, "{\"a\":1}");
  // Served fields are accepted and ignored; ids are lower-cased.
  ASSERT_TRUE(
      decode(R"({"id":"0190A5D0-AC96-774B-BCCE-B302099A8057",)"
             R"("position":9,"stream_version":4,"stream":"s","type":"t"})")
          .ok());
  EXPECT_EQ(e.id, "0190a5d0-ac96-774b-bcce-b302099a8057");
  EXPECT_EQ(e.position, 0);
  EXPECT_EQ(e.stream_version, 0);
  // Anything after the object, or broken JSON inside it, is refused.
  EXPECT_FALSE(decode(R"({"stream":"s","type":"t"} x)").ok());
  EXPECT_FALSE(decode(R"({"stream":"s","type":"t","payload":[1,})").ok());
  EXPECT_FALSE(decode(R"({"stream":"s" "type":"t"})").ok());
}

TEST(EventJson, ReadModeSkipsWhatItDoesNotKnow) {
  Event e;
  ASSERT_TRUE(DecodeEventJson(R"({"id":"x","position":5,"stream":"s",)"
                              R"("type":"t","future":{"a":[1]},"payload":1})",
                              EventJsonMode::kRead, &e)
                  .ok());
  EXPECT_EQ(e.position, 5);
  EXPECT_EQ(e.payload, "1");
}

TEST(EventJson, PostBodies) {
  std::vector<Event> events;
  bool array = true;
  ASSERT_TRUE(
      DecodeEventsJson(R"({"stream":"s","type":"t"})", 10, &events, &array)
          .ok());
  EXPECT_FALSE(array);
  ASSERT_EQ(events.size(), 1u);
  ASSERT_TRUE(DecodeEventsJson(
                  R"([{"stream":"a","type":"t"}, {"stream":"b","type":"t"}])",
                  10, &events, &array)
                  .ok());
  EXPECT_TRUE(array);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].stream, "b");
  Status s = DecodeEventsJson("[]", 10, &events, &array);
  EXPECT_EQ(s.message(), "the array holds no events");
  s = DecodeEventsJson(R"([{"stream":"a","type":"t"},{"stream":"a"}])", 10,
                       &events, &array);
  EXPECT_EQ(s.message(), "events[1]: 'type' is required");
  s = DecodeEventsJson(
      R"([{"stream":"a","type":"t"},{"stream":"a","type":"t"}])", 1, &events,
      &array);
  EXPECT_EQ(s.code(), Status::Code::kResourceExhausted);
  s = DecodeEventsJson("42", 10, &events, &array);
  EXPECT_EQ(s.message(), "must be a JSON object, not number");
  EXPECT_FALSE(
      DecodeEventsJson("{\"stream\":\"s\",", 10, &events, &array).ok());
}

TEST(EventJson, PagesOfTheApi) {
  Event a = Sample();
  Event b = Sample();
  b.content_type = "application/octet-stream";
  b.payload = std::string("\xff\x00\xfe", 3);
  b.position = 8;
  std::string page = "{\"events\":[" + EventToJson(a) + "," + EventToJson(b) +
                     "],\"next_offset\":9}";
  std::vector<EventJsonItem> items;
  int64_t next = 0;
  ASSERT_TRUE(DecodeEventPageJson(page, &items, &next).ok());
  EXPECT_EQ(next, 9);
  ASSERT_EQ(items.size(), 2u);
  ExpectSame(items[0].event, a);
  ExpectSame(items[1].event, b);
  EXPECT_EQ(items[1].json, EventToJson(b));
  EXPECT_TRUE(DecodeEventPageJson("{\"events\":[]}", &items, &next).code() ==
              Status::Code::kCorruption);
  EXPECT_TRUE(DecodeEventPageJson("[1]", &items, &next).code() ==
              Status::Code::kCorruption);
  EXPECT_TRUE(
      DecodeEventPageJson("{\"events\":[],\"next_offset\":1", &items, &next)
          .code() == Status::Code::kCorruption);
}

// The encoder takes a shorter path for plain rows (every name without a
// byte to escape, a JSON payload on one line, under 2 KiB): it must give
// the same bytes as the general one, whichever byte of a name or payload
// (the plain path tests them 8 at a time) needs care.
TEST(EventJson, PlainAndGeneralPathsWriteTheSameBytes) {
  auto expected = [](const Event& e) {
    auto one_line = [](std::string json) {
      for (char& c : json) {
        if (c == '\n' || c == '\r') c = ' ';
      }
      return json;
    };
    return "{\"id\":" + JsonString(e.id) +
           ",\"position\":" + std::to_string(e.position) +
           ",\"stream\":" + JsonString(e.stream) +
           ",\"stream_version\":" + std::to_string(e.stream_version) +
           ",\"type\":" + JsonString(e.type) +
           ",\"content_type\":" + JsonString(e.content_type) +
           ",\"payload\":" + one_line(e.payload) +
           ",\"metadata\":" + one_line(e.metadata.empty() ? "{}" : e.metadata) +
           ",\"occurred_at\":\"" + FormatRfc3339(e.occurred_at_us) + "\"}";
  };
  const Event sample = Sample();
  EXPECT_EQ(EventToJson(sample), expected(sample));
  for (const char* odd : {"\"", "\\", "\x01", "\x1f", "\xc3\xa9", "\n"}) {
    for (size_t len = 1; len <= 20; ++len) {
      for (size_t at = 0; at < len; ++at) {
        Event e = sample;
        e.stream = std::string(len, 'a');
        e.stream.replace(at, 1, odd);
        e.type = e.stream;
        EXPECT_EQ(EventToJson(e), expected(e)) << len << " " << at;
        Event p = sample;
        p.payload = "[" + std::string(len, ' ') + "1]";
        p.payload[1 + at] = odd[0] == '\n' ? '\n' : '\r';
        p.metadata = "{\"k\":\n" + std::string(len, ' ') + "1}";
        EXPECT_EQ(EventToJson(p), expected(p)) << len << " " << at;
      }
    }
  }
  Event big = sample;
  big.payload = "\"" + std::string(3000, 'x') + "\"";
  EXPECT_EQ(EventToJson(big), expected(big));
  Event bare = sample;
  bare.metadata.clear();
  EXPECT_EQ(EventToJson(bare), expected(bare));
}

TEST(Base64, Rfc4648Vectors) {
  const std::pair<const char*, const char*> kVectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"}};
  for (auto [plain, encoded] : kVectors) {
    std::string out;
    AppendBase64(plain, &out);
    EXPECT_EQ(out, encoded);
    std::string back;
    ASSERT_TRUE(DecodeBase64(encoded, &back).ok()) << encoded;
    EXPECT_EQ(back, plain);
  }
  std::string back;
  EXPECT_TRUE(DecodeBase64("Zm8", &back).ok()) << "padding may be left out";
  EXPECT_EQ(back, "fo");
  EXPECT_FALSE(DecodeBase64("Zm9v\n", &back).ok());
  EXPECT_FALSE(DecodeBase64("Z", &back).ok());
  EXPECT_FALSE(DecodeBase64("Zg=a", &back).ok());
  EXPECT_FALSE(DecodeBase64("Z-_v", &back).ok()) << "not the URL alphabet";
}

TEST(JsonCursor, WalksWithoutATreeAndNestsLikeParse) {
  JsonCursor c(R"( {"a": [1, {"b": "x\u00e9"}], "c": null} )");
  ASSERT_TRUE(c.BeginObject().ok());
  std::string key;
  ASSERT_TRUE(*c.NextMember(&key));
  EXPECT_EQ(key, "a");
  std::string_view raw;
  ASSERT_TRUE(c.SkipValue(&raw).ok());
  EXPECT_EQ(raw, R"([1, {"b": "x\u00e9"}])");
  ASSERT_TRUE(*c.NextMember(&key));
  EXPECT_EQ(c.PeekKindName(), "null");
  ASSERT_TRUE(c.SkipValue().ok());
  EXPECT_FALSE(*c.NextMember(&key));
  EXPECT_TRUE(c.End().ok());

  for (int depth : {127, 128, 129, 130}) {
    std::string deep = std::string(depth, '[') + std::string(depth, ']');
    JsonCursor d(deep);
    EXPECT_EQ(d.SkipValue().ok(), Json::Parse(deep).ok()) << depth;
  }
  EXPECT_TRUE(CheckJson("[1]").ok());
  EXPECT_EQ(CheckJson("[1,]").message().rfind("invalid JSON: ", 0), 0u);
}

// ---- time and names (issue 13, item 8) -------------------------------------

TEST(Time, ImpossibleDatesAndOffsetsAreRefusedNotShifted) {
  for (const char* bad :
       {"2023-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2023-04-31T00:00:00Z",
        "2023-00-10T00:00:00Z", "2023-01-00T00:00:00Z", "2023-01-01T24:00:00Z",
        "2023-01-01T00:60:00Z", "2023-01-01T00:00:61Z",
        "2023-01-01T00:00:00+25:00", "2023-01-01T00:00:00+24:00",
        "2023-01-01T00:00:00-01:60", "2023-01-01T12:00:60Z",
        "2023-01-01T23:59:60+01:00"}) {
    EXPECT_TRUE(ParseRfc3339(bad).status().IsInvalidArgument()) << bad;
  }
  EXPECT_TRUE(ParseRfc3339("2024-02-29T00:00:00Z").ok());
  EXPECT_TRUE(ParseRfc3339("2000-02-29T00:00:00Z").ok());
  EXPECT_FALSE(ParseRfc3339("1900-02-29T00:00:00Z").ok());
  EXPECT_EQ(*ParseRfc3339("2023-01-01T00:00:00+23:59"),
            *ParseRfc3339("2022-12-31T00:01:00Z"));
  // A leap second at the end of a UTC day is the next day's first second.
  EXPECT_EQ(*ParseRfc3339("2016-12-31T23:59:60Z"),
            *ParseRfc3339("2017-01-01T00:00:00Z"));
  EXPECT_EQ(*ParseRfc3339("2017-01-01T00:59:60+01:00"),
            *ParseRfc3339("2017-01-01T00:00:00Z"));
}

TEST(Names, StreamAndTypeRefuseWhatIsNotPrintableUtf8) {
  Event e;
  e.stream = "s";
  e.type = "t";
  e.payload = "{}";
  ASSERT_TRUE(ValidateEvent(e).ok());
  for (const char* bad : {"a\xC2\x85"
                          "b",              // NEL, C1
                          "a\xC2\x9F",      // C1 end
                          "a\xE2\x80\xA8",  // U+2028
                          "a\xE2\x80\xA9",  // U+2029
                          "a\xFF",          // not UTF-8
                          "a\xC3",          // truncated
                          "\xC0\xAF",       // overlong
                          "a\x7F"}) {
    Event bad_type = e;
    bad_type.type = bad;
    Status s = ValidateEvent(bad_type);
    EXPECT_TRUE(s.IsInvalidArgument()) << bad;
    EXPECT_EQ(s.message().rfind("type ", 0), 0u) << s.message();
    Event bad_stream = e;
    bad_stream.stream = bad;
    s = ValidateEvent(bad_stream);
    EXPECT_TRUE(s.IsInvalidArgument()) << bad;
    EXPECT_EQ(s.message().rfind("stream ", 0), 0u) << s.message();
  }
  for (const char* good :
       {"commande-\xC3\xA9t\xC3\xA9", "\xE6\x97\xA5\xE6\x9C\xAC",
        "\xC2\xA0nbsp", "\xE2\x80\xA7", "emoji-\xF0\x9F\x98\x80"}) {
    Event ok = e;
    ok.stream = good;
    ok.type = good;
    EXPECT_TRUE(ValidateEvent(ok).ok()) << good;
  }
}

}  // namespace
}  // namespace herald
