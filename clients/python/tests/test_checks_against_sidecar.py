"""GuardClient against a real sidecar subprocess: decisions, concurrency, kill and restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from conftest import RELAXED_TIMEOUT_S, SLACK_S, SidecarProcess

from ess.v1 import guard_pb2 as pb
from ess_client import Failure, GuardClient

ORDER = dict(account="acc-1", strategy="momo", symbol="AAPL", side="BUY", quantity=10.0,
             price=100.0)
CONNECTIVITY = {Failure.UNAVAILABLE, Failure.STREAM_BROKEN, Failure.DEADLINE}


def as_proto(order: dict, client_order_id: str) -> pb.CheckOrderRequest:
    return pb.CheckOrderRequest(**{**order, "side": pb.SIDE_BUY},
                                client_order_id=client_order_id)


async def test_allowed_verdict_matches_the_sidecars_decision(
        client: GuardClient, sidecar: SidecarProcess) -> None:
    verdict = await client.check(**ORDER)
    expected = sidecar.unary_check(as_proto(ORDER, client.new_client_order_id()))
    assert expected.allowed and expected.reason == pb.DECISION_REASON_ALLOWED
    assert (verdict.allowed, verdict.reason, verdict.failure) == (True, expected.reason, None)
    assert verdict.reason_name == "ALLOWED" and verdict.decision_id
    assert not client.failures


async def test_denied_verdict_carries_the_sidecars_reason_and_blocking_scope(
        client: GuardClient, sidecar: SidecarProcess) -> None:
    trip = await client.trigger("STRATEGY:momo", reason="drill", directives=["CANCEL_OPEN_ORDERS"])
    assert trip.state == pb.STATE_TRIPPED
    verdict = await client.check(**ORDER)
    expected = sidecar.unary_check(as_proto(ORDER, client.new_client_order_id()))
    assert not expected.allowed
    assert (verdict.allowed, verdict.reason, verdict.failure) == (False, expected.reason, None)
    assert verdict.reason == pb.DECISION_REASON_SCOPE_TRIPPED
    assert verdict.blocking_scope == "STRATEGY:momo"
    assert verdict.state_version == trip.state_version
    assert not client.failures  # a denial by the sidecar is a decision, not a failure


async def test_a_reported_breach_denies_the_next_check(client: GuardClient) -> None:
    report = await client.report_metric("STRATEGY:momo", "DAILY_DRAWDOWN_PCT", 6.0)
    assert report.tripped
    assert (await client.check(**ORDER)).reason == pb.DECISION_REASON_SCOPE_TRIPPED
    state = await client.get_state()
    assert [(s.scope.id, s.state) for s in state.scopes] == [("momo", pb.STATE_TRIPPED)]


async def test_position_and_heartbeat_wrappers_return_the_sidecars_answers(
        client: GuardClient) -> None:
    sell = await client.check(**{**ORDER, "side": "SELL", "quantity": 3.0})
    assert sell.allowed
    fill = await client.report_fill(account="acc-1", strategy="momo", symbol="AAPL",
                                    side="SELL", quantity=3.0, price=100.0,
                                    client_order_id=sell.client_order_id, fill_id="x-1")
    assert (fill.position, fill.duplicate, fill.unchecked) == (-3.0, False, False)
    assert fill.account_state == pb.STATE_ARMED
    synced = await client.sync_positions("acc-1", 1e6, [
        pb.Position(strategy="momo", symbol="AAPL", quantity=5, mark_price=101)])
    assert synced.positions == 1
    beat = await client.heartbeat("exec-1", "STRATEGY:momo", ttl_ms=60_000)
    assert beat.state == pb.STATE_ARMED
    await client.heartbeat("exec-1", "STRATEGY:momo", ttl_ms=60_000, deregister=True)


async def test_the_heartbeat_helper_beats_on_past_a_failing_callback_and_deregisters(
        client: GuardClient) -> None:
    """README: every client has a heartbeat helper (review 40a: Python had none; the
    TypeScript one stopped for good when its callback raised)."""
    states: list[int] = []
    enough = asyncio.Event()

    def on_response(response: pb.HeartbeatResponse) -> None:
        states.append(response.state)
        if len(states) == 8:
            enough.set()
        if len(states) == 2:
            raise RuntimeError("a bug in the executor's callback")

    beat = client.start_heartbeat("exec-hb", "STRATEGY:hb", ttl_ms=5_000, interval_s=0.02,
                                  on_response=on_response)
    await asyncio.wait_for(enough.wait(), 10)  # 8 beats 20 ms apart
    assert beat.running and beat.sent >= 8 and beat.failures == 0
    assert set(states) == {pb.STATE_ARMED}
    assert (await beat.stop()).state == pb.STATE_ARMED
    assert not beat.running
    for ttl_ms, interval_s in ((300, 0.3), (0, None), (True, None), (300, 0.0)):
        with pytest.raises((TypeError, ValueError)):  # the scope would trip, or no TTL
            client.start_heartbeat("exec-hb", "STRATEGY:hb", ttl_ms, interval_s)
    with pytest.raises(ValueError):  # review 40e: beat on, never registered
        client.start_heartbeat("exec-hb", "STRATGY:hb", 5_000)


async def test_a_heartbeat_the_sidecar_refuses_stops_and_says_why(client: GuardClient) -> None:
    """Review 40e: a scope the sidecar does not take ("strategy: momo") was sent again
    every interval, never registered: if the executor died, nothing tripped."""
    errors: list[Exception] = []
    beat = client.start_heartbeat("exec-hb", "STRATEGY: hb", 5_000, interval_s=0.02,
                                  on_error=errors.append)
    await asyncio.wait_for(beat.stopped(), 10)
    assert not beat.running and beat.sent == 0 and beat.failures == 1
    assert "scope.id" in str(beat.refused) and errors == [beat.refused]


async def test_with_alive_a_beat_is_sent_only_while_it_returns_true(
        client: GuardClient, caplog: pytest.LogCaptureFixture) -> None:
    """Review 54b: the helper beat on a timer, so a trading loop that died or hung in a
    process that lived on never tripped its scope."""
    up, asked_down = [True], [0]
    withheld, answered = asyncio.Event(), asyncio.Event()

    def alive() -> bool:
        if up[0]:
            return True
        asked_down[0] += 1
        if asked_down[0] == 6:
            withheld.set()
        if asked_down[0] > 3:  # a predicate that raises is not alive either
            raise RuntimeError("the loop's state is unreadable")
        return False

    beat = client.start_heartbeat("exec-alive", "STRATEGY:alive", ttl_ms=5_000,
                                  interval_s=0.02, alive=alive,
                                  on_response=lambda _: answered.set())
    await asyncio.wait_for(answered.wait(), 10)
    up[0] = False
    sent = beat.sent  # a beat already past its check may still be answered: + 1
    await asyncio.wait_for(withheld.wait(), 10)
    assert beat.sent <= sent + 1 and beat.skipped == 6 and beat.running
    said = [r.getMessage() for r in caplog.records if "alive()" in r.getMessage()]
    assert len(said) == 1 and "beats withheld" in said[0]  # said once, when it went
    answered.clear()
    up[0] = True
    await asyncio.wait_for(answered.wait(), 10)  # beats resume
    said = [r.getMessage() for r in caplog.records if "alive()" in r.getMessage()]
    assert len(said) == 2 and "beats resume" in said[1]
    await beat.stop()


async def test_alive_not_true_at_start_is_refused_and_nothing_starts(
        client: GuardClient) -> None:
    def broken() -> bool:
        raise RuntimeError("no loop yet")

    for alive in (lambda: False, broken, lambda: 1):
        with pytest.raises(RuntimeError, match="alive"):
            client.start_heartbeat("exec-alive", "STRATEGY:alive", 5_000, alive=alive)
    beat = client.start_heartbeat("exec-alive", "STRATEGY:alive", 5_000, alive=lambda: True)
    assert (await beat.stop()).state == pb.STATE_ARMED


async def test_alive_at_start_registers_the_executor_even_if_the_loop_dies_at_once(
        client: GuardClient, caplog: pytest.LogCaptureFixture) -> None:
    """Review 54e: alive() true at start and false before the heartbeat's task first ran
    withheld the first beat too: the executor was never registered, its scope never to
    trip, and nothing said so. The first beat goes as asked at start."""
    up = [True]
    answered = asyncio.Event()
    beat = client.start_heartbeat("exec-dies", "STRATEGY:dies", ttl_ms=5_000,
                                  interval_s=0.02, alive=lambda: up[0],
                                  on_response=lambda _: answered.set())
    up[0] = False  # the trading loop died before the heartbeat's first turn
    await asyncio.wait_for(answered.wait(), 10)
    assert beat.sent == 1
    await beat.stop()
    caplog.clear()
    with pytest.raises(RuntimeError, match="alive"):  # refused at start: nothing is said
        client.start_heartbeat("exec-dies", "STRATEGY:dies", 5_000, alive=lambda: False)
    assert not [r for r in caplog.records if "beats withheld" in r.getMessage()]


async def test_close_stops_the_heartbeats_without_deregistering(
        sidecar: SidecarProcess) -> None:
    """Review 54b: after close() the helper beat on through the closed channel, `running`
    true and a failure logged every interval. Stopped as TypeScript's and Java's are: the
    executor is gone, so its scope trips at the TTL; stop() then only stops."""
    client = GuardClient(sidecar.uds_target)
    answered = asyncio.Event()
    beat = client.start_heartbeat("exec-closed", "STRATEGY:closed", ttl_ms=5_000,
                                  interval_s=0.02, on_response=lambda _: answered.set())
    await asyncio.wait_for(answered.wait(), 10)
    await client.close()
    await asyncio.wait_for(beat.stopped(), 10)
    assert not beat.running and beat.failures == 0
    assert await beat.stop() is None
    with pytest.raises(RuntimeError, match="closed"):
        client.start_heartbeat("exec-closed", "STRATEGY:closed", ttl_ms=5_000)


async def test_hundred_concurrent_checks_share_one_stream_and_each_gets_its_own_answer(
        client: GuardClient) -> None:
    await client.trigger("STRATEGY:momo", reason="half of the orders must be denied")
    strategies = ["momo" if n % 2 else "carry" for n in range(100)]
    quantities = [-1.0 if n % 10 == 7 else 1.0 + n for n in range(100)]
    verdicts = await asyncio.gather(*(
        client.check(**{**ORDER, "strategy": s, "quantity": q})
        for s, q in zip(strategies, quantities)))
    for strategy, quantity, verdict in zip(strategies, quantities, verdicts):
        if quantity < 0:
            assert verdict.failure is Failure.REQUEST_ERROR
        elif strategy == "momo":
            assert verdict.reason == pb.DECISION_REASON_SCOPE_TRIPPED and not verdict.allowed
        else:
            assert verdict.allowed and verdict.failure is None
    decided = [v.decision_id for v in verdicts if v.failure is None]
    assert len(set(decided)) == len(decided) == 90
    assert client.streams_opened == 1
    assert client.failures == {Failure.REQUEST_ERROR: 10}


async def test_bad_quantity_is_a_denial_that_names_the_field(client: GuardClient) -> None:
    verdict = await client.check(**{**ORDER, "quantity": -5.0})
    assert (verdict.allowed, verdict.failure, verdict.field) == (
        False, Failure.REQUEST_ERROR, "order.quantity")
    assert client.failures[Failure.REQUEST_ERROR] == 1
    assert (await client.check(**ORDER)).allowed  # the stream survives a bad request
    assert client.streams_opened == 1


async def test_killed_sidecar_turns_checks_into_denials_within_the_deadline(
        client: GuardClient, sidecar: SidecarProcess) -> None:
    assert (await client.check(**ORDER)).allowed
    sidecar.kill()
    deadline_s = 0.2
    for _ in range(5):
        started = time.monotonic()
        verdict = await client.check(**ORDER, timeout_s=deadline_s)
        elapsed = time.monotonic() - started
        assert not verdict.allowed and verdict.failure in CONNECTIVITY, verdict
        assert elapsed < deadline_s + SLACK_S
    assert sum(client.failures.values()) == 5


async def test_stream_reconnects_by_itself_after_the_sidecar_restarts(
        client: GuardClient, sidecar: SidecarProcess) -> None:
    assert (await client.check(**ORDER)).allowed
    sidecar.kill()
    assert not (await client.check(**ORDER, timeout_s=0.2)).allowed
    await asyncio.to_thread(sidecar.start)
    assert await client.connect(timeout_s=10)
    assert (await client.check(**ORDER)).allowed
    assert client.streams_opened >= 2


async def test_fail_open_allows_only_while_the_sidecar_is_unreachable(
        sidecar: SidecarProcess) -> None:
    async with GuardClient(sidecar.uds_target, fail_open=True,
                           check_timeout_s=RELAXED_TIMEOUT_S) as guard:
        assert await guard.connect(timeout_s=10)
        bad = await guard.check(**{**ORDER, "quantity": -5.0})
        assert not bad.allowed and bad.failure is Failure.REQUEST_ERROR
        sidecar.kill()
        verdict = await guard.check(**ORDER)
        assert verdict.allowed and verdict.failure in CONNECTIVITY, verdict
        assert guard.failed_open == 1


async def test_unreachable_sidecar_is_denied_as_unavailable_by_default(tmp_path: Path) -> None:
    async with GuardClient(f"unix:{tmp_path / 'nobody.sock'}",
                           check_timeout_s=RELAXED_TIMEOUT_S) as guard:
        verdict = await guard.check(**ORDER)
    assert (verdict.allowed, verdict.failure) == (False, Failure.UNAVAILABLE)
    assert guard.failures == {Failure.UNAVAILABLE: 1} and guard.failed_open == 0


async def test_the_unary_check_gives_the_streams_verdicts(client: GuardClient) -> None:
    """Review 37j: the README promised a unary check in every client; Python had none."""
    allowed = await client.check_unary(**ORDER)
    assert (allowed.allowed, allowed.reason, allowed.failure) == (
        True, pb.DECISION_REASON_ALLOWED, None)
    assert allowed.client_order_id and allowed.decision_id
    again = await client.check_unary(**ORDER, client_order_id=allowed.client_order_id)
    assert (again.allowed, again.reason) == (False, pb.DECISION_REASON_DUPLICATE_ORDER)
    bad = await client.check_unary(**{**ORDER, "quantity": -1.0})
    assert (bad.allowed, bad.failure, bad.field) == (False, Failure.REQUEST_ERROR, "quantity")
    await client.trigger("STRATEGY:momo", reason="drill")
    tripped = await client.check_unary(**ORDER)
    assert (tripped.reason, tripped.blocking_scope) == (pb.DECISION_REASON_SCOPE_TRIPPED,
                                                        "STRATEGY:momo")


@pytest.mark.parametrize("in_flight", [1, 10, 100])
async def test_denials_received_while_the_loop_was_busy_past_the_deadline_stand(
        sidecar: SidecarProcess, in_flight: int) -> None:
    """Review 42e: the executor's loop busy past a check's deadline (a blocking call, a
    GC pause) while the sidecar's denial came: the deadline's timer ran before the reader
    read it, and fail_open allowed every such check while GLOBAL was tripped. Review 42h:
    a loop turn later was not enough with several in flight (one answer read a turn);
    review 42i: nor 5 ms, with 100 (the wait lasts while answers are read)."""
    async with GuardClient(sidecar.uds_target, check_timeout_s=0.01, fail_open=True) as guard:
        assert await guard.connect(timeout_s=10)
        await guard.trigger("GLOBAL", reason="halt")
        for _ in range(3):
            checks = [asyncio.ensure_future(guard.check(**ORDER)) for _ in range(in_flight)]
            for _ in range(4 + in_flight):  # the requests go out
                await asyncio.sleep(0)
            # Each write waits for the one before, a loop turn or more: on a loaded CI
            # machine 104 turns were not enough for 100, and a request still queued when the
            # loop blocks rightly fails open at its deadline (stop 60). So, with a deadline,
            # until the stream has taken every request; gRPC's own threads send the last.
            outbox, until = guard._stream._outbox, time.monotonic() + 10  # noqa: SLF001
            while not outbox.empty():
                assert time.monotonic() < until, f"{outbox.qsize()} requests never went out"
                await asyncio.sleep(0.001)
            time.sleep(0.5)  # the executor's loop, busy: the denials come meanwhile
            for verdict in await asyncio.gather(*checks):
                assert (verdict.allowed, verdict.reason_name) == (False, "SCOPE_TRIPPED"), \
                    verdict
        assert guard.failed_open == 0
