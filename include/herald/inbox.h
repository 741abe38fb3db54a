// Inbox: consumer-side dedupe. A consumer records each event id it handled
// in the same transaction as the handler's own writes, so an event delivered
// twice is handled once. The retention sweep bounds the table: a duplicate
// older than the retention is handled again (the dedupe window).
//
// Thread safety: safe to use from many threads at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "herald/event_log.h"
#include "herald/status.h"

namespace herald {

class Inbox : public virtual Database {
 public:
  // Records that `consumer` handled `event_id` inside tx. Returns true the
  // first time, false if it was recorded before (skip the event). UUIDs are
  // compared without regard to case. REQUIRES: tx was made by this store
  // (else InvalidArgument).
  virtual Result<bool> MarkHandled(Transaction& tx, const std::string& consumer,
                                   const std::string& event_id) = 0;

  // Deletes the inbox rows (of every consumer) recorded more than `max_age`
  // ago; returns how many. InvalidArgument for a negative age.
  virtual Result<int64_t> SweepInbox(std::chrono::milliseconds max_age) = 0;

  // Whether `consumer` handled `event_id` (any case of a UUID), read
  // outside any transaction: the check before a handler that runs outside
  // the inbox transaction (herald/consumer.h).
  virtual Result<bool> IsHandled(const std::string& consumer,
                                 const std::string& event_id) = 0;

  // Deletes at most `limit` (>= 1) of `consumer`'s rows recorded more than
  // `max_age` ago, in a short transaction of its own; returns how many.
  // Called in a loop until it returns fewer than `limit`, it never holds
  // the write lock for long, so handlers go on between the batches.
  // InvalidArgument for a negative age or a limit below 1.
  virtual Result<int64_t> SweepInboxBatch(const std::string& consumer,
                                          std::chrono::milliseconds max_age,
                                          int limit) = 0;
};

}  // namespace herald
