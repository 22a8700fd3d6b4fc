"""The probe orders of benchmarks/peers: every subject must decide them alike before any timing.

The sidecar and OPA (benchmarks/peers/policy/ess.rego) get the same setup from one file,
policy/data.json: OPA loads it as data; the sidecar gets its limits in its config file
(sidecar_config), each account's equity, marks and positions by SyncPositions, and each
scope data.json says is TRIPPED by Trigger (prepare_sidecar). Then every probe below is
sent to

- the sidecar, as a unary CheckOrder and as a message on a CheckOrderStream (two orders:
  each has its own client_order_id), and to OPA, POST /v1/data/ess/decision; each of the
  three decisions must be the probe's expected reason. After every probe the sidecar's
  probe account is synced again with an empty, complete list of open orders, so an allowed
  probe (a working order from then on) does not change what the next one is judged
  against: OPA has no working orders, and the probes compare the rules, not the book;
- the two bare servers (grpc.aio and synchronous), unary and stream, which have no rules
  and answer every order ALLOWED: for them the check is only that they answer, with
  ALLOWED (and on the stream the request's id).

The probes cover an allowed order of each kind (buy, reducing sell, short, within a
symbol's own band, valued at a reference price) and every denial the policy models: a
TRIPPED account, strategy, symbol and (phase "global") GLOBAL scope, quantity and notional
(default and per symbol), the price band both ways, per symbol and against a reference
price, the symbol exposure
(long, valued at the order's price above the mark, short after crossing zero), strategy
and portfolio exposure, no mark, no equity, and two orders that fail several checks (the
first in the sidecar's order must win). The timed order (workload.py's) is probed too.
For the "global" phase GLOBAL is tripped in both (Trigger; OPA's data written with
PUT /v1/data) and resumed after it (a forced Reset: the reset cooldown would refuse it).

Numbers keep away from the limits' edges: the sidecar computes in doubles and OPA in
arbitrary precision, and an order exactly at a limit could round apart.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from dataclasses import dataclass

import grpc

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "policy", "data.json")
POLICY = os.path.join(HERE, "policy", "ess.rego")
OPA_DECISION = "/v1/data/ess/decision"


class ProbeMismatch(Exception):
    """A subject's decision differs from the probe's expected one, or a subject failed."""


@dataclass(frozen=True)
class Probe:
    name: str
    account: str
    strategy: str
    symbol: str
    side: str  # "BUY" or "SELL"
    quantity: float
    price: float
    expected: str  # a DecisionReason name without DECISION_REASON_
    phase: str = ""  # "global": sent while GLOBAL is tripped


P = "PROBE-A"  # equity 1,000,000; see policy/data.json for its positions and marks
PROBES = (
    Probe("timed order (workload.py)", "ACC-1", "STRAT-1", "BTC-USD", "BUY", 1, 100.0001,
          "ALLOWED"),
    Probe("buy, net 7 % / strategy 41 % / account 70 %", P, "PS-1", "AAA", "BUY", 100, 100,
          "ALLOWED"),
    Probe("sell that reduces: no exposure check", P, "PS-1", "AAA", "SELL", 500, 99,
          "ALLOWED"),
    Probe("short from flat, 0.5 %", P, "PS-1", "BBB", "SELL", 100, 50, "ALLOWED"),
    Probe("CCC within its own 5 % band", P, "PS-1", "CCC", "BUY", 10, 104, "ALLOWED"),
    Probe("no mark: banded and valued at reference 20", P, "PS-1", "HHH", "BUY", 10, 21,
          "ALLOWED"),
    Probe("no mark: 2,400 % from reference 20", P, "PS-1", "HHH", "BUY", 10, 500,
          "PRICE_BAND"),
    Probe("account TRIPPED", "PROBE-TRIPPED", "PS-1", "AAA", "BUY", 1, 100, "SCOPE_TRIPPED"),
    Probe("strategy TRIPPED", P, "PS-TRIPPED", "AAA", "BUY", 1, 100, "SCOPE_TRIPPED"),
    Probe("symbol TRIPPED", P, "PS-1", "SYM-TRIPPED", "BUY", 1, 100, "SCOPE_TRIPPED"),
    Probe("strategy TRIPPED and too large: state first", P, "PS-TRIPPED", "AAA", "BUY",
          20000, 200, "SCOPE_TRIPPED"),
    Probe("quantity 20000 > 10000", P, "PS-1", "AAA", "BUY", 20000, 100,
          "MAX_ORDER_QUANTITY"),
    Probe("too large and off the band: size first", P, "PS-1", "AAA", "BUY", 20000, 200,
          "MAX_ORDER_QUANTITY"),
    Probe("CCC quantity 200 > its 100", P, "PS-1", "CCC", "BUY", 200, 100,
          "MAX_ORDER_QUANTITY"),
    Probe("notional 600,000 > 500,000", P, "PS-1", "AAA", "BUY", 6000, 100,
          "MAX_ORDER_NOTIONAL"),
    Probe("sell 494,000 at its price, 520,000 at the mark", P, "PS-1", "AAA", "SELL", 5200,
          95, "MAX_ORDER_NOTIONAL"),
    Probe("buy 15 % over the mark", P, "PS-1", "AAA", "BUY", 10, 115, "PRICE_BAND"),
    Probe("sell 15 % under the mark", P, "PS-1", "AAA", "SELL", 10, 85, "PRICE_BAND"),
    Probe("CCC 6 % over: its band is 5 %", P, "PS-1", "CCC", "BUY", 10, 106, "PRICE_BAND"),
    Probe("symbol AAA to 31 %", P, "PS-2", "AAA", "BUY", 2500, 100, "SYMBOL_EXPOSURE"),
    Probe("AAA 29 % at the mark, 30.45 % at the price", P, "PS-2", "AAA", "BUY", 2300, 105,
          "SYMBOL_EXPOSURE"),
    Probe("sell through zero to a 32 % short", P, "PS-1", "AAA", "SELL", 3800, 100,
          "SYMBOL_EXPOSURE"),
    Probe("strategy PS-1 to 62.5 %", P, "PS-1", "BBB", "BUY", 4500, 50, "STRATEGY_EXPOSURE"),
    Probe("account to 94 %", P, "PS-2", "BBB", "BUY", 5000, 50, "PORTFOLIO_EXPOSURE"),
    Probe("no mark, no reference price", P, "PS-1", "DDD", "BUY", 10, 100, "MARK_UNKNOWN"),
    Probe("account never synced", "PROBE-NOEQ", "PS-1", "AAA", "BUY", 10, 100,
          "EQUITY_UNKNOWN"),
    Probe("GLOBAL TRIPPED: the timed order", "ACC-1", "STRAT-1", "BTC-USD", "BUY", 1,
          100.0001, "SCOPE_TRIPPED", phase="global"),
    Probe("GLOBAL TRIPPED: a reducing sell", P, "PS-1", "AAA", "SELL", 500, 99,
          "SCOPE_TRIPPED", phase="global"),
)


def load_data() -> dict:
    with open(DATA) as f:
        return json.load(f)["ess_state"]


def _toml_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else repr(value)


def sidecar_config(data: dict, limits: dict) -> str:
    """The sidecar's config file: `limits` (workload.limits(): rate off, caps) and the
    limits of data.json, which must agree with them where both set a key."""
    table = dict(limits)
    source = data["limits"]
    for key, value in {**source["default"], **{k: v for k, v in source.items()
                                               if k not in ("default", "symbols")}}.items():
        if key in table and table[key] != value:
            raise ValueError(f"data.json limits.{key} = {value} but the harness needs"
                             f" {table[key]}")
        table[key] = value
    lines = ["[limits]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    for symbol, values in source["symbols"].items():
        lines += ["", f'[limits.symbols."{symbol}"]',
                  *(f"{k} = {_toml_value(v)}" for k, v in values.items())]
    return "\n".join(lines) + "\n"


def scope(text: str) -> pb.Scope:
    if text == "GLOBAL":
        return pb.Scope(kind=pb.SCOPE_KIND_GLOBAL)
    kind, _, ident = text.partition(":")
    return pb.Scope(kind=pb.ScopeKind.Value(f"SCOPE_KIND_{kind}"), id=ident)


def sync_request(account: str, book: dict) -> pb.SyncPositionsRequest:
    """data.json's account as a SyncPositions snapshot, every working order ended. Each
    position carries its symbol's mark; every mark needs a position (0 is fine)."""
    marks, positions = book["marks"], book["positions"]
    if set(marks) - {p["symbol"] for p in positions}:
        raise ValueError(f"data.json: account {account} has a mark with no position")
    return pb.SyncPositionsRequest(
        account=account, equity=book["equity"], open_orders_complete=True,
        positions=[pb.Position(strategy=p["strategy"], symbol=p["symbol"],
                               quantity=p["quantity"], mark_price=marks[p["symbol"]])
                   for p in positions])


def prepare_sidecar(stub: pb_grpc.GuardServiceStub, data: dict) -> None:
    """Trip the scopes data.json says are TRIPPED; sync every account it lists."""
    for text, state in data["scopes"].items():
        if state == "TRIPPED":
            stub.Trigger(pb.TriggerRequest(scope=scope(text), reason="benchmarks/peers probe",
                                           mode=pb.TRIGGER_MODE_HALT), timeout=10)
        elif state != "ARMED":
            raise ValueError(f"data.json: scope {text} is {state}; only ARMED and TRIPPED"
                             " are modelled")
    for account, book in data["accounts"].items():
        stub.SyncPositions(sync_request(account, book), timeout=10)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("opa", timeout=10)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class Opa:
    """OPA's REST API over its Unix socket, for the probes (http.client, one connection)."""

    def __init__(self, path: str) -> None:
        self._conn = _UnixHTTPConnection(path)

    def request(self, method: str, url: str, body: object | None = None) -> tuple[int, bytes]:
        payload = None if body is None else json.dumps(body).encode()
        self._conn.request(method, url, body=payload,
                           headers={"Content-Type": "application/json"})
        response = self._conn.getresponse()
        return response.status, response.read()

    def healthy(self) -> bool:
        try:
            return self.request("GET", "/health")[0] == 200
        except OSError:
            self._conn.close()
            return False

    def decide(self, order: dict) -> str:
        status, payload = self.request("POST", OPA_DECISION, {"input": order})
        if status != 200:
            raise ProbeMismatch(f"OPA answered {status}: {payload!r}")
        result = json.loads(payload).get("result")
        if not isinstance(result, dict) or result.get("allowed") != (
                result.get("reason") == "ALLOWED"):
            raise ProbeMismatch(f"OPA's decision is malformed: {payload!r}")
        return result["reason"]

    def set_scope(self, text: str, state: str) -> None:
        status, payload = self.request("PUT", f"/v1/data/ess_state/scopes/{text}", state)
        if status not in (200, 204):
            raise ProbeMismatch(f"OPA refused the scope update: {status} {payload!r}")

    def close(self) -> None:
        self._conn.close()


def _request(probe: Probe, order_id: str) -> pb.CheckOrderRequest:
    return pb.CheckOrderRequest(account=probe.account, strategy=probe.strategy,
                                symbol=probe.symbol, side=pb.Side.Value(f"SIDE_{probe.side}"),
                                quantity=probe.quantity, price=probe.price,
                                client_order_id=order_id)


def _reason(decision: pb.CheckOrderResponse) -> str:
    name = pb.DecisionReason.Name(decision.reason).removeprefix("DECISION_REASON_")
    if decision.allowed != (name == "ALLOWED"):
        raise ProbeMismatch(f"allowed={decision.allowed} with reason {name}")
    return name


def _unary(stub: pb_grpc.GuardServiceStub, request: pb.CheckOrderRequest) -> str:
    return _reason(stub.CheckOrder(request, timeout=10))


def _stream(stub: pb_grpc.GuardServiceStub, request: pb.CheckOrderRequest) -> str:
    replies = list(stub.CheckOrderStream(
        iter([pb.CheckOrderStreamRequest(request_id=7, order=request)]), timeout=10))
    if len(replies) != 1 or replies[0].request_id != 7 or not replies[0].HasField("decision"):
        raise ProbeMismatch(f"stream answered {replies}")
    return _reason(replies[0].decision)


def check(sidecar: str, bares: dict[str, str], opa_socket: str, data: dict) -> list[dict]:
    """Send every probe to every subject (targets: gRPC targets by name, OPA's socket);
    return one row per probe; raise ProbeMismatch at the end if any decision differs from
    the expected one (every row is returned in the exception's args[1] for the report)."""
    rows, wrong = [], []
    opa = Opa(opa_socket)
    channels = {name: grpc.insecure_channel(target)
                for name, target in {"sidecar": sidecar, **bares}.items()}
    stubs = {name: pb_grpc.GuardServiceStub(channel) for name, channel in channels.items()}
    sidecar_stub, phase = stubs["sidecar"], ""
    try:
        for n, probe in enumerate(PROBES, 1):
            if probe.phase != phase:
                _set_global(sidecar_stub, opa, tripped=probe.phase == "global")
                phase = probe.phase
            order = {"account": probe.account, "strategy": probe.strategy,
                     "symbol": probe.symbol, "side": probe.side, "quantity": probe.quantity,
                     "price": probe.price, "client_order_id": f"probe-{n}"}
            row = {"probe": probe, "sidecar unary": _unary(sidecar_stub,
                                                            _request(probe, f"probe-{n}-u")),
                   "sidecar stream": _stream(sidecar_stub, _request(probe, f"probe-{n}-s")),
                   "opa": opa.decide(order)}
            _resync(sidecar_stub, data, probe.account)
            for name in bares:
                answers = {_unary(stubs[name], _request(probe, f"probe-{n}")),
                           _stream(stubs[name], _request(probe, f"probe-{n}"))}
                row[name] = "answers" if answers == {"ALLOWED"} else "/".join(sorted(answers))
                if answers != {"ALLOWED"}:
                    wrong.append(f"{probe.name}: {name} answered {answers}")
            for subject in ("sidecar unary", "sidecar stream", "opa"):
                if row[subject] != probe.expected:
                    wrong.append(f"{probe.name}: {subject} says {row[subject]},"
                                 f" expected {probe.expected}")
            rows.append(row)
        if phase:
            _set_global(sidecar_stub, opa, tripped=False)
    finally:
        opa.close()
        for channel in channels.values():
            channel.close()
    if wrong:
        raise ProbeMismatch("the subjects disagree:\n  " + "\n  ".join(wrong), rows)
    return rows


def _resync(stub: pb_grpc.GuardServiceStub, data: dict, account: str) -> None:
    book = data["accounts"].get(account)
    if book is not None:  # end the probe's working order, restore the positions
        stub.SyncPositions(sync_request(account, book), timeout=10)


def _set_global(stub: pb_grpc.GuardServiceStub, opa: Opa, tripped: bool) -> None:
    if tripped:
        stub.Trigger(pb.TriggerRequest(scope=scope("GLOBAL"), reason="benchmarks/peers probe",
                                       mode=pb.TRIGGER_MODE_HALT), timeout=10)
        opa.set_scope("GLOBAL", "TRIPPED")
        return
    reply = stub.Reset(pb.ResetRequest(scope=scope("GLOBAL"), reason="benchmarks/peers probe"
                                       " done", force=True), timeout=10)
    if reply.state != pb.STATE_ARMED:
        raise ProbeMismatch(f"GLOBAL is {pb.State.Name(reply.state)} after a forced Reset")
    opa.set_scope("GLOBAL", "ARMED")
