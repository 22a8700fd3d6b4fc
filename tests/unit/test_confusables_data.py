"""ess_sidecar/domain/confusables.json is generated (`make confusables`): it must be what
scripts/gen_confusables.py writes from the pinned Unicode data, or ids would be judged by
data nobody can reproduce."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_confusables_are_what_make_confusables_writes():
    spec = importlib.util.spec_from_file_location("gen_confusables",
                                                  ROOT / "scripts" / "gen_confusables.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    committed = (ROOT / "ess_sidecar" / "domain" / "confusables.json").read_text("utf-8")
    assert committed == generator.build(), "stale: run `make confusables` and commit it"
