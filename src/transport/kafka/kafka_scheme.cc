// The kafka scheme: URL checks and route options (see kafka_scheme.h).
#include "transport/kafka/kafka_scheme.h"

#include <librdkafka/rdkafka.h>

#include <memory>
#include <string>

#include "herald/redact.h"

namespace herald::detail {
namespace {

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};

// Parses the URL into "host:port,host:port".
Status ParseUrl(std::string_view url, std::string* brokers) {
  const std::string shown = RedactSecrets(url);
  constexpr std::string_view kPrefix = "kafka://";
  if (url.size() < kPrefix.size() ||
      SchemeOfUrl(url.substr(0, kPrefix.size())) != "kafka" ||
      url.substr(5, 3) != "://") {
    return Status::InvalidArgument("'" + shown + "' must start with kafka://");
  }
  std::string_view rest = url.substr(kPrefix.size());
  brokers->clear();
  size_t from = 0;
  for (;;) {
    size_t comma = rest.find(',', from);
    std::string_view one = rest.substr(from, comma == std::string_view::npos
                                                 ? std::string_view::npos
                                                 : comma - from);
    if (one.substr(0, kPrefix.size()) == kPrefix) {
      one = one.substr(kPrefix.size());
    }
    if (one.find('@') != std::string_view::npos) {
      return Status::InvalidArgument(
          "'" + shown +
          "': credentials go in the route's kafka table (sasl.username, "
          "sasl.password), not in the URL");
    }
    if (one.find_first_of("/?#") != std::string_view::npos) {
      return Status::InvalidArgument("'" + shown +
                                     "' has a path or query (expected "
                                     "kafka://host:port[,host:port...])");
    }
    std::string_view host = one, port;
    if (!one.empty() && one.front() == '[') {  // [v6]:port
      size_t close = one.find(']');
      if (close == std::string_view::npos) {
        return Status::InvalidArgument("'" + shown + "' has an unclosed '['");
      }
      host = one.substr(0, close + 1);
      std::string_view after = one.substr(close + 1);
      if (!after.empty()) {
        if (after.front() != ':') {
          return Status::InvalidArgument("'" + shown +
                                         "' has a malformed host");
        }
        port = after.substr(1);
        if (port.empty()) port = "x";  // malformed below
      }
    } else if (size_t colon = one.rfind(':'); colon != std::string_view::npos) {
      host = one.substr(0, colon);
      port = one.substr(colon + 1);
      if (port.empty()) port = "x";
    }
    if (host.empty() || host == "[]" ||
        (host.find(':') != std::string_view::npos && host.front() != '[')) {
      return Status::InvalidArgument(
          "'" + shown + "' has no host" +
          (one.empty() ? " in one of its entries" : ""));
    }
    if (!port.empty() &&
        (port.size() > 5 ||
         port.find_first_not_of("0123456789") != std::string_view::npos ||
         std::stoi(std::string(port)) < 1 ||
         std::stoi(std::string(port)) > 65535)) {
      return Status::InvalidArgument("'" + shown + "' has a malformed port");
    }
    if (!brokers->empty()) *brokers += ',';
    *brokers += std::string(host) + ":" +
                (port.empty() ? std::string("9092") : std::string(port));
    if (comma == std::string_view::npos) return Status::OK();
    from = comma + 1;
  }
}

// A kafka-table value as librdkafka takes it: strings as they are,
// integers and booleans in their text form.
Status PropertyText(const RouteOptions& o, const std::string& key,
                    const OptionValue& v, std::string* out) {
  switch (v.kind) {
    case OptionValue::Kind::kString:
      *out = v.string;
      return Status::OK();
    case OptionValue::Kind::kInteger:
      *out = std::to_string(v.integer);
      return Status::OK();
    case OptionValue::Kind::kBoolean:
      *out = v.boolean ? "true" : "false";
      return Status::OK();
    default:
      return o.Error(key, v.line,
                     "must be a string, an integer or a boolean, not " +
                         std::string(v.TypeName()));
  }
}

// Why herald refuses `name` = `value` in the kafka table, or "" when it
// does not.
std::string Refusal(const std::string& name, const std::string& value) {
  if (name == "acks" || name == "request.required.acks") {
    if (value == "all" || value == "-1") return "";
    return "refused: herald acknowledges an event only when every in-sync "
           "replica has it (acks=all); " +
           name + "=" + value + " would weaken that";
  }
  if (name == "enable.idempotence") {
    if (value == "true") return "";
    return "refused: the idempotent producer keeps per-partition order "
           "across retries and is always on";
  }
  if (name == "partitioner") {
    if (value == "murmur2_random") return "";
    return "refused: herald uses murmur2_random so a key lands on the "
           "partition Java producers choose for it";
  }
  if (name == "delivery.report.only.error") {
    if (value == "false") return "";
    return "refused: a delivery report is herald's acknowledgement";
  }
  if (name == "transactional.id") {
    return "refused: herald's producer is idempotent, not transactional";
  }
  if (name == "bootstrap.servers" || name == "metadata.broker.list") {
    return "refused: the brokers come from the sender URL "
           "(kafka://host:port,...)";
  }
  if (name == "message.timeout.ms" || name == "delivery.timeout.ms") {
    return "refused: set the route's `timeout` key instead";
  }
  if (name == "max.in.flight.requests.per.connection" ||
      name == "max.in.flight") {
    int n = 0;
    try {
      n = std::stoi(value);
    } catch (...) {
      return "";  // librdkafka names the bad value
    }
    if (n > 5) {
      return "refused: the idempotent producer keeps order with at most 5 "
             "requests in flight";
    }
  }
  return "";
}

// Flattens the kafka table: nested tables join with '.', so both
// { "security.protocol" = "SSL" } and { security.protocol = "SSL" } work.
void Flatten(const std::string& prefix, const OptionValue& table,
             std::vector<std::pair<std::string, const OptionValue*>>* out) {
  for (const auto& f : table.fields) {
    std::string name = prefix.empty() ? f.key : prefix + "." + f.key;
    if (f.value.kind == OptionValue::Kind::kTable) {
      Flatten(name, f.value, out);
    } else {
      out->emplace_back(std::move(name), &f.value);
    }
  }
}

// Why a consumer source refuses `name` in its kafka table, or "".
std::string ConsumerRefusal(const std::string& name, const std::string&) {
  if (name == "group.id") return "refused: set the consumer's `group` key";
  if (name == "enable.auto.commit" || name == "enable.auto.offset.store") {
    return "refused: herald commits offsets itself, only after handling";
  }
  if (name == "bootstrap.servers" || name == "metadata.broker.list") {
    return "refused: the brokers come from the source URL "
           "(kafka://host:port,...)";
  }
  if (name == "auto.offset.reset") return "refused: set the `start` key";
  return "";
}

using RefusalFn = std::string (*)(const std::string&, const std::string&);

Status ParseProperties(
    const RouteOptions& o, const OptionValue& table,
    std::vector<std::pair<std::string, std::string>>* properties,
    RefusalFn refusal = Refusal) {
  if (table.kind != OptionValue::Kind::kTable) {
    return o.Error("kafka", table.line,
                   "must be a table of librdkafka properties, not " +
                       std::string(table.TypeName()));
  }
  std::vector<std::pair<std::string, const OptionValue*>> flat;
  Flatten("", table, &flat);
  std::unique_ptr<rd_kafka_conf_t, ConfDeleter> conf(rd_kafka_conf_new());
  for (const auto& [name, v] : flat) {
    const std::string key = "kafka." + name;
    std::string value;
    HERALD_RETURN_IF_ERROR(PropertyText(o, key, *v, &value));
    if (std::string why = refusal(name, value); !why.empty()) {
      return o.Error(key, v->line, why);
    }
    char errstr[512] = "";
    rd_kafka_conf_res_t r = rd_kafka_conf_set(
        conf.get(), name.c_str(), value.c_str(), errstr, sizeof errstr);
    if (r != RD_KAFKA_CONF_OK) {
      std::string text = errstr;
      if (IsSecretKafkaProperty(name) && !value.empty()) {
        for (size_t at = text.find(value); at != std::string::npos;
             at = text.find(value, at + 3)) {
          text.replace(at, value.size(), "***");
        }
      }
      if (r == RD_KAFKA_CONF_UNKNOWN) {
        text = "librdkafka has no such property (" + text + ")";
      } else {
        text = "librdkafka refused it: " + text;
      }
      return o.Error(key, v->line, RedactSecrets(text));
    }
    properties->emplace_back(name, std::move(value));
  }
  return Status::OK();
}

}  // namespace

Status ParseKafkaUrl(std::string_view url, std::string* brokers) {
  return ParseUrl(url, brokers);
}

Status ParseKafkaConsumerProperties(
    const RouteOptions& o, const OptionValue& table,
    std::vector<std::pair<std::string, std::string>>* out) {
  return ParseProperties(o, table, out, ConsumerRefusal);
}

bool IsSecretKafkaProperty(std::string_view name) {
  return name.find("password") != std::string_view::npos ||
         name.find("secret") != std::string_view::npos ||
         name == "ssl.key.pem" || name == "ssl_key" ||
         name == "sasl.oauthbearer.config" ||
         name.find("token") != std::string_view::npos;
}

Status ValidateKafkaUrl(std::string_view url) {
  std::string brokers;
  return ParseUrl(url, &brokers);
}

Status ParseKafkaOptions(const RouteConfig& route, KafkaOptions* out) {
  HERALD_RETURN_IF_ERROR(ParseUrl(route.sender, &out->brokers));
  const RouteOptions& o = route.options;
  out->source = route.sender_options.source;
  out->key = *NameTemplate::Parse("{stream}");
  bool have_topic = false;
  for (const auto& f : o.fields) {
    const std::string& k = f.key;
    const OptionValue& v = f.value;
    if (k == "topic") {
      HERALD_RETURN_IF_ERROR(ParseTemplateOption(o, k, v, &out->topic));
      have_topic = true;
    } else if (k == "key") {
      HERALD_RETURN_IF_ERROR(ParseTemplateOption(o, k, v, &out->key));
    } else if (k == "mode") {
      HERALD_RETURN_IF_ERROR(o.GetMode(k, v, &out->mode));
    } else if (k == "timeout") {
      HERALD_RETURN_IF_ERROR(
          o.GetDuration(k, v, std::chrono::milliseconds(1), &out->timeout));
    } else if (k == "kafka") {
      HERALD_RETURN_IF_ERROR(ParseProperties(o, v, &out->properties));
    } else {
      return o.UnknownKey(f, kKafkaKeys);
    }
  }
  if (!have_topic) {
    return o.Error("topic", route.line,
                   "is required for a kafka:// route (e.g. topic = "
                   "\"events.{category}\")");
  }
  return Status::OK();
}

Status ValidateKafkaRoute(RouteConfig* route) {
  KafkaOptions o;
  return ParseKafkaOptions(*route, &o);
}

}  // namespace herald::detail
