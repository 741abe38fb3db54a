// Crash and multi-process tests of the SQLite store with real processes:
// a writer SIGKILLed inside a transaction, and 4 writer processes with
// rollbacks while `herald read --follow` tails the log.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "herald/json.h"
#include "herald/store.h"
#include "support/test_util.h"

namespace herald {
namespace {

using testing::Child;
using testing::HeraldBin;
using testing::TempDir;
using testing::WaitFor;

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

TEST(StoreProcess, KilledInsideTransactionLeavesNeitherRowNorEvent) {
  TempDir dir;
  std::string db = dir.file("herald.db");
  {
    auto store = OpenStore(db);
    ASSERT_TRUE(store.ok());
    auto tx = (*store)->Begin();
    ASSERT_TRUE(tx.ok());
    ASSERT_EQ(
        sqlite3_exec(static_cast<sqlite3*>((*tx)->native_handle()),
                     "CREATE TABLE orders (id INTEGER PRIMARY KEY, "
                     "status TEXT); INSERT INTO orders VALUES (1, 'placed')",
                     nullptr, nullptr, nullptr),
        SQLITE_OK);
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  std::string ready = dir.file("ready");
  Child worker({STORE_WORKER, "crash", db, ready});
  ASSERT_TRUE(WaitFor([&] { return std::ifstream(ready).good(); }))
      << "the worker never reached the middle of its transaction";
  std::string event_id = ReadLines(ready).at(0);
  worker.Signal(SIGKILL);
  EXPECT_EQ(worker.Wait(), 128 + SIGKILL);

  auto store = OpenStore(db);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_TRUE((*store)->Get(event_id).status().IsNotFound());
  EXPECT_EQ(*(*store)->Head(), 0);
  auto tx = (*store)->Begin();
  ASSERT_TRUE(tx.ok()) << "the killed writer's lock must be gone";
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(static_cast<sqlite3*>((*tx)->native_handle()),
                     "SELECT status FROM orders WHERE id = 1", -1, &s, nullptr);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)),
               "placed");
  sqlite3_finalize(s);
}

TEST(StoreProcess, FourWritersWithRollbacksAndAFollower) {
  TempDir dir;
  std::string db = dir.file("herald.db");
  ASSERT_EQ(testing::RunCommand({HeraldBin(), "migrate", "--db", db}, nullptr),
            0);
  std::string followed = dir.file("followed.jsonl");
  Child::Options fo;
  fo.stdout_path = followed;
  fo.stderr_path = dir.file("follow.err");
  Child follower({HeraldBin(), "read", "--db", db, "--follow"}, fo);

  constexpr int kWriters = 4, kTxns = 150;
  std::vector<Child> writers;
  for (int w = 0; w < kWriters; ++w) {
    Child::Options o;
    o.stderr_path = dir.file("w" + std::to_string(w) + ".err");
    writers.emplace_back(
        std::vector<std::string>{STORE_WORKER, "write", db, std::to_string(w),
                                 std::to_string(kTxns),
                                 dir.file("w" + std::to_string(w) + ".ids")},
        o);
  }
  std::set<std::string> committed, rolled_back;
  for (int w = 0; w < kWriters; ++w) {
    ASSERT_EQ(writers[w].Wait(), 0) << "writer " << w;
    for (auto& id : ReadLines(dir.file("w" + std::to_string(w) + ".ids"))) {
      if (id[0] == '-') {
        rolled_back.insert(id.substr(1));
      } else {
        committed.insert(id);
      }
    }
  }
  ASSERT_FALSE(rolled_back.empty()) << "the test must include rollbacks";
  ASSERT_TRUE(
      WaitFor([&] { return ReadLines(followed).size() >= committed.size(); },
              std::chrono::seconds(20)))
      << "follower saw " << ReadLines(followed).size() << " of "
      << committed.size();
  follower.Signal(SIGTERM);
  EXPECT_EQ(follower.Wait(), 0);

  auto lines = ReadLines(followed);
  ASSERT_EQ(lines.size(), committed.size()) << "each event exactly once";
  std::set<std::string> seen;
  std::map<std::string, int64_t> stream_version;
  int64_t expected_position = 1;
  for (auto& line : lines) {
    auto j = Json::Parse(line);
    ASSERT_TRUE(j.ok()) << line;
    std::string id = j->Find("id")->as_string();
    int64_t position = 0, version = 0;
    ASSERT_TRUE(j->Find("position")->TryInt64(&position));
    ASSERT_TRUE(j->Find("stream_version")->TryInt64(&version));
    EXPECT_EQ(position, expected_position++) << "dense, in order";
    EXPECT_TRUE(committed.count(id)) << "unknown or rolled-back event " << id;
    EXPECT_FALSE(rolled_back.count(id));
    EXPECT_TRUE(seen.insert(id).second) << "duplicate " << id;
    std::string stream = j->Find("stream")->as_string();
    EXPECT_EQ(version, ++stream_version[stream])
        << "stream order of " << stream;
  }
}

}  // namespace
}  // namespace herald
