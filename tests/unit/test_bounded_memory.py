"""Memory per id is bounded: idle ids are forgotten unless something still needs them, and
hard caps fail closed with a clear error, never a silent allow."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import pytest

from ess_sidecar.adapters.storage.memory import InMemoryStateStore
from ess_sidecar.domain import heartbeats
from ess_sidecar.domain.access import Principal, Role
from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.config import GuardConfig, ResumePolicy
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.errors import CapacityExceeded, InvalidArgument, ResetRefused
from ess_sidecar.domain.oldest import MOST_PER_RUN
from ess_sidecar.domain.limits import LimitSettings
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.orders import OpenOrder, Order, OrderStatus, OrderUpdate, \
    PositionSnapshot, Side
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.states import Cause, State, TriggerMode, TriggerReason
from ess_sidecar.domain.commands import Command, Trigger
from ess_sidecar.domain.states import Transition
from ess_sidecar.ports import NoJournal
from ess_sidecar.service import Guard
from ess_sidecar.watch import Subscribers
from tests.fakes import FakeClock

from .conftest import T0, make_engine, report, rules, run, timers, trip

HOUR = 3600.0  # the longest default breaker window (failed_trades, stop_loss_hits)


def strategies(count: int) -> list[Scope]:
    return [Scope(ScopeKind.STRATEGY, f"s-{n}") for n in range(count)]


def test_idle_evidence_is_forgotten_after_its_longest_window() -> None:
    engine = make_engine(limits=LimitSettings(idle_evidence_s=60.0))
    for scope in strategies(500):
        report(engine, scope, Metric.API_ERROR, 1.0, T0)
    assert len(engine.breakers) == 500
    assert engine.expire(T0 + HOUR - 1) == 0  # 60 s idle is not enough: windows are 1 h
    assert engine.expire(T0 + HOUR + 1) >= 500
    assert len(engine.breakers) == 0


def test_evidence_something_still_needs_is_kept() -> None:
    """A latched scope (its reset needs the evidence), a watched feed (it must still go
    stale), a peak equity and an account with a book are never forgotten."""
    engine = make_engine(limits=LimitSettings(idle_evidence_s=60.0),
                         breakers=rules(data_feed_stale={"window_s": 10 * HOUR}))
    latched, feed, account = (Scope(ScopeKind.STRATEGY, "latched"),
                              Scope(ScopeKind.SYMBOL, "FEED"), Scope(ScopeKind.ACCOUNT, "acc-1"))
    report(engine, latched, Metric.API_ERROR, 1.0, T0)
    trip(engine, latched)
    report(engine, feed, Metric.DATA_FEED_TICK, 1.0, T0)
    report(engine, account, Metric.EQUITY, 1e6, T0)  # acc-1 has a book (conftest syncs it)
    report(engine, account, Metric.EQUITY, 0.95e6, T0)
    engine.expire(T0 + 2 * HOUR)
    assert all(scope in engine.breakers for scope in (latched, feed, account))
    # The account's drawdown is still measured from the peak it had.
    assert [t.breaker for t in report(engine, account, Metric.EQUITY, 0.7e6, T0 + 2 * HOUR)] \
        == ["total_drawdown_pct"]


@pytest.mark.parametrize("scope", [Scope(ScopeKind.STRATEGY, "momo"), GLOBAL], ids=str)
def test_a_peak_equity_is_kept_however_long_the_scope_is_idle(scope: Scope) -> None:
    """Review 34h: forgotten after a day idle, equity reported once a day never built a
    total drawdown on a strategy or GLOBAL (the peak started again each day)."""
    engine = make_engine()
    report(engine, scope, Metric.EQUITY, 100.0, T0)
    timers(engine, T0 + 86_400)  # a day idle (limits.idle_evidence_s)
    assert scope in engine.breakers
    assert [t.breaker for t in report(engine, scope, Metric.EQUITY, 50.0, T0 + 86_400)] \
        == ["total_drawdown_pct"]


def test_a_timer_run_that_keeps_evidence_says_so_so_that_the_journal_records_it() -> None:
    """Review 8: keeping a latched scope's evidence looks at it again only after another
    idle period; a run that only kept was not journaled, so a restart forgot the evidence
    a period early and accepted a reset the running sidecar refused."""
    engine = make_engine(limits=LimitSettings(idle_evidence_s=60.0))
    latched = Scope(ScopeKind.STRATEGY, "latched")
    report(engine, latched, Metric.DAILY_DRAWDOWN_PCT, 6.0, T0)  # trips: latched
    assert engine.expire(T0 + HOUR + 1) == 1  # kept, and counted: the run is journaled
    assert latched in engine.breakers
    assert engine.expire(T0 + HOUR + 2) == 0  # nothing until another idle period


def test_too_many_scopes_with_evidence_trips_global_and_refuses_the_sample() -> None:
    clock = FakeClock(T0)
    engine = GuardEngine(GuardConfig(limits=LimitSettings(max_scopes_with_evidence=100)))
    guard = Guard(engine, InMemoryStateStore(), clock, Subscribers(4))
    for scope in strategies(100):
        guard.report_metric(scope, Metric.API_ERROR, 1.0)
    with pytest.raises(CapacityExceeded, match="max_scopes_with_evidence"):
        guard.report_metric(Scope(ScopeKind.STRATEGY, "one-more"), Metric.API_ERROR, 1.0)
    assert engine.state_of(GLOBAL) is State.TRIPPED
    assert engine.current(GLOBAL).cause is Cause.SYSTEM
    assert Scope(ScopeKind.STRATEGY, "one-more") not in engine.breakers
    guard.report_metric(strategies(1)[0], Metric.API_ERROR, 1.0)  # known scopes still report


def test_a_sample_that_trips_its_scope_alone_is_kept_past_the_evidence_cap() -> None:
    """Review 38m: a 50 % drawdown refused at the cap tripped GLOBAL only, and a reset of
    GLOBAL let the account trade, the breach recorded nowhere; 38n: tripping the account
    without its evidence, a plain reset (or an auto re-arm) lifted it while it held; 38p:
    a breach of two samples was refused whole, so GLOBAL holds while the evidence is at
    its cap, and what passes it is bounded (a tenth of it)."""
    clock = FakeClock(T0)
    engine = GuardEngine(GuardConfig(limits=LimitSettings(max_scopes_with_evidence=100)))
    guard = Guard(engine, InMemoryStateStore(), clock, Subscribers(4))
    for scope in strategies(100):
        guard.report_metric(scope, Metric.API_ERROR, 1.0)
    breached, quiet = Scope(ScopeKind.ACCOUNT, "acc-1"), Scope(ScopeKind.ACCOUNT, "acc-2")
    assert guard.report_metric(breached, Metric.DAILY_DRAWDOWN_PCT, 50.0).tripped
    assert breached in engine.breakers and engine.state_of(GLOBAL) is State.TRIPPED
    with pytest.raises(CapacityExceeded):
        guard.report_metric(quiet, Metric.DAILY_DRAWDOWN_PCT, 1.0)
    assert engine.state_of(quiet) is State.ARMED and quiet not in engine.breakers
    clock.advance(3600)
    with pytest.raises(ResetRefused, match="still holds"):
        guard.reset(breached, "looked", force=False, actor="alice")
    with pytest.raises(ResetRefused, match="refused at limits.max_scopes_with_evidence"):
        guard.reset(GLOBAL, "looked", force=False, actor="alice")
    for n in range(20):  # a flood of breaches for new scopes: a tenth past the cap
        with pytest.raises(CapacityExceeded) if n >= 9 else nullcontext():
            guard.report_metric(Scope(ScopeKind.SYMBOL, f"S{n}"), Metric.DATA_FEED_CORRUPT, 1)
    assert len(engine.breakers) == 110


def test_after_a_sample_refused_at_the_cap_only_a_forced_reset_resumes_global() -> None:
    """Review 38p: a breach of two samples, both refused at the cap, was recorded nowhere,
    and a plain reset of GLOBAL let its account trade; 38q: held while the evidence was at
    its cap instead, GLOBAL's re-arm delay never ended, and a plain reset after idle
    evidence was forgotten resumed it all the same. Replay rebuilds it."""
    clock, journal = FakeClock(T0), RecordingJournal()
    config = GuardConfig(limits=LimitSettings(max_scopes_with_evidence=100),
                         policy={ScopeKind.GLOBAL: ResumePolicy(rearm_delay_s=30)})
    engine = GuardEngine(config)
    guard = Guard(engine, InMemoryStateStore(), clock, Subscribers(4), journal=journal)
    for scope in strategies(100):
        guard.report_metric(scope, Metric.DATA_FEED_TICK, 1.0)  # watched: never forgotten
    with pytest.raises(CapacityExceeded):
        guard.report_metric(Scope(ScopeKind.ACCOUNT, "acc-1"), Metric.DAILY_DRAWDOWN_PCT, 4)
    replayed = GuardEngine(config)
    for command in journal.commands:
        replayed.replay(command, [])
    assert replayed.refused_at_cap
    clock.advance(3 * 86_400)
    with pytest.raises(ResetRefused, match="refused at limits.max_scopes_with_evidence"):
        guard.reset(GLOBAL, "looked", force=False, actor="alice")
    with pytest.raises(ResetRefused, match="refused at limits"):  # review 38r: a latch at
        guard.reset(GLOBAL, "looked", force=False, actor="alice", latches=["system"])  # a time
    assert guard.reset(GLOBAL, "checked", force=True, actor="alice").state \
        is State.COOLING_DOWN
    clock.advance(31)
    guard.run_timers()
    assert engine.state_of(GLOBAL) is State.ARMED and not engine.refused_at_cap


def test_a_replay_keeps_the_evidence_kept_live_whatever_the_cap_is_now() -> None:
    """Review 38m: replayed under a lower cap, samples kept live were refused again and
    their evidence lost: a reset was accepted while the breach held, and feeds were no
    longer watched. A sample refused live is not kept by a replay under a higher cap."""
    journal = RecordingJournal()
    engine = GuardEngine(GuardConfig(limits=LimitSettings(max_scopes_with_evidence=150)))
    guard = Guard(engine, InMemoryStateStore(), FakeClock(T0), Subscribers(4),
                  journal=journal)
    for scope in strategies(151):
        with pytest.raises(CapacityExceeded) if scope.id == "s-150" else nullcontext():
            guard.report_metric(scope, Metric.DAILY_DRAWDOWN_PCT, 3.0)  # below 5
    for cap in (100, 1000):
        replayed = GuardEngine(GuardConfig(limits=LimitSettings(max_scopes_with_evidence=cap)))
        for command in journal.commands:
            replayed.replay(command, [])
        assert len(replayed.breakers) == 150 and Scope(ScopeKind.STRATEGY, "s-149") in \
            replayed.breakers and Scope(ScopeKind.STRATEGY, "s-150") not in replayed.breakers


def test_an_account_that_holds_nothing_is_forgotten() -> None:
    engine = GuardEngine(GuardConfig(limits=LimitSettings(exposure_enabled=False,
                                                          max_orders_per_second=0)))
    for n in range(200):
        order = Order(f"acc-{n}", "momo", "AAPL", Side.BUY, 1.0, 100.0,
                      client_order_id=f"c-{n}")
        assert engine.check(order, T0).allowed
        assert engine.update_order(OrderUpdate(order.account, order.client_order_id,
                                               OrderStatus.CANCELLED))
    assert engine.book.accounts == {}


class RecordingJournal(NoJournal):
    def __init__(self) -> None:
        self.commands: list[Command | None] = []

    def record(self, command: Command | None, transitions: Sequence[Transition] = ()) -> None:
        self.commands.append(command)


def test_a_snapshot_adopts_no_order_while_the_order_ids_remembered_are_at_their_cap() -> None:
    """Review 35: adopted orders went past limits.max_remembered_orders, 36 MiB a second
    for as long as snapshots of new ids came; the first fix refused such a snapshot
    whole, and the working orders it would have ended stayed for good. One that starts
    under the cap adopts all it lists; at the cap the orders it lists that the sidecar
    does not know are left out, the rest applies, and new orders are denied."""
    engine = make_engine(limits=LimitSettings(max_remembered_orders=1000,
                                              duplicate_identical_orders=0))
    journal = RecordingJournal()
    guard = Guard(engine, InMemoryStateStore(), FakeClock(T0), Subscribers(16),
                  journal=journal)
    marked = [PositionSnapshot("s", "AAPL", 0, 100)]
    listed = [OpenOrder(f"v-{i}", "s", "AAPL", Side.BUY, 1, 100) for i in range(1000)]
    guard.sync_positions("acc-1", 1e6, marked, listed)  # from 0: adopted whole
    assert len(engine.orders.records) == 1000 and engine.orders.working_count("acc-1") == 1000
    unknown = [OpenOrder("new", "s", "AAPL", Side.BUY, 1, 100)]
    guard.sync_positions("acc-1", 2e6, [PositionSnapshot("s", "AAPL", 5, 100)],
                         listed[:10] + unknown)
    assert len(engine.orders.records) == 1000  # "new" left out, not adopted
    assert engine.orders.working_count("acc-1") == 10  # the other 990 ended
    assert (engine.book.equity("acc-1"), engine.book.position("acc-1", "s", "AAPL")) == (2e6, 5)
    denied = engine.check(Order("acc-1", "s", "AAPL", Side.BUY, 1, 100, client_order_id="c"), T0)
    assert denied.reason is DecisionReason.MAX_WORKING_ORDERS  # "new" is not counted
    twice = [unknown[0], unknown[0]]  # review 35o: left out first, this passed and applied
    with pytest.raises(InvalidArgument, match="twice"):
        guard.sync_positions("acc-1", 3e6, marked, twice)
    mislisted = [OpenOrder("v-1", "other", "AAPL", Side.BUY, 1, 100)]
    with pytest.raises(InvalidArgument) as raised:  # named by its place in the whole list
        guard.sync_positions("acc-1", 3e6, marked, unknown + [listed[0]] + mislisted)
    assert raised.value.field == "open_orders[2]"
    assert engine.book.equity("acc-1") == 2e6 and engine.orders.working_count("acc-1") == 10
    replayed = make_engine(limits=engine.config.limits)  # the journal holds what applied
    for command in journal.commands:
        replayed.replay(command, [])
    assert set(replayed.orders.records) == set(engine.orders.records)


def test_an_account_a_snapshot_left_orders_out_of_is_denied_until_one_leaves_none_out() -> None:
    """Review 38b: the orders left out at the cap were denied only while the cap lasted;
    once the ids expired (or the cap was raised and the sidecar restarted), a buy of 29 %
    of equity was allowed beside the venue's unadopted 29 % (a 30 % symbol limit). The
    account is denied until a snapshot leaves none out or an operator clears all its
    orders; a replay restores it."""
    engine = make_engine(limits=LimitSettings(
        max_remembered_orders=1000, duplicate_identical_orders=0, max_orders_per_second=0,
        max_working_orders_per_account=0, max_working_orders_per_strategy=0))
    journal = RecordingJournal()
    guard = Guard(engine, InMemoryStateStore(), FakeClock(T0), Subscribers(16),
                  journal=journal)
    guard.sync_positions("other", 1e6, [PositionSnapshot("s", "BBB", 0, 10)])
    for n in range(1000):  # another account's ids fill the cap
        assert engine.check(Order("other", "s", "BBB", Side.BUY, 1, 10,
                                  client_order_id=f"x-{n}"), T0).allowed
    engine.clear_working_orders("other", [])
    marked = [PositionSnapshot("s", "AAA", 0, 100)]
    venue = OpenOrder("venue-1", "s", "AAA", Side.BUY, 2900, 100)  # 29 % of equity
    guard.sync_positions("victim", 1e6, marked, [venue])
    assert engine.orders.working_count("victim") == 0  # left out

    def check(n: int, now: float) -> DecisionReason:
        return engine.check(Order("victim", "s", "AAA", Side.BUY, 2900, 100,
                                  client_order_id=f"new-{n}"), now).reason

    later = T0 + engine.config.limits.order_id_retention_s + 1
    assert engine.expire(later) == 1000  # the cap is relieved
    assert check(1, later) is DecisionReason.MAX_WORKING_ORDERS
    assert "could not adopt" in engine.check(Order("victim", "s", "AAA", Side.SELL, 1, 100,
                                                   client_order_id="sell"), later).message
    assert engine.check(Order("other", "s", "BBB", Side.BUY, 1, 10,  # others are not held
                              client_order_id="x-new"), later).allowed
    engine.clear_working_orders("other", [])
    replayed = make_engine(limits=engine.config.limits)
    for command in journal.commands:
        replayed.replay(command, [])
    replayed.expire(later)
    assert replayed.check(Order("victim", "s", "AAA", Side.BUY, 2900, 100,
                                client_order_id="new-1"), later).reason \
        is DecisionReason.MAX_WORKING_ORDERS
    guard.sync_positions("victim", 1e6, marked, [], )  # no positions, no orders: lifted
    assert check(2, later) is DecisionReason.ALLOWED
    engine.clear_working_orders("victim", [])
    guard.sync_positions("victim", 1e6, marked, [venue])  # under the cap: adopted, counted
    assert check(3, later) is DecisionReason.SYMBOL_EXPOSURE
    for n in range(1000):
        engine.check(Order("other", "s", "BBB", Side.BUY, 1, 10, client_order_id=f"y-{n}"),
                     later)
    guard.sync_positions("victim", 1e6, marked, [OpenOrder("venue-2", "s", "AAA", Side.BUY,
                                                           1, 100)])
    assert engine.book.peek("victim").unadopted == 1
    engine.clear_working_orders("victim", ["venue-1"])  # one named: still held
    assert engine.book.peek("victim").unadopted == 1
    engine.clear_working_orders("victim", [])  # all of its orders: the operator's word
    assert engine.book.peek("victim").unadopted == 0


def test_a_timer_run_forgets_a_bounded_number_of_ids_and_the_next_runs_the_rest() -> None:
    """Review 36o: forgetting ids took the first entry and deleted it, once per id, and a
    dict rescans the slots of those deleted before it: a restart after a day held the loop
    18 s for 250,000 ids. One pass reads them, and a run forgets at most MOST_PER_RUN."""
    engine = make_engine(limits=LimitSettings(
        duplicate_identical_orders=0, exposure_enabled=False, max_orders_per_second=0,
        max_working_orders_per_account=0, max_working_orders_per_strategy=0))
    count = MOST_PER_RUN + 500
    for n in range(count):
        assert engine.check(Order("acc-1", "s", "AAPL", Side.BUY, 1, 100,
                                  client_order_id=f"c-{n}"), T0).allowed
    engine.clear_working_orders("acc-1", [])
    later = T0 + engine.config.limits.order_id_retention_s + 1
    assert engine.expire(later) == MOST_PER_RUN
    assert len(engine.orders.records) == 500
    assert engine.expire(later) == 500 and not engine.orders.records


def test_rate_windows_of_idle_strategies_are_forgotten() -> None:
    engine = GuardEngine(GuardConfig(limits=LimitSettings(exposure_enabled=False,
                                                          max_orders_per_second=1)))
    for n in range(300):
        assert engine.check(Order("acc", f"s-{n}", "AAPL", Side.BUY, 1.0, 100.0,
                                  client_order_id=f"c-{n}"), T0).allowed
    second = Order("acc", "s-0", "AAPL", Side.BUY, 1.0, 100.0, client_order_id="again")
    assert not engine.check(second, T0 + 0.5).allowed  # the window still counts
    assert engine.expire(T0 + 0.5) == 0
    assert engine.expire(T0 + 1.5) >= 300
    assert engine.check(second, T0 + 1.5).allowed


def test_heartbeat_registrations_are_capped_with_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(heartbeats, "MAX_REGISTRATIONS", 10)
    engine = make_engine()
    for n in range(10):
        engine.heartbeat(f"ex-{n}", GLOBAL, 5.0, T0)
    with pytest.raises(CapacityExceeded, match="10 heartbeat registrations"):
        engine.heartbeat("ex-10", GLOBAL, 5.0, T0)
    assert engine.heartbeat("ex-3", GLOBAL, 5.0, T0 + 1) is False  # known ones still beat
    timers(engine, T0 + 6)  # and still trip when they stop
    assert engine.state_of(GLOBAL) is State.TRIPPED


def test_a_restart_that_lost_a_sample_refused_at_the_cap_still_needs_a_forced_reset() -> None:
    """Review 48b: where the journal lost the refused sample (only GLOBAL's trip at the cap
    was in the store), a plain reset of GLOBAL was accepted after the restart."""
    engine = GuardEngine(GuardConfig(limits=LimitSettings(max_scopes_with_evidence=100)))
    for scope in strategies(100):
        run(engine, engine.plan_report(scope, Metric.API_ERROR, 1.0, T0))
    plan = engine.plan_report(Scope(ScopeKind.STRATEGY, "one-more"), Metric.API_ERROR, 1.0, T0)
    assert plan.refusal
    (at_cap,) = run(engine, plan)
    (operators,) = run(engine, engine.plan_trigger(Trigger(
        GLOBAL, TriggerMode.HALT, "desk", TriggerReason.USER_INITIATED, (), "op"), T0 + 1))
    for restart, history in (("catch_up", [at_cap]), ("restore", [at_cap]),
                             ("restore", [operators])):  # 48d: the cap trip's reason hidden
        restarted = GuardEngine(GuardConfig(limits=LimitSettings(max_scopes_with_evidence=100)))
        getattr(restarted, restart)(history, history[-1].version, T0 + 2)
        with pytest.raises(ResetRefused, match="refused at limits.max_scopes_with_evidence"):
            run(restarted, restarted.plan_reset(GLOBAL, "looked", False, "alice", T0 + 3))


def test_a_checked_reset_of_the_cap_latch_in_the_replayed_history_shows_none_was_refused(
        ) -> None:
    """Review 48d: a plain reset of GLOBAL's system latch is accepted only if no sample was
    refused at the cap; applied after a restart, it left GLOBAL force-only all the same."""
    config = GuardConfig(limits=LimitSettings(max_scopes_with_evidence=100),
                         policy={kind: ResumePolicy(reset_cooldown_s=0) for kind in ScopeKind})
    engine = GuardEngine(config)
    for scope in strategies(100):
        run(engine, engine.plan_report(scope, Metric.API_ERROR, 1.0, T0))
    breached = Scope(ScopeKind.ACCOUNT, "acc-1")
    plan = engine.plan_report(breached, Metric.DAILY_DRAWDOWN_PCT, 50.0, T0)
    assert not plan.refusal  # it trips its scope alone: kept
    history = run(engine, plan)
    history += run(engine, engine.plan_trigger(Trigger(
        GLOBAL, TriggerMode.HALT, "desk", TriggerReason.USER_INITIATED, (), "op"), T0 + 1))
    history += run(engine, engine.plan_reset(GLOBAL, "looked", False, "alice", T0 + 2,
                                             latches=["system"]))
    restarted = GuardEngine(config)
    restarted.catch_up(history, history[-1].version, T0 + 3)
    for each in (engine, restarted):
        run(each, each.plan_reset(GLOBAL, "looked", False, "alice", T0 + 4))
        assert each.state_of(GLOBAL) is State.ARMED


def test_an_executor_refused_at_the_registrations_cap_trips_its_scope(monkeypatch) -> None:
    """Review 49g: with the registrations' table full, a new executor's first beat was
    refused and its scope went on trading with no dead-man's switch. Its scope trips, as
    for a lost executor, durably; a known executor's beats are unaffected."""
    monkeypatch.setattr(heartbeats, "MAX_REGISTRATIONS", 10)
    store = InMemoryStateStore()
    guard = Guard(GuardEngine(GuardConfig()), store, FakeClock(), Subscribers(16))
    for n in range(10):
        guard.heartbeat(f"junk-{n}", Scope(ScopeKind.STRATEGY, "junk"), 3600.0)
    momo = Scope(ScopeKind.STRATEGY, "momo")
    with pytest.raises(CapacityExceeded, match="10 heartbeat registrations"):
        guard.heartbeat("real", momo, 1.0)
    [stored] = store.load().current
    assert (stored.scope, stored.state, stored.breaker) == (momo, State.TRIPPED,
                                                            "heartbeat_lost")
    assert "executor real cannot be watched" in stored.reason
    assert stored.actor == "system"  # authentication off: no principal to name
    denied = guard.check(Order("acc", "momo", "AAPL", Side.BUY, 1.0, 100.0,
                               client_order_id="c-1"))
    assert (denied.allowed, denied.reason) == (False, DecisionReason.SCOPE_TRIPPED)
    with pytest.raises(CapacityExceeded):  # again: the latch holds, nothing new stored
        guard.heartbeat("real", momo, 1.0)
    assert [t.version for t in store.load().current] == [stored.version]
    assert guard.heartbeat("junk-3", Scope(ScopeKind.STRATEGY, "junk"), 3600.0).state \
        is State.ARMED
    bot = Principal("bot-1", Role.EXECUTOR)  # with authentication: who sent it (49h)
    with pytest.raises(CapacityExceeded):
        guard.heartbeat("other", Scope(ScopeKind.STRATEGY, "arb"), 1.0, caller=bot)
    assert [t.actor for t in store.load().current if t.scope.id == "arb"] == ["bot-1"]
