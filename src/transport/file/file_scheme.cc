// The file and stdout schemes: URL checks and route options.
#include "transport/file/file_scheme.h"

namespace herald::detail {

std::string FilePathOfUrl(std::string_view url) {
  std::string_view rest = url.substr(url.find(':') + 1);
  if (rest.substr(0, 2) == "//") rest = rest.substr(2);
  return std::string(rest);
}

Status ValidateFileUrl(std::string_view url) {
  if (FilePathOfUrl(url).empty()) {
    return Status::InvalidArgument("'" + std::string(url) +
                                   "' names no file (file:PATH)");
  }
  return Status::OK();
}

Status ValidateStdoutUrl(std::string_view url) {
  if (url.substr(url.find(':') + 1).empty()) return Status::OK();
  return Status::InvalidArgument("'" + std::string(url) +
                                 "': stdout: takes nothing after the colon");
}

Status ParseFileOption(const OptionField& f, RouteConfig* route, bool* known) {
  *known = f.key == "fsync";
  if (!*known) return Status::OK();
  return route->options.GetBool(f.key, f.value, &route->sender_options.fsync);
}

}  // namespace herald::detail
