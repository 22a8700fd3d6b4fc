package dev.ess.client;

import dev.ess.v1.CheckOrderRequest;
import dev.ess.v1.CheckOrderResponse;
import dev.ess.v1.CheckOrderStreamRequest;
import dev.ess.v1.CheckOrderStreamResponse;
import dev.ess.v1.DecisionReason;
import dev.ess.v1.GetStateRequest;
import dev.ess.v1.GetStateResponse;
import dev.ess.v1.GuardServiceGrpc;
import dev.ess.v1.HeartbeatRequest;
import dev.ess.v1.HeartbeatResponse;
import dev.ess.v1.Metric;
import dev.ess.v1.ReportFillResponse;
import dev.ess.v1.ReportMetricRequest;
import dev.ess.v1.ReportMetricResponse;
import dev.ess.v1.ReportOrderUpdateResponse;
import dev.ess.v1.Scope;
import dev.ess.v1.SyncPositionsResponse;
import dev.ess.v1.TriggerRequest;
import dev.ess.v1.TriggerResponse;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.ClientInterceptors;
import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.MetadataUtils;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;
import java.util.function.Consumer;
import java.util.function.LongSupplier;
import java.util.logging.Logger;

/**
 * A thin, fail-closed client of one ESS sidecar ({@code ess.v1.GuardService}), safe for use
 * from many threads. Close it when done.
 *
 * <p>{@link #check(Order)} asks "may I send this order?" over one long-lived
 * {@code CheckOrderStream} (many checks in flight, answers matched by request_id) and never
 * throws: anything short of a clear, self-consistent answer from the sidecar within the
 * check's deadline is a denial whose {@link Verdict#cause()} says why
 * ({@link Verdict#reasonName()} is then {@code CLIENT_FAIL_CLOSED}), counted in
 * {@link #failures()} and logged. A broken stream is replaced in the background; no answer
 * is ever taken from a stream that broke.
 *
 * <p>The other RPCs (fills, order updates, positions, heartbeats, metrics, triggers) are thin
 * wrappers that throw {@link StatusRuntimeException} like any gRPC call.
 */
public final class GuardClient implements AutoCloseable {
  /** The default per-check deadline: a missed deadline is a denial. */
  public static final Duration DEFAULT_DEADLINE = Duration.ofMillis(5);
  /**
   * The longest wait: a longer deadline or timeout is taken for this (about 146 years), not
   * overflowed (review 54b: Duration.ofSeconds(Long.MAX_VALUE) was a "client bug" denial),
   * and deadline arithmetic on nanoTime never overflows past it.
   */
  static final long MAX_WAIT_NANOS = Long.MAX_VALUE / 2;
  /** The default bound of the RPCs other than checks. */
  public static final Duration DEFAULT_RPC_TIMEOUT = Duration.ofSeconds(1);
  /** A stream with a request unanswered this long is taken for hung and replaced. */
  public static final Duration DEFAULT_STALL_AFTER = Duration.ofSeconds(1);
  /** At most one log line per failure cause per interval. */
  public static final Duration DEFAULT_LOG_INTERVAL = Duration.ofSeconds(1);
  /**
   * The reconnect backoff: gRPC's own grows to 120 s; a same-host sidecar restarted by its
   * supervisor should be found again within about a second.
   */
  public static final Duration DEFAULT_RECONNECT_BASE = Duration.ofMillis(50);
  public static final Duration DEFAULT_RECONNECT_MAX = Duration.ofSeconds(1);
  /** Checks in flight on the stream beyond this fail closed ({@link Cause#CLIENT_ERROR}). */
  public static final int MAX_IN_FLIGHT = 4096;

  static final String USER_AGENT = "ess-client-java/0.1.0";
  /** The clock (nanoTime) an answer is judged against its check's deadline by: tests move it. */
  static volatile LongSupplier clock = System::nanoTime;
  private static final int WARM_UP_ROUND_TRIPS = 5;
  private static final byte[] EMPTY = new byte[0];
  /** The standard health check, as raw bytes: an empty request asks for the server's health. */
  private static final MethodDescriptor<byte[], byte[]> HEALTH_CHECK =
      MethodDescriptor.<byte[], byte[]>newBuilder()
          .setType(MethodDescriptor.MethodType.UNARY)
          .setFullMethodName("grpc.health.v1.Health/Check")
          .setRequestMarshaller(new Bytes())
          .setResponseMarshaller(new Bytes())
          .build();
  private static final AtomicBoolean WARMED = new AtomicBoolean();

  private final Channels.Made made;
  private final ManagedChannel managed;
  private final Channel channel;
  private final GuardServiceGrpc.GuardServiceBlockingStub stub;
  private final long deadlineNanos;
  private final long rpcTimeoutNanos;
  private final long stallAfterNanos;
  private final long reconnectBaseNanos;
  private final long reconnectMaxNanos;
  private final Logger logger;
  private final FailureBook failures;
  private final ThreadPoolExecutor logExecutor;
  private final ScheduledThreadPoolExecutor timers;
  private final Thread maintainer;
  private final String orderPrefix;
  private final AtomicLong orderIds = new AtomicLong();
  private final AtomicLong requestIds = new AtomicLong();
  private final AtomicLong streamsOpened = new AtomicLong();
  private final AtomicBoolean networkWarmed = new AtomicBoolean();
  private final Set<Heartbeater> heartbeaters = ConcurrentHashMap.newKeySet();
  private volatile boolean closed;

  private final Object streamLock = new Object();
  /** The stream checks go to; null while (re)connecting. */
  private volatile CheckStream stream;
  /** The stream being opened by the maintainer, not yet installed. */
  private volatile CheckStream opening;
  /** Completed with the stream once one is installed (guarded by streamLock). */
  private CompletableFuture<CheckStream> ready = new CompletableFuture<>();
  /**
   * Asynchronous checks waiting for a stream, sent when one is installed; each leaves at its
   * deadline, so a sidecar stuck mid-connect holds none that are done (review 35: a callback
   * on {@link #ready} per check, never removed).
   */
  private final Set<AsyncCheck> awaitingStream = ConcurrentHashMap.newKeySet();

  private GuardClient(Builder b) {
    String token = InvalidTokenException.valid(b.token); // before a channel is made
    if (b.channel != null) {
      made = new Channels.Made(b.channel, null);
    } else {
      ChannelCredentials credentials = b.credentials;
      if (credentials == null && b.tls) {
        credentials = Channels.credentials(b.caFile, b.certFile, b.keyFile);
      }
      made = Channels.make(b.target, credentials, b.authority);
    }
    managed = made.channel();
    if (!token.isEmpty()) {
      Metadata bearer = new Metadata();
      bearer.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER),
          "Bearer " + token);
      channel = ClientInterceptors.intercept(managed,
          MetadataUtils.newAttachHeadersInterceptor(bearer));
    } else {
      channel = managed;
    }
    stub = GuardServiceGrpc.newBlockingStub(channel);
    deadlineNanos = saturatedNanos(b.deadline);
    rpcTimeoutNanos = saturatedNanos(b.rpcTimeout);
    stallAfterNanos = saturatedNanos(b.stallAfter);
    reconnectBaseNanos = saturatedNanos(b.reconnectBase);
    reconnectMaxNanos = saturatedNanos(b.reconnectMax);
    logger = b.logger;
    logExecutor = new ThreadPoolExecutor(1, 1, 0, TimeUnit.SECONDS,
        new LinkedBlockingQueue<>(1024), daemon("ess-client-log"),
        new ThreadPoolExecutor.DiscardPolicy());
    logExecutor.prestartAllCoreThreads();
    failures = new FailureBook(logger, saturatedNanos(b.logInterval), logExecutor);
    timers = new ScheduledThreadPoolExecutor(1, daemon("ess-client-timer"));
    timers.setRemoveOnCancelPolicy(true);
    byte[] prefix = new byte[6];
    new SecureRandom().nextBytes(prefix);
    StringBuilder hex = new StringBuilder(13);
    for (byte x : prefix) {
      hex.append(Character.forDigit((x >> 4) & 0xf, 16)).append(Character.forDigit(x & 0xf, 16));
    }
    orderPrefix = hex.append('-').toString();
    maintainer = daemon("ess-client-stream").newThread(this::maintain);
    maintainer.start();
  }

  /** A builder of a client of the sidecar at target: "unix:/path/ess.sock" or "host:port". */
  public static Builder builder(String target) {
    return new Builder(target, null);
  }

  /**
   * A builder of a client on a channel made elsewhere (in-process, custom transport); the
   * client owns it from then on and shuts it down on {@link #close()}.
   */
  public static Builder builder(ManagedChannel channel) {
    return new Builder(null, channel);
  }

  /** A client of target with the defaults (5 ms deadline, no token, no TLS). */
  public static GuardClient create(String target) {
    return builder(target).build();
  }

  /**
   * Waits until a check stream is open (the channel is ready) and the sidecar's response
   * headers came (it sends them as soon as the stream starts), so that the first check pays
   * for its message only. The client keeps connecting in the background either way.
   *
   * @return true once a stream is open, even if the headers did not come in time; false if
   *     none opened within timeout (checks fail closed until one does)
   */
  public boolean connect(Duration timeout) {
    warmUp();
    long deadline = System.nanoTime() + saturatedNanos(timeout);
    while (!closed) {
      CheckStream s = stream;
      if (s != null && !s.isBroken()) {
        try {
          CompletableFuture.anyOf(s.headers, s.brokenFuture)
              .get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
        } catch (TimeoutException | ExecutionException e) {
          // The headers are a bonus (an older sidecar sends none before its first answer).
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
        warmNetwork(deadline);
        return true;
      }
      long remaining = deadline - System.nanoTime();
      if (remaining <= 0) {
        return false;
      }
      try {
        readyFuture().get(remaining, TimeUnit.NANOSECONDS);
      } catch (TimeoutException e) {
        return false;
      } catch (ExecutionException e) {
        return false;
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return false;
      }
    }
    return false;
  }

  /**
   * A few gRPC health checks ({@code grpc.health.v1.Health/Check}: read-only, needing no
   * role) on the client's channel, once per client: the JVM runs the HTTP/2, framing and
   * marshalling code of a round trip before the first check does. Without this the first
   * check of a process took 13-18 ms on a loaded 2-core host, and failed the 5 ms default;
   * with it, well within it. Best effort: any error (a sidecar without health answers
   * UNIMPLEMENTED, the path ran anyway) or the connect deadline ends it.
   */
  private void warmNetwork(long deadline) {
    if (!networkWarmed.compareAndSet(false, true)) {
      return;
    }
    for (int i = 0; i < WARM_UP_ROUND_TRIPS && !closed; i++) {
      long remaining = Math.min(deadline - System.nanoTime(), TimeUnit.SECONDS.toNanos(1));
      if (remaining <= 0) {
        return;
      }
      try {
        ClientCalls.blockingUnaryCall(channel, HEALTH_CHECK,
            CallOptions.DEFAULT.withDeadlineAfter(remaining, TimeUnit.NANOSECONDS), EMPTY);
      } catch (RuntimeException e) {
        return;
      }
    }
  }

  /** A client_order_id no other order of this client has, nor (a random prefix) another's. */
  public String newClientOrderId() {
    return orderPrefix + orderIds.incrementAndGet();
  }

  /** {@link #check(Order, Duration)} with the client's deadline. */
  public Verdict check(Order order) {
    return check(order, null);
  }

  /**
   * Asks whether order may be sent, over the client's stream, waiting at most deadline
   * ({@code null}: the client's). Obey {@link Verdict#allowed()}, and send the order with
   * {@link Verdict#clientOrderId()}. It never throws: a missed deadline, an unreachable
   * sidecar, a broken stream, a rejected order or an answer that cannot be trusted is a
   * denial with its cause, counted and logged. An interrupt ends the wait (CANCELED) and
   * stays set.
   */
  public Verdict check(Order order, Duration deadline) {
    String id = "";
    Verdict verdict;
    try {
      id = orderId(order);
      verdict = checkOnStream(order.request(id), nanos(deadline));
    } catch (RuntimeException | Error e) {
      verdict = Verdict.failed(Cause.CLIENT_ERROR, "client bug: " + e);
    }
    return settle(verdict, id);
  }

  /** {@link #checkAsync(Order, Duration)} with the client's deadline. */
  public CompletableFuture<Verdict> checkAsync(Order order) {
    return checkAsync(order, null);
  }

  /**
   * {@link #check(Order, Duration)} without blocking: the future always completes with a
   * verdict (never exceptionally), at the latest at the deadline. It completes on a gRPC or
   * timer thread: chain heavy work with the {@code *Async} methods and your own executor.
   */
  public CompletableFuture<Verdict> checkAsync(Order order, Duration deadline) {
    String id = "";
    CompletableFuture<Verdict> result = new CompletableFuture<>();
    try {
      id = orderId(order);
      long d = nanos(deadline);
      AsyncCheck check = new AsyncCheck(order.request(id), System.nanoTime() + d, d, result);
      if (closed) {
        result.complete(Verdict.failed(Cause.CLIENT_ERROR, "the client is closed"));
      } else {
        ScheduledFuture<?> timer = timers.schedule(check::expire, d, TimeUnit.NANOSECONDS);
        result.whenComplete((v, e) -> timer.cancel(false));
        submit(check);
      }
    } catch (RuntimeException | Error e) {
      result.complete(Verdict.failed(Cause.CLIENT_ERROR, "client bug: " + e));
    }
    String orderId = id;
    return result.handle((v, e) -> settle(
        v != null ? v : Verdict.failed(Cause.CLIENT_ERROR, "client bug: " + e), orderId));
  }

  /** {@link #checkUnary(Order, Duration)} with the client's deadline. */
  public Verdict checkUnary(Order order) {
    return checkUnary(order, null);
  }

  /**
   * {@link #check(Order, Duration)} over the unary CheckOrder RPC, with the same fail-closed
   * rules: simpler, slower, and it may pay for connecting within its deadline.
   */
  public Verdict checkUnary(Order order, Duration deadline) {
    String id = "";
    Verdict verdict;
    try {
      id = orderId(order);
      if (closed) {
        verdict = Verdict.failed(Cause.CLIENT_ERROR, "the client is closed");
      } else {
        long d = nanos(deadline);
        long expires = System.nanoTime() + d;
        CheckOrderResponse answer =
            stub.withDeadlineAfter(d, TimeUnit.NANOSECONDS).checkOrder(order.request(id));
        verdict = onTime(Verdict.fromDecision(answer), expires, d);
      }
    } catch (StatusRuntimeException e) {
      verdict = Thread.currentThread().isInterrupted()
          ? Verdict.failed(Cause.CANCELED, "interrupted")
          : FailureBook.failureOf(e.getStatus());
    } catch (RuntimeException | Error e) {
      verdict = Verdict.failed(Cause.CLIENT_ERROR, "client bug: " + e);
    }
    return settle(verdict, id);
  }

  /** Fail-closed denials by cause since the client was built. */
  public Map<Cause, Long> failures() {
    return failures.snapshot();
  }

  /** Check streams opened; more than one means a stream was replaced. */
  public long streamsOpened() {
    return streamsOpened.get();
  }

  /** The client's channel, the token included, for stubs of the RPCs not wrapped here. */
  public Channel channel() {
    return channel;
  }

  /** The generated blocking stub on the client's channel (the token included). */
  public GuardServiceGrpc.GuardServiceBlockingStub raw() {
    return stub;
  }

  /** The client's default per-check deadline. */
  public Duration deadline() {
    return Duration.ofNanos(deadlineNanos);
  }

  // ---- The other RPCs: thin wrappers that throw StatusRuntimeException. ----

  private GuardServiceGrpc.GuardServiceBlockingStub stub(Duration timeout) {
    long t = timeout == null || timeout.isZero() || timeout.isNegative()
        ? rpcTimeoutNanos : saturatedNanos(timeout);
    return stub.withDeadlineAfter(t, TimeUnit.NANOSECONDS);
  }

  /**
   * Applies one fill (once per fill_id: {@code duplicate} otherwise) and returns the signed
   * position after it; {@code unchecked} if the sidecar never allowed that order (the
   * account is then tripped).
   */
  public ReportFillResponse reportFill(Fill fill) {
    return reportFill(fill, null);
  }

  public ReportFillResponse reportFill(Fill fill, Duration timeout) {
    return stub(timeout).reportFill(fill.request());
  }

  /**
   * Releases (or, OPEN, shrinks) a working order's reservation, except what may have been
   * filled but not reported yet (see {@link OrderUpdate}); {@code known} is false if no such
   * order was working.
   */
  public ReportOrderUpdateResponse reportOrderUpdate(OrderUpdate update) {
    return reportOrderUpdate(update, null);
  }

  public ReportOrderUpdateResponse reportOrderUpdate(OrderUpdate update, Duration timeout) {
    return stub(timeout).reportOrderUpdate(update.request());
  }

  /** Replaces the account's book (and, with open orders, its working orders). */
  public SyncPositionsResponse syncPositions(Snapshot snapshot) {
    return syncPositions(snapshot, null);
  }

  public SyncPositionsResponse syncPositions(Snapshot snapshot, Duration timeout) {
    return stub(timeout).syncPositions(snapshot.request());
  }

  /** One metric sample for scope; the answer says whether it tripped it. */
  public ReportMetricResponse reportMetric(Scope scope, Metric metric, double value) {
    return stub(null).reportMetric(ReportMetricRequest.newBuilder()
        .setScope(scope).setMetric(metric).setValue(value).build());
  }

  /**
   * The kill switch for a scope; durable on the sidecar before it returns. Never refused here
   * for what comes with the stop: a reason with lone surrogates is sent with U+FFFD, one over
   * the sidecar's {@link #MAX_REASON_CHARS} cut (a reason over 4 MiB would never reach it);
   * any mode, reason code or directive number is sent (set*Value), the sidecar noting one it
   * does not know.
   */
  public TriggerResponse trigger(TriggerRequest request) {
    return stub(null).trigger(sendableTrigger(request));
  }

  /** The sidecar's bound on a reason, in characters (code points). */
  public static final int MAX_REASON_CHARS = 1024;

  /** {@code request} with its reason well-formed and at most MAX_REASON_CHARS code points. */
  static TriggerRequest sendableTrigger(TriggerRequest request) {
    String reason = request.getReason();
    String bounded = boundedReason(reason);
    return bounded.equals(reason) ? request : request.toBuilder().setReason(bounded).build();
  }

  static String boundedReason(String reason) {
    // At most 2 chars a code point: what lies past 2 * MAX_REASON_CHARS is never looked at.
    String kept = reason.length() > 2 * MAX_REASON_CHARS
        ? reason.substring(0, 2 * MAX_REASON_CHARS) : reason;
    if (kept.length() < reason.length()
        || kept.codePointCount(0, kept.length()) > MAX_REASON_CHARS) {
      String cut = " [\u2026 cut; " + reason.length() + " UTF-16 units given]";
      int end = kept.offsetByCodePoints(0, MAX_REASON_CHARS - cut.length());
      kept = kept.substring(0, end) + cut;
    }
    StringBuilder text = new StringBuilder(kept.length());
    for (int i = 0; i < kept.length(); i++) {
      char c = kept.charAt(i);
      if (Character.isHighSurrogate(c) && i + 1 < kept.length()
          && Character.isLowSurrogate(kept.charAt(i + 1))) {
        text.append(c).append(kept.charAt(++i));
      } else {
        text.append(Character.isSurrogate(c) ? '\uFFFD' : c);
      }
    }
    return text.toString();
  }

  /** Every scope that is not ARMED, the thresholds in force and the state version. */
  public GetStateResponse getState() {
    return stub(null).getState(GetStateRequest.getDefaultInstance());
  }

  /** One heartbeat (deregister: the executor is shutting down cleanly). */
  public HeartbeatResponse heartbeat(String executorId, Scope scope, Duration ttl,
      boolean deregister) {
    return heartbeat(executorId, scope, ttl, deregister, null);
  }

  HeartbeatResponse heartbeat(String executorId, Scope scope, Duration ttl, boolean deregister,
      Duration timeout) {
    return stub(timeout).heartbeat(HeartbeatRequest.newBuilder()
        .setExecutorId(executorId).setScope(scope).setTtlMs((int) ttl.toMillis())
        .setDeregister(deregister).build());
  }

  /**
   * Starts a dead-man's switch: scope trips if the sidecar hears no heartbeat from executorId
   * for ttl. It beats every ttl/3; a failed beat is logged. Stop it with
   * {@link Heartbeater#stop()}, which deregisters; {@link Heartbeater#close()} only stops
   * beating (the scope then trips when the ttl lapses).
   *
   * @throws StatusRuntimeException the first beat's error (nothing is started then)
   * @throws IllegalArgumentException a ttl outside 1 ms to 1 hour
   */
  public Heartbeater startHeartbeat(String executorId, Scope scope, Duration ttl) {
    return startHeartbeat(executorId, scope, ttl, null, null);
  }

  /**
   * {@link #startHeartbeat(String, Scope, Duration)} beating every interval ({@code null}:
   * ttl/3), with onError called (from the heartbeat thread) for each failed beat
   * ({@code null}: logged).
   *
   * @throws IllegalArgumentException a ttl outside 1 ms to 1 hour, or an interval that is
   *     not &gt; 0 or not shorter than the ttl (the scope would trip); nothing is sent
   */
  public Heartbeater startHeartbeat(String executorId, Scope scope, Duration ttl,
      Duration interval, Consumer<Throwable> onError) {
    return startHeartbeat(executorId, scope, ttl, interval, onError, null);
  }

  /**
   * {@link #startHeartbeat(String, Scope, Duration, Duration, Consumer)} sending each beat
   * only if alive returns true then ({@code null}: always): false, or a throw, withholds it
   * (counted, {@link Heartbeater#skipped()}, and logged once each way it turns), so the scope
   * trips at the ttl when the trading loop is dead while the process lives on. It is called
   * on the heartbeat thread: one that blocks holds the beats, and the scope trips.
   *
   * @throws IllegalStateException alive is not true now: nothing is sent (the first beat
   *     registers the executor)
   */
  public Heartbeater startHeartbeat(String executorId, Scope scope, Duration ttl,
      Duration interval, Consumer<Throwable> onError, BooleanSupplier alive) {
    if (ttl.compareTo(Duration.ofMillis(1)) < 0 || ttl.compareTo(Duration.ofHours(1)) > 0) {
      throw new IllegalArgumentException("heartbeat ttl must be 1 ms to 1 hour");
    }
    Duration sent = Duration.ofMillis(ttl.toMillis()); // the ttl in whole ms, as it is sent
    if (interval == null) {
      interval = sent.dividedBy(3);
    } else if (interval.isZero() || interval.isNegative()) {
      throw new IllegalArgumentException("a heartbeat interval must be > 0, not " + interval);
    } else if (interval.compareTo(sent) >= 0) {
      throw new IllegalArgumentException("a heartbeat interval of " + interval
          + " is not shorter than its ttl of " + sent + ": the scope would trip");
    }
    if (closed) {
      throw new IllegalStateException("the client is closed");
    }
    Heartbeater h =
        new Heartbeater(this, executorId, scope, ttl, interval, onError, alive, logger);
    h.start();
    heartbeaters.add(h);
    return h;
  }

  void forget(Heartbeater h) {
    heartbeaters.remove(h);
  }

  long rpcTimeoutNanos() {
    return rpcTimeoutNanos;
  }

  /**
   * Denies the checks in flight, ends the stream and shuts the channel down; later checks
   * are denied ({@link Cause#CLIENT_ERROR}). Heartbeaters still running are stopped without
   * deregistering (stop them first for a clean shutdown).
   */
  @Override
  public void close() {
    synchronized (streamLock) {
      if (closed) {
        return;
      }
      closed = true;
    }
    for (Heartbeater h : heartbeaters) {
      h.cancel();
    }
    for (CheckStream s : new CheckStream[] {stream, opening}) {
      if (s != null) {
        s.fail(Cause.CLIENT_ERROR, "the client was closed");
      }
    }
    CompletableFuture<CheckStream> waiting;
    synchronized (streamLock) {
      waiting = ready;
    }
    waiting.complete(null); // wakes checks waiting for a stream: they see closed
    resubmitAwaiting();
    maintainer.interrupt();
    try {
      maintainer.join(2000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    timers.shutdown();
    made.shutdown();
    logExecutor.shutdown();
  }

  // ---- Checks. ----

  private String orderId(Order order) {
    String id = order.clientOrderId();
    return id == null || id.isEmpty() ? newClientOrderId() : id;
  }

  private long nanos(Duration deadline) {
    if (deadline == null || deadline.isZero() || deadline.isNegative()) {
      return deadlineNanos;
    }
    return saturatedNanos(deadline);
  }

  /** A positive duration in nanoseconds, at most {@link #MAX_WAIT_NANOS}. */
  static long saturatedNanos(Duration d) {
    return d.compareTo(Duration.ofNanos(MAX_WAIT_NANOS)) > 0 ? MAX_WAIT_NANOS : d.toNanos();
  }

  /** Makes a failed verdict a counted, logged denial, and names the order. */
  private Verdict settle(Verdict verdict, String clientOrderId) {
    Verdict out = verdict.withClientOrderId(clientOrderId);
    if (out.failedClosed()) {
      failures.record(out);
    }
    return out;
  }

  private CompletableFuture<CheckStream> readyFuture() {
    synchronized (streamLock) {
      CheckStream s = stream;
      if (s != null && s.isBroken()) {
        stream = null;
        ready = closed ? ready : new CompletableFuture<>();
      }
      return ready;
    }
  }

  private Verdict checkOnStream(CheckOrderRequest request, long d) {
    long deadline = System.nanoTime() + d;
    CheckStream s;
    while (true) {
      if (closed) {
        return Verdict.failed(Cause.CLIENT_ERROR, "the client is closed");
      }
      s = stream;
      if (s != null && !s.isBroken()) {
        break;
      }
      CompletableFuture<CheckStream> waiting = readyFuture();
      if (waiting.isDone()) {
        continue;
      }
      if (managed.getState(false) == ConnectivityState.TRANSIENT_FAILURE) {
        return Verdict.failed(Cause.UNAVAILABLE, "the sidecar is unreachable; reconnecting");
      }
      long remaining = deadline - System.nanoTime();
      if (remaining <= 0) {
        return Verdict.failed(Cause.DEADLINE, "no stream to the sidecar within " + ms(d));
      }
      try {
        waiting.get(remaining, TimeUnit.NANOSECONDS);
      } catch (TimeoutException e) {
        return Verdict.failed(Cause.DEADLINE, "no stream to the sidecar within " + ms(d));
      } catch (ExecutionException e) {
        return Verdict.failed(Cause.CLIENT_ERROR, "client bug: " + e.getCause());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return Verdict.failed(Cause.CANCELED, "interrupted");
      }
    }
    CheckStream.Pending pending =
        new CheckStream.Pending(requestIds.incrementAndGet(), System.nanoTime());
    Verdict failed = s.send(pending, request);
    if (failed != null) {
      return failed;
    }
    try {
      return onTime(pending.get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS),
          deadline, d);
    } catch (TimeoutException e) {
      Verdict late = Verdict.failed(Cause.DEADLINE, "no answer within " + ms(d));
      if (pending.complete(late)) {
        s.expired();
      }
      return late; // an answer that came just now came after the deadline
    } catch (ExecutionException e) {
      return Verdict.failed(Cause.CLIENT_ERROR, "client bug: " + e.getCause());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return interrupted(pending, deadline, d);
    }
  }

  /**
   * The verdict of a check interrupted while it waited for its answer: CANCELED, unless the
   * answer came in between, which is then judged by the deadline like any other (review 35:
   * it was taken as it was).
   */
  static Verdict interrupted(CheckStream.Pending pending, long deadline, long d) {
    Verdict canceled = Verdict.failed(Cause.CANCELED, "interrupted");
    return pending.complete(canceled) ? canceled : onTime(pending.join(), deadline, d);
  }

  /**
   * The verdict if the deadline has not passed yet, else a deadline failure: a wait that ends
   * with both the answer and the deadline there, or a blocking call that returns late, must
   * not take the answer (fail closed).
   */
  private static Verdict onTime(Verdict verdict, long deadline, long d) {
    if (clock.getAsLong() - deadline < 0) {
      return verdict;
    }
    return Verdict.failed(Cause.DEADLINE, "no answer within " + ms(d));
  }

  /** One asynchronous check: sent once a stream is there, denied at its deadline. */
  private final class AsyncCheck {
    final CheckOrderRequest request;
    final long deadline;
    final long d;
    final CompletableFuture<Verdict> result;
    volatile CheckStream.Pending pending;

    AsyncCheck(CheckOrderRequest request, long deadline, long d,
        CompletableFuture<Verdict> result) {
      this.request = request;
      this.deadline = deadline;
      this.d = d;
      this.result = result;
    }

    void expire() {
      CheckStream.Pending p = pending;
      if (p == null) {
        // Out of the set before its caller sees the verdict, and again after: a submit racing
        // this one may have put it back before seeing it done.
        awaitingStream.remove(this);
        result.complete(Verdict.failed(Cause.DEADLINE, "no stream to the sidecar within " + ms(d)));
        awaitingStream.remove(this);
        return;
      }
      Verdict late = Verdict.failed(Cause.DEADLINE, "no answer within " + ms(d));
      if (p.complete(late)) {
        CheckStream s = p.stream;
        if (s != null) {
          s.expired();
        }
      }
    }
  }

  private void submit(AsyncCheck check) {
    while (!check.result.isDone()) {
      if (closed) {
        check.result.complete(Verdict.failed(Cause.CLIENT_ERROR, "the client is closed"));
        return;
      }
      CheckStream s = stream;
      if (s != null && !s.isBroken()) {
        CheckStream.Pending pending =
            new CheckStream.Pending(requestIds.incrementAndGet(), System.nanoTime());
        check.pending = pending;
        pending.whenComplete(
            (v, e) -> check.result.complete(onTime(v, check.deadline, check.d)));
        Verdict failed = s.send(pending, check.request);
        if (failed != null) {
          check.result.complete(failed);
        }
        return;
      }
      CompletableFuture<CheckStream> waiting = readyFuture();
      if (waiting.isDone()) {
        continue;
      }
      if (managed.getState(false) == ConnectivityState.TRANSIENT_FAILURE) {
        check.result.complete(
            Verdict.failed(Cause.UNAVAILABLE, "the sidecar is unreachable; reconnecting"));
        return;
      }
      awaitingStream.add(check);
      // A stream installed (or the deadline passed) meanwhile may have missed it: whoever
      // takes it out of the set goes on with it.
      if ((waiting.isDone() || check.result.isDone()) && awaitingStream.remove(check)) {
        continue;
      }
      return;
    }
  }

  /** Sends (or denies) the asynchronous checks that waited for a stream: one is there now. */
  private void resubmitAwaiting() {
    for (AsyncCheck check : awaitingStream) {
      if (awaitingStream.remove(check)) {
        submit(check);
      }
    }
  }

  /** Async checks waiting for a stream, and callbacks on {@link #ready}: for tests. */
  int waitingForStream() {
    synchronized (streamLock) {
      return awaitingStream.size() + ready.getNumberOfDependents();
    }
  }

  // ---- The stream's upkeep. ----

  private void install(CheckStream s) {
    CompletableFuture<CheckStream> waiting;
    synchronized (streamLock) {
      if (closed) {
        s.fail(Cause.CLIENT_ERROR, "the client was closed");
        return;
      }
      stream = s;
      waiting = ready;
    }
    waiting.complete(s);
    resubmitAwaiting();
  }

  private void uninstall(CheckStream s) {
    synchronized (streamLock) {
      if (stream == s) {
        stream = null;
        if (!closed) {
          ready = new CompletableFuture<>();
        }
      }
    }
  }

  /**
   * Keeps one check stream open: opens one (waiting for the connection, and cutting gRPC's
   * reconnect backoff down to ours), installs it once it is on a connection, and when it
   * breaks, replaces it; streams that break without ever answering (a refusal) are reopened
   * with a growing backoff.
   */
  private void maintain() {
    long delay = reconnectBaseNanos;
    while (!closed) {
      CheckStream s = CheckStream.open(channel, CallOptions.DEFAULT, stallAfterNanos,
          MAX_IN_FLIGHT);
      streamsOpened.incrementAndGet();
      opening = s;
      if (closed) {
        s.fail(Cause.CLIENT_ERROR, "the client was closed");
        break;
      }
      boolean up = awaitEstablished(s);
      opening = null;
      if (closed) {
        s.fail(Cause.CLIENT_ERROR, "the client was closed");
        break;
      }
      if (up && !s.isBroken()) {
        long opened = System.nanoTime();
        install(s);
        try {
          s.brokenFuture.get();
        } catch (InterruptedException | ExecutionException e) {
          if (closed) {
            s.fail(Cause.CLIENT_ERROR, "the client was closed");
            break;
          }
        }
        uninstall(s);
        if (s.answered || System.nanoTime() - opened > reconnectMaxNanos) {
          delay = reconnectBaseNanos;
          continue;
        }
      }
      try {
        TimeUnit.NANOSECONDS.sleep(delay);
      } catch (InterruptedException e) {
        if (closed) {
          break;
        }
      }
      delay = Math.min(delay * 2, reconnectMaxNanos);
    }
  }

  /** Waits until s is on a connection (true) or broken (false), nudging the reconnects. */
  private boolean awaitEstablished(CheckStream s) {
    CompletableFuture<Object> either = CompletableFuture.anyOf(s.established, s.brokenFuture);
    long nudge = reconnectBaseNanos;
    while (!closed) {
      try {
        either.get(nudge, TimeUnit.NANOSECONDS);
        return s.established.isDone() && !s.isBroken();
      } catch (TimeoutException e) {
        if (managed.getState(false) == ConnectivityState.TRANSIENT_FAILURE) {
          managed.resetConnectBackoff();
        }
        nudge = Math.min(nudge * 2, reconnectMaxNanos);
      } catch (ExecutionException e) {
        return false;
      } catch (InterruptedException e) {
        if (closed) {
          return false;
        }
      }
    }
    return false;
  }

  // ---- Helpers. ----

  static String ms(long nanos) {
    long micros = nanos / 1000;
    if (micros % 1000 == 0) {
      return (micros / 1000) + " ms";
    }
    return (micros / 1000) + "." + String.valueOf(1000 + micros % 1000).substring(1) + " ms";
  }

  /** Bytes as they are on the wire. */
  private static final class Bytes implements MethodDescriptor.Marshaller<byte[]> {
    @Override
    public InputStream stream(byte[] value) {
      return new ByteArrayInputStream(value);
    }

    @Override
    public byte[] parse(InputStream stream) {
      try {
        return stream.readAllBytes();
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
  }

  private static ThreadFactory daemon(String name) {
    return runnable -> {
      Thread t = new Thread(runnable, name);
      t.setDaemon(true);
      return t;
    };
  }

  /**
   * Runs the hot path's (de)serialization and verdict code a few times, offline, once per
   * process: class loading and the first interpreted runs stay out of the first check.
   */
  static void warmUp() {
    if (!WARMED.compareAndSet(false, true)) {
      return;
    }
    try {
      MethodDescriptor<CheckOrderStreamRequest, CheckOrderStreamResponse> method =
          GuardServiceGrpc.getCheckOrderStreamMethod();
      CheckOrderStreamResponse answer = CheckOrderStreamResponse.newBuilder()
          .setRequestId(1)
          .setDecision(CheckOrderResponse.newBuilder().setAllowed(true)
              .setReason(DecisionReason.DECISION_REASON_ALLOWED).setDecisionId("warm-1")
              .setStateVersion(1))
          .build();
      byte[] bytes = answer.toByteArray();
      ByteArrayOutputStream sink = new ByteArrayOutputStream();
      Order order = Order.builder().account("warm").strategy("warm").symbol("WARM")
          .side(Side.BUY).quantity(1).price(1).build();
      for (int i = 0; i < 20; i++) {
        try (InputStream in = method.streamRequest(CheckOrderStreamRequest.newBuilder()
            .setRequestId(i).setOrder(order.request("warm-" + i)).build())) {
          in.transferTo(sink);
        }
        sink.reset();
        Verdict.fromAnswer(method.parseResponse(new ByteArrayInputStream(bytes)))
            .withClientOrderId("warm-" + i);
        FailureBook.failureOf(Status.UNAVAILABLE.withDescription("warm"))
            .withClientOrderId("warm-" + i);
        ms(5_500_000L + i);
      }
      // The failure path: counted, and logged by a (silent) logger on another thread.
      Logger silent = Logger.getAnonymousLogger();
      silent.setUseParentHandlers(false);
      silent.setLevel(java.util.logging.Level.OFF);
      FailureBook book = new FailureBook(silent, 1, Runnable::run);
      for (Cause cause : Cause.values()) {
        book.record(Verdict.failed(cause, "warm").withClientOrderId("warm"));
      }
      book.snapshot();
      CheckStream.Pending pending = new CheckStream.Pending(1, System.nanoTime());
      pending.complete(Verdict.failed(Cause.DEADLINE, "warm"));
      pending.get(1, TimeUnit.MILLISECONDS);
    } catch (IOException | ExecutionException | TimeoutException | RuntimeException e) {
      // Only a warm-up.
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Options of a {@link GuardClient}. */
  public static final class Builder {
    private final String target;
    private final ManagedChannel channel;
    private Duration deadline = DEFAULT_DEADLINE;
    private Duration rpcTimeout = DEFAULT_RPC_TIMEOUT;
    private Duration stallAfter = DEFAULT_STALL_AFTER;
    private Duration logInterval = DEFAULT_LOG_INTERVAL;
    private Duration reconnectBase = DEFAULT_RECONNECT_BASE;
    private Duration reconnectMax = DEFAULT_RECONNECT_MAX;
    private Logger logger = Logger.getLogger("dev.ess.client");
    private String token;
    private boolean tls;
    private File caFile;
    private File certFile;
    private File keyFile;
    private ChannelCredentials credentials;
    private String authority;

    private Builder(String target, ManagedChannel channel) {
      if (target == null && channel == null) {
        throw new IllegalArgumentException("a target is required");
      }
      this.target = target;
      this.channel = channel;
    }

    /** The default per-check deadline (5 ms); a check may set its own. */
    public Builder deadline(Duration deadline) {
      this.deadline = positive(deadline, "deadline");
      return this;
    }

    /** Bounds the RPCs other than checks when the call gives no timeout (1 s). */
    public Builder rpcTimeout(Duration rpcTimeout) {
      this.rpcTimeout = positive(rpcTimeout, "rpcTimeout");
      return this;
    }

    /**
     * "authorization: Bearer token" on every call (a sidecar with authentication on). Space,
     * tab, CR and LF around it are dropped (a CRLF file's "tok\r" is "tok"); a byte outside
     * printable ASCII (0x20-0x7E) left inside makes {@link #build} throw
     * {@link InvalidTokenException}. Empty once stripped: no token.
     */
    public Builder token(String token) {
      this.token = token;
      return this;
    }

    /**
     * TLS from PEM files: caFile the CA bundle that signed the sidecar's certificate
     * ({@code null}: the system's roots), certFile and keyFile a client certificate for
     * mutual TLS ({@code null}: none). A file that cannot be read fails build().
     */
    public Builder tls(File caFile, File certFile, File keyFile) {
      this.tls = true;
      this.caFile = caFile;
      this.certFile = certFile;
      this.keyFile = keyFile;
      return this;
    }

    /** TLS with the system's roots. */
    public Builder tls() {
      return tls(null, null, null);
    }

    /** Any gRPC channel credentials (e.g. a {@code TlsChannelCredentials} built elsewhere). */
    public Builder credentials(ChannelCredentials credentials) {
      this.credentials = credentials;
      return this;
    }

    /** The name to verify in the sidecar's certificate, instead of the target's host. */
    public Builder serverName(String serverName) {
      this.authority = serverName;
      return this;
    }

    /** A stream with a request unanswered this long is taken for hung and replaced (1 s). */
    public Builder stallAfter(Duration stallAfter) {
      this.stallAfter = positive(stallAfter, "stallAfter");
      return this;
    }

    /** Where failed checks are logged ("dev.ess.client"); {@code null} for nowhere. */
    public Builder logger(Logger logger) {
      this.logger = logger;
      return this;
    }

    /** At most one log line per failure cause per interval (1 s). */
    public Builder logInterval(Duration logInterval) {
      this.logInterval = positive(logInterval, "logInterval");
      return this;
    }

    /** The reconnect backoff's first and longest delay (50 ms, 1 s). */
    public Builder reconnectBackoff(Duration base, Duration max) {
      this.reconnectBase = positive(base, "reconnect base");
      this.reconnectMax = positive(max, "reconnect max");
      if (reconnectMax.compareTo(reconnectBase) < 0) {
        throw new IllegalArgumentException("the reconnect max is below its base");
      }
      return this;
    }

    /**
     * Makes the client; it does not wait for the sidecar (see {@link #connect}) but starts
     * connecting, and keeps a check stream open, in the background.
     *
     * @throws IllegalArgumentException a bad target or unreadable TLS files; an
     *     {@link InvalidTokenException} for a token outside 0x20-0x7E
     */
    public GuardClient build() {
      return new GuardClient(this);
    }

    private static Duration positive(Duration d, String name) {
      if (d == null || d.isZero() || d.isNegative()) {
        throw new IllegalArgumentException(name + " must be > 0");
      }
      return d;
    }
  }
}
