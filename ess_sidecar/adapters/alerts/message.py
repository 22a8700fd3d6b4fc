"""The alert for one transition: a title, a plain-text body and a severity."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from ...domain.scopes import Scope
from ...domain.states import Cause, State, Transition

# Severities are apprise's notify types by value, so this module needs no apprise.
FAILURE, WARNING, SUCCESS = "failure", "warning", "success"

SEVERITY_OF = {State.TRIPPED: FAILURE, State.REDUCE_ONLY: FAILURE,
               State.COOLING_DOWN: WARNING, State.ARMED: SUCCESS}

WHY = {Cause.BREAKER: "breaker", Cause.HEARTBEAT_LOST: "heartbeat lost",
       Cause.RESET: "reset", Cause.REARM: "re-armed", Cause.SYSTEM: "system"}


@dataclass(frozen=True)
class Alert:
    title: str
    body: str
    severity: str  # "failure", "warning" or "success"
    version: int
    # A trip of a scope already in that state (renewed: a repeated Trigger, a further
    # unchecked fill) says nothing new while an earlier one like it still waits to be
    # sent: the sink keeps one (review 31: a stream of unchecked fills filled the queue,
    # and the operator's GLOBAL alert was dropped). Empty for any change of state. One
    # with other directives is news (review 36f: a panic's cancel and flatten on a halted
    # GLOBAL were merged into the halt's alert, and never sent).
    repeats: str = ""
    # The scope it is about ("": none): a repeat merges only into one queued after the
    # scope's last alert that was news (review 49g: an operator's stop, repeating a trip
    # queued before a reset, was merged into that trip's alert, and the last alert said
    # the scope was reset).
    scope: str = ""


def alert_of(transition: Transition) -> Alert:
    directives = ",".join(sorted(d.name for d in transition.directives))
    repeats = f"{transition.scope}|{transition.state.name}|{transition.cause.name}|" \
        f"{transition.breaker}|{transition.drill}|{directives}" \
        if transition.previous is transition.state and transition.cause is not Cause.RESET \
        else ""
    return Alert(title_of(transition), body_of(transition),
                 SEVERITY_OF.get(transition.state, WARNING), transition.version, repeats,
                 str(transition.scope))


LATCHED_LISTED = 50  # a start's alert lists at most this many scopes


def still_latched_alert(current: Sequence[Transition]) -> Alert:
    """What a start says of the scopes it found not ARMED: each one's line, the stops first
    and the widest (GLOBAL, then accounts) first among them, at most LATCHED_LISTED
    (review 49g: 301 scopes made a 47,000-character message, past what Slack, Telegram or
    PagerDuty take, with GLOBAL's line last)."""
    severe = any(SEVERITY_OF.get(t.state) == FAILURE for t in current)
    shown = sorted(current, key=lambda t: (SEVERITY_OF.get(t.state) != FAILURE,
                                           t.scope.kind, t.version))[:LATCHED_LISTED]
    lines = [f"{t.scope} {t.state.name} since {iso_utc(t.time)}: {t.cause.name}"
             + (f" ({t.breaker})" if t.breaker else "") + f", {t.reason[:200]!r} by {t.actor}"
             + (", directives: " + ", ".join(d.name for d in t.directives)
                if t.directives else "") + f" (v{t.version})" + (" DRILL" if t.drill else "")
             for t in shown]
    if len(current) > len(shown):
        lines.append(f"... and {len(current) - len(shown)} more: essctl status lists them")
    return Alert(f"ESS started with {len(current)} scope(s) not ARMED",
                 "\n".join(["The sidecar started (or restarted) with these scopes latched;"
                            " an alert sent before it may have been lost:", *lines]),
                 FAILURE if severe else WARNING, max(t.version for t in current))


def title_of(t: Transition) -> str:
    """e.g. "ESS STRATEGY:momo TRIPPED (heartbeat lost)"; a drill says so first, so
    nobody pages the desk for one."""
    why = WHY.get(t.cause, "")
    if t.cause is Cause.RESET and t.forced:
        why = "forced reset"
    title = f"ESS {named(t.scope)} {t.state.name}" + (f" ({why})" if why else "")
    return f"[DRILL] {title}" if t.drill else title


def named(scope: Scope) -> str:
    """A scope as a title shows it: quoted when its id holds a space (review 42j: an id
    such as "x ARMED (reset)" read as a state in the title)."""
    return json.dumps(str(scope), ensure_ascii=False) if " " in scope.id else str(scope)


def indented(text: str) -> str:
    """A caller's text in a body: its own lines ("line1\nstate: ARMED") stand indented
    under its first, never as the alert's (review 42j)."""
    return text.replace("\n", "\n    ")


def body_of(t: Transition) -> str:
    lines = [f"scope: {t.scope}",
             f"state: {t.state.name} (was {t.previous.name})",
             f"cause: {t.cause.name}",
             "reason: " + indented(t.reason)]
    if t.reason_code is not None:
        lines.append(f"reason code: {t.reason_code.name}")
    if t.breaker:
        lines.append(f"breaker: {t.breaker}")
    lines.append(f"actor: {t.actor}")
    if t.approved_by:
        lines.append(f"approved by: {t.approved_by}")
    if t.forced:
        lines.append("forced: yes")
    if t.directives:
        lines.append("directives: " + ", ".join(d.name for d in t.directives))
    if t.rearm_at is not None:
        lines.append(f"re-arms at: {iso_utc(t.rearm_at)}")
    lines += [f"version: {t.version}", f"time: {iso_utc(t.time)}"]
    if t.drill:
        lines.append("DRILL: this is a drill, not a real trip")
    return "\n".join(lines)


def iso_utc(seconds: float) -> str:
    """ISO 8601 in UTC with a Z, to the millisecond."""
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
