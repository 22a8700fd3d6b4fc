"""Fail-closed rules against sidecars that misbehave: silent, hung, dying or malformed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from conftest import SLACK_S, Answer, ScriptedGuard, ScriptedServer, StartScripted

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc
from ess_client import Failure, GuardClient, Verdict
from ess_client import client as client_module
from ess_client.failures import FailurePolicy
from ess_client.stream import CheckStream

ORDER = dict(account="acc-1", strategy="momo", symbol="AAPL", side="BUY", quantity=10.0,
             price=100.0)
ALLOWED = pb.CheckOrderResponse(allowed=True, reason=pb.DECISION_REASON_ALLOWED)


def never(request: pb.CheckOrderStreamRequest) -> None:
    return None


@pytest.fixture
async def silent_tcp_server() -> AsyncIterator[str]:
    """Accepts connections and reads, but never says a word (not even HTTP/2 settings)."""
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()


@contextlib.asynccontextmanager
async def raw_stream_server(handler: Callable[..., AsyncIterator[bytes]]) -> AsyncIterator[str]:
    """A server whose CheckOrderStream is `handler(requests, context)`, yielding raw bytes
    (what no well-behaved sidecar sends); its target."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "ess.v1.GuardService", {"CheckOrderStream": grpc.stream_stream_rpc_method_handler(
            handler, request_deserializer=pb.CheckOrderStreamRequest.FromString)}),))
    target = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    try:
        yield target
    finally:
        await server.stop(None)


async def unary_check(servicer: pb_grpc.GuardServiceServicer, timeout_s: float) -> Verdict:
    """A fail-open check_unary of ORDER against a server of `servicer`."""
    server = grpc.aio.server()
    pb_grpc.add_GuardServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with GuardClient(f"127.0.0.1:{port}", check_timeout_s=timeout_s,
                               fail_open=True) as guard:
            return await guard.check_unary(**ORDER)
    finally:
        await server.stop(None)


async def timed_check(guard: GuardClient, **overrides: object) -> tuple[Verdict, float]:
    started = time.monotonic()
    verdict = await guard.check(**{**ORDER, **overrides})
    return verdict, time.monotonic() - started


async def test_a_sidecar_that_never_answers_is_denied_when_the_deadline_passes(
        silent_tcp_server: str) -> None:
    async with GuardClient(silent_tcp_server, check_timeout_s=0.05) as guard:
        verdict, elapsed = await timed_check(guard)
    assert (verdict.allowed, verdict.failure) == (False, Failure.DEADLINE)
    assert 0.05 <= elapsed < 0.05 + SLACK_S
    assert guard.failures == {Failure.DEADLINE: 1}


async def test_a_hung_stream_is_denied_by_the_deadline_and_then_replaced(
        scripted: StartScripted) -> None:
    server = await scripted(never)
    async with GuardClient(server.target, check_timeout_s=0.05, stall_after_s=0.0) as guard:
        first, elapsed = await timed_check(guard)
        second, _ = await timed_check(guard)
    assert (first.allowed, first.failure) == (False, Failure.DEADLINE)
    assert elapsed < 0.05 + SLACK_S
    assert (second.allowed, second.failure) == (False, Failure.DEADLINE)
    assert guard.streams_opened == 2


async def test_a_hung_stream_fails_open_soon_after_the_deadline_and_is_replaced(
        scripted: StartScripted) -> None:
    """Fail-open, a check past its deadline waits while answers are read (review 42i):
    with none coming, a few milliseconds; then it is allowed, and the stream replaced."""
    server = await scripted(never)
    async with GuardClient(server.target, check_timeout_s=0.05, stall_after_s=0.0,
                           fail_open=True) as guard:
        first, elapsed = await timed_check(guard)
        second, _ = await timed_check(guard)
    for verdict in (first, second):
        assert (verdict.allowed, verdict.failure) == (True, Failure.DEADLINE)
    assert elapsed < 0.05 + SLACK_S
    assert guard.streams_opened == 2


async def test_a_single_missed_deadline_does_not_replace_the_stream(
        scripted: StartScripted) -> None:
    server = await scripted(never)
    async with GuardClient(server.target, check_timeout_s=0.05, stall_after_s=60) as guard:
        await timed_check(guard)
        await timed_check(guard)
    assert guard.streams_opened == 1


async def test_checks_in_flight_when_the_stream_breaks_are_denied_at_once(
        scripted: StartScripted) -> None:
    server = await scripted(never, expect=10)
    async with GuardClient(server.target, check_timeout_s=30) as guard:
        started = time.monotonic()
        checks = [asyncio.create_task(guard.check(**ORDER)) for _ in range(10)]
        await asyncio.wait_for(server.guard.arrived.wait(), 10)
        await server.server.stop(None)
        verdicts = await asyncio.gather(*checks)
        elapsed = time.monotonic() - started
    assert all(not v.allowed and v.failure in {Failure.UNAVAILABLE, Failure.STREAM_BROKEN}
               for v in verdicts), verdicts
    assert elapsed < 10  # far below the 30 s deadline: the break, not the timer, answered
    assert sum(guard.failures.values()) == 10


MALFORMED_ANSWERS = {
    "missing decision": lambda r: pb.CheckOrderStreamResponse(request_id=r.request_id),
    "unknown reason": lambda r: pb.CheckOrderStreamResponse(
        request_id=r.request_id, decision=pb.CheckOrderResponse(allowed=False, reason=99)),
    "unspecified reason": lambda r: pb.CheckOrderStreamResponse(
        request_id=r.request_id, decision=pb.CheckOrderResponse(allowed=True)),
    "allowed contradicts reason": lambda r: pb.CheckOrderStreamResponse(
        request_id=r.request_id, decision=pb.CheckOrderResponse(
            allowed=True, reason=pb.DECISION_REASON_SCOPE_TRIPPED)),
    "mismatched request id": lambda r: pb.CheckOrderStreamResponse(
        request_id=r.request_id + 1000, decision=ALLOWED),
}


@pytest.mark.parametrize("answer", MALFORMED_ANSWERS.values(), ids=MALFORMED_ANSWERS.keys())
@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "open"])
async def test_a_malformed_answer_is_a_denial_even_when_fail_open(
        scripted: StartScripted, answer: Answer, fail_open: bool) -> None:
    server = await scripted(answer)
    async with GuardClient(server.target, check_timeout_s=5, fail_open=fail_open) as guard:
        verdict = await guard.check(**ORDER)
    assert (verdict.allowed, verdict.failure) == (False, Failure.MALFORMED), verdict
    assert guard.failures == {Failure.MALFORMED: 1}


async def test_a_mismatched_request_id_replaces_the_stream(scripted: StartScripted) -> None:
    server = await scripted(MALFORMED_ANSWERS["mismatched request id"])
    async with GuardClient(server.target, check_timeout_s=5) as guard:
        await guard.check(**ORDER)
        await guard.check(**ORDER)
    assert guard.streams_opened == 2


async def test_a_well_formed_answer_from_a_scripted_sidecar_is_obeyed(
        scripted: StartScripted) -> None:
    server = await scripted(lambda r: pb.CheckOrderStreamResponse(
        request_id=r.request_id, decision=ALLOWED))
    async with GuardClient(server.target, check_timeout_s=5) as guard:
        verdict = await guard.check(**ORDER)
    assert (verdict.allowed, verdict.failure) == (True, None)


async def test_an_answer_read_after_the_deadline_is_not_taken(
        scripted: StartScripted, monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer beats the deadline's timer (here: the timer never fires) but comes after
    the deadline: denied, as if the timer had won."""
    monkeypatch.setattr(CheckStream, "_expire", lambda self, request_id, timeout: None)

    def late(request: pb.CheckOrderStreamRequest) -> pb.CheckOrderStreamResponse:
        time.sleep(0.1)  # blocks the loop, the client's with it, past the 50 ms deadline
        return pb.CheckOrderStreamResponse(request_id=request.request_id, decision=ALLOWED)

    server = await scripted(late)
    async with GuardClient(server.target, check_timeout_s=0.05) as guard:
        assert await guard.connect(timeout_s=5)
        verdict = await guard.check(**ORDER)
    assert (verdict.allowed, verdict.failure) == (False, Failure.DEADLINE), verdict


DENIED = pb.CheckOrderResponse(allowed=False, reason=pb.DECISION_REASON_SCOPE_TRIPPED)


@pytest.mark.parametrize("unary", [False, True], ids=["stream", "unary"])
@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "open"])
@pytest.mark.parametrize("decision", [ALLOWED, DENIED], ids=["allowed", "denied"])
async def test_a_late_allow_is_a_deadline_failure_and_a_late_denial_stands(
        scripted: StartScripted, monkeypatch: pytest.MonkeyPatch, unary: bool,
        fail_open: bool, decision: pb.CheckOrderResponse) -> None:
    """Review 40a: an answer read after the deadline was a DEADLINE failure, whatever it
    said, so a fail-open client allowed a denial the sidecar had sent. A second passes
    on the client's clock while the sidecar answers (the deadline's timer never fires)."""
    monkeypatch.setattr(CheckStream, "_expire", lambda self, request_id, timeout: None)
    loop, passed = asyncio.get_running_loop(), [0.0]
    monkeypatch.setattr(loop, "time", (lambda clock: lambda: clock() + passed[0])(loop.time))

    def slow(request: pb.CheckOrderStreamRequest) -> pb.CheckOrderStreamResponse:
        passed[0] += 1.0
        return pb.CheckOrderStreamResponse(request_id=request.request_id, decision=decision)

    server = await scripted(slow)
    async with GuardClient(server.target, check_timeout_s=0.5, fail_open=fail_open) as guard:
        verdict = await (guard.check_unary if unary else guard.check)(**ORDER)
    if decision.allowed:  # the sidecar allowed it: fail-open may take it, fail-closed not
        assert (verdict.allowed, verdict.failure) == (fail_open, Failure.DEADLINE), verdict
    else:
        assert (verdict.allowed, verdict.failure, verdict.reason_name) == (
            False, None, "SCOPE_TRIPPED"), verdict


async def test_a_fail_open_unary_check_hears_a_denial_a_little_late(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 43i: a slow sidecar's denial came just after a unary check's deadline, which
    cancelled the call: fail-open took the silence for a sidecar not heard, and traded.
    Fail-open, the call waits the stream's settling time more (made 0.5 s here)."""
    monkeypatch.setattr(client_module, "SETTLE_STEP_S", 0.1)

    class Slow(pb_grpc.GuardServiceServicer):
        async def CheckOrder(self, request, context):  # noqa: ANN001, ANN201, N802
            await asyncio.sleep(0.15)  # the sidecar is slow: past the client's 0.05 s
            return DENIED

    verdict = await unary_check(Slow(), 0.05)
    assert (verdict.allowed, verdict.failure, verdict.reason_name) == (
        False, None, "SCOPE_TRIPPED"), verdict


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "open"])
async def test_an_answer_that_cannot_be_decoded_ends_the_stream(fail_open: bool) -> None:
    """grpc.aio reads it as None (and logs it); the checks are denied and the stream is
    replaced, at once rather than at the deadline."""
    async def garbage(requests: AsyncIterator[pb.CheckOrderStreamRequest],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield b"\xff"  # a varint cut short: no message decodes from it

    async with raw_stream_server(garbage) as target, \
            GuardClient(target, check_timeout_s=5, fail_open=fail_open) as guard:
        first, elapsed = await timed_check(guard)
        second, _ = await timed_check(guard)
    for verdict in (first, second):
        assert (verdict.allowed, verdict.failure) == (False, Failure.MALFORMED), verdict
    assert elapsed < SLACK_S
    assert guard.streams_opened == 2


@pytest.mark.parametrize("overrides", [{"side": "SIDEWAYS"}, {"quantity": "ten"}],
                         ids=["unknown side", "quantity not a number"])
async def test_an_order_that_cannot_be_encoded_is_denied_not_raised(overrides: dict) -> None:
    async with GuardClient("127.0.0.1:1", check_timeout_s=5, fail_open=True) as guard:
        verdict = await guard.check(**{**ORDER, **overrides})
    assert (verdict.allowed, verdict.failure) == (False, Failure.CLIENT_ERROR)


@pytest.mark.parametrize("side", [7, -1, True, 2**40, 1.5], ids=repr)
async def test_a_side_that_is_no_side_is_denied_without_sending(
        scripted: StartScripted, side: object) -> None:
    # Review 35: a number that is no Side (7, -1) was sent for the sidecar to refuse.
    server = await scripted(lambda r: pb.CheckOrderStreamResponse(
        request_id=r.request_id, decision=ALLOWED))
    async with GuardClient(server.target, check_timeout_s=5) as guard:
        bad = await guard.check(**{**ORDER, "side": side})
        good = await guard.check(**{**ORDER, "side": pb.SIDE_SELL})
    assert (bad.allowed, bad.failure) == (False, Failure.CLIENT_ERROR), bad
    assert good.allowed, good
    assert [o.client_order_id for o in server.guard.orders] == [good.client_order_id]


# Infinity would wait for ever; the others would fail once the request was queued.
BAD_TIMEOUTS = [math.inf, math.nan, 0, -1.0, "0.5", True]


@pytest.mark.parametrize("timeout_s", BAD_TIMEOUTS, ids=repr)
async def test_a_bad_check_timeout_is_denied_without_sending(
        scripted: StartScripted, timeout_s: object) -> None:
    server = await scripted(lambda r: pb.CheckOrderStreamResponse(
        request_id=r.request_id, decision=ALLOWED))
    async with GuardClient(server.target, check_timeout_s=5) as guard:
        bad = await asyncio.wait_for(guard.check(**ORDER, timeout_s=timeout_s), 5)
        good = await guard.check(**ORDER)
    assert (bad.allowed, bad.failure) == (False, Failure.CLIENT_ERROR), bad
    assert good.allowed, good
    assert [o.client_order_id for o in server.guard.orders] == [good.client_order_id]


@pytest.mark.parametrize("timeout_s", [*BAD_TIMEOUTS, None], ids=repr)
async def test_a_bad_check_timeout_is_refused_at_construction(timeout_s: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        GuardClient("127.0.0.1:1", check_timeout_s=timeout_s)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout_s", [*BAD_TIMEOUTS, None, 1e10], ids=repr)
async def test_an_rpc_timeout_grpc_cannot_carry_is_refused_at_construction(
        timeout_s: object) -> None:
    """Review 17: rpc_timeout_s=inf (or 1e10) made every trigger fail DEADLINE_EXCEEDED
    unsent; it is refused where it is given."""
    with pytest.raises((TypeError, ValueError)):
        GuardClient("127.0.0.1:1", rpc_timeout_s=timeout_s)  # type: ignore[arg-type]


# Targets gRPC cannot use at all: its channel to them is failed from the start.
UNUSABLE_TARGETS = ["unix:/" + "x" * 200, "ipv4:300.1.1.1:5"]
UNUSABLE_PROGRAM = """
import asyncio, sys
from ess_client import GuardClient

async def main() -> None:
    try:
        client = GuardClient(sys.argv[1], check_timeout_s=0.2, fail_open=True)
    except ValueError as error:
        print("refused:", error)
        return
    async with client:
        await client.connect(timeout_s=0.2)
        print("checked:", await client.check(account="a", strategy="s", symbol="X",
                                             side="buy", quantity=1, price=1))

asyncio.run(main())
"""


@pytest.mark.parametrize("target", UNUSABLE_TARGETS, ids=["long-unix-path", "bad-ipv4"])
async def test_a_target_grpc_cannot_use_is_refused_at_construction(target: str) -> None:
    """Review 52c: its channel never connects, so every check failed as if the sidecar
    were down (each allowed, fail-open), and the process that had waited for it to connect
    never exited (gRPC's poller thread stuck at shutdown; ess-check hung, deaf to SIGINT).
    Run as a process of its own: the hang was at the interpreter's exit."""
    done = subprocess.run([sys.executable, "-c", UNUSABLE_PROGRAM, target],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done
    assert done.stdout.startswith("refused: target "), done
    with pytest.raises(ValueError, match="target"):
        GuardClient(target)


async def test_checks_after_close_are_denied(scripted: StartScripted) -> None:
    server = await scripted(lambda r: pb.CheckOrderStreamResponse(
        request_id=r.request_id, decision=ALLOWED))
    guard = GuardClient(server.target, check_timeout_s=5)
    assert (await guard.check(**ORDER)).allowed
    await guard.close()
    assert (await guard.check(**ORDER)).failure is Failure.CLIENT_ERROR


async def test_fail_open_is_announced_at_construction(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ess_client"):
        async with GuardClient("127.0.0.1:1", fail_open=False):
            assert "FAIL-OPEN" not in caplog.text
        async with GuardClient("127.0.0.1:1", fail_open=True):
            assert "FAIL-OPEN" in caplog.text


def test_failures_are_counted_by_cause_and_logged_at_a_limited_rate(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    policy = FailurePolicy(fail_open=False, log_interval_s=1.0, clock=lambda: now[0])
    denial = Verdict(allowed=True, failure=Failure.DEADLINE, message="late")
    with caplog.at_level(logging.WARNING, logger="ess_client"):
        results = [policy.apply(denial) for _ in range(3)]
        policy.apply(Verdict(allowed=False, failure=Failure.MALFORMED, message="garbage"))
        now[0] = 1.5
        policy.apply(denial)
    assert not any(v.allowed for v in results)  # closed even if the input said allowed
    assert policy.counts == {Failure.DEADLINE: 4, Failure.MALFORMED: 1}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "deadline" in messages[0] and "malformed" in messages[1]
    assert "2 more since the last log" in messages[2]


async def test_a_check_that_fails_names_the_client_order_id_it_was_sent_with(
        scripted: StartScripted, tmp_path: Path) -> None:
    server = await scripted(never)
    async with GuardClient(server.target, check_timeout_s=0.05) as guard:
        late = await guard.check(**ORDER)
        unencodable = await guard.check(**{**ORDER, "side": "SIDEWAYS"})
    assert (late.allowed, late.failure) == (False, Failure.DEADLINE)
    assert (unencodable.allowed, unencodable.failure) == (False, Failure.CLIENT_ERROR)
    assert late.client_order_id and unencodable.client_order_id
    assert late.client_order_id != unencodable.client_order_id
    assert [o.client_order_id for o in server.guard.orders] == [late.client_order_id]
    # Allowed by fail_open, the order must still be sent with an id its fills can carry.
    async with GuardClient(f"unix:{tmp_path / 'nobody.sock'}", check_timeout_s=5,
                           fail_open=True) as guard:
        blind = await guard.check(**ORDER)
    assert (blind.allowed, blind.failure) == (True, Failure.UNAVAILABLE)
    assert blind.client_order_id and blind.client_order_id != late.client_order_id


async def test_made_up_client_order_ids_share_one_prefix_per_client() -> None:
    async with GuardClient("127.0.0.1:1") as one, GuardClient("127.0.0.1:1") as two:
        ids = [one.new_client_order_id() for _ in range(3)]
        other = two.new_client_order_id()
    prefix = ids[0].rsplit("-", 1)[0]
    assert ids == [f"{prefix}-{n}" for n in (1, 2, 3)]
    assert len(prefix) == 12 and not other.startswith(f"{prefix}-")


@pytest.mark.parametrize("token, metadata", [
    ("s3cret\x85", ()), ("s3cr\u00e9t", ()), ("s3cret", (("X-Desk", "a"),)),
    ("s3cret", (("desk", "a\nb"),)), ("s3cret", (("desk", b"a\x00"),)),
    ("s3cret", (("x-baggage", "a" * 70_000),))],
    ids=["stray-byte", "non-ascii", "upper-key", "newline", "bytes", "too-much"])
def test_metadata_grpc_would_refuse_is_refused_at_construction_even_fail_open(
        token: str, metadata: tuple[tuple[str, str], ...]) -> None:
    """Review 36u: gRPC refuses such a header locally with INTERNAL, counted as a broken
    stream, so a fail-open client allowed every order, GLOBAL tripped or not. Review 43i:
    the sidecar refuses more than 64 KiB of it, late enough to read as no answer."""
    with pytest.raises(ValueError, match="metadata"):
        GuardClient("127.0.0.1:1", token=token, metadata=metadata, fail_open=True)


async def test_a_token_read_from_a_file_loses_its_newline_only() -> None:
    client = GuardClient("127.0.0.1:1", token=" s3cret\n", fail_open=True,
                         metadata=(("desk", b"a"),))  # bytes gRPC sends (review 36v)
    try:
        assert dict(client._metadata)["authorization"] == "Bearer s3cret"  # noqa: SLF001
    finally:
        await client.close()


async def test_a_unary_check_that_is_not_answered_in_time_is_denied(
        silent_tcp_server: str) -> None:
    async with GuardClient(silent_tcp_server, check_timeout_s=0.05) as guard:
        started = time.monotonic()
        verdict = await guard.check_unary(**ORDER)
        elapsed = time.monotonic() - started
    assert (verdict.allowed, verdict.failure) == (False, Failure.DEADLINE)
    assert 0.05 <= elapsed < 0.05 + SLACK_S


async def test_a_unary_check_of_an_unreachable_sidecar_is_denied() -> None:
    async with GuardClient("unix:/nonexistent/ess.sock", check_timeout_s=0.5) as guard:
        verdict = await guard.check_unary(**ORDER)
    assert not verdict.allowed and verdict.failure in (Failure.UNAVAILABLE, Failure.DEADLINE)


@pytest.mark.parametrize(("code", "metadata", "failure"), [
    (grpc.StatusCode.UNAVAILABLE, (("ess-failed-closed", "1"),), Failure.REFUSED),
    (grpc.StatusCode.INTERNAL, (), Failure.REFUSED),
    (grpc.StatusCode.UNKNOWN, (), Failure.REFUSED),
    (grpc.StatusCode.UNAVAILABLE, (), Failure.UNAVAILABLE)])
async def test_a_unary_check_the_sidecar_failed_closed_on_is_denied_even_fail_open(
        code: grpc.StatusCode, metadata: tuple, failure: Failure) -> None:
    """Review 37k: a sidecar whose journal record failed answers a unary check UNAVAILABLE
    (GLOBAL tripped); a fail-open client took it for an unreachable sidecar and traded.
    The sidecar says it failed closed (trailing metadata), and an INTERNAL or UNKNOWN
    answer came from it too: neither is flipped. Only a bare UNAVAILABLE is."""
    class FailingClosed(pb_grpc.GuardServiceServicer):
        async def CheckOrder(self, request, context):  # noqa: ANN001, ANN201, N802
            context.set_trailing_metadata(metadata)
            await context.abort(code, "journal cannot be written")

    verdict = await unary_check(FailingClosed(), 2.0)
    assert verdict.failure is failure
    assert verdict.allowed is (failure is Failure.UNAVAILABLE)  # fail_open flips only it


async def test_a_closed_client_lets_its_connection_go(scripted: StartScripted) -> None:
    """Review 44h: a closed client's stream call held its connection open (each client
    has its own since 44f) for as long as the client object lived."""
    def sockets() -> int:
        return sum(os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
                   for fd in os.listdir("/proc/self/fd") if fd.isdigit()
                   and os.path.exists(f"/proc/self/fd/{fd}"))

    server = await scripted(lambda request: None)
    before, kept = sockets(), []
    for _ in range(20):
        guard = GuardClient(server.target, check_timeout_s=0.05)
        await guard.check(account="acc-1", strategy="momo", symbol="AAPL", side="BUY",
                          quantity=1, price=100)  # opens its stream on its connection
        await guard.close()
        kept.append(guard)  # still referenced, as an application's may be
    async with asyncio.timeout(10):
        while sockets() >= before + 20:  # each held one (two: server side, in process)
            await asyncio.sleep(0.01)
    assert sockets() < before + 20
    async with grpc.aio.insecure_channel(server.target) as channel:  # the application's
        guard = GuardClient(server.target, channel=channel)
        await guard.close()
        assert not await guard.connect()  # review 44i: it opened a stream nothing closed
        assert guard._stream is None  # noqa: SLF001


@pytest.mark.parametrize("fail_open", [False, True])
async def test_a_unary_check_in_flight_when_the_client_closes_is_denied_not_raised(
        scripted: StartScripted, fail_open: bool) -> None:
    """Review 44i: closing the client cancels the call, and grpc.aio raised CancelledError
    out of check_unary, which never raises: it is a denial (CLIENT_ERROR)."""
    server = await scripted(lambda request: None)  # never answers
    guard = GuardClient(server.target, check_timeout_s=10.0, fail_open=fail_open)

    async def in_flight() -> asyncio.Future[Verdict]:
        checking = asyncio.ensure_future(guard.check_unary(
            account="acc-1", strategy="momo", symbol="AAPL", side="BUY", quantity=1,
            price=100))
        received = server.guard.received
        async with asyncio.timeout(10):
            while server.guard.received == received:  # the call is in flight
                await asyncio.sleep(0.001)
        return checking

    cancelled = await in_flight()  # the caller's own cancellation still cancels it
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    checking = await in_flight()
    await guard.close()
    verdict = await checking
    assert not checking.cancelled()
    assert (verdict.allowed, verdict.failure) == (False, Failure.CLIENT_ERROR)


def test_a_verdict_is_true_only_when_allowed() -> None:
    """Review 53b: every Verdict was true, so `if await client.check(...):` sent denied
    orders."""
    assert Verdict(allowed=True) and not Verdict(allowed=False, reason=DENIED.reason)
    assert not client_module.failed(Failure.DEADLINE, "late")


@pytest.mark.parametrize("unary", [False, True])
async def test_a_check_from_another_event_loop_is_denied_unsent(scripted: StartScripted,
                                                                unary: bool) -> None:
    """Review 53b: from a thread running a loop of its own, the stream sent the order, then
    failed to await its answer: the caller was denied, and the sidecar counted a working
    order nobody would end. Now nothing is sent: only this loop's two checks arrive."""
    server = await scripted(lambda r: pb.CheckOrderStreamResponse(
        request_id=r.request_id, decision=ALLOWED))
    async with GuardClient(server.target, check_timeout_s=5) as guard:
        check = guard.check_unary if unary else guard.check
        assert (await check(**ORDER)).allowed
        elsewhere = await asyncio.to_thread(asyncio.run, check(**ORDER))
        assert (elsewhere.allowed, elsewhere.failure) == (False, Failure.CLIENT_ERROR)
        assert "event loop" in elsewhere.message
        assert (await check(**ORDER)).allowed
        assert server.guard.received == 2
        with pytest.raises(RuntimeError, match="event loop"):
            await asyncio.to_thread(asyncio.run, guard.get_state())


FORK_PROGRAM = """
import asyncio, gc, os, sys
from ess_client import GuardClient

ORDER = dict(account="acc-1", strategy="momo", symbol="AAPL", side="BUY", quantity=1,
             price=100)

async def main() -> None:
    guard = GuardClient(sys.argv[1], check_timeout_s=2, fail_open=True)
    assert (await guard.check(**ORDER)).allowed  # the stream is open
    read, write = os.pipe()
    gc.freeze()  # else the child may free the parent's gRPC objects, which crashes it
    child = os.fork()
    if child == 0:
        verdict = await guard.check(**ORDER)
        await guard.close()
        try:
            GuardClient(sys.argv[1])
            made = "made"
        except RuntimeError as error:
            made = f"refused: {error}"
        os.write(write, f"{verdict.allowed} {verdict.failure} {verdict.message}\\n"
                        f"{made}".encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    told = os.read(read, 4096).decode()
    # gRPC does not survive a fork: now and then the child crashes on its own (SIGSEGV in
    # a write to stderr), whatever it does; the parent must go on all the same.
    checked, made = told.split("\\n") if "\\n" in told else (f"died {status}", "")
    print("child:", checked)
    print("child made:", made)
    verdict = await guard.check(**ORDER)
    print("parent:", verdict.allowed, verdict.failure, guard.streams_opened)
    await guard.close()

asyncio.run(main())
"""


async def test_a_client_made_before_a_fork_denies_in_the_child_unsent() -> None:
    """Review 53b: a child checking through its parent's client took the parent's answers
    (the parent's checks waited out their deadlines, and a fail-open parent allowed
    orders the sidecar denied), and made the parent's client_order_ids. In the child, a
    check is denied unsent (CLIENT_ERROR, which fail-open never flips) and close() leaves
    the parent's stream alone: the parent's next check goes through that stream. Review
    53c: a new client made in the child stalled the parent's checks just the same (gRPC
    does not survive a fork), so none is made there."""
    server = ScriptedServer(ScriptedGuard(lambda r: pb.CheckOrderStreamResponse(
        request_id=r.request_id, decision=ALLOWED)))
    await server.server.start()
    try:
        program = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FORK_PROGRAM, server.target,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        async with asyncio.timeout(60):
            out, err = await program.communicate()
        assert program.returncode == 0, err.decode()
        lines = dict(line.split(": ", 1) for line in out.decode().splitlines())
        if not lines["child"].startswith("died "):
            assert lines["child"].startswith("False Failure.CLIENT_ERROR this client was"
                                             " made before the process forked"), lines
            assert lines["child made"].startswith("refused: this process was forked"), lines
        assert lines["parent"] == "True None 1", lines
        assert server.guard.received == 2  # the child's check was never sent
    finally:
        await server.server.stop(None)
