package dev.ess.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ess.v1.CheckOrderResponse;
import dev.ess.v1.DecisionReason;
import dev.ess.v1.ScopeKind;
import io.grpc.Status;
import org.junit.jupiter.api.Test;

class VerdictTest {
  @Test
  void everyKnownReasonIsTrustedWhenConsistent() {
    for (DecisionReason reason : DecisionReason.values()) {
      if (reason == DecisionReason.UNRECOGNIZED
          || reason == DecisionReason.DECISION_REASON_UNSPECIFIED) {
        continue;
      }
      boolean allowed = reason == DecisionReason.DECISION_REASON_ALLOWED;
      Verdict verdict = Verdict.fromDecision(
          CheckOrderResponse.newBuilder().setAllowed(allowed).setReason(reason).build());
      assertEquals(Cause.NONE, verdict.cause(), reason.name());
      assertEquals(allowed, verdict.allowed());
      assertEquals(reason.name().substring("DECISION_REASON_".length()), verdict.reasonName());
    }
  }

  @Test
  void aFailedVerdictIsNeverAllowed() {
    Verdict verdict = Verdict.failed(Cause.DEADLINE, "late").withClientOrderId("o-1");
    assertFalse(verdict.allowed());
    assertTrue(verdict.failedClosed());
    assertEquals("CLIENT_FAIL_CLOSED", verdict.reasonName());
    assertEquals("o-1", verdict.clientOrderId());
    // Even one built by hand with allowed set.
    Verdict forged = new Verdict(true, DecisionReason.DECISION_REASON_ALLOWED, "", Cause.MALFORMED,
        "", 0, "", "", "");
    assertFalse(forged.withClientOrderId("x").allowed());
  }

  @Test
  void statusCodesMapToCauses() {
    assertEquals(Cause.UNAVAILABLE, FailureBook.failureOf(Status.UNAVAILABLE).cause());
    assertEquals(Cause.DEADLINE, FailureBook.failureOf(Status.DEADLINE_EXCEEDED).cause());
    assertEquals(Cause.STREAM_BROKEN, FailureBook.failureOf(Status.CANCELLED).cause());
    assertEquals(Cause.STREAM_BROKEN, FailureBook.failureOf(Status.INTERNAL).cause());
    assertEquals(Cause.STREAM_BROKEN, FailureBook.failureOf(Status.UNKNOWN).cause());
    assertEquals(Cause.STREAM_BROKEN, FailureBook.failureOf(Status.OK).cause());
    assertEquals(Cause.REQUEST_ERROR, FailureBook.failureOf(Status.INVALID_ARGUMENT).cause());
    assertEquals(Cause.REFUSED, FailureBook.failureOf(Status.UNAUTHENTICATED).cause());
    assertEquals(Cause.REFUSED, FailureBook.failureOf(Status.PERMISSION_DENIED).cause());
    assertEquals(Cause.REFUSED, FailureBook.failureOf(Status.UNIMPLEMENTED).cause());
    assertEquals("UNAVAILABLE: down",
        FailureBook.failureOf(Status.UNAVAILABLE.withDescription("down")).message());
  }

  @Test
  void scopesParseAndFormat() {
    assertEquals(ScopeKind.SCOPE_KIND_GLOBAL, Scopes.parse("global").getKind());
    assertEquals("GLOBAL", Scopes.format(Scopes.parse("GLOBAL")));
    assertEquals("STRATEGY:momo", Scopes.format(Scopes.parse("strategy:momo")));
    assertEquals("ACCOUNT:a:b", Scopes.format(Scopes.parse("ACCOUNT:a:b")));
    assertEquals("SYMBOL:AAPL", Scopes.format(Scopes.symbol("AAPL")));
    assertThrows(IllegalArgumentException.class, () -> Scopes.parse("STRATEGY:"));
    assertThrows(IllegalArgumentException.class, () -> Scopes.parse("desk:x"));
    assertThrows(IllegalArgumentException.class, () -> Scopes.parse("\u017fymbol:aapl"));
  }

  @Test
  void sidesParse() {
    assertEquals(Side.BUY, Side.parse("buy"));
    assertEquals(Side.SELL, Side.parse("SIDE_SELL"));
    assertThrows(IllegalArgumentException.class, () -> Side.parse("hold"));
  }

  @Test
  void durationsReadAsMilliseconds() {
    assertEquals("5 ms", GuardClient.ms(5_000_000));
    assertEquals("0.500 ms", GuardClient.ms(500_000));
    assertEquals("1000 ms", GuardClient.ms(1_000_000_000));
  }

  @Test
  void unixTargets() {
    assertEquals("/tmp/ess.sock", Channels.unixPath("unix:/tmp/ess.sock"));
    assertEquals("/tmp/ess.sock", Channels.unixPath("unix:///tmp/ess.sock"));
    assertEquals("rel.sock", Channels.unixPath("unix:rel.sock"));
    assertEquals(null, Channels.unixPath("127.0.0.1:50051"));
  }
}
