"""Fixtures for tests against real hosts (throwaway systemd-nspawn containers).

Tests that need a host ask for ``testhost`` (one fresh host per test) or call
``testhost_factory(n)`` (hosts live until the session ends). Where hosts
cannot run (not root, no systemd-nspawn...) those tests are skipped with the
reason, so the unit tests still run everywhere.
"""
from __future__ import annotations

import os

import pytest

from provision import testhost as th


def _external_hosts() -> list[str]:
    return [h.strip() for h in os.environ.get("PROVISION_TEST_HOSTS", "").split(",") if h.strip()]


@pytest.fixture(scope="session")
def testhosts_available() -> None:
    reason = th.preflight()
    if reason:
        if os.environ.get("PROVISION_REQUIRE_TESTHOSTS"):  # CI: a skip here would hide a gap
            pytest.fail(f"test hosts required but unavailable: {reason}", pytrace=False)
        pytest.skip(f"test hosts unavailable: {reason}")


@pytest.fixture(scope="session")
def testhost_factory(testhosts_available):
    """``boot(n=1) -> list[TestHost]``; every host booted is destroyed at session end."""
    if _external_hosts():
        pytest.skip("PROVISION_TEST_HOSTS is set: external hosts are not supported by this fixture yet")
    booted: list[th.TestHost] = []

    def boot(n: int = 1) -> list[th.TestHost]:
        try:
            hosts = th.boot_hosts(n)
        except th.TestHostError as exc:
            pytest.fail(f"booting {n} test host(s) failed: {exc}", pytrace=False)
        booted.extend(hosts)
        return hosts

    yield boot
    for host in booted:
        host.destroy()


@pytest.fixture
def testhost(testhosts_available):
    """One freshly booted host, destroyed after the test (pass or fail)."""
    if _external_hosts():
        pytest.skip("PROVISION_TEST_HOSTS is set: external hosts are not supported by this fixture yet")
    try:
        (host,) = th.boot_hosts(1)
    except th.TestHostError as exc:
        pytest.fail(f"booting a test host failed: {exc}", pytrace=False)
    yield host
    host.destroy()
