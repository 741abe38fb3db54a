// SQLite-specific store behaviour: joining the caller's own sqlite3*
// transaction, refusing files that are not herald databases, migrations.
#include "store/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <vector>

#include "herald/sqlite.h"
#include "herald/store.h"
#include "support/test_util.h"

namespace herald {
namespace {

using testing::TempDir;

// The first column of the first row of `sql` on `db`, as text.
std::string One(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr);
  std::string v;
  if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0)) {
    v = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
  }
  sqlite3_finalize(s);
  return v;
}

struct Db {
  sqlite3* db = nullptr;
  explicit Db(const std::string& path) { sqlite3_open(path.c_str(), &db); }
  ~Db() { sqlite3_close(db); }
  int Exec(const std::string& sql) {
    return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  }
  std::string One(const std::string& sql) { return herald::One(db, sql); }
};

Event MakeEvent() {
  Event e;
  e.stream = "order-7";
  e.type = "order.canceled";
  e.payload = R"({"order_id":7})";
  return e;
}

TEST(SqliteStore, AppendJoinsTheCallersTransaction) {
  TempDir dir;
  std::string path = dir.file("app.db");
  auto store = OpenStore(path);
  ASSERT_TRUE(store.ok());
  Db app(path);
  ASSERT_EQ(app.Exec("CREATE TABLE orders (id INTEGER PRIMARY KEY, status "
                     "TEXT); INSERT INTO orders VALUES (7, 'placed')"),
            SQLITE_OK);

  // Rolled back: neither the domain change nor the event.
  ASSERT_EQ(app.Exec("BEGIN IMMEDIATE"), SQLITE_OK);
  ASSERT_EQ(app.Exec("UPDATE orders SET status = 'canceled' WHERE id = 7"),
            SQLITE_OK);
  Event lost = MakeEvent();
  {
    auto tx = (*store)->Join(app.db);
    ASSERT_TRUE((*store)->Append(*tx, std::span<Event>(&lost, 1)).ok());
  }
  ASSERT_EQ(app.Exec("ROLLBACK"), SQLITE_OK);
  EXPECT_EQ(app.One("SELECT status FROM orders WHERE id = 7"), "placed");
  EXPECT_TRUE((*store)->Get(lost.id).status().IsNotFound());

  // Committed by the caller: both.
  ASSERT_EQ(app.Exec("BEGIN IMMEDIATE"), SQLITE_OK);
  ASSERT_EQ(app.Exec("UPDATE orders SET status = 'canceled' WHERE id = 7"),
            SQLITE_OK);
  Event kept = MakeEvent();
  auto tx = (*store)->Join(app.db);
  ASSERT_TRUE((*store)->Append(*tx, std::span<Event>(&kept, 1)).ok());
  EXPECT_EQ(SqliteHandle(*tx), app.db);
  ASSERT_TRUE(tx->Commit().ok());
  EXPECT_EQ(app.One("SELECT status FROM orders WHERE id = 7"), "canceled");
  auto got = (*store)->Get(kept.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->position, 1);
}

// A connection remembers stream versions between its write transactions
// (so the group commit need not look them up); every other writer's commit
// (another store on the file, the caller's own connection), a rollback and
// an append that fails alone make it look again: versions stay dense.
TEST(SqliteStore, StreamVersionsStayDenseAcrossWriters) {
  TempDir dir;
  std::string path = dir.file("h.db");
  auto a = OpenStore(path);
  auto b = OpenStore(path);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  Db app(path);
  // One event in a transaction of its own, as the appender's groups are.
  auto append = [](Store& s) -> int64_t {
    auto tx = s.Begin();
    EXPECT_TRUE(tx.ok());
    Event e = MakeEvent();
    auto r = s.Append(**tx, std::span<Event>(&e, 1));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE((*tx)->Commit().ok());
    return e.stream_version;
  };
  int64_t want = 0;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(append(**a), ++want);
    EXPECT_EQ(append(**a), ++want);
    EXPECT_EQ(append(**b), ++want);
    ASSERT_EQ(app.Exec("BEGIN IMMEDIATE"), SQLITE_OK);
    {
      Event e = MakeEvent();
      auto tx = (*a)->Join(app.db);
      auto r = (*a)->Append(*tx, std::span<Event>(&e, 1));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(e.stream_version, ++want);
    }
    ASSERT_EQ(app.Exec("COMMIT"), SQLITE_OK);
  }
  {
    auto tx = (*a)->Begin();
    ASSERT_TRUE(tx.ok());
    Event e = MakeEvent();
    ASSERT_TRUE((*a)->Append(**tx, std::span<Event>(&e, 1)).ok());
    EXPECT_EQ(e.stream_version, want + 1);
    ASSERT_TRUE((*tx)->Rollback().ok());
  }
  EXPECT_EQ(append(**a), ++want);
  {
    auto tx = (*a)->Begin();
    ASSERT_TRUE(tx.ok());
    Event first = MakeEvent();
    ASSERT_TRUE((*a)->Append(**tx, std::span<Event>(&first, 1)).ok());
    EXPECT_EQ(first.stream_version, ++want);
    std::vector<Event> refused = {MakeEvent(), MakeEvent()};
    AppendOptions expect_new;
    expect_new.expected_version = 0;
    EXPECT_EQ((*a)->Append(**tx, std::span<Event>(refused), expect_new)
                  .status()
                  .code(),
              Status::Code::kConflict);
    Event second = MakeEvent();
    ASSERT_TRUE((*a)->Append(**tx, std::span<Event>(&second, 1)).ok());
    EXPECT_EQ(second.stream_version, ++want);
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  EXPECT_EQ(append(**b), ++want);
  EXPECT_EQ(append(**a), ++want);
  EXPECT_EQ(app.One("SELECT count(*) FROM herald_events"),
            std::to_string(want));
  EXPECT_EQ(app.One("SELECT max(stream_version) FROM herald_events"),
            std::to_string(want));
}

// A transaction whose connection was lent out (native_handle) does not
// leave its stream versions behind: here the caller's savepoint takes an
// append back, unseen by the store, and the next append still follows the
// stored version.
TEST(SqliteStore, StreamVersionsIgnoreWhatTheCallersSqlUndid) {
  TempDir dir;
  auto store = OpenStore(dir.file("h.db"));
  ASSERT_TRUE(store.ok());
  auto append = [&](Transaction& tx) -> int64_t {
    Event e = MakeEvent();
    auto r = (*store)->Append(tx, std::span<Event>(&e, 1));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return e.stream_version;
  };
  {
    auto tx = (*store)->Begin();
    ASSERT_TRUE(tx.ok());
    EXPECT_EQ(append(**tx), 1);
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  {
    auto tx = (*store)->Begin();
    ASSERT_TRUE(tx.ok());
    sqlite3* db = SqliteHandle(**tx);
    ASSERT_EQ(sqlite3_exec(db, "SAVEPOINT caller", nullptr, nullptr, nullptr),
              SQLITE_OK);
    EXPECT_EQ(append(**tx), 2);
    ASSERT_EQ(sqlite3_exec(db, "ROLLBACK TO caller; RELEASE caller", nullptr,
                           nullptr, nullptr),
              SQLITE_OK);
    EXPECT_EQ(append(**tx), 2);
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  {
    auto tx = (*store)->Begin();
    ASSERT_TRUE(tx.ok());
    EXPECT_EQ(append(**tx), 3);
    ASSERT_TRUE((*tx)->Commit().ok());
  }
}

// AppendOptions::validated: the caller checked the events (herald serve,
// on its I/O thread), so the store does not check them again.
TEST(SqliteStore, ValidatedEventsAreNotCheckedAgain) {
  TempDir dir;
  auto store = OpenStore(dir.file("h.db"));
  ASSERT_TRUE(store.ok());
  Event bad = MakeEvent();
  bad.payload = "{not json";
  EXPECT_EQ((*store)->Append(std::span<Event>(&bad, 1)).status().code(),
            Status::Code::kInvalidArgument);
  AppendOptions checked;
  checked.validated = true;
  ASSERT_TRUE((*store)->Append(std::span<Event>(&bad, 1), checked).ok());
  auto got = (*store)->Get(bad.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->payload, "{not json");
}

TEST(SqliteStore, DomainChangeThroughTheStoresTransaction) {
  TempDir dir;
  auto store = OpenStore(dir.file("h.db"));
  ASSERT_TRUE(store.ok());
  auto tx = (*store)->Begin();
  ASSERT_TRUE(tx.ok());
  sqlite3* db = SqliteHandle(**tx);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  Event e = MakeEvent();
  ASSERT_TRUE((*store)->Append(**tx, std::span<Event>(&e, 1)).ok());
  ASSERT_TRUE((*tx)->Commit().ok());
  Db check(dir.file("h.db"));
  EXPECT_EQ(check.One("SELECT count(*) FROM t"), "1");
  EXPECT_EQ(check.One("SELECT count(*) FROM herald_events"), "1");
  EXPECT_EQ(check.One("PRAGMA journal_mode"), "wal");
}

TEST(SqliteStore, CheckpointThresholdIsAnOption) {
  TempDir dir;
  auto store = OpenStore(dir.file("h.db"));
  ASSERT_TRUE(store.ok());
  auto tx = (*store)->Begin();
  ASSERT_TRUE(tx.ok());
  auto pages = [](Transaction& tx) {
    return One(SqliteHandle(tx), "PRAGMA wal_autocheckpoint");
  };
  EXPECT_EQ(pages(**tx), "10000");
  ASSERT_TRUE((*tx)->Commit().ok());

  StoreOptions o;
  o.sqlite_checkpoint_pages = 500;
  auto small = OpenStore(dir.file("small.db"), o);
  ASSERT_TRUE(small.ok());
  auto tx2 = (*small)->Begin();
  ASSERT_TRUE(tx2.ok());
  EXPECT_EQ(pages(**tx2), "500");
  ASSERT_TRUE((*tx2)->Commit().ok());

  o.sqlite_checkpoint_pages = -1;
  auto bad = OpenStore(dir.file("bad.db"), o);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().IsInvalidArgument());
  EXPECT_NE(bad.status().message().find("sqlite_checkpoint_pages"),
            std::string::npos);
}

TEST(SqliteStore, RefusesATextFile) {
  TempDir dir;
  std::string path = dir.file("notes.txt");
  std::ofstream(path) << "shopping list\n";
  auto store = OpenStore(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Status::Code::kCorruption);
  EXPECT_NE(store.status().message().find("not a herald database"),
            std::string::npos);
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(content, "shopping list\n") << "file left unchanged";
}

TEST(SqliteStore, RefusesAnotherApplicationsDatabaseUnlessAdopting) {
  TempDir dir;
  std::string path = dir.file("other.db");
  {
    Db other(path);
    ASSERT_EQ(other.Exec("CREATE TABLE customers (id INTEGER)"), SQLITE_OK);
  }
  auto store = OpenStore(path);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("not a herald database"),
            std::string::npos);
  {
    Db other(path);
    EXPECT_EQ(other.One("SELECT count(*) FROM sqlite_master WHERE name LIKE "
                        "'herald_%'"),
              "0")
        << "nothing created";
  }
  StoreOptions adopt;
  adopt.adopt = true;
  ASSERT_TRUE(OpenStore(path, adopt).ok());
  EXPECT_TRUE(OpenStore(path).ok()) << "a herald database from now on";
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

TEST(SqliteStore, AnotherApplicationsDatabaseIsLeftByteForByte) {
  TempDir dir;
  std::string path = dir.file("other.db");
  {
    Db other(path);
    ASSERT_EQ(other.Exec("CREATE TABLE customers (id INTEGER, name TEXT);"
                         "INSERT INTO customers VALUES (1, 'ada');"),
              SQLITE_OK);
    EXPECT_EQ(other.One("PRAGMA journal_mode"), "delete");
  }
  std::string before = ReadBytes(path);
  ASSERT_FALSE(before.empty());
  for (bool read_only : {false, true}) {
    StoreOptions options;
    options.read_only = read_only;
    auto store = OpenStore(path, options);
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), Status::Code::kCorruption);
    EXPECT_NE(store.status().message().find(path), std::string::npos);
    EXPECT_EQ(ReadBytes(path), before) << "byte-for-byte unchanged";
  }
  Db other(path);
  EXPECT_EQ(other.One("PRAGMA journal_mode"), "delete")
      << "not switched to WAL";
}

// Sets and clears the immutable attribute (chattr +i), which stops writes
// even by root; skips when the file system or the user cannot.
class Immutable {
 public:
  explicit Immutable(std::string path) : path_(std::move(path)) {
    std::string out;
    ok_ = testing::RunCommand({"chattr", "+i", path_}, &out) == 0;
  }
  ~Immutable() {
    std::string out;
    if (ok_) (void)testing::RunCommand({"chattr", "-i", path_}, &out);
  }
  bool ok() const { return ok_; }

 private:
  std::string path_;
  bool ok_ = false;
};

// A database file nobody may write, in a directory nobody may write (as on
// a read-only mount). Root ignores chmod, so the immutable attribute
// (chattr +i) makes both read-only; skipped where chattr is unavailable.
TEST(SqliteStore, ReadsAFileNobodyMayWrite) {
  TempDir dir;
  std::string sub = dir.file("ro");
  ASSERT_TRUE(std::filesystem::create_directory(sub));
  std::string path = sub + "/h.db";
  std::string id;
  {
    auto store = OpenStore(path);
    ASSERT_TRUE(store.ok());
    Event e = MakeEvent();
    ASSERT_TRUE((*store)->Append(std::span<Event>(&e, 1)).ok());
    id = e.id;
  }
  ::chmod(path.c_str(), 0444);
  Immutable file(path);
  if (!file.ok()) GTEST_SKIP() << "chattr +i is not available here";
  Immutable directory(sub);
  ASSERT_TRUE(directory.ok());
  // A write open is refused (it would migrate under a write lock)...
  auto writer = OpenStore(path);
  EXPECT_FALSE(writer.ok());
  // ... a read-only open reads.
  StoreOptions ro;
  ro.read_only = true;
  auto store = OpenStore(path, ro);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto page = (*store)->Read(ReadRequest{});
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->events.size(), 1u);
  EXPECT_EQ(page->events[0].id, id);
  EXPECT_EQ((*store)->Get(id)->id, id);
}

TEST(SqliteStore, ReadOnlyOpenDoesNotWaitForAWriter) {
  TempDir dir;
  std::string path = dir.file("h.db");
  {
    auto store = OpenStore(path);
    ASSERT_TRUE(store.ok());
    Event e = MakeEvent();
    ASSERT_TRUE((*store)->Append(std::span<Event>(&e, 1)).ok());
  }
  Db writer(path);
  ASSERT_EQ(writer.Exec("BEGIN IMMEDIATE; INSERT INTO herald_checkpoints "
                        "VALUES ('x', 1, 0)"),
            SQLITE_OK);
  StoreOptions ro;
  ro.read_only = true;
  ro.busy_timeout = std::chrono::milliseconds(3000);
  auto t0 = std::chrono::steady_clock::now();
  auto store = OpenStore(path, ro);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto page = (*store)->Read(ReadRequest{});
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  EXPECT_EQ(page->events.size(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2))
      << "no wait for the writer's lock";
  // A write open (which migrates under BEGIN IMMEDIATE) does wait.
  StoreOptions rw;
  rw.busy_timeout = std::chrono::milliseconds(100);
  EXPECT_FALSE(OpenStore(path, rw).ok());
  writer.Exec("ROLLBACK");
}

TEST(SqliteStore, ReadOnlyOpenOfAMissingFileCreatesNothing) {
  TempDir dir;
  std::string path = dir.file("missing.db");
  StoreOptions ro;
  ro.read_only = true;
  auto store = OpenStore(path, ro);
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(store.status().IsNotFound()) << store.status().ToString();
  EXPECT_NE(store.status().message().find(path), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(SqliteStore, SchemaOneMovesRouteErrorsOutOfTheLeaseTable) {
  TempDir dir;
  std::string path = dir.file("h.db");
  ASSERT_TRUE(OpenStore(path).ok());
  {
    // Back to schema 1 as an older herald left it: the route's last error
    // in a lease row.
    Db db(path);
    ASSERT_EQ(db.Exec("DROP TABLE herald_route_status;"
                      "DROP INDEX herald_inbox_by_time;"
                      "ALTER TABLE herald_parked DROP COLUMN event;"
                      "ALTER TABLE herald_parked DROP COLUMN first_failed_at;"
                      "UPDATE herald_meta SET value = '1' "
                      "WHERE key = 'schema_version';"
                      "INSERT INTO herald_leases VALUES "
                      "('relay-error/billing', 'HTTP 500', 1234);"
                      "INSERT INTO herald_leases VALUES "
                      "('relay/billing', 'host:1:a', 99);"),
              SQLITE_OK);
  }
  auto store = OpenStore(path);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto row = (*store)->GetRouteStatus("billing");
  ASSERT_TRUE(row.ok());
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ((*row)->last_error, "HTTP 500");
  EXPECT_EQ((*row)->last_error_at_us, 1234);
  EXPECT_FALSE((*store)->GetLease("relay-error/billing")->has_value());
  EXPECT_TRUE((*store)->GetLease("relay/billing")->has_value());
  Db db(path);
  EXPECT_EQ(db.One("SELECT value FROM herald_meta WHERE key = "
                   "'schema_version'"),
            std::to_string(detail::kSqliteSchemaVersion))
      << "migrated to the current schema";
}

TEST(SqliteStore, IdsStoredInUpperCaseBeforeAreStillFound) {
  TempDir dir;
  std::string path = dir.file("h.db");
  auto store = OpenStore(path);
  ASSERT_TRUE(store.ok());
  Event e = MakeEvent();
  ASSERT_TRUE((*store)->Append(std::span<Event>(&e, 1)).ok());
  std::string upper = e.id;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  {
    Db db(path);
    ASSERT_EQ(db.Exec("UPDATE herald_events SET id = '" + upper + "'"),
              SQLITE_OK);
  }
  auto got = (*store)->Get(upper);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->id, upper);
}

TEST(SqliteStore, RefusesANewerSchema) {
  TempDir dir;
  std::string path = dir.file("h.db");
  ASSERT_TRUE(OpenStore(path).ok());
  {
    Db db(path);
    ASSERT_EQ(db.Exec("UPDATE herald_meta SET value = '999' WHERE key = "
                      "'schema_version'"),
              SQLITE_OK);
  }
  auto store = OpenStore(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("newer"), std::string::npos);
}

TEST(SqliteStore, UnmigratedDatabaseNeedsMigrateWhenNotAllowed) {
  TempDir dir;
  StoreOptions no_migrate;
  no_migrate.migrate = false;
  auto store = OpenStore(dir.file("new.db"), no_migrate);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("herald migrate"), std::string::npos);
}

TEST(SqliteStore, UrlForms) {
  TempDir dir;
  EXPECT_TRUE(OpenStore("sqlite:" + dir.file("a.db")).ok());
  EXPECT_TRUE(OpenStore("sqlite://" + dir.file("b.db")).ok());
  EXPECT_TRUE(OpenStore("ftp://x/y").status().IsInvalidArgument());
  EXPECT_TRUE(OpenStore("sqlite:").status().IsInvalidArgument());
}

}  // namespace
}  // namespace herald
