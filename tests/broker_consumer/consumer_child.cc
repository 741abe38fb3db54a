// herald_test_broker_consumer CONFIG CONSUMER [--die-after-acks N]
//
// The broker consumer tests' consumer process: runs the [[consumer]] table
// CONSUMER of CONFIG with herald::Consumer in process (its source made by
// MakeConsumerSource, as `herald consume` makes it), its inbox the table's
// SQLite `inbox`, and a handler that inserts one row per call into the
// domain table (tests/support/consumer_e2e.h) in the inbox's transaction,
// until SIGTERM (exit 0; 1 when the consumer failed).
//
// --die-after-acks N: the source is wrapped so that the acknowledgement
// that reaches N acknowledged deliveries SIGKILLs the process before the
// broker hears of it; those deliveries' inbox transactions had committed.
// (support/dying_source.h: a wrapper that fails on cue, so the crash lands
// in that window every time.)
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "herald/config.h"
#include "herald/consumer.h"
#include "herald/consumer_source.h"
#include "herald/store.h"
#include "support/consumer_e2e.h"
#include "support/dying_source.h"

namespace {

using herald::ConsumerSource;
using herald::Status;

int Fail(const std::string& what, const Status& s) {
  std::fprintf(stderr, "consumer_child: %s: %s\n", what.c_str(),
               s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && !(argc == 5 && std::string(argv[3]) == "--die-after-acks")) {
    std::fprintf(stderr, "usage: %s CONFIG CONSUMER [--die-after-acks N]\n",
                 argv[0]);
    return 2;
  }
  int die_after = argc == 5 ? std::atoi(argv[4]) : 0;
  // SIGTERM is waited for below (blocked before any thread starts).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto config = herald::LoadConfig(argv[1]);
  if (!config.ok()) return Fail("config", config.status());
  const herald::ConsumerConfig* c = config->FindConsumer(argv[2]);
  if (!c) return Fail("config", Status::NotFound(argv[2]));
  auto store = herald::OpenStore(c->inbox);
  if (!store.ok()) return Fail("inbox", store.status());
  Status s = herald::testing::CreateDomainTable(store->get());
  if (!s.ok()) return Fail("domain table", s);

  herald::ConsumerOptions o;
  o.name = c->name;
  o.inbox = store->get();
  o.types = c->types;
  o.max_in_flight = c->max_in_flight;
  o.max_in_hand = std::max(256, c->max_in_flight * 64);
  o.retry = c->retry;
  o.on_failure = c->on_failure;
  o.inbox_retention = c->inbox_retention;
  herald::ConsumerSourceOptions so;
  so.consumer = c->name;
  so.url = c->source;
  so.options = c->options;
  so.types = c->types;
  so.max_in_hand = o.max_in_hand;
  so.state = store->get();
  so.on_log = [](const std::string& line) {
    std::fprintf(stderr, "source: %s\n", line.c_str());
  };
  auto source = herald::MakeConsumerSource(so);
  if (!source.ok()) return Fail("source", source.status());
  std::unique_ptr<ConsumerSource> src = std::move(*source);
  if (die_after > 0) {
    src =
        std::make_unique<herald::testing::DieAtAck>(std::move(src), die_after);
  }
  herald::Consumer consumer(o, std::move(src));
  consumer.SetHandler([](const herald::Event& e, herald::Transaction* tx) {
    return herald::testing::InsertDomainRow(tx, e);
  });
  s = consumer.Start();
  if (!s.ok()) return Fail("start", s);
  int sig = 0;
  sigwait(&set, &sig);
  consumer.Stop();
  if (consumer.failed()) return Fail("consumer", consumer.error());
  auto st = consumer.stats();
  std::fprintf(stderr,
               "consumer_child: handled %llu, duplicates %llu, parked %llu\n",
               static_cast<unsigned long long>(st.handled),
               static_cast<unsigned long long>(st.duplicates),
               static_cast<unsigned long long>(st.parked));
  return 0;
}
