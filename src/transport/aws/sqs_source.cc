// The SQS consumer source on libcurl, signed and credentialed exactly as
// the SQS sender (aws_request.h, aws_credentials.h).
//
//   Poll         ReceiveMessage: up to min(max, 10) messages, long-polling
//                (WaitTimeSeconds) for a wait of a second or more, else a
//                short poll and then a wait on Wake for the rest; every
//                attribute and message attribute. Each message is decoded
//                from what the SQS sender writes: the CloudEvents
//                structured JSON body (default), or the payload with ce-*
//                message attributes (raw = true); plain CloudEvents JSON of
//                any producer too. ApproximateReceiveCount - 1 is the
//                delivery's redeliveries.
//   key          FIFO queues: the MessageGroupId (what SQS keeps ordered;
//                herald's SQS sender sets it to the stream). Standard
//                queues: the event's stream (they keep no order at all;
//                messages are deleted one by one, in any order).
//   Ack          DeleteMessageBatch, 10 receipt handles a request.
//   Release      ChangeMessageVisibility to 0 (visible again now).
//   KeepAlive    ChangeMessageVisibility to visibility_timeout for the
//                running ones and any in hand for half of it, so SQS does
//                not hand a message that is being handled to another
//                consumer.
//   Lag          GetQueueAttributes ApproximateNumberOfMessages, at most
//                every 5 s.
//
// Thread safety: one thread (the consumer's source thread); Wake from any
// (an eventfd the idle wait watches).
#include "transport/aws/sqs_source.h"

#include <curl/curl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "herald/cloudevents.h"
#include "herald/redact.h"
#include "transport/aws/aws_credentials.h"
#include "transport/aws/aws_query.h"
#include "transport/aws/aws_request.h"
#include "transport/aws/aws_scheme.h"
#include "transport/source_util.h"

namespace herald::detail {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr size_t kMaxAnswer = 4 << 20;

struct SqsSourceConfig {
  AwsOptions aws;
  std::chrono::seconds visibility{30};
};

Status ParseSqsSource(const ConsumerSourceOptions& so, SqsSourceConfig* out) {
  const RouteOptions& o = so.options;
  // The keys shared with the sender are read by the sender's parser.
  RouteConfig route;
  route.name = so.consumer;
  route.sender = so.url;
  route.options.source_name = o.source_name;
  route.options.route = o.route;
  route.options.table = o.table;
  route.options.common_keys = o.common_keys;
  route.line = ConsumerTableLine(o);
  for (const auto& f : o.fields) {
    const std::string& k = f.key;
    if (k == "visibility_timeout") {
      std::chrono::milliseconds v;
      HERALD_RETURN_IF_ERROR(
          o.GetDuration(k, f.value, std::chrono::seconds(1), &v));
      if (v > std::chrono::hours(12)) {
        return o.Error(k, f.value.line, "must be at most 12h (SQS's limit)");
      }
      out->visibility = std::chrono::duration_cast<std::chrono::seconds>(v);
    } else if (k == "region" || k == "endpoint" || k == "timeout" ||
               k == "connect_timeout" || k == "tls_verify" ||
               k == "ca_file") {
      route.options.fields.push_back(f);
    } else {
      return o.UnknownKey(f, kSqsSourceKeys);
    }
  }
  if (SchemeOfUrl(so.url) != "sqs") {
    return Status::InvalidArgument("'" + RedactSecrets(so.url) +
                                   "' is not an sqs:QUEUE_URL source");
  }
  HERALD_RETURN_IF_ERROR(ParseAwsOptions(route, &out->aws));
  // A long poll holds the request up to 20 s: the request timeout must
  // cover it.
  out->aws.timeout = std::max(out->aws.timeout, milliseconds(25000));
  return Status::OK();
}

size_t OnBody(char* p, size_t size, size_t n, void* user) {
  auto* s = static_cast<std::string*>(user);
  if (s->size() + size * n > kMaxAnswer) return 0;
  s->append(p, size * n);
  return size * n;
}

struct Message {
  std::string receipt;
  Clock::time_point since;
};

class SqsSource final : public ConsumerSource {
 public:
  SqsSource(const ConsumerSourceOptions& so, SqsSourceConfig c)
      : options_(so), c_(std::move(c)), sigv4_(AwsSigV4Param(c_.aws)) {
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  }
  ~SqsSource() override {
    Close();
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  Status Start() override {
    if (!easy_) {
      easy_ = curl_easy_init();
      if (!easy_) return Status::Internal("curl_easy_init failed");
    }
    // The queue must exist and answer (its length, for Lag).
    std::string body = Form("GetQueueAttributes");
    body += "&AttributeName.1=ApproximateNumberOfMessages";
    std::string answer;
    Status s = Call(body, "GetQueueAttributes", &answer);
    if (!s.ok()) {
      return s.retryable() ? s : Status::FailedPrecondition(s.message());
    }
    lag_ = ParseLag(answer);
    next_lag_ = Clock::now() + std::chrono::seconds(5);
    return Status::OK();
  }

  Result<std::vector<SourceDelivery>> Poll(int max,
                                           milliseconds timeout) override {
    std::vector<SourceDelivery> out;
    if (!easy_) HERALD_RETURN_IF_ERROR(Start());
    if (DrainWake()) return out;
    auto deadline = Clock::now() + timeout;
    int wait_s = static_cast<int>(std::min<int64_t>(
        20, std::chrono::duration_cast<std::chrono::seconds>(timeout).count()));
    std::string body = Form("ReceiveMessage");
    body += "&MaxNumberOfMessages=" + std::to_string(std::clamp(max, 1, 10));
    body += "&WaitTimeSeconds=" + std::to_string(wait_s);
    body += "&VisibilityTimeout=" + std::to_string(c_.visibility.count());
    body += "&AttributeName.1=All&MessageAttributeName.1=All";
    std::string answer;
    HERALD_RETURN_IF_ERROR(Call(body, "ReceiveMessage", &answer));
    auto doc = ParseXml(answer);
    if (!doc.ok()) {
      return Status::Unavailable("ReceiveMessage: unreadable answer: " +
                                 doc.status().message());
    }
    const XmlElement* result = doc->Child("ReceiveMessageResult");
    auto now = Clock::now();
    if (result) {
      for (const auto& m : result->children) {
        if (m.name != "Message") continue;
        out.push_back(Decode(m));
        uint64_t h = ++next_handle_;
        out.back().handle = h;
        in_hand_[h] = Message{m.ChildText("ReceiptHandle"), now};
      }
    }
    if (out.empty()) {
      // A short poll found nothing: wait for the rest, or a Wake.
      auto left = std::chrono::duration_cast<milliseconds>(deadline -
                                                           Clock::now());
      if (left.count() > 0 && wait_s == 0 && wake_fd_ >= 0) {
        pollfd p{wake_fd_, POLLIN, 0};
        (void)::poll(&p, 1, static_cast<int>(left.count()));
        (void)DrainWake();
      }
    }
    return out;
  }

  Status Ack(std::span<const uint64_t> handles) override {
    return Batch(handles, "DeleteMessageBatch", "DeleteMessageBatchRequestEntry",
                 "", true);
  }

  Status Release(std::span<const uint64_t> handles) override {
    return Visibility(handles, 0, true);
  }

  void KeepAlive(std::span<const uint64_t> handles) override {
    auto now = Clock::now();
    auto old = now - c_.visibility / 2;
    std::vector<uint64_t> touch;
    for (auto& [h, m] : in_hand_) {
      bool running = std::find(handles.begin(), handles.end(), h) !=
                     handles.end();
      if (m.since < old || (running && m.since < now - std::chrono::seconds(
                                                    c_.visibility.count() / 3))) {
        touch.push_back(h);
        m.since = now;
      }
    }
    if (touch.empty()) return;
    Status s = Visibility(touch, c_.visibility.count(), false);
    if (!s.ok() && options_.on_log) options_.on_log(s.ToString());
  }

  std::optional<int64_t> Lag() override {
    if (!easy_ || Clock::now() < next_lag_) return lag_;
    next_lag_ = Clock::now() + std::chrono::seconds(5);
    std::string body = Form("GetQueueAttributes");
    body += "&AttributeName.1=ApproximateNumberOfMessages";
    std::string answer;
    if (Call(body, "GetQueueAttributes", &answer).ok()) lag_ = ParseLag(answer);
    return lag_;
  }

  void Wake() override {
    uint64_t one = 1;
    if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof one);
  }

  void Close() override {
    // Messages still in hand become visible again after their visibility
    // timeout; SQS hands them out then.
    in_hand_.clear();
    if (easy_) curl_easy_cleanup(easy_);
    easy_ = nullptr;
  }

  std::string_view kind() const override { return "sqs"; }

 private:
  bool DrainWake() const {
    uint64_t n;
    return wake_fd_ >= 0 && ::read(wake_fd_, &n, sizeof n) == sizeof n;
  }

  std::string Form(const char* action) const {
    std::string body = "Action=";
    body += action;
    body += "&QueueUrl=";
    AppendFormEncoded(c_.aws.target, &body);
    body += "&Version=2012-11-05";
    return body;
  }

  // POSTs `body` signed; OK with the answer on a 200, else the error as
  // the sender judges it (Unavailable: outages, throttling, credentials).
  Status Call(const std::string& body, const char* what, std::string* answer) {
    auto creds = credentials_.Get();
    if (!creds.ok()) return Status::Unavailable(creds.status().message());
    curl_easy_reset(easy_);
    ConfigureAwsCurl(easy_, c_.aws, sigv4_, "herald-consumer");
    curl_slist* headers = SetAwsCredentials(easy_, *creds);
    answer->clear();
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(easy_, CURLOPT_WRITEDATA, answer);
    char error[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, error);
    CURLcode rc = curl_easy_perform(easy_);
    long status = 0;
    curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, nullptr);
    curl_slist_free_all(headers);
    std::string where =
        std::string(what) + " on " + RedactSecrets(c_.aws.target);
    if (rc != CURLE_OK) {
      return Status::Unavailable(where + ": " +
                                 (*error ? error : curl_easy_strerror(rc)));
    }
    if (status != 200) return AwsErrorStatus(status, *answer, where);
    return Status::OK();
  }

  // Sends `handles`' receipt handles in batches of 10 (`visibility` set:
  // a visibility batch to it). `forget`: they leave the hand.
  Status Batch(std::span<const uint64_t> handles, const char* action,
               const char* entry, const std::string& visibility, bool forget) {
    Status first;
    std::vector<std::string> receipts;
    for (uint64_t h : handles) {
      auto it = in_hand_.find(h);
      if (it == in_hand_.end()) continue;
      receipts.push_back(it->second.receipt);
      if (forget) in_hand_.erase(it);
    }
    for (size_t at = 0; at < receipts.size(); at += 10) {
      std::string body = Form(action);
      size_t n = std::min<size_t>(10, receipts.size() - at);
      for (size_t i = 0; i < n; ++i) {
        std::string p = std::string("&") + entry + "." + std::to_string(i + 1);
        body += p + ".Id=m" + std::to_string(i + 1);
        body += p + ".ReceiptHandle=";
        AppendFormEncoded(receipts[at + i], &body);
        if (!visibility.empty()) body += p + ".VisibilityTimeout=" + visibility;
      }
      std::string answer;
      Status s = Call(body, action, &answer);
      if (s.ok() && answer.find("BatchResultErrorEntry") != std::string::npos) {
        s = Status::Unavailable(std::string(action) +
                                ": some entries failed: " + answer.substr(0, 500));
      }
      if (!s.ok() && first.ok()) first = s;
    }
    return first;
  }

  // ChangeMessageVisibility, one message a request (rare: releases at
  // stop, handlers running long).
  Status Visibility(std::span<const uint64_t> handles, int64_t seconds,
                    bool forget) {
    Status first;
    for (uint64_t h : handles) {
      auto it = in_hand_.find(h);
      if (it == in_hand_.end()) continue;
      std::string body = Form("ChangeMessageVisibility");
      body += "&ReceiptHandle=";
      AppendFormEncoded(it->second.receipt, &body);
      body += "&VisibilityTimeout=" + std::to_string(seconds);
      if (forget) in_hand_.erase(it);
      std::string answer;
      Status s = Call(body, "ChangeMessageVisibility", &answer);
      if (!s.ok() && first.ok()) first = s;
    }
    return first;
  }

  static std::optional<int64_t> ParseLag(const std::string& answer) {
    auto doc = ParseXml(answer);
    if (!doc.ok()) return std::nullopt;
    const XmlElement* r = doc->Child("GetQueueAttributesResult");
    if (!r) return std::nullopt;
    for (const auto& a : r->children) {
      if (a.name == "Attribute" &&
          a.ChildText("Name") == "ApproximateNumberOfMessages") {
        try {
          return std::stoll(a.ChildText("Value"));
        } catch (...) {
          return std::nullopt;
        }
      }
    }
    return std::nullopt;
  }

  SourceDelivery Decode(const XmlElement& m) {
    std::string id = m.ChildText("MessageId");
    std::string body = m.ChildText("Body");
    std::string group;
    int received = 1;
    MessageHeaders headers;
    std::string content_type;
    for (const auto& a : m.children) {
      if (a.name == "Attribute") {
        std::string name = a.ChildText("Name");
        if (name == "MessageGroupId") group = a.ChildText("Value");
        if (name == "ApproximateReceiveCount") {
          try {
            received = std::stoi(a.ChildText("Value"));
          } catch (...) {
          }
        }
      } else if (a.name == "MessageAttribute") {
        std::string name = a.ChildText("Name");
        const XmlElement* v = a.Child("Value");
        std::string value = v ? v->ChildText("StringValue") : "";
        if (StartsWithNoCase(name, "ce-")) {
          // The sender's values are as is: read them as the Kafka binding
          // (ce_ names, no percent-decoding).
          headers.emplace_back("ce_" + name.substr(3), std::move(value));
        } else if (StartsWithNoCase(name, "content-type")) {
          content_type = value;
          headers.emplace_back("content-type", std::move(value));
        }
      }
    }
    SourceDelivery d;
    std::string fallback = group.empty() ? "sqs" : group;
    // The sender's default body is the structured JSON (its content-type
    // attribute then names the payload's type, not the body's).
    size_t first = body.find_first_not_of(" \t\r\n");
    bool json = first != std::string::npos && body[first] == '{' &&
                body.find("\"specversion\"") != std::string::npos;
    if (json) {
      DecodeBrokerMessage({}, "", body, CloudEventBinding::kKafka, id,
                          fallback, &d);
    }
    if (!json || !d.decode_status.ok()) {
      DecodeBrokerMessage(headers, content_type, body,
                          CloudEventBinding::kKafka, id, fallback, &d);
    }
    d.key = !group.empty() ? group : d.event.stream;
    d.redeliveries = std::max(0, received - 1);
    return d;
  }

  const ConsumerSourceOptions options_;
  const SqsSourceConfig c_;
  const std::string sigv4_;
  AwsCredentialsProvider credentials_;
  CURL* easy_ = nullptr;
  int wake_fd_ = -1;
  std::map<uint64_t, Message> in_hand_;
  uint64_t next_handle_ = 0;
  Clock::time_point next_lag_{};
  std::optional<int64_t> lag_;
};

}  // namespace

Status ValidateSqsSource(ConsumerSourceOptions* options) {
  SqsSourceConfig c;
  return ParseSqsSource(*options, &c);
}

Result<std::unique_ptr<ConsumerSource>> MakeSqsSource(
    const ConsumerSourceOptions& options) {
  SqsSourceConfig c;
  HERALD_RETURN_IF_ERROR(ParseSqsSource(options, &c));
  return std::unique_ptr<ConsumerSource>(
      std::make_unique<SqsSource>(options, std::move(c)));
}

}  // namespace herald::detail
