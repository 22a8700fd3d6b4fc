"""The grpc.aio server: GuardService, health, reflection, timers, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ess.v1 import guard_pb2 as pb

from ...bootstrap import App
from ...domain.errors import StoreUnavailable
from .auth import Authenticator
from .handlers import add_guard_service
from .health import DrainingHealthServicer, MethodResolvingPool
from .security import server_credentials, warn_about_security
from ..telemetry.prometheus_http import MetricsServer
from ..telemetry.tracing import server_interceptors, traced_stream
from .servicer import GuardServicer

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GuardService"].full_name
HEALTH_NAMES = ("", SERVICE_NAME)

# A timer failure that repeats every tick is logged with its traceback once, then at most
# this often with a count, until a tick succeeds.
REPEAT_LOG_INTERVAL_S = 60.0

# grpc turns SO_REUSEPORT on by default: a second sidecar could then bind the same TCP port
# and the kernel would split connections between the two, so a halt sent to one would
# leave orders allowed by the other. Off, a taken port fails the bind.
SERVER_OPTIONS = (("grpc.so_reuseport", 0),)

# Exit status when a stop overran shutdown.timeout_s and the process was ended.
STOP_OVERRAN = 70


class SocketPathError(Exception):
    """An address cannot be served on: a TCP port or a Unix socket another process is
    serving on, or a socket path that is something other than a socket. Nothing was
    removed. The message starts with the settings key."""


def claim_unix_socket(path: str) -> None:
    """Make `path` free to bind: remove a socket left by a dead process, but never a live
    server's socket (that would silently take its clients) nor anything that is not a
    socket. Raises SocketPathError."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise SocketPathError(f"server.uds: cannot inspect unix:{path}: {error}") from error
    if not stat.S_ISSOCK(mode):
        raise SocketPathError(f"server.uds: unix:{path} exists and is not a socket; not"
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
            raise SocketPathError(f"server.uds: cannot tell whether unix:{path} is in use:"
                                  f" {error}; not removing it") from error
        else:
            raise SocketPathError(f"server.uds: another process is serving on unix:{path}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    log.info("removed stale socket %s", path)


class RepeatedFailureLog:
    """Logs a failure with its traceback the first time; the same failure again at most
    once per `interval_s` with how many were not logged; a success starts afresh."""

    def __init__(self, logger: logging.Logger, interval_s: float = REPEAT_LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last: tuple[type, str] | None = None
        self._logged_at = 0.0
        self._suppressed = 0

    def failed(self, what: str, error: BaseException) -> None:
        key = (type(error), str(error))
        now = self._clock()
        if key != self._last:
            self._log.error("%s", what, exc_info=error)
            self._last, self._logged_at, self._suppressed = key, now, 0
        elif now - self._logged_at >= self._interval_s:
            self._log.error("%s (still failing; %d identical failure(s) not logged in the"
                            " last %.0f s): %s: %s", what, self._suppressed,
                            now - self._logged_at, type(error).__name__, error)
            self._logged_at, self._suppressed = now, 0
        else:
            self._suppressed += 1

    def succeeded(self) -> None:
        if self._last is not None:
            self._log.info("recovered after %d further identical failure(s) not logged",
                           self._suppressed)
            self._last, self._suppressed = None, 0


def bind_tcp(server: grpc.aio.Server, listen: str,
             credentials: grpc.ServerCredentials | None) -> str:
    """Bind `listen` exclusively; the bound host:port. Raises SocketPathError naming
    server.listen when the address is taken or cannot be bound."""
    try:
        port = server.add_secure_port(listen, credentials) if credentials is not None \
            else server.add_insecure_port(listen)
    except RuntimeError as error:  # grpcio's "Failed to bind to address ..."
        raise SocketPathError(f"server.listen: cannot bind {listen}: in use by another"
                              f" process, or not an address of this host ({error})") from None
    return f"{listen.rsplit(':', 1)[0]}:{port}"


class Sidecar:
    """One running server; `start`, then `wait_stopped`; `stop` drains, then stops."""

    def __init__(self, app: App) -> None:
        self.app = app
        observed = app.observability
        self.server = grpc.aio.server(
            interceptors=server_interceptors(observed.tracers) if observed else None,
            options=SERVER_OPTIONS)
        self.metrics: MetricsServer | None = None
        self.serving = False  # the health the metrics endpoint reports
        self.health = DrainingHealthServicer()
        self.addresses: list[str] = []
        self._timers: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self.timer_failures = RepeatedFailureLog(log)
        settings = app.settings
        authenticator = Authenticator(app.principals) if app.principals is not None else None
        trace_streams = functools.partial(traced_stream, observed.tracers) if observed else None
        add_guard_service(GuardServicer(app.guard, settings.watch.heartbeat_interval_s),
                          self.server, authenticator, trace_streams)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), self.server, pool=MethodResolvingPool())

    async def start(self) -> None:
        """Raises SocketPathError, before binding anything, if server.uds is taken."""
        server_settings = self.app.settings.server
        if server_settings.uds:
            claim_unix_socket(server_settings.uds)
        for name in HEALTH_NAMES:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if server_settings.listen:
            self.addresses.append(bind_tcp(self.server, server_settings.listen,
                                           server_credentials(server_settings)))
        if server_settings.uds:
            self.server.add_insecure_port(f"unix:{server_settings.uds}")
            self.addresses.append(f"unix:{server_settings.uds}")
        if not self.addresses:
            raise ValueError("server.listen and server.uds are both empty: nothing to serve on")
        await self.app.alerts.start()
        await self.server.start()
        self._timers = asyncio.create_task(self._run_timers())
        self._start_metrics()
        for name in HEALTH_NAMES:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.serving = True
        log.info("ess-sidecar serving on %s", ", ".join(self.addresses))
        warn_about_security(self.app)

    async def stop(self) -> None:
        """Drain, then stop, within shutdown.timeout_s of the first call:
        1. health says NOT_SERVING (gRPC and /healthz) while every RPC is still answered,
           decisions included, for shutdown.drain_s, so that polling probes see it;
        2. WatchState and health Watch streams end with UNAVAILABLE, new calls are
           refused, and calls in flight get server.grace_s;
        3. timers stop, queued alerts get up to server.grace_s, the store closes, and
           telemetry flushes.
        `serve` bounds the whole stop by shutdown.timeout_s."""
        if self._stopping:  # a second signal while stopping: wait for the first stop
            await self._stopped.wait()
            return
        self._stopping = True
        settings = self.app.settings
        self.serving = False
        try:
            await self.health.enter_graceful_shutdown()
            log.info("draining for %.1f s: NOT_SERVING, still answering",
                     settings.shutdown.drain_s)
            await asyncio.sleep(settings.shutdown.drain_s)
            self.app.guard.subscribers.close_all()
            self.health.close_watches()
            await self.server.stop(settings.server.grace_s)
        finally:
            try:
                if self._timers is not None:
                    self._timers.cancel()
                await self.app.alerts.stop(settings.server.grace_s)
                try:
                    self.app.journal.close()
                finally:
                    self.app.store.close()
            finally:
                await self._stop_telemetry()
                self._stopped.set()
                log.info("ess-sidecar stopped")

    def _start_metrics(self) -> None:
        """Gauges read the guard on this loop; the Prometheus endpoint (/metrics,
        /healthz) on its own port, if configured."""
        if self.app.observability is None:
            return
        self.app.observability.telemetry.observe(self.app.guard, self.app.alerts,
                                                 loop=asyncio.get_running_loop())
        listen = self.app.settings.telemetry.metrics_listen
        if listen:
            self.metrics = MetricsServer(listen, self.app.observability.registry,
                                         health=lambda: self.serving)
            self.metrics.start()
            log.info("metrics on http://%s/metrics", self.metrics.address)

    async def _stop_telemetry(self) -> None:
        """Last: flush buffered spans and metrics (OTLP) after everything else stopped. In
        a thread: exporting blocks, and the final collection reads the guard on this loop."""
        try:
            if self.metrics is not None:
                self.metrics.stop()
            if self.app.observability is not None:
                await asyncio.to_thread(self.app.observability.shutdown)
        except Exception:  # a telemetry problem must not hide how the stop went
            log.exception("telemetry did not shut down cleanly")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _run_timers(self) -> None:
        interval = self.app.settings.timers.interval_s
        failures = self.timer_failures
        while True:
            try:
                self.app.guard.run_timers()
            except StoreUnavailable as error:
                failures.failed("timer transition could not be made durable", error)
            except Exception as error:  # a bug here must never stop the timers
                failures.failed("timer run failed", error)
            else:
                failures.succeeded()
            await asyncio.sleep(interval)


def _exit_after(timeout_s: float) -> None:
    """End the process if it has not exited `timeout_s` from now: a stop that hangs (an
    alert or telemetry export stuck in a thread) must not keep the address. Every
    acknowledged change is durable already, so this is no worse than a crash."""
    def overran() -> None:
        log.critical("stop overran shutdown.timeout_s (%.1f s): exiting now", timeout_s)
        logging.shutdown()
        os._exit(STOP_OVERRAN)

    timer = threading.Timer(timeout_s, overran)
    timer.daemon = True
    timer.start()


async def serve(app: App) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    sidecar = Sidecar(app)
    try:
        await sidecar.start()
    except BaseException:
        with contextlib.suppress(Exception):  # the start-up error is the one to report
            app.journal.close()
            app.store.close()  # release the state file
        raise
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Future[None]] = []

    def stop() -> None:
        if not stopping:
            _exit_after(app.settings.shutdown.timeout_s)
            stopping.append(asyncio.ensure_future(sidecar.stop()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    await sidecar.wait_stopped()
