"""Every test runs against the decision domain as it ships: compiled with mypyc (setup.py),
from the sources in this work tree. An extension module is imported in place of its .py,
so a .py edited after the last `make compile` would go untested: refuse to start then.
ESS_NO_MYPYC=1 runs the tests on the interpreted sources instead (no compiled modules
may be present then)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[1] / "ess_sidecar" / "domain"


def pytest_sessionstart(session: pytest.Session) -> None:
    import ess_sidecar.domain.engine as engine

    compiled = {path.name.split(".")[0]: path for path in DOMAIN.glob("*.so")}
    if os.environ.get("ESS_NO_MYPYC"):
        if compiled:
            raise pytest.UsageError(f"ESS_NO_MYPYC is set but {DOMAIN} holds compiled modules:"
                                    " `git clean -fX ess_sidecar` removes them")
        return
    if not str(engine.__file__).endswith(".so"):
        raise pytest.UsageError("the decision domain is not compiled: run `make compile`"
                                " (or set ESS_NO_MYPYC=1 to test the interpreted sources)")
    for name, extension in compiled.items():
        source = DOMAIN / f"{name}.py"
        if not source.exists() or source.stat().st_mtime > extension.stat().st_mtime:
            raise pytest.UsageError(f"{extension.name} is older than {source.name}, or has no"
                                    " source: run `make compile`")
