"""The test-host harness itself: the hosts must behave like the VMs the tool targets."""
from __future__ import annotations

import socket
import subprocess
import time

import pytest

from testing import testhost as th

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def host(testhost_factory):
    (h,) = testhost_factory(1)
    return h


@pytest.fixture(scope="module")
def known_hosts(tmp_path_factory):
    return tmp_path_factory.mktemp("ssh") / "known_hosts"


def ssh(host, known_hosts, cmd, user=None):
    args = th.ssh_base_args(host, known_hosts)
    if user:
        args[-1] = f"{user}@{host.address}"
    return subprocess.run([*args, cmd], capture_output=True, text=True, timeout=30)


def test_deploy_has_passwordless_sudo(host, known_hosts):
    r = ssh(host, known_hosts, "sudo -n true && hostname")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == host.name


def test_pwdeploy_sudo_needs_password(host, known_hosts):
    r = ssh(host, known_hosts, "sudo -n true", user=th.PW_USER)
    assert r.returncode != 0
    assert "password is required" in r.stderr
    password = th.pwdeploy_password_path().read_text().strip()
    args = th.ssh_base_args(host, known_hosts)
    args[-1] = f"{th.PW_USER}@{host.address}"
    r = subprocess.run([*args, "sudo -S -p '' true"], input=password + "\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_firewalld_is_active(host):
    assert host.exec("firewall-cmd --state").stdout.strip() == b"running"


def _connect(address, port, timeout=3.0):
    """None on success, else the OSError; never slower than timeout."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc


def test_firewall_blocks_unopened_port_until_opened(host):
    host.exec("systemd-run --unit=th-http --working-directory=/tmp python3 -m http.server 8123")
    try:
        deadline = time.monotonic() + 15
        while b":8123" not in host.exec("ss -ltnH").stdout:
            assert time.monotonic() < deadline, "http.server did not start in the guest"
            time.sleep(0.2)
        t0 = time.monotonic()
        assert _connect(host.address, 8123) is not None, "port 8123 reachable before opening it"
        assert time.monotonic() - t0 < 3.5

        host.exec("firewall-cmd --add-port=8123/tcp")
        assert _connect(host.address, 8123) is None
    finally:
        host.exec("firewall-cmd --remove-port=8123/tcp; systemctl stop th-http", check=False)


def test_reboot_keeps_state(host, known_hosts):
    host.exec("echo survived > /var/tmp/marker")
    host.reboot()
    assert host.exec("cat /var/tmp/marker").stdout == b"survived\n"
    assert host.exec("firewall-cmd --state").stdout.strip() == b"running"
    r = ssh(host, known_hosts, "sudo -n true")  # same host keys after a reboot
    assert r.returncode == 0, r.stderr
