"""A plan: the transitions one command causes, checked against state not yet applied."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .approvals import PendingReset
from .scopes import Scope
from .states import SEVERITY, Cause, Directive, Latch, State, Transition, TriggerMode, \
    TriggerReason, latch_name


class Plan:
    def __init__(self, version: int, current: Callable[[Scope], Transition | None],
                 now: float, rearms: Callable[[Scope, str], bool | None]) -> None:
        """`rearms(scope, latch name)`: whether the rule in force re-arms that latch by
        itself (None: no breaker's), kept in each latch set (Latch.auto_rearm)."""
        self.now = now
        self.transitions: list[Transition] = []
        # Four-eyes: a reset that now waits for a second operator (and changed nothing).
        self.pending_reset: PendingReset | None = None
        # A command that failed closed (a cap was reached): its error, after the plan's
        # transitions are stored.
        self.refusal = ""
        self._version = version
        self._current = current
        self._rearms = rearms
        self._pending: dict[Scope, Transition] = {}

    def current(self, scope: Scope) -> Transition | None:
        """The scope's latest transition, planned or applied; None when ARMED."""
        if scope in self._pending:
            pending = self._pending[scope]
            return None if pending.state is State.ARMED else pending
        return self._current(scope)

    def state_of(self, scope: Scope) -> State:
        current = self.current(scope)
        return current.state if current else State.ARMED

    def move(self, scope: Scope, state: State, cause: Cause, reason: str, actor: str,
             **details: object) -> Transition:
        self._version += 1
        transition = Transition(version=self._version, time=self.now, scope=scope,
                                previous=self.state_of(scope), state=state, cause=cause,
                                reason=reason, actor=actor, **details)  # type: ignore[arg-type]
        self._pending[scope] = transition
        self.transitions.append(transition)
        return transition

    def trip(self, scope: Scope, mode: TriggerMode, cause: Cause, reason: str, actor: str,
             breaker: str = "", reason_code: TriggerReason | None = None,
             directives: Iterable[Directive] = (), drill: bool = False,
             renew: bool = False) -> Transition | None:
        """Restrict a scope: set the latch of what trips it (a breaker's own, or the
        trigger's, the drill's, the system's), or make it stricter. The scope's state is
        its most severe latch, so a trip never loosens it and never replaces another
        restriction: each stays until a reset names it. Recorded only when the latches
        or the directives change (directives accumulate), or when `renew` (a Trigger:
        somebody asked for this stop now), which restarts the latch's cooldown and gives
        the scope a new version, so that a reset or an approval made before it lifts
        nothing (review 31). A trip during COOLING_DOWN
        starts over, and one in REDUCE_ONLY mode then holds the scope TRIPPED, since
        REDUCE_ONLY would loosen it."""
        target = State.TRIPPED if mode is TriggerMode.HALT else State.REDUCE_ONLY
        state = self.state_of(scope)
        if state is State.COOLING_DOWN and target is State.REDUCE_ONLY:
            target = State.TRIPPED
            reason = f"{reason} (REDUCE_ONLY while COOLING_DOWN: held TRIPPED)"
        current = self.current(scope)
        held = {latch.name: latch for latch in current.held()} if current else {}
        name = latch_name(cause, breaker, drill)
        known = held.get(name)
        directives = tuple(directives)
        merged = tuple(dict.fromkeys((*current.directives, *directives))) \
            if current and held else directives
        if known is not None and SEVERITY[known.state] >= SEVERITY[target] \
                and merged == current.directives and not renew:  # type: ignore[union-attr]
            return None
        # A latch set to wait for a reset still waits, made stricter or renewed.
        rearms = False if known is not None and known.auto_rearm is False \
            else self._rearms(scope, name)
        if known is None or SEVERITY[target] > SEVERITY[known.state]:
            held[name] = Latch(name, target, self.now, self._version + 1, rearms)
        else:  # new directives (a panic after a halt), or renewed: its cooldown restarts
            held[name] = Latch(name, known.state, self.now, self._version + 1, rearms)
        latches = tuple(held.values())
        return self.move(scope, strictest(latches), cause, reason, actor, breaker=str(breaker),
                         reason_code=reason_code, directives=merged, drill=drill,
                         latches=latches)

    def clear(self, scope: Scope, names: Iterable[str], cause: Cause, reason: str, actor: str,
              rearm_delay_s: float, **details: object) -> Transition:
        """Lift these latches: the scope keeps the state of those left, or, with none
        left, resumes (COOLING_DOWN for rearm_delay_s, else ARMED)."""
        current = self.current(scope)
        gone = set(names)
        left = tuple(l for l in (current.held() if current else ()) if l.name not in gone)
        if left:
            return self.move(scope, strictest(left), cause, reason, actor, latches=left,
                             directives=current.directives if current else (), **details)
        if rearm_delay_s > 0:
            return self.move(scope, State.COOLING_DOWN, cause, reason, actor,
                             rearm_at=self.now + rearm_delay_s, **details)
        return self.move(scope, State.ARMED, cause, reason, actor, **details)


def strictest(latches: Iterable[Latch]) -> State:
    return max((latch.state for latch in latches), key=SEVERITY.__getitem__)

