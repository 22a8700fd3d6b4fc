"""The composition root: the only place that chooses implementations."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from .adapters.storage.sqlite import SqliteStateStore
from .adapters.storage.unavailable import UnavailableStateStore
from .domain.engine import GuardEngine
from .domain.errors import StoreUnavailable
from .ports import Clock, StateStore, StoredState, SystemClock
from .service import Guard
from .settings import Settings
from .watch import Subscribers

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    guard: Guard
    store: StateStore


def open_store(settings: Settings) -> tuple[StateStore, StoredState | None, str]:
    """The configured store and what it holds, or an unavailable store and why."""
    try:
        store = SqliteStateStore(settings.store.path, keep_events=settings.store.keep_events)
        return store, store.load(), ""
    except StoreUnavailable as error:
        reason = f"state store unreadable: {error}"
        return UnavailableStateStore(reason), None, reason


def build(settings: Settings, clock: Clock | None = None) -> App:
    """Load the latched state and wire the guard. An unreadable store starts the sidecar
    with GLOBAL tripped (in memory) and the reason, rather than not at all."""
    clock = clock or SystemClock()
    engine = GuardEngine(settings.guard_config(), decision_prefix=secrets.token_hex(4))
    store, stored, failure = open_store(settings)
    guard = Guard(engine, store, clock, Subscribers(settings.watch.queue_size))
    if stored is not None:
        engine.restore(stored.current, stored.version)
        engine.heartbeats.restore(stored.registrations, clock.now())
        log.info("state loaded from %s: version %d, %d scope(s) not ARMED",
                 settings.store.path, stored.version, len(stored.current))
    else:
        guard.fail_closed(failure)
    return App(settings, guard, store)
