"""One settings object: a TOML file, then ESS_* environment overrides, then flags.

Unset breaker, limit and policy fields take the domain's defaults (docs/design.md), so the
defaults live in one place. Every key is checked: a typo or a bad value refuses to start
with a message naming the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import pathlib
import re
import tomllib
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, \
    ValidationInfo, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, \
    SettingsConfigDict, SettingsError, TomlConfigSettingsSource

from .domain.approvals import ApprovalPolicy
from .domain.breakers import DEBOUNCED, DEFAULT_RULES, WINDOWED, BreakerRule, \
    BreakerSettings
from .domain.config import GuardConfig, ResumePolicy
from .domain.errors import InvalidArgument, InvalidConfig
from .domain.ids import canonical_symbol, fold_symbol, shown
from .domain.limits import LimitSettings
from .domain.scopes import Scope, ScopeKind
from .domain.states import TriggerMode


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a NaN or inf turns checks off

    @field_validator("*", mode="before")
    @classmethod
    def _a_value_of_its_kind(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse what lax parsing would take for something else (review 36s): `true` for a
        number (`require_approvals = true` was 1: no four-eyes; `false` for a cap was 0:
        off), and an explicit null (read as not set: the default, often "off")."""
        if value is None:
            raise ValueError("null is no value: leave the key out for its default")
        kind = cls.model_fields[info.field_name].annotation if info.field_name else None
        if isinstance(value, bool) and bool not in (kind, *typing.get_args(kind)):
            raise ValueError("must be a number, not true or false")
        return value

    def given(self) -> dict[str, Any]:
        """Only the fields the operator set; the rest keep the domain's defaults."""
        return self.model_dump(exclude_none=True)


def _host_port(value: str, every_interface: bool = False) -> str:
    """HOST:PORT (HOST a name, an IPv4 or a [v6] address; empty, every interface, only
    where `every_interface`; PORT 0 to 65535), or "" for none. Review 40j: a port out of
    range was taken, and gRPC listened on another (-1 on 65535, 99999 on 34463); 40l: a
    host that cannot be looked up (an empty label) ended serve in a traceback, and
    `::1:50051` was taken for a loopback address gRPC cannot bind."""
    if not value:
        return value
    host, sep, port = value.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError("must be HOST:PORT, the port a number from 0 to 65535")
    if not host and not every_interface:
        raise ValueError("must name its host (0.0.0.0 or [::] for every interface)")
    if ":" in bare and bare == host:
        raise ValueError("an IPv6 host goes in brackets: [::1]:50051")
    try:
        if bare != host:  # in brackets: an IPv6 address (review 40m: [127.0.0.1], [])
            ipaddress.IPv6Address(bare)
        bare.encode("idna")
    except (ValueError, UnicodeError) as error:
        raise ValueError(f"its host is not a host name or address ({error})") from None
    if any(c.isspace() or not c.isprintable() for c in host):
        raise ValueError("its host holds a space or a control character")
    return value


# The OTLP exports the standard variables can ask for: each signal's own endpoint and
# protocol variables, which win over the general OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL.
OTLP_SIGNALS = ("METRICS", "TRACES")


def otlp_exports(environ: typing.Mapping[str, str]) -> frozenset[str]:
    """The signals ("METRICS", "TRACES") the OTEL_EXPORTER_OTLP_* variables ask to export.
    Raises InvalidConfig naming the variable whose protocol is not grpc: only the gRPC
    exporters are installed (review 44d: traces asked for over HTTP went out over gRPC,
    and every span was lost; check-config passed what serve refused for metrics)."""
    asked = set()
    for signal in OTLP_SIGNALS:
        if not (environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
                or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
            continue
        for variable in (f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL",
                         "OTEL_EXPORTER_OTLP_PROTOCOL"):
            if (protocol := environ.get(variable)) is not None:
                if protocol.strip() != "grpc":
                    raise InvalidConfig(variable, f"OTLP protocol {protocol!r} is not"
                                        " supported; only grpc")
                break
        asked.add(signal)
    return frozenset(asked)


def _same_port(one: str, other: str) -> bool:
    """Whether two HOST:PORT addresses would contend for one port: the same port, not 0
    (each its own), on the same host or one on every interface (review 40m)."""
    (host, _, port), (other_host, _, other_port) = one.rpartition(":"), \
        other.rpartition(":")
    every = {"", "0.0.0.0", "[::]"}
    return port == other_port and int(port) != 0 \
        and (host == other_host or host in every or other_host in every)


def _path(value: str) -> str:
    if "\0" in value:
        raise ValueError("must not hold a NUL character")
    return value


# A Unix socket's path must fit sockaddr_un (108 bytes, its NUL included).
MAX_SOCKET_PATH = 107


def _socket_path(value: str) -> str:
    if len(os.fsencode(_path(value))) > MAX_SOCKET_PATH:
        raise ValueError(f"a Unix socket's path is at most {MAX_SOCKET_PATH} bytes")
    if "%" in value:  # review 40l: gRPC decodes %41 as A, and took a live sidecar's socket
        raise ValueError("must not hold '%' (gRPC reads %XX as a byte)")
    return value


HostPort = Annotated[str, AfterValidator(lambda value: _host_port(value))]
SocketPath = Annotated[str, AfterValidator(_socket_path)]


# Fewer places an address than this and one executor could keep an operator's stop out
# (review 45a: at 1, one executor on the Unix socket kept `essctl trigger` out).
MIN_CONNECTIONS = 8


class ServerSettings(_Section):
    listen: HostPort = Field("127.0.0.1:50051", description="TCP host:port; empty for none")
    uds: SocketPath = Field("", description="Unix socket path (the fastest same-host path)")
    grace_s: float = Field(5.0, ge=0, le=60, description="on shutdown, after the drain:"
                          " how long in-flight calls may finish (and, again, alerts)")
    insecure: bool = Field(False, description="allow a non-loopback listen address with"
                           " authentication off")
    tls_cert: str = Field("", description="PEM certificate chain; with tls_key, TCP is TLS")
    tls_key: str = Field("", description="PEM private key of tls_cert")
    tls_client_ca: str = Field("", description="PEM CA bundle: clients must present a"
                               " certificate it signed (mutual TLS)")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="the event loop serving calls: uvloop (libuv; less CPU per"
        " call) or the standard library's asyncio")
    max_calls_per_connection: int = Field(
        256, ge=1, le=1_000_000, description="calls in flight on one connection, streams"
        " included; a client's further calls wait for a place (its Trigger too)")
    max_connections: int = Field(
        400, ge=MIN_CONNECTIONS, le=1_000_000, description="connections each address served"
        " on (a TCP address, the Unix socket) holds at once; a new one past it is closed as"
        " it comes, so a flood on one address leaves the others, and the file descriptors"
        " the state needs, free; lowered to fit the open-files limit (at least 8: fewer,"
        " and one executor could keep an operator's stop out)")


class ShutdownSettings(_Section):
    drain_s: float = Field(1.0, ge=0, le=60, description="on SIGTERM/SIGINT: health says"
                           " NOT_SERVING while every call is still answered, for this long,"
                           " so that probes (even one polling every 100 ms) see it")
    timeout_s: float = Field(20.0, gt=0, le=600, description="hard bound on a whole stop,"
                             " from the signal to the exit; must exceed drain_s +"
                             " server.grace_s")


class AuthSettings(_Section):
    tokens_file: str = Field("", description="principals and roles: [tokens] (SHA-256 of"
                             " bearer tokens) and [certificates] (mTLS common names); empty:"
                             " authentication off")


class ResetSettings(_Section):
    require_approvals: int = Field(1, ge=1, le=2, description="2: four-eyes resets")
    approval_window_s: float = Field(300.0, gt=0, description="how long a reset waits for"
                                     " its second operator")


class TelemetrySettings(_Section):
    enabled: bool = Field(True, description="false: no metrics, traces or span work at all")
    metrics_listen: str = Field("", description="host:port of the Prometheus endpoint"
                                " (/metrics, /healthz); empty for none")
    service_name: str = Field("ess-sidecar", description="resource service.name")
    instance_id: str = Field("", description="resource service.instance.id; default"
                             " <hostname>-<pid>")
    check_order_sample_ratio: float = Field(0.01, ge=0, le=1, description="traces:"
                                            " CheckOrder / CheckOrderStream spans kept")
    control_sample_ratio: float = Field(1.0, ge=0, le=1, description="traces: Trigger and"
                                        " Reset spans kept")
    default_sample_ratio: float = Field(0.1, ge=0, le=1, description="traces: every other"
                                        " RPC's spans kept")
    latency_sample_every: int = Field(8, ge=1, description="decision latency histogram:"
                                      " one decision in this many (counts stay exact)")
    max_gauge_scopes: int = Field(100, ge=1, le=100_000, description="per-scope gauges"
                                  " cover at most this many scopes (restricted first, newest"
                                  " first): scrapes stay small whatever the ids")
    log_format: Literal["json", "text"] = Field("json", description="stderr log lines")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO")

    @field_validator("metrics_listen")
    @classmethod
    def _metrics_address(cls, value: str) -> str:
        return _host_port(value, every_interface=True)


class AlertSettings(_Section):
    urls: list[str] = Field(default_factory=list, description="apprise notification URLs")
    retries: int = Field(5, ge=0, description="retries per URL after a failed send")
    backoff_initial_s: float = Field(1.0, gt=0, le=86_400, description="first retry delay;"
                                     " doubles")
    backoff_max_s: float = Field(60.0, gt=0, le=86_400, description="longest retry delay")
    queue_size: int = Field(1000, ge=1, description="alerts waiting to be sent before new"
                            " ones are dropped (and counted)")


class StoreSettings(_Section):
    path: str = Field("state/ess.db", min_length=1, description="SQLite file holding the"
                      " latched state")
    keep_events: int = Field(0, ge=0, le=10**12, description="audit events kept; 0 keeps"
                             " all")  # review 40j: 2**64 failed every write, in SQLite
    journal_sync_interval_s: float = Field(
        0.01, ge=0, le=1, description="the journal (<path>.journal) is fsynced this often, by"
        " a child process (the syncer); 0 fsyncs before every answer, with no syncer"
        " (power-loss durable, slower)")

    @field_validator("path")
    @classmethod
    def _file_path(cls, value: str) -> str:
        return _path(value)


class WatchSettings(_Section):
    heartbeat_interval_s: float = Field(5.0, ge=0.001, le=3600,
                                        description="WatchState heartbeat period")
    queue_size: int = Field(1024, ge=1, description="events queued per subscriber before resync")
    max_watchers: int = Field(100, ge=1, le=100_000,
                              description="WatchState streams at once, and health Watch"
                              " streams; more: UNAVAILABLE")
    max_scopes: int = Field(1024, ge=1, le=100_000,
                            description="scopes one WatchState names (none: every scope);"
                            " more: INVALID_ARGUMENT")
    fanout_listen: HostPort = Field("", description="TCP host:port where a process of its"
                                    " own serves WatchState (only) to many watchers, off the"
                                    " decisions' process (TLS as server.listen); empty for"
                                    " none")
    fanout_uds: SocketPath = Field("", description="Unix socket path of that process;"
                                   " empty for none")
    fanout_max_watchers: int = Field(1000, ge=1, le=100_000, description="WatchState"
                                     " streams the fan-out process serves at once; more:"
                                     " UNAVAILABLE")

    def fans_out(self) -> bool:
        return bool(self.fanout_listen or self.fanout_uds)


class TimerSettings(_Section):
    interval_s: float = Field(0.1, ge=0.001, le=5, description="period of feed/heartbeat"
                              " timers")


class BreakerSettingsModel(_Section):
    threshold: float | None = None
    window_s: float | None = None
    consecutive: int | None = None
    mode: Literal["halt", "reduce_only"] | None = None
    auto_rearm: bool | None = None
    enabled: bool | None = None

    def over(self, rule: BreakerRule) -> BreakerRule:
        given = self.given()
        if "mode" in given:
            given["mode"] = TriggerMode[given["mode"].upper()]
        return dataclasses.replace(rule, **given)


class _OrderLimitsModel(_Section):
    max_order_quantity: float | None = None
    max_order_notional: float | None = None
    price_band_pct: float | None = None


class SymbolLimitsModel(_OrderLimitsModel):
    # Per symbol only (review 36s: under [limits] it valued every symbol with no mark at
    # it, and a sell of 1,000 BTC at 0.01 was allowed where MARK_UNKNOWN denied it).
    reference_price: float | None = None


class LimitsModel(_OrderLimitsModel):
    max_orders_per_second: int | None = None
    exposure_enabled: bool | None = None
    max_symbol_exposure_pct: float | None = None
    max_strategy_exposure_pct: float | None = None
    max_portfolio_exposure_pct: float | None = None
    max_open_positions: int | None = None
    max_working_orders_per_account: int | None = None
    max_working_orders_per_strategy: int | None = None
    duplicate_identical_orders: int | None = None
    duplicate_window_s: float | None = None
    order_id_retention_s: float | None = None
    max_remembered_orders: int | None = None
    max_snapshot_entries: int | None = None
    idle_evidence_s: float | None = None
    max_scopes_with_evidence: int | None = None
    symbols: dict[str, SymbolLimitsModel] = Field(default_factory=dict)


class PolicyModel(_Section):
    reset_cooldown_s: float | None = None
    rearm_delay_s: float | None = None


class PoliciesModel(PolicyModel):
    global_: PolicyModel | None = Field(None, alias="global")
    account: PolicyModel | None = None
    strategy: PolicyModel | None = None
    symbol: PolicyModel | None = None


class ScopeOverrideModel(_Section):
    breakers: dict[str, BreakerSettingsModel] = Field(default_factory=dict)


ENV_PREFIX, ENV_DELIMITER = "ESS_", "__"
# ESS_* variables that are not settings: essctl's, and the build's.
NOT_SETTINGS = frozenset({"ESS_TOKEN", "ESS_TARGET", "ESS_NO_MYPYC", "ESS_JAVA_OPTS",
                          "ESS_PROTO_ROOT", "ESS_CLIENT_BUILD_TESTS",
                          "ESS_CLIENT_BUILD_PROGRAMS"})
# Settings that an empty ESS_* value would turn off: authentication and TLS (review 36s: a
# template's unset variable passed as ESS_AUTH__TOKENS_FILE="" turned authentication off).
SECURITY_KEYS = (("auth", "tokens_file"), ("server", "tls_cert"), ("server", "tls_key"),
                 ("server", "tls_client_ca"))
NOT_EMPTY = frozenset(f"{section}{ENV_DELIMITER}{key}" for section, key in SECURITY_KEYS)
SPELL_ALIKE = " (an ESS_* variable overrides the file's entry when spelled alike)"


def _scope_key(text: str) -> str:
    """A `[scopes]` key with its case-insensitive parts in upper case: the kind, and a
    symbol's id ("strategy:Momo" is "STRATEGY:Momo", "symbol:aapl" is "SYMBOL:AAPL");
    strategy and account ids keep their case. Parsing and validation come later. The
    kind is read as `Scope.parse` reads it, in ASCII letters with spaces around it let go
    (review 53a: "symbol :aapl" in the file and a variable for SYMBOL:AAPL were two
    entries, and the start refused); one that is not ASCII is left for the parse to refuse."""
    kind, colon, identifier = text.partition(":")
    kind = kind.strip(" \t").upper() if kind.isascii() else kind
    return kind + colon + (fold_symbol(identifier) if kind == "SYMBOL" else identifier)


# Each section keyed by ids, and how its keys are spelled for merging the file with ESS_*
# variables: entries that name one id the same way merge, field by field.
ID_KEYS = {("scopes",): _scope_key, ("limits", "symbols"): fold_symbol}


class CasedEnvSettingsSource(EnvSettingsSource):
    """ESS_* variables, matched case-insensitively but for the ids in their names.
    pydantic-settings lower-cases whole names, so `ESS_SCOPES__STRATEGY:Momo__...` set
    the breakers of strategy `momo` (another strategy: strategy and account ids are
    case-sensitive). Here each name is spelled the one way before it is read: the prefix
    `ESS_`, every part lower case but an id (`_scope_key`, symbols upper case), so a
    variable merges with the file's entry and with a section given whole as JSON by exact
    key. Two variables that spell one name two ways are refused: which one wins would be
    the order of the environment."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls, case_sensitive=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        spelled: dict[str, str | None] = {}
        written: dict[str, str] = {}
        sections = set(self.settings_cls.model_fields)
        keys = _field_names(self.settings_cls) | set(DEFAULT_RULES)
        for variable, value in super()._load_env_vars().items():
            _check_names_a_section(variable, sections, keys)
            name = _spelled(variable)
            if not value and name[len(ENV_PREFIX):] in NOT_EMPTY:
                raise InvalidConfig(variable, "is empty, which would turn authentication or"
                                    " TLS off: unset it (the file's setting stands), or turn"
                                    " it off in the file")
            if name in written:
                raise InvalidConfig(variable, f"{written[name]} and {variable} name one setting"
                                    " (names are not case-sensitive but for ids): set one")
            if value and value.lstrip().startswith("{"):
                _check_keys_once(variable, value)
            spelled[name], written[name] = value, variable
        for name, variable in written.items():
            _check_not_given_whole(name, variable, spelled, written)
        return spelled


def _check_not_given_whole(name: str, variable: str, spelled: Mapping[str, str | None],
                           written: Mapping[str, str]) -> None:
    """InvalidConfig if a variable sets what another, giving a section or a table whole
    as JSON, sets too (review 38c: `ESS_LIMITS='{"max_order_quantity": 5}'` beside
    `ESS_LIMITS__MAX_ORDER_QUANTITY=1000` started with 1000, the nested one winning
    whichever was looser). One setting an entry the JSON does not give merges with it
    (review 27). `name`: the variable's, spelled."""
    parts = name.split(ENV_DELIMITER)
    for n in range(1, len(parts)):
        whole = ENV_DELIMITER.join(parts[:n])
        if whole not in written:
            continue
        try:
            given: Any = json.loads(spelled[whole] or "")
        except ValueError:  # not JSON: pydantic-settings says so
            continue
        for part in parts[n:]:
            if not isinstance(given, dict) or part not in given:
                break
            given = given[part]
        else:
            raise InvalidConfig(variable, f"sets what {written[whole]} gives too: set it in"
                                " one place")


def _check_keys_once(variable: str, value: str) -> None:
    """InvalidConfig if a section or table given whole as JSON gives one key twice, as
    the TOML reader refuses in the file (review 38c: the last one won, silently). Not
    JSON: pydantic-settings says so."""
    def once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidConfig(variable, f"gives the key {key!r} twice: give it once")
            seen.add(key)
        return dict(pairs)

    with contextlib.suppress(ValueError):  # not JSON (InvalidConfig is no ValueError)
        json.loads(value, object_pairs_hook=once)


def _field_names(model: type[BaseModel]) -> set[str]:
    """The names of every setting, in every section, at any depth."""
    names = set(model.model_fields)
    for field in model.model_fields.values():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= _field_names(kind)
    return names


def _check_names_a_section(variable: str, sections: set[str], keys: set[str]) -> None:
    """InvalidConfig naming an ESS_* variable that looks meant for a setting but names
    none: its first part is not a section (`ESS_LIMITZ__MAX_ORDER_QUANTITY`), a section's
    name is joined to its key by one underscore (`ESS_RESET_REQUIRE_APPROVALS`), or it
    ends with the name of a setting (one of `keys`) so joined to anything else
    (`ESS_RESETS_REQUIRE_APPROVALS`). Review 34: each was ignored, and four-eyes or a
    limit an operator set was not in force. Other ESS_* variables (essctl's ESS_TOKEN and
    ESS_TARGET) are not settings."""
    if not variable.upper().startswith(ENV_PREFIX) or variable.upper() in NOT_SETTINGS:
        return
    rest = variable[len(ENV_PREFIX):]
    section = rest.split(ENV_DELIMITER)[0].lower()
    if ENV_DELIMITER in rest and section not in sections:
        raise InvalidConfig(variable, f"names no setting: {section!r} is not a section"
                            f" ({', '.join(sorted(sections))})")
    if ENV_DELIMITER in rest or section in sections:
        return
    meant = next((s for s in sorted(sections) if section.startswith(s + "_")), None)
    if meant is not None:
        raise InvalidConfig(variable, "names no setting: a section and its key are joined"
                            f" by {ENV_DELIMITER!r} ({ENV_PREFIX}{meant.upper()}"
                            f"{ENV_DELIMITER}{rest[len(meant) + 1:].upper()})")
    key = next((k for k in sorted(keys) if section == k or section.endswith("_" + k)), None)
    if key is not None:
        raise InvalidConfig(variable, f"names no setting: it ends with the setting {key!r},"
                            f" which is {ENV_PREFIX}<SECTION>{ENV_DELIMITER}{key.upper()}"
                            f" ({', '.join(sorted(sections))})")
    # Any other: no setting, and not one of ours (review 36s: ESS_REQUIRE_APPROVALS=2 and
    # ESS_TOKENS_FILE were accepted and ignored: four-eyes and authentication off).
    raise InvalidConfig(variable, f"names no setting: a setting is {ENV_PREFIX}<SECTION>"
                        f"{ENV_DELIMITER}<KEY> ({', '.join(sorted(sections))}); the other"
                        f" {ENV_PREFIX}* variables are {', '.join(sorted(NOT_SETTINGS))}")


def _spelled(variable: str) -> str:
    """The variable's name spelled the one way (ID_KEYS). The id in it must follow the id
    rules as written, as a key of the file must: upper-cased first, a compatibility
    character became a canonical id (review 30: ESS_LIMITS__SYMBOLS__\ufb00__... set the
    limits of symbol FF). InvalidConfig naming the variable if it does not."""
    if not variable.upper().startswith(ENV_PREFIX):
        return variable
    parts = variable[len(ENV_PREFIX):].split(ENV_DELIMITER)
    lowered = [part.lower() for part in parts]
    for path, key in ID_KEYS.items():
        if len(parts) > len(path) and tuple(lowered[:len(path)]) == path:
            written = parts[len(path)]
            try:
                if path == ("scopes",):
                    Scope.parse(written)
                else:
                    canonical_symbol(written, "symbol")
            except InvalidArgument as error:
                raise InvalidConfig(variable, str(error)) from None
            lowered[len(path)] = key(written)
    return ENV_PREFIX + ENV_DELIMITER.join(lowered)


class IdKeyedTomlSource(TomlConfigSettingsSource):
    """The TOML file, its id-keyed sections spelled as ESS_* variables are (ID_KEYS); two
    keys of the file that name one id are refused. How the file wrote each is kept in the
    settings class's `written_ids`, so that an error names the key as written."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        written: dict[tuple[str, str], str] = {}
        for path, key in ID_KEYS.items():
            *parents, name = path
            section: Any = data
            for parent in parents:
                section = section.get(parent) if isinstance(section, dict) else None
            if isinstance(section, dict) and isinstance(section.get(name), dict):
                keyed: dict[str, Any] = {}
                for text, value in section[name].items():
                    spelled = key(text) if isinstance(text, str) else text
                    if spelled in keyed:
                        raise InvalidConfig(f'{".".join(path)}."{shown(text)}"',
                                            f"names {spelled} again")
                    keyed[spelled], written[name, spelled] = value, text
                section[name] = keyed
        self.settings_cls.written_ids = written  # type: ignore[attr-defined]
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER,
                                      extra="forbid", populate_by_name=True)

    server: ServerSettings = ServerSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    store: StoreSettings = StoreSettings()
    watch: WatchSettings = WatchSettings()
    timers: TimerSettings = TimerSettings()
    auth: AuthSettings = AuthSettings()
    reset: ResetSettings = ResetSettings()
    alerts: AlertSettings = AlertSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    limits: LimitsModel = LimitsModel()
    policy: PoliciesModel = PoliciesModel()
    breakers: dict[str, BreakerSettingsModel] = Field(default_factory=dict)
    scopes: dict[str, ScopeOverrideModel] = Field(default_factory=dict)
    # (section, key as read) -> the key as the file wrote it (IdKeyedTomlSource)
    written_ids: ClassVar[dict[tuple[str, str], str]] = {}

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   **_: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        del env_settings  # lower-cases the ids in the variables' names
        return init_settings, CasedEnvSettingsSource(settings_cls), \
            IdKeyedTomlSource(settings_cls)

    def guard_config(self) -> GuardConfig:
        """The validated engine configuration. Raises InvalidConfig naming the key."""
        if self.reset.require_approvals > 1 and not self.authenticates():
            raise InvalidConfig("reset.require_approvals", "four-eyes resets need"
                                " authentication (auth.tokens_file or server.tls_client_ca):"
                                " without it no two operators can be told apart")
        approvals = ApprovalPolicy(self.reset.require_approvals, self.reset.approval_window_s)
        return GuardConfig(breakers=self._breakers(), limits=self._limits(),
                           policy=self._policies(), approvals=approvals).validate()

    def authenticates(self) -> bool:
        """Whether callers must prove who they are (bearer tokens or client certificates,
        both mapped to roles by the tokens file)."""
        return bool(self.auth.tokens_file)

    def check_security(self) -> None:
        """TLS files come in the right combination; a non-loopback address is served
        without authentication only when explicitly insecure. Raises InvalidConfig."""
        server = self.server
        if bool(server.tls_cert) != bool(server.tls_key):
            raise InvalidConfig("server.tls_key" if server.tls_cert else "server.tls_cert",
                                "TLS needs both tls_cert and tls_key")
        if server.tls_client_ca and not server.tls_cert:
            raise InvalidConfig("server.tls_client_ca", "mutual TLS needs tls_cert and tls_key")
        if server.tls_client_ca and not self.auth.tokens_file:
            raise InvalidConfig("server.tls_client_ca", "client certificates get their role"
                                " from the [certificates] of auth.tokens_file; set it")
        if server.listen and not is_loopback(server.listen) and not self.authenticates() \
                and not server.insecure:
            raise InvalidConfig("server.listen", f"{server.listen} is not a loopback address"
                                " (127.0.0.0/8, ::1 or localhost; another host name is"
                                " taken as not one) and authentication is off"
                                " (auth.tokens_file): anyone who can reach it could reset"
                                " trips; configure tokens, or pass"
                                " --insecure (server.insecure) to serve it anyway")
        fanout = self.watch.fanout_listen
        if fanout and not is_loopback(fanout) and not self.authenticates() \
                and not server.insecure:
            raise InvalidConfig("watch.fanout_listen", f"{fanout} is not a loopback address"
                                " and authentication is off (auth.tokens_file): anyone who"
                                " can reach it could watch every scope; configure tokens, or"
                                " pass --insecure (server.insecure) to serve it anyway")

    def check_serves(self) -> None:
        """Something to serve on (asked by `serve` and `check-config`: a guard built in
        process serves nothing), and telemetry that can be served as set. Raises
        InvalidConfig (review 40j: serve ended in a traceback)."""
        if not self.server.listen and not self.server.uds:
            raise InvalidConfig("server.listen", "and server.uds are both empty: nothing to"
                                " serve on")
        listen, metrics = self.server.listen, self.telemetry.metrics_listen
        if listen and metrics and _same_port(listen, metrics):
            raise InvalidConfig("telemetry.metrics_listen", f"{metrics} and server.listen"
                                f" {listen} take one port: one of them cannot be bound")
        fanout = self.watch.fanout_listen
        for key, other in (("server.listen", listen), ("telemetry.metrics_listen", metrics)):
            if fanout and other and _same_port(fanout, other):
                raise InvalidConfig("watch.fanout_listen", f"{fanout} and {key} {other} take"
                                    " one port: one of them cannot be bound")
        if self.watch.fanout_uds and self.watch.fanout_uds == self.server.uds:
            raise InvalidConfig("watch.fanout_uds", f"{self.server.uds} is server.uds too:"
                                " one of them cannot be bound")
        if metrics and not self.telemetry.enabled:  # review 44d: /healthz went unserved
            raise InvalidConfig("telemetry.metrics_listen", f"{metrics} is set and"
                                " telemetry.enabled is false, which serves no endpoint"
                                " (/metrics nor /healthz): unset one of them")
        if self.telemetry.enabled:
            otlp_exports(os.environ)

    def check_shutdown(self) -> None:
        """The hard bound on a stop leaves room for the drain and the grace. Raises
        InvalidConfig."""
        shutdown, grace_s = self.shutdown, self.server.grace_s
        if shutdown.timeout_s <= shutdown.drain_s + grace_s:
            raise InvalidConfig("shutdown.timeout_s", f"{shutdown.timeout_s:g} s leaves no"
                                " time to stop: it must exceed shutdown.drain_s"
                                f" ({shutdown.drain_s:g}) + server.grace_s ({grace_s:g})")

    def _breakers(self) -> BreakerSettings:
        defaults = _rules("breakers", self.breakers, DEFAULT_RULES)
        overrides = {}
        for key, override in self.scopes.items():
            text = self.written_ids.get(("scopes", key), key)
            try:
                scope = Scope.parse(text)
            except InvalidArgument as error:
                raise InvalidConfig(f'scopes."{shown(text)}"', shown(str(error))) from None
            if scope in overrides:  # "symbol:aapl" and "SYMBOL:AAPL": which would win?
                raise InvalidConfig(f'scopes."{shown(text)}"', f"names {scope} again{SPELL_ALIKE}")
            prefix = f'scopes."{shown(text)}".breakers'
            overrides[scope] = _rules(prefix, override.breakers, defaults, only_given=True)
        return BreakerSettings(defaults=defaults, overrides=overrides)

    def _limits(self) -> LimitSettings:
        given = self.limits.given()
        symbols = given.pop("symbols", {})
        base = LimitSettings()
        default = dataclasses.replace(base.default, **{
            k: given.pop(k) for k in _OrderLimitsModel.model_fields if k in given})
        by_symbol = {}
        for key, values in symbols.items():
            text = self.written_ids.get(("symbols", key), key)
            try:
                symbol = canonical_symbol(text, "symbol")
            except InvalidArgument as error:
                raise InvalidConfig(f'limits.symbols."{shown(text)}"', shown(str(error))) from None
            if symbol in by_symbol:
                raise InvalidConfig(f'limits.symbols."{shown(text)}"',
                                    f"names {symbol} again{SPELL_ALIKE}")
            for name, value in values.items():  # review 42f: 0 read as "none allowed"
                if value == 0 and getattr(default, name, 0):
                    raise InvalidConfig(
                        f'limits.symbols."{shown(text)}".{name}', "0 would turn off for this symbol"
                        " the limit [limits] sets for every other: to forbid the symbol,"
                        f" trip SYMBOL:{symbol}; to lift its limit, give a large value")
            by_symbol[symbol] = dataclasses.replace(default, **values)
        return dataclasses.replace(base, default=default, symbols=by_symbol, **given)

    def _policies(self) -> dict[ScopeKind, ResumePolicy]:
        shared = {k: v for k, v in self.policy.given().items()
                  if k in ("reset_cooldown_s", "rearm_delay_s")}
        base = dataclasses.replace(ResumePolicy(), **shared)
        policies = {}
        for kind in ScopeKind:
            per_kind = getattr(self.policy, "global_" if kind is ScopeKind.GLOBAL
                               else kind.name.lower())
            policies[kind] = dataclasses.replace(base, **per_kind.given()) if per_kind else base
        return policies


def is_loopback(listen: str) -> bool:
    """Whether a host:port only accepts connections from this machine. A host name other
    than localhost counts as not loopback: what it resolves to can change."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _rules(prefix: str, given: dict[str, BreakerSettingsModel],
           base: Any, only_given: bool = False) -> dict[str, BreakerRule]:
    unknown = sorted(set(given) - set(DEFAULT_RULES))
    if unknown:
        raise InvalidConfig(f"{prefix}.{unknown[0]}",
                            f"unknown breaker; known: {', '.join(DEFAULT_RULES)}")
    rules = {} if only_given else dict(base)
    for name, model in given.items():
        if model.window_s and name not in WINDOWED:  # review 36s: ignored (0: none, as is)
            raise InvalidConfig(f"{prefix}.{name}.window_s", "this breaker has no window"
                                f" (those with one: {', '.join(sorted(WINDOWED))})")
        if model.consecutive not in (None, 1) and name not in DEBOUNCED:  # known gap 2
            raise InvalidConfig(f"{prefix}.{name}.consecutive", "this breaker trips on the"
                                " event: it counts no consecutive breaches (those that do:"
                                f" {', '.join(sorted(DEBOUNCED))})")
        rules[name] = model.over(base[name])
        if not rules[name].enabled and model.given() and model.enabled is None:
            raise InvalidConfig(f"{prefix}.{name}", "sets a breaker that stays off (it is"  # 42f
                                " disabled where it is not set here): add enabled = true,"
                                " or enabled = false to keep it off")
    return rules


def load_settings(path: str | pathlib.Path | None = None, **overrides: Any) -> Settings:
    """Read the file (if any), then ESS_* variables, then explicit overrides (flags).

    Raises InvalidConfig naming the first bad key; nothing is started on a bad file.
    """
    try:
        if path is not None and not pathlib.Path(path).is_file():
            raise InvalidConfig("--config", f"no such file: {path}")
    except OSError as error:  # review 37d: a directory that cannot be read, a traceback
        raise InvalidConfig("--config", f"cannot be read: {error}") from None

    for section, key in SECURITY_KEYS:  # review 42f: "" from a flag turned off what an
        if overrides.get(section, {}).get(key) == "":  # ESS_* variable turned on
            raise InvalidConfig(f"{section}.{key}", "a flag given \"\" would turn"
                                " authentication or TLS off whatever the file or an"
                                f" {ENV_PREFIX}* variable sets: leave the flag out")

    class FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    try:
        settings: Settings = FromFile(**overrides)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        variable = _env_variable(first["loc"])
        origin = f" (from environment variable {variable})" \
            if variable and first["loc"][0] not in overrides else ""
        raise InvalidConfig(key, f"{first['msg']}{origin}") from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidConfig(str(path), f"not valid TOML: {error}") from None
    except SettingsError as error:  # e.g. ESS_LIMITS=... that is not JSON
        raise _source_error(error) from None
    except (ValueError, OSError, RecursionError) as error:  # e.g. a file that is not
        raise InvalidConfig(str(path), f"cannot be read: {error!r}") from None  # UTF-8
    _refuse_emptied(path, settings)
    settings.guard_config()
    settings.check_security()
    settings.check_shutdown()
    return settings


def _refuse_emptied(path: str | pathlib.Path | None, settings: Settings) -> None:
    """InvalidConfig if the file turns authentication or TLS on and an override (an ESS_*
    section given as JSON) empties it (review 36t: `ESS_AUTH='{"tokens_file": ""}'` and
    `--tokens-file ""` turned the file's authentication off, check-config OK; a flag
    given "" is refused whatever sets the key, in load_settings)."""
    if path is None:
        return
    written = tomllib.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    for section, key in SECURITY_KEYS:
        table = written.get(section)  # not a table: the file turned nothing on (36v)
        if isinstance(table, dict) and table.get(key) \
                and not getattr(getattr(settings, section), key):
            raise InvalidConfig(f"{section}.{key}", "the file sets it and an override (an"
                                f" {ENV_PREFIX}* variable or a flag) empties it, which would"
                                " turn authentication or TLS off: unset the override, or"
                                " turn it off in the file")


def _env_variable(loc: Sequence[str | int]) -> str | None:
    """The ESS_* variable that sets the key at `loc`, if one is set (names are matched
    case-insensitively, as the settings source does)."""
    wanted = (ENV_PREFIX + ENV_DELIMITER.join(str(part) for part in loc)).lower()
    return next((name for name in os.environ if name.lower() == wanted), None)


def _source_error(error: SettingsError) -> InvalidConfig:
    """A settings source could not read a value: name the variable when it is the
    environment's, and never blame the TOML file for it."""
    cause = f": {error.__cause__}" if error.__cause__ is not None else ""
    found = re.search(r'field "([^"]+)" from source "([^"]+)"', str(error))
    if found and found.group(2).endswith("EnvSettingsSource"):
        field = found.group(1)
        variable = _env_variable([field]) or f"{ENV_PREFIX}{field.upper()}"
        return InvalidConfig(variable, f"environment (ESS_*) value for {field!r} is not"
                             f" valid (a whole section must be JSON){cause}")
    return InvalidConfig("settings", f"{error}{cause}")
