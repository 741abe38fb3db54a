// SqlClient: the little a table source needs of a database client, one
// implementation per database (src/source/mysql, src/source/postgres,
// src/source/sqlite).
//
// Thread safety: none; TableSource serialises calls.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "herald/status.h"

namespace herald::detail {

using SqlRow = std::vector<std::optional<std::string>>;  // nullopt = NULL

struct SqlColumn {
  std::string name;
  std::string type;         // lower case: "char", "bigint", "integer"...
  int64_t max_length = -1;  // characters, -1 when unbounded or unknown
  // Digits of fractional seconds a date/time column keeps (0: whole
  // seconds); -1 when not a date/time column or unknown (SQLite).
  int fraction_digits = -1;
};

// `text` between two `quote`s, each `quote` inside doubled; with
// `double_backslash` (MySQL's strings) each backslash too.
inline std::string Quoted(std::string_view text, char quote,
                          bool double_backslash = false) {
  std::string out(1, quote);
  out.reserve(text.size() + 2);
  for (char c : text) {
    if (c == quote || (double_backslash && c == '\\')) out += c;
    out += c;
  }
  out += quote;
  return out;
}

class SqlClient {
 public:
  virtual ~SqlClient() = default;
  // Runs a query; every value as text. Unavailable when the connection is
  // lost (the next call reconnects).
  virtual Result<std::vector<SqlRow>> Query(const std::string& sql) = 0;
  // Runs a statement; returns the rows it changed.
  virtual Result<int64_t> Exec(const std::string& sql) = 0;
  virtual std::string QuoteIdent(std::string_view name) const = 0;
  virtual std::string QuoteText(std::string_view text) const = 0;
  // SQL for now, and now minus `age`, comparable with the table's
  // date/time columns.
  virtual std::string Now() const = 0;
  virtual std::string NowMinus(std::chrono::milliseconds age) const = 0;
  // The table's columns; NotFound when there is no such table.
  virtual Result<std::vector<SqlColumn>> Columns(const std::string& table) = 0;
  // "mysql", "postgresql", "sqlite".
  virtual std::string_view kind() const = 0;
};

#if HERALD_WITH_MYSQL
// URL: mysql:// or mariadb://USER[:PASSWORD]@HOST[:PORT]/DATABASE.
Result<std::unique_ptr<SqlClient>> OpenMysqlClient(const std::string& url);
#endif
#if HERALD_WITH_POSTGRES
// URL: postgresql:// or postgres://, any libpq connection URI.
Result<std::unique_ptr<SqlClient>> OpenPostgresClient(const std::string& url);
#endif
// URL: sqlite:PATH.
Result<std::unique_ptr<SqlClient>> OpenSqliteClient(const std::string& path);

}  // namespace herald::detail
