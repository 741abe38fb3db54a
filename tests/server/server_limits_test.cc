// Limits of `herald serve` that hold whatever its clients do, against the
// built binary: connections beyond the descriptor limit are closed at once
// and the server keeps serving; SSE streams catching up on history stay
// within the SSE buffer budget (RSS read from /proc); a POST whose client
// left before its append was taken is not appended; /health reports
// `degraded` while appends fail on a full disk (a small tmpfs, mounted by
// the test; skipped where mounting is not allowed).
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/mount.h>

#include <filesystem>
#include <memory>
#include <thread>

#include "server/server_test_util.h"

namespace herald::testing {
namespace {

double Metric(HttpClient& c, const std::string& base, const std::string& name) {
  return MetricValue(c.Get(base + "/metrics").body, name);
}

// Resident memory of process `pid` in KiB (VmRSS), or -1.
long RssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// Appends `n` events of about `payload_bytes` each, 1,000 per POST.
void AppendMany(HttpClient& c, const std::string& base, int n,
                size_t payload_bytes) {
  std::string pad(payload_bytes, 'x');
  for (int done = 0; done < n;) {
    std::string body = "[";
    int batch = std::min(1000, n - done);
    for (int i = 0; i < batch; ++i) {
      if (i) body += ",";
      body += "{\"stream\":\"s" + std::to_string((done + i) % 50) +
              "\",\"type\":\"load.tick\",\"payload\":{\"pad\":\"" + pad +
              "\"}}";
    }
    body += "]";
    ASSERT_EQ(c.Post(base + "/api/events", body).status, 201);
    done += batch;
  }
}

// A connection to the server whose receive buffer is small, so a stream
// that is not read stalls the server's writes quickly.
int ConnectSmallBuffer(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int size = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends a GET /health on `fd` and waits up to `timeout_ms` for the answer:
// 200 when answered, 0 when the server closed the connection, -1 when
// nothing came (the connection hangs).
int HealthOn(int fd, int timeout_ms) {
  if (!SendAll(fd, "GET /health HTTP/1.1\r\nHost: t\r\n\r\n")) return 0;
  std::string text;
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!ReadSome(fd, &text, 50)) {
      return text.rfind("HTTP/1.1 200", 0) == 0 ? 200 : 0;
    }
    if (text.find("\r\n\r\n") != std::string::npos) {
      return text.rfind("HTTP/1.1 200", 0) == 0 ? 200 : 1;
    }
  }
  return -1;
}

TEST(ServerLimits, ConnectionsBeyondTheDescriptorLimitAreClosedAtOnce) {
  RaiseFdLimit();
  TempDir dir;
  ServeProcess server(dir, "sqlite:" + dir.file("h.db"),
                      "[server]\nthreads = 1\n", {}, 0,
                      {"prlimit", "--nofile=128:128"});
  ASSERT_TRUE(server.ready()) << server.stderr_text();
  HttpClient c;
  double limit = Metric(c, server.base(), "herald_connection_limit");
  // 128 descriptors less those open at start and the reserve.
  ASSERT_GT(limit, 0);
  ASSERT_LT(limit, 128 - 64);

  // Far more connections than the process has descriptors.
  std::vector<int> fds;
  for (int i = 0; i < 200; ++i) {
    int fd = ConnectLoopback(server.port());
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
  }
  int answered = 0, closed = 0, hanging = 0;
  for (int fd : fds) {
    int r = HealthOn(fd, 3000);
    if (r == 200) ++answered;
    if (r == 0) ++closed;
    if (r == -1) ++hanging;
  }
  EXPECT_EQ(hanging, 0) << "connections left waiting";
  EXPECT_GT(answered, 0);
  EXPECT_LE(answered, static_cast<int>(limit));
  EXPECT_GE(closed, 200 - static_cast<int>(limit));
  // Still serving on the connections it kept...
  int kept = 0;
  for (int fd : fds) {
    if (HealthOn(fd, 3000) == 200) ++kept;
  }
  EXPECT_EQ(kept, answered);
  for (int fd : fds) ::close(fd);
  // ...and to new clients once the others left.
  EXPECT_TRUE(WaitFor([&] {
    HttpClient fresh;
    return fresh.Get(server.base() + "/health").status == 200;
  }));
  EXPECT_GT(Metric(c, server.base(), "herald_connections_refused_total"), 0);
  EXPECT_TRUE(server.child().running());
}

TEST(ServerLimits, CatchingUpStreamsStayWithinTheBuffer) {
  RaiseFdLimit();
  TempDir dir;
  // 1 MiB for all streams' chunks; a small tail, so history comes from the
  // store as it does for a client far behind.
  ServeProcess server(dir, "sqlite:" + dir.file("h.db"),
                      "[server]\nsse_buffer_mb = 1\ntail_events = 100\n"
                      "page_cache_mb = 0\nmax_connections = 5000\n");
  ASSERT_TRUE(server.ready()) << server.stderr_text();
  HttpClient c;
  constexpr int kEvents = 20000;  // about 8 MB of SSE frames
  AppendMany(c, server.base(), kEvents, 300);
  long before = RssKib(server.child().pid());
  ASSERT_GT(before, 0);

  // 600 streams from the start that read nothing: each could take a whole
  // history's worth of chunks.
  std::vector<int> fds;
  for (int i = 0; i < 600; ++i) {
    int fd = ConnectSmallBuffer(server.port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd,
                        "GET /api/events/stream?offset=1 HTTP/1.1\r\n"
                        "Host: t\r\n\r\n"));
    fds.push_back(fd);
  }
  ASSERT_TRUE(WaitFor(
      [&] { return Metric(c, server.base(), "herald_open_streams") == 600; }));
  // The budget is spent, and streams wait for it.
  ASSERT_TRUE(WaitFor([&] {
    return Metric(c, server.base(), "herald_sse_streams_waiting_for_buffer") >
           0;
  })) << c.Get(server.base() + "/metrics").body;
  long during = RssKib(server.child().pid());
  std::printf(
      "RSS before the streams %ld KiB, with 600 stalled streams %ld KiB\n",
      before, during);
  double peak = Metric(c, server.base(), "herald_sse_buffer_peak_bytes");
  EXPECT_LE(peak, 1 << 20);
  // 600 unbounded streams held ~0.4 MB each (240 MB); bounded they cost
  // the budget, their sessions and the worker pages.
  EXPECT_LT(during - before, 48 * 1024)
      << "RSS grew from " << before << " KiB to " << during << " KiB";

  // Once the others leave, a stream still gets every event, in order.
  for (int fd : fds) ::close(fd);
  int fd = ConnectLoopback(server.port());
  ASSERT_TRUE(SendAll(fd,
                      "GET /api/events/stream?offset=1 HTTP/1.1\r\n"
                      "Host: t\r\n\r\n"));
  std::string text;
  ASSERT_TRUE(WaitFor(
      [&] {
        ReadSome(fd, &text, 50);
        return text.find("\nid: " + std::to_string(kEvents) + "\n") !=
               std::string::npos;
      },
      std::chrono::seconds(30)));
  ::close(fd);
  int64_t expect = 1;
  std::string all = "\n" + text;
  for (size_t pos = 0; (pos = all.find("\nid: ", pos)) != std::string::npos;) {
    pos += 5;
    ASSERT_EQ(std::stoll(all.substr(pos, all.find('\n', pos) - pos)), expect);
    ++expect;
  }
  EXPECT_EQ(expect, kEvents + 1);
}

TEST(ServerLimits, EventsLargerThanAChunkOrTheBudgetStillStream) {
  TempDir dir;
  ServeProcess server(dir, "sqlite:" + dir.file("h.db"),
                      "[server]\nsse_buffer_mb = 1\ntail_events = 2\n"
                      "max_body_bytes = 4194304\n");
  ASSERT_TRUE(server.ready()) << server.stderr_text();
  HttpClient c;
  // Small, larger than a 64 KiB chunk, larger than the whole budget, small.
  std::vector<size_t> sizes{10, 100 << 10, 1536 << 10, 10, 10};
  for (size_t n : sizes) {
    std::string body = "{\"stream\":\"s\",\"type\":\"t.x\",\"payload\":\"" +
                       std::string(n, 'p') + "\"}";
    ASSERT_EQ(c.Post(server.base() + "/api/events", body).status, 201);
  }
  // From the store (offset 1 is below the 2-event tail) and from memory.
  for (int from : {1, 4}) {
    int fd = ConnectLoopback(server.port());
    ASSERT_TRUE(
        SendAll(fd, "GET /api/events/stream?offset=" + std::to_string(from) +
                        " HTTP/1.1\r\nHost: t\r\n\r\n"));
    std::string text;
    ASSERT_TRUE(WaitFor(
        [&] {
          ReadSome(fd, &text, 50);
          return text.find("\nid: 5\n") != std::string::npos;
        },
        std::chrono::seconds(20)))
        << text.size();
    ::close(fd);
    for (int id = from; id <= 5; ++id) {
      size_t at = text.find("\nid: " + std::to_string(id) + "\n");
      ASSERT_NE(at, std::string::npos) << "event " << id << " missing";
      size_t data = text.find("\ndata: ", at);
      size_t end = text.find("\n\n", data);
      EXPECT_GT(end - data, sizes[static_cast<size_t>(id - 1)]);
    }
  }
  // The budget held the large event alone, and nothing more.
  double peak = Metric(c, server.base(), "herald_sse_buffer_peak_bytes");
  EXPECT_GE(peak, 1536 << 10);
  EXPECT_LT(peak, (1536 << 10) + (16 << 10));
}

// The test's own write transaction on the server's SQLite file: the
// server's appends wait behind it until Release.
class WriteLock {
 public:
  explicit WriteLock(const std::string& path) {
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    db_.reset(db);
    ok_ = sqlite3_exec(db_.get(), "BEGIN IMMEDIATE", nullptr, nullptr,
                       nullptr) == SQLITE_OK;
  }
  bool ok() const { return ok_; }
  void Release() {
    sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
  }

 private:
  struct Close {
    void operator()(sqlite3* db) const { sqlite3_close(db); }
  };
  std::unique_ptr<sqlite3, Close> db_;
  bool ok_ = false;
};

std::string RawPost(const std::string& body) {
  return "POST /api/events HTTP/1.1\r\nHost: t\r\n"
         "Content-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

TEST(ServerLimits, APostWhoseClientLeftIsNotAppended) {
  TempDir dir;
  std::string db = dir.file("h.db");
  ServeProcess server(dir, "sqlite:" + db);
  ASSERT_TRUE(server.ready()) << server.stderr_text();
  HttpClient c;
  WriteLock lock(db);
  ASSERT_TRUE(lock.ok());

  const std::string kept = "0190a000-0000-7000-8000-000000000001";
  const std::string left = "0190a000-0000-7000-8000-000000000002";
  int a = ConnectLoopback(server.port());
  ASSERT_TRUE(SendAll(a, RawPost("{\"id\":\"" + kept +
                                 "\",\"stream\":\"s\",\"type\":\"t.x\"}")));
  int b = ConnectLoopback(server.port());
  ASSERT_TRUE(SendAll(b, RawPost("{\"id\":\"" + left +
                                 "\",\"stream\":\"s\",\"type\":\"t.x\"}")));
  ::close(b);  // gone before the appender could take its events
  ASSERT_TRUE(WaitFor([&] {
    return Metric(c, server.base(), "herald_http_requests_abandoned_total") ==
           1;
  }));
  lock.Release();

  std::string answer;
  ASSERT_TRUE(WaitFor([&] {
    ReadSome(a, &answer, 50);
    return answer.find("\r\n\r\n") != std::string::npos;
  }));
  ::close(a);
  EXPECT_EQ(answer.rfind("HTTP/1.1 201", 0), 0u) << answer;
  EXPECT_EQ(c.Get(server.base() + "/api/events/" + kept).status, 200);
  EXPECT_EQ(c.Get(server.base() + "/api/events/" + left).status, 404);
  // The departed request is withdrawn either by the appender (counted in
  // herald_appends_abandoned_total) or, when its close is seen before it was
  // handed over, before it ever reaches the appender; never both, never
  // appended (the 404 above).
  EXPECT_LE(Metric(c, server.base(), "herald_appends_abandoned_total"), 1);
}

// A tmpfs of `megabytes` at `path`, unmounted on scope exit.
class Tmpfs {
 public:
  Tmpfs(const std::string& path, int megabytes) : path_(path) {
    std::filesystem::create_directories(path);
    std::string opts = "size=" + std::to_string(megabytes) + "m";
    mounted_ = ::mount("tmpfs", path.c_str(), "tmpfs", 0, opts.c_str()) == 0;
  }
  ~Tmpfs() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  std::string path_;
  bool mounted_ = false;
};

// Writes to `path` until the file system is full.
void Fill(const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  std::string block(64 << 10, 'f');
  while (out.write(block.data(), static_cast<std::streamsize>(block.size()))) {
    out.flush();
    if (!out) break;
  }
}

TEST(ServerLimits, HealthIsDegradedWhileAppendsFail) {
  TempDir dir;
  Tmpfs fs(dir.file("fs"), 4);
  if (!fs.mounted()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  }
  ServeProcess server(dir, "sqlite:" + dir.file("fs/h.db"));
  ASSERT_TRUE(server.ready()) << server.stderr_text();
  HttpClient c;
  std::string small = "{\"stream\":\"s\",\"type\":\"t.x\"}";
  ASSERT_EQ(c.Post(server.base() + "/api/events", small).status, 201);
  auto health = c.Get(server.base() + "/health");
  ASSERT_EQ(health.status, 200);
  ASSERT_NE(health.body.find("\"status\":\"ok\""), std::string::npos)
      << health.body;

  Fill(dir.file("fs/filler"));
  std::string big = "{\"stream\":\"s\",\"type\":\"t.x\",\"payload\":\"" +
                    std::string(512 << 10, 'p') + "\"}";
  auto failed = c.Post(server.base() + "/api/events", big);
  ASSERT_GE(failed.status, 500) << failed.body;
  health = c.Get(server.base() + "/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_NE(health.body.find("\"status\":\"degraded\""), std::string::npos)
      << health.body;
  EXPECT_NE(health.body.find("\"failing\":true"), std::string::npos)
      << health.body;
  EXPECT_NE(health.body.find("appends failing since"), std::string::npos)
      << health.body;
  EXPECT_EQ(Metric(c, server.base(), "herald_append_failing"), 1);

  std::filesystem::remove(dir.file("fs/filler"));
  ASSERT_EQ(c.Post(server.base() + "/api/events", big).status, 201);
  health = c.Get(server.base() + "/health");
  EXPECT_NE(health.body.find("\"status\":\"ok\""), std::string::npos)
      << health.body;
  EXPECT_EQ(Metric(c, server.base(), "herald_append_failing"), 0);
  server.Stop();
}

}  // namespace
}  // namespace herald::testing
