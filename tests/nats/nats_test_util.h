// Test helpers for the NATS JetStream sender: a real nats-server with
// JetStream on a free 127.0.0.1 port in a temporary directory (started and
// stopped by the test, never a system service), and a JetStream client to
// create streams and read them back with a real pull consumer.
// Header-only; needs libnats.
#pragma once

#include <arpa/inet.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "herald/json.h"
#include "support/test_util.h"

namespace herald::testing {

// The body of GET http://127.0.0.1:port/path, or "" when nothing answers.
inline std::string LocalHttpGet(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    std::string req =
        "GET " + path +
        " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (::write(fd, req.data(), req.size()) ==
        static_cast<ssize_t>(req.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, n);
    }
  }
  ::close(fd);
  auto body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

// nats-server -js -sd DIR -a 127.0.0.1 -p PORT -m MONITOR_PORT. Its store
// survives Stop/Start and Kill/Start (a restart keeps the streams and their
// messages).
class NatsServer {
 public:
  // `extra`: more nats-server arguments (--user u --pass p...).
  explicit NatsServer(std::vector<std::string> extra = {})
      : port_(FreePort()), monitor_(FreePort()), extra_(std::move(extra)) {
    Start();
  }
  ~NatsServer() { Stop(); }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  // Starts the server and waits until JetStream is ready
  // (/healthz?js-enabled-only=true answers ok).
  bool Start() {
    Child::Options o;
    o.stderr_path = dir_.file("nats-server.log");
    o.stdout_path = dir_.file("nats-server.out");
    std::vector<std::string> argv{"nats-server", "-js",
                                  "-sd",         dir_.file("store"),
                                  "-a",          "127.0.0.1",
                                  "-p",          std::to_string(port_),
                                  "-m",          std::to_string(monitor_)};
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    child_ = std::make_unique<Child>(argv, o);
    ready_ = WaitFor([&] { return Healthy(); }, std::chrono::seconds(20));
    return ready_;
  }
  // Stops it (SIGTERM: a clean shutdown, which answers what it has read)
  // and reaps it; a frozen server is woken to do so.
  void Stop() {
    if (!child_) return;
    child_->Signal(SIGTERM);
    child_->Signal(SIGCONT);
    child_->Wait();
    child_.reset();
  }
  // Freezes it (SIGSTOP): its connections stay open, but it reads and
  // answers nothing until killed or stopped.
  void Freeze() {
    if (child_) child_->Signal(SIGSTOP);
  }
  // Kills it (SIGKILL: a crash, no goodbye to its clients) and reaps it.
  // Its store keeps what it wrote (a process kill loses no written data).
  void Kill() {
    if (!child_) return;
    child_->Signal(SIGKILL);
    child_->Wait();
    child_.reset();
  }
  // Bytes its clients sent that it has not read yet: the receive queues of
  // its established client connections (Linux /proc/net/tcp), -1 when
  // that cannot be read. A frozen server leaves a publish sent to it there.
  int64_t UnreadBytes() const {
    std::ifstream in("/proc/net/tcp");
    if (!in) return -1;
    std::string line;
    std::getline(in, line);  // the column titles
    int64_t unread = 0;
    while (std::getline(in, line)) {
      // "sl: local_ip:port remote_ip:port st tx_queue:rx_queue ...", hex.
      char local[64], remote[64], queues[64];
      unsigned state = 0;
      if (std::sscanf(line.c_str(), "%*s %63s %63s %x %63s", local, remote,
                      &state, queues) != 4) {
        continue;
      }
      const char* port = std::strchr(local, ':');
      const char* rx = std::strchr(queues, ':');
      if (port == nullptr || rx == nullptr || state != 1 /* ESTABLISHED */ ||
          std::strtol(port + 1, nullptr, 16) != port_) {
        continue;
      }
      unread += std::strtoll(rx + 1, nullptr, 16);
    }
    return unread;
  }
  bool Healthy() const {
    std::string body = LocalHttpGet(monitor_, "/healthz?js-enabled-only=true");
    return body.find("\"ok\"") != std::string::npos;
  }
  bool ready() const { return ready_; }
  int port() const { return port_; }
  pid_t pid() const { return child_ ? child_->pid() : -1; }
  std::string url() const {
    return "nats://127.0.0.1:" + std::to_string(port_);
  }
  std::string log() const { return ReadTextFile(dir_.file("nats-server.log")); }

 private:
  TempDir dir_;
  int port_, monitor_;
  std::vector<std::string> extra_;
  bool ready_ = false;
  std::unique_ptr<Child> child_;
};

// One message as a JetStream stream holds it.
struct StoredMessage {
  uint64_t sequence = 0;
  std::string subject;
  std::string id;  // Nats-Msg-Id
  std::map<std::string, std::string> headers;
  std::string data;
};

// One message as JetStream stores it, byte for byte: the header block as
// it was published ("NATS/1.0\r\n", then "Name: value\r\n" lines and a
// blank line) and the body.
struct RawStoredMessage {
  std::string subject;
  std::string header_block;
  std::string data;
};

// A JetStream client for tests: creates streams and reads them back.
class JetStreamAdmin {
 public:
  explicit JetStreamAdmin(const std::string& url) {
    natsConnection* nc = nullptr;
    status_ = natsConnection_ConnectTo(&nc, url.c_str());
    nc_.reset(nc);
    jsCtx* js = nullptr;
    if (status_ == NATS_OK) {
      status_ = natsConnection_JetStream(&js, nc_.get(), nullptr);
    }
    js_.reset(js);
  }
  JetStreamAdmin(const JetStreamAdmin&) = delete;
  JetStreamAdmin& operator=(const JetStreamAdmin&) = delete;
  bool ok() const { return status_ == NATS_OK; }
  std::string error() const { return natsStatus_GetText(status_); }

  // Adds a file-backed stream capturing `subjects`, with a duplicate
  // window of `duplicates_ms`. "" or the error.
  // `limits` may set more of the configuration (MaxMsgs, Discard...).
  std::string AddStream(
      const std::string& name, const std::vector<std::string>& subjects,
      int64_t duplicates_ms = 120000,
      const std::function<void(jsStreamConfig*)>& limits = nullptr) {
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name.c_str();
    std::vector<const char*> subs;
    for (const auto& s : subjects) subs.push_back(s.c_str());
    cfg.Subjects = subs.data();
    cfg.SubjectsLen = static_cast<int>(subs.size());
    cfg.Storage = js_FileStorage;
    cfg.Duplicates = duplicates_ms * 1000000;  // nanoseconds
    if (limits) limits(&cfg);
    jsStreamInfo* si = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    natsStatus s = js_AddStream(&si, js_.get(), &cfg, nullptr, &code);
    if (si) jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
      return std::string(natsStatus_GetText(s)) + " (" +
             std::to_string(static_cast<int>(code)) + ")";
    }
    return "";
  }

  // How many messages the stream holds; -1 on error.
  int64_t Count(const std::string& stream) {
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, js_.get(), stream.c_str(), nullptr, nullptr) !=
        NATS_OK) {
      return -1;
    }
    int64_t n = static_cast<int64_t>(si->State.Msgs);
    jsStreamInfo_Destroy(si);
    return n;
  }

  // Every message of `stream`, in stream order, read by an ephemeral pull
  // consumer (explicit acks) as an application would.
  std::vector<StoredMessage> ReadAll(const std::string& stream) {
    std::vector<StoredMessage> out;
    int64_t want = Count(stream);
    if (want <= 0) return out;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    natsSubscription* sub = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    if (js_PullSubscribe(&sub, js_.get(), ">", nullptr, nullptr, &so, &code) !=
        NATS_OK) {
      return out;
    }
    while (static_cast<int64_t>(out.size()) < want) {
      natsMsgList list{};
      natsStatus s = natsSubscription_Fetch(&list, sub, 500, 2000, &code);
      if (s != NATS_OK && list.Count == 0) break;
      for (int i = 0; i < list.Count; ++i) {
        natsMsg* m = list.Msgs[i];
        StoredMessage sm;
        jsMsgMetaData* meta = nullptr;
        if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
          sm.sequence = meta->Sequence.Stream;
          jsMsgMetaData_Destroy(meta);
        }
        sm.subject = natsMsg_GetSubject(m);
        sm.data.assign(natsMsg_GetData(m), natsMsg_GetDataLength(m));
        const char** keys = nullptr;
        int n = 0;
        if (natsMsgHeader_Keys(m, &keys, &n) == NATS_OK) {
          for (int k = 0; k < n; ++k) {
            const char* v = nullptr;
            if (natsMsgHeader_Get(m, keys[k], &v) == NATS_OK && v) {
              sm.headers[keys[k]] = v;
            }
          }
          free(static_cast<void*>(keys));
        }
        auto id = sm.headers.find("Nats-Msg-Id");
        if (id != sm.headers.end()) sm.id = id->second;
        natsMsg_Ack(m, nullptr);
        out.push_back(std::move(sm));
      }
      natsMsgList_Destroy(&list);
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return out;
  }

  // Message `sequence` of `stream` as stored (the JetStream API's
  // STREAM.MSG.GET, which returns its raw header block); the error, if any,
  // in *error.
  RawStoredMessage GetRaw(const std::string& stream, uint64_t sequence,
                          std::string* error) {
    RawStoredMessage out;
    natsMsg* reply = nullptr;
    const std::string subject = "$JS.API.STREAM.MSG.GET." + stream;
    const std::string request = "{\"seq\":" + std::to_string(sequence) + "}";
    natsStatus s = natsConnection_RequestString(
        &reply, nc_.get(), subject.c_str(), request.c_str(), 5000);
    if (s != NATS_OK) {
      *error = natsStatus_GetText(s);
      return out;
    }
    std::string body(natsMsg_GetData(reply), natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    auto json = Json::Parse(body);
    const Json* message = json.ok() ? json->Find("message") : nullptr;
    if (message == nullptr) {
      *error = "no message in " + body;
      return out;
    }
    if (const Json* v = message->Find("subject")) out.subject = v->as_string();
    if (const Json* v = message->Find("hdrs")) {
      Status d = DecodeBase64(v->as_string(), &out.header_block);
      if (!d.ok()) *error = d.ToString();
    }
    if (const Json* v = message->Find("data")) {
      Status d = DecodeBase64(v->as_string(), &out.data);
      if (!d.ok()) *error = d.ToString();
    }
    return out;
  }

  jsCtx* js() { return js_.get(); }

 private:
  struct ConnectionDeleter {
    void operator()(natsConnection* p) const { natsConnection_Destroy(p); }
  };
  struct JsDeleter {
    void operator()(jsCtx* p) const { jsCtx_Destroy(p); }
  };
  natsStatus status_ = NATS_OK;
  // Destroyed in reverse order: the context before its connection.
  std::unique_ptr<natsConnection, ConnectionDeleter> nc_;
  std::unique_ptr<jsCtx, JsDeleter> js_;
};

}  // namespace herald::testing
