// The event JSON codec end to end (issue 11, item 3): what `herald serve`
// serves can be POSTed back unchanged (the idempotent 200, the stored bytes
// unchanged), and a payload that is not UTF-8 reaches `herald pull` and the
// library's PullConsumer intact, through payload_base64.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>

#include "herald/event_json.h"
#include "herald/pull_consumer.h"
#include "server/server_test_util.h"

namespace herald::testing {
namespace {

// Not UTF-8 (Latin-1 é), so served as payload_base64.
const std::string kLatin1 = "caf\xE9 latin-1";

int64_t Head(HttpClient& c, const std::string& base) {
  auto doc = Json::Parse(c.Get(base + "/health").body);
  if (!doc.ok()) return -1;
  const Json* store = doc->Find("store");
  const Json* head = store ? store->Find("head") : nullptr;
  int64_t h = -1;
  if (head) (void)head->TryInt64(&h);
  return h;
}

class CodecServerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    HERALD_SKIP_UNLESS_BACKEND(GetParam());
    server_ =
        std::make_unique<ServeProcess>(dir_, FreshStoreUrl(GetParam(), dir_));
    ASSERT_TRUE(server_->ready()) << server_->stderr_text();
    base_ = server_->base();
  }
  void TearDown() override {
    if (server_) {
      EXPECT_EQ(server_->Stop(), 0);
    }
  }

  // The page from offset 0, decoded; waits until `n` events are positioned
  // (PostgreSQL positions them just after commit).
  std::string Page(int64_t n, std::vector<EventJsonItem>* items) {
    EXPECT_TRUE(WaitFor([&] { return Head(c_, base_) == n; },
                        std::chrono::seconds(10)));
    page_ = c_.Get(base_ + "/api/events?offset=0&limit=100").body;
    int64_t next = 0;
    Status s = DecodeEventPageJson(page_, items, &next);
    EXPECT_TRUE(s.ok()) << s.message() << "\n" << page_;
    EXPECT_EQ(next, n + 1);
    return page_;
  }

  TempDir dir_;
  std::unique_ptr<ServeProcess> server_;
  std::string base_;
  std::string page_;
  HttpClient c_;
};

TEST_P(CodecServerTest, ServedEventsPostBackUnchangedWithTheIdempotent200) {
  const std::vector<std::string> bodies = {
      // JSON payload with metadata.
      R"({"stream":"s","type":"t.json","payload":{"a":[1,2,{"b":null}]},)"
      R"("metadata":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})",
      // UTF-8 text payload.
      R"({"stream":"s","type":"t.text","content_type":"text/plain",)"
      R"("payload":"line 1\nline 2 \u00e9"})",
      // Not UTF-8: only payload_base64 can carry it.
      R"({"stream":"s","type":"t.latin1","content_type":"text/plain",)"
      R"("payload_base64":"Y2Fm6SBsYXRpbi0x"})",
      // Binary: every byte value.
      [] {
        std::string all;
        for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
        std::string b64;
        AppendBase64(all, &b64);
        return R"({"stream":"s","type":"t.bin",)"
               R"("content_type":"application/octet-stream",)"
               R"("payload_base64":")" +
               b64 + "\"}";
      }()};
  for (const auto& body : bodies) {
    auto r = c_.Post(base_ + "/api/events", body);
    ASSERT_EQ(r.status, 201) << r.body << "\nfor " << body;
  }
  std::vector<EventJsonItem> items;
  std::string page = Page(4, &items);
  ASSERT_EQ(items.size(), 4u);
  EXPECT_EQ(items[2].event.payload, kLatin1);
  EXPECT_NE(items[2].json.find("\"payload_base64\":\"Y2Fm6SBsYXRpbi0x\""),
            std::string::npos)
      << items[2].json;
  EXPECT_EQ(items[3].event.payload.size(), 256u);
  EXPECT_EQ(items[1].event.payload, "line 1\nline 2 \xC3\xA9");

  for (const auto& item : items) {
    // From the page...
    auto again = c_.Post(base_ + "/api/events", std::string(item.json));
    EXPECT_EQ(again.status, 200) << again.body << "\nfor " << item.json;
    Event stored;
    ASSERT_TRUE(DecodeEventJson(again.body, EventJsonMode::kRead, &stored).ok())
        << again.body;
    EXPECT_EQ(stored.id, item.event.id);
    EXPECT_EQ(stored.payload, item.event.payload);
    // ...and from GET /api/events/{id}, routes and all.
    auto one = c_.Get(base_ + "/api/events/" + item.event.id);
    ASSERT_EQ(one.status, 200);
    EXPECT_NE(one.body.find("\"routes\":"), std::string::npos);
    again = c_.Post(base_ + "/api/events", one.body);
    EXPECT_EQ(again.status, 200) << again.body << "\nfor " << one.body;
  }
  // All four at once, as the array they were served in.
  std::string array = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) array += ",";
    array += items[i].json;
  }
  array += "]";
  auto r = c_.Post(base_ + "/api/events", array);
  EXPECT_EQ(r.status, 200) << r.body;
  // Nothing new, and the stored bytes are what they were.
  std::vector<EventJsonItem> after;
  EXPECT_EQ(Page(4, &after), page);
}

TEST_P(CodecServerTest, NonUtf8PayloadReachesPullConsumersIntact) {
  ASSERT_EQ(c_.Post(base_ + "/api/events",
                    R"({"stream":"s","type":"t","content_type":"text/plain",)"
                    R"("payload_base64":"Y2Fm6SBsYXRpbi0x"})")
                .status,
            201);
  ASSERT_TRUE(
      WaitFor([&] { return Head(c_, base_) == 1; }, std::chrono::seconds(10)));

  // The library's consumer.
  PullConsumerOptions o;
  o.url = base_;
  o.checkpoint_path = dir_.file("lib.offset");
  o.wait = std::chrono::milliseconds(0);
  PullConsumer consumer(o);
  std::vector<Event> got;
  Status s = consumer.Run([&](const std::vector<PulledEvent>& batch) {
    for (const auto& e : batch) got.push_back(e.event);
    consumer.Stop();
    return Status::OK();
  });
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, kLatin1);
  EXPECT_EQ(got[0].content_type, "text/plain");

  // `herald pull --out`: its line decodes to the same bytes.
  std::string out = dir_.file("pulled.jsonl");
  std::string cp = dir_.file("pull.offset");
  Child::Options co;
  co.stderr_path = dir_.file("pull.err");
  Child pull({HeraldBin(), "pull", "--from", base_, "--checkpoint", cp, "--out",
              out, "--wait", "1"},
             co);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto saved = ReadFile(cp);
        return !saved.empty() && std::stoll(saved) == 2 &&
               pull.Catches(SIGTERM);
      },
      std::chrono::seconds(20)))
      << ReadFile(dir_.file("pull.err"));
  pull.Signal(SIGTERM);
  EXPECT_EQ(pull.Wait(), 0);
  std::string line = ReadFile(out);
  ASSERT_FALSE(line.empty());
  ASSERT_EQ(line.back(), '\n');
  line.pop_back();
  Event e;
  ASSERT_TRUE(DecodeEventJson(line, EventJsonMode::kRead, &e).ok()) << line;
  EXPECT_EQ(e.payload, kLatin1);
}

// Issue 13, item 8: what HTTP refuses, every entry point refuses.
TEST_P(CodecServerTest, NamesTimesAndMetadataKeysAreCheckedOverHttp) {
  auto post = [&](const std::string& body) {
    return c_.Post(base_ + "/api/events", body);
  };
  for (const char* bad : {R"({"stream":"s","type":"a\u0085b"})",
                          R"({"stream":"a\u2028b","type":"t"})",
                          R"({"stream":"s","type":"a\u2029"})",
                          R"({"stream":"a\u009f","type":"t"})"}) {
    auto r = post(bad);
    EXPECT_EQ(r.status, 400) << bad << " -> " << r.body;
    EXPECT_EQ(r.ErrorCode(), "invalid_argument") << r.body;
  }
  for (const char* t : {"2023-02-30T00:00:00Z", "2023-01-01T00:00:00+25:00",
                        "2023-01-01T24:00:00Z", "2023-01-01T00:60:00Z"}) {
    auto r = post(std::string(R"({"stream":"s","type":"t","occurred_at":")") +
                  t + R"("})");
    EXPECT_EQ(r.status, 400) << t << " -> " << r.body;
    EXPECT_NE(r.body.find("occurred_at"), std::string::npos) << r.body;
  }
  auto r = post(
      R"({"stream":"s","type":"t","metadata":{"trace_id":"a","traceId":"b"}})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("'trace_id' and 'traceId'"), std::string::npos)
      << r.body;
  // Too deep for the nesting limit: not JSON herald reads.
  std::string deep = std::string(130, '[') + std::string(130, ']');
  r = post(R"({"stream":"s","type":"t","payload":)" + deep + "}");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.ErrorCode(), "invalid_json") << r.body;
  EXPECT_EQ(Head(c_, base_), 0) << "nothing was written";
}

TEST(CodecCliTest, AppendRefusesWhatHttpRefusesAndCreatesNothing) {
  TempDir dir;
  std::string db = dir.file("h.db");
  for (const std::vector<std::string>& flags :
       std::vector<std::vector<std::string>>{
           {"--stream", "s\xff", "--type", "t"},
           {"--stream", "s", "--type", "a\xc2\x85"},
           {"--stream", "a\xe2\x80\xa8", "--type", "t"},
           {"--stream", "s", "--type", "t", "--metadata",
            R"({"a_b":1,"AB":2})"}}) {
    std::vector<std::string> argv = {HeraldBin(), "append", "--db", db};
    for (std::string f : flags) {
      // "\xHH" in the table above stands for the raw byte.
      std::string raw;
      for (size_t i = 0; i < f.size(); ++i) {
        if (f.compare(i, 2, "\\x") == 0 && i + 3 < f.size()) {
          raw.push_back(
              static_cast<char>(std::stoi(f.substr(i + 2, 2), nullptr, 16)));
          i += 3;
        } else {
          raw.push_back(f[i]);
        }
      }
      argv.push_back(raw);
    }
    argv.push_back("{}");
    std::string out, err;
    EXPECT_EQ(RunCommand(argv, &out, &err), 2) << err;
    EXPECT_FALSE(err.empty());
  }
  EXPECT_FALSE(std::filesystem::exists(db)) << "bad input created the database";
}

INSTANTIATE_TEST_SUITE_P(Backends, CodecServerTest,
                         ::testing::ValuesIn(TestBackends()));

}  // namespace
}  // namespace herald::testing
