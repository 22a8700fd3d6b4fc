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
import java.util.function.Consumer;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A dead-man's switch ({@link GuardClient#startHeartbeat}): beats in the background until
 * {@link #stop()}, which deregisters the executor so that its scope does not trip.
 */
public final class Heartbeater implements AutoCloseable {
  private final GuardClient client;
  private final String executorId;
  private final Scope scope;
  private final Duration ttl;
  private final Duration interval;
  private final Consumer<Throwable> onError;
  private final ScheduledExecutorService scheduler;
  private final AtomicBoolean stopped = new AtomicBoolean();
  private volatile State lastState = State.STATE_UNSPECIFIED;
  private volatile Throwable lastError;

  Heartbeater(GuardClient client, String executorId, Scope scope, Duration ttl,
      Duration interval, Consumer<Throwable> onError, Logger logger) {
    this.client = client;
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

  /** Sends the first beat (its error is thrown, and nothing is started), then schedules. */
  void start() {
    try {
      beat();
    } catch (RuntimeException e) {
      stopped.set(true);
      scheduler.shutdownNow();
      throw e;
    }
    long every = interval.toNanos();
    scheduler.scheduleAtFixedRate(this::tick, every, every, TimeUnit.NANOSECONDS);
  }

  private void beat() {
    Duration timeout = Duration.ofNanos(Math.min(interval.toNanos(), client.rpcTimeoutNanos()));
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
    try {
      beat();
    } catch (Throwable e) { // a scheduled task that throws is never run again
      try {
        onError.accept(e);
      } catch (Throwable ignored) {
        // The handler's own failure must not stop the beats.
      }
    }
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
   * the ttl lapses. Only the first stop deregisters; later ones return null.
   *
   * @throws StatusRuntimeException the deregistration failed
   */
  public HeartbeatResponse stop() {
    if (!stopped.compareAndSet(false, true)) {
      return null;
    }
    scheduler.shutdown();
    try {
      scheduler.awaitTermination(client.rpcTimeoutNanos() + interval.toNanos(),
          TimeUnit.NANOSECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    client.forget(this);
    return client.heartbeat(executorId, scope, ttl, true, null);
  }

  /** {@link #stop()}, its error logged through onError rather than thrown. */
  @Override
  public void close() {
    try {
      stop();
    } catch (StatusRuntimeException e) {
      onError.accept(e);
    }
  }

  /** Stops beating without deregistering (the client is closing). */
  void cancel() {
    stopped.set(true);
    scheduler.shutdownNow();
  }
}
