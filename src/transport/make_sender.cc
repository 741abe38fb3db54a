// The built-in sender schemes (http, https, file, stdout, and the brokers
// built: kafka, nats, amqp/amqps) registered in the
// scheme registry like any other, MakeSender, and the legacy
// RegisterSenderScheme wrapper.
#include <string>

#include "herald/sender.h"
#include "transport/file/file_scheme.h"
#include "transport/file/file_sender.h"
#include "transport/http/http_scheme.h"
#if HERALD_WITH_CURL
#include "transport/http/http_sender.h"
#endif
#if HERALD_WITH_KAFKA
#include "transport/kafka/kafka_scheme.h"
#include "transport/kafka/kafka_sender.h"
#endif
#if HERALD_WITH_NATS
#include "transport/nats/nats_sender.h"
#endif
#if HERALD_WITH_AWS
#include "transport/aws/aws_scheme.h"
#include "transport/aws/aws_sender.h"
#endif
#if HERALD_WITH_RABBITMQ
#include "transport/rabbitmq/rabbitmq_scheme.h"
#include "transport/rabbitmq/rabbitmq_sender.h"
#endif

namespace herald {
namespace detail {

void RegisterBuiltinScheme(const std::string& scheme, SenderScheme entry);

namespace {

// The options of the built-in senders: every SenderOptions key. Each
// built-in scheme accepts them all (as before the registry existed: a
// config with `timeout` on a file route keeps loading), and uses its own.
Status ValidateBuiltinOptions(RouteConfig* route) {
  for (const auto& f : route->options.fields) {
    bool known = false;
    HERALD_RETURN_IF_ERROR(ParseHttpOption(f, route, &known));
    if (!known) HERALD_RETURN_IF_ERROR(ParseFileOption(f, route, &known));
    if (!known) {
      return route->options.UnknownKey(
          f, std::string(kHttpKeys) + ", " + std::string(kFileKeys));
    }
  }
  return Status::OK();
}

Result<std::unique_ptr<Sender>> MakeHttp(const RouteConfig& route) {
#if HERALD_WITH_CURL
  return MakeHttpSender(route);
#else
  (void)route;
  return Status::InvalidArgument(
      "this herald was built without HTTP senders (HERALD_WITH_CURL=OFF)");
#endif
}

}  // namespace

void RegisterBuiltinSchemes() {
  SenderScheme http;
  http.validate_url = ValidateHttpUrl;
  http.validate_options = ValidateBuiltinOptions;
  http.make_sender = MakeHttp;
  RegisterBuiltinScheme("http", http);
  RegisterBuiltinScheme("https", http);

  SenderScheme file;
  file.validate_url = ValidateFileUrl;
  file.validate_options = ValidateBuiltinOptions;
  file.make_sender =
      [](const RouteConfig& route) -> Result<std::unique_ptr<Sender>> {
    return MakeFileSender(FilePathOfUrl(route.sender), route.sender_options);
  };
  RegisterBuiltinScheme("file", file);

  SenderScheme out;
  out.validate_url = ValidateStdoutUrl;
  out.validate_options = ValidateBuiltinOptions;
  out.make_sender =
      [](const RouteConfig& route) -> Result<std::unique_ptr<Sender>> {
    return MakeStdoutSender(route.sender_options);
  };
  RegisterBuiltinScheme("stdout", out);

  // herald: appends into herald's own store; the relay makes it (it
  // needs the store the relay keeps its state in).
  SenderScheme log;
  log.validate_url = [](std::string_view url) -> Status {
    if (url == "herald:") return Status::OK();
    return Status::InvalidArgument("'" + std::string(url) +
                                   "': herald: takes nothing after the colon");
  };
  log.make_sender =
      [](const RouteConfig& route) -> Result<std::unique_ptr<Sender>> {
    return Status::FailedPrecondition(
        "route '" + route.name +
        "': herald: is made by a relay on herald's store (herald relay, "
        "herald serve, or Relay::Start with a Store as its state)");
  };
  RegisterBuiltinScheme("herald", log);

#if HERALD_WITH_KAFKA
  SenderScheme kafka;
  kafka.validate_url = ValidateKafkaUrl;
  kafka.validate_options = ValidateKafkaRoute;
  kafka.make_sender = MakeKafkaSender;
  RegisterBuiltinScheme("kafka", kafka);
#endif
#if HERALD_WITH_NATS
  SenderScheme nats;
  nats.validate_url = ValidateNatsUrl;
  nats.validate_options = ValidateNatsOptions;
  nats.make_sender = MakeNatsSender;
  RegisterBuiltinScheme("nats", nats);
#endif
#if HERALD_WITH_RABBITMQ
  SenderScheme amqp;
  amqp.validate_url = ValidateAmqpUrl;
  amqp.validate_options = ValidateRabbitRoute;
  amqp.make_sender = MakeRabbitSender;
  RegisterBuiltinScheme("amqp", amqp);
  RegisterBuiltinScheme("amqps", amqp);
#endif
#if HERALD_WITH_AWS
  SenderScheme aws;
  aws.validate_url = ValidateAwsUrl;
  aws.validate_options = ValidateAwsRoute;
  aws.make_sender = MakeAwsSender;
  RegisterBuiltinScheme("sqs", aws);
  RegisterBuiltinScheme("sns", aws);
#endif
}

}  // namespace detail

void RegisterSenderScheme(const std::string& scheme, SenderFactory factory) {
  SenderScheme entry;
  entry.validate_options = detail::ValidateBuiltinOptions;
  entry.make_sender = std::move(factory);
  RegisterScheme(scheme, std::move(entry));
}

Result<std::unique_ptr<Sender>> MakeSender(const RouteConfig& route) {
  HERALD_RETURN_IF_ERROR(ValidateSenderUrl(route.sender));
  auto entry = FindScheme(SchemeOfUrl(route.sender));
  if (!entry || !entry->make_sender) {
    return Status::InvalidArgument(
        "sender scheme '" + SchemeOfUrl(route.sender) + "' makes no senders");
  }
  return entry->make_sender(route);
}

}  // namespace herald
