"""The dead-man's switch: executors that stop heartbeating within their TTL trip a scope."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass

from .deadlines import Deadlines
from .errors import CapacityExceeded, PermissionDenied
from .scopes import Scope

MAX_TTL_S = 3600.0
MAX_REGISTRATIONS = 100_000


@dataclass
class Registration:
    executor_id: str
    scope: Scope
    ttl_s: float
    last_seen: float
    lost: bool = False
    # The principal that beats for it: only it may beat or deregister it ("" when it
    # registered with authentication off: anyone may, and the next authenticated beat
    # binds it). docs/design.md, "Heartbeats".
    owner: str = ""
    known_seen: float | None = None  # the journal's last beat, under a restart's assumption

    def past_ttl(self, now: float) -> bool:
        """Silent for longer than its TTL (or counted as lost since a restart)."""
        return now - self.last_seen > self.ttl_s


class Heartbeats:
    """Registrations keyed by (executor_id, scope): one executor may watch over several
    scopes, and registering or deregistering it for one leaves the others' switches."""

    def __init__(self) -> None:
        self._registrations: dict[tuple[str, Scope], Registration] = {}
        # The same registrations by scope: what a trip, a reset or a restore of one scope
        # touches is that scope's, not every one (review 36o: 6,000 executors lapsing at
        # once made 6,000 scans of 6,000 registrations, and held a Trigger 9 s).
        self._by_scope: dict[Scope, dict[str, Registration]] = {}
        self._due: Deadlines[tuple[str, Scope]] = Deadlines()  # when each may lapse

    def beat(self, executor_id: str, scope: Scope, ttl_s: float, now: float,
             owner: str = "") -> bool:
        """Record a heartbeat from `owner` (the caller's principal, "" with authentication
        off); True when the registration is new or changed (persist it). PermissionDenied
        if another principal beats for it: one process must not keep another's switch
        from firing."""
        known = self._registrations.get((executor_id, scope))
        if known is not None:
            _check_owner(known, owner)
            if known.ttl_s == ttl_s and (known.owner or not owner):
                known.last_seen, known.lost, known.known_seen = now, False, None
                self._watch(known)
                return False
            owner = owner or known.owner
        elif len(self._registrations) >= MAX_REGISTRATIONS:
            raise CapacityExceeded(f"{MAX_REGISTRATIONS} heartbeat registrations are kept"
                                   " (the most); deregister executors that stopped")
        self._put(Registration(executor_id, scope, ttl_s, now, owner=owner))
        return True

    def _put(self, registration: Registration) -> None:
        self._registrations[(registration.executor_id, registration.scope)] = registration
        self._by_scope.setdefault(registration.scope, {})[registration.executor_id] = \
            registration
        self._watch(registration)

    def _watch(self, registration: Registration) -> None:
        """Queue it for the time its TTL passes, unless its loss has tripped already (a
        beat, or a reset lifting it, queues it again)."""
        if not registration.lost:
            self._due.schedule((registration.executor_id, registration.scope),
                               registration.last_seen + registration.ttl_s)

    def _of(self, scope: Scope) -> list[Registration]:
        known = self._by_scope.get(scope)
        return list(known.values()) if known is not None else []

    def deregister(self, executor_id: str, scope: Scope, owner: str = "",
                   override: bool = False) -> bool:
        """Forget a registration; only its owner may, unless `override` (an operator
        retiring an executor that is gone). True if there was one."""
        known = self._registrations.get((executor_id, scope))
        if known is None:
            return False
        if not override:
            _check_owner(known, owner)
        del self._registrations[(executor_id, scope)]
        self._due.discard((executor_id, scope))
        of_scope = self._by_scope[scope]
        del of_scope[executor_id]
        if not of_scope:
            del self._by_scope[scope]
        return True

    def owner(self, executor_id: str, scope: Scope) -> str:
        known = self._registrations.get((executor_id, scope))
        return known.owner if known is not None else ""

    def restore(self, registrations: list[tuple[str, Scope, float, str]], now: float,
                lost: frozenset[Scope] = frozenset()) -> None:
        """After a restart with no journal of beats (an upgrade), every known executor
        gets one full TTL from now, but for those of a scope whose loss is latched
        (`lost`): nothing shows they came back, so they count as lost until they beat."""
        for executor_id, scope, ttl_s, owner in registrations:
            gone = scope in lost
            self._put(Registration(executor_id, scope, ttl_s,
                                   float("-inf") if gone else now, gone, owner))

    def rearm(self, scope: Scope, now: float) -> None:
        """A reset of the scope: an executor whose loss was latched gets a fresh TTL from
        now, so if it is still dead it trips again; one only assumed lost (a restart),
        whose last beat the journal holds is within its TTL now, runs from that beat, as
        it does in a sidecar that ran through (review 48g: all its beats known, it
        tripped a TTL after the reset)."""
        for each in self._of(scope):
            if each.lost or now - each.last_seen > each.ttl_s:
                known, each.known_seen = each.known_seen, None
                each.last_seen = known if known is not None and now - known <= each.ttl_s \
                    else now
                each.lost = False
                self._watch(each)

    def lapse(self, now: float) -> list[Registration]:
        """Registrations whose TTL has passed and whose loss has not tripped yet. Only
        those due are looked at; each lapsed one stays due, so the next run finds it
        again until its loss is applied (mark_lost)."""
        lapsed = []
        for key in self._due.pop_due(now):
            registration = self._registrations.get(key)
            if registration is not None:  # else deregistered
                self._watch(registration)
                if _overdue(registration, now):
                    lapsed.append(registration)
        return lapsed

    def overdue(self, executor_id: str, scope: Scope, now: float) -> bool:
        """Whether this registration is among lapse(now)."""
        known = self._registrations.get((executor_id, scope))
        return known is not None and _overdue(known, now)

    def mark_lost(self, scope: Scope, now: float) -> None:
        """The loss is durable: don't trip again until they beat. Set on apply, not on
        plan, so a trip that could not be stored is planned again."""
        for registration in self._of(scope):
            if registration.past_ttl(now):
                registration.lost = True

    def lapsed(self, scope: Scope, now: float) -> bool:
        """Whether an executor of this scope is past its TTL now: the breaker's condition."""
        return any(r.past_ttl(now) for r in self._of(scope))

    def lapse_at(self, scope: Scope, now: float) -> float:
        """When the first executor of this scope not past its TTL now lapses if it does
        not beat (no earlier than `now`); infinity if none is left to lapse."""
        return min((max(r.last_seen + r.ttl_s, now) for r in self._of(scope)
                    if not r.past_ttl(now)), default=float("inf"))

    def assume_lapsed(self, scope: Scope) -> None:
        """After a restart, an executor whose loss latched the scope counts as lost until
        it beats again: nothing since shows it came back (its last beat known kept, for
        a reset: rearm)."""
        for registration in self._of(scope):
            if registration.known_seen is None and registration.last_seen > float("-inf"):
                registration.known_seen = registration.last_seen
            registration.last_seen = float("-inf")
            self._watch(registration)

    def scopes(self) -> Iterable[Scope]:
        """The scopes some executor is registered for."""
        return self._by_scope.keys()

    def registrations(self) -> list[Registration]:
        return list(self._registrations.values())

    def __len__(self) -> int:
        return len(self._registrations)

    def silent_first(self, clock: Callable[[], float], most: int, every: int = 512
                     ) -> Generator[None, None, list[tuple[Registration, float | None, bool]]]:
        """Up to `most` registrations, the longest silent first (those counted as lost
        since a restart before all; ties: the order registered), each with its last beat
        known (None: none) and whether it is past its TTL at `clock()` as the walk ends.
        Yields after every `every` registrations, so that a caller on the event loop bounds
        each slice by time (reviews 56c, 56d: 100,000 picked at once held checks and stops
        18 ms, and a client listing them in a loop made most fail-open checks fail open).
        Those registered at its start are looked at; those deregistered or replaced by its
        end are left out or shown as they are then, and the kept ones ordered by their
        last beats then (review 57c: one deregistered during the walk was listed, and one
        that beat was listed with its new beat among the longest silent)."""
        kept: list[tuple[float, int, Registration]] = []  # the root: the least silent kept
        if most <= 0:
            return []
        for order, registration in enumerate(list(self._registrations.values())):
            item = (-registration.last_seen, -order, registration)  # order is unique: no
            if len(kept) < most:  # Registration is ever compared
                heapq.heappush(kept, item)
            elif item > kept[0]:
                heapq.heapreplace(kept, item)
            if order % every == every - 1:
                yield
        now = clock()
        current = [(order, found) for _, order, r in kept
                   if (found := self._registrations.get((r.executor_id, r.scope))) is not None]
        current.sort(key=lambda each: (each[1].last_seen, -each[0]))
        return [(r, r.known_seen if r.last_seen == float("-inf") else r.last_seen,
                 r.past_ttl(now)) for _, r in current]

    def any_ahead(self) -> bool:
        """Whether an executor's TTL may still be ahead: one is queued, not lost (review
        38i: one past it whose scope was latched already is never marked lost, and
        counted for good; review 46a: every registration was walked, on every run)."""
        return len(self._due) > 0


def _overdue(registration: Registration, now: float) -> bool:
    return not registration.lost and registration.past_ttl(now)


def _check_owner(known: Registration, owner: str) -> None:
    if owner and known.owner and owner != known.owner:
        raise PermissionDenied(f"executor_id {known.executor_id!r} beats for {known.scope} as"
                               f" {known.owner}; {owner} may not beat for it or deregister"
                               " it (an operator may deregister it)")
