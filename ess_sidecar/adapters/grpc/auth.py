"""Who is calling: a bearer token in the `authorization` metadata or a client certificate,
mapped to a principal whose role is checked against the method's permission."""

from __future__ import annotations

import contextvars
import functools
import hashlib
import hmac
import logging
import time
from collections.abc import Sequence

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from ...domain.access import Permission, Principal
from ...domain.errors import Unauthenticated
from ...ports import NoTelemetry, Telemetry
from ..auth.tokens import Principals

log = logging.getLogger(__name__)

# The authenticated caller of the RPC being handled (each RPC runs in its own task).
PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "ess_principal", default=None)

# Which permission each GuardService method needs.
PERMISSIONS = {
    "CheckOrder": Permission.CHECK,
    "CheckOrderStream": Permission.CHECK,
    "ReportMetric": Permission.REPORT,
    "ReportFill": Permission.REPORT_EXECUTION,
    "ReportOrderUpdate": Permission.REPORT_EXECUTION,
    "SyncPositions": Permission.REPORT,
    "Heartbeat": Permission.REPORT,
    "Trigger": Permission.TRIGGER,
    "Reset": Permission.RESET,
    "GetState": Permission.READ_STATE,
    "WatchState": Permission.READ_STATE,
    "ListEvents": Permission.READ_HISTORY,
    "ClearWorkingOrders": Permission.CLEAR_WORKING_ORDERS,
}

BEARER = "bearer "
NO_CREDENTIALS = "no credentials: send 'authorization: Bearer <token>'"


class Authenticator:
    """Authenticates a call against the principals of the tokens file."""

    # Refusals are logged at most once this often, each line counting those since the
    # last: a flood of bad tokens is seen without writing a line per call.
    LOG_EVERY_S = 1.0

    def __init__(self, principals: Principals, telemetry: Telemetry | None = None) -> None:
        self.principals = principals
        self._internal: tuple[InternalToken, Principal] | None = None  # admit_internal
        self._telemetry = telemetry or NoTelemetry()
        self._logged_at = -self.LOG_EVERY_S
        self._unlogged = 0

    def refused(self, code: grpc.StatusCode, why: str, peer: str) -> None:
        """A call refused with `code` (UNAUTHENTICATED, PERMISSION_DENIED): counted, and
        logged (review 35: a token brute force left no trace in logs or metrics)."""
        self._telemetry.call_refused(code.name)
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= self.LOG_EVERY_S:
            log.warning("call refused", extra={"code": code.name, "refusal": why,
                                               "peer": peer, "refused": self._unlogged})
            self._logged_at, self._unlogged = now, 0

    def authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        """The caller: by bearer token if one is sent, else by the verified client
        certificate's common name. A token that is not valid, sent over a connection
        whose certificate has a role, is passed over for the certificate: it alone would
        have been accepted, and an operator's stale token must not refuse a stop (review
        31). Raises Unauthenticated."""
        try:
            return self.by_token(context.invocation_metadata() or ())
        except Unauthenticated as error:
            refused = None if str(error) == NO_CREDENTIALS else error
        principal, why = self.by_certificate(context)
        if principal is not None:
            return principal
        raise refused or why or Unauthenticated(NO_CREDENTIALS)

    def by_certificate(self, context: grpc.aio.ServicerContext,
                       ) -> tuple[Principal | None, Unauthenticated | None]:
        """The caller by the connection's verified client certificate, or why it names no
        one (None, None: there is no certificate)."""
        for pem in context.auth_context().get("x509_pem_cert", ())[:1]:
            common_name = _common_name(pem)
            principal = self.principals.by_certificate(common_name) if common_name else None
            if principal is not None:
                return principal, None
            return None, Unauthenticated(
                f"client certificate CN={common_name!r} has no role" if common_name else
                "the client certificate has no common name, or several: it names no one")
        return None, None

    def by_token(self, metadata: Sequence[tuple[str, str | bytes]]) -> Principal:
        """The caller by the bearer token in a call's metadata. Raises Unauthenticated:
        NO_CREDENTIALS when there is none."""
        token = _bearer_token(metadata)
        if token is None:
            raise Unauthenticated(NO_CREDENTIALS)
        principal = self.principals.by_token(token)
        if principal is None and self._internal is not None \
                and self._internal[0].is_token(token):
            principal = self._internal[1]
        if principal is None:
            raise Unauthenticated("the bearer token is not valid")
        return principal

    def admit_internal(self, token: InternalToken, principal: Principal) -> None:
        """One principal of the sidecar's own, not in the tokens file (the fan-out
        process's feed): `token` is accepted as it for the life of this process."""
        self._internal = (token, principal)


class InternalToken:
    """A bearer token the sidecar makes for a process of its own (the fan-out's feed),
    kept as its digest and compared in constant time; `value` is handed to that process."""

    def __init__(self, value: str) -> None:
        self.value = value
        self._digest = hashlib.sha256(value.encode()).digest()

    def is_token(self, token: str) -> bool:
        return hmac.compare_digest(hashlib.sha256(token.encode()).digest(), self._digest)

    def came_with(self, metadata: Sequence[tuple[str, str | bytes]]) -> bool:
        """Whether a call's metadata carries this token as its bearer token."""
        try:
            token = _bearer_token(metadata)
        except Unauthenticated:  # malformed authorization metadata: not this token
            return False
        return token is not None and self.is_token(token)


@functools.lru_cache(maxsize=256)
def _common_name(pem: bytes) -> str | None:
    """The verified client certificate's one common name, read from the certificate: gRPC's
    `x509_common_name` ends at a NUL (review 35: "executor-1\\0.evil", which a CA
    signing by suffix would issue, was executor-1) and is the first of several. None if
    the certificate has no common name or more than one."""
    try:
        subject = x509.load_pem_x509_certificate(pem).subject
    except ValueError:
        return None
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if len(names) == 1 else None
    return value if isinstance(value, str) else None


def _bearer_token(metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
    """The token, with ASCII spaces around it taken off: only those (review 36c: str.strip
    also took off a stray byte gRPC had decoded as U+0085, and the token was accepted)."""
    for key, value in metadata:
        if key == "authorization":
            token = value[len(BEARER):].strip(" \t") if isinstance(value, str) \
                and value.lower().startswith(BEARER) else ""
            if not token:  # review 42f: an empty one matched the digest of nothing
                raise Unauthenticated("the authorization metadata must be 'Bearer <token>'")
            return token
    return None


def actor_of(context: grpc.aio.ServicerContext) -> str:
    """Who made a change, for the audit trail: the authenticated principal, or the peer
    address when authentication is off."""
    principal = PRINCIPAL.get()
    return principal.name if principal is not None else f"unauthenticated@{context.peer()}"
