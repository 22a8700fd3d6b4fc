"""A stop names one id exactly: what the engine knows under an id spelled alike (letter
case, runs of spaces) is said, so that a stop meant for it is not taken for done
(review 55f: `essctl trigger --scope account:ACC-2` stopped nothing of `acc-2`)."""

from __future__ import annotations

import pytest

from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.commands import Admitted
from ess_sidecar.domain.engine import MOST_ALIKE, GuardEngine
from ess_sidecar.domain.limits import LimitSettings, SymbolLimits
from ess_sidecar.domain.ids import likeness
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from tests.unit.conftest import T0, account, make_engine, order, position, report, strategy, \
    symbol, trip


def alike(engine: GuardEngine, scope: Scope, every: int = 16) -> tuple[bool, list[Scope]]:
    """The walk run through, as GetState runs it (resting the loop in between); whether
    it looked at every id is asserted."""
    walk = engine.spelled_alike(scope, every)
    while True:
        try:
            next(walk)
        except StopIteration as done:
            known, named, partial = done.value
            assert not partial
            return known, named


def test_likeness_folds_case_and_runs_of_spaces_only() -> None:
    assert likeness("Acc  2") == likeness("acc 2") == "ACC 2"
    assert likeness("straße") == likeness("STRASSE")
    assert likeness("acc-2") != likeness("acc_2")


def test_nothing_known_is_unseen_and_global_always_is_known() -> None:
    engine = make_engine(equity=None)
    assert alike(engine, account("acc-2")) == (False, [])
    assert alike(engine, GLOBAL) == (True, [])


def test_an_account_known_by_its_book_or_working_orders_is_named_for_another_case() -> None:
    engine = make_engine()  # the book holds acc-1 (its equity and a mark)
    assert alike(engine, account("ACC-1")) == (False, [account("acc-1")])
    assert alike(engine, account("acc-1")) == (True, [])
    assert engine.check(order(account="Desk 7"), T0).allowed is False  # no equity: denied,
    assert alike(engine, account("desk  7")) == (False, [])  # and nothing kept of it
    engine.sync_positions("Desk 7", 1_000_000.0, [position(0.0)])
    assert alike(engine, account("desk  7")) == (False, [account("Desk 7")])


def test_a_strategy_known_by_a_working_order_is_named_and_the_exact_one_is_not() -> None:
    engine = make_engine()
    assert alike(engine, strategy("momo")) == (False, [])
    assert engine.check(order(strategy="Momo"), T0).allowed
    assert alike(engine, strategy("momo")) == (False, [strategy("Momo")])
    assert alike(engine, strategy("Momo")) == (True, [])
    assert alike(engine, strategy("MOMO ")) == (False, [strategy("Momo")])


def test_an_id_journaled_with_two_spaces_in_a_row_is_not_named() -> None:
    """Stop 60: two spaces in a row are refused in requests, but the journal of an
    earlier version may hold them, and its replay keeps them. Nothing can trade under
    such an id, and essctl would print a command the sidecar refuses: it is not named."""
    engine = make_engine()
    engine.replay(Admitted(order(strategy="alpha  beta"), T0, "d-1"), ())
    assert [r.strategy for r in engine.orders.working("acc-1")] == ["alpha  beta"]
    assert alike(engine, strategy("alpha beta")) == (False, [])
    engine.sync_positions("acc-2", 1_000_000.0, [position(0.0)])  # acc-1 holds the leg
    assert engine.check(order(account="acc-2", strategy="Alpha Beta", client_order_id="o-2"),
                        T0).allowed
    assert alike(engine, strategy("alpha beta")) == (False, [strategy("Alpha Beta")])


def test_evidence_and_overrides_make_a_scope_known_and_a_trip_does_not() -> None:
    """A trip names its id, but a stop spelled wrong would then be known at its second
    try (and a stop is read after it is made): what trades or is configured counts."""
    engine = make_engine(overrides={strategy("Carry"): {}})
    report(engine, strategy("Mean Rev"), Metric.DAILY_DRAWDOWN_PCT, 1.0, T0)
    trip(engine, account("Ops"), T0)
    assert alike(engine, strategy("mean rev")) == (False, [strategy("Mean Rev")])
    assert alike(engine, strategy("CARRY")) == (False, [strategy("Carry")])
    assert alike(engine, account("Ops")) == alike(engine, account("OPS")) == (False, [])
    both = make_engine(overrides={strategy("carry"): {}, strategy("Carry"): {}})
    assert alike(both, strategy("CARRY")) == (False, [strategy("Carry"), strategy("carry")])


def test_symbols_known_by_marks_and_limits_differ_only_in_spaces() -> None:
    engine = make_engine(limits=LimitSettings(duplicate_identical_orders=0,
                                              symbols={"EUR USD": SymbolLimits()}))
    assert alike(engine, symbol("BTC-USD")) == (True, [])  # the book's mark
    assert alike(engine, symbol("EUR  USD")) == (False, [symbol("EUR USD")])
    assert alike(engine, Scope(ScopeKind.SYMBOL, "ETH-USD")) == (False, [])


def test_the_walk_yields_every_so_many_ids_and_names_at_most_a_hundred() -> None:
    """Review 56a: walked at once, 100,000 ids held a Trigger and every check for up to
    3 s, and 40,000 case variants made a 5 MB answer."""
    engine = make_engine()
    for n in range(250):
        variant = "".join(c.upper() if n >> i & 1 else c for i, c in enumerate("momentum"))
        report(engine, strategy(variant), Metric.DAILY_DRAWDOWN_PCT, 1.0, T0)
    walk = engine.spelled_alike(strategy("MOMENTUM!"), every=100)
    assert [next(walk), next(walk)] == [None, None]  # 250 ids and more: two yields at least
    known, named = alike(engine, strategy("momentum"))
    assert known and len(named) == MOST_ALIKE == 100
    assert named == sorted(named, key=lambda s: s.id)


def test_the_walk_stops_at_its_cap_and_says_so() -> None:
    """Review 56c: a walk bounded only by what is known held the loop; one stops at
    MOST_LOOKED ids (here 10) and says it did not look at them all."""
    engine = make_engine()
    for n in range(30):
        report(engine, strategy(f"s-{n}"), Metric.DAILY_DRAWDOWN_PCT, 1.0, T0)
    walk = engine.spelled_alike(strategy("S-29"), most=10)
    with pytest.raises(StopIteration) as done:
        while True:
            next(walk)
    assert done.value.value == (False, [], True)
