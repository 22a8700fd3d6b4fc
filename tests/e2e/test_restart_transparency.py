"""Restart transparency with real processes: what a sidecar knew before SIGKILL is what the
restarted one judges with — the book, equity, working orders, used order ids, breaker
streaks and the last tick of a data feed — and a reset still needs fresh evidence."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ess.v1 import guard_pb2 as pb
from ess_sidecar.testing import SidecarProcess
from tests.e2e.conftest import guard_stub

pytestmark = pytest.mark.e2e

CONFIG = """
[policy]
reset_cooldown_s = 0
[breakers.consecutive_losses]
threshold = 3
[breakers.data_feed_stale]
window_s = 2
"""
EQUITY, MARK = 100_000.0, 100.0
ORDER_IDS = (f"coid-{n}" for n in itertools.count(1))
ACCOUNT = pb.Scope(kind=pb.SCOPE_KIND_ACCOUNT, id="acc-1")
FEED = pb.Scope(kind=pb.SCOPE_KIND_SYMBOL, id="AAPL")


@pytest.fixture
def sidecar() -> Iterator[SidecarProcess]:
    process = SidecarProcess(Path(tempfile.mkdtemp(prefix="ess-restart-")), CONFIG)
    yield process.start()
    process.stop()
    shutil.rmtree(process.workdir, ignore_errors=True)


def killed_and_restarted(sidecar: SidecarProcess) -> SidecarProcess:
    sidecar.kill()
    return sidecar.start()


def check(stub, quantity: float, client_order_id: str = "",  # noqa: ANN001
          side: int = pb.SIDE_BUY) -> pb.CheckOrderResponse:
    return stub.CheckOrder(pb.CheckOrderRequest(
        account="acc-1", strategy="momo", symbol="AAPL", side=side, quantity=quantity,
        price=MARK, client_order_id=client_order_id or next(ORDER_IDS)), timeout=10)


def test_the_book_equity_and_working_orders_survive_sigkill(sidecar: SidecarProcess) -> None:
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        stub = guard_stub(channel)
        stub.SyncPositions(pb.SyncPositionsRequest(account="acc-1", equity=EQUITY, positions=[
            pb.Position(strategy="momo", symbol="AAPL", quantity=150, mark_price=MARK)]))
        working = check(stub, 100, "kept-1")  # 15 % held + 10 % working
        assert working.allowed, working
    sidecar = killed_and_restarted(sidecar)
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        stub = guard_stub(channel)
        # One periodic equity report must not stand for the book: it is still there.
        stub.ReportMetric(pb.ReportMetricRequest(scope=ACCOUNT, metric=pb.METRIC_EQUITY,
                                                 value=EQUITY))
        over = check(stub, 60)  # 15 + 10 + 6 = 31 % > 30 %
        assert not over.allowed
        assert over.reason == pb.DECISION_REASON_SYMBOL_EXPOSURE, over
        assert check(stub, 40).allowed  # 29 %: the restored figures, not a fail-closed deny
        again = check(stub, 1, "kept-1")
        assert again.reason == pb.DECISION_REASON_DUPLICATE_ORDER, again
        state = stub.GetState(pb.GetStateRequest(include_working_orders=True))
        assert {w.client_order_id for w in state.working_orders} >= {"kept-1"}
        # The order allowed before the kill fills after it: tied, not unchecked.
        reply = stub.ReportFill(pb.ReportFillRequest(
            account="acc-1", strategy="momo", symbol="AAPL", side=pb.SIDE_BUY, quantity=100,
            price=MARK, client_order_id="kept-1", fill_id="x-1"))
        assert not reply.unchecked and reply.account_state == pb.STATE_ARMED, reply


def test_a_losing_streak_continues_across_a_restart(sidecar: SidecarProcess) -> None:
    loss = pb.ReportMetricRequest(scope=ACCOUNT, metric=pb.METRIC_TRADE_RESULT, value=-10)
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        stub = guard_stub(channel)
        for _ in range(2):
            assert stub.ReportMetric(loss).state == pb.STATE_ARMED
    sidecar = killed_and_restarted(sidecar)
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        assert guard_stub(channel).ReportMetric(loss).state == pb.STATE_TRIPPED


def test_a_feed_that_dies_across_a_restart_is_found_stale(sidecar: SidecarProcess) -> None:
    tick = pb.ReportMetricRequest(scope=FEED, metric=pb.METRIC_DATA_FEED_TICK, value=1)
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        guard_stub(channel).ReportMetric(tick)
    sidecar = killed_and_restarted(sidecar)
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        # The watch ends the wait as soon as the trip is published; its deadline (the 2 s
        # window plus ample slack) fails the test if it never is.
        watch = guard_stub(channel).WatchState(pb.WatchStateRequest(scopes=[FEED]), timeout=30)
        tripped = next(m for m in watch if m.state == pb.STATE_TRIPPED)
        watch.cancel()
        assert tripped.scope == FEED and "no data feed tick" in tripped.reason, tripped


def test_a_feed_whose_ticks_a_lost_journal_held_is_found_stale_after_the_reseal(
        sidecar: SidecarProcess) -> None:
    """Known gap 21 (review 47a): the journal and its seal lost with the state file kept,
    resealed; the feed was unknown to the next start until it ticked again, so a dead one
    never went stale and orders on its symbol were allowed once GLOBAL was reset. The
    state file keeps the feeds that ticked: each gets a window from the start."""
    tick = pb.ReportMetricRequest(scope=FEED, metric=pb.METRIC_DATA_FEED_TICK, value=1)
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        guard_stub(channel).ReportMetric(tick)
    assert sidecar.terminate() == 0  # stored by a timer run, or at the stop at the latest
    for suffix in (".journal", ".journal.seal"):
        Path(f"{sidecar.state}{suffix}").unlink()
    resealed = subprocess.run(
        [sys.executable, "-m", "ess_sidecar", "reseal", "--config", str(sidecar.config),
         "--state", str(sidecar.state)], capture_output=True, text=True, timeout=60)
    assert resealed.returncode == 0, resealed.stderr
    assert "watched from the next start" in resealed.stdout, resealed.stdout
    sidecar.start()
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        watch = guard_stub(channel).WatchState(pb.WatchStateRequest(scopes=[FEED]), timeout=30)
        tripped = next(m for m in watch if m.state == pb.STATE_TRIPPED)
        watch.cancel()
        assert tripped.scope == FEED and "no data feed tick" in tripped.reason, tripped


def test_a_reset_after_restart_still_needs_fresh_evidence(sidecar: SidecarProcess) -> None:
    """A drawdown trip, then an operator's trigger over it: after the restart a reset is
    refused just as before, because the drawdown still holds."""
    equity = pb.ReportMetricRequest(scope=ACCOUNT, metric=pb.METRIC_EQUITY)
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        stub = guard_stub(channel)
        equity.value = EQUITY
        stub.ReportMetric(equity)
        equity.value = EQUITY * 0.7  # 30 % below the peak: total drawdown trips
        assert stub.ReportMetric(equity).state == pb.STATE_TRIPPED
        stub.Trigger(pb.TriggerRequest(scope=ACCOUNT, mode=pb.TRIGGER_MODE_HALT,
                                       reason="operator"))
        reset = pb.ResetRequest(scope=ACCOUNT, reason="try")
        with pytest.raises(grpc.RpcError) as before:
            stub.Reset(reset)
        assert before.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    sidecar = killed_and_restarted(sidecar)
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        stub = guard_stub(channel)
        with pytest.raises(grpc.RpcError) as after:
            stub.Reset(reset)
        assert after.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "drawdown" in after.value.details()


def test_an_unchecked_fill_whose_trip_was_never_stored_trips_its_account_at_restart(
        sidecar: SidecarProcess) -> None:
    """Review 38d: a fill of an order never allowed is journaled before its trip is
    stored; with the disk stalled (the journal's syncer stopped) the trip never reached
    the store, and after a SIGKILL the restart booked the fill and served the account
    ARMED: orders were allowed beside it until the fill was sent again. A timer run
    before the first call is served trips the account it is owed."""
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        stub = guard_stub(channel)
        stub.SyncPositions(pb.SyncPositionsRequest(account="acc-1", equity=EQUITY, positions=[
            pb.Position(strategy="momo", symbol="AAPL", quantity=0, mark_price=MARK)]))
        assert check(stub, 1).allowed
        stalled = sidecar.children()
        assert stalled, "no journal syncer to stall"
        for pid in stalled:
            os.kill(pid, signal.SIGSTOP)
        with pytest.raises(grpc.RpcError) as failed:  # the trip's write waits, then fails
            stub.ReportFill(pb.ReportFillRequest(
                account="acc-1", strategy="momo", symbol="AAPL", side=pb.SIDE_BUY,
                quantity=500, price=MARK, client_order_id="rogue", fill_id="rogue-1"),
                timeout=30)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value
    sidecar.kill(resume=stalled)
    sidecar.start()
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        stub = guard_stub(channel)
        denied = check(stub, 1)
        assert denied.reason == pb.DECISION_REASON_SCOPE_TRIPPED, denied
        assert denied.blocking_scope == ACCOUNT and "rogue" in denied.message, denied
        account = next(s for s in stub.GetState(pb.GetStateRequest()).scopes
                       if s.scope == ACCOUNT)
        assert [latch.name for latch in account.latches] == ["unchecked_order"], account
