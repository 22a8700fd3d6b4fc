#include "cli.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>
#include <string_view>

namespace ess::cli {

std::string Line(const Verdict& verdict) {
  if (verdict.allowed) {  // one line too, whatever the id holds (review 58e)
    std::istringstream words(verdict.decision_id);
    std::string line = "ALLOWED";
    for (std::string word; words >> word;) {
      line += " " + word;
    }
    return line;
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

// The longest HOST (DNS's longest name) and unix PATH in bytes (sun_path's 108 with the
// NUL: a longer one never connects).
constexpr size_t kMaxHostChars = 253;
constexpr size_t kMaxUnixPathBytes = 107;
// The longest number's text: it bounds every parser (review 52d: Go's misread one of 800
// digits, 1e13 as a far smaller number, and allowed it).
constexpr size_t kMaxNumberChars = 64;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool IsLabelChar(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

// Whether text is [+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?, scanned by hand:
// std::regex_match recursed once per character, and a 30,000-digit number overflowed the
// stack (review 52c). strtod alone takes "0x10" as 16, " 1" and "inf".
bool IsPlainDecimal(std::string_view text) {
  if (text.size() > kMaxNumberChars) return false;
  size_t i = 0;
  const auto digits = [&] {
    const size_t start = i;
    while (i < text.size() && IsDigit(text[i])) ++i;
    return i - start;
  };
  if (i < text.size() && text[i] == '+') ++i;
  size_t mantissa = digits();
  if (i < text.size() && text[i] == '.') {
    ++i;
    mantissa += digits();
  }
  if (mantissa == 0) return false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    if (digits() == 0) return false;
  }
  return i == text.size();
}

// "0"-"255" without a leading zero.
bool IsOctet(std::string_view part) {
  if (part.empty() || part.size() > 3 || !std::all_of(part.begin(), part.end(), IsDigit) ||
      (part.size() > 1 && part[0] == '0')) {
    return false;
  }
  return std::stoi(std::string(part)) <= 255;
}

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

// A dotted quad, an RFC 1123 name of at most 253 characters (one trailing dot may end it;
// its last label starting with a letter: gRPC's resolvers read 127.1 and 2130706433 their
// own ways), or [IPv6] as inet_pton reads it (review 52d).
bool IsHost(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return false;
    const std::string inside(host.substr(1, host.size() - 2));
    in6_addr address{};
    return std::all_of(inside.begin(), inside.end(),
                       [](char c) { return IsHexDigit(c) || c == ':' || c == '.'; }) &&
           inet_pton(AF_INET6, inside.c_str(), &address) == 1;
  }
  const std::vector<std::string_view> parts = Split(host, '.');
  if (parts.size() == 4 && std::all_of(parts.begin(), parts.end(), IsOctet)) return true;
  if (host.empty() || host.size() > kMaxHostChars) return false;
  const std::string_view name = host.back() == '.' ? host.substr(0, host.size() - 1) : host;
  const std::vector<std::string_view> labels = Split(name, '.');
  for (const std::string_view label : labels) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-' ||
        !std::all_of(label.begin(), label.end(), IsLabelChar)) {
      return false;
    }
  }
  // Review 52e: a name ending in a number is an address to the URL standard (0x7f.1
  // reached 127.0.0.1 in two clients), so only a dotted quad may end in one; review 53b: a
  // last label that starts with a digit (a.1b) Java's URI refused, so a name's last label
  // starts with a letter (RFC 2396's toplabel), which covers both.
  const char first = labels.back().front();
  return (first >= 'A' && first <= 'Z') || (first >= 'a' && first <= 'z');
}

// 1-107 bytes (sun_path's) of printable ASCII, not led or ended by a space, none of %, ? and
// # (review 52d: gRPC's URI syntax reached another file, q?x.sock as q), and // only as
// ///abs (the clients read //host/x and ////x apart).
bool IsUnixPath(std::string_view path) {
  if (path.empty() || path.size() > kMaxUnixPathBytes || path.front() == ' ' ||
      path.back() == ' ') {
    return false;
  }
  for (const char c : path) {
    if (c < ' ' || c > '~' || c == '%' || c == '?' || c == '#') return false;
  }
  if (path.rfind("//", 0) == 0) {
    return path.size() > 3 && path[2] == '/' && path[3] != '/';
  }
  return true;
}

// Whether text is valid UTF-8: no stray continuation byte, overlong form, surrogate or
// code point beyond U+10FFFF.
bool IsUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const size_t n = c < 0x80           ? 1
                     : (c >> 5) == 0x6  ? 2
                     : (c >> 4) == 0xe  ? 3
                     : (c >> 3) == 0x1e ? 4
                                        : 0;
    if (n == 0 || i + n > text.size()) return false;
    unsigned long code = n == 1 ? c : c & (0x7f >> n);
    for (size_t k = 1; k < n; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3f);
    }
    static constexpr unsigned long kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < kMin[n] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
    i += n;
  }
  return true;
}

}  // namespace

bool IsTarget(const std::string& text) {
  if (text.rfind("unix:", 0) == 0) {
    return IsUnixPath(std::string_view(text).substr(5));
  }
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || !IsHost(std::string_view(text).substr(0, colon))) {
    return false;
  }
  const std::string_view port = std::string_view(text).substr(colon + 1);
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), IsDigit)) {
    return false;
  }
  const long number = std::stol(std::string(port));
  return number >= 1 && number <= 65535;
}

bool ParsePositive(const std::string& text, double* value) {
  if (!IsPlainDecimal(text)) {
    return false;
  }
  char* end = nullptr;
  errno = 0;
  const double parsed = std::strtod(text.c_str(), &end);
  // ERANGE with a finite non-zero result is a subnormal number, which the sidecar judges as
  // every other language's programs let it; an overflow is infinite, an underflow 0.
  if (end == text.c_str() || *end != '\0' || !std::isfinite(parsed) || !(parsed > 0) ||
      (errno != 0 && errno != ERANGE)) {
    return false;
  }
  *value = parsed;
  return true;
}

std::string Quoted(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte >= 0x7f) {
      char escaped[5];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + '"';
}

bool ParseDeadlineMs(const std::string& text, std::chrono::microseconds* deadline) {
  double ms = 0;
  if (!ParsePositive(text, &ms) || ms < kMinDeadlineMs || ms > kMaxDeadlineMs) {
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
                      return "expected HOST:PORT or unix:PATH, got " + Quoted(text);
                    }
                    // HOST:PORT as dns:///HOST:PORT, where gRPC would read a host that is
                    // one of its schemes as the scheme (review 53b: "unix-abstract:1"
                    // reached the abstract Unix socket "1").
                    *value = text.rfind("unix:", 0) == 0 ? text : "dns:///" + text;
                    return std::string();
                  }};
  order_.push_back(flag);
}

void Flags::DeadlineMs(const std::string& flag, std::chrono::microseconds* value,
                       const std::string& help) {
  flags_[flag] = {help, [value](const std::string& text) {
                    return ParseDeadlineMs(text, value)
                               ? std::string()
                               : "must be a plain decimal number of at most 64 characters"
                                 " from 0.001 to " +
                                     std::to_string(static_cast<long>(kMaxDeadlineMs)) +
                                     ", got " + Quoted(text);
                  }};
  order_.push_back(flag);
}

void Flags::Positive(const std::string& flag, double* value, const std::string& help) {
  flags_[flag] = {help, [value](const std::string& text) {
                    return ParsePositive(text, value)
                               ? std::string()
                               : "must be a plain decimal number > 0 of at most 64"
                                 " characters, got " +
                                     Quoted(text);
                  }};
  order_.push_back(flag);
}

void Flags::Int(const std::string& flag, long* value, long min, const std::string& help) {
  flags_[flag] = {help, [value, min](const std::string& text) {
                    char* end = nullptr;
                    errno = 0;
                    const long parsed = std::strtol(text.c_str(), &end, 10);
                    if (text.empty() || errno != 0 || *end != '\0' || parsed < min) {
                      return "must be an integer >= " + std::to_string(min) + ", got " +
                             Quoted(text);
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
                    return "invalid choice: " + Quoted(text) + " (choose from " + list + ")";
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
      Usage("unexpected argument " + Quoted(arg));
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
      Usage("unrecognized argument " + Quoted("--" + name));
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        Usage("argument --" + name + ": expected one argument");
      }
      value = argv[++i];
    }
    // Review 52d: a value that is not UTF-8 reached the library, which failed closed.
    if (!IsUtf8(value)) {
      Usage("argument --" + name + ": not valid UTF-8: " + Quoted(value));
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

void Flags::Refused(const std::invalid_argument& error) const {
  const bool token = dynamic_cast<const InvalidToken*>(&error) != nullptr;
  Usage(std::string(token ? "argument --token: " : "argument --target: ") +
        Quoted(error.what()));
}

}  // namespace ess::cli
