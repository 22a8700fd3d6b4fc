"""The dead-man's switch: executors that stop heartbeating within their TTL trip a scope."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import CapacityExceeded
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


class Heartbeats:
    """Registrations keyed by (executor_id, scope): one executor may watch over several
    scopes, and registering or deregistering it for one leaves the others' switches."""

    def __init__(self) -> None:
        self._registrations: dict[tuple[str, Scope], Registration] = {}

    def beat(self, executor_id: str, scope: Scope, ttl_s: float, now: float) -> bool:
        """Record a heartbeat; True when the registration is new or changed (persist it)."""
        known = self._registrations.get((executor_id, scope))
        if known is not None and known.ttl_s == ttl_s:
            known.last_seen, known.lost = now, False
            return False
        if known is None and len(self._registrations) >= MAX_REGISTRATIONS:
            raise CapacityExceeded(f"{MAX_REGISTRATIONS} heartbeat registrations are kept"
                                   " (the most); deregister executors that stopped")
        self._registrations[(executor_id, scope)] = Registration(executor_id, scope, ttl_s, now)
        return True

    def deregister(self, executor_id: str, scope: Scope) -> bool:
        return self._registrations.pop((executor_id, scope), None) is not None

    def restore(self, registrations: list[tuple[str, Scope, float]], now: float) -> None:
        """After a restart with no journal of beats (an upgrade), every known executor
        gets one full TTL from now."""
        for executor_id, scope, ttl_s in registrations:
            self._registrations[(executor_id, scope)] = Registration(executor_id, scope,
                                                                     ttl_s, now)

    def rearm(self, scope: Scope, now: float) -> None:
        """A reset of the scope: an executor whose loss was latched gets a fresh TTL from
        now, so if it is still dead it trips again."""
        for each in self._registrations.values():
            if each.scope == scope and (each.lost or now - each.last_seen > each.ttl_s):
                each.last_seen, each.lost = now, False

    def lapse(self, now: float) -> list[Registration]:
        """Registrations whose TTL has passed and whose loss has not tripped yet."""
        return [r for r in self._registrations.values()
                if not r.lost and now - r.last_seen > r.ttl_s]

    def mark_lost(self, scope: Scope, now: float) -> None:
        """The loss is durable: don't trip again until they beat. Set on apply, not on
        plan, so a trip that could not be stored is planned again."""
        for registration in self._registrations.values():
            if registration.scope == scope and now - registration.last_seen > registration.ttl_s:
                registration.lost = True

    def lapsed(self, scope: Scope, now: float) -> bool:
        """Whether an executor of this scope is past its TTL now: the breaker's condition."""
        return any(r.scope == scope and now - r.last_seen > r.ttl_s
                   for r in self._registrations.values())

    def assume_lapsed(self, scope: Scope) -> None:
        """After a restart, an executor whose loss latched the scope counts as lost until
        it beats again: nothing since shows it came back."""
        for registration in self._registrations.values():
            if registration.scope == scope:
                registration.last_seen = float("-inf")

    def registrations(self) -> list[Registration]:
        return list(self._registrations.values())
