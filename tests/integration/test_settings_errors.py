"""A bad setting is reported where it came from: the TOML file or an ESS_* variable."""

from __future__ import annotations

import pytest

from ess_sidecar.domain.errors import InvalidConfig
from ess_sidecar.domain.scopes import Scope, ScopeKind
from ess_sidecar.settings import load_settings


def test_bad_nested_environment_value_names_the_key_and_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("ESS_LIMITS__MAX_ORDERS_PER_SECOND", "lots")
    with pytest.raises(InvalidConfig) as raised:
        load_settings(None)
    message = str(raised.value)
    assert raised.value.key == "limits.max_orders_per_second"
    assert "ESS_LIMITS__MAX_ORDERS_PER_SECOND" in message
    assert "TOML" not in message


def test_bad_environment_value_with_a_valid_file_does_not_blame_the_file(
        monkeypatch, tmp_path) -> None:
    config = tmp_path / "ess.toml"
    config.write_text("[limits]\nmax_orders_per_second = 50\n")
    monkeypatch.setenv("ESS_LIMITS", "lots")  # a whole section must be JSON
    with pytest.raises(InvalidConfig) as raised:
        load_settings(config)
    message = str(raised.value)
    assert "TOML" not in message and str(config) not in message
    assert "ESS_LIMITS" in message and "environment (ESS_*)" in message


def test_toml_syntax_error_names_the_file(tmp_path) -> None:
    config = tmp_path / "ess.toml"
    config.write_text("[limits\nmax_orders_per_second = 50\n")
    with pytest.raises(InvalidConfig) as raised:
        load_settings(config)
    assert str(raised.value).startswith(f"{config}: not valid TOML: ")


def test_file_that_is_not_text_is_reported_not_raised_raw(tmp_path) -> None:
    config = tmp_path / "ess.toml"
    config.write_bytes(b"\xff\xfe[limits]\n")
    with pytest.raises(InvalidConfig) as raised:
        load_settings(config)
    assert str(raised.value).startswith(f"{config}: ")


def test_bad_value_in_the_file_names_the_key_without_blaming_the_environment(
        tmp_path) -> None:
    config = tmp_path / "ess.toml"
    config.write_text('[limits]\nmax_orders_per_second = "lots"\n')
    with pytest.raises(InvalidConfig) as raised:
        load_settings(config)
    assert raised.value.key == "limits.max_orders_per_second"
    assert "environment" not in str(raised.value)


def test_an_environment_override_keeps_the_case_of_the_ids_in_its_name(
        monkeypatch, tmp_path) -> None:
    """The variables' names were lower-cased whole: an override of [limits.symbols.AAPL]
    refused to start as naming AAPL twice (left alone after review 21), and a breaker
    override of strategy Momo set strategy momo's instead, silently (strategy ids are
    case-sensitive). Each now overrides the file's entry it names, field by field."""
    config = tmp_path / "ess.toml"
    config.write_text('[limits.symbols.AAPL]\nmax_order_quantity = 100\nprice_band_pct = 3\n'
                      '[scopes."STRATEGY:Momo".breakers.daily_drawdown_pct]\n'
                      'threshold = 4.0\nwindow_s = 60\n')
    monkeypatch.setenv("ESS_SCOPES__STRATEGY:Momo__BREAKERS__DAILY_DRAWDOWN_PCT__THRESHOLD",
                       "2.0")
    monkeypatch.setenv("ESS_LIMITS__SYMBOLS__AAPL__MAX_ORDER_QUANTITY", "5")
    config = load_settings(config).guard_config()
    momo = config.breakers.overrides[Scope(ScopeKind.STRATEGY, "Momo")]
    assert (momo["daily_drawdown_pct"].threshold, momo["daily_drawdown_pct"].window_s) \
        == (2.0, 60.0)
    assert set(config.breakers.overrides) == {Scope(ScopeKind.STRATEGY, "Momo")}
    aapl = config.limits.for_symbol("AAPL")
    assert (aapl.max_order_quantity, aapl.price_band_pct) == (5.0, 3.0)


def test_environment_overrides_of_one_id_spelled_two_ways_are_refused(monkeypatch) -> None:
    monkeypatch.setenv("ESS_SCOPES__STRATEGY:Momo__BREAKERS__DAILY_DRAWDOWN_PCT__THRESHOLD",
                       "2.0")
    monkeypatch.setenv("ESS_SCOPES__STRATEGY:MOMO__BREAKERS__DAILY_DRAWDOWN_PCT__WINDOW_S",
                       "60")
    with pytest.raises(InvalidConfig) as raised:
        load_settings(None)
    assert raised.value.key == "scopes"
    assert "STRATEGY:Momo" in str(raised.value) and "STRATEGY:MOMO" in str(raised.value)


def test_an_environment_override_spelled_otherwise_than_the_file_is_refused(
        monkeypatch, tmp_path) -> None:
    config = tmp_path / "ess.toml"
    config.write_text("[limits.symbols.aapl]\nmax_order_quantity = 100\n")
    monkeypatch.setenv("ESS_LIMITS__SYMBOLS__AAPL__MAX_ORDER_QUANTITY", "5")
    with pytest.raises(InvalidConfig, match="names AAPL again.*spelled alike"):
        load_settings(config).guard_config()
