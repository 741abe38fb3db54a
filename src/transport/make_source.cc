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
#include "transport/aws/sqs_source.h"
#endif
#if HERALD_WITH_KAFKA
#include "transport/kafka/kafka_source.h"
#endif
#if HERALD_WITH_NATS
#include "transport/nats/nats_source.h"
#endif
#if HERALD_WITH_RABBITMQ
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
  RegisterBuiltinSourceScheme("sqs", SqsSourceScheme());
#endif
#if HERALD_WITH_KAFKA
  RegisterBuiltinSourceScheme("kafka", KafkaSourceScheme());
#endif
#if HERALD_WITH_NATS
  RegisterBuiltinSourceScheme("nats", NatsSourceScheme());
#endif
#if HERALD_WITH_RABBITMQ
  SourceScheme amqp = RabbitSourceScheme();
  RegisterBuiltinSourceScheme("amqp", amqp);
  RegisterBuiltinSourceScheme("amqps", amqp);
#endif
}

}  // namespace detail
}  // namespace herald
