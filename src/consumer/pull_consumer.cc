// PullConsumer on libcurl (see include/herald/pull_consumer.h).
#include "herald/pull_consumer.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <random>
#include <thread>

#include "herald/event_json.h"
#include "herald/json.h"

namespace herald {

namespace {

struct CurlCleanup {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlPtr = std::unique_ptr<CURL, CurlCleanup>;
using SlistPtr = std::unique_ptr<curl_slist, SlistFree>;

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* stop = static_cast<std::function<bool()>*>(user);
  return (*stop)() ? 1 : 0;
}

std::string Escape(CURL* c, const std::string& s) {
  char* e = curl_easy_escape(c, s.data(), static_cast<int>(s.size()));
  std::string out = e ? e : "";
  curl_free(e);
  return out;
}

}  // namespace

Result<int64_t> ReadCheckpointFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return int64_t{0};
    return Status::Unavailable("cannot read checkpoint " + path + ": " +
                               std::strerror(errno));
  }
  FdCloser closer{fd};
  char buf[64];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  if (n < 0) {
    return Status::Unavailable("cannot read checkpoint " + path + ": " +
                               std::strerror(errno));
  }
  std::string text(buf, static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.pop_back();
  }
  if (text.empty() || text.size() > 18 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return Status::Corruption("checkpoint file " + path +
                              " does not hold an offset");
  }
  return static_cast<int64_t>(std::stoll(text));
}

Status WriteCheckpointFile(const std::string& path, int64_t offset) {
  std::string tmp = path + ".tmp";
  std::string text = std::to_string(offset) + "\n";
  {
    int fd =
        ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      return Status::Unavailable("cannot write checkpoint " + tmp + ": " +
                                 std::strerror(errno));
    }
    FdCloser closer{fd};
    if (::write(fd, text.data(), text.size()) !=
            static_cast<ssize_t>(text.size()) ||
        ::fsync(fd) != 0) {
      return Status::Unavailable("cannot write checkpoint " + tmp + ": " +
                                 std::strerror(errno));
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::Unavailable("cannot rename checkpoint to " + path + ": " +
                               std::strerror(errno));
  }
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  if (dir.empty()) dir = "/";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    FdCloser closer{dfd};
    ::fsync(dfd);
  }
  return Status::OK();
}

PullConsumer::PullConsumer(PullConsumerOptions options)
    : options_(std::move(options)) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
}

PullConsumer::~PullConsumer() = default;

bool PullConsumer::Stopping() const {
  return stop_.load() || (options_.stop_requested && options_.stop_requested());
}

Status PullConsumer::Run(const PullBatchHandler& handler) {
  if (options_.checkpoint_path.empty()) {
    return Status::InvalidArgument("a checkpoint file is required");
  }
  if (options_.limit < 1 || options_.limit > 10000) {
    return Status::InvalidArgument("limit must be between 1 and 10000");
  }
  if (options_.url.rfind("http://", 0) != 0 &&
      options_.url.rfind("https://", 0) != 0) {
    return Status::InvalidArgument(
        "the server URL must start with http:// "
        "or https://, not '" +
        options_.url + "'");
  }
  auto saved = ReadCheckpointFile(options_.checkpoint_path);
  if (!saved.ok()) return saved.status();
  // Offsets 0 and 1 both mean "from the start"; the first request asks for
  // 1, so no request ever carries 0 and a server that answers
  // offset + count (0 + limit) cannot make the consumer read `limit` twice.
  offset_.store(std::max<int64_t>(*saved, 1));

  CurlPtr curl(curl_easy_init());
  if (!curl) return Status::Internal("curl_easy_init failed");
  std::string base = options_.url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  if (base.size() < 11 || base.compare(base.size() - 11, 11, "/api/events")) {
    base += "/api/events";
  }
  std::string filters;
  for (const auto& t : options_.types)
    filters += "&type=" + Escape(curl.get(), t);
  if (!options_.stream.empty()) {
    filters += "&stream=" + Escape(curl.get(), options_.stream);
  }
  SlistPtr headers;
  if (!options_.token.empty()) {
    std::string h = "Authorization: Bearer " + options_.token;
    headers.reset(curl_slist_append(nullptr, h.c_str()));
  }
  std::function<bool()> stop_fn = [this] { return Stopping(); };
  std::string body;
  char errbuf[CURL_ERROR_SIZE];
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &stop_fn);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(options_.wait.count() + 30000));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  std::mt19937_64 rng(std::random_device{}());
  auto backoff = options_.backoff_initial;
  double wait_s = options_.wait.count() / 1000.0;
  char wait_text[32];
  std::snprintf(wait_text, sizeof wait_text, "%.3f", wait_s);

  std::vector<EventJsonItem> items;
  while (!Stopping()) {
    std::string url = base + "?offset=" + std::to_string(offset_.load()) +
                      "&limit=" + std::to_string(options_.limit) + filters;
    if (options_.wait.count() > 0) url += std::string("&wait=") + wait_text;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    body.clear();
    errbuf[0] = 0;
    CURLcode rc = curl_easy_perform(c);
    if (Stopping()) break;
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    std::string problem;
    if (rc != CURLE_OK) {
      problem = std::string("request failed: ") +
                (errbuf[0] ? errbuf : curl_easy_strerror(rc));
    } else if (code >= 500 || code == 429 || code == 408) {
      problem = "server answered " + std::to_string(code);
    } else if (code != 200) {
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
    if (!problem.empty()) {
      if (options_.on_retry) {
        options_.on_retry(problem + "; retrying in " +
                          std::to_string(backoff.count()) + " ms");
      }
      auto jittered = std::chrono::milliseconds(
          backoff.count() / 2 +
          static_cast<int64_t>(rng() %
                               static_cast<uint64_t>(backoff.count() / 2 + 1)));
      auto until = std::chrono::steady_clock::now() + jittered;
      while (!Stopping() && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      backoff = std::min(backoff * 2, options_.backoff_max);
      continue;
    }
    backoff = options_.backoff_initial;

    // One decoder for the JSON form of events (herald/event_json.h).
    int64_t next_offset = 0;
    HERALD_RETURN_IF_ERROR(DecodeEventPageJson(body, &items, &next_offset));
    std::vector<PulledEvent> batch(items.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i].event = std::move(items[i].event);
      batch[i].json = std::string(items[i].json);
    }
    if (!batch.empty()) HERALD_RETURN_IF_ERROR(handler(batch));
    // Forward only: a next_offset at or below the current offset is never
    // taken, so the consumer never goes back (to 0 least of all).
    if (next_offset > offset_.load()) {
      HERALD_RETURN_IF_ERROR(
          WriteCheckpointFile(options_.checkpoint_path, next_offset));
      offset_.store(next_offset);
    }
  }
  return Status::OK();
}

}  // namespace herald
