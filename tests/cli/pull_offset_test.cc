// Offset 0 (issue #12 item 7): offsets 0 and 1 both mean "from the start",
// so a client that starts at 0 and computes offset + count reads the event
// at position `limit` twice. `herald pull` and the library PullConsumer
// never send offset=0: from a fresh start or a checkpoint file holding 0
// they read each event exactly once, across several pages. The requests
// are seen by a recording TCP proxy between the consumer and a real
// `herald serve`.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "herald/pull_consumer.h"
#include "herald/store.h"
#include "server/server_test_util.h"

namespace herald {
namespace {

using testing::Child;
using testing::HeraldBin;
using testing::ServeProcess;
using testing::WaitFor;

// Forwards 127.0.0.1:port() to `upstream_port`, recording the request
// target of every request it forwards ("/api/events?offset=1&limit=7").
class RecordingProxy {
 public:
  explicit RecordingProxy(int upstream_port) : upstream_(upstream_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listen_fd_, 16);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~RecordingProxy() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    accept_thread_.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : threads_) t.join();
    for (int fd : fds_) ::close(fd);
    ::close(listen_fd_);
  }
  int port() const { return port_; }
  std::string base() const {
    return "http://127.0.0.1:" + std::to_string(port_);
  }
  std::vector<std::string> targets() {
    std::lock_guard<std::mutex> lock(mu_);
    return targets_;
  }

 private:
  void AcceptLoop() {
    while (!stop_) {
      int c = ::accept(listen_fd_, nullptr, nullptr);
      if (c < 0) return;
      int u = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<uint16_t>(upstream_));
      if (::connect(u, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(c);
        ::close(u);
        continue;
      }
      std::lock_guard<std::mutex> lock(mu_);
      fds_.push_back(c);
      fds_.push_back(u);
      threads_.emplace_back([this, c, u] { Pump(c, u, true); });
      threads_.emplace_back([this, c, u] { Pump(u, c, false); });
    }
  }
  // Copies from -> to until either side ends; on the request side, notes
  // each request line's target.
  void Pump(int from, int to, bool requests) {
    char buf[16384];
    std::string pending;
    for (;;) {
      ssize_t n = ::read(from, buf, sizeof buf);
      if (n <= 0) break;
      if (requests) {
        pending.append(buf, static_cast<size_t>(n));
        for (size_t eol; (eol = pending.find("\r\n\r\n")) != std::string::npos;
             pending.erase(0, eol + 4)) {
          std::string line = pending.substr(0, pending.find("\r\n"));
          size_t sp = line.find(' ');
          size_t sp2 = line.rfind(' ');
          std::lock_guard<std::mutex> lock(mu_);
          targets_.push_back(line.substr(sp + 1, sp2 - sp - 1));
        }
      }
      ssize_t off = 0;
      while (off < n) {
        ssize_t w = ::write(to, buf + off, static_cast<size_t>(n - off));
        if (w <= 0) break;
        off += w;
      }
    }
    ::shutdown(to, SHUT_RDWR);
    ::shutdown(from, SHUT_RDWR);
  }

  int upstream_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<int> fds_;
  std::vector<std::string> targets_;
  std::vector<std::thread> threads_;
  std::thread accept_thread_;
};

// The `offset` parameter of a request target, or -1.
int64_t OffsetOf(const std::string& target) {
  auto q = target.find("offset=");
  if (q == std::string::npos) return -1;
  return std::stoll(target.substr(q + 7));
}

class PullOffset : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = "sqlite:" + dir_.file("h.db");
    auto s = OpenStore(url_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    for (int i = 0; i < kEvents; ++i) {
      Event e = testing::MakeEvent("s-" + std::to_string(i % 3), "t.happened",
                                   "{\"i\":" + std::to_string(i) + "}");
      ASSERT_TRUE(store_->Append(std::span<Event>(&e, 1)).ok());
      ids_.insert(e.id);
    }
    serve_ = std::make_unique<ServeProcess>(dir_, url_);
    ASSERT_TRUE(serve_->ready()) << serve_->stderr_text();
    proxy_ = std::make_unique<RecordingProxy>(serve_->port());
  }

  // Every request carried an offset of at least 1.
  void ExpectNoOffsetZero() {
    auto targets = proxy_->targets();
    EXPECT_GE(targets.size(), 4u);  // several pages
    for (const auto& t : targets) {
      if (t.rfind("/api/events", 0) != 0) continue;
      EXPECT_GE(OffsetOf(t), 1) << t;
    }
  }

  // `herald pull --out` with --limit 7 until the checkpoint passes the
  // last event; checks each event was written exactly once.
  void PullOnceEach(const std::string& checkpoint) {
    std::string out = dir_.file("out.jsonl");
    Child::Options o;
    o.stderr_path = dir_.file("pull.err");
    Child pull({HeraldBin(), "pull", "--from", proxy_->base(), "--checkpoint",
                checkpoint, "--out", out, "--limit", "7", "--wait", "1"},
               o);
    ASSERT_TRUE(WaitFor([&] {
      return testing::ReadFile(checkpoint) ==
             std::to_string(kEvents + 1) + "\n";
    })) << testing::ReadFile(dir_.file("pull.err"));
    pull.Signal(SIGTERM);
    EXPECT_EQ(pull.Wait(), 0);
    std::istringstream lines(testing::ReadFile(out));
    std::string line;
    std::multiset<std::string> got;
    while (std::getline(lines, line)) {
      auto j = Json::Parse(line);
      ASSERT_TRUE(j.ok()) << line;
      got.insert(j->Find("id")->as_string());
    }
    EXPECT_EQ(got.size(), static_cast<size_t>(kEvents));
    for (const auto& id : ids_) EXPECT_EQ(got.count(id), 1u) << id;
    ExpectNoOffsetZero();
  }

  static constexpr int kEvents = 25;  // 4 pages of 7
  testing::TempDir dir_;
  std::string url_;
  std::unique_ptr<Store> store_;
  std::set<std::string> ids_;
  std::unique_ptr<ServeProcess> serve_;
  std::unique_ptr<RecordingProxy> proxy_;
};

TEST_F(PullOffset, PullFromFreshStartReadsEachEventOnce) {
  PullOnceEach(dir_.file("fresh.offset"));
}

TEST_F(PullOffset, PullFromCheckpointZeroReadsEachEventOnce) {
  std::string cp = dir_.file("zero.offset");
  testing::WriteFile(cp, "0\n");
  PullOnceEach(cp);
}

TEST_F(PullOffset, LibraryConsumerNeverSendsOffsetZero) {
  for (const char* start : {"", "0\n"}) {
    std::string cp = dir_.file(std::string("lib") +
                               (*start ? "-zero" : "-fresh") + ".offset");
    if (*start) testing::WriteFile(cp, start);
    PullConsumerOptions o;
    o.url = proxy_->base();
    o.checkpoint_path = cp;
    o.limit = 7;
    o.wait = std::chrono::milliseconds(0);
    PullConsumer consumer(o);
    std::multiset<std::string> got;
    Status s = consumer.Run([&](const std::vector<PulledEvent>& batch) {
      for (const auto& e : batch) got.insert(e.event.id);
      if (got.size() >= static_cast<size_t>(kEvents)) consumer.Stop();
      return Status::OK();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(got.size(), static_cast<size_t>(kEvents)) << "start " << start;
    for (const auto& id : ids_) EXPECT_EQ(got.count(id), 1u) << id;
    EXPECT_EQ(consumer.offset(), kEvents + 1);
  }
  ExpectNoOffsetZero();
}

}  // namespace
}  // namespace herald
