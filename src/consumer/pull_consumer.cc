// PullConsumer on libcurl (see include/herald/pull_consumer.h).
#include "herald/pull_consumer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <random>
#include <thread>

#include "consumer/page_client.h"

namespace herald {

namespace {

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Result<int64_t> ReadCheckpointFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return int64_t{0};
    return Status::Unavailable("cannot read checkpoint " + path + ": " +
                               std::strerror(errno));
  }
  FdCloser closer{fd};
  char buf[64];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  if (n < 0) {
    return Status::Unavailable("cannot read checkpoint " + path + ": " +
                               std::strerror(errno));
  }
  std::string text(buf, static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.pop_back();
  }
  if (text.empty() || text.size() > 18 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return Status::Corruption("checkpoint file " + path +
                              " does not hold an offset");
  }
  return static_cast<int64_t>(std::stoll(text));
}

Status WriteCheckpointFile(const std::string& path, int64_t offset) {
  std::string tmp = path + ".tmp";
  std::string text = std::to_string(offset) + "\n";
  {
    int fd =
        ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      return Status::Unavailable("cannot write checkpoint " + tmp + ": " +
                                 std::strerror(errno));
    }
    FdCloser closer{fd};
    if (::write(fd, text.data(), text.size()) !=
            static_cast<ssize_t>(text.size()) ||
        ::fsync(fd) != 0) {
      return Status::Unavailable("cannot write checkpoint " + tmp + ": " +
                                 std::strerror(errno));
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::Unavailable("cannot rename checkpoint to " + path + ": " +
                               std::strerror(errno));
  }
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  if (dir.empty()) dir = "/";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    FdCloser closer{dfd};
    ::fsync(dfd);
  }
  return Status::OK();
}

PullConsumer::PullConsumer(PullConsumerOptions options)
    : options_(std::move(options)) {}

PullConsumer::~PullConsumer() = default;

bool PullConsumer::Stopping() const {
  return stop_.load() || (options_.stop_requested && options_.stop_requested());
}

Status PullConsumer::Run(const PullBatchHandler& handler) {
  if (options_.checkpoint_path.empty()) {
    return Status::InvalidArgument("a checkpoint file is required");
  }
  if (options_.limit < 1 || options_.limit > 10000) {
    return Status::InvalidArgument("limit must be between 1 and 10000");
  }
  detail::PageClientOptions po;
  po.url = options_.url;
  po.token = options_.token;
  po.types = options_.types;
  po.stream = options_.stream;
  po.stop = [this] { return Stopping(); };
  auto client = detail::PageClient::Make(std::move(po));
  if (!client.ok()) return client.status();
  auto saved = ReadCheckpointFile(options_.checkpoint_path);
  if (!saved.ok()) return saved.status();
  // Offsets 0 and 1 both mean "from the start"; the first request asks for
  // 1, so no request ever carries 0 and a server that answers
  // offset + count (0 + limit) cannot make the consumer read `limit` twice.
  offset_.store(std::max<int64_t>(*saved, 1));

  std::mt19937_64 rng(std::random_device{}());
  auto backoff = options_.backoff_initial;
  std::vector<EventJsonItem> items;
  while (!Stopping()) {
    int64_t next_offset = 0;
    Status s = (*client)->Fetch(offset_.load(), options_.limit, options_.wait,
                                &items, &next_offset);
    if (Stopping()) break;
    if (s.IsUnavailable()) {
      if (options_.on_retry) {
        options_.on_retry(s.message() + "; retrying in " +
                          std::to_string(backoff.count()) + " ms");
      }
      auto jittered = std::chrono::milliseconds(
          backoff.count() / 2 +
          static_cast<int64_t>(rng() %
                               static_cast<uint64_t>(backoff.count() / 2 + 1)));
      auto until = std::chrono::steady_clock::now() + jittered;
      while (!Stopping() && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      backoff = std::min(backoff * 2, options_.backoff_max);
      continue;
    }
    if (!s.ok()) return s;
    backoff = options_.backoff_initial;

    std::vector<PulledEvent> batch(items.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i].event = std::move(items[i].event);
      batch[i].json = std::string(items[i].json);
    }
    if (!batch.empty()) HERALD_RETURN_IF_ERROR(handler(batch));
    // Forward only: a next_offset at or below the current offset is never
    // taken, so the consumer never goes back (to 0 least of all).
    if (next_offset > offset_.load()) {
      HERALD_RETURN_IF_ERROR(
          WriteCheckpointFile(options_.checkpoint_path, next_offset));
      offset_.store(next_offset);
    }
  }
  return Status::OK();
}

}  // namespace herald
