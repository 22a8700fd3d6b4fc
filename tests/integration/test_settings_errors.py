"""A bad setting is reported where it came from: the TOML file or an ESS_* variable."""

from __future__ import annotations

import pytest

from ess_sidecar.domain.errors import InvalidConfig
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
