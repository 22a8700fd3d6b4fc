"""A thin, fail-closed asyncio client for the ESS sidecar (ess.v1.GuardService)."""

from .client import DEFAULT_CHECK_TIMEOUT_S, GuardClient
from .convert import to_scope
from .heartbeat import Heartbeat
from .verdict import Failure, Verdict

__all__ = ["DEFAULT_CHECK_TIMEOUT_S", "Failure", "GuardClient", "Heartbeat", "Verdict", "to_scope"]
