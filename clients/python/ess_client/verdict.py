"""The answer to "may I send this order?": a Verdict, from the sidecar or from a failure."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ess.v1 import guard_pb2 as pb

KNOWN_REASONS = frozenset(pb.DecisionReason.values()) - {pb.DECISION_REASON_UNSPECIFIED}


class Failure(str, enum.Enum):
    """Why the sidecar's decision could not be used; each one is a denial unless fail-open."""

    DEADLINE = "deadline"            # no answer within the per-check timeout
    UNAVAILABLE = "unavailable"      # sidecar unreachable or shutting down
    STREAM_BROKEN = "stream_broken"  # the stream ended or failed with another status
    REQUEST_ERROR = "request_error"  # the sidecar rejected the order as bad input
    MALFORMED = "malformed"          # an answer this client cannot trust
    REFUSED = "refused"              # the sidecar refused the stream (auth, unimplemented)
    CLIENT_ERROR = "client_error"    # bad order types, a closed client, or a client bug

    @property
    def is_connectivity(self) -> bool:
        """True for the causes `fail_open` may flip: the sidecar could not be heard from.

        A bad order or an answer that cannot be understood is never a reason to trade."""
        return self in (Failure.DEADLINE, Failure.UNAVAILABLE, Failure.STREAM_BROKEN)


@dataclass(frozen=True, slots=True)
class Verdict:
    """`allowed` is the only field an executor must obey; `failure` is None for real decisions.

    `reason` is an `ess.v1.DecisionReason` value (UNSPECIFIED when `failure` is set);
    `field` names the offending order field of a REQUEST_ERROR."""

    allowed: bool
    reason: int = pb.DECISION_REASON_UNSPECIFIED
    message: str = ""
    failure: Failure | None = None
    field: str = ""
    state_version: int = 0
    decision_id: str = ""
    blocking_scope: str = ""
    client_order_id: str = ""  # the order's id: report its fills and updates with it

    def __bool__(self) -> bool:
        """`allowed`, so that `if await client.check(...):` sends only what was allowed
        (review 53b: every Verdict was true, a denial's too)."""
        return self.allowed

    @property
    def reason_name(self) -> str:
        """The reason without its prefix, e.g. "SCOPE_TRIPPED"; the failure value if failed."""
        if self.failure is not None:
            return self.failure.value
        return pb.DecisionReason.Name(self.reason).removeprefix("DECISION_REASON_")


def failed(cause: Failure, message: str, field: str = "") -> Verdict:
    """A fail-closed denial for `cause`."""
    return Verdict(allowed=False, message=message, failure=cause, field=field)


def late(verdict: Verdict, is_late: bool, timeout: float) -> Verdict:
    """The verdict of an answer that came `is_late`, after `timeout` seconds: an allow is
    a DEADLINE failure (the order's moment has passed); anything else stands as it came,
    never a failure fail-open may flip (review 40a: a denial read late was allowed)."""
    if is_late and verdict.allowed:
        return failed(Failure.DEADLINE, f"answered after {timeout * 1e3:g} ms")
    return verdict


def scope_text(scope: pb.Scope) -> str:
    """"GLOBAL" or "KIND:id", the way operators write scopes."""
    kind = pb.ScopeKind.Name(scope.kind).removeprefix("SCOPE_KIND_")
    return kind if scope.kind == pb.SCOPE_KIND_GLOBAL else f"{kind}:{scope.id}"


def verdict_from_answer(answer: pb.CheckOrderStreamResponse) -> Verdict:
    """Trust an answer only if it is complete and self-consistent; anything else denies."""
    kind = answer.WhichOneof("result")
    if kind == "error":
        error = answer.error
        return failed(Failure.REQUEST_ERROR, error.message or "the sidecar rejected the order",
                      error.field)
    if kind != "decision":
        return failed(Failure.MALFORMED, "answer carries neither a decision nor an error")
    decision = answer.decision
    if decision.reason not in KNOWN_REASONS:
        return failed(Failure.MALFORMED, f"unknown decision reason {decision.reason}")
    if decision.allowed != (decision.reason == pb.DECISION_REASON_ALLOWED):
        return failed(Failure.MALFORMED,
                      f"allowed={decision.allowed} contradicts reason {decision.reason}")
    scope = scope_text(decision.blocking_scope) if decision.HasField("blocking_scope") else ""
    return Verdict(allowed=decision.allowed, reason=decision.reason, message=decision.message,
                   state_version=decision.state_version, decision_id=decision.decision_id,
                   blocking_scope=scope)
