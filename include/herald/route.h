// RouteConfig: one relay route (filter, sender URL, batching, retry and
// failure policy), and RouteOptions: the keys of a [[route]] table that
// belong to its sender's scheme, handed to that scheme in a neutral form.
//
// Core parses only the keys every route has (name, sender, types, streams,
// batch, max_in_flight, max_attempts, backoff_initial, backoff_max,
// on_failure, source); every other key of the table is the scheme's,
// validated by the scheme registered for the sender URL (sender.h,
// RegisterSenderScheme / SenderScheme). A scheme reads its keys with the
// typed readers of RouteOptions, whose errors name the file, line, route
// and key like every config error:
//   "herald.toml:12: route 'hooks'.timeout: must be at least 1ms"
//
// Plain values; safe to copy and to read from many threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "herald/status.h"

namespace herald {

enum class FailurePolicy {
  kBlock,  // retry forever with backoff; the route waits (total order kept)
  kPark,   // after max_attempts park the event, hold its stream, go on
};
std::string_view FailurePolicyName(FailurePolicy p);  // "block" | "park"

enum class CloudEventsMode {
  kBinary,      // ce-* headers, body = payload, Content-Type = content_type
  kStructured,  // application/cloudevents+json body
};
std::string_view CloudEventsModeName(CloudEventsMode m);

// Retry policy of a route: exponential backoff with full jitter in
// [delay/2, delay], delay = min(backoff_max, backoff_initial * 2^(n-1)).
struct RetryPolicy {
  // Attempts before an event is parked (policy park). Policy block retries
  // forever and ignores it. Default 5; >= 1.
  int max_attempts = 5;
  std::chrono::milliseconds backoff_initial{100};  // default 100 ms
  std::chrono::milliseconds backoff_max{30000};    // default 30 s
};

// Options of the built-in senders (http, https, file, stdout), filled by
// their schemes from the route table. A sender of another scheme reads its
// own keys from RouteConfig::options instead.
struct SenderOptions {
  // HTTP: time to connect (default 5 s) and for a whole request (10 s).
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{10000};
  // HTTP: extra request headers ("Authorization" = "Bearer ..."), in order.
  // TOML: headers = { Authorization = "Bearer x" }.
  std::vector<std::pair<std::string, std::string>> headers;
  // HTTP: CloudEvents binding mode (key `mode`, default "binary").
  CloudEventsMode mode = CloudEventsMode::kBinary;
  // HTTPS: verify the server's certificate and name (key `tls_verify`,
  // default true) against `ca_file` (default: the system's CA store).
  bool tls_verify = true;
  std::string ca_file;
  // CloudEvents `source` attribute (route key `source`, every scheme;
  // default "herald").
  std::string source = "herald";
  // file: fsync before acknowledging a batch (key `fsync`, default true).
  bool fsync = true;
};

// A value of the config file, as a scheme sees it: no TOML library type.
struct OptionField;
struct OptionValue {
  enum class Kind {
    kString,
    kInteger,
    kFloat,
    kBoolean,
    kDateTime,
    kArray,
    kTable
  };
  Kind kind = Kind::kString;
  std::string string;  // kString; kDateTime: its text
  int64_t integer = 0;
  double number = 0;
  bool boolean = false;
  std::vector<OptionValue> items;   // kArray, in order
  std::vector<OptionField> fields;  // kTable, sorted by key
  int line = 0;                     // 0 when built in code

  // "a string", "an integer", "a number", "a boolean", "a date/time",
  // "an array", "a table".
  std::string_view TypeName() const;
  static OptionValue String(std::string s, int line = 0);
  static OptionValue Integer(int64_t i, int line = 0);
  static OptionValue Boolean(bool b, int line = 0);
};
struct OptionField {
  std::string key;
  OptionValue value;
};

// The scheme's keys of one route, and readers that check a value's type
// and range and return InvalidArgument in the config's error format.
// `key` arguments are relative to the route ("timeout", "headers.X-Team").
struct RouteOptions {
  std::string source_name;  // file name for messages ("" when built in code)
  std::string route;        // route (or consumer) name, for messages
  // The kind of table, for messages: "route" (default) or "consumer" (a
  // consumer source's keys, herald/consumer_source.h).
  std::string table = "route";
  // The keys every table of this kind has, listed first by UnknownKey;
  // empty = kRouteKeys.
  std::string common_keys;
  std::vector<OptionField> fields;

  bool empty() const { return fields.empty(); }
  // The field named `key`, or nullptr.
  const OptionValue* Find(std::string_view key) const;

  // "herald.toml:12: route 'hooks'.timeout: <message>" (or "consumer").
  Status Error(std::string_view key, int line, std::string_view message) const;
  // "...: unknown key (expected <common_keys>, <scheme_keys>)".
  Status UnknownKey(const OptionField& f, std::string_view scheme_keys) const;

  Status GetString(std::string_view key, const OptionValue& v,
                   std::string* out) const;
  Status GetBool(std::string_view key, const OptionValue& v, bool* out) const;
  // "binary" or "structured" (the CloudEvents encoding of a `mode` key).
  Status GetMode(std::string_view key, const OptionValue& v,
                 CloudEventsMode* out) const;
  Status GetInt(std::string_view key, const OptionValue& v, int64_t min,
                int64_t max, int64_t* out) const;
  // A string with a unit ("250ms", "10s") or an integer of milliseconds;
  // at least `min`.
  Status GetDuration(std::string_view key, const OptionValue& v,
                     std::chrono::milliseconds min,
                     std::chrono::milliseconds* out) const;
  // A table of strings, in file order (e.g. HTTP headers).
  Status GetStringTable(
      std::string_view key, const OptionValue& v,
      std::vector<std::pair<std::string, std::string>>* out) const;
};

// The keys every route has, parsed by core (in this order in messages).
inline constexpr std::string_view kRouteKeys =
    "name, sender, types, streams, batch, max_in_flight, max_attempts, "
    "backoff_initial, backoff_max, on_failure, source, from";

struct RouteConfig {
  // Unique; letters, digits, '.', '_', '-'. Names the checkpoint, lease and
  // parked rows of the route in the store.
  std::string name;
  // Where events go: "http://..." / "https://..." (webhook), "file:PATH"
  // (JSON lines), "stdout:" (JSON lines), or a scheme registered with
  // RegisterSenderScheme (sender.h). Empty for a route given an in-process
  // Sender through the library.
  std::string sender;
  // Glob filters ('*' any run, '?' one character). Empty = everything. An
  // event is selected when its type matches one of `types` and its stream
  // one of `streams`.
  std::vector<std::string> types;
  std::vector<std::string> streams;
  // Events read, sent and checkpointed together. Default 100; 1..10000.
  int batch = 100;
  // Sends of one batch in flight at once (never two of one stream).
  // Default 16; 1..1024.
  int max_in_flight = 16;
  RetryPolicy retry;
  FailurePolicy on_failure = FailurePolicy::kBlock;
  // The built-in senders' options (filled by their schemes), and `source`.
  SenderOptions sender_options;
  // The keys of the route table that core does not know, for the sender's
  // scheme (validated by it at load; read again by its sender factory).
  RouteOptions options;
  // The [[source]] (an application's own outbox table) the route reads;
  // empty = herald's own log. Key `from`.
  std::string from;
  // Line of the [[route]] header in the file (0 when built in code).
  int line = 0;
};

}  // namespace herald
