"""WatchState over a real socket: snapshot, transitions in order, resume, resync."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from ess.v1 import guard_pb2 as pb
from ess_sidecar.adapters.storage.memory import InMemoryStateStore
from tests.integration.conftest import Running, next_event, strategy_scope

GLOBAL = pb.Scope(kind=pb.SCOPE_KIND_GLOBAL)


async def trigger(running: Running, ident: str) -> int:
    return (await running.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(ident)))).state_version


async def test_snapshot_then_end_marker_then_transitions_in_version_order(
        sidecar: Running) -> None:
    await trigger(sidecar, "before")
    stream = sidecar.stub.WatchState(pb.WatchStateRequest())
    snapshot = await next_event(stream)
    assert (snapshot.kind, snapshot.scope.id, snapshot.state) == (
        pb.WATCH_EVENT_KIND_SNAPSHOT, "before", pb.STATE_TRIPPED)
    end = await next_event(stream)
    assert (end.kind, end.version) == (pb.WATCH_EVENT_KIND_SNAPSHOT_END, 1)
    for ident in ("a", "b", "c"):
        await trigger(sidecar, ident)
    seen = [await next_event(stream) for _ in range(3)]
    assert [(m.kind, m.version, m.scope.id) for m in seen] == [
        (pb.WATCH_EVENT_KIND_TRANSITION, 2, "a"), (pb.WATCH_EVENT_KIND_TRANSITION, 3, "b"),
        (pb.WATCH_EVENT_KIND_TRANSITION, 4, "c")]
    assert seen[0].previous_state == pb.STATE_ARMED and seen[0].state == pb.STATE_TRIPPED
    stream.cancel()


async def test_from_version_replays_what_was_missed_without_gaps(sidecar: Running) -> None:
    for ident in ("a", "b", "c", "d"):
        await trigger(sidecar, ident)
    stream = sidecar.stub.WatchState(pb.WatchStateRequest(from_version=2,
                                                          epoch=await sidecar.epoch()))
    replayed = [await next_event(stream) for _ in range(2)]
    assert [m.version for m in replayed] == [3, 4]
    assert all(m.kind == pb.WATCH_EVENT_KIND_TRANSITION for m in replayed)
    assert (await next_event(stream)).kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
    await trigger(sidecar, "e")
    assert (await next_event(stream)).version == 5
    stream.cancel()


async def test_watch_filtered_by_scope_sees_only_that_scope(sidecar: Running) -> None:
    stream = sidecar.stub.WatchState(pb.WatchStateRequest(scopes=[strategy_scope("b")]))
    assert (await next_event(stream)).kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
    for ident in ("a", "b", "c"):
        await trigger(sidecar, ident)
    assert (await next_event(stream)).scope.id == "b"
    stream.cancel()


async def test_watchers_beyond_the_cap_are_refused_and_a_place_frees_when_one_ends(
        start_sidecar) -> None:
    """Review 35: with no cap, 3,000 watchers that never read made each trip thousands of
    writes, and a panic behind a burst of trips waited past its deadline, dropped unread.
    At watch.max_watchers the next watch is UNAVAILABLE, naming the setting (review 35:
    RESOURCE_EXHAUSTED, which tells a watcher to resume, made essctl watch retry 2,000
    times in 8 ms)."""
    running = await start_sidecar(watch={"max_watchers": 2})
    streams = [running.stub.WatchState(pb.WatchStateRequest()) for _ in range(2)]
    for stream in streams:
        assert (await next_event(stream)).kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
    third = running.stub.WatchState(pb.WatchStateRequest())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await next_event(third)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE  # not "resume at once"
    assert "watch.max_watchers" in refused.value.details()
    streams[0].cancel()
    async with asyncio.timeout(5):
        while len(running.app.guard.subscribers) > 1:  # the cancel reaches the handler
            await asyncio.sleep(0)
    again = running.stub.WatchState(pb.WatchStateRequest())
    assert (await next_event(again)).kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
    await trigger(running, "a")
    assert (await next_event(streams[1])).scope.id == "a"
    for stream in (streams[1], again):
        stream.cancel()


async def test_a_watch_past_the_cap_is_refused_before_its_scopes_are_read(
        start_sidecar) -> None:
    """Review 45: 256 watches of 20,000 scopes each, on one executor's connection, each
    had its scopes mapped on the loop before the watcher cap refused it, and a Trigger
    waited 27 s. At the cap a watch is refused as it comes: one whose last scope cannot
    even be read is UNAVAILABLE, not INVALID_ARGUMENT for that scope."""
    running = await start_sidecar(watch={"max_watchers": 1})
    first = running.stub.WatchState(pb.WatchStateRequest())
    assert (await next_event(first)).kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
    unreadable = [*(strategy_scope(f"s{i}") for i in range(500)), pb.Scope(kind=99)]
    refused = running.stub.WatchState(pb.WatchStateRequest(scopes=unreadable))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await next_event(refused)
    assert error.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "watch.max_watchers" in error.value.details()
    first.cancel()
    async with asyncio.timeout(5):
        while len(running.app.guard.subscribers):  # the cancel reaches the handler
            await asyncio.sleep(0)
    with pytest.raises(grpc.aio.AioRpcError) as error:  # with a place: the scope named
        await next_event(running.stub.WatchState(pb.WatchStateRequest(scopes=unreadable)))
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "scopes[500]" in error.value.details()
    assert len(running.app.guard.subscribers) == 0


async def test_a_watch_names_at_most_watch_max_scopes(start_sidecar) -> None:
    """One more scope than watch.max_scopes is INVALID_ARGUMENT naming the field and the
    setting, and takes no place; as many as it are watched; none watches every scope."""
    running = await start_sidecar(watch={"max_scopes": 3})
    names = [strategy_scope(ident) for ident in ("a", "b", "c", "d")]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await next_event(running.stub.WatchState(pb.WatchStateRequest(scopes=names)))
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "scopes" in error.value.details() and "watch.max_scopes" in error.value.details()
    assert len(running.app.guard.subscribers) == 0
    three = running.stub.WatchState(pb.WatchStateRequest(scopes=names[1:]))
    every = running.stub.WatchState(pb.WatchStateRequest())
    for stream in (three, every):
        assert (await next_event(stream)).kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
    await trigger(running, "a")
    await trigger(running, "d")
    assert (await next_event(three)).scope.id == "d"
    assert [(await next_event(every)).scope.id for _ in range(2)] == ["a", "d"]
    for stream in (three, every):
        stream.cancel()


async def test_version_no_longer_kept_gets_out_of_range(start_sidecar) -> None:
    running = await start_sidecar(store={"keep_events": 2})
    for _ in range(3):  # trip/reset cycles: old events are no scope's latched state
        await trigger(running, "a")
        await running.stub.Reset(pb.ResetRequest(scope=strategy_scope("a"), reason="r",
                                                 force=True))
    stream = running.stub.WatchState(pb.WatchStateRequest(from_version=1))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await next_event(stream)
    assert error.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "resubscribe" in error.value.details()


async def test_version_from_the_future_gets_out_of_range(sidecar: Running) -> None:
    stream = sidecar.stub.WatchState(pb.WatchStateRequest(from_version=99))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await next_event(stream)
    assert error.value.code() == grpc.StatusCode.OUT_OF_RANGE


async def test_heartbeats_carry_the_current_version(start_sidecar) -> None:
    running = await start_sidecar(watch={"heartbeat_interval_s": 0.01})
    await trigger(running, "a")
    stream = running.stub.WatchState(pb.WatchStateRequest(scopes=[GLOBAL]))
    assert (await next_event(stream)).kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
    heartbeat = await stream.read()
    assert (heartbeat.kind, heartbeat.version) == (pb.WATCH_EVENT_KIND_HEARTBEAT, 1)
    stream.cancel()


async def test_shutdown_ends_watch_streams_with_unavailable(start_sidecar) -> None:
    running = await start_sidecar()
    stream = running.stub.WatchState(pb.WatchStateRequest())
    assert (await next_event(stream)).kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
    await running.sidecar.stop()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await next_event(stream)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_watch_messages_carry_the_epoch_once_a_version_was_not_durable(
        start_sidecar) -> None:
    store = InMemoryStateStore()
    running = await start_sidecar(state_store=store)
    stream = running.stub.WatchState(pb.WatchStateRequest())
    assert (await next_event(stream)).epoch == ""
    store.fail_next_append = True
    with pytest.raises(grpc.aio.AioRpcError):
        await trigger(running, "a")
    global_trip = await next_event(stream)
    assert global_trip.scope.kind == pb.SCOPE_KIND_GLOBAL and global_trip.epoch
    resumed = running.stub.WatchState(pb.WatchStateRequest(from_version=global_trip.version))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await next_event(resumed)
    assert error.value.code() == grpc.StatusCode.OUT_OF_RANGE
    stream.cancel()


async def test_a_version_published_before_a_fail_closed_trip_is_told_in_its_own_epoch(
        ) -> None:
    """Review 36f: STRATEGY:b's trip was stored, then its journal record failed (a full
    disk), and GLOBAL was tripped in memory under the same version (since review 40i,
    the next: b's is the store's), volatile. A watcher
    that read version 1 after that was told it under the volatile epoch, resumed from it,
    and was replayed the store's version 2 (STRATEGY:b), never learning of GLOBAL's trip.
    Told in the epoch it was published in, the resume resyncs to a snapshot with GLOBAL."""
    from ess_sidecar.adapters.grpc.servicer import GuardServicer  # noqa: PLC0415
    from ess_sidecar.domain.commands import Trigger  # noqa: PLC0415
    from ess_sidecar.domain.config import GuardConfig  # noqa: PLC0415
    from ess_sidecar.domain.engine import GuardEngine  # noqa: PLC0415
    from ess_sidecar.domain.errors import StoreUnavailable  # noqa: PLC0415
    from ess_sidecar.domain.scopes import Scope, ScopeKind  # noqa: PLC0415
    from ess_sidecar.domain.states import TriggerMode, TriggerReason  # noqa: PLC0415
    from ess_sidecar.ports import NoJournal  # noqa: PLC0415
    from ess_sidecar.service import Guard  # noqa: PLC0415
    from ess_sidecar.watch import Subscribers  # noqa: PLC0415
    from tests.fakes import FakeClock  # noqa: PLC0415

    class FullDisk(NoJournal):
        full = False

        def record(self, command, transitions=()) -> None:  # noqa: ANN001
            if self.full:
                raise StoreUnavailable("journal write failed: No space left on device")

    class Context:
        async def abort(self, code: grpc.StatusCode, details: str) -> None:
            raise grpc.aio.AbortError(f"{code.name}: {details}")

    journal = FullDisk()
    guard = Guard(GuardEngine(GuardConfig()), InMemoryStateStore(), FakeClock(),
                  Subscribers(16), journal=journal)
    servicer = GuardServicer(guard, 5.0)

    def halt(ident: str):  # noqa: ANN202
        return guard.run_async(guard.trigger_steps(Trigger(
            Scope(ScopeKind.STRATEGY, ident), TriggerMode.HALT, "x",
            TriggerReason.USER_INITIATED, (), "alice")))

    watcher = servicer.WatchState(pb.WatchStateRequest(), Context())
    assert (await anext(watcher)).kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
    await halt("a")
    journal.full = True
    with pytest.raises(StoreUnavailable):
        await halt("b")
    first = await anext(watcher)
    first = pb.WatchStateResponse.FromString(first) if isinstance(first, bytes) else first
    assert (first.version, first.scope.id, first.epoch) == (1, "a", "")
    second = await anext(watcher)
    second = pb.WatchStateResponse.FromString(second) if isinstance(second, bytes) else second
    assert (second.version, second.scope.kind, second.epoch) == (  # after b's, stored:
        3, pb.SCOPE_KIND_GLOBAL, guard.epoch)  # no version for two transitions (40i)
    await watcher.aclose()
    resumed = servicer.WatchState(pb.WatchStateRequest(from_version=1, epoch=first.epoch),
                                  Context())
    with pytest.raises(grpc.aio.AbortError, match="OUT_OF_RANGE: epoch"):
        await anext(resumed)
