// Helpers for tests that drive a Sender directly (the broker and AWS sender
// tests): make it from a route, send a batch with a time budget, events
// whose metadata every binding must escape.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "herald/config.h"
#include "herald/event.h"
#include "herald/sender.h"
#include "herald/time.h"
#include "herald/uuid.h"

namespace herald::testing {

// The sender of `route` after ValidateSenderOptions; a failure fails the
// test and gives null.
inline std::unique_ptr<Sender> CheckedSender(RouteConfig route) {
  Status v = ValidateSenderOptions(&route);
  EXPECT_TRUE(v.ok()) << v.ToString();
  if (!v.ok()) return nullptr;
  auto s = MakeSender(route);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

// The sender of the first [[route]] of a config text; a failure fails the
// test and gives null.
inline std::unique_ptr<Sender> SenderFromToml(const std::string& toml) {
  auto c = ParseConfig(toml, "t.toml");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (!c.ok()) return nullptr;
  auto s = MakeSender(c->routes[0]);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

// One Send call over all of `events` (results start NotSent) with `within`
// to go.
inline std::vector<SendResult> SendAll(
    Sender* s, const std::vector<Event>& events,
    std::chrono::milliseconds within = std::chrono::milliseconds(20000)) {
  std::vector<SendResult> r(events.size(), SendResult::NotSent());
  s->Send(events, r, std::chrono::steady_clock::now() + within);
  return r;
}

// Version `version` of `stream` at `position`, with a fresh id and metadata
// that needs escaping in the header bindings (an underscore key, a space
// and a '%' in a value).
inline Event BrokerTestEvent(const std::string& stream, int64_t version,
                             int64_t position) {
  Event e;
  e.id = NewUuidV7();
  e.position = position;
  e.stream = stream;
  e.stream_version = version;
  e.type = "order.placed";
  e.payload = "{\"n\":" + std::to_string(version) + "}";
  e.metadata = "{\"trace_parent\":\"00-abc-def-01\",\"tenant\":\"a b%\"}";
  e.occurred_at_us = NowMicros();
  return e;
}

}  // namespace herald::testing
