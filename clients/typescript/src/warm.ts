// Warming the hot path before the first check: protobuf-es builds what it needs to
// (de)serialize a message type on its first use, and V8 compiles a function on its first
// calls. On a loaded 2-core host the first check of a process took 12-60 ms without this and
// 9-15 ms with it (the rest is grpc-js's and the sidecar's own first message on a stream);
// more rounds did not help. It costs about 3 ms, once per process, in connect().

import { create } from "@bufbuild/protobuf";

import { orderRequest } from "./convert.js";
import {
  CheckOrderStreamRequestSchema,
  CheckOrderStreamResponseSchema,
  DecisionReason,
} from "./gen/ess/v1/guard_pb.js";
import { methods } from "./service.js";
import { verdictFromAnswer } from "./verdict.js";

let warmed = false;

/** Run the client's (de)serialization and verdict code a few times, offline. */
export function warmUp(rounds = 10): void {
  if (warmed) return;
  warmed = true;
  const method = methods.checkOrderStream;
  const answer = method.responseSerialize(
    create(CheckOrderStreamResponseSchema, {
      requestId: 1n,
      result: {
        case: "decision",
        value: { allowed: true, reason: DecisionReason.ALLOWED, decisionId: "warm-1", stateVersion: 1n },
      },
    }),
  );
  for (let i = 0; i < rounds; i++) {
    const order = orderRequest(
      { account: "warm", strategy: "warm", symbol: "WARM", side: "buy", quantity: 1, price: 1 },
      `warm-${i}`,
    );
    method.requestSerialize(create(CheckOrderStreamRequestSchema, { requestId: BigInt(i), order }));
    verdictFromAnswer(method.responseDeserialize(answer));
  }
}
