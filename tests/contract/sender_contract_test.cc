// The Sender contract (herald/sender.h): every built-in sender passes this
// suite unchanged, the way every store passes store_contract_test.cc.
//
// Each sender comes with a SenderFixture: it makes the sender, makes its
// receiver fail on cue and reads back what the receiver got. A new sender
// (a broker) joins by writing one fixture and adding a row to kSenders that
// says which faults its receiver can be made to show: each case is
// instantiated only for the senders that can show it (a file cannot hang),
// so nothing here is skipped.
//
// Receivers are real: the HTTP receiver process (tests/support/receiver.cc,
// for https behind tests/support/tls_proxy.cc with a fresh certificate),
// a file on a small tmpfs filled on purpose (a full disk), stdout redirected
// to a file (/dev/full for a failing one), and an in-process handler.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "herald/json.h"
#include "herald/sender.h"
#include "herald/store.h"
#include "server/server_test_util.h"  // HttpClient, ServeProcess
#include "support/test_util.h"
#if HERALD_TEST_WITH_KAFKA
#include "kafka/kafka_test_util.h"
#endif
#if HERALD_TEST_WITH_NATS
#include "nats/nats_test_util.h"
#endif
#if HERALD_TEST_WITH_RABBITMQ
#include "rabbitmq/amqp_client.h"
#endif
#if HERALD_TEST_WITH_AWS
#include "aws/aws_test_util.h"
#endif

namespace herald {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;
using testing::Child;
using testing::TempDir;
using testing::WaitFor;

// The ways a receiver can fail one event.
enum class Fault {
  kUnavailable,      // a retryable refusal (503, a full disk)
  kReject,           // a permanent refusal (400)
  kHang,             // never answers
  kCutBeforeStatus,  // the response is cut at each point, then closed
  kCutInStatus,
  kCutInHeaders,
  kCutAfterHeaders,
  kCutInBody,
  kCutInChunked,
};

const char* FaultName(Fault f) {
  switch (f) {
    case Fault::kUnavailable:
      return "unavailable";
    case Fault::kReject:
      return "reject";
    case Fault::kHang:
      return "hang";
    case Fault::kCutBeforeStatus:
      return "cut-before-status";
    case Fault::kCutInStatus:
      return "cut-in-status";
    case Fault::kCutInHeaders:
      return "cut-in-headers";
    case Fault::kCutAfterHeaders:
      return "cut-after-headers";
    case Fault::kCutInBody:
      return "cut-in-body";
    case Fault::kCutInChunked:
      return "cut-in-chunked";
  }
  return "?";
}

// One event as the receiver got it.
struct Received {
  std::string id;
  bool acknowledged = false;  // the receiver answered it in full, as OK
};

// What the suite needs from a sender and its receiver.
class SenderFixture {
 public:
  virtual ~SenderFixture() = default;
  // Makes the sender for `route` (name, max_in_flight...; the fixture
  // fills in the sender URL and options).
  virtual Result<std::unique_ptr<Sender>> Make(RouteConfig route) = 0;
  // Makes the receiver answer every attempt at `e` by `fault` until Heal().
  // False when this transport cannot fail that way.
  virtual bool Fail(const Event& e, Fault fault) = 0;
  virtual void Heal() = 0;
  // Everything the receiver got, in arrival order.
  virtual std::vector<Received> Got() = 0;
  // Makes the receiver answer each event after `ms`, so that sends
  // overlap. False when it cannot.
  virtual bool SetSlow(int ms) = 0;
  // The most events the receiver held at once; -1 when it cannot tell.
  virtual int MaxInFlightSeen() = 0;
  // True when one write carries a whole Send call, so a fault fails every
  // event of the call rather than one event.
  virtual bool FailsWholeCall() const { return false; }
};

// JSON lines (CloudEvents structured mode) of a file: the ids, and whether
// every line is complete. `strict`: a line that is not an event is a torn
// line (stdout also carries gtest's own output, so it is not strict).
std::vector<Received> ReadLines(const std::string& path, bool strict) {
  std::vector<Received> out;
  std::ifstream f(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(f)),
                   std::istreambuf_iterator<char>());
  if (strict && !text.empty() && text.back() != '\n') {
    ADD_FAILURE() << path << " ends inside a line (a torn write): ..."
                  << text.substr(text.size() > 80 ? text.size() - 80 : 0);
  }
  size_t from = 0;
  while (from < text.size()) {
    size_t end = text.find('\n', from);
    if (end == std::string::npos) break;
    std::string line = text.substr(from, end - from);
    from = end + 1;
    auto doc = Json::Parse(line);
    const Json* id = doc.ok() ? doc->Find("id") : nullptr;
    if (!id || !doc->Find("specversion")) {
      if (strict) ADD_FAILURE() << "a torn or foreign line: " << line;
      continue;
    }
    out.push_back({id->as_string(), true});
  }
  return out;
}

// ---- HTTP: the test receiver process ---------------------------------------

class HttpFixture : public SenderFixture {
 public:
  explicit HttpFixture(const TempDir& dir)
      : port_(testing::FreePort()), log_(dir.file("rx.log")) {
    std::string ready = dir.file("rx.ready");
    child_ = std::make_unique<Child>(std::vector<std::string>{
        HERALD_TEST_RECEIVER, "--port", std::to_string(port_), "--log", log_,
        "--ready", ready});
    EXPECT_TRUE(WaitFor([&] { return std::ifstream(ready).good(); }));
  }
  Result<std::unique_ptr<Sender>> Make(RouteConfig route) override {
    route.sender = base() + "/hook";
    route.sender_options.timeout = milliseconds(5000);
    return MakeSender(route);
  }
  int port() const { return port_; }
  bool Fail(const Event& e, Fault fault) override {
    failed_.push_back(e.id);
    return Control({"x-fail-id: " + e.id,
                    std::string("x-fail-mode: ") + FaultName(fault)});
  }
  void Heal() override {
    for (const auto& id : failed_) {
      EXPECT_TRUE(Control({"x-fail-id: " + id, "x-fail-mode: ok"}));
    }
    failed_.clear();
  }
  std::vector<Received> Got() override {
    // "<position> <subject> <id> <time> <status> <source>"
    std::vector<Received> out;
    std::ifstream f(log_);
    std::string pos, subject, id, time, status, source;
    while (f >> pos >> subject >> id >> time >> status >> source) {
      out.push_back({id, status == "200"});
    }
    return out;
  }
  bool SetSlow(int ms) override {
    return Control({"x-delay-ms: " + std::to_string(ms)});
  }
  int MaxInFlightSeen() override {
    testing::HttpClient c;
    auto r = c.Get(base() + "/stats");
    auto doc = Json::Parse(r.body);
    int64_t n = -1;
    if (!doc.ok() || !doc->Find("max_in_flight") ||
        !doc->Find("max_in_flight")->TryInt64(&n)) {
      ADD_FAILURE() << "stats: " << r.body;
    }
    return static_cast<int>(n);
  }

 private:
  std::string base() const {
    return "http://127.0.0.1:" + std::to_string(port_);
  }
  bool Control(std::vector<std::string> headers) {
    testing::HttpClient c;
    return c.Post(base() + "/control", "", std::move(headers)).status == 200;
  }

  int port_;
  std::string log_;
  std::unique_ptr<Child> child_;
  std::vector<std::string> failed_;
};

// ---- https: the same receiver behind a TLS-terminating proxy ---------------

class HttpsFixture final : public HttpFixture {
 public:
  explicit HttpsFixture(const TempDir& dir)
      : HttpFixture(dir),
        tls_port_(testing::FreePort()),
        cert_(dir.file("cert.pem")) {
    std::string key = dir.file("key.pem"), out;
    int rc = testing::RunCommand(
        {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
         key, "-out", cert_, "-days", "1", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=IP:127.0.0.1"},
        &out, &out);
    EXPECT_EQ(rc, 0) << out;
    std::string ready = dir.file("tls.ready");
    proxy_ = std::make_unique<Child>(std::vector<std::string>{
        HERALD_TEST_TLS_PROXY, "--port", std::to_string(tls_port_), "--to",
        std::to_string(port()), "--cert", cert_, "--key", key, "--ready",
        ready});
    EXPECT_TRUE(WaitFor([&] { return std::ifstream(ready).good(); }));
  }
  Result<std::unique_ptr<Sender>> Make(RouteConfig route) override {
    // The certificate is verified against its own file (tls_verify on).
    route.sender = "https://127.0.0.1:" + std::to_string(tls_port_) + "/hook";
    route.sender_options.timeout = milliseconds(5000);
    route.sender_options.ca_file = cert_;
    return MakeSender(route);
  }

 private:
  int tls_port_;
  std::string cert_;
  std::unique_ptr<Child> proxy_;
};

// ---- file: on a small tmpfs that can be filled on cue
// ------------------------

// A tmpfs of `kb` KiB mounted at DIR/mnt for the test's life, so a full
// disk is real (ENOSPC, short writes). Needs CAP_SYS_ADMIN; ok() is false
// without it.
class SmallDisk {
 public:
  SmallDisk(const TempDir& dir, int kb) : path_(dir.file("mnt")) {
    ::mkdir(path_.c_str(), 0755);
    std::string opts = "size=" + std::to_string(kb) + "k";
    ok_ = ::mount("tmpfs", path_.c_str(), "tmpfs", 0, opts.c_str()) == 0;
    if (!ok_) why_ = std::strerror(errno);
  }
  ~SmallDisk() {
    if (ok_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  bool ok() const { return ok_; }
  const std::string& why() const { return why_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  // Writes a filler file until the disk is full.
  void Fill() {
    int fd =
        ::open(file("filler").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ASSERT_GE(fd, 0);
    std::string block(512, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    EXPECT_EQ(errno, ENOSPC);
    ::close(fd);
  }
  void Free() { ::unlink(file("filler").c_str()); }

 private:
  std::string path_, why_;
  bool ok_ = false;
};

class FileFixture final : public SenderFixture {
 public:
  explicit FileFixture(const TempDir& dir) : disk_(dir, 256) {
    path_ = disk_.ok() ? disk_.file("events.jsonl") : dir.file("events.jsonl");
  }
  Result<std::unique_ptr<Sender>> Make(RouteConfig route) override {
    route.sender = "file:" + path_;
    return MakeSender(route);
  }
  bool Fail(const Event&, Fault fault) override {
    if (fault != Fault::kUnavailable) return false;
    // A full disk needs a tmpfs of our own (mounting one needs root, as the
    // test command runs).
    if (!disk_.ok()) {
      ADD_FAILURE() << "no tmpfs to fill (mount: " << disk_.why() << ")";
      return false;
    }
    disk_.Fill();
    return true;
  }
  void Heal() override { disk_.Free(); }
  std::vector<Received> Got() override { return ReadLines(path_, true); }
  bool SetSlow(int) override { return false; }
  int MaxInFlightSeen() override { return -1; }
  bool FailsWholeCall() const override { return true; }

 private:
  SmallDisk disk_;
  std::string path_;
};

// ---- stdout: redirected to a file, or to /dev/full to fail
// -------------------

class StdoutFixture final : public SenderFixture {
 public:
  explicit StdoutFixture(const TempDir& dir) : path_(dir.file("stdout")) {
    std::fflush(stdout);
    saved_ = ::dup(1);
    file_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(file_, 1);
  }
  ~StdoutFixture() override {
    std::fflush(stdout);
    ::dup2(saved_, 1);
    ::close(saved_);
    ::close(file_);
  }
  Result<std::unique_ptr<Sender>> Make(RouteConfig route) override {
    route.sender = "stdout:";
    return MakeSender(route);
  }
  bool Fail(const Event&, Fault fault) override {
    if (fault != Fault::kUnavailable) return false;
    std::fflush(stdout);
    int full = ::open("/dev/full", O_WRONLY);
    if (full < 0) return false;
    ::dup2(full, 1);
    ::close(full);
    return true;
  }
  void Heal() override {
    std::fflush(stdout);
    ::dup2(file_, 1);
  }
  std::vector<Received> Got() override {
    std::fflush(stdout);
    return ReadLines(path_, false);
  }
  bool SetSlow(int) override { return false; }
  int MaxInFlightSeen() override { return -1; }
  bool FailsWholeCall() const override { return true; }

 private:
  std::string path_;
  int saved_ = -1;
  int file_ = -1;
};

// ---- herald: appends into herald's own store (SQLite) ----------------------

class LogFixture final : public SenderFixture {
 public:
  explicit LogFixture(const TempDir& dir) {
    auto store = OpenStore("sqlite:" + dir.file("log.db"));
    if (store.ok()) store_ = std::move(*store);
  }
  Result<std::unique_ptr<Sender>> Make(RouteConfig) override {
    if (!store_) return Status::Unavailable("no store");
    return MakeLogSender(store_.get());
  }
  bool Fail(const Event&, Fault) override { return false; }
  void Heal() override {}
  // The store's events in position order: the order they were appended.
  std::vector<Received> Got() override {
    std::vector<Received> out;
    ReadRequest req;
    req.offset = 1;
    req.limit = 1000;
    for (;;) {
      auto page = store_->Read(req);
      if (!page.ok() || page->events.empty()) break;
      for (const auto& e : page->events) out.push_back({e.id, true});
      req.offset = page->next_offset;
    }
    return out;
  }
  bool SetSlow(int) override { return false; }
  int MaxInFlightSeen() override { return -1; }
  bool FailsWholeCall() const override { return true; }

 private:
  std::unique_ptr<Store> store_;
};

// ---- callback: an in-process handler
// -----------------------------------------

class CallbackFixture final : public SenderFixture {
 public:
  explicit CallbackFixture(const TempDir&) {}
  Result<std::unique_ptr<Sender>> Make(RouteConfig) override {
    return MakeCallbackSender([this](const Event& e) -> Status {
      int now = ++in_flight_;
      int seen = max_in_flight_.load();
      while (now > seen && !max_in_flight_.compare_exchange_weak(seen, now)) {
      }
      if (slow_ms_ > 0) {  // a slow receiver, not a wait for a condition
        std::this_thread::sleep_for(milliseconds(slow_ms_));
      }
      Status s;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto f = faults_.find(e.id);
        if (f != faults_.end() && f->second == Fault::kReject) {
          s = Status::Permanent("rejected");
        } else if (f != faults_.end()) {
          s = Status::Unavailable("try later");
        }
        got_.push_back({e.id, s.ok()});
      }
      --in_flight_;
      return s;
    });
  }
  bool Fail(const Event& e, Fault fault) override {
    if (fault != Fault::kUnavailable && fault != Fault::kReject) return false;
    std::lock_guard<std::mutex> lock(mu_);
    faults_[e.id] = fault;
    return true;
  }
  void Heal() override {
    std::lock_guard<std::mutex> lock(mu_);
    faults_.clear();
  }
  std::vector<Received> Got() override {
    std::lock_guard<std::mutex> lock(mu_);
    return got_;
  }
  bool SetSlow(int ms) override {
    slow_ms_ = ms;
    return true;
  }
  int MaxInFlightSeen() override { return max_in_flight_.load(); }

 private:
  std::mutex mu_;
  std::map<std::string, Fault> faults_;
  std::vector<Received> got_;
  std::atomic<int> in_flight_{0}, max_in_flight_{0};
  std::atomic<int> slow_ms_{0};
};

#if HERALD_TEST_WITH_KAFKA
// ---- kafka: librdkafka's mock cluster in this process ----------------------

// A mock cluster (3 brokers) of the fixture's own, and a topic whose
// partitions put the streams s0, s1 and s2 (murmur2, as the sender keys
// them) on three different leaders. A sender has at most one event of a
// stream in flight, so every Produce request a broker gets then carries
// one event of its one stream, and the k-th event of a stream in a call
// (its stream_version in this suite) is the k-th request its broker gets:
// failing that request fails exactly that event. kUnavailable answers
// UNKNOWN_SERVER_ERROR (librdkafka gives up on it at once; retryable for
// herald), kReject INVALID_RECORD (permanent), kHang answers after 10 s.
// Responses cannot be cut, and the mock cannot tell how many records it
// holds in flight.
class KafkaFixture final : public SenderFixture {
 public:
  explicit KafkaFixture(const TempDir&) : cluster_(3) {
    EXPECT_TRUE(cluster_.ok());
    int partitions = 3;
    while (partitions < 64 && !Distinct(partitions)) ++partitions;
    EXPECT_TRUE(cluster_.CreateTopic(topic_, partitions, false));
    for (int s = 0; s < 3; ++s) {
      int p = testing::JavaPartition("s" + std::to_string(s), partitions);
      EXPECT_TRUE(cluster_.SetLeader(topic_, p, s + 1));
      broker_of_["s" + std::to_string(s)] = s + 1;
    }
    partitions_ = partitions;
  }
  Result<std::unique_ptr<Sender>> Make(RouteConfig route) override {
    route.sender = "kafka://" + cluster_.bootstraps();
    route.options.route = route.name;
    route.options.fields.push_back({"topic", OptionValue::String(topic_)});
    return MakeSender(route);
  }
  bool Fail(const Event& e, Fault fault) override {
    auto b = broker_of_.find(e.stream);
    if (b == broker_of_.end()) return false;
    int k = static_cast<int>(e.stream_version);
    switch (fault) {
      case Fault::kUnavailable:
        return cluster_.FailNthProduce(b->second, k, RD_KAFKA_RESP_ERR_UNKNOWN);
      case Fault::kReject:
        return cluster_.FailNthProduce(b->second, k,
                                       RD_KAFKA_RESP_ERR_INVALID_RECORD);
      case Fault::kHang:
        return cluster_.FailNthProduce(b->second, k, RD_KAFKA_RESP_ERR_NO_ERROR,
                                       10000);
      default:
        return false;
    }
  }
  void Heal() override {}
  std::vector<Received> Got() override {
    testing::KafkaReader reader(cluster_.bootstraps(), topic_, partitions_);
    std::vector<Received> out;
    for (const auto& r : reader.ReadAll(std::chrono::seconds(10))) {
      out.push_back({r.Header("ce_id"), true});
    }
    return out;
  }
  bool SetSlow(int) override { return false; }
  int MaxInFlightSeen() override { return -1; }

 private:
  static bool Distinct(int partitions) {
    std::set<int> p;
    for (int s = 0; s < 3; ++s) {
      p.insert(testing::JavaPartition("s" + std::to_string(s), partitions));
    }
    return p.size() == 3;
  }

  testing::MockCluster cluster_;
  const std::string topic_ = "contract";
  int partitions_ = 3;
  std::map<std::string, int> broker_of_;
};
#endif

#if HERALD_TEST_WITH_NATS
// ---- nats: a real nats-server with JetStream ---------------------------

// One server for the whole binary (JetStream takes a moment to start); each
// fixture publishes into a JetStream stream of its own.
testing::NatsServer& SharedNatsServer() {
  static testing::NatsServer server;
  return server;
}

class NatsFixture final : public SenderFixture {
 public:
  explicit NatsFixture(const TempDir&) {
    static int counter = 0;
    name_ = "contract" + std::to_string(++counter);
    testing::NatsServer& server = SharedNatsServer();
    EXPECT_TRUE(server.ready()) << server.log();
    admin_ = std::make_unique<testing::JetStreamAdmin>(server.url());
    EXPECT_TRUE(admin_->ok()) << admin_->error();
    EXPECT_EQ(admin_->AddStream(name_, {name_ + ".>"}), "");
  }
  Result<std::unique_ptr<Sender>> Make(RouteConfig route) override {
    route.sender = SharedNatsServer().url();
    route.options.route = route.name;
    route.options.fields.push_back(
        {"subject", OptionValue::String(name_ + ".{stream}")});
    route.options.fields.push_back({"timeout", OptionValue::String("5s")});
    return MakeSender(route);
  }
  // JetStream refuses by subject or by stream limits, not per message, so
  // one event of a stream cannot be failed while its predecessor is
  // stored; tests/nats covers the NATS failures (no stream, a server
  // restart) per stream.
  bool Fail(const Event&, Fault) override { return false; }
  void Heal() override {}
  std::vector<Received> Got() override {
    std::vector<Received> out;
    for (auto& m : admin_->ReadAll(name_)) out.push_back({m.id, true});
    return out;
  }
  bool SetSlow(int) override { return false; }
  int MaxInFlightSeen() override { return -1; }

 private:
  std::string name_;
  std::unique_ptr<testing::JetStreamAdmin> admin_;
};
#endif

#if HERALD_TEST_WITH_RABBITMQ
// ---- rabbitmq: the server of tests/support/with-rabbitmq.sh ----------------

// A headers exchange and a queue of the fixture's own, the queue bound with
// no headers (it takes every message). Failing one event binds a second
// queue to that event's cloudEvents:id that holds nothing and refuses
// publishes (x-max-length 0, x-overflow reject-publish): the broker nacks
// that message, a retryable failure. A permanent failure (basic.return) or
// a hang cannot be made per message while its stream's earlier events are
// taken; tests/rabbitmq covers returns, missing exchanges and restarts.
class RabbitFixture final : public SenderFixture {
 public:
  explicit RabbitFixture(const TempDir&) {
    static int counter = 0;
    name_ = "contract." + std::to_string(::getpid()) + "." +
            std::to_string(++counter);
    EXPECT_TRUE(amqp_.ok());
    amqp_.Exchange(name_, "headers");
    amqp_.Queue(name_);
    amqp_.Bind(name_, name_, "");
  }
  ~RabbitFixture() override {
    Heal();
    amqp_.DeleteQueue(name_);
    amqp_.DeleteExchange(name_);
  }
  Result<std::unique_ptr<Sender>> Make(RouteConfig route) override {
    route.sender = testing::AmqpUrl();
    route.options.route = route.name;
    route.options.fields.push_back({"exchange", OptionValue::String(name_)});
    return MakeSender(route);
  }
  bool Fail(const Event& e, Fault fault) override {
    if (fault != Fault::kUnavailable) return false;
    std::string q = name_ + ".fail." + std::to_string(failing_.size());
    amqp_.Queue(q, {{"x-overflow", "reject-publish"}}, {{"x-max-length", 0}});
    amqp_.Bind(q, name_, "", {{"x-match", "all"}, {"cloudEvents:id", e.id}});
    failing_.push_back(q);
    return true;
  }
  void Heal() override {
    for (const auto& q : failing_) amqp_.DeleteQueue(q);
    failing_.clear();
  }
  std::vector<Received> Got() override {
    for (auto& m : amqp_.Read(name_, SIZE_MAX, milliseconds(300))) {
      got_.push_back({m.id, true});
    }
    return got_;
  }
  bool SetSlow(int) override { return false; }
  int MaxInFlightSeen() override { return -1; }

 private:
  std::string name_;
  testing::AmqpClient amqp_;
  std::vector<std::string> failing_;
  std::vector<Received> got_;
};
#endif

#if HERALD_TEST_WITH_AWS
// ---- sqs / sns: the conformance server (tests/support/aws_conformance.py) --

// One server per fixture; it verifies every request's signature with
// botocore. "sqs" sends one message per request (max_batch = 1), so every
// fault (an error answer, a hang, a cut answer) hits one event; "sns-batch"
// sends PublishBatch (max_batch = 10) to a FIFO topic, where a fault is one
// entry's failure in the batch answer (SenderFault false: retryable; true:
// permanent).
class AwsFixture final : public SenderFixture {
 public:
  AwsFixture(const TempDir&, bool batch) : batch_(batch) {
    EXPECT_TRUE(server_.ready()) << server_.log();
    target_ =
        batch
            ? "sns:" + testing::AwsConformanceServer::TopicArn("contract.fifo")
            : "sqs:" + server_.QueueUrl("contract");
  }
  Result<std::unique_ptr<Sender>> Make(RouteConfig route) override {
    route.sender = target_;
    route.options.route = route.name;
    auto& f = route.options.fields;
    f.push_back({"endpoint", OptionValue::String(server_.endpoint())});
    f.push_back({"region", OptionValue::String("us-east-1")});
    f.push_back({"max_batch", OptionValue::Integer(batch_ ? 10 : 1)});
    f.push_back({"timeout", OptionValue::String("5s")});
    return MakeSender(route);
  }
  bool Fail(const Event& e, Fault fault) override {
    switch (fault) {
      case Fault::kUnavailable:
        return server_.FailEvent(e.id, "InternalError", false);
      case Fault::kReject:
        return server_.FailEvent(e.id, "InvalidParameterValue", true);
      case Fault::kHang:
        return !batch_ && server_.FailEvent(e.id, "", false, -1, "hang");
      case Fault::kCutBeforeStatus:
      case Fault::kCutInStatus:
      case Fault::kCutInHeaders:
      case Fault::kCutAfterHeaders:
      case Fault::kCutInBody:
      case Fault::kCutInChunked:
        return !batch_ &&
               server_.FailEvent(e.id, "", false, -1, FaultName(fault));
      default:
        return false;
    }
  }
  void Heal() override { EXPECT_TRUE(server_.Clear()); }
  std::vector<Received> Got() override {
    std::vector<Received> out;
    for (const auto& m : server_.Messages(target_.substr(4))) {
      out.push_back({testing::JsonStr(m, "event_id"), true});
    }
    return out;
  }
  bool SetSlow(int ms) override {
    return server_.Cue("{\"slow_ms\":" + std::to_string(ms) +
                       ",\"reset_stats\":true}");
  }
  // Requests in progress at once: with one event per request (sqs), the
  // events in flight.
  int MaxInFlightSeen() override {
    if (batch_) return -1;
    int64_t n = -1;
    const Json* v = server_.Stats().Find("max_in_flight");
    if (v) (void)v->TryInt64(&n);
    return static_cast<int>(n);
  }

 private:
  testing::ScopedAwsEnv env_;
  testing::AwsConformanceServer server_;
  bool batch_;
  std::string target_;
};
#endif

// The senders under contract. A new one: a fixture above and a row here.
std::unique_ptr<SenderFixture> MakeFixture(const std::string& name,
                                           const TempDir& dir) {
  if (name == "http") return std::make_unique<HttpFixture>(dir);
  if (name == "https") return std::make_unique<HttpsFixture>(dir);
  if (name == "file") return std::make_unique<FileFixture>(dir);
  if (name == "stdout") return std::make_unique<StdoutFixture>(dir);
  if (name == "callback") return std::make_unique<CallbackFixture>(dir);
  if (name == "herald") return std::make_unique<LogFixture>(dir);
#if HERALD_TEST_WITH_KAFKA
  if (name == "kafka") return std::make_unique<KafkaFixture>(dir);
#endif
#if HERALD_TEST_WITH_NATS
  if (name == "nats") return std::make_unique<NatsFixture>(dir);
#endif
#if HERALD_TEST_WITH_RABBITMQ
  if (name == "rabbitmq") return std::make_unique<RabbitFixture>(dir);
#endif
#if HERALD_TEST_WITH_AWS
  if (name == "sqs") return std::make_unique<AwsFixture>(dir, false);
  if (name == "sns_batch") return std::make_unique<AwsFixture>(dir, true);
#endif
  return nullptr;
}
// What a sender's fixture can make its receiver do.
struct SenderKind {
  std::string name;
  std::set<Fault> faults;         // Fail() works for these
  bool counts_in_flight = false;  // SetSlow() and MaxInFlightSeen() work
};
const Fault kCuts[] = {Fault::kCutBeforeStatus, Fault::kCutInStatus,
                       Fault::kCutInHeaders,    Fault::kCutAfterHeaders,
                       Fault::kCutInBody,       Fault::kCutInChunked};
const std::set<Fault> kEveryFault = {
    Fault::kUnavailable,     Fault::kReject,      Fault::kHang,
    Fault::kCutBeforeStatus, Fault::kCutInStatus, Fault::kCutInHeaders,
    Fault::kCutAfterHeaders, Fault::kCutInBody,   Fault::kCutInChunked};
const std::vector<SenderKind> kSenders = {
    {"http", kEveryFault, true},
    {"https", kEveryFault, true},
    {"file", {Fault::kUnavailable}},    // a full disk
    {"stdout", {Fault::kUnavailable}},  // /dev/full
    {"callback", {Fault::kUnavailable, Fault::kReject}, true},
    {"herald", {}},  // a local append: no receiver to fail
#if HERALD_TEST_WITH_KAFKA
    // Broker errors injected into the partition leader's answers.
    {"kafka", {Fault::kUnavailable, Fault::kReject, Fault::kHang}},
#endif
#if HERALD_TEST_WITH_NATS
    {"nats", {}},  // its faults are tested in tests/nats
#endif
#if HERALD_TEST_WITH_RABBITMQ
    {"rabbitmq", {Fault::kUnavailable}},  // a queue that rejects: a nack
#endif
#if HERALD_TEST_WITH_AWS
    // One message per request: each fault (every cut too) hits one event.
    {"sqs", kEveryFault, true},
    // PublishBatch: a fault is one entry's failure in the batch answer.
    {"sns_batch", {Fault::kUnavailable, Fault::kReject}},
#endif
};
const SenderKind& KindOf(const std::string& name) {
  for (const auto& k : kSenders) {
    if (k.name == name) return k;
  }
  std::abort();  // not in the table: a test of a sender nobody listed
}
// The senders whose row says `can`.
std::vector<std::string> SendersThat(
    const std::function<bool(const SenderKind&)>& can) {
  std::vector<std::string> out;
  for (const auto& k : kSenders) {
    if (can(k)) out.push_back(k.name);
  }
  return out;
}
std::vector<std::string> SendersFailingBy(Fault f) {
  return SendersThat(
      [f](const SenderKind& k) { return k.faults.count(f) > 0; });
}

// ---- the contract
// ------------------------------------------------------------

class SenderContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
#if HERALD_TEST_WITH_RABBITMQ
    if (GetParam() == "rabbitmq" && testing::AmqpUrl().empty()) {
      // CI runs under with-rabbitmq.sh: there a missing server is a failure.
      if (std::getenv("CI")) FAIL() << "HERALD_TEST_AMQP_URL is not set";
      GTEST_SKIP() << "HERALD_TEST_AMQP_URL is not set (run under "
                      "tests/support/with-rabbitmq.sh)";
    }
#endif
    fx_ = MakeFixture(GetParam(), dir_);
    ASSERT_NE(fx_, nullptr);
  }

  // `streams` streams of `per_stream` events each, interleaved, in
  // position order. A payload of `payload_bytes` makes lines long.
  std::vector<Event> Events(int streams, int per_stream,
                            size_t payload_bytes = 10) {
    std::vector<Event> out;
    for (int n = 0; n < per_stream; ++n) {
      for (int s = 0; s < streams; ++s) {
        Event e = testing::MakeEvent(
            "s" + std::to_string(s), "contract.tested",
            "{\"pad\":\"" + std::string(payload_bytes, 'p') + "\"}");
        e.id = NewUuidV7();
        e.position = ++position_;
        e.stream_version = n + 1;
        e.occurred_at_us = NowMicros();
        out.push_back(std::move(e));
      }
    }
    return out;
  }

  std::vector<SendResult> Send(Sender* sender, const std::vector<Event>& events,
                               steady_clock::time_point deadline) {
    std::vector<SendResult> results(events.size(), SendResult::NotSent());
    sender->Send(events, results, deadline);
    return results;
  }
  std::vector<SendResult> Send(Sender* sender,
                               const std::vector<Event>& events) {
    return Send(sender, events, steady_clock::now() + std::chrono::seconds(20));
  }

  std::unique_ptr<Sender> MakeSender(int max_in_flight = 4) {
    RouteConfig route;
    route.name = "contract";
    route.max_in_flight = max_in_flight;
    auto s = fx_->Make(route);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // The rules every result must keep, whatever happened:
  //  - OK only for an event the receiver acknowledged;
  //  - per stream, acknowledged in order;
  //  - after a failure, nothing later of its stream OK or even received.
  void CheckContract(const std::vector<Event>& events,
                     const std::vector<SendResult>& results,
                     const std::vector<Received>& before) {
    std::vector<Received> got = fx_->Got();
    std::map<std::string, size_t> first_ack;  // id -> arrival index
    std::set<std::string> seen_before, seen_now;
    for (const auto& r : before) seen_before.insert(r.id);
    for (size_t i = 0; i < got.size(); ++i) {
      seen_now.insert(got[i].id);
      if (got[i].acknowledged && !first_ack.count(got[i].id)) {
        first_ack[got[i].id] = i;
      }
    }
    std::map<std::string, size_t> last_ack_of_stream;
    std::set<std::string> failed_streams;
    for (size_t i = 0; i < events.size(); ++i) {
      const Event& e = events[i];
      const SendResult& r = results[i];
      SCOPED_TRACE("event " + std::to_string(i) + " of " + e.stream + ": " +
                   r.status.ToString());
      if (failed_streams.count(e.stream)) {
        EXPECT_FALSE(r.status.ok()) << "OK after a failure of its stream";
        if (!fx_->FailsWholeCall() || !r.attempted) {
          // Not sent at all: the receiver did not get it in this call.
          EXPECT_FALSE(!seen_before.count(e.id) && seen_now.count(e.id))
              << "sent after a failure of its stream";
        }
        EXPECT_FALSE(r.attempted && !fx_->FailsWholeCall())
            << "attempted after a failure of its stream";
        continue;
      }
      if (!r.status.ok()) {
        failed_streams.insert(e.stream);
        if (!r.attempted) {
          EXPECT_FALSE(!seen_before.count(e.id) && seen_now.count(e.id))
              << "reported not sent, but the receiver got it";
        }
        continue;
      }
      EXPECT_TRUE(r.attempted);
      auto ack = first_ack.find(e.id);
      ASSERT_NE(ack, first_ack.end())
          << "reported delivered, but the receiver never acknowledged it";
      auto last = last_ack_of_stream.find(e.stream);
      if (last != last_ack_of_stream.end()) {
        EXPECT_GT(ack->second, last->second) << "acknowledged out of order";
      }
      last_ack_of_stream[e.stream] = ack->second;
    }
  }

  TempDir dir_;
  std::unique_ptr<SenderFixture> fx_;
  int64_t position_ = 0;
};

TEST_P(SenderContract, EveryEventGetsAResultInStreamOrder) {
  auto sender = MakeSender();
  ASSERT_NE(sender, nullptr);
  auto events = Events(4, 5);
  auto results = Send(sender.get(), events);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_TRUE(results[i].status.ok()) << i << results[i].status.ToString();
    EXPECT_TRUE(results[i].attempted) << i;
  }
  CheckContract(events, results, {});
  EXPECT_EQ(fx_->Got().size(), events.size());
}

// Pipelined sending (SendKeepingInFlight): an event may be left in flight
// only as the last of its stream in the call, after everything before it
// in its stream was acknowledged; passed again first in the next call, it
// is answered there, and every event ends up acknowledged in stream order.
// (A sender that does not pipeline answers everything at once.)
TEST_P(SenderContract, EventsLeftInFlightAreAnsweredByTheNextCall) {
  auto sender = MakeSender();
  ASSERT_NE(sender, nullptr);
  auto first = Events(4, 3);
  std::vector<SendResult> r1(first.size(), SendResult::NotSent());
  sender->SendKeepingInFlight(first, r1,
                              steady_clock::now() + std::chrono::seconds(20));
  std::map<std::string, size_t> last_of;  // stream -> its last index
  for (size_t i = 0; i < first.size(); ++i) last_of[first[i].stream] = i;
  std::vector<Event> again;
  std::set<std::string> kept_streams;
  for (size_t i = 0; i < first.size(); ++i) {
    SCOPED_TRACE("event " + std::to_string(i));
    if (r1[i].in_flight) {
      EXPECT_TRUE(r1[i].attempted);
      EXPECT_FALSE(r1[i].status.ok());
      EXPECT_EQ(last_of[first[i].stream], i) << "in flight, not the last";
      again.push_back(first[i]);
      kept_streams.insert(first[i].stream);
      continue;
    }
    EXPECT_TRUE(r1[i].status.ok()) << r1[i].status.ToString();
  }
  // The next call: what was left in flight first, then later events.
  auto second = Events(4, 1);
  for (auto& e : second) again.push_back(e);
  std::vector<SendResult> r2(again.size(), SendResult::NotSent());
  sender->Send(again, r2, steady_clock::now() + std::chrono::seconds(20));
  for (size_t i = 0; i < again.size(); ++i) {
    EXPECT_TRUE(r2[i].status.ok()) << i << " " << r2[i].status.ToString();
    EXPECT_FALSE(r2[i].in_flight) << i;
  }
  std::vector<Event> all = first;
  std::vector<SendResult> results = r1;
  for (size_t i = 0; i < again.size(); ++i) {
    bool carried = i < again.size() - second.size();
    if (carried) {
      for (size_t k = 0; k < first.size(); ++k) {
        if (first[k].id == again[i].id) results[k] = r2[i];
      }
    } else {
      all.push_back(again[i]);
      results.push_back(r2[i]);
    }
  }
  CheckContract(all, results, {});
  std::map<std::string, int> acks;
  for (const auto& r : fx_->Got()) acks[r.id] += r.acknowledged ? 1 : 0;
  for (const auto& e : all) EXPECT_GE(acks[e.id], 1) << e.id;
}

// The cases below run for the senders whose fixtures can show the fault.
class SenderRetryableFault : public SenderContract {};
class SenderRejection : public SenderContract {};
class SenderHang : public SenderContract {};
class SenderCutResponse : public SenderContract {};
class SenderInFlight : public SenderContract {};

TEST_P(SenderRetryableFault, AFailureStopsTheRestOfItsStreamOnly) {
  auto sender = MakeSender();
  ASSERT_NE(sender, nullptr);
  // Something delivered first, so a file has lines (and a half-used page)
  // before the failure.
  auto first = Events(3, 1, 300);
  CheckContract(first, Send(sender.get(), first), {});
  auto before = fx_->Got();

  auto events = Events(3, 4, 300);  // s0 s1 s2 s0 s1 s2 ...
  const Event& bad = events[4];     // s1's second event
  ASSERT_TRUE(fx_->Fail(bad, Fault::kUnavailable));
  auto results = Send(sender.get(), events);
  CheckContract(events, results, before);
  EXPECT_FALSE(results[4].status.ok());
  EXPECT_TRUE(results[4].status.retryable()) << results[4].status.ToString();
  EXPECT_FALSE(results[7].status.ok());  // s1's third and fourth
  EXPECT_FALSE(results[10].status.ok());
  if (!fx_->FailsWholeCall()) {
    EXPECT_TRUE(results[1].status.ok());  // s1 before the failure
    for (size_t i : {0, 2, 3, 5, 6, 8, 9, 11}) {
      EXPECT_TRUE(results[i].status.ok()) << i;  // the other streams
    }
    EXPECT_FALSE(results[7].attempted);
    EXPECT_FALSE(results[10].attempted);
  } else {
    // One write for the call: it failed as a whole, and the receiver holds
    // exactly what it held before (no torn line, no part of the batch).
    auto after = fx_->Got();
    ASSERT_EQ(after.size(), before.size());
  }

  // Healed, the relay sends what was not delivered, in order: every event
  // is then acknowledged, each whole.
  fx_->Heal();
  std::vector<Event> again;
  for (size_t i = 0; i < events.size(); ++i) {
    if (!results[i].status.ok()) again.push_back(events[i]);
  }
  auto before_retry = fx_->Got();
  auto retried = Send(sender.get(), again);
  for (const auto& r : retried)
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  CheckContract(again, retried, before_retry);
  std::map<std::string, int> acks;
  for (const auto& r : fx_->Got()) acks[r.id] += r.acknowledged ? 1 : 0;
  for (const auto& e : events) EXPECT_GE(acks[e.id], 1) << e.id;
  if (fx_->FailsWholeCall()) {
    for (const auto& e : events) EXPECT_EQ(acks[e.id], 1) << e.id;
  }
}

TEST_P(SenderRejection, APermanentRejectionIsNotRetryable) {
  auto sender = MakeSender();
  ASSERT_NE(sender, nullptr);
  auto events = Events(2, 3);
  ASSERT_TRUE(fx_->Fail(events[2], Fault::kReject));
  auto results = Send(sender.get(), events);
  CheckContract(events, results, {});
  EXPECT_FALSE(results[2].status.ok());
  EXPECT_FALSE(results[2].status.retryable()) << results[2].status.ToString();
  EXPECT_FALSE(results[4].attempted);
  EXPECT_TRUE(results[3].status.ok());
}

TEST_P(SenderContract, NothingIsSentOnceTheDeadlinePassed) {
  auto sender = MakeSender();
  ASSERT_NE(sender, nullptr);
  auto events = Events(2, 2);
  auto results = Send(sender.get(), events, steady_clock::now());
  for (const auto& r : results) {
    EXPECT_FALSE(r.status.ok());
    EXPECT_FALSE(r.attempted);
  }
  CheckContract(events, results, {});
  EXPECT_TRUE(fx_->Got().empty());
}

TEST_P(SenderHang, AHangingReceiverIsAbandonedAtTheDeadline) {
  auto sender = MakeSender();
  ASSERT_NE(sender, nullptr);
  auto events = Events(2, 3);
  ASSERT_TRUE(fx_->Fail(events[2], Fault::kHang));  // s0's second event
  auto start = steady_clock::now();
  auto deadline = start + milliseconds(500);
  auto results = Send(sender.get(), events, deadline);
  auto took = steady_clock::now() - start;
  EXPECT_LT(took, milliseconds(500 + 1000)) << "Send overran its deadline";
  CheckContract(events, results, {});
  EXPECT_FALSE(results[2].status.ok());
  EXPECT_TRUE(results[2].status.retryable());
  EXPECT_FALSE(results[4].attempted);
  EXPECT_TRUE(results[0].status.ok());
  EXPECT_TRUE(results[1].status.ok());
  EXPECT_TRUE(results[3].status.ok());
  EXPECT_TRUE(results[5].status.ok());
}

// A response counts as an acknowledgement only when complete: header
// section ended, body received in full. A cut anywhere is a retryable
// failure, and the rest of the stream waits.
TEST_P(SenderCutResponse, ACutResponseIsNotAnAcknowledgement) {
  auto sender = MakeSender();
  ASSERT_NE(sender, nullptr);
  const SenderKind& kind = KindOf(GetParam());
  for (Fault cut : kCuts) {
    if (!kind.faults.count(cut)) continue;
    SCOPED_TRACE(FaultName(cut));
    auto events = Events(2, 2);  // s0 s1 s0 s1
    ASSERT_TRUE(fx_->Fail(events[0], cut));
    auto before = fx_->Got();
    auto results = Send(sender.get(), events);
    CheckContract(events, results, before);
    EXPECT_FALSE(results[0].status.ok());
    EXPECT_TRUE(results[0].status.retryable()) << results[0].status.ToString();
    EXPECT_FALSE(results[2].attempted);
    EXPECT_TRUE(results[1].status.ok());
    EXPECT_TRUE(results[3].status.ok());
    fx_->Heal();
  }
}

TEST_P(SenderInFlight, AtMostMaxInFlightAtOnce) {
  ASSERT_TRUE(fx_->SetSlow(30));
  for (int max : {1, 3}) {
    SCOPED_TRACE("max_in_flight " + std::to_string(max));
    auto sender = MakeSender(max);
    ASSERT_NE(sender, nullptr);
    auto events = Events(12, 1);
    auto results = Send(sender.get(), events);
    CheckContract(events, results, {});
    for (const auto& r : results) EXPECT_TRUE(r.status.ok());
    int seen = fx_->MaxInFlightSeen();
    EXPECT_GE(seen, 1);
    EXPECT_LE(seen, max);
  }
}

const auto kParamName = [](const auto& info) { return info.param; };
INSTANTIATE_TEST_SUITE_P(Senders, SenderContract,
                         ::testing::ValuesIn(SendersThat([](const SenderKind&) {
                           return true;
                         })),
                         kParamName);
INSTANTIATE_TEST_SUITE_P(
    Senders, SenderRetryableFault,
    ::testing::ValuesIn(SendersFailingBy(Fault::kUnavailable)), kParamName);
INSTANTIATE_TEST_SUITE_P(Senders, SenderRejection,
                         ::testing::ValuesIn(SendersFailingBy(Fault::kReject)),
                         kParamName);
INSTANTIATE_TEST_SUITE_P(Senders, SenderHang,
                         ::testing::ValuesIn(SendersFailingBy(Fault::kHang)),
                         kParamName);
INSTANTIATE_TEST_SUITE_P(
    Senders, SenderCutResponse,
    ::testing::ValuesIn(SendersThat([](const SenderKind& k) {
      for (Fault f : kCuts) {
        if (k.faults.count(f)) return true;
      }
      return false;
    })),
    kParamName);
INSTANTIATE_TEST_SUITE_P(
    Senders, SenderInFlight,
    ::testing::ValuesIn(SendersThat([](const SenderKind& k) {
      return k.counts_in_flight;
    })),
    kParamName);

// ---- herald pull --out: the same rule for the pull consumer's file ---------

TEST(PullOut, AFailedWriteLeavesNoTornLine) {
  TempDir dir;
  SmallDisk disk(dir, 64);
  // Mounting a tmpfs needs root, as the test command runs.
  ASSERT_TRUE(disk.ok()) << "cannot mount a tmpfs: " << disk.why();
  testing::ServeProcess server(dir, "sqlite:" + dir.file("h.db"));
  ASSERT_TRUE(server.ready()) << server.stderr_text();
  {
    std::string body = "[";
    for (int i = 0; i < 40; ++i) {
      if (i) body += ",";
      body += "{\"stream\":\"p-" + std::to_string(i % 3) +
              "\",\"type\":\"pull.tested\",\"payload\":{\"pad\":\"" +
              std::string(300, 'p') + "\"}}";
    }
    body += "]";
    testing::HttpClient c;
    auto r = c.Post(server.base() + "/api/events", body);
    ASSERT_EQ(r.status, 201) << r.body;
  }

  std::string out = disk.file("out.jsonl");
  const std::string kFirst = "{\"already\":\"here\"}\n";
  testing::WriteFile(out, kFirst);
  disk.Fill();
  std::string cp = dir.file("pull.offset");
  std::vector<std::string> argv{
      testing::HeraldBin(), "pull", "--from", server.base(),
      "--checkpoint",       cp,     "--out",  out};
  Child::Options o;
  o.stderr_path = dir.file("pull1.err");
  Child full(argv, o);
  int rc = full.Wait();
  EXPECT_NE(rc, 0) << testing::ReadFile(o.stderr_path);
  EXPECT_NE(testing::ReadFile(o.stderr_path).find("No space left"),
            std::string::npos)
      << testing::ReadFile(o.stderr_path);
  // Byte for byte what was there: the partial batch was cut off again.
  EXPECT_EQ(testing::ReadFile(out), kFirst);

  disk.Free();
  o.stderr_path = dir.file("pull2.err");
  Child ok(argv, o);
  EXPECT_TRUE(WaitFor([&] { return testing::ReadFile(cp) == "41\n"; },
                      std::chrono::seconds(20)))
      << testing::ReadFile(o.stderr_path);
  ok.Signal(SIGTERM);
  EXPECT_EQ(ok.Wait(), 0);
  std::string text = testing::ReadFile(out);
  ASSERT_EQ(text.substr(0, kFirst.size()), kFirst);
  std::map<int64_t, int> positions;
  size_t from = kFirst.size();
  while (from < text.size()) {
    size_t end = text.find('\n', from);
    ASSERT_NE(end, std::string::npos) << "torn last line";
    auto doc = Json::Parse(text.substr(from, end - from));
    ASSERT_TRUE(doc.ok()) << "torn line: " << text.substr(from, end - from);
    int64_t p = 0;
    ASSERT_TRUE(doc->Find("position") && doc->Find("position")->TryInt64(&p));
    ++positions[p];
    from = end + 1;
  }
  ASSERT_EQ(positions.size(), 40u);
  for (const auto& [p, n] : positions) EXPECT_EQ(n, 1) << "position " << p;
}

}  // namespace
}  // namespace herald
