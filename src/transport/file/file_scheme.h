// The file and stdout schemes: URL shape and route options, registered by
// builtin_schemes.cc.
#pragma once

#include <string>
#include <string_view>

#include "herald/sender.h"

namespace herald::detail {

// "file:PATH" or "file://PATH": a path.
Status ValidateFileUrl(std::string_view url);
// The PATH of a file: URL.
std::string FilePathOfUrl(std::string_view url);
// "stdout:": nothing after the colon.
Status ValidateStdoutUrl(std::string_view url);

// The file key of a route: fsync, into route->sender_options. Sets
// *known = false (and returns OK) for any other key.
inline constexpr std::string_view kFileKeys = "fsync";
Status ParseFileOption(const OptionField& f, RouteConfig* route, bool* known);

}  // namespace herald::detail
