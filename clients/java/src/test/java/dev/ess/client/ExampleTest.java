package dev.ess.client;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The README's example, compiled by `make test` and run against the fake. */
class ExampleTest {
  static void example(GuardClient.Builder builder) {
    // README from here (with GuardClient.builder("unix:/run/ess/ess.sock").token("executor-token")):
    try (GuardClient guard = builder.build()) {
      guard.connect(Duration.ofSeconds(1)); // warm up; until connected, checks fail closed
      Verdict verdict = guard.check(Order.builder().account("acc-1").strategy("momo")
          .symbol("AAPL").side(Side.BUY).quantity(10).price(187.5).build());
      if (!verdict.allowed()) { // obey this field, and only this one
        System.out.println("denied: " + verdict.reasonName() + " " + verdict.message());
        return;
      }
      // Send the order with verdict.clientOrderId(), then report what the venue says of it:
      guard.reportFill(new Fill("acc-1", "momo", "AAPL", Side.BUY, 10, 187.4,
          verdict.clientOrderId(), "venue-exec-1"));
    }
  }

  @Test
  void theExampleRuns() throws Exception {
    FakeGuard fake = new FakeGuard().start();
    try {
      // A generous deadline: a loaded machine may take over 5 ms for a JVM's first check.
      example(GuardClient.builder(fake.channel()).token("executor-token")
          .deadline(Duration.ofSeconds(5)));
      assertTrue(fake.calls.poll(10, TimeUnit.SECONDS) instanceof dev.ess.v1.ReportFillRequest);
    } finally {
      fake.stop();
    }
  }
}
