// herald serve: the HTTP API, the relays of the config (routes of herald's
// log and of [[source]] tables) and (PostgreSQL) the sequencer, in one
// process, until SIGTERM/SIGINT.
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ostream>
#include <random>
#include <thread>

#include "cli/cli.h"
#include "herald/config.h"
#include "herald/redact.h"
#include "herald/relay.h"
#include "herald/server.h"
#include "herald/store.h"
#include "herald/table_source.h"
#include "util/thread_annotations.h"
#include "util/thread_name.h"

namespace herald::cli {

namespace {

// --demo: appends a few example order events every second, so a newcomer
// sees events arrive. Owns its thread.
class DemoProducer {
 public:
  explicit DemoProducer(Store* store) : store_(store) {
    thread_ = std::thread([this] { Run(); });
  }
  ~DemoProducer() {
    {
      detail::MutexLock lock(&mu_);
      stop_ = true;
    }
    cv_.SignalAll();
    thread_.join();
  }

 private:
  void Run() {
    detail::NameThisThread("herald-demo");
    static const char* const kSteps[] = {"order.placed", "order.paid",
                                         "order.shipped"};
    static const char* const kItems[] = {"tea", "coffee", "cocoa", "mate"};
    std::mt19937 rng(std::random_device{}());
    int order = 0;
    while (!Stopping()) {
      ++order;
      std::vector<Event> events;
      for (const char* step : kSteps) {
        Event e;
        e.stream = "order-" + std::to_string(order);
        e.type = step;
        e.payload = std::string("{\"order\":") + std::to_string(order) +
                    ",\"item\":\"" + kItems[rng() % 4] +
                    "\",\"quantity\":" + std::to_string(1 + rng() % 5) + "}";
        e.metadata = "{\"source\":\"herald serve --demo\"}";
        events.push_back(std::move(e));
        // One event per step, a moment apart, like a real order.
        (void)store_->Append(std::span<Event>(&events.back(), 1));
        if (PauseOrStop(std::chrono::milliseconds(400))) return;
      }
    }
  }

  bool Stopping() EXCLUDES(mu_) {
    detail::MutexLock lock(&mu_);
    return stop_;
  }
  // Waits `d` or until stopped; true when stopped.
  bool PauseOrStop(std::chrono::milliseconds d) EXCLUDES(mu_) {
    auto until = std::chrono::steady_clock::now() + d;
    detail::MutexLock lock(&mu_);
    while (!stop_ && cv_.WaitUntil(&mu_, until)) {
    }
    return stop_;
  }

  Store* const store_;
  detail::Mutex mu_;
  detail::CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace

int RunServe(const std::vector<std::string>& args, std::ostream& out,
             std::ostream& err) {
  Flags flags;
  Status s = flags.ParseOptions(
      args,
      {{"config", true}, {"listen", true}, {"db", true}, {"demo", false}});
  if (!s.ok()) return Fail(err, s);
  Config config;
  if (flags.Has("config")) {
    auto c = LoadConfig(flags.Get("config"));
    if (!c.ok()) return Fail(err, c.status());
    config = std::move(*c);
  }
  // Flags override HERALD_DB / HERALD_LISTEN, which override the file.
  if (const char* v = std::getenv("HERALD_DB"); v && *v) config.store_url = v;
  if (const char* v = std::getenv("HERALD_LISTEN"); v && *v) {
    config.server.listen = v;
  }
  if (flags.Has("db")) config.store_url = flags.Get("db");
  if (flags.Has("listen")) config.server.listen = flags.Get("listen");
  if (config.store_url.empty()) {
    return Fail(err, Status::InvalidArgument("--db must not be empty"));
  }

  // Pages are a few hundred KB each: keep freed buffers in the heap rather
  // than returning them to the kernel (and faulting them in again) on every
  // request.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);

  InstallStopSignals();
  auto store = OpenStore(config.store_url, config.store_options);
  if (!store.ok()) return Fail(err, store.status());

  // [[source]] tables: each opened (table and columns checked) and its
  // routes added to the one relay, which keeps their state in the store.
  std::vector<std::unique_ptr<EventSource>> sources;
  std::unique_ptr<Relay> relay;
  if (!config.routes.empty()) {
    auto r = Relay::FromConfig(store->get(), config);
    if (!r.ok()) return Fail(err, r.status());
    relay = std::move(*r);
    for (const auto& sc : config.sources) {
      std::vector<std::string> readers;
      for (const auto& rc : config.routes) {
        if (rc.from == sc.name) readers.push_back(rc.name);
      }
      auto source = OpenTableSource(sc, readers, store->get());
      if (!source.ok()) return Fail(err, source.status());
      for (const auto& rc : config.routes) {
        if (rc.from != sc.name) continue;
        Status s = relay->AddRoute(rc, source->get(), sc.poll);
        if (!s.ok()) return Fail(err, s);
      }
      sources.push_back(std::move(*source));
    }
  }

  // The relay starts first: the server's handlers read its status from
  // their threads, and Relay::Start must not run beside them.
  if (relay) {
    Status rs = relay->Start();
    if (!rs.ok()) return Fail(err, rs);
  }
  // Consumers start once the server listens (a consumer may read this very
  // server), and are stopped before it.
  ConsumerRunner consumers;
  ServerOptions options;
  options.config = config.server;
  options.extra_metrics = [&consumers](std::string* m) {
    consumers.RenderMetrics(m);
  };
  if (!sources.empty()) {
    Store* st = store->get();
    options.sources = [&config, &sources, st] {
      std::vector<SourceStatus> out;
      for (size_t i = 0; i < sources.size(); ++i) {
        const SourceConfig& sc = config.sources[i];
        SourceStatus s;
        s.name = sc.name;
        s.url = RedactSecrets(sc.url);
        s.table = sc.table;
        s.mode = sc.id_mode() ? "id" : "flag";
        for (const auto& rc : config.routes) {
          if (rc.from == sc.name) s.routes.push_back(rc.name);
        }
        auto pending = CountPendingRows(sources[i].get(), st);
        auto late = CountLateRows(sources[i].get(), st);
        if (pending.ok()) s.pending = *pending;
        if (late.ok()) {
          s.late = late->total;
          s.last_late_row = late->last_row;
        }
        Status e = pending.ok() ? late.status() : pending.status();
        if (!e.ok()) s.error = RedactSecrets(e.ToString());
        out.push_back(std::move(s));
      }
      return out;
    };
  }
  auto server = Server::Start(store->get(), options, relay.get());
  if (!server.ok()) {
    if (relay) relay->Stop();
    return Fail(err, server.status());
  }
  std::unique_ptr<DemoProducer> demo;
  if (flags.Has("demo")) demo = std::make_unique<DemoProducer>(store->get());
  if (!config.consumers.empty()) {
    std::vector<const ConsumerConfig*> all;
    for (const auto& c : config.consumers) all.push_back(&c);
    Status cs = consumers.Start(all, err);
    if (!cs.ok()) {
      (*server)->Stop();
      if (relay) relay->Stop();
      return Fail(err, cs);
    }
  }

  std::string base = "http://" + (*server)->address();
  err << "herald: serving " << RedactSecrets(config.store_url) << " on "
      << base;
  if (relay) err << " with " << config.routes.size() << " route(s)";
  if (!config.consumers.empty()) {
    err << " and " << config.consumers.size() << " consumer(s)";
  }
  if (demo) err << " (demo producer on: an order event every ~0.4 s)";
  err << "\nherald: try  curl '" << base
      << "/api/events?offset=0&limit=10'   (Ctrl-C stops)\n";
  if (config.server.console) {
    err << "herald: operator console at " << base << "/\n";
  }
  err.flush();
  out.flush();

  Status failure;
  while (!StopRequested() && failure.ok()) {
    failure = consumers.Check();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    // Id mode: each row delivered late, named (as herald relay does).
    for (size_t i = 0; i < sources.size(); ++i) {
      for (const auto& row : TakeLateRows(sources[i].get())) {
        err << "herald: source '" << config.sources[i].name << "': row "
            << row.row_id << " committed after route '" << row.route
            << "' had passed its id (longer than safety_delay): delivered "
               "late, out of its stream's order\n";
        err.flush();
      }
    }
  }
  err << "herald: stopping\n";
  err.flush();
  demo.reset();
  consumers.Stop();
  (*server)->Stop();
  if (relay) relay->Stop();
  if (!failure.ok()) return Fail(err, failure);
  return kExitOk;
}

}  // namespace herald::cli
