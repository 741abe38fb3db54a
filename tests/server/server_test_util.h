// Helpers for the server tests: a real HTTP client (libcurl), raw sockets
// for SSE and slow clients, and a `herald serve` child process.
#pragma once

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "herald/json.h"
#include "support/test_util.h"

namespace herald::testing {

struct HttpResult {
  long status = 0;  // 0: no answer (connection failed)
  std::string body;
  std::string headers;  // raw response headers
  std::string Header(const std::string& name) const {
    std::istringstream in(headers);
    std::string line;
    while (std::getline(in, line)) {
      if (line.size() > name.size() && line[name.size()] == ':' &&
          strncasecmp(line.c_str(), name.c_str(), name.size()) == 0) {
        std::string v = line.substr(name.size() + 1);
        while (!v.empty() && (v[0] == ' ')) v.erase(0, 1);
        while (!v.empty() && (v.back() == '\r' || v.back() == '\n')) {
          v.pop_back();
        }
        return v;
      }
    }
    return "";
  }
  // The error code of a JSON error body, or "".
  std::string ErrorCode() const {
    auto doc = Json::Parse(body);
    if (!doc.ok()) return "";
    const Json* e = doc->Find("error");
    if (!e) return "";
    const Json* c = e->Find("code");
    const Json* m = e->Find("message");
    if (!c || !c->is_string() || !m || !m->is_string()) return "";
    return c->as_string();
  }
};

// One libcurl easy handle (keep-alive across calls). Not thread-safe: one
// per thread.
class HttpClient {
 public:
  HttpClient() : curl_(curl_easy_init()) {}
  ~HttpClient() { curl_easy_cleanup(curl_); }
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  HttpResult Request(const std::string& method, const std::string& url,
                     const std::string& body = "",
                     std::vector<std::string> headers = {},
                     long timeout_ms = 30000) {
    HttpResult r;
    curl_easy_reset(curl_);
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &Append);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &Append);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &r.headers);
    if (method == "POST") {
      curl_easy_setopt(curl_, CURLOPT_POST, 1L);
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE,
                       static_cast<long>(body.size()));
    } else if (method == "HEAD") {
      curl_easy_setopt(curl_, CURLOPT_NOBODY, 1L);  // a head, no body
    } else if (method != "GET") {
      curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, method.c_str());
    }
    bool has_ct = false;
    for (const auto& h : headers) {
      if (strncasecmp(h.c_str(), "content-type:", 13) == 0) has_ct = true;
    }
    if (method == "POST" && !has_ct) {
      headers.push_back("Content-Type: application/json");
    }
    headers.push_back("Expect:");
    curl_slist* list = nullptr;
    for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, list);
    CURLcode rc = curl_easy_perform(curl_);
    curl_slist_free_all(list);
    if (rc == CURLE_OK) {
      curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &r.status);
    }
    return r;
  }
  HttpResult Get(const std::string& url, std::vector<std::string> h = {}) {
    return Request("GET", url, "", std::move(h));
  }
  HttpResult Post(const std::string& url, const std::string& body,
                  std::vector<std::string> h = {}) {
    return Request("POST", url, body, std::move(h));
  }

 private:
  static size_t Append(char* p, size_t s, size_t n, void* u) {
    static_cast<std::string*>(u)->append(p, s * n);
    return s * n;
  }
  CURL* curl_;
};

// A connected TCP socket to 127.0.0.1:port; -1 on failure.
inline int ConnectLoopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

inline bool SendAll(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Reads what is available within `timeout_ms` into *out. Returns false on
// EOF or error (the peer closed), true otherwise.
inline bool ReadSome(int fd, std::string* out, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  int r = ::poll(&p, 1, timeout_ms);
  if (r <= 0) return true;
  char buf[65536];
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  if (n <= 0) return false;
  out->append(buf, static_cast<size_t>(n));
  return true;
}

// Raises this process's descriptor limit to its hard limit.
inline void RaiseFdLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// `herald serve` on a free loopback port, ready when /health answers.
class ServeProcess {
 public:
  // `config_toml`, when given, is written to a file and passed as --config
  // (its [server] listen is overridden by --listen).
  // `prefix`, when given, runs the server under that command (e.g.
  // {"prlimit", "--nofile=100:100"}).
  ServeProcess(const TempDir& dir, const std::string& store_url,
               const std::string& config_toml = "",
               std::vector<std::string> extra = {}, int port = 0,
               std::vector<std::string> prefix = {})
      : port_(port > 0 ? port : FreePort()) {
    std::vector<std::string> argv = std::move(prefix);
    for (std::string a :
         {HeraldBin(), std::string("serve"), std::string("--db"), store_url,
          std::string("--listen"), "127.0.0.1:" + std::to_string(port_)}) {
      argv.push_back(std::move(a));
    }
    if (!config_toml.empty()) {
      std::string path = dir.file("herald-" + std::to_string(port_) + ".toml");
      WriteFile(path, config_toml);
      argv.push_back("--config");
      argv.push_back(path);
    }
    for (auto& e : extra) argv.push_back(e);
    Child::Options o;
    stderr_path_ = dir.file("serve-" + std::to_string(port_) + ".err");
    o.stderr_path = stderr_path_;
    o.stdout_path = dir.file("serve-" + std::to_string(port_) + ".out");
    child_ = std::make_unique<Child>(argv, o);
    HttpClient c;
    ready_ = WaitFor(
        [&] {
          if (!child_->running()) return true;
          return c.Request("GET", base() + "/health", "", {}, 1000).status ==
                 200;
        },
        std::chrono::seconds(20));
    ready_ = ready_ && child_->running();
  }

  bool ready() const { return ready_; }
  int port() const { return port_; }
  std::string base() const {
    return "http://127.0.0.1:" + std::to_string(port_);
  }
  Child& child() { return *child_; }
  std::string stderr_text() const { return ReadFile(stderr_path_); }
  // SIGTERM and wait; returns the exit status.
  int Stop() {
    child_->Signal(SIGTERM);
    return child_->Wait();
  }

 private:
  int port_;
  std::string stderr_path_;
  std::unique_ptr<Child> child_;
  bool ready_ = false;
};

// A value of a Prometheus metric line "name{labels} value" (labels as
// written), or -1.
inline double MetricValue(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > name.size() && line.compare(0, name.size(), name) == 0 &&
        line[name.size()] == ' ') {
      return std::stod(line.substr(name.size() + 1));
    }
  }
  return -1;
}

}  // namespace herald::testing
