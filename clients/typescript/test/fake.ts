// An in-process fake sidecar (a grpc-js server of ess.v1.GuardService) whose answers each
// test scripts, to drive the client into every failure it must turn into a denial.

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  Metadata,
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type sendUnaryData,
  status as Status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";

import { GuardServiceDefinition, pb } from "../src/index.js";

type StreamCall = ServerDuplexStream<pb.CheckOrderStreamRequest, pb.CheckOrderStreamResponse>;
type Unary<I, O> = (call: ServerUnaryCall<I, O>, callback: sendUnaryData<O>) => void;

/** The sidecar's normal answer: allowed, decision_id "d-<client_order_id>". */
export function allow(request: pb.CheckOrderStreamRequest): pb.CheckOrderStreamResponse {
  return answer(request.requestId, {
    allowed: true,
    reason: pb.DecisionReason.ALLOWED,
    decisionId: `d-${request.order?.clientOrderId ?? ""}`,
    stateVersion: 7n,
  });
}

export function answer(
  requestId: bigint,
  decision: MessageInitShape<typeof pb.CheckOrderResponseSchema>,
): pb.CheckOrderStreamResponse {
  return create(pb.CheckOrderStreamResponseSchema, {
    requestId,
    result: { case: "decision", value: create(pb.CheckOrderResponseSchema, decision) },
  });
}

export class FakeSidecar {
  /** What the stream does with each request; answers it as allowed unless replaced. */
  onCheck: (request: pb.CheckOrderStreamRequest, call: StreamCall) => void = (request, call) => {
    call.write(allow(request));
  };
  /** What the unary CheckOrder answers. */
  onCheckOrder: Unary<pb.CheckOrderRequest, pb.CheckOrderResponse> = (call, callback) => {
    callback(null, create(pb.CheckOrderResponseSchema, {
      allowed: true,
      reason: pb.DecisionReason.ALLOWED,
      decisionId: `u-${call.request.clientOrderId}`,
    }));
  };
  /** What Heartbeat answers instead of ARMED, e.g. an UNAUTHENTICATED error. */
  heartbeatError: { code: Status; details: string } | null = null;
  /** Called when a stream opens; may end it at once (e.g. with an auth error). */
  onStream: (call: StreamCall) => void = () => {};
  readonly streams: StreamCall[] = [];
  readonly requests: pb.CheckOrderStreamRequest[] = [];
  readonly unary: { method: string; request: unknown; authorization: string }[] = [];
  readonly authorizations: string[] = [];
  port = 0;
  private readonly server = new Server();

  constructor() {
    const record =
      <I, O>(method: string, reply: (request: I) => O): Unary<I, O> =>
      (call, callback) => {
        this.unary.push({
          method,
          request: call.request,
          authorization: String(call.metadata.get("authorization")[0] ?? ""),
        });
        callback(null, reply(call.request));
      };
    const implementation: UntypedServiceImplementation = {
      checkOrder: (call: ServerUnaryCall<pb.CheckOrderRequest, pb.CheckOrderResponse>,
        callback: sendUnaryData<pb.CheckOrderResponse>) => this.onCheckOrder(call, callback),
      checkOrderStream: (call: StreamCall) => {
        this.streams.push(call);
        this.authorizations.push(String(call.metadata.get("authorization")[0] ?? ""));
        call.sendMetadata(new Metadata()); // as the sidecar does: the stream is open
        call.on("error", () => {});
        call.on("data", (request: pb.CheckOrderStreamRequest) => {
          this.requests.push(request);
          this.onCheck(request, call);
        });
        call.on("end", () => call.end());
        this.onStream(call);
      },
      heartbeat: (call: ServerUnaryCall<pb.HeartbeatRequest, pb.HeartbeatResponse>,
        callback: sendUnaryData<pb.HeartbeatResponse>) => {
        this.unary.push({ method: "heartbeat", request: call.request, authorization: "" });
        if (this.heartbeatError !== null) {
          callback(this.heartbeatError);
        } else if (call.request.executorId !== call.request.executorId.trim()) { // as the sidecar
          callback({ code: Status.INVALID_ARGUMENT, details: "executor_id: not canonical" });
        } else {
          callback(null, create(pb.HeartbeatResponseSchema, {
            state: pb.State.ARMED, stateVersion: 1n }));
        }
      },
      reportFill: record("reportFill", () =>
        create(pb.ReportFillResponseSchema, { position: 1, accountState: pb.State.ARMED })),
      reportOrderUpdate: record("reportOrderUpdate", () =>
        create(pb.ReportOrderUpdateResponseSchema, { known: true })),
      syncPositions: record("syncPositions", (request: pb.SyncPositionsRequest) =>
        create(pb.SyncPositionsResponseSchema, {
          positions: request.positions.length,
          workingOrders: request.openOrders.length,
        })),
    };
    this.server.addService(GuardServiceDefinition, implementation);
  }

  get target(): string {
    return `127.0.0.1:${this.port}`;
  }

  start(): Promise<this> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, port) => {
        if (error) return reject(error);
        this.port = port;
        resolve(this);
      });
    });
  }

  /** End every open stream with `code`, as a sidecar going away would. */
  breakStreams(code: Status = Status.UNAVAILABLE, details = "going away"): void {
    for (const call of this.streams) {
      try {
        call.emit("error", { code, details });
      } catch {
        // already ended
      }
    }
  }

  stop(): Promise<void> {
    this.server.forceShutdown();
    return Promise.resolve();
  }
}

/** A logger that keeps what it is told. */
export function memoryLogger(): { warn(message: string): void; lines: string[] } {
  const lines: string[] = [];
  return { warn: (message: string) => lines.push(message), lines };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** An order of acc-1 / momo / AAPL, buy 1 at 100. */
export function order(clientOrderId?: string) {
  return {
    account: "acc-1",
    strategy: "momo",
    symbol: "AAPL",
    side: "buy",
    quantity: 1,
    price: 100,
    ...(clientOrderId === undefined ? {} : { clientOrderId }),
  };
}
