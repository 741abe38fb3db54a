// `lease_owner` with no holder is one value, null, in `herald relay status`
// and in GET /api/relays (#12.6).
#include <gtest/gtest.h>

#include <fstream>

#include "herald/json.h"
#include "herald/relay.h"
#include "herald/server.h"
#include "herald/store.h"
#include "support/test_util.h"

namespace herald {
namespace {

using testing::HeraldBin;
using testing::RunCommand;
using testing::TempDir;

TEST(RelayStatusOutput, LeaseOwnerWithNoHolderIsNullInTheCliAndOverHttp) {
  TempDir dir;
  std::string db = dir.file("h.db");
  auto store = OpenStore(db);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  std::string config = dir.file("c.toml");
  std::ofstream(config)
      << "[store]\nurl = \"sqlite:" << db
      << "\"\n[[route]]\nname = \"r\"\nsender = \"stdout:\"\n";

  std::string out, err;
  ASSERT_EQ(RunCommand({HeraldBin(), "relay", "status", "--config", config},
                       &out, &err),
            0)
      << err;
  auto cli = Json::Parse(out.substr(0, out.find('\n')));
  ASSERT_TRUE(cli.ok()) << out;
  ASSERT_NE(cli->Find("lease_owner"), nullptr) << out;
  EXPECT_TRUE(cli->Find("lease_owner")->is_null()) << out;

  // The same route over HTTP, with its relay not holding the lease.
  Relay relay(store->get());
  RouteConfig route;
  route.name = "r";
  route.sender = "stdout:";
  ASSERT_TRUE(relay.AddRoute(route).ok());
  ServerOptions options;
  options.config.listen = "127.0.0.1:0";
  auto server = Server::Start(store->get(), options, &relay);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  std::string body;
  ASSERT_EQ(RunCommand({"curl", "-sS", "--max-time", "10",
                        "http://" + (*server)->address() + "/api/relays"},
                       &body, &err),
            0)
      << err;
  auto http = Json::Parse(body);
  ASSERT_TRUE(http.ok()) << body;
  const Json* routes = http->Find("routes");
  ASSERT_NE(routes, nullptr) << body;
  ASSERT_EQ(routes->items().size(), 1u) << body;
  const Json* owner = routes->items()[0].Find("lease_owner");
  ASSERT_NE(owner, nullptr) << body;
  EXPECT_TRUE(owner->is_null()) << body;
  (*server)->Stop();
}

}  // namespace
}  // namespace herald
