// The README's example (compiled by `make`, never run by it): check an order, send it,
// report its fill.
#include <cstdio>

#include "ess/client.h"

int main() {
  ess::Options options;
  options.token = "executor-token";                      // if the sidecar has auth on
  ess::Client guard("unix:/run/ess/ess.sock", options);  // or "127.0.0.1:50051"
  guard.Connect(std::chrono::seconds(1));  // warm up; until connected, checks fail closed

  ess::Order order;
  order.account = "acc-1"; order.strategy = "momo"; order.symbol = "AAPL";
  order.side = ess::kBuy; order.quantity = 10; order.price = 187.5;
  ess::Verdict verdict = guard.Check(order);  // within 5 ms, or denied
  if (!verdict.allowed) {                     // obey this field, and only this one
    std::printf("denied: %s %s\n", verdict.reason_name().c_str(), verdict.message.c_str());
    return 1;
  }
  // Send the order with verdict.client_order_id, then report what the venue says of it:
  auto fill = guard.ReportFill({"acc-1", "momo", "AAPL", ess::kBuy, 10, 187.4,
                                verdict.client_order_id, "venue-exec-1"});
  return fill.ok() ? 0 : 1;
}
