// JSON-lines senders: to a file (fsync before acknowledging) and to stdout.
#pragma once

#include <memory>
#include <string>

#include "herald/sender.h"

namespace herald::detail {

// Appends one CloudEvents structured-mode JSON object per line to `path`
// (created if missing). Unavailable when the file cannot be opened.
Result<std::unique_ptr<Sender>> MakeFileSender(const std::string& path,
                                               const SenderOptions& options);
// Writes the same lines to the process's standard output.
std::unique_ptr<Sender> MakeStdoutSender(const SenderOptions& options);

}  // namespace herald::detail
