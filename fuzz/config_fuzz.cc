// Fuzzes the TOML config reader: any input is a Config or an
// InvalidArgument whose message names the file, never a crash.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "herald/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = herald::ParseConfig(text, "fuzz.toml");
  if (!config.ok()) {
    if (!config.status().IsInvalidArgument()) std::abort();
    if (config.status().message().find("fuzz.toml") == std::string::npos) {
      std::abort();
    }
    return 0;
  }
  // What was accepted is within the documented limits.
  for (const auto& r : config->routes) {
    if (r.name.empty() || r.batch < 1 || r.batch > 10000) std::abort();
  }
  if (config->server.page_cache_mb < 0 || config->server.tail_events < 1) {
    std::abort();
  }
  return 0;
}
