// The JSON reader, validator and string writer.
#include "herald/json.h"

#include <gtest/gtest.h>

namespace herald {
namespace {

TEST(Json, ParsesEveryKindAndKeepsRawText) {
  std::string text =
      R"( {"s":"a\"b\u00e9\ud83d\ude00","n":-12.5e1,"i":42,"t":true,)"
      R"("f":false,"z":null,"a":[1,{"x":[]}],"o":{}} )";
  auto j = Json::Parse(text);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  ASSERT_TRUE(j->is_object());
  EXPECT_EQ(j->Find("s")->as_string(), "a\"b\xC3\xA9\xF0\x9F\x98\x80");
  EXPECT_DOUBLE_EQ(j->Find("n")->as_double(), -125.0);
  int64_t i = 0;
  EXPECT_TRUE(j->Find("i")->TryInt64(&i));
  EXPECT_EQ(i, 42);
  EXPECT_FALSE(j->Find("n")->TryInt64(&i));
  EXPECT_TRUE(j->Find("t")->as_bool());
  EXPECT_TRUE(j->Find("f")->is_bool());
  EXPECT_TRUE(j->Find("z")->is_null());
  EXPECT_EQ(j->Find("a")->items().size(), 2u);
  EXPECT_EQ(j->Find("a")->raw(), R"([1,{"x":[]}])");
  EXPECT_EQ(j->Find("missing"), nullptr);
  EXPECT_EQ(j->members().front().first, "s") << "document order";
}

TEST(Json, RejectsMalformedTextWithAnOffset) {
  for (const char* bad : {"", "{", "[1,]", "{\"a\":}", "{'a':1}", "01", "1.",
                          "-", "tru", "\"\\x\"", "\"a\nb\"", "\"\\ud800\"",
                          "[1] 2", "{\"a\" 1}", "nan", "\"\xff\""}) {
    auto j = Json::Parse(bad);
    EXPECT_FALSE(j.ok()) << bad;
    EXPECT_FALSE(IsValidJson(bad)) << bad;
    if (!j.ok()) {
      EXPECT_NE(j.status().message().find("at offset"), std::string::npos);
    }
  }
}

TEST(Json, LimitsNesting) {
  std::string deep(200, '[');
  deep += std::string(200, ']');
  EXPECT_FALSE(IsValidJson(deep));
  std::string ok(100, '[');
  ok += std::string(100, ']');
  EXPECT_TRUE(IsValidJson(ok));
}

TEST(Json, ObjectCheck) {
  EXPECT_TRUE(IsJsonObject(" {\"a\":1}"));
  EXPECT_FALSE(IsJsonObject("[]"));
  EXPECT_FALSE(IsJsonObject("{"));
}

TEST(Json, StringWriterEscapesAndRoundTrips) {
  std::string nasty("q\"b\\s/\n\r\t\b\f\x01\x1f \xC3\xA9", 17);
  std::string quoted = JsonString(nasty);
  EXPECT_EQ(quoted.find('\n'), std::string::npos);
  auto back = Json::Parse(quoted);
  ASSERT_TRUE(back.ok()) << quoted;
  EXPECT_EQ(back->as_string(), nasty);
  EXPECT_EQ(JsonString("\xff"), "\"\xEF\xBF\xBD\"") << "invalid UTF-8";
}

TEST(Json, Utf8Validation) {
  EXPECT_TRUE(IsValidUtf8("plain \xC3\xA9 \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));  // surrogate
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));      // truncated
}

}  // namespace
}  // namespace herald
