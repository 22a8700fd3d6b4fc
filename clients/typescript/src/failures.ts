// Every failed check is a denial, counted by cause and logged at most once per interval.

import { FAILURES, type Failure, type Verdict } from "./verdict.js";

/** Where the client logs; `console` fits, and so does any logger with a `warn` method. */
export interface Logger {
  warn(message: string): void;
}

/** Counts failed checks by cause and logs them, rate-limited per cause. */
export class FailurePolicy {
  /** How many checks failed closed, by cause, since the client was made. */
  readonly counts: Record<Failure, number>;
  private readonly nextLog = new Map<Failure, number>();
  private readonly suppressed = new Map<Failure, number>();

  constructor(
    private readonly logger: Logger,
    private readonly logIntervalMs: number,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.counts = Object.fromEntries(FAILURES.map((cause) => [cause, 0])) as Record<
      Failure,
      number
    >;
  }

  /** Count and log a failed verdict; it stays a denial whatever happened. */
  apply(verdict: Verdict): Verdict {
    const cause = verdict.failure;
    if (cause === null) return verdict;
    this.counts[cause] += 1;
    const now = this.clock();
    if (now < (this.nextLog.get(cause) ?? -Infinity)) {
      this.suppressed.set(cause, (this.suppressed.get(cause) ?? 0) + 1);
    } else {
      this.nextLog.set(cause, now + this.logIntervalMs);
      const more = this.suppressed.get(cause) ?? 0;
      this.suppressed.delete(cause);
      try {
        this.logger.warn(
          `ess check failed CLOSED (${cause}): ${verdict.message}` +
            (more ? ` [${more} more since the last log]` : ""),
        );
      } catch {
        // a broken logger must not turn a denial into an exception
      }
    }
    return verdict.allowed ? { ...verdict, allowed: false } : verdict;
  }
}
