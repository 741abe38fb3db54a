// The herald binary's store commands: output, and every bad input the
// foundation issue names (exit status 2, a message naming the problem, and
// the store unchanged).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "herald/json.h"
#include "herald/store.h"
#include "support/test_util.h"

namespace herald {
namespace {

using testing::HeraldBin;
using testing::RunCommand;
using testing::TempDir;

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = dir_.file("herald.db");
    ASSERT_EQ(Run({"append", "--db", db_, "--type", "order.placed", "--stream",
                   "order-1", R"({"n":1})"}),
              0)
        << err_;
  }

  int Run(std::vector<std::string> args, const std::string& stdin_text = "") {
    args.insert(args.begin(), HeraldBin());
    return RunCommand(args, &out_, &err_, stdin_text);
  }

  // Runs a command that must fail as bad input and leave the store as it
  // was; returns stderr.
  std::string ExpectBadInput(std::vector<std::string> args,
                             const std::string& stdin_text = "") {
    std::string before = Dump();
    EXPECT_EQ(Run(args, stdin_text), 2) << "stdout: " << out_;
    EXPECT_TRUE(out_.empty()) << out_;
    EXPECT_EQ(Dump(), before) << "the store changed";
    return err_;
  }

  std::string Dump() {
    std::string out;
    RunCommand({HeraldBin(), "read", "--db", db_}, &out);
    return out;
  }

  TempDir dir_;
  std::string db_;
  std::string out_, err_;
};

TEST_F(Cli, AppendPrintsTheStoredEvent) {
  ASSERT_EQ(Run({"append", "--db", db_, "--type", "order.canceled", "--stream",
                 "order-1", "--metadata", R"({"correlation_id":"c-9"})",
                 R"({"reason":"late"})"}),
            0);
  auto j = Json::Parse(out_);
  ASSERT_TRUE(j.ok()) << out_;
  EXPECT_TRUE(IsUuid(j->Find("id")->as_string()));
  EXPECT_EQ(j->Find("position")->raw(), "2");
  EXPECT_EQ(j->Find("stream_version")->raw(), "2");
  EXPECT_EQ(j->Find("type")->as_string(), "order.canceled");
  EXPECT_EQ(j->Find("payload")->raw(), R"({"reason":"late"})");
  EXPECT_EQ(j->Find("metadata")->Find("correlation_id")->as_string(), "c-9");
  EXPECT_TRUE(ParseRfc3339(j->Find("occurred_at")->as_string()).ok());
}

TEST_F(Cli, AppendReadsThePayloadFromStdinAndKeepsAGivenId) {
  std::string id = NewUuidV7();
  ASSERT_EQ(Run({"append", "--db", db_, "--type", "t", "--stream", "s", "--id",
                 id, "--content-type", "text/plain"},
                "hello\nworld"),
            0)
      << err_;
  auto j = Json::Parse(out_);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->Find("id")->as_string(), id);
  EXPECT_EQ(j->Find("payload")->as_string(), "hello\nworld");
  // Appending the same id again is not a second event.
  ASSERT_EQ(Run({"append", "--db", db_, "--type", "t", "--stream", "s", "--id",
                 id, "--content-type", "text/plain", "other"}),
            0);
  EXPECT_EQ(Json::Parse(out_)->Find("position")->raw(), "2");
}

TEST_F(Cli, ReadPrintsJsonLinesWithOffsetLimitAndStream) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(Run({"append", "--db", db_, "--type", "t", "--stream",
                   i % 2 ? "a" : "b", "{}"}),
              0);
  }
  ASSERT_EQ(Run({"read", "--db", db_, "--offset", "2", "--limit", "2"}), 0);
  std::istringstream lines(out_);
  std::string line;
  std::vector<std::string> positions;
  while (std::getline(lines, line)) {
    positions.push_back(
        std::string(Json::Parse(line)->Find("position")->raw()));
  }
  EXPECT_EQ(positions, (std::vector<std::string>{"2", "3"}));
  ASSERT_EQ(Run({"read", "--db", db_, "--stream", "a"}), 0);
  EXPECT_EQ(std::count(out_.begin(), out_.end(), '\n'), 2);
}

TEST_F(Cli, ExpectedVersionConflictFails) {
  EXPECT_EQ(Run({"append", "--db", db_, "--type", "t", "--stream", "order-1",
                 "--expected-version", "0", "{}"}),
            1);
  EXPECT_NE(err_.find("expected 0"), std::string::npos) << err_;
  EXPECT_EQ(Run({"append", "--db", db_, "--type", "t", "--stream", "order-1",
                 "--expected-version", "1", "{}"}),
            0);
}

TEST_F(Cli, MigrateHelpAndVersion) {
  ASSERT_EQ(Run({"migrate", "--db", dir_.file("new.db")}), 0) << err_;
  EXPECT_NE(out_.find("\"migrated\":true"), std::string::npos);
  ASSERT_EQ(Run({"--help"}), 0);
  EXPECT_NE(out_.find("append"), std::string::npos);
  EXPECT_NE(out_.find("migrate"), std::string::npos);
  ASSERT_EQ(Run({"--version"}), 0);
  EXPECT_EQ(out_.rfind("herald ", 0), 0u);
}

TEST_F(Cli, NewDatabasePathIsCreatedAndMigrated) {
  std::string fresh = dir_.file("fresh.db");
  ASSERT_EQ(Run({"migrate", "--db", fresh}), 0) << err_;
  ASSERT_EQ(Run({"read", "--db", fresh}), 0) << err_;
  EXPECT_TRUE(out_.empty());
  auto store = OpenStore(fresh);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  std::string appended = dir_.file("appended.db");
  ASSERT_EQ(
      Run({"append", "--db", appended, "--type", "t", "--stream", "s", "{}"}),
      0)
      << err_;
  EXPECT_TRUE(std::filesystem::exists(appended));
}

// `herald read` never guesses that a path it cannot find was meant to be a
// new database (#12.6).
TEST_F(Cli, ReadOfAMissingPathExitsTwoAndCreatesNothing) {
  std::string missing = dir_.file("missing.db");
  EXPECT_EQ(Run({"read", "--db", missing}), 2);
  EXPECT_TRUE(out_.empty()) << out_;
  EXPECT_NE(err_.find(missing), std::string::npos) << err_;
  EXPECT_NE(err_.find("no database"), std::string::npos) << err_;
  EXPECT_FALSE(std::filesystem::exists(missing));
  EXPECT_FALSE(std::filesystem::exists(missing + "-wal"));
  EXPECT_EQ(Run({"read", "--db", "sqlite:" + missing}), 2);
  EXPECT_FALSE(std::filesystem::exists(missing));
}

// Reading takes no write lock: another process holding one (BEGIN
// IMMEDIATE) does not make `herald read` wait for the busy timeout (#13.7).
TEST_F(Cli, ReadWhileAnotherProcessHoldsTheWriteLock) {
  sqlite3* db;
  ASSERT_EQ(sqlite3_open(db_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "BEGIN IMMEDIATE; INSERT INTO herald_checkpoints "
                         "VALUES ('x', 1, 0)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Run({"read", "--db", db_}), 0) << err_;
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(std::count(out_.begin(), out_.end(), '\n'), 1) << out_;
  EXPECT_LT(took, std::chrono::seconds(3)) << "waited for the write lock";
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
}

// A database an older herald made (schema 1) is still read: the read-only
// open gives way to a migrating one, as before.
TEST_F(Cli, ReadOfAnOlderSchemaMigratesItFirst) {
  sqlite3* db;
  ASSERT_EQ(sqlite3_open(db_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "DROP TABLE herald_route_status;"
                         "DROP INDEX herald_inbox_by_time;"
                         "ALTER TABLE herald_parked DROP COLUMN event;"
                         "UPDATE herald_meta SET value = '1' "
                         "WHERE key = 'schema_version'",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  ASSERT_EQ(Run({"read", "--db", db_}), 0) << err_;
  EXPECT_EQ(std::count(out_.begin(), out_.end(), '\n'), 1) << out_;
  auto store = OpenStore(db_);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_TRUE((*store)->GetRouteStatus("r").ok()) << "migrated to schema 2";
}

// One event per UUID whatever its case; append prints the event as stored.
TEST_F(Cli, AppendStoresAnUpperCaseIdInLowerCase) {
  std::string lower = NewUuidV7();
  std::string upper = lower;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  ASSERT_EQ(Run({"append", "--db", db_, "--type", "t", "--stream", "s", "--id",
                 upper, R"({"n":1})"}),
            0)
      << err_;
  auto j = Json::Parse(out_);
  ASSERT_TRUE(j.ok()) << out_;
  EXPECT_EQ(j->Find("id")->as_string(), lower);
  EXPECT_EQ(j->Find("position")->raw(), "2");
  ASSERT_EQ(Run({"append", "--db", db_, "--type", "t", "--stream", "s", "--id",
                 lower, R"({"n":2})"}),
            0)
      << err_;
  j = Json::Parse(out_);
  ASSERT_TRUE(j.ok()) << out_;
  EXPECT_EQ(j->Find("id")->as_string(), lower);
  EXPECT_EQ(j->Find("position")->raw(), "2") << "the stored event";
  EXPECT_EQ(j->Find("payload")->raw(), R"({"n":1})");
  ASSERT_EQ(Run({"read", "--db", db_}), 0);
  EXPECT_EQ(std::count(out_.begin(), out_.end(), '\n'), 2) << out_;
}

TEST_F(Cli, BadInvalidUuid) {
  auto err = ExpectBadInput({"append", "--db", db_, "--type", "t", "--stream",
                             "s", "--id", "1234", "{}"});
  EXPECT_NE(err.find("not a UUID"), std::string::npos) << err;
}

TEST_F(Cli, BadEmptyType) {
  auto err = ExpectBadInput(
      {"append", "--db", db_, "--type", "", "--stream", "s", "{}"});
  EXPECT_NE(err.find("type"), std::string::npos) << err;
}

TEST_F(Cli, BadOverLongType) {
  auto err = ExpectBadInput({"append", "--db", db_, "--type",
                             std::string(300, 't'), "--stream", "s", "{}"});
  EXPECT_NE(err.find("type is 300 bytes"), std::string::npos) << err;
}

TEST_F(Cli, BadEmptyStream) {
  auto err = ExpectBadInput(
      {"append", "--db", db_, "--type", "t", "--stream", "", "{}"});
  EXPECT_NE(err.find("stream"), std::string::npos) << err;
}

TEST_F(Cli, BadOverLongStream) {
  auto err = ExpectBadInput({"append", "--db", db_, "--type", "t", "--stream",
                             std::string(257, 's'), "{}"});
  EXPECT_NE(err.find("stream is 257 bytes"), std::string::npos) << err;
}

TEST_F(Cli, BadPayloadNotJson) {
  auto err = ExpectBadInput(
      {"append", "--db", db_, "--type", "t", "--stream", "s", "{oops"});
  EXPECT_NE(err.find("payload is not valid JSON"), std::string::npos) << err;
  err = ExpectBadInput({"append", "--db", db_, "--type", "t", "--stream", "s"},
                       "not json from stdin");
  EXPECT_NE(err.find("payload is not valid JSON"), std::string::npos) << err;
}

TEST_F(Cli, BadMetadataNotAnObject) {
  auto err = ExpectBadInput({"append", "--db", db_, "--type", "t", "--stream",
                             "s", "--metadata", "[1,2]", "{}"});
  EXPECT_NE(err.find("metadata"), std::string::npos) << err;
}

TEST_F(Cli, BadLimitZero) {
  auto err = ExpectBadInput({"read", "--db", db_, "--limit", "0"});
  EXPECT_NE(err.find("--limit must be between 1 and 10000"), std::string::npos)
      << err;
}

TEST_F(Cli, BadLimitNegative) {
  auto err = ExpectBadInput({"read", "--db", db_, "--limit", "-5"});
  EXPECT_NE(err.find("--limit"), std::string::npos) << err;
}

TEST_F(Cli, BadLimitAboveMaximum) {
  auto err = ExpectBadInput({"read", "--db", db_, "--limit", "10001"});
  EXPECT_NE(err.find("--limit"), std::string::npos) << err;
}

TEST_F(Cli, BadNonNumericOffset) {
  auto err = ExpectBadInput({"read", "--db", db_, "--offset", "ten"});
  EXPECT_NE(err.find("--offset must be a whole number"), std::string::npos)
      << err;
  err = ExpectBadInput({"read", "--db", db_, "--offset", "-1"});
  EXPECT_NE(err.find("--offset"), std::string::npos) << err;
}

TEST_F(Cli, BadUnknownOption) {
  auto err = ExpectBadInput({"read", "--db", db_, "--colour"});
  EXPECT_NE(err.find("unknown option '--colour'"), std::string::npos) << err;
  err = ExpectBadInput(
      {"append", "--db", db_, "--type", "t", "--stream", "s", "-x", "{}"});
  EXPECT_NE(err.find("unknown option '-x'"), std::string::npos) << err;
  EXPECT_EQ(Run({"frobnicate"}), 2);
}

TEST_F(Cli, BadTextFileAsDb) {
  std::string notes = dir_.file("notes.txt");
  std::ofstream(notes) << "not a database\n";
  for (auto cmd : {"read", "append", "migrate"}) {
    std::vector<std::string> args{cmd, "--db", notes};
    if (std::string(cmd) == "append") {
      args.insert(args.end(), {"--type", "t", "--stream", "s", "{}"});
    }
    EXPECT_EQ(Run(args), 2) << cmd;
    EXPECT_NE(err_.find("not a herald database"), std::string::npos) << err_;
  }
  std::ifstream in(notes);
  std::string content((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(content, "not a database\n");
}

TEST_F(Cli, BadOtherApplicationsSqliteFile) {
  std::string other = dir_.file("other.db");
  sqlite3* db;
  sqlite3_open(other.c_str(), &db);
  sqlite3_exec(db, "CREATE TABLE invoices (id INTEGER)", nullptr, nullptr,
               nullptr);
  sqlite3_close(db);
  EXPECT_EQ(
      Run({"append", "--db", other, "--type", "t", "--stream", "s", "{}"}), 2);
  EXPECT_NE(err_.find("not a herald database"), std::string::npos) << err_;
  EXPECT_EQ(Run({"read", "--db", other}), 2);
  sqlite3_open(other.c_str(), &db);
  sqlite3_stmt* s;
  sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &s, nullptr);
  sqlite3_step(s);
  EXPECT_EQ(sqlite3_column_int(s, 0), 1) << "no herald tables were added";
  sqlite3_finalize(s);
  sqlite3_close(db);
}

TEST_F(Cli, BadSchemaNewerThanBinary) {
  sqlite3* db;
  sqlite3_open(db_.c_str(), &db);
  sqlite3_exec(db,
               "UPDATE herald_meta SET value = '42' WHERE key = "
               "'schema_version'",
               nullptr, nullptr, nullptr);
  sqlite3_close(db);
  EXPECT_EQ(Run({"read", "--db", db_}), 2);
  EXPECT_NE(err_.find("schema version 42, newer"), std::string::npos) << err_;
  EXPECT_EQ(Run({"append", "--db", db_, "--type", "t", "--stream", "s", "{}"}),
            2);
  EXPECT_EQ(Run({"migrate", "--db", db_}), 2);
}

TEST_F(Cli, FollowPrintsEventsAsTheyCommit) {
  std::string out_path = dir_.file("follow.out");
  testing::Child::Options o;
  o.stdout_path = out_path;
  testing::Child follower({HeraldBin(), "read", "--db", db_, "--follow"}, o);
  auto lines = [&] {
    std::ifstream in(out_path);
    std::string s((std::istreambuf_iterator<char>(in)), {});
    return std::count(s.begin(), s.end(), '\n');
  };
  ASSERT_TRUE(testing::WaitFor([&] { return lines() == 1; }));
  ASSERT_EQ(Run({"append", "--db", db_, "--type", "t", "--stream", "s", "{}"}),
            0);
  EXPECT_TRUE(testing::WaitFor([&] { return lines() == 2; }));
  follower.Signal(SIGINT);
  EXPECT_EQ(follower.Wait(), 0);
}

}  // namespace
}  // namespace herald
