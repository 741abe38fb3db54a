// End-to-end tests of live reading from `herald serve`: the API client
// algorithm under concurrent writers, long-poll latency, SSE resume, 1,000
// idle SSE connections, `herald pull` across SIGKILL, and SIGTERM under
// load.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "herald/store.h"
#include "server/server_test_util.h"

namespace herald::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

std::string EventBody(const std::string& stream, int n) {
  return "{\"stream\":\"" + stream +
         "\",\"type\":\"load.tick\",\"payload\":{\"n\":" + std::to_string(n) +
         "}}";
}

struct Page {
  std::vector<std::pair<int64_t, std::string>> events;  // position, id
  int64_t next_offset = -1;
};

bool ParsePage(const std::string& body, Page* page) {
  auto doc = Json::Parse(body);
  if (!doc.ok()) return false;
  const Json* events = doc->Find("events");
  const Json* next = doc->Find("next_offset");
  if (!events || !next || !next->TryInt64(&page->next_offset)) return false;
  for (const auto& e : events->items()) {
    int64_t pos = 0;
    if (!e.Find("position") || !e.Find("position")->TryInt64(&pos)) {
      return false;
    }
    page->events.emplace_back(pos, e.Find("id")->as_string());
  }
  return true;
}

// Positions of the "id: N" lines of an SSE text.
std::vector<int64_t> SseIds(const std::string& raw) {
  std::string text = "\n" + raw;
  std::vector<int64_t> ids;
  size_t pos = 0;
  while ((pos = text.find("\nid: ", pos)) != std::string::npos) {
    pos += 5;
    ids.push_back(std::stoll(text.substr(pos, text.find('\n', pos) - pos)));
  }
  return ids;
}

class ServerStreamTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    RaiseFdLimit();
    HERALD_SKIP_UNLESS_BACKEND(GetParam());
    url_ = FreshStoreUrl(GetParam(), dir_);
  }
  void StartServer(const std::string& config = "") {
    server_ = std::make_unique<ServeProcess>(dir_, url_, config);
    ASSERT_TRUE(server_->ready()) << server_->stderr_text();
    base_ = server_->base();
  }
  TempDir dir_;
  std::string url_;
  std::unique_ptr<ServeProcess> server_;
  std::string base_;
};

TEST_P(ServerStreamTest, ApiClientConsumesConcurrentWritersOnceInOrder) {
  StartServer();
  constexpr int kWriters = 8, kTotal = 10000;
  std::atomic<int> next_n{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      HttpClient c;
      while (true) {
        int n = next_n.fetch_add(5);
        if (n >= kTotal) break;
        // Singles and small batches, as services would post them.
        std::string body;
        if (n % 10 == 0) {
          body = "[";
          for (int i = 0; i < 5; ++i) {
            if (i) body += ",";
            body += EventBody("w" + std::to_string(w) + "-" + std::to_string(i),
                              n + i);
          }
          body += "]";
          if (c.Post(base_ + "/api/events", body).status != 201) ++failures;
        } else {
          for (int i = 0; i < 5; ++i) {
            if (c.Post(base_ + "/api/events",
                       EventBody("w" + std::to_string(w), n + i))
                    .status != 201) {
              ++failures;
            }
          }
        }
      }
    });
  }
  // The literature's client: offset, request, process, store next_offset.
  HttpClient c;
  int64_t offset = 0;
  int64_t expect = 1;
  std::set<std::string> ids;
  auto deadline = steady_clock::now() + std::chrono::seconds(120);
  while (static_cast<int>(ids.size()) < kTotal &&
         steady_clock::now() < deadline) {
    auto r = c.Get(base_ + "/api/events?offset=" + std::to_string(offset) +
                   "&limit=500&wait=1");
    ASSERT_EQ(r.status, 200) << r.body;
    Page page;
    ASSERT_TRUE(ParsePage(r.body, &page)) << r.body;
    for (const auto& [pos, id] : page.events) {
      ASSERT_EQ(pos, expect) << "out of order or skipped";
      ++expect;
      ASSERT_TRUE(ids.insert(id).second) << "seen twice: " << id;
    }
    offset = page.next_offset;
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(static_cast<int>(ids.size()), kTotal);
  // Nothing more to come.
  auto r = c.Get(base_ + "/api/events?offset=" + std::to_string(offset));
  Page tail;
  ASSERT_TRUE(ParsePage(r.body, &tail));
  EXPECT_TRUE(tail.events.empty());
  EXPECT_EQ(server_->Stop(), 0);
}

TEST_P(ServerStreamTest, LongPollReturnsWithinMsOfACommit) {
  StartServer();
  HttpClient poster, metrics;
  std::vector<int64_t> lags;
  for (int round = 0; round < 5; ++round) {
    std::atomic<bool> returned{false};
    steady_clock::time_point got;
    HttpResult result;
    std::thread poller([&] {
      HttpClient c;
      result = c.Get(base_ + "/api/events?offset=" + std::to_string(round + 1) +
                     "&wait=20");
      got = steady_clock::now();
      returned = true;
    });
    // Wait until the long-poll is parked in the server (not a sleep).
    ASSERT_TRUE(WaitFor([&] {
      auto m = metrics.Get(base_ + "/metrics");
      return MetricValue(m.body, "herald_long_polls_waiting") >= 1;
    }));
    EXPECT_FALSE(returned.load());
    auto before = steady_clock::now();
    auto r = poster.Post(base_ + "/api/events", EventBody("lp", round));
    auto committed = steady_clock::now();
    ASSERT_EQ(r.status, 201);
    poller.join();
    ASSERT_EQ(result.status, 200);
    Page page;
    ASSERT_TRUE(ParsePage(result.body, &page));
    ASSERT_EQ(page.events.size(), 1u);
    // The poller hears of the event about when the writer hears of its
    // commit: a few ms at most.
    auto lag =
        std::chrono::duration_cast<std::chrono::microseconds>(got - committed);
    auto since_post = std::chrono::duration_cast<milliseconds>(got - before);
    lags.push_back(lag.count());
    EXPECT_LT(since_post.count(), 250) << "round " << round;
  }
  // Typically the poller has its answer before the writer hears of the
  // commit; allow for a busy 2-core machine in the median.
  std::sort(lags.begin(), lags.end());
  EXPECT_LT(lags[lags.size() / 2], 20000) << "median lag in us";
  // An append by another process is found by the head check.
  std::thread poller;
  steady_clock::time_point got;
  poller = std::thread([&] {
    HttpClient c;
    c.Get(base_ + "/api/events?offset=6&wait=20");
    got = steady_clock::now();
  });
  ASSERT_TRUE(WaitFor([&] {
    auto m = metrics.Get(base_ + "/metrics");
    return MetricValue(m.body, "herald_long_polls_waiting") >= 1;
  }));
  std::string out;
  ASSERT_EQ(RunCommand({HeraldBin(), "append", "--db", url_, "--type", "x.y",
                        "--stream", "other", "{}"},
                       &out),
            0);
  auto appended = steady_clock::now();
  poller.join();
  EXPECT_LT(std::chrono::duration_cast<milliseconds>(got - appended).count(),
            250);
  EXPECT_EQ(server_->Stop(), 0);
}

TEST_P(ServerStreamTest, SseReconnectWithLastEventIdMissesNothing) {
  StartServer("[server]\nheartbeat = \"200ms\"\n");
  HttpClient c;
  auto post = [&](int from, int n) {
    std::string body = "[";
    for (int i = 0; i < n; ++i) {
      if (i) body += ",";
      body += EventBody("sse-" + std::to_string((from + i) % 7), from + i);
    }
    body += "]";
    ASSERT_EQ(c.Post(base_ + "/api/events", body).status, 201);
  };
  post(0, 50);
  auto open = [&](const std::string& extra) {
    int fd = ConnectLoopback(server_->port());
    EXPECT_GE(fd, 0);
    EXPECT_TRUE(SendAll(fd,
                        "GET /api/events/stream?offset=0 HTTP/1.1\r\n"
                        "Host: x\r\nAccept: text/event-stream\r\n" +
                            extra + "\r\n"));
    return fd;
  };
  int fd = open("");
  std::string text;
  auto until = steady_clock::now() + std::chrono::seconds(10);
  while (SseIds(text).size() < 50 && steady_clock::now() < until) {
    ASSERT_TRUE(ReadSome(fd, &text, 100));
  }
  EXPECT_NE(text.find("Content-Type: text/event-stream"), std::string::npos);
  // More events while connected, then a drop somewhere in the middle.
  post(50, 30);
  while (SseIds(text).size() < 60 && steady_clock::now() < until) {
    ASSERT_TRUE(ReadSome(fd, &text, 100));
  }
  ::close(fd);
  std::vector<int64_t> seen = SseIds(text);
  ASSERT_GE(seen.size(), 60u);
  // Events committed while away.
  post(80, 40);
  int64_t last = seen.back();
  fd = open("Last-Event-ID: " + std::to_string(last) + "\r\n");
  std::string more;
  until = steady_clock::now() + std::chrono::seconds(10);
  while (static_cast<int64_t>(SseIds(more).size()) < 120 - last &&
         steady_clock::now() < until) {
    ASSERT_TRUE(ReadSome(fd, &more, 100));
  }
  // Heartbeats keep an idle stream alive.
  std::string idle;
  auto hb_until = steady_clock::now() + std::chrono::seconds(3);
  while (idle.find(": heartbeat") == std::string::npos &&
         steady_clock::now() < hb_until) {
    ASSERT_TRUE(ReadSome(fd, &idle, 100));
  }
  EXPECT_NE(idle.find(": heartbeat"), std::string::npos);
  ::close(fd);
  for (int64_t id : SseIds(more)) seen.push_back(id);
  ASSERT_EQ(seen.size(), 120u);
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i], static_cast<int64_t>(i + 1));
  }
  EXPECT_EQ(server_->Stop(), 0);
}

TEST_P(ServerStreamTest, ThousandIdleSseConnectionsWhileServing) {
  StartServer();
  constexpr int kStreams = 1000;
  std::vector<int> fds;
  for (int i = 0; i < kStreams; ++i) {
    int fd = ConnectLoopback(server_->port());
    ASSERT_GE(fd, 0) << "connection " << i;
    ASSERT_TRUE(
        SendAll(fd, "GET /api/events/stream HTTP/1.1\r\nHost: x\r\n\r\n"));
    fds.push_back(fd);
  }
  // Every stream got its response head.
  for (int fd : fds) {
    std::string head;
    auto until = steady_clock::now() + std::chrono::seconds(10);
    while (head.find("retry:") == std::string::npos &&
           steady_clock::now() < until) {
      ASSERT_TRUE(ReadSome(fd, &head, 100));
    }
    ASSERT_NE(head.find("retry:"), std::string::npos);
  }
  HttpClient c;
  auto m = c.Get(base_ + "/metrics");
  EXPECT_EQ(MetricValue(m.body, "herald_open_streams"), kStreams);
  // Normal requests still answer promptly.
  for (int i = 0; i < 20; ++i) {
    auto start = steady_clock::now();
    EXPECT_EQ(c.Post(base_ + "/api/events", EventBody("busy", i)).status, 201);
    EXPECT_EQ(c.Get(base_ + "/api/events?offset=0&limit=5").status, 200);
    EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(1));
  }
  // And every stream receives the events.
  for (int fd : fds) {
    std::string got;
    auto until = steady_clock::now() + std::chrono::seconds(10);
    while (SseIds(got).size() < 20 && steady_clock::now() < until) {
      ASSERT_TRUE(ReadSome(fd, &got, 100));
    }
    EXPECT_EQ(SseIds(got).size(), 20u);
  }
  for (int fd : fds) ::close(fd);
  EXPECT_TRUE(WaitFor([&] {
    auto mm = c.Get(base_ + "/metrics");
    return MetricValue(mm.body, "herald_open_streams") == 0;
  }));
  EXPECT_EQ(server_->Stop(), 0);
}

// Positions of the JSON lines of a --out file, in file order.
std::vector<int64_t> OutPositions(const std::string& path) {
  std::vector<int64_t> out;
  std::istringstream in(ReadFile(path));
  std::string line;
  while (std::getline(in, line)) {
    auto doc = Json::Parse(line);
    int64_t p = 0;
    if (doc.ok() && doc->Find("position") &&
        doc->Find("position")->TryInt64(&p)) {
      out.push_back(p);
    }
  }
  return out;
}

TEST_P(ServerStreamTest, PullSurvivesSigkillWithDuplicatesOnlyFromLastBatch) {
  StartServer();
  constexpr int kTotal = 3000, kLimit = 50;
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    HttpClient c;
    for (int n = 0; n < kTotal; n += 10) {
      std::string body = "[";
      for (int i = 0; i < 10; ++i) {
        if (i) body += ",";
        body += EventBody("p-" + std::to_string((n + i) % 13), n + i);
      }
      body += "]";
      c.Post(base_ + "/api/events", body);
    }
    writing = false;
  });
  std::string out = dir_.file("pulled.jsonl");
  std::string cp = dir_.file("pulled.offset");
  std::vector<std::string> argv{
      HeraldBin(), "pull",  "--from", base_,     "--checkpoint",
      cp,          "--out", out,      "--limit", std::to_string(kLimit),
      "--wait",    "1"};
  int kills = 0;
  for (int trial = 0; trial < 4; ++trial) {
    Child::Options o;
    o.stderr_path = dir_.file("pull.err");
    Child pull(argv, o);
    // Let it process some, then kill it in the middle of its work.
    size_t before = OutPositions(out).size();
    WaitFor([&] { return OutPositions(out).size() >= before + 200; },
            std::chrono::seconds(5));
    pull.Signal(SIGKILL);
    pull.Wait();
    ++kills;
  }
  writer.join();
  // A last run finishes the job.
  Child::Options o;
  o.stderr_path = dir_.file("pull.err");
  Child pull(argv, o);
  // Done when everything is saved and this run handles SIGTERM (the earlier
  // runs may have saved it all already, and a long poll counted by the
  // server may still be a killed run's: SIGTERM must not reach the new
  // process before it installed its handler).
  ASSERT_TRUE(WaitFor(
      [&] {
        auto saved = ReadFile(cp);
        return !saved.empty() && std::stoll(saved) == kTotal + 1 &&
               pull.Catches(SIGTERM);
      },
      std::chrono::seconds(30)))
      << ReadFile(cp);
  pull.Signal(SIGTERM);
  EXPECT_EQ(pull.Wait(), 0);

  std::vector<int64_t> positions = OutPositions(out);
  std::map<int64_t, int> count;
  for (int64_t p : positions) ++count[p];
  for (int64_t p = 1; p <= kTotal; ++p) {
    ASSERT_GE(count[p], 1) << "lost position " << p;
  }
  size_t dups = positions.size() - kTotal;
  EXPECT_LE(dups, static_cast<size_t>(kills * kLimit));
  // Every restart began where the saved checkpoint was: positions only go
  // back at a restart, and then by less than one batch.
  int back_steps = 0;
  for (size_t i = 1; i < positions.size(); ++i) {
    if (positions[i] <= positions[i - 1]) {
      ++back_steps;
      EXPECT_LE(positions[i - 1] - positions[i], kLimit);
    } else {
      EXPECT_EQ(positions[i], positions[i - 1] + 1);
    }
  }
  EXPECT_LE(back_steps, kills);
  EXPECT_EQ(server_->Stop(), 0);
}

TEST_P(ServerStreamTest, PullRetriesWhileTheServerIsDown) {
  // The consumer starts first, against a port where nothing listens yet.
  int port = FreePort();
  std::string out = dir_.file("late.jsonl");
  std::string cp = dir_.file("late.offset");
  Child::Options o;
  o.stderr_path = dir_.file("late.err");
  Child pull({HeraldBin(), "pull", "--from",
              "http://127.0.0.1:" + std::to_string(port), "--checkpoint", cp,
              "--out", out, "--wait", "1"},
             o);
  ASSERT_TRUE(WaitFor([&] {
    return ReadFile(dir_.file("late.err")).find("retrying") !=
           std::string::npos;
  }));
  server_ = std::make_unique<ServeProcess>(dir_, url_, "",
                                           std::vector<std::string>{}, port);
  ASSERT_TRUE(server_->ready()) << server_->stderr_text();
  HttpClient c;
  ASSERT_EQ(
      c.Post(server_->base() + "/api/events",
             "[" + EventBody("late", 1) + "," + EventBody("late", 2) + "]")
          .status,
      201);
  EXPECT_TRUE(
      WaitFor([&] { return ReadFile(cp) == "3\n"; }, std::chrono::seconds(20)))
      << ReadFile(dir_.file("late.err"));
  EXPECT_EQ(OutPositions(out), (std::vector<int64_t>{1, 2}));
  pull.Signal(SIGTERM);
  EXPECT_EQ(pull.Wait(), 0);
  EXPECT_EQ(server_->Stop(), 0);
}

TEST_P(ServerStreamTest, PullExecFailureStopsWithoutMovingTheCheckpoint) {
  StartServer();
  HttpClient c;
  ASSERT_EQ(c.Post(base_ + "/api/events",
                   "[" + EventBody("x", 1) + "," + EventBody("x", 2) + "]")
                .status,
            201);
  std::string cp = dir_.file("exec.offset");
  std::string seen = dir_.file("seen");
  std::string out, err;
  // Succeeds on the first event, fails on the second.
  std::string cmd =
      "cat >> " + seen + "; test \"$HERALD_EVENT_POSITION\" != 2 || exit 3";
  int rc = RunCommand({HeraldBin(), "pull", "--from", base_, "--checkpoint", cp,
                       "--exec", cmd, "--wait", "0"},
                      &out, &err);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("status 3"), std::string::npos) << err;
  EXPECT_EQ(ReadFile(cp), "");  // never written
  EXPECT_EQ(OutPositions(seen), (std::vector<int64_t>{1, 2}));
  // A command that succeeds moves it past the batch; SIGTERM ends it with 0.
  Child ok({HeraldBin(), "pull", "--from", base_, "--checkpoint", cp, "--exec",
            "cat >> " + seen, "--wait", "1"});
  EXPECT_TRUE(WaitFor([&] { return ReadFile(cp) == "3\n"; }));
  ok.Signal(SIGTERM);
  EXPECT_EQ(ok.Wait(), 0);
  EXPECT_EQ(OutPositions(seen), (std::vector<int64_t>{1, 2, 1, 2}));
  EXPECT_EQ(server_->Stop(), 0);
}

TEST_P(ServerStreamTest, SigtermUnderLoadLosesNothing) {
  StartServer();
  constexpr int kWriters = 8;
  std::mutex mu;
  std::vector<std::string> acked;  // guarded by mu
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      HttpClient c;
      for (int n = 0; !stop.load(); ++n) {
        auto r = c.Post(base_ + "/api/events",
                        EventBody("t" + std::to_string(w), n));
        if (r.status == 201) {
          auto doc = Json::Parse(r.body);
          std::lock_guard lock(mu);
          acked.push_back(doc->Find("id")->as_string());
          ++answered;
        } else if (r.status == 0) {
          break;  // the server is gone
        }
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return answered.load() > 500; }));
  int rc = server_->Stop();
  stop = true;
  for (auto& t : writers) t.join();
  EXPECT_EQ(rc, 0) << server_->stderr_text();
  // Every acknowledged event is in the store.
  StoreOptions so;
  so.run_sequencer = true;
  auto store = OpenStore(url_, so);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  std::set<std::string> stored;
  ReadRequest req;
  req.offset = 1;
  req.limit = kMaxReadLimit;
  // PostgreSQL: give the sequencer a moment to number the last commits.
  WaitFor([&] {
    auto h = (*store)->Head();
    return h.ok() && *h >= static_cast<int64_t>(acked.size());
  });
  while (true) {
    auto page = (*store)->Read(req);
    ASSERT_TRUE(page.ok());
    for (const auto& e : page->events) stored.insert(e.id);
    if (page->events.empty()) break;
    req.offset = page->next_offset;
  }
  for (const auto& id : acked) {
    ASSERT_TRUE(stored.count(id)) << "acknowledged but lost: " << id;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, ServerStreamTest,
                         ::testing::ValuesIn(TestBackends()));

}  // namespace
}  // namespace herald::testing
