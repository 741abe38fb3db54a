// Issue #13 item 8 leftovers: a --config that is a directory is refused
// like a missing file (exit 2, a clear message, nothing created) by every
// command taking --config; an HTTP/1.1 request without Host is a 400 with
// a JSON error body (RFC 9112 section 3.2), sent over a raw socket.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "server/server_test_util.h"

namespace herald {
namespace {

using testing::HeraldBin;
using testing::RunCommand;

std::set<std::string> Listing(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    out.insert(e.path().string());
  }
  return out;
}

TEST(ConfigDirectory, EveryCommandRefusesItAndCreatesNothing) {
  testing::TempDir dir;
  std::string conf = dir.file("herald.toml");  // a directory named like one
  ASSERT_TRUE(std::filesystem::create_directory(conf));
  const std::vector<std::vector<std::string>> commands{
      {"relay", "--config", conf},
      {"relay", "status", "--config", conf},
      {"parked", "list", "--config", conf, "--route", "r"},
      {"parked", "retry", "--config", conf, "--route", "r", "--all"},
      {"parked", "drop", "--config", conf, "--route", "r", "--all"},
      {"serve", "--config", conf, "--listen", "127.0.0.1:0"},
  };
  auto before = Listing(dir.path());
  for (const auto& args : commands) {
    std::vector<std::string> argv{HeraldBin()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string cmd = args[0] + " " + args[1];
    // Bounded: a command that took the directory for an empty config
    // would run (relay, serve) instead of exiting.
    testing::Child::Options o;
    o.stdout_path = dir.file("../out-" + std::to_string(getpid()));
    o.stderr_path = dir.file("../err-" + std::to_string(getpid()));
    testing::Child child(argv, o);
    bool exited = testing::WaitFor([&] { return !child.running(); },
                                   std::chrono::seconds(10));
    if (!exited) child.Signal(SIGKILL);
    int rc = child.Wait();
    std::string err = testing::ReadFile(o.stderr_path);
    std::remove(o.stdout_path.c_str());
    std::remove(o.stderr_path.c_str());
    EXPECT_TRUE(exited) << cmd << " kept running";
    EXPECT_EQ(rc, 2) << cmd << ": " << err;
    EXPECT_NE(
        err.find("cannot read config file '" + conf + "': it is a directory"),
        std::string::npos)
        << cmd << ": " << err;
    EXPECT_EQ(Listing(dir.path()), before) << cmd << " created something";
  }
  // A missing file: the same exit status and the same start of message.
  std::string out, err;
  EXPECT_EQ(RunCommand({HeraldBin(), "relay", "status", "--config",
                        dir.file("missing.toml")},
                       &out, &err),
            2);
  EXPECT_NE(err.find("cannot read config file"), std::string::npos) << err;
}

// Sends `request` on a fresh connection and reads until the server closes
// or 5 s pass.
std::string Exchange(int port, const std::string& request) {
  int fd = testing::ConnectLoopback(port);
  EXPECT_GE(fd, 0);
  EXPECT_TRUE(testing::SendAll(fd, request));
  std::string text;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < until &&
         testing::ReadSome(fd, &text, 100)) {
    if (text.find("\r\n\r\n") != std::string::npos &&
        request.find("Connection: close") == std::string::npos &&
        text.rfind("HTTP/1.1 200", 0) == 0) {
      break;  // a keep-alive answer: the head is enough
    }
  }
  ::close(fd);
  return text;
}

TEST(HostHeader, Http11WithoutHostIsA400WithAJsonBody) {
  testing::TempDir dir;
  testing::ServeProcess serve(dir, "sqlite:" + dir.file("h.db"));
  ASSERT_TRUE(serve.ready()) << serve.stderr_text();

  std::string text = Exchange(serve.port(), "GET /health HTTP/1.1\r\n\r\n");
  ASSERT_EQ(text.rfind("HTTP/1.1 400", 0), 0u) << text;
  auto body_at = text.find("\r\n\r\n");
  ASSERT_NE(body_at, std::string::npos) << text;
  auto doc = Json::Parse(text.substr(body_at + 4));
  ASSERT_TRUE(doc.ok()) << text;
  const Json* e = doc->Find("error");
  ASSERT_NE(e, nullptr) << text;
  EXPECT_EQ(e->Find("code")->as_string(), "bad_request");
  EXPECT_NE(e->Find("message")->as_string().find("Host"), std::string::npos);

  // With Host, and HTTP/1.0 without it, the request is answered.
  text = Exchange(serve.port(), "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(text.rfind("HTTP/1.1 200", 0), 0u) << text;
  text = Exchange(serve.port(), "GET /health HTTP/1.0\r\n\r\n");
  EXPECT_NE(text.find(" 200 "), std::string::npos) << text;
}

}  // namespace
}  // namespace herald
