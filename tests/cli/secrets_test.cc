// No secret in any output (#13.4): `herald serve` and `herald relay` run
// routes whose URLs carry a password and a token parameter, a route header
// with a bearer token, server tokens, and (under with-postgres.sh) a
// PostgreSQL URL with a password. Deliveries fail every way that records an
// error (parked, blocked, unreachable). Then every output is searched for
// the secrets: process stdout/stderr, the API bodies, /metrics, /health,
// `relay status`, `parked list`, and what the store keeps.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include "herald/json.h"
#include "herald/relay.h"
#include "herald/store.h"
#include "herald/uuid.h"
#include "support/test_util.h"

namespace herald {
namespace {

using testing::Child;
using testing::FreePort;
using testing::HeraldBin;
using testing::RunCommand;
using testing::TempDir;
using testing::WaitFor;

const char* const kSecrets[] = {"hook-pw-s3cret",      "query-t0ken-s3cret",
                                "header-t0ken-s3cret", "down-pw-s3cret",
                                "sig-s3cret",          "read-t0ken-s3cret",
                                "admin-t0ken-s3cret",  "herald-pw-secret"};

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

class Secrets : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    HERALD_SKIP_UNLESS_BACKEND(GetParam());
    url_ = testing::FreshStoreUrl(GetParam(), dir_);
    if (GetParam() == "postgresql") {
      // The same fresh database, reached as the user with a password.
      const char* pw = std::getenv("HERALD_TEST_PG_PASSWORD_URL");
      if (!pw && std::getenv("CI"))
        FAIL() << "HERALD_TEST_PG_PASSWORD_URL unset";
      if (!pw) GTEST_SKIP() << "HERALD_TEST_PG_PASSWORD_URL unset";
      std::string base = pw;
      url_ = base.substr(0, base.rfind('/') + 1) +
             url_.substr(url_.rfind('/') + 1);
      ASSERT_NE(url_.find("herald-pw-secret"), std::string::npos);
    }
    auto s = OpenStore(url_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  // GET (or POST) `path` on the server with `token`; returns the body.
  std::string Http(const std::string& path, const std::string& token,
                   const std::string& method = "GET", int* code = nullptr) {
    std::string out, err;
    int rc = RunCommand({"curl", "-sS", "--max-time", "10", "-X", method, "-w",
                         "\n%{http_code}", "-H",
                         "Authorization: Bearer " + token, base_ + path},
                        &out, &err);
    EXPECT_EQ(rc, 0) << err;
    auto nl = out.rfind('\n');
    if (code) *code = std::atoi(out.c_str() + nl + 1);
    return out.substr(0, nl);
  }

  TempDir dir_;
  std::string url_;
  std::string base_;
  std::unique_ptr<Store> store_;
};

TEST_P(Secrets, NoSecretInAnyOutput) {
  // The receiver rejects the poison event (HTTP 400) on every route.
  Event ok1 = testing::MakeEvent("s-1", "order.placed", "{}");
  Event poison = testing::MakeEvent("s-2", "order.placed", "{}");
  ok1.id = NewUuidV7();
  poison.id = NewUuidV7();
  int rport = FreePort();
  std::string ready = dir_.file("ready");
  Child receiver({HERALD_TEST_RECEIVER, "--port", std::to_string(rport),
                  "--log", dir_.file("received.log"), "--ready", ready,
                  "--reject-id", poison.id});
  ASSERT_TRUE(WaitFor([&] { return std::ifstream(ready).good(); }));
  std::vector<Event> events{ok1, poison};
  ASSERT_TRUE(store_->Append(std::span<Event>(events)).ok());
  poison = events[1];

  std::string hook =
      "http://hookuser:hook-pw-s3cret@127.0.0.1:" + std::to_string(rport) +
      "/events?token=query-t0ken-s3cret&x=1";
  int port = FreePort();
  std::string config = dir_.file("c.toml");
  std::ofstream(config)
      << "[store]\nurl = \"" << url_ << "\"\n"
      << "[relay]\nidle_poll = \"100ms\"\n"
      << "[server]\nlisten = \"127.0.0.1:" << port << "\"\n"
      << "[[server.tokens]]\ntoken = \"read-t0ken-s3cret\"\n"
      << "scopes = [\"read\"]\n"
      << "[[server.tokens]]\ntoken = \"admin-t0ken-s3cret\"\n"
      << "scopes = [\"read\", \"append\", \"admin\"]\n"
      // Parks the poison event: a parked error.
      << "[[route]]\nname = \"hooks\"\nsender = \"" << hook << "\"\n"
      << "on_failure = \"park\"\n"
      << "headers = { Authorization = \"Bearer header-t0ken-s3cret\" }\n"
      // Blocks on it: a blocked error.
      << "[[route]]\nname = \"blocky\"\nsender = \"" << hook << "\"\n"
      << "on_failure = \"block\"\nbatch = 1\nbackoff_max = \"60s\"\n"
      << "headers = { Authorization = \"Bearer header-t0ken-s3cret\" }\n"
      // Nobody listens: libcurl's connection errors.
      << "[[route]]\nname = \"down\"\n"
      << "sender = \"http://downuser:down-pw-s3cret@127.0.0.1:" << FreePort()
      << "/x?sig=sig-s3cret\"\n"
      << "backoff_max = \"100ms\"\n";

  Child::Options so;
  so.stdout_path = dir_.file("serve.out");
  so.stderr_path = dir_.file("serve.err");
  Child serve({HeraldBin(), "serve", "--config", config}, so);
  base_ = "http://127.0.0.1:" + std::to_string(port);
  ASSERT_TRUE(WaitFor([&] {
    return Slurp(dir_.file("serve.err")).find("serving") != std::string::npos;
  })) << Slurp(dir_.file("serve.err"));

  // Every route has met its failure.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto body = Http("/api/relays", "read-t0ken-s3cret");
        auto j = Json::Parse(body);
        if (!j.ok() || !j->Find("routes")) return false;
        int ready_routes = 0;
        for (const auto& r : j->Find("routes")->items()) {
          const Json* name = r.Find("name");
          const Json* err = r.Find("last_error");
          const Json* parked = r.Find("parked");
          const Json* blocked = r.Find("blocked");
          int64_t n = 0;
          if (parked) (void)parked->TryInt64(&n);
          bool has_error = err && err->is_string() && !err->as_string().empty();
          if (name->as_string() == "hooks") ready_routes += n == 1;
          if (name->as_string() == "blocky") {
            ready_routes += blocked && blocked->is_object();
          }
          if (name->as_string() == "down") ready_routes += has_error;
        }
        return ready_routes == 3;
      },
      std::chrono::seconds(30)));

  // The operator retries the blocked event over HTTP: it is sent again at
  // once (not after backoff_max) and blocks again.
  auto poison_attempts = [&] {
    std::string log = Slurp(dir_.file("received.log"));
    size_t n = 0;
    for (size_t at = log.find(poison.id); at != std::string::npos;
         at = log.find(poison.id, at + 1)) {
      ++n;
    }
    return n;
  };
  size_t before = poison_attempts();
  int code = 0;
  Http("/api/relays/blocky/parked/" + poison.id + "/retry",
       "admin-t0ken-s3cret", "POST", &code);
  EXPECT_EQ(code, 202);
  EXPECT_TRUE(WaitFor([&] { return poison_attempts() > before; }));

  // `herald relay` (another process; it waits for the leases) prints its
  // start-up line too.
  Child::Options ro;
  ro.stdout_path = dir_.file("relay.out");
  ro.stderr_path = dir_.file("relay.err");
  Child relay({HeraldBin(), "relay", "--config", config}, ro);
  ASSERT_TRUE(WaitFor([&] {
    return Slurp(dir_.file("relay.err")).find("relaying") != std::string::npos;
  })) << Slurp(dir_.file("relay.err"));

  std::map<std::string, std::string> outputs;
  outputs["GET /api/relays"] = Http("/api/relays", "read-t0ken-s3cret");
  for (const char* route : {"hooks", "blocky", "down"}) {
    outputs[std::string("GET parked ") + route] = Http(
        std::string("/api/relays/") + route + "/parked", "read-t0ken-s3cret");
  }
  outputs["GET /api/events/{id}"] =
      Http("/api/events/" + poison.id, "read-t0ken-s3cret");
  outputs["GET /metrics"] = Http("/metrics", "read-t0ken-s3cret");
  outputs["GET /health"] = Http("/health", "read-t0ken-s3cret");
  EXPECT_NE(outputs["GET /api/relays"].find("HTTP 400"), std::string::npos)
      << outputs["GET /api/relays"];
  EXPECT_NE(outputs["GET parked hooks"].find("HTTP 400"), std::string::npos)
      << outputs["GET parked hooks"];
  // What was masked still says where: the user and the host stay.
  EXPECT_NE(outputs["GET /api/relays"].find("hookuser:***@127.0.0.1"),
            std::string::npos)
      << outputs["GET /api/relays"];

  std::string out, err;
  EXPECT_EQ(RunCommand({HeraldBin(), "relay", "status", "--config", config},
                       &out, &err),
            0)
      << err;
  outputs["relay status"] = out + err;
  for (const char* route : {"hooks", "blocky", "down"}) {
    EXPECT_EQ(RunCommand({HeraldBin(), "parked", "list", "--config", config,
                          "--route", route},
                         &out, &err),
              0)
        << err;
    outputs[std::string("parked list ") + route] = out + err;
  }
  EXPECT_NE(outputs["parked list hooks"].find("HTTP 400"), std::string::npos);

  // What the store keeps, read raw (no redaction on the way out).
  for (const char* route : {"hooks", "blocky", "down"}) {
    auto rows = store_->ListParked(route, "", 1000);
    ASSERT_TRUE(rows.ok());
    for (const auto& p : *rows) {
      outputs[std::string("stored parked ") + route] += p.error + "\n";
    }
    auto st = store_->GetRouteStatus(route);
    ASSERT_TRUE(st.ok());
    if (st->has_value()) {
      outputs[std::string("stored status ") + route] = (*st)->last_error;
    }
  }
  EXPECT_NE(outputs["stored parked hooks"].find("HTTP 400"), std::string::npos);
  EXPECT_NE(outputs["stored status down"].find("down"), std::string::npos)
      << outputs["stored status down"];

  // serve stops and releases its leases; `herald relay` takes the routes
  // over and reports their errors on stderr.
  serve.Signal(SIGTERM);
  EXPECT_EQ(serve.Wait(), 0);
  EXPECT_TRUE(WaitFor(
      [&] {
        std::string e = Slurp(dir_.file("relay.err"));
        return e.find("route 'down'") != std::string::npos &&
               e.find("route 'blocky'") != std::string::npos;
      },
      std::chrono::seconds(20)))
      << Slurp(dir_.file("relay.err"));
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  outputs["serve stdout"] = Slurp(dir_.file("serve.out"));
  outputs["serve stderr"] = Slurp(dir_.file("serve.err"));
  outputs["relay stdout"] = Slurp(dir_.file("relay.out"));
  outputs["relay stderr"] = Slurp(dir_.file("relay.err"));
  EXPECT_NE(outputs["relay stderr"].find("HTTP 400"), std::string::npos)
      << outputs["relay stderr"];
  if (GetParam() == "sqlite") {
    std::string path = url_.substr(std::string("sqlite:").size());
    store_.reset();
    outputs["database file"] = Slurp(path) + Slurp(path + "-wal");
    EXPECT_GT(outputs["database file"].size(), 0u);
  }

  for (const auto& [what, text] : outputs) {
    for (const char* secret : kSecrets) {
      EXPECT_EQ(text.find(secret), std::string::npos)
          << what << " shows " << secret << ":\n"
          << text;
    }
  }
}

// A config error that quotes a sender URL masks its secrets too.
TEST(SecretsInErrors, BadSenderUrlIsQuotedMasked) {
  TempDir dir;
  std::string config = dir.file("c.toml");
  std::ofstream(config) << "[store]\nurl = \"sqlite:" << dir.file("h.db")
                        << "\"\n[[route]]\nname = \"r\"\n"
                        << "sender = \"http://u:bad-url-s3cret@h/a b\"\n";
  std::string out, err;
  EXPECT_EQ(RunCommand({HeraldBin(), "relay", "status", "--config", config},
                       &out, &err),
            2)
      << err;
  EXPECT_NE(err.find("u:***@h/a b"), std::string::npos) << err;
  EXPECT_EQ((out + err).find("bad-url-s3cret"), std::string::npos) << err;
}

INSTANTIATE_TEST_SUITE_P(Backends, Secrets,
                         ::testing::ValuesIn(testing::TestBackends()));

}  // namespace
}  // namespace herald
