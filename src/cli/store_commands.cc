// herald append | read | migrate: the store commands.
#include <chrono>
#include <iostream>
#include <iterator>
#include <sstream>
#include <thread>

#include "cli/cli.h"
#include "herald/json.h"
#include "herald/store.h"

namespace herald::cli {

namespace {

Result<std::unique_ptr<Store>> OpenFromFlags(const Flags& flags,
                                             bool adopt = false) {
  auto db = flags.Require("db");
  if (!db.ok()) return db.status();
  StoreOptions options;
  options.adopt = adopt;
  // One-shot commands never run the PostgreSQL sequencer.
  options.run_sequencer = false;
  return OpenStore(*db, options);
}

// For commands that only read: never creates, migrates or takes a write
// lock (see OpenForReading in cli.h).
Result<std::unique_ptr<Store>> OpenReadOnlyFromFlags(const Flags& flags) {
  auto db = flags.Require("db");
  if (!db.ok()) return db.status();
  return OpenForReading(*db, StoreOptions{});
}

}  // namespace

Result<std::unique_ptr<Store>> OpenForReading(const std::string& url,
                                              StoreOptions options) {
  options.read_only = true;
  options.run_sequencer = false;
  auto store = OpenStore(url, options);
  if (store.ok()) return store;
  if (store.status().IsNotFound()) {
    return Status::InvalidArgument(store.status().message());
  }
  if (store.status().code() == Status::Code::kFailedPrecondition) {
    // An older schema, none yet (an empty file or database), or a newer one
    // (refused again below): open as before, migrating.
    options.read_only = false;
    return OpenStore(url, options);
  }
  return store;
}

int RunAppend(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err) {
  Flags flags;
  Status s = flags.Parse(args, {{"db", true},
                                {"type", true},
                                {"stream", true},
                                {"id", true},
                                {"metadata", true},
                                {"content-type", true},
                                {"expected-version", true}});
  if (!s.ok()) return Fail(err, s);
  if (flags.positional().size() > 1) {
    return Fail(err, Status::InvalidArgument(
                         "append takes at most one PAYLOAD argument"));
  }
  Event e;
  auto type = flags.Require("type");
  if (!type.ok()) return Fail(err, type.status());
  auto stream = flags.Require("stream");
  if (!stream.ok()) return Fail(err, stream.status());
  e.type = *type;
  e.stream = *stream;
  e.id = flags.Get("id");
  if (flags.Has("id") && !IsUuid(e.id)) {
    return Fail(err,
                Status::InvalidArgument("--id '" + e.id + "' is not a UUID"));
  }
  if (flags.Has("metadata")) e.metadata = flags.Get("metadata");
  if (flags.Has("content-type")) e.content_type = flags.Get("content-type");
  auto expected = flags.GetInt("expected-version", -1, 0, INT64_MAX);
  if (!expected.ok()) return Fail(err, expected.status());
  AppendOptions options;
  if (*expected >= 0) options.expected_version = *expected;

  if (!flags.positional().empty()) {
    e.payload = flags.positional()[0];
  } else {
    e.payload.assign(std::istreambuf_iterator<char>(std::cin),
                     std::istreambuf_iterator<char>());
  }
  // Validate before touching the database, so bad input changes nothing.
  s = ValidateEvent(e);
  if (!s.ok()) return Fail(err, s);

  auto store = OpenFromFlags(flags);
  if (!store.ok()) return Fail(err, store.status());
  auto r = (*store)->Append(std::span<Event>(&e, 1), options);
  if (!r.ok()) return Fail(err, r.status());
  // Print the event as stored: its lower-case id and its position, which
  // PostgreSQL gives at or shortly after the commit.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (true) {
    uint64_t epoch = (*store)->append_epoch();
    auto stored = (*store)->Get(e.id);
    if (stored.ok() && stored->position > 0) {
      e = std::move(*stored);
      break;
    }
    if (!stored.ok() && !stored.status().IsNotFound()) break;
    if (std::chrono::steady_clock::now() >= deadline) break;
    (*store)->WaitForAppend(epoch, std::chrono::milliseconds(20));
  }
  out << EventToJson(e) << "\n";
  out.flush();
  return kExitOk;
}

int RunRead(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err) {
  Flags flags;
  Status s = flags.ParseOptions(args, {{"db", true},
                                       {"offset", true},
                                       {"limit", true},
                                       {"stream", true},
                                       {"type", true},
                                       {"follow", false}});
  if (!s.ok()) return Fail(err, s);
  auto offset = flags.GetInt("offset", 0, 0, INT64_MAX);
  if (!offset.ok()) return Fail(err, offset.status());
  auto limit = flags.GetInt("limit", -1, 1, kMaxReadLimit);
  if (!limit.ok()) return Fail(err, limit.status());
  bool follow = flags.Has("follow");

  auto store = OpenReadOnlyFromFlags(flags);
  if (!store.ok()) return Fail(err, store.status());
  if (follow) InstallStopSignals();

  ReadRequest req;
  req.offset = *offset;
  req.stream = flags.Get("stream");
  if (flags.Has("type")) req.types.push_back(flags.Get("type"));
  int64_t remaining = *limit;  // -1: no limit
  std::string line;
  // Adaptive polling while following: fast after activity, 200 ms when idle.
  auto idle_wait = std::chrono::milliseconds(1);
  while (!StopRequested()) {
    req.limit = remaining < 0
                    ? 1000
                    : static_cast<int>(std::min<int64_t>(remaining, 1000));
    auto page = (*store)->Read(req);
    if (!page.ok()) {
      if (follow && page.status().IsUnavailable()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      return Fail(err, page.status());
    }
    for (const auto& e : page->events) {
      line.clear();
      AppendEventJson(e, &line);
      line.push_back('\n');
      out << line;
    }
    out.flush();
    if (!out) return kExitFailure;  // stdout closed
    if (remaining > 0) {
      remaining -= static_cast<int64_t>(page->events.size());
      if (remaining == 0) break;
    }
    bool advanced = page->next_offset != req.offset;
    req.offset = page->next_offset;
    if (!page->events.empty() &&
        static_cast<int>(page->events.size()) == req.limit) {
      continue;  // more to read now
    }
    if (!follow) break;
    if (advanced) {
      idle_wait = std::chrono::milliseconds(1);
    } else {
      idle_wait = std::min(idle_wait * 2, std::chrono::milliseconds(200));
    }
    (*store)->WaitForAppend((*store)->append_epoch(), idle_wait);
  }
  return kExitOk;
}

int RunMigrate(const std::vector<std::string>& args, std::ostream& out,
               std::ostream& err) {
  Flags flags;
  Status s = flags.ParseOptions(args, {{"db", true}, {"adopt", false}});
  if (!s.ok()) return Fail(err, s);
  auto store = OpenFromFlags(flags, flags.Has("adopt"));
  if (!store.ok()) return Fail(err, store.status());
  out << "{\"migrated\":true,\"backend\":" << JsonString((*store)->backend())
      << "}\n";
  return kExitOk;
}

}  // namespace herald::cli
