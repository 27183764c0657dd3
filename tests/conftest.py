"""Fixtures for tests against real hosts.

By default the hosts are throwaway systemd-nspawn containers booted here. With
``PROVISION_TEST_HOSTS`` set (``[USER@]HOST[:PORT],...``, see ``tests/external.py``)
the same tests run against those hosts instead (e.g. the Vagrantfile's VMs): each
host is handed out once per session, so list as many FRESH hosts as the modules
you run need (``test_deploy.py`` 2, ``test_errors.py`` 1).

Tests that need a host ask for ``testhost`` (one fresh host per test) or call
``testhost_factory(n)`` (hosts live until the session ends). Where nspawn hosts
cannot run (not root, no systemd-nspawn...) those tests are skipped with the
reason, so the unit tests still run everywhere.
"""
from __future__ import annotations

import os
import shutil

import pytest

from testing import testhost as th
from tests import external as ext


@pytest.fixture(scope="session", autouse=True)
def private_ca_dir(tmp_path_factory):
    """The tests' private CA (made on first use) lives in a folder of the session's own,
    never in the user's ~/.config/provision/ca; deploys run by the tests inherit it."""
    folder = tmp_path_factory.mktemp("ca")
    before = os.environ.get("PROVISION_CA_DIR")
    os.environ["PROVISION_CA_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("PROVISION_CA_DIR", None)
    else:
        os.environ["PROVISION_CA_DIR"] = before


def pytest_collection_modifyitems(config, items):
    """Tests that download from PyPI are out of the fast lane (`-m "not integration"`) too.
    With external hosts, skip the nspawn harness's own tests (pwdeploy user, hostname, nspawn reboot)."""
    for item in items:
        if item.get_closest_marker("network"):
            item.add_marker(pytest.mark.integration)
    if not os.environ.get(ext.ENV_HOSTS, "").strip():
        return
    skip = pytest.mark.skip(reason=f"{ext.ENV_HOSTS} is set: test_testhost.py checks the local "
                                   "nspawn harness itself, not a host under test")
    for item in items:
        if item.path.name == "test_testhost.py":
            item.add_marker(skip)


@pytest.fixture(scope="session")
def external_testhosts() -> list[ext.ExternalHost] | None:
    """The hosts of PROVISION_TEST_HOSTS, or None (then nspawn hosts are booted here)."""
    try:
        return ext.external_hosts()
    except ext.ExternalHostError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def testhosts_available(external_testhosts) -> None:
    if external_testhosts:
        if shutil.which("ssh") is None:
            pytest.fail(f"{ext.ENV_HOSTS} is set but there is no ssh client here: "
                        "apt-get install openssh-client", pytrace=False)
        return
    reason = th.preflight()
    if reason:
        if os.environ.get("PROVISION_REQUIRE_TESTHOSTS"):  # CI: a skip here would hide a gap
            pytest.fail(f"test hosts required but unavailable: {reason}", pytrace=False)
        pytest.skip(f"test hosts unavailable: {reason}")


class _ExternalPool:
    """Hands out each external host once: the tests need fresh hosts."""

    def __init__(self, hosts: list[ext.ExternalHost]):
        self.hosts = hosts
        self.used = 0

    def take(self, n: int) -> list[ext.ExternalHost]:
        left = self.hosts[self.used:]
        if len(left) < n:
            given = ", ".join(h.spec for h in self.hosts)
            pytest.fail(
                f"need {n} more fresh external host(s) but {ext.ENV_HOSTS} lists {len(self.hosts)} "
                f"({given}) and {self.used} are already taken by earlier tests in this session; "
                f"each module takes its own hosts (test_deploy.py 2, test_errors.py 1): list more "
                f"hosts, or run one module per set of fresh hosts", pytrace=False)
        taken = left[:n]
        self.used += n
        for host in taken:
            try:
                host.check_usable()
            except ext.ExternalHostError as exc:
                pytest.fail(str(exc), pytrace=False)
        return taken


@pytest.fixture(scope="session")
def _external_pool(external_testhosts) -> _ExternalPool | None:
    return _ExternalPool(external_testhosts) if external_testhosts else None


@pytest.fixture(scope="session")
def testhost_factory(testhosts_available, _external_pool):
    """``boot(n=1) -> list[TestHost | ExternalHost]``; hosts booted here are destroyed at session end.

    External hosts are the next n unused ones of PROVISION_TEST_HOSTS (never destroyed).
    """
    booted: list = []

    def boot(n: int = 1) -> list:
        if _external_pool is not None:
            hosts = _external_pool.take(n)
        else:
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
def testhost(testhosts_available, _external_pool):
    """One fresh host (booted here, or the next unused external one), destroyed after the test."""
    if _external_pool is not None:
        (host,) = _external_pool.take(1)
    else:
        try:
            (host,) = th.boot_hosts(1)
        except th.TestHostError as exc:
            pytest.fail(f"booting a test host failed: {exc}", pytrace=False)
    yield host
    host.destroy()
