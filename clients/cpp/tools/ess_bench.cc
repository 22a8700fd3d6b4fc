// ess-bench measures checks through the ess library's stream Check against a live sidecar:
//
//   ess-bench --target unix:/tmp/ess.sock --checks 10000 --inflight 8
//
// --inflight threads share one client (one stream) and check until --checks checks are
// done, after --warmup unmeasured ones. It prints one line
// "p50_us=.. p99_us=.. checks_per_s=.." (nearest-rank percentiles of each Check call; the
// rate over the wall time of the measured checks), and on stderr how many were not
// allowed, by reason: the sidecar must allow them all (a config without exposure, rate,
// duplicate and working-order limits), or the figures measure something else. Exit 1 if
// any check was not allowed.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cli.h"
#include "ess/client.h"

namespace {

using Clock = std::chrono::steady_clock;

double Micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

// The nearest-rank percentile of sorted.
Clock::duration Rank(const std::vector<Clock::duration>& sorted, double p) {
  long i = static_cast<long>(std::ceil(p * static_cast<double>(sorted.size()))) - 1;
  i = std::clamp<long>(i, 0, static_cast<long>(sorted.size()) - 1);
  return sorted[static_cast<std::size_t>(i)];
}

}  // namespace

int main(int argc, char** argv) {
  ess::cli::Flags flags("ess-bench",
                        "ess-bench --target unix:PATH|HOST:PORT [--checks 10000] [--inflight 1]",
                        "Measure checks through the library's stream Check: p50_us=.. p99_us=.."
                        " checks_per_s=..");
  std::string target, token, account = "bench-acc", strategy = "bench", symbol = "BENCH";
  long checks = 10000, warmup = 1000, inflight = 1;
  std::chrono::microseconds deadline = std::chrono::seconds(1);
  flags.Target("target", &target, "HOST:PORT or unix:PATH");
  flags.String("token", &token, "bearer token");
  flags.Int("checks", &checks, 1, "measured checks (default 10000)");
  flags.Int("warmup", &warmup, 0, "unmeasured checks first (default 1000)");
  flags.Int("inflight", &inflight, 1, "checks in flight: threads sharing the client (default 1)");
  flags.String("account", &account, "account of the orders");
  flags.String("strategy", &strategy, "strategy of the orders");
  flags.String("symbol", &symbol, "symbol of the orders");
  flags.DeadlineMs("deadline-ms", &deadline,
                   "per-check deadline in ms (default 1000: measure, do not deny)");
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
  if (!client->Connect(std::chrono::seconds(5))) {
    std::fprintf(stderr, "ess-bench: the sidecar was not reached within 5 s\n");
    return 1;
  }

  ess::Order order;
  order.account = account;
  order.strategy = strategy;
  order.symbol = symbol;
  order.side = ess::kBuy;
  order.quantity = 1;
  order.price = 100;
  std::mutex mu;
  std::map<std::string, long> denied;
  auto run = [&](long total, std::vector<Clock::duration>* latencies) {
    std::atomic<long> next{0};
    std::vector<std::thread> threads;
    const auto started = Clock::now();
    for (long t = 0; t < inflight; ++t) {
      threads.emplace_back([&] {
        for (long i; (i = next.fetch_add(1)) < total;) {
          const auto t0 = Clock::now();
          const ess::Verdict verdict = client->Check(order);
          const auto elapsed = Clock::now() - t0;
          if (latencies != nullptr) {
            (*latencies)[static_cast<std::size_t>(i)] = elapsed;
          }
          if (!verdict.allowed) {
            std::lock_guard<std::mutex> lock(mu);
            ++denied[ess::cli::Line(verdict).substr(7)];
          }
        }
      });
    }
    for (auto& thread : threads) {
      thread.join();
    }
    return Clock::now() - started;
  };
  run(warmup, nullptr);
  std::vector<Clock::duration> latencies(static_cast<std::size_t>(checks));
  const auto wall = run(checks, &latencies);
  std::sort(latencies.begin(), latencies.end());
  std::printf("p50_us=%.1f p99_us=%.1f checks_per_s=%.0f\n", Micros(Rank(latencies, 0.50)),
              Micros(Rank(latencies, 0.99)),
              static_cast<double>(checks) / std::chrono::duration<double>(wall).count());
  std::fflush(stdout);
  if (!denied.empty()) {
    for (const auto& [line, n] : denied) {
      std::fprintf(stderr, "ess-bench: %ld not allowed: %s\n", n, line.c_str());
    }
    return 1;
  }
  return 0;
}
