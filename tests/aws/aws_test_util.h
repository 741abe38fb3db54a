// Test helpers for the SQS and SNS senders: the project's conformance
// server (tests/support/aws_conformance.py: the Query protocol with AWS's
// rules, every request's SigV4 signature verified by botocore) started on
// 127.0.0.1 on a free port, its control endpoint, and the credentials the
// tests use.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "herald/json.h"
#include "herald/sender.h"
#include "server/server_test_util.h"  // HttpClient
#include "support/relay_e2e.h"        // JsonStr
#include "support/test_util.h"

namespace herald::testing {

inline constexpr char kAwsKey[] = "AKIDHERALDTEST";
inline constexpr char kAwsSecret[] = "herald/test/secret+key";

// Where the conformance server script is (tests/support).
inline std::string AwsConformanceScript() {
  return std::string(HERALD_TEST_SOURCE_DIR) +
         "/tests/support/aws_conformance.py";
}

// One conformance server process, stopped (SIGKILL) on destruction.
class AwsConformanceServer {
 public:
  struct Options {
    std::string region = "us-east-1";
    std::string session_token;  // "" = the key has none
    int max_size = 262144;
  };
  AwsConformanceServer() : AwsConformanceServer(Options{}) {}
  explicit AwsConformanceServer(const Options& o) {
    std::string ready = dir_.file("ready");
    std::vector<std::string> argv = {
        "/usr/bin/python3", AwsConformanceScript(),
        "--ready",          ready,
        "--region",         o.region,
        "--access-key",     kAwsKey,
        "--secret-key",     kAwsSecret,
        "--max-size",       std::to_string(o.max_size)};
    if (!o.session_token.empty()) {
      argv.push_back("--session-token");
      argv.push_back(o.session_token);
    }
    Child::Options co;
    co.stderr_path = dir_.file("server.err");
    child_ = std::make_unique<Child>(argv, co);
    ready_ = WaitFor([&] { return std::ifstream(ready).good(); },
                     std::chrono::seconds(20));
    if (ready_) {
      std::ifstream(ready) >> port_;
    }
  }
  bool ready() const { return ready_; }
  std::string log() const { return ReadTextFile(dir_.file("server.err")); }
  std::string endpoint() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/";
  }
  int port() const { return port_; }

  // A queue URL / topic ARN on this server ("name" or "name.fifo").
  std::string QueueUrl(const std::string& name) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/123456789012/" +
           name;
  }
  static std::string TopicArn(const std::string& name) {
    return "arn:aws:sns:us-east-1:123456789012:" + name;
  }

  bool Cue(const std::string& json) {
    HttpClient c;
    return c.Post(endpoint() + "_control/cue", json).status == 200;
  }
  // Fails every entry carrying event `id`: code, SenderFault, how often
  // (-1 until cleared), mode ("entry", "hang", "cut-...").
  bool FailEvent(const std::string& id, const std::string& code,
                 bool sender_fault, int times = -1,
                 const std::string& mode = "entry") {
    return Cue("{\"fail\":{\"id\":\"" + id + "\",\"code\":\"" + code +
               "\",\"sender_fault\":" + (sender_fault ? "true" : "false") +
               ",\"times\":" + std::to_string(times) + ",\"mode\":\"" + mode +
               "\"}}");
  }
  bool Clear() { return Cue("{\"clear\":true}"); }

  // The messages stored for a queue URL or topic ARN, in order.
  std::vector<Json> Messages(const std::string& target) {
    HttpClient c;
    std::string q;
    for (char ch : target) {
      if (ch == ':' || ch == '/' || ch == '.') {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned>(ch));
        q += buf;
      } else {
        q += ch;
      }
    }
    auto r = c.Get(endpoint() + "_control/messages?target=" + q);
    std::vector<Json> out;
    auto doc = Json::Parse(r.body);
    if (!doc.ok() || !doc->is_array()) {
      ADD_FAILURE() << "messages: " << r.status << " " << r.body;
      return out;
    }
    for (const auto& m : doc->items()) out.push_back(m);
    return out;
  }
  Json Stats() {
    HttpClient c;
    auto doc = Json::Parse(c.Get(endpoint() + "_control/stats").body);
    return doc.ok() ? *doc : Json();
  }

 private:
  TempDir dir_;
  std::unique_ptr<Child> child_;
  bool ready_ = false;
  int port_ = 0;
};

// Sets an environment variable for a test's lifetime (restored after).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_) {
      ::setenv(name_.c_str(), old_.c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

// The test credentials in the environment (AWS_ACCESS_KEY_ID...) for a
// fixture's lifetime.
struct ScopedAwsEnv {
  ScopedEnv key{"AWS_ACCESS_KEY_ID", kAwsKey};
  ScopedEnv secret{"AWS_SECRET_ACCESS_KEY", kAwsSecret};
  ScopedEnv token{"AWS_SESSION_TOKEN", ""};
};

}  // namespace herald::testing
