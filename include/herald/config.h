// Config: herald's TOML configuration file, shared by `herald relay` and
// `herald serve`.
//
//   [store]
//   url = "sqlite:herald.db"            # or postgresql://...
//   sqlite_checkpoint_pages = 10000     # WAL pages between checkpoints
//
//   [relay]                             # optional; defaults shown
//   lease_ttl = "10s"
//   idle_poll = "1s"                    # head check interval when idle
//   busy_poll = "1ms"                   # first head check after activity
//
//   [server]                            # read by `herald serve`
//   listen = "127.0.0.1:8080"
//   max_body_bytes = 1048576
//   [[server.tokens]]
//   name = "ci"                         # optional label for logs
//   token = "s3cret"
//   scopes = ["read", "append"]         # read | append | admin
//
//   [[route]]
//   name = "refunds"
//   sender = "http://127.0.0.1:9000/events"   # https://, file:PATH, stdout:
//   types = ["order.*"]
//   on_failure = "park"                 # or "block" (default)
//   from = "orders_outbox"              # optional: a [[source]] (below)
//
// The keys of a [[route]] table other than the ones every route has are
// the sender scheme's (herald/route.h, herald/sender.h): the scheme
// registered for the sender URL validates them.
//
// Durations are strings with a unit ("250ms", "10s", "2m", "1h") or
// integers meaning milliseconds. Unknown keys, wrong types and out-of-range
// values are InvalidArgument errors that name the key and its line
// ("config.toml:7: route 'refunds': batch must be >= 1, not -5").
//
// A Config is a plain value; safe to copy and to read from many threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "herald/route.h"  // RouteConfig, SenderOptions, RouteOptions
#include "herald/status.h"
#include "herald/store.h"

namespace herald {

// Settings shared by every route of a relay process.
struct RelaySettings {
  // Lease that keeps one relay per route across processes; renewed every
  // ttl/4; a relay that cannot renew stops sending before it expires.
  // Default 10 s; >= 100 ms.
  std::chrono::milliseconds lease_ttl{10000};
  // Head check interval for appends from other processes: starts at
  // busy_poll after activity and doubles up to idle_poll. Appends in the
  // same process wake the relay at once. Defaults 1 ms and 1 s.
  std::chrono::milliseconds busy_poll{1};
  std::chrono::milliseconds idle_poll{1000};
  // Lease owner name; default "HOST:PID:RANDOM".
  std::string owner;
};

enum class TokenScope { kRead, kAppend, kAdmin };

struct TokenConfig {
  std::string name;   // a label for logs (never the token); may be empty
  std::string token;  // the bearer secret; non-empty
  std::vector<TokenScope> scopes;  // at least one
  bool Allows(TokenScope s) const;
};

// The [server] table, read by `herald serve` (the relay ignores it).
struct ServerConfig {
  // host:port; "[::1]:8080" for IPv6. Default "127.0.0.1:8080".
  std::string listen = "127.0.0.1:8080";
  // Bearer tokens (key `tokens`, an array of tables). When empty the server
  // must refuse to listen on anything but loopback.
  std::vector<TokenConfig> tokens;
  // Request body limit. Default 1 MiB; 1 KiB..1 GiB.
  int64_t max_body_bytes = 1 << 20;
  // Request line + headers limit. Default 16 KiB; 1 KiB..1 MiB.
  int64_t max_header_bytes = 16 << 10;
  // Open connections at most; more are refused. Default 10000.
  int max_connections = 10000;
  // I/O threads. Default 0 = number of cores.
  int threads = 0;
  // A keep-alive connection with no request in flight is closed after
  // idle_timeout (default 60 s); a client must send its request headers
  // within header_timeout (default 10 s).
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds header_timeout{10000};
  // Longest long-poll `wait=` accepted (default 60 s) and the SSE heartbeat
  // interval (default 15 s).
  std::chrono::milliseconds max_wait{60000};
  std::chrono::milliseconds heartbeat{15000};
  // Rendered full pages read from the store kept in memory, in MiB
  // (default 64; 0 turns the page cache off). Size it to the history your
  // consumers re-read: a page served from it costs no database read.
  int64_t page_cache_mb = 64;
  // Newest events kept rendered in memory for live readers (default
  // 20000).
  int64_t tail_events = 20000;
  // Memory for SSE streams' rendered chunks waiting to be written, in MiB
  // (default 64; 1..1048576). Shared by all streams whatever their number:
  // when it is spent, a stream waits for its next chunk until others'
  // chunks are written (a stream catching up on history takes up to 64 KiB
  // at a time).
  int64_t sse_buffer_mb = 64;
  // Origins whose browser pages may call the API (CORS), each
  // "scheme://host[:port]" as browsers send it in `Origin`; "*" allows any
  // origin and only when no token is configured. Default none.
  std::vector<std::string> cors_origins;
  // Line of the [server] header (0 when absent).
  int line = 0;
};

// A [[source]] table: an outbox table an application already has, relayed
// as it is (docs/adopt.md). Column names are the application's.
//
//   [[source]]
//   name = "orders_outbox"
//   url = "mysql://app:secret@127.0.0.1:3306/shop"  # mariadb://, sqlite:PATH
//   table = "event_record"
//   columns = { id = "event_id", stream = "orderNo", type = "topic",
//               payload = "message", occurred_at = "created_date" }
//   published = { column = "published", pending = "N", done = "Y",
//                 at = "published_date" }
//   min_age = "0s"
//   poll = "200ms"
struct SourceColumns {
  // Required: the row id (an increasing integer key), the stream, the event
  // type, the payload and the time the row was written.
  std::string id, stream, type, payload, occurred_at;
  // Optional ("" = not mapped): a UUID column used as the event id (else
  // the id is derived from the source name and the row id), and columns
  // holding each row's content type and metadata (a JSON object).
  std::string event_id, content_type, metadata;
};

struct PublishedFlag {
  std::string column;   // required
  std::string pending;  // required: the value rows are written with
  std::string done;     // required: the value herald sets once delivered
  std::string at;       // optional: a column set to the acknowledgement time
};

struct SourceConfig {
  std::string name;  // unique among sources; route names' alphabet
  // mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (or mariadb://),
  // postgresql://..., sqlite:PATH.
  std::string url;
  std::string table;
  SourceColumns columns;
  PublishedFlag published;
  // Constants used when no column is mapped: content type (default
  // "application/json") and metadata (a JSON object, default none).
  std::string content_type = "application/json";
  std::string metadata;
  // Only rows pending for longer than this (by their occurred_at column,
  // in the database's own clock) are taken. Default 0.
  std::chrono::milliseconds min_age{0};
  // How often the table is polled for pending rows. Default 200 ms; >= 1 ms.
  std::chrono::milliseconds poll{200};
  // Rows read per query. Default 500; 1..10000.
  int batch = 500;

  // Where each key was written, for errors found when the source is opened
  // ("table", "columns.id", "published.column"...); the [[source]] header
  // is `line`.
  std::string file;  // the config's name in messages ("" when built in code)
  int line = 0;
  std::vector<std::pair<std::string, int>> key_lines;
  int LineOf(std::string_view key) const;
  // "herald.toml:12: source 'orders_outbox'.table: <message>".
  Status Error(std::string_view key, std::string_view message) const;
};

// A [[consumer]] table, run by `herald consume` (herald/consumer.h):
//
//   [[consumer]]
//   name = "refunds"
//   source = "http://127.0.0.1:8080"   # a herald server; or a broker URL
//   inbox = "sqlite:refunds.db"        # or postgresql://...
//   types = ["order.*"]
//   exec = "bin/refund"                # or: sender = "http://.../refund"
//   on_failure = "park"                # or "block" (default)
//
// Keys other than kConsumerKeys (herald/consumer.h) are the source
// scheme's (herald/consumer_source.h): `queue`, `topic` + `group`,
// `stream` + `durable`, `token`...
struct ConsumerConfig {
  std::string name;    // required; route names' alphabet
  std::string source;  // required; a source URL (ValidateSourceUrl)
  // The consumer's own database: "sqlite:PATH" (relative to the config
  // file's directory) or "postgresql://...". Required.
  std::string inbox;
  std::vector<std::string> types;  // globs; empty = every type
  // The handler: exactly one of `exec` (a command run by /bin/sh with the
  // event's JSON on stdin; exit 0 = handled) and `sender` (a sender URL,
  // as a route's, with its default options: the event is forwarded).
  std::string exec;
  std::string sender;
  FailurePolicy on_failure = FailurePolicy::kBlock;
  // max_attempts, `backoff` (the first delay) and backoff_max, as routes'
  // max_attempts, backoff_initial and backoff_max.
  RetryPolicy retry;
  int max_in_flight = 16;  // keys handled at once; 1..1024
  // The dedupe window: inbox rows older than this are swept. Default 7
  // days; at least 1 s.
  std::chrono::milliseconds inbox_retention{std::chrono::hours(24 * 7)};
  // The source scheme's keys (RouteOptions with table = "consumer").
  RouteOptions options;
  int line = 0;  // of the [[consumer]] header
};

struct Config {
  // [store] url. Default "sqlite:herald.db". A relative SQLite path is taken
  // relative to the directory of the config file by LoadConfig.
  std::string store_url = "sqlite:herald.db";
  // Options for opening store_url; the [store] table sets
  // sqlite_checkpoint_pages (0 turns automatic checkpoints off).
  StoreOptions store_options;
  RelaySettings relay;
  ServerConfig server;
  std::vector<RouteConfig> routes;
  // [[source]] tables, in file order (each read by the routes whose
  // `from` names it).
  std::vector<SourceConfig> sources;
  // [[consumer]] tables, in file order.
  std::vector<ConsumerConfig> consumers;
  // The file it was loaded from ("" from ParseConfig).
  std::string path;

  // The route named `name`, or nullptr.
  const RouteConfig* FindRoute(std::string_view name) const;
  // The source named `name`, or nullptr.
  const SourceConfig* FindSource(std::string_view name) const;
  // The consumer named `name`, or nullptr.
  const ConsumerConfig* FindConsumer(std::string_view name) const;
};

// Reads and parses a TOML file. InvalidArgument names the file, line and
// key; NotFound/Unavailable when the file cannot be read.
Result<Config> LoadConfig(const std::string& path);

// Parses TOML text. `source_name` prefixes error messages ("herald.toml").
// Relative paths are left as written.
Result<Config> ParseConfig(std::string_view text,
                           std::string_view source_name = "config");

// Checks a route built in code (name, filters, numbers, sender URL) as the
// parser would. Used by Relay::AddRoute.
Status ValidateRoute(const RouteConfig& route, bool sender_given);

// Parses a duration: "250ms", "10s", "2m", "1h", "7d", "1.5s". InvalidArgument
// on anything else.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);

// Checks one entry of [server] cors_origins: "*" (refused when
// `tokens_configured`: any web page could then use a token a browser
// holds) or an origin "http(s)://host[:port]" with no path.
// InvalidArgument says what is wrong.
Status ValidateCorsOrigin(std::string_view origin, bool tokens_configured);

// Whether `text` matches the glob `pattern` ('*' any run, '?' one char).
bool GlobMatch(std::string_view pattern, std::string_view text);

}  // namespace herald
