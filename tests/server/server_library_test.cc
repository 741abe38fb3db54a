// herald::Server run in-process (the library API): pages below the
// in-memory tail come from the store, then from the page cache, with the
// same bytes; appends through the same Store wake long-polls at once.
#include <dirent.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <thread>

#include "herald/server.h"
#include "herald/store.h"
#include "server/server_test_util.h"

namespace herald::testing {
namespace {

TEST(ServerLibraryTest, PagesBelowTheTailAreReadThenCachedWithTheSameBytes) {
  TempDir dir;
  auto store = OpenStore("sqlite:" + dir.file("h.db"));
  ASSERT_TRUE(store.ok());
  std::vector<Event> events(300);
  for (size_t i = 0; i < events.size(); ++i) {
    events[i].stream = "s-" + std::to_string(i % 7);
    events[i].type = i % 2 ? "odd.x" : "even.x";
    events[i].payload = "{\"i\":" + std::to_string(i) + "}";
  }
  ASSERT_TRUE((*store)->Append(std::span<Event>(events)).ok());

  ServerOptions options;
  options.config.listen = "127.0.0.1:0";
  options.cache_events = 50;  // positions 251..300 in memory
  auto server = Server::Start(store->get(), options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_GT((*server)->port(), 0);
  std::string base = "http://" + (*server)->address();
  HttpClient c;

  for (const std::string q :
       {"offset=1&limit=100", "offset=101&limit=100", "offset=201&limit=100",
        "offset=1&limit=20&type=odd.*"}) {
    auto first = c.Get(base + "/api/events?" + q);   // store
    auto second = c.Get(base + "/api/events?" + q);  // page cache / memory
    ASSERT_EQ(first.status, 200) << q;
    EXPECT_EQ(first.body, second.body) << q;
    EXPECT_FALSE(first.Header("ETag").empty()) << q;
    EXPECT_EQ(first.Header("ETag"), second.Header("ETag")) << q;
    // The same events as the store reads itself.
    ReadRequest rr;
    auto doc = Json::Parse(first.body);
    ASSERT_TRUE(doc.ok());
    const auto& items = doc->Find("events")->items();
    ASSERT_FALSE(items.empty());
    int64_t pos;
    ASSERT_TRUE(items[0].Find("position")->TryInt64(&pos));
    auto e = (*store)->Get(items[0].Find("id")->as_string());
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->position, pos);
    EXPECT_EQ(items[0].raw(), EventToJson(*e));
  }

  // An append through the same Store wakes a long-poll at once.
  HttpResult polled;
  std::thread poller([&] {
    HttpClient pc;
    polled = pc.Get(base + "/api/events?offset=301&wait=20");
  });
  ASSERT_TRUE(WaitFor([&] {
    return MetricValue(c.Get(base + "/metrics").body,
                       "herald_long_polls_waiting") >= 1;
  }));
  Event late;
  late.stream = "late";
  late.type = "late.x";
  late.payload = "{}";
  auto appended_at = std::chrono::steady_clock::now();
  ASSERT_TRUE((*store)->Append(std::span<Event>(&late, 1)).ok());
  poller.join();
  EXPECT_LT(std::chrono::steady_clock::now() - appended_at,
            std::chrono::milliseconds(200));
  EXPECT_NE(polled.body.find(late.id), std::string::npos) << polled.body;
  (*server)->Stop();
  (*server)->Stop();  // idempotent
}

// Operators find herald's threads by name in `top -H`, `ps -L` and perf.
TEST(ServerLibraryTest, ItsThreadsAreNamedForWhatTheyDo) {
  auto names = [] {
    std::multiset<std::string> out;
    DIR* d = ::opendir("/proc/self/task");
    if (d == nullptr) return out;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/comm");
      std::string name;
      if (std::getline(f, name)) out.insert(name);
    }
    ::closedir(d);
    return out;
  };
  TempDir dir;
  auto store = OpenStore("sqlite:" + dir.file("h.db"));
  ASSERT_TRUE(store.ok());
  ServerOptions options;
  options.config.listen = "127.0.0.1:0";
  options.config.threads = 2;
  auto server = Server::Start(store->get(), options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  // Each thread names itself as it starts.
  ASSERT_TRUE(WaitFor([&] {
    auto n = names();
    return n.count("herald-append") == 1 && n.count("herald-http") == 2 &&
           n.count("herald-hub") == 1;
  })) << "threads: "
      << ::testing::PrintToString(names());
  (*server)->Stop();
  EXPECT_EQ(names().count("herald-append"), 0u);
}

}  // namespace
}  // namespace herald::testing
