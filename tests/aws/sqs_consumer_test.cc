// The SQS consumer source (sqs:QUEUE_URL) against sqslite (the npm
// emulator of tests/aws/package-lock.json; standard queues), started once
// for this binary: events the built relay publishes (SQS sender, signed as
// always) are handled exactly once in effect through relay and consumer
// SIGKILLs and a second publishing of the same events; a poison event
// parks its stream while the others finish; released messages come back
// marked as received again; the queue's length is the lag; bad
// keys are refused with key and line. A standard queue keeps no order, so
// the exactly-once check here does not check order.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>

#include "herald/consumer.h"
#include "herald/consumer_source.h"
#include "herald/json.h"
#include "support/consumer_e2e.h"
#include "support/test_util.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::Child;
using testing::ConsumerE2E;
using testing::HeraldBin;
using testing::RunCommand;
using testing::WaitFor;

int Aws(const std::string& endpoint, std::vector<std::string> args,
        std::string* out) {
  std::vector<std::string> argv = {"env",
                                   "AWS_ACCESS_KEY_ID=test",
                                   "AWS_SECRET_ACCESS_KEY=test",
                                   "AWS_DEFAULT_REGION=us-east-1",
                                   "AWS_PAGER=",
                                   "/usr/bin/aws",
                                   "--endpoint-url",
                                   endpoint,
                                   "--output",
                                   "json"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string err;
  int rc = RunCommand(argv, out, &err);
  if (rc != 0) *out += err;
  return rc;
}

class SqsConsumer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // The relay, the consumer child and this process sign with these.
    ::setenv("AWS_ACCESS_KEY_ID", "test", 1);
    ::setenv("AWS_SECRET_ACCESS_KEY", "test", 1);
    std::string out, err;
    npm_ok_ = RunCommand({"bash",
                          std::string(HERALD_TEST_SOURCE_DIR) +
                              "/tests/aws/npm_deps.sh",
                          HERALD_TEST_NPM_DIR},
                         &out, &err) == 0;
    npm_err_ = err;
    if (!npm_ok_) return;
    port_ = testing::FreePort();
    Child::Options o;
    o.stdout_path = dir_->file("sqslite.out");
    o.stderr_path = dir_->file("sqslite.err");
    sqslite_ = new Child(
        {"node",
         std::string(HERALD_TEST_NPM_DIR) + "/node_modules/sqslite/bin/cli.js",
         "--host", "localhost", "--port", std::to_string(port_)},
        o);
  }
  static void TearDownTestSuite() {
    delete sqslite_;
    sqslite_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(npm_ok_) << "npm ci of tests/aws/package-lock.json failed: "
                         << npm_err_;
    std::string out;
    std::string name = "q" + std::to_string(++counter_);
    ASSERT_TRUE(WaitFor(
        [&] {
          return Aws(Endpoint(), {"sqs", "create-queue", "--queue-name", name},
                     &out) == 0;
        },
        seconds(30)))
        << out << testing::ReadTextFile(dir_->file("sqslite.err"));
    auto created = Json::Parse(out);
    ASSERT_TRUE(created.ok()) << out;
    queue_ = created->Find("QueueUrl")->as_string();
  }

  static std::string Endpoint() {
    return "http://localhost:" + std::to_string(port_);
  }

  std::string Route(const std::string& name, const std::string& extra = "") {
    return "[[route]]\nname = \"" + name + "\"\nsender = \"sqs:" + queue_ +
           "\"\nendpoint = \"" + Endpoint() +
           "\"\nregion = \"us-east-1\"\nmax_batch = 1\nbatch = 100\n"
           "max_in_flight = 50\nbackoff_initial = \"5ms\"\nbackoff_max = "
           "\"200ms\"\n" +
           extra + "\n";
  }

  ConsumerSourceOptions SourceOptions() {
    ConsumerSourceOptions so;
    so.consumer = "c";
    so.url = "sqs:" + queue_;
    so.options.table = "consumer";
    so.options.route = "c";
    OptionField e;
    e.key = "endpoint";
    e.value.string = Endpoint();
    so.options.fields.push_back(e);
    OptionField r;
    r.key = "region";
    r.value.string = "us-east-1";
    so.options.fields.push_back(r);
    return so;
  }

  void Publish(std::span<const Event> events) {
    RouteConfig route;
    route.sender = "sqs:" + queue_;
    for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
             {"endpoint", Endpoint()}, {"region", "us-east-1"}}) {
      OptionField f;
      f.key = k;
      f.value.string = v;
      route.options.fields.push_back(f);
    }
    OptionField b;
    b.key = "max_batch";
    b.value.kind = OptionValue::Kind::kInteger;
    b.value.integer = 1;
    route.options.fields.push_back(b);
    testing::PublishWithSender(route, events);
  }

  static inline testing::TempDir* dir_ = new testing::TempDir();
  static inline Child* sqslite_ = nullptr;
  static inline int port_ = 0;
  static inline bool npm_ok_ = false;
  static inline std::string npm_err_;
  static inline int counter_ = 0;
  std::string queue_;
  ConsumerE2E t_;
};

TEST_F(SqsConsumer, FiveThousandEventsOnceEachThroughThreeKindsOfDuplicates) {
  std::string consumer =
      "[[consumer]]\nname = \"c\"\nsource = \"sqs:" + queue_ +
      "\"\nendpoint = \"" + Endpoint() +
      "\"\nregion = \"us-east-1\"\nvisibility_timeout = \"3s\"\ninbox = \"" +
      t_.inbox_url() + "\"\nexec = \"true\"\nmax_in_flight = 8\n";
  testing::RunExactlyOnceScenario(
      t_, Route("r") + Route("dup", "streams = [\"s-3\", \"s-11\"]"),
      consumer, /*dup_copies=*/500, nullptr, /*order=*/false);
}

TEST_F(SqsConsumer,
       APoisonEventParksItsStreamWhileTheOthersFinishThenRetryDeliversIt) {
  testing::RunPoisonScenario(
      t_, SourceOptions(),
      [&](std::span<const Event> events) { Publish(events); });
}

TEST_F(SqsConsumer, ReleasedMessagesComeBackMarkedAndTheQueueLengthIsTheLag) {
  t_.Append(3, 3);
  Publish(t_.events());
  // sqslite does not apply ChangeMessageVisibility at once: a released
  // message comes back when its visibility_timeout (2 s here) ends.
  auto so = SourceOptions();
  OptionField vis;
  vis.key = "visibility_timeout";
  vis.value.string = "2s";
  so.options.fields.push_back(vis);
  auto source = MakeConsumerSource(so);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  ConsumerSource& src = **source;
  EXPECT_EQ(src.kind(), "sqs");
  ASSERT_TRUE(src.Start().ok());
  EXPECT_EQ(src.Lag(), std::optional<int64_t>(3));
  auto poll = [&](size_t want) {
    std::vector<SourceDelivery> got;
    WaitFor(
        [&] {
          auto p = src.Poll(10, milliseconds(100));
          if (p.ok()) {
            for (auto& d : *p) got.push_back(std::move(d));
          }
          return got.size() >= want;
        },
        seconds(10));
    return got;
  };
  auto got = poll(3);
  ASSERT_EQ(got.size(), 3u);
  std::map<std::string, const Event*> by_id;
  for (const auto& e : t_.events()) by_id[e.id] = &e;
  std::vector<uint64_t> handles;
  for (const auto& d : got) {
    ASSERT_TRUE(d.decode_status.ok()) << d.decode_status.ToString();
    ASSERT_TRUE(by_id.count(d.event.id)) << d.event.id;
    const Event& want = *by_id[d.event.id];
    EXPECT_EQ(d.event.stream, want.stream);
    EXPECT_EQ(d.event.type, want.type);
    EXPECT_EQ(d.event.payload, want.payload);
    EXPECT_EQ(d.event.position, want.position);
    EXPECT_EQ(d.key, want.stream);
    EXPECT_EQ(d.redeliveries, 0);
    handles.push_back(d.handle);
  }
  ASSERT_TRUE(src.Release(handles).ok());
  auto again = poll(3);
  ASSERT_EQ(again.size(), 3u);
  handles.clear();
  for (const auto& d : again) {
    EXPECT_EQ(d.redeliveries, 1);
    handles.push_back(d.handle);
  }
  ASSERT_TRUE(src.Ack(handles).ok());
  auto none = src.Poll(10, milliseconds(300));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  src.Close();
}

// Bad per-source keys: `herald consume` refuses the config with the key and
// its line, exit 2, and starts nothing.
class SqsConsumerConfig : public ::testing::Test {
 protected:
  std::string Refused(const std::string& keys) {
    std::string path = dir_.file("herald.toml");
    std::ofstream(path) << "[store]\nurl = \"sqlite:" << dir_.file("h.db")
                        << "\"\n\n[[consumer]]\nname = \"c\"\n"
                        << "source = \"sqs:http://127.0.0.1:1/1/q\"\n"
                        << "inbox = \"sqlite:" << dir_.file("inbox.db")
                        << "\"\nexec = \"true\"\n"
                        << keys;
    std::string out, err;
    EXPECT_EQ(RunCommand({HeraldBin(), "consume", "--config", path}, &out, &err),
              2)
        << err;
    return err;
  }
  testing::TempDir dir_;
};

TEST_F(SqsConsumerConfig, AQueueUrlNamingNoRegionNeedsTheRegionKey) {
  std::string err = Refused("visibility_timeout = \"10s\"\n");
  EXPECT_TRUE(std::regex_search(
      err, std::regex("herald.toml:[0-9]+: consumer 'c'.region: is required")))
      << err;
}

TEST_F(SqsConsumerConfig, AShortVisibilityTimeoutIsRefusedWithItsLine) {
  std::string err =
      Refused("region = \"us-east-1\"\nvisibility_timeout = \"10ms\"\n");
  EXPECT_NE(err.find("herald.toml:10: consumer 'c'.visibility_timeout:"),
            std::string::npos)
      << err;
}

TEST_F(SqsConsumerConfig, AnUnknownKeyIsRefusedWithItsLine) {
  std::string err = Refused("region = \"us-east-1\"\nmax_batch = 5\n");
  EXPECT_NE(err.find("herald.toml:10: consumer 'c'.max_batch: unknown key"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("region, endpoint, visibility_timeout"), std::string::npos)
      << err;
}

}  // namespace
}  // namespace herald
