// Numbers mean one thing (#12.5): a route's parked, held and retry counts
// are the same under the same names in `herald relay status`,
// GET /api/relays, /health and /metrics; lag_seconds counts parked and held
// events (#13.6); herald_head is absent while the store does not answer;
// both latency histograms are exported, in valid exposition format.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "herald/json.h"
#include "herald/relay.h"
#include "herald/server.h"
#include "herald/store.h"
#include "herald/store_wrapper.h"
#include "support/test_util.h"

namespace herald {
namespace {

using testing::HeraldBin;
using testing::RunCommand;
using testing::TempDir;
using testing::WaitFor;

// A store whose Head() fails on cue (the store "unreachable").
class FlakyHead : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Result<int64_t> Head() override {
    if (down.load()) return Status::Unavailable("injected: store down");
    return StoreWrapper::Head();
  }
  std::atomic<bool> down{false};
};

std::string Get(const std::string& url) {
  std::string body, err;
  EXPECT_EQ(RunCommand({"curl", "-sS", "--max-time", "10", url}, &body, &err),
            0)
      << err;
  return body;
}

int64_t Int(const Json& j, const char* key) {
  int64_t v = -1;
  if (const Json* m = j.Find(key)) (void)m->TryInt64(&v);
  return v;
}

// Checks the Prometheus text format: every sample's family has one HELP and
// one TYPE before it, names and labels are well formed, values parse, and
// a histogram's buckets are cumulative and end with +Inf == _count.
void ExpectValidExposition(const std::string& text) {
  static const std::regex sample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$)");
  std::set<std::string> helped, typed;
  std::map<std::string, std::string> types;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(helped.insert(name).second) << "second HELP: " << line;
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream ss(line.substr(7));
      std::string name, type;
      ss >> name >> type;
      EXPECT_TRUE(typed.insert(name).second) << "second TYPE: " << line;
      types[name] = type;
      continue;
    }
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, sample)) << "bad line: " << line;
    std::string name = m[1];
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string s = suffix;
      if (name.size() > s.size() &&
          name.compare(name.size() - s.size(), s.size(), s) == 0 &&
          types.count(name.substr(0, name.size() - s.size())) &&
          types[name.substr(0, name.size() - s.size())] == "histogram") {
        family = name.substr(0, name.size() - s.size());
      }
    }
    EXPECT_TRUE(helped.count(family) && typed.count(family))
        << "no HELP/TYPE before " << line;
  }
}

// The cumulative bucket counts of `family` for `route`, in order.
std::vector<double> Buckets(const std::string& text, const std::string& family,
                            const std::string& route) {
  std::vector<double> out;
  std::istringstream in(text);
  std::string line;
  std::string prefix = family + "_bucket{route=\"" + route + "\",le=";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) {
      out.push_back(std::stod(line.substr(line.rfind(' ') + 1)));
    }
  }
  return out;
}

double Metric(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) {
      return std::stod(line.substr(name.size() + 1));
    }
  }
  return -1;
}

TEST(RelayNumbers, ParkedHeldRetryAreOneNumberEverywhere) {
  TempDir dir;
  std::string db = dir.file("h.db");
  auto store = OpenStore("sqlite:" + db);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  // Five events of one stream, an hour old: one parked, two held, one
  // retry (asked for by an operator), one delivered.
  const int64_t hour_ago = NowMicros() - int64_t{3600} * 1000000;
  std::vector<Event> events;
  for (int i = 0; i < 5; ++i) {
    Event e = testing::MakeEvent("s", "t.x");
    e.occurred_at_us = hour_ago + i;
    events.push_back(e);
  }
  ASSERT_TRUE((*store)->Append(std::span<Event>(events)).ok());
  {
    auto tx = (*store)->Begin();
    ASSERT_TRUE(tx.ok());
    const char* states[] = {"parked", "held", "held", "retry"};
    for (int i = 0; i < 4; ++i) {
      ParkedEvent p;
      p.route = "r";
      p.event = events[static_cast<size_t>(i)];
      p.state = states[i];
      p.attempts = 1;
      p.error = "permanent: HTTP 400";
      ASSERT_TRUE((*store)->Park(**tx, p).ok());
    }
    ASSERT_TRUE(
        (*store)->SaveCheckpoint(**tx, Relay::CheckpointName("r"), 6).ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  std::string config = dir.file("c.toml");
  std::ofstream(config) << "[store]\nurl = \"sqlite:" << db
                        << "\"\n[[route]]\nname = \"r\"\nsender = \"stdout:\"\n"
                        << "on_failure = \"park\"\n";

  // herald relay status
  std::string out, err;
  ASSERT_EQ(RunCommand({HeraldBin(), "relay", "status", "--config", config},
                       &out, &err),
            0)
      << err;
  std::string cli_line = out.substr(0, out.find('\n'));
  auto cli = Json::Parse(cli_line);
  ASSERT_TRUE(cli.ok()) << out;

  // The library, GET /api/relays, /health, /metrics (relay not started:
  // everything comes from the store).
  FlakyHead flaky(store->get());
  Relay relay(&flaky);
  RouteConfig route;
  route.name = "r";
  route.sender = "stdout:";
  route.on_failure = FailurePolicy::kPark;
  ASSERT_TRUE(relay.AddRoute(route).ok());
  auto st = relay.GetStatus("r");
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->parked, 1);
  EXPECT_EQ(st->held, 2);
  EXPECT_EQ(st->retry, 1);
  EXPECT_EQ(st->lag_events, 0);
  // Nothing past the checkpoint, but four undelivered events an hour old.
  EXPECT_GE(st->lag_seconds, 3600.0);
  EXPECT_LT(st->lag_seconds, 3700.0);

  ServerOptions options;
  options.config.listen = "127.0.0.1:0";
  auto server = Server::Start(&flaky, options, &relay);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  std::string base = "http://" + (*server)->address();
  std::string relays_body = Get(base + "/api/relays");
  auto relays = Json::Parse(relays_body);
  ASSERT_TRUE(relays.ok()) << relays_body;
  const Json& api = relays->Find("routes")->items().at(0);
  std::string health_body = Get(base + "/health");
  auto health = Json::Parse(health_body);
  ASSERT_TRUE(health.ok()) << health_body;
  const Json& h = health->Find("relays")->items().at(0);
  std::string metrics = Get(base + "/metrics");

  for (const auto& [name, want] : std::vector<std::pair<const char*, int64_t>>{
           {"parked", 1}, {"held", 2}, {"retry", 1}}) {
    EXPECT_EQ(Int(*cli, name), want) << name << ": " << cli_line;
    EXPECT_EQ(Int(api, name), want) << name << ": " << relays_body;
    EXPECT_EQ(Int(h, name), want) << name << ": " << health_body;
  }
  EXPECT_EQ(Metric(metrics, "herald_route_parked_events{route=\"r\"}"), 1);
  EXPECT_EQ(Metric(metrics, "herald_route_held_events{route=\"r\"}"), 2);
  EXPECT_EQ(Metric(metrics, "herald_route_retry_events{route=\"r\"}"), 1);
  EXPECT_GE(Metric(metrics, "herald_route_lag_seconds{route=\"r\"}"), 3600);
  const Json* lag = api.Find("lag_seconds");
  ASSERT_NE(lag, nullptr);
  ASSERT_TRUE(lag->is_number()) << relays_body;
  EXPECT_GE(lag->as_double(), 3600.0);
  EXPECT_TRUE(api.Find("blocked")->is_null()) << relays_body;
  EXPECT_TRUE(cli->Find("blocked")->is_null()) << cli_line;
  ExpectValidExposition(metrics);

  // The store stops answering: herald_head is absent, not -1.
  EXPECT_EQ(Metric(metrics, "herald_head"), 5);
  flaky.down = true;
  std::string down = Get(base + "/metrics");
  EXPECT_EQ(down.find("\nherald_head "), std::string::npos) << down;
  EXPECT_EQ(down.find("herald_head -1"), std::string::npos) << down;
  EXPECT_EQ(Metric(down, "herald_store_up"), 0);
  ExpectValidExposition(down);
  flaky.down = false;
  (*server)->Stop();
}

TEST(RelayNumbers, BothLatencyHistogramsAreExported) {
  TempDir dir;
  auto store = OpenStore("sqlite:" + dir.file("h.db"));
  ASSERT_TRUE(store.ok());
  RelayOptions ro;
  ro.idle_poll = std::chrono::milliseconds(50);
  Relay relay(store->get(), ro);
  RouteConfig route;
  route.name = "r";
  ASSERT_TRUE(relay
                  .AddRoute(route, MakeCallbackSender([](const Event&) {
                              return Status::OK();
                            }))
                  .ok());
  ASSERT_TRUE(relay.Start().ok());
  std::vector<Event> events;
  for (int i = 0; i < 3; ++i) events.push_back(testing::MakeEvent("s", "t"));
  // One committed two minutes "ago": its commit-to-ack is over 60 s.
  events[0].occurred_at_us = NowMicros() - int64_t{120} * 1000000;
  ASSERT_TRUE((*store)->Append(std::span<Event>(events)).ok());
  ASSERT_TRUE(WaitFor([&] { return relay.GetMetrics()[0].delivered == 3; }));
  ServerOptions options;
  options.config.listen = "127.0.0.1:0";
  auto server = Server::Start(store->get(), options, &relay);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  std::string m = Get("http://" + (*server)->address() + "/metrics");
  ExpectValidExposition(m);
  // The HELP says what each measures.
  EXPECT_NE(m.find("# HELP herald_route_send_latency_seconds Duration of each "
                   "send call"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("# HELP herald_route_commit_to_ack_seconds Per delivered "
                   "event, from its commit"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("# TYPE herald_route_commit_to_ack_seconds histogram"),
            std::string::npos);
  EXPECT_EQ(Metric(m, "herald_route_commit_to_ack_seconds_count{route=\"r\"}"),
            3);
  EXPECT_GE(Metric(m, "herald_route_commit_to_ack_seconds_sum{route=\"r\"}"),
            120);
  auto buckets = Buckets(m, "herald_route_commit_to_ack_seconds", "r");
  ASSERT_GE(buckets.size(), 2u);
  for (size_t i = 1; i < buckets.size(); ++i) {
    EXPECT_LE(buckets[i - 1], buckets[i]) << "not cumulative";
  }
  EXPECT_EQ(buckets.back(), 3);  // +Inf
  EXPECT_EQ(Metric(m,
                   "herald_route_commit_to_ack_seconds_bucket{route=\"r\","
                   "le=\"60\"}"),
            2);
  (*server)->Stop();
  relay.Stop();
}

}  // namespace
}  // namespace herald
