// The TOML configuration file (see herald/config.h), parsed with toml++.
// toml++ throws on syntax errors; the throw never leaves this file.
#include "herald/config.h"

#include <sys/stat.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "herald/consumer.h"
#include "herald/consumer_source.h"
#include "herald/json.h"
#include "herald/redact.h"
#include "herald/sender.h"

namespace herald {

std::string_view FailurePolicyName(FailurePolicy p) {
  return p == FailurePolicy::kPark ? "park" : "block";
}

std::string_view CloudEventsModeName(CloudEventsMode m) {
  return m == CloudEventsMode::kStructured ? "structured" : "binary";
}

bool TokenConfig::Allows(TokenScope s) const {
  for (auto x : scopes) {
    if (x == s || x == TokenScope::kAdmin) return true;
  }
  return false;
}

const RouteConfig* Config::FindRoute(std::string_view name) const {
  for (const auto& r : routes) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

const ConsumerConfig* Config::FindConsumer(std::string_view name) const {
  for (const auto& c : consumers) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const SourceConfig* Config::FindSource(std::string_view name) const {
  for (const auto& s : sources) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

int SourceConfig::LineOf(std::string_view key) const {
  for (const auto& [k, l] : key_lines) {
    if (k == key) return l;
  }
  return line;
}

Status SourceConfig::Error(std::string_view key,
                           std::string_view message) const {
  std::string where;
  if (!file.empty()) where = file + ":" + std::to_string(LineOf(key)) + ": ";
  return Status::InvalidArgument(where + "source '" + name + "'." +
                                 std::string(key) + ": " +
                                 std::string(message));
}

Status ValidateCorsOrigin(std::string_view o, bool tokens_configured) {
  if (o == "*") {
    if (!tokens_configured) return Status::OK();
    return Status::InvalidArgument(
        "\"*\" is not allowed when tokens are configured (any web page "
        "could use a token a browser holds); list the origins");
  }
  auto scheme = o.find("://");
  std::string_view rest =
      scheme == std::string_view::npos ? "" : o.substr(scheme + 3);
  if ((o.substr(0, scheme) != "http" && o.substr(0, scheme) != "https") ||
      rest.empty() || rest.find('/') != std::string_view::npos) {
    return Status::InvalidArgument(
        "'" + std::string(o.substr(0, 100)) +
        "' is not an origin (expected \"*\" or scheme://host[:port] with "
        "no path, such as \"https://ops.example.com\")");
  }
  return Status::OK();
}

bool GlobMatch(std::string_view p, std::string_view t) {
  size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == t[ti])) {
      ++pi;
      ++ti;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = ti;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  auto bad = [&] {
    return Status::InvalidArgument("'" + std::string(text) +
                                   "' is not a duration (use a number with a "
                                   "unit: 250ms, 10s, 2m, 1h, 7d)");
  };
  size_t i = 0;
  while (i < text.size() &&
         ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) {
    ++i;
  }
  if (i == 0 || i == text.size() || i > 15) return bad();
  std::string num(text.substr(0, i));
  if (std::count(num.begin(), num.end(), '.') > 1 || num[0] == '.' ||
      num.back() == '.') {
    return bad();
  }
  double v = std::strtod(num.c_str(), nullptr);
  std::string_view unit = text.substr(i);
  double ms;
  if (unit == "ms") {
    ms = v;
  } else if (unit == "s") {
    ms = v * 1000;
  } else if (unit == "m" || unit == "min") {
    ms = v * 60000;
  } else if (unit == "h") {
    ms = v * 3600000;
  } else if (unit == "d") {
    ms = v * 86400000;
  } else if (unit == "us" || unit == "µs") {
    ms = v / 1000;
  } else {
    return bad();
  }
  if (!std::isfinite(ms) || ms > 1e12) return bad();
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(ms)));
}

bool ValidRouteName(std::string_view n) {
  if (n.empty() || n.size() > 128) return false;
  for (char c : n) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Status ValidateRoute(const RouteConfig& r, bool sender_given) {
  std::string who = "route '" + r.name + "': ";
  if (!ValidRouteName(r.name)) {
    return Status::InvalidArgument(
        "route name '" + r.name +
        "' must be 1..128 letters, digits, '.', '_' or '-'");
  }
  if (!sender_given) {
    if (r.sender.empty()) {
      return Status::InvalidArgument(who + "sender is required");
    }
    Status s = ValidateSenderUrl(r.sender);
    if (!s.ok()) return Status::InvalidArgument(who + "sender: " + s.message());
    RouteConfig copy = r;  // the scheme may fill sender_options
    if (copy.options.route.empty()) copy.options.route = r.name;
    HERALD_RETURN_IF_ERROR(ValidateSenderOptions(&copy));
  }
  if (r.batch < 1 || r.batch > 10000) {
    return Status::InvalidArgument(who +
                                   "batch must be between 1 and 10000, not " +
                                   std::to_string(r.batch));
  }
  if (r.max_in_flight < 1 || r.max_in_flight > 1024) {
    return Status::InvalidArgument(
        who + "max_in_flight must be between 1 and 1024, not " +
        std::to_string(r.max_in_flight));
  }
  if (r.retry.max_attempts < 1) {
    return Status::InvalidArgument(who + "max_attempts must be >= 1, not " +
                                   std::to_string(r.retry.max_attempts));
  }
  if (r.retry.backoff_initial.count() < 1 ||
      r.retry.backoff_max < r.retry.backoff_initial) {
    return Status::InvalidArgument(
        who + "backoff_initial must be >= 1ms and <= backoff_max");
  }
  for (const auto& g : r.types) {
    if (g.empty()) return Status::InvalidArgument(who + "empty type filter");
  }
  for (const auto& g : r.streams) {
    if (g.empty()) return Status::InvalidArgument(who + "empty stream filter");
  }
  return Status::OK();
}

std::string_view OptionValue::TypeName() const {
  switch (kind) {
    case Kind::kTable:
      return "a table";
    case Kind::kArray:
      return "an array";
    case Kind::kString:
      return "a string";
    case Kind::kInteger:
      return "an integer";
    case Kind::kFloat:
      return "a number";
    case Kind::kBoolean:
      return "a boolean";
    default:
      return "a date/time";
  }
}

OptionValue OptionValue::String(std::string s, int line) {
  OptionValue v;
  v.kind = Kind::kString;
  v.string = std::move(s);
  v.line = line;
  return v;
}

OptionValue OptionValue::Integer(int64_t i, int line) {
  OptionValue v;
  v.kind = Kind::kInteger;
  v.integer = i;
  v.line = line;
  return v;
}

OptionValue OptionValue::Boolean(bool b, int line) {
  OptionValue v;
  v.kind = Kind::kBoolean;
  v.boolean = b;
  v.line = line;
  return v;
}

const OptionValue* RouteOptions::Find(std::string_view key) const {
  for (const auto& f : fields) {
    if (f.key == key) return &f.value;
  }
  return nullptr;
}

Status RouteOptions::Error(std::string_view key, int line,
                           std::string_view message) const {
  std::string where;
  if (!source_name.empty()) {
    where = source_name + ":" + std::to_string(line) + ": ";
  }
  return Status::InvalidArgument(where + table + " '" + route + "'." +
                                 std::string(key) + ": " +
                                 std::string(message));
}

Status RouteOptions::UnknownKey(const OptionField& f,
                                std::string_view scheme_keys) const {
  std::string expected(common_keys.empty() ? kRouteKeys : common_keys);
  if (!scheme_keys.empty()) expected += ", " + std::string(scheme_keys);
  return Error(f.key, f.value.line, "unknown key (expected " + expected + ")");
}

namespace {
Status WrongOptionType(const RouteOptions& o, std::string_view key,
                       const OptionValue& v, std::string_view want) {
  return o.Error(
      key, v.line,
      "must be " + std::string(want) + ", not " + std::string(v.TypeName()));
}
}  // namespace

Status RouteOptions::GetString(std::string_view key, const OptionValue& v,
                               std::string* out) const {
  if (v.kind != OptionValue::Kind::kString) {
    return WrongOptionType(*this, key, v, "a string");
  }
  *out = v.string;
  return Status::OK();
}

Status RouteOptions::GetBool(std::string_view key, const OptionValue& v,
                             bool* out) const {
  if (v.kind != OptionValue::Kind::kBoolean) {
    return WrongOptionType(*this, key, v, "a boolean");
  }
  *out = v.boolean;
  return Status::OK();
}

Status RouteOptions::GetMode(std::string_view key, const OptionValue& v,
                             CloudEventsMode* out) const {
  std::string m;
  HERALD_RETURN_IF_ERROR(GetString(key, v, &m));
  if (m == "binary") {
    *out = CloudEventsMode::kBinary;
  } else if (m == "structured") {
    *out = CloudEventsMode::kStructured;
  } else {
    return Error(key, v.line,
                 "unknown mode '" + m + "' (expected binary or structured)");
  }
  return Status::OK();
}

Status RouteOptions::GetInt(std::string_view key, const OptionValue& v,
                            int64_t min, int64_t max, int64_t* out) const {
  if (v.kind != OptionValue::Kind::kInteger) {
    return WrongOptionType(*this, key, v, "an integer");
  }
  if (v.integer < min || v.integer > max) {
    return Error(key, v.line,
                 "must be between " + std::to_string(min) + " and " +
                     std::to_string(max) + ", not " +
                     std::to_string(v.integer));
  }
  *out = v.integer;
  return Status::OK();
}

Status RouteOptions::GetDuration(std::string_view key, const OptionValue& v,
                                 std::chrono::milliseconds min,
                                 std::chrono::milliseconds* out) const {
  std::chrono::milliseconds d;
  if (v.kind == OptionValue::Kind::kInteger) {
    d = std::chrono::milliseconds(v.integer);
  } else if (v.kind == OptionValue::Kind::kString) {
    auto r = ParseDuration(v.string);
    if (!r.ok()) return Error(key, v.line, r.status().message());
    d = *r;
  } else {
    return WrongOptionType(*this, key, v, "a duration (\"10s\", \"250ms\")");
  }
  if (d < min) {
    return Error(key, v.line,
                 "must be at least " + std::to_string(min.count()) + "ms");
  }
  *out = d;
  return Status::OK();
}

Status RouteOptions::GetStringTable(
    std::string_view key, const OptionValue& v,
    std::vector<std::pair<std::string, std::string>>* out) const {
  if (v.kind != OptionValue::Kind::kTable) {
    return WrongOptionType(*this, key, v, "a table");
  }
  for (const auto& f : v.fields) {
    std::string value;
    HERALD_RETURN_IF_ERROR(
        GetString(std::string(key) + "." + f.key, f.value, &value));
    out->emplace_back(f.key, std::move(value));
  }
  return Status::OK();
}

namespace {

// Walks the parsed document; the first error wins.
class Parser {
 public:
  explicit Parser(std::string_view source) : source_(source) {}

  Status Run(const toml::table& root, Config* c) {
    for (auto&& [k, v] : root) {
      std::string key(k.str());
      if (key == "store") {
        HERALD_RETURN_IF_ERROR(Store(v, c));
      } else if (key == "relay") {
        HERALD_RETURN_IF_ERROR(RelayTable(v, c));
      } else if (key == "server") {
        HERALD_RETURN_IF_ERROR(Server(v, c));
      } else if (key == "route") {
        const toml::array* arr = v.as_array();
        if (!arr || !arr->is_array_of_tables()) {
          return Err(v, key, "must be an array of tables ([[route]])");
        }
        for (auto& t : *arr) {
          RouteConfig r;
          HERALD_RETURN_IF_ERROR(Route(*t.as_table(), &r));
          c->routes.push_back(std::move(r));
        }
      } else if (key == "source") {
        const toml::array* arr = v.as_array();
        if (!arr || !arr->is_array_of_tables()) {
          return Err(v, key, "must be an array of tables ([[source]])");
        }
        for (auto& t : *arr) {
          SourceConfig sc;
          HERALD_RETURN_IF_ERROR(Source(*t.as_table(), &sc));
          c->sources.push_back(std::move(sc));
        }
      } else if (key == "consumer") {
        const toml::array* arr = v.as_array();
        if (!arr || !arr->is_array_of_tables()) {
          return Err(v, key, "must be an array of tables ([[consumer]])");
        }
        for (auto& t : *arr) {
          ConsumerConfig cc;
          HERALD_RETURN_IF_ERROR(Consumer(*t.as_table(), &cc));
          c->consumers.push_back(std::move(cc));
        }
      } else {
        return Err(v, key,
                   "unknown key (expected store, relay, server, route, "
                   "source, consumer)");
      }
    }
    std::set<std::string> names;
    for (const auto& r : c->routes) {
      if (!names.insert(r.name).second) {
        return Status::InvalidArgument(Where(r.line) + "route.name: route '" +
                                       r.name + "' is defined twice");
      }
    }
    std::set<std::string> consumers;
    for (const auto& cc : c->consumers) {
      if (!consumers.insert(cc.name).second) {
        return Status::InvalidArgument(Where(cc.line) +
                                       "consumer.name: consumer '" + cc.name +
                                       "' is defined twice");
      }
    }
    std::set<std::string> sources;
    for (const auto& s : c->sources) {
      if (!sources.insert(s.name).second) {
        return Status::InvalidArgument(Where(s.line) + "source.name: source '" +
                                       s.name + "' is defined twice");
      }
    }
    for (const auto& r : c->routes) {
      if (!r.from.empty() && !sources.count(r.from)) {
        return Status::InvalidArgument(
            Where(from_lines_[r.name]) + "route '" + r.name +
            "'.from: no [[source]] is named '" + r.from + "'");
      }
    }
    return Status::OK();
  }

 private:
  std::string Where(int line) const {
    return std::string(source_) + ":" + std::to_string(line) + ": ";
  }
  Status Err(const toml::node& n, const std::string& key,
             const std::string& msg) const {
    return Status::InvalidArgument(
        Where(static_cast<int>(n.source().begin.line)) + key + ": " + msg);
  }
  static std::string TypeName(const toml::node& n) {
    switch (n.type()) {
      case toml::node_type::table:
        return "a table";
      case toml::node_type::array:
        return "an array";
      case toml::node_type::string:
        return "a string";
      case toml::node_type::integer:
        return "an integer";
      case toml::node_type::floating_point:
        return "a number";
      case toml::node_type::boolean:
        return "a boolean";
      default:
        return "a date/time";
    }
  }
  Status WrongType(const toml::node& n, const std::string& key,
                   const char* want) const {
    return Err(n, key, std::string("must be ") + want + ", not " + TypeName(n));
  }

  // A TOML value as the neutral OptionValue a sender scheme reads.
  static OptionValue Neutral(const toml::node& n) {
    OptionValue v;
    v.line = static_cast<int>(n.source().begin.line);
    using K = OptionValue::Kind;
    if (auto* s = n.as_string()) {
      v.kind = K::kString;
      v.string = s->get();
    } else if (auto* i = n.as_integer()) {
      v.kind = K::kInteger;
      v.integer = i->get();
    } else if (auto* f = n.as_floating_point()) {
      v.kind = K::kFloat;
      v.number = f->get();
    } else if (auto* b = n.as_boolean()) {
      v.kind = K::kBoolean;
      v.boolean = b->get();
    } else if (auto* a = n.as_array()) {
      v.kind = K::kArray;
      for (auto& e : *a) v.items.push_back(Neutral(e));
    } else if (auto* t = n.as_table()) {
      v.kind = K::kTable;
      for (auto&& [k, e] : *t)
        v.fields.push_back({std::string(k.str()), Neutral(e)});
    } else {
      v.kind = K::kDateTime;
      std::ostringstream text;
      n.visit([&](auto&& x) {
        if constexpr (toml::is_date<decltype(x)> ||
                      toml::is_time<decltype(x)> ||
                      toml::is_date_time<decltype(x)>) {
          text << x;
        }
      });
      v.string = text.str();
    }
    return v;
  }

  Status Table(const toml::node& n, const std::string& key,
               const toml::table** out) {
    *out = n.as_table();
    if (!*out) return WrongType(n, key, "a table");
    return Status::OK();
  }
  Status String(const toml::node& n, const std::string& key, std::string* out) {
    auto* s = n.as_string();
    if (!s) return WrongType(n, key, "a string");
    *out = s->get();
    return Status::OK();
  }
  Status Bool(const toml::node& n, const std::string& key, bool* out) {
    auto* b = n.as_boolean();
    if (!b) return WrongType(n, key, "a boolean");
    *out = b->get();
    return Status::OK();
  }
  Status Int(const toml::node& n, const std::string& key, int64_t min,
             int64_t max, int64_t* out) {
    auto* i = n.as_integer();
    if (!i) return WrongType(n, key, "an integer");
    int64_t v = i->get();
    if (v < min || v > max) {
      return Err(n, key,
                 "must be between " + std::to_string(min) + " and " +
                     std::to_string(max) + ", not " + std::to_string(v));
    }
    *out = v;
    return Status::OK();
  }
  Status Int32(const toml::node& n, const std::string& key, int64_t min,
               int64_t max, int* out) {
    int64_t v;
    HERALD_RETURN_IF_ERROR(Int(n, key, min, max, &v));
    *out = static_cast<int>(v);
    return Status::OK();
  }
  Status Duration(const toml::node& n, const std::string& key,
                  std::chrono::milliseconds min,
                  std::chrono::milliseconds* out) {
    std::chrono::milliseconds d;
    if (auto* i = n.as_integer()) {
      d = std::chrono::milliseconds(i->get());
    } else if (auto* s = n.as_string()) {
      auto r = ParseDuration(s->get());
      if (!r.ok()) return Err(n, key, r.status().message());
      d = *r;
    } else {
      return WrongType(n, key, "a duration (\"10s\", \"250ms\")");
    }
    if (d < min) {
      return Err(n, key,
                 "must be at least " + std::to_string(min.count()) + "ms");
    }
    *out = d;
    return Status::OK();
  }
  Status Strings(const toml::node& n, const std::string& key,
                 std::vector<std::string>* out) {
    auto* a = n.as_array();
    if (!a) {
      if (auto* s = n.as_string()) {  // a single glob is fine too
        out->push_back(s->get());
        return Status::OK();
      }
      return WrongType(n, key, "an array of strings");
    }
    for (auto& e : *a) {
      auto* s = e.as_string();
      if (!s) return WrongType(e, key, "an array of strings");
      if (s->get().empty()) return Err(e, key, "must not hold an empty string");
      out->push_back(s->get());
    }
    return Status::OK();
  }

  Status Store(const toml::node& n, Config* c) {
    const toml::table* t;
    HERALD_RETURN_IF_ERROR(Table(n, "store", &t));
    for (auto&& [k, v] : *t) {
      std::string key = "store." + std::string(k.str());
      if (k == "url") {
        HERALD_RETURN_IF_ERROR(String(v, key, &c->store_url));
        if (c->store_url.empty()) return Err(v, key, "must not be empty");
      } else if (k == "sqlite_checkpoint_pages") {
        HERALD_RETURN_IF_ERROR(Int32(
            v, key, 0, 1 << 30, &c->store_options.sqlite_checkpoint_pages));
      } else {
        return Err(v, key,
                   "unknown key (expected url, sqlite_checkpoint_pages)");
      }
    }
    return Status::OK();
  }

  Status RelayTable(const toml::node& n, Config* c) {
    const toml::table* t;
    HERALD_RETURN_IF_ERROR(Table(n, "relay", &t));
    auto& r = c->relay;
    for (auto&& [k, v] : *t) {
      std::string key = "relay." + std::string(k.str());
      if (k == "lease_ttl") {
        HERALD_RETURN_IF_ERROR(
            Duration(v, key, std::chrono::milliseconds(100), &r.lease_ttl));
      } else if (k == "idle_poll") {
        HERALD_RETURN_IF_ERROR(
            Duration(v, key, std::chrono::milliseconds(1), &r.idle_poll));
      } else if (k == "busy_poll") {
        HERALD_RETURN_IF_ERROR(
            Duration(v, key, std::chrono::milliseconds(1), &r.busy_poll));
      } else if (k == "owner") {
        HERALD_RETURN_IF_ERROR(String(v, key, &r.owner));
      } else {
        return Err(v, key,
                   "unknown key (expected lease_ttl, idle_poll, busy_poll, "
                   "owner)");
      }
    }
    if (r.busy_poll > r.idle_poll) {
      return Status::InvalidArgument(
          Where(static_cast<int>(t->source().begin.line)) +
          "relay: busy_poll must be <= idle_poll");
    }
    return Status::OK();
  }

  Status Server(const toml::node& n, Config* c) {
    const toml::table* t;
    HERALD_RETURN_IF_ERROR(Table(n, "server", &t));
    auto& s = c->server;
    s.line = static_cast<int>(t->source().begin.line);
    const toml::node* cors = nullptr;
    for (auto&& [k, v] : *t) {
      std::string key = "server." + std::string(k.str());
      if (k == "listen") {
        HERALD_RETURN_IF_ERROR(String(v, key, &s.listen));
        auto colon = s.listen.rfind(':');
        int64_t port;
        std::string p =
            colon == std::string::npos ? "" : s.listen.substr(colon + 1);
        char* end = nullptr;
        port = p.empty() ? -1 : std::strtoll(p.c_str(), &end, 10);
        if (colon == 0 || colon == std::string::npos || port < 0 ||
            port > 65535 || (end && *end)) {
          return Err(v, key, "must be HOST:PORT, not '" + s.listen + "'");
        }
      } else if (k == "tokens") {
        HERALD_RETURN_IF_ERROR(Tokens(v, key, &s.tokens));
      } else if (k == "max_body_bytes") {
        HERALD_RETURN_IF_ERROR(
            Int(v, key, 1024, int64_t{1} << 30, &s.max_body_bytes));
      } else if (k == "max_header_bytes") {
        HERALD_RETURN_IF_ERROR(
            Int(v, key, 1024, int64_t{1} << 20, &s.max_header_bytes));
      } else if (k == "max_connections") {
        HERALD_RETURN_IF_ERROR(Int32(v, key, 1, 1000000, &s.max_connections));
      } else if (k == "threads") {
        HERALD_RETURN_IF_ERROR(Int32(v, key, 0, 1024, &s.threads));
      } else if (k == "idle_timeout") {
        HERALD_RETURN_IF_ERROR(
            Duration(v, key, std::chrono::milliseconds(1), &s.idle_timeout));
      } else if (k == "header_timeout") {
        HERALD_RETURN_IF_ERROR(
            Duration(v, key, std::chrono::milliseconds(1), &s.header_timeout));
      } else if (k == "max_wait") {
        HERALD_RETURN_IF_ERROR(
            Duration(v, key, std::chrono::milliseconds(0), &s.max_wait));
      } else if (k == "heartbeat") {
        HERALD_RETURN_IF_ERROR(
            Duration(v, key, std::chrono::milliseconds(1), &s.heartbeat));
      } else if (k == "page_cache_mb") {
        HERALD_RETURN_IF_ERROR(Int(v, key, 0, 1 << 20, &s.page_cache_mb));
      } else if (k == "tail_events") {
        HERALD_RETURN_IF_ERROR(Int(v, key, 1, 10000000, &s.tail_events));
      } else if (k == "sse_buffer_mb") {
        HERALD_RETURN_IF_ERROR(Int(v, key, 1, 1 << 20, &s.sse_buffer_mb));
      } else if (k == "cors_origins") {
        cors = &v;
        s.cors_origins.clear();
        HERALD_RETURN_IF_ERROR(Strings(v, key, &s.cors_origins));
        for (const auto& o : s.cors_origins) {
          Status os = ValidateCorsOrigin(o, false);
          if (!os.ok()) return Err(v, key, os.message());
        }
      } else {
        return Err(v, key,
                   "unknown key (expected listen, tokens, max_body_bytes, "
                   "max_header_bytes, max_connections, threads, "
                   "idle_timeout, header_timeout, max_wait, heartbeat, "
                   "page_cache_mb, tail_events, sse_buffer_mb, "
                   "cors_origins)");
      }
    }
    if (cors) {
      for (const auto& o : s.cors_origins) {
        Status os = ValidateCorsOrigin(o, !s.tokens.empty());
        if (!os.ok()) return Err(*cors, "server.cors_origins", os.message());
      }
    }
    return Status::OK();
  }

  Status Tokens(const toml::node& n, const std::string& key,
                std::vector<TokenConfig>* out) {
    auto* a = n.as_array();
    if (!a || !a->is_array_of_tables()) {
      return WrongType(n, key, "an array of tables ([[server.tokens]])");
    }
    for (auto& e : *a) {
      const toml::table& t = *e.as_table();
      TokenConfig tc;
      for (auto&& [k, v] : t) {
        std::string kk = key + "." + std::string(k.str());
        if (k == "name") {
          HERALD_RETURN_IF_ERROR(String(v, kk, &tc.name));
        } else if (k == "token") {
          HERALD_RETURN_IF_ERROR(String(v, kk, &tc.token));
          if (tc.token.empty()) return Err(v, kk, "must not be empty");
        } else if (k == "scopes") {
          std::vector<std::string> scopes;
          HERALD_RETURN_IF_ERROR(Strings(v, kk, &scopes));
          for (const auto& s : scopes) {
            if (s == "read") {
              tc.scopes.push_back(TokenScope::kRead);
            } else if (s == "append") {
              tc.scopes.push_back(TokenScope::kAppend);
            } else if (s == "admin") {
              tc.scopes.push_back(TokenScope::kAdmin);
            } else {
              return Err(
                  v, kk,
                  "unknown scope '" + s + "' (expected read, append, admin)");
            }
          }
        } else {
          return Err(v, kk, "unknown key (expected name, token, scopes)");
        }
      }
      if (tc.token.empty()) return Err(t, key, "a token needs `token`");
      if (tc.scopes.empty()) {
        return Err(t, key, "a token needs `scopes` (read, append, admin)");
      }
      out->push_back(std::move(tc));
    }
    return Status::OK();
  }

  Status Route(const toml::table& t, RouteConfig* r) {
    r->line = static_cast<int>(t.source().begin.line);
    // The name first, so later messages can say which route.
    if (auto* n = t.get("name")) {
      HERALD_RETURN_IF_ERROR(String(*n, "route.name", &r->name));
      if (!ValidRouteName(r->name)) {
        return Err(*n, "route.name",
                   "'" + r->name +
                       "' must be 1..128 letters, digits, '.', '_' or '-'");
      }
    } else {
      return Err(t, "route", "a route needs a `name`");
    }
    const std::string p = "route '" + r->name + "'.";
    for (auto&& [k, v] : t) {
      std::string key = p + std::string(k.str());
      if (k == "name") continue;
      if (k == "sender") {
        HERALD_RETURN_IF_ERROR(String(v, key, &r->sender));
        Status s = ValidateSenderUrl(r->sender);
        if (!s.ok()) return Err(v, key, s.message());
      } else if (k == "types") {
        HERALD_RETURN_IF_ERROR(Strings(v, key, &r->types));
      } else if (k == "streams") {
        HERALD_RETURN_IF_ERROR(Strings(v, key, &r->streams));
      } else if (k == "batch") {
        HERALD_RETURN_IF_ERROR(Int32(v, key, 1, 10000, &r->batch));
      } else if (k == "max_in_flight") {
        HERALD_RETURN_IF_ERROR(Int32(v, key, 1, 1024, &r->max_in_flight));
      } else if (k == "max_attempts") {
        HERALD_RETURN_IF_ERROR(
            Int32(v, key, 1, 1000000000, &r->retry.max_attempts));
      } else if (k == "backoff_initial") {
        HERALD_RETURN_IF_ERROR(Duration(v, key, std::chrono::milliseconds(1),
                                        &r->retry.backoff_initial));
      } else if (k == "backoff_max") {
        HERALD_RETURN_IF_ERROR(Duration(v, key, std::chrono::milliseconds(1),
                                        &r->retry.backoff_max));
      } else if (k == "on_failure") {
        std::string pol;
        HERALD_RETURN_IF_ERROR(String(v, key, &pol));
        if (pol == "block") {
          r->on_failure = FailurePolicy::kBlock;
        } else if (pol == "park") {
          r->on_failure = FailurePolicy::kPark;
        } else {
          return Err(v, key,
                     "unknown policy '" + pol + "' (expected block or park)");
        }
      } else if (k == "from") {
        HERALD_RETURN_IF_ERROR(String(v, key, &r->from));
        if (r->from.empty()) return Err(v, key, "must not be empty");
        from_lines_[r->name] = static_cast<int>(v.source().begin.line);
      } else if (k == "source") {
        HERALD_RETURN_IF_ERROR(String(v, key, &r->sender_options.source));
        if (r->sender_options.source.empty()) {
          return Err(v, key, "must not be empty");
        }
      } else {
        // Not a key every route has: the sender scheme's.
        r->options.fields.push_back({std::string(k.str()), Neutral(v)});
      }
    }
    if (r->sender.empty()) return Err(t, p + "sender", "is required");
    if (r->retry.backoff_max < r->retry.backoff_initial) {
      return Err(t, p + "backoff_max", "must be >= backoff_initial");
    }
    r->options.source_name = std::string(source_);
    r->options.route = r->name;
    return ValidateSenderOptions(r);
  }

  // A [[consumer]] table: the keys every consumer has here, the rest
  // checked by the source URL's scheme.
  Status Consumer(const toml::table& t, ConsumerConfig* c) {
    c->line = static_cast<int>(t.source().begin.line);
    if (auto* n = t.get("name")) {
      HERALD_RETURN_IF_ERROR(String(*n, "consumer.name", &c->name));
      if (!ValidRouteName(c->name)) {
        return Err(*n, "consumer.name",
                   "'" + c->name +
                       "' must be 1..128 letters, digits, '.', '_' or '-'");
      }
    } else {
      return Err(t, "consumer", "a consumer needs a `name`");
    }
    const std::string p = "consumer '" + c->name + "'.";
    bool backoff_max_set = false;
    for (auto&& [k, v] : t) {
      std::string key = p + std::string(k.str());
      if (k == "name") continue;
      if (k == "source") {
        HERALD_RETURN_IF_ERROR(String(v, key, &c->source));
        Status s = ValidateSourceUrl(c->source);
        if (!s.ok()) return Err(v, key, s.message());
      } else if (k == "inbox") {
        HERALD_RETURN_IF_ERROR(String(v, key, &c->inbox));
        bool sqlite = c->inbox.rfind("sqlite:", 0) == 0 && c->inbox.size() > 7;
        bool pg = c->inbox.rfind("postgresql://", 0) == 0 ||
                  c->inbox.rfind("postgres://", 0) == 0;
        if (!sqlite && !pg) {
          return Err(v, key,
                     "'" + RedactSecrets(c->inbox) +
                         "' is not sqlite:PATH or postgresql://...");
        }
      } else if (k == "types") {
        HERALD_RETURN_IF_ERROR(Strings(v, key, &c->types));
      } else if (k == "exec") {
        HERALD_RETURN_IF_ERROR(String(v, key, &c->exec));
        if (c->exec.empty()) return Err(v, key, "must not be empty");
      } else if (k == "sender") {
        HERALD_RETURN_IF_ERROR(String(v, key, &c->sender));
        Status s = ValidateSenderUrl(c->sender);
        if (!s.ok()) return Err(v, key, s.message());
      } else if (k == "on_failure") {
        std::string pol;
        HERALD_RETURN_IF_ERROR(String(v, key, &pol));
        if (pol == "block") {
          c->on_failure = FailurePolicy::kBlock;
        } else if (pol == "park") {
          c->on_failure = FailurePolicy::kPark;
        } else {
          return Err(v, key,
                     "unknown policy '" + pol + "' (expected block or park)");
        }
      } else if (k == "max_attempts") {
        HERALD_RETURN_IF_ERROR(
            Int32(v, key, 1, 1000000000, &c->retry.max_attempts));
      } else if (k == "backoff") {
        HERALD_RETURN_IF_ERROR(Duration(v, key, std::chrono::milliseconds(1),
                                        &c->retry.backoff_initial));
      } else if (k == "backoff_max") {
        HERALD_RETURN_IF_ERROR(Duration(v, key, std::chrono::milliseconds(1),
                                        &c->retry.backoff_max));
        backoff_max_set = true;
      } else if (k == "max_in_flight") {
        HERALD_RETURN_IF_ERROR(Int32(v, key, 1, 1024, &c->max_in_flight));
      } else if (k == "inbox_retention") {
        HERALD_RETURN_IF_ERROR(Duration(v, key, std::chrono::milliseconds(1000),
                                        &c->inbox_retention));
      } else {
        // Not a key every consumer has: the source scheme's.
        c->options.fields.push_back({std::string(k.str()), Neutral(v)});
      }
    }
    if (c->source.empty()) return Err(t, p + "source", "is required");
    if (c->inbox.empty()) return Err(t, p + "inbox", "is required");
    if (c->exec.empty() == c->sender.empty()) {
      return Err(t, p + (c->exec.empty() ? "exec" : "sender"),
                 c->exec.empty() ? "a consumer needs `exec` or `sender`"
                                 : "give `exec` or `sender`, not both");
    }
    if (c->retry.backoff_max < c->retry.backoff_initial) {
      if (backoff_max_set) {
        return Err(t, p + "backoff_max", "must be >= backoff");
      }
      c->retry.backoff_max = c->retry.backoff_initial;
    }
    c->options.source_name = std::string(source_);
    c->options.route = c->name;
    c->options.table = "consumer";
    c->options.common_keys = std::string(kConsumerKeys);
    ConsumerSourceOptions so;
    so.consumer = c->name;
    so.url = c->source;
    so.options = c->options;
    so.types = c->types;
    so.line = c->line;
    return ValidateSourceOptions(&so);
  }

  // A [[source]] table. What needs the database (the table and columns
  // exist, the flag column holds the values) is checked when the source is
  // opened, with the lines kept here.
  Status Source(const toml::table& t, SourceConfig* s) {
    s->line = static_cast<int>(t.source().begin.line);
    s->file = std::string(source_);
    if (auto* n = t.get("name")) {
      HERALD_RETURN_IF_ERROR(String(*n, "source.name", &s->name));
      if (!ValidRouteName(s->name)) {
        return Err(*n, "source.name",
                   "'" + s->name +
                       "' must be 1..128 letters, digits, '.', '_' or '-'");
      }
    } else {
      return Err(t, "source", "a source needs a `name`");
    }
    const std::string p = "source '" + s->name + "'.";
    auto line_of = [](const toml::node& n) {
      return static_cast<int>(n.source().begin.line);
    };
    auto nonempty = [&](const toml::node& n, const std::string& key,
                        std::string* out) -> Status {
      HERALD_RETURN_IF_ERROR(String(n, key, out));
      if (out->empty()) return Err(n, key, "must not be empty");
      return Status::OK();
    };
    bool has_published = false;
    for (auto&& [k, v] : t) {
      std::string sub(k.str());
      std::string key = p + sub;
      s->key_lines.emplace_back(sub, line_of(v));
      if (k == "name") continue;
      if (k == "url") {
        HERALD_RETURN_IF_ERROR(nonempty(v, key, &s->url));
        const std::string& u = s->url;
        bool known = u.rfind("mysql://", 0) == 0 ||
                     u.rfind("mariadb://", 0) == 0 ||
                     u.rfind("postgresql://", 0) == 0 ||
                     u.rfind("postgres://", 0) == 0 ||
                     (u.rfind("sqlite:", 0) == 0 && u.size() > 7);
        if (!known) {
          return Err(v, key,
                     "'" + u.substr(0, 40) +
                         "' is not a source URL (expected mysql://, "
                         "mariadb://, postgresql:// or sqlite:PATH)");
        }
      } else if (k == "table") {
        HERALD_RETURN_IF_ERROR(nonempty(v, key, &s->table));
      } else if (k == "columns") {
        const toml::table* ct;
        HERALD_RETURN_IF_ERROR(Table(v, key, &ct));
        for (auto&& [ck, cv] : *ct) {
          std::string name(ck.str());
          std::string ckey = key + "." + name;
          s->key_lines.emplace_back("columns." + name, line_of(cv));
          std::string* field = nullptr;
          auto& c = s->columns;
          if (ck == "id") field = &c.id;
          if (ck == "stream") field = &c.stream;
          if (ck == "type") field = &c.type;
          if (ck == "payload") field = &c.payload;
          if (ck == "occurred_at") field = &c.occurred_at;
          if (ck == "event_id") field = &c.event_id;
          if (ck == "content_type") field = &c.content_type;
          if (ck == "metadata") field = &c.metadata;
          if (!field) {
            return Err(cv, ckey,
                       "unknown key (expected id, stream, type, payload, "
                       "occurred_at, event_id, content_type, metadata)");
          }
          HERALD_RETURN_IF_ERROR(nonempty(cv, ckey, field));
        }
        for (auto [want, have] :
             {std::pair<const char*, const std::string*>{"id", &s->columns.id},
              {"stream", &s->columns.stream},
              {"type", &s->columns.type},
              {"payload", &s->columns.payload},
              {"occurred_at", &s->columns.occurred_at}}) {
          if (have->empty()) {
            return Err(v, key, std::string("needs `") + want + "` (a column)");
          }
        }
      } else if (k == "published") {
        has_published = true;
        const toml::table* pt;
        HERALD_RETURN_IF_ERROR(Table(v, key, &pt));
        for (auto&& [pk, pv] : *pt) {
          std::string name(pk.str());
          std::string pkey = key + "." + name;
          s->key_lines.emplace_back("published." + name, line_of(pv));
          auto& f = s->published;
          std::string* field = nullptr;
          if (pk == "column") field = &f.column;
          if (pk == "pending") field = &f.pending;
          if (pk == "done") field = &f.done;
          if (pk == "at") field = &f.at;
          if (!field) {
            return Err(pv, pkey,
                       "unknown key (expected column, pending, done, at)");
          }
          HERALD_RETURN_IF_ERROR(nonempty(pv, pkey, field));
        }
        for (auto [want, have] : {std::pair<const char*, const std::string*>{
                                      "column", &s->published.column},
                                  {"pending", &s->published.pending},
                                  {"done", &s->published.done}}) {
          if (have->empty()) {
            return Err(v, key, std::string("needs `") + want + "`");
          }
        }
        if (s->published.pending == s->published.done) {
          return Err(v, key, "pending and done must differ");
        }
      } else if (k == "content_type") {
        HERALD_RETURN_IF_ERROR(nonempty(v, key, &s->content_type));
      } else if (k == "metadata") {
        HERALD_RETURN_IF_ERROR(String(v, key, &s->metadata));
        auto doc = Json::Parse(s->metadata);
        if (!s->metadata.empty() && (!doc.ok() || !doc->is_object())) {
          return Err(v, key, "must be a JSON object");
        }
      } else if (k == "min_age") {
        HERALD_RETURN_IF_ERROR(
            Duration(v, key, std::chrono::milliseconds(0), &s->min_age));
      } else if (k == "poll") {
        HERALD_RETURN_IF_ERROR(
            Duration(v, key, std::chrono::milliseconds(1), &s->poll));
      } else if (k == "batch") {
        HERALD_RETURN_IF_ERROR(Int32(v, key, 1, 10000, &s->batch));
      } else if (k == "safety_delay") {
        return Err(v, key,
                   "id mode (a source without `published`) is not "
                   "supported yet; map the table's published flag");
      } else {
        return Err(v, key,
                   "unknown key (expected name, url, table, columns, "
                   "published, content_type, metadata, min_age, poll, "
                   "batch)");
      }
    }
    if (s->url.empty()) return Err(t, p + "url", "is required");
    if (s->table.empty()) return Err(t, p + "table", "is required");
    if (s->columns.id.empty()) return Err(t, p + "columns", "is required");
    if (!has_published) {
      return Err(t, p + "published",
                 "is required (id mode, a source without a published flag, "
                 "is not supported yet)");
    }
    return Status::OK();
  }

  std::string_view source_;
  std::map<std::string, int> from_lines_;  // route name -> line of `from`
};

// Debian's toml++ (3.3) reaches __builtin_unreachable on some non-ASCII
// input: a character outside a string (tomlplusplus#295), or right after a
// line-ending backslash in a multi-line string (#190). TOML allows
// non-ASCII only in strings and comments, and must be valid UTF-8; this
// checks both before toml++ sees the text, and refuses the second case.
Status CheckTomlText(std::string_view t, std::string_view source_name) {
  auto fail = [&](int line, const std::string& what) {
    return Status::InvalidArgument(std::string(source_name) + ":" +
                                   std::to_string(line) + ": " + what);
  };
  // No UTF-8 sequence holds a newline byte: check line by line.
  int line = 1;
  for (size_t from = 0; from <= t.size(); ++line) {
    size_t end = std::min(t.find('\n', from), t.size());
    if (!IsValidUtf8(t.substr(from, end - from))) {
      return fail(line, "the file is not valid UTF-8");
    }
    from = end + 1;
  }
  line = 1;
  size_t i = 0;
  auto at = [&](std::string_view s) { return t.substr(i, s.size()) == s; };
  // The last character that is not a space, tab or comment. A quote opens
  // a string only where TOML allows one (a key or a value); elsewhere, as
  // in `x = 0"é`, the file is invalid and toml++ reads on as bare text.
  char prev = '\n';
  auto opens_string = [&] {
    return prev == '\n' || prev == '=' || prev == '[' || prev == ',' ||
           prev == '{' || prev == '.';
  };
  while (i < t.size()) {
    char c = t[i];
    if (c == ' ' || c == '\t') {
      ++i;
      continue;
    }
    if (c == '#') {
      while (i < t.size() && t[i] != '\n') ++i;
      continue;
    }
    if (c == '\n') {
      ++line;
    } else if ((at("\"\"\"") || at("'''")) && opens_string()) {
      const bool basic = c == '"';
      std::string_view close = basic ? "\"\"\"" : "'''";
      i += 3;
      while (i < t.size() && !at(close)) {
        if (t[i] == '\n') ++line;
        if (basic && t[i] == '\\') {
          size_t j = i + 1;
          while (j < t.size() && (t[j] == ' ' || t[j] == '\t')) ++j;
          if (j < t.size() && (t[j] == '\n' || t[j] == '\r')) {
            // Line-ending backslash: what follows up to the next
            // non-blank is trimmed; that character must be ASCII.
            while (j < t.size() &&
                   std::isspace(static_cast<unsigned char>(t[j]))) {
              if (t[j] == '\n') ++line;
              ++j;
            }
            if (j < t.size() && static_cast<unsigned char>(t[j]) >= 0x80) {
              return fail(line,
                          "a non-ASCII character right after a line-ending "
                          "backslash is not supported; escape it as \\uXXXX");
            }
            i = j;
            continue;
          }
          // An escaped character is not the end.
          if (i + 1 < t.size() && t[i + 1] != '\n') ++i;
        }
        ++i;
      }
      i += 2;  // the last of the three is passed below
    } else if ((c == '"' || c == '\'') && opens_string()) {
      ++i;
      while (i < t.size() && t[i] != c && t[i] != '\n') {
        if (c == '"' && t[i] == '\\' && i + 1 < t.size() && t[i + 1] != '\n') {
          ++i;
        }
        ++i;
      }
      if (i < t.size() && t[i] == '\n') continue;  // unterminated
    } else if (static_cast<unsigned char>(c) >= 0x80) {
      return fail(line,
                  "a non-ASCII character outside a string or comment "
                  "(TOML allows them only in strings and comments)");
    }
    prev = c;
    ++i;
  }
  return Status::OK();
}

}  // namespace

Result<Config> ParseConfig(std::string_view text,
                           std::string_view source_name) {
  HERALD_RETURN_IF_ERROR(CheckTomlText(text, source_name));
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << source_name << ":" << e.source().begin.line << ": "
        << e.description();
    return Status::InvalidArgument(msg.str());
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string(source_name) + ": " + e.what());
  }
  Config c;
  Parser p(source_name);
  HERALD_RETURN_IF_ERROR(p.Run(root, &c));
  return c;
}

Result<Config> LoadConfig(const std::string& path) {
  // A directory opens like a file and reads as empty (all defaults), so it
  // is refused here like a missing file, before anything is created.
  if (struct stat st; ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("cannot read config file '" + path +
                                   "': it is a directory");
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return Status::InvalidArgument("cannot read config file '" + path + "'");
  }
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) {
    return Status::Unavailable("cannot read config file '" + path + "'");
  }
  auto c = ParseConfig(ss.str(), path);
  if (!c.ok()) return c;
  c->path = path;
  // A relative SQLite path is relative to the config file's directory.
  std::string& url = c->store_url;
  bool sqlite_prefix = url.rfind("sqlite:", 0) == 0;
  bool postgres = url.rfind("postgres", 0) == 0;
  if (!postgres) {
    std::string file = sqlite_prefix ? url.substr(7) : url;
    auto slash = path.rfind('/');
    if (!file.empty() && file[0] != '/' && slash != std::string::npos &&
        file.rfind("file:", 0) != 0 && file != ":memory:") {
      url = "sqlite:" + path.substr(0, slash + 1) + file;
    }
  }
  for (auto& cc : c->consumers) {
    std::string& inbox = cc.inbox;
    auto slash = path.rfind('/');
    if (inbox.rfind("sqlite:", 0) == 0 && inbox.size() > 7 && inbox[7] != '/' &&
        slash != std::string::npos && inbox.compare(7, 5, "file:") != 0) {
      inbox = "sqlite:" + path.substr(0, slash + 1) + inbox.substr(7);
    }
  }
  return c;
}

}  // namespace herald
