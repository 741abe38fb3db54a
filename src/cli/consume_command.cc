// herald consume: runs the [[consumer]] tables of a config (herald/consumer.h)
//
//   herald consume --config PATH [--consumer NAME]     (until SIGTERM)
//   herald consume status --config PATH [--consumer NAME]
//   herald consume reset --config PATH --consumer NAME
//                        (--to-position N | --to-time RFC3339)
//
// A consumer's handler is `exec` (a command run by /bin/sh per event, the
// event's JSON on stdin, HERALD_EVENT_* in its environment; exit 0 =
// handled, anything else a retryable failure) or `sender` (the event is
// forwarded through a herald sender; its acknowledgement = handled). Either
// way the inbox row is written once the handler succeeded.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ostream>
#include <thread>

#include "cli/cli.h"
#include "consumer/page_client.h"
#include "herald/config.h"
#include "herald/consumer.h"
#include "herald/event_json.h"
#include "herald/json.h"
#include "herald/redact.h"
#include "herald/sender.h"
#include "herald/time.h"
#include "util/thread_annotations.h"

extern char** environ;

namespace herald::cli {

namespace {

// Runs `cmd` with /bin/sh, the event's JSON line on its stdin. Thread-safe
// (no setenv: the environment is built for the child).
Status RunEventCommand(const std::string& cmd, const Event& e) {
  std::vector<std::string> env_text;
  for (char** v = environ; *v; ++v) {
    if (std::strncmp(*v, "HERALD_EVENT_", 13) != 0) env_text.emplace_back(*v);
  }
  env_text.push_back("HERALD_EVENT_ID=" + e.id);
  env_text.push_back("HERALD_EVENT_POSITION=" + std::to_string(e.position));
  env_text.push_back("HERALD_EVENT_TYPE=" + e.type);
  env_text.push_back("HERALD_EVENT_STREAM=" + e.stream);
  std::vector<char*> envp;
  envp.reserve(env_text.size() + 1);
  for (auto& s : env_text) envp.push_back(s.data());
  envp.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Status::Unavailable(std::string("pipe: ") + std::strerror(errno));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  pid_t pid;
  int rc = posix_spawn(&pid, "/bin/sh", &fa, nullptr,
                       const_cast<char* const*>(argv), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[0]);
  if (rc != 0) {
    ::close(fds[1]);
    return Status::Unavailable("cannot run '" + cmd +
                               "': " + std::strerror(rc));
  }
  std::string line;
  AppendEventJson(e, &line);
  line += '\n';
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fds[1], line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // a command that ignores stdin may close it early
    done += static_cast<size_t>(n);
  }
  ::close(fds[1]);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) {
      return Status::Internal("waiting for '" + cmd +
                              "': " + std::strerror(errno));
    }
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return Status::OK();
  std::string why =
      WIFEXITED(st) ? "exited with status " + std::to_string(WEXITSTATUS(st))
                    : "was killed by signal " +
                          std::to_string(WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  return Status::Unavailable("exec command " + why);
}

// A forwarding sender shared by the consumer's workers (a Sender is called
// by one thread at a time).
class Forwarder {
 public:
  explicit Forwarder(std::unique_ptr<Sender> sender)
      : sender_(std::move(sender)) {}
  Status Forward(const Event& e) {
    detail::MutexLock lock(&mu_);
    std::vector<Event> one{e};
    std::vector<SendResult> result(1, SendResult::NotSent());
    sender_->Send(one, result,
                  std::chrono::steady_clock::now() + std::chrono::seconds(30));
    return result[0].status;
  }

 private:
  detail::Mutex mu_;
  std::unique_ptr<Sender> sender_ GUARDED_BY(mu_);
};

}  // namespace

struct RunningConsumer {
  const ConsumerConfig* config = nullptr;
  std::unique_ptr<Store> store;
  std::unique_ptr<Forwarder> forwarder;
  std::unique_ptr<Consumer> consumer;
};

namespace {

using Running = RunningConsumer;

// The consumers --consumer selects (all when absent). InvalidArgument for
// an unknown name or a config without consumers.
Result<std::vector<const ConsumerConfig*>> Select(const Config& config,
                                                  const Flags& flags) {
  std::vector<const ConsumerConfig*> out;
  if (flags.Has("consumer")) {
    const ConsumerConfig* c = config.FindConsumer(flags.Get("consumer"));
    if (!c) {
      std::string names;
      for (const auto& cc : config.consumers) {
        names += (names.empty() ? "" : ", ") + cc.name;
      }
      return Status::InvalidArgument(
          "no consumer named '" + flags.Get("consumer") + "' in " +
          config.path + " (consumers: " + (names.empty() ? "none" : names) +
          ")");
    }
    out.push_back(c);
  } else {
    for (const auto& cc : config.consumers) out.push_back(&cc);
  }
  if (out.empty()) {
    return Status::InvalidArgument(config.path + ": no [[consumer]] table");
  }
  return out;
}

Result<Config> LoadFromFlags(const Flags& flags) {
  auto path = flags.Require("config");
  if (!path.ok()) return path.status();
  return LoadConfig(*path);
}

ConsumerSourceOptions SourceOptionsOf(const ConsumerConfig& c, Store* store,
                                      int max_in_hand) {
  ConsumerSourceOptions so;
  so.consumer = c.name;
  so.url = c.source;
  so.options = c.options;
  so.types = c.types;
  so.max_in_hand = max_in_hand;
  so.state = store;
  so.line = c.line;
  return so;
}

// The first position at or after `time_us` on the consumer's herald
// server: bisection over one-event pages.
Result<int64_t> FindHttpPositionAtTime(const ConsumerConfig& c,
                                       int64_t time_us) {
  detail::PageClientOptions po;
  po.url = c.source;
  if (const OptionValue* v = c.options.Find("token")) po.token = v->string;
  auto client = detail::PageClient::Make(std::move(po));
  if (!client.ok()) return client.status();
  auto head = (*client)->Head();
  if (!head.ok()) return head.status();
  std::vector<EventJsonItem> items;
  return BisectPositionAtTime(
      *head, time_us, [&](int64_t position) -> Result<int64_t> {
        int64_t next = 0;
        HERALD_RETURN_IF_ERROR((*client)->Fetch(
            position, 1, std::chrono::milliseconds(0), &items, &next));
        if (items.empty()) return INT64_MAX;
        return items[0].event.occurred_at_us;
      });
}

Status StartOne(const ConsumerConfig& c, Running* r, std::ostream& err,
                const std::string& owner) {
  r->config = &c;
  auto store = OpenStore(c.inbox);
  if (!store.ok()) {
    return Status(store.status().code(), "consumer '" + c.name + "': inbox " +
                                             RedactSecrets(c.inbox) + ": " +
                                             store.status().message());
  }
  r->store = std::move(*store);
  std::string scheme = SchemeOfUrl(c.source);
  auto got = r->store->AcquireLease(ConsumerCheckpointName(c.name), owner,
                                    std::chrono::seconds(10));
  if (!got.ok()) return got.status();
  if (!*got && (scheme == "http" || scheme == "https")) {
    auto info = r->store->GetLease(ConsumerCheckpointName(c.name));
    std::string holder = "another process";
    if (info.ok() && info->has_value()) holder = (*info)->owner;
    return Status::Conflict("consumer '" + c.name + "' is running in " +
                            holder +
                            ": one process reads a herald server for a "
                            "consumer at a time");
  }
  ConsumerOptions o;
  o.name = c.name;
  o.inbox = r->store.get();
  o.types = c.types;
  o.max_in_flight = c.max_in_flight;
  o.max_in_hand = std::max(256, c.max_in_flight * 64);
  o.retry = c.retry;
  o.on_failure = c.on_failure;
  o.inbox_retention = c.inbox_retention;
  o.on_log = [&err](const std::string& line) {
    static detail::Mutex log_mu;
    detail::MutexLock lock(&log_mu);
    err << "herald: " << line << "\n";
    err.flush();
  };
  auto source =
      MakeConsumerSource(SourceOptionsOf(c, r->store.get(), o.max_in_hand));
  if (!source.ok()) return source.status();
  r->consumer = std::make_unique<Consumer>(o, std::move(*source));
  if (!c.exec.empty()) {
    std::string cmd = c.exec;
    r->consumer->SetExternalHandler(
        [cmd](const Event& e) { return RunEventCommand(cmd, e); });
  } else {
    RouteConfig route;
    route.name = c.name;
    route.sender = c.sender;
    HERALD_RETURN_IF_ERROR(ValidateSenderOptions(&route));
    auto sender = MakeSender(route);
    if (!sender.ok()) return sender.status();
    r->forwarder = std::make_unique<Forwarder>(std::move(*sender));
    Forwarder* f = r->forwarder.get();
    r->consumer->SetExternalHandler(
        [f](const Event& e) { return f->Forward(e); });
  }
  return r->consumer->Start();
}

int RunConsumeStatus(const std::vector<std::string>& args, std::ostream& out,
                     std::ostream& err) {
  Flags flags;
  Status s = flags.ParseOptions(args, {{"config", true}, {"consumer", true}});
  if (!s.ok()) return Fail(err, s);
  auto config = LoadFromFlags(flags);
  if (!config.ok()) return Fail(err, config.status());
  auto list = Select(*config, flags);
  if (!list.ok()) return Fail(err, list.status());
  for (const ConsumerConfig* c : *list) {
    auto store = OpenForReading(c->inbox, StoreOptions{});
    std::string o = "{\"consumer\":" + JsonString(c->name);
    o += ",\"source\":" + JsonString(RedactSecrets(c->source));
    o += ",\"inbox\":" + JsonString(RedactSecrets(c->inbox));
    if (!store.ok()) {
      // A consumer that never ran has no inbox database yet.
      o += ",\"error\":" + JsonString(store.status().message()) + "}";
      out << o << "\n";
      continue;
    }
    auto row = ReadConsumerStatus(store->get(), c->name);
    if (!row.ok()) return Fail(err, row.status());
    auto time_or_null = [](int64_t us) {
      return us ? JsonString(FormatRfc3339(us)) : std::string("null");
    };
    o += ",\"last_handled_at\":" + time_or_null(row->last_handled_at_us);
    o += ",\"handled\":" + std::to_string(row->handled);
    o += ",\"duplicates\":" + std::to_string(row->duplicates);
    o += ",\"lag\":";
    o += row->lag >= 0 ? std::to_string(row->lag) : "null";
    o += ",\"parked\":" + std::to_string(row->parked.parked);
    o += ",\"held\":" + std::to_string(row->parked.held);
    o += ",\"retry\":" + std::to_string(row->parked.retry);
    o += ",\"checkpoint\":";
    o += row->checkpoint ? std::to_string(row->checkpoint) : "null";
    o += ",\"updated_at\":" + time_or_null(row->updated_at_us);
    o += "}";
    out << o << "\n";
  }
  out.flush();
  return kExitOk;
}

int RunConsumeReset(const std::vector<std::string>& args, std::ostream& out,
                    std::ostream& err) {
  Flags flags;
  Status s = flags.ParseOptions(args, {{"config", true},
                                       {"consumer", true},
                                       {"to-position", true},
                                       {"to-time", true}});
  if (!s.ok()) return Fail(err, s);
  auto name = flags.Require("consumer");
  if (!name.ok()) return Fail(err, name.status());
  auto target = ParseResetTarget(flags);
  if (!target.ok()) return Fail(err, target.status());
  auto config = LoadFromFlags(flags);
  if (!config.ok()) return Fail(err, config.status());
  auto list = Select(*config, flags);
  if (!list.ok()) return Fail(err, list.status());
  const ConsumerConfig& c = *list->front();
  std::string scheme = SchemeOfUrl(c.source);
  if (scheme != "http" && scheme != "https") {
    return Fail(err, Status::InvalidArgument(
                         "consumer '" + c.name + "' reads " + scheme +
                         ": consume reset moves the checkpoint of a herald "
                         "server (http/https) source only"));
  }
  int64_t position = target->position;
  if (target->by_time) {
    auto found = FindHttpPositionAtTime(c, target->time_us);
    if (!found.ok()) return Fail(err, found.status());
    position = *found;
  }
  auto store = OpenStore(c.inbox);
  if (!store.ok()) return Fail(err, store.status());
  auto lease = (*store)->GetLease(ConsumerCheckpointName(c.name));
  if (!lease.ok()) return Fail(err, lease.status());
  if (lease->has_value() && (*lease)->expires_at_us > NowMicros()) {
    return Fail(err,
                Status::Conflict("consumer '" + c.name + "' is running in " +
                                 (*lease)->owner + " (lease until " +
                                 FormatRfc3339((*lease)->expires_at_us) +
                                 "): stop it before moving its checkpoint"));
  }
  s = (*store)->SaveCheckpoint(ConsumerCheckpointName(c.name), position);
  if (!s.ok()) return Fail(err, s);
  out << "{\"consumer\":" << JsonString(c.name)
      << ",\"checkpoint\":" << position << "}\n";
  out.flush();
  return kExitOk;
}

}  // namespace

namespace {

// Stops each consumer (finishing what is in hand), then gives its lease up.
void StopAll(std::vector<std::unique_ptr<RunningConsumer>>* list,
             const std::string& owner) {
  for (auto& r : *list) {
    if (r->consumer) r->consumer->Stop();
  }
  for (auto& r : *list) {
    if (r->store) {
      (void)r->store->ReleaseLease(ConsumerCheckpointName(r->config->name),
                                   owner);
    }
  }
  list->clear();
}

}  // namespace

ConsumerRunner::ConsumerRunner() : owner_(HostOwnerName()) {}
ConsumerRunner::~ConsumerRunner() { Stop(); }

Status ConsumerRunner::Start(
    const std::vector<const ConsumerConfig*>& consumers, std::ostream& err) {
  // One lease per consumer, renewed while it runs: `consume reset` refuses
  // to move a running consumer's checkpoint, and a consumer reading a herald
  // server (whose checkpoint is its own) runs in one process at a time.
  std::vector<std::unique_ptr<RunningConsumer>> started;
  for (const ConsumerConfig* c : consumers) {
    started.push_back(std::make_unique<RunningConsumer>());
    Status s = StartOne(*c, started.back().get(), err, owner_);
    if (!s.ok()) {
      StopAll(&started, owner_);
      return s;
    }
  }
  next_lease_ = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  detail::MutexLock lock(&mu_);
  for (auto& r : started) running_.push_back(std::move(r));
  return Status::OK();
}

Status ConsumerRunner::Check() {
  detail::MutexLock lock(&mu_);
  if (std::chrono::steady_clock::now() >= next_lease_) {
    next_lease_ += std::chrono::seconds(2);
    for (auto& r : running_) {
      (void)r->store->AcquireLease(ConsumerCheckpointName(r->config->name),
                                   owner_, std::chrono::seconds(10));
    }
  }
  for (auto& r : running_) {
    if (r->consumer && r->consumer->failed()) return r->consumer->error();
  }
  return Status::OK();
}

void ConsumerRunner::Stop() {
  std::vector<std::unique_ptr<RunningConsumer>> stopping;
  {
    detail::MutexLock lock(&mu_);
    stopping.swap(running_);
  }
  StopAll(&stopping, owner_);
}

void ConsumerRunner::RenderMetrics(std::string* out) const {
  detail::MutexLock lock(&mu_);
  if (running_.empty()) return;
  struct Metric {
    const char* name;
    const char* type;
    const char* help;
  };
  const Metric kMetrics[] = {
      {"herald_consumer_handled_total", "counter",
       "Events handled (the handler succeeded and the inbox committed)."},
      {"herald_consumer_duplicates_total", "counter",
       "Deliveries absorbed by the inbox (already handled)."},
      {"herald_consumer_parked_total", "counter",
       "Events parked after failing max_attempts times."},
      {"herald_consumer_held_total", "counter",
       "Events held behind a parked event of their stream."},
      {"herald_consumer_failures_total", "counter", "Failed handler attempts."},
      {"herald_consumer_in_hand", "gauge",
       "Deliveries taken from the source and not yet acknowledged."},
      {"herald_consumer_lag_events", "gauge",
       "Events waiting for the consumer, where the source knows."},
      {"herald_consumer_last_handled_timestamp_seconds", "gauge",
       "When the consumer last handled an event (Unix time)."},
  };
  std::vector<ConsumerStats> stats;
  for (const auto& r : running_) stats.push_back(r->consumer->stats());
  for (size_t m = 0; m < std::size(kMetrics); ++m) {
    *out += std::string("# HELP ") + kMetrics[m].name + " " + kMetrics[m].help +
            "\n# TYPE " + kMetrics[m].name + " " + kMetrics[m].type + "\n";
    for (size_t i = 0; i < running_.size(); ++i) {
      const ConsumerStats& st = stats[i];
      std::string value;
      switch (m) {
        case 0:
          value = std::to_string(st.handled);
          break;
        case 1:
          value = std::to_string(st.duplicates);
          break;
        case 2:
          value = std::to_string(st.parked);
          break;
        case 3:
          value = std::to_string(st.held);
          break;
        case 4:
          value = std::to_string(st.failures);
          break;
        case 5:
          value = std::to_string(st.in_hand);
          break;
        case 6:
          if (!st.lag) continue;
          value = std::to_string(*st.lag);
          break;
        default: {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.6f",
                        static_cast<double>(st.last_handled_at_us) / 1e6);
          value = buf;
        }
      }
      *out += std::string(kMetrics[m].name) +
              "{consumer=" + JsonString(running_[i]->config->name) + "} " +
              value + "\n";
    }
  }
}

int RunConsumerParked(const std::string& action, const Flags& flags,
                      std::ostream& out, std::ostream& err) {
  auto config = LoadFromFlags(flags);
  if (!config.ok()) return Fail(err, config.status());
  auto list = Select(*config, flags);
  if (!list.ok()) return Fail(err, list.status());
  const ConsumerConfig& c = *list->front();
  auto limit = flags.GetInt("limit", 1000, 1, 100000);
  if (!limit.ok()) return Fail(err, limit.status());
  std::string id = flags.Get("id");
  if (action == "list") {
    auto store = OpenForReading(c.inbox, StoreOptions{});
    if (!store.ok()) return Fail(err, store.status());
    auto rows = ListConsumerParked(store->get(), c.name, flags.Get("state"),
                                   static_cast<int>(*limit));
    if (!rows.ok()) return Fail(err, rows.status());
    for (const auto& p : *rows) out << ParkedJson(p) << "\n";
    out.flush();
    return kExitOk;
  }
  auto store = OpenStore(c.inbox);
  if (!store.ok()) return Fail(err, store.status());
  Status s = action == "retry" ? RetryConsumerParked(store->get(), c.name, id)
                               : DropConsumerParked(store->get(), c.name, id);
  if (!s.ok()) return Fail(err, s);
  out << "{\"consumer\":" << JsonString(c.name) << ",\"" << action
      << "\":" << (id.empty() ? std::string("\"all\"") : JsonString(id))
      << "}\n";
  out.flush();
  return kExitOk;
}

int RunConsume(const std::vector<std::string>& args, std::ostream& out,
               std::ostream& err) {
  if (!args.empty() && args[0] == "status") {
    return RunConsumeStatus({args.begin() + 1, args.end()}, out, err);
  }
  if (!args.empty() && args[0] == "reset") {
    return RunConsumeReset({args.begin() + 1, args.end()}, out, err);
  }
  Flags flags;
  Status s = flags.Parse(args, {{"config", true}, {"consumer", true}});
  if (!s.ok()) return Fail(err, s);
  if (!flags.positional().empty()) {
    return Fail(err, Status::InvalidArgument(
                         "unexpected argument '" + flags.positional()[0] +
                         "' (herald consume [status|reset] --config PATH)"));
  }
  auto config = LoadFromFlags(flags);
  if (!config.ok()) return Fail(err, config.status());
  auto list = Select(*config, flags);
  if (!list.ok()) return Fail(err, list.status());
  InstallStopSignals();
  ConsumerRunner runner;
  s = runner.Start(*list, err);
  if (!s.ok()) return Fail(err, s);
  err << "herald: consuming with " << list->size() << " consumer(s)\n";
  err.flush();
  Status failure;
  while (!StopRequested() && failure.ok()) {
    failure = runner.Check();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  runner.Stop();
  if (!failure.ok()) return Fail(err, failure);
  err << "herald: consumers stopped, what was in hand acknowledged\n";
  err.flush();
  return kExitOk;
}

}  // namespace herald::cli
