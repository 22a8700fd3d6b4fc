"""The tokens file: principals, their roles, and only the SHA-256 of their bearer tokens.

    [tokens]                 # essctl token new --role operator --name alice
    alice = { role = "operator", sha256 = "<64 hex digits>" }

    [certificates]           # mutual TLS: a client certificate's common name
    "executor-1" = { role = "executor" }
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ...domain.access import Principal, Role, parse_role
from ...domain.errors import InvalidConfig

TOKEN_PREFIX = "ess_"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def new_token() -> str:
    """A fresh bearer token: 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_file_line(name: str, role: Role, token: str) -> str:
    """The line to add under [tokens] for this token (which is not in it)."""
    _check_name(name, "name")
    return f'"{name}" = {{ role = "{role.value}", sha256 = "{token_sha256(token)}" }}'


@dataclass(frozen=True)
class Principals:
    """Who can authenticate, and how."""

    tokens: tuple[tuple[bytes, Principal], ...] = ()
    certificates: dict[str, Principal] = field(default_factory=dict)

    def by_token(self, token: str) -> Principal | None:
        """The principal whose token this is. Every stored hash is compared, in constant
        time, so the time taken says nothing about which one (if any) matched."""
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for stored, principal in self.tokens:
            if hmac.compare_digest(stored, digest):
                found = principal
        return found

    def by_certificate(self, common_name: str) -> Principal | None:
        return self.certificates.get(common_name)

    def is_operator(self, name: str, credential: str) -> bool:
        """Whether the token or certificate `credential` (Principal.credential) names
        `name` an operator: a token replaced by another does not, and "" (a request
        journaled by an earlier version, which kept none) matches nothing (review 35l: an
        upgrade is a restart, and such a request survived the rotation of its token)."""
        return any(p.name == name and p.role is Role.OPERATOR and p.credential == credential
                   for p in (*(p for _, p in self.tokens), *self.certificates.values()))

    def __bool__(self) -> bool:
        return bool(self.tokens or self.certificates)


EMPTY_TOKEN = hashlib.sha256(b"").hexdigest()


def load_principals(path: str | Path) -> Principals:
    """Read and check the tokens file. Raises InvalidConfig naming the file and the key."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidConfig("auth.tokens_file", f"cannot read {path}: {error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InvalidConfig("auth.tokens_file", f"{path} is not valid TOML: {error}") from None
    unknown = sorted(set(data) - {"tokens", "certificates"})
    if unknown:
        raise InvalidConfig(f"{path}: {unknown[0]}", "unknown section; known: tokens,"
                            " certificates")
    tokens, seen = [], set()
    for name, entry in _entries(path, data, "tokens", {"role", "sha256"}):
        digest = entry["sha256"]
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise InvalidConfig(f"{path}: tokens.{name}.sha256",
                                "must be 64 lowercase hex digits (essctl token new)")
        if digest == EMPTY_TOKEN:  # review 42f: `echo -n "$TOKEN" | sha256sum`, unset
            raise InvalidConfig(f"{path}: tokens.{name}.sha256", "is the SHA-256 of an"
                                " empty token: anyone sending 'Bearer ' would be this"
                                " principal (essctl token new)")
        if digest in seen:
            raise InvalidConfig(f"{path}: tokens.{name}.sha256", "is another name's token too")
        seen.add(digest)
        # The credential names the token without being its digest: a journal record
        # is no second copy of the tokens file.
        fingerprint = "token:" + hashlib.sha256(bytes.fromhex(digest)).hexdigest()[:16]
        tokens.append((bytes.fromhex(digest),
                       _principal(path, "tokens", name, entry, fingerprint)))
    certificates = {name: _principal(path, "certificates", name, entry, "certificate")
                    for name, entry in _entries(path, data, "certificates", {"role"})}
    _one_spelling(path, [("tokens", p.name) for _, p in tokens]
                  + [("certificates", name) for name in certificates])
    if not tokens and not certificates:  # review 58c: started, it refused every call, its
        # stops too, and check-config said OK
        raise InvalidConfig("auth.tokens_file", f"{path} names no principal (no line under"
                            " [tokens] or [certificates]): every call, a stop too, would be"
                            " refused; add a token (essctl token new) or a certificate name")
    return Principals(tuple(tokens), certificates)


def _one_spelling(path: str | Path, names: list[tuple[str, str]]) -> None:
    """Names are the actors of the audit trail and the two operators of a four-eyes
    reset: two that differ only in case would let one person be both (review 17)."""
    spelled: dict[str, str] = {}
    for section, name in names:
        first = spelled.setdefault(name.casefold(), name)
        if first != name:
            raise InvalidConfig(f"{path}: {section}.{name}", f"differs from {first!r} only in"
                                " case: one person would count as two operators")


def _entries(path: str | Path, data: dict, section: str,
             keys: set[str]) -> list[tuple[str, dict]]:
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise InvalidConfig(f"{path}: {section}", "must be a table")
    for name, entry in table.items():
        _check_name(name, f"{path}: {section}.{name}")
        if not isinstance(entry, dict) or set(entry) != keys:
            raise InvalidConfig(f"{path}: {section}.{name}",
                                f"must be {{ {', '.join(sorted(keys))} }}")
    return list(table.items())


def _principal(path: str | Path, section: str, name: str, entry: dict,
               credential: str) -> Principal:
    try:
        return Principal(name, parse_role(str(entry["role"])), credential)
    except ValueError as error:
        raise InvalidConfig(f"{path}: {section}.{name}.role", str(error)) from None


def _check_name(name: str, key: str) -> None:
    if not NAME.fullmatch(name):
        raise InvalidConfig(key, "a name is 1 to 128 of A-Z a-z 0-9 _ . @ -, starting"
                            " with a letter or digit")
