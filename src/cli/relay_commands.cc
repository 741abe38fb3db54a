// herald relay | relay status | parked list|retry|drop: the relay commands.
#include <algorithm>
#include <chrono>
#include <map>
#include <ostream>
#include <thread>

#include "cli/cli.h"
#include "herald/config.h"
#include "herald/json.h"
#include "herald/redact.h"
#include "herald/relay.h"
#include "herald/store.h"
#include "herald/table_source.h"
#include "herald/time.h"

namespace herald::cli {

namespace {

struct Loaded {
  Config config;
  std::unique_ptr<Store> store;
  std::unique_ptr<Relay> relay;
  // One relay per [[source]] (an application's outbox table), with the
  // routes that read it; state kept in `store`. Indexed like
  // config.sources; null where the source could not be opened (inspecting
  // commands only), with its error in source_errors.
  std::vector<std::unique_ptr<EventSource>> sources;
  std::vector<std::unique_ptr<Relay>> source_relays;
  std::vector<Status> source_errors;

  // The relay that runs `route` (herald's own log's, or its source's).
  Result<Relay*> RelayFor(const std::string& route) const {
    const RouteConfig* r = config.FindRoute(route);
    if (!r || r->from.empty()) return relay.get();
    for (size_t i = 0; i < config.sources.size(); ++i) {
      if (config.sources[i].name != r->from) continue;
      if (!source_relays[i]) return source_errors[i];
      return source_relays[i].get();
    }
    return relay.get();
  }
};

// Opens each [[source]] (checking its table and columns) and builds its
// relay: the routes whose `from` names it, polling every `poll`. `run`:
// for `herald relay`, which fails on a source that cannot be opened and
// loads each route's saved progress; the inspecting commands open sources
// without changing anything and keep a source's error beside it.
Status LoadSources(Loaded* l, bool run) {
  for (const auto& sc : l->config.sources) {
    std::vector<std::string> readers;
    for (const auto& r : l->config.routes) {
      if (r.from == sc.name) readers.push_back(r.name);
    }
    auto source = OpenTableSource(sc, readers, run ? l->store.get() : nullptr);
    std::unique_ptr<Relay> relay;
    if (source.ok()) {
      Config c = l->config;
      c.relay = SourceRelayOptions(c.relay, sc.poll);
      auto made = Relay::FromConfig(source->get(), l->store.get(), c, sc.name);
      if (!made.ok()) return made.status();
      relay = std::move(*made);
    } else if (run || source.status().IsInvalidArgument()) {
      return source.status();
    }
    l->source_errors.push_back(source.ok() ? Status::OK() : source.status());
    l->sources.push_back(source.ok() ? std::move(*source) : nullptr);
    l->source_relays.push_back(std::move(relay));
  }
  return Status::OK();
}

// Loads the config, opens its store and builds the relay (not started).
// `read_only`: the command only reads (relay status, parked list).
Result<Loaded> LoadRelay(const Flags& flags, bool run_sequencer,
                         bool read_only = false) {
  auto path = flags.Require("config");
  if (!path.ok()) return path.status();
  auto config = LoadConfig(*path);
  if (!config.ok()) return config.status();
  Loaded l;
  l.config = std::move(*config);
  StoreOptions options = l.config.store_options;
  options.run_sequencer = run_sequencer;
  auto store = read_only ? OpenForReading(l.config.store_url, options)
                         : OpenStore(l.config.store_url, options);
  if (!store.ok()) return store.status();
  l.store = std::move(*store);
  auto relay = Relay::FromConfig(l.store.get(), l.config);
  if (!relay.ok()) return relay.status();
  l.relay = std::move(*relay);
  HERALD_RETURN_IF_ERROR(LoadSources(&l, run_sequencer && !read_only));
  return l;
}

// A route name given with --route must exist: bad input otherwise.
Status CheckRouteFlag(const Loaded& l, const std::string& route) {
  if (l.config.FindRoute(route)) return Status::OK();
  std::string names;
  for (const auto& r : l.config.routes) {
    names += names.empty() ? "" : ", ";
    names += r.name;
  }
  return Status::InvalidArgument(
      "no route named '" + route + "' in " + l.config.path +
      " (routes: " + (names.empty() ? "none" : names) + ")");
}

// {"id","position","error"} of the event a blocked route stopped on, or
// null.
std::string BlockedJson(const RouteStatus& s) {
  if (s.blocked_id.empty()) return "null";
  return "{\"id\":" + JsonString(s.blocked_id) +
         ",\"position\":" + std::to_string(s.blocked_position) +
         ",\"error\":" + JsonString(s.blocked_error) + "}";
}

// `from`: the [[source]] the route reads; empty for herald's own log (then
// the key is left out).
std::string StatusJson(const RouteStatus& s, const std::string& from) {
  std::string o = "{\"route\":" + JsonString(s.name);
  if (!from.empty()) o += ",\"from\":" + JsonString(from);
  o += ",\"sender\":" + JsonString(s.sender);
  o += ",\"on_failure\":" + JsonString(s.on_failure);
  o += ",\"checkpoint\":" + std::to_string(s.checkpoint);
  o += ",\"head\":" + std::to_string(s.head);
  o += ",\"lag_events\":" + std::to_string(s.lag_events);
  char lag[32];
  std::snprintf(lag, sizeof lag, "%.3f", s.lag_seconds);
  o += ",\"lag_seconds\":";
  o += lag;
  o += ",\"parked\":" + std::to_string(s.parked);
  o += ",\"held\":" + std::to_string(s.held);
  o += ",\"retry\":" + std::to_string(s.retry);
  o += ",\"blocked\":" + BlockedJson(s);
  o += ",\"last_error\":";
  o += s.last_error.empty() ? "null" : JsonString(s.last_error);
  o += ",\"last_error_at\":";
  o += s.last_error_at_us ? JsonString(FormatRfc3339(s.last_error_at_us))
                          : "null";
  o += ",\"lease_owner\":";
  o += s.lease_owner.empty() ? "null" : JsonString(s.lease_owner);
  o += ",\"lease_expires_at\":";
  o += s.lease_expires_at_us ? JsonString(FormatRfc3339(s.lease_expires_at_us))
                             : "null";
  o += "}";
  return o;
}

// {"store":{"backend":...,"holdup":...,"pid":...,"since":...,"seconds":...}};
// pid, since and seconds are null when no transaction is to blame.
std::string HoldupJson(std::string_view backend, const Store::Holdup& h) {
  std::string o = "{\"store\":{\"backend\":" + JsonString(backend);
  o += ",\"holdup\":" + JsonString(h.description);
  o += ",\"pid\":";
  o += h.pid ? std::to_string(h.pid) : "null";
  o += ",\"since\":";
  o += h.since_us ? JsonString(FormatRfc3339(h.since_us)) : "null";
  o += ",\"seconds\":";
  if (h.pid) {
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.3f", h.seconds);
    o += secs;
  } else {
    o += "null";
  }
  o += "}}";
  return o;
}

int RunRelayStatus(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err) {
  Flags flags;
  Status s = flags.ParseOptions(args, {{"config", true}, {"route", true}});
  if (!s.ok()) return Fail(err, s);
  auto l = LoadRelay(flags, false, /*read_only=*/true);
  if (!l.ok()) return Fail(err, l.status());
  std::vector<RouteStatus> list;
  if (flags.Has("route")) {
    s = CheckRouteFlag(*l, flags.Get("route"));
    if (!s.ok()) return Fail(err, s);
    auto relay = l->RelayFor(flags.Get("route"));
    if (!relay.ok()) return Fail(err, relay.status());
    auto one = (*relay)->GetStatus(flags.Get("route"));
    if (!one.ok()) return Fail(err, one.status());
    list.push_back(std::move(*one));
  } else {
    auto all = l->relay->GetStatuses();
    if (!all.ok()) return Fail(err, all.status());
    list = std::move(*all);
    for (const auto& r : l->source_relays) {
      if (!r) continue;
      auto more = r->GetStatuses();
      if (!more.ok()) return Fail(err, more.status());
      for (auto& st : *more) list.push_back(std::move(st));
    }
  }
  for (const auto& st : list) {
    const RouteConfig* rc = l->config.FindRoute(st.name);
    out << StatusJson(st, rc ? rc->from : "") << "\n";
  }
  // One line per [[source]] (all of them, or the one --route reads): its
  // table, its routes, the rows still pending, and the error that keeps it
  // from being read (null when none).
  for (size_t i = 0; i < l->config.sources.size(); ++i) {
    const SourceConfig& sc = l->config.sources[i];
    if (flags.Has("route")) {
      const RouteConfig* rc = l->config.FindRoute(flags.Get("route"));
      if (!rc || rc->from != sc.name) continue;
    }
    std::string o = "{\"source\":" + JsonString(sc.name);
    o += ",\"url\":" + JsonString(RedactSecrets(sc.url));
    o += ",\"table\":" + JsonString(sc.table);
    o += ",\"routes\":[";
    bool first = true;
    for (const auto& r : l->config.routes) {
      if (r.from != sc.name) continue;
      o += (first ? "" : ",") + JsonString(r.name);
      first = false;
    }
    o += "]";
    o += ",\"mode\":";
    o += sc.id_mode() ? "\"id\"" : "\"flag\"";
    Status error = l->source_errors[i];
    std::string pending = "null";
    LateCounts late;
    if (error.ok()) {
      auto n = CountPendingRows(l->sources[i].get(), l->store.get());
      auto lc = CountLateRows(l->sources[i].get(), l->store.get());
      if (n.ok() && lc.ok()) {
        pending = std::to_string(*n);
        late = *lc;
      } else {
        error = n.ok() ? lc.status() : n.status();
      }
    }
    o += ",\"pending\":" + pending;
    // Id mode: rows delivered late (committed after the route had passed
    // their id), and the last of them; null in flag mode.
    o += ",\"late\":";
    o += sc.id_mode() && error.ok() ? std::to_string(late.total) : "null";
    o += ",\"last_late_row\":";
    o += late.last_row ? std::to_string(late.last_row) : "null";
    o += ",\"error\":";
    o += error.ok() ? "null" : JsonString(RedactSecrets(error.ToString()));
    o += "}";
    out << o << "\n";
  }
  // What holds the store's positions back (a long open transaction on
  // PostgreSQL), as one more line after the routes; none when nothing does.
  auto holdup = l->store->GetHoldup();
  if (!holdup.ok()) return Fail(err, holdup.status());
  if (holdup->held) out << HoldupJson(l->store->backend(), *holdup) << "\n";
  out.flush();
  return kExitOk;
}

// herald relay reset --config PATH --route NAME (--to-position N |
// --to-time RFC3339): the route's checkpoint moves (back, usually), under
// the route's own lease so no relay sends meanwhile; refused while another
// process holds it.
int RunRelayReset(const std::vector<std::string>& args, std::ostream& out,
                  std::ostream& err) {
  Flags flags;
  Status s = flags.ParseOptions(args, {{"config", true},
                                       {"route", true},
                                       {"to-position", true},
                                       {"to-time", true}});
  if (!s.ok()) return Fail(err, s);
  auto route = flags.Require("route");
  if (!route.ok()) return Fail(err, route.status());
  auto target = ParseResetTarget(flags);
  if (!target.ok()) return Fail(err, target.status());
  auto l = LoadRelay(flags, false);
  if (!l.ok()) return Fail(err, l.status());
  s = CheckRouteFlag(*l, *route);
  if (!s.ok()) return Fail(err, s);
  const RouteConfig* rc = l->config.FindRoute(*route);
  if (!rc->from.empty()) {
    return Fail(err,
                Status::InvalidArgument(
                    "route '" + *route + "' reads [[source]] '" + rc->from +
                    "': relay reset moves the checkpoint of a route "
                    "over herald's own log"));
  }
  int64_t position = target->position;
  if (target->by_time) {
    auto head = l->store->Head();
    if (!head.ok()) return Fail(err, head.status());
    auto found = BisectPositionAtTime(*head, target->time_us,
                                      [&](int64_t p) -> Result<int64_t> {
                                        ReadRequest one;
                                        one.offset = p;
                                        one.limit = 1;
                                        auto page = l->store->Read(one);
                                        if (!page.ok()) return page.status();
                                        if (page->events.empty())
                                          return INT64_MAX;
                                        return page->events[0].occurred_at_us;
                                      });
    if (!found.ok()) return Fail(err, found.status());
    position = *found;
  }
  std::string owner = "herald relay reset " + HostOwnerName();
  std::string lease = Relay::LeaseName(*route);
  auto got = l->store->AcquireLease(lease, owner, std::chrono::seconds(30));
  if (!got.ok()) return Fail(err, got.status());
  if (!*got) {
    auto info = l->store->GetLease(lease);
    std::string holder = "another process";
    if (info.ok() && info->has_value()) {
      holder = (*info)->owner + " (lease until " +
               FormatRfc3339((*info)->expires_at_us) + ")";
    }
    return Fail(err,
                Status::Conflict("route '" + *route + "' is held by " + holder +
                                 ": stop that relay before moving the "
                                 "route's checkpoint"));
  }
  s = l->store->SaveCheckpoint(Relay::CheckpointName(*route), position);
  (void)l->store->ReleaseLease(lease, owner);
  if (!s.ok()) return Fail(err, s);
  out << "{\"route\":" << JsonString(*route) << ",\"checkpoint\":" << position
      << "}\n";
  out.flush();
  return kExitOk;
}

}  // namespace

std::string ParkedJson(const ParkedEvent& p) {
  std::string o = "{\"route\":" + JsonString(p.route);
  o += ",\"id\":" + JsonString(p.event.id);
  o += ",\"position\":" + std::to_string(p.event.position);
  o += ",\"stream\":" + JsonString(p.event.stream);
  o += ",\"state\":" + JsonString(p.state);
  o += ",\"attempts\":" + std::to_string(p.attempts);
  o += ",\"error\":" + JsonString(p.error);
  o += ",\"parked_at\":" + JsonString(FormatRfc3339(p.parked_at_us));
  o += ",\"first_failed_at\":" +
       (p.first_failed_at_us ? JsonString(FormatRfc3339(p.first_failed_at_us))
                             : std::string("null"));
  o += ",\"event\":";
  AppendEventJson(p.event, &o);
  o += "}";
  return o;
}

int RunRelay(const std::vector<std::string>& args, std::ostream& out,
             std::ostream& err) {
  if (!args.empty() && args[0] == "reset") {
    return RunRelayReset(std::vector<std::string>(args.begin() + 1, args.end()),
                         out, err);
  }
  if (!args.empty() && args[0] == "status") {
    return RunRelayStatus(
        std::vector<std::string>(args.begin() + 1, args.end()), out, err);
  }
  Flags flags;
  Status s = flags.ParseOptions(args, {{"config", true}});
  if (!s.ok()) return Fail(err, s);
  if (!flags.positional().empty()) {
    return Fail(err, Status::InvalidArgument(
                         "unexpected argument '" + flags.positional()[0] +
                         "' (herald relay [status|reset] --config PATH)"));
  }
  auto l = LoadRelay(flags, true);
  if (!l.ok()) return Fail(err, l.status());
  if (l->config.routes.empty()) {
    return Fail(err, Status::InvalidArgument(l->config.path +
                                             ": no [[route]] to relay"));
  }
  InstallStopSignals();
  s = l->relay->Start();
  if (!s.ok()) return Fail(err, s);
  for (auto& r : l->source_relays) {
    s = r->Start();
    if (!s.ok()) return Fail(err, s);
  }
  err << "herald: relaying " << l->config.routes.size() << " route(s) from "
      << RedactSecrets(l->config.store_url) << "\n";
  err.flush();
  // Reports each route's errors on stderr as they happen (at most one a
  // second per route).
  std::vector<Relay*> relays{l->relay.get()};
  for (auto& r : l->source_relays) relays.push_back(r.get());
  std::map<std::string, int64_t> reported;  // route -> last error reported
  auto next_report = std::chrono::steady_clock::now();
  while (!StopRequested()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (std::chrono::steady_clock::now() < next_report) continue;
    next_report += std::chrono::seconds(1);
    // Id mode: each row delivered late, named.
    for (size_t i = 0; i < l->sources.size(); ++i) {
      for (const auto& row : TakeLateRows(l->sources[i].get())) {
        err << "herald: source '" << l->config.sources[i].name << "': row "
            << row.row_id << " committed after route '" << row.route
            << "' had passed its id (longer than safety_delay): delivered "
               "late, out of its stream's order\n";
        err.flush();
      }
    }
    for (Relay* relay : relays) {
      for (const auto& m : relay->GetMetrics()) {
        int64_t& last = reported[m.name];
        if (m.last_error_at_us == last) continue;
        last = m.last_error_at_us;
        err << "herald: route '" << m.name << "': " << m.last_error << "\n";
        err.flush();
      }
    }
  }
  for (auto& r : l->source_relays) r->Stop();
  l->relay->Stop();
  err << "herald: relay stopped, checkpoints saved\n";
  err.flush();
  return kExitOk;
}

int RunParked(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err) {
  if (args.empty() ||
      (args[0] != "list" && args[0] != "retry" && args[0] != "drop")) {
    return Fail(err, Status::InvalidArgument(
                         "usage: herald parked list|retry|drop --config PATH "
                         "(--route NAME | --consumer NAME) [--id UUID|--all]"));
  }
  const std::string& action = args[0];
  Flags flags;
  Status s = flags.Parse(std::vector<std::string>(args.begin() + 1, args.end()),
                         {{"config", true},
                          {"route", true},
                          {"consumer", true},
                          {"id", true},
                          {"all", false},
                          {"state", true},
                          {"limit", true}});
  if (!s.ok()) return Fail(err, s);
  if (flags.Has("route") == flags.Has("consumer")) {
    return Fail(err, Status::InvalidArgument(
                         "give exactly one of --route NAME and --consumer "
                         "NAME"));
  }
  std::string id = flags.Get("id");
  if (flags.Has("id") && !IsUuid(id)) {
    return Fail(err,
                Status::InvalidArgument("--id '" + id + "' is not a UUID"));
  }
  if (action != "list") {
    if (flags.Has("id") == flags.Has("all")) {
      return Fail(err, Status::InvalidArgument("parked " + action +
                                               " needs --id UUID or --all"));
    }
  } else if (flags.Has("id") || flags.Has("all")) {
    return Fail(err, Status::InvalidArgument(
                         "parked list takes --state and --limit, not --id or "
                         "--all"));
  }
  if (flags.Has("consumer")) return RunConsumerParked(action, flags, out, err);
  auto route = flags.Require("route");
  if (!route.ok()) return Fail(err, route.status());
  auto limit = flags.GetInt("limit", 1000, 1, 100000);
  if (!limit.ok()) return Fail(err, limit.status());
  auto l = LoadRelay(flags, false, /*read_only=*/action == "list");
  if (!l.ok()) return Fail(err, l.status());
  s = CheckRouteFlag(*l, *route);
  if (!s.ok()) return Fail(err, s);

  auto relay = l->RelayFor(*route);
  if (!relay.ok()) return Fail(err, relay.status());
  if (action == "list") {
    auto list = (*relay)->ListParked(*route, flags.Get("state"),
                                     static_cast<int>(*limit));
    if (!list.ok()) return Fail(err, list.status());
    for (const auto& p : *list) out << ParkedJson(p) << "\n";
    out.flush();
    return kExitOk;
  }
  if (action == "retry") {
    s = (*relay)->RetryParked(*route, id);
  } else {
    s = (*relay)->DropParked(*route, id);
  }
  if (!s.ok()) return Fail(err, s);
  out << "{\"route\":" << JsonString(*route) << ",\"" << action
      << "\":" << (id.empty() ? std::string("\"all\"") : JsonString(id))
      << "}\n";
  out.flush();
  return kExitOk;
}

}  // namespace herald::cli
