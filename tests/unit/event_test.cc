// Event model: ids, times, validation and the JSON form.
#include "herald/event.h"

#include <gtest/gtest.h>

#include <set>

#include "herald/json.h"

namespace herald {
namespace {

TEST(Uuid, V7IsWellFormedUniqueAndTimeOrdered) {
  std::set<std::string> seen;
  std::string prev_ms;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewUuidV7();
    ASSERT_TRUE(IsUuid(id)) << id;
    EXPECT_EQ(id[14], '7');
    EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos) << id;
    EXPECT_TRUE(seen.insert(id).second);
    std::string ms = id.substr(0, 13);  // 48-bit millisecond prefix
    EXPECT_GE(ms, prev_ms);
    prev_ms = ms;
  }
}

TEST(Uuid, Recognition) {
  EXPECT_TRUE(IsUuid("01890a5d-ac96-774b-bcce-b302099a8057"));
  EXPECT_TRUE(IsUuid("01890A5D-AC96-774B-BCCE-B302099A8057"));
  EXPECT_FALSE(IsUuid("01890a5d-ac96-774b-bcce-b302099a805"));
  EXPECT_FALSE(IsUuid("01890a5dXac96-774b-bcce-b302099a8057"));
  EXPECT_FALSE(IsUuid("g1890a5d-ac96-774b-bcce-b302099a8057"));
}

TEST(Time, Rfc3339RoundTripWithMicroseconds) {
  int64_t t = 1795340000123456;
  std::string s = FormatRfc3339(t);
  EXPECT_EQ(s, "2026-11-22T09:33:20.123456Z");
  std::string line = "at ";
  AppendRfc3339(t, &line);
  EXPECT_EQ(line, "at 2026-11-22T09:33:20.123456Z");
  EXPECT_EQ(*ParseRfc3339(s), t);
  EXPECT_EQ(*ParseRfc3339("2026-11-22T10:33:20.123456+01:00"), t);
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_FALSE(ParseRfc3339("2026-13-01T00:00:00Z").ok());
  EXPECT_FALSE(ParseRfc3339("yesterday").ok());
  int64_t now = NowMicros();
  EXPECT_GT(now, t - int64_t(1e15));
}

TEST(Event, ValidationNamesTheField) {
  Event e;
  e.stream = "s";
  e.type = "t";
  e.payload = "{}";
  EXPECT_TRUE(ValidateEvent(e).ok());
  auto bad = e;
  bad.type = "a\tb";
  EXPECT_NE(ValidateEvent(bad).message().find("type"), std::string::npos);
  bad = e;
  bad.content_type = "application/vnd.x+json; charset=utf-8";
  bad.payload = "<xml/>";
  EXPECT_TRUE(ValidateEvent(bad).IsInvalidArgument());
  bad.content_type = "application/xml";
  EXPECT_TRUE(ValidateEvent(bad).ok()) << "only JSON content types are parsed";
}

TEST(Event, JsonFormIsOneLineAndParses) {
  Event e;
  e.id = NewUuidV7();
  e.position = 7;
  e.stream = "order-\"1\"";
  e.stream_version = 2;
  e.type = "order.placed";
  e.payload = "{\n  \"a\": 1\n}";
  e.metadata = R"({"correlation_id":"c"})";
  e.occurred_at_us = 1795340000123456;
  std::string json = EventToJson(e);
  EXPECT_EQ(json.find('\n'), std::string::npos);
  auto j = Json::Parse(json);
  ASSERT_TRUE(j.ok()) << json;
  EXPECT_EQ(j->Find("stream")->as_string(), e.stream);
  EXPECT_EQ(j->Find("payload")->Find("a")->raw(), "1");
  EXPECT_EQ(j->Find("occurred_at")->as_string(), "2026-11-22T09:33:20.123456Z");

  e.content_type = "text/plain";
  e.payload = "line1\nline2";
  j = Json::Parse(EventToJson(e));
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->Find("payload")->as_string(), "line1\nline2");

  e.content_type = "application/octet-stream";
  e.payload = std::string("\x00\xff\x10", 3);
  j = Json::Parse(EventToJson(e));
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->Find("payload_base64")->as_string(), "AP8Q");
}

}  // namespace
}  // namespace herald

namespace herald {
namespace {

TEST(Time, FormatAgreesWithParseAcrossCalendarEdges) {
  // Leap days, year ends, the epoch and before it, far future.
  for (const char* t :
       {"1970-01-01T00:00:00.000000Z", "1969-12-31T23:59:59.999999Z",
        "2000-02-29T12:00:00.000001Z", "2024-12-31T23:59:59.500000Z",
        "2100-03-01T00:00:00.000000Z", "1900-01-01T00:00:00.000000Z",
        "9999-12-31T23:59:59.999999Z"}) {
    auto us = ParseRfc3339(t);
    ASSERT_TRUE(us.ok()) << t;
    EXPECT_EQ(FormatRfc3339(*us), t);
  }
  for (int64_t us = -86400000000LL * 800; us < 86400000000LL * 20000;
       us += 86400000000LL * 37 + 3600000001LL) {
    EXPECT_EQ(*ParseRfc3339(FormatRfc3339(us)), us);
  }
}

}  // namespace
}  // namespace herald
