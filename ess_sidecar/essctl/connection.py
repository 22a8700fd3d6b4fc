"""The channel to a sidecar: target, TLS, bearer token, deadlines; RPC errors as messages."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc

from ess.v1 import guard_pb2_grpc as pb_grpc

from ..settings import is_loopback

DEFAULT_TARGET = "127.0.0.1:50051"

# A watch connection can sit idle for hours; pings find a dead peer (a half-open TCP
# connection after a network partition) instead of waiting on it forever. The server's
# WatchState heartbeats send data every few seconds, so these pings are never "too many".
WATCH_KEEPALIVE = [("grpc.keepalive_time_ms", 20_000), ("grpc.keepalive_timeout_ms", 10_000),
                   ("grpc.http2.max_pings_without_data", 0)]


class Exit(enum.IntEnum):
    """The same exit codes for every command (listed in --help)."""

    DONE = 0
    FAILED = 1
    NO = 2
    PENDING = 3
    USAGE = 64
    INTERRUPTED = 130


class UsageError(Exception):
    """The command line cannot be acted on: exit 64."""


class Failed(Exception):
    """The command could not be carried out: exit 1."""


@dataclass(frozen=True)
class Options:
    target: str
    token: str
    tls: bool
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None
    tls_server_name: str | None
    timeout: float

    def validate(self) -> None:
        """Raise UsageError for combinations that would silently not do what was asked."""
        if not self.target:
            raise UsageError("--target is empty")
        if self.timeout <= 0:
            raise UsageError("--timeout must be a positive number of seconds")
        given = [flag for flag, value in (("--tls-ca", self.tls_ca), ("--tls-cert",
                 self.tls_cert), ("--tls-key", self.tls_key), ("--tls-server-name",
                 self.tls_server_name)) if value]
        if given and not self.tls:
            raise UsageError(f"{given[0]} needs --tls")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise UsageError("--tls-cert and --tls-key go together (mutual TLS)")
        if self.tls and self.is_unix:
            raise UsageError("--tls applies to TCP targets; a unix: socket is plain")

    @property
    def is_unix(self) -> bool:
        return self.target.startswith("unix:")

    def token_in_clear(self) -> bool:
        """True when the token would cross a network unencrypted."""
        if not self.token or self.tls or self.is_unix:
            return False
        return not is_loopback(self.target)


def _read(path: str | None, flag: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise UsageError(f"{flag}: cannot read {path}: {error.strerror}") from None


def open_channel(options: Options, watch: bool = False) -> grpc.Channel:
    settings = list(WATCH_KEEPALIVE) if watch else []
    if options.tls_server_name:
        settings.append(("grpc.ssl_target_name_override", options.tls_server_name))
    if not options.tls:
        return grpc.insecure_channel(options.target, options=settings)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(options.tls_ca, "--tls-ca"),
        private_key=_read(options.tls_key, "--tls-key"),
        certificate_chain=_read(options.tls_cert, "--tls-cert"))
    return grpc.secure_channel(options.target, credentials, options=settings)


class Sidecar:
    """GuardService calls with the token on every call and the deadline on unary ones."""

    def __init__(self, options: Options, watch: bool = False) -> None:
        self.options = options
        self.channel = open_channel(options, watch)
        self.stub = pb_grpc.GuardServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {options.token}"),) if options.token \
            else ()

    def call(self, method: str, request: object) -> object:
        return getattr(self.stub, method)(request, timeout=self.options.timeout,
                                          metadata=self.metadata)

    def watch(self, request: object) -> grpc.Call:
        """No deadline: a watch runs until it is stopped or the connection breaks."""
        return self.stub.WatchState(request, metadata=self.metadata)

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.channel.close()


def describe(error: grpc.RpcError, options: Options, hints: bool = True) -> str:
    """"CODE: the server's message", with a hint where the code alone would puzzle."""
    code, details = error.code(), error.details() or ""
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"DEADLINE_EXCEEDED: no answer from {options.target} within {options.timeout:g} s"
    if code is grpc.StatusCode.UNAVAILABLE and "connect" in details:
        hint = " (is it running? check --target / ESS_TARGET)" if hints else ""
        return f"UNAVAILABLE: cannot reach the sidecar at {options.target}: {details}{hint}"
    if code is grpc.StatusCode.UNAUTHENTICATED and not options.token:
        details += " (no token given: pass --token or set ESS_TOKEN)"
    return f"{code.name}: {details}"
