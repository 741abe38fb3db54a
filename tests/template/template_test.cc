// Name templates (core/template.h): placeholders, braces, errors.
#include "core/template.h"

#include <gtest/gtest.h>

namespace herald::detail {
namespace {

Event Ev(std::string stream, std::string type) {
  Event e;
  e.stream = std::move(stream);
  e.type = std::move(type);
  return e;
}

TEST(NameTemplate, FillsEveryPlaceholder) {
  auto t = NameTemplate::Parse("events.{category}.{stream}.{type}");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->Expand(Ev("order-42", "order.canceled")),
            "events.order.order-42.order.canceled");
  EXPECT_FALSE(t->is_literal());
  EXPECT_TRUE(t->uses_stream());
  EXPECT_TRUE(t->uses_type());
}

TEST(NameTemplate, CategoryIsTheStreamUpToItsFirstDash) {
  EXPECT_EQ(CategoryOfStream("order-42"), "order");
  EXPECT_EQ(CategoryOfStream("order-42-7"), "order");
  EXPECT_EQ(CategoryOfStream("order"), "order");
  EXPECT_EQ(CategoryOfStream("-x"), "");
  auto t = NameTemplate::Parse("{category}");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->Expand(Ev("cart", "t")), "cart");
  EXPECT_TRUE(t->uses_stream());
  EXPECT_FALSE(t->uses_type());
}

TEST(NameTemplate, LiteralTextAndDoubledBraces) {
  auto t = NameTemplate::Parse("a.{{b}}.c");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->Expand(Ev("s", "t")), "a.{b}.c");
  EXPECT_TRUE(t->is_literal());
  auto empty = NameTemplate::Parse("");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->Expand(Ev("s", "t")), "");
  EXPECT_EQ(t->text(), "a.{{b}}.c");
}

TEST(NameTemplate, ExpandToAppends) {
  auto t = NameTemplate::Parse("{type}");
  ASSERT_TRUE(t.ok());
  std::string out = "x.";
  t->ExpandTo(Ev("s", "t.done"), &out);
  EXPECT_EQ(out, "x.t.done");
}

TEST(NameTemplate, UnknownPlaceholderIsNamed) {
  auto t = NameTemplate::Parse("orders.{typ}");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(t.status().message().find("{typ}"), std::string::npos)
      << t.status().ToString();
  EXPECT_NE(t.status().message().find("{category}"), std::string::npos);
  EXPECT_FALSE(NameTemplate::Parse("{}").ok());
  EXPECT_FALSE(NameTemplate::Parse("{Stream}").ok());
}

TEST(NameTemplate, LoneBracesAreErrors) {
  auto open = NameTemplate::Parse("a.{stream");
  ASSERT_FALSE(open.ok());
  EXPECT_NE(open.status().message().find("unclosed '{' at offset 2"),
            std::string::npos)
      << open.status().ToString();
  auto close = NameTemplate::Parse("a}");
  ASSERT_FALSE(close.ok());
  EXPECT_NE(close.status().message().find("lone '}'"), std::string::npos);
}

}  // namespace
}  // namespace herald::detail
