package dev.ess.client.cli;

import dev.ess.client.GuardClient;
import dev.ess.client.Order;
import dev.ess.client.Side;
import dev.ess.client.Verdict;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * ess-bench measures checks through the library's stream check against a live sidecar:
 *
 * <pre>
 * ess-bench --target unix:/tmp/ess.sock --checks 10000 --inflight 8
 * </pre>
 *
 * <p>--inflight threads share one client (one stream) and check until --checks checks are
 * done, after --warmup unmeasured ones (the JIT compiles the hot path during those). It
 * prints one line "p50_us=.. p99_us=.. checks_per_s=.." (nearest-rank percentiles of each
 * check call; the rate over the wall time of the measured checks), and on stderr how many
 * were not allowed, by reason: the sidecar must allow them all (a config without exposure,
 * rate, duplicate and working-order limits), or the figures measure something else. Exit 1
 * if any check was not allowed.
 */
public final class Bench {
  private Bench() {}

  public static void main(String[] args) {
    System.exit(run(args));
  }

  static int run(String[] args) {
    Cli cli = new Cli("ess-bench",
        "ess-bench --target unix:PATH|HOST:PORT [--checks 10000] [--inflight 1]",
        "Measure checks through the library's stream check: p50_us=.. p99_us=.. checks_per_s=..")
        .flag("target", null, "HOST:PORT or unix:PATH")
        .flag("token", "", "bearer token")
        .flag("checks", "10000", "measured checks")
        .flag("warmup", "20000", "unmeasured checks first (JIT warm-up)")
        .flag("inflight", "1", "checks in flight (threads sharing the client)")
        .flag("account", "bench-acc", "account of the orders")
        .flag("strategy", "bench", "strategy of the orders")
        .flag("symbol", "BENCH", "symbol of the orders")
        .flag("deadline-ms", "1000", "per-check deadline in ms (high: measure, do not deny)");
    int checks;
    int warmup;
    int inflight;
    GuardClient client;
    try {
      cli.parse(args, "target");
      checks = cli.integer("checks", 1);
      warmup = cli.integer("warmup", 0);
      inflight = cli.integer("inflight", 1);
      Duration deadline = cli.deadline("deadline-ms");
      String target = cli.target("target");
      try {
        client = GuardClient.builder(target).token(cli.get("token"))
            .deadline(deadline).build();
      } catch (IllegalArgumentException e) { // a token or target it refuses all the same
        throw Cli.refused(e);
      }
    } catch (Cli.UsageError e) {
      return cli.usage(e);
    }
    try (client) {
      if (!client.connect(Duration.ofSeconds(5))) {
        System.err.println("ess-bench: sidecar not reached at " + cli.get("target"));
        return 1;
      }
      Order order = Order.builder().account(cli.get("account")).strategy(cli.get("strategy"))
          .symbol(cli.get("symbol")).side(Side.BUY).quantity(1).price(100).build();
      Map<String, Integer> denied = new ConcurrentHashMap<>();
      run(client, order, inflight, warmup, null, denied);
      denied.clear();
      long[] latencies = new long[checks];
      long wall = run(client, order, inflight, checks, latencies, denied);
      Arrays.sort(latencies);
      System.out.printf("p50_us=%.1f p99_us=%.1f checks_per_s=%.0f%n",
          rank(latencies, 0.50) / 1000.0, rank(latencies, 0.99) / 1000.0,
          checks / (wall / 1e9));
      System.out.flush();
      if (!denied.isEmpty()) {
        denied.forEach((line, n) -> System.err.println("ess-bench: " + n + " not allowed: " + line));
        return 1;
      }
      return 0;
    }
  }

  /** total checks from inflight threads; the wall time in ns. */
  private static long run(GuardClient client, Order order, int inflight, int total,
      long[] latencies, Map<String, Integer> denied) {
    AtomicInteger next = new AtomicInteger();
    Thread[] threads = new Thread[inflight];
    long started = System.nanoTime();
    for (int t = 0; t < inflight; t++) {
      threads[t] = new Thread(() -> {
        while (true) {
          int i = next.getAndIncrement();
          if (i >= total) {
            return;
          }
          long t0 = System.nanoTime();
          Verdict verdict = client.check(order);
          long elapsed = System.nanoTime() - t0;
          if (latencies != null) {
            latencies[i] = elapsed;
          }
          if (!verdict.allowed()) {
            denied.merge(Cli.line(verdict).substring("DENIED ".length()), 1, Integer::sum);
          }
        }
      }, "ess-bench-" + t);
      threads[t].start();
    }
    for (Thread thread : threads) {
      try {
        thread.join();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
    return System.nanoTime() - started;
  }

  /** The nearest-rank percentile of sorted. */
  private static long rank(long[] sorted, double p) {
    int i = (int) Math.ceil(p * sorted.length) - 1;
    return sorted[Math.max(0, Math.min(i, sorted.length - 1))];
  }
}
