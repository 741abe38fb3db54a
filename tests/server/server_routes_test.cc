// The route table and the library settings of herald::Server, in process:
// the Router's matching rules (specificity, 405 with Allow, decoded
// parameters, scopes), static mounts (content type, ETag, 304, HEAD), and
// ServerOptions::config as the one place of page_cache_mb / tail_events.
#include <gtest/gtest.h>

#include <future>

#include "herald/server.h"
#include "herald/store.h"
#include "server/router.h"
#include "server/server_test_util.h"

namespace herald::testing {
namespace {

using detail::PathParams;
using detail::Reply;
using detail::Request;
using detail::Response;
using detail::Router;
using detail::Scope;

struct Routed {
  Response response;
  std::string label;
};

Routed Route(const Router& router, std::string method, std::string target,
             std::string authorization = "") {
  Request req;
  req.method = std::move(method);
  req.target = std::move(target);
  // A target that does not parse keeps an empty path (the Router decodes
  // the segments of the target itself).
  (void)detail::ParseTarget(req.target, &req.path, &req.query);
  req.authorization = std::move(authorization);
  std::promise<Routed> p;
  router.Dispatch(std::move(req), [&](Response r, std::string label) {
    p.set_value({std::move(r), std::move(label)});
  });
  return p.get_future().get();
}

// A handler answering "<name> <params...>".
detail::Handler Echo(std::string name, std::vector<std::string> params = {}) {
  return [name, params](Request&&, const PathParams& p, Reply reply) {
    Response r;
    r.body = name;
    for (const auto& k : params) r.body += " " + k + "=" + p.Get(k);
    reply(std::move(r));
  };
}

std::string HeaderOf(const Response& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

TEST(RouterTest, LiteralBeatsParameterWhateverTheOrder) {
  std::vector<TokenConfig> tokens;
  Router router(&tokens);
  router.Get("/things/{id}", Scope::kRead, Echo("one", {"id"}));
  router.Get("/things/special", Scope::kRead, Echo("special"));
  router.Post("/things/{id}/{verb}", Scope::kAdmin,
              Echo("verb", {"id", "verb"}));

  auto special = Route(router, "GET", "/things/special");
  EXPECT_EQ(special.response.body, "special");
  EXPECT_EQ(special.label, "/things/special");
  auto one = Route(router, "GET", "/things/a%2Fb");  // '/' stays inside
  EXPECT_EQ(one.response.body, "one id=a/b");
  EXPECT_EQ(one.label, "/things/{id}");
  EXPECT_EQ(Route(router, "POST", "//things/x//go").response.body,
            "verb id=x verb=go");
}

TEST(RouterTest, UnknownPathIs404AndWrongMethodIs405WithAllow) {
  std::vector<TokenConfig> tokens;
  Router router(&tokens);
  router.Get("/items", Scope::kRead, Echo("list"));
  router.Post("/items", Scope::kAppend, Echo("add"));

  auto missing = Route(router, "GET", "/nothing");
  EXPECT_EQ(missing.response.status, 404);
  EXPECT_EQ(missing.label, "other");
  auto put = Route(router, "PUT", "/items");
  EXPECT_EQ(put.response.status, 405);
  EXPECT_EQ(HeaderOf(put.response, "Allow"), "GET, HEAD, POST, OPTIONS");
  EXPECT_NE(put.response.body.find("method_not_allowed"), std::string::npos);
  EXPECT_EQ(Route(router, "GET", "/it%zzems").response.status, 400);
}

TEST(RouterTest, RowScopeIsCheckedAgainstTheToken) {
  std::vector<TokenConfig> tokens(2);
  tokens[0].token = "reader-token";
  tokens[0].scopes = {TokenScope::kRead};
  tokens[1].token = "admin-token";
  tokens[1].scopes = {TokenScope::kAdmin};
  Router router(&tokens);
  router.Get("/open", Scope::kPublic, Echo("open"));
  router.Get("/read", Scope::kRead, Echo("read"));
  router.Delete("/admin", Scope::kAdmin, Echo("admin"));

  EXPECT_EQ(Route(router, "GET", "/open").response.status, 200);
  auto anonymous = Route(router, "GET", "/read");
  EXPECT_EQ(anonymous.response.status, 401);
  EXPECT_EQ(anonymous.label, "/read");
  EXPECT_EQ(
      Route(router, "GET", "/read", "Bearer reader-token").response.status,
      200);
  EXPECT_EQ(
      Route(router, "DELETE", "/admin", "Bearer reader-token").response.status,
      403);
  EXPECT_EQ(
      Route(router, "DELETE", "/admin", "Bearer admin-token").response.status,
      200);
}

class ServerLibrarySettingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenStore("sqlite:" + dir_.file("h.db"));
    ASSERT_TRUE(store.ok());
    store_ = std::move(*store);
    std::vector<Event> events(300);
    for (size_t i = 0; i < events.size(); ++i) {
      events[i].stream = "s";
      events[i].type = "t.x";
      events[i].payload = "{\"i\":" + std::to_string(i) + "}";
    }
    ASSERT_TRUE(store_->Append(std::span<Event>(events)).ok());
  }

  // Starts a server with `options`, reads the full page at offset 1 (below
  // the in-memory tail) twice, returns the metrics text.
  std::string ReadTwiceThenMetrics(ServerOptions options) {
    options.config.listen = "127.0.0.1:0";
    auto server = Server::Start(store_.get(), options);
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    if (!server.ok()) return "";
    std::string base = "http://" + (*server)->address();
    HttpClient c;
    for (int i = 0; i < 2; ++i) {
      auto page = c.Get(base + "/api/events?offset=1&limit=100");
      EXPECT_EQ(page.status, 200);
      EXPECT_FALSE(page.Header("ETag").empty());
    }
    std::string metrics = c.Get(base + "/metrics").body;
    (*server)->Stop();
    return metrics;
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(ServerLibrarySettingsTest, PageCacheMbZeroInTheConfigTurnsItOff) {
  ServerOptions options;
  options.config.tail_events = 50;  // positions 251..300 in memory
  options.config.page_cache_mb = 0;
  std::string m = ReadTwiceThenMetrics(options);
  EXPECT_EQ(MetricValue(m, "herald_page_cache_max_bytes"), 0) << m;
  EXPECT_EQ(MetricValue(m, "herald_page_cache_hits_total"), 0) << m;
}

TEST_F(ServerLibrarySettingsTest, PageCacheMbInTheConfigSizesIt) {
  ServerOptions options;
  options.config.tail_events = 50;
  options.config.page_cache_mb = 3;
  std::string m = ReadTwiceThenMetrics(options);
  EXPECT_EQ(MetricValue(m, "herald_page_cache_max_bytes"), 3 << 20) << m;
  EXPECT_EQ(MetricValue(m, "herald_page_cache_hits_total"), 1) << m;
}

TEST_F(ServerLibrarySettingsTest, DeprecatedPageCacheBytesStillWins) {
  ServerOptions options;
  options.config.tail_events = 50;
  options.config.page_cache_mb = 0;
  options.page_cache_bytes = 1 << 20;
  std::string m = ReadTwiceThenMetrics(options);
  EXPECT_EQ(MetricValue(m, "herald_page_cache_max_bytes"), 1 << 20) << m;
  EXPECT_EQ(MetricValue(m, "herald_page_cache_hits_total"), 1) << m;
}

TEST_F(ServerLibrarySettingsTest, StaticMountServesFilesWithTypeEtagAndHead) {
  ServerOptions options;
  options.config.listen = "127.0.0.1:0";
  options.MountStatic(
      "/console",
      {{"index.html", "text/html; charset=utf-8", "<h1>herald</h1>\n"},
       {"js/app.js", "text/javascript", "console.log('hi');\n"}});
  auto server = Server::Start(store_.get(), options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  std::string base = "http://" + (*server)->address();
  HttpClient c;

  auto index = c.Get(base + "/console/index.html");
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.body, "<h1>herald</h1>\n");
  EXPECT_EQ(index.Header("Content-Type"), "text/html; charset=utf-8");
  std::string etag = index.Header("ETag");
  EXPECT_EQ(etag.front(), '"');
  auto root = c.Get(base + "/console");
  EXPECT_EQ(root.status, 200);
  EXPECT_EQ(root.body, index.body);

  auto js = c.Get(base + "/console/js/app.js");
  EXPECT_EQ(js.status, 200);
  EXPECT_EQ(js.body, "console.log('hi');\n");
  EXPECT_EQ(js.Header("Content-Type"), "text/javascript");
  EXPECT_NE(js.Header("ETag"), etag);

  auto again = c.Get(base + "/console/index.html", {"If-None-Match: " + etag});
  EXPECT_EQ(again.status, 304);
  EXPECT_EQ(again.body, "");
  EXPECT_EQ(again.Header("ETag"), etag);

  // HEAD: the GET's headers, no body; the connection stays usable.
  auto head = c.Request("HEAD", base + "/console/js/app.js");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, "");
  EXPECT_EQ(head.Header("Content-Length"), "19");
  EXPECT_EQ(head.Header("Content-Type"), "text/javascript");
  EXPECT_EQ(c.Get(base + "/console/index.html").status, 200);

  EXPECT_EQ(c.Get(base + "/console/missing.js").status, 404);
  EXPECT_EQ(c.Post(base + "/console/index.html", "{}").status, 405);
  // The API is still there beside the mount.
  EXPECT_EQ(c.Get(base + "/api/events?limit=1").status, 200);
  std::string m = c.Get(base + "/metrics").body;
  EXPECT_NE(m.find("route=\"/console/*\",status=\"200\""), std::string::npos)
      << m;
  (*server)->Stop();
}

}  // namespace
}  // namespace herald::testing
