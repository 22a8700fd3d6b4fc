"""A bad setting is reported where it came from: the TOML file or an ESS_* variable."""

from __future__ import annotations

import pytest

from ess_sidecar.domain.errors import InvalidConfig
from ess_sidecar.domain.ids import canonical_symbol
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.settings import load_settings


def test_bad_nested_environment_value_names_the_key_and_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("ESS_LIMITS__MAX_ORDERS_PER_SECOND", "lots")
    with pytest.raises(InvalidConfig) as raised:
        load_settings(None)
    message = str(raised.value)
    assert raised.value.key == "limits.max_orders_per_second"
    assert "ESS_LIMITS__MAX_ORDERS_PER_SECOND" in message
    assert "TOML" not in message


@pytest.mark.parametrize("variable", [
    "ESS_RESET_REQUIRE_APPROVALS", "ESS_RESETS__REQUIRE_APPROVALS",
    "ESS_LIMIT__MAX_ORDER_QUANTITY", "ESS_LIMITS_MAX_ORDER_QUANTITY", "ess_limitz__x",
    # a section misspelled and joined by one underscore (review 34g)
    "ESS_RESETS_REQUIRE_APPROVALS", "ESS_LIMIT_MAX_ORDER_QUANTITY",
    # no section at all (review 36s: each was accepted and ignored)
    "ESS_REQUIRE_APPROVALS", "ESS_TOKENS_FILE", "ESS_MAX_ORDERS_PER_SECOND", "ESS_THRESHOLD",
    "ESS_DAILY_DRAWDOWN_PCT", "ESS_LIMIT_MAX_ORDERS", "ESS_BREAKER_DAILY_DRAWDOWN_PCT_THRESHOLD"])
def test_a_variable_meant_for_a_setting_that_names_none_is_refused(monkeypatch,
                                                                  variable) -> None:
    """Review 34: each was ignored, and four-eyes or a limit the operator set was not
    in force; a typo in a key inside a section was refused already."""
    monkeypatch.setenv(variable, "2")
    with pytest.raises(InvalidConfig) as raised:
        load_settings(None)
    assert raised.value.key == variable and "names no setting" in str(raised.value)


@pytest.mark.parametrize("variable", ["ESS_AUTH__TOKENS_FILE", "ESS_SERVER__TLS_CERT",
                                      "ESS_SERVER__TLS_CLIENT_CA"])
def test_an_empty_variable_never_turns_authentication_or_tls_off(monkeypatch, tmp_path,
                                                                  variable) -> None:
    """Review 36s: a template's unset variable passed as ESS_AUTH__TOKENS_FILE="" turned
    the file's authentication off, and check-config said OK."""
    monkeypatch.setenv(variable, "")
    with pytest.raises(InvalidConfig) as raised:
        load_settings(None)
    assert raised.value.key == variable and "is empty" in str(raised.value)


@pytest.mark.parametrize("how", ["json-section", "flag"])
def test_an_override_never_empties_the_files_authentication_or_tls(monkeypatch, tmp_path,
                                                                   how) -> None:
    """Review 36t: ESS_AUTH='{"tokens_file": ""}' (a whole section as JSON) and
    --tokens-file "" turned the file's authentication off, check-config saying OK."""
    tokens = tmp_path / "tokens.toml"
    tokens.write_text("[tokens]\n")
    config = tmp_path / "ess.toml"
    config.write_text(f'[auth]\ntokens_file = "{tokens}"\n')
    overrides = {}
    if how == "json-section":
        monkeypatch.setenv("ESS_AUTH", '{"tokens_file": ""}')
    else:
        overrides["auth"] = {"tokens_file": ""}
    with pytest.raises(InvalidConfig) as raised:
        load_settings(config, **overrides)
    assert raised.value.key == "auth.tokens_file"
    assert ("empties it" if how == "json-section" else 'a flag given ""') in str(raised.value)


@pytest.mark.parametrize("section, key", [("auth", "tokens_file"), ("server", "tls_cert"),
                                          ("server", "tls_key"), ("server", "tls_client_ca")])
def test_a_flag_given_empty_never_turns_off_what_the_environment_turns_on(
        monkeypatch, tmp_path, section, key) -> None:
    """Review 42f: with no config file, ESS_AUTH__TOKENS_FILE (or ESS_SERVER__TLS_*)
    turned authentication (TLS) on and `--tokens-file ""` (`--tls-client-ca ""`) turned it
    off, check-config OK: anyone could reset GLOBAL. A flag given "" is refused."""
    monkeypatch.setenv(f"ESS_{section.upper()}__{key.upper()}", str(tmp_path / "x"))
    with pytest.raises(InvalidConfig) as raised:
        load_settings(None, **{section: {key: ""}})
    assert raised.value.key == f"{section}.{key}" and 'a flag given ""' in str(raised.value)


def test_a_section_the_file_gives_as_no_table_is_overridden_without_a_crash(
        monkeypatch, tmp_path) -> None:
    """Review 36v: `auth = "x"` in the file, overridden whole by ESS_AUTH, crashed the
    check of emptied settings (AttributeError): the file turned nothing on."""
    tokens = tmp_path / "tokens.toml"
    tokens.write_text("[tokens]\n")
    config = tmp_path / "ess.toml"
    config.write_text('auth = "x"\n')
    monkeypatch.setenv("ESS_AUTH", f'{{"tokens_file": "{tokens}"}}')
    assert load_settings(config).auth.tokens_file == str(tokens)


@pytest.mark.parametrize("text, key", [
    ("[reset]\nrequire_approvals = true\n", "reset.require_approvals"),
    ("[limits]\nmax_orders_per_second = false\n", "limits.max_orders_per_second"),
    ("[limits]\nreference_price = 1.0\n", "limits.reference_price"),
    ("[breakers.heartbeat_lost]\nwindow_s = 10\n", "breakers.heartbeat_lost.window_s"),
    ("[breakers.consecutive_losses]\nwindow_s = 3600\n",
     "breakers.consecutive_losses.window_s"),
], ids=["true-for-a-number", "false-for-a-cap", "reference-price-for-all", "no-window",
        "streak-window"])
def test_a_value_lax_parsing_would_misread_or_ignore_is_refused(tmp_path, text, key) -> None:
    """Review 36s: `require_approvals = true` was 1 (no four-eyes), a cap of `false` was 0
    (off), `reference_price` under [limits] valued every symbol with no mark, and a window
    on a breaker that has none was ignored; each with check-config saying OK."""
    config = tmp_path / "ess.toml"
    config.write_text(text)
    with pytest.raises(InvalidConfig) as raised:
        load_settings(config)
    assert raised.value.key == key, raised.value


def test_a_symbols_zero_never_lifts_the_limit_every_other_symbol_has(tmp_path) -> None:
    """Review 42f: `[limits.symbols.GME]` with max_order_quantity = 0 (meant: nothing)
    turned the cap off for GME alone: 1,000,000 GME were allowed where AAPL was capped."""
    config = tmp_path / "ess.toml"
    config.write_text("[limits]\nmax_order_quantity = 100\n"
                      "[limits.symbols.GME]\nmax_order_quantity = 0\n")
    with pytest.raises(InvalidConfig, match="trip SYMBOL:GME") as raised:
        load_settings(config)
    assert raised.value.key == 'limits.symbols."GME".max_order_quantity'
    config.write_text("[limits.symbols.GME]\nmax_order_quantity = 0\n")  # off anyway
    assert load_settings(config).guard_config().limits.symbols["GME"].max_order_quantity == 0


def test_an_override_of_a_breaker_left_off_is_refused(tmp_path) -> None:
    """Review 42f: a scope's override setting a breaker turned off in [breakers] left it
    off, check-config OK: five API errors on the strategy tripped nothing. Said on or
    off, it is taken."""
    text = ('[breakers.api_errors]\nenabled = false\n'
            '[scopes."STRATEGY:momo".breakers.api_errors]\nthreshold = 2\n')
    key = 'scopes."STRATEGY:momo".breakers.api_errors'
    config = tmp_path / "ess.toml"
    config.write_text(text)
    with pytest.raises(InvalidConfig, match="sets a breaker that stays off") as raised:
        load_settings(config)
    assert raised.value.key == key, raised.value
    for enabled in ("true", "false"):
        config.write_text(f"{text}enabled = {enabled}\n")
        rules = load_settings(config).guard_config().breakers
        scope = Scope(ScopeKind.STRATEGY, "momo")
        assert rules.rule(scope, key.rsplit(".", 1)[1]).enabled is (enabled == "true")


@pytest.mark.parametrize("breaker", ["api_errors", "failed_trades", "consecutive_losses",
                                     "data_feed_stale", "heartbeat_lost"])
def test_a_count_of_breaches_on_a_breaker_that_trips_on_the_event_is_refused(
        tmp_path, breaker) -> None:
    """Review 50b: `consecutive` on a breaker that counts no breaches (an event window, a
    streak, a lost heartbeat) was taken, check-config OK, and did nothing. In [breakers]
    and in a scope's override; 1, what it does anyway, is taken."""
    config = tmp_path / "ess.toml"
    for section in (f"[breakers.{breaker}]",
                    f'[scopes."STRATEGY:momo".breakers.{breaker}]\nenabled = true'):
        config.write_text(f"{section}\nconsecutive = 3\n")
        with pytest.raises(InvalidConfig, match="counts no consecutive breaches") as raised:
            load_settings(config)
        assert raised.value.key.endswith(f"breakers.{breaker}.consecutive"), raised.value
        config.write_text(f"{section}\nconsecutive = 1\n")
        load_settings(config).guard_config()
    config.write_text("[breakers.open_loss_pct]\nconsecutive = 3\n")  # a level: counted
    assert load_settings(config).guard_config().breakers.rule(
        GLOBAL, "open_loss_pct").consecutive == 3


def test_a_null_in_a_section_given_as_json_is_refused(monkeypatch, tmp_path) -> None:
    """Review 36s: null read as "not set", and the file's cap of 5 became the default 0
    (off)."""
    config = tmp_path / "ess.toml"
    config.write_text("[limits]\nmax_order_quantity = 5\n")
    monkeypatch.setenv("ESS_LIMITS", '{"max_order_quantity": null}')
    with pytest.raises(InvalidConfig) as raised:
        load_settings(config)
    assert raised.value.key == "limits.max_order_quantity"


def test_variables_that_are_not_settings_are_let_be(monkeypatch) -> None:
    for variable in ("ESS_TOKEN", "ESS_TARGET", "ESS_NO_MYPYC", "ESS_JAVA_OPTS"):
        monkeypatch.setenv(variable, "x")
    monkeypatch.setenv("ESS_LIMITS__MAX_ORDER_QUANTITY", "5")
    assert load_settings(None).limits.max_order_quantity == 5


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
                      'threshold = 4.0\nconsecutive = 6\n')
    monkeypatch.setenv("ESS_SCOPES__STRATEGY:Momo__BREAKERS__DAILY_DRAWDOWN_PCT__THRESHOLD",
                       "2.0")
    monkeypatch.setenv("ESS_LIMITS__SYMBOLS__AAPL__MAX_ORDER_QUANTITY", "5")
    config = load_settings(config).guard_config()
    momo = config.breakers.overrides[Scope(ScopeKind.STRATEGY, "Momo")]
    assert (momo["daily_drawdown_pct"].threshold, momo["daily_drawdown_pct"].consecutive) \
        == (2.0, 6)
    assert set(config.breakers.overrides) == {Scope(ScopeKind.STRATEGY, "Momo")}
    aapl = config.limits.for_symbol("AAPL")
    assert (aapl.max_order_quantity, aapl.price_band_pct) == (5.0, 3.0)


def test_one_setting_named_by_two_variables_is_refused(monkeypatch) -> None:
    """Names are not case-sensitive but for ids: which of two would win was the order of
    the environment."""
    monkeypatch.setenv("ESS_SCOPES__STRATEGY:Momo__BREAKERS__DAILY_DRAWDOWN_PCT__THRESHOLD",
                       "2.0")
    monkeypatch.setenv("ESS_SCOPES__STRATEGY:Momo__breakers__daily_drawdown_pct__threshold",
                       "3.0")
    with pytest.raises(InvalidConfig) as raised:
        load_settings(None)
    assert "BREAKERS__DAILY_DRAWDOWN_PCT__THRESHOLD" in str(raised.value)
    assert "breakers__daily_drawdown_pct__threshold" in str(raised.value)


def test_strategies_whose_ids_differ_in_case_are_overridden_apart(monkeypatch,
                                                                  tmp_path) -> None:
    config = tmp_path / "ess.toml"
    config.write_text('[scopes."strategy:momo".breakers.daily_drawdown_pct]\nthreshold = 4.0\n')
    monkeypatch.setenv("ESS_SCOPES__STRATEGY:Momo__BREAKERS__DAILY_DRAWDOWN_PCT__CONSECUTIVE", "6")
    monkeypatch.setenv("ESS_SCOPES__STRATEGY:momo__BREAKERS__DAILY_DRAWDOWN_PCT__CONSECUTIVE", "3")
    overrides = load_settings(config).guard_config().breakers.overrides
    rule = {scope.id: rules["daily_drawdown_pct"] for scope, rules in overrides.items()}
    assert (rule["momo"].threshold, rule["momo"].consecutive) == (4.0, 3)
    assert (rule["Momo"].threshold, rule["Momo"].consecutive) == (5.0, 6)  # the default 5


def test_a_section_given_whole_as_json_merges_with_variables_for_its_entries(
        monkeypatch) -> None:
    """Review 27: the JSON's entry was replaced by the variable's, field by field lost (an
    AAPL quantity cap of 100 became no cap), or moved to another strategy."""
    monkeypatch.setenv("ESS_LIMITS__SYMBOLS", '{"AAPL": {"max_order_quantity": 100}}')
    monkeypatch.setenv("ESS_LIMITS__SYMBOLS__AAPL__PRICE_BAND_PCT", "3")
    monkeypatch.setenv("ESS_SCOPES", '{"STRATEGY:Momo": {"breakers": {"daily_drawdown_pct":'
                       ' {"threshold": 4.0}}}, "STRATEGY:momo": {"breakers":'
                       ' {"daily_drawdown_pct": {"threshold": 3.0}}}}')
    monkeypatch.setenv("ESS_SCOPES__STRATEGY:Momo__BREAKERS__DAILY_DRAWDOWN_PCT__CONSECUTIVE", "6")
    config = load_settings(None).guard_config()
    aapl = config.limits.for_symbol("AAPL")
    assert (aapl.max_order_quantity, aapl.price_band_pct) == (100.0, 3.0)
    rule = {scope.id: rules["daily_drawdown_pct"]
            for scope, rules in config.breakers.overrides.items()}
    assert (rule["Momo"].threshold, rule["Momo"].consecutive) == (4.0, 6)
    assert rule["momo"].threshold == 3.0 and rule["momo"].consecutive != 6


def test_the_case_insensitive_parts_of_an_id_merge_file_and_variable(monkeypatch,
                                                                     tmp_path) -> None:
    """A scope's kind and a symbol are not case-sensitive: `[scopes.global]` and
    ESS_SCOPES__GLOBAL__..., `[limits.symbols.aapl]` and ESS_LIMITS__SYMBOLS__AAPL__...
    name one entry each."""
    config = tmp_path / "ess.toml"
    config.write_text('[scopes.global.breakers.daily_drawdown_pct]\nthreshold = 4.0\n'
                      '[limits.symbols.aapl]\nmax_order_quantity = 100\n')
    monkeypatch.setenv("ESS_SCOPES__GLOBAL__BREAKERS__DAILY_DRAWDOWN_PCT__CONSECUTIVE", "6")
    monkeypatch.setenv("ESS_LIMITS__SYMBOLS__AAPL__PRICE_BAND_PCT", "3")
    config = load_settings(config).guard_config()
    rule = config.breakers.overrides[GLOBAL]["daily_drawdown_pct"]
    assert (rule.threshold, rule.consecutive) == (4.0, 6)
    aapl = config.limits.for_symbol("AAPL")
    assert (aapl.max_order_quantity, aapl.price_band_pct) == (100.0, 3.0)


def test_a_kind_with_spaces_merges_and_one_not_ascii_is_refused(monkeypatch,
                                                                tmp_path) -> None:
    """Review 53a: the file's `[scopes."symbol :aapl"]` (a scope as the sidecar reads one)
    and ESS_SCOPES__SYMBOL:AAPL__... were two entries, and the start was refused as naming
    SYMBOL:AAPL twice. "ſymbol" (whose Unicode capital is SYMBOL) is no kind."""
    config = tmp_path / "ess.toml"
    config.write_text('[scopes."symbol :aapl".breakers.daily_drawdown_pct]\nthreshold = 4.0\n')
    monkeypatch.setenv("ESS_SCOPES__SYMBOL:AAPL__BREAKERS__DAILY_DRAWDOWN_PCT__CONSECUTIVE", "6")
    rule = load_settings(config).guard_config().breakers.overrides[
        Scope(ScopeKind.SYMBOL, "AAPL")]["daily_drawdown_pct"]
    assert (rule.threshold, rule.consecutive) == (4.0, 6)
    config.write_text('[scopes."\u017fymbol:aapl".breakers.daily_drawdown_pct]\nthreshold = 4\n')
    monkeypatch.delenv("ESS_SCOPES__SYMBOL:AAPL__BREAKERS__DAILY_DRAWDOWN_PCT__CONSECUTIVE")
    with pytest.raises(InvalidConfig, match="scope kind"):
        load_settings(config).guard_config()


def test_a_key_refused_for_an_invisible_character_shows_it_escaped(tmp_path) -> None:
    """Review 53a: the key was printed as written, so the operator saw "AAPL" and nothing
    to delete."""
    config = tmp_path / "ess.toml"
    config.write_text('[limits.symbols."AAPL\U000e0041"]\nmax_order_quantity = 1\n'
                      '[scopes."strategy:mo\u115f"]\n', encoding="utf-8")
    with pytest.raises(InvalidConfig) as raised:
        load_settings(config).guard_config()
    message = str(raised.value)
    assert ('limits.symbols."AAPL\\U000e0041"' in message
            or 'scopes."strategy:mo\\u115f"' in message), message
    assert "\U000e0041" not in message and "\u115f" not in message


def test_a_variable_naming_a_symbol_whose_capital_decomposes_sets_its_limits(
        monkeypatch, tmp_path) -> None:
    """Review 35: "ΐ" (U+0390) upper-cases to Ϊ́ decomposed, which was the variable's key
    as spelled, so ESS_LIMITS__SYMBOLS__ΐ__... was refused as "not in NFC" although the
    file and gRPC take the symbol; and "ᾷ" and its capital were two keys. Each after a
    "λ": alone, they read as a Latin "i" and "a" with marks, refused since stop 61."""
    config = tmp_path / "ess.toml"
    config.write_text('[limits.symbols."\u039b\u1fbc\u0342"]\nmax_order_quantity = 100\n')
    monkeypatch.setenv("ESS_LIMITS__SYMBOLS__\u03bb\u0390__MAX_ORDER_QUANTITY", "5")
    monkeypatch.setenv("ESS_LIMITS__SYMBOLS__\u03bb\u1fb7__PRICE_BAND_PCT", "3")
    limits = load_settings(config).guard_config().limits
    assert limits.for_symbol(canonical_symbol("\u03bb\u0390", "symbol")) \
        .max_order_quantity == 5
    sign = limits.for_symbol(canonical_symbol("\u03bb\u1fb7", "symbol"))
    assert (sign.max_order_quantity, sign.price_band_pct) == (100, 3)


def test_a_file_naming_one_symbol_twice_is_refused(tmp_path) -> None:
    config = tmp_path / "ess.toml"
    config.write_text("[limits.symbols.aapl]\nmax_order_quantity = 100\n"
                      "[limits.symbols.AAPL]\nmax_order_quantity = 5\n")
    with pytest.raises(InvalidConfig, match="names AAPL again"):
        load_settings(config)


@pytest.mark.parametrize("variable", [
    "ESS_LIMITS__SYMBOLS__\ufb00__MAX_ORDER_QUANTITY",
    "ESS_SCOPES__SYMBOL:\ufb00__BREAKERS__DAILY_DRAWDOWN_PCT__THRESHOLD",
    "ESS_SCOPES__STRATEGY:momo\u200b__BREAKERS__DAILY_DRAWDOWN_PCT__THRESHOLD"])
def test_an_id_in_a_variables_name_follows_the_id_rules_as_written(monkeypatch, tmp_path,
                                                                   variable) -> None:
    """Review 30: the ligature U+FB00 upper-cases to the canonical FF, so a variable for
    it loosened the file's [limits.symbols.FF], where the file's own key is refused."""
    config = tmp_path / "ess.toml"
    config.write_text("[limits.symbols.FF]\nmax_order_quantity = 10\n")
    monkeypatch.setenv(variable, "1000000")
    with pytest.raises(InvalidConfig) as raised:
        load_settings(config)
    assert str(raised.value).startswith(variable)


def test_a_config_file_that_cannot_be_looked_at_is_an_invalid_configuration(
        tmp_path, monkeypatch) -> None:
    """Review 37d: a config file in a directory the process may not read ended the start
    with a traceback. (The test runs as root in CI, which reads any directory: the stat's
    PermissionError is made here.)"""
    import pathlib  # noqa: PLC0415

    def refused(self: pathlib.Path) -> bool:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "is_file", refused)
    with pytest.raises(InvalidConfig, match="cannot be read: .*Permission denied") as raised:
        load_settings(tmp_path / "ess.toml")
    assert raised.value.key == "--config"


@pytest.mark.parametrize("whole, value, part", [
    ("ESS_LIMITS", '{"max_order_quantity": 5}', "ESS_LIMITS__MAX_ORDER_QUANTITY"),
    ("ESS_LIMITS__SYMBOLS", '{"AAPL": {"max_order_quantity": 5}}',
     "ESS_LIMITS__SYMBOLS__aapl__MAX_ORDER_QUANTITY"),
    ("ESS_LIMITS__SYMBOLS__AAPL", '{"max_order_quantity": 5}',
     "ESS_LIMITS__SYMBOLS__AAPL__MAX_ORDER_QUANTITY"),
    ("ESS_RESET", '{"require_approvals": 2}', "ESS_RESET__REQUIRE_APPROVALS"),
    ("ESS_SCOPES", '{"STRATEGY:Momo": {"breakers": {"daily_drawdown_pct": {"threshold": 4}}}}',
     "ESS_SCOPES__strategy:Momo__BREAKERS__DAILY_DRAWDOWN_PCT__THRESHOLD")])
def test_a_variable_setting_what_another_gives_as_json_is_refused(
        monkeypatch, whole: str, value: str, part: str) -> None:
    """Review 38c: `ESS_LIMITS='{"max_order_quantity": 5}'` beside
    `ESS_LIMITS__MAX_ORDER_QUANTITY=1000` started with 1000 (the nested one won, whichever
    was looser; four-eyes was turned off the same way)."""
    monkeypatch.setenv(whole, value)
    monkeypatch.setenv(part, "1")
    with pytest.raises(InvalidConfig) as raised:
        load_settings(None)
    assert str(raised.value).startswith(part) and f"what {whole} gives too" in str(raised.value)


@pytest.mark.parametrize("variable, value", [
    ("ESS_LIMITS", '{"max_order_quantity": 5, "max_order_quantity": 1000}'),
    ("ESS_LIMITS__SYMBOLS__AAPL", '{"max_order_quantity": 5, "max_order_quantity": 1000}'),
    ("ESS_LIMITS", '{"symbols": {"AAPL": {"price_band_pct": 1, "price_band_pct": 50}}}')])
def test_a_section_given_as_json_naming_a_key_twice_is_refused(monkeypatch, variable: str,
                                                               value: str) -> None:
    """Review 38c: the last one won, where the file's TOML refuses a key given twice."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidConfig, match="twice") as raised:
        load_settings(None)
    assert str(raised.value).startswith(variable)


def test_a_connection_cap_one_executor_could_fill_is_refused(tmp_path) -> None:
    """Review 45c: at 1 to 7 places an address, executors holding them kept `essctl
    trigger` out of the Unix socket, with check-config saying OK."""
    config = tmp_path / "ess.toml"
    config.write_text("[server]\nmax_connections = 7\n")
    with pytest.raises(InvalidConfig) as raised:
        load_settings(config)
    assert raised.value.key == "server.max_connections", raised.value
    config.write_text("[server]\nmax_connections = 8\n")
    assert load_settings(config).server.max_connections == 8
