// Sender: where a relay route delivers events (a webhook, a file, stdout, an
// in-process handler, a broker). Plus the CloudEvents 1.0 envelope every
// sender uses.
//
// Thread safety: a Sender is called by one relay thread at a time; it need
// not be thread-safe. Implementations may use threads of their own inside
// Send, and must have joined them when Send returns.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "herald/config.h"
#include "herald/event.h"
#include "herald/status.h"

namespace herald {

// The outcome of sending one event.
struct SendResult {
  // OK: the receiver acknowledged it (delivered). A retryable() status
  // (Unavailable, ResourceExhausted...): try again later. Anything else
  // (Permanent, InvalidArgument...): the receiver rejected it for good.
  Status status;
  // False when the event was not sent at all in this call: an earlier event
  // of its stream failed, or the deadline came first. Not an attempt.
  bool attempted = true;
  // The receiver's hint of when to try again (Retry-After); 0 = none.
  std::chrono::milliseconds retry_after{0};

  // The entry of an event not sent in this call.
  static SendResult NotSent() {
    SendResult r;
    r.status = Status::Unavailable("not sent");
    r.attempted = false;
    return r;
  }
};

class Sender {
 public:
  virtual ~Sender() = default;
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  // Delivers `events` (in position order) and fills results[i] for each
  // events[i]; results.size() == events.size(). Every entry starts out as
  // NotSent() (attempted = false); the sender overwrites the entry of each
  // event it sends.
  //
  // Order: events of one stream are acknowledged in the order given: an
  // event is sent only after the previous event of its stream in this call
  // was acknowledged (or the transport itself keeps per-key order), and when
  // one fails the later events of its stream are not sent (attempted =
  // false). Events of different streams may be in flight together, at most
  // the route's max_in_flight at once.
  //
  // Must return by `deadline` (the relay's lease time): what is still in
  // flight then is abandoned and reported Unavailable.
  virtual void Send(std::span<const Event> events,
                    std::span<SendResult> results,
                    std::chrono::steady_clock::time_point deadline) = 0;

  // "http", "file", "stdout", "callback", ... for status pages.
  virtual std::string_view kind() const = 0;

 protected:
  Sender() = default;
};

// Makes the sender named by route.sender: "http://" / "https://" (needs
// HERALD_WITH_CURL), "file:PATH", "stdout:", or a registered scheme.
// InvalidArgument for an unknown scheme or a malformed URL; Unavailable
// when a file cannot be opened.
Result<std::unique_ptr<Sender>> MakeSender(const RouteConfig& route);

// An in-process handler as the target. `handler` is called on the relay's
// thread, once per event, in position order; its Status is the outcome (OK
// = delivered; see SendResult). An exception it throws counts as a
// retryable Internal failure.
using EventHandler = std::function<Status(const Event&)>;
std::unique_ptr<Sender> MakeCallbackSender(EventHandler handler);

// Adds a sender scheme ("kafka") for MakeSender and config validation.
// Call before loading configs; safe from any thread.
using SenderFactory =
    std::function<Result<std::unique_ptr<Sender>>(const RouteConfig&)>;
void RegisterSenderScheme(const std::string& scheme, SenderFactory factory);

// Checks a sender URL's shape without opening anything. InvalidArgument
// says what is wrong ("unknown sender scheme 'ftp'", "no host in ...").
Status ValidateSenderUrl(std::string_view url);

// ---- CloudEvents 1.0 envelope ---------------------------------------------
// Defined by the CloudEvents codec, herald/cloudevents.h, which has every
// binding (HTTP, Kafka, AMQP, NATS, structured JSON) and their decoders;
// declared here too for the senders that always found them here.

// The structured-mode JSON of an event: {"specversion":"1.0","id",
// "source","type","subject" (= stream),"time","datacontenttype",
// "position","streamversion", one member per metadata key,
// "data" | "data_base64"}. A JSON payload is embedded as `data`, other
// payloads as `data_base64`. No DOM is built.
void AppendCloudEventJson(const Event& event, std::string_view source,
                          std::string* out);

// The binary-mode HTTP headers of an event, in order: ce-specversion,
// ce-id, ce-source, ce-type, ce-subject, ce-time, ce-position,
// ce-streamversion, ce-NAME per metadata key, Content-Type. Values are
// percent-encoded as the CloudEvents HTTP binding asks (space, '"', '%',
// non-ASCII bytes).
std::vector<std::pair<std::string, std::string>> CloudEventHeaders(
    const Event& event, std::string_view source);

}  // namespace herald
