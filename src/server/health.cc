// Health and metrics: GET /health (store reachable, routes running, what
// holds positions back) and GET /metrics (Prometheus text). See
// resources.h for the rules every handler keeps.
#include <cmath>
#include <cstdio>

#include "herald/event.h"
#include "herald/json.h"
#include "herald/relay.h"
#include "server/resources.h"

namespace herald::detail {

namespace {

class Health : public ResourceBase,
               public std::enable_shared_from_this<Health> {
 public:
  using ResourceBase::ResourceBase;

  void GetHealth(std::function<void(Response)> then) {
    auto self = shared_from_this();
    executor([self, then = std::move(then)] {
      auto head = self->store->Head();
      bool ok = head.ok();
      std::string body = "{\"status\":";
      std::string relays = "[";
      std::vector<std::string> problems;
      if (!head.ok()) problems.push_back("store: " + head.status().message());
      if (self->relay && head.ok()) {
        auto st = self->relay->GetStatuses();
        if (st.ok()) {
          for (size_t i = 0; i < st->size(); ++i) {
            const auto& r = (*st)[i];
            if (i) relays += ",";
            relays +=
                "{\"name\":" + JsonString(r.name) +
                ",\"running\":" + (r.running ? "true" : "false") +
                ",\"state\":" + JsonString(r.state) +
                ",\"parked\":" + std::to_string(r.parked) +
                ",\"held\":" + std::to_string(r.held) +
                ",\"retry\":" + std::to_string(r.retry) + ",\"blocked\":" +
                (r.blocked_id.empty()
                     ? std::string("null")
                     : "{\"id\":" + JsonString(r.blocked_id) +
                           ",\"position\":" +
                           std::to_string(r.blocked_position) +
                           ",\"error\":" + JsonString(r.blocked_error) + "}") +
                ",\"lag_events\":" + std::to_string(r.lag_events) + "}";
            if (!r.running)
              problems.push_back("route " + r.name + " is not running");
            if (!r.blocked_id.empty()) {
              problems.push_back("route " + r.name + " is blocked on event " +
                                 r.blocked_id + ": " + r.blocked_error);
            } else if (r.state == "blocked") {
              problems.push_back("route " + r.name +
                                 " is blocked: " + r.last_error);
            }
            if (r.parked > 0) {
              problems.push_back("route " + r.name + " has " +
                                 std::to_string(r.parked) + " parked events");
            }
          }
        } else {
          problems.push_back("relay status: " + st.status().message());
        }
      }
      relays += "]";
      // Appends through this server that the store refuses (a full disk, a
      // read-only file), until one commits again.
      std::string appends = "{\"failing\":false}";
      if (auto f = self->appender->failing()) {
        auto micros = [](std::chrono::system_clock::time_point t) {
          return std::chrono::duration_cast<std::chrono::microseconds>(
                     t.time_since_epoch())
              .count();
        };
        appends =
            "{\"failing\":true,\"error\":" + JsonString(f->error) +
            ",\"since\":" + JsonString(FormatRfc3339(micros(f->since))) +
            ",\"last_failure\":" + JsonString(FormatRfc3339(micros(f->at))) +
            ",\"failed_requests\":" + std::to_string(f->count) + "}";
        problems.push_back("appends failing since " +
                           FormatRfc3339(micros(f->since)) + ": " + f->error);
      }
      auto holdup =
          ok ? self->store->DescribeHoldup() : Result<std::string>("");
      if (holdup.ok() && !holdup->empty()) {
        problems.push_back("positions held back: " + *holdup);
      }
      body += ok ? (problems.empty() ? "\"ok\"" : "\"degraded\"")
                 : "\"unavailable\"";
      body += ",\"store\":{\"backend\":" + JsonString(self->store->backend()) +
              ",\"reachable\":" + (ok ? "true" : "false");
      if (ok) body += ",\"head\":" + std::to_string(*head);
      body += "},\"appends\":" + appends + ",\"relays\":" + relays +
              ",\"problems\":[";
      for (size_t i = 0; i < problems.size(); ++i) {
        if (i) body += ",";
        body += JsonString(problems[i]);
      }
      body += "]}";
      Response r;
      r.status = ok ? 200 : 503;
      r.body = std::move(body);
      r.headers.emplace_back("Cache-Control", "no-store");
      then(std::move(r));
    });
  }

  void GetMetrics(std::function<void(Response)> then) {
    auto self = shared_from_this();
    executor([self, then = std::move(then)] {
      std::string m;
      auto line = [&m](const std::string& name, const std::string& labels,
                       double v) {
        m += name;
        if (!labels.empty()) m += "{" + labels + "}";
        char buf[48];
        if (v == std::floor(v) && std::fabs(v) < 1e15) {
          std::snprintf(buf, sizeof buf, " %lld\n", static_cast<long long>(v));
        } else {
          std::snprintf(buf, sizeof buf, " %.6g\n", v);
        }
        m += buf;
      };
      auto help = [&m](const char* name, const char* type, const char* text) {
        m += std::string("# HELP ") + name + " " + text + "\n# TYPE " + name +
             " " + type + "\n";
      };
      help("herald_events_appended_total", "counter",
           "Events appended through this server's POST /api/events.");
      line("herald_events_appended_total", "",
           static_cast<double>(self->appender->events_appended()));
      help("herald_append_commits_total", "counter",
           "Transactions committed for POST /api/events (group commits).");
      line("herald_append_commits_total", "",
           static_cast<double>(self->appender->commits()));
      auto head = self->store->Head();
      // Absent while the store cannot answer (herald_store_up says so).
      if (head.ok()) {
        help("herald_head", "gauge", "Highest position in the store.");
        line("herald_head", "", static_cast<double>(*head));
      }
      help("herald_store_up", "gauge", "1 when the store answers.");
      line("herald_store_up", "", head.ok() ? 1 : 0);
      // What holds positions back (a long open transaction on PostgreSQL).
      // A store that cannot answer exports none of these.
      if (head.ok()) {
        auto holdup = self->store->GetHoldup();
        if (holdup.ok()) {
          help("herald_store_holdup", "gauge",
               "1 when something holds positions back (see /health).");
          line("herald_store_holdup", "", holdup->held ? 1 : 0);
          help("herald_store_holdup_seconds", "gauge",
               "How long the oldest transaction holding positions back has "
               "been open; 0 when none.");
          line("herald_store_holdup_seconds", "", holdup->seconds);
          if (holdup->pid) {
            help("herald_store_holdup_info", "gauge",
                 "The backend pid of the oldest transaction holding "
                 "positions back; absent when none.");
            line("herald_store_holdup_info",
                 "pid=\"" + std::to_string(holdup->pid) + "\"", 1);
          }
        }
      }
      help("herald_open_streams", "gauge", "Open SSE streams.");
      line("herald_open_streams", "",
           static_cast<double>(self->metrics->open_streams.load()));
      help("herald_open_connections", "gauge", "Open HTTP connections.");
      line("herald_open_connections", "",
           static_cast<double>(self->metrics->open_connections.load()));
      help("herald_connection_limit", "gauge",
           "Connections accepted at most: max_connections, lowered to fit "
           "the descriptor limit.");
      line("herald_connection_limit", "",
           static_cast<double>(self->metrics->connection_limit.load()));
      help("herald_connections_refused_total", "counter",
           "Connections closed at once because the limit was reached.");
      line("herald_connections_refused_total", "",
           static_cast<double>(self->metrics->connections_refused.load()));
      help("herald_http_requests_abandoned_total", "counter",
           "POSTs whose client closed the connection before the answer.");
      line("herald_http_requests_abandoned_total", "",
           static_cast<double>(self->metrics->requests_abandoned.load()));
      help("herald_appends_abandoned_total", "counter",
           "POSTs not appended because their client had gone before the "
           "append was taken.");
      line("herald_appends_abandoned_total", "",
           static_cast<double>(self->appender->abandoned()));
      help("herald_append_failing", "gauge",
           "1 while appends fail for a reason of the store (see /health).");
      line("herald_append_failing", "", self->appender->failing() ? 1 : 0);
      if (const ByteBudget* b = self->metrics->sse_budget) {
        help("herald_sse_buffer_bytes", "gauge",
             "Bytes of SSE chunks rendered and not yet written.");
        line("herald_sse_buffer_bytes", "", static_cast<double>(b->used()));
        help("herald_sse_buffer_peak_bytes", "gauge",
             "Most bytes of SSE chunks held at once since start.");
        line("herald_sse_buffer_peak_bytes", "",
             static_cast<double>(b->peak()));
        help("herald_sse_buffer_max_bytes", "gauge",
             "The SSE buffer budget (sse_buffer_mb).");
        line("herald_sse_buffer_max_bytes", "",
             static_cast<double>(b->capacity()));
        help("herald_sse_streams_waiting_for_buffer", "gauge",
             "SSE streams waiting for the budget before their next chunk.");
        line("herald_sse_streams_waiting_for_buffer", "",
             static_cast<double>(b->waiting()));
      }
      help("herald_long_polls_waiting", "gauge",
           "Long-polls and idle SSE streams waiting for events.");
      line("herald_long_polls_waiting", "",
           static_cast<double>(self->hub->waiters()));
      help("herald_page_cache_max_bytes", "gauge",
           "Bytes of full pages the page cache may hold (page_cache_mb; 0 "
           "when off).");
      line("herald_page_cache_max_bytes", "",
           self->pages ? static_cast<double>(self->pages->max_bytes()) : 0);
      help("herald_page_cache_hits_total", "counter",
           "Pages answered from the page cache.");
      line("herald_page_cache_hits_total", "",
           self->pages ? static_cast<double>(self->pages->hits()) : 0);
      self->metrics->Render(&m);
      if (self->relay) {
        auto statuses = self->relay->GetStatuses();
        auto metrics = self->relay->GetMetrics();
        auto lbl = [](const std::string& route) {
          std::string s = "route=";
          AppendJsonString(route, &s);
          return s;
        };
        if (statuses.ok()) {
          help("herald_route_checkpoint", "gauge",
               "Next position the route reads.");
          for (const auto& s : *statuses) {
            line("herald_route_checkpoint", lbl(s.name),
                 static_cast<double>(s.checkpoint));
          }
          help("herald_route_lag_events", "gauge",
               "Positions the route has not passed yet.");
          for (const auto& s : *statuses) {
            line("herald_route_lag_events", lbl(s.name),
                 static_cast<double>(s.lag_events));
          }
          help("herald_route_lag_seconds", "gauge",
               "Age of the oldest undelivered event of the route.");
          for (const auto& s : *statuses) {
            line("herald_route_lag_seconds", lbl(s.name), s.lag_seconds);
          }
          help("herald_route_parked_events", "gauge",
               "Events of the route in state parked (set aside after a "
               "permanent rejection or max_attempts).");
          for (const auto& s : *statuses) {
            line("herald_route_parked_events", lbl(s.name),
                 static_cast<double>(s.parked));
          }
          help("herald_route_held_events", "gauge",
               "Events of the route held behind a parked one.");
          for (const auto& s : *statuses) {
            line("herald_route_held_events", lbl(s.name),
                 static_cast<double>(s.held));
          }
          help("herald_route_retry_events", "gauge",
               "Parked events of the route an operator asked to retry.");
          for (const auto& s : *statuses) {
            line("herald_route_retry_events", lbl(s.name),
                 static_cast<double>(s.retry));
          }
          help("herald_route_blocked", "gauge",
               "1 while the route (on_failure = block) stopped on a "
               "permanently rejected event; see herald_route_blocked_info.");
          for (const auto& s : *statuses) {
            line("herald_route_blocked", lbl(s.name),
                 s.blocked_id.empty() ? 0 : 1);
          }
          help("herald_route_blocked_info", "gauge",
               "The event a blocked route stopped on (id and position "
               "labels); absent when not blocked.");
          for (const auto& s : *statuses) {
            if (s.blocked_id.empty()) continue;
            line("herald_route_blocked_info",
                 lbl(s.name) + ",id=\"" + s.blocked_id + "\",position=\"" +
                     std::to_string(s.blocked_position) + "\"",
                 1);
          }
          help("herald_route_up", "gauge",
               "1 when the route runs in this process.");
          for (const auto& s : *statuses) {
            line("herald_route_up", lbl(s.name), s.running ? 1 : 0);
          }
        }
        help("herald_route_delivered_total", "counter",
             "Events delivered by this process.");
        for (const auto& r : metrics) {
          line("herald_route_delivered_total", lbl(r.name),
               static_cast<double>(r.delivered));
        }
        help("herald_route_failed_total", "counter", "Failed send attempts.");
        for (const auto& r : metrics) {
          line("herald_route_failed_total", lbl(r.name),
               static_cast<double>(r.failed));
        }
        help("herald_route_parked_total", "counter",
             "Events parked by this process (a permanent rejection, or "
             "max_attempts failures).");
        for (const auto& r : metrics) {
          line("herald_route_parked_total", lbl(r.name),
               static_cast<double>(r.parked));
        }
        auto histogram = [&](const char* name,
                             const LatencyHistogram RouteMetrics::*field) {
          for (const auto& r : metrics) {
            const auto& h = r.*field;
            std::string base = name;
            uint64_t cum = 0;
            for (size_t i = 0; i < h.bounds_seconds.size(); ++i) {
              cum += i < h.counts.size() ? h.counts[i] : 0;
              char le[32];
              std::snprintf(le, sizeof le, "%g", h.bounds_seconds[i]);
              line(base + "_bucket", lbl(r.name) + ",le=\"" + le + "\"",
                   static_cast<double>(cum));
            }
            line(base + "_bucket", lbl(r.name) + ",le=\"+Inf\"",
                 static_cast<double>(h.count));
            line(base + "_sum", lbl(r.name), h.sum_seconds);
            line(base + "_count", lbl(r.name), static_cast<double>(h.count));
          }
        };
        help("herald_route_send_latency_seconds", "histogram",
             "Duration of each send call to the route's receiver, from the "
             "call to the sender's answer (one batch, or one parked event "
             "sent again; first attempts and retries alike).");
        histogram("herald_route_send_latency_seconds",
                  &RouteMetrics::send_latency);
        help("herald_route_commit_to_ack_seconds", "histogram",
             "Per delivered event, from its commit (its occurred_at, stamped "
             "by the store at append unless the producer set it) to the "
             "receiver's acknowledgement.");
        histogram("herald_route_commit_to_ack_seconds",
                  &RouteMetrics::commit_to_ack);
      }
      if (self->options.extra_metrics) self->options.extra_metrics(&m);
      Response r;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = std::move(m);
      r.headers.emplace_back("Cache-Control", "no-store");
      then(std::move(r));
    });
  }
};

}  // namespace

void AddHealthRoutes(const Context& ctx, Router* router) {
  auto health = std::make_shared<Health>(ctx);
  router->Get("/health", Scope::kPublic,
              [health](Request&& req, const PathParams&, Reply reply) {
                Status s = CheckQuery(req.query, {});
                if (!s.ok()) return reply(ErrorFor(s));
                health->GetHealth(std::move(reply));
              });
  router->Get("/metrics", Scope::kRead,
              [health](Request&& req, const PathParams&, Reply reply) {
                Status s = CheckQuery(req.query, {});
                if (!s.ok()) return reply(ErrorFor(s));
                health->GetMetrics(std::move(reply));
              });
}

// ---- HttpMetrics
// -------------------------------------------------------------

void HttpMetrics::Count(const std::string& route, int status) {
  MutexLock lock(&mu_);
  ++requests_[{route, status}];
}

void HttpMetrics::Render(std::string* out) const {
  *out +=
      "# HELP herald_http_requests_total HTTP requests by route pattern and "
      "status.\n# TYPE herald_http_requests_total counter\n";
  MutexLock lock(&mu_);
  for (const auto& [key, n] : requests_) {
    *out += "herald_http_requests_total{route=";
    AppendJsonString(key.first, out);
    *out += ",status=\"" + std::to_string(key.second) + "\"} " +
            std::to_string(n) + "\n";
  }
}

}  // namespace herald::detail
