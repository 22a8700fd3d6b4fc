"""The Rust client (clients/rust) through ess-check and ess-smoke: tests/clients/smoke.py."""

from __future__ import annotations

import pytest

from tests.clients.smoke import smoke_test

pytestmark = pytest.mark.e2e


def test_rust_client_smoke() -> None:
    smoke_test("rust")
