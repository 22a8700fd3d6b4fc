"""Shared builders for the domain unit tests: an engine, orders, and applying plans."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from ess_sidecar.domain.breakers import DEFAULT_RULES, BreakerRule, BreakerSettings
from ess_sidecar.domain.commands import Trigger
from ess_sidecar.domain.config import GuardConfig, ResumePolicy
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.limits import LimitSettings
from ess_sidecar.domain.orders import Fill, Order, PositionSnapshot, Side
from ess_sidecar.domain.planner import Plan
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.states import Directive, Transition, TriggerMode, TriggerReason

T0 = 1_700_000_000.0  # a realistic wall-clock epoch: cooldown messages format it
ACCOUNT = "acc-1"
STRATEGY = "strat-1"
SYMBOL = "BTC-USD"
EQUITY = 1_000_000.0


def account(ident: str = ACCOUNT) -> Scope:
    return Scope(ScopeKind.ACCOUNT, ident)


def strategy(ident: str = STRATEGY) -> Scope:
    return Scope(ScopeKind.STRATEGY, ident)


def symbol(ident: str = SYMBOL) -> Scope:
    return Scope(ScopeKind.SYMBOL, ident)


def rules(**changes: dict) -> dict[str, BreakerRule]:
    """The default breaker rules with some fields of some rules replaced."""
    merged = dict(DEFAULT_RULES)
    for name, fields in changes.items():
        merged[name] = dataclasses.replace(merged[name], **fields)
    return merged


def make_engine(*, breakers: dict[str, BreakerRule] | None = None,
                overrides: dict[Scope, dict[str, BreakerRule]] | None = None,
                limits: LimitSettings | None = None,
                policy: dict[ScopeKind, ResumePolicy] | None = None,
                equity: float | None = EQUITY) -> GuardEngine:
    """An engine with the defaults (docs/design.md) unless told otherwise, but for the
    identical-orders rule (the tests send the same order() many times; its own tests turn it
    on); equity synced for ACCOUNT, with a mark for SYMBOL."""
    settings = BreakerSettings(defaults=breakers or dict(DEFAULT_RULES),
                               overrides=overrides or {})
    limits = limits or LimitSettings(duplicate_identical_orders=0)
    engine = GuardEngine(GuardConfig(breakers=settings, limits=limits, policy=policy or {}))
    if equity is not None:
        engine.sync_positions(ACCOUNT, equity, [position(0.0, mark=100.0)])
    return engine


_IDS = itertools.count(1)


def new_id(prefix: str = "o") -> str:
    return f"{prefix}-{next(_IDS)}"


def order(quantity: float = 1.0, price: float = 100.0, side: Side = Side.BUY, *,
          account: str = ACCOUNT, strategy: str = STRATEGY, symbol: str = SYMBOL,
          client_order_id: str = "", replaces: str = "") -> Order:
    """An order with a fresh client_order_id unless one is given."""
    return Order(account, strategy, symbol, side, quantity, price,
                 client_order_id=client_order_id or new_id(), replaces_client_order_id=replaces)


def fill(quantity: float, price: float = 100.0, side: Side = Side.BUY, *,
         account: str = ACCOUNT, strategy: str = STRATEGY, symbol: str = SYMBOL,
         client_order_id: str = "", fill_id: str = "") -> Fill:
    return Fill(account, strategy, symbol, side, quantity, price,
                client_order_id or new_id(), fill_id or new_id("f"))


def report_fill(engine: GuardEngine, the_fill: Fill, now: float = T0):  # noqa: ANN201
    """Apply a fill as the service does (its trip, if any, applied); the FillOutcome."""
    plan, outcome = engine.plan_fill(the_fill, now)
    run(engine, plan)
    return outcome


def fill_order(engine: GuardEngine, quantity: float, price: float = 100.0,
               side: Side = Side.BUY, now: float = T0, **fields: str):  # noqa: ANN201
    """Check an order (it must be allowed) and report its whole fill; the FillOutcome."""
    checked = order(quantity, price, side, **fields)
    decision = engine.check(checked, now)
    assert decision.allowed, decision
    return report_fill(engine, fill(quantity, price, side, account=checked.account,
                                    strategy=checked.strategy, symbol=checked.symbol,
                                    client_order_id=checked.client_order_id), now)


def position(quantity: float, mark: float = 100.0, *, strategy: str = STRATEGY,
             symbol: str = SYMBOL) -> PositionSnapshot:
    return PositionSnapshot(strategy, symbol, quantity, mark)


def run(engine: GuardEngine, plan: Plan) -> list[Transition]:
    """What the service does between plan and apply, minus persistence."""
    engine.apply(plan.transitions)
    return plan.transitions


def trip(engine: GuardEngine, scope: Scope = GLOBAL, now: float = T0,
         mode: TriggerMode = TriggerMode.HALT) -> list[Transition]:
    return run(engine, engine.plan_trigger(Trigger(scope, mode, "drill",
                                                   TriggerReason.USER_INITIATED,
                                                   (Directive.CANCEL_OPEN_ORDERS,),
                                                   "operator"), now))


def report(engine: GuardEngine, scope: Scope, metric, value: float,
           now: float = T0) -> list[Transition]:
    return run(engine, engine.plan_report(scope, metric, value, now))


def reset(engine: GuardEngine, scope: Scope = GLOBAL, now: float = T0,
          force: bool = False) -> list[Transition]:
    return run(engine, engine.plan_reset(scope, "checked, resuming", force, "operator", now))


def timers(engine: GuardEngine, now: float) -> list[Transition]:
    """A timer run, as the service makes it: forget expired ids, then plan."""
    engine.expire(now)
    return run(engine, engine.plan_timers(now))


@pytest.fixture
def engine() -> GuardEngine:
    return make_engine()
