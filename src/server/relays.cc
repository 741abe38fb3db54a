// The relays resource: GET /api/relays (per-route status), the parked
// events of a route (list, retry, drop, one at a time or in bulk). Every
// retry and drop is written to the server's log with the caller's token
// name (AuditLog). See resources.h for the rules every handler keeps.
#include <cctype>
#include <cstdio>
#include <set>

#include "herald/json.h"
#include "herald/relay.h"
#include "server/resources.h"

namespace herald::detail {

namespace {

void AppendNumberField(std::string* out, std::string_view name, double v) {
  out->push_back('"');
  out->append(name);
  out->append("\":");
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  out->append(buf);
}

class Relays : public ResourceBase,
               public std::enable_shared_from_this<Relays> {
 public:
  using ResourceBase::ResourceBase;

  static void AppendRouteStatus(const RouteStatus& st, std::string* b) {
    *b += "{\"name\":" + JsonString(st.name) +
          ",\"sender\":" + JsonString(st.sender) +
          ",\"on_failure\":" + JsonString(st.on_failure) +
          ",\"checkpoint\":" + std::to_string(st.checkpoint) +
          ",\"head\":" + std::to_string(st.head) +
          ",\"lag_events\":" + std::to_string(st.lag_events) + ",";
    AppendNumberField(b, "lag_seconds", st.lag_seconds);
    *b += ",\"parked\":" + std::to_string(st.parked) +
          ",\"parked_only\":" + std::to_string(st.parked_only) +
          ",\"held\":" + std::to_string(st.held) +
          ",\"retry\":" + std::to_string(st.retry) + ",\"blocked\":" +
          (st.blocked_id.empty()
               ? std::string("null")
               : "{\"id\":" + JsonString(st.blocked_id) +
                     ",\"position\":" + std::to_string(st.blocked_position) +
                     ",\"error\":" + JsonString(st.blocked_error) + "}") +
          ",\"last_error\":" + JsonString(st.last_error) +
          ",\"last_error_at\":" +
          (st.last_error_at_us ? JsonString(FormatRfc3339(st.last_error_at_us))
                               : std::string("null")) +
          ",\"lease_owner\":" +
          (st.lease_owner.empty() ? std::string("null")
                                  : JsonString(st.lease_owner)) +
          ",\"lease_expires_at\":" +
          (st.lease_expires_at_us
               ? JsonString(FormatRfc3339(st.lease_expires_at_us))
               : std::string("null")) +
          ",\"running\":" + (st.running ? "true" : "false") +
          ",\"holding_lease\":" + (st.holding_lease ? "true" : "false") +
          ",\"state\":" + JsonString(st.state) + "}";
  }

  Status CheckRoute(const std::string& name) const {
    if (!relay) {
      return Status::NotFound("no route named '" + name.substr(0, 64) +
                              "' (this server runs no relay)");
    }
    for (const auto& r : relay->routes()) {
      if (r.name == name) return Status::OK();
    }
    return Status::NotFound("no route named '" + name.substr(0, 64) + "'");
  }

  void GetRelays(std::function<void(Response)> then) {
    auto self = shared_from_this();
    executor([self, then = std::move(then)] {
      std::string body = "{\"routes\":[";
      if (self->relay) {
        auto st = self->relay->GetStatuses();
        if (!st.ok()) return then(ErrorFor(st.status()));
        for (size_t i = 0; i < st->size(); ++i) {
          if (i) body += ",";
          AppendRouteStatus((*st)[i], &body);
        }
      }
      body += "]";
      // The [[source]] tables their routes read (herald serve with
      // sources): rows pending, late rows (id mode), and what keeps one
      // from being read.
      if (self->options.sources) {
        body += ",\"sources\":[";
        bool first = true;
        for (const auto& src : self->options.sources()) {
          body += first ? "{" : ",{";
          first = false;
          body += "\"name\":" + JsonString(src.name) +
                  ",\"url\":" + JsonString(src.url) +
                  ",\"table\":" + JsonString(src.table) +
                  ",\"mode\":" + JsonString(src.mode) + ",\"routes\":[";
          for (size_t i = 0; i < src.routes.size(); ++i) {
            body += (i ? "," : "") + JsonString(src.routes[i]);
          }
          body += "],\"pending\":" +
                  (src.pending < 0 ? std::string("null")
                                   : std::to_string(src.pending)) +
                  ",\"late\":" +
                  (src.mode == "id" ? std::to_string(src.late)
                                    : std::string("null")) +
                  ",\"last_late_row\":" +
                  (src.last_late_row ? std::to_string(src.last_late_row)
                                     : std::string("null")) +
                  ",\"error\":" +
                  (src.error.empty() ? std::string("null")
                                     : JsonString(src.error)) +
                  "}";
        }
        body += "]";
      }
      body += "}";
      then(NoStoreResponse(std::move(body)));
    });
  }

  void GetParked(const std::string& route, const Query& q,
                 std::function<void(Response)> then) {
    Status s = CheckQuery(q, {"state", "limit"});
    int64_t limit = 1000;
    std::string state;
    if (s.ok()) {
      if (auto* v = QueryValue(q, "limit")) {
        s = ParseCount("limit", *v, 1, kMaxReadLimit, &limit);
      }
    }
    if (s.ok()) {
      if (auto* v = QueryValue(q, "state")) {
        state = *v;
        if (state != "parked" && state != "held" && state != "retry") {
          s = Status::InvalidArgument(
              "state must be parked, held or retry, not '" +
              state.substr(0, 32) + "'");
        }
      }
    }
    if (s.ok()) s = CheckRoute(route);
    if (!s.ok()) return then(ErrorFor(s));
    auto self = shared_from_this();
    executor([self, route, state, limit, then = std::move(then)] {
      auto list =
          self->relay->ListParked(route, state, static_cast<int>(limit));
      if (!list.ok()) return then(ErrorFor(list.status()));
      std::string body = "{\"route\":" + JsonString(route) + ",\"parked\":[";
      for (size_t i = 0; i < list->size(); ++i) {
        const auto& p = (*list)[i];
        if (i) body += ",";
        body += "{\"state\":" + JsonString(p.state) +
                ",\"attempts\":" + std::to_string(p.attempts) +
                ",\"error\":" + JsonString(p.error) +
                ",\"parked_at\":" + JsonString(FormatRfc3339(p.parked_at_us)) +
                ",\"first_failed_at\":" +
                (p.first_failed_at_us
                     ? JsonString(FormatRfc3339(p.first_failed_at_us))
                     : std::string("null")) +
                ",\"event\":";
        AppendEventJson(p.event, &body);
        body += "}";
      }
      body += "]}";
      then(NoStoreResponse(std::move(body)));
    });
  }

  void ParkedAction(bool retry, const std::string& route, std::string id,
                    const Query& q, std::string caller,
                    std::function<void(Response)> then) {
    Status s = CheckQuery(q, {});
    if (s.ok() && !IsUuid(id)) {
      s = Status::InvalidArgument("event id '" + id.substr(0, 64) +
                                  "' is not a UUID");
    }
    if (s.ok()) s = CheckRoute(route);
    if (!s.ok()) return then(ErrorFor(s));
    for (char& c : id) c = static_cast<char>(std::tolower(c));
    auto self = shared_from_this();
    executor([self, retry, route, id, caller = std::move(caller),
              then = std::move(then)] {
      Status st = retry ? self->relay->RetryParked(route, id)
                        : self->relay->DropParked(route, id);
      Audit(caller, retry, route, id, st);
      if (!st.ok()) return then(ErrorFor(st));
      Response r;
      r.status = retry ? 202 : 200;
      r.body = "{\"route\":" + JsonString(route) + ",\"id\":" + JsonString(id) +
               ",\"result\":" + (retry ? "\"retry\"" : "\"dropped\"") + "}";
      then(std::move(r));
    });
  }

  static void Audit(const std::string& caller, bool retry,
                    const std::string& route, const std::string& id,
                    const Status& st) {
    AuditLog(caller + (retry ? " retry" : " drop") + " parked event " + id +
             " on route '" + route + "': " +
             (st.ok() ? std::string("ok")
                      : "failed (" + std::string(st.code_name()) + ": " +
                            st.message() + ")"));
  }

  // POST /api/relays/{name}/parked/retry and .../drop: body {"ids":[...]}
  // (1..10000 distinct event ids) or {"all":true} (every row in state
  // parked, at most 10000). A bad request does nothing (4xx); otherwise
  // 200 with one outcome per event, in order, successes and failures
  // counted apart: a partial success is never answered as a success.
  void BulkAction(bool retry, const std::string& route, const Request& req,
                  std::string caller, std::function<void(Response)> then) {
    Status s = CheckQuery(req.query, {});
    if (!s.ok()) return then(ErrorFor(s));
    std::string ct = req.content_type.substr(0, req.content_type.find(';'));
    while (!ct.empty() && ct.back() == ' ') ct.pop_back();
    for (char& c : ct) c = static_cast<char>(std::tolower(c));
    if (ct != "application/json") {
      return then(Error(415, "unsupported_media_type",
                        "this request takes Content-Type: application/json, "
                        "not '" +
                            req.content_type.substr(0, 64) + "'"));
    }
    auto body = Json::Parse(req.body);
    if (!body.ok()) {
      return then(
          Error(400, "invalid_json",
                "the body is not valid JSON: " + body.status().message()));
    }
    std::vector<std::string> ids;
    bool all = false;
    if (!body->is_object()) {
      return then(ErrorFor(Status::InvalidArgument(
          "the body must be an object: {\"ids\":[...]} or {\"all\":true}")));
    }
    std::set<std::string> fields;
    for (const auto& [k, v] : body->members()) {
      if (!fields.insert(k).second) {
        s = Status::InvalidArgument("field '" + k.substr(0, 64) +
                                    "' is given twice");
      } else if (k == "all") {
        if (!v.is_bool() || !v.as_bool()) {
          s = Status::InvalidArgument("all must be true when given");
        }
        all = true;
      } else if (k == "ids") {
        if (!v.is_array() || v.items().empty() ||
            v.items().size() > static_cast<size_t>(kMaxReadLimit)) {
          s = Status::InvalidArgument(
              "ids must be an array of 1 to 10000 event ids");
          break;
        }
        std::set<std::string> seen;
        for (const auto& item : v.items()) {
          std::string id = item.is_string() ? item.as_string() : "";
          if (!IsUuid(id)) {
            s = Status::InvalidArgument("ids: '" +
                                        std::string(item.raw().substr(0, 64)) +
                                        "' is not an event id (a UUID)");
            break;
          }
          LowerCase(&id);
          if (!seen.insert(id).second) {
            s = Status::InvalidArgument("ids: " + id + " is given twice");
            break;
          }
          ids.push_back(std::move(id));
        }
      } else {
        s = Status::InvalidArgument("unknown field '" + k.substr(0, 64) +
                                    "' (expected ids or all)");
      }
      if (!s.ok()) break;
    }
    if (s.ok() && all == !ids.empty()) {
      s = Status::InvalidArgument(
          "give either ids (a list of event ids) or all: true");
    }
    if (s.ok()) s = CheckRoute(route);
    if (!s.ok()) return then(ErrorFor(s));
    auto self = shared_from_this();
    executor([self, retry, route, all, ids = std::move(ids),
              caller = std::move(caller), then = std::move(then)]() mutable {
      if (all) {
        auto list = self->relay->ListParked(route, "parked", kMaxReadLimit);
        if (!list.ok()) return then(ErrorFor(list.status()));
        for (const auto& p : *list) ids.push_back(p.event.id);
      }
      std::string results;
      int succeeded = 0, failed = 0;
      for (const auto& id : ids) {
        Status st = retry ? self->relay->RetryParked(route, id)
                          : self->relay->DropParked(route, id);
        Audit(caller, retry, route, id, st);
        if (!results.empty()) results += ",";
        results += "{\"id\":" + JsonString(id) + ",\"result\":";
        if (st.ok()) {
          ++succeeded;
          results += retry ? "\"retry\"}" : "\"dropped\"}";
        } else {
          ++failed;
          results +=
              "\"failed\",\"error\":{\"code\":" + JsonString(st.code_name()) +
              ",\"message\":" + JsonString(st.message()) + "}}";
        }
      }
      then(NoStoreResponse("{\"route\":" + JsonString(route) +
                           ",\"action\":" + (retry ? "\"retry\"" : "\"drop\"") +
                           ",\"results\":[" + results +
                           "],\"succeeded\":" + std::to_string(succeeded) +
                           ",\"failed\":" + std::to_string(failed) + "}"));
    });
  }
};

}  // namespace

void AddRelayRoutes(const Context& ctx, Router* router) {
  auto relays = std::make_shared<Relays>(ctx);
  router->Get("/api/relays", Scope::kRead,
              [relays](Request&& req, const PathParams&, Reply reply) {
                Status s = CheckQuery(req.query, {});
                if (!s.ok()) return reply(ErrorFor(s));
                relays->GetRelays(std::move(reply));
              });
  router->Get("/api/relays/{name}/parked", Scope::kRead,
              [relays](Request&& req, const PathParams& p, Reply reply) {
                relays->GetParked(p.Get("name"), req.query, std::move(reply));
              });
  const std::vector<TokenConfig>* tokens = &ctx->options.config.tokens;
  router->Post(
      "/api/relays/{name}/parked/{id}/retry", Scope::kAdmin,
      [relays, tokens](Request&& req, const PathParams& p, Reply reply) {
        relays->ParkedAction(true, p.Get("name"), p.Get("id"), req.query,
                             CallerName(*tokens, req.authorization),
                             std::move(reply));
      });
  router->Delete(
      "/api/relays/{name}/parked/{id}", Scope::kAdmin,
      [relays, tokens](Request&& req, const PathParams& p, Reply reply) {
        relays->ParkedAction(false, p.Get("name"), p.Get("id"), req.query,
                             CallerName(*tokens, req.authorization),
                             std::move(reply));
      });
  for (bool retry : {true, false}) {
    router->Post(retry ? "/api/relays/{name}/parked/retry"
                       : "/api/relays/{name}/parked/drop",
                 Scope::kAdmin,
                 [relays, tokens, retry](Request&& req, const PathParams& p,
                                         Reply reply) {
                   relays->BulkAction(retry, p.Get("name"), req,
                                      CallerName(*tokens, req.authorization),
                                      std::move(reply));
                 });
  }
}

}  // namespace herald::detail
