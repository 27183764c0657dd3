"""`invoke upgrade`: the switch planned from facts kept as data; the rollback's shell (the
real runs, including a broken release switched back, are tests/integration/test_upgrade.py)."""

from __future__ import annotations

from provision.facts.python import VenvInfo
from provision.roles.upgrade.steps import SwitchVenv
from provision.steps.base import Command, WriteFile
from tests.unit.conftest import distro_facts

PINS = ["pip==26.3", "pypiserver==2.4.2", "waitress==3.0.2"]


def step(find_links=None, pins=PINS):
    return SwitchVenv("/opt/pypiserver/venv", "pypiserver", lambda f: ("3.11", "/usr/bin/python3.11"),
                      lambda f: pins, find_links, "/var/lib/provision/pypiserver.json", "{}\n")


def venv(**dists):
    return VenvInfo(True, "3.11", True, True, {k.replace("_", "-"): v for k, v in dists.items()})


def test_matching_pins_are_ok_and_only_the_record_follows():
    same = venv(pip="26.3", pypiserver="2.4.2", waitress="3.0.2")
    plan = step().plan(distro_facts("debian-12"), {"venv": same, "record": "{}"})
    assert not plan.changed and plan.note == "pypiserver 2.4.2: the 3 pins match"
    plan = step().plan(distro_facts("debian-12"), {"venv": same, "record": '{"old": 1}'})
    assert [type(a) for a in plan.actions] == [WriteFile] and plan.note.endswith("record updated")


def test_build_beside_then_switch_in_order():
    plan = step().plan(distro_facts("debian-12"), {"venv": venv(pip="26.3", pypiserver="2.3.2", waitress="3.0.2"),
                                                   "record": "{}"})
    assert plan.note == "pypiserver 2.3.2 -> 2.4.2; the old venv kept as /opt/pypiserver/venv.prev"
    shell = [a.sh if isinstance(a, Command) else f"write {a.path}" for a in plan.actions]
    assert shell[0] == ("rm -rf /opt/pypiserver/venv.next && /usr/bin/python3.11 -m venv /opt/pypiserver/venv.next")
    assert shell[1] == "write /opt/pypiserver/venv.next/provision-requirements.txt"
    assert "/opt/pypiserver/venv.next/bin/python -m pip install" in shell[2]
    stop = shell.index("systemctl stop pypiserver")
    assert shell[stop - 1].startswith("cp -p /var/lib/provision/pypiserver.json ")
    assert shell[stop + 1] == "rm -rf /opt/pypiserver/venv.prev && mv /opt/pypiserver/venv /opt/pypiserver/venv.prev"
    move = shell[stop + 2]
    assert move.startswith("if mv /opt/pypiserver/venv.next /opt/pypiserver/venv && ")
    assert '1s|^#!/opt/pypiserver/venv.next/bin/|#!/opt/pypiserver/venv/bin/|' in move
    assert "[ ! -L \"$f\" ]" in move                            # bin/python, a link, untouched
    # anything failing after the old venv moved aside moves it back and starts the service
    assert move.endswith("else rm -rf /opt/pypiserver/venv; mv /opt/pypiserver/venv.prev /opt/pypiserver/venv; "
                         "systemctl start pypiserver; exit 1; fi")
    assert shell[-1] == "systemctl start pypiserver" and shell[-2] == "write /var/lib/provision/pypiserver.json"
    # the build comes before the service is stopped: a failed build leaves it running
    assert all("pip install" not in s for s in shell[stop:])


def test_offline_installs_from_the_wheelhouse_and_selinux_relabels():
    plan = step(find_links="/opt/pypiserver/wheels").plan(
        distro_facts("rocky-9"), {"venv": venv(pypiserver="2.3.2"), "record": ""})
    shell = [a.sh for a in plan.actions if isinstance(a, Command)]
    assert "--without-pip" in shell[0]
    assert "--no-index --find-links /opt/pypiserver/wheels" in shell[1]
    assert any("&& restorecon -R /opt/pypiserver/venv;" in c for c in shell) == distro_facts("rocky-9").selinux_enabled


def test_the_rollback_moves_the_old_venv_and_record_back():
    script = SwitchVenv.rollback_script("/opt/pypiserver/venv", "pypiserver", "/var/lib/provision/pypiserver.json")
    assert script.index("systemctl stop pypiserver") < script.index(
        "mv /opt/pypiserver/venv /opt/pypiserver/venv.failed && mv /opt/pypiserver/venv.prev /opt/pypiserver/venv") \
        < script.index("systemctl start pypiserver")
    assert "mv /var/lib/provision/pypiserver.json.prev-upgrade /var/lib/provision/pypiserver.json" in script
