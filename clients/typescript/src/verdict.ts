// The answer to "may I send this order?": a Verdict, from the sidecar or from a failure.

import {
  type CheckOrderResponse,
  type CheckOrderStreamResponse,
  DecisionReason,
  DecisionReasonSchema,
  type Scope,
  ScopeKind,
} from "./gen/ess/v1/guard_pb.js";

/** The reason of every denial the client made up because it could not use a decision. */
export const CLIENT_FAIL_CLOSED = "CLIENT_FAIL_CLOSED";

/** Why the sidecar's decision could not be used; every one of them is a denial. */
export type Failure =
  | "deadline" // no answer within the per-check deadline
  | "unavailable" // the sidecar cannot be reached, or is shutting down
  | "stream_broken" // the stream ended or failed with another status
  | "request_error" // the sidecar rejected the order as bad input
  | "malformed" // an answer this client cannot trust
  | "refused" // the sidecar refused the call (auth, permission, unimplemented, ...)
  | "client_error"; // a bad order, a closed client, or a bug in this client

export const FAILURES: readonly Failure[] = [
  "deadline",
  "unavailable",
  "stream_broken",
  "request_error",
  "malformed",
  "refused",
  "client_error",
];

/**
 * The one thing an executor must obey is `allowed`. `failure` is null for the sidecar's own
 * decisions; when it is set, `allowed` is false and `reason` is CLIENT_FAIL_CLOSED.
 */
export interface Verdict {
  readonly allowed: boolean;
  /** The reason without its prefix ("ALLOWED", "SCOPE_TRIPPED", ...) or CLIENT_FAIL_CLOSED. */
  readonly reason: string;
  /** The sidecar's reason; UNSPECIFIED when the client failed closed. */
  readonly reasonCode: DecisionReason;
  readonly message: string;
  /** Why the client failed closed; null for a decision of the sidecar. */
  readonly failure: Failure | null;
  /** The offending order field of a request_error, e.g. "order.quantity". */
  readonly field: string;
  readonly stateVersion: bigint;
  readonly decisionId: string;
  /** The scope whose state denied the order ("GLOBAL", "STRATEGY:momo"); "" otherwise. */
  readonly blockingScope: string;
  /** The order's id (made up by the client unless given): its fills and updates carry it. */
  readonly clientOrderId: string;
}

const KNOWN_REASONS: ReadonlySet<number> = new Set(
  DecisionReasonSchema.values.map((value) => value.number).filter((n) => n !== 0),
);

/** A fail-closed denial for `cause`. */
export function failed(cause: Failure, message: string, field = ""): Verdict {
  return {
    allowed: false,
    reason: CLIENT_FAIL_CLOSED,
    reasonCode: DecisionReason.UNSPECIFIED,
    message,
    failure: cause,
    field,
    stateVersion: 0n,
    decisionId: "",
    blockingScope: "",
    clientOrderId: "",
  };
}

/** "GLOBAL" or "KIND:id", the way operators write scopes. */
export function scopeText(scope: Scope): string {
  const kind = ScopeKind[scope.kind] ?? String(scope.kind);
  return scope.kind === ScopeKind.GLOBAL ? kind : `${kind}:${scope.id}`;
}

/** Trust a decision only if it is self-consistent; anything else is a denial. */
export function verdictFromDecision(decision: CheckOrderResponse): Verdict {
  if (!KNOWN_REASONS.has(decision.reason)) {
    return failed("malformed", `unknown decision reason ${decision.reason}`);
  }
  if (decision.allowed !== (decision.reason === DecisionReason.ALLOWED)) {
    return failed(
      "malformed",
      `allowed=${decision.allowed} contradicts reason ${DecisionReason[decision.reason]}`,
    );
  }
  return {
    allowed: decision.allowed,
    reason: DecisionReason[decision.reason] as string,
    reasonCode: decision.reason,
    message: decision.message,
    failure: null,
    field: "",
    stateVersion: decision.stateVersion,
    decisionId: decision.decisionId,
    blockingScope: decision.blockingScope ? scopeText(decision.blockingScope) : "",
    clientOrderId: "",
  };
}

/** A stream answer: a decision (checked as above), a request error, or malformed. */
export function verdictFromAnswer(answer: CheckOrderStreamResponse): Verdict {
  switch (answer.result.case) {
    case "decision":
      return verdictFromDecision(answer.result.value);
    case "error": {
      const error = answer.result.value;
      return failed(
        "request_error",
        error.message || "the sidecar rejected the order",
        error.field,
      );
    }
    default:
      return failed("malformed", "answer carries neither a decision nor an error");
  }
}

/**
 * The one line ess-check prints: `ALLOWED <decision_id>` or `DENIED <REASON> <message>`; a
 * fail-closed denial is `DENIED CLIENT_FAIL_CLOSED <cause>: <message>`.
 */
export function verdictLine(verdict: Verdict): string {
  if (verdict.allowed) return oneLine(`ALLOWED ${verdict.decisionId}`);
  const message = verdict.failure ? `${verdict.failure}: ${verdict.message}` : verdict.message;
  return oneLine(`DENIED ${verdict.reason} ${message}`);
}

/**
 * One line whatever the sidecar's text holds: each run of whitespace, control or line
 * separator characters becomes one space (review 52a: a trip reason with a newline printed
 * a second line reading `ALLOWED <id>` under the denial).
 */
function oneLine(text: string): string {
  return text.split(/[\s\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+/u).filter(Boolean).join(" ");
}
