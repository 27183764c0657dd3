"""`invoke deploy` against real booted Debian 12 hosts (systemd-nspawn, sshd, firewalld),
or against two fresh external hosts (PROVISION_TEST_HOSTS, e.g. the Vagrantfile's VMs).

The deploy connects as a sudo user (`deploy` on nspawn hosts), exactly as a user's CLI
run would (a subprocess running `invoke`), with a known_hosts file of the test's own.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.external import is_external, reboot_disabled, write_inventory
from tests.helpers import ca_file, clean_env, http_get, index, invoke, make_wheel, recap, sh

pytestmark = pytest.mark.integration

PORT = 8000
PASSWORD = "s3cret-Upl0ad-pw"  # a test account's password: must never show up anywhere


@pytest.fixture(scope="module")
def hosts(testhost_factory):
    booted = testhost_factory(2)
    yield booted
    for h in booted:
        h.destroy()


@pytest.fixture(scope="module")
def inventory(hosts, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inv")
    return write_inventory(hosts, tmp / "inventory.yml", known_hosts=str(tmp / "known_hosts"))


@pytest.fixture(scope="module")
def deployed(hosts, inventory):
    """The first host, deployed once (fresh) as the sudo user; the run's output."""
    host = hosts[0]
    res = invoke("deploy", "--inventory", str(inventory), "--host", host.name)
    assert res.returncode == 0, res.stdout + res.stderr
    return host, res.stdout


@pytest.fixture(scope="module")
def account(deployed, inventory):
    """An upload account, added the way a user does (invoke add-user, password on stdin)."""
    host, _ = deployed
    res = invoke("add-user", "demouser", "--password-stdin", "--inventory", str(inventory),
                 "--host", host.name, input=PASSWORD + "\n")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[add demouser]" in res.stdout
    return "demouser"


def twine_upload(host, wheel: Path, user: str, password: str) -> subprocess.CompletedProcess:
    env = {**clean_env(), "TWINE_USERNAME": user, "TWINE_PASSWORD": password}
    return subprocess.run(
        [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", index(host), "--cert", ca_file(), str(wheel)],
        capture_output=True, text=True, env=env, timeout=120)


def listing(host, path="/simple/") -> str:
    status, _, body = http_get(host.address, PORT, path)
    assert status == 200, body
    return body


def wait_listed(host, needle: str, path: str, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if needle in listing(host, path):
            return True
        time.sleep(0.1)
    return False


def test_fresh_deploy_as_sudo_user(deployed):
    host, out = deployed
    ok, changed, failed = recap(out, host.name)
    assert changed >= 8 and failed == 0
    assert f"new host key for {host.address}" in out
    assert f"index: https://{host.address}:{PORT}/simple/" in out
    assert sh(host, "systemctl is-active pypiserver").stdout.strip() == "active"
    assert sh(host, "stat -c '%U:%G %a' /etc/pypiserver/htpasswd").stdout.strip() == "root:pypi 640"


def test_index_answers_with_waitress_and_cached_dir(deployed):
    """nginx answers with TLS (verified by the session's CA); pypiserver (waitress) behind
    it answers on the host's loopback only; plain http on the port is redirected."""
    host, _ = deployed
    status, headers, body = http_get(host.address, PORT, "/")
    assert status == 200 and headers.get("Server", "").startswith("nginx") and "pypiserver" in body
    backend = sh(host, "curl -sS -D - -o /dev/null http://127.0.0.1:18000/").stdout
    assert "Server: waitress" in backend
    with pytest.raises(OSError):                       # not from outside
        socket.create_connection((host.address, 18000), timeout=3).close()
    status, headers, _ = http_get(host.address, PORT, "/simple/", tls=False)
    assert status == 301 and headers["Location"] == f"{index(host)}simple/"
    # the arguments the service really runs with (the unit quotes each one for systemd)
    argv = sh(host, "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value pypiserver)/cmdline").stdout
    assert "--server auto --backend cached-dir" in argv
    assert "--passwords /etc/pypiserver/htpasswd --authenticate update" in argv


def test_second_deploy_changes_nothing(deployed, inventory):
    host, _ = deployed
    res = invoke("deploy", "--inventory", str(inventory), "--host", host.name)
    assert res.returncode == 0, res.stdout + res.stderr
    ok, changed, failed = recap(res.stdout, host.name)
    assert (changed, failed) == (0, 0) and ok >= 10


def test_a_restart_owed_by_a_dead_run_is_done_by_the_next(deployed, inventory):
    """A run that changed the unit and died before its handler leaves a marker behind."""
    host, _ = deployed
    before = sh(host, "systemctl show -p MainPID pypiserver").stdout.strip()
    sh(host, "mkdir -p /var/lib/provision && touch /var/lib/provision/restart-pending-pypiserver")
    res = invoke("deploy", "--inventory", str(inventory), "--host", host.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert recap(res.stdout, host.name)[1:] == (1, 0)
    assert "Restart pypiserver" in res.stdout
    assert sh(host, "systemctl show -p MainPID pypiserver").stdout.strip() != before
    assert sh(host, "test -e /var/lib/provision/restart-pending-pypiserver", check=False).returncode == 1
    again = invoke("deploy", "--inventory", str(inventory), "--host", host.name)
    assert recap(again.stdout, host.name)[1:] == (0, 0)


def test_twine_upload_with_account_and_wrong_password_refused(deployed, account, tmp_path):
    host, _ = deployed
    wheel = make_wheel(tmp_path, "demo-pkg", "0.1")
    bad = twine_upload(host, wheel, account, PASSWORD + "x")
    assert bad.returncode != 0
    assert "403" in bad.stdout + bad.stderr or "401" in bad.stdout + bad.stderr
    good = twine_upload(host, wheel, account, PASSWORD)
    assert good.returncode == 0, good.stdout + good.stderr
    assert wait_listed(host, wheel.name, "/simple/demo-pkg/")
    assert PASSWORD not in good.stdout + good.stderr + bad.stdout + bad.stderr
    journal = sh(host, "journalctl --no-pager -o cat").stdout
    assert PASSWORD not in journal
    files = sh(host, f"grep -rlF {PASSWORD} /etc /srv /opt /var/log /tmp || true").stdout
    assert files.strip() == ""


def test_pip_downloads_from_the_index(deployed, account, tmp_path):
    host, _ = deployed
    dest = tmp_path / "dl"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-d", str(dest),
         "--index-url", f"{index(host)}simple/", "--cert", ca_file(),
         "demo-pkg==0.1"], capture_output=True, text=True, env=clean_env(), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (dest / "demo_pkg-0.1-py3-none-any.whl").is_file()


def test_copied_and_uploaded_files_both_appear(deployed, account, tmp_path):
    host, _ = deployed
    assert "demo-pkg" in listing(host)  # warm the cache first: a stale cache would keep this view
    copied = make_wheel(tmp_path, "copied-pkg", "1.0")
    sh(host, f"cat > /srv/pypi/packages/{copied.name} && chown pypi:pypi /srv/pypi/packages/{copied.name}",
              input=copied.read_bytes())
    assert wait_listed(host, "copied-pkg", "/simple/"), "a file copied into the directory never appeared"
    uploaded = make_wheel(tmp_path, "uploaded-pkg", "2.0")
    assert twine_upload(host, uploaded, account, PASSWORD).returncode == 0
    assert wait_listed(host, "uploaded-pkg", "/simple/"), "an uploaded file never appeared"
    assert wait_listed(host, uploaded.name, "/simple/uploaded-pkg/")


def test_other_ports_stay_closed(deployed):
    host, _ = deployed
    if is_external(host) and sh(host, "firewall-cmd --state", check=False).stdout.strip() != "running":
        pytest.skip(f"no firewalld running on {host.address} after the deploy, so nothing keeps "
                    "other ports closed (the centos/7 and rockylinux/9 boxes ship it disabled; "
                    "PROVISION_VAGRANT_FIREWALLD=1 vagrant up enables it)")
    sh(host, 'systemd-run --unit probe-8123 "$(command -v python3)" -m http.server 8123')
    try:
        deadline = time.monotonic() + 10
        while ":8123 " not in sh(host, "ss -ltn").stdout:
            assert time.monotonic() < deadline, "probe server did not start"
            time.sleep(0.1)
        with pytest.raises(OSError):
            socket.create_connection((host.address, 8123), timeout=3).close()
        socket.create_connection((host.address, PORT), timeout=3).close()
    finally:
        sh(host, "systemctl stop probe-8123", check=False)


def test_reboot_brings_the_service_back_with_its_packages(deployed, account):
    host, _ = deployed
    if reboot_disabled():
        pytest.skip("PROVISION_TEST_NO_REBOOT is set: these hosts do not come back from a reboot")
    host.reboot()
    deadline = time.monotonic() + 30
    while True:
        try:
            body = listing(host, "/simple/demo-pkg/")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)
    assert "demo_pkg-0.1-py3-none-any.whl" in body


def test_check_on_fresh_host_changes_nothing(hosts, inventory):
    host = hosts[1]
    fw_ok = not is_external(host)  # an external host may have no firewalld (running)
    before = sh(host, "find /etc /opt /srv -xdev | sort | md5sum; firewall-cmd --list-ports; "
                       "firewall-cmd --permanent --list-ports", check=fw_ok).stdout
    res = invoke("deploy", "--inventory", str(inventory), "--host", host.name, "--check", "--diff")
    assert res.returncode == 0, res.stdout + res.stderr
    ok, changed, failed = recap(res.stdout, host.name)
    assert changed >= 8 and failed == 0
    assert '+ExecStart="/opt/pypiserver/venv/bin/pypi-server" "run"' in res.stdout
    after = sh(host, "find /etc /opt /srv -xdev | sort | md5sum; firewall-cmd --list-ports; "
                      "firewall-cmd --permanent --list-ports", check=fw_ok).stdout
    assert after == before
    assert sh(host, "getent passwd pypi", check=False).returncode != 0


def test_inventory_hosts_deploy_in_parallel_with_a_recap_each(hosts, inventory, deployed):
    """No --host: every inventory host, in parallel; the deployed one is a no-op."""
    res = invoke("deploy", "--inventory", str(inventory))
    assert res.returncode == 0, res.stdout + res.stderr
    assert recap(res.stdout, hosts[0].name)[1:] == (0, 0)
    assert recap(res.stdout, hosts[1].name)[1] >= 8
    status, headers, _ = http_get(hosts[1].address, PORT, "/")
    assert status == 200 and headers["Server"].startswith("nginx")
    assert res.stdout.index("RECAP") > max(res.stdout.rindex(f"{h.name}  ") for h in hosts)
