// SqlClient over SQLite (a [[source]] with url sqlite:PATH): one
// connection, WAL-friendly busy timeout.
//
// Thread safety: none (TableSource serialises calls).
#include <sqlite3.h>

#include <algorithm>
#include <cctype>

#include "source/sql_client.h"

namespace herald::detail {

namespace {

struct DbClose {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(c));
  return s;
}

class SqliteClient : public SqlClient {
 public:
  explicit SqliteClient(sqlite3* db) : db_(db) {}

  Result<std::vector<SqlRow>> Query(const std::string& sql) override {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql.c_str(), -1, &st, nullptr) !=
        SQLITE_OK) {
      return Error("prepare");
    }
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> owned(
        st, sqlite3_finalize);
    std::vector<SqlRow> rows;
    int n = sqlite3_column_count(st);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      SqlRow row(n);
      for (int i = 0; i < n; ++i) {
        if (sqlite3_column_type(st, i) == SQLITE_NULL) continue;
        const auto* p =
            reinterpret_cast<const char*>(sqlite3_column_text(st, i));
        row[i] = std::string(p, sqlite3_column_bytes(st, i));
      }
      rows.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) return Error("step");
    return rows;
  }

  Result<int64_t> Exec(const std::string& sql) override {
    char* err = nullptr;
    if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &err) !=
        SQLITE_OK) {
      std::string m = err ? err : "unknown error";
      sqlite3_free(err);
      return Status::Unavailable("sqlite: " + m);
    }
    return static_cast<int64_t>(sqlite3_changes(db_.get()));
  }

  std::string QuoteIdent(std::string_view name) const override {
    return Quoted(name, '"');
  }
  std::string QuoteText(std::string_view text) const override {
    return Quoted(text, '\'');
  }
  // datetime() text, the form SQLite's own CURRENT_TIMESTAMP writes.
  std::string Now() const override { return "datetime('now')"; }
  std::string NowMinus(std::chrono::milliseconds age) const override {
    char buf[64];
    std::snprintf(buf, sizeof buf, "datetime('now', '-%.3f seconds')",
                  static_cast<double>(age.count()) / 1000.0);
    return buf;
  }

  Result<std::vector<SqlColumn>> Columns(const std::string& table) override {
    auto rows = Query("PRAGMA table_info(" + QuoteIdent(table) + ")");
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return Status::NotFound("no table " + table);
    std::vector<SqlColumn> out;
    for (const auto& r : *rows) {
      SqlColumn c;
      c.name = r[1].value_or("");
      std::string type = Lower(r[2].value_or(""));
      // SQLite does not enforce lengths: CHAR(1) holds anything.
      auto paren = type.find('(');
      if (paren != std::string::npos) type.resize(paren);
      c.type = type;
      out.push_back(std::move(c));
    }
    return out;
  }

  std::string_view kind() const override { return "sqlite"; }

 private:
  Status Error(const char* what) {
    return Status::Unavailable(std::string("sqlite ") + what + ": " +
                               sqlite3_errmsg(db_.get()));
  }
  std::unique_ptr<sqlite3, DbClose> db_;
};

}  // namespace

Result<std::unique_ptr<SqlClient>> OpenSqliteClient(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
  std::unique_ptr<sqlite3, DbClose> owned(db);
  if (rc != SQLITE_OK) {
    return Status::InvalidArgument(
        "cannot open SQLite database '" + path +
        "': " + (db ? sqlite3_errmsg(db) : "out of memory"));
  }
  sqlite3_busy_timeout(db, 5000);
  return std::unique_ptr<SqlClient>(
      std::make_unique<SqliteClient>(owned.release()));
}

}  // namespace herald::detail
