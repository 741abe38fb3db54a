// order_service DB_PATH: places a few orders, cancels some, shows failed
// cancels, and prints what happened: the events appended (in the same
// transaction as the orders rows) and the handlers that ran after commit.
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "herald/dispatcher.h"
#include "herald/store.h"
#include "orders.h"

namespace {

std::mutex print_mu;

void Print(const std::string& line) {
  std::lock_guard<std::mutex> lock(print_mu);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

int Fail(const std::string& what, const herald::Status& s) {
  std::fprintf(stderr, "order_service: %s: %s\n", what.c_str(),
               s.ToString().c_str());
  return s.IsInvalidArgument() ||
                 s.code() == herald::Status::Code::kCorruption ||
                 s.code() == herald::Status::Code::kFailedPrecondition
             ? 2
             : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || std::string(argv[1]) == "--help") {
    std::fprintf(stderr,
                 "usage: order_service DB_PATH\n"
                 "  Runs the order service example on the SQLite file DB_PATH\n"
                 "  (created if missing): places orders, cancels some, and\n"
                 "  prints the events appended and the handlers run.\n");
    return argc == 2 ? 0 : 2;
  }
  const std::string path = argv[1];

  // herald's schema first (OpenStore creates or migrates it), then the
  // domain tables in the same file.
  auto store = herald::OpenStore(path);
  if (!store.ok()) return Fail("cannot open " + path, store.status());
  herald::Status s = orders::CreateSchema(**store);
  if (!s.ok()) return Fail("cannot create the orders tables", s);

  herald::DispatcherOptions options;
  options.on_error = [](const herald::HandlerError& e) {
    Print("  handler '" + e.handler + "' failed on " + e.event_type + ": " +
          e.status.ToString());
  };
  herald::Dispatcher dispatcher(store->get(), options);

  // Every committed event, printed as it is handed to after-commit handlers.
  dispatcher.Subscribe(
      "*", herald::Phase::kAfterCommit,
      [](const herald::Event& e) {
        Print("  appended #" + std::to_string(e.position) + " " + e.type +
              " stream=" + e.stream + " payload=" + e.payload);
      },
      "printer");
  orders::Refunds refunds(&dispatcher,
                          [](const std::string& line) { Print("  " + line); });
  orders::OrderService service(store->get(), &dispatcher);

  auto head = [&]() -> int64_t {
    auto h = (*store)->Head();
    return h.ok() ? *h : -1;
  };

  struct Placed {
    const char* customer;
    int64_t cents;
  };
  std::vector<int64_t> ids;
  for (Placed p :
       {Placed{"alice", 2500}, Placed{"bob", 1250}, Placed{"carol", 9900}}) {
    Print("place order for " + std::string(p.customer) + " (" +
          orders::FormatAmount(p.cents) + ")");
    auto id = service.PlaceOrder(p.customer, p.cents);
    if (!id.ok()) return Fail("place order", id.status());
    ids.push_back(*id);
  }

  auto cancel = [&](int64_t id, const char* reason,
                    orders::CancelOptions opts = {}) -> herald::Status {
    int64_t before = head();
    herald::Status r = service.CancelOrder(id, reason, opts);
    // The refund runs on the pool after commit; wait for it so the output
    // reads in order.
    dispatcher.WaitIdle(std::chrono::seconds(10));
    if (r.ok()) {
      auto status = service.OrderStatus(id);
      Print("  -> committed: order " + std::to_string(id) + " is now " +
            (status.ok() ? *status : status.status().ToString()));
    } else {
      auto status = service.OrderStatus(id);
      Print("  -> failed (" + r.ToString() + "); nothing stored: order " +
            (status.ok() ? "is still " + *status : std::string("absent")) +
            ", events " + std::to_string(before) + " -> " +
            std::to_string(head()));
    }
    return r;
  };

  Print("cancel order " + std::to_string(ids[1]) + " (customer changed mind)");
  if (!cancel(ids[1], "changed mind").ok()) return 1;

  Print("cancel order " + std::to_string(ids[1]) + " again");
  if (cancel(ids[1], "twice").ok()) return 1;

  Print("cancel order 999999 (does not exist)");
  if (cancel(999999, "no such order").ok()) return 1;

  Print("cancel order " + std::to_string(ids[2]) +
        " with a failure forced after the update and the raise");
  if (cancel(ids[2], "forced", {.fail_before_commit = true}).ok()) return 1;

  dispatcher.Stop();
  auto refunds_of = [&](int64_t id) {
    auto n = orders::Refunds::CountRefunds(**store, id);
    return n.ok() ? std::to_string(*n) : n.status().ToString();
  };
  Print("the store now holds " + std::to_string(head()) +
        " events; refunds recorded: order " + std::to_string(ids[1]) + ": " +
        refunds_of(ids[1]) + ", order " + std::to_string(ids[2]) + ": " +
        refunds_of(ids[2]));
  Print("see them with: herald read --db " + path);
  return 0;
}
