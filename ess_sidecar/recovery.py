"""Start-up: the engine's memory rebuilt from the journal, checked against the store.

The journal replays every command in order (domain/commands.py), so the book, working
orders, breaker evidence, heartbeats and pending approvals are what they were. The store's
latched state is the authority on trips: where the journal ends before the store (an
upgrade from a sidecar without a journal, a crash between the store's COMMIT and the
journal's record, a record that failed after its write, or entries lost with a power
cut), the store's later transitions are applied (its latched state as it is, if the
history since was pruned), their breakers count as holding until fresh evidence clears
them, and they are journaled (Restored) so that the next start finds the same. Any other
disagreement is damage, and raises StoreDamaged.
"""

from __future__ import annotations

import dataclasses
import logging
import unicodedata
from datetime import datetime, timezone

from .domain.breakers import Breaker, Metric
from .domain.commands import ClockRead, HeartbeatSeen, MetricReported, Restored, TimersRan
from .domain.engine import GuardEngine
from .domain.errors import GuardError, InvalidArgument, StoreDamaged
from .domain.ids import canonical_id
from .domain.scopes import Scope, make_scope
from .domain.states import Transition
from .ports import Journal, JournalEntry, StateStore, StoredState

log = logging.getLogger(__name__)
RESTORED_PER_RECORD = 2_000  # transitions per Restored record: under 64 MiB at 15 KB each


def latest_time(stored: StoredState | None, entries: list[JournalEntry]) -> float:
    """The latest time the state on disk holds (a command's clock reading, a transition's),
    0 if none: the serving clock starts from no earlier (SteadyClock)."""
    latest = max((t.time for t in stored.current), default=0.0) if stored else 0.0
    for command, transitions in entries:
        latest = max(latest, getattr(command, "now", 0.0),
                     max((t.time for t in transitions), default=0.0))
    return latest


def last_clock_read(entries: list[JournalEntry], written_at: float | None = None
                    ) -> ClockRead | None:
    """The serving clock and the system's as last read together (SteadyClock goes on
    from it). A journal an earlier version wrote holds no such reading: then its latest
    record's time and `written_at`, the system's time of its last write (the file's
    mtime), if given (review 43h: an upgrade after a step the earlier version absorbed
    aged everything by it)."""
    read = next((command for command, _ in reversed(entries)
                 if isinstance(command, ClockRead)), None)
    if read is None and entries and written_at is not None:
        read = ClockRead(latest_time(None, entries), written_at)
        log.warning("the journal holds no clock reading (an earlier version wrote it): the"
                    " sidecar stopped when it was last written, by the file's time (%s); a"
                    " copy that did not keep file times loses the downtime",
                    datetime.fromtimestamp(written_at, timezone.utc).isoformat())
    return read


def with_horizons(entries: list[JournalEntry]) -> tuple[list[JournalEntry], bool]:
    """The entries, each timer run written before runs recorded their horizons (stop 55)
    given those of the first later run that has them: the configuration that run had is
    the closest known to what the earlier ones forgot by, and it never changes after (review
    55e: judged by the configuration in force at each start, a retention changed months
    after the upgrade re-judged them, and an order over a limit was allowed). And whether
    some had no later one (then this start records one: with_horizons_recorded)."""
    filled: list[JournalEntry] = []
    later: tuple[float, float, float] | None = None
    lacking = False
    for command, transitions in reversed(entries):
        if type(command) is TimersRan:
            if command.horizons is not None:
                later = command.horizons
            elif later is not None:
                command = dataclasses.replace(command, horizons=later)
            else:
                lacking = True
        filled.append((command, transitions))
    filled.reverse()
    return filled, lacking


def with_horizons_recorded(engine: GuardEngine, journal: Journal, now: float) -> None:
    """A timer run now, recorded with its horizons, for the timer runs the journal holds
    without any (with_horizons): every later start gives them these. Raises
    StoreUnavailable (the journal)."""
    horizons = engine.horizons()
    engine.expire(now, horizons)
    journal.record(TimersRan(now, horizons))


def replay(engine: GuardEngine, entries: list[JournalEntry]) -> None:
    """Redo every journaled command. Raises StoreDamaged if one does not fit. A four-eyes
    request this version's rules refuse is gone, and said so (review 53d: silently)."""
    for number, (command, transitions) in enumerate(entries, 1):
        try:
            engine.replay(command, transitions)
        except (GuardError, ValueError) as error:
            raise StoreDamaged(f"journal entry {number} ({type(command).__name__}) cannot be"
                               f" replayed: {error}") from error
        except Exception as error:  # a fault of ours: start failed closed, not a crash loop
            log.error("journal entry %d cannot be replayed", number, exc_info=error)
            raise StoreDamaged(f"journal entry {number} ({type(command).__name__}) cannot be"
                               f" replayed: internal error ({type(error).__name__}: {error})"
                               ) from error
    for refused in engine.refused_in_replay:
        log.warning("a four-eyes request in the journal is refused by this version's rules,"
                    " so it is gone (ask again): %s", refused)
    engine.refused_in_replay.clear()
    if unnamed := sorted(str(scope) for scope in engine.unnamed_in_replay):
        log.warning("%d scope(s) whose reports the journal holds are no id for this version"
                    " (two spaces in a row), so their evidence is dropped and their feeds are"
                    " not watched: %s", len(unnamed), _first_ten(unnamed))
    engine.unnamed_in_replay.clear()
    if marked := engine.unnamed_legs():
        log.warning("%d account(s) hold positions or orders of a strategy or symbol this"
                    " version refuses (two spaces in a row): only orders that reduce are"
                    " allowed there until a SyncPositions of the account with its open orders"
                    " complete, or a clear of all its orders, leaves none: %s", len(marked),
                    _first_ten(marked))


def _first_ten(names: list[str]) -> str:
    """Up to ten of `names` for a log line, "…" after them if there are more."""
    return ", ".join(names[:10]) + (" …" if len(names) > 10 else "")


def respelled(engine: GuardEngine) -> str:
    """What this process would spell another way or refuses, among the scopes the state
    on disk holds trips and heartbeats of, and the executors it holds heartbeats of (""
    if nothing): a trip or a registration no request can name would block nothing, or
    could never be lifted. Ids are canonical by this Python's Unicode data, and a newer
    one folds some symbols differently (review 37a: "ƛX" upper-cases to "ꟜX" from
    Unicode 16); versions before stop 60 took two spaces in a row (review 55a). Orders,
    fills and snapshots are validated again as they are replayed (their ids as the
    journal holds them: ids.py)."""
    registrations = engine.heartbeats.registrations()
    scopes = [t.scope for t in engine.restricted()] + [r.scope for r in registrations]
    for scope in dict.fromkeys(scopes):
        try:
            spelled = str(make_scope(scope.kind, scope.id))
        except InvalidArgument as error:
            return f"{scope}, stored, is refused by this version ({error}): no request" \
                   " could name its trip or heartbeat. Start the version it ran on before," \
                   " bring the scope back to ARMED there (reset it, or let its cooldown" \
                   " end) or deregister the heartbeat, and trip it again spelled as this" \
                   " version takes it after the upgrade"
        if spelled != str(scope):
            return f"{scope}, stored, is {spelled} for this Python, whose Unicode data" \
                   f" ({unicodedata.unidata_version}) spells it another way: its trip or" \
                   " heartbeat would cover no order. Start the sidecar on the Python it" \
                   " ran on before, reset the scope (or deregister the heartbeat), and" \
                   " trip it again after the upgrade"
    for registration in registrations:
        try:
            canonical_id(registration.executor_id, "executor_id")
        except InvalidArgument as error:
            return f"the heartbeat of {registration.executor_id!r} on {registration.scope}," \
                   f" stored, is refused by this version ({error}): no beat or" \
                   " deregistration could name it, so its scope would trip for good. Start" \
                   " the version it ran on before and deregister it"
    return ""


def reconcile(engine: GuardEngine, store: StateStore, stored: StoredState, now: float,
              entries_replayed: bool, journal: Journal) -> list[Transition]:
    """Bring the replayed engine up to the store's latched state, or raise StoreDamaged.
    What it takes from the store is journaled (Restored), so the next start replays it:
    else a later record would follow a gap, and that start would find the two disagree.
    Returns the transitions taken from the store: a crash may have come before their
    alerts were sent."""
    replayed = engine.version
    restored: list[Transition] = []
    if replayed > stored.version:
        raise StoreDamaged(f"the journal has transitions up to version {replayed} but the"
                           f" state store ends at {stored.version}: the store lost"
                           " acknowledged transitions")
    if replayed < stored.version:
        if stored.pruned_through > replayed:  # history pruned: the latched state as it is
            missing = list(stored.current)
        else:  # every event since, in order, past versions no store write took (a trip
            # in memory alone, failing closed): review 41a, a reset there, its record
            # failed, taken as a gap and left out, made every start fail closed
            missing = store.events_after(replayed, stored.version - replayed)
        parts = [missing[i:i + RESTORED_PER_RECORD]
                 for i in range(0, len(missing), RESTORED_PER_RECORD)] or [[]]
        for number, part in enumerate(parts, 1):
            command = Restored(now, stored.version if number == len(parts)
                               else part[-1].version)
            engine.replay(command, part)
            journal.record(command, part)
        restored = [t for t in missing if t.version > replayed]
        log.warning("journal ends at version %d, the store at %d: later trips restored from"
                    " the store and journaled, their breakers held until fresh evidence",
                    replayed, stored.version)
    # Whole transitions, not only their versions (review 29): another sidecar's journal
    # beside this state file has the same versions, and its trips served in place of
    # this store's (a halt as reduce-only, an operator's trip as a drill's).
    latched = {t.scope: t for t in engine.restricted()}
    expected = {t.scope: t for t in stored.current}
    if latched != expected:
        differ = sorted(str(s) for s in latched.keys() ^ expected.keys()
                        | {s for s in latched.keys() & expected.keys()
                           if latched[s] != expected[s]})
        raise StoreDamaged(f"the journal and the state store disagree on the latched state"
                           f" of {', '.join(differ[:5])}")
    # Registrations the store has and the journal does not (no journal: an upgrade; or a
    # reseal cut the records of their beats, review 20) get a full TTL from now, journaled
    # as beats at `now` so that the next start agrees: a dead executor must still trip.
    # One the journal ended is not: its delete from the store failed, or a crash came first.
    # Those of a scope whose heartbeat_lost is latched count as lost until they beat, and
    # are not journaled, so the next start finds them lacking and does the same (review
    # 46a: a full TTL from now made the latch stop holding, and an auto re-arm lifted it
    # at the first timer run though the executor never beat again).
    known = {(r.executor_id, r.scope) for r in engine.heartbeats.registrations()}
    known |= engine.deregistered_in_replay
    engine.deregistered_in_replay.clear()
    lacking = [r for r in stored.registrations if (r[0], r[1]) not in known]
    if lacking:
        lost = frozenset(t.scope for t in engine.restricted()
                         if any(latch.name == Breaker.HEARTBEAT_LOST for latch in t.held()))
        engine.heartbeats.restore(lacking, now, lost)
        for executor_id, scope, ttl_s, owner in lacking:
            if scope not in lost:
                journal.record(HeartbeatSeen(executor_id, scope, ttl_s, now, owner=owner))
        if entries_replayed:
            log.warning("%d heartbeat registration(s) the journal lacks restored from the"
                        " store, each with a full TTL from now, or lost where the scope's"
                        " heartbeat_lost is latched", len(lacking))
    restore_feeds(engine, stored.feeds, now, journal)
    # And those the journal has and the store does not (ticked before the store kept
    # feeds: an upgrade), so that a journal lost later loses none of them.
    kept = set(stored.feeds)
    if unsaved := [scope for scope in engine.breakers.feeds() if scope not in kept]:
        store.save_feeds(unsaved)
    return restored


def restore_feeds(engine: GuardEngine, feeds: list[Scope], now: float,
                  journal: Journal) -> None:
    """Feeds the store has and the journal does not (a reseal cut their ticks, or the
    journal was lost or set aside) tick at `now`, journaled so that the next start agrees:
    a full window from the start, so a dead feed still goes stale (known gap 21: they were
    unknown until they ticked again, and orders on a dead feed's symbol were allowed). One
    whose staleness is latched is watched already (assumed stale: no tick is made up for
    it). An id this Python spells another way is restored as it spells it: that is the
    scope its ticks, and its orders, name."""
    lacking = []
    for stored in feeds:
        try:
            scope = make_scope(stored.kind, stored.id)
        except InvalidArgument as error:
            log.warning("a feed the store watches is no id for this Python, so it is not"
                        " watched: %s (%s)", stored, error)
            continue
        if not engine.breakers.ticked(scope):
            lacking.append(scope)
    for scope in lacking:
        command = MetricReported(scope, Metric.DATA_FEED_TICK, 1.0, now, True)
        engine.replay(command, ())
        journal.record(command)
    if lacking:  # a feeds table with no journal is one lost too, unlike registrations
        log.warning("%d data feed(s) the journal lacks restored from the store, each with a"
                    " full window from now: %s", len(lacking),
                    _first_ten([str(scope) for scope in lacking]))
