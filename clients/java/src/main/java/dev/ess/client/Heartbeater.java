package dev.ess.client;

import dev.ess.v1.HeartbeatResponse;
import dev.ess.v1.Scope;
import dev.ess.v1.State;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.BooleanSupplier;
import java.util.function.Consumer;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A dead-man's switch ({@link GuardClient#startHeartbeat}): beats in the background until
 * {@link #stop()}, which deregisters the executor so that its scope does not trip, or
 * {@link #close()}, which only stops beating: the registration stays, and the scope trips
 * when the ttl lapses. So a try-with-resources block left by an exception (an executor that
 * died) trips the scope; call {@link #stop()} in it for a clean shutdown.
 *
 * <p>With an {@code alive} predicate, each beat is sent only if it returns true then; false,
 * or a throw, withholds the beat ({@link #skipped()}), so the scope trips at the ttl when the
 * trading loop dies or hangs while the process lives on. Without one, a beat proves only that
 * the process (this daemon thread) runs.
 */
public final class Heartbeater implements AutoCloseable {
  private final GuardClient client;
  private final String executorId;
  private final Scope scope;
  private final Duration ttl;
  private final Duration interval;
  private final Consumer<Throwable> onError;
  private final BooleanSupplier alive;
  private final Logger logger;
  private final ScheduledExecutorService scheduler;
  private final AtomicBoolean stopped = new AtomicBoolean();
  /**
   * Held to send a beat, after {@code stopped} was read false, and to deregister, after it was
   * set: so no beat follows the deregistration (review 54e: one whose alive blocked past stop's
   * wait was sent after it, and the scope tripped after a clean shutdown).
   */
  private final Object sending = new Object();
  /** Set once the deregistration was sent, or can no longer be (the client closed). */
  private final AtomicBoolean deregistered = new AtomicBoolean();
  private volatile State lastState = State.STATE_UNSPECIFIED;
  private volatile Throwable lastError;
  /** Written by the heartbeat thread only. */
  private volatile long skipped;
  private boolean wasAlive = true;

  Heartbeater(GuardClient client, String executorId, Scope scope, Duration ttl,
      Duration interval, Consumer<Throwable> onError, BooleanSupplier alive, Logger logger) {
    this.client = client;
    this.alive = alive;
    this.logger = logger;
    this.executorId = executorId;
    this.scope = scope;
    this.ttl = ttl;
    this.interval = interval;
    this.onError = onError != null ? onError : error -> {
      if (logger != null) {
        logger.log(Level.WARNING, "ess heartbeat failed: executor_id=" + executorId + " error="
            + error);
      }
    };
    this.scheduler = Executors.newSingleThreadScheduledExecutor(runnable -> {
      Thread t = new Thread(runnable, "ess-heartbeat-" + executorId);
      t.setDaemon(true);
      return t;
    });
  }

  /**
   * Sends the first beat (its error is thrown, and nothing is started), then schedules. The
   * first beat has the whole rpc timeout: it may pay for connecting the channel. It registers
   * the executor, so with {@code alive} not true now nothing is sent: IllegalStateException
   * (withheld, the executor would run unregistered, its scope never to trip).
   */
  void start() {
    try {
      if (!isAlive()) {
        throw new IllegalStateException("ess heartbeat not started: alive is not true for "
            + executorId);
      }
      beat(Duration.ofNanos(client.rpcTimeoutNanos()));
    } catch (RuntimeException e) {
      stopped.set(true);
      scheduler.shutdownNow();
      throw e;
    }
    long every = interval.toNanos();
    scheduler.scheduleAtFixedRate(this::tick, every, every, TimeUnit.NANOSECONDS);
  }

  private void beat(Duration timeout) {
    try {
      HeartbeatResponse answer = client.heartbeat(executorId, scope, ttl, false, timeout);
      lastState = answer.getState();
      lastError = null;
    } catch (RuntimeException e) {
      lastError = e;
      throw e;
    }
  }

  private void tick() {
    if (stopped.get()) {
      return;
    }
    if (!isAlive()) {
      skipped++;
      return;
    }
    try {
      synchronized (sending) {
        if (stopped.get()) { // stopped while alive ran: stop may have deregistered
          return;
        }
        // Bounded by the interval too, so that beats never pile up.
        beat(Duration.ofNanos(Math.min(interval.toNanos(), client.rpcTimeoutNanos())));
      }
    } catch (Throwable e) { // a scheduled task that throws is never run again
      try {
        onError.accept(e);
      } catch (Throwable ignored) {
        // The handler's own failure must not stop the beats.
      }
    }
  }

  /** {@code alive} (true when unset), a throw counting as not alive; logged each way it turns. */
  private boolean isAlive() {
    if (alive == null) {
      return true;
    }
    boolean now = false;
    String why = "it returned false";
    try {
      now = alive.getAsBoolean();
    } catch (Throwable e) { // a predicate that fails is not alive; the beats must go on
      why = "it threw " + e;
    }
    if (now != wasAlive && logger != null) {
      logger.log(Level.WARNING, now
          ? "ess heartbeat: alive is true again for " + executorId + ": beats resume"
          : "ess heartbeat: alive is not true for " + executorId + " (" + why
              + "): beats withheld, the scope trips at its ttl");
    }
    wasAlive = now;
    return now;
  }

  /** Beats withheld because {@code alive} was not true. */
  public long skipped() {
    return skipped;
  }

  /** The scope's state in the last successful beat's answer. */
  public State state() {
    return lastState;
  }

  /** The last beat's error, null if it succeeded. */
  public Throwable lastError() {
    return lastError;
  }

  /** Whether it still beats. */
  public boolean running() {
    return !stopped.get();
  }

  /**
   * Ends the heartbeats and deregisters the executor, so that the scope does not trip when
   * the ttl lapses (a clean shutdown). Only the first stop deregisters (even after
   * {@link #close()}); later ones, and any after the client was closed, return null.
   *
   * @throws StatusRuntimeException the deregistration failed
   */
  public HeartbeatResponse stop() {
    halt();
    synchronized (sending) { // waits for a beat in flight; none is sent after this one
      if (!deregistered.compareAndSet(false, true)) {
        return null;
      }
      return client.heartbeat(executorId, scope, ttl, true, null);
    }
  }

  /**
   * Ends the heartbeats <em>without</em> deregistering: the registration stays, and the
   * scope trips when the ttl lapses, as it does for an executor that died. A
   * try-with-resources block left by an exception must not look like a clean shutdown; call
   * {@link #stop()} for one.
   */
  @Override
  public void close() {
    halt();
  }

  /**
   * Ends the beats and waits for one in flight (a beat that landed after the deregistration
   * would register the executor again); a caller that comes while another halts waits too.
   */
  private synchronized void halt() {
    if (!stopped.compareAndSet(false, true)) {
      return;
    }
    scheduler.shutdown();
    try {
      scheduler.awaitTermination(client.rpcTimeoutNanos() + interval.toNanos(),
          TimeUnit.NANOSECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    client.forget(this);
  }

  /** Stops beating without deregistering (the client is closing: no stop can deregister). */
  void cancel() {
    deregistered.set(true);
    stopped.set(true);
    scheduler.shutdownNow();
  }
}
