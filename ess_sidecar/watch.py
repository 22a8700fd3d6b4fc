"""Fan-out of transitions to WatchState subscribers, each with a bounded queue: the
sidecar's own (of `Transition`s) and the fan-out process's (of the feed's serialized
transitions, `adapters/grpc/fanout.py`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from .domain.errors import Busy, InvalidArgument, ShuttingDown, SubscriberTooSlow
from .domain.scopes import Scope

FANOUT_SNAPSHOTS = 16  # the fan-out process's snapshot calls to the sidecar at once
# Places the sidecar keeps for the fan-out process's own streams, its feed and its
# snapshots, apart from watch.max_watchers: watchers of the sidecar itself that fill those
# cannot cut the fan-out's watchers off. Twice what it opens at once, for streams whose end
# the sidecar has not seen yet.
FANOUT_PLACES = 2 * (1 + FANOUT_SNAPSHOTS)


class Published(Protocol):
    """What a subscription queues: a `Transition`, or the fan-out's `Relayed`."""

    @property
    def scope(self) -> Scope: ...

    @property
    def version(self) -> int: ...


class Subscription:
    """One watcher's queue. A watcher that falls `queue_size` transitions behind is cut off
    (its queued transitions are still delivered, then SubscriberTooSlow) rather than
    slowing the publisher or anyone else."""

    def __init__(self, scopes: frozenset[Scope], queue_size: int,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.scopes = scopes
        # Transitions up to `after` are not offered: a snapshot covered them (a watcher of
        # the fan-out process, served from the version its snapshot gave).
        self.after = 0
        self.delivered = 0
        # When its stream was last handed a message (`next` returned), and whether it waits
        # for one now: away since, its stream is held sending it (a peer that reads nothing).
        self._monotonic = monotonic
        self.came_at, self.waiting = monotonic(), False
        self._ended = ""  # why its place was taken (Subscribers): its next() says so
        self._queue_size = queue_size
        # Unbounded underneath so close() always fits; offer() enforces the bound.
        self._queue: asyncio.Queue[Published | None] = asyncio.Queue()
        self._overflowed = False
        self._closed = "the sidecar is shutting down"

    def progressed(self) -> None:
        """Its stream has just been handed something other than a queued transition (a
        part of the fan-out's snapshot): it is not stuck."""
        self.came_at = self._monotonic()

    def stuck_for(self, now: float) -> float:
        """How long its stream has been held sending (0 while it waits for a transition)."""
        return 0.0 if self.waiting else now - self.came_at

    @property
    def ended(self) -> bool:
        """Whether its place was given to another watcher (`end`)."""
        return bool(self._ended)

    def matches(self, transition: Published) -> bool:
        return transition.version > self.after and (
            not self.scopes or transition.scope in self.scopes)

    def offer(self, transition: Published) -> bool:
        """Queue a transition without waiting; False if the watcher is too slow."""
        if self._queue.qsize() >= self._queue_size:
            self._overflowed = True
            return False
        self._queue.put_nowait(transition)
        return True

    def close(self, why: str = "") -> None:
        """End the stream after what is queued: ShuttingDown, saying `why` (by default
        that the sidecar is shutting down)."""
        self._closed = why or self._closed
        self._queue.put_nowait(None)

    async def next(self, timeout: float) -> Published | None:
        """The next transition, or None when `timeout` passes with none queued (so every
        transition published so far has been delivered: a heartbeat may say so). Raises
        SubscriberTooSlow once the queue is drained after an overflow, and ShuttingDown
        after close()."""
        if self._overflowed and self._queue.empty():
            raise SubscriberTooSlow(f"watcher fell more than {self._queue_size} transitions"
                                    f" behind; resubscribe with from_version={self.delivered}")
        if self._ended:
            raise SubscriberTooSlow(f"{self._ended}; resubscribe with"
                                    f" from_version={self.delivered}")
        queue = self._queue
        if not queue.empty():  # queued already (a storm): no timer to arm and cancel
            self.came_at = self._monotonic()
            return self._delivered(queue.get_nowait())
        self.waiting = True
        try:
            async with asyncio.timeout(timeout):  # unlike wait_for, no task per message
                transition = await self._queue.get()
        except TimeoutError:
            if self._queue.empty():
                return None  # quiet: the caller's heartbeat may carry the current version
            # A transition queued as the timeout fired: deliver it before any heartbeat,
            # which would otherwise carry its version first and let a resume skip it.
            transition = self._queue.get_nowait()
        finally:
            self.waiting = False
            self.came_at = self._monotonic()
        return self._delivered(transition)

    def end(self, why: str) -> None:
        """Its place is taken: no transition is offered it again, and once its stream comes
        back for one (a held write done at last), it is told `why` (review 43j: its task
        cancelled, a watcher that read again got nothing, no status, and went stale)."""
        self._ended = why

    def _delivered(self, transition: Published | None) -> Published:
        if transition is None:
            raise ShuttingDown(f"{self._closed}; resubscribe with"
                               f" from_version={self.delivered}")
        self.delivered = transition.version
        return transition


class Subscribers:
    def __init__(self, queue_size: int, most: int = 100, stuck_s: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 most_scopes: int = 1024, most_key: str = "watch.max_watchers",
                 most_internal: int = 0) -> None:
        self.queue_size = queue_size
        self.most = most  # watchers at once: each costs every transition a write
        self.most_key = most_key  # the setting of `most`, for the refusal
        self.most_internal = most_internal  # places apart, for the fan-out's own streams
        self.stuck_s = stuck_s  # a stream away this long sends nothing: its slot is taken
        self.most_scopes = most_scopes  # scopes one watcher names (none: every scope)
        self.monotonic = monotonic  # its watchers' clock, when they were last handed one
        self._subscriptions: set[Subscription] = set()
        self._internal: set[Subscription] = set()  # the fan-out's (most_internal places)
        self._closed = False

    def __len__(self) -> int:
        return len(self._subscriptions) + len(self._internal)

    def admit(self, scopes: int, joining: int = 0, internal: bool = False) -> None:
        """Raises unless a watcher naming `scopes` scopes would be added now: asked before
        its scopes are even read, so that a refused one costs nothing (review 45: 256
        watches of 20,000 scopes each, mapped on the loop before the cap refused them,
        held a Trigger 27 s and grew the process to 2.9 GB). InvalidArgument past
        `most_scopes`; otherwise as add(), which may end a stuck watcher for it.
        `joining`: watchers admitted and not added yet (the fan-out's, during their
        snapshot), which count as watching. `internal`: a stream of the fan-out process,
        given one of `most_internal` places, never one of `most`."""
        if scopes > self.most_scopes:
            raise InvalidArgument("scopes", f"lists {scopes}: a watcher names at most"
                                  f" {self.most_scopes} (watch.max_scopes); name none to"
                                  " watch every scope")
        self._make_room(joining, internal)

    def add(self, scopes: Iterable[Scope], internal: bool = False) -> Subscription:
        """A new watcher's queue. Raises ShuttingDown after close_all(), Busy while `most`
        watch already (review 35: behind a storm of trips fanned out to 3,000 watchers that
        never read, a panic waited past its caller's deadline, and gRPC dropped it unread).
        Busy is UNAVAILABLE, a retry later: RESOURCE_EXHAUSTED tells a watcher to resume.
        `internal`: as admit()'s."""
        self._make_room(internal=internal)
        subscription = Subscription(frozenset(scopes), self.queue_size, self.monotonic)
        (self._internal if internal else self._subscriptions).add(subscription)
        return subscription

    def _make_room(self, joining: int = 0, internal: bool = False) -> None:
        if self._closed:
            raise ShuttingDown("the sidecar is shutting down; resubscribe to another"
                               " or after its restart")
        now = self.monotonic()
        pool, most = (self._internal, self.most_internal) if internal \
            else (self._subscriptions, self.most)
        if len(pool) + joining >= most and not self._end_a_stuck_one(pool, now):
            if internal:
                raise Busy(f"the fan-out process has {most} streams here already; its"
                           " watcher may try again shortly")
            raise Busy(f"{self.most} watchers already ({self.most_key}): each costs"
                       " every transition a write; watch fewer scopes from one stream, or"
                       " resubscribe later")

    def _end_a_stuck_one(self, pool: set[Subscription], now: float) -> bool:
        """End the watch of `pool` whose stream has been held sending longest, if over
        `stuck_s` (review 43c: 100 streams of a peer that read nothing held every slot, and
        no operator could watch, while no transition came to overflow their queues)."""
        stuck = max(pool, key=lambda s: s.stuck_for(now), default=None)
        if stuck is None or stuck.stuck_for(now) <= self.stuck_s:
            return False
        places = "the fan-out process's places" if pool is self._internal else self.most_key
        self.end(stuck, f"its place was given to another watcher after its stream sent"
                 f" nothing for {now - stuck.came_at:.1f} s ({places})")
        return True

    def end(self, subscription: Subscription, why: str) -> None:
        """End one watch for room (a stuck one): its place is given up, and it is told
        `why` once its stream takes a message again."""
        self.remove(subscription)
        subscription.end(why)

    def remove(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        self._internal.discard(subscription)

    def publish(self, transitions: Iterable[Published]) -> None:
        """Hand transitions to every matching watcher; never waits."""
        for transition in transitions:
            for pool in (self._subscriptions, self._internal):
                for subscription in list(pool):
                    if subscription.matches(transition) \
                            and not subscription.offer(transition):
                        pool.discard(subscription)

    def close_all(self) -> None:
        """End every watch (after what each has queued) and refuse new ones: shutdown."""
        self._closed = True
        self.end_all()

    def end_all(self, why: str = "") -> None:
        """End every watch after what each has queued, with ShuttingDown saying `why`; new
        ones are still taken (the fan-out's feed lost, and opened again)."""
        for pool in (self._subscriptions, self._internal):
            for subscription in pool:
                subscription.close(why)
            pool.clear()
