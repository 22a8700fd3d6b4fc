"""Compiles the decision domain (ess_sidecar/domain) with mypyc; pyproject.toml stays the
source of the metadata. ESS_NO_MYPYC=1 builds a pure-Python distribution instead."""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
# Modules that stay interpreted. The journal (adapters/storage/journal.py) decodes records
# by the field annotations of these modules' NamedTuples and dataclasses
# (typing.get_type_hints), which mypyc replaces with erased runtime types (`Order | None`
# becomes `type`, `tuple[Latch, ...]` becomes `tuple`).
INTERPRETED = {"__init__.py", "commands.py", "orders.py", "states.py"}


def domain_modules() -> list[str]:
    return sorted(str(path.relative_to(ROOT))
                  for path in (ROOT / "ess_sidecar" / "domain").glob("*.py")
                  if path.name not in INTERPRETED)


ext_modules = []
if not os.environ.get("ESS_NO_MYPYC"):
    from mypyc.build import mypycify

    os.chdir(ROOT)  # mypy resolves ess_sidecar.domain.* from here
    ext_modules = mypycify(domain_modules(), opt_level=os.environ.get("MYPYC_OPT_LEVEL", "3"),
                            group_name="ess_sidecar.domain")

setup(ext_modules=ext_modules)
