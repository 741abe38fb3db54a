// PageClient on libcurl (see page_client.h).
#include "consumer/page_client.h"

#include <curl/curl.h>

#include <cstdio>

#include "herald/json.h"

namespace herald::detail {

namespace {

struct CurlCleanup {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlPtr = std::unique_ptr<CURL, CurlCleanup>;
using SlistPtr = std::unique_ptr<curl_slist, SlistFree>;

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* stop = static_cast<std::function<bool()>*>(user);
  return (*stop && (*stop)()) ? 1 : 0;
}

std::string Escape(CURL* c, const std::string& s) {
  char* e = curl_easy_escape(c, s.data(), static_cast<int>(s.size()));
  std::string out = e ? e : "";
  curl_free(e);
  return out;
}

}  // namespace

struct PageClient::Impl {
  PageClientOptions options;
  CurlPtr curl;
  SlistPtr headers;
  std::string base;  // .../api/events
  std::string root;  // scheme://host:port (for /health)
  std::string filters;
  std::string body;
  char errbuf[CURL_ERROR_SIZE] = {0};

  // One GET of `url`; OK with the body of a 200 answer, else as Fetch.
  Status Get(const std::string& url, std::chrono::milliseconds timeout) {
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    body.clear();
    errbuf[0] = 0;
    CURLcode rc = curl_easy_perform(c);
    if (options.stop && options.stop()) {
      return Status::Unavailable("stopped");
    }
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (rc != CURLE_OK) {
      return Status::Unavailable(std::string("request failed: ") +
                                 (errbuf[0] ? errbuf : curl_easy_strerror(rc)));
    }
    if (code >= 500 || code == 429 || code == 408) {
      return Status::Unavailable("server answered " + std::to_string(code));
    }
    if (code != 200) {
      std::string msg = body.substr(0, 500);
      if (auto doc = Json::Parse(body); doc.ok()) {
        if (const Json* err = doc->Find("error")) {
          if (const Json* m = err->Find("message"); m && m->is_string()) {
            msg = m->as_string();
          }
        }
      }
      return Status::InvalidArgument("server answered " + std::to_string(code) +
                                     ": " + msg);
    }
    return Status::OK();
  }
};

PageClient::PageClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PageClient::~PageClient() = default;

Result<std::unique_ptr<PageClient>> PageClient::Make(
    PageClientOptions options) {
  if (options.url.rfind("http://", 0) != 0 &&
      options.url.rfind("https://", 0) != 0) {
    return Status::InvalidArgument(
        "the server URL must start with http:// or https://, not '" +
        options.url + "'");
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->curl.reset(curl_easy_init());
  if (!impl->curl) return Status::Internal("curl_easy_init failed");
  CURL* c = impl->curl.get();
  std::string base = impl->options.url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  if (base.size() < 11 || base.compare(base.size() - 11, 11, "/api/events")) {
    base += "/api/events";
  }
  impl->base = base;
  impl->root = base.substr(0, base.size() - 11);
  for (const auto& t : impl->options.types) {
    impl->filters += "&type=" + Escape(c, t);
  }
  if (!impl->options.stream.empty()) {
    impl->filters += "&stream=" + Escape(c, impl->options.stream);
  }
  if (!impl->options.token.empty()) {
    std::string h = "Authorization: Bearer " + impl->options.token;
    impl->headers.reset(curl_slist_append(nullptr, h.c_str()));
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &impl->body);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &impl->options.stop);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, impl->errbuf);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  if (impl->headers)
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, impl->headers.get());
  return std::unique_ptr<PageClient>(new PageClient(std::move(impl)));
}

Status PageClient::Fetch(int64_t offset, int limit,
                         std::chrono::milliseconds wait,
                         std::vector<EventJsonItem>* items,
                         int64_t* next_offset) {
  std::string url = impl_->base + "?offset=" + std::to_string(offset) +
                    "&limit=" + std::to_string(limit) + impl_->filters;
  if (wait.count() > 0) {
    char text[32];
    std::snprintf(text, sizeof text, "%.3f", wait.count() / 1000.0);
    url += std::string("&wait=") + text;
  }
  HERALD_RETURN_IF_ERROR(
      impl_->Get(url, wait + std::chrono::milliseconds(30000)));
  // One decoder for the JSON form of events (herald/event_json.h).
  return DecodeEventPageJson(impl_->body, items, next_offset);
}

Result<int64_t> PageClient::Head() {
  HERALD_RETURN_IF_ERROR(
      impl_->Get(impl_->root + "/health", std::chrono::milliseconds(10000)));
  auto doc = Json::Parse(impl_->body);
  int64_t head = 0;
  const Json* store = doc.ok() ? doc->Find("store") : nullptr;
  const Json* h = store ? store->Find("head") : nullptr;
  if (!h || !h->TryInt64(&head)) {
    return Status::Corruption("the server's /health names no head");
  }
  return head;
}

}  // namespace herald::detail
