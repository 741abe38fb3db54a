// herald_test_receiver: a real HTTP/1.1 webhook receiver on 127.0.0.1 for
// the relay's tests and benchmarks (single thread, epoll, keep-alive).
//
//   herald_test_receiver --port N [--log FILE] [--reject-id UUID]...
//                        [--unavailable-id UUID]... [--ready FILE]
//                        [--body-log FILE] [--fail UUID=MODE]...
//                        [--delay-ms N] [--random-faults SEED:PERCENT]
//
// Answers every POST 200, except 400 for a --reject-id event and 503 with
// "Retry-After: 1" for an --unavailable-id event (by its ce-id header).
// --fail UUID=MODE (or at run time POST /control with headers
// "x-fail-id: UUID" and "x-fail-mode: MODE") answers every request for
// that event by MODE until the mode is set to "ok":
//   reject | unavailable       400 | 503 with Retry-After: 1
//   hang                       never answers (the connection stays open)
//   chunked                    a complete 200 with a chunked body
//   cut-before-status          closes without a byte of response
//   cut-in-status              "HTTP/1.1 20", then closes
//   cut-in-headers             "HTTP/1.1 200 OK\r\nContent-Len", closes
//   cut-after-headers          200 headers with Content-Length: 2, closes
//   cut-in-body                Content-Length: 10 and 2 body bytes, closes
//   cut-in-chunked             a chunked 200 without its last chunk, closes
//   error                      500
//   too-many                   429 with Retry-After: 1
// --random-faults SEED:PERCENT answers each event request that has no
// --fail mode by a mode drawn at random (seeded: SEED, a std::mt19937)
// with probability PERCENT/100, uniformly among error, too-many, hang and
// every cut-* mode; the others are answered as usual.
// --delay-ms N (or POST /control with "x-delay-ms: N") answers each
// request N ms after it arrived (without blocking other connections), so
// concurrent sends overlap.
// With --log, each request appends one line before it is answered:
//   "<ce-position> <ce-subject> <ce-id> <receive time, UTC µs> <status>
//    <ce-source>\n"
// ("-" for a missing header; status is the MODE for hang and cut modes),
// written with one write() so a SIGKILL never leaves half a line.
// GET /stats answers {"received":N,"accepted":M,"max_in_flight":K}, K the
// most requests received and not yet answered at one time.
// --ready FILE is created once the port listens. Exits 0 on SIGTERM/SIGINT.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

struct Conn {
  std::string in;
  std::string out;
};

int64_t NowUs() {
  timeval tv;
  gettimeofday(&tv, nullptr);
  return int64_t{tv.tv_sec} * 1000000 + tv.tv_usec;
}

// A response due at `due_us` on `fd`; close the connection after it when
// `close`. A hanging request has due_us = INT64_MAX.
struct Pending {
  int fd;
  int64_t due_us;
  std::string bytes;
  bool close;
};

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  int log_fd = -1;
  int body_fd = -1;
  std::string ready;
  std::set<std::string> reject, unavailable;
  std::map<std::string, std::string> fail;  // event id -> mode
  int64_t delay_us = 0;
  std::mt19937 fault_rng;
  int fault_percent = 0;
  const std::vector<std::string> kRandomModes{"error",
                                              "too-many",
                                              "hang",
                                              "cut-before-status",
                                              "cut-in-status",
                                              "cut-in-headers",
                                              "cut-after-headers",
                                              "cut-in-body",
                                              "cut-in-chunked"};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "receiver: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--port") {
      port = std::atoi(next().c_str());
    } else if (a == "--log") {
      std::string p = next();
      log_fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (log_fd < 0) {
        std::perror("receiver: open log");
        return 1;
      }
    } else if (a == "--body-log") {
      std::string p = next();
      body_fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (body_fd < 0) {
        std::perror("receiver: open body log");
        return 1;
      }
    } else if (a == "--reject-id") {
      reject.insert(next());
    } else if (a == "--unavailable-id") {
      unavailable.insert(next());
    } else if (a == "--fail") {
      std::string v = next();
      auto eq = v.find('=');
      if (eq == std::string::npos) {
        std::fprintf(stderr, "receiver: --fail wants UUID=MODE\n");
        return 2;
      }
      fail[v.substr(0, eq)] = v.substr(eq + 1);
    } else if (a == "--delay-ms") {
      delay_us = int64_t{1000} * std::atoi(next().c_str());
    } else if (a == "--random-faults") {
      std::string v = next();
      auto colon = v.find(':');
      if (colon == std::string::npos) {
        std::fprintf(stderr, "receiver: --random-faults wants SEED:PERCENT\n");
        return 2;
      }
      fault_rng.seed(
          static_cast<uint32_t>(std::strtoul(v.c_str(), nullptr, 10)));
      fault_percent = std::atoi(v.c_str() + colon + 1);
    } else if (a == "--ready") {
      ready = next();
    } else {
      std::fprintf(stderr, "receiver: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(lfd, 1024) != 0) {
    std::perror("receiver: bind/listen");
    return 1;
  }
  if (!ready.empty()) {
    int f = ::open(ready.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (f >= 0) ::close(f);
  }
  int ep = epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  std::unordered_map<int, Conn> conns;
  uint64_t received = 0, accepted = 0;
  std::vector<Pending> pending;  // in arrival order
  size_t max_in_flight = 0;
  char buf[65536];
  epoll_event events[256];

  auto close_conn = [&](int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    ::close(fd);
    conns.erase(fd);
    for (size_t i = 0; i < pending.size();) {
      if (pending[i].fd == fd) {
        pending.erase(pending.begin() + static_cast<long>(i));
      } else {
        ++i;
      }
    }
  };
  // Small responses on loopback: write them out, blocking briefly.
  auto write_all = [&](int fd, const std::string& out) {
    size_t off = 0;
    while (off < out.size()) {
      ssize_t w = ::write(fd, out.data() + off, out.size() - off);
      if (w > 0) {
        off += static_cast<size_t>(w);
      } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        continue;
      } else {
        return false;
      }
    }
    return true;
  };
  // Sends the responses that are due, in arrival order per connection.
  auto flush_due = [&] {
    int64_t now = NowUs();
    std::set<int> blocked;  // a connection whose earlier response waits
    std::vector<int> to_close;
    for (size_t i = 0; i < pending.size();) {
      Pending& p = pending[i];
      if (blocked.count(p.fd) || p.due_us > now) {
        blocked.insert(p.fd);
        ++i;
        continue;
      }
      bool ok = write_all(p.fd, p.bytes);
      if (!ok || p.close) to_close.push_back(p.fd);
      pending.erase(pending.begin() + static_cast<long>(i));
    }
    for (int fd : to_close) {
      if (conns.count(fd)) close_conn(fd);
    }
  };

  while (!g_stop) {
    int timeout_ms = 200;
    for (const auto& p : pending) {
      if (p.due_us == INT64_MAX) continue;
      int64_t left = (p.due_us - NowUs() + 999) / 1000;
      timeout_ms = static_cast<int>(
          std::max<int64_t>(0, std::min<int64_t>(timeout_ms, left)));
    }
    int n = epoll_wait(ep, events, 256, timeout_ms);
    flush_due();
    for (int k = 0; k < n; ++k) {
      int fd = events[k].data.fd;
      if (fd == lfd) {
        for (;;) {
          int c = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
          if (c < 0) break;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
          conns[c];
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      Conn& conn = it->second;
      bool closed = false;
      for (;;) {
        ssize_t r = ::read(fd, buf, sizeof buf);
        if (r > 0) {
          conn.in.append(buf, static_cast<size_t>(r));
          continue;
        }
        if (r == 0) closed = true;
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) closed = true;
        break;
      }
      // Handle every complete request in the buffer.
      for (;;) {
        size_t end = conn.in.find("\r\n\r\n");
        if (end == std::string::npos) break;
        std::string_view head(conn.in.data(), end);
        size_t length = 0;
        bool keep_alive = true;
        // Copies: conn.in is erased below, before they are used.
        std::string method(head.substr(0, head.find(' ')));
        std::string path;
        {
          size_t sp = head.find(' ');
          size_t sp2 = head.find(' ', sp + 1);
          path = head.substr(sp + 1, sp2 - sp - 1);
        }
        std::string id = "-", subject = "-", position = "-", source = "-";
        std::string content_type = "-", x_test = "-";
        std::string fail_id, fail_mode, delay_ms;
        size_t pos = head.find("\r\n");
        while (pos != std::string_view::npos && pos < head.size()) {
          size_t eol = head.find("\r\n", pos + 2);
          std::string_view line = head.substr(
              pos + 2,
              (eol == std::string_view::npos ? head.size() : eol) - pos - 2);
          size_t colon = line.find(':');
          if (colon != std::string_view::npos) {
            std::string_view name = line.substr(0, colon);
            std::string_view value = line.substr(colon + 1);
            while (!value.empty() && value.front() == ' ')
              value.remove_prefix(1);
            if (IEquals(name, "content-length")) {
              length = std::strtoul(std::string(value).c_str(), nullptr, 10);
            } else if (IEquals(name, "connection") && IEquals(value, "close")) {
              keep_alive = false;
            } else if (IEquals(name, "ce-id")) {
              id = value;
            } else if (IEquals(name, "ce-subject")) {
              subject = value;
            } else if (IEquals(name, "ce-position")) {
              position = value;
            } else if (IEquals(name, "ce-source")) {
              source = value;
            } else if (IEquals(name, "content-type")) {
              content_type = value;
            } else if (IEquals(name, "x-test")) {
              x_test = value;
            } else if (IEquals(name, "x-fail-id")) {
              fail_id = value;
            } else if (IEquals(name, "x-fail-mode")) {
              fail_mode = value;
            } else if (IEquals(name, "x-delay-ms")) {
              delay_ms = value;
            }
          }
          pos = eol;
        }
        if (conn.in.size() < end + 4 + length) break;
        if (body_fd >= 0 && method == "POST") {
          std::string line = content_type + "\t" + x_test + "\t" +
                             conn.in.substr(end + 4, length) + "\n";
          if (::write(body_fd, line.data(), line.size()) < 0) {
            std::perror("receiver: write body log");
          }
        }
        conn.in.erase(0, end + 4 + length);
        std::string body = "ok";
        int status = 200;
        std::string mode;
        if (method == "GET" && path == "/stats") {
          body = "{\"received\":" + std::to_string(received) +
                 ",\"accepted\":" + std::to_string(accepted) +
                 ",\"max_in_flight\":" + std::to_string(max_in_flight) + "}";
        } else if (method == "POST" && path == "/control") {
          if (!delay_ms.empty()) {
            delay_us = int64_t{1000} * std::atoi(delay_ms.c_str());
          } else if (fail_mode.empty() || fail_mode == "ok") {
            fail.erase(fail_id);
          } else {
            fail[fail_id] = fail_mode;
          }
        } else {
          ++received;
          if (auto f = fail.find(id); f != fail.end()) {
            mode = f->second;
          } else if (fault_percent > 0 &&
                     std::uniform_int_distribution<int>(0, 99)(fault_rng) <
                         fault_percent) {
            mode = kRandomModes[std::uniform_int_distribution<size_t>(
                0, kRandomModes.size() - 1)(fault_rng)];
          }
          if (reject.count(id) || mode == "reject") {
            status = 400;
            body = "rejected";
          } else if (unavailable.count(id) || mode == "unavailable") {
            status = 503;
            body = "try later";
          } else if (mode == "error") {
            status = 500;
            body = "internal error";
          } else if (mode == "too-many") {
            status = 429;
            body = "slow down";
          } else if (mode.empty() || mode == "chunked") {
            ++accepted;
          }
          if (log_fd >= 0) {
            std::string st = mode.empty() || mode == "chunked" ||
                                     mode == "reject" ||
                                     mode == "unavailable" || mode == "error" ||
                                     mode == "too-many"
                                 ? std::to_string(status)
                                 : mode;
            std::string line = position + " " + subject + " " + id + " " +
                               std::to_string(NowUs()) + " " + st + " " +
                               source + "\n";
            if (::write(log_fd, line.data(), line.size()) < 0) {
              std::perror("receiver: write log");
            }
          }
        }
        const char* reason = status == 200   ? "OK"
                             : status == 400 ? "Bad Request"
                             : status == 429 ? "Too Many Requests"
                             : status == 500 ? "Internal Server Error"
                                             : "Service Unavailable";
        Pending p{fd, NowUs() + delay_us, "", !keep_alive};
        if (mode == "chunked") {
          p.bytes =
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
              "Content-Type: text/plain\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        } else if (mode == "hang") {
          p.due_us = INT64_MAX;
        } else if (mode == "cut-before-status") {
          p.close = true;
        } else if (mode == "cut-in-status") {
          p.bytes = "HTTP/1.1 20";
          p.close = true;
        } else if (mode == "cut-in-headers") {
          p.bytes = "HTTP/1.1 200 OK\r\nContent-Len";
          p.close = true;
        } else if (mode == "cut-after-headers") {
          p.bytes = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
          p.close = true;
        } else if (mode == "cut-in-body") {
          p.bytes = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok";
          p.close = true;
        } else if (mode == "cut-in-chunked") {
          p.bytes =
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              "2\r\nok\r\n";
          p.close = true;
        } else {
          p.bytes =
              "HTTP/1.1 " + std::to_string(status) + " " + reason +
              "\r\nContent-Length: " + std::to_string(body.size()) +
              (status == 503 || status == 429 ? "\r\nRetry-After: 1" : "") +
              (keep_alive ? "" : "\r\nConnection: close") +
              "\r\nContent-Type: text/plain\r\n\r\n" + body;
        }
        pending.push_back(std::move(p));
      }
      size_t in_flight = 0;
      for (const auto& q : pending) in_flight += q.fd >= 0 ? 1 : 0;
      max_in_flight = std::max(max_in_flight, in_flight);
      flush_due();
      // The peer closed: drop what it can no longer read.
      if (closed && conns.count(fd)) close_conn(fd);
    }
    flush_due();
  }
  for (auto& [fd, c] : conns) ::close(fd);
  ::close(lfd);
  if (log_fd >= 0) ::close(log_fd);
  return 0;
}
