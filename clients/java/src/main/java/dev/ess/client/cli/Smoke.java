package dev.ess.client.cli;

import dev.ess.client.GuardClient;
import dev.ess.client.Order;
import dev.ess.client.Side;
import dev.ess.client.Verdict;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

/**
 * ess-smoke drives one long-lived client for the cross-language smoke test
 * (tests/clients/smoke.py):
 *
 * <pre>
 * ess-smoke --target T [--token T] [--deadline-ms N]
 * </pre>
 *
 * <p>It connects (up to 5 s) before it reads stdin; for each line "check ACCOUNT STRATEGY
 * SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]" it prints, flushed, "&lt;microseconds the
 * library's check took&gt; &lt;the ess-check line&gt;". It exits 0 at EOF, 64 on a usage error
 * or a line it cannot read (one not valid UTF-8 among them).
 */
public final class Smoke {
  private Smoke() {}

  public static void main(String[] args) {
    System.exit(run(args));
  }

  static int run(String[] args) {
    Cli cli = new Cli("ess-smoke", "ess-smoke --target T [--token T] [--deadline-ms N]",
        "One long-lived client; stdin lines 'check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID"
            + " [DEADLINE_MS]', one answer line each: '<microseconds> <the ess-check line>'.")
        .flag("target", null, "HOST:PORT or unix:PATH")
        .flag("token", "", "bearer token")
        .flag("deadline-ms", "5", "default per-check deadline in ms");
    GuardClient client;
    try {
      cli.parse(args, "target");
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
    PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
    try (client) {
      client.connect(Duration.ofSeconds(5)); // as an executor does when it starts
      InputStream input = new BufferedInputStream(System.in);
      byte[] raw;
      for (int number = 1; (raw = Cli.rawLine(input)) != null; number++) {
        String text;
        try {
          text = Cli.utf8(raw);
        } catch (CharacterCodingException e) {
          System.err.println("ess-smoke: line " + number + " is not valid UTF-8: "
              + Cli.quoted(new String(raw, StandardCharsets.UTF_8)));
          return Cli.EXIT_USAGE;
        }
        String[] fields = Cli.words(text);
        if (fields.length == 0) {
          continue;
        }
        Order order;
        Duration deadline = null;
        try {
          if (!fields[0].equals("check") || fields.length < 8 || fields.length > 9) {
            throw new Cli.UsageError(
                "expected 'check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]'");
          }
          order = parseOrder(fields);
          if (fields.length == 9) {
            deadline = Cli.deadline("DEADLINE_MS", fields[8]);
          }
        } catch (Cli.UsageError e) {
          System.err.println("ess-smoke: " + e.getMessage() + ": " + Cli.quoted(text));
          return Cli.EXIT_USAGE;
        }
        long started = System.nanoTime();
        Verdict verdict = client.check(order, deadline);
        long elapsedMicros = (System.nanoTime() - started) / 1000;
        out.print(elapsedMicros + " " + Cli.line(verdict) + "\n");
        out.flush();
      }
    } catch (IOException e) {
      System.err.println("ess-smoke: reading stdin: " + e);
      return 1;
    }
    return 0;
  }

  /** The order of a check line: QTY and PRICE read as --qty and --price are. */
  private static Order parseOrder(String[] fields) throws Cli.UsageError {
    Side side;
    try {
      side = Side.parse(fields[4]);
    } catch (IllegalArgumentException e) {
      throw new Cli.UsageError("bad SIDE");
    }
    return Order.builder().account(fields[1]).strategy(fields[2]).symbol(fields[3]).side(side)
        .quantity(Cli.positive("QTY", fields[5])).price(Cli.positive("PRICE", fields[6]))
        .clientOrderId(fields[7]).build();
  }
}
