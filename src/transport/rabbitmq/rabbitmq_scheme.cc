// The amqp and amqps schemes: URL checks and route options.
#include "transport/rabbitmq/rabbitmq_scheme.h"

#include <amqp.h>

#include <string>
#include <vector>

#include "transport/source_util.h"

namespace herald::detail {
namespace {

Status ParseUrl(std::string_view url, RabbitOptions* out) {
  std::string scheme = SchemeOfUrl(url);
  if (scheme != "amqp" && scheme != "amqps") {
    return Status::InvalidArgument("'" + std::string(url) +
                                   "' is not an amqp:// or amqps:// URL");
  }
  std::string_view rest = url.substr(scheme.size() + 1);
  if (rest.substr(0, 2) != "//") {
    return Status::InvalidArgument("'" + std::string(url) +
                                   "' must start with " + scheme + "://");
  }
  std::string_view auth = rest.substr(2);
  auth = auth.substr(0, auth.find('/'));
  if (auto at = auth.rfind('@'); at != std::string_view::npos) {
    auth = auth.substr(at + 1);
  }
  if (auth.empty() || auth[0] == ':') {
    return Status::InvalidArgument("'" + std::string(url) + "' has no host");
  }
  std::vector<char> copy(url.begin(), url.end());
  copy.push_back('\0');
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(copy.data(), &info) != AMQP_STATUS_OK) {
    return Status::InvalidArgument(
        "'" + std::string(url) +
        "' is malformed (expected amqp://user:pass@host:port/vhost)");
  }
  if (info.port < 1 || info.port > 65535) {
    return Status::InvalidArgument("'" + std::string(url) +
                                   "' has a port out of range");
  }
  out->user = info.user;
  out->password = info.password;
  out->host = info.host;
  out->port = info.port;
  out->vhost = info.vhost;
  if (out->vhost.empty()) out->vhost = "/";
  out->tls = info.ssl != 0;
  return Status::OK();
}

// The keys a sender and a source share: how to reach the broker.
bool IsConnectionKey(std::string_view k) {
  return k == "connect_timeout" || k == "tls_verify" || k == "ca_file";
}

Status ParseConnectionKey(const RouteOptions& o, const std::string& k,
                          const OptionValue& v, RabbitOptions* out) {
  if (k == "connect_timeout") {
    return o.GetDuration(k, v, std::chrono::milliseconds(1),
                         &out->connect_timeout);
  }
  if (k == "tls_verify") return o.GetBool(k, v, &out->tls_verify);
  return o.GetString(k, v, &out->ca_file);
}

}  // namespace

Status ValidateAmqpUrl(std::string_view url) {
  RabbitOptions o;
  return ParseUrl(url, &o);
}

Status ParseRabbitOptions(const RouteConfig& route, RabbitOptions* out) {
  HERALD_RETURN_IF_ERROR(ParseUrl(route.sender, out));
  const RouteOptions& o = route.options;
  out->source = route.sender_options.source;
  out->routing_key = *NameTemplate::Parse("{type}");
  bool have_exchange = false;
  for (const auto& f : o.fields) {
    const std::string& k = f.key;
    const OptionValue& v = f.value;
    if (k == "exchange") {
      HERALD_RETURN_IF_ERROR(ParseTemplateOption(o, k, v, &out->exchange));
      have_exchange = true;
    } else if (k == "routing_key") {
      HERALD_RETURN_IF_ERROR(ParseTemplateOption(o, k, v, &out->routing_key));
    } else if (k == "mode") {
      HERALD_RETURN_IF_ERROR(o.GetMode(k, v, &out->mode));
    } else if (IsConnectionKey(k)) {
      HERALD_RETURN_IF_ERROR(ParseConnectionKey(o, k, v, out));
    } else {
      return o.UnknownKey(f, kRabbitKeys);
    }
  }
  if (!have_exchange) {
    return o.Error("exchange", route.line,
                   "is required for an " + SchemeOfUrl(route.sender) +
                       ":// route (the exchange to publish to)");
  }
  return Status::OK();
}

Status ValidateRabbitRoute(RouteConfig* route) {
  RabbitOptions o;
  return ParseRabbitOptions(*route, &o);
}

Status ParseRabbitSourceOptions(const ConsumerSourceOptions& source,
                                RabbitOptions* out) {
  HERALD_RETURN_IF_ERROR(ParseUrl(source.url, out));
  const RouteOptions& o = source.options;
  bool have_queue = false;
  for (const auto& f : o.fields) {
    const std::string& k = f.key;
    const OptionValue& v = f.value;
    if (k == "queue") {
      HERALD_RETURN_IF_ERROR(o.GetString(k, v, &out->queue));
      if (out->queue.empty() || out->queue.size() > 255) {
        return o.Error(k, v.line, "must be a queue name of 1 to 255 bytes");
      }
      have_queue = true;
    } else if (IsConnectionKey(k)) {
      HERALD_RETURN_IF_ERROR(ParseConnectionKey(o, k, v, out));
    } else {
      return o.UnknownKey(f, kRabbitSourceKeys);
    }
  }
  if (!have_queue) {
    return o.Error("queue", ConsumerTableLine(source),
                   "is required for an " + SchemeOfUrl(source.url) +
                       ":// source (the queue to consume; herald declares "
                       "no queues)");
  }
  return Status::OK();
}

}  // namespace herald::detail
