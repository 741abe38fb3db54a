// PostgreSQL-specific behaviour of the store: opening (bad URL, wrong
// password, unreachable server, missing or newer schema), appending on the
// application's own connection, the herald_append SQL function as other
// languages use it, a long open transaction, and a server restart.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "herald/postgres.h"
#include "herald/store.h"
#include "postgres/pg_test_util.h"
#include "store/postgres/postgres_schema.h"
#include "support/test_util.h"

namespace herald {
namespace {

using testing::FreshStoreUrl;
using testing::MakeEvent;
using testing::PgConnect;
using testing::PgExec;
using testing::RunCommand;
using testing::TempDir;
using testing::WaitFor;

// Everything readable now, in position order.
std::vector<Event> ReadAllNow(Store* store) {
  std::vector<Event> out;
  ReadRequest r;
  r.offset = 1;
  r.limit = kMaxReadLimit;
  while (true) {
    auto page = store->Read(r);
    if (!page.ok() || page->events.empty()) break;
    out.insert(out.end(), page->events.begin(), page->events.end());
    r.offset = page->next_offset;
  }
  return out;
}

// SQL that makes a database as herald left it at schema `version` (its
// migrations up to that one, and the version recorded), then runs `more`,
// in one transaction.
std::string SchemaAt(int version, const std::string& more = "") {
  std::string sql = "BEGIN;";
  for (int v = 1; v <= version; ++v) sql += detail::PostgresMigration(v);
  return sql + "INSERT INTO herald_meta VALUES ('schema_version', '" +
         std::to_string(version) + "');" + more + "COMMIT";
}

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HERALD_REQUIRE_PG();
    url_ = FreshStoreUrl("postgresql", dir_);
  }
  std::unique_ptr<Store> Open(StoreOptions options = {}) {
    auto s = OpenStore(url_, options);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }
  TempDir dir_;
  std::string url_;
};

// ---- Opening: bad input --------------------------------------------------

TEST_F(PostgresStoreTest, BadUrlIsInvalidArgument) {
  for (std::string bad :
       {"postgresql://host:notaport/db",
        "postgresql://127.0.0.1/db?no_such_option=1", "postgres://[::1/db"}) {
    auto s = OpenStore(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().code(), Status::Code::kInvalidArgument)
        << bad << ": " << s.status().ToString();
    EXPECT_NE(s.status().message().find("PostgreSQL URL"), std::string::npos)
        << s.status().ToString();
  }
}

TEST_F(PostgresStoreTest, WrongPasswordIsUnavailableAndNamesTheProblem) {
  const char* good = std::getenv("HERALD_TEST_PG_PASSWORD_URL");
  ASSERT_NE(good, nullptr) << "with-postgres.sh exports a password role";
  std::string url = good;
  auto pos = url.find("herald-pw-secret");
  ASSERT_NE(pos, std::string::npos);
  ASSERT_TRUE(OpenStore(url).ok()) << "the right password works";
  url.replace(pos, 16, "not-the-password");
  auto s = OpenStore(url);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Status::Code::kUnavailable);
  EXPECT_NE(s.status().message().find("password authentication failed"),
            std::string::npos)
      << s.status().ToString();
  EXPECT_EQ(s.status().message().find("not-the-password"), std::string::npos)
      << "the password must not appear in messages";
}

TEST_F(PostgresStoreTest, UnreachableServerIsUnavailable) {
  int port = testing::FreePort();
  auto s = OpenStore("postgresql://nobody@127.0.0.1:" + std::to_string(port) +
                     "/herald");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Status::Code::kUnavailable);
  EXPECT_NE(s.status().message().find("cannot connect to PostgreSQL"),
            std::string::npos)
      << s.status().ToString();
}

TEST_F(PostgresStoreTest, DatabaseWithoutSchemaSuggestsHeraldMigrate) {
  StoreOptions no_migrate;
  no_migrate.migrate = false;
  auto s = OpenStore(url_, no_migrate);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("herald migrate"), std::string::npos)
      << s.status().ToString();
  // Nothing was created.
  auto c = PgConnect(url_);
  EXPECT_EQ(PgExec(c.get(), "SELECT to_regclass('herald_meta') IS NULL"), "t");

  // `herald migrate` then makes it usable with migrate=false.
  std::string out, err;
  ASSERT_EQ(
      RunCommand({testing::HeraldBin(), "migrate", "--db", url_}, &out, &err),
      0)
      << err;
  EXPECT_NE(out.find("\"postgresql\""), std::string::npos) << out;
  EXPECT_TRUE(OpenStore(url_, no_migrate).ok());
  EXPECT_EQ(PgExec(c.get(),
                   "SELECT value FROM herald_meta WHERE key = "
                   "'schema_version'"),
            std::to_string(detail::kPostgresSchemaVersion));
}

// A database at schema version 1 (appends queued every batch in
// herald_pending for the sequencer) is migrated on open; what waited is
// positioned, in batch order, and new appends follow.
TEST_F(PostgresStoreTest, MigratesFromSchemaOneAndPositionsWhatWaited) {
  auto c = PgConnect(url_);
  ASSERT_EQ(PgExec(c.get(), SchemaAt(1)), "");
  for (int i = 1; i <= 3; ++i) {
    ASSERT_EQ(PgExec(c.get(),
                     "SELECT created FROM herald_append('old', "
                     "'v1.appended', '{\"i\":" +
                         std::to_string(i) + "}')"),
              "t");
  }
  ASSERT_EQ(PgExec(c.get(), "SELECT count(*) FROM herald_pending"), "3");
  StoreOptions quiet;
  quiet.run_sequencer = false;
  auto store = Open(quiet);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(PgExec(c.get(),
                   "SELECT value FROM herald_meta WHERE key = "
                   "'schema_version'"),
            std::to_string(detail::kPostgresSchemaVersion));
  EXPECT_EQ(PgExec(c.get(),
                   "SELECT to_regproc('herald_append_events_checked')"
                   " IS NULL"),
            "t")
      << "folded into herald_append_events";
  Event next = MakeEvent("old", "v2.appended");
  ASSERT_TRUE(store->Append(std::span<Event>(&next, 1)).ok());
  auto all = ReadAllNow(store.get());
  ASSERT_EQ(all.size(), 4u);
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].position, static_cast<int64_t>(i + 1));
    EXPECT_EQ(all[i].stream_version, static_cast<int64_t>(i + 1));
  }
  EXPECT_EQ(all[3].id, next.id);
  EXPECT_EQ(PgExec(c.get(), "SELECT count(*) FROM herald_pending"), "0");
}

TEST_F(PostgresStoreTest, SchemaNewerThanBinaryIsRefused) {
  ASSERT_NE(Open(), nullptr);
  auto c = PgConnect(url_);
  ASSERT_EQ(PgExec(c.get(),
                   "UPDATE herald_meta SET value = '99' "
                   "WHERE key = 'schema_version'"),
            "");
  auto s = OpenStore(url_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("newer than this herald"),
            std::string::npos)
      << s.status().ToString();
  std::string out, err;
  EXPECT_EQ(
      RunCommand({testing::HeraldBin(), "migrate", "--db", url_}, &out, &err),
      2);
  EXPECT_NE(err.find("newer"), std::string::npos) << err;
  EXPECT_EQ(PgExec(c.get(),
                   "SELECT value FROM herald_meta WHERE key = "
                   "'schema_version'"),
            "99")
      << "nothing changed";
}

// ---- Appending on the application's connection ---------------------------

TEST_F(PostgresStoreTest, JoinAppendsInTheCallersTransaction) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto app = PgConnect(url_);
  ASSERT_EQ(PQstatus(app.get()), CONNECTION_OK);
  ASSERT_EQ(PgExec(app.get(),
                   "CREATE TABLE orders (id int PRIMARY KEY, state text);"
                   "INSERT INTO orders VALUES (1, 'new'), (2, 'new')"),
            "");

  // Rolled back: neither the domain change nor the event exists.
  ASSERT_EQ(PgExec(app.get(), "BEGIN"), "");
  ASSERT_EQ(PgExec(app.get(), "UPDATE orders SET state = 'paid' WHERE id = 1"),
            "");
  {
    auto tx = store->Join(app.get());
    EXPECT_EQ(PostgresHandle(*tx), app.get());
    Event e = MakeEvent("order-1", "order.paid");
    ASSERT_TRUE(store->Append(*tx, std::span<Event>(&e, 1)).ok());
    ASSERT_TRUE(tx->Rollback().ok());
  }
  EXPECT_EQ(PgExec(app.get(), "SELECT state FROM orders WHERE id = 1"), "new");

  // A conflicting append writes nothing and leaves the transaction usable.
  ASSERT_EQ(PgExec(app.get(), "BEGIN"), "");
  ASSERT_EQ(PgExec(app.get(), "UPDATE orders SET state = 'paid' WHERE id = 2"),
            "");
  auto tx = store->Join(app.get());
  Event wrong = MakeEvent("order-2", "order.paid");
  AppendOptions expect5;
  expect5.expected_version = 5;
  auto conflict = store->Append(*tx, std::span<Event>(&wrong, 1), expect5);
  ASSERT_FALSE(conflict.ok());
  EXPECT_TRUE(conflict.status().IsConflict()) << conflict.status().ToString();
  Event right = MakeEvent("order-2", "order.paid", R"({"order":2})");
  AppendOptions expect0;
  expect0.expected_version = 0;
  ASSERT_TRUE(store->Append(*tx, std::span<Event>(&right, 1), expect0).ok());
  EXPECT_EQ(right.stream_version, 1);
  ASSERT_TRUE(tx->Commit().ok());
  EXPECT_EQ(PQtransactionStatus(app.get()), PQTRANS_IDLE);
  EXPECT_EQ(PgExec(app.get(), "SELECT state FROM orders WHERE id = 2"), "paid");

  std::vector<Event> all;
  ASSERT_TRUE(WaitFor([&] {
    all = ReadAllNow(store.get());
    return !all.empty();
  }));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].id, right.id);
  EXPECT_EQ(all[0].position, 1);
  EXPECT_EQ(all[0].payload, R"({"order":2})");
}

TEST_F(PostgresStoreTest, NativeHandleOfBeginIsInsideTheTransaction) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto admin = PgConnect(url_);
  ASSERT_EQ(PgExec(admin.get(), "CREATE TABLE counters (n int)"), "");
  auto tx = store->Begin();
  ASSERT_TRUE(tx.ok());
  PGconn* c = PostgresHandle(**tx);
  EXPECT_EQ(PQtransactionStatus(c), PQTRANS_INTRANS);
  ASSERT_EQ(PgExec(c, "INSERT INTO counters VALUES (1)"), "");
  Event e = MakeEvent("c", "counter.bumped");
  ASSERT_TRUE(store->Append(**tx, std::span<Event>(&e, 1)).ok());
  ASSERT_TRUE((*tx)->Rollback().ok());
  EXPECT_EQ(PgExec(admin.get(), "SELECT count(*) FROM counters"), "0");
  EXPECT_EQ(PgExec(admin.get(), "SELECT count(*) FROM herald_events"), "0");
}

// ---- The SQL function for other languages --------------------------------

// Runs the example of docs/schema-postgresql.md (the ```sql block after
// "<!-- tested example -->") through psql, as a service in another
// language would send it with its usual driver, and checks its effects.
TEST_F(PostgresStoreTest, HeraldAppendFromPlainSqlAsDocumented) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::string src = testing::SourceDir();
  std::ifstream doc(src + "/docs/schema-postgresql.md");
  ASSERT_TRUE(doc.good()) << "docs/schema-postgresql.md";
  std::stringstream ss;
  ss << doc.rdbuf();
  std::string text = ss.str();
  auto marker = text.find("<!-- tested example -->");
  ASSERT_NE(marker, std::string::npos);
  auto begin = text.find("```sql\n", marker);
  ASSERT_NE(begin, std::string::npos);
  begin += 7;
  auto end = text.find("```", begin);
  std::string sql = text.substr(begin, end - begin);

  std::string out, err;
  int rc = RunCommand(
      {"psql", url_, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"}, &out,
      &err, sql);
  ASSERT_EQ(rc, 0) << err << "\n" << sql;

  // The example: a domain table, two appends in one transaction with the
  // domain change, a retried append (same id), an optimistic-concurrency
  // conflict caught in a savepoint.
  std::vector<Event> all;
  ASSERT_TRUE(WaitFor([&] {
    all = ReadAllNow(store.get());
    return all.size() >= 2;
  }));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].stream, "order-42");
  EXPECT_EQ(all[0].type, "order.placed");
  EXPECT_EQ(all[0].stream_version, 1);
  EXPECT_EQ(all[0].content_type, "application/json");
  EXPECT_EQ(all[0].payload, R"({"total": 99.5, "currency": "EUR"})");
  EXPECT_EQ(all[0].metadata, R"({"correlation_id": "c-1"})");
  EXPECT_EQ(all[1].id, "0190b6a4-7c1e-7d3a-9f00-000000000042");
  EXPECT_EQ(all[1].type, "order.paid");
  EXPECT_EQ(all[1].stream_version, 2);
  auto c = PgConnect(url_);
  EXPECT_EQ(PgExec(c.get(), "SELECT state FROM orders WHERE id = 42"), "paid");

  // Errors as other languages see them.
  std::string conflict =
      PgExec(c.get(),
             "SELECT * FROM herald_append('order-42', 'order.shipped', '{}', "
             "expected_version => 7)");
  EXPECT_EQ(conflict.rfind("ERROR HR409", 0), 0u) << conflict;
  std::string bad_json =
      PgExec(c.get(),
             "SELECT * FROM herald_append('order-42', 'order.shipped', "
             "'{not json')");
  EXPECT_EQ(bad_json.rfind("ERROR 22P02", 0), 0u) << bad_json;
  std::string bad_meta = PgExec(
      c.get(), "SELECT * FROM herald_append('order-42', 'x', '{}', '[1]')");
  EXPECT_EQ(bad_meta.rfind("ERROR 22023", 0), 0u) << bad_meta;
  EXPECT_EQ(PgExec(c.get(), "SELECT count(*) FROM herald_events"), "2");
}

// ---- A long open transaction ---------------------------------------------

// A transaction that appended and stays open is reported by DescribeHoldup
// (its backend pid, since when); it holds back only its own events and
// appends to its streams; everything is delivered once it ends. The issue
// asks for 30 s; this test holds it ~5 s to keep CI short (the threshold
// for reporting is 1 s).
TEST_F(PostgresStoreTest, OpenTransactionIsReportedAndDeliveredWhenItEnds) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto slow = PgConnect(url_);
  auto unrelated = PgConnect(url_);
  ASSERT_EQ(PQstatus(slow.get()), CONNECTION_OK);
  int slow_pid = PQbackendPID(slow.get());
  auto started = std::chrono::steady_clock::now();

  // An unrelated writing transaction (an xid, no herald events) stays open
  // too: it must hold nothing back.
  ASSERT_EQ(PgExec(unrelated.get(), "BEGIN"), "");
  ASSERT_FALSE(PgExec(unrelated.get(), "SELECT pg_current_xact_id()").empty());

  ASSERT_EQ(PgExec(slow.get(), "BEGIN"), "");
  auto slow_tx = store->Join(slow.get());
  Event held = MakeEvent("stream-slow", "slow.happened");
  ASSERT_TRUE(store->Append(*slow_tx, std::span<Event>(&held, 1)).ok());

  // Another stream flows while both are open.
  Event other = MakeEvent("stream-other", "other.happened");
  ASSERT_TRUE(store->Append(std::span<Event>(&other, 1)).ok());
  std::vector<Event> seen = ReadAllNow(store.get());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].id, other.id);

  // An append to the slow transaction's stream waits for it.
  std::atomic<bool> later_done{false};
  Event later = MakeEvent("stream-slow", "slow.followed");
  std::thread follower([&] {
    auto r = store->Append(std::span<Event>(&later, 1));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    later_done = true;
  });

  std::string holdup;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto h = store->DescribeHoldup();
        holdup = h.ok() ? *h : h.status().ToString();
        return holdup.find("backend pid " + std::to_string(slow_pid)) !=
               std::string::npos;
      },
      std::chrono::seconds(15)))
      << holdup;
  EXPECT_NE(holdup.find("in transaction since"), std::string::npos) << holdup;
  EXPECT_FALSE(later_done.load());

  // Keep it open ~5 s in all, then commit.
  std::this_thread::sleep_until(started + std::chrono::seconds(5));
  EXPECT_FALSE(later_done.load());
  EXPECT_EQ(ReadAllNow(store.get()).size(), 1u);
  ASSERT_TRUE(slow_tx->Commit().ok());
  follower.join();
  ASSERT_EQ(PgExec(unrelated.get(), "ROLLBACK"), "");

  std::vector<Event> all;
  ASSERT_TRUE(WaitFor([&] {
    all = ReadAllNow(store.get());
    return all.size() >= 3;
  }));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[1].id, held.id);
  EXPECT_EQ(all[2].id, later.id);
  EXPECT_EQ(all[2].stream_version, 2);
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].position, static_cast<int64_t>(i + 1));
  }
  auto h = store->DescribeHoldup();
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(*h, "");
}

// ---- Who positions what ----------------------------------------------------

// A REPEATABLE READ transaction cannot run the commit-time pass (its
// snapshot is old); its events are positioned by the background sequencer.
TEST_F(PostgresStoreTest, RepeatableReadCommitIsPositionedInTheBackground) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto tx = store->Begin();
  ASSERT_TRUE(tx.ok());
  ASSERT_EQ(PgExec(PostgresHandle(**tx),
                   "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
            "");
  Event e = MakeEvent("rr", "rr.happened");
  ASSERT_TRUE(store->Append(**tx, std::span<Event>(&e, 1)).ok());
  ASSERT_TRUE((*tx)->Commit().ok());
  std::vector<Event> all;
  ASSERT_TRUE(WaitFor([&] {
    all = ReadAllNow(store.get());
    return !all.empty();
  }));
  EXPECT_EQ(all[0].id, e.id);
  EXPECT_EQ(all[0].position, 1);
}

// One-shot commands run no sequencer: `herald append` positions its own
// events before it exits, so `herald read` in another process sees them.
TEST_F(PostgresStoreTest, CliAppendIsReadableByTheNextCommand) {
  ASSERT_NE(Open(), nullptr);  // migrated; this store is then idle
  std::string out, err;
  for (int i = 1; i <= 2; ++i) {
    ASSERT_EQ(RunCommand({testing::HeraldBin(), "append", "--db", url_,
                          "--type", "cli.appended", "--stream", "cli",
                          "{\"n\":" + std::to_string(i) + "}"},
                         &out, &err),
              0)
        << err;
  }
  ASSERT_EQ(
      RunCommand({testing::HeraldBin(), "read", "--db", url_}, &out, &err), 0)
      << err;
  EXPECT_NE(out.find("\"position\":1"), std::string::npos) << out;
  EXPECT_NE(out.find("\"position\":2"), std::string::npos) << out;
  EXPECT_NE(out.find("{\"n\":2}"), std::string::npos) << out;
}

// `herald append` prints the event as stored: its position (not 0) and
// its id in lower case, whatever case it was given in (#13.3).
TEST_F(PostgresStoreTest, CliAppendPrintsTheStoredEvent) {
  ASSERT_NE(Open(), nullptr);
  std::string lower = NewUuidV7();
  std::string upper = lower;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  std::string out, err;
  ASSERT_EQ(RunCommand({testing::HeraldBin(), "append", "--db", url_, "--type",
                        "cli.appended", "--stream", "cli", "--id", upper, "{}"},
                       &out, &err),
            0)
      << err;
  EXPECT_NE(out.find("\"id\":\"" + lower + "\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"position\":1,"), std::string::npos) << out;
  ASSERT_EQ(RunCommand({testing::HeraldBin(), "append", "--db", url_, "--type",
                        "cli.appended", "--stream", "cli", "--id", lower,
                        "{\"again\":true}"},
                       &out, &err),
            0)
      << err;
  EXPECT_NE(out.find("\"position\":1,"), std::string::npos) << out;
  EXPECT_NE(out.find("\"payload\":{}"), std::string::npos) << out;
}

// The SQL function takes uuid ids: the same UUID in two cases is one event.
TEST_F(PostgresStoreTest, HeraldAppendSqlFunctionIgnoresTheIdsCase) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::string lower = NewUuidV7();
  std::string upper = lower;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  auto c = PgConnect(url_);
  EXPECT_EQ(PgExec(c.get(),
                   "SELECT created FROM herald_append('s', 't', "
                   "'{}', '{}', '" +
                       upper + "')"),
            "t");
  EXPECT_EQ(PgExec(c.get(),
                   "SELECT created FROM herald_append('s', 't', "
                   "'{}', '{}', '" +
                       lower + "')"),
            "f");
  EXPECT_EQ(PgExec(c.get(), "SELECT id FROM herald_events"), lower);
  for (const auto& id : {lower, upper}) {
    auto got = store->Get(id);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->id, lower);
  }
}

// A retried herald_append (an id stored already) changes nothing: its one
// statement bumps the stream's version, finds the id stored and undoes the
// bump, so the stream's next event still gets the next version.
TEST_F(PostgresStoreTest, HeraldAppendRetryLeavesTheStreamVersionAlone) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::string id = NewUuidV7();
  auto c = PgConnect(url_);
  std::string append =
      "SELECT created || '|' || stream_version FROM herald_append('r', 't', "
      "'{}', '{}', '" +
      id + "')";
  EXPECT_EQ(PgExec(c.get(), append), "true|1");
  EXPECT_EQ(PgExec(c.get(), append), "false|1");
  // Twice in one transaction: the second sees the first's undo.
  EXPECT_EQ(PgExec(c.get(), "BEGIN"), "");
  EXPECT_EQ(PgExec(c.get(), append), "false|1");
  EXPECT_EQ(PgExec(c.get(), append), "false|1");
  EXPECT_EQ(PgExec(c.get(), "COMMIT"), "");
  EXPECT_EQ(
      PgExec(c.get(), "SELECT version FROM herald_streams WHERE stream = 'r'"),
      "1");
  EXPECT_EQ(PgExec(c.get(),
                   "SELECT stream_version FROM herald_append('r', 't', "
                   "'{}')"),
            "2");
  EXPECT_EQ(PgExec(c.get(), "SELECT count(*) FROM herald_events"), "2");
}

// Schema 3 moves the route errors schema 2 kept in the lease table into
// herald_route_status.
TEST_F(PostgresStoreTest, SchemaThreeMovesRouteErrorsOutOfTheLeaseTable) {
  auto c = PgConnect(url_);
  ASSERT_EQ(PgExec(c.get(), SchemaAt(2,
                                     "INSERT INTO herald_leases VALUES "
                                     "('relay-error/billing', 'HTTP 500', "
                                     "'2026-01-02T03:04:05Z'),"
                                     "('relay/billing', 'h:1:a', now());")),
            "");
  StoreOptions quiet;
  quiet.run_sequencer = false;
  auto store = Open(quiet);
  ASSERT_NE(store, nullptr);
  auto row = store->GetRouteStatus("billing");
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ((*row)->last_error, "HTTP 500");
  EXPECT_EQ(FormatRfc3339((*row)->last_error_at_us),
            "2026-01-02T03:04:05.000000Z");
  EXPECT_FALSE(store->GetLease("relay-error/billing")->has_value());
  EXPECT_TRUE(store->GetLease("relay/billing")->has_value());
}

// A database at schema version 6 is migrated in place on open: what was
// appended before keeps its positions and versions, and herald_append's new
// paths (an id it generates, into a stream with a row or without one; a
// given id, new or retried) carry on from there.
TEST_F(PostgresStoreTest, MigratesFromSchemaSixInPlace) {
  auto c = PgConnect(url_);
  ASSERT_EQ(PgExec(c.get(), SchemaAt(6)), "");
  ASSERT_EQ(PgExec(c.get(),
                   "SELECT stream_version FROM herald_append('a', 'v6', "
                   "'{}')"),
            "1");
  StoreOptions quiet;
  quiet.run_sequencer = false;
  auto store = Open(quiet);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(PgExec(c.get(),
                   "SELECT value FROM herald_meta WHERE key = "
                   "'schema_version'"),
            "7");
  EXPECT_EQ(PgExec(c.get(),
                   "SELECT stream_version FROM herald_append('a', 'v7', "
                   "'{}')"),
            "2")
      << "a stream with a row";
  EXPECT_EQ(PgExec(c.get(),
                   "SELECT stream_version FROM herald_append('b', 'v7', "
                   "'{}')"),
            "1")
      << "a stream's first event";
  std::string id = NewUuidV7();
  std::string given =
      "SELECT created || '|' || stream_version FROM herald_append('a', "
      "'v7', '{}', '{}', '" +
      id + "')";
  EXPECT_EQ(PgExec(c.get(), given), "true|3");
  EXPECT_EQ(PgExec(c.get(), given), "false|3");
  auto all = ReadAllNow(store.get());
  ASSERT_EQ(all.size(), 4u);
  std::vector<std::pair<std::string, int64_t>> want = {
      {"a", 1}, {"a", 2}, {"b", 1}, {"a", 3}};
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].position, static_cast<int64_t>(i + 1));
    EXPECT_EQ(all[i].stream, want[i].first);
    EXPECT_EQ(all[i].stream_version, want[i].second);
  }
  EXPECT_EQ(all[3].id, id);
}

// Appends of events without ids (herald generates them: no look-up of
// stored ids), one and several per call, into new streams and streams with
// rows, numbered from the stream's version and positioned densely.
TEST_F(PostgresStoreTest, AppendsOfNewIdsNumberStreamsAndPositionsDensely) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  Event one = MakeEvent("s", "one");
  ASSERT_TRUE(store->Append(std::span<Event>(&one, 1)).ok());
  EXPECT_EQ(one.stream_version, 1) << "a stream's first event";
  std::vector<Event> three = {MakeEvent("s", "a"), MakeEvent("s", "b"),
                              MakeEvent("s", "c")};
  auto r = store->Append(std::span<Event>(three));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->created, 3u);
  for (size_t i = 0; i < three.size(); ++i) {
    EXPECT_FALSE(three[i].id.empty());
    EXPECT_EQ(three[i].stream_version, static_cast<int64_t>(2 + i));
  }
  std::vector<Event> fresh = {MakeEvent("t", "a"), MakeEvent("t", "b")};
  ASSERT_TRUE(store->Append(std::span<Event>(fresh)).ok());
  EXPECT_EQ(fresh[1].stream_version, 2) << "a new stream, several events";
  Event again = MakeEvent("t", "c");
  ASSERT_TRUE(store->Append(std::span<Event>(&again, 1)).ok());
  EXPECT_EQ(again.stream_version, 3) << "a stream with a row";
  auto all = ReadAllNow(store.get());
  ASSERT_EQ(all.size(), 7u);
  std::vector<std::string> order = {one.id,      three[0].id, three[1].id,
                                    three[2].id, fresh[0].id, fresh[1].id,
                                    again.id};
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].position, static_cast<int64_t>(i + 1));
    EXPECT_EQ(all[i].id, order[i]);
  }
  // The stream rows agree with the events, for the next append.
  auto c = PgConnect(url_);
  EXPECT_EQ(PgExec(c.get(),
                   "SELECT string_agg(stream || '=' || version, ',' "
                   "ORDER BY stream) FROM herald_streams"),
            "s=4,t=3");
}

// A read-only open neither migrates nor runs the sequencer; an older
// schema is refused, naming what to run.
TEST_F(PostgresStoreTest, ReadOnlyOpenNeverMigrates) {
  StoreOptions ro;
  ro.read_only = true;
  auto none = OpenStore(url_, ro);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(none.status().message().find("herald migrate"), std::string::npos);
  auto c = PgConnect(url_);
  EXPECT_EQ(PgExec(c.get(), "SELECT to_regclass('herald_meta') IS NULL"), "t")
      << "nothing created";
}

// pg_dump / restore into another database: positions given are kept,
// committed events still waiting for the sequencer are positioned after.
TEST_F(PostgresStoreTest, DumpAndRestoreKeepsPositionsAndPositionsTheRest) {
  StoreOptions quiet;
  quiet.run_sequencer = false;
  auto store = Open(quiet);
  ASSERT_NE(store, nullptr);
  std::vector<Event> first;
  for (int i = 0; i < 3; ++i) {
    Event e = MakeEvent("d", "dumped", "{\"i\":" + std::to_string(i) + "}");
    ASSERT_TRUE(store->Append(std::span<Event>(&e, 1)).ok());
    first.push_back(e);
  }
  // Two more from SQL, left for a sequencer (none runs): a REPEATABLE READ
  // transaction's commit queues its batches instead of positioning them.
  auto c = PgConnect(url_);
  ASSERT_EQ(PgExec(c.get(),
                   "BEGIN ISOLATION LEVEL REPEATABLE READ;"
                   "SELECT event_id FROM herald_append('d', 'late', '{}');"
                   "SELECT event_id FROM herald_append('e', 'late', '{}');"
                   "COMMIT"),
            "");
  EXPECT_EQ(PgExec(c.get(), "SELECT count(*) FROM herald_pending"), "2");

  TempDir other;
  std::string restored = FreshStoreUrl("postgresql", other);
  std::string dump = dir_.file("dump.sql"), out, err;
  ASSERT_EQ(RunCommand({"pg_dump", "--no-owner", "-f", dump, url_}, &out, &err),
            0)
      << err;
  ASSERT_EQ(RunCommand({"psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", dump,
                        restored},
                       &out, &err),
            0)
      << err;

  auto reopened = OpenStore(restored);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  std::vector<Event> all;
  ASSERT_TRUE(WaitFor([&] {
    all = ReadAllNow(reopened->get());
    return all.size() >= 5;
  }));
  ASSERT_EQ(all.size(), 5u);
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].position, static_cast<int64_t>(i + 1));
  }
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(all[i].id, first[i].id);
  EXPECT_EQ(all[3].type, "late");
  EXPECT_EQ(all[4].type, "late");
  // Appends continue after the restored ones.
  Event next = MakeEvent("d", "after");
  ASSERT_TRUE((*reopened)->Append(std::span<Event>(&next, 1)).ok());
  EXPECT_EQ(next.stream_version, 5);
  auto got = (*reopened)->Get(next.id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->position, 6);
}

// ---- Positions at commit --------------------------------------------------

// Whoever commits an append (here plain SQL, no herald process running a
// sequencer) positions it in its COMMIT: readable at once, nothing queued.
TEST_F(PostgresStoreTest, SqlAppendIsPositionedByItsOwnCommit) {
  StoreOptions quiet;
  quiet.run_sequencer = false;
  auto store = Open(quiet);
  ASSERT_NE(store, nullptr);
  auto c = PgConnect(url_);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(PgExec(c.get(),
                     "BEGIN; SELECT herald_append('sql', 'sql.appended', "
                     "'{}'); SELECT herald_append('other', 'sql.appended', "
                     "'{}'); COMMIT"),
              "");
    EXPECT_EQ(PgExec(c.get(), "SELECT count(*) FROM herald_pending"), "0");
    EXPECT_EQ(PgExec(c.get(),
                     "SELECT count(*) FROM herald_events e "
                     "LEFT JOIN herald_log l ON l.batch = e.batch "
                     "WHERE l.batch IS NULL"),
              "0")
        << "every committed event has its position";
  }
  EXPECT_EQ(PgExec(c.get(),
                   "SELECT max(position) FROM "
                   "herald_positioned_events"),
            "6");
  // Rolled back: nothing positioned, no position used.
  ASSERT_EQ(PgExec(c.get(),
                   "BEGIN; SELECT herald_append('sql', 'gone', '{}'); "
                   "ROLLBACK"),
            "");
  Event next = MakeEvent("sql", "after");
  ASSERT_TRUE(store->Append(std::span<Event>(&next, 1)).ok());
  auto got = store->Get(next.id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->position, 7);
  EXPECT_EQ(got->stream_version, 4);
}

// A commit that finds the sequencer lock held does not wait: it queues its
// batch, and the next commit that gets the lock positions the queue first,
// in batch order, then its own.
TEST_F(PostgresStoreTest, CommitThatFindsTheLockHeldQueuesAndNeverWaits) {
  StoreOptions quiet;
  quiet.run_sequencer = false;
  auto store = Open(quiet);
  ASSERT_NE(store, nullptr);
  auto holder = PgConnect(url_);
  ASSERT_EQ(
      PgExec(holder.get(), "SELECT pg_advisory_lock(7306916370318864496)"), "");
  auto c = PgConnect(url_);
  ASSERT_EQ(PgExec(c.get(),
                   "SELECT created FROM herald_append('q', "
                   "'first', '{}')"),
            "t");
  EXPECT_EQ(PgExec(c.get(), "SELECT count(*) FROM herald_pending"), "1")
      << "queued while another holds the lock";
  ASSERT_EQ(
      PgExec(holder.get(), "SELECT pg_advisory_unlock(7306916370318864496)"),
      "t");
  ASSERT_EQ(PgExec(c.get(),
                   "SELECT created FROM herald_append('q', "
                   "'second', '{}')"),
            "t");
  EXPECT_EQ(PgExec(c.get(), "SELECT count(*) FROM herald_pending"), "0");
  EXPECT_EQ(PgExec(c.get(),
                   "SELECT string_agg(type, ',' ORDER BY position) "
                   "FROM herald_positioned_events"),
            "first,second");
}

// BeginRelaxed runs with synchronous_commit = off (Begin does not). Such a
// commit does not position its events (positions come only from durable
// commits): it queues them for the next pass, here the one a store without
// a sequencer runs before Commit() returns.
TEST_F(PostgresStoreTest, RelaxedTransactionsSkipTheFlushAndQueueTheirEvents) {
  StoreOptions quiet;
  quiet.run_sequencer = false;
  auto store = Open(quiet);
  ASSERT_NE(store, nullptr);
  auto tx = store->BeginRelaxed();
  ASSERT_TRUE(tx.ok());
  EXPECT_EQ(PgExec(PostgresHandle(**tx), "SHOW synchronous_commit"), "off");
  Event e = MakeEvent("relaxed", "t");
  ASSERT_TRUE(store->Append(**tx, std::span<Event>(&e, 1)).ok());
  ASSERT_TRUE((*tx)->Commit().ok());
  auto got = store->Get(e.id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->position, 1);

  auto plain = store->Begin();
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(PgExec(PostgresHandle(**plain), "SHOW synchronous_commit"), "on");
  ASSERT_TRUE((*plain)->Rollback().ok());

  auto c = PgConnect(url_);
  ASSERT_EQ(PgExec(c.get(),
                   "BEGIN; SET LOCAL synchronous_commit = off; "
                   "SELECT herald_append('relaxed', 't', '{}'); COMMIT"),
            "");
  EXPECT_EQ(PgExec(c.get(), "SELECT count(*) FROM herald_pending"), "1");
}

// ---- Sequencer lease -----------------------------------------------------

TEST_F(PostgresStoreTest, OneSequencerHoldsTheLeaseAcrossStores) {
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::optional<LeaseInfo> lease;
  ASSERT_TRUE(WaitFor([&] {
    auto l = a->GetLease("herald.sequencer");
    if (l.ok()) lease = *l;
    return lease.has_value();
  }));
  // Events appended through either store are positioned once, densely.
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    Event e = MakeEvent("s" + std::to_string(i % 3), "t");
    Store* s = (i % 2) ? a.get() : b.get();
    ASSERT_TRUE(s->Append(std::span<Event>(&e, 1)).ok());
    ids.push_back(e.id);
  }
  std::vector<Event> all;
  ASSERT_TRUE(WaitFor([&] {
    all = ReadAllNow(a.get());
    return all.size() >= ids.size();
  }));
  ASSERT_EQ(all.size(), ids.size());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].position, static_cast<int64_t>(i + 1));
    EXPECT_EQ(all[i].id, ids[i]) << "one writer at a time: append order";
  }
  auto again = b->GetLease("herald.sequencer");
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->owner, lease->owner) << "the lease stayed with one store";
}

// ---- Server restart ------------------------------------------------------

// pg_ctl stop -m fast / start while a store appends and reads (on a cluster
// of this test's own, so other tests keep their server): calls fail with
// Unavailable while it is down, the store reconnects by itself, and every
// acknowledged event is read exactly once at dense positions.
TEST(PostgresRestart, ReconnectsAfterFastStopAndStartNothingLost) {
  HERALD_REQUIRE_PG();
  testing::PrivateCluster cluster;
  ASSERT_TRUE(cluster.ok()) << "private cluster did not start";
  auto opened = OpenStore(cluster.url());
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto store = std::move(*opened);

  std::atomic<bool> stop{false};
  std::atomic<int> unavailable{0};
  std::atomic<int> acknowledged{0};
  std::mutex mu;
  std::vector<std::string> acked;  // guarded by mu
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      Event e = MakeEvent("stream-" + std::to_string(i % 4), "tick",
                          "{\"i\":" + std::to_string(i) + "}");
      e.id = NewUuidV7();
      // Retry the same id until acknowledged: idempotent by id.
      while (true) {
        Event attempt = e;
        auto r = store->Append(std::span<Event>(&attempt, 1));
        if (r.ok()) break;
        EXPECT_EQ(r.status().code(), Status::Code::kUnavailable)
            << r.status().ToString();
        ++unavailable;
        if (stop) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      std::lock_guard<std::mutex> lock(mu);
      acked.push_back(e.id);
      ++acknowledged;
    }
  });
  ASSERT_TRUE(WaitFor([&] { return acknowledged > 20; }));
  ASSERT_EQ(cluster.Ctl("stop -m fast"), 0);
  ASSERT_TRUE(WaitFor([&] { return unavailable > 0; }));
  auto down = store->Head();
  EXPECT_FALSE(down.ok());
  EXPECT_EQ(down.status().code(), Status::Code::kUnavailable);
  ASSERT_EQ(cluster.Ctl("start"), 0);
  int before = acknowledged;
  ASSERT_TRUE(WaitFor([&] { return acknowledged > before + 20; },
                      std::chrono::seconds(20)));
  stop = true;
  writer.join();

  std::vector<std::string> expected;
  {
    std::lock_guard<std::mutex> lock(mu);
    expected = acked;
  }
  std::vector<Event> all;
  ASSERT_TRUE(WaitFor([&] {
    all = ReadAllNow(store.get());
    return all.size() >= expected.size();
  }));
  std::set<std::string> seen;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].position, static_cast<int64_t>(i + 1));
    EXPECT_TRUE(seen.insert(all[i].id).second) << "twice: " << all[i].id;
  }
  for (const auto& id : expected) EXPECT_TRUE(seen.count(id)) << "lost " << id;
  // At most the one append in flight at the end may exist unacknowledged.
  EXPECT_LE(all.size(), expected.size() + 1);
}

// The sequencer thread tells other processes' commits from this process's
// own (docs/postgresql.md): when they move the head it wakes this store's
// readers, also while this store appends events of its own in between.
TEST_F(PostgresStoreTest, OtherProcessesCommitsWakeThisStoresReaders) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto other = PgConnect(url_);
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 20; ++i) {
      Event own = MakeEvent("own", "v1.appended");
      ASSERT_TRUE(store->Append(std::span<Event>(&own, 1)).ok());
    }
    const uint64_t seen = store->append_epoch();
    ASSERT_EQ(PgExec(other.get(),
                     "SELECT created FROM herald_append('theirs', "
                     "'v1.appended', '{}')"),
              "t");
    // Waits for the wake-up itself: the store's own appends above are
    // done, so only the sequencer seeing the other commit moves the epoch.
    EXPECT_NE(store->WaitForAppend(seen, std::chrono::seconds(10)), seen)
        << "round " << round;
  }
}

}  // namespace
}  // namespace herald
