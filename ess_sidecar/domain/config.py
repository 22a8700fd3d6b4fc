"""Everything the engine is configured with, validated once; errors name the key."""

from __future__ import annotations

import math

from collections.abc import Mapping
from dataclasses import dataclass, field

from .approvals import ApprovalPolicy
from .breakers import WINDOWED, BreakerRule, BreakerSettings
from .errors import InvalidConfig
from .limits import LimitSettings, SymbolLimits
from .scopes import ScopeKind

DRAWDOWN_ORDER = ("daily_drawdown_pct", "weekly_drawdown_pct", "total_drawdown_pct")


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
            effective = {**self.breakers.defaults, **rules}
            _validate_rules(f'scopes."{scope}".breakers', effective, only=set(rules))
        _validate_limits(self.limits)
        for kind, policy in self.policy.items():
            key = f"policy.{kind.name.lower()}"
            if not policy.reset_cooldown_s >= 0:  # NaN too: TOML has nan
                raise InvalidConfig(f"{key}.reset_cooldown_s", "must be >= 0")
            if not policy.rearm_delay_s >= 0:
                raise InvalidConfig(f"{key}.rearm_delay_s", "must be >= 0")
        if self.approvals.required not in (1, 2):
            raise InvalidConfig("reset.require_approvals", "must be 1 or 2")
        if not self.approvals.window_s > 0:
            raise InvalidConfig("reset.approval_window_s", "must be > 0")
        return self


def _validate_rules(prefix: str, rules: Mapping[str, BreakerRule],
                    only: set[str] | None = None) -> None:
    for name, rule in rules.items():
        if only is not None and name not in only:
            continue
        if not rule.threshold > 0:
            raise InvalidConfig(f"{prefix}.{name}.threshold", "must be > 0")
        if name == "unchecked_order" and rule.auto_rearm:
            raise InvalidConfig(f"{prefix}.{name}.auto_rearm", "must be false: an order"
                                " sent past the guard is resumed from by hand only")
        if name in WINDOWED and not rule.window_s > 0:
            raise InvalidConfig(f"{prefix}.{name}.window_s", "must be > 0")
        if rule.consecutive < 1:
            raise InvalidConfig(f"{prefix}.{name}.consecutive", "must be >= 1")
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
        if not 0 < value <= bigger_value:
            raise InvalidConfig(f"limits.{name}", f"must be > 0 and <= {bigger} ({bigger_value:g})")
    if not limits.max_portfolio_exposure_pct > 0:
        raise InvalidConfig("limits.max_portfolio_exposure_pct", "must be > 0")
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
        if not 0 < getattr(limits, name) < math.inf:
            raise InvalidConfig(f"limits.{name}", "must be a finite number > 0")
    if limits.max_remembered_orders < 1000:
        raise InvalidConfig("limits.max_remembered_orders", "must be >= 1000")
    symbols: dict[str, SymbolLimits] = {"default": limits.default, **limits.symbols}
    for symbol, symbol_limits in symbols.items():
        key = "limits" if symbol == "default" else f'limits.symbols."{symbol}"'
        for name in ("max_order_quantity", "max_order_notional", "price_band_pct",
                     "reference_price"):
            if not 0 <= getattr(symbol_limits, name) < math.inf:  # NaN would turn it off
                raise InvalidConfig(f"{key}.{name}", "must be a finite number >= 0 (0 = off)")
