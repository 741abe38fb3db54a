// The HTTP/1.1 transport of the server: Boost.Beast on Asio.
//
// Each I/O thread runs an io_context of its own; a connection (Session)
// lives on one of them, so its handlers never run at once and need no
// strand or lock. No thread is tied to a connection, so an idle long-poll
// or SSE stream costs a socket and a few KB. A request goes through three
// deadlines: the keep-alive idle wait for its first byte (idle_timeout),
// its request line and headers (header_timeout: a client trickling headers
// is cut off), and its body (idle_timeout). One timer per connection
// enforces them lazily: moving a deadline later costs nothing, the timer
// re-arms itself when it fires early. Requests are parsed in place from
// the connection's buffer with Beast's parser. Responses come back from Api
// on any thread and are posted to the session's io_context.
//
// Limits that hold whatever the clients do:
//   - connections: at most max_connections, lowered at start to what the
//     descriptor limit (RLIMIT_NOFILE) leaves after the descriptors already
//     open and a reserve for the store and relays; a connection beyond it is
//     accepted and closed at once, never left waiting in the backlog. Should
//     accept() still fail for want of descriptors, a spare descriptor kept
//     for that purpose is freed to accept and close the waiting ones.
//   - SSE memory: a stream renders its next chunk (64 KiB at most; an
//     event larger than that asks for its own size, clamped to the budget)
//     only once the shared ByteBudget ([server] sse_buffer_mb) granted it,
//     is charged the chunk's allocation, and gives it back when the chunk
//     is written. The bytes held stay within the budget, or one event
//     larger than it held alone.
//   - a POST whose client closes the connection while its append waits is
//     withdrawn (see Appender): the transport keeps reading the socket while
//     a POST is handled, and an EOF or error marks the request's
//     client_gone flag (bytes of a pipelined request are kept for later).
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <optional>
#include <unordered_map>

#include "herald/relay.h"
#include "server/internal.h"
#include "util/thread_name.h"

namespace herald {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace detail {
namespace {

class ServerImpl;

// How long an SSE write may take before the client is considered gone.
constexpr auto kSseWriteTimeout = std::chrono::seconds(30);
// Bytes asked of the socket per read: few for a request's first read (most
// requests fit, and an idle connection then holds no more), more once a
// request is under way.
constexpr size_t kFirstRead = 2048;
constexpr size_t kReadChunk = 16384;
// Capacity of the response buffer a connection keeps between requests; a
// larger one (a page) is freed once written, so an idle keep-alive
// connection costs a few KB, not its last page.
constexpr size_t kKeepWriteBuffer = 64 << 10;
// Frames written to an SSE stream at a time, at most (unless one event is
// larger): what a stream charges the SSE buffer budget per write.
constexpr size_t kSseChunkBytes = 64 << 10;
// Descriptors kept free for the store, relays and the process itself when
// connections are capped at the descriptor limit.
constexpr long kFdReserve = 64;
// Bytes of a pipelined request read while a POST is handled, at most;
// reading then pauses until the answer is written.
constexpr size_t kMaxReadAhead = 64 << 10;

// Sockets and timers bound to one io_context's executor (not the
// type-erased any_io_executor): each handler runs on that context's thread.
using Executor = asio::io_context::executor_type;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<Clock>, Executor>;

// CompletionBatch::Poster for an io_context: runs the functions in order,
// in one handler.
void PostAll(void* target, std::vector<std::function<void()>> fns) {
  asio::post(*static_cast<asio::io_context*>(target),
             [fns = std::move(fns)]() mutable {
               for (auto& fn : fns) fn();
             });
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Socket socket, ServerImpl* server);
  ~Session();

  void Start();
  // Posted by Server::Stop: finish what is in flight, then close.
  void Shutdown();

 private:
  void WaitForRequest();
  // Reads more into buffer_, then parses; no-op while a read is pending
  // (its completion parses).
  void ReadSome();
  void OnRead(beast::error_code ec, size_t n);
  // Feeds the buffered bytes to the parser; dispatches a whole request,
  // reads more, or answers a bad one.
  void Parse();
  bool OnHeaderDone();
  void OnParseError(beast::error_code ec);
  void Dispatch();
  void Reply(Response r, const std::string& label);
  void WriteResponse(Response r);
  void ReplyAndClose(int status, std::string_view code, std::string_view msg);
  void Close();

  // The connection closes at `when` unless a later deadline replaces it.
  void SetDeadline(Clock::time_point when);
  void ClearDeadline() { deadline_ = Clock::time_point::max(); }
  void ArmTimer(Clock::time_point when);

  // SSE
  void StartSse(Response r);
  // Takes `want` bytes of the SSE budget, then writes the next chunk.
  void SsePump(size_t want = kSseChunkBytes);
  void SseWrite(std::string data);
  void SseWait();
  void SseWatchClose();
  // Gives back the bytes this stream holds of the SSE budget.
  void SseRelease();

  ServerImpl* const server_;
  Socket socket_;
  Timer timer_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool timer_armed_ = false;
  Clock::time_point timer_at_{};
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool header_done_ = false;
  // The response being written and its buffers.
  std::optional<Response> out_;
  std::string head_;  // head and body of the response being written
  unsigned version_ = 11;
  bool keep_alive_ = false;
  bool head_request_ = false;  // HEAD: the GET's head, no body
  bool busy_ = false;          // a request is being handled
  bool stopping_ = false;
  bool closed_ = false;
  bool reading_ = false;  // a read into buffer_ is pending
  // Set when the client goes while a request is handled (see the top).
  std::shared_ptr<std::atomic<bool>> gone_;
  std::string label_;

  // SSE state.
  bool sse_ = false;
  int64_t cursor_ = 1;
  EventFilter filter_;
  uint64_t waiter_ = 0;
  bool writing_ = false;
  std::string sse_buf_;
  size_t charged_ = 0;  // bytes held of the SSE budget
  std::array<char, 512> sink_{};
};

class ServerImpl final : public Server {
 public:
  ServerImpl(Store* store, const ServerOptions& options, Relay* relay)
      : options_(options),
        store_(store),
        hub_(store, TailEvents(options), options.poll_max),
        appender_(store, &hub_),
        sse_budget_(static_cast<size_t>(options.config.sse_buffer_mb) << 20),
        pool_(static_cast<size_t>(std::max(1, options.worker_threads))),
        api_(
            store, relay, &hub_, &appender_, &metrics_,
            [this](std::function<void()> fn) {
              asio::post(pool_, std::move(fn));
            },
            options),
        io_threads_(options.config.threads > 0
                        ? options.config.threads
                        : static_cast<int>(std::max(
                              1u, std::thread::hardware_concurrency()))),
        acceptor_(MakeContexts()) {
    metrics_.sse_budget = &sse_budget_;
    metrics_.connection_limit.store(options.config.max_connections);
  }

  ~ServerImpl() override { Stop(); }

  Status Listen() {
    const std::string& listen = options_.config.listen;
    std::string host, port_text;
    if (!listen.empty() && listen[0] == '[') {
      auto close = listen.find(']');
      if (close == std::string::npos || close + 1 >= listen.size() ||
          listen[close + 1] != ':') {
        return Status::InvalidArgument("listen address '" + listen +
                                       "' is not [HOST]:PORT");
      }
      host = listen.substr(1, close - 1);
      port_text = listen.substr(close + 2);
    } else {
      auto colon = listen.rfind(':');
      if (colon == std::string::npos) {
        return Status::InvalidArgument("listen address '" + listen +
                                       "' is not HOST:PORT");
      }
      host = listen.substr(0, colon);
      port_text = listen.substr(colon + 1);
    }
    if (host.empty() || host == "localhost") host = "127.0.0.1";
    int port = -1;
    if (!port_text.empty() && port_text.size() <= 5 &&
        port_text.find_first_not_of("0123456789") == std::string::npos) {
      port = std::stoi(port_text);
    }
    if (port < 0 || port > 65535) {
      return Status::InvalidArgument("listen address '" + listen +
                                     "' has no valid port");
    }
    beast::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (ec) {
      return Status::InvalidArgument("listen address '" + listen + "': '" +
                                     host + "' is not an IP address");
    }
    if (options_.config.tokens.empty() && !addr.is_loopback()) {
      return Status::InvalidArgument(
          "refusing to listen on " + listen +
          " with no token configured: anyone could read and append events. "
          "Add [[server.tokens]] to the config, or listen on 127.0.0.1");
    }
    tcp::endpoint ep(addr, static_cast<unsigned short>(port));
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status::Unavailable("cannot listen on " + listen + ": " +
                                 ec.message());
    }
    auto local = acceptor_.local_endpoint(ec);
    port_ = local.port();
    address_ =
        (addr.is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(port_);
    return Status::OK();
  }

  void Run() {
    // Many streaming clients need many descriptors.
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
      long room =
          static_cast<long>(rl.rlim_cur) - OpenDescriptors() - kFdReserve;
      long limit =
          std::max(1L, std::min<long>(room, options_.config.max_connections));
      metrics_.connection_limit.store(limit);
    }
    hub_.Start();
    appender_.Start();
    Accept();
    for (auto& ioc : iocs_) {
      threads_.emplace_back([ioc = ioc.get()] {
        NameThisThread("herald-http");
        ioc->run();
      });
    }
  }

  int port() const override { return port_; }
  std::string address() const override { return address_; }

  void Stop() noexcept override {
    if (stopped_.exchange(true)) return;
    // 1. Stop accepting.
    asio::post(acceptor_.get_executor(), [this] {
      beast::error_code ec;
      acceptor_.close(ec);
    });
    // 2. Idle connections close; busy ones finish their request first.
    std::vector<std::shared_ptr<Session>> sessions;
    {
      MutexLock lock(&sessions_mu_);
      for (auto& [p, w] : sessions_) {
        if (auto s = w.lock()) sessions.push_back(std::move(s));
      }
    }
    for (auto& s : sessions) s->Shutdown();
    sessions.clear();
    // 3. Long-polls answer now, SSE streams end (those waiting for buffer
    //    memory too).
    hub_.Stop();
    sse_budget_.Stop();
    // 4. Wait for in-flight requests (appends included) to be answered.
    auto deadline = Clock::now() + options_.drain_timeout;
    {
      MutexLock lock(&sessions_mu_);
      while (!sessions_.empty() &&
             sessions_cv_.WaitUntil(&sessions_mu_, deadline)) {
      }
    }
    appender_.Stop();
    for (auto& w : work_) w.reset();
    for (auto& ioc : iocs_) ioc->stop();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    pool_.join();
    if (spare_fd_ >= 0) ::close(spare_fd_);
    spare_fd_ = -1;
  }

  // Session registry.
  void Register(Session* s, std::weak_ptr<Session> w) {
    MutexLock lock(&sessions_mu_);
    sessions_.emplace(s, std::move(w));
    metrics_.open_connections.fetch_add(1);
  }
  void Unregister(Session* s) {
    {
      MutexLock lock(&sessions_mu_);
      sessions_.erase(s);
      metrics_.open_connections.fetch_sub(1);
    }
    sessions_cv_.SignalAll();
  }
  bool stopping() const { return stopped_.load(); }

  const ServerOptions options_;
  Store* const store_;
  Hub hub_;
  Appender appender_;
  ByteBudget sse_budget_;
  HttpMetrics metrics_;
  asio::thread_pool pool_;
  Api api_;

 private:
  // The io_contexts, one per I/O thread (each run by one thread only, so
  // Asio needs no locking inside it); returns the acceptor's.
  asio::io_context& MakeContexts() {
    for (int i = 0; i < io_threads_; ++i) {
      iocs_.push_back(std::make_unique<asio::io_context>(1));
      work_.push_back(asio::make_work_guard(*iocs_.back()));
    }
    return *iocs_.front();
  }

  // Descriptors this process has open now.
  static long OpenDescriptors() {
    long n = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
      while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] != '.') ++n;
      }
      ::closedir(d);
    }
    return n;
  }

  // Out of descriptors: frees the spare one to accept and close the
  // connections waiting in the backlog, so none is left hanging.
  void ShedBacklog() {
    if (spare_fd_ >= 0) ::close(spare_fd_);
    int fd = acceptor_.native_handle();
    pollfd p{fd, POLLIN, 0};
    while (::poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
      int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) break;
      ::close(c);
      metrics_.connections_refused.fetch_add(1);
    }
    spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }

  void Accept() {
    // Connections are dealt out to the contexts in turn.
    asio::io_context& ioc = *iocs_[next_ioc_++ % iocs_.size()];
    acceptor_.async_accept(ioc, [this](beast::error_code ec, Socket s) {
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) {
          return;
        }
        if (ec == asio::error::no_descriptors || ec.value() == ENFILE) {
          ShedBacklog();
        } else {
          // Other transient failures: pause briefly rather than spin.
          auto t = std::make_shared<asio::steady_timer>(
              acceptor_.get_executor(), std::chrono::milliseconds(50));
          t->async_wait([this, t](beast::error_code) { Accept(); });
          return;
        }
        return Accept();
      }
      if (metrics_.open_connections.load() >=
          metrics_.connection_limit.load()) {
        beast::error_code ignored;
        s.close(ignored);
        metrics_.connections_refused.fetch_add(1);
      } else {
        std::make_shared<Session>(std::move(s), this)->Start();
      }
      Accept();
    });
  }

  int port_ = 0;
  std::string address_;
  int spare_fd_ = -1;  // see ShedBacklog
  std::atomic<bool> stopped_{false};
  Mutex sessions_mu_;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions_
      GUARDED_BY(sessions_mu_);
  CondVar sessions_cv_;
  std::vector<std::thread> threads_;
  const int io_threads_;
  size_t next_ioc_ = 0;  // only the acceptor's thread
  // Last: destroyed first, with every handler (and session) they still hold.
  std::vector<std::unique_ptr<asio::io_context>> iocs_;
  // Keep the I/O threads running while a session waits on the Hub or the
  // workers with no socket operation pending.
  std::vector<asio::executor_work_guard<Executor>> work_;
  tcp::acceptor acceptor_;
};

// ---- Session
// ------------------------------------------------------------------

Session::Session(Socket socket, ServerImpl* server)
    : server_(server),
      socket_(std::move(socket)),
      timer_(socket_.get_executor()) {
  // Responses go out in several writes; never hold the last one back.
  beast::error_code ec;
  socket_.set_option(tcp::no_delay(true), ec);
}

Session::~Session() {
  SseRelease();
  if (sse_) server_->metrics_.open_streams.fetch_sub(1);
  server_->Unregister(this);
}

void Session::Start() {
  server_->Register(this, weak_from_this());
  asio::dispatch(socket_.get_executor(),
                 [self = shared_from_this()] { self->WaitForRequest(); });
}

void Session::Shutdown() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    self->stopping_ = true;
    if (self->sse_) {
      self->server_->hub_.Cancel(self->waiter_);
      self->waiter_ = 0;
      if (!self->writing_) self->Close();
    } else if (!self->busy_) {
      self->Close();
    }
  });
}

void Session::Close() {
  if (closed_) return;
  closed_ = true;
  beast::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  timer_.cancel();
  if (waiter_) {
    server_->hub_.Cancel(waiter_);
    waiter_ = 0;
  }
}

void Session::SetDeadline(Clock::time_point when) {
  deadline_ = when;
  // A later deadline than the armed one is found when the timer fires.
  if (!timer_armed_ || when < timer_at_) ArmTimer(when);
}

void Session::ArmTimer(Clock::time_point when) {
  // Replacing a pending wait cancels it; its handler sees operation_aborted.
  timer_armed_ = true;
  timer_at_ = when;
  timer_.expires_at(when);
  timer_.async_wait([self = shared_from_this(), when](beast::error_code ec) {
    if (ec || self->closed_ || self->timer_at_ != when) return;
    self->timer_armed_ = false;
    if (self->deadline_ == Clock::time_point::max()) return;
    if (Clock::now() >= self->deadline_) return self->Close();
    self->ArmTimer(self->deadline_);
  });
}

void Session::WaitForRequest() {
  if (stopping_ || closed_) return Close();
  parser_.reset();
  if (buffer_.size() > 0) return Parse();  // pipelined
  if (buffer_.capacity() > kFirstRead) buffer_.shrink_to_fit();
  // A read started while the last request was handled is still pending:
  // its completion parses.
  SetDeadline(Clock::now() + server_->options_.config.idle_timeout);
  ReadSome();
}

void Session::ReadSome() {
  if (reading_ || closed_) return;
  reading_ = true;
  socket_.async_read_some(
      buffer_.prepare(buffer_.size() == 0 ? kFirstRead : kReadChunk),
      [self = shared_from_this()](beast::error_code ec, size_t n) {
        self->OnRead(ec, n);
      });
}

void Session::OnRead(beast::error_code ec, size_t n) {
  reading_ = false;
  if (ec) {
    // While a POST is handled: its client has gone; withdraw its append.
    if (busy_ && gone_ && !gone_->exchange(true)) {
      server_->metrics_.requests_abandoned.fetch_add(1);
    }
    return Close();
  }
  buffer_.commit(n);
  if (!busy_) return Parse();
  // A pipelined request came while one is handled: keep it for later, and
  // keep watching for the client's leaving up to kMaxReadAhead.
  if (gone_ && buffer_.size() < kMaxReadAhead) ReadSome();
}

void Session::Parse() {
  if (closed_) return;
  const auto& config = server_->options_.config;
  if (!parser_) {
    parser_.emplace();
    parser_->eager(true);
    parser_->header_limit(static_cast<std::uint32_t>(config.max_header_bytes));
    parser_->body_limit(static_cast<std::uint64_t>(config.max_body_bytes));
    header_done_ = false;
    // The whole request line and headers must arrive within header_timeout.
    SetDeadline(Clock::now() + config.header_timeout);
  }
  while (buffer_.size() > 0 && !parser_->is_done()) {
    beast::error_code ec;
    size_t used = parser_->put(buffer_.data(), ec);
    buffer_.consume(used);
    if (ec == http::error::need_more) break;
    if (ec) return OnParseError(ec);
    if (!header_done_ && parser_->is_header_done() && !OnHeaderDone()) return;
    if (used == 0) break;
  }
  if (parser_->is_done()) return Dispatch();
  ReadSome();
}

// Checks the head of a request whose body is still to come: false when it
// was answered.
bool Session::OnHeaderDone() {
  header_done_ = true;
  const auto& config = server_->options_.config;
  if (auto cl = parser_->content_length();
      cl && *cl > static_cast<std::uint64_t>(config.max_body_bytes)) {
    ReplyAndClose(413, "payload_too_large",
                  "the request body exceeds " +
                      std::to_string(config.max_body_bytes) + " bytes");
    return false;
  }
  if (parser_->is_done()) return true;
  SetDeadline(Clock::now() + config.idle_timeout);
  if (beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
    // Small and rare: written synchronously before the body is read.
    static constexpr std::string_view kContinue =
        "HTTP/1.1 100 Continue\r\n\r\n";
    beast::error_code ec;
    asio::write(socket_, asio::buffer(kContinue), ec);
    if (ec) {
      Close();
      return false;
    }
  }
  return true;
}

void Session::OnParseError(beast::error_code ec) {
  const auto& config = server_->options_.config;
  if (ec == http::error::header_limit) {
    return ReplyAndClose(431, "headers_too_large",
                         "the request line and headers exceed " +
                             std::to_string(config.max_header_bytes) +
                             " bytes");
  }
  if (ec == http::error::body_limit) {
    return ReplyAndClose(413, "payload_too_large",
                         "the request body exceeds " +
                             std::to_string(config.max_body_bytes) + " bytes");
  }
  ReplyAndClose(400, "bad_request", "malformed HTTP request: " + ec.message());
}

void Session::Dispatch() {
  busy_ = true;
  ClearDeadline();
  auto& msg = parser_->get();
  keep_alive_ = msg.keep_alive();
  version_ = msg.version();
  head_request_ = msg.method() == http::verb::head;
  // RFC 9112 section 3.2: an HTTP/1.1 request without Host is a 400.
  if (version_ >= 11 && msg.find(http::field::host) == msg.end()) {
    return ReplyAndClose(400, "bad_request",
                         "an HTTP/1.1 request needs a Host header");
  }
  Request req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  if (!ParseTarget(req.target, &req.path, &req.query)) {
    return ReplyAndClose(400, "invalid_argument",
                         "the URL holds a malformed %-escape");
  }
  req.authorization = std::string(msg[http::field::authorization]);
  req.content_type = std::string(msg[http::field::content_type]);
  req.if_none_match = std::string(msg[http::field::if_none_match]);
  req.last_event_id = std::string(msg["Last-Event-ID"]);
  req.origin = std::string(msg[http::field::origin]);
  req.body = std::move(msg.body());
  parser_.reset();
  gone_.reset();
  if (req.method == "POST") {
    // Watch the socket while the append waits (see the top of the file).
    gone_ = std::make_shared<std::atomic<bool>>(false);
    req.client_gone = gone_;
    req.io_target = &socket_.get_executor().context();
    req.io_post = &PostAll;
    ReadSome();
  }
  server_->api_.Handle(std::move(req), [self = shared_from_this()](
                                           Response r, std::string label) {
    // Answered from the appender or the Hub: gathered with the others of
    // its group, one post per I/O thread (see CompletionBatch).
    if (auto* batch = CompletionBatch::Current()) {
      auto& ioc = self->socket_.get_executor().context();
      batch->Add(&ioc, &PostAll,
                 [self, r = std::move(r), label = std::move(label)]() mutable {
                   self->Reply(std::move(r), label);
                 });
      return;
    }
    // Inline when answered at once on this thread (cached pages, 304s,
    // errors); queued to the session's context from worker and hub threads.
    asio::dispatch(
        self->socket_.get_executor(),
        [self, r = std::move(r), label = std::move(label)]() mutable {
          self->Reply(std::move(r), label);
        });
  });
}

void Session::Reply(Response r, const std::string& label) {
  server_->metrics_.Count(label, r.sse ? 200 : r.status);
  if (closed_) return;
  if (r.sse && !head_request_) return StartSse(std::move(r));
  WriteResponse(std::move(r));
}

void Session::ReplyAndClose(int status, std::string_view code,
                            std::string_view msg) {
  server_->metrics_.Count("other", status);
  keep_alive_ = false;
  head_request_ = false;
  busy_ = true;
  WriteResponse(Api::Error(status, code, msg));
}

void Session::WriteResponse(Response r) {
  // The head is formatted here; a page from memory is copied once, from
  // the cached event strings, into the connection's write buffer.
  out_ = std::move(r);
  Response& o = *out_;
  // HEAD of an SSE stream: the stream's head; its length is unknown.
  bool keep = keep_alive_ && !stopping_ && !server_->stopping() && !o.sse;
  bool no_body = o.status == 304 || o.status == 204 || o.sse;
  if (o.sse) {
    o.headers.insert(o.headers.begin(), {{"Cache-Control", "no-store"},
                                         {"X-Accel-Buffering", "no"}});
  }
  size_t length = o.body.size() + o.tail.size() +
                  (o.shared_body ? o.shared_body->size() : 0);
  for (const auto& p : o.parts) length += p->json.size();
  if (!o.parts.empty()) --length;  // the last part's ','
  head_.clear();
  head_ += version_ == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  head_ += std::to_string(o.status);
  head_ += ' ';
  head_ += std::string_view(
      http::obsolete_reason(static_cast<http::status>(o.status)));
  head_ += "\r\nServer: herald\r\n";
  if (!o.content_type.empty()) {
    head_ += "Content-Type: " + o.content_type + "\r\n";
  }
  for (const auto& [k, v] : o.headers) head_ += k + ": " + v + "\r\n";
  if (!no_body) head_ += "Content-Length: " + std::to_string(length) + "\r\n";
  if (!keep) {
    head_ += "Connection: close\r\n";
  } else if (version_ == 10) {
    head_ += "Connection: keep-alive\r\n";
  }
  head_ += "\r\n";
  // A HEAD answer is the GET's head (Content-Length included) alone.
  if (head_request_) no_body = true;
  // The head, small bodies and pages from memory go into one buffer (a
  // 64-entry writev per few KB costs more than copying a page once), kept
  // across the connection's responses up to kKeepWriteBuffer; a page from
  // the page cache is written from its shared string as a second buffer.
  std::shared_ptr<const std::string> shared;
  if (!no_body) {
    head_.reserve(head_.size() + length);
    head_ += o.body;
    if (o.shared_body && (!o.parts.empty() || !o.tail.empty())) {
      head_ += *o.shared_body;
    } else {
      shared = std::move(o.shared_body);
    }
    for (size_t i = 0; i < o.parts.size(); ++i) {
      const std::string& j = o.parts[i]->json;
      head_.append(j.data(), i + 1 < o.parts.size() ? j.size() : j.size() - 1);
    }
    head_ += o.tail;
  }
  out_.reset();
  std::array<asio::const_buffer, 2> bufs{
      asio::buffer(head_),
      shared ? asio::buffer(*shared) : asio::const_buffer()};
  SetDeadline(Clock::now() + server_->options_.config.idle_timeout);
  asio::async_write(
      socket_, bufs,
      [self = shared_from_this(), keep, shared](beast::error_code ec, size_t) {
        // Keep a small buffer for the next answer, not a page.
        if (self->head_.capacity() > kKeepWriteBuffer) {
          std::string().swap(self->head_);
        }
        self->busy_ = false;
        self->gone_.reset();
        if (ec || !keep) return self->Close();
        self->WaitForRequest();
      });
}

// ---- SSE
// ------------------------------------------------------------------------

void Session::StartSse(Response r) {
  sse_ = true;
  // A stream reads nothing more than the close: give back the request
  // buffers.
  buffer_ = beast::flat_buffer();
  std::string().swap(head_);
  server_->metrics_.open_streams.fetch_add(1);
  cursor_ = r.sse_offset;
  filter_ = std::move(r.sse_filter);
  ClearDeadline();
  // No Content-Length and no chunking: the stream ends when the
  // connection does.
  std::string head =
      "HTTP/1.1 200 OK\r\nServer: herald\r\n"
      "Content-Type: text/event-stream\r\nCache-Control: no-store\r\n"
      "X-Accel-Buffering: no\r\n";
  for (const auto& [k, v] : r.headers) head += k + ": " + v + "\r\n";
  head += "Connection: close\r\n\r\nretry: 1000\n\n";
  SseWatchClose();
  SseWrite(std::move(head));
}

void Session::SseWatchClose() {
  // Anything the client sends is ignored; an error or EOF means it left.
  socket_.async_read_some(
      asio::buffer(sink_),
      [self = shared_from_this()](beast::error_code ec, size_t) {
        if (ec) return self->Close();
        self->SseWatchClose();
      });
}

void Session::SseWrite(std::string data) {
  if (closed_) return;
  writing_ = true;
  sse_buf_ = std::move(data);
  // A client that stops reading is cut off.
  SetDeadline(Clock::now() + kSseWriteTimeout);
  asio::async_write(socket_, asio::buffer(sse_buf_),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      self->writing_ = false;
                      // The chunk is out: its memory goes back.
                      std::string().swap(self->sse_buf_);
                      self->SseRelease();
                      self->ClearDeadline();
                      if (ec || self->stopping_) return self->Close();
                      self->SsePump();
                    });
}

void Session::SseRelease() {
  if (charged_ == 0) return;
  server_->sse_budget_.Release(charged_);
  charged_ = 0;
}

void Session::SsePump(size_t want) {
  if (closed_) return;
  // First the bytes, then the chunk: nothing is rendered beyond the budget.
  // `want` is a chunk's worth, or what one large event needs (more than
  // the whole budget: then granted once every other stream's chunk is out).
  server_->sse_budget_.Acquire(
      want, [self = shared_from_this(), want](bool granted) {
        asio::dispatch(self->socket_.get_executor(), [self, granted, want] {
          ByteBudget& budget = self->server_->sse_budget_;
          if (granted) self->charged_ = std::min(want, budget.capacity());
          if (!granted || self->closed_) {
            self->SseRelease();
            return self->Close();
          }
          self->server_->api_.SseChunk(
              self->cursor_, self->filter_, want, [self](SseChunkResult r) {
                asio::post(self->socket_.get_executor(),
                           [self, r = std::move(r)]() mutable {
                             if (!r.ok || self->closed_) {
                               self->SseRelease();
                               return self->Close();
                             }
                             self->cursor_ = r.next_cursor;
                             if (r.need > 0) {
                               self->SseRelease();
                               return self->SsePump(r.need);
                             }
                             if (r.chunk.empty()) {
                               self->SseRelease();
                               return self->SseWait();
                             }
                             // Charge what the chunk holds.
                             self->server_->sse_budget_.Resize(
                                 self->charged_, r.chunk.capacity());
                             self->charged_ = r.chunk.capacity();
                             self->SseWrite(std::move(r.chunk));
                           });
              });
        });
      });
}

void Session::SseWait() {
  if (closed_) return;
  if (stopping_) return Close();
  auto deadline = Clock::now() + server_->options_.config.heartbeat;
  std::weak_ptr<Session> weak = weak_from_this();
  // Hub may call back at once, on this thread: post either way.
  uint64_t id = server_->hub_.Wait(
      cursor_, deadline, [self = shared_from_this()](bool woke) {
        asio::post(self->socket_.get_executor(), [self, woke] {
          self->waiter_ = 0;
          if (self->closed_) return;
          if (self->stopping_ || self->server_->stopping()) {
            return self->Close();
          }
          if (woke) return self->SsePump();
          self->SseWrite(": heartbeat\n\n");
        });
      });
  waiter_ = id;
}

}  // namespace
}  // namespace detail

Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::Start(Store* store,
                                              const ServerOptions& options,
                                              Relay* relay) {
  if (!store) return Status::InvalidArgument("Server::Start needs a store");
  for (const auto& o : options.config.cors_origins) {
    Status s = ValidateCorsOrigin(o, !options.config.tokens.empty());
    if (!s.ok()) {
      return Status::InvalidArgument("server.cors_origins: " + s.message());
    }
  }
  auto server = std::make_unique<detail::ServerImpl>(store, options, relay);
  HERALD_RETURN_IF_ERROR(server->Listen());
  server->Run();
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace herald
