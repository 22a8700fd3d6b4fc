"""`essctl orders [clear]`: the working orders, and ending stuck ones by hand.

An order the sidecar allowed is a working order: it counts toward the exposure limits,
REDUCE_ONLY and max positions until evidence ends it (fills, an order update, a snapshot of
open orders). One whose end never reaches the sidecar keeps costing denials; an operator who
knows it is gone at the venue clears it (ClearWorkingOrders, logged with who and why)."""

from __future__ import annotations

import argparse

import grpc
from rich.table import Table
from rich.text import Text

from ess.v1 import guard_pb2 as pb

from ..domain.ids import blank

from .connection import NO_ANSWER, Exit, Sidecar, UsageError, describe
from .render import Output, confirm, enum_name, say_no_answer, to_json, when

LISTED_AT_MOST = 10_000  # GetState lists at most this many working orders


def add_parser(add, common, id_arg) -> None:  # noqa: ANN001
    orders = add("orders", "the working orders (allowed, not yet ended by a fill, an order"
                 " update, a snapshot or an operator), oldest first; `orders clear` ends"
                 " some by hand")
    orders.add_argument("--account", type=id_arg("account"), help="only this account")
    orders.set_defaults(run=run_list)
    sub = orders.add_subparsers(dest="orders_command", metavar="COMMAND")
    clear = sub.add_parser(
        "clear", parents=[common], help="end working orders known to be gone at the venue",
        description="End working orders of an account by hand (ClearWorkingOrders, operator"
        " role): those it shows, those named by --coid, or --all. They stop counting toward"
        " the limits"
        " at once; do it only when they are known to be gone. Shows them and asks for"
        " confirmation unless --yes; exit 0 done, 1 not confirmed or not allowed, 2 a named"
        " order was not working.")
    clear.add_argument("--account", required=True, type=id_arg("account"))
    clear.add_argument("--coid", action="append", default=[], type=id_arg("client_order_id"),
                       metavar="ID", help="only this client_order_id (repeatable; default:"
                       " every working order of the account it shows)")
    clear.add_argument("--all", action="store_true", help="every working order of the"
                       " account when the sidecar takes the clear (one allowed while you"
                       " confirm included), and the open orders a snapshot of it listed"
                       " that the sidecar could not adopt, which deny its orders until"
                       " then")
    clear.add_argument("--reason", required=True, help="why they are known to be gone"
                       " (logged)")
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    clear.set_defaults(run=run_clear)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def working_orders(sidecar: Sidecar, account: str | None) -> tuple[list[pb.WorkingOrder], int]:
    """The working orders (of `account`, or all), oldest first, and how many there are in
    all (more than listed when over LISTED_AT_MOST)."""
    state = sidecar.call("GetState", pb.GetStateRequest(
        include_working_orders=True, working_orders_account=account or ""))
    counts = {c.account: c.working_orders for c in state.working_order_counts}
    total = counts.get(account, 0) if account else sum(counts.values())
    return list(state.working_orders), max(total, len(state.working_orders))


def run_list(args: argparse.Namespace, sidecar: Sidecar, out: Output) -> int:
    orders, total = working_orders(sidecar, args.account)
    if out.json:
        out.emit({"account": args.account, "total": total,
                  "working_orders": [to_json(o) for o in orders]})
        return Exit.DONE
    where = f" in account {args.account}" if args.account else ""
    if not orders:
        out.line(f"no working orders{where}")
        return Exit.DONE
    out.console.print(orders_table(orders, f"Working orders{where}, oldest first"))
    if total > len(orders):
        out.line(f"showing the oldest {len(orders)} of {total}")
    else:
        out.line(f"{plural(total, 'working order')}{where}")
    return Exit.DONE


def orders_table(orders: list[pb.WorkingOrder], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("since", "account", "client order id", "strategy", "symbol", "side",
                   "quantity", "remaining", "price", "decision"):
        right = column in ("quantity", "remaining", "price")
        table.add_column(column, overflow="fold", justify="right" if right else "left")
    for o in orders:
        table.add_row(Text(when(o, "since")), Text(o.account), Text(o.client_order_id),
                      Text(o.strategy), Text(o.symbol),
                      Text(enum_name(pb.Side.DESCRIPTOR, o.side)), Text(f"{o.quantity:g}"),
                      Text(f"{o.remaining_quantity:g}"), Text(f"{o.price:g}"),
                      Text(o.decision_id))
    return table


def run_clear(args: argparse.Namespace, sidecar: Sidecar, out: Output) -> int:
    if blank(args.reason):  # review 41c: U+2800 alone passed
        raise UsageError("--reason must say why the orders are known to be gone")
    named = list(dict.fromkeys(args.coid))
    if named and args.all:
        raise UsageError("--all clears every order of the account: name none with --coid")
    orders, total = working_orders(sidecar, args.account)
    complete = total <= len(orders)  # every working order of the account was listed
    listed, wanted = {o.client_order_id for o in orders}, set(named)
    doomed = [o for o in orders if not named or o.client_order_id in wanted]
    not_working = [c for c in named if c not in listed] if complete else []
    if not args.all and (not total or (complete and not doomed)):
        return nothing_to_clear(args.account, not_working, out)
    if not out.json and doomed:
        shown = plural(len(doomed), "working order") if complete else \
            f"{len(doomed)} (listed) of {plural(total, 'working order')}"
        out.console.print(orders_table(doomed, f"The clear will end {shown} of account"
                                               f" {args.account}"))
    if not args.yes:
        many = f"every working order ({total} now) and unadopted open order" if args.all \
            else plural(len(named) if named else total, "working order")
        confirm(f"Clear {many} of account"
                f" {args.account}: they stop counting toward the limits at once. They are"
                " gone at the venue? Go ahead?", out, "not confirmed: pass --yes")
    # None named, all listed: clear those shown, never one allowed while the prompt waited
    ids = [] if args.all else named or (
        [o.client_order_id for o in doomed] if complete else [])
    try:
        reply = sidecar.call("ClearWorkingOrders", pb.ClearWorkingOrdersRequest(
            account=args.account, client_order_ids=ids, reason=args.reason))
    except grpc.RpcError as error:
        if error.code() not in NO_ANSWER:
            raise
        return unanswered(error, sidecar, args.account, ids, out, args.all)
    short = bool(named) and reply.cleared < len(named)
    missing = not_working if short else []
    if out.json:
        out.emit({"result": "cleared", "account": args.account, "cleared": reply.cleared,
                  "requested": named, "not_working": missing})
    else:
        out.line(Text(f"cleared {plural(reply.cleared, 'working order')} of account"
                      f" {args.account}", style="bold"))
        if short:
            out.line(f"{len(named) - reply.cleared} of the {len(named)} named were not"
                     " working (unknown, or ended already)"
                     + (f": {', '.join(missing)}" if missing else ""))
    return Exit.NO if short else Exit.DONE


def unanswered(error: grpc.RpcError, sidecar: Sidecar, account: str, ids: list[str],
               out: Output, unadopted: bool = False) -> int:
    """A clear with no answer may have landed (review 36e: exit 1, "could not", while it
    had): how many of the orders it was to end still work, from a fresh look. Exit 0 if
    none does, else 1; always 1 for `--all` (`unadopted`): whether the open orders a
    snapshot could not adopt are cleared cannot be seen (review 38i: "it landed")."""
    try:
        orders, total = working_orders(sidecar, account)
    except grpc.RpcError as again:
        left, message = None, (f"the sidecar cannot say what still works now"
                               f" ({again.code().name}): the clear may have landed, or may"
                               " yet; look with essctl orders")
    else:
        listed = {o.client_order_id for o in orders}
        left = sum(c in listed for c in ids) if ids else total  # ids: all of the account's
        message = f"{plural(left, 'order')} it was to end still work in account {account}" \
            + (": the clear may yet land; look again with essctl orders" if left else
               ": whether the open orders a snapshot could not adopt are cleared cannot be"
               " seen: send it again (a clear may be repeated)" if unadopted else
               ": it landed")
    say_no_answer(out, "clear", describe(error, sidecar.options), message, account=account,
                  still_working=left)
    return Exit.DONE if left == 0 and not unadopted else Exit.FAILED


def nothing_to_clear(account: str, not_working: list[str], out: Output) -> int:
    """Nothing was sent: no order to clear. Exit 2 when orders were named (they were not
    working), 0 when the account simply has none."""
    if out.json:
        out.emit({"result": "nothing_to_clear", "account": account, "cleared": 0,
                  "requested": not_working, "not_working": not_working})
    elif not_working:
        out.line(f"nothing to clear: not working orders of account {account}:"
                 f" {', '.join(not_working)}")
    else:
        out.line(f"nothing to clear: account {account} has no working orders")
    return Exit.NO if not_working else Exit.DONE
