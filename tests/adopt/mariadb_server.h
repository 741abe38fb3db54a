// A private MariaDB server for tests and benchmarks of adopted outbox
// tables (Debian mariadb-server): mariadb-install-db into a temp dir, then
// mariadbd on a free 127.0.0.1 port with its socket in that dir (never a
// system server). Database `shop`, user app/secret.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "support/test_util.h"

namespace herald::testing {

// A private mariadbd: datadir and socket in a temp dir, a free port on
// 127.0.0.1. Started once for the suite; SIGKILLed at the end.
class MariaDb {
 public:
  MariaDb() : port_(FreePort()) {
    std::string out, err;
    // Temporary tables in the server's own dir: servers of tests running
    // side by side name theirs alike in a shared /tmp and remove each
    // other's.
    const std::string tmp = dir_.file("tmp");
    if (::mkdir(tmp.c_str(), 0700) != 0) {
      error_ = "cannot create " + tmp;
      return;
    }
    int rc = RunCommand(
        {"mariadb-install-db", "--datadir=" + dir_.file("data"),
         "--tmpdir=" + tmp, "--auth-root-authentication-method=normal",
         "--skip-test-db"},
        &out, &err);
    if (rc != 0) {
      error_ = "mariadb-install-db failed: " + err;
      return;
    }
    Child::Options o;
    o.stdout_path = dir_.file("mariadbd.out");
    o.stderr_path = dir_.file("mariadbd.err");
    server_ = std::make_unique<Child>(
        std::vector<std::string>{
            "mariadbd", "--no-defaults", "--datadir=" + dir_.file("data"),
            "--tmpdir=" + tmp, "--socket=" + dir_.file("s"),
            "--port=" + std::to_string(port_), "--bind-address=127.0.0.1",
            "--user=root", "--skip-name-resolve", "--default-time-zone=+00:00",
            "--pid-file=" + dir_.file("pid")},
        o);
    bool up = WaitFor([&] { return Sql("select 1", "mysql") == "1\n"; },
                      std::chrono::seconds(30));
    if (!up) {
      error_ =
          "mariadbd did not start: " + ReadTextFile(dir_.file("mariadbd.err"));
      return;
    }
    Sql("create database shop; create user app@'127.0.0.1' identified by "
        "'secret'; grant all on shop.* to app@'127.0.0.1';",
        "mysql");
  }
  int port() const { return port_; }
  const std::string& error() const { return error_; }
  std::string url() const {
    return "mysql://app:secret@127.0.0.1:" + std::to_string(port_) + "/shop";
  }
  // Runs SQL with the mariadb client over the socket; returns its output
  // (tab-separated, no headers).
  std::string Sql(const std::string& sql, const std::string& db = "shop") {
    std::string out, err;
    RunCommand({"mariadb", "--no-defaults", "-uroot",
                "--socket=" + dir_.file("s"), "-N", "-B", db, "-e", sql},
               &out, &err);
    return out + err;
  }

 private:
  TempDir dir_;
  int port_;
  std::unique_ptr<Child> server_;
  std::string error_;
};

}  // namespace herald::testing
