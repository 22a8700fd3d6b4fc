"""A real sidecar in this process: real gRPC server on a Unix socket, real SQLite file,
a fake clock the test moves."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc
from ess_sidecar.adapters.grpc.server import Sidecar
from ess_sidecar.bootstrap import App, build, server_parts
from ess_sidecar.ports import StateStore
from ess_sidecar.settings import load_settings
from tests.fakes import FakeClock

ACCOUNT, STRATEGY, SYMBOL = "acc-1", "momo", "AAPL"


def strategy_scope(ident: str = STRATEGY) -> pb.Scope:
    return pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id=ident)


_IDS = itertools.count(1)


def order(**fields: Any) -> pb.CheckOrderRequest:
    """An order with a fresh client_order_id unless one is given."""
    values = dict(account=ACCOUNT, strategy=STRATEGY, symbol=SYMBOL, side=pb.SIDE_BUY,
                  quantity=10, price=100, client_order_id=f"o-{next(_IDS)}")
    return pb.CheckOrderRequest(**{**values, **fields})


def synced(account: str = ACCOUNT, equity: float = 1e6) -> pb.SyncPositionsRequest:
    """Equity for the account and a mark (100) for SYMBOL, so that exposure limits can
    judge order()s."""
    return pb.SyncPositionsRequest(account=account, equity=equity, positions=[
        pb.Position(strategy=STRATEGY, symbol=SYMBOL, quantity=0, mark_price=100)])


@dataclass
class Running:
    app: App
    sidecar: Sidecar
    clock: FakeClock
    channel: grpc.aio.Channel
    stub: pb_grpc.GuardServiceStub
    target: str

    async def version(self) -> int:
        return (await self.stub.GetState(pb.GetStateRequest())).state_version

    async def epoch(self) -> str:
        """The epoch a watcher resumes with (WatchStateResponse.epoch: the store's),
        read as a watcher reads it: from a snapshot's end."""
        stream = self.stub.WatchState(pb.WatchStateRequest())
        try:
            while (message := await next_event(stream)).kind != \
                    pb.WATCH_EVENT_KIND_SNAPSHOT_END:
                pass
            return message.epoch
        finally:
            stream.cancel()


@pytest.fixture
def socket_dir() -> Any:
    # Unix socket paths are limited to ~100 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="ess-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def start_sidecar(tmp_path: Path, socket_dir: Path) -> Any:
    started: list[Running] = []

    async def start(state_store: StateStore | None = None, sync: bool = True,
                    **overrides: Any) -> Running:
        """sync: give ACCOUNT equity and a mark, so exposure limits do not deny every
        order."""
        sections: dict[str, Any] = {
            "server": {"listen": "", "uds": str(socket_dir / "ess.sock")},
            "store": {"path": str(tmp_path / "ess.db")},
            "watch": {"heartbeat_interval_s": 30.0},
            "shutdown": {"drain_s": 0.0},
            # tests send the same order() many times on a still clock; its own tests
            # turn the identical-orders rule back on
            "limits": {"duplicate_identical_orders": 0},
        }
        for section, values in overrides.items():
            sections[section] = {**sections.get(section, {}), **values}
        clock = FakeClock()
        app = build(load_settings(None, **sections), clock=clock, store=state_store)
        sidecar = Sidecar(server_parts(app))
        await sidecar.start()
        target = sidecar.addresses[0]
        channel = grpc.aio.insecure_channel(target)
        running = Running(app, sidecar, clock, channel, pb_grpc.GuardServiceStub(channel), target)
        started.append(running)
        if sync:
            await running.stub.SyncPositions(synced())
        return running

    yield start
    for running in started:
        await running.channel.close()
        await running.sidecar.stop()


@pytest.fixture
async def sidecar(start_sidecar: Any) -> AsyncIterator[Running]:
    yield await start_sidecar()


async def next_event(stream: Any, timeout: float = 5.0) -> pb.WatchStateResponse:
    """The next non-heartbeat message of a WatchState stream, within a deadline."""
    while True:
        message = await asyncio.wait_for(stream.read(), timeout)
        if message is grpc.aio.EOF:
            raise AssertionError("watch stream ended")
        if message.kind != pb.WATCH_EVENT_KIND_HEARTBEAT:
            return message
