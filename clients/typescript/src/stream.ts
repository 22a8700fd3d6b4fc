// One CheckOrderStream call: many checks in flight, answers matched back by request_id.

import { create } from "@bufbuild/protobuf";
import {
  type Client,
  type ClientDuplexStream,
  type Metadata,
  type ServiceError,
  status as Status,
} from "@grpc/grpc-js";

import {
  type CheckOrderRequest,
  type CheckOrderStreamRequest,
  CheckOrderStreamRequestSchema,
  type CheckOrderStreamResponse,
} from "./gen/ess/v1/guard_pb.js";
import { methods } from "./service.js";
import { failed, type Failure, type Verdict, verdictFromAnswer } from "./verdict.js";

/** The failure cause of a call that ended with `code`: the codes that mean "the sidecar
 * could not be heard from", else "refused" (auth, permission, unimplemented, ...). */
export function failureOf(code: Status): Failure {
  switch (code) {
    case Status.UNAVAILABLE:
      return "unavailable";
    case Status.DEADLINE_EXCEEDED:
      return "deadline";
    case Status.CANCELLED:
    case Status.INTERNAL:
    case Status.UNKNOWN:
      return "stream_broken";
    default:
      return "refused";
  }
}

/** "UNAVAILABLE: No connection established", the way errors are shown in verdicts. */
export function describeError(error: Partial<ServiceError>): string {
  const code = typeof error.code === "number" ? (Status[error.code] ?? String(error.code)) : "";
  const details = (error.details || error.message || "").trim();
  return code ? `${code}: ${details}` : details;
}

/**
 * `verdict`, unless it is read at or after `expiresAt` (performance.now() at the deadline of
 * a check given `timeoutMs`): an answer read while the deadline's timer is also due can run
 * first, and past the deadline the check fails closed whatever came.
 */
export function onTime(verdict: Verdict, expiresAt: number, timeoutMs: number): Verdict {
  if (performance.now() < expiresAt) return verdict;
  return failed("deadline", `no answer within ${timeoutMs} ms`);
}

interface Pending {
  resolve: (verdict: Verdict) => void;
  timer: NodeJS.Timeout;
  expiresAt: number; // performance.now() at the deadline
  timeoutMs: number;
}

/**
 * A single long-lived stream. Once `broken` it stays broken and answers nothing more: the
 * client replaces it. The sidecar answers in request order, so every answer must be for
 * the oldest unanswered request; anything else means the stream cannot be trusted.
 */
export class CheckStream {
  broken = false;
  /** Why the stream broke (once broken). */
  brokenBy: { cause: Failure; message: string } | null = null;
  private readonly call: ClientDuplexStream<CheckOrderStreamRequest, CheckOrderStreamResponse>;
  /** Resolves once the sidecar has answered the stream's headers, or the stream ended. */
  readonly opened: Promise<void>;
  private readonly pending = new Map<bigint, Pending>();
  // Request ids in the order they were sent, with when; answered ones are dropped from the
  // front. A check whose deadline passed stays here until its (late) answer comes.
  private unanswered: { id: bigint; sentAt: number }[] = [];
  private head = 0;

  constructor(
    client: Client,
    metadata: Metadata,
    private readonly stallAfterMs: number,
    private readonly onBroken: (stream: CheckStream) => void = () => {},
  ) {
    const method = methods.checkOrderStream;
    this.call = client.makeBidiStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      metadata,
      {},
    );
    // The sidecar sends the stream's headers as soon as it starts: `opened` resolves then
    // (or when the stream fails), so connect() can leave no set-up cost to the first check.
    this.opened = new Promise((resolve) => {
      this.call.once("metadata", () => resolve());
      this.call.once("status", () => resolve());
    });
    this.call.on("data", (answer: CheckOrderStreamResponse) => this.onAnswer(answer));
    this.call.on("error", (error: ServiceError) =>
      this.break(failureOf(error.code), describeError(error)),
    );
    this.call.on("status", (status: { code: Status }) => {
      if (status.code === Status.OK) this.break("stream_broken", "the sidecar ended the stream");
    });
  }

  /** How many checks await an answer on this stream. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * The verdict for `order`: the sidecar's answer, or a failure at the latest after
   * `timeoutMs`. Never rejects.
   */
  ask(requestId: bigint, order: CheckOrderRequest, timeoutMs: number): Promise<Verdict> {
    if (this.broken) {
      return Promise.resolve(failed("stream_broken", "the stream is already broken"));
    }
    return new Promise<Verdict>((resolve) => {
      const expiresAt = performance.now() + timeoutMs;
      const timer = setTimeout(() => this.expire(requestId, timeoutMs), timeoutMs);
      this.pending.set(requestId, { resolve, timer, expiresAt, timeoutMs });
      this.unanswered.push({ id: requestId, sentAt: performance.now() });
      try {
        this.call.write(create(CheckOrderStreamRequestSchema, { requestId, order }));
      } catch (error) {
        this.break("client_error", `could not send the check: ${String(error)}`);
      }
    });
  }

  /** Deny everything in flight (client_error: closing is our doing) and end the call. */
  close(message = "the client was closed"): void {
    this.break("client_error", message);
  }

  private onAnswer(answer: CheckOrderStreamResponse): void {
    if (this.broken) return; // never answer an order from a stale stream
    if (this.head >= this.unanswered.length) {
      this.break("malformed", `answer to request ${answer.requestId}, which was never sent`);
      return;
    }
    const expected = this.unanswered[this.head]!.id;
    this.head += 1;
    if (this.head > 1024 && this.head * 2 > this.unanswered.length) {
      this.unanswered = this.unanswered.slice(this.head);
      this.head = 0;
    }
    if (answer.requestId !== expected) {
      this.resolve(
        expected,
        failed("malformed", `answer to request ${answer.requestId}, expected ${expected}`),
      );
      this.break("malformed", "answers out of order; the stream is replaced");
      return;
    }
    this.resolve(expected, verdictFromAnswer(answer));
  }

  private resolve(requestId: bigint, verdict: Verdict): void {
    const pending = this.pending.get(requestId);
    if (pending === undefined) return; // its deadline passed: nobody waits any more
    this.pending.delete(requestId);
    clearTimeout(pending.timer);
    pending.resolve(onTime(verdict, pending.expiresAt, pending.timeoutMs));
  }

  private expire(requestId: bigint, timeoutMs: number): void {
    this.resolve(requestId, failed("deadline", `no answer within ${timeoutMs} ms`));
    // One late answer is jitter; no answer at all for stallAfterMs is a hung stream.
    const oldest = this.unanswered[this.head];
    if (oldest !== undefined && performance.now() - oldest.sentAt > this.stallAfterMs) {
      this.break("deadline", `no answer for ${this.stallAfterMs} ms; the stream is replaced`);
    }
  }

  private break(cause: Failure, message: string): void {
    if (this.broken) return;
    this.broken = true;
    this.brokenBy = { cause, message };
    try {
      this.call.cancel();
    } catch {
      // already ended
    }
    const pending = [...this.pending.values()];
    this.pending.clear();
    this.unanswered = [];
    this.head = 0;
    for (const { resolve, timer } of pending) {
      clearTimeout(timer);
      resolve(failed(cause, message));
    }
    this.onBroken(this);
  }
}
