// The SQLite backend of Store: one database file in WAL mode.
#pragma once

#include <memory>
#include <string>

#include "herald/store.h"

namespace herald::detail {

// The schema version this binary writes to SQLite databases.
inline constexpr int kSqliteSchemaVersion = 4;

// Opens (creating and migrating as options say) the SQLite database at path.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path,
                                               const StoreOptions& options);

}  // namespace herald::detail
