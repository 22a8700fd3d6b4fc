"""Fan-out of transitions to WatchState subscribers, each with a bounded queue."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from .domain.errors import Busy, ShuttingDown, SubscriberTooSlow
from .domain.scopes import Scope
from .domain.states import Transition


class Subscription:
    """One watcher's queue. A watcher that falls `queue_size` transitions behind is cut off
    (its queued transitions are still delivered, then SubscriberTooSlow) rather than
    slowing the publisher or anyone else."""

    def __init__(self, scopes: frozenset[Scope], queue_size: int) -> None:
        self.scopes = scopes
        self.delivered = 0
        self._queue_size = queue_size
        # Unbounded underneath so close() always fits; offer() enforces the bound.
        self._queue: asyncio.Queue[Transition | None] = asyncio.Queue()
        self._overflowed = False

    def matches(self, transition: Transition) -> bool:
        return not self.scopes or transition.scope in self.scopes

    def offer(self, transition: Transition) -> bool:
        """Queue a transition without waiting; False if the watcher is too slow."""
        if self._queue.qsize() >= self._queue_size:
            self._overflowed = True
            return False
        self._queue.put_nowait(transition)
        return True

    def close(self) -> None:
        """End the stream after what is queued (shutdown)."""
        self._queue.put_nowait(None)

    async def next(self, timeout: float) -> Transition | None:
        """The next transition, or None when `timeout` passes with none queued (so every
        transition published so far has been delivered: a heartbeat may say so). Raises
        SubscriberTooSlow once the queue is drained after an overflow, and ShuttingDown
        after close()."""
        if self._overflowed and self._queue.empty():
            raise SubscriberTooSlow(f"watcher fell more than {self._queue_size} transitions"
                                    f" behind; resubscribe with from_version={self.delivered}")
        queue = self._queue
        if not queue.empty():  # queued already (a storm): no timer to arm and cancel
            return self._delivered(queue.get_nowait())
        try:
            async with asyncio.timeout(timeout):  # unlike wait_for, no task per message
                transition = await self._queue.get()
        except TimeoutError:
            if self._queue.empty():
                return None  # quiet: the caller's heartbeat may carry the current version
            # A transition queued as the timeout fired: deliver it before any heartbeat,
            # which would otherwise carry its version first and let a resume skip it.
            transition = self._queue.get_nowait()
        return self._delivered(transition)

    def _delivered(self, transition: Transition | None) -> Transition:
        if transition is None:
            raise ShuttingDown("the sidecar is shutting down; resubscribe with"
                               f" from_version={self.delivered}")
        self.delivered = transition.version
        return transition


class Subscribers:
    def __init__(self, queue_size: int, most: int = 100) -> None:
        self.queue_size = queue_size
        self.most = most  # watchers at once: each costs every transition a write
        self._subscriptions: set[Subscription] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._subscriptions)

    def add(self, scopes: Iterable[Scope]) -> Subscription:
        """A new watcher's queue. Raises ShuttingDown after close_all(), Busy while `most`
        watch already (review 35: behind a storm of trips fanned out to 3,000 watchers that
        never read, a panic waited past its caller's deadline, and gRPC dropped it unread).
        Busy is UNAVAILABLE, a retry later: RESOURCE_EXHAUSTED tells a watcher to resume."""
        if self._closed:
            raise ShuttingDown("the sidecar is shutting down; resubscribe to another"
                               " or after its restart")
        if len(self._subscriptions) >= self.most:
            raise Busy(f"{self.most} watchers already (watch.max_watchers): each"
                                   " costs every transition a write; watch fewer scopes"
                                   " from one stream, or resubscribe later")
        subscription = Subscription(frozenset(scopes), self.queue_size)
        self._subscriptions.add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, transitions: Iterable[Transition]) -> None:
        """Hand transitions to every matching watcher; never waits."""
        for transition in transitions:
            for subscription in list(self._subscriptions):
                if subscription.matches(transition) and not subscription.offer(transition):
                    self._subscriptions.discard(subscription)

    def close_all(self) -> None:
        """End every watch (after what each has queued) and refuse new ones: shutdown."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()
