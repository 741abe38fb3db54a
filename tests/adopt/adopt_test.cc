// [[source]]: an application's outbox table (the event_record table of
// issue 17, verbatim) relayed in flag mode. Config errors name key and
// line; rows are delivered in id order, marked done only after the
// receiver acknowledged them; rolled-back rows never appear; nothing else
// in the table changes. MariaDB runs as a private server in a temp dir on
// a free port (never a system one).
#include <gtest/gtest.h>
#include <sqlite3.h>
#if HERALD_WITH_POSTGRES
#include <libpq-fe.h>
#endif

#include <cmath>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "adopt/mariadb_server.h"
#include "herald/config.h"
#include "herald/json.h"
#include "herald/relay.h"
#include "herald/store.h"
#include "herald/table_source.h"
#include "server/server_test_util.h"  // HttpClient, ServeProcess
#include "support/test_util.h"

namespace herald {
namespace {

using testing::TempDir;
using testing::WaitFor;

// Tab-separated client output (mariadb -B, psql -At -F'\t'): one row a
// line, its columns.
std::vector<std::vector<std::string>> TsvRows(const std::string& text) {
  std::istringstream ss(text);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(ss, line)) {
    std::vector<std::string> cols;
    std::string col;
    std::istringstream ls(line);
    while (std::getline(ls, col, '\t')) cols.push_back(col);
    rows.push_back(std::move(cols));
  }
  return rows;
}

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
       "h.toml:1: source 's'.safety_delay: is required in id mode"},
      {"[[route]]\nname = \"r\"\nsender = \"herald:\"\n",
       "h.toml:3: route 'r'.sender: herald: appends into herald's own log"},
      {"[[route]]\nname = \"r\"\nsender = \"herald:x\"\n",
       "h.toml:3: route 'r'.sender: 'herald:x': herald: takes nothing"},
      {SourceToml("sqlite:x.db", "safety_delay = \"5s\"\n"),
       "h.toml:9: source 'orders_outbox'.safety_delay: is for id mode"},
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

// Each route's acknowledgements of rows another route has not acknowledged
// yet are kept in herald's relay state: after a restart such a row goes
// again only to the route that had not acknowledged it, and the saved
// progress is gone once the row is marked.
TEST(AdoptSqlite, RouteProgressSurvivesARestart) {
  TempDir dir;
  std::string db = dir.file("app.db");
  SqliteExec(db, kEventRecordSqlite);
  SqliteExec(db,
             "insert into event_record (orderNo, topic, message, published, "
             "created_date) values ('o1','order.placed','{}','N',"
             "datetime('now')),('o2','order.placed','{}','N',datetime('now')),"
             "('o1','order.paid','{}','N',datetime('now'))");
  auto store = OpenStore("sqlite:" + dir.file("herald.db"));
  ASSERT_TRUE(store.ok());
  RelayOptions opts;
  opts.idle_poll = std::chrono::milliseconds(20);
  RouteConfig a, b;
  a.name = "a";
  b.name = "b";
  b.retry.backoff_initial = std::chrono::milliseconds(5);
  b.retry.backoff_max = std::chrono::milliseconds(20);
  std::mutex mu;
  std::vector<int64_t> got_a, got_b;
  auto recorder = [&](std::vector<int64_t>* got, bool accept) {
    return MakeCallbackSender([&mu, got, accept](const Event& e) {
      std::lock_guard<std::mutex> l(mu);
      if (!accept) return Status::Unavailable("receiver b is down");
      got->push_back(e.position);
      return Status::OK();
    });
  };
  auto saved = [&] {
    auto list = (*store)->ListCheckpoints("adopt/orders_outbox/");
    EXPECT_TRUE(list.ok()) << list.status().ToString();
    std::vector<std::string> names;
    if (list.ok()) {
      for (const auto& [name, v] : *list) names.push_back(name);
    }
    return names;
  };
  {
    // Route b's receiver is down: a acknowledges every row, none is marked.
    auto source =
        OpenTableSource(ParseSource("sqlite:" + db), {"a", "b"}, store->get());
    ASSERT_TRUE(source.ok()) << source.status().ToString();
    Relay relay(source->get(), store->get(), opts);
    ASSERT_TRUE(relay.AddRoute(a, recorder(&got_a, true)).ok());
    ASSERT_TRUE(relay.AddRoute(b, recorder(&got_b, false)).ok());
    ASSERT_TRUE(relay.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return saved().size() == 3; }));
    relay.Stop();
  }
  EXPECT_EQ(saved(), (std::vector<std::string>{"adopt/orders_outbox/1/a",
                                               "adopt/orders_outbox/2/a",
                                               "adopt/orders_outbox/3/a"}));
  EXPECT_EQ(SqliteRows(db,
                       "select count(*) from event_record where "
                       "published = 'N'")[0][0],
            "3");
  {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_EQ(got_a, (std::vector<int64_t>{1, 2, 3}));
    got_a.clear();
  }
  // Restarted with b's receiver back: b gets every row, a none again.
  {
    auto source =
        OpenTableSource(ParseSource("sqlite:" + db), {"a", "b"}, store->get());
    ASSERT_TRUE(source.ok()) << source.status().ToString();
    Relay relay(source->get(), store->get(), opts);
    ASSERT_TRUE(relay.AddRoute(a, recorder(&got_a, true)).ok());
    ASSERT_TRUE(relay.AddRoute(b, recorder(&got_b, true)).ok());
    ASSERT_TRUE(relay.Start().ok());
    ASSERT_TRUE(WaitFor([&] {
      return SqliteRows(db,
                        "select count(*) from event_record where "
                        "published = 'N'")[0][0] == "0";
    }));
    relay.Stop();
  }
  std::lock_guard<std::mutex> l(mu);
  EXPECT_TRUE(got_a.empty());
  EXPECT_EQ(got_b, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_TRUE(saved().empty());
}

// Two relays (as two processes running one config would, each holding the
// lease of one route): route a in one, route b in the other. Each row is
// marked once both acknowledged it, whichever came second.
TEST(AdoptSqlite, RoutesOfOneSourceInTwoRelaysMarkRows) {
  TempDir dir;
  std::string db = dir.file("app.db");
  SqliteExec(db, kEventRecordSqlite);
  std::string values;
  for (int i = 0; i < 40; ++i) {
    values += std::string(values.empty() ? "" : ",") + "('o" +
              std::to_string(i % 4) + "','order.placed','{}','N'," +
              "datetime('now'))";
  }
  SqliteExec(db,
             "insert into event_record (orderNo, topic, message, published, "
             "created_date) values " +
                 values);
  auto store = OpenStore("sqlite:" + dir.file("herald.db"));
  ASSERT_TRUE(store.ok());
  RelayOptions opts;
  opts.idle_poll = std::chrono::milliseconds(20);
  std::mutex mu;
  std::map<std::string, std::vector<int64_t>> got;
  auto source1 =
      OpenTableSource(ParseSource("sqlite:" + db), {"a", "b"}, store->get());
  auto source2 =
      OpenTableSource(ParseSource("sqlite:" + db), {"a", "b"}, store->get());
  ASSERT_TRUE(source1.ok() && source2.ok());
  Relay relay1(source1->get(), store->get(), opts);
  Relay relay2(source2->get(), store->get(), opts);
  for (auto [relay, name] :
       {std::pair<Relay*, const char*>{&relay1, "a"}, {&relay2, "b"}}) {
    RouteConfig r;
    r.name = name;
    r.batch = 7;
    ASSERT_TRUE(relay
                    ->AddRoute(r, MakeCallbackSender([&, name](const Event& e) {
                                 std::lock_guard<std::mutex> l(mu);
                                 got[name].push_back(e.position);
                                 return Status::OK();
                               }))
                    .ok());
  }
  ASSERT_TRUE(relay1.Start().ok());
  ASSERT_TRUE(relay2.Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    return SqliteRows(db,
                      "select count(*) from event_record where "
                      "published = 'N'")[0][0] == "0";
  }));
  relay1.Stop();
  relay2.Stop();
  std::vector<int64_t> all;
  for (int64_t i = 1; i <= 40; ++i) all.push_back(i);
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(got["a"], all);
  EXPECT_EQ(got["b"], all);
  auto list = (*store)->ListCheckpoints("adopt/");
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

// Saved progress of a row marked before a crash (the marks were written,
// the checkpoints not yet removed) is dropped when the source opens; a row
// every route had acknowledged is marked then.
TEST(AdoptSqlite, StaleOrCompleteSavedProgressIsSettledAtOpen) {
  TempDir dir;
  std::string db = dir.file("app.db");
  SqliteExec(db, kEventRecordSqlite);
  SqliteExec(db,
             "insert into event_record (orderNo, topic, message, published, "
             "created_date) values ('o1','order.placed','{}','Y',"
             "datetime('now')),('o2','order.placed','{}','N',"
             "datetime('now')),('o3','order.placed','{}','N',"
             "datetime('now'))");
  auto store = OpenStore("sqlite:" + dir.file("herald.db"));
  ASSERT_TRUE(store.ok());
  for (const char* name : {"adopt/orders_outbox/1/a", "adopt/orders_outbox/2/a",
                           "adopt/orders_outbox/2/b", "adopt/orders_outbox/3/a",
                           "adopt/other/3/b"}) {
    ASSERT_TRUE((*store)->SaveCheckpoint(name, 1).ok());
  }
  auto source =
      OpenTableSource(ParseSource("sqlite:" + db), {"a", "b"}, store->get());
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  auto rows = SqliteRows(db,
                         "select event_id, published from event_record order "
                         "by event_id");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1][1], "Y");  // both routes had it: marked
  EXPECT_EQ(rows[2][1], "N");  // only a had it
  auto list = (*store)->ListCheckpoints("adopt/");
  ASSERT_TRUE(list.ok());
  std::vector<std::string> names;
  for (const auto& [name, v] : *list) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"adopt/orders_outbox/3/a",
                                             "adopt/other/3/b"}));
}

// Id mode (no published flag): rows by increasing id once older than
// safety_delay. An id passed over without a visible row is a gap, saved in
// the relay state; a row that appears there later (here: inserted with
// that lower id, as a long transaction's row commits) is delivered late
// and counted, also by another process taking the route over. The table is
// never written.
TEST(AdoptSqlite, IdModeDeliversALateRowAndCountsIt) {
  TempDir dir;
  std::string db = dir.file("app.db");
  SqliteExec(db, kEventRecordSqlite);
  auto insert = [&](int id) {
    SqliteExec(db,
               "insert into event_record (event_id, orderNo, topic, message, "
               "published, created_date) values (" +
                   std::to_string(id) + ",'o1','order.placed','{}','N'," +
                   "strftime('%Y-%m-%d %H:%M:%f','now'))");
  };
  for (int id : {1, 2, 4, 5}) insert(id);
  std::string toml = SourceToml("sqlite:" + db);
  toml.replace(toml.find("published = {"),
               toml.find("min_age") - toml.find("published = {"),
               "safety_delay = \"100ms\"\n");
  auto parsed = ParseConfig(toml, "h.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const SourceConfig cfg = parsed->sources.at(0);
  ASSERT_TRUE(cfg.id_mode());
  auto store = OpenStore("sqlite:" + dir.file("herald.db"));
  ASSERT_TRUE(store.ok());
  RelayOptions opts;
  opts.idle_poll = std::chrono::milliseconds(20);
  RouteConfig route;
  route.name = "r";
  std::mutex mu;
  std::vector<int64_t> got;
  auto run = [&](EventSource* source, const std::function<bool()>& until) {
    Relay relay(source, store->get(), opts);
    ASSERT_TRUE(relay
                    .AddRoute(route, MakeCallbackSender([&](const Event& e) {
                                std::lock_guard<std::mutex> l(mu);
                                got.push_back(e.position);
                                return Status::OK();
                              }))
                    .ok());
    ASSERT_TRUE(relay.Start().ok());
    ASSERT_TRUE(WaitFor(until));
    relay.Stop();
  };
  auto count = [&] {
    std::lock_guard<std::mutex> l(mu);
    return got.size();
  };
  // A second process's source, opened before any gap was known: it takes
  // the gaps from the store when it takes the route over.
  auto first = OpenTableSource(cfg, {"r"}, store->get());
  auto second = OpenTableSource(cfg, {"r"}, store->get());
  ASSERT_TRUE(first.ok() && second.ok());
  run(first->get(), [&] { return count() == 4; });
  {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_EQ(got, (std::vector<int64_t>{1, 2, 4, 5}));
  }
  // The gap (id 3) is saved with the route's checkpoint.
  auto gaps = (*store)->ListCheckpoints("adopt/orders_outbox/gap/");
  ASSERT_TRUE(gaps.ok());
  ASSERT_EQ(gaps->size(), 1u);
  EXPECT_EQ((*gaps)[0].first, "adopt/orders_outbox/gap/r/3/3/");
  // Row 3 commits late; row 6 after it. The other process's relay finds
  // row 3 in the gap: delivered, counted, the gap gone.
  insert(3);
  insert(6);
  run(second->get(), [&] {
    auto late = (*store)->GetCheckpoint("adopt/orders_outbox/late/r");
    return count() == 6 && late.ok() && *late == 1;
  });
  {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_EQ(std::count(got.begin(), got.end(), 3), 1);
    EXPECT_EQ(std::count(got.begin(), got.end(), 6), 1);
  }
  auto source = OpenTableSource(cfg, {"r"});
  ASSERT_TRUE(source.ok());
  auto late = CountLateRows(source->get(), store->get());
  ASSERT_TRUE(late.ok());
  EXPECT_TRUE(late->id_mode);
  EXPECT_EQ(late->total, 1);
  EXPECT_EQ(late->last_row, 3);
  EXPECT_EQ(*CountPendingRows(source->get(), store->get()), 0);
  gaps = (*store)->ListCheckpoints("adopt/orders_outbox/gap/");
  ASSERT_TRUE(gaps.ok());
  EXPECT_TRUE(gaps->empty());
  // Never written: every row still 'N'.
  EXPECT_EQ(SqliteRows(db,
                       "select count(*) from event_record where "
                       "published = 'N'")[0][0],
            "6");
}

TEST(AdoptSqlite, DerivedIdsAreStableUuids) {
  EXPECT_EQ(DerivedEventId("a", 1), DerivedEventId("a", 1));
  EXPECT_NE(DerivedEventId("a", 1), DerivedEventId("a", 2));
  EXPECT_NE(DerivedEventId("a", 1), DerivedEventId("b", 1));
  EXPECT_TRUE(IsUuid(DerivedEventId("a", 1)));
  EXPECT_EQ(DerivedEventId("a", 1)[14], '8');
}

// The herald: sender on its own: a batch is one append, idempotent by id
// (a repeat stores nothing twice); an event the log refuses fails alone
// and stops only the rest of its stream.
TEST(AdoptHeraldSender, AppendsIdempotentlyAndIsolatesABadEvent) {
  TempDir dir;
  auto store = OpenStore("sqlite:" + dir.file("herald.db"));
  ASSERT_TRUE(store.ok());
  auto sender = MakeLogSender(store->get());
  auto event = [](int64_t row, const std::string& stream) {
    Event e;
    e.id = DerivedEventId("src", row);
    e.position = row;
    e.stream = stream;
    e.type = "order.placed";
    e.payload = "{}";
    return e;
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::vector<Event> batch = {event(7, "s1"), event(9, "s2")};
  std::vector<SendResult> results(2, SendResult::NotSent());
  sender->Send(batch, results, deadline);
  for (const auto& r : results) EXPECT_TRUE(r.status.ok());
  results.assign(2, SendResult::NotSent());
  sender->Send(batch, results, deadline);  // after a crash: the same rows
  for (const auto& r : results) EXPECT_TRUE(r.status.ok());
  EXPECT_EQ(*(*store)->Head(), 2);
  Event bad = event(11, "s1");
  bad.id = "not-a-uuid";
  batch = {event(10, "s1"), bad, event(12, "s1"), event(13, "s3")};
  results.assign(4, SendResult::NotSent());
  sender->Send(batch, results, deadline);
  EXPECT_TRUE(results[0].status.ok());
  EXPECT_FALSE(results[1].status.ok());
  EXPECT_FALSE(results[1].status.retryable());
  EXPECT_FALSE(results[2].attempted);
  EXPECT_TRUE(results[3].status.ok());
  EXPECT_EQ(*(*store)->Head(), 4);
  auto got = (*store)->Get(DerivedEventId("src", 7));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->position, 1);
}

// ---- MariaDB --------------------------------------------------------------

class AdoptMariaDb : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { db_ = new testing::MariaDb(); }
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
  static testing::MariaDb* db_;
};
testing::MariaDb* AdoptMariaDb::db_ = nullptr;

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

// ---- End to end: `herald relay` to a real HTTP receiver ------------------

// One line of the receiver's --log: what it was sent and what it answered.
struct Received {
  int64_t position = 0;
  std::string stream, id;
  int64_t recv_us = 0;
  int status = 0;
};

// herald_test_receiver, restartable on the same port and log.
class Receiver {
 public:
  Receiver(const TempDir& dir, const std::string& name)
      : port_(testing::FreePort()),
        log_(dir.file(name + ".log")),
        ready_(dir.file(name + ".ready")) {}
  ~Receiver() { Kill(); }
  void Start(const std::vector<std::string>& extra = {}) {
    std::remove(ready_.c_str());
    std::vector<std::string> argv{HERALD_TEST_RECEIVER,
                                  "--port",
                                  std::to_string(port_),
                                  "--log",
                                  log_,
                                  "--ready",
                                  ready_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    child_ = std::make_unique<testing::Child>(argv);
    ASSERT_TRUE(WaitFor([&] { return std::ifstream(ready_).good(); }));
  }
  void Kill() {
    if (!child_) return;
    child_->Signal(SIGKILL);
    child_->Wait();
    child_.reset();
  }
  std::vector<Received> Log() const {
    std::vector<Received> out;
    std::ifstream f(log_);
    std::string text, source;
    while (std::getline(f, text)) {
      std::istringstream ss(text);
      Received r;
      if (ss >> r.position >> r.stream >> r.id >> r.recv_us >> r.status) {
        out.push_back(r);
      }
    }
    return out;
  }
  // Event ids answered 200.
  std::set<std::string> Acked() const {
    std::set<std::string> ids;
    for (const auto& r : Log()) {
      if (r.status == 200) ids.insert(r.id);
    }
    return ids;
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/events";
  }

 private:
  int port_;
  std::string log_, ready_;
  std::unique_ptr<testing::Child> child_;
};

// A row the writers wrote: its id and every value they gave it.
struct Written {
  int64_t id = 0;
  std::string stream, topic, message, created;
};

// What every adopted run must show: each committed row reached the
// receiver (200) at least once, with its derived event id on every
// delivery; per stream, first deliveries in id order; no rolled-back row
// was sent; the table (`table`: id, stream, type, payload, created, flag,
// the done time in Unix seconds or NULL; one row a line, in id order)
// holds exactly the committed rows with the values written, each marked
// done with a time no earlier than its first acknowledgement. Returns the
// number of repeated deliveries.
size_t CheckAdoptedRows(const std::vector<Received>& log,
                        const std::vector<Written>& committed,
                        const std::set<int64_t>& rolled_back,
                        const std::vector<std::vector<std::string>>& table) {
  std::map<std::string, int64_t> last;    // stream -> last new id
  std::map<std::string, int64_t> ack_us;  // event id -> first 200
  size_t repeats = 0;
  for (const auto& r : log) {
    EXPECT_EQ(r.id, DerivedEventId("orders_outbox", r.position))
        << "position " << r.position;
    EXPECT_FALSE(rolled_back.count(r.position))
        << "rolled-back row " << r.position << " was sent";
    if (r.status != 200) continue;
    if (!ack_us.emplace(r.id, r.recv_us).second) {
      ++repeats;
      continue;
    }
    int64_t& l = last[r.stream];
    EXPECT_LT(l, r.position) << "stream " << r.stream << " out of order";
    l = r.position;
  }
  EXPECT_EQ(table.size(), committed.size());
  for (size_t i = 0; i < table.size() && i < committed.size(); ++i) {
    const auto& t = table[i];
    const auto& c = committed[i];
    if (t.size() != 7u) {
      ADD_FAILURE() << "table row " << i << " has " << t.size() << " columns";
      continue;
    }
    EXPECT_EQ(t[0], std::to_string(c.id));
    EXPECT_EQ(t[1], c.stream);
    EXPECT_EQ(t[2], c.topic);
    EXPECT_EQ(t[3], c.message);
    EXPECT_EQ(t[4], c.created);
    EXPECT_EQ(t[5], "Y") << "row " << c.id;
    auto it = ack_us.find(DerivedEventId("orders_outbox", c.id));
    if (it == ack_us.end()) {
      ADD_FAILURE() << "row " << c.id << " never acknowledged";
      continue;
    }
    if (t[6] == "NULL") {
      ADD_FAILURE() << "row " << c.id << " has no published_date";
      continue;
    }
    EXPECT_GE(std::stoll(t[6]), it->second / 1000000)
        << "row " << c.id << " marked before its acknowledgement";
  }
  return repeats;
}

// tests/adopt/writers.py: concurrent writer connections, each transaction
// locking its stream's domain row and inserting 1-5 rows.
class Writers {
 public:
  Writers(const TempDir& dir, int port, double seconds, int hold_percent,
          int seed)
      : out_(dir.file("writers." + std::to_string(seed) + ".jsonl")) {
    testing::Child::Options o;
    o.stderr_path = out_ + ".err";
    child_ = std::make_unique<testing::Child>(
        std::vector<std::string>{
            HERALD_ADOPT_PYTHON, HERALD_ADOPT_WRITERS, "--port",
            std::to_string(port), "--connections", "8", "--streams", "32",
            "--seconds", std::to_string(seconds), "--rollback", "20", "--hold",
            std::to_string(hold_percent), "--seed", std::to_string(seed),
            "--out", out_},
        o);
  }
  // Waits for the writers to finish; reads what they committed and the
  // ids of what they rolled back.
  void Finish() {
    EXPECT_EQ(child_->Wait(), 0) << testing::ReadTextFile(out_ + ".err");
    std::ifstream f(out_);
    std::string line;
    while (std::getline(f, line)) {
      auto j = Json::Parse(line);
      ASSERT_TRUE(j.ok()) << line;
      bool commit = j->Find("commit")->as_bool();
      transactions_ += 1;
      rolled_back_transactions_ += commit ? 0 : 1;
      for (const auto& r : j->Find("rows")->items()) {
        Written w;
        ASSERT_TRUE(r.items()[0].TryInt64(&w.id));
        w.stream = r.items()[1].as_string();
        w.topic = r.items()[2].as_string();
        w.message = r.items()[3].as_string();
        w.created = r.items()[4].as_string();
        if (commit) {
          committed.push_back(w);
        } else {
          rolled_back.insert(w.id);
        }
      }
    }
    std::sort(committed.begin(), committed.end(),
              [](const Written& a, const Written& b) { return a.id < b.id; });
  }
  std::vector<Written> committed;
  std::set<int64_t> rolled_back;
  int transactions_ = 0, rolled_back_transactions_ = 0;

 private:
  std::string out_;
  std::unique_ptr<testing::Child> child_;
};

class AdoptE2E : public AdoptMariaDb {
 protected:
  // A config relaying the source to one route per receiver (routes "hook",
  // "hook2"...).
  std::string Config(const std::vector<const Receiver*>& receivers,
                     const std::string& min_age = "0s") {
    std::string toml = "[store]\nurl = \"sqlite:" + dir_.file("herald.db") +
                       "\"\n[relay]\nowner = \"adopt-e2e\"\n";
    std::string source = SourceToml(db_->url());
    size_t at = source.find("min_age = \"0s\"");
    source.replace(at, 14, "min_age = \"" + min_age + "\"");
    toml += source;
    for (size_t i = 0; i < receivers.size(); ++i) {
      toml += "[[route]]\nname = \"hook" +
              (i ? std::to_string(i + 1) : std::string()) + "\"\nsender = \"" +
              receivers[i]->url() +
              "\"\nfrom = \"orders_outbox\"\nbatch = 50\nmax_in_flight = 8\n"
              "backoff_initial = \"5ms\"\nbackoff_max = \"200ms\"\n";
    }
    std::string path = dir_.file("herald.toml");
    std::ofstream(path) << toml;
    return path;
  }
  std::unique_ptr<testing::Child> StartHerald(const std::string& config) {
    testing::Child::Options o;
    o.stderr_path = dir_.file("herald.err");
    return std::make_unique<testing::Child>(
        std::vector<std::string>{testing::HeraldBin(), "relay", "--config",
                                 config},
        o);
  }
  std::string Pending() {
    return db_->Sql("select count(*) from event_record where published = 'N'");
  }
  // The table, one row a line: id, stream, type, payload, created, flag,
  // UNIX_TIMESTAMP(published_date) (NULL when none).
  std::vector<std::vector<std::string>> Table() {
    return TsvRows(db_->Sql(
        "select event_id, orderNo, topic, message, created_date, published, "
        "unix_timestamp(published_date) from event_record order by "
        "event_id"));
  }

  void CheckAdoptedRowsMarked() {
    EXPECT_EQ(db_->Sql("select count(*) from event_record where published "
                       "<> 'Y' or published_date is null"),
              "0\n");
  }
  // A transaction of the service held open: inserts one row (its id is
  // printed to hold.out), then commits once the file `go` exists.
  std::unique_ptr<testing::Child> HoldOneRow(const std::string& go) {
    testing::Child::Options o;
    o.stdout_path = dir_.file("hold.out");
    o.stderr_path = dir_.file("hold.err");
    return std::make_unique<testing::Child>(
        std::vector<std::string>{
            HERALD_ADOPT_PYTHON, "-c",
            "import os, sys, time, pymysql\n"
            "c = pymysql.connect(host='127.0.0.1', port=" +
                std::to_string(db_->port()) +
                ", user='app', password='secret', database='shop', "
                "autocommit=False)\n"
                "k = c.cursor()\n"
                "k.execute(\"insert into event_record (orderNo, topic, "
                "message, published, created_date) values ('o1','order.paid',"
                "'{}','N',utc_timestamp())\")\n"
                "print(k.lastrowid, flush=True)\n"
                "while not os.path.exists('" +
                go +
                "'): time.sleep(0.01)\n"
                "c.commit()\n"},
        o);
  }
  // Turns the [[source]] of a config file into id mode.
  static void MakeIdMode(const std::string& config,
                         const std::string& delay = "1s") {
    std::string text = testing::ReadTextFile(config);
    size_t p = text.find("published = {");
    text.replace(p, text.find('\n', p) - p, "safety_delay = \"" + delay + "\"");
    std::ofstream(config) << text;
  }
  size_t CheckAdopted(const std::vector<Received>& log, const Writers& w) {
    return CheckAdoptedRows(log, w.committed, w.rolled_back, Table());
  }

  TempDir dir_;
};

TEST_F(AdoptE2E, RowIsMarkedOnlyAfterTheReceiverAcknowledgedIt) {
  db_->Sql(
      "insert into event_record (orderNo, topic, message, published, "
      "created_date) values ('o1','order.placed','{}','N',now()),"
      "('o1','order.paid','{}','N',now()),('o2','order.placed','{}','N',"
      "now())");
  std::string refused = DerivedEventId("orders_outbox", 2);
  Receiver receiver(dir_, "receiver");
  receiver.Start({"--fail", refused + "=unavailable"});
  auto herald = StartHerald(Config({&receiver}));
  // Row 2 is sent and answered 503, again and again: it stays pending,
  // without a published_date, while row 1 of the same batch (acknowledged)
  // is marked.
  auto refusals = [&] {
    int n = 0;
    for (const auto& r : receiver.Log()) n += r.id == refused;
    return n;
  };
  ASSERT_TRUE(WaitFor([&] { return refusals() >= 3; }))
      << testing::ReadTextFile(dir_.file("herald.err"));
  ASSERT_TRUE(WaitFor([&] {
    return db_->Sql("select published from event_record where event_id = 1") ==
           "Y\n";
  }));
  EXPECT_EQ(db_->Sql("select concat(published, ',', published_date is null) "
                     "from event_record where event_id = 2"),
            "N,1\n");
  // The receiver comes back accepting it: row 2 is marked, at or after
  // the time it was acknowledged.
  receiver.Kill();
  receiver.Start();
  ASSERT_TRUE(WaitFor([&] { return Pending() == "0\n"; })) << Pending();
  herald->Signal(SIGTERM);
  EXPECT_EQ(herald->Wait(), 0);
  int64_t acked_us = 0;
  for (const auto& r : receiver.Log()) {
    if (r.id == refused && r.status == 200 && !acked_us) acked_us = r.recv_us;
  }
  ASSERT_GT(acked_us, 0);
  EXPECT_GE(std::stoll(db_->Sql("select unix_timestamp(published_date) from "
                                "event_record where event_id = 2")),
            acked_us / 1000000);
}

TEST_F(AdoptE2E, EightWritersCommittedRowsArriveRolledBackNever) {
  Receiver receiver(dir_, "receiver");
  receiver.Start();
  auto herald = StartHerald(Config({&receiver}));
  Writers w(dir_, db_->port(), 8, 10, 1);
  w.Finish();
  ASSERT_FALSE(w.committed.empty());
  EXPECT_GT(w.rolled_back_transactions_, 0);
  ASSERT_TRUE(
      WaitFor([&] { return Pending() == "0\n"; }, std::chrono::seconds(60)))
      << Pending();
  herald->Signal(SIGTERM);
  EXPECT_EQ(herald->Wait(), 0);
  size_t repeats = CheckAdopted(receiver.Log(), w);
  // The domain rows moved once per committed transaction only.
  std::map<std::string, int> txs;
  std::ifstream f(dir_.file("writers.1.jsonl"));
  std::string line;
  while (std::getline(f, line)) {
    auto j = Json::Parse(line);
    ASSERT_TRUE(j.ok());
    if (j->Find("commit")->as_bool()) {
      ++txs[j->Find("rows")->items()[0].items()[1].as_string()];
    }
  }
  for (const auto& [stream, n] : txs) {
    EXPECT_EQ(
        db_->Sql("select n from domain_order where orderNo = '" + stream + "'"),
        std::to_string(n) + "\n");
  }
  std::printf(
      "writers: %d transactions (%d rolled back), %zu rows, %zu repeated\n",
      w.transactions_, w.rolled_back_transactions_, w.committed.size(),
      repeats);
}

TEST_F(AdoptE2E, SigkillAtRandomMomentsUnderLoadLosesNothing) {
  Receiver receiver(dir_, "receiver");
  receiver.Start();
  std::string config = Config({&receiver});
  Writers w(dir_, db_->port(), 10, 5, 2);
  std::mt19937 rng(17);
  for (int trial = 0; trial < 10; ++trial) {
    auto herald = StartHerald(config);
    std::this_thread::sleep_for(std::chrono::milliseconds(
        std::uniform_int_distribution<int>(200, 1200)(rng)));
    herald->Signal(SIGKILL);
    herald->Wait();
  }
  w.Finish();
  auto herald = StartHerald(config);
  ASSERT_TRUE(
      WaitFor([&] { return Pending() == "0\n"; }, std::chrono::seconds(60)))
      << Pending();
  herald->Signal(SIGTERM);
  EXPECT_EQ(herald->Wait(), 0);
  size_t repeats = CheckAdopted(receiver.Log(), w);
  std::printf("10 SIGKILLs: %zu rows, %zu repeated deliveries\n",
              w.committed.size(), repeats);
}

// The sweeper setup: the service publishes after commit and marks its rows
// itself; herald, with min_age = "5s", sends only what stays pending longer.
TEST_F(AdoptE2E, SweeperSendsOnlyRowsLeftPendingLongerThanMinAge) {
  Receiver receiver(dir_, "receiver");
  receiver.Start();
  auto herald = StartHerald(Config({&receiver}, "5s"));
  std::string values;
  for (int i = 1; i <= 10; ++i) {
    values += std::string(values.empty() ? "" : ",") + "('o" +
              std::to_string(i % 3) + "','order.placed','{}','N',now())";
  }
  db_->Sql(
      "insert into event_record (orderNo, topic, message, published, "
      "created_date) values " +
      values);
  // The service's own publish: odd rows, about a second after commit (its
  // timing, not a wait for herald).
  std::this_thread::sleep_for(std::chrono::seconds(1));
  db_->Sql(
      "update event_record set published = 'Y', published_date = now() "
      "where event_id % 2 = 1");
  std::string service_marked = db_->Sql(
      "select group_concat(published_date order by event_id) from "
      "event_record where event_id % 2 = 1");
  ASSERT_TRUE(
      WaitFor([&] { return Pending() == "0\n"; }, std::chrono::seconds(30)))
      << Pending();
  herald->Signal(SIGTERM);
  EXPECT_EQ(herald->Wait(), 0);
  std::map<int64_t, std::vector<Received>> by_row;
  for (const auto& r : receiver.Log()) by_row[r.position].push_back(r);
  for (int64_t id = 1; id <= 10; ++id) {
    if (id % 2 == 1) {
      EXPECT_FALSE(by_row.count(id)) << "row " << id << " (marked by the "
                                     << "service) was sent by herald";
      continue;
    }
    ASSERT_EQ(by_row[id].size(), 1u) << "row " << id << " not sent once";
    EXPECT_EQ(by_row[id][0].status, 200);
    // Sent no earlier than min_age after its created_date.
    int64_t created = std::stoll(
        db_->Sql("select unix_timestamp(created_date) from event_record "
                 "where event_id = " +
                 std::to_string(id)));
    EXPECT_GE(by_row[id][0].recv_us, (created + 5) * 1000000) << "row " << id;
  }
  // The service's marks were left as they were.
  EXPECT_EQ(db_->Sql("select group_concat(published_date order by event_id) "
                     "from event_record where event_id % 2 = 1"),
            service_marked);
}

// Two routes read one source: a row is marked only once both receivers
// acknowledged it.
TEST_F(AdoptE2E, TwoRoutesRowMarkedOnlyAfterBothAcknowledged) {
  db_->Sql(
      "insert into event_record (orderNo, topic, message, published, "
      "created_date) values ('o1','order.placed','{}','N',now()),"
      "('o2','order.placed','{}','N',now()),('o3','order.placed','{}','N',"
      "now())");
  std::string refused = DerivedEventId("orders_outbox", 2);
  Receiver a(dir_, "a"), b(dir_, "b");
  a.Start();
  b.Start({"--fail", refused + "=unavailable"});
  auto herald = StartHerald(Config({&a, &b}));
  // Route "hook" (a) has every row acknowledged; route "hook2" (b) keeps
  // being refused row 2: row 2 stays pending.
  ASSERT_TRUE(WaitFor([&] {
    int refusals = 0;
    for (const auto& r : b.Log()) refusals += r.id == refused;
    return a.Acked().size() == 3 && refusals >= 3;
  })) << testing::ReadTextFile(dir_.file("herald.err"));
  EXPECT_EQ(db_->Sql("select concat(published, ',', published_date is null) "
                     "from event_record where event_id = 2"),
            "N,1\n");
  b.Kill();
  b.Start();
  ASSERT_TRUE(WaitFor([&] { return Pending() == "0\n"; })) << Pending();
  herald->Signal(SIGTERM);
  EXPECT_EQ(herald->Wait(), 0);
  // Marked no earlier than the later of the two acknowledgements.
  int64_t acked_us = 0;
  for (const Receiver* r : {&a, &b}) {
    for (const auto& l : r->Log()) {
      if (l.id == refused && l.status == 200) {
        acked_us = std::max(acked_us, l.recv_us);
        break;
      }
    }
  }
  EXPECT_GE(std::stoll(db_->Sql("select unix_timestamp(published_date) from "
                                "event_record where event_id = 2")),
            acked_us / 1000000);
  for (const Receiver* r : {&a, &b}) EXPECT_EQ(r->Acked().size(), 3u);
}

// Id mode on MariaDB through `herald relay`: a transaction held open longer
// than safety_delay takes id 3 before rows 4 and 5 commit. herald passes
// id 3 (not visible), delivers 4 and 5, and when the transaction commits
// finds row 3 below its cursor: delivered late, named on stderr, counted
// in `herald relay status`. Nothing is lost; the table is not written.
TEST_F(AdoptE2E, IdModeLateTransactionIsDeliveredAndReported) {
  db_->Sql(
      "insert into event_record (orderNo, topic, message, published, "
      "created_date) values ('o1','order.placed','{}','N',now(6)),"
      "('o2','order.placed','{}','N',now(6))");
  Receiver receiver(dir_, "receiver");
  receiver.Start();
  std::string config = Config({&receiver});
  MakeIdMode(config);
  auto herald = StartHerald(config);
  // The long transaction: inserts (taking id 3), then waits for a file
  // before committing.
  std::string go = dir_.file("go");
  auto hold = HoldOneRow(go);
  ASSERT_TRUE(WaitFor([&] {
    return testing::ReadTextFile(dir_.file("hold.out")) == "3\n";
  })) << testing::ReadTextFile(dir_.file("hold.err"));
  db_->Sql(
      "insert into event_record (orderNo, topic, message, published, "
      "created_date) values ('o2','order.paid','{}','N',now(6)),"
      "('o3','order.placed','{}','N',now(6))");
  auto positions = [&] {
    std::vector<int64_t> out;
    for (const auto& r : receiver.Log()) {
      if (r.status == 200) out.push_back(r.position);
    }
    return out;
  };
  // 1, 2, 4, 5 delivered (id 3 passed over); the transaction has been
  // open longer than safety_delay by then.
  ASSERT_TRUE(WaitFor([&] { return positions().size() == 4; }))
      << testing::ReadTextFile(dir_.file("herald.err"));
  {
    auto first = positions();  // streams are sent concurrently: any order
    std::sort(first.begin(), first.end());
    EXPECT_EQ(first, (std::vector<int64_t>{1, 2, 4, 5}));
  }
  std::ofstream(go) << "go";
  EXPECT_EQ(hold->Wait(), 0) << testing::ReadTextFile(dir_.file("hold.err"));
  ASSERT_TRUE(WaitFor([&] { return positions().size() == 5; }))
      << testing::ReadTextFile(dir_.file("herald.err"));
  EXPECT_EQ(positions().back(), 3);
  EXPECT_EQ(receiver.Log().back().id, DerivedEventId("orders_outbox", 3));
  ASSERT_TRUE(WaitFor([&] {
    return testing::ReadTextFile(dir_.file("herald.err"))
               .find(
                   "herald: source 'orders_outbox': row 3 committed after "
                   "route 'hook' had passed its id") != std::string::npos;
  })) << testing::ReadTextFile(dir_.file("herald.err"));
  herald->Signal(SIGTERM);
  EXPECT_EQ(herald->Wait(), 0);
  std::string out, err;
  ASSERT_EQ(testing::RunCommand(
                {testing::HeraldBin(), "relay", "status", "--config", config},
                &out, &err),
            0)
      << err;
  std::istringstream ss(out);
  std::string line, source_line;
  while (std::getline(ss, line)) {
    if (line.find("\"source\":") != std::string::npos) source_line = line;
  }
  auto j = Json::Parse(source_line);
  ASSERT_TRUE(j.ok()) << out;
  EXPECT_EQ(j->Find("mode")->as_string(), "id");
  int64_t n = -1;
  ASSERT_TRUE(j->Find("late")->TryInt64(&n)) << out;
  EXPECT_EQ(n, 1);
  ASSERT_TRUE(j->Find("last_late_row")->TryInt64(&n)) << out;
  EXPECT_EQ(n, 3);
  ASSERT_TRUE(j->Find("pending")->TryInt64(&n)) << out;
  EXPECT_EQ(n, 0);
  // Id mode never writes the table.
  EXPECT_EQ(Pending(), "5\n");
  EXPECT_EQ(db_->Sql("select count(*) from event_record where published_date "
                     "is not null"),
            "0\n");
}

// herald: appends the table's rows into herald's own store; a second
// route reads the store (no `from`) and delivers to a webhook. Under 8
// writers, `herald relay` is SIGKILLed at random moments: every committed
// row is in the store exactly once (same derived id, dense positions,
// per-stream order kept), and reaches the webhook from there.
TEST_F(AdoptE2E, HeraldSenderStoresEveryRowExactlyOnceAcrossSigkills) {
  Receiver receiver(dir_, "receiver");
  receiver.Start();
  std::string toml = "[store]\nurl = \"sqlite:" + dir_.file("herald.db") +
                     "\"\n[relay]\nowner = \"adopt-e2e\"\n" +
                     SourceToml(db_->url()) +
                     "[[route]]\nname = \"adopt\"\nsender = \"herald:\"\n"
                     "from = \"orders_outbox\"\nbatch = 50\n"
                     "[[route]]\nname = \"hook\"\nsender = \"" +
                     receiver.url() +
                     "\"\nbatch = 50\nmax_in_flight = 8\n"
                     "backoff_initial = \"5ms\"\nbackoff_max = \"200ms\"\n";
  std::string config = dir_.file("herald.toml");
  std::ofstream(config) << toml;
  Writers w(dir_, db_->port(), 8, 5, 3);
  std::mt19937 rng(33);
  for (int trial = 0; trial < 8; ++trial) {
    auto herald = StartHerald(config);
    std::this_thread::sleep_for(std::chrono::milliseconds(
        std::uniform_int_distribution<int>(200, 1200)(rng)));
    herald->Signal(SIGKILL);
    herald->Wait();
  }
  w.Finish();
  ASSERT_FALSE(w.committed.empty());
  auto herald = StartHerald(config);
  ASSERT_TRUE(
      WaitFor([&] { return Pending() == "0\n"; }, std::chrono::seconds(60)))
      << Pending() << testing::ReadTextFile(dir_.file("herald.err"));
  ASSERT_TRUE(
      WaitFor([&] { return receiver.Acked().size() >= w.committed.size(); },
              std::chrono::seconds(60)))
      << receiver.Acked().size() << " of " << w.committed.size();
  herald->Signal(SIGTERM);
  EXPECT_EQ(herald->Wait(), 0);
  // The store: exactly the committed rows, once each, positions 1..N.
  auto store = OpenStore("sqlite:" + dir_.file("herald.db"));
  ASSERT_TRUE(store.ok());
  std::vector<Event> stored;
  ReadRequest req;
  req.offset = 1;
  req.limit = 1000;
  for (;;) {
    auto page = (*store)->Read(req);
    ASSERT_TRUE(page.ok());
    if (page->events.empty()) break;
    for (auto& e : page->events) stored.push_back(std::move(e));
    req.offset = page->next_offset;
  }
  ASSERT_EQ(stored.size(), w.committed.size());
  std::map<std::string, const Written*> by_id;
  for (const auto& c : w.committed) {
    by_id[DerivedEventId("orders_outbox", c.id)] = &c;
  }
  std::map<std::string, int64_t> last_row;  // stream -> last row id
  for (size_t i = 0; i < stored.size(); ++i) {
    const Event& e = stored[i];
    EXPECT_EQ(e.position, static_cast<int64_t>(i + 1));
    auto it = by_id.find(e.id);
    ASSERT_NE(it, by_id.end()) << "stored event " << e.id << " is no row";
    const Written& c = *it->second;
    by_id.erase(it);  // a second copy would not be found
    EXPECT_EQ(e.stream, c.stream);
    EXPECT_EQ(e.type, c.topic);
    EXPECT_EQ(e.payload, c.message);
    EXPECT_LT(last_row[e.stream], c.id) << "stream " << e.stream;
    last_row[e.stream] = c.id;
  }
  EXPECT_TRUE(by_id.empty());
  // Every stored event reached the webhook.
  auto acked = receiver.Acked();
  for (const auto& e : stored) EXPECT_TRUE(acked.count(e.id)) << e.id;
  // And the table: every committed row marked.
  CheckAdoptedRowsMarked();
}

// `herald serve` runs [[source]] routes as `herald relay` does: here the
// table's rows go into the store through herald: (the HTTP API then serves
// them), and a route from the store delivers them to a webhook.
// GET /api/relays lists the source's routes and the source (mode, rows
// pending); /metrics has the source's gauges and its routes' counters.
TEST_F(AdoptE2E, ServeRunsSourcesAndShowsThem) {
  db_->Sql(
      "insert into event_record (orderNo, topic, message, published, "
      "created_date) values ('o1','order.placed','{\"a\":1}','N',now()),"
      "('o1','order.paid','{\"a\":2}','N',now()),('o2','order.placed',"
      "'{\"a\":3}','N',now())");
  Receiver receiver(dir_, "receiver");
  receiver.Start();
  std::string toml = SourceToml(db_->url()) +
                     "[[route]]\nname = \"adopt\"\nsender = \"herald:\"\n"
                     "from = \"orders_outbox\"\n"
                     "[[route]]\nname = \"tail\"\nsender = \"" +
                     receiver.url() + "\"\n";
  testing::ServeProcess serve(dir_, "sqlite:" + dir_.file("serve.db"), toml);
  ASSERT_TRUE(serve.ready()) << serve.stderr_text();
  ASSERT_TRUE(WaitFor([&] { return Pending() == "0\n"; })) << Pending();
  ASSERT_TRUE(WaitFor([&] { return receiver.Acked().size() == 3; }));
  testing::HttpClient http;
  auto events = http.Request("GET", serve.base() + "/api/events?offset=0");
  ASSERT_EQ(events.status, 200) << events.body;
  auto ej = Json::Parse(events.body);
  ASSERT_TRUE(ej.ok()) << events.body;
  const auto& list = ej->Find("events")->items();
  ASSERT_EQ(list.size(), 3u) << events.body;
  for (size_t i = 0; i < list.size(); ++i) {
    EXPECT_EQ(list[i].Find("id")->as_string(),
              DerivedEventId("orders_outbox", static_cast<int64_t>(i + 1)));
  }
  auto relays = http.Request("GET", serve.base() + "/api/relays");
  ASSERT_EQ(relays.status, 200) << relays.body;
  auto rj = Json::Parse(relays.body);
  ASSERT_TRUE(rj.ok()) << relays.body;
  std::set<std::string> routes;
  for (const auto& r : rj->Find("routes")->items()) {
    routes.insert(r.Find("name")->as_string());
  }
  EXPECT_EQ(routes, (std::set<std::string>{"adopt", "tail"}));
  ASSERT_NE(rj->Find("sources"), nullptr) << relays.body;
  ASSERT_EQ(rj->Find("sources")->items().size(), 1u);
  const Json& src = rj->Find("sources")->items()[0];
  EXPECT_EQ(src.Find("name")->as_string(), "orders_outbox");
  EXPECT_EQ(src.Find("mode")->as_string(), "flag");
  EXPECT_EQ(src.Find("table")->as_string(), "event_record");
  int64_t n = -1;
  ASSERT_TRUE(src.Find("pending")->TryInt64(&n)) << relays.body;
  EXPECT_EQ(n, 0);
  EXPECT_TRUE(src.Find("error")->is_null());
  EXPECT_EQ(relays.body.find("secret"), std::string::npos);
  auto metrics = http.Request("GET", serve.base() + "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(testing::MetricValue(metrics.body,
                                 "herald_source_up{source=\"orders_outbox\"}"),
            1);
  EXPECT_EQ(
      testing::MetricValue(
          metrics.body, "herald_source_pending_rows{source=\"orders_outbox\"}"),
      0);
  EXPECT_EQ(testing::MetricValue(
                metrics.body, "herald_route_delivered_total{route=\"adopt\"}"),
            3);
  // Rows written while it runs: pending shows them until delivered.
  db_->Sql(
      "insert into event_record (orderNo, topic, message, published, "
      "created_date) values ('o3','order.placed','{}','N',now())");
  ASSERT_TRUE(WaitFor([&] { return receiver.Acked().size() == 4; }));
  EXPECT_EQ(serve.Stop(), 0);
}

// Id mode in `herald serve`: a late row (a transaction open longer than
// safety_delay) is delivered, and counted in GET /api/relays and /metrics.
TEST_F(AdoptE2E, ServeReportsLateRowsOfIdMode) {
  db_->Sql(
      "insert into event_record (orderNo, topic, message, published, "
      "created_date) values ('o1','order.placed','{}','N',now(6)),"
      "('o2','order.placed','{}','N',now(6))");
  Receiver receiver(dir_, "receiver");
  receiver.Start();
  std::string config = Config({&receiver});
  MakeIdMode(config);
  std::string toml = testing::ReadTextFile(config);
  toml = toml.substr(toml.find("[[source]]"));  // serve's own --db
  testing::ServeProcess serve(dir_, "sqlite:" + dir_.file("serve.db"), toml);
  ASSERT_TRUE(serve.ready()) << serve.stderr_text();
  std::string go = dir_.file("go");
  auto hold = HoldOneRow(go);
  ASSERT_TRUE(WaitFor([&] {
    return testing::ReadTextFile(dir_.file("hold.out")) == "3\n";
  })) << testing::ReadTextFile(dir_.file("hold.err"));
  db_->Sql(
      "insert into event_record (orderNo, topic, message, published, "
      "created_date) values ('o3','order.placed','{}','N',now(6))");
  ASSERT_TRUE(WaitFor([&] { return receiver.Acked().size() == 3; }))
      << serve.stderr_text();
  std::ofstream(go) << "go";
  EXPECT_EQ(hold->Wait(), 0);
  ASSERT_TRUE(WaitFor([&] { return receiver.Acked().size() == 4; }))
      << serve.stderr_text();
  testing::HttpClient http;
  const std::string metric =
      "herald_source_late_rows_total{source=\"orders_outbox\"}";
  std::string body;
  ASSERT_TRUE(WaitFor([&] {
    body = http.Request("GET", serve.base() + "/metrics").body;
    return testing::MetricValue(body, metric) == 1;
  })) << body;
  auto relays = http.Request("GET", serve.base() + "/api/relays");
  auto rj = Json::Parse(relays.body);
  ASSERT_TRUE(rj.ok()) << relays.body;
  const Json& src = rj->Find("sources")->items().at(0);
  EXPECT_EQ(src.Find("mode")->as_string(), "id");
  int64_t n = -1;
  ASSERT_TRUE(src.Find("late")->TryInt64(&n)) << relays.body;
  EXPECT_EQ(n, 1);
  ASSERT_TRUE(src.Find("last_late_row")->TryInt64(&n)) << relays.body;
  EXPECT_EQ(n, 3);
  ASSERT_TRUE(src.Find("pending")->TryInt64(&n)) << relays.body;
  EXPECT_EQ(n, 0);
  // Named on stderr too (serve's loop prints it within 50 ms).
  EXPECT_TRUE(WaitFor([&] {
    return serve.stderr_text().find("row 3 committed after route 'hook'") !=
           std::string::npos;
  })) << serve.stderr_text();
  EXPECT_EQ(serve.Stop(), 0);
}

// `herald relay status` shows a source's routes (with "from") and one line
// per source: its routes, the rows pending and the error that keeps it from
// being read; `herald relay` reports a source route's errors on stderr.
TEST_F(AdoptE2E, RelayStatusShowsSourcesAndTheirErrors) {
  db_->Sql(
      "insert into event_record (orderNo, topic, message, published, "
      "created_date) values ('o1','order.placed','{}','N',now()),"
      "('o1','order.paid','{}','N',now())");
  Receiver receiver(dir_, "receiver");
  receiver.Start({"--fail", DerivedEventId("orders_outbox", 2) + "=reject"});
  std::string config = Config({&receiver});
  auto herald = StartHerald(config);
  std::string out, err;
  std::vector<std::string> lines;
  auto status = [&](const std::string& cfg) {
    out.clear();
    lines.clear();
    int rc = testing::RunCommand(
        {testing::HeraldBin(), "relay", "status", "--config", cfg}, &out, &err);
    std::istringstream ss(out);
    std::string line;
    while (std::getline(ss, line)) lines.push_back(line);
    return rc;
  };
  auto json = [](const std::string& line) {
    auto j = Json::Parse(line);
    EXPECT_TRUE(j.ok()) << line;
    return j.ok() ? *j : Json();
  };
  // Row 2 is rejected (400): the route blocks on it and says why.
  ASSERT_TRUE(WaitFor([&] {
    return testing::ReadTextFile(dir_.file("herald.err"))
               .find("herald: route 'hook': ") != std::string::npos;
  })) << testing::ReadTextFile(dir_.file("herald.err"));
  ASSERT_TRUE(WaitFor([&] {
    if (status(config) != 0 || lines.size() != 2) return false;
    Json route = json(lines[0]);
    const Json* e = route.Find("last_error");
    return e && e->is_string();
  })) << out
      << err;
  {
    Json route = json(lines[0]);
    EXPECT_EQ(route.Find("route")->as_string(), "hook");
    EXPECT_EQ(route.Find("from")->as_string(), "orders_outbox");
    Json source = json(lines[1]);
    EXPECT_EQ(source.Find("source")->as_string(), "orders_outbox");
    EXPECT_EQ(source.Find("table")->as_string(), "event_record");
    ASSERT_EQ(source.Find("routes")->items().size(), 1u);
    EXPECT_EQ(source.Find("routes")->items()[0].as_string(), "hook");
    int64_t pending = -1;
    ASSERT_TRUE(source.Find("pending")->TryInt64(&pending));
    EXPECT_GE(pending, 1);
    EXPECT_TRUE(source.Find("error")->is_null());
    // The password never shows.
    EXPECT_EQ(out.find("secret"), std::string::npos) << out;
  }
  herald->Signal(SIGTERM);
  EXPECT_EQ(herald->Wait(), 0);
  // A source whose database cannot be reached: its line says why.
  std::string text = testing::ReadTextFile(config);
  std::string from = ":" + std::to_string(db_->port()) + "/";
  text.replace(text.find(from), from.size(),
               ":" + std::to_string(testing::FreePort()) + "/");
  std::string down = dir_.file("down.toml");
  std::ofstream(down) << text;
  ASSERT_EQ(status(down), 0) << err;
  ASSERT_EQ(lines.size(), 1u) << out;
  Json source = json(lines[0]);
  EXPECT_TRUE(source.Find("pending")->is_null());
  ASSERT_TRUE(source.Find("error")->is_string()) << out;
  EXPECT_NE(source.Find("error")->as_string().find("cannot connect"),
            std::string::npos)
      << out;
}

// ---- PostgreSQL -----------------------------------------------------------

#if HERALD_WITH_POSTGRES
// The same table on PostgreSQL (bigserial, timestamp). Unquoted orderNo is
// folded to orderno, as PostgreSQL does to every unquoted name.
const char* kEventRecordPostgres = R"(create table event_record
(
    event_id bigserial not null primary key,
    orderNo varchar(32) not null,
    topic varchar(20) not null,
    message text not null,
    published char(1) not null,
    published_date timestamp null,
    created_date timestamp not null
);
create table domain_order (orderNo varchar(32) primary key, n int not null);)";

// A fresh database on the server tests/support/with-postgres.sh started
// (HERALD_TEST_PG_URL), holding the table. Without a server the test fails
// under CI and is skipped elsewhere.
class AdoptPostgres : public ::testing::Test {
 protected:
  void SetUp() override {
    HERALD_SKIP_UNLESS_BACKEND("postgresql");
    url_ = testing::FreshStoreUrl("postgresql", dir_);
    std::string r = Sql(kEventRecordPostgres);
    ASSERT_EQ(r, "") << r;
  }
  // Runs SQL with psql; returns its output (unaligned, tab-separated,
  // NULL as "NULL").
  std::string Sql(const std::string& sql) {
    std::string out, err;
    testing::RunCommand({"psql", url_, "-qAtX", "-v", "ON_ERROR_STOP=1", "-F",
                         "\t", "-P", "null=NULL", "-c", sql},
                        &out, &err);
    return out + err;
  }
  std::string Pending() {
    return Sql("select count(*) from event_record where published = 'N'");
  }
  SourceConfig Source() {
    std::string toml = SourceToml(url_);
    toml.replace(toml.find("\"orderNo\""), 9, "\"orderno\"");
    auto c = ParseConfig(toml, "h.toml");
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c->sources.at(0);
  }
  std::vector<std::vector<std::string>> Table() {
    return TsvRows(
        Sql("select event_id, orderno, topic, message, created_date, "
            "published, extract(epoch from published_date)::bigint from "
            "event_record order by event_id"));
  }
  TempDir dir_;
  std::string url_;
};

TEST_F(AdoptPostgres, ConfigErrorsAtStart) {
  auto s = OpenTableSource(Source(), {"r"});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  // orderNo of the DDL is column orderno: the error says so.
  auto cfg = Source();
  cfg.columns.stream = "orderNo";
  s = OpenTableSource(cfg, {"r"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(
                "h.toml:5: source 'orders_outbox'.columns.stream: table "
                "'event_record' has no column 'orderNo' (names are "
                "case-sensitive; did you mean 'orderno'?)"),
            std::string::npos)
      << s.status().message();
  cfg = Source();
  cfg.published.done = "DONE";
  s = OpenTableSource(cfg, {"r"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(
                "h.toml:6: source 'orders_outbox'.published.done: 'DONE' "
                "cannot be held by column 'published' (character(1))"),
            std::string::npos)
      << s.status().message();
  cfg = Source();
  cfg.table = "event_records";
  s = OpenTableSource(cfg, {"r"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("h.toml:4: source 'orders_outbox'.table: "
                                      "table 'event_records' does not exist"),
            std::string::npos)
      << s.status().message();
  // The command line: exit 2, the key and line on stderr.
  std::string toml = SourceToml(url_) +
                     "[[route]]\nname = \"r\"\nsender = \"stdout:\"\n"
                     "from = \"orders_outbox\"\n[store]\nurl = \"sqlite:" +
                     dir_.file("h.db") + "\"\n";
  std::ofstream(dir_.file("h.toml")) << toml;
  std::string out, err;
  int rc = testing::RunCommand(
      {testing::HeraldBin(), "relay", "--config", dir_.file("h.toml")}, &out,
      &err);
  EXPECT_EQ(rc, 2) << err;
  EXPECT_NE(err.find("h.toml:5: source 'orders_outbox'.columns.stream: table "
                     "'event_record' has no column 'orderNo'"),
            std::string::npos)
      << err;
}

// Writer connections of a service on PostgreSQL (libpq), as writers.py
// does on MariaDB: each transaction locks its stream's domain row, inserts
// 1-5 rows, and commits or (20%) rolls back; some are held open 2-5 s.
struct PgWriteLog {
  std::mutex mu;
  std::vector<Written> committed;
  std::set<int64_t> rolled_back;
  int transactions = 0, rolled_back_transactions = 0;
};

void RunPgWriter(const std::string& url, int k, double seconds,
                 int hold_percent, PgWriteLog* log) {
  PGconn* c = PQconnectdb(url.c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  auto exec = [&](const std::string& sql, std::string* first = nullptr) {
    PGresult* r = PQexec(c, sql.c_str());
    auto st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (ok && first && PQntuples(r) > 0) *first = PQgetvalue(r, 0, 0);
    PQclear(r);
    return ok;
  };
  std::mt19937 rng(static_cast<unsigned>(1000 + k));
  const char* topics[] = {"order.placed", "order.paid", "order.shipped"};
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int>(seconds * 1000));
  int n = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    ++n;
    std::string stream = "order-" + std::to_string(rng() % 16);
    bool commit = rng() % 100 >= 20;
    std::vector<Written> rows;
    bool ok = exec("begin") &&
              exec("update domain_order set n = n + 1 where orderno = '" +
                   stream + "'");
    int count = 1 + static_cast<int>(rng() % 5);
    for (int i = 0; ok && i < count; ++i) {
      Written w;
      w.stream = stream;
      w.topic = topics[rng() % 3];
      w.message = "{\"w\":" + std::to_string(k) +
                  ",\"tx\":" + std::to_string(n) +
                  ",\"i\":" + std::to_string(i) + "}";
      std::time_t now = std::time(nullptr);
      char created[32];
      std::strftime(created, sizeof created, "%Y-%m-%d %H:%M:%S",
                    std::gmtime(&now));
      w.created = created;
      std::string id;
      ok = exec(
          "insert into event_record (orderno, topic, message, "
          "published, created_date) values ('" +
              stream + "','" + w.topic + "','" + w.message + "','N','" +
              w.created + "') returning event_id",
          &id);
      if (ok) w.id = std::stoll(id);
      rows.push_back(w);
    }
    if (static_cast<int>(rng() % 100) < hold_percent) {
      std::this_thread::sleep_for(
          std::chrono::milliseconds(2000 + rng() % 3000));
    }
    ok = ok && exec(commit ? "commit" : "rollback");
    if (!ok) {
      exec("rollback");
      commit = false;
    }
    std::lock_guard<std::mutex> l(log->mu);
    ++log->transactions;
    log->rolled_back_transactions += commit ? 0 : 1;
    for (const auto& w : rows) {
      if (commit) {
        log->committed.push_back(w);
      } else if (w.id) {
        log->rolled_back.insert(w.id);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  PQfinish(c);
}

// Flag mode on PostgreSQL end to end: 6 writer connections under load,
// `herald relay` SIGKILLed at random moments, to the HTTP receiver. Every
// committed row arrives with its derived id, per-stream first arrivals in
// id order, rolled-back rows never; every row is 'Y' with a published_date
// no earlier than its acknowledgement; no other value changed.
TEST_F(AdoptPostgres, WritersAndSigkillsEveryCommittedRowOnceMarkedAfterAck) {
  std::string domain;
  for (int i = 0; i < 16; ++i) {
    domain += std::string(domain.empty() ? "" : ",") + "('order-" +
              std::to_string(i) + "',0)";
  }
  ASSERT_EQ(Sql("insert into domain_order values " + domain), "");
  Receiver receiver(dir_, "receiver");
  receiver.Start();
  std::string toml = "[store]\nurl = \"sqlite:" + dir_.file("herald.db") +
                     "\"\n[relay]\nowner = \"adopt-pg\"\n" + SourceToml(url_) +
                     "[[route]]\nname = \"hook\"\nsender = \"" +
                     receiver.url() +
                     "\"\nfrom = \"orders_outbox\"\nbatch = 50\n"
                     "max_in_flight = 8\nbackoff_initial = \"5ms\"\n"
                     "backoff_max = \"200ms\"\n";
  toml.replace(toml.find("\"orderNo\""), 9, "\"orderno\"");
  std::string config = dir_.file("herald.toml");
  std::ofstream(config) << toml;
  auto start = [&] {
    testing::Child::Options o;
    o.stderr_path = dir_.file("herald.err");
    return std::make_unique<testing::Child>(
        std::vector<std::string>{testing::HeraldBin(), "relay", "--config",
                                 config},
        o);
  };
  PgWriteLog log;
  std::vector<std::thread> writers;
  for (int k = 0; k < 6; ++k) {
    writers.emplace_back(RunPgWriter, url_, k, 6.0, 10, &log);
  }
  std::mt19937 rng(17);
  for (int trial = 0; trial < 5; ++trial) {
    auto herald = start();
    std::this_thread::sleep_for(std::chrono::milliseconds(
        std::uniform_int_distribution<int>(200, 1200)(rng)));
    herald->Signal(SIGKILL);
    herald->Wait();
  }
  for (auto& t : writers) t.join();
  auto herald = start();
  ASSERT_TRUE(
      WaitFor([&] { return Pending() == "0\n"; }, std::chrono::seconds(60)))
      << Pending() << testing::ReadTextFile(dir_.file("herald.err"));
  herald->Signal(SIGTERM);
  EXPECT_EQ(herald->Wait(), 0);
  ASSERT_FALSE(log.committed.empty());
  EXPECT_GT(log.rolled_back_transactions, 0);
  std::sort(log.committed.begin(), log.committed.end(),
            [](const Written& a, const Written& b) { return a.id < b.id; });
  size_t repeats =
      CheckAdoptedRows(receiver.Log(), log.committed, log.rolled_back, Table());
  std::printf("postgresql: %d transactions, %zu rows, %zu repeated\n",
              log.transactions, log.committed.size(), repeats);
}
// Id mode on PostgreSQL: a transaction (libpq, in this process) takes
// id 3 and stays open past safety_delay while rows 4 and 5 commit and are
// delivered; when it commits, row 3 is delivered late and counted.
TEST_F(AdoptPostgres, IdModeLateTransactionIsDeliveredAndCounted) {
  auto insert = [](const std::string& stream) {
    return "insert into event_record (orderno, topic, message, published, "
           "created_date) values ('" +
           stream + "','order.placed','{}','N',now() at time zone 'utc')";
  };
  ASSERT_EQ(Sql(insert("o1") + "; " + insert("o2")), "");
  std::string toml = SourceToml(url_);
  toml.replace(toml.find("\"orderNo\""), 9, "\"orderno\"");
  size_t p = toml.find("published = {");
  toml.replace(p, toml.find('\n', p) - p, "safety_delay = \"500ms\"");
  auto parsed = ParseConfig(toml, "h.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  auto store = OpenStore("sqlite:" + dir_.file("herald.db"));
  ASSERT_TRUE(store.ok());
  auto source = OpenTableSource(parsed->sources.at(0), {"r"}, store->get());
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  std::mutex mu;
  std::vector<int64_t> got;
  RelayOptions opts;
  opts.idle_poll = std::chrono::milliseconds(20);
  Relay relay(source->get(), store->get(), opts);
  RouteConfig route;
  route.name = "r";
  ASSERT_TRUE(relay
                  .AddRoute(route, MakeCallbackSender([&](const Event& e) {
                              std::lock_guard<std::mutex> l(mu);
                              got.push_back(e.position);
                              return Status::OK();
                            }))
                  .ok());
  ASSERT_TRUE(relay.Start().ok());
  auto positions = [&] {
    std::lock_guard<std::mutex> l(mu);
    return got;
  };
  ASSERT_TRUE(WaitFor([&] { return positions().size() == 2; }));
  // The long transaction takes id 3; rows 4 and 5 commit after it.
  PGconn* held = PQconnectdb(url_.c_str());
  ASSERT_EQ(PQstatus(held), CONNECTION_OK) << PQerrorMessage(held);
  auto exec = [&](const std::string& sql) {
    PGresult* r = PQexec(held, sql.c_str());
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
  };
  ASSERT_TRUE(exec("begin"));
  ASSERT_TRUE(exec(insert("o1")));
  ASSERT_EQ(Sql(insert("o3") + "; " + insert("o4")), "");
  ASSERT_TRUE(WaitFor([&] { return positions().size() == 4; }));
  EXPECT_EQ(positions(), (std::vector<int64_t>{1, 2, 4, 5}));
  ASSERT_TRUE(exec("commit"));
  PQfinish(held);
  ASSERT_TRUE(WaitFor([&] {
    auto late = CountLateRows(source->get(), store->get());
    return positions().size() == 5 && late.ok() && late->total == 1;
  }));
  relay.Stop();
  EXPECT_EQ(positions().back(), 3);
  auto late = CountLateRows(source->get(), store->get());
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->last_row, 3);
  // Never written.
  EXPECT_EQ(Pending(), "5\n");
}
#endif  // HERALD_WITH_POSTGRES

}  // namespace
}  // namespace herald
