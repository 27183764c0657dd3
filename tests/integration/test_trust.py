"""The trust boundary on real hosts: hostile values never reach root, crashes converge,
concurrent runs lose nothing, faults are named. Each test reproduces a reviewed defect."""

from __future__ import annotations

import io
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from provision import runner
from provision.inventory import select
from provision.report import Report
from provision.roles import Role
from provision.steps import Command, Plan, Step
from tests.external import is_external, write_inventory
from tests.helpers import invoke, recap, sh

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def inv(host, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trust")
    return write_inventory([host], tmp / "inventory.yml", known_hosts=str(tmp / "known_hosts"))


def with_vars(inv, tmp_path, **vars_):
    doc = yaml.safe_load(open(inv))
    doc["all"]["vars"].update(vars_)
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def untouched(host) -> None:
    assert sh(host, "test -e /opt/pypiserver || test -e /srv/pypi || "
                    "test -e /etc/systemd/system/pypiserver.service", check=False).returncode == 1


def one_line_error(res, needle: str) -> str:
    out = res.stdout + res.stderr
    assert res.returncode == 2 and "Traceback" not in out, out
    assert needle in out, out
    return out


# -- before the first deploy: refusals leave the host untouched -------------------------
def test_a_login_account_is_never_the_service_user(host, inv, tmp_path):
    sh(host, "useradd -m -s /bin/bash alice")
    before = sh(host, "getent passwd alice deploy").stdout
    for user, needle in (("alice", "pypiserver_user alice is a login account"),
                         (host.ssh_user, f"pypiserver_user {host.ssh_user} is ")):
        res = invoke("deploy", "--inventory", with_vars(inv, tmp_path, pypiserver_user=user))
        out = one_line_error(res, needle)
        assert recap(res.stdout, host.name)[1:] == (0, 1), out
    assert sh(host, "getent passwd alice deploy").stdout == before  # shells unchanged
    untouched(host)


def test_a_unit_that_is_not_ours_is_never_overwritten(host, inv, tmp_path):
    before = sh(host, "sha256sum /lib/systemd/system/ssh.service").stdout
    res = invoke("deploy", "--inventory", with_vars(inv, tmp_path, pypiserver_service="ssh"))
    one_line_error(res, "a unit ssh.service already exists (/lib/systemd/system/ssh.service)")
    assert sh(host, "sha256sum /lib/systemd/system/ssh.service").stdout == before
    assert sh(host, "test -e /etc/systemd/system/ssh.service", check=False).returncode == 1
    untouched(host)


@pytest.mark.parametrize("vars_,needle", [
    ({"pypiserver_packages_dir": "/srv/.."}, "pypiserver_packages_dir must be normalised"),
    ({"pypiserver_listen": "0.0.0.0\nExecStartPre=+/bin/touch /pwned"}, "control character"),
    ({"pypiserver_extra_args": "x\nExecStartPre=+/bin/touch /pwned"}, "control character"),
    ({"pypiserver_authenticate": "update --port 1"}, "comma-separated list"),
    ({"pypiserver_htpasswd": "/etc/x'$(touch /pwned)'"}, "may hold only"),
    ({"pypiserver_port": 80}, "below 1024"),
    ({"pypiserver_port": True}, "must be a whole number"),
])
def test_hostile_inventory_values_are_refused_before_any_host(host, inv, tmp_path, vars_, needle):
    start = time.monotonic()
    res = invoke("deploy", "--inventory", with_vars(inv, tmp_path, **vars_))
    one_line_error(res, needle)
    assert len(res.stderr.strip().splitlines()) == 1 and res.stdout == ""  # no host was contacted
    assert time.monotonic() - start < 10
    assert sh(host, "test -e /pwned", check=False).returncode == 1
    untouched(host)


def test_account_tasks_validate_the_same_variables(host, inv, tmp_path):
    bad = with_vars(inv, tmp_path, pypiserver_htpasswd="/etc/pypiserver/x'$(id>/pwned)'")
    res = invoke("add-user", "bob", "--password-stdin", "--inventory", bad, input="pw-1234567\n")
    one_line_error(res, "pypiserver_htpasswd may hold only")
    res = invoke("remove-user", "bob", "--inventory", bad)
    one_line_error(res, "pypiserver_htpasswd may hold only")
    assert sh(host, "test -e /pwned", check=False).returncode == 1


def test_strict_host_key_checking_yes_refuses_an_unknown_host(host, inv, tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n  StrictHostKeyChecking yes\n")
    kh = tmp_path / "kh"
    kh.write_text("")
    doc = yaml.safe_load(open(inv))
    doc["all"]["vars"]["known_hosts"] = str(kh)
    (tmp_path / "i.yml").write_text(yaml.safe_dump(doc))
    env = {**os.environ, "HOME": str(home)}
    res = subprocess.run([os.sys.executable, "-m", "invoke", "deploy", "--inventory", str(tmp_path / "i.yml")],
                         capture_output=True, text=True, env=env, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "StrictHostKeyChecking yes: refusing to connect" in res.stdout
    assert kh.read_text() == ""  # nothing recorded
    untouched(host)


# -- deployed: hostile but valid values stay literal -------------------------------------
@pytest.fixture(scope="module")
def deployed(host, inv, tmp_path_factory):
    """Deployed with an extra argument full of shell and systemd syntax (valid: no control
    characters): it must reach pypiserver as one literal argument."""
    tmp = tmp_path_factory.mktemp("deployed")
    doc = yaml.safe_load(open(inv))
    doc["all"]["vars"]["pypiserver_extra_args"] = ["--fallback-url", HOSTILE_URL]
    # the plain-http layout: there the unit carries the public port, which the crash test
    # below changes (behind nginx a port change touches only nginx's site)
    doc["all"]["vars"]["tls"] = False
    path = tmp / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    res = invoke("deploy", "--inventory", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    return str(path)


HOSTILE_URL = ("https://x.invalid/$(touch /pwned)`touch /pwned2`%n$HOME\"';"
               "ExecStartPre=+/bin/touch /pwned3 \\")


def test_a_hostile_extra_argument_is_one_literal_argument(host, deployed):
    pid = sh(host, "systemctl show -p MainPID --value pypiserver").stdout.strip()
    argv = sh(host, f"cat /proc/{pid}/cmdline").stdout.split("\0")
    assert argv[argv.index("--fallback-url") + 1] == HOSTILE_URL
    assert sh(host, "ls /pwned* /tmp/pwned* 2>/dev/null", check=False).stdout == ""
    unit = sh(host, "systemctl cat pypiserver").stdout.splitlines()
    assert not [ln for ln in unit if ln.startswith("ExecStartPre")]


def test_a_crash_between_unit_and_restart_converges(host, deployed):
    """The review's case: the apply dies right after the unit changed (here: when it asks
    systemd to reload); the next run must still restart onto the new unit."""
    wrapper = ("#!/bin/sh\n[ \"$1\" = daemon-reload ] && { kill -9 $PPID; exit 1; }\n"
               "exec /usr/bin/systemctl \"$@\"\n")
    sh(host, "cat > /usr/local/sbin/systemctl && chmod 755 /usr/local/sbin/systemctl",
       input=wrapper.encode())
    try:
        dead = invoke("deploy", "--inventory", deployed, "--port", "8001")
        assert dead.returncode == 2, dead.stdout
        assert "--port\" \"8001\"" in sh(host, "cat /etc/systemd/system/pypiserver.service").stdout
    finally:
        sh(host, "rm -f /usr/local/sbin/systemctl")
    res = invoke("deploy", "--inventory", deployed, "--port", "8001")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Restart pypiserver" in res.stdout
    assert "Ensure the index answers at http://" in res.stdout and ":8001/" in res.stdout
    # the port this tool opened before is closed again, at runtime and permanently
    if not is_external(host):
        assert sh(host, "firewall-cmd --list-ports").stdout.split() == ["8001/tcp"]
        assert sh(host, "firewall-cmd --permanent --list-ports").stdout.split() == ["8001/tcp"]
    # moving back takes the flag too: a plain deploy keeps what the host recorded (8001)
    back = invoke("deploy", "--inventory", deployed, "--port", "8000")
    assert back.returncode == 0, back.stdout + back.stderr
    if not is_external(host):
        assert sh(host, "firewall-cmd --list-ports").stdout.split() == ["8000/tcp"]


def test_twenty_concurrent_account_pairs_lose_nothing(host, deployed):
    def add(name):
        return name, invoke("add-user", name, "--password-stdin", "--inventory", deployed,
                            input=f"pw-{name}-123\n")

    with ThreadPoolExecutor(max_workers=2) as pool:
        for i in range(20):
            results = list(pool.map(add, [f"u{i}a", f"u{i}b"]))
            for name, res in results:
                assert res.returncode == 0, res.stdout + res.stderr
                assert f"[add {name}]" in res.stdout
    names = sh(host, "cut -d: -f1 /etc/pypiserver/htpasswd").stdout.split()
    assert {f"u{i}{s}" for i in range(20) for s in "ab"} <= set(names)


# -- locks and faults, through the runner with a step that takes its time -----------------
class Sleep(Step):
    name = "Sleep on the host (test step)."

    def __init__(self, seconds: float):
        self.seconds = seconds

    def plan(self, facts, probed):
        return Plan([Command(f"sleep {self.seconds}")], f"{self.seconds} s")


class SleepRole(Role):
    def __init__(self, seconds: float):
        self.seconds = seconds

    def vars(self, target):
        return {}

    def phases(self, target):
        return [[Sleep(self.seconds)]]


def run_sleep(inv, seconds: float):
    out = io.StringIO()
    targets = select(None, str(inv), {})
    results = runner.run(targets, SleepRole(seconds), runner.Options(), Report(stream=out))
    return results, out.getvalue()


def test_a_second_run_waits_then_names_the_holder(host, deployed, monkeypatch):
    holder = threading.Thread(target=run_sleep, args=(deployed, 8))
    holder.start()
    try:
        deadline = time.monotonic() + 20
        while f"(pid {os.getpid()})" not in sh(host, "cat /run/provision/lock.info", check=False).stdout:
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.2)
        monkeypatch.setenv("PROVISION_LOCK_WAIT", "1")
        res = invoke("deploy", "--inventory", deployed)
        out = one_line_error(res, f"{host.name} is busy: another run holds its lock (waited 1 s)")
        assert f"(pid {os.getpid()})" in out and "its SSH session on the host is pid" in out
        monkeypatch.delenv("PROVISION_LOCK_WAIT")
        waited = invoke("deploy", "--inventory", deployed)  # waits for the holder, then no-op
        assert waited.returncode == 0 and recap(waited.stdout, host.name)[1:] == (0, 0), waited.stdout
    finally:
        holder.join()


def test_the_lock_ends_with_the_connection(host, deployed):
    results, _ = run_sleep(deployed, 0)
    assert results[host.name].failed == 0
    time.sleep(0.5)  # the holder notices its sshd session is gone within 0.1 s
    assert sh(host, "flock -n /run/provision/lock true", check=False).returncode == 0


def test_a_link_down_mid_step_is_named_within_the_silence_limit(testhost, tmp_path, monkeypatch):
    if is_external(testhost):
        pytest.skip("needs the nspawn host's own veth link")
    inv = write_inventory([testhost], tmp_path / "i.yml", known_hosts=str(tmp_path / "kh"))
    monkeypatch.setenv("PROVISION_SSH_TIMEOUT", "6")
    threading.Timer(2.0, lambda: subprocess.run(["ip", "link", "set", testhost.veth, "down"])).start()
    start = time.monotonic()
    try:
        results, out = run_sleep(inv, 60)
    finally:
        subprocess.run(["ip", "link", "set", testhost.veth, "up"])
    assert time.monotonic() - start < 25, out
    assert results[testhost.name].failed == 1
    assert "Sleep on the host (test step)." in out and "lost: no answer for" in out, out


def test_a_killed_session_is_named_not_exit_minus_one(testhost, tmp_path):
    inv = write_inventory([testhost], tmp_path / "i.yml", known_hosts=str(tmp_path / "kh"))
    threading.Timer(2.0, lambda: sh(testhost, "pkill -9 -f 'sshd: .*@notty'", check=False)).start()
    results, out = run_sleep(inv, 30)
    assert results[testhost.name].failed == 1
    assert "Sleep on the host (test step)." in out and "lost" in out and "exit -1" not in out, out


def test_disk_full_during_the_wheel_upload_says_so(testhost, tmp_path):
    sh(testhost, "mkdir -p /opt/pypiserver/wheels && mount -t tmpfs -o size=64k tmpfs /opt/pypiserver/wheels")
    inv = write_inventory([testhost], tmp_path / "i.yml", known_hosts=str(tmp_path / "kh"))
    res = invoke("deploy", "--inventory", str(inv))
    assert res.returncode == 2
    assert f"no space left on {testhost.name}:/opt/pypiserver/wheels" in res.stdout, res.stdout
