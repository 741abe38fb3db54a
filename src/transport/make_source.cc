// The built-in consumer-source schemes (herald/consumer_source.h), each
// registered like any other: "http"/"https" (a herald server's
// GET /api/events, herald::consumer) and the brokers built (amqp/amqps:
// a RabbitMQ queue; nats: a JetStream durable pull consumer; kafka: a
// consumer group or assigned partitions; sqs: a queue).
#include <string>

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

void RegisterBuiltinSourceSchemes() {
#if HERALD_WITH_CONSUMER
  SourceScheme http;
  http.validate_url = ValidateHttpUrl;
  http.validate_options = ValidateHttpSourceOptions;
  http.make_source = MakeHttpSource;
  RegisterBuiltinSourceScheme("http", http);
  RegisterBuiltinSourceScheme("https", http);
#endif
#if HERALD_WITH_AWS
  SourceScheme sqs;
  sqs.validate_url = [](std::string_view url) -> Status {
    if (SchemeOfUrl(url) != "sqs") {
      return Status::InvalidArgument("a consumer source takes sqs:QUEUE_URL");
    }
    return ValidateAwsUrl(url);
  };
  sqs.validate_options = ValidateSqsSource;
  sqs.make_source = MakeSqsSource;
  RegisterBuiltinSourceScheme("sqs", sqs);
#endif
#if HERALD_WITH_KAFKA
  SourceScheme kafka;
  kafka.validate_url = ValidateKafkaUrl;
  kafka.validate_options = ValidateKafkaSource;
  kafka.make_source = MakeKafkaSource;
  RegisterBuiltinSourceScheme("kafka", kafka);
#endif
#if HERALD_WITH_NATS
  SourceScheme nats;
  nats.validate_url = ValidateNatsUrl;
  nats.validate_options = ValidateNatsSource;
  nats.make_source = MakeNatsSource;
  RegisterBuiltinSourceScheme("nats", nats);
#endif
#if HERALD_WITH_RABBITMQ
  SourceScheme amqp;
  amqp.validate_url = ValidateAmqpUrl;
  amqp.validate_options = ValidateRabbitSource;
  amqp.make_source = MakeRabbitSource;
  RegisterBuiltinSourceScheme("amqp", amqp);
  RegisterBuiltinSourceScheme("amqps", amqp);
#endif
}

}  // namespace detail
}  // namespace herald
