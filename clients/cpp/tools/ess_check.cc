// ess-check asks an ESS sidecar whether one order may be sent, through the ess client
// library; the example every client ships:
//
//   ess-check --target HOST:PORT|unix:PATH [--token T] --account A --strategy S --symbol X
//             --side buy|sell --qty Q --price P --coid ID [--deadline-ms N]
//
// It connects (connecting is not part of the deadline; it waits up to 1 s), checks once
// and prints one line: "ALLOWED <decision_id>" (exit 0) or "DENIED <REASON> <message>"
// (exit 2; "DENIED CLIENT_FAIL_CLOSED <cause>: <why>" when it could not get a decision). A
// usage error (a missing, unknown or bad argument) exits 64; so does -h / --help beside
// other arguments (alone, it prints the usage and exits 0).
#include <cstdio>
#include <stdexcept>

#include "cli.h"
#include "ess/client.h"

int main(int argc, char** argv) {
  ess::cli::Flags flags(
      "ess-check",
      "ess-check --target HOST:PORT|unix:PATH [--token T] --account A --strategy S --symbol X"
      " --side buy|sell --qty Q --price P --coid ID [--deadline-ms N]",
      "Ask an ESS sidecar whether an order may be sent; exit 0 allowed, 2 denied, 64 usage"
      " error.");
  std::string target, token, account, strategy, symbol, side, coid;
  double qty = 0, price = 0;
  std::chrono::microseconds deadline = ess::Options().deadline;
  flags.Target("target", &target, "HOST:PORT or unix:PATH");
  flags.String("token", &token, "bearer token");
  flags.String("account", &account, "account");
  flags.String("strategy", &strategy, "strategy");
  flags.String("symbol", &symbol, "symbol");
  flags.Choice("side", &side, {"buy", "sell"}, "buy or sell");
  flags.Positive("qty", &qty, "quantity (> 0)");
  flags.Positive("price", &price, "price (> 0)");
  flags.NonBlank("coid", &coid, "client_order_id");
  flags.DeadlineMs("deadline-ms", &deadline, "per-check deadline in ms (default 5)");
  flags.Parse(argc, argv,
              {"target", "account", "strategy", "symbol", "side", "qty", "price", "coid"});

  ess::Options options;
  options.deadline = deadline;
  options.log_interval = std::chrono::hours(1);
  options.token = token;
  ess::Verdict verdict;
  try {
    ess::Client client(target, options);
    client.Connect(std::chrono::seconds(1));  // not reached: the check fails closed
    ess::Order order;
    order.account = account;
    order.strategy = strategy;
    order.symbol = symbol;
    order.side = *ess::ParseSide(side);
    order.quantity = qty;
    order.price = price;
    order.client_order_id = coid;
    verdict = client.Check(order);
  } catch (const std::invalid_argument& e) {  // a target or token the library refuses
    flags.Refused(e);
  }
  std::printf("%s\n", ess::cli::Line(verdict).c_str());
  std::fflush(stdout);
  return verdict.allowed ? ess::cli::kExitAllowed : ess::cli::kExitDenied;
}
