// GuardClient against an in-process fake sidecar: every way a check can go wrong is a
// denial (CLIENT_FAIL_CLOSED), the promise never rejects, answers are matched by request_id.

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";

import { create } from "@bufbuild/protobuf";
import { status as Status } from "@grpc/grpc-js";

import {
  CLIENT_FAIL_CLOSED, GuardClient, type GuardClientOptions, InvalidTokenError, MAX_TIMER_MS,
  pb,
} from "../src/index.js";
import { allow, answer, FakeSidecar, memoryLogger, order, sleep } from "./fake.js";

let fake: FakeSidecar;
let answerCheckOrder: FakeSidecar["onCheckOrder"];
const clients: GuardClient[] = [];

function client(options: GuardClientOptions = {}): GuardClient {
  const made = new GuardClient(fake.target, { logger: memoryLogger(), ...options });
  clients.push(made);
  return made;
}

async function connected(options: GuardClientOptions = {}): Promise<GuardClient> {
  const made = client(options);
  assert.equal(await made.connect(5000), true);
  return made;
}

/** Wait until `condition` holds (the client reconnects in the background). */
async function eventually(condition: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!condition()) {
    assert.ok(Date.now() < end, "condition never held");
    await sleep(5);
  }
}

before(async () => {
  fake = await new FakeSidecar().start();
  answerCheckOrder = fake.onCheckOrder;
});

beforeEach(() => {
  fake.onCheck = (request, call) => call.write(allow(request));
  fake.onStream = () => {};
  fake.onCheckOrder = answerCheckOrder;
  fake.heartbeatError = null;
  while (clients.length) clients.pop()!.close();
});

after(async () => {
  while (clients.length) clients.pop()!.close();
  await fake.stop();
});

describe("check over the stream", () => {
  test("an allowed order carries the sidecar's decision and its client_order_id", async () => {
    const guard = await connected();
    const verdict = await guard.check(order("coid-1"), { deadlineMs: 2000 });
    assert.equal(verdict.allowed, true);
    assert.equal(verdict.reason, "ALLOWED");
    assert.equal(verdict.failure, null);
    assert.equal(verdict.decisionId, "d-coid-1");
    assert.equal(verdict.clientOrderId, "coid-1");
    assert.equal(verdict.stateVersion, 7n);
    const sent = fake.requests.at(-1)!;
    assert.equal(sent.order?.side, pb.Side.BUY);
    assert.equal(sent.order?.clientOrderId, "coid-1");
  });

  test("a client_order_id is made up when none is given: per-client prefix + counter", async () => {
    const guard = await connected();
    const first = await guard.check(order(), { deadlineMs: 2000 });
    const second = await guard.check(order(), { deadlineMs: 2000 });
    assert.match(first.clientOrderId, /^[0-9a-f]{12}-\d+$/);
    const [prefix, n] = first.clientOrderId.split("-");
    assert.equal(second.clientOrderId, `${prefix}-${Number(n) + 1}`);
    assert.equal(second.decisionId, `d-${second.clientOrderId}`);
    const other = await connected();
    assert.notEqual(other.newClientOrderId().split("-")[0], prefix);
  });

  test("several checks in flight get their own answers, matched by request_id", async () => {
    const held: pb.CheckOrderStreamRequest[] = [];
    fake.onCheck = (request, call) => {
      held.push(request);
      if (held.length === 8) for (const r of held) call.write(allow(r)); // in request order
    };
    const guard = await connected();
    const ids = Array.from({ length: 8 }, (_, i) => `many-${i}`);
    const verdicts = await Promise.all(ids.map((id) => guard.check(order(id), { deadlineMs: 3000 })));
    for (const [i, verdict] of verdicts.entries()) {
      assert.equal(verdict.allowed, true, verdict.message);
      assert.equal(verdict.decisionId, `d-${ids[i]}`);
    }
    const requestIds = held.map((r) => r.requestId);
    assert.equal(new Set(requestIds).size, 8);
    assert.equal(guard.streamsOpened, 1);
  });

  test("a denial of the sidecar is passed on, with its reason and blocking scope", async () => {
    fake.onCheck = (request, call) =>
      call.write(answer(request.requestId, {
        allowed: false,
        reason: pb.DecisionReason.SCOPE_TRIPPED,
        message: "STRATEGY:momo is TRIPPED",
        blockingScope: { kind: pb.ScopeKind.STRATEGY, id: "momo" },
      }));
    const guard = await connected();
    const verdict = await guard.check(order("t-1"), { deadlineMs: 2000 });
    assert.equal(verdict.allowed, false);
    assert.equal(verdict.reason, "SCOPE_TRIPPED");
    assert.equal(verdict.failure, null);
    assert.equal(verdict.blockingScope, "STRATEGY:momo");
    assert.equal(verdict.message, "STRATEGY:momo is TRIPPED");
  });
});

describe("malformed answers fail closed", () => {
  const cases: [string, (r: pb.CheckOrderStreamRequest) => pb.CheckOrderStreamResponse][] = [
    ["an unknown reason", (r) => answer(r.requestId, { allowed: false, reason: 99 as pb.DecisionReason })],
    ["an unknown reason, allowed", (r) => answer(r.requestId, { allowed: true, reason: 99 as pb.DecisionReason })],
    ["UNSPECIFIED", (r) => answer(r.requestId, { allowed: true, reason: 0 })],
    ["allowed with a denial's reason",
      (r) => answer(r.requestId, { allowed: true, reason: pb.DecisionReason.SCOPE_TRIPPED })],
    ["denied with reason ALLOWED",
      (r) => answer(r.requestId, { allowed: false, reason: pb.DecisionReason.ALLOWED })],
    ["neither a decision nor an error",
      (r) => create(pb.CheckOrderStreamResponseSchema, { requestId: r.requestId })],
  ];
  for (const [name, reply] of cases) {
    test(name, async () => {
      fake.onCheck = (request, call) => call.write(reply(request));
      const logger = memoryLogger();
      const guard = await connected({ logger });
      const verdict = await guard.check(order(), { deadlineMs: 2000 });
      assert.equal(verdict.allowed, false);
      assert.equal(verdict.reason, CLIENT_FAIL_CLOSED);
      assert.equal(verdict.failure, "malformed");
      assert.equal(guard.failures.malformed, 1);
      assert.equal(logger.lines.length, 1);
      assert.match(logger.lines[0]!, /CLOSED \(malformed\)/);
    });
  }

  test("an answer with the wrong request_id denies and replaces the stream", async () => {
    let wrong = true;
    fake.onCheck = (request, call) => {
      call.write(allow(wrong ? { ...request, requestId: request.requestId + 100n } : request));
      wrong = false;
    };
    const guard = await connected();
    const verdict = await guard.check(order(), { deadlineMs: 2000 });
    assert.equal(verdict.allowed, false);
    assert.equal(verdict.failure, "malformed");
    assert.match(verdict.message, /expected/);
    await eventually(() => guard.streamsOpened === 2);
    const next = await guard.check(order(), { deadlineMs: 2000 });
    assert.equal(next.allowed, true, next.message);
  });

  test("an answer to a request never sent denies and replaces the stream", async () => {
    const guard = await connected();
    await guard.check(order(), { deadlineMs: 2000 });
    fake.onCheck = () => {};
    const sent = fake.requests.length;
    const pending = guard.check(order(), { deadlineMs: 2000 });
    await eventually(() => fake.requests.length > sent);
    const request = fake.requests.at(-1)!;
    fake.streams.at(-1)!.write(allow(request)); // the real one
    fake.streams.at(-1)!.write(allow(request)); // and one too many
    assert.equal((await pending).allowed, true);
    await eventually(() => guard.streamsOpened === 2);
  });

  test("a request error answers that check as a denial; the stream stays", async () => {
    fake.onCheck = (request, call) =>
      call.write(create(pb.CheckOrderStreamResponseSchema, {
        requestId: request.requestId,
        result: {
          case: "error",
          value: create(pb.RequestErrorSchema, {
            code: Status.INVALID_ARGUMENT, field: "order.quantity", message: "must be > 0",
          }),
        },
      }));
    const guard = await connected();
    const verdict = await guard.check({ ...order(), quantity: -1 }, { deadlineMs: 2000 });
    assert.equal(verdict.allowed, false);
    assert.equal(verdict.reason, CLIENT_FAIL_CLOSED);
    assert.equal(verdict.failure, "request_error");
    assert.equal(verdict.field, "order.quantity");
    fake.onCheck = (request, call) => call.write(allow(request));
    assert.equal((await guard.check(order(), { deadlineMs: 2000 })).allowed, true);
    assert.equal(guard.streamsOpened, 1);
  });

  test("a bad order (wrong types, unknown side) is a client_error denial, not a throw", async () => {
    const guard = await connected();
    const sideless = await guard.check({ ...order(), side: "sideways" });
    assert.equal(sideless.failure, "client_error");
    const typed = await guard.check({ ...order(), quantity: "1" as unknown as number });
    assert.equal(typed.failure, "client_error");
    assert.equal(typed.allowed, false);
    // a client_order_id that is no string (untyped JS) is not sent either (review 35: it was)
    const sent = fake.requests.length;
    let unarySent = 0;
    fake.onCheckOrder = (call, callback) => {
      unarySent += 1;
      answerCheckOrder(call, callback);
    };
    const numbered = { ...order(), clientOrderId: 12345 as unknown as string };
    for (const verdict of [await guard.check(numbered), await guard.checkUnary(numbered)]) {
      assert.equal(verdict.allowed, false);
      assert.equal(verdict.failure, "client_error");
      assert.match(verdict.message, /clientOrderId must be a string/);
    }
    assert.equal(fake.requests.length, sent);
    assert.equal(unarySent, 0);
    assert.equal(guard.streamsOpened, 1);
  });

  test("a side number that is no Side is denied before sending; checks in flight are answered", async () => {
    fake.onCheck = () => {}; // held until the bad orders are checked
    const guard = await connected();
    const sent = fake.requests.length;
    const good = guard.check(order("held"), { deadlineMs: 3000 });
    await eventually(() => fake.requests.length === sent + 1);
    for (const side of [1.5, Number.NaN, 2 ** 40, 7]) {
      const bad = await guard.check({ ...order(), side }, { deadlineMs: 2000 });
      assert.equal(bad.allowed, false);
      assert.equal(bad.failure, "client_error", String(side));
      assert.match(bad.message, /unknown .*Side/);
      assert.equal((await guard.checkUnary({ ...order(), side })).failure, "client_error");
    }
    fake.streams.at(-1)!.write(allow(fake.requests[sent]!));
    assert.equal((await good).allowed, true);
    assert.equal(fake.requests.length, sent + 1);
    assert.equal(guard.streamsOpened, 1);
  });
});

describe("deadlines", () => {
  // Review 42e: one <= 0 fell back to 1 s where every other client refuses it.
  test("an rpcTimeoutMs that is not a finite number > 0 is refused", () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => new GuardClient(fake.target, { rpcTimeoutMs: bad }),
        (error: Error) => error instanceof RangeError && /rpcTimeoutMs/.test(error.message),
        String(bad));
    }
    assert.equal(client({ rpcTimeoutMs: 250 }).rpcTimeoutMs, 250);
    assert.equal(client().rpcTimeoutMs, 1000);
  });

  // Review 54b: Node's setTimeout takes a delay above 2^31-1 ms for 1 ms, so a deadline of
  // 3e9 denied every check after 1 ms.
  test("a client deadline above Node's longest timer is refused, naming it", () => {
    for (const [name, bad] of [["deadlineMs", 3e9], ["deadlineMs", 2 ** 31],
      ["deadlineMs", Infinity], ["stallAfterMs", 1e300]] as const) {
      assert.throws(() => new GuardClient(fake.target, { [name]: bad }),
        (error: Error) => error instanceof RangeError && error.message.includes(name),
        `${name} ${bad}`);
    }
    assert.equal(client({ deadlineMs: MAX_TIMER_MS }).deadlineMs, 2_147_483_647);
  });

  // Review 54e: one above it was the client's (5 ms by default), so "wait a long time"
  // denied at once; it is now the longest timer, as Java caps it. NaN, -1, 0: the client's.
  test("a per-call deadline above Node's longest timer is that timer; NaN is the client's",
    async () => {
      const slow = answerCheckOrder;
      fake.onCheck = (request, call) => setTimeout(() => call.write(allow(request)), 100);
      fake.onCheckOrder = (call, callback) => setTimeout(() => slow(call, callback), 100);
      const fast = await connected({ deadlineMs: 20 });
      for (const deadlineMs of [2 ** 31, 1e300, Infinity]) {
        const verdict = await fast.check(order(), { deadlineMs });
        assert.equal(verdict.allowed, true, `${deadlineMs}: ${verdict.message}`);
        const unary = await fast.checkUnary(order(), { deadlineMs });
        assert.equal(unary.allowed, true, `${deadlineMs} unary: ${unary.message}`);
      }
      for (const deadlineMs of [Number.NaN, -1, 0]) {
        const denied = await fast.check(order(), { deadlineMs });
        assert.match(denied.message, /within 20 ms/, `${deadlineMs}`);
        const deniedUnary = await fast.checkUnary(order(), { deadlineMs });
        assert.match(deniedUnary.message, /within 20 ms/, `${deadlineMs} unary`);
      }
    });

  test("no answer within the deadline (default 5 ms) is a denial in time", async () => {
    fake.onCheck = () => {}; // a hung sidecar
    const guard = await connected();
    assert.equal(guard.deadlineMs, 5);
    const started = performance.now();
    const verdict = await guard.check(order());
    const elapsed = performance.now() - started;
    assert.equal(verdict.allowed, false);
    assert.equal(verdict.failure, "deadline");
    assert.ok(elapsed < 5 + 50, `took ${elapsed} ms`);
    assert.equal(guard.failures.deadline, 1);
  });

  test("the deadline is per client and per call", async () => {
    fake.onCheck = (request, call) => setTimeout(() => call.write(allow(request)), 60);
    const guard = await connected({ deadlineMs: 20 });
    const late = await guard.check(order());
    assert.equal(late.failure, "deadline");
    assert.match(late.message, /20 ms/);
    const patient = await guard.check(order(), { deadlineMs: 2000 });
    assert.equal(patient.allowed, true, patient.message);
    // the late answer of the first check was matched to it and dropped: same stream
    assert.equal(guard.streamsOpened, 1);
  });

  test("an answer read after the deadline is a denial, even before the timer fires", async () => {
    // The fake moves the clock an hour on before it answers "LATE": the answer beats the
    // deadline's timer but comes after the deadline.
    const now = performance.now.bind(performance);
    let skew = 0;
    performance.now = () => now() + skew;
    try {
      fake.onCheck = (request, call) => {
        if (request.order?.symbol === "LATE") skew = 3_600_000;
        call.write(allow(request));
      };
      const guard = await connected();
      const late = await guard.check({ ...order(), symbol: "LATE" }, { deadlineMs: 2000 });
      assert.equal(late.allowed, false);
      assert.equal(late.failure, "deadline");
      skew = 0;
      const onTime = await guard.check(order(), { deadlineMs: 2000 });
      assert.equal(onTime.allowed, true, onTime.message);
      // The unary call too (review 35: its answer was taken whenever it was read).
      fake.onCheckOrder = (call, callback) => {
        if (call.request.symbol === "LATE") skew = 3_600_000;
        answerCheckOrder(call, callback);
      };
      const lateUnary = await guard.checkUnary(
        { ...order(), symbol: "LATE" },
        { deadlineMs: 2000 },
      );
      assert.equal(lateUnary.allowed, false);
      assert.equal(lateUnary.failure, "deadline");
      skew = 0;
      const onTimeUnary = await guard.checkUnary(order(), { deadlineMs: 2000 });
      assert.equal(onTimeUnary.allowed, true, onTimeUnary.message);
    } finally {
      performance.now = now;
    }
  });

  test("a stream with no answer at all for stallAfterMs is replaced", async () => {
    fake.onCheck = () => {};
    const guard = await connected({ deadlineMs: 10, stallAfterMs: 40 });
    await guard.check(order());
    await sleep(50);
    const stalled = fake.streams.at(-1)!;
    const second = await guard.check(order()); // its deadline finds the oldest too old
    assert.equal(second.failure, "deadline");
    fake.onCheck = (request, call) => call.write(allow(request));
    await eventually(() => guard.streamsOpened === 2);
    // a late answer on the replaced stream is never used
    stalled.write(allow(fake.requests[0]!));
    const next = await guard.check(order(), { deadlineMs: 2000 });
    assert.equal(next.allowed, true, next.message);
    assert.equal(next.decisionId, `d-${next.clientOrderId}`);
  });
});

describe("a broken stream, an unavailable sidecar", () => {
  test("checks in flight are denied when the stream breaks; it is replaced", async () => {
    fake.onCheck = () => {};
    const guard = await connected();
    const sent = fake.requests.length;
    const pending = guard.check(order(), { deadlineMs: 5000 });
    await eventually(() => fake.requests.length > sent);
    fake.breakStreams(Status.INTERNAL, "boom");
    const verdict = await pending;
    assert.equal(verdict.allowed, false);
    assert.equal(verdict.reason, CLIENT_FAIL_CLOSED);
    assert.equal(verdict.failure, "stream_broken");
    assert.match(verdict.message, /INTERNAL: boom/);
    fake.onCheck = (request, call) => call.write(allow(request));
    await eventually(() => guard.streamsOpened === 2); // in the background, no check needed
    assert.equal((await guard.check(order(), { deadlineMs: 2000 })).allowed, true);
  });

  test("the sidecar ending the stream normally is a broken stream too", async () => {
    fake.onCheck = () => {};
    const guard = await connected();
    const sent = fake.requests.length;
    const pending = guard.check(order(), { deadlineMs: 5000 });
    await eventually(() => fake.requests.length > sent);
    fake.streams.at(-1)!.end();
    assert.equal((await pending).failure, "stream_broken");
  });

  test("a refused stream (UNAUTHENTICATED) denies as refused, and the token is sent", async () => {
    fake.onStream = (call) => {
      if (call.metadata.get("authorization")[0] !== "Bearer good") {
        call.emit("error", { code: Status.UNAUTHENTICATED, details: "unknown token" });
      }
    };
    const bad = await connected({ token: "bad" });
    const refused = await bad.check(order(), { deadlineMs: 2000 });
    assert.equal(refused.allowed, false);
    assert.equal(refused.failure, "refused");
    assert.match(refused.message, /UNAUTHENTICATED/);
    // Review 54e: stripped of the space, tab, CR and LF around it, as by the sidecar.
    const good = await connected({ token: " \tgood\r\n" });
    assert.equal((await good.check(order(), { deadlineMs: 2000 })).allowed, true);
    assert.ok(fake.authorizations.includes("Bearer good"));
  });

  // Review 54e: grpc-js threw its own error, printing the secret. Python's rule now: stripped,
  // then a byte outside 0x20-0x7E is refused, naming its position, never the token.
  test("a token with a byte outside 0x20-0x7E is refused without printing it", () => {
    for (const [token, at] of [["zq\r9", 2], ["\tzq\n9", 3], ["z\tq9", 1], ["z\0q9", 1],
      ["zq9\x7f", 3], ["zq9\u00f6", 3]] as const) {
      assert.throws(() => new GuardClient(fake.target, { token }),
        (error: Error) => error instanceof InvalidTokenError &&
          error.message.includes(`byte ${at} `) && !error.message.includes("q9"),
        JSON.stringify(token));
    }
    client({ token: " printable ~ASCII! " });
    client({ token: " \r\n" }); // nothing left: no token
  });

  test("no sidecar: a denial, in time, never a rejection", async () => {
    const guard = new GuardClient("127.0.0.1:1", { logger: memoryLogger() });
    clients.push(guard);
    assert.equal(await guard.connect(200), false);
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      const verdict = await guard.check(order());
      assert.ok(performance.now() - started < 55);
      assert.equal(verdict.allowed, false);
      assert.equal(verdict.reason, CLIENT_FAIL_CLOSED);
      assert.ok(verdict.failure === "unavailable" || verdict.failure === "deadline", verdict.failure!);
    }
    const unary = await guard.checkUnary(order());
    assert.equal(unary.allowed, false);
    assert.equal(unary.reason, CLIENT_FAIL_CLOSED);
  });

  test("a closed client denies", async () => {
    const guard = await connected();
    guard.close();
    const verdict = await guard.check(order());
    assert.equal(verdict.failure, "client_error");
    assert.equal((await guard.checkUnary(order())).failure, "client_error");
  });

  test("failures are logged at most once per cause per interval, and all counted", async () => {
    fake.onCheck = (request, call) => call.write(answer(request.requestId, { reason: 42 as pb.DecisionReason }));
    const logger = memoryLogger();
    const guard = await connected({ logger, logIntervalMs: 60_000 });
    for (let i = 0; i < 5; i++) await guard.check(order(), { deadlineMs: 2000 });
    assert.equal(guard.failures.malformed, 5);
    assert.equal(logger.lines.length, 1);
  });
});

describe("checkUnary", () => {
  test("allowed, and malformed answers and errors fail closed", async () => {
    const guard = await connected();
    const allowed = await guard.checkUnary(order("u-1"), { deadlineMs: 2000 });
    assert.equal(allowed.allowed, true);
    assert.equal(allowed.decisionId, "u-u-1");
    assert.equal(allowed.clientOrderId, "u-1");

    fake.onCheckOrder = (_call, callback) =>
      callback(null, create(pb.CheckOrderResponseSchema, { allowed: true, reason: pb.DecisionReason.PRICE_BAND }));
    assert.equal((await guard.checkUnary(order(), { deadlineMs: 2000 })).failure, "malformed");

    fake.onCheckOrder = (_call, callback) =>
      callback({ code: Status.INVALID_ARGUMENT, details: "order.price: must be > 0" });
    const invalid = await guard.checkUnary(order(), { deadlineMs: 2000 });
    assert.equal(invalid.failure, "request_error");
    assert.equal(invalid.reason, CLIENT_FAIL_CLOSED);

    fake.onCheckOrder = (_call, callback) =>
      callback({ code: Status.PERMISSION_DENIED, details: "no" });
    assert.equal((await guard.checkUnary(order(), { deadlineMs: 2000 })).failure, "refused");

    fake.onCheckOrder = () => {}; // never answers
    const started = performance.now();
    const late = await guard.checkUnary(order(), { deadlineMs: 10 });
    assert.equal(late.failure, "deadline");
    assert.ok(performance.now() - started < 60);
  });
});

describe("reports and the heartbeat", () => {
  test("reportFill sends client_order_id and fill_id, and requires them", async () => {
    const guard = await connected({ token: "t0k" });
    const reply = await guard.reportFill({
      account: "acc-1", strategy: "momo", symbol: "AAPL", side: "sell", quantity: 2,
      price: 101, clientOrderId: "c-9", fillId: "f-1",
    });
    assert.equal(reply.position, 1);
    const sent = fake.unary.at(-1)!;
    assert.equal(sent.method, "reportFill");
    assert.equal(sent.authorization, "Bearer t0k");
    const request = sent.request as pb.ReportFillRequest;
    assert.equal(request.clientOrderId, "c-9");
    assert.equal(request.fillId, "f-1");
    assert.equal(request.side, pb.Side.SELL);
    await assert.rejects(
      guard.reportFill({
        account: "acc-1", strategy: "momo", symbol: "AAPL", side: "sell", quantity: 2,
        price: 101, clientOrderId: "c-9", fillId: "",
      }),
      TypeError,
    );
  });

  test("reportOrderUpdate and syncPositions", async () => {
    const guard = await connected();
    assert.equal((await guard.reportOrderUpdate({
      account: "acc-1", clientOrderId: "c-1", status: "CANCELLED",
    })).known, true);
    let request = fake.unary.at(-1)!.request as pb.ReportOrderUpdateRequest;
    assert.equal(request.status, pb.OrderStatus.CANCELLED);
    assert.equal(request.remainingQuantity, undefined);
    assert.equal(request.filledQuantity, undefined);
    await guard.reportOrderUpdate({
      account: "acc-1", clientOrderId: "c-2", status: "open", remainingQuantity: 0.5,
    });
    request = fake.unary.at(-1)!.request as pb.ReportOrderUpdateRequest;
    assert.equal(request.status, pb.OrderStatus.OPEN);
    assert.equal(request.remainingQuantity, 0.5);
    assert.equal(request.filledQuantity, undefined);
    await guard.reportOrderUpdate({
      account: "acc-1", clientOrderId: "c-2", status: "OPEN", remainingQuantity: 0.5,
      filledQuantity: 1.5,
    });
    request = fake.unary.at(-1)!.request as pb.ReportOrderUpdateRequest;
    assert.equal(request.filledQuantity, 1.5);
    await guard.reportOrderUpdate({
      account: "acc-1", clientOrderId: "c-2", status: "CANCELLED", filledQuantity: 0,
    });
    request = fake.unary.at(-1)!.request as pb.ReportOrderUpdateRequest;
    assert.equal(request.filledQuantity, 0, "a filled quantity of 0 is sent");

    const synced = await guard.syncPositions({
      account: "acc-1", equity: 1e6,
      positions: [{ strategy: "momo", symbol: "AAPL", quantity: 3, markPrice: 100 }],
      openOrders: [],
    });
    assert.equal(synced.positions, 1);
    const sync = fake.unary.at(-1)!.request as pb.SyncPositionsRequest;
    assert.equal(sync.openOrdersComplete, true);
    await guard.syncPositions({ account: "acc-1", equity: 1e6, positions: [] });
    assert.equal((fake.unary.at(-1)!.request as pb.SyncPositionsRequest).openOrdersComplete, false);
  });

  // Review 42e: openOrders null (an untyped caller's "not known") was sent as the complete list,
  // empty: the sidecar ended every working order of the account.
  test("syncPositions: openOrders null is not known, not []; a non-array: TypeError", async () => {
    const guard = await connected();
    await guard.syncPositions({ account: "acc-1", equity: 1e6, positions: [], openOrders: null });
    const sync = fake.unary.at(-1)!.request as pb.SyncPositionsRequest;
    assert.equal(sync.openOrdersComplete, false);
    assert.deepEqual(sync.openOrders, []);
    const sent = fake.unary.length;
    for (const openOrders of ["none", 0, {}, { length: 0 }]) {
      await assert.rejects(
        guard.syncPositions({
          account: "acc-1", equity: 1e6, positions: [],
          openOrders: openOrders as unknown as pb.OpenOrder[],
        }),
        (error: Error) => error instanceof TypeError && /openOrders/.test(error.message),
      );
    }
    assert.equal(fake.unary.length, sent, "a bad snapshot was sent");
  });

  test("the heartbeat beats until stopped, then deregisters", async () => {
    const guard = await connected();
    const before = fake.unary.filter((u) => u.method === "heartbeat").length;
    const beat = guard.startHeartbeat({ executorId: "ex-1", scope: "STRATEGY:momo", ttlMs: 60 });
    await sleep(150);
    const beats = () => fake.unary.filter((u) => u.method === "heartbeat").slice(before);
    assert.ok(beats().length >= 2, `only ${beats().length} heartbeats`); // 1 at once, then every 20 ms
    const first = beats()[0]!.request as pb.HeartbeatRequest;
    assert.equal(first.executorId, "ex-1");
    assert.equal(first.ttlMs, 60);
    assert.equal(first.scope?.kind, pb.ScopeKind.STRATEGY);
    assert.equal(first.deregister, false);
    await beat.stop();
    const count = beats().length;
    assert.equal((beats().at(-1)!.request as pb.HeartbeatRequest).deregister, true);
    await sleep(60);
    assert.equal(beats().length, count, "a heartbeat after stop()");
    assert.equal(beat.running, false);
  });

  // Review 42e: an interval not shorter than the TTL (or NaN: a 1 ms loop) was taken, and the
  // scope of a live executor tripped while the heartbeat said it was running.
  test("an interval not shorter than the TTL, or not a finite number > 0, is refused", async () => {
    const guard = await connected();
    const before = fake.unary.filter((u) => u.method === "heartbeat").length;
    const bad: [number, number | undefined][] = [
      [300, 300], [300, 1000], [300, NaN], [300, Infinity], [300, 0], [300, -5],
      [0, undefined], [1.5, undefined], [NaN, undefined], [3_600_001, undefined],
    ];
    for (const [ttlMs, intervalMs] of bad) {
      assert.throws(
        () => guard.startHeartbeat({ executorId: "ex-1", scope: "GLOBAL", ttlMs, intervalMs }),
        RangeError,
        `ttlMs ${ttlMs}, intervalMs ${intervalMs}`,
      );
    }
    assert.equal(fake.unary.filter((u) => u.method === "heartbeat").length, before, "a beat sent");
    // The default (ttlMs / 3) is shorter than the TTL, even the shortest.
    const beat = guard.startHeartbeat({ executorId: "ex-1", scope: "STRATEGY:momo", ttlMs: 1 });
    await beat.stop();
  });

  // Review 42e: a throw of onResponse or onError skipped the next beat for good (the scope
  // tripped while `running` said true), and rejected unhandled.
  test("a heartbeat the sidecar refuses stops, says why and logs it", async () => {
    // Review 43i: refused (an executor id the sidecar does not take), it beat on with no
    // word while `running` said true, and the scope, never registered, could never trip.
    const logger = memoryLogger();
    const guard = await connected({ logger });
    const before = fake.unary.filter((u) => u.method === "heartbeat").length;
    const beat = guard.startHeartbeat({ executorId: "ex-1 ", scope: "STRATEGY:momo", ttlMs: 60 });
    await eventually(() => !beat.running, 2000);
    assert.equal((beat.refused as { code?: number } | null)?.code, Status.INVALID_ARGUMENT);
    assert.equal(fake.unary.filter((u) => u.method === "heartbeat").length - before, 1);
    assert.ok(logger.lines.some((line) => line.startsWith("ess heartbeat refused")), logger.lines.join());
  });

  // Review 54b: UNAUTHENTICATED (a token the sidecar does not take) beat on with `running`
  // true, though the executor was never registered.
  test("a heartbeat refused UNAUTHENTICATED stops as PERMISSION_DENIED does", async () => {
    fake.heartbeatError = { code: Status.UNAUTHENTICATED, details: "bad token" };
    const logger = memoryLogger();
    const guard = await connected({ logger });
    const beat = guard.startHeartbeat({ executorId: "ex-1", scope: "STRATEGY:momo", ttlMs: 60 });
    await eventually(() => !beat.running, 2000);
    assert.equal((beat.refused as { code?: number } | null)?.code, Status.UNAUTHENTICATED);
    assert.equal(beat.failures, 1);
    assert.ok(logger.lines.some((line) => line.startsWith("ess heartbeat refused")));
  });

  // Review 54b: after close() the heartbeat said running and logged a failed beat forever.
  test("close() stops the heartbeats without deregistering; stop() then resolves null",
    async () => {
      const guard = await connected();
      const beats = () => fake.unary.filter((u) => u.method === "heartbeat");
      const ofEx1 = (u: { request: unknown }) =>
        (u.request as pb.HeartbeatRequest).executorId === "ex-1";
      const before = beats().length;
      const beat = guard.startHeartbeat({ executorId: "ex-1", scope: "STRATEGY:momo", ttlMs: 60 });
      await eventually(() => beat.sent >= 2, 2000);
      guard.close();
      assert.equal(beat.running, false);
      assert.equal(await beat.stop(), null);
      const after = beats().filter(ofEx1).length;
      // Three intervals pass (another client's heartbeat beats three times): none sent.
      const other = (await connected()).startHeartbeat({
        executorId: "ex-other", scope: "STRATEGY:momo", ttlMs: 60 });
      await eventually(() => other.sent >= 3, 2000);
      await other.stop();
      assert.equal(beats().filter(ofEx1).length, after, "a beat after close()");
      const sent = beats().slice(before).filter(ofEx1)
        .map((u) => (u.request as pb.HeartbeatRequest).deregister);
      assert.ok(sent.every((deregister) => !deregister), "deregistered on close()");
      assert.throws(() => guard.startHeartbeat({ executorId: "ex-1", scope: "GLOBAL", ttlMs: 60 }),
        /closed/);
    });

  test("with alive, a beat is sent only while it returns true; the skips are counted and logged",
    async () => {
      const logger = memoryLogger();
      const guard = await connected({ logger });
      const beats = () => fake.unary.filter((u) => u.method === "heartbeat").length;
      let alive: boolean | "throw" = true;
      const beat = guard.startHeartbeat({
        executorId: "ex-4", scope: "STRATEGY:momo", ttlMs: 30,
        alive: () => {
          if (alive === "throw") throw new Error("loop state unreadable");
          return alive;
        },
      });
      await eventually(() => beat.sent >= 2, 2000);
      alive = false;
      await eventually(() => beat.skipped >= 3, 2000);
      const withheld = beats();
      alive = "throw"; // a throw is not alive either
      await eventually(() => beat.skipped >= 6, 2000);
      assert.equal(beats(), withheld, "a beat sent while not alive");
      assert.equal(beat.running, true);
      const said = () => logger.lines.filter((line) => line.includes("alive()"));
      assert.equal(said().length, 1, said().join("\n")); // once, when it went
      alive = true;
      await eventually(() => beats() >= withheld + 2, 2000);
      assert.equal(said().length, 2, said().join("\n")); // and once when it came back
      assert.match(said()[1]!, /beats resume/);
      await beat.stop();
    });

  // Review 54e: the refusal logged "beats withheld, the scope trips at its TTL": nothing was
  // registered, nothing can trip.
  test("alive not true at start: startHeartbeat throws, sends nothing, logs no withheld beat",
    async () => {
      const logger = memoryLogger();
      const guard = await connected({ logger });
      const beats = () => fake.unary.filter((u) => u.method === "heartbeat").length;
      const before = beats();
      const start = (alive: () => boolean) =>
        guard.startHeartbeat({ executorId: "ex-5", scope: "STRATEGY:momo", ttlMs: 60, alive });
      assert.throws(() => start(() => false), /alive\(\) is not true/);
      const throws = (): boolean => { throw new Error("no loop yet"); };
      assert.throws(() => start(throws), /alive\(\) is not true/);
      assert.equal(beats(), before);
      assert.deepEqual(logger.lines.filter((line) => line.includes("withheld")), []);
      const beat = start(() => true);
      await eventually(() => beat.sent >= 1, 2000);
      await beat.stop();
    });

  test("a callback that throws stops neither the heartbeat nor escapes", async () => {
    const guard = await connected();
    const before = fake.unary.filter((u) => u.method === "heartbeat").length;
    const reported: Error[] = [];
    const beat = guard.startHeartbeat({
      executorId: "ex-2", scope: "STRATEGY:momo", ttlMs: 60,
      onResponse: () => {
        throw new Error("onResponse broke");
      },
      onError: (error) => {
        reported.push(error);
        throw new Error("onError broke");
      },
    });
    await sleep(150);
    const beats = fake.unary.filter((u) => u.method === "heartbeat").length - before;
    assert.ok(beats >= 3, `only ${beats} heartbeats`); // 1 at once, then every 20 ms
    assert.ok(reported.length >= 2 && reported.every((e) => e.message === "onResponse broke"));
    assert.equal(beat.failures, 0);
    assert.equal(beat.running, true);
    await beat.stop();

    // A failing heartbeat whose onError throws: the next one is sent all the same.
    const down = new GuardClient("127.0.0.1:1", { logger: memoryLogger(), rpcTimeoutMs: 20 });
    clients.push(down);
    let failed = 0;
    const lost = down.startHeartbeat({
      executorId: "ex-3", scope: "STRATEGY:momo", ttlMs: 60,
      onError: () => {
        failed += 1;
        throw new Error("onError broke");
      },
    });
    await eventually(() => failed >= 3, 2000);
    assert.equal(lost.failures, failed);
    assert.equal(lost.running, true);
    lost.stop().catch(() => {}); // the deregistration fails too: nothing listens
  });
});
