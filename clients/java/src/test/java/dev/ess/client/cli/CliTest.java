package dev.ess.client.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ess.client.Cause;
import dev.ess.client.GuardClient;
import dev.ess.client.Verdict;
import dev.ess.v1.DecisionReason;
import java.util.List;
import org.junit.jupiter.api.Test;

class CliTest {
  @Test
  void linesOfVerdicts() {
    assertEquals("ALLOWED d-1", Cli.line(new Verdict(true, DecisionReason.DECISION_REASON_ALLOWED,
        "", Cause.NONE, "", 1, "d-1", "", "o-1")));
    assertEquals("DENIED SCOPE_TRIPPED STRATEGY:momo is TRIPPED: smoke",
        Cli.line(new Verdict(false, DecisionReason.DECISION_REASON_SCOPE_TRIPPED,
            "STRATEGY:momo is TRIPPED: smoke", Cause.NONE, "", 1, "d-2", "STRATEGY:momo", "o-2")));
    assertEquals("DENIED CLIENT_FAIL_CLOSED deadline: no answer within 5 ms",
        Cli.line(Verdict.failed(Cause.DEADLINE, "no answer\nwithin  5 ms")));
    assertEquals("ALLOWED x DENIED SCOPE_TRIPPED y", // review 58e: one line whatever it holds
        Cli.line(new Verdict(true, DecisionReason.DECISION_REASON_ALLOWED, "", Cause.NONE, "",
            1, "x\nDENIED SCOPE_TRIPPED  y ", "", "o-4")));
    assertEquals("DENIED MAX_ORDER_QUANTITY",
        Cli.line(new Verdict(false, DecisionReason.DECISION_REASON_MAX_ORDER_QUANTITY, "",
            Cause.NONE, "", 1, "d-3", "", "o-3")));
  }

  @Test
  void parsing() throws Exception {
    Cli cli = new Cli("t", "t --a A", "about").flag("a", null, "a").flag("b", "2", "b");
    cli.parse(new String[] {"--a", "x", "-b=3"}, "a");
    assertEquals("x", cli.get("a"));
    assertEquals(3.0, cli.positive("b"));
    assertThrows(Cli.UsageError.class,
        () -> new Cli("t", "", "").flag("a", null, "").parse(new String[] {}, "a"));
    assertThrows(Cli.UsageError.class,
        () -> new Cli("t", "", "").flag("a", null, "").parse(new String[] {"--c", "1"}));
    assertThrows(Cli.UsageError.class,
        () -> new Cli("t", "", "").flag("a", null, "").parse(new String[] {"--a"}));
    assertThrows(Cli.UsageError.class,
        () -> new Cli("t", "", "").flag("a", null, "").parse(new String[] {"stray"}));
    assertThrows(Cli.UsageError.class, () -> Cli.positive("q", "0"));
    assertThrows(Cli.UsageError.class, () -> Cli.positive("q", "-1"));
    assertThrows(Cli.UsageError.class, () -> Cli.positive("q", "nan"));
    assertThrows(Cli.UsageError.class, () -> Cli.positive("q", "abc"));
    assertThrows(Cli.UsageError.class, () -> Cli.positive("q", "Infinity"));
  }

  /**
   * Help beside other arguments is a usage error, not help's exit 0 (review: 0 is ess-check's
   * "allowed", so `ess-check ... --help && send` sent the order unchecked).
   */
  @Test
  void helpBesideOtherArgumentsIsAUsageError() {
    String[] order = {"--target", "unix:/nonexistent/ess.sock", "--account", "a", "--strategy",
        "s", "--symbol", "X", "--side", "sell", "--qty", "1", "--price", "1", "--coid", "o-1"};
    for (String help : new String[] {"-h", "--help"}) {
      String[] args = java.util.Arrays.copyOf(order, order.length + 1);
      args[order.length] = help;
      assertEquals(Cli.EXIT_USAGE, Check.run(args), help);
      Cli.UsageError error = assertThrows(Cli.UsageError.class,
          () -> new Cli("t", "", "").flag("a", null, "").parse(new String[] {help, "--a", "x"}));
      assertTrue(error.getMessage().contains("--help"), error.getMessage());
    }
  }

  /**
   * One grammar in every client's programs (review 52a): parseDouble took "1d" and "0x1p4",
   * and a mistyped target was a check that failed closed, like an outage.
   */
  @Test
  void numbersAndTargetsHaveOneGrammar() throws Exception {
    for (String good : new String[] {"1", "1.5", ".5", "1e3", "+2", "100", "2.", "2.e3"}) {
      assertTrue(Cli.positive("q", good) > 0, good);
    }
    for (String bad : new String[] {"1_0", "0x10", "1d", "0x1p4", " 1", "1 ", "", "1e", ".",
        "++1", "1f", "\uff11"}) {
      Cli.UsageError error = assertThrows(Cli.UsageError.class, () -> Cli.positive("q", bad));
      assertTrue(error.getMessage().startsWith("q: "), error.getMessage());
    }
    for (String good : new String[] {"127.0.0.1:50051", "localhost:1", "[::1]:50051",
        "unix:/tmp/x.sock", "unix:relative.sock"}) {
      assertTrue(Cli.isTarget(good), good);
    }
    for (String bad : new String[] {"127.0.0.1:abc", "127.0.0.1:99999", "127.0.0.1:0", "unix:",
        "unix: /x", "127.0.0.1", " 127.0.0.1:50051", "http://h:1", "dns:///h:1", "h:1/x",
        "::1:50051", "[::1]", ""}) {
      assertFalse(Cli.isTarget(bad), bad);
      Cli cli = new Cli("t", "", "").flag("target", null, "");
      cli.parse(new String[] {"--target", bad});
      Cli.UsageError error = assertThrows(Cli.UsageError.class, () -> cli.target("target"));
      assertTrue(error.getMessage().startsWith("argument --target: "), error.getMessage());
    }
  }

  // Review 52d: HOST a dotted quad, an RFC 1123 name or an IPv6 literal (never a DNS lookup);
  // PATH printable ASCII without URI syntax, and // only as ///abs.
  @Test
  void hostsAreNamesOrAddressesAndPathsPrintableAscii() {
    for (String good : new String[] {"localhost:1", "a.b-c.d:65535", "[::1]:50051",
        "[::ffff:1.2.3.4]:1", "127.0.0.1:50051", "0.0.0.0:1", "localhost.:1",
        "a".repeat(63) + ":1", "unix:ess.sock", "unix:///abs", "unix:/tmp/a b",
        "my-host.example.com:1", "0x.example:1", "1.example:1"}) {
      assertTrue(Cli.isTarget(good), good);
    }
    for (String bad : new String[] {"_:1", "-:1", "..:1", "a..b:1", "a-.b:1",
        "a".repeat(64) + ":1", "[1.2.3.4]:1", "[::1::]:1", "127.1:1", "2130706433:1",
        "256.1.1.1:1", "01.2.3.4:1", "1.2.3.4.:1", "unix:q?x.sock", "unix:a%2fb", "unix:a#b",
        "unix://host/x", "unix:////x", "unix://", "unix:/tmp/\u00e9",
        // Review 52e: a numeric last label (the URL standard's rule) unless a dotted quad.
        "0x7f000001:1", "0x7f.1:1", "0X7F.0.0.1:1", "1.2.3.0x4:1", "example.1:1", "a.0x:1",
        "a.1b:1", "localhost.1x:1", "1b:1"}) {
      assertFalse(Cli.isTarget(bad), bad);
    }
  }

  // Review 52c: the grammar narrowed to names or [v6] without zones, at most 253 characters,
  // and unix paths sun_path holds, without control or line-separator characters; a value
  // with a newline is escaped, so that the error's last line names its flag.
  @Test
  void targetsAreNamesOrAddressesAndPathsASocketHolds() throws Exception {
    String path107 = "unix:/tmp/" + "x".repeat(102);
    for (String good : new String[] {"a.b-c.d:65535", "[::ffff:1.2.3.4]:1", path107}) {
      assertTrue(Cli.isTarget(good), good);
    }
    for (String bad : new String[] {"h".repeat(100_000) + ":1", "h".repeat(254) + ":1",
        path107 + "x", "unix:/tmp/" + "\u00e9".repeat(52), "h\u00e9llo:1", "[fe80::1%lo]:1",
        "[]:1", "h:000001", "h:70000/", "\u2028localhost:1", "unix:/tmp/a\nb",
        "unix:/tmp/a\u2028b", "unix:/tmp/a\u0085b"}) {
      assertFalse(Cli.isTarget(bad), bad.substring(0, Math.min(40, bad.length())));
      Cli cli = new Cli("t", "", "").flag("target", null, "");
      cli.parse(new String[] {"--target", bad});
      Cli.UsageError error = assertThrows(Cli.UsageError.class, () -> cli.target("target"));
      assertFalse(error.getMessage().matches("(?s).*[\n\r\u2028\u0085].*"),
          error.getMessage().substring(0, 40));
    }
    assertEquals("\"a\\u000a\\u2028\\\"b\"", Cli.quoted("a\n\u2028\"b"));
    assertEquals(List.of("a\u2028b\u0085c", "d", "e"),
        List.of(Cli.words(" a\u2028b\u0085c\t\u000Bd\f\re\n")));
  }

  @Test
  void aDeadlineIsAtLeastAMicrosecondAndANumberMayBeSubnormal() throws Exception {
    for (String bad : new String[] {"5e-324", "1e-7", "0.0009", "9".repeat(100_000)}) {
      assertThrows(Cli.UsageError.class, () -> Cli.deadline("d", bad));
    }
    assertEquals(java.time.Duration.ofNanos(1000), Cli.deadline("d", "0.001"));
    assertEquals(Double.MIN_VALUE, Cli.positive("q", "5e-324"));
  }

  /**
   * Review 54e: a token the library refuses is a usage error naming --token (it was taken, and
   * the check denied as "no credentials"); a CRLF file's "tok\r" is "tok".
   */
  @Test
  void aRefusedTokenIsAUsageErrorNamingToken() {
    String[] order = {"--target", "unix:/nonexistent/ess.sock", "--account", "a", "--strategy",
        "s", "--symbol", "X", "--side", "sell", "--qty", "1", "--price", "1", "--coid", "o-1",
        "--token", null};
    order[order.length - 1] = "t\rok";
    assertEquals(Cli.EXIT_USAGE, Check.run(order));
    order[order.length - 1] = "tok\r\n";
    assertEquals(2, Check.run(order)); // taken: denied, no sidecar there
    Cli.UsageError error = Cli.refused(assertThrows(IllegalArgumentException.class,
        () -> GuardClient.builder("localhost:1").token("t\rok").build()));
    assertTrue(error.getMessage().startsWith("argument --token: "), error.getMessage());
    assertTrue(error.getMessage().contains("0x0d"), error.getMessage());
    error = Cli.refused(new IllegalArgumentException("no socket path"));
    assertTrue(error.getMessage().startsWith("argument --target: "), error.getMessage());
  }

  /** Review 52d: argv's bytes that are not UTF-8 reach the JVM as U+FFFD: refused. */
  @Test
  void aValueWithAReplacementCharacterIsRefused() {
    Cli cli = new Cli("t", "", "").flag("coid", null, "");
    Cli.UsageError error = assertThrows(Cli.UsageError.class,
        () -> cli.parse(new String[] {"--coid", "o-\uFFFD"}));
    assertTrue(error.getMessage().startsWith("argument --coid: "), error.getMessage());
  }

  /** Review 52d: readLine broke a line at a bare \r (two checks where the others refuse one). */
  @Test
  void smokeLinesSplitOnNewlineOnly() throws Exception {
    java.io.InputStream input = new java.io.ByteArrayInputStream(
        "a\rb\r\nc\nd\r".getBytes(java.nio.charset.StandardCharsets.UTF_8));
    assertEquals("a\rb", Cli.utf8(Cli.rawLine(input)));
    assertEquals("c", Cli.utf8(Cli.rawLine(input)));
    assertEquals("d", Cli.utf8(Cli.rawLine(input)));
    assertEquals(null, Cli.rawLine(input));
  }

  /** Review 52e: a lenient decoder read U+FFFD in a coid and checked another order id. */
  @Test
  void aSmokeLineNotValidUtf8IsRefused() {
    for (byte[] bad : new byte[][] {{'o', '-', (byte) 0xff}, {(byte) 0xc3, '('},
        {(byte) 0xed, (byte) 0xa0, (byte) 0x80}}) {
      assertThrows(java.nio.charset.CharacterCodingException.class, () -> Cli.utf8(bad));
    }
  }

  /** Review 52d: Go's ParseFloat read the first as far less than 1e13, and allowed it. */
  @Test
  void aNumberLongerThan64CharactersIsRefused() throws Exception {
    for (String bad : new String[] {"1" + "0".repeat(803) + "e-790",
        "1" + "0".repeat(1000) + "e-1000", "1." + "0".repeat(63)}) {
      Cli.UsageError error = assertThrows(Cli.UsageError.class, () -> Cli.positive("q", bad));
      assertTrue(error.getMessage().contains("longer than 64"), error.getMessage());
    }
    assertEquals(1.0, Cli.positive("q", "1." + "0".repeat(62)));
  }

  @Test
  void deadlinesAndNonBlankValues() throws Exception {
    assertEquals(java.time.Duration.ofMillis(5), Cli.deadline("d", "5"));
    for (String bad : new String[] {"inf", "Infinity", "NaN", "-1", "0", "1e300", "3600001"}) {
      assertThrows(Cli.UsageError.class, () -> Cli.deadline("d", bad), bad);
    }
    Cli cli = new Cli("t", "", "").flag("coid", null, "").flag("target", null, "");
    cli.parse(new String[] {"--coid", " ", "--target", "x"});
    assertEquals("x", cli.nonBlank("target"));
    Cli.UsageError error = assertThrows(Cli.UsageError.class, () -> cli.nonBlank("coid"));
    assertEquals("argument --coid: must not be empty", error.getMessage());
  }
}
