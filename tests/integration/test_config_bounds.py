"""check-config insists on finite, in-range values: none may turn a check off unseen or make
an RPC answer UNKNOWN later."""

from __future__ import annotations

from pathlib import Path

import pytest

from ess_sidecar.domain.errors import InvalidConfig
from ess_sidecar.settings import load_settings


@pytest.mark.parametrize("text, key", [
    ("[breakers.api_errors]\nthreshold = inf\n", "breakers.api_errors.threshold"),
    ("[breakers.api_errors]\nthreshold = 1e300\n", "breakers.api_errors.threshold"),
    ("[breakers.api_errors]\nwindow_s = 1e300\n", "breakers.api_errors.window_s"),
    ("[breakers.daily_drawdown_pct]\nthreshold = nan\n", "breakers.daily_drawdown_pct.threshold"),
    ("[policy]\nreset_cooldown_s = inf\n", "policy.reset_cooldown_s"),
    ("[policy]\nreset_cooldown_s = 1e300\n", "policy"),
    ("[policy.account]\nrearm_delay_s = 1e18\n", "policy.account.rearm_delay_s"),
    ("[reset]\napproval_window_s = inf\n", "reset.approval_window_s"),
    ("[limits]\nmax_symbol_exposure_pct = inf\n", "limits.max_symbol_exposure_pct"),
    ("[limits]\norder_id_retention_s = 1e300\n", "limits.order_id_retention_s"),
    ("[limits.symbols.AAPL]\nreference_price = inf\n", "limits.symbols.AAPL.reference_price"),
    ("[watch]\nheartbeat_interval_s = 1e300\n", "watch.heartbeat_interval_s"),
    ("[alerts]\nbackoff_max_s = inf\n", "alerts.backoff_max_s"),
])
def test_values_that_would_turn_a_check_off_or_break_an_rpc_are_refused(
        tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "ess.toml"
    path.write_text(text)
    with pytest.raises(InvalidConfig) as raised:
        load_settings(path)
    assert raised.value.key.startswith(key), raised.value
