"""The grpc.aio server: GuardService, health, reflection, graceful shutdown. It serves with
what bootstrap chose (ServerParts) and chooses no implementation itself."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import resource
import signal
import socket
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection

from ess.v1 import guard_pb2 as pb

from ...ports import AlertSink, Journal, StateStore
from ...service import Guard
from ...settings import MIN_CONNECTIONS, ServerSettings, Settings
from ...timers import Timers
from .auth import Authenticator
from .fanout import FanoutProcess
from .handlers import RefusedAsItStarts, add_guard_service
from .health import DrainingHealthServicer, MethodResolvingPool, add_health, add_reflection
from .security import warn_about_security
from .servicer import GuardServicer

if TYPE_CHECKING:
    from ..telemetry.prometheus_http import MetricsServer
    from ..telemetry.setup import Observability

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GuardService"].full_name
HEALTH_NAMES = ("", SERVICE_NAME)

# grpc turns SO_REUSEPORT on by default: a second sidecar could then bind the same TCP port
# and the kernel would split connections between the two, so a halt sent to one would
# leave orders allowed by the other. Off, a taken port fails the bind.
# Metadata up to 64 KiB (gRPC's default refuses some calls from 8 KiB and all from 16 KiB,
# RESOURCE_EXHAUSTED, before any handler): a Trigger carrying a large W3C baggage (8 KiB
# at most by its spec) or a proxy's headers must still stop trading (review 29). No more:
# HPACK repeats an indexed header for a byte, so a call of 25 KB on the wire decoded to
# 25,000 entries under 1 MiB; a client with no token grew the sidecar by gigabytes and
# held every check for up to a second (review 43c).
MAX_METADATA_BYTES = 64 << 10
SERVER_OPTIONS = (("grpc.so_reuseport", 0),
                  ("grpc.max_metadata_size", MAX_METADATA_BYTES),
                  ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES))


# File descriptors kept for all but the served connections: the state file, its WAL and
# lock, the journal, its seal and syncer's pipes (a replacement opens a few more), the
# log, alerts, exporters, gRPC's own and the metrics endpoint's clients
# (prometheus_http.MAX_CLIENTS). About 30 are open once serving.
RESERVED_DESCRIPTORS = 128


def server_options(settings: ServerSettings,
                   connections: int) -> tuple[tuple[str, int], ...]:
    """SERVER_OPTIONS, and the calls one connection may have in flight (gRPC clients queue
    the rest). Review 43g: under the metadata cap, 1,700 one-byte entries a call still let
    one connection queue calls faster than they were served: 3.4 GB, and checks held for
    0.8 s; at 256, 280 MB and none held 0.1 s (at 1,024: 790 MB, 0.2 s). `connections`:
    the connections each address holds at once (gRPC counts them per address, and closes
    one past the cap as it accepts it: `connections_per_address`). Connections
    with no call are not closed: gRPC closes an idle one abruptly, and a call sent as it
    did failed UNAVAILABLE unrun, a Trigger too (review 45c)."""
    return (*SERVER_OPTIONS, ("grpc.max_concurrent_streams", settings.max_calls_per_connection),
            ("grpc.max_allowed_incoming_connections", connections))


def raise_open_files_limit() -> None:
    """Raise this process's soft limit on open files to its hard limit, as Go's runtime
    does: each connection takes a descriptor, and the soft limit is often 1,024 where the
    hard one is far above. Out of descriptors, nothing reached the sidecar any more, the
    Unix socket and a Trigger included (400 idle TCP connections at a limit of 256)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard or soft == resource.RLIM_INFINITY:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as error:  # an unlimited hard limit the kernel refuses
        log.warning("open files: the soft limit stays %d (raising it to %s failed: %s)",
                    soft, hard, error)


def connections_per_address(settings: ServerSettings, addresses: int) -> int:
    """server.max_connections, lowered so that `addresses` (listening sockets) held at
    their cap leave RESERVED_DESCRIPTORS of the open-files limit free: a connection flood
    must never take the descriptors a stop needs to be stored. Raises OSError if that
    leaves fewer than MIN_CONNECTIONS an address (review 45a: at 1, one executor on
    the Unix socket kept `essctl trigger` out)."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit == resource.RLIM_INFINITY:
        return settings.max_connections
    fits = (limit - RESERVED_DESCRIPTORS) // max(1, addresses)
    if fits >= settings.max_connections:
        return settings.max_connections
    if fits < MIN_CONNECTIONS:
        raise OSError(f"server.max_connections: the open-files limit ({limit})"
                      f" leaves room for {max(0, fits)} connection(s) an address on"
                      f" {addresses} address(es), fewer than {MIN_CONNECTIONS}, after"
                      f" {RESERVED_DESCRIPTORS} kept for the state: raise it (ulimit -n,"
                      " systemd's LimitNOFILE)")
    log.warning("server.max_connections: %d an address, lowered to %d: %d addresses at"
                " their cap and %d descriptors kept for the state fit the open-files"
                " limit (%d; raise it, e.g. systemd's LimitNOFILE, for more)",
                settings.max_connections, fits, addresses, RESERVED_DESCRIPTORS, limit)
    return fits


def listening_addresses(settings: ServerSettings) -> int:
    """How many sockets the server will listen on: the TCP addresses `listen` stands for
    (a name may resolve to several) and the Unix socket. A name that does not resolve
    counts once: start() reports it."""
    count = 1 if settings.uds else 0
    if settings.listen:
        try:
            count += len(_addresses(settings.listen.rpartition(":")[0], settings.listen))
        except SocketPathError:
            count += 1
    return count

# How long the fan-out process may still take once this server's grace is over (it was
# asked to stop as the grace began): then it is killed.
FANOUT_AFTER_GRACE_S = 0.5

# Exit status when a stop overran shutdown.timeout_s and the process was ended.
STOP_OVERRAN = 70


class SocketPathError(Exception):
    """An address cannot be served on: a TCP port or a Unix socket another process is
    serving on, or a socket path that is something other than a socket. Nothing was
    removed. The message starts with the settings key."""


def claim_unix_socket(path: str, key: str = "server.uds") -> None:
    """Make `path` free to bind: remove a socket left by a dead process, but never a live
    server's socket (that would silently take its clients) nor anything that is not a
    socket. Raises SocketPathError."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise SocketPathError(f"{key}: cannot inspect unix:{path}: {error}") from error
    if not stat.S_ISSOCK(mode):
        raise SocketPathError(f"{key}: unix:{path} exists and is not a socket; not"
                              " removing it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            pass  # nobody listens: a socket left by a killed process
        except FileNotFoundError:
            return  # removed meanwhile
        except OSError as error:  # a timeout (full backlog) or no permission: not ours
            raise SocketPathError(f"{key}: cannot tell whether unix:{path} is in use:"
                                  f" {error}; not removing it") from error
        else:
            raise SocketPathError(f"{key}: another process is serving on unix:{path}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    log.info("removed stale socket %s", path)


def bind_tcp(server: grpc.aio.Server, listen: str,
             credentials: grpc.ServerCredentials | None, key: str = "server.listen") -> str:
    """Bind every address of `listen` exclusively; the bound host:port. Raises
    SocketPathError naming server.listen when one is taken or cannot be bound. A host
    name is resolved here and each address bound on its own: given a name, gRPC binds
    what it can, so with "localhost" and 127.0.0.1's port taken by another sidecar it
    would serve on ::1 alone, and clients would reach one sidecar or the other."""
    host, _, port_text = listen.rpartition(":")
    port = int(port_text) if port_text.isdigit() else port_text
    for address in _addresses(host, listen, key):
        target = f"{address}:{port}"
        try:
            bound = server.add_secure_port(target, credentials) if credentials is not None \
                else server.add_insecure_port(target)
        except RuntimeError as error:  # grpcio's "Failed to bind to address ..."
            raise SocketPathError(f"{key}: cannot bind {target} ({listen}): in use"
                                  " by another process, or not an address of this host"
                                  + (", or TLS files gRPC cannot serve with (a key type"
                                     " such as DSA, Ed448 or RSA-PSS: check-config says)"
                                     if credentials is not None else "")
                                  + f" ({error})") from None
        port = bound  # port 0: the one picked for the first address, for every address
    return f"{host}:{port}"


def _addresses(host: str, listen: str, key: str = "server.listen") -> list[str]:
    """The host of `listen` as the literal addresses to bind (IPv6 in brackets): itself if
    it is one (or empty: every interface, as gRPC reads it), else what it resolves to."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(bare)
        return [host]
    except ValueError:
        if not host:
            return [host]
    try:
        found = socket.getaddrinfo(bare, None, type=socket.SOCK_STREAM)
    except OSError as error:
        raise SocketPathError(f"{key}: {listen}: {bare} does not resolve ({error})")\
            from None
    literals = dict.fromkeys(info[4][0] for info in found)  # in order, once each
    return [f"[{a}]" if ":" in a else a for a in literals]


@dataclass(frozen=True)
class ServerParts:
    """What the server serves with, every implementation chosen by bootstrap (the
    composition root), so that another transport built from the same choices would miss
    none of them: the timers above all."""

    settings: Settings
    guard: Guard
    alerts: AlertSink
    store: StateStore
    journal: Journal
    timers: Timers  # started with serving, stopped before the store closes
    authenticator: Authenticator | None = None  # None: authentication off
    credentials: grpc.ServerCredentials | None = None  # None: server.listen without TLS
    interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
    wrap_streams: Callable[[str, Callable], Callable] | None = None  # see add_guard_service
    observability: Observability | None = None  # its gauges read the guard; flushed last
    # The /metrics and /healthz endpoint, given what /healthz reports; None: no endpoint.
    metrics_server: Callable[[Callable[[], bool]], MetricsServer] | None = None


class Sidecar:
    """One running server; `start`, then `wait_stopped`; `stop` drains, then stops."""

    def __init__(self, parts: ServerParts) -> None:
        self.parts = parts
        early = (RefusedAsItStarts(parts.authenticator),) \
            if parts.authenticator is not None and not parts.settings.server.tls_client_ca else ()
        server_settings = parts.settings.server
        # WatchState served by a process of its own, fed over a private Unix socket
        self.fanout = FanoutProcess(parts.settings, parts.authenticator) \
            if parts.settings.watch.fans_out() else None
        connections = connections_per_address(
            server_settings, listening_addresses(server_settings) + bool(self.fanout))
        self.server = grpc.aio.server(interceptors=(*early, *parts.interceptors),
                                      options=server_options(server_settings, connections))
        self.metrics: MetricsServer | None = None
        self.serving = False  # the health the metrics endpoint reports
        self.health = DrainingHealthServicer(parts.settings.watch.max_watchers)
        self.addresses: list[str] = []
        self._stopping = False
        self._stopped = asyncio.Event()
        refused = parts.authenticator.refused if parts.authenticator is not None else None
        owned = self.fanout.owns if self.fanout is not None else None
        add_guard_service(GuardServicer(parts.guard, parts.settings.watch.heartbeat_interval_s,
                                        refused, owned),
                          self.server, parts.authenticator, parts.wrap_streams)
        add_health(self.health, self.server)
        add_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), self.server, MethodResolvingPool())

    async def start(self) -> None:
        """Raises SocketPathError, before binding anything, if server.uds is taken."""
        server_settings = self.parts.settings.server
        if server_settings.uds:
            claim_unix_socket(server_settings.uds)
        for name in HEALTH_NAMES:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if server_settings.listen:
            self.addresses.append(bind_tcp(self.server, server_settings.listen,
                                           self.parts.credentials))
        if server_settings.uds:
            try:
                self.server.add_insecure_port(f"unix:{server_settings.uds}")
            except RuntimeError as error:  # its directory missing (review 40l: a traceback)
                raise SocketPathError(f"server.uds: cannot bind unix:{server_settings.uds}"
                                      f" ({error})") from None
            self.addresses.append(f"unix:{server_settings.uds}")
        if self.fanout is not None:
            self.server.add_insecure_port(f"unix:{self.fanout.upstream}")
        if not self.addresses:
            raise ValueError("server.listen and server.uds are both empty: nothing to serve on")
        self._start_metrics()  # its port claimed before anything starts (review 44d)
        await self.parts.alerts.start()
        # A timer run before the first call is served: what time did while the sidecar
        # was down (heartbeats lapsed, feeds gone stale) and the trips a restart owes
        # (review 38d) are stored before any order is judged.
        await self.parts.timers.tick_async()
        await self.server.start()
        self.parts.timers.start()
        for name in HEALTH_NAMES:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.serving = True
        log.info("ess-sidecar serving on %s (event loop: %s)", ", ".join(self.addresses),
                 type(asyncio.get_running_loop()).__module__.partition(".")[0])
        if self.fanout is not None:
            await self.fanout.start()
        warn_about_security(self.parts.settings, self.parts.authenticator)

    async def stop(self) -> None:
        """Drain, then stop, within shutdown.timeout_s of the first call:
        1. health says NOT_SERVING (gRPC and /healthz) while every RPC is still answered,
           decisions included, for shutdown.drain_s, so that polling probes see it;
        2. WatchState and health Watch streams end with UNAVAILABLE (the fan-out
           process's too, then it is stopped), new calls are
           refused, and calls in flight get server.grace_s; from then on a check on an
           open CheckOrderStream ends it with UNAVAILABLE: a stop can no longer come in,
           so no order may be allowed;
        3. timers stop, queued alerts get up to server.grace_s, the store closes, and
           telemetry flushes.
        `serve` bounds the whole stop by shutdown.timeout_s."""
        if self._stopping:  # a second signal while stopping: wait for the first stop
            await self._stopped.wait()
            return
        self._stopping = True
        parts, settings = self.parts, self.parts.settings
        self.serving = False
        try:
            await self.health.enter_graceful_shutdown()
            log.info("draining for %.1f s: NOT_SERVING, still answering",
                     settings.shutdown.drain_s)
            await asyncio.sleep(settings.shutdown.drain_s)
            parts.guard.deciding = False
            parts.guard.subscribers.close_all()
            if self.fanout is not None:  # within the same grace as this server's calls
                self.fanout.terminate()
            self.health.close_watches()
            await self.server.stop(settings.server.grace_s)
        finally:
            try:
                if self.fanout is not None:  # asked to stop with this server's calls
                    await self.fanout.stop(FANOUT_AFTER_GRACE_S)
                parts.timers.stop()
                await parts.guard.drain()  # a command being stored finishes first
                await parts.alerts.stop(settings.server.grace_s)
                try:
                    parts.journal.close()
                finally:
                    parts.store.close()
            finally:
                await self._stop_telemetry()
                self._stopped.set()
                log.info("ess-sidecar stopped")

    def _start_metrics(self) -> None:
        """Gauges read the guard on this loop; the Prometheus endpoint (/metrics,
        /healthz) on its own port, if bootstrap gave one."""
        observed = self.parts.observability
        if observed is not None:
            observed.telemetry.observe(self.parts.guard, self.parts.alerts,
                                       loop=asyncio.get_running_loop())
        if self.parts.metrics_server is not None:
            self.metrics = self.parts.metrics_server(lambda: self.serving)
            self.metrics.start()
            log.info("metrics on http://%s/metrics", self.metrics.address)

    async def _stop_telemetry(self) -> None:
        """Last: flush buffered spans and metrics (OTLP) after everything else stopped. In
        a thread: exporting blocks, and the final collection reads the guard on this loop."""
        try:
            if self.metrics is not None:
                self.metrics.stop()
            if self.parts.observability is not None:
                await asyncio.to_thread(self.parts.observability.shutdown)
        except Exception:  # a telemetry problem must not hide how the stop went
            log.exception("telemetry did not shut down cleanly")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _exit_after(timeout_s: float) -> None:
    """End the process if it has not exited `timeout_s` from now: a stop that hangs (an
    alert or telemetry export stuck in a thread) must not keep the address. Every
    acknowledged change is written already (a transition fsynced; a journal record in the
    kernel, fsynced within the sync interval unless the syncer is stuck too), so this is
    no worse than a crash."""
    def overran() -> None:
        log.critical("stop overran shutdown.timeout_s (%.1f s): exiting now", timeout_s)
        logging.shutdown()
        os._exit(STOP_OVERRAN)

    timer = threading.Timer(timeout_s, overran)
    timer.daemon = True
    timer.start()


async def serve(parts: ServerParts) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully; SIGHUP is ignored."""
    raise_open_files_limit()
    try:
        sidecar = Sidecar(parts)
        await sidecar.start()
    except BaseException:
        with contextlib.suppress(Exception):  # the start-up error is the one to report
            parts.journal.close()
            parts.store.close()  # release the state file
        raise
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Future[None]] = []

    def stop() -> None:
        if not stopping:
            _exit_after(parts.settings.shutdown.timeout_s)
            stopping.append(asyncio.ensure_future(sidecar.stop()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    # The usual "reload" (and a closed terminal's hangup) ended the process at once, with
    # no drain and no word (review 41c): there is no reload, so it is said and ignored.
    loop.add_signal_handler(signal.SIGHUP, lambda: log.warning(
        "SIGHUP ignored: ess-sidecar has no reload; restart it to apply new settings"))
    await sidecar.wait_stopped()
