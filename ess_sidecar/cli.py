"""`ess-sidecar serve | check-config | reseal`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .adapters.collector import FreezeAfterLongCollections
from .adapters.storage.journal import journal_path
from .domain.errors import InvalidConfig
from .bootstrap import open_alerts, open_credentials, open_principals
from .settings import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ess-sidecar", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the sidecar")
    serve.add_argument("--config", help="TOML settings file (ESS_* variables override it)")
    _settings_flags(serve)
    check = commands.add_parser("check-config", help="validate a settings file, with the"
                                " flags serve would be given, and the files it names; exit")
    check.add_argument("config", nargs="?", help="TOML settings file (ESS_* variables"
                       " override it)")
    check.add_argument("--config", dest="config_option", metavar="CONFIG",
                       help="the same, as serve takes it (review 44c)")
    _settings_flags(check)
    reseal = commands.add_parser(
        "reseal", help="accept damaged state as it is (after inspecting it; sidecar stopped):"
        " re-chain and re-seal the state file, keep the journal's records that verify")
    reseal.add_argument("--config", help="TOML settings file (for store.path)")
    reseal.add_argument("--state", help="SQLite state file (default state/ess.db)")
    return parser


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that override settings, for serve and for check-config."""
    parser.add_argument("--listen", help="TCP host:port (default 127.0.0.1:50051; '' for none)")
    parser.add_argument("--uds", help="Unix domain socket path")
    parser.add_argument("--state", help="SQLite state file (default state/ess.db)")
    parser.add_argument("--tokens-file", help="principals and roles (auth.tokens_file);"
                        " turns authentication on")
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve TCP over TLS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--tls-client-ca", help="PEM CA: require client certificates (mTLS)")
    parser.add_argument("--metrics-listen", help="host:port of the Prometheus endpoint"
                        " (/metrics, /healthz); telemetry.metrics_listen")
    parser.add_argument("--insecure", action="store_true", default=None,
                        help="serve a non-loopback address with authentication off")


SERVER_FLAGS = ("listen", "uds", "tls_cert", "tls_key", "tls_client_ca", "insecure")


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    server = {k: getattr(args, k) for k in SERVER_FLAGS if getattr(args, k) is not None}
    overrides: dict[str, Any] = {"server": server} if server else {}
    if args.state is not None:
        overrides["store"] = {"path": args.state}
    if args.tokens_file is not None:
        overrides["auth"] = {"tokens_file": args.tokens_file}
    if args.metrics_listen is not None:
        overrides["telemetry"] = {"metrics_listen": args.metrics_listen}
    return overrides


def _serve(settings: Settings) -> int:
    """Serve until stopped. Long full garbage collections freeze what survived them from
    before the state is loaded (adapters/collector.py): its replay remembers orders too."""
    collections = FreezeAfterLongCollections().install()
    try:
        return _serve_collected(settings)
    finally:
        collections.uninstall()


def _serve_collected(settings: Settings) -> int:
    from .adapters.grpc.server import SocketPathError, serve  # noqa: PLC0415 - grpc only here
    from .bootstrap import build, server_parts  # noqa: PLC0415
    try:
        run = asyncio.run
        if settings.server.event_loop == "uvloop":
            try:
                import uvloop  # noqa: PLC0415 - a dependency; asyncio stays the alternative
            except ImportError as error:
                print(f"invalid configuration: server.event_loop: uvloop cannot be imported"
                      f' ({error}); install it, or set it to "asyncio"', file=sys.stderr)
                return 2
            run = uvloop.run
        run(serve(server_parts(build(settings))))
    except SocketPathError as error:
        print(f"cannot serve: {error}", file=sys.stderr)
        return 2
    except InvalidConfig as error:  # the tokens file or a TLS file
        print(f"invalid configuration: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. the metrics port is taken
        print(f"cannot serve: {error}", file=sys.stderr)
        return 2
    return 0


def _reseal(settings: Settings) -> int:
    """The operator's answer to StoreDamaged, after inspecting the damage with the sidecar
    stopped: the state file as found becomes the state (re-chained, re-sealed), and the
    journal keeps the records that verify."""
    from .adapters.storage.filelock import FileLock, LockHeld  # noqa: PLC0415
    from .adapters.storage.journal import FileJournal, journal_path  # noqa: PLC0415
    from .adapters.storage.sqlite import LOCK_WAIT_S, SqliteStateStore  # noqa: PLC0415
    from .domain.errors import StoreUnavailable  # noqa: PLC0415
    from .bootstrap import trip_for_lost_versions, trip_for_what_a_reseal_lost  # noqa: PLC0415
    path = settings.store.path
    was_in_use = SqliteStateStore.in_use(path)  # before the reseal writes a seal
    had_journal = Path(journal_path(path)).exists()
    if not (was_in_use or had_journal or Path(f"{journal_path(path)}.seal").exists()):
        # review 51d: a mistyped path, or the wrong directory, made a new store and said
        # it was resealed, the damaged one untouched
        print(f"cannot reseal: there is no state at {Path(path).resolve()} (no state file,"
              " journal, or seal of either): check --state or store.path, and the directory"
              " a relative one is taken from", file=sys.stderr)
        return 1
    try:
        # First, chained as its seal says: a record a newer version wrote is refused before
        # anything is resealed (reviews 43h, 43j: chained from zeros, none verified)
        FileJournal(journal_path(path), identity=None).reseal_would_lose()
        # Lost versions are accepted with GLOBAL's trip, in one transaction, or not at all.
        summary = SqliteStateStore.reseal(path, trip_for_lost_versions(settings),
                                          FileJournal(journal_path(path)).sealed_genesis())
        print(summary)
        if summary.loses:
            print("GLOBAL tripped: acknowledged transitions may be lost (above); check every"
                  " scope before resetting GLOBAL")
    except StoreUnavailable as error:
        print(f"cannot reseal: {error}", file=sys.stderr)
        return 1
    journal = FileJournal(journal_path(path), identity=summary.identity)
    # The trip first, the cut after: if the trip fails, nothing is cut, and the next
    # start (or reseal) still finds the damage.
    try:
        loses = journal.reseal_would_lose()
    except StoreUnavailable as error:
        print(f"cannot reseal the journal: {error}", file=sys.stderr)
        return 1
    if loses or (was_in_use and not had_journal):
        try:
            print(trip_for_what_a_reseal_lost(settings, (
                "journal records were lost (cut, or the journal gone): working orders,"
                " fills and used order ids in them are forgotten, and the data feeds"
                " whose ticks they held are watched from the next start, a full window"
                " from it; send every account's SyncPositions with its open orders, then"
                " reset GLOBAL")))
        except StoreUnavailable as error:
            print(f"cannot trip GLOBAL before cutting the journal: {error}", file=sys.stderr)
            return 1
    lock = FileLock(Path(f"{path}.lock"))  # the store's: no sidecar may start meanwhile
    try:
        lock.acquire(LOCK_WAIT_S)  # a killed sidecar's syncer may hold it a moment
    except (LockHeld, OSError) as error:
        print(f"cannot reseal the journal: {path} is in use ({error!r})", file=sys.stderr)
        return 1
    try:
        print(journal.reseal()[0])
    except OSError as error:
        print(f"cannot reseal the journal: {error}", file=sys.stderr)
        return 1
    finally:
        lock.release()
    return 0


def _check_store_path(path: str) -> None:
    """check-config: the state file and its journal can be made or opened as files. Serve
    starts failed closed on one that cannot (every order denied), which a check before a
    deploy should catch (review 40j: a directory and /dev/null passed). Raises
    InvalidConfig naming store.path."""
    for file in (Path(path), Path(journal_path(path))):
        if file.exists() or file.is_symlink():
            if not file.is_file():
                raise InvalidConfig("store.path", f"{file} is not a regular file (a directory,"
                                    " a device, a broken link?): serve would fail closed")
            continue
        folder = next(p for p in file.parents if p.exists())  # "/" at last
        if not folder.is_dir():
            raise InvalidConfig("store.path", f"{folder} is not a directory: {file} cannot"
                                " be made, and serve would fail closed")
        if not os.access(folder, os.W_OK | os.X_OK) or \
                os.statvfs(folder).f_flag & os.ST_RDONLY:
            raise InvalidConfig("store.path", f"{folder} is not writable: {file} cannot be"
                                " made, and serve would fail closed")


def _check_open_files(settings: Settings) -> None:
    """check-config: the connections an address may hold under this shell's open-files
    limit, raised as serve raises it (review 45: it said nothing, and serve then refused
    to start, or lowered the cap). Raises OSError if serve would refuse; says so if it
    would lower server.max_connections (a service manager may set another limit)."""
    from .adapters.grpc import server  # noqa: PLC0415 - gRPC only where it serves
    server.raise_open_files_limit()
    connections = server.connections_per_address(
        settings.server, server.listening_addresses(settings.server))
    if connections < settings.server.max_connections:
        print(f"server.max_connections: {connections} an address under this shell's"
              f" open-files limit, lowered from {settings.server.max_connections}")


def _standard_streams() -> None:
    """Reopen onto /dev/null a standard descriptor the parent closed (`2>&-`): else the next
    file opened takes its number, and gRPC's core, which writes its errors to descriptor 2
    itself, writes them into that file (review 43k: the state file's lock)."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115 - for good


def main(argv: list[str] | None = None) -> int:
    _standard_streams()
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "check-config":
        if (args.config is None) == (args.config_option is None):
            parser.error("check-config: give the settings file once, as FILE or --config"
                         " FILE")
        if args.config is None:  # "" is a file name too: refused as serve refuses it
            args.config = args.config_option
    try:
        if args.command == "check-config":  # what serve reads before it serves
            settings = load_settings(args.config, **_flag_overrides(args))
            settings.check_serves()
            _check_store_path(settings.store.path)
            open_principals(settings)
            credentials = open_credentials(settings)  # review 34: its files were not read
            if credentials is not None:  # review 42i: nor tried by gRPC
                from .adapters.grpc.security import check_grpc_serves  # noqa: PLC0415
                if not check_grpc_serves(settings.server, credentials):
                    print("server.tls_cert: not tried by gRPC (no address binds here)")
            open_alerts(settings)
            try:
                _check_open_files(settings)
            except OSError as error:
                print(f"cannot serve: {error}", file=sys.stderr)
                return 2
            print(f"{args.config}: OK")
            return 0
        if args.command == "reseal":
            overrides = {"store": {"path": args.state}} if args.state else {}
            return _reseal(load_settings(args.config, **overrides))
        # From here on a hangup is ignored (serve says so once it serves): during start-up
        # it ended the process, unsaid (review 42f; a long journal replay is a long window)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        settings = load_settings(args.config, **_flag_overrides(args))
        settings.check_serves()
    except InvalidConfig as error:
        print(f"invalid configuration: {error}", file=sys.stderr)
        return 2
    from .adapters.telemetry.logs import (  # noqa: PLC0415 - grpc and logging only here
        configure_logging, descriptor_2_never_waits)
    with descriptor_2_never_waits() as unguarded:  # gRPC's core writes there itself
        configure_logging(settings.telemetry.log_format, settings.telemetry.log_level)
        if unguarded:
            logging.getLogger(__name__).warning(
                "stderr %s: gRPC's own error lines wait on it, so unread it can hold calls"
                " (docs/design.md, known gap 19); have it read, or set GRPC_VERBOSITY=NONE",
                unguarded)
        return _serve(settings)


if __name__ == "__main__":
    sys.exit(main())
