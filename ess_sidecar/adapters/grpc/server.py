"""The grpc.aio server: GuardService, health, reflection, timers, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ess.v1 import guard_pb2 as pb

from ...bootstrap import App
from ...domain.errors import StoreUnavailable
from .handlers import add_guard_service
from .servicer import GuardServicer

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GuardService"].full_name
HEALTH_NAMES = ("", SERVICE_NAME)


class Sidecar:
    """One running server; `start`, then `wait_stopped`; `stop` drains in-flight calls."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.server = grpc.aio.server()
        self.health = health.aio.HealthServicer()
        self.addresses: list[str] = []
        self._timers: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        settings = app.settings
        add_guard_service(GuardServicer(app.guard, settings.watch.heartbeat_interval_s),
                          self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), self.server)

    async def start(self) -> None:
        server_settings = self.app.settings.server
        for name in HEALTH_NAMES:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if server_settings.listen:
            port = self.server.add_insecure_port(server_settings.listen)
            host = server_settings.listen.rsplit(":", 1)[0]
            self.addresses.append(f"{host}:{port}")
        if server_settings.uds:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(server_settings.uds)  # a socket left by a killed process
            self.server.add_insecure_port(f"unix:{server_settings.uds}")
            self.addresses.append(f"unix:{server_settings.uds}")
        if not self.addresses:
            raise ValueError("server.listen and server.uds are both empty: nothing to serve on")
        await self.server.start()
        self._timers = asyncio.create_task(self._run_timers())
        for name in HEALTH_NAMES:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("ess-sidecar serving on %s", ", ".join(self.addresses))

    async def stop(self) -> None:
        """NOT_SERVING first, end the watch streams, drain calls, then close the store."""
        if self._stopped.is_set():
            return
        await self.health.enter_graceful_shutdown()
        self.app.guard.subscribers.close_all()
        await self.server.stop(self.app.settings.server.grace_s)
        if self._timers is not None:
            self._timers.cancel()
        self.app.store.close()
        self._stopped.set()
        log.info("ess-sidecar stopped")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _run_timers(self) -> None:
        interval = self.app.settings.timers.interval_s
        while True:
            try:
                self.app.guard.run_timers()
            except StoreUnavailable:
                log.exception("timer transition could not be made durable")
            except Exception:  # a bug here must never stop the timers
                log.exception("timer run failed")
            await asyncio.sleep(interval)


async def serve(app: App) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    sidecar = Sidecar(app)
    await sidecar.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(sidecar.stop()))
    await sidecar.wait_stopped()
