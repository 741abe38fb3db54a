// The endpoints the operator console needs, against the built `herald
// serve`: GET /api/events/newest (newest first, paged by position, globs),
// GET /api/whoami, bulk retry and drop of parked events (one outcome per
// event, every action in the server's log with the token's name), the
// console's assets at / and /console/ and `[server] console = false`; and
// every bad input of them (4xx with a JSON error, nothing changed).
#include <gtest/gtest.h>

#include "server/server_test_util.h"

namespace herald::testing {
namespace {

constexpr const char* kAdmin = "Authorization: Bearer adm-9c1f";
constexpr const char* kReader = "Authorization: Bearer rd-77aa";
constexpr const char* kAppender = "Authorization: Bearer ap-41b0";

// Tokens, and a route whose receiver does not listen (port 1): every event
// of type park.* fails once and is parked.
constexpr const char* kConfig = R"([server]
[[server.tokens]]
name = "ops"
token = "adm-9c1f"
scopes = ["admin"]
[[server.tokens]]
name = "viewer"
token = "rd-77aa"
scopes = ["read"]
[[server.tokens]]
token = "ap-41b0"
scopes = ["append"]
[[route]]
name = "hook"
sender = "http://127.0.0.1:1/events"
types = ["park.*"]
on_failure = "park"
max_attempts = 1
)";

std::string Uuid(int n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "0190a000-0000-7000-8000-%012x", n);
  return buf;
}

std::vector<int64_t> Positions(const std::string& body) {
  std::vector<int64_t> out;
  auto doc = Json::Parse(body);
  if (!doc.ok() || !doc->Find("events")) return out;
  for (const auto& e : doc->Find("events")->items()) {
    int64_t p = 0;
    (void)e.Find("position")->TryInt64(&p);
    out.push_back(p);
  }
  return out;
}

int64_t NextBefore(const std::string& body) {
  auto doc = Json::Parse(body);
  if (!doc.ok()) return -2;
  const Json* n = doc->Find("next_before");
  if (!n) return -2;
  if (n->is_null()) return 0;
  int64_t v = -1;
  (void)n->TryInt64(&v);
  return v;
}

// On every backend (TestBackends: SQLite, and PostgreSQL when
// HERALD_TEST_PG_URL is set).
class ServerConsoleTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    HERALD_SKIP_UNLESS_BACKEND(GetParam());
    server_ = std::make_unique<ServeProcess>(
        dir_, FreshStoreUrl(GetParam(), dir_), kConfig);
    ASSERT_TRUE(server_->ready()) << server_->stderr_text();
    base_ = server_->base();
  }
  void TearDown() override {
    if (server_) {
      EXPECT_EQ(server_->Stop(), 0);
    }
  }

  HttpResult Get(const std::string& path, const char* token = kAdmin) {
    return c_.Get(base_ + path, {token});
  }
  HttpResult Post(const std::string& path, const std::string& body,
                  const char* token = kAdmin,
                  const std::string& content_type = "application/json") {
    return c_.Request("POST", base_ + path, body,
                      {token, "Content-Type: " + content_type});
  }
  // Appends `n` events: stream "s-<i % 3>", type "t.<i % 2>" (ids
  // Uuid(first + i)), as one array.
  void Append(int n, int first = 1, const std::string& type_prefix = "t") {
    std::string body = "[";
    for (int i = 0; i < n; ++i) {
      if (i) body += ",";
      body += "{\"id\":\"" + Uuid(first + i) + "\",\"stream\":\"s-" +
              std::to_string(i % 3) + "\",\"type\":\"" + type_prefix + "." +
              std::to_string(i % 2) + "\"}";
    }
    body += "]";
    ASSERT_EQ(Post("/api/events", body).status, 201);
  }
  int ParkedCount(const std::string& state = "parked") {
    auto r = Get("/api/relays/hook/parked?state=" + state);
    auto doc = Json::Parse(r.body);
    if (!doc.ok() || !doc->Find("parked")) return -1;
    return static_cast<int>(doc->Find("parked")->items().size());
  }
  void ExpectError(const HttpResult& r, long status, const std::string& code) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.ErrorCode(), code) << r.body;
  }

  TempDir dir_;
  std::unique_ptr<ServeProcess> server_;
  std::string base_;
  HttpClient c_;
};

TEST_P(ServerConsoleTest, NewestPagesBackwardsByPosition) {
  Append(250);
  auto p1 = Get("/api/events/newest?limit=100");
  ASSERT_EQ(p1.status, 200) << p1.body;
  auto pos = Positions(p1.body);
  ASSERT_EQ(pos.size(), 100u);
  EXPECT_EQ(pos.front(), 250);
  EXPECT_EQ(pos.back(), 151);
  EXPECT_EQ(NextBefore(p1.body), 151);
  EXPECT_NE(p1.body.find("\"head\":250"), std::string::npos);
  auto p2 = Get("/api/events/newest?limit=100&before=151");
  EXPECT_EQ(Positions(p2.body).front(), 150);
  EXPECT_EQ(NextBefore(p2.body), 51);
  auto p3 = Get("/api/events/newest?limit=100&before=51");
  EXPECT_EQ(Positions(p3.body).size(), 50u);
  EXPECT_EQ(Positions(p3.body).back(), 1);
  EXPECT_EQ(NextBefore(p3.body), 0) << "null at the start of the log";
  // The default page is 50; `before` above the head means the head.
  EXPECT_EQ(Positions(Get("/api/events/newest").body).size(), 50u);
  EXPECT_EQ(Positions(Get("/api/events/newest?before=999999").body).front(),
            250);
}

TEST_P(ServerConsoleTest, NewestFiltersByTypeAndStreamGlobs) {
  Append(300);
  // s-1 holds positions 2, 5, 8, ... (i % 3 == 1, position i + 1).
  auto r = Get("/api/events/newest?stream=s-1&limit=5");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Positions(r.body), (std::vector<int64_t>{299, 296, 293, 290, 287}));
  EXPECT_EQ(NextBefore(r.body), 287);
  auto older = Get("/api/events/newest?stream=s-1&limit=2&before=287");
  EXPECT_EQ(Positions(older.body), (std::vector<int64_t>{284, 281}));
  // Globs on both; repeated types: any matches.
  auto g = Get("/api/events/newest?stream=s-%3F&type=t.1&limit=1000");
  auto odd = Positions(g.body);
  EXPECT_EQ(odd.size(), 150u) << g.body.substr(0, 200);
  for (int64_t p : odd) EXPECT_EQ((p - 1) % 2, 1) << p;
  auto star = Get("/api/events/newest?stream=s-*&type=t.0&type=t.1&limit=1000");
  EXPECT_EQ(Positions(star.body).size(), 300u);
  auto none = Get("/api/events/newest?stream=nothing-*");
  EXPECT_TRUE(Positions(none.body).empty());
  EXPECT_EQ(NextBefore(none.body), 0);
}

TEST_P(ServerConsoleTest, NewestBadInputIs400) {
  Append(3);
  for (const char* q : {"before=0", "before=-1", "before=abc",
                        "before=", "limit=0", "limit=1001", "limit=x", "type=",
                        "stream=", "offset=1", "wait=1", "before=1&before=2"}) {
    ExpectError(Get(std::string("/api/events/newest?") + q), 400,
                "invalid_argument");
  }
  ExpectError(Get("/api/events/newest?stream=" + std::string(257, 'x')), 400,
              "invalid_argument");
  ExpectError(Get("/api/events/newest", ""), 401, "unauthorized");
  ExpectError(Get("/api/events/newest", kAppender), 403, "forbidden");
}

TEST_P(ServerConsoleTest, WhoAmINamesTheTokenAndItsScopes) {
  auto admin = Get("/api/whoami");
  ASSERT_EQ(admin.status, 200);
  EXPECT_EQ(
      admin.body,
      R"({"tokens":true,"name":"ops","scopes":["read","append","admin"]})");
  EXPECT_EQ(Get("/api/whoami", kReader).body,
            R"({"tokens":true,"name":"viewer","scopes":["read"]})");
  EXPECT_EQ(Get("/api/whoami", kAppender).body,
            R"({"tokens":true,"name":null,"scopes":["append"]})");
  EXPECT_EQ(Get("/api/whoami", "").body,
            R"({"tokens":true,"name":null,"scopes":[]})");
  ExpectError(Get("/api/whoami", "Authorization: Bearer nope"), 401,
              "unauthorized");
  ExpectError(Get("/api/whoami?x=1"), 400, "invalid_argument");
  EXPECT_EQ(server_->stderr_text().find("adm-9c1f"), std::string::npos);
}

TEST_P(ServerConsoleTest, BulkRetryAndDropReportEachOutcome) {
  Append(3, 100, "park");  // three streams: three parked
  ASSERT_TRUE(
      WaitFor([&] { return ParkedCount() == 3; }, std::chrono::seconds(20)));
  // One id not parked: reported failed, the others done.
  auto drop = Post("/api/relays/hook/parked/drop",
                   "{\"ids\":[\"" + Uuid(100) + "\",\"" + Uuid(999) + "\"]}");
  ASSERT_EQ(drop.status, 200) << drop.body;
  EXPECT_NE(
      drop.body.find("{\"id\":\"" + Uuid(100) + "\",\"result\":\"dropped\"}"),
      std::string::npos)
      << drop.body;
  EXPECT_NE(drop.body.find("{\"id\":\"" + Uuid(999) +
                           "\",\"result\":\"failed\",\"error\":{\"code\":"
                           "\"not_found\""),
            std::string::npos)
      << drop.body;
  EXPECT_NE(drop.body.find("\"succeeded\":1,\"failed\":1"), std::string::npos);
  EXPECT_EQ(ParkedCount(), 2);
  // all: every parked event, each with its outcome.
  auto retry = Post("/api/relays/hook/parked/retry", R"({"all":true})");
  ASSERT_EQ(retry.status, 200) << retry.body;
  EXPECT_NE(retry.body.find("\"succeeded\":2,\"failed\":0"), std::string::npos)
      << retry.body;
  for (int id : {101, 102}) {
    EXPECT_NE(retry.body.find(Uuid(id)), std::string::npos) << retry.body;
  }
  // Every action is in the log with the token's name, never the token.
  std::string log = server_->stderr_text();
  EXPECT_NE(log.find("herald: audit: token 'ops' drop parked event " +
                     Uuid(100) + " on route 'hook': ok"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("herald: audit: token 'ops' drop parked event " +
                     Uuid(999) + " on route 'hook': failed (not_found"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("herald: audit: token 'ops' retry parked event " +
                     Uuid(101) + " on route 'hook': ok"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("adm-9c1f"), std::string::npos);
}

TEST_P(ServerConsoleTest, SingleActionsAreAuditedToo) {
  Append(1, 200, "park");
  ASSERT_TRUE(
      WaitFor([&] { return ParkedCount() == 1; }, std::chrono::seconds(20)));
  auto r = c_.Request("DELETE", base_ + "/api/relays/hook/parked/" + Uuid(200),
                      "", {kAdmin});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(server_->stderr_text().find("herald: audit: token 'ops' drop "
                                        "parked event " +
                                        Uuid(200) + " on route 'hook': ok"),
            std::string::npos);
}

TEST_P(ServerConsoleTest, BulkBadInputChangesNothing) {
  Append(2, 300, "park");
  ASSERT_TRUE(
      WaitFor([&] { return ParkedCount() == 2; }, std::chrono::seconds(20)));
  const std::string p = "/api/relays/hook/parked/drop";
  ExpectError(Post(p, R"({"all":true})", kAdmin, "text/plain"), 415,
              "unsupported_media_type");
  ExpectError(Post(p, "{\"all\":"), 400, "invalid_json");
  for (const std::string& body :
       {std::string("[]"), std::string("{}"), std::string(R"({"all":false})"),
        std::string(R"({"all":1})"), std::string(R"({"ids":[]})"),
        std::string(R"({"ids":"x"})"), std::string(R"({"ids":["nope"]})"),
        std::string(R"({"ids":[7]})"),
        "{\"ids\":[\"" + Uuid(300) + "\"],\"all\":true}",
        "{\"ids\":[\"" + Uuid(300) + "\",\"" + Uuid(300) + "\"]}",
        std::string(R"({"all":true,"force":true})"),
        "{\"ids\":[\"" + Uuid(300) + "\"],\"ids\":[\"" + Uuid(300) + "\"]}"}) {
    ExpectError(Post(p, body), 400, "invalid_argument");
  }
  ExpectError(Post("/api/relays/nope/parked/drop", R"({"all":true})"), 404,
              "not_found");
  ExpectError(Post(p + "?x=1", R"({"all":true})"), 400, "invalid_argument");
  ExpectError(Post(p, R"({"all":true})", kReader), 403, "forbidden");
  ExpectError(Post("/api/relays/hook/parked/retry", R"({"all":true})", kReader),
              403, "forbidden");
  ExpectError(Post(p, R"({"all":true})", ""), 401, "unauthorized");
  EXPECT_EQ(ParkedCount(), 2) << "no bad request changed anything";
  EXPECT_EQ(server_->stderr_text().find("audit"), std::string::npos);
}

TEST_P(ServerConsoleTest, ConsoleIsServedAtRootAndConsole) {
  for (const char* path :
       {"/", "/console", "/console/", "/console/index.html"}) {
    auto r = c_.Get(base_ + path);
    EXPECT_EQ(r.status, 200) << path;
    EXPECT_EQ(r.Header("Content-Type"), "text/html; charset=utf-8") << path;
    EXPECT_NE(r.body.find("/console/app.js"), std::string::npos) << path;
  }
  auto js = c_.Get(base_ + "/console/app.js");
  EXPECT_EQ(js.status, 200);
  EXPECT_EQ(js.Header("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_FALSE(js.Header("ETag").empty());
  EXPECT_EQ(c_.Get(base_ + "/console/nope.js").status, 404);
}

INSTANTIATE_TEST_SUITE_P(Backends, ServerConsoleTest,
                         ::testing::ValuesIn(TestBackends()));

TEST(ServerConsoleOff, ConsoleFalseServesNoConsole) {
  TempDir dir;
  ServeProcess server(dir, "sqlite:" + dir.file("h.db"),
                      "[server]\nconsole = false\n");
  ASSERT_TRUE(server.ready()) << server.stderr_text();
  HttpClient c;
  for (const char* path : {"/", "/console/", "/console/app.js"}) {
    auto r = c.Get(server.base() + path);
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_EQ(r.ErrorCode(), "not_found") << path;
  }
  EXPECT_EQ(
      c.Get(server.base() + "/api/whoami").body,
      R"({"tokens":false,"name":null,"scopes":["read","append","admin"]})");
  EXPECT_EQ(server.Stop(), 0);
}

TEST(ServerConsoleOff, BadConsoleValueExits2NamingKeyAndLine) {
  TempDir dir;
  std::string config = dir.file("bad.toml");
  WriteFile(config, "[server]\nconsole = \"off\"\n");
  Child::Options o;
  o.stderr_path = dir.file("err");
  Child child({HeraldBin(), "serve", "--config", config, "--db",
               "sqlite:" + dir.file("h.db")},
              o);
  EXPECT_EQ(child.Wait(), 2);
  std::string err = ReadFile(dir.file("err"));
  EXPECT_NE(err.find("bad.toml:2:"), std::string::npos) << err;
  EXPECT_NE(err.find("server.console: must be a boolean"), std::string::npos)
      << err;
  EXPECT_FALSE(std::ifstream(dir.file("h.db")).good()) << "nothing written";
}

}  // namespace
}  // namespace herald::testing
