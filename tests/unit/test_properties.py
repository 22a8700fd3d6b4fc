"""Invariants that hold whatever happens: checked over generated orders and command sequences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.commands import Trigger
from ess_sidecar.domain.config import ResumePolicy
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.errors import InvalidArgument, ResetRefused
from ess_sidecar.domain.orders import Side
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.states import Cause, State, Transition, TriggerMode, TriggerReason

from .conftest import T0, make_engine, order, position, rules, run, trip

ACCOUNTS, STRATEGIES, SYMBOLS = ("a1", "a2"), ("s1", "s2"), ("X", "Y", "Z")
SCOPES = [GLOBAL] + [Scope(ScopeKind.ACCOUNT, i) for i in ACCOUNTS] \
    + [Scope(ScopeKind.STRATEGY, i) for i in STRATEGIES] \
    + [Scope(ScopeKind.SYMBOL, i) for i in SYMBOLS]
EXPOSURE = {DecisionReason.SYMBOL_EXPOSURE, DecisionReason.STRATEGY_EXPOSURE,
            DecisionReason.PORTFOLIO_EXPOSURE, DecisionReason.MAX_POSITIONS,
            DecisionReason.EQUITY_UNKNOWN, DecisionReason.MARK_UNKNOWN}
POLICY = {ScopeKind.GLOBAL: ResumePolicy(60, 0), ScopeKind.ACCOUNT: ResumePolicy(30, 5),
          ScopeKind.STRATEGY: ResumePolicy(10, 0), ScopeKind.SYMBOL: ResumePolicy(0, 2)}

scopes = st.sampled_from(SCOPES)
sides = st.sampled_from([Side.BUY, Side.SELL])
quantities = st.floats(0.01, 1000, allow_nan=False)
prices = st.floats(1, 1000, allow_nan=False)
orders = st.builds(lambda a, s, y, side, q, p: order(q, p, side, account=a, strategy=s,
                                                     symbol=y),
                   st.sampled_from(ACCOUNTS), st.sampled_from(STRATEGIES),
                   st.sampled_from(SYMBOLS), sides, quantities, prices)
positions = st.builds(lambda a, s, y, q, p: (a, position(q, p, strategy=s, symbol=y)),
                      st.sampled_from(ACCOUNTS), st.sampled_from(STRATEGIES),
                      st.sampled_from(SYMBOLS), st.floats(-1000, 1000), prices)
steps = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]), st.floats(0, 90))
FEW = settings(max_examples=60, deadline=None)


def covering(candidate) -> list[Scope]:
    return [GLOBAL, Scope(ScopeKind.ACCOUNT, candidate.account),
            Scope(ScopeKind.STRATEGY, candidate.strategy),
            Scope(ScopeKind.SYMBOL, candidate.symbol)]


@FEW
@given(st.lists(positions, max_size=8), st.lists(st.tuples(scopes, st.sampled_from(TriggerMode)),
                                                  max_size=6), orders, st.integers(0, 3))
def test_a_tripped_scope_never_allows_an_order(held, triggers, candidate, tripped):
    engine = make_engine(equity=None)
    sync(engine, held)
    for scope, mode in triggers + [(covering(candidate)[tripped], TriggerMode.HALT)]:
        trip(engine, scope, mode=mode)
    decision = engine.check(candidate, T0)
    assert not decision.allowed and decision.reason is DecisionReason.SCOPE_TRIPPED
    assert engine.state_of(decision.blocking_scope) is State.TRIPPED
    assert decision.blocking_scope in covering(candidate)


def sync(engine, held) -> None:
    """Each account's snapshot of the generated positions (the first of a key wins, and
    the first mark of a symbol: a snapshot gives a symbol one mark)."""
    for account in ACCOUNTS:
        snapshot = {(p.strategy, p.symbol): p for a, p in reversed(held) if a == account}
        marks: dict[str, float] = {}
        for p in snapshot.values():
            if p.mark_price:
                marks.setdefault(p.symbol, p.mark_price)
        engine.sync_positions(account, 1e6, [
            p._replace(mark_price=marks[p.symbol]) if p.mark_price else p
            for p in snapshot.values()])


@FEW
@given(st.floats(0, 3600), st.one_of(st.floats(-3, 3), st.floats(-3600, 3600)), st.booleans())
def test_a_reset_never_happens_inside_the_cooldown_unless_forced(cooldown, offset, force):
    after = max(0.0, cooldown + offset)
    engine = make_engine(policy={ScopeKind.GLOBAL: ResumePolicy(cooldown)})
    trip(engine, GLOBAL, T0)
    allowed_at = T0 + cooldown  # wall times: what the engine compares
    try:
        run(engine, engine.plan_reset(GLOBAL, "resume", force, "operator", T0 + after))
    except ResetRefused:
        assert not force and T0 + after < allowed_at
    else:
        assert force or T0 + after >= allowed_at
        assert engine.state_of(GLOBAL) is State.ARMED


RECOVERY = {"daily_drawdown_pct": (Metric.DAILY_DRAWDOWN_PCT, 0.0),
            "system_health": (Metric.SYSTEM_HEALTH, 0.0),
            "data_feed_stale": (Metric.DATA_FEED_TICK, 1.0)}
METRIC_VALUES = st.sampled_from([0.0, 1.0, 2.0, 3.0, 6.0, 12.0, 25.0, -5.0, 1.5])


class GuardMachine(RuleBasedStateMachine):
    """Random reports, triggers, resets, heartbeats, checks and timers on a rising clock.

    Throughout: versions are consecutive and only grow; no reset or re-arm comes inside a
    cooldown or re-arm delay unless forced; TRIPPED and COOLING_DOWN scopes allow nothing;
    an order that does not grow its position is never denied by an exposure limit; rejected
    input and refused resets change nothing."""

    def __init__(self) -> None:
        super().__init__()
        auto = {"auto_rearm": True}
        self.engine = make_engine(policy=POLICY, equity=None, breakers=rules(
            daily_drawdown_pct=auto, api_errors=auto, system_health=auto, heartbeat_lost=auto,
            data_feed_stale=auto))
        for each in ACCOUNTS:
            self.engine.sync_positions(each, 1e6, [position(0, 100, symbol=y) for y in SYMBOLS])
        self.now = T0
        self.seen = 0  # the highest version observed so far
        self.entered: dict[Scope, Transition] = {}  # what put each scope in its state

    def advance(self, dt: float) -> None:
        self.now += dt

    def apply(self, plan) -> None:
        versions = [t.version for t in plan.transitions]
        assert versions == list(range(self.seen + 1, self.seen + 1 + len(versions)))
        for transition in plan.transitions:
            self.check_resume(transition)
            self.entered[transition.scope] = transition
        run(self.engine, plan)

    def check_resume(self, transition) -> None:
        """A reset or re-arm never lifts a latch inside that latch's cooldown (a drill's
        latch excepted: it is lifted at once)."""
        before = self.entered.get(transition.scope)
        if transition.cause not in (Cause.RESET, Cause.REARM) or before is None:
            return
        if before.state is State.COOLING_DOWN:
            assert transition.cause is Cause.RESET or transition.time >= before.rearm_at
        elif not transition.forced:
            cooldown = POLICY[transition.scope.kind].reset_cooldown_s
            kept = {latch.name for latch in transition.held()}
            for lifted in (latch for latch in before.held() if latch.name not in kept):
                assert lifted.name == "drill" or transition.time >= lifted.since + cooldown

    @rule(scope=scopes, metric=st.sampled_from(Metric), value=METRIC_VALUES, dt=steps)
    def report(self, scope, metric, value, dt):
        self.advance(dt)
        try:
            self.apply(self.engine.plan_report(scope, metric, value, self.now))
        except InvalidArgument:
            assert self.engine.version == self.seen  # bad input changes nothing

    @rule(scope=scopes, mode=st.sampled_from(TriggerMode), dt=steps)
    def trigger(self, scope, mode, dt):
        self.advance(dt)
        self.apply(self.engine.plan_trigger(Trigger(scope, mode, "drill",
                                                    TriggerReason.USER_INITIATED, (),
                                                    "op"), self.now))

    @rule(scope=scopes, force=st.booleans(), dt=steps)
    def reset(self, scope, force, dt):
        self.advance(dt)
        self.try_reset(scope, force)

    @precondition(lambda self: self.engine.restricted())
    @rule(pick=st.integers(0, 7), force=st.booleans(), dt=steps)
    def reset_a_restricted_scope(self, pick, force, dt):
        self.advance(dt)
        restricted = self.engine.restricted()
        self.try_reset(restricted[pick % len(restricted)].scope, force)

    @precondition(lambda self: self.engine.restricted())
    @rule(pick=st.integers(0, 7), early=st.sampled_from([0.0, 0.001, 1.0, 2.5]),
          force=st.booleans())
    def reset_near_the_end_of_a_cooldown(self, pick, early, force):
        restricted = self.engine.restricted()
        current = restricted[pick % len(restricted)]
        self.now = max(self.now, self.engine.reset_allowed_at(current) - early)
        self.try_reset(current.scope, force)

    @precondition(lambda self: self.engine.restricted())
    @rule(pick=st.integers(0, 7), early=st.sampled_from([0.0, 0.001, 1.0, 2.5]))
    def timers_near_a_cooldown_or_rearm_edge(self, pick, early):
        edges = sorted(edge for t in self.engine.restricted()
                       for edge in (self.engine.reset_allowed_at(t), t.rearm_at) if edge)
        self.now = max(self.now, edges[pick % len(edges)] - early)
        self.apply(self.engine.plan_timers(self.now))

    @precondition(lambda self: self.engine.restricted())
    @rule(pick=st.integers(0, 7))
    def clear_the_condition_of_a_restricted_scope(self, pick):
        """Make auto re-arm reachable: the breaker's metric recovers, its executor beats."""
        restricted = self.engine.restricted()
        current = restricted[pick % len(restricted)]
        if current.breaker in RECOVERY:
            metric, value = RECOVERY[current.breaker]
            self.apply(self.engine.plan_report(current.scope, metric, value, self.now))
        for lost in self.engine.heartbeats.registrations():
            if lost.scope == current.scope:
                self.engine.heartbeat(lost.executor_id, lost.scope, lost.ttl_s, self.now)

    def try_reset(self, scope, force):
        try:
            self.apply(self.engine.plan_reset(scope, "resume", force, "op", self.now))
        except ResetRefused:
            assert not force and self.engine.version == self.seen

    @rule(dt=steps)
    def timers(self, dt):
        self.advance(dt)
        self.apply(self.engine.plan_timers(self.now))

    @rule(executor=st.sampled_from(["e1", "e2"]), scope=scopes, ttl=st.sampled_from([5.0, 30.0]),
          deregister=st.booleans(), dt=steps)
    def heartbeat(self, executor, scope, ttl, deregister, dt):
        self.advance(dt)
        self.engine.heartbeat(executor, scope, ttl, self.now, deregister)

    @rule(candidate=orders)
    def check(self, candidate):
        book = self.engine.book.account(candidate.account)
        buy, sell = (candidate.quantity, 0.0) if candidate.side is Side.BUY \
            else (0.0, candidate.quantity)
        legs = (book.net(candidate.symbol), book.leg(candidate.strategy, candidate.symbol))
        grows = any(abs(leg.position + leg.buying + buy) > abs(leg.position + leg.buying)
                    if buy else abs(leg.position - leg.selling - sell)
                    > abs(leg.position - leg.selling) for leg in legs)  # its own side
        decision = self.engine.check(candidate, self.now)
        assert decision.state_version == self.engine.version
        states = {self.engine.state_of(scope) for scope in covering(candidate)}
        if State.TRIPPED in states or State.COOLING_DOWN in states:
            assert not decision.allowed
        if not grows:
            assert decision.reason not in EXPOSURE

    @invariant()
    def state_version_only_grows(self):
        assert self.engine.version >= self.seen
        self.seen = self.engine.version
        restricted = self.engine.restricted()
        assert all(t.version <= self.seen and t.state is not State.ARMED for t in restricted)


GuardMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=30,
                                          deadline=None)
TestRandomCommandSequences = GuardMachine.TestCase
