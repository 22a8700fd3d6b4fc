// GuardClient: fail-closed order checks over one long-lived stream, plus thin RPC wrappers.

import { randomBytes } from "node:crypto";

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  Client,
  connectivityState,
  credentials as grpcCredentials,
  Metadata,
  type MethodDefinition,
  type ServiceError,
  status as Status,
} from "@grpc/grpc-js";

import {
  type CheckOrderRequest,
  type GetStateResponse,
  GetStateRequestSchema,
  type HeartbeatResponse,
  HeartbeatRequestSchema,
  type IncludedFillsSchema,
  MetricSchema,
  type OpenOrderSchema,
  OrderStatusSchema,
  type PositionSchema,
  type ReportFillResponse,
  ReportFillRequestSchema,
  type ReportMetricResponse,
  ReportMetricRequestSchema,
  type ReportOrderUpdateResponse,
  ReportOrderUpdateRequestSchema,
  SideSchema,
  type SyncPositionsResponse,
  SyncPositionsRequestSchema,
  type TriggerResponse,
  type TriggerRequest,
} from "./gen/ess/v1/guard_pb.js";
import {
  clientOrderIdOf,
  type Order,
  orderRequest,
  type ScopeLike,
  type SideLike,
  toEnum,
  toScope,
  type TriggerOptions,
  triggerRequest,
} from "./convert.js";
import { FailurePolicy, type Logger } from "./failures.js";
import { Heartbeat, type HeartbeatOptions } from "./heartbeat.js";
import { methods } from "./service.js";
import { validToken } from "./token.js";
import { warmUp } from "./warm.js";
import { CheckStream, describeError, failureOf, onTime } from "./stream.js";
import { failed, type Failure, type Verdict, verdictFromDecision } from "./verdict.js";

/** The default per-check deadline. The sidecar's budget on a Unix socket is p99.9 <= 1 ms;
 * a hung or dead sidecar costs each order at most this long. */
export const DEFAULT_DEADLINE_MS = 5;
/** The other RPCs' timeout: not the hot path (a Trigger is fsynced before it answers). */
export const DEFAULT_RPC_TIMEOUT_MS = 1000;
/** After this long without any answer to a sent check, the stream is taken for hung. */
export const DEFAULT_STALL_AFTER_MS = 1000;

// gRPC's default reconnect backoff grows to 120 s; a same-host sidecar restarted by its
// supervisor should be found again within a second.
const CHANNEL_OPTIONS: ChannelOptions = {
  "grpc.initial_reconnect_backoff_ms": 50,
  "grpc.max_reconnect_backoff_ms": 1000,
  // The client retries nothing by itself: a check that fails is a denial at once.
  "grpc.enable_retries": 0,
};
const RECONNECT_MIN_MS = 50;
const RECONNECT_MAX_MS = 1000;

/** TLS to the sidecar: PEM contents (not paths). `cert` and `key` make it mutual TLS. */
export interface TlsOptions {
  /** The CA that signed the sidecar's certificate; the system's roots when omitted. */
  ca?: Buffer;
  /** The client's certificate chain and private key, for mutual TLS. */
  cert?: Buffer;
  key?: Buffer;
  /** The name to verify the sidecar's certificate against, when not the target's host. */
  serverName?: string;
}

export interface GuardClientOptions {
  /** The per-check deadline, in ms (default 5); each call may give its own. */
  deadlineMs?: number;
  /** The timeout of the other RPCs, in ms (default 1000); not > 0: a RangeError. */
  rpcTimeoutMs?: number;
  /** The bearer token of a sidecar with authentication on: `authorization: Bearer <token>`.
   * Space, tab, CR and LF around it are dropped (a CRLF file's "tok\r" is "tok"); a byte
   * outside 0x20-0x7E left inside makes the constructor throw InvalidTokenError. */
  token?: string;
  /** More metadata sent with every call. */
  metadata?: Record<string, string>;
  /** TLS (true: the system's roots); insecure (plaintext) when omitted. */
  tls?: TlsOptions | true;
  /** Ready-made channel credentials; they take the place of `tls`. */
  credentials?: ChannelCredentials;
  /** After this long (ms) without an answer to a sent check, the stream is replaced. */
  stallAfterMs?: number;
  /** Where failures are logged (default: console), at most once per cause per interval. */
  logger?: Logger;
  /** The interval of that rate limit, in ms (default 1000). */
  logIntervalMs?: number;
  /** More grpc-js channel options (they override this client's). */
  channelOptions?: ChannelOptions;
}

export interface CheckOptions {
  /** This check's deadline, in ms; the client's when omitted. */
  deadlineMs?: number;
}

export interface Fill {
  account: string;
  strategy: string;
  symbol: string;
  side: SideLike;
  quantity: number;
  price: number;
  /** Required: the order the fill is of (Verdict.clientOrderId). */
  clientOrderId: string;
  /** Required: the venue's execution id; a fill_id already applied is ignored. */
  fillId: string;
}

/** A working order ended ("CANCELLED", "REJECTED", "EXPIRED") or is "OPEN" with
 * `remainingQuantity` left. `filledQuantity` is the venue's cumulative filled quantity (FIX
 * CumQty), if known: the fills it counts beyond those reported stay reserved until they
 * arrive; without it an "OPEN" update releases nothing, and a fill of an ended order that
 * comes after the update trips the account. Give it when fills come by a separate drop
 * copy. */
export interface OrderUpdate {
  account: string;
  clientOrderId: string;
  /** "CANCELLED", "REJECTED", "EXPIRED", or "OPEN" with remainingQuantity. */
  status: string | number;
  remainingQuantity?: number;
  /** The venue's cumulative filled quantity (FIX CumQty); sent only if given (0 is sent). */
  filledQuantity?: number;
}

export interface PositionsSnapshot {
  account: string;
  /** Account equity (> 0). */
  equity: number;
  positions: MessageInitShape<typeof PositionSchema>[];
  /** When given (even empty), all of the account's open orders: the rest have ended. null
   * is not given (not known: none end); anything else that is not an array is a TypeError. */
  openOrders?: MessageInitShape<typeof OpenOrderSchema>[] | null;
  /** Per order, the cumulative fills (the venue's CumQty) the positions already count:
   * fills reported after the snapshot move no position until they pass it. Name every
   * order open or filled since the positions were read (0 if none of its fills are in
   * them), or fills count twice or go missing. */
  includedFills?: MessageInitShape<typeof IncludedFillsSchema>[];
}

function channelCredentials(options: GuardClientOptions): ChannelCredentials {
  if (options.credentials) return options.credentials;
  if (options.tls === undefined) return grpcCredentials.createInsecure();
  const tls = options.tls === true ? {} : options.tls;
  return grpcCredentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}

/** The longest timer Node keeps: setTimeout takes a longer one for 1 ms (review 54b: a
 * deadline of 3e9 ms denied every check after 1 ms, "no answer within 3000000000 ms"). */
export const MAX_TIMER_MS = 2_147_483_647;

/** A per-call deadline: one that is not a number > 0 is the fallback (the client's), as
 * one that is NaN or negative has always been; one above MAX_TIMER_MS is MAX_TIMER_MS (review
 * 54e: "wait a long time" became the client's 5 ms; Java caps it too). */
function validDeadline(ms: number | undefined, fallback: number): number {
  return typeof ms === "number" && ms > 0 ? Math.min(ms, MAX_TIMER_MS) : fallback;
}

/** A client option timed by setTimeout: above MAX_TIMER_MS it is refused, a RangeError
 * naming it; otherwise as a per-call one. */
function clientTimer(name: string, ms: number | undefined, fallback: number): number {
  if (typeof ms === "number" && ms > MAX_TIMER_MS) {
    throw new RangeError(
      `${name} must be at most ${MAX_TIMER_MS} ms (Node's longest timer), got ${ms}`);
  }
  return validDeadline(ms, fallback);
}

/** The rpcTimeoutMs option: one that is not a finite number > 0 is refused, as every
 * client refuses it, not silently replaced by the default. */
function rpcTimeout(ms: number | undefined): number {
  if (ms === undefined) return DEFAULT_RPC_TIMEOUT_MS;
  if (typeof ms !== "number" || !(ms > 0) || !Number.isFinite(ms)) {
    throw new RangeError(`rpcTimeoutMs must be a finite number > 0, got ${String(ms)}`);
  }
  return ms;
}

/**
 * A client of one sidecar. `check` and `checkUnary` never reject: whatever goes wrong is a
 * denial (CLIENT_FAIL_CLOSED). The other RPCs reject with the grpc-js ServiceError.
 */
export class GuardClient {
  readonly deadlineMs: number;
  readonly rpcTimeoutMs: number;
  /** How many CheckOrderStream calls were opened: more than one means one was replaced. */
  streamsOpened = 0;
  private readonly rpc: Client;
  private readonly metadata: Metadata;
  private readonly stallAfterMs: number;
  private readonly policy: FailurePolicy;
  private readonly logger: Logger;
  private readonly idPrefix = randomBytes(6).toString("hex");
  private orderCount = 0;
  private requestId = 0n;
  private stream: CheckStream | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectDelayMs = RECONNECT_MIN_MS;
  private waitingForReady = false;
  private closed = false;
  /** The heartbeats started here: close() stops them. */
  private readonly heartbeats = new Set<Heartbeat>();

  /** `target`: "unix:/abs/path/ess.sock" (fastest) or "host:port". */
  constructor(
    readonly target: string,
    options: GuardClientOptions = {},
  ) {
    this.deadlineMs = clientTimer("deadlineMs", options.deadlineMs, DEFAULT_DEADLINE_MS);
    this.rpcTimeoutMs = rpcTimeout(options.rpcTimeoutMs);
    this.stallAfterMs = clientTimer("stallAfterMs", options.stallAfterMs,
      DEFAULT_STALL_AFTER_MS);
    this.logger = options.logger ?? console;
    this.policy = new FailurePolicy(this.logger, options.logIntervalMs ?? 1000);
    this.metadata = new Metadata();
    for (const [key, value] of Object.entries(options.metadata ?? {})) {
      this.metadata.set(key, value);
    }
    const token = validToken(options.token);
    if (token) this.metadata.set("authorization", `Bearer ${token}`);
    const channelOptions: ChannelOptions = { ...CHANNEL_OPTIONS };
    const tls = options.tls;
    if (tls !== undefined && tls !== true && tls.serverName) {
      channelOptions["grpc.ssl_target_name_override"] = tls.serverName;
      channelOptions["grpc.default_authority"] = tls.serverName;
    }
    Object.assign(channelOptions, options.channelOptions);
    this.rpc = new Client(target, channelCredentials(options), channelOptions);
  }

  /** How many checks failed closed, by cause, since the client was made. */
  get failures(): Readonly<Record<Failure, number>> {
    return this.policy.counts;
  }

  /**
   * Connect and open the stream, so the first check does not pay for it. Resolves whether
   * the sidecar was reached within `timeoutMs`; never rejects. Checks work without it.
   */
  connect(timeoutMs = 1000): Promise<boolean> {
    return new Promise((resolve) => {
      if (this.closed) return resolve(false);
      this.rpc.getChannel().getConnectivityState(true); // start connecting, then warm up
      warmUp();
      const deadline = Date.now() + timeoutMs;
      this.rpc.waitForReady(deadline, (error) => {
        if (error || this.closed) return resolve(false);
        let stream: CheckStream | null = null;
        try {
          stream = this.currentStream();
        } catch {
          // the first check opens one
        }
        if (stream === null) return resolve(true);
        // Reached: the stream's headers are a bonus (an older sidecar sends none).
        const timer = setTimeout(() => resolve(!this.closed), Math.max(0, deadline - Date.now()));
        void stream.opened.then(() => {
          clearTimeout(timer);
          resolve(!this.closed);
        });
      });
    });
  }

  /** A client_order_id no other order of this client has: a random per-client prefix,
   * then a count (no two clients, nor one restarted, repeat one). */
  newClientOrderId(): string {
    this.orderCount += 1;
    return `${this.idPrefix}-${this.orderCount}`;
  }

  /**
   * May this order be sent? Obey `verdict.allowed`; send the order with
   * `verdict.clientOrderId`, which its fills and updates must carry. Never rejects: a missed
   * deadline, an unreachable sidecar, a broken stream, a rejected order or a malformed answer
   * is a denial with reason CLIENT_FAIL_CLOSED and `failure` set, counted and logged.
   */
  async check(order: Order, options: CheckOptions = {}): Promise<Verdict> {
    let clientOrderId = "";
    let verdict: Verdict;
    try {
      clientOrderId = clientOrderIdOf(order) || this.newClientOrderId();
      const request = orderRequest(order, clientOrderId);
      verdict = await this.ask(request, validDeadline(options.deadlineMs, this.deadlineMs));
    } catch (error) {
      // fail closed on anything, a bad order or a bug here included
      verdict = failed("client_error", `could not check the order: ${String(error)}`);
    }
    if (verdict.failure !== null) {
      verdict = this.policy.apply(verdict);
    } else {
      this.reconnectDelayMs = RECONNECT_MIN_MS;
    }
    return { ...verdict, clientOrderId };
  }

  /** `check` over the unary CheckOrder RPC, with the same fail-closed rules. */
  async checkUnary(order: Order, options: CheckOptions = {}): Promise<Verdict> {
    let clientOrderId = "";
    let verdict: Verdict;
    try {
      clientOrderId = clientOrderIdOf(order) || this.newClientOrderId();
      const request = orderRequest(order, clientOrderId);
      verdict = this.closed
        ? failed("client_error", "the client is closed")
        : await this.askUnary(request, validDeadline(options.deadlineMs, this.deadlineMs));
    } catch (error) {
      verdict = failed("client_error", `could not check the order: ${String(error)}`);
    }
    if (verdict.failure !== null) verdict = this.policy.apply(verdict);
    return { ...verdict, clientOrderId };
  }

  /** Deny the checks in flight, stop reconnecting and close the channel; later checks deny.
   * Heartbeats still running stop without deregistering (the scope trips at the TTL, as for
   * an executor that died): stop them first (which deregisters) for a clean shutdown. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const heartbeat of this.heartbeats) heartbeat.cancel();
    this.heartbeats.clear();
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.stream?.close();
    this.rpc.close();
  }

  private ask(request: CheckOrderRequest, deadlineMs: number): Promise<Verdict> | Verdict {
    if (this.closed) return failed("client_error", "the client is closed");
    const stream = this.currentStream();
    if (stream === null) {
      const last = this.stream?.brokenBy?.message;
      return failed("unavailable", `the sidecar is unreachable${last ? ` (${last})` : ""}; reconnecting`);
    }
    this.requestId += 1n;
    return stream.ask(this.requestId, request, deadlineMs);
  }

  /** The healthy stream; a new one if it broke; null while the channel is known down. */
  private currentStream(): CheckStream | null {
    if (this.stream !== null && !this.stream.broken) return this.stream;
    const state = this.rpc.getChannel().getConnectivityState(true);
    if (state === connectivityState.TRANSIENT_FAILURE || state === connectivityState.SHUTDOWN) {
      this.scheduleReconnect();
      return null;
    }
    return this.openStream();
  }

  private openStream(): CheckStream {
    this.stream = new CheckStream(this.rpc, this.metadata, this.stallAfterMs, (broken) =>
      this.onBroken(broken),
    );
    this.streamsOpened += 1;
    return this.stream;
  }

  private onBroken(stream: CheckStream): void {
    if (stream === this.stream && !this.closed) this.scheduleReconnect();
  }

  // In the background: once the channel is READY again, open a fresh stream, so that the
  // next check finds one. The channel itself reconnects with a 50 ms..1 s backoff; a stream
  // that breaks again without answering anything backs off 50 ms..1 s too.
  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer !== null || this.waitingForReady) return;
    const delay = this.reconnectDelayMs;
    this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, RECONNECT_MAX_MS);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.reconnect();
    }, delay);
    this.reconnectTimer.unref();
  }

  private reconnect(): void {
    if (this.closed || (this.stream !== null && !this.stream.broken)) return;
    this.waitingForReady = true;
    try {
      this.rpc.waitForReady(Date.now() + 5000, (error) => {
        this.waitingForReady = false;
        if (this.closed || (this.stream !== null && !this.stream.broken)) return;
        try {
          if (error) this.scheduleReconnect();
          else this.openStream();
        } catch {
          this.scheduleReconnect(); // the next check opens one otherwise
        }
      });
    } catch {
      this.waitingForReady = false;
    }
  }

  private askUnary(request: CheckOrderRequest, deadlineMs: number): Promise<Verdict> {
    return new Promise((resolve) => {
      const expiresAt = performance.now() + deadlineMs;
      let done = false;
      const finish = (verdict: Verdict): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(verdict);
      };
      const timer = setTimeout(() => {
        finish(failed("deadline", `no answer within ${deadlineMs} ms`));
        call.cancel();
      }, deadlineMs);
      const method = methods.checkOrder;
      const call = this.rpc.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        this.metadata.clone(),
        // Within Node's longest timer once sent in whole seconds, rounded up: a grpc-js
        // server's deadline timer takes it too (longer, it fires at once).
        { deadline: Date.now() + Math.min(deadlineMs + 1000, MAX_TIMER_MS - 1000) },
        (error, response) => {
          if (error) {
            const cause = error.code === Status.INVALID_ARGUMENT ? "request_error" : failureOf(error.code);
            finish(failed(cause, describeError(error)));
          } else if (response === undefined) {
            finish(failed("malformed", "an empty answer"));
          } else {
            // read in the poll phase in which the deadline's timer is due, it runs first
            finish(onTime(verdictFromDecision(response), expiresAt, deadlineMs));
          }
        },
      );
    });
  }

  private unary<I, O>(method: MethodDefinition<I, O>, request: I, timeoutMs?: number): Promise<O> {
    return new Promise((resolve, reject) => {
      const options: CallOptions = { deadline: Date.now() + (timeoutMs ?? this.rpcTimeoutMs) };
      this.rpc.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        this.metadata.clone(),
        options,
        (error: ServiceError | null, response?: O) => {
          if (error) reject(error);
          else resolve(response as O);
        },
      );
    });
  }

  /**
   * An incremental fill of the order `clientOrderId`; `fillId` is the venue's execution id
   * (one already applied is ignored: `duplicate`). `unchecked`: the sidecar never allowed
   * that order, and tripped the account.
   */
  reportFill(fill: Fill): Promise<ReportFillResponse> {
    if (!fill.clientOrderId || !fill.fillId) {
      return Promise.reject(new TypeError("reportFill needs clientOrderId and fillId"));
    }
    return this.unary(
      methods.reportFill,
      create(ReportFillRequestSchema, {
        account: fill.account,
        strategy: fill.strategy,
        symbol: fill.symbol,
        side: toEnum(SideSchema, fill.side),
        quantity: fill.quantity,
        price: fill.price,
        clientOrderId: fill.clientOrderId,
        fillId: fill.fillId,
      }),
    );
  }

  /** A working order ended ("CANCELLED", "REJECTED", "EXPIRED") or is "OPEN" with less
   * remaining: its reservation is released, except what may have been filled but not
   * reported yet (see `OrderUpdate`); `known` is false if no such order was working. */
  reportOrderUpdate(update: OrderUpdate): Promise<ReportOrderUpdateResponse> {
    return this.unary(
      methods.reportOrderUpdate,
      create(ReportOrderUpdateRequestSchema, {
        account: update.account,
        clientOrderId: update.clientOrderId,
        status: toEnum(OrderStatusSchema, update.status),
        ...(update.remainingQuantity === undefined
          ? {}
          : { remainingQuantity: update.remainingQuantity }),
        ...(update.filledQuantity === undefined
          ? {}
          : { filledQuantity: update.filledQuantity }),
      }),
    );
  }

  /** Replace the account's book with this snapshot; with `openOrders` (even empty), they
   * are all of its working orders. Without them (or null: not known), none ends. */
  syncPositions(snapshot: PositionsSnapshot): Promise<SyncPositionsResponse> {
    const openOrders: unknown = snapshot.openOrders ?? undefined;
    if (openOrders !== undefined && !Array.isArray(openOrders)) {
      const got = typeof openOrders;
      return Promise.reject(
        new TypeError(`openOrders must be an array (or null: not known), got ${got}`),
      );
    }
    return this.unary(
      methods.syncPositions,
      create(SyncPositionsRequestSchema, {
        account: snapshot.account,
        equity: snapshot.equity,
        positions: snapshot.positions,
        openOrders: snapshot.openOrders ?? [],
        openOrdersComplete: openOrders !== undefined,
        includedFills: snapshot.includedFills ?? [],
      }),
    );
  }

  /** One metric sample, e.g. ("STRATEGY:momo", "DAILY_DRAWDOWN_PCT", 6). */
  reportMetric(scope: ScopeLike, metric: string | number, value: number): Promise<ReportMetricResponse> {
    return this.unary(
      methods.reportMetric,
      create(ReportMetricRequestSchema, {
        scope: toScope(scope),
        metric: toEnum(MetricSchema, metric),
        value,
      }),
    );
  }

  /** One heartbeat: `scope` trips if none arrives within `ttlMs`. See startHeartbeat. */
  heartbeat(executorId: string, scope: ScopeLike, ttlMs: number, deregister = false): Promise<HeartbeatResponse> {
    return this.unary(
      methods.heartbeat,
      create(HeartbeatRequestSchema, { executorId, scope: toScope(scope), ttlMs, deregister }),
    );
  }

  /** A dead-man's switch: heartbeats every `intervalMs` (default ttlMs / 3) until stop(),
   * which deregisters. The first one is sent at once. One the sidecar refuses stops it
   * (`refused`, logged). A closed client throws, as one whose `alive` is not true now. */
  startHeartbeat(options: HeartbeatOptions): Heartbeat {
    if (this.closed) throw new Error("the client is closed");
    const heartbeat = new Heartbeat(
      (deregister) => this.heartbeat(options.executorId, options.scope, options.ttlMs, deregister),
      options,
      this.logger,
    ).start();
    for (const old of this.heartbeats) if (!old.running) this.heartbeats.delete(old);
    this.heartbeats.add(heartbeat);
    return heartbeat;
  }

  /** Kill switch for `scope`; durable on the sidecar before this resolves. Never refused
   * here for what comes with the stop (see `triggerRequest`): an unknown mode halts, an
   * unknown reason code is USER_INITIATED, unknown directives are left out, each noted in
   * the reason; the reason is made well-formed and cut to the sidecar's 1024 characters.
   * Only a scope it cannot read is refused: a rejected promise, never a synchronous throw. */
  trigger(scope: ScopeLike, reason = "", options: TriggerOptions = {}): Promise<TriggerResponse> {
    let request: TriggerRequest;
    try {
      request = triggerRequest(scope, reason, options);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.unary(methods.trigger, request);
  }

  /** Every scope that is not ARMED, the thresholds in force and the state version. */
  getState(): Promise<GetStateResponse> {
    return this.unary(methods.getState, create(GetStateRequestSchema, {}));
  }
}
