// The fault run of issue #13: the built `herald relay` delivers a few
// thousand events over 20 streams to a receiver that answers a random share
// of requests with 500, 429 (Retry-After), no answer past the route's
// timeout, or a response cut before the status line, inside it, inside the
// headers or inside the body, while the relay is SIGKILLed at random
// moments. At the end every event got a complete 2xx at least once, first
// complete deliveries came in append order per stream, and no
// `herald relay status` polled during the run showed a checkpoint past an
// event the receiver had not fully acknowledged.
//
// Seeded: HERALD_FAULT_SEED=N repeats a run's choices (the seed is printed
// with every failure); timing still varies from run to run.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "herald/json.h"
#include "herald/store.h"
#include "support/test_util.h"

namespace herald {
namespace {

using std::chrono::milliseconds;
using testing::Child;
using testing::HeraldBin;
using testing::RunCommand;
using testing::WaitFor;

struct Line {
  int64_t position = 0;
  std::string stream;
  std::string id;
  std::string status;  // "200", "500", "429", "hang", "cut-in-body", ...
};

std::vector<Line> ReadLog(const std::string& path) {
  std::vector<Line> out;
  std::ifstream f(path);
  std::string text;
  while (std::getline(f, text)) {
    std::istringstream ss(text);
    Line l;
    int64_t recv_us;
    if (ss >> l.position >> l.stream >> l.id >> recv_us >> l.status) {
      out.push_back(l);
    }
  }
  return out;
}

uint32_t Seed() {
  if (const char* s = std::getenv("HERALD_FAULT_SEED")) {
    return static_cast<uint32_t>(std::strtoul(s, nullptr, 10));
  }
  return std::random_device{}();
}

class FaultRun : public ::testing::TestWithParam<std::string> {};

TEST_P(FaultRun, RandomFaultsAndSigkillsNeverAcknowledgeEarly) {
  HERALD_SKIP_UNLESS_BACKEND(GetParam());
  const uint32_t seed = Seed();
  SCOPED_TRACE("HERALD_FAULT_SEED=" + std::to_string(seed));
  std::printf("fault run seed %u (repeat with HERALD_FAULT_SEED=%u)\n", seed,
              seed);
  std::mt19937 rng(seed);
  constexpr int kEvents = 2000;
  constexpr int kStreams = 20;
  constexpr int kKills = 5;
  constexpr int kFaultPercent = 6;

  testing::TempDir dir;
  std::string url = testing::FreshStoreUrl(GetParam(), dir);
  auto opened = OpenStore(url);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Store> store = std::move(*opened);

  // The receiver, faulting at random.
  int port = testing::FreePort();
  std::string log_path = dir.file("received.log");
  std::string ready = dir.file("ready");
  Child receiver({HERALD_TEST_RECEIVER, "--port", std::to_string(port), "--log",
                  log_path, "--ready", ready, "--random-faults",
                  std::to_string(rng()) + ":" + std::to_string(kFaultPercent)});
  ASSERT_TRUE(WaitFor([&] { return std::ifstream(ready).good(); }));

  // A stable owner: a restarted relay takes its lease back at once. The
  // route's timeout is short so hung requests fail fast.
  std::string config = dir.file("c.toml");
  std::ofstream(config) << "[store]\nurl = \"" << url
                        << "\"\n[relay]\nidle_poll = \"50ms\"\n"
                        << "owner = \"fault-run\"\n\n[[route]]\nname = \"r\"\n"
                        << "sender = \"http://127.0.0.1:" << port
                        << "/events\"\nbatch = 20\nmax_in_flight = 8\n"
                        << "timeout = \"300ms\"\n"
                        << "backoff_initial = \"5ms\"\n"
                        << "backoff_max = \"100ms\"\n";

  // Load: events appended over the whole run, 10 a transaction.
  std::vector<Event> events;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    int next = 0;
    while (!stop && next < kEvents) {
      std::vector<Event> batch;
      for (int i = 0; i < 10; ++i, ++next) {
        batch.push_back(testing::MakeEvent(
            "s-" + std::to_string(next % kStreams), "order.placed",
            "{\"i\":" + std::to_string(next) + "}"));
      }
      auto r = store->Append(std::span<Event>(batch));
      if (!r.ok()) {
        ADD_FAILURE() << "append: " << r.status().ToString();
        return;
      }
      events.insert(events.end(), batch.begin(), batch.end());
      std::this_thread::sleep_for(milliseconds(3));
    }
  });

  // The poller: each checkpoint `relay status` shows must lie at or below
  // the first position with no complete 2xx in the receiver's log, read
  // after the status (the receiver logs before it answers, so any
  // acknowledgement the relay saw is in the log by then).
  std::mutex mu;
  std::vector<std::string> violations;
  int polls = 0, poll_errors = 0;
  int64_t max_checkpoint = 0;
  std::thread poller([&] {
    while (!stop) {
      std::string out, err;
      int rc = RunCommand(
          {HeraldBin(), "relay", "status", "--config", config, "--route", "r"},
          &out, &err);
      std::set<int64_t> acked;
      for (const auto& l : ReadLog(log_path)) {
        if (l.status == "200") acked.insert(l.position);
      }
      std::lock_guard<std::mutex> lock(mu);
      if (rc != 0) {
        ++poll_errors;
        if (poll_errors <= 3) violations.push_back("relay status: " + err);
        continue;
      }
      std::istringstream ss(out);
      std::string text;
      while (std::getline(ss, text)) {
        auto j = Json::Parse(text);
        if (!j.ok()) continue;
        const Json* cp = j->Find("checkpoint");
        int64_t checkpoint = 0;
        if (!cp || !cp->TryInt64(&checkpoint)) continue;
        ++polls;
        max_checkpoint = std::max(max_checkpoint, checkpoint);
        for (int64_t p = 1; p < checkpoint; ++p) {
          if (!acked.count(p)) {
            violations.push_back("checkpoint " + std::to_string(checkpoint) +
                                 " passed position " + std::to_string(p) +
                                 ", never answered with a complete 2xx");
            break;
          }
        }
      }
    }
  });
  auto finish = [&] {
    stop = true;
    if (writer.joinable()) writer.join();
    if (poller.joinable()) poller.join();
  };

  Child::Options o;
  o.stderr_path = dir.file("relay.err");
  for (int k = 0; k < kKills; ++k) {
    Child relay({HeraldBin(), "relay", "--config", config}, o);
    std::this_thread::sleep_for(
        milliseconds(std::uniform_int_distribution<int>(300, 1500)(rng)));
    relay.Signal(SIGKILL);
    relay.Wait();
  }
  // The writer finishes its events; the last relay delivers the rest.
  if (writer.joinable()) writer.join();
  Child relay({HeraldBin(), "relay", "--config", config}, o);
  bool all = WaitFor(
      [&] {
        std::set<std::string> ok;
        for (const auto& l : ReadLog(log_path)) {
          if (l.status == "200") ok.insert(l.id);
        }
        return ok.size() >= events.size();
      },
      std::chrono::seconds(45));
  // Polled until a status shows the checkpoint past the last event.
  EXPECT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(mu);
    return max_checkpoint == static_cast<int64_t>(kEvents) + 1;
  }));
  finish();
  relay.Signal(SIGTERM);
  EXPECT_EQ(relay.Wait(), 0);
  EXPECT_TRUE(all) << "not every event got a complete 2xx in time";
  ASSERT_EQ(events.size(), static_cast<size_t>(kEvents));

  auto log = ReadLog(log_path);
  // Every event at least once with a complete 2xx; per stream, first
  // complete deliveries in append order.
  std::map<std::string, int64_t> last_first;  // stream -> position
  std::set<std::string> seen;
  std::map<std::string, int> modes;
  for (const auto& l : log) {
    ++modes[l.status];
    if (l.status != "200" || !seen.insert(l.id).second) continue;
    int64_t& last = last_first[l.stream];
    EXPECT_LT(last, l.position)
        << "stream " << l.stream << ": first complete delivery of position "
        << l.position << " after position " << last;
    last = l.position;
  }
  for (const auto& e : events) {
    EXPECT_TRUE(seen.count(e.id)) << "event " << e.id << " of " << e.stream
                                  << " never got a complete 2xx";
  }
  // The faults happened, each kind.
  for (const char* m : {"500", "429", "hang", "cut-before-status",
                        "cut-in-status", "cut-in-headers", "cut-after-headers",
                        "cut-in-body", "cut-in-chunked"}) {
    EXPECT_GT(modes[m], 0) << "no " << m << " answer in the run";
  }
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_GE(polls, 10) << "relay status polled too seldom";
  for (const auto& v : violations) ADD_FAILURE() << v;
  std::string summary;
  for (const auto& [m, n] : modes) summary += m + "=" + std::to_string(n) + " ";
  std::printf("events %zu, requests %zu (%s), status polls %d\n", events.size(),
              log.size(), summary.c_str(), polls);
}

INSTANTIATE_TEST_SUITE_P(Backends, FaultRun,
                         ::testing::ValuesIn(testing::TestBackends()));

}  // namespace
}  // namespace herald
