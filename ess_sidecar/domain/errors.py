"""Domain errors: each names the condition; the gRPC adapter maps them to status codes."""

from __future__ import annotations


class GuardError(Exception):
    """Base of every error the guard raises on purpose."""


class InvalidArgument(GuardError):
    """Bad input, naming the offending field; nothing was changed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ResetRefused(GuardError):
    """A reset was refused: cooldown not elapsed, or a breaker condition still holds."""

    def __init__(self, message: str, until: float | None = None) -> None:
        super().__init__(message)
        self.until = until


class Unauthenticated(GuardError):
    """No credentials, or credentials that match no principal; nothing was changed."""


class PermissionDenied(GuardError):
    """The principal's role does not allow this; nothing was changed."""


class DrillRefused(GuardError):
    """A drill was asked for on a scope that is not ARMED; nothing was changed."""


class ResyncRequired(GuardError):
    """A watcher asked for history that is no longer kept, or fell too far behind."""


class SubscriberTooSlow(ResyncRequired):
    """A watcher's bounded queue overflowed; it must resubscribe from its last version."""


class ShuttingDown(GuardError):
    """The sidecar is stopping; callers retry elsewhere or later."""


class Busy(GuardError):
    """The sidecar serves as many of these as it may (watchers); callers retry later."""


class CapacityExceeded(GuardError):
    """A hard cap on what the sidecar keeps in memory was reached; nothing was changed
    but what failing closed needs."""


class StoreUnavailable(GuardError):
    """The state store could not make a transition durable; the guard fails closed."""


class StoreBusy(StoreUnavailable):
    """Another process held the state store's write lock past the store's busy timeout:
    nothing was written, and the same write may succeed if tried again."""


class StoredUnsealed(StoreUnavailable):
    """The transitions were stored (committed), but the store could not vouch for them
    (its seal was not written): a restart keeps them, and the store writes nothing more
    until it can vouch for what it holds."""


class StoreDamaged(StoreUnavailable):
    """The state on disk is not what was acknowledged (a broken hash chain, a file behind
    its seal, a deleted file, a journal that disagrees with the store): fail closed."""


class InvalidConfig(GuardError):
    """A configuration value is wrong; the message names the key. The sidecar refuses to start."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
