// The dead-man's switch: a Heartbeat RPC every interval until stopped; stop() deregisters.

import type { HeartbeatResponse } from "./gen/ess/v1/guard_pb.js";
import type { ScopeLike } from "./convert.js";

export interface HeartbeatOptions {
  /** This executor's id (canonical, as every id). */
  executorId: string;
  /** The scope that trips when heartbeats stop, e.g. "STRATEGY:momo". */
  scope: ScopeLike;
  /** How long the sidecar waits for the next heartbeat: 1 ms to 1 hour. */
  ttlMs: number;
  /** How often to send one (default ttlMs / 3). */
  intervalMs?: number;
  /** Called with each failed heartbeat (the scope trips if they keep failing past ttlMs),
   * and with what onResponse throws. What it throws itself is dropped. */
  onError?: (error: Error) => void;
  /** Called with each answer: the scope's state. What it throws goes to onError (else to
   * console.error); either way the heartbeats go on. */
  onResponse?: (response: HeartbeatResponse) => void;
}

/** A running heartbeat. Its timer does not keep the process alive. */
export class Heartbeat {
  /** Heartbeats sent and answered, and failed. */
  sent = 0;
  failures = 0;
  lastResponse: HeartbeatResponse | null = null;
  private readonly intervalMs: number;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly send: (deregister: boolean) => Promise<HeartbeatResponse>,
    private readonly options: HeartbeatOptions,
  ) {
    this.intervalMs = Math.max(1, options.intervalMs ?? Math.floor(options.ttlMs / 3));
  }

  get running(): boolean {
    return !this.stopped;
  }

  /** Send the first heartbeat now and keep going; returns this. */
  start(): this {
    this.beat();
    return this;
  }

  /** Stop beating and deregister (the scope does not trip). Rejects if deregistering failed. */
  async stop(): Promise<HeartbeatResponse> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.inFlight;
    return this.send(true);
  }

  private beat(): void {
    if (this.stopped) return;
    const started = performance.now();
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
      },
    ).then(() => {
      this.inFlight = null;
      if (this.stopped) return;
      const wait = Math.max(0, this.intervalMs - (performance.now() - started));
      this.timer = setTimeout(() => this.beat(), wait);
      this.timer.unref();
    });
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

function asError(thrown: unknown): Error {
  return thrown instanceof Error ? thrown : new Error(String(thrown));
}
