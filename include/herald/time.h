// Time helpers: the wall clock in microseconds and RFC 3339 text.
//
// Pure functions; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "herald/status.h"

namespace herald {

// Current UTC time in microseconds since the Unix epoch.
int64_t NowMicros();

// RFC 3339 UTC with microseconds: "2026-11-22T09:30:00.123456Z".
std::string FormatRfc3339(int64_t micros);
void AppendRfc3339(int64_t micros, std::string* out);

// Parses RFC 3339 ('Z' or a numeric offset, fraction optional; more than six
// fraction digits are truncated to microseconds). Returns InvalidArgument
// for anything that is not a real instant: an impossible date (2023-02-30,
// 2023-02-29, month 13), hour 24, minute 60, second 61, an offset beyond
// +-23:59, or a leap second (:60) anywhere but 23:59:60 UTC. POSIX time has
// no leap seconds: 23:59:60 is read as the first second of the next day.
Result<int64_t> ParseRfc3339(std::string_view text);

}  // namespace herald
