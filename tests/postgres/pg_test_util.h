// Helpers for the PostgreSQL tests: the server URL the test script started
// (HERALD_TEST_PG_URL), raw libpq connections as an application would hold
// them, and a private cluster a test may stop and start.
#pragma once

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "support/test_util.h"

namespace herald::testing {

// The source tree: HERALD_SOURCE_DIR, else the path CMake compiled in.
inline std::string SourceDir() {
  if (const char* d = std::getenv("HERALD_SOURCE_DIR")) return d;
#ifdef HERALD_SOURCE_DIR_DEFAULT
  return HERALD_SOURCE_DIR_DEFAULT;
#else
  return ".";
#endif
}

// Fails the test under CI (env CI set) and skips it elsewhere when no
// PostgreSQL server was started (run the tests through scripts/test.sh or
// tests/support/with-postgres.sh).
#define HERALD_REQUIRE_PG()                                                   \
  do {                                                                        \
    if (!std::getenv("HERALD_TEST_PG_URL")) {                                 \
      if (std::getenv("CI")) {                                                \
        FAIL() << "HERALD_TEST_PG_URL is not set: run the tests through "     \
                  "tests/support/with-postgres.sh";                           \
      }                                                                       \
      GTEST_SKIP() << "HERALD_TEST_PG_URL is not set (no PostgreSQL server)"; \
    }                                                                         \
  } while (0)

struct PgConnCloser {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using PgConn = std::unique_ptr<PGconn, PgConnCloser>;

// A new connection to url; check PQstatus.
inline PgConn PgConnect(const std::string& url) {
  return PgConn(PQconnectdb(url.c_str()));
}

// Runs sql; returns the first column of the first row ("" if none), or
// "ERROR <sqlstate>: <message>".
inline std::string PgExec(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  std::string out;
  auto st = PQresultStatus(r);
  if (st == PGRES_TUPLES_OK) {
    if (PQntuples(r) > 0) out = PQgetvalue(r, 0, 0);
  } else if (st != PGRES_COMMAND_OK) {
    const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    out = std::string("ERROR ") + (code ? code : "?") + ": " +
          PQresultErrorMessage(r);
  }
  PQclear(r);
  return out;
}

// A PostgreSQL cluster of this test's own (tests/support/with-postgres.sh
// run as a child), for tests that stop and start the server. Stopped and
// removed on destruction.
class PrivateCluster {
 public:
  PrivateCluster() {
    std::string src = SourceDir();
    env_file_ = dir_.file("env");
    stop_file_ = dir_.file("stop");
    std::string script = "env | grep ^HERALD_TEST_PG > " + env_file_ +
                         ".tmp && mv " + env_file_ + ".tmp " + env_file_ +
                         "; while [ ! -e " + stop_file_ +
                         " ]; do sleep 0.05; done";
    Child::Options o;
    o.stdout_path = dir_.file("out");
    o.stderr_path = dir_.file("err");
    child_ = std::make_unique<Child>(
        std::vector<std::string>{src + "/tests/support/with-postgres.sh", "sh",
                                 "-c", script},
        o);
    ok_ = WaitFor(
        [&] {
          std::ifstream f(env_file_);
          return f.good() || !child_->running();
        },
        std::chrono::seconds(60));
    std::ifstream f(env_file_);
    std::string line;
    while (std::getline(f, line)) {
      auto eq = line.find('=');
      if (eq != std::string::npos)
        env_[line.substr(0, eq)] = line.substr(eq + 1);
    }
    ok_ = ok_ && env_.count("HERALD_TEST_PG_URL") > 0;
  }
  ~PrivateCluster() {
    std::ofstream(stop_file_) << "stop";
    child_->Wait();
  }

  bool ok() const { return ok_; }
  std::string url() const { return Env("HERALD_TEST_PG_URL"); }
  // Runs pg_ctl on the cluster ("stop -m fast", "start"); its exit status.
  int Ctl(const std::string& args) const {
    std::string out, err;
    return RunCommand({"sh", "-c", Env("HERALD_TEST_PG_CTL") + " " + args},
                      &out, &err);
  }

 private:
  std::string Env(const std::string& k) const {
    auto it = env_.find(k);
    return it == env_.end() ? "" : it->second;
  }
  TempDir dir_;
  std::string env_file_, stop_file_;
  std::unique_ptr<Child> child_;
  std::map<std::string, std::string> env_;
  bool ok_ = false;
};

}  // namespace herald::testing
