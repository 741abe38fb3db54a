// The SQS and SNS senders on libcurl's multi interface.
//
// A request carries up to max_batch events (SendMessageBatch /
// PublishBatch; SendMessage / Publish when max_batch = 1), at most one
// event of a stream, and at most max_message_size bytes in all. Up to
// max_in_flight events are in flight at once, over reused keep-alive
// connections, never two of one stream: a stream's next event goes only
// after AWS acknowledged the previous one, so a failed entry is never
// overtaken. Entries of a batch are answered one by one: an entry AWS
// lists as successful (with a MessageId) is delivered; a failed entry with
// SenderFault=true is Permanent, other failed entries are Unavailable, and
// either way the rest of its stream waits (attempted = false). An answer
// that is incomplete, unreadable or silent about an entry acknowledges
// nothing of it (Unavailable). Error answers: aws_query.h AwsErrorStatus.
//
// Signing and credentials: aws_request.h (shared with the SQS source).
//
// Thread safety: one relay thread calls Send at a time; curl handles are
// used only inside Send.
#include "transport/aws/aws_sender.h"

#include <curl/curl.h>

#include <deque>
#include <functional>
#include <mutex>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "herald/redact.h"
#include "transport/aws/aws_credentials.h"
#include "transport/aws/aws_query.h"
#include "transport/aws/aws_request.h"
#include "transport/aws/aws_scheme.h"

namespace herald::detail {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

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

// Answers are small (a batch answer is a few KiB); more is not AWS.
constexpr size_t kMaxAnswer = 1 << 20;

// One request in flight.
struct Request {
  EasyPtr easy;
  SlistPtr headers;
  std::string body;
  std::string answer;
  bool answer_cut = false;     // more than kMaxAnswer bytes
  bool headers_ended = false;  // the final response's blank line was seen
  int64_t body_bytes = 0;
  bool batch = false;
  std::vector<size_t> entries;  // event indices, entry i+1 = entries[i]
  char error[CURL_ERROR_SIZE] = {};
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Request*>(user);
  size_t len = size * n;
  r->body_bytes += static_cast<int64_t>(len);
  if (r->answer.size() + len <= kMaxAnswer) {
    r->answer.append(data, len);
  } else {
    r->answer_cut = true;
  }
  return len;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Request*>(user);
  std::string_view line(data, size * n);
  if (line.substr(0, 5) == "HTTP/") {
    r->headers_ended = false;
  } else if (line == "\r\n" || line == "\n") {
    r->headers_ended = true;
  }
  return size * n;
}

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

SendResult Attempted(Status s) {
  SendResult r;
  r.status = std::move(s);
  r.attempted = true;
  return r;
}

class AwsSender final : public Sender {
 public:
  AwsSender(AwsOptions o, int max_in_flight)
      : o_(std::move(o)),
        max_in_flight_(static_cast<size_t>(std::max(1, max_in_flight))),
        sigv4_(AwsSigV4Param(o_)),
        what_(
            std::string(o_.service == AwsService::kSqs ? "queue " : "topic ") +
            o_.target),
        multi_(curl_multi_init()) {
    curl_multi_setopt(multi_.get(), CURLMOPT_MAXCONNECTS,
                      static_cast<long>(max_in_flight_ + 4));
  }

  std::string_view kind() const override { return o_.service_name(); }

  void Send(std::span<const Event> events, std::span<SendResult> results,
            steady_clock::time_point deadline) override {
    const size_t n = events.size();
    if (n == 0 || steady_clock::now() >= deadline) return;

    // Streams: their events in order, and the next one to send.
    std::unordered_map<std::string_view, size_t> ids;
    std::vector<size_t> stream_of(n);
    std::vector<std::vector<size_t>> queue;
    for (size_t i = 0; i < n; ++i) {
      auto [it, added] = ids.emplace(events[i].stream, queue.size());
      if (added) queue.emplace_back();
      stream_of[i] = it->second;
      queue[it->second].push_back(i);
    }
    std::vector<size_t> head(queue.size(), 0);
    // The heads of streams with nothing in flight, earliest first.
    std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
    for (const auto& q : queue) ready.push(q.front());

    auto creds = credentials_.Get();
    if (!creds.ok()) {
      // Route-wide: the head of each stream fails (an attempt, so the
      // route shows the error and backs off); the rest waits.
      Status s = Status::Unavailable(creds.status().message());
      for (const auto& q : queue) results[q.front()] = Attempted(s);
      return;
    }

    // A stream's event is settled: its successor becomes ready on success.
    auto settle = [&](size_t i, Status s) {
      bool ok = s.ok();
      results[i] = Attempted(Scrub(std::move(s), *creds));
      size_t st = stream_of[i];
      if (ok && ++head[st] < queue[st].size()) ready.push(queue[st][head[st]]);
    };

    std::vector<AwsMessage> messages(n);
    std::vector<bool> built(n, false);
    std::vector<std::unique_ptr<Request>> running;
    size_t in_flight = 0;  // events in running requests

    for (;;) {
      // Start requests while there is room.
      while (!ready.empty() && in_flight < max_in_flight_ &&
             steady_clock::now() < deadline) {
        size_t room = std::min(static_cast<size_t>(o_.max_batch),
                               max_in_flight_ - in_flight);
        std::vector<size_t> take;
        size_t total = 0;
        while (!ready.empty() && take.size() < room) {
          size_t i = ready.top();
          if (!built[i]) {
            Status s = MakeAwsMessage(events[i], o_, &messages[i]);
            if (s.ok() && messages[i].size() > o_.max_message_size) {
              s = Status::Permanent(
                  "event " + events[i].id + " is " +
                  std::to_string(messages[i].size()) +
                  " bytes as a message (body plus attributes), over the " +
                  std::to_string(o_.max_message_size) +
                  "-byte limit (max_message_size) of " + what_ +
                  ": not sent (herald never truncates an event)");
            }
            if (!s.ok()) {
              ready.pop();
              settle(i, std::move(s));  // its stream stops here
              continue;
            }
            built[i] = true;
          }
          if (total + messages[i].size() > o_.max_message_size) break;
          ready.pop();
          total += messages[i].size();
          take.push_back(i);
        }
        if (take.empty()) {
          if (ready.empty()) break;
          continue;
        }
        auto r = Start(*creds, take, messages);
        if (!r) {
          for (size_t i : take) {
            settle(i, Status::Internal("cannot start an HTTP request"));
          }
          continue;
        }
        in_flight += take.size();
        running.push_back(std::move(r));
      }
      if (running.empty()) break;

      if (steady_clock::now() >= deadline) {
        for (auto& r : running) {
          curl_multi_remove_handle(multi_.get(), r->easy.get());
          for (size_t i : r->entries) {
            results[i] = Attempted(Status::Unavailable(
                "no answer from " + o_.endpoint +
                " by the deadline: abandoned, it may or may not be stored"));
          }
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
          std::unique_ptr<Request> r = std::move(running[k]);
          running.erase(running.begin() + static_cast<long>(k));
          curl_multi_remove_handle(multi_.get(), r->easy.get());
          in_flight -= r->entries.size();
          Finish(m->data.result, *r, settle);
          idle_.push_back(std::move(r));
          progressed = true;
          break;
        }
      }
      if (!progressed) {
        auto left = std::chrono::duration_cast<milliseconds>(
            deadline - steady_clock::now());
        int wait = static_cast<int>(std::clamp<int64_t>(left.count(), 0, 100));
        curl_multi_poll(multi_.get(), nullptr, 0, wait, nullptr);
      }
    }
  }

 private:
  // `s` without the secret key or session token, should an answer quote
  // them (AWS's own messages do not; a compatible server's might).
  static Status Scrub(Status s, const AwsCredentials& c) {
    if (s.ok()) return s;
    std::string m = s.message();
    bool changed = false;
    for (const std::string* secret : {&c.secret_access_key, &c.session_token}) {
      if (secret->size() < 4) continue;
      for (size_t at = m.find(*secret); at != std::string::npos;
           at = m.find(*secret, at)) {
        m.replace(at, secret->size(), "***");
        changed = true;
      }
    }
    if (!changed) return s;
    return Status(s.code(), std::move(m));
  }

  std::unique_ptr<Request> Start(const AwsCredentials& creds,
                                 const std::vector<size_t>& take,
                                 const std::vector<AwsMessage>& messages) {
    std::unique_ptr<Request> r;
    if (!idle_.empty()) {
      r = std::move(idle_.back());
      idle_.pop_back();
    } else {
      r = std::make_unique<Request>();
      r->easy.reset(curl_easy_init());
      if (!r->easy) return nullptr;
      Configure(r.get());
    }
    r->entries = take;
    r->batch = o_.max_batch > 1;
    r->answer.clear();
    r->answer_cut = false;
    r->headers_ended = false;
    r->body_bytes = 0;
    r->error[0] = 0;
    std::vector<const AwsMessage*> batch;
    batch.reserve(take.size());
    for (size_t i : take) batch.push_back(&messages[i]);
    r->body = AwsRequestBody(o_, batch, r->batch);

    CURL* c = r->easy.get();
    r->headers.reset(SetAwsCredentials(c, creds));
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(r->body.size()));
    if (curl_multi_add_handle(multi_.get(), c) != CURLM_OK) return nullptr;
    return r;
  }

  void Configure(Request* r) {
    CURL* c = r->easy.get();
    ConfigureAwsCurl(c, o_, sigv4_, "herald-relay");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->error);
  }

  // Judges a finished request and settles each of its entries.
  template <typename Settle>
  void Finish(CURLcode code, const Request& r, Settle& settle) {
    const std::string where =
        std::string(r.batch
                        ? (o_.service == AwsService::kSqs ? "SendMessageBatch"
                                                          : "PublishBatch")
                        : (o_.service == AwsService::kSqs ? "SendMessage"
                                                          : "Publish")) +
        " to " + what_;
    auto all = [&](const Status& s) {
      for (size_t i : r.entries) settle(i, s);
    };
    if (code != CURLE_OK) {
      std::string msg = r.error[0] ? r.error : curl_easy_strerror(code);
      all(Status::Unavailable(
          RedactSecrets(where + " via " + o_.endpoint + ": " + msg)));
      return;
    }
    long status = 0;
    curl_easy_getinfo(r.easy.get(), CURLINFO_RESPONSE_CODE, &status);
    curl_off_t length = -1;
    curl_easy_getinfo(r.easy.get(), CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
                      &length);
    if (!r.headers_ended || (length >= 0 && r.body_bytes < length) ||
        r.answer_cut) {
      all(Status::Unavailable(where + ": incomplete answer (HTTP " +
                              std::to_string(status) +
                              "): not an acknowledgement"));
      return;
    }
    if (status < 200 || status >= 300) {
      all(AwsErrorStatus(status, r.answer, where));
      return;
    }
    std::vector<EntryOutcome> outcomes;
    Status parsed = ParseAwsAnswer(r.answer, o_.service, r.batch,
                                   r.entries.size(), &outcomes);
    if (!parsed.ok()) {
      all(Status::Unavailable(where + ": unreadable answer (" +
                              parsed.message() + "): not an acknowledgement"));
      return;
    }
    for (size_t k = 0; k < r.entries.size(); ++k) {
      const EntryOutcome& o = outcomes[k];
      if (!o.answered) {
        settle(r.entries[k],
               Status::Unavailable(where + ": the answer does not name entry " +
                                   std::to_string(k + 1) +
                                   ": not an acknowledgement"));
      } else if (o.ok) {
        settle(r.entries[k], Status::OK());
      } else {
        settle(r.entries[k], AwsEntryStatus(o, where));
      }
    }
  }

  const AwsOptions o_;
  const size_t max_in_flight_;
  const std::string sigv4_;
  const std::string what_;  // "queue URL" / "topic ARN", for messages
  AwsCredentialsProvider credentials_;
  MultiPtr multi_;
  std::vector<std::unique_ptr<Request>> idle_;
};

}  // namespace

Result<std::unique_ptr<Sender>> MakeAwsSender(const RouteConfig& route) {
  AwsOptions o;
  HERALD_RETURN_IF_ERROR(ParseAwsOptions(route, &o));
  GlobalInit();
  return std::unique_ptr<Sender>(
      std::make_unique<AwsSender>(std::move(o), route.max_in_flight));
}

}  // namespace herald::detail
