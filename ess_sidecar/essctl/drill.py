"""`essctl drill`: trip a scope as a drill, verify denial and the watcher, reset, verify.

Each check the drill makes has a client_order_id of its own (a reused one is denied as a
duplicate) and a price of its own, a millionth at most above DRILL_PRICE (review 53a: the
duplicate rule denies the Nth identical order allowed within its window, so with N = 2 the
drill's last check was denied every time, and back-to-back drills failed with the
default), and each order it was allowed is a working order: the drill ends them (order
update CANCELLED) before it reports, so it leaves no working order behind."""

from __future__ import annotations

import argparse
import itertools
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import grpc
from rich.text import Text

from ess.v1 import guard_pb2 as pb

from ..domain.scopes import Scope, ScopeKind
from .connection import Exit, Failed, Sidecar
from .render import Output, confirm, enum_name, scope_name, scope_to_pb, state_name
from .stamped import StampedWatcher

DEFAULT_SCOPE = "strategy:ess-drill"
DRILL_ID, DRILL_SYMBOL, DRILL_EQUITY, DRILL_PRICE = "ess-drill", "ESS-DRILL", 1e9, 1.0


def add_parser(add, scope_arg, positive) -> None:  # noqa: ANN001
    drill = add("drill", "the emergency-stop drill: trip a scope (recorded as a drill),"
                " verify orders are denied and watchers told, reset, verify orders are"
                " allowed again; exit 0 PASS, 2 FAIL. Needs the operator role")
    drill.add_argument("--scope", type=scope_arg, default=Scope.parse(DEFAULT_SCOPE),
                       help=f"the scope to drill (default {DEFAULT_SCOPE}, which nothing"
                       " real trades in); any other halts real trading while the drill runs"
                       " and asks for confirmation")
    drill.add_argument("--reason", default="scheduled drill", help="recorded as"
                       " 'drill: REASON'")
    drill.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    drill.add_argument("--timeout-s", type=positive, default=5.0, metavar="SECONDS",
                       help="how long to wait for the watcher (default 5)")
    drill.set_defaults(run=run)


@dataclass
class Step:
    number: int
    name: str
    ok: bool
    ms: float
    detail: str


@dataclass
class Report:
    scope: str
    steps: list[Step] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    cleanup: str = ""

    @property
    def failed(self) -> Step | None:
        return next((s for s in self.steps if not s.ok), None)


def drill_order(scope: Scope) -> pb.CheckOrderRequest:
    """An order the drilled scope covers, and nothing real does."""
    pick = {ScopeKind.ACCOUNT: "account", ScopeKind.STRATEGY: "strategy",
            ScopeKind.SYMBOL: "symbol"}.get(scope.kind)
    ids = {"account": DRILL_ID, "strategy": DRILL_ID, "symbol": DRILL_SYMBOL}
    if pick:
        ids[pick] = scope.id
    return pb.CheckOrderRequest(**ids, side=pb.SIDE_BUY, quantity=1, price=DRILL_PRICE)


class Drill:
    """One run of the drill: its steps, their timings, and the cleanup if it failed."""

    def __init__(self, sidecar: Sidecar, scope: Scope, args: argparse.Namespace,
                 out: Output) -> None:
        self.sidecar, self.out, self.args = sidecar, out, args
        self.scope, self.scope_pb = scope, scope_to_pb(scope)
        self.order = drill_order(scope)
        self.report = Report(scope_name(self.scope_pb))
        run_id = secrets.token_hex(6)  # no two drills (nor two checks) share an order id
        self.order_ids = (f"ess-drill-{run_id}-{n}" for n in itertools.count(1))
        self.prices = (DRILL_PRICE * (1 + n * 1e-12)  # see the module's docstring
                       for n in itertools.count(1 + secrets.randbelow(1 << 19)))
        self.working: list[str] = []  # client_order_ids of the drill orders allowed
        self.t0 = 0.0
        self.tripping = False
        self.printed = 0

    def step(self, number: int, name: str, action: Callable[[], tuple],
             can_fail_to_run: bool = False) -> bool:
        """Run, time and print one step. An action returns (ok, detail) or (ok, detail,
        ms) when it measures its own time. An RPC error fails the step, with its code,
        unless the drill has not touched anything yet (then essctl could not do it)."""
        started = time.perf_counter()
        try:
            ok, detail, *measured = action()
        except grpc.RpcError as error:
            if can_fail_to_run:
                raise
            ok, detail, measured = False, f"{error.code().name}: {error.details()}", []
        ms = measured[0] if measured else (time.perf_counter() - started) * 1000
        self.report.steps.append(Step(number, name, ok, round(ms, 3), detail))
        if not self.tripping:  # printing between the trip and its checks would be timed too
            self.print_steps()
        return ok

    def print_steps(self) -> None:
        for step in self.report.steps[self.printed:]:
            if not self.out.json:
                verdict = Text("PASS", style="bold green") if step.ok \
                    else Text("FAIL", style="bold red")
                self.out.line("[", verdict, f"] {step.number} {step.name}: {step.detail}"
                              f"  ({step.ms:.1f} ms)")
        self.printed = len(self.report.steps)

    def execute(self) -> None:
        if not (self.step(0, "scope is ARMED", self.armed, can_fail_to_run=True)
                and self.step(1, "drill order allowed before", self.baseline)):
            return
        with StampedWatcher(self.sidecar, self.scope_pb) as watcher:
            if not self.step(2, "watcher subscribed", lambda: self.subscribed(watcher)):
                return
            self.tripping = True
            tripped = self.step(3, "trigger (drill)", self.trigger)
            if tripped:
                self.step(4, "trip → first denial", self.denied)
                self.step(5, "trip → watcher", lambda: self.watched(watcher))
            self.tripping = False
            self.print_steps()
            if tripped or self.left_tripped():
                self.resume(watcher)

    def check(self) -> pb.CheckOrderResponse:
        """The drill order under a fresh client_order_id; one allowed is remembered, to be
        ended when the drill is over."""
        order = pb.CheckOrderRequest()
        order.CopyFrom(self.order)
        order.client_order_id, order.price = next(self.order_ids), next(self.prices)
        decision = self.sidecar.call("CheckOrder", order)
        if decision.allowed:
            self.working.append(order.client_order_id)
        return decision

    def end_orders(self) -> None:
        """Step 8: end the working orders the drill's checks reserved, if any; say how to
        end those it could not."""
        if not self.working or self.step(8, "drill orders ended", self.cancel_working):
            return
        command = ["essctl", "orders", "clear", "--account", self.order.account]
        for client_order_id in self.working:
            command += ["--coid", client_order_id]
        left = (f"cleanup FAILED: the drill's orders are still working in account"
                f" {self.order.account}; end them with: {shlex.join(command)} --reason"
                " 'drill orders'")
        self.report.cleanup = f"{self.report.cleanup}\n{left}" if self.report.cleanup \
            else left

    def cancel_working(self) -> tuple[bool, str]:
        known = 0
        while self.working:
            reply = self.sidecar.call("ReportOrderUpdate", pb.ReportOrderUpdateRequest(
                account=self.order.account, client_order_id=self.working[0],
                status=pb.ORDER_STATUS_CANCELLED))
            known += reply.known
            self.working.pop(0)
        return True, f"{known} working order{'s' if known != 1 else ''} cancelled"

    def resume(self, watcher: StampedWatcher) -> None:
        cleaning = self.report.failed is not None
        reset = self.step(6, "reset", lambda: self.reset(watcher))
        if reset:
            self.step(7, "drill order allowed after", self.allowed)
        if cleaning:  # the drill's latch only: a full reset would lift a real trip made
            # meanwhile, under a failed drill's name (review 36e)
            self.report.cleanup = (
                f"cleanup: {self.report.scope} was reset" if reset else
                f"cleanup FAILED: the drill's latch on {self.report.scope} may be left; lift"
                f" it, and only it, with: essctl reset --scope {self.scope} --latch drill"
                " --reason 'failed drill' (any other latch there is a real trip, not the"
                " drill's to lift)")

    def armed(self) -> tuple[bool, str]:
        try:  # Reset needs the operator role: find out before tripping anything
            self.sidecar.call("ListEvents", pb.ListEventsRequest(page_size=1))
        except grpc.RpcError as error:
            if error.code() is grpc.StatusCode.PERMISSION_DENIED:
                raise Failed(f"the drill needs the operator role (it resets the scope):"
                             f" {error.details()}") from None
            raise
        state = self.sidecar.call("GetState", pb.GetStateRequest())
        current = next((s for s in state.scopes if s.scope == self.scope_pb), None)
        if current is not None:
            return False, (f"scope is not ARMED ({state_name(current.state)}); drill not"
                           " started")
        return True, f"{self.report.scope} is ARMED"

    def baseline(self) -> tuple[bool, str]:
        if self.order.account == DRILL_ID:  # exposure limits need equity and a mark
            self.sidecar.call("SyncPositions", pb.SyncPositionsRequest(
                account=DRILL_ID, equity=DRILL_EQUITY, positions=[pb.Position(
                    strategy=self.order.strategy, symbol=self.order.symbol, quantity=0,
                    mark_price=DRILL_PRICE)]))
        decision = self.check()
        if not decision.allowed:
            reason = enum_name(pb.DecisionReason.DESCRIPTOR, decision.reason)
            hint = ""
            if decision.reason == pb.DECISION_REASON_MARK_UNKNOWN:  # a real account's drill
                hint = (f" (a drill of an account checks {self.order.symbol} in it: configure"
                        f' [limits.symbols."{self.order.symbol}"] reference_price ='
                        f" {DRILL_PRICE:g})")
            return False, f"the drill order is denied before the drill: {reason}:" \
                f" {decision.message}{hint}"
        return True, "allowed"

    def subscribed(self, watcher: StampedWatcher) -> tuple[bool, str]:
        end = watcher.wait_for(lambda m: m.kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END,
                               self.args.timeout_s)
        return (True, f"snapshot complete at version {end[1].version}") if end else \
            (False, self.watch_problem(watcher, "no end of snapshot"))

    def trigger(self) -> tuple[bool, str]:
        self.t0 = time.perf_counter()
        reply = self.sidecar.call("Trigger", pb.TriggerRequest(
            scope=self.scope_pb, reason=f"drill: {self.args.reason}",
            reason_code=pb.TRIGGER_REASON_USER_INITIATED, mode=pb.TRIGGER_MODE_HALT,
            drill=True))
        return reply.state == pb.STATE_TRIPPED, \
            f"{self.report.scope} is {state_name(reply.state)} (version {reply.state_version})"

    def denied(self) -> tuple[bool, str]:
        decision = self.check()
        ms = self.since_trip("trip_to_first_denial")
        if decision.allowed or decision.blocking_scope != self.scope_pb:
            blocking = scope_name(decision.blocking_scope) if decision.HasField(
                "blocking_scope") else "none"
            return False, f"expected a denial by {self.report.scope}; got allowed=" \
                f"{decision.allowed}, blocking scope {blocking}: {decision.message}", ms
        reason = enum_name(pb.DecisionReason.DESCRIPTOR, decision.reason)
        return True, f"denied ({reason}) by {self.report.scope}", ms

    def watched(self, watcher: StampedWatcher) -> tuple[bool, str]:
        seen = watcher.wait_for(lambda m: m.kind == pb.WATCH_EVENT_KIND_TRANSITION
                                and m.state == pb.STATE_TRIPPED and m.drill,
                                self.args.timeout_s)
        if seen is None:
            return False, self.watch_problem(watcher, "the watcher saw no drill trip")
        ms = round((seen[0] - self.t0) * 1000, 3)
        self.report.timings_ms["trip_to_watcher"] = ms
        return True, f"TRIPPED (drill) at version {seen[1].version}", ms

    def reset(self, watcher: StampedWatcher) -> tuple[bool, str]:
        # The drill's latch only: a real trip that came meanwhile keeps its own rules.
        reply = self.sidecar.call("Reset", pb.ResetRequest(scope=self.scope_pb,
                                                           reason="drill complete",
                                                           latches=["drill"]))
        if reply.pending_approval:
            return False, "the reset waits for a second operator; a drill's should not"
        if reply.state == pb.STATE_COOLING_DOWN:  # a re-arm delay is configured
            armed = watcher.wait_for(lambda m: m.kind == pb.WATCH_EVENT_KIND_TRANSITION
                                     and m.state == pb.STATE_ARMED, self.args.timeout_s)
            if armed is None:
                return False, self.watch_problem(watcher, "COOLING_DOWN did not re-arm")
            return True, f"re-armed at version {armed[1].version}"
        return reply.state == pb.STATE_ARMED, \
            f"{self.report.scope} is {state_name(reply.state)} (version {reply.state_version})"

    def allowed(self) -> tuple[bool, str]:
        decision = self.check()
        if decision.allowed:
            return True, "allowed"
        reason = enum_name(pb.DecisionReason.DESCRIPTOR, decision.reason)
        return False, f"still denied: {reason}: {decision.message}"

    def left_tripped(self) -> bool:
        """After a Trigger whose answer was lost: is our drill's trip in place?"""
        try:
            state = self.sidecar.call("GetState", pb.GetStateRequest())
        except grpc.RpcError:
            return True  # unknown: trying the reset is the safe side
        return any(s.scope == self.scope_pb and s.drill for s in state.scopes)

    def since_trip(self, name: str) -> float:
        ms = round((time.perf_counter() - self.t0) * 1000, 3)
        self.report.timings_ms[name] = ms
        return ms

    def watch_problem(self, watcher: StampedWatcher, what: str) -> str:
        if watcher.error is not None:
            return f"{what}: watch failed: {watcher.error.code().name}:" \
                f" {watcher.error.details()}"
        return f"{what} within {self.args.timeout_s:g} s"


def confirm_risky(scope: Scope, args: argparse.Namespace, out: Output) -> None:
    """Any scope but the drill's own may be real trading (GLOBAL, an account, a live
    strategy or symbol): a person must agree to halt it."""
    if args.yes or scope == Scope.parse(DEFAULT_SCOPE):
        return
    confirm(f"A drill on {scope} halts real trading while it runs. Go ahead?", out,
            f"not confirmed: a drill on {scope} halts real trading; pass --yes")


def run(args: argparse.Namespace, sidecar: Sidecar, out: Output) -> int:
    confirm_risky(args.scope, args, out)
    drill = Drill(sidecar, args.scope, args, out)
    started = time.perf_counter()
    try:
        drill.execute()
    finally:
        drill.end_orders()
    report = drill.report
    report.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 3)
    show_report(report, out)
    return Exit.NO if report.failed else Exit.DONE


def show_report(report: Report, out: Output) -> None:
    failed = report.failed
    verdict = "PASS" if failed is None else "FAIL"
    if out.json:
        out.emit({"verdict": verdict, "failed_step": failed.name if failed else None,
                  **asdict(report)})
        return
    if report.cleanup:
        out.line(report.cleanup)
    total = report.timings_ms["total"]
    if failed is None:
        out.line(Text("DRILL PASS", style="bold green"), f"  (total {total:.1f} ms)")
    else:
        out.line(Text(f"DRILL FAIL: {failed.number} {failed.name}", style="bold red"),
                 f": {failed.detail}  (total {total:.1f} ms)")
