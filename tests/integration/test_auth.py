"""Authentication and roles over a real socket: every role against every RPC, wrong or
missing credentials, and the principal recorded as the actor."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ess.v1 import guard_pb2 as pb
from ess_sidecar.adapters.auth.tokens import load_principals, new_token, tokens_file_line
from ess_sidecar.adapters.grpc.auth import Authenticator
from ess_sidecar.domain.access import Role
from ess_sidecar.domain.errors import InvalidConfig, Unauthenticated
from tests.integration.conftest import Running, order, strategy_scope
from tests.integration.test_metrics import scrape

ROLES = ("executor", "operator", "reconciler", "watcher")

# Executors check, report, heartbeat, read state, watch and trigger; operators also reset,
# clear working orders and read the audit trail; a reconciler (a drop-copy feed) reports
# fills and order updates, nothing else; a watcher (a dashboard) reads and watches the
# state, nothing else.
EVERYONE, OPERATORS = {"executor", "operator"}, {"operator"}
EXECUTION = {"executor", "operator", "reconciler"}
READERS = {"executor", "operator", "watcher"}
MAY_CALL = {
    "CheckOrder": EVERYONE, "CheckOrderStream": EVERYONE, "ReportMetric": EVERYONE,
    "ReportFill": EXECUTION, "ReportOrderUpdate": EXECUTION, "SyncPositions": EVERYONE,
    "Heartbeat": EVERYONE, "Trigger": EVERYONE, "GetState": READERS, "WatchState": READERS,
    "Reset": OPERATORS, "ListEvents": OPERATORS, "ClearWorkingOrders": OPERATORS,
}


async def _check_stream(stub: Any, metadata: Any) -> Any:
    call = stub.CheckOrderStream(metadata=metadata)
    await call.write(pb.CheckOrderStreamRequest(request_id=1, order=order()))
    reply = await call.read()
    call.cancel()
    return reply


async def _watch(stub: Any, metadata: Any) -> Any:
    call = stub.WatchState(pb.WatchStateRequest(), metadata=metadata)
    reply = await call.read()
    call.cancel()
    return reply


CALLS: dict[str, Callable[[Any, Any], Awaitable[Any]]] = {
    "CheckOrder": lambda stub, md: stub.CheckOrder(order(), metadata=md),
    "CheckOrderStream": _check_stream,
    "ReportMetric": lambda stub, md: stub.ReportMetric(pb.ReportMetricRequest(
        scope=strategy_scope(), metric=pb.METRIC_DAILY_DRAWDOWN_PCT, value=1), metadata=md),
    "ReportFill": lambda stub, md: stub.ReportFill(pb.ReportFillRequest(
        account="acc-1", strategy="momo", symbol="AAPL", side=pb.SIDE_BUY, quantity=1,
        price=100, client_order_id="o-1", fill_id="f-1"), metadata=md),
    "ReportOrderUpdate": lambda stub, md: stub.ReportOrderUpdate(pb.ReportOrderUpdateRequest(
        account="acc-1", client_order_id="o-1", status=pb.ORDER_STATUS_CANCELLED),
        metadata=md),
    "ClearWorkingOrders": lambda stub, md: stub.ClearWorkingOrders(
        pb.ClearWorkingOrdersRequest(account="acc-1", reason="test"), metadata=md),
    "SyncPositions": lambda stub, md: stub.SyncPositions(pb.SyncPositionsRequest(
        account="acc-1", equity=1e6), metadata=md),
    "Heartbeat": lambda stub, md: stub.Heartbeat(pb.HeartbeatRequest(
        executor_id="exec-1", scope=strategy_scope(), ttl_ms=60_000), metadata=md),
    "Trigger": lambda stub, md: stub.Trigger(pb.TriggerRequest(
        scope=strategy_scope("other"), reason="test"), metadata=md),
    "GetState": lambda stub, md: stub.GetState(pb.GetStateRequest(), metadata=md),
    "WatchState": _watch,
    "Reset": lambda stub, md: stub.Reset(pb.ResetRequest(
        scope=strategy_scope("armed"), reason="test"), metadata=md),
    "ListEvents": lambda stub, md: stub.ListEvents(pb.ListEventsRequest(), metadata=md),
}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    """One token per role (named after it), plus a second operator, in a tokens file."""
    tokens = {name: new_token() for name in (*ROLES, "operator2")}
    lines = [tokens_file_line(name, Role(name.rstrip("2")), token)
             for name, token in tokens.items()]
    (tmp_path / "tokens.toml").write_text("[tokens]\n" + "\n".join(lines) + "\n")
    return tokens


@pytest.fixture
async def secured(start_sidecar: Any, tmp_path: Path, tokens: dict[str, str]) -> Running:
    return await start_sidecar(sync=False, auth={"tokens_file": str(tmp_path / "tokens.toml")})


def test_every_rpc_has_a_call_and_a_role_here() -> None:
    methods = set(pb.DESCRIPTOR.services_by_name["GuardService"].methods_by_name)
    assert set(CALLS) == methods == set(MAY_CALL)


@pytest.mark.parametrize("method", sorted(CALLS))
@pytest.mark.parametrize("role", ROLES)
async def test_each_role_against_each_rpc(secured: Running, tokens: dict[str, str],
                                          role: str, method: str) -> None:
    allowed = role in MAY_CALL[method]
    before = secured.app.guard.engine.version
    try:
        await CALLS[method](secured.stub, bearer(tokens[role]))
    except grpc.aio.AioRpcError as error:
        assert not allowed, f"{role} refused {method}: {error.code()} {error.details()}"
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert f"{role} ({role})" in error.details()
        assert secured.app.guard.engine.version == before
    else:
        assert allowed, f"{role} was let through to {method}"


@pytest.mark.parametrize("method", sorted(CALLS))
@pytest.mark.parametrize("credentials", ["none", "unknown token", "not bearer"])
async def test_missing_or_wrong_credentials_are_unauthenticated(
        secured: Running, method: str, credentials: str) -> None:
    metadata = {"none": (), "unknown token": bearer(new_token()),
                "not bearer": (("authorization", "Basic YWxpY2U6cHc="),)}[credentials]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await CALLS[method](secured.stub, metadata)
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert secured.app.guard.engine.version == 0


async def test_the_principal_is_the_actor_of_what_it_changed(
        secured: Running, tokens: dict[str, str]) -> None:
    scope = strategy_scope()
    await secured.stub.Trigger(pb.TriggerRequest(scope=scope, reason="halt"),
                               metadata=bearer(tokens["executor"]))
    await secured.stub.Reset(pb.ResetRequest(scope=scope, reason="ok", force=True),
                             metadata=bearer(tokens["operator"]))
    events = await secured.stub.ListEvents(pb.ListEventsRequest(),
                                           metadata=bearer(tokens["operator"]))
    assert [(e.state, e.actor) for e in events.events] == [
        (pb.STATE_ARMED, "operator"), (pb.STATE_TRIPPED, "executor")]


async def test_a_breaker_trip_records_the_principal_that_reported_the_breach(
        secured: Running, tokens: dict[str, str]) -> None:
    reply = await secured.stub.ReportMetric(pb.ReportMetricRequest(
        scope=strategy_scope(), metric=pb.METRIC_DAILY_DRAWDOWN_PCT, value=6),
        metadata=bearer(tokens["executor"]))
    assert reply.tripped
    [trip] = secured.app.guard.restricted()
    assert (trip.actor, trip.breaker) == ("executor", "daily_drawdown_pct")


async def test_an_executor_cannot_reset_a_trip(secured: Running,
                                               tokens: dict[str, str]) -> None:
    scope = strategy_scope()
    await secured.stub.Trigger(pb.TriggerRequest(scope=scope, reason="halt"),
                               metadata=bearer(tokens["executor"]))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await secured.stub.Reset(pb.ResetRequest(scope=scope, reason="mine", force=True),
                                 metadata=bearer(tokens["executor"]))
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    state = await secured.stub.GetState(pb.GetStateRequest(),
                                        metadata=bearer(tokens["executor"]))
    assert [s.state for s in state.scopes] == [pb.STATE_TRIPPED]


async def test_with_authentication_off_the_actor_is_the_peer(sidecar: Running) -> None:
    await sidecar.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="halt"))
    [event] = (await sidecar.stub.ListEvents(pb.ListEventsRequest())).events
    assert event.actor.startswith("unauthenticated@")


async def test_four_eyes_reset_takes_a_second_operator(start_sidecar: Any, tmp_path: Path,
                                                       tokens: dict[str, str]) -> None:
    running = await start_sidecar(sync=False, auth={"tokens_file": str(tmp_path / "tokens.toml")},
                                  reset={"require_approvals": 2, "approval_window_s": 60})
    stub, scope = running.stub, strategy_scope()
    await stub.Trigger(pb.TriggerRequest(scope=scope, reason="halt"),
                       metadata=bearer(tokens["executor"]))
    reset = pb.ResetRequest(scope=scope, reason="reviewed", force=True, latches=["trigger"])
    first = await stub.Reset(reset, metadata=bearer(tokens["operator"]))
    assert (first.pending_approval, first.requested_by, first.state) == (
        True, "operator", pb.STATE_TRIPPED)
    assert first.approval_expires_at.seconds == int(running.clock.now() + 60)
    [listed] = (await stub.GetState(pb.GetStateRequest(),
                                    metadata=bearer(tokens["executor"]))).scopes
    assert listed.reset_requested_by == "operator"
    # what the second operator approves (review 49f: they approved it blind)
    assert (listed.reset_request_reason, listed.reset_request_force,
            list(listed.reset_request_latches)) == ("reviewed", True, ["trigger"])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Reset(reset, metadata=bearer(tokens["operator"]))
    assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    second = await stub.Reset(reset, metadata=bearer(tokens["operator2"]))
    assert (second.pending_approval, second.state) == (False, pb.STATE_ARMED)
    [event] = (await stub.ListEvents(pb.ListEventsRequest(page_size=1),
                                     metadata=bearer(tokens["operator"]))).events
    assert (event.actor, event.approved_by, event.forced) == ("operator", "operator2", True)


async def test_a_refused_stream_always_reports_unauthenticated(secured: Running) -> None:
    """Not INTERNAL, which a client would take for a broken connection (and a fail-open
    client for a reason to trade)."""
    async def requests() -> Any:
        yield pb.CheckOrderStreamRequest(request_id=1, order=order())
        await asyncio.Event().wait()  # keep sending open, like a real executor

    codes = set()
    for _ in range(100):
        call = secured.stub.CheckOrderStream(requests(), metadata=bearer(new_token()))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _answer in call:
                pass
        codes.add(raised.value.code())
    assert codes == {grpc.StatusCode.UNAUTHENTICATED}


async def test_a_heartbeat_is_bound_to_the_principal_that_registered_it(
        start_sidecar: Any, tmp_path: Path) -> None:
    """One executor process must not keep another's dead-man's switch from firing by
    beating for its executor_id; an operator may retire a registration. The refusals are
    counted as any refused call is (review 40g: they left no trace)."""
    tokens = {name: new_token() for name in ("desk-a", "desk-b", "ops")}
    roles = {"desk-a": Role.EXECUTOR, "desk-b": Role.EXECUTOR, "ops": Role.OPERATOR}
    (tmp_path / "tokens.toml").write_text("[tokens]\n" + "\n".join(
        tokens_file_line(name, roles[name], token) for name, token in tokens.items()) + "\n")
    running = await start_sidecar(sync=False,
                                  auth={"tokens_file": str(tmp_path / "tokens.toml")},
                                  telemetry={"metrics_listen": "127.0.0.1:0"})
    beat = pb.HeartbeatRequest(executor_id="exec-1", scope=strategy_scope(), ttl_ms=5_000)
    await running.stub.Heartbeat(beat, metadata=bearer(tokens["desk-a"]))
    (registration,) = running.app.guard.engine.heartbeats.registrations()
    running.clock.advance(4)
    for request in (beat, pb.HeartbeatRequest(executor_id="exec-1", scope=strategy_scope(),
                                              deregister=True)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await running.stub.Heartbeat(request, metadata=bearer(tokens["desk-b"]))
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "desk-a" in refused.value.details()
    assert running.app.guard.engine.heartbeats.registrations() == [registration]
    assert registration.last_seen == running.clock.now() - 4  # desk-b's beat kept nothing
    metrics = await scrape(running.sidecar.metrics.address)
    assert metrics.value("ess_calls_refused_total", code="PERMISSION_DENIED") == 2
    await running.stub.Heartbeat(pb.HeartbeatRequest(executor_id="exec-1", deregister=True,
                                                     scope=strategy_scope()),
                                 metadata=bearer(tokens["ops"]))
    assert running.app.guard.engine.heartbeats.registrations() == []


def test_a_request_counts_only_with_the_credential_it_was_made_with(
        tmp_path: Path, tokens: dict[str, str]) -> None:
    """Review 35l: a request journaled by an earlier version keeps no credential, and ""
    matched any, so after an upgrade with the token rotated it still counted."""
    principals = load_principals(tmp_path / "tokens.toml")
    alice = principals.by_token(tokens["operator"])
    assert alice is not None and alice.credential.startswith("token:")
    assert principals.is_operator("operator", alice.credential)
    other = principals.by_token(tokens["operator2"])
    assert other is not None
    for credential in ("", other.credential, "certificate"):
        assert not principals.is_operator("operator", credential)


class _Metadata:
    """A call's context as far as authentication reads it. gRPC hands a value that is not
    UTF-8 over decoded as Latin-1 (grpc/_cython/_cygrpc/grpc_string.pyx.pxi)."""

    def __init__(self, value: str) -> None:
        self.value = value

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", self.value),)

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


@pytest.mark.parametrize("extra", ["\x85", "\xa0", "\u3000", "\n"])
def test_a_token_with_a_stray_character_around_it_is_not_valid(
        tmp_path: Path, tokens: dict[str, str], extra: str) -> None:
    """Review 36c: the operator's token with a stray byte (0x85, decoded as U+0085, which
    str.strip takes for a space) was accepted. Only ASCII spaces and tabs are taken off."""
    authenticator = Authenticator(load_principals(tmp_path / "tokens.toml"))
    token = tokens["operator"]
    assert authenticator.authenticate(_Metadata(f"Bearer  {token}\t")).name == "operator"
    for value in (f"Bearer {token}{extra}", f"Bearer {extra}{token}"):
        with pytest.raises(Unauthenticated, match="not valid"):
            authenticator.authenticate(_Metadata(value))


def test_the_empty_tokens_digest_is_refused_and_an_empty_bearer_is_unauthenticated(
        tmp_path: Path) -> None:
    """Review 42f: `echo -n "$TOKEN" | sha256sum` with TOKEN unset gives the SHA-256 of
    nothing; the tokens file took it, and `authorization: Bearer ` (no token) was that
    operator: a forced reset of GLOBAL by anyone."""
    empty = hashlib.sha256(b"").hexdigest()
    (tmp_path / "tokens.toml").write_text(
        f'[tokens]\nbob = {{ role = "operator", sha256 = "{empty}" }}\n')
    with pytest.raises(InvalidConfig, match="SHA-256 of an empty token") as raised:
        load_principals(tmp_path / "tokens.toml")
    assert raised.value.key.endswith("tokens.bob.sha256")
    token = new_token()
    (tmp_path / "tokens.toml").write_text("[tokens]\n" + tokens_file_line("ann",
                                                                           Role.OPERATOR,
                                                                           token))
    authenticator = Authenticator(load_principals(tmp_path / "tokens.toml"))
    for value in ("Bearer ", "Bearer \t ", "bearer"):
        with pytest.raises(Unauthenticated, match="must be 'Bearer <token>'"):
            authenticator.authenticate(_Metadata(value))


@pytest.mark.parametrize("revoked", ["removed", "replaced"])
async def test_a_four_eyes_request_of_an_operator_since_revoked_approves_nothing(
        start_sidecar: Any, tmp_path: Path, tokens: dict[str, str], revoked: str) -> None:
    """Review 34: an operator's request survived the revocation of its token (its line
    removed, the sidecar restarted), and the next operator's reset alone lifted the trip,
    co-signed by a token that may have been stolen; review 35: so did one whose token was
    replaced by a new one for the same name (a leaked token rotated). It is void: that
    reset is a new request, and a third operator's approves it, saying whose it was."""
    sections = {"auth": {"tokens_file": str(tmp_path / "tokens.toml")},
                "reset": {"require_approvals": 2, "approval_window_s": 60}}
    first = await start_sidecar(sync=False, **sections)
    scope = strategy_scope()
    reset = pb.ResetRequest(scope=scope, reason="reviewed", force=True)
    await first.stub.Trigger(pb.TriggerRequest(scope=scope, reason="halt"),
                             metadata=bearer(tokens["executor"]))
    assert (await first.stub.Reset(reset, metadata=bearer(tokens["operator"]))).pending_approval
    await first.channel.close()
    await first.sidecar.stop()
    third = new_token()
    rotated = [tokens_file_line("operator", Role.OPERATOR, new_token())] \
        if revoked == "replaced" else []
    (tmp_path / "tokens.toml").write_text("[tokens]\n" + "\n".join([
        tokens_file_line("executor", Role.EXECUTOR, tokens["executor"]),
        tokens_file_line("operator2", Role.OPERATOR, tokens["operator2"]),
        tokens_file_line("operator3", Role.OPERATOR, third), *rotated]) + "\n")
    again = await start_sidecar(sync=False, **sections)
    # Review 55f: shown as live, the approver was asked to approve it
    (shown,) = (await again.stub.GetState(pb.GetStateRequest(),
                                          metadata=bearer(tokens["operator2"]))).scopes
    assert (shown.state, shown.reset_requested_by) == (pb.STATE_TRIPPED, "")
    second = await again.stub.Reset(reset, metadata=bearer(tokens["operator2"]))
    assert (second.pending_approval, second.requested_by, second.state) == (
        True, "operator2", pb.STATE_TRIPPED)
    await again.channel.close()
    await again.sidecar.stop()
    replayed = await start_sidecar(sync=False, **sections)  # the void is journaled
    approved = await replayed.stub.Reset(reset, metadata=bearer(third))
    assert (approved.pending_approval, approved.state, approved.requested_by) == (
        False, pb.STATE_ARMED, "operator2")


async def test_refused_calls_are_counted_and_logged_a_line_a_second_at_most(
        start_sidecar: Any, tmp_path: Path, tokens: dict[str, str],
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 35: a flood of bad tokens left no trace in the logs or the metrics. Each
    refusal is counted by status; the log says so, one line a second at most (here an
    hour, so that a slow machine does not make two), each counting those since the last."""
    monkeypatch.setattr(Authenticator, "LOG_EVERY_S", 3600.0)
    running = await start_sidecar(sync=False, auth={"tokens_file": str(tmp_path / "tokens.toml")},
                                  telemetry={"metrics_listen": "127.0.0.1:0"})
    trip = pb.TriggerRequest(scope=strategy_scope(), reason="x")
    with caplog.at_level("WARNING", logger="ess_sidecar.adapters.grpc.auth"):
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError):
                await running.stub.Trigger(trip, metadata=bearer(new_token()))
        with pytest.raises(grpc.aio.AioRpcError):
            await running.stub.Trigger(trip, metadata=bearer(tokens["reconciler"]))
    metrics = await scrape(running.sidecar.metrics.address)
    assert metrics.value("ess_calls_refused_total", code="UNAUTHENTICATED") == 5
    assert metrics.value("ess_calls_refused_total", code="PERMISSION_DENIED") == 1
    [line] = [r for r in caplog.records if r.getMessage() == "call refused"]
    assert (line.code, line.refused) == ("UNAUTHENTICATED", 1)  # type: ignore[attr-defined]
    assert tokens["reconciler"] not in caplog.text
    assert running.app.guard.engine.version == 0



async def _refusal_of_a_call_with_no_request(running: Running, method: str, requests: Any,
                                             metadata: Any = ()) -> grpc.aio.AioRpcError:
    """The error that ends a call of `method` sent raw, as its client would send it, with
    `requests` (an empty iterator, or one that never yields): its handler never runs."""
    path = f"/ess.v1.GuardService/{method}"
    call = running.channel.stream_stream(path)(requests, metadata=metadata, timeout=5) \
        if method == "WatchState" else \
        running.channel.stream_unary(path)(requests, metadata=metadata, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        if method == "WatchState":
            await call.read()
        else:
            await call
    return raised.value


async def _never() -> Any:
    await asyncio.Event().wait()
    yield b""


@pytest.mark.parametrize("method", ["CheckOrder", "Trigger", "GetState", "WatchState"])
async def test_a_call_that_sends_no_request_and_no_token_is_refused_not_held(
        secured: Running, method: str) -> None:
    """Review 36c: gRPC calls a unary-request handler only once its request has come, so a
    call with none was held for ever, unauthenticated (20,000 of them took 380 MB). It
    is refused as it starts, the request ended or not."""
    for requests in (iter(()), _never()):
        refused = await _refusal_of_a_call_with_no_request(secured, method, requests)
        assert refused.code() is grpc.StatusCode.UNAUTHENTICATED, refused


@pytest.mark.parametrize("method", ["CheckOrder", "Trigger", "GetState", "WatchState"])
async def test_a_role_that_may_not_call_a_method_is_refused_before_its_request_is_read(
        secured: Running, tokens: dict[str, str], method: str) -> None:
    """Review 45: a role was authorized for a single-request method only once gRPC had
    read its request, so the reconciler's token on GetState, 256 requests announced at
    4 MiB each and never finished, pinned about 1 GB on one connection. The method is
    authorized as the call starts: one that never sends its request is refused too."""
    refused = await _refusal_of_a_call_with_no_request(secured, method, _never(),
                                                       bearer(tokens["reconciler"]))
    assert refused.code() is grpc.StatusCode.PERMISSION_DENIED, refused
    assert "reconciler" in (refused.details() or "")
    assert secured.app.guard.engine.version == 0


async def test_server_reflection_takes_a_token(secured: Running,
                                              tokens: dict[str, str]) -> None:
    """Review 43c: reflection streams opened with no token were held with no limit (15,000
    took 300 MB). With tokens on, reflection is refused without one, served with one."""
    stub = reflection_pb2_grpc.ServerReflectionStub(secured.channel)
    for metadata in ((), bearer(new_token())):
        call = stub.ServerReflectionInfo(metadata=metadata)
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
        assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
    call = stub.ServerReflectionInfo(metadata=bearer(tokens["executor"]))
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    services = [s.name for s in (await call.read()).list_services_response.service]
    call.cancel()
    assert "ess.v1.GuardService" in services


async def test_a_health_check_that_sends_no_request_is_ended_not_held(
        secured: Running) -> None:
    """Review 40g: the health service is open to all (probes send no token), and a Check
    that never sent its request was held for ever (10,000 took 114 MB). Ended after a
    second without one; a Check with its request is answered as ever."""
    never = asyncio.Event()

    async def nothing() -> Any:
        await never.wait()
        yield b""

    path = "/grpc.health.v1.Health/Check"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await secured.channel.stream_unary(path)(nothing(), timeout=10)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT, raised.value
    answer = await secured.channel.unary_unary(path)(b"", timeout=5)  # an empty request
    assert answer == b"\x08\x01"  # status: SERVING


async def test_a_health_watch_needs_no_token(secured: Running) -> None:
    """Review 43j: with tokens on, the health service's Watch (open to all, as its Check)
    was wrapped as a single answer, and failed UNKNOWN for every caller: a channel with
    gRPC's client-side health checking could not use the sidecar."""
    watch = health_pb2_grpc.HealthStub(secured.channel).Watch(
        health_pb2.HealthCheckRequest(service=""))
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


async def test_a_unary_call_looks_its_token_up_once(start_sidecar: Any, tmp_path: Path,
                                                    tokens: dict[str, str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The interceptor that refuses calls with no valid token as they start keeps the
    principal it found for the call's admission: one token lookup a check, not two (the
    diff review of stop 36), and another call's principal never carries over."""
    from ess_sidecar.adapters.auth.tokens import Principals  # noqa: PLC0415
    lookups: list[str] = []
    lookup = Principals.by_token
    monkeypatch.setattr(Principals, "by_token",
                        lambda self, token: (lookups.append(token), lookup(self, token))[1])
    running = await start_sidecar(sync=False,
                                  auth={"tokens_file": str(tmp_path / "tokens.toml")})
    decided = await running.stub.CheckOrder(order(), metadata=bearer(tokens["executor"]))
    assert decided.decision_id and lookups == [tokens["executor"]]  # admitted, looked up once
    with pytest.raises(grpc.aio.AioRpcError) as raised:  # the next call is its own
        await running.stub.Reset(pb.ResetRequest(scope=strategy_scope(), reason="x"),
                                 metadata=bearer(tokens["executor"]))
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await running.stub.CheckOrder(order(client_order_id="c-2"))
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
