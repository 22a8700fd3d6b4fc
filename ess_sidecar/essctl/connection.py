"""The channel to a sidecar: target, TLS, bearer token, deadlines; RPC errors as messages."""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc

from ess.v1 import guard_pb2_grpc as pb_grpc

from ..settings import is_loopback

DEFAULT_PORT = 50051
DEFAULT_TARGET = f"127.0.0.1:{DEFAULT_PORT}"
MAX_TIMEOUT_S = 86_400.0  # a day: longer is a typo, and gRPC cannot carry 1e10 s at all
TARGET_FORMS = (f"host:port, host (port {DEFAULT_PORT}), [IPv6]:port, [IPv6], unix:PATH, or a"
                " socket path: one starting with / or ./ or ../, or an existing socket file")

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


# A command was sent but no answer came: the sidecar finishes a command it has started
# even when its caller gave up, so it may have landed, or may yet (review 36e).
NO_ANSWER = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE,
                       grpc.StatusCode.CANCELLED})


class UsageError(Exception):
    """The command line cannot be acted on: exit 64."""


class Failed(Exception):
    """The command could not be carried out: exit 1."""


_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
                   r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?")


def parse_target(text: str, source: str = "--target") -> str:
    """What to dial for a --target (or $ESS_TARGET, named by `source`), as grpc spells it.

    grpc would take "localhost" to mean port 443 and "/tmp/ess.sock" to be a host name, so:
    no port means 50051 ("localhost" -> "localhost:50051", "[::1]" -> "[::1]:50051"); a path
    starting with / ./ ../, or naming an existing socket file, means "unix:PATH". unix:PATH,
    unix-abstract:NAME and dns:[//AUTHORITY/]HOST[:PORT] are grpc's own forms (dns: gets the
    default port too). Anything else raises UsageError saying what is accepted."""
    def bad(why: str) -> UsageError:
        return UsageError(f"{source} {text!r}: {why}; accepted: {TARGET_FORMS}")

    if not text:
        raise bad("empty")
    if any(char.isspace() or not char.isprintable() for char in text):
        raise bad("has spaces or control characters")
    lowered = text.lower()
    for scheme in ("unix:", "unix-abstract:"):
        if lowered.startswith(scheme):
            if len(text) == len(scheme):
                raise bad(f"no path after {scheme}")
            return scheme + text[len(scheme):]
    if lowered.startswith("dns:"):
        rest = text[4:]
        authority = ""
        if rest.startswith("//"):
            authority, slash, rest = rest[2:].partition("/")
            if not slash:
                raise bad("dns://AUTHORITY must be followed by /HOST[:PORT]")
            authority = f"//{authority}/"
        return f"dns:{authority}{_host_port(rest, bad)}"
    if "://" in text:
        raise bad(f"{text.partition('://')[0]}:// is not a scheme essctl dials")
    if text.startswith(("/", "./", "../")) or _is_socket(text):
        return f"unix:{text}"
    return _host_port(text, bad)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _host_port(text: str, bad: Callable[[str], UsageError]) -> str:
    """HOST[:PORT] or [IPv6][:PORT] or a bare IPv6 address, with the default port added."""
    if text.startswith("["):
        address, bracket, port = text[1:].partition("]")
        if not bracket:
            raise bad("an IPv6 address in [ ] is missing its ]")
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise bad(f"{address!r} is not an IPv6 address") from None
        if port and not port.startswith(":"):
            raise bad("after [IPv6] comes :PORT or nothing")
        return f"[{address}]:{_port(port[1:], bad) if port else DEFAULT_PORT}"
    if text.count(":") > 1:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            raise bad("an IPv6 address with a port goes in brackets, e.g."
                      f" [::1]:{DEFAULT_PORT}") from None
        return f"[{text}]:{DEFAULT_PORT}"
    host, colon, port = text.partition(":")
    if not host:
        raise bad("no host")
    if not _HOST.fullmatch(host):
        raise bad(f"{host!r} is not a host name or IPv4 address")
    return f"{host}:{_port(port, bad) if colon else DEFAULT_PORT}"


def _is_host(name: str) -> bool:
    """A DNS name (ASCII: an IDN in its xn-- form) or an IP address, as a certificate names."""
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return _HOST.fullmatch(name) is not None


def _port(text: str, bad: Callable[[str], UsageError]) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise bad(f"port {text!r} is not a number from 1 to 65535")
    return int(text)


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
    target_source: str = "--target"

    def same_sidecar(self) -> list[str]:
        """The global options of a command essctl prints to be pasted: the target it
        reached, wherever that came from (review 56a: without it, pasted where ESS_TARGET
        named another sidecar, a stop went there), and TLS; never the token."""
        words = ["--target", self.target, *(["--tls"] if self.tls else [])]
        for flag, value in (("--tls-ca", self.tls_ca), ("--tls-cert", self.tls_cert),
                            ("--tls-key", self.tls_key),
                            ("--tls-server-name", self.tls_server_name)):
            words += [flag, value] if value else []
        return words

    def resolved(self) -> Options:
        """The same options with the target as grpc should dial it (parse_target)."""
        return dataclasses.replace(self, target=parse_target(self.target, self.target_source))

    def validate(self) -> None:
        """Raise UsageError for combinations that would silently not do what was asked."""
        if not self.target:
            raise UsageError("--target is empty")
        if not 0 < self.timeout <= MAX_TIMEOUT_S:  # NaN too
            raise UsageError(f"--timeout must be a positive number of seconds, at most"
                             f" {MAX_TIMEOUT_S:g}")
        if (unusable := self.unusable_token()) is not None:
            raise UsageError(unusable)
        given = [flag for flag, value in (("--tls-ca", self.tls_ca), ("--tls-cert",
                 self.tls_cert), ("--tls-key", self.tls_key), ("--tls-server-name",
                 self.tls_server_name)) if value]
        if given and not self.tls:
            raise UsageError(f"{given[0]} needs --tls")
        if self.tls_server_name and not _is_host(self.tls_server_name):
            raise UsageError(f"--tls-server-name {self.tls_server_name!r} is not a host name or"
                             " IP address")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise UsageError("--tls-cert and --tls-key go together (mutual TLS)")
        if self.tls and self.is_unix:
            raise UsageError("--tls applies to TCP targets; a unix: socket is plain")

    def unusable_token(self) -> str | None:
        """Why the token cannot be sent (None if it can): gRPC would refuse the header
        itself, INTERNAL, with nothing sent."""
        bad = next((c for c in self.token if not " " <= c <= "~"), None)
        if bad is None:
            return None
        return (f"the token (--token or ESS_TOKEN) holds U+{ord(bad):04X} at position"
                f" {self.token.index(bad) + 1}, which a header cannot carry: tokens are"
                " printable ASCII")

    @property
    def is_unix(self) -> bool:
        return self.target.startswith(("unix:", "unix-abstract:"))

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


# An operator's view of a sidecar in a storm (thousands of tripped scopes, each with its
# reason) can exceed gRPC's 4 MiB default: status and reset read the whole GetState, and
# must still work then (review 17: 4,000 scopes with 1 KB reasons made them refuse).
MAX_RECEIVE_BYTES = 256 << 20


def open_channel(options: Options, watch: bool = False) -> grpc.Channel:
    settings = [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
                *(WATCH_KEEPALIVE if watch else [])]
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

    def call(self, method: str, request: object, timeout: float | None = None,
             wait_for_ready: bool = False) -> object:
        """`wait_for_ready`: a sidecar not reachable yet is waited for, up to `timeout`."""
        return getattr(self.stub, method)(request, timeout=timeout or self.options.timeout,
                                          metadata=self.metadata, wait_for_ready=wait_for_ready)

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
        if hints and "Socket closed" in details and not options.tls \
                and not options.target.startswith("unix:"):  # review 51d
            hint = " (is it serving TLS? then pass --tls; or it has server.max_connections" \
                " connections already; or is it running? check --target / ESS_TARGET)"
        elif hints and "Socket closed" in details and options.tls and not options.tls_cert:
            hint = " (does it ask for a client certificate? then pass --tls-cert and" \
                " --tls-key; or is it running? check --target / ESS_TARGET)"  # review 58c
        return f"UNAVAILABLE: cannot reach the sidecar at {options.target}: {details}{hint}"
    if code is grpc.StatusCode.UNAUTHENTICATED and not options.token:
        details += " (no token given: pass --token or set ESS_TOKEN)"
    return f"{code.name}: {details}"
