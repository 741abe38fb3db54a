// UUIDs as herald uses them: event ids, made by producers as UUIDv7.
//
// Pure functions; safe from any thread (each thread has its own generator).
#pragma once

#include <string>
#include <string_view>

namespace herald {

// Returns a new UUIDv7 (RFC 9562: 48-bit Unix milliseconds, version 7,
// random tail) as lowercase text.
std::string NewUuidV7();

// Whether `text` is a UUID in 8-4-4-4-12 hex form (any version, any case).
bool IsUuid(std::string_view text);

}  // namespace herald
