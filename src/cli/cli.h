// The herald command line as a library: apps/herald/main.cc calls Main.
//
// Output: JSON lines on `out`, messages on `err`. Exit statuses: 0 success,
// 1 failure (a server or database unavailable, a conflict...), 2 bad input
// (unknown option, malformed value, not a herald database...).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "herald/config.h"
#include "herald/status.h"
#include "herald/store.h"
#include "util/thread_annotations.h"

namespace herald::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Runs `herald args...` (args excludes the program name).
int Main(const std::vector<std::string>& args, std::ostream& out,
         std::ostream& err);

// The exit status for a failed Status: 2 for bad input (InvalidArgument,
// Corruption, FailedPrecondition), 1 otherwise.
int ExitCodeFor(const Status& s);

// Prints "herald: <message>" to err and returns ExitCodeFor(s).
int Fail(std::ostream& err, const Status& s);

// Opens the store at `url` for a command that only reads: read-only (no
// file created, no migration, no write lock). A missing SQLite file is
// InvalidArgument (exit 2). A database whose schema is older than this
// binary's is opened as before (migrated), so an upgrade needs no extra
// step.
Result<std::unique_ptr<Store>> OpenForReading(const std::string& url,
                                              StoreOptions options);

// What a command accepts.
struct FlagSpec {
  std::string name;  // without the leading "--"
  bool takes_value;  // --name VALUE / --name=VALUE, else a switch
};

// Parsed command-line flags.
class Flags {
 public:
  // Parses args against spec. InvalidArgument names an unknown option, a
  // missing value or a repeated option. Arguments not starting with "--" are
  // positional; "--" ends the options.
  Status Parse(const std::vector<std::string>& args,
               const std::vector<FlagSpec>& spec);
  // Parse for a command that takes options only: a positional argument is
  // InvalidArgument naming it.
  Status ParseOptions(const std::vector<std::string>& args,
                      const std::vector<FlagSpec>& spec);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name,
                  const std::string& fallback = "") const;
  const std::vector<std::string>& positional() const { return positional_; }

  // The flag as an integer in [min, max]; `fallback` if absent.
  // InvalidArgument names the flag when it is not a number or out of range.
  Result<int64_t> GetInt(const std::string& name, int64_t fallback, int64_t min,
                         int64_t max) const;
  // A flag that must be present.
  Result<std::string> Require(const std::string& name) const;

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

// Strict decimal parse of the whole text into [min, max].
bool ParseInt64(std::string_view text, int64_t* out);

// Sets a flag on SIGINT and SIGTERM (and ignores SIGPIPE). Commands that
// run until stopped poll StopRequested().
void InstallStopSignals();
bool StopRequested();

// --to-position N | --to-time RFC3339 of the reset commands (exactly one).
struct ResetTarget {
  bool by_time = false;
  int64_t position = 1;  // --to-position
  int64_t time_us = 0;   // --to-time
};
Result<ResetTarget> ParseResetTarget(const Flags& flags);
// The first position in 1..head whose event occurred at or after
// `time_us` (head + 1 when none), by bisection: it assumes occurred_at
// grows with position, as it does for events appended without their own
// occurred_at. `occurred_at(p)` answers the time of position p.
Result<int64_t> BisectPositionAtTime(
    int64_t head, int64_t time_us,
    const std::function<Result<int64_t>(int64_t position)>& occurred_at);
// "HOST:PID:RANDOM", a lease owner name.
std::string HostOwnerName();
// One JSON line of `herald parked list` (routes and consumers alike).
std::string ParkedJson(const ParkedEvent& p);

// Commands. Each takes its own arguments (after the command word).
int RunAppend(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err);
int RunRead(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err);
int RunMigrate(const std::vector<std::string>& args, std::ostream& out,
               std::ostream& err);
// herald relay [status] --config PATH; herald parked list|retry|drop ...
int RunRelay(const std::vector<std::string>& args, std::ostream& out,
             std::ostream& err);
int RunParked(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err);
// serve_command.cc and pull_command.cc (herald_server).
int RunServe(const std::vector<std::string>& args, std::ostream& out,
             std::ostream& err);
int RunPull(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err);
// The [[consumer]] tables of a config, running in this process: for
// `herald consume`, and for `herald serve` (whose /metrics shows them).
struct RunningConsumer;
class ConsumerRunner {
 public:
  ConsumerRunner();
  ~ConsumerRunner();  // Stop()s
  ConsumerRunner(const ConsumerRunner&) = delete;
  ConsumerRunner& operator=(const ConsumerRunner&) = delete;
  // Opens each consumer's inbox, takes its lease (a consumer reading a
  // herald server already running elsewhere is Conflict) and starts it.
  // On failure the ones started are stopped again.
  Status Start(const std::vector<const ConsumerConfig*>& consumers,
               std::ostream& err);
  // Call every few ms: renews the leases every 2 s; returns the error of a
  // consumer that stopped by itself.
  Status Check();
  // Stops every consumer (finishing what is in hand), gives the leases up.
  void Stop();
  // herald_consumer_* lines (Prometheus text) for each running consumer.
  // Any thread.
  void RenderMetrics(std::string* out) const;

 private:
  std::string owner_;
  std::chrono::steady_clock::time_point next_lease_;
  // Written by Start and Stop, read by RenderMetrics on a server thread.
  mutable detail::Mutex mu_;
  std::vector<std::unique_ptr<RunningConsumer>> running_ GUARDED_BY(mu_);
};

// consume_command.cc: herald consume [status|reset] ...; and the parked
// commands of a consumer (herald parked ... --consumer NAME).
int RunConsume(const std::vector<std::string>& args, std::ostream& out,
               std::ostream& err);
int RunConsumerParked(const std::string& action, const Flags& flags,
                      std::ostream& out, std::ostream& err);

}  // namespace herald::cli
