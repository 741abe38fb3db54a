// The order service: aggregate, repository, application service and the
// refund handler (see orders.h).
#include "orders.h"

#include <sqlite3.h>

#include <memory>
#include <utility>

#include "herald/json.h"
#include "herald/sqlite.h"

namespace orders {

namespace {

using herald::Result;
using herald::Status;

struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

Status SqlError(sqlite3* db, std::string_view what) {
  return Status::Internal(std::string(what) + ": " + sqlite3_errmsg(db));
}

Result<Stmt> Prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) {
    return SqlError(db, "prepare");
  }
  return Stmt(raw);
}

// The connection of the thread's current unit of work: domain code reaches
// the transaction this way instead of having it passed down.
sqlite3* CurrentDb() {
  herald::UnitOfWork* unit = herald::UnitOfWork::Current();
  return unit ? herald::SqliteHandle(unit->transaction()) : nullptr;
}

// ---- The Order aggregate ----------------------------------------------------

class Order {
 public:
  Order(int64_t id, std::string customer, int64_t amount_cents,
        std::string status)
      : id_(id),
        customer_(std::move(customer)),
        amount_cents_(amount_cents),
        status_(std::move(status)) {}

  // The domain rule, and the event that records it.
  Status Cancel(const std::string& reason) {
    if (status_ == "canceled") {
      return Status::FailedPrecondition("order " + std::to_string(id_) +
                                        " is already canceled");
    }
    status_ = "canceled";
    return herald::Raise(OrderCanceled{id_, reason, amount_cents_});
  }

  int64_t id() const { return id_; }
  const std::string& status() const { return status_; }

 private:
  int64_t id_;
  std::string customer_;
  int64_t amount_cents_;
  std::string status_;
};

// ---- The repository: rows in the current unit of work's transaction --------

class OrderRepository {
 public:
  OrderRepository() : db_(CurrentDb()) {}

  Result<int64_t> Add(const std::string& customer, int64_t amount_cents) {
    if (db_ == nullptr) return NoUnit();
    auto s = Prepare(db_,
                     "INSERT INTO orders (customer, amount_cents, status) "
                     "VALUES (?1, ?2, 'placed')");
    if (!s.ok()) return s.status();
    sqlite3_bind_text(s->get(), 1, customer.data(),
                      static_cast<int>(customer.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(s->get(), 2, amount_cents);
    if (sqlite3_step(s->get()) != SQLITE_DONE) {
      return SqlError(db_, "insert order");
    }
    return static_cast<int64_t>(sqlite3_last_insert_rowid(db_));
  }

  Result<Order> Find(int64_t id) {
    if (db_ == nullptr) return NoUnit();
    auto s = Prepare(db_,
                     "SELECT customer, amount_cents, status FROM orders "
                     "WHERE id = ?1");
    if (!s.ok()) return s.status();
    sqlite3_bind_int64(s->get(), 1, id);
    int rc = sqlite3_step(s->get());
    if (rc == SQLITE_DONE) {
      return Status::NotFound("order " + std::to_string(id) +
                              " does not exist");
    }
    if (rc != SQLITE_ROW) return SqlError(db_, "find order");
    return Order(id, Text(s->get(), 0), sqlite3_column_int64(s->get(), 1),
                 Text(s->get(), 2));
  }

  Status Save(const Order& order) {
    if (db_ == nullptr) return NoUnit();
    auto s = Prepare(db_, "UPDATE orders SET status = ?1 WHERE id = ?2");
    if (!s.ok()) return s.status();
    sqlite3_bind_text(s->get(), 1, order.status().data(),
                      static_cast<int>(order.status().size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(s->get(), 2, order.id());
    if (sqlite3_step(s->get()) != SQLITE_DONE) {
      return SqlError(db_, "update order");
    }
    return Status::OK();
  }

 private:
  static Status NoUnit() {
    return Status::FailedPrecondition("no unit of work on this thread");
  }
  static std::string Text(sqlite3_stmt* s, int col) {
    const unsigned char* t = sqlite3_column_text(s, col);
    return t ? reinterpret_cast<const char*>(t) : "";
  }

  sqlite3* db_;
};

// JSON field readers for FromJson.
Status Field(const herald::Json& doc, std::string_view name, int64_t* out) {
  const herald::Json* v = doc.Find(name);
  if (v == nullptr || !v->TryInt64(out)) {
    return Status::InvalidArgument("field '" + std::string(name) +
                                   "' must be an integer");
  }
  return Status::OK();
}

Status Field(const herald::Json& doc, std::string_view name, std::string* out) {
  const herald::Json* v = doc.Find(name);
  if (v == nullptr || !v->is_string()) {
    return Status::InvalidArgument("field '" + std::string(name) +
                                   "' must be a string");
  }
  *out = v->as_string();
  return Status::OK();
}

}  // namespace

std::string OrderStream(int64_t order_id) {
  return "order-" + std::to_string(order_id);
}

std::string FormatAmount(int64_t cents) {
  std::string frac = std::to_string(cents % 100);
  if (frac.size() < 2) frac.insert(0, "0");
  return std::to_string(cents / 100) + "." + frac;
}

Status CreateSchema(herald::Store& store) {
  auto tx = store.Begin();
  if (!tx.ok()) return tx.status();
  sqlite3* db = herald::SqliteHandle(**tx);
  const char* sql =
      "CREATE TABLE IF NOT EXISTS orders ("
      "  id INTEGER PRIMARY KEY,"
      "  customer TEXT NOT NULL,"
      "  amount_cents INTEGER NOT NULL,"
      "  status TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS refunds ("
      "  order_id INTEGER PRIMARY KEY REFERENCES orders(id),"
      "  amount_cents INTEGER NOT NULL);";
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return SqlError(db, "create the orders schema");
  }
  return (*tx)->Commit();
}

// ---- OrderService -----------------------------------------------------------

Result<int64_t> OrderService::PlaceOrder(const std::string& customer,
                                         int64_t amount_cents) {
  if (customer.empty()) return Status::InvalidArgument("customer is empty");
  if (amount_cents <= 0) {
    return Status::InvalidArgument("amount must be positive");
  }
  auto unit = dispatcher_->Begin();
  if (!unit.ok()) return unit.status();
  OrderRepository repo;
  auto id = repo.Add(customer, amount_cents);
  if (!id.ok()) return id.status();
  HERALD_RETURN_IF_ERROR(
      herald::Raise(OrderPlaced{*id, customer, amount_cents}));
  HERALD_RETURN_IF_ERROR((*unit)->Commit());
  return *id;
}

Status OrderService::CancelOrder(int64_t order_id, const std::string& reason,
                                 const CancelOptions& options) {
  // Everything below is one transaction; returning early without Commit()
  // rolls it back, the row update and the raised event alike.
  auto unit = dispatcher_->Begin();
  if (!unit.ok()) return unit.status();
  OrderRepository repo;
  auto order = repo.Find(order_id);
  if (!order.ok()) return order.status();
  HERALD_RETURN_IF_ERROR(order->Cancel(reason));
  HERALD_RETURN_IF_ERROR(repo.Save(*order));
  if (options.fail_before_commit) {
    return Status::Unavailable("forced failure before commit");
  }
  return (*unit)->Commit();
}

Result<std::string> OrderService::OrderStatus(int64_t order_id) {
  auto tx = store_->Begin();
  if (!tx.ok()) return tx.status();
  sqlite3* db = herald::SqliteHandle(**tx);
  auto s = Prepare(db, "SELECT status FROM orders WHERE id = ?1");
  if (!s.ok()) return s.status();
  sqlite3_bind_int64(s->get(), 1, order_id);
  if (sqlite3_step(s->get()) != SQLITE_ROW) {
    return Status::NotFound("order " + std::to_string(order_id) +
                            " does not exist");
  }
  return std::string(
      reinterpret_cast<const char*>(sqlite3_column_text(s->get(), 0)));
}

// ---- Refunds ----------------------------------------------------------------

Refunds::Refunds(herald::Dispatcher* dispatcher,
                 std::function<void(const std::string&)> log)
    : dispatcher_(dispatcher), log_(std::move(log)) {
  subscription_ = dispatcher_->Subscribe<OrderCanceled>(
      herald::Phase::kAfterCommitAsync,
      [this](const OrderCanceled& canceled, const herald::Event& event) {
        return Refund(canceled, event);
      },
      "refunds");
}

Refunds::~Refunds() { (void)dispatcher_->Unsubscribe(subscription_); }

Status Refunds::Refund(const OrderCanceled& canceled,
                       const herald::Event& event) {
  // After commit, on a pool thread: a new transaction of its own.
  auto unit = dispatcher_->Begin();
  if (!unit.ok()) return unit.status();
  sqlite3* db = herald::SqliteHandle((*unit)->transaction());
  auto s = Prepare(db,
                   "INSERT OR IGNORE INTO refunds (order_id, amount_cents) "
                   "VALUES (?1, ?2)");
  if (!s.ok()) return s.status();
  sqlite3_bind_int64(s->get(), 1, canceled.order_id);
  sqlite3_bind_int64(s->get(), 2, canceled.amount_cents);
  if (sqlite3_step(s->get()) != SQLITE_DONE) {
    return SqlError(db, "insert refund");
  }
  if (sqlite3_changes(db) == 0) return Status::OK();  // refunded before
  HERALD_RETURN_IF_ERROR(herald::Raise(
      RefundIssued{canceled.order_id, canceled.amount_cents},
      {.metadata = "{\"causation_id\":" + herald::JsonString(event.id) + "}"}));
  HERALD_RETURN_IF_ERROR((*unit)->Commit());
  if (log_) {
    log_("refund handler (after commit, pool thread): refunded " +
         FormatAmount(canceled.amount_cents) + " for order " +
         std::to_string(canceled.order_id) + " (caused by event at position " +
         std::to_string(event.position) + ")");
  }
  return Status::OK();
}

Result<int64_t> Refunds::CountRefunds(herald::Store& store, int64_t order_id) {
  auto tx = store.Begin();
  if (!tx.ok()) return tx.status();
  sqlite3* db = herald::SqliteHandle(**tx);
  auto s = Prepare(db, "SELECT count(*) FROM refunds WHERE order_id = ?1");
  if (!s.ok()) return s.status();
  sqlite3_bind_int64(s->get(), 1, order_id);
  if (sqlite3_step(s->get()) != SQLITE_ROW) return SqlError(db, "count");
  return static_cast<int64_t>(sqlite3_column_int64(s->get(), 0));
}

}  // namespace orders

// ---- JSON payloads
// ------------------------------------------------------------

using herald::Json;
using herald::Result;
using herald::Status;

std::string herald::EventTraits<orders::OrderPlaced>::ToJson(
    const orders::OrderPlaced& e) {
  std::string out = "{\"order_id\":" + std::to_string(e.order_id);
  out += ",\"customer\":";
  herald::AppendJsonString(e.customer, &out);
  out += ",\"amount_cents\":" + std::to_string(e.amount_cents) + "}";
  return out;
}

Result<orders::OrderPlaced> herald::EventTraits<orders::OrderPlaced>::FromJson(
    std::string_view json) {
  auto doc = Json::Parse(json);
  if (!doc.ok()) return doc.status();
  orders::OrderPlaced e;
  HERALD_RETURN_IF_ERROR(orders::Field(*doc, "order_id", &e.order_id));
  HERALD_RETURN_IF_ERROR(orders::Field(*doc, "customer", &e.customer));
  HERALD_RETURN_IF_ERROR(orders::Field(*doc, "amount_cents", &e.amount_cents));
  return e;
}

std::string herald::EventTraits<orders::OrderCanceled>::ToJson(
    const orders::OrderCanceled& e) {
  std::string out = "{\"order_id\":" + std::to_string(e.order_id);
  out += ",\"reason\":";
  herald::AppendJsonString(e.reason, &out);
  out += ",\"amount_cents\":" + std::to_string(e.amount_cents) + "}";
  return out;
}

Result<orders::OrderCanceled>
herald::EventTraits<orders::OrderCanceled>::FromJson(std::string_view json) {
  auto doc = Json::Parse(json);
  if (!doc.ok()) return doc.status();
  orders::OrderCanceled e;
  HERALD_RETURN_IF_ERROR(orders::Field(*doc, "order_id", &e.order_id));
  HERALD_RETURN_IF_ERROR(orders::Field(*doc, "reason", &e.reason));
  HERALD_RETURN_IF_ERROR(orders::Field(*doc, "amount_cents", &e.amount_cents));
  return e;
}

std::string herald::EventTraits<orders::RefundIssued>::ToJson(
    const orders::RefundIssued& e) {
  return "{\"order_id\":" + std::to_string(e.order_id) +
         ",\"amount_cents\":" + std::to_string(e.amount_cents) + "}";
}

Result<orders::RefundIssued>
herald::EventTraits<orders::RefundIssued>::FromJson(std::string_view json) {
  auto doc = Json::Parse(json);
  if (!doc.ok()) return doc.status();
  orders::RefundIssued e;
  HERALD_RETURN_IF_ERROR(orders::Field(*doc, "order_id", &e.order_id));
  HERALD_RETURN_IF_ERROR(orders::Field(*doc, "amount_cents", &e.amount_cents));
  return e;
}
