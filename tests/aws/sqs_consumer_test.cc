// The SQS consumer source (sqs:QUEUE_URL) against the project's
// conformance server (tests/support/aws_conformance.py: AWS's queue rules,
// every signature verified by botocore; its agreement with botocore's own
// client is tests/aws/conformance_botocore_test.py), one per test on
// 127.0.0.1: events the built relay publishes through the SQS sender are
// handled exactly once in effect, in per-stream (FIFO group) order,
// through relay and consumer SIGKILLs and a second publishing under other
// SQS message ids; a standard queue gets them once each; a poison event
// parks its stream while the others finish; messages of a consumer that
// died come back after their visibility timeout, and its late delete
// deletes nothing; a handler that runs longer than the visibility timeout
// keeps its message (heartbeat); released messages come back marked; both
// of the sender's encodings decode; bad keys, a missing queue and
// missing or refused credentials are refused with a clear message.
// sqslite (npm) is used where it can show something: the sender's
// messages decode from another SQS implementation.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>

#include "aws/aws_test_util.h"
#include "herald/consumer.h"
#include "herald/consumer_source.h"
#include "herald/json.h"
#include "support/consumer_e2e.h"
#include "support/test_util.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::AwsConformanceServer;
using testing::Child;
using testing::ConsumerE2E;
using testing::HeraldBin;
using testing::RunCommand;
using testing::WaitFor;

OptionField Field(const std::string& key, const std::string& value) {
  OptionField f;
  f.key = key;
  f.value.string = value;
  return f;
}

class SqsConsumer : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.ready()) << server_.log(); }

  // Creates queue `name` ("x" or "x.fifo") on the server; its URL.
  std::string Queue(const std::string& name) {
    std::string url = server_.QueueUrl(name);
    std::string attrs =
        name.size() > 5 && name.substr(name.size() - 5) == ".fifo"
            ? "{\"FifoQueue\":\"true\"}"
            : "{}";
    testing::HttpClient c;
    auto r = c.Post(server_.endpoint() + "_control/queue",
                    "{\"url\":\"" + url + "\",\"attributes\":" + attrs + "}");
    EXPECT_EQ(r.status, 200) << r.body;
    return url;
  }

  static std::string Route(const std::string& queue, const std::string& name,
                           const std::string& extra = "") {
    return "[[route]]\nname = \"" + name + "\"\nsender = \"sqs:" + queue +
           "\"\nregion = \"us-east-1\"\nbatch = 100\nmax_in_flight = 50\n"
           "backoff_initial = \"5ms\"\nbackoff_max = \"200ms\"\n" +
           extra + "\n";
  }

  std::string ConsumerTable(const std::string& queue,
                            const std::string& extra = "") {
    return "[[consumer]]\nname = \"c\"\nsource = \"sqs:" + queue +
           "\"\nregion = \"us-east-1\"\nvisibility_timeout = \"3s\"\n"
           "inbox = \"" +
           t_.inbox_url() + "\"\nexec = \"true\"\nmax_in_flight = 8\n" + extra +
           "\n";
  }

  static ConsumerSourceOptions SourceOptions(
      const std::string& queue, const std::string& visibility = "") {
    ConsumerSourceOptions so;
    so.consumer = "c";
    so.url = "sqs:" + queue;
    so.options.table = "consumer";
    so.options.route = "c";
    so.options.fields.push_back(Field("region", "us-east-1"));
    // Polls here come with nothing in hand: a short long poll keeps the
    // tests' last empty polls short.
    so.options.fields.push_back(Field("wait_time", "1s"));
    if (!visibility.empty()) {
      so.options.fields.push_back(Field("visibility_timeout", visibility));
    }
    return so;
  }

  // Publishes `events` with the SQS sender (`extra`: more route keys).
  static void Publish(const std::string& queue, std::span<const Event> events,
                      std::vector<OptionField> extra = {}) {
    RouteConfig route;
    route.sender = "sqs:" + queue;
    route.options.fields.push_back(Field("region", "us-east-1"));
    for (auto& f : extra) route.options.fields.push_back(std::move(f));
    testing::PublishWithSender(route, events);
  }

  // Polls `src` until `want` deliveries came (or 10 s passed).
  static std::vector<SourceDelivery> PollFor(
      ConsumerSource& src, size_t want, milliseconds timeout = seconds(10)) {
    std::vector<SourceDelivery> got;
    WaitFor(
        [&] {
          auto p = src.Poll(10, milliseconds(50));
          if (p.ok()) {
            for (auto& d : *p) got.push_back(std::move(d));
          }
          return got.size() >= want;
        },
        timeout);
    return got;
  }

  // How many requests of `action` the server answered.
  int64_t Requests(const std::string& action) {
    Json stats = server_.Stats();
    const Json* actions = stats.Find("actions");
    const Json* n = actions ? actions->Find(action) : nullptr;
    int64_t v = 0;
    return n && n->TryInt64(&v) ? v : 0;
  }

  // The test credentials for the relay, the consumer child and here.
  testing::ScopedAwsEnv env_;
  AwsConformanceServer server_;
  ConsumerE2E t_;
};

TEST_F(SqsConsumer,
       FiveThousandEventsOnceEachInGroupOrderThroughThreeKindsOfDuplicates) {
  // A FIFO queue (group = stream). The relay's republished batches after
  // its SIGKILLs carry the same deduplication id (the event id), which SQS
  // drops within 5 minutes; the dup route sends s-3 and s-11 again under
  // other deduplication ids, so they are new SQS messages with the same
  // event ids; the consumer dies between its commits and its deletes.
  std::string q = Queue("orders.fifo");
  testing::RunExactlyOnceScenario(
      t_,
      Route(q, "r") + Route(q, "dup",
                            "streams = [\"s-3\", \"s-11\"]\n"
                            "deduplication_id = \"dup-{id}\""),
      ConsumerTable(q), /*dup_copies=*/500);
}

TEST_F(SqsConsumer, AStandardQueueGivesEveryEventOnceThroughTheSameFaults) {
  // No deduplication at all on a standard queue: the relay's republished
  // batches and the dup route's copies all arrive, and SQS keeps no order
  // (docs/consumers.md), so only "once each" is checked here.
  std::string q = Queue("plain");
  testing::RunExactlyOnceScenario(
      t_, Route(q, "r") + Route(q, "dup", "streams = [\"s-3\", \"s-11\"]"),
      ConsumerTable(q), /*dup_copies=*/500, nullptr, /*order=*/false);
}

TEST_F(SqsConsumer,
       APoisonEventParksItsStreamWhileTheOthersFinishThenRetryDeliversIt) {
  std::string q = Queue("poison.fifo");
  testing::RunPoisonScenario(
      t_, SourceOptions(q),
      [&](std::span<const Event> events) { Publish(q, events); });
}

TEST_F(SqsConsumer, BothEncodingsOfTheSenderDecodeAndReleasedOnesComeBack) {
  std::string q = Queue("decode.fifo");
  t_.Append(4, 2);
  auto events = std::span<const Event>(t_.events());
  Publish(q, events.subspan(0, 2));  // structured JSON body (the default)
  Publish(q, events.subspan(2, 2), {[] {
            OptionField raw;
            raw.key = "raw";
            raw.value.kind = OptionValue::Kind::kBoolean;
            raw.value.boolean = true;
            return raw;
          }()});  // the payload, attributes carry the rest
  auto source = MakeConsumerSource(SourceOptions(q));
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  ConsumerSource& src = **source;
  EXPECT_EQ(src.kind(), "sqs");
  ASSERT_TRUE(src.Start().ok());
  EXPECT_EQ(src.Lag(), std::optional<int64_t>(4));
  auto got = PollFor(src, 4);
  ASSERT_EQ(got.size(), 4u);
  std::map<std::string, const Event*> by_id;
  for (const auto& e : t_.events()) by_id[e.id] = &e;
  std::vector<uint64_t> handles;
  std::map<std::string, std::vector<int64_t>> order;
  for (const auto& d : got) {
    ASSERT_TRUE(d.decode_status.ok()) << d.decode_status.ToString();
    ASSERT_TRUE(by_id.count(d.event.id)) << d.event.id;
    const Event& want = *by_id[d.event.id];
    EXPECT_EQ(d.event.stream, want.stream);
    EXPECT_EQ(d.event.type, want.type);
    EXPECT_EQ(d.event.payload, want.payload);
    EXPECT_EQ(d.event.content_type, want.content_type);
    EXPECT_EQ(d.event.position, want.position);
    EXPECT_EQ(d.key, want.stream);  // the FIFO group the sender set
    EXPECT_EQ(d.redeliveries, 0);
    order[d.key].push_back(d.event.position);
    handles.push_back(d.handle);
  }
  for (const auto& [key, positions] : order) {
    EXPECT_TRUE(std::is_sorted(positions.begin(), positions.end())) << key;
  }
  // Given back (visibility 0): at once again, marked received before.
  ASSERT_TRUE(src.Release(handles).ok());
  auto again = PollFor(src, 4);
  ASSERT_EQ(again.size(), 4u);
  handles.clear();
  for (const auto& d : again) {
    EXPECT_EQ(d.redeliveries, 1);
    handles.push_back(d.handle);
  }
  ASSERT_TRUE(src.Ack(handles).ok());
  EXPECT_TRUE(server_.Messages(q).empty());
  auto none = src.Poll(10, milliseconds(100));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(src.Lag(), std::optional<int64_t>(0));
  src.Close();
}

TEST_F(SqsConsumer, AConsumerThatDiedHasItsMessagesRedeliveredAfterVisibility) {
  std::string q = Queue("died.fifo");
  t_.Append(3, 1);
  Publish(q, t_.events());
  // The first consumer takes the three messages (visibility 1 s) and dies:
  // never deletes, never gives them back.
  auto dead = MakeConsumerSource(SourceOptions(q, "1s"));
  ASSERT_TRUE(dead.ok());
  ASSERT_TRUE((*dead)->Start().ok());
  auto first = PollFor(**dead, 3);
  ASSERT_EQ(first.size(), 3u);
  auto next = MakeConsumerSource(SourceOptions(q, "30s"));
  ASSERT_TRUE(next.ok());
  ASSERT_TRUE((*next)->Start().ok());
  // Once the visibility timeout ended they come again, in group order,
  // marked received before.
  auto again = PollFor(**next, 3);
  ASSERT_EQ(again.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(again[i].event.id, t_.events()[i].id);
    EXPECT_EQ(again[i].redeliveries, 1);
  }
  // The dead consumer's late deletes (old receipt handles) delete nothing.
  std::vector<uint64_t> stale;
  for (const auto& d : first) stale.push_back(d.handle);
  EXPECT_TRUE((*dead)->Ack(stale).ok());
  EXPECT_EQ(server_.Messages(q).size(), 3u);
  std::vector<uint64_t> handles;
  for (const auto& d : again) handles.push_back(d.handle);
  ASSERT_TRUE((*next)->Ack(handles).ok());
  EXPECT_TRUE(server_.Messages(q).empty());
}

TEST_F(SqsConsumer, AHandlerRunningLongerThanTheVisibilityKeepsItsMessage) {
  std::string q = Queue("slow.fifo");
  auto store = OpenStore(t_.inbox_url());
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(testing::CreateDomainTable(store->get()).ok());
  t_.Append(2, 1);
  Publish(q, t_.events());
  ConsumerOptions o;
  o.name = "c";
  o.inbox = store->get();
  o.on_log = [](const std::string&) {};
  auto so = SourceOptions(q, "2s");
  so.state = store->get();
  auto source = MakeConsumerSource(so);
  ASSERT_TRUE(source.ok());
  std::atomic<bool> release{false};
  std::atomic<int> calls{0};
  Consumer consumer(o, std::move(*source));
  consumer.SetHandler([&](const Event& e, Transaction* tx) {
    ++calls;
    while (!release.load()) std::this_thread::sleep_for(milliseconds(10));
    return testing::InsertDomainRow(tx, e);
  });
  ASSERT_TRUE(consumer.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return calls.load() == 1; }, seconds(10)));
  // Another consumer of the queue sees nothing for 2.5 visibility timeouts:
  // the running message (and the one queued behind it) are extended.
  auto other = MakeConsumerSource(SourceOptions(q, "30s"));
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE((*other)->Start().ok());
  auto stolen = PollFor(**other, 1, seconds(5));
  EXPECT_TRUE(stolen.empty()) << stolen.size() << " messages handed out";
  EXPECT_GE(Requests("ChangeMessageVisibilityBatch"), 2);
  release.store(true);
  ASSERT_TRUE(WaitFor([&] { return t_.DistinctHandled() == 2; }, seconds(10)));
  ASSERT_TRUE(
      WaitFor([&] { return server_.Messages(q).empty(); }, seconds(10)));
  consumer.Stop();
  EXPECT_EQ(calls.load(), 2);
  testing::ExpectOnceEachInStreamOrder(t_.Rows(), t_.events());
}

TEST_F(SqsConsumer, HeraldConsumeStopsOnSigtermWhileLongPolling) {
  std::string q = Queue("idle");
  std::string config = t_.WriteConfig(ConsumerTable(q, "wait_time = \"20s\""));
  Child::Options co;
  co.stderr_path = t_.dir().file("consume.err");
  Child consume({HeraldBin(), "consume", "--config", config}, co);
  // Started and long-polling an empty queue.
  ASSERT_TRUE(WaitFor(
      [&] {
        return testing::ReadTextFile(co.stderr_path).find("consuming with") !=
               std::string::npos;
      },
      seconds(10)))
      << testing::ReadTextFile(co.stderr_path);
  auto t0 = std::chrono::steady_clock::now();
  consume.Signal(SIGTERM);
  EXPECT_EQ(consume.Wait(), 0) << testing::ReadTextFile(co.stderr_path);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(10));
}

TEST_F(SqsConsumer, AQueueThatDoesNotExistStopsTheConsumerWithItsName) {
  std::string missing = server_.QueueUrl("never-created");
  auto source = MakeConsumerSource(SourceOptions(missing));
  ASSERT_TRUE(source.ok());
  Status s = (*source)->Start();
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("never-created"), std::string::npos)
      << s.ToString();
  EXPECT_NE(s.message().find("NonExistentQueue"), std::string::npos)
      << s.ToString();
}

TEST_F(SqsConsumer, RefusedCredentialsStopHeraldConsumeWithExitTwo) {
  std::string q = Queue("auth");
  testing::ScopedEnv secret("AWS_SECRET_ACCESS_KEY", "not/the/secret");
  std::string config = t_.WriteConfig(ConsumerTable(q));
  std::string out, err;
  EXPECT_EQ(
      RunCommand({HeraldBin(), "consume", "--config", config}, &out, &err), 2)
      << err;
  EXPECT_NE(err.find("SignatureDoesNotMatch"), std::string::npos) << err;
  EXPECT_NE(err.find("credentials"), std::string::npos) << err;
}

TEST_F(SqsConsumer, MissingCredentialsStopHeraldConsumeNamingWhereItLooked) {
  std::string q = Queue("nocreds");
  testing::ScopedEnv key("AWS_ACCESS_KEY_ID", "");
  testing::ScopedEnv secret("AWS_SECRET_ACCESS_KEY", "");
  testing::ScopedEnv file("AWS_SHARED_CREDENTIALS_FILE",
                          t_.dir().file("no-credentials"));
  testing::ScopedEnv conf("AWS_CONFIG_FILE", t_.dir().file("no-config"));
  std::string config = t_.WriteConfig(ConsumerTable(q));
  std::string out, err;
  EXPECT_EQ(
      RunCommand({HeraldBin(), "consume", "--config", config}, &out, &err), 2)
      << err;
  EXPECT_NE(err.find("no AWS credentials"), std::string::npos) << err;
  EXPECT_NE(err.find("AWS_ACCESS_KEY_ID"), std::string::npos) << err;
}

// sqslite (npm), another SQS implementation: the sender's messages decode
// there too (it has no FIFO queues and does not redeliver, so the fault
// scenarios run on the conformance server above).
TEST(SqsConsumerSqslite, TheSendersMessagesDecodeFromSqslite) {
  std::string out, err;
  ASSERT_EQ(RunCommand(
                {"bash",
                 std::string(HERALD_TEST_SOURCE_DIR) + "/tests/aws/npm_deps.sh",
                 HERALD_TEST_NPM_DIR},
                &out, &err),
            0)
      << "npm ci of tests/aws/package-lock.json failed: " << err;
  testing::TempDir dir;
  int port = testing::FreePort();
  Child::Options o;
  o.stdout_path = dir.file("sqslite.out");
  o.stderr_path = dir.file("sqslite.err");
  Child sqslite(
      {"node",
       std::string(HERALD_TEST_NPM_DIR) + "/node_modules/sqslite/bin/cli.js",
       "--host", "localhost", "--port", std::to_string(port)},
      o);
  testing::ScopedEnv key("AWS_ACCESS_KEY_ID", "test");
  testing::ScopedEnv secret("AWS_SECRET_ACCESS_KEY", "test");
  std::string endpoint = "http://localhost:" + std::to_string(port);
  ASSERT_TRUE(WaitFor(
      [&] {
        return RunCommand({"env", "AWS_DEFAULT_REGION=us-east-1",
                           "AWS_PAGER=", "/usr/bin/aws", "--endpoint-url",
                           endpoint, "--output", "json", "sqs", "create-queue",
                           "--queue-name", "lite"},
                          &out, &err) == 0;
      },
      seconds(30)))
      << out << err << testing::ReadTextFile(o.stderr_path);
  auto created = Json::Parse(out);
  ASSERT_TRUE(created.ok()) << out;
  std::string q = created->Find("QueueUrl")->as_string();
  ConsumerE2E t;
  t.Append(3, 3);
  RouteConfig route;
  route.sender = "sqs:" + q;
  route.options.fields.push_back(Field("region", "us-east-1"));
  route.options.fields.push_back(Field("endpoint", endpoint));
  OptionField one;
  one.key = "max_batch";
  one.value.kind = OptionValue::Kind::kInteger;
  one.value.integer = 1;
  route.options.fields.push_back(one);
  testing::PublishWithSender(route, t.events());
  ConsumerSourceOptions so;
  so.consumer = "c";
  so.url = "sqs:" + q;
  so.options.table = "consumer";
  so.options.route = "c";
  so.options.fields.push_back(Field("region", "us-east-1"));
  so.options.fields.push_back(Field("endpoint", endpoint));
  so.options.fields.push_back(Field("wait_time", "1s"));
  auto source = MakeConsumerSource(so);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  ASSERT_TRUE((*source)->Start().ok());
  std::vector<SourceDelivery> got;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto p = (*source)->Poll(10, milliseconds(50));
        if (p.ok()) {
          for (auto& d : *p) got.push_back(std::move(d));
        }
        return got.size() >= 3;
      },
      seconds(10)));
  std::set<std::string> ids;
  std::vector<uint64_t> handles;
  for (const auto& d : got) {
    ASSERT_TRUE(d.decode_status.ok()) << d.decode_status.ToString();
    EXPECT_EQ(d.key, d.event.stream);
    ids.insert(d.event.id);
    handles.push_back(d.handle);
  }
  std::set<std::string> want;
  for (const auto& e : t.events()) want.insert(e.id);
  EXPECT_EQ(ids, want);
  EXPECT_TRUE((*source)->Ack(handles).ok());
  auto none = (*source)->Poll(10, milliseconds(50));
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());
}

// Bad per-source keys: `herald consume` refuses the config with the key and
// its line, exit 2, and starts nothing.
class SqsConsumerConfig : public testing::ConsumerConfigRefusal {
 protected:
  SqsConsumerConfig() : ConsumerConfigRefusal("sqs:http://127.0.0.1:1/1/q") {}
};

TEST_F(SqsConsumerConfig, AMissingQueueUrlIsRefusedWithTheSourceLine) {
  std::string err = RefusedFrom("sqs:", "region = \"us-east-1\"\n");
  EXPECT_NE(err.find("herald.toml:6: consumer 'c'.source: 'sqs:' needs a "
                     "queue URL"),
            std::string::npos)
      << err;
}

TEST_F(SqsConsumerConfig, AQueueUrlWithoutAQueueNameIsRefusedWithItsLine) {
  std::string err = RefusedFrom("sqs:https://sqs.eu-west-1.amazonaws.com/",
                                "visibility_timeout = \"5s\"\n");
  EXPECT_NE(err.find("herald.toml:6: consumer 'c'.source:"), std::string::npos)
      << err;
  EXPECT_NE(err.find("does not end in a queue name"), std::string::npos) << err;
}

TEST_F(SqsConsumerConfig, AQueueUrlNamingNoRegionNeedsTheRegionKey) {
  std::string err = Refused("visibility_timeout = \"10s\"\n");
  EXPECT_TRUE(std::regex_search(
      err, std::regex("herald.toml:[0-9]+: consumer 'c'.region: is required")))
      << err;
}

TEST_F(SqsConsumerConfig, ABadRegionIsRefusedWithItsLine) {
  std::string err = Refused("region = \"EU West\"\n");
  EXPECT_NE(err.find("herald.toml:9: consumer 'c'.region: 'EU West' is not "
                     "a region name"),
            std::string::npos)
      << err;
}

TEST_F(SqsConsumerConfig, AShortVisibilityTimeoutIsRefusedWithItsLine) {
  std::string err =
      Refused("region = \"us-east-1\"\nvisibility_timeout = \"10ms\"\n");
  EXPECT_NE(err.find("herald.toml:10: consumer 'c'.visibility_timeout:"),
            std::string::npos)
      << err;
}

TEST_F(SqsConsumerConfig, ALongPollOverTwentySecondsIsRefusedWithItsLine) {
  std::string err = Refused("region = \"us-east-1\"\nwait_time = \"30s\"\n");
  EXPECT_NE(err.find("herald.toml:10: consumer 'c'.wait_time: must be at "
                     "most 20s"),
            std::string::npos)
      << err;
}

TEST_F(SqsConsumerConfig, AnUnknownKeyIsRefusedWithItsLine) {
  std::string err = Refused("region = \"us-east-1\"\nmax_batch = 5\n");
  EXPECT_NE(err.find("herald.toml:10: consumer 'c'.max_batch: unknown key"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("region, endpoint, visibility_timeout, wait_time"),
            std::string::npos)
      << err;
}

}  // namespace
}  // namespace herald
