// [[source]]: an application's outbox table (the event_record table of
// issue 17, verbatim) relayed in flag mode. Config errors name key and
// line; rows are delivered in id order, marked done only after the
// receiver acknowledged them; rolled-back rows never appear; nothing else
// in the table changes. MariaDB runs as a private server in a temp dir on
// a free port (never a system one).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <map>
#include <mutex>

#include "herald/config.h"
#include "herald/relay.h"
#include "herald/store.h"
#include "herald/table_source.h"
#include "support/test_util.h"

namespace herald {
namespace {

using testing::TempDir;
using testing::WaitFor;

const char* kEventRecordMysql = R"(create table event_record
(
    event_id bigint auto_increment not null primary key comment '이벤트 번호',
    orderNo varchar(32) not null comment '주문번호',
    topic varchar(20) not null comment '토픽',
    message text not null comment '이벤트 메세지',
    published char(1) not null comment '발행 여부',
    published_date datetime null comment '발행 확인 시간',
    created_date datetime not null comment '이벤트 생성 시간'
);)";

const char* kEventRecordSqlite = R"(create table event_record
(
    event_id integer primary key autoincrement not null,
    orderNo varchar(32) not null,
    topic varchar(20) not null,
    message text not null,
    published char(1) not null,
    published_date datetime null,
    created_date datetime not null
);)";

std::string SourceToml(const std::string& url, const std::string& extra = "") {
  return "[[source]]\n"
         "name = \"orders_outbox\"\n"
         "url = \"" +
         url +
         "\"\n"
         "table = \"event_record\"\n"
         "columns = { id = \"event_id\", stream = \"orderNo\", type = "
         "\"topic\", payload = \"message\", occurred_at = \"created_date\" }\n"
         "published = { column = \"published\", pending = \"N\", done = "
         "\"Y\", at = \"published_date\" }\n"
         "min_age = \"0s\"\n"
         "poll = \"20ms\"\n" +
         extra;
}

// ---- Config ---------------------------------------------------------------

TEST(AdoptConfig, ParsesSourceAndFrom) {
  auto c = ParseConfig(SourceToml("mysql://app:secret@127.0.0.1:3306/shop") +
                           "[[route]]\nname = \"r\"\nsender = \"stdout:\"\n"
                           "from = \"orders_outbox\"\n",
                       "h.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->sources.size(), 1u);
  const auto& s = c->sources[0];
  EXPECT_EQ(s.columns.stream, "orderNo");
  EXPECT_EQ(s.published.at, "published_date");
  EXPECT_EQ(s.poll.count(), 20);
  EXPECT_EQ(c->routes[0].from, "orders_outbox");
  EXPECT_EQ(s.LineOf("table"), 4);
}

TEST(AdoptConfig, ErrorsNameKeyAndLine) {
  struct Case {
    std::string toml, want;
  };
  std::vector<Case> cases = {
      {SourceToml("ftp://x"), "h.toml:3: source 'orders_outbox'.url"},
      {SourceToml("sqlite:x.db", "colour = 1\n"),
       "h.toml:9: source 'orders_outbox'.colour: unknown key"},
      {SourceToml("sqlite:x.db", "min_age = \"5 parsecs\"\n"), "h.toml:9"},
      {"[[source]]\nname = \"s\"\nurl = \"sqlite:x\"\ntable = \"t\"\n"
       "columns = { id = \"a\", stream = \"b\", type = \"c\", payload = "
       "\"d\", occurred_at = \"e\", colour = \"f\" }\npublished = { column "
       "= \"p\", pending = \"N\", done = \"Y\" }\n",
       "h.toml:5: source 's'.columns.colour: unknown key"},
      {"[[source]]\nname = \"s\"\nurl = \"sqlite:x\"\ntable = \"t\"\n"
       "columns = { id = \"a\", stream = \"b\", type = \"c\", payload = "
       "\"d\", occurred_at = \"e\" }\n",
       "h.toml:1: source 's'.published: is required"},
      {"[[source]]\nname = \"s\"\nurl = \"sqlite:x\"\ntable = \"t\"\n"
       "columns = { id = \"a\", stream = \"b\", type = \"c\", payload = "
       "\"d\", occurred_at = \"e\" }\npublished = { column = \"p\", "
       "pending = \"N\", done = \"N\" }\n",
       "h.toml:6: source 's'.published: pending and done must differ"},
      {SourceToml("sqlite:x.db") +
           "[[route]]\nname = \"r\"\nsender = \"stdout:\"\nfrom = \"nope\"\n",
       "h.toml:12: route 'r'.from: no [[source]] is named 'nope'"},
  };
  for (const auto& k : cases) {
    auto c = ParseConfig(k.toml, "h.toml");
    ASSERT_FALSE(c.ok()) << k.toml;
    EXPECT_TRUE(c.status().IsInvalidArgument());
    EXPECT_NE(c.status().message().find(k.want), std::string::npos)
        << c.status().message() << "\nwanted: " << k.want;
  }
}

// ---- SQLite ---------------------------------------------------------------

void SqliteExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string m = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << m;
}

std::vector<std::vector<std::string>> SqliteRows(const std::string& path,
                                                 const std::string& sql) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
  std::vector<std::vector<std::string>> out;
  while (sqlite3_step(st) == SQLITE_ROW) {
    std::vector<std::string> row;
    for (int i = 0; i < sqlite3_column_count(st); ++i) {
      auto* t = sqlite3_column_text(st, i);
      row.push_back(t ? reinterpret_cast<const char*>(t) : "NULL");
    }
    out.push_back(std::move(row));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  if (out.empty()) out.push_back({"(no rows)"});
  return out;
}

SourceConfig ParseSource(const std::string& url,
                         const std::string& extra = "") {
  auto c = ParseConfig(SourceToml(url, extra), "h.toml");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c->sources.at(0);
}

TEST(AdoptSqlite, MissingTableOrColumnIsReportedAtStart) {
  TempDir dir;
  std::string db = dir.file("app.db");
  SqliteExec(db, "create table other (x int)");
  auto s = OpenTableSource(ParseSource("sqlite:" + db), {"r"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(
      s.status().message().find("h.toml:4: source 'orders_outbox'.table: table "
                                "'event_record' does not exist"),
      std::string::npos)
      << s.status().message();
  SqliteExec(db,
             "create table event_record (event_id integer primary key, "
             "orderNo text, topic text, message text, published text, "
             "created_date text)");
  s = OpenTableSource(ParseSource("sqlite:" + db), {"r"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(
                "h.toml:6: source 'orders_outbox'.published.at: table "
                "'event_record' has no column 'published_date'"),
            std::string::npos)
      << s.status().message();
}

// Relays rows of `db` through a library Relay whose sender records each
// event and checks, at the moment it acknowledges, that its row is still
// pending (so the mark can only come after the acknowledgement).
struct Recorder {
  std::mutex mu;
  std::vector<Event> got;
  std::vector<std::string> not_pending_at_ack;
};

TEST(AdoptSqlite, FlagModeDeliversInIdOrderAndMarksAfterAck) {
  TempDir dir;
  std::string db = dir.file("app.db");
  SqliteExec(db, kEventRecordSqlite);
  SqliteExec(db, "create table domain (id integer primary key, n int)");
  // Committed rows, one rolled-back transaction, one row already done.
  SqliteExec(db,
             "begin; insert into event_record (orderNo, topic, message, "
             "published, created_date) values ('o1','order.placed','{\"a\":1}',"
             "'N',datetime('now')),('o2','order.placed','{\"a\":2}','N',"
             "datetime('now')),('o1','order.paid','{\"a\":3}','N',"
             "datetime('now')),('o3','order.placed','{}','Y',datetime('now'));"
             " commit;");
  SqliteExec(db,
             "begin; insert into event_record (orderNo, topic, message, "
             "published, created_date) values ('ghost','order.placed','{}',"
             "'N',datetime('now')); rollback;");
  auto store = OpenStore("sqlite:" + dir.file("herald.db"));
  ASSERT_TRUE(store.ok());
  auto source = OpenTableSource(ParseSource("sqlite:" + db), {"r"});
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  Recorder rec;
  RelayOptions opts;
  opts.idle_poll = std::chrono::milliseconds(20);
  Relay relay(source->get(), store->get(), opts);
  RouteConfig route;
  route.name = "r";
  ASSERT_TRUE(relay
                  .AddRoute(route, MakeCallbackSender([&](const Event& e) {
                              auto row = SqliteRows(
                                  db,
                                  "select published from event_record where "
                                  "event_id = " +
                                      std::to_string(e.position));
                              std::lock_guard<std::mutex> l(rec.mu);
                              if (row.empty() || row[0][0] != "N") {
                                rec.not_pending_at_ack.push_back(e.id);
                              }
                              rec.got.push_back(e);
                              return Status::OK();
                            }))
                  .ok());
  ASSERT_TRUE(relay.Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    return SqliteRows(db,
                      "select count(*) from event_record where published = "
                      "'N'")[0][0] == "0";
  }));
  // A row committed later, below nothing: picked up by the flag.
  SqliteExec(db,
             "insert into event_record (orderNo, topic, message, published, "
             "created_date) values ('o2','order.paid','{\"a\":4}','N',"
             "datetime('now'))");
  ASSERT_TRUE(WaitFor([&] {
    return SqliteRows(db,
                      "select count(*) from event_record where published = "
                      "'N'")[0][0] == "0";
  }));
  relay.Stop();
  std::lock_guard<std::mutex> l(rec.mu);
  ASSERT_EQ(rec.got.size(), 4u);
  EXPECT_TRUE(rec.not_pending_at_ack.empty());
  std::vector<int64_t> ids;
  for (const auto& e : rec.got) {
    ids.push_back(e.position);
    EXPECT_EQ(e.id, DerivedEventId("orders_outbox", e.position));
    EXPECT_NE(e.stream, "ghost");
  }
  EXPECT_EQ(ids, (std::vector<int64_t>{1, 2, 3, 5}));
  EXPECT_EQ(rec.got[0].payload, "{\"a\":1}");
  EXPECT_EQ(rec.got[0].type, "order.placed");
  EXPECT_EQ(rec.got[0].stream, "o1");
  EXPECT_GT(rec.got[0].occurred_at_us, 0);
  // Every delivered row has published_date; the one done by the service
  // before was left alone (no published_date written).
  auto rows = SqliteRows(db,
                         "select event_id, published, published_date from "
                         "event_record order by event_id");
  ASSERT_EQ(rows.size(), 5u);
  for (const auto& r : rows) {
    EXPECT_EQ(r[1], "Y");
    if (r[0] == "4") {
      EXPECT_EQ(r[2], "NULL");
    } else {
      EXPECT_NE(r[2], "NULL");
    }
  }
}

TEST(AdoptSqlite, DerivedIdsAreStableUuids) {
  EXPECT_EQ(DerivedEventId("a", 1), DerivedEventId("a", 1));
  EXPECT_NE(DerivedEventId("a", 1), DerivedEventId("a", 2));
  EXPECT_NE(DerivedEventId("a", 1), DerivedEventId("b", 1));
  EXPECT_TRUE(IsUuid(DerivedEventId("a", 1)));
  EXPECT_EQ(DerivedEventId("a", 1)[14], '8');
}

// ---- MariaDB --------------------------------------------------------------

// A private mariadbd: datadir and socket in a temp dir, a free port on
// 127.0.0.1. Started once for the suite; SIGKILLed at the end.
class MariaDb {
 public:
  MariaDb() : port_(testing::FreePort()) {
    std::string out, err;
    int rc = testing::RunCommand(
        {"mariadb-install-db", "--datadir=" + dir_.file("data"),
         "--auth-root-authentication-method=normal", "--skip-test-db"},
        &out, &err);
    if (rc != 0) {
      error_ = "mariadb-install-db failed: " + err;
      return;
    }
    testing::Child::Options o;
    o.stdout_path = dir_.file("mariadbd.out");
    o.stderr_path = dir_.file("mariadbd.err");
    server_ = std::make_unique<testing::Child>(
        std::vector<std::string>{
            "mariadbd", "--no-defaults", "--datadir=" + dir_.file("data"),
            "--socket=" + dir_.file("s"), "--port=" + std::to_string(port_),
            "--bind-address=127.0.0.1", "--user=root", "--skip-name-resolve",
            "--pid-file=" + dir_.file("pid")},
        o);
    bool up =
        testing::WaitFor([&] { return Sql("select 1", "mysql") == "1\n"; },
                         std::chrono::seconds(30));
    if (!up) {
      error_ = "mariadbd did not start: " +
               testing::ReadTextFile(dir_.file("mariadbd.err"));
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
    testing::RunCommand(
        {"mariadb", "--no-defaults", "-uroot", "--socket=" + dir_.file("s"),
         "-N", "-B", db, "-e", sql},
        &out, &err);
    return out + err;
  }

 private:
  TempDir dir_;
  int port_;
  std::unique_ptr<testing::Child> server_;
  std::string error_;
};

class AdoptMariaDb : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { db_ = new MariaDb(); }
  static void TearDownTestSuite() {
    delete db_;
    db_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(db_->error().empty()) << db_->error();
    db_->Sql(
        "drop table if exists event_record; drop table if exists "
        "domain_order;");
    std::string r = db_->Sql(kEventRecordMysql);
    ASSERT_TRUE(r.empty()) << r;
    db_->Sql(
        "create table domain_order (orderNo varchar(32) primary key, "
        "n int not null)");
  }
  static MariaDb* db_;
};
MariaDb* AdoptMariaDb::db_ = nullptr;

TEST_F(AdoptMariaDb, ConfigErrorsAtStart) {
  auto s = OpenTableSource(ParseSource(db_->url()), {"r"});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  // A column that does not exist.
  auto cfg = ParseSource(db_->url());
  cfg.columns.stream = "order_no";
  s = OpenTableSource(cfg, {"r"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(
                "h.toml:5: source 'orders_outbox'.columns.stream: table "
                "'event_record' has no column 'order_no'"),
            std::string::npos)
      << s.status().message();
  // A flag value char(1) cannot hold.
  cfg = ParseSource(db_->url());
  cfg.published.done = "DONE";
  s = OpenTableSource(cfg, {"r"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(
                "source 'orders_outbox'.published.done: 'DONE' cannot be "
                "held by column 'published' (char(1))"),
            std::string::npos)
      << s.status().message();
  // A table that does not exist.
  cfg = ParseSource(db_->url());
  cfg.table = "event_records";
  s = OpenTableSource(cfg, {"r"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("h.toml:4: source 'orders_outbox'.table: "
                                      "table 'event_records' does not exist"),
            std::string::npos)
      << s.status().message();
}

TEST_F(AdoptMariaDb, CliExitsTwoOnAMissingColumn) {
  TempDir dir;
  std::string toml = SourceToml(db_->url()) +
                     "[[route]]\nname = \"r\"\nsender = \"stdout:\"\n"
                     "from = \"orders_outbox\"\n[store]\nurl = \"sqlite:" +
                     dir.file("h.db") + "\"\n";
  size_t at = toml.find("payload = \"message\"");
  toml.replace(at, 19, "payload = \"body\"");
  FILE* f = std::fopen(dir.file("h.toml").c_str(), "w");
  std::fputs(toml.c_str(), f);
  std::fclose(f);
  std::string out, err;
  int rc = testing::RunCommand(
      {testing::HeraldBin(), "relay", "--config", dir.file("h.toml")}, &out,
      &err);
  EXPECT_EQ(rc, 2) << err;
  EXPECT_NE(err.find("h.toml:5: source 'orders_outbox'.columns.payload: "
                     "table 'event_record' has no column 'body'"),
            std::string::npos)
      << err;
}

TEST_F(AdoptMariaDb, RelaysCommittedRowsAndMarksThemAfterAck) {
  // Rows in domain transactions: committed, rolled back, and one held open
  // across the first deliveries (it commits late, below delivered ids).
  db_->Sql(
      "insert into domain_order values ('o1',0),('o2',0),('o3',0);"
      "start transaction; update domain_order set n = n + 1 where orderNo = "
      "'o1'; insert into event_record (orderNo, topic, message, published, "
      "created_date) values ('o1','order.placed','{\"a\":1}','N',now()),"
      "('o1','order.paid','{\"a\":2}','N',now()); commit;"
      "start transaction; insert into event_record (orderNo, topic, message, "
      "published, created_date) values ('ghost','order.placed','{}','N',"
      "now()); rollback;"
      "insert into event_record (orderNo, topic, message, published, "
      "created_date) values ('o2','order.placed','{\"a\":3}','N',now());");
  TempDir dir;
  auto store = OpenStore("sqlite:" + dir.file("herald.db"));
  ASSERT_TRUE(store.ok());
  auto source = OpenTableSource(ParseSource(db_->url()), {"r"});
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  Recorder rec;
  RelayOptions opts;
  opts.idle_poll = std::chrono::milliseconds(20);
  Relay relay(source->get(), store->get(), opts);
  RouteConfig route;
  route.name = "r";
  ASSERT_TRUE(relay
                  .AddRoute(route, MakeCallbackSender([&](const Event& e) {
                              std::string flag = db_->Sql(
                                  "select published from event_record where "
                                  "event_id = " +
                                  std::to_string(e.position));
                              std::lock_guard<std::mutex> l(rec.mu);
                              if (flag != "N\n")
                                rec.not_pending_at_ack.push_back(e.id);
                              rec.got.push_back(e);
                              return Status::OK();
                            }))
                  .ok());
  ASSERT_TRUE(relay.Start().ok());
  auto pending = [&] {
    return db_->Sql(
        "select count(*) from event_record where published = "
        "'N'");
  };
  ASSERT_TRUE(WaitFor([&] { return pending() == "0\n"; })) << pending();
  relay.Stop();
  std::lock_guard<std::mutex> l(rec.mu);
  ASSERT_EQ(rec.got.size(), 3u);
  EXPECT_TRUE(rec.not_pending_at_ack.empty());
  EXPECT_EQ(rec.got[0].stream, "o1");
  EXPECT_EQ(rec.got[0].type, "order.placed");
  EXPECT_EQ(rec.got[1].type, "order.paid");
  EXPECT_EQ(rec.got[2].stream, "o2");
  for (const auto& e : rec.got) {
    EXPECT_NE(e.stream, "ghost");
    EXPECT_EQ(e.id, DerivedEventId("orders_outbox", e.position));
  }
  // Marked with the acknowledgement time; nothing else changed.
  EXPECT_EQ(db_->Sql("select count(*) from event_record where published = "
                     "'Y' and published_date is not null"),
            "3\n");
  EXPECT_EQ(db_->Sql("select group_concat(concat(orderNo,':',topic,':',"
                     "message) order by event_id) from event_record"),
            "o1:order.placed:{\"a\":1},o1:order.paid:{\"a\":2},"
            "o2:order.placed:{\"a\":3}\n");
}

}  // namespace
}  // namespace herald
