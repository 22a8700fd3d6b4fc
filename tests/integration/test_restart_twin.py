"""Restart transparency, model-based: random commands against a sidecar on a real SQLite
store and journal that is killed and rebuilt at random points, and against a twin that
never restarts, on the same clock. Every answer and every piece of state must agree.

A "kill" drops the process's objects without a clean stop: the journal's records are in
the file already (written before each answer), and nothing else is flushed. Only the
store's file lock is released, as the kernel does for a killed process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ess_sidecar.adapters.auth.tokens import new_token, tokens_file_line
from ess_sidecar.adapters.storage.memory import InMemoryStateStore
from ess_sidecar.bootstrap import build
from ess_sidecar.domain.access import Role
from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.commands import Trigger
from ess_sidecar.domain.errors import GuardError
from ess_sidecar.domain.orders import Fill, IncludedFills, OpenOrder, Order, OrderStatus, \
    OrderUpdate, PositionSnapshot, Side
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.states import Directive, State, TriggerMode, TriggerReason
from ess_sidecar.ports import NoJournal
from ess_sidecar.settings import load_settings
from tests.fakes import FakeClock

ACCOUNTS, STRATEGIES, SYMBOLS = ("a1", "a2"), ("s1", "s2"), ("X", "Y")
SCOPES = (GLOBAL, Scope(ScopeKind.ACCOUNT, "a1"), Scope(ScopeKind.STRATEGY, "s1"),
          Scope(ScopeKind.SYMBOL, "X"))
SECTIONS: dict[str, Any] = {
    "server": {"listen": ""},
    "telemetry": {"enabled": False},
    "limits": {"max_symbol_exposure_pct": 30, "max_strategy_exposure_pct": 45,
               "max_portfolio_exposure_pct": 70, "max_orders_per_second": 5,
               "max_working_orders_per_account": 6, "duplicate_identical_orders": 2,
               "duplicate_window_s": 5.0, "order_id_retention_s": 300.0,
               "idle_evidence_s": 30.0},
    "policy": {"reset_cooldown_s": 10.0, "rearm_delay_s": 5.0,
               "symbol": {"reset_cooldown_s": 4.0, "rearm_delay_s": 2.0}},
    "breakers": {"consecutive_losses": {"threshold": 3},
                 "data_feed_corrupt": {"mode": "reduce_only", "auto_rearm": True},
                 "api_errors": {"threshold": 3, "window_s": 60},
                 "data_feed_stale": {"window_s": 20},
                 "total_drawdown_pct": {"threshold": 15}},
    "reset": {"require_approvals": 2, "approval_window_s": 60.0},
}


class RestartTwin(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ess-twin-"))
        self.clock = FakeClock()
        tokens = self.dir / "tokens.toml"  # four-eyes needs operators told apart
        tokens.write_text("[tokens]\n" + tokens_file_line("op1", Role.OPERATOR, new_token())
                          + "\n")
        self.settings = load_settings(None, **SECTIONS, auth={"tokens_file": str(tokens)},
                                      store={"path": str(self.dir / "ess.db"),
                                             "journal_sync_interval_s": 0.0})
        self.subject = build(self.settings, clock=self.clock)
        self.twin = build(self.settings, clock=self.clock, store=InMemoryStateStore(),
                          journal=NoJournal())
        self.ids = 0
        self.restarts = 0

    def teardown(self) -> None:
        self.subject.journal.close()
        self.subject.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def both(self, call: Any) -> Any:
        """The same call on both; their answers (or errors) must be equal."""
        answers = []
        for app in (self.subject, self.twin):
            try:
                answers.append(("ok", _comparable(call(app.guard))))
            except GuardError as error:
                answers.append((type(error).__name__, str(error)))
        assert answers[0] == answers[1], f"after {self.restarts} restarts: {answers}"
        return answers[0]

    # -- rules ------------------------------------------------------------------------------

    @rule()
    def kill_and_restart(self) -> None:
        old = self.subject
        old.journal.close()  # records are in the file already; this only stops the thread
        old.store.close()  # the kernel releases a killed process's lock
        self.subject = build(self.settings, clock=self.clock)
        self.restarts += 1

    @rule(scope=st.sampled_from(SCOPES), mode=st.sampled_from(TriggerMode))
    def trigger_killed_before_its_journal_record(self, scope, mode):
        """SIGKILL between the state file's COMMIT and the journal's record of the same
        Trigger (the journal was synced and sealed just before that COMMIT): the restart
        takes the trip from the store, and so must every start after it."""
        if self.twin.guard.engine.state_of(scope) is not State.ARMED:
            return  # a latch restored from the store holds its breaker: not the twin's
        journal = Path(f"{self.settings.store.path}.journal")
        seal = Path(f"{journal}.seal")
        before = journal.read_bytes(), seal.read_bytes()
        self.trigger(scope, mode, TriggerReason.USER_INITIATED, [], False)
        self.subject.journal.close()
        self.subject.store.close()
        journal.write_bytes(before[0])
        seal.write_bytes(before[1])
        self.subject = build(self.settings, clock=self.clock)
        self.restarts += 1

    @rule(account=st.sampled_from(ACCOUNTS), strategy=st.sampled_from(STRATEGIES),
          symbol=st.sampled_from(SYMBOLS), side=st.sampled_from(Side),
          quantity=st.sampled_from([1.0, 40.0, 120.0, 290.0]),
          reuse=st.integers(0, 3), replace=st.booleans(), reduce_only=st.booleans(),
          price=st.sampled_from([95.0, 100.0, 109.0]))
    def check(self, account, strategy, symbol, side, quantity, reuse, replace, reduce_only,
              price):
        self.ids += 1
        coid = f"c{max(1, self.ids - reuse)}"
        replaces = f"c{self.ids - 1}" if replace and self.ids > 1 else ""
        order = Order(account, strategy, symbol, side, quantity, price, reduce_only, coid,
                      replaces)
        self.both(lambda guard: guard.check(order))

    @rule(account=st.sampled_from(ACCOUNTS), back=st.integers(0, 4),
          quantity=st.sampled_from([1.0, 40.0, 120.0]), fill_id=st.integers(0, 5),
          price=st.sampled_from([50.0, 90.0, 100.0, 108.0, 110.0, 150.0]))
    def fill(self, account, back, quantity, fill_id, price):
        coid = f"c{max(1, self.ids - back)}"
        subject = self.subject.guard.engine.orders.get(account, coid)
        strategy, symbol, side = ((subject.strategy, subject.symbol, subject.side)
                                  if subject else ("s1", "X", Side.BUY))
        fill = Fill(account, strategy, symbol, side, quantity, price, coid, f"f{fill_id}")
        self.both(lambda guard: guard.report_fill(fill))

    @rule(account=st.sampled_from(ACCOUNTS), back=st.integers(0, 4),
          status=st.sampled_from([OrderStatus.CANCELLED, OrderStatus.EXPIRED,
                                  OrderStatus.OPEN]),
          filled=st.sampled_from([None, 0.0, 40.0]))
    def update(self, account, back, status, filled):
        remaining = 20.0 if status is OrderStatus.OPEN else None
        update = OrderUpdate(account, f"c{max(1, self.ids - back)}", status, remaining, filled)
        self.both(lambda guard: guard.report_order_update(update))

    @rule(account=st.sampled_from(ACCOUNTS), equity=st.sampled_from([50_000.0, 100_000.0]),
          held=st.sampled_from([0.0, 50.0, -80.0]), listed=st.booleans(),
          counted=st.sampled_from([None, 40.0, 120.0]), repriced=st.sampled_from([0.0, 7.0]))
    def sync(self, account, equity, held, listed, counted, repriced):
        """`repriced`: the snapshot lists the order that much dearer (amended at the venue)."""
        positions = [PositionSnapshot("s1", "X", held, 100.0),
                     PositionSnapshot("s2", "Y", 0.0, 100.0)]
        keep = [r for r in self.subject.guard.engine.orders.working(account)][:1]
        open_orders = [OpenOrder(r.client_order_id, r.strategy, r.symbol, r.side, r.remaining,
                                 r.price + repriced) for r in keep] if listed else None
        included = [IncludedFills(f"c{self.ids}", counted)] if counted else None
        self.both(lambda guard: guard.sync_positions(account, equity, positions, open_orders,
                                                     included))

    @rule(scope=st.sampled_from(SCOPES[1:]), metric=st.sampled_from(
        [Metric.TRADE_RESULT, Metric.API_ERROR, Metric.DATA_FEED_TICK, Metric.EQUITY,
         Metric.DATA_FEED_CORRUPT]),
          value=st.sampled_from([-5.0, 1.0, 3.0, 80_000.0, 100_000.0]))
    def metric(self, scope, metric, value):
        if metric is Metric.EQUITY and scope.kind is not ScopeKind.ACCOUNT:
            return
        self.both(lambda guard: guard.report_metric(scope, metric, value))

    @rule(scope=st.sampled_from(SCOPES), mode=st.sampled_from(TriggerMode),
          code=st.sampled_from(TriggerReason),
          directives=st.lists(st.sampled_from(Directive), max_size=3, unique=True),
          drill=st.booleans())
    def trigger(self, scope, mode, code, directives, drill):
        """Every field a trip carries: a restart compares the journal's latched transitions
        with the store's whole (review 29), so each must come back from both the same."""
        self.both(lambda guard: guard.trigger(Trigger(scope, mode, "twin", code,
                                                      tuple(directives), "op1", drill)))

    @rule(scope=st.sampled_from(SCOPES), actor=st.sampled_from(["op1", "op2"]),
          force=st.booleans(),
          latch=st.sampled_from(["", "trigger", "api_errors", "consecutive_losses"]))
    def reset(self, scope, actor, force, latch):
        latches = (latch,) if latch else ()  # none named: all of them
        self.both(lambda guard: guard.reset(scope, "twin", force, actor, latches))

    @rule(executor=st.sampled_from(["e1", "e2"]), scope=st.sampled_from(SCOPES[1:]),
          deregister=st.booleans())
    def heartbeat(self, executor, scope, deregister):
        self.both(lambda guard: guard.heartbeat(executor, scope, 15.0, deregister))

    @rule(seconds=st.sampled_from([0.05, 1.0, 7.0, 16.0, 25.0, 400.0, 3601.0]))
    def time_passes(self, seconds):
        self.clock.advance(seconds)
        self.both(lambda guard: [(t.scope, t.state, t.cause) for t in guard.run_timers()])

    # -- what must agree after every step ----------------------------------------------------

    @invariant()
    def same_state(self) -> None:
        subject, twin = self.subject.guard.engine, self.twin.guard.engine
        assert _latched(subject) == _latched(twin)
        assert subject.version == twin.version
        for account in ACCOUNTS:
            assert subject.book.positions(account) == twin.book.positions(account)
            assert subject.book.equity(account) == twin.book.equity(account)
            assert _marks(subject, account) == _marks(twin, account)
            assert _working(subject, account) == _working(twin, account)
            assert _valued(subject, account) == _valued(twin, account)
        now = self.clock.now()
        for scope in SCOPES:
            assert subject.holding(scope, now) == twin.holding(scope, now)


def _marks(engine: Any, account: str) -> tuple[dict, dict] | None:
    """The account's marks and their anchors (a fill's price moves the mark within the
    price band of its anchor): a restart must rebuild both."""
    book = engine.book.peek(account)
    return (dict(book.marks), dict(book.anchors)) if book is not None else None


def _latched(engine: Any) -> list[tuple]:
    return [(t.version, t.scope, t.state, t.breaker, t.cause, t.held())
            for t in engine.restricted()]


def _working(engine: Any, account: str) -> list[tuple]:
    return sorted((r.client_order_id, r.side, r.remaining, r.price, r.held_price)
                  for r in engine.orders.working(account))


def _valued(engine: Any, account: str) -> dict | None:
    """Each leg's highest working prices per side and what it counts in the exposure sums
    (review 33: the prices orders are valued at must come back from the journal too)."""
    book = engine.book.peek(account)
    return {key: (leg.buy_top, leg.sell_top, leg.value) for key, leg in book.legs.items()} \
        if book is not None else None


def _comparable(answer: Any) -> Any:
    """An answer without what differs between processes by design (decision ids)."""
    if hasattr(answer, "decision_id"):
        return (answer.allowed, answer.reason, answer.message, answer.blocking_scope)
    if hasattr(answer, "pending_reset") or hasattr(answer, "fill"):
        return repr(answer)
    return answer


RestartTwin.TestCase.settings = settings(
    max_examples=int(os.environ.get("HUNT") or 60), stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestRestartTwin = RestartTwin.TestCase


def test_rearms_due_while_down_are_made_in_the_order_they_fell_due(tmp_path: Path) -> None:
    """Two scopes re-arm by time while the sidecar is down: the first run after the start
    makes their re-arms in the order they fell due, as the sidecar that stayed up did,
    so each gets the same version and the audit trail the same order (review 52b: they
    were made in the order the journal replayed their scopes, and versions swapped)."""
    clock = FakeClock()
    sections: dict[str, Any] = {
        "server": {"listen": ""}, "telemetry": {"enabled": False},
        "policy": {"reset_cooldown_s": 10.0, "rearm_delay_s": 5.0},
        "breakers": {"data_feed_corrupt": {"mode": "reduce_only", "auto_rearm": True}}}
    settings_ = load_settings(None, **sections, store={
        "path": str(tmp_path / "ess.db"), "journal_sync_interval_s": 0.0})
    subject = build(settings_, clock=clock)
    twin = build(settings_, clock=clock, store=InMemoryStateStore(), journal=NoJournal())
    account, symbol = Scope(ScopeKind.ACCOUNT, "a1"), Scope(ScopeKind.SYMBOL, "Y")
    for guard in (subject.guard, twin.guard):
        guard.trigger(Trigger(account, TriggerMode.HALT, "stop", TriggerReason.USER_INITIATED,
                              (), "op1"))
        guard.run_timers()  # as the serving sidecar's timers do after each command
    clock.advance(6.0)  # the feed's latch re-arms by itself at 16
    for guard in (subject.guard, twin.guard):
        guard.report_metric(symbol, Metric.DATA_FEED_CORRUPT, 1.0)
        guard.run_timers()
    clock.advance(4.0)  # the account's reset: COOLING_DOWN, re-armed at 15
    for guard in (subject.guard, twin.guard):
        guard.reset(account, "checked", True, "op1", ())
        guard.run_timers()
    subject.journal.close()  # killed: its records are in the file already
    subject.store.close()
    subject = build(settings_, clock=clock)
    try:
        clock.advance(10.0)  # both due while it was down
        made = [[(t.version, t.scope) for t in guard.run_timers()]
                for guard in (subject.guard, twin.guard)]
        assert made[0] == made[1] == [(4, account), (5, symbol)], made
        assert _latched(subject.guard.engine) == _latched(twin.guard.engine)
    finally:
        subject.journal.close()
        subject.store.close()
