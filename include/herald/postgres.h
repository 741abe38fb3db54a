// PostgreSQL specifics of the public API: reaching the connection of a herald
// transaction, to make the domain change in the same transaction.
//
// To append inside a transaction the application already opened on its own
// connection, pass that PGconn* to Store::Join:
//
//   PQexec(conn, "BEGIN");
//   PQexec(conn, "UPDATE orders SET ...");
//   auto tx = store->Join(conn);
//   store->Append(*tx, events);
//   tx->Commit();  // commits the application's transaction
#pragma once

#include "herald/store.h"

struct pg_conn;
typedef struct pg_conn PGconn;  // as libpq-fe.h declares it

namespace herald {

// The PGconn* of a transaction made by a PostgreSQL store (Begin or Join).
inline PGconn* PostgresHandle(Transaction& tx) {
  return static_cast<PGconn*>(tx.native_handle());
}

}  // namespace herald
