// SqlClient over libmariadb (Debian's libmariadb-dev), which speaks to both
// MariaDB and MySQL servers: a [[source]] with url mysql:// or mariadb://.
//
// One connection, opened at start and again (lazily) after it is lost.
// Autocommit: each UPDATE that marks rows commits by itself.
//
// Thread safety: none (TableSource serialises calls).
#include <mysql.h>

#include <cctype>
#include <cstdio>

#include "source/sql_client.h"

namespace herald::detail {

namespace {

struct MysqlClose {
  void operator()(MYSQL* m) const { mysql_close(m); }
};
struct ResultFree {
  void operator()(MYSQL_RES* r) const { mysql_free_result(r); }
};

struct MysqlUrl {
  std::string user, password, host = "127.0.0.1", database;
  unsigned port = 3306;
};

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() &&
        std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(
          std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

Result<MysqlUrl> ParseMysqlUrl(const std::string& url) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument(why +
                                   " (expected mysql://USER[:PASSWORD]@HOST"
                                   "[:PORT]/DATABASE)");
  };
  auto scheme = url.find("://");
  std::string_view rest = std::string_view(url).substr(scheme + 3);
  MysqlUrl u;
  auto at = rest.rfind('@');
  if (at == std::string_view::npos) return bad("no user in the URL");
  std::string_view auth = rest.substr(0, at);
  rest = rest.substr(at + 1);
  auto colon = auth.find(':');
  u.user = PercentDecode(auth.substr(0, colon));
  if (colon != std::string_view::npos) {
    u.password = PercentDecode(auth.substr(colon + 1));
  }
  if (u.user.empty()) return bad("no user in the URL");
  auto slash = rest.find('/');
  if (slash == std::string_view::npos) return bad("no database in the URL");
  std::string_view hostport = rest.substr(0, slash);
  std::string_view db = rest.substr(slash + 1);
  auto q = db.find('?');
  if (q != std::string_view::npos) db = db.substr(0, q);
  u.database = PercentDecode(db);
  if (u.database.empty()) return bad("no database in the URL");
  auto pc = hostport.rfind(':');
  if (pc != std::string_view::npos) {
    std::string p(hostport.substr(pc + 1));
    char* end = nullptr;
    long port = std::strtol(p.c_str(), &end, 10);
    if (p.empty() || *end || port < 1 || port > 65535) {
      return bad("bad port '" + p + "'");
    }
    u.port = static_cast<unsigned>(port);
    hostport = hostport.substr(0, pc);
  }
  if (!hostport.empty()) u.host = std::string(hostport);
  return u;
}

class MysqlClient : public SqlClient {
 public:
  explicit MysqlClient(MysqlUrl url) : url_(std::move(url)) {}

  Status Connect() {
    conn_.reset();
    std::unique_ptr<MYSQL, MysqlClose> m(mysql_init(nullptr));
    if (!m) return Status::Internal("mysql_init failed");
    unsigned timeout = 5;
    mysql_options(m.get(), MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_options(m.get(), MYSQL_OPT_READ_TIMEOUT, &timeout);
    mysql_options(m.get(), MYSQL_OPT_WRITE_TIMEOUT, &timeout);
    mysql_options(m.get(), MYSQL_SET_CHARSET_NAME, "utf8mb4");
    // READ COMMITTED, so marking rows never waits on the service's open
    // transactions: under REPEATABLE READ an UPDATE that the optimiser runs
    // as a scan (a small table, a long IN list) locks every row it reads
    // and waits for each row an open transaction inserted; under READ
    // COMMITTED InnoDB skips rows with no committed version (semi-
    // consistent read). Reads only ever need committed rows.
    mysql_options(m.get(), MYSQL_INIT_COMMAND,
                  "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
    if (!mysql_real_connect(m.get(), url_.host.c_str(), url_.user.c_str(),
                            url_.password.c_str(), url_.database.c_str(),
                            url_.port, nullptr, 0)) {
      return Status::Unavailable("mysql: cannot connect to " + url_.host + ":" +
                                 std::to_string(url_.port) + ": " +
                                 mysql_error(m.get()));
    }
    conn_ = std::move(m);
    return Status::OK();
  }

  Result<std::vector<SqlRow>> Query(const std::string& sql) override {
    HERALD_RETURN_IF_ERROR(Run(sql));
    std::unique_ptr<MYSQL_RES, ResultFree> res(mysql_store_result(conn_.get()));
    if (!res) {
      if (mysql_field_count(conn_.get()) == 0) return std::vector<SqlRow>{};
      return Lost("reading a result");
    }
    unsigned n = mysql_num_fields(res.get());
    std::vector<SqlRow> rows;
    while (MYSQL_ROW r = mysql_fetch_row(res.get())) {
      unsigned long* len = mysql_fetch_lengths(res.get());
      SqlRow row(n);
      for (unsigned i = 0; i < n; ++i) {
        if (r[i]) row[i] = std::string(r[i], len[i]);
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  Result<int64_t> Exec(const std::string& sql) override {
    HERALD_RETURN_IF_ERROR(Run(sql));
    return static_cast<int64_t>(mysql_affected_rows(conn_.get()));
  }

  std::string QuoteIdent(std::string_view name) const override {
    return Quoted(name, '`');
  }
  std::string QuoteText(std::string_view text) const override {
    return Quoted(text, '\'', /*double_backslash=*/true);
  }
  std::string Now() const override { return "NOW(6)"; }
  std::string NowMinus(std::chrono::milliseconds age) const override {
    return "NOW(6) - INTERVAL " + std::to_string(age.count() * 1000) +
           " MICROSECOND";
  }

  Result<std::vector<SqlColumn>> Columns(const std::string& table) override {
    auto rows = Query(
        "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, "
        "DATETIME_PRECISION FROM "
        "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND "
        "TABLE_NAME = " +
        QuoteText(table) + " ORDER BY ORDINAL_POSITION");
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return Status::NotFound("no table " + table);
    std::vector<SqlColumn> out;
    for (const auto& r : *rows) {
      SqlColumn c;
      c.name = r[0].value_or("");
      c.type = r[1].value_or("");
      for (auto& ch : c.type) ch = static_cast<char>(std::tolower(ch));
      if (r[2]) c.max_length = std::atoll(r[2]->c_str());
      if (r[3]) c.fraction_digits = std::atoi(r[3]->c_str());
      out.push_back(std::move(c));
    }
    return out;
  }

  std::string_view kind() const override { return "mysql"; }

 private:
  Status Run(const std::string& sql) {
    if (!conn_) HERALD_RETURN_IF_ERROR(Connect());
    if (mysql_real_query(conn_.get(), sql.data(), sql.size()) != 0) {
      return Lost("query");
    }
    return Status::OK();
  }
  // Drops the connection after an error (reconnects on the next call).
  Status Lost(const char* what) {
    std::string m =
        std::string("mysql ") + what + ": " + mysql_error(conn_.get());
    unsigned err = mysql_errno(conn_.get());
    conn_.reset();
    // Server-side errors about the statement (1xxx) are not outages.
    if (err >= 1000 && err < 2000) return Status::Internal(m);
    return Status::Unavailable(m);
  }

  const MysqlUrl url_;
  std::unique_ptr<MYSQL, MysqlClose> conn_;
};

}  // namespace

Result<std::unique_ptr<SqlClient>> OpenMysqlClient(const std::string& url) {
  auto u = ParseMysqlUrl(url);
  if (!u.ok()) return u.status();
  auto c = std::make_unique<MysqlClient>(std::move(*u));
  HERALD_RETURN_IF_ERROR(c->Connect());
  return std::unique_ptr<SqlClient>(std::move(c));
}

}  // namespace herald::detail
