"""The Go client (clients/go) through ess-check and ess-smoke: tests/clients/smoke.py."""

from __future__ import annotations

import pytest

from tests.clients.smoke import smoke_test, trigger_test

pytestmark = pytest.mark.e2e


def test_go_client_smoke() -> None:
    smoke_test("go")


def test_go_client_trigger_never_refuses_for_what_comes_with_it() -> None:
    trigger_test("go")
