// Command dispatch, flag parsing and exit statuses (see cli.h).
#include "cli/cli.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <ostream>

namespace herald::cli {

namespace {

volatile sig_atomic_t g_stop = 0;
void OnStopSignal(int) { g_stop = 1; }

struct Command {
  const char* name;
  const char* summary;
  // What `herald NAME --help` prints (and `herald --help` lists).
  const char* usage;
  int (*run)(const std::vector<std::string>&, std::ostream&, std::ostream&);
};

// Every command of the herald binary, in help order.
const Command kCommands[] = {
    {"append", "append one event to a store and print it",
     "  herald append --db PATH --type TYPE --stream STREAM [--id UUID]\n"
     "                [--metadata JSON] [--content-type CT]\n"
     "                [--expected-version N] [PAYLOAD]\n"
     "      PAYLOAD from the argument, else from stdin.\n",
     RunAppend},
    {"read", "print events from a store as JSON lines (--follow to tail)",
     "  herald read --db PATH [--offset N] [--limit N] [--stream S]\n"
     "              [--type GLOB] [--follow]\n",
     RunRead},
    {"migrate", "create or upgrade herald's schema in a store",
     "  herald migrate --db PATH [--adopt]\n", RunMigrate},
    {"relay",
     "deliver events to the routes of a config (status: how they stand)",
     "  herald relay --config PATH          (until SIGTERM/SIGINT)\n"
     "  herald relay status --config PATH [--route NAME]\n"
     "  herald relay reset --config PATH --route NAME\n"
     "               (--to-position N | --to-time RFC3339)\n",
     RunRelay},
    {"parked", "list, retry or drop a route's or consumer's parked events",
     "  herald parked list|retry|drop --config PATH\n"
     "                (--route NAME | --consumer NAME)\n"
     "                [--id UUID|--all] [--state S] [--limit N]\n",
     RunParked},
    {"consume", "run the [[consumer]] tables of a config (inbox dedupe)",
     "  herald consume --config PATH [--consumer NAME]   (until SIGTERM)\n"
     "  herald consume status --config PATH [--consumer NAME]\n"
     "  herald consume reset --config PATH --consumer NAME\n"
     "               (--to-position N | --to-time RFC3339)\n",
     RunConsume},
    {"serve", "run the HTTP API and the relays of a config",
     "  herald serve [--config PATH] [--listen HOST:PORT] [--db PATH]\n"
     "               [--demo]\n"
     "      Defaults: ./herald.db, 127.0.0.1:8080. See docs/http-api.md.\n",
     RunServe},
    {"pull", "consume a server's events over HTTP, with a checkpoint file",
     "  herald pull --from URL [--token T] --checkpoint FILE\n"
     "              (--exec CMD | --out FILE) [--limit N] [--wait S]\n"
     "              [--type GLOB] [--stream S]\n",
     RunPull},
};

constexpr const char* kFooter =
    "--db takes a file path, sqlite:PATH or postgresql://...\n"
    "Exit status: 0 ok, 1 failure, 2 bad input.\n";

void PrintHelp(std::ostream& out) {
  out << "herald " HERALD_VERSION
         " - transactional outbox, event store and relay\n\n"
         "usage: herald COMMAND [OPTIONS]\n\ncommands:\n";
  for (const auto& c : kCommands) {
    out << "  " << c.name;
    for (size_t i = std::string_view(c.name).size(); i < 10; ++i) out << ' ';
    out << c.summary << "\n";
  }
  out << "\n";
  for (const auto& c : kCommands) out << c.usage;
  out << "\n" << kFooter;
}

// `herald NAME --help`: the command's summary and usage.
void PrintCommandHelp(const Command& c, std::ostream& out) {
  out << "herald " << c.name << " - " << c.summary << "\n\nusage:\n"
      << c.usage << "\n"
      << kFooter;
}

// True when the arguments ask for help: "--help" or "-h" before any "--".
bool AsksForHelp(const std::vector<std::string>& args) {
  for (const auto& a : args) {
    if (a == "--") return false;
    if (a == "--help" || a == "-h") return true;
  }
  return false;
}

}  // namespace

int ExitCodeFor(const Status& s) {
  switch (s.code()) {
    case Status::Code::kOk:
      return kExitOk;
    case Status::Code::kInvalidArgument:
    case Status::Code::kCorruption:
    case Status::Code::kFailedPrecondition:
      return kExitUsage;
    default:
      return kExitFailure;
  }
}

int Fail(std::ostream& err, const Status& s) {
  err << "herald: " << s.message() << "\n";
  err.flush();
  return ExitCodeFor(s);
}

bool ParseInt64(std::string_view text, int64_t* out) {
  if (text.empty() || text.size() > 20) return false;
  std::string s(text);
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno == ERANGE || end != s.c_str() + s.size()) return false;
  if (s[0] != '-' && (s[0] < '0' || s[0] > '9')) return false;
  *out = v;
  return true;
}

Status Flags::ParseOptions(const std::vector<std::string>& args,
                           const std::vector<FlagSpec>& spec) {
  HERALD_RETURN_IF_ERROR(Parse(args, spec));
  if (!positional_.empty()) {
    return Status::InvalidArgument("unexpected argument '" + positional_[0] +
                                   "'");
  }
  return Status::OK();
}

Status Flags::Parse(const std::vector<std::string>& args,
                    const std::vector<FlagSpec>& spec) {
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_done || a.size() < 2 || a.compare(0, 2, "--") != 0) {
      if (!options_done && a.size() > 1 && a[0] == '-' &&
          !(a[1] >= '0' && a[1] <= '9')) {
        return Status::InvalidArgument("unknown option '" + a + "'");
      }
      positional_.push_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    std::string name = a.substr(2);
    std::string value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const FlagSpec* f = nullptr;
    for (const auto& s : spec) {
      if (s.name == name) f = &s;
    }
    if (!f) return Status::InvalidArgument("unknown option '--" + name + "'");
    if (values_.count(name)) {
      return Status::InvalidArgument("option '--" + name +
                                     "' is given more than once");
    }
    if (f->takes_value && !inline_value) {
      if (i + 1 >= args.size()) {
        return Status::InvalidArgument("option '--" + name + "' needs a value");
      }
      value = args[++i];
    } else if (!f->takes_value && inline_value) {
      return Status::InvalidArgument("option '--" + name + "' takes no value");
    }
    values_[name] = value;
  }
  return Status::OK();
}

std::string Flags::Get(const std::string& name,
                       const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

Result<int64_t> Flags::GetInt(const std::string& name, int64_t fallback,
                              int64_t min, int64_t max) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  int64_t v;
  if (!ParseInt64(it->second, &v)) {
    return Status::InvalidArgument(
        "--" + name + " must be a whole number, not '" + it->second + "'");
  }
  if (v < min || v > max) {
    return Status::InvalidArgument("--" + name + " must be between " +
                                   std::to_string(min) + " and " +
                                   std::to_string(max) + ", not " + it->second);
  }
  return v;
}

Result<std::string> Flags::Require(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) {
    return Status::InvalidArgument("--" + name + " is required");
  }
  return it->second;
}

void InstallStopSignals() {
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

bool StopRequested() { return g_stop != 0; }

int Main(const std::vector<std::string>& args, std::ostream& out,
         std::ostream& err) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" ||
      args[0] == "help") {
    PrintHelp(out);
    return args.empty() ? kExitUsage : kExitOk;
  }
  if (args[0] == "--version" || args[0] == "version") {
    out << "herald " HERALD_VERSION "\n";
    return kExitOk;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  for (const auto& c : kCommands) {
    if (args[0] != c.name) continue;
    if (AsksForHelp(rest)) {
      PrintCommandHelp(c, out);
      return kExitOk;
    }
    return c.run(rest, out, err);
  }
  err << "herald: unknown command '" << args[0] << "' (see herald --help)\n";
  return kExitUsage;
}

}  // namespace herald::cli
