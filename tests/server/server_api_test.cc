// End-to-end tests of `herald serve`'s HTTP API against the built binary:
// appends, reads, ETags, idempotency, group commit, relays, tokens, and
// every bad input of issue 4 item 6.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "herald/store.h"
#include "server/server_test_util.h"

namespace herald::testing {
namespace {

std::string EventBody(const std::string& stream, const std::string& type,
                      const std::string& id = "") {
  std::string b = "{";
  if (!id.empty()) b += "\"id\":\"" + id + "\",";
  b += "\"stream\":\"" + stream + "\",\"type\":\"" + type +
       "\",\"payload\":{\"n\":1}}";
  return b;
}

int64_t Head(HttpClient& c, const std::string& base) {
  auto r = c.Get(base + "/health");
  auto doc = Json::Parse(r.body);
  if (!doc.ok()) return -1;
  const Json* store = doc->Find("store");
  const Json* head = store ? store->Find("head") : nullptr;
  int64_t h = -1;
  if (head) (void)head->TryInt64(&h);
  return h;
}

class ServerApiTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    HERALD_SKIP_UNLESS_BACKEND(GetParam());
    url_ = FreshStoreUrl(GetParam(), dir_);
    server_ = std::make_unique<ServeProcess>(dir_, url_);
    ASSERT_TRUE(server_->ready()) << server_->stderr_text();
    base_ = server_->base();
  }
  void TearDown() override {
    if (server_) {
      EXPECT_EQ(server_->Stop(), 0);
    }
  }

  TempDir dir_;
  std::string url_;
  std::unique_ptr<ServeProcess> server_;
  std::string base_;
  HttpClient c_;
};

TEST_P(ServerApiTest, PostThenReadBackInOrder) {
  auto r = c_.Post(base_ + "/api/events", EventBody("order-1", "order.placed"));
  ASSERT_EQ(r.status, 201) << r.body;
  auto ev = Json::Parse(r.body);
  ASSERT_TRUE(ev.ok());
  std::string id = ev->Find("id")->as_string();
  EXPECT_TRUE(IsUuid(id));
  EXPECT_EQ(r.Header("Location"), "/api/events/" + id);

  r = c_.Post(base_ + "/api/events",
              "[" + EventBody("order-1", "order.paid") + "," +
                  EventBody("order-2", "order.placed") + "]");
  ASSERT_EQ(r.status, 201) << r.body;
  auto arr = Json::Parse(r.body);
  ASSERT_TRUE(arr.ok() && arr->is_array());
  EXPECT_EQ(arr->items().size(), 2u);

  r = c_.Get(base_ + "/api/events?offset=0&limit=10");
  ASSERT_EQ(r.status, 200);
  auto page = Json::Parse(r.body);
  ASSERT_TRUE(page.ok()) << r.body;
  const auto& events = page->Find("events")->items();
  ASSERT_EQ(events.size(), 3u);
  int64_t next;
  ASSERT_TRUE(page->Find("next_offset")->TryInt64(&next));
  EXPECT_EQ(next, 4);
  EXPECT_EQ(events[0].Find("id")->as_string(), id);
  EXPECT_EQ(events[1].Find("type")->as_string(), "order.paid");
  // A page that is not full may still grow: no ETag, not cacheable.
  EXPECT_EQ(r.Header("ETag"), "");
  EXPECT_EQ(r.Header("Cache-Control"), "no-store");

  // Filters.
  r = c_.Get(base_ + "/api/events?offset=0&type=order.pl*");
  page = Json::Parse(r.body);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->Find("events")->items().size(), 2u);
  r = c_.Get(base_ + "/api/events?stream=order-1");
  page = Json::Parse(r.body);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->Find("events")->items().size(), 2u);

  // One stream in order; one event by id with its routes.
  r = c_.Get(base_ + "/api/streams/order-1?from_version=2");
  ASSERT_EQ(r.status, 200) << r.body;
  auto stream = Json::Parse(r.body);
  ASSERT_TRUE(stream.ok());
  ASSERT_EQ(stream->Find("events")->items().size(), 1u);
  EXPECT_EQ(stream->Find("events")->items()[0].Find("type")->as_string(),
            "order.paid");
  r = c_.Get(base_ + "/api/events/" + id);
  ASSERT_EQ(r.status, 200) << r.body;
  auto one = Json::Parse(r.body);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->Find("id")->as_string(), id);
  EXPECT_TRUE(one->Find("routes")->is_array());
  r = c_.Get(base_ + "/api/events/01890a5d-ac96-774b-bcce-b302099a8057");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.ErrorCode(), "not_found");
}

TEST_P(ServerApiTest, RepeatedIdAnswers200WithTheStoredEvent) {
  std::string id = "01890a5d-ac96-774b-bcce-b302099a8057";
  auto first = c_.Post(base_ + "/api/events", EventBody("s", "t.a", id));
  ASSERT_EQ(first.status, 201) << first.body;
  auto again = c_.Post(base_ + "/api/events", EventBody("s", "t.a", id));
  ASSERT_EQ(again.status, 200) << again.body;
  auto a = Json::Parse(first.body), b = Json::Parse(again.body);
  ASSERT_TRUE(a.ok() && b.ok());
  // (On PostgreSQL the first answer may precede the sequencer's position.)
  for (const char* field : {"id", "stream", "type", "occurred_at"}) {
    EXPECT_EQ(a->Find(field)->raw(), b->Find(field)->raw()) << field;
  }
  EXPECT_EQ(Head(c_, base_), 1);
}

TEST_P(ServerApiTest, ExpectedVersionConflictIs409AndWritesNothing) {
  auto r = c_.Post(base_ + "/api/events?expected_version=0",
                   EventBody("acct-1", "acct.opened"));
  ASSERT_EQ(r.status, 201) << r.body;
  r = c_.Post(base_ + "/api/events?expected_version=0",
              EventBody("acct-1", "acct.closed"));
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.ErrorCode(), "conflict");
  r = c_.Post(base_ + "/api/events?expected_version=1",
              EventBody("acct-1", "acct.closed"));
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(Head(c_, base_), 2);
}

TEST_P(ServerApiTest, FullPageHasStrongEtagAndIfNoneMatchGets304) {
  std::string batch = "[";
  for (int i = 0; i < 10; ++i) {
    if (i) batch += ",";
    batch += EventBody("s-" + std::to_string(i % 3), "t.x");
  }
  batch += "]";
  ASSERT_EQ(c_.Post(base_ + "/api/events", batch).status, 201);
  auto r = c_.Get(base_ + "/api/events?offset=1&limit=5");
  ASSERT_EQ(r.status, 200);
  std::string etag = r.Header("ETag");
  ASSERT_FALSE(etag.empty());
  EXPECT_EQ(etag[0], '"');  // strong, not W/
  EXPECT_NE(r.Header("Cache-Control").find("max-age=31536000"),
            std::string::npos);
  auto again = c_.Get(base_ + "/api/events?offset=1&limit=5");
  EXPECT_EQ(again.body, r.body);
  EXPECT_EQ(again.Header("ETag"), etag);
  auto cached = c_.Get(base_ + "/api/events?offset=1&limit=5",
                       {"If-None-Match: " + etag});
  EXPECT_EQ(cached.status, 304);
  EXPECT_TRUE(cached.body.empty());
  // Another page, another tag; a filtered full page is tagged too.
  auto other = c_.Get(base_ + "/api/events?offset=2&limit=5");
  EXPECT_NE(other.Header("ETag"), etag);
  auto filtered = c_.Get(base_ + "/api/events?offset=1&limit=2&stream=s-1");
  EXPECT_FALSE(filtered.Header("ETag").empty());
  EXPECT_NE(filtered.Header("ETag"), etag);
  auto f304 = c_.Get(base_ + "/api/events?offset=1&limit=2&stream=s-1",
                     {"If-None-Match: " + filtered.Header("ETag")});
  EXPECT_EQ(f304.status, 304);
}

TEST_P(ServerApiTest, ConcurrentSinglePostsAreGroupCommitted) {
  constexpr int kThreads = 64, kEach = 20;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      HttpClient c;
      for (int i = 0; i < kEach; ++i) {
        auto r = c.Post(base_ + "/api/events",
                        EventBody("g-" + std::to_string(t), "g.x"));
        if (r.status == 201) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kEach);
  auto m = c_.Get(base_ + "/metrics");
  double commits = MetricValue(m.body, "herald_append_commits_total");
  double appended = MetricValue(m.body, "herald_events_appended_total");
  EXPECT_EQ(appended, kThreads * kEach);
  // Many requests shared a commit.
  EXPECT_LT(commits, kThreads * kEach * 0.75) << m.body;
  EXPECT_EQ(Head(c_, base_), kThreads * kEach);
}

TEST_P(ServerApiTest, BadEventInAGroupFailsAlone) {
  // Concurrent posts where every fourth conflicts: the others still land.
  constexpr int kThreads = 32;
  std::atomic<int> created{0}, conflicts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      HttpClient c;
      std::string q = t % 4 == 0 ? "?expected_version=7" : "";
      auto r = c.Post(base_ + "/api/events" + q,
                      EventBody("b-" + std::to_string(t), "b.x"));
      if (r.status == 201) ++created;
      if (r.status == 409) ++conflicts;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(conflicts.load(), kThreads / 4);
  EXPECT_EQ(created.load(), kThreads - kThreads / 4);
  EXPECT_EQ(Head(c_, base_), kThreads - kThreads / 4);
}

TEST_P(ServerApiTest, HealthAndMetrics) {
  ASSERT_EQ(c_.Post(base_ + "/api/events", EventBody("m", "m.x")).status, 201);
  auto h = c_.Get(base_ + "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_NE(h.body.find("\"status\":\"ok\""), std::string::npos) << h.body;
  auto m = c_.Get(base_ + "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.Header("Content-Type").find("text/plain"), std::string::npos);
  EXPECT_EQ(MetricValue(m.body, "herald_head"), 1);
  EXPECT_EQ(MetricValue(m.body, "herald_events_appended_total"), 1);
  EXPECT_GE(MetricValue(m.body,
                        "herald_http_requests_total{route=\"/api/"
                        "events\",status=\"201\"}"),
            1);
  EXPECT_EQ(MetricValue(m.body, "herald_open_streams"), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, ServerApiTest,
                         ::testing::ValuesIn(TestBackends()));

// ---- bad input
// ----------------------------------------------------------------

class ServerBadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ServeProcess>(
        dir_, "sqlite:" + dir_.file("h.db"),
        "[server]\nmax_body_bytes = 2048\nheader_timeout = \"1s\"\n");
    ASSERT_TRUE(server_->ready()) << server_->stderr_text();
    base_ = server_->base();
    ASSERT_EQ(c_.Post(base_ + "/api/events", EventBody("s", "t")).status, 201);
  }
  void TearDown() override {
    // Nothing was written by any bad request, and the server still serves.
    EXPECT_EQ(Head(c_, base_), 1);
    EXPECT_EQ(server_->Stop(), 0);
  }
  // Asserts a 4xx with a JSON error of `code`.
  void ExpectError(const HttpResult& r, long status, const std::string& code) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.ErrorCode(), code) << r.body;
  }

  TempDir dir_;
  std::unique_ptr<ServeProcess> server_;
  std::string base_;
  HttpClient c_;
};

TEST_F(ServerBadInputTest, NonNumericOffsetOrLimit) {
  ExpectError(c_.Get(base_ + "/api/events?offset=abc"), 400,
              "invalid_argument");
  ExpectError(c_.Get(base_ + "/api/events?limit=ten"), 400, "invalid_argument");
  ExpectError(c_.Get(base_ + "/api/events?offset=1.5"), 400,
              "invalid_argument");
  ExpectError(c_.Get(base_ + "/api/events?offset="), 400, "invalid_argument");
}

TEST_F(ServerBadInputTest, NegativeOffsetOrLimit) {
  auto r = c_.Get(base_ + "/api/events?offset=-1");
  ExpectError(r, 400, "invalid_argument");
  EXPECT_NE(r.body.find("negative"), std::string::npos);
  ExpectError(c_.Get(base_ + "/api/events?limit=-5"), 400, "invalid_argument");
  ExpectError(c_.Get(base_ + "/api/events?limit=0"), 400, "invalid_argument");
}

TEST_F(ServerBadInputTest, HugeOffsetOrLimit) {
  ExpectError(c_.Get(base_ + "/api/events?offset=99999999999999999999999"), 400,
              "invalid_argument");
  ExpectError(c_.Get(base_ + "/api/events?limit=10001"), 400,
              "invalid_argument");
  ExpectError(c_.Get(base_ + "/api/events?limit=99999999999999999999"), 400,
              "invalid_argument");
  ExpectError(c_.Get(base_ + "/api/events?wait=100000"), 400,
              "invalid_argument");
}

TEST_F(ServerBadInputTest, UnknownQueryParameter) {
  auto r = c_.Get(base_ + "/api/events?offset=0&ofset=3");
  ExpectError(r, 400, "invalid_argument");
  EXPECT_NE(r.body.find("ofset"), std::string::npos);
  ExpectError(c_.Get(base_ + "/api/events?offset=0&offset=1"), 400,
              "invalid_argument");
  ExpectError(c_.Get(base_ + "/health?x=1"), 400, "invalid_argument");
}

TEST_F(ServerBadInputTest, MalformedJson) {
  ExpectError(c_.Post(base_ + "/api/events", "{\"stream\":\"s\","), 400,
              "invalid_json");
  ExpectError(c_.Post(base_ + "/api/events", "not json"), 400, "invalid_json");
  ExpectError(c_.Post(base_ + "/api/events", "[]"), 400, "invalid_argument");
  ExpectError(c_.Post(base_ + "/api/events", "42"), 400, "invalid_argument");
  ExpectError(c_.Post(base_ + "/api/events",
                      "{\"stream\":\"s\",\"type\":\"t\",\"colour\":1}"),
              400, "invalid_argument");
  // One bad event in an array: nothing of the array is written.
  ExpectError(c_.Post(base_ + "/api/events",
                      "[" + EventBody("s", "t") + ",{\"stream\":\"s\"}]"),
              400, "invalid_argument");
}

TEST_F(ServerBadInputTest, BodyOverTheLimitIs413) {
  std::string big = "{\"stream\":\"s\",\"type\":\"t\",\"payload\":\"" +
                    std::string(4096, 'x') + "\"}";
  ExpectError(c_.Post(base_ + "/api/events", big), 413, "payload_too_large");
}

TEST_F(ServerBadInputTest, WrongContentTypeIs415) {
  ExpectError(c_.Post(base_ + "/api/events", EventBody("s", "t"),
                      {"Content-Type: text/plain"}),
              415, "unsupported_media_type");
  ExpectError(c_.Post(base_ + "/api/events", EventBody("s", "t"),
                      {"Content-Type: application/x-www-form-urlencoded"}),
              415, "unsupported_media_type");
}

TEST_F(ServerBadInputTest, InvalidUuid) {
  ExpectError(c_.Get(base_ + "/api/events/not-a-uuid"), 400,
              "invalid_argument");
  auto r = c_.Post(base_ + "/api/events", EventBody("s", "t", "1234"));
  ExpectError(r, 400, "invalid_argument");
  EXPECT_NE(r.body.find("UUID"), std::string::npos);
}

TEST_F(ServerBadInputTest, EmptyType) {
  auto r = c_.Post(base_ + "/api/events", EventBody("s", ""));
  ExpectError(r, 400, "invalid_argument");
  EXPECT_NE(r.body.find("type"), std::string::npos);
  ExpectError(c_.Get(base_ + "/api/events?type="), 400, "invalid_argument");
  ExpectError(c_.Post(base_ + "/api/events", EventBody("", "t")), 400,
              "invalid_argument");
}

TEST_F(ServerBadInputTest, UnknownRouteNameIs404) {
  auto r = c_.Get(base_ + "/api/relays/nope/parked");
  ExpectError(r, 404, "not_found");
  EXPECT_NE(r.body.find("nope"), std::string::npos);
  ExpectError(
      c_.Request("POST", base_ + "/api/relays/nope/parked/"
                                 "01890a5d-ac96-774b-bcce-b302099a8057/retry"),
      404, "not_found");
  ExpectError(
      c_.Request("DELETE", base_ + "/api/relays/nope/parked/"
                                   "01890a5d-ac96-774b-bcce-b302099a8057"),
      404, "not_found");
  ExpectError(c_.Get(base_ + "/api/nothing"), 404, "not_found");
  ExpectError(c_.Request("PUT", base_ + "/api/events"), 405,
              "method_not_allowed");
}

TEST_F(ServerBadInputTest, SlowHeaderClientIsClosedWhileOthersAreServed) {
  int fd = ConnectLoopback(server_->port());
  ASSERT_GE(fd, 0);
  std::string req = "GET /api/events HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  auto start = std::chrono::steady_clock::now();
  bool closed = false;
  size_t sent = 0;
  // One byte every 100 ms, never finishing the headers.
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
    std::string c(1, sent < req.size() ? req[sent] : 'a');
    ++sent;
    if (!SendAll(fd, c)) {
      closed = true;
      break;
    }
    std::string got;
    if (!ReadSome(fd, &got, 100)) {
      closed = true;
      break;
    }
    // Meanwhile, others are served.
    if (sent % 5 == 0) {
      EXPECT_EQ(c_.Get(base_ + "/api/events?offset=0").status, 200);
    }
  }
  ::close(fd);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(closed);
  EXPECT_LT(took, std::chrono::seconds(3));  // header_timeout is 1 s
}

TEST_F(ServerBadInputTest, HeadersOverTheLimitAre431) {
  auto r = c_.Get(base_ + "/api/events", {"X-Big: " + std::string(20000, 'h')});
  EXPECT_EQ(r.status, 431) << r.body;
  EXPECT_EQ(r.ErrorCode(), "headers_too_large");
}

TEST_F(ServerBadInputTest, MalformedHttpIs400) {
  int fd = ConnectLoopback(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "BLAH\x01 / HTTP/9\r\n\r\n"));
  std::string got;
  while (ReadSome(fd, &got, 2000) &&
         got.find("\r\n\r\n") == std::string::npos) {
  }
  ::close(fd);
  EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
}

// ---- tokens
// ----------------------------------------------------------------------

class ServerTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ServeProcess>(
        dir_, "sqlite:" + dir_.file("h.db"),
        "[server]\n"
        "[[server.tokens]]\nname = \"reader\"\ntoken = \"read-secret-1\"\n"
        "scopes = [\"read\"]\n"
        "[[server.tokens]]\nname = \"writer\"\ntoken = \"append-secret-2\"\n"
        "scopes = [\"append\"]\n"
        "[[server.tokens]]\nname = \"ops\"\ntoken = \"admin-secret-3\"\n"
        "scopes = [\"admin\"]\n");
    ASSERT_TRUE(server_->ready()) << server_->stderr_text();
    base_ = server_->base();
  }
  TempDir dir_;
  std::unique_ptr<ServeProcess> server_;
  std::string base_;
  HttpClient c_;
};

TEST_F(ServerTokenTest, MissingOrWrongTokenIs401AndMissingScopeIs403) {
  auto r = c_.Get(base_ + "/api/events");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.ErrorCode(), "unauthorized");
  EXPECT_FALSE(r.Header("WWW-Authenticate").empty());
  r = c_.Get(base_ + "/api/events", {"Authorization: Bearer read-secret-X"});
  EXPECT_EQ(r.status, 401);
  r = c_.Get(base_ + "/api/events", {"Authorization: Basic cmVhZA=="});
  EXPECT_EQ(r.status, 401);
  r = c_.Get(base_ + "/api/events", {"Authorization: Bearer read-secret-1"});
  EXPECT_EQ(r.status, 200);
  // read cannot append; append cannot read; admin can do both.
  r = c_.Post(base_ + "/api/events", EventBody("s", "t"),
              {"Authorization: Bearer read-secret-1"});
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.ErrorCode(), "forbidden");
  r = c_.Post(base_ + "/api/events", EventBody("s", "t"),
              {"Authorization: Bearer append-secret-2"});
  EXPECT_EQ(r.status, 201);
  r = c_.Get(base_ + "/api/events", {"Authorization: Bearer append-secret-2"});
  EXPECT_EQ(r.status, 403);
  r = c_.Get(base_ + "/metrics", {"Authorization: Bearer admin-secret-3"});
  EXPECT_EQ(r.status, 200);
  // No response and no log line ever shows a token.
  for (const char* secret :
       {"read-secret-1", "append-secret-2", "admin-secret-3"}) {
    EXPECT_EQ(r.body.find(secret), std::string::npos);
    EXPECT_EQ(server_->stderr_text().find(secret), std::string::npos);
  }
  // /health stays open for load balancers.
  EXPECT_EQ(c_.Get(base_ + "/health").status, 200);
  EXPECT_EQ(server_->Stop(), 0);
  EXPECT_EQ(server_->stderr_text().find("secret"), std::string::npos);
}

TEST(ServerListenTest, RefusesNonLoopbackWithoutTokens) {
  TempDir dir;
  std::string out, err;
  int rc = RunCommand({HeraldBin(), "serve", "--db", dir.file("h.db"),
                       "--listen", "0.0.0.0:" + std::to_string(FreePort())},
                      &out, &err);
  EXPECT_EQ(rc, 2) << err;
  EXPECT_NE(err.find("token"), std::string::npos) << err;
  rc = RunCommand(
      {HeraldBin(), "serve", "--db", dir.file("h.db"), "--listen", "nonsense"},
      &out, &err);
  EXPECT_EQ(rc, 2) << err;
}

// [store] sqlite_checkpoint_pages reaches the server's store. One client
// POSTs single events, so each is a commit of its own. With 0 SQLite never
// checkpoints and the WAL keeps every commit's frames; with 1 each commit
// checkpoints and the next one starts the WAL over from its beginning.
TEST(ServerStoreConfigTest, SqliteCheckpointPagesComesFromTheConfigFile) {
  constexpr int kCommits = 200;
  auto wal_bytes = [&](const std::string& pages) -> uintmax_t {
    TempDir dir;
    ServeProcess server(dir, "sqlite:" + dir.file("h.db"),
                        "[store]\nsqlite_checkpoint_pages = " + pages + "\n");
    EXPECT_TRUE(server.ready()) << server.stderr_text();
    HttpClient c;
    for (int i = 0; i < kCommits; ++i) {
      EXPECT_EQ(c.Post(server.base() + "/api/events",
                       EventBody("cp-" + std::to_string(i), "t.x"))
                    .status,
                201);
    }
    // Measured before the server stops: its last connection to close
    // checkpoints and removes the WAL.
    std::error_code ec;
    uintmax_t size = std::filesystem::file_size(dir.file("h.db-wal"), ec);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(server.Stop(), 0);
    return size;
  };
  uintmax_t never = wal_bytes("0");
  uintmax_t every = wal_bytes("1");
  EXPECT_GT(never, static_cast<uintmax_t>(kCommits) * 4096);
  EXPECT_LT(every, never / 4);
}

}  // namespace
}  // namespace herald::testing

namespace herald::testing {
namespace {

// The relay endpoints against the relays `herald serve` runs from its config:
// a file route that delivers, and a webhook route to a closed port that
// parks after one attempt.
TEST(ServerRelayTest, RouteStatusParkedListRetryAndDrop) {
  TempDir dir;
  std::string sink = dir.file("sink.jsonl");
  int closed_port = FreePort();
  std::string config =
      "[[route]]\nname = \"files\"\nsender = \"file:" + sink +
      "\"\n"
      "[[route]]\nname = \"hook\"\nsender = \"http://127.0.0.1:" +
      std::to_string(closed_port) +
      "/events\"\non_failure = \"park\"\nmax_attempts = 1\n"
      "backoff_initial = \"10ms\"\nbackoff_max = \"20ms\"\n"
      "types = [\"order.*\"]\n";
  ServeProcess server(dir, "sqlite:" + dir.file("h.db"), config);
  ASSERT_TRUE(server.ready()) << server.stderr_text();
  std::string base = server.base();
  HttpClient c;
  auto r = c.Post(base + "/api/events", EventBody("order-7", "order.placed"));
  ASSERT_EQ(r.status, 201) << r.body;
  std::string id = Json::Parse(r.body)->Find("id")->as_string();

  // The file route delivers it; the hook route parks it.
  ASSERT_TRUE(WaitFor([&] {
    auto e = c.Get(base + "/api/events/" + id);
    return e.body.find("\"route\":\"files\",\"status\":\"delivered\"") !=
               std::string::npos &&
           e.body.find("\"route\":\"hook\",\"status\":\"parked\"") !=
               std::string::npos;
  })) << c.Get(base + "/api/events/" + id).body;
  auto e = c.Get(base + "/api/events/" + id);
  auto doc = Json::Parse(e.body);
  ASSERT_TRUE(doc.ok());
  const auto& routes = doc->Find("routes")->items();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_FALSE(routes[1].Find("error")->as_string().empty());

  auto relays = c.Get(base + "/api/relays");
  ASSERT_EQ(relays.status, 200);
  auto rd = Json::Parse(relays.body);
  ASSERT_TRUE(rd.ok()) << relays.body;
  ASSERT_EQ(rd->Find("routes")->items().size(), 2u);
  EXPECT_EQ(rd->Find("routes")->items()[1].Find("name")->as_string(), "hook");

  auto parked = c.Get(base + "/api/relays/hook/parked");
  ASSERT_EQ(parked.status, 200);
  auto pd = Json::Parse(parked.body);
  ASSERT_TRUE(pd.ok());
  ASSERT_EQ(pd->Find("parked")->items().size(), 1u);
  EXPECT_EQ(
      pd->Find("parked")->items()[0].Find("event")->Find("id")->as_string(),
      id);

  // Metrics carry the routes.
  auto m = c.Get(base + "/metrics");
  EXPECT_GE(
      MetricValue(m.body, "herald_route_delivered_total{route=\"files\"}"), 1);
  EXPECT_GE(MetricValue(m.body, "herald_route_parked_events{route=\"hook\"}"),
            1);
  EXPECT_NE(m.body.find("herald_route_send_latency_seconds_bucket"),
            std::string::npos);

  // Retry (it fails again and is parked again), then drop.
  auto retry =
      c.Request("POST", base + "/api/relays/hook/parked/" + id + "/retry");
  EXPECT_EQ(retry.status, 202) << retry.body;
  auto other =
      c.Request("POST", base +
                            "/api/relays/hook/parked/"
                            "01890a5d-ac96-774b-bcce-b302099a8057/retry");
  EXPECT_EQ(other.status, 404);
  // Once the retry failed and parked it again, drop it.
  ASSERT_TRUE(WaitFor([&] {
    auto p = Json::Parse(c.Get(base + "/api/relays/hook/parked").body);
    return p.ok() && p->Find("parked")->items().size() == 1 &&
           p->Find("parked")->items()[0].Find("state")->as_string() == "parked";
  }));
  auto d = c.Request("DELETE", base + "/api/relays/hook/parked/" + id);
  EXPECT_EQ(d.status, 200) << d.body;
  auto after = c.Get(base + "/api/relays/hook/parked");
  EXPECT_EQ(Json::Parse(after.body)->Find("parked")->items().size(), 0u);
  EXPECT_EQ(server.Stop(), 0);
}

}  // namespace
}  // namespace herald::testing

namespace herald::testing {
namespace {

TEST(ServerDemoTest, DemoProducerAppendsOrderEvents) {
  TempDir dir;
  ServeProcess server(dir, "sqlite:" + dir.file("h.db"), "", {"--demo"});
  ASSERT_TRUE(server.ready()) << server.stderr_text();
  HttpClient c;
  ASSERT_TRUE(WaitFor([&] { return Head(c, server.base()) >= 2; }));
  auto r = c.Get(server.base() + "/api/events?offset=0&limit=2&type=order.*");
  auto doc = Json::Parse(r.body);
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->Find("events")->items().size(), 2u);
  // The start-up line says where it listens and what to curl.
  EXPECT_NE(server.stderr_text().find("curl '" + server.base() +
                                      "/api/events?offset=0&limit=10'"),
            std::string::npos)
      << server.stderr_text();
  EXPECT_EQ(server.Stop(), 0);
}

}  // namespace
}  // namespace herald::testing
