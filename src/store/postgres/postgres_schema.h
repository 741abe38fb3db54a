// The PostgreSQL schema's versions and migrations (internal).
#pragma once

namespace herald::detail {

// The schema version this binary writes to PostgreSQL databases.
inline constexpr int kPostgresSchemaVersion = 7;

// The SQL that migrates a database from version to_version-1 to to_version
// (1..kPostgresSchemaVersion), or nullptr.
const char* PostgresMigration(int to_version);

}  // namespace herald::detail
