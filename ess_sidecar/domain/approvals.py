"""Four-eyes resets: a reset takes effect only when a second, different operator approves it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import ResetRefused
from .scopes import Scope


@dataclass(frozen=True)
class ApprovalPolicy:
    required: int = 1  # operators who must reset a scope; 2 is four-eyes
    window_s: float = 300.0  # how long the first reset waits for the second


@dataclass(frozen=True)
class PendingReset:
    """A reset waiting for its second operator. It approves one trip: if the scope's
    state changes meanwhile (trip_version moves on), the request is void."""

    scope: Scope
    trip_version: int
    requested_by: str
    reason: str
    force: bool
    expires_at: float
    latches: tuple[str, ...] = ()  # the latches it lifts
    credential: str = ""  # which credential of requested_by made it ("": not known)


class Approvals:
    """Pending resets awaiting a second operator. Held in memory, and rebuilt after a
    restart by replaying the journaled reset requests (ResetAsked), expiry included."""

    def __init__(self, policy: ApprovalPolicy) -> None:
        self.policy = policy
        self._pending: dict[Scope, PendingReset] = {}

    @property
    def required(self) -> bool:
        return self.policy.required > 1

    def pending(self, scope: Scope, trip_version: int, now: float) -> PendingReset | None:
        """The live request to reset this trip of the scope, if any. A read: one expired or
        of another trip stays until a reset of the scope replaces it (review 39g: dropped
        by a GetState, which is not journaled, it lived on in a restart)."""
        pending = self._pending.get(scope)
        if pending is None or now >= pending.expires_at or pending.trip_version != trip_version:
            return None
        return pending

    def any_pending(self, now: float, version_of: Callable[[Scope], int]) -> bool:
        """Whether a live request's expiry is still ahead (`version_of`: a scope's trip)."""
        return any(now < pending.expires_at and pending.trip_version == version_of(scope)
                   for scope, pending in self._pending.items())

    def requester(self, scope: Scope) -> tuple[str, str]:
        """Who asked for the reset of `scope` pending (maybe expired, or void), and with
        which credential; ("", "") if none."""
        pending = self._pending.get(scope)
        return (pending.requested_by, pending.credential) if pending is not None else ("", "")

    def review(self, scope: Scope, trip_version: int, actor: str, reason: str, force: bool,
               now: float, latches: tuple[str, ...] = (), void: bool = False,
               credential: str = "", expires_at: float | None = None) -> PendingReset:
        """A reset by `actor`: the pending request it approves, or a new pending request
        (return value's requested_by is then `actor`). ResetRefused when the same operator
        asks again, or asks with a different force than the pending request. `void`: the
        pending request is void (its requester, or the credential it came with, is no
        longer an operator's), and `actor`'s (with `credential`) is a new one.
        `expires_at`: a new request's expiry as the process that took it set it (a
        replay's), unless the window in force now ends it sooner (review 55b: a request
        that had expired came back when a restart lengthened the window, and one more
        operator's reset lifted the scope)."""
        if void:
            self.discard(scope)
        pending = self.pending(scope, trip_version, now)
        if pending is None:
            expiry = now + self.policy.window_s
            pending = PendingReset(scope, trip_version, actor, reason, force,
                                   expiry if expires_at is None else min(expiry, expires_at),
                                   latches, credential)
            self._pending[scope] = pending
            return pending
        if pending.requested_by == actor:
            raise ResetRefused(f"{scope}: {actor} already requested this reset; a different"
                               " operator must approve it")
        if set(pending.latches) != set(latches):
            raise ResetRefused(f"{scope}: the pending reset by {pending.requested_by} lifts"
                               f" {', '.join(pending.latches)}; approve it for the same"
                               " latches, or let it expire")
        if pending.force != force:
            raise ResetRefused(f"{scope}: the pending reset by {pending.requested_by} has"
                               f" force={str(pending.force).lower()}; approve it with the"
                               " same force, or let it expire")
        return pending

    def discard(self, scope: Scope) -> None:
        self._pending.pop(scope, None)
