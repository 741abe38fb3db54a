// Sender: where a relay route delivers events (a webhook, a file, stdout, an
// in-process handler, a broker); the scheme registry that makes senders
// from URLs and validates their options; plus the CloudEvents 1.0 envelope
// every sender uses.
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

#include "herald/event.h"
#include "herald/route.h"
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
  // True when the event was sent but its answer had not come when the call
  // returned (only SendKeepingInFlight leaves events in flight; status is
  // then Unavailable and attempted true). Neither delivered nor failed: its
  // outcome is reported by the next call that passes it again.
  bool in_flight = false;

  // The entry of an event not sent in this call.
  static SendResult NotSent() {
    SendResult r;
    r.status = Status::Unavailable("not sent");
    r.attempted = false;
    return r;
  }
  // The entry of an event left in flight.
  static SendResult InFlight() {
    SendResult r;
    r.status = Status::Unavailable("in flight");
    r.in_flight = true;
    return r;
  }
};

// The sender contract. Every sender (built-in or registered) follows these
// rules, and tests/contract/sender_contract_test.cc checks them for each:
//
//  1. Every event gets a result. results[i] is set for every events[i]:
//     OK (delivered), a failure (retryable or not), or NotSent
//     (attempted = false); from SendKeepingInFlight also InFlight (sent,
//     not answered yet; see there).
//  2. OK means acknowledged. An event is reported delivered only once its
//     receiver acknowledged it: a complete 2xx HTTP response (below), a
//     file's bytes written in full and fsynced, a broker's confirm. Anything
//     less (a timeout, a closed connection, an incomplete answer) is a
//     retryable failure, never OK.
//  3. Per-stream order. An event is sent only after the previous event of
//     its stream in this call was acknowledged (or the transport itself
//     keeps per-key order). After a failure, the later events of that
//     stream in this call are not sent at all (attempted = false): nothing
//     of a stream is sent or reported delivered past a failure. Other
//     streams go on.
//  4. Bounded concurrency. At most the route's max_in_flight events are in
//     flight at once.
//  5. The deadline is honoured. Send returns by `deadline` (plus the time
//     to tear down one request); what is still in flight then is abandoned
//     and reported Unavailable; what was not started is NotSent.
//  6. A failed write leaves nothing torn. A sender appending to a file
//     leaves it holding only complete records after a failed write (it
//     truncates back to the size before the write), so the retry appends
//     whole records again.
//
// HTTP acknowledgement: a response counts only when its status line and
// header section ended (the blank line) and its body, if any, arrived in
// full (all Content-Length bytes, or the terminating chunk of a chunked
// body); then 2xx = OK, 408/429/5xx = Unavailable (with Retry-After),
// other statuses = Permanent. A response cut anywhere before that is
// Unavailable, whatever status code it began with.
class Sender {
 public:
  virtual ~Sender() = default;
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  // Delivers `events` (in position order) and fills results[i] for each
  // events[i]; results.size() == events.size(). Every entry starts out as
  // NotSent() (attempted = false); the sender overwrites the entry of each
  // event it sends. Follows the sender contract above: events of one stream
  // are acknowledged in the order given, a failure stops the rest of its
  // stream for this call, at most the route's max_in_flight are in flight,
  // and Send returns by `deadline` (the relay's lease time).
  virtual void Send(std::span<const Event> events,
                    std::span<SendResult> results,
                    std::chrono::steady_clock::time_point deadline) = 0;

  // Pipelined sending: like Send, but the call may return before the last
  // events it sent are answered, leaving them in flight
  // (results[i].in_flight), so that the caller can hand over the next
  // events while they are on their way and the sender's window stays full
  // across calls. The relay calls it while it has a backlog to read. Rules,
  // besides those of Send:
  //  - It returns only once every event of the call that may be sent was
  //    sent: the events left in flight are each the last of their stream in
  //    the call, and everything before them in their stream is OK.
  //  - REQUIRES: an event left in flight is passed again by the next call
  //    (Send or SendKeepingInFlight), before anything later of its stream.
  //    The sender then waits for its answer rather than sending it again,
  //    reports it like any event of that call, and after a failure sends
  //    nothing later of its stream, as Send does.
  //  - An event left in flight that the next call does not pass is
  //    abandoned: its answer is ignored, as at a deadline.
  // The default sends as Send does, leaving nothing in flight; a sender
  // that pipelines overrides both.
  virtual void SendKeepingInFlight(
      std::span<const Event> events, std::span<SendResult> results,
      std::chrono::steady_clock::time_point deadline) {
    Send(events, results, deadline);
  }

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

// The `herald:` sender: appends each event into `log` (herald's own event
// log, not owned), one transaction a batch, idempotent by event id. A
// route whose sender is "herald:" gets one from the relay that runs it,
// on the store that keeps the relay's state (Relay::Start); only routes
// reading a [[source]] may use it (a route reading that log would feed
// itself). Permanent append errors fail only the event concerned.
class EventLog;
std::unique_ptr<Sender> MakeLogSender(EventLog* log);

// ---- Scheme registry -------------------------------------------------------
//
// Every sender URL scheme ("http", "https", "file", "stdout", "kafka"...) is
// one registry entry, built-in or not: how its URL and its route options
// are validated, and how a sender is made. A consumer's sources have a
// registry of their own, by the same rules (herald/consumer_source.h).
// Config loading, Relay::AddRoute and MakeSender all go through it.

struct SenderScheme {
  // Checks the URL's shape without opening anything ("no host in ...").
  // Null: any URL of the scheme is fine.
  std::function<Status(std::string_view url)> validate_url;
  // Checks the route's scheme keys (route->options: every key core does not
  // know) and may store what it parsed in `route` (the built-in schemes fill
  // route->sender_options). Errors come from the RouteOptions readers /
  // Error / UnknownKey, so they name file, line, route and key. Null: the
  // scheme takes no options; any such key is an unknown-key error.
  std::function<Status(RouteConfig* route)> validate_options;
  // Makes a sender for a route that passed validation.
  std::function<Result<std::unique_ptr<Sender>>(const RouteConfig&)>
      make_sender;
};

// Adds or replaces `scheme` (lower case, without ':'). Call before loading
// configs; safe from any thread.
void RegisterScheme(const std::string& scheme, SenderScheme entry);

// The entry of `scheme` (built-ins included), or nullptr.
std::shared_ptr<const SenderScheme> FindScheme(std::string_view scheme);

// The scheme of a URL, lower-cased ("http" of "HTTP://x"); "" if none.
std::string SchemeOfUrl(std::string_view url);

// Adds a sender scheme ("kafka") for MakeSender and config validation,
// with the options of the built-in senders (SenderOptions keys, filled into
// route.sender_options). Kept for existing callers; a scheme with options
// of its own registers a SenderScheme.
using SenderFactory =
    std::function<Result<std::unique_ptr<Sender>>(const RouteConfig&)>;
void RegisterSenderScheme(const std::string& scheme, SenderFactory factory);

// Checks a sender URL's shape without opening anything, by its scheme's
// validate_url. InvalidArgument says what is wrong ("unknown sender scheme
// 'ftp'", "no host in ...").
Status ValidateSenderUrl(std::string_view url);

// Validates route->options with the scheme of route->sender (see
// SenderScheme::validate_options). InvalidArgument for an unknown scheme.
Status ValidateSenderOptions(RouteConfig* route);

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
