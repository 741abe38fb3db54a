// SQLite-specific store behaviour: joining the caller's own sqlite3*
// transaction, refusing files that are not herald databases, migrations.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fstream>

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
