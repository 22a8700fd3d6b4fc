"""GetState: the whole restricted state, as of one moment, built without holding the
event loop (review 49a: a dashboard's GetState of 20,000 tripped scopes held a Trigger
0.5 s, and 64 in flight held one 11 to 17 s)."""

from __future__ import annotations

import asyncio

from ess.v1 import guard_pb2 as pb
from ess_sidecar.adapters.grpc.mapping import scope_state_to_proto
from ess_sidecar.adapters.grpc import servicer as servicer_module
from ess_sidecar.adapters.grpc.servicer import STATE_CHUNK, GuardServicer
from ess_sidecar.adapters.grpc.thresholds import thresholds_to_proto
from ess_sidecar.adapters.storage.memory import InMemoryStateStore
from ess_sidecar.domain.approvals import ApprovalPolicy
from ess_sidecar.domain.commands import Trigger
from ess_sidecar.domain.config import GuardConfig
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.scopes import Scope, ScopeKind
from ess_sidecar.domain.states import TriggerMode, TriggerReason
from ess_sidecar.service import Guard
from ess_sidecar.watch import Subscribers
from tests.fakes import FakeClock
from tests.integration.conftest import Running


def four_eyes_guard(clock: FakeClock | None = None) -> Guard:
    return Guard(GuardEngine(GuardConfig(approvals=ApprovalPolicy(required=2, window_s=300))),
                 InMemoryStateStore(), clock or FakeClock(), Subscribers(16))


def halt(guard: Guard, ident: str, reason: str = "stop") -> None:
    guard.trigger(Trigger(Scope(ScopeKind.STRATEGY, ident), TriggerMode.HALT, reason,
                          TriggerReason.USER_INITIATED, (), "alice"))


def as_mapped_whole(guard: Guard) -> pb.GetStateResponse:
    """What GetState must answer: every view mapped on the spot."""
    return pb.GetStateResponse(
        scopes=[scope_state_to_proto(view.current, view.reset_allowed_at, view.pending_reset,
                                     view.unstored, view.epoch, view.rearming)
                for view in guard.scope_views()],
        state_version=guard.state_version(), thresholds=thresholds_to_proto(guard.config),
        working_order_counts=[pb.WorkingOrderCount(account=a, working_orders=n)
                              for a, n in sorted(guard.working_counts().items())])


async def get_state(servicer: GuardServicer) -> pb.GetStateResponse:
    return pb.GetStateResponse.FromString(
        await servicer.GetState(pb.GetStateRequest(), None))  # type: ignore[arg-type]


async def test_each_answer_is_the_state_at_its_moment_though_parts_are_kept() -> None:
    clock = FakeClock()
    guard = four_eyes_guard(clock)
    servicer = GuardServicer(guard, 30.0)
    for ident in ("a", "b", "c"):
        halt(guard, ident)
    assert await get_state(servicer) == as_mapped_whole(guard)
    clock.advance(16 * 60)  # out of the cooldown
    for actor in ("alice", "bob"):  # a reset by two: a's trip lifted
        guard.reset(Scope(ScopeKind.STRATEGY, "a"), "fixed", False, actor)
    guard.reset(Scope(ScopeKind.STRATEGY, "b"), "fixed", False, "alice")  # b waits for bob:
    halt(guard, "c", "again")  # the same scope, its view changed, not its trip; c tripped anew
    halt(guard, "d")
    answer = await get_state(servicer)
    assert answer == as_mapped_whole(guard)
    listed = {s.scope.id: s for s in answer.scopes}
    assert sorted(listed) == ["b", "c", "d"]
    assert listed["b"].reset_requested_by == "alice"
    assert listed["c"].reason == "again"


async def test_a_large_answer_gives_the_event_loop_back_as_it_is_built() -> None:
    guard = four_eyes_guard()
    servicer = GuardServicer(guard, 30.0)
    for index in range(3 * STATE_CHUNK + 1):
        halt(guard, f"s{index}")
    for _ in range(2):  # parts mapped afresh, then kept
        answering = asyncio.ensure_future(get_state(servicer))
        turns = 0  # how often another task ran before the answer was complete
        while not answering.done():
            turns += 1
            await asyncio.sleep(0)
        assert turns > 3
        answer = answering.result()
        assert answer == as_mapped_whole(guard)
        assert len(answer.scopes) == 3 * STATE_CHUNK + 1


async def test_a_heartbeat_listing_gives_the_event_loop_back_as_it_walks(monkeypatch) -> None:
    """Reviews 56c, 56d: the 1,000 longest silent of 100,000 registrations were picked in
    one piece, holding checks and stops 18 ms, and a client listing them in a loop made
    most fail-open checks fail open. The listing is walked in slices, as a spelled-alike
    walk is (here one step a slice: each yields after 512 registrations)."""
    monkeypatch.setattr(servicer_module, "WALK_SLICE_S", 0.0)
    monkeypatch.setattr(servicer_module, "WALK_REST_S", 0.0)
    clock = FakeClock()
    guard = four_eyes_guard(clock)
    servicer = GuardServicer(guard, 30.0)
    for index in range(5000):
        guard.heartbeat(f"ex-{index:04}", Scope(ScopeKind.STRATEGY, "momo"), 60.0)
        clock.advance(0.001)  # the first registered is the longest silent
    asked = servicer.GetState(pb.GetStateRequest(include_heartbeats=True), None)
    answering = asyncio.ensure_future(asked)  # type: ignore[arg-type]
    turns = 0
    while not answering.done():
        turns += 1
        await asyncio.sleep(0)
    assert turns >= 5000 // 512
    answer = pb.GetStateResponse.FromString(answering.result())
    assert answer.heartbeats_registered == 5000
    assert [r.executor_id for r in answer.heartbeats] == [
        f"ex-{index:04}" for index in range(servicer_module.MAX_HEARTBEATS_LISTED)]


async def test_a_large_state_reaches_a_client_whole(sidecar: Running) -> None:
    guard = sidecar.app.guard
    for index in range(2 * STATE_CHUNK + 7):
        halt(guard, f"s{index}")
    answer = await sidecar.stub.GetState(pb.GetStateRequest(include_working_orders=True))
    assert [s.scope.id for s in answer.scopes] == [f"s{i}" for i in range(2 * STATE_CHUNK + 7)]
    assert [s.version for s in answer.scopes] == list(range(1, 2 * STATE_CHUNK + 8))
    assert answer.state_version == 2 * STATE_CHUNK + 7 and answer.thresholds


async def test_answers_asked_at_once_are_built_one_at_a_time(monkeypatch) -> None:  # noqa: ANN001
    """Another task (a Trigger) waits for one chunk, not one for each answer in flight."""
    guard = four_eyes_guard()
    servicer = GuardServicer(guard, 30.0)
    for index in range(3 * STATE_CHUNK):
        halt(guard, f"s{index}")
    mapped = 0
    part = servicer_module._scope_part

    def counted(view):  # noqa: ANN001, ANN202
        nonlocal mapped
        mapped += 1
        return part(view)
    monkeypatch.setattr(servicer_module, "_scope_part", counted)
    answering = [asyncio.ensure_future(get_state(servicer)) for _ in range(3)]
    most = 0  # parts mapped between two turns of this task
    while not all(answer.done() for answer in answering):
        before = mapped
        await asyncio.sleep(0)
        most = max(most, mapped - before)
    assert mapped == 3 * STATE_CHUNK  # the first maps them; the others take its parts
    assert most <= STATE_CHUNK
    for answer in answering:
        assert answer.result() == as_mapped_whole(guard)
