// Helpers of the end-to-end tests that run the built `herald relay` against
// a real receiver (tests/relay, tests/nats, tests/kafka, ...): a writer
// thread appending under load, and the JSON lines of `herald relay status`
// and `herald parked list`. Header-only.
#pragma once

#include <atomic>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "herald/json.h"
#include "support/test_util.h"

namespace herald::testing {

// A writer thread appending under load (see BackgroundLoop).
using BackgroundWriter = BackgroundLoop;

// The lines of `text` that parse as JSON, in order.
inline std::vector<Json> JsonLines(const std::string& text) {
  std::istringstream ss(text);
  std::string line;
  std::vector<Json> rows;
  while (std::getline(ss, line)) {
    auto j = Json::Parse(line);
    if (j.ok()) rows.push_back(*j);
  }
  return rows;
}

// A member of a JSON row: its string ("" otherwise), its integer (-1).
inline std::string JsonStr(const Json& j, const char* key) {
  const Json* m = j.Find(key);
  return m && m->is_string() ? m->as_string() : "";
}
inline int64_t JsonInt(const Json& j, const char* key) {
  int64_t v = -1;
  const Json* m = j.Find(key);
  if (m) (void)m->TryInt64(&v);
  return v;
}

// `herald relay status --config CONFIG` (one JSON row per route) and
// `herald parked list --config CONFIG --route ROUTE`; *text gets the
// output as printed, for failure messages.
inline std::vector<Json> RelayStatusRows(const std::string& config,
                                         std::string* text) {
  std::string err;
  RunCommand({HeraldBin(), "relay", "status", "--config", config}, text, &err);
  return JsonLines(*text);
}
inline std::vector<Json> ParkedRows(const std::string& config,
                                    const std::string& route,
                                    std::string* text) {
  std::string err;
  RunCommand(
      {HeraldBin(), "parked", "list", "--config", config, "--route", route},
      text, &err);
  return JsonLines(*text);
}

}  // namespace herald::testing
