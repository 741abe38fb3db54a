// A pull consumer against an installed herald (tests/install): pulls
// events from a herald server until it has seen COUNT of them, printing
// "POSITION STREAM TYPE PAYLOAD" per event, then "next_offset N".
// Usage: pull_example URL CHECKPOINT_FILE COUNT
#include <herald/pull_consumer.h>

#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: pull_example URL CHECKPOINT_FILE COUNT\n");
    return 2;
  }
  herald::PullConsumerOptions options;
  options.url = argv[1];
  options.checkpoint_path = argv[2];
  options.wait = std::chrono::milliseconds(1000);
  const int want = std::atoi(argv[3]);
  herald::PullConsumer consumer(options);
  int seen = 0;
  herald::Status s =
      consumer.Run([&](const std::vector<herald::PulledEvent>& batch) {
        for (const auto& p : batch) {
          std::printf("%lld %s %s %s\n",
                      static_cast<long long>(p.event.position),
                      p.event.stream.c_str(), p.event.type.c_str(),
                      p.event.payload.c_str());
          ++seen;
        }
        if (seen >= want) consumer.Stop();
        return herald::Status::OK();
      });
  if (!s.ok()) {
    std::fprintf(stderr, "pull_example: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("next_offset %lld\n", static_cast<long long>(consumer.offset()));
  return 0;
}
