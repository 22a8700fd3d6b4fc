package dev.ess.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ess.v1.CheckOrderResponse;
import dev.ess.v1.CheckOrderStreamResponse;
import dev.ess.v1.DecisionReason;
import dev.ess.v1.HeartbeatRequest;
import dev.ess.v1.OrderStatus;
import dev.ess.v1.Position;
import dev.ess.v1.ReportFillRequest;
import dev.ess.v1.ReportOrderUpdateRequest;
import dev.ess.v1.RequestError;
import dev.ess.v1.SyncPositionsRequest;
import io.grpc.Status;
import io.grpc.inprocess.InProcessChannelBuilder;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;
import java.util.function.LongSupplier;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The client against an in-process fake sidecar: fail-closed rules, deadlines, ids. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class GuardClientTest {
  /** Generous: a loaded 2-core machine stalls threads for tens of ms. */
  private static final Duration ANSWER = Duration.ofSeconds(5);
  private static final long SLACK_MS = 500;

  private FakeGuard fake;
  private GuardClient client;
  private final List<LogRecord> logged = new ArrayList<>();
  private final Logger logger = Logger.getLogger("dev.ess.client.test." + System.nanoTime());

  @BeforeEach
  void setUp() throws Exception {
    fake = new FakeGuard().start();
    logger.setUseParentHandlers(false);
    logger.addHandler(new Handler() {
      @Override
      public void publish(LogRecord record) {
        synchronized (logged) {
          logged.add(record);
        }
      }

      @Override
      public void flush() {}

      @Override
      public void close() {}
    });
  }

  @AfterEach
  void tearDown() {
    if (client != null) {
      client.close();
    }
    fake.stop();
  }

  private GuardClient.Builder builder() {
    return GuardClient.builder(fake.channel()).logger(logger)
        .reconnectBackoff(Duration.ofMillis(10), Duration.ofMillis(100));
  }

  private GuardClient connected(GuardClient.Builder builder) {
    client = builder.build();
    assertTrue(client.connect(ANSWER), "the client never connected");
    return client;
  }

  private static Order order(String clientOrderId) {
    return Order.builder().account("acc-1").strategy("momo").symbol("AAPL").side(Side.BUY)
        .quantity(1).price(100).clientOrderId(clientOrderId).build();
  }

  private static void eventually(BooleanSupplier condition, String what) throws Exception {
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!condition.getAsBoolean()) {
      assertTrue(System.nanoTime() < end, "never: " + what);
      Thread.sleep(5);
    }
  }

  /** Checks (generous deadline) until one is allowed: the client found a good stream. */
  private Verdict allowedEventually() throws Exception {
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (true) {
      Verdict verdict = client.check(order(""), Duration.ofMillis(200));
      if (verdict.allowed()) {
        return verdict;
      }
      assertTrue(System.nanoTime() < end, "never allowed again: " + verdict);
      Thread.sleep(10);
    }
  }

  // ---- Decisions of the sidecar. ----

  @Test
  void allowedCheckCarriesTheDecision() {
    connected(builder());
    Verdict verdict = client.check(order("o-1"), ANSWER);
    assertTrue(verdict.allowed(), verdict.toString());
    assertEquals(Cause.NONE, verdict.cause());
    assertEquals("ALLOWED", verdict.reasonName());
    assertEquals("d-o-1", verdict.decisionId());
    assertEquals("o-1", verdict.clientOrderId());
    assertEquals(7, verdict.stateVersion());
    assertEquals("o-1", fake.streamRequests.get(0).getOrder().getClientOrderId());
    assertEquals(1, client.streamsOpened());
    assertTrue(client.failures().isEmpty());
  }

  @Test
  void aDenialOfTheSidecarIsNotAFailure() {
    fake.stream = FakeGuard.answering(CheckOrderResponse.newBuilder().setAllowed(false)
        .setReason(DecisionReason.DECISION_REASON_SCOPE_TRIPPED).setMessage("halted")
        .setBlockingScope(Scopes.strategy("momo")).build());
    connected(builder());
    Verdict verdict = client.check(order("o-1"), ANSWER);
    assertFalse(verdict.allowed());
    assertFalse(verdict.failedClosed());
    assertEquals("SCOPE_TRIPPED", verdict.reasonName());
    assertEquals("STRATEGY:momo", verdict.blockingScope());
    assertEquals("halted", verdict.message());
    assertTrue(client.failures().isEmpty());
  }

  @Test
  void generatesClientOrderIdsWhenNoneIsGiven() {
    connected(builder());
    Verdict first = client.check(order(null), ANSWER);
    Verdict second = client.check(order(""), ANSWER);
    assertTrue(first.clientOrderId().matches("[0-9a-f]{12}-1"), first.clientOrderId());
    assertTrue(second.clientOrderId().matches("[0-9a-f]{12}-2"), second.clientOrderId());
    assertEquals(first.clientOrderId(), fake.streamRequests.get(0).getOrder().getClientOrderId());
    assertEquals("d-" + second.clientOrderId(), second.decisionId());
    try (GuardClient other = builder().build()) {
      assertNotEquals(first.clientOrderId().substring(0, 12),
          other.newClientOrderId().substring(0, 12));
    }
  }

  @Test
  void sendsTheWholeOrder() {
    connected(builder());
    client.check(Order.builder().account("a").strategy("s").symbol("X").side(Side.SELL)
        .quantity(2.5).price(3.5).reduceOnly(true).clientOrderId("new")
        .replacesClientOrderId("old").build(), ANSWER);
    var sent = fake.streamRequests.get(0).getOrder();
    assertEquals("a", sent.getAccount());
    assertEquals("s", sent.getStrategy());
    assertEquals("X", sent.getSymbol());
    assertEquals(dev.ess.v1.Side.SIDE_SELL, sent.getSide());
    assertEquals(2.5, sent.getQuantity());
    assertEquals(3.5, sent.getPrice());
    assertTrue(sent.getReduceOnly());
    assertEquals("new", sent.getClientOrderId());
    assertEquals("old", sent.getReplacesClientOrderId());
  }

  // ---- Malformed answers. ----

  private void assertMalformed(CheckOrderResponse decision) {
    fake.stream = FakeGuard.answering(decision);
    Verdict verdict = client.check(order(""), ANSWER);
    assertFalse(verdict.allowed(), verdict.toString());
    assertEquals(Cause.MALFORMED, verdict.cause(), verdict.toString());
    assertEquals(Verdict.CLIENT_FAIL_CLOSED, verdict.reasonName());
  }

  @Test
  void untrustworthyDecisionsFailClosed() {
    connected(builder());
    assertMalformed(CheckOrderResponse.newBuilder().setAllowed(true).setReasonValue(99).build());
    assertMalformed(CheckOrderResponse.newBuilder().setAllowed(false).setReasonValue(99).build());
    assertMalformed(CheckOrderResponse.newBuilder().setAllowed(true)
        .setReason(DecisionReason.DECISION_REASON_UNSPECIFIED).build());
    assertMalformed(CheckOrderResponse.newBuilder().setAllowed(true)
        .setReason(DecisionReason.DECISION_REASON_SCOPE_TRIPPED).build());
    assertMalformed(CheckOrderResponse.newBuilder().setAllowed(false)
        .setReason(DecisionReason.DECISION_REASON_ALLOWED).build());
    assertEquals(5L, client.failures().get(Cause.MALFORMED));
    // A bad decision is that answer's problem: the stream itself stays.
    assertEquals(1, client.streamsOpened());
  }

  @Test
  void anAnswerWithNeitherDecisionNorErrorFailsClosed() {
    fake.stream = (request, out) -> out.onNext(
        CheckOrderStreamResponse.newBuilder().setRequestId(request.getRequestId()).build());
    connected(builder());
    assertEquals(Cause.MALFORMED, client.check(order(""), ANSWER).cause());
  }

  @Test
  void aRequestErrorNamesTheField() {
    fake.stream = (request, out) -> out.onNext(CheckOrderStreamResponse.newBuilder()
        .setRequestId(request.getRequestId())
        .setError(RequestError.newBuilder().setCode(3).setField("order.quantity")
            .setMessage("quantity: must be > 0"))
        .build());
    connected(builder());
    Verdict verdict = client.check(order("bad"), ANSWER);
    assertFalse(verdict.allowed());
    assertEquals(Cause.REQUEST_ERROR, verdict.cause());
    assertEquals("order.quantity", verdict.field());
    assertEquals("quantity: must be > 0", verdict.message());
    fake.stream = FakeGuard::allow;
    assertTrue(client.check(order("good"), ANSWER).allowed());
    assertEquals(1, client.streamsOpened());
  }

  @Test
  void aWrongRequestIdBreaksTheStreamAndItIsReplaced() throws Exception {
    fake.stream = (request, out) -> out.onNext(
        FakeGuard.allowed(request).toBuilder().setRequestId(request.getRequestId() + 100).build());
    connected(builder());
    Verdict verdict = client.check(order("o-1"), ANSWER);
    assertFalse(verdict.allowed());
    assertEquals(Cause.MALFORMED, verdict.cause());
    assertTrue(verdict.message().contains("expected"), verdict.message());
    fake.stream = FakeGuard::allow;
    allowedEventually();
    assertTrue(client.streamsOpened() >= 2, "the stream was not replaced");
  }

  @Test
  void anAnswerToNoRequestBreaksTheStream() throws Exception {
    fake.stream = (request, out) -> {
      out.onNext(FakeGuard.allowed(request));
      out.onNext(FakeGuard.allowed(request));
    };
    connected(builder());
    assertTrue(client.check(order("o-1"), ANSWER).allowed());
    eventually(() -> client.streamsOpened() >= 2, "the stream replaced");
    assertTrue(client.failures().isEmpty(), "no check was denied by it");
  }

  // ---- Matching answers to checks. ----

  @Test
  void manyThreadsGetTheirOwnAnswers() throws Exception {
    connected(builder());
    int threads = 8;
    int each = 300;
    AtomicInteger wrong = new AtomicInteger();
    AtomicInteger notAllowed = new AtomicInteger();
    CountDownLatch done = new CountDownLatch(threads);
    for (int t = 0; t < threads; t++) {
      int thread = t;
      new Thread(() -> {
        for (int i = 0; i < each; i++) {
          String id = "t" + thread + "-" + i;
          Verdict verdict = client.check(order(id), ANSWER);
          if (!verdict.allowed()) {
            notAllowed.incrementAndGet();
          } else if (!verdict.decisionId().equals("d-" + id)) {
            wrong.incrementAndGet();
          }
        }
        done.countDown();
      }).start();
    }
    assertTrue(done.await(50, TimeUnit.SECONDS));
    assertEquals(0, wrong.get(), "answers given to the wrong check");
    assertEquals(0, notAllowed.get(), "checks not allowed: " + client.failures());
    assertEquals(1, client.streamsOpened());
  }

  @Test
  void asyncChecksGetTheirOwnAnswers() {
    connected(builder());
    List<CompletableFuture<Verdict>> futures = new ArrayList<>();
    for (int i = 0; i < 200; i++) {
      futures.add(client.checkAsync(order("a-" + i), ANSWER));
    }
    for (int i = 0; i < 200; i++) {
      Verdict verdict = futures.get(i).join();
      assertTrue(verdict.allowed(), verdict.toString());
      assertEquals("d-a-" + i, verdict.decisionId());
      assertEquals("a-" + i, verdict.clientOrderId());
    }
  }

  // ---- Deadlines. ----

  @Test
  void aMissedDeadlineIsADenialAndTheLateAnswerGoesToNoOne() throws Exception {
    fake.stream = fake.holding();
    connected(builder());
    long started = System.nanoTime();
    Verdict late = client.check(order("slow"), Duration.ofMillis(20));
    long tookMs = (System.nanoTime() - started) / 1_000_000;
    assertFalse(late.allowed());
    assertEquals(Cause.DEADLINE, late.cause());
    assertEquals("slow", late.clientOrderId());
    assertTrue(tookMs < 20 + SLACK_MS, "took " + tookMs + " ms");
    // The sidecar answers it late; the next check must get its own answer, not that one.
    fake.stream = FakeGuard::allow;
    fake.held.take().allow();
    Verdict next = client.check(order("next"), ANSWER);
    assertTrue(next.allowed(), next.toString());
    assertEquals("d-next", next.decisionId());
    assertEquals(1, client.streamsOpened());
    assertEquals(Map.of(Cause.DEADLINE, 1L), client.failures());
  }

  @Test
  void anAnswerAfterTheDeadlineIsADenialEvenWhenItIsThere() {
    // The fake moves the clock an hour on before it answers "LATE": the answer is there but
    // the deadline has passed, as when a wait ends with both at once.
    AtomicLong skew = new AtomicLong();
    LongSupplier real = GuardClient.clock;
    GuardClient.clock = () -> System.nanoTime() + skew.get();
    try {
      fake.stream = (request, out) -> {
        if (request.getOrder().getSymbol().equals("LATE")) {
          skew.set(TimeUnit.HOURS.toNanos(1));
        }
        FakeGuard.allow(request, out);
      };
      connected(builder());
      Order late = Order.builder().account("acc-1").strategy("momo").symbol("LATE")
          .side(Side.BUY).quantity(1).price(100).build();
      assertEquals(Cause.DEADLINE, client.check(late, ANSWER).cause());
      skew.set(0);
      assertEquals(Cause.DEADLINE, client.checkAsync(late, ANSWER).join().cause());
      skew.set(0);
      // The unary check too (review 35: it took whatever the blocking stub returned).
      fake.unary = request -> {
        skew.set(request.getSymbol().equals("LATE") ? TimeUnit.HOURS.toNanos(1) : 0);
        return FakeGuard.decision(true, DecisionReason.DECISION_REASON_ALLOWED, "u");
      };
      assertEquals(Cause.DEADLINE, client.checkUnary(late, ANSWER).cause());
      skew.set(0);
      Verdict onTime = client.check(order("on-time"), ANSWER);
      assertTrue(onTime.allowed(), onTime.toString());
      Verdict unaryOnTime = client.checkUnary(order("on-time-unary"), ANSWER);
      assertTrue(unaryOnTime.allowed(), unaryOnTime.toString());
    } finally {
      GuardClient.clock = real;
    }
  }

  @Test
  void anAnswerThatComesWithAnInterruptIsJudgedByTheDeadline() {
    // The answer came between the interrupt and the check's giving up (review 35: taken).
    CheckStream.Pending answered = new CheckStream.Pending(1, System.nanoTime());
    answered.complete(Verdict.fromDecision(
        FakeGuard.decision(true, DecisionReason.DECISION_REASON_ALLOWED, "d")));
    long d = TimeUnit.MILLISECONDS.toNanos(5);
    long passed = System.nanoTime() - 1;
    long ahead = System.nanoTime() + TimeUnit.HOURS.toNanos(1);
    assertEquals(Cause.DEADLINE, GuardClient.interrupted(answered, passed, d).cause());
    assertTrue(GuardClient.interrupted(answered, ahead, d).allowed());
    CheckStream.Pending waiting = new CheckStream.Pending(2, System.nanoTime());
    assertEquals(Cause.CANCELED, GuardClient.interrupted(waiting, ahead, d).cause());
  }

  @Test
  void theDefaultDeadlineIsFiveMilliseconds() {
    fake.stream = fake.holding();
    connected(builder());
    assertEquals(Duration.ofMillis(5), client.deadline());
    long started = System.nanoTime();
    Verdict verdict = client.check(order(""));
    long tookMs = (System.nanoTime() - started) / 1_000_000;
    assertEquals(Cause.DEADLINE, verdict.cause());
    assertTrue(verdict.message().contains("5 ms"), verdict.message());
    assertTrue(tookMs < 5 + SLACK_MS, "took " + tookMs + " ms");
  }

  @Test
  void theClientDeadlineIsConfigurable() {
    fake.stream = fake.holding();
    connected(builder().deadline(Duration.ofMillis(30)));
    long started = System.nanoTime();
    Verdict verdict = client.check(order(""));
    long tookMs = (System.nanoTime() - started) / 1_000_000;
    assertEquals(Cause.DEADLINE, verdict.cause());
    assertTrue(tookMs >= 29, "took " + tookMs + " ms");
  }

  @Test
  void anAsyncCheckCompletesAtItsDeadline() {
    fake.stream = fake.holding();
    connected(builder());
    long started = System.nanoTime();
    Verdict verdict = client.checkAsync(order("async"), Duration.ofMillis(20)).join();
    long tookMs = (System.nanoTime() - started) / 1_000_000;
    assertEquals(Cause.DEADLINE, verdict.cause());
    assertEquals("async", verdict.clientOrderId());
    assertTrue(tookMs >= 19 && tookMs < 20 + SLACK_MS, "took " + tookMs + " ms");
  }

  @Test
  void aHungStreamIsReplaced() throws Exception {
    fake.stream = fake.holding();
    connected(builder().stallAfter(Duration.ofMillis(100)));
    assertEquals(Cause.DEADLINE, client.check(order(""), Duration.ofMillis(10)).cause());
    Thread.sleep(150);
    assertEquals(Cause.DEADLINE, client.check(order(""), Duration.ofMillis(10)).cause());
    fake.stream = FakeGuard::allow;
    allowedEventually();
    assertTrue(client.streamsOpened() >= 2, "the hung stream was not replaced");
  }

  // ---- A broken stream, an unreachable sidecar, refusals. ----

  @Test
  void aBrokenStreamDeniesItsChecksAndIsReplaced() throws Exception {
    fake.stream = (request, out) -> out.onError(Status.INTERNAL.withDescription("boom").asRuntimeException());
    connected(builder());
    Verdict verdict = client.check(order(""), ANSWER);
    assertFalse(verdict.allowed());
    assertEquals(Cause.STREAM_BROKEN, verdict.cause());
    assertTrue(verdict.message().contains("boom"), verdict.message());
    fake.stream = FakeGuard::allow;
    allowedEventually();
    assertTrue(client.streamsOpened() >= 2);
  }

  @Test
  void checksInFlightOnABrokenStreamAreDeniedAtOnce() throws Exception {
    fake.stream = fake.holding();
    connected(builder());
    CompletableFuture<Verdict> inFlight = client.checkAsync(order("in-flight"), ANSWER);
    FakeGuard.Held held = fake.held.take();
    long started = System.nanoTime();
    synchronized (held.out()) {
      held.out().onError(Status.UNAVAILABLE.withDescription("going away").asRuntimeException());
    }
    Verdict verdict = inFlight.get(ANSWER.toMillis(), TimeUnit.MILLISECONDS);
    assertEquals(Cause.UNAVAILABLE, verdict.cause());
    assertTrue((System.nanoTime() - started) / 1_000_000 < SLACK_MS);
  }

  @Test
  void aStreamTheSidecarEndsIsBroken() {
    fake.stream = (request, out) -> out.onCompleted();
    connected(builder());
    Verdict verdict = client.check(order(""), ANSWER);
    assertEquals(Cause.STREAM_BROKEN, verdict.cause());
    assertTrue(verdict.message().contains("ended the stream"), verdict.message());
  }

  @Test
  void aRefusalFailsClosed() {
    fake.stream = (request, out) -> out.onError(
        Status.UNAUTHENTICATED.withDescription("no token").asRuntimeException());
    connected(builder());
    Verdict verdict = client.check(order(""), ANSWER);
    assertEquals(Cause.REFUSED, verdict.cause());
    assertEquals(Verdict.CLIENT_FAIL_CLOSED, verdict.reasonName());
  }

  @Test
  void anUnreachableSidecarFailsClosedWithinTheDeadline() {
    client = GuardClient.builder(
        InProcessChannelBuilder.forName("nobody-" + System.nanoTime()).directExecutor().build())
        .logger(logger).build();
    assertFalse(client.connect(Duration.ofMillis(100)));
    for (int i = 0; i < 3; i++) {
      long started = System.nanoTime();
      Verdict verdict = client.check(order(""));
      long tookMs = (System.nanoTime() - started) / 1_000_000;
      assertFalse(verdict.allowed());
      assertTrue(verdict.cause() == Cause.UNAVAILABLE || verdict.cause() == Cause.DEADLINE,
          verdict.toString());
      assertTrue(tookMs < 5 + SLACK_MS, "took " + tookMs + " ms");
    }
    long failed = client.failures().values().stream().mapToLong(Long::longValue).sum();
    assertEquals(3, failed);
  }

  @Test
  void asyncChecksThatTimedOutWhileConnectingHoldNothing() throws Exception {
    // A sidecar stuck mid-connect: it takes the connection and never says a word (not even
    // HTTP/2 settings), so no stream is ever ready and the channel never fails either.
    try (ServerSocket silent = new ServerSocket(0, 50, InetAddress.getLoopbackAddress())) {
      List<Socket> taken = new CopyOnWriteArrayList<>();
      Thread acceptor = new Thread(() -> {
        try {
          while (true) {
            taken.add(silent.accept());
          }
        } catch (IOException e) {
          // closed
        }
      });
      acceptor.setDaemon(true);
      acceptor.start();
      client = GuardClient.builder("127.0.0.1:" + silent.getLocalPort()).logger(logger).build();
      List<CompletableFuture<Verdict>> checks = new ArrayList<>();
      for (int i = 0; i < 200; i++) {
        checks.add(client.checkAsync(order(""), Duration.ofMillis(5)));
      }
      for (CompletableFuture<Verdict> check : checks) {
        assertEquals(Cause.DEADLINE, check.get(10, TimeUnit.SECONDS).cause());
      }
      // Review 35: each left a callback on the future a stream would complete.
      assertEquals(0, client.waitingForStream());
      client.close();
      for (Socket socket : taken) {
        socket.close();
      }
    }
    // Those that wait for a stream within their deadline are sent once it is there.
    client = builder().build();
    List<CompletableFuture<Verdict>> early = new ArrayList<>();
    for (int i = 0; i < 20; i++) {
      early.add(client.checkAsync(order("early-" + i), ANSWER));
    }
    for (CompletableFuture<Verdict> check : early) {
      Verdict verdict = check.get(10, TimeUnit.SECONDS);
      assertTrue(verdict.allowed(), verdict.toString());
    }
    assertEquals(0, client.waitingForStream());
  }

  @Test
  void theClientReconnectsToARestartedSidecar() throws Exception {
    connected(builder());
    assertTrue(client.check(order(""), ANSWER).allowed());
    fake.stop();
    Verdict down = client.check(order(""), Duration.ofMillis(50));
    assertFalse(down.allowed());
    assertTrue(down.failedClosed());
    fake.start();
    allowedEventually();
  }

  // ---- The token, the unary check, the other RPCs. ----

  /** Review 54e: stripped of the space, tab, CR and LF around it, as by the sidecar. */
  @Test
  void theTokenGoesWithEveryCall() {
    connected(builder().token(" \ts3cret\r\n"));
    client.check(order(""), ANSWER);
    client.checkUnary(order(""), ANSWER);
    client.reportFill(new Fill("acc-1", "momo", "AAPL", Side.BUY, 1, 100, "o-1", "f-1"));
    assertFalse(fake.authorizations.isEmpty());
    for (String authorization : fake.authorizations) {
      assertEquals("Bearer s3cret", authorization);
    }
  }

  /**
   * Review 54e: a token with a byte outside 0x20-0x7E was taken; gRPC-Java dropped the header,
   * logged the whole token, and the denial said "no credentials". Now Python's rule: stripped,
   * then refused at build, naming the byte's position, not the token.
   */
  @Test
  void aTokenOutsidePrintableAsciiIsRefusedWithoutPrintingIt() {
    Map<String, String> refused = Map.of("zq\r9", "byte 2 ", "\tzq\n9", "byte 3 ",
        "z\tq9", "byte 1 ", "z\0q9", "byte 1 ", "zq9\u007f", "byte 3 ", "zq9\u00f6", "byte 3 ");
    refused.forEach((token, at) -> {
      InvalidTokenException e = assertThrows(InvalidTokenException.class,
          () -> GuardClient.builder("localhost:1").token(token).build(), token);
      assertTrue(e.getMessage().contains(at), e.getMessage());
      assertFalse(e.getMessage().contains("q9"), "the token is printed: " + e.getMessage());
    });
    GuardClient.builder("localhost:1").token(" printable ~ASCII! ").build().close();
    GuardClient.builder("localhost:1").token(" \r\n").build().close(); // empty: no token
  }

  @Test
  void checkUnaryFollowsTheSameRules() {
    connected(builder());
    Verdict allowed = client.checkUnary(order("u-1"), ANSWER);
    assertTrue(allowed.allowed(), allowed.toString());
    assertEquals("d-u-1", allowed.decisionId());
    fake.unary = request -> CheckOrderResponse.newBuilder().setAllowed(true)
        .setReason(DecisionReason.DECISION_REASON_PRICE_BAND).build();
    assertEquals(Cause.MALFORMED, client.checkUnary(order(""), ANSWER).cause());
    fake.unary = request -> {
      throw Status.INVALID_ARGUMENT.withDescription("quantity").asRuntimeException();
    };
    assertEquals(Cause.REQUEST_ERROR, client.checkUnary(order(""), ANSWER).cause());
    fake.unary = request -> {
      throw Status.UNAVAILABLE.asRuntimeException();
    };
    assertEquals(Cause.UNAVAILABLE, client.checkUnary(order(""), ANSWER).cause());
    fake.unary = request -> {
      try {
        Thread.sleep(200);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      return FakeGuard.decision(true, DecisionReason.DECISION_REASON_ALLOWED, "late");
    };
    Verdict late = client.checkUnary(order("u-late"), Duration.ofMillis(20));
    assertEquals(Cause.DEADLINE, late.cause());
    assertEquals("u-late", late.clientOrderId());
  }

  /**
   * An OPEN update built without a remaining quantity is sent without one, never as 0 left
   * (which would release a live order's reservation): the sidecar refuses it. An explicit 0
   * (filled in full, fills not reported yet) is sent as 0; ended() refuses OPEN.
   */
  @Test
  void anOpenUpdateWithoutRemainingIsNotSentAsZero() throws Exception {
    connected(builder());
    assertThrows(IllegalArgumentException.class,
        () -> OrderUpdate.ended("acc-1", "o-1", OrderStatus.ORDER_STATUS_OPEN));
    assertThrows(IllegalArgumentException.class,
        () -> OrderUpdate.ended("acc-1", "o-1", OrderStatus.ORDER_STATUS_UNSPECIFIED));
    assertThrows(IllegalArgumentException.class, () -> OrderUpdate.ended("acc-1", "o-1", null));
    for (OrderStatus status : List.of(OrderStatus.ORDER_STATUS_CANCELLED,
        OrderStatus.ORDER_STATUS_REJECTED, OrderStatus.ORDER_STATUS_EXPIRED)) {
      assertEquals(status, OrderUpdate.ended("acc-1", "o-1", status).status());
    }
    client.reportOrderUpdate(
        new OrderUpdate("acc-1", "o-1", OrderStatus.ORDER_STATUS_OPEN, null, null));
    ReportOrderUpdateRequest unset = (ReportOrderUpdateRequest) fake.calls.take();
    assertEquals(OrderStatus.ORDER_STATUS_OPEN, unset.getStatus());
    assertFalse(unset.hasRemainingQuantity(), () -> "sent as " + unset.getRemainingQuantity());
    client.reportOrderUpdate(OrderUpdate.open("acc-1", "o-1", 0).withFilledQuantity(2));
    ReportOrderUpdateRequest filledInFull = (ReportOrderUpdateRequest) fake.calls.take();
    assertTrue(filledInFull.hasRemainingQuantity());
    assertEquals(0.0, filledInFull.getRemainingQuantity());
    assertEquals(2.0, filledInFull.getFilledQuantity());
  }

  @Test
  void fillsUpdatesAndSnapshots() throws Exception {
    connected(builder());
    assertThrows(IllegalArgumentException.class,
        () -> new Fill("acc-1", "momo", "AAPL", Side.BUY, 1, 100, "o-1", ""));
    assertThrows(IllegalArgumentException.class,
        () -> new Fill("acc-1", "momo", "AAPL", Side.BUY, 1, 100, null, "f-1"));
    assertEquals(2.0, client.reportFill(
        new Fill("acc-1", "momo", "AAPL", Side.SELL, 2, 101, "o-1", "f-1")).getPosition());
    ReportFillRequest fill = (ReportFillRequest) fake.calls.take();
    assertEquals("o-1", fill.getClientOrderId());
    assertEquals("f-1", fill.getFillId());
    assertEquals(dev.ess.v1.Side.SIDE_SELL, fill.getSide());

    assertTrue(client.reportOrderUpdate(OrderUpdate.open("acc-1", "o-1", 0.5)).getKnown());
    ReportOrderUpdateRequest open = (ReportOrderUpdateRequest) fake.calls.take();
    assertTrue(open.hasRemainingQuantity());
    assertEquals(0.5, open.getRemainingQuantity());
    client.reportOrderUpdate(
        OrderUpdate.ended("acc-1", "o-1", OrderStatus.ORDER_STATUS_CANCELLED));
    ReportOrderUpdateRequest cancelled = (ReportOrderUpdateRequest) fake.calls.take();
    assertFalse(cancelled.hasRemainingQuantity());
    assertEquals(OrderStatus.ORDER_STATUS_CANCELLED, cancelled.getStatus());
    assertFalse(open.hasFilledQuantity());
    assertFalse(cancelled.hasFilledQuantity());
    client.reportOrderUpdate(OrderUpdate.open("acc-1", "o-1", 0.5).withFilledQuantity(1.5));
    ReportOrderUpdateRequest openFilled = (ReportOrderUpdateRequest) fake.calls.take();
    assertTrue(openFilled.hasFilledQuantity());
    assertEquals(1.5, openFilled.getFilledQuantity());
    assertEquals(0.5, openFilled.getRemainingQuantity());
    client.reportOrderUpdate(OrderUpdate.ended("acc-1", "o-1", OrderStatus.ORDER_STATUS_EXPIRED)
        .withFilledQuantity(0));
    ReportOrderUpdateRequest endedFilled = (ReportOrderUpdateRequest) fake.calls.take();
    assertTrue(endedFilled.hasFilledQuantity(), "a filled quantity of 0 is sent");
    assertEquals(0.0, endedFilled.getFilledQuantity());
    assertFalse(endedFilled.hasRemainingQuantity());
    client.reportOrderUpdate(new OrderUpdate(
        "acc-1", "o-1", OrderStatus.ORDER_STATUS_CANCELLED, null, null));
    assertFalse(((ReportOrderUpdateRequest) fake.calls.take()).hasFilledQuantity());

    Position position = Position.newBuilder().setStrategy("momo").setSymbol("AAPL")
        .setQuantity(3).setMarkPrice(100).build();
    assertEquals(1, client.syncPositions(Snapshot.of("acc-1", 1e6, List.of(position)))
        .getPositions());
    SyncPositionsRequest sync = (SyncPositionsRequest) fake.calls.take();
    assertEquals(1e6, sync.getEquity());
    assertFalse(sync.getOpenOrdersComplete());
  }

  @Test
  void theHeartbeatBeatsAndDeregistersOnStop() throws Exception {
    connected(builder());
    Heartbeater heartbeat = client.startHeartbeat("exec-1", Scopes.strategy("momo"),
        Duration.ofMillis(300));
    eventually(() -> fake.calls.size() >= 3, "three heartbeats");
    assertEquals(dev.ess.v1.State.STATE_ARMED, heartbeat.state());
    assertNotNull(heartbeat.stop());
    assertFalse(heartbeat.running());
    List<Object> calls = new ArrayList<>(fake.calls);
    HeartbeatRequest last = (HeartbeatRequest) calls.get(calls.size() - 1);
    assertTrue(last.getDeregister());
    assertEquals("exec-1", last.getExecutorId());
    assertEquals(300, last.getTtlMs());
    for (Object call : calls.subList(0, calls.size() - 1)) {
      assertFalse(((HeartbeatRequest) call).getDeregister());
    }
    int after = fake.calls.size();
    Thread.sleep(250);
    assertEquals(after, fake.calls.size(), "it still beats after stop");
    assertEquals(null, heartbeat.stop(), "only the first stop deregisters");
  }

  /**
   * Review 42e: an interval not shorter than the ttl was taken, and the scope of a live executor
   * tripped for a missed heartbeat while its Heartbeater ran (Python's refuses it).
   */
  @Test
  void aHeartbeatIntervalNotShorterThanTheTtlIsRefused() throws Exception {
    connected(builder());
    int before = fake.calls.size();
    Duration[][] refused = {
        {Duration.ofMillis(300), Duration.ofMillis(300)},
        {Duration.ofMillis(300), Duration.ofSeconds(1)},
        {Duration.ofMillis(300), Duration.ZERO},
        {Duration.ofMillis(300), Duration.ofMillis(-1)},
        {Duration.ofNanos(1_900_000), Duration.ofNanos(1_500_000)}, // the ttl is sent as 1 ms
    };
    for (Duration[] c : refused) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> client.startHeartbeat("exec-1", Scopes.strategy("momo"), c[0], c[1], null),
          () -> "ttl " + c[0] + ", interval " + c[1]);
      assertTrue(e.getMessage().contains("heartbeat interval"), e.getMessage());
    }
    assertEquals(before, fake.calls.size(), "a refused heartbeat was sent");
    // The default (ttl/3) is shorter than the ttl, even the shortest.
    Heartbeater shortest = client.startHeartbeat("exec-1", Scopes.strategy("momo"),
        Duration.ofMillis(1));
    assertNotNull(shortest.stop());
  }

  /**
   * A heartbeat closed by an exception leaving its try-with-resources block (an executor that
   * died) stops beating but does not deregister: the registration stays, so the scope trips
   * when the ttl lapses. Only stop() deregisters, once, even after close().
   */
  @Test
  void aHeartbeatClosedByAnExceptionStopsBeatingWithoutDeregistering() throws Exception {
    connected(builder());
    Heartbeater[] opened = new Heartbeater[1];
    IllegalStateException died = assertThrows(IllegalStateException.class, () -> {
      try (Heartbeater heartbeat = client.startHeartbeat("exec-1", Scopes.strategy("momo"),
          Duration.ofMillis(300))) {
        opened[0] = heartbeat;
        eventually(() -> fake.calls.size() >= 2, "two heartbeats");
        throw new IllegalStateException("the executor died");
      }
    });
    assertEquals("the executor died", died.getMessage());
    assertFalse(opened[0].running());
    int after = fake.calls.size();
    Thread.sleep(250);
    assertEquals(after, fake.calls.size(), "it still beats after close");
    for (Object call : fake.calls) {
      assertFalse(((HeartbeatRequest) call).getDeregister(), "close() deregistered");
    }

    assertNotNull(opened[0].stop(), "an explicit stop after close deregisters");
    HeartbeatRequest last = (HeartbeatRequest) new ArrayList<>(fake.calls).get(after);
    assertTrue(last.getDeregister());
    assertEquals(null, opened[0].stop(), "only the first stop deregisters");
    opened[0].close();
    assertEquals(after + 1, fake.calls.size());
  }

  /** The clean shutdown in a try-with-resources block: stop() deregisters, close() adds none. */
  @Test
  void aHeartbeatStoppedInItsBlockDeregistersOnce() throws Exception {
    connected(builder());
    try (Heartbeater heartbeat = client.startHeartbeat("exec-1", Scopes.strategy("momo"),
        Duration.ofMillis(300))) {
      assertNotNull(heartbeat.stop());
    }
    List<Object> calls = new ArrayList<>(fake.calls);
    long deregistrations = calls.stream()
        .filter(call -> ((HeartbeatRequest) call).getDeregister()).count();
    assertEquals(1, deregistrations, calls::toString);
    assertTrue(((HeartbeatRequest) calls.get(calls.size() - 1)).getDeregister());
  }

  /**
   * The first beat (startHeartbeat's own, which may pay for connecting) has the whole rpc
   * timeout, not the interval that bounds the later ones.
   */
  @Test
  void theFirstHeartbeatHasTheWholeRpcTimeout() throws Exception {
    connected(builder().rpcTimeout(ANSWER));
    fake.heartbeatDelays.add(Duration.ofMillis(300));
    Heartbeater heartbeat = client.startHeartbeat("exec-1", Scopes.strategy("momo"),
        Duration.ofSeconds(3), Duration.ofMillis(50), null);
    assertEquals(dev.ess.v1.State.STATE_ARMED, heartbeat.state());
    assertEquals(null, heartbeat.lastError());
    assertNotNull(heartbeat.stop());
  }

  /**
   * Review 54b: the daemon thread beat on a timer, so a trading loop that died or hung in a
   * process that lived on never tripped its scope. With alive, a beat is sent only while it
   * returns true; false or a throw withholds it, counted and logged once each way.
   */
  @Test
  void withAliveABeatIsSentOnlyWhileItReturnsTrue() throws Exception {
    connected(builder());
    AtomicInteger askedDown = new AtomicInteger();
    AtomicBoolean up = new AtomicBoolean(true);
    CountDownLatch withheld = new CountDownLatch(6);
    Heartbeater heartbeat = client.startHeartbeat("exec-1", Scopes.strategy("momo"),
        Duration.ofMillis(300), Duration.ofMillis(20), null, () -> {
          if (up.get()) {
            return true;
          }
          withheld.countDown();
          if (askedDown.incrementAndGet() > 3) { // a predicate that throws is not alive
            throw new IllegalStateException("the loop's state is unreadable");
          }
          return false;
        });
    eventually(() -> fake.calls.size() >= 2, "two heartbeats");
    up.set(false);
    int sent = fake.calls.size(); // a beat past its check may still land: + 1
    assertTrue(withheld.await(10, TimeUnit.SECONDS), "alive never asked");
    assertTrue(fake.calls.size() <= sent + 1, "a beat sent while not alive");
    // alive answers before the skip is counted: the sixth is counted a moment after
    eventually(() -> heartbeat.skipped() >= 6, "six beats skipped");
    assertTrue(heartbeat.running());
    assertEquals(1, aliveLines().size(), aliveLines()::toString); // once, when it went
    up.set(true);
    int before = fake.calls.size();
    eventually(() -> fake.calls.size() >= before + 2, "beats resumed");
    assertEquals(2, aliveLines().size(), aliveLines()::toString); // and when it came back
    assertTrue(aliveLines().get(1).contains("beats resume"), aliveLines()::toString);
    assertNotNull(heartbeat.stop());
  }

  private List<String> aliveLines() {
    synchronized (logged) {
      return logged.stream().map(LogRecord::getMessage).filter(m -> m.contains("alive"))
          .toList();
    }
  }

  /**
   * Review 54e: an alive that blocked past stop's wait, then returned true, sent a beat after
   * the deregistration, and the scope tripped after a clean shutdown. Now no beat follows it.
   */
  @Test
  void noBeatFollowsTheDeregistrationWhenAliveBlocksThroughStop() throws Exception {
    connected(builder().rpcTimeout(Duration.ofMillis(50)));
    AtomicBoolean block = new AtomicBoolean();
    CountDownLatch blocking = new CountDownLatch(1);
    CountDownLatch release = new CountDownLatch(1);
    Thread[] beating = new Thread[1];
    Heartbeater heartbeat = client.startHeartbeat("exec-1", Scopes.strategy("momo"),
        Duration.ofMillis(300), Duration.ofMillis(10), null, () -> {
          if (block.get()) {
            beating[0] = Thread.currentThread();
            blocking.countDown();
            try {
              release.await(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
              return false;
            }
          }
          return true;
        });
    block.set(true);
    assertTrue(blocking.await(10, TimeUnit.SECONDS), "alive never blocked");
    assertNotNull(heartbeat.stop()); // after its wait for the tick (60 ms) runs out
    release.countDown();
    beating[0].join(10_000); // the tick has ended: the scheduler's thread with it
    assertFalse(beating[0].isAlive(), "the heartbeat thread still runs");
    List<Object> calls = new ArrayList<>(fake.calls);
    assertTrue(((HeartbeatRequest) calls.get(calls.size() - 1)).getDeregister(),
        "a beat after the deregistration: " + calls);
  }

  /** The first beat registers: with alive not true at start, nothing is sent or started. */
  @Test
  void aHeartbeatWhoseAliveIsNotTrueAtStartIsNotStarted() throws Exception {
    connected(builder());
    BooleanSupplier[] notAlive = {() -> false, () -> {
      throw new IllegalStateException("no loop yet");
    }};
    for (BooleanSupplier alive : notAlive) {
      IllegalStateException e = assertThrows(IllegalStateException.class,
          () -> client.startHeartbeat("exec-1", Scopes.strategy("momo"), Duration.ofMillis(300),
              null, null, alive));
      assertTrue(e.getMessage().contains("alive"), e.getMessage());
    }
    assertEquals(0, fake.calls.size(), "a beat was sent");
    Heartbeater heartbeat = client.startHeartbeat("exec-1", Scopes.strategy("momo"),
        Duration.ofMillis(300), null, null, () -> true);
    assertEquals(1, fake.calls.size());
    assertNotNull(heartbeat.stop());
  }

  @Test
  void aHeartbeatWhoseFirstBeatFailsIsNotStarted() {
    client = GuardClient.builder(
        InProcessChannelBuilder.forName("nobody-" + System.nanoTime()).directExecutor().build())
        .logger(logger).build();
    assertThrows(io.grpc.StatusRuntimeException.class,
        () -> client.startHeartbeat("exec-1", Scopes.global(), Duration.ofSeconds(1)));
  }

  /**
   * Review 54b: Duration.ofSeconds(Long.MAX_VALUE) overflowed toNanos, and the check was
   * denied as a "client bug". A deadline too long for nanoseconds is the longest wait.
   */
  @Test
  void aDeadlineTooLongForNanosecondsIsTheLongestWaitNotAClientBug() throws Exception {
    Duration forever = Duration.ofSeconds(Long.MAX_VALUE);
    connected(builder().deadline(forever).rpcTimeout(forever).stallAfter(forever));
    assertEquals(Duration.ofNanos(GuardClient.MAX_WAIT_NANOS), client.deadline());
    Verdict verdict = client.check(order("forever-1"), forever);
    assertTrue(verdict.allowed(), verdict.toString());
    Verdict async = client.checkAsync(order("forever-2"), forever).get(10, TimeUnit.SECONDS);
    assertTrue(async.allowed(), async.toString());
    Verdict unary = client.checkUnary(order("forever-3"), forever);
    assertTrue(unary.allowed(), unary.toString());
    assertTrue(client.check(order("forever-4")).allowed(), "the client's deadline");
    assertNotNull(client.heartbeat("exec-1", Scopes.global(), Duration.ofSeconds(1), false));
    assertEquals(Map.of(), client.failures());
  }

  // ---- Counting, logging, closing. ----

  @Test
  void failuresAreCountedByCauseAndLoggedAtMostOncePerInterval() throws Exception {
    fake.stream = fake.holding();
    connected(builder().logInterval(Duration.ofHours(1)));
    for (int i = 0; i < 5; i++) {
      client.check(order(""), Duration.ofMillis(2));
    }
    fake.stream = FakeGuard.answering(CheckOrderResponse.newBuilder().setAllowed(true).build());
    client.check(order(""), ANSWER);
    assertEquals(Map.of(Cause.DEADLINE, 5L, Cause.MALFORMED, 1L), client.failures());
    eventually(() -> {
      synchronized (logged) {
        return logged.size() >= 2;
      }
    }, "two log lines");
    Thread.sleep(100);
    synchronized (logged) {
      assertEquals(2, logged.size(), "one line per cause: " + logged);
      assertTrue(logged.get(0).getMessage().contains("cause=deadline"));
    }
  }

  @Test
  void aClosedClientDeniesEverything() throws Exception {
    fake.stream = fake.holding();
    connected(builder());
    CompletableFuture<Verdict> inFlight = client.checkAsync(order("in-flight"), ANSWER);
    fake.held.take();
    client.close();
    assertEquals(Cause.CLIENT_ERROR, inFlight.get(1, TimeUnit.SECONDS).cause());
    assertEquals(Cause.CLIENT_ERROR, client.check(order("")).cause());
    assertEquals(Cause.CLIENT_ERROR, client.checkAsync(order("")).join().cause());
    assertEquals(Cause.CLIENT_ERROR, client.checkUnary(order("")).cause());
    assertFalse(client.connect(Duration.ofMillis(10)));
  }

  @Test
  void anInterruptedCheckIsCanceled() throws Exception {
    fake.stream = fake.holding();
    connected(builder());
    Thread.currentThread().interrupt();
    Verdict verdict = client.check(order(""), ANSWER);
    assertTrue(Thread.interrupted(), "the interrupt was swallowed");
    assertEquals(Cause.CANCELED, verdict.cause());
  }

  @Test
  void connectWaitsForTheStreamAndTheHeaders() {
    client = builder().build();
    assertTrue(client.connect(ANSWER));
    assertEquals(1, fake.streams.get());
    Verdict verdict = client.check(order(""), ANSWER);
    assertTrue(verdict.allowed());
  }

  @Test
  void badTargetsAndOptionsAreRejected() {
    assertThrows(IllegalArgumentException.class, () -> GuardClient.builder("unix:").build());
    // Review 52a: gRPC's DNS resolver threw on these in its own thread; checks waited it out.
    // Review 52c: and "h:70000/", its empty part after the last "/" read as no port at all.
    for (String target : new String[] {"127.0.0.1:99999", "[::1]:70000", "dns:///h:65536",
        "h:70000/"}) {
      assertThrows(IllegalArgumentException.class, () -> GuardClient.builder(target).build(),
          target);
    }
    assertThrows(IllegalArgumentException.class,
        () -> GuardClient.builder("x:1").deadline(Duration.ZERO));
    assertThrows(IllegalArgumentException.class,
        () -> GuardClient.builder("127.0.0.1:1").tls(null, new java.io.File("/nonexistent"),
            null).build());
  }
}
