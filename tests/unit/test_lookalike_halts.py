"""A halt covers every id that looks like its own (UTS 39's skeleton, `ids.skeleton`):
ids that look alike and are both canonical ("Δ-hedge" with a Greek delta and "∆-hedge"
with the increment sign a Mac's Option-J types; "ヘッジ" in katakana and "へッジ" with a
hiragana "へ") cannot be told apart on a screen, so a halt of the one an operator typed
must stop the one trading (review 61a: all of these passed a halt of the other)."""

from __future__ import annotations

import pytest

from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.ids import canonical_id, skeleton
from ess_sidecar.domain.orders import Side
from ess_sidecar.domain.states import State, TriggerMode
from tests.unit.conftest import T0, account, fill_order, make_engine, order, reset, strategy, \
    symbol, timers, trip

PAIRS = [("\u2206-hedge", "\u0394-hedge"),  # increment sign, Greek capital delta
         ("\u1e9f-hedge", "\u03b4-hedge"),  # Latin small delta, Greek small delta
         ("\u0278-1", "\u0444-1"),  # Latin phi, Cyrillic ef
         ("\u30d8\u30c3\u30b8", "\u3078\u30c3\u30b8"),  # katakana / hiragana "he"
         ("\u6771\u4eac\u53e3\u30f3\u30b0", "\u6771\u4eac\u30ed\u30f3\u30b0"),  # 口 / ロ
         ("Timi\u0219oara", "Timi\u015foara"),  # s with comma below / with cedilla
         ("algo1", "algol")]  # ASCII look-alikes too


@pytest.mark.parametrize("halted, trading", PAIRS, ids=ascii)
def test_a_halt_of_a_strategy_denies_the_strategy_that_looks_like_it(halted, trading):
    assert canonical_id(halted, "strategy") == halted  # both are canonical ids,
    assert canonical_id(trading, "strategy") == trading
    assert skeleton(halted) == skeleton(trading)  # and look alike
    engine = make_engine()
    assert engine.check(order(strategy=trading), T0).allowed
    trip(engine, strategy(halted))
    decision = engine.check(order(strategy=trading), T0)
    assert (decision.allowed, decision.reason) == (False, DecisionReason.SCOPE_TRIPPED)
    assert decision.blocking_scope == strategy(halted)
    assert decision.message.startswith(f"STRATEGY:{halted} (which looks like this order's"
                                       f" strategy {trading!r}) is TRIPPED: ")
    assert engine.state_of(strategy(trading)) is State.ARMED  # its own scope is untouched
    assert engine.check(order(strategy="momo"), T0).allowed  # others trade on
    reset(engine, strategy(halted), T0 + 900.0)  # lifting the halt lifts it for both
    timers(engine, T0 + 9000.0)  # past the re-arm delay
    assert engine.state_of(strategy(halted)) is State.ARMED
    assert engine.check(order(strategy=trading), T0 + 9000.0).allowed


def test_accounts_and_symbols_are_covered_and_the_strictest_look_alike_wins():
    engine = make_engine()
    trip(engine, account("acc-l"))  # a small L: the account trading is acc-1
    denied = engine.check(order(account="acc-1"), T0)
    assert denied.reason is DecisionReason.SCOPE_TRIPPED
    assert denied.blocking_scope == account("acc-l")
    engine = make_engine()  # the symbol trading is BTC-USD
    fill_order(engine, 5.0)  # a long: a sell reduces it
    trip(engine, symbol("BTC\u2010USD"), mode=TriggerMode.REDUCE_ONLY)  # as a journal had it
    growing = engine.check(order(symbol="BTC-USD"), T0)
    assert growing.reason is DecisionReason.REDUCE_ONLY
    assert "SYMBOL:BTC\u2010USD (which looks like this order's symbol 'BTC-USD') is" \
        " REDUCE_ONLY" in growing.message
    assert engine.check(order(2.0, side=Side.SELL, symbol="BTC-USD"), T0).allowed
    trip(engine, symbol("BTC\u2012USD"))  # a halt of another look-alike: the strictest wins
    assert engine.check(order(2.0, side=Side.SELL, symbol="BTC-USD"), T0).reason \
        is DecisionReason.SCOPE_TRIPPED


def test_ids_that_only_share_letters_are_not_covered():
    engine = make_engine()
    trip(engine, strategy("momo"))
    for other in ("Momo", "momo2", "mom", "\u03bc\u03bf\u03bc\u03bf"):  # case, a digit, Greek
        assert engine.check(order(strategy=other), T0).allowed, other


def test_a_stop_of_a_look_alike_is_not_unseen_and_names_no_look_alike_as_not_stopped():
    """essctl's word after a stop (GuardEngine.spelled_alike): the strategy trading as
    "Δ-hedge" is stopped by a halt of "∆-hedge", so the stop is not of an id nothing
    names, and "Δ-hedge" is not listed as spelled alike and NOT stopped."""
    from tests.unit.test_alike_ids import alike  # noqa: PLC0415
    engine = make_engine()
    assert engine.check(order(strategy="\u0394-hedge"), T0).allowed
    assert alike(engine, strategy("\u2206-hedge")) == (True, [])
    # another case is no look-alike: not stopped, and named as such
    assert alike(engine, strategy("\u0394-HEDGE")) == (False, [strategy("\u0394-hedge")])


@pytest.mark.parametrize("halted, trading", [("\u1e9f-hedge", "\u03b4-hedge"),
                                             ("\u03b4-hedge", "\u1e9f-hedge"),
                                             ("\u0278-1", "\u03c6-1")], ids=ascii)
def test_a_symbol_halt_covers_a_look_alike_whatever_its_capital(halted, trading):
    """Review 61b: symbols fold to capitals before they are looked at, and "ẟ" has none,
    so a halt of "ẟ-HEDGE" missed "Δ-HEDGE" (a small "δ" folded)."""
    engine = make_engine()
    trip(engine, symbol(halted))
    denied = engine.check(order(symbol=trading), T0)
    assert denied.reason is DecisionReason.SCOPE_TRIPPED, denied


def test_ascii_symbols_do_not_look_alike_in_lower_case():
    """COM and CORN are two real tickers: "m" looks like "rn" in lower case only."""
    engine = make_engine()
    trip(engine, symbol("COM"))
    assert engine.check(order(symbol="CORN"), T0).reason is not DecisionReason.SCOPE_TRIPPED


def test_the_orders_own_scope_is_named_before_a_look_alike_as_strict():
    """Review 61b: with "∆-hedge" and "Δ-hedge" both halted, an order of "Δ-hedge" was
    denied naming the look-alike, whichever had been tripped first."""
    engine = make_engine()
    trip(engine, strategy("\u2206-hedge"))
    trip(engine, strategy("\u0394-hedge"))
    denied = engine.check(order(strategy="\u0394-hedge"), T0)
    assert denied.blocking_scope == strategy("\u0394-hedge")
    assert denied.message.startswith("STRATEGY:\u0394-hedge is TRIPPED")


def test_essctl_reset_names_a_stopped_look_alike_as_the_engine_finds_it():
    """Review 61c: essctl compared plain skeletons, so with SYMBOL:ẟ-HEDGE tripped (it
    stops Δ-HEDGE's orders) a reset of the ARMED Δ-HEDGE named nothing."""
    from ess.v1 import guard_pb2 as pb  # noqa: PLC0415
    from ess_sidecar.essctl.reset import _alike  # noqa: PLC0415
    symbol_, strategy_ = pb.SCOPE_KIND_SYMBOL, pb.SCOPE_KIND_STRATEGY
    assert _alike(pb.Scope(kind=symbol_, id="\u1e9f-HEDGE"),
                  pb.Scope(kind=symbol_, id="\u0394-HEDGE"))
    assert _alike(pb.Scope(kind=strategy_, id="\u2206-hedge"),
                  pb.Scope(kind=strategy_, id="\u0394-hedge"))
    assert not _alike(pb.Scope(kind=symbol_, id="COM"), pb.Scope(kind=symbol_, id="CORN"))
    assert not _alike(pb.Scope(kind=symbol_, id="\u0394-HEDGE"),  # another kind
                      pb.Scope(kind=strategy_, id="\u2206-HEDGE"))
