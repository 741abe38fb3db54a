// OpenStore: picks a backend by URL.
#include "herald/store.h"
#include "store/sqlite/sqlite_store.h"
#ifdef HERALD_WITH_POSTGRES
#include "store/postgres/postgres_store.h"
#endif

namespace herald {

Result<std::unique_ptr<Store>> OpenStore(const std::string& url,
                                         const StoreOptions& options) {
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
#ifdef HERALD_WITH_POSTGRES
    return detail::OpenPostgresStore(url, options);
#else
    return Status::InvalidArgument(
        "this herald was built without PostgreSQL support "
        "(HERALD_WITH_POSTGRES=OFF)");
#endif
  }
  std::string path = url;
  if (url.starts_with("sqlite://")) {
    path = url.substr(9);
  } else if (url.starts_with("sqlite:")) {
    path = url.substr(7);
  } else if (url.find("://") != std::string::npos) {
    return Status::InvalidArgument("unsupported store URL '" + url +
                                   "' (use sqlite:PATH or postgresql://...)");
  }
  return detail::OpenSqliteStore(path, options);
}

}  // namespace herald
