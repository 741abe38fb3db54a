// MakeSender: the built-in sender schemes, then registered ones.
#include <string>

#include "herald/sender.h"
#include "transport/file/file_sender.h"
#if HERALD_WITH_CURL
#include "transport/http/http_sender.h"
#endif

namespace herald {
namespace detail {
SenderFactory FindSenderScheme(const std::string& scheme);
std::string SchemeOf(std::string_view url);
}  // namespace detail

Result<std::unique_ptr<Sender>> MakeSender(const RouteConfig& route) {
  HERALD_RETURN_IF_ERROR(ValidateSenderUrl(route.sender));
  std::string scheme = detail::SchemeOf(route.sender);
  std::string_view rest =
      std::string_view(route.sender).substr(scheme.size() + 1);
  if (scheme == "http" || scheme == "https") {
#if HERALD_WITH_CURL
    return detail::MakeHttpSender(route);
#else
    return Status::InvalidArgument(
        "this herald was built without HTTP senders (HERALD_WITH_CURL=OFF)");
#endif
  }
  if (scheme == "file") {
    if (rest.substr(0, 2) == "//") rest = rest.substr(2);
    return detail::MakeFileSender(std::string(rest), route.sender_options);
  }
  if (scheme == "stdout") return detail::MakeStdoutSender(route.sender_options);
  if (auto f = detail::FindSenderScheme(scheme)) return f(route);
  return Status::InvalidArgument("unknown sender scheme '" + scheme + "'");
}

}  // namespace herald
