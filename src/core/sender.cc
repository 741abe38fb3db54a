// Sender helpers shared by every transport: the scheme registry, URL checks,
// the in-process callback sender and the CloudEvents 1.0 envelope.
//
// Thread safety: the registry is guarded by its mutex; the rest is pure.
#include "herald/sender.h"

#include <map>
#include <mutex>

#include "herald/json.h"
#include "herald/redact.h"
#include "util/thread_annotations.h"

namespace herald {
namespace detail {

// Registers http, https, file and stdout (src/transport/make_sender.cc)
// through RegisterBuiltinScheme; run once, before any lookup.
void RegisterBuiltinSchemes();

struct SchemeRegistry {
  Mutex mu;
  std::map<std::string, std::shared_ptr<const SenderScheme>, std::less<>>
      schemes GUARDED_BY(mu);
};

}  // namespace detail

std::string SchemeOfUrl(std::string_view url) {
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

namespace {

// Adds an entry (no wait for the built-ins: used while they register).
void Put(detail::SchemeRegistry& r, const std::string& scheme,
         SenderScheme entry) {
  detail::MutexLock lock(&r.mu);
  r.schemes[scheme] = std::make_shared<const SenderScheme>(std::move(entry));
}

detail::SchemeRegistry& RawRegistry() {
  static detail::SchemeRegistry* r = new detail::SchemeRegistry;
  return *r;
}

void EnsureBuiltins() {
  static std::once_flag once;
  std::call_once(once, [] { detail::RegisterBuiltinSchemes(); });
}

std::string KnownSchemes() {
  auto& r = RawRegistry();
  detail::MutexLock lock(&r.mu);
  std::string out;
  // The built-in schemes, in the order the docs list them.
  for (const char* b : {"http", "https", "file", "stdout", "nats"}) {
    if (r.schemes.count(b)) out += std::string(out.empty() ? "" : ", ") + b;
  }
  return out;
}

}  // namespace

void RegisterScheme(const std::string& scheme, SenderScheme entry) {
  EnsureBuiltins();
  Put(RawRegistry(), scheme, std::move(entry));
}

namespace detail {
// For RegisterBuiltinSchemes: adds without waiting for the built-ins.
void RegisterBuiltinScheme(const std::string& scheme, SenderScheme entry) {
  Put(RawRegistry(), scheme, std::move(entry));
}
}  // namespace detail

std::shared_ptr<const SenderScheme> FindScheme(std::string_view scheme) {
  EnsureBuiltins();
  auto& r = RawRegistry();
  detail::MutexLock lock(&r.mu);
  auto it = r.schemes.find(scheme);
  return it == r.schemes.end() ? nullptr : it->second;
}

Status ValidateSenderUrl(std::string_view url) {
  for (char c : url) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == ' ') {
      return Status::InvalidArgument("'" + RedactSecrets(url) +
                                     "' holds a space or control character");
    }
  }
  std::string scheme = SchemeOfUrl(url);
  if (scheme.empty()) {
    return Status::InvalidArgument(
        "'" + RedactSecrets(url) +
        "' is not a sender URL (expected http://..., https://..., file:PATH "
        "or stdout:)");
  }
  auto entry = FindScheme(scheme);
  if (!entry) {
    std::string known = KnownSchemes();
    // "http, https, file, stdout" reads "http, https, file or stdout".
    if (auto comma = known.rfind(", "); comma != std::string::npos) {
      known = known.substr(0, comma) + " or " + known.substr(comma + 2);
    }
    return Status::InvalidArgument("unknown sender scheme '" + scheme +
                                   "' in '" + std::string(url) +
                                   "' (expected " + known + ")");
  }
  if (entry->validate_url) return entry->validate_url(url);
  return Status::OK();
}

Status ValidateSenderOptions(RouteConfig* route) {
  auto entry = FindScheme(SchemeOfUrl(route->sender));
  if (!entry) return ValidateSenderUrl(route->sender);
  if (entry->validate_options) return entry->validate_options(route);
  for (const auto& f : route->options.fields) {
    return route->options.UnknownKey(f, "");
  }
  return Status::OK();
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
