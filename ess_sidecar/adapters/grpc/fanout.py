"""WatchState served by a process of its own: the fan-out.

Each WatchState message costs gRPC's write path 35 to 100 µs of CPU per watcher, on the
interpreter that makes the decisions (docs/design.md, known gap 3): 200 watchers of a
storm of 100 transitions a second take a whole core. With `watch.fanout_listen` or
`watch.fanout_uds` set, the sidecar starts this process (`FanoutProcess`), which serves
WatchState, and only it, on those addresses, to up to `watch.fanout_max_watchers`
watchers; the sidecar writes each transition once, to it, however many watch.

What a watcher gets is what the sidecar's own WatchState gives:
- **The feed** is one WatchState stream from the sidecar over a Unix socket in a
  directory only the sidecar's user may enter, under a principal of its own (`FEEDER`,
  role `watcher`: it may read the state, nothing else) whose token is made at each start
  and handed over on this process's standard input, never in its arguments or
  environment. Each transition it brings is kept as the sidecar serialized it, the
  latest `RING` of them, for the watchers that join.
- **A watcher** is admitted as the sidecar admits one (the tokens, certificates and TLS
  files' contents the sidecar read at its start, handed over with the token; the roles;
  `watch.max_scopes`), and its request goes to the sidecar as it came, under the
  feeder: the snapshot, or the replay after `from_version` with its epoch checks, and
  any error (bad input, `OUT_OF_RANGE`) are the sidecar's own answer, read whole (16 at
  once) and passed on byte for byte, at the watcher's pace, up to SNAPSHOT_END. From
  the version SNAPSHOT_END gives, the
  watcher is served from the ring and then the feed: nothing after it is missed, nothing
  repeated. One that joins past what the ring still holds is told to resume from that
  version (RESOURCE_EXHAUSTED, as one cut off for being slow).
- **Heartbeats**: after `watch.heartbeat_interval_s` with nothing sent, the latest version
  the feed brought, its epoch, and the sidecar's time in its latest message (none before
  the feed has brought a time, or while it is behind the watcher's own answer); none
  while the sidecar has been quiet longer than an interval and a second (idle, it sends
  one every interval): this process never vouches for a sidecar that stopped talking. The
  feed quiet for two intervals and a second is taken as lost.
- **Slow watchers**: more than `watch.queue_size` transitions behind, one is ended after
  what was queued, RESOURCE_EXHAUSTED with the version to resume from; one whose stream
  has been held sending for two heartbeat intervals gives its place to a new one when
  every place is taken, and its snapshot's bytes when SNAPSHOT_BYTES are held: it is
  told so, with the version to resume from, once its stream takes a message again.
- **The feed lost** (the sidecar stopping, or its stream ended): every watcher is ended
  UNAVAILABLE with the version to resume from, health says NOT_SERVING, and the feed is
  opened again (a watcher that comes meanwhile waits up to FEED_WAIT_S for it).
- **The sidecar gone** (the pipe it holds open on this process's standard input ends):
  this process stops. The sidecar starts it again if it ends otherwise.

Checks, reports, stops and the other reads are UNIMPLEMENTED here: they go to the
sidecar. This process makes no decision and writes nothing durable.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ess.v1 import guard_pb2 as pb

from ...domain.access import Principal, Role
from ...domain.errors import Busy, GuardError, ShuttingDown, SubscriberTooSlow
from ...domain.scopes import Scope
from ...watch import FANOUT_SNAPSHOTS, Subscribers, Subscription
from ..auth.tokens import Principals, new_token
from ..descriptors import python_stderr
from .auth import Authenticator, InternalToken
from .errors import status_of
from .handlers import RefusedAsItStarts, add_guard_service
from .mapping import heartbeat_to_watch, scope_from_proto

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GuardService"].full_name
WATCH_METHOD = f"/{SERVICE_NAME}/WatchState"
FEEDER = "ess-fanout"  # the fan-out's principal at the sidecar: the actor of nothing
DIR_PREFIX = "ess-fanout-"  # its private directory's, with the sidecar's pid after it
RING = 4096  # transitions kept for the watchers that join (at least watch.queue_size)
FEED_WAIT_S = 5.0  # how long a watcher that comes while the feed is down waits for it
SNAPSHOT_TIMEOUT_S = 60.0  # a watcher's snapshot, read from the sidecar and passed on
# Snapshot calls to the sidecar in flight, each in one of the places it keeps for the
# fan-out's streams (watch.FANOUT_PLACES, apart from watch.max_watchers).
SNAPSHOTS_AT_ONCE = FANOUT_SNAPSHOTS
SNAPSHOT_BYTES = 256 << 20  # snapshots read and not yet written, in all; more: retry later
# Its CPU priority below the sidecar's (nice(2)): on a busy machine the decisions and the
# stops go first, and the watchers lag (each ended to resume once `watch.queue_size` behind).
NICENESS = 10
_PACKAGES = Path(__file__).resolve().parents[3]  # where ess_sidecar is, for the child
CHILD = ("import sys; sys.path.insert(0, sys.argv.pop(1));"
         " from ess_sidecar.adapters.grpc.fanout import main; sys.exit(main())")


@dataclass(frozen=True)
class FanoutConfig:
    """What the fan-out process is given on its standard input, as one line of JSON: what
    the sidecar read at its start, so that a restarted child admits whom the sidecar does
    (review 50c: it read the tokens file again, edited since)."""

    upstream: str  # the sidecar's private Unix socket, "unix:PATH"
    token: str  # the feeder's bearer token (also with authentication off: see owns())
    listen: str  # TCP host:port, or ""
    uds: str  # Unix socket path, or ""
    server: dict[str, Any]  # the sidecar's ServerSettings (connection caps, grace)
    tls: list[str] | None  # the key, certificate chain and client CA ("": none), base64
    principals: dict[str, Any] | None  # the tokens file as read (None: authentication off)
    heartbeat_s: float
    queue_size: int
    max_watchers: int
    max_scopes: int
    log_format: str
    log_level: str


def principals_to_json(principals: Principals) -> dict[str, Any]:
    return {"tokens": [[digest.hex(), p.name, p.role.value, p.credential]
                       for digest, p in principals.tokens],
            "certificates": {cn: [p.name, p.role.value, p.credential]
                             for cn, p in principals.certificates.items()}}


def principals_from_json(data: dict[str, Any]) -> Principals:
    return Principals(
        tuple((bytes.fromhex(digest), Principal(name, Role(role), credential))
              for digest, name, role, credential in data["tokens"]),
        {cn: Principal(name, Role(role), credential)
         for cn, (name, role, credential) in data["certificates"].items()})


@dataclass(frozen=True, slots=True)
class Relayed:
    """A transition as the feed brought it: what a Subscription matches and counts
    (scope, version), and the bytes every watcher is sent."""

    version: int
    scope: Scope
    data: bytes


@dataclass
class Feed:
    """The one WatchState stream from the sidecar, and the latest RING transitions."""

    subscribers: Subscribers
    ring_size: int
    up: asyncio.Event = field(default_factory=asyncio.Event)
    version: int = 0  # the latest version the feed brought
    epoch: str = ""  # its epoch
    start: int = -1  # the ring holds every transition after this version; -1: no feed
    _time: float | None = None  # the sidecar's time in the latest message that had one
    _heard: float = 0.0  # this process's monotonic clock at the latest message
    _ring: collections.deque[Relayed] = field(default_factory=collections.deque)

    def follow(self, data: bytes) -> None:
        """Take one message of the feed's stream."""
        message = pb.WatchStateResponse.FromString(data)
        kind = message.kind
        self._heard = time.monotonic()
        if kind == pb.WATCH_EVENT_KIND_SNAPSHOT:
            return  # the state now: the ring starts after it
        if message.HasField("time"):
            self._time = message.time.ToNanoseconds() / 1e9
        self.version, self.epoch = message.version, message.epoch
        if kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END:
            self.start = message.version
            self._ring.clear()
            self.up.set()
        elif kind == pb.WATCH_EVENT_KIND_TRANSITION:
            relayed = Relayed(message.version, scope_from_proto(message.scope), data)
            if len(self._ring) >= self.ring_size:
                self.start = self._ring.popleft().version
            self._ring.append(relayed)
            self.subscribers.publish((relayed,))

    def lost(self, why: str) -> None:
        """The stream ended: every watcher is ended after what it was queued."""
        self.up.clear()
        self.start, self._time = -1, None
        self._ring.clear()
        self.subscribers.end_all(f"the fan-out lost its feed from the sidecar ({why})")

    def join(self, scopes: list[Scope], after: int, resume: int | None = None) -> Subscription:
        """A watcher served every transition after `after` (its snapshot's version), told
        to resume from `resume` (by default `after`) until it has been given more. Raises
        SubscriberTooSlow if the ring no longer holds them all."""
        resume = after if resume is None else resume
        if not self.up.is_set() or self.start > after:
            raise SubscriberTooSlow(f"the fan-out no longer holds every transition after"
                                    f" version {after}; resubscribe with"
                                    f" from_version={resume}")
        subscription = self.subscribers.add(scopes)
        subscription.after, subscription.delivered = after, resume
        for relayed in self._ring:
            if subscription.matches(relayed) and not subscription.offer(relayed):
                self.subscribers.remove(subscription)  # it says so once drained
                break
        return subscription

    def fresh(self, within_s: float) -> bool:
        """Whether the sidecar said anything within `within_s`: idle, it sends a heartbeat
        every `watch.heartbeat_interval_s`."""
        return time.monotonic() - self._heard <= within_s

    def heartbeat(self, subscription: Subscription) -> bytes | None:
        """A heartbeat for a watcher with nothing queued: the latest version the feed
        brought (it has been given everything up to it), its epoch, and the sidecar's time
        in the feed's latest message that had one: what the sidecar said, never a time it
        has not reached (review 51b: a frozen sidecar's time moved on here). None while
        the feed has brought no time since it was opened, or is behind what the watcher
        was given (its own answer came from a later state of the sidecar: review 51c, the
        feed's older time went out with the watcher's newer version)."""
        if self._time is None or self.version < subscription.delivered:
            return None
        return heartbeat_to_watch(self.version, self._time, self.epoch).SerializeToString()


@dataclass(eq=False)
class _Answer:
    """The sidecar's answer to one watcher's request, read whole, being written to it:
    each part with the version the watcher may resume from once it is written (a
    replayed transition's; 0 for a part of a snapshot, which makes it current of
    nothing until all of it is written), and the bytes counted in the servicer's budget."""

    parts: list[tuple[bytes, int]]
    version: int  # its SNAPSHOT_END's
    held: int = 0
    subscription: Subscription | None = None


class FanoutServicer:
    """WatchState only; the handlers admit and parse as the sidecar's do."""

    def __init__(self, feed: Feed, watch: Callable[..., Any], credentials: tuple[Any, ...],
                 heartbeat_s: float) -> None:
        self._feed = feed
        self._watch = watch  # the sidecar's WatchState, bytes in and out
        self._credentials = credentials  # the feeder's metadata
        self._heartbeat_s = heartbeat_s
        self._snapshots = asyncio.Semaphore(SNAPSHOTS_AT_ONCE)
        self._joining = 0  # admitted, their snapshot being read: they hold a place
        self._buffered = 0  # bytes of snapshots read and not yet written whole
        self._writing: set[_Answer] = set()  # being written: one stuck is cut for room

    async def WatchState(self, request: pb.WatchStateRequest,
                         context: grpc.aio.ServicerContext) -> None:
        """Written through the context (handlers._unary_stream takes a coroutine). The
        sidecar's answer is read whole first, then written at the watcher's pace: a slow
        reader holds no turn of the sidecar's (review 50d: bounding each write cut readers
        the sidecar itself served), and from the moment it is read the watcher is a
        subscription like any other, its place given away if its stream is stuck."""
        feed, subscription, answer = self._feed, None, None
        try:
            feed.subscribers.admit(len(request.scopes), self._joining)
            scopes = [scope_from_proto(s, f"scopes[{i}]") for i, s in enumerate(request.scopes)]
            self._joining += 1
            try:
                answer = await self._snapshot(request, context)
                subscription = answer.subscription = feed.join(
                    scopes, answer.version, resume=request.from_version)
            finally:
                self._joining -= 1
            self._writing.add(answer)
            try:
                for data, version in answer.parts:  # emptied if the watcher is cut (below)
                    if subscription.ended:
                        break  # told so below, from what it was given whole (50e)
                    await context.write(data)
                    subscription.progressed()  # reading, slowly maybe: not stuck (50e)
                    subscription.delivered = max(subscription.delivered, version)
                if not subscription.ended:
                    subscription.delivered = max(subscription.delivered, answer.version)
            finally:
                self._writing.discard(answer)
            self._give_back(answer)  # gRPC holds no more of it
            wait = self._heartbeat_s
            while True:
                relayed = await subscription.next(wait)
                wait = self._heartbeat_s
                if relayed is not None:
                    await context.write(relayed.data)
                elif feed.fresh(self._heartbeat_s + 1.0):  # none for a quiet sidecar
                    if (beat := feed.heartbeat(subscription)) is not None:
                        await context.write(beat)
                    else:  # the feed has no time of the sidecar's yet (just opened), or
                        wait = self._heartbeat_s / 10  # is behind: soon, not an interval
                        # on (review 51e: two intervals with none, after a reconnect)
        except GuardError as error:
            await context.abort(status_of(error), str(error))
        finally:
            if answer is not None:
                self._give_back(answer)
            if subscription is not None:
                feed.subscribers.remove(subscription)

    def _give_back(self, answer: _Answer) -> None:
        self._buffered -= answer.held
        answer.held = 0
        answer.parts.clear()

    async def _snapshot(self, request: pb.WatchStateRequest,
                        context: grpc.aio.ServicerContext) -> _Answer:
        """The sidecar's own answer to the request, up to its SNAPSHOT_END, read whole (at
        most SNAPSHOTS_AT_ONCE at once, SNAPSHOT_BYTES held in all). An error of the
        sidecar's (bad input, OUT_OF_RANGE, too many watchers) ends the watcher with it."""
        feed = self._feed
        if not feed.up.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(feed.up.wait(), FEED_WAIT_S)
            if not feed.up.is_set():
                raise ShuttingDown("the fan-out has no feed from the sidecar (starting or"
                                   " stopping); resubscribe later")
        parts: list[tuple[bytes, int]] = []
        held = 0
        async with self._snapshots:
            call = self._watch(request.SerializeToString(), metadata=self._credentials,
                               timeout=SNAPSHOT_TIMEOUT_S)
            try:
                async for data in call:
                    if self._buffered + len(data) > SNAPSHOT_BYTES \
                            and not self._cut_a_stuck_writer():
                        raise Busy(f"the fan-out holds {SNAPSHOT_BYTES >> 20} MiB of"
                                   " snapshots not yet read by their watchers; resubscribe"
                                   " later")
                    self._buffered += len(data)
                    held += len(data)
                    message = pb.WatchStateResponse.FromString(data)
                    if message.kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END:
                        parts.append((data, 0))
                        answer = _Answer(parts, message.version, held)
                        held = 0
                        return answer
                    parts.append((data, message.version
                                  if message.kind == pb.WATCH_EVENT_KIND_TRANSITION else 0))
            except grpc.aio.AioRpcError as error:
                await context.abort(error.code(), error.details() or "")
            finally:
                call.cancel()
                self._buffered -= held  # not all of it came: none of it will be sent
        raise ShuttingDown("the sidecar ended the snapshot before its end")

    def _cut_a_stuck_writer(self) -> bool:
        """End the watcher whose answer has been held sending longest, past the
        stuck-stream bound, and free what it holds (review 50e: watchers that read nothing
        held the bytes for good, and every later snapshot was refused). Ended as the
        sidecar ends a stuck watcher: its place given up, and told why, with the version
        to resume from, once its stream takes a message again (review 51b: cancelled, it
        was never told, and went stale)."""
        subscribers = self._feed.subscribers
        now, bound = subscribers.monotonic(), subscribers.stuck_s
        stuck = max(self._writing, default=None,
                    key=lambda a: a.subscription.stuck_for(now) if a.subscription else 0.0)
        if stuck is None or stuck.subscription is None \
                or stuck.subscription.stuck_for(now) <= bound:
            return False
        self._writing.discard(stuck)
        subscribers.end(stuck.subscription, f"its snapshot was given up for another"
                        f" watcher's after its stream sent nothing for"
                        f" {stuck.subscription.stuck_for(now):.1f} s (the fan-out holds at"
                        f" most {SNAPSHOT_BYTES >> 20} MiB of snapshots)")
        self._give_back(stuck)  # but the part gRPC is sending
        return True


async def _feed_forever(feed: Feed, watch: Callable[..., Any], credentials: tuple[Any, ...],
                        serving: Callable[[bool], Awaitable[None]], quiet_s: float) -> None:
    """Follow the sidecar's WatchState, opening it again whenever it ends, or when it has
    said nothing for `quiet_s` (a heartbeat is due every watch.heartbeat_interval_s: a
    sidecar that stopped sending is not vouched for)."""
    pause = 0.05
    while True:
        call = watch(pb.WatchStateRequest().SerializeToString(), metadata=credentials,
                     wait_for_ready=True)
        try:
            while (data := await asyncio.wait_for(call.read(), quiet_s)) is not grpc.aio.EOF:
                came_up = not feed.up.is_set()
                feed.follow(data)
                if came_up and feed.up.is_set():
                    pause = 0.05
                    await serving(True)
            why = "the sidecar ended its stream"
        except TimeoutError:
            why = f"the sidecar sent nothing for {quiet_s:g} s"
        except grpc.aio.AioRpcError as error:  # its own "resubscribe" is the sidecar's
            why = f"{error.code().name}: {(error.details() or '').split('; resubscribe')[0]}"
        finally:
            call.cancel()
        if feed.up.is_set():
            log.warning("fan-out: its feed from the sidecar ended (%s); opening it again", why)
        feed.lost(why)
        await serving(False)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 2.0)


async def serve(config: FanoutConfig, stopped: asyncio.Event) -> None:
    """Serve until `stopped` is set."""
    from ...settings import ServerSettings  # noqa: PLC0415
    from .security import credentials_of  # noqa: PLC0415
    from .server import bind_tcp, claim_unix_socket, connections_per_address, \
        server_options  # noqa: PLC0415
    settings = ServerSettings.model_validate(config.server)
    settings = settings.model_copy(update={"listen": config.listen, "uds": config.uds})
    addresses = int(bool(config.listen)) + int(bool(config.uds))
    authenticator = Authenticator(principals_from_json(config.principals)) \
        if config.principals is not None else None
    early = (RefusedAsItStarts(authenticator),) \
        if authenticator is not None and not settings.tls_client_ca else ()
    server = grpc.aio.server(interceptors=early, options=server_options(
        settings, connections_per_address(settings, addresses)))
    subscribers = Subscribers(config.queue_size, most=config.max_watchers,
                              stuck_s=2 * config.heartbeat_s,  # as the sidecar's own
                              most_scopes=config.max_scopes,
                              most_key="watch.fanout_max_watchers")
    feed = Feed(subscribers, max(RING, config.queue_size))
    credentials = (("authorization", f"Bearer {config.token}"),)
    async with grpc.aio.insecure_channel(config.upstream) as channel:
        watch = channel.unary_stream(WATCH_METHOD)  # bytes in and out
        add_guard_service(FanoutServicer(feed, watch, credentials, config.heartbeat_s),
                          server, authenticator, methods=frozenset({"WatchState"}))
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

        async def serving(up: bool) -> None:
            status = health_pb2.HealthCheckResponse.SERVING if up \
                else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in ("", SERVICE_NAME):
                await health_servicer.set(name, status)

        await serving(False)
        if config.uds:
            claim_unix_socket(config.uds, "watch.fanout_uds")
            server.add_insecure_port(f"unix:{config.uds}")
        if config.listen:
            pems = [base64.b64decode(pem) for pem in config.tls] if config.tls else None
            bind_tcp(server, config.listen, credentials_of(pems[0], pems[1], pems[2] or None)
                     if pems else None, "watch.fanout_listen")
        await server.start()
        log.info("fan-out serving WatchState on %s",
                 ", ".join(a for a in (config.listen, config.uds and f"unix:{config.uds}") if a))
        following = asyncio.create_task(_feed_forever(
            feed, watch, credentials, serving, 2 * config.heartbeat_s + 1.0))
        try:
            await stopped.wait()
        finally:
            following.cancel()
            subscribers.close_all()
            await serving(False)
            await server.stop(settings.grace_s)


def main() -> int:
    """The fan-out process: its FanoutConfig is the first line of standard input, which the
    sidecar then holds open until it stops; its end stops this process. Read from the
    descriptor itself, on the loop: a thread blocked in a read of sys.stdin made every
    exit an abort (review 50c: SIGABRT, a core dump holding the feeder's token)."""
    line = b""
    while not line.endswith(b"\n"):
        more = os.read(0, 1 << 16)
        if not more:
            return 1  # the sidecar went before it said anything
        line += more
    config = FanoutConfig(**json.loads(line))
    os.nice(NICENESS)
    from ..telemetry.logs import configure_logging, descriptor_2_never_waits  # noqa: PLC0415
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C goes to the group: the
    # sidecar stops it once its own watchers are ended

    async def run() -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)

        def readable() -> None:  # the sidecar writes nothing more: only its end comes
            with contextlib.suppress(BlockingIOError):
                if not os.read(0, 1 << 16):
                    loop.remove_reader(0)
                    stopped.set()
        os.set_blocking(0, False)
        loop.add_reader(0, readable)
        await serve(config, stopped)

    with descriptor_2_never_waits():
        configure_logging(config.log_format, config.log_level)
        try:
            asyncio.run(run())
        except Exception:
            log.exception("fan-out process failed")
            return 1
    return 0


class FanoutProcess:
    """The sidecar's side: the fan-out process started, watched, started again if it
    ends on its own, and stopped with the sidecar."""

    RESTART_S = (1.0, 60.0)  # the first pause before a restart, and the longest

    def __init__(self, settings: Any, authenticator: Authenticator | None) -> None:
        """Reads the TLS files now, as the sidecar just did: a restarted child serves what
        the sidecar serves. Raises InvalidConfig as the sidecar's own read would."""
        from .security import server_pems  # noqa: PLC0415
        self._settings = settings
        _remove_left_behind()
        # 0700: this user's only; named by this pid, for the next start to remove it
        self._dir = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-")
        self.upstream = os.path.join(self._dir, "upstream.sock")
        pems = server_pems(settings.server) if settings.watch.fanout_listen else None
        self._tls = [base64.b64encode(pem or b"").decode() for pem in pems] if pems else None
        # The feeder's token, valid for this process's life: its principal with
        # authentication on, and with it off too what tells its streams apart (owns)
        self._token, self._principals = InternalToken(new_token()), None
        if authenticator is not None:
            self._principals = principals_to_json(authenticator.principals)
            authenticator.admit_internal(self._token, Principal(FEEDER, Role.WATCHER,
                                                                "fan-out"))
        self._process: subprocess.Popen[bytes] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._stopping = False

    def owns(self, context: grpc.aio.ServicerContext) -> bool:
        """Whether a call to the sidecar is this child's (its feed or a snapshot): it
        came with the feeder's token. Such a stream takes a place kept for the fan-out
        (watch.FANOUT_PLACES), so watchers of the sidecar filling `watch.max_watchers`
        cannot cut off the fan-out's watchers."""
        return self._token.came_with(context.invocation_metadata() or ())

    def config(self) -> FanoutConfig:
        s = self._settings
        return FanoutConfig(
            upstream=f"unix:{self.upstream}", token=self._token.value, listen=s.watch.fanout_listen,
            uds=s.watch.fanout_uds, server=s.server.model_dump(), tls=self._tls,
            principals=self._principals, heartbeat_s=s.watch.heartbeat_interval_s,
            queue_size=s.watch.queue_size, max_watchers=s.watch.fanout_max_watchers,
            max_scopes=s.watch.max_scopes, log_format=s.telemetry.log_format,
            log_level=s.telemetry.log_level)

    async def start(self) -> None:
        """Once the sidecar serves on `upstream`."""
        self._watching = asyncio.create_task(self._keep_running())

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Started as the journal's syncer is (a vfork: gRPC's fork handlers, which log a
        line and may not be safe with its threads running, are not run), in this
        process group; its standard input is the pipe whose end tells it this process
        is gone."""
        process = subprocess.Popen(
            [sys.executable, "-I", "-c", CHILD, str(_PACKAGES)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=python_stderr())
        log.info("fan-out process %d started", process.pid)
        return process

    def _hand_over(self, process: subprocess.Popen[bytes]) -> None:
        """Its configuration, in a thread: with many tokens or a CA bundle it is more than
        a pipe holds, and the write waits until the child reads it (review 50d: 0.27 s of
        the loop, every check waiting). A child gone first: BrokenPipeError."""
        assert process.stdin is not None
        process.stdin.write(json.dumps(asdict(self.config())).encode() + b"\n")
        process.stdin.flush()

    async def _keep_running(self) -> None:
        pause = self.RESTART_S[0]
        while not self._stopping:
            started = time.monotonic()
            try:
                self._process = self._spawn()
                with contextlib.suppress(BrokenPipeError):  # it ended: its status says why
                    await asyncio.to_thread(self._hand_over, self._process)
                code = await _exit_of(self._process)
            except OSError as error:
                code = None
                log.error("fan-out process could not be started: %s", error)
            if self._stopping:
                return
            if self._process is not None and self._process.stdin is not None:
                self._process.stdin.close()
            # One that ran a while is started again at once; one that keeps failing (its
            # address taken, say: it logs why) less and less often
            pause = self.RESTART_S[0] if time.monotonic() - started > self.RESTART_S[1] \
                else min(pause * 2, self.RESTART_S[1])
            log.warning("fan-out process ended (exit %s); starting it again in %.0f s",
                        code, pause)
            await asyncio.sleep(pause)

    def terminate(self) -> None:
        """Ask it to stop (its watchers are told the sidecar is stopping), without
        waiting: as the sidecar's own server stops, both within server.grace_s."""
        self._stopping = True
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()

    async def stop(self, timeout_s: float) -> None:
        """Wait `timeout_s` at most for it to end after `terminate`, then kill it (review
        50c: its own grace after the sidecar's overran shutdown.timeout_s)."""
        self.terminate()
        process = self._process
        try:
            if process is not None and process.returncode is None:
                try:
                    await asyncio.wait_for(_exit_of(process), timeout_s)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await _exit_of(process)
            if process is not None and process.stdin is not None:
                process.stdin.close()
            if self._watching is not None:
                self._watching.cancel()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


def _remove_left_behind() -> None:
    """The private directories of sidecars that were killed (SIGKILL leaves them)."""
    for path in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*-*"):
        pid = path.name[len(DIR_PREFIX):].split("-", 1)[0]
        try:
            found = path.lstat()  # a link planted there is not followed
        except OSError:
            continue
        if not pid.isdigit() or int(pid) == os.getpid() or found.st_uid != os.getuid() \
                or not stat.S_ISDIR(found.st_mode):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


async def _exit_of(process: subprocess.Popen[bytes]) -> int:
    """Its exit status, once it has exited: waited for on the loop (a pidfd), not in a
    thread a failed start could leave waiting for ever."""
    loop = asyncio.get_running_loop()
    exited = os.pidfd_open(process.pid)
    try:
        done: asyncio.Future[None] = loop.create_future()
        loop.add_reader(exited, lambda: done.done() or done.set_result(None))
        try:
            await done
        finally:
            loop.remove_reader(exited)
    finally:
        os.close(exited)
    return process.wait()
