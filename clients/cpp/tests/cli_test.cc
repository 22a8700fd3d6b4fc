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
  double qty = 0;
  flags.Target("target", &target, "HOST:PORT or unix:PATH");
  flags.NonBlank("coid", &coid, "client_order_id");
  flags.Positive("qty", &qty, "quantity (> 0)");
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
  EXPECT_EXIT(Parse({"--target", "h:1"}), testing::ExitedWithCode(ess::cli::kExitUsage),
              "required: --coid");
}

// Review 54a: a token the library refuses is a usage error naming --token, as in the Rust
// and Go programs; anything else it refuses names --target. Review 54e: a CRLF file's
// "tok\r" is "tok"; a CR inside is refused.
void Refuse(const std::string& token) {
  ess::cli::Flags flags("ess-check", "ess-check --target T --token T", "Ask a sidecar.");
  ess::Options options;
  options.token = token;
  try {
    ess::Client client("localhost:1", options);
  } catch (const std::invalid_argument& e) {
    flags.Refused(e);
  }
  std::exit(99);  // taken
}

TEST(Cli, ARefusedTokenIsAUsageErrorNamingToken) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(Refuse("t\rok"), testing::ExitedWithCode(ess::cli::kExitUsage),
              "argument --token: .*byte 1 .*0x0d");
  EXPECT_EXIT(Refuse("tok"), testing::ExitedWithCode(99), "");
  EXPECT_EXIT(Refuse(" tok\r\n"), testing::ExitedWithCode(99), "");
}

// One grammar in every client's programs (review 52a): strtod took "0x10" as 16 and " 1" as
// 1, and a mistyped target was a check that failed closed, like an outage.
TEST(Cli, NumbersAndTargetsHaveOneGrammar) {
  double value = 0;
  for (const std::string good : {"1", "1.5", ".5", "1e3", "+2", "100", "2.", "2.e3"}) {
    EXPECT_TRUE(ess::cli::ParsePositive(good, &value)) << good;
  }
  for (const std::string bad : {"1_0", "0x10", "1d", "0x1p4", " 1", "1 ", "", "1e", ".", "++1",
                                "inf", "nan", "1e400", "-1", "0"}) {
    EXPECT_FALSE(ess::cli::ParsePositive(bad, &value)) << bad;
  }
  for (const std::string good : {"127.0.0.1:50051", "localhost:1", "[::1]:50051",
                                 "unix:/tmp/x.sock", "unix:relative.sock"}) {
    EXPECT_TRUE(ess::cli::IsTarget(good)) << good;
  }
  for (const std::string bad : {"127.0.0.1:abc", "127.0.0.1:99999", "127.0.0.1:0", "unix:",
                                "unix: /x", "127.0.0.1", " 127.0.0.1:50051", "http://h:1",
                                "dns:///h:1", "h:1/x", "::1:50051", "[::1]", ""}) {
    EXPECT_FALSE(ess::cli::IsTarget(bad)) << bad;
  }
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(Parse({"--target", "h:1", "--coid", "o-1", "--qty", "0x10"}),
              testing::ExitedWithCode(ess::cli::kExitUsage), "argument --qty: ");
  EXPECT_EXIT(Parse({"--target", "127.0.0.1:99999", "--coid", "o-1", "--qty", "1"}),
              testing::ExitedWithCode(ess::cli::kExitUsage), "argument --target: ");
  EXPECT_EXIT(Parse({"--target", "[::1]:50051", "--coid", "o-1", "--qty", "+2"}),
              testing::ExitedWithCode(99), "");
}

// Review 52c: std::regex_match recursed per character (a 30,000-digit --qty or a 40,000-char
// host crashed); subnormal numbers are numbers; a deadline is at least a microsecond; the
// grammar narrowed to names or [v6] without zones, at most 253 characters, and unix paths
// sun_path holds, without control or line-separator characters.
TEST(Cli, LongValuesSubnormalsAndNarrowTargets) {
  double value = 0;
  EXPECT_FALSE(ess::cli::ParsePositive(std::string(100'000, '9'), &value));
  // Review 52d: a number's text is at most 64 characters (Go's ParseFloat misread longer).
  EXPECT_FALSE(ess::cli::ParsePositive("0." + std::string(100'000, '0') + "1e100001", &value));
  EXPECT_FALSE(ess::cli::ParsePositive("1" + std::string(803, '0') + "e-790", &value));
  EXPECT_TRUE(ess::cli::ParsePositive("1." + std::string(62, '0'), &value));
  EXPECT_FALSE(ess::cli::ParsePositive("1." + std::string(63, '0'), &value));
  for (const std::string subnormal : {"5e-324", "1e-310"}) {
    EXPECT_TRUE(ess::cli::ParsePositive(subnormal, &value)) << subnormal;
  }
  EXPECT_FALSE(ess::cli::ParsePositive("1e-400", &value));
  std::chrono::microseconds deadline{};
  for (const std::string bad : {"5e-324", "1e-7", "0.0009"}) {
    EXPECT_FALSE(ess::cli::ParseDeadlineMs(bad, &deadline)) << bad;
  }
  EXPECT_TRUE(ess::cli::ParseDeadlineMs("0.001", &deadline));
  EXPECT_EQ(deadline, std::chrono::microseconds(1));
  const std::string path107 = "unix:/tmp/" + std::string(102, 'x');
  for (const std::string good :
       {std::string("a.b-c.d:65535"), std::string("[::ffff:1.2.3.4]:1"), path107}) {
    EXPECT_TRUE(ess::cli::IsTarget(good)) << good;
  }
  std::string accents;
  for (int i = 0; i < 52; ++i) accents += "\u00e9";
  for (const std::string bad :
       {std::string(100'000, 'h') + ":1", std::string(254, 'h') + ":1", path107 + "x",
        "unix:/tmp/" + accents, std::string("h\u00e9llo:1"), std::string("[fe80::1%lo]:1"),
        std::string("[]:1"), std::string("h:000001"), std::string("h:70000/"),
        std::string("\u2028localhost:1"), std::string("unix:/tmp/a\nb"),
        std::string("unix:/tmp/a\u2028b"), std::string("unix:/tmp/a\u0085b")}) {
    EXPECT_FALSE(ess::cli::IsTarget(bad)) << bad.substr(0, 40);
  }
  // Review 52d: HOST a dotted quad, an RFC 1123 name or an IPv6 literal inet_pton reads;
  // PATH printable ASCII without URI syntax, and // only as ///abs.
  for (const std::string good :
       {"localhost:1", "a.b-c.d:65535", "[::1]:50051", "[::ffff:1.2.3.4]:1", "127.0.0.1:50051",
        "0.0.0.0:1", "localhost.:1", "unix:ess.sock", "unix:///abs", "unix:/tmp/a b",
        "my-host.example.com:1", "0x.example:1", "1.example:1"}) {
    EXPECT_TRUE(ess::cli::IsTarget(good)) << good;
  }
  EXPECT_TRUE(ess::cli::IsTarget(std::string(63, 'a') + ":1"));
  EXPECT_FALSE(ess::cli::IsTarget(std::string(64, 'a') + ":1"));
  for (const std::string bad :
       {"_:1", "-:1", "..:1", "a..b:1", "a-.b:1", "[1.2.3.4]:1", "[::1::]:1", "127.1:1",
        "2130706433:1", "256.1.1.1:1", "01.2.3.4:1", "1.2.3.4.:1", "unix:q?x.sock",
        "unix:a%2fb", "unix:a#b", "unix://host/x", "unix:////x", "unix://", "unix:/tmp/\u00e9",
        // Review 52e: a numeric last label (the URL standard's rule) unless a dotted quad.
        "0x7f000001:1", "0x7f.1:1", "0X7F.0.0.1:1", "1.2.3.0x4:1", "example.1:1", "a.0x:1",
        "a.1b:1", "localhost.1x:1", "1b:1"}) {
    EXPECT_FALSE(ess::cli::IsTarget(bad)) << bad;
  }
  EXPECT_EQ(ess::cli::Quoted("a\n\"\xe2\x80\xa8"), R"("a\x0a\"\xe2\x80\xa8")");
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Review 52d: a value that is not UTF-8 is a usage error naming its flag.
  EXPECT_EXIT(Parse({"--target", "h:1", "--coid", "o-\xff"}),
              testing::ExitedWithCode(ess::cli::kExitUsage), "argument --coid: not valid UTF-8");
  EXPECT_EXIT(Parse({"--target", "h:1", "--coid", "o-\xed\xa0\x80"}),
              testing::ExitedWithCode(ess::cli::kExitUsage), "argument --coid: not valid UTF-8");
  EXPECT_EXIT(Parse({"--target", std::string(100'000, 'h') + ":1", "--coid", "o-1"}),
              testing::ExitedWithCode(ess::cli::kExitUsage), "argument --target: ");
  EXPECT_EXIT(Parse({"--target", "h:1", "--coid", "o-1", "--qty", std::string(100'000, '1')}),
              testing::ExitedWithCode(ess::cli::kExitUsage), "argument --qty: ");
}

// Review 58e: an allowed answer's id with a newline printed a second line, "DENIED ...",
// under the ALLOWED one; Python's and TypeScript's printed one.
TEST(Cli, AnAllowedLineIsOneLineWhateverItsIdHolds) {
  ess::Verdict allowed;
  allowed.allowed = true;
  allowed.decision_id = "x\nDENIED SCOPE_TRIPPED  y ";
  EXPECT_EQ(ess::cli::Line(allowed), "ALLOWED x DENIED SCOPE_TRIPPED y");
  allowed.decision_id.clear();
  EXPECT_EQ(ess::cli::Line(allowed), "ALLOWED");
}

}  // namespace
}  // namespace ess_test
