// The dead-man's switch: a Heartbeat RPC every interval until stopped; stop() deregisters.

import { status as Status } from "@grpc/grpc-js";

import type { HeartbeatResponse } from "./gen/ess/v1/guard_pb.js";
import type { ScopeLike } from "./convert.js";
import type { Logger } from "./failures.js";

export interface HeartbeatOptions {
  /** This executor's id (canonical, as every id). */
  executorId: string;
  /** The scope that trips when heartbeats stop, e.g. "STRATEGY:momo". */
  scope: ScopeLike;
  /** How long the sidecar waits for the next heartbeat: a whole number of ms, 1 ms to 1 hour
   * (else a RangeError). */
  ttlMs: number;
  /** How often to send one (default ttlMs / 3): a finite number of ms > 0 and shorter than
   * ttlMs, else a RangeError (the scope would trip). */
  intervalMs?: number;
  /** Called with each failed heartbeat (the scope trips if they keep failing past ttlMs),
   * and with what onResponse throws. What it throws itself is dropped. */
  onError?: (error: Error) => void;
  /** Called with each answer: the scope's state. What it throws goes to onError (else to
   * console.error); either way the heartbeats go on. */
  onResponse?: (response: HeartbeatResponse) => void;
  /** Whether the executor's trading loop is alive, asked before each beat: a beat is sent
   * only when it returns true (false, or a throw, withholds it and counts it in `skipped`),
   * so the scope trips at the TTL when the loop dies or hangs while the process lives on.
   * Not true at start: startHeartbeat throws, nothing is sent. Unset: every beat is sent,
   * and the heartbeat proves only that the event loop runs. */
  alive?: () => boolean;
}

/** The sidecar's answers that say a beat will never be taken: sent again, it would be
 * refused again, and the scope, never registered, could never trip. */
const REFUSALS: ReadonlySet<unknown> = new Set([
  Status.INVALID_ARGUMENT, Status.PERMISSION_DENIED, Status.UNAUTHENTICATED,
]);

/** The contract's longest heartbeat TTL: 1 hour. */
const MAX_TTL_MS = 3_600_000;

/** A running heartbeat. Its timer does not keep the process alive. One the sidecar refuses
 * (INVALID_ARGUMENT, PERMISSION_DENIED, UNAUTHENTICATED: a scope, executor id or token it
 * does not take) stops:
 * `refused` says why and `running` is false; sent again it would be refused again, and
 * the scope, never registered, would trip for nothing (review 43i: it beat on, unsaid). */
export class Heartbeat {
  /** Heartbeats sent and answered, and failed. */
  sent = 0;
  failures = 0;
  /** Beats withheld because `alive` did not return true. */
  skipped = 0;
  lastResponse: HeartbeatResponse | null = null;
  /** Why the sidecar refused a heartbeat: it stopped. */
  refused: Error | null = null;
  private readonly intervalMs: number;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private stopped = false;
  /** The client was closed: stop() has nothing to deregister with. */
  private cancelled = false;
  private wasAlive = true;

  constructor(
    private readonly send: (deregister: boolean) => Promise<HeartbeatResponse>,
    private readonly options: HeartbeatOptions,
    private readonly logger: Logger = console,
  ) {
    this.intervalMs = validInterval(options.ttlMs, options.intervalMs);
  }

  get running(): boolean {
    return !this.stopped;
  }

  /** Send the first heartbeat now and keep going; returns this. The first beat registers
   * the executor: with `alive` not true now, it throws and nothing is sent (withheld, the
   * executor would run unregistered, its scope never to trip). */
  start(): this {
    // Asked without the "beats withheld" line (review 54e): nothing was registered.
    const [alive, why] = this.askAlive();
    if (!alive) {
      this.stopped = true;
      const id = this.options.executorId;
      throw new Error(`ess heartbeat not started: alive() is not true for ${id} (${why});` +
        " nothing sent");
    }
    this.beat();
    return this;
  }

  /** Stop beating and deregister (the scope does not trip). Rejects if deregistering failed.
   * After the client was closed it only stops, and resolves null (as Java's). */
  async stop(): Promise<HeartbeatResponse | null> {
    this.halt();
    await this.inFlight;
    return this.cancelled ? null : this.send(true);
  }

  /** The client is closing: stop beating without deregistering, so that the scope trips at
   * the TTL as it does for an executor that died (as Java's Heartbeater). */
  cancel(): void {
    this.cancelled = true;
    this.halt();
  }

  private halt(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private beat(): void {
    if (this.stopped) return;
    const started = performance.now();
    if (!this.isAlive()) {
      this.skipped += 1;
      this.schedule(started);
      return;
    }
    this.inFlight = this.send(false).then(
      (response) => {
        this.sent += 1;
        this.lastResponse = response;
        try {
          this.options.onResponse?.(response);
        } catch (error) {
          if (this.options.onError) this.report(asError(error));
          else console.error("ess heartbeat: onResponse threw", error);
        }
      },
      (error: Error) => {
        this.failures += 1;
        this.report(error);
        if (REFUSALS.has((error as { code?: unknown }).code)) {
          this.refused = error;
          this.stopped = true;
          this.logger.warn(`ess heartbeat refused, not sent again: ${error.message}`);
        } else if (!this.options.onError) {
          this.logger.warn(`ess heartbeat failed: ${error.message}`);
        }
      },
    ).then(() => {
      this.inFlight = null;
      this.schedule(started);
    });
  }

  private schedule(started: number): void {
    if (this.stopped) return;
    const wait = Math.max(0, this.intervalMs - (performance.now() - started));
    this.timer = setTimeout(() => this.beat(), wait);
    this.timer.unref();
  }

  /** `alive()` (true when unset), a throw counting as not alive, and why not. */
  private askAlive(): [boolean, string] {
    if (this.options.alive === undefined) return [true, ""];
    try {
      return this.options.alive() === true ? [true, ""] : [false, "it returned false"];
    } catch (error) {
      return [false, `it threw ${String(error)}`];
    }
  }

  /** askAlive, logged once each way it changes. */
  private isAlive(): boolean {
    const [alive, why] = this.askAlive();
    if (alive !== this.wasAlive) {
      this.logger.warn(alive
        ? `ess heartbeat: alive() is true again for ${this.options.executorId}: beats resume`
        : `ess heartbeat: alive() is not true for ${this.options.executorId} (${why}): ` +
          "beats withheld, the scope trips at its TTL");
      this.wasAlive = alive;
    }
    return alive;
  }

  /** A throw of a callback must not skip the next beat (the scope would trip while
   * `running` says true) nor reject unhandled; as Java's Heartbeater, onError's is dropped. */
  private report(error: Error): void {
    try {
      this.options.onError?.(error);
    } catch {
      // The handler's own failure must not stop the beats.
    }
  }
}

/** The interval to beat at: one that is not shorter than the TTL (or not a finite number
 * > 0: NaN beat every 1 ms) is a RangeError, as Python's start_heartbeat refuses it. */
function validInterval(ttlMs: unknown, intervalMs: unknown): number {
  if (typeof ttlMs !== "number" || !Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > MAX_TTL_MS) {
    throw new RangeError(`ttlMs must be a whole number of ms, 1 to ${MAX_TTL_MS}: ${ttlMs}`);
  }
  if (intervalMs === undefined || intervalMs === null) return ttlMs / 3;
  if (typeof intervalMs !== "number" || !(intervalMs > 0) || !Number.isFinite(intervalMs)) {
    throw new RangeError(`intervalMs must be a finite number > 0, got ${String(intervalMs)}`);
  }
  if (intervalMs >= ttlMs) {
    throw new RangeError(
      `a heartbeat interval of ${intervalMs} ms is not shorter than its TTL of ${ttlMs} ms: ` +
        "the scope would trip",
    );
  }
  return intervalMs;
}

function asError(thrown: unknown): Error {
  return thrown instanceof Error ? thrown : new Error(String(thrown));
}
