"""The TypeScript client (clients/typescript) through ess-check and ess-smoke: tests/clients/smoke.py."""

from __future__ import annotations

import pytest

from tests.clients.smoke import smoke_test, trigger_test

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(300)  # a Node start per ess-check: under load, past 120 s (stop 54)
def test_typescript_client_smoke() -> None:
    smoke_test("typescript")


def test_typescript_client_trigger_never_refuses_for_what_comes_with_it() -> None:
    trigger_test("typescript", "utf-16-le")
