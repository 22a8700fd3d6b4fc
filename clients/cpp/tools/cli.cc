#include "cli.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <set>
#include <sstream>
#include <string_view>

namespace ess::cli {

std::string Line(const Verdict& verdict) {
  if (verdict.allowed) {
    return "ALLOWED " + verdict.decision_id;
  }
  std::string message = verdict.message;
  if (verdict.failed_closed()) {
    message = std::string(CauseName(verdict.cause)) + ": " + message;
  }
  std::istringstream words(message);
  std::string line = "DENIED " + verdict.reason_name();
  for (std::string word; words >> word;) {
    line += " " + word;
  }
  return line;
}

std::chrono::microseconds Millis(double ms) {
  return std::chrono::microseconds(std::max<long long>(1, std::llround(ms * 1000.0)));
}

namespace {

// strtod alone takes "0x10" as 16, " 1" and "inf": numbers the operator did not write.
const std::regex& PlainDecimal() {
  static const std::regex kPlainDecimal(
      R"([+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?)");
  return kPlainDecimal;
}

const std::regex& HostPort() {
  static const std::regex kHostPort(
      R"((\[[^ \t\n\x0B\f\r/\[\]]+\]|[^ \t\n\x0B\f\r/:\[\]]+):([0-9]{1,5}))");
  return kHostPort;
}

bool IsSpace(char c) {
  return std::string_view(" \t\n\v\f\r").find(c) != std::string_view::npos;
}

}  // namespace

bool IsTarget(const std::string& text) {
  if (text.rfind("unix:", 0) == 0) {
    const std::string path = text.substr(5);
    return !path.empty() && !IsSpace(path.front()) && !IsSpace(path.back());
  }
  std::smatch host_port;
  if (!std::regex_match(text, host_port, HostPort())) {
    return false;
  }
  const long port = std::stol(host_port[2].str());
  return port >= 1 && port <= 65535;
}

bool ParsePositive(const std::string& text, double* value) {
  if (!std::regex_match(text, PlainDecimal())) {
    return false;
  }
  char* end = nullptr;
  errno = 0;
  const double parsed = std::strtod(text.c_str(), &end);
  if (errno != 0 || end == text.c_str() || *end != '\0' || !std::isfinite(parsed) ||
      !(parsed > 0)) {
    return false;
  }
  *value = parsed;
  return true;
}

bool ParseDeadlineMs(const std::string& text, std::chrono::microseconds* deadline) {
  double ms = 0;
  if (!ParsePositive(text, &ms) || ms > kMaxDeadlineMs) {
    return false;
  }
  *deadline = Millis(ms);
  return true;
}

void Flags::String(const std::string& flag, std::string* value, const std::string& help) {
  flags_[flag] = {help, [value](const std::string& text) {
                    *value = text;
                    return std::string();
                  }};
  order_.push_back(flag);
}

void Flags::NonBlank(const std::string& flag, std::string* value, const std::string& help) {
  flags_[flag] = {help, [value](const std::string& text) {
                    if (text.find_first_not_of(" \t\n\r\f\v") == std::string::npos) {
                      return std::string("must not be empty");
                    }
                    *value = text;
                    return std::string();
                  }};
  order_.push_back(flag);
}

void Flags::Target(const std::string& flag, std::string* value, const std::string& help) {
  flags_[flag] = {help, [value](const std::string& text) {
                    if (!IsTarget(text)) {
                      return "expected HOST:PORT or unix:PATH, got '" + text + "'";
                    }
                    *value = text;
                    return std::string();
                  }};
  order_.push_back(flag);
}

void Flags::DeadlineMs(const std::string& flag, std::chrono::microseconds* value,
                       const std::string& help) {
  flags_[flag] = {help, [value](const std::string& text) {
                    return ParseDeadlineMs(text, value)
                               ? std::string()
                               : "must be a plain decimal number > 0 and at most " +
                                     std::to_string(static_cast<long>(kMaxDeadlineMs)) +
                                     ", got " + text;
                  }};
  order_.push_back(flag);
}

void Flags::Positive(const std::string& flag, double* value, const std::string& help) {
  flags_[flag] = {help, [value](const std::string& text) {
                    return ParsePositive(text, value)
                               ? std::string()
                               : "must be a plain decimal number > 0, got " + text;
                  }};
  order_.push_back(flag);
}

void Flags::Int(const std::string& flag, long* value, long min, const std::string& help) {
  flags_[flag] = {help, [value, min](const std::string& text) {
                    char* end = nullptr;
                    errno = 0;
                    const long parsed = std::strtol(text.c_str(), &end, 10);
                    if (text.empty() || errno != 0 || *end != '\0' || parsed < min) {
                      return "must be an integer >= " + std::to_string(min) + ", got " + text;
                    }
                    *value = parsed;
                    return std::string();
                  }};
  order_.push_back(flag);
}

void Flags::Choice(const std::string& flag, std::string* value,
                   std::vector<std::string> choices, const std::string& help) {
  flags_[flag] = {help, [value, choices](const std::string& text) {
                    for (const auto& choice : choices) {
                      if (text == choice) {
                        *value = text;
                        return std::string();
                      }
                    }
                    std::string list;
                    for (const auto& choice : choices) {
                      list += (list.empty() ? "'" : ", '") + choice + "'";
                    }
                    return "invalid choice: '" + text + "' (choose from " + list + ")";
                  }};
  order_.push_back(flag);
}

namespace {

bool IsHelp(const std::string& arg) { return arg == "-h" || arg == "--help"; }

}  // namespace

void Flags::Parse(int argc, char** argv, const std::vector<std::string>& required) {
  std::set<std::string> given;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (IsHelp(arg)) {
      // Help exits 0, ess-check's "allowed": beside other arguments it is a usage error, so
      // that `ess-check ... --help && send` sends nothing.
      if (std::any_of(argv + 1, argv + argc, [](const char* other) { return !IsHelp(other); })) {
        Usage("--help given with other arguments: nothing was checked");
      }
      std::printf("usage: %s\n%s\n", synopsis_.c_str(), about_.c_str());
      for (const auto& flag : order_) {
        std::printf("  --%s\t%s\n", flag.c_str(), flags_[flag].help.c_str());
      }
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      Usage("unexpected argument '" + arg + "'");
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    const auto found = flags_.find(name);
    if (found == flags_.end()) {
      Usage("unrecognized argument --" + name);
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        Usage("argument --" + name + ": expected one argument");
      }
      value = argv[++i];
    }
    if (const std::string error = found->second.set(value); !error.empty()) {
      Usage("argument --" + name + ": " + error);
    }
    given.insert(name);
  }
  std::string missing;
  for (const auto& flag : required) {
    if (given.count(flag) == 0) {
      missing += (missing.empty() ? "--" : ", --") + flag;
    }
  }
  if (!missing.empty()) {
    Usage("the following arguments are required: " + missing);
  }
}

void Flags::Usage(const std::string& error) const {
  std::fprintf(stderr, "usage: %s\n%s: %s\n", synopsis_.c_str(), name_.c_str(), error.c_str());
  std::exit(kExitUsage);
}

}  // namespace ess::cli
