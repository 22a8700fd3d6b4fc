// The programs' shared argument parsing (tools/cli.h), in death tests: Parse exits.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli.h"

namespace ess_test {
namespace {

// Parse on a flag set like ess-check's, with args after the program name.
void Parse(std::vector<std::string> args) {
  ess::cli::Flags flags("ess-check", "ess-check --target T --coid ID", "Ask a sidecar.");
  std::string target, coid;
  flags.NonBlank("target", &target, "HOST:PORT or unix:PATH");
  flags.NonBlank("coid", &coid, "client_order_id");
  args.insert(args.begin(), "ess-check");
  std::vector<char*> argv;
  for (auto& arg : args) {
    argv.push_back(arg.data());
  }
  flags.Parse(static_cast<int>(argv.size()), argv.data(), {"target", "coid"});
  std::exit(99);  // parsed without exiting: none of these tests' arguments
}

// Review: help exited 0, ess-check's "allowed", even beside an order's flags, so
// `ess-check ... --help && send` sent the order unchecked.
TEST(Cli, HelpExitsZeroOnlyAlone) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (const std::string help : {"-h", "--help"}) {
    EXPECT_EXIT(Parse({help}), testing::ExitedWithCode(0), "") << help;
    EXPECT_EXIT(Parse({help, help}), testing::ExitedWithCode(0), "") << help;
    const std::vector<std::vector<std::string>> beside = {
        {"--target", "unix:/tmp/ess.sock", "--coid", "o-1", help},
        {help, "--target", "unix:/tmp/ess.sock"},
        {"--coid=o-1", help}};
    for (const auto& args : beside) {
      EXPECT_EXIT(Parse(args), testing::ExitedWithCode(ess::cli::kExitUsage),
                  "--help given with other arguments")
          << help;
    }
  }
  EXPECT_EXIT(Parse({"--target", "t"}), testing::ExitedWithCode(ess::cli::kExitUsage),
              "required: --coid");
}

}  // namespace
}  // namespace ess_test
