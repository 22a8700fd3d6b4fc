"""The fan-out process's feed (adapters/grpc/fanout.py `Feed`): the ring of transitions a
joining watcher is served from, after the version its snapshot gave, with nothing missed
or repeated; and what a watcher is told when it cannot be. No gRPC: the feed's messages
are given as the sidecar serializes them."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from ess.v1 import guard_pb2 as pb
from ess_sidecar.adapters.grpc import fanout
from ess_sidecar.adapters.grpc.fanout import Feed, FanoutServicer
from ess_sidecar.domain.errors import ShuttingDown, SubscriberTooSlow
from ess_sidecar.domain.scopes import Scope, ScopeKind
from ess_sidecar.watch import Subscribers

MOMO, MEAN = Scope(ScopeKind.STRATEGY, "momo"), Scope(ScopeKind.STRATEGY, "mean")


def message(kind: int, version: int, scope: Scope | None = None, epoch: str = "",
            seconds: int = 0) -> bytes:
    reply = pb.WatchStateResponse(kind=kind, version=version, epoch=epoch)
    if scope is not None:
        reply.scope.kind, reply.scope.id = scope.kind, scope.id
    if seconds:
        reply.time.seconds = seconds
    return reply.SerializeToString()


def transition(version: int, scope: Scope = MOMO, epoch: str = "") -> bytes:
    return message(pb.WATCH_EVENT_KIND_TRANSITION, version, scope, epoch)


def fed(ring: int = 8, queue: int = 16, up_to: int = 3) -> Feed:
    """A feed whose snapshot ended at version `up_to`."""
    feed = Feed(Subscribers(queue), ring)
    feed.follow(message(pb.WATCH_EVENT_KIND_SNAPSHOT, 2, MOMO))  # the state: not kept
    feed.follow(message(pb.WATCH_EVENT_KIND_SNAPSHOT_END, up_to))
    return feed


async def drained(subscription) -> list[int]:
    versions = []
    while (relayed := await subscription.next(0.0)) is not None:
        versions.append(relayed.version)
    return versions


async def test_a_watcher_gets_every_transition_after_its_snapshot_once() -> None:
    feed = fed(up_to=3)
    assert feed.up.is_set() and feed.start == 3
    for version in (4, 5, 6):
        feed.follow(transition(version))
    subscription = feed.join([], after=5)  # its own snapshot said 5
    feed.follow(transition(7))
    assert await drained(subscription) == [6, 7]
    assert subscription.delivered == 7


async def test_a_watcher_whose_snapshot_is_ahead_of_the_feed_gets_nothing_twice() -> None:
    feed = fed(up_to=3)
    subscription = feed.join([], after=5)  # the feed has not brought 4 and 5 yet
    for version in (4, 5, 6):
        feed.follow(transition(version))
    assert await drained(subscription) == [6]


async def test_a_watcher_of_some_scopes_gets_theirs_only() -> None:
    feed = fed(up_to=3)
    feed.follow(transition(4, MEAN))
    feed.follow(transition(5, MOMO))
    subscription = feed.join([MEAN], after=3)
    feed.follow(transition(6, MOMO))
    feed.follow(transition(7, MEAN))
    assert await drained(subscription) == [4, 7]


async def test_a_watcher_joining_past_what_the_ring_holds_is_told_to_resume() -> None:
    feed = fed(ring=2, up_to=3)
    for version in (4, 5, 6):  # 4 leaves the ring
        feed.follow(transition(version))
    assert feed.start == 4
    with pytest.raises(SubscriberTooSlow, match="from_version=3"):
        feed.join([], after=3)
    assert await drained(feed.join([], after=4)) == [5, 6]


async def test_a_watcher_too_far_behind_gets_what_was_queued_then_is_told_to_resume() -> None:
    feed = fed(queue=2, up_to=3)
    subscription = feed.join([], after=3)
    for version in (4, 5, 6):
        feed.follow(transition(version))
    assert (await subscription.next(0.0)).version == 4
    assert (await subscription.next(0.0)).version == 5
    with pytest.raises(SubscriberTooSlow, match="from_version=5"):
        await subscription.next(0.0)


async def test_a_lost_feed_ends_every_watcher_with_the_version_to_resume_from() -> None:
    feed = fed(up_to=3)
    subscription = feed.join([], after=3)
    feed.follow(transition(4))
    feed.lost("UNAVAILABLE: the sidecar is shutting down")
    assert not feed.up.is_set()
    assert (await subscription.next(0.0)).version == 4
    with pytest.raises(ShuttingDown, match=r"lost its feed from the sidecar \(UNAVAILABLE:"
                       r" the sidecar is shutting down\); resubscribe with from_version=4"):
        await subscription.next(0.0)
    with pytest.raises(SubscriberTooSlow, match="from_version=3"):  # until it is back
        feed.join([], after=3)
    feed.follow(message(pb.WATCH_EVENT_KIND_SNAPSHOT_END, 4))
    assert feed.up.is_set() and feed.start == 4


def beat_of(feed: Feed, subscription) -> pb.WatchStateResponse | None:  # noqa: ANN001
    data = feed.heartbeat(subscription)
    return None if data is None else pb.WatchStateResponse.FromString(data)


async def test_a_heartbeat_says_the_latest_version_given_its_epoch_and_the_sidecars_time(
        ) -> None:
    feed = fed(up_to=3)
    subscription = feed.join([MEAN], after=3)
    feed.follow(message(pb.WATCH_EVENT_KIND_TRANSITION, 4, MOMO, epoch="e1",
                        seconds=1_790_000_000))  # not its scope: still up to 4 for it
    beat = beat_of(feed, subscription)
    assert (beat.kind, beat.version, beat.epoch, beat.time.seconds) == (
        pb.WATCH_EVENT_KIND_HEARTBEAT, 4, "e1", 1_790_000_000)
    feed.follow(message(pb.WATCH_EVENT_KIND_HEARTBEAT, 4, epoch="e1", seconds=1_790_000_005))
    assert beat_of(feed, subscription).time.seconds == 1_790_000_005  # the sidecar's, as said


async def test_no_heartbeat_says_what_the_sidecar_did_not() -> None:
    """Review 51c: with the feed behind a watcher's own answer, the feed's older time went
    out with the watcher's newer version; before the feed brought a time, this process's
    clock went out as the sidecar's. Review 51b: a frozen sidecar's time moved on here."""
    feed = fed(up_to=3)
    assert beat_of(feed, feed.join([], after=3)) is None  # no time from the sidecar yet
    feed.follow(message(pb.WATCH_EVENT_KIND_HEARTBEAT, 3, seconds=1_790_000_000))
    assert beat_of(feed, feed.join([], after=9)) is None  # its answer is ahead of the feed
    assert beat_of(feed, feed.join([], after=3)).time.seconds == 1_790_000_000
    feed.lost("UNAVAILABLE: gone")
    feed.follow(message(pb.WATCH_EVENT_KIND_SNAPSHOT_END, 3))  # opened again: no time yet
    assert beat_of(feed, feed.join([], after=3)) is None



def test_private_directories_of_dead_sidecars_are_removed_and_nothing_else(
        tmp_path, monkeypatch) -> None:
    """Review 50c: a killed sidecar left its fan-out directory in /tmp for good. The
    next start removes those of dead pids, this user's, never a link planted there."""
    import os
    import tempfile

    from ess_sidecar.adapters.grpc.fanout import DIR_PREFIX, _remove_left_behind
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / f"{DIR_PREFIX}999999-a"
    alive = tmp_path / f"{DIR_PREFIX}{os.getppid()}-b"
    elsewhere = tmp_path / "elsewhere"
    for path in (dead, alive, elsewhere):
        path.mkdir()
        (path / "upstream.sock").write_text("")
    (tmp_path / f"{DIR_PREFIX}999998-c").symlink_to(elsewhere)
    _remove_left_behind()
    assert not dead.exists()
    assert alive.exists() and (elsewhere / "upstream.sock").exists()


# -- a watcher's answer, read whole from the sidecar and written at the watcher's pace ------

class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class Upstream:
    """The sidecar's WatchState, as the servicer calls it: its answer to each
    from_version, as the sidecar serializes it."""

    def __init__(self, answers: dict[int, list[bytes]]) -> None:
        self.answers = answers

    def __call__(self, raw: bytes, metadata: object, timeout: float) -> Upstream._Call:
        return self._Call(self.answers[pb.WatchStateRequest.FromString(raw).from_version])

    class _Call:
        def __init__(self, parts: list[bytes]) -> None:
            self.parts = parts

        async def __aiter__(self):  # noqa: ANN204
            for part in self.parts:
                yield part

        def cancel(self) -> None:
            pass


class Peer:
    """A watcher's stream (the servicer's context): takes `reads` messages, then holds
    the next write until `read_again()`, as a peer that stopped reading does."""

    def __init__(self, reads: int | None = None) -> None:
        self.got: list[pb.WatchStateResponse] = []
        self._reads, self._again, self.held = reads, asyncio.Event(), asyncio.Event()
        self._wrote = asyncio.Event()

    async def write(self, data: bytes) -> None:
        if self._reads is not None and len(self.got) >= self._reads:
            self.held.set()
            await self._again.wait()
        self.got.append(pb.WatchStateResponse.FromString(data))
        self._wrote.set()

    async def has(self, count: int) -> None:
        """Once `count` messages are written to it (a deadline: 5 s)."""
        async with asyncio.timeout(5):
            while len(self.got) < count:
                self._wrote.clear()
                await self._wrote.wait()

    def read_again(self) -> None:
        self._reads = None
        self._again.set()

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def snapshot_part(version: int, scope: Scope = MOMO) -> bytes:
    return message(pb.WATCH_EVENT_KIND_SNAPSHOT, version, scope)


async def ended(task: asyncio.Task) -> Aborted:
    with pytest.raises(Aborted) as raised:
        await asyncio.wait_for(task, 5)
    return raised.value


async def test_a_watcher_cut_mid_replay_resumes_after_the_last_transition_written() -> None:
    """Review 51b: told to resume from its request's version, it was sent again every
    transition it had; a replay's transitions count as they are written (a snapshot's
    parts do not: test below)."""
    now = [0.0]
    feed = Feed(Subscribers(16, most=1, stuck_s=10.0, monotonic=lambda: now[0]), 8)
    feed.follow(message(pb.WATCH_EVENT_KIND_SNAPSHOT_END, 4))
    upstream = Upstream({1: [transition(2), transition(3), transition(4),
                             message(pb.WATCH_EVENT_KIND_SNAPSHOT_END, 4)],
                         0: [message(pb.WATCH_EVENT_KIND_SNAPSHOT_END, 4)]})
    servicer = FanoutServicer(feed, upstream, (), heartbeat_s=3600.0)
    slow, other = Peer(reads=2), Peer()
    cut = asyncio.create_task(servicer.WatchState(pb.WatchStateRequest(from_version=1), slow))
    await asyncio.wait_for(slow.held.wait(), 5)  # v2 and v3 read, v4 held
    now[0] += 11.0
    joined = asyncio.create_task(servicer.WatchState(pb.WatchStateRequest(), other))
    await other.has(1)  # it took the slow one's place
    slow.read_again()
    error = await ended(cut)
    assert [m.version for m in slow.got] == [2, 3, 4]
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details.endswith("resubscribe with from_version=4"), error.details
    joined.cancel()


async def test_a_stuck_writer_cut_for_room_is_told_where_to_resume_and_frees_its_bytes(
        monkeypatch) -> None:
    """Review 51b: a watcher whose snapshot held the fan-out's bytes past the stuck bound
    was cancelled, and never told: its stream went silent for good. Now it is ended as the
    sidecar ends a stuck watcher: told, from its request's version, once it reads again."""
    parts = [snapshot_part(2), snapshot_part(3, MEAN), message(
        pb.WATCH_EVENT_KIND_SNAPSHOT_END, 3)]
    monkeypatch.setattr(fanout, "SNAPSHOT_BYTES", sum(map(len, parts)) + 2)  # one at once
    now = [0.0]
    feed = Feed(Subscribers(16, stuck_s=10.0, monotonic=lambda: now[0]), 8)
    feed.follow(message(pb.WATCH_EVENT_KIND_SNAPSHOT_END, 3))
    servicer = FanoutServicer(feed, Upstream({0: parts}), (), heartbeat_s=3600.0)
    slow, other = Peer(reads=1), Peer()
    cut = asyncio.create_task(servicer.WatchState(pb.WatchStateRequest(), slow))
    await asyncio.wait_for(slow.held.wait(), 5)
    refused = asyncio.create_task(servicer.WatchState(pb.WatchStateRequest(), other))
    error = await ended(refused)  # held for under the bound: not cut
    assert (error.code, "MiB of snapshots" in error.details) == (
        grpc.StatusCode.UNAVAILABLE, True), error
    now[0] += 11.0
    other = Peer()
    joined = asyncio.create_task(servicer.WatchState(pb.WatchStateRequest(), other))
    await other.has(3)  # its whole snapshot, in the bytes the slow one gave up
    slow.read_again()
    error = await ended(cut)
    assert [m.kind for m in slow.got] == [pb.WATCH_EVENT_KIND_SNAPSHOT] * 2  # no END
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "its snapshot was given up" in error.details
    assert error.details.endswith("resubscribe with from_version=0"), error.details
    assert servicer._buffered == 0  # noqa: SLF001 - the budget: nothing held any more
    joined.cancel()

