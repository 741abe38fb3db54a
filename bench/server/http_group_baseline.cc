// The ceiling of group commit over HTTP on this machine, for
// bench/server/run.sh: the plainest server that does what herald's POST
// /api/events does for single events, on the same HTTP library (Boost.Beast
// on asio, one I/O thread per core), so it pays the same loopback TCP, wrk
// and scheduling on the same cores, and nothing of herald: no validation,
// no store, no tail cache. Its I/O threads read each request, queue its
// body; one writer thread takes everything queued, inserts it with plain
// prepared INSERTs into herald_events of a page copy of a herald database
// in one transaction (WAL, synchronous=FULL, like sqlite-group), commits,
// and only then are the answers written (201, the row's id, position and
// stream version before the request's own JSON, about herald's answer).
//
//   http_group_baseline SRC COPY
//       Copies the SQLite database SRC page by page to COPY, listens on
//       127.0.0.1 (a free port, printed on the first line of stdout) until
//       SIGTERM or SIGINT, then prints "ROWS COMMITS" and removes COPY;
//       its writer thread (named plain-writer) prints where its time went
//       per commit to stderr (PhaseClock).
//
// A measurement, not herald: a body is only searched for its stream and
// type, and a failed statement ends the program.
#include <signal.h>
#include <sqlite3.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "herald/time.h"
#include "herald/uuid.h"
#include "sqlite_copy.h"
#include "util/thread_name.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

class Session;

struct Job {
  std::shared_ptr<Session> session;
  std::string body;
};

// One writer: takes every queued request, inserts them in one transaction.
class Writer {
 public:
  explicit Writer(sqlite3* db) : db_(db) {}
  bool Prepare();
  void Submit(Job job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(job));
    }
    cv_.notify_one();
  }
  void Run();
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
  }
  // After Run returned: drops the requests queued after the last group
  // (their sessions refer to the I/O contexts, which go first) and the
  // statement.
  void Finish() {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.clear();
    sqlite3_finalize(ins_);
    ins_ = nullptr;
  }
  long rows() const { return rows_; }
  long commits() const { return commits_; }

 private:
  bool Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) == SQLITE_OK)
      return true;
    std::fprintf(stderr, "%s: %s\n", sql, err ? err : "?");
    sqlite3_free(err);
    return false;
  }

  sqlite3* db_;
  sqlite3_stmt* ins_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stop_ = false;
  std::unordered_map<std::string, int64_t> versions_;
  long rows_ = 0, commits_ = 0;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Writer* writer)
      : socket_(std::move(socket)), writer_(writer) {}
  void Read() {
    req_ = {};
    http::async_read(
        socket_, buffer_, req_,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec) return;
          self->writer_->Submit({self, std::move(self->req_.body())});
        });
  }
  // On the writer thread, after the commit: the answer goes out on the
  // socket's I/O thread.
  void Answer(std::string body) {
    asio::post(socket_.get_executor(),
               [self = shared_from_this(), body = std::move(body)]() mutable {
                 auto res = std::make_shared<http::response<http::string_body>>(
                     http::status::created, 11);
                 res->set(http::field::content_type, "application/json");
                 res->keep_alive(true);
                 res->body() = std::move(body);
                 res->prepare_payload();
                 http::async_write(self->socket_, *res,
                                   [self, res](beast::error_code ec, size_t) {
                                     if (!ec) self->Read();
                                   });
               });
  }

 private:
  tcp::socket socket_;
  Writer* writer_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
};

bool Writer::Prepare() {
  if (!Exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
            "PRAGMA wal_autocheckpoint = 10000;")) {
    return false;
  }
  for (auto& [stream, version] : herald::bench::StreamVersions(db_)) {
    versions_[stream] = version;
  }
  return sqlite3_prepare_v2(db_, herald::bench::kInsertEvent, -1, &ins_,
                            nullptr) == SQLITE_OK;
}

// The string value of "key":"..." in a JSON body (no escapes), or "".
std::string Field(const std::string& body, const char* key) {
  std::string k = std::string("\"") + key + "\":\"";
  size_t at = body.find(k);
  if (at == std::string::npos) return "";
  at += k.size();
  size_t end = body.find('"', at);
  return end == std::string::npos ? "" : body.substr(at, end - at);
}

void Writer::Run() {
  std::vector<Job> jobs;
  std::vector<std::string> answers;
  using herald::bench::PhaseClock;
  PhaseClock phases;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) {
        phases.Print("plain HTTP server", commits_);
        return;
      }
      jobs.assign(std::make_move_iterator(queue_.begin()),
                  std::make_move_iterator(queue_.end()));
      queue_.clear();
    }
    if (commits_ == 0) {
      phases.Restart();  // from the first request on
    } else {
      phases.Charge(PhaseClock::kWait);
    }
    if (!Exec("BEGIN IMMEDIATE")) std::exit(1);
    answers.clear();
    for (auto& j : jobs) {
      std::string stream = Field(j.body, "stream");
      std::string type = Field(j.body, "type");
      std::string id = herald::NewUuidV7();
      int64_t version = ++versions_[stream];
      sqlite3_reset(ins_);
      sqlite3_bind_text(ins_, 1, id.data(), static_cast<int>(id.size()),
                        SQLITE_STATIC);
      sqlite3_bind_text(ins_, 2, stream.data(), static_cast<int>(stream.size()),
                        SQLITE_STATIC);
      sqlite3_bind_int64(ins_, 3, version);
      sqlite3_bind_text(ins_, 4, type.data(), static_cast<int>(type.size()),
                        SQLITE_STATIC);
      sqlite3_bind_text(ins_, 5, "application/json", -1, SQLITE_STATIC);
      sqlite3_bind_blob(ins_, 6, j.body.data(), static_cast<int>(j.body.size()),
                        SQLITE_STATIC);
      sqlite3_bind_text(ins_, 7, "{}", -1, SQLITE_STATIC);
      sqlite3_bind_int64(ins_, 8, herald::NowMicros());
      if (sqlite3_step(ins_) != SQLITE_DONE) {
        std::fprintf(stderr, "insert: %s\n", sqlite3_errmsg(db_));
        std::exit(1);
      }
      answers.push_back("{\"id\":\"" + id + "\",\"position\":" +
                        std::to_string(sqlite3_last_insert_rowid(db_)) +
                        ",\"stream_version\":" + std::to_string(version) + "," +
                        j.body.substr(1));
    }
    phases.Charge(PhaseClock::kInsert);
    if (!Exec("COMMIT")) std::exit(1);
    phases.Charge(PhaseClock::kCommit);
    rows_ += static_cast<long>(jobs.size());
    ++commits_;
    for (size_t i = 0; i < jobs.size(); ++i) {
      jobs[i].session->Answer(std::move(answers[i]));
    }
    jobs.clear();
    phases.Charge(PhaseClock::kAnswer);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: http_group_baseline SRC COPY\n");
    return 2;
  }
  const std::string copy = argv[2];
  if (!herald::bench::CopyDatabase(argv[1], copy)) return 1;
  sqlite3* db = nullptr;
  if (sqlite3_open(copy.c_str(), &db) != SQLITE_OK) return 1;
  Writer writer(db);
  if (!writer.Prepare()) {
    std::fprintf(stderr, "prepare: %s\n", sqlite3_errmsg(db));
    return 1;
  }
  // One I/O thread per core, each with its own context, as herald serve.
  const unsigned n = std::max(1u, std::thread::hardware_concurrency());
  asio::io_context accept_ctx;
  std::vector<std::unique_ptr<asio::io_context>> ctxs;
  for (unsigned i = 0; i < n; ++i) {
    ctxs.push_back(std::make_unique<asio::io_context>(1));
  }
  // The acceptor hands sockets out round robin.
  tcp::acceptor acceptor(accept_ctx,
                         tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  size_t next = 0;
  std::function<void()> accept = [&] {
    acceptor.async_accept(
        *ctxs[next++ % n], [&](beast::error_code ec, tcp::socket socket) {
          if (ec) return;
          socket.set_option(tcp::no_delay(true));
          std::make_shared<Session>(std::move(socket), &writer)->Read();
          accept();
        });
  };
  accept();
  std::printf("%d\n", acceptor.local_endpoint().port());
  std::fflush(stdout);

  asio::signal_set signals(accept_ctx, SIGINT, SIGTERM);
  signals.async_wait([&](beast::error_code, int) {
    acceptor.close();
    for (auto& c : ctxs) c->stop();
    accept_ctx.stop();
  });
  std::thread writer_thread([&] {
    herald::detail::NameThisThread("plain-writer");
    writer.Run();
  });
  std::vector<std::thread> io;
  for (auto& c : ctxs) {
    io.emplace_back([ctx = c.get()] {
      auto guard = asio::make_work_guard(*ctx);
      ctx->run();
    });
  }
  accept_ctx.run();
  for (auto& t : io) t.join();
  writer.Stop();
  writer_thread.join();
  writer.Finish();
  std::printf("%ld %ld\n", writer.rows(), writer.commits());
  std::fflush(stdout);
  sqlite3_close(db);
  herald::bench::RemoveDatabase(copy);
  return 0;
}
