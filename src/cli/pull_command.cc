// herald pull: a pull consumer of a herald server's HTTP API.
//
//   herald pull --from URL [--token T] --checkpoint FILE
//               (--exec CMD | --out FILE) [--limit N] [--wait SECONDS]
//               [--type GLOB] [--stream S]
//
// --exec runs CMD (with /bin/sh) once per event, the event's JSON on its
// stdin; a non-zero exit stops the consumer with the checkpoint left before
// the batch. --out appends JSON lines to FILE and fsyncs it before the
// checkpoint moves. The token may also come from HERALD_TOKEN.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ostream>

#include "cli/cli.h"
#include "herald/pull_consumer.h"

namespace herald::cli {

namespace {

Status RunExec(const std::string& cmd, const PulledEvent& e) {
  ::setenv("HERALD_EVENT_ID", e.event.id.c_str(), 1);
  ::setenv("HERALD_EVENT_POSITION", std::to_string(e.event.position).c_str(),
           1);
  ::setenv("HERALD_EVENT_TYPE", e.event.type.c_str(), 1);
  ::setenv("HERALD_EVENT_STREAM", e.event.stream.c_str(), 1);
  FILE* p = ::popen(cmd.c_str(), "w");
  if (!p) {
    return Status::Unavailable("cannot run '" + cmd +
                               "': " + std::strerror(errno));
  }
  std::string line = e.json + "\n";
  // A command that ignores its stdin may close it early: not an error.
  (void)std::fwrite(line.data(), 1, line.size(), p);
  int st = ::pclose(p);
  if (st == -1) {
    return Status::Internal("waiting for '" + cmd +
                            "': " + std::strerror(errno));
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return Status::OK();
  std::string why =
      WIFEXITED(st) ? "exited with status " + std::to_string(WEXITSTATUS(st))
                    : "was killed by signal " +
                          std::to_string(WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  return Status::Permanent("--exec command " + why + " on event " + e.event.id +
                           " (position " + std::to_string(e.event.position) +
                           "); the checkpoint was not moved");
}

// Appends `text` (whole lines) to `fd` and fsyncs it. After a failed
// write or fsync the file is cut back to its size before, so it holds only
// complete lines and the retry appends whole ones.
Status AppendLines(int fd, const std::string& text) {
  off_t before = ::lseek(fd, 0, SEEK_END);
  size_t done = 0;
  Status s;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      s = Status::Unavailable(std::string("cannot write --out: ") +
                              std::strerror(errno));
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (s.ok() && ::fsync(fd) != 0) {
    s = Status::Unavailable(std::string("cannot fsync --out: ") +
                            std::strerror(errno));
  }
  if (!s.ok() && done > 0 && before >= 0 && ::ftruncate(fd, before) != 0) {
    return Status::Unavailable(s.message() + "; cutting --out back to " +
                               std::to_string(before) +
                               " bytes failed too: " + std::strerror(errno));
  }
  return s;
}

}  // namespace

int RunPull(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err) {
  Flags flags;
  Status s = flags.ParseOptions(args, {{"from", true},
                                       {"token", true},
                                       {"checkpoint", true},
                                       {"exec", true},
                                       {"out", true},
                                       {"limit", true},
                                       {"wait", true},
                                       {"type", true},
                                       {"stream", true}});
  if (!s.ok()) return Fail(err, s);
  auto from = flags.Require("from");
  if (!from.ok()) return Fail(err, from.status());
  auto checkpoint = flags.Require("checkpoint");
  if (!checkpoint.ok()) return Fail(err, checkpoint.status());
  if (flags.Has("exec") == flags.Has("out")) {
    return Fail(err, Status::InvalidArgument(
                         "give exactly one of --exec CMD and --out FILE"));
  }
  auto limit = flags.GetInt("limit", 1000, 1, 10000);
  if (!limit.ok()) return Fail(err, limit.status());
  auto wait = flags.GetInt("wait", 30, 0, 3600);
  if (!wait.ok()) return Fail(err, wait.status());

  PullConsumerOptions o;
  o.url = *from;
  o.token = flags.Get("token");
  if (o.token.empty()) {
    if (const char* t = std::getenv("HERALD_TOKEN")) o.token = t;
  }
  o.checkpoint_path = *checkpoint;
  o.limit = static_cast<int>(*limit);
  o.wait = std::chrono::seconds(*wait);
  if (flags.Has("type")) o.types.push_back(flags.Get("type"));
  o.stream = flags.Get("stream");
  o.stop_requested = [] { return StopRequested(); };
  o.on_retry = [&err](const std::string& what) {
    err << "herald: " << what << "\n";
    err.flush();
  };

  int out_fd = -1;
  if (flags.Has("out")) {
    std::string path = flags.Get("out");
    out_fd =
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out_fd < 0) {
      return Fail(err, Status::Unavailable("cannot open --out " + path + ": " +
                                           std::strerror(errno)));
    }
  }
  std::string cmd = flags.Get("exec");

  InstallStopSignals();
  PullConsumer consumer(o);
  s = consumer.Run([&](const std::vector<PulledEvent>& batch) -> Status {
    if (out_fd >= 0) {
      std::string text;
      for (const auto& e : batch) {
        text += e.json;
        text += '\n';
      }
      return AppendLines(out_fd, text);
    }
    for (const auto& e : batch) HERALD_RETURN_IF_ERROR(RunExec(cmd, e));
    return Status::OK();
  });
  if (out_fd >= 0) ::close(out_fd);
  out.flush();
  if (!s.ok()) return Fail(err, s);
  return kExitOk;
}

}  // namespace herald::cli
