"""`essctl heartbeats [deregister]`: the executors' dead-man's switches, and retiring one.

An executor registers with a heartbeat for a scope; when its beats stop for longer than
its TTL, the scope trips (`heartbeat_lost`). An executor that is gone for good keeps its
registration, so a forced reset of that trip trips again a TTL later: an operator
deregisters it (Heartbeat with `deregister`, logged with who did it; review 55f: only
grpcurl could)."""

from __future__ import annotations

import argparse

import grpc
from rich.table import Table
from rich.text import Text

from ess.v1 import guard_pb2 as pb

from .connection import NO_ANSWER, Exit, Sidecar
from .render import Output, confirm, scope_name, scope_to_pb, to_json, when

LISTED_AT_MOST = 1_000  # GetState lists at most this many registrations


def add_parser(add, common, id_arg, scope_arg) -> None:  # noqa: ANN001
    heartbeats = add("heartbeats", "the executors' heartbeat registrations (dead-man's"
                     " switches), the longest silent first; `heartbeats deregister` retires"
                     " one whose executor is gone")
    heartbeats.add_argument("--scope", type=scope_arg, help="only this scope")
    heartbeats.set_defaults(run=run_list)
    sub = heartbeats.add_subparsers(dest="heartbeats_command", metavar="COMMAND")
    retire = sub.add_parser(
        "deregister", parents=[common], help="retire an executor's registration",
        description="Deregister an executor's heartbeat for a scope (operator role, or the"
        " principal it is bound to): its silence trips nothing from then on, and a"
        " heartbeat_lost latch it left is lifted by a plain reset. Do it only when the"
        " executor is gone. Shows the registration and asks for confirmation unless --yes;"
        " exit 0 done, 1 not confirmed or not allowed, 2 no such registration.")
    retire.add_argument("--executor", required=True, type=id_arg("executor_id"),
                        help="the executor_id it registered with")
    retire.add_argument("--scope", required=True, type=scope_arg)
    retire.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    retire.set_defaults(run=run_deregister)


def registrations(sidecar: Sidecar) -> tuple[list[pb.HeartbeatRegistration], int]:
    """The registrations listed (the longest silent first, at most LISTED_AT_MOST) and
    how many there are in all."""
    state = sidecar.call("GetState", pb.GetStateRequest(include_heartbeats=True))
    return list(state.heartbeats), max(state.heartbeats_registered, len(state.heartbeats))


def run_list(args: argparse.Namespace, sidecar: Sidecar, out: Output) -> int:
    listed, total = registrations(sidecar)
    cut = total > len(listed)
    if args.scope is not None:
        listed = [r for r in listed if scope_name(r.scope) == str(args.scope)]
    if out.json:
        out.emit({"heartbeats": [to_json(r) for r in listed], "registered": total,
                  "lapsed_listed": sum(r.lapsed for r in listed)})
        return Exit.DONE
    where = f" of {args.scope}" if args.scope is not None else ""
    among = f" among the {LISTED_AT_MOST} longest silent of {total}" if cut else ""
    if not listed:
        out.line(f"no heartbeat registrations{where}{among}")
        return Exit.DONE
    out.console.print(registrations_table(listed, f"Heartbeat registrations{where},"
                                                  " the longest silent first"))
    lapsed = sum(r.lapsed for r in listed)
    out.line(f"{len(listed)} registered{where}{among}, {lapsed} of them lapsed" if cut
             else f"{len(listed)} registered{where}, {lapsed} lapsed")
    return Exit.DONE


def registrations_table(listed: list[pb.HeartbeatRegistration], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("executor", "scope", "ttl", "last beat", "state", "bound to"):
        table.add_column(column, overflow="fold", justify="right" if column == "ttl"
                         else "left")
    for r in listed:
        last = Text(when(r, "last_beat")) if r.HasField("last_beat") else Text("none known")
        table.add_row(Text(r.executor_id), Text(scope_name(r.scope)),
                      Text(f"{r.ttl_ms / 1000:g}s"), last,
                      Text("LAPSED", style="bold red") if r.lapsed else Text("beating"),
                      Text(r.owner or "(anyone: registered without a token)"))
    return table


def run_deregister(args: argparse.Namespace, sidecar: Sidecar, out: Output) -> int:
    scope = str(args.scope)
    listed, total = registrations(sidecar)
    found = [r for r in listed
             if r.executor_id == args.executor and scope_name(r.scope) == scope]
    unlisted = not found and total > len(listed)  # it may be among those not listed
    if not found and not unlisted:
        return _none(args.executor, scope, out, "has", " (essctl heartbeats lists them)")
    if not args.yes:
        if not out.json and found:
            out.console.print(registrations_table(found, "The registration to retire"))
        confirm(f"Deregister {args.executor} for {scope}: its silence will trip nothing."
                " The executor is gone? Go ahead?", out, "not confirmed: pass --yes")
    request = pb.HeartbeatRequest(executor_id=args.executor, scope=scope_to_pb(args.scope),
                                  deregister=True)
    retried = False
    try:
        reply = sidecar.call("Heartbeat", request)
    except grpc.RpcError as error:
        if error.code() not in NO_ANSWER:
            raise
        reply, retried = sidecar.call("Heartbeat", request), True  # it may be repeated
    if reply.HasField("deregistered") and not reply.deregistered:
        if not retried:
            return _none(args.executor, scope, out, "had", "")  # past those listed
        # Review 57b: the first try's answer was lost, so it may have removed one, or
        # there was none; said "deregistered", that passed a typo for a retirement.
        if out.json:
            out.emit({"result": "none_left", "executor_id": args.executor, "scope": scope,
                      **to_json(reply)})
        else:
            out.line(f"no heartbeat registration is left for {args.executor} on {scope}:"
                     " the first try, whose answer was lost, removed it, or there was none")
        return Exit.DONE
    if out.json:
        out.emit({"result": "deregistered", "executor_id": args.executor, "scope": scope,
                  **to_json(reply)})
    else:
        out.line(Text(f"deregistered {args.executor} for {scope}", style="bold"),
                 f" ({scope} is {pb.State.Name(reply.state).removeprefix('STATE_')})"
                 + (f"; it was not among the {len(listed)} of {total} listed, and this"
                    " sidecar does not say whether it was registered"
                    if unlisted and not reply.HasField("deregistered") else ""))
    return Exit.DONE


def _none(executor: str, scope: str, out: Output, has: str, hint: str) -> int:
    if out.json:
        out.emit({"result": "not_registered", "executor_id": executor, "scope": scope})
    else:
        out.line(f"nothing to deregister: {executor} {has} no heartbeat registration for"
                 f" {scope}{hint}")
    return Exit.NO

