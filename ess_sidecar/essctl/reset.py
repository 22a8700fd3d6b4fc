"""`essctl reset`: show what a reset clears, confirm, resume; refusals, cooldowns, four-eyes."""

from __future__ import annotations

import argparse
import contextlib
import shlex
from datetime import UTC, datetime

import grpc
from rich.table import Table
from rich.text import Text

from ess.v1 import guard_pb2 as pb

from ..domain.ids import blank, likeness, looks
from .connection import NO_ANSWER, Exit, Sidecar, UsageError, describe
from .render import Output, confirm, names, non_ascii_note, say_no_answer, scope_name, \
    scope_to_pb, state_text, to_json, when
from .status import latches_text, pending_text, request_text, resume_text, scope_cause
from .times import duration, from_timestamp, local, utc_iso


def add_parser(add, scope_arg) -> None:  # noqa: ANN001
    reset = add("reset", "resume trading on a scope: shows what will be cleared and asks for"
                " confirmation unless --yes; exit 0 done, 2 refused (cooldown, breaker"
                " condition), 3 waiting for a second operator (four-eyes)")
    reset.add_argument("--scope", type=scope_arg, required=True,
                       help="global, account:ID, strategy:ID or symbol:ID")
    reset.add_argument("--reason", required=True, help="why trading may resume (audited)")
    reset.add_argument("--force", action="store_true", help="override the cooldown and a"
                       " breaker condition that still holds (recorded as forced)")
    reset.add_argument("--latch", action="append", default=[], metavar="NAME",
                       help="lift only this latch (repeatable; `essctl status` lists each"
                       " scope's latches: a breaker's name, trigger, drill or system);"
                       " default: every latch of the scope")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(run=run)


def run(args: argparse.Namespace, sidecar: Sidecar, out: Output) -> int:
    if blank(args.reason):  # review 41c: U+2800 alone passed
        raise UsageError("--reason must say why trading may resume")
    scope = scope_to_pb(args.scope)
    scopes = sidecar.call("GetState", pb.GetStateRequest()).scopes
    current = next((s for s in scopes if s.scope == scope), None)
    if current is None:  # GetState lists every scope that is not ARMED
        return nothing_to_reset(scope, out, [s for s in scopes if _alike(s.scope, scope)],
                                again(sidecar, args))
    if not out.json:
        out.console.print(preview_table(current))
    confirm_reset(current, args, out)
    # What was shown is what is reset: another trip while the person decided (a second
    # operator's halt, a panic) was never shown, so nothing is reset and they look again.
    # Compared whole, not by version alone: a sidecar that failed closed and restarted
    # meanwhile may number another trip as the one shown (review 54c). The sidecar checks
    # the version and its epoch too: a trip landing after this read is refused there.
    if (now := scope_state(sidecar, scope)) is None or not same_trip(now, current):
        told = "" if now is None or now.version != current.version else \
            ": a four-eyes request of it changed, which this reset would approve" if all(
                getattr(now, name) == getattr(current, name) for name in SHOWN) else \
            ": its version is the same, its trip is not (the sidecar restarted?)"
        return refused("the scope changed while the reset waited for an answer (now"
                       f" {state_text(now.state) if now else 'ARMED'}, version"
                       f" {now.version if now else '-'}{told}); nothing was reset: run it"
                       " again to see what it would clear", current, out)
    try:
        reply = sidecar.call("Reset", pb.ResetRequest(
            scope=scope, reason=args.reason, force=args.force, latches=args.latch,
            expected_version=current.version, expected_epoch=current.epoch))
    except grpc.RpcError as error:
        if error.code() in NO_ANSWER:
            return unanswered(error, sidecar, current, args.latch, out)
        if error.code() is not grpc.StatusCode.FAILED_PRECONDITION:
            raise
        return refused(error.details() or "", current, out)
    if reply.pending_approval:
        return pending(reply, current, args, out)
    # Known gap 24: trading on the scope's id had resumed by this reset's account, but a
    # restricted scope whose id looks like it still denied the same orders, unsaid. Read
    # again: another operator may have reset or tripped one while this one was asked to
    # confirm (review 62: named as tripped once it was ARMED).
    with contextlib.suppress(grpc.RpcError):  # then as read before: the reset stands
        scopes = sidecar.call("GetState", pb.GetStateRequest()).scopes
    alike = [s for s in scopes
             if s.scope.kind == scope.kind and s.scope.id != scope.id
             and _looks_alike(s.scope, scope)]
    return done(reply, scope, out, alike, again(sidecar, args) if alike else [])


def again(sidecar: Sidecar, args: argparse.Namespace) -> list[str]:
    """essctl's arguments for the same reset of another scope (its --scope left out)."""
    return [*sidecar.options.same_sidecar(), "reset", "--reason", args.reason,
            *(["--force"] if args.force else [])]


# What an operator reads of a scope before resetting it (preview_table), and its epoch; and
# of the four-eyes request pending, which the reset approves (review 55f: one made while the
# second operator's question was open was approved unread).
SHOWN = ("version", "epoch", "state", "since", "actor", "cause", "reason", "breaker",
         "drill", "directives", "latches")
REQUEST_SHOWN = ("reset_requested_by", "reset_approval_expires_at", "reset_request_reason",
                 "reset_request_force", "reset_request_latches")


def same_trip(now: pb.ScopeState, shown: pb.ScopeState) -> bool:
    """Whether `now` is the transition that was `shown`: its version in its epoch, and what
    the operator read of it; and the request it would approve, if any, the one shown (one
    that ended meanwhile, expired or void, is approved by no reset: the reset is a new
    request, as it was before review 55g)."""
    return all(getattr(now, name) == getattr(shown, name) for name in SHOWN) and (
        not now.reset_requested_by
        or all(getattr(now, name) == getattr(shown, name) for name in REQUEST_SHOWN))


def unanswered(error: grpc.RpcError, sidecar: Sidecar, current: pb.ScopeState,
               latches: list[str], out: Output) -> int:
    """Where the scope stands after a reset with no answer, from a fresh GetState: exit 0
    if it is ARMED, or changed with none of the `latches` named (if any) still held, or
    cooling down; 3 if a reset request of it is now pending (or renewed); else 1 (review
    36e: exit 1 and "could not" while trading had resumed)."""
    try:
        now = scope_state(sidecar, current.scope)
    except grpc.RpcError as again:
        message, code = (f"the sidecar cannot say where {scope_name(current.scope)} stands"
                         f" now ({again.code().name}): the reset may have landed, or may"
                         " yet; look with essctl status"), Exit.FAILED
    else:
        message, code = _where_the_reset_left(current, now, latches)
    say_no_answer(out, "reset", describe(error, sidecar.options), message,
                  scope=scope_name(current.scope), exit=int(code))
    return code


def _where_the_reset_left(current: pb.ScopeState, now: pb.ScopeState | None,
                          latches: list[str]) -> tuple[str, Exit]:
    name, was = scope_name(current.scope), current.version
    if now is None:
        return f"{name} is now ARMED", Exit.DONE
    state, held = state_text(now.state).plain, {latch.name for latch in now.latches}
    if now.version != was:
        shown = f"it is now {state} (version {now.version}, was {was}, latches" \
            f" {latches_text(now) or 'none'})"
        if now.state == pb.STATE_COOLING_DOWN or latches and not held & set(latches):
            return f"{name} has changed as the reset asks: {shown}", Exit.DONE
        return f"{name} has changed since: {shown}", Exit.FAILED
    if now.reset_requested_by and (
            now.reset_requested_by != current.reset_requested_by
            or now.reset_approval_expires_at != current.reset_approval_expires_at):
        return (f"{name} is {state} with a reset request by {now.reset_requested_by}"
                " pending", Exit.PENDING)
    return (f"{name} is still {state} (version {was}): the reset may yet land; look again"
            " with essctl status"), Exit.FAILED


def scope_state(sidecar: Sidecar, scope: pb.Scope) -> pb.ScopeState | None:
    """The scope as GetState shows it; None when it is ARMED."""
    return next((s for s in sidecar.call("GetState", pb.GetStateRequest()).scopes
                 if s.scope == scope), None)


def _alike(one: pb.Scope, other: pb.Scope) -> bool:
    """Two scopes of a kind whose ids differ only in letter case or runs of spaces, or
    look alike (the same skeleton: a stop of the one stops the other's orders too)."""
    return one.kind == other.kind and one.id != other.id \
        and (likeness(one.id) == likeness(other.id) or _looks_alike(one, other))


def _looks_alike(one: pb.Scope, other: pb.Scope) -> bool:
    """Whether a stop of either covers the other (ids.looks)."""
    symbol = one.kind == pb.SCOPE_KIND_SYMBOL
    return bool(set(looks(one.id, symbol)) & set(looks(other.id, symbol)))


def nothing_to_reset(scope: pb.Scope, out: Output, alike: list[pb.ScopeState],
                     again: list[str]) -> int:
    """The scope is ARMED: nothing is sent. Scopes not ARMED whose ids differ from its
    only in case or spaces, or look like it (stop 61: their stop covers it), are named:
    accounts and strategies are case-sensitive, and
    `reset --scope account:ACC-2` said only that ACC-2 was ARMED while acc-2 stayed
    tripped (review 55f's stop of a mis-cased id, seen from the other side)."""
    if out.json:
        out.emit({"result": "nothing_to_reset", "scope": scope_name(scope), "state": "ARMED",
                  "alike": [scope_name(s.scope) for s in alike]})
    else:
        out.line(f"{scope_name(scope)} is ARMED; nothing to reset")
    if note := non_ascii_note(scope):  # review 41c: a look-alike of a tripped scope
        out.note(note)
    say_alike(scope, alike, again, out)
    return Exit.DONE


def say_alike(scope: pb.Scope, alike: list[pb.ScopeState], again: list[str],
              out: Output) -> None:
    """A note for each scope in `alike`: what it is, how its id is like `scope`'s, and the
    command that resets it."""
    for s in alike:
        how = (f"its id looks like {scope_name(scope)}'s, so it stops that one's orders too"
               if _looks_alike(s.scope, scope)
               else f"it differs from {scope_name(scope)} in letter case or spaces")
        out.note(f"essctl: {scope_name(s.scope)} is {state_text(s.state).plain}: {how}; to"
                 " reset it: " + shlex.join(["essctl", *again, "--scope",
                                             scope_name(s.scope)]))


def preview_table(s: pb.ScopeState) -> Table:
    table = Table(title=Text(f"The reset of {scope_name(s.scope)} will clear"),
                  title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows = [("state", state_text(s.state)), ("since", when(s, "since")),
            ("cause", scope_cause(s)), ("reason", s.reason), ("actor", s.actor),
            ("directives", names(pb.Directive.DESCRIPTOR, s.directives)),
            ("latches", latches_text(s)),
            ("resume", resume_text(s)), ("drill", "yes" if s.drill else "no"),
            ("pending", pending_text(s))]
    for label, value in rows:
        if value:
            table.add_row(label, value if isinstance(value, Text) else Text(value))
    return table


def confirm_reset(current: pb.ScopeState, args: argparse.Namespace, out: Output) -> None:
    """Resuming is deliberate: a person says yes, or the command line says --yes."""
    if args.yes:
        return
    what = "FORCED reset (overrides the cooldown and any breaker condition)" if args.force \
        else "Reset"
    approve = (f", approving {current.reset_requested_by}'s request ({request_text(current)}:"
               f" {current.reset_request_reason!r})") if current.reset_requested_by else ""
    lifted = f" (latches {', '.join(args.latch)} only)" if args.latch else ""
    question = (f"{what} of {scope_name(current.scope)}{lifted}{approve}: trading resumes"
                f"{' as far as the other latches allow' if args.latch else ''}. Go ahead?")
    confirm(question, out, "not confirmed: pass --yes")


def cooldown_end(current: pb.ScopeState) -> datetime | None:
    if not current.HasField("reset_allowed_at"):
        return None
    ends = from_timestamp(current.reset_allowed_at)
    return ends if ends > datetime.now(UTC) else None


# How the sidecar's refusal for a reset cooldown reads (GuardEngine._check_resumable).
COOLDOWN_REFUSAL = "is in its reset cooldown until"


def refused(message: str, current: pb.ScopeState, out: Output) -> int:
    ends = cooldown_end(current)
    if out.json:
        out.emit({"result": "refused", "scope": scope_name(current.scope), "message": message,
                  "cooldown_ends_at": utc_iso(ends) if ends else None})
        return Exit.NO
    out.line(Text("REFUSED", style="bold red"), f": {message}")
    if ends and COOLDOWN_REFUSAL in message:  # not four-eyes' or a breaker's (review 35)
        left = (ends - datetime.now(UTC)).total_seconds()
        out.line(f"cooldown ends at {local(ends)} ({utc_iso(ends)}), in {duration(left)}")
    return Exit.NO


def pending(reply: pb.ResetResponse, current: pb.ScopeState, args: argparse.Namespace,
            out: Output) -> int:
    scope = scope_name(current.scope)
    if out.json:
        out.emit({"result": "pending_approval", "scope": scope, **to_json(reply)})
        return Exit.PENDING
    command = ["essctl", "reset", "--scope", str(args.scope), "--reason", args.reason]
    command += ["--force"] if args.force else []
    command += [part for name in args.latch for part in ("--latch", name)]
    until = from_timestamp(reply.approval_expires_at)
    out.line(Text("PENDING APPROVAL", style="bold yellow"), f": {scope} is still ",
             state_text(current.state), "; nothing has changed yet.")
    out.line(f"requested by {reply.requested_by}; a second, different operator must approve"
             f" before {local(until)} ({utc_iso(until)}), in"
             f" {duration((until - datetime.now(UTC)).total_seconds())}, by running:")
    out.line(f"  {shlex.join(command)}")
    return Exit.PENDING


def done(reply: pb.ResetResponse, scope: pb.Scope, out: Output,
         alike: list[pb.ScopeState], again: list[str]) -> int:
    """The reset landed. `alike`: restricted scopes (as read after it) whose ids look
    like `scope`'s: they still deny its orders, and each is named with its reset."""
    if out.json:
        out.emit({"result": "reset", "scope": scope_name(scope), **to_json(reply),
                  "alike": [scope_name(s.scope) for s in alike]})
        return Exit.DONE
    out.line(Text(scope_name(scope), style="bold"), " is ", state_text(reply.state),
             f" (version {reply.state_version})")
    if reply.requested_by:  # four-eyes: this reset carried out another operator's request
        out.line(f"approved {reply.requested_by}'s request")
    if note := non_ascii_note(scope):
        out.note(note)
    if reply.state == pb.STATE_COOLING_DOWN:
        out.line("orders on it are still denied until it re-arms (see essctl status)")
    say_alike(scope, alike, again, out)
    return Exit.DONE
