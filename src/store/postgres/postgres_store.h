// The PostgreSQL backend of Store (internal): libpq, a connection pool, a
// sequencer that gives committed events their positions. See
// docs/postgresql.md.
#pragma once

#include <memory>
#include <string>

#include "herald/store.h"
#include "store/postgres/postgres_schema.h"

namespace herald::detail {

// Opens the PostgreSQL database at `url` (postgresql://...), migrating it
// as options say, and starts the sequencer when options.run_sequencer.
// Errors: InvalidArgument (malformed URL), Unavailable (cannot connect:
// unreachable, authentication failed...), FailedPrecondition (schema newer
// than this binary, or no/old schema with migrate=false).
Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& url,
                                                 const StoreOptions& options);

// `url` with its password replaced by "***", for messages.
std::string RedactPostgresUrl(const std::string& url);

}  // namespace herald::detail
