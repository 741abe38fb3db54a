// [[consumer]] tables: every key parsed, each bad input an error naming the
// key and its line (exit 2 from the CLI, nothing changed); `herald relay
// reset` (re-sends everything, refused while a relay holds the route).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "herald/config.h"
#include "herald/consumer.h"
#include "herald/store.h"
#include "herald/time.h"
#include "support/test_util.h"

namespace herald {
namespace {

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}
bool Exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

using testing::Child;
using testing::HeraldBin;
using testing::RunCommand;
using testing::TempDir;
using testing::WaitFor;

constexpr char kGood[] = R"(
[[consumer]]
name = "refunds"
source = "http://127.0.0.1:8080"
inbox = "sqlite:refunds.db"
types = ["order.*"]
exec = "bin/refund"
on_failure = "park"
max_attempts = 7
backoff = "250ms"
backoff_max = "5s"
max_in_flight = 4
inbox_retention = "3d"
token = "s3cret"
)";

TEST(ConsumerConfig, ParsesEveryKey) {
  auto c = ParseConfig(kGood, "c.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->consumers.size(), 1u);
  const ConsumerConfig& cc = c->consumers[0];
  EXPECT_EQ(cc.name, "refunds");
  EXPECT_EQ(cc.source, "http://127.0.0.1:8080");
  EXPECT_EQ(cc.inbox, "sqlite:refunds.db");
  EXPECT_EQ(cc.types, std::vector<std::string>{"order.*"});
  EXPECT_EQ(cc.exec, "bin/refund");
  EXPECT_EQ(cc.on_failure, FailurePolicy::kPark);
  EXPECT_EQ(cc.retry.max_attempts, 7);
  EXPECT_EQ(cc.retry.backoff_initial, std::chrono::milliseconds(250));
  EXPECT_EQ(cc.retry.backoff_max, std::chrono::milliseconds(5000));
  EXPECT_EQ(cc.max_in_flight, 4);
  EXPECT_EQ(cc.inbox_retention, std::chrono::hours(72));
  ASSERT_NE(cc.options.Find("token"), nullptr);
  EXPECT_EQ(cc.options.Find("token")->string, "s3cret");
}

TEST(ConsumerConfig, Defaults) {
  auto c = ParseConfig(
      "[[consumer]]\nname = \"a\"\nsource = \"http://h:1\"\n"
      "inbox = \"postgresql://u@h/db\"\nsender = \"http://h:2/hook\"\n",
      "c.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const ConsumerConfig& cc = c->consumers[0];
  EXPECT_EQ(cc.on_failure, FailurePolicy::kBlock);
  EXPECT_EQ(cc.inbox_retention, std::chrono::hours(24 * 7));
  EXPECT_EQ(cc.retry.max_attempts, 5);
  EXPECT_EQ(cc.sender, "http://h:2/hook");
}

// Each case: a table and the text the error must hold (file:line: key).
TEST(ConsumerConfig, ErrorsNameKeyAndLine) {
  const std::string head =
      "[[consumer]]\nname = \"c\"\nsource = \"http://127.0.0.1:1\"\n"
      "inbox = \"sqlite:x.db\"\nexec = \"true\"\n";
  struct Case {
    std::string toml;
    std::string want;
  } cases[] = {
      {head + "queue = \"q\"\n",
       "c.toml:6: consumer 'c'.queue: unknown key (expected name, source"},
      {head + "on_failure = \"drop\"\n",
       "c.toml:6: consumer 'c'.on_failure: unknown policy 'drop'"},
      {head + "max_attempts = 0\n",
       "c.toml:6: consumer 'c'.max_attempts: must be between 1"},
      {head + "inbox_retention = \"10ms\"\n",
       "c.toml:6: consumer 'c'.inbox_retention: must be at least 1000ms"},
      {head + "limit = 0\n", "c.toml:6: consumer 'c'.limit: must be between"},
      {head + "sender = \"http://h:1/x\"\n",
       "consumer 'c'.sender: give `exec` or `sender`, not both"},
      {"[[consumer]]\nname = \"c\"\nsource = \"http://127.0.0.1:1\"\n"
       "inbox = \"mysql://x\"\nexec = \"true\"\n",
       "c.toml:4: consumer 'c'.inbox: 'mysql://x' is not sqlite:PATH"},
      {"[[consumer]]\nname = \"c\"\nsource = \"ftp://x\"\n",
       "c.toml:3: consumer 'c'.source: unknown source scheme 'ftp'"},
      {"[[consumer]]\nname = \"c\"\nsource = \"http://127.0.0.1:1\"\n"
       "exec = \"true\"\n",
       "c.toml:1: consumer 'c'.inbox: is required"},
      {"[[consumer]]\nname = \"c\"\nsource = \"http://127.0.0.1:1\"\n"
       "inbox = \"sqlite:x.db\"\n",
       "c.toml:1: consumer 'c'.exec: a consumer needs `exec` or `sender`"},
      {"[[consumer]]\nsource = \"http://127.0.0.1:1\"\n",
       "c.toml:1: consumer: a consumer needs a `name`"},
      {head + head, "consumer.name: consumer 'c' is defined twice"},
      {"consumer = 1\n", "c.toml:1: consumer: must be an array of tables"},
  };
  for (const auto& c : cases) {
    auto r = ParseConfig(c.toml, "c.toml");
    ASSERT_FALSE(r.ok()) << c.toml;
    EXPECT_TRUE(r.status().IsInvalidArgument());
    EXPECT_NE(r.status().message().find(c.want), std::string::npos)
        << r.status().message() << "\nwanted: " << c.want;
  }
}

// The CLI: a bad table is exit 2 with the message, and nothing is created.
TEST(ConsumerConfig, ConsumeRefusesABadConfigWithExit2) {
  TempDir dir;
  std::string path = dir.file("c.toml");
  WriteText(path,
            "[[consumer]]\nname = \"c\"\nsource = \"http://127.0.0.1:1\"\n"
            "inbox = \"sqlite:inbox.db\"\nexec = \"true\"\nbatch = 3\n");
  std::string out, err;
  EXPECT_EQ(RunCommand({HeraldBin(), "consume", "--config", path}, &out, &err),
            2);
  EXPECT_NE(err.find("c.toml:6: consumer 'c'.batch: unknown key"),
            std::string::npos)
      << err;
  EXPECT_FALSE(Exists(dir.file("inbox.db")));
  EXPECT_EQ(RunCommand({HeraldBin(), "consume", "--config", path, "--consumer",
                        "nope"},
                       &out, &err),
            2);
  EXPECT_EQ(
      RunCommand({HeraldBin(), "consume", "reset", "--config",
                  dir.file("none.toml"), "--consumer", "c", "--to-position",
                  "1", "--to-time", "2026-01-01T00:00:00Z"},
                 &out, &err),
      2);
  EXPECT_NE(err.find("exactly one of --to-position"), std::string::npos) << err;
}

// ---- herald relay reset -------------------------------------------------

class RelayReset : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = "sqlite:" + dir_.file("herald.db");
    auto store = OpenStore(db_);
    ASSERT_TRUE(store.ok());
    store_ = std::move(*store);
    std::vector<Event> events;
    for (int i = 0; i < 10; ++i) {
      Event e = testing::MakeEvent("s", "order.placed");
      e.occurred_at_us = 1'000'000'000'000'000 + i * 1'000'000;  // 1 s apart
      events.push_back(e);
    }
    ASSERT_TRUE(store_->Append(events).ok());
    config_ = dir_.file("relay.toml");
    WriteText(config_, "[store]\nurl = \"" + db_ +
                           "\"\n[relay]\nidle_poll = \"50ms\"\n"
                           "[[route]]\nname = \"r\"\nsender = "
                           "\"file:" +
                           dir_.file("out.jsonl") + "\"\n");
  }
  int64_t Lines() {
    std::string text = testing::ReadTextFile(dir_.file("out.jsonl"));
    return std::count(text.begin(), text.end(), '\n');
  }
  int64_t Checkpoint() { return *store_->GetCheckpoint("relay/r"); }
  Child StartRelay() {
    Child::Options o;
    o.stderr_path = dir_.file("relay.err");
    return Child({HeraldBin(), "relay", "--config", config_}, o);
  }

  TempDir dir_;
  std::string db_;
  std::unique_ptr<Store> store_;
  std::string config_;
};

TEST_F(RelayReset, ToPositionOneResendsEverything) {
  {
    Child relay = StartRelay();
    ASSERT_TRUE(
        WaitFor([&] { return Checkpoint() == 11; }, std::chrono::seconds(20)));
    relay.Signal(SIGTERM);
    EXPECT_EQ(relay.Wait(), 0);
  }
  EXPECT_EQ(Lines(), 10);
  std::string out, err;
  ASSERT_EQ(RunCommand({HeraldBin(), "relay", "reset", "--config", config_,
                        "--route", "r", "--to-position", "1"},
                       &out, &err),
            0)
      << err;
  EXPECT_EQ(out, "{\"route\":\"r\",\"checkpoint\":1}\n");
  EXPECT_EQ(Checkpoint(), 1);
  Child relay = StartRelay();
  ASSERT_TRUE(WaitFor([&] { return Lines() == 20; }, std::chrono::seconds(20)));
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
}

TEST_F(RelayReset, ToTimeFindsTheFirstEventAtOrAfterIt) {
  std::string out, err;
  // The 4th event occurred at base + 3 s.
  ASSERT_EQ(RunCommand({HeraldBin(), "relay", "reset", "--config", config_,
                        "--route", "r", "--to-time",
                        FormatRfc3339(1'000'000'000'000'000 + 2'500'000)},
                       &out, &err),
            0)
      << err;
  EXPECT_EQ(Checkpoint(), 4);
}

TEST_F(RelayReset, RefusedWhileARelayHoldsTheRoute) {
  Child relay = StartRelay();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto l = store_->GetLease("relay/r");
        return l.ok() && l->has_value();
      },
      std::chrono::seconds(20)));
  std::string owner = (*store_->GetLease("relay/r"))->owner;
  ASSERT_TRUE(
      WaitFor([&] { return Checkpoint() == 11; }, std::chrono::seconds(20)));
  std::string out, err;
  int rc = RunCommand({HeraldBin(), "relay", "reset", "--config", config_,
                       "--route", "r", "--to-position", "1"},
                      &out, &err);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("route 'r' is held by " + owner), std::string::npos)
      << err;
  EXPECT_EQ(Checkpoint(), 11) << "nothing changed";
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
}

TEST_F(RelayReset, BadInputIsExit2) {
  std::string out, err;
  EXPECT_EQ(RunCommand({HeraldBin(), "relay", "reset", "--config", config_,
                        "--route", "nope", "--to-position", "1"},
                       &out, &err),
            2);
  EXPECT_EQ(RunCommand({HeraldBin(), "relay", "reset", "--config", config_,
                        "--route", "r", "--to-position", "0"},
                       &out, &err),
            2);
  EXPECT_EQ(RunCommand({HeraldBin(), "relay", "reset", "--config", config_,
                        "--route", "r", "--to-time", "yesterday"},
                       &out, &err),
            2);
  EXPECT_EQ(RunCommand({HeraldBin(), "relay", "reset", "--config", config_,
                        "--route", "r"},
                       &out, &err),
            2);
  EXPECT_EQ(Checkpoint(), 0);
}

}  // namespace
}  // namespace herald
