// HTTP webhook sender on libcurl's multi interface.
//
// One POST per event. Up to max_in_flight requests run at once over reused
// keep-alive connections (the multi handle's connection cache), never two of
// one stream: a stream's next event starts only after its previous one was
// acknowledged, and a failure stops the rest of its stream for this call.
// A response is an acknowledgement only when complete: its header section
// ended (the blank line: libcurl 7.88 reports a response cut inside its
// headers as success) and its body arrived in full (libcurl reports a short
// Content-Length or chunked body as CURLE_PARTIAL_FILE; the byte count is
// checked again here). Then 2xx = delivered; 408, 429, 5xx, timeouts,
// connection errors and cut responses = Unavailable (retry, with
// Retry-After); other statuses = Permanent.
//
// Thread safety: one relay thread calls Send at a time; curl handles are
// used only inside Send.
#include "transport/http/http_sender.h"

#include <curl/curl.h>

#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace herald::detail {
namespace {

struct MultiCleanup {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
struct EasyCleanup {
  void operator()(CURL* e) const { curl_easy_cleanup(e); }
};
struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using MultiPtr = std::unique_ptr<CURLM, MultiCleanup>;
using EasyPtr = std::unique_ptr<CURL, EasyCleanup>;
using SlistPtr = std::unique_ptr<curl_slist, SlistFree>;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

constexpr size_t kMaxErrorBody = 200;

// One request in flight.
struct Transfer {
  EasyPtr easy;
  SlistPtr headers;
  std::string body;
  std::string response;  // the first bytes, for error messages
  std::string retry_after;
  bool headers_ended = false;  // the final response's blank line was seen
  int64_t body_bytes = 0;
  size_t index = 0;  // into the events of the Send call
  char error[CURL_ERROR_SIZE] = {};
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  t->body_bytes += static_cast<int64_t>(len);
  if (t->response.size() < kMaxErrorBody) {
    t->response.append(data, std::min(len, kMaxErrorBody - t->response.size()));
  }
  return len;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  // Each response (a 1xx one too) starts with its status line and ends its
  // header section with an empty line; only the last one counts.
  if (line.substr(0, 5) == "HTTP/") {
    t->headers_ended = false;
    t->retry_after.clear();
  } else if (line == "\r\n" || line == "\n") {
    t->headers_ended = true;
  }
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    bool match = true;
    for (size_t i = 0; i < kName.size() && match; ++i) {
      char c = line[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      match = c == kName[i];
    }
    if (match) {
      std::string_view v = line.substr(kName.size());
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) {
        v.remove_prefix(1);
      }
      while (!v.empty() &&
             (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) {
        v.remove_suffix(1);
      }
      t->retry_after.assign(v);
    }
  }
  return size * n;
}

// Retry-After: delta-seconds or an HTTP date.
std::chrono::milliseconds ParseRetryAfter(const std::string& v) {
  if (v.empty()) return std::chrono::milliseconds(0);
  bool digits = v.size() < 10;
  for (char c : v) digits = digits && c >= '0' && c <= '9';
  if (digits) return std::chrono::seconds(std::stoll(v));
  time_t when = curl_getdate(v.c_str(), nullptr);
  if (when < 0) return std::chrono::milliseconds(0);
  int64_t delta_ms = static_cast<int64_t>(when) * 1000 - NowMicros() / 1000;
  return std::chrono::milliseconds(std::max<int64_t>(0, delta_ms));
}

class HttpSender final : public Sender {
 public:
  explicit HttpSender(const RouteConfig& route)
      : url_(route.sender),
        options_(route.sender_options),
        max_in_flight_(static_cast<size_t>(route.max_in_flight)),
        multi_(curl_multi_init()) {
    curl_multi_setopt(multi_.get(), CURLMOPT_MAXCONNECTS,
                      static_cast<long>(max_in_flight_ + 4));
    for (const auto& [k, v] : options_.headers) extra_.push_back(k + ": " + v);
  }

  std::string_view kind() const override { return "http"; }

  void Send(std::span<const Event> events, std::span<SendResult> results,
            std::chrono::steady_clock::time_point deadline) override {
    // Per stream, the indices still to send, in order.
    for (auto& r : results) r = SendResult::NotSent();
    std::map<std::string_view, std::deque<size_t>> lanes;
    std::vector<std::string_view> order;  // streams by first appearance
    for (size_t i = 0; i < events.size(); ++i) {
      auto& lane = lanes[events[i].stream];
      if (lane.empty()) order.push_back(events[i].stream);
      lane.push_back(i);
    }
    std::map<std::string_view, bool> busy;  // a request of the stream runs
    std::vector<std::unique_ptr<Transfer>> running;
    size_t next_stream = 0;  // round-robin start over `order`

    auto skip_lane = [&](std::string_view stream, const Status& why) {
      for (size_t j : lanes[stream]) {
        results[j].attempted = false;
        results[j].status = why;
      }
      lanes[stream].clear();
    };

    for (;;) {
      // Start requests while there is room.
      bool expired = std::chrono::steady_clock::now() >= deadline;
      for (size_t tries = 0;
           !expired && running.size() < max_in_flight_ && tries < order.size();
           ++tries) {
        std::string_view s = order[(next_stream + tries) % order.size()];
        if (busy[s] || lanes[s].empty()) continue;
        size_t i = lanes[s].front();
        lanes[s].pop_front();
        auto t = Start(events[i], i);
        if (!t) {
          results[i].status = Status::Internal("cannot start an HTTP request");
          skip_lane(s,
                    Status::Unavailable("not sent: an earlier event failed"));
          continue;
        }
        busy[s] = true;
        running.push_back(std::move(t));
      }
      if (running.empty()) break;

      auto now = std::chrono::steady_clock::now();
      if (now >= deadline) {
        for (auto& t : running) {
          curl_multi_remove_handle(multi_.get(), t->easy.get());
          // Sent, but never answered in time: an attempt that failed.
          results[t->index].attempted = true;
          results[t->index].status =
              Status::Unavailable("abandoned: the lease deadline passed");
          skip_lane(events[t->index].stream,
                    Status::Unavailable("not sent: lease deadline"));
          Recycle(std::move(t));
        }
        running.clear();
        break;
      }
      int still = 0;
      curl_multi_perform(multi_.get(), &still);
      int msgs = 0;
      bool progressed = false;
      while (CURLMsg* m = curl_multi_info_read(multi_.get(), &msgs)) {
        if (m->msg != CURLMSG_DONE) continue;
        for (size_t k = 0; k < running.size(); ++k) {
          if (running[k]->easy.get() != m->easy_handle) continue;
          std::unique_ptr<Transfer> t = std::move(running[k]);
          running.erase(running.begin() + static_cast<long>(k));
          curl_multi_remove_handle(multi_.get(), t->easy.get());
          size_t i = t->index;
          std::string_view s = events[i].stream;
          busy[s] = false;
          results[i] = Classify(m->data.result, *t);
          if (!results[i].status.ok()) {
            skip_lane(s,
                      Status::Unavailable("not sent: an earlier event of its "
                                          "stream failed"));
          }
          Recycle(std::move(t));
          progressed = true;
          break;
        }
      }
      if (!progressed) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        int wait = static_cast<int>(std::clamp<int64_t>(left.count(), 0, 100));
        curl_multi_poll(multi_.get(), nullptr, 0, wait, nullptr);
      }
      next_stream = order.empty() ? 0 : (next_stream + 1) % order.size();
    }
  }

 private:
  std::unique_ptr<Transfer> Start(const Event& e, size_t index) {
    std::unique_ptr<Transfer> t;
    if (!idle_.empty()) {
      t = std::move(idle_.back());
      idle_.pop_back();
    } else {
      t = std::make_unique<Transfer>();
      t->easy.reset(curl_easy_init());
      if (!t->easy) return nullptr;
      Configure(t.get());
    }
    t->index = index;
    t->response.clear();
    t->retry_after.clear();
    t->headers_ended = false;
    t->body_bytes = 0;
    t->error[0] = 0;
    t->body.clear();
    curl_slist* h = nullptr;
    if (options_.mode == CloudEventsMode::kStructured) {
      AppendCloudEventJson(e, options_.source, &t->body);
      h = curl_slist_append(h,
                            "Content-Type: application/cloudevents+json; "
                            "charset=utf-8");
    } else {
      t->body = e.payload;
      for (const auto& [k, v] : CloudEventHeaders(e, options_.source)) {
        std::string line = k + ": " + v;
        h = curl_slist_append(h, line.c_str());
      }
    }
    h = curl_slist_append(h, "Expect:");
    for (const auto& line : extra_) h = curl_slist_append(h, line.c_str());
    t->headers.reset(h);
    CURL* c = t->easy.get();
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, t->headers.get());
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, t->body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(t->body.size()));
    if (curl_multi_add_handle(multi_.get(), c) != CURLM_OK) return nullptr;
    return t;
  }

  void Configure(Transfer* t) {
    CURL* c = t->easy.get();
    curl_easy_setopt(c, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options_.connect_timeout.count()));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(options_.timeout.count()));
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, options_.tls_verify ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, options_.tls_verify ? 2L : 0L);
    if (!options_.ca_file.empty()) {
      curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
    }
    curl_easy_setopt(c, CURLOPT_USERAGENT, "herald-relay");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  }

  void Recycle(std::unique_ptr<Transfer> t) {
    t->headers.reset();
    idle_.push_back(std::move(t));
  }

  SendResult Classify(CURLcode code, const Transfer& t) {
    SendResult r;
    if (code != CURLE_OK) {
      std::string msg = t.error[0] ? t.error : curl_easy_strerror(code);
      r.status = Status::Unavailable("POST " + url_ + ": " + msg);
      return r;
    }
    long status = 0;
    curl_easy_getinfo(t.easy.get(), CURLINFO_RESPONSE_CODE, &status);
    if (!t.headers_ended) {
      r.status = Status::Unavailable(
          "POST " + url_ + ": incomplete response (HTTP " +
          std::to_string(status) +
          " cut before the end of its headers): not an acknowledgement");
      return r;
    }
    curl_off_t length = -1;
    curl_easy_getinfo(t.easy.get(), CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
                      &length);
    if (length >= 0 && t.body_bytes < length) {
      r.status = Status::Unavailable(
          "POST " + url_ + ": incomplete response (HTTP " +
          std::to_string(status) + ", " + std::to_string(t.body_bytes) +
          " of " + std::to_string(length) +
          " body bytes): not an acknowledgement");
      return r;
    }
    if (status >= 200 && status < 300) return r;
    std::string msg = "HTTP " + std::to_string(status) + " from " + url_;
    if (!t.response.empty()) {
      std::string body;
      for (char ch : t.response) {
        body.push_back(ch == '\n' || ch == '\r' ? ' ' : ch);
      }
      msg += ": " + body;
    }
    if (status == 408 || status == 429 || status >= 500) {
      r.status = Status::Unavailable(msg);
      r.retry_after = ParseRetryAfter(t.retry_after);
    } else {
      r.status = Status::Permanent(msg);
    }
    return r;
  }

  const std::string url_;
  const SenderOptions options_;
  const size_t max_in_flight_;
  std::vector<std::string> extra_;
  MultiPtr multi_;
  std::vector<std::unique_ptr<Transfer>> idle_;
};

}  // namespace

Result<std::unique_ptr<Sender>> MakeHttpSender(const RouteConfig& route) {
  GlobalInit();
  auto s = std::make_unique<HttpSender>(route);
  return std::unique_ptr<Sender>(std::move(s));
}

}  // namespace herald::detail
