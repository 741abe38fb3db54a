// ConsumerSource: where a consumer (herald/consumer.h) takes its events from
// (a broker queue, topic or stream, or a herald server over HTTP), and the
// registry that makes sources from URLs, by scheme, as senders are made
// (herald/sender.h).
//
// The contract between a consumer and its source:
//
//  1. Delivery. Poll() hands out deliveries: the event decoded back into a
//     herald Event (id, stream, type, content_type, payload, metadata,
//     occurred_at; position when known) from the CloudEvents binding the
//     matching sender writes, or from plain CloudEvents of any producer; an
//     ordering key; and an opaque handle. A delivery is "in hand" from Poll
//     until it is acknowledged (Ack) or given back (Release). At most
//     ConsumerSourceOptions::max_in_hand are in hand at once (the consumer
//     asks Poll for no more than the room left; a broker's prefetch is set
//     from it).
//  2. Order. Deliveries with the same key are handled one at a time, in the
//     order Poll returned them; different keys may be handled in parallel.
//     The key is what the source keeps ordered (partition, queue, subject,
//     FIFO group) or the event's stream when the source's acknowledgement
//     copes with acks out of order across streams (Kafka commits the
//     contiguous acknowledged prefix of each partition). Never empty.
//  3. Acknowledgement after handling. The consumer calls Ack(handle) only
//     once the delivery is done for good: its handler succeeded and the
//     inbox transaction (the inbox row plus the handler's own writes)
//     committed; or it was a duplicate (its id already in the inbox: the
//     handler is not called); or it was parked (below); or its type is not
//     selected by the consumer's `types`. Only then does a broker forget
//     it (basic.ack, offset commit, JetStream ack, SQS DeleteMessage); the
//     herald server source moves its checkpoint. A process killed between
//     the commit and the ack gets the delivery again: the inbox absorbs it.
//  4. Failure. A failing handler is retried in the consumer, in process,
//     with the route-style backoff, while its delivery stays in hand (no
//     negative acknowledgement: the broker must not hand it to someone else
//     meanwhile, so a source with a visibility timeout extends it, see
//     KeepAlive). After max_attempts (on_failure = "park"), or at once for
//     a permanent (non-retryable) failure, the consumer PARKS the event in
//     its own store (RelayState::Park, route "consumer:NAME", state
//     "parked"), parks the later deliveries of that event's stream as
//     "held", and ACKS them all to the source: parked events live in the
//     consumer's database, not in the broker, and `herald parked retry
//     --consumer NAME` hands them to the handler again from there. With
//     on_failure = "block" the delivery stays in hand and is retried until
//     it succeeds or the consumer stops. A delivery the source could not
//     decode (decode_status not OK) is parked at once, its error kept.
//  5. Stop. On SIGTERM (Consumer::Stop) the consumer stops polling, lets
//     the handlers finish what is in hand, acknowledges what committed,
//     Releases what was not handled (a block-policy event in backoff and
//     the later deliveries of its key) and calls Close(). Release gives a
//     delivery back for redelivery now (RabbitMQ basic.nack requeue, SQS
//     visibility 0); a source without such a call simply does not move its
//     position past it (Kafka, the herald server). Nothing in hand is lost:
//     whatever was neither acked nor released is redelivered by the broker
//     after the connection closes.
//  6. Lag. Lag() answers how many messages wait for this consumer where the
//     source knows it (the server's head minus the checkpoint; the Kafka
//     high watermark minus the committed offset; a queue's message count;
//     a JetStream consumer's pending count; SQS's approximate count), for
//     `herald consume status`; nullopt elsewhere.
//
// Per-source keys. A [[consumer]] table's keys that core does not know
// (`queue` for RabbitMQ, `topic` + `group` for Kafka, `stream` + `durable`
// for NATS JetStream, `token` for a herald server...) are the source
// scheme's: handed over as a RouteOptions (route = the consumer's name,
// table = "consumer"), validated by the scheme's validate_options with the
// RouteOptions readers, so errors name file, line, consumer and key:
//   "herald.toml:12: consumer 'refunds'.queue: must be a string, not ..."
// and read again by make_source. The keys every consumer has are
// kConsumerKeys (herald/consumer.h parses them).
//
// Thread safety: a ConsumerSource is called from one thread at a time (the
// consumer's source thread calls Start, Poll, Ack, Release, KeepAlive, Lag
// and Close); only Wake may be called from any thread, at any time. A
// source may run threads of its own and must have joined them in Close
// (and in its destructor).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "herald/event.h"
#include "herald/route.h"
#include "herald/status.h"

namespace herald {

class RelayState;

// One message a source delivered.
struct SourceDelivery {
  // The decoded event. event.id is the dedupe key and is never empty (a
  // message without a CloudEvents id gets the broker's message id).
  // event.position: the herald position when the message carried one (the
  // server source, the `position` extension), else 0.
  Event event;
  // The ordering key (rule 2): never empty.
  std::string key;
  // Opaque to the consumer; unique among the deliveries in hand. Typically
  // an index into the source's table of in-hand messages.
  uint64_t handle = 0;
  // Deliveries of this message before this one, where the broker says
  // (RabbitMQ `redelivered`, SQS ApproximateReceiveCount - 1, JetStream
  // NumDelivered - 1); 0 otherwise. For status and logs only: the inbox,
  // not this number, decides what is a duplicate.
  int redeliveries = 0;
  // Not OK when the message could not be decoded into an event (rule 4):
  // the consumer parks it at once with this error.
  Status decode_status;
};

// What a consumer hands its source's scheme.
struct ConsumerSourceOptions {
  // The [[consumer]] name (letters, digits, '.', '_', '-'). A source that
  // needs a name of its own at the broker (a Kafka group, a JetStream
  // durable) may default it to this.
  std::string consumer;
  // The `source` URL: "http(s)://HOST:PORT" (a herald server), "amqp://",
  // "kafka://", "nats://", "sqs:QUEUE_URL", or a registered scheme.
  std::string url;
  // The per-source keys (see above), with their lines.
  RouteOptions options;
  // The consumer's `types` globs (empty = every type). A source may pass
  // them to the broker or server as a filter; the consumer filters anyway
  // (a delivery of another type is acked unhandled).
  std::vector<std::string> types;
  // Deliveries in hand at most (rule 1). Default 256; >= 1.
  int max_in_hand = 256;
  // The consumer's store when it has one (its inbox database), else null;
  // outlives the source. A source that keeps its position itself (the
  // herald server source) keeps it there as the checkpoint named
  // ConsumerCheckpointName(consumer), and without a store in memory only.
  RelayState* state = nullptr;
  // The line of the [[consumer]] header (0 when built in code), for the
  // error of a required key that is missing: RouteOptions::Error(key, line,
  // "is required").
  int line = 0;
  // One line per notable event (reconnects, retries), for logs. Never
  // holds a secret. May be empty.
  std::function<void(const std::string&)> on_log;
};

// The checkpoint (RelayState) and parked-route name of consumer `name`:
// "consumer:NAME". `herald parked ... --consumer NAME` and `herald consume
// reset` use it too.
std::string ConsumerCheckpointName(std::string_view name);

class ConsumerSource {
 public:
  virtual ~ConsumerSource() = default;
  ConsumerSource(const ConsumerSource&) = delete;
  ConsumerSource& operator=(const ConsumerSource&) = delete;

  // Connects and subscribes (declares nothing the sender side owns).
  // Called once before Poll. Unavailable: the consumer retries it with
  // backoff; any other error (no such queue, refused credentials) stops
  // the consumer with that error.
  virtual Status Start() = 0;

  // Waits up to `timeout` for deliveries and returns between 0 and `max`
  // (>= 1) of them, in the source's order. Returns early when Wake() is
  // called. Unavailable when the connection is lost: the consumer backs
  // off and calls Poll again, and the source reconnects by itself;
  // deliveries in hand from the lost connection may then fail to Ack (the
  // broker redelivers them, the inbox absorbs the repeat). Other errors
  // stop the consumer. The consumer passes a short timeout (20 ms) while
  // deliveries are in hand, so their acknowledgements go out promptly, and
  // up to 500 ms when nothing is; it calls Wake only to stop.
  virtual Result<std::vector<SourceDelivery>> Poll(
      int max, std::chrono::milliseconds timeout) = 0;

  // Acknowledges deliveries for good (rule 3), in the order they finished
  // (which across keys need not be the order Poll returned them). A
  // failure is logged by the consumer and otherwise ignored: the broker
  // then redelivers and the inbox absorbs it.
  virtual Status Ack(std::span<const uint64_t> handles) = 0;

  // Gives deliveries back unhandled (rule 5). The consumer never uses them
  // again.
  virtual Status Release(std::span<const uint64_t> handles) = 0;

  // Called about once a second with the deliveries in hand whose handler
  // is still running or retrying: a source whose broker forgets
  // unacknowledged messages after a while (SQS visibility) extends them.
  virtual void KeepAlive(std::span<const uint64_t> handles) { (void)handles; }

  // Messages waiting for this consumer, where the source knows (rule 6).
  virtual std::optional<int64_t> Lag() { return std::nullopt; }

  // Makes a Poll in progress (or the next one) return soon. Any thread.
  virtual void Wake() {}

  // Closes the connection and joins the source's threads. Idempotent.
  virtual void Close() {}

  // "http", "kafka", "rabbitmq", "nats", "sqs", ... for status pages.
  virtual std::string_view kind() const = 0;

 protected:
  ConsumerSource() = default;
};

// ---- Source scheme registry ----------------------------------------------
//
// One entry per source URL scheme, built-in or not, as SenderScheme is for
// senders. The built-ins ("http"/"https": a herald server; the brokers
// when built) are registered by detail::RegisterBuiltinSourceSchemes()
// (src/transport/make_source.cc), run once before the first lookup.

struct SourceScheme {
  // Checks the URL's shape without opening anything. Null: any URL of the
  // scheme is fine.
  std::function<Status(std::string_view url)> validate_url;
  // Checks options->options (the per-source keys) with the RouteOptions
  // readers / Error / UnknownKey. Null: the scheme takes no keys; any such
  // key is an unknown-key error.
  std::function<Status(ConsumerSourceOptions* options)> validate_options;
  // Makes a source for options that passed validation; opens nothing yet
  // (Start does).
  std::function<Result<std::unique_ptr<ConsumerSource>>(
      const ConsumerSourceOptions& options)>
      make_source;
};

// Adds or replaces `scheme` (lower case, without ':'); any thread.
void RegisterSourceScheme(const std::string& scheme, SourceScheme entry);
// The entry of `scheme` (built-ins included), or nullptr.
std::shared_ptr<const SourceScheme> FindSourceScheme(std::string_view scheme);

// Checks a source URL by its scheme's validate_url. InvalidArgument names
// the URL (secrets redacted) and the known schemes.
Status ValidateSourceUrl(std::string_view url);
// Validates options->options with the scheme of options->url.
Status ValidateSourceOptions(ConsumerSourceOptions* options);
// Validates, then makes the source of options.url.
Result<std::unique_ptr<ConsumerSource>> MakeConsumerSource(
    const ConsumerSourceOptions& options);

}  // namespace herald
