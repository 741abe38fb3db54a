// Sender helpers shared by every transport: the scheme registry, URL checks,
// the in-process callback sender and the CloudEvents 1.0 envelope.
//
// Thread safety: the registry is guarded by its mutex; the rest is pure.
#include "herald/sender.h"

#include <map>
#include <mutex>

#include "herald/json.h"

namespace herald {
namespace detail {

struct SchemeRegistry {
  std::mutex mu;
  std::map<std::string, SenderFactory> factories;  // guarded by mu
};

SchemeRegistry& Registry() {
  static SchemeRegistry* r = new SchemeRegistry;  // never destroyed
  return *r;
}

// The factory registered for `scheme`, or an empty function.
SenderFactory FindSenderScheme(const std::string& scheme) {
  auto& r = Registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.factories.find(scheme);
  return it == r.factories.end() ? SenderFactory() : it->second;
}

std::string SchemeOf(std::string_view url) {
  auto colon = url.find(':');
  if (colon == std::string_view::npos) return "";
  std::string s(url.substr(0, colon));
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
              c == '-' || c == '.';
    if (!ok) return "";
  }
  return s;
}

void AppendBase64(std::string_view in, std::string* out) {
  static const char kChars[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v =
        (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out->push_back(kChars[(v >> 18) & 63]);
    out->push_back(kChars[(v >> 12) & 63]);
    out->push_back(kChars[(v >> 6) & 63]);
    out->push_back(kChars[v & 63]);
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out->push_back(kChars[(v >> 18) & 63]);
    out->push_back(kChars[(v >> 12) & 63]);
    out->append("==");
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out->push_back(kChars[(v >> 18) & 63]);
    out->push_back(kChars[(v >> 12) & 63]);
    out->push_back(kChars[(v >> 6) & 63]);
    out->push_back('=');
  }
}

}  // namespace detail

void RegisterSenderScheme(const std::string& scheme, SenderFactory factory) {
  auto& r = detail::Registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.factories[scheme] = std::move(factory);
}

Status ValidateSenderUrl(std::string_view url) {
  for (char c : url) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == ' ') {
      return Status::InvalidArgument("'" + std::string(url) +
                                     "' holds a space or control character");
    }
  }
  std::string scheme = detail::SchemeOf(url);
  if (scheme.empty()) {
    return Status::InvalidArgument(
        "'" + std::string(url) +
        "' is not a sender URL (expected http://..., https://..., file:PATH "
        "or stdout:)");
  }
  std::string_view rest = url.substr(scheme.size() + 1);
  if (scheme == "http" || scheme == "https") {
    if (rest.substr(0, 2) != "//") {
      return Status::InvalidArgument("'" + std::string(url) +
                                     "' must start with " + scheme + "://");
    }
    std::string_view auth = rest.substr(2);
    auto end = auth.find_first_of("/?#");
    auth = auth.substr(0, end);
    if (auto at = auth.rfind('@'); at != std::string_view::npos) {
      auth = auth.substr(at + 1);
    }
    std::string_view host = auth;
    if (!host.empty() && host[0] == '[') {
      auto close = host.find(']');
      if (close == std::string_view::npos) {
        return Status::InvalidArgument("'" + std::string(url) +
                                       "' has an unclosed IPv6 address");
      }
      std::string_view after = host.substr(close + 1);
      host = host.substr(0, close + 1);
      if (!after.empty() && after[0] != ':') {
        return Status::InvalidArgument("'" + std::string(url) +
                                       "' has a malformed host");
      }
      auth = after.empty() ? std::string_view() : after;
    } else if (auto colon = host.find(':'); colon != std::string_view::npos) {
      auth = host.substr(colon);
      host = host.substr(0, colon);
    } else {
      auth = {};
    }
    if (host.empty() || host == "[]") {
      return Status::InvalidArgument("'" + std::string(url) + "' has no host");
    }
    if (!auth.empty()) {  // ":PORT"
      std::string_view port = auth.substr(1);
      if (port.empty() || port.size() > 5) {
        return Status::InvalidArgument("'" + std::string(url) +
                                       "' has a malformed port");
      }
      int p = 0;
      for (char c : port) {
        if (c < '0' || c > '9') {
          return Status::InvalidArgument("'" + std::string(url) +
                                         "' has a malformed port");
        }
        p = p * 10 + (c - '0');
      }
      if (p < 1 || p > 65535) {
        return Status::InvalidArgument("'" + std::string(url) +
                                       "' has a port out of range");
      }
    }
    return Status::OK();
  }
  if (scheme == "file") {
    if (rest.substr(0, 2) == "//") rest = rest.substr(2);
    if (rest.empty()) {
      return Status::InvalidArgument("'" + std::string(url) +
                                     "' names no file (file:PATH)");
    }
    return Status::OK();
  }
  if (scheme == "stdout") {
    if (!rest.empty()) {
      return Status::InvalidArgument(
          "'" + std::string(url) + "': stdout: takes nothing after the colon");
    }
    return Status::OK();
  }
  if (detail::FindSenderScheme(scheme)) return Status::OK();
  return Status::InvalidArgument("unknown sender scheme '" + scheme + "' in '" +
                                 std::string(url) +
                                 "' (expected http, https, file or stdout)");
}

namespace {

class CallbackSender final : public Sender {
 public:
  explicit CallbackSender(EventHandler handler)
      : handler_(std::move(handler)) {}

  void Send(std::span<const Event> events, std::span<SendResult> results,
            std::chrono::steady_clock::time_point deadline) override {
    // One stream's failure stops only that stream: remember failed streams.
    std::vector<const std::string*> failed;
    for (size_t i = 0; i < events.size(); ++i) {
      const Event& e = events[i];
      bool skip = std::chrono::steady_clock::now() > deadline;
      for (const auto* s : failed) skip = skip || *s == e.stream;
      if (skip) {
        results[i].attempted = false;
        results[i].status = Status::Unavailable("not sent");
        continue;
      }
      results[i].attempted = true;
      try {
        results[i].status = handler_(e);
      } catch (const std::exception& ex) {
        results[i].status =
            Status::Internal(std::string("handler threw: ") + ex.what());
      } catch (...) {
        results[i].status = Status::Internal("handler threw");
      }
      if (!results[i].status.ok()) failed.push_back(&e.stream);
    }
  }
  std::string_view kind() const override { return "callback"; }

 private:
  EventHandler handler_;
};

}  // namespace

std::unique_ptr<Sender> MakeCallbackSender(EventHandler handler) {
  return std::make_unique<CallbackSender>(std::move(handler));
}

// AppendCloudEventJson and CloudEventHeaders (declared in sender.h and in
// herald/cloudevents.h)
// live in the CloudEvents codec, src/core/cloudevents.cc.

}  // namespace herald
