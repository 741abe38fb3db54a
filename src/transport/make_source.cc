// The built-in consumer-source schemes (herald/consumer_source.h), each
// registered like any other: "http"/"https" (a herald server's
// GET /api/events, herald::consumer) and the brokers built.
#include <string>

#include "herald/consumer_source.h"

namespace herald {
namespace detail {

void RegisterBuiltinSourceScheme(const std::string& scheme, SourceScheme entry);

void RegisterBuiltinSourceSchemes() {}

}  // namespace detail
}  // namespace herald
