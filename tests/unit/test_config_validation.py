"""Threshold sets are validated at load; an invalid one refuses to start, naming the key."""

from __future__ import annotations

import dataclasses
import math

import pytest

from ess_sidecar.domain.breakers import DEFAULT_RULES, BreakerRule, BreakerSettings
from ess_sidecar.domain.config import GuardConfig, ResumePolicy
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.errors import InvalidConfig
from ess_sidecar.domain.limits import LimitSettings, SymbolLimits
from ess_sidecar.domain.scopes import Scope, ScopeKind

from .conftest import account, rules, strategy, symbol


def key_of(config: GuardConfig) -> str:
    with pytest.raises(InvalidConfig) as raised:
        config.validate()
    assert str(raised.value).startswith(raised.value.key + ": ")
    return raised.value.key


def breakers(**changes) -> GuardConfig:
    return GuardConfig(breakers=BreakerSettings(defaults=rules(**changes)))


def limits(**changes) -> GuardConfig:
    return GuardConfig(limits=dataclasses.replace(LimitSettings(), **changes))


def test_design_defaults_are_valid():
    config = GuardConfig()
    assert config.validate() is config
    assert config.policy_for(ScopeKind.GLOBAL) == ResumePolicy(15 * 60, 0.0)


@pytest.mark.parametrize("changes, key", [
    ({"daily_drawdown_pct": {"threshold": 10}}, "breakers.weekly_drawdown_pct.threshold"),
    ({"daily_drawdown_pct": {"threshold": 12}}, "breakers.weekly_drawdown_pct.threshold"),
    ({"weekly_drawdown_pct": {"threshold": 20}}, "breakers.total_drawdown_pct.threshold"),
    ({"total_drawdown_pct": {"threshold": 8}}, "breakers.total_drawdown_pct.threshold"),
], ids=repr)
def test_drawdowns_must_rise_daily_weekly_total(changes, key):
    assert key_of(breakers(**changes)) == key


def test_drawdown_order_ignores_a_disabled_drawdown():
    breakers(weekly_drawdown_pct={"enabled": False, "threshold": 1}).validate()


def test_scope_override_is_checked_against_the_defaults_it_overrides():
    override = {"daily_drawdown_pct": BreakerRule(15.0)}
    config = GuardConfig(breakers=BreakerSettings(overrides={symbol(): override}))
    assert key_of(config) == 'scopes."SYMBOL:BTC-USD".breakers.weekly_drawdown_pct.threshold'


@pytest.mark.parametrize("changes, key", [
    ({"api_errors": {"threshold": 0}}, "breakers.api_errors.threshold"),
    ({"open_loss_pct": {"threshold": -1}}, "breakers.open_loss_pct.threshold"),
    ({"open_loss_pct": {"threshold": math.nan}}, "breakers.open_loss_pct.threshold"),
    ({"api_errors": {"window_s": 0}}, "breakers.api_errors.window_s"),
    ({"failed_trades": {"window_s": -60}}, "breakers.failed_trades.window_s"),
    ({"data_feed_stale": {"window_s": math.nan}}, "breakers.data_feed_stale.window_s"),
    # Review 42d: a report left a window this short as it came (now - window_s == now).
    ({"api_errors": {"window_s": 1e-7}}, "breakers.api_errors.window_s"),
    ({"data_feed_stale": {"window_s": 0.0009}}, "breakers.data_feed_stale.window_s"),
    ({"daily_drawdown_pct": {"consecutive": 0}}, "breakers.daily_drawdown_pct.consecutive"),
    # Values GetState could not show, or a breaker that could never fire:
    ({"daily_drawdown_pct": {"window_s": -5}}, "breakers.daily_drawdown_pct.window_s"),
    ({"open_loss_pct": {"window_s": 1e300}}, "breakers.open_loss_pct.window_s"),
    ({"daily_drawdown_pct": {"consecutive": 2**40}}, "breakers.daily_drawdown_pct.consecutive"),
    ({"system_health": {"threshold": 3}}, "breakers.system_health.threshold"),
    # One event trips these: a threshold would be taken and do nothing (review 33).
    ({"unchecked_order": {"threshold": 3}}, "breakers.unchecked_order.threshold"),
    ({"data_feed_corrupt": {"threshold": 2}}, "breakers.data_feed_corrupt.threshold"),
    ({"heartbeat_lost": {"threshold": 0.5}}, "breakers.heartbeat_lost.threshold"),
    ({"data_feed_stale": {"threshold": 5}}, "breakers.data_feed_stale.threshold"),
], ids=repr)
def test_thresholds_windows_and_counts_must_be_positive(changes, key):
    assert key_of(breakers(**changes)) == key


def test_scope_override_keys_name_the_scope():
    override = {"api_errors": BreakerRule(3, window_s=0)}
    config = GuardConfig(breakers=BreakerSettings(overrides={symbol(): override}))
    assert key_of(config) == 'scopes."SYMBOL:BTC-USD".breakers.api_errors.window_s'


def test_an_unchecked_order_override_on_a_scope_that_is_not_an_account_is_refused():
    """Review 34: it trips accounts only; set on a strategy it was taken and did nothing."""
    override = {"unchecked_order": BreakerRule(1, enabled=False)}
    config = GuardConfig(breakers=BreakerSettings(overrides={strategy(): override}))
    assert key_of(config) == f'scopes."{strategy()}".breakers.unchecked_order'
    GuardConfig(breakers=BreakerSettings(overrides={account(): override})).validate()


@pytest.mark.parametrize("changes, key", [
    ({"max_symbol_exposure_pct": 61}, "limits.max_symbol_exposure_pct"),
    ({"max_strategy_exposure_pct": 95}, "limits.max_strategy_exposure_pct"),
    ({"max_portfolio_exposure_pct": 50}, "limits.max_strategy_exposure_pct"),
    ({"max_symbol_exposure_pct": 0}, "limits.max_symbol_exposure_pct"),
    ({"max_portfolio_exposure_pct": math.nan}, "limits.max_strategy_exposure_pct"),
    ({"max_orders_per_second": -1}, "limits.max_orders_per_second"),
    ({"max_open_positions": 0}, "limits.max_open_positions"),
    ({"max_snapshot_entries": 0}, "limits.max_snapshot_entries"),
    ({"default": SymbolLimits(max_order_quantity=-1)}, "limits.max_order_quantity"),
    ({"default": SymbolLimits(price_band_pct=math.nan)}, "limits.price_band_pct"),
    ({"symbols": {"ETH": SymbolLimits(max_order_notional=math.nan)}},
     'limits.symbols."ETH".max_order_notional'),
    # review 20: a leg valued at 1e300 made the sums inf, then NaN, and NaN passed
    ({"symbols": {"ETH": SymbolLimits(reference_price=1e300)}},
     'limits.symbols."ETH".reference_price'),
    # review 38c: orders are for ETH, so the limit keyed otherwise was never applied
    ({"symbols": {"eth": SymbolLimits(max_order_quantity=5)}}, 'limits.symbols."eth"'),
    ({"symbols": {"ETH ": SymbolLimits(max_order_quantity=5)}}, 'limits.symbols."ETH "'),
], ids=repr)
def test_limits_are_validated_symbol_at_most_strategy_at_most_portfolio(changes, key):
    assert key_of(limits(**changes)) == key


def test_equal_exposure_limits_are_allowed():
    limits(max_symbol_exposure_pct=50, max_strategy_exposure_pct=50,
           max_portfolio_exposure_pct=50).validate()


@pytest.mark.parametrize("policy, key", [
    (ResumePolicy(reset_cooldown_s=-1), "policy.symbol.reset_cooldown_s"),
    (ResumePolicy(reset_cooldown_s=math.nan), "policy.symbol.reset_cooldown_s"),
    (ResumePolicy(rearm_delay_s=-1), "policy.symbol.rearm_delay_s"),
    (ResumePolicy(rearm_delay_s=math.nan), "policy.symbol.rearm_delay_s"),
], ids=repr)
def test_resume_policy_timers_must_not_be_negative(policy, key):
    assert key_of(GuardConfig(policy={ScopeKind.SYMBOL: policy})) == key


def test_engine_refuses_to_start_with_an_invalid_config():
    with pytest.raises(InvalidConfig):
        GuardEngine(breakers(weekly_drawdown_pct={"threshold": 3}))


def test_default_breakers_match_the_design():
    expected = {"daily_drawdown_pct": (5, 0), "weekly_drawdown_pct": (10, 0),
                "total_drawdown_pct": (20, 0), "open_loss_pct": (10, 0),
                "execution_errors": (5, 900), "api_errors": (3, 60),
                "order_failures": (10, 300), "failed_trades": (5, 3600),
                "consecutive_losses": (10, 0), "stop_loss_hits": (3, 3600),
                "data_feed_stale": (1, 30)}
    for name, (threshold, window) in expected.items():
        rule = DEFAULT_RULES[name]
        assert (rule.threshold, rule.window_s, rule.consecutive, rule.auto_rearm) == (
            threshold, window, 1, False), name
    defaults = LimitSettings()
    assert (defaults.max_orders_per_second, defaults.max_symbol_exposure_pct,
            defaults.max_strategy_exposure_pct, defaults.max_portfolio_exposure_pct,
            defaults.max_open_positions) == (100, 30, 60, 90, 10)


@pytest.mark.parametrize("scope", [Scope(ScopeKind.SYMBOL, "aapl"),
                                   Scope(ScopeKind.STRATEGY, "momo\u200b")], ids=str)
def test_a_breaker_override_for_a_scope_spelled_otherwise_than_requests_is_refused(scope):
    """Review 38c: the domain's API took `SYMBOL:aapl`, which no order or report names."""
    config = GuardConfig(breakers=BreakerSettings(defaults=rules(), overrides={scope: {}}))
    assert key_of(config) == f'scopes."{scope}"'
