// Config parsing: every key of the documented shape, and errors that name
// the key and its line; the CLI exits 2 on a bad config.
#include "herald/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "herald/sender.h"
#include "support/test_util.h"

namespace herald {
namespace {

using std::chrono::milliseconds;

TEST(RelayConfig, ParsesEveryKey) {
  auto c = ParseConfig(R"(
[store]
url = "sqlite:herald.db"
sqlite_checkpoint_pages = 2000

[relay]
lease_ttl = "3s"
idle_poll = "500ms"
busy_poll = 2
owner = "me"

[server]
listen = "0.0.0.0:9090"
max_body_bytes = 2048
max_header_bytes = 4096
max_connections = 50
threads = 3
idle_timeout = "30s"
header_timeout = "5s"
max_wait = "20s"
heartbeat = "1s"
page_cache_mb = 512
tail_events = 5000
[[server.tokens]]
name = "ci"
token = "secret"
scopes = ["read", "append"]

[[route]]
name = "refunds"
sender = "http://127.0.0.1:9000/events"
types = ["order.*"]
streams = ["order-*", "refund-?"]
on_failure = "park"
batch = 50
max_in_flight = 4
max_attempts = 7
backoff_initial = "20ms"
backoff_max = "2s"
connect_timeout = "1s"
timeout = "3s"
headers = { Authorization = "Bearer x", X-Team = "pay" }
mode = "structured"
tls_verify = false
source = "shop"

[[route]]
name = "archive"
sender = "file:/tmp/events.jsonl"
fsync = false
)",
                       "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->store_url, "sqlite:herald.db");
  EXPECT_EQ(c->store_options.sqlite_checkpoint_pages, 2000);
  EXPECT_EQ(c->relay.lease_ttl, milliseconds(3000));
  EXPECT_EQ(c->relay.idle_poll, milliseconds(500));
  EXPECT_EQ(c->relay.busy_poll, milliseconds(2));
  EXPECT_EQ(c->relay.owner, "me");
  EXPECT_EQ(c->server.listen, "0.0.0.0:9090");
  EXPECT_EQ(c->server.max_body_bytes, 2048);
  EXPECT_EQ(c->server.max_connections, 50);
  EXPECT_EQ(c->server.threads, 3);
  EXPECT_EQ(c->server.idle_timeout, milliseconds(30000));
  EXPECT_EQ(c->server.page_cache_mb, 512);
  EXPECT_EQ(c->server.tail_events, 5000);
  ASSERT_EQ(c->server.tokens.size(), 1u);
  EXPECT_EQ(c->server.tokens[0].token, "secret");
  EXPECT_TRUE(c->server.tokens[0].Allows(TokenScope::kAppend));
  EXPECT_FALSE(c->server.tokens[0].Allows(TokenScope::kAdmin));
  ASSERT_EQ(c->routes.size(), 2u);
  const RouteConfig& r = c->routes[0];
  EXPECT_EQ(r.name, "refunds");
  EXPECT_EQ(r.line, 29);
  EXPECT_EQ(r.types, std::vector<std::string>{"order.*"});
  EXPECT_EQ(r.streams.size(), 2u);
  EXPECT_EQ(r.on_failure, FailurePolicy::kPark);
  EXPECT_EQ(r.batch, 50);
  EXPECT_EQ(r.max_in_flight, 4);
  EXPECT_EQ(r.retry.max_attempts, 7);
  EXPECT_EQ(r.retry.backoff_initial, milliseconds(20));
  EXPECT_EQ(r.retry.backoff_max, milliseconds(2000));
  EXPECT_EQ(r.sender_options.timeout, milliseconds(3000));
  ASSERT_EQ(r.sender_options.headers.size(), 2u);
  EXPECT_EQ(r.sender_options.mode, CloudEventsMode::kStructured);
  EXPECT_FALSE(r.sender_options.tls_verify);
  EXPECT_EQ(r.sender_options.source, "shop");
  EXPECT_FALSE(c->routes[1].sender_options.fsync);
  EXPECT_EQ(c->routes[1].on_failure, FailurePolicy::kBlock);  // default
  EXPECT_EQ(c->routes[1].batch, 100);
}

TEST(RelayConfig, NonAsciiInStringsAndCommentsIsFine) {
  auto c = ParseConfig(
      "# caf\xc3\xa9 \xe2\x9c\x93\n[relay]\nowner = \"caf\xc3\xa9\"\n"
      "[server]\n[[server.tokens]]\ntoken = \"\"\"\n\xc3\xa9\\\n  x\"\"\"\n"
      "scopes = ['read']\n",
      "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->relay.owner, "caf\xc3\xa9");
  ASSERT_EQ(c->server.tokens.size(), 1u);
  EXPECT_EQ(c->server.tokens[0].token, "\xc3\xa9x");
}

TEST(RelayConfig, DefaultsWithoutTables) {
  auto c = ParseConfig("");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->store_url, "sqlite:herald.db");
  EXPECT_EQ(c->server.listen, "127.0.0.1:8080");
  EXPECT_EQ(c->store_options.sqlite_checkpoint_pages, 10000);
  EXPECT_EQ(c->relay.lease_ttl, milliseconds(10000));
  EXPECT_EQ(c->relay.idle_poll, milliseconds(1000));
  EXPECT_TRUE(c->routes.empty());
  EXPECT_TRUE(c->server.console);
  auto off = ParseConfig("[server]\nconsole = false\n");
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_FALSE(off->server.console);
}

// Each bad config fails with InvalidArgument naming the key and the line.
struct BadCase {
  const char* text;
  const char* expect1;
  const char* expect2;
};

TEST(RelayConfig, ErrorsNameKeyAndLine) {
  const BadCase cases[] = {
      {"[[route]]\nname = \"a\"\nsender = \"stdout:\"\nbatchh = 3\n",
       "t.toml:4:", "batchh: unknown key"},
      {"[[route]]\nname = \"a\"\nsender = \"htp:/x\"\n",
       "t.toml:3:", "unknown sender scheme 'htp'"},
      {"[[route]]\nname = \"a\"\nsender = \"http://\"\n",
       "t.toml:3:", "has no host"},
      {"[[route]]\nname = \"a\"\nsender = \"stdout:\"\nbatch = -5\n",
       "t.toml:4:", "batch: must be between 1 and 10000, not -5"},
      {"[[route]]\nname = \"a\"\nsender = \"stdout:\"\non_failure = \"drop\"\n",
       "t.toml:4:", "unknown policy 'drop'"},
      {"[[route]]\nname = \"a\"\nsender = \"stdout:\"\nbatch = \"ten\"\n",
       "t.toml:4:", "batch: must be an integer, not a string"},
      {"[[route]]\nname = \"a\"\nsender = \"stdout:\"\ntypes = [1]\n",
       "t.toml:4:", "must be an array of strings"},
      {"[[route]]\nname = \"a\"\nsender = \"stdout:\"\ntimeout = \"5 "
       "parsecs\"\n",
       "t.toml:4:", "not a duration"},
      {"[[route]]\nname = \"a\"\n", "t.toml:1:", "sender: is required"},
      {"[[route]]\nname = \"a b\"\nsender = \"stdout:\"\n",
       "t.toml:2:", "route.name"},
      {"[[route]]\nname = \"a\"\nsender = \"stdout:\"\n[[route]]\nname = "
       "\"a\"\nsender = \"stdout:\"\n",
       "t.toml:4:", "defined twice"},
      {"[stor]\nurl = \"x\"\n", "t.toml:1:", "stor: unknown key"},
      {"[store]\nsqlite_checkpoint_pages = -1\n",
       "t.toml:2:", "store.sqlite_checkpoint_pages: must be between 0 and"},
      {"[store]\nsqlite_checkpoint_pages = \"10k\"\n",
       "t.toml:2:", "store.sqlite_checkpoint_pages: must be an integer"},
      {"[server]\nlisten = \"nowhere\"\n", "t.toml:2:", "server.listen"},
      {"[server]\npage_cache_mb = -1\n",
       "t.toml:2:", "server.page_cache_mb: must be between 0 and"},
      {"[server]\ntail_events = 0\n", "t.toml:2:", "server.tail_events"},
      {"[server]\nconsole = \"no\"\n",
       "t.toml:2:", "server.console: must be a boolean, not a string"},
      {"[server]\n[[server.tokens]]\ntoken = \"t\"\nscopes = [\"root\"]\n",
       "t.toml:4:", "unknown scope 'root'"},
      {"[relay]\nlease_ttl = \"10ms\"\n", "t.toml:2:", "relay.lease_ttl"},
      {"[[route]\nname = 1", "t.toml:1:", ""},  // TOML syntax error
      // Non-ASCII where toml++ 3.3 would reach undefined behaviour.
      {"[store]\nurl = \"a\"\xd2\x94x = 1\n",
       "t.toml:2:", "non-ASCII character outside a string"},
      {"[relay]\nowner = \"\xff\"\n", "t.toml:2:", "not valid UTF-8"},
      {"[relay]\nowner =0\"\xc2\xa7\"\n",
       "t.toml:2:", "non-ASCII character outside a string"},
      {"[relay]\nowner = \"\"\"\\\n\xc2\xa7\"\"\"\n",
       "t.toml:3:", "line-ending backslash"},
  };
  for (const auto& c : cases) {
    auto r = ParseConfig(c.text, "t.toml");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_TRUE(r.status().IsInvalidArgument()) << c.text;
    EXPECT_NE(r.status().message().find(c.expect1), std::string::npos)
        << r.status().message();
    EXPECT_NE(r.status().message().find(c.expect2), std::string::npos)
        << r.status().message();
  }
}

TEST(RelayConfig, Durations) {
  EXPECT_EQ(*ParseDuration("250ms"), milliseconds(250));
  EXPECT_EQ(*ParseDuration("1.5s"), milliseconds(1500));
  EXPECT_EQ(*ParseDuration("2m"), milliseconds(120000));
  EXPECT_EQ(*ParseDuration("1h"), milliseconds(3600000));
  EXPECT_FALSE(ParseDuration("10").ok());
  EXPECT_FALSE(ParseDuration("s").ok());
  EXPECT_FALSE(ParseDuration("1..2s").ok());
  EXPECT_FALSE(ParseDuration("-1s").ok());
}

TEST(RelayConfig, Globs) {
  EXPECT_TRUE(GlobMatch("order.*", "order.placed"));
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("o?der-*-x", "order-42-x"));
  EXPECT_FALSE(GlobMatch("order.*", "refund.placed"));
  EXPECT_FALSE(GlobMatch("a?", "a"));
}

TEST(RelayConfig, SenderUrls) {
  EXPECT_TRUE(ValidateSenderUrl("http://127.0.0.1:9000/events").ok());
  EXPECT_TRUE(ValidateSenderUrl("https://user:pw@example.com/x?y=1").ok());
  EXPECT_TRUE(ValidateSenderUrl("http://[::1]:80/").ok());
  EXPECT_TRUE(ValidateSenderUrl("file:/tmp/x.jsonl").ok());
  EXPECT_TRUE(ValidateSenderUrl("stdout:").ok());
  EXPECT_FALSE(ValidateSenderUrl("http://h:99999/").ok());
  EXPECT_FALSE(ValidateSenderUrl("http:/h").ok());
  EXPECT_FALSE(ValidateSenderUrl("file:").ok());
  EXPECT_FALSE(ValidateSenderUrl("127.0.0.1:9000").ok());
  EXPECT_FALSE(ValidateSenderUrl("http://a b/").ok());
  RegisterSenderScheme("testq", [](const RouteConfig&) {
    return Result<std::unique_ptr<Sender>>(Status::Unavailable("no"));
  });
  EXPECT_TRUE(ValidateSenderUrl("testq://broker/topic").ok());
  // A scheme registered the old way takes the built-in senders' options.
  auto c = ParseConfig(
      "[[route]]\nname = \"q\"\nsender = \"testq://b/t\"\n"
      "timeout = \"3s\"\nheaders = { A = \"1\" }\n",
      "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->routes[0].sender_options.timeout, milliseconds(3000));
  EXPECT_EQ(c->routes[0].sender_options.headers.size(), 1u);
  auto made = MakeSender(c->routes[0]);
  EXPECT_TRUE(made.status().IsUnavailable()) << made.status().ToString();
}

// A scheme registered from outside core, with an option of its own: the
// config validates it at load (errors name key and line), core keeps the
// keys every route has, and the sender receives the value.
TEST(RelayConfig, RegisteredSchemeValidatesItsOwnOptions) {
  struct Greeter final : Sender {
    explicit Greeter(std::string g) : greeting(std::move(g)) {}
    void Send(std::span<const Event> events, std::span<SendResult> results,
              std::chrono::steady_clock::time_point) override {
      for (size_t i = 0; i < events.size(); ++i) {
        said.push_back(greeting + " " + events[i].stream);
        results[i] = SendResult{};
      }
    }
    std::string_view kind() const override { return "greet"; }
    std::string greeting;
    std::vector<std::string> said;
  };
  SenderScheme greet;
  greet.validate_url = [](std::string_view url) {
    if (url.substr(6).empty()) {
      return Status::InvalidArgument("greet: needs a name");
    }
    return Status::OK();
  };
  greet.validate_options = [](RouteConfig* route) {
    const RouteOptions& o = route->options;
    bool have = false;
    for (const auto& f : o.fields) {
      if (f.key != "greeting") return o.UnknownKey(f, "greeting");
      std::string g;
      HERALD_RETURN_IF_ERROR(o.GetString(f.key, f.value, &g));
      if (g.empty()) return o.Error(f.key, f.value.line, "must not be empty");
      have = true;
    }
    if (!have) return o.Error("greeting", route->line, "is required");
    return Status::OK();
  };
  greet.make_sender =
      [](const RouteConfig& route) -> Result<std::unique_ptr<Sender>> {
    const OptionValue* g = route.options.Find("greeting");
    if (!g) return Status::InvalidArgument("no greeting");
    return std::unique_ptr<Sender>(new Greeter(g->string));
  };
  RegisterScheme("greet", greet);

  auto c = ParseConfig(
      "[[route]]\nname = \"a\"\nsender = \"greet:bob\"\n"
      "greeting = \"hi\"\nbatch = 7\nsource = \"shop\"\n",
      "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const RouteConfig& r = c->routes[0];
  EXPECT_EQ(r.batch, 7);  // core's keys stay core's
  EXPECT_EQ(r.sender_options.source, "shop");
  ASSERT_EQ(r.options.fields.size(), 1u);  // only the scheme's key
  EXPECT_EQ(r.options.fields[0].value.line, 4);
  auto s = MakeSender(r);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  Event e;
  e.stream = "order-1";
  SendResult result = SendResult::NotSent();
  (*s)->Send(std::span<const Event>(&e, 1), std::span<SendResult>(&result, 1),
             std::chrono::steady_clock::now() + std::chrono::seconds(1));
  EXPECT_TRUE(result.status.ok());
  auto* g = dynamic_cast<Greeter*>(s->get());
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->said, std::vector<std::string>{"hi order-1"});

  const BadCase cases[] = {
      {"[[route]]\nname = \"a\"\nsender = \"greet:bob\"\ngreeting = 5\n",
       "t.toml:4: route 'a'.greeting: ", "must be a string, not an integer"},
      {"[[route]]\nname = \"a\"\nsender = \"greet:bob\"\ngreeting = "
       "\"hi\"\n\ngreting = \"x\"\n",
       "t.toml:6: route 'a'.greting: unknown key (expected name, sender, ",
       "on_failure, source, from, greeting)"},
      {"[[route]]\nname = \"a\"\nsender = \"greet:bob\"\ngreeting = \"\"\n",
       "t.toml:4: route 'a'.greeting: ", "must not be empty"},
      {"[[route]]\nname = \"a\"\nsender = \"greet:bob\"\n",
       "t.toml:1: route 'a'.greeting: ", "is required"},
      {"[[route]]\nname = \"a\"\nsender = \"greet:\"\ngreeting = \"hi\"\n",
       "t.toml:3: route 'a'.sender: ", "greet: needs a name"},
      // A built-in scheme does not take another scheme's key.
      {"[[route]]\nname = \"a\"\nsender = \"stdout:\"\ngreeting = \"hi\"\n",
       "t.toml:4: route 'a'.greeting: ", "unknown key"},
  };
  for (const auto& bad : cases) {
    auto r2 = ParseConfig(bad.text, "t.toml");
    ASSERT_FALSE(r2.ok()) << bad.text;
    EXPECT_TRUE(r2.status().IsInvalidArgument());
    EXPECT_NE(r2.status().message().find(bad.expect1), std::string::npos)
        << r2.status().message();
    EXPECT_NE(r2.status().message().find(bad.expect2), std::string::npos)
        << r2.status().message();
  }

  // A route built in code carries the same options; ValidateRoute runs the
  // scheme's validator.
  RouteConfig code;
  code.name = "b";
  code.sender = "greet:bob";
  Status st = ValidateRoute(code, false);
  EXPECT_EQ(st.message(), "route 'b'.greeting: is required");
  code.options.fields.push_back({"greeting", OptionValue::Integer(3)});
  st = ValidateRoute(code, false);
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_EQ(st.message(),
            "route 'b'.greeting: must be a string, not an integer");
  code.options.fields[0].value = OptionValue::String("hello");
  EXPECT_TRUE(ValidateRoute(code, false).ok());
}

// The built-in schemes keep taking every key of SenderOptions, so existing
// configs load unchanged.
TEST(RelayConfig, BuiltinSchemesKeepTheirKeys) {
  auto c = ParseConfig(
      "[[route]]\nname = \"a\"\nsender = \"file:/tmp/x\"\n"
      "timeout = \"2s\"\nfsync = false\n"
      "[[route]]\nname = \"b\"\nsender = \"https://h/x\"\n"
      "fsync = false\nca_file = \"/ca.pem\"\nheaders = { A = \"1\" }\n",
      "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->routes[0].sender_options.timeout, milliseconds(2000));
  EXPECT_FALSE(c->routes[0].sender_options.fsync);
  EXPECT_EQ(c->routes[1].sender_options.ca_file, "/ca.pem");
  ASSERT_EQ(c->routes[1].sender_options.headers.size(), 1u);
  auto bad = ParseConfig(
      "[[route]]\nname = \"a\"\nsender = \"http://h/\"\n"
      "headers = { \"A B\" = \"1\" }\n",
      "t.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(
                "t.toml:4: route 'a'.headers: 'A B' is not a header name"),
            std::string::npos)
      << bad.status().message();
}

TEST(RelayConfig, CloudEventEnvelope) {
  Event e;
  e.id = "01890a5d-ac96-774b-bcce-b302099a8057";
  e.position = 7;
  e.stream = "order-1";
  e.stream_version = 2;
  e.type = "order.placed";
  e.payload = R"({"a":1})";
  e.occurred_at_us = 1;
  std::string out;
  AppendCloudEventJson(e, "shop", &out);
  EXPECT_EQ(
      out,
      R"({"specversion":"1.0","id":"01890a5d-ac96-774b-bcce-b302099a8057",)"
      R"("source":"shop","type":"order.placed","subject":"order-1",)"
      R"("time":"1970-01-01T00:00:00.000001Z",)"
      R"("datacontenttype":"application/json","position":7,)"
      R"("streamversion":2,"data":{"a":1}})");
  e.content_type = "application/octet-stream";
  e.payload = "hi!";
  out.clear();
  AppendCloudEventJson(e, "shop", &out);
  EXPECT_NE(out.find(R"("data_base64":"aGkh")"), std::string::npos) << out;
  auto h = CloudEventHeaders(e, "shop");
  EXPECT_EQ(h[1].first, "ce-id");
  EXPECT_EQ(h[4].second, "order-1");
  EXPECT_EQ(h[6].second, "7");
  e.type = "order placed \"ü\" 100%";
  h = CloudEventHeaders(e, "shop");
  EXPECT_EQ(h[3].second, "order%20placed%20%22%C3%BC%22%20100%25");
}

// The CLI: bad configs exit 2 with the key and line on stderr.
TEST(RelayConfig, CliExitsTwoOnBadConfig) {
  testing::TempDir dir;
  const std::pair<const char*, const char*> cases[] = {
      {"[[route]]\nname = \"a\"\nsender = \"stdout:\"\nbogus = 1\n",
       ":4: route 'a'.bogus: unknown key"},
      {"[[route]]\nname = \"a\"\nsender = \"htp://x\"\n",
       ":3: route 'a'.sender: unknown sender scheme 'htp'"},
      {"[[route]]\nname = \"a\"\nsender = \"stdout:\"\nbatch = -1\n",
       ":4: route 'a'.batch: must be between 1 and 10000"},
      {"[[route]]\nname = \"a\"\nsender = \"stdout:\"\non_failure = \"pray\"\n",
       ":4: route 'a'.on_failure: unknown policy 'pray'"},
      {"[[route]]\nname = \"a\"\nsender = \"stdout:\"\nmax_in_flight = true\n",
       ":4: route 'a'.max_in_flight: must be an integer, not a boolean"},
  };
  for (const auto& [text, expect] : cases) {
    std::string path = dir.file("bad.toml");
    std::ofstream(path) << "[store]\nurl = \"" << dir.file("h.db") << "\"\n"
                        << text;
    for (auto args : {std::vector<std::string>{"relay", "--config", path},
                      {"relay", "status", "--config", path},
                      {"parked", "list", "--config", path, "--route", "a"}}) {
      args.insert(args.begin(), testing::HeraldBin());
      std::string out, err;
      EXPECT_EQ(testing::RunCommand(args, &out, &err), 2) << err;
      // Two header lines shift the line numbers by 2.
      std::string e(expect);
      int line = std::stoi(e.substr(1)) + 2;
      e = ":" + std::to_string(line) + e.substr(e.find(':', 1));
      EXPECT_NE(err.find(e), std::string::npos) << err << " / " << e;
    }
  }
  std::string out, err;
  EXPECT_EQ(testing::RunCommand({testing::HeraldBin(), "relay", "--config",
                                 dir.file("missing.toml")},
                                &out, &err),
            2);
  EXPECT_NE(err.find("missing.toml"), std::string::npos);
}

}  // namespace
}  // namespace herald
