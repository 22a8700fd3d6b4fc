"""The watchers' places (Subscribers): a watch whose stream is held sending gives its place
up to a new one; one waiting for a transition never does."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import pytest

from ess_sidecar.domain.errors import Busy, SubscriberTooSlow
from ess_sidecar.domain.scopes import GLOBAL, Scope
from ess_sidecar.watch import Subscribers


@dataclass(frozen=True)
class Event:
    """What a subscription queues (watch.Published)."""

    version: int
    scope: Scope = GLOBAL


def one_place(now: list[float]) -> Subscribers:
    return Subscribers(4, most=1, stuck_s=10.0, monotonic=lambda: now[0])


async def test_a_watch_held_sending_past_stuck_s_is_ended_for_a_new_one() -> None:
    now = [0.0]
    subscribers = one_place(now)
    held = subscribers.add([])  # its stream never came back for a message
    now[0] += 10.0
    with pytest.raises(Busy):
        subscribers.add([])
    now[0] += 0.5
    subscribers.add([])
    assert len(subscribers) == 1
    with pytest.raises(SubscriberTooSlow, match="its place was given to another watcher"
                       " after its stream sent nothing for 10.5 s.*from_version=0"):
        await held.next(3600.0)  # its stream, back at last, is told (review 43j)


async def test_a_watch_waiting_for_a_transition_keeps_its_place() -> None:
    now = [0.0]
    subscribers = one_place(now)
    waiting = subscribers.add([])
    task = asyncio.ensure_future(waiting.next(3600.0))
    await asyncio.sleep(0)  # in next(), waiting: a quiet sidecar, not a stuck peer
    now[0] += 100.0
    with pytest.raises(Busy):
        subscribers.add([])
    assert len(subscribers) == 1
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_time_spent_waiting_for_a_transition_is_not_time_away() -> None:
    """Review 43j: the time a watch waited in next() counted as away, so a stream held for
    one heartbeat interval was ended as if for two."""
    now = [0.0]
    subscribers = one_place(now)
    watch = subscribers.add([])
    now[0] += 9.0
    assert await watch.next(0.0) is None  # quiet for 9 s, then a heartbeat handed over
    now[0] += 9.0  # held sending it for 9 s: under stuck_s
    with pytest.raises(Busy):
        subscribers.add([])


def test_the_fanouts_streams_have_places_of_their_own() -> None:
    """Watchers of the sidecar filling `most` refuse none of the fan-out process's streams,
    and its streams, at most `most_internal`, take none of theirs."""
    subscribers = Subscribers(4, most=1, most_internal=2)
    subscribers.add([])
    with pytest.raises(Busy, match="watch.max_watchers"):
        subscribers.admit(0)
    subscribers.admit(0, internal=True)
    feed, snapshot = subscribers.add([], internal=True), subscribers.add([], internal=True)
    with pytest.raises(Busy, match="the fan-out process has 2 streams"):
        subscribers.add([], internal=True)
    assert len(subscribers) == 3
    subscribers.remove(snapshot)
    subscribers.add([], internal=True)
    subscribers.remove(feed)
    with pytest.raises(Busy, match="watch.max_watchers"):
        subscribers.add([])  # a place of the fan-out's given back is not one of `most`


def test_none_are_kept_for_a_fanout_unless_asked() -> None:
    with pytest.raises(Busy):
        Subscribers(4, most=1).add([], internal=True)


async def test_both_kinds_are_published_to_and_a_stuck_stream_gives_up_its_own_kind() -> None:
    now = [0.0]
    subscribers = Subscribers(4, most=1, stuck_s=10.0, monotonic=lambda: now[0],
                              most_internal=1)
    watcher, feed = subscribers.add([]), subscribers.add([], internal=True)
    subscribers.publish([Event(1)])
    assert (await watcher.next(1.0)).version == (await feed.next(1.0)).version == 1
    now[0] += 11.0  # both held sending since
    subscribers.add([], internal=True)  # ends the stuck feed, not the watcher
    assert feed.ended and not watcher.ended
    with pytest.raises(SubscriberTooSlow, match="the fan-out process's places"):
        await feed.next(1.0)
    subscribers.end_all("gone")
    assert len(subscribers) == 0
