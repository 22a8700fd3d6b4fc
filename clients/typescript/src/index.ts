// @ess-sidecar/client: a fail-closed client of the ESS sidecar (ess.v1.GuardService).

export {
  DEFAULT_DEADLINE_MS,
  DEFAULT_RPC_TIMEOUT_MS,
  DEFAULT_STALL_AFTER_MS,
  MAX_TIMER_MS,
  type CheckOptions,
  type Fill,
  GuardClient,
  type GuardClientOptions,
  type OrderUpdate,
  type PositionsSnapshot,
  type TlsOptions,
} from "./client.js";
export {
  boundedReason,
  MAX_REASON_CHARS,
  type Order,
  type ScopeLike,
  type SideLike,
  toEnum,
  toScope,
  type TriggerOptions,
  triggerRequest,
} from "./convert.js";
export { FailurePolicy, type Logger } from "./failures.js";
export { InvalidTokenError } from "./token.js";
export { Heartbeat, type HeartbeatOptions } from "./heartbeat.js";
export { GuardServiceClient, GuardServiceDefinition, methodDefinition, serviceDefinition } from "./service.js";
export {
  CLIENT_FAIL_CLOSED,
  FAILURES,
  type Failure,
  failed,
  type Verdict,
  verdictFromAnswer,
  verdictFromDecision,
  verdictLine,
} from "./verdict.js";
/** The generated messages, enums and service descriptor of ess.v1 (protobuf-es). */
export * as pb from "./gen/ess/v1/guard_pb.js";
