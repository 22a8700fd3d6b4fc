"""Everything the engine is configured with, validated once; errors name the key."""

from __future__ import annotations

import math

from collections.abc import Mapping
from dataclasses import dataclass, field

from .approvals import ApprovalPolicy
from .breakers import HEALTH_CRITICAL, WINDOWED, Breaker, BreakerRule, BreakerSettings
from .errors import InvalidArgument, InvalidConfig
from .limits import LimitSettings, SymbolLimits
from .orders import MAX_PRICE
from .scopes import Scope, ScopeKind, make_scope

# Breakers that trip on one event, with no threshold to reach: a threshold other than 1
# would be taken and do nothing (review 33: unchecked_order's threshold 3 tripped on the
# first unchecked fill all the same).
ONE_EVENT = frozenset({Breaker.DATA_FEED_STALE, Breaker.DATA_FEED_CORRUPT,
                       Breaker.HEARTBEAT_LOST, Breaker.UNCHECKED_ORDER})

DRAWDOWN_ORDER = (Breaker.DAILY_DRAWDOWN_PCT, Breaker.WEEKLY_DRAWDOWN_PCT,
                  Breaker.TOTAL_DRAWDOWN_PCT)


@dataclass(frozen=True)
class ResumePolicy:
    """How a tripped scope resumes: reset refused for reset_cooldown_s after the trip;
    after an accepted reset, COOLING_DOWN for rearm_delay_s, then ARMED."""

    reset_cooldown_s: float = 15 * 60
    rearm_delay_s: float = 0.0


@dataclass(frozen=True)
class GuardConfig:
    breakers: BreakerSettings = field(default_factory=BreakerSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    policy: Mapping[ScopeKind, ResumePolicy] = field(default_factory=dict)
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)

    def policy_for(self, kind: ScopeKind) -> ResumePolicy:
        return self.policy.get(kind, ResumePolicy())

    def validate(self) -> GuardConfig:
        """Raise InvalidConfig naming the first wrong key; return self when all is well."""
        _validate_rules("breakers", self.breakers.defaults)
        for scope, rules in self.breakers.overrides.items():
            _check_canonical(f'scopes."{scope}"', scope)
            effective = {**self.breakers.defaults, **rules}
            _validate_rules(f'scopes."{scope}".breakers', effective, only=set(rules))
            if Breaker.UNCHECKED_ORDER in rules and scope.kind is not ScopeKind.ACCOUNT:
                # review 34: taken, it turned nothing off, and said nothing
                raise InvalidConfig(f'scopes."{scope}".breakers.{Breaker.UNCHECKED_ORDER}',
                                    "trips accounts only (ACCOUNT:<id>): set on another"
                                    " scope it would do nothing")
        _validate_limits(self.limits)
        for kind, policy in self.policy.items():
            key = f"policy.{kind.name.lower()}"
            _duration(f"{key}.reset_cooldown_s", policy.reset_cooldown_s, zero=True)
            _duration(f"{key}.rearm_delay_s", policy.rearm_delay_s, zero=True)
        if self.approvals.required not in (1, 2):
            raise InvalidConfig("reset.require_approvals", "must be 1 or 2")
        _duration("reset.approval_window_s", self.approvals.window_s)
        return self


# Durations (windows, cooldowns, delays) are at most a year: more is a mistake, and would
# overflow the timestamps and milliseconds the contract carries them in.
MAX_DURATION_S = 366 * 86_400.0
MIN_WINDOW_S = 0.001  # a breaker's window: a clock reading resolves it
# A threshold beyond this can never be reached: it would turn its breaker off unseen.
MAX_THRESHOLD = 1e12
# Samples in a row a breaker may ask for: beyond this it would never fire in practice (and
# the contract carries the count in 32 bits).
MAX_CONSECUTIVE = 1_000_000


def _check_canonical(key: str, scope: Scope) -> None:
    """InvalidConfig naming `key` unless `scope` is spelled as orders and requests are
    (review 38c: a limit keyed "aapl" through the domain's API was never applied, orders
    being for AAPL; the settings loader spells keys so)."""
    try:
        canonical = make_scope(scope.kind, scope.id)
    except InvalidArgument as error:
        raise InvalidConfig(key, str(error).removeprefix(f"{error.field}: ")) from None
    if canonical != scope:
        raise InvalidConfig(key, f"the id is spelled {canonical.id!r} in orders and requests:"
                            " key it so")


def _duration(key: str, value: float, zero: bool = False) -> None:
    """A finite duration of (0 or) more than 0 seconds and at most MAX_DURATION_S; NaN and
    infinities (TOML has both) fail."""
    low_ok = value >= 0 if zero else value > 0
    if not (low_ok and value <= MAX_DURATION_S):
        raise InvalidConfig(key, f"must be a finite number of seconds {'>=' if zero else '>'} 0"
                            f" and at most {MAX_DURATION_S:g} (a year), got {value!r}")


def _validate_rules(prefix: str, rules: Mapping[str, BreakerRule],
                    only: set[str] | None = None) -> None:
    for name, rule in rules.items():
        if only is not None and name not in only:
            continue
        if not 0 < rule.threshold <= MAX_THRESHOLD:
            raise InvalidConfig(f"{prefix}.{name}.threshold", f"must be a finite number > 0"
                                f" and at most {MAX_THRESHOLD:g} (turn a breaker off with"
                                f" enabled = false), got {rule.threshold!r}")
        if name in ONE_EVENT and rule.threshold != 1:
            raise InvalidConfig(f"{prefix}.{name}.threshold", "must be 1: this breaker trips"
                                " on one event (a lapse, a report, a fill; data_feed_stale's"
                                f" limit is its window_s), got {rule.threshold!r}")
        if name == Breaker.UNCHECKED_ORDER and rule.auto_rearm:
            raise InvalidConfig(f"{prefix}.{name}.auto_rearm", "must be false: an order"
                                " sent past the guard is resumed from by hand only")
        if name == Breaker.SYSTEM_HEALTH and rule.threshold > HEALTH_CRITICAL:
            raise InvalidConfig(f"{prefix}.{name}.threshold", "must be at most"
                                f" {HEALTH_CRITICAL:g} (critical): system health is reported"
                                f" as 0, 1 or 2, so {rule.threshold:g} is never reached")
        # Ignored by the other breakers, but shown by GetState: never a value it cannot show.
        _duration(f"{prefix}.{name}.window_s", rule.window_s, zero=name not in WINDOWED)
        if name in WINDOWED and rule.window_s < MIN_WINDOW_S:  # review 42d: below ~1e-7 s,
            raise InvalidConfig(f"{prefix}.{name}.window_s",  # now - window_s == now, and
                                f"must be at least {MIN_WINDOW_S:g} s, got"  # a report
                                f" {rule.window_s!r}")  # left the window as it came
        if not 1 <= rule.consecutive <= MAX_CONSECUTIVE:
            raise InvalidConfig(f"{prefix}.{name}.consecutive",
                                f"must be from 1 to {MAX_CONSECUTIVE:,}, got {rule.consecutive}")
    for lower, upper in zip(DRAWDOWN_ORDER, DRAWDOWN_ORDER[1:]):
        if rules[lower].enabled and rules[upper].enabled and \
                not rules[lower].threshold < rules[upper].threshold:
            raise InvalidConfig(f"{prefix}.{upper}.threshold",
                                f"must be greater than {lower} ({rules[lower].threshold:g})")


def _validate_limits(limits: LimitSettings) -> None:
    exposure = (("max_symbol_exposure_pct", limits.max_symbol_exposure_pct),
                ("max_strategy_exposure_pct", limits.max_strategy_exposure_pct),
                ("max_portfolio_exposure_pct", limits.max_portfolio_exposure_pct))
    for (name, value), (bigger, bigger_value) in zip(exposure, exposure[1:]):
        if not 0 < value <= bigger_value < math.inf:
            raise InvalidConfig(f"limits.{name}", f"must be > 0 and <= {bigger} ({bigger_value:g})")
    if not 0 < limits.max_portfolio_exposure_pct < math.inf:
        raise InvalidConfig("limits.max_portfolio_exposure_pct", "must be a finite number > 0")
    if limits.max_orders_per_second < 0:
        raise InvalidConfig("limits.max_orders_per_second", "must be >= 0 (0 = off)")
    if limits.max_open_positions < 1:
        raise InvalidConfig("limits.max_open_positions", "must be >= 1")
    for name in ("max_working_orders_per_account", "max_working_orders_per_strategy"):
        if getattr(limits, name) < 0:
            raise InvalidConfig(f"limits.{name}", "must be >= 0 (0 = off)")
    if limits.duplicate_identical_orders in (1,) or limits.duplicate_identical_orders < 0:
        raise InvalidConfig("limits.duplicate_identical_orders", "must be 0 (off) or >= 2:"
                            " the Nth identical order within the window is a duplicate")
    for name in ("duplicate_window_s", "order_id_retention_s"):
        _duration(f"limits.{name}", getattr(limits, name))
    if limits.max_remembered_orders < 1000:
        raise InvalidConfig("limits.max_remembered_orders", "must be >= 1000")
    if limits.max_snapshot_entries < 1:
        raise InvalidConfig("limits.max_snapshot_entries", "must be >= 1")
    _duration("limits.idle_evidence_s", limits.idle_evidence_s)
    if limits.max_scopes_with_evidence < 100:
        raise InvalidConfig("limits.max_scopes_with_evidence", "must be >= 100")
    for symbol in limits.symbols:
        _check_canonical(f'limits.symbols."{symbol}"', Scope(ScopeKind.SYMBOL, symbol))
    symbols: dict[str, SymbolLimits] = {"default": limits.default, **limits.symbols}
    for symbol, symbol_limits in symbols.items():
        key = "limits" if symbol == "default" else f'limits.symbols."{symbol}"'
        for name in ("max_order_quantity", "max_order_notional", "price_band_pct",
                     "reference_price"):
            if not 0 <= getattr(symbol_limits, name) < math.inf:  # NaN would turn it off
                raise InvalidConfig(f"{key}.{name}", "must be a finite number >= 0 (0 = off)")
        if symbol_limits.reference_price > MAX_PRICE:  # a leg valued at it must stay finite
            raise InvalidConfig(f"{key}.reference_price", f"must be at most {MAX_PRICE:g},"
                                " as a price is")
