// What the benchmark programs share: the 200-byte bench event, medians and
// percentiles, CPU accounting, waiting for a route's checkpoint.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "herald/event.h"
#include "herald/relay.h"
#include "herald/sender.h"
#include "herald/status.h"
#include "herald/store.h"
#include "herald/time.h"

namespace herald::bench {

using Clock = std::chrono::steady_clock;

// Exits the program with `what` and the status when it is not OK.
inline void Check(const Status& s, std::string_view what) {
  if (s.ok()) return;
  std::fprintf(stderr, "%s: %.*s: %s\n", program_invocation_short_name,
               static_cast<int>(what.size()), what.data(),
               s.ToString().c_str());
  std::exit(1);
}

// Event i of a backlog spread over `streams` streams, with a 200-byte JSON
// payload, as in BASELINE.md's broker figures.
inline Event MakeBenchEvent(int i, int streams) {
  Event e;
  e.stream = "order-" + std::to_string(i % streams);
  e.type = "order.placed";
  e.payload = "{\"i\":" + std::to_string(100000000 + i) + ",\"p\":\"" +
              std::string(178, 'x') + "\"}";
  return e;
}

inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

inline double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Of latencies in milliseconds.
struct Percentiles {
  double p50 = 0, p99 = 0, max = 0;
  size_t over_5ms = 0;
};
inline Percentiles PercentilesOf(std::vector<double> ms) {
  Percentiles p;
  if (ms.empty()) return p;
  std::sort(ms.begin(), ms.end());
  p.p50 = ms[ms.size() / 2];
  p.p99 = ms[std::min(ms.size() - 1, ms.size() * 99 / 100)];
  p.max = ms.back();
  for (double m : ms) p.over_5ms += m > 5;
  return p;
}

// CPU seconds (user + system) this process has used so far, all threads:
// a phase's delta over its messages is the client's cost per message.
inline double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// The route's saved checkpoint (the next position it will send), 0 if none.
inline int64_t Checkpoint(Store* store, const std::string& route) {
  auto cp = store->GetCheckpoint(Relay::CheckpointName(route));
  return cp.ok() ? *cp : 0;
}

// Waits until the route's checkpoint passes `head`.
inline void WaitCheckpoint(Store* store, const std::string& route,
                           int64_t head) {
  while (Checkpoint(store, route) <= head) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Appends events 0..n-1 (MakeBenchEvent) in transactions of 1000.
inline void FillBacklog(Store* store, int n, int streams) {
  for (int i = 0; i < n; i += 1000) {
    std::vector<Event> batch;
    for (int k = i; k < std::min(n, i + 1000); ++k) {
      batch.push_back(MakeBenchEvent(k, streams));
    }
    Check(store->Append(std::span<Event>(batch)).status(), "append");
  }
}

// Wraps a route's sender: records, per event id, when the relay first
// handed it to Send and when Send returned it OK (its acknowledgement), in
// microseconds of NowMicros().
class AckClock final : public Sender {
 public:
  explicit AckClock(std::unique_ptr<Sender> inner) : inner_(std::move(inner)) {}
  void Send(std::span<const Event> events, std::span<SendResult> results,
            Clock::time_point deadline) override {
    int64_t start = NowMicros();
    inner_->Send(events, results, deadline);
    int64_t now = NowMicros();
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < events.size(); ++i) {
      started_.emplace(events[i].id, start);
      if (results[i].status.ok()) acked_.emplace(events[i].id, now);
    }
  }
  std::string_view kind() const override { return inner_->kind(); }
  std::unordered_map<std::string, int64_t> started() {
    std::lock_guard<std::mutex> lock(mu_);
    return started_;
  }
  std::unordered_map<std::string, int64_t> acked() {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_;
  }

 private:
  std::unique_ptr<Sender> inner_;
  std::mutex mu_;
  std::unordered_map<std::string, int64_t> acked_;
  std::unordered_map<std::string, int64_t> started_;
};

// Milliseconds from each append's commit to the relay's Send beginning
// and to Send returning it acknowledged.
struct CommitToAck {
  std::vector<double> to_send_ms, to_ack_ms;
};

// Appends n events at `rate`/s, one per transaction, to a new SQLite
// store at `db` while `route` (its sender made from the config) relays
// them in this process; the first `skip` events are left out of the
// figures (a connection being set up).
inline CommitToAck MeasureCommitToAck(const std::string& db,
                                      const RouteConfig& route, int n, int rate,
                                      int streams, int skip = 0) {
  auto opened = OpenStore("sqlite:" + db);
  Check(opened.status(), "open store");
  std::unique_ptr<Store> store = std::move(*opened);
  auto inner = MakeSender(route);
  Check(inner.status(), "sender");
  auto clock = std::make_unique<AckClock>(std::move(*inner));
  AckClock* acks = clock.get();
  Relay relay(store.get());
  Check(relay.AddRoute(route, std::move(clock)), "route");
  Check(relay.Start(), "start");
  std::vector<std::pair<std::string, int64_t>> commits;
  auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    std::this_thread::sleep_until(
        start + std::chrono::microseconds(int64_t{1000000} * i / rate));
    Event e = MakeBenchEvent(i, streams);
    Check(store->Append(std::span<Event>(&e, 1)).status(), "append");
    commits.emplace_back(e.id, NowMicros());
  }
  WaitCheckpoint(store.get(), route.name, n);
  relay.Stop();
  auto acked = acks->acked();
  auto started = acks->started();
  CommitToAck out;
  for (size_t i = static_cast<size_t>(skip); i < commits.size(); ++i) {
    const auto& [id, at] = commits[i];
    if (auto it = started.find(id); it != started.end()) {
      out.to_send_ms.push_back(static_cast<double>(it->second - at) / 1000.0);
    }
    if (auto it = acked.find(id); it != acked.end()) {
      out.to_ack_ms.push_back(static_cast<double>(it->second - at) / 1000.0);
    }
  }
  return out;
}

}  // namespace herald::bench
