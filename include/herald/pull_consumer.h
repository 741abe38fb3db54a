// PullConsumer: reads events from a herald server's HTTP API at its own
// pace, the loop of the literature's API consumer:
//
//   offset = saved offset (1 when none; a saved 0 is read as 1)
//   loop: GET /api/events?offset=..&limit=..&wait=..
//         process the events
//         save next_offset durably (write, fsync, rename, fsync dir)
//
// The offset is saved only after the handler accepted the whole batch, so
// after a crash at most that batch is processed again. While the server is
// down or answers 5xx/429, requests are retried with exponential backoff.
//
//   PullConsumerOptions o;
//   o.url = "http://127.0.0.1:8080";
//   o.checkpoint_path = "orders.offset";
//   PullConsumer consumer(o);
//   Status s = consumer.Run([](const std::vector<PulledEvent>& batch) {
//     for (const auto& e : batch) Handle(e.event);
//     return Status::OK();
//   });
//
// Thread safety: Run on one thread; Stop from any thread (or a signal
// handler via options.stop_requested).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "herald/event.h"
#include "herald/status.h"

namespace herald {

struct PullConsumerOptions {
  // The server: "http://HOST:PORT" (its /api/events is used) or a URL
  // ending in /api/events.
  std::string url;
  // Bearer token with the read scope; empty sends none.
  std::string token;
  // Where the next offset is kept (a small text file). Required.
  std::string checkpoint_path;
  // Events per request (1..10000; default 1000) and the long-poll wait
  // (default 30 s; 0 = poll without waiting).
  int limit = 1000;
  std::chrono::milliseconds wait{30000};
  // Optional filters: type globs, an exact stream.
  std::vector<std::string> types;
  std::string stream;
  // Backoff while the server is unreachable: doubles from initial up to
  // max, with jitter. Defaults 100 ms and 10 s.
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{10000};
  // Polled often (also during a long-poll); true makes Run return OK.
  std::function<bool()> stop_requested;
  // Called with a one-line description of each failed attempt (for logs).
  // Never contains the token.
  std::function<void(const std::string&)> on_retry;
};

// One event of a page: decoded (herald/event_json.h: the payload's bytes,
// whether the server wrote it as JSON, as a string or as payload_base64),
// and its JSON exactly as the server sent it.
struct PulledEvent {
  Event event;
  std::string json;
};

// Processes one batch. OK moves the checkpoint past it; an error stops the
// consumer without moving it, and Run returns that error.
using PullBatchHandler =
    std::function<Status(const std::vector<PulledEvent>& batch)>;

class PullConsumer {
 public:
  explicit PullConsumer(PullConsumerOptions options);
  ~PullConsumer();
  PullConsumer(const PullConsumer&) = delete;
  PullConsumer& operator=(const PullConsumer&) = delete;

  // Runs until stopped (returns OK), the handler fails (its error), the
  // checkpoint cannot be read or written (Corruption / Unavailable), or
  // the server refuses the request for good (4xx other than 408/429:
  // InvalidArgument naming the status and the server's message).
  Status Run(const PullBatchHandler& handler);

  // Makes Run return soon (aborts a long-poll in progress).
  void Stop() { stop_.store(true); }

  // The offset the next request starts from.
  int64_t offset() const { return offset_.load(); }

 private:
  bool Stopping() const;

  PullConsumerOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> offset_{0};
};

// The saved offset of a checkpoint file: 0 when the file does not exist;
// Corruption when it holds anything but a number.
Result<int64_t> ReadCheckpointFile(const std::string& path);
// Saves `offset` durably: writes PATH.tmp, fsyncs it, renames it over PATH
// and fsyncs the directory.
Status WriteCheckpointFile(const std::string& path, int64_t offset);

}  // namespace herald
