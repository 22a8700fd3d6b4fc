package dev.ess.client;

import dev.ess.v1.CheckOrderRequest;
import dev.ess.v1.CheckOrderStreamRequest;
import dev.ess.v1.CheckOrderStreamResponse;
import dev.ess.v1.GuardServiceGrpc;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.Metadata;
import io.grpc.Status;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * One CheckOrderStream call. Once broken it stays broken: the client opens a new one and
 * never sends on, nor believes an answer from, a broken stream.
 *
 * <p>The sidecar answers in request order, so every answer must be for the oldest unanswered
 * request; anything else means the stream cannot be trusted, and it is broken. Requests are
 * queued and written in one critical section, so the queue's order is the wire's. A gRPC
 * {@code sendMessage} only buffers: a caller never waits on the network there.
 */
final class CheckStream {
  /** One request sent and not answered yet; it receives exactly one verdict. */
  static final class Pending extends CompletableFuture<Verdict> {
    final long id;
    final long sentNanos;
    volatile CheckStream stream;

    Pending(long id, long sentNanos) {
      this.id = id;
      this.sentNanos = sentNanos;
    }
  }

  private final ClientCall<CheckOrderStreamRequest, CheckOrderStreamResponse> call;
  private final long stallAfterNanos;
  private final int maxInFlight;
  /** Complete once the stream exists on a connection (ready, headers or an answer). */
  final CompletableFuture<Void> established = new CompletableFuture<>();
  /** Complete once the sidecar's response headers came. */
  final CompletableFuture<Void> headers = new CompletableFuture<>();
  /** Complete once broken. */
  final CompletableFuture<Void> brokenFuture = new CompletableFuture<>();
  /** At least one answer came. */
  volatile boolean answered;
  private volatile boolean brokenFlag;

  // Guarded by this.
  private final ArrayDeque<Pending> unanswered = new ArrayDeque<>();
  private Cause cause = Cause.NONE;
  private String why = "";

  private CheckStream(ClientCall<CheckOrderStreamRequest, CheckOrderStreamResponse> call,
      long stallAfterNanos, int maxInFlight) {
    this.call = call;
    this.stallAfterNanos = stallAfterNanos;
    this.maxInFlight = maxInFlight;
  }

  /** Starts a stream; it waits for the connection (wait-for-ready) in the background. */
  static CheckStream open(Channel channel, CallOptions options, long stallAfterNanos,
      int maxInFlight) {
    CheckStream stream = new CheckStream(
        channel.newCall(GuardServiceGrpc.getCheckOrderStreamMethod(), options.withWaitForReady()),
        stallAfterNanos, maxInFlight);
    List<Pending> failed = null;
    synchronized (stream) {
      try {
        stream.call.start(stream.new Listener(), new Metadata());
        stream.call.request(Integer.MAX_VALUE);
      } catch (RuntimeException e) {
        failed = stream.breakLocked(Cause.CLIENT_ERROR, "could not start the stream: " + e);
      }
    }
    stream.settleBroken(failed);
    return stream;
  }

  boolean isBroken() {
    return brokenFlag;
  }

  /**
   * Sends one request; {@code pending} receives its verdict. On a broken stream, or with too
   * many checks in flight, returns the failure instead (and pending is left alone).
   */
  Verdict send(Pending pending, CheckOrderRequest order) {
    CheckOrderStreamRequest request =
        CheckOrderStreamRequest.newBuilder().setRequestId(pending.id).setOrder(order).build();
    List<Pending> failed = null;
    Verdict result = null;
    synchronized (this) {
      if (brokenFlag) {
        return Verdict.failed(cause, "the stream is broken: " + why);
      }
      if (unanswered.size() >= maxInFlight) {
        return Verdict.failed(Cause.CLIENT_ERROR, "more than " + maxInFlight + " checks in flight");
      }
      pending.stream = this;
      unanswered.addLast(pending);
      try {
        call.sendMessage(request);
      } catch (RuntimeException e) {
        failed = breakLocked(Cause.STREAM_BROKEN, "send failed: " + e);
        result = Verdict.failed(Cause.STREAM_BROKEN, "send failed: " + e);
      }
    }
    settleBroken(failed);
    return result;
  }

  /**
   * Called by a check whose deadline passed. One late answer is jitter; no answer at all to
   * the oldest request for stallAfter is a hung stream, which is replaced.
   */
  void expired() {
    List<Pending> failed = null;
    synchronized (this) {
      Pending oldest = unanswered.peekFirst();
      if (!brokenFlag && oldest != null && System.nanoTime() - oldest.sentNanos > stallAfterNanos) {
        failed = breakLocked(Cause.DEADLINE, "no answer for " + (stallAfterNanos / 1_000_000)
            + " ms; stream replaced");
      }
    }
    settleBroken(failed);
  }

  /** Breaks the stream with cause: every request in flight is answered with it at once. */
  void fail(Cause failure, String message) {
    List<Pending> failed;
    synchronized (this) {
      failed = breakLocked(failure, message);
    }
    settleBroken(failed);
  }

  /** Returns the requests in flight, to be failed outside the lock (see settleBroken). */
  private List<Pending> breakLocked(Cause failure, String message) {
    if (brokenFlag) {
      return null;
    }
    brokenFlag = true;
    cause = failure;
    why = message;
    List<Pending> failed = new ArrayList<>(unanswered);
    unanswered.clear();
    return failed;
  }

  /**
   * After breakLocked, outside the lock: denies the requests in flight (their futures'
   * dependants may run user code), then ends the call. Every sendMessage happened under the
   * lock before the stream was marked broken, and none follows, so the call is never used
   * concurrently; only the thread that broke the stream gets a non-null list and cancels.
   */
  private void settleBroken(List<Pending> failed) {
    if (!brokenFlag) {
      return;
    }
    if (failed != null) {
      Verdict verdict;
      synchronized (this) {
        verdict = Verdict.failed(cause, why);
      }
      for (Pending p : failed) {
        p.complete(verdict);
      }
      try {
        call.cancel("ess client: " + verdict.message(), null); // a no-op once closed
      } catch (RuntimeException ignored) {
        // Already closed.
      }
    }
    brokenFuture.complete(null);
  }

  private void onAnswer(CheckOrderStreamResponse answer) {
    Pending expected;
    Verdict verdict = null;
    List<Pending> failed = null;
    synchronized (this) {
      if (brokenFlag) {
        return;
      }
      expected = unanswered.pollFirst();
      if (expected == null) {
        failed = breakLocked(Cause.MALFORMED,
            "answer to request " + Long.toUnsignedString(answer.getRequestId())
                + ", which was never sent");
      } else if (answer.getRequestId() != expected.id) {
        String message = "answer to request " + Long.toUnsignedString(answer.getRequestId())
            + ", expected " + expected.id + "; stream replaced";
        verdict = Verdict.failed(Cause.MALFORMED, message);
        failed = breakLocked(Cause.MALFORMED, message);
      } else {
        answered = true;
      }
    }
    if (expected != null) {
      expected.complete(verdict != null ? verdict : Verdict.fromAnswer(answer));
    }
    settleBroken(failed);
  }

  private final class Listener extends ClientCall.Listener<CheckOrderStreamResponse> {
    @Override
    public void onHeaders(Metadata metadata) {
      established.complete(null);
      headers.complete(null);
    }

    @Override
    public void onReady() {
      established.complete(null);
    }

    @Override
    public void onMessage(CheckOrderStreamResponse answer) {
      established.complete(null);
      try {
        onAnswer(answer);
      } catch (RuntimeException e) {
        fail(Cause.CLIENT_ERROR, "client bug reading an answer: " + e);
      }
    }

    @Override
    public void onClose(Status status, Metadata trailers) {
      Verdict failure = FailureBook.failureOf(status);
      fail(failure.cause(), failure.message());
    }
  }
}
