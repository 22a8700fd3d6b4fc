"""`essctl trigger | check | history`: the panic button, one decision, the audit trail."""

from __future__ import annotations

import argparse
import secrets
import shlex

import grpc
from rich.table import Table
from rich.text import Text

from ess.v1 import guard_pb2 as pb

from ..domain.scopes import GLOBAL
from .connection import Exit, Failed, Sidecar, UsageError, describe
from .render import Output, cause_text, enum_name, names, non_ascii_note, non_ascii_notes, \
    scope_cell, scope_name, scope_to_pb, state_text, to_json, transition_text
from .status import latches_text
from .times import from_timestamp, local, parse_when, to_timestamp

CODES = {"user-initiated": pb.TRIGGER_REASON_USER_INITIATED,
         "risk-violation": pb.TRIGGER_REASON_RISK_VIOLATION,
         "system-error": pb.TRIGGER_REASON_SYSTEM_ERROR,
         "market-condition": pb.TRIGGER_REASON_MARKET_CONDITION,
         "connectivity-issue": pb.TRIGGER_REASON_CONNECTIVITY_ISSUE,
         "regulatory-halt": pb.TRIGGER_REASON_REGULATORY_HALT}
DIRECTIVES = {"cancel-open-orders": pb.DIRECTIVE_CANCEL_OPEN_ORDERS,
              "flatten-positions": pb.DIRECTIVE_FLATTEN_POSITIONS,
              "pause-strategies": pb.DIRECTIVE_PAUSE_STRATEGIES}
PANIC_DIRECTIVES = [pb.DIRECTIVE_CANCEL_OPEN_ORDERS, pb.DIRECTIVE_FLATTEN_POSITIONS]
MAX_PAGE_SIZE = 1000


class _KeepGiven(argparse.Action):
    """An option's value; given again with none, the value given before it stands (stop 39
    left it: a stray `--reason` after `--reason "desk halt"` dropped the reason)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        if values != "" or not getattr(namespace, self.dest, None):
            setattr(namespace, self.dest, values)


def add_trigger(add, scope_arg) -> None:  # noqa: ANN001
    trigger = add("trigger", "stop trading on a scope (the kill switch); --panic halts"
                  " everything and tells executors to cancel orders and flatten positions")
    # Read by trigger_request, not by argparse: with --panic, a scope that cannot be read
    # must not stop the stop (review 30).
    # Nothing that comes with the stop refuses it (review 30): a code or directive essctl
    # does not know is sent as the server would take it, and said; --panic wins. Nor an
    # option given no value ("": review 39f, `--panic --scope $UNSET` sent nothing). But
    # words it cannot place are a usage error (main() says no stop was sent): taken into
    # the reason, an option mistyped (`--targt`, `—target`) sent the stop to another
    # sidecar, and a token typed after it went into the reason (reviews 39k, 39n).
    trigger.add_argument("--scope", nargs="?", const="", action=_KeepGiven,
                         help="global, account:ID, strategy:ID or symbol:ID")
    trigger.add_argument("--reason", nargs="?", const="", action=_KeepGiven,
                         help="why (recorded; the stop never waits for one)")
    trigger.add_argument("--code", metavar="CODE", nargs="?", const="", action=_KeepGiven,
                         help=f"reason code: {', '.join(CODES)} (default user-initiated;"
                         " another is sent as user-initiated)")
    trigger.add_argument("--reduce-only", action="store_true",
                         help="allow only orders that shrink positions, instead of a halt")
    trigger.add_argument("--directive", action="append", metavar="DIRECTIVE", default=[],
                         nargs="?", const="", help="what executors must do (repeatable):"
                         f" {', '.join(DIRECTIVES)} (another is left out)")
    trigger.add_argument("--panic", action="store_true", help="GLOBAL halt with"
                         " cancel-open-orders and flatten-positions, whatever else is given")
    trigger.set_defaults(run=run_trigger, parse_scope=scope_arg, stops=True)


def add_check(add, positive, id_arg) -> None:  # noqa: ANN001
    check = add("check", "ask for one decision, as an executor would; exit 0 allowed,"
                " 2 denied. An allowed order is a working order: it counts toward the"
                " limits until its fills, a ReportOrderUpdate or `essctl orders clear` end it")
    check.add_argument("--account", required=True, type=id_arg("account"))
    check.add_argument("--strategy", required=True, type=id_arg("strategy"))
    check.add_argument("--symbol", required=True, type=id_arg("symbol", symbol=True),
                       help="case-insensitive: aapl is AAPL")
    check.add_argument("--side", required=True, choices=("buy", "sell"))
    check.add_argument("--qty", required=True, type=positive, help="quantity")
    check.add_argument("--price", required=True, type=positive,
                       help="limit price, or the expected price of a market order")
    check.add_argument("--reduce-only", action="store_true")
    check.add_argument("--coid", "--client-order-id", dest="coid",
                       type=id_arg("client_order_id"), metavar="ID",
                       help="the order's client_order_id, unique per account for a day"
                       " (default: a new one, printed)")
    check.set_defaults(run=run_check)


def new_client_order_id(prefix: str = "essctl") -> str:
    """A client_order_id nobody else has: the sidecar denies a reused one as a duplicate."""
    return f"{prefix}-{secrets.token_hex(8)}"


def add_history(add, scope_arg, count) -> None:  # noqa: ANN001
    history = add("history", "the audit trail, newest first")
    history.add_argument("--scope", type=scope_arg, help="only this scope")
    when = _when_arg()
    history.add_argument("--since", type=when, help="ISO 8601 (naive = UTC) or a duration"
                         " back from now: 90s, 15m, 2h, 7d")
    history.add_argument("--until", type=when, help="same forms as --since")
    history.add_argument("--limit", type=count, default=50, help="at most this many events"
                         " (default 50)")
    history.set_defaults(run=run_history)


def _when_arg():  # noqa: ANN202
    def when(text: str):  # noqa: ANN202
        try:
            return parse_when(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return when


def trigger_request(args: argparse.Namespace) -> tuple[pb.TriggerRequest, list[str]]:
    """The request the flags ask for, and what of them it could not carry (each also
    said in its reason). Only a scope missing or unreadable is a UsageError, and not
    with --panic: what comes with the stop never refuses it. A code or directive is
    matched loosely (RISK_VIOLATION is risk-violation); one that is not known is sent as
    user-initiated, or left out, as the server does with a number it does not know.
    --panic halts GLOBAL whatever --scope or --reduce-only say, the stronger stop."""
    notes = [f"--{name} given no value: left out" for name in ("scope", "reason", "code")
             if getattr(args, name) == ""]
    reason = _text(args.reason).strip()
    scope = None
    if args.scope:
        try:
            scope = args.parse_scope(args.scope)
        except argparse.ArgumentTypeError as error:
            if not args.panic:
                raise UsageError(f"argument --scope: {error}") from None
            notes.append(f"--scope {_text(args.scope)!r} cannot be read: --panic halts"
                         " GLOBAL")
    code = CODES.get(_loose(args.code or "user-initiated"))
    if code is None:
        code = CODES["user-initiated"]
        notes.append(f"unknown --code {_text(args.code)!r}: sent as user-initiated")
    directives = []
    for given in args.directive:
        if (directive := DIRECTIVES.get(_loose(given or ""))) is None:
            notes.append(f"unknown --directive {_text(given)!r}: left out")
        elif directive not in directives:
            directives.append(directive)
    if args.panic:
        if scope is not None and scope != GLOBAL:
            notes.append(f"--scope {scope}: --panic halts GLOBAL")
        if args.reduce_only:
            notes.append("--reduce-only: --panic halts")
        extra = [d for d in directives if d not in PANIC_DIRECTIVES]
        return pb.TriggerRequest(
            scope=scope_to_pb(GLOBAL), reason=_noted(reason or "panic", notes),
            reason_code=code, mode=pb.TRIGGER_MODE_HALT,
            directives=PANIC_DIRECTIVES + extra), notes
    if scope is None:
        raise UsageError("trigger needs --scope (or --panic)")
    mode = pb.TRIGGER_MODE_REDUCE_ONLY if args.reduce_only else pb.TRIGGER_MODE_HALT
    return pb.TriggerRequest(scope=scope_to_pb(scope),
                             reason=_noted(reason or NO_REASON, notes),
                             reason_code=code, mode=mode, directives=directives), notes


NO_REASON = "essctl trigger: no reason given"


def _loose(name: str) -> str:
    """A code or directive as typed, matched loosely: case, `_` or `-`, and the enum's
    prefix (TRIGGER_REASON_RISK_VIOLATION, DIRECTIVE_FLATTEN_POSITIONS) do not matter."""
    name = name.strip().lower().replace("_", "-")
    for prefix in ("trigger-reason-", "directive-"):
        name = name.removeprefix(prefix)
    return name


def _noted(reason: str, notes: list[str]) -> str:
    return f"{reason} (essctl: {'; '.join(notes)})" if notes else reason


def _text(argument: str | None) -> str:
    """An argument as text protobuf can carry: bytes that are not UTF-8 in the operator's
    terminal (argv keeps them as surrogates) become U+FFFD rather than stop the stop."""
    return (argument or "").encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# How long a stop that got no answer in time is waited for when it is sent again.
STOP_AGAIN_S = 30.0


def run_trigger(args: argparse.Namespace, sidecar: Sidecar, out: Output) -> int:
    """The stop goes out first; what is said of it after is best effort: a terminal or
    pipe that cannot take it changes neither the stop nor the exit status (review 30)."""
    request, notes = trigger_request(args)
    reply = _stop(sidecar, request, out)
    try:
        if not out.json:  # said before the follow-up, which may wait (review 56c)
            _say_triggered(request, reply, notes, out, None)
        try:
            alike = _spelled_alike(sidecar, request, out)
        except KeyboardInterrupt:  # the stop is made: exit 0, not "interrupted"
            alike = None
            out.note("essctl: interrupted before the sidecar said which ids are spelled"
                     " alike; the stop was made")
        if out.json:
            _say_triggered(request, reply, notes, out, alike)
        _say_alike(args, sidecar, request, alike, out)
    except BrokenPipeError:  # what is left unsaid goes nowhere (Output), not to the exit
        pass  # status
    return Exit.DONE


def _stop(sidecar: Sidecar, request: pb.TriggerRequest, out: Output) -> pb.TriggerResponse:
    """The Trigger, answered. One that got no answer in time, or found the sidecar
    unavailable, is sent again, waited for longer (a second Trigger only renews the
    first): a sidecar too busy to read a call before its deadline drops it unapplied
    (review 35: a panic behind a storm of trips to thousands of watchers was lost, and
    essctl said only DEADLINE_EXCEEDED), and one starting (it loads its state before it
    listens) or with every connection taken refuses it (review 49f: essctl gave up at
    once, and the stop was never sent). If it still fails, the person is told where the
    scope stands, as far as the sidecar says, before the error (exit 1)."""
    try:
        return sidecar.call("Trigger", request)
    except grpc.RpcError as error:
        failed = first = error
    wait = max(STOP_AGAIN_S, sidecar.options.timeout)
    if failed.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
        why = f"no answer within {sidecar.options.timeout:g} s" \
            if failed.code() is grpc.StatusCode.DEADLINE_EXCEEDED else \
            f"the sidecar is not available ({failed.details()})"
        out.note(f"essctl: {why}; the stop is sent again, waiting up to {wait:g} s for the"
                 " sidecar")
        try:
            return sidecar.call("Trigger", request, timeout=wait, wait_for_ready=True)
        except grpc.RpcError as error:
            failed = error
    # Refused outright (a role, a token, bad input), no stop of this call is queued there
    # (review 55f: "may yet land" was said of one refused PERMISSION_DENIED).
    refused = failed.code() in (grpc.StatusCode.PERMISSION_DENIED,
                                grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT)
    stands, failed_closed = _where_it_stands(sidecar, request, queued=not refused)
    out.note(f"essctl: the stop was not acknowledged; {stands}")
    unavailable = grpc.StatusCode.UNAVAILABLE in (first.code(), failed.code())  # 49i: or
    if unavailable and failed_closed:  # first; review 38g: the scope read ARMED while its
        # trip, held in memory, denied its orders
        out.note("essctl: a stop the sidecar could not store may still deny orders from its"
                 " memory, but a restart may drop it (and GLOBAL's fail-closed trip; or keep"
                 " what reached the disk: review 39f): send it again once the sidecar's"
                 " store works, and check with essctl status")
    if failed.code() is grpc.StatusCode.DEADLINE_EXCEEDED:  # the error says what was waited
        if first.code() is grpc.StatusCode.UNAVAILABLE:  # for a sidecar never reached: its
            raise Failed(f"{describe(first, sidecar.options)}; sent again, no answer within"
                         f" {wait:g} s more")  # hint kept (review 49h: "sent twice")
        raise Failed(f"DEADLINE_EXCEEDED: the stop was sent twice, and no answer came within"
                     f" {sidecar.options.timeout:g} s, then {wait:g} s")
    raise failed


def _where_it_stands(sidecar: Sidecar, request: pb.TriggerRequest,
                     queued: bool = True) -> tuple[str, bool]:
    """The scope's and GLOBAL's states as the sidecar tells them now, or that it cannot
    (`queued`: the stop may still be queued there, not refused outright);
    and whether either is stopped as the request asked (a halt: TRIPPED; reduce-only:
    REDUCE_ONLY or TRIPPED), a drill's state not counted: it lifts itself. And whether
    GLOBAL is tripped by the sidecar itself (failing closed: CAUSE_SYSTEM)."""
    try:
        scopes = sidecar.call("GetState", pb.GetStateRequest()).scopes
    except grpc.RpcError as error:
        return (f"the sidecar cannot say whether trading stopped ({error.code().name}):"
                " assume it did NOT"), False
    states = {scope_name(s.scope): s.state for s in scopes}
    drills = {scope_name(s.scope) for s in scopes if s.drill}  # a drill lifts itself
    enough = {pb.STATE_TRIPPED} if request.mode != pb.TRIGGER_MODE_REDUCE_ONLY \
        else {pb.STATE_TRIPPED, pb.STATE_REDUCE_ONLY}
    looked = list(dict.fromkeys([scope_name(request.scope), "GLOBAL"]))
    said = [f"{name} is {enum_name(pb.State.DESCRIPTOR, states.get(name, pb.STATE_ARMED))}"
            for name in looked]
    stopped = any(states.get(name) in enough and name not in drills for name in looked)
    failed_closed = any(s.scope.kind == pb.SCOPE_KIND_GLOBAL and s.state == pb.STATE_TRIPPED
                        and s.cause == pb.CAUSE_SYSTEM for s in scopes)
    told = f"the sidecar says {' and '.join(said)}"
    if not stopped:
        told += ": trading was NOT stopped as asked"
        if queued:
            told += " (a stop still queued there may yet land: look again with essctl status)"
    return told, failed_closed


def _say_triggered(request: pb.TriggerRequest, reply: pb.TriggerResponse, notes: list[str],
                   out: Output, alike: pb.GetStateResponse | None) -> None:
    for note in notes:
        out.note(f"essctl: {note}")
    if out.json:
        spelled = {"spelled_alike": to_json(alike.spelled_alike)} \
            if alike is not None and alike.HasField("spelled_alike") else {}
        out.emit({"scope": scope_name(request.scope),
                  "mode": enum_name(pb.TriggerMode.DESCRIPTOR, request.mode),
                  "directives": [enum_name(pb.Directive.DESCRIPTOR, d)
                                 for d in request.directives], **to_json(reply), **spelled})
        return
    out.line(Text(scope_name(request.scope), style="bold"), " is ", state_text(reply.state),
             f" (version {reply.state_version})")
    if note := non_ascii_note(request.scope):
        out.note(note)
    if request.directives:
        out.line(f"directives: {names(pb.Directive.DESCRIPTOR, request.directives)}")


SPELLED_ALIKE_WAIT_S = 20.0  # how long the follow-up of a stop waits, at least


def _spelled_alike(sidecar: Sidecar, request: pb.TriggerRequest,
                   out: Output) -> pb.GetStateResponse | None:
    """Once the stop is acknowledged, what the sidecar knows spelled like its scope, and
    where each scope stands (GetState's spelled_like); None for GLOBAL, or when the
    sidecar cannot say (said on stderr: the stop stands either way)."""
    if request.scope.kind == pb.SCOPE_KIND_GLOBAL:
        return None
    try:  # a walk over 100,000 long ids takes about 6 s (review 56d: past --timeout's
        # default 5 s, the follow-up never named the id meant)
        return sidecar.call("GetState", pb.GetStateRequest(spelled_like=request.scope),
                            timeout=max(sidecar.options.timeout, SPELLED_ALIKE_WAIT_S))
    except grpc.RpcError as error:
        out.note(f"essctl: the sidecar could not say which ids are spelled like"
                 f" {scope_name(request.scope)} ({error.code().name})")
        return None


def _say_alike(args: argparse.Namespace, sidecar: Sidecar, request: pb.TriggerRequest,
               state: pb.GetStateResponse | None, out: Output) -> None:
    """A stop names one id exactly, and accounts and strategies are case-sensitive:
    what the sidecar knows under an id spelled alike, it was not asked to stop (review
    55f: `ACC-2` stopped, `acc-2` traded on, and essctl said only done). Each is named
    with where it stands and, if it trades, the command that stops it too."""
    if state is None:  # GLOBAL, or it could not say (said)
        return
    stopped = scope_name(request.scope)
    if not state.HasField("spelled_alike"):
        out.note(f"essctl: this sidecar does not say which ids are spelled like {stopped}"
                 " (an older version)")
        return
    alike = state.spelled_alike
    states = {scope_name(s.scope): s for s in state.scopes if not s.drill}
    enough = (pb.STATE_TRIPPED,) if request.mode != pb.TRIGGER_MODE_REDUCE_ONLY \
        else (pb.STATE_TRIPPED, pb.STATE_REDUCE_ONLY)
    token = " (add your --token)" if args.token else ""
    for scope in alike.alike:
        name = scope_name(scope)
        if (now := states.get(name)) is not None and now.state in enough:
            out.note(f"essctl: {name}, spelled like {stopped}, is"
                     f" {state_text(now.state).plain} already (not by this stop)")
        else:
            was = f"is {state_text(now.state).plain}" if now is not None else "trades"
            out.note(f"essctl: {name} is known to the sidecar, {was}, and was NOT stopped:"
                     f" it differs from {stopped} in letter case or spaces; to stop it"
                     f" too{token}: " + _stop_again(sidecar, request, name, args))
        if note := non_ascii_note(scope):
            out.note(note)
    if len(alike.alike) >= MOST_ALIKE_NAMED:
        out.note(f"essctl: the sidecar names at most {MOST_ALIKE_NAMED} ids spelled alike;"
                 " there may be more")
    if alike.partial:
        out.note("essctl: the sidecar looked at its first 100,000 ids only: others may be"
                 f" spelled like {stopped}, or name it")
    elif alike.unseen and not alike.alike:
        out.note(f"essctl: nothing in the sidecar names {stopped} yet (no position, working"
                 " order, report, registration or setting under that id): if the stop was"
                 " meant for an id spelled otherwise, that one trades on")
    if (glob := states.get("GLOBAL")) is not None and glob.state == pb.STATE_TRIPPED:
        out.note("essctl: GLOBAL is TRIPPED: nothing trades while it is")


MOST_ALIKE_NAMED = 100  # SpelledAlike.alike holds at most this many


def _stop_again(sidecar: Sidecar, request: pb.TriggerRequest, scope: str,
                args: argparse.Namespace) -> str:
    """The command that makes the same stop of `scope`: the same sidecar (its target and
    TLS: Options.same_sidecar), mode, directives, code and reason. A token is never
    printed."""
    words = ["essctl", *sidecar.options.same_sidecar(), "trigger", "--scope", scope]
    if request.mode == pb.TRIGGER_MODE_REDUCE_ONLY:
        words.append("--reduce-only")
    for directive in request.directives:
        words += ["--directive", _loose(enum_name(pb.Directive.DESCRIPTOR, directive))]
    if args.code:
        words += ["--code", _text(args.code)]
    if args.reason:
        words += ["--reason", _text(args.reason)]
    return shlex.join(words)


def run_check(args: argparse.Namespace, sidecar: Sidecar, out: Output) -> int:
    side = pb.SIDE_BUY if args.side == "buy" else pb.SIDE_SELL
    order = pb.CheckOrderRequest(
        account=args.account, strategy=args.strategy, symbol=args.symbol, side=side,
        quantity=args.qty, price=args.price, reduce_only=args.reduce_only,
        client_order_id=args.coid or new_client_order_id())
    decision = sidecar.call("CheckOrder", order)
    if decision.allowed != (decision.reason == pb.DECISION_REASON_ALLOWED):
        # An answer that contradicts itself decides nothing: never shown as ALLOWED.
        raise Failed("malformed answer (allowed is"
                     f" {str(decision.allowed).lower()}, reason"
                     f" {enum_name(pb.DecisionReason.DESCRIPTOR, decision.reason)}): treat"
                     " the order as denied")
    if out.json:
        out.emit({**to_json(decision), "client_order_id": order.client_order_id,
                  "order": to_json(order)})
    else:
        show_decision(decision, out, order)
    return Exit.DONE if decision.allowed else Exit.NO


def show_decision(decision: pb.CheckOrderResponse, out: Output,
                  order: pb.CheckOrderRequest) -> None:
    verdict = Text("ALLOWED", style="bold green") if decision.allowed \
        else Text("DENIED", style="bold red")
    reason = enum_name(pb.DecisionReason.DESCRIPTOR, decision.reason)
    out.line(verdict, *([f"  {reason}"] if reason != verdict.plain else []))
    if decision.message:
        out.line(f"message:         {decision.message}")
    if decision.HasField("blocking_scope"):
        out.line(f"blocking scope:  {scope_name(decision.blocking_scope)}")
    side = enum_name(pb.Side.DESCRIPTOR, order.side)
    # All the digits it was sent with (review 58c: :g showed a price of 123456.789 as 123457)
    out.line(f"order:           {order.account}/{order.strategy} {side}"
             f" {order.quantity:.15g} {order.symbol} @ {order.price:.15g}")
    out.line(f"client order id: {order.client_order_id}")
    out.line(f"state version:   {decision.state_version}")
    out.line(f"decision id:     {decision.decision_id}")
    if decision.allowed:
        clear = shlex.join(["essctl", "orders", "clear", "--account", order.account,
                            "--coid", order.client_order_id, "--reason"])
        out.line("the order is working: it counts toward the limits until its fills or an"
                 f" order update end it, or `{clear} ...`")


def events_request(args: argparse.Namespace) -> pb.ListEventsRequest:
    request = pb.ListEventsRequest(page_size=min(args.limit + 1, MAX_PAGE_SIZE))
    if args.scope is not None:
        request.scope.CopyFrom(scope_to_pb(args.scope))
    if args.since is not None:
        request.since.CopyFrom(to_timestamp(args.since))
    if args.until is not None:
        request.until.CopyFrom(to_timestamp(args.until))
    return request


def fetch_events(sidecar: Sidecar, args: argparse.Namespace) -> tuple[list[pb.Event], bool]:
    """Newest first, page after page, until --limit events or the last page; and whether
    more events match (one more is asked for, to tell)."""
    if args.since is not None and args.until is not None and args.since > args.until:
        raise UsageError("--since is after --until")
    request, events, wanted = events_request(args), [], args.limit + 1
    while True:
        page = sidecar.call("ListEvents", request)
        events.extend(page.events)
        if len(events) >= wanted or not page.next_page_token:
            return events[:args.limit], len(events) > args.limit
        request.page_token = page.next_page_token
        request.page_size = min(wanted - len(events), MAX_PAGE_SIZE)


def run_history(args: argparse.Namespace, sidecar: Sidecar, out: Output) -> int:
    events, more = fetch_events(sidecar, args)
    if out.json:
        out.emit({"events": [to_json(e) for e in events], "truncated": more})
        return Exit.DONE
    if events:
        out.console.print(events_table(events))
        for note in non_ascii_notes(e.scope for e in events):
            out.note(note)
    else:
        out.line("no events")
        if args.scope is not None and (note := non_ascii_note(scope_to_pb(args.scope))):
            out.note(note)  # review 41c: a look-alike of a scope with events says why
    if more:  # review 36u: the oldest of the window were left out, unsaid
        out.note(f"essctl: showing the newest {len(events)}; older events match too (raise"
                 " --limit, or narrow --since/--until)")
    return Exit.DONE


def events_table(events: list[pb.Event]) -> Table:
    table = Table(title="Audit trail, newest first", title_justify="left")
    for column in ("time", "version", "scope", "transition", "cause", "reason", "actor",
                   "directives", "latches", "forced", "drill"):
        table.add_column(column, overflow="fold")
    for e in events:  # directives and the latches after it (review 36u: a panic on a
        # halted account read as TRIPPED → TRIPPED, a reset of one latch as a no-op)
        actor = e.actor + (f" approved by {e.approved_by}" if e.approved_by else "")
        table.add_row(Text(local(from_timestamp(e.time))), Text(str(e.version)),
                      scope_cell(e.scope), transition_text(e.previous_state, e.state),
                      Text(cause_text(e.cause, e.breaker, e.reason_code)), Text(e.reason),
                      Text(actor), Text(names(pb.Directive.DESCRIPTOR, e.directives)),
                      Text(latches_text(e)), Text("FORCED" if e.forced else ""),
                      Text("DRILL" if e.drill else ""))
    return table
