"""`invoke uninstall`: what it removes and keeps, planned from facts kept as data (the real
run is tests/integration/test_uninstall.py)."""

from __future__ import annotations

import pytest

from provision.inventory import Target
from provision.roles.uninstall import UninstallRole
from provision.steps import Command
from tests.unit.conftest import distro_facts, plan_role


def removals(role, **vars_):
    target = Target(name="h", ssh_host="192.0.2.10", vars=vars_)
    # every path there, every service enabled and running, the firewall record naming 8000
    raw = lambda step: {k: ("LoadState=loaded\nActiveState=active\nUnitFileState=enabled" if k in ("state", "nginx")  # noqa: E731
                            else "8000" if k == "record" else "") for k in step.probes()}
    plan = plan_role(role, target, distro_facts("debian-12"), raw_for=raw)
    return [a.sh for _, p in plan for a in p.actions if isinstance(a, Command)]


def test_the_service_goes_the_data_stays():
    cmds = removals(UninstallRole())
    for unit in ("pypiserver-index.path", "pypiserver-index.service", "pypiserver"):
        assert f"systemctl disable {unit}" in cmds and f"systemctl stop {unit}" in cmds
    for path in ("/etc/systemd/system/pypiserver.service", "/etc/systemd/system/pypiserver-index.path",
                 "/etc/nginx/conf.d/pypiserver.conf", "/var/lib/provision/pypiserver.json"):
        assert f"rm -f -- {path}" in cmds or f"rm -f {path}" in cmds, path
    for ours in ("rm -rf -- /opt/pypiserver/venv", "rm -rf -- /opt/pypiserver/venv.prev",
                 "rm -f -- /opt/pypiserver/indexer.py", "rm -rf -- /opt/pypiserver/wheels",
                 "rmdir -- /opt/pypiserver", "rm -rf -- /srv/pypi/index"):
        assert ours in cmds, ours
    assert "rm -rf -- /opt/pypiserver" not in cmds
    assert not any(("/srv/pypi/packages" in c or "/etc/pypiserver" in c or "yanked" in c) and "rm" in c
                   for c in cmds), cmds
    # the port this tool opened (its record says 8000) is closed
    assert "firewall-cmd -q --permanent --remove-port=8000/tcp; firewall-cmd -q --remove-port=8000/tcp; :" in cmds
    assert cmds.index("systemctl stop pypiserver") < cmds.index("rm -f -- /etc/systemd/system/pypiserver.service")
    assert cmds[-1] == "rm -f -- /var/lib/provision/pypiserver.json"      # last: no longer deployed


def test_purge_removes_the_data_too():
    cmds = removals(UninstallRole(purge=True))
    for path in ("/srv/pypi/packages", "/etc/pypiserver"):
        assert f"rm -rf -- {path}" in cmds
    assert "rm -f -- /var/lib/provision/yanked-pypiserver.json" in cmds


def test_a_folder_holding_more_than_ours_stays():
    from provision.roles.uninstall.steps import FolderIfEmpty

    cmds = removals(UninstallRole(), pypiserver_venv="/opt/venvs/pypiserver")
    assert "rm -rf -- /opt/venvs/pypiserver" in cmds and "rm -f -- /opt/venvs/indexer.py" in cmds
    assert "rm -rf -- /opt/venvs" not in cmds
    step = FolderIfEmpty("/opt/venvs", {"pypiserver", "indexer.py"})
    assert step.plan(None, {"names": ["pypiserver", "other-venv"]}).note == "kept: it holds other-venv"
    assert [a.sh for a in step.plan(None, {"names": ["pypiserver", "indexer.py"]}).actions] == ["rmdir -- /opt/venvs"]


def test_nothing_there_is_all_ok():
    target = Target(name="h", ssh_host="192.0.2.10", vars={})
    plan = plan_role(UninstallRole(purge=True), target, distro_facts("rocky-9"),
                     raw_for=lambda step: {k: {"out": "", "rc": 1} for k in step.probes()})
    assert [s.name for s, p in plan if p.changed] == []


@pytest.mark.parametrize("args,message", [
    (["uninstall"], "uninstall needs -H/--host"),
    (["uninstall", "-H", "x", "--purge"], "--purge removes the packages and accounts: confirm with --yes"),
])
def test_refusals(args, message):
    from tests.helpers import invoke_here

    res = invoke_here(*args)
    assert res.returncode == 2 and message in res.stderr + res.stdout
