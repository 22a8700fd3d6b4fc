"""An operator edits the configuration and restarts (review 55b): the journal's replay redoes
what each command did, as the process that ran it judged it, never judging it again by the
configuration in force now; what the new configuration judges is what comes after. On a
real SQLite store and journal."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from ess_sidecar.adapters.auth.tokens import new_token, tokens_file_line
from ess_sidecar.adapters.storage.journal import FileJournal
from ess_sidecar.bootstrap import App, build
from ess_sidecar.domain.access import Role
from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.commands import TimersRan, Trigger
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.errors import StoreUnavailable
from ess_sidecar.domain.orders import Fill, IncludedFills, Order, PositionSnapshot, Side
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.states import State, TriggerMode, TriggerReason
from ess_sidecar.settings import load_settings
from tests.fakes import FakeClock


def started(tmp_path: Path, clock: FakeClock, **sections: Any) -> App:
    return build(load_settings(None, server={"listen": ""}, telemetry={"enabled": False},
                               store={"path": str(tmp_path / "ess.db"),
                                      "journal_sync_interval_s": 0.0}, **sections),
                 clock=clock)


def stopped(app: App) -> None:
    app.journal.close()
    app.store.close()


def banded(band_pct: float) -> dict[str, Any]:
    return {"limits": {"max_symbol_exposure_pct": 30, "price_band_pct": band_pct,
                       "symbols": {"AAPL": {"reference_price": 100}}}}


def bought(app: App, number: int, price: float) -> None:
    order = Order("A1", "momo", "AAPL", Side.BUY, 100, price, client_order_id=f"o{number}")
    assert app.guard.check(order).allowed
    app.guard.report_fill(Fill("A1", "momo", "AAPL", Side.BUY, 100, price, f"o{number}",
                               f"f{number}"))


@pytest.mark.parametrize("band_pct", [60.0, 10.0])
def test_a_price_band_narrowed_before_a_restart_keeps_the_mark_fills_set(
        tmp_path: Path, band_pct: float) -> None:
    """Review 55b: replayed with the band narrowed to 10 %, a fill at 150 that had set the
    mark (within 60 % of the reference, 100) was judged beyond the band, the mark went
    back to 100, the 200 held were valued a third too low, and a buy the running sidecar
    denied for exposure was allowed."""
    clock = FakeClock()
    app = started(tmp_path, clock, **banded(60.0))
    app.guard.sync_positions("A1", 100_000.0, [])
    bought(app, 1, 100.0)
    bought(app, 2, 150.0)  # the mark: 150, the position 200 (30,000: 30 %)
    probe = Order("A1", "momo", "AAPL", Side.BUY, 50, 150, client_order_id="probe")
    assert app.guard.check(probe).reason is DecisionReason.SYMBOL_EXPOSURE
    cheap = probe._replace(price=105.0, client_order_id="cheap")
    assert app.guard.check(cheap).reason is DecisionReason.SYMBOL_EXPOSURE
    stopped(app)
    app = started(tmp_path, clock, **banded(band_pct))
    try:
        assert app.guard.engine.book.mark("A1", "AAPL") == 150.0
        again = app.guard.check(probe._replace(client_order_id="probe-2"))
        assert again.reason is DecisionReason.SYMBOL_EXPOSURE, again.message
        cheaper = app.guard.check(cheap._replace(client_order_id="cheap-2"))
        assert not cheaper.allowed, cheaper.message  # 30 % from the mark, or 37.5 % held
    finally:
        stopped(app)


def four_eyes(tmp_path: Path, window_s: float) -> dict[str, Any]:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text("[tokens]\n" + "\n".join(
        tokens_file_line(name, Role.OPERATOR, new_token()) for name in ("alice", "bob")))
    return {"auth": {"tokens_file": str(tokens)},
            "reset": {"require_approvals": 2, "approval_window_s": window_s}}


@pytest.mark.parametrize(("before_s", "after_s", "waited_s"), [(2.0, 3600.0, 2.5),
                                                               (60.0, 2.0, 3.0)])
def test_a_four_eyes_request_expires_by_the_shorter_of_its_window_and_the_new_one(
        tmp_path: Path, before_s: float, after_s: float, waited_s: float) -> None:
    """Review 55b: a request that had expired came back when a restart lengthened the
    approval window (the replay gave it the new one), and one more operator's reset lifted
    the scope. It keeps the expiry it was given; a window shortened ends it sooner."""
    clock, scope = FakeClock(), Scope(ScopeKind.STRATEGY, "S1")
    app = started(tmp_path, clock, **four_eyes(tmp_path, before_s))
    app.guard.trigger(Trigger(scope, TriggerMode.HALT, "halt", TriggerReason.USER_INITIATED,
                              (), "carol"))
    asked = app.guard.reset(scope, "checked", True, "alice")
    assert asked.pending_reset is not None and asked.state is State.TRIPPED
    clock.advance(waited_s)
    stopped(app)
    app = started(tmp_path, clock, **four_eyes(tmp_path, after_s))
    try:
        (view,) = [v for v in app.guard.scope_views() if v.current.scope == scope]
        assert view.pending_reset is None
        again = app.guard.reset(scope, "approved", True, "bob")
        assert again.state is State.TRIPPED and again.pending_reset is not None
        assert again.pending_reset.requested_by == "bob"  # a new request, not an approval
    finally:
        stopped(app)


def test_a_start_says_the_configuration_in_force_and_a_cap_already_passed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Review 55b: the start-up log showed none of the limits, the resume policy or
    four-eyes (docs/design.md said it did), and a `max_remembered_orders` lowered below the
    ids remembered denied every new order for up to a retention, with nothing said."""
    clock, loose = FakeClock(), {"exposure_enabled": False, "max_orders_per_second": 0,
                                 "max_working_orders_per_account": 0,
                                 "max_working_orders_per_strategy": 0,
                                 "duplicate_identical_orders": 0}
    app = started(tmp_path, clock, limits={**loose, "max_remembered_orders": 1100})
    for number in range(1050):
        order = Order("A1", "momo", "AAPL", Side.BUY, 1, 100, client_order_id=f"o{number}")
        assert app.guard.check(order).allowed
    stopped(app)
    with caplog.at_level(logging.INFO, logger="ess_sidecar.bootstrap"):
        app = started(tmp_path, clock, limits={**loose, "max_remembered_orders": 1000})
    try:
        (said,) = [r for r in caplog.records if r.getMessage() == "configuration in force"]
        assert said.limits["default"]["price_band_pct"] == 10.0  # type: ignore[attr-defined]
        assert said.limits["max_remembered_orders"] == 1000  # type: ignore[attr-defined]
        assert said.approvals["required"] == 1  # type: ignore[attr-defined]
        assert said.breakers["defaults"]["api_errors"]["mode"] == "halt"  # type: ignore
        (warned,) = [r for r in caplog.records if "max_remembered_orders" in r.getMessage()]
        assert "1050 order ids are remembered" in warned.getMessage()
        denied = app.guard.check(Order("A1", "momo", "AAPL", Side.BUY, 1, 100,
                                       client_order_id="new"))
        assert denied.reason is DecisionReason.DUPLICATE_ORDER
    finally:
        stopped(app)


def retained(retention_s: float) -> dict[str, Any]:
    return {"limits": {"max_symbol_exposure_pct": 30, "order_id_retention_s": retention_s,
                       "duplicate_window_s": 2.0}}


PROBE = Order("A1", "momo", "AAPL", Side.BUY, 149, 100, client_order_id="probe")


def counted_then_filled(app: App, clock: FakeClock) -> None:
    """o1 sold, a snapshot counting its fill, a timer run journaled (it forgets u1's
    identical-order count), then o1's fill: in the snapshot already, it moves nothing.
    Holding 200 of 100,000 at 100, a buy of 149 (35 %) is over the limit."""
    guard = app.guard
    guard.sync_positions("A1", 100_000.0, [PositionSnapshot("momo", "AAPL", 300, 100)])
    assert guard.check(Order("A1", "momo", "AAPL", Side.SELL, 100, 100,
                             client_order_id="o1")).allowed
    guard.sync_positions("A1", 100_000.0, [PositionSnapshot("momo", "AAPL", 200, 100)], [],
                         [IncludedFills("o1", 100)])
    clock.advance(4.0)
    assert guard.check(Order("A1", "other", "AAPL", Side.BUY, 1, 100,
                             client_order_id="u1")).allowed
    clock.advance(3.0)
    assert guard.run_timers() == []
    report = guard.report_fill(Fill("A1", "momo", "AAPL", Side.SELL, 100, 100, "o1", "f1"))
    assert report.fill.position == 200


@pytest.mark.parametrize("retention_after_s", [3600.0, 3.0])
def test_a_timer_run_is_replayed_with_the_retention_it_ran_with(
        tmp_path: Path, retention_after_s: float) -> None:
    """Review 55d: replayed with a retention shortened to 3 s, a timer run that had
    forgotten nothing forgot the order whose fill the snapshot had counted; the fill
    reported after it moved the position a second time (200 to 100), and a buy the
    running sidecar denied for exposure was allowed."""
    clock = FakeClock()
    app = started(tmp_path, clock, **retained(3600.0))
    counted_then_filled(app, clock)
    assert app.guard.check(PROBE).reason is DecisionReason.SYMBOL_EXPOSURE
    stopped(app)
    app = started(tmp_path, clock, **retained(retention_after_s))
    try:
        assert app.guard.engine.book.position("A1", "momo", "AAPL") == 200
        again = app.guard.check(PROBE._replace(client_order_id="probe-2"))
        assert again.reason is DecisionReason.SYMBOL_EXPOSURE, again.message
    finally:
        stopped(app)


def test_an_unchecked_fills_trip_owed_is_made_though_its_breaker_was_turned_off(
        tmp_path: Path) -> None:
    """Review 55d: the trip of an unchecked fill whose write failed is owed (journaled with
    the fill); a restart with `unchecked_order` turned off dropped it, and the account
    stayed ARMED with the fill booked. It was decided with the breaker on."""
    clock, account = FakeClock(), Scope(ScopeKind.ACCOUNT, "A1")
    app = started(tmp_path, clock)

    def full_disk(*_: Any, **__: Any) -> None:
        raise StoreUnavailable("no space left on device")

    app.store.append = full_disk  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        app.guard.report_fill(Fill("A1", "momo", "AAPL", Side.BUY, 5, 100, "never", "x1"))
    stopped(app)
    app = started(tmp_path, clock, breakers={"unchecked_order": {"enabled": False}})
    try:
        assert app.guard.engine.denying_state(account) is State.ARMED  # owed, not made yet
        (trip,) = app.guard.run_timers()
        assert (trip.scope, trip.state, trip.breaker) == (account, State.TRIPPED,
                                                          "unchecked_order")
        assert app.guard.engine.book.position("A1", "momo", "AAPL") == 5
    finally:
        stopped(app)


def test_an_owed_trip_outlives_its_fills_retention(tmp_path: Path) -> None:
    """Review 55e: the fill id of an unchecked fill, forgotten a retention after it came
    (a weekend's full disk), took the trip its account was owed with it: ARMED after the
    restart, the fill booked."""
    clock, account = FakeClock(), Scope(ScopeKind.ACCOUNT, "A1")
    app = started(tmp_path, clock, limits={"order_id_retention_s": 10.0})
    stored = app.store.append

    def full_disk(*_: Any, **__: Any) -> None:
        raise StoreUnavailable("no space left on device")

    app.store.append = full_disk  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        app.guard.report_fill(Fill("A1", "momo", "AAPL", Side.BUY, 5, 100, "never", "x1"))
    for _ in range(25):  # the disk stays full past the fill's retention
        clock.advance(1.0)
        with pytest.raises(StoreUnavailable):
            app.guard.run_timers()
    app.store.append = stored  # type: ignore[method-assign]
    stopped(app)
    app = started(tmp_path, clock, limits={"order_id_retention_s": 10.0})
    try:
        (trip,) = app.guard.run_timers()
        assert (trip.scope, trip.state) == (account, State.TRIPPED)
    finally:
        stopped(app)


def test_timer_runs_journaled_before_their_horizons_take_the_first_known_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 55e: a journal written before timer runs recorded their horizons (stop 55)
    was judged by the configuration in force at every start, for good: a retention
    shortened months after the upgrade allowed the order the first test here shows. The
    first start of this version records a run with its horizons, which those take."""
    clock = FakeClock()
    monkeypatch.setattr("ess_sidecar.service.TimersRan",  # as the build before wrote them
                        lambda now, horizons: TimersRan(now))
    app = started(tmp_path, clock, **retained(3600.0))
    counted_then_filled(app, clock)
    stopped(app)
    monkeypatch.undo()
    stopped(started(tmp_path, clock, **retained(3600.0)))  # the upgrade, settings unchanged
    app = started(tmp_path, clock, **retained(3.0))  # months later
    try:
        assert app.guard.engine.book.position("A1", "momo", "AAPL") == 200
        assert app.guard.check(PROBE).reason is DecisionReason.SYMBOL_EXPOSURE
    finally:
        stopped(app)


def test_a_first_start_that_cannot_record_the_horizons_fails_closed_as_a_journal_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 55g: on a full disk, the record of the first start after the upgrade failed,
    and the start called the state on disk untrusted and advised a reseal; it is a
    journal write that failed: free the disk and restart."""
    clock = FakeClock()
    with monkeypatch.context() as old:
        old.setattr("ess_sidecar.service.TimersRan", lambda now, horizons: TimersRan(now))
        app = started(tmp_path, clock, **retained(3600.0))
        counted_then_filled(app, clock)
        stopped(app)

    def full_disk(*_: Any, **__: Any) -> None:
        raise StoreUnavailable("journal write failed: no space left on device")

    with monkeypatch.context() as full:
        full.setattr(FileJournal, "record", full_disk)
        app = started(tmp_path, clock, **retained(3600.0))
    try:
        assert app.guard.engine.denying_state(GLOBAL) is State.TRIPPED
        assert not app.guard.engine.untrusted  # a reset may lift it, once the disk has room
    finally:
        stopped(app)
    stopped(started(tmp_path, clock, **retained(3600.0)))  # room again: recorded
    app = started(tmp_path, clock, **retained(3.0))
    try:
        assert app.guard.check(PROBE).reason is DecisionReason.SYMBOL_EXPOSURE
    finally:
        stopped(app)


@pytest.mark.parametrize("journal", [True, False])
def test_a_latch_set_to_wait_for_a_reset_waits_though_its_breaker_now_re_arms(
        tmp_path: Path, journal: bool) -> None:
    """Known gap 22 until stop 56 (review 55b): `daily_drawdown_pct` switched to
    auto_rearm before a restart lifted its latch set under a manual re-arm, by itself, once
    the drawdown cleared; the sidecar that set it held it until a reset. Each latch keeps
    the mode it was set under, in the journal and in the state file (a start from the
    store alone, its journal gone, fails closed and keeps it too)."""
    clock = FakeClock()
    momo, carry = Scope(ScopeKind.STRATEGY, "momo"), Scope(ScopeKind.STRATEGY, "carry")

    def rearming(auto: bool) -> dict[str, Any]:
        return {"policy": {"reset_cooldown_s": 10.0},
                "breakers": {"daily_drawdown_pct": {"auto_rearm": auto}}}

    app = started(tmp_path, clock, **rearming(False))
    app.guard.report_metric(momo, Metric.DAILY_DRAWDOWN_PCT, 6.0)
    app.guard.report_metric(momo, Metric.DAILY_DRAWDOWN_PCT, 1.0)  # cleared: it waits
    stopped(app)
    if not journal:
        Path(f"{tmp_path / 'ess.db'}.journal").unlink()
    app = started(tmp_path, clock, **rearming(True))
    try:
        app.guard.report_metric(momo, Metric.DAILY_DRAWDOWN_PCT, 1.0)  # evidence here
        app.guard.report_metric(carry, Metric.DAILY_DRAWDOWN_PCT, 6.0)  # set under auto
        app.guard.report_metric(carry, Metric.DAILY_DRAWDOWN_PCT, 1.0)
        told = {view.current.scope: view.rearming for view in app.guard.scope_views()}
        assert (told[momo], told[carry]) == ((), ("daily_drawdown_pct",))  # as it does:
        clock.advance(60.0)
        rearmed = app.guard.run_timers()
        assert [(t.scope, t.state) for t in rearmed] == [(carry, State.ARMED)]
        assert app.guard.engine.state_of(momo) is State.TRIPPED
        assert app.guard.engine.state_of(GLOBAL) is (State.ARMED if journal
                                                     else State.TRIPPED)
    finally:
        stopped(app)

