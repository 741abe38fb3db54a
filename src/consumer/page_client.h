// PageClient: one GET /api/events page from a herald server over libcurl,
// with the error classification every HTTP reader of herald shares: the
// pull consumer's loop (herald/pull_consumer.h) and the consumer source
// for herald servers (http_source.cc).
//
// Thread safety: one thread at a time; `stop` may turn true from any
// thread and aborts a request in progress.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "herald/event_json.h"
#include "herald/status.h"

namespace herald::detail {

struct PageClientOptions {
  // "http(s)://HOST:PORT" or a URL ending in /api/events.
  std::string url;
  std::string token;               // bearer token; empty sends none
  std::vector<std::string> types;  // type globs
  std::string stream;              // an exact stream
  std::function<bool()> stop;      // polled during a request; may be empty
};

class PageClient {
 public:
  // InvalidArgument when the URL is not http(s).
  static Result<std::unique_ptr<PageClient>> Make(PageClientOptions options);
  ~PageClient();
  PageClient(const PageClient&) = delete;
  PageClient& operator=(const PageClient&) = delete;

  // GET ?offset=&limit=[&wait=]. OK: `items` (views into the client's
  // buffer, valid until the next call) and `next_offset`. Unavailable: the
  // server is unreachable, answered 5xx/408/429, or the request was
  // stopped (retry later). InvalidArgument: any other non-200 answer
  // ("server answered 404: <its message>"). Corruption: not a page.
  Status Fetch(int64_t offset, int limit, std::chrono::milliseconds wait,
               std::vector<EventJsonItem>* items, int64_t* next_offset);

  // GET /health's store.head: the server's head position. Unavailable or
  // Corruption as Fetch.
  Result<int64_t> Head();

 private:
  struct Impl;
  explicit PageClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::detail
