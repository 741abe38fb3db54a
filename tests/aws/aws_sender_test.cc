// The SQS and SNS senders against the conformance server
// (tests/support/aws_conformance.py, every signature verified by botocore):
// options checked at config load, the messages (FIFO ids, attributes,
// body), per-entry failures without reordering, deduplication, throttling,
// a session token, a bad secret, an oversized event, and credentials from
// AWS_PROFILE and a shared credentials file.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "aws/aws_test_util.h"
#include "herald/config.h"
#include "herald/sender.h"
#include "support/sender_test_util.h"
#include "transport/aws/aws_query.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;
using testing::AwsConformanceServer;
using testing::JsonStr;
using testing::ScopedEnv;

// ---- options (no server needed) ----------------------------------------

struct BadCase {
  std::string toml;
  std::string message;
};

TEST(AwsOptions, AreCheckedAtConfigLoadNamingKeyAndLine) {
  const std::string fifo =
      "[[route]]\nname = \"r\"\nsender = "
      "\"sqs:https://sqs.eu-west-1.amazonaws.com/123456789012/o.fifo\"\n";
  const std::string std_q =
      "[[route]]\nname = \"r\"\nsender = "
      "\"sqs:https://sqs.eu-west-1.amazonaws.com/123456789012/o\"\n";
  const BadCase cases[] = {
      {fifo + "max_batch = 11\n",
       "t.toml:4: route 'r'.max_batch: must be between 1 and 10, not 11"},
      {fifo + "max_batch = 0\n", "t.toml:4: route 'r'.max_batch: must be"},
      {fifo + "message_group_id = \"{strem}\"\n",
       "t.toml:4: route 'r'.message_group_id: unknown placeholder {strem}"},
      {fifo + "deduplication_id = \"{id\"\n",
       "t.toml:4: route 'r'.deduplication_id: unclosed '{'"},
      {std_q + "message_group_id = \"{stream}\"\n",
       "t.toml:4: route 'r'.message_group_id: applies to FIFO queues only"},
      {fifo + "raw = \"yes\"\n", "t.toml:4: route 'r'.raw: must be a boolean"},
      {fifo + "max_message_size = 2000000\n",
       "t.toml:4: route 'r'.max_message_size: must be between 1024 and "
       "1048576"},
      {fifo + "endpoint = \"ftp://x\"\n",
       "t.toml:4: route 'r'.endpoint: 'ftp://x' is not an http:// or https://"},
      {fifo + "region = \"EU West\"\n",
       "t.toml:4: route 'r'.region: 'EU West' is not a region name"},
      {fifo + "exchange = \"x\"\n",
       "t.toml:4: route 'r'.exchange: unknown key (expected name, sender, "},
      {"[[route]]\nname = \"r\"\nsender = "
       "\"sqs:http://localhost:9324/000000000000/q\"\n",
       "t.toml:1: route 'r'.region: is required"},
      {"[[route]]\nname = \"r\"\nsender = \"sqs:\"\n", "needs a queue URL"},
      {"[[route]]\nname = \"r\"\nsender = "
       "\"sqs:https://sqs.x.amazonaws.com/\"\n",
       "does not end in a queue name"},
      {"[[route]]\nname = \"r\"\nsender = \"sqs:https://u:p@h/1/q\"\n",
       "must not carry credentials"},
      {"[[route]]\nname = \"r\"\nsender = \"sns:arn:aws:sqs:eu-west-1:"
       "123456789012:t\"\n",
       "the service is not 'sns'"},
      {"[[route]]\nname = \"r\"\nsender = "
       "\"sns:arn:aws:sns::123456789012:t\"\n",
       "no region"},
      {"[[route]]\nname = \"r\"\nsender = \"sns:arn:aws:sns:eu-west-1:12:t\"\n",
       "the account is not 12 digits"},
      {"[[route]]\nname = \"r\"\nsender = \"sns:topic\"\n", "not a topic ARN"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.toml);
    auto r = ParseConfig(c.toml, "t.toml");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(c.message), std::string::npos)
        << r.status().ToString();
  }
  for (const std::string& good :
       {fifo + "max_batch = 1\nmessage_group_id = \"{category}\"\n"
               "deduplication_id = \"{id}-{type}\"\nraw = true\n"
               "max_message_size = 1048576\nregion = \"eu-west-1\"\n"
               "endpoint = \"http://127.0.0.1:9\"\ntimeout = \"2s\"\n",
        std_q,
        std::string("[[route]]\nname = \"r\"\nsender = "
                    "\"sqs:http://localhost:9324/000000000000/q\"\n"
                    "region = \"elasticmq\"\n"),
        std::string("[[route]]\nname = \"r\"\nsender = "
                    "\"sns:arn:aws:sns:eu-west-1:123456789012:orders.fifo\"\n"
                    "message_group_id = \"{stream}\"\n")}) {
    auto ok = ParseConfig(good, "t.toml");
    EXPECT_TRUE(ok.ok()) << good << ok.status().ToString();
  }
}

// ---- against the conformance server ------------------------------------

class AwsSenderTest : public ::testing::Test {
 protected:
  explicit AwsSenderTest(AwsConformanceServer::Options o = {}) : server_(o) {}

  void SetUp() override { ASSERT_TRUE(server_.ready()) << server_.log(); }

  std::unique_ptr<Sender> Make(const std::string& target,
                               const std::string& extra = "",
                               int max_in_flight = 16) {
    std::string toml = "[[route]]\nname = \"r\"\nsender = \"" + target +
                       "\"\nendpoint = \"" + server_.endpoint() +
                       "\"\nregion = \"us-east-1\"\nmax_in_flight = " +
                       std::to_string(max_in_flight) +
                       "\nsource = \"shop\"\ntimeout = \"5s\"\n" + extra;
    return testing::SenderFromToml(toml);
  }

  std::vector<Event> Events(int streams, int per_stream,
                            size_t payload_bytes = 10) {
    std::vector<Event> out;
    for (int n = 0; n < per_stream; ++n) {
      for (int s = 0; s < streams; ++s) {
        Event e =
            testing::MakeEvent("order-" + std::to_string(s), "order.placed",
                               "{\"n\":" + std::to_string(n) + ",\"pad\":\"" +
                                   std::string(payload_bytes, 'p') + "\"}");
        e.id = NewUuidV7();
        e.position = ++position_;
        e.stream_version = n + 1;
        e.occurred_at_us = NowMicros();
        e.metadata = "{\"traceparent\":\"00-ab\"}";
        out.push_back(std::move(e));
      }
    }
    return out;
  }

  std::vector<SendResult> Send(Sender* s, const std::vector<Event>& events,
                               milliseconds within = milliseconds(20000)) {
    return testing::SendAll(s, events, within);
  }

  // The event ids stored for `target`, in order.
  std::vector<std::string> StoredIds(const std::string& target) {
    std::vector<std::string> ids;
    for (const auto& m : server_.Messages(target)) {
      ids.push_back(JsonStr(m, "event_id"));
    }
    return ids;
  }

  // Per stream, stored ids are a prefix-ordered sequence of the events.
  void ExpectStreamOrder(const std::vector<Event>& events,
                         const std::vector<std::string>& stored) {
    std::map<std::string, const Event*> by_id;
    for (const auto& e : events) by_id[e.id] = &e;
    std::map<std::string, int64_t> last;
    for (const auto& id : stored) {
      auto it = by_id.find(id);
      if (it == by_id.end()) continue;
      int64_t& l = last[it->second->stream];
      EXPECT_LT(l, it->second->position)
          << it->second->stream << " out of order";
      l = it->second->position;
    }
  }

  ScopedEnv key_{"AWS_ACCESS_KEY_ID", testing::kAwsKey};
  ScopedEnv secret_{"AWS_SECRET_ACCESS_KEY", testing::kAwsSecret};
  ScopedEnv no_token_{"AWS_SESSION_TOKEN", ""};
  AwsConformanceServer server_;
  int64_t position_ = 0;
};

TEST_F(AwsSenderTest, AFifoQueueGetsGroupIdPerStreamAndDedupeIdEventId) {
  std::string q = server_.QueueUrl("orders.fifo");
  auto sender = Make("sqs:" + q);
  ASSERT_NE(sender, nullptr);
  auto events = Events(3, 4);
  auto results = Send(sender.get(), events);
  for (const auto& r : results)
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  auto got = server_.Messages(q);
  ASSERT_EQ(got.size(), events.size());
  std::map<std::string, const Event*> by_id;
  for (const auto& e : events) by_id[e.id] = &e;
  for (const auto& m : got) {
    const Event* e = by_id[JsonStr(m, "event_id")];
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(JsonStr(m, "group"), e->stream);
    EXPECT_EQ(JsonStr(m, "dedupe"), e->id);
    const Json* attrs = m.Find("attributes");
    ASSERT_NE(attrs, nullptr);
    EXPECT_EQ(JsonStr(*attrs, "ce-type"), "order.placed");
    EXPECT_EQ(JsonStr(*attrs, "ce-source"), "shop");
    EXPECT_EQ(JsonStr(*attrs, "ce-subject"), e->stream);
    EXPECT_EQ(JsonStr(*attrs, "content-type"), "application/json");
    EXPECT_EQ(JsonStr(*attrs, "ce-traceparent"), "00-ab");
    auto body = Json::Parse(JsonStr(m, "body"));
    ASSERT_TRUE(body.ok());
    EXPECT_EQ(JsonStr(*body, "id"), e->id);
    EXPECT_EQ(JsonStr(*body, "specversion"), "1.0");
  }
  ExpectStreamOrder(events, StoredIds(q));
}

TEST_F(AwsSenderTest, StandardQueuesAndTopicsGetNeitherId) {
  std::string q = server_.QueueUrl("plain");
  std::string t = AwsConformanceServer::TopicArn("plain");
  for (const std::string& target : {"sqs:" + q, "sns:" + t}) {
    SCOPED_TRACE(target);
    auto sender = Make(target);
    ASSERT_NE(sender, nullptr);
    auto events = Events(2, 3);
    for (const auto& r : Send(sender.get(), events)) {
      EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    }
    auto got = server_.Messages(target.substr(4));
    ASSERT_EQ(got.size(), events.size());
    for (const auto& m : got) {
      EXPECT_TRUE(m.Find("group")->is_null());
      EXPECT_TRUE(m.Find("dedupe")->is_null());
    }
  }
}

TEST_F(AwsSenderTest, AFifoTopicGetsBothIdsAndRawBodies) {
  std::string t = AwsConformanceServer::TopicArn("orders.fifo");
  auto sender =
      Make("sns:" + t, "raw = true\nmessage_group_id = \"{category}\"\n");
  ASSERT_NE(sender, nullptr);
  auto events = Events(2, 2);
  for (const auto& r : Send(sender.get(), events)) {
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  }
  auto got = server_.Messages(t);
  ASSERT_EQ(got.size(), 4u);
  for (const auto& m : got) {
    EXPECT_EQ(JsonStr(m, "group"), "order");
    EXPECT_EQ(JsonStr(m, "body").substr(0, 5), "{\"n\":");
  }
}

TEST_F(AwsSenderTest, MaxBatchOneSendsOneMessagePerRequest) {
  std::string q = server_.QueueUrl("single.fifo");
  for (int max_batch : {1, 10}) {
    auto sender = Make("sqs:" + q, "max_batch = " + std::to_string(max_batch));
    ASSERT_NE(sender, nullptr);
    int64_t before = 0;
    (void)server_.Stats().Find("requests")->TryInt64(&before);
    auto events = Events(10, 1);
    for (const auto& r : Send(sender.get(), events)) {
      EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    }
    int64_t after = 0;
    (void)server_.Stats().Find("requests")->TryInt64(&after);
    EXPECT_EQ(after - before, max_batch == 1 ? 10 : 1);
  }
}

// A retryable entry failure stops its stream only; nothing later of that
// stream is sent, so nothing overtakes it; healed, the rest goes in order.
TEST_F(AwsSenderTest, AFailedEntryIsNeverOvertakenInItsStream) {
  for (std::string target :
       {"sqs:" + server_.QueueUrl("o.fifo"),
        "sns:" + AwsConformanceServer::TopicArn("o.fifo")}) {
    SCOPED_TRACE(target);
    auto sender = Make(target);
    ASSERT_NE(sender, nullptr);
    auto events = Events(3, 4);  // order-0 order-1 order-2 order-0 ...
    ASSERT_TRUE(server_.FailEvent(events[4].id, "InternalError", false));
    auto results = Send(sender.get(), events);
    EXPECT_TRUE(results[1].status.ok());
    EXPECT_FALSE(results[4].status.ok());
    EXPECT_TRUE(results[4].status.retryable()) << results[4].status.ToString();
    EXPECT_NE(results[4].status.message().find("InternalError"),
              std::string::npos);
    for (size_t i : {7, 10}) {
      EXPECT_FALSE(results[i].attempted) << i;
      EXPECT_FALSE(results[i].status.ok()) << i;
    }
    for (size_t i : {0, 2, 3, 5, 6, 8, 9, 11}) {
      EXPECT_TRUE(results[i].status.ok()) << i;
    }
    auto stored = StoredIds(target.substr(4));
    std::set<std::string> have(stored.begin(), stored.end());
    for (size_t i : {4, 7, 10}) EXPECT_FALSE(have.count(events[i].id)) << i;

    ASSERT_TRUE(server_.Clear());
    std::vector<Event> again;
    for (size_t i = 0; i < events.size(); ++i) {
      if (!results[i].status.ok()) again.push_back(events[i]);
    }
    for (const auto& r : Send(sender.get(), again)) {
      EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    }
    stored = StoredIds(target.substr(4));
    EXPECT_EQ(stored.size(), events.size());
    ExpectStreamOrder(events, stored);
  }
}

TEST_F(AwsSenderTest, SenderFaultIsPermanentAndStopsItsStream) {
  std::string q = server_.QueueUrl("sf.fifo");
  for (int max_batch : {10, 1}) {
    SCOPED_TRACE(max_batch);
    auto sender = Make("sqs:" + q, "max_batch = " + std::to_string(max_batch));
    auto events = Events(2, 3);
    ASSERT_TRUE(server_.FailEvent(events[2].id, "InvalidParameterValue", true));
    auto results = Send(sender.get(), events);
    EXPECT_FALSE(results[2].status.ok());
    EXPECT_FALSE(results[2].status.retryable()) << results[2].status.ToString();
    EXPECT_NE(results[2].status.message().find("InvalidParameterValue"),
              std::string::npos);
    EXPECT_FALSE(results[4].attempted);
    EXPECT_TRUE(results[3].status.ok());
    EXPECT_TRUE(results[5].status.ok());
    ASSERT_TRUE(server_.Clear());
  }
}

// A relay's repeat (after a crash) carries the same MessageDeduplicationId:
// the queue stores it once.
TEST_F(AwsSenderTest, RepeatsAreDeduplicatedWithinTheWindow) {
  std::string q = server_.QueueUrl("dedupe.fifo");
  auto sender = Make("sqs:" + q);
  auto events = Events(3, 3);
  for (int round = 0; round < 3; ++round) {
    for (const auto& r : Send(sender.get(), events)) {
      EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    }
  }
  EXPECT_EQ(server_.Messages(q).size(), events.size());
}

TEST_F(AwsSenderTest, ThrottlingIsRetriedNotParked) {
  std::string t = AwsConformanceServer::TopicArn("busy");
  auto sender = Make("sns:" + t);
  auto events = Events(2, 2);
  ASSERT_TRUE(server_.Cue("{\"throttle\":1}"));
  auto results = Send(sender.get(), events);
  EXPECT_FALSE(results[0].status.ok());
  EXPECT_TRUE(results[0].status.retryable()) << results[0].status.ToString();
  EXPECT_NE(results[0].status.message().find("Throttling"), std::string::npos);
  EXPECT_FALSE(results[2].attempted);
  for (const auto& r : Send(sender.get(), events)) {
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  }
  EXPECT_EQ(server_.Messages(t).size(), 4u);
}

TEST_F(AwsSenderTest, ABadSecretIsRefusedWithAClearErrorAndNoSecret) {
  ScopedEnv wrong("AWS_SECRET_ACCESS_KEY", "not-the-secret-XYZ");
  std::string q = server_.QueueUrl("auth");
  auto sender = Make("sqs:" + q);
  auto events = Events(1, 2);
  auto results = Send(sender.get(), events);
  ASSERT_FALSE(results[0].status.ok());
  const std::string& m = results[0].status.message();
  EXPECT_NE(m.find("HTTP 403 SignatureDoesNotMatch"), std::string::npos) << m;
  EXPECT_NE(m.find("check the access key, secret key"), std::string::npos);
  EXPECT_EQ(m.find("not-the-secret-XYZ"), std::string::npos) << m;
  EXPECT_EQ(m.find(testing::kAwsSecret), std::string::npos) << m;
  EXPECT_TRUE(results[0].status.retryable());
  EXPECT_FALSE(results[1].attempted);
  EXPECT_TRUE(server_.Messages(q).empty());
  int64_t refused = 0;
  (void)server_.Stats().Find("signature_failures")->TryInt64(&refused);
  EXPECT_GE(refused, 1);
}

TEST_F(AwsSenderTest, AnOversizedEventIsPermanentAndNeverTruncated) {
  std::string q = server_.QueueUrl("big");
  auto sender = Make("sqs:" + q);
  auto events = Events(2, 2);
  events[2].payload = "{\"pad\":\"" + std::string(300 * 1024, 'x') + "\"}";
  auto results = Send(sender.get(), events);
  ASSERT_FALSE(results[2].status.ok());
  EXPECT_FALSE(results[2].status.retryable());
  EXPECT_NE(results[2].status.message().find("over the 262144-byte limit"),
            std::string::npos)
      << results[2].status.ToString();
  EXPECT_NE(results[2].status.message().find("never truncates"),
            std::string::npos);
  EXPECT_TRUE(results[0].status.ok());
  EXPECT_TRUE(results[1].status.ok());
  EXPECT_TRUE(results[3].status.ok());
  EXPECT_EQ(server_.Messages(q).size(), 3u);

  // Messages that fit one by one but not ten to a request go in several
  // requests (AWS limits a batch's total too); a raised limit takes more.
  auto many = Events(10, 1, 60 * 1024);
  for (const auto& r : Send(sender.get(), many)) {
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  }
  EXPECT_EQ(server_.Messages(q).size(), 13u);
  auto large = Make("sqs:" + q, "max_message_size = 1048576\n");
  auto big = Events(1, 1, 300 * 1024);
  auto r = Send(large.get(), big);
  EXPECT_FALSE(r[0].status.ok());  // the server keeps AWS's 256 KiB
  EXPECT_NE(r[0].status.message().find("shorter than 262144"),
            std::string::npos)
      << r[0].status.ToString();
}

TEST_F(AwsSenderTest, CredentialsComeFromAwsProfileInTheSharedFile) {
  ScopedEnv no_key("AWS_ACCESS_KEY_ID", "");
  ScopedEnv no_secret("AWS_SECRET_ACCESS_KEY", "");
  testing::TempDir dir;
  std::string creds = dir.file("credentials");
  std::ofstream(creds) << "[default]\naws_access_key_id = WRONG\n"
                          "aws_secret_access_key = wrong\n\n"
                       << "# the one herald should take\n[herald]\n"
                       << "aws_access_key_id = " << testing::kAwsKey << "\n"
                       << "aws_secret_access_key = " << testing::kAwsSecret
                       << "\n";
  ScopedEnv file("AWS_SHARED_CREDENTIALS_FILE", creds);
  ScopedEnv config("AWS_CONFIG_FILE", dir.file("none"));
  ScopedEnv profile("AWS_PROFILE", "herald");
  std::string q = server_.QueueUrl("profile");
  auto sender = Make("sqs:" + q);
  for (const auto& r : Send(sender.get(), Events(1, 2))) {
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  }
  {
    ScopedEnv missing("AWS_PROFILE", "nobody");
    auto r = Send(sender.get(), Events(1, 1));
    ASSERT_FALSE(r[0].status.ok());
    EXPECT_NE(r[0].status.message().find(
                  "no AWS credentials: AWS_ACCESS_KEY_ID / "
                  "AWS_SECRET_ACCESS_KEY are not set, and profile 'nobody'"),
              std::string::npos)
        << r[0].status.ToString();
  }
  EXPECT_EQ(server_.Messages(q).size(), 2u);
}

class AwsSessionTokenTest : public AwsSenderTest {
 protected:
  AwsSessionTokenTest() : AwsSenderTest(Opts()) {}
  static AwsConformanceServer::Options Opts() {
    AwsConformanceServer::Options o;
    o.session_token = "FwoGZXIvYXdzEHERALD//session+token=";
    return o;
  }
};

TEST_F(AwsSessionTokenTest, ASessionTokenIsSentSignedAndNeverShown) {
  std::string q = server_.QueueUrl("temp.fifo");
  auto sender = Make("sqs:" + q);
  {
    // Without the token the key is refused.
    auto r = Send(sender.get(), Events(1, 1));
    ASSERT_FALSE(r[0].status.ok());
    EXPECT_NE(r[0].status.message().find("InvalidClientTokenId"),
              std::string::npos)
        << r[0].status.ToString();
  }
  ScopedEnv token("AWS_SESSION_TOKEN", Opts().session_token);
  for (const auto& r : Send(sender.get(), Events(2, 2))) {
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  }
  EXPECT_EQ(server_.Messages(q).size(), 4u);
  // From a profile too.
  ScopedEnv no_key("AWS_ACCESS_KEY_ID", "");
  ScopedEnv no_secret("AWS_SECRET_ACCESS_KEY", "");
  testing::TempDir dir;
  std::ofstream(dir.file("config"))
      << "[profile temp]\nregion = us-east-1\naws_access_key_id = "
      << testing::kAwsKey << "\naws_secret_access_key = " << testing::kAwsSecret
      << "\naws_session_token = " << Opts().session_token << "\n";
  ScopedEnv file("AWS_SHARED_CREDENTIALS_FILE", dir.file("none"));
  ScopedEnv config("AWS_CONFIG_FILE", dir.file("config"));
  ScopedEnv profile("AWS_PROFILE", "temp");
  for (const auto& r : Send(sender.get(), Events(1, 2))) {
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  }
  EXPECT_EQ(server_.Messages(q).size(), 6u);
}

// ---- answers (no server needed) ----------------------------------------

// An error code in an answer is the server's text: in a status message
// (logs, relay status) it is one bounded line like the rest (found by
// fuzz/aws_answer_fuzz.cc: a code with a line break, or 3,000 bytes long,
// went into the message as it was).
TEST(AwsAnswers, ErrorCodesBecomeOneBoundedLineInMessages) {
  std::string code = "Bad\r\nInjected: line" + std::string(3000, 'x');
  Status s = detail::AwsErrorStatus(
      400,
      "<ErrorResponse><Error><Code>" + code +
          "</Code><Message>m</Message></Error></ErrorResponse>",
      "SendMessage to queue q");
  EXPECT_EQ(s.code(), Status::Code::kPermanent);
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find('\r'), std::string::npos) << s.message();
  EXPECT_LT(s.message().size(), 700u);
  EXPECT_NE(s.message().find("Bad  Injected: line"), std::string::npos)
      << s.message();

  detail::EntryOutcome o;
  o.answered = true;
  o.code = code;
  o.sender_fault = true;
  Status e = detail::AwsEntryStatus(o, "PublishBatch to topic t");
  EXPECT_EQ(e.code(), Status::Code::kPermanent);
  EXPECT_EQ(e.message().find('\n'), std::string::npos) << e.message();
  EXPECT_LT(e.message().size(), 700u);
  // A known code still classifies: throttling is retried.
  EXPECT_TRUE(detail::AwsErrorStatus(
                  400,
                  "<ErrorResponse><Error><Code>Throttling</Code></Error>"
                  "</ErrorResponse>",
                  "Publish to topic t")
                  .retryable());
}

}  // namespace
}  // namespace herald
