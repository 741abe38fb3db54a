// End to end: the built `herald relay` process sending to the conformance
// server (tests/support/aws_conformance.py, signatures verified by
// botocore) while this test appends to a SQLite store: order and
// deduplication across injected per-entry failures and SIGKILLs of the
// relay, an oversized event parked, throttling retried, a bad secret shown
// as the route's error. And against the npm emulators: sqslite (2,000
// events to a standard queue, max_batch = 1, read back with /usr/bin/aws)
// and serverless-offline-sns (Publish delivered to an HTTP receiver).
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "aws/aws_test_util.h"
#include "herald/store.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::AwsConformanceServer;
using testing::Child;
using testing::HeraldBin;
using testing::JsonStr;
using testing::RunCommand;
using testing::WaitFor;

class AwsRelay : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.ready()) << server_.log();
    auto s = OpenStore("sqlite:" + dir_.file("h.db"));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  // A config with one route "a" sending to `target` ("sqs:..."/"sns:...")
  // on `endpoint` (default: the conformance server).
  std::string Config(const std::string& target, const std::string& extra,
                     std::string endpoint = "") {
    if (endpoint.empty()) endpoint = server_.endpoint();
    std::string path = dir_.file("c.toml");
    std::ofstream(path)
        << "[store]\nurl = \"sqlite:" << dir_.file("h.db") << "\"\n"
        << "[relay]\nidle_poll = \"50ms\"\nowner = \"aws\"\n"
        << "[[route]]\nname = \"a\"\nsender = \"" << target
        << "\"\nendpoint = \"" << endpoint << "\"\nregion = \"us-east-1\"\n"
        << "backoff_initial = \"5ms\"\nbackoff_max = \"200ms\"\n"
        << "timeout = \"5s\"\n"
        << extra;
    return path;
  }

  Child StartRelay(const std::string& config,
                   const std::string& secret = testing::kAwsSecret) {
    Child::Options o;
    o.stderr_path = dir_.file("relay.err");
    o.env = {std::string("AWS_ACCESS_KEY_ID=") + testing::kAwsKey,
             "AWS_SECRET_ACCESS_KEY=" + secret,
             "AWS_SESSION_TOKEN=", "AWS_PROFILE="};
    return Child({HeraldBin(), "relay", "--config", config}, o);
  }

  // Appends `n` events round-robin over `streams` streams, `per_tx` a
  // transaction. Thread-safe.
  void Append(int n, int streams, int per_tx = 100,
              const std::string& prefix = "s-", size_t pad = 0) {
    std::vector<Event> batch;
    for (int i = 0; i < n; ++i) {
      Event e;
      e.stream = prefix + std::to_string(next_++ % streams);
      e.type = "order.placed";
      e.payload = "{\"i\":" + std::to_string(i) + ",\"pad\":\"" +
                  std::string(pad, 'x') + "\"}";
      batch.push_back(e);
      if (static_cast<int>(batch.size()) == per_tx || i + 1 == n) {
        auto r = store_->Append(std::span<Event>(batch));
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        std::lock_guard<std::mutex> lock(mu_);
        events_.insert(events_.end(), batch.begin(), batch.end());
        batch.clear();
      }
    }
  }

  // Every appended event stored exactly once, per stream in append order
  // (of first appearance). Returns how many messages the target holds.
  size_t CheckStored(const std::string& target, bool exactly_once = true) {
    auto got = server_.Messages(target);
    std::map<std::string, const Event*> by_id;
    for (const auto& e : events_) by_id[e.id] = &e;
    std::map<std::string, int> copies;
    std::map<std::string, int64_t> last;
    for (const auto& m : got) {
      auto it = by_id.find(JsonStr(m, "event_id"));
      EXPECT_NE(it, by_id.end()) << "a message no event made";
      if (it == by_id.end()) continue;
      if (++copies[it->first] > 1) continue;
      int64_t& l = last[it->second->stream];
      EXPECT_LT(l, it->second->position)
          << "stream " << it->second->stream << " out of order";
      l = it->second->position;
    }
    size_t missing = 0, repeated = 0;
    for (const auto& e : events_) {
      if (copies[e.id] == 0) ++missing;
      if (copies[e.id] > 1) ++repeated;
    }
    EXPECT_EQ(missing, 0u) << "events never stored";
    if (exactly_once) {
      EXPECT_EQ(repeated, 0u) << "events stored twice";
    }
    return got.size();
  }

  std::vector<Json> Rows(const std::vector<std::string>& argv,
                         std::string* text) {
    std::string err;
    EXPECT_EQ(RunCommand(argv, text, &err), 0) << err;
    std::istringstream ss(*text);
    std::string line;
    std::vector<Json> rows;
    while (std::getline(ss, line)) {
      auto j = Json::Parse(line);
      if (j.ok()) rows.push_back(*j);
    }
    return rows;
  }
  std::vector<Json> StatusRows(const std::string& config) {
    return Rows({HeraldBin(), "relay", "status", "--config", config},
                &status_text_);
  }
  std::vector<Json> ParkedRows(const std::string& config) {
    return Rows(
        {HeraldBin(), "parked", "list", "--config", config, "--route", "a"},
        &parked_text_);
  }

  testing::TempDir dir_;
  AwsConformanceServer server_;
  std::unique_ptr<Store> store_;
  std::mutex mu_;
  std::vector<Event> events_;  // guarded by mu_ while a writer runs
  int next_ = 0;
  std::string status_text_, parked_text_;
};

// Under load, with entries failing on cue (retryable, a few times each) and
// the relay SIGKILLed at random moments: after a final run every event is
// stored exactly once (repeats absorbed by MessageDeduplicationId) and per
// stream in append order.
TEST_F(AwsRelay, FailuresAndSigkillsKeepOrderAndStoreEachEventOnce) {
  std::string q = server_.QueueUrl("orders.fifo");
  std::string config = Config("sqs:" + q, "batch = 100\nmax_in_flight = 16\n");
  std::mt19937 rng(1515);
  int appended = 0;
  testing::BackgroundLoop writer([&] {
    Append(20, 30, 20);
    {
      // Every 7th event of the last transaction fails twice, retryably.
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = events_.size() - 20; i < events_.size(); i += 7) {
        server_.FailEvent(events_[i].id, "InternalError", false, 2);
      }
      appended = static_cast<int>(events_.size());
    }
    std::this_thread::sleep_for(milliseconds(5));
  });
  const int trials = 10;
  size_t stored_before = 0;
  int progressed = 0;
  for (int trial = 0; trial < trials; ++trial) {
    Child relay = StartRelay(config);
    std::this_thread::sleep_for(
        milliseconds(std::uniform_int_distribution<int>(150, 600)(rng)));
    relay.Signal(SIGKILL);
    relay.Wait();
    size_t now = server_.Messages(q).size();
    progressed += now > stored_before;
    stored_before = now;
  }
  writer.Stop();
  EXPECT_GE(progressed, trials / 2) << "the relay hardly ran between kills";
  Child relay = StartRelay(config);
  size_t total = events_.size();
  ASSERT_GT(total, 1000u);
  ASSERT_TRUE(
      WaitFor([&] { return server_.Messages(q).size() >= total; }, seconds(90)))
      << server_.Messages(q).size() << " of " << total << "\n"
      << testing::ReadTextFile(dir_.file("relay.err"));
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  EXPECT_EQ(CheckStored(q), total);
  auto rows = StatusRows(config);
  ASSERT_EQ(rows.size(), 1u) << status_text_;
  int64_t lag = -1;
  (void)rows[0].Find("lag_events")->TryInt64(&lag);
  EXPECT_EQ(lag, 0);
}

// An event over the size limit is a permanent failure: parked with a
// message that says so, its stream held behind it, the others flowing.
TEST_F(AwsRelay, AnOversizedEventIsParkedAndItsStreamHeld) {
  std::string t = AwsConformanceServer::TopicArn("orders");
  std::string config = Config(
      "sns:" + t, "on_failure = \"park\"\nmax_attempts = 2\nbatch = 50\n");
  Child relay = StartRelay(config);
  Append(20, 4);
  Append(1, 1, 100, "big-", 300 * 1024);
  Append(2, 1, 100, "big-");
  Append(20, 4);
  ASSERT_TRUE(
      WaitFor([&] { return ParkedRows(config).size() == 3; }, seconds(30)))
      << parked_text_ << testing::ReadTextFile(dir_.file("relay.err"));
  ASSERT_TRUE(
      WaitFor([&] { return server_.Messages(t).size() >= 40; }, seconds(30)));
  auto parked = ParkedRows(config);
  EXPECT_EQ(JsonStr(parked[0], "state"), "parked");
  EXPECT_NE(JsonStr(parked[0], "error").find("over the 262144-byte limit"),
            std::string::npos)
      << parked_text_;
  EXPECT_EQ(JsonStr(parked[1], "state"), "held");
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  EXPECT_EQ(server_.Messages(t).size(), 40u);
}

TEST_F(AwsRelay, ThrottlingIsRetriedUntilDelivered) {
  std::string q = server_.QueueUrl("busy.fifo");
  std::string config = Config("sqs:" + q,
                              "on_failure = \"park\"\n"
                              "max_attempts = 20\n");
  ASSERT_TRUE(server_.Cue("{\"throttle\":5}"));
  Child relay = StartRelay(config);
  Append(200, 10);
  ASSERT_TRUE(
      WaitFor([&] { return server_.Messages(q).size() >= 200; }, seconds(30)))
      << testing::ReadTextFile(dir_.file("relay.err"));
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  EXPECT_EQ(CheckStored(q), 200u);
  EXPECT_TRUE(ParkedRows(config).empty()) << parked_text_;
}

// A wrong secret: every request is refused (403 SignatureDoesNotMatch, as
// botocore's recomputed signature differs); the route says so, without the
// secret, and nothing is parked or lost.
TEST_F(AwsRelay, ABadSecretIsTheRoutesClearError) {
  std::string q = server_.QueueUrl("auth");
  std::string config = Config("sqs:" + q, "");
  Child relay = StartRelay(config, "wrong-secret-value-1234");
  Append(10, 2);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = StatusRows(config);
        return !r.empty() &&
               JsonStr(r[0], "last_error").find("SignatureDoesNotMatch") !=
                   std::string::npos;
      },
      seconds(30)))
      << status_text_;
  EXPECT_EQ(status_text_.find("wrong-secret-value-1234"), std::string::npos);
  EXPECT_NE(status_text_.find("check the access key, secret key"),
            std::string::npos)
      << status_text_;
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  EXPECT_EQ(testing::ReadTextFile(dir_.file("relay.err"))
                .find("wrong-secret-value-1234"),
            std::string::npos);
  EXPECT_TRUE(server_.Messages(q).empty());
  // The right secret delivers everything.
  Child again = StartRelay(config);
  ASSERT_TRUE(
      WaitFor([&] { return server_.Messages(q).size() >= 10; }, seconds(30)));
  again.Signal(SIGTERM);
  EXPECT_EQ(again.Wait(), 0);
  EXPECT_EQ(CheckStored(q), 10u);
}

// ---- the npm emulators ----------------------------------------------------

// Installs the npm emulators into the build directory (npm ci). Under CI a
// failure fails the test; elsewhere it skips it.
bool NpmEmulators(std::string* why) {
  std::string out, err;
  int rc = RunCommand(
      {"bash", std::string(HERALD_TEST_SOURCE_DIR) + "/tests/aws/npm_deps.sh",
       HERALD_TEST_NPM_DIR},
      &out, &err);
  *why = "npm ci of tests/aws/package-lock.json failed: " + err;
  return rc == 0;
}

// The emulators are test tools scripts/setup.sh provides for (npm): a
// failed install fails the test, never skips it.
#define REQUIRE_NPM_EMULATORS()             \
  do {                                      \
    std::string why;                        \
    ASSERT_TRUE(NpmEmulators(&why)) << why; \
  } while (0)

// /usr/bin/aws (Debian's awscli; another aws may come first on PATH) with
// dummy credentials against `endpoint`.
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

// sqslite (standard queues; its batch answers name entries by the MD5 of
// their Id, so max_batch = 1): `herald relay` delivers 2,000 events, read
// back and deleted with botocore after /usr/bin/aws made the queue and
// counted it.
TEST_F(AwsRelay, SqsliteReceivesTwoThousandEventsOneRequestEach) {
  REQUIRE_NPM_EMULATORS();
  int port = testing::FreePort();
  std::string endpoint = "http://localhost:" + std::to_string(port);
  Child::Options o;
  o.stdout_path = dir_.file("sqslite.out");
  o.stderr_path = dir_.file("sqslite.err");
  Child sqslite(
      {"node",
       std::string(HERALD_TEST_NPM_DIR) + "/node_modules/sqslite/bin/cli.js",
       "--host", "localhost", "--port", std::to_string(port)},
      o);
  std::string out;
  ASSERT_TRUE(WaitFor(
      [&] {
        return Aws(endpoint, {"sqs", "create-queue", "--queue-name", "orders"},
                   &out) == 0;
      },
      seconds(30)))
      << out << testing::ReadTextFile(dir_.file("sqslite.err"));
  auto created = Json::Parse(out);
  ASSERT_TRUE(created.ok()) << out;
  std::string q = JsonStr(*created, "QueueUrl");
  ASSERT_NE(q.find("localhost"), std::string::npos) << q;

  std::string config = Config(
      "sqs:" + q, "max_batch = 1\nbatch = 200\nmax_in_flight = 16\n", endpoint);
  Append(2000, 20);
  Child relay = StartRelay(config);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = StatusRows(config);
        int64_t lag = -1;
        if (!r.empty() && r[0].Find("lag_events")) {
          (void)r[0].Find("lag_events")->TryInt64(&lag);
        }
        return lag == 0;
      },
      seconds(120)))
      << status_text_ << testing::ReadTextFile(dir_.file("relay.err"));
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);

  ASSERT_EQ(Aws(endpoint,
                {"sqs", "get-queue-attributes", "--queue-url", q,
                 "--attribute-names", "ApproximateNumberOfMessages"},
                &out),
            0)
      << out;
  EXPECT_NE(out.find("\"2000\""), std::string::npos) << out;

  std::string err;
  ASSERT_EQ(RunCommand({"/usr/bin/python3",
                        std::string(HERALD_TEST_SOURCE_DIR) +
                            "/tests/aws/sqs_read_all.py",
                        endpoint, q, "2000"},
                       &out, &err),
            0)
      << err;
  std::set<std::string> ids;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    auto m = Json::Parse(line);
    ASSERT_TRUE(m.ok()) << line;
    auto ce = Json::Parse(JsonStr(*m, "body"));
    ASSERT_TRUE(ce.ok()) << line;
    EXPECT_EQ(JsonStr(*ce, "specversion"), "1.0");
    ids.insert(JsonStr(*ce, "id"));
  }
  for (const auto& e : events_) EXPECT_TRUE(ids.count(e.id)) << e.id;
  EXPECT_EQ(ids.size(), 2000u);
}

// serverless-offline-sns (no serverless framework: its SNSServer on an
// express app; Publish only, no PublishBatch): `herald relay` publishes to
// a topic, which delivers each message to the test's HTTP receiver.
TEST_F(AwsRelay, ServerlessOfflineSnsDeliversPublishedEventsToHttp) {
  REQUIRE_NPM_EMULATORS();
  std::string ready = dir_.file("sns.ready"), log = dir_.file("deliveries");
  Child::Options o;
  o.stderr_path = dir_.file("sns.err");
  o.env = {std::string("NODE_PATH=") + HERALD_TEST_NPM_DIR + "/node_modules",
           "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test"};
  Child sns({"node",
             std::string(HERALD_TEST_SOURCE_DIR) + "/tests/aws/sns_offline.mjs",
             ready, log},
            o);
  ASSERT_TRUE(WaitFor([&] { return std::ifstream(ready).good(); }, seconds(30)))
      << testing::ReadTextFile(dir_.file("sns.err"));
  int sns_port = 0, receiver_port = 0;
  std::ifstream(ready) >> sns_port >> receiver_port;
  std::string endpoint = "http://127.0.0.1:" + std::to_string(sns_port);
  std::string out;
  ASSERT_EQ(Aws(endpoint, {"sns", "create-topic", "--name", "orders"}, &out), 0)
      << out;
  std::string arn = "arn:aws:sns:us-east-1:123456789012:orders";
  ASSERT_EQ(Aws(endpoint,
                {"sns", "subscribe", "--topic-arn", arn, "--protocol", "http",
                 "--notification-endpoint",
                 "http://127.0.0.1:" + std::to_string(receiver_port) + "/in"},
                &out),
            0)
      << out;
  std::string config = Config("sns:" + arn, "max_batch = 1\n", endpoint);
  Append(50, 5);
  Child relay = StartRelay(config);
  auto delivered = [&] {
    std::istringstream in(testing::ReadTextFile(log));
    std::vector<Json> rows;
    std::string line;
    while (std::getline(in, line)) {
      auto j = Json::Parse(line);
      if (j.ok()) rows.push_back(*j);
    }
    return rows;
  };
  ASSERT_TRUE(WaitFor([&] { return delivered().size() >= 50; }, seconds(60)))
      << delivered().size() << testing::ReadTextFile(dir_.file("relay.err"))
      << testing::ReadTextFile(dir_.file("sns.err"));
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  std::set<std::string> ids;
  for (const auto& n : delivered()) {
    EXPECT_EQ(JsonStr(n, "Type"), "Notification");
    EXPECT_EQ(JsonStr(n, "TopicArn"), arn);
    auto ce = Json::Parse(JsonStr(n, "Message"));
    ASSERT_TRUE(ce.ok());
    ids.insert(JsonStr(*ce, "id"));
    const Json* attrs = n.Find("MessageAttributes");
    ASSERT_NE(attrs, nullptr);
    const Json* type = attrs->Find("ce-type");
    ASSERT_NE(type, nullptr);
    EXPECT_EQ(JsonStr(*type, "Value"), "order.placed");
  }
  for (const auto& e : events_) EXPECT_TRUE(ids.count(e.id)) << e.id;
}

}  // namespace
}  // namespace herald
