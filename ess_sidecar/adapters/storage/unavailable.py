"""The store used when the real one cannot be read at start-up: every call fails."""

from __future__ import annotations

from collections.abc import Sequence

from ...domain.errors import StoreUnavailable
from ...domain.scopes import Scope
from ...domain.states import Transition
from ...ports import EventQuery, StateStore, StoredState


class UnavailableStateStore(StateStore):
    """Keeps the sidecar up (with GLOBAL tripped) so operators can see why, while refusing
    every write: nothing can be made durable until the store is repaired."""

    def __init__(self, reason: str, held: StateStore | None = None) -> None:
        self.reason = reason
        # The store that could not be read, kept open (never written) until close(): it
        # holds the state file's lock, so no second sidecar, and no `ess-sidecar reseal`,
        # touches the files while this process still runs (and writes its journal).
        self._held = held

    @property
    def locked(self) -> bool:
        return self._held is not None and self._held.locked

    def _fail(self) -> StoreUnavailable:
        return StoreUnavailable(self.reason)

    def load(self) -> StoredState:
        raise self._fail()

    def append(self, transitions: Sequence[Transition], prune: bool = True) -> None:
        raise self._fail()

    def events(self, query: EventQuery) -> list[Transition]:
        raise self._fail()

    def events_after(self, version: int, limit: int) -> list[Transition]:
        raise self._fail()

    def save_registration(self, executor_id: str, scope: Scope, ttl_s: float,
                          owner: str = "") -> None:
        raise self._fail()

    def delete_registration(self, executor_id: str, scope: Scope) -> None:
        raise self._fail()

    def save_feeds(self, scopes: Sequence[Scope]) -> None:
        raise self._fail()

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
