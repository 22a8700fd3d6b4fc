"""The breaker thresholds in force, as GetState reports them."""

from __future__ import annotations

from ess.v1 import guard_pb2 as pb

from ...domain.breakers import BreakerRule
from ...domain.config import GuardConfig


def _threshold(scope: str, name: str, rule: BreakerRule) -> pb.BreakerThreshold:
    return pb.BreakerThreshold(scope=scope, breaker=name, threshold=rule.threshold,
                               window_ms=int(rule.window_s * 1000), consecutive=rule.consecutive,
                               mode=rule.mode, auto_rearm=rule.auto_rearm,
                               disabled=bool(scope) and not rule.enabled)


def thresholds_to_proto(config: GuardConfig) -> list[pb.BreakerThreshold]:
    """Enabled defaults first, then each scope's overrides; an override that turns a
    breaker off for its scope is listed as disabled, so the default row is not read as
    applying there."""
    breakers = config.breakers
    rows = [_threshold("", name, rule) for name, rule in breakers.defaults.items() if rule.enabled]
    for scope, rules in breakers.overrides.items():
        rows += [_threshold(str(scope), name, rule) for name, rule in rules.items()]
    return rows
