"""Ids journaled before stop 60 with two spaces in a row (docs/design.md, Ids): no request
names them again, and an account holding a leg under one allows only orders that
reduce, whatever the limits in force, until a snapshot or a clear leaves none."""

from __future__ import annotations

import pytest

from ess_sidecar.domain.commands import Admitted, PositionsSynced
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.errors import InvalidArgument
from ess_sidecar.domain.limits import LimitSettings
from ess_sidecar.domain.orders import Side

from .conftest import ACCOUNT, EQUITY, SYMBOL, T0, fill, make_engine, order, position, \
    report_fill

R = DecisionReason
SPACED = "alpha  beta"


def legacy_order(engine: GuardEngine, client_order_id: str, quantity: float = 10.0) -> None:
    """An order an earlier version allowed for SPACED, as its journal replays it."""
    engine.replay(Admitted(order(quantity, strategy=SPACED, client_order_id=client_order_id),
                           T0, f"d-{client_order_id}"), ())


def test_the_hold_stands_with_the_exposure_limits_off() -> None:
    """Review 60c: the hold sat behind `exposure_enabled`, so with it off a strategy
    renamed from SPACED escaped max_working_orders_per_strategy (4 working against 2)."""
    engine = make_engine(limits=LimitSettings(duplicate_identical_orders=0,
                                              exposure_enabled=False,
                                              max_working_orders_per_strategy=2))
    legacy_order(engine, "w-1")
    legacy_order(engine, "w-2")
    held = engine.check(order(strategy="alpha beta"), T0)
    assert (held.allowed, held.reason) == (False, R.STRATEGY_EXPOSURE)
    assert f"holds working orders of strategy 'alpha  beta' in '{SYMBOL}', kept from" \
        in held.message
    assert engine.clear_working_orders(ACCOUNT, []) == 2
    assert engine.check(order(strategy="alpha beta"), T0).allowed


def test_an_order_that_reduces_is_allowed_through_the_hold() -> None:
    engine = make_engine()
    engine.sync_positions(ACCOUNT, EQUITY, [position(5.0, strategy="gamma")])
    legacy_order(engine, "w-1")
    assert engine.check(order(2.0, side=Side.SELL, strategy="gamma"), T0).allowed
    held = engine.check(order(2.0, strategy="gamma"), T0)
    assert (held.allowed, held.reason) == (False, R.STRATEGY_EXPOSURE)


def test_a_late_fill_within_room_is_not_tripped_by_the_hold() -> None:
    """Review 60c: a late fill of 1 (0.01 % of equity) of an order a snapshot had left out
    tripped the account only because it held a legacy leg: the hold says nothing of room,
    so the late fill is judged by the limits alone."""
    engine = make_engine()
    gamma = order(10.0, strategy="gamma", client_order_id="g-1")
    assert engine.check(gamma, T0).allowed
    engine.replay(PositionsSynced(ACCOUNT, EQUITY, (position(0.0), position(
        1.0, strategy=SPACED)), (), T0), ())  # as an earlier version journaled it
    assert engine.check(order(strategy="gamma"), T0).reason is R.STRATEGY_EXPOSURE
    outcome = report_fill(engine, fill(1.0, strategy="gamma", client_order_id="g-1"))
    assert outcome.unchecked == ""


def test_a_replace_of_a_legacy_order_quotes_its_strategy() -> None:
    """Review 60c: printed bare, "alpha  beta" read as the "alpha beta" the replace
    named wherever runs of spaces collapse."""
    engine = make_engine()
    legacy_order(engine, "w-1")
    with pytest.raises(InvalidArgument) as raised:
        engine.check(order(strategy="alpha beta", client_order_id="n-1", replaces="w-1"), T0)
    assert str(raised.value) == f"replaces_client_order_id: order 'w-1' is BUY '{SYMBOL}'" \
        " for strategy 'alpha  beta': a replace keeps the strategy, symbol and side"
