"""A plan: the transitions one command causes, checked against state not yet applied."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .approvals import PendingReset
from .scopes import Scope
from .states import Cause, Directive, State, Transition, TriggerMode, TriggerReason


class Plan:
    def __init__(self, version: int, current: Callable[[Scope], Transition | None],
                 now: float, auto_rearms: Callable[[Scope, str], bool]) -> None:
        self.now = now
        self.transitions: list[Transition] = []
        # Four-eyes: a reset that now waits for a second operator (and changed nothing).
        self.pending_reset: PendingReset | None = None
        # A command that failed closed (a cap was reached): its error, after the plan's
        # transitions are stored.
        self.refusal = ""
        self._version = version
        self._current = current
        self._auto_rearms = auto_rearms
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
             directives: Iterable[Directive] = (), drill: bool = False) -> Transition | None:
        """Restrict a scope. Never loosens: a trip that lands on an equal or stricter
        restriction keeps that state, and is recorded only when it would otherwise be lost
        (see _relatches) or brings directives the scope's latch lacks (directives
        accumulate). A trip during COOLING_DOWN starts over instead of re-arming: a halt
        trips, and so does a REDUCE_ONLY trip, since REDUCE_ONLY would loosen it."""
        target = State.TRIPPED if mode is TriggerMode.HALT else State.REDUCE_ONLY
        state = self.state_of(scope)
        if state is State.COOLING_DOWN and target is State.REDUCE_ONLY:
            target = State.TRIPPED
            reason = f"{reason} (REDUCE_ONLY while COOLING_DOWN: held TRIPPED)"
        directives = tuple(directives)
        if state is State.TRIPPED or state is target:
            current = self.current(scope)
            if current is None:
                return None
            merged = tuple(dict.fromkeys((*current.directives, *directives)))
            if merged == current.directives \
                    and not self._relatches(current, cause, scope, breaker, drill):
                return None
            target, directives = state, merged
        return self.move(scope, target, cause, reason, actor, breaker=breaker,
                         reason_code=reason_code, directives=directives, drill=drill)

    def _relatches(self, current: Transition, cause: Cause, scope: Scope, breaker: str,
                   drill: bool) -> bool:
        """Anything real over a drill's trip (which is reset without cooldown or second
        approver), an operator's trigger over an automatic restriction (so its directives
        are published and no auto re-arm can lift it), or a breaker that resumes only by
        hand over one that would re-arm by itself."""
        if current.drill:
            return not drill
        if cause is Cause.TRIGGER:
            return current.cause is not Cause.TRIGGER
        return (self._auto_rearms(current.scope, current.breaker)
                and not self._auto_rearms(scope, breaker))
