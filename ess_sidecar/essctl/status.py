"""`essctl status`: every scope that is not ARMED, the thresholds in force, the version."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from rich.table import Table
from rich.text import Text

from ess.v1 import guard_pb2 as pb

from .connection import Exit, Sidecar
from .render import Output, cause_text, enum_name, names, non_ascii_notes, scope_cell, \
    scope_name, state_name, state_text, to_json, when
from .times import duration, from_timestamp


def add_parser(add) -> None:  # noqa: ANN001
    parser = add("status", "every scope that is not ARMED (state, since, why, who), the"
                 " thresholds in force, working orders per account and the state version;"
                 " exit 0 when all is ARMED, 2 when any scope is not")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, sidecar: Sidecar, out: Output) -> int:
    state = sidecar.call("GetState", pb.GetStateRequest())
    restricted = sorted(state.scopes, key=lambda s: (s.scope.kind, s.scope.id))
    if out.json:
        out.emit({"all_armed": not restricted, **to_json(state)})
    else:
        show_status(restricted, state, out)
    return Exit.NO if restricted else Exit.DONE


def show_status(restricted: list[pb.ScopeState], state: pb.GetStateResponse,
                out: Output) -> None:
    if restricted and restricted[0].scope.kind == pb.SCOPE_KIND_GLOBAL:
        out.line(Text("GLOBAL is ", style="bold"), state_text(restricted[0].state),
                 Text(": every order is restricted", style="bold"))
    if restricted:
        out.console.print(scopes_table(restricted))
        for note in non_ascii_notes(s.scope for s in restricted):
            out.note(note)
    else:
        out.line(Text("GLOBAL ARMED, all scopes ARMED", style="bold green"))
    if state.thresholds:
        out.console.print(thresholds_table(state.thresholds))
    if state.working_order_counts:
        out.console.print(working_counts_table(state.working_order_counts))
    out.line(f"state version {state.state_version}")


def scope_cause(s: pb.ScopeState) -> str:
    return cause_text(s.cause, s.breaker, s.reason_code, s.drill)


def resume_text(s: pb.ScopeState) -> str:
    if s.HasField("rearm_at"):
        return f"re-arms at {when(s, 'rearm_at')}"
    if not s.HasField("reset_allowed_at"):  # a trip not stored, GLOBAL failed closed at
        return "no reset lifts it in this process (a trip not recorded, a failed journal" \
            " or a store it cannot trust: the sidecar's log says which)" \
            if s.state in (pb.STATE_TRIPPED, pb.STATE_REDUCE_ONLY) else ""  # start (42j)
    # The cooldown only: a breaker whose condition still holds refuses the reset too, and
    # GetState does not say whether one does (Reset's refusal names it).
    if from_timestamp(s.reset_allowed_at) <= datetime.now(UTC):
        return "cooldown over (a breaker still holding refuses the reset)"
    return f"cooldown ends at {when(s, 'reset_allowed_at')}"


def latches_text(s: pb.ScopeState | pb.Event) -> str:
    """Each restriction on the scope (after the event): `essctl reset --latch NAME` lifts
    one; one a scope's state says time lifts is said to (review 55b: an operator could
    not tell which would lift by themselves)."""
    rearming = set(s.auto_rearming_latches) if isinstance(s, pb.ScopeState) else set()
    return ", ".join(f"{latch.name} ({state_name(latch.state)}"
                     f"{', re-arms by itself' if latch.name in rearming else ''})"
                     for latch in s.latches)


def pending_text(s: pb.ScopeState) -> str:
    """A four-eyes reset waiting for its second operator, if any."""
    if not s.reset_requested_by:
        return ""
    return (f"{request_text(s)} requested by {s.reset_requested_by}, waiting for a second"
            f" operator until {when(s, 'reset_approval_expires_at')}: {s.reset_request_reason!r}")


def request_text(s: pb.ScopeState) -> str:
    """What a pending reset asks (review 49f: the second operator approved it blind)."""
    lifted = f" of latches {', '.join(s.reset_request_latches)}" \
        if s.reset_request_latches else " of every latch"  # (named, or all held then)
    return f"{'a FORCED reset' if s.reset_request_force else 'a reset'}{lifted}"


def scopes_table(restricted: list[pb.ScopeState]) -> Table:
    table = Table(title="Scopes not ARMED", title_justify="left")
    for column in ("scope", "state", "since", "cause", "reason", "actor", "directives",
                   "latches", "resume"):
        table.add_column(column, overflow="fold")
    for s in restricted:
        resume = "\n".join(filter(None, (resume_text(s), pending_text(s))))
        table.add_row(scope_cell(s.scope, "bold"), state_text(s.state),
                      Text(when(s, "since")), Text(scope_cause(s)), Text(s.reason),
                      Text(s.actor), Text(names(pb.Directive.DESCRIPTOR, s.directives)),
                      Text(latches_text(s)), Text(resume))
    return table


def thresholds_table(thresholds: list[pb.BreakerThreshold]) -> Table:
    table = Table(title="Breaker thresholds in force", title_justify="left")
    for column in ("scope", "breaker", "threshold", "window", "consecutive", "mode",
                   "auto re-arm"):
        table.add_column(column, overflow="fold")
    for t in thresholds:
        table.add_row(Text(t.scope or "default"), Text(t.breaker),
                      Text("disabled" if t.disabled else f"{t.threshold:g}"),
                      Text(duration(t.window_ms / 1000) if t.window_ms else ""),
                      Text(str(t.consecutive)), Text(enum_name(pb.TriggerMode.DESCRIPTOR,
                                                               t.mode)),
                      Text("yes" if t.auto_rearm else "no"))
    return table


def working_counts_table(counts: list[pb.WorkingOrderCount]) -> Table:
    table = Table(title="Working orders", title_justify="left")
    table.add_column("account", overflow="fold")
    table.add_column("working orders", justify="right")
    for count in counts:
        table.add_row(Text(count.account), Text(str(count.working_orders)))
    return table
