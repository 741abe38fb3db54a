// A Google Benchmark reporter that also prints, after the usual table, each
// herald figure beside the baseline measured in the same run, as a ratio.
// Pairs are named by the benchmark names "<group>/herald..." and
// "<group>/raw..." sharing everything but that word.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace herald::bench {

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& r : runs) {
      // Medians when repeating, else the single run.
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name != "median") {
        continue;
      }
      auto it = r.counters.find("items_per_second");
      if (it == r.counters.end()) continue;
      std::string name = r.run_name.function_name;
      rates_[name] = it->second.value;
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\n%-58s %14s %14s %7s\n", "figure (events/s)", "herald",
                "baseline", "ratio");
    for (const auto& [name, rate] : rates_) {
      auto pos = name.find("/herald");
      if (pos == std::string::npos) continue;
      std::string raw = name;
      raw.replace(pos, 7, "/raw");
      auto b = rates_.find(raw);
      if (b == rates_.end()) continue;
      std::printf("%-58s %14.0f %14.0f %7.2f\n", name.c_str(), rate, b->second,
                  rate / b->second);
    }
  }

 private:
  std::map<std::string, double> rates_;
};

}  // namespace herald::bench

// main() for a benchmark binary that prints ratios.
#define HERALD_BENCHMARK_MAIN()                   \
  int main(int argc, char** argv) {               \
    benchmark::Initialize(&argc, argv);           \
    herald::bench::RatioReporter reporter;        \
    benchmark::RunSpecifiedBenchmarks(&reporter); \
    benchmark::Shutdown();                        \
    return 0;                                     \
  }
