// Fuzzes what the server does with request bytes: Beast's parser (set up as
// a connection sets it up), target and query decoding, then the API itself
// on a real SQLite store. Every request that parses gets exactly one
// answer, a 4xx for anything malformed, and never a crash or a 5xx.
#include <unistd.h>

#include <boost/beast/http.hpp>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <string>

#include "herald/store.h"
#include "server/internal.h"

namespace {

namespace http = boost::beast::http;
using namespace herald;
using namespace herald::detail;

struct World {
  std::unique_ptr<Store> store;
  std::unique_ptr<Hub> hub;
  std::unique_ptr<Appender> appender;
  HttpMetrics metrics;
  std::unique_ptr<Api> api;

  World() {
    static char dir[] = "/tmp/herald-fuzz-XXXXXX";
    if (!mkdtemp(dir)) std::abort();
    std::atexit([] { std::filesystem::remove_all(dir); });
    auto s = OpenStore(std::string("sqlite:") + dir + "/fuzz.db");
    if (!s.ok()) std::abort();
    store = std::move(*s);
    std::vector<Event> seed(3);
    for (auto& e : seed) {
      e.stream = "order-1";
      e.type = "order.placed";
      e.payload = "{\"n\":1}";
    }
    if (!store->Append(seed).ok()) std::abort();
    ServerOptions options;
    options.config.cors_origins = {"https://ops.example.com"};
    hub = std::make_unique<Hub>(store.get(), 100, std::chrono::milliseconds(5));
    hub->Start();
    appender = std::make_unique<Appender>(store.get(), hub.get());
    appender->Start();
    api = std::make_unique<Api>(
        store.get(), nullptr, hub.get(), appender.get(), &metrics,
        [](std::function<void()> fn) { fn(); }, options);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();
  http::request_parser<http::string_body> parser;
  parser.eager(true);
  parser.header_limit(16 << 10);
  parser.body_limit(1 << 20);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_done()) return 0;
  auto& msg = parser.get();
  Request req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  if (!ParseTarget(req.target, &req.path, &req.query)) return 0;
  req.authorization = std::string(msg[http::field::authorization]);
  req.content_type = std::string(msg[http::field::content_type]);
  req.if_none_match = std::string(msg[http::field::if_none_match]);
  req.last_event_id = std::string(msg["Last-Event-ID"]);
  req.origin = std::string(msg[http::field::origin]);
  req.body = std::move(msg.body());
  // A long-poll would wait for its deadline: keep waits short.
  for (auto& [k, v] : req.query) {
    if (k == "wait") v = "0";
  }
  std::promise<Response> answered;
  auto future = answered.get_future();
  world->api->Handle(std::move(req), [&](Response r, std::string) {
    answered.set_value(std::move(r));
  });
  Response r = future.get();
  if (r.status >= 500 || r.status < 100) std::abort();
  if (r.status >= 400 && r.body.find("\"error\"") == std::string::npos) {
    std::abort();
  }
  return 0;
}
