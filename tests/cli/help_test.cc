// `herald COMMAND --help` (and -h): the command's usage on stdout, exit
// status 0, and nothing run (no store created, no server started).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "support/test_util.h"

namespace herald {
namespace {

using testing::HeraldBin;
using testing::RunCommand;
using testing::TempDir;

// Every command of the binary (src/cli/cli.cc's table).
const char* const kCommands[] = {"append", "read",  "migrate", "relay",
                                 "parked", "serve", "pull"};

class Help : public ::testing::TestWithParam<const char*> {};

TEST_P(Help, LongAndShortFlagPrintUsageAndExitZero) {
  const std::string command = GetParam();
  for (const char* flag : {"--help", "-h"}) {
    SCOPED_TRACE(flag);
    std::string out, err;
    ASSERT_EQ(RunCommand({HeraldBin(), command, flag}, &out, &err), 0) << err;
    EXPECT_TRUE(err.empty()) << err;
    EXPECT_EQ(out.rfind("herald " + command + " - ", 0), 0u) << out;
    EXPECT_NE(out.find("usage:\n  herald " + command), std::string::npos)
        << out;
    EXPECT_NE(out.find("Exit status: 0 ok"), std::string::npos) << out;
    // Only this command's usage, not the whole list.
    for (const char* other : kCommands) {
      if (command == other) continue;
      EXPECT_EQ(out.find(std::string("  herald ") + other + " "),
                std::string::npos)
          << other << " in:\n"
          << out;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Commands, Help, ::testing::ValuesIn(kCommands),
                         [](const auto& info) { return info.param; });

TEST(HelpFlag, WinsOverOtherFlagsAndRunsNothing) {
  TempDir dir;
  std::string db = dir.file("never.db");
  std::string out, err;
  ASSERT_EQ(RunCommand({HeraldBin(), "read", "--db", db, "--help"}, &out, &err),
            0)
      << err;
  EXPECT_NE(out.find("herald read --db PATH"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(db)) << "read ran";
  // A subcommand's --help is its command's usage.
  ASSERT_EQ(RunCommand({HeraldBin(), "relay", "status", "-h"}, &out, &err), 0)
      << err;
  EXPECT_NE(out.find("herald relay status --config PATH"), std::string::npos)
      << out;
}

TEST(HelpFlag, AfterDoubleDashIsAnArgument) {
  // After "--" a "--help" is a positional argument (here: a payload that is
  // not JSON, so bad input), not a request for help.
  TempDir dir;
  std::string out, err;
  EXPECT_EQ(RunCommand({HeraldBin(), "append", "--db", dir.file("h.db"),
                        "--type", "t", "--stream", "s", "--", "--help"},
                       &out, &err),
            2)
      << out;
  EXPECT_EQ(out.find("usage:"), std::string::npos) << out;
}

TEST(HelpFlag, UnknownOptionsStillFail) {
  std::string out, err;
  EXPECT_EQ(RunCommand({HeraldBin(), "read", "--helpme"}, &out, &err), 2);
  EXPECT_NE(err.find("unknown option '--helpme'"), std::string::npos) << err;
}

}  // namespace
}  // namespace herald
