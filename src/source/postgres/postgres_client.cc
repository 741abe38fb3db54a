// SqlClient over libpq (the library the PostgreSQL store uses): a
// [[source]] with url postgresql:// or postgres://, handed to libpq as it is
// (any libpq connection URI: user, password, host, port, database,
// sslmode...).
//
// One connection, opened at start and again (lazily) after it is lost.
// Autocommit: each UPDATE that marks rows commits by itself. The session
// runs at READ COMMITTED (PostgreSQL's default: it reads only committed
// rows) with TimeZone UTC, so `timestamp without time zone` columns are
// read and written as UTC wall-clock times, like the MySQL client's.
//
// Thread safety: none (TableSource serialises calls).
#include <libpq-fe.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "herald/redact.h"
#include "source/sql_client.h"

namespace herald::detail {

namespace {

struct ConnClose {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultClear {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, ResultClear>;

std::string Trimmed(std::string m) {
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

class PostgresClient : public SqlClient {
 public:
  explicit PostgresClient(std::string url)
      : url_(std::move(url)), redacted_(RedactSecrets(url_)) {}

  Status Connect() {
    conn_.reset();
    const char* keys[] = {"connect_timeout", "options",
                          "fallback_application_name", "dbname", nullptr};
    const char* values[] = {"5", "-c TimeZone=UTC -c DateStyle=ISO",
                            "herald-source", url_.c_str(), nullptr};
    std::unique_ptr<PGconn, ConnClose> c(PQconnectdbParams(keys, values, 1));
    if (!c) return Status::Unavailable("postgresql: out of memory");
    if (PQstatus(c.get()) != CONNECTION_OK) {
      std::string m = Trimmed(PQerrorMessage(c.get()));
      // A URI libpq cannot read is bad input, not an outage.
      if (m.find("invalid") != std::string::npos &&
          m.find("URI") != std::string::npos) {
        return Status::InvalidArgument("postgresql: " + m);
      }
      return Status::Unavailable("postgresql: cannot connect to " + redacted_ +
                                 ": " + m);
    }
    conn_ = std::move(c);
    return Status::OK();
  }

  Result<std::vector<SqlRow>> Query(const std::string& sql) override {
    auto r = Run(sql);
    if (!r.ok()) return r.status();
    PGresult* res = r->get();
    int n = PQnfields(res);
    int count = PQntuples(res);
    std::vector<SqlRow> rows;
    rows.reserve(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) {
      SqlRow row(static_cast<size_t>(n));
      for (int k = 0; k < n; ++k) {
        if (PQgetisnull(res, i, k)) continue;
        row[static_cast<size_t>(k)] = std::string(
            PQgetvalue(res, i, k), static_cast<size_t>(PQgetlength(res, i, k)));
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  Result<int64_t> Exec(const std::string& sql) override {
    auto r = Run(sql);
    if (!r.ok()) return r.status();
    const char* n = PQcmdTuples(r->get());
    return static_cast<int64_t>(n && *n ? std::atoll(n) : 0);
  }

  std::string QuoteIdent(std::string_view name) const override {
    return Quoted(name, '"');
  }
  // standard_conforming_strings is on (the default since 9.1): only the
  // quote is special.
  std::string QuoteText(std::string_view text) const override {
    return Quoted(text, '\'');
  }
  // The statement's start (autocommit: the UPDATE's own transaction), which
  // comes after the acknowledgement it records.
  std::string Now() const override { return "statement_timestamp()"; }
  std::string NowMinus(std::chrono::milliseconds age) const override {
    return "statement_timestamp() - interval '" +
           std::to_string(age.count() * 1000) + " microseconds'";
  }

  Result<std::vector<SqlColumn>> Columns(const std::string& table) override {
    auto rows = Query(
        "SELECT column_name, data_type, character_maximum_length, "
        "datetime_precision FROM information_schema.columns WHERE "
        "table_schema = current_schema() AND table_name = " +
        QuoteText(table) + " ORDER BY ordinal_position");
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return Status::NotFound("no table " + table);
    std::vector<SqlColumn> out;
    for (const auto& r : *rows) {
      SqlColumn c;
      c.name = r[0].value_or("");
      c.type = r[1].value_or("");
      for (auto& ch : c.type) ch = static_cast<char>(std::tolower(ch));
      if (r[2]) c.max_length = std::atoll(r[2]->c_str());
      // datetime_precision is also set for intervals; only timestamps and
      // times keep row times.
      if (r[3] && (c.type.find("timestamp") != std::string::npos ||
                   c.type.find("time") == 0 || c.type == "date")) {
        c.fraction_digits = c.type == "date" ? 0 : std::atoi(r[3]->c_str());
      }
      out.push_back(std::move(c));
    }
    return out;
  }

  std::string_view kind() const override { return "postgresql"; }

 private:
  Result<PgResult> Run(const std::string& sql) {
    if (!conn_ || PQstatus(conn_.get()) == CONNECTION_BAD) {
      HERALD_RETURN_IF_ERROR(Connect());
    }
    PgResult r(PQexec(conn_.get(), sql.c_str()));
    if (r) {
      auto st = PQresultStatus(r.get());
      if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
    }
    std::string m = "postgresql: " + Trimmed(r ? PQresultErrorMessage(r.get())
                                               : PQerrorMessage(conn_.get()));
    const char* state = r ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : "";
    std::string sqlstate = state ? state : "";
    // Class 08 (connection), 57P (shutdown), 53 (resources) and a lost
    // connection are outages; anything else is about the statement.
    if (PQstatus(conn_.get()) == CONNECTION_BAD || sqlstate.empty() ||
        sqlstate.rfind("08", 0) == 0 || sqlstate.rfind("57P", 0) == 0 ||
        sqlstate.rfind("53", 0) == 0) {
      conn_.reset();
      return Status::Unavailable(m);
    }
    return Status::Internal(m);
  }

  const std::string url_;
  const std::string redacted_;
  std::unique_ptr<PGconn, ConnClose> conn_;
};

}  // namespace

Result<std::unique_ptr<SqlClient>> OpenPostgresClient(const std::string& url) {
  auto c = std::make_unique<PostgresClient>(url);
  HERALD_RETURN_IF_ERROR(c->Connect());
  return std::unique_ptr<SqlClient>(std::move(c));
}

}  // namespace herald::detail
