// The consumer-source scheme registry (herald/consumer_source.h): one entry
// per URL scheme, the built-ins registered once before the first lookup.
//
// Thread safety: the registry is guarded by its mutex; the rest is pure.
#include "herald/consumer_source.h"

#include <map>
#include <mutex>

#include "herald/redact.h"
#include "herald/sender.h"  // SchemeOfUrl
#include "util/thread_annotations.h"

namespace herald {
namespace detail {

// Registers the built-in source schemes (src/transport/make_source.cc)
// through RegisterBuiltinSourceScheme; run once, before any lookup.
void RegisterBuiltinSourceSchemes();

namespace {

struct SourceRegistry {
  Mutex mu;
  std::map<std::string, std::shared_ptr<const SourceScheme>, std::less<>>
      schemes GUARDED_BY(mu);
};

SourceRegistry& RawSourceRegistry() {
  static SourceRegistry* r = new SourceRegistry;
  return *r;
}

void PutSource(const std::string& scheme, SourceScheme entry) {
  auto& r = RawSourceRegistry();
  MutexLock lock(&r.mu);
  r.schemes[scheme] = std::make_shared<const SourceScheme>(std::move(entry));
}

void EnsureBuiltinSources() {
  static std::once_flag once;
  std::call_once(once, [] { RegisterBuiltinSourceSchemes(); });
}

std::string KnownSourceSchemes() {
  auto& r = RawSourceRegistry();
  MutexLock lock(&r.mu);
  std::string out;
  for (const auto& [name, entry] : r.schemes) {
    out += std::string(out.empty() ? "" : ", ") + name;
  }
  return out.empty() ? "none built" : out;
}

}  // namespace

// For RegisterBuiltinSourceSchemes: adds without waiting for the built-ins.
void RegisterBuiltinSourceScheme(const std::string& scheme,
                                 SourceScheme entry) {
  PutSource(scheme, std::move(entry));
}

}  // namespace detail

std::string ConsumerCheckpointName(std::string_view name) {
  return "consumer:" + std::string(name);
}

void RegisterSourceScheme(const std::string& scheme, SourceScheme entry) {
  detail::EnsureBuiltinSources();
  detail::PutSource(scheme, std::move(entry));
}

std::shared_ptr<const SourceScheme> FindSourceScheme(std::string_view scheme) {
  detail::EnsureBuiltinSources();
  auto& r = detail::RawSourceRegistry();
  detail::MutexLock lock(&r.mu);
  auto it = r.schemes.find(scheme);
  return it == r.schemes.end() ? nullptr : it->second;
}

Status ValidateSourceUrl(std::string_view url) {
  for (char c : url) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == ' ') {
      return Status::InvalidArgument("'" + RedactSecrets(url) +
                                     "' holds a space or control character");
    }
  }
  std::string scheme = SchemeOfUrl(url);
  auto entry = scheme.empty() ? nullptr : FindSourceScheme(scheme);
  if (!entry) {
    return Status::InvalidArgument(
        (scheme.empty() ? "'" + RedactSecrets(url) + "' is not a source URL"
                        : "unknown source scheme '" + scheme + "' in '" +
                              RedactSecrets(url) + "'") +
        " (expected " + detail::KnownSourceSchemes() + ")");
  }
  if (entry->validate_url) return entry->validate_url(url);
  return Status::OK();
}

Status ValidateSourceOptions(ConsumerSourceOptions* options) {
  HERALD_RETURN_IF_ERROR(ValidateSourceUrl(options->url));
  auto entry = FindSourceScheme(SchemeOfUrl(options->url));
  if (entry->validate_options) return entry->validate_options(options);
  for (const auto& f : options->options.fields) {
    return options->options.UnknownKey(f, "");
  }
  return Status::OK();
}

Result<std::unique_ptr<ConsumerSource>> MakeConsumerSource(
    const ConsumerSourceOptions& options) {
  ConsumerSourceOptions checked = options;
  HERALD_RETURN_IF_ERROR(ValidateSourceOptions(&checked));
  auto entry = FindSourceScheme(SchemeOfUrl(checked.url));
  if (!entry->make_source) {
    return Status::InvalidArgument(
        "source scheme '" + SchemeOfUrl(checked.url) + "' makes no sources");
  }
  return entry->make_source(checked);
}

}  // namespace herald
