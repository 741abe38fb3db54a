// The http and https schemes: URL checks and route options. Pure; no
// libcurl (the sender itself is http_sender.cc).
#include "transport/http/http_scheme.h"

#include <string>

namespace herald::detail {

Status ValidateHttpUrl(std::string_view url) {
  std::string scheme = SchemeOfUrl(url);
  std::string_view rest = url.substr(scheme.size() + 1);
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

Status ParseHttpOption(const OptionField& f, RouteConfig* route, bool* known) {
  const RouteOptions& o = route->options;
  SenderOptions& so = route->sender_options;
  const std::string& k = f.key;
  const OptionValue& v = f.value;
  *known = true;
  if (k == "connect_timeout") {
    return o.GetDuration(k, v, std::chrono::milliseconds(1),
                         &so.connect_timeout);
  }
  if (k == "timeout") {
    return o.GetDuration(k, v, std::chrono::milliseconds(1), &so.timeout);
  }
  if (k == "headers") {
    std::vector<std::pair<std::string, std::string>> headers;
    HERALD_RETURN_IF_ERROR(o.GetStringTable(k, v, &headers));
    for (size_t i = 0; i < headers.size(); ++i) {
      const auto& [name, value] = headers[i];
      int line = v.fields[i].value.line;
      for (char ch : name) {
        if (ch <= ' ' || ch == ':' || ch >= 127) {
          return o.Error(k, line, "'" + name + "' is not a header name");
        }
      }
      for (char ch : value) {
        if (ch == '\r' || ch == '\n') {
          return o.Error(k + "." + name, line, "must not contain a newline");
        }
      }
      so.headers.emplace_back(name, value);
    }
    return Status::OK();
  }
  if (k == "mode") return o.GetMode(k, v, &so.mode);
  if (k == "tls_verify") return o.GetBool(k, v, &so.tls_verify);
  if (k == "ca_file") return o.GetString(k, v, &so.ca_file);
  *known = false;
  return Status::OK();
}

}  // namespace herald::detail
