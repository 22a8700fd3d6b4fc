"""Start-up: the engine's memory rebuilt from the journal, checked against the store.

The journal replays every command in order (domain/commands.py), so the book, working
orders, breaker evidence, heartbeats and pending approvals are what they were. The store's
latched state is the authority on trips: where the journal ends before the store (an
upgrade from a sidecar without a journal, or entries lost with a power cut), the store's
later transitions are applied and their breakers count as holding until fresh evidence
clears them. Any other disagreement is damage, and raises StoreDamaged.
"""

from __future__ import annotations

import logging

from .domain.engine import GuardEngine
from .domain.errors import GuardError, StoreDamaged
from .ports import JournalEntry, StateStore, StoredState

log = logging.getLogger(__name__)


def replay(engine: GuardEngine, entries: list[JournalEntry]) -> None:
    """Redo every journaled command. Raises StoreDamaged if one does not fit."""
    for number, (command, transitions) in enumerate(entries, 1):
        try:
            engine.replay(command, transitions)
        except (GuardError, ValueError) as error:
            raise StoreDamaged(f"journal entry {number} ({type(command).__name__}) cannot be"
                               f" replayed: {error}") from error


def reconcile(engine: GuardEngine, store: StateStore, stored: StoredState, now: float,
              entries_replayed: bool) -> None:
    """Bring the replayed engine up to the store's latched state, or raise StoreDamaged."""
    replayed = engine.version
    if replayed > stored.version:
        raise StoreDamaged(f"the journal has transitions up to version {replayed} but the"
                           f" state store ends at {stored.version}: the store lost"
                           " acknowledged transitions")
    if replayed < stored.version:
        missing = store.events_after(replayed, stored.version - replayed)
        if [t.version for t in missing] == list(range(replayed + 1, stored.version + 1)):
            engine.apply(missing)
            latched = [t for t in stored.current if t.version > replayed]
        else:  # history pruned: take the latched state as it is
            latched = stored.current
        engine.restore(latched, stored.version, now)  # no evidence for these: assume holding
        log.warning("journal ends at version %d, the store at %d: later trips restored from"
                    " the store, their breakers held until fresh evidence", replayed,
                    stored.version)
    latched = {t.scope: t.version for t in engine.restricted()}
    expected = {t.scope: t.version for t in stored.current}
    if latched != expected:
        differ = sorted(str(s) for s in latched.keys() ^ expected.keys()
                        | {s for s in latched.keys() & expected.keys()
                           if latched[s] != expected[s]})
        raise StoreDamaged(f"the journal and the state store disagree on the latched state"
                           f" of {', '.join(differ[:5])}")
    if not entries_replayed:  # an upgrade: registrations are all the store knows of beats
        engine.heartbeats.restore(stored.registrations, now)
