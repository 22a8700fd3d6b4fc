// ess-smoke drives one long-lived ess client for the cross-language smoke test
// (tests/clients/smoke.py):
//
//   ess-smoke --target T [--token T] [--deadline-ms N]
//
// It connects (up to 5 s) before it reads stdin; for each line
// "check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]" it prints, flushed,
// "<microseconds the library's Check took> <the ess-check line>". It exits 0 at EOF, 64 on
// a usage error or a line it cannot read.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli.h"
#include "ess/client.h"

namespace {

// Reads "check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]"; "" or the error.
// An unknown side is left to the sidecar to reject (a fail-closed denial).
std::string ParseLine(const std::vector<std::string>& fields, ess::Order* order,
                      std::optional<std::chrono::microseconds>* deadline) {
  if (fields[0] != "check" || fields.size() < 8 || fields.size() > 9) {
    return "expected 'check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]'";
  }
  order->account = fields[1];
  order->strategy = fields[2];
  order->symbol = fields[3];
  order->side = ess::ParseSide(fields[4]).value_or(ess::v1::SIDE_UNSPECIFIED);
  if (!ess::cli::ParsePositive(fields[5], &order->quantity)) {
    return "bad QTY";
  }
  if (!ess::cli::ParsePositive(fields[6], &order->price)) {
    return "bad PRICE";
  }
  order->client_order_id = fields[7];
  if (fields.size() == 9) {
    std::chrono::microseconds ms{};
    if (!ess::cli::ParseDeadlineMs(fields[8], &ms)) {
      return "bad DEADLINE_MS";
    }
    *deadline = ms;
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  ess::cli::Flags flags("ess-smoke", "ess-smoke --target T [--token T] [--deadline-ms N]",
                        "One long-lived client; stdin lines 'check ACCOUNT STRATEGY SYMBOL SIDE"
                        " QTY PRICE COID [DEADLINE_MS]', one answer line each: '<microseconds>"
                        " <the ess-check line>'.");
  std::string target, token;
  std::chrono::microseconds deadline = ess::Options().deadline;
  flags.Target("target", &target, "HOST:PORT or unix:PATH");
  flags.String("token", &token, "bearer token");
  flags.DeadlineMs("deadline-ms", &deadline, "default per-check deadline in ms (default 5)");
  flags.Parse(argc, argv, {"target"});

  ess::Options options;
  options.deadline = deadline;
  options.token = token;
  std::optional<ess::Client> client;
  try {
    client.emplace(target, options);
  } catch (const std::invalid_argument& e) {  // a target or token the library refuses
    flags.Refused(e);
  }
  client->Connect(std::chrono::seconds(5));  // as an executor does when it starts

  for (std::string text; std::getline(std::cin, text);) {
    std::istringstream words(text);  // split on ASCII whitespace only (the C locale's)
    std::vector<std::string> fields;
    for (std::string word; words >> word;) {
      fields.push_back(word);
    }
    if (fields.empty()) {
      continue;
    }
    ess::Order order;
    std::optional<std::chrono::microseconds> deadline;
    if (const std::string error = ParseLine(fields, &order, &deadline); !error.empty()) {
      std::fprintf(stderr, "ess-smoke: %s: %s\n", error.c_str(),
                   ess::cli::Quoted(text).c_str());
      client->Close();
      return ess::cli::kExitUsage;
    }
    const auto started = std::chrono::steady_clock::now();
    const ess::Verdict verdict = client->Check(order, deadline);
    const auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started);
    std::printf("%lld %s\n", static_cast<long long>(elapsed.count()),
                ess::cli::Line(verdict).c_str());
    std::fflush(stdout);
  }
  return 0;
}
