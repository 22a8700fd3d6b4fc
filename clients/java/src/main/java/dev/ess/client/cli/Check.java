package dev.ess.client.cli;

import dev.ess.client.GuardClient;
import dev.ess.client.Order;
import dev.ess.client.Side;
import dev.ess.client.Verdict;
import java.time.Duration;

/**
 * ess-check asks an ESS sidecar whether one order may be sent, through the client library,
 * the example every client ships:
 *
 * <pre>
 * ess-check --target HOST:PORT|unix:PATH [--token T] --account A --strategy S --symbol X
 *           --side buy|sell --qty Q --price P --coid ID [--deadline-ms N]
 * </pre>
 *
 * <p>It connects (connecting is not part of the deadline; it waits up to 1 s), checks once
 * and prints one line: "ALLOWED &lt;decision_id&gt;" (exit 0) or "DENIED &lt;REASON&gt;
 * &lt;message&gt;" (exit 2; "DENIED CLIENT_FAIL_CLOSED &lt;cause&gt;: &lt;why&gt;" when it
 * could not get a decision). A usage error exits 64; so does -h / --help beside other
 * arguments (alone, it prints the usage and exits 0).
 */
public final class Check {
  private Check() {}

  public static void main(String[] args) {
    System.exit(run(args));
  }

  static int run(String[] args) {
    Cli cli = new Cli("ess-check", "ess-check --target HOST:PORT|unix:PATH [--token T] --account A"
        + " --strategy S --symbol X --side buy|sell --qty Q --price P --coid ID [--deadline-ms N]",
        "Ask an ESS sidecar whether an order may be sent; exit 0 allowed, 2 denied, 64 usage error.")
        .flag("target", null, "HOST:PORT or unix:PATH")
        .flag("token", "", "bearer token")
        .flag("account", null, "account")
        .flag("strategy", null, "strategy")
        .flag("symbol", null, "symbol")
        .flag("side", null, "buy or sell")
        .flag("qty", null, "quantity (> 0)")
        .flag("price", null, "price (> 0)")
        .flag("coid", null, "client_order_id")
        .flag("deadline-ms", "5", "per-check deadline in ms");
    Order order;
    Duration deadline;
    GuardClient client;
    try {
      cli.parse(args, "target", "account", "strategy", "symbol", "side", "qty", "price", "coid");
      String side = cli.get("side");
      if (!side.equals("buy") && !side.equals("sell")) {
        throw new Cli.UsageError("argument --side: invalid choice: \"" + side
            + "\" (choose from 'buy', 'sell')");
      }
      order = Order.builder().account(cli.get("account")).strategy(cli.get("strategy"))
          .symbol(cli.get("symbol")).side(Side.parse(side)).quantity(cli.positive("qty"))
          .price(cli.positive("price")).clientOrderId(cli.nonBlank("coid")).build();
      deadline = cli.deadline("deadline-ms");
      String target = cli.target("target");
      try {
        client = GuardClient.builder(target).token(cli.get("token"))
            .deadline(deadline).logInterval(Duration.ofHours(1)).build();
      } catch (IllegalArgumentException e) { // a token or target it refuses all the same
        throw Cli.refused(e);
      }
    } catch (Cli.UsageError e) {
      return cli.usage(e);
    }
    Verdict verdict;
    try {
      client.connect(Duration.ofSeconds(1)); // not reached: the check fails closed
      verdict = client.check(order);
    } finally {
      client.close();
    }
    System.out.println(Cli.line(verdict));
    System.out.flush();
    return verdict.allowed() ? Cli.EXIT_ALLOWED : Cli.EXIT_DENIED;
  }
}
