"""In-memory state store: the StateStore contract without a disk, for tests of the service."""

from __future__ import annotations

from collections.abc import Sequence

from ...domain.errors import StoreUnavailable
from ...domain.scopes import Scope
from ...domain.states import State, Transition
from ...ports import EventQuery, StateStore, StoredRegistration, StoredState


class InMemoryStateStore(StateStore):
    """Everything in dicts, with the same versioning and pruning rules as SqliteStateStore.

    Switches for testing the service's fail-closed paths:
    - `fail_next_append = True`: the next append raises StoreUnavailable, records nothing,
      and clears the switch.
    - `fail_load = True`: load() raises StoreUnavailable (an unreadable store at start-up).
    After close() every call raises StoreUnavailable, as a closed real store would.
    """

    def __init__(self, keep_events: int = 0) -> None:
        if keep_events < 0:
            raise ValueError(f"keep_events must be >= 0, not {keep_events}")
        self.keep_events = keep_events
        self.fail_next_append = False
        self.fail_load = False
        self.closed = False
        self._events: dict[int, Transition] = {}  # insertion order is version order
        self._latched: dict[Scope, int] = {}  # scope -> version of its non-ARMED state
        self._registrations: dict[tuple[str, Scope], StoredRegistration] = {}
        self._feeds: dict[Scope, None] = {}  # in the order first saved
        self._last_version = 0
        self._pruned_through = 0  # highest version ever pruned

    def load(self) -> StoredState:
        self._check_open()
        if self.fail_load:
            raise StoreUnavailable("in-memory state store: load failed (fail_load is set)")
        return StoredState(
            current=[self._events[v] for v in sorted(self._latched.values())],
            version=self._last_version, pruned_through=self._pruned_through,
            registrations=[r for _, r in sorted(self._registrations.items(),
                                                key=lambda item: (item[0][0], str(item[0][1])))],
            feeds=list(self._feeds))

    def append(self, transitions: Sequence[Transition], prune: bool = True) -> None:
        self._check_open()
        if self.fail_next_append:
            self.fail_next_append = False
            raise StoreUnavailable("in-memory state store: append failed (fail_next_append)")
        last = self._last_version
        for t in transitions:  # all checked before any is recorded: append is atomic
            if t.version <= last:
                raise ValueError(f"transition version {t.version} is not above {last}")
            last = t.version
        for t in transitions:
            self._events[t.version] = t
            if t.state is State.ARMED:
                self._latched.pop(t.scope, None)
            else:
                self._latched[t.scope] = t.version
        self._last_version = last
        if prune and self.keep_events:
            self._prune(transitions)

    def events(self, query: EventQuery) -> list[Transition]:
        self._check_open()
        found: list[Transition] = []
        for t in reversed(list(self._events.values())):  # a copy: written meanwhile
            if len(found) >= query.limit:
                break
            if _matches(t, query):
                found.append(t)
        return found

    def events_after(self, version: int, limit: int) -> list[Transition]:
        self._check_open()
        # Behind a pruned hole only the gap-free tail is returned, as SqliteStateStore does,
        # so the reader sees the first version is not the one it asked for and resyncs.
        floor = max(version, self._pruned_through)
        return [t for v, t in list(self._events.items()) if v > floor][:max(limit, 0)]

    def save_registration(self, executor_id: str, scope: Scope, ttl_s: float,
                          owner: str = "") -> None:
        self._check_open()
        self._registrations[(executor_id, scope)] = StoredRegistration(executor_id, scope,
                                                                       ttl_s, owner)

    def delete_registration(self, executor_id: str, scope: Scope) -> None:
        self._check_open()
        self._registrations.pop((executor_id, scope), None)

    def save_feeds(self, scopes: Sequence[Scope]) -> None:
        self._check_open()
        for scope in scopes:
            self._feeds.setdefault(scope)

    def close(self) -> None:
        self.closed = True

    def _prune(self, transitions: Sequence[Transition]) -> None:
        # as sqlite.py: versions older than the newest keep_events, never the append just made
        through = min(transitions[-1].version - self.keep_events, transitions[0].version - 1)
        latched = set(self._latched.values())
        doomed = [v for v in self._events if v <= through and v not in latched]
        for v in doomed:
            del self._events[v]
        if doomed:
            self._pruned_through = max(self._pruned_through, doomed[-1])

    def _check_open(self) -> None:
        if self.closed:
            raise StoreUnavailable("in-memory state store is closed")


def _matches(t: Transition, query: EventQuery) -> bool:
    return ((query.scope is None or t.scope == query.scope)
            and (query.since is None or t.time >= query.since)
            and (query.until is None or t.time < query.until)
            and (query.before_version is None or t.version < query.before_version))
