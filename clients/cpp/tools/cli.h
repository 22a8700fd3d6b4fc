// What ess-check, ess-smoke and ess-bench share: argument parsing with the usage exit
// code, and the one line printed for a verdict.
#ifndef ESS_TOOLS_CLI_H_
#define ESS_TOOLS_CLI_H_

#include <chrono>
#include <functional>
#include <utility>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "ess/client.h"

namespace ess::cli {

// Exit codes of ess-check.
inline constexpr int kExitAllowed = 0;
inline constexpr int kExitDenied = 2;
inline constexpr int kExitUsage = 64;  // EX_USAGE

// "ALLOWED <decision_id>" or "DENIED <REASON> <message>" (REASON without DECISION_REASON_;
// CLIENT_FAIL_CLOSED, and the message led by the cause, when the check failed closed), on
// one line whatever the message holds.
std::string Line(const Verdict& verdict);

// The longest deadline in ms: a longer one is a typo, and a far longer one (1e300) is no
// duration at all.
inline constexpr double kMaxDeadlineMs = 3'600'000;
// The shortest: a shorter one is a typo too, and 5e-324 rounds to no deadline at all.
inline constexpr double kMinDeadlineMs = 0.001;

// A double > 0 in milliseconds as a duration.
std::chrono::microseconds Millis(double ms);

// Parses a plain decimal number (the one grammar of every client's programs, see
// tests/clients/smoke.py) that must be > 0 and finite (subnormal included); false otherwise.
bool ParsePositive(const std::string& text, double* value);

// Whether text is HOST:PORT (HOST [A-Za-z0-9._-]+ or [v6] of [0-9A-Fa-f:.], at most 253
// characters; PORT 1-65535) or unix:PATH (PATH 1-107 bytes, no control or line-separator
// characters, not led or ended by a space).
bool IsTarget(const std::string& text);

// Parses a deadline in ms: from kMinDeadlineMs to kMaxDeadlineMs; false otherwise.
bool ParseDeadlineMs(const std::string& text, std::chrono::microseconds* deadline);

// text in double quotes, quotes, backslashes, control and non-ASCII bytes escaped: a usage
// error's last line names its flag whatever the value holds.
std::string Quoted(const std::string& text);

// `--name value` / `--name=value` flags. -h / --help alone prints the usage and exits 0;
// beside other arguments, or an unknown, bad or missing flag, or a stray argument, prints
// the synopsis and the error on stderr and exits 64.
class Flags {
 public:
  Flags(std::string name, std::string synopsis, std::string about)
      : name_(std::move(name)), synopsis_(std::move(synopsis)), about_(std::move(about)) {}
  void String(const std::string& flag, std::string* value, const std::string& help);
  // A string that must not be empty or blank: an empty --coid would have the library make
  // one up that ess-check never prints.
  void NonBlank(const std::string& flag, std::string* value, const std::string& help);
  // A target (IsTarget), stored as gRPC is given it (HOST:PORT as dns:///HOST:PORT): a typo
  // must not look like an outage (a check that fails closed).
  void Target(const std::string& flag, std::string* value, const std::string& help);
  void Positive(const std::string& flag, double* value, const std::string& help);
  void DeadlineMs(const std::string& flag, std::chrono::microseconds* value,
                  const std::string& help);
  void Int(const std::string& flag, long* value, long min, const std::string& help);
  void Choice(const std::string& flag, std::string* value, std::vector<std::string> choices,
              const std::string& help);
  void Parse(int argc, char** argv, const std::vector<std::string>& required);
  [[noreturn]] void Usage(const std::string& error) const;
  // The usage error for options the library refused (Client threw): --token for
  // InvalidToken, else --target, the one other flag it reads that the flags do not check.
  [[noreturn]] void Refused(const std::invalid_argument& error) const;

 private:
  struct Flag {
    std::string help;
    std::function<std::string(const std::string&)> set;  // "" or the error
  };
  std::string name_, synopsis_, about_;
  std::map<std::string, Flag> flags_;
  std::vector<std::string> order_;
};

}  // namespace ess::cli

#endif  // ESS_TOOLS_CLI_H_
