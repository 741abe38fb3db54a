// The http and https schemes: URL shape and route options (no libcurl
// needed), registered by builtin_schemes.cc.
#pragma once

#include <string_view>

#include "herald/sender.h"

namespace herald::detail {

// "http://HOST[:PORT]/..." / "https://...": a host, a port in 1..65535.
Status ValidateHttpUrl(std::string_view url);

// The HTTP keys of a route: connect_timeout, timeout, headers, mode,
// tls_verify, ca_file, into route->sender_options. Sets *known = false
// (and returns OK) for any other key.
inline constexpr std::string_view kHttpKeys =
    "connect_timeout, timeout, headers, mode, tls_verify, ca_file";
Status ParseHttpOption(const OptionField& f, RouteConfig* route, bool* known);

}  // namespace herald::detail
