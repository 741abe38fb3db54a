// What `herald relay reset` and `herald consume reset` share: the
// --to-position / --to-time flags and finding the first position at or
// after a time (see cli.h).
#include <unistd.h>

#include <random>

#include "cli/cli.h"
#include "herald/time.h"

namespace herald::cli {

Result<ResetTarget> ParseResetTarget(const Flags& flags) {
  ResetTarget t;
  if (flags.Has("to-position") == flags.Has("to-time")) {
    return Status::InvalidArgument(
        "give exactly one of --to-position N and --to-time RFC3339");
  }
  if (flags.Has("to-position")) {
    auto p = flags.GetInt("to-position", 1, 1, INT64_MAX);
    if (!p.ok()) return p.status();
    t.position = *p;
    return t;
  }
  auto time = ParseRfc3339(flags.Get("to-time"));
  if (!time.ok()) {
    return Status::InvalidArgument(
        "--to-time '" + flags.Get("to-time") +
        "' is not an RFC 3339 time: " + time.status().message());
  }
  t.by_time = true;
  t.time_us = *time;
  return t;
}

Result<int64_t> BisectPositionAtTime(
    int64_t head, int64_t time_us,
    const std::function<Result<int64_t>(int64_t position)>& occurred_at) {
  // The first position in [1, head + 1) whose event occurred at or after
  // time_us; head + 1 when none did.
  int64_t lo = 1, hi = head + 1;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    auto t = occurred_at(mid);
    if (!t.ok()) return t.status();
    if (*t >= time_us) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

std::string HostOwnerName() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  std::mt19937_64 rng(std::random_device{}());
  return std::string(host) + ":" + std::to_string(::getpid()) + ":" +
         std::to_string(rng() % 1000000);
}

}  // namespace herald::cli
