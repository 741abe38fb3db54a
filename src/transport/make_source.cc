// The built-in consumer-source schemes (herald/consumer_source.h), each
// registered like any other: "http"/"https" (a herald server's
// GET /api/events, herald::consumer) and the brokers built (amqp/amqps:
// a RabbitMQ queue; nats: a JetStream durable pull consumer; kafka: a
// consumer group or assigned partitions; sqs: a queue).
#include <string>
#include <utility>

#include "herald/consumer_source.h"
#include "transport/http/http_scheme.h"
#if HERALD_WITH_CONSUMER
#include "consumer/http_source.h"
#endif
#if HERALD_WITH_AWS
#include "transport/aws/aws_scheme.h"
#include "transport/aws/sqs_source.h"
#endif
#if HERALD_WITH_KAFKA
#include "transport/kafka/kafka_scheme.h"
#include "transport/kafka/kafka_source.h"
#endif
#if HERALD_WITH_NATS
#include "transport/nats/nats_sender.h"
#include "transport/nats/nats_source.h"
#endif
#if HERALD_WITH_RABBITMQ
#include "transport/rabbitmq/rabbitmq_scheme.h"
#include "transport/rabbitmq/rabbitmq_source.h"
#endif

namespace herald {
namespace detail {

void RegisterBuiltinSourceScheme(const std::string& scheme, SourceScheme entry);

namespace {

[[maybe_unused]] SourceScheme Scheme(
    decltype(SourceScheme::validate_url) validate_url,
    decltype(SourceScheme::validate_options) validate_options,
    decltype(SourceScheme::make_source) make_source) {
  SourceScheme s;
  s.validate_url = std::move(validate_url);
  s.validate_options = std::move(validate_options);
  s.make_source = std::move(make_source);
  return s;
}

}  // namespace

void RegisterBuiltinSourceSchemes() {
#if HERALD_WITH_CONSUMER
  SourceScheme http =
      Scheme(ValidateHttpUrl, ValidateHttpSourceOptions, MakeHttpSource);
  RegisterBuiltinSourceScheme("http", http);
  RegisterBuiltinSourceScheme("https", http);
#endif
#if HERALD_WITH_AWS
  auto sqs_url = [](std::string_view url) -> Status {
    if (SchemeOfUrl(url) != "sqs") {
      return Status::InvalidArgument("a consumer source takes sqs:QUEUE_URL");
    }
    return ValidateAwsUrl(url);
  };
  RegisterBuiltinSourceScheme(
      "sqs", Scheme(sqs_url, ValidateSqsSource, MakeSqsSource));
#endif
#if HERALD_WITH_KAFKA
  RegisterBuiltinSourceScheme(
      "kafka", Scheme(ValidateKafkaUrl, ValidateKafkaSource, MakeKafkaSource));
#endif
#if HERALD_WITH_NATS
  RegisterBuiltinSourceScheme(
      "nats", Scheme(ValidateNatsUrl, ValidateNatsSource, MakeNatsSource));
#endif
#if HERALD_WITH_RABBITMQ
  SourceScheme amqp =
      Scheme(ValidateAmqpUrl, ValidateRabbitSource, MakeRabbitSource);
  RegisterBuiltinSourceScheme("amqp", amqp);
  RegisterBuiltinSourceScheme("amqps", amqp);
#endif
}

}  // namespace detail
}  // namespace herald
