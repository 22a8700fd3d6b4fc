"""bootstrap is the only composition root: the gRPC adapter imports none of it and picks no
implementation, and the timers that trip stale feeds and lost heartbeats belong to the
sidecar bootstrap builds, whatever serves it."""

from __future__ import annotations

import ast
import functools
import importlib.util
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ess_sidecar.adapters.grpc.server import Sidecar
from ess_sidecar import bootstrap
from ess_sidecar.adapters.storage.memory import InMemoryStateStore
from ess_sidecar.bootstrap import App, build, server_parts
from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.commands import Trigger
from ess_sidecar.domain.errors import ResetRefused, StoreUnavailable
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.states import Cause, State, TriggerMode, TriggerReason
from ess_sidecar.ports import SteadyClock
from ess_sidecar.service import Guard
from ess_sidecar.settings import load_settings
from ess_sidecar.timers import Timers
from tests.fakes import FakeClock

PACKAGE = Path(__file__).resolve().parents[2] / "ess_sidecar"
BOOTSTRAP = "ess_sidecar.bootstrap"
STRATEGY = Scope(ScopeKind.STRATEGY, "momo")


def imported_names(path: Path) -> set[str]:
    """What a module imports, as absolute dotted names (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_no_adapter_imports_the_composition_root() -> None:
    adapters = sorted((PACKAGE / "adapters").rglob("*.py"))
    assert {PACKAGE / "adapters/grpc/server.py", PACKAGE / "adapters/grpc/security.py"} \
        <= set(adapters)
    offenders = {str(path.relative_to(PACKAGE)): name for path in adapters
                 for name in imported_names(path)
                 if name == BOOTSTRAP or name.startswith(f"{BOOTSTRAP}.")}
    assert offenders == {}


def test_importing_the_grpc_server_loads_neither_bootstrap_nor_telemetry() -> None:
    """It is handed the implementations it serves with: it needs none of them loaded."""
    code = "import sys, ess_sidecar.adapters.grpc.server; print(*sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60, cwd=PACKAGE.parent).stdout.split()
    assert "ess_sidecar.adapters.grpc.server" in loaded
    assert BOOTSTRAP not in loaded
    assert [name for name in loaded if name.startswith(
        ("ess_sidecar.adapters.telemetry", "opentelemetry", "prometheus_client"))] == []


# -- the timers belong to the sidecar bootstrap builds ----------------------------------------

@pytest.fixture
def build_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """A sidecar as bootstrap builds it, with no server; closed after the test."""
    apps: list[App] = []

    def build_one(clock: FakeClock | None, **sections: Any) -> App:
        settings = load_settings(None, **{"server": {"listen": "", "uds": str(tmp_path / "s")},
                                          "store": {"path": str(tmp_path / "ess.db")},
                                          **sections})
        apps.append(build(settings, clock=clock))
        return apps[-1]

    yield build_one
    for app in apps:
        app.journal.close()
        app.store.close()
        if app.observability is not None:
            app.observability.shutdown()


def test_a_sidecar_built_by_bootstrap_trips_a_stale_feed_on_its_timers(build_app) -> None:
    clock = FakeClock()
    app = build_app(clock)
    app.guard.report_metric(STRATEGY, Metric.DATA_FEED_TICK, 1)
    clock.advance(29)
    assert app.timers.tick() == []
    clock.advance(1)  # the default window: 30 s without a tick
    (trip,) = app.timers.tick()
    assert (trip.scope, trip.state, trip.breaker) == (STRATEGY, State.TRIPPED, "data_feed_stale")
    assert app.guard.restricted() == [trip]


async def test_the_timers_run_on_the_loop_with_no_transport_at_all(build_app) -> None:
    clock = FakeClock()
    app = build_app(clock)
    app.guard.heartbeat("ex-1", STRATEGY, ttl_s=2.0)
    watcher = app.guard.watch([STRATEGY], 0).subscription
    clock.advance(2.5)
    app.timers.start()
    try:
        trip = await watcher.next(timeout=10.0)  # None: no trip within the deadline
    finally:
        app.timers.stop()
    assert trip is not None
    assert (trip.scope, trip.cause, trip.breaker) == (STRATEGY, Cause.HEARTBEAT_LOST,
                                                      "heartbeat_lost")


def test_server_parts_hand_over_the_apps_timers_and_nothing_telemetry_did_not_turn_on(
        build_app) -> None:
    app = build_app(FakeClock(), telemetry={"enabled": False})
    parts = server_parts(app)
    assert parts.timers is app.timers
    assert (parts.authenticator, parts.credentials, tuple(parts.interceptors),
            parts.wrap_streams, parts.observability, parts.metrics_server) \
        == (None, None, (), None, None, None)


def test_server_parts_with_telemetry_trace_calls_and_serve_metrics(build_app) -> None:
    app = build_app(FakeClock(), telemetry={"metrics_listen": "127.0.0.1:0"})
    parts = server_parts(app)
    assert parts.interceptors and parts.wrap_streams is not None
    assert parts.observability is app.observability and parts.metrics_server is not None


# -- the gRPC server serves with the timers it is given ---------------------------------------

class RecordingTimers(Timers):
    def __init__(self, guard: Guard, interval_s: float, events: list[str]) -> None:
        super().__init__(guard, interval_s)
        self.events = events

    def start(self) -> None:
        self.events.append("timers started")
        super().start()

    def stop(self) -> None:
        self.events.append("timers stopped")
        super().stop()


class RecordingStore(InMemoryStateStore):
    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def close(self) -> None:
        self.events.append("store closed")
        super().close()


async def test_the_grpc_server_starts_the_timers_and_stops_them_before_the_store_closes(
        tmp_path: Path, socket_dir: Path) -> None:
    events: list[str] = []
    settings = load_settings(None, server={"listen": "", "uds": str(socket_dir / "ess.sock")},
                             store={"path": str(tmp_path / "ess.db")}, shutdown={"drain_s": 0})
    app = build(settings, clock=FakeClock(), store=RecordingStore(events))
    timers = RecordingTimers(app.guard, settings.timers.interval_s, events)
    sidecar = Sidecar(replace(server_parts(app), timers=timers))
    await sidecar.start()
    assert events == ["timers started"]
    await sidecar.stop()
    assert events == ["timers started", "timers stopped", "store closed"]


def test_a_sidecar_refused_by_the_lock_leaves_the_running_ones_journal_alone(
        build_app, tmp_path: Path) -> None:
    """Review 20: the second sidecar started failed closed, but opened the first one's
    journal for appending: its timer runs, fills and snapshots went in chained on its own
    head, and its group commit overwrote the seal, so the first one's next start found
    the journal damaged, and a reseal cut working orders it had acknowledged."""
    clock = FakeClock()
    first = build_app(clock)
    first.guard.sync_positions("acc-1", 1e6, [])
    first.journal.sync()
    journal = Path(f"{tmp_path / 'ess.db'}.journal")
    seal = Path(f"{journal}.seal")
    before = journal.read_bytes(), seal.read_bytes()
    second = build_app(clock)
    assert second.guard.engine.state_of(GLOBAL) is State.TRIPPED
    with pytest.raises(StoreUnavailable, match="reports are refused until the sidecar"):
        second.guard.sync_positions("acc-1", 2e6, [])  # judged by memory it cannot trust
    clock.advance(1)
    second.timers.tick()
    second.journal.close()
    assert (journal.read_bytes(), seal.read_bytes()) == before


async def test_the_timers_say_when_the_system_clock_steps(build_app, caplog) -> None:
    """Review 36d: the serving clock keeps its own time through a step of the system
    clock; the operator is told, once per step, where the system clock now is."""
    app = build_app(FakeClock())
    wall = [1_000_000.0]
    timers = Timers(app.guard, 1.0, SteadyClock(0.0, lambda: wall[0], lambda: 0.0))
    await timers.tick_async()
    assert "system clock" not in caplog.text
    wall[0] -= 3_600.0
    await timers.tick_async()
    await timers.tick_async()
    assert caplog.text.count("the system clock is now -3600.000 s from the sidecar's") == 1


async def test_a_restart_goes_on_from_the_serving_clock_not_a_stepped_system_clock(
        build_app, monkeypatch, caplog) -> None:
    """Review 43d: the serving clock kept its own time through an NTP step forward of a
    day, so what it stamped since was a day behind the system's clock; the next start took
    the system's time, and all of that looked a day older: a cooldown over at once, used
    order ids and breaker evidence forgotten. The step is journaled (ClockRead), and the
    next start goes on from the serving clock's time plus what the system's says passed."""
    wall, monotonic = [1_000_000.0], [0.0]
    monkeypatch.setattr(bootstrap, "SteadyClock", functools.partial(
        SteadyClock, wall=lambda: wall[0], monotonic=lambda: monotonic[0]))
    first = build_app(None)
    wall[0] += 86_400.0  # NTP steps the system clock forward a day
    await first.timers.tick_async()
    wall[0], monotonic[0] = wall[0] + 10.0, monotonic[0] + 10.0
    first.guard.trigger(Trigger(STRATEGY, TriggerMode.HALT, "desk says stop",
                                TriggerReason.USER_INITIATED, (), "ops"))
    first.journal.close()
    first.store.close()
    wall[0], monotonic[0] = wall[0] + 5.0, 0.0  # a new process, 5 s later
    second = build_app(None)
    assert second.guard.engine.state_of(STRATEGY) is State.TRIPPED
    with pytest.raises(ResetRefused, match="cooldown"):  # 15 s of its 900 have passed
        second.guard.reset(STRATEGY, "fixed", False, "ops")
    assert "the sidecar's clock starts -86400.000 s from the system's" in caplog.text
