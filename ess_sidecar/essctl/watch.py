"""`essctl watch`: follow WatchState live; reconnect and resume without losing an event."""

from __future__ import annotations

import argparse
import errno
import shlex
import time

import grpc
from rich.text import Text

from ess.v1 import guard_pb2 as pb

from .connection import Exit, Sidecar, describe
from .render import Output, cause_text, local_time, names, scope_name, scope_to_pb, \
    state_text, to_json, transition_text

BACKOFF_INITIAL_S, BACKOFF_MAX_S = 0.2, 5.0
# The server says our history is gone (OUT_OF_RANGE) or we fell behind (RESOURCE_EXHAUSTED).
RESYNC = (grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED)
# Retrying cannot fix these.
FATAL = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
         grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED)


def add_parser(add, scope_arg, count) -> None:  # noqa: ANN001
    watch = add("watch", "follow state changes live (snapshot, then every transition);"
                " reconnects and resumes without losing an event; Ctrl-C to stop")
    watch.add_argument("--scope", type=scope_arg, action="append", default=[],
                       help="only this scope (repeatable; GLOBAL is not implied)")
    watch.add_argument("--max-events", type=count, metavar="N",
                       help="exit after N transitions")
    watch.set_defaults(run=run, watch_channel=True)


class Follower:
    """One watcher across connections: what it has seen decides where it resumes."""

    def __init__(self, sidecar: Sidecar, scopes: list[pb.Scope], out: Output,
                 max_events: int | None) -> None:
        self.sidecar, self.scopes, self.out = sidecar, scopes, out
        self.max_events = max_events
        self.synced = False  # a snapshot was complete: transitions can be replayed from here
        self.last_version = 0
        self.heartbeat_version = 0
        self.epoch = ""
        self.transitions = 0
        self.connected = False
        # Scope -> state, of those not ARMED as last seen; and those a snapshot now in
        # progress lists (a fresh one leaves out what is ARMED).
        self.restricted: dict[str, int] = {}
        self.listed: dict[str, int] = {}

    def request(self) -> pb.WatchStateRequest:
        start = self.last_version if self.synced else 0
        return pb.WatchStateRequest(scopes=self.scopes, from_version=start,
                                    epoch=self.epoch if start else "")

    def follow(self) -> bool:
        """One subscription; True once --max-events transitions were seen. Raises
        grpc.RpcError when the stream breaks."""
        self.connected = False
        self.listed = {}
        request = self.request()
        for message in self.sidecar.watch(request):
            if message.kind != pb.WATCH_EVENT_KIND_HEARTBEAT:  # the epoch of a resume point
                self.epoch = message.epoch  # (review 37h: a heartbeat's is not one)
            if self.handle(message, request.from_version):
                return True
            if self.out.gone:  # its reader went away (`essctl watch | head`): no one to
                raise BrokenPipeError(errno.EPIPE, "the pipe essctl writes to is closed")
        return False

    def handle(self, message: pb.WatchStateResponse, from_version: int) -> bool:
        if message.kind == pb.WATCH_EVENT_KIND_HEARTBEAT:
            # Not a resume point: a heartbeat's version may already count a transition
            # that is still queued behind it.
            self.heartbeat_version = message.version
        elif message.kind == pb.WATCH_EVENT_KIND_SNAPSHOT:
            self.listed[scope_name(message.scope)] = message.state
            self.show(message)
        elif message.kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END:
            self.synced = self.connected = True
            self.last_version = max(self.last_version, message.version)
            if not from_version:  # a fresh snapshot, not a resume: what it leaves out
                self.show_gone(self.listed)  # is ARMED now
                self.restricted = self.listed
            self.show_end(message.version, from_version)
        elif message.kind == pb.WATCH_EVENT_KIND_TRANSITION:
            self.last_version = max(self.last_version, message.version)
            self.transitions += 1
            if message.state == pb.STATE_ARMED:
                self.restricted.pop(scope_name(message.scope), None)
            else:
                self.restricted[scope_name(message.scope)] = message.state
            self.show(message)
            return self.max_events is not None and self.transitions >= self.max_events
        return False

    def resync(self, message: str) -> None:
        """History is gone or we were too slow: start again from a fresh snapshot."""
        self.synced, self.last_version, self.epoch = False, 0, ""
        self.out.note(f"RESYNC: {message}; starting from a fresh snapshot")
        if self.out.json:
            self.out.emit({"kind": "resync", "message": message})

    def show(self, m: pb.WatchStateResponse) -> None:
        if self.out.json:
            self.out.emit({**to_json(m), "kind": _kind(m.kind)})
            return
        label = "SNAPSHOT  " if m.kind == pb.WATCH_EVENT_KIND_SNAPSHOT else ""
        change = state_text(m.state) if m.kind == pb.WATCH_EVENT_KIND_SNAPSHOT \
            else transition_text(m.previous_state, m.state)
        self.out.line(label, local_time(m, "time"), f"  v{m.version}  ",
                      Text(scope_name(m.scope), style="bold"), "  ", change,
                      f"  {cause_text(m.cause)}  {m.reason!r}  by {m.actor}",
                      Text(f"  {names(pb.Directive.DESCRIPTOR, m.directives)}",
                           style="bold red") if m.directives else "",  # review 36f
                      Text("  DRILL", style="bold cyan") if m.drill else "")

    def show_gone(self, listed: dict[str, int]) -> None:
        """Each scope shown restricted before a fresh snapshot that leaves it out: it is
        ARMED now, by a reset or a re-arm essctl could not follow, or a trip lost with a
        restart (review 55f: a RESYNC printed the new snapshot, and a scope that had
        gone from it was not called out)."""
        for name in sorted(self.restricted.keys() - listed.keys()):
            was = pb.State.Name(self.restricted[name]).removeprefix("STATE_")
            if self.out.json:
                self.out.emit({"kind": "gone", "scope": name, "was": was})
            else:
                self.out.line(Text(f"GONE  {name}", style="bold yellow"),
                              f"  was {was}, ARMED in the new snapshot: reset, re-armed or"
                              " lost while essctl could not follow it; essctl history"
                              f" --scope {shlex.quote(name)} shows which")

    def show_end(self, version: int, from_version: int) -> None:
        if self.out.json:
            self.out.emit({"kind": "resumed", "version": version, "from_version": from_version}
                          if from_version else {"kind": "snapshot_end", "version": version})
        elif from_version:
            self.out.line(f"resumed at version {version} (replayed from version"
                          f" {from_version})")
        else:
            self.out.line(f"snapshot complete at version {version}")
        if from_version and self.out.json:
            self.out.note(f"resumed at version {version}")


def _kind(kind: int) -> str:
    return pb.WatchEventKind.Name(kind).removeprefix("WATCH_EVENT_KIND_").lower()


def run(args: argparse.Namespace, sidecar: Sidecar, out: Output) -> int:
    follower = Follower(sidecar, [scope_to_pb(s) for s in args.scope], out, args.max_events)
    try:
        return follow_forever(follower, out)
    except KeyboardInterrupt:
        return Exit.DONE


def follow_forever(follower: Follower, out: Output) -> int:
    delay, ever_connected = BACKOFF_INITIAL_S, False
    while True:
        try:
            if follower.follow():
                return Exit.DONE
            problem = "the sidecar ended the stream"
        except grpc.RpcError as error:
            if error.code() in RESYNC:
                follower.resync(error.details() or error.code().name)
                continue
            # A wrong --target or token fails at once; a sidecar that goes away later
            # (a restart) is waited for.
            if error.code() in FATAL or not (ever_connected or follower.connected):
                raise
            problem = describe(error, follower.sidecar.options, hints=False)
        ever_connected = ever_connected or follower.connected
        delay = BACKOFF_INITIAL_S if follower.connected else min(delay * 2, BACKOFF_MAX_S)
        reconnecting(follower, problem, delay, out)
        time.sleep(delay)


def reconnecting(follower: Follower, problem: str, delay: float, out: Output) -> None:
    out.note(f"connection lost ({problem}); reconnecting in {delay:g} s from version"
             f" {follower.request().from_version}")
    if out.json:
        out.emit({"kind": "reconnect", "error": problem, "retry_in_s": delay,
                  "from_version": follower.request().from_version})
