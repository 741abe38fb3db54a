// Helpers shared by herald's tests: temporary directories, child processes,
// polling for a condition, free ports. Header-only; POSIX.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "herald/event.h"

namespace herald::testing {

// A fresh directory under $TMPDIR, removed with everything in it on scope
// exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "herald-test-XXXXXX")
            .string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// An event for `stream` of `type` with a JSON payload ("{}" by default).
inline Event MakeEvent(const std::string& stream, const std::string& type,
                       const std::string& payload = "{}") {
  Event e;
  e.stream = stream;
  e.type = type;
  e.payload = payload;
  return e;
}

// The text of a file ("" when it cannot be read).
inline std::string ReadTextFile(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)),
                     std::istreambuf_iterator<char>());
}

// Path of the built herald binary (CTest sets HERALD_BIN).
inline std::string HeraldBin() {
  const char* b = std::getenv("HERALD_BIN");
  return b ? b : "herald";
}

// Calls `pred` every millisecond or so until it returns true or `timeout`
// passes. Returns its last answer. For conditions no event announces.
inline bool WaitFor(
    const std::function<bool()>& pred,
    std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::microseconds(200);
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(pause);
    if (pause < std::chrono::milliseconds(20)) pause *= 2;
  }
}

// A child process running argv, optionally with stdout/stderr sent to files
// and stdin from a file. Killed (SIGKILL) and reaped on destruction if still
// running.
class Child {
 public:
  struct Options {
    std::string stdin_path;        // empty: /dev/null
    std::string stdout_path;       // empty: inherit
    std::string stderr_path;       // empty: inherit
    std::vector<std::string> env;  // extra NAME=VALUE entries
  };

  Child(const std::vector<std::string>& argv, const Options& options)
      : Child() {
    Start(argv, options);
  }
  explicit Child(const std::vector<std::string>& argv) : Child(argv, {}) {}
  Child() = default;
  Child(Child&& o) noexcept : pid_(o.pid_), status_(o.status_) { o.pid_ = -1; }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st;
      ::waitpid(pid_, &st, 0);
    }
  }

  pid_t pid() const { return pid_; }
  bool running() {
    if (pid_ <= 0) return false;
    int st;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = st;
      pid_ = -1;
      return false;
    }
    return true;
  }
  void Signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // Whether the process has installed a handler for `sig` (Linux: the
  // SigCgt mask of /proc/PID/status), so a signal sent now is handled
  // rather than taking its default action.
  bool Catches(int sig) const {
    if (pid_ <= 0) return false;
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("SigCgt:", 0) == 0) {
        uint64_t mask = std::stoull(line.substr(7), nullptr, 16);
        return (mask >> (sig - 1)) & 1;
      }
    }
    return false;
  }
  // Waits for exit; returns the exit status, or 128 + signal number.
  int Wait() {
    if (pid_ > 0) {
      int st;
      ::waitpid(pid_, &st, 0);
      status_ = st;
      pid_ = -1;
    }
    if (WIFEXITED(status_)) return WEXITSTATUS(status_);
    if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
    return -1;
  }

 private:
  void Start(const std::vector<std::string>& argv, const Options& o) {
    pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ != 0) return;
    // Die with the test: an orphan would hold CTest's output pipe open (and
    // its ports) until the suite's timeout.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    auto redirect = [](const std::string& path, int fd, int flags) {
      int f = ::open(path.empty() ? "/dev/null" : path.c_str(), flags, 0644);
      if (f >= 0) {
        ::dup2(f, fd);
        ::close(f);
      }
    };
    redirect(o.stdin_path, 0, O_RDONLY);
    if (!o.stdout_path.empty())
      redirect(o.stdout_path, 1, O_WRONLY | O_CREAT | O_TRUNC);
    if (!o.stderr_path.empty())
      redirect(o.stderr_path, 2, O_WRONLY | O_CREAT | O_TRUNC);
    for (const auto& kv : o.env) ::putenv(const_cast<char*>(kv.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }

  pid_t pid_ = -1;
  int status_ = 0;
};

// Runs `step` in a loop on a thread until Stop() or destruction (load for
// relay end-to-end tests).
class BackgroundLoop {
 public:
  explicit BackgroundLoop(std::function<void()> step)
      : thread_([this, step] {
          while (!stop_) step();
        }) {}
  ~BackgroundLoop() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Runs argv to completion; returns its exit status and fills *out / *err.
inline int RunCommand(const std::vector<std::string>& argv, std::string* out,
                      std::string* err = nullptr,
                      const std::string& stdin_text = "") {
  TempDir dir;
  Child::Options o;
  o.stdout_path = dir.file("out");
  o.stderr_path = dir.file("err");
  if (!stdin_text.empty()) {
    o.stdin_path = dir.file("in");
    FILE* f = std::fopen(o.stdin_path.c_str(), "wb");
    std::fwrite(stdin_text.data(), 1, stdin_text.size(), f);
    std::fclose(f);
  }
  Child c(argv, o);
  int rc = c.Wait();
  auto slurp = [](const std::string& p) {
    std::string s;
    if (FILE* f = std::fopen(p.c_str(), "rb")) {
      char buf[65536];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
      std::fclose(f);
    }
    return s;
  };
  if (out) *out = slurp(o.stdout_path);
  if (err) *err = slurp(o.stderr_path);
  return rc;
}

// A TCP port on 127.0.0.1 that was free a moment ago.
inline int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

// The store URLs the contract suites run on: SQLite always, PostgreSQL when
// the test script started a server (HERALD_TEST_PG_URL).
// Under CI (env CI set) PostgreSQL is always included, so a missing server
// fails loudly instead of skipping silently (tests are discovered when they
// are built, possibly before the test script started the server).
inline std::vector<std::string> TestBackends() {
#ifdef HERALD_TEST_WITH_POSTGRES
  // Always listed, so a test list made without a server still names the
  // PostgreSQL instances; HERALD_SKIP_UNLESS_BACKEND decides at run time.
  return {"sqlite", "postgresql"};
#else
  return {"sqlite"};
#endif
}

// In a parameterised fixture's SetUp: a PostgreSQL instance with no server
// (HERALD_TEST_PG_URL unset) fails under CI (env CI set) and is skipped
// elsewhere, visibly, rather than passing without running.
#define HERALD_SKIP_UNLESS_BACKEND(backend)                                \
  do {                                                                     \
    if (std::string(backend) == "postgresql" &&                            \
        !std::getenv("HERALD_TEST_PG_URL")) {                              \
      if (std::getenv("CI")) {                                             \
        FAIL() << "HERALD_TEST_PG_URL is not set: run the tests through "  \
                  "tests/support/with-postgres.sh (scripts/test.sh does)"; \
      }                                                                    \
      GTEST_SKIP() << "no PostgreSQL server (HERALD_TEST_PG_URL unset)";   \
    }                                                                      \
  } while (0)

// A URL of an empty store for `backend` ("sqlite" or "postgresql"): an
// SQLite file in `dir`, or a new PostgreSQL database made on the server the
// test script started (HERALD_TEST_PG_URL, a URL ending in "/DBNAME").
inline std::string FreshStoreUrl(const std::string& backend,
                                 const TempDir& dir) {
  if (backend == "sqlite") return "sqlite:" + dir.file("herald.db");
  static int counter = 0;
  const char* env = std::getenv("HERALD_TEST_PG_URL");
  if (!env) {
    // Refused at once; the database name says why.
    return "postgresql://127.0.0.1:1/HERALD_TEST_PG_URL_is_not_set";
  }
  std::string base = env;
  std::string name =
      "herald_t" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
  std::string out;
  int rc = RunCommand({"psql", base, "-qAtc", "CREATE DATABASE " + name}, &out);
  if (rc != 0) return "postgresql://invalid/create-database-failed";
  auto slash = base.rfind('/');
  auto query = base.find('?', slash);
  return base.substr(0, slash + 1) + name +
         (query == std::string::npos ? "" : base.substr(query));
}

}  // namespace herald::testing
