"""`python -m testing.testhost` (what `invoke testhost-up/-down` run): hosts belong to a checkout.

Two "checkouts" here are two --inventory paths under tmp_path; the owner of a host is the
directory holding the inventory. Every host these tests boot has a name unique to this run
(``ck`` + random hex) or is found by its owner, and is destroyed at teardown. ``down --all``
is not exercised: it would destroy every test host on the machine, other runs' included.
"""
from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from testing import testhost as th
from tests import external as ext

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def nspawn_hosts(testhosts_available, external_testhosts):
    """Skip (or fail under PROVISION_REQUIRE_TESTHOSTS) like the other real-host tests."""
    if external_testhosts:
        pytest.skip(f"{ext.ENV_HOSTS} is set: these tests drive the local nspawn harness's CLI")


class Checkout:
    """One checkout's view of the CLI: ``co("up", NAME)`` -> (exit code, stdout, stderr)."""

    def __init__(self, root: Path, capsys):
        self.inventory = root / ".testhost" / "inventory.yml"
        self.owner = str(self.inventory.parent.resolve())
        self._capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self._capsys.readouterr()
        rc = th.main(["--inventory", str(self.inventory), *args])
        out = self._capsys.readouterr()
        return rc, out.out, out.err

    def inventory_hosts(self) -> dict:
        return yaml.safe_load(self.inventory.read_text())["all"]["hosts"]


@pytest.fixture
def checkouts(nspawn_hosts, tmp_path, capsys):
    """``make(label) -> Checkout``; at teardown every host of these checkouts is destroyed."""
    made: list[Checkout] = []

    def make(label: str) -> Checkout:
        co = Checkout(tmp_path / label, capsys)
        made.append(co)
        return co

    yield make
    owners = {co.owner for co in made}
    for co in made:
        try:
            co("down")
        except Exception:  # noqa: BLE001 - the sweep below still runs
            pass
    for host in th.list_hosts():   # whatever a failing `down` left behind
        if host.state.get("owner") in owners:
            host.destroy()


@pytest.fixture
def names():
    """Host names unique to this test (NAME_RE: at most 11 characters)."""
    tag = secrets.token_hex(3)
    return [f"ck{tag}{c}" for c in "abc"]


def _answers(host: th.TestHost, known_hosts: Path) -> None:
    """The host is up: nspawn alive, init answers nsenter, sshd logs `deploy` in."""
    assert host.running(), f"{host.name} is not running"
    assert host.exec("hostname").stdout.decode().strip() == host.name
    r = subprocess.run([*th.ssh_base_args(host, known_hosts), "hostname"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == host.name


def test_each_checkout_sees_and_destroys_only_its_own_hosts(checkouts, names, tmp_path):
    a, b = checkouts("a"), checkouts("b")
    name_a, name_b = names[:2]

    rc, out, err = a("up", name_a)
    assert rc == 0, err
    assert out.split()[:3] == [name_a, th.TestHost.load(name_a).address, str(a.inventory)]
    rc, _, err = b("up", name_b)
    assert rc == 0, err

    assert list(a.inventory_hosts()) == [name_a]
    assert list(b.inventory_hosts()) == [name_b]
    assert th.TestHost.load(name_a).state["owner"] == a.owner
    assert th.TestHost.load(name_b).state["owner"] == b.owner

    rc, out, err = a("status")
    assert rc == 0, err
    line_a = next(l for l in out.splitlines() if l.startswith(name_a + " "))
    line_b = next(l for l in out.splitlines() if l.startswith(name_b + " "))
    assert "this-checkout" in line_a
    assert f"owner={b.owner}" in line_b

    host_b = th.TestHost.load(name_b)
    rc, out, err = a("down")            # bare down: checkout a's hosts only
    assert rc == 0, err
    assert out.strip() == f"destroyed 1 host(s) of this checkout ({a.owner})"
    assert not (th.CACHE_DIR / "hosts" / name_a).exists()
    assert not a.inventory.exists()

    assert th.TestHost.load(name_b).pid == host_b.pid
    _answers(host_b, tmp_path / "known_hosts")
    assert list(b.inventory_hosts()) == [name_b]


def test_up_twice_reuses_the_running_host(checkouts, names):
    a = checkouts("a")
    rc, first, err = a("up", names[0])
    assert rc == 0, err
    before = th.TestHost.load(names[0])

    rc, second, err = a("up", names[0])
    assert rc == 0, err
    assert second.split()[:3] == first.split()[:3]
    assert second.rstrip().endswith("already up")
    after = th.TestHost.load(names[0])
    assert (after.address, after.pid, after.pid_start) == (before.address, before.pid, before.pid_start)
    assert after.running()

    # no NAME: this checkout's running host, not a new pypi-test
    rc, third, err = a("up")
    assert rc == 0, err
    assert third.split()[:2] == [names[0], before.address]
    assert th.TestHost.load(names[0]).pid == before.pid
    assert [h.name for h in th._owned_hosts(a.owner)] == [names[0]]
    assert list(a.inventory_hosts()) == [names[0]]


def test_another_checkouts_host_is_refused_and_keeps_running(checkouts, names, tmp_path):
    a, b = checkouts("a"), checkouts("b")
    rc, _, err = a("up", names[0])
    assert rc == 0, err
    host = th.TestHost.load(names[0])

    rc, out, err = b("down", names[0])
    assert rc == 1
    assert err.startswith(f"testhost: test host '{names[0]}' belongs to another checkout ({a.owner})")
    assert "down --all" in err and len(err.strip().splitlines()) == 1

    rc, out, err = b("up", names[0])
    assert rc == 1
    assert err.strip() == (f"testhost: test host '{names[0]}' belongs to another checkout "
                           f"({a.owner}): choose another name")
    assert not b.inventory.exists()

    rc, out, err = b("down")            # nothing of b's to destroy
    assert rc == 0, err
    assert out.strip() == f"destroyed 0 host(s) of this checkout ({b.owner})"

    after = th.TestHost.load(names[0])
    assert (after.pid, after.pid_start) == (host.pid, host.pid_start)
    _answers(after, tmp_path / "known_hosts")
    assert list(a.inventory_hosts()) == [names[0]]


def test_up_boots_again_a_host_of_ours_that_stopped(checkouts, names):
    a = checkouts("a")
    rc, _, err = a("up", names[0])
    assert rc == 0, err
    th.TestHost.load(names[0]).stop()   # like nspawn gone after the machine rebooted

    rc, out, err = a("up", names[0])
    assert rc == 0, err
    assert "already up" not in out
    host = th.TestHost.load(names[0])
    assert host.running()
    assert host.exec("hostname").stdout.decode().strip() == names[0]
    assert list(a.inventory_hosts()) == [names[0]]


def test_up_without_name_boots_a_free_default_name_then_reuses_it(checkouts):
    a = checkouts("a")
    rc, out, err = a("up")
    assert rc == 0, err
    name = out.split()[0]
    assert re.fullmatch(rf"{th.DEFAULT_NAME}(\d+)?", name)
    host = th.TestHost.load(name)
    assert host.state["owner"] == a.owner and host.running()

    rc, again, err = a("up")
    assert rc == 0, err
    assert again.split()[:2] == [name, host.address] and "already up" in again
    assert th.TestHost.load(name).pid == host.pid
    assert list(a.inventory_hosts()) == [name]


def test_a_test_runs_host_is_not_a_checkouts(checkouts, testhost):
    a = checkouts("a")
    rc, _, err = a("up", testhost.name)
    assert rc == 1
    assert "belongs to a test or benchmark run" in err and "choose another name" in err
    rc, _, err = a("down", testhost.name)
    assert rc == 1
    assert "belongs to a test or benchmark run" in err
    assert testhost.running()
    assert not a.inventory.exists()


def test_inventory_env_var_names_the_checkout(checkouts, names, tmp_path, capsys, monkeypatch):
    a = checkouts("a")
    monkeypatch.setenv("PROVISION_TESTHOST_INVENTORY", str(a.inventory))
    capsys.readouterr()
    assert th.main(["up", names[0]]) == 0, capsys.readouterr().err
    assert th.TestHost.load(names[0]).state["owner"] == a.owner
    assert list(a.inventory_hosts()) == [names[0]]
    assert th.main(["down"]) == 0
    assert not (th.CACHE_DIR / "hosts" / names[0]).exists()
    assert not a.inventory.exists()
    assert os.environ["PROVISION_TESTHOST_INVENTORY"] == str(a.inventory)
