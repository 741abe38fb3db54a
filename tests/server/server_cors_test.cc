// Browsers can use the API: [server] cors_origins (Access-Control-Allow-
// Origin and Vary on answers, 204 preflights with the allowed methods and
// headers, "*" only without tokens), and HEAD answered for every GET
// resource with the GET's headers and no body. Plain HTTP requests.
#include <gtest/gtest.h>

#include "herald/config.h"
#include "herald/server.h"
#include "herald/store.h"
#include "server/server_test_util.h"

namespace herald::testing {
namespace {

constexpr const char* kOps = "https://ops.example.com";

class CorsTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> origins,
             std::vector<TokenConfig> tokens = {}) {
    auto store = OpenStore("sqlite:" + dir_.file("h.db"));
    ASSERT_TRUE(store.ok());
    store_ = std::move(*store);
    std::vector<Event> events(5);
    for (auto& e : events) {
      e.stream = "order-1";
      e.type = "order.placed";
      e.payload = "{\"n\":1}";
    }
    ASSERT_TRUE(store_->Append(std::span<Event>(events)).ok());
    first_id_ = events[0].id;
    ServerOptions options;
    options.config.listen = "127.0.0.1:0";
    options.config.cors_origins = std::move(origins);
    options.config.tokens = std::move(tokens);
    auto server = Server::Start(store_.get(), options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    base_ = "http://" + server_->address();
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Server> server_;
  std::string base_;
  std::string first_id_;
  HttpClient c_;
};

TEST_F(CorsTest, AllowedOriginGetsAllowOriginAndVary) {
  Start({kOps, "http://localhost:3000"});
  auto r = c_.Get(base_ + "/api/events", {std::string("Origin: ") + kOps});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("Access-Control-Allow-Origin"), kOps);
  EXPECT_EQ(r.Header("Vary"), "Origin");
  EXPECT_NE(r.Header("Access-Control-Expose-Headers").find("ETag"),
            std::string::npos);

  auto other = c_.Get(base_ + "/api/events", {"Origin: http://localhost:3000"});
  EXPECT_EQ(other.Header("Access-Control-Allow-Origin"),
            "http://localhost:3000");

  // Not listed, or no Origin at all: no grant, but the answer still varies.
  auto evil =
      c_.Get(base_ + "/api/events", {"Origin: https://evil.example.com"});
  EXPECT_EQ(evil.status, 200);
  EXPECT_EQ(evil.Header("Access-Control-Allow-Origin"), "");
  EXPECT_EQ(evil.Header("Vary"), "Origin");
  auto plain = c_.Get(base_ + "/api/events");
  EXPECT_EQ(plain.Header("Access-Control-Allow-Origin"), "");
  EXPECT_EQ(plain.Header("Vary"), "Origin");

  // Errors too, so a page can read what went wrong.
  auto bad =
      c_.Get(base_ + "/api/events?offset=x", {std::string("Origin: ") + kOps});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.Header("Access-Control-Allow-Origin"), kOps);
}

TEST_F(CorsTest, PreflightIs204WithMethodsAndHeadersAndNeedsNoToken) {
  std::vector<TokenConfig> tokens(1);
  tokens[0].token = "secret-token";
  tokens[0].scopes = {TokenScope::kRead, TokenScope::kAppend};
  Start({kOps}, tokens);
  auto pre = c_.Request(
      "OPTIONS", base_ + "/api/events", "",
      {std::string("Origin: ") + kOps, "Access-Control-Request-Method: POST",
       "Access-Control-Request-Headers: authorization, "
       "content-type"});
  EXPECT_EQ(pre.status, 204);
  EXPECT_EQ(pre.body, "");
  EXPECT_EQ(pre.Header("Access-Control-Allow-Origin"), kOps);
  std::string methods = pre.Header("Access-Control-Allow-Methods");
  for (const char* m : {"GET", "HEAD", "POST", "OPTIONS"}) {
    EXPECT_NE(methods.find(m), std::string::npos) << methods;
  }
  std::string headers = pre.Header("Access-Control-Allow-Headers");
  for (const char* h : {"Authorization", "Last-Event-ID", "Content-Type"}) {
    EXPECT_NE(headers.find(h), std::string::npos) << headers;
  }
  EXPECT_EQ(pre.Header("Allow"), methods);

  auto stream_pre = c_.Request(
      "OPTIONS", base_ + "/api/events/stream", "",
      {std::string("Origin: ") + kOps, "Access-Control-Request-Method: GET",
       "Access-Control-Request-Headers: "
       "last-event-id"});
  EXPECT_EQ(stream_pre.status, 204);
  EXPECT_EQ(stream_pre.Header("Access-Control-Allow-Methods"),
            "GET, HEAD, OPTIONS");

  // A 401 still carries the grant; a token makes the call work.
  auto denied = c_.Get(base_ + "/api/events", {std::string("Origin: ") + kOps});
  EXPECT_EQ(denied.status, 401);
  EXPECT_EQ(denied.Header("Access-Control-Allow-Origin"), kOps);
  auto ok = c_.Get(
      base_ + "/api/events",
      {std::string("Origin: ") + kOps, "Authorization: Bearer secret-token"});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.Header("Access-Control-Allow-Origin"), kOps);

  // An unknown path is still 404; a preflight from elsewhere grants nothing.
  EXPECT_EQ(c_.Request("OPTIONS", base_ + "/api/nothing").status, 404);
  auto evil = c_.Request("OPTIONS", base_ + "/api/events", "",
                         {"Origin: https://evil.example.com",
                          "Access-Control-Request-Method: POST"});
  EXPECT_EQ(evil.status, 204);
  EXPECT_EQ(evil.Header("Access-Control-Allow-Origin"), "");
  EXPECT_EQ(evil.Header("Access-Control-Allow-Methods"), "");
}

TEST_F(CorsTest, StarAllowsAnyOriginWithoutVary) {
  Start({"*"});
  auto r = c_.Get(base_ + "/health", {"Origin: https://anywhere.example"});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("Access-Control-Allow-Origin"), "*");
  EXPECT_EQ(r.Header("Vary"), "");
}

TEST_F(CorsTest, NoOriginsConfiguredSendsNoCorsHeaders) {
  Start({});
  auto r = c_.Get(base_ + "/api/events", {std::string("Origin: ") + kOps});
  EXPECT_EQ(r.Header("Access-Control-Allow-Origin"), "");
  EXPECT_EQ(r.Header("Vary"), "");
  auto pre = c_.Request("OPTIONS", base_ + "/api/events", "",
                        {std::string("Origin: ") + kOps});
  EXPECT_EQ(pre.status, 204);
  EXPECT_EQ(pre.Header("Allow"), "GET, HEAD, POST, OPTIONS");
  EXPECT_EQ(pre.Header("Access-Control-Allow-Origin"), "");
}

TEST_F(CorsTest, SseStreamCarriesTheGrant) {
  Start({kOps});
  int fd = ConnectLoopback(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd,
                      "GET /api/events/stream HTTP/1.1\r\nHost: x\r\n"
                      "Origin: " +
                          std::string(kOps) + "\r\nLast-Event-ID: 4\r\n\r\n"));
  std::string got;
  ASSERT_TRUE(WaitFor([&] {
    ReadSome(fd, &got, 100);
    return got.find("id: 5") != std::string::npos;
  }));
  ::close(fd);
  EXPECT_NE(got.find("Access-Control-Allow-Origin: " + std::string(kOps)),
            std::string::npos)
      << got;
  EXPECT_NE(got.find("Content-Type: text/event-stream"), std::string::npos);
}

TEST_F(CorsTest, HeadAnswersEveryGetWithItsHeadersAndNoBody) {
  Start({kOps});
  for (const std::string& path : std::vector<std::string>{
           "/health", "/metrics", "/api/events?offset=1&limit=5",
           "/api/events?offset=1&limit=2", "/api/events/" + first_id_,
           "/api/streams/order-1", "/api/relays"}) {
    auto get = c_.Get(base_ + path, {std::string("Origin: ") + kOps});
    auto head =
        c_.Request("HEAD", base_ + path, "", {std::string("Origin: ") + kOps});
    EXPECT_EQ(head.status, get.status) << path;
    EXPECT_EQ(head.body, "") << path;
    EXPECT_FALSE(get.body.empty()) << path;
    for (const char* h : {"Content-Type", "Cache-Control", "ETag",
                          "Access-Control-Allow-Origin", "Vary"}) {
      EXPECT_EQ(head.Header(h), get.Header(h)) << path << " " << h;
    }
    if (path != "/metrics") {  // its counters move between the two calls
      EXPECT_EQ(head.Header("Content-Length"), get.Header("Content-Length"))
          << path;
    }
  }
  // A full page's ETag comes with HEAD too, and a 304 for a match.
  auto page = c_.Get(base_ + "/api/events?offset=1&limit=2");
  ASSERT_FALSE(page.Header("ETag").empty());
  auto cached = c_.Request("HEAD", base_ + "/api/events?offset=1&limit=2", "",
                           {"If-None-Match: " + page.Header("ETag")});
  EXPECT_EQ(cached.status, 304);
  // Errors keep their status.
  EXPECT_EQ(c_.Request("HEAD", base_ + "/api/events?limit=0").status, 400);
  EXPECT_EQ(c_.Request("HEAD", base_ + "/api/nothing").status, 404);

  // HEAD of the SSE stream: its head, no events, and the connection ends.
  int fd = ConnectLoopback(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(
      SendAll(fd, "HEAD /api/events/stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string got;
  bool open = true;
  ASSERT_TRUE(WaitFor([&] {
    open = ReadSome(fd, &got, 100);
    return !open;
  }));
  ::close(fd);
  EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;
  EXPECT_NE(got.find("Content-Type: text/event-stream"), std::string::npos);
  EXPECT_EQ(got.find("retry:"), std::string::npos) << got;
  EXPECT_EQ(got.find("id: 1"), std::string::npos) << got;
}

TEST(CorsConfigTest, StarWithTokensIsAConfigErrorNamingKeyAndLine) {
  auto c = ParseConfig(
      "[server]\n"
      "cors_origins = [\"*\"]\n"
      "[[server.tokens]]\n"
      "token = \"abcdefghijklmnop\"\n"
      "scopes = [\"read\"]\n",
      "t.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("t.toml:2:"), std::string::npos)
      << c.status().message();
  EXPECT_NE(c.status().message().find("server.cors_origins"), std::string::npos)
      << c.status().message();

  auto path = ParseConfig("[server]\ncors_origins = [\"https://a.example/\"]\n",
                          "t.toml");
  ASSERT_FALSE(path.ok());
  EXPECT_NE(path.status().message().find("t.toml:2: server.cors_origins"),
            std::string::npos)
      << path.status().message();

  auto ok = ParseConfig(
      "[server]\ncors_origins = [\"https://a.example\", "
      "\"http://localhost:3000\"]\n",
      "t.toml");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(
      ok->server.cors_origins,
      (std::vector<std::string>{"https://a.example", "http://localhost:3000"}));
  auto star = ParseConfig("[server]\ncors_origins = [\"*\"]\n", "t.toml");
  EXPECT_TRUE(star.ok()) << star.status().ToString();
}

TEST(CorsConfigTest, LibraryStarWithTokensIsRefusedAtStart) {
  TempDir dir;
  auto store = OpenStore("sqlite:" + dir.file("h.db"));
  ASSERT_TRUE(store.ok());
  ServerOptions options;
  options.config.listen = "127.0.0.1:0";
  options.config.cors_origins = {"*"};
  options.config.tokens.resize(1);
  options.config.tokens[0].token = "abcdefghijklmnop";
  options.config.tokens[0].scopes = {TokenScope::kRead};
  auto server = Server::Start(store->get(), options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(server.status().message().find("cors_origins"), std::string::npos);
}

TEST(CorsServeTest, ServeReadsCorsOriginsFromItsConfigFile) {
  TempDir dir;
  ServeProcess serve(
      dir, "sqlite:" + dir.file("h.db"),
      "[server]\ncors_origins = [\"https://ops.example.com\"]\n");
  ASSERT_TRUE(serve.ready()) << serve.stderr_text();
  HttpClient c;
  auto r =
      c.Get(serve.base() + "/api/events", {"Origin: https://ops.example.com"});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("Access-Control-Allow-Origin"), "https://ops.example.com");
  EXPECT_EQ(serve.Stop(), 0);
}

}  // namespace
}  // namespace herald::testing
