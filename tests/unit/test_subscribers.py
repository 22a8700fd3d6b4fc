"""The watchers' places (Subscribers): a watch whose stream is held sending gives its place
up to a new one; one waiting for a transition never does."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from ess_sidecar.domain.errors import Busy
from ess_sidecar.watch import Subscribers


def one_place(now: list[float]) -> Subscribers:
    return Subscribers(4, most=1, stuck_s=10.0, monotonic=lambda: now[0])


def test_a_watch_held_sending_past_stuck_s_is_ended_for_a_new_one() -> None:
    now, ended = [0.0], []
    subscribers = one_place(now)
    held = subscribers.add([])  # its stream never came back for a message
    held.end = lambda: ended.append(held)
    now[0] += 10.0
    with pytest.raises(Busy):
        subscribers.add([])
    now[0] += 0.5
    subscribers.add([])
    assert ended == [held] and len(subscribers) == 1


async def test_a_watch_waiting_for_a_transition_keeps_its_place() -> None:
    now, ended = [0.0], []
    subscribers = one_place(now)
    waiting = subscribers.add([])
    waiting.end = lambda: ended.append(waiting)
    task = asyncio.ensure_future(waiting.next(3600.0))
    await asyncio.sleep(0)  # in next(), waiting: a quiet sidecar, not a stuck peer
    now[0] += 100.0
    with pytest.raises(Busy):
        subscribers.add([])
    assert ended == []
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
