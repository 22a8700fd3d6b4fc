"""The dead-man's switch: executors that stop heartbeating within their TTL trip a scope."""

from __future__ import annotations

from dataclasses import dataclass

from .scopes import Scope

MAX_TTL_S = 3600.0


@dataclass
class Registration:
    executor_id: str
    scope: Scope
    ttl_s: float
    last_seen: float
    lost: bool = False


class Heartbeats:
    def __init__(self) -> None:
        self._registrations: dict[str, Registration] = {}

    def beat(self, executor_id: str, scope: Scope, ttl_s: float, now: float) -> bool:
        """Record a heartbeat; True when the registration is new or changed (persist it)."""
        known = self._registrations.get(executor_id)
        if known is not None and known.scope == scope and known.ttl_s == ttl_s:
            known.last_seen, known.lost = now, False
            return False
        self._registrations[executor_id] = Registration(executor_id, scope, ttl_s, now)
        return True

    def deregister(self, executor_id: str) -> bool:
        return self._registrations.pop(executor_id, None) is not None

    def restore(self, registrations: list[tuple[str, Scope, float]], now: float) -> None:
        """After a restart every known executor gets one full TTL from now."""
        for executor_id, scope, ttl_s in registrations:
            self._registrations[executor_id] = Registration(executor_id, scope, ttl_s, now)

    def lapse(self, now: float) -> list[Registration]:
        """Registrations whose TTL just passed; each is reported once until it beats again."""
        lapsed = []
        for registration in self._registrations.values():
            if not registration.lost and now - registration.last_seen > registration.ttl_s:
                registration.lost = True
                lapsed.append(registration)
        return lapsed

    def lost(self, scope: Scope) -> bool:
        return any(r.lost and r.scope == scope for r in self._registrations.values())

    def registrations(self) -> list[Registration]:
        return list(self._registrations.values())
