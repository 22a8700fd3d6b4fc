"""`essctl token new`: a bearer token, shown once, and its line for the tokens file."""

from __future__ import annotations

import argparse

from rich.text import Text

from ..adapters.auth.tokens import new_token, tokens_file_line
from ..domain.access import Role, parse_role
from ..domain.errors import InvalidConfig
from .connection import Exit, UsageError
from .render import Output

ROLES = [role.value for role in Role]


def add_parser(add, common) -> None:  # noqa: ANN001
    token = add("token", "bearer tokens for the sidecar's tokens file (offline)")
    sub = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    new = sub.add_parser("new", parents=[common], help="a new token for NAME with ROLE,"
                         " printed once, and the line to add under [tokens]",
                         description="Print a new bearer token (once: store it now) and the"
                         " line to add under [tokens] in the sidecar's tokens file. Only the"
                         " token's SHA-256 goes in that file. Needs no sidecar.")
    new.add_argument("--role", required=True, choices=ROLES)
    new.add_argument("--name", required=True, help="who uses the token: the actor recorded"
                     " in the audit trail")
    new.set_defaults(run=run_new, offline=True)


def run_new(args: argparse.Namespace, out: Output) -> int:
    role = parse_role(args.role)
    token = new_token()
    try:
        line = tokens_file_line(args.name, role, token)
    except InvalidConfig as error:
        raise UsageError(f"--name: {error}") from None
    if out.json:
        out.emit({"name": args.name, "role": args.role, "token": token, "line": line})
        return Exit.DONE
    out.line(Text(f"token for {args.name} ({args.role}), shown once; store it now:",
                  style="bold"))
    out.line(f"  {token}")
    out.line("add this line under [tokens] in the sidecar's tokens file:")
    out.line(f"  {line}")
    return Exit.DONE
