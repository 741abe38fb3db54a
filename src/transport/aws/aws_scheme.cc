// The sqs and sns schemes: URL and ARN checks, route options.
#include "transport/aws/aws_scheme.h"

#include <string>
#include <vector>

#include "transport/http/http_scheme.h"

namespace herald::detail {
namespace {

constexpr size_t kMaxMessageSize = 1024 * 1024;  // SQS's ceiling since 2025

// "scheme://host[:port]" of an http(s) URL, and its host alone.
struct UrlParts {
  std::string origin;  // "https://host:port"
  std::string host;    // "host"
  std::string path;    // "/123/name", or ""
};

Status SplitHttpUrl(std::string_view url, UrlParts* out) {
  std::string scheme = SchemeOfUrl(url);
  if (scheme != "http" && scheme != "https") {
    return Status::InvalidArgument("'" + std::string(url) +
                                   "' is not an http:// or https:// URL");
  }
  HERALD_RETURN_IF_ERROR(ValidateHttpUrl(url));
  std::string_view rest = url.substr(scheme.size() + 3);
  size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  if (authority.find('@') != std::string_view::npos) {
    return Status::InvalidArgument("'" + std::string(url) +
                                   "' must not carry credentials");
  }
  out->origin = scheme + "://" + std::string(authority);
  std::string_view host = authority;
  if (!host.empty() && host[0] == '[') {
    host = host.substr(0, host.find(']') + 1);
  } else {
    host = host.substr(0, host.find(':'));
  }
  out->host = std::string(host);
  out->path =
      end == std::string_view::npos ? "" : std::string(rest.substr(end));
  return Status::OK();
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_';
}

// A queue (max 80) or topic (max 256) name: letters, digits, '-', '_',
// optionally ending in ".fifo".
bool ValidName(std::string_view name, size_t max) {
  if (name.empty() || name.size() > max) return false;
  std::string_view base = name;
  if (base.size() > 5 && base.substr(base.size() - 5) == ".fifo") {
    base.remove_suffix(5);
  }
  for (char c : base) {
    if (!IsNameChar(c)) return false;
  }
  return true;
}

bool EndsWithFifo(std::string_view name) {
  return name.size() > 5 && name.substr(name.size() - 5) == ".fifo";
}

// sqs:QUEUE_URL -> the URL parts and queue name.
Status ParseQueueUrl(std::string_view target, UrlParts* parts,
                     std::string* name) {
  if (target.empty()) {
    return Status::InvalidArgument(
        "'sqs:' needs a queue URL (e.g. "
        "sqs:https://sqs.eu-west-1.amazonaws.com/123456789012/orders)");
  }
  HERALD_RETURN_IF_ERROR(SplitHttpUrl(target, parts));
  std::string_view path = parts->path;
  if (path.find_first_of("?#") != std::string_view::npos) {
    return Status::InvalidArgument("queue URL '" + std::string(target) +
                                   "' must have no query or fragment");
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  *name = slash == std::string_view::npos ? std::string()
                                          : std::string(path.substr(slash + 1));
  if (!ValidName(*name, 80)) {
    return Status::InvalidArgument(
        "queue URL '" + std::string(target) +
        "' does not end in a queue name (1-80 letters, digits, '-', '_', "
        "optionally '.fifo'), as in https://sqs.REGION.amazonaws.com/"
        "ACCOUNT/NAME");
  }
  return Status::OK();
}

// sns:TOPIC_ARN -> partition, region, topic name.
Status ParseTopicArn(std::string_view arn, std::string* partition,
                     std::string* region, std::string* name) {
  std::vector<std::string_view> parts;
  size_t from = 0;
  for (int i = 0; i < 5; ++i) {
    size_t colon = arn.find(':', from);
    if (colon == std::string_view::npos) break;
    parts.push_back(arn.substr(from, colon - from));
    from = colon + 1;
  }
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument(
        "'" + std::string(arn) + "' is not a topic ARN (" + why +
        "; expected arn:aws:sns:REGION:ACCOUNT:TOPIC)");
  };
  if (parts.size() != 5) return bad("too few ':'-separated parts");
  parts.push_back(arn.substr(from));
  if (parts[0] != "arn") return bad("it must start with 'arn:'");
  if (parts[1].empty()) return bad("no partition");
  if (parts[2] != "sns") return bad("the service is not 'sns'");
  if (parts[3].empty()) return bad("no region");
  for (char c : parts[3]) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      return bad("a malformed region");
    }
  }
  if (parts[4].size() != 12 ||
      parts[4].find_first_not_of("0123456789") != std::string_view::npos) {
    return bad("the account is not 12 digits");
  }
  if (!ValidName(parts[5], 256)) {
    return bad(
        "the topic name is not 1-256 letters, digits, '-', '_', optionally "
        "'.fifo'");
  }
  *partition = std::string(parts[1]);
  *region = std::string(parts[3]);
  *name = std::string(parts[5]);
  return Status::OK();
}

}  // namespace

std::string RegionOfSqsHost(std::string_view host) {
  auto strip = [&](std::string_view suffix) {
    if (host.size() > suffix.size() &&
        host.substr(host.size() - suffix.size()) == suffix) {
      host.remove_suffix(suffix.size());
      return true;
    }
    return false;
  };
  if (!strip(".amazonaws.com") && !strip(".amazonaws.com.cn")) return "";
  if (host == "queue") return "us-east-1";
  if (host.substr(0, 4) == "sqs.") return std::string(host.substr(4));
  if (strip(".queue")) return std::string(host);
  return "";
}

Status ValidateAwsUrl(std::string_view url) {
  std::string scheme = SchemeOfUrl(url);
  std::string_view target = url.substr(scheme.size() + 1);
  if (scheme == "sqs") {
    UrlParts parts;
    std::string name;
    return ParseQueueUrl(target, &parts, &name);
  }
  std::string partition, region, name;
  return ParseTopicArn(target, &partition, &region, &name);
}

Status ParseAwsOptions(const RouteConfig& route, AwsOptions* out) {
  const RouteOptions& o = route.options;
  std::string scheme = SchemeOfUrl(route.sender);
  out->service = scheme == "sns" ? AwsService::kSns : AwsService::kSqs;
  out->target = route.sender.substr(scheme.size() + 1);
  out->source = route.sender_options.source;
  std::string default_region, default_endpoint, name;
  if (out->service == AwsService::kSqs) {
    UrlParts parts;
    HERALD_RETURN_IF_ERROR(ParseQueueUrl(out->target, &parts, &name));
    default_region = RegionOfSqsHost(parts.host);
    default_endpoint = parts.origin + "/";
  } else {
    std::string partition;
    HERALD_RETURN_IF_ERROR(
        ParseTopicArn(out->target, &partition, &default_region, &name));
    default_endpoint = "https://sns." + default_region + ".amazonaws.com" +
                       (partition == "aws-cn" ? ".cn/" : "/");
  }
  out->fifo = EndsWithFifo(name);
  out->message_group_id = *NameTemplate::ParseWithId("{stream}");
  out->deduplication_id = *NameTemplate::ParseWithId("{id}");

  const OptionValue* group_set = nullptr;
  const OptionValue* dedupe_set = nullptr;
  bool have_region = false, have_endpoint = false;
  for (const auto& f : o.fields) {
    const std::string& k = f.key;
    const OptionValue& v = f.value;
    if (k == "region") {
      HERALD_RETURN_IF_ERROR(o.GetString(k, v, &out->region));
      if (out->region.empty() ||
          out->region.find_first_not_of(
              "abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
        return o.Error(
            k, v.line,
            "'" + out->region + "' is not a region name (e.g. eu-west-1)");
      }
      have_region = true;
    } else if (k == "endpoint") {
      HERALD_RETURN_IF_ERROR(o.GetString(k, v, &out->endpoint));
      UrlParts parts;
      Status s = SplitHttpUrl(out->endpoint, &parts);
      if (!s.ok()) return o.Error(k, v.line, s.message());
      if (parts.path.empty()) out->endpoint += "/";
      have_endpoint = true;
    } else if (k == "max_batch") {
      int64_t n = 0;
      HERALD_RETURN_IF_ERROR(o.GetInt(k, v, 1, 10, &n));
      out->max_batch = static_cast<int>(n);
    } else if (k == "message_group_id") {
      HERALD_RETURN_IF_ERROR(
          ParseTemplateOption(o, k, v, &out->message_group_id, true));
      group_set = &v;
    } else if (k == "deduplication_id") {
      HERALD_RETURN_IF_ERROR(
          ParseTemplateOption(o, k, v, &out->deduplication_id, true));
      dedupe_set = &v;
    } else if (k == "raw") {
      HERALD_RETURN_IF_ERROR(o.GetBool(k, v, &out->raw));
    } else if (k == "max_message_size") {
      int64_t n = 0;
      HERALD_RETURN_IF_ERROR(
          o.GetInt(k, v, 1024, static_cast<int64_t>(kMaxMessageSize), &n));
      out->max_message_size = static_cast<size_t>(n);
    } else if (k == "connect_timeout") {
      HERALD_RETURN_IF_ERROR(o.GetDuration(k, v, std::chrono::milliseconds(1),
                                           &out->connect_timeout));
    } else if (k == "timeout") {
      HERALD_RETURN_IF_ERROR(
          o.GetDuration(k, v, std::chrono::milliseconds(1), &out->timeout));
    } else if (k == "tls_verify") {
      HERALD_RETURN_IF_ERROR(o.GetBool(k, v, &out->tls_verify));
    } else if (k == "ca_file") {
      HERALD_RETURN_IF_ERROR(o.GetString(k, v, &out->ca_file));
    } else {
      return o.UnknownKey(f, kAwsKeys);
    }
  }
  const char* what = out->service == AwsService::kSqs ? "queue" : "topic";
  for (auto [key, v] : {std::pair<const char*, const OptionValue*>{
                            "message_group_id", group_set},
                        {"deduplication_id", dedupe_set}}) {
    if (v && !out->fifo) {
      return o.Error(key, v->line,
                     std::string("applies to FIFO ") + what +
                         "s only (names ending in .fifo); '" + name +
                         "' is a standard " + what);
    }
  }
  if (!have_region) {
    if (default_region.empty()) {
      return o.Error("region", route.line,
                     "is required: the queue URL's host '" + out->target +
                         "' names no region (set region = \"us-east-1\" or "
                         "the one the server expects)");
    }
    out->region = default_region;
  }
  if (!have_endpoint) out->endpoint = default_endpoint;
  return Status::OK();
}

Status ValidateAwsRoute(RouteConfig* route) {
  AwsOptions o;
  return ParseAwsOptions(*route, &o);
}

}  // namespace herald::detail
