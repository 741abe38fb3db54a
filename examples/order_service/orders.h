// The order service from the DDD literature, on herald.
//
// An `orders` table lives in the same SQLite file as herald's tables.
// Placing or cancelling an order changes its row and raises a domain event
// (OrderPlaced, OrderCanceled) in one unit of work: the row and the event
// commit together or not at all. A refund handler, subscribed after commit
// on the dispatcher's thread pool, refunds each canceled order in a
// transaction of its own (a `refunds` row and a RefundIssued event).
//
// Uses herald's public headers only, plus sqlite3.h for the domain tables.
//
// Thread safety: OrderService and Refunds may be used from many threads;
// each call is one unit of work on the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "herald/dispatcher.h"
#include "herald/status.h"
#include "herald/store.h"

namespace orders {

// ---- Domain events ----------------------------------------------------------

struct OrderPlaced {
  int64_t order_id = 0;
  std::string customer;
  int64_t amount_cents = 0;
  bool operator==(const OrderPlaced&) const = default;
};

struct OrderCanceled {
  int64_t order_id = 0;
  std::string reason;
  int64_t amount_cents = 0;  // what the refund gives back
  bool operator==(const OrderCanceled&) const = default;
};

struct RefundIssued {
  int64_t order_id = 0;
  int64_t amount_cents = 0;
  bool operator==(const RefundIssued&) const = default;
};

// "order-42": every event of an order is in its stream.
std::string OrderStream(int64_t order_id);

// ---- The service ------------------------------------------------------------

// Creates the domain tables (orders, refunds) in the store's database if
// they are missing. Open the store first: it creates herald's own schema.
herald::Status CreateSchema(herald::Store& store);

struct CancelOptions {
  // Fails the cancel after the row update and the Raise, before Commit, as
  // a crash or a failing check would: nothing may persist.
  bool fail_before_commit = false;
};

class OrderService {
 public:
  // Both must outlive the service.
  OrderService(herald::Store* store, herald::Dispatcher* dispatcher)
      : store_(store), dispatcher_(dispatcher) {}

  // Inserts a 'placed' order and raises OrderPlaced. Returns the order id.
  // InvalidArgument for an empty customer or an amount <= 0.
  herald::Result<int64_t> PlaceOrder(const std::string& customer,
                                     int64_t amount_cents);

  // Marks the order 'canceled' and raises OrderCanceled, in one
  // transaction. NotFound (no such order), FailedPrecondition (already
  // canceled), Unavailable (the forced failure), or the store's
  // error; in every failure neither the update nor the event persists.
  herald::Status CancelOrder(int64_t order_id, const std::string& reason,
                             const CancelOptions& options = {});

  // The order's status ("placed", "canceled"), or NotFound.
  herald::Result<std::string> OrderStatus(int64_t order_id);

 private:
  herald::Store* const store_;
  herald::Dispatcher* const dispatcher_;
};

// The refund handler: for each committed OrderCanceled, on the dispatcher's
// pool after commit, inserts a `refunds` row and raises RefundIssued in a
// new unit of work. Idempotent per order. `log`, when set, is called on the
// pool thread with a line describing each refund. Destroy it after the
// dispatcher has stopped or gone idle: a refund already running uses it.
class Refunds {
 public:
  Refunds(herald::Dispatcher* dispatcher,
          std::function<void(const std::string&)> log = {});
  ~Refunds();  // unsubscribes
  Refunds(const Refunds&) = delete;
  Refunds& operator=(const Refunds&) = delete;

  // Refunds recorded for this order (0 or 1), or an error.
  static herald::Result<int64_t> CountRefunds(herald::Store& store,
                                              int64_t order_id);

 private:
  herald::Status Refund(const OrderCanceled& canceled,
                        const herald::Event& event);

  herald::Dispatcher* const dispatcher_;
  const std::function<void(const std::string&)> log_;
  herald::SubscriptionId subscription_;
};

// "12.50"
std::string FormatAmount(int64_t cents);

}  // namespace orders

// ---- JSON payloads
// ------------------------------------------------------------

template <>
struct herald::EventTraits<orders::OrderPlaced> {
  static constexpr std::string_view kType = "order.placed";
  static std::string ToJson(const orders::OrderPlaced& e);
  static herald::Result<orders::OrderPlaced> FromJson(std::string_view json);
  static std::string Stream(const orders::OrderPlaced& e) {
    return orders::OrderStream(e.order_id);
  }
};

template <>
struct herald::EventTraits<orders::OrderCanceled> {
  static constexpr std::string_view kType = "order.canceled";
  static std::string ToJson(const orders::OrderCanceled& e);
  static herald::Result<orders::OrderCanceled> FromJson(std::string_view json);
  static std::string Stream(const orders::OrderCanceled& e) {
    return orders::OrderStream(e.order_id);
  }
};

template <>
struct herald::EventTraits<orders::RefundIssued> {
  static constexpr std::string_view kType = "payment.refunded";
  static std::string ToJson(const orders::RefundIssued& e);
  static herald::Result<orders::RefundIssued> FromJson(std::string_view json);
  static std::string Stream(const orders::RefundIssued& e) {
    return orders::OrderStream(e.order_id);
  }
};
