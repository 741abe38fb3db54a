// JSON-lines senders. A batch is written with one write() (looping on short
// writes) and, for files, made durable with fdatasync before any event of
// it is acknowledged. A failed write fails the whole batch (retryable) and
// leaves no torn line: the file is truncated back to its size before the
// write, so it holds only complete lines and the retry appends whole ones.
// (stdout is truncated likewise when it is a regular file; a pipe cannot
// be.) Nothing is written once
// the deadline has passed.
//
// Thread safety: one relay thread calls Send at a time.
#include "transport/file/file_sender.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace herald::detail {
namespace {

struct Fd {
  int fd = -1;
  bool owned = false;
  ~Fd() {
    if (owned && fd >= 0) ::close(fd);
  }
};

class LinesSender final : public Sender {
 public:
  LinesSender(int fd, bool owned, std::string name, const SenderOptions& o,
              bool sync)
      : name_(std::move(name)), source_(o.source), sync_(sync) {
    fd_.fd = fd;
    fd_.owned = owned;
  }

  void Send(std::span<const Event> events, std::span<SendResult> results,
            std::chrono::steady_clock::time_point deadline) override {
    if (std::chrono::steady_clock::now() >= deadline) {
      for (auto& r : results) r = SendResult::NotSent();
      return;
    }
    buf_.clear();
    for (const auto& e : events) {
      AppendCloudEventJson(e, source_, &buf_);
      buf_.push_back('\n');
    }
    Status s = WriteAll();
    for (auto& r : results) {
      r.status = s;
      r.attempted = true;
    }
  }

  std::string_view kind() const override { return sync_ ? "file" : "stdout"; }

 private:
  // Writes buf_ in full, then (for files) fdatasync. On any failure the
  // bytes of this batch are cut off again, so the file ends in a complete
  // line.
  Status WriteAll() {
    // Where the batch starts: the end of the file when it is opened for
    // appending (always for file:), else the fd's offset; -1 for a pipe or
    // terminal, which cannot be cut back.
    int flags = ::fcntl(fd_.fd, F_GETFL);
    off_t before = ::lseek(
        fd_.fd, 0, flags >= 0 && (flags & O_APPEND) ? SEEK_END : SEEK_CUR);
    size_t off = 0;
    Status s;
    while (off < buf_.size()) {
      ssize_t n = ::write(fd_.fd, buf_.data() + off, buf_.size() - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        s = Status::Unavailable("write " + name_ + ": " + std::strerror(errno));
        break;
      }
      off += static_cast<size_t>(n);
    }
    if (s.ok() && sync_ && ::fdatasync(fd_.fd) != 0) {
      s = Status::Unavailable("fsync " + name_ + ": " + std::strerror(errno));
    }
    if (!s.ok() && off > 0 && before >= 0 &&
        (::ftruncate(fd_.fd, before) != 0 ||
         ::lseek(fd_.fd, before, SEEK_SET) < 0)) {
      return Status::Unavailable(s.message() + "; cutting the file back to " +
                                 std::to_string(before) +
                                 " bytes failed too: " + std::strerror(errno));
    }
    return s;
  }

  Fd fd_;
  std::string name_;
  std::string source_;
  bool sync_;
  std::string buf_;
};

}  // namespace

Result<std::unique_ptr<Sender>> MakeFileSender(const std::string& path,
                                               const SenderOptions& options) {
  int fd =
      ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Status::Unavailable("cannot open '" + path +
                               "' for appending: " + std::strerror(errno));
  }
  return std::unique_ptr<Sender>(
      new LinesSender(fd, true, path, options, options.fsync));
}

std::unique_ptr<Sender> MakeStdoutSender(const SenderOptions& options) {
  return std::make_unique<LinesSender>(1, false, "stdout", options, false);
}

}  // namespace herald::detail
