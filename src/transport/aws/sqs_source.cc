// The SQS consumer source on libcurl, signed and credentialed exactly as
// the SQS sender (aws_request.h, aws_credentials.h).
//
//   Start        GetQueueAttributes: the queue exists and the credentials
//                are accepted. A queue that does not exist, credentials
//                that are missing or refused are FailedPrecondition (the
//                consumer stops with the message); an outage Unavailable.
//   Poll         ReceiveMessage: up to min(max, 10) messages, with every
//                system attribute and message attribute, VisibilityTimeout
//                = visibility_timeout. With nothing in hand it long-polls
//                (WaitTimeSeconds = wait_time, default 20 s: AWS answers as
//                soon as a message is visible, and an idle consumer makes
//                3 requests a minute); Wake cuts that short (messages AWS
//                handed to the request cut become visible again after
//                their visibility timeout). With deliveries in hand it
//                short-polls (WaitTimeSeconds 0), then waits out the rest
//                of `timeout` (Wake ends it), so acknowledgements and
//                visibility extensions go out promptly.
//   decoding     what the SQS sender writes: the CloudEvents structured
//                JSON body (its default), or the payload with ce-* message
//                attributes (raw = true); plain CloudEvents JSON of any
//                producer too. A body is read as structured when it is a
//                CloudEvent whose id is the ce-id attribute (or there is
//                none), so a raw payload that happens to be a CloudEvent
//                is not mistaken for the envelope. ApproximateReceiveCount
//                - 1 is the delivery's redeliveries.
//   key          FIFO queues: the MessageGroupId (SQS keeps each group in
//                order and hands out no message of a group while another
//                is in flight; herald's SQS sender sets it to the stream).
//                Standard queues: the event's stream; SQS keeps no order
//                there (a message can come before an older one and more
//                than once), so herald handles each stream's messages one
//                at a time in the order received, not in append order.
//   Ack          DeleteMessageBatch, 10 receipt handles a request. A
//                receipt handle whose visibility ended and whose message
//                was received again deletes nothing (AWS's rule): the new
//                receiver's inbox absorbs the repeat.
//   Release      ChangeMessageVisibilityBatch to 0: visible again now.
//   heartbeat    every message in hand (running, retrying or queued
//                behind its key) whose visibility has less than half of
//                visibility_timeout left is extended to visibility_timeout
//                from now (ChangeMessageVisibilityBatch), from KeepAlive
//                and from every Poll; so SQS does not hand a message that
//                is being handled to another consumer, however long its
//                handler runs (up to SQS's 12 hours from the first
//                receive).
//   Lag          GetQueueAttributes ApproximateNumberOfMessages (visible
//                messages), at most every 5 s while messages are in hand,
//                else before each long poll; a length the consumer has not
//                read yet (via Lag) shortens the next long poll to 1 s.
//
// Thread safety: one thread (the consumer's source thread); Wake from any
// (curl_multi_wakeup on a multi handle that lives as long as the source,
// and an atomic flag).
#include "transport/aws/sqs_source.h"

#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
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
using std::chrono::seconds;

// Ten messages of 1 MiB and their attributes fit.
constexpr size_t kMaxAnswer = 16 << 20;
constexpr auto kLagEvery = seconds(5);

struct SqsSourceConfig {
  AwsOptions aws;
  seconds visibility{30};
  seconds wait{20};
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
  route.line = ConsumerTableLine(so);
  for (const auto& f : o.fields) {
    const std::string& k = f.key;
    if (k == "visibility_timeout") {
      milliseconds v;
      HERALD_RETURN_IF_ERROR(o.GetDuration(k, f.value, seconds(1), &v));
      if (v > std::chrono::hours(12)) {
        return o.Error(k, f.value.line, "must be at most 12h (SQS's limit)");
      }
      out->visibility = std::chrono::duration_cast<seconds>(v);
    } else if (k == "wait_time") {
      milliseconds v;
      HERALD_RETURN_IF_ERROR(o.GetDuration(k, f.value, milliseconds(0), &v));
      if (v > seconds(20)) {
        return o.Error(k, f.value.line,
                       "must be at most 20s (SQS's longest long poll)");
      }
      out->wait = std::chrono::duration_cast<seconds>(v);
    } else if (k == "region" || k == "endpoint" || k == "timeout" ||
               k == "connect_timeout" || k == "tls_verify" || k == "ca_file") {
      route.options.fields.push_back(f);
    } else {
      return o.UnknownKey(f, kSqsSourceKeys);
    }
  }
  if (SchemeOfUrl(so.url) != "sqs") {
    return Status::InvalidArgument("'" + RedactSecrets(so.url) +
                                   "' is not an sqs:QUEUE_URL source");
  }
  return ParseAwsOptions(route, &out->aws);
}

size_t OnBody(char* p, size_t size, size_t n, void* user) {
  auto* s = static_cast<std::string*>(user);
  if (s->size() + size * n > kMaxAnswer) return 0;
  s->append(p, size * n);
  return size * n;
}

// Error codes that say the queue or the credentials are wrong, not that
// AWS is unreachable: at Start they stop the consumer.
bool IsConfigError(std::string_view message) {
  for (std::string_view code :
       {"NonExistentQueue", "QueueDoesNotExist", "InvalidClientTokenId",
        "SignatureDoesNotMatch", "UnrecognizedClientException",
        "IncompleteSignature", "MissingAuthenticationToken", "AccessDenied",
        "InvalidAccessKeyId", "ExpiredToken", "InvalidAddress"}) {
    if (message.find(code) != std::string_view::npos) return true;
  }
  return false;
}

struct InHand {
  std::string receipt;
  Clock::time_point visible_at;  // when SQS would hand it out again
};

class SqsSource final : public ConsumerSource {
 public:
  SqsSource(const ConsumerSourceOptions& so, SqsSourceConfig c)
      : options_(so), c_(std::move(c)), sigv4_(AwsSigV4Param(c_.aws)) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    // Lives as long as the source, so Wake may use it at any time.
    multi_ = curl_multi_init();
  }
  ~SqsSource() override {
    Close();
    if (multi_) curl_multi_cleanup(multi_);
  }

  Status Start() override {
    HERALD_RETURN_IF_ERROR(Open());
    auto creds = credentials_.Get();
    if (!creds.ok()) {
      return Status::FailedPrecondition(
          "SQS source of consumer '" + options_.consumer +
          "': no AWS credentials: " + creds.status().message());
    }
    Status s = RefreshLag();
    if (!s.ok() && (!s.retryable() || IsConfigError(s.message()))) {
      return Status::FailedPrecondition(s.message());
    }
    return s;
  }

  Result<std::vector<SourceDelivery>> Poll(int max,
                                           milliseconds timeout) override {
    std::vector<SourceDelivery> out;
    HERALD_RETURN_IF_ERROR(Open());
    if (woken_.exchange(false)) return out;
    auto deadline = Clock::now() + timeout;
    Extend();
    bool idle = in_hand_.empty();
    int wait_s = 0;
    if (idle) {
      if (Clock::now() >= lag_at_ + seconds(1)) (void)RefreshLag();
      // The consumer reads Lag() between polls: a queue length it has not
      // read yet shortens this wait to a second, so its status is not a
      // long poll behind.
      wait_s = static_cast<int>(lag_ == reported_
                                    ? c_.wait.count()
                                    : std::min<int64_t>(1, c_.wait.count()));
    }
    std::string body = Form("ReceiveMessage");
    body += "&MaxNumberOfMessages=" + std::to_string(std::clamp(max, 1, 10));
    body += "&WaitTimeSeconds=" + std::to_string(wait_s);
    body += "&VisibilityTimeout=" + std::to_string(c_.visibility.count());
    body += "&AttributeName.1=All&MessageAttributeName.1=All";
    std::string answer;
    auto sent = Clock::now();
    bool cut = false;
    HERALD_RETURN_IF_ERROR(
        Call(body, "ReceiveMessage", &answer, seconds(wait_s), &cut));
    if (cut) return out;
    auto doc = ParseXml(answer);
    if (!doc.ok()) {
      return Status::Unavailable("ReceiveMessage: unreadable answer: " +
                                 doc.status().message());
    }
    if (const XmlElement* result = doc->Child("ReceiveMessageResult")) {
      for (const auto& m : result->children) {
        if (m.name != "Message") continue;
        out.push_back(Decode(m));
        uint64_t h = ++next_handle_;
        out.back().handle = h;
        // Counted from when the request went out: the safe side.
        in_hand_[h] =
            InHand{m.ChildText("ReceiptHandle"), sent + c_.visibility};
      }
    }
    if (out.empty() && !idle) Wait(deadline);
    return out;
  }

  Status Ack(std::span<const uint64_t> handles) override {
    return Batch(handles, "DeleteMessageBatch", -1);
  }

  Status Release(std::span<const uint64_t> handles) override {
    return Batch(handles, "ChangeMessageVisibilityBatch", 0);
  }

  void KeepAlive(std::span<const uint64_t> handles) override {
    (void)handles;  // every message in hand is kept, running or not
    Extend();
  }

  std::optional<int64_t> Lag() override {
    if (easy_ && (in_hand_.empty() || Clock::now() >= lag_at_ + kLagEvery)) {
      (void)RefreshLag();
    }
    reported_ = lag_;
    return lag_;
  }

  void Wake() override {
    woken_.store(true);
    if (multi_) curl_multi_wakeup(multi_);
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
  Status Open() {
    if (!multi_) return Status::Internal("curl_multi_init failed");
    if (!easy_) {
      easy_ = curl_easy_init();
      if (!easy_) return Status::Internal("curl_easy_init failed");
    }
    return Status::OK();
  }

  // Waits until `deadline` or a Wake.
  void Wait(Clock::time_point deadline) {
    while (!woken_.load()) {
      auto left =
          std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return;
      int n = 0;
      curl_multi_poll(multi_, nullptr, 0, static_cast<int>(left.count()), &n);
    }
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
  // `cut` (for a long poll, else null): a Wake may end the request; then
  // *cut is set and OK returned.
  Status Call(const std::string& body, const char* what, std::string* answer,
              seconds long_poll = seconds(0), bool* cut = nullptr) {
    auto creds = credentials_.Get();
    if (!creds.ok()) return Status::Unavailable(creds.status().message());
    curl_easy_reset(easy_);
    AwsOptions o = c_.aws;
    // A long poll holds the request up to wait_time: the timeout covers it.
    o.timeout = std::max(o.timeout, milliseconds(long_poll) + seconds(10));
    ConfigureAwsCurl(easy_, o, sigv4_, "herald-consumer");
    curl_slist* headers = SetAwsCredentials(easy_, *creds);
    answer->clear();
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(easy_, CURLOPT_WRITEDATA, answer);
    char error[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, error);
    CURLcode rc = Perform(cut);
    long status = 0;
    curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, nullptr);
    curl_slist_free_all(headers);
    if (cut && *cut) return Status::OK();
    std::string where =
        std::string(what) + " on " + RedactSecrets(c_.aws.target);
    if (rc != CURLE_OK) {
      return Status::Unavailable(where + ": " +
                                 (*error ? error : curl_easy_strerror(rc)));
    }
    if (status != 200) return AwsErrorStatus(status, *answer, where);
    return Status::OK();
  }

  // Runs easy_ on multi_ to its end; with `cut`, a Wake ends it early.
  CURLcode Perform(bool* cut) {
    curl_multi_add_handle(multi_, easy_);
    // Until curl reports the transfer done, it did not succeed.
    CURLcode result = CURLE_RECV_ERROR;
    for (;;) {
      int running = 0;
      CURLMcode mc = curl_multi_perform(multi_, &running);
      if (mc != CURLM_OK) {
        result = CURLE_RECV_ERROR;
        break;
      }
      int left = 0;
      bool done = false;
      while (CURLMsg* m = curl_multi_info_read(multi_, &left)) {
        if (m->msg == CURLMSG_DONE && m->easy_handle == easy_) {
          result = m->data.result;
          done = true;
        }
      }
      if (done || running == 0) break;
      if (cut && woken_.load()) {
        *cut = true;
        break;
      }
      int n = 0;
      curl_multi_poll(multi_, nullptr, 0, 1000, &n);
    }
    curl_multi_remove_handle(multi_, easy_);
    return result;
  }

  // Sends `handles`' receipt handles in batches of 10: DeleteMessageBatch
  // (visibility < 0; they leave the hand), else ChangeMessageVisibilityBatch
  // to `visibility` seconds (0: they leave the hand).
  Status Batch(std::span<const uint64_t> handles, const char* action,
               int64_t visibility) {
    std::vector<std::string> receipts;
    auto now = Clock::now();
    for (uint64_t h : handles) {
      auto it = in_hand_.find(h);
      if (it == in_hand_.end()) continue;
      receipts.push_back(it->second.receipt);
      if (visibility <= 0) {
        in_hand_.erase(it);
      } else {
        it->second.visible_at = now + seconds(visibility);
      }
    }
    return SendBatches(receipts, action, visibility);
  }

  Status SendBatches(const std::vector<std::string>& receipts,
                     const char* action, int64_t visibility) {
    Status first;
    std::string entry = std::string(action) + "RequestEntry.";
    for (size_t at = 0; at < receipts.size(); at += 10) {
      std::string body = Form(action);
      size_t n = std::min<size_t>(10, receipts.size() - at);
      for (size_t i = 0; i < n; ++i) {
        std::string p = "&" + entry + std::to_string(i + 1);
        body += p + ".Id=m" + std::to_string(i + 1);
        body += p + ".ReceiptHandle=";
        AppendFormEncoded(receipts[at + i], &body);
        if (visibility >= 0) {
          body += p + ".VisibilityTimeout=" + std::to_string(visibility);
        }
      }
      std::string answer;
      Status s = Call(body, action, &answer);
      if (s.ok()) s = EntryErrors(action, answer);
      if (!s.ok() && first.ok()) first = s;
    }
    return first;
  }

  // The failed entries of a batch answer, as one status.
  static Status EntryErrors(const char* action, const std::string& answer) {
    auto doc = ParseXml(answer);
    if (!doc.ok()) {
      return Status::Unavailable(std::string(action) + ": unreadable answer: " +
                                 doc.status().message());
    }
    const XmlElement* r = doc->Child(std::string(action) + "Result");
    if (!r) return Status::OK();
    std::string failed;
    for (const auto& e : r->children) {
      if (e.name != "BatchResultErrorEntry") continue;
      if (!failed.empty()) failed += "; ";
      failed += e.ChildText("Code") + ": " + e.ChildText("Message");
    }
    if (failed.empty()) return Status::OK();
    return Status::Unavailable(std::string(action) +
                               ": entries refused: " + failed.substr(0, 500));
  }

  // The heartbeat: extends every message in hand whose visibility has less
  // than half of visibility_timeout left.
  void Extend() {
    if (in_hand_.empty()) return;
    auto now = Clock::now();
    auto soon = now + c_.visibility / 2;
    std::vector<std::string> receipts;
    for (auto& [h, m] : in_hand_) {
      if (m.visible_at < soon) {
        receipts.push_back(m.receipt);
        m.visible_at = now + c_.visibility;
      }
    }
    if (receipts.empty()) return;
    Status s = SendBatches(receipts, "ChangeMessageVisibilityBatch",
                           c_.visibility.count());
    if (!s.ok() && options_.on_log) {
      options_.on_log("extending the visibility of " +
                      std::to_string(receipts.size()) +
                      " messages: " + s.ToString());
    }
  }

  Status RefreshLag() {
    lag_at_ = Clock::now();
    std::string body = Form("GetQueueAttributes");
    body += "&AttributeName.1=ApproximateNumberOfMessages";
    std::string answer;
    HERALD_RETURN_IF_ERROR(Call(body, "GetQueueAttributes", &answer));
    lag_ = ParseLag(answer);
    return Status::OK();
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
    std::string group, ce_id;
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
          if (name.size() == 5 && StartsWithNoCase(name, "ce-id")) {
            ce_id = value;
          }
          // The sender's values are as is: read them as the Kafka binding
          // (ce_ names, no percent-decoding).
          headers.emplace_back("ce_" + name.substr(3), std::move(value));
        } else if (name.size() == 12 &&
                   StartsWithNoCase(name, "content-type")) {
          content_type = value;
          headers.emplace_back("content-type", std::move(value));
        }
      }
    }
    SourceDelivery d;
    std::string fallback = group.empty() ? "sqs" : group;
    // The sender's default body is the structured JSON; its content-type
    // attribute then names the payload's type, not the body's.
    bool structured = false;
    size_t first = body.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && body[first] == '{' &&
        body.find("\"specversion\"") != std::string::npos) {
      auto decoded = DecodeCloudEventJson(body);
      if (decoded.ok() && (ce_id.empty() || decoded->event.id == ce_id)) {
        structured = true;
        d.event = std::move(decoded->event);
        if (d.event.stream.empty()) d.event.stream = fallback;
      }
    }
    if (!structured) {
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
  CURLM* multi_ = nullptr;  // set once in the constructor (Wake uses it)
  std::atomic<bool> woken_{false};
  std::map<uint64_t, InHand> in_hand_;
  uint64_t next_handle_ = 0;
  Clock::time_point lag_at_{};  // when lag_ was read
  std::optional<int64_t> lag_;
  std::optional<int64_t> reported_;  // what Lag() last answered
};

}  // namespace

SourceScheme SqsSourceScheme() {
  auto validate_url = [](std::string_view url) -> Status {
    if (SchemeOfUrl(url) != "sqs") {
      return Status::InvalidArgument("a consumer source takes sqs:QUEUE_URL");
    }
    return ValidateAwsUrl(url);
  };
  return BrokerSourceScheme<SqsSource>(validate_url, ParseSqsSource);
}

}  // namespace herald::detail
