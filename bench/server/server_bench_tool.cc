// Helpers for bench/server/run.sh: the baselines measured in the same run
// (the store's own append and read rates, the disk's flush rate) and the
// SSE fan-out latency probe. Not a timed test.
//
//   server_bench_tool fill DB N                 append N events (1,000/tx)
//   server_bench_tool append-rate DB BATCH SECS  Store::Append, BATCH per tx
//   server_bench_tool read-rate DB SECS          Store::Read 1,000-event pages
//   server_bench_tool fsync-rate DIR SECS        write 8 KB + fdatasync
//   server_bench_tool sse-fanout PORT SUBS RATE SECS
//       SUBS SSE subscribers; 8 writers POST RATE events/s in all; prints
//       a markdown row: rate, deliveries, then over every (event,
//       subscriber) the latency from occurred_at p50/p99/max and after the
//       writer's answer p50/p99, in ms.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "herald/event.h"
#include "herald/store.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::unique_ptr<herald::Store> Open(const std::string& url) {
  auto s = herald::OpenStore(url);
  if (!s.ok()) {
    std::fprintf(stderr, "open %s: %s\n", url.c_str(),
                 s.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(*s);
}

herald::Event MakeEvent(int n) {
  herald::Event e;
  e.stream = "order-" + std::to_string(n % 1000);
  e.type = "order.placed";
  e.payload = "{\"order\":" + std::to_string(n) +
              ",\"item\":\"coffee\",\"quantity\":2,\"price_cents\":450}";
  e.metadata = "{\"correlation_id\":\"bench\"}";
  return e;
}

int Fill(const std::string& url, int n) {
  auto store = Open(url);
  for (int done = 0; done < n;) {
    std::vector<herald::Event> batch;
    for (int i = 0; i < 1000 && done < n; ++i, ++done) {
      batch.push_back(MakeEvent(done));
    }
    auto r = store->Append(std::span<herald::Event>(batch));
    if (!r.ok()) {
      std::fprintf(stderr, "append: %s\n", r.status().ToString().c_str());
      return 1;
    }
  }
  return 0;
}

int AppendRate(const std::string& url, int batch, double secs) {
  auto store = Open(url);
  int64_t events = 0;
  auto start = Clock::now();
  while (Seconds(start, Clock::now()) < secs) {
    std::vector<herald::Event> b;
    for (int i = 0; i < batch; ++i)
      b.push_back(MakeEvent(static_cast<int>(events) + i));
    auto r = store->Append(std::span<herald::Event>(b));
    if (!r.ok()) return 1;
    events += batch;
  }
  std::printf("%.0f\n", events / Seconds(start, Clock::now()));
  return 0;
}

int ReadRate(const std::string& url, double secs) {
  auto store = Open(url);
  auto head = store->Head();
  if (!head.ok() || *head < 1000) return 1;
  int64_t events = 0;
  herald::ReadRequest req;
  req.limit = 1000;
  auto start = Clock::now();
  int64_t page = 0;
  int64_t pages = *head / 1000;
  while (Seconds(start, Clock::now()) < secs) {
    req.offset = 1 + (page++ % pages) * 1000;
    auto p = store->Read(req);
    if (!p.ok()) return 1;
    events += static_cast<int64_t>(p->events.size());
  }
  std::printf("%.0f\n", events / Seconds(start, Clock::now()));
  return 0;
}

int FsyncRate(const std::string& dir, double secs) {
  std::string path = dir + "/fsync-probe";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return 1;
  std::string block(8192, 'x');
  int64_t n = 0;
  auto start = Clock::now();
  while (Seconds(start, Clock::now()) < secs) {
    if (::pwrite(fd, block.data(), block.size(), 0) < 0) return 1;
    if (::fdatasync(fd) != 0) return 1;
    ++n;
  }
  ::close(fd);
  ::unlink(path.c_str());
  std::printf("%.0f\n", n / Seconds(start, Clock::now()));
  return 0;
}

int Connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("connect");
    std::exit(1);
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool SendAll(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Reads one HTTP response (Content-Length bodies only) from a keep-alive
// connection.
bool ReadResponse(int fd, std::string* buf) {
  while (true) {
    auto end = buf->find("\r\n\r\n");
    if (end != std::string::npos) {
      auto cl = buf->find("Content-Length: ");
      size_t len = cl != std::string::npos && cl < end
                       ? std::strtoul(buf->c_str() + cl + 16, nullptr, 10)
                       : 0;
      if (buf->size() >= end + 4 + len) {
        buf->erase(0, end + 4 + len);
        return true;
      }
    }
    char tmp[65536];
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf->append(tmp, static_cast<size_t>(n));
  }
}

int SseFanout(int port, int subs, int rate, double secs) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  // Subscribers start at the current head + 1 via a large offset guess:
  // read the head first.
  int64_t head = 0;
  {
    int fd = Connect(port);
    SendAll(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    std::string buf;
    char tmp[4096];
    while (buf.find("}") == std::string::npos) {
      ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) break;
      buf.append(tmp, static_cast<size_t>(n));
    }
    auto h = buf.find("\"head\":");
    if (h != std::string::npos)
      head = std::strtoll(buf.c_str() + h + 7, nullptr, 10);
    ::close(fd);
  }
  std::vector<int> fds;
  for (int i = 0; i < subs; ++i) {
    int fd = Connect(port);
    SendAll(fd, "GET /api/events/stream?offset=" + std::to_string(head + 1) +
                    " HTTP/1.1\r\nHost: x\r\n\r\n");
    fds.push_back(fd);
  }
  std::atomic<bool> done{false};
  std::vector<double> latencies;  // ms
  // (event n, receipt time) and each event's POST answer time, UTC µs.
  std::vector<std::pair<int64_t, int64_t>> receipts;
  receipts.reserve(static_cast<size_t>(subs * rate * secs * 1.1));
  std::vector<std::atomic<int64_t>> answered(static_cast<size_t>(rate * secs) +
                                             16);
  latencies.reserve(static_cast<size_t>(subs * rate * secs * 1.1));
  std::thread reader([&] {
    std::vector<pollfd> p(fds.size());
    std::vector<std::string> bufs(fds.size());
    for (size_t i = 0; i < fds.size(); ++i) p[i] = {fds[i], POLLIN, 0};
    while (!done.load()) {
      int r = ::poll(p.data(), p.size(), 100);
      if (r <= 0) continue;
      auto now_us = herald::NowMicros();
      for (size_t i = 0; i < p.size(); ++i) {
        if (!(p[i].revents & POLLIN)) continue;
        char tmp[65536];
        ssize_t n = ::recv(p[i].fd, tmp, sizeof tmp, 0);
        if (n <= 0) continue;
        bufs[i].append(tmp, static_cast<size_t>(n));
        size_t pos;
        while ((pos = bufs[i].find("\n\n")) != std::string::npos) {
          std::string frame = bufs[i].substr(0, pos);
          bufs[i].erase(0, pos + 2);
          auto oa = frame.find("\"occurred_at\":\"");
          if (oa == std::string::npos) continue;
          auto t = herald::ParseRfc3339(frame.substr(oa + 15, 27));
          if (t.ok()) latencies.push_back((now_us - *t) / 1000.0);
          auto np = frame.find("\"payload\":{\"n\":");
          if (np != std::string::npos) {
            receipts.emplace_back(
                std::strtoll(frame.c_str() + np + 15, nullptr, 10), now_us);
          }
        }
      }
    }
  });
  // Writers: single-event POSTs from 8 connections, together paced at
  // `rate` per second (one connection waits for each durable commit, so
  // it alone could not keep up with 1,000/s).
  constexpr int kWriters = 8;
  std::atomic<int64_t> sent{0};
  std::atomic<bool> failed{false};
  auto start = Clock::now();
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      int wfd = Connect(port);
      std::string buf;
      for (int64_t i = w;; i += kWriters) {
        auto due = start + std::chrono::microseconds(
                               static_cast<int64_t>(i * 1e6 / rate));
        if (Seconds(start, due) >= secs) break;
        std::this_thread::sleep_until(due);
        std::string body =
            "{\"stream\":\"fan-" + std::to_string(i % 50) +
            "\",\"type\":\"fan.out\",\"payload\":{\"n\":" + std::to_string(i) +
            "}}";
        std::string req =
            "POST /api/events HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body;
        if (!SendAll(wfd, req) || !ReadResponse(wfd, &buf)) {
          failed = true;
          break;
        }
        if (static_cast<size_t>(i) < answered.size()) {
          answered[static_cast<size_t>(i)] = herald::NowMicros();
        }
        ++sent;
      }
      ::close(wfd);
    });
  }
  for (auto& t : writers) t.join();
  if (failed) return 1;
  double elapsed = Seconds(start, Clock::now());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  done = true;
  reader.join();
  for (int fd : fds) ::close(fd);
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double q) {
    if (latencies.empty()) return -1.0;
    return latencies[std::min(latencies.size() - 1,
                              static_cast<size_t>(q * latencies.size()))];
  };
  // The commit lies between occurred_at and the writer's answer, so
  // receipt - answer <= commit-to-receipt <= receipt - occurred_at.
  std::vector<double> after_answer;
  for (const auto& [n, at] : receipts) {
    if (n >= 0 && static_cast<size_t>(n) < answered.size() &&
        answered[static_cast<size_t>(n)] > 0) {
      after_answer.push_back(std::max<double>(
          0, (at - answered[static_cast<size_t>(n)]) / 1000.0));
    }
  }
  std::sort(after_answer.begin(), after_answer.end());
  auto pct2 = [&](double q) {
    if (after_answer.empty()) return -1.0;
    return after_answer[std::min(after_answer.size() - 1,
                                 static_cast<size_t>(q * after_answer.size()))];
  };
  std::printf(
      "%.0f events/s, %zu of %lld deliveries | %.2f | %.2f | %.2f | %.2f | "
      "%.2f |\n",
      sent / elapsed, latencies.size(),
      static_cast<long long>(sent.load()) * subs, pct(0.5), pct(0.99),
      latencies.empty() ? -1.0 : latencies.back(), pct2(0.5), pct2(0.99));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  auto usage = [] {
    std::fprintf(stderr,
                 "see the comment at the top of server_bench_tool.cc\n");
    return 2;
  };
  if (a.empty()) return usage();
  if (a[0] == "fill" && a.size() == 3) return Fill(a[1], std::stoi(a[2]));
  if (a[0] == "append-rate" && a.size() == 4) {
    return AppendRate(a[1], std::stoi(a[2]), std::stod(a[3]));
  }
  if (a[0] == "read-rate" && a.size() == 3)
    return ReadRate(a[1], std::stod(a[2]));
  if (a[0] == "fsync-rate" && a.size() == 3)
    return FsyncRate(a[1], std::stod(a[2]));
  if (a[0] == "sse-fanout" && a.size() == 5) {
    return SseFanout(std::stoi(a[1]), std::stoi(a[2]), std::stoi(a[3]),
                     std::stod(a[4]));
  }
  return usage();
}
