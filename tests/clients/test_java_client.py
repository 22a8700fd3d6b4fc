"""The Java client (clients/java) through ess-check and ess-smoke: tests/clients/smoke.py."""

from __future__ import annotations

import pytest

from tests.clients.smoke import smoke_test

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(300)  # a JVM start per ess-check: some 250 usage errors take 2 minutes
def test_java_client_smoke() -> None:
    smoke_test("java")
