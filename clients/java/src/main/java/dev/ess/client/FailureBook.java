package dev.ess.client;

import io.grpc.Status;
import java.util.Collections;
import java.util.EnumMap;
import java.util.Map;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Counts failed checks by cause and logs them, at most once per interval per cause (the next
 * line says how many were suppressed), so that a dead sidecar under a high order rate does
 * not flood the log. The log line is written by another thread: a check never waits on it.
 */
final class FailureBook {
  private static final Cause[] CAUSES = Cause.values();

  private final AtomicLongArray counts = new AtomicLongArray(CAUSES.length);
  private final Logger logger;
  private final long intervalNanos;
  private final Executor logExecutor;

  // Guarded by this.
  private final long[] lastLog = new long[CAUSES.length];
  private final boolean[] logged = new boolean[CAUSES.length];
  private final long[] suppressed = new long[CAUSES.length];

  FailureBook(Logger logger, long intervalNanos, Executor logExecutor) {
    this.logger = logger;
    this.intervalNanos = intervalNanos;
    this.logExecutor = logExecutor;
  }

  void record(Verdict verdict) {
    int cause = verdict.cause().ordinal();
    counts.incrementAndGet(cause);
    if (logger == null) {
      return;
    }
    long now = System.nanoTime();
    long more;
    synchronized (this) {
      if (logged[cause] && now - lastLog[cause] < intervalNanos) {
        suppressed[cause]++;
        return;
      }
      logged[cause] = true;
      lastLog[cause] = now;
      more = suppressed[cause];
      suppressed[cause] = 0;
    }
    StringBuilder line = new StringBuilder("ess check failed closed: cause=")
        .append(verdict.cause().label()).append(" message=").append(verdict.message());
    if (!verdict.field().isEmpty()) {
      line.append(" field=").append(verdict.field());
    }
    if (!verdict.clientOrderId().isEmpty()) {
      line.append(" client_order_id=").append(verdict.clientOrderId());
    }
    if (more > 0) {
      line.append(" suppressed=").append(more);
    }
    try {
      logExecutor.execute(new Line(logger, line.toString()));
    } catch (RejectedExecutionException closed) {
      // The client is closed (or the queue is full): the count still holds.
    }
  }

  /** One log line to write (a class, not a lambda: nothing to link on a check's path). */
  private static final class Line implements Runnable {
    private final Logger logger;
    private final String text;

    Line(Logger logger, String text) {
      this.logger = logger;
      this.text = text;
    }

    @Override
    public void run() {
      logger.log(Level.WARNING, text);
    }
  }

  Map<Cause, Long> snapshot() {
    Map<Cause, Long> out = new EnumMap<>(Cause.class);
    for (Cause cause : CAUSES) {
      long n = counts.get(cause.ordinal());
      if (n > 0) {
        out.put(cause, n);
      }
    }
    return Collections.unmodifiableMap(out);
  }

  /** The failure cause of a call or stream that ended with this status. */
  static Cause causeOf(Status.Code code) {
    switch (code) {
      case UNAVAILABLE:
        return Cause.UNAVAILABLE;
      case DEADLINE_EXCEEDED:
        return Cause.DEADLINE;
      case CANCELLED:
      case INTERNAL:
      case UNKNOWN:
        return Cause.STREAM_BROKEN;
      case INVALID_ARGUMENT:
        return Cause.REQUEST_ERROR;
      default:
        return Cause.REFUSED;
    }
  }

  /** A failed call or stream as a fail-closed verdict. */
  static Verdict failureOf(Status status) {
    if (status.isOk()) {
      return Verdict.failed(Cause.STREAM_BROKEN, "the sidecar ended the stream");
    }
    String message = status.getCode() + ": " + (status.getDescription() != null
        ? status.getDescription()
        : status.getCause() != null ? String.valueOf(status.getCause()) : "");
    return Verdict.failed(causeOf(status.getCode()), message);
  }
}
