// SQLite specifics of the public API: reaching the connection of a herald
// transaction, to make the domain change in the same transaction.
#pragma once

#include "herald/store.h"

struct sqlite3;

namespace herald {

// The sqlite3* of a transaction made by an SQLite store (Begin or Join).
inline sqlite3* SqliteHandle(Transaction& tx) {
  return static_cast<sqlite3*>(tx.native_handle());
}

}  // namespace herald
